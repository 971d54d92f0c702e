package main

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
	"time"
)

// inferqTarget runs jobs through inferq's public HTTP API: POST the job,
// then long-poll GET /v1/jobs/{id}?wait=30s until it is terminal, or, for
// streaming jobs, read GET /v1/jobs/{id}/events. With -prefer-wait the POST
// carries `Prefer: wait=N` and a job that ends in time needs no GET.
type inferqTarget struct {
	base   string
	hc     *http.Client
	prefer string // the Prefer field sent with non-streaming submissions; "" for none
}

// longPoll is the wait asked of each GET; the job's own deadline cuts it.
const longPoll = 30 * time.Second

func newInferqTarget(o options) *inferqTarget {
	t := newAPIClient(o.url, o)
	if o.preferWait > 0 {
		t.prefer = fmt.Sprintf("wait=%d", int64(o.preferWait/time.Second))
	}
	return t
}

// newAPIClient is the HTTP client of inferq and of the HTTP peers, so both
// are driven by the same code with the same connection settings.
func newAPIClient(base string, o options) *inferqTarget {
	conns := o.clients
	if o.mode == "open" {
		conns = o.maxInFlight
	}
	// Each job in flight holds one connection while it long-polls; keep
	// them all idle between jobs rather than re-dialling.
	tr := &http.Transport{MaxIdleConns: 2 * conns, MaxIdleConnsPerHost: 2 * conns, IdleConnTimeout: time.Minute}
	return &inferqTarget{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr}}
}

func (t *inferqTarget) Name() string { return "inferq" }

func (t *inferqTarget) Close() error { t.hc.CloseIdleConnections(); return nil }

// ready fails fast, with the URL, when nothing answers there.
func (t *inferqTarget) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("inferq at %s: %w", t.base, err)
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("inferq at %s is not answering (start it with `go run ./cmd/inferq dev`): %w", t.base, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("inferq at %s is not ready: GET /readyz answered %d", t.base, resp.StatusCode)
	}
	return nil
}

// jobRecord is the part of GET /v1/jobs/{id} the load test reads.
type jobRecord struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result *struct {
		Outputs []tensorJSON `json:"outputs"`
	} `json:"result"`
}

func (r *jobRecord) terminal() bool {
	switch r.Status {
	case "succeeded", "failed", "cancelled", "expired":
		return true
	}
	return false
}

// check turns a terminal record into an outcome kind and detail.
func (r *jobRecord) check(j job) (kind, detail string) {
	if r.Status != "succeeded" {
		detail = "job " + r.ID
		if r.Error != nil {
			detail += ": " + r.Error.Code + ": " + r.Error.Message
		}
		return "job_" + r.Status, detail
	}
	if r.Result == nil {
		return errWrongResult, "job " + r.ID + ": succeeded without a result"
	}
	if err := verifyAnswer(j, r.Result.Outputs); err != nil {
		return errWrongResult, "job " + r.ID + ": " + err.Error()
	}
	return "", ""
}

func (t *inferqTarget) Do(ctx context.Context, j job, start time.Time) outcome {
	sent := time.Now()
	prefer := t.prefer
	if j.stream {
		prefer = ""
	}
	// The accepted body's id, or with Prefer: wait the finished job's record.
	var acc jobRecord
	code, err := t.callPrefer(ctx, http.MethodPost, "/v1/models/"+j.model+"/jobs", j.body, prefer, &acc)
	submit := time.Since(sent)
	switch {
	case err != nil:
		return outcome{kind: errSubmitTransport, detail: err.Error()}
	case code == http.StatusOK && prefer != "" && acc.terminal():
		done := time.Now()
		if kind, detail := acc.check(j); kind != "" {
			return outcome{kind: kind, detail: detail}
		}
		return outcome{done: done, submit: submit}
	case code != http.StatusAccepted || acc.ID == "":
		return outcome{kind: fmt.Sprintf("submit_%d", code), detail: "POST /v1/models/" + j.model + "/jobs"}
	}
	var out outcome
	if j.stream {
		out = t.stream(ctx, j, acc.ID)
	} else {
		out = t.poll(ctx, j, acc.ID)
	}
	out.submit = submit
	return out
}

