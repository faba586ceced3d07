package ledger

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// latestQual reads a lead's newest qualification: one consistent Query, newest first, limit 1.
// Only the newest can stand: a new one is created only when the newest is reversed, and a
// reversal is final.
func (d *Dynamo) latestQual(ctx context.Context, leadID int64) (Qualification, bool, error) {
	items, err := d.queryPartition(ctx, qualPK(leadID), qualSKPrefix, false, 1)
	if err != nil || len(items) == 0 {
		return Qualification{}, false, err
	}
	q, err := decodeQual(items[0])
	return q, err == nil, err
}

// Qualify implements Store: one consistent Query for the newest qualification, then one
// TransactWriteItems putting qualification Seq+1 (condition: it does not exist yet, so of two
// racing writers only one creates it) and its index items under each recipient.
func (d *Dynamo) Qualify(ctx context.Context, q Qualification) (Qualification, error) {
	if err := q.validate(); err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualify: %w", err)
	}
	want := q.Seq
	q, err := q.recorded(d.cfg.clock())
	if err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualify: %w", err)
	}
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
		if want > 0 && q.Seq != want {
			return latest, fmt.Errorf("ledger: qualify lead %d: generation %d asked, the next is %d: %w", q.LeadID, want, q.Seq, ErrConflict)
		}
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

