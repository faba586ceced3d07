// Command stripe-webhook is the Lambda behind the Stripe webhook's Function URL: Stripe
// invoice.paid → the referred lead qualified in Referral Factory, once. It only wires; the
// logic is in shared/.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/stripecustomers"
	"github.com/refbridge/refbridge/shared/stripewebhook"
)

// Stripe retries a failed delivery for up to three days: an event id is remembered longer.
const eventMemory = 4 * 24 * time.Hour

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := setup(context.Background(), log)
	if err != nil {
		log.Error("stripe-webhook cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpx.FunctionURL(h))
}

func setup(ctx context.Context, log *slog.Logger) (*stripewebhook.Handler, error) {
	aws, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, os.Getenv, secretsmanager.NewFromConfig(aws),
		config.Need{RFAPIToken: true, StripeWebhookSecrets: true})
	if err != nil {
		return nil, err
	}
	if cfg.StateTable == "" {
		return nil, errNoTable
	}
	db := dynamodb.NewFromConfig(aws)
	bucket, err := ratelimit.New(db, cfg.StateTable, "rf", ratelimit.PerMinute(cfg.RFRatePerMinute))
	if err != nil {
		return nil, err
	}
	client, err := rf.New(cfg.RFAPIURL, cfg.RFAPIToken, rf.WithLimiter(bucket), rf.WithLogger(log))
	if err != nil {
		return nil, err
	}
	dec := referrals.New(ledger.NewDynamo(db, cfg.StateTable), client, referrals.Settings{
		CampaignIDs: cfg.RFCampaignIDs, Threshold: cfg.QualifyMin, Window: cfg.QualifyWindow,
		UnmatchedRetry: cfg.UnmatchedRetry, DryRun: cfg.DryRun,
	}, nil, log)
	if cfg.StripeAPIKey != "" {
		dec.WithCustomers(stripecustomers.New(cfg.StripeAPIKey, ""))
	}
	return &stripewebhook.Handler{
		Secrets:   cfg.StripeWebhookSecrets,
		Live:      cfg.StripeLive,
		Decisions: dec,
		Once:      idempotency.New(idempotency.NewDynamo(db, cfg.StateTable), idempotency.Config{Expiration: eventMemory}),
		Log:       log,
		Metrics:   observe.New(log, "stripe-webhook"),
	}, nil
}

var errNoTable = errors.New("STATE_TABLE: required in Lambda (the in-memory store is for local runs only)")
