#!/usr/bin/env bash
# test.sh: the one command that runs all the tests, locally and in CI.
#
#   scripts/install-deps.sh                      Debian packages (skips apt when all are there)
#   cargo fmt --check
#   cargo clippy --all-targets -- -D warnings
#   cargo test -- --test-threads=N              everything, the real-peer tests (Kamailio, baresip,
#                                                sipp on 127.0.0.1) included
#
# Every step runs even when an earlier one failed, then a summary is printed; the exit status is 0
# only when every step passed. Environment:
#   TEST_THREADS   test threads per test binary (default: number of cores). The peer tests mostly wait
#                  on sockets, but their timeouts assume the peers get CPU time.
#   SKIP_DEPS=1    do not run scripts/install-deps.sh
#   extra arguments are passed to cargo test before the `--` (e.g. `scripts/test.sh --test peers_smoke`)
set -uo pipefail

cd "$(dirname "$0")/.."
THREADS=${TEST_THREADS:-$(nproc 2>/dev/null || echo 2)}
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dialtone-test.XXXXXX")
trap 'rm -rf "$LOG_DIR"' EXIT

names=()
results=()
step() {
	local name=$1 start end rc
	shift
	echo
	echo "==> $name: $*"
	start=$(date +%s)
	"$@" 2>&1 | tee "$LOG_DIR/step-${#names[@]}.log"
	rc=${PIPESTATUS[0]}
	end=$(date +%s)
	names+=("$name")
	if [ "$rc" -eq 0 ]; then
		results+=("ok      $(printf '%4ss' $((end - start)))  $name")
	else
		results+=("FAILED  $(printf '%4ss' $((end - start)))  $name (exit $rc)")
		failed=1
	fi
	return 0
}

failed=0
if [ "${SKIP_DEPS:-0}" != 1 ]; then
	step "dependencies" scripts/install-deps.sh
fi
[ -x "$HOME/.cargo/bin/cargo" ] && case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH" ;; esac
step "format" cargo fmt --check
step "clippy" cargo clippy --all-targets -- -D warnings
step "tests" cargo test "$@" -- --test-threads="$THREADS"
test_log="$LOG_DIR/step-$((${#names[@]} - 1)).log"

echo
echo "==================== summary ===================="
printf '%s\n' "${results[@]}"
# cargo prints one "test result:" line per test binary (unit, integration, doc tests)
if grep -q '^test result:' "$test_log" 2>/dev/null; then
	awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } n++ }
		END { printf "%d test binaries, %d tests ignored\ntests: %d passed, %d failed\n", n, g, p, f }' "$test_log"
fi
if grep -q '^test .* \.\.\. FAILED$' "$test_log" 2>/dev/null; then
	echo "failed tests:"
	sed -n 's/^test \(.*\) \.\.\. FAILED$/    \1/p' "$test_log"
fi
if [ "$failed" -eq 0 ]; then
	echo "ALL PASSED"
else
	echo "FAILED"
fi
exit "$failed"
