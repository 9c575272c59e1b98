// The NATS side every HA component shares: the connection (the main thread's lease keeper
// and each shard worker's stream writer or follower open their own), and the names and
// settings of a cluster's JetStream objects. Objects are created on first use by whichever
// node gets there first; later nodes find them (an existing stream with other settings is
// left as it is and reported, never recreated: that would drop its records).
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { Config } from "../config/schema.js";

export type NatsSettings = Config["ha"]["nats"];

/** One shard's subject in its group's stream, with the clients a writer or follower uses on it. */
export interface ShardSubject {
  js: JetStreamClient;
  jsm: JetStreamManager;
  stream: string;
  subject: string;
}

/** Names of a cluster's JetStream objects (stream and bucket names allow [A-Za-z0-9_-]). */
export const haNames = {
  /** The group's stream: one subject per shard. */
  stream: (cluster: string, group: string) => `PCPD_${cluster}_${group}`,
  subject: (cluster: string, group: string, shard: number) => `pcpd.${cluster}.${group}.shard-${shard}`,
  /** The KV bucket holding one lease per group (key: the group's name). */
  leaseBucket: (cluster: string) => `PCPD_${cluster}_leases`,
};

/**
 * Connects to the cluster, retrying servers for ever once connected (the lease keeper
 * decides what an outage means, from its own clock). `name` shows in the servers'
 * connection lists (node and thread).
 */
export async function connectNats(settings: NatsSettings, name: string): Promise<NatsConnection> {
  const token = settings.tokenEnv === undefined ? undefined : process.env[settings.tokenEnv];
  return connect({
    servers: settings.servers,
    name,
    token,
    timeout: settings.timeoutMs,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Pings find a dead server within ~2 intervals; the lease needs faster than the default 2 min.
    pingInterval: Math.max(500, Math.floor(settings.timeoutMs / 2)),
    maxPingOut: 2,
  });
}

/** Creates the group's stream if missing (file storage, `replicas` copies, one subject per shard). */
export async function ensureGroupStream(nc: NatsConnection, cluster: string, group: string, replicas: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const name = haNames.stream(cluster, group);
  try {
    await jsm.streams.info(name);
    return;
  } catch (e) {
    if (!/stream not found/i.test((e as Error).message)) throw e;
  }
  try {
    await jsm.streams.add({
      name,
      subjects: [`pcpd.${cluster}.${group}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      // Compaction purges what a snapshot replaced (src/replication); nothing ages out by itself.
      max_age: 0,
      allow_direct: true,
      deny_delete: false,
      deny_purge: false,
    });
  } catch (e) {
    // Another node created it between our look and our add.
    if (!/already in use|exists/i.test((e as Error).message)) throw e;
  }
}

/** The cluster's lease bucket (created if missing): one key per group, one value kept. */
export async function leaseBucket(nc: NatsConnection, cluster: string, replicas: number): Promise<KV> {
  return new Kvm(nc).create(haNames.leaseBucket(cluster), { history: 1, replicas, storage: StorageType.File });
}
