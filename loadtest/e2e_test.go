package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// startInferq runs the whole broker in this process, as internal/e2e does:
// every component against a real embedded nats-server, the JetStream KV
// results store (as `inferq dev`), the API on a free loopback port.
func startInferq(t testing.TB) string {
	t.Helper()
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	return stacktest.Start(t, &cfg, n.Conn, stack.All)
}

// runTool runs the command line and decodes its JSON output.
func runTool(t testing.TB, args ...string) Output {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runCLI(t.Context(), args, &stdout, &stderr)
	t.Logf("loadtest %s\n%s", strings.Join(args, " "), stderr.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	var out Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, stdout.String())
	}
	return out
}

func checkRun(t *testing.T, s Summary, system string) {
	t.Helper()
	if s.System != system || s.Errors != 0 || s.Jobs == 0 || s.Sent != s.Jobs || s.LatencyMS == nil || len(s.Timeline) == 0 {
		t.Fatalf("%s: %d/%d jobs, errors %v %v", system, s.Jobs, s.Sent, s.ByKind, s.Details)
	}
}

func checkFile(t *testing.T, path, prefix string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(prefix)) || len(b) < 1000 {
		t.Fatalf("%s: %d bytes starting %.20q, want %q...", path, len(b), b, prefix)
	}
}

// TestEndToEnd drives an in-process inferq closed-loop and open-loop for
// about 2s each, streams a few generations, and checks that every job was
// verified and the JSON and plots are written.
func TestEndToEnd(t *testing.T) {
	url := startInferq(t)
	dir := t.TempDir()

	t.Run("closed", func(t *testing.T) {
		js, svg := filepath.Join(dir, "closed.json"), filepath.Join(dir, "closed.svg")
		out := runTool(t, "-url", url, "-c", "8", "-d", "2s", "-json", js, "-plot", svg)
		checkRun(t, out.Summary, "inferq")
		if out.Mode != "closed" || out.Clients != 8 || out.SubmitMS == nil {
			t.Errorf("summary %+v", out.Summary)
		}
		var fromFile Output
		b, err := os.ReadFile(js)
		if err != nil || json.Unmarshal(b, &fromFile) != nil || fromFile.Jobs != out.Jobs {
			t.Fatalf("-json file: %v, %d jobs", err, fromFile.Jobs)
		}
		checkFile(t, svg, "<?xml")
	})
	t.Run("open", func(t *testing.T) {
		png := filepath.Join(dir, "open.png")
		out := runTool(t, "-url", url, "-mode", "open", "-rate", "100", "-d", "2s", "-scenario", "mixed", "-plot", png)
		checkRun(t, out.Summary, "inferq")
		if out.Sent < 190 || out.Sent > 201 || out.Rate != 100 || len(out.Models) != 2 {
			t.Errorf("open loop at 100/s for 2s sent %d jobs, rate %v, models %v", out.Sent, out.Rate, out.Models)
		}
		checkFile(t, png, "\x89PNG")
	})
	t.Run("prefer wait", func(t *testing.T) {
		// The POST answers with the record, so the submit time is the
		// whole job's, not an enqueue's.
		out := runTool(t, "-url", url, "-c", "4", "-d", "1s", "-scenario", "mixed", "-prefer-wait", "5s")
		checkRun(t, out.Summary, "inferq")
		if out.SubmitMS == nil || out.SubmitMS.P50 < 0.5*out.LatencyMS.P50 {
			t.Errorf("with -prefer-wait, submit p50 %v against latency p50 %v: the POST did not wait", out.SubmitMS, out.LatencyMS)
		}
	})
	t.Run("streaming", func(t *testing.T) {
		out := runTool(t, "-url", url, "-scenario", "streaming", "-c", "4", "-d", "1s", "-tokens", "8")
		checkRun(t, out.Summary, "inferq")
		if st := out.Stream; st == nil || st.Tokens != 8*out.Jobs || st.TTFTMS == nil {
			t.Errorf("streaming stats %+v", st)
		}
	})
}

