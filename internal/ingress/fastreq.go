package ingress

import (
	"encoding/json"
	"strconv"

	"github.com/inferq/inferq/pkg/tensor"
)

// decodeFast reads the usual form of a JSON job request without reflection:
// an object of id, inputs (tensor objects of name, shape, datatype and data),
// parameters and text_input, with plain ASCII strings. Anything else (other
// members, a tensor's parameters, outputs, escapes in a string, a member
// given twice, null where a value is expected, syntax it does not take) makes
// it report false, and the caller decodes the body with encoding/json, which
// gives the answer and the error message the API always gave. For a body it
// takes it returns what encoding/json, with unknown fields disallowed, would
// (FuzzDecodeFast holds it to that). The raw values (data, parameters) share
// b's memory.
//
// encoding/json cost 2.7% of the broker's CPU on a small job, most of it
// scanning the body twice (once whole, once per raw value) and reflection.
func decodeFast(b []byte) (*inferRequest, bool) {
	s := scanner{b: b}
	req := &inferRequest{}
	var seen [4]bool // id, inputs, parameters, text_input
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			if seen[0] {
				return false
			}
			seen[0] = true
			str, ok := s.plainString()
			req.ID = str
			return ok
		case "inputs":
			if seen[1] {
				return false
			}
			seen[1] = true
			return s.inputs(req)
		case "parameters":
			if seen[2] {
				return false
			}
			seen[2] = true
			return s.params(req)
		case "text_input":
			if seen[3] {
				return false
			}
			seen[3] = true
			str, ok := s.plainString()
			req.TextInput = &str
			return ok
		}
		return false
	})
	if !ok {
		return nil, false
	}
	s.space()
	return req, s.i == len(s.b)
}

// scanner walks a JSON document by hand; every method reports false for
// what it does not take, and the document is then decoded the slow way.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips space and consumes c if it is the next byte.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) peek() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// object reads {"key": value, ...}, calling member with each key with
// the scanner at its value.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		s.space()
		key, ok := s.plainBytes()
		if !ok || !s.next(':') || !member(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// plainBytes reads a string of printable ASCII without escapes.
func (s *scanner) plainBytes() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) plainString() (string, bool) {
	b, ok := s.plainBytes()
	return string(b), ok
}

// inputs reads the inputs array; null, an empty array and null entries go
// the slow way.
func (s *scanner) inputs(req *inferRequest) bool {
	if !s.next('[') || s.peek() == ']' {
		return false
	}
	for {
		t := &tensor.JSON{}
		if !s.tensor(t) {
			return false
		}
		req.Inputs = append(req.Inputs, t)
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

func (s *scanner) tensor(t *tensor.JSON) bool {
	var seen [4]bool // name, shape, datatype, data
	once := func(k int) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			if !once(0) {
				return false
			}
			t.Name, ok = s.plainString()
		case "shape":
			if !once(1) {
				return false
			}
			t.Shape, ok = s.ints()
		case "datatype":
			if !once(2) {
				return false
			}
			t.Datatype, ok = s.plainString()
		case "data":
			if !once(3) {
				return false
			}
			t.Data, ok = s.raw()
		}
		return ok
	})
}

// ints reads an array of integers as encoding/json reads []int64: [] is an
// empty slice; a fraction, exponent or overflow goes the slow way.
func (s *scanner) ints() ([]int64, bool) {
	if !s.next('[') {
		return nil, false
	}
	out := make([]int64, 0, 4)
	if s.next(']') {
		return out, true
	}
	for {
		s.space()
		start := s.i
		if !s.number() {
			return nil, false
		}
		v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
		if err != nil {
			return nil, false
		}
		out = append(out, v)
		if s.next(']') {
			return out, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// number consumes an integer literal as JSON writes it: -?(0|[1-9][0-9]*).
func (s *scanner) number() bool {
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	switch {
	case j < len(s.b) && s.b[j] == '0':
		j++
	case j < len(s.b) && s.b[j] >= '1' && s.b[j] <= '9':
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j++
		}
	default:
		return false
	}
	if j < len(s.b) && (s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E') {
		return false
	}
	s.i = j
	return true
}

// params reads the parameters object into raw values; null and a name
// given twice go the slow way.
func (s *scanner) params(req *inferRequest) bool {
	req.Parameters = map[string]json.RawMessage{}
	return s.object(func(key []byte) bool {
		if _, dup := req.Parameters[string(key)]; dup {
			return false
		}
		v, ok := s.raw()
		req.Parameters[string(key)] = v
		return ok
	})
}

// raw returns the extent of one JSON value, checked against JSON's grammar;
// strings in it may hold escapes but only ASCII, as encoding/json would keep
// them byte for byte.
func (s *scanner) raw() (json.RawMessage, bool) {
	s.space()
	start := s.i
	if !s.value(0) {
		return nil, false
	}
	return json.RawMessage(s.b[start:s.i:s.i]), true
}

// maxDepth bounds nesting on the fast path; deeper goes the slow way.
const maxDepth = 32

func (s *scanner) value(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '[':
		s.i++
		if s.next(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if s.next(']') {
				return true
			}
			if !s.next(',') {
				return false
			}
		}
	case c == '{':
		s.i++
		if s.next('}') {
			return true
		}
		for {
			if s.peek() != '"' || !s.str() || !s.next(':') || !s.value(depth+1) {
				return false
			}
			if s.next('}') {
				return true
			}
			if !s.next(',') {
				return false
			}
		}
	case c == '"':
		return s.str()
	case c == '-' || c >= '0' && c <= '9':
		return s.float()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

// str consumes a string with JSON's escapes, ASCII only.
func (s *scanner) str() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20 || c >= 0x80:
			return false
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

// float consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) float() bool {
	j := s.i
	digits := func() bool {
		k := j
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j++
		}
		return j > k
	}
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	switch {
	case j < len(s.b) && s.b[j] == '0':
		j++
	case !digits():
		return false
	}
	if j < len(s.b) && s.b[j] == '.' {
		j++
		if !digits() {
			return false
		}
	}
	if j < len(s.b) && (s.b[j] == 'e' || s.b[j] == 'E') {
		j++
		if j < len(s.b) && (s.b[j] == '+' || s.b[j] == '-') {
			j++
		}
		if !digits() {
			return false
		}
	}
	s.i = j
	return true
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}
