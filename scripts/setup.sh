#!/usr/bin/env bash
# Install what stack-tui needs on a Debian/Ubuntu machine (idempotent, PEP 668 safe).
#   bash scripts/setup.sh          -> system tools + .venv with stack-tui
#   bash scripts/setup.sh --test   -> the same, plus the test dependencies
#   bash scripts/setup.sh --client -> only what installing onto a server needs (ssh, .venv):
#                                     none of the throwaway-host tools (try.sh user@server)
# Nothing goes into the distribution's python: everything Python lives in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""; client=""
case "${1:-}" in --test) extras="[test]";; --client) client=1;; esac
export DEBIAN_FRONTEND=noninteractive
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
tools="ssh:openssh-client ssh-keygen:openssh-client"
# the throwaway local host (`stack-tui sandbox`, the tests) needs these as well
[ -n "$client" ] || tools="$tools debootstrap:debootstrap systemd-nspawn:systemd-container \
  nft:nftables zstd:zstd qemu-img:qemu-utils tmux:tmux ip:iproute2"
for pair in $tools; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# A pristine Debian python3 has no venv/ensurepip: that is the python3-venv package.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
# The Horizon e2e test drives Debian's chromium through Debian's chromedriver (no download).
if [ -n "$extras" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -q
  # --no-install-recommends: systemd-container recommends libnss-mymachines (edits nsswitch.conf)
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# A .venv without pip is what `python3 -m venv .venv` leaves behind on a fresh Debian
# before python3-venv is installed: make it again rather than fail on it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pip' >/dev/null 2>&1; then
  # the distribution's python, never a pyenv/conda one that may vanish
  py=/usr/bin/python3; [ -x "$py" ] || py=python3
  [ -e .venv ] && echo "setup: .venv has no working pip; making it again"
  "$py" -m venv --clear .venv
  rm -f .venv/.stack-tui-setup*
fi
stamp=".venv/.stack-tui-setup$extras"
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
