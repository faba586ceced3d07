package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// NormalizeEmail is the one normalisation used for matching (PRODUCT.md: trim, lower-case).
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// HashEmail returns the hex SHA-256 of the normalised email, the only form of an email the
// ledger indexes. An empty email hashes to "" so that email-less records share no index entry.
func HashEmail(email string) string {
	n := NormalizeEmail(email)
	if n == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(n))
	return hex.EncodeToString(sum[:])
}

// MaskEmail returns a form an operator can recognise without the ledger holding the address:
// "frank@example.com" → "f***@example.com". Without an "@" it returns "***".
func MaskEmail(email string) string {
	n := NormalizeEmail(email)
	if n == "" {
		return ""
	}
	at := strings.LastIndexByte(n, '@')
	if at < 0 {
		return "***"
	}
	local, domain := n[:at], n[at+1:]
	if local == "" {
		return "***@" + domain
	}
	// The first character may be multi-byte; keep it whole.
	first := []rune(local)[0]
	return string(first) + "***@" + domain
}

// validEmailHash reports whether h looks like HashEmail's output (or is empty). It keeps a raw
// address from being stored by mistake where a hash belongs.
func validEmailHash(h string) bool {
	if h == "" {
		return true
	}
	if len(h) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}
