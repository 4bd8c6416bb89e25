#!/usr/bin/env bash
# Remove the community edge gateway installed by systemd/install.sh, as root:
#
#   sudo ./systemd/uninstall.sh [--purge] [--root DIR] [--dry-run]
#
# Stops and disables cgw.service, removes the unit, /opt/cgw and /usr/local/bin/cgw. Keeps the config and secrets
# (/etc/cgw), the store (/var/lib/cgw), the user cgw and the local broker's files unless
# --purge is given. Idempotent: a second run removes nothing and says so.
# Exit codes: 0 done; 1 failure; 2 usage.
set -euo pipefail

PREFIX=/opt/cgw
CONF=/etc/cgw
STATE=/var/lib/cgw
UNIT=/etc/systemd/system/cgw.service
MOSQ_FILES=(/etc/mosquitto/conf.d/cgw-local.conf /etc/mosquitto/conf.d/cgw-lan.conf
    /etc/mosquitto/cgw.passwd /etc/mosquitto/cgw.acl /etc/mosquitto/certs/cgw-lan.crt
    /etc/mosquitto/certs/cgw-lan.key)

usage() {
    cat <<EOF
Usage: $0 [options]

Stops and disables cgw.service, removes $UNIT, $PREFIX and /usr/local/bin/cgw.
Keeps $CONF (config, secrets) and $STATE (the store) unless --purge is given.

Options:
  --purge       also remove $CONF, $STATE, the user cgw and the local broker's cgw files.
                The store may hold alarms and events not yet delivered upstream: purge only
                once the platform has them (or they are no longer wanted)
  --root DIR    remove from DIR as a staging root: files only; no systemctl or userdel
                (printed instead); root not needed
  --dry-run     print what would be removed, remove nothing
  -h, --help    this text
EOF
}

ROOT=""
DRY_RUN=0
PURGE=0
while (($#)); do
    case $1 in
    --root)
        [[ $# -ge 2 && -n $2 ]] || { usage >&2; exit 2; }
        ROOT=$(realpath -m -- "$2")
        shift 2
        ;;
    --dry-run) DRY_RUN=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done

CHANGES=0
t() { printf '%s%s' "$ROOT" "$1"; }
say() { printf '%s\n' "$*"; }
show() { say "    \$ $(printf '%q ' "$@")"; }
changed() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then say "  would: $*"; else say "  - $*"; fi
}
act() { if ((DRY_RUN)); then show "$@"; else "$@"; fi; }
sys() { if ((DRY_RUN)) || [[ -n $ROOT ]]; then show "$@"; else "$@"; fi; }

remove() { # remove PATH (a file or a whole tree) if it exists
    local path
    path=$(t "$1")
    if [[ -e $path || -L $path ]]; then
        act rm -rf -- "$path"
        changed "removed $1"
    fi
}

if [[ -z $ROOT ]] && ((!DRY_RUN)) && [[ $(id -u) != 0 ]]; then
    printf 'uninstall.sh: run as root (sudo %s), or use --root DIR / --dry-run\n' "$0" >&2
    exit 1
fi

say "service"
if [[ -n $ROOT ]]; then
    say "  skipped (--root): systemctl disable --now cgw"
else
    if systemctl is-active --quiet cgw 2>/dev/null; then
        sys systemctl stop cgw
        changed "stopped cgw"
    fi
    if systemctl is-enabled --quiet cgw 2>/dev/null; then
        sys systemctl disable cgw
        changed "disabled cgw"
    fi
fi
unit_was=$CHANGES
remove "$UNIT"
if ((CHANGES > unit_was)); then
    sys systemctl daemon-reload
fi

say "code"
remove "$PREFIX"
if [[ $(readlink "$(t /usr/local/bin/cgw)" 2>/dev/null) == "$PREFIX/.venv/bin/cgw" ]]; then
    remove /usr/local/bin/cgw
fi

if ((PURGE)); then
    say "config, secrets, store (--purge)"
    store=$(t "$STATE")
    if [[ -d $store ]] && [[ -n $(find "$store" -name '*.db' -print -quit) ]]; then
        say "  the store in $STATE is deleted with any alarms and events it has not delivered"
    fi
    remove "$CONF"
    remove "$STATE"
    say "local broker files"
    mosq_was=$CHANGES
    for file in "${MOSQ_FILES[@]}"; do
        remove "$file"
    done
    if ((CHANGES > mosq_was)) && [[ -z $ROOT ]] &&
        systemctl is-active --quiet mosquitto 2>/dev/null; then
        sys systemctl restart mosquitto
    fi
    say "user cgw"
    if [[ -n $ROOT ]]; then
        say "  skipped (--root): userdel cgw"
    elif getent passwd cgw >/dev/null; then
        sys userdel cgw
        changed "removed user cgw"
    fi
else
    say "kept:"
    say "  $CONF (config and secrets)"
    say "  $STATE (the store: it may hold alarms and events not yet delivered upstream)"
    say "  the user cgw and the local broker's files in /etc/mosquitto"
    say "  Remove them with --purge once the platform has everything it needs."
fi

if ((CHANGES == 0)); then
    say "Nothing changed: nothing left to remove."
elif ((DRY_RUN)); then
    say "Dry run: $CHANGES change(s) would be made."
else
    say "Done: $CHANGES change(s)."
fi
