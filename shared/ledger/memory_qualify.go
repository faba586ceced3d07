package ledger

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Qualify implements Store.
func (m *Memory) Qualify(ctx context.Context, q Qualification) (Qualification, error) {
	if err := q.validate(); err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualify: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Qualification{}, err
	}
	defer m.mu.Unlock()
	latest, found := m.latestQual(q.LeadID)
	if found && latest.Standing() {
		return latest, fmt.Errorf("ledger: qualify lead %d: qualification %d at %s: %w",
			q.LeadID, latest.Seq, formatTS(latest.At), ErrAlreadyQualified)
	}
	want := q.Seq
	q, err := q.recorded(m.cfg.clock())
	if err != nil {
		return Qualification{}, fmt.Errorf("ledger: qualify: %w", err)
	}
	q.Seq = NextQualificationSeq(latest, found)
	if want > 0 && q.Seq != want {
		return latest, fmt.Errorf("ledger: qualify lead %d: generation %d asked, the next is %d: %w", q.LeadID, want, q.Seq, ErrConflict)
	}
	m.quals[q.LeadID] = append(m.quals[q.LeadID], q)
	return q, nil
}

// latestQual returns the lead's newest qualification; the caller holds the mutex.
func (m *Memory) latestQual(leadID int64) (Qualification, bool) {
	qs := m.quals[leadID]
	if len(qs) == 0 {
		return Qualification{}, false
	}
	return qs[len(qs)-1], true
}

