package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/python"
)

// testPython is the interpreter for the runner tests: $INFERQ_PYTHON or
// Debian's /usr/bin/python3. A missing torch fails the tests: the runner is
// part of the product, so its tests must not silently skip.
func testPython(t testing.TB) string {
	t.Helper()
	py := os.Getenv("INFERQ_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if err := importsTorch(py); err != nil {
		t.Fatalf("the Python runner tests need %s with torch and protobuf (%v): install Debian's python3-torch and "+
			"python3-protobuf (apt-get install python3-torch python3-protobuf) or set INFERQ_PYTHON", py, err)
	}
	return py
}

func newTestProcess(t *testing.T, source, kind string, opt ProcessOptions) *Process {
	t.Helper()
	pp, err := python.Extract(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &config.Model{Name: strings.TrimPrefix(source, "builtin:"), Kind: kind,
		Runner:   config.Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", source}, Device: "cpu"},
		Batching: config.Batching{MaxBatchSize: 32}}
	opt.Python, opt.PythonPath = testPython(t), pp
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	p, err := NewProcess(m, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func bytesElem(s string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// textBatch is a generate batch of one prompt per job.
func textBatch(id string, prompts []string, params []map[string]any) *inferqpb.Batch {
	b := &inferqpb.Batch{Id: id, Model: "tiny-gpt"}
	var data []byte
	for i, p := range prompts {
		data = append(data, bytesElem(p)...)
		pj, _ := json.Marshal(params[i])
		b.Jobs = append(b.Jobs, &inferqpb.BatchJob{Id: fmt.Sprintf("%s-j%d", id, i), RowStart: int64(i), RowEnd: int64(i + 1), ParametersJson: pj})
	}
	b.Inputs = []*inferqpb.Tensor{{Name: "text_input", Datatype: "BYTES", Shape: []int64{int64(len(prompts)), 1}, Data: data}}
	return b
}

// tokens records the emitted chunks per job.
type tokens struct {
	mu     sync.Mutex
	chunks map[string][]*inferqpb.TokenChunk
	onEmit func(*inferqpb.TokenChunk)
}

func (k *tokens) emit(c *inferqpb.TokenChunk) error {
	k.mu.Lock()
	if k.chunks == nil {
		k.chunks = map[string][]*inferqpb.TokenChunk{}
	}
	k.chunks[c.JobId] = append(k.chunks[c.JobId], c)
	k.mu.Unlock()
	if k.onEmit != nil {
		k.onEmit(c)
	}
	return nil
}

func (k *tokens) text(job string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var s strings.Builder
	for _, c := range k.chunks[job] {
		s.WriteString(c.Text)
	}
	return s.String()
}

func outputText(t *testing.T, jr *inferqpb.JobResult) string {
	t.Helper()
	if jr.Error != nil {
		t.Fatalf("job %s failed: %v", jr.JobId, jr.Error)
	}
	if len(jr.Outputs) != 1 || jr.Outputs[0].Name != "text_output" || jr.Outputs[0].Datatype != "BYTES" ||
		fmt.Sprint(jr.Outputs[0].Shape) != "[1 1]" {
		t.Fatalf("job %s: want one BYTES text_output [1 1], got %v", jr.JobId, jr.Outputs)
	}
	return firstString(jr.Outputs[0].Data)
}

func TestProcessGenerate(t *testing.T) {
	before := runtime.NumGoroutine()
	p := newTestProcess(t, "builtin:tiny-gpt", config.KindGenerate, ProcessOptions{HealthInterval: 50 * time.Millisecond})
	ctx := context.Background()
	start := time.Now()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("runner started in %s", time.Since(start))
	pid := p.cur.pid

	t.Run("batch", func(t *testing.T) {
		var k tokens
		params := []map[string]any{{"max_tokens": 12, "temperature": 0}, {"max_tokens": 20, "seed": 7}, {"max_new_tokens": 30, "seed": 8, "stop": []string{"a", "e"}}}
		res, err := p.Run(ctx, textBatch("b1", []string{"Hello", "The quick brown fox", "héllo wörld"}, params), k.emit)
		if err != nil {
			t.Fatal(err)
		}
		if res.BatchId != "b1" || len(res.Jobs) != 3 {
			t.Fatalf("result %v", res)
		}
		for i, jr := range res.Jobs {
			text := outputText(t, jr)
			if jr.JobId != fmt.Sprintf("b1-j%d", i) {
				t.Errorf("job %d is %s", i, jr.JobId)
			}
			if i < 2 && text == "" {
				t.Errorf("job %s: empty text", jr.JobId)
			}
			if got := k.text(jr.JobId); got != text {
				t.Errorf("job %s: streamed %q, final %q", jr.JobId, got, text)
			}
			chunks := k.chunks[jr.JobId]
			for n, c := range chunks {
				if c.Seq != uint64(n+1) || c.Final != (n == len(chunks)-1) {
					t.Errorf("job %s chunk %d: seq %d final %v", jr.JobId, n, c.Seq, c.Final)
				}
			}
		}
		if text := outputText(t, res.Jobs[2]); strings.ContainsAny(text, "ae") {
			t.Errorf("stop strings not applied: %q", text)
		}
	})

	t.Run("same seed same text", func(t *testing.T) {
		seeded := map[string]any{"max_tokens": 24, "temperature": 0.8, "top_p": 0.9, "top_k": 50, "seed": 42}
		var k1, k2 tokens
		r1, err := p.Run(ctx, textBatch("s1", []string{"seed me"}, []map[string]any{seeded}), k1.emit)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := p.Run(ctx, textBatch("s2", []string{"other", "seed me", "x"},
			[]map[string]any{{"max_tokens": 5}, seeded, {"max_tokens": 40, "seed": 1}}), k2.emit)
		if err != nil {
			t.Fatal(err)
		}
		a, b := outputText(t, r1.Jobs[0]), outputText(t, r2.Jobs[1])
		if a != b || a == "" {
			t.Errorf("same seed gave %q and %q", a, b)
		}
	})

	t.Run("cancel ctx", func(t *testing.T) {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		k := tokens{onEmit: func(c *inferqpb.TokenChunk) {
			if c.Seq == 3 {
				cancel()
			}
		}}
		t0 := time.Now()
		_, err := p.Run(rctx, textBatch("c1", []string{"go on", "and on"}, []map[string]any{{"max_tokens": 2000, "seed": 1}, {"max_tokens": 2000, "seed": 2}}), k.emit)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v, want context.Canceled", err)
		}
		// 2000 tokens take several seconds; a cancel stops within a step.
		if d := time.Since(t0); d > 4*time.Second {
			t.Errorf("cancelled Run took %s", d)
		}
		if n := len(k.chunks["c1-j0"]); n > 20 {
			t.Errorf("%d chunks after cancelling at 3", n)
		}
	})

	t.Run("cancel one job", func(t *testing.T) {
		k := tokens{onEmit: func(c *inferqpb.TokenChunk) {
			if c.JobId == "c2-j0" && c.Seq == 2 {
				p.Cancel("c2-j0")
			}
		}}
		t0 := time.Now()
		res, err := p.Run(ctx, textBatch("c2", []string{"long", "short"}, []map[string]any{{"max_tokens": 2000}, {"max_tokens": 8, "temperature": 0}}), k.emit)
		if err != nil {
			t.Fatal(err)
		}
		if e := res.Jobs[0].Error; e == nil || e.Code != "cancelled" {
			t.Errorf("cancelled job: %v", res.Jobs[0])
		}
		if outputText(t, res.Jobs[1]) != k.text("c2-j1") {
			t.Error("neighbour of a cancelled job lost text")
		}
		if d := time.Since(t0); d > 4*time.Second {
			t.Errorf("Run with a cancelled job took %s", d)
		}
	})

	t.Run("invalid parameters", func(t *testing.T) {
		res, err := p.Run(ctx, textBatch("p1", []string{"a", "b"}, []map[string]any{{"max_tokens": -3}, {"max_tokens": 2}}), (&tokens{}).emit)
		if err != nil {
			t.Fatal(err)
		}
		if e := res.Jobs[0].Error; e == nil || e.Code != "invalid_input" {
			t.Errorf("bad job: %v", res.Jobs[0])
		}
		outputText(t, res.Jobs[1])
	})

	if p.cur == nil || p.cur.pid != pid {
		t.Error("the runner restarted during healthy batches")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(ctx, textBatch("z", []string{"a"}, []map[string]any{{}}), (&tokens{}).emit); !errors.Is(err, ErrProcessClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("runner %d still alive after Close", pid)
	}
	waitGoroutines(t, before)
}

// waitGoroutines fails when goroutines started by the test outlive it.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, want %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProcessCrashAndHangRestart(t *testing.T) {
	p := newTestProcess(t, "builtin:tiny-gpt", config.KindGenerate, ProcessOptions{
		HealthInterval: 100 * time.Millisecond, HealthTimeout: time.Second, RestartBackoff: 100 * time.Millisecond})
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	long := []map[string]any{{"max_tokens": 2000}}
	check := func(name string) {
		t.Helper()
		res, err := p.Run(ctx, textBatch(name, []string{"hi"}, []map[string]any{{"max_tokens": 4, "temperature": 0}}), (&tokens{}).emit)
		if err != nil {
			t.Fatalf("Run after a failure: %v", err)
		}
		outputText(t, res.Jobs[0])
	}

	pid := p.cur.pid
	k := tokens{onEmit: func(c *inferqpb.TokenChunk) {
		if c.Seq == 2 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}}
	_, err := p.Run(ctx, textBatch("k1", []string{"die"}, long), k.emit)
	if err == nil || !strings.Contains(err.Error(), "exited mid-batch") {
		t.Fatalf("Run with a killed runner: %v", err)
	}
	check("k2")
	if p.cur.pid == pid {
		t.Fatal("runner was not restarted")
	}

	pid = p.cur.pid
	k = tokens{onEmit: func(c *inferqpb.TokenChunk) {
		if c.Seq == 2 {
			_ = syscall.Kill(pid, syscall.SIGSTOP) // alive but silent: hung
		}
	}}
	t0 := time.Now()
	_, err = p.Run(ctx, textBatch("h1", []string{"hang"}, long), k.emit)
	if err == nil || !strings.Contains(err.Error(), "hung") {
		t.Fatalf("Run with a hung runner: %v", err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("hang detected after %s", d)
	}
	check("h2")
	if p.cur.pid == pid {
		t.Fatal("hung runner was not replaced")
	}
}

func TestProcessTensor(t *testing.T) {
	p := newTestProcess(t, "builtin:tiny-mlp", config.KindTensor, ProcessOptions{})
	x := make([]byte, 0, 3*16*4)
	for i := range 3 * 16 {
		x = binary.LittleEndian.AppendUint32(x, math.Float32bits(float32(i%7)-3))
	}
	in := func(rows int, data []byte) []*inferqpb.Tensor {
		return []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{int64(rows), 16}, Data: data}}
	}
	res, err := p.Run(context.Background(), &inferqpb.Batch{Id: "t1", Inputs: in(3, x), Jobs: []*inferqpb.BatchJob{
		{Id: "a", RowStart: 0, RowEnd: 1}, {Id: "b", RowStart: 1, RowEnd: 3}}}, (&tokens{}).emit)
	if err != nil {
		t.Fatal(err)
	}
	// The same rows run alone must give the same numbers as their slice of the batch.
	alone, err := p.Run(context.Background(), &inferqpb.Batch{Id: "t2", Inputs: in(2, x[16*4:]), Jobs: []*inferqpb.BatchJob{
		{Id: "b", RowStart: 0, RowEnd: 2}}}, (&tokens{}).emit)
	if err != nil {
		t.Fatal(err)
	}
	a, b := res.Jobs[0].Outputs[0], res.Jobs[1].Outputs[0]
	if a.Name != "OUTPUT0" || a.Datatype != "FP32" || fmt.Sprint(a.Shape) != "[1 4]" || fmt.Sprint(b.Shape) != "[2 4]" || len(b.Data) != 2*4*4 {
		t.Fatalf("outputs %v / %v", a, b)
	}
	want := alone.Jobs[0].Outputs[0].Data
	for i := 0; i < len(want); i += 4 {
		g, w := math.Float32frombits(binary.LittleEndian.Uint32(b.Data[i:])), math.Float32frombits(binary.LittleEndian.Uint32(want[i:]))
		if math.Abs(float64(g-w)) > 1e-5 {
			t.Fatalf("job b element %d: batched %v, alone %v", i/4, g, w)
		}
	}
	// A wrongly shaped input fails the batch for good.
	_, err = p.Run(context.Background(), &inferqpb.Batch{Id: "t3", Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{1, 3}, Data: make([]byte, 12)}},
		Jobs: []*inferqpb.BatchJob{{Id: "c", RowStart: 0, RowEnd: 1}}}, (&tokens{}).emit)
	var pe *PermanentError
	if !errors.As(err, &pe) {
		t.Errorf("bad input: %v, want a PermanentError", err)
	}
}

