// Package wiring builds, once per process, what refbridge's handlers are made of: the
// configuration (secrets from Secrets Manager), the stores, the Referral Factory client behind
// the shared rate limiter, the referral decisions and, with STRIPE_API_KEY, the Stripe customer
// client; and from those the three handlers. Lambda functions build on DynamoDB; the local
// server and CLI (cmd/refbridge) build on the same code, in memory when STATE_TABLE is unset.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/logging"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfevents"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/stripecustomers"
	"github.com/refbridge/refbridge/shared/stripewebhook"
	"github.com/refbridge/refbridge/shared/sweep"
)

// ErrNoTable means STATE_TABLE is missing where it is required.
var ErrNoTable = errors.New("STATE_TABLE: required in Lambda (the in-memory store is for local runs only)")

// How long an event id is remembered: Stripe retries a failed delivery for up to three days;
// RF's retry policy is undocumented, so a week.
const (
	stripeEventMemory = 4 * 24 * time.Hour
	rfEventMemory     = 7 * 24 * time.Hour
)

// Deps are the shared parts of the handlers.
type Deps struct {
	Config      config.Config
	Ledger      ledger.Store
	Idempotency idempotency.Store
	Lease       lease.Store
	RF          *rf.Client
	Decisions   *referrals.Service
	Customers   *stripecustomers.Client // nil without STRIPE_API_KEY
	Log         *slog.Logger

	metrics *observe.Metrics // nil: none (local runs)
	now     func() time.Time // the decisions' clock; nil: the real one
	ddbOpts []func(*dynamodb.Options)
	rfOpts  []rf.Option
}

// Option changes how Local builds.
type Option func(*Deps)

// WithClock sets the clock of the decisions — qualification and reversal times, holds, first
// sightings, retry windows — so a demo can let days pass in seconds. Deadlines, signatures and
// idempotency keep the real clock.
func WithClock(now func() time.Time) Option { return func(d *Deps) { d.now = now } }

// WithDynamoDBOptions adds options to the DynamoDB client, after refbridge's own: the
// benchmarks count every request and its consumed capacity with a middleware.
func WithDynamoDBOptions(opts ...func(*dynamodb.Options)) Option {
	return func(d *Deps) { d.ddbOpts = append(d.ddbOpts, opts...) }
}

// WithRFOptions adds options to the Referral Factory client, after the configured ones, so
// they win: the benchmarks observe every call, and replace the limiter to run faster than
// RF_RATE_PER_MINUTE allows.
func WithRFOptions(opts ...rf.Option) Option {
	return func(d *Deps) { d.rfOpts = append(d.rfOpts, opts...) }
}

// Lambda builds the dependencies of the named function ("stripe-webhook", "rf-webhook",
// "reward-sweep") from the environment, on the DynamoDB table STATE_TABLE names. Its JSON logs
// (level AWS_LAMBDA_LOG_LEVEL) and EMF metrics go to stdout.
func Lambda(ctx context.Context, function string, need config.Need) (Deps, error) {
	out := observe.Sync(os.Stdout)
	d, err := build(ctx, os.Getenv, need, true, out, observe.New(out, function), function)
	if err == nil {
		// aws-lambda-go reports a handler's error through the log package: as a JSON line too.
		slog.SetDefault(d.Log)
	}
	return d, err
}

// Local builds the dependencies of the local server and CLI from getenv, logging to out: on
// DynamoDB when STATE_TABLE is set (AWS_ENDPOINT_URL_DYNAMODB points it at DynamoDB Local), else
// in memory, with an in-process rate limiter. Secrets given by *_ARN are read as in Lambda.
// No metrics are written.
func Local(ctx context.Context, getenv func(string) string, out io.Writer, need config.Need, opts ...Option) (Deps, error) {
	return build(ctx, getenv, need, false, out, nil, "refbridge", opts...)
}

