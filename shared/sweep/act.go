package sweep

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
)

// ruleInProgress is the waiting rule of a reward whose earlier attempt is still recent.
const ruleInProgress = "in_progress"

// ruleRequalifying is the waiting rule of a reward whose cancel was not begun because its lead
// is qualified again, or being qualified: a later run moves it to the new qualification.
const ruleRequalifying = "requalifying"

// one records, matches, decides and acts on one due reward. createdAfter is when the last
// complete listing of the metric before this one started (zero: none), the lower bound of the
// reward's creation if this is its first sighting. seen says whether the sighting was recorded.
func (s *Sweeper) one(ctx context.Context, m rf.Metric, d rf.DueReward, createdAfter time.Time, sum *Summary) (seen bool, err error) {
	now := s.now()
	if createdAfter.After(now) {
		createdAfter = time.Time{} // a clock that went back: no bound rather than a wrong one
	}
	rec, err := s.Ledger.SeeDueReward(ctx, ledger.DueReward{ID: d.ID, RewardID: d.RewardID, RecipientID: d.RecipientID,
		Metric: string(m), FirstSeenAt: now, CreatedAfter: createdAfter})
	if err != nil {
		return false, fmt.Errorf("record due reward %d: %w", d.ID, err)
	}
	if rec.State == ledger.RewardIssued || rec.State == ledger.RewardCanceled {
		// Settled: never matched, never touched again.
		dec := Decide(Facts{Settled: true}, s.Rules, now)
		sum.Skipped++
		s.log(ctx, m, d, nil, dec, "")
		return true, nil
	}
	for range maxDecisions {
		again, err := s.decideAndAct(ctx, m, d, rec, now, sum)
		if !again {
			return true, err
		}
	}
	return true, fmt.Errorf("due reward %d: its qualification kept changing while the sweep decided", d.ID)
}

// maxDecisions bounds how often one reward is decided again in a run, after its qualification
// was reversed between the decision and the start of the issue.
const maxDecisions = 3

// decideAndAct matches the reward, decides and acts. again says the decision to issue was
// overtaken (the qualification was reversed before the issue could begin): nothing was done,
// and the caller decides again from a fresh read.
func (s *Sweeper) decideAndAct(ctx context.Context, m rf.Metric, d rf.DueReward, rec ledger.DueReward, now time.Time, sum *Summary) (again bool, err error) {
	q, err := s.qualification(ctx, rec)
	if err != nil {
		return false, err
	}
	facts := Facts{Metric: string(m), CanBeIssued: d.CanBeIssued, FirstSeenAt: rec.FirstSeenAt}
	if q != nil {
		facts.Qualification = &Qualification{At: q.At, ReversedAt: q.ReversedAt}
	}
	dec := Decide(facts, s.Rules, now)
	if dec.Action == Issue && s.Rules.MaxPerRecipient > 0 {
		// Only a reward about to be issued pays for the count.
		n, err := s.Ledger.IssuedInMonth(ctx, d.RecipientID, now)
		if err != nil {
			return false, fmt.Errorf("rewards issued this month to %d: %w", d.RecipientID, err)
		}
		facts.IssuedThisMonth = n
		dec = Decide(facts, s.Rules, now)
	}
	switch dec.Action {
	case Wait:
		sum.Waiting[dec.Rule]++
		s.log(ctx, m, d, q, dec, "")
	case Issue, Cancel:
		out, err := s.act(ctx, dec.Action, m, d, q)
		if errors.Is(err, ledger.ErrQualificationReversed) {
			s.log(ctx, m, d, q, dec, "not begun: the qualification was reversed meanwhile; decided again")
			return true, nil
		}
		s.log(ctx, m, d, q, dec, out.describe(err))
		if err != nil {
			return false, err
		}
		switch {
		case out == acted && dec.Action == Issue:
			sum.Issued++
		case out == acted:
			sum.Canceled++
		case out == dryRun && dec.Action == Issue:
			sum.WouldIssue++
		case out == dryRun:
			sum.WouldCancel++
		case out == alreadyDone:
			sum.Reconciled++
		case out == inProgress:
			sum.Waiting[ruleInProgress]++
		case out == requalifying:
			sum.Waiting[ruleRequalifying]++
		}
	}
	return false, nil
}

