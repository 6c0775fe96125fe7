package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/parleynet/parley/negotiation"
	"github.com/parleynet/parley/node"
	"github.com/parleynet/parley/node/nodetest"
)

// scrape fetches /metrics and parses it with Prometheus's own parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+PathMetrics, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return sum
}

func TestMetricsMoveWithIntentsAndNegotiations(t *testing.T) {
	m := nodetest.NewMesh(t, 2)
	ts, _ := newTestServer(t, m.Nodes[0])
	if _, err := m.Nodes[1].AddAgent(node.AgentCard{Name: "w", Capabilities: []string{"job"}}, negotiation.HandlerFuncs{
		BidFunc: func(context.Context, negotiation.Call) (negotiation.Bid, error) {
			return negotiation.Bid{Price: 1}, nil
		},
		WorkFunc: func(_ context.Context, t negotiation.Task) (json.RawMessage, error) { return t.Input, nil },
	}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeer(t, m.Nodes[0], "job", m.Nodes[1].ID())
	before := scrape(t, ts.URL)
	if _, err := m.Nodes[0].Request(ctxT(t), negotiation.Need{Capability: "job", Input: json.RawMessage(`1`)},
		negotiation.WithBidWindow(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, ts.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"parley_intents_published_total", nil},
		{"parley_negotiations_total", map[string]string{"role": "requester", "state": "completed"}},
		{"parley_negotiation_duration_seconds", nil},
	} {
		if b, a := counter(before, c.name, c.labels), counter(after, c.name, c.labels); a <= b {
			t.Errorf("%s%v did not move: %g -> %g", c.name, c.labels, b, a)
		}
	}
	if after["go_goroutines"] == nil {
		t.Error("no go_goroutines: the runtime collectors are missing")
	}
}
