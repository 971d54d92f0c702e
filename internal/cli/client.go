package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
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
	fs := flag.NewFlagSet("inferq "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("url", envOr("INFERQ_URL", "http://127.0.0.1:8080"), "ingress base URL (env INFERQ_URL)")
	token := fs.String("token", os.Getenv("INFERQ_TOKEN"), "bearer token or API key (env INFERQ_TOKEN)")
	c := &client{api: strings.TrimRight(*api, "/"), out: stdout, errw: stderr, hc: &http.Client{}}
	switch cmd {
	case "submit":
		file := fs.String("f", "", "JSON request body file ('-' for stdin)")
		text := fs.String("text", "", "generate shorthand: text_input")
		params := fs.String("params", "", `JSON parameters, e.g. '{"max_tokens":8}'`)
		wait := fs.Duration("wait", 0, "wait up to this long for the job to end and print its record")
		key := fs.String("idempotency-key", "", "Idempotency-Key header")
		if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: inferq submit [-f file | -text T] [-params JSON] [-wait 30s] MODEL")
			return ExitUsage
		}
		c.api, c.token = strings.TrimRight(*api, "/"), *token
		return c.submit(ctx, fs.Arg(0), *file, *text, *params, *key, *wait)
	case "get":
		wait := fs.Duration("wait", 0, "long-poll up to this long for the job to end")
		if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: inferq get [-wait 30s] JOB_ID")
			return ExitUsage
		}
		c.api, c.token = strings.TrimRight(*api, "/"), *token
		return c.get(ctx, fs.Arg(0), *wait)
	case "watch":
		natsURL := fs.String("nats", envOr("INFERQ_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL")
		tenant := fs.String("tenant", "default", "the job's tenant")
		prefix := fs.String("prefix", "inferq", "subject prefix")
		from := fs.Uint64("from", 0, "resume after this token sequence number")
		timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long without the final token")
		if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: inferq watch [-nats URL] [-tenant T] [-from SEQ] JOB_ID")
			return ExitUsage
		}
		return c.watch(ctx, *natsURL, *prefix+".tokens."+*tenant+"."+fs.Arg(0), strings.ToUpper(*prefix)+"_TOKENS", *from, *timeout)
	case "models", "stats":
		if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
			fmt.Fprintf(stderr, "usage: inferq %s [MODEL]\n", cmd)
			return ExitUsage
		}
		c.api, c.token = strings.TrimRight(*api, "/"), *token
		path := "/v1/models"
		if fs.NArg() == 1 {
			path += "/" + fs.Arg(0)
		}
		return c.show(ctx, path, cmd == "stats")
	case "replay":
		model := fs.String("model", "", "replay the model's failed jobs (dead letters) instead of one job")
		since := fs.String("since", "", "with -model: only jobs failed since this time (RFC 3339) or this long ago (e.g. 1h)")
		limit := fs.Int("limit", 100, "with -model: at most this many jobs")
		if err := fs.Parse(args); err != nil || (*model == "") == (fs.NArg() == 0) || fs.NArg() > 1 {
			fmt.Fprintln(stderr, "usage: inferq replay JOB_ID | inferq replay -model M [-since 1h] [-limit 100]")
			return ExitUsage
		}
		c.api, c.token = strings.TrimRight(*api, "/"), *token
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
// the final token.
func (c *client) watch(ctx context.Context, natsURL, subject, stream string, from uint64, timeout time.Duration) int {
	nc, err := nats.Connect(natsURL, nats.Name("inferq-watch"))
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: connect %s: %v\n", natsURL, err)
		return ExitFailed
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	iter, err := cons.Messages()
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	defer iter.Stop()
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				fmt.Fprintf(c.errw, "\ninferq: no final token after %v\n", timeout)
				return ExitTimeout
			}
			fmt.Fprintf(c.errw, "\ninferq: %v\n", err)
			return ExitFailed
		}
		var tok struct {
			Seq   uint64 `json:"seq"`
			Text  string `json:"text"`
			Final bool   `json:"final"`
		}
		if json.Unmarshal(msg.Data(), &tok) != nil || tok.Seq <= from {
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

// show prints models (config and live stats) or just their stats.
func (c *client) show(ctx context.Context, path string, statsOnly bool) int {
	status, body, err := c.call(ctx, "GET", path, nil, nil)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitFailed
	}
	if status != http.StatusOK {
		return c.apiFail(status, body)
	}
	if !statsOnly {
		var v any
		_ = json.Unmarshal(body, &v)
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(c.out, string(b))
		return ExitOK
	}
	var one struct {
		Name  string
		Stats map[string]any
	}
	var many struct {
		Models []struct {
			Name  string
			Stats map[string]any
		}
	}
	if json.Unmarshal(body, &many) == nil && many.Models != nil {
		fmt.Fprintf(c.out, "%-16s %8s %8s %9s %8s %8s\n", "MODEL", "QUEUED", "BATCHES", "INFLIGHT", "WORKERS", "DESIRED")
		for _, m := range many.Models {
			c.statsLine(m.Name, m.Stats)
		}
		return ExitOK
	}
	_ = json.Unmarshal(body, &one)
	fmt.Fprintf(c.out, "%-16s %8s %8s %9s %8s %8s\n", "MODEL", "QUEUED", "BATCHES", "INFLIGHT", "WORKERS", "DESIRED")
	c.statsLine(one.Name, one.Stats)
	return ExitOK
}

func (c *client) statsLine(name string, s map[string]any) {
	n := func(k string) any {
		if v, ok := s[k]; ok {
			return v
		}
		return "-"
	}
	fmt.Fprintf(c.out, "%-16s %8v %8v %9v %8v %8v\n", name, n("queued"), n("batches_pending"), n("in_flight"), n("live_workers"), n("desired_replicas"))
}
