package referrals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// InvoicePaid counts a paid invoice toward its lead's net paid amount and qualifies the lead in
// RF once that amount reaches the threshold inside the attribution window. An error is
// transient (RF or DynamoDB): the caller answers 503 and Stripe retries; every step is
// idempotent, so the retry resumes where this attempt stopped.
func (s *Service) InvoicePaid(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time) (Result, error) {
	subject := "invoice#" + inv.ID
	if inv.AmountPaid <= 0 {
		out := Result{Outcome: Ignored, Reason: "zero-amount invoice (trial) never qualifies"}
		s.decide(ctx, subject, "amount", out, nil)
		return out, nil
	}
	// A redelivery runs the same steps: each is idempotent (the spend entry is keyed by the
	// invoice), and a qualification a crash or an RF failure left undone is finished.
	lead, rule, err := s.match(ctx, inv)
	if errors.Is(err, errNoMatch) {
		return s.unmatched(ctx, inv, paidAt, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("match invoice %s: %w", inv.ID, err)
	}
	return s.countAndQualify(ctx, inv, paidAt, lead, rule)
}

// RetryUnmatched tries a waiting unmatched invoice again, now that a lead may be known (RF's
// lead-created webhook, or the sweep's retries): by the customer mapping, then by the email
// hash. A match is counted and may qualify, and the invoice is resolved; no match leaves it
// waiting (Outcome Unmatched).
func (s *Service) RetryUnmatched(ctx context.Context, u ledger.Unmatched) (Result, error) {
	var lead ledger.Lead
	var rule string
	err := error(ledger.ErrNotFound)
	if u.CustomerID != "" {
		lead, err = s.ledger.LeadByCustomer(ctx, u.CustomerID)
		rule = RuleCustomerMap
	}
	if errors.Is(err, ledger.ErrNotFound) && u.EmailHash != "" {
		var leads []ledger.Lead
		if leads, err = s.ledger.LeadsByEmail(ctx, u.EmailHash); err == nil {
			var ok bool
			if lead, ok = s.inCampaigns(leads); !ok {
				err = ledger.ErrNotFound
			}
			rule = RuleEmailIndex
		}
	}
	if errors.Is(err, ledger.ErrNotFound) {
		return Result{Outcome: Unmatched, Reason: "still no lead for the customer or email"}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("retry unmatched %s: %w", u.InvoiceID, err)
	}
	inv := stripeevents.Invoice{ID: u.InvoiceID, CustomerID: u.CustomerID, Currency: u.Currency, AmountPaid: u.AmountMinor, ChargeID: u.ChargeID}
	res, err := s.countAndQualify(ctx, inv, u.PaidAt, lead, rule)
	if err != nil {
		return Result{}, err
	}
	if _, err := s.ledger.ResolveUnmatched(ctx, u.InvoiceID, ledger.UnmatchedMatched, string(res.Outcome)+": "+res.Reason); err != nil && !errors.Is(err, ledger.ErrConflict) {
		return Result{}, fmt.Errorf("resolve unmatched %s: %w", u.InvoiceID, err)
	}
	return res, nil
}

// countAndQualify is what follows a match: mappings, the window, the spend, the threshold.
func (s *Service) countAndQualify(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time, lead ledger.Lead, rule string) (Result, error) {
	subject := "invoice#" + inv.ID
	if inv.CustomerID != "" && rule != RuleCustomerMap {
		if _, err := s.ledger.MapCustomer(ctx, inv.CustomerID, lead.ID, rule); err != nil && !errors.Is(err, ledger.ErrConflict) {
			return Result{}, fmt.Errorf("map customer of invoice %s: %w", inv.ID, err)
		} else if err != nil {
			s.log.WarnContext(ctx, "customer already mapped to another lead; metadata match kept",
				"invoice", inv.ID, "lead", lead.ID, "rule", rule)
		}
	}
	if s.customers != nil && inv.CustomerID != "" && (rule == RuleEmailIndex || rule == RuleRFEmail) && !s.set.DryRun {
		// Later payments then match by id even if the customer's email drifts. Best effort: the
		// ledger's mapping already matches them, so a failure is logged, not retried.
		if err := s.customers.WriteBack(ctx, inv.CustomerID, lead.ID, lead.Code); err != nil {
			s.log.WarnContext(ctx, "could not write the RF link to the Stripe customer", "invoice", inv.ID, "error", err.Error())
		}
	}
	inputs := map[string]string{"lead": itoa(lead.ID), "rule": rule, "amount": itoa(inv.AmountPaid), "currency": inv.Currency}
	if s.set.Window > 0 && !lead.SignedUpAt.IsZero() && paidAt.After(lead.SignedUpAt.Add(s.set.Window)) {
		out := Result{Outcome: Ignored, Reason: "paid outside the attribution window", LeadID: lead.ID, Rule: rule}
		s.decide(ctx, subject, "window", out, inputs)
		return out, nil
	}
	// Disputes name only the charge: the payment maps it to the lead as it counts, and applies
	// in the same step the refunds and disputes of the charge processed before it (held).
	currency := strings.ToLower(inv.Currency)
	placed, err := s.ledger.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: lead.ID, ChargeID: inv.ChargeID, Currency: currency,
		Payment: &ledger.SpendEntry{LeadID: lead.ID, Key: inv.ID + "#paid", Kind: ledger.SpendPayment, Currency: currency,
			AmountMinor: inv.AmountPaid, InvoiceID: inv.ID, At: paidAt}})
	if errors.Is(err, ledger.ErrConflict) {
		return s.conflict(ctx, subject, lead.ID, err), nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("count invoice %s: %w", inv.ID, err)
	}
	out := Result{Outcome: Counted, LeadID: lead.ID, Rule: rule}
	if !placed.Applied {
		out.Outcome, out.Reason = Duplicate, "invoice already counted"
	}
	if placed.Placed > 0 {
		return s.afterHeldReversals(ctx, inv, paidAt, out, &lead, &placed.Spend)
	}
	return s.qualifyIfDue(ctx, inv, paidAt, out, &lead, &placed.Spend)
}

