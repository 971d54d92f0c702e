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
  submit  submit a job:        inferq submit -text hello -params '{"max_tokens":8}' -wait 30s repeat
  get     print a job record:  inferq get -wait 30s JOB_ID
  watch   print a job's tokens live over NATS, in order (resumable with -from SEQ)
  replay  run a failed job again under its id:  inferq replay JOB_ID | inferq replay -model M -since 1h
  models  models with their config and live stats
  stats   live queue figures per model

Client commands read INFERQ_URL (default http://127.0.0.1:8080), INFERQ_TOKEN and INFERQ_NATS_URL.
Exit codes: 0 ok, 1 the job failed or the request was refused, 2 usage, 3 -wait ran out.

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
	case "submit", "get", "watch", "replay", "models", "stats":
		ctx, stop := cli.SignalContext()
		code := cli.Client(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "inferq: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
