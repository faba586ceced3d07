package config

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

type env map[string]string

func (e env) get(k string) string { return e[k] }

type fakeSecrets map[string]string

func (f fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	v, ok := f[*in.SecretId]
	if !ok {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: &v}, nil
}

var all = Need{RFAPIToken: true, RFWebhookSecret: true, StripeWebhookSecrets: true}

func TestDefaults(t *testing.T) {
	c, err := Load(context.Background(), env{"RF_API_TOKEN": "tok", "RF_WEBHOOK_SECRET": "s1", "STRIPE_WEBHOOK_SECRETS": "whsec_a"}.get, nil, all)
	if err != nil {
		t.Fatal(err)
	}
	if c.RFAPIURL != "https://referral-factory.com/api/v2" || c.StripeLive || c.RewardHold != 14*24*time.Hour ||
		c.UnmatchedRetry != 3*24*time.Hour || c.QualifyWindow != 0 || c.RFRatePerMinute != 500 || c.DryRun ||
		c.ReferralMetadataKey != "rf_referrer_code" || c.SignupNotify || len(c.RewardIssueMetrics) != 4 || c.StateTable != "" {
		t.Fatalf("defaults %+v", c)
	}
	if n, ok := c.QualifyMin.For("JPY"); !ok || n != 1 {
		t.Errorf("default threshold %d %v", n, ok)
	}
}

func TestEverythingSet(t *testing.T) {
	e := env{
		"STATE_TABLE": "refbridge-state", "RF_API_URL": "http://127.0.0.1:8081/api/v2/", "RF_API_TOKEN_ARN": "arn:tok",
		"RF_CAMPAIGN_IDS": "3, 5", "RF_WEBHOOK_SECRET": "old,new", "STRIPE_WEBHOOK_SECRETS_ARN": "arn:wh",
		"STRIPE_API_KEY": "sk_test_1", "STRIPE_MODE": "live", "QUALIFY_MIN_AMOUNT": "usd:500,EUR:450",
		"QUALIFY_WINDOW_DAYS": "90", "REWARD_HOLD_DAYS": "0", "UNMATCHED_RETRY_DAYS": "7", "RF_RATE_PER_MINUTE": "300",
		"DRY_RUN": "true", "RF_REFERRAL_METADATA_KEY": "ref", "RF_SIGNUP_NOTIFY": "1",
		"RF_WEBHOOK_FIELDS": "code=referral_code, email=mail", "REWARD_MAX_PER_RECIPIENT_PER_MONTH": "2",
		"REWARD_ISSUE_ALLOW_METRICS": "coupon,amount",
	}
	c, err := Load(context.Background(), e.get, fakeSecrets{"arn:tok": "tok_from_sm", "arn:wh": "whsec_1,whsec_2"}, all)
	if err != nil {
		t.Fatal(err)
	}
	if c.RFAPIURL != "http://127.0.0.1:8081/api/v2" || c.RFAPIToken != "tok_from_sm" || len(c.StripeWebhookSecrets) != 2 ||
		len(c.RFWebhookSecrets) != 2 || !c.StripeLive || c.SignupCampaignID != 3 || c.QualifyWindow != 90*24*time.Hour ||
		c.RewardHold != 0 || c.RFRatePerMinute != 300 || !c.DryRun || !c.SignupNotify || c.RFWebhookFields["email"] != "mail" ||
		c.RewardMaxPerMonth != 2 || strings.Join(c.RewardIssueMetrics, ",") != "amount,coupon" {
		t.Fatalf("config %+v", c)
	}
	if n, ok := c.QualifyMin.For("eur"); !ok || n != 450 {
		t.Errorf("eur %d %v", n, ok)
	}
	if _, ok := c.QualifyMin.For("gbp"); ok {
		t.Errorf("gbp has a threshold though the list does not name it")
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	base := func() env {
		return env{"RF_API_TOKEN": "tok", "RF_WEBHOOK_SECRET": "s", "STRIPE_WEBHOOK_SECRETS": "whsec_a"}
	}
	tests := []struct {
		name, key, value, want string
	}{
		{"missing token", "RF_API_TOKEN", "", "RF_API_TOKEN: required"},
		{"bad mode", "STRIPE_MODE", "prod", "STRIPE_MODE"},
		{"bad threshold", "QUALIFY_MIN_AMOUNT", "5.00", "QUALIFY_MIN_AMOUNT"},
		{"zero threshold", "QUALIFY_MIN_AMOUNT", "0", "QUALIFY_MIN_AMOUNT"},
		{"bad currency", "QUALIFY_MIN_AMOUNT", "dollars:5", "QUALIFY_MIN_AMOUNT"},
		{"a currency of three bytes that are not letters", "QUALIFY_MIN_AMOUNT", "usd:500,u d:5", "QUALIFY_MIN_AMOUNT"},
		{"a currency symbol", "QUALIFY_MIN_AMOUNT", "€:5", "QUALIFY_MIN_AMOUNT"},
		{"bad days", "REWARD_HOLD_DAYS", "-1", "REWARD_HOLD_DAYS"},
		{"rate over RF's limit", "RF_RATE_PER_MINUTE", "601", "RF_RATE_PER_MINUTE"},
		{"bad campaign", "RF_CAMPAIGN_IDS", "1,x", "RF_CAMPAIGN_IDS"},
		{"bad bool", "DRY_RUN", "yes please", "DRY_RUN"},
		{"bad field map", "RF_WEBHOOK_FIELDS", "code", "RF_WEBHOOK_FIELDS"},
		{"bad metric", "REWARD_ISSUE_ALLOW_METRICS", "points", "REWARD_ISSUE_ALLOW_METRICS"},
		{"bad url", "RF_API_URL", "referral-factory.com", "RF_API_URL"},
		{"not a whsec", "STRIPE_WEBHOOK_SECRETS", "sk_live_oops", "STRIPE_WEBHOOK_SECRETS"},
		{"both direct and ARN", "RF_API_TOKEN_ARN", "arn:x", "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base()
			e[tt.key] = tt.value
			_, err := Load(context.Background(), e.get, fakeSecrets{}, all)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sk_live_oops") || strings.Contains(err.Error(), "tok") && tt.key != "RF_API_TOKEN_ARN" {
				t.Errorf("a secret value leaked into the error: %v", err)
			}
		})
	}
	// Every problem at once.
	_, err := Load(context.Background(), env{"STRIPE_MODE": "x", "DRY_RUN": "x"}.get, nil, all)
	for _, name := range []string{"RF_API_TOKEN", "RF_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRETS", "STRIPE_MODE", "DRY_RUN"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("missing %s in %v", name, err)
		}
	}
	// A secret ARN that cannot be read names the ARN variable.
	_, err = Load(context.Background(), env{"RF_API_TOKEN_ARN": "arn:missing"}.get, fakeSecrets{}, Need{RFAPIToken: true})
	if err == nil || !strings.Contains(err.Error(), "RF_API_TOKEN_ARN") {
		t.Errorf("unreadable secret: %v", err)
	}
}

