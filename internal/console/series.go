package console

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The overview's charts cover the last 15 minutes, one sample every
// sampleEvery, kept in a ring per model; nothing is stored elsewhere.
const (
	sampleEvery = 5 * time.Second
	sampleKeep  = int(15 * time.Minute / sampleEvery)
	// rateWindow is the span the overview's jobs/s and p50/p99 are
	// computed over.
	rateWindow = time.Minute
)

// The metric families the sampler reads from the ingress's registry: the
// queue gauges the ingress exports and its submission counter; the job
// duration histogram is resultsvc's, present when it runs in the same
// process (inferq dev), absent otherwise.
const (
	metricQueued    = "inferq_queue_jobs"
	metricOldest    = "inferq_queue_oldest_job_age_seconds"
	metricSubmitted = "inferq_jobs_submitted_total"
	metricDuration  = "inferq_job_duration_seconds"
)

// sample is one model's figures at one time. Counters are cumulative, so
// rates and quantiles are the difference between two samples.
type sample struct {
	at        time.Time
	queued    float64 // NaN: unknown
	oldest    float64 // seconds; NaN: unknown
	submitted float64
	bounds    []float64 // the duration histogram's upper bounds (nil: absent)
	cum       []uint64  // its cumulative counts per bound, succeeded jobs
}

// ring holds a model's last sampleKeep samples, oldest first.
type ring struct {
	s []sample
}

func (r *ring) add(s sample) {
	if len(r.s) == sampleKeep {
		r.s = append(r.s[:0], r.s[1:]...)
	}
	r.s = append(r.s, s)
}

// sampler keeps the rings of every model.
type sampler struct {
	g      prometheus.Gatherer
	models func() []string // the models now: with the registry, they come and go
	mu     sync.Mutex
	rings  map[string]*ring
}

func newSampler(g prometheus.Gatherer, models func() []string) *sampler {
	return &sampler{g: g, models: models, rings: map[string]*ring{}}
}

// run samples until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.sampleOnce(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sampleOnce(now time.Time) {
	if s.g == nil {
		return
	}
	fams, err := s.g.Gather()
	if err != nil && len(fams) == 0 {
		return
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	names := s.models()
	s.mu.Lock()
	defer s.mu.Unlock()
	// A model added since gets a ring; a removed one's ring goes.
	keep := make(map[string]*ring, len(names))
	for _, m := range names {
		r := s.rings[m]
		if r == nil {
			r = &ring{}
		}
		keep[m] = r
	}
	s.rings = keep
	for _, m := range names {
		smp := sample{at: now, queued: gauge(byName[metricQueued], m), oldest: gauge(byName[metricOldest], m),
			submitted: counter(byName[metricSubmitted], m)}
		smp.bounds, smp.cum = histogram(byName[metricDuration], m)
		s.rings[m].add(smp)
	}
}

// labelsMatch reports whether a metric has label model=m (and, for the
// duration histogram, status=succeeded).
func labelsMatch(metric *dto.Metric, m string, wantSucceeded bool) bool {
	okModel, okStatus := false, !wantSucceeded
	for _, l := range metric.GetLabel() {
		switch l.GetName() {
		case "model":
			okModel = l.GetValue() == m
		case "status":
			okStatus = okStatus || l.GetValue() == "succeeded"
		}
	}
	return okModel && okStatus
}

