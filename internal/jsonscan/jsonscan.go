// Package jsonscan walks JSON text by hand for the decoders on hot paths
// (the job record, the job request), each of which reads the forms it knows
// and hands anything else to encoding/json. Every method checks what it
// scans as encoding/json's scanner does, so a decoder built on it takes no
// document encoding/json refuses.
package jsonscan

import "unicode/utf8"

// MaxDepth is encoding/json's limit on nesting, which Skip keeps so that a
// document is refused exactly where encoding/json refuses it.
const MaxDepth = 10000

// Scanner is a position in a JSON document: I is the next byte of B.
type Scanner struct {
	B         []byte
	I         int
	Backslash bool // the last string Str scanned has an escape
	High      bool // the last string Str scanned has a byte outside ASCII
}

// Space skips white space.
func (s *Scanner) Space() {
	for s.I < len(s.B) {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Take consumes c if it is the next byte.
func (s *Scanner) Take(c byte) bool {
	if s.I < len(s.B) && s.B[s.I] == c {
		s.I++
		return true
	}
	return false
}

// Peek returns the next byte, or 0 at the end.
func (s *Scanner) Peek() byte {
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// End reports whether only white space is left.
func (s *Scanner) End() bool {
	s.Space()
	return s.I == len(s.B)
}

// Lit consumes the literal word (true, false, null).
func (s *Scanner) Lit(word string) bool {
	if len(s.B)-s.I >= len(word) && string(s.B[s.I:s.I+len(word)]) == word {
		s.I += len(word)
		return true
	}
	return false
}

// Str scans a string with its quotes: no control characters, valid
// escapes. It sets Backslash and High.
func (s *Scanner) Str() bool {
	if !s.Take('"') {
		return false
	}
	s.Backslash, s.High = false, false
	for s.I < len(s.B) {
		c := s.B[s.I]
		switch {
		case c == '"':
			s.I++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			s.Backslash = true
			if s.I+1 >= len(s.B) {
				return false
			}
			switch s.B[s.I+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.I += 2
			case 'u':
				if len(s.B)-s.I < 6 {
					return false
				}
				for _, h := range s.B[s.I+2 : s.I+6] {
					if !isHex(h) {
						return false
					}
				}
				s.I += 6
			default:
				return false
			}
		default:
			if c >= utf8.RuneSelf {
				s.High = true
			}
			s.I++
		}
	}
	return false
}

// Plain scans a string without escapes or bytes outside ASCII and returns
// what is between its quotes, which is then its own value; anything else
// answers false (the decoders hand it to encoding/json).
func (s *Scanner) Plain() ([]byte, bool) {
	start := s.I
	if !s.Str() || s.Backslash || s.High {
		return nil, false
	}
	return s.B[start+1 : s.I-1], true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// IsDigit reports whether c is an ASCII digit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// Num scans a number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?.
func (s *Scanner) Num() bool {
	s.Take('-')
	switch c := s.Peek(); {
	case c == '0':
		s.I++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.Take('.') {
		if !IsDigit(s.Peek()) {
			return false
		}
		s.digits()
	}
	if c := s.Peek(); c == 'e' || c == 'E' {
		s.I++
		if c := s.Peek(); c == '+' || c == '-' {
			s.I++
		}
		if !IsDigit(s.Peek()) {
			return false
		}
		s.digits()
	}
	return true
}

func (s *Scanner) digits() {
	for s.I < len(s.B) && IsDigit(s.B[s.I]) {
		s.I++
	}
}

// Skip scans any one value (white space before it included) and checks it
// as encoding/json would, its nesting limit too: depth is how many
// containers hold the value. It keeps the open containers in a stack
// instead of recursing, so a deep value costs no goroutine stack.
func (s *Scanner) Skip(depth int) bool {
	var arr [16]bool // open containers within the value; true for an object
	open := arr[:0]
	for {
		// A value.
		s.Space()
		switch c := s.Peek(); c {
		case '{', '[':
			if depth+len(open)+1 > MaxDepth {
				return false
			}
			s.I++
			s.Space()
			if s.Take(c + 2) { // '}' is '{'+2, ']' is '['+2
				break
			}
			open = append(open, c == '{')
			if c == '{' && !s.Key() {
				return false
			}
			continue
		case '"':
			if !s.Str() {
				return false
			}
		case 't':
			if !s.Lit("true") {
				return false
			}
		case 'f':
			if !s.Lit("false") {
				return false
			}
		case 'n':
			if !s.Lit("null") {
				return false
			}
		default:
			if !s.Num() {
				return false
			}
		}
		// After a value: close what ends here, or go on to the next one.
	next:
		for {
			if len(open) == 0 {
				return true
			}
			s.Space()
			obj := open[len(open)-1]
			switch s.Peek() {
			case ',':
				s.I++
				if obj && !s.Key() {
					return false
				}
				break next
			case '}':
				if !obj {
					return false
				}
			case ']':
				if obj {
					return false
				}
			default:
				return false
			}
			s.I++
			open = open[:len(open)-1]
		}
	}
}

// Key scans an object member's key and its colon, white space included.
func (s *Scanner) Key() bool {
	s.Space()
	if !s.Str() {
		return false
	}
	s.Space()
	return s.Take(':')
}
