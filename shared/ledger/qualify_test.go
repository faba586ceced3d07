package ledger_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func qual(lead, referrer int64, when time.Time) ledger.Qualification {
	return ledger.Qualification{LeadID: lead, ReferrerID: referrer, At: when,
		Origin: ledger.OriginRefbridge, InvoiceID: fmt.Sprintf("in_%d", lead), Rule: "metadata_id"}
}

func testQualifyOnce(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, err := s.StandingQualification(ctx, 1)
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.LatestQualification(ctx, 1)
	wantErr(t, err, ledger.ErrNotFound)

	// A non-UTC time is stored as the same instant in UTC, to the nanosecond.
	when := at(3, 10).In(time.FixedZone("CET", 3600))
	q, err := s.Qualify(ctx, qual(1, 100, when))
	must(t, err)
	if q.Seq != 1 || !q.Standing() || q.ReferrerID != 100 || q.Origin != ledger.OriginRefbridge || q.Rule != "metadata_id" {
		t.Errorf("qualification = %+v", q)
	}
	sameTime(t, "At", q.At, at(3, 10))

	second := qual(1, 100, at(4, 10))
	second.Origin = ledger.OriginRFWebhook
	existing, err := s.Qualify(ctx, second)
	wantErr(t, err, ledger.ErrAlreadyQualified)
	if existing.Seq != 1 || existing.Origin != ledger.OriginRefbridge {
		t.Errorf("ErrAlreadyQualified returned %+v, want the standing one", existing)
	}
	sameTime(t, "existing At", existing.At, at(3, 10))

	standing, err := s.StandingQualification(ctx, 1)
	must(t, err)
	if standing.Seq != 1 || standing.InvoiceID != q.InvoiceID {
		t.Errorf("standing = %+v", standing)
	}
	sameTime(t, "standing At", standing.At, at(3, 10))

	for name, bad := range map[string]ledger.Qualification{
		"no lead":    {Origin: ledger.OriginOther},
		"bad origin": {LeadID: 2, Origin: "stripe"},
	} {
		if _, err := s.Qualify(ctx, bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantErr(t, err, ledger.ErrInvalid)
		}
	}
}

func testReverseThenRequalify(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	_, err := s.Reverse(ctx, 5, at(5, 1), "refund")
	wantErr(t, err, ledger.ErrNotFound)

	q1, err := s.Qualify(ctx, qual(5, 100, at(3, 10)))
	must(t, err)
	if n := ledger.NextQualificationSeq(q1, true); n != 1 {
		t.Errorf("NextQualificationSeq(standing 1) = %d", n)
	}
	rev, err := s.Reverse(ctx, 5, at(5, 1), "refund re_1")
	must(t, err)
	if rev.Seq != 1 || rev.Standing() || rev.ReversalReason != "refund re_1" {
		t.Errorf("reversed = %+v", rev)
	}
	sameTime(t, "ReversedAt", rev.ReversedAt, at(5, 1))
	_, err = s.StandingQualification(ctx, 5)
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.Reverse(ctx, 5, at(5, 2), "again")
	wantErr(t, err, ledger.ErrNotFound)
	latest, err := s.LatestQualification(ctx, 5)
	must(t, err)
	if latest.Seq != 1 || latest.Standing() || latest.ReversalReason != "refund re_1" {
		t.Errorf("latest = %+v", latest)
	}
	if n := ledger.NextQualificationSeq(latest, true); n != 2 {
		t.Errorf("NextQualificationSeq(reversed 1) = %d", n)
	}

	// A won dispute restores the lead: a NEW qualification, the reversed one stays reversed.
	clk.Advance(time.Hour)
	restore := qual(5, 100, time.Time{}) // At zero: now
	q2, err := s.Qualify(ctx, restore)
	must(t, err)
	if q2.Seq != 2 || !q2.Standing() {
		t.Errorf("requalified = %+v", q2)
	}
	sameTime(t, "default At", q2.At, clk.Now())
	_, err = s.Qualify(ctx, qual(5, 100, at(6, 1)))
	wantErr(t, err, ledger.ErrAlreadyQualified)

	all, err := s.QualificationsFor(ctx, 100)
	must(t, err)
	if len(all) != 2 || all[0].Seq != 1 || all[0].Standing() || all[1].Seq != 2 || !all[1].Standing() {
		t.Errorf("QualificationsFor = %+v", all)
	}
	sameTime(t, "index ReversedAt", all[0].ReversedAt, at(5, 1))
}

