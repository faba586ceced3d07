package referrals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// ChargeRefunded applies a charge's refunds to its lead's net paid amount. Stripe sends the
// cumulative amount refunded; the ledger subtracts only the increase, so redeliveries and
// reordered events count once. A lead falling below the threshold before its reward is issued
// is unqualified.
func (s *Service) ChargeRefunded(ctx context.Context, ch stripeevents.Charge, at time.Time) (Result, error) {
	subject := "charge#" + ch.ID
	currency := strings.ToLower(ch.Currency)
	lead, err := s.leadOfCharge(ctx, ch)
	if errors.Is(err, errPaymentNotCounted) && ch.AmountRefunded > 0 {
		res, held, err := s.hold(ctx, subject, ledger.ChargeHold{ChargeID: ch.ID, InvoiceID: ch.InvoiceID, CustomerID: ch.CustomerID,
			Currency: currency, RefundedMinor: ch.AmountRefunded, RefundedAt: at})
		if held || err != nil {
			return res, err
		}
		lead, err = s.leadOfCharge(ctx, ch) // the payment counted meanwhile
	}
	if errors.Is(err, ledger.ErrNotFound) {
		return Result{Outcome: Ignored, Reason: "refund of a charge that belongs to no referred lead"}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("refund of %s: %w", ch.ID, err)
	}
	_, delta, err := s.ledger.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: lead.ID, ChargeID: ch.ID,
		Currency: currency, CumulativeMinor: ch.AmountRefunded, At: at})
	if errors.Is(err, ledger.ErrConflict) {
		return s.conflict(ctx, subject, lead.ID, err), nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("refund of %s: %w", ch.ID, err)
	}
	why := fmt.Sprintf("refund of %d %s", delta, currency)
	if delta == 0 {
		// Counted before, but the reversal may not have finished (RF failed, or a crash): check
		// again; it is a no-op when it did.
		why = "refund (already counted)"
	}
	res, err := s.reverseIfBelow(ctx, lead, currency, subject, why)
	if err == nil && delta == 0 && res.Outcome == Counted {
		res.Outcome, res.Reason = Duplicate, "refund already counted"
	}
	return res, err
}

// DisputeCreated withdraws a disputed amount from the lead's net paid amount (inquiries withdraw
// nothing) and unqualifies the lead if that takes it below the threshold.
func (s *Service) DisputeCreated(ctx context.Context, d stripeevents.Dispute, at time.Time) (Result, error) {
	if strings.HasPrefix(d.Status, "warning_") {
		return Result{Outcome: Ignored, Reason: "inquiry: no funds withdrawn"}, nil
	}
	return s.withdraw(ctx, d, at)
}

// DisputeClosed settles a dispute: won gives the funds back (and restores a qualification the
// dispute reversed), lost keeps them withdrawn (withdrawn now if the opening event was missed).
func (s *Service) DisputeClosed(ctx context.Context, d stripeevents.Dispute, at time.Time) (Result, error) {
	switch d.Status {
	case "lost":
		return s.withdraw(ctx, d, at)
	case "won":
	default:
		return Result{Outcome: Ignored, Reason: "dispute closed as " + d.Status + ": no change to funds"}, nil
	}
	subject := "dispute#" + d.ID
	lead, res, held, err := s.disputeLeadOrHold(ctx, d, at, true)
	if held {
		return res, nil
	}
	if errors.Is(err, ledger.ErrNotFound) {
		return Result{Outcome: Ignored, Reason: s.noDisputeLeadReason()}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("dispute %s: %w", d.ID, err)
	}
	currency := strings.ToLower(d.Currency)
	// The withdrawal is recorded too (idempotent), so a won dispute whose opening event was
	// missed nets to zero instead of adding money that never left.
	for _, e := range []ledger.SpendEntry{
		{LeadID: lead.ID, Key: ledger.DisputeWithdrawnKey(d.ID), Kind: ledger.SpendDisputeWithdrawn, Currency: currency, AmountMinor: -d.Amount, At: at},
		{LeadID: lead.ID, Key: ledger.DisputeReinstatedKey(d.ID), Kind: ledger.SpendDisputeReinstated, Currency: currency, AmountMinor: d.Amount, At: at},
	} {
		if _, _, err := s.ledger.ApplySpend(ctx, e); errors.Is(err, ledger.ErrConflict) {
			return s.conflict(ctx, subject, lead.ID, err), nil
		} else if err != nil {
			return Result{}, fmt.Errorf("dispute %s: %w", d.ID, err)
		}
	}
	return s.restoreIfAbove(ctx, lead, currency, subject)
}

