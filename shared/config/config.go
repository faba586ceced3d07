// Package config reads and validates refbridge's settings once, at cold start, from the
// environment (the names in PRODUCT.md, the same everywhere: Lambda, the local server, the
// CLI). Each secret may be given directly or as <NAME>_ARN, a Secrets Manager secret read once.
// A missing or malformed setting is an error that names it, so the function stops at init.
package config

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Config is every setting refbridge reads.
type Config struct {
	StateTable           string
	RFAPIURL             string
	RFAPIToken           string
	RFCampaignIDs        []int64
	RFWebhookSecrets     []string
	StripeWebhookSecrets []string
	StripeAPIKey         string
	StripeLive           bool // STRIPE_MODE=live
	QualifyMin           Threshold
	QualifyWindow        time.Duration // 0 = no limit
	RewardHold           time.Duration
	UnmatchedRetry       time.Duration
	RFRatePerMinute      int
	DryRun               bool
	SignupCampaignID     int64
	ReferralMetadataKey  string
	SignupNotify         bool
	RFWebhookFields      map[string]string
	RewardMaxPerMonth    int
	RewardIssueMetrics   []string
}

// Need says which secrets a function requires.
type Need struct {
	RFAPIToken           bool
	RFWebhookSecret      bool
	StripeWebhookSecrets bool
}

// SecretsAPI is the part of the Secrets Manager client config uses.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Threshold is the qualifying amount in minor units, per currency.
type Threshold struct {
	// Default applies to every currency not listed; -1 means unlisted currencies never qualify.
	Default     int64
	PerCurrency map[string]int64
}

// For returns the threshold for a currency and whether one applies.
func (t Threshold) For(currency string) (int64, bool) {
	if v, ok := t.PerCurrency[strings.ToLower(currency)]; ok {
		return v, true
	}
	return t.Default, t.Default >= 0
}

// ParseThreshold reads "500" (every currency) or "usd:500,eur:450" (only those; add "*:1000"
// for the rest). Amounts are minor units and must be at least 1: a $0 invoice never qualifies.
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, ":") {
		n, err := positive(s)
		return Threshold{Default: n}, err
	}
	t := Threshold{Default: -1, PerCurrency: map[string]int64{}}
	for _, part := range strings.Split(s, ",") {
		cur, amt, ok := strings.Cut(strings.TrimSpace(part), ":")
		cur = strings.ToLower(strings.TrimSpace(cur))
		if !ok || (cur != "*" && !isCurrency(cur)) {
			return Threshold{}, fmt.Errorf("%q: want currency:amount, e.g. usd:500", part)
		}
		n, err := positive(amt)
		if err != nil {
			return Threshold{}, fmt.Errorf("%q: %w", part, err)
		}
		if cur == "*" {
			t.Default = n
		} else {
			t.PerCurrency[cur] = n
		}
	}
	return t, nil
}

// isCurrency: three lower-case ASCII letters, as Stripe writes ISO 4217 codes. Any other
// three bytes ("u d", "€") would name a currency no invoice has, and silently never qualify.
func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range len(s) {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

func positive(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a whole number of minor units ≥ 1", s)
	}
	return n, nil
}

// allMetrics are the reward metrics the sweep may issue by default (never modified).
var allMetrics = []string{"amount", "commission", "coupon", "custom"}

// variables are the environment variables Load reads (TestVariablesAreWhatLoadReads keeps them
// in step with Load).
var variables = []string{
	"DRY_RUN",
	"QUALIFY_MIN_AMOUNT",
	"QUALIFY_WINDOW_DAYS",
	"REWARD_HOLD_DAYS",
	"REWARD_ISSUE_ALLOW_METRICS",
	"REWARD_MAX_PER_RECIPIENT_PER_MONTH",
	"RF_API_TOKEN", "RF_API_TOKEN_ARN",
	"RF_API_URL",
	"RF_CAMPAIGN_IDS",
	"RF_RATE_PER_MINUTE",
	"RF_REFERRAL_METADATA_KEY",
	"RF_SIGNUP_CAMPAIGN_ID",
	"RF_SIGNUP_NOTIFY",
	"RF_WEBHOOK_FIELDS",
	"RF_WEBHOOK_SECRET", "RF_WEBHOOK_SECRET_ARN",
	"STATE_TABLE",
	"STRIPE_API_KEY", "STRIPE_API_KEY_ARN",
	"STRIPE_MODE",
	"STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_SECRETS_ARN",
	"UNMATCHED_RETRY_DAYS",
}

// Variables returns the names of the environment variables Load reads, sorted, so that a
// deployment can be checked against them (deploy's tests compare template.yaml with this list).
// A secret appears twice, as NAME and NAME_ARN: setting either one sets it.
func Variables() []string {
	return slices.Clone(variables)
}

