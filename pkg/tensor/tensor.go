package tensor

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Tensor is a named tensor in raw form: row-major, little-endian element
// bytes. BOOL uses one byte (0/1) per element; BYTES elements are each a
// 4-byte little-endian length followed by that many bytes (Triton's binary
// layout), so raw data can be forwarded to backends without re-encoding.
type Tensor struct {
	Name     string
	Datatype DataType
	Shape    []int64
	Data     []byte
}

// NumElements returns the product of the shape (1 for a scalar shape []).
// It returns -1 when a dimension is negative or the product overflows int64,
// which Validate reports as an error.
func (t *Tensor) NumElements() int64 {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// numElements multiplies dims, reporting false on a negative dim or overflow.
// A zero dim makes the product 0 regardless of the others (no overflow).
func numElements(shape []int64) (int64, bool) {
	zero := false
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			zero = true
		}
	}
	if zero {
		return 0, true
	}
	n := int64(1)
	for _, d := range shape {
		if n > math.MaxInt64/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// checkShape validates dims and returns the element count.
func checkShape(name string, shape []int64) (int64, error) {
	for i, d := range shape {
		if d < 0 {
			return 0, errf(ErrShape, "tensor %q: shape %s has negative dimension %d", name, formatShape(shape), i)
		}
	}
	n, ok := numElements(shape)
	if !ok {
		return 0, errf(ErrShape, "tensor %q: shape %s has too many elements", name, formatShape(shape))
	}
	return n, nil
}

// Validate checks that the tensor is internally consistent: a known
// datatype, non-negative dims, and data whose length matches the shape.
// For BYTES the elements are walked: their count must equal NumElements and
// no bytes may trail the last element.
func (t *Tensor) Validate() error {
	if t == nil {
		return errf(ErrShape, "tensor is nil")
	}
	if !t.Datatype.Valid() {
		return errf(ErrDatatype, "tensor %q: unknown datatype %q", t.Name, string(t.Datatype))
	}
	n, err := checkShape(t.Name, t.Shape)
	if err != nil {
		return err
	}
	if t.Datatype == Bytes {
		return validateBytes(t.Name, t.Shape, t.Data, n)
	}
	es := int64(t.Datatype.ElemSize())
	if n > math.MaxInt64/es || n*es != int64(len(t.Data)) {
		need := "more than fits in memory"
		if n <= math.MaxInt64/es {
			need = formatInt(n * es)
		}
		return errf(ErrDataLength, "tensor %q: data is %d bytes, shape %s of %s needs %s",
			t.Name, len(t.Data), formatShape(t.Shape), t.Datatype, need)
	}
	return nil
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

// validateBytes walks BYTES elements, checking each length prefix.
func validateBytes(name string, shape []int64, data []byte, n int64) error {
	var count int64
	off := 0
	for off < len(data) {
		if count == n {
			return errf(ErrDataLength, "tensor %q: %d trailing bytes after %d BYTES elements, shape %s",
				name, len(data)-off, n, formatShape(shape))
		}
		if len(data)-off < 4 {
			return errf(ErrDataLength, "tensor %q: BYTES element %d at offset %d: truncated length prefix",
				name, count, off)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		off += 4
		if uint64(l) > uint64(len(data)-off) {
			return errf(ErrDataLength, "tensor %q: BYTES element %d at offset %d declares %d bytes, only %d remain",
				name, count, off-4, l, len(data)-off)
		}
		off += int(l)
		count++
	}
	if count != n {
		return errf(ErrDataLength, "tensor %q: data holds %d BYTES elements, shape %s needs %d",
			name, count, formatShape(shape), n)
	}
	return nil
}

// nextBytesElem returns the end offset of the BYTES element starting at off.
// Callers must have validated the data.
func nextBytesElem(data []byte, off int) int {
	return off + 4 + int(binary.LittleEndian.Uint32(data[off:]))
}
