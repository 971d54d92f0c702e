package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Summary is one system's run. Its first fields are the first version's
// JSON, unchanged, so scripts reading them keep working.
type Summary struct {
	Clients   int               `json:"clients,omitempty"` // closed loop
	Seconds   float64           `json:"seconds"`           // start to last answer, drain included
	Jobs      int64             `json:"jobs"`              // verified answers
	JobsPerS  float64           `json:"jobs_per_second"`
	LatencyMS *Percentiles      `json:"latency_ms"` // intended send → verified answer
	SubmitMS  *Percentiles      `json:"submit_ms"`  // POST → 202 (enqueue, publish → ack)
	Errors    int               `json:"errors"`
	ByKind    map[string]int    `json:"errors_by_kind,omitempty"`
	Details   map[string]string `json:"error_examples,omitempty"` // the first error of each kind

	System   string       `json:"system"`
	Mode     string       `json:"mode"`
	Scenario string       `json:"scenario"`
	Models   []string     `json:"models"`
	Rate     float64      `json:"rate,omitempty"` // open loop: peak jobs/s offered
	Sent     int64        `json:"sent"`
	Stream   *StreamStats `json:"streaming,omitempty"`
	Timeline []Second     `json:"timeline"`
}

// Output is the whole run: inferq's summary at the top level, as before,
// and with -compare the peers' and the comparison.
type Output struct {
	Summary
	Peers   []Summary    `json:"peers,omitempty"`
	Compare []CompareRow `json:"compare,omitempty"`
	Notes   []string     `json:"notes,omitempty"`
}

