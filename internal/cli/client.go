package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Exit codes of the client commands.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the job ended failed/cancelled/expired, or the server refused
	ExitUsage   = 2
	ExitTimeout = 3 // --wait ended before the job did
)

// Client runs the client subcommands (submit, get, watch, replay, models, stats)
// against a running broker and returns the exit code.
func Client(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if !known(cmd) || cmd == "dev" || cmd == "version" {
		fmt.Fprintf(stderr, "inferq: unknown command %q\n", cmd)
		return ExitUsage
	}
	fs := newFlags(cmd)
	api := fs.String("url", envOr("INFERQ_URL", "http://127.0.0.1:8080"), "ingress base URL (env INFERQ_URL)")
	token := fs.String("token", os.Getenv("INFERQ_TOKEN"), "bearer token or API key (env INFERQ_TOKEN)")
	c := &client{out: stdout, errw: stderr, hc: &http.Client{}}
	// parsed reads the flags and the API address and says whether to go on.
	parsed := func() (int, bool) {
		code, ok := parse(fs, args, stdout, stderr)
		c.api, c.token = strings.TrimRight(*api, "/"), *token
		return code, ok
	}
	switch cmd {
	case "submit":
		file := fs.String("f", "", "JSON request body file ('-' for stdin)")
		text := fs.String("text", "", "generate shorthand: text_input")
		params := fs.String("params", "", `JSON parameters, e.g. '{"max_tokens":8}'`)
		wait := fs.Duration("wait", 0, "wait up to this long for the job to end and print its record")
		key := fs.String("idempotency-key", "", "Idempotency-Key header")
		if code, ok := parsed(); !ok {
			return code
		}
		if fs.NArg() != 1 {
			return usageErr(stderr, cmd, "want one MODEL")
		}
		return c.submit(ctx, fs.Arg(0), *file, *text, *params, *key, *wait)
	case "get":
		wait := fs.Duration("wait", 0, "long-poll up to this long for the job to end")
		if code, ok := parsed(); !ok {
			return code
		}
		if fs.NArg() != 1 {
			return usageErr(stderr, cmd, "want one JOB_ID")
		}
		return c.get(ctx, fs.Arg(0), *wait)
	case "watch":
		natsURL := fs.String("nats", envOr("INFERQ_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (env INFERQ_NATS_URL)")
		tenant := fs.String("tenant", "default", "the job's tenant")
		prefix := fs.String("prefix", "inferq", "subject prefix")
		from := fs.Uint64("from", 0, "resume after this token sequence number")
		timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long without the final token")
		if code, ok := parsed(); !ok {
			return code
		}
		if fs.NArg() != 1 {
			return usageErr(stderr, cmd, "want one JOB_ID")
		}
		topo := jetstream.Topology{Prefix: *prefix}
		return c.watch(ctx, *natsURL, topo.TokenSubject(*tenant, fs.Arg(0)), topo.TokensStream(), *from, *timeout)
	case "models", "stats":
		format := fs.String("o", "table", "output: table, or json for the API's answer")
		if code, ok := parsed(); !ok {
			return code
		}
		if fs.NArg() > 1 {
			return usageErr(stderr, cmd, "want at most one MODEL")
		}
		if *format != "table" && *format != "json" {
			return usageErr(stderr, cmd, fmt.Sprintf("-o %q: want table or json", *format))
		}
		path := "/v1/models"
		if fs.NArg() == 1 {
			path += "/" + url.PathEscape(fs.Arg(0))
		}
		return c.show(ctx, path, cmd == "stats", *format == "json")
	case "replay":
		model := fs.String("model", "", "replay the model's failed jobs (dead letters) instead of one job")
		since := fs.String("since", "", "with -model: only jobs failed since this time (RFC 3339) or this long ago (e.g. 1h)")
		limit := fs.Int("limit", 100, "with -model: at most this many jobs")
		if code, ok := parsed(); !ok {
			return code
		}
		if (*model == "") == (fs.NArg() == 0) || fs.NArg() > 1 {
			return usageErr(stderr, cmd, "want one JOB_ID or -model M")
		}
		if *model == "" {
			return c.replay(ctx, "/v1/jobs/"+fs.Arg(0)+"/replay", nil)
		}
		req := map[string]any{"status": "failed", "limit": *limit}
		if *since != "" {
			t, err := parseSince(*since, time.Now())
			if err != nil {
				fmt.Fprintf(stderr, "inferq replay: -since: %v\n", err)
				return ExitUsage
			}
			req["since"] = t
		}
		body, _ := json.Marshal(req)
		return c.replay(ctx, "/v1/models/"+*model+"/replay", body)
	}
	fmt.Fprintf(stderr, "inferq: unknown command %q\n", cmd)
	return ExitUsage
}

// parseSince reads -since: a time (RFC 3339) or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration nor an RFC 3339 time", s)
	}
	return t, nil
}

