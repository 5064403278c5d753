#!/usr/bin/env bash
# One command to try stack-tui.
#   bash try.sh              -> boots a throwaway local Debian 13 host (needs root) and opens
#                               the installer on it
#   bash try.sh --hosts N    -> boots N throwaway local hosts (a controller and N-1 compute
#                               hosts, profile "lab") and opens the installer on them
#   bash try.sh user@server  -> opens the installer pointed at your server
set -euo pipefail
cd "$(dirname "$0")"
st=.venv/bin/stack-tui
if [ $# -eq 0 ]; then
  bash scripts/setup.sh
  "$st" sandbox up
  exec "$st" --profile sandbox
fi
if [ "$1" = --hosts ]; then
  case ${2:-} in
    ''|*[!0-9]*) echo "try.sh: --hosts takes a number of hosts, e.g. bash try.sh --hosts 3" >&2
                 exit 2;;
  esac
  bash scripts/setup.sh
  "$st" sandbox up --hosts "$2" --name lab
  exec "$st" --profile lab
fi
case $1 in
  -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0;;
  -*) echo "try.sh: unknown option $1 (bash try.sh, bash try.sh --hosts N, bash try.sh user@server)" >&2
      exit 2;;
esac
bash scripts/setup.sh --client  # a real server: none of the throwaway-host tools
target=$1; user=root; host=$target
case $target in *@*) user=${target%@*}; host=${target#*@};; esac
"$st" profiles new server --host "$host" --user "$user" --force
exec "$st" --profile server
