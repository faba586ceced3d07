package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
)

// latestQual reads a lead's newest qualification: one consistent Query, newest first, limit 1.
// Only the newest can stand: a new one is created only when the newest is reversed, and a
// reversal is final.
func (d *Dynamo) latestQual(ctx context.Context, leadID int64) (Qualification, bool, error) {
	items, err := d.queryPartition(ctx, qualPK(leadID), qualSKPrefix, false, 1)
	if err != nil || len(items) == 0 {
		return Qualification{}, false, err
	}
	q, err := decodeItem(items[0], qualItem.qualification)
	return q, err == nil, err
}

// Qualify implements Store: one consistent Query for the newest qualification, then one
// TransactWriteItems putting qualification Seq+1 (condition: it does not exist yet, so of two
// racing writers only one creates it) and its index items under each recipient.
func (d *Dynamo) Qualify(ctx context.Context, q Qualification) (Qualification, error) {
	if err := q.validate(); err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualify: %w", err)
	}
	if q.At.IsZero() {
		q.At = d.cfg.clock()
	}
	q.At = utc(q.At)
	q.ReversedAt, q.ReversalReason, q.MatchedDueRewardID = time.Time{}, "", 0
	for range maxRaces {
		latest, found, err := d.latestQual(ctx, q.LeadID)
		if err != nil {
			return Qualification{}, fmt.Errorf("ledger: qualify lead %d: read: %w", q.LeadID, err)
		}
		if found && latest.Standing() {
			return latest, fmt.Errorf("ledger: qualify lead %d: qualification %d at %s: %w",
				q.LeadID, latest.Seq, formatTS(latest.At), ErrAlreadyQualified)
		}
		q.Seq = NextQualificationSeq(latest, found)
		t := &txn{}
		cond := notExists()
		d.txPut(t, newQualItem(qualKey(q.LeadID, q.Seq), typeQualification, q), &cond)
		for _, r := range q.recipients() {
			d.txPut(t, newQualItem(recipientKey(r, q), typeQualIndex, q), nil)
		}
		err = d.transact(ctx, t)
		if err == nil {
			return q, nil
		}
		reasons, ok := cancellation(err)
		if _, lost := failedAt(reasons, 0); !ok || !lost {
			return Qualification{}, fmt.Errorf("ledger: qualify lead %d: %w", q.LeadID, err)
		}
		// Another writer created this Seq first: read again, it normally stands now.
	}
	return Qualification{}, fmt.Errorf("ledger: qualify lead %d: %w", q.LeadID, errContention)
}

// Reverse implements Store: one consistent Query, then one TransactWriteItems marking the
// qualification and its index items reversed (condition: not reversed yet).
func (d *Dynamo) Reverse(ctx context.Context, leadID int64, at time.Time, reason string) (Qualification, error) {
	if at.IsZero() {
		at = d.cfg.clock()
	}
	at = utc(at)
	for range maxRaces {
		q, found, err := d.latestQual(ctx, leadID)
		if err != nil {
			return Qualification{}, fmt.Errorf("ledger: reverse lead %d: read: %w", leadID, err)
		}
		if !found || !q.Standing() {
			return Qualification{}, fmt.Errorf("ledger: reverse lead %d: no standing qualification: %w", leadID, ErrNotFound)
		}
		upd := set("reversed_at", formatTS(at)).
			Set(expression.Name("reversal_reason"), expression.Value(reason)).
			Set(expression.Name("standing"), expression.Value(false))
		t := &txn{}
		cond := exists().And(expression.AttributeNotExists(expression.Name("reversed_at")))
		d.txUpdate(t, qualKey(leadID, q.Seq), upd, &cond)
		present := exists()
		for _, r := range q.recipients() {
			d.txUpdate(t, recipientKey(r, q), upd, &present)
		}
		err = d.transact(ctx, t)
		if err == nil {
			q.ReversedAt, q.ReversalReason = at, reason
			return q, nil
		}
		reasons, ok := cancellation(err)
		if _, lost := failedAt(reasons, 0); !ok || !lost {
			return Qualification{}, fmt.Errorf("ledger: reverse lead %d: %w", leadID, err)
		}
		// Reversed concurrently: the next read says there is nothing standing.
	}
	return Qualification{}, fmt.Errorf("ledger: reverse lead %d: %w", leadID, errContention)
}

// LatestQualification implements Store: one consistent Query.
func (d *Dynamo) LatestQualification(ctx context.Context, leadID int64) (Qualification, error) {
	q, found, err := d.latestQual(ctx, leadID)
	if err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualification of lead %d: %w", leadID, err)
	}
	if !found {
		return Qualification{}, fmt.Errorf("ledger: qualification of lead %d: %w", leadID, ErrNotFound)
	}
	return q, nil
}