// afterHeldReversals follows a payment whose charge was refunded or disputed before it counted
// (the reversals held, and placed with it): a lead qualified by its other payments is checked
// as the reversal would have checked it, had it come after the payment; any other lead as a
// payment is. A redelivery (after a crash, say) takes the same path: the payment's entry keeps
// what was placed with it.
func (s *Service) afterHeldReversals(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time, out Result, lead *ledger.Lead, spend *ledger.Spend) (Result, error) {
	latest, err := s.ledger.LatestQualification(ctx, lead.ID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return Result{}, fmt.Errorf("invoice %s: qualification of lead %d: %w", inv.ID, lead.ID, err)
	}
	unfinished := false
	if err == nil && !latest.Standing() {
		// A crash between this payment's reversal and RF's unqualify: the redelivery finishes it.
		if unfinished, err = s.reversalUnfinished(ctx, latest); err != nil {
			return Result{}, err
		}
	}
	if err == nil && (latest.Standing() || unfinished) {
		res, err := s.reverseIfBelow(ctx, *lead, strings.ToLower(inv.Currency), "invoice#"+inv.ID, "refund or dispute held for the invoice's charge")
		if err == nil && res.Outcome == Counted {
			res.Outcome, res.Reason, res.Rule = out.Outcome, res.Reason+" (held reversals applied with the payment)", out.Rule
		}
		return res, err
	}
	return s.qualifyIfDue(ctx, inv, paidAt, out, lead, spend)
}

