package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestSetupStopsOnBadConfiguration(t *testing.T) {
	for _, k := range []string{"RF_API_TOKEN", "RF_API_TOKEN_ARN", "STATE_TABLE", "REWARD_HOLD_DAYS",
		"REWARD_MAX_PER_RECIPIENT_PER_MONTH", "REWARD_ISSUE_ALLOW_METRICS", "STRIPE_API_KEY", "STRIPE_API_KEY_ARN", "DRY_RUN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_REGION", "us-east-1")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "RF_API_TOKEN") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("RF_API_TOKEN", "tok")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "STATE_TABLE") {
		t.Fatalf("without a table: %v", err)
	}
	t.Setenv("STATE_TABLE", "refbridge-state")
	t.Setenv("REWARD_ISSUE_ALLOW_METRICS", "amount,points")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "REWARD_ISSUE_ALLOW_METRICS") {
		t.Fatalf("unknown metric: %v", err)
	}
	t.Setenv("REWARD_ISSUE_ALLOW_METRICS", "coupon,amount")
	t.Setenv("REWARD_HOLD_DAYS", "30")
	t.Setenv("REWARD_MAX_PER_RECIPIENT_PER_MONTH", "3")
	t.Setenv("DRY_RUN", "true")
	h, err := setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := h.Sweeper
	if s.Rules.Hold != 30*24*time.Hour || s.Rules.MaxPerRecipient != 3 || !slices.Equal(s.Rules.AllowMetrics, []string{"amount", "coupon"}) ||
		!s.DryRun || s.Lease == nil || s.Retrier == nil || h.Metrics == nil {
		t.Fatalf("complete configuration: %+v", s)
	}
}

// The template is read as plain YAML: goformation does not know ScheduleV2 events.
func TestTemplateDeploysTheSweep(t *testing.T) {
	raw, err := os.ReadFile("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Parameters map[string]struct {
			Default any `yaml:"Default"`
		} `yaml:"Parameters"`
		Resources map[string]struct {
			Type       string         `yaml:"Type"`
			Metadata   map[string]any `yaml:"Metadata"`
			Properties struct {
				Timeout                      yaml.Node      `yaml:"Timeout"`
				ReservedConcurrentExecutions yaml.Node      `yaml:"ReservedConcurrentExecutions"`
				Environment                  map[string]any `yaml:"Environment"`
				EventInvokeConfig            struct {
					MaximumRetryAttempts *int `yaml:"MaximumRetryAttempts"`
					DestinationConfig    struct {
						OnFailure struct {
							Type        string    `yaml:"Type"`
							Destination yaml.Node `yaml:"Destination"`
						} `yaml:"OnFailure"`
					} `yaml:"DestinationConfig"`
				} `yaml:"EventInvokeConfig"`
				Events map[string]struct {
					Type       string `yaml:"Type"`
					Properties struct {
						ScheduleExpression yaml.Node `yaml:"ScheduleExpression"`
						Input              string    `yaml:"Input"`
					} `yaml:"Properties"`
				} `yaml:"Events"`
				Policies []struct {
					Statement []struct {
						Action   any       `yaml:"Action"`
						Resource yaml.Node `yaml:"Resource"`
					} `yaml:"Statement"`
				} `yaml:"Policies"`
			} `yaml:"Properties"`
		} `yaml:"Resources"`
	}
	if err := yaml.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	fn, ok := tpl.Resources["RewardSweepFunction"]
	if !ok || fn.Type != "AWS::Serverless::Function" || fn.Metadata["BuildMethod"] != "makefile" {
		t.Fatalf("no RewardSweepFunction built by the makefile: %+v", fn)
	}
	p := fn.Properties
	// !If [HasSweepReservedConcurrency, 1, !Ref AWS::NoValue]: one at a time unless the account's
	// quota cannot spare it.
	if rc := p.ReservedConcurrentExecutions; rc.Tag != "!If" || len(rc.Content) != 3 || rc.Content[0].Value != "HasSweepReservedConcurrency" || rc.Content[1].Value != "1" {
		t.Errorf("reserved concurrency %s %v, want !If [HasSweepReservedConcurrency, 1, ...]", rc.Tag, rc.Content)
	}
	if p.Timeout.Tag != "!Ref" || p.Timeout.Value != "SweepTimeoutSeconds" {
		t.Errorf("timeout %q %q, want !Ref SweepTimeoutSeconds", p.Timeout.Tag, p.Timeout.Value)
	}
	inv := p.EventInvokeConfig
	if inv.MaximumRetryAttempts == nil || *inv.MaximumRetryAttempts != 0 || inv.DestinationConfig.OnFailure.Type != "SQS" ||
		inv.DestinationConfig.OnFailure.Destination.Tag != "!GetAtt" || inv.DestinationConfig.OnFailure.Destination.Value != "SweepFailureQueue.Arn" {
		t.Errorf("EventInvokeConfig %+v", inv)
	}
	if q, ok := tpl.Resources["SweepFailureQueue"]; !ok || q.Type != "AWS::SQS::Queue" {
		t.Error("no SweepFailureQueue")
	}
	ev, ok := p.Events["Schedule"]
	if !ok || ev.Type != "ScheduleV2" || ev.Properties.ScheduleExpression.Value != "SweepSchedule" {
		t.Errorf("schedule %+v", ev)
	}
	if d := tpl.Parameters["SweepSchedule"].Default; d != "rate(15 minutes)" {
		t.Errorf("default schedule %v", d)
	}
	fixture, _ := os.ReadFile("../../events/sweep/schedule.json")
	if strings.TrimSpace(string(fixture)) != ev.Properties.Input {
		t.Errorf("the schedule sends %q, events/sweep/schedule.json holds %q", ev.Properties.Input, fixture)
	}
	vars, _ := p.Environment["Variables"].(map[string]any)
	for _, k := range []string{"REWARD_HOLD_DAYS", "REWARD_MAX_PER_RECIPIENT_PER_MONTH", "REWARD_ISSUE_ALLOW_METRICS"} {
		if _, ok := vars[k]; !ok {
			t.Errorf("the sweep does not get %s", k)
		}
	}
	// Least privilege: the table and its index, and the secrets; no wildcard action.
	for _, pol := range p.Policies {
		for _, st := range pol.Statement {
			acts, _ := st.Action.([]any)
			if s, ok := st.Action.(string); ok {
				acts = []any{s}
			}
			for _, a := range acts {
				if s, _ := a.(string); strings.Contains(s, "*") || s == "dynamodb:Scan" {
					t.Errorf("action %q is broader than the sweep needs", s)
				}
			}
		}
	}
	mk, _ := os.ReadFile("../../Makefile")
	if !strings.Contains(string(mk), "build-RewardSweepFunction:") || !strings.Contains(string(mk), "./functions/reward-sweep") {
		t.Error("Makefile has no build-RewardSweepFunction target")
	}
}
