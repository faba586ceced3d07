package deploy

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"gopkg.in/yaml.v3"

	"github.com/refbridge/refbridge/shared/config"
)

// The tests read template.yaml twice: with goformation, which knows every CloudFormation and
// SAM resource type and rejects unknown properties, and as plain YAML in CloudFormation's JSON
// form ({"Ref": …}, {"Fn::GetAtt": […]}), because goformation resolves intrinsic functions away
// (a Ref to a resource becomes nil), does not merge Globals and does not know ScheduleV2 events.

const (
	stripeWebhook = "stripe-webhook"
	rfWebhook     = "rf-webhook"
	rewardSweep   = "reward-sweep"
)

// every is the three functions.
var every = []string{stripeWebhook, rfWebhook, rewardSweep}

// functions are the stack's functions: logical id → folder under functions/, which is also the
// function's name after the stack's and its metrics' Function dimension.
var functions = map[string]string{
	"StripeWebhookFunction": stripeWebhook,
	"RfWebhookFunction":     rfWebhook,
	"RewardSweepFunction":   rewardSweep,
}

// readers says which functions read each variable of config.Variables (a secret under its
// NAME; the template sets it as NAME_ARN). A variable listed for a function must be set on it
// (Globals count), and a function gets no variable it does not read.
var readers = map[string][]string{
	"STATE_TABLE":     every,
	"RF_API_URL":      every,
	"RF_API_TOKEN":    every,
	"RF_CAMPAIGN_IDS": every,
	// The signup campaign's leads are matched like RF_CAMPAIGN_IDS' leads, and rf-webhook and
	// the sweep match waiting invoices too.
	"RF_SIGNUP_CAMPAIGN_ID": every,
	// Every function decides: stripe-webhook qualifies on payment, rf-webhook and the sweep
	// process invoices that were waiting for their lead.
	"QUALIFY_MIN_AMOUNT":   every,
	"QUALIFY_WINDOW_DAYS":  every,
	"UNMATCHED_RETRY_DAYS": every,
	"RF_RATE_PER_MINUTE":   every,
	"DRY_RUN":              every,
	"STRIPE_API_KEY":       every, // optional: customer metadata, in every function's decisions

	"STRIPE_MODE":            {stripeWebhook},
	"STRIPE_WEBHOOK_SECRETS": {stripeWebhook},
	// Signup attribution (checkout.session.completed, customer.created/updated).
	"RF_REFERRAL_METADATA_KEY": {stripeWebhook},
	"RF_SIGNUP_NOTIFY":         {stripeWebhook},

	"RF_WEBHOOK_SECRET": {rfWebhook},
	"RF_WEBHOOK_FIELDS": {rfWebhook},

	"REWARD_HOLD_DAYS":                   {rewardSweep},
	"REWARD_MAX_PER_RECIPIENT_PER_MONTH": {rewardSweep},
	"REWARD_ISSUE_ALLOW_METRICS":         {rewardSweep},
}

// dynamoActions are the DynamoDB calls refbridge's stores make (transactions hold only puts,
// updates and deletes, so they need nothing else).
var dynamoActions = []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"}

// starActions are the only actions allowed on Resource "*": AWS offers nothing narrower for
// them. Each such statement must carry a comment saying so.
var starActions = []string{"xray:PutTraceSegments", "xray:PutTelemetryRecords"}

// alarmSpec is the alarm a custom metric must have.
type alarmSpec struct {
	metric      string
	functions   []string // the Function dimensions the alarm covers
	stat        string
	period      int
	evaluations int
	datapoints  int // of evaluations; 0 = all
	threshold   any // a number, or the parameter that sets it
}

// custom is the contract of refbridge's custom metrics (EMF, namespace refbridge, one dimension
// Function, unit Count) and the alarm each one has.
var custom = []alarmSpec{
	{"SignatureRejected", []string{stripeWebhook}, "Sum", 300, 1, 0, "SignatureRejectedAlarmThreshold"},
	{"Unauthorized", []string{rfWebhook}, "Sum", 300, 1, 0, "UnauthorizedAlarmThreshold"},
	{"RFRateLimited", every, "Sum", 300, 3, 2, 1},
	{"UnmatchedWaiting", []string{rewardSweep}, "Maximum", 3600, 1, 0, "UnmatchedWaitingAlarmThreshold"},
	{"UnmatchedExpired", []string{rewardSweep}, "Sum", 3600, 24, 1, 1}, // any hour of a day
	{"RewardsFailed", []string{rewardSweep}, "Sum", 3600, 1, 0, 1},
	{"SweepIncomplete", []string{rewardSweep}, "Sum", 3600, 1, 0, 3},
}

