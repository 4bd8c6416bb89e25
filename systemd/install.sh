#!/usr/bin/env bash
# Install (or upgrade) the community edge gateway on Raspberry Pi OS / Debian, as root:
#
#   sudo ./systemd/install.sh [options]
#
# Idempotent: a second run changes nothing and says so. What it does, in order:
#   packages   python3-venv and mosquitto, with apt-get, only if missing
#   user       system user cgw (groups dialout, gpio; gpio is created if absent)
#   code       this checkout copied to /opt/cgw; venv /opt/cgw/.venv with the package
#   config     /etc/cgw/gateway.yaml from config/examples/gateway.pi.yaml, only if absent;
#              /etc/cgw/credentials/ (root 0700, secrets 0600); /etc/cgw/tls/
#   broker     /etc/mosquitto/conf.d/cgw-local.conf from config/mosquitto/local.conf, only if
#              absent (or an unedited older version); broker user cgw with a generated password
#              (credential local-mqtt-password); with --lan-listener a TLS listener on the LAN
#              with a site CA made here (a plain-text LAN listener is never written)
#   console    with --console ADDR, the field console's HTTPS certificate for ADDR from the same
#              site CA: /etc/cgw/tls/console.crt, its key the credential console.key; prints its
#              SHA-256 fingerprint and the console lines for gateway.yaml (never edited here)
#   service    /etc/systemd/system/cgw.service; `cgw check-config`; then, from the valid config,
#              one broker login per device entry (passwords in /etc/cgw/local-broker/) and the
#              broker's ACL (`cgw broker-acl`); enable and start
#
# Exit codes: 0 done; 1 failure; 2 usage; 3 installed, but the config is not valid yet, so the
# service was neither enabled nor started (the message says what to do).
set -euo pipefail

PREFIX=/opt/cgw
CONF=/etc/cgw
STATE=/var/lib/cgw
UNIT=/etc/systemd/system/cgw.service
MOSQ_DIR=/etc/mosquitto/conf.d
MOSQ_PASSWD=/etc/mosquitto/cgw.passwd
MOSQ_ACL=/etc/mosquitto/cgw.acl
MOSQ_CERTS=/etc/mosquitto/certs # the LAN listener's certificate and key
LOGINS=/etc/cgw/local-broker    # device logins' passwords, root 0700 (not for the service)
SITE_CA=/etc/cgw/site-ca        # the site CA's key, root 0700; its certificate in tls/
LAN_PORT=8883
CONSOLE_PORT=8088 # the console's default port (gateway/config/console.py)
# sha256 of earlier shipped config/mosquitto/local.conf versions: replaced when found unedited
OLD_LOCAL_CONF=(381d7d87f374d824e067c4ab604979a992dfda908a348e19806f9fa3ed28f286)
CRED_PATH=/run/credentials/cgw.service/cgw_ # + file name in $CONF/credentials
PACKAGES=(python3-venv mosquitto)
SHIP=(pyproject.toml README.md gateway drivers config systemd docs) # copied to $PREFIX

usage() {
    cat <<EOF
Usage: $0 [options]

Installs or upgrades the gateway: code in $PREFIX, config in $CONF, store in $STATE,
unit cgw.service, local broker config for mosquitto. Run it as root.

Options:
  --root DIR           install into DIR as a staging root: files only; no apt-get, useradd,
                       chown or systemctl (those are printed instead); root not needed
  --dry-run            print what would change, change nothing
  --no-venv            skip the venv and pip step (and so the config check)
  --no-start           enable the service but do not start or restart it
  --lan-listener ADDR  also let the local broker listen on ADDR:$LAN_PORT (the building LAN),
                       TLS only, with a certificate from a site CA made here; written to
                       $MOSQ_DIR/cgw-lan.conf (devices trust $CONF/tls/site-ca.crt)
  --console ADDR       issue the field console's HTTPS certificate for ADDR (the address phones
                       on the property LAN reach) from the same site CA: $CONF/tls/console.crt,
                       key $CONF/credentials/console.key; print its SHA-256 fingerprint and the
                       lines that put the console on ADDR:$CONSOLE_PORT in $CONF/gateway.yaml
  --check              only check $CONF/gateway.yaml, reading the secrets it names from
                       $CONF/credentials; change nothing
  -h, --help           this text
