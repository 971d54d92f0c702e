package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// JWKS errors.
var (
	errUnknownKID  = errors.New("unknown key id")
	errKeyMismatch = errors.New("key does not fit the token's algorithm")
	errNoUsableKey = errors.New("jwks has no usable keys")
)

const (
	maxJWKSBytes      = 1 << 20
	minRSABits        = 2048
	maxRSABits        = 8192
	fileCheckInterval = 5 * time.Second  // how stale a jwks_file may be before it is re-stat'ed
	urlMinInterval    = 30 * time.Second // unknown-kid refetches of jwks_url, at most this often
	fetchTimeout      = 10 * time.Second
)

// verifyKey is a public key from a JWKS with the algorithm it is pinned to
// ("" when the JWK names none).
type verifyKey struct {
	alg string
	pub crypto.PublicKey
}

// forAlg returns the key if it can verify alg. This is where algorithm
// confusion dies: an RS256 kid never yields a key for HS256 (HS256 never
// consults the JWKS at all), and an ES256 token never gets an RSA key.
func (k verifyKey) forAlg(alg string) (crypto.PublicKey, error) {
	if k.alg != "" && k.alg != alg {
		return nil, fmt.Errorf("%w: key is pinned to %s", errKeyMismatch, k.alg)
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if alg == "RS256" {
			return pub, nil
		}
	case *ecdsa.PublicKey:
		if (alg == "ES256" && pub.Curve == elliptic.P256()) || (alg == "ES384" && pub.Curve == elliptic.P384()) {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", errKeyMismatch, alg)
}

type keyMap map[string]verifyKey

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads an RFC 7517 key set. Keys it cannot use (encryption keys,
// other key types, weak RSA, no kid) are skipped and reported in skipped, so
// one odd key from an issuer does not take every other key down with it.
func parseJWKS(data []byte) (keys keyMap, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("jwks: decode: %w", err)
	}
	keys = keyMap{}
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		vk, err := parseJWK(k)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d] (kid %q): %v", i, k.Kid, err))
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: duplicate kid %q", i, k.Kid))
			continue
		}
		keys[k.Kid] = vk
	}
	if len(keys) == 0 {
		return nil, skipped, errNoUsableKey
	}
	return keys, skipped, nil
}

func parseJWK(k jwk) (verifyKey, error) {
	if k.Kid == "" {
		return verifyKey{}, errors.New("no kid")
	}
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q is not sig", k.Use)
	}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != "RS256" {
			return verifyKey{}, fmt.Errorf("unsupported alg %q for RSA", k.Alg)
		}
		pub, err := parseRSA(k.N, k.E)
		if err != nil {
			return verifyKey{}, err
		}
		return verifyKey{alg: k.Alg, pub: pub}, nil
	case "EC":
		var curve elliptic.Curve
		var alg string
		switch k.Crv {
		case "P-256":
			curve, alg = elliptic.P256(), "ES256"
		case "P-384":
			curve, alg = elliptic.P384(), "ES384"
		default:
			return verifyKey{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		if k.Alg != "" && k.Alg != alg {
			return verifyKey{}, fmt.Errorf("alg %q does not match curve %s", k.Alg, k.Crv)
		}
		pub, err := parseEC(curve, k.X, k.Y)
		if err != nil {
			return verifyKey{}, err
		}
		return verifyKey{alg: k.Alg, pub: pub}, nil
	default:
		return verifyKey{}, fmt.Errorf("unsupported kty %q", k.Kty)
	}
}

// b64 decodes base64url, tolerating the padding some issuers emit.
func b64(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", field)
	}
	return b, nil
}

func parseRSA(n64, e64 string) (*rsa.PublicKey, error) {
	nb, err := b64("n", n64)
	if err != nil {
		return nil, err
	}
	eb, err := b64("e", e64)
	if err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("rsa modulus of %d bits (want %d–%d)", bits, minRSABits, maxRSABits)
	}
	if len(eb) > 4 {
		return nil, errors.New("rsa exponent too large")
	}
	var e int
	for _, b := range eb {
		e = e<<8 | int(b)
	}
	if e < 3 || e%2 == 0 {
		return nil, fmt.Errorf("rsa exponent %d is invalid", e)
	}
	return &rsa.PublicKey{N: n, E: e}, nil
}

func parseEC(curve elliptic.Curve, x64, y64 string) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64("x", x64)
	if err != nil {
		return nil, err
	}
	y, err := b64("y", y64)
	if err != nil {
		return nil, err
	}
	if len(x) > size || len(y) > size {
		return nil, fmt.Errorf("ec coordinate longer than %d bytes", size)
	}
	// Uncompressed SEC 1 point, coordinates left-padded to the field size;
	// the parser rejects points off the curve (invalid-curve attacks).
	pt := make([]byte, 1+2*size)
	pt[0] = 4
	copy(pt[1+size-len(x):1+size], x)
	copy(pt[1+2*size-len(y):], y)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
	if err != nil {
		return nil, fmt.Errorf("ec point: %w", err)
	}
	return pub, nil
}

