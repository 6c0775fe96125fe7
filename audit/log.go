package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleynet/parley/internal/fsync"
)

var log = logging.Logger("parley/audit")

// Defaults for the zero Options.
const (
	// DefaultMaxFileSize is the size at which a log file rotates.
	DefaultMaxFileSize = 16 << 20
	// DefaultQueueSize is how many records may wait for the committer.
	DefaultQueueSize = 8192
	// DefaultCheckpointEvery is how many records a checkpoint covers at
	// most beyond the one before it (plus one commit group).
	DefaultCheckpointEvery = 10000
	// DefaultCheckpointInterval is how long records wait at most for a
	// checkpoint to cover them.
	DefaultCheckpointInterval = time.Minute
	// DefaultAddWait is how long records queued by Add wait at most for
	// company in their commit group.
	DefaultAddWait = 100 * time.Millisecond
)

// maxGroupBytes bounds one commit group's write, so one group never holds
// the committer for long or needs a large buffer.
const maxGroupBytes = 8 << 20

// Options tune a Log. The zero value is the default.
type Options struct {
	// MaxFileSize is the size in bytes past which the Log starts a new
	// file: a record that would take the current file past it goes to a
	// new one. A record larger than MaxFileSize gets a file to itself.
	// 0 means DefaultMaxFileSize; negative is an error.
	MaxFileSize int64
	// QueueSize bounds the records queued for the committer, Append's and
	// Add's together; Add and Append block while it is full. 0 means
	// DefaultQueueSize; negative is an error.
	QueueSize int
	// CheckpointEvery is the most records between two checkpoints (each
	// checkpoint is one record in the log and a rewrite of SidecarFile).
	// 0 means DefaultCheckpointEvery; negative is an error.
	CheckpointEvery int
	// CheckpointInterval is the longest a record waits for a checkpoint to
	// cover it. Close writes a last one. 0 means
	// DefaultCheckpointInterval; negative is an error.
	CheckpointInterval time.Duration
	// AddWait is the longest a record queued by Add waits to be written
	// while no Append or Sync waits behind it: records that acknowledge
	// nothing then share one write, fsync and signature with what comes
	// next, instead of costing one each. 0 means DefaultAddWait; negative
	// is an error.
	AddWait time.Duration
	// Registerer, if set, receives the Log's metrics (see the package
	// doc); Close unregisters them. Nil registers none.
	Registerer prometheus.Registerer

	// openFile opens the files the Log appends to; nil means os.OpenFile.
	// Tests set it to inject write and fsync failures.
	openFile func(name string, flag int, perm fs.FileMode) (appendFile, error)
	// tick, if set, replaces the checkpoint timer, so tests can trigger a
	// timed checkpoint without waiting for one.
	tick <-chan time.Time
}

// appendFile is what the Log needs of the file it appends to: *os.File,
// or a test's wrapper that fails on demand.
type appendFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

func osOpenFile(name string, flag int, perm fs.FileMode) (appendFile, error) {
	return os.OpenFile(name, flag, perm)
}

// Log appends to an audit log directory. Its methods are safe for
// concurrent use. One committer goroutine, started by Open and stopped by
// Close, writes what Append and Add queue: everything queued while it
// fsyncs goes out together in the next commit group, with one write, one
// fsync and one signature.
type Log struct {
	dir      string
	key      crypto.PrivKey
	max      int64
	every    int
	interval time.Duration
	addWait  time.Duration
	sigExtra int // how much longer a line gets when signed
	openFile func(string, int, fs.FileMode) (appendFile, error)
	metrics  *metrics
	lock     io.Closer // the directory lock, held until Close

	queue chan *entry
	stop  chan struct{} // closed by Close: drain, checkpoint, exit
	done  chan struct{} // closed by the committer as it exits

	// sendMu is held shared while queueing and exclusively by Close to
	// set closed, so nothing is queued after the committer's last drain.
	sendMu    sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error

	broken atomic.Pointer[brokenState]

	// Owned by the committer goroutine (by Open before it starts).
	f         appendFile
	index     int      // the current file's number
	size      int64    // the current file's size
	seq       uint64   // seq of the last record written
	prev      string   // hash of the last record's line
	tree      frontier // over every record written
	sinceCkpt int      // records since the last checkpoint record
	buf       []byte
	finalErr  error // what the committer's last work left for Close
}

