// Command rf-webhook is the Lambda behind the Referral Factory webhooks' Function URL: RF's
// referrer-joined, lead-created, lead-qualified and reward-issued deliveries, authenticated by
// a shared secret and recorded in the ledger. It only wires; the logic is in shared/.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/wiring"
)

const name = "rf-webhook"

func main() {
	h, err := setup(context.Background())
	if err != nil {
		// The message names the setting; Lambda reports the exit as an init failure.
		observe.NewLogger(os.Stdout, observe.LogOptions{Function: name}).Error(name+" cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpx.FunctionURL(h))
}

func setup(ctx context.Context) (*rfwebhook.Handler, error) {
	d, err := wiring.Lambda(ctx, name, config.Need{RFAPIToken: true, RFWebhookSecret: true})
	if err != nil {
		return nil, err
	}
	return d.RFWebhook(), nil
}