// keySource is somewhere JWKS keys come from. lookup with refresh may reload
// the source (subject to its own rate limits) before answering.
type keySource interface {
	lookup(kid string, refresh bool) (verifyKey, bool)
}

// fileSource serves a jwks_file, re-reading it when its identity, size or
// mtime change: checked lazily every fileCheckInterval and whenever a kid is
// unknown (a stat is cheap), so rotation needs no goroutine and no restart.
type fileSource struct {
	path       string
	log        *slog.Logger
	now        func() time.Time
	checkEvery time.Duration

	mu        sync.Mutex
	keys      keyMap
	seen      os.FileInfo // last version loaded or found broken
	lastCheck time.Time
}

func newFileSource(path string, log *slog.Logger) (*fileSource, error) {
	f := &fileSource{path: path, log: log, now: time.Now, checkEvery: fileCheckInterval}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	return f, nil
}

// reloadLocked re-reads the file if it changed since the last attempt. On
// failure the previous keys stay in force.
func (f *fileSource) reloadLocked() error {
	f.lastCheck = f.now()
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("jwks_file: %w", err)
	}
	if f.seen != nil && os.SameFile(fi, f.seen) && fi.Size() == f.seen.Size() && fi.ModTime().Equal(f.seen.ModTime()) {
		return nil
	}
	f.seen = fi
	data, err := readLimited(f.path)
	if err != nil {
		return fmt.Errorf("jwks_file: %w", err)
	}
	keys, skipped, err := parseJWKS(data)
	for _, s := range skipped {
		f.log.Warn("jwks_file: key skipped", "path", f.path, "reason", s)
	}
	if err != nil {
		return fmt.Errorf("jwks_file %s: %w", f.path, err)
	}
	if f.keys != nil {
		f.log.Info("jwks_file reloaded", "path", f.path, "keys", len(keys))
	}
	f.keys = keys
	return nil
}

func readLimited(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}

func (f *fileSource) lookup(kid string, refresh bool) (verifyKey, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, known := f.keys[kid]
	if (refresh && !known) || f.now().Sub(f.lastCheck) >= f.checkEvery {
		if err := f.reloadLocked(); err != nil {
			f.log.Warn("jwks_file reload failed; keeping previous keys", "err", err)
		}
	}
	k, ok := f.keys[kid]
	return k, ok
}

// urlSource serves a jwks_url: fetched at start, refreshed by run every
// interval, and refetched on an unknown kid at most once per minInterval so
// garbage tokens cannot turn the ingress into a flood against the issuer.
type urlSource struct {
	url         string
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time
	minInterval time.Duration
	base        context.Context // ends on Authenticator.Close

	mu   sync.RWMutex
	keys keyMap

	fetchMu     sync.Mutex // one fetch at a time; waiters then see the new keys
	lastAttempt time.Time
	fetches     atomic.Int64 // for tests and debugging
}

func (u *urlSource) lookup(kid string, refresh bool) (verifyKey, bool) {
	if k, ok := u.get(kid); ok || !refresh {
		return k, ok
	}
	u.fetchMu.Lock()
	if u.now().Sub(u.lastAttempt) >= u.minInterval {
		if err := u.fetchLocked(); err != nil {
			u.log.Warn("jwks_url refresh on unknown kid failed", "url", u.url, "err", err)
		}
	}
	u.fetchMu.Unlock()
	return u.get(kid)
}

func (u *urlSource) get(kid string) (verifyKey, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	k, ok := u.keys[kid]
	return k, ok
}

// refresh fetches now regardless of minInterval (start and the ticker).
func (u *urlSource) refresh() error {
	u.fetchMu.Lock()
	defer u.fetchMu.Unlock()
	return u.fetchLocked()
}

func (u *urlSource) fetchLocked() error {
	u.lastAttempt = u.now()
	u.fetches.Add(1)
	ctx, cancel := context.WithTimeout(u.base, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return fmt.Errorf("jwks_url: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks_url: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks_url: fetch: status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("jwks_url: read: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return fmt.Errorf("jwks_url: larger than %d bytes", maxJWKSBytes)
	}
	keys, skipped, err := parseJWKS(data)
	for _, s := range skipped {
		u.log.Warn("jwks_url: key skipped", "url", u.url, "reason", s)
	}
	if err != nil {
		return fmt.Errorf("jwks_url %s: %w", u.url, err)
	}
	u.mu.Lock()
	u.keys = keys
	u.mu.Unlock()
	u.log.Debug("jwks_url fetched", "url", u.url, "keys", len(keys))
	return nil
}

// run refreshes every interval until ctx ends; failures keep the old keys.
func (u *urlSource) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := u.refresh(); err != nil && ctx.Err() == nil {
				u.log.Warn("jwks_url periodic refresh failed; keeping previous keys", "err", err)
			}
		}
	}
}
