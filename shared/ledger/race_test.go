package ledger_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

// race runs f in n goroutines released together and returns their errors.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = f(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// tally counts nil errors and errors matching want; anything else fails the test.
func tally(t *testing.T, errs []error, want error) (ok, expected int) {
	t.Helper()
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			expected++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	return ok, expected
}

func testRaceQualify(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 200
	var winner atomic.Int64
	errs := race(n, func(i int) error {
		q := qual(77, 100, at(3, 1).Add(time.Duration(i)))
		got, err := s.Qualify(ctx, q)
		if err == nil {
			winner.Store(int64(i))
		} else if errors.Is(err, ledger.ErrAlreadyQualified) && got.Seq != 1 {
			return fmt.Errorf("ErrAlreadyQualified returned seq %d", got.Seq)
		}
		return err
	})
	ok, lost := tally(t, errs, ledger.ErrAlreadyQualified)
	if ok != 1 || lost != n-1 {
		t.Fatalf("%d won, %d got ErrAlreadyQualified; want 1 and %d", ok, lost, n-1)
	}
	st, err := s.StandingQualification(ctx, 77)
	must(t, err)
	if st.Seq != 1 || !st.At.Equal(at(3, 1).Add(time.Duration(winner.Load()))) {
		t.Errorf("standing = %+v, winner %d", st, winner.Load())
	}
	all, err := s.QualificationsFor(ctx, 100)
	must(t, err)
	if len(all) != 1 {
		t.Errorf("the recipient index holds %d qualifications, want 1", len(all))
	}
}

func testRaceSettle(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 900, RewardID: 1, RecipientID: 100, Metric: "amount"})
	must(t, err)
	const n = 200
	errs := race(n, func(i int) error {
		by := ledger.SettledBySweep
		if i%2 == 1 {
			by = ledger.SettledByRFWebhook
		}
		// No recipient: the single conditional write (the counted settlement is raced below).
		_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 900, State: ledger.RewardIssued, At: at(10, 1), By: by})
		return err
	})
	ok, lost := tally(t, errs, ledger.ErrAlreadySettled)
	if ok != 1 || lost != n-1 {
		t.Fatalf("%d settled, %d got ErrAlreadySettled; want 1 and %d", ok, lost, n-1)
	}
	r, err := s.DueRewardRecord(ctx, 900)
	must(t, err)
	if r.State != ledger.RewardIssued {
		t.Errorf("record = %+v", r)
	}
}

// Issued rewards of one recipient settled concurrently all count: 50 distinct rewards count 50.
// Settled concurrently many times, one reward counts once: one settlement wins, the others are
// refused and count nothing.
func testRaceIssuedCount(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 50
	errs := race(n, func(i int) error {
		_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: int64(1000 + i), RecipientID: 100,
			State: ledger.RewardIssued, At: at(10, 1), By: ledger.SettledBySweep})
		return err
	})
	tally(t, errs, nil)
	n100, err := s.IssuedInMonth(ctx, 100, at(10, 1))
	must(t, err)
	if n100 != n {
		t.Errorf("%d distinct rewards issued concurrently, %d counted", n, n100)
	}

	_, err = s.SeeDueReward(ctx, ledger.DueReward{ID: 2000, RewardID: 1, RecipientID: 200, Metric: "amount"})
	must(t, err)
	errs = race(n, func(i int) error {
		by := ledger.SettledBySweep
		if i%2 == 1 {
			by = ledger.SettledByRFWebhook
		}
		_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 2000, RecipientID: 200,
			State: ledger.RewardIssued, At: at(10, 1), By: by})
		return err
	})
	ok, refused := tally(t, errs, ledger.ErrAlreadySettled)
	if ok != 1 || refused != n-1 {
		t.Errorf("%d settled, %d got ErrAlreadySettled; want 1 and %d", ok, refused, n-1)
	}
	n200, err := s.IssuedInMonth(ctx, 200, at(10, 1))
	must(t, err)
	if n200 != 1 {
		t.Errorf("one reward settled by %d callers counted %d times", n, n200)
	}
}

func testRaceSpendSameKey(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 200
	var applied atomic.Int32
	errs := race(n, func(i int) error {
		_, ok, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 55, Key: "in_55#paid", Kind: ledger.SpendPayment,
			Currency: "usd", AmountMinor: 1234, InvoiceID: "in_55"})
		if ok {
			applied.Add(1)
		}
		return err
	})
	tally(t, errs, nil)
	if applied.Load() != 1 {
		t.Errorf("applied %d times, want once", applied.Load())
	}
	sp, err := s.SpendOf(ctx, 55)
	must(t, err)
	if sp.Net["usd"] != 1234 {
		t.Errorf("net = %v, want 1234", sp.Net)
	}
}

func testRaceSpendManyKeys(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 50
	var want int64
	for i := range n {
		want += int64(100 + i)
	}
	errs := race(n, func(i int) error {
		_, ok, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 56, Key: fmt.Sprintf("in_%d#paid", i),
			Kind: ledger.SpendPayment, Currency: "eur", AmountMinor: int64(100 + i), InvoiceID: fmt.Sprintf("in_%d", i)})
		if err == nil && !ok {
			return fmt.Errorf("entry %d not applied", i)
		}
		return err
	})
	tally(t, errs, nil)
	sp, err := s.SpendOf(ctx, 56)
	must(t, err)
	if sp.Net["eur"] != want {
		t.Errorf("net = %v, want %d", sp.Net, want)
	}
}

