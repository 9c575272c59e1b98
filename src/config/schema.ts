// The server's configuration: one document, validated with zod. Every field has a safe
// embedded default, so an empty document serves PCP and NAT-PMP on loopback with a
// documentation-range external pool (RFC 5737) and no dataplane.
import { isIP } from "node:net";
import { availableParallelism, totalmem } from "node:os";
import { z } from "zod";
import * as W from "../wire.generated.js";
import { expandPrefix, parsePrefix } from "../net/cidr.js";
import { encodePrefix64Options } from "../net/prefix64.js";
import { ConfigError } from "../errors.js";
import { contradictions } from "./checks.js";

const address = z.string().refine((s) => isIP(s) !== 0, "must be an IPv4 or IPv6 address");
const prefix = z.string().refine((s) => {
  try {
    parsePrefix(s);
    return true;
  } catch {
    return false;
  }
}, "must be an address or a prefix such as 10.0.0.0/8 or 2001:db8::/32");
const seconds = z.number().int().min(0).max(0xffffffff);
const port = z.number().int().min(0).max(65535);
const count = (min: number, max: number) => z.number().int().min(min).max(max);
const authMode = z.enum(["required", "optional", "off"]);

/** 4 MiB: a burst of 4,000 requests in one go fits with room to spare (test/integration/udp-burst.test.ts). */
export const RECEIVE_BUFFER_DEFAULT = 4 * 1024 * 1024;

