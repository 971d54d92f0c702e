package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/pkg/tensor"
)

const largeTensor = 16 << 20 // bytes of FP32

// BenchmarkLargeTensor measures a 16 MiB FP32 input through `identity`, end
// to end (POST the JSON job, long-poll GET until the record with the whole
// output as JSON is in hand), in both results stores: the input and output
// travel through the blobs bucket. The same tensor cannot travel inline (a
// job, batch or event message is capped by NATS's 1 MB max payload, which
// must not be raised that far), so it is compared with what JSON numbers
// alone cost: decoding the request's data and encoding the response's
// ("json-codec"), and with what the blob path adds: one put and one get
// of the raw bytes ("blob-put-get"). MB/s is tensor bytes per second.
//
//	go test -run '^$' -bench BenchmarkLargeTensor -benchtime 3x ./internal/e2e/
func BenchmarkLargeTensor(b *testing.B) {
	body, want := fp32Body(largeTensor / 4)
	for _, backend := range []string{"kv", "redis"} {
		b.Run("e2e-"+backend, func(b *testing.B) {
			s := startStack(b, backend == "redis", func(c *config.Config) { c.Log.Level = "error" })
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				code, out := post(b, s.URL+"/v1/models/identity/jobs", body)
				var a accepted
				if err := json.Unmarshal(out, &a); code != http.StatusAccepted || err != nil {
					b.Fatalf("submit: %d %.300s", code, out)
				}
				rec, err := s.waitErr(a.ID)
				if err != nil || rec.Status != "succeeded" || len(rec.Result.Outputs) != 1 {
					b.Fatalf("job %s: %v %s %+v", a.ID, err, rec.Status, rec.Error)
				}
			}
			b.StopTimer()
			report(b, time.Since(start))
		})
	}
	b.Run("json-codec", func(b *testing.B) {
		for range b.N {
			var req struct {
				Inputs []*tensor.JSON `json:"inputs"`
			}
			if err := json.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
			t, err := tensor.FromJSON(req.Inputs[0])
			if err != nil {
				b.Fatal(err)
			}
			out, err := tensor.AppendJSONData(nil, t)
			if err != nil || len(t.Data) != 4*len(want) || len(out) < len(t.Data) {
				b.Fatalf("%d bytes, %d of JSON: %v", len(t.Data), len(out), err)
			}
		}
		report(b, b.Elapsed())
	})
	b.Run("blob-put-get", func(b *testing.B) {
		n := testutil.StartNATS(b)
		topo := jetstream.DefaultTopology()
		if err := provision.All(context.Background(), n.JS, topo, nil); err != nil {
			b.Fatal(err)
		}
		store := blob.New(n.JS, topo.BlobsBucket())
		data := make([]byte, largeTensor)
		for i := range data {
			data[i] = byte(i)
		}
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			ref, err := store.Put(ctx, fmt.Sprintf("bench/%d", i), data)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := store.Get(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
		report(b, b.Elapsed())
	})
}

// report states the tensor's throughput and the time per job.
func report(b *testing.B, el time.Duration) {
	b.ReportMetric(float64(largeTensor)*float64(b.N)/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(el.Seconds()/float64(b.N), "s/job")
}
