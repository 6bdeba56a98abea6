#!/usr/bin/env bash
# Installs (or removes) offload's udev rules, which let the user at the seat read phones
# over MTP/PTP without root, then reloads udev so that they apply to phones plugged in
# from now on (unplug and plug in a phone that is connected already).
#
#   sudo scripts/install-udev.sh               install into /etc/udev/rules.d and reload
#   sudo scripts/install-udev.sh --uninstall   remove them and reload
#   scripts/install-udev.sh --dry-run          print what would be done, change nothing
#   options: --rules-dir DIR (default /etc/udev/rules.d), --no-reload
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/udev/69-offload.rules"
dir=/etc/udev/rules.d
action=install
dry=0
reload=1

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) action=uninstall ;;
    --dry-run|-n) dry=1 ;;
    --rules-dir) dir="${2:?--rules-dir needs a folder}"; shift ;;
    --rules-dir=*) dir="${1#--rules-dir=}" ;;
    --no-reload) reload=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-udev.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

dest="$dir/69-offload.rules"

run() {
  if [ "$dry" = 1 ]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

if [ "$action" = install ]; then
  [ -f "$src" ] || { echo "install-udev.sh: $src is missing" >&2; exit 1; }
  run install -d -m 0755 "$dir"
  run install -m 0644 "$src" "$dest"
  [ "$dry" = 1 ] || echo "installed $dest"
else
  if [ -e "$dest" ] || [ "$dry" = 1 ]; then
    run rm -f "$dest"
    [ "$dry" = 1 ] || echo "removed $dest"
  else
    echo "nothing to remove: $dest is not there"
  fi
fi

if [ "$reload" = 1 ]; then
  if [ "$dry" = 1 ] || command -v udevadm >/dev/null 2>&1; then
    run udevadm control --reload
    run udevadm trigger --subsystem-match=usb --action=change
  else
    echo "udevadm not found: reload udev yourself (or restart) for the change to apply" >&2
  fi
fi
if [ "$dry" = 0 ] && [ "$action" = install ]; then
  echo "Unplug and plug in the phone for the rules to apply to it."
fi