// clockSkew is the tolerance of every time comparison in matching: the sweep's, the webhooks'
// and DynamoDB's clocks may disagree a little, and RF applies a call a moment after it began.
const clockSkew = time.Minute

// qualification returns the qualification behind the reward (nil: none), matching the reward
// while it has none. RF's due rewards name only the recipient and the reward definition, so the
// match is inferred, by time and by slot:
//
//   - Time. The reward was created in (CreatedAfter, FirstSeenAt]: after the sweep's previous
//     complete listing of its metric started (it was not in it), and before the listing that
//     first saw it. The qualification was made in [EarliestAt, At]. Only a qualification whose
//     time overlaps the reward's (each bound widened by clockSkew) can have produced it. Without
//     the lower bound, a slot RF never fills (a referrer's join reward has no qualification; a
//     requalified lead whose reward was already issued gets no new one) stays free for ever, and
//     a much later reward of another lead would take it, with that old qualification's hold and
//     reversal. A reward first seen by the first sweep after installation has no lower bound
//     (CreatedAfter zero): it may take any older qualification.
//   - Slot. A qualification backs at most one due reward per recipient and reward definition,
//     so the referrer's and the lead's rewards of one qualification both stand on it, and two
//     rewards of one definition for one referrer need two qualifications.
//
// Of the candidates, the oldest (by At) whose slot is free takes it, skipping a reversed one
// whose reward moved on to the lead's later qualification (slotSpent); none → nil, and the reward
// is held from its first sighting. Unmatched rewards are tried again every run, so a
// qualification recorded late (an RF webhook delivered late) still takes the rewards it made.
//
// A matched reward (earlier, or just now) stands on its qualification, unless that was reversed
// and the same lead has qualified again with the slot free: RF keeps the one due reward when a
// lead is unqualified and qualified again, so the match moves to the new qualification (its
// hold counts from there) instead of the reward being canceled.
func (s *Sweeper) qualification(ctx context.Context, rec ledger.DueReward) (*ledger.Qualification, error) {
	qs, err := s.Ledger.QualificationsFor(ctx, rec.RecipientID)
	if err != nil {
		return nil, fmt.Errorf("qualifications for %d: %w", rec.RecipientID, err)
	}
	slot := ledger.RewardSlot{RecipientID: rec.RecipientID, RewardID: rec.RewardID}
	if !rec.Matched.IsZero() {
		return s.matched(ctx, rec, qs, slot)
	}
	if slot.RecipientID <= 0 || slot.RewardID <= 0 {
		// RF always names both; without them there is no slot to match, and issuing a reward
		// whose qualification may have been reversed is worse than leaving it for a person.
		return nil, fmt.Errorf("due reward %d: no recipient or reward definition (recipient %d, reward %d)", rec.ID, rec.RecipientID, rec.RewardID)
	}
	for i := range qs {
		if !couldHaveMade(qs[i], rec) {
			continue
		}
		if held := qs[i].Slots[rec.RewardID]; held != 0 && held != rec.ID {
			continue
		}
		if slotSpent(qs, i, rec.RewardID) {
			continue
		}
		if reserved, err := s.slotReserved(ctx, qs, i, rec.RewardID); err != nil {
			return nil, err
		} else if reserved {
			continue
		}
		err := s.Ledger.MatchDueReward(ctx, rec.ID, qs[i].Ref(), slot)
		if errors.Is(err, ledger.ErrConflict) {
			// The slot was taken meanwhile, or the reward was matched elsewhere: read it to tell.
			now, rerr := s.Ledger.DueRewardRecord(ctx, rec.ID)
			if rerr != nil {
				return nil, fmt.Errorf("due reward %d: %w", rec.ID, rerr)
			}
			if !now.Matched.IsZero() {
				return s.qualification(ctx, now)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("match due reward %d: %w", rec.ID, err)
		}
		// Matched now; as with a reward matched earlier, one on a reversed qualification
		// follows the lead's new one (its refund and won dispute came before the first sight).
		rec.Matched = qs[i].Ref()
		return s.matched(ctx, rec, qs, slot)
	}
	return nil, nil
}

// slotSpent reports whether the reversed qualification qs[i], whose slot for the reward
// definition is free, has made its reward of that definition all the same: a later
// qualification of the same lead holds one. RF makes a lead's reward of a definition again only
// once the earlier one was canceled (rfsim decision 9), so that reward is either the one qs[i]
// made, moved on when the lead qualified again (RematchDueReward frees the slot it leaves), or
// one made after qs[i]'s was canceled (which holds qs[i]'s slot, unless it was canceled before
// the sweep saw it). Either way qs[i] made no other, and another lead's reward taking the freed
// slot would be canceled for this lead's reversal.
func slotSpent(qs []ledger.Qualification, i int, rewardID int64) bool {
	q := qs[i]
	if q.Standing() {
		return false // the newest of its lead: nothing later
	}
	for _, later := range qs {
		if later.LeadID == q.LeadID && later.Seq > q.Seq && later.Slots[rewardID] != 0 {
			return true
		}
	}
	return false
}

// slotReserved reports whether the standing requalification qs[i], whose slot for the reward
// definition is free, will get no reward of its own in it: an earlier generation of the same
// lead holds one there that was not canceled. RF makes a lead's reward of a definition again
// only when the earlier one was canceled (rfsim decision 9), and the sweep never cancels it
// once the requalification has begun (BeginCancelIfNewest). A reward still due moves to qs[i]
// (RematchDueReward) when the sweep next meets it, which may be after a run that resumed past
// it from its checkpoint; an issued one leaves the slot empty. Another lead's reward taking the
// slot meanwhile would leave the moved reward due for ever, or be held and canceled for the
// wrong lead.
func (s *Sweeper) slotReserved(ctx context.Context, qs []ledger.Qualification, i int, rewardID int64) (bool, error) {
	q := qs[i]
	if !q.Standing() || q.Seq < 2 {
		return false, nil
	}
	for _, earlier := range qs {
		held := earlier.Slots[rewardID]
		if earlier.LeadID != q.LeadID || earlier.Seq >= q.Seq || held == 0 {
			continue
		}
		r, err := s.Ledger.DueRewardRecord(ctx, held)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("due reward %d of qualification %d/%d: %w", held, earlier.LeadID, earlier.Seq, err)
		}
		if r.State != ledger.RewardCanceled {
			return true, nil
		}
	}
	return false, nil
}

