// Package rfwebhook is the rf-webhook function's handler: Referral Factory's outbound webhooks
// (referrer joined, lead created, lead qualified, reward issued), authenticated by a shared
// secret, re-read from the API, deduplicated per (kind, user, state) and recorded in the ledger.
package rfwebhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfevents"
)

// RF is the part of the Referral Factory client the handler uses.
type RF interface {
	GetUser(ctx context.Context, identifier string, with ...string) (rf.User, error)
	FindUsersByEmail(ctx context.Context, campaignID int64, email string) ([]rf.User, error)
	IssuedRewards(m rf.Metric, opts rf.ListOptions) *rf.Pager[rf.IssuedReward]
}

// Ledger is the part of the ledger the handler uses.
type Ledger interface {
	PutLead(ctx context.Context, l ledger.Lead) (ledger.Lead, error)
	Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error)
	LatestQualification(ctx context.Context, leadID int64) (ledger.Qualification, error)
	IntentOf(ctx context.Context, kind ledger.IntentKind, target string) (ledger.Intent, error)
	MarkRewardSettled(ctx context.Context, s ledger.Settlement) (ledger.DueReward, error)
	MapCustomer(ctx context.Context, customerID string, leadID int64, rule string) (ledger.Mapping, error)
	UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]ledger.Unmatched, error)
}

// Customers finds Stripe customers and writes RF links to them (only with STRIPE_API_KEY).
type Customers interface {
	FindByEmail(ctx context.Context, email string) ([]string, error)
	WriteBack(ctx context.Context, customerID string, rfUserID int64, rfCode string) error
	WriteReferralLink(ctx context.Context, customerID string, rfUserID int64, rfCode, url string) error
}

// Retrier processes a paid invoice that waited for its lead.
type Retrier interface {
	RetryUnmatched(ctx context.Context, u ledger.Unmatched) (referrals.Result, error)
}

// Once runs work once per key.
type Once interface {
	Do(ctx context.Context, key string, payload []byte, work func(context.Context) ([]byte, error)) (idempotency.Result, error)
}

// Handler handles RF's deliveries.
type Handler struct {
	Secrets     []string            // RF_WEBHOOK_SECRET (comma-separated during a rotation)
	Fields      rfevents.FieldNames // RF_WEBHOOK_FIELDS
	CampaignIDs []int64             // RF_CAMPAIGN_IDS, for email-only deliveries
	RF          RF
	Ledger      Ledger
	Retrier     Retrier
	Customers   Customers // nil without STRIPE_API_KEY
	DryRun      bool
	Once        Once
	Now         func() time.Time
	Log         *slog.Logger
	Metrics     *observe.Metrics
}

var _ httpx.Handler = (*Handler)(nil)

type stored struct {
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
}

