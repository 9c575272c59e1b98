// What the HA client namespace received from the servers, as captured on its link (dumpcap,
// as test/integration/announce.test.ts does): every PCP/NAT-PMP datagram from port
// 5351/5350 with the Ethernet source that carried it, so a test can tell which node sent
// each reply even though every node answers from the same service address. Written as a
// classic libpcap file (dumpcap -P) and read here: Ethernet, IPv4, UDP.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import * as W from "../../src/wire.generated.js";
import { waitForLine, withTimeout } from "./wait.js";

export interface Frame {
  /** Capture time, wall-clock ms (Date.now() scale). */
  wallMs: number;
  mac: string;
  source: string;
  destination: string;
  sourcePort: number;
  destinationPort: number;
  payload: Buffer;
}

const hex2 = (b: number) => b.toString(16).padStart(2, "0");

/** Parses a classic pcap file of Ethernet frames (IPv4/UDP only; anything else skipped). */
export function readEthernetPcap(bytes: Buffer): Frame[] {
  if (bytes.length < 24) return [];
  const le = bytes.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (at: number) => (le ? bytes.readUInt32LE(at) : bytes.readUInt32BE(at));
  if (u32(0) !== 0xa1b2c3d4) throw new Error("not a microsecond libpcap file");
  if (u32(20) !== 1) throw new Error(`link type ${u32(20)}, not Ethernet`);
  const frames: Frame[] = [];
  for (let at = 24; at + 16 <= bytes.length; ) {
    const length = u32(at + 8);
    const f = bytes.subarray(at + 16, at + 16 + length);
    const wallMs = u32(at) * 1000 + u32(at + 4) / 1000;
    at += 16 + length;
    if (f.length < 14 + 20 + 8 || f.readUInt16BE(12) !== 0x0800 || f[14 + 9] !== 17) continue;
    const ihl = (f[14] & 15) * 4;
    const udp = 14 + ihl;
    frames.push({
      wallMs,
      mac: [...f.subarray(6, 12)].map(hex2).join(":"),
      source: [...f.subarray(26, 30)].join("."),
      destination: [...f.subarray(30, 34)].join("."),
      sourcePort: f.readUInt16BE(udp),
      destinationPort: f.readUInt16BE(udp + 2),
      payload: f.subarray(udp + 8),
    });
  }
  return frames;
}

export interface Capture {
  /** Stops dumpcap (the file is complete once it exited) and returns the frames. */
  stop(): Promise<Frame[]>;
}

/** Captures the servers' datagrams (UDP from port 5351 or 5350) on `dev` inside `ns` into `file`. */
export async function captureReplies(ns: string, dev: string, file: string): Promise<Capture> {
  const child: ChildProcess = spawn(
    "ip",
    ["netns", "exec", ns, "dumpcap", "-q", "-P", "-s", "160", "-i", dev, "-f", "udp and (src port 5351 or src port 5350)", "-w", file],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await waitForLine(child.stderr!, /Capturing on/, { timeout: 10_000 });
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM"); // dumpcap flushes and closes the file
        await withTimeout(exited, 10_000, "dumpcap stopping");
      }
      const frames = readEthernetPcap(fs.readFileSync(file));
      fs.rmSync(file, { force: true });
      return frames;
    },
  };
}

/** A PCP MAP/PEER reply's request name: its nonce and the client port it went to (one request across retransmissions). */
export function requestKey(f: Frame): string | undefined {
  const p = f.payload;
  if (f.sourcePort !== W.PCP_SERVER_PORT || p.length < W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE || p[0] !== W.PCP_VERSION) return undefined;
  if (p[1] !== (W.R_BIT | W.OP_MAP) && p[1] !== (W.R_BIT | W.OP_PEER)) return undefined;
  return `${p.subarray(W.MP_NONCE, W.MP_NONCE + W.MP_NONCE_SIZE).toString("hex")}@${f.destinationPort}`;
}

/** Requests answered from more than one MAC (each with the MACs and the times). */
export function doubleAnswers(frames: Frame[]): string[] {
  const by = new Map<string, Frame[]>();
  for (const f of frames) {
    const k = requestKey(f);
    if (!k) continue;
    let list = by.get(k);
    if (!list) by.set(k, (list = []));
    list.push(f);
  }
  const out: string[] = [];
  for (const [k, list] of by) {
    const macs = new Set(list.map((f) => f.mac));
    if (macs.size > 1) out.push(`${k}: ${list.map((f) => `${f.mac}@${f.wallMs.toFixed(1)}`).join(", ")}`);
  }
  return out;
}

/** Datagrams `mac` sent from `service` after `wallMs` (a failed or demoted node must send none). */
export function sentAfter(frames: Frame[], mac: string, service: string, wallMs: number): Frame[] {
  return frames.filter((f) => f.mac === mac && f.source === service && f.wallMs > wallMs);
}
