package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
)

// localSim is the Referral Factory simulator running in-process on a loopback port, seeded with
// the demo campaign: what `serve -rf-sim` and `demo` use when there is no RF to talk to.
type localSim struct {
	*rfsim.Server
	URL string // the API base, .../api/v2
	srv *http.Server
}

func startSim(log *slog.Logger) (*localSim, error) {
	sim := rfsim.New(rfsim.WithLogger(log))
	if err := sim.Seed(rfsim.DemoSeed()); err != nil {
		sim.Close()
		return nil, fmt.Errorf("seed the simulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the control API has no auth: loopback only
	if err != nil {
		sim.Close()
		return nil, err
	}
	s := &localSim{Server: sim, URL: "http://" + ln.Addr().String() + "/api/v2",
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// deliverTo makes the simulator send its four outbound webhooks to refbridge at base, with the
// shared secret in X-Webhook-Secret, as an RF admin would configure them.
func (s *localSim) deliverTo(base, secret string) error {
	kinds := map[string]string{
		rfsim.EventReferrerJoined: "referrer-joined", rfsim.EventLeadCreated: "lead-created",
		rfsim.EventLeadQualified: "lead-qualified", rfsim.EventRewardIssued: "reward-issued",
	}
	var hooks []rfsim.Webhook
	for event, kind := range kinds {
		hooks = append(hooks, rfsim.Webhook{Event: event, URL: strings.TrimRight(base, "/") + "/rf/webhook/" + kind,
			Headers: map[string]string{"X-Webhook-Secret": secret}})
	}
	return s.SetWebhooks(hooks)
}

func (s *localSim) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.Close()
}

// withSim overrides getenv so refbridge talks to the simulator: its URL and token unless
// RF_API_URL is given, campaign 1 for email matching, and secret (when not empty) as the
// webhook secret of the session.
func withSim(getenv func(string) string, sim *localSim, secret string) func(string) string {
	override := map[string]string{}
	if getenv("RF_API_URL") == "" {
		override["RF_API_URL"], override["RF_API_TOKEN"] = sim.URL, sim.Token()
		if getenv("RF_CAMPAIGN_IDS") == "" {
			override["RF_CAMPAIGN_IDS"] = "1"
		}
	}
	if secret != "" {
		override["RF_WEBHOOK_SECRET"] = secret
	}
	return func(k string) string {
		if v, ok := override[k]; ok {
			return v
		}
		return getenv(k)
	}
}

func randomSecret(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
