package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The -http peers put a pipeline behind the HTTP API a team running it
// would write for its users, so that they pay for the same HTTP requests
// per job as inferq's clients do: two, or one with -prefer-wait:
//
//	POST /jobs?model=simple   body: the OIP request, as POSTed to inferq
//	                          → 202 {"id":"..."}
//	POST /jobs?model=simple&wait=10s
//	                          → 200 the answer when it comes within the wait
//	                            (inferq's Prefer: wait), else 202 as above
//	GET  /jobs/{id}?wait=30s  → 200 the model's answer (OIP response JSON),
//	                            202 {"id":"...","status":"pending"} when the wait ends first,
//	                            404 for an id it does not know
//
// The front door runs in the load-test process on a loopback port; the
// load test's client reaches it over TCP with inferq's client code.

// frontBackend is a peer pipeline as its HTTP front door drives it.
type frontBackend interface {
	// enqueue sends model's job with the request body under id; once it
	// returns, await finds the job.
	enqueue(ctx context.Context, id, model string, body []byte) error
	// await returns id's answer: at once when it is there, else when the
	// pipeline's completion notice brings it, or ctx's error when ctx ends
	// first. An id never enqueued (or long expired) is errUnknownJob.
	await(ctx context.Context, id string) ([]byte, error)
	Close() error
}

// errUnknownJob is a GET for an id the pipeline does not know.
var errUnknownJob = errors.New("no such job")

// Front door limits: a request body is at most frontMaxBody bytes, a
// long-poll at most frontMaxWait (inferq's ingress caps it too).
const (
	frontMaxBody = 1 << 20
	frontMaxWait = time.Minute
)

// frontModels are the models the peers' workers run (peerRun).
var frontModels = map[string]bool{"simple": true, "identity": true, "simgpu": true}

// jsonContentType is shared by every answer instead of Header().Set
// building a new slice each time; net/http only reads it.
var jsonContentType = []string{"application/json"}

// httpFront is the front door: plain net/http with a method-pattern
// ServeMux, keep-alive connections, the body read into one buffer of its
// Content-Length and answers written as stored, without re-encoding.
type httpFront struct {
	backend frontBackend
	ids     *jobIDs
	srv     *http.Server
	url     string
	served  sync.WaitGroup
	err     error // Serve's, other than ErrServerClosed; read after served.Wait
}

func newHTTPFront(system string, backend frontBackend) *httpFront {
	return &httpFront{backend: backend, ids: newJobIDs(system)}
}

func (f *httpFront) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", f.postJob)
	mux.HandleFunc("GET /jobs/{id}", f.getJob)
	return mux
}

// start serves on a free loopback port until close.
func (f *httpFront) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("http front door: %w", err)
	}
	f.url = "http://" + ln.Addr().String()
	f.srv = &http.Server{Handler: f.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	f.served.Go(func() {
		if err := f.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			f.err = fmt.Errorf("http front door: %w", err)
		}
	})
	return nil
}

// close stops accepting, waits (briefly) for requests in flight and for
// the server goroutine.
func (f *httpFront) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := f.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("http front door: shutdown: %w", err), f.srv.Close())
	}
	f.served.Wait()
	return errors.Join(err, f.err)
}

// postJob enqueues the body as the model's job and answers its id.
func (f *httpFront) postJob(w http.ResponseWriter, r *http.Request) {
	model := r.URL.Query().Get("model")
	if model == "" {
		model = "simple"
	}
	if !frontModels[model] {
		writeError(w, http.StatusNotFound, "no model "+strconv.Quote(model))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "the body is not JSON")
		return
	}
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := f.ids.next()
	if err := f.backend.enqueue(r.Context(), id, model, body); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("enqueue %s: %v", id, err))
		return
	}
	if wait > 0 {
		// ?wait= on the POST is the peer's form of inferq's Prefer: wait:
		// the answer in the POST's response when it comes in time.
		f.answer(w, r, id, wait)
		return
	}
	writeJSON(w, http.StatusAccepted, idJSON(id, ""))
}

