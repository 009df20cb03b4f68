# The troupe image: one stripped release binary that serves every in-cluster role
# (`troupe sidecar`, `troupe gateway`, `troupe operator`, crew actors via TROUPE_CREW).
#
#   docker build -f deploy/docker/troupe.Dockerfile -t troupe:dev .
#   docker run --rm troupe:dev --version
#
# Build context: the repository root (see .dockerignore).

ARG BUILD_IMAGE=rust:1-slim-bookworm
# Any glibc-based image works here (a shell is not needed).
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# debug=1 of the workspace's release profile is for local profiling; the image ships
# a stripped binary instead.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p troupe-cli \
 && install -m 0755 target/release/troupe /troupe

# glibc, libgcc and CA certificates (TLS is rustls, so no OpenSSL), no shell, and the
# `nonroot` user (65532).
FROM ${BASE_IMAGE}
COPY --from=build /troupe /usr/local/bin/troupe
USER 65532:65532
# The sidecar installs its own SIGTERM handler, so running as PID 1 still gets the
# pod's stop signal (protocol: stop taking messages, settle, exit 0).
ENTRYPOINT ["troupe"]
CMD ["--help"]