// Handle implements httpx.Handler.
func (h *Handler) Handle(ctx context.Context, r httpx.Request) httpx.Outcome {
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kind, ok := rfevents.KindFromPath(r.Path)
	if !ok {
		return httpx.Outcome{Kind: httpx.NotFound, Reason: "unknown webhook kind: use referrer-joined, lead-created, lead-qualified or reward-issued"}
	}
	if !rfevents.Authorized(r.Header["x-webhook-secret"], h.Secrets) {
		log.WarnContext(ctx, "rf webhook without the shared secret", "kind", string(kind))
		h.Metrics.Count(ctx, "Unauthorized", 1)
		return httpx.Outcome{Kind: httpx.Unauthorized}
	}
	id, err := rfevents.Parse(r.Body, r.Header["content-type"], h.Fields)
	if err != nil {
		log.WarnContext(ctx, "rf webhook body refused", "kind", string(kind), "error", err.Error())
		return httpx.Outcome{Kind: httpx.Invalid, Reason: invalidBody(err)}
	}
	if kind == rfevents.RewardIssued && id.IssuedRewardID <= 0 {
		return httpx.Outcome{Kind: httpx.Invalid, Reason: "reward-issued without the issued reward's id (reward_issued_id)"}
	}
	if kind == rfevents.RewardIssued {
		// The reward names its recipient: trust RF's list, not the payload's user fields.
		r, found, err := h.issued(ctx, id.IssuedRewardID)
		switch {
		case err != nil:
			return h.rfFailure(ctx, log, kind, err)
		case !found:
			// RF may list it a moment after it sends the webhook: ask RF to retry.
			return httpx.Outcome{Kind: httpx.Transient, Reason: "Referral Factory does not list this issued reward yet; retry later"}
		}
		id = rfevents.Identity{ID: r.RecipientID, IssuedRewardID: r.ID}
	}
	user, found, err := h.reread(ctx, id)
	if err != nil {
		return h.rfFailure(ctx, log, kind, err)
	}
	if !found {
		return httpx.Outcome{Kind: httpx.Ignored, Reason: "unknown or ambiguous user: Referral Factory does not know it as one user"}
	}
	if kind == rfevents.LeadQualified && !qualifiedLead(user) {
		// RF said qualified but its API does not show it yet: ask RF to retry.
		return httpx.Outcome{Kind: httpx.Transient, Reason: "Referral Factory does not show the lead qualified yet; retry later"}
	}
	key := fmt.Sprintf("rf#%s#%d#%s", kind, user.ID, h.state(kind, user, id))
	res, err := h.Once.Do(ctx, key, nil, func(ctx context.Context) ([]byte, error) {
		out, err := h.act(ctx, kind, user, id)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	})
	switch {
	case errors.Is(err, idempotency.ErrInProgress):
		return httpx.Outcome{Kind: httpx.Transient, Reason: "the same event is being processed; retry later"}
	case errors.Is(err, errReversalUnfinished):
		// Expected when RF's webhook overtakes refbridge's own unqualify call: not an error.
		log.InfoContext(ctx, "rf webhook waits for refbridge's reversal of the lead", "kind", string(kind), "user", user.ID, "error", err.Error())
		return httpx.Outcome{Kind: httpx.Transient, Reason: "refbridge is unqualifying this lead; retry later"}
	case err != nil:
		log.ErrorContext(ctx, "rf webhook failed; RF should retry", "kind", string(kind), "user", user.ID, "error", err.Error())
		h.Metrics.Count(ctx, "TransientFailure", 1)
		return httpx.Outcome{Kind: httpx.Transient, Reason: "temporary failure; retry later"}
	}
	var s stored
	if err := json.Unmarshal(res.Data, &s); err != nil {
		return httpx.Outcome{Kind: httpx.Transient, Reason: "stored result unreadable; retry later"}
	}
	log.InfoContext(ctx, "rf webhook handled", "kind", string(kind), "user", user.ID, "outcome", s.Outcome,
		"reason", s.Reason, "replayed", res.Replayed)
	if res.Replayed {
		h.Metrics.Count(ctx, "Events", 1, observe.Dimension{Name: "EventType", Value: string(kind)}, observe.Dimension{Name: "Outcome", Value: "duplicate"})
		return httpx.Outcome{Kind: httpx.Duplicate, Reason: "already recorded: " + s.Reason}
	}
	h.Metrics.Count(ctx, "Events", 1, observe.Dimension{Name: "EventType", Value: string(kind)}, observe.Dimension{Name: "Outcome", Value: s.Outcome})
	kindOut := httpx.Processed
	if s.Outcome == "ignored" {
		kindOut = httpx.Ignored
	}
	return httpx.Outcome{Kind: kindOut, Reason: s.Reason}
}

// invalidBody says what was wrong with a body in refbridge's words: which encoding failed (the
// parser's detail, which may quote the body, stays in the logs), or the field names looked for,
// which are the admin's (RF_WEBHOOK_FIELDS), never the sender's.
func invalidBody(err error) string {
	switch {
	case errors.Is(err, rfevents.ErrMalformedJSON):
		return rfevents.ErrMalformedJSON.Error()
	case errors.Is(err, rfevents.ErrMalformedForm):
		return rfevents.ErrMalformedForm.Error()
	}
	return err.Error()
}

// errReversalUnfinished: the lead's newest qualification in the ledger is reversed (or became
// so while the webhook was decided), and RF's qualified state cannot be told apart from the one
// that reversal has not yet undone.
var errReversalUnfinished = errors.New("the lead's qualification is reversed in the ledger and RF's may not be undone yet")

