// Package jsonstr writes JSON strings without reflection, byte for byte as
// encoding/json writes them (HTML escaping on, its default), for the hot
// paths that build JSON by hand: token chunks and tensor outputs.
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// Append appends s quoted as a JSON string. Invalid UTF-8 becomes \ufffd,
// so the output is always valid JSON.
func Append(dst []byte, s string) []byte { return appendQuoted(dst, s, utf8.DecodeRuneInString) }

// AppendBytes is Append for a byte slice, without converting it to a string.
func AppendBytes(dst, s []byte) []byte { return appendQuoted(dst, s, utf8.DecodeRune) }

func appendQuoted[S ~string | ~[]byte](dst []byte, s S, decode func(S) (rune, int)) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // other control characters, and <, >, &
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := decode(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
