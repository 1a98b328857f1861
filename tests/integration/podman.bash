# A podman world of a test's own (source it after world.bash, call pm_init
# after world_init): podman with runc, its storage, run root, temporary
# directory, CNI network configs and hooks.d all in $PM_DIR (/tmp/bhpm.*,
# removed on exit), so nothing of
# another podman user on this host is seen or touched; a busybox image
# imported from busybox-static (no registry); --internal networks on
# 198.18.0.0/15 and 2001:db8::/32; podman's API service on $PM_SOCK for the
# agent's --engine podman. pm_cleanup (run on exit) removes every
# container, network and image made, stops the service and takes back the
# firewall rules pm_network may add.
#
#   pm_init                    PM_DIR, PM_SOCK, IMAGE; containers.conf (runc,
#                              nofile/nproc 4096, cgroupfs, events in a file,
#                              CNI) as CONTAINERS_CONF: the host's is not read
#   pm ARGS...                 podman with this world's flags
#   pm_image                   localhost/$P-busybox:latest (IMAGE)
#   pm_network NAME V4 V6      an --internal network $P-NAME, its bridge in
#                              PM_BRIDGE[NAME]
#   pm_service                 the API service on $PM_SOCK (PM_SERVICE_PID)
#   pm_service_stop
#   pm_hook SOCKET [ARG...]    hooks.d entry: $AGENT hook --socket SOCKET ARG...
#                              (HOOK_WRAPPER: a command to run instead of $AGENT)
#   pm_ns NAME                 /proc/PID/ns/net of container NAME's process
#
# Needs podman (4.x, CNI) and runc (tests/install-deps.sh installs them).

pm_skip() {
	echo "not ok - $1"
	echo "0 passed, 1 failed"
	exit 1
}

pm_init() {
	command -v podman >/dev/null || pm_skip "podman is not installed (tests/install-deps.sh)"
	command -v runc >/dev/null || pm_skip "runc is not installed (tests/install-deps.sh)"
	# Its own short directory: podman refuses a run root longer than 50.
	PM_DIR=$(mktemp -d /tmp/bhpm.XXXXXX)
	PM_SOCK=$PM_DIR/podman.sock
	IMAGE=localhost/$P-busybox:latest
	PM_NETS=()
	PM_FWD=()
	declare -gA PM_BRIDGE
	mkdir -p "$PM_DIR"/{root,runroot,tmp,cni,hooks.d}
	cat >"$PM_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
network_backend = "cni"
EOF
	export CONTAINERS_CONF=$PM_DIR/containers.conf
	PM_ARGS=(--root "$PM_DIR/root" --runroot "$PM_DIR/runroot" --tmpdir "$PM_DIR/tmp"
		--storage-driver vfs --network-config-dir "$PM_DIR/cni" --hooks-dir "$PM_DIR/hooks.d"
		--runtime runc --cgroup-manager cgroupfs --events-backend file)
	trap "pm_cleanup; ${PM_CLEANUP_NEXT:-world_cleanup}" EXIT
}

pm() {
	podman "${PM_ARGS[@]}" "$@"
}

pm_image() {
	local rootfs=$PM_DIR/rootfs a
	mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/www"
	cp "$(command -v busybox)" "$rootfs/bin/busybox" || return 1
	for a in sh nc sleep echo cat ip ping true wget httpd timeout; do ln -sf busybox "$rootfs/bin/$a"; done
	echo ok >"$rootfs/www/index.html"
	tar -C "$rootfs" -cf "$PM_DIR/busybox.tar" . && pm import -q "$PM_DIR/busybox.tar" "$IMAGE" >/dev/null
}

# pm_network NAME V4SUBNET V6SUBNET
pm_network() {
	local net=$P-$1 br
	pm network create --internal --subnet "$2" --ipv6 --subnet "$3" "$net" >/dev/null || return 1
	PM_NETS+=("$net")
	# podman's CNI list has the portmap and firewall plugins too: the
	# firewall one makes chains in the host's filter table (CNI-FORWARD,
	# CNI-ADMIN, a jump from FORWARD) and never removes them. An
	# --internal network maps no ports: the bridge (and tuning) alone, so
	# the host's firewall is left as it was.
	/usr/bin/python3 - "$PM_DIR/cni/$net.conflist" <<'PY' || return 1
import json, sys
f = sys.argv[1]
c = json.load(open(f))
c["plugins"] = [p for p in c["plugins"] if p.get("type") not in ("portmap", "firewall")]
json.dump(c, open(f, "w"), indent=1)
PY
	br=$(pm network inspect "$net" --format '{{.NetworkInterface}}')
	PM_BRIDGE[$1]=$br
	# A dockerd on this host sets FORWARD's policy to DROP, and bridged
	# IPv4 goes through FORWARD (br_netfilter): containers on one bridge
	# would not reach each other. Only then, forwarding on this bridge
	# alone is accepted (taken back on exit).
	# The same for IPv6 (ip6tables, bridge-nf-call-ip6tables).
	local t
	for t in iptables ip6tables; do
		if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-$t 2>/dev/null)" = 1 ] &&
			$t -S FORWARD 2>/dev/null | grep -q '^-P FORWARD DROP'; then
			$t -I FORWARD -i "$br" -o "$br" -j ACCEPT -m comment --comment "$P bulkhead test" &&
				PM_FWD+=("$t $br")
		fi
	done
}

pm_service() {
	# podman itself, not a shell running it: the pid is the one to stop.
	podman "${PM_ARGS[@]}" system service --time 0 "unix://$PM_SOCK" >>"$PM_DIR/service.log" 2>&1 &
	PM_SERVICE_PID=$!
	local i
	for i in $(seq 100); do
		[ -S "$PM_SOCK" ] && curl -sf --unix-socket "$PM_SOCK" http://d/_ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

pm_service_stop() {
	[ -n "${PM_SERVICE_PID:-}" ] || return 0
	kill "$PM_SERVICE_PID" 2>/dev/null
	wait "$PM_SERVICE_PID" 2>/dev/null
	PM_SERVICE_PID=
}

# pm_hook SOCKET [ARG...]: the hooks.d entry podman reads (--hooks-dir).
pm_hook() {
	local sock=$1 args a
	shift
	args="\"bulkhead-agent\", \"hook\", \"--socket\", \"$sock\""
	for a in "$@"; do args="$args, \"$a\""; done
	cat >"$PM_DIR/hooks.d/bulkhead.json" <<EOF
{"version": "1.0.0",
 "hook": {"path": "${HOOK_WRAPPER:-$AGENT}", "args": [$args], "timeout": 30},
 "when": {"always": true}, "stages": ["createRuntime"]}
EOF
}

pm_ns() {
	echo "/proc/$(pm inspect "$1" --format '{{.State.Pid}}')/ns/net"
}

pm_cleanup() {
	[ -n "${PM_DIR:-}" ] || return 0
	local net
	pm rm -af -t 0 >/dev/null 2>&1
	pm_service_stop
	for net in "${PM_NETS[@]}"; do
		pm network rm -f "$net" >/dev/null 2>&1
		rm -rf "/var/lib/cni/networks/$net"
	done
	pm rmi -af >/dev/null 2>&1
	local rule
	for rule in "${PM_FWD[@]}"; do
		set -- $rule
		"$1" -D FORWARD -i "$2" -o "$2" -j ACCEPT -m comment --comment "$P bulkhead test" 2>/dev/null
	done
	PM_FWD=()
	# vfs storage: plain directories once no container runs; whatever is
	# still mounted under it (a container's /dev/shm) goes first.
	awk -v d="$PM_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	rm -rf "$PM_DIR"
	PM_DIR=
}