type brokenState struct{ err error }

// entry is one item of the committer's queue: a record to write, or (mid
// nil) a barrier that Sync waits on.
type entry struct {
	mid  []byte        // the record's line between `{"seq":N,` and `,"prev":`
	done chan struct{} // closed once written or failed; nil for Add
	// Set by the committer before done is closed.
	seq  uint64
	prev string
	sig  []byte
	seg  int // the commit segment holding it (see commit)
	err  error
}

// Open opens the audit log in dir for appending, creating dir (mode 0700)
// and its first file if they do not exist. Records are signed with key.
//
// Open resumes from the last signed record. What follows it was never
// acknowledged — a torn final line, or complete records of a commit group
// whose signed last record a crash kept off the disk — and is truncated
// away with a warning. A last record that does not parse, or whose
// signature does not verify with key, is not repaired: Open fails with an
// error naming its file and line. So does a log that ends before the
// records its checkpoint (SidecarFile) covers, with an error wrapping
// ErrTruncated, and one whose SidecarFile is missing although the log has
// checkpoints. Open rebuilds the tree state from SidecarFile (or, for a
// log without one, from all its records) and writes a fresh checkpoint if
// the log has grown past it. It does not check the rest of the log;
// Verify does.
//
// Only one Log may have dir open at a time (on systems with flock); a second
// Open fails with ErrLocked, and so does an Open while a Prune runs.
func Open(dir string, key crypto.PrivKey, opts Options) (*Log, error) {
	if key == nil {
		return nil, fmt.Errorf("audit: open %s: nil key", dir)
	}
	for _, o := range []struct {
		name string
		v    int64
	}{
		{"MaxFileSize", opts.MaxFileSize},
		{"QueueSize", int64(opts.QueueSize)},
		{"CheckpointEvery", int64(opts.CheckpointEvery)},
		{"CheckpointInterval", int64(opts.CheckpointInterval)},
		{"AddWait", int64(opts.AddWait)},
	} {
		if o.v < 0 {
			return nil, fmt.Errorf("audit: open %s: Options.%s is %d; want 0 (default) or more", dir, o.name, o.v)
		}
	}
	l := &Log{
		dir: dir, key: key,
		max:      orDefault(opts.MaxFileSize, DefaultMaxFileSize),
		every:    int(orDefault(int64(opts.CheckpointEvery), DefaultCheckpointEvery)),
		interval: time.Duration(orDefault(int64(opts.CheckpointInterval), int64(DefaultCheckpointInterval))),
		addWait:  time.Duration(orDefault(int64(opts.AddWait), int64(DefaultAddWait))),
		openFile: opts.openFile,
		queue:    make(chan *entry, orDefault(opts.QueueSize, DefaultQueueSize)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if l.openFile == nil {
		l.openFile = osOpenFile
	}
	probe, err := key.Sign([]byte("parley audit: signature length"))
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: sign with the node key: %w", dir, err)
	}
	// A signed line has a quoted signature where an unsigned one has null.
	l.sigExtra = base64.StdEncoding.EncodedLen(len(probe)) + 2 - len("null")

	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", dir, err)
		}
		if err := fsync.Dir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("audit: open %s: sync parent directory: %w", dir, err)
		}
	}
	lock, err := lockDir(dir, lockFile)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	l.lock = lock
	// Resuming reads the anchor and lists the files: not while a Prune
	// changes both.
	plock, err := lockDir(dir, pruneLock)
	if err != nil {
		_ = lock.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("audit: open %s: a prune is running; open it again once it is done: %w", dir, err)
		}
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	err = l.resume()
	_ = plock.Close()
	if err != nil {
		if l.f != nil {
			_ = l.f.Close()
		}
		_ = lock.Close()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	if l.metrics, err = newMetrics(opts.Registerer); err != nil {
		_ = l.f.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	tick := opts.tick
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(l.interval)
		tick = ticker.C
	}
	go l.run(tick, ticker)
	return l, nil
}