export const ConfigSchema = z
  .object({
    listen: z
      .object({
        /** One socket per address: replies leave from the address the request was sent to. */
        addresses: z.array(address).min(1).default(["127.0.0.1", "::1"]),
        port: port.default(W.PCP_SERVER_PORT),
        /**
         * SO_RCVBUF per socket, bytes (0: the kernel default, ~208 KiB, which loses most of
         * a burst of thousands of requests after an Epoch reset). Capped by net.core.rmem_max.
         */
        receiveBuffer: count(0, 1 << 30).default(RECEIVE_BUFFER_DEFAULT),
        /**
         * Every worker serves every listen address through one SO_REUSEPORT socket each, the
         * kernel steering a source address always to the same worker (docs/io.md). Needs the
         * batched I/O path (else: one worker per address, with a warning); not with ha.enabled.
         */
        reusePort: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /**
     * Engine workers (piscina threads), one shard each. Each worker owns the sockets of
     * its listen addresses (address i → worker i mod workers), so at most one worker per
     * address; default: one per address, up to the number of CPUs.
     */
    workers: count(1, 64).optional(),
    announce: z
      .object({
        /** Interfaces (names) on which gratuitous ANNOUNCEs are multicast; each must carry a listen address. */
        multicast: z.array(z.string().min(1)).default([]),
        /** Copies per Epoch reset (RFC 6887 §14.1.3: at most 10). */
        count: count(1, 10).default(10),
        /** Gap between the first two copies; each later gap doubles (RFC 6887: ≥ 250 ms). */
        firstGapMs: count(250, 60_000).default(250),
      })
      .strict()
      .prefault({}),
    /** Sources whose requests are served as subscribers (the subscriber-facing side). */
    subscribers: z.array(prefix).default(["127.0.0.0/8", "::1/128"]),
    /** Sources allowed to use THIRD_PARTY (AFTRs, CPE proxies, management). */
    thirdPartySources: z.array(prefix).default([]),
    pcp: z
      .object({
        map: z.boolean().default(true),
        peer: z.boolean().default(true),
        thirdParty: z.boolean().default(true),
        preferFailure: z.boolean().default(true),
        filter: z.boolean().default(true),
        overload: z.enum(["drop", "no-resources"]).default("drop"),
        shortErrorLifetime: seconds.default(W.DEFAULT_SHORT_ERROR_LIFETIME),
        longErrorLifetime: seconds.default(W.DEFAULT_LONG_ERROR_LIFETIME),
        /**
         * NAT64 prefixes returned in PREFIX64 options [RFC 7225] to MAP and ANNOUNCE requests
         * that carry PREFIX64. None configured: the option is not supported (ignored).
         */
        /** DESCRIPTION [RFC 7220]: stored (128 bytes), echoed, listed; off: the option is ignored. */
        description: z.boolean().default(true),
        /**
         * THIRD_PARTY_ID [RFC 7843]: a tunnel/session identifier (hex, 1–16 bytes) names the
         * realm of a THIRD_PARTY address, so overlapping internal addresses of different
         * subscribers stay apart. `ids`: the known identifiers (others → THIRD_PARTY_ID_UNKNOWN),
         * or "any" (registered on first use, up to capacity.realms). Off: UNSUPP_OPTION.
         */
        thirdPartyId: z
          .object({
            enabled: z.boolean().default(false),
            ids: z.union([z.literal("any"), z.array(z.string().regex(/^([0-9a-f]{2}){1,16}$/, "hex, 1 to 16 bytes"))]).default("any"),
            maxLength: count(1, 16).default(16),
          })
          .strict()
          .prefault({}),
        /**
         * PORT_SET [RFC 7753]: up to `maxSize` consecutive ports mapped in one request (within
         * one port block and the subscriber's quota). Off: served as single-port MAPs.
         */
        portSet: z
          .object({ enabled: z.boolean().default(true), maxSize: count(2, W.PORT_SET_LIMIT).default(16) })
          .strict()
          .prefault({}),
        /** CHECKPOINT_REQUIRED [RFC 7767] processed (honoured with persistence on, see persistence.checkpointsPerSubscriber); off: ignored. */
        checkpointRequired: z.boolean().default(true),
        prefix64: z
          .array(z.object({ prefix: z.string(), suffix: address.optional(), ipv4: z.array(z.string()).default([]) }).strict())
          .max(16)
          .default([]),
      })
      .strict()
      .prefault({}),
    natPmp: z.enum(["enabled", "disabled", "silent"]).default("enabled"),
    pool: z
      .object({
        /** External addresses or prefixes (expanded; at most 256 addresses). */
        addresses: z.array(prefix).min(1).default(["203.0.113.0/28"]),
        portMin: count(1, 65535).default(1024),
        blockSize: count(2, 65534).default(512),
        maxBlocksPerSubscriber: count(1, W.MAX_BLOCKS_PER_SUBSCRIBER).default(4),
        excludedPorts: z.array(port).default([]),
      })
      .strict()
      .prefault({}),
    lifetimes: z
      .object({ min: seconds.default(120), max: seconds.default(86400), peerMin: seconds.default(120), holdDown: seconds.default(120) })
      .strict()
      .prefault({}),
    quotas: z
      .object({ mappingsPerSubscriber: count(1, 65535).default(64), filtersPerMapping: count(1, 255).default(8) })
      .strict()
      .prefault({}),
    capacity: z
      .object({
        mappings: count(1, 16_000_000).default(100_000),
        subscribers: count(1, 16_000_000).default(20_000),
        peers: count(1, 16_000_000).default(50_000),
        filters: count(1, 16_000_000).default(50_000),
        /** Mappings that may carry a DESCRIPTION at once (140 bytes each). */
        descriptions: count(0, 4_000_000).default(20_000),
        /** THIRD_PARTY_ID identifiers known at once (24 bytes each). */
        realms: count(1, 4_000_000).default(65_536),
        /** THIRD_PARTY mappings whose requester (recorded for Mapping Update) is not one of the 254 each worker keeps once for all their mappings (28 bytes + index each; beyond: told by the Epoch only; 0: none recorded). */
        requesters: count(0, 4_000_000).default(20_000),
      })
      .strict()
      .prefault({}),
    engine: z
      .object({
        /**
         * Transparent huge pages for each worker's engine memory (src/io/huge-pages.ts,
         * docs/engine.md): "auto" advises it (MADV_HUGEPAGE, through the addon) before the
         * tables are first touched; "off" leaves 4 KiB pages.
         */
        hugePages: z.enum(["auto", "off"]).default("auto"),
      })
      .strict()
      .prefault({}),
    rateLimit: z
      .object({
        perSource: z
          .object({ rate: z.number().positive().default(20), burst: count(1, 1_000_000).default(100) })
          .strict()
          .prefault({}),
        global: z
          .object({ rate: z.number().positive().default(200_000), burst: count(1, 10_000_000).default(400_000) })
          .strict()
          .prefault({}),
        maxSources: count(1, 100_000_000).default(1_000_000),
      })
      .strict()
      .prefault({}),
    noncePolicy: z.enum(["strict", "relaxed"]).default("strict"),
    parity: z.boolean().default(false),
    protocols: z.array(count(1, 255)).min(1).default([W.PROTO_TCP, W.PROTO_UDP]),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        /** JSON lines, or human-readable lines (pino-pretty); auto: pretty when stdout is a terminal. */
        format: z.enum(["auto", "pretty", "json"]).default("auto"),
      })
      .strict()
      .prefault({}),
    /** Mapping and port-block logs for traceability (docs/logging.md): syslog and IPFIX to collectors. */
    logging: z
      .object({
        syslog: z
          .object({
            /** RFC 5424 records to the collector, one per mapping (or block) event. */
            enabled: z.boolean().default(false),
            /** UDP (RFC 5426) or TCP with octet counting (RFC 6587 §3.4.1). */
            transport: z.enum(["udp", "tcp"]).default("udp"),
            collector: address.default("127.0.0.1"),
            port: port.min(1).default(514),
            /** Per mapping event, or one record per port-block lease and release (RFC 7422). */
            records: z.enum(["mappings", "blocks"]).default("mappings"),
            /** RFC 5424 facility number (16: local0). */
            facility: count(0, 23).default(16),
            /** APP-NAME; HOSTNAME is the machine's. */
            appName: z
              .string()
              .regex(/^[!-~]{1,48}$/, "printable ASCII without spaces, at most 48")
              .default("pcpd"),
            /** Records waiting to be sent; beyond it new records are dropped and counted. */
            queue: count(1, 10_000_000).default(100_000),
          })
          .strict()
          .prefault({}),
        ipfix: z
          .object({
            /** IPFIX (RFC 7011) NAT events with RFC 8158 information elements, over UDP. */
            enabled: z.boolean().default(false),
            collector: address.default("127.0.0.1"),
            port: port.min(1).default(4739),
            records: z.enum(["mappings", "blocks"]).default("mappings"),
            observationDomain: z.number().int().min(0).max(0xffffffff).default(1),
            /** Templates are re-sent this often (RFC 7011 §8.4: UDP collectors may have lost them). */
            templateRefreshSeconds: count(1, 86_400).default(60),
            queue: count(1, 10_000_000).default(100_000),
          })
          .strict()
          .prefault({}),
        /** Queued records leave in batches this often (and whenever a batch is full). */
        flushMs: count(1, 10_000).default(100),
      })
      .strict()
      .prefault({}),
    persistence: z
      .object({
        /** Mappings, holds and the Epoch survive a restart (a journal plus snapshots per shard). */
        enabled: z.boolean().default(true),
        /** Data directory (relative paths: from the working directory); one subdirectory per shard. */
        directory: z.string().min(1).default("data"),
        /** Group commit: journal records are written (and fdatasync'ed) this often; a crash loses at most about this much. */
        commitIntervalMs: count(1, 10_000).default(20),
        /** fdatasync after every group commit (off: the OS decides when; a power loss may lose more). */
        fsync: z.boolean().default(true),
        /**
         * "coalesced": a refresh that moved the expiry by less than an eighth of the lifetime
         * left (≥ 60 s) is not journaled (a restored mapping may end that much early, still
         * after its client's next refresh); "every": every refresh is.
         */
        refreshes: z.enum(["coalesced", "every"]).default("coalesced"),
        /** CHECKPOINT_REQUIRED [RFC 7767]: check-pointed mappings per subscriber (their replies wait for fdatasync); 0: never honoured. */
        checkpointsPerSubscriber: count(0, 65535).default(16),
        /** A snapshot (and the deletion of older journals) at least this often while mappings change. */
        snapshotIntervalSeconds: count(10, 7 * 86_400).default(3600),
        /** …and whenever the journal grew by this many bytes since the last snapshot. */
        snapshotJournalBytes: count(1024 * 1024, 2 ** 40).default(512 * 1024 * 1024),
        /** Journal bytes waiting for the disk beyond which the backlog is dropped and a snapshot replaces it. */
        maxBacklogBytes: count(1024 * 1024, 2 ** 34).default(256 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    dataplane: z
      .object({
        /**
         * What programs the NAT: nothing (pcpd only answers PCP), nftables on this host
         * (IPv4), or an external dataplane fed over the control channel (dataplane.subscribe).
         * With one configured, requests get NETWORK_FAILURE until it is programmed.
         */
        backend: z.enum(["none", "nftables", "events"]).default("none"),
        /** nftables table (family ip) pcpd owns. */
        table: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]{0,31}$/, "letters, digits and _ (at most 32)")
          .default("pcpd"),
        /** Changes are applied in one transaction this often. */
        batchMs: count(5, 10_000).default(50),
        /** Failed transactions in a row after which the dataplane counts as down (NETWORK_FAILURE). */
        failuresBeforeDown: count(1, 100).default(3),
        /** Operations per transaction while loading the whole table (start-up, recovery), and at most per transaction of a batch of changes. */
        reconcileChunk: count(100, 1_000_000).default(20_000),
        /** Bytes of posted changes waiting to be applied beyond which they are let go and the dataplane is resynchronised from the tables. */
        maxBacklogBytes: count(1024 * 1024, 2 ** 34).default(256 * 1024 * 1024),
        /**
         * Traffic-driven lifetimes [RFC 6887 §15, §12.3]: the dataplane tells when a mapped
         * endpoint last sent a packet (nftables: a dynamic set with these idle timeouts;
         * events: the consumers answer dataplane.activity), asked only when a decision needs it.
         */
        activity: z
          .object({
            enabled: z.boolean().default(false),
            /** Idle timeout of UDP (and every protocol but TCP): how long one packet keeps a mapping. */
            udpIdle: count(1, 86_400).default(120),
            /** Idle timeout of TCP (RFC 5382 REQ-5: at least 2 h 4 min). */
            tcpIdle: count(1, 86_400).default(7440),
            /** Seconds an expiry waits for the answer before it ends the mapping as without tracking. */
            waitSeconds: count(1, 60).default(2),
            /** Seconds a request waits for the answer before it is decided as without tracking. */
            requestWaitMs: count(10, 5_000).default(500),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    ha: z
      .object({
        /**
         * Active/standby shard groups replicated through NATS JetStream (docs/ha.md). Off: a
         * single node, its state in persistence.directory.
         */
        enabled: z.boolean().default(false),
        /** This node's name, unique in the cluster (lease holder, stream writer). */
        node: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - (at most 64)")
          .default("pcpd-1"),
        /** Prefix of the JetStream stream and KV bucket names: nodes with the same cluster name share them. */
        cluster: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,32}$/, "letters, digits, _ and - (at most 32)")
          .default("pcpd"),
        nats: z
          .object({
            /** NATS server URLs (nats://host:port); the client fails over between them. */
            servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:4222"]),
            /** A token named by an environment variable (never written in the file). */
            tokenEnv: z.string().min(1).optional(),
            /** Timeout of one connection attempt and of one JetStream request (publish, KV update). */
            timeoutMs: count(100, 60_000).default(2000),
          })
          .strict()
          .prefault({}),
        /** Replicas of each group's stream and of the lease bucket (R3 survives one server lost). */
        replicas: count(1, 5).default(3),
        /**
         * Shard groups: each lists the listen addresses it serves (its service addresses, which
         * move to the active node); together they are listen.addresses, and a worker's addresses
         * are all in one group. Every node of the cluster has the same groups.
         */
        groups: z
          .array(
            z
              .object({
                name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, "letters, digits, _ and - (at most 32)"),
                addresses: z.array(address).min(1),
                /** The node that takes the group when nobody holds it (at cluster start); others wait one lease first. */
                preferred: z.string().min(1).optional(),
              })
              .strict(),
          )
          .default([]),
        /** Lease of a group's active, renewed every leaseMs/3; a standby takes over after it lapsed plus the margin. */
        leaseMs: count(500, 60_000).default(2000),
        /** Subtracted from the active's own view of its lease, and added to a standby's wait: covers clock-rate drift and scheduling. */
        safetyMarginMs: count(50, 30_000).default(500),
        /** Group commit of the replication: records are published this often (one message per group commit and shard). */
        commitIntervalMs: count(1, 10_000).default(20),
        /** The stream is compacted (a snapshot published, older messages purged) at least this often while mappings change… */
        snapshotIntervalSeconds: count(10, 7 * 86_400).default(600),
        /** …and whenever this many record bytes were published since the last snapshot. */
        snapshotBytes: count(1024 * 1024, 2 ** 40).default(256 * 1024 * 1024),
        /**
         * Commands run when this node claims or releases a group's service addresses (argv; the
         * placeholders {address}, {prefix} (address/32 or /128), {group} and {node} are
         * replaced); empty: nothing is run (keepalived or the router moves the addresses).
         */
        hooks: z
          .object({
            claim: z.array(z.string().min(1)).default([]),
            release: z.array(z.string().min(1)).default([]),
            /** A hook that has not exited by then counts as failed. */
            timeoutMs: count(100, 60_000).default(5000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /**
     * PCP authentication [RFC 7652] (docs/auth.md): per source prefix, "required" (MAP/PEER
     * without a valid AUTHENTICATION_TAG → AUTHENTICATION_REQUIRED and an unsolicited
     * PA-Server message), "optional" (authentication offered, untagged requests served) or
     * "off" (AUTHENTICATION and its options unknown: UNSUPP_OPCODE / UNSUPP_OPTION).
     */
    auth: z
      .object({
        /** Subscriber prefixes; the longest match decides, else `default`. */
        subscribers: z.array(z.object({ prefix, mode: authMode }).strict()).default([]),
        default: authMode.default("off"),
        /** THIRD_PARTY source prefixes: the policy for their requests carrying THIRD_PARTY; else `thirdPartyDefault`. */
        thirdParty: z.array(z.object({ prefix, mode: authMode }).strict()).default([]),
        thirdPartyDefault: authMode.default("off"),
        /** PCP security associations per worker (sessions being authenticated included). */
        maxSessions: count(1, 1_000_000).default(10_000),
        /** Security associations per client address (several PCP clients on one host, RFC 7652 §3.1.3). */
        sessionsPerClient: count(1, 64).default(4),
        /** Session lifetime granted (the AAA server's Session-Timeout when shorter), seconds. */
        sessionLifetime: count(4, 30 * 86_400).default(3600),
        /** Percent of the session lifetime after which the server re-authenticates [7652 §3.4]. */
        reauthAtPercent: count(50, 95).default(80),
        /** ID_INDICATOR sent in the first PA-Server message (the credentials' authority) [7652 §5.11]. */
        idIndicator: z.string().min(1).max(1016).optional(),
        radius: z
          .object({
            /** RADIUS servers in failover order (src/auth/eap-relay.ts). */
            servers: z
              .array(
                z
                  .object({ host: address, port: port.default(1812), secret: z.string().min(1).optional(), secretEnv: z.string().min(1).optional() })
                  .strict()
                  .refine((s) => (s.secret === undefined) !== (s.secretEnv === undefined), "give exactly one of secret and secretEnv"),
              )
              .default([]),
            /** Wait for one RADIUS answer before retransmitting, ms. */
            timeoutMs: count(100, 60_000).default(2000),
            /** Retransmissions to one server before the next one is tried. */
            retries: count(0, 10).default(2),
            /** NAS-Identifier sent in Access-Requests. */
            nasIdentifier: z.string().min(1).default("pcpd"),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    control: z
      .object({
        enabled: z.boolean().default(true),
        /** Bind address of the control channel, /metrics and /healthz (a management address, never the subscriber side). */
        address: address.default("127.0.0.1"),
        port: port.default(5380),
        /**
         * Bearer tokens and their roles. A token is given inline or named by an environment
         * variable. With none, an admin token is generated at start into `tokenFile`.
         */
        tokens: z
          .array(
            z
              .object({ token: z.string().min(16).optional(), tokenEnv: z.string().min(1).optional(), role: z.enum(["read", "admin"]) })
              .strict()
              .refine((t) => (t.token === undefined) !== (t.tokenEnv === undefined), "give exactly one of token and tokenEnv"),
          )
          .default([]),
        /** Where the generated token goes (default: $XDG_RUNTIME_DIR/pcpd/control-<port>.token or <tmp>/pcpd-<uid>/control-<port>.token; removed on a clean stop). */
        tokenFile: z.string().min(1).optional(),
        tls: z
          .object({ cert: z.string().min(1), key: z.string().min(1), passphrase: z.string().optional() })
          .strict()
          .optional(),
        maxMessageBytes: count(256, 16 * 1024 * 1024).default(64 * 1024),
        /** Requests per second per connection (burst = 2 s worth); beyond: RATE_LIMITED errors. */
        requestsPerSecond: count(1, 1_000_000).default(1000),
        /** Event bytes queued for one subscriber beyond which events are dropped (and counted) until it catches up. */
        eventBufferBytes: count(4096, 256 * 1024 * 1024).default(1024 * 1024),
        /**
         * The role of a WebSocket connection that brings no token (the dashboard on a closed
         * management network): "none" refuses it (401), "read" lets it read. A wrong token is always refused.
         */
        anonymousRole: z.enum(["none", "read"]).default("none"),
      })
      .strict()
      .prefault({}),
    /** Main-thread event-loop stalls against systemd's watchdog (src/server/loop-stalls.ts). */
    watchdog: z
      .object({
        /** A main-thread stall of at least this fraction of the watchdog interval is logged as a warning. */
        stallWarnFraction: z.number().gt(0).max(1).default(0.25),
        /** The watchdog interval when systemd sets no WATCHDOG_USEC for the process (the packaged unit's WatchdogSec). */
        intervalSeconds: count(1, 86_400).default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.workers !== undefined && c.workers > c.listen.addresses.length && !c.listen.reusePort) {
      ctx.addIssue({
        code: "custom",
        path: ["workers"],
        message: `${c.workers} workers need at least ${c.workers} listen addresses (each worker owns the sockets of its addresses), or listen.reusePort`,
      });
    }
    if (new Set(c.listen.addresses).size !== c.listen.addresses.length)
      ctx.addIssue({ code: "custom", path: ["listen", "addresses"], message: "duplicate address" });
    if (c.lifetimes.max < c.lifetimes.min) ctx.addIssue({ code: "custom", path: ["lifetimes", "max"], message: "must be ≥ lifetimes.min" });
    if (c.pool.blockSize > 65536 - c.pool.portMin) ctx.addIssue({ code: "custom", path: ["pool", "blockSize"], message: "must fit above pool.portMin" });
    try {
      poolAddresses(c.pool.addresses);
    } catch (e) {
      ctx.addIssue({ code: "custom", path: ["pool", "addresses"], message: (e as Error).message });
    }
    try {
      encodePrefix64Options(c.pcp.prefix64);
    } catch (e) {
      ctx.addIssue({ code: "custom", path: ["pcp", "prefix64"], message: (e as Error).message });
    }
    for (const issue of contradictions(c, workerCount(c, availableParallelism()), totalmem())) ctx.addIssue({ code: "custom", ...issue });
  });

export type Config = z.infer<typeof ConfigSchema>;

/** Worker count in effect: configured, or one per listen address up to the CPU count. */
export function workerCount(c: Config, cpus: number): number {
  // listen.reusePort: every worker serves every address (docs/io.md), one per CPU by default.
  return c.workers ?? Math.max(1, c.listen.reusePort ? cpus : Math.min(c.listen.addresses.length, cpus));
}

/**
 * Expands the pool's prefixes into addresses (at most 256 in all, the engine's address
 * table). An IPv4 prefix of /30 or shorter leaves out its network and broadcast addresses
 * (a /31 has neither, RFC 3021; a single address is taken as written, so list one as /32
 * to hand it out).
 */
export function poolAddresses(entries: string[]): string[] {
  const out = entries.flatMap((e) => {
    const p = parsePrefix(e);
    const edges = isIP(e.split("/")[0]) === 4 && p.bits <= 96 + 30; // network and broadcast left out
    const usable = 2 ** (128 - p.bits) - (edges ? 2 : 0);
    if (usable > W.POOL_MAX_ADDRESSES)
      throw new RangeError(`${e} holds ${usable} usable addresses, but the engine's address table holds ${W.POOL_MAX_ADDRESSES}`);
    const all = expandPrefix(p, W.POOL_MAX_ADDRESSES + 2);
    return edges ? all.slice(1, -1) : all;
  });
  if (out.length > W.POOL_MAX_ADDRESSES) throw new RangeError(`${out.length} pool addresses, but the engine's address table holds ${W.POOL_MAX_ADDRESSES}`);
  if (new Set(out).size !== out.length) throw new RangeError("pool addresses overlap");
  return out;
}

/** Validates a parsed document; errors name the field (e.g. `pool.blockSize: …`). */
export function parseConfig(document: unknown): Config {
  const r = ConfigSchema.safeParse(document ?? {});
  if (r.success) return r.data;
  throw new ConfigError(r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(document)"}: ${i.message}`));
}