// qualifiedSinceReversal decides a lead-qualified webhook for a lead whose newest qualification
// the ledger records as reversed: RF qualifying the lead is news only if it came after
// refbridge unqualified the lead there. The user read before may predate that unqualify (the
// reversal flow records the reversal first, then calls RF): recording a new qualification from
// it would leave the ledger standing while RF ends unqualified. So the unqualify must be done,
// and RF read again after seeing it done; otherwise errReversalUnfinished, and RF retries. A
// reversal that left RF qualified on purpose (every reward already issued) has no unqualify, so
// RF's stale news of it is not recorded either.
func (h *Handler) qualifiedSinceReversal(ctx context.Context, latest ledger.Qualification) (rf.User, error) {
	in, err := h.Ledger.IntentOf(ctx, ledger.IntentUnqualify, ledger.QualificationTarget(latest.LeadID, latest.Seq))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return rf.User{}, fmt.Errorf("lead %d, qualification %d: no unqualify begun: %w", latest.LeadID, latest.Seq, errReversalUnfinished)
	case err != nil:
		return rf.User{}, fmt.Errorf("unqualify intent of lead %d: %w", latest.LeadID, err)
	case in.Status != ledger.IntentDone:
		return rf.User{}, fmt.Errorf("lead %d, qualification %d: unqualify %s: %w", latest.LeadID, latest.Seq, in.Status, errReversalUnfinished)
	}
	u, err := h.RF.GetUser(ctx, strconv.FormatInt(latest.LeadID, 10))
	if err != nil {
		return rf.User{}, fmt.Errorf("read lead %d again: %w", latest.LeadID, err)
	}
	if !qualifiedLead(u) {
		return rf.User{}, fmt.Errorf("lead %d: unqualified in RF since the webhook: %w", latest.LeadID, errReversalUnfinished)
	}
	return u, nil
}

// qualifiedLead reports whether RF shows the user as a qualified lead.
func qualifiedLead(u rf.User) bool { return u.IsLead() && u.Qualified() }

// rfFailure answers an RF error: transient ones get 503 so RF retries; others (a rejected
// identifier, a revoked token) cannot be fixed by a retry and are acknowledged, logged, counted.
func (h *Handler) rfFailure(ctx context.Context, log *slog.Logger, kind rfevents.Kind, err error) httpx.Outcome {
	if rf.IsRetryable(err) || rf.IsOutcomeUnknown(err) || errors.Is(err, context.DeadlineExceeded) {
		log.ErrorContext(ctx, "rf webhook: Referral Factory unavailable", "kind", string(kind), "error", err.Error())
		return httpx.Outcome{Kind: httpx.Transient, Reason: "Referral Factory unavailable; retry later"}
	}
	log.ErrorContext(ctx, "rf webhook: Referral Factory refused the lookup", "kind", string(kind), "error", err.Error())
	h.Metrics.Count(ctx, "RFLookupRefused", 1)
	return httpx.Outcome{Kind: httpx.Ignored, Reason: "Referral Factory refused the lookup; see the logs"}
}

// state is the part of the dedupe key that changes when the same user's event means something
// new: a new qualification date, another issued reward.
func (h *Handler) state(kind rfevents.Kind, u rf.User, id rfevents.Identity) string {
	switch kind {
	case rfevents.LeadQualified:
		return u.QualifiedAt.String()
	case rfevents.RewardIssued:
		return strconv.FormatInt(id.IssuedRewardID, 10)
	}
	return ""
}

// reread finds the user in RF: the payload is a hint, the API is the truth.
func (h *Handler) reread(ctx context.Context, id rfevents.Identity) (rf.User, bool, error) {
	var u rf.User
	var err error
	switch {
	case id.ID > 0:
		u, err = h.RF.GetUser(ctx, strconv.FormatInt(id.ID, 10))
	case id.Code != "":
		u, err = h.RF.GetUser(ctx, id.Code)
	default:
		campaigns := h.CampaignIDs
		if id.CampaignID > 0 {
			campaigns = []int64{id.CampaignID}
		}
		var all []rf.User
		for _, c := range campaigns {
			users, err := h.RF.FindUsersByEmail(ctx, c, id.Email)
			if err != nil {
				return rf.User{}, false, err
			}
			all = append(all, users...)
		}
		if len(all) != 1 { // none, or the same email in several campaigns: not one user
			return rf.User{}, false, nil
		}
		return all[0], true, nil
	}
	if rf.IsNotFound(err) {
		return rf.User{}, false, nil
	}
	return u, err == nil, err
}

