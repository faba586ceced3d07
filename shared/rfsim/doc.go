// Package rfsim owns the Referral Factory (RF) API v2 simulator: a stateful, in-memory
// http.Handler that behaves like RF as described in shared/referral-factory-api.md.
//
// RF has no test mode, so refbridge users rehearse against this simulator, and refbridge's own
// tests and local demo run against it. The simulator serves:
//
//   - the API under /api/v2 (bearer auth, the {data} envelope, Laravel-style pagination and
//     422 validation errors, search filters, rate limiting with IP blocking);
//   - RF's inbound qualify webhook, POST /webhook/{token}/qualify;
//   - outbound webhooks (referrer_joined, lead_created, lead_qualified, reward_issued) delivered
//     asynchronously to configured receivers, at least once;
//   - a control API under /_sim/ (no auth: never expose it) and the same controls as Go methods,
//     for seeding state, moving the clock, injecting faults and reading the call log.
//
// Where the API file marks a behaviour INFERRED or lists it as a gap, the simulator makes the
// pessimistic choice (the one that surfaces client bugs) and docs/rfsim.md records why.
//
// The package deliberately does not import shared/referralfactory: the client is validated
// against the simulator, and shared wire types would hide the very mismatches the tests look for.
package rfsim
