package ledger_test

import (
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