// Due rewards go to the referrer or to the lead: a user's candidates are the qualifications of
// the leads they referred and their own, oldest first.
func testQualificationsFor(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const referrer, grand = 100, 50
	for _, q := range []ledger.Qualification{
		qual(11, referrer, at(9, 1)),
		qual(12, referrer, at(3, 1)),
		qual(referrer, grand, at(5, 1)), // the referrer was referred too
		qual(13, 999, at(1, 1)),         // someone else's lead
		qual(14, 0, at(2, 1)),           // referrer unknown
	} {
		_, err := s.Qualify(ctx, q)
		must(t, err)
	}
	cases := []struct {
		recipient int64
		leads     []int64
	}{
		{referrer, []int64{12, referrer, 11}},
		{grand, []int64{referrer}},
		{11, []int64{11}},
		{14, []int64{14}},
		{404, nil},
	}
	for _, tc := range cases {
		got, err := s.QualificationsFor(ctx, tc.recipient)
		must(t, err)
		var leads []int64
		for _, q := range got {
			leads = append(leads, q.LeadID)
		}
		if len(leads) != len(tc.leads) {
			t.Errorf("QualificationsFor(%d) = %v, want %v", tc.recipient, leads, tc.leads)
			continue
		}
		for i := range leads {
			if leads[i] != tc.leads[i] {
				t.Errorf("QualificationsFor(%d) = %v, want %v", tc.recipient, leads, tc.leads)
				break
			}
		}
	}
	got, err := s.QualificationsFor(ctx, referrer)
	must(t, err)
	sameTime(t, "oldest At", got[0].At, at(3, 1))
}

func testMatchDueReward(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	q, err := s.Qualify(ctx, qual(21, 100, at(3, 1)))
	must(t, err)
	other, err := s.Qualify(ctx, qual(22, 100, at(4, 1)))
	must(t, err)
	for _, id := range []int64{501, 502} {
		_, err := s.SeeDueReward(ctx, ledger.DueReward{ID: id, RewardID: 7, RecipientID: 100, Metric: "amount"})
		must(t, err)
	}

	err = s.MatchDueReward(ctx, 503, q.Ref())
	wantErr(t, err, ledger.ErrNotFound) // due reward never seen
	err = s.MatchDueReward(ctx, 501, ledger.QualificationRef{LeadID: 21, Seq: 9})
	wantErr(t, err, ledger.ErrNotFound) // no such qualification

	must(t, s.MatchDueReward(ctx, 501, q.Ref()))
	must(t, s.MatchDueReward(ctx, 501, q.Ref())) // the same pair again: no-op
	wantErr(t, s.MatchDueReward(ctx, 502, q.Ref()), ledger.ErrConflict)
	wantErr(t, s.MatchDueReward(ctx, 501, other.Ref()), ledger.ErrConflict)
	wantErr(t, s.MatchDueReward(ctx, 0, q.Ref()), ledger.ErrInvalid)

	r, err := s.DueRewardRecord(ctx, 501)
	must(t, err)
	if r.Matched != q.Ref() {
		t.Errorf("due reward matched to %+v", r.Matched)
	}
	r, err = s.DueRewardRecord(ctx, 502)
	must(t, err)
	if !r.Matched.IsZero() {
		t.Errorf("a rejected match was recorded: %+v", r.Matched)
	}
	st, err := s.StandingQualification(ctx, 21)
	must(t, err)
	if st.MatchedDueRewardID != 501 {
		t.Errorf("qualification matched to %d", st.MatchedDueRewardID)
	}
	// The recipients' index shows the match (and a later reversal) too.
	_, err = s.Reverse(ctx, 21, at(6, 1), "dispute")
	must(t, err)
	for _, recipient := range []int64{100, 21} {
		all, err := s.QualificationsFor(ctx, recipient)
		must(t, err)
		if len(all) == 0 || all[0].LeadID != 21 || all[0].MatchedDueRewardID != 501 || all[0].Standing() {
			t.Errorf("QualificationsFor(%d)[0] = %+v", recipient, all)
		}
	}
	// A reversed qualification can still be matched (the sweep then cancels its reward).
	must(t, s.MatchDueReward(ctx, 502, other.Ref()))
}

