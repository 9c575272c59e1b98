// The batched UDP addon (native/udp_batch.c, docs/io.md): loading it, and the choice between
// the batched path and Node's dgram path. The choice is made once per process, the same way
// on the main thread (socket layout, /metrics) and on every worker (its sockets).
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as W from "../wire.generated.js";

/** An open socket of the addon (an N-API external). */
export type NativeSocket = { readonly __nativeSocket: unique symbol };

/** native/udp_batch.c's exports. */
export interface NativeAddon {
  open(address: string, port: number, receiveBuffer: number, reusePort: boolean): NativeSocket;
  adopt(fd: number): NativeSocket;
  fd(socket: NativeSocket): number;
  local(socket: NativeSocket): [string, number];
  rcvbuf(socket: NativeSocket): number;
  steer(socket: NativeSocket, groupSize: number): void;
  layout(...offsets: number[]): void;
  recv(socket: NativeSocket, memory: ArrayBuffer | Uint8Array, base: number, count: number): number;
  send(socket: NativeSocket, memory: ArrayBuffer | Uint8Array, base: number, count: number): number;
  /** `from`: the 16-byte address the request was sent to (a wildcard socket sends from it, IP_PKTINFO / IPV6_PKTINFO). */
  sendTo(socket: NativeSocket, bytes: Uint8Array, address: string, port: number, from?: Uint8Array): number;
  /**
   * `count` datagrams packed back to back in `bytes` (`lengths[i]` bytes each), in order, to
   * one destination through sendmmsg (native/udp_socket.c): answers how many were taken. A
   * full send buffer stops it (result[1] = EAGAIN or ENOBUFS; the rest is not taken); other
   * refused datagrams are
   * skipped, counted in result[0] and their `lengths[i]` set to 0.
   */
  sendMany(socket: NativeSocket, bytes: Uint8Array, lengths: Uint32Array, count: number, address: string, port: number, result: Int32Array): number;
  multicastInterface(socket: NativeSocket, address: string): void;
  stats(socket: NativeSocket): number[];
  start(socket: NativeSocket, onReadable: () => void): void;
  close(socket: NativeSocket): void;
  /** native/sd_notify.c: one sd_notify(3) datagram from this process; throws when not sent. */
  sdNotify(socket: string, state: string): void;
  /** madvise(MADV_HUGEPAGE) over [buffer, +length) (native/hugepages.c): [base address, bytes advised, errno]; length 0 advises nothing. */
  hugePages(buffer: ArrayBuffer, length: number): [base: number, advised: number, errno: number];
  /** native/nft_elements.c: chosen elements of an nftables set over netlink (src/dataplane/nftables.ts SetElementReader). */
  nftElements(family: number, table: string, set: string, keys: Uint8Array, keyLength: number): Float64Array;
  readonly maxBatch: number;
}

/** The errno classes of the addon's error counters (native/udp_batch.h EC_*), in order. */
export const ERRNO_CLASSES = ["EAGAIN", "ENOBUFS", "EMSGSIZE", "ECONNREFUSED", "other"] as const;
export type ErrnoClass = (typeof ERRNO_CLASSES)[number];

/**
 * Names of stats()'s entries, in order (native/udp_batch.h ST_*): datagrams read and sent,
 * recvmmsg calls, datagrams longer than a slot (MSG_TRUNC), datagrams the kernel dropped on
 * the full receive queue (SO_MEMINFO, read by stats()), then receive errors and replies not sent by class.
 */
export const NATIVE_STATS = [
  "received",
  "sent",
  "recvCalls",
  "truncated",
  "rxqDrops",
  ...ERRNO_CLASSES.map((c) => `recvErrors.${c}` as const),
  ...ERRNO_CLASSES.map((c) => `unsent.${c}` as const),
] as const;
export type NativeStats = Record<(typeof NATIVE_STATS)[number], number>;

export function nativeStats(addon: NativeAddon, socket: NativeSocket): NativeStats {
  const v = addon.stats(socket);
  return Object.fromEntries(NATIVE_STATS.map((k, i) => [k, v[i]])) as NativeStats;
}

