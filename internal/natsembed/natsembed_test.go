package natsembed_test

import (
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/pkg/jetstream"
)

var models = []provision.ModelPolicy{{Name: "simple", MaxBatchSize: 8, MaxDeliver: 3}}

func TestEmbeddedInProcess(t *testing.T) {
	srv, err := natsembed.Run(natsembed.Config{Port: 0, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.ClientURL() != "" {
		t.Errorf("port 0 should expose no URL, got %q", srv.ClientURL())
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if err := provision.All(t.Context(), js, jetstream.DefaultTopology(), models); err != nil {
		t.Fatal(err)
	}
}