// couldHaveMade reports whether qualification q's possible time [EarliestAt, At] overlaps the
// reward's possible creation (CreatedAfter, FirstSeenAt], within clockSkew either side.
func couldHaveMade(q ledger.Qualification, r ledger.DueReward) bool {
	earliest := q.EarliestAt
	if earliest.IsZero() {
		earliest = q.At
	}
	if earliest.After(r.FirstSeenAt.Add(clockSkew)) {
		return false // made after the reward was first seen
	}
	return r.CreatedAfter.IsZero() || !q.At.Before(r.CreatedAfter.Add(-clockSkew))
}

// matched finds the qualification a matched reward stands on, moving the match to the lead's
// new qualification when the one it stands on was reversed (see qualification).
func (s *Sweeper) matched(ctx context.Context, rec ledger.DueReward, qs []ledger.Qualification, slot ledger.RewardSlot) (*ledger.Qualification, error) {
	at := slices.IndexFunc(qs, func(q ledger.Qualification) bool { return q.Ref() == rec.Matched })
	if at < 0 {
		// Never treat a matched reward as one with nothing behind it: that would issue a
		// reward whose qualification was reversed.
		return nil, fmt.Errorf("due reward %d: its qualification %d/%d is not among the recipient's", rec.ID, rec.Matched.LeadID, rec.Matched.Seq)
	}
	q := &qs[at]
	if q.Standing() {
		return q, nil
	}
	for i := range qs {
		to := &qs[i]
		if to.LeadID != q.LeadID || to.Seq <= q.Seq || !to.Standing() {
			continue
		}
		if held := to.Slots[rec.RewardID]; held != 0 && held != rec.ID {
			continue // the new qualification has a reward of this definition already
		}
		err := s.Ledger.RematchDueReward(ctx, rec.ID, q.Ref(), to.Ref(), slot)
		if errors.Is(err, ledger.ErrConflict) {
			break // taken meanwhile: the reward stays on the reversed qualification
		}
		if err != nil {
			return nil, fmt.Errorf("move due reward %d to qualification %d/%d: %w", rec.ID, to.LeadID, to.Seq, err)
		}
		return to, nil
	}
	return q, nil
}

