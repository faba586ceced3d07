package referralfactory_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
)

// Example walks the referral lifecycle against the simulator: a lead credited to its referrer,
// its qualification, and the referrer's reward that this makes due, issued once.
func Example() {
	sim := rfsim.New()
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	seed, err := rfsim.LoadSeedFile("../rfsim/demoseed.json")
	if err != nil {
		log.Fatal(err)
	}
	if err := sim.Seed(seed); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	rf, err := referralfactory.New(srv.URL+"/api/v2", sim.Token())
	if err != nil {
		log.Fatal(err)
	}
	lead, err := rf.CreateUser(ctx, referralfactory.CreateUserInput{
		CampaignID: 1, FirstName: "Fay", Email: "fay@example.com",
		Referrer: referralfactory.ReferrerByCode("aLiCeRef"), // without it, nobody is credited
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", lead.Type, "referred by user", lead.ReferrerID)

	if _, err := rf.Qualify(ctx, referralfactory.UserRef{ID: lead.ID}); err != nil {
		log.Fatal(err)
	}
	// Collect before acting: issuing removes rewards from the due list, which would shift the
	// later pages of a listing still in progress.
	due, err := rf.DueRewards(referralfactory.MetricAmount, referralfactory.ListOptions{PerPage: 250}).Collect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range due {
		issued, err := rf.IssueReward(ctx, d.ID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("reward", issued.ID, "for user", issued.RecipientID, "total", issued.Total, issued.Status)
	}
	// Output:
	// created person_invited referred by user 1
	// reward 1 for user 1 total 25 Issued
	// reward 5 for user 1 total 25 Issued
}
