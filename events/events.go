// Package events holds refbridge's sample events, built into the binaries that replay them
// (cmd/refbridge demo) so they run from any directory: Stripe events (stripe/), Referral
// Factory webhook bodies (rf/) and the reward sweep's payloads (sweep/). README.md says what
// each folder holds.
package events

import "embed"

// FS is the sample events, by path: "stripe/invoice.paid.2024-06-20.json", ...
//
//go:embed stripe rf sweep
var FS embed.FS
