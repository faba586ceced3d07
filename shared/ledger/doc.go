// Package ledger owns refbridge's durable records: what it knows about Referral Factory (RF)
// leads, which Stripe customer belongs to which lead, each lead's net spend per currency, the
// qualifications refbridge made or learned about, the due rewards it has seen and settled, the
// intents that make every remote effect happen exactly once, the paid invoices that matched no
// lead yet, the sweep's checkpoint, and a log of every decision with its reason.
//
// Everything lives in ONE DynamoDB table next to the idempotency records and the rate limiter
// (docs/state.md, "Ledger", lists every item and access pattern). The invariants the flows rely
// on are enforced by the store itself, with conditional writes and transactions, so they hold
// under duplicate, concurrent and retried deliveries:
//
//   - a spend entry (a Stripe payment, refund or dispute step) is counted once, and a paid invoice
//     is counted once whichever event reports it;
//   - a lead has at most one standing qualification; reversing it and qualifying again creates a
//     new one, never resurrects the old;
//   - a due reward is settled (issued or canceled) once, and is matched to at most one
//     qualification; a qualification backs at most one due reward per recipient and reward
//     definition (a slot: the referrer's $25 and the lead's coupon both stand on it);
//   - an effect intent is begun once per (kind, target): a second Begin while it is pending says
//     "a previous attempt may have reached RF, reconcile first" instead of letting the caller
//     call again, and changes nothing; after reconciling, exactly one caller can take over a
//     stale attempt (TakeOverIntent);
//   - an issue begun with BeginIntentIfStanding and the Reverse of its qualification serialise:
//     either the intent exists before the reversal, or the begin is refused.
//
// Two implementations share one contract, the suite in store_test.go (runContract): Dynamo, used
// in Lambda, and Memory, the embedded default for local runs when STATE_TABLE is unset.
//
// Raw email addresses are never stored: leads and unmatched invoices carry HashEmail's digest
// (what lookups need) and MaskEmail's form (what an operator reading a record needs).
package ledger
