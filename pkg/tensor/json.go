package tensor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON is the OIP JSON form of a tensor, as found in request "inputs" and
// response "outputs". Data stays raw so it can be decoded straight into the
// binary layout without an intermediate []any.
type JSON struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// FromJSON decodes j into a raw tensor. Data may be flat or nested; nested
// arrays must match the shape exactly. Integers must be integral and within
// the datatype's range (64-bit values are parsed exactly, never through
// float64); FP16/BF16 values are rounded to nearest even; BOOL takes
// true/false and BYTES takes strings (invalid UTF-8 and lone surrogates
// become U+FFFD, as with encoding/json). It never panics on any input.
func FromJSON(j *JSON) (*Tensor, error) {
	if j == nil {
		return nil, errf(ErrValue, "tensor is nil")
	}
	dt, err := ParseDataType(j.Datatype)
	if err != nil {
		return nil, errf(ErrDatatype, "tensor %q: unknown datatype %q", j.Name, j.Datatype)
	}
	n, err := checkShape(j.Name, j.Shape)
	if err != nil {
		return nil, err
	}
	d := decoder{buf: j.Data, name: j.Name, dt: dt, shape: j.Shape, n: n}
	// Pre-size the output only when the shape is plausible for the input
	// length (each element takes at least one byte of JSON), so a huge
	// declared shape cannot force a huge allocation.
	plausible := n
	if limit := int64(len(j.Data)/2 + 1); plausible > limit {
		plausible = limit
	}
	if dt == Bytes {
		d.out = make([]byte, 0, int(plausible)*4+len(j.Data))
	} else {
		d.out = make([]byte, 0, int(plausible)*dt.ElemSize())
	}
	if err := d.decode(); err != nil {
		return nil, err
	}
	shape := make([]int64, len(j.Shape))
	copy(shape, j.Shape)
	return &Tensor{Name: j.Name, Datatype: dt, Shape: shape, Data: d.out}, nil
}

// decoder is a hand-written scanner for the data member. It writes elements
// directly in raw form and checks structure against the shape as it goes.
type decoder struct {
	buf   []byte
	pos   int
	name  string
	dt    DataType
	shape []int64
	n     int64 // elements the shape requires
	count int64 // elements decoded so far
	out   []byte
}

