// Package runtime holds no code: its tests run the three real bootstrap binaries
// (functions/stripe-webhook, functions/rf-webhook, functions/reward-sweep) as Lambda runs them,
// through shared/lambdaruntime's Runtime API, against DynamoDB Local and the Referral Factory
// simulator: cold start, configuration errors, events as Lambda delivers them, deadlines, and
// what ends up in the logs.
package runtime
