#!/usr/bin/env bash
# tools/test.sh: every test of the module with -race, as `make test` runs
# them. The packages other than e2e run as one `go test`; the e2e package
# (real node processes and browsers, mostly waiting on them: one after
# another its tests took about 20 minutes on two cores) is split into
# E2E_SHARDS processes run beside it, its tests dealt out in name order
# like cards. Each line of output names its part: [pkgs], [e2e 1/2], ...
# Each part's test nodes take their ports from a range of their own
# (PARLEY_TEST_PORTS). The exit status is non-zero if any part failed.
#
#   GO           the go command (go)
#   TEST_TIMEOUT each part's -timeout (40m)
#   E2E_SHARDS   how many e2e processes (2)
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
TIMEOUT=${TEST_TIMEOUT:-40m}
SHARDS=${E2E_SHARDS:-2}

pkgs=$($GO list ./... | grep -v '^parley/e2e$') || exit 1
mapfile -t tests < <(grep -ho '^func Test[A-Za-z0-9_]*' e2e/*_test.go | sed 's/^func //' | grep -v '^TestMain$' | sort)
if [ "${#tests[@]}" -eq 0 ]; then
	echo "tools/test.sh: no e2e tests found" >&2
	exit 1
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

run() { # name, ports (LO-HI), go test arguments...
	local name=$1 ports=$2
	shift 2
	{ PARLEY_TEST_PORTS=$ports $GO test -race -count=1 -timeout "$TIMEOUT" "$@" 2>&1; echo $? >"$dir/$name.rc"; } |
		sed -u "s|^|[$name] |"
}

# Each part picks its test nodes' ports from a range of its own, below the
# kernel's ephemeral ports (internal/localcluster, FreeAddr).
run pkgs 10000-15999 $pkgs &
span=$(((32767 - 16000 + 1) / SHARDS))
for ((i = 0; i < SHARDS; i++)); do
	names=()
	for ((j = i; j < ${#tests[@]}; j += SHARDS)); do names+=("${tests[j]}"); done
	pattern="^($(IFS='|'; echo "${names[*]}"))\$"
	lo=$((16000 + i * span))
	run "e2e-$((i + 1))of$SHARDS" "$lo-$((lo + span - 1))" -run "$pattern" ./e2e/ &
done
wait

status=0
for f in "$dir"/*.rc; do
	rc=$(cat "$f")
	name=$(basename "$f" .rc)
	if [ "$rc" != 0 ]; then
		echo "tools/test.sh: $name failed (exit $rc)"
		status=1
	else
		echo "tools/test.sh: $name passed"
	fi
done
exit $status