func (d *decoder) syntaxErr(what string) error {
	if d.pos >= len(d.buf) {
		return errf(ErrValue, "tensor %q: malformed data: %s, found end of input", d.name, what)
	}
	return errf(ErrValue, "tensor %q: malformed data at offset %d: %s, found %q", d.name, d.pos, what, d.buf[d.pos])
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at end of input (a NUL byte
// in the input is a syntax error wherever peek is used, so the two need not
// be told apart except at the very end, which checks pos directly).
func (d *decoder) peek() byte {
	d.skipSpace()
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

func (d *decoder) decode() error {
	c := d.peek()
	switch {
	case d.pos >= len(d.buf):
		return errf(ErrValue, "tensor %q: data is missing", d.name)
	case c != '[':
		if len(d.shape) != 0 {
			return errf(ErrShape, "tensor %q: data must be an array for shape %s", d.name, formatShape(d.shape))
		}
		if err := d.scalar(); err != nil {
			return err
		}
	default:
		// Nested when the first element is itself an array.
		save := d.pos
		d.pos++
		nested := d.peek() == '['
		d.pos = save
		var err error
		if nested {
			err = d.nested(0)
		} else {
			err = d.flat()
		}
		if err != nil {
			return err
		}
	}
	if d.skipSpace(); d.pos < len(d.buf) {
		return d.syntaxErr("unexpected data after the value")
	}
	if d.count != d.n {
		return errf(ErrDataLength, "tensor %q: data has %d elements, shape %s needs %d",
			d.name, d.count, formatShape(d.shape), d.n)
	}
	return nil
}

// flat decodes a one-level array of scalars; the element count is checked
// by the caller against the whole shape.
func (d *decoder) flat() error {
	d.pos++ // '['
	if d.peek() == ']' {
		d.pos++
		return nil
	}
	for {
		switch d.peek() {
		case '[':
			return errf(ErrShape, "tensor %q: data mixes nested arrays and values at element %d", d.name, d.count)
		case 0, ']', ',':
			return d.syntaxErr("expected a value")
		}
		if d.count >= d.n {
			return errf(ErrDataLength, "tensor %q: data has more than %d elements required by shape %s",
				d.name, d.n, formatShape(d.shape))
		}
		if err := d.scalar(); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.syntaxErr("expected ',' or ']'")
		}
	}
}

// nested decodes an array at the given depth, which must hold exactly
// shape[level] entries: arrays above the innermost level, values in it.
func (d *decoder) nested(level int) error {
	if level >= len(d.shape) {
		return errf(ErrShape, "tensor %q: data is nested deeper than shape %s", d.name, formatShape(d.shape))
	}
	if d.peek() != '[' {
		return errf(ErrShape, "tensor %q: data nesting does not match shape %s: expected an array at depth %d",
			d.name, formatShape(d.shape), level)
	}
	d.pos++
	inner := level == len(d.shape)-1
	want := d.shape[level]
	var got int64
	if d.peek() == ']' {
		d.pos++
	} else {
		for {
			switch d.peek() {
			case 0, ']', ',':
				return d.syntaxErr("expected a value")
			}
			if got == want {
				return errf(ErrShape, "tensor %q: data nesting does not match shape %s: more than %d entries at depth %d",
					d.name, formatShape(d.shape), want, level)
			}
			c := d.peek()
			if inner {
				if c == '[' {
					return errf(ErrShape, "tensor %q: data is nested deeper than shape %s", d.name, formatShape(d.shape))
				}
				if err := d.scalar(); err != nil {
					return err
				}
			} else if err := d.nested(level + 1); err != nil {
				return err
			}
			got++
			c = d.peek()
			if c == ',' {
				d.pos++
				continue
			}
			if c == ']' {
				d.pos++
				break
			}
			return d.syntaxErr("expected ',' or ']'")
		}
	}
	if got != want {
		return errf(ErrShape, "tensor %q: data nesting does not match shape %s: %d entries at depth %d, want %d",
			d.name, formatShape(d.shape), got, level, want)
	}
	return nil
}

// scalar decodes one element at the current (non-space) position.
func (d *decoder) scalar() error {
	switch d.dt {
	case Bool:
		return d.boolean()
	case Bytes:
		return d.str()
	}
	if !d.dt.isFloat() && d.fastInt() {
		return nil
	}
	start := d.pos
	isInt, ok := d.scanNumber()
	if !ok {
		d.pos = start
		if d.pos < len(d.buf) && (d.buf[d.pos] == '"' || d.buf[d.pos] == 't' || d.buf[d.pos] == 'f' || d.buf[d.pos] == 'n') {
			return errf(ErrValue, "tensor %q: element %d: expected a number for %s", d.name, d.count, d.dt)
		}
		return d.syntaxErr("expected a number")
	}
	tok := d.buf[start:d.pos]
	var err error
	if d.dt.isFloat() {
		err = d.float(tok)
	} else {
		err = d.integer(tok, isInt)
	}
	if err != nil {
		return err
	}
	d.count++
	return nil
}

// fastInt handles the common case of a short plain integer that fits the
// datatype, in one pass. It reports false, consuming nothing, for anything
// else (fractions, exponents, long or out-of-range values, bad syntax) so
// the general path can decode it or produce the right error.
func (d *decoder) fastInt() bool {
	b, i := d.buf, d.pos
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 18 {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	n := i - start
	if n == 0 || (n > 1 && b[start] == '0') {
		return false
	}
	if i < len(b) {
		switch b[i] {
		case '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return false
		}
	}
	bits := uint(d.dt.ElemSize() * 8)
	if d.dt.isSigned() {
		limit := uint64(1) << (bits - 1)
		if v > limit || (!neg && v == limit) {
			return false
		}
	} else if (neg && v != 0) || (bits < 64 && v >= 1<<bits) {
		return false
	}
	if neg {
		v = -v
	}
	switch bits {
	case 8:
		d.out = append(d.out, byte(v))
	case 16:
		d.out = binary.LittleEndian.AppendUint16(d.out, uint16(v))
	case 32:
		d.out = binary.LittleEndian.AppendUint32(d.out, uint32(v))
	default:
		d.out = binary.LittleEndian.AppendUint64(d.out, v)
	}
	d.pos = i
	d.count++
	return true
}

func (d *decoder) boolean() error {
	rest := d.buf[d.pos:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		d.out = append(d.out, 1)
		d.pos += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		d.out = append(d.out, 0)
		d.pos += 5
	default:
		if len(rest) > 0 && (rest[0] == '-' || rest[0] == '"' || rest[0] == 'n' || (rest[0] >= '0' && rest[0] <= '9')) {
			return errf(ErrValue, "tensor %q: element %d: expected true or false for BOOL", d.name, d.count)
		}
		return d.syntaxErr("expected true or false")
	}
	d.count++
	return nil
}

// scanNumber advances over a JSON number, enforcing the JSON grammar.
// isInt reports a plain integer (no fraction or exponent).
func (d *decoder) scanNumber() (isInt, ok bool) {
	b, i := d.buf, d.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		isInt = false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		isInt = false
	}
	d.pos = i
	return isInt, true
}

// shortTok quotes a token for an error message, truncating long ones.
func shortTok(tok []byte) string {
	if len(tok) > 40 {
		return string(tok[:40]) + "..."
	}
	return string(tok)
}

// pow10 holds the powers of ten that are exact in float64.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// fastFloat converts a JSON number token to float64 without strconv when
// it has at most 15 significant digits and a small decimal exponent: then
// the mantissa and the power of ten are exact and one multiplication or
// division gives the correctly rounded result (Clinger's fast path).
func fastFloat(tok []byte) (float64, bool) {
	neg := tok[0] == '-'
	i := 0
	if neg {
		i = 1
	}
	var m uint64
	digits, k := 0, 0
	seenDot := false
	for ; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= '0' && c <= '9':
			if m == 0 && c == '0' {
				if seenDot {
					k--
				}
				continue // leading zeros are not significant
			}
			if digits == 15 {
				return 0, false
			}
			m = m*10 + uint64(c-'0')
			digits++
			if seenDot {
				k--
			}
		case c == '.':
			seenDot = true
		default: // exponent
			e, eneg := 0, false
			i++
			if tok[i] == '+' || tok[i] == '-' {
				eneg = tok[i] == '-'
				i++
			}
			for ; i < len(tok); i++ {
				if e > 1000 {
					return 0, false
				}
				e = e*10 + int(tok[i]-'0')
			}
			if eneg {
				e = -e
			}
			k += e
		}
	}
	f := float64(m)
	switch {
	case m == 0:
	case k == 0:
	case k > 0 && k < len(pow10):
		f *= pow10[k]
	case k < 0 && -k < len(pow10):
		f /= pow10[-k]
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

func (d *decoder) float(tok []byte) error {
	f, ok := fastFloat(tok)
	if ok && d.dt == FP32 {
		// Rounding the exact float64 to float32 is correct unless the
		// float64 landed exactly on a float32 midpoint, where the decimal
		// may lie on either side; let strconv decide those.
		const lowBits = 1<<29 - 1
		ok = math.Float64bits(f)&lowBits != 1<<28
	}
	if !ok {
		bits := 64
		if d.dt == FP32 {
			bits = 32 // parse straight to float32 to avoid double rounding
		}
		var err error
		if f, err = strconv.ParseFloat(string(tok), bits); err != nil {
			return errf(ErrValue, "tensor %q: element %d: %s out of range for %s", d.name, d.count, shortTok(tok), d.dt)
		}
	}
	return d.putFloat(f, tok)
}

func (d *decoder) putFloat(f float64, tok []byte) error {
	switch d.dt {
	case FP64:
		d.out = binary.LittleEndian.AppendUint64(d.out, math.Float64bits(f))
	case FP32:
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) {
			return errf(ErrValue, "tensor %q: element %d: %s out of range for FP32", d.name, d.count, shortTok(tok))
		}
		d.out = binary.LittleEndian.AppendUint32(d.out, math.Float32bits(f32))
	default:
		h := fp16Format
		if d.dt == BF16 {
			h = bf16Format
		}
		v := h.fromFloat64(f)
		if v&0x7FFF == uint16(1<<(15-h.mantBits)-1)<<h.mantBits {
			return errf(ErrValue, "tensor %q: element %d: %s out of range for %s", d.name, d.count, shortTok(tok), d.dt)
		}
		d.out = binary.LittleEndian.AppendUint16(d.out, v)
	}
	return nil
}

var errNotIntegral = errors.New("not integral")

// parseInteger parses a JSON number token exactly as an integer magnitude.
// Fractions and exponents are allowed only when the value is integral
// (1.0, 1e3); it never goes through float64, so 64-bit values are exact.
func parseInteger(tok []byte, isInt bool) (neg bool, mag uint64, overflow bool, err error) {
	if tok[0] == '-' {
		neg = true
		tok = tok[1:]
	}
	if isInt {
		for _, c := range tok {
			v := uint64(c - '0')
			if mag > (math.MaxUint64-v)/10 {
				return neg, 0, true, nil
			}
			mag = mag*10 + v
		}
		return neg, mag, false, nil
	}
	// Split into integer digits, fraction digits and exponent.
	i := 0
	for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
		i++
	}
	intDigits := tok[:i]
	var frac []byte
	if i < len(tok) && tok[i] == '.' {
		j := i + 1
		for j < len(tok) && tok[j] >= '0' && tok[j] <= '9' {
			j++
		}
		frac = tok[i+1 : j]
		i = j
	}
	exp := 0
	if i < len(tok) { // 'e' or 'E'
		i++
		expNeg := false
		if tok[i] == '+' || tok[i] == '-' {
			expNeg = tok[i] == '-'
			i++
		}
		for ; i < len(tok); i++ {
			if exp < 1e6 { // saturate; anything this big is decided anyway
				exp = exp*10 + int(tok[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	// The digit string is intDigits++frac; value = digits * 10^(exp-len(frac)).
	digit := func(k int) byte {
		if k < len(intDigits) {
			return intDigits[k]
		}
		return frac[k-len(intDigits)]
	}
	total := len(intDigits) + len(frac)
	first := 0
	for first < total && digit(first) == '0' {
		first++
	}
	if first == total {
		return neg, 0, false, nil // zero, whatever the exponent
	}
	exp10 := exp - len(frac)
	last := total // digits [first,last) are significant
	if exp10 < 0 {
		if -exp10 > total-first {
			return neg, 0, false, errNotIntegral
		}
		last = total + exp10
		for k := last; k < total; k++ {
			if digit(k) != '0' {
				return neg, 0, false, errNotIntegral
			}
		}
		exp10 = 0
	}
	if last-first+exp10 > 20 {
		return neg, 0, true, nil
	}
	for k := first; k < last; k++ {
		v := uint64(digit(k) - '0')
		if mag > (math.MaxUint64-v)/10 {
			return neg, 0, true, nil
		}
		mag = mag*10 + v
	}
	for ; exp10 > 0; exp10-- {
		if mag > math.MaxUint64/10 {
			return neg, 0, true, nil
		}
		mag *= 10
	}
	return neg, mag, false, nil
}

func (d *decoder) integer(tok []byte, isInt bool) error {
	neg, mag, overflow, err := parseInteger(tok, isInt)
	if err != nil {
		return errf(ErrValue, "tensor %q: element %d: %s is not an integer, required by %s", d.name, d.count, shortTok(tok), d.dt)
	}
	bits := uint(d.dt.ElemSize() * 8)
	if !overflow {
		if d.dt.isSigned() {
			limit := uint64(1) << (bits - 1) // |min|; max is limit-1
			overflow = mag > limit || (!neg && mag == limit)
		} else {
			overflow = (neg && mag != 0) || (bits < 64 && mag >= 1<<bits)
		}
	}
	if overflow {
		return errf(ErrValue, "tensor %q: element %d: %s out of range for %s", d.name, d.count, shortTok(tok), d.dt)
	}
	v := mag
	if neg {
		v = -mag // two's complement; the low bits are the encoding
	}
	switch bits {
	case 8:
		d.out = append(d.out, byte(v))
	case 16:
		d.out = binary.LittleEndian.AppendUint16(d.out, uint16(v))
	case 32:
		d.out = binary.LittleEndian.AppendUint32(d.out, uint32(v))
	default:
		d.out = binary.LittleEndian.AppendUint64(d.out, v)
	}
	return nil
}

// str decodes a JSON string as one BYTES element (length prefix + bytes).
func (d *decoder) str() error {
	b := d.buf
	if d.pos >= len(b) || b[d.pos] != '"' {
		if d.pos < len(b) && (b[d.pos] == '-' || b[d.pos] == 't' || b[d.pos] == 'f' || b[d.pos] == 'n' || (b[d.pos] >= '0' && b[d.pos] <= '9')) {
			return errf(ErrValue, "tensor %q: element %d: expected a string for BYTES", d.name, d.count)
		}
		return d.syntaxErr("expected a string")
	}
	d.pos++
	lenAt := len(d.out)
	d.out = append(d.out, 0, 0, 0, 0)
	// Fast path: copy runs of plain ASCII directly.
	i := d.pos
	for {
		runStart := i
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
		d.out = append(d.out, b[runStart:i]...)
		if i >= len(b) {
			d.pos = i
			return d.syntaxErr("unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			i++
			n := len(d.out) - lenAt - 4
			if uint64(n) > math.MaxUint32 {
				d.pos = i
				return errf(ErrValue, "tensor %q: element %d: string longer than 4 GiB", d.name, d.count)
			}
			binary.LittleEndian.PutUint32(d.out[lenAt:], uint32(n))
			d.pos = i
			d.count++
			return nil
		case c < 0x20:
			d.pos = i
			return d.syntaxErr("control character in string")
		case c == '\\':
			d.pos = i
			next, err := d.escape(i)
			if err != nil {
				return err
			}
			i = next
		default: // non-ASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				d.out = utf8.AppendRune(d.out, utf8.RuneError)
			} else {
				d.out = append(d.out, b[i:i+size]...)
			}
			i += size
		}
	}
}

// escape decodes the escape sequence at b[i] == '\\' and returns the index
// after it.
func (d *decoder) escape(i int) (int, error) {
	b := d.buf
	if i+1 >= len(b) {
		d.pos = len(b)
		return 0, d.syntaxErr("unterminated escape")
	}
	switch b[i+1] {
	case '"', '\\', '/':
		d.out = append(d.out, b[i+1])
	case 'b':
		d.out = append(d.out, '\b')
	case 'f':
		d.out = append(d.out, '\f')
	case 'n':
		d.out = append(d.out, '\n')
	case 'r':
		d.out = append(d.out, '\r')
	case 't':
		d.out = append(d.out, '\t')
	case 'u':
		r, ok := hex4(b, i+2)
		if !ok {
			d.pos = i
			return 0, d.syntaxErr("invalid \\u escape")
		}
		i += 6
		if utf16.IsSurrogate(r) {
			// A high surrogate followed by a low one forms a pair; anything
			// else is a lone surrogate, replaced like encoding/json does.
			if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if r2, ok := hex4(b, i+2); ok {
					if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
						d.out = utf8.AppendRune(d.out, pair)
						return i + 6, nil
					}
				}
			}
			r = utf8.RuneError
		}
		d.out = utf8.AppendRune(d.out, r)
		return i, nil
	default:
		d.pos = i
		return 0, d.syntaxErr("invalid escape")
	}
	return i + 2, nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
