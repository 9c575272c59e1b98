// The engine worker's entry (a piscina thread; loaded by URL from src/server/shard-pool.ts,
// imported by nothing): a task switch over the shard this thread runs (./shard.ts). Tasks
// arrive pinned to this thread by the pool's balancer; their types are ./tasks.ts.
import { parentPort, threadId } from "node:worker_threads";
import { ErrorCodes, PcpdError } from "../errors.js";
import { Shard, type Post } from "./shard.js";
import type { ShardTask } from "./tasks.js";

let shard: Shard | undefined;

const post: Post = (m, transfer) => parentPort?.postMessage(m, transfer);

function running(): Shard {
  if (!shard) throw new PcpdError(ErrorCodes.SHARD_WORKER_MISMATCH, `worker ${threadId} has no shard`);
  return shard;
}

export default async function handle(task: ShardTask): Promise<unknown> {
  switch (task.kind) {
    case "start": {
      if (shard) throw new PcpdError(ErrorCodes.SHARD_WORKER_MISMATCH, `worker ${threadId} already runs shard ${shard.spec.shard}`);
      const { shard: s, started } = await Shard.start(task.spec, post);
      shard = s;
      return started;
    }
    case "stop": {
      const final = await running().stop();
      shard = undefined;
      return final;
    }
    case "haState":
    case "haCatchUp":
    case "haPromote":
    case "haHandover":
      return running().ha(task);
    default:
      return running().run(task);
  }
}
