# Python runtime base image: the stdlib-only Troupe runtime at Asya's path, so the
# rendered runtime container (`[python3, /opt/asya/asya_runtime.py]`) runs unchanged on
# it, and a user's handler image can start `FROM` it.
#
#   docker build -f deploy/docker/runtime.Dockerfile -t troupe-runtime:dev .
#
# Users' own images need not use it: the renderer also ships the same file in the
# `asya-runtime` ConfigMap, mounted at /opt/asya/asya_runtime.py (platform.md §3).

# Any Debian-based image with python3 >= 3.8 and useradd works as the base.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}
COPY crates/troupe-runtime/python/troupe_runtime.py /opt/asya/asya_runtime.py
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin troupe \
 && mkdir -p /var/run/asya \
 && chown troupe /var/run/asya \
 && python3 -m py_compile /opt/asya/asya_runtime.py
ENV ASYA_SOCKET_DIR=/var/run/asya \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001
# The runtime handles SIGTERM itself (finish the call in progress, at most
# TROUPE_SHUTDOWN_GRACE, default 25 s, then exit), also as PID 1.
ENTRYPOINT ["python3", "/opt/asya/asya_runtime.py"]
