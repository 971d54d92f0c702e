package console

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// TestWorkerReadsTheHeartbeat: the console's Worker decodes every field of
// the worker agent's heartbeat (the ingress may not link the agent, so it
// keeps its own copy of the JSON shape; this keeps the two in step).
func TestWorkerReadsTheHeartbeat(t *testing.T) {
	hb := agent.Heartbeat{Model: "simple", Worker: "gpu-0", Device: "cuda:0", Ready: true, Capacity: 32, MaxInflight: 2,
		InFlight: 1, Batches: 42, Time: time.Unix(1_800_000_000, 0).UTC(),
		Generation: &agent.Generation{Continuous: true, RunningSeqs: 2, FreeSlots: 6, TokensPerSecond: 12.5, TTFTMillis: 3, InterTokenMs: 1}}
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	var w Worker
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	mine, _ := json.Marshal(w)
	_ = json.Unmarshal(mine, &back)
	var want map[string]any
	_ = json.Unmarshal(b, &want)
	if !reflect.DeepEqual(back, want) {
		t.Errorf("console.Worker %s, heartbeat %s", mine, b)
	}
}
