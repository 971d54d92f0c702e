// Command ingress runs inferq's public HTTP API alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/stack"
)

func main() {
	os.Exit(cli.RunService("ingress", stack.Components{Ingress: true}, os.Args[1:], os.Stderr))
}
