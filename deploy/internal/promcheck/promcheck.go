// Package promcheck is what the deployment tests share about metrics: the
// names inferq documents (docs/metrics.md), the names the deployment may use
// besides (deploy/prometheus/README.md), and the series a PromQL expression
// selects, found by Prometheus's own parser rather than by pattern matching.
package promcheck

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Catalog holds the metric names a deployment file may use, by origin. A
// histogram contributes its _bucket, _sum and _count series.
type Catalog struct {
	Documented map[string]bool // docs/metrics.md: inferq exports them
	Proposed   map[string]bool // needed by the alerts, not exported yet
	External   map[string]bool // Prometheus itself and the exporters
}

// Sections of deploy/prometheus/README.md whose tables list names.
const (
	ProposedHeading = "## Metrics the alerts need that inferq does not export yet"
	ExternalHeading = "## Metrics from other exporters"
)

// LoadCatalog reads docs/metrics.md and deploy/prometheus/README.md under the
// repository root.
func LoadCatalog(root string) (*Catalog, error) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		return nil, fmt.Errorf("metric catalog: %w", err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "README.md"))
	if err != nil {
		return nil, fmt.Errorf("metric catalog: %w", err)
	}
	c := &Catalog{}
	if c.Documented, err = tableNames(doc, ""); err != nil {
		return nil, fmt.Errorf("docs/metrics.md: %w", err)
	}
	// The proposed table is optional: it is gone once inferq exports all.
	c.Proposed = map[string]bool{}
	if bytes.Contains(readme, []byte(ProposedHeading)) {
		if c.Proposed, err = tableNames(readme, ProposedHeading); err != nil {
			return nil, fmt.Errorf("deploy/prometheus/README.md: %w", err)
		}
	}
	if c.External, err = tableNames(readme, ExternalHeading); err != nil {
		return nil, fmt.Errorf("deploy/prometheus/README.md: %w", err)
	}
	return c, nil
}

// tableNames collects the backquoted names in the first column of the
// markdown table under heading ("" for the first table of the file). A
// second column of "histogram" adds the histogram's series names.
func tableNames(md []byte, heading string) (map[string]bool, error) {
	names := map[string]bool{}
	in := heading == ""
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			if in && len(names) > 0 {
				break
			}
			in = line == heading
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if name == "" || strings.ContainsAny(name, " `") {
			return nil, fmt.Errorf("table row %q: want a single `name` in the first column", line)
		}
		if len(cells) > 1 && strings.TrimSpace(cells[1]) == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
			continue
		}
		names[name] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no metric table found under %q", heading)
	}
	return names, nil
}

// Selector is one series selector of an expression: its metric name and its
// equality matchers (label → value).
type Selector struct {
	Name   string
	Equals map[string]string
}

var promql = parser.NewParser(parser.Options{})

// Selectors parses expr as PromQL and returns its series selectors.
func Selectors(expr string) ([]Selector, error) {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []Selector
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := Selector{Name: vs.Name, Equals: map[string]string{}}
		for _, m := range vs.LabelMatchers {
			if m.Type != labels.MatchEqual {
				continue
			}
			if m.Name == labels.MetricName {
				s.Name = m.Value
				continue
			}
			s.Equals[m.Name] = m.Value
		}
		out = append(out, s)
		return nil
	})
	return out, nil
}
