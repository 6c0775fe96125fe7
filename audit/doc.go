// Package audit owns parley's tamper-evident audit log: an append-only
// directory of JSON-lines files in which every record carries the SHA-256
// of the line before it, commit groups are signed by the node key, and
// signed checkpoints (RFC 6962 Merkle tree heads) pin the log's length so
// that old files can be pruned and records cut off the end are noticed.
//
// Log appends records durably. Append returns only after its record is
// fsynced and covered by a signature, so a caller that records an action
// before acknowledging it never acknowledges an action the log lacks. Add
// queues a record that acknowledges nothing without waiting. Concurrent
// Appends and Adds share one write, one fsync and one signature: a single
// committer goroutine, owned by the Log and stopped by Close, writes
// whatever queued up while it was busy as one commit group. Adds alone
// wait up to Options.AddWait for company, so that the next Append carries
// them at no extra cost. A failed
// write or fsync leaves the Log broken (Err, ErrBroken) rather than
// guessing what reached the disk. Verify checks a log against the node's
// public key and names the first bad record; Tail reads the last records;
// Prune removes old files; ParseRecord is the one decoder of a line.
//
// The package does not decide what is recorded (package node and its
// callers do), where the log lives in a home (package home), nor when to
// prune (the operator, through 'parley audit prune'). It does not decide
// what a node does once its log is broken: it only reports the state.
//
// # On-disk format (version 1)
//
// This section is meant to be enough to verify a log without this package.
//
// A log is a directory holding:
//
//   - audit-NNNNNN.jsonl: the records, in files numbered 1, 2, 3 … (at
//     least six digits, zero-padded). Each line of a file is one record,
//     ended by "\n". The records' seqs run on across files without a gap.
//   - checkpoint.json (SidecarFile): the latest signed checkpoint, replaced
//     atomically (written to a temporary file, fsynced, renamed, directory
//     fsynced).
//   - anchor.json (AnchorFile): present only after a prune; what is kept
//     of the removed records.
//   - .lock, .prune.lock: empty files for flock; ignore them.
//
// Record line. A line is exactly the encoding/json form of this object,
// fields in this order, with no whitespace; optional fields are left out
// when empty. A verifier must reject a line that is not byte-for-byte the
// canonical re-encoding of what it decodes to (ParseRecord does), so that
// the signature and the chain hashes pin the line itself:
//
//	seq        number   1, 2, 3 … across the whole log
//	time       string   RFC 3339 with nanoseconds, UTC, trailing zeros trimmed ("2025-03-01T12:00:00.5Z")
//	kind       string   non-empty, e.g. "award"; "checkpoint" is the log's own (below)
//	task       string   optional
//	agent      string   optional
//	peer       string   optional
//	rationale  string   optional
//	detail     any      optional JSON value, compacted, with <, >, & escaped as \u003c, \u003e, \u0026
//	prev       string   lowercase hex SHA-256 of the previous record's line (without "\n"); "" for seq 1
//	sig        string   standard base64 (padded) signature, or null
//
// Strings are encoded as encoding/json does: valid UTF-8, with <, >, &,
// U+2028 and U+2029 escaped as \u003c, \u003e, \u0026, \u2028, \u2029.
//
// Signatures. A record's signed bytes are its line with the sig value
// replaced by null, i.e. its line ending in `,"sig":null}`. The node key is
// an Ed25519 key (the one embedded in the node's PeerID) and sig is a
// plain Ed25519 signature (RFC 8032) over those bytes. Since a record's
// line includes prev, a signature covers, through the chain, every record
// before it. A writer signs only the last record of each commit group (and
// of each part of a group that fills a file): every file but the last ends
// with a signed record, and a record with sig null is covered by the next
// signed one. Logs written before groups existed sign every record, which
// is equally valid.
//
// The unacknowledged tail. Records after the log's last signed record
// were never acknowledged: a crash cut their group short (a group is
// written with one write, so a crash can leave a prefix of it: complete
// unsigned lines and a torn last line). A verifier reports them and does
// not count them; Open truncates them, unless a checkpoint covers them
// (then the log was cut, and Open refuses it).
//
// Merkle tree. Leaf i (0-based) of the log's tree is the line (without
// "\n") of record seq i+1, checkpoint records included. Hashes are RFC
// 6962's, as in golang.org/x/mod/sumdb/tlog: a leaf hashes as
// SHA-256(0x00 || line), an interior node as SHA-256(0x01 || left ||
// right), the tree of n > 1 leaves splits at the largest power of two
// below n, and the empty tree's hash is SHA-256 of nothing. A frontier of
// a tree of n leaves is the list of the hashes of the perfect subtrees
// that n's binary digits split it into, from the largest (leftmost) down:
// one hash per 1 bit of n. The tree hash is the frontier folded from the
// right: h = last; for each earlier f, h = SHA-256(0x01 || f || h).
//
// Checkpoint record. The Log writes, as the signed last record of a group,
// a record of kind "checkpoint" whose detail is
// {"size":N,"root":"<hex>"}: N is its own seq minus one and root the
// lowercase hex tree hash of records 1 … N. It does so at least every
// Options.CheckpointEvery records (plus one group), at least every
// Options.CheckpointInterval while records come in, and at Close. After
// the group holding it is durable, the Log rewrites the sidecar.
//
// Sidecar (checkpoint.json). One JSON object:
//
//	{"size":M,"root":"<hex>","last":"<hex>","time":"<RFC 3339>","sig":"<base64>",
//	 "file":F,"offset":O,"frontier":["<hex>",…]}
//
// size, root, last and time are signed: sig is the node key's Ed25519
// signature over the bytes
//
//	"parley audit checkpoint v1\nsize " M "\nroot " root "\nlast " last "\ntime " time "\n"
//
// with M in decimal and root, last and time exactly as in the JSON. It
// says: the log's first M records have tree hash root, and record M's
// line hashes (plain SHA-256, hex) to last ("" when M is 0). file, offset
// and frontier are unsigned hints for Open (the file and byte offset of
// record M's line, the frontier at M); a verifier ignores them. The sidecar
// is written only after the records it covers are durable, so a log that
// does not reach it has lost records: a verifier fails it as truncated.
// Open writes a sidecar for a log that has none, before any checkpoint
// record, so a log with checkpoint records (or an anchor) but no sidecar
// has lost it.
//
// Anchor (anchor.json). One JSON object, unsigned:
//
//	{"first_file":K,"size":C,"last":"<hex>","last_time":"<RFC 3339>","frontier":["<hex>",…]}
//
// Files 1 … K-1, holding records 1 … C, were removed; last is the SHA-256
// hex of record C's line (the prev of record C+1, the first line of file
// K), last_time its time, and frontier the tree's frontier at C. The
// anchor needs no signature: a tree hash computed from its frontier and
// the kept records must match the sidecar's signed root, which covers at
// least C records (Prune removes nothing beyond the sidecar). Files below
// K that are still present were left by an interrupted prune; a verifier
// skips them.
//
// Verifying. Read the anchor and the sidecar first, then list the files
// (a writer may be appending meanwhile; it only ever adds to what the
// sidecar covers). Start from seq C+1, prev last and the anchor's frontier
// (or seq 1, prev "" and the empty tree) at file K (or 1). For each line
// check the canonical form, seq, prev, and any signature; for a checkpoint
// record, that it is signed, that size is its seq minus one and that root
// is the current tree hash; push the line as a leaf; when the tree reaches
// the sidecar's size, check its signature and root. Every file but the
// last must end with a signed record. At the end, the last signed record's
// seq must be at least the sidecar's size, and the sidecar's size at least
// the anchor's. A log with checkpoint records or an anchor but no sidecar
// fails. A log with no sidecar, no checkpoint record and no anchor was
// written before checkpoints: it verifies, but its end cannot be checked.
//
// # What the log can show and what it cannot
//
// Editing, deleting, inserting or reordering records or files, records
// signed by another key, and removing records from the end of the log up
// to its latest sidecar are all caught. Records written after the latest
// sidecar (at most one checkpoint's worth) can be cut off the end
// undetected, as can a whole log whose sidecar is removed before its first
// checkpoint record. A copy of the sidecar kept elsewhere closes that gap
// up to the copy.
//
// # Metrics
//
// With Options.Registerer: parley_audit_fsync_seconds (histogram, one
// observation per fsync of a commit group), parley_audit_records_total
// (records made durable), parley_audit_commit_group_records (histogram of
// records per group) and parley_audit_broken (1 once broken).
package audit