// qualifyIfDue qualifies the invoice's lead when its net paid amount reaches the threshold and
// it has no standing qualification. Renewals of a qualified lead cost no RF call. lead and
// spend are what the caller just read or wrote.
func (s *Service) qualifyIfDue(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time, out Result, lead *ledger.Lead, spend *ledger.Spend) (Result, error) {
	subject := "invoice#" + inv.ID
	latest, err := s.ledger.LatestQualification(ctx, out.LeadID)
	found := err == nil
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return Result{}, fmt.Errorf("invoice %s: qualification of lead %d: %w", inv.ID, out.LeadID, err)
	}
	if out.Outcome == Duplicate && found {
		// A redelivery of the payment whose qualification was in flight when a refund or
		// dispute came (the attempt that recorded it died, or failed, before checking the net
		// again): it checks now. A duplicate whose net meets the threshold costs nothing more.
		if res, done, err := s.recheckRedelivered(ctx, *lead, latest, spend, subject, strings.ToLower(inv.Currency)); done || err != nil {
			return res, err
		}
	}
	if found && latest.Standing() {
		if out.Reason == "" {
			out.Reason = "lead already qualified"
		}
		return out, nil
	}
	currency := strings.ToLower(inv.Currency)
	min, ok := s.set.Threshold.For(currency)
	if !ok {
		out.Reason = "no qualifying threshold for " + currency
		s.decide(ctx, subject, "threshold", out, nil)
		return out, nil
	}
	net := spend.Net[currency]
	inputs := map[string]string{"lead": itoa(out.LeadID), "net": itoa(net), "threshold": itoa(min), "currency": currency}
	if net < min {
		if out.Reason == "" {
			out.Reason = fmt.Sprintf("net paid %d %s is below the threshold %d", net, currency, min)
		}
		s.decide(ctx, subject, "threshold", out, inputs)
		return out, nil
	}
	res, err := s.qualify(ctx, *lead, ledger.NextQualificationSeq(latest, found), subject, inv.ID, out, inputs)
	if err == nil && res.Outcome == Unmatched {
		// RF says the user is not a lead (any more): retried like an unmatched payment.
		return s.unmatched(ctx, inv, paidAt, errors.New(res.Reason))
	}
	return res, err
}

// ErrCancelPending means the lead is to be qualified again while the sweep cancels a reward of
// its reversed qualification: RF must see that cancel first (it makes the lead's new reward only
// once the old one is canceled), so the caller answers 503 and Stripe retries later.
var ErrCancelPending = errors.New("the sweep is canceling a reward of the lead's reversed qualification; retry later")

// qualify runs intent → RF call → confirm. PUT /users/qualification sets a state, so a retry
// after a crash simply sets it again; the intent records that the call was made.
func (s *Service) qualify(ctx context.Context, lead ledger.Lead, seq int64, subject, invoiceID string, out Result, inputs map[string]string) (Result, error) {
	target := ledger.QualificationTarget(lead.ID, seq)
	if s.set.DryRun {
		out.Reason = "dry run: would qualify the lead"
		s.log.InfoContext(ctx, "dry run: would call PUT /users/qualification", "lead", lead.ID, "qualified", true)
		s.decide(ctx, subject, "threshold", Result{Outcome: Qualified, Reason: out.Reason}, inputs)
		return out, nil
	}
	in, err := s.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: subject})
	if errors.Is(err, ledger.ErrIntentPending) {
		// An earlier attempt may have reached RF: read RF's state before calling again.
		if done, rerr := s.rfQualified(ctx, lead.ID, true); rerr != nil {
			return Result{}, fmt.Errorf("qualify lead %d: reconcile: %w", lead.ID, rerr)
		} else if done {
			if in, err = s.ledger.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentDone, ""); err != nil {
				return Result{}, fmt.Errorf("qualify lead %d: confirm intent: %w", lead.ID, err)
			}
			err = ledger.ErrIntentDone
		}
	}
	switch {
	case errors.Is(err, ledger.ErrIntentDone):
		// The call was confirmed but the qualification not recorded (a crash in between): in
		// is the intent as stored, whose times are those of the call that qualified the lead.
	case errors.Is(err, ledger.ErrConflict):
		// The sweep is canceling a reward of the lead's reversed qualification: RF must see that
		// cancel before it qualifies the lead again, or the lead's new reward is never made.
		// The sender retries once the cancel is finished.
		return Result{}, fmt.Errorf("qualify lead %d: %w: %w", lead.ID, ErrCancelPending, err)
	case err != nil && !errors.Is(err, ledger.ErrIntentPending):
		return Result{}, fmt.Errorf("qualify lead %d: intent: %w", lead.ID, err)
	default:
		if _, err := s.setQualification(ctx, lead.ID, true); err != nil {
			if _, ferr := s.ledger.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentFailed, err.Error()); ferr != nil {
				s.log.WarnContext(ctx, "could not record a failed qualification", "lead", lead.ID, "error", ferr.Error())
			}
			if rf.IsNotFound(err) || rf.IsValidation(err) {
				out.Outcome, out.Reason = Unmatched, "Referral Factory refused to qualify the user (not a lead there)"
				s.decide(ctx, subject, "qualify", out, inputs)
				return out, nil
			}
			return Result{}, fmt.Errorf("qualify lead %d: %w", lead.ID, err)
		}
		if in, err = s.ledger.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentDone, ""); err != nil {
			return Result{}, fmt.Errorf("qualify lead %d: confirm intent: %w", lead.ID, err)
		}
	}
	earliest, latest := qualifiedBetween(in, s.now())
	_, err = s.ledger.Qualify(ctx, ledger.Qualification{LeadID: lead.ID, ReferrerID: lead.ReferrerID, At: latest,
		EarliestAt: earliest, Origin: ledger.OriginRefbridge, InvoiceID: invoiceID, Rule: out.Rule})
	if err != nil && !errors.Is(err, ledger.ErrAlreadyQualified) {
		return Result{}, fmt.Errorf("qualify lead %d: record: %w", lead.ID, err)
	}
	out.Outcome, out.Reason = Qualified, "lead qualified"
	s.decide(ctx, subject, "threshold", out, inputs)
	return s.reverseIfReversedMeanwhile(ctx, lead, subject, inputs["currency"], out)
}

