package prometheus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

// This file is `promtool test rules` done with the same engine from Go: the
// series of each case are loaded into Prometheus's test storage, every rule
// of alerts.yml is evaluated once a minute from time 0 as the rule manager
// would, and the alerts firing at the end are compared with the case's.

// scrape is a label set that names a scrape target: the rules must work
// whatever the scrape setup calls its jobs.
type scrape struct {
	name string
	// target returns the target labels of a component (inferq's service
	// name, "nats-exporter" or "redis-exporter") for its n-th replica.
	target func(component string, n int) map[string]string
}

var scrapes = []scrape{
	{"compose", func(c string, n int) map[string]string {
		job := map[string]string{"nats-exporter": "nats", "redis-exporter": "redis"}[c]
		if job == "" {
			job = "inferq-" + c
		}
		return map[string]string{"job": job, "instance": fmt.Sprintf("%s-%d:9100", c, n)}
	}},
	{"kubernetes", func(c string, n int) map[string]string {
		return map[string]string{"job": "inferq/" + c, "namespace": "inferq", "pod": fmt.Sprintf("%s-7d9f-%d", c, n),
			"instance": fmt.Sprintf("10.0.3.%d:9100", 10+n), "endpoint": "metrics"}
	}},
}

// ruleCase is one evaluation: series in promqltest's load notation (one
// sample a minute from time 0; {{T "c" n}} is replaced by the target labels of component c, replica n), the time of
// the evaluation, and the label sets of the alert that must fire then
// (besides alertname and severity, and without target labels unless
// withTarget). Nil want: the alert must not fire.
type ruleCase struct {
	name   string
	alert  string
	series string
	at     time.Duration
	want   []map[string]string
	// withTarget: the alert keeps the target's labels; want lists the
	// component and replica as "target": "c n".
	withTarget bool
}

// healthy is a deployment with no trouble: three NATS nodes, Redis up, live
// workers, jobs flowing, a few 4xx and 5xx, old dead letters and nothing
// new. No alert may fire on it.
const healthy = `
up{ {{T "ingress" 0}} } 1x120
up{ {{T "batcher" 0}} } 1x120
up{ {{T "nats-exporter" 0}} } 1x120
up{ {{T "redis-exporter" 0}} } 1x120
inferq_build_info{ {{T "ingress" 0}}, version="v1", goversion="go1.26"} 1x120
inferq_build_info{ {{T "batcher" 0}}, version="v1", goversion="go1.26"} 1x120
process_start_time_seconds{ {{T "ingress" 0}} } 0x120
process_start_time_seconds{ {{T "batcher" 0}} } 0x120
inferq_dependency_up{ {{T "ingress" 0}}, dependency="nats"} 1x120
inferq_dependency_up{ {{T "ingress" 0}}, dependency="store"} 1x120
redis_up{ {{T "redis-exporter" 0}} } 1x120
jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 6x120
jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NB", server_name="nats-1"} 6x120
jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NC", server_name="nats-2"} 6x120
jetstream_server_total_message_bytes{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 1e9x120
jetstream_server_max_storage{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 1e10x120
inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 2x120
inferq_workers_live{ {{T "ingress" 0}}, model="simple"} 2x120
jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 1x120
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 1x120
jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 3x120
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 1x120
inferq_jobs_submitted_total{ {{T "ingress" 0}}, model="simple"} 0+600x120
inferq_jobs_finished_total{ {{T "batcher" 0}}, model="simple", status="succeeded"} 0+600x120
inferq_jobs_rejected_total{ {{T "ingress" 0}}, model="simple", reason="invalid"} 0+60x120
inferq_jobs_rejected_total{ {{T "ingress" 0}}, model="simple", reason="queue_full"} 0x120
inferq_jobs_dropped_total{ {{T "batcher" 0}}, model="simple", reason="expired"} 0+1x120
inferq_dead_letters_total{ {{T "batcher" 0}}, model="simple", reason="max_deliver"} 3x120
inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202"} 0+600x120
inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/jobs/:id", code="503"} 0+6x120
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202", le="0.1"} 0+594x120
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202", le="1"} 0+600x120
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202", le="+Inf"} 0+600x120
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/jobs/:id", code="200", le="1"} 0x120
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/jobs/:id", code="200", le="+Inf"} 0+600x120
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="simple", status="succeeded", le="1"} 0+590x120
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="simple", status="succeeded", le="10"} 0+600x120
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="simple", status="succeeded", le="+Inf"} 0+600x120
`

