# A Docker daemon of the test's own (source after world.bash, call after
# world_init). There is no init system here, and an operator's dockerd may
# run: this one has its own data root, exec root and socket under $TMP,
# and leaves the host alone — no docker0 (--bridge=none), no iptables
# rules (--iptables=false, --ip6tables=false: its default would set the
# FORWARD policy to DROP and add NAT chains), no IP forwarding turned on
# (--ip-forward=false). What it changes anyway is put back on exit:
# /etc/docker/key.json (written at its first start), the bridge-netfilter
# and forwarding sysctls. Networks are --internal, on 198.18.0.0/15 and
# 2001:db8::/32; every container, network and image goes on exit, also
# on failure.
#
#   docker_start              DOCKER (the client), DSOCK; waits until it answers
#   docker_stop               SIGTERM, waits until it is gone (its containers stop)
#   docker_image              IMAGE: busybox-static imported (no registry needed),
#                             with /bin/ok (echo ok) for `nc -ll -p 80 -e /bin/ok`
#   docker_network NAME V4 V6 an --internal network, forwarding accepted on its
#                             bridge when the host's FORWARD policy drops
#   ckey NAME / cip NAME [NET] / cip6 NAME [NET]   SandboxKey, addresses
#   docker_cleanup            everything above, undone (chain it in the EXIT trap)
#
# The client is Debian's /usr/bin/docker, the daemon's own version: a newer
# one on PATH (/usr/local/bin here) speaks an API this daemon refuses.

DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER_CLIENT=${DOCKER_CLIENT:-/usr/bin/docker}
DOCKER_NETS=()
DOCKER_FWD_RULES=()
DOCKER_SYSCTLS=(net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-iptables
	net.bridge.bridge-nf-call-ip6tables)
declare -A DOCKER_SYSCTL_WAS

docker_start() {
	DDIR=$TMP/d
	DSOCK=$DDIR/docker.sock
	DOCKER="$DOCKER_CLIENT -H unix://$DSOCK"
	mkdir -p "$DDIR"
	if [ -z "${DOCKER_KEY_WAS+x}" ]; then
		DOCKER_KEY_WAS=no DOCKER_ETC_WAS=no
		[ -e /etc/docker/key.json ] && DOCKER_KEY_WAS=yes
		[ -d /etc/docker ] && DOCKER_ETC_WAS=yes
		local k
		for k in "${DOCKER_SYSCTLS[@]}"; do DOCKER_SYSCTL_WAS[$k]=$(sysctl -n "$k" 2>/dev/null); done
	fi
	echo '{}' >"$DDIR/daemon.json"
	"$DOCKERD" --config-file "$DDIR/daemon.json" --data-root "$DDIR/data" --exec-root "$DDIR/exec" \
		-H "unix://$DSOCK" --pidfile "$DDIR/docker.pid" --iptables=false --ip6tables=false \
		--bridge=none --ip-forward=false --ip-masq=false --userland-proxy=false \
		>>"$TMP/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		$DOCKER version >/dev/null 2>&1 && return 0
		kill -0 "$DOCKERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "# dockerd did not start:" >&2
	tail -20 "$TMP/dockerd.log" >&2
	return 1
}

docker_stop() {
	[ -n "${DOCKERD_PID:-}" ] || return 0
	kill "$DOCKERD_PID" 2>/dev/null
	local i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$DOCKERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$DOCKERD_PID" 2>/dev/null
	wait "$DOCKERD_PID" 2>/dev/null
	DOCKERD_PID=
}

docker_image() {
	local root=$TMP/rootfs a
	IMAGE=bulkhead-test/busybox:1
	mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
	cp /bin/busybox "$root/bin/busybox" || return 1
	for a in sh nc sleep cat echo ip ping true grep; do ln -sf busybox "$root/bin/$a"; done
	printf '#!/bin/sh\necho ok\n' >"$root/bin/ok"
	chmod +x "$root/bin/ok"
	tar -C "$root" -cf "$TMP/rootfs.tar" . && $DOCKER import "$TMP/rootfs.tar" "$IMAGE" >/dev/null
}

docker_network() { # NAME V4-SUBNET V6-SUBNET
	$DOCKER network create --internal --subnet "$2" --ipv6 --subnet "$3" "$1" >/dev/null || return 1
	DOCKER_NETS+=("$1")
	local id br
	id=$($DOCKER network inspect -f '{{.Id}}' "$1") || return 1
	br=br-${id:0:12}
	# bridge-nf-call-iptables sends bridged packets through the host's
	# FORWARD chain: where its policy drops (another dockerd's doing),
	# containers on one network could not reach each other.
	if iptables -S FORWARD 2>/dev/null | grep -qx -- '-P FORWARD DROP'; then
		iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT && DOCKER_FWD_RULES+=("iptables $br")
	fi
	if ip6tables -S FORWARD 2>/dev/null | grep -qx -- '-P FORWARD DROP'; then
		ip6tables -I FORWARD -i "$br" -o "$br" -j ACCEPT && DOCKER_FWD_RULES+=("ip6tables $br")
	fi
}

ckey() { $DOCKER inspect -f '{{.NetworkSettings.SandboxKey}}' "$1"; }
cip() { $DOCKER inspect -f "{{(index .NetworkSettings.Networks \"${2:-$NET}\").IPAddress}}" "$1"; }
cip6() { $DOCKER inspect -f "{{(index .NetworkSettings.Networks \"${2:-$NET}\").GlobalIPv6Address}}" "$1"; }

docker_cleanup() {
	local r k m
	if [ -n "${DOCKERD_PID:-}" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
		# shellcheck disable=SC2046 # one id per word
		$DOCKER rm -f $($DOCKER ps -aq) >/dev/null 2>&1
		for r in "${DOCKER_NETS[@]}"; do $DOCKER network rm "$r" >/dev/null 2>&1; done
		[ -n "${IMAGE:-}" ] && $DOCKER rmi -f "$IMAGE" >/dev/null 2>&1
	fi
	docker_stop
	for r in "${DOCKER_FWD_RULES[@]}"; do
		set -- $r
		"$1" -D FORWARD -i "$2" -o "$2" -j ACCEPT 2>/dev/null
	done
	DOCKER_FWD_RULES=()
	# A daemon killed hard leaves its mounts (namespaces, layers): they go
	# before the directory does.
	if [ -n "${DDIR:-}" ]; then
		for m in $(awk -v d="$DDIR" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
			umount -l "$m" 2>/dev/null
		done
	fi
	for k in "${!DOCKER_SYSCTL_WAS[@]}"; do
		[ -n "${DOCKER_SYSCTL_WAS[$k]}" ] &&
			[ "$(sysctl -n "$k" 2>/dev/null)" != "${DOCKER_SYSCTL_WAS[$k]}" ] &&
			sysctl -qw "$k=${DOCKER_SYSCTL_WAS[$k]}"
	done
	[ "${DOCKER_KEY_WAS:-yes}" = no ] && rm -f /etc/docker/key.json
	[ "${DOCKER_ETC_WAS:-yes}" = no ] && rmdir /etc/docker 2>/dev/null
	return 0
}
