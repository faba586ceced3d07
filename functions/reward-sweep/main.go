// Command reward-sweep is the scheduled Lambda that issues (or cancels) Referral Factory's due
// rewards once their hold has passed, exactly once, inside the shared rate limit, and retries
// unmatched paid invoices. It only wires; the logic is in shared/sweep.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := setup(context.Background(), log)
	if err != nil {
		log.Error("reward-sweep cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

func setup(ctx context.Context, log *slog.Logger) (*sweep.Handler, error) {
	d, err := wiring.Lambda(ctx, log, config.Need{RFAPIToken: true})
	if err != nil {
		return nil, err
	}
	return d.Sweep(), nil
}
