// Package tensor handles Open Inference Protocol (OIP / KServe v2) tensors
// for the broker: decoding and encoding the JSON form, validating requests
// against a model's declared inputs, and batching jobs together (with
// padding for ragged inputs) and splitting batched outputs back per job.
//
// Tensors are kept in the raw binary layout (row-major little-endian, BYTES
// as 4-byte length-prefixed elements) so they can be forwarded to backends
// and batched with plain byte copies; JSON is converted at the edges with a
// hand-written scanner that avoids per-element allocations.
package tensor
