package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlotBinsDropPartialLastSecond: a run that ends 0.3s into its fourth
// second plots three whole seconds; the fourth, holding only the drain's
// few answers, would read as a fall of throughput to near 0.
func TestPlotBinsDropPartialLastSecond(t *testing.T) {
	tl := []Second{{T: 0, Jobs: 100, P99MS: 5}, {T: 1, Jobs: 0}, {T: 2, Jobs: 110, Errors: 2, P99MS: 6}, {T: 3, Jobs: 4, P99MS: 9}}
	bins := plotBins(tl, 3.3)
	if len(bins) != 3 {
		t.Fatalf("%d bins %+v, want the 3 whole seconds", len(bins), bins)
	}
	if b := bins[2]; b.Mid != 2.5 || b.JobsPerS != 110 || b.ErrorsPerS != 2 || b.P99MS != 6 || !b.Answered {
		t.Errorf("third bin %+v", b)
	}
	if bins[1].Answered {
		t.Errorf("a second without an answer has no p99: %+v", bins[1])
	}
	// A run that ends on a second's boundary has only whole seconds.
	if bins := plotBins(tl[:3], 3); len(bins) != 3 {
		t.Errorf("run of exactly 3s: %d bins", len(bins))
	}
	// A run shorter than a second keeps its bin, as a rate over its length.
	bins = plotBins([]Second{{T: 0, Jobs: 50, P99MS: 3}}, 0.25)
	if len(bins) != 1 || bins[0].JobsPerS != 200 || bins[0].Mid != 0.125 {
		t.Errorf("0.25s run: %+v, want one bin of 200 jobs/s in its middle", bins)
	}
	if bins := plotBins(nil, 0); len(bins) != 0 {
		t.Errorf("empty timeline: %+v", bins)
	}
}

// TestPlotRenders draws a plot of two systems whose runs end inside a second,
// as PNG and SVG. Set LOADTEST_PLOT_DIR to keep the files and look at them.
func TestPlotRenders(t *testing.T) {
	dir := os.Getenv("LOADTEST_PLOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	mk := func(system string, rate, p99 float64, errEvery int) Summary {
		s := Summary{System: system, Seconds: 10.2}
		for k := range 11 {
			sec := Second{T: k, Jobs: int(rate * (1 + 0.05*float64(k%3))), P99MS: p99 * (1 + 0.1*float64(k%4))}
			if errEvery > 0 && k%errEvery == 0 {
				sec.Errors = 3
				s.Errors += 3
			}
			if k == 10 {
				sec.Jobs = 7 // the drain
			}
			s.Timeline = append(s.Timeline, sec)
		}
		return s
	}
	sums := []Summary{mk("inferq", 900, 40, 0), mk("asynq-http", 600, 60, 4), mk("jetstream", 1000, 30, 0)}
	for _, name := range []string{"plot.png", "plot.svg"} {
		path := filepath.Join(dir, name)
		if err := writePlot(path, sums); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() < 1000 {
			t.Fatalf("%s: %v", path, err)
		}
	}
}