var ruleCases = []ruleCase{
	// Queue age.
	{name: "oldest job past a third of the timeout", alert: "InferqOldestQueuedJobOld",
		series: `inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 25x10
inferq_queue_oldest_job_age_seconds{ {{T "ingress" 1}}, model="simple"} 24x10`,
		at: 5 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "oldest job young", alert: "InferqOldestQueuedJobOld",
		series: `inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 15x10`, at: 5 * time.Minute},
	{name: "oldest job old for less than for", alert: "InferqOldestQueuedJobOld",
		series: `inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 2x4 25x2`, at: 6 * time.Minute},
	{name: "oldest job about to expire", alert: "InferqOldestQueuedJobStuck",
		series: `inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 50x10`,
		at:     5 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "oldest job old, not about to expire", alert: "InferqOldestQueuedJobStuck",
		series: `inferq_queue_oldest_job_age_seconds{ {{T "ingress" 0}}, model="simple"} 30x10`, at: 5 * time.Minute},

	// Workers.
	{name: "batches pending, no worker", alert: "InferqNoLiveWorkers",
		series: `jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 1x10
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 0x10
inferq_workers_live{ {{T "ingress" 0}}, model="simple"} 0x10`,
		at: 7 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "batches pending, a worker live", alert: "InferqNoLiveWorkers",
		series: `jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 1x10
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_BATCHES", consumer_name="workers-simple", is_consumer_leader="true"} 1x10
inferq_workers_live{ {{T "ingress" 0}}, model="simple"} 1x10`, at: 7 * time.Minute},

	// Expired jobs.
	{name: "5% of jobs expire", alert: "InferqJobsExpiring",
		series: `inferq_jobs_submitted_total{ {{T "ingress" 0}}, model="simple"} 0+100x30
inferq_jobs_dropped_total{ {{T "batcher" 0}}, model="simple", reason="expired"} 0+5x30`,
		at: 20 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "expiries under 1%", alert: "InferqJobsExpiring",
		series: `inferq_jobs_submitted_total{ {{T "ingress" 0}}, model="simple"} 0+1000x30
inferq_jobs_dropped_total{ {{T "batcher" 0}}, model="simple", reason="expired"} 0+5x30
inferq_jobs_dropped_total{ {{T "batcher" 0}}, model="simple", reason="cancelled"} 0+500x30`, at: 20 * time.Minute},

	// Latency.
	{name: "job p99 over 30 s", alert: "InferqJobLatencyHigh",
		series: `inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="10"} 0+90x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="60"} 0+100x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="+Inf"} 0+100x40`,
		at: 30 * time.Minute, want: []map[string]string{{"model": "llm"}}},
	{name: "job p99 under 30 s", alert: "InferqJobLatencyHigh",
		series: `inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="10"} 0+100x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="60"} 0+100x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="succeeded", le="+Inf"} 0+100x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="failed", le="10"} 0x40
inferq_job_duration_seconds_bucket{ {{T "batcher" 0}}, model="llm", status="failed", le="+Inf"} 0+100x40`, at: 30 * time.Minute},
	{name: "submit p99 over 500 ms", alert: "InferqSubmitLatencyHigh",
		series: `inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/versions/:version/jobs", code="202", le="0.1"} 0+90x30
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/versions/:version/jobs", code="202", le="1"} 0+100x30
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/versions/:version/jobs", code="202", le="+Inf"} 0+100x30`,
		at: 25 * time.Minute, want: []map[string]string{{}}},
	{name: "long polls are slow by design", alert: "InferqSubmitLatencyHigh",
		series: `inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202", le="0.1"} 0+100x30
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202", le="+Inf"} 0+100x30
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/jobs/:id", code="200", le="1"} 0x30
inferq_http_request_duration_seconds_bucket{ {{T "ingress" 0}}, route="/v1/jobs/:id", code="200", le="+Inf"} 0+100x30`, at: 25 * time.Minute},

	// Ingress errors and refusals.
	{name: "10% 5xx", alert: "InferqHTTPErrorsHigh",
		series: `inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202"} 0+90x20
inferq_http_request_duration_seconds_count{ {{T "ingress" 1}}, route="/v1/models/:model/jobs", code="503"} 0+10x20`,
		at: 15 * time.Minute, want: []map[string]string{{}}},
	{name: "4xx are not errors of ours", alert: "InferqHTTPErrorsHigh",
		series: `inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="202"} 0+50x20
inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="429"} 0+50x20
inferq_http_request_duration_seconds_count{ {{T "ingress" 0}}, route="/v1/models/:model/jobs", code="500"} 0+1x20`, at: 15 * time.Minute},
	{name: "queue full refuses 20%", alert: "InferqSubmissionsRejected",
		series: `inferq_jobs_submitted_total{ {{T "ingress" 0}}, model="simple"} 0+80x30
inferq_jobs_rejected_total{ {{T "ingress" 0}}, model="simple", reason="queue_full"} 0+20x30`,
		at: 25 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "every submission refused, none accepted", alert: "InferqSubmissionsRejected",
		series: `inferq_jobs_rejected_total{ {{T "ingress" 0}}, model="simple", reason="store"} 0+20x30`,
		at:     25 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "invalid requests are the caller's", alert: "InferqSubmissionsRejected",
		series: `inferq_jobs_submitted_total{ {{T "ingress" 0}}, model="simple"} 0+50x30
inferq_jobs_rejected_total{ {{T "ingress" 0}}, model="simple", reason="invalid"} 0+50x30`, at: 25 * time.Minute},

	// Dead letters: the first letter of a new pod, whose counter is created
	// at 1, fires; so does a counter initialised at zero; a restart of
	// Prometheus itself (old process, no history) does not.
	{name: "first dead letter of a new pod", alert: "InferqDeadLettersGrowing",
		series: `up{ {{T "worker" 0}} } 1x30
process_start_time_seconds{ {{T "worker" 0}} } 0x30
up{ {{T "worker" 1}} } _x20 1x10
process_start_time_seconds{ {{T "worker" 1}} } _x20 1200x10
inferq_dead_letters_total{ {{T "worker" 1}}, model="simple", reason="max_deliver"} _x22 1x8`,
		at: 25 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "first dead letter of an old pod", alert: "InferqDeadLettersGrowing",
		series: `up{ {{T "worker" 0}} } 1x60
process_start_time_seconds{ {{T "worker" 0}} } 0x60
inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} _x40 1x20`,
		at: 45 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "counter initialised at zero", alert: "InferqDeadLettersGrowing",
		series: `up{ {{T "worker" 0}} } 1x60
process_start_time_seconds{ {{T "worker" 0}} } 0x60
inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} 0x40 1x20`,
		at: 45 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "old dead letters, Prometheus restarted", alert: "InferqDeadLettersGrowing",
		series: `up{ {{T "worker" 0}} } _x40 1x20
process_start_time_seconds{ {{T "worker" 0}} } _x40 0x20
inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} _x40 7x20`, at: 45 * time.Minute},
	{name: "no new dead letter in 15m", alert: "InferqDeadLettersGrowing",
		series: `up{ {{T "worker" 0}} } 1x60
process_start_time_seconds{ {{T "worker" 0}} } 0x60
inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} 0x10 4x50`, at: 45 * time.Minute},
	{name: "10% dead-lettered", alert: "InferqDeadLetterRatioHigh",
		series: `inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} 0+10x30
inferq_jobs_finished_total{ {{T "resultsvc" 0}}, model="simple", status="succeeded"} 0+90x30
inferq_jobs_finished_total{ {{T "resultsvc" 0}}, model="simple", status="failed"} 0+10x30`,
		at: 25 * time.Minute, want: []map[string]string{{"model": "simple"}}},
	{name: "1% dead-lettered", alert: "InferqDeadLetterRatioHigh",
		series: `inferq_dead_letters_total{ {{T "worker" 0}}, model="simple", reason="permanent"} 0+1x30
inferq_jobs_finished_total{ {{T "resultsvc" 0}}, model="simple", status="succeeded"} 0+99x30`, at: 25 * time.Minute},

	// Dependencies.
	{name: "redis exporter sees Redis down", alert: "InferqRedisUnreachable",
		series: `redis_up{ {{T "redis-exporter" 0}} } 1x5 0x5`,
		at:     9 * time.Minute, want: []map[string]string{{"target": "redis-exporter 0"}}, withTarget: true},
	{name: "ingress store check fails", alert: "InferqRedisUnreachable",
		series: `inferq_dependency_up{ {{T "ingress" 0}}, dependency="store"} 1x5 0x5
inferq_dependency_up{ {{T "ingress" 0}}, dependency="nats"} 1x10`,
		at: 9 * time.Minute, want: []map[string]string{{"target": "ingress 0", "dependency": "store"}}, withTarget: true},
	{name: "Redis back", alert: "InferqRedisUnreachable",
		series: `redis_up{ {{T "redis-exporter" 0}} } 0x5 1x5`, at: 9 * time.Minute},
	{name: "a service lost NATS", alert: "InferqNATSUnreachable",
		series: `inferq_dependency_up{ {{T "batcher" 0}}, dependency="nats"} 1x5 0x5`,
		at:     9 * time.Minute, want: []map[string]string{{"target": "batcher 0", "dependency": "nats"}}, withTarget: true},
	{name: "no NATS node answers", alert: "InferqNATSUnreachable",
		series: `jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 6x5
jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NB", server_name="nats-1"} 6x5`,
		at: 15 * time.Minute, want: []map[string]string{{}}},
	{name: "no NATS exporter deployed", alert: "InferqNATSUnreachable",
		series: `inferq_dependency_up{ {{T "batcher" 0}}, dependency="nats"} 1x10`, at: 9 * time.Minute},
	{name: "a NATS node gone", alert: "InferqNATSClusterDegraded",
		series: `jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 6x15
jetstream_server_total_streams{ {{T "nats-exporter" 1}}, server_id="NB", server_name="nats-1"} 6x15
jetstream_server_total_streams{ {{T "nats-exporter" 2}}, server_id="NC", server_name="nats-2"} 6x3`,
		at: 12 * time.Minute, want: []map[string]string{{"server_name": "nats-2"}}},
	{name: "a NATS node restarted under a new server id and exporter pod", alert: "InferqNATSClusterDegraded",
		series: `jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 6x10
jetstream_server_total_streams{ {{T "nats-exporter" 1}}, server_id="NB", server_name="nats-1"} 6x3
jetstream_server_total_streams{ {{T "nats-exporter" 2}}, server_id="NB2", server_name="nats-1"} _x4 6x6`, at: 9 * time.Minute},
	{name: "JetStream storage 85% full", alert: "InferqJetStreamStorageHigh",
		series: `jetstream_server_total_message_bytes{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 8.5e9x30
jetstream_server_max_storage{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 1e10x30
jetstream_server_total_message_bytes{ {{T "nats-exporter" 0}}, server_id="NB", server_name="nats-1"} 1e9x30
jetstream_server_max_storage{ {{T "nats-exporter" 0}}, server_id="NB", server_name="nats-1"} 1e10x30`,
		at: 20 * time.Minute, want: []map[string]string{{"server_name": "nats-0"}}},
	{name: "JetStream without file storage", alert: "InferqJetStreamStorageHigh",
		series: `jetstream_server_total_message_bytes{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 1e6x30
jetstream_server_max_storage{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 0x30`, at: 20 * time.Minute},
	{name: "Redis at 85% of maxmemory", alert: "InferqResultsStoreNearLimit",
		series: `redis_memory_used_bytes{ {{T "redis-exporter" 0}} } 8.5e8x30
redis_memory_max_bytes{ {{T "redis-exporter" 0}} } 1e9x30`,
		at: 20 * time.Minute, want: []map[string]string{{}}},
	{name: "Redis without maxmemory", alert: "InferqResultsStoreNearLimit",
		series: `redis_memory_used_bytes{ {{T "redis-exporter" 0}} } 8.5e8x30
redis_memory_max_bytes{ {{T "redis-exporter" 0}} } 0x30`, at: 20 * time.Minute},
	{name: "Redis at half its maxmemory", alert: "InferqResultsStoreNearLimit",
		series: `redis_memory_used_bytes{ {{T "redis-exporter" 0}} } 5e8x30
redis_memory_max_bytes{ {{T "redis-exporter" 0}} } 1e9x30`, at: 20 * time.Minute},
	{name: "resultsvc behind", alert: "InferqResultsBacklog",
		series: `jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 5000x10
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 1x10
jetstream_consumer_num_pending{ {{T "nats-exporter" 1}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="false"} 5000x10`,
		at: 9 * time.Minute, want: []map[string]string{{}}},
	{name: "resultsvc keeps up", alert: "InferqResultsBacklog",
		series: `jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 10x10
jetstream_consumer_num_ack_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_EVENTS", consumer_name="resultsvc", is_consumer_leader="true"} 1x10
jetstream_consumer_num_pending{ {{T "nats-exporter" 0}}, stream_name="INFERQ_JOBS", consumer_name="batcher-simple-p0", is_consumer_leader="true"} 5000x10`, at: 9 * time.Minute},
	{name: "an inferq target down", alert: "InferqTargetDown",
		series: `up{ {{T "resultsvc" 0}} } 1x5 0x5
inferq_build_info{ {{T "resultsvc" 0}}, version="v1", goversion="go1.26"} 1x5
up{ {{T "nats-exporter" 0}} } 1x5 0x5
jetstream_server_total_streams{ {{T "nats-exporter" 0}}, server_id="NA", server_name="nats-0"} 6x5`,
		at: 9 * time.Minute, want: []map[string]string{{"target": "resultsvc 0"}, {"target": "nats-exporter 0"}}, withTarget: true},
	{name: "another application's target down", alert: "InferqTargetDown",
		series: `up{job="billing", instance="10.0.9.9:8080"} 1x5 0x5
up{ {{T "resultsvc" 0}} } 1x10
inferq_build_info{ {{T "resultsvc" 0}}, version="v1", goversion="go1.26"} 1x10`, at: 9 * time.Minute},
}

