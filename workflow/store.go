package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The store is one bbolt file: bucket "runs" holds each workflow's Run as
// JSON under its ID, bucket "contexts" its shared context's snapshot.
// Every change of a run is one transaction, synced before the engine acts
// on it, so what a crash leaves is a state the engine was in.
var (
	bucketRuns     = []byte("runs")
	bucketContexts = []byte("contexts")
)

type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	// The timeout turns a second process on the same file into an error,
	// not a hang (bbolt holds an exclusive flock).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open workflow store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRuns, bucketContexts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("workflow store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) put(r *Run) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("marshal workflow %s: %w", r.ID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRuns).Put([]byte(r.ID), b) })
	if err != nil {
		return fmt.Errorf("save workflow %s: %w", r.ID, err)
	}
	return nil
}

func (s *store) context(id string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		out = slices.Clone(tx.Bucket(bucketContexts).Get([]byte(id)))
		return nil
	})
	return out, err
}

func (s *store) get(id string) (*Run, error) {
	var r *Run
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns).Get([]byte(id))
		if b == nil {
			return fmt.Errorf("%w: %q", ErrUnknown, id)
		}
		r = new(Run)
		return json.Unmarshal(b, r)
	})
	if err != nil {
		if errors.Is(err, ErrUnknown) {
			return nil, err
		}
		return nil, fmt.Errorf("read workflow %s: %w", id, err)
	}
	return r, nil
}

// all returns every run, newest first.
func (s *store) all() ([]*Run, error) {
	var out []*Run
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
			r := new(Run)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("workflow %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read workflows: %w", err)
	}
	slices.SortFunc(out, func(a, b *Run) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// prune deletes the oldest ended runs beyond keep.
func (s *store) prune(keep int) (int, error) {
	runs, err := s.all()
	if err != nil {
		return 0, err
	}
	var drop [][]byte
	ended := 0
	for _, r := range runs {
		if !r.State.Ended() {
			continue
		}
		if ended++; ended > keep {
			drop = append(drop, []byte(r.ID))
		}
	}
	if len(drop) == 0 {
		return 0, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range drop {
			if err := tx.Bucket(bucketRuns).Delete(id); err != nil {
				return err
			}
			if err := tx.Bucket(bucketContexts).Delete(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune workflows: %w", err)
	}
	return len(drop), nil
}

// saver writes runs behind the engine, in order: one goroutine commits
// whatever changed since its last commit in one synced transaction, so a
// burst of changes (parallel steps ending together) costs one sync, and
// no step waits for the disk before the next one starts. Order is kept:
// a change is on disk no later than every change made after it, so a
// crash leaves a state the engine was in. What must be on disk before it
// is acknowledged (a submitted workflow) waits for its generation.
type saver struct {
	st   *store
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	cond     *sync.Cond
	runs     map[string][]byte
	contexts map[string][]byte
	gen      uint64 // of the latest change queued
	saved    uint64 // of the latest change on disk (or failed)
	err      error  // of the latest commit
}

func newSaver(st *store) *saver {
	s := &saver{st: st, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		runs: map[string][]byte{}, contexts: map[string][]byte{}}
	s.cond = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// put queues r (marshalled now) and returns its generation.
func (s *saver) put(r *Run) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("marshal workflow %s: %w", r.ID, err)
	}
	return s.queue(false, r.ID, b), nil
}

func (s *saver) putContext(id string, snap []byte) uint64 { return s.queue(true, id, snap) }

func (s *saver) queue(context bool, id string, b []byte) uint64 {
	s.mu.Lock()
	if context {
		s.contexts[id] = b
	} else {
		s.runs[id] = b
	}
	s.gen++
	g := s.gen
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return g
}

// wait returns once generation g is on disk, with the error of the
// commit that carried it.
func (s *saver) wait(g uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.saved < g {
		s.cond.Wait()
	}
	return s.err
}

func (s *saver) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.commit() // what is still queued
			return
		}
		s.commit()
	}
}

func (s *saver) commit() {
	s.mu.Lock()
	runs, contexts, g := s.runs, s.contexts, s.gen
	s.runs, s.contexts = map[string][]byte{}, map[string][]byte{}
	s.mu.Unlock()
	var err error
	if len(runs)+len(contexts) > 0 {
		err = s.st.db.Update(func(tx *bolt.Tx) error {
			for id, b := range runs {
				if err := tx.Bucket(bucketRuns).Put([]byte(id), b); err != nil {
					return err
				}
			}
			for id, b := range contexts {
				if err := tx.Bucket(bucketContexts).Put([]byte(id), b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			err = fmt.Errorf("save workflows: %w", err)
			log.Errorw("workflow state not saved", "err", err)
		}
	}
	s.mu.Lock()
	s.saved, s.err = g, err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// close commits what is queued and stops.
func (s *saver) close() {
	close(s.stop)
	<-s.done
}
