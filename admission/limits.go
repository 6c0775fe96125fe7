package admission

import (
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// buckets are token buckets by key, at most max of them (least recently
// used first out: a forgotten key starts again with a full bucket, which a
// flood of fresh keys cannot turn into more than one burst per key).
type buckets struct {
	r  Rate
	mu sync.Mutex
	c  *lru.Cache[any, *rate.Limiter]
}

func newBuckets(r Rate, max int) *buckets {
	c, _ := lru.New[any, *rate.Limiter](max)
	return &buckets{r: r, c: c}
}

// take takes a token from key's bucket; a zero Rate always allows.
func (b *buckets) take(key any, now time.Time) bool {
	if !b.r.set() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	lim, ok := b.c.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(b.r.PerSecond), b.r.Burst)
		b.c.Add(key, lim)
	}
	return lim.AllowN(now, 1)
}

// penalties count, per peer, the intents refused by its rate limit,
// decaying by half every penaltyHalfLife; GossipSub reads them as the
// peer's application score.
type penalties struct {
	mu sync.Mutex
	c  *lru.Cache[any, *penalty]
}

type penalty struct {
	v    float64
	last time.Time
}

const penaltyHalfLife = 10 * time.Second

func newPenalties(max int) *penalties {
	c, _ := lru.New[any, *penalty](max)
	return &penalties{c: c}
}

func (p *penalty) decay(now time.Time) {
	if dt := now.Sub(p.last); dt > 0 {
		p.v *= math.Exp2(-dt.Seconds() / penaltyHalfLife.Seconds())
		p.last = now
	}
}

func (ps *penalties) add(key any, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.c.Get(key)
	if !ok {
		p = &penalty{last: now}
		ps.c.Add(key, p)
	}
	p.decay(now)
	p.v++
}

func (ps *penalties) get(key any, now time.Time) float64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.c.Peek(key)
	if !ok {
		return 0
	}
	p.decay(now)
	return p.v
}

// slots count what runs at once, by key; a key's entry lives while its
// count is above zero, so the table is as large as what runs.
type slots struct {
	mu sync.Mutex
	n  map[any]int
}

func newSlots() *slots { return &slots{n: map[any]int{}} }

// slot is one key and its limit; a limit < 0 is none.
type slot struct {
	key   any
	limit int
}

// acquire takes one of each slot, or none: it returns the first that is
// full.
func (s *slots) acquire(want ...slot) (release func(), full *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range want {
		if w := want[i]; w.limit >= 0 && s.n[w.key] >= w.limit {
			return nil, &want[i]
		}
	}
	for _, w := range want {
		s.n[w.key]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, w := range want {
				if s.n[w.key]--; s.n[w.key] <= 0 {
					delete(s.n, w.key)
				}
			}
		})
	}, nil
}

func (s *slots) count(key any) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[key]
}

// summaries aggregate repeated refusals for the audit log.
type summaries struct {
	mu sync.Mutex
	c  *lru.Cache[summaryKey, *summary]
}

type summaryKey struct {
	entry Entry
	stage string
	rule  string
	peer  any
}

type summary struct {
	written time.Time // when a record was last written
	count   int       // refusals since, not written
	last    refusal
}

func newSummaries(max int) *summaries {
	// A summary pushed out of the table loses its count of refusals held
	// back; the first refusal of each kind is always written.
	c, _ := lru.New[summaryKey, *summary](max)
	return &summaries{c: c}
}

// add counts a refusal. It reports whether to write it now (the first of
// its key, or the first after every), with the summary of those held back
// since the last write (nil if none).
func (s *summaries) add(k summaryKey, r refusal, now time.Time, every time.Duration) (write bool, held *summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.c.Get(k)
	if !ok {
		s.c.Add(k, &summary{written: now})
		return true, nil
	}
	if now.Sub(cur.written) < every {
		cur.count++
		cur.last = r
		return false, nil
	}
	if cur.count > 0 {
		held = &summary{count: cur.count, last: cur.last}
	}
	cur.written, cur.count = now, 0
	return true, held
}

// drain returns the summaries with refusals not yet written.
func (s *summaries) drain() []*summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*summary
	for _, k := range s.c.Keys() {
		if v, ok := s.c.Peek(k); ok && v.count > 0 {
			out = append(out, &summary{count: v.count, last: v.last})
			v.count = 0
		}
	}
	return out
}