// TestAlertRulesFire runs each case under every scrape setup.
func TestAlertRulesFire(t *testing.T) {
	alerts := loadAlertingRules(t)
	for _, sc := range scrapes {
		for _, c := range ruleCases {
			t.Run(sc.name+"/"+c.alert+"/"+c.name, func(t *testing.T) {
				if _, ok := alerts[c.alert]; !ok {
					t.Fatalf("alerts.yml has no alert %s", c.alert)
				}
				got := firing(t, sc, c.series, c.at)[c.alert]
				var want []string
				for _, w := range c.want {
					lbls := maps.Clone(w)
					if c.withTarget {
						var comp string
						var n int
						if _, err := fmt.Sscanf(w["target"], "%s %d", &comp, &n); err != nil {
							t.Fatalf("want target %q: %v", w["target"], err)
						}
						delete(lbls, "target")
						maps.Copy(lbls, sc.target(comp, n))
					}
					want = append(want, labels.FromMap(lbls).String())
				}
				sort.Strings(want)
				var gotS []string
				for _, l := range got {
					b := labels.NewBuilder(l)
					b.Del(labels.AlertName, "severity")
					gotS = append(gotS, b.Labels().String())
				}
				sort.Strings(gotS)
				if !slices.Equal(gotS, want) {
					t.Errorf("%s at %s: firing %v, want %v", c.alert, c.at, gotS, want)
				}
			})
		}
	}
}

