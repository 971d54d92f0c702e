// Command deepspeed_nats is the GPU worker agent: it pulls batches for its
// models from JetStream and runs them (the built-in test models in process,
// real models through the Python runner in ./python). Configured from one
// YAML file (--config) with INFERQ_* environment and flag overrides.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/stack"
)

func main() {
	os.Exit(cli.RunService("worker", stack.Components{Worker: true}, os.Args[1:], os.Stderr))
}
