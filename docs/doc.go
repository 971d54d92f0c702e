// Package docs holds inferq's API documentation (openapi.yaml) and the tests that keep it valid and complete.
// It is a module of its own so that libopenapi, which only these tests use, stays out of the broker's go.mod.
package docs
