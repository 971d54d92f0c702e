// Package natsembed runs nats-server with JetStream inside this process, for
// `inferq dev` and tests. It is internal so that no service binary links the
// server: they only connect to one.
package natsembed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures an in-process nats-server with JetStream.
type Config struct {
	// Host and Port to listen on. Port 0 means the client port is not exposed
	// at all: clients connect in-process (see Server.Connect). Port -1 picks
	// a free port.
	Host string
	Port int
	// StoreDir holds JetStream's file storage. Required.
	StoreDir string
	// ServerName names the server; defaults to "inferq".
	ServerName string
	// Logs enables the server's own log output (on stderr).
	Logs bool
	// MaxMemory and MaxStore bound JetStream; zero lets the server choose.
	MaxMemory, MaxStore int64
	// SyncAlways makes JetStream fsync before it acknowledges each write,
	// so an acknowledged message survives power loss. Otherwise files are
	// synced every SyncInterval (zero: nats-server's default, 2m) and an
	// acknowledged write can sit in the page cache until then.
	SyncAlways   bool
	SyncInterval time.Duration
	// MonitorPort exposes /varz, /jsz... when > 0 (-1 picks a free port).
	MonitorPort int
	// Cluster makes this server one node of a cluster. Optional.
	Cluster *ClusterConfig
	// Users, when set, turn anonymous clients away: only these users (the
	// services) connect, each within its permissions (nil: all). With
	// CalloutIssuer set, every other client is handed to the auth callout.
	Users []User
	// CalloutIssuer is the public account nkey (A...) that signs the auth
	// callout's answers; clients that are not one of Users are authorised
	// by the callout service (internal/natsauth) on $SYS.REQ.USER.AUTH.
	// Requires Users (the callout service itself is one of them).
	CalloutIssuer string
	// TLS, when set, makes the client port TLS only: a plain-text client is
	// refused. With ClientAuth set to verify, clients must also show a
	// certificate its ClientCAs signed. In-process connections skip TLS.
	TLS *tls.Config
}

// User is one statically configured NATS user.
type User struct {
	Name, Password string
	// Permissions bound what the user may publish and subscribe; nil
	// allows everything.
	Permissions *server.Permissions
}

// ClusterConfig joins an embedded server to a JetStream cluster.
type ClusterConfig struct {
	Name   string
	Host   string
	Port   int      // -1 picks a free port
	Routes []string // nats-route://host:port of the other nodes
	// TLS, when set, encrypts the routes. Each node is both server and
	// client of a route, so the configuration needs Certificates (valid
	// for both), RootCAs to verify the other nodes and ClientCAs with
	// ClientAuth to verify them when they dial in.
	TLS *tls.Config
}

// Server is a running in-process nats-server.
type Server struct {
	Server *server.Server
	cfg    Config
}

// Run starts a nats-server with JetStream in this process and waits
// until it accepts connections.
func Run(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "inferq"
	}
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		Host:               cfg.Host,
		Port:               cfg.Port,
		DontListen:         cfg.Port == 0,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		SyncAlways:         cfg.SyncAlways,
		SyncInterval:       cfg.SyncInterval,
		NoSigs:             true,
		NoLog:              !cfg.Logs,
	}
	if cfg.MonitorPort != 0 {
		opts.HTTPHost = cfg.Host
		opts.HTTPPort = cfg.MonitorPort
	}
	if err := setAuth(opts, &cfg); err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLS, tlsTimeout
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	if c := cfg.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		if c.TLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = c.TLS, tlsTimeout
		}
		if opts.Cluster.Host == "" {
			opts.Cluster.Host = cfg.Host
		}
		routes, err := parseRoutes(c.Routes)
		if err != nil {
			return nil, err
		}
		opts.Routes = routes
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return &Server{Server: s, cfg: cfg}, nil
}

// ClientURL is the nats:// URL clients use, or "" when the port is not exposed.
func (e *Server) ClientURL() string {
	if e.cfg.Port == 0 {
		return ""
	}
	return e.Server.ClientURL()
}

// Connect opens a client connection, in-process when the port is not exposed.
func (e *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.Server), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// Sync describes the sync policy the running server applies, for banners
// and logs: "always (fsync before every acknowledgement)" or "every 2m0s
// (...)".
func (e *Server) Sync() string {
	jsc := e.Server.JetStreamConfig()
	if jsc == nil {
		return "JetStream off"
	}
	if jsc.SyncAlways {
		return "always (fsync before every acknowledgement)"
	}
	return fmt.Sprintf("every %s (an acknowledged write may be lost on power loss within it)", jsc.SyncInterval)
}

// Shutdown stops the server and waits for it to finish.
func (e *Server) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// setAuth turns Users and CalloutIssuer into the server's options.
func setAuth(opts *server.Options, cfg *Config) error {
	if cfg.CalloutIssuer != "" && len(cfg.Users) == 0 {
		return errors.New("embedded nats: CalloutIssuer needs Users (the callout service connects as one)")
	}
	names := make([]string, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		if u.Name == "" || u.Password == "" {
			return errors.New("embedded nats: every user needs a name and a password")
		}
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: u.Permissions})
		names = append(names, u.Name)
	}
	if cfg.CalloutIssuer != "" {
		opts.AuthCallout = &server.AuthCallout{Issuer: cfg.CalloutIssuer, AuthUsers: names}
	}
	return nil
}

// tlsTimeout is the seconds a TLS handshake may take.
const tlsTimeout = 5

// TLSFiles builds a server TLS configuration from PEM files: the
// certificate and key, and, when caFile is set, the CA whose certificates
// clients (or route peers) must show.
func TLSFiles(certFile, keyFile, caFile string) (*tls.Config, error) {
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: caFile, Verify: caFile != ""})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: tls: %w", err)
	}
	return c, nil
}

// TLS reports whether clients must connect over TLS.
func (e *Server) TLS() bool { return e.cfg.TLS != nil }

// Authenticated reports whether anonymous clients are refused.
func (e *Server) Authenticated() bool { return len(e.cfg.Users) > 0 }

func parseRoutes(routes []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(routes))
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: route %q: %w", r, err)
		}
		out = append(out, u)
	}
	return out, nil
}
