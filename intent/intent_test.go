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

// hosted is an agent on a node that delegated it.
type hosted struct {
	*identity.Agent
	node       peer.ID
	delegation []byte
}

func newHosted(t testing.TB) hosted {
	t.Helper()
	a := newAgent(t)
	nk, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	node, _ := peer.IDFromPrivateKey(nk)
	d, err := identity.Delegate(nk, a.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return hosted{a, node, d}
}

func (h hosted) body(capability string) intent.Body {
	return intent.Body{
		Kind:        intent.KindTask,
		Capability:  capability,
		Payload:     json.RawMessage(`{"sku":"bolt","qty":3}`),
		Constraints: &intent.Constraints{BidWindow: intent.Duration(2 * time.Second), Budget: 10},
		ReplyTo:     intent.ReplyTo{Peer: h.node, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}},
		Delegation:  h.delegation,
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	a := newHosted(t)
	in, err := intent.Seal(a.Agent, a.body("pricing"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := intent.Open(in.Raw, "pricing", intent.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != in.ID || got.From != a.ID || got.Kind != intent.KindTask || string(got.Payload) != `{"sku":"bolt","qty":3}` ||
		got.Constraints == nil || got.Constraints.BidWindow != intent.Duration(2*time.Second) || got.ReplyTo.Peer != a.node || got.Origin != a.node {
		t.Fatalf("round trip changed the intent:\n got %+v\nwant %+v", got, in)
	}
	if !got.Expires.Equal(got.Created.Add(time.Minute)) {
		t.Errorf("expires %v, want created+1m", got.Expires)
	}
}

func TestSealRejects(t *testing.T) {
	a := newHosted(t)
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
		{"no delegation", func(b *intent.Body) { b.Delegation = nil }, identity.ErrNotDelegated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := a.body("pricing")
			tc.edit(&b)
			if _, err := intent.Seal(a.Agent, b, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Seal: got %v, want %v", err, tc.want)
			}
		})
	}
}

// The signature covers the agent, the delegation its node: an intent that
// names another node as its reply-to, or carries another agent's
// delegation, is refused.
func TestOpenRefusesUnprovenNode(t *testing.T) {
	a, b := newHosted(t), newHosted(t)
	cases := []struct {
		name string
		edit func(*intent.Body)
	}{
		{"reply-to names another node", func(x *intent.Body) { x.ReplyTo.Peer = b.node }},
		{"another agent's delegation", func(x *intent.Body) { x.Delegation, x.ReplyTo.Peer = b.delegation, b.node }},
	}
	for _, tc := range cases {
		body := a.body("pricing")
		tc.edit(&body)
		if _, err := intent.Seal(a.Agent, body, 0); !errors.Is(err, identity.ErrNotDelegated) {
			t.Errorf("%s: Seal: %v, want ErrNotDelegated", tc.name, err)
		}
		// Signed by hand, as a peer with its own code would.
		raw, _ := json.Marshal(body)
		data, err := identity.Seal(a.Agent, identity.Message{Type: intent.MessageType, V: intent.Version, Body: raw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := intent.Open(data, "pricing", intent.OpenOptions{}); !errors.Is(err, identity.ErrNotDelegated) || intent.DropReason(err) != "not_delegated" {
			t.Errorf("%s: %v, want ErrNotDelegated", tc.name, err)
		}
	}
}

// An intent may leave its reply-to peer out: the delegation proves it.
func TestOpenFillsReplyToFromDelegation(t *testing.T) {
	a := newHosted(t)
	for _, peer := range []bool{false, true} {
		body := a.body("pricing")
		if !peer {
			body.ReplyTo.Peer = ""
		}
		in, err := intent.Seal(a.Agent, body, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := intent.Open(in.Raw, "pricing", intent.OpenOptions{})
		if err != nil || got.Origin != a.node || got.ReplyTo.Peer != a.node || in.Origin != a.node {
			t.Fatalf("peer given %v: Open = %+v, %v; want origin and reply-to %s", peer, got, err, a.node)
		}
	}
}

func TestOpenRefusesUnknownVersion(t *testing.T) {
	a := newHosted(t)
	raw, _ := json.Marshal(a.body("pricing"))
	for _, v := range []int{1, intent.Version + 1} {
		data, err := identity.Seal(a.Agent, identity.Message{Type: intent.MessageType, V: v, Body: raw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := intent.Open(data, "pricing", intent.OpenOptions{}); !errors.Is(err, identity.ErrUnsupportedVersion) || intent.DropReason(err) != "version" {
			t.Errorf("version %d: %v, want ErrUnsupportedVersion", v, err)
		}
	}
}

func TestOpenOnWrongTopic(t *testing.T) {
	a := newHosted(t)
	in, err := intent.Seal(a.Agent, a.body("pricing"), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = intent.Open(in.Raw, "weather", intent.OpenOptions{})
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
		identity.ErrUnsupportedVersion: "version", identity.ErrNotDelegated: "not_delegated",
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
	a := newHosted(f)
	in, err := intent.Seal(a.Agent, a.body("pricing"), time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(in.Raw)
	f.Add([]byte(`{"kind":"task"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := intent.Open(data, "pricing", intent.OpenOptions{OpenOptions: identity.OpenOptions{MaxSize: intent.DefaultMaxSize}})
		if err == nil && (got == nil || got.Capability != "pricing") {
			t.Fatalf("Open accepted %q as %+v", data, got)
		}
	})
}
