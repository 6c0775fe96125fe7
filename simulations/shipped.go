package simulations

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/node"
)

// Setup says what each simulated node ran with, so a figure is read
// against the node users run and not a lighter one.
type Setup struct {
	// Policy is the policy engine's file: the daemon's default is none,
	// which allows everything, with the engine still consulted.
	Policy string `json:"policy"`
	// Admission is the admission layer's limits.
	Admission string `json:"admission"`
	// Audit is where each node's audit log is kept ("off" for --bare).
	Audit string `json:"audit"`
}

// simAuditQueue is a sim node's audit queue (audit.Options.QueueSize).
const simAuditQueue = 512

// auditLogs gives every simulated node an audit log of its own, as a
// daemon keeps one in its home, in a directory on tmpfs when the machine
// has one: the code path is the daemon's, the disk is not measured.
type auditLogs struct {
	dir  string
	mu   sync.Mutex
	logs []*audit.Log
}

func newAuditLogs(nodes int) (*auditLogs, error) {
	if err := openFiles(2*nodes + 1024); err != nil {
		return nil, err
	}
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "parley-sim-audit-")
	if err != nil {
		return nil, fmt.Errorf("audit logs: %w", err)
	}
	return &auditLogs{dir: dir}, nil
}

// where names the filesystem the logs are on, for Setup.
func (a *auditLogs) where() string {
	if filepath.Dir(a.dir) == "/dev/shm" {
		return fmt.Sprintf("one log per node on tmpfs, queue %d", simAuditQueue)
	}
	return fmt.Sprintf("one log per node in %s, queue %d", filepath.Dir(a.dir), simAuditQueue)
}

// configure opens an audit log for the node cfg describes.
func (a *auditLogs) configure(cfg *node.Config) error {
	l, err := a.open(cfg.NodeKey)
	if err != nil {
		return err
	}
	cfg.AuditLog = l
	return nil
}

func (a *auditLogs) open(key crypto.PrivKey) (*audit.Log, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	// A daemon queues up to 8192 records; a sim node gets few, and 64 KiB
	// of channel per node is what keeps 20,000 from fitting.
	l, err := audit.Open(filepath.Join(a.dir, id.String()), key, audit.Options{QueueSize: simAuditQueue})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	a.mu.Lock()
	a.logs = append(a.logs, l)
	a.mu.Unlock()
	return l, nil
}

// close closes every log, after the nodes, and removes them.
func (a *auditLogs) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, l := range a.logs {
		errs = append(errs, l.Close())
	}
	errs = append(errs, os.RemoveAll(a.dir))
	return errors.Join(errs...)
}

// openFiles raises the process's open-file limit to need if it is lower:
// each node's audit log holds its file and its lock open. Raising the
// hard limit takes root (CAP_SYS_RESOURCE); without it the soft limit
// goes as far as the hard one allows, and a run that cannot fit says so
// before it starts.
func openFiles(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("audit logs: open-file limit: %w", err)
	}
	if lim.Cur >= uint64(need) {
		return nil
	}
	want := lim
	want.Cur = uint64(need)
	if want.Max < want.Cur {
		want.Max = want.Cur
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return nil
	}
	want.Cur, want.Max = lim.Max, lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if lim.Max < uint64(need) {
		return fmt.Errorf("audit logs: %d open files needed (two per node), the limit is %d: raise it (ulimit -n) or run --bare", need, lim.Max)
	}
	return nil
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// setCPU fills the CPU figures of st from the CPU used since from.
func (st *IntentStats) setCPU(from float64) {
	st.CPUSeconds = cpuSeconds() - from
	if st.Delivered > 0 {
		st.CPUPerDeliveryUs = st.CPUSeconds / float64(st.Delivered) * 1e6
	}
}
