# Shared helpers for the offline stack scripts: logging, timing and the versioned cache layout.
# Sourced, not executed.

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$STACK_DIR/versions.env"

STACK_CACHE="${PYTEST_VCLUSTER_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-vcluster-stack}"
BIN_CACHE="$STACK_CACHE/bin"
WORK_DIR="$STACK_CACHE/work"
IMAGE_PREFIX="pytest-vcluster"
mkdir -p "$BIN_CACHE" "$WORK_DIR"

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Go builds are static so the binaries run in FROM-scratch images and on any node base.
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false -trimpath"
export GOTOOLCHAIN=local

# run_step NAME FUNCTION: runs a step and records its wall time for the summary.
STEP_TIMES=()
run_step() {
  local name="$1"; shift
  local started=$SECONDS
  log "step $name: start"
  "$@"
  local took=$((SECONDS - started))
  STEP_TIMES+=("$name=${took}s")
  log "step $name: done in ${took}s"
}

# module_dir MODULE@VERSION: downloads a Go module (if needed) and prints its source directory.
module_dir() {
  go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
