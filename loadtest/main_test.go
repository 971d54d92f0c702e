package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve an -http peer in a child process, as
// the loadtest binary does: -compare starts os.Executable() again with
// servePeerEnv set, and under `go test` that is this binary.
func TestMain(m *testing.M) {
	if name := os.Getenv(servePeerEnv); name != "" {
		os.Exit(servePeerMain(name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
