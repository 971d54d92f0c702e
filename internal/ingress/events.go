package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
)

// cursor is where a client is in a job's event stream, and the SSE id of
// the last event sent: "<rank>-<seq>", the status rank reached (queued 0,
// running 1, terminal 2: lifecycle's Status.Rank) and the last token
// sequence number. A client that
// resumes with Last-Event-ID gets exactly the events after it: statuses of
// a higher rank and tokens of a higher sequence.
type cursor struct {
	rank int
	seq  uint64
}

func (c cursor) String() string { return strconv.Itoa(c.rank) + "-" + strconv.FormatUint(c.seq, 10) }

func parseCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{rank: -1}, nil
	}
	r, q, ok := strings.Cut(s, "-")
	rank, err1 := strconv.Atoi(r)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || rank < 0 || rank > lifecycle.TerminalRank {
		return cursor{}, invalid("Last-Event-ID: want an id this stream sent, like 1-42, got %q", s)
	}
	return cursor{rank: rank, seq: seq}, nil
}

// events handles GET /v1/jobs/{id}/events: Server-Sent Events `status`,
// `token`, then `result` or `error`, then the stream ends.
func (i *Ingress) events(c echo.Context) error {
	rec, err := i.lookup(c)
	if err != nil {
		return err
	}
	cur, err := parseCursor(c.Request().Header.Get("Last-Event-ID"))
	if err != nil {
		return err
	}
	m, _ := i.servedModel(rec.Model)
	generate := m != nil && m.Kind == config.KindGenerate
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()

	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()

	recs := i.watchRecord(ctx, rec)
	var toks <-chan lifecycle.TokenChunk
	subject := i.opt.Topology.TokenSubject(rec.Tenant, rec.ID)
	if generate {
		if toks, err = i.watchTokens(ctx, rec, subject, cur.seq); err != nil {
			return i.sseError(w, cur, "unavailable", "token stream unavailable")
		}
	}
	send := func(event string, next cursor, data any) error {
		cur = next
		return writeSSE(w, event, cur.String(), data)
	}
	f := &follower{i: i, rec: rec, recs: recs, toks: toks, subject: subject}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		if r := f.rec.Status.Rank(); r > cur.rank && !f.rec.Status.Terminal() {
			if err := send("status", cursor{r, cur.seq}, map[string]any{"status": f.rec.Status, "attempt": f.rec.Attempts}); err != nil {
				return nil
			}
		}
		if f.rec.Status.Terminal() {
			if generate {
				f.drain(ctx, &cur, send)
			}
			if f.rec.Status == results.Succeeded {
				rec, err := i.resolved(ctx, f.rec)
				if err != nil {
					var ae *Error
					if !errors.As(err, &ae) {
						ae = apiError(http.StatusServiceUnavailable, "unavailable", err.Error())
					}
					return i.sseError(w, cur, ae.Code, ae.Message)
				}
				_ = send("result", cursor{lifecycle.TerminalRank, cur.seq}, rec)
			} else {
				_ = send("error", cursor{lifecycle.TerminalRank, cur.seq}, map[string]any{"status": f.rec.Status, "error": f.rec.Error})
			}
			return nil
		}
		switch f.next(ctx, &cur, send, keepalive.C) {
		case stepEnd:
			return nil
		case stepTick:
			obs.ExtendWrite(w, sseWriteTimeout)
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		}
	}
}

// follower walks one job's record changes and tokens in order, for the
// two SSE endpoints (/v1 events and OIP generate_stream).
type follower struct {
	i       *Ingress
	rec     *results.Record
	recs    <-chan *results.Record
	toks    <-chan lifecycle.TokenChunk // nil: the job has no tokens
	subject string
	lastSeq uint64 // sequence of the last token received
}

type step int

const (
	stepRecord step = iota // f.rec changed
	stepToken              // a token was sent
	stepTick               // the tick channel fired
	stepEnd                // the client went away or the watch ended
)

// next waits for one thing to happen: a new record, a token (passed to
// sendToken), or a tick.
func (f *follower) next(ctx context.Context, cur *cursor, send func(string, cursor, any) error, tick <-chan time.Time) step {
	for {
		select {
		case <-ctx.Done():
			return stepEnd
		case r, ok := <-f.recs:
			if !ok {
				return stepEnd
			}
			f.rec = r
			return stepRecord
		case t, ok := <-f.toks:
			if !ok {
				f.toks = nil
				continue
			}
			f.lastSeq = max(f.lastSeq, t.Seq)
			if f.i.sendToken(t, cur, send) != nil {
				return stepEnd
			}
			return stepToken
		case <-tick:
			return stepTick
		}
	}
}

