#!/bin/sh
# Builds the peer servers and k6 for `make bench-peers` from the Go module
# proxy by exact version into PEERS_DIR (default ~/.cache/parley/peers).
# Nothing is downloaded from anywhere but the Go module proxy; a binary
# already present is kept.
set -eu
GO=${GO:-go}
DIR=${PEERS_DIR:-$HOME/.cache/parley/peers}
NATS_VERSION=v2.15.2
CENTRIFUGO_VERSION=v5.4.9
K6_VERSION=v1.8.1
mkdir -p "$DIR"

if [ ! -x "$DIR/nats-server" ]; then
	echo "building nats-server $NATS_VERSION"
	GOBIN="$DIR" GOFLAGS=-buildvcs=false $GO install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
fi

# `go install` of Centrifugo v5 fails on a deprecation look-up the proxy
# refuses; the exact version downloads and builds from the module cache.
if [ ! -x "$DIR/centrifugo" ]; then
	echo "building centrifugo $CENTRIFUGO_VERSION (about 95 s)"
	src=$($GO mod download -json "github.com/centrifugal/centrifugo/v5@$CENTRIFUGO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -n "$src" ] || { echo "centrifugo: no module directory" >&2; exit 1; }
	(cd "$src" && GOFLAGS="-buildvcs=false -mod=mod" $GO build \
		-ldflags "-X github.com/centrifugal/centrifugo/v5/internal/build.Version=${CENTRIFUGO_VERSION#v}" \
		-o "$DIR/centrifugo" .)
fi

if [ ! -x "$DIR/k6" ]; then
	echo "building k6 $K6_VERSION (about 2 min)"
	GOBIN="$DIR" GOFLAGS=-buildvcs=false $GO install "go.k6.io/k6@$K6_VERSION"
fi
ls -l "$DIR"
