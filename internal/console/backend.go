package console

import (
	"context"
	"net/http"
	"time"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Backend is what the console reads of the ingress that mounts it. The
// ingress implements it with its own functions (stats, the jobs it
// accepted, the dead-letter stream, the workers bucket), so the console
// computes nothing the API does not; every action and every job read goes
// through API with the session's credential, under the API's own checks.
type Backend interface {
	// API is the ingress's HTTP API, called in process.
	API() http.Handler
	// Models are the configured models with their live queue figures.
	Models(ctx context.Context) []ModelStats
	// Workers are the live workers' heartbeats.
	Workers(ctx context.Context) ([]Worker, error)
	// DeadLetters are the tenant's dead letters of model ("" every model),
	// newest first, at most limit, each with its job's record now.
	DeadLetters(ctx context.Context, tenant, model string, limit int) ([]DeadLetter, error)
	// RecentJobs are the tenant's jobs this ingress accepted lately that
	// match f, newest first, and whether more match past f.Limit.
	RecentJobs(ctx context.Context, tenant string, f JobFilter) ([]*results.Record, bool, error)
	// TraceID is the W3C trace id the job was submitted under, "" if none.
	TraceID(ctx context.Context, rec *results.Record) string
}

// ModelStats are one model's live figures as GET /v1/models shows them.
type ModelStats struct {
	Name, Kind string
	Test       bool // a built-in test model
	MaxBatch   int
	Known      bool // false: the stats could not be read (JetStream down)
	Queued     uint64
	Pending    uint64 // batches waiting for a worker
	InFlight   uint64 // batches workers hold
	Workers    int
	// RecentBatchSizes are the model's last batches as this ingress saw them.
	RecentBatchSizes []int
}

// Worker is a worker's heartbeat in the workers bucket.
type Worker struct {
	Model       string    `json:"model"`
	Worker      string    `json:"worker"`
	Device      string    `json:"device"`
	Ready       bool      `json:"ready"`
	Capacity    int       `json:"capacity"`
	MaxInflight int       `json:"max_inflight"`
	InFlight    int       `json:"in_flight"`
	Batches     uint64    `json:"batches"`
	Time        time.Time `json:"time"`
	// Generation is a generate model's figures (agent.Generation).
	Generation *Generation `json:"generation,omitempty"`
}

// Generation are a generate model's figures in a heartbeat: the sequences
// a continuously batching worker holds and has free, and its token rates.
type Generation struct {
	Continuous      bool    `json:"continuous"`
	RunningSeqs     int     `json:"running_seqs"`
	FreeSlots       int     `json:"free_slots"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	TTFTMillis      float64 `json:"ttft_ms"`
	InterTokenMs    float64 `json:"inter_token_ms"`
}

// DeadLetter is a dead-letter record with its job's record as it is now
// (nil when the record is gone): a replayed job is no longer failed.
type DeadLetter struct {
	jetstream.DeadLetter
	Record *results.Record
}

// Code is the error code the job failed with, "" if it is not failed now.
func (d DeadLetter) Code() string {
	if d.Record == nil || d.Record.Status != results.Failed || d.Record.Error == nil {
		return ""
	}
	return d.Record.Error.Code
}

// JobFilter selects recent jobs.
type JobFilter struct {
	Model  string         // "" every model
	Status results.Status // "" every status
	Since  time.Time      // zero: no lower bound
	Offset int
	Limit  int
}
