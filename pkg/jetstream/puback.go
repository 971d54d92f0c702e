package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/jsonscan"
)

// PublishMsg publishes msg to a stream and waits for its PubAck, as
// nats.go's JetStream.PublishMsg does, with the same errors: a "no
// responders" answer is tried again twice, 250 ms apart, while a stream
// elects its leader; a refusal is the server's *natsjs.APIError, so
// errors.Is matches natsjs's errors (natsjs.ErrKeyExists for a lost
// compare-and-set). It reads the usual PubAck by hand: encoding/json's
// decode of it cost as much CPU as the request itself, on each of a job's
// two stream writes.
func PublishMsg(ctx context.Context, js natsjs.JetStream, msg *nats.Msg) (*natsjs.PubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	nc := js.Conn()
	resp, err := nc.RequestMsgWithContext(ctx, msg)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < natsjs.DefaultPubRetryAttempts; try++ {
		select {
		case <-ctx.Done():
		case <-time.After(natsjs.DefaultPubRetryWait):
		}
		resp, err = nc.RequestMsgWithContext(ctx, msg)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, natsjs.ErrNoStreamResponse
	}
	if err != nil {
		return nil, err
	}
	if ack, ok := decodePubAck(resp.Data); ok {
		return &ack, nil
	}
	var r struct {
		Error *natsjs.APIError `json:"error"`
		natsjs.PubAck
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, natsjs.ErrInvalidJSAck
	}
	if r.Error != nil {
		return nil, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Stream == "" {
		return nil, natsjs.ErrInvalidJSAck
	}
	return &r.PubAck, nil
}

// decodePubAck reads a PubAck made only of the members natsjs.PubAck has,
// with plain strings and a plain unsigned sequence. Anything else (an
// error, another member, an escape) answers false and goes to
// encoding/json, so the result never differs from its (FuzzDecodePubAck).
func decodePubAck(data []byte) (ack natsjs.PubAck, ok bool) {
	s := jsonscan.Scanner{B: data}
	s.Space()
	if !s.Take('{') {
		return ack, false
	}
	s.Space()
	if s.Peek() == '}' {
		return ack, false // no stream: invalid, said by the slow way
	}
	for {
		key, ok := s.Plain()
		if !ok {
			return ack, false
		}
		s.Space()
		if !s.Take(':') {
			return ack, false
		}
		s.Space()
		switch string(key) { // compared without a copy
		case "stream":
			ack.Stream, ok = plainString(&s)
		case "domain":
			ack.Domain, ok = plainString(&s)
		case "val":
			ack.Value, ok = plainString(&s)
		case "seq":
			ack.Sequence, ok = plainUint(&s)
		case "duplicate":
			if ack.Duplicate = s.Lit("true"); !ack.Duplicate {
				ok = s.Lit("false")
			}
		default:
			return ack, false
		}
		if !ok {
			return ack, false
		}
		s.Space()
		if s.Take(',') {
			s.Space()
			continue
		}
		return ack, s.Take('}') && s.End() && ack.Stream != ""
	}
}

func plainString(s *jsonscan.Scanner) (string, bool) {
	b, ok := s.Plain()
	return string(b), ok
}

// plainUint reads digits without a leading zero, a sign, a fraction or an
// exponent, that fit a uint64.
func plainUint(s *jsonscan.Scanner) (uint64, bool) {
	start := s.I
	var n uint64
	for s.I < len(s.B) && jsonscan.IsDigit(s.B[s.I]) {
		d := uint64(s.B[s.I] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		s.I++
	}
	switch c := s.Peek(); {
	case s.I == start, s.I-start > 1 && s.B[start] == '0', c == '.', c == 'e', c == 'E':
		return 0, false
	}
	return n, true
}
