// Command loadtest drives a running inferq over HTTP and verifies every
// answer. This first version is closed-loop: N clients each submit a `simple`
// job, long-poll it to the end, check its outputs, and go again until the
// duration is up. Any wrong or lost job makes it exit non-zero.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "inferq ingress base URL")
	clients := flag.Int("c", 32, "concurrent clients (closed loop)")
	dur := flag.Duration("d", 10*time.Second, "how long to send")
	maxJobs := flag.Int("n", 0, "stop after this many jobs (0: only the duration bounds it)")
	out := flag.String("json", "", "write the summary as JSON to this file")
	flag.Parse()
	if *clients < 1 || *dur <= 0 || *dur > time.Hour {
		fmt.Fprintln(os.Stderr, "loadtest: -c must be >= 1 and -d in (0, 1h]")
		os.Exit(2)
	}
	sum := run(*url, *clients, *dur, *maxJobs)
	b, _ := json.MarshalIndent(sum, "", "  ")
	fmt.Println(string(b))
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
	}
	if sum.Errors > 0 || sum.Jobs == 0 {
		os.Exit(1)
	}
}

// Summary is the run's result.
type Summary struct {
	Clients   int            `json:"clients"`
	Seconds   float64        `json:"seconds"`
	Jobs      int            `json:"jobs"`
	JobsPerS  float64        `json:"jobs_per_second"`
	LatencyMS map[string]any `json:"latency_ms"` // submit → terminal record, per job
	SubmitMS  map[string]any `json:"submit_ms"`  // POST → 202
	Errors    int            `json:"errors"`
	ByKind    map[string]int `json:"errors_by_kind,omitempty"`
}

func run(url string, clients int, dur time.Duration, maxJobs int) Summary {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	var (
		mu       sync.Mutex
		lat, sub []time.Duration
		errs     = map[string]int{}
		started  int
	)
	begin := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				if maxJobs > 0 && started >= maxJobs {
					mu.Unlock()
					return
				}
				started++
				mu.Unlock()
				l, s, kind := oneJob(hc, url)
				mu.Lock()
				if kind != "" {
					errs[kind]++
				} else {
					lat, sub = append(lat, l), append(sub, s)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(begin).Seconds()
	n := 0
	for _, c := range errs {
		n += c
	}
	return Summary{Clients: clients, Seconds: el, Jobs: len(lat), JobsPerS: float64(len(lat)) / el,
		LatencyMS: percentiles(lat), SubmitMS: percentiles(sub), Errors: n, ByKind: errs}
}

// oneJob submits, waits and verifies one simple job; kind names a failure.
func oneJob(hc *http.Client, url string) (lat, submit time.Duration, kind string) {
	a, b := make([]int32, 16), make([]int32, 16)
	for i := range a {
		a[i], b[i] = rand.Int32N(1<<20), rand.Int32N(1<<20)
	}
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{
		{"name": "INPUT0", "shape": []int{1, 16}, "datatype": "INT32", "data": a},
		{"name": "INPUT1", "shape": []int{1, 16}, "datatype": "INT32", "data": b},
	}})
	start := time.Now()
	resp, err := hc.Post(url+"/v1/models/simple/jobs", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, 0, "submit_transport"
	}
	var acc struct{ ID string }
	err = decode(resp, &acc)
	submit = time.Since(start)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return 0, 0, fmt.Sprintf("submit_%d", resp.StatusCode)
	}
	for range 10 { // at most 10 × 30s of long-polling
		resp, err := hc.Get(url + "/v1/jobs/" + acc.ID + "?wait=30s")
		if err != nil {
			return 0, 0, "get_transport"
		}
		var rec struct {
			Status string
			Result struct {
				Outputs []struct {
					Name string
					Data []int32
				}
			}
		}
		if err := decode(resp, &rec); err != nil || resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Sprintf("get_%d", resp.StatusCode)
		}
		switch rec.Status {
		case "queued", "running":
			continue
		case "succeeded":
		default:
			return 0, 0, "job_" + rec.Status
		}
		lat = time.Since(start)
		if len(rec.Result.Outputs) != 2 {
			return 0, 0, "wrong_result"
		}
		for _, o := range rec.Result.Outputs {
			want := make([]int32, 16)
			for i := range want {
				if o.Name == "OUTPUT0" {
					want[i] = a[i] + b[i]
				} else {
					want[i] = a[i] - b[i]
				}
			}
			if !slices.Equal(o.Data, want) {
				return 0, 0, "wrong_result"
			}
		}
		return lat, submit, ""
	}
	return 0, 0, "lost"
}

func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("empty body")
	}
	return json.Unmarshal(data, v)
}

func percentiles(ds []time.Duration) map[string]any {
	if len(ds) == 0 {
		return nil
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	return map[string]any{"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": ms(ds[len(ds)-1])}
}
