// Package referralfactory is refbridge's client for the Referral Factory (RF) API v2.
//
// It owns the wire types (users, campaigns, reward definitions, due and issued rewards), the
// error model, pagination over links.next, retries with jittered backoff, and the hook through
// which every request waits on a rate limiter shared by all refbridge functions.
//
// Referral Factory has no sandbox and no test mode, and several of its behaviours are not
// documented (see docs/rfsim.md). The client therefore decodes leniently, keeps the raw body of
// every error, and never retries a call that changes state (create, issue, cancel) once the
// request may have reached the server: such failures are reported as ErrOutcomeUnknown so the
// caller can reconcile by reading RF's state instead of calling again.
package referralfactory
