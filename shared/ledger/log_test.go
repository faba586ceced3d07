package ledger_test

import (
	"bytes"
	"maps"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func testCheckpoint(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, err := s.LoadCheckpoint(ctx, "sweep")
	wantErr(t, err, ledger.ErrNotFound)
	for _, data := range [][]byte{[]byte(`{"metric":"amount","page":3}`), []byte(`{"metric":"coupon"}`), {}} {
		must(t, s.SaveCheckpoint(ctx, "sweep", data))
		got, err := s.LoadCheckpoint(ctx, "sweep")
		must(t, err)
		if !bytes.Equal(got, data) || got == nil {
			t.Errorf("LoadCheckpoint = %q, want %q", got, data)
		}
	}
	_, err = s.LoadCheckpoint(ctx, "other")
	wantErr(t, err, ledger.ErrNotFound)
	wantErr(t, s.SaveCheckpoint(ctx, "", nil), ledger.ErrInvalid)
}

func testDecisions(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	logged := []ledger.Decision{
		{Subject: "due#12", At: at(5, 1), Rule: "hold", Outcome: "wait", Reason: "hold until 2026-02-19",
			Inputs: map[string]string{"qualified_at": "2026-02-05", "hold_days": "14"}},
		{Subject: "due#12", At: at(3, 1), Rule: "match", Outcome: "matched", Reason: "oldest unmatched qualification"},
		{Subject: "due#12", At: at(20, 1), Rule: "hold", Outcome: "issue", Reason: "hold elapsed"},
		{Subject: "invoice#in_1", Rule: "match", Outcome: "unmatched", Reason: "no lead"}, // At: now
	}
	for _, d := range logged {
		must(t, s.LogDecision(ctx, d))
	}
	got, err := s.Decisions(ctx, "due#12")
	must(t, err)
	if len(got) != 3 {
		t.Fatalf("Decisions = %+v", got)
	}
	for i, want := range []ledger.Decision{logged[1], logged[0], logged[2]} {
		if got[i].Outcome != want.Outcome || got[i].Rule != want.Rule || got[i].Reason != want.Reason ||
			!maps.Equal(got[i].Inputs, want.Inputs) {
			t.Errorf("Decisions[%d] = %+v, want %+v", i, got[i], want)
		}
		sameTime(t, "At", got[i].At, want.At)
		sameTime(t, "ExpiresAt", got[i].ExpiresAt, want.At.Add(ledger.DefaultDecisionRetention).Truncate(time.Second).Add(time.Second))
	}
	inv, err := s.Decisions(ctx, "invoice#in_1")
	must(t, err)
	if len(inv) != 1 || inv[0].Subject != "invoice#in_1" {
		t.Errorf("Decisions(invoice) = %+v", inv)
	}
	sameTime(t, "default At", inv[0].At, clk.Now())
	none, err := s.Decisions(ctx, "due#404")
	must(t, err)
	if len(none) != 0 {
		t.Errorf("Decisions(unknown) = %+v", none)
	}
	wantErr(t, s.LogDecision(ctx, ledger.Decision{Outcome: "x"}), ledger.ErrInvalid)
}

// Entries expire after the retention, whether or not TTL has deleted them yet.
func testDecisionRetention(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t, ledger.WithDecisionRetention(48*time.Hour))
	ctx := ctxT(t)
	must(t, s.LogDecision(ctx, ledger.Decision{Subject: "lead#1", Outcome: "old"}))
	clk.Advance(24 * time.Hour)
	must(t, s.LogDecision(ctx, ledger.Decision{Subject: "lead#1", Outcome: "new"}))
	clk.Advance(25 * time.Hour) // the first is 49 h old, the second 25 h
	got, err := s.Decisions(ctx, "lead#1")
	must(t, err)
	if len(got) != 1 || got[0].Outcome != "new" {
		t.Errorf("Decisions after 49 h = %+v", got)
	}
	clk.Advance(24 * time.Hour)
	got, err = s.Decisions(ctx, "lead#1")
	must(t, err)
	if len(got) != 0 {
		t.Errorf("Decisions after 73 h = %+v", got)
	}
}
