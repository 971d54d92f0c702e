// Package e2e holds inferq's end-to-end tests: the whole stack in process
// against real NATS and Redis, and every binary started and stopped.
package e2e
