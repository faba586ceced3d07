// Command refbridge runs refbridge's handlers on a laptop, configured by the same environment
// variables as the Lambda functions (on DynamoDB when STATE_TABLE is set, in memory otherwise):
//
//	refbridge serve [-addr 127.0.0.1:8080]   POST /stripe/webhook, POST /rf/webhook/{kind},
//	                                         POST /sweep, GET /healthz on one HTTP server
//	refbridge sweep [-dry-run] [-timeout D]  one reward sweep; its summary on stdout
//
// `stripe listen --forward-to localhost:8080/stripe/webhook` delivers a Stripe account's test
// events to the server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: refbridge <command> [flags]

commands:
  demo    the whole story in one command, with no account anywhere: the RF simulator, refbridge
          in memory, signed sample events, the sweep, and the final state
  serve   the three handlers on one HTTP server (the target of stripe listen --forward-to);
          -rf-sim runs the RF simulator in-process
  send    sign a sample event (events/...) and POST it to a running server
  sweep   one reward sweep against the configured Referral Factory and store

Configuration is the Lambda functions' environment (README "Configuration"); without
STATE_TABLE the state is kept in memory. "refbridge <command> -h" lists a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process's exit code: 0 done, 1 failed, 2 misused.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], getenv, stdout, stderr)
	case "sweep":
		err = sweepOnce(ctx, args[1:], getenv, stdout, stderr)
	case "send":
		err = send(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		err = demo(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "refbridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var usageErr usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintln(stderr, "refbridge:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "refbridge:", err)
		return 1
	}
}

// usageError is a mistake on the command line.
type usageError struct{ error }

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())}
	}
	return nil
}