// StandingQualification implements Store: one consistent Query.
func (d *Dynamo) StandingQualification(ctx context.Context, leadID int64) (Qualification, error) {
	q, err := d.LatestQualification(ctx, leadID)
	if err != nil {
		return Qualification{}, err
	}
	if !q.Standing() {
		return Qualification{}, fmt.Errorf("ledger: lead %d: qualification %d was reversed: %w", leadID, q.Seq, ErrNotFound)
	}
	return q, nil
}

// QualificationsFor implements Store: one consistent Query of the recipient's index partition
// (more pages past 1 MB), already in time order.
func (d *Dynamo) QualificationsFor(ctx context.Context, recipientID int64) ([]Qualification, error) {
	items, err := d.queryPartition(ctx, recipientPK(recipientID), qualSKPrefix, true, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: qualifications for %d: %w", recipientID, err)
	}
	qs := make([]Qualification, 0, len(items))
	for _, av := range items {
		q, err := decodeItem(av, qualItem.qualification)
		if err != nil {
			return nil, fmt.Errorf("ledger: qualifications for %d: %w", recipientID, err)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// MatchDueReward implements Store: one consistent GetItem of the qualification (its index keys
// need its time and referrer), then one TransactWriteItems updating the qualification, its index
// items and the due reward, each side on condition that it is unmatched or matched to the other.
func (d *Dynamo) MatchDueReward(ctx context.Context, dueRewardID int64, ref QualificationRef) error {
	if dueRewardID <= 0 || ref.LeadID <= 0 || ref.Seq <= 0 {
		return fmt.Errorf("ledger: match due reward %d to %d/%d: %w", dueRewardID, ref.LeadID, ref.Seq, ErrInvalid)
	}
	what := fmt.Sprintf("ledger: match due reward %d to qualification %d/%d", dueRewardID, ref.LeadID, ref.Seq)
	for range maxRaces {
		av, found, err := d.get(ctx, qualKey(ref.LeadID, ref.Seq))
		if err != nil {
			return fmt.Errorf("%s: read: %w", what, err)
		}
		if !found {
			return fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
		}
		q, err := decodeItem(av, qualItem.qualification)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if q.MatchedDueRewardID != 0 && q.MatchedDueRewardID != dueRewardID {
			return fmt.Errorf("%s: qualification matched to due reward %d: %w", what, q.MatchedDueRewardID, ErrConflict)
		}
		t := &txn{}
		matched := expression.Name("matched_due_reward_id")
		qCond := exists().And(expression.AttributeNotExists(matched).Or(matched.Equal(expression.Value(dueRewardID))))
		d.txUpdate(t, qualKey(ref.LeadID, ref.Seq), set("matched_due_reward_id", dueRewardID), &qCond)
		present := exists()
		for _, r := range q.recipients() {
			d.txUpdate(t, recipientKey(r, q), set("matched_due_reward_id", dueRewardID), &present)
		}
		lead := expression.Name("matched_lead_id")
		dCond := exists().And(expression.AttributeNotExists(lead).Or(
			lead.Equal(expression.Value(ref.LeadID)).And(eq("matched_seq", ref.Seq))))
		dueAt := d.txUpdate(t, dueKey(dueRewardID),
			set("matched_lead_id", ref.LeadID).Set(expression.Name("matched_seq"), expression.Value(ref.Seq)), &dCond)
		err = d.transact(ctx, t)
		if err == nil {
			return nil
		}
		reasons, ok := cancellation(err)
		if !ok {
			return fmt.Errorf("%s: %w", what, err)
		}
		if old, failed := failedAt(reasons, dueAt); failed {
			if len(old) == 0 {
				return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
			}
			r, derr := decodeItem(old, dueItem.dueReward)
			return errors.Join(fmt.Errorf("%s: due reward matched to %d/%d: %w",
				what, r.Matched.LeadID, r.Matched.Seq, ErrConflict), derr)
		}
		if _, failed := failedAt(reasons, 0); !failed {
			return fmt.Errorf("%s: %w", what, err)
		}
		// The qualification was matched concurrently: read it again.
	}
	return fmt.Errorf("%s: %w", what, errContention)
}

// qualByRef reads one qualification item with a consistent GetItem; found=false when absent.
func (d *Dynamo) qualByRef(ctx context.Context, ref QualificationRef) (Qualification, bool, error) {
	av, found, err := d.get(ctx, qualKey(ref.LeadID, ref.Seq))
	if err != nil || !found {
		return Qualification{}, false, err
	}
	q, err := decodeItem(av, qualItem.qualification)
	return q, err == nil, err
}

// RematchDueReward implements Store: one consistent GetItem of each qualification (their index
// keys need their time and referrer; to's match may already answer), then one TransactWriteItems
// moving the match: the due reward from from to to, from's item and index copies unmatched, to's
// matched, each on condition that it is matched as read. The due reward's failed condition
// (ALL_OLD) tells the outcome of a lost race: moved to to already (done) or elsewhere (conflict).
func (d *Dynamo) RematchDueReward(ctx context.Context, dueRewardID int64, from, to QualificationRef) error {
	what, err := validRematch(dueRewardID, from, to)
	if err != nil {
		return err
	}
	matched := expression.Name("matched_due_reward_id")
	for range maxRaces {
		toQ, found, err := d.qualByRef(ctx, to)
		if err != nil {
			return fmt.Errorf("%s: read qualification %d/%d: %w", what, to.LeadID, to.Seq, err)
		}
		if !found {
			return fmt.Errorf("%s: qualification %d/%d: %w", what, to.LeadID, to.Seq, ErrNotFound)
		}
		switch toQ.MatchedDueRewardID {
		case 0:
		case dueRewardID:
			return nil // moved already (a repeat): both sides are only ever written together
		default:
			return fmt.Errorf("%s: qualification %d/%d matched to due reward %d: %w",
				what, to.LeadID, to.Seq, toQ.MatchedDueRewardID, ErrConflict)
		}
		fromQ, found, err := d.qualByRef(ctx, from)
		if err != nil {
			return fmt.Errorf("%s: read qualification %d/%d: %w", what, from.LeadID, from.Seq, err)
		}
		if !found {
			return fmt.Errorf("%s: qualification %d/%d: %w", what, from.LeadID, from.Seq, ErrNotFound)
		}
		if fromQ.MatchedDueRewardID != dueRewardID {
			// The reward is not matched to from: read it, to say how it is (or that it is missing).
			done, err := d.rematchRefused(ctx, what, dueRewardID, from, to)
			if done || err != nil {
				return err
			}
			continue // matched to from since from was read: read again
		}

		t := &txn{}
		lead := expression.Name("matched_lead_id")
		dCond := exists().And(lead.Equal(expression.Value(from.LeadID))).And(eq("matched_seq", from.Seq))
		dueAt := d.txUpdate(t, dueKey(dueRewardID),
			set("matched_lead_id", to.LeadID).Set(expression.Name("matched_seq"), expression.Value(to.Seq)), &dCond)
		unmatch := expression.Remove(matched)
		fromCond := exists().And(matched.Equal(expression.Value(dueRewardID)))
		fromAt := d.txUpdate(t, qualKey(from.LeadID, from.Seq), unmatch, &fromCond)
		present := exists()
		for _, r := range fromQ.recipients() {
			d.txUpdate(t, recipientKey(r, fromQ), unmatch, &present)
		}
		match := set("matched_due_reward_id", dueRewardID)
		toCond := exists().And(expression.AttributeNotExists(matched).Or(matched.Equal(expression.Value(dueRewardID))))
		toAt := d.txUpdate(t, qualKey(to.LeadID, to.Seq), match, &toCond)
		for _, r := range toQ.recipients() {
			d.txUpdate(t, recipientKey(r, toQ), match, &present)
		}
		err = d.transact(ctx, t)
		if err == nil {
			return nil
		}
		reasons, ok := cancellation(err)
		if !ok {
			return fmt.Errorf("%s: %w", what, err)
		}
		if old, failed := failedAt(reasons, dueAt); failed {
			if len(old) == 0 {
				return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
			}
			r, derr := decodeItem(old, dueItem.dueReward)
			if derr == nil && r.Matched == to {
				return nil // moved by a concurrent caller
			}
			return errors.Join(fmt.Errorf("%s: due reward matched to %d/%d: %w",
				what, r.Matched.LeadID, r.Matched.Seq, ErrConflict), derr)
		}
		if old, failed := failedAt(reasons, toAt); failed && len(old) > 0 {
			q, qerr := decodeItem(old, qualItem.qualification)
			if qerr != nil {
				return fmt.Errorf("%s: %w", what, qerr)
			}
			if q.MatchedDueRewardID != 0 && q.MatchedDueRewardID != dueRewardID {
				return fmt.Errorf("%s: qualification %d/%d matched to due reward %d: %w",
					what, to.LeadID, to.Seq, q.MatchedDueRewardID, ErrConflict)
			}
		}
		_, fromFailed := failedAt(reasons, fromAt)
		_, toFailed := failedAt(reasons, toAt)
		if !fromFailed && !toFailed {
			return fmt.Errorf("%s: %w", what, err)
		}
		// A qualification changed since it was read: read both again.
	}
	return fmt.Errorf("%s: %w", what, errContention)
}

// rematchRefused reads the due reward when from is not matched to it, and answers: done (nil)
// if it is matched to to, ErrNotFound if it was never seen, ErrConflict if it is matched
// elsewhere or not at all. done=false, err=nil: it is matched to from after all (a race).
func (d *Dynamo) rematchRefused(ctx context.Context, what string, dueRewardID int64, from, to QualificationRef) (done bool, err error) {
	av, found, err := d.get(ctx, dueKey(dueRewardID))
	if err != nil {
		return true, fmt.Errorf("%s: read due reward: %w", what, err)
	}
	if !found {
		return true, fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
	}
	r, err := decodeItem(av, dueItem.dueReward)
	if err != nil {
		return true, fmt.Errorf("%s: %w", what, err)
	}
	return rematchAnswer(what, r, from, to)
}
