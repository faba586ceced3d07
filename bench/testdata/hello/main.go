// Command hello is the smallest aws-lambda-go bootstrap: the cold-start benchmark's baseline,
// built and started exactly as refbridge's functions are.
package main

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, ev json.RawMessage) (string, error) { return "hello", nil })
}
