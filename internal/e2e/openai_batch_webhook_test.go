package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inferq/inferq/internal/config"
)

// newBatchWithCallback uploads data and creates a completions batch whose
// completion webhook goes to url (inferq's callback_url extension field).
func newBatchWithCallback(t *testing.T, client openai.Client, data []byte, url string) (*openai.Batch, error) {
	t.Helper()
	ctx := context.Background()
	f, err := client.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "batch.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	return client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1Completions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h}, option.WithJSONSet("callback_url", url))
}

// batchWebhook polls batch id until its webhook is settled.
func batchWebhook(t *testing.T, client openai.Client, id string) webhookState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := client.Batches.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var raw struct {
			Webhook *webhookState `json:"webhook"`
		}
		if err := json.Unmarshal([]byte(b.RawJSON()), &raw); err != nil {
			t.Fatal(err)
		}
		if w := raw.Webhook; w != nil && (w.Status == "delivered" || w.Status == "failed") {
			return *w
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s: webhook %+v not settled after 30s", id, raw.Webhook)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenAIBatchWebhook: a batch given a callback_url sends one signed
// webhook when it ends (batch.completed, batch.cancelled), verified per
// Standard Webhooks independently, whose data is the batch object; the
// batch record says delivered; a URL outside the allow-list is refused.
func TestOpenAIBatchWebhook(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusNoContent })
	s := startStack(t, false, func(c *config.Config) {
		chatModels(c)
		webhookConfig(c, 200*time.Millisecond)
	})
	client := openaiClient(s.URL)

	_, err := newBatchWithCallback(t, client, batchFile("repeat", 1, 2), "http://10.1.2.3/hook")
	if e := apiError(t, err, 400); e.Param != "callback_url" {
		t.Errorf("refused callback_url: param %q, message %q", e.Param, e.Message)
	}

	done, err := newBatchWithCallback(t, client, batchFile("repeat", 5, 3), rc.srv.URL+"/hooks/batch?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	if b := pollBatch(t, client, done.ID, time.Minute, ended); b.Status != "completed" {
		t.Fatalf("batch %s", b.RawJSON())
	}
	if w := batchWebhook(t, client, done.ID); w.Status != "delivered" || w.Attempts != 1 || !strings.HasPrefix(w.URL, rc.srv.URL) {
		t.Errorf("completed batch's webhook %+v, want delivered after 1 attempt", w)
	}

	// The console's Batches pages read the same batch through the API.
	code, _, page := bearerCaller(t, s.URL)("GET", "/ui/batches/"+done.ID, "", "")
	if code != http.StatusOK || !strings.Contains(page, `id="batch-status" class="status-completed"`) || !strings.Contains(page, "5 completed, 0 failed of 5") ||
		!strings.Contains(page, "delivered after 1 attempts") || strings.Contains(page, `http-equiv="refresh"`) {
		t.Errorf("console batch page: %d %s", code, page)
	}
	if code, _, list := bearerCaller(t, s.URL)("GET", "/ui/batches", "", ""); code != http.StatusOK || !strings.Contains(list, done.ID) {
		t.Errorf("console batches page: %d", code)
	}

	// Cancelled before it ran: batch.cancelled.
	// The slow model takes 100ms a token: 200 lines of 20 tokens cannot
	// end before the cancel.
	cancelled, err := newBatchWithCallback(t, client, batchFile("slow", 200, 20), rc.srv.URL+"/hooks/batch")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Batches.Cancel(context.Background(), cancelled.ID); err != nil {
		t.Fatal(err)
	}
	if b := pollBatch(t, client, cancelled.ID, time.Minute, ended); b.Status != "cancelled" {
		t.Fatalf("batch %s", b.RawJSON())
	}
	if w := batchWebhook(t, client, cancelled.ID); w.Status != "delivered" {
		t.Errorf("cancelled batch's webhook %+v", w)
	}

	time.Sleep(300 * time.Millisecond) // a duplicate would come by now
	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("receiver got %d webhooks, want 2", len(got))
	}
	want := map[string]string{done.ID: "batch.completed", cancelled.ID: "batch.cancelled"}
	for _, d := range got {
		if d.verErr != nil {
			t.Fatalf("webhook %s does not verify: %v", d.id, d.verErr)
		}
		var data struct {
			ID            string                         `json:"id"`
			Object        string                         `json:"object"`
			Status        string                         `json:"status"`
			OutputFileID  string                         `json:"output_file_id"`
			RequestCounts struct{ Total, Completed int } `json:"request_counts"`
		}
		if err := json.Unmarshal(d.payload.Data, &data); err != nil {
			t.Fatalf("webhook %s data: %v", d.id, err)
		}
		if d.id != data.ID || want[data.ID] != d.payload.Type || data.Object != "batch" || "batch."+data.Status != d.payload.Type {
			t.Errorf("webhook-id %q, type %q, data %s", d.id, d.payload.Type, d.payload.Data)
		}
		if strings.Contains(string(d.payload.Data), `"webhook"`) {
			t.Errorf("webhook %s: data carries the webhook's own state: %s", d.id, d.payload.Data)
		}
		if data.ID == done.ID && (data.OutputFileID == "" || data.RequestCounts.Completed != 5) {
			t.Errorf("completed batch's data %s", d.payload.Data)
		}
	}
}
