package nic

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of the control API, served at
// GET /v1/openapi.json. TestOpenAPIRoutes checks it against the route
// table (every path and method, the status codes the tests see).
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document (JSON) of the control API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *ControlServer) getOpenAPI(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(openAPI)
	return nil
}

// testOnResponse, when set (by the tests, before any server starts), is
// told the status of every response of a route: the OpenAPI test checks
// that the document declares each status the tests met.
var testOnResponse func(pattern, method string, status int)

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.NewResponseController reach the connection (deadlines,
// flushes of wake streams).
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
