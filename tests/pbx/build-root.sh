#!/bin/sh
# Build (once) a Debian sid chroot holding a real Asterisk 22 for the
# sentinelle end-to-end tests.
#
# Why a chroot: Debian 12 (the CI host) no longer ships Asterisk; sid does.
# The root is expensive (~1 min, ~330 MB) so it is cached at
# ${SENTINELLE_PBX_ROOT:-/var/cache/sentinelle/pbx-root} and only rebuilt when
# its success marker is missing (a half-built root is wiped first).
#
# The package mirror is never hard-coded: it is read at run time from the
# host's apt sources (first "URIs:" of sources.list.d/*.sources, else the first
# "deb" line of sources.list), so CI uses whatever mirror the host is set up for.
#
# Exit status is non-zero with a clear message on any failure: the tests that
# depend on this must fail loudly, never skip.
set -eu

ROOT=${SENTINELLE_PBX_ROOT:-/var/cache/sentinelle/pbx-root}
MARKER="$ROOT/.sentinelle-pbx-root-ok"
SUITE=${SENTINELLE_PBX_SUITE:-sid}
PACKAGES="asterisk asterisk-modules asterisk-config"

die() {
    echo "build-root.sh: ERROR: $*" >&2
    exit 1
}

log() {
    echo "build-root.sh: $*" >&2
}

case "$ROOT" in
    /*/*) ;;
    *) die "SENTINELLE_PBX_ROOT must be an absolute path at least two levels deep, got '$ROOT'" ;;
esac

if [ -f "$MARKER" ]; then
    log "root already built at $ROOT ($(cat "$MARKER"))"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap/chroot need it)"

# Serialise concurrent builders (parallel test workers): the second one
# waits, then finds the marker.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9 || die "cannot lock $ROOT.lock"

if [ -f "$MARKER" ]; then
    log "root already built at $ROOT ($(cat "$MARKER"))"
    exit 0
fi

# --- host prerequisites ------------------------------------------------------
missing=""
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v sipp >/dev/null 2>&1 || missing="$missing sip-tester"
command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
    log "installing host prerequisites:$missing"
    # shellcheck source=../../scripts/lib/apt.sh
    . "$(dirname "$0")/../../scripts/lib/apt.sh"
    # shellcheck disable=SC2086
    apt_install --no-install-recommends $missing || die "cannot install host prerequisites:$missing"
fi

# --- mirror, from the host's own apt configuration ----------------------------
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '/^[[:space:]]*URIs:/ {print $2; exit}' "$f")
    [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" {
        for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit }
    }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "no mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
# debian-security is not a full archive; use the main archive next to it.
case "$mirror" in
    */debian-security) mirror="${mirror%-security}" ;;
esac
log "mirror: $mirror (from host apt sources), suite: $SUITE"

# --- build --------------------------------------------------------------------
cleanup_mounts() {
    for m in proc sys dev/pts dev; do
        if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m" || true; fi
    done
}

if [ -e "$ROOT" ]; then
    log "wiping half-built root $ROOT"
    cleanup_mounts
    rm -rf --one-file-system "$ROOT"
fi

start=$(date +%s)
log "debootstrap --variant=minbase $SUITE $ROOT (takes about a minute)"
if ! debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$ROOT.debootstrap.log" 2>&1; then
    tail -n 30 "$ROOT.debootstrap.log" >&2 || true
    [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (full log: $ROOT.debootstrap.log)"
fi

# Snapshot-style mirrors serve Release files whose Valid-Until has passed.
echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99sentinelle-no-valid-until"
# Never start services inside the chroot while installing.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

trap cleanup_mounts EXIT
mount -t proc proc "$ROOT/proc"
log "apt-get install $PACKAGES"
if ! chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
        sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES" \
        >"$ROOT.apt.log" 2>&1; then
    tail -n 30 "$ROOT.apt.log" >&2 || true
    die "apt-get install of $PACKAGES in the chroot failed (full log: $ROOT.apt.log)"
fi
cleanup_mounts
trap - EXIT

chroot "$ROOT" sh -c 'apt-get clean; rm -rf /var/lib/apt/lists/*' || true
# From now on nothing in the root may talk to the network beyond loopback:
# drop the host's resolver (copied by debootstrap) and give it a hosts file.
# (pbx.py also bind-mounts per-run versions of both over these.)
rm -f "$ROOT/etc/resolv.conf" "$ROOT/etc/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$ROOT/etc/resolv.conf"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$ROOT/etc/hosts"

version=$(chroot "$ROOT" asterisk -V 2>/dev/null) || die "asterisk -V failed inside the chroot"
end=$(date +%s)
echo "$version built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((end - start))s from $mirror $SUITE" >"$MARKER"
log "done: $(cat "$MARKER")"
