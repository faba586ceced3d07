package wiring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestLocalInMemory(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	var logs bytes.Buffer
	d, err := Local(context.Background(), env(map[string]string{"RF_API_TOKEN": "tok_secret_value", "RF_WEBHOOK_SECRET": "hook-secret",
		"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}), &logs, config.Need{RFAPIToken: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Ledger.(*ledger.Memory); !ok {
		t.Errorf("ledger %T, want the in-memory one without STATE_TABLE", d.Ledger)
	}
	if _, ok := d.Idempotency.(*idempotency.Memory); !ok || d.Lease == nil || d.metrics != nil {
		t.Errorf("deps %+v", d)
	}
	if h := d.RFWebhook(); len(h.Secrets) != 1 || h.Customers != nil || h.Metrics != nil {
		t.Errorf("rf webhook %+v", h)
	}
	if h := d.Sweep(); h.Metrics != nil || h.Sweeper.Rules.Hold != 14*24*time.Hour {
		t.Errorf("sweep %+v", h.Sweeper)
	}
	d.Log.Debug("token is tok_secret_value, secret hook-secret")
	if out := logs.String(); strings.Contains(out, "tok_secret_value") || strings.Contains(out, "hook-secret") || !strings.Contains(out, `"level":"DEBUG"`) {
		t.Errorf("log %s", out)
	}
}

func TestLambdaNeedsATable(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("RF_API_TOKEN", "tok")
	t.Setenv("STATE_TABLE", "")
	if _, err := Lambda(context.Background(), "reward-sweep", config.Need{RFAPIToken: true}); !errors.Is(err, ErrNoTable) {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("STATE_TABLE", "refbridge-state")
	d, err := Lambda(context.Background(), "reward-sweep", config.Need{RFAPIToken: true})
	if err != nil || d.metrics == nil || d.Sweep().Metrics == nil {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestDynamoDBErrorMetric(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.Canceled, ""},
		{fmt.Errorf("put: %w", &types.ConditionalCheckFailedException{}), "DDBConditionalConflicts"},
		{&types.TransactionCanceledException{}, "DDBConditionalConflicts"},
		{&types.TransactionConflictException{}, "DDBConditionalConflicts"},
		{&types.ProvisionedThroughputExceededException{}, "DDBThrottled"},
		{&smithy.GenericAPIError{Code: "ThrottlingException"}, "DDBThrottled"},
		{errors.New("connection refused"), "DDBErrors"},
	} {
		if got := ddbErrorMetric(tt.err); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRFMetrics(t *testing.T) {
	var buf bytes.Buffer
	m := observe.New(&buf, "rf-webhook")
	c, err := rf.New("http://127.0.0.1:1/api/v2", "tok", rf.WithLimiter(nil), rfMetrics(m),
		rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetUser(context.Background(), "5"); err == nil {
		t.Fatal("a closed port answered")
	}
	if out := buf.String(); !strings.Contains(out, `"RFCalls":1`) || !strings.Contains(out, `"RFErrors":1`) || !strings.Contains(out, `"RFLatency"`) {
		t.Fatalf("metrics %s", out)
	}
}
