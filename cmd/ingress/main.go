// Command ingress runs inferq's ingress alone, configured from one YAML file
// (--config) with INFERQ_* environment and flag overrides. It links no other
// component.
package main

import (
	"os"

	"github.com/inferq/inferq/internal/ingress"
	"github.com/inferq/inferq/internal/natsauth"
	"github.com/inferq/inferq/internal/service"
)

func main() {
	os.Exit(service.Main(service.Spec{Name: "ingress", Start: service.Join(ingress.Start(nil, nil), natsauth.Start)}, os.Args[1:], os.Stdout, os.Stderr))
}
