// The gratuitous ANNOUNCE schedule and target selection (items 117, 118); the messages
// on a real link are checked in test/integration/announce.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import type { NetworkInterfaceInfo } from "node:os";
import * as W from "../../src/wire.generated.js";
import { PacketEngine } from "../../src/engine/packet-engine.js";
import { Announcer, announceGaps, announceTargets } from "../../src/server/announce.js";

afterEach(() => vi.useRealTimers());

const nic = (address: string): NetworkInterfaceInfo =>
  ({ address, netmask: "", family: address.includes(":") ? "IPv6" : "IPv4", mac: "", internal: false, cidr: null }) as NetworkInterfaceInfo;

describe("gratuitous ANNOUNCE", () => {
  it("item 117: R=1, opcode 0, result 0, lifetime 0, the given Epoch, reserved bytes zero", () => {
    const bytes = new PacketEngine("release").announce(0xa1b2c3d4);
    expect(Array.from(bytes)).toEqual([W.PCP_VERSION, 0x80, 0, 0, 0, 0, 0, 0, 0xa1, 0xb2, 0xc3, 0xd4, ...new Array(12).fill(0)]);
  });

  it("item 118: at most 10 copies; gap 1→2 is the first gap, each later gap doubles", () => {
    expect(announceGaps(10, 250)).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]);
    expect(announceGaps(1, 250)).toEqual([]);
  });

  it("item 118: the sender never shortens a gap: each copy waits the full gap after the previous send", () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    let epoch = 0;
    const a = new Announcer({
      targets: [{ source: "192.0.2.1", group: "224.0.0.1", interface: "eth1" }],
      count: 5,
      firstGapMs: 250,
      messages: () => [Uint8Array.of(epoch++)],
      send: () => sent.push(Date.now()),
    });
    const t0 = Date.now();
    a.start();
    vi.advanceTimersByTime(10_000);
    expect(sent.map((t) => t - t0)).toEqual([0, 251, 752, 1753, 3754]);
    a.stop();
  });

  it("multicasts from each listen address on the named interfaces to its family's all-nodes group", () => {
    const system = { eth1: [nic("192.0.2.1"), nic("2001:db8::1")], eth2: [nic("198.51.100.1")] };
    expect(announceTargets(["eth1"], ["192.0.2.1", "2001:db8::1", "198.51.100.1"], system)).toEqual([
      { source: "192.0.2.1", group: "224.0.0.1", interface: "eth1" },
      { source: "2001:db8::1", group: "ff02::1%eth1", interface: "eth1" },
    ]);
    expect(announceTargets([], ["192.0.2.1"], system)).toEqual([]);
  });

  it("an interface that is missing or carries no listen address is a configuration error naming it", () => {
    const system = { eth1: [nic("192.0.2.1")] };
    expect(() => announceTargets(["eth9"], ["192.0.2.1"], system)).toThrow(/announce.multicast: no interface named eth9/);
    expect(() => announceTargets(["eth1"], ["198.51.100.1"], system)).toThrow(/interface eth1 carries none of the listen addresses/);
  });
});