// TestCompare runs a short -compare: the same jobs through inferq and every
// peer, asynq (with the redis-server the tool starts) and a bare JetStream
// work queue, each directly and behind its HTTP front door, and inferq's
// stages in plain JetStream; the -http peers in child processes of their
// own, and one of them again in this process.
func TestCompare(t *testing.T) {
	if _, err := testutil.RedisServerPath(); err != nil {
		t.Fatalf("-compare needs redis-server: %v", err)
	}
	url := startInferq(t)
	out := runTool(t, "-url", url, "-compare", "-c", "8", "-d", "1s", "-peer-workers", "8")
	checkRun(t, out.Summary, "inferq")
	names := []string{"asynq", "asynq-http", "jetstream", "jetstream-http", "jetstream-kv-http", "jetstream-stages-http"}
	if len(out.Peers) != len(names) || len(out.Compare) != len(names)+1 || len(out.Notes) == 0 {
		t.Fatalf("peers %d, compare rows %d, want %d peers %v", len(out.Peers), len(out.Compare), len(names), names)
	}
	for i, name := range names {
		checkRun(t, out.Peers[i], name)
	}
	for _, r := range out.Compare {
		if r.JobsPerSX <= 0 || r.P99X <= 0 {
			t.Errorf("compare row %+v", r)
		}
		if wantHTTP := r.System == "inferq" || strings.HasSuffix(r.System, "-http"); r.HTTP != wantHTTP {
			t.Errorf("%s: http %v, want %v", r.System, r.HTTP, wantHTTP)
		}
		if wantBatches := r.System == "inferq" || r.System == "jetstream-stages-http"; r.Batching != wantBatches {
			t.Errorf("%s: batching %v, want %v", r.System, r.Batching, wantBatches)
		}
	}
	// The -http peers above ran in child processes (the default); once more
	// in this process.
	out = runTool(t, "-url", url, "-peers", "jetstream-http", "-peer-process=false", "-c", "8", "-d", "1s", "-peer-workers", "8")
	if len(out.Peers) != 1 {
		t.Fatalf("in-process peer: %d peers", len(out.Peers))
	}
	checkRun(t, out.Peers[0], "jetstream-http")
}

// BenchmarkVersusAsynq is issue 8's target as a benchmark: inferq's HTTP
// round trip against asynq, directly and behind the same kind of HTTP front
// door, in the same run on the same machine (one system after the other),
// for simple (no compute: the brokers' own cost per job) and simgpu (a
// GPU-shaped cost per call, where batching counts). inferq runs in this
// process, as the peers do. It reports each system's jobs/s and p99 and
// inferq's ratios: x-asynq-http-jobs/s above 1 is inferq ahead, p99 ratios
// below 1 are inferq ahead.
//
//	go test -run '^$' -bench BenchmarkVersusAsynq -benchtime 1x ./loadtest/
func BenchmarkVersusAsynq(b *testing.B) {
	if _, err := testutil.RedisServerPath(); err != nil {
		b.Fatalf("the asynq peer needs redis-server: %v", err)
	}
	for _, model := range []string{"simple", "simgpu"} {
		b.Run(model, func(b *testing.B) {
			url := startInferq(b)
			var out Output
			for b.Loop() {
				out = runTool(b, "-url", url, "-peers", "asynq,asynq-http", "-model", model, "-c", "32", "-d", "5s")
			}
			rows := compareByName(b, out)
			in, aq, ah := rows["inferq"], rows["asynq"], rows["asynq-http"]
			b.ReportMetric(in.JobsPerS, "inferq-jobs/s")
			b.ReportMetric(in.P99MS, "inferq-p99-ms")
			b.ReportMetric(aq.JobsPerS, "asynq-jobs/s")
			b.ReportMetric(ah.JobsPerS, "asynq-http-jobs/s")
			b.ReportMetric(in.JobsPerS/aq.JobsPerS, "x-asynq-jobs/s")
			b.ReportMetric(in.JobsPerS/ah.JobsPerS, "x-asynq-http-jobs/s")
			b.ReportMetric(in.P99MS/aq.P99MS, "x-asynq-p99")
			b.ReportMetric(in.P99MS/ah.P99MS, "x-asynq-http-p99")
		})
	}
}

// BenchmarkVersusJetStream is issue 14's compare with inferq in this process,
// as the peers are (the command reaches a separate `inferq dev`): the
// same jobs through inferq, the bare JetStream pipeline behind its front door
// and inferq's stages in plain JetStream (jetstream-stages-http), one after
// the other. It reports each system's jobs/s and inferq's ratios to them.
//
//	go test -run '^$' -bench BenchmarkVersusJetStream -benchtime 1x ./loadtest/
func BenchmarkVersusJetStream(b *testing.B) {
	url := startInferq(b)
	var out Output
	for b.Loop() {
		out = runTool(b, "-url", url, "-peers", "jetstream-http,jetstream-stages-http", "-model", "simple", "-c", "32", "-d", "10s")
	}
	rows := compareByName(b, out)
	in, js, st := rows["inferq"], rows["jetstream-http"], rows["jetstream-stages-http"]
	b.ReportMetric(in.JobsPerS, "inferq-jobs/s")
	b.ReportMetric(js.JobsPerS, "jetstream-http-jobs/s")
	b.ReportMetric(st.JobsPerS, "stages-jobs/s")
	b.ReportMetric(in.JobsPerS/js.JobsPerS, "x-jetstream-http-jobs/s")
	b.ReportMetric(in.JobsPerS/st.JobsPerS, "x-stages-jobs/s")
	b.ReportMetric(in.P99MS/js.P99MS, "x-jetstream-http-p99")
}

// compareByName is a -compare run's rows by system; a system with errors
// fails the benchmark.
func compareByName(b *testing.B, out Output) map[string]CompareRow {
	b.Helper()
	rows := map[string]CompareRow{}
	for _, r := range out.Compare {
		if r.Errors != 0 {
			b.Fatalf("%s: %d errors", r.System, r.Errors)
		}
		rows[r.System] = r
	}
	return rows
}
