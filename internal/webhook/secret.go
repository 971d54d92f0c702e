// Package webhook delivers signed webhooks: a job's completion to its
// callback URL (and, reusably, any JSON event to a tenant's URL). Sending
// is a message on the webhooks stream (Enqueue); a Deliverer consumes it,
// POSTs it signed per the Standard Webhooks specification with a bounded
// timeout, retries with backoff, and records the outcome in the job record.
// Callback URLs are checked against a Policy at submission and again when
// the connection is dialled, so a tenant cannot aim the broker at internal
// services.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a symmetric signing secret in its serialized form.
const SecretPrefix = "whsec_"

// The spec's bounds on a symmetric secret: 24 to 64 bytes.
const (
	minSecret = 24
	maxSecret = 64
)

// Secret is an HMAC-SHA256 signing key.
type Secret []byte

// ErrBadSecret is ParseSecret's error.
var ErrBadSecret = errors.New("webhook secret must be whsec_ followed by the base64 of 24 to 64 random bytes")

// ParseSecret reads a secret in its whsec_<base64> form.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSecret, err)
	}
	if len(key) < minSecret || len(key) > maxSecret {
		return nil, fmt.Errorf("%w: it has %d bytes", ErrBadSecret, len(key))
	}
	return key, nil
}

// LoadSecret is the secret given inline or, when file is set, read from the
// file (a trailing newline trimmed). Both empty is no secret (nil, nil).
func LoadSecret(inline, file string) (Secret, error) {
	if file != "" {
		if inline != "" {
			return nil, errors.New("webhook secret: set secret or secret_file, not both")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("webhook secret file: %w", err)
		}
		inline = string(b)
	}
	if inline == "" {
		return nil, nil
	}
	return ParseSecret(inline)
}

// Signature is the webhook-signature header value for a message: "v1,"
// and the base64 HMAC-SHA256 of "id.timestamp.body" under each secret,
// space-separated (several during a rotation).
func Signature(id string, ts time.Time, body []byte, secrets ...Secret) string {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		mac := hmac.New(sha256.New, s)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(stamp))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}
