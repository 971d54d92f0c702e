package tensor

// Spec is a model's declared input, used to reject bad requests before
// they are batched with other jobs.
type Spec struct {
	Name     string
	Datatype DataType // "" means any datatype
	Dims     []int64  // per-request dims WITHOUT the batch dimension; -1 = any size
}

// Check validates a request tensor against the spec. The tensor's shape is
// [batch, dims...] with batch >= 1; dims declared -1 accept any size. The
// tensor's own consistency (Validate) is checked too, so a tensor that
// passes can be batched safely.
func (s Spec) Check(t *Tensor) error {
	if t == nil {
		return errf(ErrShape, "input %q: tensor is nil", s.Name)
	}
	if s.Name != "" && t.Name != s.Name {
		return errf(ErrIncompatible, "input %q: does not match spec %q", t.Name, s.Name)
	}
	if s.Datatype != "" && t.Datatype != s.Datatype {
		return errf(ErrDatatype, "input %q: expected datatype %s, got %s", t.Name, s.Datatype, t.Datatype)
	}
	if !s.shapeOK(t.Shape) {
		want := make([]int64, 0, len(s.Dims)+1)
		want = append(want, -1)
		want = append(want, s.Dims...)
		return errf(ErrShape, "input %q: expected shape %s, got %s", t.Name, formatShape(want), formatShape(t.Shape))
	}
	return t.Validate()
}

func (s Spec) shapeOK(shape []int64) bool {
	if len(shape) != len(s.Dims)+1 || shape[0] < 1 {
		return false
	}
	for i, d := range s.Dims {
		got := shape[i+1]
		if got < 0 || (d >= 0 && got != d) {
			return false
		}
	}
	return true
}
