package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/record"
)

// t0 is the fixed "now" of the envelope tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

func newTestAgent(tb testing.TB, name string) *Agent {
	tb.Helper()
	key, err := GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	a, err := NewAgent(name, key)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func testMessage() Message {
	return Message{
		Type:    "intent",
		V:       1,
		Created: t0,
		Body:    json.RawMessage(`{"want":"translate","lang":["en","fr"]}`),
	}
}

func mustSeal(tb testing.TB, a *Agent, m Message) []byte {
	tb.Helper()
	data, err := Seal(a, m)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestSealOpenRoundTrip(t *testing.T) {
	a := newTestAgent(t, "alice")
	in := testMessage()
	in.ID = "msg-1"
	in.From = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp" // overwritten
	in.Expires = t0.Add(time.Minute)
	data := mustSeal(t, a, in)

	m, env, err := OpenEnvelope(data, OpenOptions{Now: fixedNow(t0), Replay: NewReplayWindow(ReplayConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != in.Type || m.V != in.V || m.ID != in.ID || m.From != a.ID ||
		!m.Created.Equal(in.Created) || !m.Expires.Equal(in.Expires) || !bytes.Equal(m.Body, in.Body) {
		t.Fatalf("opened %+v, sealed %+v", m, in)
	}
	if !env.PublicKey.Equals(a.Key.GetPublic()) {
		t.Fatal("envelope key is not the agent's")
	}
	if !bytes.Equal(env.PayloadType, PayloadType()) {
		t.Fatalf("payload type %q", env.PayloadType)
	}
}

func TestSealDefaults(t *testing.T) {
	a := newTestAgent(t, "alice")
	before := time.Now()
	data := mustSeal(t, a, Message{Type: "intent", V: 1, Body: json.RawMessage(`{}`)})
	m, err := Open(data, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ID) != 32 {
		t.Errorf("ID %q, want 32 hex characters", m.ID)
	}
	if m.Created.Before(before.Add(-time.Second)) || m.Created.After(time.Now()) {
		t.Errorf("Created %v not now", m.Created)
	}
	if got := m.Expires.Sub(m.Created); got != DefaultTTL {
		t.Errorf("TTL %v, want %v", got, DefaultTTL)
	}
	if m.From != a.ID {
		t.Errorf("From %s, want %s", m.From, a.ID)
	}
}

func TestSealInvalid(t *testing.T) {
	a := newTestAgent(t, "alice")
	tests := []struct {
		name string
		edit func(*Message)
	}{
		{"no type", func(m *Message) { m.Type = "" }},
		{"version 0", func(m *Message) { m.V = 0 }},
		{"long id", func(m *Message) { m.ID = strings.Repeat("x", 129) }},
		{"no body", func(m *Message) { m.Body = nil }},
		{"null body", func(m *Message) { m.Body = json.RawMessage(`null`) }},
		{"invalid body", func(m *Message) { m.Body = json.RawMessage(`{"a":`) }},
		{"expires before created", func(m *Message) { m.Expires = m.Created.Add(-time.Second) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage()
			tt.edit(&m)
			if _, err := Seal(a, m); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Seal error = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := Seal(nil, testMessage()); err == nil {
		t.Error("nil agent: no error")
	}
	b := newTestAgent(t, "bob")
	mixed := &Agent{Name: "mixed", ID: b.ID, Key: a.Key}
	if _, err := Seal(mixed, testMessage()); err == nil {
		t.Error("agent whose ID is not its key's: no error")
	}
}

// wrongCodec seals a Message under another payload type.
type wrongCodec struct{ *Message }

func (wrongCodec) Codec() []byte { return []byte("/other/msg/1") }

// wrongDomain seals a Message under another signature domain.
type wrongDomain struct{ *Message }

func (wrongDomain) Domain() string { return "not-parley" }

// rawPayload seals arbitrary bytes as a parley payload.
type rawPayload []byte

func (rawPayload) Domain() string                   { return Domain }
func (rawPayload) Codec() []byte                    { return PayloadType() }
func (p rawPayload) MarshalRecord() ([]byte, error) { return p, nil }
func (rawPayload) UnmarshalRecord([]byte) error     { return nil }

func sealRecord(tb testing.TB, a *Agent, rec record.Record) []byte {
	tb.Helper()
	env, err := record.Seal(rec, a.Key)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func tamper(tb testing.TB, data []byte, edit func(env *record.Envelope)) []byte {
	tb.Helper()
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		tb.Fatal(err)
	}
	edit(env)
	out, err := env.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestOpenErrors(t *testing.T) {
	a := newTestAgent(t, "alice")
	b := newTestAgent(t, "bob")
	valid := func() Message {
		m := testMessage()
		m.ID = NewID()
		m.From = a.ID
		m.Expires = t0.Add(time.Minute)
		return m
	}
	sealedAs := func(edit func(*Message)) []byte {
		m := valid()
		edit(&m)
		return sealRecord(t, a, &m)
	}
	good := mustSeal(t, a, valid())

	tests := []struct {
		name string
		data []byte
		opts OpenOptions
		want error
	}{
		{"garbage", []byte("hello, this is not an envelope"), OpenOptions{}, ErrMalformed},
		{"empty", nil, OpenOptions{}, ErrMalformed},
		{"too large", good, OpenOptions{MaxSize: len(good) - 1}, ErrTooLarge},
		{"too large garbage", bytes.Repeat([]byte{0xff}, 100), OpenOptions{MaxSize: 10}, ErrTooLarge},
		{"tampered payload", tamper(t, good, func(e *record.Envelope) {
			i := bytes.Index(e.RawPayload, []byte("translate"))
			e.RawPayload[i] = 'T' // still valid JSON
		}), OpenOptions{}, ErrBadSignature},
		{"tampered key", tamper(t, good, func(e *record.Envelope) { e.PublicKey = b.Key.GetPublic() }), OpenOptions{}, ErrBadSignature},
		{"wrong payload type", sealRecord(t, a, wrongCodec{ptr(valid())}), OpenOptions{}, ErrMalformed},
		{"tampered payload type", tamper(t, good, func(e *record.Envelope) { e.PayloadType = []byte("/other/msg/1") }), OpenOptions{}, ErrMalformed},
		{"wrong domain", sealRecord(t, a, wrongDomain{ptr(valid())}), OpenOptions{}, ErrBadSignature},
		{"payload not JSON", sealRecord(t, a, rawPayload("not json")), OpenOptions{}, ErrNotJSON},
		{"payload trailing data", sealRecord(t, a, rawPayload(`{"type":"intent"} x`)), OpenOptions{}, ErrNotJSON},
		{"payload JSON array", sealRecord(t, a, rawPayload(`[1,2]`)), OpenOptions{}, ErrNotJSON},
		{"missing type", sealedAs(func(m *Message) { m.Type = "" }), OpenOptions{}, ErrMalformed},
		{"version 0", sealedAs(func(m *Message) { m.V = 0 }), OpenOptions{}, ErrMalformed},
		{"missing id", sealedAs(func(m *Message) { m.ID = "" }), OpenOptions{}, ErrMalformed},
		{"long id", sealedAs(func(m *Message) { m.ID = strings.Repeat("x", 129) }), OpenOptions{}, ErrMalformed},
		{"missing from", sealedAs(func(m *Message) { m.From = "" }), OpenOptions{}, ErrMalformed},
		{"bad from", sealedAs(func(m *Message) { m.From = "did:key:zzz" }), OpenOptions{}, ErrMalformed},
		{"missing created", sealedAs(func(m *Message) { m.Created = time.Time{} }), OpenOptions{}, ErrMalformed},
		{"missing expires", sealedAs(func(m *Message) { m.Expires = time.Time{} }), OpenOptions{}, ErrMalformed},
		{"expires before created", sealedAs(func(m *Message) { m.Expires = m.Created }), OpenOptions{}, ErrMalformed},
		{"missing body", sealedAs(func(m *Message) { m.Body = nil }), OpenOptions{}, ErrMalformed},
		{"wrong signer", sealedAs(func(m *Message) { m.From = b.ID }), OpenOptions{}, ErrWrongSigner},
		{"expired", good, OpenOptions{Now: fixedNow(t0.Add(time.Minute + time.Nanosecond))}, ErrExpired},
		{"future", good, OpenOptions{Now: fixedNow(t0.Add(-DefaultClockSkew - time.Nanosecond))}, ErrNotYetValid},
		{"future, custom skew", good, OpenOptions{Now: fixedNow(t0.Add(-2 * time.Second)), MaxClockSkew: time.Second}, ErrNotYetValid},
		{"older than replay window", good, OpenOptions{Now: fixedNow(t0.Add(30 * time.Second)), Replay: NewReplayWindow(ReplayConfig{Window: 10 * time.Second, MaxEntries: 0})}, ErrTooOld},
	}
	sentinels := []error{ErrMalformed, ErrBadSignature, ErrWrongSigner, ErrExpired, ErrNotYetValid, ErrTooOld, ErrReplayed, ErrTooLarge, ErrNotJSON}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Now == nil {
				tt.opts.Now = fixedNow(t0)
			}
			m, env, err := OpenEnvelope(tt.data, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if m != nil || env != nil {
				t.Fatal("non-nil result with error")
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
		})
	}

	// The boundaries themselves are accepted.
	for _, now := range []time.Time{t0.Add(-DefaultClockSkew), t0.Add(time.Minute)} {
		if _, err := Open(good, OpenOptions{Now: fixedNow(now)}); err != nil {
			t.Errorf("now %v: %v", now, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestOpenUnknownFields(t *testing.T) {
	a := newTestAgent(t, "alice")
	payload := fmt.Sprintf(`{"type":"intent","v":2,"id":"x1","from":%q,"created":%q,"expires":%q,"body":{"k":1},"future_field":[1,2,3]}`,
		a.ID, t0.Format(time.RFC3339Nano), t0.Add(time.Minute).Format(time.RFC3339Nano))
	m, err := Open(sealRecord(t, a, rawPayload(payload)), OpenOptions{Now: fixedNow(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if m.V != 2 || m.ID != "x1" || string(m.Body) != `{"k":1}` {
		t.Fatalf("opened %+v", m)
	}
}

func TestOpenReplay(t *testing.T) {
	a := newTestAgent(t, "alice")
	b := newTestAgent(t, "bob")
	w := NewReplayWindow(ReplayConfig{Window: time.Minute, MaxEntries: 100})
	opts := OpenOptions{Now: fixedNow(t0), Replay: w}

	m := testMessage()
	m.ID = "same-id"
	data := mustSeal(t, a, m)
	if _, err := Open(data, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(data, opts); !errors.Is(err, ErrReplayed) {
		t.Fatalf("second open: %v, want ErrReplayed", err)
	}
	// Re-sealed with a new signature, same (From, ID): still a replay.
	if _, err := Open(mustSeal(t, a, m), opts); !errors.Is(err, ErrReplayed) {
		t.Fatalf("re-sealed: %v, want ErrReplayed", err)
	}
	// Same ID from another sender is a different message.
	if _, err := Open(mustSeal(t, b, m), opts); err != nil {
		t.Fatalf("same ID, other sender: %v", err)
	}
	if w.Len() != 2 {
		t.Fatalf("Len = %d, want 2", w.Len())
	}

	// A message refused for another reason is not recorded.
	m2 := testMessage()
	m2.ID = "expired-first"
	m2.Expires = t0.Add(time.Second)
	data2 := mustSeal(t, a, m2)
	if _, err := Open(data2, OpenOptions{Now: fixedNow(t0.Add(2 * time.Second)), Replay: w}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := Open(data2, opts); err != nil {
		t.Fatalf("after refusal for expiry: %v", err)
	}

	// A long-lived message is refused once the window has passed, even
	// though it has not expired.
	m3 := testMessage()
	m3.ID = "long-lived"
	m3.Expires = t0.Add(time.Hour)
	data3 := mustSeal(t, a, m3)
	if _, err := Open(data3, opts); err != nil {
		t.Fatal(err)
	}
	later := OpenOptions{Now: fixedNow(t0.Add(2 * time.Minute)), Replay: w}
	if _, err := Open(data3, later); !errors.Is(err, ErrTooOld) {
		t.Fatalf("after window: %v, want ErrTooOld", err)
	}
}

func TestOpenTruncated(t *testing.T) {
	a := newTestAgent(t, "alice")
	data := mustSeal(t, a, testMessage())
	for n := 0; n < len(data); n++ {
		_, err := Open(data[:n], OpenOptions{Now: fixedNow(t0)})
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("prefix %d/%d: error = %v, want ErrMalformed or ErrBadSignature", n, len(data), err)
		}
	}
}

func TestOpenBitFlips(t *testing.T) {
	a := newTestAgent(t, "alice")
	data := mustSeal(t, a, testMessage())
	for i := range data {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(data)
			c[i] ^= bit
			if _, err := Open(c, OpenOptions{Now: fixedNow(t0)}); err == nil {
				t.Fatalf("byte %d bit %#x flipped: accepted", i, bit)
			}
		}
	}
}

func TestNewID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := NewID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("NewID = %q (len %d, dup %v)", id, len(id), seen[id])
		}
		seen[id] = true
	}
}

func TestPayloadTypeNotShared(t *testing.T) {
	p := PayloadType()
	p[0] = 'X'
	if string(PayloadType()) != "/parley/msg/1" {
		t.Fatal("PayloadType returned shared storage")
	}
}

func FuzzOpen(f *testing.F) {
	a := newTestAgent(f, "alice")
	valid := mustSeal(f, a, testMessage())
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	f.Add(sealRecord(f, a, rawPayload(`{"type":"intent","v":1}`)))
	f.Add(sealRecord(f, a, rawPayload(`not json`)))
	sentinels := []error{ErrMalformed, ErrBadSignature, ErrWrongSigner, ErrExpired, ErrNotYetValid, ErrTooOld, ErrReplayed, ErrTooLarge, ErrNotJSON}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, env, err := OpenEnvelope(data, OpenOptions{
			Now:     fixedNow(t0),
			MaxSize: 64 << 10,
			Replay:  NewReplayWindow(ReplayConfig{Window: time.Minute, MaxEntries: 16}),
		})
		if err != nil {
			if m != nil || env != nil {
				t.Fatal("non-nil result with error")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if m == nil || env == nil {
			t.Fatal("nil result without error")
		}
	})
}

// intentBody is a typical intent body of about 300 bytes.
var intentBody = json.RawMessage(`{"capability":"translate.document","params":{"source_lang":"en","target_lang":"fr","format":"markdown","max_words":5000},"constraints":{"deadline":"2026-03-01T12:30:00Z","budget":{"amount":"2.50","currency":"USD"},"region":"eu"},"reply_to":"/p2p/12D3KooWExample/parley","note":"internal docs, no PII"}`)

func BenchmarkSealOpen(b *testing.B) {
	a := newTestAgent(b, "alice")
	w := NewReplayWindow(ReplayConfig{})
	m := Message{Type: "intent", V: 1, Body: intentBody}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		data, err := Seal(a, m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(data, OpenOptions{Replay: w}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpenLibp2pBaseline is the raw go-libp2p record envelope
// round trip of the same payload bytes, for comparison.
func BenchmarkSealOpenLibp2pBaseline(b *testing.B) {
	a := newTestAgent(b, "alice")
	m := testMessage()
	m.From = a.ID
	m.ID = NewID()
	m.Expires = m.Created.Add(DefaultTTL)
	m.Body = intentBody
	payload, err := json.Marshal(&m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		env, err := record.Seal(rawPayload(payload), a.Key)
		if err != nil {
			b.Fatal(err)
		}
		data, err := env.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		var out rawPayload
		if _, err := record.ConsumeTypedEnvelope(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}