const templatePath = "../template.yaml"

func TestGoformationReadsTheTemplate(t *testing.T) {
	tpl, err := goformation.Open(templatePath)
	if err != nil {
		t.Fatal(err) // an unknown property or a malformed resource
	}
	fns := tpl.GetAllServerlessFunctionResources()
	if len(fns) != len(functions) {
		t.Errorf("%d functions, want %d", len(fns), len(functions))
	}
	for id := range functions {
		if _, ok := fns[id]; !ok {
			t.Errorf("no function %s", id)
		}
	}
	if n := len(load(t).doc["Resources"].(map[string]any)); len(tpl.Resources) != n {
		t.Errorf("goformation read %d resources of %d", len(tpl.Resources), n)
	}
}

func TestReferencesResolve(t *testing.T) {
	s := load(t)
	names := map[string]bool{}
	for _, p := range []string{"AWS::AccountId", "AWS::NoValue", "AWS::Partition", "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"} {
		names[p] = true
	}
	for id := range s.section("Parameters") {
		names[id] = true
	}
	resources := map[string]bool{}
	for id, r := range s.section("Resources") {
		names[id], resources[id] = true, true
		if get(r, "Properties", "FunctionUrlConfig") != nil {
			resources[id+"Url"] = true // SAM's AWS::Lambda::Url
		}
	}
	conditions := s.section("Conditions")
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		case map[string]any:
			if len(v) == 1 {
				for k, x := range v {
					switch k {
					case "Ref":
						if !names[str(x)] {
							t.Errorf("%s: Ref to unknown %q", path, x)
						}
					case "Fn::GetAtt":
						if l, _ := x.([]any); len(l) != 2 || !resources[str(l[0])] {
							t.Errorf("%s: GetAtt of unknown %v", path, x)
						}
					case "Fn::Sub":
						for _, m := range regexp.MustCompile(`\$\{([^!}][^}]*)\}`).FindAllStringSubmatch(str(x), -1) {
							name, attr, _ := strings.Cut(m[1], ".")
							if !names[name] || attr != "" && !resources[name] {
								t.Errorf("%s: Sub of unknown ${%s}", path, m[1])
							}
						}
					case "Fn::If":
						if l, _ := x.([]any); len(l) != 3 || conditions[str(l[0])] == nil {
							t.Errorf("%s: If on unknown condition %v", path, x)
						}
					case "Condition":
						if conditions[str(x)] == nil {
							t.Errorf("%s: unknown condition %v", path, x)
						}
					}
				}
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		}
	}
	walk("", s.doc)
	for id, r := range s.section("Resources") {
		if c, ok := r.(map[string]any)["Condition"]; ok && conditions[str(c)] == nil {
			t.Errorf("%s: unknown condition %v", id, c)
		}
	}
}

func TestParameterDefaultsAreValid(t *testing.T) {
	s := load(t)
	for id, p := range s.section("Parameters") {
		p := p.(map[string]any)
		if d, ok := p["Default"]; ok {
			if err := allows(p, fmt.Sprint(d)); err != nil {
				t.Errorf("%s: default: %v", id, err)
			}
		}
		if str(p["Description"]) == "" {
			t.Errorf("%s has no description", id)
		}
	}
}

