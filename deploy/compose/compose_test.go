// Package compose holds the Compose deployment; its test checks that the
// files it references exist and that its inferq config loads.
package compose

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/internal/config"
)

func TestComposeReferencesExist(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Build *struct {
				Context, Dockerfile, Target string
			}
			Volumes []string
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"nats", "redis", "ingress", "batcher", "resultsvc", "worker"} {
		if _, ok := doc.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	for name, s := range doc.Services {
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
	}
	if _, err := config.Load("inferq.yaml"); err != nil {
		t.Errorf("inferq.yaml: %v", err)
	}
}