// outcome is what act did.
type outcome int

const (
	acted        outcome = iota + 1 // called RF, and confirmed
	alreadyDone                     // an earlier attempt had done it: confirmed without a call
	inProgress                      // an earlier attempt is recent: left alone
	dryRun                          // nothing called
	requalifying                    // a cancel not made: the lead is qualified again, or being qualified
)

// describe is the result the decision log records beside the decision.
func (o outcome) describe(err error) string {
	switch {
	case err != nil:
		return "failed: " + err.Error()
	case o == acted:
		return "done"
	case o == alreadyDone:
		return "an earlier attempt had done it; confirmed without a new call"
	case o == inProgress:
		return "an earlier attempt is still recent; left for a later run"
	case o == dryRun:
		return "dry run: not called"
	case o == requalifying:
		return "not canceled: the lead is qualified again, or being qualified; the reward follows the new qualification"
	}
	return ""
}

// act issues or cancels once: intent → call → confirm. An issue of a reward with a
// qualification behind it is begun only if that qualification still stands, atomically with
// the intent (BeginIntentIfStanding): a refund's reversal flow reverses the qualification before
// it reads the rewards' intents, so either it sees this issue as begun, or the issue is refused
// with ledger.ErrQualificationReversed and nothing is called.
//
// A cancel is begun only while its reversed qualification is the lead's newest and no qualify
// of the next generation has begun (BeginCancelIfNewest), and no qualify can begin until the
// cancel is finished. RF makes no new reward when it qualifies again a lead whose reward is
// still due, so a cancel landing in RF after a renewal or a won dispute qualified the lead again
// would take the lead's only reward away for ever. Either the cancel reaches RF first (and RF
// makes a new reward at the requalification), or it is not made (requalifying) and the reward
// follows the new qualification on a later run.
func (s *Sweeper) act(ctx context.Context, a Action, m rf.Metric, d rf.DueReward, q *ledger.Qualification) (outcome, error) {
	kind, call := ledger.IntentIssue, s.RF.IssueReward
	if a == Cancel {
		kind, call = ledger.IntentCancel, s.RF.CancelReward
	}
	if s.DryRun {
		s.logger().InfoContext(ctx, "dry run: would "+string(a)+" the reward", "reward", d.ID, "metric", string(m))
		return dryRun, nil
	}
	target := ledger.DueRewardTarget(d.ID)
	intent := ledger.Intent{Kind: kind, Target: target, Ref: "sweep"}
	var in ledger.Intent
	var err error
	switch {
	case a == Issue && q != nil:
		in, err = s.Ledger.BeginIntentIfStanding(ctx, intent, q.Ref())
	case a == Cancel && q != nil:
		in, err = s.Ledger.BeginCancelIfNewest(ctx, intent, q.Ref())
		if err == nil {
			if again, rerr := s.requalifiedInRF(ctx, q); rerr != nil || again {
				return s.abandonCancel(ctx, d.ID, again, rerr)
			}
		}
	default:
		in, err = s.Ledger.BeginIntent(ctx, intent)
	}
	switch {
	case errors.Is(err, ledger.ErrQualificationReversed):
		return 0, err
	case errors.Is(err, ledger.ErrQualificationSuperseded):
		return requalifying, nil
	case errors.Is(err, ledger.ErrIntentDone):
		// Confirmed in RF, but the settlement was not recorded (a crash between the two).
		return alreadyDone, s.settle(ctx, kind, d.ID, d.RecipientID, "")
	case errors.Is(err, ledger.ErrIntentPending):
		// An earlier attempt may have reached RF: read RF before anything else.
		r, found, rerr := s.settledInRF(ctx, d.ID, m)
		if rerr != nil {
			return 0, rerr
		}
		if found {
			return alreadyDone, s.confirm(ctx, kind, r)
		}
		// RF still lists it as due: take the attempt over if it is stale, else leave it.
		_, err := s.Ledger.TakeOverIntent(ctx, kind, target, in.Attempts, s.now().Add(-s.staleAfter()))
		if errors.Is(err, ledger.ErrConflict) {
			return inProgress, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s reward %d: take over the earlier attempt: %w", a, d.ID, err)
		}
		if a == Cancel && q != nil {
			// The crashed attempt did not reach RF (RF lists the reward due, and the attempt is
			// stale): it may have died giving the cancel up, so it is decided as a new one.
			if again, rerr := s.requalifiedInRF(ctx, q); rerr != nil || again {
				return s.abandonCancel(ctx, d.ID, again, rerr)
			}
		}
	case err != nil:
		return 0, fmt.Errorf("%s reward %d: intent: %w", a, d.ID, err)
	}
	r, err := call(ctx, d.ID)
	if err != nil {
		if !rf.IsOutcomeUnknown(err) { // known not applied: a later run may try again
			if ferr := s.giveUp(ctx, kind, target, err.Error()); ferr != nil {
				return 0, errors.Join(err, ferr)
			}
		}
		// Unknown: the intent stays pending, and the next run reads RF before anything else.
		return 0, fmt.Errorf("%s reward %d: %w", a, d.ID, err)
	}
	if r.RecipientID == 0 {
		r.RecipientID = d.RecipientID
	}
	r.ID = d.ID
	return acted, s.confirm(ctx, kind, r)
}