func TestFunctions(t *testing.T) {
	s := load(t)
	if got := s.ofType("AWS::Serverless::Function"); !slices.Equal(got, sortedKeys(functions)) {
		t.Fatalf("functions %v, want %v (update the table in this test)", got, sortedKeys(functions))
	}
	if d := s.param("LogLevel")["Default"]; d != "INFO" {
		t.Errorf("LogLevel defaults to %v", d)
	}
	for _, id := range sortedKeys(functions) {
		t.Run(id, func(t *testing.T) {
			r, fn := s.resource(id), s.function(id)
			if m, _ := r["Metadata"].(map[string]any); str(m["BuildMethod"]) != "makefile" {
				t.Errorf("BuildMethod %v, want makefile", r["Metadata"])
			}
			if fn["Runtime"] != "provided.al2023" || !equal(fn["Architectures"], []any{"arm64"}) || fn["Handler"] != "bootstrap" {
				t.Errorf("runtime %v %v %v, want provided.al2023 [arm64] bootstrap", fn["Runtime"], fn["Architectures"], fn["Handler"])
			}
			if fn["CodeUri"] != "." {
				t.Errorf("CodeUri %v, want . (the Makefile at the root)", fn["CodeUri"])
			}
			if fn["Tracing"] != "Active" {
				t.Errorf("Tracing %v, want Active", fn["Tracing"])
			}
			want := map[string]any{"LogFormat": "JSON", "ApplicationLogLevel": ref("LogLevel"), "SystemLogLevel": "INFO"}
			if !equal(fn["LoggingConfig"], want) {
				t.Errorf("LoggingConfig %v, want %v", fn["LoggingConfig"], want)
			}
			name := "${AWS::StackName}-" + functions[id]
			if !equal(fn["FunctionName"], sub(name)) {
				t.Errorf("FunctionName %v, want !Sub %s", fn["FunctionName"], name)
			}
			// Lambda's default log group, made by the stack before the function.
			group := s.logGroupNamed("/aws/lambda/" + name)
			if group == "" {
				t.Errorf("no AWS::Logs::LogGroup named /aws/lambda/%s", name)
			} else if !slices.Contains(list(r["DependsOn"]), any(group)) {
				t.Errorf("DependsOn %v lacks %s: Lambda could create the group first, without retention", r["DependsOn"], group)
			}
			role, attr, ok := getAtt(fn["Role"])
			if !ok || attr != "Arn" || str(s.resource(role)["Type"]) != "AWS::IAM::Role" {
				t.Errorf("Role %v, want !GetAtt <an AWS::IAM::Role>.Arn", fn["Role"])
			}
			if fn["Policies"] != nil {
				t.Error("Policies beside a Role: SAM applies Policies only to a role it generates; grant in the role")
			}
			if fn["FunctionUrlConfig"] != nil {
				want := ifThen("HasWebhookReservedConcurrency", ref("WebhookReservedConcurrency"), ref("AWS::NoValue"))
				if !equal(fn["ReservedConcurrentExecutions"], want) {
					t.Errorf("a webhook's reserved concurrency %v, want %v", fn["ReservedConcurrentExecutions"], want)
				}
			}
		})
	}
	// One sweep at a time (1, the default), or unreserved for a small account's quota (the lease
	// keeps overlapping runs from acting either way).
	if rc, want := s.function("RewardSweepFunction")["ReservedConcurrentExecutions"], ifThen("HasSweepReservedConcurrency", 1, ref("AWS::NoValue")); !equal(rc, want) {
		t.Errorf("the sweep's reserved concurrency %v, want %v", rc, want)
	}
}

func TestEnvironment(t *testing.T) {
	s := load(t)
	vars := config.Variables()
	secret := func(name string) bool { return slices.Contains(vars, name+"_ARN") }
	for _, v := range vars {
		if strings.HasSuffix(v, "_ARN") && slices.Contains(vars, strings.TrimSuffix(v, "_ARN")) {
			continue
		}
		if _, ok := readers[v]; !ok {
			t.Errorf("config reads %s: say in readers which functions need it", v)
		}
	}
	for _, v := range sortedKeys(readers) {
		if !slices.Contains(vars, v) {
			t.Errorf("readers lists %s, which config does not read", v)
		}
	}
	for _, id := range sortedKeys(functions) {
		folder := functions[id]
		env, _ := get(s.function(id), "Environment", "Variables").(map[string]any)
		for _, name := range sortedKeys(readers) {
			needed := slices.Contains(readers[name], folder)
			_, direct := env[name]
			_, byARN := env[name+"_ARN"]
			switch {
			case secret(name) && direct:
				t.Errorf("%s: the secret %s is set in plain text; give its ARN as %s_ARN", id, name, name)
			case needed && !direct && !byARN:
				t.Errorf("%s reads %s, which the template does not set", id, name)
			case !needed && (direct || byARN):
				t.Errorf("%s gets %s, which it does not read (or readers is out of date)", id, name)
			}
		}
		for _, name := range sortedKeys(env) {
			if !slices.Contains(vars, name) {
				t.Errorf("%s: %s is not a variable refbridge reads (shared/config.Variables)", id, name)
			}
		}
	}
}

