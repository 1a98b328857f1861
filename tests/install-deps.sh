#!/usr/bin/env bash
# Installs the Debian packages Bulkhead builds, tests and demos with, when
# any is missing. Safe to run again: it does nothing once all are there.
set -euo pipefail
packages=(
  build-essential meson ninja-build pkg-config
  libnftnl-dev libmnl-dev libnl-3-dev libnl-route-3-dev libjansson-dev libzmq3-dev libsqlite3-dev
  libcurl4-openssl-dev   # the agent talks to Docker's and podman's API with libcurl
  python3-jsonschema     # policy schema checks (Debian's python, /usr/bin/python3)
  python3-zmq            # the fake agents of tests/integration/fake_*.py
  nftables iproute2      # nft for inspection and the nft -f benchmark; ip for test namespaces
  iputils-ping socat     # test traffic
  conntrack              # conntrack -L/-D: tests/integration/conntrack-cut.sh, bench/conntrack-cut.sh
  valgrind
  clang-format           # the C sources' format, checked by tests/tree/format.sh (clang-format 14)
  # Real containers (tests/integration/docker.sh, podman.sh, the containers
  # demo): podman with runc and CNI (not crun, not netavark). No
  # containers.conf is written: the tests and the demo bring their own
  # (runtime runc, nofile/nproc 4096, CONTAINERS_CONF, tests/integration/
  # podman.bash), so the host's podman is left as it is.
  docker.io podman runc containernetworking-plugins iptables busybox-static curl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
