package lifecycle

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// DeadLetterMsg is the dead-letter record of job j of batch b, which failed
// for good after deliveries deliveries of its batch, as a message for its
// model's dead subject. Its id is the same whoever writes it (a worker, or
// resultsvc for a batch no worker finished), so the record is kept once.
func DeadLetterMsg(t jetstream.Topology, b *inferqpb.Batch, j *inferqpb.BatchJob, deliveries uint64, why string, at time.Time) (*nats.Msg, error) {
	rec, err := json.Marshal(jetstream.DeadLetter{Job: j.Id, Tenant: j.Tenant, Model: b.Model, JobsSeq: j.JobsSeq,
		Attempt: j.Attempt, Deliveries: deliveries, Batch: b.Id, Error: why, Time: at.UTC()})
	if err != nil {
		return nil, fmt.Errorf("dead letter for %s: %w", j.Id, err)
	}
	msg := &nats.Msg{Subject: t.DeadSubject(b.Model), Data: rec, Header: nats.Header{}}
	msg.Header.Set(nats.MsgIdHdr, MsgID(j.Id, j.Attempt, KindDead))
	return msg, nil
}

// DecodeDeadLetter reads a dead-letter record.
func DecodeDeadLetter(data []byte) (jetstream.DeadLetter, error) {
	var dl jetstream.DeadLetter
	if err := json.Unmarshal(data, &dl); err != nil {
		return dl, fmt.Errorf("dead letter: %w", err)
	}
	return dl, nil
}
