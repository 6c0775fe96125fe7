package negotiation_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricOf finds one series of a metric in reg: the one whose labels
// include all of labels.
func metricOf(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

// TestSuccessMetrics: a task whose first winner declines and whose second
// completes moves every success metric once: each stage, one re-award
// after a decline with its recovery time, one task completed with no human.
func TestSuccessMetrics(t *testing.T) {
	m, _ := newNegMesh(t, 3,
		agentSpec{node: 1, name: "booked", price: 1, decline: true},
		agentSpec{node: 2, name: "free", price: 2},
	)
	if _, err := request(t, m.Nodes[0], `"job"`); err != nil {
		t.Fatalf("Request: %v", err)
	}
	reg := m.Nodes[0].Registry()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		count  uint64 // observations of a histogram, or a counter's value
	}{
		{"parley_negotiation_stage_seconds", map[string]string{"stage": "first_bid"}, 1},
		{"parley_negotiation_stage_seconds", map[string]string{"stage": "award"}, 1},
		{"parley_negotiation_stage_seconds", map[string]string{"stage": "commit"}, 1}, // the decline never committed
		{"parley_negotiation_stage_seconds", map[string]string{"stage": "work"}, 1},
		{"parley_negotiation_reawards_total", map[string]string{"after": "declined"}, 1},
		{"parley_negotiation_recovery_seconds", nil, 1},
		{"parley_tasks_completed_total", map[string]string{"approval": "none"}, 1},
		{"parley_tasks_completed_total", map[string]string{"approval": "human"}, 0},
	} {
		got := metricOf(t, reg, tc.name, tc.labels)
		var n uint64
		switch {
		case got == nil:
		case got.Histogram != nil:
			n = got.Histogram.GetSampleCount()
		case got.Counter != nil:
			n = uint64(got.Counter.GetValue())
		}
		if n != tc.count {
			t.Errorf("%s%v = %d, want %d", tc.name, tc.labels, n, tc.count)
		}
	}
}
