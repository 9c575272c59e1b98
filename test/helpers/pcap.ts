// Classic libpcap capture files written in TypeScript, so real datagrams can be handed to
// Wireshark's dissectors (tshark -r). One IPv4/UDP packet per record, link type
// LINKTYPE_RAW (101: the record starts with the IP header, no link layer). IPv4 header
// and UDP checksums are computed (RFC 791, RFC 768), so tshark can be asked to verify
// them (-o ip.check_checksum:TRUE -o udp.check_checksum:TRUE).
import { isIPv4 } from "node:net";

export const LINKTYPE_RAW = 101;

export interface UdpPacket {
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
  payload: Uint8Array;
  /** Capture time in microseconds since the Unix epoch. */
  timeUs: bigint;
}

function ipv4Bytes(address: string): number[] {
  if (!isIPv4(address)) throw new Error(`pcap: only IPv4 is written, got ${address}`);
  return address.split(".").map(Number);
}

/** Internet checksum (RFC 1071) over `bytes`, with `initial` already summed in. */
export function internetChecksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** One IPv4 datagram (20-byte header, no options) carrying `p` as UDP. */
export function ipv4Udp(p: UdpPacket, identification: number): Uint8Array {
  const udpLength = 8 + p.payload.length;
  const total = 20 + udpLength;
  if (total > 0xffff) throw new Error(`pcap: datagram of ${total} bytes does not fit IPv4`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  const src = ipv4Bytes(p.source);
  const dst = ipv4Bytes(p.destination);
  out[0] = 0x45; // version 4, IHL 5
  view.setUint16(2, total);
  view.setUint16(4, identification & 0xffff);
  view.setUint16(6, 0x4000); // DF, fragment offset 0
  out[8] = 64; // TTL
  out[9] = 17; // UDP
  out.set(src, 12);
  out.set(dst, 16);
  view.setUint16(10, internetChecksum(out.subarray(0, 20)));
  view.setUint16(20, p.sourcePort);
  view.setUint16(22, p.destinationPort);
  view.setUint16(24, udpLength);
  out.set(p.payload, 28);
  // Pseudo-header: source, destination, zero, protocol, UDP length.
  const pseudo = ((src[0] << 8) | src[1]) + ((src[2] << 8) | src[3]) + ((dst[0] << 8) | dst[1]) + ((dst[2] << 8) | dst[3]) + 17 + udpLength;
  const sum = internetChecksum(out.subarray(20), pseudo);
  view.setUint16(26, sum === 0 ? 0xffff : sum); // 0 means "no checksum" in UDP over IPv4
  return out;
}

/** A whole pcap file (microsecond timestamps, little-endian header, snaplen 65535). */
export function pcapFile(packets: UdpPacket[]): Uint8Array {
  const records = packets.map((p, i) => ipv4Udp(p, i + 1));
  const out = new Uint8Array(24 + records.reduce((n, r) => n + 16 + r.length, 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, 0xa1b2c3d4, true); // magic: microsecond resolution
  view.setUint16(4, 2, true); // version 2.4
  view.setUint16(6, 4, true);
  view.setInt32(8, 0, true); // thiszone
  view.setUint32(12, 0, true); // sigfigs
  view.setUint32(16, 65535, true); // snaplen
  view.setUint32(20, LINKTYPE_RAW, true);
  let at = 24;
  records.forEach((r, i) => {
    const t = packets[i].timeUs;
    view.setUint32(at, Number(t / 1_000_000n), true);
    view.setUint32(at + 4, Number(t % 1_000_000n), true);
    view.setUint32(at + 8, r.length, true); // captured length
    view.setUint32(at + 12, r.length, true); // original length
    out.set(r, at + 16);
    at += 16 + r.length;
  });
  return out;
}

const wallBaseUs = BigInt(Date.now()) * 1000n;
const monoBaseNs = process.hrtime.bigint();

/** Capture timestamp: wall-clock time in microseconds, advancing monotonically. */
export function nowUs(): bigint {
  return wallBaseUs + (process.hrtime.bigint() - monoBaseNs) / 1000n;
}
