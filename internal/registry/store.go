package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
)

// Store writes the registry. Every write of an entry is a compare-and-set,
// so two admins (or two ingresses) never lose each other's change.
type Store struct {
	KV  natsjs.KeyValue
	now func() time.Time
}

// NewStore writes the registry in kv (the topology's models bucket).
func NewStore(kv natsjs.KeyValue) *Store { return &Store{KV: kv, now: time.Now} }

// Bootstrap writes the models of the config file that the bucket does not
// hold yet. A model the bucket already has is left as it is: once written,
// the bucket wins over the file.
func (s *Store) Bootstrap(ctx context.Context, models []config.Model) (written []string, err error) {
	for _, m := range models {
		if _, err := s.KV.Get(ctx, m.Name); err == nil {
			continue
		} else if !errors.Is(err, natsjs.ErrKeyNotFound) {
			return written, fmt.Errorf("registry bootstrap %s: %w", m.Name, err)
		}
		if err := s.PutVersion(ctx, m.Name, m.Version, m); err != nil {
			return written, fmt.Errorf("registry bootstrap: %w", err)
		}
		written = append(written, m.Name)
	}
	return written, nil
}

// PutVersion registers (or replaces) a version of a model. m must be
// validated (config.ParseModel). The first version of a model becomes its
// default; a retired version put again takes jobs again.
func (s *Store) PutVersion(ctx context.Context, model, version string, m config.Model) error {
	if err := errors.Join(CheckName("model", model), CheckName("version", version)); err != nil {
		return err
	}
	m.Name, m.Version = model, version
	b, err := EncodeModel(m)
	if err != nil {
		return err
	}
	if _, err := s.KV.Put(ctx, VersionKey(model, version), b); err != nil {
		return fmt.Errorf("registry put %s: %w", VersionKey(model, version), err)
	}
	return s.update(ctx, model, func(e *Entry, versions map[string]bool) error {
		delete(e.Retired, version)
		if e.Deleted || e.Default == "" {
			e.Deleted, e.Default = false, version
		}
		return nil
	})
}

// SetRouting sets a model's default version (unless def is "") and, when
// setSplit, its split (empty: none).
func (s *Store) SetRouting(ctx context.Context, model, def string, split map[string]int, setSplit bool) error {
	return s.update(ctx, model, func(e *Entry, versions map[string]bool) error {
		if e.Deleted {
			return fmt.Errorf("%w: model %q is being deleted", ErrNotFound, model)
		}
		if def != "" {
			e.Default = def
		}
		if setSplit {
			e.Split = split
		}
		return nil
	})
}

// Retire retires one version of a model, or every version when version is
// "": it takes no new jobs and drains (see Drainer). The default version
// of a model that has others cannot be retired: set another default first.
func (s *Store) Retire(ctx context.Context, model, version string) error {
	return s.update(ctx, model, func(e *Entry, versions map[string]bool) error {
		if e.Retired == nil {
			e.Retired = map[string]time.Time{}
		}
		now := s.now().UTC()
		retire := func(v string) {
			if _, ok := e.Retired[v]; !ok {
				e.Retired[v] = now
			}
			delete(e.Split, v)
		}
		if version == "" {
			for v := range versions {
				retire(v)
			}
			e.Deleted = true
			return nil
		}
		if !versions[version] {
			return fmt.Errorf("%w: model %q has no version %q", ErrNotFound, model, version)
		}
		if e.Deleted {
			return nil // already going
		}
		live := 0
		for v := range versions {
			if _, r := e.Retired[v]; !r {
				live++
			}
		}
		if version == e.Default && live > 1 {
			return fmt.Errorf("%w: version %q is model %q's default; make another version the default first", ErrConflict, version, model)
		}
		retire(version)
		if version == e.Default {
			e.Deleted = true // its last live version
		}
		return nil
	})
}

// update changes a model's entry by compare-and-set; change sees the entry
// (zero when none) and the versions the bucket holds. An entry left
// invalid (routing to a missing version) is refused with ErrInvalid.
func (s *Store) update(ctx context.Context, model string, change func(*Entry, map[string]bool) error) error {
	if err := CheckName("model", model); err != nil {
		return err
	}
	for range 20 {
		versions, err := s.versions(ctx, model)
		if err != nil {
			return err
		}
		var e Entry
		var rev uint64
		kve, err := s.KV.Get(ctx, model)
		switch {
		case errors.Is(err, natsjs.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("registry get %s: %w", model, err)
		default:
			rev = kve.Revision()
			if err := json.Unmarshal(kve.Value(), &e); err != nil {
				return fmt.Errorf("registry entry %s: %w", model, err)
			}
		}
		if rev == 0 && len(versions) == 0 {
			return fmt.Errorf("%w: model %q", ErrNotFound, model)
		}
		if err := change(&e, versions); err != nil {
			return err
		}
		if !e.Deleted {
			if err := e.validate(versions); err != nil {
				return err
			}
		}
		b, _ := json.Marshal(e) // plain types: cannot fail
		if rev == 0 {
			_, err = s.KV.Create(ctx, model, b)
		} else {
			_, err = s.KV.Update(ctx, model, b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("registry write %s: %w", model, err)
		}
		// Someone else wrote the entry in between: read it again.
	}
	return fmt.Errorf("%w: model %q changes too often; try again", ErrConflict, model)
}

func isWrongSequence(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence
}

// versions are the versions of model the bucket holds.
func (s *Store) versions(ctx context.Context, model string) (map[string]bool, error) {
	l, err := s.KV.ListKeysFiltered(ctx, model+".*")
	if err != nil {
		return nil, fmt.Errorf("registry list %s: %w", model, err)
	}
	out := map[string]bool{}
	for k := range l.Keys() {
		_, v := splitKey(k)
		out[v] = true
	}
	return out, nil
}

// removeVersion deletes a drained version's key and forgets it in the
// entry; the entry goes with the last version of a deleted model.
func (s *Store) removeVersion(ctx context.Context, model, version string) error {
	if err := s.KV.Delete(ctx, VersionKey(model, version)); err != nil {
		return fmt.Errorf("registry delete %s: %w", VersionKey(model, version), err)
	}
	var gone bool
	err := s.update(ctx, model, func(e *Entry, versions map[string]bool) error {
		delete(e.Retired, version)
		gone = e.Deleted && len(versions) == 0
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		gone, err = true, nil
	}
	if err != nil {
		return err
	}
	if gone {
		if err := s.KV.Delete(ctx, model); err != nil {
			return fmt.Errorf("registry delete %s: %w", model, err)
		}
	}
	return nil
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
