// Package docs holds inferq's API documentation (openapi.yaml) and the tests that keep it valid and complete.
package docs
