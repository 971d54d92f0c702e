// Package docs holds inferq's documentation (architecture.md, the API in
// openapi.yaml, configs and examples) and the tests that keep it valid,
// complete and self-contained: every route documented, every link inside
// the repository.
package docs
