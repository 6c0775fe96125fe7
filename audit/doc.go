// Package audit owns parley's tamper-evident audit log: an append-only
// directory of JSON-lines files (audit-000001.jsonl, audit-000002.jsonl, …)
// in which every record carries the SHA-256 of the line before it and the
// node key's signature over itself.
//
// Log appends records durably: Append returns only after the record is
// fsynced, so a caller that records an action before acknowledging it never
// acknowledges an action the log lacks. Files rotate at Options.MaxFileSize
// and the hash chain runs on across them. Verify checks a whole log against
// the node's public key and names the first bad record; Tail reads the last
// records; ParseRecord is the one decoder of a line.
//
// A record's line is the encoding/json form of Record. ParseRecord accepts a
// line only if re-encoding the record gives back the same bytes, so the
// signature, which covers every field but Sig, also pins down the whole line.
//
// What the chain can show and what it cannot: editing, deleting, inserting
// or reordering records or files, and records signed by another key, are all
// caught. Cutting records off the end of the log at a line boundary is not,
// because the log keeps no anchor outside itself; a copy of Report.Records
// and the last record's hash kept elsewhere closes that gap.
//
// The package does not decide what is recorded (package node and its
// callers do), where the log lives in a home (package home), or retention:
// Verify expects the log to start at audit-000001.jsonl with seq 1.
package audit