export type IoPath = "batched" | "dgram";

export interface IoChoice {
  path: IoPath;
  /** Why (logged once at start). */
  reason: string;
  addon?: NativeAddon;
}

/** Where the install script builds the addon (the same from src/io and dist/io). */
export const ADDON_PATH = fileURLToPath(new URL("../../native/build/Release/udp_batch.node", import.meta.url));

/**
 * The I/O path. `PCPD_IO`: `dgram` forces Node's dgram path; `batched` or unset: the addon
 * when it loads, else dgram (with the reason). `PCPD_IO_ADDON` names another addon file
 * (tests load a missing or broken one).
 */
export function chooseIo(env: NodeJS.ProcessEnv = process.env): IoChoice {
  const asked = env.PCPD_IO ?? "";
  if (asked === "dgram") return { path: "dgram", reason: "PCPD_IO=dgram" };
  if (asked !== "" && asked !== "batched" && asked !== "auto") return { path: "dgram", reason: `PCPD_IO=${asked} is not one of batched, dgram, auto` };
  if (process.platform !== "linux") return { path: "dgram", reason: `batched I/O is Linux only (${process.platform})` };
  const loaded = loadAddon(env);
  if (typeof loaded === "string") return { path: "dgram", reason: loaded };
  try {
    const addon = loaded;
    addon.layout(
      W.SLOT_SIZE,
      W.SLOT_SRC_ADDR,
      W.SLOT_DST_ADDR,
      W.SLOT_SRC_PORT,
      W.SLOT_WIRE_LEN,
      W.SLOT_DATA,
      W.SLOT_DATA_CAP,
      W.SLOT_VERDICT,
      W.SLOT_RESP_LEN,
      W.VERDICT_REPLY,
    );
    return { path: "batched", reason: asked === "batched" ? "PCPD_IO=batched" : "addon loaded", addon };
  } catch (e) {
    return { path: "dgram", reason: `addon failed to load: ${(e as Error).message.split("\n")[0]}` };
  }
}

/**
 * The addon (`PCPD_IO_ADDON` or ADDON_PATH), or why it is not there; without layout().
 * `need`: a function the caller uses (a file built from older sources may lack it).
 */
export function loadAddon(env: NodeJS.ProcessEnv = process.env, need?: keyof NativeAddon): NativeAddon | string {
  if (process.platform !== "linux") return `the addon is Linux only (${process.platform})`;
  const file = env.PCPD_IO_ADDON || ADDON_PATH;
  if (!existsSync(file)) return `addon not built (${file}): see docs/io.md`;
  try {
    const addon = createRequire(import.meta.url)(file) as NativeAddon;
    if (need && typeof addon[need] !== "function") return `addon ${file} has no ${need}()`;
    return addon;
  } catch (e) {
    return `addon failed to load: ${(e as Error).message.split("\n")[0]}`;
  }
}

let chosen: IoChoice | undefined;

/** chooseIo() for this process's environment, once. */
export function ioChoice(): IoChoice {
  return (chosen ??= chooseIo());
}

/**
 * The reuseport group member (0..groupSize-1) a source address is steered to: the classic
 * BPF program native/udp_batch.c steer() attaches computes the same. `address16`: the
 * 16-byte form (IPv4 v4-mapped); IPv4 hashes its 4 bytes, IPv6 the xor of its 4 words.
 */
export function steerIndex(address16: Uint8Array, groupSize: number): number {
  const word = (at: number) => ((address16[at] << 24) | (address16[at + 1] << 16) | (address16[at + 2] << 8) | address16[at + 3]) >>> 0;
  let isV4 = address16[10] === 0xff && address16[11] === 0xff;
  for (let i = 0; i < 10 && isV4; i++) isV4 = address16[i] === 0;
  let a = isV4 ? word(12) : (word(0) ^ word(4) ^ word(8) ^ word(12)) >>> 0;
  a = (a ^ (a >>> 16)) >>> 0;
  a = Math.imul(a, 0x45d9f3b) >>> 0;
  a = (a ^ (a >>> 16)) >>> 0;
  return a % groupSize;
}