func orDefault[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// create starts file index, empty, and makes its creation durable.
func (l *Log) create(index int) error {
	name := fileName(index)
	f, err := l.openFile(filepath.Join(l.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := fsync.Dir(l.dir); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync directory after creating %s: %w", name, err)
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.index, l.size = f, index, 0
	return nil
}

// Append writes r as the log's next record and returns once it is durable:
// written and fsynced, with a signature over it (its own, or that of the
// last record of its commit group, which covers it through the chain). It
// sets r's Seq and Prev, and Sig for a record that ends its group
// (overwriting what the caller put there), and its Time if it is zero;
// Time is stored in UTC. It returns the record as stored (as ParseRecord
// would read it back).
//
// Detail must be valid JSON or empty; Kind must not be empty or
// KindCheckpoint. A record refused for its content leaves no trace. Once
// a write or fsync fails the log is broken (see Err) and Append fails at
// once with an error wrapping ErrBroken; after Close it fails with
// ErrClosed.
//
// Append takes no context: it waits for at most a full queue and one
// commit, and so is bounded by the disk's fsync, the same as a synchronous
// write would be; abandoning the wait would not abandon the write.
func (l *Log) Append(r Record) (Record, error) {
	start := time.Now()
	e, stored, err := l.prepare(r, "append", true)
	if err != nil {
		return Record{}, err
	}
	defer func() { l.metrics.append.Observe(time.Since(start).Seconds()) }()
	e.done = make(chan struct{})
	if err := l.enqueue(context.Background(), e); err != nil {
		return Record{}, err
	}
	<-e.done
	if e.err != nil {
		return Record{}, e.err
	}
	stored.Seq, stored.Prev, stored.Sig = e.seq, e.prev, e.sig
	return stored, nil
}

// Add queues r to be written with the next commit group and returns
// without waiting for the fsync: for records that acknowledge nothing,
// such as intents received. Records keep their order across Add and
// Append: a record added before an Append gets the smaller seq and is
// durable when that Append returns. Sync waits for everything added so
// far.
//
// Add blocks while the queue is full (Options.QueueSize), until ctx is
// done; it never drops a record to make room. It fails for a record
// Append would refuse, after Close (ErrClosed), once the log is broken
// (ErrBroken) and when ctx ends first. A record that Add accepted and a
// later failure kept off the disk is logged as lost, and Err reports the
// failure.
func (l *Log) Add(ctx context.Context, r Record) error {
	e, _, err := l.prepare(r, "add", false)
	if err != nil {
		return err
	}
	return l.enqueue(ctx, e)
}

// Sync returns once every record queued before it is durable, or with
// the error that kept one off the disk. It stops waiting when ctx is done
// (the records are still written).
func (l *Log) Sync(ctx context.Context) error {
	e := &entry{done: make(chan struct{})}
	if err := l.enqueue(ctx, e); err != nil {
		return err
	}
	select {
	case <-e.done:
		return e.err
	case <-ctx.Done():
		return fmt.Errorf("audit: sync %s: %w", l.dir, ctx.Err())
	}
}

// Err returns nil while the log is healthy, and once a write, fsync,
// rotation or checkpoint failed, that failure, wrapping ErrBroken. It
// stays broken until the process opens the log anew (after fixing the
// disk); Open then trims whatever the failure left unacknowledged.
func (l *Log) Err() error {
	if b := l.broken.Load(); b != nil {
		return b.err
	}
	return nil
}

func (l *Log) setBroken(cause error) {
	err := fmt.Errorf("%w: %s: %w", ErrBroken, l.dir, cause)
	if l.broken.CompareAndSwap(nil, &brokenState{err: err}) {
		l.metrics.broken.Set(1)
		log.Errorw("audit log broken: no further records will be written", "dir", l.dir, "err", cause)
	}
}

// prepare checks and encodes r in the caller's goroutine, so that the
// committer only has to splice in seq, prev and sig. With stored it also
// returns r as ParseRecord will read it back, less those three fields.
func (l *Log) prepare(r Record, op string, stored bool) (*entry, Record, error) {
	r.Seq, r.Prev, r.Sig = 0, "", nil
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC().Round(0) // Round(0) drops the monotonic reading
	// encoding/json would replace invalid UTF-8 with U+FFFD in a form that
	// does not re-encode to the same bytes; replace it first.
	for _, s := range []*string{&r.Kind, &r.Task, &r.Agent, &r.Peer, &r.Rationale} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	switch r.Kind {
	case "":
		return nil, Record{}, fmt.Errorf("audit: %s: record has no kind", op)
	case KindCheckpoint:
		return nil, Record{}, fmt.Errorf("audit: %s: kind %q is reserved for the log's own checkpoints", op, r.Kind)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, Record{}, fmt.Errorf("audit: %s %s record: %w", op, r.Kind, err)
	}
	if !strings.HasPrefix(string(b[:len(lineHead)+1]), lineHead+"0") || !strings.HasSuffix(string(b), emptyTail) {
		return nil, Record{}, fmt.Errorf("audit: %s %s record: unexpected encoding %.40q", op, r.Kind, b)
	}
	mid := b[len(lineHead)+2 : len(b)-len(emptyTail)]
	if n := l.maxLineLen(len(mid)); n > MaxRecordSize {
		return nil, Record{}, fmt.Errorf("audit: %s %s record: up to %d bytes: %w", op, r.Kind, n, ErrTooLarge)
	}
	if stored && len(r.Detail) > 0 {
		// The stored form of Detail is compacted and HTML-escaped, as
		// encoding/json embeds it.
		if r.Detail, err = json.Marshal(r.Detail); err != nil {
			return nil, Record{}, fmt.Errorf("audit: %s %s record: %w", op, r.Kind, err)
		}
	} else if len(r.Detail) == 0 {
		r.Detail = nil
	}
	return &entry{mid: mid}, r, nil
}

// The fixed parts of a line: lineHead, seq, ",", the middle, prevHead,
// prev, sigHead, sig or null, "}".
const (
	lineHead  = `{"seq":`
	prevHead  = `,"prev":"`
	sigHead   = `","sig":`
	emptyTail = prevHead + sigHead + "null}" // with prev ""
)

// lineLen is the length of an unsigned line.
func lineLen(seq uint64, mid, prev int) int {
	return len(lineHead) + digits(seq) + 1 + mid + len(prevHead) + prev + len(sigHead) + len("null}")
}

// maxLineLen bounds the line of a record with a middle of mid bytes:
// largest seq, a prev and a signature.
func (l *Log) maxLineLen(mid int) int {
	return lineLen(^uint64(0), mid, 64) + l.sigExtra
}

func digits(n uint64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// appendLine appends the unsigned line of record seq.
func appendLine(dst []byte, seq uint64, mid []byte, prev string) []byte {
	dst = append(dst, lineHead...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ',')
	dst = append(dst, mid...)
	dst = append(dst, prevHead...)
	dst = append(dst, prev...)
	dst = append(dst, sigHead...)
	return append(dst, "null}"...)
}

// enqueue hands e to the committer, blocking while the queue is full,
// until ctx is done.
func (l *Log) enqueue(ctx context.Context, e *entry) error {
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.Err(); err != nil {
		return err
	}
	select {
	case l.queue <- e:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: %s: queue full: %w", l.dir, ctx.Err())
	}
}

// Close writes what is queued and a last checkpoint, stops the committer,
// closes the current file and releases the directory. Append, Add and
// Sync fail with ErrClosed after it; a second Close does nothing. Close
// reports a broken log's failure.
func (l *Log) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		l.sendMu.Lock()
		l.closed = true
		l.sendMu.Unlock()
		close(l.stop)
		<-l.done
		err := l.finalErr
		if lerr := l.lock.Close(); err == nil && lerr != nil {
			err = fmt.Errorf("audit: close %s: %w", l.dir, lerr)
		}
		l.metrics.unregister()
		l.closeErr = err
	})
	if !first {
		return nil
	}
	return l.closeErr
}

// run is the committer: it takes what is queued, commits it as one group
// and repeats, until Close.
func (l *Log) run(tick <-chan time.Time, ticker *time.Ticker) {
	defer close(l.done)
	if ticker != nil {
		defer ticker.Stop()
	}
	// A group of Adds alone waits up to addWait for an Append or Sync to
	// join it (or to fill up): a node that records each intent it
	// receives, and then an action of its own, writes them together.
	wait := time.NewTimer(l.addWait)
	wait.Stop()
	defer wait.Stop()
	var waiting <-chan time.Time // wait.C while a group of Adds waits
	var g pending
	for {
		timed, waited := false, false
		select {
		case e := <-l.queue:
			g.add(e)
		case <-tick:
			timed = true
		case <-waiting:
			waited = true
		case <-l.stop:
			l.finish(&g)
			return
		}
		l.drain(&g)
		if !timed && !waited && !g.due(cap(l.queue)) {
			if waiting == nil {
				wait.Reset(l.addWait)
				waiting = wait.C
			}
			continue
		}
		if waiting != nil {
			wait.Stop()
			waiting = nil
		}
		l.commit(g.batch, timed)
		g.reset()
	}
}

// pending is the next commit group as the committer gathers it.
type pending struct {
	batch  []*entry
	bytes  int
	waiter bool // an Append or Sync waits on it
}

func (g *pending) add(e *entry) {
	g.batch = append(g.batch, e)
	g.bytes += len(e.mid)
	g.waiter = g.waiter || e.done != nil
}

// full reports whether the group is at its limits: maxGroupBytes, or as
// many entries as the queue holds.
func (g *pending) full(queue int) bool {
	return g.bytes >= maxGroupBytes || len(g.batch) >= queue
}

// due reports whether the group is written now rather than waiting for
// company: someone waits on it, or it is full.
func (g *pending) due(queue int) bool { return g.waiter || g.full(queue) }

func (g *pending) reset() {
	clear(g.batch)
	g.batch, g.bytes, g.waiter = g.batch[:0], 0, false
}

// drain adds to g what is queued now, up to a group's limits.
func (l *Log) drain(g *pending) {
	for !g.full(cap(l.queue)) {
		select {
		case e := <-l.queue:
			g.add(e)
		default:
			return
		}
	}
}

// finish writes everything still queued, then a last checkpoint, and
// closes the file. Close has set closed, so nothing more can be queued.
func (l *Log) finish(g *pending) {
	for {
		l.drain(g)
		last := len(l.queue) == 0
		l.commit(g.batch, last)
		g.reset()
		if last {
			break
		}
	}
	l.finalErr = l.Err()
	if err := l.f.Close(); err != nil && l.finalErr == nil {
		l.finalErr = fmt.Errorf("audit: close %s: %w", fileName(l.index), err)
	}
}

// segment is the part of a commit group that goes to one file: written
// with one write and one fsync, its last record signed.
type segment struct {
	newFile    bool // starts the file after the previous segment's
	start, end int  // its bytes in the group's buffer
	records    int
	ckpt       bool // ends with a checkpoint record
	seq        uint64
	prev       string
	tree       frontier
	lastOff    int64 // offset of its last line in its file
}

// group builds a commit group's lines.
type group struct {
	l        *Log
	buf      []byte
	segs     []segment
	cur      segment
	fileSize int64 // size of cur's file before cur
	seq      uint64
	prev     string // hash of the last finalized line
	tree     frontier
	pend     int    // start in buf of the last line, still unsigned; -1 for none
	pendE    *entry // the entry of that line, nil for a checkpoint
	lastOff  int64
}

// add appends the line of the next record, whose middle is mid (or, for a
// checkpoint record, built by ckpt once the lines before it are final). A
// record that would take the file past its size ends the segment.
func (g *group) add(e *entry, mid []byte, midLen int, ckpt func(dst []byte) []byte) error {
	seq := g.seq + 1
	prevLen := 2 * 32
	if seq == 1 {
		prevLen = 0
	}
	need := int64(lineLen(seq, midLen, prevLen) + g.l.sigExtra + 1)
	used := g.fileSize + int64(len(g.buf)-g.cur.start)
	switch {
	case g.pend >= 0 && used+1+need > g.l.max:
		if err := g.finalize(true); err != nil {
			return err
		}
		g.closeSegment()
		g.cur = segment{newFile: true, start: len(g.buf)}
		g.fileSize = 0
	case g.pend >= 0:
		if err := g.finalize(false); err != nil {
			return err
		}
	case used > 0 && used+need > g.l.max:
		// The group's first record does not fit the current file.
		g.cur.newFile = true
		g.fileSize = 0
	}
	g.pend = len(g.buf)
	if ckpt != nil {
		mid = ckpt(nil)
	}
	g.buf = appendLine(g.buf, seq, mid, g.prev)
	g.seq = seq
	g.pendE = e
	if e != nil {
		e.seq, e.prev, e.seg = seq, g.prev, len(g.segs)
	}
	g.cur.records++
	g.cur.ckpt = ckpt != nil
	return nil
}

// finalize ends the pending line, signing it if sign.
func (g *group) finalize(sign bool) error {
	line := g.buf[g.pend:]
	if sign {
		sig, err := g.l.key.Sign(line)
		if err != nil {
			return fmt.Errorf("sign record %d: %w", g.seq, err)
		}
		g.buf = g.buf[:len(g.buf)-len("null}")]
		g.buf = append(g.buf, '"')
		g.buf = base64.StdEncoding.AppendEncode(g.buf, sig)
		g.buf = append(g.buf, '"', '}')
		line = g.buf[g.pend:]
		if g.pendE != nil {
			g.pendE.sig = sig
		}
	}
	g.prev = lineHash(line)
	g.tree.pushLine(line)
	g.lastOff = g.fileSize + int64(g.pend-g.cur.start)
	g.buf = append(g.buf, '\n')
	g.pend, g.pendE = -1, nil
	return nil
}

func (g *group) closeSegment() {
	g.cur.end = len(g.buf)
	g.cur.seq, g.cur.prev, g.cur.tree, g.cur.lastOff = g.seq, g.prev, g.tree.clone(), g.lastOff
	g.segs = append(g.segs, g.cur)
}

// end signs the last line and closes the last segment.
func (g *group) end() error {
	if g.pend < 0 {
		return nil
	}
	if err := g.finalize(true); err != nil {
		return err
	}
	g.closeSegment()
	return nil
}

// commit writes batch as one group: with a checkpoint record at its end
// if one is due, or forced (timer or Close) and records are uncovered.
func (l *Log) commit(batch []*entry, force bool) {
	if err := l.Err(); err != nil {
		l.ackAll(batch, 0, err)
		return
	}
	records := 0
	for _, e := range batch {
		if e.mid != nil {
			records++
		}
	}
	uncovered := l.sinceCkpt + records
	ckpt := uncovered >= l.every || force && uncovered > 0
	if records == 0 && !ckpt {
		l.ackAll(batch, 0, nil)
		return
	}

	g := &group{l: l, buf: l.buf[:0], fileSize: l.size, seq: l.seq, prev: l.prev, tree: l.tree.clone(), pend: -1}
	var err error
	for _, e := range batch {
		if e.mid == nil {
			e.seg = len(g.segs) // a barrier: needs what is before it
			continue
		}
		if err = g.add(e, e.mid, len(e.mid), nil); err != nil {
			break
		}
	}
	if err == nil && ckpt {
		now := time.Now()
		midLen := len(checkpointMid(nil, now, g.seq, emptyRoot))
		err = g.add(nil, nil, midLen, func(dst []byte) []byte {
			return checkpointMid(dst, now, uint64(g.tree.n), g.tree.root())
		})
	}
	if err == nil {
		err = g.end()
	}
	if cap(g.buf) <= 2*maxGroupBytes {
		l.buf = g.buf[:0] // reuse, unless one huge record grew it
	}
	if err != nil {
		l.setBroken(err)
		l.ackAll(batch, 0, l.Err())
		return
	}

	durable := len(g.segs)
	for k := range g.segs {
		s := &g.segs[k]
		if err := l.writeSegment(g.buf[s.start:s.end], s.newFile); err != nil {
			l.setBroken(err)
			durable = k
			break
		}
		l.seq, l.prev, l.tree = s.seq, s.prev, s.tree
		l.metrics.records.Add(float64(s.records))
		l.sinceCkpt += s.records
		if s.ckpt {
			l.sinceCkpt = 0
		}
	}
	l.metrics.group.Observe(float64(records + btoi(ckpt)))
	// Records are acknowledged as soon as they are durable; barriers
	// (Sync) wait for the checkpoint too.
	l.ack(batch, durable, l.Err(), false)
	if durable == len(g.segs) && ckpt {
		last := g.segs[len(g.segs)-1]
		if err := l.writeSidecar(last.lastOff); err != nil {
			l.setBroken(err)
		}
	}
	l.ack(batch, durable, l.Err(), true)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeSegment appends one segment, in a new file if newFile, and fsyncs.
func (l *Log) writeSegment(b []byte, newFile bool) error {
	if newFile {
		if err := l.create(l.index + 1); err != nil {
			return fmt.Errorf("rotate to %s: %w", fileName(l.index+1), err)
		}
	}
	name := fileName(l.index)
	if _, err := l.f.Write(b); err != nil {
		// Cut off whatever part was written, so that the file ends at its
		// last acknowledged record; Open would trim it anyway.
		if terr := l.f.Truncate(l.size); terr != nil {
			return fmt.Errorf("write %s: %w (and cutting it back: %v)", name, err, terr)
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	t0 := time.Now()
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	l.metrics.fsync.Observe(time.Since(t0).Seconds())
	l.size += int64(len(b))
	return nil
}

// writeSidecar replaces SidecarFile with a checkpoint at the current
// size, whose last line starts at lastOff in the current file.
func (l *Log) writeSidecar(lastOff int64) error {
	s, err := newSidecar(l.key, &l.tree, l.prev, l.index, lastOff, time.Now())
	if err != nil {
		return err
	}
	if err := writeJSONFile(l.dir, SidecarFile, s); err != nil {
		return fmt.Errorf("write %s: %w", SidecarFile, err)
	}
	return nil
}

// ack ends the waits of batch's record entries, or with barriers of its
// barriers: those in segments before durable succeed, the rest get err.
// Added records that failed are logged as lost, since no caller waits to
// hear it.
func (l *Log) ack(batch []*entry, durable int, err error, barriers bool) {
	lost := 0
	for _, e := range batch {
		if (e.mid == nil) != barriers {
			continue
		}
		if e.seg >= durable || barriers && err != nil {
			e.err = err
			if e.mid != nil && e.done == nil {
				lost++
			}
		}
		if e.done != nil {
			close(e.done)
		}
	}
	if lost > 0 {
		log.Errorw("audit records queued with Add were lost: the log broke before they were durable", "dir", l.dir, "records", lost, "err", err)
	}
}

func (l *Log) ackAll(batch []*entry, durable int, err error) {
	l.ack(batch, durable, err, false)
	l.ack(batch, durable, err, true)
}

const (
	filePrefix = "audit-"
	fileSuffix = ".jsonl"
	lockFile   = ".lock"
	pruneLock  = ".prune.lock"
)

// fileName is the name of file number index: audit-000001.jsonl.
func fileName(index int) string {
	return fmt.Sprintf("%s%06d%s", filePrefix, index, fileSuffix)
}

// listFiles returns the numbers of dir's audit files, in order. Other
// names are ignored.
func listFiles(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var idx []int
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, filePrefix), fileSuffix))
		if err != nil || n < 1 || fileName(n) != name {
			continue
		}
		idx = append(idx, n)
	}
	sort.Ints(idx)
	return idx, nil
}
