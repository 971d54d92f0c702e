package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/inferq/inferq/internal/service"
)

// command is one `inferq` subcommand as its help and the top-level usage
// show it: the summary is the first line of `inferq CMD -h`.
type command struct {
	name, summary, usage, example string
}

var commands = []command{
	{"dev", "run the whole broker in one process (embedded NATS and results store)",
		"inferq dev [flags]", "inferq dev --http 127.0.0.1:8080"},
	{"submit", "submit a job to a model and print the accepted job, or with -wait its final record",
		"inferq submit [-f FILE | -text T] [-params JSON] [-wait 30s] MODEL",
		`inferq submit -text hello -params '{"max_tokens":8}' -wait 30s repeat`},
	{"get", "print a job's record, long-polling with -wait until it ends",
		"inferq get [-wait 30s] JOB_ID", "inferq get -wait 30s JOB_ID"},
	{"watch", "print a job's tokens live over NATS, in order (resumable with -from SEQ)",
		"inferq watch [-nats URL] [-tenant T] [-from SEQ] JOB_ID", "inferq watch -from 3 JOB_ID"},
	{"replay", "run a failed job again under its id, or a model's failed jobs (dead letters)",
		"inferq replay JOB_ID | inferq replay -model M [-since 1h] [-limit 100]", "inferq replay -model simple -since 1h"},
	{"models", "list the models with their config and live stats",
		"inferq models [-o table|json] [MODEL]", "inferq models -o json simple"},
	{"models apply", "register model configs in the live registry (a broker with registry: true; admin scope)",
		"inferq models apply -f FILE", "inferq models apply -f model.yaml"},
	{"models rm", "retire a model, or one version of it, from the live registry; it drains first (admin scope)",
		"inferq models rm MODEL[@VERSION]", "inferq models rm echo@1"},
	{"stats", "print live queue figures per model",
		"inferq stats [-o table|json] [MODEL]", "inferq stats"},
	{"version", "print inferq's version and the Go toolchain that built it",
		"inferq version | inferq --version", ""},
}

func known(name string) bool {
	for _, c := range commands {
		if c.name == name {
			return true
		}
	}
	return false
}

func lookup(name string) command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return command{name: name, summary: name, usage: "inferq " + name + " [flags]"}
}

// Usage is what `inferq -h` prints.
func Usage() string {
	var b strings.Builder
	b.WriteString("inferq is an asynchronous inference broker; this one binary runs it for development (dev)\nand talks to a running one (the other commands).\n\nusage: inferq <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-13s %s\n", c.name, c.summary)
	}
	b.WriteString(`
examples:
  inferq dev
  inferq submit -text hello -params '{"max_tokens":8}' -wait 30s repeat
  inferq watch JOB_ID

Client commands read INFERQ_URL (default http://127.0.0.1:8080), INFERQ_TOKEN and INFERQ_NATS_URL.
Exit codes: 0 ok, 1 the job failed or the request was refused, 2 usage, 3 -wait ran out.

Run 'inferq <command> -h' for a command's flags.
`)
	return b.String()
}

// VersionLine is what --version prints: "<name> <version> (<go version>)".
func VersionLine(name string) string { return service.VersionLine(name) }

// SignalContext ends on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) { return service.SignalContext() }

// Main is the whole of the inferq binary but the signal handling: it runs the
// command named by args[0] and returns the exit code. ctx ends long-running
// commands (dev, watch, get -wait).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage())
		return ExitUsage
	}
	switch args[0] {
	case "dev":
		return Dev(ctx, args[1:], stdout, stderr)
	case "models":
		if len(args) > 1 && (args[1] == "apply" || args[1] == "rm") {
			return Client(ctx, "models "+args[1], args[2:], stdout, stderr)
		}
		return Client(ctx, args[0], args[1:], stdout, stderr)
	case "submit", "get", "watch", "replay", "stats":
		return Client(ctx, args[0], args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, VersionLine("inferq"))
		return ExitOK
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" && known(strings.Join(args[1:], " ")) && args[1] != "version" {
			return Main(ctx, append(args[1:len(args):len(args)], "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, Usage())
		return ExitOK
	}
	fmt.Fprintf(stderr, "inferq: unknown command %q\n\n%s", args[0], Usage())
	return ExitUsage
}

// newFlags makes a command's flag set; its help starts with the command's
// one-line summary, then the usage line, an example and the flags.
func newFlags(name string) *flag.FlagSet {
	c := lookup(name)
	fs := flag.NewFlagSet("inferq "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "inferq %s: %s\n\nusage: %s\n", c.name, c.summary, c.usage)
		if c.example != "" {
			fmt.Fprintf(w, "example: %s\n", c.example)
		}
		fmt.Fprintf(w, "\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parse reads a command's flags, as every inferq binary does
// (service.ParseFlags). ok says whether to go on.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	return service.ParseFlags(fs, args, stdout, stderr)
}

// usageErr reports wrong arguments after the flags with the command's usage
// line, and returns exit 2.
func usageErr(stderr io.Writer, name, problem string) int {
	fmt.Fprintf(stderr, "inferq %s: %s\nusage: %s\n", name, problem, lookup(name).usage)
	return ExitUsage
}
