package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Range is the rows [Start, End) of a batched tensor that belong to one job.
type Range struct{ Start, End int64 }

// Batched is the result of Concat: the joined tensor plus what is needed to
// route outputs back to each job.
type Batched struct {
	Tensor *Tensor   // parts concatenated along dim 0 (padded when ragged)
	Mask   *Tensor   // nil unless padding happened: BOOL "<name>_mask", Tensor's shape, true where data is real
	Rows   []Range   // Rows[i] = rows of parts[i]
	Shapes [][]int64 // original shape of each part (so outputs can be unpadded)
}

// Concat joins parts along dimension 0. All parts need the same datatype
// and rank >= 1. Differing non-batch dims wrap ErrIncompatible unless
// ragged is true; then each part is padded to the per-dim maximum (zero
// bytes, or empty strings for BYTES) and Mask marks the real elements.
// The result is named name and never aliases the parts.
func Concat(name string, parts []*Tensor, ragged bool) (*Batched, error) {
	if len(parts) == 0 {
		return nil, errf(ErrShape, "concat %q: no parts", name)
	}
	first := parts[0]
	if first == nil {
		return nil, errf(ErrShape, "concat %q: part 0 is nil", name)
	}
	rank := len(first.Shape)
	maxDims := make([]int64, rank)
	var rows int64
	same := true
	for i, p := range parts {
		if p == nil {
			return nil, errf(ErrShape, "concat %q: part %d is nil", name, i)
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("concat %q: part %d: %w", name, i, err)
		}
		if len(p.Shape) == 0 {
			return nil, errf(ErrShape, "concat %q: part %d (%q) is a scalar, need rank >= 1", name, i, p.Name)
		}
		if p.Datatype != first.Datatype {
			return nil, errf(ErrIncompatible, "concat %q: part %d (%q) is %s, part 0 is %s", name, i, p.Name, p.Datatype, first.Datatype)
		}
		if len(p.Shape) != rank {
			return nil, errf(ErrIncompatible, "concat %q: part %d (%q) has shape %s, part 0 has %s",
				name, i, p.Name, formatShape(p.Shape), formatShape(first.Shape))
		}
		for k := 1; k < rank; k++ {
			if p.Shape[k] != first.Shape[k] {
				same = false
			}
			maxDims[k] = max(maxDims[k], p.Shape[k])
		}
		if !same && !ragged {
			return nil, errf(ErrIncompatible, "concat %q: part %d (%q) has shape %s, part 0 has %s and inputs are not ragged",
				name, i, p.Name, formatShape(p.Shape), formatShape(first.Shape))
		}
		if rows > math.MaxInt64-p.Shape[0] {
			return nil, errf(ErrShape, "concat %q: too many rows", name)
		}
		rows += p.Shape[0]
	}
	maxDims[0] = rows
	total, ok := numElements(maxDims)
	es := int64(first.Datatype.ElemSize())
	if !ok || (es > 0 && total > math.MaxInt64/es) {
		return nil, errf(ErrShape, "concat %q: padded shape %s is too large", name, formatShape(maxDims))
	}

	b := &Batched{
		Tensor: &Tensor{Name: name, Datatype: first.Datatype, Shape: maxDims},
		Rows:   make([]Range, len(parts)),
		Shapes: make([][]int64, len(parts)),
	}
	shapes := make([]int64, rank*len(parts)) // one backing array for all Shapes
	var start int64
	for i, p := range parts {
		s := shapes[i*rank : (i+1)*rank : (i+1)*rank]
		copy(s, p.Shape)
		b.Shapes[i] = s
		b.Rows[i] = Range{start, start + p.Shape[0]}
		start += p.Shape[0]
	}

	if same {
		size := 0
		for _, p := range parts {
			size += len(p.Data)
		}
		data := make([]byte, 0, size)
		for _, p := range parts {
			data = append(data, p.Data...)
		}
		b.Tensor.Data = data
		return b, nil
	}

	mask := make([]byte, total)
	var data []byte
	if es > 0 {
		data = make([]byte, total*es)
	} else {
		size := 0
		for _, p := range parts {
			size += len(p.Data)
		}
		var realElems int64
		for _, p := range parts {
			realElems += p.NumElements()
		}
		if total > math.MaxInt32*int64(64) {
			// 4 bytes per padded empty string must stay addressable.
			return nil, errf(ErrShape, "concat %q: padded shape %s is too large", name, formatShape(maxDims))
		}
		data = make([]byte, 0, int64(size)+4*(total-realElems))
	}
	var off int64 // element offset of the current part's block
	for _, p := range parts {
		blockDims := maxDims
		blockDims[0] = p.Shape[0]
		data = padInto(data, mask, off, blockDims, p, int(es))
		blk, _ := numElements(blockDims)
		off += blk
	}
	maxDims[0] = rows
	b.Tensor.Data = data
	b.Mask = &Tensor{Name: name + "_mask", Datatype: Bool, Shape: append([]int64(nil), maxDims...), Data: mask}
	return b, nil
}

