# Image assembly helpers for the offline stack. Sourced by `up` after lib.sh.

# build_image TAG CONTEXT_DIR: builds with the classic builder, which needs nothing from a registry.
build_image() {
  local tag="$1" context="$2"
  DOCKER_BUILDKIT=0 timeout 1200 docker build -q -t "$tag" "$context" >/dev/null \
    || die "docker build of $tag failed (context $context)"
  log "image $tag built"
}

# fresh_context NAME: an empty build context under the work dir.
fresh_context() {
  local dir="$WORK_DIR/context-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  echo "$dir"
}

# binary_image TAG BASE ENTRYPOINT_JSON FILE...: an image holding static binaries in /usr/local/bin.
binary_image() {
  local tag="$1" base="$2" entrypoint="$3"; shift 3
  image_exists "$tag" && { log "image $tag: cached"; return 0; }
  local ctx; ctx="$(fresh_context "${tag//[\/:]/_}")"
  mkdir -p "$ctx/bin"
  cp "$@" "$ctx/bin/"
  {
    echo "FROM $base"
    echo "COPY bin/ /usr/local/bin/"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [[ -n "$entrypoint" ]] && echo "ENTRYPOINT $entrypoint"
  } >"$ctx/Dockerfile"
  build_image "$tag" "$ctx"
}

# scratch_base: an empty image to start FROM, made once (FROM scratch needs no registry, but a
# named base keeps every Dockerfile the same shape).
scratch_base() {
  local tag="$IMAGE_PREFIX/scratch:1"
  image_exists "$tag" && { echo "$tag"; return 0; }
  local ctx; ctx="$(fresh_context scratch)"
  mkdir -p "$ctx/tmp"; chmod 1777 "$ctx/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  printf 'FROM scratch\nCOPY tmp /tmp\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n' >"$ctx/Dockerfile"
  build_image "$tag" "$ctx"
  echo "$tag"
}

# busybox_image TAG: static busybox with its applets, a shell and an HTTP page for tests.
busybox_image() {
  local tag="$1"
  image_exists "$tag" && { log "image $tag: cached"; return 0; }
  local ctx; ctx="$(fresh_context busybox)"
  mkdir -p "$ctx/bin" "$ctx/www" "$ctx/tmp"
  cp /bin/busybox "$ctx/bin/busybox"
  echo "pytest-vcluster workload" >"$ctx/www/index.html"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin/busybox /bin/busybox
COPY www /www
COPY tmp /tmp
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
EXPOSE 8080
CMD ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
DOCKERFILE
  build_image "$tag" "$ctx"
}
