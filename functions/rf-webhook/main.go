// Command rf-webhook is the Lambda behind the Referral Factory webhooks' Function URL: RF's
// referrer-joined, lead-created, lead-qualified and reward-issued deliveries, authenticated by
// a shared secret and recorded in the ledger. It only wires; the logic is in shared/.
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
	"github.com/refbridge/refbridge/shared/rfevents"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/stripecustomers"
)

// RF's retry policy is undocumented: a delivery is remembered for a week.
const eventMemory = 7 * 24 * time.Hour

var errNoTable = errors.New("STATE_TABLE: required in Lambda (the in-memory store is for local runs only)")

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := setup(context.Background(), log)
	if err != nil {
		log.Error("rf-webhook cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpx.FunctionURL(h))
}

func setup(ctx context.Context, log *slog.Logger) (*rfwebhook.Handler, error) {
	aws, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(ctx, os.Getenv, secretsmanager.NewFromConfig(aws), config.Need{RFAPIToken: true, RFWebhookSecret: true})
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
	l := ledger.NewDynamo(db, cfg.StateTable)
	dec := referrals.New(l, client, referrals.Settings{
		CampaignIDs: cfg.RFCampaignIDs, Threshold: cfg.QualifyMin, Window: cfg.QualifyWindow,
		UnmatchedRetry: cfg.UnmatchedRetry, DryRun: cfg.DryRun,
	}, nil, log)
	h := &rfwebhook.Handler{
		Secrets:     cfg.RFWebhookSecrets,
		Fields:      rfevents.FieldNames(cfg.RFWebhookFields),
		CampaignIDs: cfg.RFCampaignIDs,
		RF:          client,
		Ledger:      l,
		Retrier:     dec,
		Once:        idempotency.New(idempotency.NewDynamo(db, cfg.StateTable), idempotency.Config{Expiration: eventMemory}),
		Log:         log,
		Metrics:     observe.New(log, "rf-webhook"),
		DryRun:      cfg.DryRun,
	}
	if cfg.StripeAPIKey != "" {
		customers := stripecustomers.New(cfg.StripeAPIKey, "")
		h.Customers = customers
		dec.WithCustomers(customers)
	}
	return h, nil
}
