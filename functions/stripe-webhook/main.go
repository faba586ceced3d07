// Command stripe-webhook is the Lambda behind the Stripe webhook's Function URL: Stripe
// invoice.paid → the referred lead qualified in Referral Factory, once; refunds and disputes
// reverse it. It only wires; the logic is in shared/.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/stripewebhook"
	"github.com/refbridge/refbridge/shared/wiring"
)

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
	d, err := wiring.Lambda(ctx, log, config.Need{RFAPIToken: true, StripeWebhookSecrets: true})
	if err != nil {
		return nil, err
	}
	return d.StripeWebhook(), nil
}
