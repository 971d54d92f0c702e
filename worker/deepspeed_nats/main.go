// Command deepspeed_nats is the GPU worker agent: it pulls batches for its
// models from JetStream and runs them (the built-in test models in process,
// real models through the Python runner in ./python). Configured from one
// YAML file (--config) with INFERQ_* environment and flag overrides. It links
// the agent (./agent) and what every service shares, and no other component.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

func main() {
	os.Exit(service.Main(service.Spec{Name: "worker", Start: agent.Start,
		Admin: func(c *config.Config) *string { return &c.Worker.AdminListen }}, os.Args[1:], os.Stdout, os.Stderr))
}
