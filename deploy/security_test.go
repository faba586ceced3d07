package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestPublicEntryPoints: the stack's only public entry points are the two webhooks' Function
// URLs, without AWS auth (Stripe and RF cannot sign AWS requests; the handlers authenticate the
// payload) and without CORS (no browser calls them), each a bounded invocation; the sweep has no
// URL and no trigger but its schedule; nothing else opens a way in.
func TestPublicEntryPoints(t *testing.T) {
	s := load(t)
	public := map[string]bool{"StripeWebhookFunction": true, "RfWebhookFunction": true}
	for _, id := range sortedKeys(functions) {
		fn := s.function(id)
		if !public[id] {
			if fn["FunctionUrlConfig"] != nil {
				t.Errorf("%s has a Function URL", id)
			}
			events, _ := fn["Events"].(map[string]any)
			if len(events) != 1 {
				t.Errorf("%s: events %v, want only its schedule", id, events)
			}
			for name, ev := range events {
				if str(get(ev, "Type")) != "ScheduleV2" || get(ev, "Properties", "RoleArn") != nil {
					t.Errorf("%s: event %s is %v, want a ScheduleV2 with the role SAM makes for it", id, name, ev)
				}
			}
			continue
		}
		if url := fn["FunctionUrlConfig"]; !equal(url, map[string]any{"AuthType": "NONE"}) {
			t.Errorf("%s: FunctionUrlConfig %v, want exactly AuthType NONE (no Cors)", id, url)
		}
		if fn["Events"] != nil {
			t.Errorf("%s: events %v beside its URL", id, fn["Events"])
		}
		if timeout := num(fn["Timeout"]); timeout < 1 || timeout > 30 {
			t.Errorf("%s: Timeout %v, want at most 30 s per delivery", id, fn["Timeout"])
		}
		if mem := num(fn["MemorySize"]); mem < 128 || mem > 512 {
			t.Errorf("%s: MemorySize %v", id, fn["MemorySize"])
		}
	}
	for _, typ := range []string{"AWS::Lambda::Permission", "AWS::Lambda::Url", "AWS::Serverless::Api", "AWS::Serverless::HttpApi",
		"AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api", "AWS::Lambda::EventSourceMapping", "AWS::Scheduler::Schedule",
		"AWS::Events::Rule", "AWS::ElasticLoadBalancingV2::LoadBalancer"} {
		if ids := s.ofType(typ); len(ids) != 0 {
			t.Errorf("%s %v: another way in", typ, ids)
		}
	}
	if d, err := strconv.Atoi(fmt.Sprint(s.param("WebhookReservedConcurrency")["Default"])); err != nil || d < 1 || d > 100 {
		t.Errorf("WebhookReservedConcurrency defaults to %d: it bounds what a flood of requests costs", d)
	}
}

// TestStateAtRest: the state table is encrypted, recoverable to any second of the last 35 days,
// kept when the stack is deleted, and expires items by their own expiration attribute; the
// failure queue is encrypted and keeps a failed run for 14 days.
func TestStateAtRest(t *testing.T) {
	s := load(t)
	table := s.resource("StateTable")
	p, _ := table["Properties"].(map[string]any)
	for path, want := range map[string]any{
		"SSESpecification.SSEEnabled":                                 true,
		"PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled": true,
		"TimeToLiveSpecification.Enabled":                             true,
		"TimeToLiveSpecification.AttributeName":                       "expiration",
		"StreamSpecification":                                         nil, // no copy of the items leaves the table
		"KinesisStreamSpecification":                                  nil,
		"ResourcePolicy":                                              nil, // access only through the functions' roles
	} {
		if got := get(p, strings.Split(path, ".")...); !equal(got, want) {
			t.Errorf("StateTable %s = %v, want %v", path, got, want)
		}
	}
	for _, k := range []string{"DeletionPolicy", "UpdateReplacePolicy"} {
		if table[k] != "Retain" {
			t.Errorf("StateTable %s = %v, want Retain", k, table[k])
		}
	}
	q := s.resource("SweepFailureQueue")
	if get(q, "Properties", "SqsManagedSseEnabled") != true || num(get(q, "Properties", "MessageRetentionPeriod")) != 14*24*3600 {
		t.Errorf("SweepFailureQueue %v: want SQS-managed encryption and 14 days", q["Properties"])
	}
}
