// Package promcount reads Prometheus counters back as numbers, for the
// Stats and Dropped accessors that show a node's counters without a
// scrape.
package promcount

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value is a counter's current value.
func Value(c prometheus.Counter) uint64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}

// ByLabel returns a one-label counter vector's values by label value.
func ByLabel(v *prometheus.CounterVec) map[string]uint64 {
	out := map[string]uint64{}
	ch := make(chan prometheus.Metric, 16)
	go func() { v.Collect(ch); close(ch) }()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || len(d.GetLabel()) == 0 {
			continue
		}
		out[d.GetLabel()[0].GetValue()] = uint64(d.GetCounter().GetValue())
	}
	return out
}
