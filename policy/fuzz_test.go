package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte(""))
	f.Add([]byte("\x00\xff\xfegarbage: [\n  - {"))
	f.Add([]byte("agents: &a\n  x: *a\n"))
	f.Add([]byte("approvals:\n  - {name: a, stage: award, min_price: 1e400}\n"))
	f.Add([]byte("rate_limits: {intents_per_origin: {per_second: 1e-300}}\nmax_concurrent_tasks: 99999999999999999999\n"))
	f.Add([]byte("peers: {allow: [12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X], deny: []}\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if p != nil {
				t.Fatal("policy and error")
			}
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "fuzz.yaml:") {
				t.Fatalf("error %q does not name the file or wrap ErrInvalid", err)
			}
			return
		}
		e := NewEngine(p)
		e.Offer("default", "weather")
		e.Request("x", "y")
		e.Intent(agentA, "", now0)
		e.Award("default", "x", 10, now0)
		e.NeedsApproval(StageAward, "payments", 60)
		_, release := e.StartTask()
		release()
	})
}