// Concurrent deliveries begin the same effect: one proceeds, the others are told to reconcile,
// each with the winner's attempt, and none of them is counted as an attempt.
func testRaceBeginIntent(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	const n = 200
	refused := make([]ledger.Intent, n)
	errs := race(n, func(i int) error {
		it, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "900", Ref: fmt.Sprint("run#", i)})
		refused[i] = it
		return err
	})
	ok, pending := tally(t, errs, ledger.ErrIntentPending)
	if ok != 1 || pending != n-1 {
		t.Fatalf("%d began, %d got ErrIntentPending; want 1 and %d", ok, pending, n-1)
	}
	it, err := s.IntentOf(ctx, ledger.IntentIssue, "900")
	must(t, err)
	if it.Attempts != 1 || it.Status != ledger.IntentPending {
		t.Errorf("intent = %+v, want pending at attempt 1", it)
	}
	sameTime(t, "AttemptedAt", it.AttemptedAt, clk.Now())
	for i, err := range errs {
		if err == nil {
			if it.Ref != fmt.Sprint("run#", i) {
				t.Errorf("Ref = %q, the winner was run#%d", it.Ref, i)
			}
			continue
		}
		if got := refused[i]; got.Attempts != 1 || got.Ref != it.Ref || !got.PreviousAttemptAt.Equal(it.AttemptedAt) {
			t.Errorf("caller %d was refused with %+v, want the winner's attempt %+v", i, got, it)
		}
	}
}

// Reconcilers that all found the same stale attempt race to take it over: exactly one wins.
func testRaceTakeOverIntent(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	target := ledger.QualificationTarget(77, 1)
	first, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: "in_77"})
	must(t, err)
	clk.Advance(10 * time.Minute)
	staleBefore := clk.Now().Add(-5 * time.Minute)
	const n = 200
	lost := make([]ledger.Intent, n)
	errs := race(n, func(i int) error {
		it, err := s.TakeOverIntent(ctx, ledger.IntentQualify, target, first.Attempts, staleBefore)
		lost[i] = it
		return err
	})
	ok, conflicts := tally(t, errs, ledger.ErrConflict)
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d took over, %d got ErrConflict; want 1 and %d", ok, conflicts, n-1)
	}
	it, err := s.IntentOf(ctx, ledger.IntentQualify, target)
	must(t, err)
	if it.Attempts != 2 || it.Status != ledger.IntentPending || it.Ref != "in_77" {
		t.Errorf("intent = %+v, want pending at attempt 2", it)
	}
	sameTime(t, "AttemptedAt", it.AttemptedAt, clk.Now())
	for i, err := range errs {
		if err != nil && lost[i].Attempts != 2 {
			t.Errorf("caller %d lost with %+v, want the intent at attempt 2", i, lost[i])
		}
	}
	pending, err := s.PendingIntents(ctx, ledger.IntentQualify)
	must(t, err)
	if len(pending) != 1 || pending[0].Attempts != 2 {
		t.Errorf("PendingIntents = %+v", pending)
	}
}

func testRaceMapCustomer(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 50
	errs := race(n, func(i int) error {
		_, err := s.MapCustomer(ctx, "cus_race", int64(1000+i%5), "email_index")
		return err
	})
	ok, conflicts := tally(t, errs, ledger.ErrConflict)
	m, err := s.CustomerMapping(ctx, "cus_race")
	must(t, err)
	// Every goroutine mapping the winning lead succeeds (no-op); every other one conflicts.
	if ok != n/5 || conflicts != n-n/5 {
		t.Errorf("%d mapped, %d conflicts (winner lead %d)", ok, conflicts, m.LeadID)
	}
}

// rematchSetup qualifies lead for referrer 100, matches reward (the referrer's, definition 7)
// and the lead's coupon (lead*10, definition 8) to that qualification, reverses it and qualifies
// the lead again: the reward's match should move from the first to the second.
func rematchSetup(t *testing.T, s ledger.Store, lead, reward int64) (from, to ledger.Qualification) {
	t.Helper()
	ctx := ctxT(t)
	from, err := s.Qualify(ctx, qual(lead, 100, at(3, 1)))
	must(t, err)
	see(t, s, reward, 7, 100)
	see(t, s, lead*10, 8, lead)
	must(t, s.MatchDueReward(ctx, reward, from.Ref(), slotOf(100, 7)))
	must(t, s.MatchDueReward(ctx, lead*10, from.Ref(), slotOf(lead, 8)))
	_, err = s.Reverse(ctx, from.Ref(), at(5, 1), "refund")
	must(t, err)
	to, err = s.Qualify(ctx, qual(lead, 100, at(7, 1)))
	must(t, err)
	return from, to
}