// CompareRow is one line of the comparison; ratios are system ÷ inferq.
type CompareRow struct {
	System     string  `json:"system"`
	Jobs       int64   `json:"jobs"`
	JobsPerS   float64 `json:"jobs_per_second"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	Errors     int     `json:"errors"`
	JobsPerSX  float64 `json:"jobs_per_second_vs_inferq"`
	P50X       float64 `json:"p50_vs_inferq"`
	P99X       float64 `json:"p99_vs_inferq"`
	Batching   bool    `json:"batching"`
	HTTP       bool    `json:"http"` // the client went through an HTTP API, POST then long-poll GET
	ResultKept string  `json:"result_kept"`
}

func compareRows(inferq Summary, peers []Summary) []CompareRow {
	kept, viaHTTP := map[string]string{"inferq": "job record in the results store"}, map[string]bool{"inferq": true}
	batches := map[string]bool{"inferq": true}
	for _, p := range comparePeers {
		kept[p.name], viaHTTP[p.name], batches[p.name] = p.kept, p.http, p.batches
	}
	row := func(s Summary) CompareRow {
		r := CompareRow{System: s.System, Jobs: s.Jobs, JobsPerS: s.JobsPerS, Errors: s.Errors,
			Batching: batches[s.System], HTTP: viaHTTP[s.System], ResultKept: kept[s.System]}
		if s.LatencyMS != nil {
			r.P50MS, r.P99MS = s.LatencyMS.P50, s.LatencyMS.P99
		}
		r.JobsPerSX = ratio(r.JobsPerS, inferq.JobsPerS)
		if inferq.LatencyMS != nil {
			r.P50X, r.P99X = ratio(r.P50MS, inferq.LatencyMS.P50), ratio(r.P99MS, inferq.LatencyMS.P99)
		}
		return r
	}
	rows := []CompareRow{row(inferq)}
	for _, p := range peers {
		rows = append(rows, row(p))
	}
	return rows
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}

// compareNotes say what a reader of the table must know to read it fairly.
func compareNotes(o options) []string {
	notes := []string{
		"same workload, same seed, same verification, one system after the other on the same machine",
		"inferq batches jobs per model; the peers have no batching (one job is one task or message), but jetstream-stages-http",
		"http=yes: the client POSTs the job and long-polls GET ...?wait=30s for its answer, with the same HTTP client code and settings as for inferq; http=no: the client calls the queue's own Go client in-process",
	}
	if o.preferWait > 0 {
		notes = append(notes, fmt.Sprintf("-prefer-wait %s: one HTTP request per job when the answer comes in time: inferq's POST carries Prefer: wait=%d, the -http peers' POST carries ?wait=%s", o.preferWait, int64(o.preferWait/time.Second), o.preferWait))
	}
	ran := func(names ...string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return slices.Contains(o.peers, n) })
	}
	if ran("asynq", "asynq-http") {
		notes = append(notes, fmt.Sprintf("asynq: Config.TaskCheckInterval=%s, Concurrency=%d, results via ResultWriter, completion by Redis PUBLISH, read back with Inspector.GetTaskInfo", o.asynqCheck, o.peerWorkers))
	}
	if ran("jetstream", "jetstream-http") {
		notes = append(notes, fmt.Sprintf("jetstream: WorkQueue stream (file storage), %d workers pulling one message at a time, answer on core NATS, not stored", o.peerWorkers))
	}
	if ran("jetstream-kv-http") {
		notes = append(notes, "jetstream-kv-http: jetstream-http whose workers also Put each answer in a JetStream KV bucket (file storage) before replying: the job and its result both stored")
	}
	if ran("jetstream-stages-http") {
		notes = append(notes, "jetstream-stages-http: inferq's stages with nothing else: the job in a limits stream, batched as it arrives (up to 32) into a work-queue stream, run by a worker that stores one events message per batch, each answer stored in a KV bucket by compare-and-set and then sent as a completion notice; no validation, job record, metrics or tracing")
	}
	if ran("asynq-http", "jetstream-http") {
		where := "in a process of their own (-peer-process), as inferq runs in its own,"
		if !o.peerProcess {
			where = "in this process (-peer-process=false), sharing the client's Go runtime,"
		}
		notes = append(notes, "asynq-http, jetstream-http: the same pipelines behind a net/http front door "+where+" on a loopback port (POST /jobs?model= -> 202 {id}; GET /jobs/{id}?wait=30s, woken by the pipeline's completion notice); jetstream-http's front door holds each answer in memory until its GET")
	}
	return notes
}

// failures lists why the run failed: any error or no job at all, per system.
func (out *Output) failures() []string {
	var bad []string
	for _, s := range append([]Summary{out.Summary}, out.Peers...) {
		switch {
		case s.Errors > 0:
			bad = append(bad, fmt.Sprintf("%s: %d of %d jobs failed %v", s.System, s.Errors, s.Sent, s.ByKind))
		case s.Jobs == 0:
			bad = append(bad, s.System+": no job finished")
		}
	}
	return bad
}

// writeOutputs prints the JSON on stdout (and to -json), the human summary
// on stderr, and draws -plot.
func writeOutputs(out *Output, o options, stdout, stderr io.Writer) error {
	if o.compare {
		out.Notes = compareNotes(o)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if _, err := fmt.Fprintln(stdout, string(b)); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if o.jsonPath != "" {
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write -json: %w", err)
		}
	}
	printTable(stderr, out)
	if o.plotPath != "" {
		if err := writePlot(o.plotPath, append([]Summary{out.Summary}, out.Peers...)); err != nil {
			return fmt.Errorf("write -plot: %w", err)
		}
	}
	return nil
}

// printTable writes one line per system; with -compare, the ratios to inferq.
func printTable(w io.Writer, out *Output) {
	fmt.Fprintf(w, "%-21s %8s %9s %9s %9s %9s %9s %9s %7s\n", "system", "jobs", "jobs/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
	for _, s := range append([]Summary{out.Summary}, out.Peers...) {
		p := s.LatencyMS
		if p == nil {
			p = &Percentiles{}
		}
		fmt.Fprintf(w, "%-21s %8d %9.1f %9.2f %9.2f %9.2f %9.2f %9.2f %7d\n", s.System, s.Jobs, s.JobsPerS, p.P50, p.P90, p.P99, p.P999, p.Max, s.Errors)
	}
	if len(out.Compare) > 0 {
		fmt.Fprintf(w, "\n%-21s %5s %9s %9s %9s %9s %9s %9s  %s\n", "system", "http", "jobs/s", "p50 ms", "p99 ms", "jobs/s ×", "p50 ×", "p99 ×", "(× = versus inferq)")
		for _, r := range out.Compare {
			viaHTTP, note := "no", "batching"
			if r.HTTP {
				viaHTTP = "yes"
			}
			if !r.Batching {
				note = "no batching"
			}
			fmt.Fprintf(w, "%-21s %5s %9.1f %9.2f %9.2f %9.2f %9.2f %9.2f  %s; result %s\n", r.System, viaHTTP, r.JobsPerS, r.P50MS, r.P99MS, r.JobsPerSX, r.P50X, r.P99X, note, r.ResultKept)
		}
	}
	if s := out.Stream; s != nil && s.TTFTMS != nil {
		fmt.Fprintf(w, "streaming: %d tokens, %.1f tokens/s overall; time to first token p50 %.2f ms, p99 %.2f ms",
			s.Tokens, s.TokensPerS, s.TTFTMS.P50, s.TTFTMS.P99)
		if s.JobTokensPS != nil {
			fmt.Fprintf(w, "; per job %.0f tokens/s (p50)", s.JobTokensPS.P50)
		}
		fmt.Fprintln(w)
	}
	for _, s := range append([]Summary{out.Summary}, out.Peers...) {
		kinds := make([]string, 0, len(s.Details))
		for k := range s.Details {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(w, "%s: %s x%d, e.g. %s\n", s.System, k, s.ByKind[k], s.Details[k])
		}
	}
	for _, n := range out.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// plotBin is one time bin of the plot: rates per second over the bin's
// real length, and the p99 of the jobs finished in it.
type plotBin struct {
	Mid        float64 // the bin's middle, seconds since start
	JobsPerS   float64
	ErrorsPerS float64
	P99MS      float64
	Answered   bool // some job finished in it, so P99MS means something
}

// plotBins turns a timeline into the bins the plot draws: only whole
// seconds. A run ends inside its last second, which then holds only the
// answers of its first fraction (often the last few of the drain); drawn as a
// whole second it would drag throughput toward 0 at the end. A run shorter
// than a second keeps its one bin, as rates over the time it really lasted.
func plotBins(tl []Second, runSeconds float64) []plotBin {
	n := len(tl)
	lastLen := 1.0
	if n > 0 {
		lastLen = runSeconds - float64(tl[n-1].T)
	}
	if n > 1 && lastLen < 1 {
		n--
	}
	out := make([]plotBin, 0, n)
	for _, sec := range tl[:n] {
		length := 1.0
		if n == 1 && lastLen > 0 && lastLen < 1 {
			length = lastLen
		}
		out = append(out, plotBin{Mid: float64(sec.T) + length/2, JobsPerS: float64(sec.Jobs) / length,
			ErrorsPerS: float64(sec.Errors) / length, P99MS: sec.P99MS, Answered: sec.Jobs > 0})
	}
	return out
}

// writePlot draws two panels, finished jobs per second and the p99 latency
// of each second, one line per system, as SVG or PNG by the file's name. The
// legend stands to the right of the panels, so that it never hides a line.
func writePlot(path string, sums []Summary) error {
	tput, p99 := plot.New(), plot.New()
	tput.Title.Text = "verified jobs finished per second (dashed: failed jobs per second)"
	tput.Y.Label.Text = "jobs/s"
	p99.Title.Text = "p99 latency of the jobs finished in each second"
	p99.Y.Label.Text = "ms"
	for _, p := range []*plot.Plot{tput, p99} {
		p.X.Label.Text = "seconds since start"
		p.X.Min, p.Y.Min = 0, 0
		p.Add(plotter.NewGrid())
	}
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.Padding = vg.Points(3)
	for i, s := range sums {
		var jobs, errs plotter.XYs
		var lat []plotter.XYs // runs of seconds with answers: a second without one has no p99
		bins := plotBins(s.Timeline, s.Seconds)
		for k, b := range bins {
			jobs = append(jobs, plotter.XY{X: b.Mid, Y: b.JobsPerS})
			errs = append(errs, plotter.XY{X: b.Mid, Y: b.ErrorsPerS})
			if !b.Answered {
				continue
			}
			if k == 0 || !bins[k-1].Answered {
				lat = append(lat, nil)
			}
			lat[len(lat)-1] = append(lat[len(lat)-1], plotter.XY{X: b.Mid, Y: b.P99MS})
		}
		style := func(l *plotter.Line, dashed bool) {
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			if dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
		}
		if err := addLine(tput, &legend, s.System, jobs, func(l *plotter.Line) { style(l, false) }); err != nil {
			return err
		}
		if s.Errors > 0 {
			if err := addLine(tput, &legend, s.System+" errors", errs, func(l *plotter.Line) { style(l, true) }); err != nil {
				return err
			}
		}
		for _, run := range lat { // the same colour as the throughput line: no legend entry of its own
			if err := addLine(p99, nil, "", run, func(l *plotter.Line) { style(l, false) }); err != nil {
				return err
			}
		}
	}
	const w, h = 10 * vg.Inch, 8 * vg.Inch
	var (
		canvas draw.Canvas
		save   func(io.Writer) error
	)
	if strings.EqualFold(fileExt(path), ".png") {
		c := vgimg.New(w, h)
		canvas = draw.New(c)
		save = func(f io.Writer) error { _, err := vgimg.PngCanvas{Canvas: c}.WriteTo(f); return err }
	} else {
		c := vgsvg.New(w, h)
		canvas = draw.New(c)
		save = func(f io.Writer) error { _, err := c.WriteTo(f); return err }
	}
	// The legend takes a column on the right as wide as its longest entry.
	pad := vg.Points(8)
	lr := legend.Rectangle(canvas)
	legendW := lr.Max.X - lr.Min.X + 2*pad
	panels := draw.Crop(canvas, 0, -legendW, 0, 0)
	legend.Draw(draw.Crop(canvas, w-legendW+pad, -pad, 0, -3*pad))
	grid := [][]*plot.Plot{{tput}, {p99}}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad, PadY: vg.Points(16)}
	for r, row := range plot.Align(grid, tiles, panels) {
		grid[r][0].Draw(row[0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := save(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// addLine draws xys on p as a line (a dot when it is one point) and names
// it in legend unless legend is nil.
func addLine(p *plot.Plot, legend *plot.Legend, name string, xys plotter.XYs, style func(*plotter.Line)) error {
	if len(xys) == 0 {
		return nil
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	style(l)
	pts.Color, pts.Radius = l.Color, vg.Points(2.5)
	if len(xys) == 1 {
		p.Add(pts)
	} else {
		p.Add(l)
	}
	if legend != nil {
		legend.Add(name, l)
	}
	return nil
}
