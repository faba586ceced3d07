package ledger_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
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
	first := ledger.QualificationRef{LeadID: 5, Seq: 1}
	_, err := s.Reverse(ctx, first, at(5, 1), "refund")
	wantErr(t, err, ledger.ErrNotFound)
	for _, bad := range []ledger.QualificationRef{{}, {LeadID: 5}, {Seq: 1}, {LeadID: -5, Seq: 1}} {
		_, err := s.Reverse(ctx, bad, at(5, 1), "refund")
		wantErr(t, err, ledger.ErrInvalid)
	}

	q1, err := s.Qualify(ctx, qual(5, 100, at(3, 10)))
	must(t, err)
	if n := ledger.NextQualificationSeq(q1, true); n != 1 {
		t.Errorf("NextQualificationSeq(standing 1) = %d", n)
	}
	_, err = s.Reverse(ctx, ledger.QualificationRef{LeadID: 5, Seq: 2}, at(5, 1), "a generation that does not exist")
	wantErr(t, err, ledger.ErrNotFound)
	rev, err := s.Reverse(ctx, q1.Ref(), at(5, 1), "refund re_1")
	must(t, err)
	if rev.Seq != 1 || rev.Standing() || rev.ReversalReason != "refund re_1" {
		t.Errorf("reversed = %+v", rev)
	}
	sameTime(t, "ReversedAt", rev.ReversedAt, at(5, 1))
	_, err = s.StandingQualification(ctx, 5)
	wantErr(t, err, ledger.ErrNotFound)
	// Reversed already: refused, with the qualification as the first reversal left it.
	again, err := s.Reverse(ctx, q1.Ref(), at(5, 2), "again")
	wantErr(t, err, ledger.ErrNotFound)
	if again.Seq != 1 || again.ReversalReason != "refund re_1" {
		t.Errorf("refused reversal returned %+v", again)
	}
	sameTime(t, "ReversedAt kept", again.ReversedAt, at(5, 1))
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
	// A reversal decided on the first generation never lands on the second.
	_, err = s.Reverse(ctx, q1.Ref(), at(6, 2), "a late redelivery of the first refund")
	wantErr(t, err, ledger.ErrNotFound)
	if st, err := s.StandingQualification(ctx, 5); err != nil || st.Seq != 2 {
		t.Errorf("standing after a stale reversal = %+v %v", st, err)
	}

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

func see(t *testing.T, s ledger.Store, id, rewardID, recipient int64) {
	t.Helper()
	_, err := s.SeeDueReward(ctxT(t), ledger.DueReward{ID: id, RewardID: rewardID, RecipientID: recipient, Metric: "amount"})
	must(t, err)
}

// slotOf is the slot of a reward definition for a recipient.
func slotOf(recipient, rewardID int64) ledger.RewardSlot {
	return ledger.RewardSlot{RecipientID: recipient, RewardID: rewardID}
}

