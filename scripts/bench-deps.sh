#!/usr/bin/env bash
# Debian packages the benchmarks use beyond the tests': gnuplot-nox (bench:e2e plots the
# cost curve to a PNG). Installed when missing and when this runs as root with apt-get;
# otherwise the bench runs and says it drew no plot.
set -u
command -v gnuplot >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: not root or no apt-get; install gnuplot-nox for the bench:e2e plot" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=600)
{ "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends gnuplot-nox; } >/dev/null 2>&1 || echo "bench-deps: could not install gnuplot-nox" >&2
exit 0
