package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned by a store's methods (notably a blocked Wait) once
// Close has been called.
var ErrClosed = errors.New("results store closed")

// maxIDLen bounds ids; real ids are 26 characters, and ids arrive from URLs.
const maxIDLen = 255

// validID reports whether id can name a record in every backend: the
// characters of a JetStream KV key, no empty dot-separated token, no Redis
// glob characters. Both backends share it so they agree on which ids exist.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id[0] == '.' || id[len(id)-1] == '.' {
		return false
	}
	prevDot := false
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=', c == '/':
			prevDot = false
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
		default:
			return false
		}
	}
	return true
}

// normalizeResult checks that r is JSON and trims insignificant outer
// whitespace, so that both backends hand back the same bytes they were given
// (a JSON encoder would drop that whitespace, the Redis hash would not).
func normalizeResult(r json.RawMessage) (json.RawMessage, error) {
	if len(r) == 0 {
		return nil, nil
	}
	if !json.Valid(r) {
		return nil, errors.Join(ErrInvalid, errors.New("result is not valid JSON"))
	}
	return bytes.Trim(r, " \t\r\n"), nil
}

// prepareRecord validates rec for Create and returns a copy with times in UTC
// and the result normalized; the caller's record is left alone.
func prepareRecord(rec *Record) (*Record, error) {
	switch {
	case rec == nil:
		return nil, errors.Join(ErrInvalid, errors.New("nil record"))
	case !validID(rec.ID):
		return nil, errors.Join(ErrInvalid, fmt.Errorf("invalid job id %q", rec.ID))
	case !rec.Status.Valid():
		return nil, errors.Join(ErrInvalid, fmt.Errorf("record has unknown status %q", rec.Status))
	}
	r := *rec
	r.CreatedAt = r.CreatedAt.UTC()
	r.StartedAt = utcPtr(r.StartedAt)
	r.FinishedAt = utcPtr(r.FinishedAt)
	if r.Error != nil {
		e := *r.Error
		r.Error = &e
	}
	if r.Webhook != nil {
		w := *r.Webhook
		r.Webhook = &w
	}
	res, err := normalizeResult(r.Result)
	if err != nil {
		return nil, err
	}
	r.Result = res
	return &r, nil
}

// prepareUpdate validates u (Check plus a JSON result) and normalizes it.
func prepareUpdate(u Update) (Update, error) {
	if err := u.Check(); err != nil {
		return u, err
	}
	if !u.ResultEncoded {
		res, err := normalizeResult(u.Result)
		if err != nil {
			return u, err
		}
		u.Result = res
	}
	u.Time = u.Time.UTC()
	return u, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// seen is a bounded set of recently seen ids: two generations, the older
// dropped when the newer fills, so it remembers at least the last perGen.
type seen struct {
	mu        sync.Mutex
	perGen    int
	cur, prev map[string]struct{}
}

func newSeen(perGen int) seen {
	return seen{perGen: perGen, cur: make(map[string]struct{}), prev: make(map[string]struct{})}
}

func (s *seen) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= s.perGen {
		s.prev, s.cur = s.cur, make(map[string]struct{}, s.perGen)
	}
	s.cur[id] = struct{}{}
}

func (s *seen) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[id]
	if !ok {
		_, ok = s.prev[id]
	}
	return ok
}