// reverseIfReversedMeanwhile checks the net paid amount again once a qualification is recorded.
// A refund or dispute processed while it was in flight (after the net read that decided it,
// before Qualify) applied its amount, then found no qualification to reverse. The reversal
// writes the net before it reads the qualification, and this reads the net (strongly
// consistent) after writing the qualification, so at least one of the two sees the other; when
// both do, Reverse (conditional on the generation standing) and the unqualify intent let one
// of them unqualify the lead, once. Only the path that just qualified pays this read.
func (s *Service) reverseIfReversedMeanwhile(ctx context.Context, lead ledger.Lead, subject, currency string, out Result) (Result, error) {
	if still, err := s.meetsAnyThreshold(ctx, lead.ID); err != nil {
		return Result{}, fmt.Errorf("qualify lead %d: check the net again: %w", lead.ID, err)
	} else if still != "" {
		return out, nil
	}
	s.log.WarnContext(ctx, "net paid fell below the threshold while the qualification was in flight; reversing it",
		"lead", lead.ID, "subject", subject, "metric", "reversed_in_flight")
	res, err := s.reverseIfBelow(ctx, lead, currency, subject, "refund or dispute processed while the lead was being qualified")
	if errors.Is(err, ledger.ErrNotFound) {
		// Reverse refused: the refund or dispute reversed this generation since the read, and
		// unqualifies the lead itself (its redelivery finishes it, should it die).
		res, err = Result{Outcome: Unqualified, LeadID: lead.ID, Reason: "lead qualified, then reversed by a refund or dispute processed meanwhile"}, nil
	}
	if err != nil {
		return Result{}, err
	}
	if res.Outcome == Counted {
		// Nothing reversed here: a concurrent reversal got there first and finished it, or a
		// payment raised the net back meanwhile. Rare enough to read which.
		q, err := s.ledger.LatestQualification(ctx, lead.ID)
		if err != nil {
			return Result{}, fmt.Errorf("qualify lead %d: read the qualification again: %w", lead.ID, err)
		}
		if q.Standing() {
			return out, nil
		}
		res.Outcome = Unqualified
	}
	res.Rule = out.Rule
	return res, nil
}