// padInto lays p out in a block of dims (p's shape with each dim raised to
// dims), starting at element off. Fixed-size data is written in place into
// the zeroed dst; BYTES data is appended (padding as empty strings). Mask
// bytes are set to 1 for real elements.
func padInto(dst, mask []byte, off int64, dims []int64, p *Tensor, es int) []byte {
	blk, _ := numElements(dims)
	if blk == 0 {
		return dst
	}
	rank := len(dims)
	runLen := dims[rank-1]
	srcLen := p.Shape[rank-1]
	idx := make([]int64, rank-1) // odometer over all dims but the last
	srcOff := 0
	for elem := off; elem < off+blk; elem += runLen {
		in := true
		for k, v := range idx {
			if v >= p.Shape[k] {
				in = false
				break
			}
		}
		copied := int64(0)
		if in {
			copied = srcLen
			for k := elem; k < elem+srcLen; k++ {
				mask[k] = 1
			}
			if es > 0 {
				n := int(srcLen) * es
				copy(dst[int(elem)*es:], p.Data[srcOff:srcOff+n])
				srcOff += n
			} else {
				end := srcOff
				for range srcLen {
					end = nextBytesElem(p.Data, end)
				}
				dst = append(dst, p.Data[srcOff:end]...)
				srcOff = end
			}
		}
		if es == 0 {
			for range runLen - copied {
				dst = binary.LittleEndian.AppendUint32(dst, 0)
			}
		}
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < dims[k] {
				break
			}
			idx[k] = 0
		}
	}
	return dst
}

// Split cuts a batched tensor into one tensor per range of rows along
// dim 0. Results are exact copies: they share one new backing array (with
// capacities clipped so appends cannot clobber each other) and never alias
// t. Ranges may overlap or leave rows out.
func Split(t *Tensor, rows []Range) ([]*Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	if len(t.Shape) == 0 {
		return nil, errf(ErrShape, "split %q: scalar tensor has no rows", t.Name)
	}
	nrows := t.Shape[0]
	rank := len(t.Shape)
	// Byte offset of each row boundary: a multiple of the row size for
	// fixed-size types, walked once for BYTES.
	var rowBytes int64
	var bounds []int
	if es := t.Datatype.ElemSize(); es > 0 {
		rowBytes = int64(len(t.Data))
		if nrows > 0 {
			rowBytes /= nrows
		}
	} else {
		bounds = bytesRowBounds(t)
	}
	size := 0
	for i, r := range rows {
		if r.Start < 0 || r.End < r.Start || r.End > nrows {
			return nil, errf(ErrShape, "split %q: range %d [%d,%d) is outside rows [0,%d)", t.Name, i, r.Start, r.End, nrows)
		}
		if bounds == nil {
			size += int((r.End - r.Start) * rowBytes)
		} else {
			size += bounds[r.End] - bounds[r.Start]
		}
	}
	data := make([]byte, size)
	shapes := make([]int64, rank*len(rows))
	tensors := make([]Tensor, len(rows))
	out := make([]*Tensor, len(rows))
	pos := 0
	for i, r := range rows {
		var a, b int
		if bounds == nil {
			a, b = int(r.Start*rowBytes), int(r.End*rowBytes)
		} else {
			a, b = bounds[r.Start], bounds[r.End]
		}
		n := copy(data[pos:], t.Data[a:b])
		s := shapes[i*rank : (i+1)*rank : (i+1)*rank]
		copy(s, t.Shape)
		s[0] = r.End - r.Start
		tensors[i] = Tensor{Name: t.Name, Datatype: t.Datatype, Shape: s, Data: data[pos : pos+n : pos+n]}
		out[i] = &tensors[i]
		pos += n
	}
	return out, nil
}

