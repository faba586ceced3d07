package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

// serve runs the local server until ctx ends.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	withSim := fs.Bool("rf-sim", false, "run the Referral Factory simulator in-process, seeded with the demo campaign: "+
		"refbridge talks to it unless RF_API_URL is set, and it sends its webhooks to this server")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	s, err := startServer(ctx, *addr, *withSim, getenv, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	s.banner(stdout)
	return serveOn(ctx, s.ln, routes(s.deps))
}

// server is the local server before it serves: its listener, its handlers' dependencies and,
// with -rf-sim, the simulator.
type server struct {
	ln   net.Listener
	deps wiring.Deps
	sim  *localSim // nil without -rf-sim
	// delivering says the simulator's webhooks come to this server; generated is the secret
	// they carry when serve made it up (a secret the user configured is never printed).
	delivering bool
	generated  string
}

func startServer(ctx context.Context, addr string, rfSim bool, getenv func(string) string, logs io.Writer) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln}
	if rfSim {
		if s.sim, err = startSim(slog.New(slog.DiscardHandler)); err != nil {
			ln.Close()
			return nil, err
		}
		if getenv("RF_WEBHOOK_SECRET") == "" && getenv("RF_WEBHOOK_SECRET_ARN") == "" {
			s.generated = randomSecret("local_")
		}
		getenv = withSim(getenv, s.sim, s.generated)
	}
	if s.deps, err = wiring.Local(ctx, getenv, logs, config.Need{RFAPIToken: true}); err != nil {
		s.close()
		return nil, err
	}
	if s.sim != nil && s.deps.Config.RFAPIURL == s.sim.URL && len(s.deps.Config.RFWebhookSecrets) > 0 {
		if err := s.sim.deliverTo("http://"+ln.Addr().String(), s.deps.Config.RFWebhookSecrets[0]); err != nil {
			s.close()
			return nil, err
		}
		s.delivering = true
	}
	warnUnconfigured(s.deps.Log, s.deps)
	return s, nil
}

func (s *server) close() {
	if s.sim != nil {
		s.sim.close()
	}
	s.ln.Close()
}

// banner says where everything is and what to try.
func (s *server) banner(w io.Writer) {
	base := "http://" + s.ln.Addr().String()
	fmt.Fprintf(w, "refbridge serving on %s (state: %s)\n", base, stateKind(s.deps))
	fmt.Fprintf(w, "  POST %s/stripe/webhook      stripe listen --forward-to %s/stripe/webhook\n", base, strings.TrimPrefix(base, "http://"))
	fmt.Fprintf(w, "  POST %s/rf/webhook/{kind}   referrer-joined, lead-created, lead-qualified, reward-issued\n", base)
	fmt.Fprintf(w, "  POST %s/sweep               {\"dry_run\": true} rehearses\n", base)
	fmt.Fprintf(w, "  GET  %s/healthz\n", base)
	if s.sim != nil {
		sim := strings.TrimSuffix(s.sim.URL, "/api/v2")
		fmt.Fprintf(w, "Referral Factory simulator on %s (token %s), demo campaign DEMO2026 (id 1)\n", s.sim.URL, s.sim.Token())
		switch {
		case s.delivering && s.generated != "":
			fmt.Fprintf(w, "  its webhooks come here with X-Webhook-Secret: RF_WEBHOOK_SECRET=%s (made up for this session)\n", s.generated)
		case s.delivering:
			fmt.Fprintf(w, "  its webhooks come here with X-Webhook-Secret: your RF_WEBHOOK_SECRET\n")
		default:
			fmt.Fprintf(w, "  RF_API_URL is set: refbridge talks to that RF, not to this simulator\n")
		}
		fmt.Fprintf(w, "  a new lead: curl -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n", s.sim.Token())
		fmt.Fprintf(w, "    -d '{\"campaign_id\":1,\"first_name\":\"Gus\",\"email\":\"gus@example.com\",\"referrer\":{\"field\":\"code\",\"value\":\"aLiCeRef\"}}' %s/users\n", s.sim.URL)
		fmt.Fprintf(w, "  its state: curl %s/_sim/state\n", sim)
	}
}

// routes are the local server's: the Lambda functions' handlers under the paths PRODUCT.md names.
func routes(d wiring.Deps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /stripe/webhook", httpx.HTTP(d.StripeWebhook()))
	mux.Handle("POST /rf/webhook/{kind}", httpx.HTTP(d.RFWebhook()))
	mux.Handle("POST /sweep", sweepHTTP(d.Sweep()))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

// sweepHTTP runs one sweep per POST /sweep. The body is optional: {"dry_run": true} (or
// ?dry_run=true) rehearses the run. 200 with the summary; 400 for a malformed body; 500 with
// the summary and the error when the run failed.
func sweepHTTP(h *sweep.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req sweep.Request
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body over 64 KiB"})
			return
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not a sweep request: want {\"dry_run\": true|false}"})
				return
			}
		}
		if r.URL.Query().Get("dry_run") == "true" {
			req.DryRun = true
		}
		sum, err := h.Handle(r.Context(), req)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, struct {
				Error   string        `json:"error"`
				Summary sweep.Summary `json:"summary"`
			}{err.Error(), sum})
			return
		}
		writeJSON(w, http.StatusOK, sum)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveOn serves until ctx ends, then lets requests in flight finish (up to 10 s).
func serveOn(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// warnUnconfigured says which routes refuse everything for want of a secret, so a first local
// run explains its 400s and 401s.
func warnUnconfigured(log *slog.Logger, d wiring.Deps) {
	if len(d.Config.StripeWebhookSecrets) == 0 {
		log.Warn("STRIPE_WEBHOOK_SECRETS is unset: POST /stripe/webhook answers every event 400 (stripe listen prints the whsec_ to use)")
	}
	if len(d.Config.RFWebhookSecrets) == 0 {
		log.Warn("RF_WEBHOOK_SECRET is unset: POST /rf/webhook/{kind} answers every delivery 401")
	}
	if d.Config.DryRun {
		log.Info("DRY_RUN: decisions are recorded, nothing is changed in Referral Factory or Stripe")
	}
}

func stateKind(d wiring.Deps) string {
	if d.Config.StateTable == "" {
		return "in memory (STATE_TABLE unset)"
	}
	return fmt.Sprintf("DynamoDB table %s", d.Config.StateTable)
}