func build(ctx context.Context, getenv func(string) string, need config.Need, requireTable bool,
	out io.Writer, metrics *observe.Metrics, function string, opts ...Option) (Deps, error) {
	level := observe.Level(getenv("AWS_LAMBDA_LOG_LEVEL"))
	// The SDK's own warnings (retries, checksums) go out as JSON lines too. They never hold a
	// configured secret, and those are not known yet.
	sdkLog := observe.NewLogger(out, observe.LogOptions{Function: function, Level: level}).With("source", "aws-sdk")
	aws, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		lvl := slog.LevelDebug
		if c == logging.Warn {
			lvl = slog.LevelWarn
		}
		sdkLog.Log(ctx, lvl, fmt.Sprintf(format, v...))
	})))
	if err != nil {
		return Deps{}, fmt.Errorf("AWS configuration: %w", err)
	}
	cfg, err := config.Load(ctx, getenv, secretsmanager.NewFromConfig(aws), need)
	if err != nil {
		return Deps{}, err
	}
	log := observe.NewLogger(out, observe.LogOptions{Function: function, Level: level, Secrets: secrets(cfg)})
	d := Deps{Config: cfg, Log: log, metrics: metrics}
	for _, o := range opts {
		o(&d)
	}
	ledgerOpts := []ledger.Option{ledger.WithClock(d.now)}
	rfOpts := []rf.Option{rf.WithLogger(log)}
	if metrics != nil {
		rfOpts = append(rfOpts, rfMetrics(metrics))
	}
	switch {
	case cfg.StateTable != "":
		var ddbOpts []func(*dynamodb.Options)
		if metrics != nil {
			ddbOpts = append(ddbOpts, ddbMetrics(metrics))
		}
		db := dynamodb.NewFromConfig(aws, append(ddbOpts, d.ddbOpts...)...)
		bucket, err := ratelimit.New(db, cfg.StateTable, "rf", ratelimit.PerMinute(cfg.RFRatePerMinute))
		if err != nil {
			return Deps{}, err
		}
		rfOpts = append(rfOpts, rf.WithLimiter(bucket))
		d.Ledger = ledger.NewDynamo(db, cfg.StateTable, ledgerOpts...)
		d.Idempotency = idempotency.NewDynamo(db, cfg.StateTable)
		d.Lease = lease.NewDynamo(db, cfg.StateTable)
	case requireTable:
		return Deps{}, ErrNoTable
	default:
		rfOpts = append(rfOpts, rf.WithRatePerMinute(cfg.RFRatePerMinute))
		d.Ledger, d.Idempotency, d.Lease = ledger.NewMemory(ledgerOpts...), idempotency.NewMemory(), lease.NewMemory()
	}
	if d.RF, err = rf.New(cfg.RFAPIURL, cfg.RFAPIToken, append(rfOpts, d.rfOpts...)...); err != nil {
		return Deps{}, err
	}
	d.Decisions = referrals.New(d.Ledger, d.RF, referrals.Settings{
		CampaignIDs: cfg.RFCampaignIDs, Threshold: cfg.QualifyMin, Window: cfg.QualifyWindow,
		UnmatchedRetry: cfg.UnmatchedRetry, DryRun: cfg.DryRun,
		SignupCampaignID: cfg.SignupCampaignID, ReferralMetadataKey: cfg.ReferralMetadataKey, SignupNotify: cfg.SignupNotify,
	}, d.now, log)
	if cfg.StripeAPIKey != "" {
		d.Customers = stripecustomers.New(cfg.StripeAPIKey, "")
		d.Decisions.WithCustomers(d.Customers)
	}
	return d, nil
}

// secrets are the configured values no log line may show.
func secrets(c config.Config) []string {
	s := []string{c.RFAPIToken, c.StripeAPIKey}
	s = append(s, c.RFWebhookSecrets...)
	return append(s, c.StripeWebhookSecrets...)
}

// StripeWebhook is the handler of Stripe's events (functions/stripe-webhook, POST /stripe/webhook).
func (d Deps) StripeWebhook() *stripewebhook.Handler {
	return &stripewebhook.Handler{
		Secrets:   d.Config.StripeWebhookSecrets,
		Live:      d.Config.StripeLive,
		Decisions: d.Decisions,
		Once:      idempotency.New(d.Idempotency, idempotency.Config{Expiration: stripeEventMemory}),
		Log:       d.Log,
		Metrics:   d.metrics,
	}
}

// RFWebhook is the handler of RF's outbound webhooks (functions/rf-webhook, POST /rf/webhook/{kind}).
func (d Deps) RFWebhook() *rfwebhook.Handler {
	h := &rfwebhook.Handler{
		Secrets:     d.Config.RFWebhookSecrets,
		Fields:      rfevents.FieldNames(d.Config.RFWebhookFields),
		CampaignIDs: d.Config.RFCampaignIDs,
		RF:          d.RF,
		Ledger:      d.Ledger,
		Retrier:     d.Decisions,
		Once:        idempotency.New(d.Idempotency, idempotency.Config{Expiration: rfEventMemory}),
		DryRun:      d.Config.DryRun,
		Now:         d.now,
		Log:         d.Log,
		Metrics:     d.metrics,
	}
	if d.Customers != nil { // a nil *Client in the interface would not read as "none"
		h.Customers = d.Customers
	}
	return h
}

// Sweep is the reward sweep (functions/reward-sweep, POST /sweep, `refbridge sweep`).
func (d Deps) Sweep() *sweep.Handler {
	h := &sweep.Handler{
		Sweeper: &sweep.Sweeper{
			Ledger:  d.Ledger,
			RF:      d.RF,
			Lease:   d.Lease,
			Retrier: d.Decisions,
			Rules: sweep.Rules{
				Hold:            d.Config.RewardHold,
				AllowMetrics:    d.Config.RewardIssueMetrics,
				MaxPerRecipient: d.Config.RewardMaxPerMonth,
			},
			DryRun: d.Config.DryRun,
			Now:    d.now,
			Log:    d.Log,
		},
	}
	if d.metrics != nil { // a nil *Metrics in the interface would not read as "none"
		h.Metrics = d.metrics
	}
	return h
}
