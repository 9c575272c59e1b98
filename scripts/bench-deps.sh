#!/usr/bin/env bash
# Debian packages the benchmarks use beyond the tests': gnuplot-nox (bench:e2e plots the
# cost curve to a PNG), libssl-dev (bench:auth's C load generator, bench/auth/tagload.c,
# signs its requests with libcrypto's SHA-256). Installed when missing and when this runs
# as root with apt-get; otherwise the bench says what is missing (bench:e2e runs and draws
# no plot; bench:auth cannot build its generator).
set -u
need=()
command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
[ -f /usr/include/openssl/sha.h ] || need+=(libssl-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: not root or no apt-get; install ${need[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=600)
{ "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 || echo "bench-deps: could not install ${need[*]}" >&2
exit 0
