package rfsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Outbound webhooks (§3). RF lets an admin pick the event, URL, method, which user fields are
// sent and under what names, static "hidden" fields, up to three custom headers and the user
// sources that fire. It documents no signature, encoding, retry policy or ordering; the
// simulator delivers at least once, asynchronously and unordered, with optional duplicates so
// receivers prove they are idempotent.

const (
	webhookTimeout    = 10 * time.Second
	maxWebhookHeaders = 3
	maxWebhookRepeat  = 10
	webhookUserAgent  = "rfsim (Referral Factory webhook simulator)"
)

// Webhook configures outbound deliveries for one event.
type Webhook struct {
	Event  string `json:"event"` // referrer_joined, lead_created, lead_qualified, reward_issued
	URL    string `json:"url"`
	Method string `json:"method,omitempty"` // POST (default), PUT, PATCH or GET (fields in the query)
	Format string `json:"format,omitempty"` // json (default) or form
	// CampaignID limits the webhook to one campaign (RF configures webhooks per campaign);
	// 0 means every campaign.
	CampaignID int `json:"campaign_id,omitempty"`
	// Fields renames sent fields (RF name → sent name) on top of the default set; mapping a
	// field to "" stops it being sent, and naming a non-default field adds it.
	Fields  map[string]string `json:"fields,omitempty"`
	Hidden  map[string]string `json:"hidden,omitempty"`  // static key/values added to every payload
	Headers map[string]string `json:"headers,omitempty"` // at most 3, like RF
	// Sources limits deliveries to users with one of these sources (e.g. "Referred"); empty
	// means all.
	Sources []string `json:"sources,omitempty"`
	// Duplicates is how many extra identical deliveries to make.
	Duplicates int `json:"duplicates,omitempty"`
	// Retries is how many times a delivery without a 2xx answer is retried; nil means 2.
	Retries *int `json:"retries,omitempty"`
}

