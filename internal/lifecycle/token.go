package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/jsonstr"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// TokenChunk is one generated piece of a job's text as it travels on
// <prefix>.tokens.<tenant>.<job>: JSON, the one format promised to any NATS
// client, with its fields always present in this order:
//
//	{"job":"…","seq":1,"text":"…","token_id":42,"final":false}
//
// Seq counts from 1 within an attempt; the attempt rides in the
// Inferq-Attempt header (TokenAttempt).
type TokenChunk struct {
	Job     string `json:"job"`
	Seq     uint64 `json:"seq"`
	Text    string `json:"text"`
	TokenID int64  `json:"token_id"`
	Final   bool   `json:"final"`
}

// TokenChunkOf is the public form of a runner's token chunk.
func TokenChunkOf(c *inferqpb.TokenChunk) TokenChunk {
	return TokenChunk{Job: c.GetJobId(), Seq: c.GetSeq(), Text: c.GetText(), TokenID: c.GetTokenId(), Final: c.GetFinal()}
}

// AppendTokenChunk appends c's JSON to dst: the same bytes encoding/json
// writes for it (HTML characters, U+2028 and U+2029 escaped, invalid UTF-8
// replaced), without reflection, since it runs once per generated token.
func AppendTokenChunk(dst []byte, c TokenChunk) []byte {
	dst = append(dst, `{"job":`...)
	dst = jsonstr.Append(dst, c.Job)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, c.Seq, 10)
	dst = append(dst, `,"text":`...)
	dst = jsonstr.Append(dst, c.Text)
	dst = append(dst, `,"token_id":`...)
	dst = strconv.AppendInt(dst, c.TokenID, 10)
	dst = append(dst, `,"final":`...)
	dst = strconv.AppendBool(dst, c.Final)
	return append(dst, '}')
}

// EncodeTokenChunk is c's JSON in a new slice, sized for it unless its
// strings need escapes.
func EncodeTokenChunk(c TokenChunk) []byte {
	n := len(`{"job":"","seq":,"text":"","token_id":,"final":false}`) + len(c.Job) + len(c.Text) + digits(c.Seq)
	if c.TokenID < 0 {
		n += 1 + digits(uint64(-c.TokenID))
	} else {
		n += digits(uint64(c.TokenID))
	}
	return AppendTokenChunk(make([]byte, 0, n), c)
}

// digits is the number of decimal digits of n.
func digits(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// DecodeTokenChunk reads a token chunk as encoding/json would: any valid
// JSON object (unknown fields ignored, keys matched case-insensitively),
// and an error for anything else. The form AppendTokenChunk writes is read
// without reflection; others go through encoding/json.
func DecodeTokenChunk(data []byte) (TokenChunk, error) {
	if c, ok := decodeTokenChunkFast(data); ok {
		return c, nil
	}
	var c TokenChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return TokenChunk{}, fmt.Errorf("token chunk: %w", err)
	}
	return c, nil
}

// TokenMsg is chunk c of a job of tenant's attempt as a message on the
// job's token subject, with its sequence and attempt in headers (a reader
// finds where the stream ends from the last message alone) and ctx's
// trace context.
func TokenMsg(ctx context.Context, t jetstream.Topology, tenant string, attempt uint32, c TokenChunk) *nats.Msg {
	vals := []string{strconv.FormatUint(c.Seq, 10), strconv.FormatUint(uint64(attempt), 10)} // one allocation for both
	h := nats.Header{}
	h[jetstream.HeaderSeq], h[jetstream.HeaderAttempt] = vals[0:1:1], vals[1:2:2]
	jetstream.InjectTrace(ctx, h)
	msg := &nats.Msg{Subject: t.TokenSubject(tenant, c.Job), Data: EncodeTokenChunk(c), Header: h}
	return msg
}