func TestLeastPrivilege(t *testing.T) {
	s := load(t)
	table := s.resource("StateTable")
	indexes := map[string]bool{}
	for _, g := range list(get(table, "Properties", "GlobalSecondaryIndexes")) {
		indexes["${StateTable.Arn}/index/"+str(get(g, "IndexName"))] = true
	}
	users := map[string][]string{} // role → functions
	for _, id := range sortedKeys(functions) {
		role, _, _ := getAtt(s.function(id)["Role"])
		users[role] = append(users[role], id)
	}
	for _, role := range s.ofType("AWS::IAM::Role") {
		fns := users[role]
		if len(fns) != 1 {
			t.Errorf("%s is the role of %v: one role per function", role, fns)
			continue
		}
		id := fns[0]
		t.Run(id, func(t *testing.T) {
			rp := s.resource(role)["Properties"].(map[string]any)
			trust := list(get(rp, "AssumeRolePolicyDocument", "Statement"))
			if len(trust) != 1 || str(get(trust[0], "Principal", "Service")) != "lambda.amazonaws.com" || str(get(trust[0], "Action")) != "sts:AssumeRole" {
				t.Errorf("trust policy %v, want lambda.amazonaws.com only", trust)
			}
			for _, k := range []string{"ManagedPolicyArns", "RoleName"} {
				if rp[k] != nil {
					t.Errorf("%s: %v (managed policies are broader than this stack; a name needs CAPABILITY_NAMED_IAM)", k, rp[k])
				}
			}
			fn := s.function(id)
			group := s.logGroupNamed("/aws/lambda/" + str(get(fn, "FunctionName", "Fn::Sub")))
			var failureQueue string
			if q, attr, ok := getAtt(get(fn, "EventInvokeConfig", "DestinationConfig", "OnFailure", "Destination")); ok && attr == "Arn" {
				failureQueue = q
			}
			granted := map[string]bool{} // action → on some resource
			queriesIndex := false        // dynamodb:Query on one of the table's indexes
			var secrets []string
			for _, pol := range list(rp["Policies"]) {
				for _, st := range list(get(pol, "PolicyDocument", "Statement")) {
					if str(get(st, "Effect")) != "Allow" || get(st, "NotAction") != nil || get(st, "NotResource") != nil {
						t.Errorf("statement %v: only Allow with Action and Resource", st)
						continue
					}
					for _, a := range list(get(st, "Action")) {
						action := str(a)
						granted[action] = true
						if strings.Contains(action, "*") {
							t.Errorf("wildcard action %q", action)
						}
						for _, res := range list(get(st, "Resource")) {
							if err := s.allowed(action, res, group, failureQueue, indexes); err != nil {
								t.Error(err)
							}
							if action == "dynamodb:Query" && indexes[str(get(res, "Fn::Sub"))] {
								queriesIndex = true
							}
							if action == "secretsmanager:GetSecretValue" {
								secrets = append(secrets, params(res, s)...)
							}
						}
					}
				}
			}
			for _, a := range slices.Concat(dynamoActions, starActions, []string{"logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue"}) {
				if !granted[a] {
					t.Errorf("%s is not granted %s", id, a)
				}
			}
			// gsi1 holds the unmatched invoices and the pending intents, and every function reads
			// it: rf-webhook and stripe-webhook (a new lead's waiting invoices: UnmatchedFor), the
			// sweep (UnmatchedDue, PendingIntents). DynamoDB Local checks no IAM, so only this
			// test stands between a missing grant and AccessDenied in production.
			if wantIndex := true; queriesIndex != wantIndex {
				t.Errorf("%s may query gsi1: %v, want %v", id, queriesIndex, wantIndex)
			}
			if failureQueue != "" && !granted["sqs:SendMessage"] {
				t.Errorf("%s cannot send to its on-failure queue %s", id, failureQueue)
			}
			// The secrets the role reads are exactly those the function is given (config.Load
			// reads every *_ARN it is given, so one it may not read stops it at start).
			var given []string
			env, _ := get(fn, "Environment", "Variables").(map[string]any)
			for name, v := range env {
				if strings.HasSuffix(name, "_ARN") {
					given = append(given, params(v, s)...)
				}
			}
			slices.Sort(secrets)
			slices.Sort(given)
			if !slices.Equal(secrets, given) {
				t.Errorf("%s may read secrets %v, is given %v", id, secrets, given)
			}
		})
	}
}

