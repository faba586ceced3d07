# refbridge — build, run and test. The README's two set-up commands are `make run` and `make test`.
GO       ?= go
ADDR     ?= 127.0.0.1:8081
SEED     ?= shared/rfsim/demoseed.json

.PHONY: run rfsim test bench vet fmt-check fmt build clean build-StripeWebhookFunction build-RfWebhookFunction build-RewardSweepFunction

## run: the demo: the Referral Factory simulator, refbridge in memory, signed sample events, the
## sweep, and the final state (no account anywhere)
run:
	$(GO) run ./cmd/refbridge demo

## rfsim: the Referral Factory simulator alone, with the demo seed, until Ctrl-C
rfsim:
	$(GO) run ./cmd/rfsim -addr $(ADDR) -seed $(SEED)

## test: formatting, go vet and the whole suite with the race detector, against DynamoDB Local
## (installed from package-lock.json and started on loopback by scripts/dynamodb-local, then stopped);
## then every log line the suite wrote is scanned for test secrets and unmasked emails, and every
## benchmark runs once at a tiny size (scripts/bench -smoke) so none of them rots
TESTLOGS ?= $(CURDIR)/.testlogs
test: fmt-check vet
	rm -rf $(TESTLOGS) && mkdir -p $(TESTLOGS)
	REFBRIDGE_TEST_LOG_DIR=$(TESTLOGS) scripts/dynamodb-local run $(GO) test -race -count=1 -timeout 20m ./...
	REFBRIDGE_TEST_LOG_DIR=$(TESTLOGS) REFBRIDGE_SCAN_TEST_LOGS=1 $(GO) test -count=1 -run TestSuiteLogs ./shared/observe/logtest
	GO=$(GO) scripts/bench -smoke

## bench: every benchmark (handler CPU, remote calls and cost per event, sweep pacing, cold start
## and size, memory, burst) against DynamoDB Local and the simulator; writes BENCHMARKS.md
bench:
	GO=$(GO) scripts/bench

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

## build: every binary under cmd/ into bin/
build:
	$(GO) build -o bin/ ./cmd/...

clean:
	rm -rf bin .aws-sam

# SAM's `BuildMethod: makefile` calls build-<LogicalId> with ARTIFACTS_DIR set: a static
# linux/arm64 `bootstrap` for provided.al2023, without the RPC shim (lambda.norpc).
LAMBDA_BUILD = GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags="-s -w"

build-StripeWebhookFunction:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/stripe-webhook

build-RfWebhookFunction:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/rf-webhook

build-RewardSweepFunction:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/reward-sweep
