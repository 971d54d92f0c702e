package natsembed_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

var models = []provision.ModelPolicy{{Name: "simple", MaxBatchSize: 8, MaxDeliver: 3}}

func TestEmbeddedInProcess(t *testing.T) {
	srv, err := natsembed.Run(natsembed.Config{Port: 0, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.ClientURL() != "" {
		t.Errorf("port 0 should expose no URL, got %q", srv.ClientURL())
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if err := provision.All(t.Context(), js, jetstream.DefaultTopology(), models); err != nil {
		t.Fatal(err)
	}
}

// TestTLSClients: with TLS on the client port, a service connects with the
// CA and client certificate its config names; a plain-text client, a client
// without a certificate and a client that does not trust the server's CA
// are refused.
func TestTLSClients(t *testing.T) {
	ca := testutil.NewCA(t)
	srv, err := natsembed.Run(natsembed.Config{Port: -1, StoreDir: t.TempDir(), TLS: ca.ServerConfig(t, "nats", true)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	leaf := ca.Issue(t, "ingress")
	n := config.NATS{URL: srv.ClientURL(), TLS: config.ClientTLS{CAFile: ca.CertFile, CertFile: leaf.CertFile, KeyFile: leaf.KeyFile}}
	nc, err := service.ConnectNATS(n, "tls-test")
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer nc.Close()
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("connection is not TLS: %v", err)
	}
	js, _ := natsjs.New(nc)
	if err := provision.All(t.Context(), js, jetstream.DefaultTopology(), models); err != nil {
		t.Fatal(err)
	}

	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("plain-text client accepted")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0), nats.RootCAs(ca.CertFile)); err == nil {
		nc.Close()
		t.Error("client without a certificate accepted")
	}
	other := testutil.NewCA(t)
	n.TLS.CAFile = other.CertFile
	if nc, err := service.ConnectNATS(n, "tls-test"); err == nil {
		nc.Close()
		t.Error("client trusted a server certificate its CA did not sign")
	}
	// In process (how `inferq dev` connects its own components) skips TLS.
	if nc, err := srv.Connect(); err != nil {
		t.Errorf("in-process client: %v", err)
	} else {
		nc.Close()
	}
}

// TestTLSRoutes: a 3-node cluster with TLS on its routes forms, places an
// R3 stream, and its route ports demand TLS of whoever dials them.
func TestTLSRoutes(t *testing.T) {
	ca := testutil.NewCA(t)
	cl := testutil.StartClusterWith(t, 3, testutil.ClusterOptions{CA: ca})
	nc, err := nats.Connect(cl.URLs[0], nats.RootCAs(ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if _, err := js.CreateStream(t.Context(), natsjs.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatalf("R3 stream over TLS routes: %v", err)
	}
	// A route port speaks TLS only, to peers with a certificate the CA
	// signed.
	other := testutil.NewCA(t)
	for _, p := range cl.RoutePorts {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if err := routeHandshake(addr, ca, ca.Issue(t, "peer").Cert); err != nil {
			t.Errorf("route %s: a peer with the CA's certificate: %v", addr, err)
		}
		if err := routeHandshake(addr, ca, other.Issue(t, "stranger").Cert); err == nil {
			t.Errorf("route %s accepted a certificate from another CA", addr)
		}
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Write([]byte("CONNECT {}\r\nPING\r\n"))
		b, _ := io.ReadAll(conn)
		conn.Close()
		if strings.Contains(string(b), "INFO") || strings.Contains(string(b), "PONG") {
			t.Errorf("route %s answered in plain text: %q", addr, b)
		}
	}
}

// routeHandshake completes a TLS handshake with a route port as a peer
// showing cert, and reads until the server speaks (its INFO) or refuses.
func routeHandshake(addr string, ca *testutil.CA, cert tls.Certificate) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// TLS 1.3 reports a refused client certificate on the first read.
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("unexpected first line %q", line)
	}
	return nil
}

// TestSyncPolicy: SyncAlways and SyncInterval reach the running server, as
// its JetStream config and its /varz say; unset keeps nats-server's
// default interval.
func TestSyncPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		always   bool
		interval time.Duration
		want     time.Duration // expected interval when not always
		desc     string
	}{
		{"always", true, 0, 0, "always"},
		{"interval", false, 5 * time.Second, 5 * time.Second, "every 5s"},
		{"default", false, 0, 2 * time.Minute, "every 2m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := natsembed.Run(natsembed.Config{Port: -1, MonitorPort: -1, StoreDir: t.TempDir(), SyncAlways: tc.always, SyncInterval: tc.interval})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Shutdown()
			jsc := srv.Server.JetStreamConfig()
			if jsc.SyncAlways != tc.always || (!tc.always && jsc.SyncInterval != tc.want) {
				t.Errorf("JetStreamConfig: sync always %v interval %v", jsc.SyncAlways, jsc.SyncInterval)
			}
			if got := srv.Sync(); !strings.HasPrefix(got, tc.desc) {
				t.Errorf("Sync() %q, want %q...", got, tc.desc)
			}
			resp, err := http.Get("http://" + srv.Server.MonitorAddr().String() + "/varz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var v struct {
				JetStream struct {
					Config struct {
						SyncAlways   bool          `json:"sync_always"`
						SyncInterval time.Duration `json:"sync_interval"`
					} `json:"config"`
				} `json:"jetstream"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
				t.Fatal(err)
			}
			if c := v.JetStream.Config; c.SyncAlways != tc.always || (!tc.always && c.SyncInterval != tc.want) {
				t.Errorf("/varz: sync always %v interval %v", c.SyncAlways, c.SyncInterval)
			}
		})
	}
}