// allowed says whether the role of a function may have action on resource: the state table and
// its indexes (Query only), the secrets parameters, the function's on-failure queue and log
// group, and "*" only for starActions.
func (s *stack) allowed(action string, resource any, logGroup, failureQueue string, indexes map[string]bool) error {
	bad := func(why string) error { return fmt.Errorf("%s on %v: %s", action, resource, why) }
	if resource == "*" {
		if !slices.Contains(starActions, action) {
			return bad(`"*" only for actions without resource-level permissions`)
		}
		return nil
	}
	res, attr, isAtt := getAtt(resource)
	switch service, _, _ := strings.Cut(action, ":"); service {
	case "dynamodb":
		if !slices.Contains(dynamoActions, action) {
			return bad("not an action refbridge's stores call")
		}
		if isAtt && res == "StateTable" && attr == "Arn" {
			return nil
		}
		if indexes[str(get(resource, "Fn::Sub"))] {
			if action != "dynamodb:Query" {
				return bad("an index is only queried")
			}
			return nil
		}
		return bad("not the state table or one of its indexes")
	case "secretsmanager":
		if action != "secretsmanager:GetSecretValue" {
			return bad("refbridge only reads secrets")
		}
		ps := params(resource, s)
		if len(ps) != 1 || !regexp.MustCompile(`Secrets?Arn$`).MatchString(ps[0]) {
			return bad("not a secret ARN parameter")
		}
		if l, ok := get(resource, "Fn::If").([]any); ok {
			if len(l) != 3 || !equal(l[1], ref(ps[0])) || !equal(l[2], ref("AWS::NoValue")) {
				return bad("an optional secret is !If [cond, !Ref param, !Ref AWS::NoValue]")
			}
		} else if !equal(resource, ref(ps[0])) {
			return bad("want !Ref of the parameter")
		}
		return nil
	case "sqs":
		if action != "sqs:SendMessage" || !isAtt || res != failureQueue || attr != "Arn" {
			return bad("only sending to the function's on-failure queue")
		}
		return nil
	case "logs":
		if action != "logs:CreateLogStream" && action != "logs:PutLogEvents" || !isAtt || res != logGroup || attr != "Arn" {
			return bad("only writing to the function's own log group")
		}
		return nil
	}
	return bad("unexpected action")
}

