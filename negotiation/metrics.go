package negotiation

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func metricLabel(m prometheus.Metric) string {
	var d dto.Metric
	if m.Write(&d) != nil || len(d.GetLabel()) == 0 {
		return ""
	}
	return d.GetLabel()[0].GetValue()
}

func metricValue(m prometheus.Metric) uint64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}
