package obs

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsAreDocumented: every shared metric is in docs/metrics.md, and
// names follow the conventions (unit or _total suffix). The components'
// own metrics are checked the same way in internal/stack.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, c := range []prometheus.Collector{m.JobsDropped, m.DeadLetters, m.BuildInfo} {
		descs := make(chan *prometheus.Desc, 4)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			s := d.String()
			name := s[strings.Index(s, `fqName: "`)+9:]
			name = name[:strings.Index(name, `"`)]
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s is not in docs/metrics.md", name)
			}
			if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_info") && name != "inferq_batch_size" {
				t.Errorf("%s: name carries no unit", name)
			}
		}
	}
}