// TokenAttempt is the attempt a token message belongs to; 0 when its
// header is missing or not a positive number.
func TokenAttempt(h nats.Header) uint32 {
	a, err := strconv.ParseUint(h.Get(jetstream.HeaderAttempt), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(a)
}

// TokenSeq is the sequence of a token message's chunk, from its header;
// false when the header is missing or not a number.
func TokenSeq(h nats.Header) (uint64, bool) {
	s, err := strconv.ParseUint(h.Get(jetstream.HeaderSeq), 10, 64)
	return s, err == nil
}

// decodeTokenChunkFast reads exactly the form AppendTokenChunk writes (keys
// in order, no whitespace but after the object). ok is false for anything
// else, which the caller leaves to encoding/json; whatever it accepts,
// encoding/json reads the same way.
func decodeTokenChunkFast(d []byte) (c TokenChunk, ok bool) {
	p := tokenParser{d: d}
	if !p.lit(`{"job":`) {
		return c, false
	}
	if c.Job, ok = p.str(); !ok || !p.lit(`,"seq":`) {
		return c, false
	}
	if c.Seq, ok = p.uint(math.MaxUint64); !ok || !p.lit(`,"text":`) {
		return c, false
	}
	if c.Text, ok = p.str(); !ok || !p.lit(`,"token_id":`) {
		return c, false
	}
	if c.TokenID, ok = p.int(); !ok || !p.lit(`,"final":`) {
		return c, false
	}
	switch {
	case p.lit("true"):
		c.Final = true
	case p.lit("false"):
	default:
		return c, false
	}
	if !p.lit("}") {
		return c, false
	}
	for _, b := range d[p.i:] {
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			return c, false
		}
	}
	return c, true
}

// tokenParser walks the bytes of one token chunk.
type tokenParser struct {
	d []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *tokenParser) lit(s string) bool {
	if len(p.d)-p.i < len(s) || string(p.d[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// uint consumes a JSON integer of at most limit with no sign, fraction or
// exponent.
func (p *tokenParser) uint(limit uint64) (uint64, bool) {
	start := p.i
	var n uint64
	for p.i < len(p.d) && p.d[p.i] >= '0' && p.d[p.i] <= '9' {
		d := uint64(p.d[p.i] - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
		p.i++
	}
	switch digits := p.i - start; {
	case digits == 0, digits > 1 && p.d[start] == '0': // none, or a leading zero JSON forbids
		return 0, false
	}
	return n, true
}

// int consumes a JSON integer that fits an int64.
func (p *tokenParser) int() (int64, bool) {
	if p.i < len(p.d) && p.d[p.i] == '-' {
		p.i++
		n, ok := p.uint(1 << 63)
		return int64(-n), ok // -(1<<63) wraps to itself, which is right
	}
	n, ok := p.uint(math.MaxInt64)
	return int64(n), ok
}

// str consumes a JSON string and returns it unquoted as encoding/json
// does: invalid UTF-8 and lone surrogates become U+FFFD.
func (p *tokenParser) str() (string, bool) {
	if p.i >= len(p.d) || p.d[p.i] != '"' {
		return "", false
	}
	p.i++
	start := p.i
	for p.i < len(p.d) {
		switch b := p.d[p.i]; {
		case b == '"':
			s := string(p.d[start:p.i])
			p.i++
			return s, true
		case b == '\\' || b < 0x20 || b >= utf8.RuneSelf:
			return p.strSlow(start)
		}
		p.i++
	}
	return "", false
}

// strSlow finishes a string that has escapes or non-ASCII bytes, from
// start (just after the opening quote); p.i is at the first such byte.
func (p *tokenParser) strSlow(start int) (string, bool) {
	var sb strings.Builder
	sb.Grow(len(p.d) - start)
	sb.Write(p.d[start:p.i])
	for p.i < len(p.d) {
		b := p.d[p.i]
		switch {
		case b == '"':
			p.i++
			return sb.String(), true
		case b < 0x20:
			return "", false
		case b < utf8.RuneSelf && b != '\\':
			sb.WriteByte(b)
			p.i++
		case b >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.d[p.i:])
			if r == utf8.RuneError && size == 1 {
				sb.WriteRune(utf8.RuneError)
			} else {
				sb.Write(p.d[p.i : p.i+size])
			}
			p.i += size
		default: // an escape
			if p.i+1 >= len(p.d) {
				return "", false
			}
			switch e := p.d[p.i+1]; e {
			case '"', '\\', '/':
				sb.WriteByte(e)
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'u':
				r := hex4(p.d[p.i:])
				if r < 0 {
					return "", false
				}
				p.i += 6
				if utf16.IsSurrogate(r) {
					if dec := utf16.DecodeRune(r, hex4(p.d[p.i:])); dec != utf8.RuneError {
						r = dec
						p.i += 6
					} else {
						r = utf8.RuneError
					}
				}
				sb.WriteRune(r)
				continue
			default:
				return "", false
			}
			p.i += 2
		}
	}
	return "", false
}

// hex4 reads a \uXXXX escape at the start of b; -1 if there is none.
func hex4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