func TestOnlyNeededSecretsAreRequired(t *testing.T) {
	if _, err := Load(context.Background(), env{"RF_API_TOKEN": "t"}.get, nil, Need{RFAPIToken: true}); err != nil {
		t.Fatalf("sweep-like config: %v", err)
	}
}

// TestVariablesAreWhatLoadReads keeps Variables in step with Load: every name Load asks getenv
// for, with nothing set and with everything set, and no other.
func TestVariablesAreWhatLoadReads(t *testing.T) {
	full := env{
		"STATE_TABLE": "t", "RF_API_URL": "http://127.0.0.1:8081/api/v2", "RF_API_TOKEN_ARN": "arn:tok",
		"RF_CAMPAIGN_IDS": "3", "RF_WEBHOOK_SECRET": "s", "STRIPE_WEBHOOK_SECRETS": "whsec_1",
		"STRIPE_API_KEY_ARN": "arn:key", "STRIPE_MODE": "live", "QUALIFY_MIN_AMOUNT": "usd:500",
		"QUALIFY_WINDOW_DAYS": "9", "REWARD_HOLD_DAYS": "1", "UNMATCHED_RETRY_DAYS": "2", "RF_RATE_PER_MINUTE": "10",
		"DRY_RUN": "true", "RF_REFERRAL_METADATA_KEY": "ref", "RF_SIGNUP_NOTIFY": "true", "RF_SIGNUP_CAMPAIGN_ID": "4",
		"RF_WEBHOOK_FIELDS": "code=c", "REWARD_MAX_PER_RECIPIENT_PER_MONTH": "2", "REWARD_ISSUE_ALLOW_METRICS": "amount",
	}
	read := map[string]bool{}
	for _, e := range []env{{}, full} {
		getenv := func(k string) string { read[k] = true; return e[k] }
		_, _ = Load(context.Background(), getenv, fakeSecrets{"arn:tok": "tok", "arn:key": "sk_test_1"}, all)
	}
	var got []string
	for k := range read {
		got = append(got, k)
	}
	sort.Strings(got)
	if want := Variables(); !slices.Equal(got, want) {
		t.Errorf("Load reads\n  %v\nVariables says\n  %v", got, want)
	}
	if !slices.IsSorted(Variables()) {
		t.Error("Variables is not sorted")
	}
	v := Variables()
	v[0] = "changed"
	if Variables()[0] == "changed" {
		t.Error("Variables returns its own slice")
	}
}
