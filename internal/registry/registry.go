// Package registry is the live model registry: the model configs kept in
// the inferq_models KV bucket, one key per model version plus one routing
// entry per model, and a Catalog that watches the bucket and hands out an
// immutable snapshot of it, so that ingress, batchers and workers pick up a
// new model, version or batching change without a restart.
//
// Keys of the bucket:
//
//	<model>            the model's Entry (JSON): default version, split, retired versions
//	<model>.<version>  the version's model config (JSON, validated as the config file's models)
//
// The config file is the bootstrap: at start Bootstrap writes the file's
// models the bucket does not hold yet. Once written, the bucket wins.
package registry

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/internal/config"
)

// Errors of the registry, checked with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("conflict")
)

// Entry is a model's routing: which version a job that names none gets.
type Entry struct {
	// Default is the version of jobs that name none, when Split is empty.
	Default string `json:"default"`
	// Split weighs versions for jobs that name none (e.g. {"2":95,"3":5});
	// a job's version is picked by a stable hash of its id.
	Split map[string]int `json:"split,omitempty"`
	// Retired are versions that take no new jobs and drain: their queued
	// jobs still run, then their consumers and keys are removed.
	Retired map[string]time.Time `json:"retired,omitempty"`
	// Deleted: the whole model is retired; the entry goes once every
	// version has drained.
	Deleted bool `json:"deleted,omitempty"`
}

// ServedName is the name a model version is queued and served under (its
// subjects, consumers and metrics): the model's own name for version "1",
// so a deployment that moves from the file to the registry keeps its
// queues, and <model>@<version> for any other.
func ServedName(model, version string) string {
	if version == "1" {
		return model
	}
	return model + "@" + version
}

// VersionKey is the bucket key of a model version's config.
func VersionKey(model, version string) string { return model + "." + version }

// splitKey parses a bucket key into model and version ("" for an entry).
func splitKey(key string) (model, version string) {
	model, version, _ = strings.Cut(key, ".")
	return model, version
}

// CheckName refuses a model or version name the contract does not allow.
func CheckName(what, s string) error {
	if !config.NameRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q must match %s", ErrInvalid, what, s, config.NameRE)
	}
	return nil
}

// EncodeModel is the bucket's form of a validated model config: JSON with
// the config file's field names.
func EncodeModel(m config.Model) ([]byte, error) {
	y, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode model %q: %w", m.Name, err)
	}
	var tree any
	if err := yaml.Unmarshal(y, &tree); err != nil {
		return nil, fmt.Errorf("encode model %q: %w", m.Name, err)
	}
	return json.Marshal(tree)
}

// validate checks the entry against the versions that exist.
func (e *Entry) validate(versions map[string]bool) error {
	live := func(v string) bool { _, retired := e.Retired[v]; return versions[v] && !retired }
	if e.Default == "" {
		return fmt.Errorf("%w: default: a default version is required", ErrInvalid)
	}
	if !live(e.Default) {
		return fmt.Errorf("%w: default: version %q is not registered (or is retired)", ErrInvalid, e.Default)
	}
	total := 0
	for v, w := range e.Split {
		if !live(v) {
			return fmt.Errorf("%w: split: version %q is not registered (or is retired)", ErrInvalid, v)
		}
		if w < 0 || w > 1_000_000 {
			return fmt.Errorf("%w: split: weight %d of version %q must be in 0..1000000", ErrInvalid, w, v)
		}
		total += w
	}
	if len(e.Split) > 0 && total == 0 {
		return fmt.Errorf("%w: split: the weights sum to 0", ErrInvalid)
	}
	return nil
}

// Pick is the version of a job that names none: by the split, weighted by
// a stable hash of the job id (a retry or a replay picks the same), else
// the default.
func (e *Entry) Pick(jobID string) string {
	if len(e.Split) == 0 {
		return e.Default
	}
	versions := make([]string, 0, len(e.Split))
	total := 0
	for v, w := range e.Split {
		if w > 0 {
			versions = append(versions, v)
			total += w
		}
	}
	if total == 0 {
		return e.Default
	}
	slices.Sort(versions)
	sum := sha256.Sum256([]byte(jobID))
	n := int(binary.BigEndian.Uint64(sum[:8]) % uint64(total))
	for _, v := range versions {
		n -= e.Split[v]
		if n < 0 {
			return v
		}
	}
	return e.Default // unreachable: n < total
}
