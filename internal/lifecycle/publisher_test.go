package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// publisherStream starts a real embedded NATS with a stream on "pub.>".
func publisherStream(t *testing.T) (*testutil.NATS, natsjs.Stream) {
	t.Helper()
	n := testutil.StartNATS(t)
	s, err := n.JS.CreateStream(testutil.Context(t), natsjs.StreamConfig{Name: "PUB", Subjects: []string{"pub.>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return n, s
}

func TestPublisherWaitReturnsOnceEverySendIsStored(t *testing.T) {
	n, s := publisherStream(t)
	ctx := testutil.Context(t)
	p := lifecycle.NewPublisher(n.JS)
	const count = 500
	for i := range count {
		p.Send(&nats.Msg{Subject: fmt.Sprintf("pub.%d", i%7), Data: []byte(fmt.Sprint(i))})
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	// Wait returned: every message is in the stream already, in send order.
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != count {
		t.Fatalf("stream holds %d messages after Wait, want %d", info.State.Msgs, count)
	}
	for _, seq := range []uint64{1, 2, count / 2, count} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint(seq - 1); string(m.Data) != want {
			t.Errorf("seq %d holds %q, want %q (send order)", seq, m.Data, want)
		}
	}
	// The publisher is reusable after a clean Wait.
	p.Send(&nats.Msg{Subject: "pub.again", Data: []byte("x")})
	if err := p.Wait(ctx); err != nil || p.Err() != nil {
		t.Fatalf("second wait: %v, Err %v", err, p.Err())
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("wait with nothing pending: %v", err)
	}
}

func TestPublisherUncapturedSubjectFailsWait(t *testing.T) {
	n, s := publisherStream(t)
	ctx := testutil.Context(t)
	p := lifecycle.NewPublisher(n.JS)
	p.Send(&nats.Msg{Subject: "pub.a", Data: []byte("1")})
	p.Send(&nats.Msg{Subject: "nostream.x", Data: []byte("2")}) // no stream captures it
	err := p.Wait(ctx)
	if err == nil {
		t.Fatal("Wait returned nil for a message no stream stored")
	}
	if !strings.Contains(err.Error(), "nostream.x") {
		t.Errorf("error %q does not name the subject", err)
	}
	if !errors.Is(p.Err(), err) {
		t.Errorf("Err() = %v, want Wait's %v: the publisher stops at its first error", p.Err(), err)
	}
	// Stopped: later sends are dropped and Wait keeps failing.
	p.Send(&nats.Msg{Subject: "pub.after", Data: []byte("3")})
	if err := p.Wait(ctx); err == nil {
		t.Error("Wait after a failure returned nil")
	}
	if _, err := s.GetLastMsgForSubject(ctx, "pub.after"); !errors.Is(err, natsjs.ErrMsgNotFound) {
		t.Errorf("a send after the failure was published (err %v)", err)
	}
}

func TestPublisherFailStopsIt(t *testing.T) {
	n, s := publisherStream(t)
	ctx := testutil.Context(t)
	p := lifecycle.NewPublisher(n.JS)
	cause := errors.New("dead letter not built")
	p.Fail(cause)
	p.Fail(errors.New("second")) // the first error wins
	p.Send(&nats.Msg{Subject: "pub.dropped", Data: []byte("x")})
	if err := p.Token(ctx, jetstream.DefaultTopology(), "t", 1, lifecycle.TokenChunk{Job: "j", Seq: 1}); !errors.Is(err, cause) {
		t.Errorf("Token = %v, want %v", err, cause)
	}
	if err := p.Wait(ctx); !errors.Is(err, cause) {
		t.Fatalf("Wait = %v, want %v", err, cause)
	}
	if info, _ := s.Info(ctx); info.State.Msgs != 0 {
		t.Errorf("stream holds %d messages from a stopped publisher", info.State.Msgs)
	}
}

func TestPublisherWaitGivesUpWithContext(t *testing.T) {
	n, _ := publisherStream(t)
	p := lifecycle.NewPublisher(n.JS)
	p.Send(&nats.Msg{Subject: "pub.a", Data: []byte("1")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either the ack already arrived or the cancelled context ends the wait.
	if err := p.Wait(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want nil or context.Canceled", err)
	}
}