// Delivery is one delivery attempt.
type Delivery struct {
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"time"`
	Event       string    `json:"event"`
	URL         string    `json:"url"`
	Method      string    `json:"method"`
	ContentType string    `json:"content_type,omitempty"`
	Copy        int       `json:"copy"`    // 0 for the delivery, 1.. for configured duplicates
	Attempt     int       `json:"attempt"` // 1 for the first try
	Status      int       `json:"status"`  // 0 when no response arrived
	Error       string    `json:"error,omitempty"`
	Body        string    `json:"body"`
}

var defaultUserFields = []string{"id", "code", "email", "first_name", "campaign_id", "referrer_id",
	"type", "source", "signed_up_at", "qualified_at", "url"}

// webhookFields are the RF-side names a payload can carry for an event.
func webhookFields(event string) map[string]bool {
	out := fieldsOf(User{})
	out["referrer_code"], out["referrer_email"] = true, true
	if event == EventRewardIssued {
		for _, f := range []string{"reward_id", "reward_issued_id", "reward_status", "reward_name", "coupon", "count", "total"} {
			out[f] = true
		}
	}
	return out
}

// defaultFields is what a payload carries when the admin changed nothing. Lead payloads include
// the referrer's details, as RF's help says; reward payloads the reward's.
func defaultFields(event, metric string) []string {
	out := slices.Clone(defaultUserFields)
	switch event {
	case EventLeadCreated, EventLeadQualified:
		out = append(out, "referrer_code", "referrer_email")
	case EventRewardIssued:
		out = append(out, "reward_id", "reward_issued_id", "reward_status")
		if metric == MetricCoupon {
			out = append(out, "coupon")
		} else {
			out = append(out, "total")
		}
	}
	return out
}

// normalize validates the webhook and fills in its defaults.
func (h *Webhook) normalize() *Error {
	var v validation
	if !slices.Contains(events, h.Event) {
		v.add("event", msgInvalid("event"))
	}
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// RF requires https; the simulator also takes http so receivers can run on localhost.
		v.add("url", "The url field must be a valid http or https URL.")
	}
	h.Method = strings.ToUpper(h.Method)
	if h.Method == "" {
		h.Method = http.MethodPost
	}
	if !slices.Contains([]string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodGet}, h.Method) {
		v.add("method", msgInvalid("method"))
	}
	h.Format = strings.ToLower(h.Format)
	if h.Format == "" {
		h.Format = "json"
	}
	if h.Format != "json" && h.Format != "form" {
		v.add("format", msgInvalid("format"))
	}
	if len(h.Headers) > maxWebhookHeaders {
		v.add("headers", "The headers field must not have more than 3 items.")
	}
	known := webhookFields(h.Event)
	for _, k := range slices.Sorted(maps.Keys(h.Fields)) {
		if !known[k] {
			v.add("fields."+k, msgInvalid("fields."+k))
		}
	}
	if h.Duplicates < 0 || h.Duplicates > maxWebhookRepeat {
		v.add("duplicates", "The duplicates field must be between 0 and 10.")
	}
	if h.Retries != nil && (*h.Retries < 0 || *h.Retries > maxWebhookRepeat) {
		v.add("retries", "The retries field must be between 0 and 10.")
	}
	return v.err()
}

// AddWebhook adds an outbound webhook. More than three headers, an unknown event or field, or a
// bad URL is a 422 *Error.
func (s *Server) AddWebhook(h Webhook) error {
	if err := h.normalize(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.webhooks = append(s.w.webhooks, h)
	return nil
}

// SetWebhooks replaces every outbound webhook.
func (s *Server) SetWebhooks(hooks []Webhook) error {
	for i := range hooks {
		if err := hooks[i].normalize(); err != nil {
			return fmt.Errorf("webhook %d: %w", i, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.webhooks = slices.Clone(hooks)
	return nil
}

// Webhooks lists the outbound webhooks.
func (s *Server) Webhooks() []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Webhook{}, s.w.webhooks...)
}

// Deliveries lists the delivery attempts, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery{}, s.deliveries...)
}

// ClearDeliveries empties the delivery log.
func (s *Server) ClearDeliveries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = nil
}

// WaitIdle waits until no webhook delivery (including retries) is in flight.
func (s *Server) WaitIdle(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.pending == 0 {
			s.mu.Unlock()
			return nil
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("rfsim: waiting for webhook deliveries: %w", ctx.Err())
		}
	}
}

// fireLocked starts the deliveries of event about user u (for reward_issued, the recipient of
// reward r). It never blocks on the network.
func (s *Server) fireLocked(event string, u *user, r *reward) {
	for _, h := range s.w.webhooks {
		if h.Event != event || (h.CampaignID != 0 && h.CampaignID != u.CampaignID) {
			continue
		}
		if len(h.Sources) > 0 && !slices.ContainsFunc(h.Sources, func(src string) bool { return strings.EqualFold(src, u.Source) }) {
			continue
		}
		payload := s.payloadLocked(h, event, u, r)
		for copyN := 0; copyN <= h.Duplicates; copyN++ {
			s.spawnLocked(h, event, payload, copyN)
		}
	}
}

func (s *Server) payloadLocked(h Webhook, event string, u *user, r *reward) map[string]any {
	src := toMap(s.w.renderUser(u, nil))
	src["referrer_code"], src["referrer_email"] = nil, nil
	if u.ReferrerID != nil {
		if ref := s.w.users[*u.ReferrerID]; ref != nil {
			src["referrer_code"], src["referrer_email"] = ref.Code, ref.Email
		}
	}
	metric := ""
	if r != nil {
		metric = s.w.metricOf(r)
		src["reward_id"], src["reward_issued_id"], src["reward_status"] = r.RewardID, r.ID, r.Status
		if d := s.w.defs[r.RewardID]; d != nil {
			src["reward_name"] = d.Name
		}
		if metric == MetricCoupon {
			src["coupon"] = r.Coupon
		} else {
			src["count"], src["total"] = r.Count, r.Total
		}
	}
	names := map[string]string{}
	for _, f := range defaultFields(event, metric) {
		names[f] = f
	}
	for k, v := range h.Fields {
		if v == "" {
			delete(names, k)
		} else {
			names[k] = v
		}
	}
	out := map[string]any{}
	for k, name := range names {
		out[name] = src[k]
	}
	for k, v := range h.Hidden {
		out[k] = v
	}
	return out
}

type delivery struct {
	hook    Webhook
	event   string
	target  string
	body    []byte
	ctype   string
	copyN   int
	gen     int
	ctx     context.Context // the generation's: cancelled by Reset, Seed and Close
	retries int
}

func (s *Server) spawnLocked(h Webhook, event string, payload map[string]any, copyN int) {
	if s.closed {
		return
	}
	d := delivery{hook: h, event: event, target: h.URL, copyN: copyN, gen: s.gen, ctx: s.genCtx,
		retries: DefaultWebhookRetry}
	if h.Retries != nil {
		d.retries = *h.Retries
	}
	switch {
	case h.Method == http.MethodGet:
		u, _ := url.Parse(h.URL)
		q := u.Query()
		for k, v := range formValues(payload) {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		d.target = u.String()
	case h.Format == "form":
		d.body, d.ctype = []byte(formValues(payload).Encode()), "application/x-www-form-urlencoded"
	default:
		d.body, _ = json.Marshal(payload)
		d.ctype = "application/json"
	}
	if s.pending == 0 {
		s.idle = make(chan struct{})
	}
	s.pending++
	s.wg.Add(1)
	go s.deliver(d)
}

// formValues flattens a payload for form encoding: null becomes "", objects and arrays JSON.
func formValues(payload map[string]any) url.Values {
	out := url.Values{}
	for k, v := range payload {
		if v == nil {
			out.Set(k, "")
			continue
		}
		out.Set(k, text(v))
	}
	return out
}

func (s *Server) deliver(d delivery) {
	defer func() {
		s.mu.Lock()
		s.pending--
		if s.pending == 0 {
			close(s.idle)
		}
		s.mu.Unlock()
		s.wg.Done()
	}()
	wait := s.cfg.backoff
	for attempt := 1; ; attempt++ {
		if d.ctx.Err() != nil { // the generation ended (Reset, Seed or Close)
			return
		}
		status, err := s.send(d)
		s.recordDelivery(d, attempt, status, err)
		if err == nil && status >= 200 && status < 300 {
			return
		}
		if attempt > d.retries {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return
		}
		wait *= 2
	}
}

func (s *Server) send(d delivery) (int, error) {
	ctx, cancel := context.WithTimeout(d.ctx, webhookTimeout)
	defer cancel()
	var body io.Reader
	if d.body != nil {
		body = bytes.NewReader(d.body)
	}
	req, err := http.NewRequestWithContext(ctx, d.hook.Method, d.target, body)
	if err != nil {
		return 0, fmt.Errorf("build webhook request: %w", err)
	}
	if d.ctype != "" {
		req.Header.Set("Content-Type", d.ctype)
	}
	req.Header.Set("User-Agent", webhookUserAgent)
	for k, v := range d.hook.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.cfg.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("deliver %s webhook: %w", d.event, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (s *Server) recordDelivery(d delivery, attempt, status int, err error) {
	rec := Delivery{Event: d.event, URL: d.target, Method: d.hook.Method, ContentType: d.ctype,
		Copy: d.copyN, Attempt: attempt, Status: status, Body: string(d.body)}
	failed := err != nil || status < 200 || status > 299
	if err != nil {
		rec.Error = err.Error()
	}
	s.mu.Lock()
	if d.gen == s.gen { // deliveries started before a Reset or Seed belong to a state that is gone
		s.deliverySeq++
		rec.Seq, rec.Time = s.deliverySeq, s.nowLocked()
		s.deliveries = append(s.deliveries, rec)
		if len(s.deliveries) > maxLogEntries {
			s.deliveries = append([]Delivery(nil), s.deliveries[len(s.deliveries)-maxLogEntries:]...)
		}
		if s.counters.WebhookAttempts == nil {
			s.counters.WebhookAttempts, s.counters.WebhookFailures = map[string]int{}, map[string]int{}
		}
		s.counters.WebhookAttempts[d.event]++
		if failed {
			s.counters.WebhookFailures[d.event]++
		}
	}
	s.mu.Unlock()
	s.cfg.log.Info("rfsim webhook", "event", d.event, "url", d.target, "attempt", attempt, "status", status, "err", err)
}
