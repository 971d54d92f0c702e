package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one Server-Sent Event of a job's stream (GET
// /v1/jobs/{id}/events).
type Event struct {
	// ID is the event's id, "<rank>-<seq>": where the stream is. A stream
	// resumed from it (StreamFrom) gets exactly the events after this one.
	ID string
	// Type is "status", "token", "result" (the job succeeded) or "error"
	// (it failed, was cancelled or expired); the last two end the stream.
	Type    string
	Status  Status    // status and error events
	Attempt int       // status events
	Token   *Token    // token events
	Job     *Job      // the result event: the job's record
	Error   *JobError // the error event: the job's error
	Data    json.RawMessage
}

// Token is one generated token.
type Token struct {
	Seq     uint64 `json:"seq"` // 1, 2, ... within the job's attempt
	Text    string `json:"text"`
	TokenID int64  `json:"token_id"`
}

// StreamOption sets something of one Stream.
type StreamOption func(*Stream)

// StreamFrom resumes a stream after the event with this id (an Event.ID
// from an earlier stream of the same job).
func StreamFrom(lastEventID string) StreamOption {
	return func(s *Stream) { s.lastID = lastEventID }
}

// Stream reads a job's events in order. When the connection drops before
// the job's last event, Next reconnects with Last-Event-ID and goes on
// where it was: no event is lost or repeated. A Stream is for one
// goroutine.
type Stream struct {
	c      *Client
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	body    io.ReadCloser
	r       *bufio.Reader
	lastID  string
	done    atomic.Bool // closed: Close, ctx, or the last event
	resumed int         // reconnections so far
	mu      sync.Mutex
}

// maxEvent bounds one event's size (a result event carries the job's
// record, results included).
const maxEvent = 64 << 20

