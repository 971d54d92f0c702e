package ingress

import (
	"encoding/json"
	"strconv"

	"github.com/inferq/inferq/internal/jsonscan"
	"github.com/inferq/inferq/pkg/tensor"
)

// decodeFast reads the usual form of a JSON job request without reflection:
// an object of id, inputs (tensor objects of name, shape, datatype and data),
// parameters and text_input, whose names and strings are plain ASCII (data
// and parameter values may hold any JSON). Anything else (other members, a
// tensor's parameters, outputs, escapes in a name or string, a member given
// twice, null where a value is expected, syntax it does not take) makes
// it report false, and the caller decodes the body with encoding/json, which
// gives the answer and the error message the API always gave. For a body it
// takes it returns what encoding/json, with unknown fields disallowed, would
// (FuzzDecodeFast holds it to that). The raw values (data, parameters) share
// b's memory.
//
// encoding/json cost 2.7% of the broker's CPU on a small job, most of it
// scanning the body twice (once whole, once per raw value) and reflection.
func decodeFast(b []byte) (*inferRequest, bool) {
	s := scanner{Scanner: jsonscan.Scanner{B: b}}
	req := &inferRequest{}
	ok := s.members(requestMembers, func(k int) bool {
		switch k {
		case 0:
			str, ok := s.plainString()
			req.ID = str
			return ok
		case 1:
			return s.inputs(req)
		case 2:
			return s.params(req)
		default:
			str, ok := s.plainString()
			req.TextInput = &str
			return ok
		}
	})
	if !ok {
		return nil, false
	}
	return req, s.End()
}

// scanner reads the request's members; every method reports false for what
// it does not take, and the body is then decoded the slow way.
type scanner struct{ jsonscan.Scanner }

// next skips space and consumes c if it is the next byte.
func (s *scanner) next(c byte) bool {
	s.Space()
	return s.Take(c)
}

// object reads {"key": value, ...}, calling member with each plain key
// with the scanner at its value.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		s.Space()
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

// The members the fast path reads, by index for members.
var (
	requestMembers = []string{"id", "inputs", "parameters", "text_input"}
	tensorMembers  = []string{"name", "shape", "datatype", "data"}
)

// members reads an object whose keys are among names, each at most once,
// calling read with the key's index with the scanner at its value.
func (s *scanner) members(names []string, read func(k int) bool) bool {
	var seen uint
	return s.object(func(key []byte) bool {
		k := -1
		for i, name := range names {
			if name == string(key) { // compared without a copy
				k = i
				break
			}
		}
		if k < 0 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		return read(k)
	})
}

// plainBytes reads a string without escapes or bytes outside ASCII (see
// jsonscan's Plain), white space before it included.
func (s *scanner) plainBytes() ([]byte, bool) {
	s.Space()
	return s.Plain()
}

func (s *scanner) plainString() (string, bool) {
	b, ok := s.plainBytes()
	return string(b), ok
}

// inputs reads the inputs array; null, an empty array and null entries go
// the slow way.
func (s *scanner) inputs(req *inferRequest) bool {
	if !s.next('[') {
		return false
	}
	if s.Space(); s.Peek() == ']' {
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
	return s.members(tensorMembers, func(k int) bool {
		var ok bool
		switch k {
		case 0:
			t.Name, ok = s.plainString()
		case 1:
			t.Shape, ok = s.ints()
		case 2:
			t.Datatype, ok = s.plainString()
		default:
			t.Data, ok = s.raw(3) // in the request, inputs and the tensor
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
		s.Space()
		start := s.I
		if !s.Num() {
			return nil, false
		}
		v, err := strconv.ParseInt(string(s.B[start:s.I]), 10, 64)
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

// params reads the parameters object into raw values; null and a name
// given twice go the slow way.
func (s *scanner) params(req *inferRequest) bool {
	req.Parameters = map[string]json.RawMessage{}
	return s.object(func(key []byte) bool {
		if _, dup := req.Parameters[string(key)]; dup {
			return false
		}
		v, ok := s.raw(2) // in the request and parameters
		req.Parameters[string(key)] = v
		return ok
	})
}

// raw returns the extent of one value that depth containers hold, checked
// as encoding/json checks it and kept byte for byte as json.RawMessage is.
func (s *scanner) raw(depth int) (json.RawMessage, bool) {
	s.Space()
	start := s.I
	if !s.Skip(depth) {
		return nil, false
	}
	return json.RawMessage(s.B[start:s.I:s.I]), true
}
