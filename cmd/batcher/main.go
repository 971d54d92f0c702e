// Command batcher runs inferq's batcher alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides. It links no other
// component.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/service"
)

func main() {
	os.Exit(service.Main(service.Spec{Name: "batcher", Start: batcher.Start,
		Admin: func(c *config.Config) *string { return &c.Batcher.AdminListen }}, os.Args[1:], os.Stdout, os.Stderr))
}