// recheckRedelivered finishes, on a redelivery of a payment, the check its first delivery makes
// after it records the qualification (reverseIfReversedMeanwhile), when that delivery may have
// died (or failed) before it: the net paid amount is below every threshold, and latest is the
// qualification this payment's subject made (its qualify intent's Ref), standing, or reversed
// with its unqualify unfinished. done=false: nothing to do, and the payment goes on as any
// duplicate (one back at the threshold qualifies the lead again). The net in hand is the one the
// payment's count just read, so a duplicate above the threshold costs no request more; below
// it, the intents are read.
func (s *Service) recheckRedelivered(ctx context.Context, lead ledger.Lead, latest ledger.Qualification, spend *ledger.Spend, subject, currency string) (Result, bool, error) {
	if s.meetsAnyOf(spend) {
		return Result{}, false, nil
	}
	if !latest.Standing() {
		if unfinished, err := s.reversalUnfinished(ctx, latest); err != nil || !unfinished {
			return Result{}, false, err
		}
	}
	in, err := s.ledger.IntentOf(ctx, ledger.IntentQualify, ledger.QualificationTarget(latest.LeadID, latest.Seq))
	if errors.Is(err, ledger.ErrNotFound) || (err == nil && in.Ref != subject) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("recheck lead %d: qualify intent: %w", lead.ID, err)
	}
	res, err := s.reverseIfReversedMeanwhile(ctx, lead, subject, currency, Result{Outcome: Duplicate, LeadID: lead.ID, Reason: "invoice already counted"})
	return res, true, err
}

// qualifiedBetween is when RF made the qualification a done qualify intent guarded: no earlier
// than the attempt that made it began, no later than its confirmation. The sweep ties RF's due
// rewards to qualifications by these times, so they come from the intent, never from when the
// qualification is recorded: a write that failed after the call, and the redelivery that records
// it minutes later, must not move it after the rewards it produced. (Intents keep the times of
// the attempt that confirmed them: a refused Begin never moves them.) now stands in for a time
// the intent lacks.
func qualifiedBetween(in ledger.Intent, now time.Time) (earliest, latest time.Time) {
	earliest, latest = in.AttemptedAt, in.FinishedAt
	if earliest.IsZero() {
		earliest = now
	}
	if latest.IsZero() {
		latest = now
	}
	if latest.Before(earliest) { // clocks of two processes
		latest = earliest
	}
	return earliest, latest
}

// rfQualified reads the user from RF and reports whether its qualification already is want.
func (s *Service) rfQualified(ctx context.Context, leadID int64, want bool) (bool, error) {
	u, err := s.rf.GetUser(ctx, itoa(leadID))
	if rf.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return u.Qualified() == want, nil
}

// match runs the matching chain; the first hit wins.
func (s *Service) match(ctx context.Context, inv stripeevents.Invoice) (ledger.Lead, string, error) {
	sources := []map[string]string{inv.Metadata, inv.SubscriptionMetadata}
	if s.customers != nil && inv.CustomerID != "" {
		md, err := s.customers.Metadata(ctx, inv.CustomerID)
		if err != nil {
			return ledger.Lead{}, "", err
		}
		sources = append(sources, md)
	}
	for _, md := range sources {
		for _, key := range []string{"rf_user_id", "rf_code"} {
			v := strings.TrimSpace(md[key])
			if v == "" {
				continue
			}
			lead, ok, err := s.leadFromRF(ctx, key, v)
			if err != nil {
				return ledger.Lead{}, "", err
			}
			if ok {
				return lead, RuleMetadata, nil
			}
			s.log.WarnContext(ctx, "metadata names no lead", "invoice", inv.ID, "key", key)
		}
	}
	if inv.CustomerID != "" {
		lead, err := s.ledger.LeadByCustomer(ctx, inv.CustomerID)
		if err == nil {
			return lead, RuleCustomerMap, nil
		}
		if !errors.Is(err, ledger.ErrNotFound) {
			return ledger.Lead{}, "", err
		}
	}
	email := rf.NormalizeEmail(inv.CustomerEmail)
	if email == "" {
		return ledger.Lead{}, "", fmt.Errorf("%w: no metadata, no mapping and no email", errNoMatch)
	}
	leads, err := s.ledger.LeadsByEmail(ctx, ledger.HashEmail(email))
	if err != nil {
		return ledger.Lead{}, "", err
	}
	if lead, ok := s.inCampaigns(leads); ok {
		return lead, RuleEmailIndex, nil
	}
	for _, campaign := range s.campaigns() {
		users, err := s.rf.FindUsersByEmail(ctx, campaign, email)
		if err != nil {
			return ledger.Lead{}, "", err
		}
		for _, u := range users {
			if u.IsLead() {
				lead, err := s.rememberLead(ctx, u, email)
				return lead, RuleRFEmail, err
			}
		}
	}
	return ledger.Lead{}, "", fmt.Errorf("%w: not a lead by metadata, customer or email in any configured campaign", errNoMatch)
}