// TestHealthyDeploymentIsQuiet: on a healthy deployment no alert fires,
// whatever the scrape jobs are called (InferqNATSUnreachable used to fire
// for good wherever NATS's job was not "nats").
func TestHealthyDeploymentIsQuiet(t *testing.T) {
	for _, sc := range scrapes {
		t.Run(sc.name, func(t *testing.T) {
			for name, alerts := range firing(t, sc, healthy, 100*time.Minute) {
				if len(alerts) > 0 {
					t.Errorf("%s fires on a healthy deployment: %v", name, alerts)
				}
			}
		})
	}
}

// TestEveryAlertHasCases: each alert has a case where it fires and one where
// it does not.
func TestEveryAlertHasCases(t *testing.T) {
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, c := range ruleCases {
		if len(c.want) > 0 {
			fires[c.alert] = true
		} else {
			quiet[c.alert] = true
		}
	}
	for name := range loadAlertingRules(t) {
		if !fires[name] || !quiet[name] {
			t.Errorf("%s: want a rule case where it fires and one where it does not", name)
		}
	}
}

// TestNoScrapeJobMatchers: a rule that matches job or instance works only
// under the scrape setup it was written for.
func TestNoScrapeJobMatchers(t *testing.T) {
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				continue // reported by TestAlertRules
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Name == "job" || m.Name == "instance" {
							t.Errorf("%s: selector %s matches %s: scrape setups name their jobs differently", r.Alert, vs, m.Name)
						}
					}
				}
				return nil
			})
		}
	}
}

