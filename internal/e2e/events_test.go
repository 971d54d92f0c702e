package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/testutil"
)

type sseEvent struct {
	ID, Event, Data string
}

// readSSE reads events from url (resuming after lastID if set) and calls
// keep for each; it stops when keep returns false or the stream ends.
func readSSE(t *testing.T, url, lastID string, keep func(sseEvent) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" {
				if ev.ID == "" {
					t.Fatalf("event without id: %+v", ev)
				}
				if !keep(ev) {
					return
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		}
	}
}

// TestEventsResumeExactly: a client that disconnects after k events and
// resumes with Last-Event-ID gets exactly the rest, for hundreds of tokens,
// read from JetStream (KV store) or from Redis's token log.
func TestEventsResumeExactly(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "kv", true: "redis"}[redis], func(t *testing.T) { testEventsResume(t, redis) })
	}
}

func testEventsResume(t *testing.T, withRedis bool) {
	s := startStack(t, withRedis, nil)
	const n = 300
	acc := s.submit(t, "repeat", `{"text_input":"inferq!","parameters":{"max_tokens":300,"interval_ms":1}}`)
	url := s.URL + "/v1/jobs/" + acc.ID + "/events"
	var events []sseEvent
	last := ""
	for _, k := range []int{1, 40, 100} { // three disconnects at different points
		got := 0
		readSSE(t, url, last, func(e sseEvent) bool {
			events = append(events, e)
			last = e.ID
			got++
			return got < k
		})
	}
	done := false
	readSSE(t, url, last, func(e sseEvent) bool {
		events = append(events, e)
		done = e.Event == "result" || e.Event == "error"
		return true
	})
	if !done {
		t.Fatal("stream ended without a result event")
	}
	var text strings.Builder
	seq, statuses, ids := uint64(0), []string{}, map[string]bool{}
	for _, e := range events {
		if ids[e.ID] {
			t.Fatalf("event id %s repeated", e.ID)
		}
		ids[e.ID] = true
		switch e.Event {
		case "token":
			var tok struct {
				Seq  uint64 `json:"seq"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal([]byte(e.Data), &tok); err != nil {
				t.Fatal(err)
			}
			if tok.Seq != seq+1 {
				t.Fatalf("token seq %d after %d: lost or repeated", tok.Seq, seq)
			}
			seq = tok.Seq
			text.WriteString(tok.Text)
		case "status":
			var st struct{ Status string }
			_ = json.Unmarshal([]byte(e.Data), &st)
			statuses = append(statuses, st.Status)
		}
	}
	if seq != n {
		t.Errorf("got %d tokens, want %d", seq, n)
	}
	want := strings.Repeat("inferq!", n/7+1)[:n]
	if text.String() != want {
		t.Errorf("streamed text %q, want %q", text.String(), want)
	}
	last1 := events[len(events)-1]
	var rec jobRecord
	if err := json.Unmarshal([]byte(last1.Data), &rec); err != nil || rec.Status != "succeeded" || rec.ID != acc.ID {
		t.Errorf("result event %s", last1.Data)
	}
	if len(statuses) == 0 || statuses[len(statuses)-1] != "running" {
		t.Errorf("statuses %v, want ... running", statuses)
	}
	if withRedis { // resultsvc copied every token into the job's token log
		opt, err := redis.ParseURL(s.Cfg.Redis.URL)
		if err != nil {
			t.Fatal(err)
		}
		rc := redis.NewClient(opt)
		defer rc.Close()
		testutil.Eventually(t, 5*time.Second, func() bool {
			return rc.XLen(t.Context(), "inferq:job:{"+acc.ID+"}:tokens").Val() == n
		}, "token log holds every token")
	}
}

// TestCancelStopsGeneration: DELETE answers 202, the job ends cancelled
// well before its tokens would have run out, and a second DELETE is 409.
func TestCancelStopsGeneration(t *testing.T) {
	s := startStack(t, false, nil)
	acc := s.submit(t, "repeat", `{"text_input":"x","parameters":{"max_tokens":2000,"interval_ms":5}}`) // 10s if not stopped
	readSSE(t, s.URL+"/v1/jobs/"+acc.ID+"/events", "", func(e sseEvent) bool { return e.Event != "token" })
	start := time.Now()
	if code, _ := do(t, "DELETE", s.URL+"/v1/jobs/"+acc.ID, nil, nil); code != http.StatusAccepted {
		t.Fatalf("cancel: status %d", code)
	}
	rec := s.wait(t, acc.ID)
	if rec.Status != "cancelled" || rec.Error == nil || rec.Error.Code != "cancelled" {
		t.Fatalf("record %+v", rec)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("cancel took %v", el)
	}
	if code, _ := do(t, "DELETE", s.URL+"/v1/jobs/"+acc.ID, nil, nil); code != http.StatusConflict {
		t.Errorf("second cancel: status %d, want 409", code)
	}
	// The worker is free again: a new job runs at once.
	if rec := s.wait(t, s.submit(t, "repeat", `{"text_input":"ok","parameters":{"max_tokens":2}}`).ID); rec.Status != "succeeded" {
		t.Errorf("next job %+v", rec)
	}
}
