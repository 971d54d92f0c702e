package ingress

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsAreDocumented: the ingress's own metrics are in
// docs/metrics.md (the other components' are checked in internal/stack).
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry())
	for _, c := range []prometheus.Collector{m.jobsSubmitted, m.jobsRejected, m.httpDuration} {
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
		}
	}
}