func (s *Service) withdraw(ctx context.Context, d stripeevents.Dispute, at time.Time) (Result, error) {
	subject := "dispute#" + d.ID
	lead, res, held, err := s.disputeLeadOrHold(ctx, d, at, false)
	if held {
		return res, nil
	}
	if errors.Is(err, ledger.ErrNotFound) {
		return Result{Outcome: Ignored, Reason: s.noDisputeLeadReason()}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("dispute %s: %w", d.ID, err)
	}
	currency := strings.ToLower(d.Currency)
	_, applied, err := s.ledger.ApplySpend(ctx, ledger.SpendEntry{LeadID: lead.ID, Key: ledger.DisputeWithdrawnKey(d.ID),
		Kind: ledger.SpendDisputeWithdrawn, Currency: currency, AmountMinor: -d.Amount, At: at})
	if errors.Is(err, ledger.ErrConflict) {
		return s.conflict(ctx, subject, lead.ID, err), nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("dispute %s: %w", d.ID, err)
	}
	if !applied {
		return s.reverseIfBelow(ctx, lead, currency, subject, "dispute (already counted)")
	}
	return s.reverseIfBelow(ctx, lead, currency, subject, fmt.Sprintf("dispute of %d %s", d.Amount, currency))
}

// disputeLead finds the lead of a disputed charge: by the charge mapping, else (with
// STRIPE_API_KEY) by the charge's customer read from Stripe.
func (s *Service) disputeLead(ctx context.Context, d stripeevents.Dispute) (ledger.Lead, error) {
	lead, err := s.ledger.LeadByCharge(ctx, d.ChargeID)
	if !errors.Is(err, ledger.ErrNotFound) || s.customers == nil || d.ChargeID == "" {
		return lead, err
	}
	cus, err := s.customers.ChargeCustomer(ctx, d.ChargeID)
	if err != nil {
		return ledger.Lead{}, err
	}
	if cus == "" {
		return ledger.Lead{}, fmt.Errorf("charge %s has no customer: %w", d.ChargeID, ledger.ErrNotFound)
	}
	if lead, err = s.ledger.LeadByCustomer(ctx, cus); err != nil {
		return ledger.Lead{}, err
	}
	if _, err := s.ledger.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: lead.ID, ChargeID: d.ChargeID, Currency: strings.ToLower(d.Currency)}); err != nil && !errors.Is(err, ledger.ErrConflict) {
		return ledger.Lead{}, err
	}
	return lead, nil
}

// heldDisputeReason answers a dispute held until its charge's payment counts (or, on basil,
// until a refund of the charge finds its lead by the customer).
func (s *Service) heldDisputeReason() string {
	why := "dispute on a charge whose payment has not counted: held, and applied when it counts"
	if s.customers == nil {
		why += " (on Stripe API 2025-03-31.basil and later, invoices name no charge: set STRIPE_API_KEY so refbridge can look the charge up)"
	}
	return why
}