// Concurrent sweeps moving the same match: one moves it, the others find it moved (no-op).
func testRaceRematchSame(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	from, to := rematchSetup(t, s, 41, 700)
	const n = 20
	errs := race(n, func(int) error { return s.RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slotOf(100, 7)) })
	if ok, _ := tally(t, errs, nil); ok != n {
		t.Errorf("%d of %d rematches succeeded", ok, n)
	}
	wantSlots(t, s, map[int64]map[ledger.QualificationRef]map[int64]int64{
		100: {from.Ref(): nil, to.Ref(): {7: 700}},
		41:  {from.Ref(): {8: 410}, to.Ref(): nil},
	})
	wantDue(t, s, map[int64]ledger.QualificationRef{700: to.Ref(), 410: from.Ref()})
	wantBacks(t, s, 41, to.Ref(), 700)
	// from's slot is free: a match on it passes its condition.
	see(t, s, 701, 7, 100)
	must(t, s.MatchDueReward(ctx, 701, from.Ref(), slotOf(100, 7)))
}

// Moving reward A's match into a qualification's slot races with matching reward B into the
// same slot: exactly one of A and B gets it, every caller on that side succeeds (the rest are
// no-ops), every caller on the other side gets ErrConflict, and the lead's slot is untouched.
func testRaceRematchOrMatch(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const a, b = 710, 711
	from, to := rematchSetup(t, s, 42, a)
	see(t, s, b, 7, 100)
	const n = 20
	errs := race(n, func(i int) error {
		if i%2 == 0 {
			return s.RematchDueReward(ctx, a, from.Ref(), to.Ref(), slotOf(100, 7))
		}
		return s.MatchDueReward(ctx, b, to.Ref(), slotOf(100, 7))
	})
	tally(t, errs, ledger.ErrConflict)
	latest, err := s.LatestQualification(ctx, 42) // to's qualification item
	must(t, err)
	if latest.Ref() != to.Ref() || len(latest.MatchedDueRewardIDs) != 1 {
		t.Fatalf("qualification item = %+v, want it backing %d or %d", latest, a, b)
	}
	winner := latest.MatchedDueRewardIDs[0]
	if winner != a && winner != b {
		t.Fatalf("qualification item = %+v, want it backing %d or %d", latest, a, b)
	}
	for i, err := range errs {
		side := int64(a)
		if i%2 == 1 {
			side = b
		}
		if (side == winner) != (err == nil) {
			t.Errorf("caller %d (reward %d) got %v; %d won", i, side, err, winner)
		}
	}
	fromSlots := map[int64]int64(nil)
	dues := map[int64]ledger.QualificationRef{a: to.Ref(), b: {}, 420: from.Ref()}
	if winner == b {
		fromSlots = map[int64]int64{7: a}
		dues = map[int64]ledger.QualificationRef{a: from.Ref(), b: to.Ref(), 420: from.Ref()}
	}
	wantSlots(t, s, map[int64]map[ledger.QualificationRef]map[int64]int64{
		100: {from.Ref(): fromSlots, to.Ref(): {7: winner}},
		42:  {from.Ref(): {8: 420}, to.Ref(): nil},
	})
	wantDue(t, s, dues)
}

// Rewards of one definition for one recipient race for a qualification's slot while the lead's
// coupon is matched to its own slot of the same qualification, again and again: exactly one of
// the first kind wins, the coupon always succeeds, and the item backs both.
func testRaceMatchSlots(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	q, err := s.Qualify(ctx, qual(43, 100, at(3, 1)))
	must(t, err)
	const n = 20
	for i := range n / 2 {
		see(t, s, int64(720+i), 7, 100)
	}
	see(t, s, 430, 8, 43)
	errs := race(n, func(i int) error {
		if i%2 == 0 {
			return s.MatchDueReward(ctx, int64(720+i/2), q.Ref(), slotOf(100, 7))
		}
		return s.MatchDueReward(ctx, 430, q.Ref(), slotOf(43, 8))
	})
	var winner int64
	for i, err := range errs {
		switch {
		case i%2 == 1 && err != nil:
			t.Errorf("the coupon's match %d: %v", i, err)
		case i%2 == 0 && err == nil:
			if winner != 0 {
				t.Errorf("rewards %d and %d both took the slot", winner, 720+i/2)
			}
			winner = int64(720 + i/2)
		case i%2 == 0 && !errors.Is(err, ledger.ErrConflict):
			t.Errorf("reward %d: %v, want ErrConflict", 720+i/2, err)
		}
	}
	if winner == 0 {
		t.Fatal("no reward took the slot")
	}
	wantBacks(t, s, 43, q.Ref(), 430, winner) // ascending
	wantSlots(t, s, map[int64]map[ledger.QualificationRef]map[int64]int64{
		100: {q.Ref(): {7: winner}},
		43:  {q.Ref(): {8: 430}},
	})
	for i := range n / 2 {
		id := int64(720 + i)
		r, err := s.DueRewardRecord(ctx, id)
		must(t, err)
		if (id == winner) != (r.Matched == q.Ref()) || (id != winner && !r.Matched.IsZero()) {
			t.Errorf("due reward %d matched to %+v (winner %d)", id, r.Matched, winner)
		}
	}
}
