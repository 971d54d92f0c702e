package service

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/obs"
)

// TestEnvReadiness: /readyz fails on a dependency unless it is Optional,
// and on a gate; the ingress's check (Reachable) leaves gates out.
func TestEnvReadiness(t *testing.T) {
	down := func(context.Context) error { return errors.New("down") }
	up := func(context.Context) error { return nil }
	e := &Env{Checks: map[string]obs.Check{"nats": up, "store": down}, Optional: map[string]bool{}, Gates: map[string]obs.Check{}}
	if err := e.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("store down, not optional: Ready = %v", err)
	}
	e.Optional["store"] = true
	if err := e.Ready(t.Context()); err != nil {
		t.Errorf("store down but optional: Ready = %v", err)
	}
	e.Gates["model"] = down
	if err := e.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "model") {
		t.Errorf("model gate down: Ready = %v", err)
	}
	if err := e.Reachable(t.Context()); err != nil {
		t.Errorf("Reachable follows a gate: %v", err)
	}
	e.Checks["nats"] = down
	if err := e.Reachable(t.Context()); err == nil {
		t.Error("nats down: Reachable = nil")
	}
}
