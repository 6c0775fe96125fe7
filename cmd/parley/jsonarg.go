package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parleynet/parley/node/api"
)

// maxJSONArg bounds what --input, --summary and --payload read from a file
// or stdin: the API's body limit, which the daemon enforces anyway, so a
// mistaken /dev/zero fails here with the flag's name.
const maxJSONArg = api.DefaultMaxBodySize

// jsonArg reads a JSON flag's value the way curl and the GitHub CLI do: a
// literal, "@FILE" for a file's contents, or "-" for stdin. Its errors
// name the flag and where the value came from.
func jsonArg(flag, value string, stdin io.Reader) (json.RawMessage, error) {
	src, data := "", []byte(value)
	if value == "-" || strings.HasPrefix(value, "@") {
		r := stdin
		src = " (stdin)"
		if value != "-" {
			f, err := os.Open(value[1:])
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", flag, value, err)
			}
			defer f.Close()
			r, src = f, " ("+value[1:]+")"
		}
		b, err := io.ReadAll(io.LimitReader(r, maxJSONArg+1))
		if err != nil {
			return nil, fmt.Errorf("%s %s: read%s: %w", flag, value, src, err)
		}
		data = b
	}
	if len(data) > maxJSONArg {
		return nil, fmt.Errorf("%s%s: over the API's %d-byte (1 MiB) request limit", flag, src, maxJSONArg)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		shown := abbrev(value)
		if src != "" {
			shown = value + src
		}
		return nil, fmt.Errorf("%s %s is not valid JSON: %v", flag, shown, err)
	}
	return json.RawMessage(strings.TrimSpace(string(data))), nil
}
