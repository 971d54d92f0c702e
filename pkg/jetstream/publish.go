package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/proto"
)

// HeaderCarrier lets OpenTelemetry propagators read and write W3C trace
// context in NATS headers.
type HeaderCarrier nats.Header

func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes ctx's trace context into h.
func InjectTrace(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(h))
}

// ExtractTrace returns ctx carrying the trace context found in h.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, HeaderCarrier(h))
}

// NewMsg marshals m into a message for subject, with ctx's trace context and,
// when msgID is not empty, a Nats-Msg-Id for JetStream's deduplication.
func NewMsg(ctx context.Context, subject string, m proto.Message, msgID string) (*nats.Msg, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T for %s: %w", m, subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	InjectTrace(ctx, msg.Header)
	return msg, nil
}

// Publish publishes m to a stream and waits for the PubAck.
func Publish(ctx context.Context, js natsjs.JetStream, subject string, m proto.Message, msgID string) (*natsjs.PubAck, error) {
	msg, err := NewMsg(ctx, subject, m, msgID)
	if err != nil {
		return nil, err
	}
	ack, err := PublishMsg(ctx, js, msg)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return ack, nil
}

// Connect dials NATS with the options every inferq service wants: a name,
// endless reconnects, and optional credentials.
func Connect(url, name, credsFile string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	if credsFile != "" {
		opts = append(opts, nats.UserCredentials(credsFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	return nc, nil
}