// Reverse implements Store: one consistent GetItem of the qualification (its index keys need
// its time and referrer), one TransactWriteItems marking it and its index copies reversed
// (condition: not reversed yet), and one consistent GetItem reading it back. The read-back is
// what makes the returned MatchedDueRewardIDs complete: every match committed before the
// reversal is in it (a transaction returns no values, and a match may land between the first
// read and the write). Only the newest qualification of a lead can stand, so the condition also
// refuses a generation that a newer one replaced.
func (d *Dynamo) Reverse(ctx context.Context, ref QualificationRef, at time.Time, reason string) (Qualification, error) {
	what, err := validReverse(ref)
	if err != nil {
		return Qualification{}, err
	}
	if at.IsZero() {
		at = d.cfg.clock()
	}
	at = utc(at)
	q, found, err := d.qualByRef(ctx, ref)
	if err != nil {
		return Qualification{}, fmt.Errorf("%s: read: %w", what, err)
	}
	if !found {
		return Qualification{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if !q.Standing() {
		return q, notStanding(what, q)
	}
	upd := set("reversed_at", formatTS(at)).
		Set(expression.Name("reversal_reason"), expression.Value(reason)).
		Set(expression.Name("standing"), expression.Value(false))
	t := &txn{}
	cond := exists().And(expression.AttributeNotExists(expression.Name("reversed_at")))
	d.txUpdate(t, qualKey(ref.LeadID, ref.Seq), upd, &cond)
	present := exists()
	for _, r := range q.recipients() {
		d.txUpdate(t, recipientKey(r, q), upd, &present)
	}
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if old, lost := failedAt(reasons, 0); ok && lost && len(old) > 0 {
			// Reversed concurrently: the item as it was says by whom.
			cur, derr := decodeQual(old)
			if derr != nil {
				return Qualification{}, fmt.Errorf("%s: %w", what, derr)
			}
			return cur, notStanding(what, cur)
		}
		return Qualification{}, fmt.Errorf("%s: %w", what, err)
	}
	q, found, err = d.qualByRef(ctx, ref)
	if err == nil && !found {
		err = ErrNotFound // deleted by hand since
	}
	if err != nil {
		return Qualification{}, fmt.Errorf("%s: reversed, read back: %w", what, err)
	}
	return q, nil
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
// (more pages past 1 MB), already in time order. Each copy carries the recipient's slots.
func (d *Dynamo) QualificationsFor(ctx context.Context, recipientID int64) ([]Qualification, error) {
	items, err := d.queryPartition(ctx, recipientPK(recipientID), qualSKPrefix, true, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: qualifications for %d: %w", recipientID, err)
	}
	qs := make([]Qualification, 0, len(items))
	for _, av := range items {
		q, err := decodeQual(av)
		if err != nil {
			return nil, fmt.Errorf("ledger: qualifications for %d: %w", recipientID, err)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// MatchDueReward implements Store: one consistent GetItem of the qualification (the recipient's
// index key needs its time and referrer), then one TransactWriteItems of three items: the due
// reward (condition: unmatched or matched to this qualification, and recorded for the slot's
// recipient and reward definition), the qualification item (ADD to matched_due_reward_ids) and
// the recipient's index copy (SET slot_<rewardID>, condition: free or this reward). A failed
// condition's ALL_OLD item says why; nothing is read again.
func (d *Dynamo) MatchDueReward(ctx context.Context, dueRewardID int64, ref QualificationRef, slot RewardSlot) error {
	what, err := validMatch(dueRewardID, ref, slot)
	if err != nil {
		return err
	}
	q, found, err := d.qualByRef(ctx, ref)
	if err != nil {
		return fmt.Errorf("%s: read: %w", what, err)
	}
	if !found {
		return fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
	}
	if err := q.slotOf(what, slot); err != nil {
		return err
	}
	t := &txn{}
	lead := expression.Name("matched_lead_id")
	dCond := exists().And(expression.AttributeNotExists(lead).Or(
		lead.Equal(expression.Value(ref.LeadID)).And(eq("matched_seq", ref.Seq)))).And(dueOfSlot(slot))
	dueAt := d.txUpdate(t, dueKey(dueRewardID), fillSlot(slot).
		Set(lead, expression.Value(ref.LeadID)).Set(expression.Name("matched_seq"), expression.Value(ref.Seq)), &dCond)
	present := exists()
	d.txUpdate(t, qualKey(ref.LeadID, ref.Seq), addMatched(dueRewardID), &present)
	copyCond := slotFree(slot, dueRewardID)
	copyAt := d.txUpdate(t, recipientKey(slot.RecipientID, q), set(slotAttr(slot.RewardID), dueRewardID), &copyCond)
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
		if derr != nil {
			return fmt.Errorf("%s: %w", what, derr)
		}
		if err := slotMismatch(what, r, slot); err != nil {
			return err
		}
		return fmt.Errorf("%s: due reward matched to %d/%d: %w", what, r.Matched.LeadID, r.Matched.Seq, ErrConflict)
	}
	if old, failed := failedAt(reasons, copyAt); failed && len(old) > 0 {
		return slotTaken(what, old, ref, slot)
	}
	// Not a race (the qualification item or its index copy is missing: the store's own items
	// disagree): reported as it is.
	return fmt.Errorf("%s: %w", what, err)
}

// dueOfSlot: the due reward is recorded for the slot's recipient and reward definition, or does
// not know them yet (fillSlot then records them).
func dueOfSlot(slot RewardSlot) expression.ConditionBuilder {
	rcp, rid := expression.Name("recipient_id"), expression.Name("reward_id")
	return expression.AttributeNotExists(rcp).Or(rcp.Equal(expression.Value(slot.RecipientID))).
		And(expression.AttributeNotExists(rid).Or(rid.Equal(expression.Value(slot.RewardID))))
}

// fillSlot records the slot's recipient and reward definition on a due reward that lacks them
// (one recorded by a settlement before it was seen), so it can never take another slot.
func fillSlot(slot RewardSlot) expression.UpdateBuilder {
	return expression.Set(expression.Name("recipient_id"), ifAbsent("recipient_id", slot.RecipientID)).
		Set(expression.Name("reward_id"), ifAbsent("reward_id", slot.RewardID))
}

// slotFree: the index copy exists and its slot is free or already this reward's.
func slotFree(slot RewardSlot, dueRewardID int64) expression.ConditionBuilder {
	name := expression.Name(slotAttr(slot.RewardID))
	return exists().And(expression.AttributeNotExists(name).Or(name.Equal(expression.Value(dueRewardID))))
}

// addMatched adds a due reward to a qualification item's matched_due_reward_ids.
func addMatched(dueRewardID int64) expression.UpdateBuilder {
	return expression.Add(expression.Name("matched_due_reward_ids"), numberSet(dueRewardID))
}

func numberSet(id int64) expression.ValueBuilder {
	return expression.Value(&types.AttributeValueMemberNS{Value: []string{itoa(id)}})
}

// slotTaken is the ErrConflict for an index copy (old, as it was) whose slot holds another reward.
func slotTaken(what string, old map[string]types.AttributeValue, ref QualificationRef, slot RewardSlot) error {
	q, err := decodeQual(old)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: qualification %d/%d: the slot of recipient %d, reward %d holds due reward %d: %w",
		what, ref.LeadID, ref.Seq, slot.RecipientID, slot.RewardID, q.Slots[slot.RewardID], ErrConflict)
}

// qualByRef reads one qualification item with a consistent GetItem; found=false when absent.
func (d *Dynamo) qualByRef(ctx context.Context, ref QualificationRef) (Qualification, bool, error) {
	av, found, err := d.get(ctx, qualKey(ref.LeadID, ref.Seq))
	if err != nil || !found {
		return Qualification{}, false, err
	}
	q, err := decodeQual(av)
	return q, err == nil, err
}

// RematchDueReward implements Store: one consistent GetItem of each qualification item (`to`'s
// set may already answer; the index keys need their time and referrer), then one
// TransactWriteItems of five items moving the reward from `from`'s slot to `to`'s: the due
// reward (condition: matched to `from`, and recorded for the slot), `from`'s item (DELETE from
// matched_due_reward_ids), `from`'s index copy of the recipient (REMOVE the slot, condition: it
// holds this reward), `to`'s item (ADD) and `to`'s copy (SET the slot, condition: free or this
// reward). The due reward's failed condition (ALL_OLD) tells the outcome of a lost race: moved
// to `to` already (done) or elsewhere (conflict); `to`'s copy, that its slot was taken.
func (d *Dynamo) RematchDueReward(ctx context.Context, dueRewardID int64, from, to QualificationRef, slot RewardSlot) error {
	what, err := validRematch(dueRewardID, from, to, slot)
	if err != nil {
		return err
	}
	for range maxRaces {
		toQ, found, err := d.qualByRef(ctx, to)
		if err != nil {
			return fmt.Errorf("%s: read qualification %d/%d: %w", what, to.LeadID, to.Seq, err)
		}
		if !found {
			return fmt.Errorf("%s: qualification %d/%d: %w", what, to.LeadID, to.Seq, ErrNotFound)
		}
		if slices.Contains(toQ.MatchedDueRewardIDs, dueRewardID) {
			return nil // moved already (a repeat): the reward and both sides are only ever written together
		}
		if err := toQ.slotOf(what, slot); err != nil {
			return err
		}
		fromQ, found, err := d.qualByRef(ctx, from)
		if err != nil {
			return fmt.Errorf("%s: read qualification %d/%d: %w", what, from.LeadID, from.Seq, err)
		}
		if !found {
			return fmt.Errorf("%s: qualification %d/%d: %w", what, from.LeadID, from.Seq, ErrNotFound)
		}
		if err := fromQ.slotOf(what, slot); err != nil {
			return err
		}
		if !slices.Contains(fromQ.MatchedDueRewardIDs, dueRewardID) {
			// The reward is not matched to from: read it, to say how it is (or that it is missing).
			done, err := d.rematchRefused(ctx, what, dueRewardID, from, to, slot)
			if done || err != nil {
				return err
			}
			continue // matched to from since from was read: read again
		}

		t := &txn{}
		lead := expression.Name("matched_lead_id")
		dCond := exists().And(lead.Equal(expression.Value(from.LeadID))).And(eq("matched_seq", from.Seq)).And(dueOfSlot(slot))
		dueAt := d.txUpdate(t, dueKey(dueRewardID), fillSlot(slot).
			Set(lead, expression.Value(to.LeadID)).Set(expression.Name("matched_seq"), expression.Value(to.Seq)), &dCond)
		present := exists()
		d.txUpdate(t, qualKey(from.LeadID, from.Seq),
			expression.Delete(expression.Name("matched_due_reward_ids"), numberSet(dueRewardID)), &present)
		name := expression.Name(slotAttr(slot.RewardID))
		fromCond := exists().And(name.Equal(expression.Value(dueRewardID)))
		fromAt := d.txUpdate(t, recipientKey(slot.RecipientID, fromQ), expression.Remove(name), &fromCond)
		d.txUpdate(t, qualKey(to.LeadID, to.Seq), addMatched(dueRewardID), &present)
		toCond := slotFree(slot, dueRewardID)
		toAt := d.txUpdate(t, recipientKey(slot.RecipientID, toQ), set(slotAttr(slot.RewardID), dueRewardID), &toCond)
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
			if derr != nil {
				return fmt.Errorf("%s: %w", what, derr)
			}
			if err := slotMismatch(what, r, slot); err != nil {
				return err
			}
			if r.Matched == to {
				return nil // moved by a concurrent caller
			}
			return fmt.Errorf("%s: due reward matched to %d/%d: %w", what, r.Matched.LeadID, r.Matched.Seq, ErrConflict)
		}
		if old, failed := failedAt(reasons, toAt); failed && len(old) > 0 {
			return slotTaken(what, old, to, slot)
		}
		if old, failed := failedAt(reasons, fromAt); failed && len(old) > 0 {
			// The reward is matched to from, but not in this slot of it.
			return slotTaken(what, old, from, slot)
		}
		// Not a race (an item of the move is missing: the store's own items disagree).
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, errContention)
}

// rematchRefused reads the due reward when from is not matched to it, and answers: done (nil)
// if it is matched to to, ErrNotFound if it was never seen, ErrInvalid if it is recorded for
// another slot, ErrConflict if it is matched elsewhere or not at all. done=false, err=nil: it is
// matched to from after all (a race).
func (d *Dynamo) rematchRefused(ctx context.Context, what string, dueRewardID int64, from, to QualificationRef, slot RewardSlot) (done bool, err error) {
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
	return rematchAnswer(what, r, from, to, slot)
}
