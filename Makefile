# refbridge — build, run and test. The README's two set-up commands are `make run` and `make test`.
GO       ?= go
ADDR     ?= 127.0.0.1:8081
SEED     ?= shared/rfsim/demoseed.json

.PHONY: run rfsim test bench fuzz soak soak-crash vet fmt-check fmt build clean build-StripeWebhookFunction build-RfWebhookFunction build-RewardSweepFunction

## run: the demo: the Referral Factory simulator, refbridge in memory, signed sample events, the
## sweep, and the final state (no account anywhere)
run:
	$(GO) run ./cmd/refbridge demo

## rfsim: the Referral Factory simulator alone, with the demo seed, until Ctrl-C
rfsim:
	$(GO) run ./cmd/rfsim -addr $(ADDR) -seed $(SEED)

## test: formatting, go vet and the whole suite with the race detector, against DynamoDB Local
## (installed from package-lock.json and started on loopback by scripts/dynamodb-local, then stopped);
## then every log line the suite wrote is scanned for test secrets and unmasked emails, every
## fuzz target runs for FUZZ_CI_TIME, and every benchmark runs once at a tiny size (scripts/bench
## -smoke) so none of them rots
TESTLOGS ?= $(CURDIR)/.testlogs
test: fmt-check vet
	rm -rf $(TESTLOGS) && mkdir -p $(TESTLOGS)
	REFBRIDGE_TEST_LOG_DIR=$(TESTLOGS) scripts/dynamodb-local run $(GO) test -race -count=1 -timeout 20m ./...
	REFBRIDGE_TEST_LOG_DIR=$(TESTLOGS) REFBRIDGE_SCAN_TEST_LOGS=1 $(GO) test -count=1 -run TestSuiteLogs ./shared/observe/logtest
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_CI_TIME)
	GO=$(GO) scripts/bench -smoke

## bench: every benchmark (handler CPU, remote calls and cost per event, sweep pacing, cold start
## and size, memory, burst) against DynamoDB Local and the simulator; writes BENCHMARKS.md
bench:
	GO=$(GO) scripts/bench

## fuzz: every fuzz target, one after another, each for FUZZTIME (make fuzz FUZZTIME=10m). An input
## that fails is saved in the package's testdata/fuzz/<target>/: commit it, and plain go test
## replays it for ever. FUZZ_TARGETS is the one list of targets: security's
## TestFuzzTargetsAreListed fails when a func Fuzz… in the repository is missing from it.
FUZZTIME ?= 30s
FUZZ_CI_TIME ?= 3s
FUZZMINIMIZETIME ?= 1s
FUZZ_TARGETS = \
	shared/stripeevents:FuzzVerify \
	shared/stripeevents:FuzzDecodeObject \
	shared/rfevents:FuzzParse \
	shared/rfevents:FuzzAuthorized \
	shared/rfevents:FuzzKindFromPath \
	shared/httpx:FuzzFunctionURL \
	shared/config:FuzzParseThreshold \
	shared/config:FuzzLoad \
	shared/ledger:FuzzEmail
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t#*:} in ./$${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./$${t%%:*}; \
	done

## soak-crash: the long variants of the crash and rate-limit suite (reliability/crash, see
## docs/reliability.md): REFBRIDGE_SOAK=1 runs its rate-limit burst at Referral Factory's
## real limit and window (600 calls a minute, refbridge's share 500: about seven minutes), with
## the crash tests alongside. make test scans the same code's logs; this target does not.
soak-crash:
	REFBRIDGE_SOAK=1 scripts/dynamodb-local run $(GO) test -race -count=1 -timeout 30m -v ./reliability/crash/

## soak: the reliability suite's long variants (docs/reliability.md), against DynamoDB Local:
## 10,000 events under concurrency, and every fault kind at 10% and 50% on 3,000 events, each
## for SOAK_ROUNDS seeds (REFBRIDGE_RELIABILITY_SEED replays one); the figures are printed.
## Without the race detector, which make test runs on the same code at the default sizes.
SOAK_ROUNDS ?= 2
## Then the crash and rate-limit suite's long variants (soak-crash).
soak:
	REFBRIDGE_SOAK=1 REFBRIDGE_SOAK_ROUNDS=$(SOAK_ROUNDS) scripts/dynamodb-local run $(GO) test -count=1 -timeout 3h -v ./reliability/
	@$(MAKE) --no-print-directory soak-crash

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
