package resultsvc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
)

// TokensConsumer is resultsvc's durable consumer of INFERQ_TOKENS, used when
// the results store keeps token logs (Redis).
const TokensConsumer = "resultsvc-tokens"

// pullTokens opens resultsvc's consumer of INFERQ_TOKENS.
func (s *Service) pullTokens(ctx context.Context) (natsjs.MessagesContext, error) {
	cons, err := s.opt.JS.CreateOrUpdateConsumer(ctx, s.opt.Topology.TokensStream(), natsjs.ConsumerConfig{
		Durable:       TokensConsumer,
		Description:   "inferq resultsvc: token chunks into the results store's token logs",
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       s.opt.Topology.AckWait,
		MaxAckPending: 8192,
		Replicas:      s.opt.Topology.Replicas,
		MemoryStorage: s.opt.Topology.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("resultsvc: tokens consumer: %w", err)
	}
	iter, err := cons.Messages(natsjs.PullMaxMessages(1024))
	if err != nil {
		return nil, fmt.Errorf("resultsvc: pull tokens: %w", err)
	}
	return iter, nil
}

// copyTokens appends every token chunk to its job's token log, in sequence,
// until iter stops. Chunks of one job are handled by one goroutine (by a
// hash of the subject), so they are applied in stream order; a chunk that
// arrives before its predecessor is refused by the log (a gap) and comes
// back after a delay.
func (s *Service) copyTokens(ctx context.Context, log results.TokenLog, iter natsjs.MessagesContext) {
	lanes := make([]chan natsjs.Msg, s.opt.Concurrency)
	var wg sync.WaitGroup
	for k := range lanes {
		lanes[k] = make(chan natsjs.Msg, 64)
		wg.Go(func() {
			for msg := range lanes[k] {
				s.applyToken(context.WithoutCancel(ctx), log, msg)
			}
		})
	}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return
			}
			s.opt.Log.Warn("token pull failed", "err", err)
			continue
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(msg.Subject()))
		lanes[h.Sum32()%uint32(len(lanes))] <- msg
	}
}

// applyToken appends one chunk and acks it once stored (or known).
func (s *Service) applyToken(ctx context.Context, log results.TokenLog, msg natsjs.Msg) {
	t, err := lifecycle.DecodeTokenChunk(msg.Data())
	if err != nil || t.Job == "" || t.Seq == 0 {
		s.opt.Log.Error("undecodable token chunk dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	attempt := lifecycle.TokenAttempt(msg.Headers())
	if attempt == 0 {
		attempt = 1 // a chunk from before attempts were sent
	}
	_, err = log.AppendToken(ctx, t.Job, attempt, t)
	switch {
	case errors.Is(err, results.ErrTokenGap):
		// Its predecessor is still on its way (or being retried).
		_ = msg.NakWithDelay(100 * time.Millisecond)
	case err != nil:
		s.opt.Log.Warn("token chunk not stored; will retry", "job", t.Job, "seq", t.Seq, "err", err)
		_ = msg.NakWithDelay(time.Second)
	default:
		_ = msg.Ack()
	}
}