func gauge(f *dto.MetricFamily, m string) float64 {
	for _, x := range f.GetMetric() {
		if labelsMatch(x, m, false) {
			return x.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// counter is a model's counter; a series not created yet has counted 0.
func counter(f *dto.MetricFamily, m string) float64 {
	for _, x := range f.GetMetric() {
		if labelsMatch(x, m, false) {
			return x.GetCounter().GetValue()
		}
	}
	return 0
}

func histogram(f *dto.MetricFamily, m string) ([]float64, []uint64) {
	for _, x := range f.GetMetric() {
		if !labelsMatch(x, m, true) {
			continue
		}
		var bounds []float64
		var cum []uint64
		for _, b := range x.GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			cum = append(cum, b.GetCumulativeCount())
		}
		return bounds, append(cum, x.GetHistogram().GetSampleCount()) // the last is +Inf
	}
	return nil, nil
}

// quantile estimates the q-quantile of the observations between two
// cumulative snapshots, interpolating inside a bucket as Prometheus's
// histogram_quantile does; NaN when none was observed.
func quantile(q float64, bounds []float64, from, to []uint64) float64 {
	if len(from) == 0 && len(to) > 0 {
		from = make([]uint64, len(to)) // the series appeared in the window: it started at zero
	}
	if len(to) == 0 || len(to) != len(from) || len(to) != len(bounds)+1 {
		return math.NaN()
	}
	total := to[len(to)-1] - from[len(from)-1]
	if total == 0 || to[len(to)-1] < from[len(from)-1] {
		return math.NaN()
	}
	rank := q * float64(total)
	prevBound, prevCount := 0.0, 0.0
	for k, b := range bounds {
		c := float64(to[k] - from[k])
		if c >= rank {
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound // in the +Inf bucket: the largest finite bound
}

// figures are a model's current rates and latency and its chart series.
type figures struct {
	Rate, P50, P99, Oldest float64 // NaN: unknown
	QueuedSeries           []float64
	RateSeries             []float64
	P99Series              []float64
}

// figures computes m's figures from its ring.
func (s *sampler) figures(m string) figures {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := figures{Rate: math.NaN(), P50: math.NaN(), P99: math.NaN(), Oldest: math.NaN()}
	r := s.rings[m]
	if r == nil || len(r.s) == 0 {
		return f
	}
	last := r.s[len(r.s)-1]
	f.Oldest = last.oldest
	// The window's first sample: the newest one at least rateWindow old,
	// or the oldest one kept.
	first := r.s[0]
	for _, x := range r.s {
		if last.at.Sub(x.at) < rateWindow {
			break
		}
		first = x
	}
	if dt := last.at.Sub(first.at).Seconds(); dt > 0 {
		f.Rate = (last.submitted - first.submitted) / dt
		f.P50 = quantile(0.5, last.bounds, first.cum, last.cum)
		f.P99 = quantile(0.99, last.bounds, first.cum, last.cum)
	}
	for k, x := range r.s {
		f.QueuedSeries = append(f.QueuedSeries, x.queued)
		if k == 0 {
			continue
		}
		prev := r.s[k-1]
		f.RateSeries = append(f.RateSeries, (x.submitted-prev.submitted)/x.at.Sub(prev.at).Seconds())
		f.P99Series = append(f.P99Series, quantile(0.99, x.bounds, prev.cum, x.cum))
	}
	return f
}

// sparkline draws values (NaN: a gap) as a small inline SVG line chart
// scaled to its maximum, labelled for screen readers with what it shows.
func sparkline(label string, values []float64, unit string) template.HTML {
	const w, h = 180.0, 36.0
	maxV := 0.0
	last := math.NaN()
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			maxV = max(maxV, v)
			last = v
		}
	}
	desc := fmt.Sprintf("%s over the last 15 minutes: now %s, peak %s", label, num(last, unit), num(maxV, unit))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" role="img" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f"><title>%s</title>`,
		w, h, w, h, template.HTMLEscapeString(desc))
	fmt.Fprintf(&b, `<line x1="0" y1="%.1f" x2="%.0f" y2="%.1f" class="axis"/>`, h-1, w, h-1)
	if maxV <= 0 {
		maxV = 1
	}
	step := w / float64(max(sampleKeep-1, 1))
	x0 := w - step*float64(len(values)-1) // the newest sample at the right edge
	open := false
	for k, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if open {
				b.WriteString(`"/>`)
				open = false
			}
			continue
		}
		if !open {
			b.WriteString(`<polyline points="`)
			open = true
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x0+step*float64(k), h-2-(h-4)*v/maxV)
	}
	if open {
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// bars draws batch sizes as a small inline SVG bar chart, as a fraction of
// the model's largest batch.
func bars(sizes []int, maxBatch int) template.HTML {
	const w, h = 128.0, 36.0
	top := maxBatch
	for _, s := range sizes {
		top = max(top, s)
	}
	top = max(top, 1)
	var list []string
	for _, s := range sizes {
		list = append(list, fmt.Sprint(s))
	}
	desc := "no batches seen yet"
	if len(sizes) > 0 {
		desc = "last batch sizes, oldest first: " + strings.Join(list, ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="bars" role="img" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f"><title>%s</title>`,
		w, h, w, h, template.HTMLEscapeString(desc))
	bw := w / 32
	for k, s := range sizes {
		bh := max((h-2)*float64(s)/float64(top), 1)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, bw*float64(k), h-bh, bw-1, bh)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// num formats a figure for the overview, "—" when unknown.
func num(v float64, unit string) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case unit == "s":
		return seconds(v)
	case unit == "/s":
		return fmt.Sprintf("%.1f/s", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// seconds formats a duration given in seconds with a readable unit.
func seconds(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0f ms", v*1000)
	case v < 120:
		return fmt.Sprintf("%.1f s", v)
	}
	return time.Duration(v * float64(time.Second)).Round(time.Second).String()
}
