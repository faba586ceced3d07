package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

type emfLine struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string              `json:"Namespace"`
			Dimensions [][]string          `json:"Dimensions"`
			Metrics    []map[string]string `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Function  string  `json:"Function"`
	EventType string  `json:"EventType"`
	RequestID string  `json:"request_id"`
	Level     *string `json:"level"`
}

func TestCountWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	m := New(&buf, "stripe-webhook")
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	m.Count(ctx, "SignatureRejected", 1)
	m.Emit(ctx, []Value{{Name: "RFCalls", Value: 1}, {Name: "RFLatency", Value: 42, Unit: UnitMilliseconds}},
		Dimension{"EventType", "invoice.paid"}, Dimension{"Function", "spoofed"})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var first, second emfLine
	var values map[string]any
	for i, dst := range []*emfLine{&first, &second} {
		if err := json.Unmarshal([]byte(lines[i]), dst); err != nil {
			t.Fatalf("%s: %v", lines[i], err)
		}
	}
	_ = json.Unmarshal([]byte(lines[1]), &values)
	cw := first.AWS.CloudWatchMetrics
	if first.AWS.Timestamp == 0 || len(cw) != 1 || cw[0].Namespace != "refbridge" || len(cw[0].Dimensions) != 1 ||
		strings.Join(cw[0].Dimensions[0], ",") != "Function" || cw[0].Metrics[0]["Name"] != "SignatureRejected" ||
		cw[0].Metrics[0]["Unit"] != "Count" || first.Function != "stripe-webhook" || first.RequestID != "req-1" {
		t.Fatalf("not EMF: %s", lines[0])
	}
	// Not through the logger: no level of the logger's drops it (Lambda reads it as INFO).
	if first.Level != nil {
		t.Fatalf("EMF line carries a level: %s", lines[0])
	}
	cw = second.AWS.CloudWatchMetrics
	if strings.Join(cw[0].Dimensions[0], ",") != "Function,EventType" || second.EventType != "invoice.paid" || second.Function != "stripe-webhook" ||
		len(cw[0].Metrics) != 2 || cw[0].Metrics[1]["Unit"] != "Milliseconds" || values["RFLatency"] != 42.0 || values["RFCalls"] != 1.0 {
		t.Fatalf("two metrics with a dimension: %s", lines[1])
	}

	var nilMetrics *Metrics
	nilMetrics.Count(context.Background(), "x", 1) // a handler without metrics must not panic
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, LogOptions{Function: "rf-webhook", Level: Level("warn"), Secrets: []string{"whsec_topsecret", "ab"}})
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-9"})
	log.InfoContext(ctx, "dropped below the level")
	log.WarnContext(ctx, "lookup about erin@example.com failed",
		"error", errors.New(`RF said: {"email":"Erin.Smith+x@mail.example.co.uk","token":"whsec_topsecret"}`).Error(),
		"count", 3, slog.Group("user", "email", "bob@example.com"), "other", "Jörg.Müller@Exämple.com, émile@example.com")

	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%s: %v", buf.String(), err)
	}
	out := buf.String()
	for _, leak := range []string{"erin@example.com", "Erin.Smith", "bob@example.com", "whsec_topsecret", "dropped", "Müller", "mile@"} {
		if strings.Contains(out, leak) {
			t.Errorf("log holds %q: %s", leak, out)
		}
	}
	for _, want := range []string{`"request_id":"req-9"`, `"function":"rf-webhook"`, `e***@example.com`, `E***@mail.example.co.uk`, `[REDACTED]`, `b***@example.com`, `"level":"WARN"`,
		`J***@Exämple.com`, `é***@example.com`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
	// A two-letter "secret" is not used to redact: it would blank ordinary words.
	if !strings.Contains(out, "lookup about") {
		t.Errorf("short secret redacted: %s", out)
	}
}

func TestLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"TRACE": slog.LevelDebug, "debug": slog.LevelDebug, "INFO": slog.LevelInfo,
		"": slog.LevelInfo, "WARN": slog.LevelWarn, "ERROR": slog.LevelError, "FATAL": slog.LevelError, "loud": slog.LevelInfo} {
		if got := Level(in); got != want {
			t.Errorf("Level(%q) = %v, want %v", in, got, want)
		}
	}
}

// The logger and the metrics share one writer; concurrent lines never interleave.
func TestSyncWriter(t *testing.T) {
	var buf bytes.Buffer
	w := Sync(&buf)
	log, m := NewLogger(w, LogOptions{}), New(w, "f")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				log.Info(strings.Repeat("x", 5000))
			} else {
				m.Count(context.Background(), "N", i)
			}
		}()
	}
	wg.Wait()
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("interleaved line: %.200s", line)
		}
	}
}
