package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/version"
	apiclient "github.com/inferq/inferq/pkg/client"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Exit codes of the client commands.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the job ended failed/cancelled/expired, or the server refused
	ExitUsage   = 2
	ExitTimeout = 3 // --wait ended before the job did
)

// Client runs the client subcommands (submit, get, watch, replay, models,
// models apply, models rm, stats)
// against a running broker and returns the exit code.
func Client(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if !known(cmd) || cmd == "dev" || cmd == "version" {
		fmt.Fprintf(stderr, "inferq: unknown command %q\n", cmd)
		return ExitUsage
	}
	fs := newFlags(cmd)
	api := fs.String("url", envOr("INFERQ_URL", "http://127.0.0.1:8080"), "ingress base URL (env INFERQ_URL)")
	token := fs.String("token", os.Getenv("INFERQ_TOKEN"), "bearer token or API key (env INFERQ_TOKEN)")
	c := &client{out: stdout, errw: stderr}
	// parsed reads the flags, makes the API client and says whether to go on.
	parsed := func() (int, bool) {
		code, ok := parse(fs, args, stdout, stderr)
		if !ok {
			return code, ok
		}
		c.token = *token
		if cmd == "watch" {
			return code, ok // NATS only
		}
		var err error
		c.api, err = apiclient.New(*api, apiclient.WithToken(*token), apiclient.WithUserAgent("inferq-cli/"+version.String()))
		if err != nil {
			return usageErr(stderr, cmd, "-url: "+err.Error()), false
		}
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
		return c.show(ctx, fs.Arg(0), cmd == "stats", *format == "json")
	case "models apply":
		file := fs.String("f", "", "YAML `FILE` of model configs: one, a list, or a config file's models list ('-' for stdin)")
		if code, ok := parsed(); !ok {
			return code
		}
		if *file == "" || fs.NArg() != 0 {
			return usageErr(stderr, cmd, "want -f FILE and no arguments")
		}
		return c.apply(ctx, *file)
	case "models rm":
		if code, ok := parsed(); !ok {
			return code
		}
		if fs.NArg() != 1 {
			return usageErr(stderr, cmd, "want one MODEL or MODEL@VERSION")
		}
		return c.rm(ctx, fs.Arg(0))
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
			return c.replay(ctx, fs.Arg(0), "", apiclient.ReplayFilter{})
		}
		f := apiclient.ReplayFilter{Limit: *limit}
		if *since != "" {
			t, err := parseSince(*since, time.Now())
			if err != nil {
				fmt.Fprintf(stderr, "inferq replay: -since: %v\n", err)
				return ExitUsage
			}
			f.Since = t
		}
		return c.replay(ctx, "", *model, f)
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
func (c *client) replay(ctx context.Context, id, model string, f apiclient.ReplayFilter) int {
	if model == "" {
		r, err := c.api.ReplayJob(ctx, id)
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintln(c.out, string(bytes.TrimSpace(r.Raw)))
		return ExitOK
	}
	n, err := c.api.ReplayModel(ctx, model, f)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.out, "{\"count\":%d}\n", n)
	return ExitOK
}

// client runs the client commands with pkg/client; it only parses flags
// and prints.
type client struct {
	api       *apiclient.Client
	token     string // also the NATS credential of watch
	out, errw io.Writer
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// fail prints a failed call (the API's status, code and message, or the
// transport's error) and returns ExitFailed.
func (c *client) fail(err error) int {
	msg := err.Error()
	if !strings.HasPrefix(msg, "inferq") {
		msg = "inferq: " + msg
	}
	fmt.Fprintln(c.errw, msg)
	return ExitFailed
}

func (c *client) submit(ctx context.Context, model, file, text, params, key string, wait time.Duration) int {
	var req apiclient.Request
	switch {
	case file != "":
		var body []byte
		var err error
		if file == "-" {
			body, err = io.ReadAll(os.Stdin)
		} else {
			body, err = os.ReadFile(file)
		}
		if err != nil {
			fmt.Fprintf(c.errw, "inferq: %v\n", err)
			return ExitUsage
		}
		req = apiclient.RawJSON(body)
	case text != "" || params != "":
		g := apiclient.Generate{Text: text}
		if params != "" {
			if err := json.Unmarshal([]byte(params), &g.Parameters); err != nil {
				fmt.Fprintf(c.errw, "inferq: -params: %v\n", err)
				return ExitUsage
			}
		}
		req = g
	default:
		fmt.Fprintln(c.errw, "inferq submit: give -f FILE or -text TEXT")
		return ExitUsage
	}
	var opts []apiclient.SubmitOption
	if key != "" {
		opts = append(opts, apiclient.WithIdempotencyKey(key))
	}
	sub, err := c.api.Submit(ctx, model, req, opts...)
	if err != nil {
		return c.fail(err)
	}
	if wait <= 0 {
		fmt.Fprintln(c.out, string(bytes.TrimSpace(sub.Raw)))
		return ExitOK
	}
	return c.get(ctx, sub.ID, wait)
}

// get prints the job record; with wait it long-polls until the job ends.
// The exit code says how the job ended.
func (c *client) get(ctx context.Context, id string, wait time.Duration) int {
	var job *apiclient.Job
	var err error
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		job, err = c.api.Wait(wctx, id)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if job == nil { // a wait too short for one long-poll
				if job, err = c.api.Get(ctx, id); err != nil {
					return c.fail(err)
				}
			}
			if !job.Status.Terminal() {
				fmt.Fprintln(c.out, string(bytes.TrimSpace(job.Raw)))
				fmt.Fprintf(c.errw, "inferq: job %s still %s after %v\n", id, job.Status, wait)
				return ExitTimeout
			}
			err = nil
		}
	} else {
		job, err = c.api.Get(ctx, id)
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.out, string(bytes.TrimSpace(job.Raw)))
	switch job.Status {
	case apiclient.Failed, apiclient.Cancelled, apiclient.Expired:
		return ExitFailed
	}
	return ExitOK
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

// show prints models (config and live stats) or just their stats, as a
// table or (asJSON) as the API's JSON.
func (c *client) show(ctx context.Context, name string, statsOnly, asJSON bool) int {
	var models []apiclient.Model
	if name == "" {
		ms, err := c.api.Models(ctx)
		if err != nil {
			return c.fail(err)
		}
		models = ms
	} else {
		m, err := c.api.Model(ctx, name)
		if err != nil {
			return c.fail(err)
		}
		models = []apiclient.Model{*m}
	}
	if asJSON {
		list := make([]any, len(models))
		for k, m := range models {
			if err := json.Unmarshal(m.Raw, &list[k]); err != nil {
				fmt.Fprintf(c.errw, "inferq: unreadable model %q: %v\n", m.Name, err)
				return ExitFailed
			}
		}
		var v any = map[string]any{"models": list}
		if name != "" {
			v = list[0]
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
	for _, m := range models {
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
