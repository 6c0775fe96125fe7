package negotiation

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestJSONDurations: every duration a user reads in the API or an exec
// agent's stdin is a string like "200ms", and reads back to the same value.
func TestJSONDurations(t *testing.T) {
	pid, err := peer.Decode("12D3KooWGRUVh8YAQQ5j4UXbLPFqRNprnTrnLHT5jrYqQY8bCvRv")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	call := Call{Task: "t1", Capability: "quote", Requester: "did:key:z6Mkr", RequesterPeer: pid, RequesterName: "buyer",
		Summary: json.RawMessage(`{"sku":1}`), Budget: 10, BidWindow: 1500 * time.Millisecond, Deadline: deadline}
	bid := Bid{Price: 4.5, ETA: 200 * time.Millisecond, Rationale: "fast"}
	for _, tc := range []struct {
		name  string
		value any
		ptr   any // a pointer to a zero value of the same type
		want  []string
	}{
		{"bid", bid, new(Bid), []string{`"eta":"200ms"`}},
		{"bid info", BidInfo{Agent: "did:key:z6Mk", Name: "quoter", Peer: pid, Bid: bid, Call: 1, Rank: 2, Status: "awarded", Note: "n"},
			new(BidInfo), []string{`"eta":"200ms"`, `"name":"quoter"`, `"status":"awarded"`, `"price":4.5`}},
		{"call", call, new(Call), []string{`"bid_window":"1.5s"`, `"requester_name":"buyer"`}},
		{"task", Task{Call: call, Bid: bid, Input: json.RawMessage(`{"a":1}`)}, new(Task),
			[]string{`"bid_window":"1.5s"`, `"bid":{"price":4.5,"eta":"200ms","rationale":"fast"}`, `"input":{"a":1}`}},
		{"counter", Counter{Price: 3.6, ETA: time.Second, Terms: "80%", Round: 1, Bid: bid}, new(Counter),
			[]string{`"eta":"1s"`, `"round":1`, `"bid":{"price":4.5,"eta":"200ms","rationale":"fast"}`}},
		{"bid info with rounds", BidInfo{Agent: "did:key:z6Mk", Peer: pid, Bid: Bid{Price: 3.6, ETA: time.Second}, Call: 1, Status: "completed",
			Rounds: []Round{{Counter: Counter{Price: 3.6, ETA: time.Second, Round: 1, Bid: bid}, Reply: "accepted", Bid: Bid{Price: 3.6, ETA: time.Second}}}},
			new(BidInfo), []string{`"rounds":[{"counter":{"price":3.6,"eta":"1s"`, `"reply":"accepted"`}},
		{"timings", Timings{Negotiation: time.Second, Work: 2 * time.Second, Total: 3 * time.Second}, new(Timings),
			[]string{`"negotiation":"1s"`, `"work":"2s"`, `"total":"3s"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("JSON %s lacks %s", b, w)
				}
			}
			if err := json.Unmarshal(b, tc.ptr); err != nil {
				t.Fatalf("read back %s: %v", b, err)
			}
			if got := reflect.ValueOf(tc.ptr).Elem().Interface(); !reflect.DeepEqual(got, tc.value) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.value)
			}
		})
	}
}

// TestJSONMirrorsComplete fails when a field is added to a type whose JSON
// goes through a mirror struct without adding it to the mirror.
func TestJSONMirrorsComplete(t *testing.T) {
	for _, tc := range []struct {
		typ, mirror any
		extra       int // fields the type has that the mirror holds otherwise
	}{
		{Bid{}, bidJSON{}, 0},
		{BidInfo{}, bidInfoJSON{}, 0},
		{Call{}, callJSON{}, 0},
		{Task{}, taskJSON{}, 2}, // Progress and Ask are not JSON
		{Timings{}, timingsJSON{}, 0},
		{Counter{}, counterJSON{}, 0},
	} {
		typ, mirror := reflect.TypeOf(tc.typ), reflect.TypeOf(tc.mirror)
		if typ.NumField() != mirror.NumField()+tc.extra {
			t.Errorf("%s has %d fields, its JSON mirror %s %d", typ, typ.NumField(), mirror, mirror.NumField())
		}
	}
}

func TestParseStrategy(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the strategy's name, or a part of the error
		ok       bool
	}{
		{"", "", true},
		{"cheapest", "cheapest", true},
		{"fastest", "fastest", true},
		{"weighted", "weighted(price×1 + seconds×1)", true},
		{"weighted:1,2", "weighted(price×1 + seconds×2)", true},
		{"weighted:0, 0.5", "weighted(price×0 + seconds×0.5)", true},
		{"weighted:0,0", "not both 0", false},
		{"weighted:-1,2", "≥ 0", false},
		{"weighted:1", "PRICE,SECONDS", false},
		{"weighted:x,y", "PRICE,SECONDS", false},
		{"counter:0.8", "counter(80%)+cheapest", true},
		{"counter:0.75", "counter(75%)+cheapest", true},
		{"counter:1", "0 < FRACTION < 1", false},
		{"counter:0", "0 < FRACTION < 1", false},
		{"counter", "counter:FRACTION", false},
		{"counter:x", "0 < FRACTION < 1", false},
		{"dearest", `strategy "dearest"`, false},
	} {
		s, err := ParseStrategy(tc.in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("ParseStrategy(%q): %v", tc.in, err)
		case tc.ok && s == nil && tc.want != "":
			t.Errorf("ParseStrategy(%q) = nil", tc.in)
		case tc.ok && s != nil && s.Name() != tc.want:
			t.Errorf("ParseStrategy(%q) = %s, want %s", tc.in, s.Name(), tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseStrategy(%q) = %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
}