// TestWildcardsAreDocumented: every statement on Resource "*" says why in a comment.
func TestWildcardsAreDocumented(t *testing.T) {
	s := load(t)
	var walk func(n *yaml.Node)
	found := 0
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			var star bool
			comments := n.HeadComment + n.LineComment
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				comments += k.HeadComment + k.LineComment + v.LineComment
				if k.Value == "Resource" && (v.Value == "*" || slices.ContainsFunc(v.Content, func(c *yaml.Node) bool { return c.Value == "*" })) {
					star = true
				}
			}
			if star {
				found++
				if strings.TrimSpace(comments) == "" {
					t.Errorf("line %d: a statement on Resource \"*\" without a comment saying why", n.Line)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(s.root)
	if found == 0 {
		t.Error("no X-Ray statement on \"*\" found (Tracing: Active needs one per role)")
	}
}

func TestLogGroups(t *testing.T) {
	s := load(t)
	groups := s.ofType("AWS::Logs::LogGroup")
	if len(groups) != len(functions) {
		t.Errorf("%d log groups for %d functions", len(groups), len(functions))
	}
	for _, id := range groups {
		p := s.resource(id)["Properties"].(map[string]any)
		if !equal(p["RetentionInDays"], ref("LogRetentionDays")) {
			t.Errorf("%s: RetentionInDays %v, want !Ref LogRetentionDays", id, p["RetentionInDays"])
		}
	}
	if d := s.param("LogRetentionDays")["Default"]; d != 30 {
		t.Errorf("LogRetentionDays defaults to %v", d)
	}
}

func TestAlarms(t *testing.T) {
	s := load(t)
	topics := s.ofType("AWS::SNS::Topic")
	if len(topics) != 1 {
		t.Fatalf("SNS topics %v, want one", topics)
	}
	topic := topics[0]
	if !equal(get(s.doc, "Outputs", "AlarmTopicArn", "Value"), ref(topic)) {
		t.Error("no AlarmTopicArn output")
	}
	subs := s.ofType("AWS::SNS::Subscription")
	if len(subs) != 1 {
		t.Fatalf("subscriptions %v, want the AlarmEmail one", subs)
	}
	sr := s.resource(subs[0])
	if p := sr["Properties"].(map[string]any); sr["Condition"] != "HasAlarmEmail" || p["Protocol"] != "email" ||
		!equal(p["Endpoint"], ref("AlarmEmail")) || !equal(p["TopicArn"], ref(topic)) {
		t.Errorf("subscription %v: want email to !Ref AlarmEmail on condition HasAlarmEmail", sr)
	}
	if d := s.param("AlarmEmail")["Default"]; d != "" {
		t.Errorf("AlarmEmail defaults to %q: the email is optional", d)
	}

	type metric struct {
		namespace, name, stat string
		dims                  map[string]any
		period                int
	}
	alarms := map[string][]metric{}
	for _, id := range s.ofType("AWS::CloudWatch::Alarm") {
		p := s.resource(id)["Properties"].(map[string]any)
		actions := list(p["AlarmActions"])
		if len(actions) == 0 {
			t.Errorf("%s has no AlarmActions", id)
		}
		for _, a := range slices.Concat(actions, list(p["OKActions"])) {
			if !equal(a, ref(topic)) {
				t.Errorf("%s notifies %v, want !Ref %s", id, a, topic)
			}
		}
		desc := str(p["AlarmDescription"]) + str(get(p, "AlarmDescription", "Fn::Sub"))
		if len(desc) < 40 || len(desc) > 1024 {
			t.Errorf("%s: AlarmDescription %q: say what it means and what to do first (at most 1024 characters)", id, desc)
		}
		var ms []metric
		dims := func(v any) map[string]any {
			out := map[string]any{}
			for _, d := range list(v) {
				out[str(get(d, "Name"))] = get(d, "Value")
			}
			return out
		}
		if p["MetricName"] != nil {
			ms = append(ms, metric{str(p["Namespace"]), str(p["MetricName"]), str(p["Statistic"]), dims(p["Dimensions"]), num(p["Period"])})
		}
		returned := 0
		for _, q := range list(p["Metrics"]) {
			if get(q, "MetricStat") == nil && get(q, "ReturnData") != true {
				t.Errorf("%s: expression %v is not returned", id, get(q, "Id"))
			}
			if get(q, "ReturnData") != false {
				returned++
			}
			if m := get(q, "MetricStat"); m != nil {
				ms = append(ms, metric{str(get(m, "Metric", "Namespace")), str(get(m, "Metric", "MetricName")), str(get(m, "Stat")), dims(get(m, "Metric", "Dimensions")), num(get(m, "Period"))})
			}
		}
		if p["Metrics"] != nil && returned != 1 {
			t.Errorf("%s: %d queries return data, want 1 (the expression)", id, returned)
		}
		for _, m := range ms {
			if m.namespace != "refbridge" {
				continue
			}
			if p["TreatMissingData"] != "notBreaching" {
				t.Errorf("%s: a custom metric is only written when something happens: TreatMissingData %v, want notBreaching", id, p["TreatMissingData"])
			}
			if len(m.dims) != 1 || !slices.Contains(every, str(m.dims["Function"])) {
				t.Errorf("%s: %s dimensions %v, want Function = one of %v", id, m.name, m.dims, every)
			}
			if !slices.ContainsFunc(custom, func(c alarmSpec) bool { return c.metric == m.name }) {
				t.Errorf("%s: %s is not in the metrics contract", id, m.name)
			}
		}
		alarms[id] = ms
	}
	find := func(match func(id string, m metric) bool) []string {
		var ids []string
		for _, id := range sortedKeys(alarms) {
			if slices.ContainsFunc(alarms[id], func(m metric) bool { return match(id, m) }) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	for _, fn := range sortedKeys(functions) {
		for _, name := range []string{"Errors", "Throttles"} {
			if ids := find(func(_ string, m metric) bool {
				return m.namespace == "AWS/Lambda" && m.name == name && equal(m.dims, map[string]any{"FunctionName": ref(fn)})
			}); len(ids) != 1 {
				t.Errorf("alarms on %s's %s: %v, want one", fn, name, ids)
			}
		}
	}
	queue := find(func(_ string, m metric) bool {
		q, attr, _ := getAtt(m.dims["QueueName"])
		return m.namespace == "AWS/SQS" && m.name == "ApproximateNumberOfMessagesVisible" && q == "SweepFailureQueue" && attr == "QueueName"
	})
	if len(queue) != 1 {
		t.Errorf("alarms on SweepFailureQueue's depth: %v, want one", queue)
	} else if p := s.resource(queue[0])["Properties"].(map[string]any); !(p["ComparisonOperator"] == "GreaterThanThreshold" && num(p["Threshold"]) == 0) {
		t.Errorf("%s fires on %v %v, want > 0", queue[0], p["ComparisonOperator"], p["Threshold"])
	}
	for _, c := range custom {
		ids := find(func(_ string, m metric) bool { return m.namespace == "refbridge" && m.name == c.metric })
		if len(ids) != 1 {
			t.Errorf("alarms on %s: %v, want one", c.metric, ids)
			continue
		}
		id := ids[0]
		p := s.resource(id)["Properties"].(map[string]any)
		var covered []string
		for _, m := range alarms[id] {
			covered = append(covered, str(m.dims["Function"]))
			if m.stat != c.stat || m.period != c.period {
				t.Errorf("%s: %s %s over %d s, want %s over %d s", id, m.name, m.stat, m.period, c.stat, c.period)
			}
		}
		slices.Sort(covered)
		if want := slices.Sorted(slices.Values(c.functions)); !slices.Equal(covered, want) {
			t.Errorf("%s covers %v, want %v", id, covered, want)
		}
		want, got := c.datapoints, num(p["DatapointsToAlarm"])
		if want == 0 {
			want = c.evaluations
		}
		if p["DatapointsToAlarm"] == nil {
			got = num(p["EvaluationPeriods"])
		}
		if num(p["EvaluationPeriods"]) != c.evaluations || got != want {
			t.Errorf("%s: %d of %v periods, want %d of %d", id, got, p["EvaluationPeriods"], want, c.evaluations)
		}
		threshold := c.threshold
		if name, ok := threshold.(string); ok {
			threshold = ref(name)
		}
		if !equal(p["Threshold"], threshold) || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" {
			t.Errorf("%s: %v %v, want ≥ %v", id, p["ComparisonOperator"], p["Threshold"], threshold)
		}
	}
}

func TestOutputs(t *testing.T) {
	s := load(t)
	want := map[string]any{
		"StripeWebhookUrl": map[string]any{"Fn::GetAtt": []any{"StripeWebhookFunctionUrl", "FunctionUrl"}},
		"RfWebhookUrl":     map[string]any{"Fn::GetAtt": []any{"RfWebhookFunctionUrl", "FunctionUrl"}},
		"StateTableName":   ref("StateTable"),
		"AlarmTopicArn":    ref("AlarmTopic"),
	}
	for name, v := range want {
		if got := get(s.doc, "Outputs", name, "Value"); !equal(got, v) {
			t.Errorf("output %s = %v, want %v", name, got, v)
		}
	}
}

// TestBuildTargets runs what `sam build` runs for each function (BuildMethod: makefile):
// make build-<LogicalId> ARTIFACTS_DIR=…, which must leave a linux/arm64 `bootstrap`.
func TestBuildTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles every function")
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range sortedKeys(functions) {
		t.Run(id, func(t *testing.T) {
			recipe := makeRecipe(string(mk), "build-"+id)
			pkg := "./functions/" + functions[id]
			if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(pkg) + `(\s|$)`).MatchString(recipe) {
				t.Fatalf("Makefile target build-%s %q does not build %s", id, recipe, pkg)
			}
			if _, err := os.Stat(filepath.Join("..", pkg, "main.go")); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), "make", "--no-print-directory", "-C", "..", "build-"+id, "ARTIFACTS_DIR="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make build-%s: %v\n%s", id, err, out)
			}
			path := filepath.Join(dir, "bootstrap")
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode()&0o111 == 0 {
				t.Errorf("bootstrap is not executable: %v", st.Mode())
			}
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Errorf("bootstrap is %v %v %v, want a 64-bit arm64 executable", f.Class, f.Machine, f.Type)
			}
		})
	}
}

