package natsauth

import (
	"fmt"
	"sort"
	"strings"
)

// Service roles: each inferq service connects to NATS as its own user.
const (
	RoleIngress   = "ingress" // also runs the auth callout
	RoleBatcher   = "batcher"
	RoleResultSvc = "resultsvc"
	RoleWorker    = "worker"
)

// Roles lists the service roles in a fixed order.
var Roles = []string{RoleIngress, RoleBatcher, RoleResultSvc, RoleWorker}

// Perms is what one NATS user may publish and subscribe to, in a form free
// of nats-server's types (services do not link the server); natsembed and
// the deploy configs turn it into theirs.
type Perms struct {
	PubAllow, PubDeny, SubAllow []string
	// Responses lets the user answer requests it received (the callout).
	Responses bool
}

// Streams are inferq's streams, the key-value buckets' and the blobs object
// store's included.
func Streams(prefix string) []string {
	P := strings.ToUpper(prefix)
	out := []string{}
	for _, k := range []string{"JOBS", "BATCHES", "EVENTS", "TOKENS", "DEAD", "ADVISORIES", "WEBHOOKS", "BATCHWORK", "BATCHLINES"} {
		out = append(out, P+"_"+k)
	}
	for _, b := range []string{"models", "workers", "results", "seqs", "openai_batches"} {
		out = append(out, "KV_"+prefix+"_"+b)
	}
	return append(out, "OBJ_"+prefix+"_blobs", "OBJ_"+prefix+"_files")
}