// Load reads the configuration. getenv is os.Getenv in production; secrets may be nil when no
// *_ARN variable is used.
func Load(ctx context.Context, getenv func(string) string, secrets SecretsAPI, need Need) (Config, error) {
	r := reader{ctx: ctx, getenv: getenv, secrets: secrets}
	c := Config{
		StateTable:           r.str("STATE_TABLE", ""),
		RFAPIURL:             r.url("RF_API_URL", "https://referral-factory.com/api/v2"),
		RFAPIToken:           r.secret("RF_API_TOKEN", need.RFAPIToken),
		RFCampaignIDs:        r.ids("RF_CAMPAIGN_IDS"),
		RFWebhookSecrets:     r.list(r.secret("RF_WEBHOOK_SECRET", need.RFWebhookSecret)),
		StripeWebhookSecrets: r.list(r.secret("STRIPE_WEBHOOK_SECRETS", need.StripeWebhookSecrets)),
		StripeAPIKey:         r.secret("STRIPE_API_KEY", false),
		QualifyWindow:        r.days("QUALIFY_WINDOW_DAYS", 0),
		RewardHold:           r.days("REWARD_HOLD_DAYS", 14),
		UnmatchedRetry:       r.days("UNMATCHED_RETRY_DAYS", 3),
		RFRatePerMinute:      r.intRange("RF_RATE_PER_MINUTE", 500, 1, 600),
		DryRun:               r.boolean("DRY_RUN", false),
		ReferralMetadataKey:  r.str("RF_REFERRAL_METADATA_KEY", "rf_referrer_code"),
		SignupNotify:         r.boolean("RF_SIGNUP_NOTIFY", false),
		RFWebhookFields:      r.fieldMap("RF_WEBHOOK_FIELDS"),
		RewardMaxPerMonth:    r.intRange("REWARD_MAX_PER_RECIPIENT_PER_MONTH", 0, 0, 1_000_000),
		RewardIssueMetrics:   r.metrics("REWARD_ISSUE_ALLOW_METRICS"),
	}
	switch mode := strings.ToLower(r.str("STRIPE_MODE", "test")); mode {
	case "test":
	case "live":
		c.StripeLive = true
	default:
		r.fail("STRIPE_MODE", fmt.Errorf("%q: want test or live", mode))
	}
	if th, err := ParseThreshold(r.str("QUALIFY_MIN_AMOUNT", "1")); err != nil {
		r.fail("QUALIFY_MIN_AMOUNT", err)
	} else {
		c.QualifyMin = th
	}
	c.SignupCampaignID = r.id("RF_SIGNUP_CAMPAIGN_ID")
	if c.SignupCampaignID == 0 && len(c.RFCampaignIDs) > 0 {
		c.SignupCampaignID = c.RFCampaignIDs[0]
	}
	if need.StripeWebhookSecrets {
		for _, s := range c.StripeWebhookSecrets {
			if !strings.HasPrefix(s, "whsec_") {
				r.fail("STRIPE_WEBHOOK_SECRETS", errors.New("each secret starts with whsec_"))
				break
			}
		}
	}
	if err := errors.Join(r.errs...); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// reader collects every problem, so one deploy shows all of them at once.
type reader struct {
	ctx     context.Context
	getenv  func(string) string
	secrets SecretsAPI
	errs    []error
}

func (r *reader) fail(name string, err error) {
	r.errs = append(r.errs, fmt.Errorf("%s: %w", name, err))
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) url(name, def string) string {
	v := strings.TrimRight(r.str(name, def), "/")
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		r.fail(name, fmt.Errorf("%q is not an absolute http(s) URL", v))
	}
	return v
}

// secret reads NAME, or the Secrets Manager secret whose ARN is in NAME_ARN. Its value is never
// put in an error.
func (r *reader) secret(name string, required bool) string {
	direct, arn := strings.TrimSpace(r.getenv(name)), strings.TrimSpace(r.getenv(name+"_ARN"))
	switch {
	case direct != "" && arn != "":
		r.fail(name, fmt.Errorf("set %s or %s_ARN, not both", name, name))
		return ""
	case arn != "":
		if r.secrets == nil {
			r.fail(name+"_ARN", errors.New("no Secrets Manager client"))
			return ""
		}
		out, err := r.secrets.GetSecretValue(r.ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
		if err != nil {
			r.fail(name+"_ARN", fmt.Errorf("read secret: %w", err))
			return ""
		}
		if out.SecretString == nil || strings.TrimSpace(*out.SecretString) == "" {
			r.fail(name+"_ARN", errors.New("the secret has no string value"))
			return ""
		}
		return strings.TrimSpace(*out.SecretString)
	case direct == "" && required:
		r.fail(name, fmt.Errorf("required (or %s_ARN)", name))
	}
	return direct
}

func (r *reader) list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (r *reader) id(name string) int64 {
	v := r.str(name, "")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		r.fail(name, fmt.Errorf("%q is not a campaign id", v))
	}
	return n
}

func (r *reader) ids(name string) []int64 {
	var out []int64
	for _, s := range r.list(r.getenv(name)) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			r.fail(name, fmt.Errorf("%q is not a campaign id", s))
			continue
		}
		out = append(out, n)
	}
	return out
}

func (r *reader) intRange(name string, def, lo, hi int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, fmt.Errorf("%q: want a whole number from %d to %d", v, lo, hi))
		return def
	}
	return n
}

func (r *reader) days(name string, def int) time.Duration {
	return time.Duration(r.intRange(name, def, 0, 3650)) * 24 * time.Hour
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, fmt.Errorf("%q: want true or false", v))
		return def
	}
	return b
}

// fieldMap reads "code=referral_code,email=mail": refbridge's name = the name the RF admin chose.
func (r *reader) fieldMap(name string) map[string]string {
	out := map[string]string{}
	for _, pair := range r.list(r.getenv(name)) {
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			r.fail(name, fmt.Errorf("%q: want field=name", pair))
			continue
		}
		out[k] = v
	}
	return out
}

func (r *reader) metrics(name string) []string {
	given := r.list(strings.ToLower(r.getenv(name)))
	if len(given) == 0 {
		return append([]string(nil), allMetrics...)
	}
	for _, m := range given {
		if !slices.Contains(allMetrics, m) {
			r.fail(name, fmt.Errorf("%q: want some of %s", m, strings.Join(allMetrics, ",")))
		}
	}
	sort.Strings(given)
	return given
}
