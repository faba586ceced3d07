// Package reliability is refbridge's reliability suite (issue 9): it drives the real handlers
// (stripe-webhook, rf-webhook and the reward sweep, built by shared/wiring on DynamoDB Local)
// against the Referral Factory simulator with a generated stream of realistic Stripe and RF
// events, delivered the way the senders deliver them — at least once, out of order within what
// Stripe's timing allows, duplicated, concurrently, and again after every non-2xx answer — and
// compares the end state with an oracle computed from the same stream.
//
// The package holds tests only (see workload_test.go for the stream and the oracle,
// harness_test.go for the delivery and the comparison, faults_test.go for the injected failures,
// and docs/reliability.md for what is run and what was observed). `make test` runs the default
// sizes; `make soak` sets REFBRIDGE_SOAK=1 for the long variants. Every random choice derives
// from one seed that each test prints; REFBRIDGE_RELIABILITY_SEED=<seed> replays a workload.
package reliability
