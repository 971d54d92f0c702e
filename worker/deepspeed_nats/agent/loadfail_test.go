package agent

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// TestAgentModelLoadFailure: a runner that refuses its model makes the
// worker not ready with the runner's cause in /readyz and in the heartbeat,
// and a batch sent to it fails through the queue's max_deliver within
// moments, with that cause, instead of waiting for a load that fails again.
func TestAgentModelLoadFailure(t *testing.T) {
	const cause = "model fake (torchscript:/no/such.pt): TorchScript file /no/such.pt not found"
	h := newHarness(t, fakeModel())
	a, _, _ := h.agent("w1", func(o *Options) {
		o.NewRunner = func(m *config.Model) (Runner, error) {
			p, err := NewProcess(m, ProcessOptions{
				Command:    []string{os.Args[0], "-test.run=^$"},
				Env:        []string{"INFERQ_FAKE_RUNNER=1", "INFERQ_FAKE_LOAD_ERROR=" + cause},
				PythonPath: t.TempDir(), Log: testLogger(t),
				// Longer than the test: every batch must fail without a new load.
				RestartBackoff: time.Minute, MaxRestartBackoff: time.Minute,
			})
			if err != nil {
				return nil, err
			}
			p.Warm()
			return p, nil
		}
	})
	testutil.Eventually(t, 10*time.Second, func() bool {
		err := a.Ready(t.Context())
		return err != nil && strings.Contains(err.Error(), "model fake did not load") && strings.Contains(err.Error(), cause)
	}, "readiness does not name the model and the cause: %v", a.Ready(t.Context()))

	kv, err := h.nats.JS.KeyValue(t.Context(), h.topo.WorkersBucket())
	if err != nil {
		t.Fatal(err)
	}
	var hb Heartbeat
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, err := kv.Get(t.Context(), HeartbeatKey("fake", "w1"))
		return err == nil && json.Unmarshal(e.Value(), &hb) == nil && hb.Error != ""
	}, "no heartbeat with the load error")
	if hb.Ready || !strings.Contains(hb.Error, cause) {
		t.Errorf("heartbeat %+v", hb)
	}

	t0 := time.Now()
	b := rowsBatch("lf", "fake", [][2]int32{{1, 2}, {3, 4}}, nil)
	h.publish(b)
	h.settled()
	events, _ := h.terminal()
	for _, j := range b.Jobs {
		evs := events[j.Id]
		if len(evs) != 1 || evs[0].Status != inferqpb.Status_STATUS_FAILED || !strings.Contains(evs[0].Error.GetMessage(), cause) {
			t.Errorf("job %s: %v", j.Id, evs)
		}
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the batch took %s to fail", d)
	}
	if st := a.Stats("fake"); st.Released != 2 || st.Failed != 2 {
		t.Errorf("stats %+v: want 2 releases (max_deliver 3) and 2 failed jobs", st)
	}
	t.Logf("batch failed after %s", time.Since(t0))
}

// TestProcessLoadErrorIsRemembered: Start reports the runner's refusal as
// ErrModelLoad, and Describe keeps it as the reason the model is not ready.
func TestProcessLoadErrorIsRemembered(t *testing.T) {
	m := fakeModel()
	p, err := NewProcess(&m, ProcessOptions{Command: []string{os.Args[0], "-test.run=^$"},
		Env:        []string{"INFERQ_FAKE_RUNNER=1", "INFERQ_FAKE_LOAD_ERROR=bad input names"},
		PythonPath: t.TempDir(), Log: testLogger(t), RestartBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	err = p.Start(t.Context())
	if !errors.Is(err, ErrModelLoad) || !errors.Is(err, ErrRunnerUnavailable) || !strings.Contains(err.Error(), "bad input names") {
		t.Fatalf("Start: %v", err)
	}
	if info := p.Describe(); info.Ready || !strings.Contains(info.Error, "bad input names") {
		t.Errorf("Describe: %+v", info)
	}
	t0 := time.Now()
	_, err = p.Run(t.Context(), rowsBatch("x", "fake", [][2]int32{{1, 2}}, nil), nil)
	if !errors.Is(err, ErrModelLoad) || time.Since(t0) > time.Second {
		t.Errorf("Run within the backoff: %v after %s, want the load error at once", err, time.Since(t0))
	}
}