// disputeLeadOrHold finds the disputed charge's lead, or, when there is none yet, holds the
// dispute for the payment that maps the charge (an invoice paid, its delivery delayed): the
// payment applies it, whatever the order the events arrive in. A dispute of a charge that is
// never paid by a referred lead (a customer nobody referred) waits there until its hold expires.
// held=true: res is the answer (the dispute held, or a hold that contradicts it).
func (s *Service) disputeLeadOrHold(ctx context.Context, d stripeevents.Dispute, at time.Time, won bool) (lead ledger.Lead, res Result, held bool, err error) {
	lead, err = s.disputeLead(ctx, d)
	if !errors.Is(err, ledger.ErrNotFound) || d.ChargeID == "" {
		return lead, Result{}, false, err
	}
	res, held, err = s.hold(ctx, "dispute#"+d.ID, ledger.ChargeHold{ChargeID: d.ChargeID, Currency: strings.ToLower(d.Currency),
		Disputes: map[string]ledger.HeldDispute{d.ID: {AmountMinor: d.Amount, Won: won, At: at}}})
	if held || err != nil {
		return ledger.Lead{}, res, held, err
	}
	lead, err = s.disputeLead(ctx, d) // the payment counted meanwhile
	return lead, Result{}, false, err
}

// hold keeps a refund or dispute of a charge mapped to no lead yet. held=false: the charge was
// mapped meanwhile (its payment counted), and the caller applies the reversal to its lead.
func (s *Service) hold(ctx context.Context, subject string, h ledger.ChargeHold) (Result, bool, error) {
	stored, err := s.ledger.HoldChargeReversal(ctx, h)
	switch {
	case errors.Is(err, ledger.ErrChargeMapped):
		return Result{}, false, nil
	case errors.Is(err, ledger.ErrConflict):
		return s.conflict(ctx, subject, 0, err), true, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("hold reversal of charge %s: %w", h.ChargeID, err)
	}
	out := Result{Outcome: Held, Reason: "refund of a charge whose payment has not counted: held, and applied when it counts"}
	if len(h.Disputes) > 0 {
		out.Reason = s.heldDisputeReason()
	}
	s.decide(ctx, subject, "hold", out, map[string]string{"charge": h.ChargeID, "invoice": h.InvoiceID,
		"refunded": itoa(stored.RefundedMinor), "held_decrease": itoa(stored.Decrease()), "currency": stored.Currency})
	return out, true, nil
}

func (s *Service) noDisputeLeadReason() string {
	if s.customers == nil {
		return "dispute on a charge refbridge cannot tie to a referred lead (on Stripe API 2025-03-31.basil and later, set STRIPE_API_KEY so it can look the charge up)"
	}
	return "dispute on a charge that belongs to no referred lead"
}

// leadOfCharge finds a refunded charge's lead by the charge mapping (made when its invoice
// counted), else by its customer, and then remembers the charge for the disputes that may follow
// (applying what was held for it). A charge whose invoice has not counted is not the lead's
// spend (yet): errPaymentNotCounted, and its refund is held for the payment. Basil-and-later
// charges do not name their invoice; their customer decides.
func (s *Service) leadOfCharge(ctx context.Context, ch stripeevents.Charge) (ledger.Lead, error) {
	lead, err := s.ledger.LeadByCharge(ctx, ch.ID)
	if err == nil || !errors.Is(err, ledger.ErrNotFound) || ch.CustomerID == "" {
		return lead, err
	}
	if ch.InvoiceID != "" {
		counted, err := s.ledger.InvoiceCounted(ctx, ch.InvoiceID)
		if err != nil {
			return ledger.Lead{}, err
		}
		if !counted {
			return ledger.Lead{}, fmt.Errorf("invoice %s: %w", ch.InvoiceID, errPaymentNotCounted)
		}
	}
	if lead, err = s.ledger.LeadByCustomer(ctx, ch.CustomerID); err != nil {
		return ledger.Lead{}, err
	}
	if _, err := s.ledger.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: lead.ID, ChargeID: ch.ID, Currency: strings.ToLower(ch.Currency)}); err != nil && !errors.Is(err, ledger.ErrConflict) {
		return ledger.Lead{}, err
	}
	return lead, nil
}

// errPaymentNotCounted: the refunded charge's invoice has not counted (yet): its refund is held
// for the payment, which may still come (Stripe retries a failed delivery for days, and delivers
// in no guaranteed order), or never, for a customer nobody referred.
var errPaymentNotCounted = fmt.Errorf("payment not counted yet: %w", ledger.ErrNotFound)

