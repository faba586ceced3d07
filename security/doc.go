// Package security holds refbridge's security tests and nothing else: the catalogue of hostile
// deliveries run through both webhook functions (each gets its documented answer, changes no
// state, calls Referral Factory never, and echoes no secret or email), the check that every
// fuzz target is run by make, and the check that docs/security.md's claims point at tests that
// exist.
package security