// requalifiedInRF reports, for a cancel just begun on the reversed qualification q, whether the
// lead may be qualified again in RF all the same: a qualify of the next generation failed (that
// is what let the cancel begin), but a failed PUT /users/qualification may have been applied
// (an answer lost after RF processed it). No qualify can begin now that the cancel has, so RF is
// read once: a lead qualified there keeps its due reward (its renewal's qualify, retried, records
// the new generation, and the reward follows it). A failure that recent may still be in flight,
// so it counts as qualified until clockSkew has passed.
func (s *Sweeper) requalifiedInRF(ctx context.Context, q *ledger.Qualification) (bool, error) {
	next := ledger.QualificationTarget(q.LeadID, q.Seq+1)
	qi, err := s.Ledger.IntentOf(ctx, ledger.IntentQualify, next)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("qualify intent of lead %d, generation %d: %w", q.LeadID, q.Seq+1, err)
	case s.now().Sub(qi.FinishedAt) < clockSkew:
		return true, nil
	}
	u, err := s.RF.GetUser(ctx, strconv.FormatInt(q.LeadID, 10))
	if rf.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lead %d: %w", q.LeadID, err)
	}
	return u.Qualified(), nil
}

// abandonCancel gives up a cancel just begun, before any call: requalified says the lead may be
// qualified again in RF (requalifying), else err says why RF could not be read. Its intent is
// finished failed, which lets the lead be qualified again and a later run begin the cancel
// again.
func (s *Sweeper) abandonCancel(ctx context.Context, id int64, requalified bool, err error) (outcome, error) {
	why := "the lead may be qualified again in Referral Factory"
	if err != nil {
		why = err.Error()
	}
	if ferr := s.giveUp(ctx, ledger.IntentCancel, ledger.DueRewardTarget(id), "not called: "+why); ferr != nil {
		return 0, errors.Join(err, fmt.Errorf("cancel reward %d: give up: %w", id, ferr))
	}
	if err != nil {
		return 0, fmt.Errorf("cancel reward %d: %w", id, err)
	}
	return requalifying, nil
}

