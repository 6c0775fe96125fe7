package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSONArg(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	big := filepath.Join(dir, "big.json")
	for path, data := range map[string]string{good: "{\"a\": 1}\n", bad: "{oops", big: `"` + strings.Repeat("x", maxJSONArg) + `"`} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, value, stdin string
		want               string // the value read, or a part of the error
		ok                 bool
	}{
		{"literal", `{"a":1}`, "", `{"a":1}`, true},
		{"file", "@" + good, "", `{"a": 1}`, true},
		{"stdin", "-", " [1,2] \n", "[1,2]", true},
		{"literal not JSON", "{oops", "", `--input "{oops" is not valid JSON`, false},
		{"file not JSON", "@" + bad, "", "--input @" + bad + " (" + bad + ") is not valid JSON", false},
		{"stdin not JSON", "-", "nope", "--input - (stdin) is not valid JSON", false},
		{"missing file", "@" + filepath.Join(dir, "none.json"), "", "--input @" + filepath.Join(dir, "none.json"), false},
		{"over the limit", "@" + big, "", "1 MiB", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jsonArg("--input", tc.value, strings.NewReader(tc.stdin))
			switch {
			case tc.ok && (err != nil || string(got) != tc.want):
				t.Errorf("jsonArg(%q) = %s, %v; want %s", tc.value, got, err, tc.want)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("jsonArg(%q) error %v, want one saying %q", tc.value, err, tc.want)
			}
		})
	}
}
