package rfsim

import (
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Defaults. The tokens are deliberately readable: they only ever open a simulator.
const (
	DefaultToken         = "sim_test_token"
	DefaultWebhookToken  = "sim_webhook_token"
	DefaultRatePerMinute = 600 // RF's documented burst limit (§1.3)
	DefaultBlockAfter    = 3   // RF blocks the IP after exceeding the limit "more than three times"
	DefaultBlockFor      = 15 * time.Minute
	DefaultWebhookRetry  = 2
)

type config struct {
	token        string
	webhookToken string
	clock        func() time.Time // the simulated "today"; shifted by SetNow/Advance
	rateClock    func() time.Time // real time for rate-limit windows and blocks
	rate         int
	window       time.Duration
	blockAfter   int
	blockFor     time.Duration
	seed         int64
	log          *slog.Logger
	baseURL      string
	client       *http.Client
	backoff      time.Duration
}

func defaultConfig() config {
	return config{
		token:        DefaultToken,
		webhookToken: DefaultWebhookToken,
		clock:        time.Now,
		rateClock:    time.Now,
		rate:         DefaultRatePerMinute,
		window:       time.Minute,
		blockAfter:   DefaultBlockAfter,
		blockFor:     DefaultBlockFor,
		seed:         1,
		log:          slog.New(slog.DiscardHandler),
		client:       &http.Client{},
		backoff:      200 * time.Millisecond,
	}
}

// Option configures a Server.
type Option func(*config)

// WithToken sets the API bearer token (default DefaultToken). A seed's "token" overrides it.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithWebhookToken sets the inbound-webhook path token (default DefaultWebhookToken).
func WithWebhookToken(token string) Option { return func(c *config) { c.webhookToken = token } }

// WithClock sets the clock that dates are taken from (signed_up_at, qualified_at, issued_at).
// SetNow and Advance shift it; the rate limiter does not follow it (see WithRateClock).
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithRateClock sets the clock of the rate limiter's windows and IP blocks, so tests can step
// through windows without sleeping.
func WithRateClock(now func() time.Time) Option { return func(c *config) { c.rateClock = now } }

// WithRatePerMinute sets how many API calls one token may make per window (default 600). n of 0
// or less disables the limit. This is the configured rate, used after New and Reset; a seed's
// positive rate_per_minute replaces it until the next seed or reset.
func WithRatePerMinute(n int) Option { return func(c *config) { c.rate = n } }

// WithRateWindow sets the rate-limit window length (default one minute).
func WithRateWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithRateBlock sets when the caller's IP gets blocked: after it exceeds the limit in more than
// afterExcessWindows windows, every API call from it gets 429 for blockFor. blockFor 0 disables
// blocking. Defaults: 3 and 15 minutes.
func WithRateBlock(afterExcessWindows int, blockFor time.Duration) Option {
	return func(c *config) { c.blockAfter, c.blockFor = afterExcessWindows, blockFor }
}

// WithSeed seeds the simulator's random generators (user codes, fault probabilities), so that a
// run is reproducible. Default 1.
func WithSeed(seed int64) Option { return func(c *config) { c.seed = seed } }

// WithLogger sets where each API call and webhook delivery is logged (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithBaseURL fixes the scheme and host used in absolute pagination links, e.g.
// "http://localhost:8081". Without it the request's Host (and X-Forwarded-*) is used.
func WithBaseURL(u string) Option { return func(c *config) { c.baseURL = strings.TrimRight(u, "/") } }

// WithHTTPClient sets the client used for outbound webhook deliveries.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.client = hc } }

// WithWebhookBackoff sets the wait before the first webhook retry; it doubles on each retry.
// Default 200ms.
func WithWebhookBackoff(d time.Duration) Option { return func(c *config) { c.backoff = d } }
