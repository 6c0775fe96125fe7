package audit

import (
	"io/fs"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// committer must stop with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// faults controls the files a Log opens through Options.openFile: the
// next write can be held until released, cut short, or failed, and the
// next fsync or truncate failed.
type faults struct {
	mu sync.Mutex
	// hold, if set, makes the next Write signal held and wait on release.
	hold    bool
	held    chan struct{}
	release chan struct{}
	// short >= 0 makes the next Write write only that many bytes and
	// fail with errWrite.
	short    int
	errWrite error
	// cut, if set, makes the Write after the next cutSkip ones write only
	// cut(b) of its bytes b and fail with errWrite.
	cut     func(b []byte) int
	cutSkip int
	// errSync and errTruncate fail the next Sync and every Truncate.
	errSync     error
	errTruncate error
	writes      int // Writes done
}

func newFaults() *faults { return &faults{short: -1} }

func (fl *faults) options(o Options) Options {
	o.openFile = func(name string, flag int, perm fs.FileMode) (appendFile, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &faultyFile{File: f, fl: fl}, nil
	}
	return o
}

// holdNext makes the committer's next Write wait: it returns a channel
// that is closed once the committer is in that Write, and a function that
// lets it go on.
func (fl *faults) holdNext() (held <-chan struct{}, release func()) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.hold = true
	fl.held, fl.release = make(chan struct{}), make(chan struct{})
	r := fl.release
	return fl.held, func() { close(r) }
}

// count is the number of Writes so far.
func (fl *faults) count() int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.writes
}

func (fl *faults) set(f func(*faults)) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	f(fl)
}

type faultyFile struct {
	*os.File
	fl *faults
}

func (f *faultyFile) Write(b []byte) (int, error) {
	fl := f.fl
	fl.mu.Lock()
	hold, held, release := fl.hold, fl.held, fl.release
	fl.hold = false
	short, errWrite := fl.short, fl.errWrite
	if short >= 0 {
		fl.short, fl.errWrite = -1, nil
	}
	var cut func([]byte) int
	if fl.cut != nil {
		if fl.cutSkip == 0 {
			cut, errWrite, fl.cut = fl.cut, fl.errWrite, nil
		} else {
			fl.cutSkip--
		}
	}
	fl.writes++
	fl.mu.Unlock()
	if hold {
		close(held)
		<-release
	}
	if cut != nil {
		short = cut(b)
	}
	if short >= 0 {
		n, _ := f.File.Write(b[:min(short, len(b))])
		return n, errWrite
	}
	return f.File.Write(b)
}

func (f *faultyFile) Sync() error {
	f.fl.mu.Lock()
	err := f.fl.errSync
	f.fl.errSync = nil
	f.fl.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	f.fl.mu.Lock()
	err := f.fl.errTruncate
	f.fl.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Truncate(size)
}
