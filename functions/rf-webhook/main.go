// Command rf-webhook is the Lambda behind the Referral Factory webhooks' Function URL: RF's
// referrer-joined, lead-created, lead-qualified and reward-issued deliveries, authenticated by
// a shared secret and recorded in the ledger. It only wires; the logic is in shared/.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/wiring"
)

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
	return d.RFWebhook(), nil
}
