package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestCountWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	m := New(slog.New(slog.NewJSONHandler(&buf, nil)), "stripe-webhook")
	m.Count(context.Background(), "IgnoredOtherMode", 1)
	var line struct {
		AWS struct {
			Timestamp         int64 `json:"Timestamp"`
			CloudWatchMetrics []struct {
				Namespace  string              `json:"Namespace"`
				Dimensions [][]string          `json:"Dimensions"`
				Metrics    []map[string]string `json:"Metrics"`
			} `json:"CloudWatchMetrics"`
		} `json:"_aws"`
		Function string `json:"Function"`
		Value    int    `json:"IgnoredOtherMode"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%s: %v", buf.String(), err)
	}
	cw := line.AWS.CloudWatchMetrics
	if line.AWS.Timestamp == 0 || len(cw) != 1 || cw[0].Namespace != "refbridge" || cw[0].Dimensions[0][0] != "Function" ||
		cw[0].Metrics[0]["Name"] != "IgnoredOtherMode" || line.Function != "stripe-webhook" || line.Value != 1 {
		t.Fatalf("not EMF: %s", buf.String())
	}
	var nilMetrics *Metrics
	nilMetrics.Count(context.Background(), "x", 1) // a handler without metrics must not panic
}