// A qualification backs at most one due reward per recipient and reward definition: the
// referrer's dollars (definition 7), the referrer's bonus (definition 9) and the lead's coupon
// (definition 8) all stand on one qualification, while a second dollars for the referrer does not.
func testMatchDueReward(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const referrer, lead = 100, 21
	q, err := s.Qualify(ctx, qual(lead, referrer, at(3, 1)))
	must(t, err)
	other, err := s.Qualify(ctx, qual(22, referrer, at(4, 1)))
	must(t, err)
	see(t, s, 501, 7, referrer) // the referrer's dollars
	see(t, s, 502, 7, referrer) // another dollars for the referrer
	see(t, s, 511, 8, lead)     // the lead's coupon
	see(t, s, 512, 9, referrer) // the referrer's second definition

	wantErr(t, s.MatchDueReward(ctx, 503, q.Ref(), slotOf(referrer, 7)), ledger.ErrNotFound) // never seen
	wantErr(t, s.MatchDueReward(ctx, 501, ledger.QualificationRef{LeadID: lead, Seq: 9}, slotOf(referrer, 7)), ledger.ErrNotFound)
	for name, c := range map[string]struct {
		id   int64
		ref  ledger.QualificationRef
		slot ledger.RewardSlot
	}{
		"no reward":            {0, q.Ref(), slotOf(referrer, 7)},
		"no lead":              {501, ledger.QualificationRef{Seq: 1}, slotOf(referrer, 7)},
		"no seq":               {501, ledger.QualificationRef{LeadID: lead}, slotOf(referrer, 7)},
		"no recipient":         {501, q.Ref(), slotOf(0, 7)},
		"no definition":        {501, q.Ref(), slotOf(referrer, 0)},
		"negative definition":  {501, q.Ref(), slotOf(referrer, -7)},
		"not a recipient":      {501, q.Ref(), slotOf(22, 7)}, // another lead of the referrer
		"a stranger":           {501, q.Ref(), slotOf(999, 7)},
		"another definition":   {501, q.Ref(), slotOf(referrer, 8)}, // 501 was seen as definition 7
		"the other recipient":  {501, q.Ref(), slotOf(lead, 7)},     // 501 was seen for the referrer
		"the coupon elsewhere": {511, q.Ref(), slotOf(referrer, 8)},
	} {
		if err := s.MatchDueReward(ctx, c.id, c.ref, c.slot); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}

	must(t, s.MatchDueReward(ctx, 501, q.Ref(), slotOf(referrer, 7)))
	must(t, s.MatchDueReward(ctx, 501, q.Ref(), slotOf(referrer, 7)))                            // the same call again: no-op
	must(t, s.MatchDueReward(ctx, 511, q.Ref(), slotOf(lead, 8)))                                // the lead's slot is its own
	must(t, s.MatchDueReward(ctx, 512, q.Ref(), slotOf(referrer, 9)))                            // so is each definition's
	wantErr(t, s.MatchDueReward(ctx, 502, q.Ref(), slotOf(referrer, 7)), ledger.ErrConflict)     // slot taken
	wantErr(t, s.MatchDueReward(ctx, 501, other.Ref(), slotOf(referrer, 7)), ledger.ErrConflict) // matched elsewhere

	wantDue(t, s, map[int64]ledger.QualificationRef{501: q.Ref(), 502: {}, 511: q.Ref(), 512: q.Ref()})
	st, err := s.StandingQualification(ctx, lead)
	must(t, err)
	if !slices.Equal(st.MatchedDueRewardIDs, []int64{501, 511, 512}) || st.Slots != nil {
		t.Errorf("qualification item: backs %v, slots %v; want [501 511 512] and no slots", st.MatchedDueRewardIDs, st.Slots)
	}
	// Each recipient's index shows its own slots, and keeps them through a reversal.
	slotsBefore := map[int64]map[ledger.QualificationRef]map[int64]int64{
		referrer: {q.Ref(): {7: 501, 9: 512}, other.Ref(): nil},
		lead:     {q.Ref(): {8: 511}},
		22:       {other.Ref(): nil},
	}
	wantSlots(t, s, slotsBefore)
	rev, err := s.Reverse(ctx, q.Ref(), at(6, 1), "dispute")
	must(t, err)
	if !slices.Equal(rev.MatchedDueRewardIDs, []int64{501, 511, 512}) {
		t.Errorf("Reverse returned %+v", rev)
	}
	wantSlots(t, s, slotsBefore)
	latest, err := s.LatestQualification(ctx, lead)
	must(t, err)
	if latest.Standing() || !slices.Equal(latest.MatchedDueRewardIDs, []int64{501, 511, 512}) {
		t.Errorf("reversed qualification item = %+v", latest)
	}
	for _, u := range []int64{referrer, lead} {
		all, err := s.QualificationsFor(ctx, u)
		must(t, err)
		if len(all) == 0 || all[0].Ref() != q.Ref() || all[0].Standing() || all[0].MatchedDueRewardIDs != nil {
			t.Errorf("QualificationsFor(%d)[0] = %+v", u, all)
		}
	}
	// A reversed qualification can still be matched (the sweep then cancels its reward).
	must(t, s.MatchDueReward(ctx, 502, other.Ref(), slotOf(referrer, 7)))
	wantErr(t, s.MatchDueReward(ctx, 502, q.Ref(), slotOf(referrer, 7)), ledger.ErrConflict)

	// A lead with no referrer is its qualification's only recipient.
	alone, err := s.Qualify(ctx, qual(23, 0, at(5, 1)))
	must(t, err)
	see(t, s, 521, 8, 23)
	wantErr(t, s.MatchDueReward(ctx, 521, alone.Ref(), slotOf(referrer, 8)), ledger.ErrInvalid)
	must(t, s.MatchDueReward(ctx, 521, alone.Ref(), slotOf(23, 8)))

	// A reward seen without its definition and recipient gets the slot's, and keeps them.
	see(t, s, 530, 0, 0)
	must(t, s.MatchDueReward(ctx, 530, other.Ref(), slotOf(referrer, 9)))
	r, err := s.DueRewardRecord(ctx, 530)
	must(t, err)
	if r.RewardID != 9 || r.RecipientID != referrer || r.Matched != other.Ref() {
		t.Errorf("due reward 530 = %+v", r)
	}
	wantErr(t, s.MatchDueReward(ctx, 530, other.Ref(), slotOf(referrer, 7)), ledger.ErrInvalid)
	wantSlots(t, s, map[int64]map[ledger.QualificationRef]map[int64]int64{
		referrer: {q.Ref(): {7: 501, 9: 512}, other.Ref(): {7: 502, 9: 530}},
		22:       {other.Ref(): nil},
	})
}

