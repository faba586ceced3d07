package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

// sweepOnce runs one reward sweep, as the scheduled Lambda does, and prints its summary.
func sweepOnce(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	dry := fs.Bool("dry-run", false, "decide and record, issue and cancel nothing (as DRY_RUN=true)")
	timeout := fs.Duration("timeout", 0, "time budget, as the Lambda's timeout: the run stops starting new work 15 s before and saves its checkpoint (0: none)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	d, err := wiring.Local(ctx, getenv, stderr, config.Need{RFAPIToken: true})
	if err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	sum, err := d.Sweep().Handle(ctx, sweep.Request{DryRun: *dry})
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if eerr := enc.Encode(sum); eerr != nil && err == nil {
		err = eerr
	}
	return err
}
