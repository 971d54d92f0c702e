package inferq_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinariesLinkOnlyTheirComponent: each service binary links its own
// component and what every service shares, not the others, nor the embedded
// nats-server (which belongs to `inferq dev` and the tests), nor Echo, which
// only the ingress serves HTTP with (internal/auth/authecho).
func TestBinariesLinkOnlyTheirComponent(t *testing.T) {
	const mod = "github.com/inferq/inferq/"
	server := "github.com/nats-io/nats-server/"
	echo := "github.com/labstack/echo"
	forbidden := map[string][]string{
		"./worker/deepspeed_nats": {server, echo, "github.com/redis/go-redis/", mod + "internal/ingress", mod + "internal/batcher",
			mod + "internal/resultsvc", mod + "internal/results", mod + "internal/stack", mod + "internal/natsembed"},
		"./cmd/ingress": {server, mod + "internal/batcher", mod + "internal/resultsvc", mod + "worker/deepspeed_nats/agent",
			mod + "internal/stack", mod + "internal/natsembed"},
		"./cmd/batcher": {server, echo, "github.com/redis/go-redis/", mod + "internal/ingress", mod + "internal/resultsvc",
			mod + "worker/deepspeed_nats/agent", mod + "internal/stack"},
		"./cmd/resultsvc": {server, echo, mod + "internal/ingress", mod + "internal/batcher", mod + "worker/deepspeed_nats/agent",
			mod + "internal/stack"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, b) && (strings.HasSuffix(b, "/") || strings.HasPrefix(dep, b+"/")) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
