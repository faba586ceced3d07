package config

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

var currencyCode = regexp.MustCompile(`^[a-z]{3}$`)

// FuzzParseThreshold: a threshold that parses has amounts of at least 1 minor unit, currencies
// that are three lower-case letters (what Stripe sends), and answers For as it was written.
func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"1", "500", " 2000 ", "usd:500,eur:450", "usd:500,EUR:450,*:1000", "*:1", "usd:0", "dollars:5",
		"usd:500,", ":5", "usd:9223372036854775807", "usd:9223372036854775808", "u d:5", "éur:5", "5.00", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			if th.Default != 0 || th.PerCurrency != nil {
				t.Fatalf("an error with a threshold: %+v", th)
			}
			return
		}
		if th.Default != -1 && th.Default < 1 {
			t.Fatalf("default %d", th.Default)
		}
		for cur, n := range th.PerCurrency {
			if !currencyCode.MatchString(cur) || n < 1 {
				t.Fatalf("%q: %d", cur, n)
			}
			if got, ok := th.For(strings.ToUpper(cur)); !ok || got != n {
				t.Fatalf("For(%q) = %d %v, want %d", cur, got, ok, n)
			}
		}
		if _, ok := th.For("zzz"); ok != (th.Default >= 1) && th.PerCurrency["zzz"] == 0 {
			t.Fatalf("an unlisted currency: %v with default %d", ok, th.Default)
		}
	})
}

// The secrets FuzzLoad gives, each by a canary no other setting holds.
var loadSecrets = map[string]string{
	"RF_API_TOKEN":           "tok_canary_1a2b3c4d",
	"RF_WEBHOOK_SECRET":      "rfsecret_canary_5e6f,rfsecret_canary_old",
	"STRIPE_WEBHOOK_SECRETS": "whsec_canary_9a8b,whsec_canary_old",
	"STRIPE_API_KEY":         "rk_test_canary_7c6d",
}

// fuzzSecrets is Secrets Manager: an ARN ending in "missing" is not found, one ending in
// "empty" has no value, any other holds the canary of the variable it is given for.
type fuzzSecrets struct{}

func (fuzzSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	arn := *in.SecretId
	switch {
	case strings.HasSuffix(arn, "missing"):
		return nil, errors.New("ResourceNotFoundException: " + arn)
	case strings.HasSuffix(arn, "empty"):
		return &secretsmanager.GetSecretValueOutput{SecretString: new(string)}, nil
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(arn, "arn:"), "/")
	v := loadSecrets[name]
	return &secretsmanager.GetSecretValueOutput{SecretString: &v}, nil
}

// FuzzLoad runs Load on a fuzzed environment, given as NAME=value lines; each secret is given
// directly, by ARN, both, or not at all, as modes says. A configuration that loads is valid
// (every range and list as documented), and an error never holds a secret's value (init errors
// are logged before any redaction is set up).
func FuzzLoad(f *testing.F) {
	f.Add("RF_CAMPAIGN_IDS=3, 5\nQUALIFY_MIN_AMOUNT=usd:500,EUR:450\nRF_WEBHOOK_FIELDS=code=referral_code, email=mail\nREWARD_ISSUE_ALLOW_METRICS=coupon,amount", uint8(0))
	f.Add("STATE_TABLE=t\nRF_API_URL=http://127.0.0.1:8081/api/v2/\nSTRIPE_MODE=LIVE\nRF_RATE_PER_MINUTE=600\nDRY_RUN=1\nRF_SIGNUP_CAMPAIGN_ID=4", uint8(0x55))
	f.Add("REWARD_HOLD_DAYS=3650\nQUALIFY_WINDOW_DAYS=0\nUNMATCHED_RETRY_DAYS=7\nREWARD_MAX_PER_RECIPIENT_PER_MONTH=1000000\nRF_SIGNUP_NOTIFY=false", uint8(0xaa))
	f.Add("RF_CAMPAIGN_IDS=,,\nRF_WEBHOOK_FIELDS==,a=\nRF_API_URL=ftp://x\nRF_RATE_PER_MINUTE=0x10\nSTRIPE_MODE=prod", uint8(0xff))
	f.Add("RF_REFERRAL_METADATA_KEY=ref\nRF_CAMPAIGN_IDS=9223372036854775808\nREWARD_ISSUE_ALLOW_METRICS=AMOUNT,points", uint8(3))
	f.Fuzz(func(t *testing.T, block string, modes uint8) {
		e := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				if _, secret := loadSecrets[strings.TrimSuffix(k, "_ARN")]; !secret {
					e[k] = v
				}
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range loadSecrets {
				if !yield(k) {
					return
				}
			}
		})
		for i, name := range names {
			switch modes >> (2 * i) & 3 {
			case 1:
				e[name] = loadSecrets[name]
			case 2:
				e[name+"_ARN"] = "arn:" + name + "/" + []string{"ok", "missing", "empty"}[int(modes)%3]
			case 3:
				e[name], e[name+"_ARN"] = loadSecrets[name], "arn:"+name+"/ok"
			}
		}
		for _, s := range loadSecrets {
			for _, part := range strings.Split(s, ",") {
				for k, v := range e {
					if !strings.HasSuffix(k, "_ARN") && loadSecrets[k] == "" && strings.Contains(v, part) {
						t.Skip("a setting holds a canary")
					}
				}
			}
		}
		need := Need{RFAPIToken: modes&0x40 != 0, RFWebhookSecret: modes&0x10 != 0, StripeWebhookSecrets: modes&0x04 != 0}
		c, err := Load(context.Background(), func(k string) string { return e[k] }, fuzzSecrets{}, need)
		if err != nil {
			for _, s := range loadSecrets {
				for _, part := range strings.Split(s, ",") {
					if strings.Contains(err.Error(), part) {
						t.Fatalf("the error holds the secret %q: %v", part, err)
					}
				}
			}
			return
		}
		checkConfig(t, c, e, need)
	})
}

