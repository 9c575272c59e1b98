// The kernel's receive-queue drop count for the dgram path's sockets (docs/io.md). Node's
// dgram gives no descriptor to ask, but the kernel keeps the same counter (sk_drops, which
// the batched path reads with SO_MEMINFO) per socket in /proc/net/udp and
// /proc/net/udp6 ("drops", the last column). A socket is found there by its inode, read
// from /proc/self/fd/N with N the fd under Node's dgram handle; where that fd cannot be
// reached (Node's internals changed), by its local address:port, which the dgram path's
// sockets hold alone (they bind without SO_REUSEADDR/SO_REUSEPORT). Read only when asked
// (the shard's I/O counters, once a second and at stop), one read per file, off the event
// loop, never per packet.
import type dgram from "node:dgram";
import { readFileSync, readlinkSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";
import { toAddress16 } from "../net/address.js";

/** A dgram socket's place in /proc/net/udp{,6}: by inode, or by local address:port. */
export interface ProcUdpKey {
  file: "/proc/net/udp" | "/proc/net/udp6";
  /** The socket's inode (absent: found by address and port). */
  inode?: number;
  /** The local address, 16-byte form (IPv4 v4-mapped), and port. */
  address16: Uint8Array;
  port: number;
}

/**
 * The fd under a dgram socket: Node keeps its handle behind an internal symbol (lib/internal/dgram.js
 * kStateSymbol, "state symbol"); `socket._handle` would say the same but warns (DEP0112).
 */
function dgramFd(socket: dgram.Socket): number | undefined {
  const state = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
  const fd = state && (socket as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[state]?.handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** The inode of the socket on `fd` (/proc/self/fd/N → "socket:[inode]"), if it is one. */
function socketInode(fd: number): number | undefined {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A bound dgram socket's key. */
export function procUdpKey(socket: dgram.Socket): ProcUdpKey {
  const { address, port, family } = socket.address();
  const fd = dgramFd(socket);
  const inode = fd === undefined ? undefined : socketInode(fd);
  return { file: family === "IPv6" ? "/proc/net/udp6" : "/proc/net/udp", inode, address16: toAddress16(address), port };
}

/**
 * "local_address" of a /proc/net/udp{,6} line in 16-byte form: the address is printed as
 * 32-bit words in host byte order (%08X of each __be32), the port as %04X.
 */
function localAddress(field: string): { address16: Uint8Array; port: number } | undefined {
  const [hex, portHex] = field.split(":");
  if (!portHex || (hex.length !== 8 && hex.length !== 32)) return undefined;
  const raw = new Uint8Array(hex.length / 2);
  const little = endianness() === "LE";
  for (let w = 0; w < raw.length / 4; w++) {
    const word = Number.parseInt(hex.slice(8 * w, 8 * w + 8), 16);
    for (let b = 0; b < 4; b++) raw[4 * w + b] = (word >>> (little ? 8 * b : 24 - 8 * b)) & 0xff;
  }
  let address16 = raw;
  if (raw.length === 4) {
    address16 = new Uint8Array(16);
    address16[10] = address16[11] = 0xff;
    address16[12] = raw[0];
    address16[13] = raw[1];
    address16[14] = raw[2];
    address16[15] = raw[3];
  }
  return { address16, port: Number.parseInt(portHex, 16) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A line of `text` at or around `at`, split into its fields. */
function lineAt(text: string, at: number): string[] {
  const start = text.lastIndexOf("\n", at) + 1;
  const end = text.indexOf("\n", at);
  return text
    .slice(start, end < 0 ? text.length : end)
    .trim()
    .split(/\s+/);
}

/**
 * A key's drop count in one file's text (undefined: its line is not there — closed).
 * Lines: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops". A
 * key with an inode matches by it and its port (an fd reused for another socket does not
 * match); one without by local address and port. Only the lines holding the inode (or
 * the port) as text are split: a host's other sockets cost a string search.
 */
function dropsIn(text: string, k: ProcUdpKey): number | undefined {
  const needle = k.inode !== undefined ? ` ${k.inode} ` : `:${k.port.toString(16).toUpperCase().padStart(4, "0")} `;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
    const f = lineAt(text, at);
    const local = f.length >= 13 ? localAddress(f[1]) : undefined;
    if (!local || local.port !== k.port) continue;
    if (k.inode !== undefined ? Number(f[9]) === k.inode : sameBytes(k.address16, local.address16)) return Number(f[12]);
  }
  return undefined;
}

/** Each key's drop count in the files' texts (a file absent: no /proc). */
function counts(keys: readonly ProcUdpKey[], texts: Map<string, string | undefined>): (number | undefined)[] {
  return keys.map((k) => {
    const text = texts.get(k.file);
    return text === undefined ? undefined : dropsIn(text, k);
  });
}

const filesOf = (keys: readonly ProcUdpKey[]) => [...new Set(keys.map((k) => k.file))];

function readNow(file: string): string | undefined {
  try {
    return readFileSync(file, "latin1");
  } catch {
    return undefined;
  }
}

/** Each key's drop count now, read at once (undefined: not found, or no /proc): the count at bind. */
export function udpDrops(keys: readonly ProcUdpKey[]): (number | undefined)[] {
  return counts(keys, new Map(filesOf(keys).map((f) => [f, readNow(f)])));
}

/**
 * The drop counts for scrapes: the kernel builds those files by walking every UDP socket of
 * the network namespace (about 5 ms with 2,000 sockets here), so they are read off the
 * worker's event loop (libuv's thread pool). poll() answers what the last finished read
 * found and starts the next one (one at a time): a scrape sees counts at most one publish
 * old, and the packet path never waits on /proc.
 */
export class UdpDropsReader {
  private last: (number | undefined)[];
  private reading = false;

  constructor(private readonly keys: readonly ProcUdpKey[]) {
    this.last = keys.map(() => undefined);
  }

  poll(): (number | undefined)[] {
    if (!this.reading) {
      this.reading = true;
      const files = filesOf(this.keys);
      Promise.all(files.map((f) => readFile(f, "latin1").catch(() => undefined)))
        .then((texts) => {
          this.last = counts(this.keys, new Map(files.map((f, i) => [f, texts[i]])));
        })
        .catch(() => undefined)
        .finally(() => {
          this.reading = false;
        });
    }
    return this.last;
  }
}
