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
