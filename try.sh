#!/usr/bin/env bash
# One command to try stack-tui.
#   bash try.sh              -> boots a throwaway local Debian 13 host (needs root) and opens
#                               the installer on it
#   bash try.sh user@server  -> opens the installer pointed at your server
set -euo pipefail
cd "$(dirname "$0")"
st=.venv/bin/stack-tui
if [ $# -eq 0 ]; then
  bash scripts/setup.sh
  "$st" sandbox up
  exec "$st" --profile sandbox
fi
bash scripts/setup.sh --client  # a real server: none of the throwaway-host tools
target=$1; user=root; host=$target
case $target in *@*) user=${target%@*}; host=${target#*@};; esac
"$st" profiles new server --host "$host" --user "$user" --force
exec "$st" --profile server
