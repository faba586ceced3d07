package ledger

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The ledger's items in the state table. Every partition key starts with a prefix of its own,
// none of them "idem#" (idempotency records) or "ratelimit#" (the token bucket), so the three
// packages never touch each other's items. docs/state.md "Ledger" is the reference.
//
//	item                   id                          sk
//	lead                   lead#<leadID>               lead
//	lead by code           code#<code>                 lead          (full copy of the lead)
//	lead by email          email#<emailHash>           campaign#<campaignID> (full copy)
//	customer mapping       customer#<customerID>       mapping
//	charge mapping         charge#<chargeID>           mapping
//	charge refunded        charge#<chargeID>           refunded      (highest cumulative refund)
//	spend totals           lead#<leadID>               spend         (net_<currency> numbers)
//	spend entry            spend#<key>                 entry
//	invoice counted        invoice#<invoiceID>         counted
//	qualification          qual#<leadID>               q#<seq, 10 digits>
//	qualification index    recipient#<userID>          q#<at>#<leadID, 19 digits>#<seq> (copy, + slot_<rewardID>)
//	issued count           recipient#<userID>          issued#<YYYY-MM>  TTL: expiration
//	due reward             due#<dueRewardID>           due
//	intent                 intent#<kind>#<target>      intent        gsi1: intent#pending#<kind>
//	unmatched invoice      unmatched#<invoiceID>       unmatched     gsi1: unmatched
//	checkpoint             checkpoint#<name>           checkpoint
//	decision               decision#<subject>          d#<at>#<nonce>  TTL: expiration
const (
	attrID         = "id"
	attrSK         = "sk"
	attrType       = "type"
	attrGSI1PK     = "gsi1pk"
	attrGSI1SK     = "gsi1sk"
	attrExpiration = "expiration"
	indexGSI1      = "gsi1"

	netPrefix = "net_" // spend totals: one number attribute per currency, net_usd, net_eur…
	// slotPrefix: a qualification index copy holds one number attribute per reward definition
	// whose slot is taken, slot_<rewardID> = the due reward's id, for that copy's recipient.
	slotPrefix   = "slot_"
	qualSKPrefix = "q#"
	decSKPrefix  = "d#"
	gsiUnmatched = "unmatched"

	// issuedSKPrefix: the issued counts share the recipient partition with the qualification
	// index, which is read with begins_with "q#" and so never sees them.
	issuedSKPrefix = "issued#"
)

// Item types, stored in `type` so that an operator reading the table can tell them apart.
const (
	typeLead          = "lead"
	typeLeadCode      = "lead_code"
	typeLeadEmail     = "lead_email"
	typeMapping       = "customer_mapping"
	typeChargeMapping = "charge_mapping"
	typeChargeRefund  = "charge_refunded"
	typeSpend         = "spend"
	typeSpendEntry    = "spend_entry"
	typeInvoice       = "invoice_counted"
	typeQualification = "qualification"
	typeQualIndex     = "qualification_index"
	typeDueReward     = "due_reward"
	typeIssuedCount   = "issued_count"
	typeIntent        = "intent"
	typeUnmatched     = "unmatched"
	typeCheckpoint    = "checkpoint"
	typeDecision      = "decision"
)

// tsLayout is RFC 3339 in UTC with a fixed nine-digit fraction, so that timestamps in sort keys
// order lexicographically as they do in time (RFC3339Nano drops trailing zeros and would not).
const tsLayout = "2006-01-02T15:04:05.000000000Z"

func formatTS(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(tsLayout)
}

func parseTS(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse timestamp %q: %w", s, err)
	}
	return t.UTC(), nil
}

type key struct{ id, sk string }

func (k key) av() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrID: &types.AttributeValueMemberS{Value: k.id},
		attrSK: &types.AttributeValueMemberS{Value: k.sk},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func leadKey(id int64) key                 { return key{"lead#" + itoa(id), "lead"} }
func codeKey(code string) key              { return key{"code#" + code, "lead"} }
func emailPK(hash string) string           { return "email#" + hash }
func emailKey(hash string, cid int64) key  { return key{emailPK(hash), "campaign#" + itoa(cid)} }
func mappingKey(customerID string) key     { return key{"customer#" + customerID, "mapping"} }
func chargeMappingKey(chargeID string) key { return key{"charge#" + chargeID, "mapping"} }
func chargeRefundKey(chargeID string) key  { return key{"charge#" + chargeID, "refunded"} }
func spendKey(leadID int64) key            { return key{"lead#" + itoa(leadID), "spend"} }
func spendEntryKey(k string) key           { return key{"spend#" + k, "entry"} }
func invoiceKey(invoiceID string) key      { return key{"invoice#" + invoiceID, "counted"} }
func qualPK(leadID int64) string           { return "qual#" + itoa(leadID) }
func qualKey(leadID, seq int64) key {
	return key{qualPK(leadID), fmt.Sprintf("%s%010d", qualSKPrefix, seq)}
}
func recipientPK(userID int64) string   { return "recipient#" + itoa(userID) }
func slotAttr(rewardID int64) string    { return slotPrefix + itoa(rewardID) }
func dueKey(id int64) key               { return key{"due#" + itoa(id), "due"} }
func unmatchedKey(invoiceID string) key { return key{"unmatched#" + invoiceID, "unmatched"} }
func checkpointKey(name string) key     { return key{"checkpoint#" + name, "checkpoint"} }
func decisionPK(subject string) string  { return "decision#" + subject }

func intentKey(kind IntentKind, target string) key {
	return key{"intent#" + string(kind) + "#" + target, "intent"}
}

func intentPendingPK(kind IntentKind) string { return "intent#pending#" + string(kind) }

// intentPendingSK orders a kind's pending intents by the start of their current attempt.
func intentPendingSK(attemptedAt, target string) string { return attemptedAt + "#" + target }

// recipientKey orders a user's qualification index oldest first; the lead and seq break ties.
func recipientKey(userID int64, q Qualification) key {
	return key{recipientPK(userID), fmt.Sprintf("%s%s#%019d#%010d", qualSKPrefix, formatTS(q.At), q.LeadID, q.Seq)}
}

// issuedKey is a recipient's count of rewards issued in a month ("2026-11", issuedMonth).
func issuedKey(userID int64, month string) key {
	return key{recipientPK(userID), issuedSKPrefix + month}
}

// recipients are the users a qualification's reward may go to: the referrer and the lead.
func (q Qualification) recipients() []int64 {
	if q.ReferrerID > 0 && q.ReferrerID != q.LeadID {
		return []int64{q.ReferrerID, q.LeadID}
	}
	return []int64{q.LeadID}
}