// replay asks the broker to run jobs again (admin scope) and prints its
// answer: the job's new attempt, or how many jobs of the model went again.
func (c *client) replay(ctx context.Context, path string, body []byte) int {
	status, resp, err := c.call(ctx, "POST", path, body, nil)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	if status != http.StatusAccepted && status != http.StatusOK {
		return c.apiFail(status, resp)
	}
	fmt.Fprintln(c.out, string(bytes.TrimSpace(resp)))
	return ExitOK
}

type client struct {
	api, token string
	hc         *http.Client
	out, errw  io.Writer
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// call sends a request and returns the status and body; transport errors
// are reported and mapped to ExitFailed by the caller.
func (c *client) call(ctx context.Context, method, path string, body []byte, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// apiFail prints the API's error body and returns ExitFailed.
func (c *client) apiFail(status int, body []byte) int {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		fmt.Fprintf(c.errw, "inferq: %d %s: %s\n", status, e.Error.Code, e.Error.Message)
	} else {
		fmt.Fprintf(c.errw, "inferq: HTTP %d: %s\n", status, bytes.TrimSpace(body))
	}
	return ExitFailed
}

func (c *client) submit(ctx context.Context, model, file, text, params, key string, wait time.Duration) int {
	var body []byte
	var err error
	switch {
	case file == "-":
		body, err = io.ReadAll(os.Stdin)
	case file != "":
		body, err = os.ReadFile(file)
	case text != "" || params != "":
		req := map[string]any{"text_input": text}
		if params != "" {
			var p map[string]any
			if err := json.Unmarshal([]byte(params), &p); err != nil {
				fmt.Fprintf(c.errw, "inferq: -params: %v\n", err)
				return ExitUsage
			}
			req["parameters"] = p
		}
		body, _ = json.Marshal(req)
	default:
		fmt.Fprintln(c.errw, "inferq submit: give -f FILE or -text TEXT")
		return ExitUsage
	}
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitUsage
	}
	hdr := map[string]string{}
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	status, resp, err := c.call(ctx, "POST", "/v1/models/"+model+"/jobs", body, hdr)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	if status != http.StatusAccepted && status != http.StatusOK {
		return c.apiFail(status, resp)
	}
	if wait <= 0 {
		fmt.Fprintln(c.out, string(bytes.TrimSpace(resp)))
		return ExitOK
	}
	var acc struct{ ID string }
	_ = json.Unmarshal(resp, &acc)
	return c.get(ctx, acc.ID, wait)
}

// get prints the job record; with wait it long-polls until the job ends.
// The exit code says how the job ended.
func (c *client) get(ctx context.Context, id string, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		path := "/v1/jobs/" + id
		left := time.Until(deadline)
		if wait > 0 && left > 0 {
			path += "?wait=" + left.Round(time.Millisecond).String()
		}
		status, body, err := c.call(ctx, "GET", path, nil, nil)
		if err != nil {
			fmt.Fprintf(c.errw, "inferq: %v\n", err)
			return ExitFailed
		}
		if status != http.StatusOK {
			return c.apiFail(status, body)
		}
		var rec struct{ Status string }
		_ = json.Unmarshal(body, &rec)
		switch rec.Status {
		case "succeeded":
			fmt.Fprintln(c.out, string(bytes.TrimSpace(body)))
			return ExitOK
		case "failed", "cancelled", "expired":
			fmt.Fprintln(c.out, string(bytes.TrimSpace(body)))
			return ExitFailed
		}
		if wait <= 0 {
			fmt.Fprintln(c.out, string(bytes.TrimSpace(body)))
			return ExitOK
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(c.out, string(bytes.TrimSpace(body)))
			fmt.Fprintf(c.errw, "inferq: job %s still %s after %v\n", id, rec.Status, wait)
			return ExitTimeout
		}
	}
}

// watch prints a job's tokens as they come, in order, from INFERQ_TOKENS
// (so it also replays tokens already made), after sequence `from`, until
// the final token. It connects with the same credential as the HTTP calls
// (-token), which is how a tenant signs in to NATS when auth is on. A
// tenant may only subscribe to its own token subject, not use JetStream:
// then it reads the live tokens from that subject (earlier ones are
// missed, and it says so).
func (c *client) watch(ctx context.Context, natsURL, subject, stream string, from uint64, timeout time.Duration) int {
	opts := []nats.Option{nats.Name("inferq-watch")}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: connect %s: %v\n", natsURL, err)
		return ExitFailed
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	next, stopRead, err := c.tokenReader(ctx, nc, subject, stream)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	defer stopRead()
	for {
		data, err := next()
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				fmt.Fprintf(c.errw, "\ninferq: no final token after %v\n", timeout)
				return ExitTimeout
			}
			fmt.Fprintf(c.errw, "\ninferq: %v\n", err)
			return ExitFailed
		}
		tok, err := lifecycle.DecodeTokenChunk(data)
		if err != nil || tok.Seq <= from {
			continue
		}
		from = tok.Seq
		fmt.Fprint(c.out, tok.Text)
		if tok.Final {
			fmt.Fprintln(c.out)
			return ExitOK
		}
	}
}

