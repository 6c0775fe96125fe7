package discovery

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func metricLabelValue(m prometheus.Metric) (string, uint64) {
	var d dto.Metric
	if m.Write(&d) != nil || len(d.GetLabel()) == 0 {
		return "", 0
	}
	return d.GetLabel()[0].GetValue(), uint64(d.GetCounter().GetValue())
}
