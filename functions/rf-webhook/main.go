// Command rf-webhook is the Lambda behind the Referral Factory webhooks' Function URL: RF's
// referrer-joined, lead-created, lead-qualified and reward-issued deliveries, authenticated by
// a shared secret and recorded in the ledger. It only wires; the logic is in shared/.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/rfevents"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/wiring"
)

// RF's retry policy is undocumented: a delivery is remembered for a week.
const eventMemory = 7 * 24 * time.Hour

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
	d, err := wiring.Lambda(ctx, log, config.Need{RFAPIToken: true, RFWebhookSecret: true})
	if err != nil {
		return nil, err
	}
	h := &rfwebhook.Handler{
		Secrets:     d.Config.RFWebhookSecrets,
		Fields:      rfevents.FieldNames(d.Config.RFWebhookFields),
		CampaignIDs: d.Config.RFCampaignIDs,
		RF:          d.RF,
		Ledger:      d.Ledger,
		Retrier:     d.Decisions,
		Once:        idempotency.New(d.Idempotency, idempotency.Config{Expiration: eventMemory}),
		DryRun:      d.Config.DryRun,
		Log:         log,
		Metrics:     observe.New(log, "rf-webhook"),
	}
	if d.Customers != nil {
		h.Customers = d.Customers
	}
	return h, nil
}
