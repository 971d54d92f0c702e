package tensor

// DataType is an Open Inference Protocol (KServe v2) tensor datatype name.
type DataType string

// The OIP datatypes.
const (
	Bool   DataType = "BOOL"
	Uint8  DataType = "UINT8"
	Uint16 DataType = "UINT16"
	Uint32 DataType = "UINT32"
	Uint64 DataType = "UINT64"
	Int8   DataType = "INT8"
	Int16  DataType = "INT16"
	Int32  DataType = "INT32"
	Int64  DataType = "INT64"
	FP16   DataType = "FP16"
	BF16   DataType = "BF16"
	FP32   DataType = "FP32"
	FP64   DataType = "FP64"
	Bytes  DataType = "BYTES"
)

// ParseDataType converts a wire datatype name to a DataType. Names are
// case-sensitive, as in the protocol; unknown names wrap ErrDatatype.
func ParseDataType(s string) (DataType, error) {
	d := DataType(s)
	if !d.Valid() {
		return "", errf(ErrDatatype, "unknown datatype %q", s)
	}
	return d, nil
}

// ElemSize returns the number of bytes per element in the raw form, or 0
// for BYTES (variable length) and unknown datatypes.
func (d DataType) ElemSize() int {
	switch d {
	case Bool, Uint8, Int8:
		return 1
	case Uint16, Int16, FP16, BF16:
		return 2
	case Uint32, Int32, FP32:
		return 4
	case Uint64, Int64, FP64:
		return 8
	}
	return 0
}

// Valid reports whether d is one of the OIP datatypes.
func (d DataType) Valid() bool {
	return d == Bytes || d.ElemSize() != 0
}

// String returns the wire name.
func (d DataType) String() string { return string(d) }

// isFloat reports whether d is a floating-point datatype.
func (d DataType) isFloat() bool {
	return d == FP16 || d == BF16 || d == FP32 || d == FP64
}

// isSigned reports whether d is a signed integer datatype.
func (d DataType) isSigned() bool {
	return d == Int8 || d == Int16 || d == Int32 || d == Int64
}