// matchState is what a reader sees of a rematch: each due reward's match, and each
// qualification's match in every recipient's index copy and in the qualification item (the
// lead's latest, when it is the latest).
type matchState struct {
	due    map[int64]ledger.QualificationRef
	copies map[int64]map[ledger.QualificationRef]int64 // recipient → qualification → matched reward
}

func readMatches(t *testing.T, s ledger.Store, dues []int64, recipients []int64) matchState {
	t.Helper()
	ctx := ctxT(t)
	st := matchState{due: map[int64]ledger.QualificationRef{}, copies: map[int64]map[ledger.QualificationRef]int64{}}
	for _, id := range dues {
		r, err := s.DueRewardRecord(ctx, id)
		must(t, err)
		st.due[id] = r.Matched
	}
	for _, u := range recipients {
		qs, err := s.QualificationsFor(ctx, u)
		must(t, err)
		st.copies[u] = map[ledger.QualificationRef]int64{}
		for _, q := range qs {
			st.copies[u][q.Ref()] = q.MatchedDueRewardID
		}
	}
	return st
}

// wantMatches checks that every recipient's index copy of each qualification shows the reward
// that want says, and that each due reward is matched back to the qualification showing it.
func wantMatches(t *testing.T, s ledger.Store, recipients []int64, want map[ledger.QualificationRef]int64, dues []int64) {
	t.Helper()
	st := readMatches(t, s, dues, recipients)
	for _, u := range recipients {
		for ref, id := range want {
			got, ok := st.copies[u][ref]
			if !ok {
				continue // not this recipient's
			}
			if got != id {
				t.Errorf("QualificationsFor(%d): %d/%d matched to %d, want %d", u, ref.LeadID, ref.Seq, got, id)
			}
		}
	}
	for _, id := range dues {
		var want0 ledger.QualificationRef
		for ref, rid := range want {
			if rid == id {
				want0 = ref
			}
		}
		if st.due[id] != want0 {
			t.Errorf("due reward %d matched to %+v, want %+v", id, st.due[id], want0)
		}
	}
}

