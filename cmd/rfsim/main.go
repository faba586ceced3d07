// Command rfsim runs the Referral Factory API v2 simulator (package shared/rfsim) on a local
// port, so refbridge can be rehearsed against a stateful RF without touching real records.
//
//	rfsim -addr 127.0.0.1:8081 -seed shared/rfsim/demoseed.json [-rate N] [-token T]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := setup(os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = a.serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rfsim:", err)
		os.Exit(1)
	}
}

type app struct {
	sim *rfsim.Server
	ln  net.Listener
	srv *http.Server
}

// setup parses flags, loads the seed and opens the listener; serve runs until ctx ends.
func setup(args []string, stdout, stderr io.Writer) (*app, error) {
	fs := flag.NewFlagSet("rfsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address (loopback by default: the control API has no auth)")
	seedPath := fs.String("seed", "", "seed file (JSON), e.g. shared/rfsim/demoseed.json")
	rate := fs.Int("rate", 0, "API calls per minute per token; 0 means the seed's, else 600 (the limit cannot be disabled here)")
	token := fs.String("token", "", "API token (default: the seed's, else "+rfsim.DefaultToken+")")
	rngSeed := fs.Int64("rng-seed", 1, "seed of the simulator's random generators (user codes, faults)")
	quiet := fs.Bool("quiet", false, "do not log each call")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *rate < 0 {
		return nil, fmt.Errorf("-rate must not be negative (0 means the seed's rate, else %d)", rfsim.DefaultRatePerMinute)
	}

	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	sim := rfsim.New(rfsim.WithSeed(*rngSeed),
		rfsim.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))))
	var seed rfsim.SeedData
	if *seedPath != "" {
		var err error
		if seed, err = rfsim.LoadSeedFile(*seedPath); err != nil {
			return nil, err
		}
	}
	// Flags win over the seed file, so one file serves several setups.
	if *token != "" {
		seed.Token = *token
	}
	if *rate > 0 {
		seed.RatePerMinute = *rate
	}
	if err := sim.Seed(seed); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	a := &app{sim: sim, ln: ln, srv: &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}}
	a.banner(stdout, seed)
	return a, nil
}

func (a *app) banner(w io.Writer, seed rfsim.SeedData) {
	base := "http://" + a.ln.Addr().String()
	tok := a.sim.Token()
	fmt.Fprintf(w, "rfsim: Referral Factory API v2 simulator\n")
	fmt.Fprintf(w, "  API base:         %s/api/v2\n", base)
	fmt.Fprintf(w, "  API token:        %s\n", tok)
	fmt.Fprintf(w, "  Inbound webhook:  %s/webhook/%s/qualify\n", base, a.sim.WebhookToken())
	fmt.Fprintf(w, "  Seed:             %d campaigns, %d users\n", len(seed.Campaigns), len(seed.Users))
	fmt.Fprintf(w, "  Control API (no auth, never expose it): %s/_sim/\n", base)
	fmt.Fprintf(w, "    GET state | calls?since=N | counters | faults | webhooks | webhooks/deliveries | clock\n")
	fmt.Fprintf(w, "    POST seed | reset | rotate-token | clock | faults | webhooks | webhooks/flush\n")
	fmt.Fprintf(w, "  Try: curl -H 'Authorization: Bearer %s' %s/api/v2/users\n", tok, base)
	if ip, ok := a.ln.Addr().(*net.TCPAddr); ok && !ip.IP.IsLoopback() {
		fmt.Fprintf(w, "  WARNING: listening beyond loopback; anyone who can reach it can rewrite its state\n")
	}
}

// serve answers until ctx is cancelled, then drains requests and stops webhook deliveries.
func (a *app) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		a.sim.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(shutdownCtx)
	a.sim.Close()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
