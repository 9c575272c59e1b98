// listen.reusePort (docs/io.md): every worker serves every listen address. The main thread
// binds, per address, one SO_REUSEPORT socket per shard in shard order — so the group's
// member i is shard i — and attaches the steering program (hash of the source address mod
// the shard count: native/udp_batch.c steer(), src/io/native.ts steerIndex()), so a
// subscriber always reaches the same shard, the one holding its mappings. The workers adopt
// the descriptors; the main thread keeps them open, so a worker that restarts leaves no hole
// in the group (the kernel would move the last member into it and re-steer) and datagrams
// wait in its socket meanwhile.
import type { Endpoint } from "../io/udp-listener.js";
import type { NativeAddon, NativeSocket } from "../io/native.js";

export class ReusePortGroups {
  private constructor(
    private readonly addon: NativeAddon,
    /** sockets[address][shard] */
    private readonly sockets: NativeSocket[][],
    private readonly addresses: string[],
    private readonly port: number,
  ) {}

  /** Binds the groups (port 0: one ephemeral port chosen by the first member, shared by all). */
  static open(addon: NativeAddon, addresses: string[], port: number, shards: number, receiveBuffer: number): ReusePortGroups {
    const sockets: NativeSocket[][] = [];
    let bound = port;
    try {
      for (const address of addresses) {
        const group: NativeSocket[] = [];
        sockets.push(group);
        for (let shard = 0; shard < shards; shard++) {
          group.push(addon.open(address, bound, receiveBuffer, true));
          if (bound === 0) bound = addon.local(group[0])[1];
        }
        addon.steer(group[0], shards);
      }
    } catch (e) {
      for (const group of sockets) for (const s of group) addon.close(s);
      throw e;
    }
    return new ReusePortGroups(addon, sockets, addresses, bound);
  }

  /** The endpoints shard `shard` adopts: its member of every group. */
  endpoints(shard: number): Endpoint[] {
    return this.addresses.map((address, i) => ({ address, port: this.port, fd: this.addon.fd(this.sockets[i][shard]) }));
  }

  close(): void {
    for (const group of this.sockets) for (const s of group) this.addon.close(s);
    this.sockets.length = 0;
  }
}
