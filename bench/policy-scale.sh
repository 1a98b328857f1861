#!/bin/bash
# policy-scale: time and peak memory of `bulkhead policy validate` and
# `policy compile` on large documents (bench/gen-policy.py), and the
# controller's memory with one of them in force, after `policy apply` and
# again after a restart (one --dataplane null agent, --insecure, loopback).
# The documents: the internet except 10,000 hosts (195 KB) and except
# 85,000 (1.8 MB), 100,000 policies, 100,000 groups named in one rule,
# 100,000 inline peers in one rule. The peer column is another build of
# Bulkhead (BASELINE=DIR, e.g. one of main before these fixes), run under
# ulimit -v and -t (LIMIT_KIB, LIMIT_S) so it cannot take the machine: "-"
# where it ran out of either. Reports, never asserts.
#
#   bench/policy-scale.sh [BUILD_DIR]     (root: lib.sh wants it)
#   BASELINE=DIR LIMIT_KIB=8000000 LIMIT_S=300
set -u
BENCH=policy-scale
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
BASELINE=${BASELINE:-}
LIMIT_KIB=${LIMIT_KIB:-8000000}
LIMIT_S=${LIMIT_S:-300}
[ -x "$BUILD/cli/bulkhead" ] || die "$BUILD/cli/bulkhead not built (ninja -C $BUILD)"
[ -z "$BASELINE" ] || [ -x "$BASELINE/cli/bulkhead" ] || die "$BASELINE/cli/bulkhead not built"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"

gen() { "$PYTHON" "$ROOT/bench/gen-policy.py" "$@" || die "generating $1 failed"; }
gen except 10000 "$TMP/except10k.json" "$TMP/inv.json"
gen except 85000 "$TMP/except85k.json" "$TMP/inv.json"
gen policies 100000 "$TMP/policies100k.json" "$TMP/inv.json"
gen groups 100000 "$TMP/groups100k.json" "$TMP/inv.json"
gen peers 100000 "$TMP/peers100k.json" "$TMP/inv.json"

# measure BUILD VERB FILE: "SECONDS KIB" of one run, or "- -" when it
# failed (a limit, or out of memory).
measure() {
	local build=$1 verb=$2 file=$3 args=()
	[ "$verb" = compile ] && args=(--inventory "$TMP/inv.json")
	if (ulimit -v "$LIMIT_KIB" -t "$LIMIT_S"
		exec /usr/bin/time -f '%e %M' -o "$TMP/time" "$build/cli/bulkhead" policy "$verb" "$file" "${args[@]}" \
			>/dev/null 2>"$TMP/err"); then
		tail -1 "$TMP/time"
	else
		echo "- -"
	fi
}

# The controller's VmHWM and VmRSS (KiB) with FILE in force, after apply
# and after a restart: "HWM RSS HWM RSS", "-" for what it could not do.
controller_memory() {
	local build=$1 file=$2 pid agent out="" i
	local port=$((20000 + ($$ + RANDOM) % 20000)) state=$TMP/state-$RANDOM
	export BULKHEAD_ADMIN=ipc://$TMP/admin-$RANDOM.sock
	start() {
		(ulimit -v "$LIMIT_KIB"; exec "$build/controller/bulkhead-controller" --listen "tcp://127.0.0.1:$port" \
			--admin "$BULKHEAD_ADMIN" --state-dir "$state" --insecure >>"$TMP/controller.log" 2>&1) &
		pid=$!
		PIDS+=("$pid")
	}
	vm() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status" 2>/dev/null; }
	start
	"$build/agent/bulkhead-agent" --controller "tcp://127.0.0.1:$port" --node n1 --inventory "$TMP/inv.json" \
		--state-dir "$TMP/agent-$RANDOM" --dataplane null --insecure >>"$TMP/agent.log" 2>&1 &
	agent=$!
	PIDS+=("$agent")
	# The CLI validates first: under the limits too. What it cannot apply
	# is measured neither applied nor restarted.
	if (ulimit -v "$LIMIT_KIB" -t "$LIMIT_S"; exec "$build/cli/bulkhead" policy apply "$file") >/dev/null 2>&1; then
		for i in 1 2; do
			if [ "$i" = 2 ]; then
				kill "$pid"; wait "$pid" 2>/dev/null
				start
			fi
			if BUILD=$build converged 1 "$LIMIT_S" 2>/dev/null && [ -n "$(vm VmHWM)" ]; then
				out="$out $(vm VmHWM) $(vm VmRSS)"
			else
				out="$out - -"
			fi
		done
	else
		out="- - - -"
	fi
	kill "$pid" "$agent" 2>/dev/null
	wait "$pid" "$agent" 2>/dev/null
	echo "$out"
}

row() { # WHAT OURS PEER UNIT
	if [ "$3" = - ]; then
		table_row "$1" "$2" - "$4" -
		notes="$notes  $1: the baseline ran out of ${LIMIT_KIB} KiB or ${LIMIT_S} s"$'\n'
	else
		table_row "$1" "$2" "$3" "$4" -
	fi
}

notes=""
echo "policy-scale: $BUILD${BASELINE:+ (peer: $BASELINE)}"
for f in except10k except85k policies100k groups100k peers100k; do
	printf '  %s: %d KB\n' "$f" "$(($(stat -c %s "$TMP/$f.json") / 1024))"
done
table_header
for f in except10k except85k policies100k groups100k peers100k; do
	for verb in validate compile; do
		read -r t m < <(measure "$BUILD" "$verb" "$TMP/$f.json")
		bt=- bm=-
		[ -n "$BASELINE" ] && read -r bt bm < <(measure "$BASELINE" "$verb" "$TMP/$f.json")
		what="$f $verb"
		ms() { [ "$1" = - ] && echo - || awk -v s="$1" 'BEGIN {print s * 1000}'; }
		row "$what: time" "$(ms "$t")" "$(ms "$bt")" ms
		row "$what: RSS" "$(awk -v k="$m" 'BEGIN {print k / 1024}')" \
			"$( [ "$bm" = - ] && echo - || awk -v k="$bm" 'BEGIN {print k / 1024}')" MB
	done
done
for f in except10k except85k; do
	read -r h1 r1 h2 r2 < <(controller_memory "$BUILD" "$TMP/$f.json")
	b=(- - - -)
	[ -n "$BASELINE" ] && read -r -a b < <(controller_memory "$BASELINE" "$TMP/$f.json")
	mb() { [ "$1" = - ] && echo - || awk -v k="$1" 'BEGIN {print k / 1024}'; }
	row "controller $f applied: HWM" "$(mb "$h1")" "$(mb "${b[0]}")" MB
	row "controller $f applied: RSS" "$(mb "$r1")" "$(mb "${b[1]}")" MB
	row "controller $f restart: HWM" "$(mb "$h2")" "$(mb "${b[2]}")" MB
done
[ -n "$notes" ] && printf '\n%s' "$notes"
exit 0