// loadAlertingRules builds Prometheus's alerting rules from alerts.yml.
func loadAlertingRules(t *testing.T) map[string]*rules.AlertingRule {
	t.Helper()
	out := map[string]*rules.AlertingRule{}
	p := parser.NewParser(parser.Options{})
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			hold, err := model.ParseDuration(r.For)
			if err != nil {
				t.Fatalf("%s: for: %v", r.Alert, err)
			}
			out[r.Alert] = rules.NewAlertingRule(r.Alert, expr, time.Duration(hold), 0,
				labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, nil)
		}
	}
	return out
}

// expandSeries replaces {{T "component" n}} with the scrape setup's target
// labels.
func expandSeries(t *testing.T, sc scrape, series string) string {
	t.Helper()
	var b strings.Builder
	for {
		i := strings.Index(series, `{{T "`)
		if i < 0 {
			b.WriteString(series)
			return b.String()
		}
		b.WriteString(series[:i])
		rest := series[i+len(`{{T "`):]
		end := strings.Index(rest, "}}")
		if end < 0 {
			t.Fatalf("unclosed {{T in %q", series)
		}
		var comp string
		var n int
		arg := strings.Replace(rest[:end], `"`, " ", 1)
		if _, err := fmt.Sscanf(arg, "%s %d", &comp, &n); err != nil {
			t.Fatalf("{{T %s}}: %v", rest[:end], err)
		}
		var pairs []string
		for k, v := range sc.target(comp, n) {
			pairs = append(pairs, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(pairs)
		b.WriteString(strings.Join(pairs, ", "))
		series = rest[end+2:]
	}
}

// firing loads the series, evaluates every rule once a minute from 0 to at
// and returns the labels of the alerts firing at `at`, by alert name.
func firing(t *testing.T, sc scrape, series string, at time.Duration) map[string][]labels.Labels {
	t.Helper()
	var load strings.Builder
	load.WriteString("load 1m\n")
	for line := range strings.SplitSeq(expandSeries(t, sc, series), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			load.WriteString("  " + line + "\n")
		}
	}
	storage := promqltest.LoadedStorage(t, load.String())
	t.Cleanup(func() { storage.Close() })
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery*10)
	query := rules.EngineQueryFunc(engine, storage)

	alerts := loadAlertingRules(t)
	start := time.Unix(0, 0).UTC()
	for ts := time.Duration(0); ts <= at; ts += time.Minute {
		for name, r := range alerts {
			if _, err := r.Eval(context.Background(), 0, start.Add(ts), query, nil, 0); err != nil {
				t.Fatalf("%s at %s: %v", name, ts, err)
			}
		}
	}
	out := map[string][]labels.Labels{}
	for name, r := range alerts {
		out[name] = nil
		for _, a := range r.ActiveAlerts() {
			if a.State == rules.StateFiring {
				out[name] = append(out[name], a.Labels)
			}
		}
	}
	return out
}
