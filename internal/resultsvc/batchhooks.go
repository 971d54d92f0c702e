package resultsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/openai"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// BatchWebhookRecorder returns a webhook.Options.Record that keeps the
// delivery state of a Batch API batch's completion webhook (type batch.*,
// whose webhook-id is the batch id) in the batch's record, as a job's is
// kept in the job's. The bucket is opened on first use: the ingress
// creates it, possibly after the deliverer has started.
func BatchWebhookRecorder(js natsjs.JetStream, t jetstream.Topology) func(context.Context, *inferqpb.WebhookDelivery, results.WebhookStatus, int, string) error {
	var (
		mu sync.Mutex
		kv natsjs.KeyValue
	)
	open := func(ctx context.Context) (natsjs.KeyValue, error) {
		mu.Lock()
		defer mu.Unlock()
		if kv == nil {
			b, err := js.KeyValue(ctx, t.BatchRecordsBucket())
			if err != nil {
				return nil, fmt.Errorf("bucket %s: %w", t.BatchRecordsBucket(), err)
			}
			kv = b
		}
		return kv, nil
	}
	return func(ctx context.Context, w *inferqpb.WebhookDelivery, st results.WebhookStatus, attempts int, lastErr string) error {
		if !strings.HasPrefix(w.Type, "batch.") {
			return nil
		}
		kv, err := open(ctx)
		if err != nil {
			return err
		}
		key := openai.BatchKey(w.Tenant, w.Id)
		for {
			e, err := kv.Get(ctx, key)
			if errors.Is(err, natsjs.ErrKeyNotFound) {
				return nil // the batch was deleted: nothing to keep
			}
			if err != nil {
				return fmt.Errorf("batch %s: %w", key, err)
			}
			// The record is the ingress's: only its batch's webhook
			// changes, every other field passes through as it is.
			var rec map[string]json.RawMessage
			var b openai.Batch
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return fmt.Errorf("batch %s: record does not decode: %w", key, err)
			}
			if err := json.Unmarshal(rec["batch"], &b); err != nil {
				return fmt.Errorf("batch %s: record does not decode: %w", key, err)
			}
			hook := b.Webhook
			if hook == nil || hook.Status == string(results.WebhookDelivered) || hook.Status == string(results.WebhookFailed) {
				return nil // no webhook, or settled already: never undone
			}
			hook.Status, hook.Attempts, hook.LastError = string(st), uint32(attempts), lastErr
			if rec["batch"], err = json.Marshal(b); err != nil {
				return err
			}
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			_, err = kv.Update(ctx, key, v, e.Revision())
			if err == nil {
				return nil
			}
			if !errors.Is(err, natsjs.ErrKeyExists) || ctx.Err() != nil {
				return fmt.Errorf("batch %s: update: %w", key, err)
			}
		}
	}
}