// waitParam reads ?wait= as a duration, capped at frontMaxWait.
func waitParam(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("wait")
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("wait: want a duration like 30s, got " + strconv.Quote(s))
	}
	return min(d, frontMaxWait), nil
}

// getJob answers the job's result, waiting up to ?wait for it.
func (f *httpFront) getJob(w http.ResponseWriter, r *http.Request) {
	wait, err := waitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.answer(w, r, r.PathValue("id"), wait)
}

// answer writes id's answer, waiting up to wait for it: 200 with the
// answer, or 202 with the id when the wait ends first.
func (f *httpFront) answer(w http.ResponseWriter, r *http.Request, id string, wait time.Duration) {
	// wait=0 has an ended context: await still answers a result that is there.
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	answer, err := f.backend.await(ctx, id)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, answer)
	case errors.Is(err, errUnknownJob):
		writeError(w, http.StatusNotFound, "job "+strconv.Quote(id)+" not found")
	case r.Context().Err() != nil:
		// The client has gone; nobody reads an answer.
	case errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusAccepted, idJSON(id, "pending"))
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// readBody reads the request body into one buffer of its length when the
// client sent one, as every HTTP client with a byte body does.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > frontMaxBody {
		return nil, fmt.Errorf("body of %d bytes, more than %d", r.ContentLength, frontMaxBody)
	}
	if r.ContentLength > 0 {
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, frontMaxBody))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return body, nil
}

// idJSON is {"id":id} or {"id":id,"status":status}. Ids are the front
// door's own (letters, digits and dashes), so they need no escaping.
func idJSON(id, status string) []byte {
	b := make([]byte, 0, len(id)+len(status)+24)
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	if status != "" {
		b = append(b, `","status":"`...)
		b = append(b, status...)
	}
	return append(b, `"}`...)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, mustJSON(map[string]string{"error": msg}))
}

// mailboxes hold what a job's completion brings (an answer, or just the
// notice) from then until the GET that takes it; a box is opened before
// its job is sent. Boxes live in two generations that expireEvery swaps,
// so a box nobody takes is dropped after one to two periods with neither
// a timer per box nor a scan.
type mailboxes struct {
	mu        sync.Mutex
	cur, prev map[string]chan []byte
}

func newMailboxes() *mailboxes {
	return &mailboxes{cur: map[string]chan []byte{}, prev: map[string]chan []byte{}}
}

// open makes id's box; the job is sent after it.
func (m *mailboxes) open(id string) {
	ch := make(chan []byte, 1)
	m.mu.Lock()
	m.cur[id] = ch
	m.mu.Unlock()
}

// send opens id's box and then sends its job; a failed send drops the box.
func (m *mailboxes) send(id string, send func() error) error {
	m.open(id)
	if err := send(); err != nil {
		m.drop(id)
		return err
	}
	return nil
}

func (m *mailboxes) box(id string) chan []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch, ok := m.cur[id]; ok {
		return ch
	}
	return m.prev[id]
}

func (m *mailboxes) drop(id string) {
	m.mu.Lock()
	delete(m.cur, id)
	delete(m.prev, id)
	m.mu.Unlock()
}

// deliver puts id's answer in its box; an answer for no box (dropped, or a
// duplicate) is discarded.
func (m *mailboxes) deliver(id string, answer []byte) {
	ch := m.box(id)
	if ch == nil {
		return
	}
	select {
	case ch <- answer:
	default:
	}
}

