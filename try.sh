#!/usr/bin/env bash
# One command to try stack-tui.
#   bash try.sh              -> boots a throwaway local Debian 12 host (needs root) and opens
#                               the installer on it
#   bash try.sh user@server  -> opens the installer pointed at your server
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
if [ $# -eq 0 ]; then
  python3 -m tui.cli sandbox up
  exec python3 -m tui.cli --profile sandbox
fi
target=$1; user=root; host=$target
case $target in *@*) user=${target%@*}; host=${target#*@};; esac
python3 -m tui.cli profiles new server --host "$host" --user "$user" --force
exec python3 -m tui.cli --profile server