EOF
}

ROOT=""
DRY_RUN=0
NO_VENV=0
NO_START=0
CHECK_ONLY=0
LAN_LISTENER=""
CONSOLE=""
while (($#)); do
    case $1 in
    --root)
        [[ $# -ge 2 && -n $2 ]] || { usage >&2; exit 2; }
        ROOT=$(realpath -m -- "$2")
        shift 2
        ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-venv) NO_VENV=1; shift ;;
    --no-start) NO_START=1; shift ;;
    --lan-listener)
        [[ $# -ge 2 && $2 =~ ^[0-9A-Za-z.:%_-]+$ ]] || { usage >&2; exit 2; }
        LAN_LISTENER=$2
        shift 2
        ;;
    --console)
        [[ $# -ge 2 && $2 =~ ^[0-9A-Za-z.:%_-]+$ ]] || { usage >&2; exit 2; }
        if [[ $2 == 0.0.0.0 || $2 == :: ]]; then
            printf 'install.sh: --console %s: give the address phones reach, not every address\n' \
                "$2" >&2
            exit 2
        fi
        CONSOLE=$2
        shift 2
        ;;
    --check) CHECK_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CHANGES=0
CODE_CHANGED=0
RESTART=0 # the running service must be restarted to see what changed
BROKER_CHANGED=0

t() { printf '%s%s' "$ROOT" "$1"; } # a path on the target system
say() { printf '%s\n' "$*"; }
changed() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then say "  would: $*"; else say "  + $*"; fi
}
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# A command that changes files under the target root; printed only with --dry-run.
act() {
    if ((DRY_RUN)); then show "$@"; else "$@"; fi
}
# A command that changes the running system (packages, users, services); printed only with
# --dry-run or --root.
sys() {
    if ((DRY_RUN)) || [[ -n $ROOT ]]; then show "$@"; else "$@"; fi
}
show() { say "    \$ $(printf '%q ' "$@")"; }

# ensure_dir PATH MODE OWNER:GROUP
ensure_dir() {
    local path mode=$2 owner=$3
    path=$(t "$1")
    if [[ ! -d $path ]]; then
        act install -d -m "$mode" "$path"
        changed "created $1 ($mode)"
    elif [[ $(stat -c %a "$path") != "${mode#0}" ]]; then
        act chmod "$mode" "$path"
        changed "mode of $1 set to $mode"
    fi
    ensure_owner "$1" "$owner"
}

# ensure_owner PATH OWNER:GROUP (the real system only: under --root, users may not exist)
ensure_owner() {
    [[ -z $ROOT ]] || return 0
    if ((DRY_RUN)) && [[ ! -e $1 ]]; then return 0; fi
    if [[ $(stat -c %U:%G "$1") != "$2" ]]; then
        act chown "$2" "$1"
        changed "owner of $1 set to $2"
    fi
}

# install_file SRC DEST MODE: copy if absent or different
install_file() {
    local dest
    dest=$(t "$2")
    if [[ -f $dest ]] && cmp -s "$1" "$dest"; then return 1; fi
    ((DRY_RUN)) || install -D -m "$3" "$1" "$dest" # the caller reports it
    return 0
}

# make_tls WHAT OPENSSL-ARGS...: openssl with those arguments (printed only with --dry-run), new
# keys private from the start; dies with openssl's error, naming WHAT it was making
make_tls() {
    local what=$1 err
    shift
    err=$(umask 077 && act openssl "$@" 2>&1 >/dev/null) || die "openssl could not make $what: $err"
}

# site_ca: the site CA in $SITE_CA, made by the first install that needs it (its key never
# leaves that directory), and its certificate in $CONF/tls/site-ca.crt, public, for the devices
# and phones that verify what it signs
SITE_CA_DONE=0
site_ca() {
    local ca_key ca_crt
    ((!SITE_CA_DONE)) || return 0
    SITE_CA_DONE=1
    ensure_dir "$SITE_CA" 0700 root:root
    ca_key=$(t "$SITE_CA/ca.key")
    ca_crt=$(t "$SITE_CA/ca.crt")
    if [[ ! -f $ca_key || ! -f $ca_crt ]]; then
        make_tls "the site CA" req -x509 -newkey rsa:2048 -nodes -days 7300 -sha256 \
            -subj "/CN=cgw site CA $(hostname -s 2>/dev/null || echo gateway)" \
            -addext basicConstraints=critical,CA:TRUE,pathlen:0 \
            -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$ca_key" -out "$ca_crt"
        ((DRY_RUN)) || chmod 0600 "$ca_key"
        changed "created the site CA in $SITE_CA (its key never leaves this directory)"
    fi
    if ((DRY_RUN)) && [[ ! -f $ca_crt ]]; then
        changed "$CONF/tls/site-ca.crt: the site CA's certificate, for devices and phones"
    elif install_file "$ca_crt" "$CONF/tls/site-ca.crt" 0644; then
        changed "$CONF/tls/site-ca.crt: the site CA's certificate, for devices and phones"
    fi
}

# issue_cert WHAT ADDR CRT KEY DAYS: a TLS server certificate for ADDR from the site CA (CN ADDR,
# subjectAltName its IP or DNS name), valid DAYS days, at CRT (0644) with its key at KEY (0600).
# Issued again when ADDR changes, when it has less than 30 days left, or when the site CA no
# longer signs it (a new CA); returns 1 if the one there is still good.
issue_cert() {
    local what=$1 addr=$2 crt key days=$5 ca_key ca_crt san csr ext
    crt=$(t "$3")
    key=$(t "$4")
    ca_key=$(t "$SITE_CA/ca.key")
    ca_crt=$(t "$SITE_CA/ca.crt")
    if [[ -f $key && -f $ca_crt ]] &&
        openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null 2>&1 &&
        [[ $(openssl x509 -in "$crt" -noout -subject -nameopt RFC2253 2>/dev/null) == \
            "subject=CN=$addr" ]] &&
        openssl verify -CAfile "$ca_crt" "$crt" >/dev/null 2>&1; then
        return 1
    fi
    san="DNS:$addr"
    [[ $addr =~ ^[0-9.]+$|: ]] && san="IP:${addr%%\%*}" # no zone id in a certificate
    csr=$(mktemp)
    ext=$(mktemp)
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        "$san" >"$ext"
    make_tls "$what's key" req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$addr" \
        -keyout "$key" -out "$csr"
    make_tls "$what's certificate" x509 -req -in "$csr" -CA "$ca_crt" -CAkey "$ca_key" \
        -set_serial "0x$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" -days "$days" -sha256 \
        -extfile "$ext" -out "$crt"
    rm -f "$csr" "$ext"
    ((DRY_RUN)) || chmod 0600 "$key"
    ((DRY_RUN)) || chmod 0644 "$crt"
    changed "issued $what's certificate for $addr ($3)"
    return 0
}

CGW_BIN=$PREFIX/.venv/bin/cgw

# mapped_config: a copy of the config with the secrets it names mapped to their source files
# (the config names them as the service sees them) and, under --root, its files in $CONF to the
# staged ones. The copy stays in $CONF so that paths relative to the config still resolve; the
# caller removes it.
mapped_config() {
    local tmp staged=()
    tmp=$(mktemp --suffix=.yaml "$(t "$CONF")/.check.XXXXXX")
    if [[ -n $ROOT ]]; then # a path that starts a value: after a space, a quote or [
        staged=(-e "s#\(^\|[[:space:]\"'[]\)${CONF//./\\.}/#\1$(sed_text "$(t "$CONF")")/#g")
    fi
    sed "${staged[@]}" -e "s#${CRED_PATH//./\\.}#$(sed_text "$(t "$CONF")/credentials/")#g" \
        "$(t "$CONF")/gateway.yaml" >"$tmp"
    printf '%s\n' "$tmp"
}
sed_text() { # TEXT as the replacement of a sed s#...#...# command
    local text=${1//\\/\\\\}
    text=${text//&/\\&}
    printf '%s' "${text//#/\\#}"
}

check_config() { # prints cgw's verdict; returns its exit code
    local cgw conf tmp rc
    cgw=$(t "$CGW_BIN")
    conf=$(t "$CONF")/gateway.yaml
    if [[ ! -x $cgw ]]; then
        say "  config check skipped: $CGW_BIN is not installed"
        return 0
    fi
    [[ -f $conf ]] || { say "  $CONF/gateway.yaml does not exist"; return 2; }
    tmp=$(mapped_config)
    rc=0
    "$cgw" check-config "$tmp" >"$tmp.out" 2>&1 || rc=$?
    sed "s|$tmp|$CONF/gateway.yaml|g" "$tmp.out" | sed 's/^/  /'
    rm -f "$tmp" "$tmp.out"
    return "$rc"
}

if ((CHECK_ONLY)); then
    rc=0
    check_config || rc=$?
    ((rc != 2)) || rc=3 # the script's own code for "config not valid (yet)", as documented
    exit "$rc"
fi

if [[ -z $ROOT ]] && ((!DRY_RUN)) && [[ $(id -u) != 0 ]]; then
    die "run as root (sudo $0), or use --root DIR / --dry-run"
fi
[[ -f $SRC/pyproject.toml && -f $SRC/systemd/cgw.service ]] || die "$SRC is not a gateway checkout"
mode_note=""
((DRY_RUN)) && mode_note=" (dry run)"
say "Installing the gateway from $SRC${ROOT:+ into $ROOT}$mode_note"

# -- packages ---------------------------------------------------------------------------------
say "packages"
if [[ -n $ROOT ]]; then
    say "  skipped (--root): apt-get install ${PACKAGES[*]} when missing"
else
    missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        sys apt-get update -q
        sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
        changed "installed ${missing[*]}"
    fi
fi

# -- user and groups --------------------------------------------------------------------------
say "user cgw"
if [[ -n $ROOT ]]; then
    say "  skipped (--root): groupadd --system gpio (if absent); useradd --system cgw;" \
        "usermod -aG dialout,gpio cgw"
else
    new_group=""
    if ! getent group gpio >/dev/null; then
        # Raspberry Pi OS has it (owner of /dev/gpiochip*); the unit names it, so it must exist
        sys groupadd --system gpio
        changed "created group gpio"
        new_group=gpio
    fi
    if ! getent passwd cgw >/dev/null; then
        sys useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "community edge gateway" cgw
        changed "created system user cgw"
    fi
    for group in dialout gpio; do
        if { [[ $group == "$new_group" ]] || getent group "$group" >/dev/null; } &&
            ! id -nG cgw 2>/dev/null | grep -qw "$group"; then
            sys usermod -aG "$group" cgw
            changed "cgw added to group $group"
        fi
    done
fi

# -- code -------------------------------------------------------------------------------------
say "code in $PREFIX"
dest=$(t "$PREFIX")
if [[ $(realpath -m "$dest") == "$SRC" ]]; then
    say "  running from $PREFIX itself: nothing to copy"
else
    ensure_dir "$PREFIX" 0755 root:root
    copied=0
    while IFS= read -r -d '' rel; do
        mode=0644
        [[ -x $SRC/$rel ]] && mode=0755
        if install_file "$SRC/$rel" "$PREFIX/$rel" "$mode"; then copied=$((copied + 1)); fi
    done < <(cd "$SRC" && find "${SHIP[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
        -print0 | sort -z)
    removed=0
    while IFS= read -r -d '' rel; do
        if [[ ! -f $SRC/$rel ]]; then
            act rm -f "$dest/$rel"
            removed=$((removed + 1))
        fi
    done < <(cd "$dest" 2>/dev/null && find "${SHIP[@]}" -type f ! -path '*/__pycache__/*' \
        ! -name '*.pyc' -print0 2>/dev/null)
    if ((copied + removed)); then
        changed "$copied file(s) copied to $PREFIX, $removed stale file(s) removed"
        CODE_CHANGED=1
        RESTART=1
    fi
fi

# -- venv -------------------------------------------------------------------------------------
venv=$(t "$PREFIX")/.venv
if ((NO_VENV)); then
    say "venv: skipped (--no-venv)"
else
    say "venv $PREFIX/.venv"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "Python 3.11 or newer is required ($(python3 --version 2>&1))"
    if [[ ! -x $venv/bin/python ]]; then
        act python3 -m venv "$venv"
        changed "created the venv"
    fi
    want=$(sha256sum "$SRC/pyproject.toml" | cut -d' ' -f1)
    if [[ $(cat "$venv/.cgw-pyproject" 2>/dev/null) != "$want" ]]; then
        # editable: the package runs from $PREFIX, its profiles (package data) included
        act "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$(t "$PREFIX")"
        if grep -qs '^Raspberry Pi' /proc/device-tree/model; then
            # gpiozero's pin factory for the Pi 5 (and the default on Pi OS)
            act "$venv/bin/pip" install --quiet --disable-pip-version-check lgpio ||
                say "  warning: pip could not install lgpio; GPIO devices will stay off"
        fi
        if ((!DRY_RUN)); then printf '%s\n' "$want" >"$venv/.cgw-pyproject"; fi
        changed "installed the package and its dependencies into the venv"
        RESTART=1
    fi
    if ((CODE_CHANGED)); then # the service cannot write __pycache__ (ProtectSystem=strict)
        act "$venv/bin/python" -m compileall -q "$(t "$PREFIX")/gateway" "$(t "$PREFIX")/drivers" \
            >/dev/null
    fi
fi

link=$(t /usr/local/bin/cgw)
if [[ $(readlink "$link" 2>/dev/null) != "$PREFIX/.venv/bin/cgw" ]]; then
    if [[ -e $link || -L $link ]]; then
        say "  /usr/local/bin/cgw exists and is not ours: left alone"
    else
        act install -d -m 0755 "$(dirname "$link")"
        act ln -s "$PREFIX/.venv/bin/cgw" "$link"
        changed "linked /usr/local/bin/cgw to $PREFIX/.venv/bin/cgw"
    fi
fi

# -- config and secrets -----------------------------------------------------------------------
say "config in $CONF"
ensure_dir "$CONF" 0750 root:cgw
ensure_dir "$CONF/tls" 0755 root:root
ensure_dir "$CONF/credentials" 0700 root:root
creds=$(t "$CONF")/credentials
if [[ -d $creds ]]; then
    while IFS= read -r -d '' secret; do
        act chmod 0600 "$secret"
        changed "mode of ${secret#"$ROOT"} set to 0600"
    done < <(find "$creds" -type f -perm /077 -print0)
fi
if [[ -e $(t "$CONF/gateway.yaml") ]]; then
    say "  $CONF/gateway.yaml exists: kept as it is"
else
    act install -m 0640 "$SRC/config/examples/gateway.pi.yaml" "$(t "$CONF/gateway.yaml")"
    changed "created $CONF/gateway.yaml from config/examples/gateway.pi.yaml (edit it)"
fi
[[ -e $(t "$CONF/gateway.yaml") ]] && ensure_owner "$CONF/gateway.yaml" root:cgw

# -- local broker -----------------------------------------------------------------------------
say "local broker (mosquitto)"
ensure_dir "$MOSQ_DIR" 0755 root:root
local_conf=$(t "$MOSQ_DIR/cgw-local.conf")
if [[ ! -e $local_conf ]]; then
    act install -m 0644 "$SRC/config/mosquitto/local.conf" "$local_conf"
    changed "created $MOSQ_DIR/cgw-local.conf"
    BROKER_CHANGED=1
elif ! cmp -s "$SRC/config/mosquitto/local.conf" "$local_conf"; then
    if [[ " ${OLD_LOCAL_CONF[*]} " == *" $(sha256sum <"$local_conf" | cut -d' ' -f1) "* ]]; then
        act install -m 0644 "$SRC/config/mosquitto/local.conf" "$local_conf"
        changed "updated $MOSQ_DIR/cgw-local.conf (an unedited earlier version)"
        BROKER_CHANGED=1
    else
        say "  $MOSQ_DIR/cgw-local.conf differs from config/mosquitto/local.conf: kept as it is"
        grep -qs '^acl_file ' "$local_conf" ||
            say "  warning: it has no acl_file line: add 'acl_file $MOSQ_ACL' (see local.conf)"
    fi
fi
lan=$(t "$MOSQ_DIR/cgw-lan.conf")
lan_mark="# written by install.sh --lan-listener"
if [[ -z $LAN_LISTENER && -f $lan ]] && grep -qs "^$lan_mark" "$lan" &&
    ! grep -qs '^certfile ' "$lan"; then
    # an earlier install wrote a plain-text LAN listener: keep its address, move it to TLS
    LAN_LISTENER=$(sed -n 's/^listener [0-9]* //p' "$lan" | head -n 1)
    say "  $MOSQ_DIR/cgw-lan.conf is a plain-text listener on $LAN_LISTENER: moved to TLS"
fi
if [[ -n $LAN_LISTENER ]]; then
    command -v openssl >/dev/null ||
        die "--lan-listener needs openssl for its TLS certificate; a plain LAN listener is refused"
    site_ca
    ensure_dir "$MOSQ_CERTS" 0755 root:root
    if issue_cert "the LAN listener" "$LAN_LISTENER" "$MOSQ_CERTS/cgw-lan.crt" \
        "$MOSQ_CERTS/cgw-lan.key" 3650; then
        BROKER_CHANGED=1
    fi
    lan_key=$(t "$MOSQ_CERTS/cgw-lan.key")
    [[ -e $lan_key ]] && ensure_owner "$MOSQ_CERTS/cgw-lan.key" mosquitto:mosquitto
    want="$lan_mark: the building LAN, TLS only
# (devices verify it with $CONF/tls/site-ca.crt and log in as their device class)
listener $LAN_PORT $LAN_LISTENER
certfile $MOSQ_CERTS/cgw-lan.crt
keyfile $MOSQ_CERTS/cgw-lan.key
tls_version tlsv1.2"
    if [[ ! -f $lan || $(cat "$lan") != "$want" ]]; then
        ((DRY_RUN)) || printf '%s\n' "$want" >"$lan"
        changed "local broker listens on $LAN_LISTENER:$LAN_PORT (TLS) too ($MOSQ_DIR/cgw-lan.conf)"
        BROKER_CHANGED=1
    fi
fi
passwd_file=$(t "$MOSQ_PASSWD")
# broker_login USER SECRET: USER in the password file with the password in the file SECRET
# (generated if absent); returns 1 if nothing had to change
broker_login() {
    local user=$1 secret fresh=0 entry
    secret=$(t "$2")
    if [[ ! -e $secret ]]; then
        if ((!DRY_RUN)); then
            (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret")
        fi
        changed "generated the local broker password of $user in $2"
        fresh=1
    fi
    if ((!fresh)) && grep -qs "^$user:" "$passwd_file"; then return 1; fi
    if ((DRY_RUN)); then
        changed "broker user $user in $MOSQ_PASSWD"
    elif ! command -v mosquitto_passwd >/dev/null; then
        say "  warning: mosquitto_passwd not found: broker user $user not created in $MOSQ_PASSWD"
        return 1
    else
        entry=$(mktemp)
        printf '%s:%s\n' "$user" "$(cat "$secret")" >"$entry" # a file: no secret on a command line
        mosquitto_passwd -U "$entry"
        (umask 077 &&
            { grep -vs "^$user:" "$passwd_file" || true; cat "$entry"; } >"$passwd_file.new")
        rm -f "$entry"
        mv -f "$passwd_file.new" "$passwd_file"
        changed "broker user $user set in $MOSQ_PASSWD"
    fi
    BROKER_CHANGED=1
    return 0
}
if broker_login cgw "$CONF/credentials/local-mqtt-password"; then RESTART=1; fi
[[ -e $passwd_file ]] && ensure_owner "$MOSQ_PASSWD" mosquitto:mosquitto
acl_file=$(t "$MOSQ_ACL")
if [[ ! -e $acl_file ]]; then
    # until the config is valid, no device may do anything (the full ACL comes after the check)
    if ((!DRY_RUN)); then
        (umask 077 && printf '%s\n' "# The local broker's ACL, written by install.sh: no device" \
            "# login is allowed anything until /etc/cgw/gateway.yaml passes its check." \
            "" "user cgw" >"$acl_file")
    fi
    changed "created $MOSQ_ACL (devices refused until the config is valid)"
    BROKER_CHANGED=1
fi
[[ -e $acl_file ]] && ensure_owner "$MOSQ_ACL" mosquitto:mosquitto

# -- field console ----------------------------------------------------------------------------
if [[ -n $CONSOLE ]]; then
    yaml_host=$CONSOLE
    url_host=$CONSOLE
    if [[ $CONSOLE == *:* ]]; then # IPv6: quoted in YAML, bracketed (without a zone) in a URL
        yaml_host="'$CONSOLE'"
        url_host="[${CONSOLE%%\%*}]"
    fi
    say "field console at https://$url_host:$CONSOLE_PORT"
    command -v openssl >/dev/null || die "--console needs openssl for the console's certificate"
    site_ca
    console_crt=$CONF/tls/console.crt
    fingerprint=""
    # 825 days at most: iPhones refuse a server certificate valid for longer, whoever signed it
    if issue_cert "the console" "$CONSOLE" "$console_crt" "$CONF/credentials/console.key" 825; then
        RESTART=1 # the service gets its key from the credentials, copied in when it starts
        if ((DRY_RUN)); then fingerprint="known once it is issued (dry run)"; fi
    fi
    if [[ -z $fingerprint ]]; then
        fingerprint=$(openssl x509 -in "$(t "$console_crt")" -noout -fingerprint -sha256)
        fingerprint=${fingerprint#*=}
    fi
    say "  SHA-256 fingerprint of the console's certificate: $fingerprint"
    cat <<EOT
  (a phone's browser shows the same on its first visit: compare them before going on)
  for $CONF/gateway.yaml, which install.sh never edits (then: sudo systemctl reload cgw):
    console:
      host: $yaml_host
      allow_remote: true
      tls_cert: $console_crt
      tls_key: ${CRED_PATH}console.key
      public_url: https://$url_host:$CONSOLE_PORT
EOT
fi

# -- state ------------------------------------------------------------------------------------
say "store in $STATE"
ensure_dir "$STATE" 0700 cgw:cgw

# -- unit -------------------------------------------------------------------------------------
say "unit $UNIT"
if install_file "$SRC/systemd/cgw.service" "$UNIT" 0644; then
    changed "installed $UNIT"
    sys systemctl daemon-reload
    RESTART=1
fi

# -- check, enable, start ---------------------------------------------------------------------
say "config check"
rc=0
check_config || rc=$?
if ((rc != 0)); then
    conf=$(t "$CONF/gateway.yaml")
    if [[ -f $conf ]]; then # the secrets the config names that are not there yet
        pattern="${CRED_PATH//./\\.}[A-Za-z0-9._-]*"
        sed 's/#.*//' "$conf" | { grep -o "$pattern" || true; } | sort -u |
            while read -r path; do
                name=${path#"$CRED_PATH"}
                hint=""
                if [[ $name == console.key ]]; then hint="; install.sh --console ADDR makes it"; fi
                [[ -e $(t "$CONF/credentials/$name") ]] ||
                    say "  missing secret: $CONF/credentials/$name (seen as $path$hint)"
            done
    fi
    cat <<EOF

The configuration is not valid yet, so cgw.service was neither enabled nor started.
  1. Put each secret the config names in $CONF/credentials/<name> (chmod 600).
  2. Put the platform's CA and this gateway's certificate in $CONF/tls/.
  3. Edit $CONF/gateway.yaml (ids, broker, devices, alarms).
  4. Run this script again (or only the check: $PREFIX/systemd/install.sh --check).
See $PREFIX/docs/install.md.
EOF
    exit 3
fi

say "broker logins and ACL"
cgw=$(t "$CGW_BIN")
if [[ ! -x $cgw ]]; then
    say "  skipped: $CGW_BIN is not installed (devices stay refused by the broker)"
else
    conf=$(mapped_config)
    rc=0
    logins=$("$cgw" broker-acl --logins -c "$conf" 2>"$conf.err") &&
        acl=$("$cgw" broker-acl -c "$conf" 2>"$conf.err") || rc=$?
    err=$(sed "s|$conf|$CONF/gateway.yaml|g" "$conf.err")
    rm -f "$conf" "$conf.err"
    ((rc == 0)) || die "cgw broker-acl failed: $err"
    ensure_dir "$LOGINS" 0700 root:root
    for login in $logins; do
        broker_login "$login" "$LOGINS/$login.password" || true
    done
    for secret in "$(t "$LOGINS")"/*.password; do # logins of devices no longer configured
        [[ -e $secret ]] || continue
        login=$(basename "$secret" .password)
        if ! grep -qx -- "$login" <<<"$logins"; then
            if ((!DRY_RUN)); then
                (umask 077 && { grep -v "^$login:" "$passwd_file" || true; } >"$passwd_file.new")
                mv -f "$passwd_file.new" "$passwd_file"
                rm -f "$secret"
            fi
            changed "removed broker user $login (no longer in the config)"
            BROKER_CHANGED=1
        fi
    done
    if [[ $(cat "$acl_file" 2>/dev/null) != "$acl" ]]; then
        ((DRY_RUN)) || (umask 077 && printf '%s\n' "$acl" >"$acl_file")
        changed "wrote $MOSQ_ACL from the config ($(wc -w <<<"$logins") device login(s))"
        BROKER_CHANGED=1
    fi
    [[ -e $passwd_file ]] && ensure_owner "$MOSQ_PASSWD" mosquitto:mosquitto
    [[ -e $acl_file ]] && ensure_owner "$MOSQ_ACL" mosquitto:mosquitto
fi

say "service"
if [[ -n $ROOT ]]; then
    say "  skipped (--root): systemctl enable --now mosquitto cgw"
else
    if ! systemctl is-enabled --quiet mosquitto 2>/dev/null; then
        sys systemctl enable mosquitto
        changed "enabled mosquitto"
    fi
    if ! systemctl is-active --quiet mosquitto 2>/dev/null; then
        sys systemctl start mosquitto
        changed "started mosquitto"
    elif ((BROKER_CHANGED)); then
        sys systemctl restart mosquitto
        changed "restarted mosquitto"
    fi
    if ! systemctl is-enabled --quiet cgw 2>/dev/null; then
        sys systemctl enable cgw
        changed "enabled cgw"
    fi
    if ((NO_START)); then
        say "  not started (--no-start)"
    elif ! systemctl is-active --quiet cgw 2>/dev/null; then
        sys systemctl start cgw
        changed "started cgw"
    elif ((RESTART)); then
        sys systemctl restart cgw
        changed "restarted cgw"
    fi
    if ((!DRY_RUN && !NO_START)) && ! systemctl is-active --quiet cgw 2>/dev/null; then
        die "cgw did not start: see systemctl status cgw and journalctl -u cgw -n 50"
    fi
fi

if ((CHANGES == 0)); then
    say "Nothing changed: the installation is up to date."
elif ((DRY_RUN)); then
    say "Dry run: $CHANGES change(s) would be made."
else
    say "Done: $CHANGES change(s)."
fi