// take returns id's answer, waiting for it until ctx ends; an answer there
// already wins over an ended ctx, so ?wait=0 reads what is there. A box
// whose wait ended stays open for the next take.
func (m *mailboxes) take(ctx context.Context, id string) ([]byte, error) {
	ch := m.box(id)
	if ch == nil {
		return nil, fmt.Errorf("job %s: %w", id, errUnknownJob)
	}
	select {
	case answer := <-ch:
		m.drop(id)
		return answer, nil
	default:
	}
	select {
	case answer := <-ch:
		m.drop(id)
		return answer, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// rotate drops the older generation's boxes.
func (m *mailboxes) rotate() {
	m.mu.Lock()
	m.prev, m.cur = m.cur, map[string]chan []byte{}
	m.mu.Unlock()
}

// expireEvery rotates m every period until stop is called; stop waits for
// the rotating goroutine to end.
func (m *mailboxes) expireEvery(period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				m.rotate()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// httpPeer is a -compare peer reached over HTTP: its pipeline behind an
// httpFront, driven the way inferq is, POST then long-poll GET.
type httpPeer struct {
	name    string
	front   *httpFront
	backend frontBackend
	api     *inferqTarget // inferq's HTTP client code and connection settings
	// wait, from -prefer-wait, asks for the answer in the POST's response
	// (?wait=), as inferq's clients do with Prefer: wait.
	wait time.Duration
	// child, when the peer runs in a process of its own, is that process
	// (front and backend are then nil).
	child *peerProcess
}

// startHTTPPeer serves backend over HTTP; on failure it closes backend.
func startHTTPPeer(name string, o options, backend frontBackend) (target, error) {
	f := newHTTPFront(name, backend)
	if err := f.start(); err != nil {
		return nil, errors.Join(fmt.Errorf("%s peer: %w", name, err), backend.Close())
	}
	return &httpPeer{name: name, front: f, backend: backend, api: newAPIClient(f.url, o), wait: o.preferWait}, nil
}

func (p *httpPeer) Name() string { return p.name }

// Do is inferqTarget.Do's POST and poll against the front door, with the
// answer checked as the other peers' are.
func (p *httpPeer) Do(ctx context.Context, j job, start time.Time) outcome {
	sent := time.Now()
	var acc struct {
		ID string `json:"id"`
	}
	post := "/jobs?model=" + j.model
	var early struct {
		ID      string       `json:"id"`
		Outputs []tensorJSON `json:"outputs"`
	}
	if p.wait > 0 {
		post += "&wait=" + p.wait.String()
		code, err := p.api.call(ctx, http.MethodPost, post, j.body, &early)
		if err == nil && code == http.StatusOK {
			done := time.Now()
			if err := verifyAnswer(j, early.Outputs); err != nil {
				return outcome{kind: errWrongResult, detail: "POST with wait: " + err.Error()}
			}
			return outcome{done: done, submit: done.Sub(sent)}
		}
		if err != nil {
			return outcome{kind: errSubmitTransport, detail: err.Error()}
		}
		if code != http.StatusAccepted || early.ID == "" {
			return outcome{kind: fmt.Sprintf("submit_%d", code), detail: "POST " + post}
		}
		acc.ID = early.ID
	} else {
		code, err := p.api.call(ctx, http.MethodPost, post, j.body, &acc)
		switch {
		case err != nil:
			return outcome{kind: errSubmitTransport, detail: err.Error()}
		case code != http.StatusAccepted || acc.ID == "":
			return outcome{kind: fmt.Sprintf("submit_%d", code), detail: "POST " + post}
		}
	}
	submit := time.Since(sent)
	path := "/jobs/" + acc.ID + "?wait=" + longPoll.String()
	for {
		var answer struct {
			Outputs []tensorJSON `json:"outputs"`
		}
		code, err := p.api.call(ctx, http.MethodGet, path, nil, &answer)
		switch {
		case err != nil:
			return outcome{kind: errGetTransport, detail: "job " + acc.ID + ": " + err.Error()}
		case code == http.StatusAccepted:
			continue // the wait ended first; ctx bounds the loop
		case code != http.StatusOK:
			return outcome{kind: fmt.Sprintf("get_%d", code), detail: "job " + acc.ID}
		}
		done := time.Now()
		if err := verifyAnswer(j, answer.Outputs); err != nil {
			return outcome{kind: errWrongResult, detail: "job " + acc.ID + ": " + err.Error()}
		}
		return outcome{done: done, submit: submit}
	}
}

// Close drops the client's connections, stops the front door, then the
// pipeline behind it.
func (p *httpPeer) Close() error {
	_ = p.api.Close()
	if p.child != nil {
		return p.child.stop()
	}
	return errors.Join(p.front.close(), p.backend.Close())
}
