// Real log collectors from Debian for the logging tests (scripts/test-deps.sh installs
// them): rsyslog with imudp/imtcp on loopback writing every message to a file, and pmacct's
// nfacctd decoding IPFIX NAT events to JSON lines. Each runs with a configuration generated
// in a temporary directory (never /etc/rsyslog*), in the foreground, stopped by the test.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "./wait.js";

export const RSYSLOGD = ["/usr/sbin/rsyslogd"].find((p) => existsSync(p));
export const NFACCTD = ["/usr/sbin/nfacctd", "/usr/bin/nfacctd"].find((p) => existsSync(p));

export interface Collector {
  /** Lines written so far. */
  lines(): string[];
  stop(): Promise<void>;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
}

const readLines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);

/** rsyslogd on 127.0.0.1: UDP `udpPort`, TCP `tcpPort`; each line "MSGID|STRUCTURED-DATA|MSG|TIMESTAMP|APP-NAME". */
export async function startRsyslog(dir: string, udpPort: number, tcpPort: number): Promise<Collector> {
  const out = join(dir, "messages.log");
  const conf = join(dir, "rsyslog.conf");
  writeFileSync(
    conf,
    [
      `global(workDirectory="${dir}")`,
      `module(load="imudp")`,
      `module(load="imtcp")`,
      `template(name="fields" type="string" string="%msgid%|%structured-data%|%msg%|%timereported:::date-rfc3339%|%app-name%\\n")`,
      `ruleset(name="pcpd") { action(type="omfile" file="${out}" template="fields" flushOnTXEnd="on") }`,
      `input(type="imudp" address="127.0.0.1" port="${udpPort}" ruleset="pcpd")`,
      `input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="pcpd")`,
      "",
    ].join("\n"),
  );
  const child = spawn(RSYSLOGD!, ["-n", "-f", conf, "-i", join(dir, "rsyslogd.pid")], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  // Ready once the TCP input accepts connections.
  const { connect } = await import("node:net");
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        if (child.exitCode !== null) throw new Error(`rsyslogd exited: ${err}`);
        const s = connect({ host: "127.0.0.1", port: tcpPort });
        s.once("connect", () => (s.destroy(), resolve(true)));
        s.once("error", () => resolve(false));
      }),
    { timeout: 15_000, interval: 50, message: () => `rsyslogd not listening: ${err}` },
  );
  return { lines: () => readLines(out), stop: stopper(child) };
}

/** nfacctd on 127.0.0.1:`port`, printing each record as a JSON line (RFC 8158 fields named in the primitives file). */
export async function startNfacctd(dir: string, port: number): Promise<Collector & { records(): Record<string, unknown>[] }> {
  const out = join(dir, "ipfix.json");
  const primitives = join(dir, "primitives.lst");
  // IEs pmacct has no primitive for: portRangeStart/End, natOriginatingAddressRealm, vrfId, observationTimeMilliseconds.
  writeFileSync(
    primitives,
    [
      "name=port_first field_type=361 len=2 semantics=u_int",
      "name=port_last field_type=362 len=2 semantics=u_int",
      "name=addr_realm field_type=229 len=1 semantics=u_int",
      "name=vrf field_type=234 len=4 semantics=u_int",
      "name=obs_ms field_type=323 len=8 semantics=u_int",
      "",
    ].join("\n"),
  );
  const conf = join(dir, "nfacctd.conf");
  writeFileSync(
    conf,
    [
      "daemonize: false",
      "nfacctd_ip: 127.0.0.1",
      `nfacctd_port: ${port}`,
      "plugins: print[p]",
      `aggregate_primitives: ${primitives}`,
      "aggregate[p]: src_host, dst_host, src_port, dst_port, proto, nat_event, post_nat_src_host, post_nat_src_port, port_first, port_last, addr_realm, vrf, obs_ms",
      "print_output[p]: json",
      `print_output_file[p]: ${out}`,
      "print_output_file_append[p]: true",
      "print_refresh_time[p]: 1",
      "",
    ].join("\n"),
  );
  const child = spawn(NFACCTD!, ["-f", conf], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`nfacctd exited: ${log}`);
      return log.includes("waiting for NetFlow/IPFIX data");
    },
    { timeout: 15_000, interval: 50, message: () => log },
  );
  const lines = () => readLines(out);
  return { lines, records: () => lines().map((l) => JSON.parse(l) as Record<string, unknown>), stop: stopper(child) };
}
