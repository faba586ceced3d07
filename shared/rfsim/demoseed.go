package rfsim

import (
	_ "embed"
	"fmt"
)

// demoSeed is the demo state: campaign 1 "DEMO2026" with an amount reward for referrers and a
// join coupon for leads, three referrers, one qualified lead (Dave, referred by Alice, his
// reward due) and one pending lead (Erin, referred by Bob), tokens sim_test_token and
// sim_webhook_token, 600 calls a minute.
//
//go:embed demoseed.json
var demoSeed []byte

// DemoSeedFile is the demo seed's path in the repository, for -seed flags and docs.
const DemoSeedFile = "shared/rfsim/demoseed.json"

// DemoSeed returns the demo state, built into the binary so a fresh checkout (or a copied
// binary) can run the demo with no file at hand.
func DemoSeed() SeedData {
	d, err := ParseSeed(demoSeed)
	if err != nil {
		panic(fmt.Sprintf("rfsim: the embedded demo seed does not parse: %v", err)) // a test keeps it parsing
	}
	return d
}
