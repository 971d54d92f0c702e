// Command resultsvc runs inferq's resultsvc alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/stack"
)

func main() {
	os.Exit(cli.RunService("resultsvc", stack.Components{ResultSvc: true}, os.Args[1:], os.Stderr))
}
