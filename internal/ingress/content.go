package ingress

import (
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"
)

// jsonBody is the one Content-Type rule of every route that reads a JSON
// body. A body with no Content-Type, or with curl's default
// application/x-www-form-urlencoded (what `curl -d` sends), is read as
// JSON, as Triton and KServe do; application/json (any parameters, such as
// charset) is JSON; any other type is refused with 415 before the handler
// runs, so nothing is read, stored or published.
func jsonBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !readsAsJSON(c.Request()) {
			return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type must be application/json (or absent), got "+c.Request().Header.Get(echo.HeaderContentType))
		}
		return next(c)
	}
}

// readsAsJSON reports whether r's body may be read as JSON under the rule
// of jsonBody. A request without a body has nothing to misread.
func readsAsJSON(r *http.Request) bool {
	ct := r.Header.Get(echo.HeaderContentType)
	if ct == "" || r.ContentLength == 0 {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case echo.MIMEApplicationJSON, echo.MIMEApplicationForm:
		return true
	}
	return false
}

// tensorBody is jsonBody for the routes that take an inference request,
// which may also come in the binary tensor data extension's form: with the
// Inference-Header-Content-Length header the body is JSON and then raw
// bytes, sent as application/octet-stream (or with a type jsonBody takes,
// as some clients send). application/octet-stream without that header is a
// 400 naming it: the body cannot be split without it.
func tensorBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		binary := r.Header.Get(headerInferLen) != ""
		if isOctetStream(r) {
			if !binary {
				return invalid("Content-Type %s needs the %s header (the binary tensor data extension)", mimeOctetStream, headerInferLen)
			}
			return next(c)
		}
		return jsonBody(next)(c)
	}
}

// isOctetStream reports whether r's Content-Type is application/octet-stream.
func isOctetStream(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	return err == nil && mt == mimeOctetStream
}
