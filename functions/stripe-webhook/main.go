// Command stripe-webhook is the Lambda behind the Stripe webhook's Function URL: a checkout or
// customer carrying a referral code → a Referral Factory lead of its referrer; invoice.paid → the
// referred lead qualified, once; refunds and disputes reverse it. It only wires; the logic is in
// shared/.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/stripewebhook"
	"github.com/refbridge/refbridge/shared/wiring"
)

const name = "stripe-webhook"

func main() {
	h, err := setup(context.Background())
	if err != nil {
		// The message names the setting; Lambda reports the exit as an init failure.
		observe.NewLogger(os.Stdout, observe.LogOptions{Function: name}).Error(name+" cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpx.FunctionURL(h))
}

func setup(ctx context.Context) (*stripewebhook.Handler, error) {
	d, err := wiring.Lambda(ctx, name, config.Need{RFAPIToken: true, StripeWebhookSecrets: true})
	if err != nil {
		return nil, err
	}
	return d.StripeWebhook(), nil
}