// bytesRowBounds returns the byte offset where each row of a validated
// BYTES tensor starts, plus the end offset.
func bytesRowBounds(t *Tensor) []int {
	nrows := t.Shape[0]
	perRow, _ := numElements(t.Shape[1:])
	bounds := make([]int, nrows+1)
	off := 0
	for r := int64(0); r < nrows; r++ {
		bounds[r] = off
		for range perRow {
			off = nextBytesElem(t.Data, off)
		}
	}
	bounds[nrows] = off
	return bounds
}

// Unpad crops t to shape (same rank, each dim <= t's), keeping the leading
// elements along every dim; it undoes Concat padding for one part. The
// result is a copy.
func Unpad(t *Tensor, shape []int64) (*Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("unpad: %w", err)
	}
	if len(shape) != len(t.Shape) {
		return nil, errf(ErrShape, "unpad %q: shape %s has rank %d, tensor has shape %s",
			t.Name, formatShape(shape), len(shape), formatShape(t.Shape))
	}
	for i, d := range shape {
		if d < 0 || d > t.Shape[i] {
			return nil, errf(ErrShape, "unpad %q: shape %s does not fit in %s", t.Name, formatShape(shape), formatShape(t.Shape))
		}
	}
	out := &Tensor{Name: t.Name, Datatype: t.Datatype, Shape: make([]int64, len(shape))}
	copy(out.Shape, shape)
	n, _ := numElements(shape)
	if len(shape) == 0 || n == 0 {
		out.Data = []byte{}
		if n == 1 {
			out.Data = append(out.Data, t.Data...)
		}
		return out, nil
	}
	rank := len(shape)
	es := t.Datatype.ElemSize()
	if es > 0 {
		out.Data = make([]byte, 0, n*int64(es))
	}
	// Walk the source runs (all dims but the last) in row-major order,
	// keeping the leading shape[last] elements of runs inside the crop.
	runLen := t.Shape[rank-1]
	keep := shape[rank-1]
	idx := make([]int64, rank-1)
	total, _ := numElements(t.Shape)
	srcOff := 0
	for elem := int64(0); elem < total; elem += runLen {
		in := true
		for k, v := range idx {
			if v >= shape[k] {
				in = false
				break
			}
		}
		if es > 0 {
			if in {
				out.Data = append(out.Data, t.Data[srcOff:srcOff+int(keep)*es]...)
			}
			srcOff += int(runLen) * es
		} else {
			start := srcOff
			for j := int64(0); j < runLen; j++ {
				if j == keep && in {
					out.Data = append(out.Data, t.Data[start:srcOff]...)
				}
				srcOff = nextBytesElem(t.Data, srcOff)
			}
			if in && keep == runLen {
				out.Data = append(out.Data, t.Data[start:srcOff]...)
			}
		}
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < t.Shape[k] {
				break
			}
			idx[k] = 0
		}
	}
	return out, nil
}
