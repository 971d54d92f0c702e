// Package jobid makes job and batch ids: 26 lowercase base32 characters, a
// 48-bit millisecond timestamp then 80 random bits, so ids sort by creation
// time and are valid in URLs, NATS subjects and KV keys.
package jobid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"time"
)

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz" // Crockford's base32, lowercase

// New returns a fresh id.
func New() string { return At(time.Now()) }

// At returns a fresh id for time t.
func At(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+)
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	// 128 bits in 26 groups of 5 (the first group holds the top 3 bits).
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Valid reports whether s looks like an id (26 characters of the alphabet),
// so handlers can answer 404 early for anything else.
func Valid(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') || c == 'i' || c == 'l' || c == 'o' || c == 'u' {
			return false
		}
	}
	return true
}

// Derive returns the id of item n of base (a batch of the Batch API and its
// line number): base's timestamp then 80 bits of a hash of (base, n). The
// same item always gets the same id, so a restarted batch finds the jobs it
// already queued instead of queueing them again.
func Derive(base string, n int) string {
	sum := sha256.Sum256([]byte(base + "\x00" + strconv.Itoa(n)))
	var out [26]byte
	k := copy(out[:], base)
	if k < 10 || !Valid(base) {
		return fromHash(sum) // base is no id: all of the id from the hash
	}
	// The first 10 characters carry the 48-bit millisecond timestamp.
	for i := 10; i < 26; i++ {
		out[i] = alphabet[sum[i]&31]
	}
	return string(out[:])
}

// fromHash is an id made of sum alone.
func fromHash(sum [32]byte) string {
	var out [26]byte
	out[0] = alphabet[sum[0]&7] // the first group holds 3 bits
	for i := 1; i < 26; i++ {
		out[i] = alphabet[sum[i]&31]
	}
	return string(out[:])
}
