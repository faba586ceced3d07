package referralfactory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBaseURL is the API base seen in working v2 client code.
const DefaultBaseURL = "https://referral-factory.com/api/v2"

// maxBody caps how much of a response the client reads: a 250-user page is well under 1 MiB.
const maxBody = 16 << 20

// maxErrorBody caps the raw body kept on an Error.
const maxErrorBody = 8 << 10

// Limiter is waited on before every request, including retries. *rate.Limiter satisfies it; a
// limiter shared across Lambda instances (kept in DynamoDB) can too.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Penalizer is an optional extension of a Limiter: told about RF's 429, a limiter shared by
// several processes makes all of them back off, not only the caller that saw it.
type Penalizer interface {
	Penalize(ctx context.Context, d time.Duration) error
}

// RetryPolicy bounds the client's retries of transient failures.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included; 1 disables retries.
	MaxAttempts int
	// BaseDelay and MaxDelay bound the exponential backoff; each delay is drawn uniformly
	// between zero and the bound ("full jitter"), so many retrying callers spread out.
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter is the longest Retry-After the client will sleep; a longer one is returned
	// to the caller as the 429 error.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is used when no WithRetryPolicy option is given: four attempts, backoff
// bounds from 250 ms to 8 s, and Retry-After honoured up to a minute.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, BaseDelay: 250 * time.Millisecond, MaxDelay: 8 * time.Second, MaxRetryAfter: 60 * time.Second}
}

// Stats counts what a client did since it was built.
type Stats struct {
	Requests    int64 // HTTP attempts sent (retries included)
	RateLimited int64 // 429 answers received
	Retries     int64 // attempts after the first
}

// Client calls the RF API. It is safe for concurrent use; build it once per process.
type Client struct {
	base           *url.URL
	token          string
	hc             *http.Client
	limiter        Limiter
	retry          RetryPolicy
	attemptTimeout time.Duration
	log            *slog.Logger
	userAgent      string
	sleep          func(ctx context.Context, d time.Duration) error
	observe        func(ctx context.Context, a Attempt)

	requests, rateLimited, retries atomic.Int64
}

// Attempt describes one HTTP attempt, for metrics: never the query or the body, which may
// carry personal data.
type Attempt struct {
	Method   string
	Path     string // relative to the API base, e.g. /rewards/issue/123
	Status   int    // 0 when no response arrived (a network error, a timeout)
	Duration time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (its Timeout should be zero or larger than the attempt
// timeout; each attempt gets its own deadline).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithLimiter sets the limiter waited on before every request. Nil disables limiting.
func WithLimiter(l Limiter) Option { return func(c *Client) { c.limiter = l } }

// WithRatePerMinute uses an in-process token bucket of n requests per minute.
func WithRatePerMinute(n int) Option {
	return func(c *Client) { c.limiter = newRateLimiter(n) }
}

// WithRetryPolicy sets the retry policy.
func WithRetryPolicy(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// WithAttemptTimeout bounds each HTTP attempt (default 10 s; RF has been seen taking over 25 s).
func WithAttemptTimeout(d time.Duration) Option { return func(c *Client) { c.attemptTimeout = d } }

// WithLogger sets the logger for retries. The token is never logged.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithObserver calls f after every HTTP attempt (retries included), e.g. to count calls, 429s
// and latency. f must be quick: it runs on the caller's goroutine.
func WithObserver(f func(ctx context.Context, a Attempt)) Option {
	return func(c *Client) { c.observe = f }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// withSleep replaces the backoff sleep (tests).
func withSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = f }
}

// newRateLimiter allows n requests per minute with a burst of about one second's worth.
func newRateLimiter(n int) *rate.Limiter {
	if n <= 0 {
		n = 500
	}
	return rate.NewLimiter(rate.Limit(float64(n)/60), max(1, n/60))
}

// New builds a client for the API at baseURL (DefaultBaseURL when empty) with the account's
// bearer token. By default it limits itself to 500 requests per minute, below RF's 600.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("referral factory base URL %q: must be an absolute http(s) URL", baseURL)
	}
	if strings.TrimSpace(token) == "" {
		return nil, fmt.Errorf("referral factory token: %w: empty", ErrInvalidInput)
	}
	c := &Client{
		base:           u,
		token:          token,
		hc:             &http.Client{},
		limiter:        newRateLimiter(500),
		retry:          DefaultRetryPolicy(),
		attemptTimeout: 10 * time.Second,
		log:            slog.New(slog.DiscardHandler),
		userAgent:      "refbridge",
		sleep:          sleepCtx,
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.retry.MaxAttempts < 1 {
		c.retry.MaxAttempts = 1
	}
	return c, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), RateLimited: c.rateLimited.Load(), Retries: c.retries.Load()}
}

// call describes one logical API call.
type call struct {
	method string
	// target is a path relative to the API base ("/users") or an absolute URL already checked
	// by resolve (a links.next).
	target string
	query  url.Values
	body   any
	// idempotent calls may be retried after the request reached the server.
	idempotent bool
}

// resolve turns a relative path or a links.next URL into an absolute URL on the API host. A
// next link pointing anywhere else is refused: following it would send the bearer token to a
// stranger.
func (c *Client) resolve(target string, query url.Values) (*url.URL, error) {
	if strings.HasPrefix(target, "/") {
		ref, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("parse path %q: %w", target, err)
		}
		u := *c.base
		u.Path = c.base.Path + ref.Path
		u.RawPath = c.base.EscapedPath() + ref.EscapedPath()
		if len(query) > 0 {
			u.RawQuery = query.Encode()
		}
		return &u, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parse link %q: %w", target, err)
	}
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host || !strings.HasPrefix(u.Path, c.base.Path+"/") {
		return nil, fmt.Errorf("link %q is outside the API base %s: refusing to follow it", target, c.base)
	}
	return u, nil
}

