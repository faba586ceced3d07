package sweep

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/refbridge/refbridge/shared/ledger"
)

// confirmRecordedQualifications finishes the qualify intents whose qualification the ledger
// already holds. A delivery that ran out of time between RF's answer and its confirm leaves its
// intent pending; when RF's lead-qualified webhook records that qualification before Stripe
// redelivers the event, the redelivery finds the lead qualified and never comes back to the
// intent. The qualification happened once and is recorded, so the intent is done. Confirming
// one a live delivery still holds is harmless: its own confirm finds it done. Intents whose
// qualification is not recorded are left to the event's redelivery, which reads RF first.
func (s *Sweeper) confirmRecordedQualifications(ctx context.Context, b budget, sum *Summary) error {
	pending, err := s.Ledger.PendingIntents(ctx, ledger.IntentQualify)
	if err != nil {
		return fmt.Errorf("pending %s intents: %w", ledger.IntentQualify, err)
	}
	for _, in := range pending {
		if b.short() {
			return nil
		}
		leadID, seq, ok := qualificationTarget(in.Target)
		if !ok {
			s.logger().WarnContext(ctx, "sweep intent with an unreadable target", "kind", string(ledger.IntentQualify), "target", in.Target)
			continue
		}
		latest, err := s.Ledger.LatestQualification(ctx, leadID)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("qualification of lead %d: %w", leadID, err)
		}
		if latest.Seq < seq {
			continue
		}
		if _, err := s.Ledger.FinishIntent(ctx, ledger.IntentQualify, in.Target, ledger.IntentDone, ""); err != nil &&
			!errors.Is(err, ledger.ErrNotFound) && !errors.Is(err, ledger.ErrConflict) {
			return fmt.Errorf("confirm the qualify of lead %d: %w", leadID, err)
		}
		sum.Reconciled++
	}
	return nil
}

// qualificationTarget reads a ledger.QualificationTarget.
func qualificationTarget(target string) (leadID, seq int64, ok bool) {
	l, q, found := strings.Cut(target, "#")
	if !found {
		return 0, 0, false
	}
	leadID, err1 := strconv.ParseInt(l, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if err1 != nil || err2 != nil || leadID <= 0 || seq <= 0 {
		return 0, 0, false
	}
	return leadID, seq, true
}
