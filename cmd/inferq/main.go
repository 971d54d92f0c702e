// Command inferq is the one binary for people: `inferq dev` runs the whole
// broker in one process for development and tests.
package main

import (
	"fmt"
	"os"

	"github.com/inferq/inferq/internal/cli"
)

const usage = `usage: inferq <command> [flags]

commands:
  dev     run the whole broker in one process (embedded NATS and results store)

Run 'inferq <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "dev":
		ctx, stop := cli.SignalContext()
		code := cli.Dev(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "inferq: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
