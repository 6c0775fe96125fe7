package intent_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/identity"
	"github.com/parleynet/parley/intent"
)

func newAgent(t testing.TB) *identity.Agent {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := identity.NewAgent("a", k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const testPeer = peer.ID("\x00\x24\x08\x01\x12\x20\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20")

func body(capability string) intent.Body {
	return intent.Body{
		Kind:        intent.KindTask,
		Capability:  capability,
		Payload:     json.RawMessage(`{"sku":"bolt","qty":3}`),
		Constraints: &intent.Constraints{BidWindow: intent.Duration(2 * time.Second), Budget: 10},
		ReplyTo:     intent.ReplyTo{Peer: testPeer, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}},
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	a := newAgent(t)
	in, err := intent.Seal(a, body("pricing"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := intent.Open(in.Raw, "pricing", identity.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != in.ID || got.From != a.ID || got.Kind != intent.KindTask || string(got.Payload) != `{"sku":"bolt","qty":3}` ||
		got.Constraints == nil || got.Constraints.BidWindow != intent.Duration(2*time.Second) || got.ReplyTo.Peer != testPeer {
		t.Fatalf("round trip changed the intent:\n got %+v\nwant %+v", got, in)
	}
	if !got.Expires.Equal(got.Created.Add(time.Minute)) {
		t.Errorf("expires %v, want created+1m", got.Expires)
	}
}

func TestSealRejects(t *testing.T) {
	a := newAgent(t)
	cases := []struct {
		name string
		edit func(*intent.Body)
		want error
	}{
		{"empty capability", func(b *intent.Body) { b.Capability = "" }, intent.ErrBadCapability},
		{"upper case", func(b *intent.Body) { b.Capability = "Pricing" }, intent.ErrBadCapability},
		{"too long", func(b *intent.Body) { b.Capability = string(make([]byte, 65)) }, intent.ErrBadCapability},
		{"unknown kind", func(b *intent.Body) { b.Kind = "shout" }, intent.ErrBadKind},
		{"payload not JSON", func(b *intent.Body) { b.Payload = json.RawMessage(`{x`) }, intent.ErrBadPayload},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := body("pricing")
			tc.edit(&b)
			if _, err := intent.Seal(a, b, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Seal: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenOnWrongTopic(t *testing.T) {
	in, err := intent.Seal(newAgent(t), body("pricing"), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = intent.Open(in.Raw, "weather", identity.OpenOptions{})
	if !errors.Is(err, intent.ErrWrongTopic) || intent.DropReason(err) != "wrong_topic" {
		t.Fatalf("Open on another topic: %v (reason %s), want ErrWrongTopic", err, intent.DropReason(err))
	}
}

func TestDropReasonCoversEverySentinel(t *testing.T) {
	cases := map[error]string{
		identity.ErrTooLarge: "oversize", identity.ErrNotJSON: "not_json", identity.ErrMalformed: "unsigned",
		identity.ErrBadSignature: "bad_signature", identity.ErrWrongSigner: "wrong_signer", identity.ErrExpired: "expired",
		identity.ErrTooOld: "expired", identity.ErrNotYetValid: "expired", identity.ErrReplayed: "replayed",
		intent.ErrWrongTopic: "wrong_topic", intent.ErrBadPayload: "invalid", errors.New("?"): "other",
	}
	known := map[string]bool{}
	for _, r := range intent.DropReasons() {
		known[r] = true
	}
	for err, want := range cases {
		got := intent.DropReason(err)
		if got != want || !known[got] {
			t.Errorf("DropReason(%v) = %q, want %q (and listed in DropReasons)", err, got, want)
		}
	}
}

func FuzzOpen(f *testing.F) {
	a := newAgent(f)
	in, err := intent.Seal(a, body("pricing"), time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(in.Raw)
	f.Add([]byte(`{"kind":"task"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := intent.Open(data, "pricing", identity.OpenOptions{MaxSize: intent.DefaultMaxSize})
		if err == nil && (got == nil || got.Capability != "pricing") {
			t.Fatalf("Open accepted %q as %+v", data, got)
		}
	})
}