func checkConfig(t *testing.T, c Config, e map[string]string, need Need) {
	t.Helper()
	if need.RFAPIToken && c.RFAPIToken == "" || need.RFWebhookSecret && len(c.RFWebhookSecrets) == 0 ||
		need.StripeWebhookSecrets && len(c.StripeWebhookSecrets) == 0 {
		t.Fatalf("a required secret is missing: %+v", c)
	}
	for _, s := range slices.Concat(c.RFWebhookSecrets, c.StripeWebhookSecrets) {
		if s == "" || s != strings.TrimSpace(s) || strings.Contains(s, ",") {
			t.Fatalf("secret list item %q", s)
		}
	}
	for _, s := range c.StripeWebhookSecrets {
		if need.StripeWebhookSecrets && !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("stripe secret %q", s)
		}
	}
	if u, err := url.Parse(c.RFAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(c.RFAPIURL, "/") {
		t.Fatalf("RF_API_URL %q", c.RFAPIURL)
	}
	for _, id := range c.RFCampaignIDs {
		if id < 1 {
			t.Fatalf("campaign %d", id)
		}
	}
	if c.SignupCampaignID < 0 || strings.TrimSpace(e["RF_SIGNUP_CAMPAIGN_ID"]) == "" && len(c.RFCampaignIDs) > 0 && c.SignupCampaignID != c.RFCampaignIDs[0] {
		t.Fatalf("signup campaign %d of %v", c.SignupCampaignID, c.RFCampaignIDs)
	}
	if c.RFRatePerMinute < 1 || c.RFRatePerMinute > 600 || c.RewardMaxPerMonth < 0 || c.RewardMaxPerMonth > 1_000_000 {
		t.Fatalf("rate %d, cap %d", c.RFRatePerMinute, c.RewardMaxPerMonth)
	}
	for _, d := range []time.Duration{c.QualifyWindow, c.RewardHold, c.UnmatchedRetry} {
		if d < 0 || d > 3650*24*time.Hour || d%(24*time.Hour) != 0 {
			t.Fatalf("duration %v", d)
		}
	}
	if len(c.RewardIssueMetrics) == 0 || !slices.IsSorted(c.RewardIssueMetrics) {
		t.Fatalf("metrics %v", c.RewardIssueMetrics)
	}
	for _, m := range c.RewardIssueMetrics {
		if !slices.Contains(allMetrics, m) {
			t.Fatalf("metric %q", m)
		}
	}
	for k, v := range c.RFWebhookFields {
		if k == "" || v == "" || k != strings.TrimSpace(k) || v != strings.TrimSpace(v) {
			t.Fatalf("field map %q=%q", k, v)
		}
	}
	if c.QualifyMin.Default != -1 && c.QualifyMin.Default < 1 {
		t.Fatalf("threshold %+v", c.QualifyMin)
	}
	if c.StripeLive != strings.EqualFold(strings.TrimSpace(e["STRIPE_MODE"]), "live") {
		t.Fatalf("STRIPE_MODE %q → live %v", e["STRIPE_MODE"], c.StripeLive)
	}
}