// inCampaigns picks the lead of the first configured campaign (any, when RF_CAMPAIGN_IDS is
// empty).
func (s *Service) inCampaigns(leads []ledger.Lead) (ledger.Lead, bool) {
	if len(s.set.CampaignIDs) == 0 {
		for _, l := range leads {
			if l.ReferrerID != 0 { // a lead, not a referrer
				return l, true
			}
		}
	}
	for _, c := range s.campaigns() {
		for _, l := range leads {
			if l.CampaignID == c && l.ReferrerID != 0 {
				return l, true
			}
		}
	}
	return ledger.Lead{}, false
}

// leadFromRF resolves metadata (an RF user id or code) to a lead: from the ledger, else from RF.
func (s *Service) leadFromRF(ctx context.Context, key, v string) (ledger.Lead, bool, error) {
	var lead ledger.Lead
	var err error
	if key == "rf_user_id" {
		id, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || id <= 0 {
			return ledger.Lead{}, false, nil
		}
		lead, err = s.ledger.LeadByID(ctx, id)
	} else {
		lead, err = s.ledger.LeadByCode(ctx, v)
	}
	if err == nil && lead.ReferrerID != 0 {
		return lead, true, nil
	}
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return ledger.Lead{}, false, err
	}
	u, err := s.rf.GetUser(ctx, v)
	if rf.IsNotFound(err) {
		return ledger.Lead{}, false, nil
	}
	if err != nil {
		return ledger.Lead{}, false, err
	}
	if !u.IsLead() {
		return ledger.Lead{}, false, nil
	}
	lead, err = s.rememberLead(ctx, u, u.Email)
	return lead, err == nil, err
}

// rememberLead stores an RF lead in the ledger so later payments match without an RF call.
func (s *Service) rememberLead(ctx context.Context, u rf.User, email string) (ledger.Lead, error) {
	l := ledger.Lead{ID: u.ID, Code: u.Code, ReferrerID: u.ReferrerID, CampaignID: u.CampaignID,
		SignedUpAt: u.SignedUpAt.Time, Source: ledger.SourceAPI}
	if email != "" {
		l.SetEmail(email)
	}
	stored, err := s.ledger.PutLead(ctx, l)
	if err != nil {
		return ledger.Lead{}, fmt.Errorf("remember lead %d: %w", u.ID, err)
	}
	return stored, nil
}

// unmatched records a paid invoice that matched nothing, to be retried by the sweep.
func (s *Service) unmatched(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time, why error) (Result, error) {
	u := ledger.Unmatched{InvoiceID: inv.ID, CustomerID: inv.CustomerID, AmountMinor: inv.AmountPaid,
		Currency: strings.ToLower(inv.Currency), ChargeID: inv.ChargeID, Reason: why.Error(), PaidAt: paidAt,
		NextRetryAt: s.now(), RetryUntil: s.now().Add(s.set.UnmatchedRetry)}
	if e := rf.NormalizeEmail(inv.CustomerEmail); e != "" {
		u.EmailHash = ledger.HashEmail(e)
	}
	if _, err := s.ledger.RecordUnmatched(ctx, u); err != nil {
		return Result{}, fmt.Errorf("record unmatched invoice %s: %w", inv.ID, err)
	}
	out := Result{Outcome: Unmatched, Reason: "not referred: " + strings.TrimPrefix(why.Error(), errNoMatch.Error()+": ")}
	s.decide(ctx, "invoice#"+inv.ID, "match", out, map[string]string{"customer": inv.CustomerID})
	return out, nil
}

// campaigns are the campaigns whose leads pay through Stripe: RF_CAMPAIGN_IDS, and the signup
// campaign, whose leads refbridge creates itself (a RF_SIGNUP_CAMPAIGN_ID outside
// RF_CAMPAIGN_IDS must not leave them unmatched).
func (s *Service) campaigns() []int64 {
	c := s.set.CampaignIDs
	if s.set.SignupCampaignID > 0 && !slices.Contains(c, s.set.SignupCampaignID) {
		c = append(slices.Clip(c), s.set.SignupCampaignID)
	}
	return c
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
