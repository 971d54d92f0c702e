// Package pyclient holds the Go side of the Python client's tests: the
// Python package itself is clients/python/inferq, and client_test.go runs its
// unittest suite (clients/python/tests) with Debian's python3 against a real
// `inferq dev`, so that `make test` and `go test ./...` cover it.
package pyclient
