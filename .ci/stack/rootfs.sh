#!/usr/bin/env bash
# Builds Debian root filesystems with debootstrap and imports them as local Docker images.
# Usage: rootfs.sh NAME PACKAGES   -> image $IMAGE_PREFIX/rootfs-NAME:$DEBIAN_SUITE
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name="$1"; packages="$2"
key="$(printf '%s' "$DEBIAN_SUITE $packages" | sha256sum | cut -c1-12)"
image="$IMAGE_PREFIX/rootfs-$name:$DEBIAN_SUITE-$key"
if image_exists "$image"; then log "rootfs $name: cached as $image"; echo "$image"; exit 0; fi

tarball="$STACK_CACHE/rootfs/$name-$DEBIAN_SUITE-$key.tar"
if [[ ! -s "$tarball" ]]; then
  # The mirror is whatever this machine's apt uses: the stack never names a host itself.
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '$1 == "URIs:" || $1 == "deb" {print ($1 == "deb" && $2 ~ /^\[/) ? $3 : $2}' | grep -v -- '-security' | head -n1 || true)"
  [[ -n "$mirror" ]] || die "no Debian mirror found in /etc/apt/sources.list*; debootstrap needs one"
  target="$WORK_DIR/rootfs-$name"
  rm -rf "$target"; mkdir -p "$(dirname "$tarball")"
  log "rootfs $name: debootstrap $DEBIAN_SUITE (+ $packages)"
  timeout 1800 debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$target" "$mirror" \
    >"$WORK_DIR/debootstrap-$name.log" 2>&1 || { tail -20 "$WORK_DIR/debootstrap-$name.log" >&2; die "debootstrap of $name failed"; }
  rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/*
  tar -C "$target" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -rf "$target"
fi
docker import "$tarball" "$image" >/dev/null
log "rootfs $name: imported as $image"
echo "$image"
