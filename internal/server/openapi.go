package server

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's description (OpenAPI 3.1), served at
// GET /api/v1/openapi.json. Every route the server registers is in it
// with the roles that may call it (x-writ-roles) or what authorizes it
// instead of a login (x-writ-public); a test keeps the two in step.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(OpenAPI)
}
