package sharedctx

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// ErrClockSkew: a timestamp is further ahead of this node's clock than
// Limits.MaxClockSkew. Accepting it would let one writer win every key
// for as long as it likes and drag every clock that saw it forward.
var ErrClockSkew = errors.New("timestamp too far in the future")

// Timestamp is a hybrid logical clock reading: wall time in Unix
// nanoseconds and a counter that orders events within one wall reading.
type Timestamp struct {
	Wall    int64  `json:"wall"`
	Logical uint32 `json:"logical"`
}

// Compare orders timestamps: -1 if t is before u, 0 if equal, +1 after.
func (t Timestamp) Compare(u Timestamp) int {
	if c := cmp.Compare(t.Wall, u.Wall); c != 0 {
		return c
	}
	return cmp.Compare(t.Logical, u.Logical)
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Time returns t's wall part.
func (t Timestamp) Time() time.Time { return time.Unix(0, t.Wall).UTC() }

func (t Timestamp) String() string { return fmt.Sprintf("%d.%d", t.Wall, t.Logical) }

// next is the timestamp right after t.
func (t Timestamp) next() Timestamp {
	if t.Logical == math.MaxUint32 {
		return Timestamp{Wall: t.Wall + 1}
	}
	return Timestamp{Wall: t.Wall, Logical: t.Logical + 1}
}

// Clock is a hybrid logical clock (Kulkarni et al., 2014): its readings
// never go backwards, stay within a counter of the wall clock, and come
// after every timestamp it has observed. Safe for concurrent use.
type Clock struct {
	now     func() time.Time
	maxSkew time.Duration

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading now (nil: time.Now) that refuses to
// observe timestamps more than maxSkew ahead of it.
func NewClock(now func() time.Time, maxSkew time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, maxSkew: maxSkew}
}

// Now returns a reading for a local event, after every earlier one.
func (c *Clock) Now() Timestamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else {
		c.last = c.last.next()
	}
	return c.last
}

// Check refuses t, with ErrClockSkew, when it is more than the clock's
// skew ahead of the wall clock. It does not move the clock.
func (c *Clock) Check(t Timestamp) error {
	now := c.now()
	if limit := now.Add(c.maxSkew).UnixNano(); t.Wall > limit {
		return fmt.Errorf("timestamp %s is %s ahead of this node's clock (%s allowed): %w",
			t, time.Duration(t.Wall-now.UnixNano()), c.maxSkew, ErrClockSkew)
	}
	return nil
}

// Observe moves the clock past t, a timestamp received from another
// replica, so that the next local reading orders after it. A t the clock
// refuses (Check) leaves it unchanged.
func (c *Clock) Observe(t Timestamp) error {
	if err := c.Check(t); err != nil {
		return err
	}
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.last.Wall && pt > t.Wall:
		c.last = Timestamp{Wall: pt}
	case t.Compare(c.last) > 0:
		c.last = t
	}
	return nil
}
