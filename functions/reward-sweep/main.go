// Command reward-sweep is the scheduled Lambda that issues (or cancels) Referral Factory's due
// rewards once their hold has passed, exactly once, inside the shared rate limit, and retries
// unmatched paid invoices. It only wires; the logic is in shared/sweep.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

const name = "reward-sweep"

func main() {
	h, err := setup(context.Background())
	if err != nil {
		// The message names the setting; Lambda reports the exit as an init failure.
		observe.NewLogger(os.Stdout, observe.LogOptions{Function: name}).Error(name+" cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

func setup(ctx context.Context) (*sweep.Handler, error) {
	d, err := wiring.Lambda(ctx, name, config.Need{RFAPIToken: true})
	if err != nil {
		return nil, err
	}
	return d.Sweep(), nil
}
