package ledger_test

import (
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func unmatched(invoice, customer, email string, next time.Time) ledger.Unmatched {
	return ledger.Unmatched{InvoiceID: invoice, CustomerID: customer, EmailHash: ledger.HashEmail(email),
		AmountMinor: 2000, Currency: "usd", ChargeID: "ch_" + invoice, Reason: "no_lead", PaidAt: at(1, 1),
		RetryUntil: at(4, 1), NextRetryAt: next}
}

func invoices(us []ledger.Unmatched) []string {
	var ids []string
	for _, u := range us {
		ids = append(ids, u.InvoiceID)
	}
	return ids
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testUnmatched(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	now := clk.Now()
	for _, u := range []ledger.Unmatched{
		unmatched("in_c", "cus_1", "one@example.com", now.Add(-time.Minute)),
		unmatched("in_a", "cus_2", "two@example.com", now.Add(-time.Hour)),
		unmatched("in_b", "", "one@example.com", now.Add(-time.Minute)), // same time as in_c
		unmatched("in_future", "cus_1", "", now.Add(time.Hour)),
	} {
		got, err := s.RecordUnmatched(ctx, u)
		must(t, err)
		if got.Status != ledger.UnmatchedWaiting || got.Retries != 0 {
			t.Errorf("recorded %+v", got)
		}
		sameTime(t, "NextRetryAt", got.NextRetryAt, u.NextRetryAt)
	}
	// Recording again (a redelivered invoice.paid) keeps the first record.
	dup := unmatched("in_a", "cus_9", "", now.Add(time.Hour))
	dup.Reason = "other"
	got, err := s.RecordUnmatched(ctx, dup)
	must(t, err)
	if got.CustomerID != "cus_2" || got.Reason != "no_lead" || got.ChargeID != "ch_in_a" {
		t.Errorf("re-recording changed the record: %+v", got)
	}
	sameTime(t, "NextRetryAt after re-recording", got.NextRetryAt, now.Add(-time.Hour))
	// Without NextRetryAt the first retry is now.
	first, err := s.RecordUnmatched(ctx, ledger.Unmatched{InvoiceID: "in_now", Currency: "eur", AmountMinor: 1})
	must(t, err)
	sameTime(t, "default NextRetryAt", first.NextRetryAt, now)

	// Every waiting invoice counts, due for a retry or not.
	if n, err := s.UnmatchedWaitingCount(ctx); err != nil || n != 5 {
		t.Errorf("UnmatchedWaitingCount = %d %v, want 5", n, err)
	}
	due, err := s.UnmatchedDue(ctx, now, 10)
	must(t, err)
	if want := []string{"in_a", "in_b", "in_c", "in_now"}; !equalIDs(invoices(due), want) {
		t.Errorf("UnmatchedDue = %v, want %v", invoices(due), want)
	}
	due, err = s.UnmatchedDue(ctx, now, 2)
	must(t, err)
	if want := []string{"in_a", "in_b"}; !equalIDs(invoices(due), want) {
		t.Errorf("UnmatchedDue limit 2 = %v, want %v", invoices(due), want)
	}
	u, err := s.UnmatchedInvoice(ctx, "in_a")
	must(t, err)
	if u.EmailHash != ledger.HashEmail("two@example.com") || u.AmountMinor != 2000 || u.Currency != "usd" {
		t.Errorf("UnmatchedInvoice = %+v", u)
	}
	sameTime(t, "PaidAt", u.PaidAt, at(1, 1))
	sameTime(t, "RetryUntil", u.RetryUntil, at(4, 1))

	// A lead created later looks for its waiting invoices by customer or email.
	cases := []struct {
		customer, email string
		want            []string
	}{
		{"cus_1", "", []string{"in_c", "in_future"}},
		{"", ledger.HashEmail("one@example.com"), []string{"in_b", "in_c"}},
		{"cus_2", ledger.HashEmail("one@example.com"), []string{"in_a", "in_b", "in_c"}},
		{"cus_none", "", nil},
	}
	for _, tc := range cases {
		got, err := s.UnmatchedFor(ctx, tc.customer, tc.email)
		must(t, err)
		if !equalIDs(invoices(got), tc.want) {
			t.Errorf("UnmatchedFor(%q, %.8s) = %v, want %v", tc.customer, tc.email, invoices(got), tc.want)
		}
	}

	_, err = s.UnmatchedInvoice(ctx, "in_none")
	wantErr(t, err, ledger.ErrNotFound)
	for name, bad := range map[string]ledger.Unmatched{
		"no invoice":   {Currency: "usd"},
		"bad currency": {InvoiceID: "in_x", Currency: "USD"},
		"raw email":    {InvoiceID: "in_x", EmailHash: "x@example.com"},
	} {
		if _, err := s.RecordUnmatched(ctx, bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantErr(t, err, ledger.ErrInvalid)
		}
	}
	_, err = s.UnmatchedDue(ctx, now, 0)
	wantErr(t, err, ledger.ErrInvalid)
	_, err = s.UnmatchedFor(ctx, "", "")
	wantErr(t, err, ledger.ErrInvalid)
}

func testUnmatchedResolution(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	now := clk.Now()
	for _, id := range []string{"in_1", "in_2", "in_3"} {
		_, err := s.RecordUnmatched(ctx, unmatched(id, "cus_"+id, "", now.Add(-time.Minute)))
		must(t, err)
	}

	// Retried and still unmatched: moved to later, with the new reason.
	next := now.Add(30 * time.Minute)
	re, err := s.RescheduleUnmatched(ctx, "in_1", next, "rf_404_all_campaigns")
	must(t, err)
	if re.Retries != 1 || re.Reason != "rf_404_all_campaigns" || re.Status != ledger.UnmatchedWaiting {
		t.Errorf("rescheduled = %+v", re)
	}
	sameTime(t, "NextRetryAt", re.NextRetryAt, next)

	clk.Advance(time.Second)
	matched, err := s.ResolveUnmatched(ctx, "in_2", ledger.UnmatchedMatched, "lead 42 created")
	must(t, err)
	if matched.Status != ledger.UnmatchedMatched || matched.ResolutionReason != "lead 42 created" {
		t.Errorf("resolved = %+v", matched)
	}
	sameTime(t, "ResolvedAt", matched.ResolvedAt, clk.Now())

	due, err := s.UnmatchedDue(ctx, clk.Now(), 10)
	must(t, err)
	if !equalIDs(invoices(due), []string{"in_3"}) {
		t.Errorf("UnmatchedDue = %v, want [in_3]", invoices(due))
	}
	due, err = s.UnmatchedDue(ctx, next, 10)
	must(t, err)
	if !equalIDs(invoices(due), []string{"in_3", "in_1"}) {
		t.Errorf("UnmatchedDue at the rescheduled time = %v", invoices(due))
	}
	waiting, err := s.UnmatchedFor(ctx, "cus_in_2", "")
	must(t, err)
	if len(waiting) != 0 {
		t.Errorf("a resolved invoice is still waiting: %v", invoices(waiting))
	}

	// Resolving the same way again is a no-op; anything else conflicts with the resolution.
	again, err := s.ResolveUnmatched(ctx, "in_2", ledger.UnmatchedMatched, "again")
	must(t, err)
	if again.ResolutionReason != "lead 42 created" {
		t.Errorf("resolving again changed the reason: %+v", again)
	}
	_, err = s.ResolveUnmatched(ctx, "in_2", ledger.UnmatchedExpired, "retry window over")
	wantErr(t, err, ledger.ErrConflict)
	_, err = s.RescheduleUnmatched(ctx, "in_2", next, "")
	wantErr(t, err, ledger.ErrConflict)

	exp, err := s.ResolveUnmatched(ctx, "in_3", ledger.UnmatchedExpired, "retry window over")
	must(t, err)
	if exp.Status != ledger.UnmatchedExpired {
		t.Errorf("expired = %+v", exp)
	}
	_, err = s.ResolveUnmatched(ctx, "in_none", ledger.UnmatchedMatched, "")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.RescheduleUnmatched(ctx, "in_none", next, "")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.ResolveUnmatched(ctx, "in_1", ledger.UnmatchedWaiting, "")
	wantErr(t, err, ledger.ErrInvalid)
	_, err = s.RescheduleUnmatched(ctx, "in_1", time.Time{}, "")
	wantErr(t, err, ledger.ErrInvalid)
	// Resolved invoices leave the count: in_1 still waits, in_2 matched, in_3 expired.
	if n, err := s.UnmatchedWaitingCount(ctx); err != nil || n != 1 {
		t.Errorf("UnmatchedWaitingCount = %d %v, want 1", n, err)
	}
}