// ServicePermissions is the least-privilege table of docs/architecture.md
// ("NATS users and permissions") for prefix. Every service provisions the
// topology at start, so each may create and update inferq's streams and
// consumers (never delete or purge them); the data subjects are the
// service's own: only the ingress publishes jobs, only ingress and
// resultsvc write job records, only workers publish tokens, and only
// workers pull batches.
func ServicePermissions(role, prefix string) (Perms, error) {
	p, P := prefix, strings.ToUpper(prefix)
	results, workers, models := "KV_"+p+"_results", "KV_"+p+"_workers", "KV_"+p+"_models"
	// JetStream management every service needs to provision and to use
	// its consumers, limited to inferq's own streams (a subject wildcard
	// is a whole token, so each stream is named).
	js := []string{"$JS.API.INFO"}
	for _, s := range Streams(prefix) {
		js = append(js,
			"$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s,
			"$JS.API.CONSUMER.INFO."+s+".*", "$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+s+".*", "$JS.API.CONSUMER.NAMES."+s, "$JS.API.CONSUMER.LIST."+s)
	}
	js = append(js, "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		// The buckets' keys are read by every service that opens them.
		"$JS.API.DIRECT.GET."+models+".>", "$JS.API.STREAM.MSG.GET."+models)
	next := func(stream string) []string {
		return []string{"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*", "$JS.ACK." + stream + ".>"}
	}
	kvRead := func(bucket string) []string {
		return []string{"$JS.API.DIRECT.GET." + bucket, "$JS.API.DIRECT.GET." + bucket + ".>", "$JS.API.STREAM.MSG.GET." + bucket,
			"$JS.API.CONSUMER.MSG.NEXT." + bucket + ".*", "$JS.FC." + bucket + ".>"}
	}
	kvWrite := func(bucket string) string { return "$KV." + strings.TrimPrefix(bucket, "KV_") + ".>" }
	// An object store (large tensors in blobs, Batch API files): writing
	// chunks and metadata, reading metadata, and the ordered consumer a read
	// or a listing creates, flows and deletes; replacing or deleting an
	// object purges its old chunks.
	objRW := func(name string) []string {
		b := p + "_" + name
		o := "OBJ_" + b
		return []string{"$O." + b + ".>", "$JS.API.DIRECT.GET." + o, "$JS.API.DIRECT.GET." + o + ".>",
			"$JS.API.STREAM.MSG.GET." + o, "$JS.API.STREAM.PURGE." + o, "$JS.API.CONSUMER.DELETE." + o + ".*", "$JS.FC." + o + ".>"}
	}
	blobsRW := func() []string { return objRW("blobs") }

	var out Perms
	out.SubAllow = []string{"_INBOX.>"}
	switch role {
	case RoleIngress:
		out.PubAllow = append(js, p+".jobs.>", p+".cancel.>", p+".events.*.queued", p+".events.*.failed", kvWrite(results), p+"_results.changed.>",
			"$JS.API.STREAM.MSG.GET."+P+"_JOBS", "$JS.API.DIRECT.GET."+P+"_TOKENS.>", "$JS.API.STREAM.MSG.GET."+P+"_TOKENS")
		out.PubAllow = append(out.PubAllow, next(P+"_TOKENS")...)
		// Its ordered consumers (SSE, key listings) are ephemeral; it
		// deletes them when done.
		out.PubAllow = append(out.PubAllow, "$JS.API.CONSUMER.DELETE."+P+"_TOKENS.*", "$JS.API.CONSUMER.DELETE."+workers+".*",
			"$JS.API.CONSUMER.DELETE."+results+".*")
		out.PubAllow = append(out.PubAllow, kvRead(results)...)
		out.PubAllow = append(out.PubAllow, kvRead(workers)...)
		out.PubAllow = append(out.PubAllow, blobsRW()...) // stores large inputs, reads large outputs
		// The Batch API's runner: files, batch records, the work queue it
		// takes batches from and the finished-lines stream it replays and
		// clears.
		batches := "KV_" + p + "_openai_batches"
		out.PubAllow = append(out.PubAllow, objRW("files")...)
		out.PubAllow = append(out.PubAllow, kvWrite(batches), p+".batchwork.>", p+".batchlines.>", p+".webhooks.>",
			"$JS.API.STREAM.PURGE."+P+"_BATCHLINES", "$JS.API.CONSUMER.DELETE."+P+"_BATCHLINES.*",
			"$JS.API.CONSUMER.DELETE."+batches+".*", "$JS.API.STREAM.MSG.GET."+P+"_BATCHLINES")
		out.PubAllow = append(out.PubAllow, kvRead(batches)...)
		out.PubAllow = append(out.PubAllow, next(P+"_BATCHWORK")...)
		out.PubAllow = append(out.PubAllow, "$JS.FC."+P+"_BATCHLINES.>", "$JS.API.CONSUMER.MSG.NEXT."+P+"_BATCHLINES.*")
		// The model registry (registry: true): it writes models and versions.
		out.PubAllow = append(out.PubAllow, kvWrite(models), "$JS.API.CONSUMER.DELETE."+models+".*")
		out.PubAllow = append(out.PubAllow, kvRead(models)...)
		out.SubAllow = append(out.SubAllow, p+"_results.changed.>", p+".batched.>", CalloutSubject)
		out.Responses = true // answers the auth callout
	case RoleBatcher:
		out.PubAllow = append(js, p+".batches.>", p+".batched.>", p+".events.>", p+".dead.>")
		out.PubAllow = append(out.PubAllow, next(P+"_JOBS")...)
		out.PubAllow = append(out.PubAllow, kvRead(workers)...)
		// The model registry: it follows the catalog and, when a retired
		// version has drained, removes the version's key and consumers.
		out.PubAllow = append(out.PubAllow, kvWrite(models), "$JS.API.CONSUMER.DELETE."+models+".*",
			"$JS.API.CONSUMER.DELETE."+P+"_JOBS.*", "$JS.API.CONSUMER.DELETE."+P+"_BATCHES.*")
		out.PubAllow = append(out.PubAllow, kvRead(models)...)
		out.SubAllow = append(out.SubAllow, p+".cancel.>", p+".taken.>")
	case RoleResultSvc:
		out.PubAllow = append(js, kvWrite(results), p+"_results.changed.>", p+".events.>", p+".dead.>", p+".webhooks.>", "$JS.API.STREAM.MSG.GET."+P+"_BATCHES")
		for _, s := range []string{P + "_EVENTS", P + "_ADVISORIES", P + "_TOKENS", P + "_WEBHOOKS"} {
			out.PubAllow = append(out.PubAllow, next(s)...)
		}
		out.PubAllow = append(out.PubAllow, kvRead(results)...)
		// The delivery state of batches' completion webhooks, kept in
		// their batch records.
		batches := "KV_" + p + "_openai_batches"
		out.PubAllow = append(out.PubAllow, kvWrite(batches))
		out.PubAllow = append(out.PubAllow, kvRead(batches)...)
		out.SubAllow = append(out.SubAllow, p+"_results.changed.>")
	case RoleWorker:
		out.PubAllow = append(js, p+".events.>", p+".tokens.>", p+".dead.>", p+".taken.>", kvWrite(workers))
		out.PubAllow = append(out.PubAllow, next(P+"_BATCHES")...)
		out.PubAllow = append(out.PubAllow, kvRead(workers)...)
		out.PubAllow = append(out.PubAllow, blobsRW()...) // reads large inputs, stores large outputs
		// Done marks of continuously batched jobs, and the model registry's
		// catalog it follows.
		seqs := "KV_" + p + "_seqs"
		out.PubAllow = append(out.PubAllow, kvWrite(seqs), "$JS.API.CONSUMER.DELETE."+models+".*")
		out.PubAllow = append(out.PubAllow, kvRead(seqs)...)
		out.PubAllow = append(out.PubAllow, kvRead(models)...)
		out.SubAllow = append(out.SubAllow, p+".cancel.>")
	default:
		return Perms{}, fmt.Errorf("natsauth: unknown role %q (want one of %s)", role, strings.Join(Roles, ", "))
	}
	// The callout's subject is the server's alone: no service may forge
	// requests there.
	out.PubDeny = []string{CalloutSubject}
	sort.Strings(out.PubAllow)
	sort.Strings(out.SubAllow)
	return out, nil
}
