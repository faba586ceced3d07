// Package observe is how refbridge reports what it does: JSON logs (log/slog) that carry the
// function and the Lambda request id and never a raw email or a configured secret, and metrics
// as CloudWatch embedded metric format (EMF) lines — Lambda ships stdout to CloudWatch Logs,
// which turns each such line into metric data, with no API call and no agent.
package observe

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Namespace is the CloudWatch namespace of every refbridge metric.
const Namespace = "refbridge"

// Units of the metrics refbridge writes.
const (
	UnitCount        = "Count"
	UnitMilliseconds = "Milliseconds"
)

// Metrics writes one function's metrics. A nil *Metrics writes nothing.
type Metrics struct {
	w        io.Writer
	function string
	now      func() time.Time
}

// New returns metrics written as EMF lines to w (give the logger and the metrics the same
// Sync writer, so their lines never interleave) for the named function ("stripe-webhook", ...):
// every metric has the dimension Function with that name.
//
// EMF lines are written beside the logger, not through it, so the logger's own level never
// drops a metric. Lambda's filter reads a line without "level" as INFO: that is why the
// template's LogLevel stops at INFO (TRACE, DEBUG, INFO), never WARN.
func New(w io.Writer, function string) *Metrics {
	return &Metrics{w: w, function: function, now: time.Now}
}

// Value is one metric's value in an EMF line.
type Value struct {
	Name  string
	Value float64
	Unit  string // UnitCount when empty
}

// Dimension narrows a metric beyond Function, e.g. EventType=invoice.paid.
type Dimension struct{ Name, Value string }

// Count adds n to the metric name (unit Count), dimensioned by function and dims.
func (m *Metrics) Count(ctx context.Context, name string, n int, dims ...Dimension) {
	m.Emit(ctx, []Value{{Name: name, Value: float64(n)}}, dims...)
}

// Emit writes the values as one EMF line, however many metrics.
func (m *Metrics) Emit(ctx context.Context, values []Value, dims ...Dimension) {
	if m == nil || m.w == nil || len(values) == 0 {
		return
	}
	line := map[string]any{"Function": m.function}
	dimNames := []string{"Function"}
	for _, d := range dims {
		if d.Name == "" || slices.Contains(dimNames, d.Name) {
			continue
		}
		dimNames = append(dimNames, d.Name)
		line[d.Name] = d.Value
	}
	defs := make([]map[string]string, 0, len(values))
	for _, v := range values {
		unit := v.Unit
		if unit == "" {
			unit = UnitCount
		}
		defs = append(defs, map[string]string{"Name": v.Name, "Unit": unit})
		line[v.Name] = v.Value
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		line["request_id"] = lc.AwsRequestID
	}
	line["_aws"] = map[string]any{
		"Timestamp": m.now().UnixMilli(),
		"CloudWatchMetrics": []map[string]any{{
			"Namespace":  Namespace,
			"Dimensions": [][]string{dimNames},
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return // only strings and numbers: cannot happen
	}
	_, _ = m.w.Write(append(b, '\n'))
}

// Sync makes w safe for the logger and the metrics to share: each Write is one whole line.
func Sync(w io.Writer) io.Writer { return &syncWriter{w: w} }

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