// reverseIfBelow unqualifies a lead whose net paid amount fell below the threshold, unless every
// reward its qualification backs (the referrer's, the lead's) is settled and one of them was
// issued: refbridge never claws money back, it records that reversal for operators instead.
//
// The sweep issues rewards meanwhile, so the order matters. The ledger reversal comes first, on
// the generation that was read (Reverse refuses a newer one): from that moment the sweep can
// begin no issue on this qualification (it begins them with BeginIntentIfStanding). Only then
// are the rewards it backs read, from the set Reverse returns (complete up to the reversal), and
// a reward counts as issued before the reversal if it is recorded issued or its issue intent is
// pending or done: that issue began while the qualification stood, and the sweep finishes it.
// RF is unqualified last, through its intent. A failure there (or a crash) leaves the
// qualification reversed and its unqualify intent not done; a redelivery finds it so and
// finishes the reversal.
func (s *Service) reverseIfBelow(ctx context.Context, lead ledger.Lead, currency, subject, why string) (Result, error) {
	out := Result{Outcome: Counted, LeadID: lead.ID}
	q, err := s.ledger.LatestQualification(ctx, lead.ID)
	if errors.Is(err, ledger.ErrNotFound) {
		out.Reason = why + " counted; the lead is not qualified"
		return out, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("reverse lead %d: %w", lead.ID, err)
	}
	if !q.Standing() {
		unfinished, err := s.reversalUnfinished(ctx, q)
		if err != nil {
			return Result{}, err
		}
		if !unfinished {
			out.Reason = why + " counted; the lead is not qualified"
			return out, nil
		}
	}
	net, min, err := s.netAndMin(ctx, lead.ID, currency)
	if err != nil {
		return Result{}, err
	}
	inputs := map[string]string{"lead": itoa(lead.ID), "net": itoa(net), "threshold": itoa(min), "currency": currency}
	if still, err := s.meetsAnyThreshold(ctx, lead.ID); err != nil {
		return Result{}, err
	} else if still != "" {
		out.Reason = fmt.Sprintf("%s counted; net paid in %s still meets its threshold", why, still)
		s.decide(ctx, subject, "reversal", out, inputs)
		return out, nil
	}
	reason := fmt.Sprintf("%s: net paid %d %s below the threshold %d", why, net, currency, min)
	if s.set.DryRun {
		// Nothing is recorded: the rewards as they are now say what a real run would do.
		issued, unsettled, err := s.backed(ctx, q)
		if err != nil {
			return Result{}, err
		}
		if len(issued) > 0 && len(unsettled) == 0 {
			return s.afterIssue(ctx, lead.ID, subject, why, issued, inputs), nil
		}
		s.log.InfoContext(ctx, "dry run: would call PUT /users/qualification", "lead", lead.ID, "qualified", false)
		out.Reason = "dry run: would unqualify the lead (" + reason + ")"
		s.decide(ctx, subject, "reversal", Result{Outcome: Unqualified, Reason: out.Reason}, inputs)
		return out, nil
	}
	if q.Standing() {
		// Refused when another delivery reversed this generation since the read (and a won
		// dispute may have qualified the next): the sender's retry reads again, and finds it.
		if q, err = s.ledger.Reverse(ctx, q.Ref(), s.now(), reason); err != nil {
			return Result{}, fmt.Errorf("unqualify lead %d: record: %w", lead.ID, err)
		}
	}
	issued, unsettled, err := s.backed(ctx, q)
	if err != nil {
		return Result{}, err
	}
	if len(issued) > 0 {
		if len(unsettled) == 0 {
			return s.afterIssue(ctx, lead.ID, subject, why, issued, inputs), nil
		}
		s.log.WarnContext(ctx, "reversal after a reward was issued", "lead", lead.ID, "issued", issued, "still_due", unsettled, "metric", "reversal_after_issue")
		inputs["already_issued"] = fmt.Sprint(issued)
		reason += fmt.Sprintf("; %d reward(s) already issued are not clawed back", len(issued))
	}
	if err := s.unqualify(ctx, lead.ID, q.Seq, subject); err != nil {
		return Result{}, err
	}
	out.Outcome, out.Reason = Unqualified, reason
	s.decide(ctx, subject, "reversal", out, inputs)
	return out, nil
}