// makeRecipe returns the recipe lines of a Makefile target.
func makeRecipe(mk, target string) string {
	var out []string
	in := false
	for _, line := range strings.Split(mk, "\n") {
		switch {
		case strings.HasPrefix(line, target+":"):
			in = true
		case in && strings.HasPrefix(line, "\t"):
			out = append(out, strings.TrimSpace(line))
		case in:
			return strings.Join(out, "\n")
		}
	}
	return strings.Join(out, "\n")
}

// stack is template.yaml in CloudFormation's JSON form, with its YAML nodes (for comments).
type stack struct {
	doc  map[string]any
	root *yaml.Node
}

func load(t *testing.T) *stack {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	doc, err := cfnForm(&root)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatal("template.yaml is not a mapping")
	}
	return &stack{doc: m, root: &root}
}

// cfnForm turns YAML into CloudFormation's JSON form: !Ref x → {"Ref": "x"}, !GetAtt a.b →
// {"Fn::GetAtt": ["a", "b"]}, !Sub s → {"Fn::Sub": s}, and so on.
func cfnForm(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		return cfnForm(n.Content[0])
	case yaml.AliasNode:
		return cfnForm(n.Alias)
	}
	var v any
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.HasPrefix(n.Tag, "!!") {
			v = n.Value
		} else if err := n.Decode(&v); err != nil {
			return nil, err
		}
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			x, err := cfnForm(c)
			if err != nil {
				return nil, err
			}
			l = append(l, x)
		}
		v = l
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			x, err := cfnForm(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = x
		}
		v = m
	}
	if n.Tag == "" || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	switch fn := strings.TrimPrefix(n.Tag, "!"); fn {
	case "Ref", "Condition":
		return map[string]any{fn: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	default:
		return map[string]any{"Fn::" + fn: v}, nil
	}
}

