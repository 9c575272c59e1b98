#!/usr/bin/env bash
# Debian packages the integration tests drive: natpmpc (NAT-PMP client), tshark (PCP and
# NAT-PMP dissectors), iproute2 (network namespaces), nftables (the dataplane backend),
# nats-server (the JetStream cluster HA replicates through), arping (the HA tests' address
# claim hook announces a moved service address with a gratuitous ARP), dumpcap (the HA and
# announce tests capture a link; it comes with tshark), sysctl (namespace settings),
# freeradius (the AAA server PCP authentication relays EAP to) and eapol_test (eapoltest:
# checks the generated FreeRADIUS configuration independently).
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
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: not root or no apt-get; tests needing ${need[*]} will be skipped" >&2
  exit 0
fi
echo "test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get -o DPkg::Lock::Timeout=600 update -qq \
  && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 \
  || echo "test-deps: could not install ${need[*]}; tests needing them will be skipped" >&2
exit 0
