package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// repeatText is what the repeat test model answers to prompt with
// max_tokens n: the prompt's characters over and over, n of them.
func repeatText(prompt string, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(prompt)
	}
	return b.String()[:n]
}

// batchFile is a JSONL input file of n completion requests to model.
func batchFile(model string, n, maxTokens int) []byte {
	var b bytes.Buffer
	for k := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%d","method":"POST","url":"/v1/completions","body":{"model":%q,"prompt":"p%d-","max_tokens":%d}}`+"\n",
			k, model, k, maxTokens)
	}
	return b.Bytes()
}

// uploadBatch uploads data and creates a completions batch of it.
func uploadBatch(t testing.TB, client openai.Client, data []byte, meta map[string]string) *openai.Batch {
	t.Helper()
	ctx := context.Background()
	f, err := client.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "batch.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	if f.Bytes != int64(len(data)) || f.Purpose != "batch" || f.Filename != "batch.jsonl" {
		t.Fatalf("uploaded file %+v", f)
	}
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1Completions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h, Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != "validating" || b.InputFileID != f.ID {
		t.Fatalf("new batch %+v", b)
	}
	return b
}

// pollBatch polls batch id until until(status) holds or limit passes.
func pollBatch(t testing.TB, client openai.Client, id string, limit time.Duration, until func(*openai.Batch) bool) *openai.Batch {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, err := client.Batches.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if until(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s after %v: %s %+v", id, limit, b.Status, b.RequestCounts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ended(b *openai.Batch) bool {
	switch b.Status {
	case "completed", "failed", "expired", "cancelled":
		return true
	}
	return false
}

// outputLine is a line of an output or error file.
type outputLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fileLines downloads a file and decodes its lines.
func fileLines(t testing.TB, client openai.Client, id string) []outputLine {
	t.Helper()
	if id == "" {
		return nil
	}
	resp, err := client.Files.Content(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []outputLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l outputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("file %s: line %q: %v", id, sc.Text(), err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOutput checks that the output file answers every one of n requests
// of batchFile exactly once, with the repeat model's text.
func checkOutput(t testing.TB, lines []outputLine, n, maxTokens int) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l.CustomID] {
			t.Fatalf("custom_id %s answered twice", l.CustomID)
		}
		seen[l.CustomID] = true
		if l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil {
			t.Fatalf("line %+v", l)
		}
		var c openai.Completion
		if err := json.Unmarshal(l.Response.Body, &c); err != nil {
			t.Fatal(err)
		}
		var k int
		if _, err := fmt.Sscanf(l.CustomID, "req-%d", &k); err != nil {
			t.Fatal(err)
		}
		want := repeatText(fmt.Sprintf("p%d-", k), maxTokens)
		if len(c.Choices) != 1 || c.Choices[0].Text != want || c.Usage.CompletionTokens != int64(maxTokens) {
			t.Fatalf("%s: %s, want text %q", l.CustomID, l.Response.Body, want)
		}
	}
	if len(seen) != n {
		t.Fatalf("output answers %d requests, want %d", len(seen), n)
	}
}

// TestOpenAIBatch runs the Batch API end to end with the official OpenAI
// Go SDK: a 1,000-line file uploaded, run to completed with live counts,
// every line's answer checked; the files and batches listed, read and
// deleted; an invalid file failing with the line named; a cancel.
func TestOpenAIBatch(t *testing.T) {
	s := startStack(t, false, chatModels)
	client := openaiClient(s.URL)
	ctx := t.Context()

	t.Run("1000 lines", func(t *testing.T) {
		const n, maxTokens = 1000, 6
		b := uploadBatch(t, client, batchFile("repeat", n, maxTokens), map[string]string{"job": "nightly"})
		sawProgress := false
		b = pollBatch(t, client, b.ID, 3*time.Minute, func(b *openai.Batch) bool {
			if b.Status == "in_progress" && b.RequestCounts.Total == n && b.RequestCounts.Completed > 0 && b.RequestCounts.Completed < n {
				sawProgress = true
			}
			return ended(b)
		})
		if b.Status != "completed" || b.RequestCounts.Total != n || b.RequestCounts.Completed != n || b.RequestCounts.Failed != 0 {
			t.Fatalf("batch ended %s %+v (errors %+v)", b.Status, b.RequestCounts, b.Errors)
		}
		if b.Metadata["job"] != "nightly" || b.CompletedAt == 0 || b.InProgressAt == 0 || b.FinalizingAt == 0 || b.ErrorFileID != "" {
			t.Errorf("completed batch %s", b.RawJSON())
		}
		if !sawProgress {
			t.Error("request_counts never showed a batch part done")
		}
		checkOutput(t, fileLines(t, client, b.OutputFileID), n, maxTokens)

		page, err := client.Batches.List(ctx, openai.BatchListParams{Limit: openai.Int(1)})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != b.ID {
			t.Errorf("batches list %s", page.RawJSON())
		}
		out, err := client.Files.Get(ctx, b.OutputFileID)
		if err != nil || out.Purpose != "batch_output" {
			t.Fatalf("output file %+v, %v", out, err)
		}
		if d, err := client.Files.Delete(ctx, b.InputFileID); err != nil || !d.Deleted {
			t.Fatalf("delete %+v, %v", d, err)
		}
		_, err = client.Files.Get(ctx, b.InputFileID)
		apiError(t, err, 404)
	})

	t.Run("invalid file names the line", func(t *testing.T) {
		data := append(batchFile("repeat", 1, 4),
			[]byte(`{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"repeat","prompt":"a"}}`+"\n"+
				`{"custom_id":"y","method":"POST","url":"/v1/completions","body":{"model":"nope","prompt":"a"}}`+"\n")...)
		b := uploadBatch(t, client, data, nil)
		b = pollBatch(t, client, b.ID, time.Minute, ended)
		if b.Status != "failed" || len(b.Errors.Data) != 2 {
			t.Fatalf("batch %s", b.RawJSON())
		}
		if e := b.Errors.Data[0]; e.Line != 2 || e.Code != "mismatched_url" {
			t.Errorf("first error %+v", e)
		}
		if e := b.Errors.Data[1]; e.Line != 3 || e.Code != "model_not_found" || !strings.Contains(e.Message, "line 3") {
			t.Errorf("second error %+v", e)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		_, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: "file-nope", Endpoint: openai.BatchNewParamsEndpointV1Completions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		apiError(t, err, 404)
		_, err = client.Batches.Get(ctx, "batch_nope")
		apiError(t, err, 404)
	})

	t.Run("cancel", func(t *testing.T) {
		// The slow model takes 100ms a token: 300 lines of 20 tokens
		// cannot end before the cancel.
		b := uploadBatch(t, client, batchFile("slow", 300, 20), nil)
		pollBatch(t, client, b.ID, time.Minute, func(b *openai.Batch) bool { return b.Status == "in_progress" })
		c, err := client.Batches.Cancel(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != "cancelling" && c.Status != "cancelled" {
			t.Fatalf("cancel answered %s", c.Status)
		}
		b = pollBatch(t, client, b.ID, time.Minute, ended)
		if b.Status != "cancelled" || b.CancelledAt == 0 || b.RequestCounts.Completed == 300 {
			t.Fatalf("batch %s", b.RawJSON())
		}
		lines := len(fileLines(t, client, b.OutputFileID)) + len(fileLines(t, client, b.ErrorFileID))
		if lines != int(b.RequestCounts.Completed+b.RequestCounts.Failed) {
			t.Errorf("files hold %d lines, counts say %+v", lines, b.RequestCounts)
		}
		_, err = client.Batches.Cancel(ctx, b.ID)
		apiError(t, err, 409)
	})
}
