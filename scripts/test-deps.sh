#!/usr/bin/env bash
# Debian packages the integration tests drive: natpmpc (NAT-PMP client), tshark (PCP and
# NAT-PMP dissectors), iproute2 (network namespaces), nftables (the dataplane backend),
# nats-server (the JetStream cluster HA replicates through), arping (the HA tests' address
# claim hook announces a moved service address with a gratuitous ARP), dumpcap (the HA and
# announce tests capture a link; it comes with tshark), sysctl (namespace settings),
# freeradius (the AAA server PCP authentication relays EAP to), eapol_test (eapoltest:
# checks the generated FreeRADIUS configuration independently), chromium (the dashboard
# tests drive it headless over the DevTools protocol), rsyslog (the syslog collector the
# logging tests start), pmacct (nfacctd, their IPFIX collector), systemd (systemd-notify sends
# pcp-server's readiness without the addon, systemd-analyze verifies the unit), socat (socket
# plumbing), systemd-container (systemd-nspawn boots a real systemd as PID 1 to run the
# unit in test/packaging/systemd-unit.test.ts); gcc, make and python3 (build-essential
# python3: node-gyp builds the batched UDP addon, native/udp_batch.c — then built here if
# `npm install` could not, docs/io.md; python3 also plays systemd's notification socket).
# Installed when missing and when this runs as root with apt-get; otherwise the tests that
# need them skip, saying why.
set -u
need=()
command -v natpmpc >/dev/null 2>&1 || need+=(natpmpc)
{ command -v tshark && command -v dumpcap; } >/dev/null 2>&1 || need+=(tshark)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v arping >/dev/null 2>&1 || need+=(iputils-arping)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v freeradius >/dev/null 2>&1 || [ -x /usr/sbin/freeradius ] || need+=(freeradius)
command -v eapol_test >/dev/null 2>&1 || [ -x /usr/sbin/eapol_test ] || need+=(eapoltest)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
command -v nfacctd >/dev/null 2>&1 || [ -x /usr/sbin/nfacctd ] || need+=(pmacct)
{ command -v systemd-notify && command -v systemd-analyze; } >/dev/null 2>&1 || need+=(systemd)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
{ command -v gcc && command -v make; } >/dev/null 2>&1 || need+=(build-essential)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: not root or no apt-get; tests needing ${need[*]} will be skipped" >&2
  else
    echo "test-deps: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Several installers may run at once: wait for the dpkg lock rather than fail.
    apt=(apt-get -o DPkg::Lock::Timeout=600)
    { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 \
      || echo "test-deps: could not install ${need[*]}; tests needing them will be skipped" >&2
  fi
fi
# The batched UDP addon, if the install could not build it (no compiler then).
node "$(dirname "$0")/build-native.mjs" --if-missing
exit 0
