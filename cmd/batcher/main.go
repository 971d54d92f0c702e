// Command batcher runs inferq's batcher alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/stack"
)

func main() {
	os.Exit(cli.RunService("batcher", stack.Components{Batcher: true}, os.Args[1:], os.Stderr))
}