// jsProbe bounds how long watch waits for JetStream before it falls back to
// the live subject.
const jsProbe = 3 * time.Second

// tokenReader returns a function that blocks for the next token chunk of
// subject: from the stream with an ordered consumer, or, where JetStream is
// not allowed to this connection, from a plain subscription.
func (c *client) tokenReader(ctx context.Context, nc *nats.Conn, subject, stream string) (func() ([]byte, error), func(), error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, jsProbe)
	cons, err := js.OrderedConsumer(pctx, stream, natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	cancel()
	if err == nil {
		iter, err := cons.Messages()
		if err != nil {
			return nil, nil, err
		}
		stop := context.AfterFunc(ctx, iter.Stop)
		next := func() ([]byte, error) {
			msg, err := iter.Next()
			if err != nil {
				return nil, err
			}
			return msg.Data(), nil
		}
		return next, func() { stop(); iter.Stop() }, nil
	}
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	sub, serr := nc.SubscribeSync(subject)
	if serr != nil {
		return nil, nil, fmt.Errorf("read %s: %w (JetStream: %v)", subject, serr, err)
	}
	fmt.Fprintf(c.errw, "inferq: no JetStream for this connection (%v); showing live tokens only\n", err)
	next := func() ([]byte, error) {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		return msg.Data, nil
	}
	return next, func() { _ = sub.Unsubscribe() }, nil
}

// modelRow is what the tables show of GET /v1/models; the JSON form
// (-o json) prints the API's answer as it is.
type modelRow struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Kind     string `json:"kind"`
	Test     bool   `json:"test_model"`
	Batching struct {
		MaxBatchSize  int    `json:"max_batch_size"`
		MaxQueueDelay string `json:"max_queue_delay"`
	} `json:"batching"`
	Stats *struct {
		Queued          uint64 `json:"queued"`
		BatchesPending  uint64 `json:"batches_pending"`
		InFlight        uint64 `json:"in_flight"`
		LiveWorkers     int    `json:"live_workers"`
		DesiredReplicas uint64 `json:"desired_replicas"`
	} `json:"stats"`
}

// show prints models (config and live stats) or just their stats, as a
// table or (asJSON) as JSON.
func (c *client) show(ctx context.Context, path string, statsOnly, asJSON bool) int {
	status, body, err := c.call(ctx, "GET", path, nil, nil)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	if status != http.StatusOK {
		return c.apiFail(status, body)
	}
	var rows []modelRow
	var many struct {
		Models []modelRow `json:"models"`
	}
	if err := json.Unmarshal(body, &many); err == nil && many.Models != nil {
		rows = many.Models
	} else {
		var one modelRow
		if err := json.Unmarshal(body, &one); err != nil {
			fmt.Fprintf(c.errw, "inferq: unreadable answer from %s: %v\n", path, err)
			return ExitFailed
		}
		rows = []modelRow{one}
	}
	if asJSON {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			fmt.Fprintf(c.errw, "inferq: unreadable answer from %s: %v\n", path, err)
			return ExitFailed
		}
		if statsOnly {
			v = statsJSON(v)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(c.out, string(b))
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	if statsOnly {
		fmt.Fprintln(tw, "MODEL\tQUEUED\tBATCHES\tINFLIGHT\tWORKERS\tDESIRED")
	} else {
		fmt.Fprintln(tw, "MODEL\tVERSION\tKIND\tMAX BATCH\tMAX DELAY\tQUEUED\tIN FLIGHT\tWORKERS\tDESIRED REPLICAS")
	}
	for _, m := range rows {
		st := []string{"-", "-", "-", "-", "-"}
		if s := m.Stats; s != nil {
			st = []string{fmt.Sprint(s.Queued), fmt.Sprint(s.BatchesPending), fmt.Sprint(s.InFlight), fmt.Sprint(s.LiveWorkers), fmt.Sprint(s.DesiredReplicas)}
		}
		if statsOnly {
			fmt.Fprintf(tw, "%s\t%s\n", m.Name, strings.Join(st, "\t"))
			continue
		}
		kind := m.Kind
		if m.Test {
			kind += " (test)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Version, kind, m.Batching.MaxBatchSize,
			m.Batching.MaxQueueDelay, st[0], st[2], st[3], st[4])
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	return ExitOK
}

// statsJSON keeps only each model's name and stats of a /v1/models answer,
// the JSON form of `inferq stats`.
func statsJSON(v any) any {
	pick := func(m any) any {
		o, _ := m.(map[string]any)
		return map[string]any{"name": o["name"], "stats": o["stats"]}
	}
	if o, ok := v.(map[string]any); ok {
		if list, ok := o["models"].([]any); ok {
			out := make([]any, len(list))
			for k, m := range list {
				out[k] = pick(m)
			}
			return map[string]any{"models": out}
		}
	}
	return pick(v)
}
