// Command resultsvc runs inferq's resultsvc alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides. It links no other
// component.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/resultsvc"
	"github.com/inferq/inferq/internal/service"
)

func main() {
	os.Exit(service.Main(service.Spec{Name: "resultsvc", Start: resultsvc.Start(nil),
		Admin: func(c *config.Config) *string { return &c.ResultSvc.AdminListen }}, os.Args[1:], os.Stdout, os.Stderr))
}
