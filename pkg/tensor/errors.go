package tensor

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them so callers can map failures to protocol status codes with errors.Is.
var (
	// ErrDatatype reports an unknown datatype or a datatype mismatch.
	ErrDatatype = errors.New("tensor: bad datatype")
	// ErrShape reports a malformed shape or data nested differently from it.
	ErrShape = errors.New("tensor: bad shape")
	// ErrDataLength reports data whose size does not match the shape.
	ErrDataLength = errors.New("tensor: data length mismatch")
	// ErrValue reports malformed or out-of-range element values.
	ErrValue = errors.New("tensor: bad value")
	// ErrIncompatible reports tensors that cannot be combined or matched.
	ErrIncompatible = errors.New("tensor: incompatible tensors")
)

// tensorError carries a human-oriented message while unwrapping to a
// sentinel, so messages read naturally (no ": tensor: bad shape" suffix)
// and still work with errors.Is.
type tensorError struct {
	kind error
	msg  string
}

func (e *tensorError) Error() string { return e.msg }
func (e *tensorError) Unwrap() error { return e.kind }

func errf(kind error, format string, args ...any) error {
	return &tensorError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// formatShape renders a shape the way the protocol documents show it: [1,16].
func formatShape(shape []int64) string {
	b := make([]byte, 0, 2+len(shape)*4)
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}