type result = stored

func (h *Handler) act(ctx context.Context, kind rfevents.Kind, u rf.User, id rfevents.Identity) (result, error) {
	lead, err := h.remember(ctx, u)
	if err != nil {
		return result{}, err
	}
	switch kind {
	case rfevents.ReferrerJoined:
		if err := h.linkCustomers(ctx, u, false); err != nil {
			return result{}, err
		}
		return result{"processed", "referrer recorded"}, nil
	case rfevents.LeadCreated:
		if !u.IsLead() {
			return result{"processed", "user recorded (Referral Factory has it as a referrer, not a lead)"}, nil
		}
		if err := h.linkCustomers(ctx, u, true); err != nil {
			return result{}, err
		}
		if lead.EmailHash == "" {
			return result{"processed", "lead recorded"}, nil
		}
		waiting, err := h.Ledger.UnmatchedFor(ctx, "", lead.EmailHash)
		if err != nil {
			return result{}, fmt.Errorf("unmatched invoices of lead %d: %w", u.ID, err)
		}
		failed := 0
		for _, w := range waiting {
			// One invoice that fails must not hold the lead back: the sweep retries it.
			if _, err := h.Retrier.RetryUnmatched(ctx, w); err != nil {
				failed++
				h.log().WarnContext(ctx, "waiting invoice not processed; the sweep will retry it", "invoice", w.InvoiceID, "lead", u.ID, "error", err.Error())
			}
		}
		return result{"processed", fmt.Sprintf("lead recorded; %d waiting paid invoice(s) processed, %d left for the sweep", len(waiting)-failed, failed)}, nil
	case rfevents.LeadQualified:
		if !u.IsLead() || !u.Qualified() {
			return result{"ignored", "Referral Factory does not have this user as a qualified lead"}, nil
		}
		// The generation this decision is about: the first, or the one after a reversal whose
		// unqualify is done. The ledger refuses it (ErrConflict) if another was recorded, or
		// this one reversed, since the read: RF retries, and the webhook is decided again.
		next := int64(1)
		latest, err := h.Ledger.LatestQualification(ctx, u.ID)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
		case err != nil:
			return result{}, fmt.Errorf("qualification of lead %d: %w", u.ID, err)
		case latest.Standing():
			return result{"processed", "qualification already recorded"}, nil
		default:
			if u, err = h.qualifiedSinceReversal(ctx, latest); err != nil {
				return result{}, err
			}
			next = latest.Seq + 1
		}
		// RF gives a date only. The hold counts from when refbridge learned of the
		// qualification, never earlier, so it is never shortened; but RF made it on that date,
		// possibly before the sweep first saw the rewards it produced, so the sweep may tie them
		// to it from the date's start (EarliestAt).
		now := h.now()
		_, err = h.Ledger.Qualify(ctx, ledger.Qualification{LeadID: u.ID, Seq: next, ReferrerID: u.ReferrerID, At: now,
			EarliestAt: qualifiedFrom(u.QualifiedAt, now), Origin: ledger.OriginRFWebhook, Rule: "rf_webhook"})
		if errors.Is(err, ledger.ErrAlreadyQualified) {
			return result{"processed", "qualification already recorded"}, nil
		}
		if errors.Is(err, ledger.ErrConflict) {
			return result{}, fmt.Errorf("lead %d: the ledger's qualifications changed since they were read: %w", u.ID, errReversalUnfinished)
		}
		if err != nil {
			return result{}, fmt.Errorf("record qualification of lead %d: %w", u.ID, err)
		}
		return result{"processed", "qualification made outside refbridge recorded"}, nil
	case rfevents.RewardIssued:
		r, found, err := h.issued(ctx, id.IssuedRewardID)
		if err != nil {
			return result{}, err
		}
		if !found || r.RecipientID != u.ID {
			return result{"ignored", "Referral Factory lists no such issued reward for this user"}, nil
		}
		state := ledger.RewardIssued
		if r.Status == rf.StatusCanceled {
			state = ledger.RewardCanceled
		}
		rec, err := h.Ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: r.ID, RecipientID: r.RecipientID,
			State: state, At: h.now(), By: ledger.SettledByRFWebhook})
		if errors.Is(err, ledger.ErrAlreadySettled) {
			if rec.State != state {
				// RF and the ledger disagree (the sweep recorded a cancel that RF shows issued,
				// say): the ledger keeps its first record, and someone should look.
				h.log().WarnContext(ctx, "reward recorded settled differently from what Referral Factory reports",
					"reward", r.ID, "recorded", string(rec.State), "recorded_by", rec.SettledBy, "reported", string(state))
			}
			return result{"processed", "reward already recorded"}, nil
		}
		if err != nil {
			return result{}, fmt.Errorf("record reward %d: %w", r.ID, err)
		}
		return result{"processed", "issued reward recorded; the sweep will never issue it again"}, nil
	}
	return result{}, fmt.Errorf("kind %s not handled", kind)
}

