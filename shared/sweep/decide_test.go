package sweep

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	rules := Rules{Hold: 14 * day}
	standing := &Qualification{At: now.Add(-15 * day)}
	fresh := &Qualification{At: now.Add(-3 * day)}
	reversed := &Qualification{At: now.Add(-20 * day), ReversedAt: now.Add(-day)}
	tests := []struct {
		name      string
		facts     Facts
		rules     Rules
		want      Action
		wantRule  string
		wantUntil time.Time
	}{
		{"hold elapsed", Facts{Metric: "amount", CanBeIssued: true, Qualification: standing}, rules, Issue, "issue", time.Time{}},
		{"hold not elapsed", Facts{Metric: "amount", CanBeIssued: true, Qualification: fresh}, rules, Wait, "hold", fresh.At.Add(14 * day)},
		{"hold boundary is inclusive", Facts{Metric: "amount", CanBeIssued: true, Qualification: &Qualification{At: now.Add(-14 * day)}}, rules, Issue, "issue", time.Time{}},
		{"reversed cancels even inside the hold", Facts{Metric: "amount", CanBeIssued: true, Qualification: reversed}, rules, Cancel, "reversed", time.Time{}},
		{"settled is never touched", Facts{Metric: "amount", CanBeIssued: true, Settled: true, Qualification: reversed}, rules, Skip, "settled", time.Time{}},
		{"no qualification: held from first seen", Facts{Metric: "coupon", CanBeIssued: true, FirstSeenAt: now.Add(-2 * day)}, rules, Wait, "hold", now.Add(12 * day)},
		{"no qualification, seen long ago", Facts{Metric: "coupon", CanBeIssued: true, FirstSeenAt: now.Add(-30 * day)}, rules, Issue, "issue", time.Time{}},
		{"RF cannot issue it", Facts{Metric: "coupon", CanBeIssued: false, Qualification: standing}, rules, Wait, "can_be_issued", time.Time{}},
		{"metric not allowed", Facts{Metric: "commission", CanBeIssued: true, Qualification: standing},
			Rules{Hold: 14 * day, AllowMetrics: []string{"amount", "coupon"}}, Wait, "metric", time.Time{}},
		{"cap reached", Facts{Metric: "amount", CanBeIssued: true, Qualification: standing, IssuedThisMonth: 2},
			Rules{Hold: 14 * day, MaxPerRecipient: 2}, Wait, "cap", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"under the cap", Facts{Metric: "amount", CanBeIssued: true, Qualification: standing, IssuedThisMonth: 1},
			Rules{Hold: 14 * day, MaxPerRecipient: 2}, Issue, "issue", time.Time{}},
		{"zero hold", Facts{Metric: "amount", CanBeIssued: true, Qualification: &Qualification{At: now}}, Rules{}, Issue, "issue", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.facts, tt.rules, now)
			if d.Action != tt.want || d.Rule != tt.wantRule || !d.Until.Equal(tt.wantUntil) || d.Reason == "" {
				t.Fatalf("Decide = %+v, want %s by %s until %s", d, tt.want, tt.wantRule, tt.wantUntil)
			}
		})
	}
}
