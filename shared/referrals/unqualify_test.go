package referrals

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// qualificationPuts counts RF's PUT /users/qualification calls for lead id by the state set.
func qualificationPuts(sim *rfsimtest.Sim, id int64) (qualify, unqualify int) {
	for _, c := range sim.Server.Calls() {
		if c.Method != http.MethodPut || c.Path != "/api/v2/users/qualification" || c.Status >= 300 {
			continue
		}
		if !strings.Contains(c.Body, fmt.Sprintf(`"id":%d,`, id)) && !strings.Contains(c.Body, fmt.Sprintf(`"id":%d}`, id)) {
			continue
		}
		if strings.Contains(c.Body, `"qualified":true`) {
			qualify++
		} else {
			unqualify++
		}
	}
	return qualify, unqualify
}

// A second delivery that finds another's unqualify attempt pending, and RF not unqualified yet,
// waits instead of calling RF a second time; one that finds it old (its delivery died) takes it
// over and calls, once.
func TestPendingUnqualifyIsNotCalledTwice(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		target := ledger.QualificationTarget(erinID, 1)
		if _, err := f.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentUnqualify, Target: target, Ref: "charge#other"}); err != nil {
			t.Fatal(err)
		}
		f.sim.Qualify(t, erinID)
		err := f.svc.unqualify(ctx, erinID, 1, "charge#this")
		if !errors.Is(err, ErrUnqualifyInProgress) {
			t.Fatalf("fresh pending attempt: %v, want ErrUnqualifyInProgress", err)
		}
		if _, down := qualificationPuts(f.sim, erinID); down != 0 {
			t.Fatalf("%d unqualify PUTs while another attempt is in flight", down)
		}
		f.clock.Advance(f.svc.unqualifyStaleAfter() + time.Minute)
		if err := f.svc.unqualify(ctx, erinID, 1, "charge#this"); err != nil {
			t.Fatal(err)
		}
		if _, down := qualificationPuts(f.sim, erinID); down != 1 || erinQualifiedInRF(t, f) {
			t.Fatalf("after the take-over: %d unqualify PUTs, qualified %v", down, erinQualifiedInRF(t, f))
		}
		if in, err := f.ledger.IntentOf(ctx, ledger.IntentUnqualify, target); err != nil || in.Status != ledger.IntentDone {
			t.Fatalf("intent %+v %v", in, err)
		}
	})
}

// An attempt sends its PUT /users/qualification within StateCallWithin of its begin, whatever
// deadline its caller has (the sweep's unmatched retry may have minutes): so a pending unqualify
// older than that (and the 5 s for a call to land) is dead, and taking it over never makes a
// second call land after the first. A call RF does not answer in time fails the attempt.
func TestQualificationCallIsBoundedWhateverTheCallersDeadline(t *testing.T) {
	set := settings()
	set.StateCallWithin = 300 * time.Millisecond
	stores(t, set, func(t *testing.T, f fixture) {
		f.sim.Qualify(t, erinID)
		if _, err := f.sim.Server.AddFault(rfsim.Fault{Match: "PUT /api/v2/users/qualification", Latency: time.Minute}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // longer than the bound, as a sweep's
		defer cancel()
		err := f.svc.unqualify(ctx, erinID, 1, "charge#slow")
		if err == nil || ctx.Err() != nil {
			t.Fatalf("unqualify returned %v with the caller's context %v: want its own bound to end the call", err, ctx.Err())
		}
		in, err := f.ledger.IntentOf(ctx, ledger.IntentUnqualify, ledger.QualificationTarget(erinID, 1))
		if err != nil || in.Status != ledger.IntentFailed {
			t.Fatalf("intent %+v %v, want failed", in, err)
		}
		if got := f.svc.unqualifyStaleAfter(); got != set.StateCallWithin+5*time.Second {
			t.Fatalf("stale after %s, want the call's bound and 5 s", got)
		}
	})
}