// wantDue checks each due reward's match (zero: unmatched).
func wantDue(t *testing.T, s ledger.Store, want map[int64]ledger.QualificationRef) {
	t.Helper()
	for id, ref := range want {
		r, err := s.DueRewardRecord(ctxT(t), id)
		must(t, err)
		if r.Matched != ref {
			t.Errorf("due reward %d matched to %+v, want %+v", id, r.Matched, ref)
		}
	}
}

// wantSlots checks, for each recipient, the slots QualificationsFor shows on each of the listed
// qualifications (nil: none taken), and that it lists exactly those qualifications.
func wantSlots(t *testing.T, s ledger.Store, want map[int64]map[ledger.QualificationRef]map[int64]int64) {
	t.Helper()
	for u, refs := range want {
		qs, err := s.QualificationsFor(ctxT(t), u)
		must(t, err)
		if len(qs) != len(refs) {
			t.Errorf("QualificationsFor(%d) lists %d qualifications, want %d", u, len(qs), len(refs))
		}
		for _, q := range qs {
			w, ok := refs[q.Ref()]
			if !ok {
				t.Errorf("QualificationsFor(%d) lists %d/%d", u, q.LeadID, q.Seq)
				continue
			}
			if !maps.Equal(q.Slots, w) || (w == nil) != (q.Slots == nil) {
				t.Errorf("QualificationsFor(%d): %d/%d slots %v, want %v", u, q.LeadID, q.Seq, q.Slots, w)
			}
		}
	}
}

// wantBacks checks the lead's latest qualification item: which qualification it is and which
// rewards it backs.
func wantBacks(t *testing.T, s ledger.Store, lead int64, ref ledger.QualificationRef, ids ...int64) {
	t.Helper()
	q, err := s.LatestQualification(ctxT(t), lead)
	must(t, err)
	if q.Ref() != ref || !slices.Equal(q.MatchedDueRewardIDs, ids) || q.Slots != nil {
		t.Errorf("latest qualification of lead %d = %d/%d backing %v (slots %v), want %d/%d backing %v",
			lead, q.LeadID, q.Seq, q.MatchedDueRewardIDs, q.Slots, ref.LeadID, ref.Seq, ids)
	}
}