func TestProcessLoadFailure(t *testing.T) {
	p := newTestProcess(t, "builtin:no-such-model", config.KindGenerate, ProcessOptions{})
	err := p.Start(context.Background())
	if err == nil || !errors.Is(err, ErrModelLoad) || !strings.Contains(err.Error(), "no-such-model") {
		t.Fatalf("Start: %v", err)
	}
}

func TestFindPython(t *testing.T) {
	t.Setenv("INFERQ_PYTHON", "/opt/py/bin/python3")
	if p, err := FindPython(); err != nil || p != "/opt/py/bin/python3" {
		t.Errorf("FindPython with INFERQ_PYTHON: %q, %v", p, err)
	}
	_, err := probePython([]string{"/nonexistent/python3", os.Args[0] + "-not-there"})
	if err == nil || !strings.Contains(err.Error(), "python3-torch") {
		t.Errorf("probe without python: %v", err)
	}
	_, err = probePython([]string{"/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "/bin/false") {
		t.Errorf("probe with a python that cannot import torch: %v", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	f := &inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Health{Health: &inferqpb.Health{TimeUnixNano: 9}}}
	pr := &proc{}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.stdin = w
	go func() { _ = pr.send(f, time.Second); w.Close() }()
	data, _ := io.ReadAll(r)
	r.Close()
	got, err := readFrame(strings.NewReader(string(data)))
	if err != nil || got.GetHealth().GetTimeUnixNano() != 9 {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if _, err := readFrame(strings.NewReader(string(data[:len(data)-1]))); err == nil {
		t.Error("truncated frame read without error")
	}
}
