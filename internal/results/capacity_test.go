package results_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/testutil"
)

// BenchmarkRetained measures what each retained job costs the results
// stores, and each retained token the token logs, for docs/capacity.md.
// One iteration stores one job (running, then succeeded with a `simple`
// result of 2 × 16 INT32) or one token; run it with a fixed count:
//
//	go test -run '^$' -bench Retained -benchtime 20000x ./internal/results
//
// heap-B/job is the Go heap held after a GC (the embedded nats-server runs
// in this process), disk-B/job the bytes on disk, redis-B/job Redis's
// used_memory and aof-B/job its append-only file.
func BenchmarkRetained(b *testing.B) {
	result := simpleResult()
	b.Run("kv", func(b *testing.B) {
		n := testutil.StartNATS(b)
		ctx := testutil.Context(b)
		s, err := results.NewKV(ctx, n.JS, results.KVConfig{Retention: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		dir := n.Server.Server.JetStreamConfig().StoreDir
		heap0, disk0 := heapBytes(), dirBytes(b, dir)
		b.ResetTimer()
		for i := range b.N {
			storeJob(b, s, fmt.Sprintf("j%08d", i), result)
		}
		b.StopTimer()
		settle(b)
		report(b, "heap-B/job", heapBytes()-heap0)
		report(b, "disk-B/job", dirBytes(b, dir)-disk0)
	})
	// The same final records as messages of a plain stream, one subject per
	// job (what the KV bucket is) or all on one subject: the difference is
	// what nats-server's per-subject index costs per job.
	for _, perJob := range []bool{true, false} {
		b.Run(map[bool]string{true: "stream-subject-per-job", false: "stream-one-subject"}[perJob], func(b *testing.B) {
			n := testutil.StartNATS(b)
			ctx := testutil.Context(b)
			if _, err := n.JS.CreateStream(ctx, natsjs.StreamConfig{Name: "REC", Subjects: []string{"rec.>"}, MaxAge: time.Hour}); err != nil {
				b.Fatal(err)
			}
			rec := recordJSON(b, result)
			heap0 := heapBytes()
			b.ResetTimer()
			for i := range b.N {
				subj := "rec.all"
				if perJob {
					subj = fmt.Sprintf("rec.j%08d", i)
				}
				if _, err := n.JS.Publish(ctx, subj, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			settle(b)
			report(b, "heap-B/job", heapBytes()-heap0)
		})
	}
	b.Run("redis", func(b *testing.B) {
		redisRetained(b, "job", func(ctx context.Context, s *results.RedisStore, i int) {
			storeJob(b, s, fmt.Sprintf("j%08d", i), result)
		})
	})
	// Tokens: 32 per job, as a short generation streams them.
	const perJob = 32
	b.Run("redis-tokens", func(b *testing.B) {
		redisRetained(b, "token", func(ctx context.Context, s *results.RedisStore, i int) {
			id := fmt.Sprintf("j%08d", i/perJob)
			if _, err := s.AppendToken(ctx, id, 1, results.Token{Seq: uint64(i%perJob + 1), Text: " word", TokenID: 1234, Final: i%perJob == perJob-1}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("jetstream-tokens", func(b *testing.B) {
		n := testutil.StartNATS(b)
		ctx := testutil.Context(b)
		if _, err := n.JS.CreateStream(ctx, natsjs.StreamConfig{Name: "TOK", Subjects: []string{"tok.>"}, MaxAge: time.Hour}); err != nil {
			b.Fatal(err)
		}
		dir := n.Server.Server.JetStreamConfig().StoreDir
		heap0, disk0 := heapBytes(), dirBytes(b, dir)
		b.ResetTimer()
		for i := range b.N {
			id := fmt.Sprintf("j%08d", i/perJob)
			chunk, _ := json.Marshal(lifecycle.TokenChunk{Job: id, Seq: uint64(i%perJob + 1), Text: " word", TokenID: 1234, Final: i%perJob == perJob-1})
			if _, err := n.JS.Publish(ctx, "tok.tenant."+id, chunk); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		settle(b)
		report(b, "heap-B/token", heapBytes()-heap0)
		report(b, "disk-B/token", dirBytes(b, dir)-disk0)
	})
}

// storeJob stores a job as resultsvc does: its first event creates the
// record, its result makes it terminal.
func storeJob(b *testing.B, s results.Store, id string, result json.RawMessage) {
	ctx := context.Background()
	now := time.Now()
	if _, _, err := s.Apply(ctx, results.Update{ID: id, Status: results.Running, Attempt: 1, Time: now,
		Tenant: "default", Model: "simple", Version: "1", CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.Apply(ctx, results.Update{ID: id, Status: results.Succeeded, Attempt: 1, Time: time.Now(), Result: result}); err != nil {
		b.Fatal(err)
	}
}

// simpleResult is what the `simple` model returns for one job.
func simpleResult() json.RawMessage {
	data := make([]string, 16)
	for i := range data {
		data[i] = strconv.Itoa(1000 + i)
	}
	out := `{"name":"OUTPUT%d","datatype":"INT32","shape":[1,16],"data":[` + strings.Join(data, ",") + `]}`
	return json.RawMessage(`{"model_name":"simple","model_version":"1","outputs":[` + fmt.Sprintf(out, 0) + "," + fmt.Sprintf(out, 1) + `]}`)
}

// recordJSON is a terminal record of about the size the KV store keeps.
func recordJSON(b *testing.B, result json.RawMessage) []byte {
	now := time.Now().UTC()
	rec, err := json.Marshal(map[string]any{"id": "j00000000", "tenant": "default", "model": "simple", "version": "1",
		"status": "succeeded", "created_at": now, "started_at": now, "finished_at": now, "attempts": 1, "result": result})
	if err != nil {
		b.Fatal(err)
	}
	return rec
}

// settle waits until nats-server has dropped the cached copies of the
// blocks just written (it keeps them 10s), so the heap holds what stays
// as long as the messages do: their index. It waits only for counts of
// 10,000 and more (the sizing runs), so that `make bench` stays quick;
// smaller counts overstate the heap.
func settle(b *testing.B) {
	if b.N >= 10000 {
		time.Sleep(12 * time.Second)
	}
}

func heapBytes() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func dirBytes(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	return total
}

func rawRedis(b *testing.B, url string) *redis.Client {
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// redisMemory is INFO's used_memory.
func redisMemory(b *testing.B, c *redis.Client) int64 {
	return infoField(b, c, "memory", "used_memory")
}

// aofBytes is the append-only file's size (INFO persistence).
func aofBytes(b *testing.B, c *redis.Client) int64 {
	return infoField(b, c, "persistence", "aof_current_size")
}

func infoField(b *testing.B, c *redis.Client, section, field string) int64 {
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("INFO %s has no %s", section, field)
	return 0
}

func report(b *testing.B, unit string, total int64) {
	b.ReportMetric(float64(total)/float64(b.N), unit)
}

// redisRetained runs add b.N times on a fresh Redis store with an
// append-only file and reports Redis's memory and AOF growth per unit.
func redisRetained(b *testing.B, unit string, add func(ctx context.Context, s *results.RedisStore, i int)) {
	r := testutil.StartRedisAOF(b)
	ctx := testutil.Context(b)
	s, err := results.NewRedis(ctx, results.RedisConfig{URL: r.URL, Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	raw := rawRedis(b, r.URL)
	mem0, aof0 := redisMemory(b, raw), aofBytes(b, raw)
	b.ResetTimer()
	for i := range b.N {
		add(ctx, s, i)
	}
	b.StopTimer()
	report(b, "redis-B/"+unit, redisMemory(b, raw)-mem0)
	report(b, "aof-B/"+unit, aofBytes(b, raw)-aof0)
}