// drain sends the tokens still on their way when the job ended: every
// token is stored in INFERQ_TOKENS before the job's result, so the last
// message on the job's subject says which sequence ends the stream.
func (f *follower) drain(ctx context.Context, cur *cursor, send func(string, cursor, any) error) {
	stream, err := f.i.opt.JS.Stream(ctx, f.i.opt.Topology.TokensStream())
	if err != nil {
		return
	}
	last, err := stream.GetLastMsgForSubject(ctx, f.subject)
	if err != nil {
		return // no tokens at all, or the stream is unreachable
	}
	end, ok := lifecycle.TokenSeq(last.Header)
	if !ok || end <= cur.seq {
		return
	}
	if a := lifecycle.TokenAttempt(last.Header); a != 0 && a != f.rec.Attempts {
		return // the last tokens are an older attempt's
	}
	deadline := time.After(5 * time.Second)
	for f.lastSeq < end {
		select {
		case t, ok := <-f.toks:
			if !ok {
				return
			}
			f.lastSeq = max(f.lastSeq, t.Seq)
			if f.i.sendToken(t, cur, send) != nil {
				return
			}
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sendToken writes a token the client has not seen, after a `running`
// status if the record has not caught up with the worker yet.
func (i *Ingress) sendToken(t lifecycle.TokenChunk, cur *cursor, send func(string, cursor, any) error) error {
	if t.Seq <= cur.seq {
		return nil
	}
	if running := results.Running.Rank(); cur.rank < running {
		if err := send("status", cursor{running, cur.seq}, map[string]any{"status": results.Running}); err != nil {
			return err
		}
	}
	return send("token", cursor{cur.rank, t.Seq}, map[string]any{"seq": t.Seq, "text": t.Text, "token_id": t.TokenID})
}

// watchRecord sends each new status of the job, woken by the store's
// notifications, until it is terminal or ctx ends.
func (i *Ingress) watchRecord(ctx context.Context, rec *results.Record) <-chan *results.Record {
	out := make(chan *results.Record)
	go func() {
		defer close(out)
		last := rec
		for !last.Status.Terminal() {
			r, err := i.opt.Store.Wait(ctx, rec.ID, func(r *results.Record) bool {
				return r.Status != last.Status || r.Attempts != last.Attempts
			}, i.orQueued(rec.ID))
			if err != nil || ctx.Err() != nil {
				return
			}
			select {
			case out <- r:
				last = r
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// watchTokens streams the job's tokens after sequence `after`: from the
// results store's token log when it keeps one (Redis: any number of readers
// cost no JetStream state), else from INFERQ_TOKENS with an ordered consumer.
func (i *Ingress) watchTokens(ctx context.Context, rec *results.Record, subject string, after uint64) (<-chan lifecycle.TokenChunk, error) {
	if log, ok := i.opt.Store.(results.TokenLog); ok {
		return i.watchTokenLog(ctx, log, rec, after), nil
	}
	cons, err := i.opt.JS.OrderedConsumer(ctx, i.opt.Topology.TokensStream(), natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	iter, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	out := make(chan lifecycle.TokenChunk)
	stop := context.AfterFunc(ctx, iter.Stop)
	go func() {
		defer close(out)
		defer stop()
		defer iter.Stop()
		for {
			msg, err := iter.Next()
			if err != nil {
				if errors.Is(err, natsjs.ErrMsgIteratorClosed) || ctx.Err() != nil {
					return
				}
				continue
			}
			t, err := lifecycle.DecodeTokenChunk(msg.Data())
			if err != nil {
				continue
			}
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// watchTokenLog streams the job's tokens from the store's token log, which
// holds them in sequence with no gap, woken by its notifications.
func (i *Ingress) watchTokenLog(ctx context.Context, log results.TokenLog, rec *results.Record, after uint64) <-chan lifecycle.TokenChunk {
	out := make(chan lifecycle.TokenChunk)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			ts, err := log.WaitTokens(ctx, rec.ID, max(rec.Attempts, 1), after)
			if err != nil {
				i.opt.Log.Warn("token log unreadable", "job", rec.ID, "err", err)
				return
			}
			for _, t := range ts {
				select {
				case out <- t:
					after = t.Seq
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (i *Ingress) sseError(w *echo.Response, cur cursor, code, msg string) error {
	_ = writeSSE(w, "error", cur.String(), map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return nil
}

// writeSSE writes one event and flushes it to the client.
// sseWriteTimeout is how long one SSE write may block on a client that does
// not read before the connection is dropped.
const sseWriteTimeout = time.Minute

func writeSSE(w *echo.Response, event, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	obs.ExtendWrite(w, sseWriteTimeout)
	if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", id, event, b); err != nil {
		return err
	}
	w.Flush()
	return nil
}