// remember records the user in the ledger, so payments match without an RF call and the
// created/qualified deliveries end in the same state whatever their order.
func (h *Handler) remember(ctx context.Context, u rf.User) (ledger.Lead, error) {
	l := ledger.Lead{ID: u.ID, Code: u.Code, ReferrerID: u.ReferrerID, CampaignID: u.CampaignID,
		SignedUpAt: u.SignedUpAt.Time, Source: ledger.SourceRFWebhook}
	if u.Email != "" {
		l.SetEmail(u.Email)
	}
	stored, err := h.Ledger.PutLead(ctx, l)
	if err != nil {
		return ledger.Lead{}, fmt.Errorf("record user %d: %w", u.ID, err)
	}
	return stored, nil
}

// linkCustomers (with STRIPE_API_KEY) finds the Stripe customers with the user's email: a lead's
// are mapped to it and get rf_user_id/rf_code, so their payments match by id; a referrer's get
// their referral link. Stripe errors are transient (503, RF retries); nothing is written in dry
// run.
func (h *Handler) linkCustomers(ctx context.Context, u rf.User, lead bool) error {
	if h.Customers == nil || u.Email == "" {
		return nil
	}
	ids, err := h.Customers.FindByEmail(ctx, rf.NormalizeEmail(u.Email))
	if err != nil {
		return err
	}
	for _, cus := range ids {
		if lead {
			if _, err := h.Ledger.MapCustomer(ctx, cus, u.ID, "rf_webhook_email"); err != nil && !errors.Is(err, ledger.ErrConflict) {
				return fmt.Errorf("map customer of lead %d: %w", u.ID, err)
			}
		}
		if h.DryRun {
			continue
		}
		if lead {
			err = h.Customers.WriteBack(ctx, cus, u.ID, u.Code)
		} else {
			err = h.Customers.WriteReferralLink(ctx, cus, u.ID, u.Code, u.URL)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// issued finds an issued reward by id in RF's issued lists.
func (h *Handler) issued(ctx context.Context, id int64) (rf.IssuedReward, bool, error) {
	f := rf.Eq("id", id)
	for _, m := range rf.AllMetrics() {
		rs, err := h.RF.IssuedRewards(m, rf.ListOptions{Filter: &f}).Collect(ctx)
		if err != nil {
			return rf.IssuedReward{}, false, fmt.Errorf("issued %s rewards: %w", m, err)
		}
		for _, r := range rs {
			if r.ID == id {
				return r, true, nil
			}
		}
	}
	return rf.IssuedReward{}, false, nil
}

// qualifiedFrom is the earliest time RF can have made a qualification dated d: the start of that
// date, 00:00 UTC (RF's dates carry no zone; UTC is what its API is taken to use, see
// docs/rfsim.md), and never after now (a date ahead of refbridge's clock).
func qualifiedFrom(d rf.Date, now time.Time) time.Time {
	if d.IsZero() {
		return now
	}
	y, m, day := d.UTC().Date()
	from := time.Date(y, m, day, 0, 0, 0, 0, time.UTC)
	if from.After(now) {
		return now
	}
	return from
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