// relPath is a URL's path relative to the API base, for errors and logs (never the query, which
// could carry personal data).
func (c *Client) relPath(u *url.URL) string {
	return strings.TrimPrefix(u.Path, c.base.Path)
}

// do performs the call with retries and decodes a 2xx body into out (when non-nil).
func (c *Client) do(ctx context.Context, cl call, out any) error {
	u, err := c.resolve(cl.target, cl.query)
	if err != nil {
		return err
	}
	var payload []byte
	if cl.body != nil {
		if payload, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("encode %s %s: %w", cl.method, c.relPath(u), err)
		}
	}
	path := c.relPath(u)
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			c.retries.Add(1)
		}
		retry, wait, err := c.attempt(ctx, cl, u, payload, out)
		if err == nil {
			return nil
		}
		if !retry || attempt >= c.retry.MaxAttempts || ctx.Err() != nil {
			return err
		}
		if wait > c.retry.MaxRetryAfter {
			return err // a 429 or a 503 "maintenance" asking for longer: the caller decides
		}
		if wait == 0 {
			wait = c.backoff(attempt)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // sleeping would only end in the deadline: report the real failure now
		}
		c.log.WarnContext(ctx, "referral factory call failed; retrying",
			"method", cl.method, "path", path, "attempt", attempt, "wait", wait.String(), "error", err.Error())
		if serr := c.sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

// attempt makes one HTTP attempt. It reports whether a failure may be retried and how long the
// server asked to wait.
func (c *Client) attempt(ctx context.Context, cl call, u *url.URL, payload []byte, out any) (retry bool, wait time.Duration, err error) {
	path := c.relPath(u)
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return false, 0, fmt.Errorf("%s %s: wait for rate limiter: %w", cl.method, path, err)
		}
	}
	actx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()

	// wrote records whether the request may have reached the server: before that, even a
	// non-idempotent call is safe to retry; after it, a lost answer means nobody knows what
	// happened. It is set as soon as a connection is in hand, not when the write completes:
	// HTTP/2 sends the request before it reports the write, so a later hook could miss a
	// request that did go out.
	var wrote atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { wrote.Store(true) },
	})
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, u.String(), body)
	if err != nil {
		return false, 0, fmt.Errorf("%s %s: build request: %w", cl.method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	c.requests.Add(1)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if c.observe != nil {
		a := Attempt{Method: cl.method, Path: path, Duration: time.Since(start)}
		if resp != nil {
			a.Status = resp.StatusCode
		}
		c.observe(ctx, a)
	}
	if err != nil {
		err = fmt.Errorf("%s %s: %w", cl.method, path, c.redactErr(err))
		switch {
		case ctx.Err() != nil && !wrote.Load(), isCertificateError(err):
			return false, 0, err
		case !wrote.Load():
			return true, 0, err
		case cl.idempotent:
			return ctx.Err() == nil, 0, err
		default:
			return false, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// An empty body (204, say) is a success with nothing to decode.
		if rerr == nil && out != nil && len(bytes.TrimSpace(data)) > 0 {
			rerr = json.Unmarshal(data, out)
		}
		if rerr != nil {
			err = fmt.Errorf("%s %s: read %d response: %w", cl.method, path, resp.StatusCode, rerr)
			if !cl.idempotent {
				// RF applied the change, but we cannot tell the caller what it made.
				return false, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return true, 0, err
		}
		return false, 0, nil
	}

	if len(data) > maxErrorBody {
		data = data[:maxErrorBody]
	}
	apiErr := newError(cl.method, path, resp.StatusCode, resp.Header, c.redact(data))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		// The throttle answers before the request is handled, so even a create is safe to retry.
		c.rateLimited.Add(1)
		if p, ok := c.limiter.(Penalizer); ok {
			d := apiErr.RetryAfter
			if d <= 0 {
				d = time.Second // no Retry-After: RF's window is a minute; a second keeps others off it
			}
			if err := p.Penalize(ctx, d); err != nil {
				c.log.WarnContext(ctx, "could not tell the shared rate limiter about a 429", "error", err.Error())
			}
		}
		return true, apiErr.RetryAfter, apiErr
	case resp.StatusCode >= 500 && cl.idempotent:
		return true, apiErr.RetryAfter, apiErr
	case resp.StatusCode >= 500:
		return false, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, apiErr)
	default:
		return false, 0, apiErr
	}
}

// backoff returns a full-jitter delay for the given attempt (1-based).
func (c *Client) backoff(attempt int) time.Duration {
	bound := c.retry.BaseDelay << (attempt - 1)
	if bound <= 0 || bound > c.retry.MaxDelay {
		bound = c.retry.MaxDelay
	}
	if bound <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(bound)) + 1)
}

// redact removes the token from anything the server sent back.
func (c *Client) redact(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(c.token), []byte("[REDACTED]"))
}

func (c *Client) redactErr(err error) error {
	if !strings.Contains(err.Error(), c.token) {
		return err
	}
	return redactedError{msg: strings.ReplaceAll(err.Error(), c.token, "[REDACTED]"), err: err}
}

// redactedError hides the token in a message while keeping the error chain for errors.Is.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