func (s *stack) section(name string) map[string]any {
	m, _ := s.doc[name].(map[string]any)
	return m
}

func (s *stack) resource(id string) map[string]any {
	m, _ := s.section("Resources")[id].(map[string]any)
	return m
}

func (s *stack) param(id string) map[string]any {
	m, _ := s.section("Parameters")[id].(map[string]any)
	return m
}

// ofType returns the logical ids of the resources of a type, sorted.
func (s *stack) ofType(typ string) []string {
	var ids []string
	for id, r := range s.section("Resources") {
		if get(r, "Type") == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// function returns a function's properties merged with Globals as SAM merges them: maps key by
// key, lists concatenated, anything else (intrinsic functions included) the function's own.
func (s *stack) function(id string) map[string]any {
	merged, _ := samMerge(get(s.doc, "Globals", "Function"), s.resource(id)["Properties"]).(map[string]any)
	return merged
}

func samMerge(global, local any) any {
	gm, gok := global.(map[string]any)
	lm, lok := local.(map[string]any)
	if gok && lok && !intrinsic(gm) && !intrinsic(lm) {
		out := map[string]any{}
		for k, v := range gm {
			out[k] = v
		}
		for k, v := range lm {
			if g, ok := out[k]; ok {
				out[k] = samMerge(g, v)
			} else {
				out[k] = v
			}
		}
		return out
	}
	gl, gok := global.([]any)
	ll, lok := local.([]any)
	if gok && lok {
		return slices.Concat(gl, ll)
	}
	if local == nil {
		return global
	}
	return local
}

func intrinsic(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// logGroupNamed returns the logical id of the log group named (in a !Sub) name, or "".
func (s *stack) logGroupNamed(name string) string {
	for _, id := range s.ofType("AWS::Logs::LogGroup") {
		if equal(get(s.resource(id), "Properties", "LogGroupName"), sub(name)) {
			return id
		}
	}
	return ""
}

// params returns the parameters v refers to with Ref, anywhere inside it.
func params(v any, s *stack) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			out = append(out, params(x, s)...)
		}
	case map[string]any:
		if r, ok := v["Ref"]; ok && len(v) == 1 && s.param(str(r)) != nil {
			return []string{str(r)}
		}
		for _, k := range sortedKeys(v) {
			out = append(out, params(v[k], s)...)
		}
	}
	return out
}

// allows returns why value is not a valid value of parameter p, as CloudFormation judges it.
func allows(p map[string]any, value string) error {
	if vals, ok := p["AllowedValues"].([]any); ok && !slices.ContainsFunc(vals, func(v any) bool { return fmt.Sprint(v) == value }) {
		return fmt.Errorf("%q is not one of %v", value, vals)
	}
	if pat, ok := p["AllowedPattern"].(string); ok && !regexp.MustCompile(`^(?:`+pat+`)$`).MatchString(value) {
		return fmt.Errorf("%q does not match %s", value, pat)
	}
	if p["Type"] == "Number" {
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", value)
		}
		if lo, ok := p["MinValue"]; ok && f < float64(num(lo)) {
			return fmt.Errorf("%v is under %v", f, lo)
		}
		if hi, ok := p["MaxValue"]; ok && f > float64(num(hi)) {
			return fmt.Errorf("%v is over %v", f, hi)
		}
	}
	return nil
}

func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// list returns v as a list (a single value as a list of one, nil as none).
func list(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		return []any{v}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case float64:
		return int(v)
	}
	return -1
}

func getAtt(v any) (resource, attr string, ok bool) {
	l, _ := get(v, "Fn::GetAtt").([]any)
	if len(l) != 2 {
		return "", "", false
	}
	return str(l[0]), str(l[1]), true
}

func ref(name string) map[string]any { return map[string]any{"Ref": name} }

func sub(s string) map[string]any { return map[string]any{"Fn::Sub": s} }

func ifThen(cond string, yes, no any) map[string]any {
	return map[string]any{"Fn::If": []any{cond, yes, no}}
}

func equal(a, b any) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
