#!/usr/bin/env bash
# Builds and smoke-tests the two images without a container registry or daemon
# (docs/decisions.md, "Kubernetes: images and shutdown"): a Debian 12 base made with
# debootstrap, buildah with chroot isolation (its default OCI runtime, crun, fails on
# this machine's hybrid cgroups).
#
#   scripts/images.sh [TROUPE_BINARY]   # default: target/release/troupe
#
# The binary is stripped on the way in (a copy), so CI can pass its debug build.
# Needs root and the Debian packages buildah and debootstrap. runtime.Dockerfile is built
# as written, on the debootstrap base; troupe.Dockerfile's builder stage needs a Rust
# image that cannot be pulled here, so the troupe image is assembled from a built binary
# (same layout: /usr/local/bin/troupe, user 65532, ENTRYPOINT troupe).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/troupe}"
CACHE="${TROUPE_IMAGE_CACHE:-/var/cache/troupe/images}"
ROOTFS="$CACHE/bookworm-python"
ISO=(--isolation chroot)

[ -x "$BIN" ] || { echo "no troupe binary at $BIN: build it with cargo build --release -p troupe-cli" >&2; exit 2; }
command -v buildah >/dev/null && command -v debootstrap >/dev/null ||
  { echo "install buildah and debootstrap (apt-get install buildah debootstrap)" >&2; exit 2; }

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  rm -rf "$ROOTFS.tmp"
  debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS.tmp" http://deb.debian.org/debian >/dev/null
  chroot "$ROOTFS.tmp" apt-get clean
  mv "$ROOTFS.tmp" "$ROOTFS"
fi

from_rootfs() { # NAME: an image made of the cached root filesystem
  local c m
  c=$(buildah from scratch)
  m=$(buildah mount "$c")
  cp -a "$ROOTFS/." "$m/"
  buildah umount "$c" >/dev/null
  buildah commit -q "$c" "$1" >/dev/null
  buildah rm "$c" >/dev/null
}

from_rootfs localhost/troupe-base:bookworm

# The runtime image, from its Dockerfile.
buildah bud -q "${ISO[@]}" --build-arg PYTHON_IMAGE=localhost/troupe-base:bookworm \
  -f "$ROOT/deploy/docker/runtime.Dockerfile" -t localhost/troupe-runtime:dev "$ROOT" >/dev/null
c=$(buildah from localhost/troupe-runtime:dev)
out=$(buildah run "${ISO[@]}" -e ASYA_HANDLER=json.dumps -e ASYA_SOCKET_DIR=/tmp/s "$c" -- \
  sh -c 'timeout -s TERM 2 python3 /opt/asya/asya_runtime.py 2>&1; true')
grep -q "runtime ready" <<<"$out" || { echo "the runtime did not start in its image:"; echo "$out"; exit 1; } >&2
buildah rm "$c" >/dev/null
echo "runtime image: ok (runtime ready as $(buildah inspect --format '{{.OCIv1.Config.User}}' localhost/troupe-runtime:dev))"

# The troupe image, assembled as troupe.Dockerfile's last stage would be, from a stripped
# copy of the binary (the Dockerfile strips through the release profile).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
strip --strip-all -o "$work/troupe" "$BIN"
c=$(buildah from localhost/troupe-base:bookworm)
buildah copy --chmod 0755 "$c" "$work/troupe" /usr/local/bin/troupe >/dev/null
buildah config --user 65532:65532 --entrypoint '["troupe"]' --cmd '["--help"]' "$c"
version=$(buildah run "${ISO[@]}" "$c" -- troupe --version)
buildah commit -q "$c" localhost/troupe:dev >/dev/null
buildah rm "$c" >/dev/null
echo "troupe image: ok ($version)"

echo "binary: $(stat -c %s "$work/troupe") bytes stripped"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'troupe(-runtime|-base)?:'
# Rebuilds replace the tags; drop the images they left untagged.
buildah rmi --prune >/dev/null 2>&1 || true
