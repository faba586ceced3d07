// Command hellosdk is hello plus what every refbridge function builds at cold start from the
// AWS SDK: the default configuration and a DynamoDB client (no request is made). The
// cold-start benchmark uses it to tell the SDK's share of a function's start from refbridge's.
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func main() {
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	lambda.Start(func(ctx context.Context, ev json.RawMessage) (string, error) {
		_ = db
		return "hello", nil
	})
}
