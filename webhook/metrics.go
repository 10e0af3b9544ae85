package webhook

import "github.com/prometheus/client_golang/prometheus"

// metrics are the delivery metrics, by endpoint (docs/api.md lists them).
type metrics struct {
	delivered, failed, dead *prometheus.CounterVec
	retrying                *prometheus.GaugeVec
	latency                 *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_webhook_delivered_total", Help: "Webhook events delivered (a 2xx answer), by endpoint.",
		}, []string{"webhook"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_webhook_failed_total", Help: "Webhook delivery attempts that failed (an error or a non-2xx answer), by endpoint.",
		}, []string{"webhook"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_webhook_dead_total", Help: "Webhook events given up on after the retry period and recorded as dead letters, by endpoint.",
		}, []string{"webhook"}),
		retrying: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_webhook_retrying", Help: "Webhook events waiting to be retried, by endpoint.",
		}, []string{"webhook"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_webhook_delivery_seconds", Help: "Time of a delivered webhook POST, from the request to the answer, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"webhook"}),
	}
	reg.MustRegister(m.delivered, m.failed, m.dead, m.retrying, m.latency)
	return m
}