// A reward matched to a qualification that was reversed follows the lead's new qualification:
// RF keeps the one due reward, so the sweep moves the match instead of canceling it. Only that
// reward's slot moves; the reversed qualification's other slots stay.
func testRematchDueReward(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const referrer, lead = 100, 31
	q1, err := s.Qualify(ctx, qual(lead, referrer, at(3, 1)))
	must(t, err)
	q3, err := s.Qualify(ctx, qual(32, referrer, at(4, 1))) // another lead of the referrer
	must(t, err)
	for _, id := range []int64{601, 602, 603} {
		see(t, s, id, 7, referrer)
	}
	see(t, s, 611, 8, lead) // the lead's coupon
	dollars := slotOf(referrer, 7)
	must(t, s.MatchDueReward(ctx, 601, q1.Ref(), dollars))
	must(t, s.MatchDueReward(ctx, 611, q1.Ref(), slotOf(lead, 8)))
	must(t, s.MatchDueReward(ctx, 602, q3.Ref(), dollars))
	_, err = s.Reverse(ctx, q1.Ref(), at(5, 1), "refund re_1")
	must(t, err)
	q2, err := s.Qualify(ctx, qual(lead, referrer, at(7, 1))) // the lead qualifies again
	must(t, err)
	if q2.Seq != 2 {
		t.Fatalf("requalified = %+v", q2)
	}
	before := map[int64]map[ledger.QualificationRef]map[int64]int64{
		referrer: {q1.Ref(): {7: 601}, q3.Ref(): {7: 602}, q2.Ref(): nil},
		lead:     {q1.Ref(): {8: 611}, q2.Ref(): nil},
		32:       {q3.Ref(): nil},
	}
	dues := map[int64]ledger.QualificationRef{601: q1.Ref(), 602: q3.Ref(), 603: {}, 611: q1.Ref()}
	check := func(slots map[int64]map[ledger.QualificationRef]map[int64]int64, dues map[int64]ledger.QualificationRef) {
		t.Helper()
		wantSlots(t, s, slots)
		wantDue(t, s, dues)
	}
	check(before, dues)
	wantBacks(t, s, lead, q2.Ref())

	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
		slot     ledger.RewardSlot
	}{
		"no reward":             {0, q1.Ref(), q2.Ref(), dollars},
		"negative":              {-601, q1.Ref(), q2.Ref(), dollars},
		"no from":               {601, ledger.QualificationRef{}, q2.Ref(), dollars},
		"no from seq":           {601, ledger.QualificationRef{LeadID: lead}, q2.Ref(), dollars},
		"no to":                 {601, q1.Ref(), ledger.QualificationRef{}, dollars},
		"no to lead":            {601, q1.Ref(), ledger.QualificationRef{Seq: 2}, dollars},
		"from is to":            {601, q1.Ref(), q1.Ref(), dollars},
		"same unknown":          {601, ledger.QualificationRef{LeadID: 39, Seq: 1}, ledger.QualificationRef{LeadID: 39, Seq: 1}, dollars},
		"no recipient":          {601, q1.Ref(), q2.Ref(), slotOf(0, 7)},
		"no definition":         {601, q1.Ref(), q2.Ref(), slotOf(referrer, 0)},
		"not a recipient of to": {601, q1.Ref(), q3.Ref(), slotOf(lead, 8)}, // q3 is lead 32's
		"not a recipient":       {601, q1.Ref(), q2.Ref(), slotOf(32, 7)},
		"another definition":    {601, q1.Ref(), q2.Ref(), slotOf(referrer, 8)},
		"another recipient":     {601, q1.Ref(), q2.Ref(), slotOf(lead, 7)},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to, c.slot); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
	}{
		"to missing":     {601, q1.Ref(), ledger.QualificationRef{LeadID: lead, Seq: 9}},
		"from missing":   {601, ledger.QualificationRef{LeadID: 33, Seq: 1}, q2.Ref()},
		"reward missing": {699, q1.Ref(), q2.Ref()},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to, dollars); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("%s: error %v, want ErrNotFound", name, err)
		}
	}
	for name, c := range map[string]struct {
		id       int64
		from, to ledger.QualificationRef
	}{
		"reward matched elsewhere": {602, q1.Ref(), q2.Ref()}, // 602 is q3's
		"reward not matched":       {603, q1.Ref(), q2.Ref()},
		"to's slot taken":          {601, q1.Ref(), q3.Ref()}, // q3's dollars slot holds 602
		"from is not the match":    {601, q3.Ref(), q2.Ref()},
	} {
		if err := s.RematchDueReward(ctx, c.id, c.from, c.to, dollars); !errors.Is(err, ledger.ErrConflict) {
			t.Errorf("%s: error %v, want ErrConflict", name, err)
		}
	}
	check(before, dues) // nothing refused changed anything

	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref(), dollars))
	after := map[int64]map[ledger.QualificationRef]map[int64]int64{
		referrer: {q1.Ref(): nil, q3.Ref(): {7: 602}, q2.Ref(): {7: 601}},
		lead:     {q1.Ref(): {8: 611}, q2.Ref(): nil}, // the coupon stays where it was
		32:       {q3.Ref(): nil},
	}
	dues[601] = q2.Ref()
	check(after, dues)
	wantBacks(t, s, lead, q2.Ref(), 601)
	all, err := s.QualificationsFor(ctx, referrer)
	must(t, err)
	if len(all) != 3 || all[0].Ref() != q1.Ref() || all[0].Standing() || all[2].Ref() != q2.Ref() || !all[2].Standing() {
		t.Errorf("QualificationsFor(%d) = %+v", referrer, all)
	}

	// A repeat (a lost response, a second sweep) is a no-op.
	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref(), dollars))
	check(after, dues)
	// Moving it on from a qualification it is no longer matched to conflicts.
	wantErr(t, s.RematchDueReward(ctx, 601, q1.Ref(), q3.Ref(), dollars), ledger.ErrConflict)
	check(after, dues)

	// from's slot is free again (MatchDueReward's condition reads it); its other slot is not.
	must(t, s.MatchDueReward(ctx, 603, q1.Ref(), dollars))
	after[referrer][q1.Ref()] = map[int64]int64{7: 603}
	dues[603] = q1.Ref()
	check(after, dues)
	// Still a no-op once from has another reward; moving back onto it conflicts.
	must(t, s.RematchDueReward(ctx, 601, q1.Ref(), q2.Ref(), dollars))
	wantErr(t, s.RematchDueReward(ctx, 601, q2.Ref(), q1.Ref(), dollars), ledger.ErrConflict)
	check(after, dues)
	// The coupon follows too, into its own slot of the new qualification.
	must(t, s.RematchDueReward(ctx, 611, q1.Ref(), q2.Ref(), slotOf(lead, 8)))
	after[lead] = map[ledger.QualificationRef]map[int64]int64{q1.Ref(): nil, q2.Ref(): {8: 611}}
	dues[611] = q2.Ref()
	check(after, dues)
	wantBacks(t, s, lead, q2.Ref(), 601, 611)
}

