# Builds the kind node image by hand, the way `kind build node-image` does, but from local
# images only. Sourced by `up` after lib.sh and images.sh.

# node_base_image ROOTFS_IMAGE: kind's base image recipe on a Debian root filesystem.
node_base_image() {
  local rootfs="$1"
  local key; key="$(cat "$STACK_DIR/node.sh" "$STACK_DIR/versions.env" | sha256sum | cut -c1-12)"
  local tag="$IMAGE_PREFIX/kind-base:$KIND_VERSION-$key"
  image_exists "$tag" && { log "image $tag: cached"; echo "$tag"; return 0; }
  local ctx; ctx="$(fresh_context kind-base)"
  local kind_dir; kind_dir="$(module_dir "sigs.k8s.io/kind@$KIND_VERSION")"
  cp -r "$kind_dir/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which this machine may lack; runc
  # then dies before the container starts ("can't get final child's PID from pipe"). containerd's
  # restrict_oom_score_adj clamps pod scores to its own instead (set in the Dockerfile below).
  # containerd's default OCI spec minus rlimits, as kind does; kind's createContainer hook that
  # gives each container its own product_uuid is left out: it matters only for multi-node hosts.
  ctr oci spec | python3 -c 'import json,sys; s=json.load(sys.stdin); s["process"].pop("rlimits", None); json.dump(s, sys.stdout, indent=2)' \
    >"$ctx/cri-base.json"
  cp "$STACK_DIR/node/10-pytest-vcluster.conflist" "$STACK_DIR/node/pytest-vcluster-egress-guard.service" "$ctx/"
  cp "$STACK_DIR/node/egress-guard.sh" "$ctx/pytest-vcluster-egress-guard"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $rootfs
COPY files/ /
COPY cri-base.json /etc/containerd/cri-base.json
COPY 10-pytest-vcluster.conflist /etc/cni/net.d/10-pytest-vcluster.conflist
COPY pytest-vcluster-egress-guard /usr/local/bin/pytest-vcluster-egress-guard
COPY pytest-vcluster-egress-guard.service /etc/systemd/system/pytest-vcluster-egress-guard.service
RUN chmod 755 /kind /kind/bin \\
 && chmod +x /usr/local/bin/entrypoint /usr/local/bin/clean-install /kind/bin/*.sh \\
 && sed -i 's#/usr/local/bin/containerd#/usr/bin/containerd#' /etc/systemd/system/containerd.service \\
 && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \\
 && find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
 && ln -sf /usr/lib/systemd/systemd /sbin/init \\
 && chmod +x /usr/local/bin/pytest-vcluster-egress-guard \\
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service pytest-vcluster-egress-guard.service \\
 && systemctl mask systemd-binfmt.service \\
 && mkdir -p /etc/kubernetes/manifests /opt/cni/bin \\
 && for p in host-local loopback ptp portmap bridge; do ln -sf /usr/lib/cni/\$p /opt/cni/bin/\$p; done
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
DOCKERFILE
  build_image "$tag" "$ctx"
  echo "$tag"
}

# node_image_key K8S_BIN_DIR BASE IMAGE...: the node image's cache key, from everything it is
# made of. Contents and names only, never paths: clones in different folders share the cache and
# Docker's images, and a key that differed between them would make each rebuild the node image
# and prune the other's. The C locale fixes the order of the node/ files whatever the caller's.
node_image_key() {
  local bin="$1"; shift
  {
    docker image inspect -f '{{.Id}}' "$@"
    # The names too: the node's containerd gets the images under them.
    printf '%s\n' "$@"
    (export LC_ALL=C; cd "$STACK_DIR/node" && sha256sum -- *)
    (cd "$bin" && sha256sum -- kubeadm kubelet kubectl)
  } | sha256sum | cut -c1-12
}

# node_image BASE TAG K8S_BIN_DIR IMAGE...: base + kubeadm/kubelet/kubectl + preloaded images.
node_image() {
  local base="$1" tag="$2" bin="$3"; shift 3
  image_exists "$tag" && { log "image $tag: cached"; return 0; }
  local builder="pytest-vcluster-node-build-$$" stale
  # A build that died (die exits, so RETURN traps do not run) leaves its container behind.
  for stale in $(docker ps -aq --filter name=pytest-vcluster-node-build-); do docker rm -f "$stale" >/dev/null; done
  docker run -d --name "$builder" --privileged --entrypoint sleep "$base" infinity >/dev/null
  # shellcheck disable=SC2064
  trap "docker rm -f $builder >/dev/null 2>&1 || true" RETURN
  local cmd
  for cmd in kubeadm kubelet kubectl; do docker cp "$bin/$cmd" "$builder:/usr/bin/$cmd"; done
  docker exec "$builder" mkdir -p /kind/manifests
  docker exec "$builder" sh -c "echo $HOST_K8S_VERSION > /kind/version"
  docker cp "$STACK_DIR/node/default-cni.yaml" "$builder:/kind/manifests/default-cni.yaml"
  sed -e "s#@LOCAL_PATH_PROVISIONER_IMAGE@#$LOCAL_PATH_IMAGE#g" -e "s#@HELPER_IMAGE@#$WORKLOAD_IMAGE#g" \
    "$STACK_DIR/node/default-storage.yaml" | docker exec -i "$builder" sh -c 'cat > /kind/manifests/default-storage.yaml'
  docker exec "$builder" sed -i "s#sandbox_image = .*#sandbox_image = \"$PAUSE_IMAGE\"#" /etc/containerd/config.toml
  docker exec -d "$builder" sh -c 'containerd >/var/log/containerd-build.log 2>&1'
  local deadline=$((SECONDS + 60))
  until docker exec "$builder" ctr version >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "containerd inside the node build container did not start in 60s"
    sleep 1
  done
  # One archive for all images shares their common layers; pinned images are never garbage
  # collected by the kubelet (containerd 1.6's ctr import has no --label, hence the second pass).
  docker save "$@" | docker exec -i "$builder" ctr -n k8s.io images import --no-unpack - >/dev/null \
    || die "importing images into the node image failed"
  local image ref
  for image in "$@"; do
    ref="$image"
    [[ "${image%%/*}" == *.* ]] || ref="docker.io/$image"
    docker exec "$builder" ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null \
      || die "image $ref is missing from the node's containerd after import"
    log "node image: preloaded $ref"
  done
  docker exec "$builder" sh -c 'pkill containerd; sleep 2; rm -f /var/log/containerd-build.log'
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    "$builder" "$tag" >/dev/null
  log "image $tag committed"
}