// Reverse implements Store.
func (m *Memory) Reverse(ctx context.Context, ref QualificationRef, at time.Time, reason string) (Qualification, error) {
	what, err := validReverse(ref)
	if err != nil {
		return Qualification{}, err
	}
	if err := m.lock(ctx); err != nil {
		return Qualification{}, err
	}
	defer m.mu.Unlock()
	q := m.qualByRef(ref)
	if q == nil {
		return Qualification{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if !q.Standing() {
		return *q, notStanding(what, *q)
	}
	if at.IsZero() {
		at = m.cfg.clock()
	}
	q.ReversedAt, q.ReversalReason = utc(at), reason
	return *q, nil
}

// LatestQualification implements Store.
func (m *Memory) LatestQualification(ctx context.Context, leadID int64) (Qualification, error) {
	if err := m.lock(ctx); err != nil {
		return Qualification{}, err
	}
	defer m.mu.Unlock()
	q, found := m.latestQual(leadID)
	if !found {
		return Qualification{}, fmt.Errorf("ledger: qualification of lead %d: %w", leadID, ErrNotFound)
	}
	return q, nil
}

// StandingQualification implements Store.
func (m *Memory) StandingQualification(ctx context.Context, leadID int64) (Qualification, error) {
	q, err := m.LatestQualification(ctx, leadID)
	if err != nil {
		return Qualification{}, err
	}
	if !q.Standing() {
		return Qualification{}, fmt.Errorf("ledger: lead %d: qualification %d was reversed: %w", leadID, q.Seq, ErrNotFound)
	}
	return q, nil
}

// QualificationsFor implements Store, in the order of the Dynamo index: time, lead, seq.
func (m *Memory) QualificationsFor(ctx context.Context, recipientID int64) ([]Qualification, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := []Qualification{}
	for _, qs := range m.quals {
		for _, q := range qs {
			if !slices.Contains(q.recipients(), recipientID) {
				continue
			}
			// An index copy: the recipient's slots, not the item's set.
			q.MatchedDueRewardIDs = nil
			for slot, due := range m.slots[q.Ref()] {
				if slot.RecipientID != recipientID {
					continue
				}
				if q.Slots == nil {
					q.Slots = map[int64]int64{}
				}
				q.Slots[slot.RewardID] = due
			}
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b Qualification) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if c := cmp.Compare(a.LeadID, b.LeadID); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return out, nil
}

// MatchDueReward implements Store, checking in the Dynamo store's order.
func (m *Memory) MatchDueReward(ctx context.Context, dueRewardID int64, ref QualificationRef, slot RewardSlot) error {
	what, err := validMatch(dueRewardID, ref, slot)
	if err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	q := m.qualByRef(ref)
	if q == nil {
		return fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
	}
	if err := q.slotOf(what, slot); err != nil {
		return err
	}
	r, ok := m.due[dueRewardID]
	if !ok {
		return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
	}
	if err := slotMismatch(what, r, slot); err != nil {
		return err
	}
	if !r.Matched.IsZero() && r.Matched != ref {
		return fmt.Errorf("%s: due reward matched to %d/%d: %w", what, r.Matched.LeadID, r.Matched.Seq, ErrConflict)
	}
	if held := m.slots[ref][slot]; held != 0 && held != dueRewardID {
		return fmt.Errorf("%s: qualification %d/%d: the slot of recipient %d, reward %d holds due reward %d: %w",
			what, ref.LeadID, ref.Seq, slot.RecipientID, slot.RewardID, held, ErrConflict)
	}
	m.take(dueRewardID, q, slot)
	return nil
}

// take puts the due reward in the qualification's slot, records the match on the reward (and
// the slot's recipient and definition where the record lacks them) and adds it to the item's
// set; the caller holds the mutex.
func (m *Memory) take(dueRewardID int64, q *Qualification, slot RewardSlot) {
	if m.slots[q.Ref()] == nil {
		m.slots[q.Ref()] = map[RewardSlot]int64{}
	}
	m.slots[q.Ref()][slot] = dueRewardID
	if !slices.Contains(q.MatchedDueRewardIDs, dueRewardID) {
		// A new slice: callers may hold the old one.
		q.MatchedDueRewardIDs = sortedIDs(append(slices.Clone(q.MatchedDueRewardIDs), dueRewardID))
	}
	r := m.due[dueRewardID]
	r.Matched = q.Ref()
	if r.RecipientID == 0 {
		r.RecipientID = slot.RecipientID
	}
	if r.RewardID == 0 {
		r.RewardID = slot.RewardID
	}
	m.due[dueRewardID] = r
}

// RematchDueReward implements Store, checking in the Dynamo store's order.
func (m *Memory) RematchDueReward(ctx context.Context, dueRewardID int64, from, to QualificationRef, slot RewardSlot) error {
	what, err := validRematch(dueRewardID, from, to, slot)
	if err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	toQ := m.qualByRef(to)
	if toQ == nil {
		return fmt.Errorf("%s: qualification %d/%d: %w", what, to.LeadID, to.Seq, ErrNotFound)
	}
	if slices.Contains(toQ.MatchedDueRewardIDs, dueRewardID) {
		return nil // moved already (a repeat)
	}
	if err := toQ.slotOf(what, slot); err != nil {
		return err
	}
	fromQ := m.qualByRef(from)
	if fromQ == nil {
		return fmt.Errorf("%s: qualification %d/%d: %w", what, from.LeadID, from.Seq, ErrNotFound)
	}
	if err := fromQ.slotOf(what, slot); err != nil {
		return err
	}
	r, ok := m.due[dueRewardID]
	if !ok {
		return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
	}
	if r.Matched != from {
		_, err := rematchAnswer(what, r, from, to, slot)
		return err
	}
	if err := slotMismatch(what, r, slot); err != nil {
		return err
	}
	if held := m.slots[to][slot]; held != 0 && held != dueRewardID {
		return fmt.Errorf("%s: qualification %d/%d: the slot of recipient %d, reward %d holds due reward %d: %w",
			what, to.LeadID, to.Seq, slot.RecipientID, slot.RewardID, held, ErrConflict)
	}
	if held := m.slots[from][slot]; held != dueRewardID {
		return fmt.Errorf("%s: qualification %d/%d: the slot of recipient %d, reward %d holds due reward %d: %w",
			what, from.LeadID, from.Seq, slot.RecipientID, slot.RewardID, held, ErrConflict)
	}
	delete(m.slots[from], slot)
	fromQ.MatchedDueRewardIDs = sortedIDs(slices.DeleteFunc(slices.Clone(fromQ.MatchedDueRewardIDs),
		func(id int64) bool { return id == dueRewardID }))
	m.take(dueRewardID, toQ, slot)
	return nil
}

// qualByRef points at a stored qualification (nil: none); the caller holds the mutex.
func (m *Memory) qualByRef(ref QualificationRef) *Qualification {
	qs := m.quals[ref.LeadID]
	if ref.Seq < 1 || ref.Seq > int64(len(qs)) {
		return nil
	}
	return &qs[ref.Seq-1]
}
