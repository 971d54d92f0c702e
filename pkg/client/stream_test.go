package client_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/pkg/client"
)

// cutter is an http.RoundTripper that cuts the first `cuts` event streams
// it carries in the middle of their (after+1)th event, as a dropped
// connection does: the client has seen `after` whole events and part of
// the next.
type cutter struct {
	mu    sync.Mutex
	cuts  int
	after int
	seen  []string // the Last-Event-ID of each stream request
	// refuse fails every stream request after the cut ones, as an
	// unreachable ingress does.
	refuse bool
}

func (c *cutter) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/events") {
		return http.DefaultTransport.RoundTrip(r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, r.Header.Get("Last-Event-ID"))
	if c.refuse && c.cuts == 0 {
		return nil, errors.New("connection refused (cutter)")
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if c.cuts > 0 {
		c.cuts--
		resp.Body = &cutBody{rc: resp.Body, events: c.after}
	}
	return resp, nil
}

// cutBody passes `events` whole events, then the first bytes of the next,
// then fails as a reset connection does.
type cutBody struct {
	rc     io.ReadCloser
	events int
	buf    bytes.Buffer
	out    []byte
	cut    bool
}

func (b *cutBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.cut {
			return 0, io.ErrUnexpectedEOF
		}
		chunk := make([]byte, 4096)
		n, err := b.rc.Read(chunk)
		b.buf.Write(chunk[:n])
		// Release whole events; cut inside the one after the last allowed.
		for b.events > 0 {
			k := bytes.Index(b.buf.Bytes(), []byte("\n\n"))
			if k < 0 {
				break
			}
			ev := b.buf.Next(k + 2)
			b.out = append(b.out, ev...)
			if !bytes.HasPrefix(ev, []byte(":")) {
				b.events--
			}
		}
		if b.events == 0 && b.buf.Len() > 0 {
			part := b.buf.Bytes()
			b.out = append(b.out, part[:max(1, len(part)/2)]...) // a partial event, with its id line
			b.cut = true
		}
		if err != nil && len(b.out) == 0 {
			return 0, err
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *cutBody) Close() error { return b.rc.Close() }

// TestStreamResumesAfterDrop: a generate job's event stream whose
// connection drops three times in the middle of an event resumes each time
// from the last whole event, and the client sees every token once, in
// order, then the result; with the token log of Redis and with JetStream's
// INFERQ_TOKENS.
func TestStreamResumesAfterDrop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis bool
	}{{"jetstream", false}, {"redis", true}} {
		t.Run(tc.name, func(t *testing.T) {
			url := startStack(t, tc.redis, stack.All, nil)
			cut := &cutter{cuts: 3, after: 4}
			c := newClient(t, url, client.WithHTTPClient(&http.Client{Transport: cut}))
			ctx := ctxFor(t, 60*time.Second)
			const n = 24
			sub, err := c.Submit(ctx, "repeat", client.Generate{Text: "abcdef", Parameters: map[string]any{"max_tokens": n, "interval_ms": 20}})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Stream(ctx, sub.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var seqs []uint64
			var text strings.Builder
			var ids []string
			var last *client.Event
			for {
				ev, err := st.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %d tokens: %v", len(seqs), err)
				}
				ids = append(ids, ev.ID)
				if ev.Token != nil {
					seqs = append(seqs, ev.Token.Seq)
					text.WriteString(ev.Token.Text)
				}
				last = ev
			}
			want := strings.Repeat("abcdef", n/6)
			if text.String() != want || len(seqs) != n {
				t.Errorf("tokens %q (seqs %v), want %q once each", text.String(), seqs, want)
			}
			for k, s := range seqs {
				if s != uint64(k+1) {
					t.Fatalf("token sequence %v: lost or repeated", seqs)
				}
			}
			if last == nil || last.Type != "result" || last.Job.Result.Text() != want {
				t.Errorf("last event %+v, want the result", last)
			}
			for k := 1; k < len(ids); k++ {
				if ids[k] == ids[k-1] {
					t.Errorf("event id %s twice in a row: an event repeated (%v)", ids[k], ids)
				}
			}
			cut.mu.Lock()
			defer cut.mu.Unlock()
			if st.Resumed() != 3 || len(cut.seen) != 4 || cut.seen[0] != "" || cut.seen[1] == "" {
				t.Errorf("resumed %d times with Last-Event-IDs %q; want 3 resumptions, each from the last event", st.Resumed(), cut.seen)
			}
		})
	}
}

// TestStreamGivesUp: a stream whose reconnections all fail ends with
// ErrStreamEnded after WithStreamReconnects tries, not for ever.
func TestStreamGivesUp(t *testing.T) {
	url := startStack(t, false, stack.All, nil)
	cut := &cutter{cuts: 1, after: 2, refuse: true}
	c := newClient(t, url, client.WithHTTPClient(&http.Client{Transport: cut}), client.WithStreamReconnects(2))
	ctx := ctxFor(t, 30*time.Second)
	sub, err := c.Submit(ctx, "repeat", client.Generate{Text: "a", Parameters: map[string]any{"max_tokens": 200, "interval_ms": 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cancel(ctx, sub.ID)
	st, err := c.Stream(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 2 {
		if _, err := st.Next(); err != nil {
			t.Fatalf("event %d: %v", k, err)
		}
	}
	if _, err := st.Next(); !errors.Is(err, client.ErrStreamEnded) {
		t.Fatalf("third event over a dead link: %v, want ErrStreamEnded", err)
	}
	if _, err := st.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
	cut.mu.Lock()
	defer cut.mu.Unlock()
	if len(cut.seen) != 3 {
		t.Errorf("%d stream requests, want the first and 2 reconnections", len(cut.seen))
	}
}