// poll long-polls the job until it is terminal and checks its answer.
func (t *inferqTarget) poll(ctx context.Context, j job, id string) outcome {
	path := fmt.Sprintf("/v1/jobs/%s?wait=%s", id, longPoll)
	for {
		var rec jobRecord
		code, err := t.call(ctx, http.MethodGet, path, nil, &rec)
		switch {
		case err != nil:
			return outcome{kind: errGetTransport, detail: "job " + id + ": " + err.Error()}
		case code != http.StatusOK:
			return outcome{kind: fmt.Sprintf("get_%d", code), detail: "job " + id}
		case !rec.terminal():
			continue // the wait ended first; ctx bounds the loop
		}
		done := time.Now()
		if kind, detail := rec.check(j); kind != "" {
			return outcome{kind: kind, detail: detail}
		}
		return outcome{done: done}
	}
}

// maxResumes bounds reconnections of one event stream.
const maxResumes = 3

// stream reads the job's Server-Sent Events: tokens in order, then the
// result. A stream cut short is resumed with Last-Event-ID, which the
// contract says continues without loss or repetition.
func (t *inferqTarget) stream(ctx context.Context, j job, id string) outcome {
	var (
		out    outcome
		tokens []streamToken
		lastID string
	)
	for range maxResumes + 1 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/v1/jobs/"+id+"/events", nil)
		if err != nil {
			return outcome{kind: errGetTransport, detail: err.Error()}
		}
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := t.hc.Do(req)
		if err != nil {
			return outcome{kind: errGetTransport, detail: "job " + id + ": events: " + err.Error()}
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return outcome{kind: fmt.Sprintf("get_%d", resp.StatusCode), detail: "job " + id + ": events"}
		}
		var final *jobRecord
		err = readSSE(resp.Body, func(ev sseEvent) error {
			lastID = ev.id
			switch ev.event {
			case "token":
				var tok streamToken
				if err := json.Unmarshal([]byte(ev.data), &tok); err != nil {
					return fmt.Errorf("token event %q: %w", ev.data, err)
				}
				now := time.Now()
				if out.firstToken.IsZero() {
					out.firstToken = now
				}
				out.lastToken = now
				tokens = append(tokens, tok)
			case "result", "error":
				final = &jobRecord{}
				if err := json.Unmarshal([]byte(ev.data), final); err != nil && ev.event == "result" {
					return fmt.Errorf("result event %.60q: %w", ev.data, err)
				}
				final.ID = id
				if ev.event == "error" && (final.Status == "" || final.Status == "succeeded") {
					final.Status = "failed" // an error event without a job status
				}
				return errStreamEnd
			}
			return nil
		})
		resp.Body.Close()
		if final != nil {
			return finishStream(out, j, id, final, tokens)
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && ctx.Err() == nil {
			return outcome{kind: errBadStream, detail: "job " + id + ": " + err.Error()}
		}
		if ctx.Err() != nil {
			return outcome{kind: errGetTransport, detail: "job " + id + ": events: " + ctx.Err().Error()}
		}
	}
	return outcome{kind: errBadStream, detail: fmt.Sprintf("job %s: stream ended %d times without a result", id, maxResumes+1)}
}

// finishStream checks a streamed job's end: the result, then its tokens.
func finishStream(out outcome, j job, id string, final *jobRecord, tokens []streamToken) outcome {
	out.done = time.Now()
	if kind, detail := final.check(j); kind != "" {
		return outcome{kind: kind, detail: detail}
	}
	text, _ := textOutput(final.Result.Outputs) // check has verified it
	if err := verifyTokens(j, tokens, text); err != nil {
		kind := errBadStream
		if errors.Is(err, errWrong) {
			kind = errWrongResult
		}
		return outcome{kind: kind, detail: "job " + id + ": " + err.Error()}
	}
	out.tokens = len(tokens)
	return out
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, event, data string }

// errStreamEnd stops readSSE after the last event the load test wants.
var errStreamEnd = errors.New("end of stream")

// readSSE calls fn for each event in r until r ends or fn returns an error;
// errStreamEnd from fn is a normal end.
func readSSE(r io.Reader, fn func(sseEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if ev.event != "" || len(data) > 0 {
				ev.data = strings.Join(data, "\n")
				if err := fn(ev); err != nil {
					if errors.Is(err, errStreamEnd) {
						return nil
					}
					return err
				}
			}
			ev, data = sseEvent{}, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF // the server closed before the end
}

// call sends one request and decodes a JSON answer into out.
func (t *inferqTarget) call(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	return t.callPrefer(ctx, method, path, body, "", out)
}

// callPrefer is call with a Prefer header field, when prefer is not "".
func (t *inferqTarget) callPrefer(ctx context.Context, method, path string, body []byte, prefer string, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode %.80q: %w", method, path, data, err)
		}
	}
	return resp.StatusCode, nil
}
