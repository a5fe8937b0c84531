# syntax=docker/dockerfile:1
# percore container image: build with the Rust toolchain, run on a small Debian.
#
#   docker build -t percore .
#   docker run --rm -p 8000:8000 --ulimit nofile=1048576:1048576 --ulimit memlock=67108864 percore
#
# io_uring in containers: Docker 25+ and containerd 2.0+ (Kubernetes RuntimeDefault) block
# io_uring_setup/io_uring_enter/io_uring_register in their default seccomp profiles.
# percore then logs a warning and runs on epoll (same behaviour, somewhat lower
# throughput). To get io_uring, run with a seccomp profile that is your runtime's default
# plus those three calls (`--security-opt seccomp=/path/to/profile.json`), or
# `--security-opt seccomp=unconfined`. The trade-off: operations submitted through a ring
# are not seen by seccomp, and io_uring has been a frequent source of kernel privilege
# escalations, so it widens the kernel attack surface of that container. See
# docs/deploying.md, "Containers and io_uring".
#
# deploy/check.sh lints this file with hadolint and checks its instructions with
# dockerfile-parse (no Docker engine needed).

# ---- build stage ------------------------------------------------------------------------
# Debian 12 with the latest stable Rust; the same glibc as the runtime stage below, so the
# binary needs nothing the runtime image lacks.
FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole context (.dockerignore keeps target/, .git/, docs/ and deploy/ except
# deploy/docker/ out). Cargo.toml names benches/codec.rs, so the manifest needs it even
# for a binary-only build.
COPY . .
# --locked: exactly the versions in Cargo.lock, fail instead of resolving new ones.
# Cache mounts (BuildKit) keep the crate registry and target/ between builds, so a source
# change recompiles percore, not its dependencies; the binary is copied out of the cached
# target/ because cache mounts are not part of the image.
# Your own binary (a crate whose main is `percore::cli::run` or `run_service`): put this
# file in that crate and build with `--build-arg BIN=<its binary>`. The image installs it as
# /usr/local/bin/percore, so the health check, the systemd unit and the Kubernetes and ECS
# files work unchanged: it has the same flags, routes (/health, /ready, /metrics) and signals.
ARG BIN=percore
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin "${BIN}" \
 && install -D -m 0755 "target/release/${BIN}" /out/percore

# ---- runtime stage ----------------------------------------------------------------------
# debian:bookworm-slim (~75 MB) over distroless/cc (~25 MB): it has bash for the health
# check below and for `docker exec` debugging; glibc and libgcc_s (unwinding for
# panic=unwind) are already in it, so no apt-get.
FROM debian:bookworm-slim
# A fixed non-root UID/GID (10001), so Kubernetes runAsNonRoot can verify it and files
# mounted into the container can be owned by it. No home directory, no login shell.
RUN groupadd --system --gid 10001 percore \
 && useradd --system --uid 10001 --gid percore --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin percore
COPY --from=builder /out/percore /usr/local/bin/percore
# GET /health over bash's /dev/tcp (the image has no curl); see the script.
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/percore-healthcheck
USER 10001:10001
# percore's default port. The CMD below listens on every address of the container.
EXPOSE 8000
# SIGTERM starts percore's graceful drain (/ready 503, --drain-delay, --graceful-timeout);
# `docker stop -t` must exceed drain-delay + graceful-timeout (30 s by default, so use
# `docker stop -t 35` or more; Docker's default is 10 s).
STOPSIGNAL SIGTERM
# Liveness every 10 s; 3 s per try; 3 failures in a row mark the container unhealthy;
# failures in the first 5 s after start do not count. The port comes from PERCORE_PORT
# (or PERCORE_HEALTHCHECK_PORT), 8000 by default.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/percore-healthcheck"]
# --host 0.0.0.0: inside a container 127.0.0.1 is unreachable from outside. A flag wins
# over PERCORE_HOST, so to change the address replace the command; every other setting
# can come from PERCORE_* variables (e.g. -e PERCORE_DRAIN_DELAY=10s) or a mounted
# --config file. percore is PID 1 here: it handles SIGTERM/SIGINT/SIGQUIT/SIGHUP itself.
# (The SIGUSR2 in-place upgrade is for systemd hosts: in a container the old process is
# PID 1 and its exit ends the container; roll containers instead.)
CMD ["percore", "--host", "0.0.0.0"]