// giveUp finishes failed an attempt known not to have reached RF, so that the next run begins it
// again at once. It writes even when the run's time has just run out: that is the commonest case
// (the call was cut off waiting for a rate-limit token or a connection at the deadline), and an
// intent left pending instead looks like a call that may still land, which no run takes over
// before StaleAfter (16 minutes) has passed.
func (s *Sweeper) giveUp(ctx context.Context, kind ledger.IntentKind, target, why string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), confirmTimeout)
	defer cancel()
	_, err := s.Ledger.FinishIntent(ctx, kind, target, ledger.IntentFailed, why)
	return err
}

// confirm records an effect RF applied: the reward settled, then the intent done. In that
// order: a settled reward is never acted on again, and an intent left pending by a failure in
// between is reconciled by the next run. It writes even when the run's time has just run out:
// the effect happened, and recording it is what keeps it from happening twice.
func (s *Sweeper) confirm(ctx context.Context, kind ledger.IntentKind, r rf.IssuedReward) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), confirmTimeout)
	defer cancel()
	if err := s.settle(ctx, kind, r.ID, r.RecipientID, r.Status); err != nil {
		return err
	}
	if _, err := s.Ledger.FinishIntent(ctx, kind, ledger.DueRewardTarget(r.ID), ledger.IntentDone, ""); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("confirm %s of reward %d: %w", kind, r.ID, err)
	}
	return nil
}

// confirmTimeout bounds the writes that record an effect RF already applied.
const confirmTimeout = 5 * time.Second

// settle records the reward issued or canceled, as RF's status says when it is known.
func (s *Sweeper) settle(ctx context.Context, kind ledger.IntentKind, id, recipientID int64, rfStatus string) error {
	state := ledger.RewardIssued
	if rfStatus == rf.StatusCanceled || (rfStatus == "" && kind == ledger.IntentCancel) {
		state = ledger.RewardCanceled
	}
	rec, err := s.Ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, RecipientID: recipientID, State: state,
		At: s.now(), By: ledger.SettledBySweep})
	if errors.Is(err, ledger.ErrAlreadySettled) {
		if rec.State != state {
			// The ledger keeps its first record; RF did the other thing. Someone should look.
			s.logger().WarnContext(ctx, "reward recorded settled differently from what the sweep just did in Referral Factory",
				"reward", id, "recorded", string(rec.State), "recorded_by", rec.SettledBy, "done", string(state))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("record reward %d %s: %w", id, state, err)
	}
	return nil
}

// reconcile settles the attempts a crashed run left pending whose effect RF shows: an issue or
// cancel that RF applied is confirmed, never repeated. Those RF does not show stay pending; the
// pass takes them over when it meets the reward, if RF still lists it as due.
func (s *Sweeper) reconcile(ctx context.Context, b budget, sum *Summary) error {
	for _, kind := range []ledger.IntentKind{ledger.IntentIssue, ledger.IntentCancel} {
		pending, err := s.Ledger.PendingIntents(ctx, kind)
		if err != nil {
			return fmt.Errorf("pending %s intents: %w", kind, err)
		}
		for _, in := range pending {
			if b.short() {
				return nil
			}
			id, err := strconv.ParseInt(in.Target, 10, 64)
			if err != nil {
				s.logger().WarnContext(ctx, "sweep intent with an unreadable target", "kind", string(kind), "target", in.Target)
				continue
			}
			var metric rf.Metric
			if rec, err := s.Ledger.DueRewardRecord(ctx, id); err == nil {
				metric = rf.Metric(rec.Metric)
			}
			r, found, err := s.settledInRF(ctx, id, metric)
			if err == nil && found {
				err = s.confirm(ctx, kind, r)
			}
			switch {
			case err != nil && outOfTime(ctx, err):
				return nil
			case err != nil:
				// One intent RF will not tell about must not stop the others, nor the pass.
				sum.Failed++
				s.logger().WarnContext(ctx, "sweep could not reconcile an earlier attempt", "kind", string(kind), "reward", id, "error", err.Error())
			case found:
				sum.Reconciled++
			}
		}
	}
	if err := s.confirmCreatedLeads(ctx, b, sum); err != nil {
		return err
	}
	return s.confirmRecordedQualifications(ctx, b, sum)
}

