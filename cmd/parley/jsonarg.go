package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxJSONArg bounds what --input, --summary and --payload read from a file
// or stdin: the API's body limit, which the daemon enforces anyway, so a
// mistaken /dev/zero fails here with the flag's name.
const maxJSONArg = 1 << 20

// jsonArg reads a JSON flag's value the way curl and the GitHub CLI do: a
// literal, "@FILE" for a file's contents, or "-" for stdin. Its errors
// name the flag and where the value came from.
func jsonArg(flag, value string, stdin io.Reader) (json.RawMessage, error) {
	src, data := "", []byte(value)
	switch {
	case value == "-":
		src = " (stdin)"
		b, err := io.ReadAll(io.LimitReader(stdin, maxJSONArg+1))
		if err != nil {
			return nil, fmt.Errorf("%s -: read stdin: %w", flag, err)
		}
		data = b
	case strings.HasPrefix(value, "@"):
		path := value[1:]
		src = " (" + path + ")"
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, value, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxJSONArg+1))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, value, err)
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
