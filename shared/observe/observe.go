// Package observe writes refbridge's metrics as CloudWatch embedded metric format (EMF) log
// lines: Lambda ships stdout to CloudWatch Logs, which turns each such line into metric data,
// with no API call and no agent.
package observe

import (
	"context"
	"log/slog"
	"time"
)

// Namespace is the CloudWatch namespace of every refbridge metric.
const Namespace = "refbridge"

// Metrics counts events for one function.
type Metrics struct {
	log      *slog.Logger
	function string
	now      func() time.Time
}

// New returns metrics written through log for the named function ("stripe-webhook", ...).
func New(log *slog.Logger, function string) *Metrics {
	return &Metrics{log: log, function: function, now: time.Now}
}

// Count adds n to the metric name (unit Count), dimensioned by function.
func (m *Metrics) Count(ctx context.Context, name string, n int) {
	if m == nil || m.log == nil {
		return
	}
	m.log.InfoContext(ctx, "metric "+name,
		slog.Any("_aws", map[string]any{
			"Timestamp": m.now().UnixMilli(),
			"CloudWatchMetrics": []map[string]any{{
				"Namespace":  Namespace,
				"Dimensions": [][]string{{"Function"}},
				"Metrics":    []map[string]string{{"Name": name, "Unit": "Count"}},
			}},
		}),
		slog.String("Function", m.function),
		slog.Int(name, n),
	)
}