// confirmCreatedLeads finishes the signups' create_lead intents whose lead the ledger already
// holds: the signup stored the lead, then died before its confirm, and its later deliveries find
// the lead and never come back to the intent. Those the ledger does not show are left to the
// signup's next delivery, which reconciles them by searching RF.
func (s *Sweeper) confirmCreatedLeads(ctx context.Context, b budget, sum *Summary) error {
	pending, err := s.Ledger.PendingIntents(ctx, ledger.IntentCreateLead)
	if err != nil {
		return fmt.Errorf("pending %s intents: %w", ledger.IntentCreateLead, err)
	}
	for _, in := range pending {
		if b.short() {
			return nil
		}
		campaign, hash, ok := strings.Cut(in.Target, "#")
		cid, err := strconv.ParseInt(campaign, 10, 64)
		if !ok || err != nil || hash == "" {
			s.logger().WarnContext(ctx, "sweep intent with an unreadable target", "kind", string(ledger.IntentCreateLead), "target", in.Target)
			continue
		}
		leads, err := s.Ledger.LeadsByEmail(ctx, hash)
		if err != nil {
			return fmt.Errorf("leads of a pending signup: %w", err)
		}
		for _, l := range leads {
			if l.CampaignID != cid {
				continue
			}
			if _, err := s.Ledger.FinishIntent(ctx, ledger.IntentCreateLead, in.Target, ledger.IntentDone, ""); err != nil && !errors.Is(err, ledger.ErrNotFound) {
				return fmt.Errorf("confirm the signup of lead %d: %w", l.ID, err)
			}
			sum.Reconciled++
			break
		}
	}
	return nil
}

// settledInRF looks a reward up in RF's issued list of its metric, or of every metric when the
// metric is not known (issued and canceled rewards both move there, keeping their id).
func (s *Sweeper) settledInRF(ctx context.Context, id int64, m rf.Metric) (rf.IssuedReward, bool, error) {
	metrics := rf.AllMetrics()
	if m != "" {
		metrics = []rf.Metric{m}
	}
	f := rf.Eq("id", id)
	for _, m := range metrics {
		rs, err := s.RF.IssuedRewards(m, rf.ListOptions{Filter: &f}).Collect(ctx)
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

// log records the decision, its reason and inputs, and what acting on it did.
func (s *Sweeper) log(ctx context.Context, m rf.Metric, d rf.DueReward, q *ledger.Qualification, dec Decision, result string) {
	in := map[string]string{"metric": string(m), "recipient_id": strconv.FormatInt(d.RecipientID, 10),
		"can_be_issued": strconv.FormatBool(d.CanBeIssued)}
	if q != nil {
		in["qualification"] = fmt.Sprintf("%d/%d", q.LeadID, q.Seq)
	}
	if !dec.Until.IsZero() {
		in["until"] = dec.Until.UTC().Format(time.RFC3339)
	}
	if result != "" {
		in["result"] = result
	}
	err := s.Ledger.LogDecision(ctx, ledger.Decision{Subject: "due#" + strconv.FormatInt(d.ID, 10), At: s.now(),
		Rule: dec.Rule, Outcome: string(dec.Action), Reason: dec.Reason, Inputs: in})
	if err != nil {
		s.logger().WarnContext(ctx, "decision log write failed", "reward", d.ID, "error", err.Error())
	}
	s.logger().DebugContext(ctx, "sweep decision", "reward", d.ID, "action", string(dec.Action), "rule", dec.Rule, "reason", dec.Reason, "result", result)
}