// A Seq given to Qualify is the generation the caller decided about (rf-webhook reads the newest
// first): it is created only if it is the next one, never on a generation recorded or reversed
// since the caller read.
func testQualifyExpectedGeneration(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	ask := func(seq int64) ledger.Qualification {
		q := qual(1, 100, at(3, 10))
		q.Seq, q.Origin = seq, ledger.OriginRFWebhook
		return q
	}
	_, err := s.Qualify(ctx, ask(2)) // none recorded: only 1 can be next
	wantErr(t, err, ledger.ErrConflict)
	q1, err := s.Qualify(ctx, ask(1))
	must(t, err)
	if q1.Seq != 1 {
		t.Fatalf("generation 1 asked: %+v", q1)
	}
	_, err = s.Qualify(ctx, ask(1)) // standing: as without a Seq
	wantErr(t, err, ledger.ErrAlreadyQualified)
	if _, err := s.Reverse(ctx, q1.Ref(), at(4, 10), "refund"); err != nil {
		t.Fatal(err)
	}
	latest, err := s.Qualify(ctx, ask(1)) // the generation asked was reversed since
	wantErr(t, err, ledger.ErrConflict)
	if latest.Seq != 1 || latest.Standing() {
		t.Errorf("the conflict returned %+v, want the reversed newest", latest)
	}
	q2, err := s.Qualify(ctx, ask(2))
	must(t, err)
	if q2.Seq != 2 || !q2.Standing() {
		t.Errorf("generation 2 asked after the reversal: %+v", q2)
	}
}
