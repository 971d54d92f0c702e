package e2e

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// TestWorkerTinyGPTEndToEnd runs the real generative model through the
// whole stack: HTTP job, batcher, worker agent, Python runner (torch), and
// back. The tokens streamed on inferq.tokens.<tenant>.<job> make exactly
// the final text, and one seed gives one text, in one batch or another.
// A missing torch fails the test: the runner is part of the product.
func TestWorkerTinyGPTEndToEnd(t *testing.T) {
	if _, err := agent.FindPython(); err != nil {
		t.Fatalf("tiny-gpt runs in the Python runner, which needs torch: %v", err)
	}
	s := startStack(t, false, func(c *config.Config) {
		c.Models = []config.Model{config.TinyGPT()}
		c.Worker.Name = "e2e-gpt"
	})
	sub, err := s.NATS.Conn.SubscribeSync("inferq.tokens.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.NATS.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	const seeded = `{"text_input":"The broker said","parameters":{"max_tokens":24,"temperature":0.8,"top_k":40,"seed":1234}}`
	a := s.submit(t, "tiny-gpt", seeded)
	b := s.submit(t, "tiny-gpt", seeded) // most likely batched with a
	c := s.submit(t, "tiny-gpt", `{"text_input":"Hello","parameters":{"max_tokens":12,"temperature":0}}`)
	text := map[string]string{}
	for _, acc := range []accepted{a, b, c} {
		text[acc.ID] = generated(t, s.wait(t, acc.ID))
	}
	d := s.submit(t, "tiny-gpt", seeded) // a batch of its own
	text[d.ID] = generated(t, s.wait(t, d.ID))
	if text[a.ID] != text[b.ID] || text[a.ID] != text[d.ID] {
		t.Errorf("one seed, three texts: %q, %q, %q", text[a.ID], text[b.ID], text[d.ID])
	}

	// Every job's tokens, as any NATS client sees them, make its text.
	streamed := map[string]string{}
	final := map[string]bool{}
	lastSeq := map[string]uint64{}
	for len(final) < len(text) {
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("tokens: %v (jobs with a final token: %v)", err, final)
		}
		var tok natsToken
		if err := json.Unmarshal(msg.Data, &tok); err != nil {
			t.Fatalf("token %q: %v", msg.Data, err)
		}
		if _, ok := text[tok.Job]; !ok || final[tok.Job] {
			t.Fatalf("token for job %s on %s after its final token or for no job of ours", tok.Job, msg.Subject)
		}
		if want := "inferq.tokens.default." + tok.Job; msg.Subject != want || msg.Header.Get("Inferq-Seq") != strconv.FormatUint(tok.Seq, 10) {
			t.Errorf("token %d of %s: subject %s (want %s), header %v", tok.Seq, tok.Job, msg.Subject, want, msg.Header)
		}
		if tok.Seq != lastSeq[tok.Job]+1 {
			t.Errorf("job %s: token seq %d after %d", tok.Job, tok.Seq, lastSeq[tok.Job])
		}
		lastSeq[tok.Job] = tok.Seq
		streamed[tok.Job] += tok.Text
		final[tok.Job] = tok.Final
		if !tok.Final {
			delete(final, tok.Job)
		}
	}
	for id, want := range text {
		if streamed[id] != want {
			t.Errorf("job %s: tokens make %q, final text %q", id, streamed[id], want)
		}
	}
	checkTokenSeqs(t, s, text)

	// The worker's heartbeat names the device the runner loaded on.
	kv, err := s.NATS.JS.KeyValue(t.Context(), "inferq_workers")
	if err != nil {
		t.Fatal(err)
	}
	var hb agent.Heartbeat
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, err := kv.Get(t.Context(), agent.HeartbeatKey("tiny-gpt", "e2e-gpt"))
		return err == nil && json.Unmarshal(e.Value(), &hb) == nil && hb.Ready
	}, "no ready heartbeat for tiny-gpt")
	if !regexp.MustCompile(`^(cpu|cuda:\d+)$`).MatchString(hb.Device) || hb.Capacity != 8 || hb.Model != "tiny-gpt" {
		t.Errorf("heartbeat %+v", hb)
	}
	t.Logf("tiny-gpt ran on %s; texts %q", hb.Device, text)
}

// generated is a succeeded generate job's text_output.
func generated(t *testing.T, rec jobRecord) string {
	t.Helper()
	if rec.Status != "succeeded" || rec.Result == nil || len(rec.Result.Outputs) != 1 || rec.Result.Outputs[0].Name != "text_output" {
		t.Fatalf("job %s: %+v (error %+v)", rec.ID, rec, rec.Error)
	}
	var out []string
	if err := json.Unmarshal(rec.Result.Outputs[0].Data, &out); err != nil || len(out) != 1 || out[0] == "" {
		t.Fatalf("job %s: text_output %s", rec.ID, rec.Result.Outputs[0].Data)
	}
	return out[0]
}

// checkTokenSeqs reads each job's tokens back from INFERQ_TOKENS: seqs
// 1..n, once each, the last one final.
func checkTokenSeqs(t *testing.T, s *Stack, text map[string]string) {
	t.Helper()
	for id := range text {
		cons, err := s.NATS.JS.OrderedConsumer(t.Context(), "INFERQ_TOKENS", jetstreamOrdered("inferq.tokens.default."+id))
		if err != nil {
			t.Fatal(err)
		}
		var seqs []string
		for {
			msg, err := cons.Next(natsjs.FetchMaxWait(500 * time.Millisecond))
			if err != nil {
				break
			}
			seqs = append(seqs, msg.Headers().Get("Inferq-Seq"))
		}
		want := make([]string, len(seqs))
		for i := range want {
			want[i] = strconv.Itoa(i + 1)
		}
		if len(seqs) == 0 || strings.Join(seqs, ",") != strings.Join(want, ",") {
			t.Errorf("job %s: stored token seqs %v", id, seqs)
		}
	}
}
