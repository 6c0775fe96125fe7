package negotiation

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Strategy ranks bids, best first, and says why in a few words.
type Strategy interface {
	Name() string
	// Rank orders bids best first. It must not modify the bids.
	Rank(bids []BidInfo) []BidInfo
}

type byScore struct {
	name  string
	score func(BidInfo) float64
}

func (s byScore) Name() string { return s.name }

func (s byScore) Rank(bids []BidInfo) []BidInfo {
	out := slices.Clone(bids)
	// Ties go to the earlier bid, so ranking is stable and fair.
	slices.SortStableFunc(out, func(a, b BidInfo) int { return cmp.Compare(s.score(a), s.score(b)) })
	return out
}

// Cheapest ranks by price, then by ETA.
func Cheapest() Strategy {
	return byScore{"cheapest", func(b BidInfo) float64 { return b.Price + b.ETA.Seconds()*1e-9 }}
}

// Fastest ranks by ETA, then by price.
func Fastest() Strategy {
	return byScore{"fastest", func(b BidInfo) float64 { return b.ETA.Seconds() + b.Price*1e-9 }}
}

// Weighted ranks by price*wPrice + ETA-in-seconds*wTime (lower is better).
func Weighted(wPrice, wTime float64) Strategy {
	return byScore{fmt.Sprintf("weighted(price×%g + seconds×%g)", wPrice, wTime), func(b BidInfo) float64 {
		return b.Price*wPrice + b.ETA.Seconds()*wTime
	}}
}

// ParseStrategy returns the strategy a name gives, as flags and the API
// write it: "cheapest", "fastest", "weighted:PRICE,SECONDS" (Weighted
// with those weights; "weighted" alone is weighted:1,1, one unit of price
// per second), or "counter:FRACTION" (CounterAt: counter each bid once at
// that fraction of its price, then take the cheapest). "" is nil: the
// service's default.
func ParseStrategy(name string) (Strategy, error) {
	switch name {
	case "":
		return nil, nil
	case "cheapest":
		return Cheapest(), nil
	case "fastest":
		return Fastest(), nil
	case "weighted":
		return Weighted(1, 1), nil
	}
	if f, ok := strings.CutPrefix(name, "counter:"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0 && v < 1) {
			return nil, fmt.Errorf("strategy %q: want counter:FRACTION with 0 < FRACTION < 1, e.g. counter:0.8 (counter each bid at 80%% of its price)", name)
		}
		return CounterAt(v, Cheapest()), nil
	}
	if w, ok := strings.CutPrefix(name, "weighted:"); ok {
		p, t, ok := strings.Cut(w, ",")
		wp, err1 := strconv.ParseFloat(strings.TrimSpace(p), 64)
		wt, err2 := strconv.ParseFloat(strings.TrimSpace(t), 64)
		if ok && err1 == nil && err2 == nil && wp >= 0 && wt >= 0 && wp+wt > 0 && !math.IsInf(wp+wt, 0) {
			return Weighted(wp, wt), nil
		}
		return nil, fmt.Errorf("strategy %q: want weighted:PRICE,SECONDS with two weights ≥ 0, not both 0, e.g. weighted:1,2", name)
	}
	return nil, fmt.Errorf("strategy %q: want cheapest, fastest, weighted, weighted:PRICE,SECONDS or counter:FRACTION", name)
}
