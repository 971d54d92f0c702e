// Command inferq is the one binary for people: `inferq dev` runs the whole
// broker in one process for development and tests, and the other commands
// talk to a running broker. The commands live in internal/cli, where tests
// run them in process.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
