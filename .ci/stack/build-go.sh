#!/usr/bin/env bash
# Builds one Go module's commands at a pinned version into $BIN_CACHE/NAME-VERSION/.
# Usage: build-go.sh NAME MODULE VERSION PACKAGE... [-- LDFLAGS]
#
# Builds go through a throwaway wrapper module that requires MODULE@VERSION. Modules whose
# go.mod replaces siblings with relative paths (etcd does) get those pinned to VERSION, which
# is how the sibling modules are published; SIBLING_VERSION overrides that (Kubernetes publishes
# its staging modules as v0.X.Y). GO_TAGS adds build tags; OUTPUT_NAME names the binary of a
# single package whose import path does not end in its command name (go.etcd.io/etcd/server/v3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name="$1" module="$2" version="$3"; shift 3
packages=(); ldflags="-s -w"
while (( $# )); do
  if [[ "$1" == "--" ]]; then shift; ldflags+=" $*"; break; fi
  packages+=("$1"); shift
done

out="$BIN_CACHE/$name-$version"
stamp="$out/.built"
if [[ -f "$stamp" ]]; then log "$name $version: cached"; exit 0; fi

wrapper="$WORK_DIR/wrapper-$name-$version"
rm -rf "$wrapper"; mkdir -p "$wrapper" "$out"
source_dir="$(module_dir "$module@$version")"
modfile="$(go env GOMODCACHE)/cache/download/$module/@v/$version.mod"
{
  echo "module local/wrapper-$name"
  echo "go $(go env GOVERSION | sed 's/^go//')"
  echo "require $module $version"
  awk '/^replace \(/ {block=1; next} block && /^\)/ {block=0} (block || /^replace /) && /=> \.\.?\// && !/FORBIDDEN_DEPENDENCY/ {print}' "$modfile" \
    | sed -E 's/^replace //; s/^[[:space:]]+//' \
    | awk -v v="${SIBLING_VERSION:-$version}" '{print "replace " $1 " => " $1 " " v}'
} >"$wrapper/go.mod"
# The module's own go.sum vouches for its dependencies, some of which (pre-releases of vcluster's
# API modules) the public checksum database does not list.
[[ -f "$source_dir/go.sum" ]] && cp "$source_dir/go.sum" "$wrapper/go.sum" && chmod u+w "$wrapper/go.sum"

log "$name $version: building ${packages[*]}"
(cd "$wrapper" && go build -tags "${GO_TAGS:-}" -ldflags "$ldflags" -o "$out/${OUTPUT_NAME:-}" "${packages[@]}")
touch "$stamp"