// afterIssue answers a reversal that came after every reward of the qualification was settled,
// some issued: it is recorded (the decision, a warning counted as reversal_after_issue), nothing
// is clawed back, and RF is left as it is. The lead stays qualified there (only the ledger
// records the reversal), which is what RF's issued reward stands for; a payment that brings
// the lead back over the threshold then qualifies it again in the ledger, its RF call a no-op.
func (s *Service) afterIssue(ctx context.Context, leadID int64, subject, why string, issued []int64, inputs map[string]string) Result {
	s.log.WarnContext(ctx, "reversal after a reward was issued", "lead", leadID, "issued", issued, "still_due", []int64{}, "metric", "reversal_after_issue")
	out := Result{Outcome: ReversedAfterIssue, LeadID: leadID,
		Reason: why + ": the reward was already issued; reversal recorded, nothing clawed back"}
	s.decide(ctx, subject, "reversal", out, inputs)
	return out
}

// reversalUnfinished reports whether a reversed qualification still needs RF unqualified: its
// unqualify intent is pending or failed (RF or a crash interrupted it), or was never begun (a
// crash right after the ledger reversal, or a reversal recorded after issue): the rewards it
// backs, as they are now, decide again.
func (s *Service) reversalUnfinished(ctx context.Context, q ledger.Qualification) (bool, error) {
	in, err := s.ledger.IntentOf(ctx, ledger.IntentUnqualify, ledger.QualificationTarget(q.LeadID, q.Seq))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reverse lead %d: unqualify intent: %w", q.LeadID, err)
	}
	return in.Status != ledger.IntentDone, nil
}

// backed sorts the due rewards a qualification backs into those issued before its reversal
// (recorded issued, or an issue intent begun: pending or done) and those still due; canceled
// ones are neither.
func (s *Service) backed(ctx context.Context, q ledger.Qualification) (issued, unsettled []int64, err error) {
	for _, id := range q.MatchedDueRewardIDs {
		r, err := s.ledger.DueRewardRecord(ctx, id)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return nil, nil, fmt.Errorf("reverse lead %d: reward %d: %w", q.LeadID, id, err)
		}
		switch {
		case err == nil && r.State == ledger.RewardIssued:
			issued = append(issued, id)
			continue
		case err == nil && r.State == ledger.RewardCanceled:
			continue
		}
		in, err := s.ledger.IntentOf(ctx, ledger.IntentIssue, ledger.DueRewardTarget(id))
		switch {
		case err == nil && (in.Status == ledger.IntentPending || in.Status == ledger.IntentDone):
			issued = append(issued, id) // begun while the qualification stood: the sweep finishes it
		case err == nil || errors.Is(err, ledger.ErrNotFound):
			unsettled = append(unsettled, id) // the sweep cancels it: it can no longer begin an issue
		default:
			return nil, nil, fmt.Errorf("reverse lead %d: issue intent of reward %d: %w", q.LeadID, id, err)
		}
	}
	return issued, unsettled, nil
}

