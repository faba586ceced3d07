module github.com/refbridge/refbridge

go 1.26.0

require (
	github.com/aws/aws-lambda-go v1.55.1 // indirect
	github.com/aws/aws-sdk-go-v2 v1.48.0 // indirect
	github.com/stripe/stripe-go/v79 v79.12.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
