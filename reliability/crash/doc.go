// Package crash is refbridge's crash and rate-limit reliability suite (issue 9, parts 3 and 4).
// It holds tests only; docs/reliability.md says what they run and what was observed.
//
//   - TestCrashAtEveryBoundary kills an in-process invocation at every step boundary of every
//     flow (invoice.paid → qualify, refund → unqualify, won dispute → requalify, signup → create
//     lead, sweep → issue and cancel) and checks that the next delivery, or the next sweep,
//     finishes the work with exactly one effect in Referral Factory.
//   - TestCrashRealBootstrap does the same through the real bootstrap binaries under the Lambda
//     Runtime API harness, killing the process while it is inside an RF call whose effect RF
//     has already applied.
//   - TestLambdaTimeoutBlocksRetriesOnlyUntilTheDeadline lets the harness time an invocation out
//     and kill it, and measures how long its idempotency lock keeps the redeliveries out.
//   - TestRateLimitAcrossInstances runs a burst of real work worth five times the simulator's
//     per-window limit through several instances sharing the DynamoDB token bucket.
//
// Every test needs DynamoDB Local (`make test`); without it they skip, and fail under CI=true.
// REFBRIDGE_SOAK=1 (`make soak-crash`) runs the rate-limit test at Referral Factory's real limit
// and window instead of the scaled-down one.
package crash
