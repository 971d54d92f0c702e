// Package redisbin finds the redis-server binary, for the tests' helper and
// the load-test tool, which start their own servers.
package redisbin

import (
	"errors"
	"os"
	"os/exec"
)

// Path is redis-server's path, looked up on PATH and then where Debian and
// source installs put it; the error says how to install it.
func Path() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found: install it (Debian: apt-get install -y redis-server) or run `make deps`")
}
