# Parley: `make run` starts one node with embedded defaults; `make test`
# installs what the tests need and runs every test with -race.
GO        ?= go
BIN       := bin/parley
CHROMIUM  := /usr/bin/chromium
TEST_TIMEOUT ?= 25m

.PHONY: run build test test-deps unit e2e bench fuzz vet clean

build:
	$(GO) build -o $(BIN) ./cmd/parley

run: build
	./$(BIN) $(ARGS)

# Debian's chromium drives the browser tests; installed when missing.
test-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	$(GO) mod download

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

test: test-deps vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./crdt/ ./store/ ./gateway/

# Short runs of every fuzz target; longer with FUZZTIME=5m.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzString -fuzztime $(FUZZTIME) ./redact/
	$(GO) test -run '^$$' -fuzz FuzzDecodeFrame -fuzztime $(FUZZTIME) ./gateway/

clean:
	rm -rf bin