// unqualify sets the lead pending in RF once for qualification seq: intent → call → confirm.
func (s *Service) unqualify(ctx context.Context, leadID, seq int64, subject string) error {
	target := ledger.QualificationTarget(leadID, seq)
	in, err := s.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentUnqualify, Target: target, Ref: subject})
	if errors.Is(err, ledger.ErrIntentPending) {
		// An earlier attempt may have reached RF: read RF's state before calling again.
		if done, rerr := s.rfQualified(ctx, leadID, false); rerr != nil {
			return fmt.Errorf("unqualify lead %d: reconcile: %w", leadID, rerr)
		} else if done {
			err = ledger.ErrIntentDone
			if _, ferr := s.ledger.FinishIntent(ctx, ledger.IntentUnqualify, target, ledger.IntentDone, ""); ferr != nil {
				return fmt.Errorf("unqualify lead %d: confirm intent: %w", leadID, ferr)
			}
		} else if err = s.takeOverUnqualify(ctx, leadID, target, in); err != nil {
			return err
		}
	}
	switch {
	case errors.Is(err, ledger.ErrIntentDone):
		return nil
	case err != nil:
		return fmt.Errorf("unqualify lead %d: intent: %w", leadID, err)
	}
	if _, err := s.setQualification(ctx, leadID, false); err != nil && !rf.IsNotFound(err) {
		if _, ferr := s.ledger.FinishIntent(ctx, ledger.IntentUnqualify, target, ledger.IntentFailed, err.Error()); ferr != nil {
			s.log.WarnContext(ctx, "could not record a failed unqualification", "lead", leadID, "error", ferr.Error())
		}
		return fmt.Errorf("unqualify lead %d: %w", leadID, err)
	}
	if _, err := s.ledger.FinishIntent(ctx, ledger.IntentUnqualify, target, ledger.IntentDone, ""); err != nil {
		return fmt.Errorf("unqualify lead %d: confirm intent: %w", leadID, err)
	}
	return nil
}

// ErrUnqualifyInProgress means another delivery is unqualifying the same lead right now (a
// refund and the payment whose qualification it raced, or two reversals of one charge): its
// attempt is younger than unqualifyStaleAfter and RF does not show it done yet. The caller
// answers 503; the retry finds the reversal finished, or finishes one that died.
var ErrUnqualifyInProgress = errors.New("another delivery is unqualifying the same lead; retry later")

// defaultStateCallWithin bounds an attempt's PUT /users/qualification, its retries and its wait
// for a rate-limit token included, whichever function runs it (a webhook, whose Lambda timeout
// is 30 s, or the sweep's unmatched retry, whose timeout may be 15 minutes): no attempt sends
// the call later than this after it began (Settings.StateCallWithin).
const defaultStateCallWithin = 30 * time.Second

func (s *Service) stateCallWithin() time.Duration {
	if s.set.StateCallWithin > 0 {
		return s.set.StateCallWithin
	}
	return defaultStateCallWithin
}

// unqualifyStaleAfter is how old a pending unqualify attempt must be before another delivery,
// finding RF still qualified, presumes it died and calls RF itself: a live one is still on its
// way there, and a second PUT would be a second effect of one reversal. An attempt sends its
// call within stateCallWithin of its begin, and 5 s more let a call it sent land; so a dead
// attempt blocks the retries no longer than that, and a live one is never taken over.
func (s *Service) unqualifyStaleAfter() time.Duration { return s.stateCallWithin() + 5*time.Second }

// setQualification sets the lead's qualified state in RF within stateCallWithin.
func (s *Service) setQualification(ctx context.Context, leadID int64, qualified bool) (rf.User, error) {
	ctx, cancel := context.WithTimeout(ctx, s.stateCallWithin())
	defer cancel()
	return s.rf.SetQualification(ctx, rf.UserRef{ID: leadID}, qualified)
}

// takeOverUnqualify decides, for a pending unqualify intent (in, as BeginIntent refused it)
// whose lead RF still shows qualified, whether this delivery calls RF: only for an attempt old
// enough to have died, and then for exactly one of the deliveries that find it so.
func (s *Service) takeOverUnqualify(ctx context.Context, leadID int64, target string, in ledger.Intent) error {
	stale := s.now().Add(-s.unqualifyStaleAfter())
	if !in.PreviousAttemptAt.Before(stale) {
		return fmt.Errorf("unqualify lead %d: attempt %d began at %s: %w", leadID, in.Attempts,
			in.PreviousAttemptAt.UTC().Format(time.RFC3339), ErrUnqualifyInProgress)
	}
	if _, err := s.ledger.TakeOverIntent(ctx, ledger.IntentUnqualify, target, in.Attempts, stale); errors.Is(err, ledger.ErrConflict) {
		return fmt.Errorf("unqualify lead %d: %w", leadID, ErrUnqualifyInProgress)
	} else if err != nil {
		return fmt.Errorf("unqualify lead %d: take over the unqualify intent: %w", leadID, err)
	}
	return nil
}

