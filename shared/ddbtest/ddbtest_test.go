package ddbtest

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TestTableMatchesTemplate proves the table the tests use is the one template.yaml deploys.
func TestTableMatchesTemplate(t *testing.T) {
	db, name := Table(t)
	ctx := context.Background()
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	tb := out.Table
	keys := map[string]types.KeyType{}
	for _, k := range tb.KeySchema {
		keys[*k.AttributeName] = k.KeyType
	}
	if keys["id"] != types.KeyTypeHash || keys["sk"] != types.KeyTypeRange {
		t.Errorf("key schema %v", keys)
	}
	if len(tb.GlobalSecondaryIndexes) != 1 || *tb.GlobalSecondaryIndexes[0].IndexName != "gsi1" {
		t.Errorf("GSIs %+v", tb.GlobalSecondaryIndexes)
	}
	if tb.BillingModeSummary == nil || tb.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing %+v", tb.BillingModeSummary)
	}
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != "expiration" || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
		t.Errorf("TTL %+v", ttl.TimeToLiveDescription)
	}
}
