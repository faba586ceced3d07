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
	if q.At.IsZero() {
		q.At = m.cfg.clock()
	}
	q.At = utc(q.At)
	q.ReversedAt, q.ReversalReason, q.MatchedDueRewardID = time.Time{}, "", 0
	q.Seq = NextQualificationSeq(latest, found)
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
func (m *Memory) Reverse(ctx context.Context, leadID int64, at time.Time, reason string) (Qualification, error) {
	if err := m.lock(ctx); err != nil {
		return Qualification{}, err
	}
	defer m.mu.Unlock()
	q, found := m.latestQual(leadID)
	if !found || !q.Standing() {
		return Qualification{}, fmt.Errorf("ledger: reverse lead %d: no standing qualification: %w", leadID, ErrNotFound)
	}
	if at.IsZero() {
		at = m.cfg.clock()
	}
	q.ReversedAt, q.ReversalReason = utc(at), reason
	m.quals[leadID][len(m.quals[leadID])-1] = q
	return q, nil
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
			if slices.Contains(q.recipients(), recipientID) {
				out = append(out, q)
			}
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

// MatchDueReward implements Store.
func (m *Memory) MatchDueReward(ctx context.Context, dueRewardID int64, ref QualificationRef) error {
	if dueRewardID <= 0 || ref.LeadID <= 0 || ref.Seq <= 0 {
		return fmt.Errorf("ledger: match due reward %d to %d/%d: %w", dueRewardID, ref.LeadID, ref.Seq, ErrInvalid)
	}
	what := fmt.Sprintf("ledger: match due reward %d to qualification %d/%d", dueRewardID, ref.LeadID, ref.Seq)
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	qs := m.quals[ref.LeadID]
	if ref.Seq > int64(len(qs)) {
		return fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
	}
	q := &qs[ref.Seq-1]
	if q.MatchedDueRewardID != 0 && q.MatchedDueRewardID != dueRewardID {
		return fmt.Errorf("%s: qualification matched to due reward %d: %w", what, q.MatchedDueRewardID, ErrConflict)
	}
	r, ok := m.due[dueRewardID]
	if !ok {
		return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
	}
	if !r.Matched.IsZero() && r.Matched != ref {
		return fmt.Errorf("%s: due reward matched to %d/%d: %w", what, r.Matched.LeadID, r.Matched.Seq, ErrConflict)
	}
	q.MatchedDueRewardID = dueRewardID
	r.Matched = ref
	m.due[dueRewardID] = r
	return nil
}

// RematchDueReward implements Store, checking in the Dynamo store's order.
func (m *Memory) RematchDueReward(ctx context.Context, dueRewardID int64, from, to QualificationRef) error {
	what, err := validRematch(dueRewardID, from, to)
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
	switch toQ.MatchedDueRewardID {
	case 0:
	case dueRewardID:
		return nil // moved already (a repeat)
	default:
		return fmt.Errorf("%s: qualification %d/%d matched to due reward %d: %w",
			what, to.LeadID, to.Seq, toQ.MatchedDueRewardID, ErrConflict)
	}
	fromQ := m.qualByRef(from)
	if fromQ == nil {
		return fmt.Errorf("%s: qualification %d/%d: %w", what, from.LeadID, from.Seq, ErrNotFound)
	}
	r, ok := m.due[dueRewardID]
	if !ok {
		return fmt.Errorf("%s: due reward not seen: %w", what, ErrNotFound)
	}
	if r.Matched != from {
		_, err := rematchAnswer(what, r, from, to)
		return err
	}
	fromQ.MatchedDueRewardID = 0
	toQ.MatchedDueRewardID = dueRewardID
	r.Matched = to
	m.due[dueRewardID] = r
	return nil
}

// qualByRef points at a stored qualification (nil: none); the caller holds the mutex.
func (m *Memory) qualByRef(ref QualificationRef) *Qualification {
	qs := m.quals[ref.LeadID]
	if ref.Seq > int64(len(qs)) {
		return nil
	}
	return &qs[ref.Seq-1]
}
