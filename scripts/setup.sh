#!/usr/bin/env bash
# Install what stack-tui and its tests need on a Debian/Ubuntu machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container nft:nftables \
            zstd:zstd qemu-img:qemu-utils ssh:openssh-client ssh-keygen:openssh-client \
            tmux:tmux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  # --no-install-recommends: systemd-container recommends libnss-mymachines (edits nsswitch.conf)
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