// A reward matched to a qualification that was reversed follows the lead's new qualification:
// RF keeps the one due reward, so the sweep moves the match instead of canceling it.
func testRematchDueReward(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const referrer = 100
	q1, err := s.Qualify(ctx, qual(31, referrer, at(3, 1)))
	must(t, err)
	q3, err := s.Qualify(ctx, qual(32, referrer, at(4, 1))) // another lead of the referrer
	must(t, err)
	for _, id := range []int64{601, 602, 603} {
		_, err := s.SeeDueReward(ctx, ledger.DueReward{ID: id, RewardID: 7, RecipientID: referrer, Metric: "amount"})
		must(t, err)
	}
	must(t, s.MatchDueReward(ctx, 601, q1.Ref()))
	must(t, s.MatchDueReward(ctx, 602, q3.Ref()))
	_, err = s.Reverse(ctx, 31, at(5, 1), "refund re_1")
	must(t, err)
	q2, err := s.Qualify(ctx, qual(31, referrer, at(7, 1))) // the lead qualifies again
	must(t, err)
	if q2.Seq != 2 {
		t.Fatalf("requalified = %+v", q2)
	}
	recipients := []int64{referrer, 31, 32}
	dues := []int64{601, 602, 603}
	before := map[ledger.QualificationRef]int64{q1.Ref(): 601, q2.Ref(): 0, q3.Ref(): 602}
	wantMatches(t, s, recipients, before, dues)

	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
	}{
		"no reward":    {0, q1.Ref(), q2.Ref()},
		"negative":     {-601, q1.Ref(), q2.Ref()},
		"no from":      {601, ledger.QualificationRef{}, q2.Ref()},
		"no from seq":  {601, ledger.QualificationRef{LeadID: 31}, q2.Ref()},
		"no to":        {601, q1.Ref(), ledger.QualificationRef{}},
		"no to lead":   {601, q1.Ref(), ledger.QualificationRef{Seq: 2}},
		"from is to":   {601, q1.Ref(), q1.Ref()},
		"same unknown": {601, ledger.QualificationRef{LeadID: 39, Seq: 1}, ledger.QualificationRef{LeadID: 39, Seq: 1}},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
	}{
		"to missing":     {601, q1.Ref(), ledger.QualificationRef{LeadID: 31, Seq: 9}},
		"from missing":   {601, ledger.QualificationRef{LeadID: 33, Seq: 1}, q2.Ref()},
		"reward missing": {699, q1.Ref(), q2.Ref()},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("%s: error %v, want ErrNotFound", name, err)
		}
	}
	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
	}{
		"reward matched elsewhere": {602, q1.Ref(), q2.Ref()}, // 602 is q3's
		"reward not matched":       {603, q1.Ref(), q2.Ref()},
		"to matched to another":    {601, q1.Ref(), q3.Ref()}, // q3 is 602's
		"from is not the match":    {601, q3.Ref(), q2.Ref()},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to); !errors.Is(err, ledger.ErrConflict) {
			t.Errorf("%s: error %v, want ErrConflict", name, err)
		}
	}
	wantMatches(t, s, recipients, before, dues) // nothing refused changed anything

	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref()))
	after := map[ledger.QualificationRef]int64{q1.Ref(): 0, q2.Ref(): 601, q3.Ref(): 602}
	wantMatches(t, s, recipients, after, dues)
	latest, err := s.LatestQualification(ctx, 31) // the qualification item itself
	must(t, err)
	if latest.Ref() != q2.Ref() || latest.MatchedDueRewardID != 601 || !latest.Standing() {
		t.Errorf("latest qualification of lead 31 = %+v", latest)
	}
	all, err := s.QualificationsFor(ctx, referrer)
	must(t, err)
	if len(all) != 3 || all[0].Ref() != q1.Ref() || all[0].Standing() || all[2].Ref() != q2.Ref() || !all[2].Standing() {
		t.Errorf("QualificationsFor(%d) = %+v", referrer, all)
	}

	// A repeat (a lost response, a second sweep) is a no-op.
	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref()))
	wantMatches(t, s, recipients, after, dues)
	// Moving it on from a qualification it is no longer matched to conflicts.
	wantErr(t, s.RematchDueReward(ctx, 601, q1.Ref(), q3.Ref()), ledger.ErrConflict)
	wantMatches(t, s, recipients, after, dues)

	// from is free again, in the qualification item too (MatchDueReward's condition reads it).
	must(t, s.MatchDueReward(ctx, 603, q1.Ref()))
	after[q1.Ref()] = 603
	wantMatches(t, s, recipients, after, dues)
	// Still a no-op once from has another reward; moving back onto it conflicts.
	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref()))
	wantErr(t, s.RematchDueReward(ctx, 601, q2.Ref(), q1.Ref()), ledger.ErrConflict)
	wantMatches(t, s, recipients, after, dues)
}
