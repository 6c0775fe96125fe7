package api

import (
	_ "embed" // the OpenAPI document is served as it is kept in the repo
	"net/http"
)

// PathOpenAPI serves the API's OpenAPI 3 document, without a token.
const PathOpenAPI = "/openapi.yaml"

//go:embed openapi.yaml
var openAPI []byte

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}
