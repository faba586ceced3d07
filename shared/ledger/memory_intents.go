package ledger

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// BeginIntent implements Store.
func (m *Memory) BeginIntent(ctx context.Context, in Intent) (Intent, error) {
	if !in.Kind.valid() || in.Target == "" {
		return Intent{}, fmt.Errorf("ledger: begin intent %q %q: %w", in.Kind, in.Target, ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	k := intentID{in.Kind, in.Target}
	prev, existed := m.intents[k]
	if existed && prev.Status != IntentFailed {
		return beginRefused(prev)
	}
	if ref, ok := previousGeneration(in.Kind, in.Target); ok {
		if q := m.qualByRef(ref); q != nil && len(q.CancelsPending) > 0 {
			return Intent{}, cancelsPendingOn(fmt.Sprintf("ledger: begin intent %s %s", in.Kind, in.Target), ref, q.CancelsPending)
		}
	}
	out := begun(in, prev, existed, m.cfg.clock())
	m.intents[k] = out
	return out, nil
}

// BeginCancelIfNewest implements Store: BeginIntent, the checks of the qualification, of the
// next generation and of its qualify intent, and the mark on the qualification under one lock,
// as the Dynamo store writes them in one transaction.
func (m *Memory) BeginCancelIfNewest(ctx context.Context, in Intent, ref QualificationRef) (Intent, error) {
	what, id, err := validBeginCancel(in, ref)
	if err != nil {
		return Intent{}, err
	}
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	k := intentID{in.Kind, in.Target}
	prev, existed := m.intents[k]
	refused, q, err := m.beginnableOn(what, prev, existed, ref)
	if err != nil {
		return refused, err
	}
	if q.Standing() {
		return Intent{}, cancelOnStanding(what)
	}
	next := QualificationRef{LeadID: ref.LeadID, Seq: ref.Seq + 1}
	if m.qualByRef(next) != nil {
		return Intent{}, requalified(what, next)
	}
	if qi, ok := m.intents[intentID{IntentQualify, QualificationTarget(next.LeadID, next.Seq)}]; ok && qi.Status != IntentFailed {
		return Intent{}, requalifying(what, qi)
	}
	out := begun(in, prev, existed, m.cfg.clock())
	out.CancelOf = ref
	m.intents[k] = out
	if !slices.Contains(q.CancelsPending, id) {
		// A new slice: callers may hold the old one.
		q.CancelsPending = sortedIDs(append(slices.Clone(q.CancelsPending), id))
	}
	return out, nil
}

// BeginIntentIfStanding implements Store: BeginIntent and the qualification's check under one
// lock, as the Dynamo store writes them in one transaction.
func (m *Memory) BeginIntentIfStanding(ctx context.Context, in Intent, ref QualificationRef) (Intent, error) {
	what, err := validBeginIfStanding(in, ref)
	if err != nil {
		return Intent{}, err
	}
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	k := intentID{in.Kind, in.Target}
	prev, existed := m.intents[k]
	refused, q, err := m.beginnableOn(what, prev, existed, ref)
	if err != nil {
		return refused, err
	}
	if !q.Standing() {
		return Intent{}, reversedBefore(what, *q)
	}
	out := begun(in, prev, existed, m.cfg.clock())
	m.intents[k] = out
	return out, nil
}

// TakeOverIntent implements Store.
func (m *Memory) TakeOverIntent(ctx context.Context, kind IntentKind, target string, seenAttempts int, staleBefore time.Time) (Intent, error) {
	if err := validTakeOver(kind, target, seenAttempts, staleBefore); err != nil {
		return Intent{}, err
	}
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	k := intentID{kind, target}
	cur, ok := m.intents[k]
	if !ok {
		return Intent{}, fmt.Errorf("ledger: take over intent %s %s: %w", kind, target, ErrNotFound)
	}
	if !canTakeOver(cur, seenAttempts, staleBefore) {
		return takeOverRefused(cur, seenAttempts, staleBefore)
	}
	cur.Attempts++
	cur.AttemptedAt = m.cfg.clock()
	m.intents[k] = cur
	return cur, nil
}

// FinishIntent implements Store.
func (m *Memory) FinishIntent(ctx context.Context, kind IntentKind, target string, outcome IntentStatus, lastErr string) (Intent, error) {
	if err := validFinish(kind, target, outcome); err != nil {
		return Intent{}, err
	}
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	k := intentID{kind, target}
	cur, ok := m.intents[k]
	if !ok {
		return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, ErrNotFound)
	}
	if cur.Status == IntentDone || (outcome == IntentFailed && cur.Status != IntentPending) {
		return finishConflict(cur, outcome)
	}
	if cur.Status == IntentPending && !cur.CancelOf.IsZero() {
		// Leaves the qualification's pending cancels: the lead may be qualified again.
		if q := m.qualByRef(cur.CancelOf); q != nil {
			q.CancelsPending = slices.DeleteFunc(slices.Clone(q.CancelsPending),
				func(id int64) bool { return DueRewardTarget(id) == target })
			if len(q.CancelsPending) == 0 {
				q.CancelsPending = nil
			}
		}
	}
	cur.Status, cur.FinishedAt = outcome, m.cfg.clock()
	if lastErr != "" {
		cur.LastError = lastErr
	}
	m.intents[k] = cur
	return cur, nil
}

// IntentOf implements Store.
func (m *Memory) IntentOf(ctx context.Context, kind IntentKind, target string) (Intent, error) {
	if err := m.lock(ctx); err != nil {
		return Intent{}, err
	}
	defer m.mu.Unlock()
	it, ok := m.intents[intentID{kind, target}]
	if !ok {
		return Intent{}, fmt.Errorf("ledger: intent %s %s: %w", kind, target, ErrNotFound)
	}
	return it, nil
}

// PendingIntents implements Store, oldest attempt first as gsi1 orders them.
func (m *Memory) PendingIntents(ctx context.Context, kind IntentKind) ([]Intent, error) {
	if !kind.valid() {
		return nil, fmt.Errorf("ledger: pending intents %q: %w", kind, ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []Intent
	for k, it := range m.intents {
		if k.kind == kind && it.Status == IntentPending {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b Intent) int {
		if c := a.AttemptedAt.Compare(b.AttemptedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Target, b.Target)
	})
	return out, nil
}

// beginnableOn checks, under the lock, what every conditional begin checks first: the intent is
// new or failed (else BeginIntent's refusal, with the intent as it is), and ref's qualification
// exists. It returns the qualification.
func (m *Memory) beginnableOn(what string, prev Intent, existed bool, ref QualificationRef) (Intent, *Qualification, error) {
	if existed && prev.Status != IntentFailed {
		refused, err := beginRefused(prev)
		return refused, nil, err
	}
	q := m.qualByRef(ref)
	if q == nil {
		return Intent{}, nil, fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
	}
	return Intent{}, q, nil
}
