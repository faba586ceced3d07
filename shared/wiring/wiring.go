// Package wiring builds, once per Lambda cold start, what every refbridge function shares: the
// configuration (secrets from Secrets Manager), the DynamoDB stores, the Referral Factory client
// behind the shared rate limiter, the referral decisions and, with STRIPE_API_KEY, the Stripe
// customer client. Each function's main adds its own handler on top.
package wiring

import (
	"context"
	"errors"
	"log/slog"
	"os"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/stripecustomers"
)

// ErrNoTable means STATE_TABLE is missing where it is required.
var ErrNoTable = errors.New("STATE_TABLE: required in Lambda (the in-memory store is for local runs only)")

// Deps are the shared parts of a function.
type Deps struct {
	Config      config.Config
	Ledger      *ledger.Dynamo
	Idempotency *idempotency.Dynamo
	RF          *rf.Client
	Decisions   *referrals.Service
	Customers   *stripecustomers.Client // nil without STRIPE_API_KEY
}

// Lambda builds the dependencies from the environment, for a function needing need.
func Lambda(ctx context.Context, log *slog.Logger, need config.Need) (Deps, error) {
	aws, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return Deps{}, err
	}
	cfg, err := config.Load(ctx, os.Getenv, secretsmanager.NewFromConfig(aws), need)
	if err != nil {
		return Deps{}, err
	}
	if cfg.StateTable == "" {
		return Deps{}, ErrNoTable
	}
	db := dynamodb.NewFromConfig(aws)
	bucket, err := ratelimit.New(db, cfg.StateTable, "rf", ratelimit.PerMinute(cfg.RFRatePerMinute))
	if err != nil {
		return Deps{}, err
	}
	client, err := rf.New(cfg.RFAPIURL, cfg.RFAPIToken, rf.WithLimiter(bucket), rf.WithLogger(log))
	if err != nil {
		return Deps{}, err
	}
	d := Deps{Config: cfg, Ledger: ledger.NewDynamo(db, cfg.StateTable), Idempotency: idempotency.NewDynamo(db, cfg.StateTable), RF: client}
	d.Decisions = referrals.New(d.Ledger, client, referrals.Settings{
		CampaignIDs: cfg.RFCampaignIDs, Threshold: cfg.QualifyMin, Window: cfg.QualifyWindow,
		UnmatchedRetry: cfg.UnmatchedRetry, DryRun: cfg.DryRun,
	}, nil, log)
	if cfg.StripeAPIKey != "" {
		d.Customers = stripecustomers.New(cfg.StripeAPIKey, "")
		d.Decisions.WithCustomers(d.Customers)
	}
	return d, nil
}
