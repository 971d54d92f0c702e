package main

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms hold microseconds from 1µs to an hour: every latency a bounded
// run can see. The run's histograms keep 3 significant digits; the
// per-second ones 2, which is plenty for a plotted p99 and keeps an hour of
// seconds in a few tens of MB.
const (
	histMax     = int64(time.Hour / time.Microsecond)
	histDigits  = 3
	bucketDigit = 2
)

// outcome is how one job went.
type outcome struct {
	kind   string        // "" when the answer was verified, else an error kind
	detail string        // for the first error of each kind
	submit time.Duration // POST (enqueue, publish) until accepted
	done   time.Time     // when the verified answer was in hand
	// Streaming only.
	firstToken time.Time
	lastToken  time.Time
	tokens     int
}

// recorder collects a run's outcomes: the latency histograms, errors by
// kind, and per-second buckets (by completion time) for the timeline.
type recorder struct {
	begin time.Time
	sent  atomic.Int64

	mu       sync.Mutex
	latency  *hdrhistogram.Histogram // intended start → verified answer
	submit   *hdrhistogram.Histogram // POST → 202
	ttft     *hdrhistogram.Histogram // intended start → first token
	tokRate  *hdrhistogram.Histogram // per job, tokens per second after the first
	tokens   int64
	jobs     int64
	errs     map[string]int
	details  map[string]string // first message per error kind
	seconds  []bucket
	lastDone time.Time
}

// bucket is one second of the timeline.
type bucket struct {
	jobs, errors int
	latency      *hdrhistogram.Histogram
}

func newRecorder(begin time.Time) *recorder {
	return &recorder{begin: begin, lastDone: begin,
		latency: newHist(histDigits), submit: newHist(histDigits), ttft: newHist(histDigits),
		tokRate: hdrhistogram.New(1, 1e9, histDigits),
		errs:    map[string]int{}, details: map[string]string{}}
}

func newHist(digits int) *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, digits) }

// recordValue clamps d into the histogram's range: a value past an hour is
// still a (very slow) job, not a reason to drop it.
func recordValue(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), 1), histMax))
}

// record adds one job that was meant to start at start.
func (r *recorder) record(start time.Time, o outcome) {
	end := o.done
	if end.IsZero() {
		end = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if end.After(r.lastDone) {
		r.lastDone = end
	}
	b := r.bucket(end)
	if o.kind != "" {
		r.errs[o.kind]++
		if _, ok := r.details[o.kind]; !ok && o.detail != "" {
			r.details[o.kind] = o.detail
		}
		b.errors++
		return
	}
	r.jobs++
	b.jobs++
	lat := end.Sub(start)
	recordValue(r.latency, lat)
	recordValue(b.latency, lat)
	recordValue(r.submit, o.submit)
	if o.tokens > 0 {
		r.tokens += int64(o.tokens)
		recordValue(r.ttft, o.firstToken.Sub(start))
		if span := o.lastToken.Sub(o.firstToken); o.tokens > 1 && span > 0 {
			_ = r.tokRate.RecordValue(max(1, int64(math.Round(float64(o.tokens-1)/span.Seconds()))))
		}
	}
}

// bucket returns the second that t falls in, growing the timeline.
func (r *recorder) bucket(t time.Time) *bucket {
	i := max(0, int(t.Sub(r.begin)/time.Second))
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, bucket{latency: newHist(bucketDigit)})
	}
	return &r.seconds[i]
}

// progress is a snapshot for the once-a-second line.
type progress struct {
	elapsed    time.Duration
	sent, done int64
	errors     int
	lastJobs   int     // jobs finished in the last whole second
	lastP99    float64 // ms, over that second
}

func (r *recorder) progress(now time.Time) progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := progress{elapsed: now.Sub(r.begin), sent: r.sent.Load(), done: r.jobs}
	for _, n := range r.errs {
		p.errors += n
	}
	p.done += int64(p.errors)
	if i := int(now.Sub(r.begin)/time.Second) - 1; i >= 0 && i < len(r.seconds) {
		p.lastJobs = r.seconds[i].jobs
		p.lastP99 = ms(r.seconds[i].latency.ValueAtQuantile(99))
	}
	return p
}

// Percentiles are latencies in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func percentiles(h *hdrhistogram.Histogram) *Percentiles {
	if h.TotalCount() == 0 {
		return nil
	}
	return &Percentiles{P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: round3(h.Mean() / 1000)}
}

// ms turns histogram microseconds into milliseconds with µs precision.
func ms(us int64) float64 { return round3(float64(us) / 1000) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Second is one second of the timeline, [T, T+1) seconds after the start,
// by completion time.
type Second struct {
	T      int     `json:"t"`
	Jobs   int     `json:"jobs"`
	Errors int     `json:"errors,omitempty"`
	P99MS  float64 `json:"p99_ms"`
}

// StreamStats describe generation as the client saw it.
type StreamStats struct {
	TTFTMS       *Percentiles `json:"ttft_ms"`
	Tokens       int64        `json:"tokens"`
	TokensPerS   float64      `json:"tokens_per_second"`     // all jobs together
	JobTokensPS  *Percentiles `json:"job_tokens_per_second"` // per job, after its first token (not ms)
	JobTokensMin float64      `json:"job_tokens_per_second_min"`
}

// summary closes the books: seconds runs from the start to the last answer,
// so jobs/s counts the drain of in-flight jobs too.
func (r *recorder) summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	el := r.lastDone.Sub(r.begin).Seconds()
	s := Summary{Seconds: round3(el), Sent: r.sent.Load(), Jobs: r.jobs,
		LatencyMS: percentiles(r.latency), SubmitMS: percentiles(r.submit), ByKind: map[string]int{}, Details: map[string]string{}}
	if el > 0 {
		s.JobsPerS = round3(float64(r.jobs) / el)
	}
	for k, n := range r.errs {
		s.Errors += n
		s.ByKind[k] = n
	}
	for k, d := range r.details {
		s.Details[k] = d
	}
	// Every job sent ends in exactly one outcome; a gap would be a load-test bug
	// hiding lost jobs, so it is counted as lost.
	if gap := s.Sent - s.Jobs - int64(s.Errors); gap > 0 {
		s.Errors += int(gap)
		s.ByKind[errLost] += int(gap)
	}
	for i, b := range r.seconds {
		s.Timeline = append(s.Timeline, Second{T: i, Jobs: b.jobs, Errors: b.errors, P99MS: ms(b.latency.ValueAtQuantile(99))})
	}
	if r.tokens > 0 {
		st := &StreamStats{TTFTMS: percentiles(r.ttft), Tokens: r.tokens}
		if el > 0 {
			st.TokensPerS = round3(float64(r.tokens) / el)
		}
		if r.tokRate.TotalCount() > 0 {
			h := r.tokRate
			st.JobTokensPS = &Percentiles{P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
				P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)), Max: float64(h.Max()), Mean: round3(h.Mean())}
			st.JobTokensMin = float64(h.Min())
		}
		s.Stream = st
	}
	return s
}
