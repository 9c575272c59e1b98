// The gratuitous ANNOUNCE schedule and target selection (items 117, 118); the messages
// on a real link are checked in test/integration/announce.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import type { NetworkInterfaceInfo } from "node:os";
import * as W from "../../src/wire.generated.js";
import { codecEngine } from "../helpers/engine-config.js";
import { Announcer, announceGaps, announceTargets } from "../../src/shard/announce.js";
import { sendRepeatedly } from "../../src/shard/repeat.js";

afterEach(() => vi.useRealTimers());

const nic = (address: string): NetworkInterfaceInfo =>
  ({ address, netmask: "", family: address.includes(":") ? "IPv6" : "IPv4", mac: "", internal: false, cidr: null }) as NetworkInterfaceInfo;

describe("gratuitous ANNOUNCE", () => {
  it("item 117: R=1, opcode 0, result 0, lifetime 0, the given Epoch, reserved bytes zero", () => {
    const bytes = codecEngine({}, "release").announce(0xa1b2c3d4);
    expect(Array.from(bytes)).toEqual([W.PCP_VERSION, 0x80, 0, 0, 0, 0, 0, 0, 0xa1, 0xb2, 0xc3, 0xd4, ...new Array(12).fill(0)]);
  });

  it("item 118: at most 10 copies; gap 1→2 is the first gap, each later gap doubles", () => {
    expect(announceGaps(10, 250)).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]);
    expect(announceGaps(1, 250)).toEqual([]);
  });

  it("item 118: the sender never shortens a gap: each copy waits the full gap after the previous one left", () => {
    vi.useFakeTimers();
    const handed: number[] = [];
    const left: number[] = [];
    let epoch = 0;
    const a = new Announcer({
      targets: [
        { source: "192.0.2.1", group: "224.0.0.1", interface: "eth1" },
        { source: "2001:db8::1", group: "ff02::1%eth1", interface: "eth1" },
      ],
      count: 5,
      firstGapMs: 250,
      messages: () => [Uint8Array.of(epoch++)],
      // The datagram leaves (its send callback runs) 1 ms after it is handed over, the IPv6 one 2 ms.
      send: (target, _payload, _port, sent) => {
        handed.push(Date.now());
        setTimeout(
          () => {
            left.push(Date.now());
            sent();
          },
          target.source.includes(":") ? 2 : 1,
        );
        return true;
      },
    });
    const t0 = Date.now();
    a.start();
    vi.advanceTimersByTime(20_000);
    // Each round is handed over a full gap after the previous round's last datagram left, and
    // at least twice the previous gap as long as it may have been (handed over → left) after.
    expect(handed.map((t) => t - t0)).toEqual([0, 0, 252, 252, 762, 762, 1788, 1788, 3846, 3846]);
    const leftV4 = left.filter((_, i) => i % 2 === 0);
    expect(leftV4.map((t) => t - t0)).toEqual([1, 253, 763, 1789, 3847]);
    const gaps = leftV4.slice(1).map((t, i) => t - leftV4[i]);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(2 * gaps[i - 1]);
    a.stop();
  });

  it("item 118: a timer that fires before the gap has passed on the monotonic clock waits out the rest", () => {
    vi.useFakeTimers();
    // Node's timers count from the event loop's cached time, which can be behind the real
    // time when the send callback runs: modelled by a clock 12 ms ahead at that moment.
    let ahead = 0;
    const at: number[] = [];
    const t0 = Date.now();
    const round = (sent: () => void) => {
      at.push(Date.now() - t0);
      setTimeout(() => {
        ahead = 12;
        sent();
        ahead = 0;
      }, 5); // the datagram left 5 ms after it was handed over
      return 1;
    };
    sendRepeatedly([250, 500], round, undefined, () => Date.now() + ahead);
    vi.advanceTimersByTime(5000);
    expect(at).toEqual([0, 267, 852]); // 250 ms after the first left (5 + 12), then 2 × (267 + 5 + 12)
  });

  it("item 118: a round with nothing handed to a socket goes on with the schedule; a cancel stops it", () => {
    vi.useFakeTimers();
    let rounds = 0;
    let finished = false;
    sendRepeatedly(
      [250, 500],
      () => (rounds++, 0),
      () => (finished = true),
    );
    vi.advanceTimersByTime(5000);
    expect([rounds, finished]).toEqual([3, true]);
    rounds = 0;
    const cancel = sendRepeatedly([250, 500], (sent) => (rounds++, setTimeout(sent, 10), 1));
    vi.advanceTimersByTime(100);
    cancel();
    vi.advanceTimersByTime(5000);
    expect(rounds).toBe(1);
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
