package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseRecord checks that ParseRecord never panics, that its errors
// wrap ErrMalformed, and that a line it accepts is the canonical form of
// the record it returns (so re-encoding is stable, as signing needs).
func FuzzParseRecord(f *testing.F) {
	key := testKey(f, 1)
	signed := func(r Record) []byte {
		data, err := signedBytes(r)
		if err != nil {
			f.Fatal(err)
		}
		if r.Sig, err = key.Sign(data); err != nil {
			f.Fatal(err)
		}
		line, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		return line
	}
	valid := signed(Record{Seq: 1, Time: t0, Kind: KindAward, Task: "t1", Agent: "a", Peer: "p", Rationale: "best price <3 & fast",
		Detail: json.RawMessage(`{"price":3,"bids":[1,2]}`)})
	f.Add(valid)
	f.Add(signed(Record{Seq: 2, Time: t0, Kind: "x", Prev: lineHash(valid)}))
	f.Add(signed(Record{Seq: 3, Time: t0, Kind: "\u2028", Detail: json.RawMessage(`null`)}))
	unsigned, _ := json.Marshal(Record{Seq: 4, Time: t0, Kind: KindCheckpoint, Detail: json.RawMessage(`{"size":3,"root":"00"}`), Prev: lineHash(valid)})
	f.Add(unsigned) // sig null: covered by a later record's signature
	f.Add(append(bytes.Clone(valid), '\n'))
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Add([]byte(`{"seq":1,"time":"2025-03-01T12:00:00Z","kind":"a","prev":"","sig":"AA=="}`))
	f.Add([]byte(`{"seq":18446744073709551616,"time":"0000-01-01T00:00:00Z","kind":"a","prev":"","sig":"AA=="}`))
	f.Add([]byte(`{"seq":1,"time":"2025-03-01T12:00:00+01:00","kind":"a","detail":{"a" : 1},"prev":"","sig":"AA=="}`))
	f.Add([]byte("\x00\xff\xfe{\"seq\":[[[[[[["))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := json.Marshal(r)
		if err != nil || !bytes.Equal(again, line) {
			t.Fatalf("accepted %q but it re-encodes to %q (%v)", line, again, err)
		}
		r2, err := ParseRecord(again)
		if err != nil || r2.Seq != r.Seq || !r2.Time.Equal(r.Time) {
			t.Fatalf("re-encoded record does not parse the same: %v", err)
		}
		_ = checkSig(r, key.GetPublic())
	})
}
