package negotiation

import (
	"cmp"
	"fmt"
	"slices"
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
