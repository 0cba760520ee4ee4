#!/usr/bin/env bash
# Installs Docker's engine from Debian, works around a missing CAP_SYS_RESOURCE (or any other
# capability Docker asks for on privileged containers) and starts dockerd when it is not running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  (( ${#missing[@]} == 0 )) && return 0
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Capabilities Docker 20.10 grants a privileged container, by number (Linux ABI).
DOCKER_CAPS=(CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL
  CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST
  CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT
  CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE
  CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL
  CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND
  CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE)

missing_caps() {
  local bounding
  bounding=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  local i
  for i in "${!DOCKER_CAPS[@]}"; do
    (( (bounding >> i) & 1 )) || printf '%s\n' "${DOCKER_CAPS[$i]}"
  done
}

configure_runtime() {
  local drop
  drop="$(missing_caps | paste -sd, -)"
  local daemon_json=/etc/docker/daemon.json
  if [[ -z "$drop" ]]; then
    log "capability bounding set is complete: no runtime shim needed"
    return 0
  fi
  log "capabilities missing from the bounding set: $drop (installing runc-capfix as default runtime)"
  local shim="$BIN_CACHE/runc-capfix"
  if [[ ! -x "$shim" || "$STACK_DIR/runc-capfix/main.go" -nt "$shim" ]]; then
    (cd "$STACK_DIR/runc-capfix" && go build -o "$shim" .)
  fi
  printf '%s\n' "$drop" >"$shim.drop"
  local runc_path
  runc_path="$(command -v runc)" || die "runc is not on PATH; the docker.io package should have installed it"
  printf '%s\n' "$runc_path" >"$shim.runtime"
  mkdir -p /etc/docker
  local before=""
  [[ -f "$daemon_json" ]] && before="$(cat "$daemon_json")"
  python3 - "$daemon_json" "$shim" <<'PY'
import json, os, sys
path, shim = sys.argv[1], sys.argv[2]
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
config.setdefault("runtimes", {})["capfix"] = {"path": shim}
config["default-runtime"] = "capfix"
with open(path, "w") as f:
    json.dump(config, f, indent=2)
PY
  if [[ "$before" != "$(cat "$daemon_json")" ]] && docker info >/dev/null 2>&1; then
    log "daemon.json changed: restarting dockerd"
    pkill -x dockerd || true
    for _ in $(seq 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
  fi
}

start_dockerd() {
  if timeout 20 docker info >/dev/null 2>&1; then log "dockerd is running"; return 0; fi
  log "starting dockerd (log: $STACK_CACHE/dockerd.log)"
  nohup setsid dockerd >"$STACK_CACHE/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 90))
  until timeout 10 docker info >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "dockerd did not answer 'docker info' within 90s; see $STACK_CACHE/dockerd.log"
    sleep 1
  done
  log "dockerd is up"
}

tune_kernel() {
  # Many vclusters on one host each watch files; the defaults run out after a handful.
  sysctl -q -w fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 || true
}

apt_install docker.io containerd runc debootstrap iptables ca-certificates busybox-static gcc libc6-dev
configure_runtime
start_dockerd
tune_kernel
