// Package version names the build of inferq that is running: the CLI's
// --version, the OIP server metadata (GET /v2) and the build-info metric all
// read it, so the three always agree.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set at link time for release builds:
//
//	go build -ldflags "-X github.com/inferq/inferq/internal/version.Version=v0.3.0" ./cmd/inferq
//
// Without it, String falls back to what the Go toolchain recorded.
var Version string

var resolved = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel+" + rev + dirty
})

// String is the running build's version: the link-time Version, the module
// version, or "devel+<commit>" for a build from a checkout.
func String() string { return resolved() }

// GoVersion is the toolchain that built the binary.
func GoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