// restoreIfAbove qualifies again a lead whose qualification was reversed, once a won dispute
// brings its net paid amount back to the threshold.
func (s *Service) restoreIfAbove(ctx context.Context, lead ledger.Lead, currency, subject string) (Result, error) {
	out := Result{Outcome: Counted, LeadID: lead.ID}
	latest, err := s.ledger.LatestQualification(ctx, lead.ID)
	found := err == nil
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		// Never qualified: the payment counted while the dispute held its amount back (the
		// dispute was processed first), so the win is what brings the net to the threshold,
		// as the payment would have in Stripe's order.
	case err != nil:
		return Result{}, fmt.Errorf("restore lead %d: %w", lead.ID, err)
	case latest.Standing():
		out.Reason = "dispute won; the lead is still qualified"
		return out, nil
	}
	net, min, err := s.netAndMin(ctx, lead.ID, currency)
	if err != nil {
		return Result{}, err
	}
	inputs := map[string]string{"lead": itoa(lead.ID), "net": itoa(net), "threshold": itoa(min), "currency": currency}
	if net < min {
		out.Reason = fmt.Sprintf("dispute won; net paid %d %s is still below the threshold", net, currency)
		if !found {
			out.Reason = fmt.Sprintf("dispute won; the lead was never qualified, and net paid %d %s is below the threshold", net, currency)
		}
		s.decide(ctx, subject, "restore", out, inputs)
		return out, nil
	}
	res, err := s.qualify(ctx, lead, ledger.NextQualificationSeq(latest, found), subject, latest.InvoiceID,
		Result{Outcome: Counted, LeadID: lead.ID, Rule: latest.Rule}, inputs)
	if err == nil && res.Outcome == Qualified {
		res.Outcome, res.Reason = Restored, "dispute won: lead qualified again"
		if !found {
			res.Outcome, res.Reason = Qualified, "dispute won: net paid reaches the threshold"
		}
	}
	return res, err
}

// meetsAnyThreshold returns a currency in which the lead's net paid amount still meets its
// threshold ("" if none): currencies are never converted, and a qualification earned in one is
// not undone by a refund in another.
func (s *Service) meetsAnyThreshold(ctx context.Context, leadID int64) (string, error) {
	sp, err := s.ledger.SpendOf(ctx, leadID)
	if err != nil {
		return "", fmt.Errorf("spend of lead %d: %w", leadID, err)
	}
	return s.meetsIn(&sp), nil
}

// meetsAnyOf reports whether spend meets the threshold of any of its currencies.
func (s *Service) meetsAnyOf(spend *ledger.Spend) bool { return s.meetsIn(spend) != "" }

func (s *Service) meetsIn(sp *ledger.Spend) string {
	for cur, net := range sp.Net {
		if min, ok := s.set.Threshold.For(cur); ok && net >= min {
			return cur
		}
	}
	return ""
}

// conflict answers a record that contradicts an earlier one (the same Stripe object counted for
// another lead or currency): a retry cannot fix it, so it is logged and decided, not retried.
func (s *Service) conflict(ctx context.Context, subject string, leadID int64, err error) Result {
	s.log.WarnContext(ctx, "stripe object contradicts what was recorded before", "subject", subject, "lead", leadID, "error", err.Error())
	out := Result{Outcome: Ignored, Reason: "contradicts an earlier record of the same Stripe object; left for an operator", LeadID: leadID}
	s.decide(ctx, subject, "conflict", out, nil)
	return out
}

func (s *Service) netAndMin(ctx context.Context, leadID int64, currency string) (net, min int64, err error) {
	min, ok := s.set.Threshold.For(currency)
	if !ok {
		min = 1 // no threshold for the currency: only a fully reversed payment falls below
	}
	sp, err := s.ledger.SpendOf(ctx, leadID)
	if err != nil {
		return 0, 0, fmt.Errorf("spend of lead %d: %w", leadID, err)
	}
	return sp.Net[currency], min, nil
}
