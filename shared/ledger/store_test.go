package ledger_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
)

// fakeClock is the injected clock; every store under test gets its own.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	// A fraction with trailing zeros catches timestamps that lose them (RFC3339Nano does).
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 120000000, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newStoreFunc returns a fresh, empty store whose clock is the returned fakeClock.
type newStoreFunc func(t *testing.T, opts ...ledger.Option) (ledger.Store, *fakeClock)

func TestMemory(t *testing.T) {
	runContract(t, func(t *testing.T, opts ...ledger.Option) (ledger.Store, *fakeClock) {
		clk := newClock()
		return ledger.NewMemory(append(opts, ledger.WithClock(clk.Now))...), clk
	})
}

// TestDynamo runs the contract on DynamoDB Local, one fresh table (from template.yaml) per
// subtest. ddbtest skips without DynamoDB Local, and fails under CI.
func TestDynamo(t *testing.T) {
	ddbtest.Client(t) // skip (or fail under CI) once, not in every subtest
	runContract(t, func(t *testing.T, opts ...ledger.Option) (ledger.Store, *fakeClock) {
		db, table := ddbtest.Table(t)
		clk := newClock()
		return ledger.NewDynamo(db, table, append(opts, ledger.WithClock(clk.Now))...), clk
	})
}

// runContract is the one behaviour both stores must have.
func runContract(t *testing.T, newStore newStoreFunc) {
	tests := []struct {
		name string
		run  func(t *testing.T, newStore newStoreFunc)
	}{
		{"Leads", testLeads},
		{"LeadLookupsFollowChanges", testLeadLookupsFollowChanges},
		{"LeadMerge", testLeadMerge},
		{"LeadLookupTakenOver", testLeadLookupTakenOver},
		{"LeadCustomerConflict", testLeadCustomerConflict},
		{"MapCustomer", testMapCustomer},
		{"ApplySpend", testApplySpend},
		{"SpendInvalid", testSpendInvalid},
		{"MapCharge", testMapCharge},
		{"ChargeRefunds", testChargeRefunds},
		{"QualifyOnce", testQualifyOnce},
		{"QualifyExpectedGeneration", testQualifyExpectedGeneration},
		{"ReverseThenRequalify", testReverseThenRequalify},
		{"QualificationTimes", testQualificationTimes},
		{"DueRewardCreatedAfter", testDueRewardCreatedAfter},
		{"BeginIntentIfStanding", testBeginIntentIfStanding},
		{"QualificationsFor", testQualificationsFor},
		{"MatchDueReward", testMatchDueReward},
		{"RematchDueReward", testRematchDueReward},
		{"DueRewards", testDueRewards},
		{"IssuedInMonth", testIssuedInMonth},
		{"IssuedMonthBoundary", testIssuedMonthBoundary},
		{"SettlementRecordsRecipient", testSettlementRecordsRecipient},
		{"IssuedCountExpires", testIssuedCountExpires},
		{"IntentLifecycle", testIntentLifecycle},
		{"IntentFailedThenRetried", testIntentFailedThenRetried},
		{"IntentCrashBetween", testIntentCrashBetween},
		{"IntentRefusedBeginsKeepAttempt", testIntentRefusedBeginsKeepAttempt},
		{"PendingIntentsOrder", testPendingIntentsOrder},
		{"IntentTakeOver", testIntentTakeOver},
		{"IntentGenerations", testIntentGenerations},
		{"Unmatched", testUnmatched},
		{"UnmatchedResolution", testUnmatchedResolution},
		{"Checkpoint", testCheckpoint},
		{"Decisions", testDecisions},
		{"DecisionRetention", testDecisionRetention},
		{"CanceledContext", testCanceledContext},
		{"RaceQualify", testRaceQualify},
		{"RaceSettle", testRaceSettle},
		{"RaceIssuedCount", testRaceIssuedCount},
		{"RaceSpendSameKey", testRaceSpendSameKey},
		{"RaceSpendManyKeys", testRaceSpendManyKeys},
		{"RaceBeginIntent", testRaceBeginIntent},
		{"RaceTakeOverIntent", testRaceTakeOverIntent},
		{"RaceMapCustomer", testRaceMapCustomer},
		{"RaceChargeRefunds", testRaceChargeRefunds},
		{"RaceRematchSame", testRaceRematchSame},
		{"RaceRematchOrMatch", testRaceRematchOrMatch},
		{"RaceMatchSlots", testRaceMatchSlots},
		{"RaceBeginIfStandingOrReverse", testRaceBeginIfStandingOrReverse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v, want %v (UTC)", what, got, want)
	}
}

// at is a fixed instant with nanoseconds, to prove they survive a round trip.
func at(day, hour int) time.Time {
	return time.Date(2026, 2, day, hour, 30, 15, 987654321, time.UTC)
}

// A done context fails the call in both stores, before anything is written.
func testCanceledContext(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Qualify(ctx, ledger.Qualification{LeadID: 1, Origin: ledger.OriginRefbridge})
	wantErr(t, err, context.Canceled)
	_, err = s.LatestQualification(ctxT(t), 1)
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "1"})
	wantErr(t, err, context.Canceled)
	_, err = s.IntentOf(ctxT(t), ledger.IntentIssue, "1")
	wantErr(t, err, ledger.ErrNotFound)
}