// Stream opens the job's event stream. Errors the broker answers at once
// (ErrNotFound, ErrUnauthorized, a bad StreamFrom id as ErrInvalid) are
// returned here; later ones by Next. ctx bounds the whole stream; Close
// ends it early.
func (c *Client) Stream(ctx context.Context, id string, opts ...StreamOption) (*Stream, error) {
	if id == "" {
		return nil, localError("empty job id")
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &Stream{c: c, id: id, ctx: sctx, cancel: cancel}
	for _, o := range opts {
		o(s)
	}
	if err := s.connect(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// LastEventID is the id of the last event Next returned (or the
// StreamFrom id before any): resume from it with StreamFrom.
func (s *Stream) LastEventID() string { return s.lastID }

// Resumed is how many times the stream has reconnected after a drop.
func (s *Stream) Resumed() int { return s.resumed }

// Close ends the stream and frees its connection.
func (s *Stream) Close() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
	s.done.Store(true)
	return nil
}

// connect opens the stream after s.lastID.
func (s *Stream) connect() error {
	k := call{method: http.MethodGet, path: "/v1/jobs/" + pathEscape(s.id) + "/events", header: http.Header{}}
	k.header.Set("Accept", "text/event-stream")
	if s.lastID != "" {
		k.header.Set("Last-Event-ID", s.lastID)
	}
	resp, err := s.c.send(s.ctx, k)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return apiError(resp, body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Load() {
		resp.Body.Close()
		return io.EOF
	}
	s.body, s.r = resp.Body, bufio.NewReader(resp.Body)
	return nil
}

// Next returns the next event, waiting for it. After the result or error
// event it returns io.EOF. A connection that drops is resumed (up to
// WithStreamReconnects times in a row without an event in between); when
// that fails, Next returns the error, wrapped with ErrStreamEnded.
func (s *Stream) Next() (*Event, error) {
	if s.done.Load() {
		return nil, io.EOF
	}
	failures := 0
	for {
		if s.r != nil {
			ev, err := s.read()
			if err == nil {
				if ev.Type == "result" || ev.Type == "error" {
					s.Close()
				}
				return ev, nil
			}
			if s.ctx.Err() != nil {
				s.Close()
				return nil, s.ctx.Err()
			}
			if !errors.Is(err, errDropped) {
				s.Close()
				return nil, err
			}
			s.drop()
		}
		if failures >= s.c.reconnects {
			s.Close()
			return nil, fmt.Errorf("%w: job %s after event %q: %d reconnections failed", ErrStreamEnded, s.id, s.lastID, failures)
		}
		if failures > 0 || s.resumed > 0 {
			if err := s.pause(failures); err != nil {
				s.Close()
				return nil, err
			}
		}
		failures++
		err := s.connect()
		if err == nil {
			s.resumed++
			continue
		}
		var ae *APIError
		if s.ctx.Err() != nil || errors.Is(err, io.EOF) || errors.As(err, &ae) && !ae.Temporary() {
			s.Close()
			if s.ctx.Err() != nil {
				return nil, s.ctx.Err()
			}
			return nil, err
		}
	}
}

// pause waits before reconnection number n+1: a short backoff, so that a
// stream dropped by an ingress that drains moves to another at once.
func (s *Stream) pause(n int) error {
	d := min(50*time.Millisecond<<n, 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-t.C:
		return nil
	}
}

// drop closes the current connection.
func (s *Stream) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.body != nil {
		s.body.Close()
	}
	s.body, s.r = nil, nil
}

// errDropped is a connection that ended before the job's last event.
var errDropped = errors.New("event stream dropped")

// read reads one event from the connection.
func (s *Stream) read() (*Event, error) {
	var id, typ string
	var data bytes.Buffer
	hasData := false
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(long) <= maxEvent {
				line, err = s.r.ReadSlice('\n')
				long = append(long, line...)
			}
			if len(long) > maxEvent {
				return nil, fmt.Errorf("inferq client: job %s: an event over %d bytes", s.id, maxEvent)
			}
			line = long
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errDropped, err) // a partial event is dropped with it
		}
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			if !hasData && typ == "" {
				continue
			}
			ev, err := s.dispatch(id, typ, data.Bytes())
			if err != nil {
				return nil, err
			}
			if ev == nil {
				return nil, errDropped // the stream failed on the server's side: resume
			}
			return ev, nil
		}
		if text[0] == ':' {
			continue // a comment: the keepalive
		}
		field, value, _ := strings.Cut(text, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
			if data.Len() > maxEvent {
				return nil, fmt.Errorf("inferq client: job %s: an event over %d bytes", s.id, maxEvent)
			}
		}
	}
}

// dispatch decodes one event. A nil event is an error the stream itself
// hit on the server (not the job's): the caller resumes.
func (s *Stream) dispatch(id, typ string, data []byte) (*Event, error) {
	ev := &Event{ID: id, Type: typ, Data: append(json.RawMessage(nil), data...)}
	bad := func(err error) (*Event, error) {
		return nil, fmt.Errorf("inferq client: job %s: unreadable %s event %q: %w", s.id, typ, data, err)
	}
	switch typ {
	case "status":
		var v struct {
			Status  Status `json:"status"`
			Attempt int    `json:"attempt"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return bad(err)
		}
		ev.Status, ev.Attempt = v.Status, v.Attempt
	case "token":
		ev.Token = &Token{}
		if err := json.Unmarshal(data, ev.Token); err != nil {
			return bad(err)
		}
	case "result":
		job, err := decodeJob(ev.Data)
		if err != nil {
			return bad(err)
		}
		ev.Job, ev.Status = job, job.Status
	case "error":
		var v struct {
			Status Status    `json:"status"`
			Error  *JobError `json:"error"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return bad(err)
		}
		if v.Status == "" {
			return nil, nil // "token stream unavailable": not the job's end
		}
		ev.Status, ev.Error = v.Status, v.Error
	}
	if id != "" {
		s.lastID = id
	}
	return ev, nil
}
