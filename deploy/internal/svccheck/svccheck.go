// Package svccheck is what the compose and Kubernetes tests check of
// inferq's own services: which INFERQ_* variables the binaries really read,
// the config a container ends up with, and the port each binary serves
// /healthz, /readyz and /metrics on.
package svccheck

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"

	"github.com/inferq/inferq/internal/config"
)

// readElsewhere are the INFERQ_* variables read outside Config.ApplyEnv, by
// the file (under the repository root) that reads them.
var readElsewhere = map[string]string{
	"INFERQ_CONFIG": "internal/service/main.go",              // --config default of every service
	"INFERQ_PYTHON": "worker/deepspeed_nats/agent/python.go", // the runner's interpreter
}

// KnownEnv returns the INFERQ_* variables inferq's services read. Those of
// Config.ApplyEnv are found by asking it (so the list cannot drift) and each
// is checked to set a config field; the others must still be named in the
// file that reads them.
func KnownEnv(root string) (map[string]bool, error) {
	var asked []string
	probe := config.Default()
	if err := probe.ApplyEnv(func(k string) (string, bool) { asked = append(asked, k); return "", false }); err != nil {
		return nil, fmt.Errorf("ApplyEnv with an empty environment: %w", err)
	}
	known := map[string]bool{}
	for _, k := range asked {
		if !setsField(k) {
			return nil, fmt.Errorf("%s is looked up by Config.ApplyEnv but sets no config field", k)
		}
		known[k] = true
	}
	for k, file := range readElsewhere {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if !bytes.Contains(b, []byte(strconv.Quote(k))) {
			return nil, fmt.Errorf("%s is no longer read by %s", k, file)
		}
		known[k] = true
	}
	return known, nil
}

// setsField reports whether some value of variable k changes the config.
func setsField(k string) bool {
	for _, v := range []string{"svccheck-probe", "7s", "3"} {
		c := config.Default()
		err := c.ApplyEnv(func(q string) (string, bool) {
			if q == k {
				return v, true
			}
			return "", false
		})
		if err == nil && !reflect.DeepEqual(c, config.Default()) {
			return true
		}
	}
	return false
}

// Names returns the keys of a set, sorted, for messages.
func Names(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ContainerConfig is the config a container runs with: the file at path,
// then env (the container's variables, in place of the process
// environment), validated as config.Load validates.
func ContainerConfig(path string, env map[string]string) (config.Config, error) {
	cfg := config.Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := config.Parse(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return cfg, err
	}
	return cfg, cfg.Finish()
}

// Binaries are the image paths of inferq's service binaries.
var Binaries = []string{"ingress", "batcher", "resultsvc", "inferq-worker"}

// ServePort is the port binary (an entry of Binaries, by base name) serves
// /healthz, /readyz and /metrics on under cfg: the ingress's API port, the
// others' admin port.
func ServePort(cfg config.Config, binary string) (int, error) {
	var addr string
	switch filepath.Base(binary) {
	case "ingress":
		addr = cfg.Ingress.Listen
	case "batcher":
		addr = cfg.Batcher.AdminListen
	case "resultsvc":
		addr = cfg.ResultSvc.AdminListen
	case "inferq-worker":
		addr = cfg.Worker.AdminListen
	default:
		return 0, fmt.Errorf("%s is not an inferq service binary (%v)", binary, Binaries)
	}
	if addr == "" {
		return 0, fmt.Errorf("%s: no listen address configured: it would serve no probes or metrics", binary)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%s: listen address %q: %w", binary, addr, err)
	}
	if host == "127.0.0.1" || host == "localhost" {
		return 0, fmt.Errorf("%s: listen address %q is unreachable from outside the container", binary, addr)
	}
	return strconv.Atoi(port)
}
