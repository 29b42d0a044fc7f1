#!/usr/bin/env bash
# Installs what VON's build and tests need on a fresh Debian machine (run as root).
# Go itself must already be installed (/usr/local/go or on PATH); Go modules and the
# pinned buf come through the Go module proxy when the build first needs them.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "setup-debian.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# systemd: systemd-analyze, for deploy/'s unit tests; man-db: man, with which they
# check the units' Documentation= pages (dpkg, gzip and passwd, for the package
# test, are always there); chromium: the dashboard's browser test
# (dashboard/browser_linux_test.go), which skips without it; iperf3 and socat:
# the unmodified programs that vonlink's e2e tests run over a VON.
pkgs=(iproute2 nftables make gcc libc6-dev git ca-certificates kmod procps systemd man-db chromium iperf3 socat)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "setup-debian.sh: Go is not installed; install Go 1.26 or newer (https://go.dev/doc/install)" >&2
  exit 1
fi
go version
go mod download
