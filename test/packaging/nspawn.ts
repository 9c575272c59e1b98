// A real systemd as PID 1, booted by systemd-nspawn, for the packaging tests: a minimal root
// (the host's /usr read-only, a private /etc written here: passwd, group, machine-id, the
// files the test installs), its own network namespace (`ip netns`, so the test reaches it
// with `ip netns exec`) and its own cgroup (nspawn runs without a host service manager here:
// --register=no --keep-unit, in a cgroup made for it). Commands run inside with nsenter into
// PID 1's namespaces (systemctl, journalctl, systemd-analyze talk to the container's manager).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmdirSync, readdirSync, symlinkSync, writeFileSync, chmodSync, chownSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { waitFor } from "../helpers/wait.js";

/** Why a container cannot be booted here, or undefined. */
export function nspawnUnsupported(): string | undefined {
  if (process.getuid?.() !== 0) return "not root (systemd-nspawn and ip netns need it)";
  for (const [cmd, arg, pkg] of [
    ["systemd-nspawn", "--version", "systemd-container"],
    ["nsenter", "--version", "util-linux"],
    ["ip", "-V", "iproute2"],
  ])
    if (spawnSync(cmd, [arg]).status !== 0) return `${cmd} not installed (Debian: ${pkg}; scripts/test-deps.sh)`;
  if (!existsSync("/usr/lib/systemd/systemd")) return "no /usr/lib/systemd/systemd to boot (Debian: systemd)";
  return undefined;
}

export interface ContainerOptions {
  name: string; // also the network namespace's name
  root: string; // an empty directory: the container's root
  binds: [host: string, container: string][]; // read-only
  users: { name: string; id: number }[];
  files: { path: string; text: string; mode?: number; group?: number }[];
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export class Container {
  private nspawn?: ChildProcess;
  private exited?: Promise<number | null>;
  /** PID 1 of the container, as the host sees it. */
  leader = 0;
  /** nspawn's own output (boot failures). */
  log = "";
  private readonly cgroups: string[];

  constructor(readonly o: ContainerOptions) {
    // Its own cgroup, in every hierarchy systemd uses: the unified one alone (cgroup v2), or
    // name=systemd plus unified (the hybrid layout of this project's VMs).
    this.cgroups = existsSync("/sys/fs/cgroup/cgroup.controllers")
      ? [`/sys/fs/cgroup/${o.name}`]
      : ["systemd", "unified"].map((h) => `/sys/fs/cgroup/${h}/${o.name}`).filter((c) => existsSync(join(c, "..")));
  }

  /** Builds the root, boots it, and waits until systemd says the system is running. */
  async boot(timeout = 60_000): Promise<void> {
    const { root, name } = this.o;
    for (const d of ["etc/systemd/system", "usr", "var", "tmp", "root", ...this.o.binds.map(([, c]) => c.slice(1))])
      mkdirSync(join(root, d), { recursive: true });
    chmodSync(root, 0o755); // a temporary directory is 0700: the service user could not reach /
    chmodSync(join(root, "tmp"), 0o1777);
    for (const l of ["bin", "lib", "lib64", "sbin"]) if (existsSync(`/usr/${l}`)) symlinkSync(`usr/${l}`, join(root, l));
    copyFileSync("/usr/lib/os-release", join(root, "etc/os-release"));
    // netbase's names, as on any Debian system (the nftables rules need none: protocol numbers).
    for (const f of ["protocols", "services"]) if (existsSync(`/etc/${f}`)) copyFileSync(`/etc/${f}`, join(root, "etc", f));
    const users = [{ name: "root", id: 0 }, ...this.o.users];
    writeFileSync(join(root, "etc/passwd"), users.map((u) => `${u.name}:x:${u.id}:${u.id}::/${u.id ? `var/lib/${u.name}` : "root"}:/bin/sh\n`).join(""));
    writeFileSync(join(root, "etc/group"), users.map((u) => `${u.name}:x:${u.id}:\n`).join(""));
    // A machine id: not a first boot (no preset run enabling every unit of the host's /usr,
    // no firstboot prompt).
    writeFileSync(join(root, "etc/machine-id"), `${randomBytes(16).toString("hex")}\n`);
    for (const f of this.o.files) this.install(f);
    // Nothing here needs a D-Bus (systemctl talks to PID 1's private socket): without them
    // the boot does not wait on dbus.service, whose start can take a minute on a busy host.
    for (const u of ["dbus.service", "dbus.socket", "systemd-logind.service"]) symlinkSync("/dev/null", join(root, "etc/systemd/system", u));

    spawnSync("ip", ["netns", "del", name]);
    must("ip", ["netns", "add", name]);
    must("ip", ["-n", name, "link", "set", "lo", "up"]); // the container may not (no CAP_NET_ADMIN over lo at boot)
    for (const c of this.cgroups) mkdirSync(c, { recursive: true });
    const args = [
      `--directory=${root}`,
      `--machine=${name}`,
      "--register=no", // no machined on the host (PID 1 is not systemd)
      "--keep-unit", // no scope unit either: the cgroup made here
      `--network-namespace-path=/run/netns/${name}`,
      "--capability=CAP_NET_ADMIN", // nspawn drops it for a network namespace it did not make
      "--bind-ro=/usr",
      ...this.o.binds.map(([h, c]) => `--bind-ro=${h}:${c}`),
      "--console=pipe",
      "--boot",
    ];
    // Into the cgroup first, then exec nspawn: the container's systemd lives below it.
    const enter = this.cgroups.map((c) => `echo $$ > ${c}/cgroup.procs`).join("; ");
    const nspawn = spawn("sh", ["-c", `${enter}; exec systemd-nspawn "$@"`, "sh", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    this.nspawn = nspawn;
    this.exited = new Promise((r) => nspawn.once("exit", r));
    nspawn.stdout!.on("data", (c) => (this.log += c));
    nspawn.stderr!.on("data", (c) => (this.log += c));
    this.leader = await waitFor(
      () => {
        if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}: ${this.log}`);
        // nspawn's first child forks the container's PID 1 and exits: wait for the one that
        // is pid 1 in its own pid namespace.
        const children = readFileSync(`/proc/${nspawn.pid}/task/${nspawn.pid}/children`, "utf8").trim().split(" ").filter(Boolean);
        return Number(children.find((pid) => /^NSpid:\s+\d+\s+1$/m.test(readIfThere(`/proc/${pid}/status`))) ?? 0);
      },
      { timeout, message: () => this.log },
    );
    let state: Run | undefined;
    await waitFor(
      async () => {
        if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}: ${this.log}`);
        state = await this.run(["systemctl", "is-system-running"]);
        return ["running", "degraded"].includes(state.stdout.trim());
      },
      {
        timeout,
        interval: 200,
        message: () =>
          `is-system-running: ${state?.stdout}${state?.stderr}\n${this.log}\n${spawnSync("nsenter", ["-t", String(this.leader), "-a", "systemctl", "list-jobs", "--no-pager"]).stdout}`,
      },
    );
  }

  /** Writes a file of the container's root (its /etc: not bind-mounted, seen at once inside). */
  install(f: { path: string; text: string; mode?: number; group?: number }): void {
    const path = join(this.o.root, f.path);
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, f.text);
    chmodSync(path, f.mode ?? 0o644);
    if (f.group !== undefined) chownSync(path, 0, f.group);
  }

  /**
   * A command inside the container (PID 1's namespaces); never throws. In a process group
   * of its own: a `kill` inside can never reach the test's (kill 0).
   */
  run(cmd: string[], timeoutMs = 30_000): Promise<Run> {
    if (!this.leader) throw new Error("container not booted");
    return new Promise((resolve) => {
      const c = spawn("nsenter", ["-t", String(this.leader), "-a", ...cmd], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      c.stdout!.on("data", (d) => (stdout += d));
      c.stderr!.on("data", (d) => (stderr += d));
      const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
      c.once("error", (e) => resolve({ code: -1, stdout, stderr: e.message }));
      c.once("close", (code) => {
        clearTimeout(t);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  /** `systemctl show` properties of a unit, as a record. */
  async show(unit: string, ...props: string[]): Promise<Record<string, string>> {
    const r = await this.run(["systemctl", "show", unit, ...props.map((p) => `--property=${p}`)]);
    return Object.fromEntries(
      r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  }

  /** Powers the container off (SIGKILL to nspawn after the deadline), then removes its namespace and cgroups. */
  async stop(timeoutMs = 20_000): Promise<void> {
    const n = this.nspawn;
    if (n && n.exitCode === null) {
      if (this.leader) await this.run(["systemctl", "poweroff", "--no-block"]);
      // SIGKILL to the container's PID 1 ends its whole pid namespace (nspawn then exits);
      // to nspawn alone it would leave the container running.
      const t = setTimeout(() => {
        try {
          process.kill(this.leader || (n.pid as number), "SIGKILL");
        } catch {
          n.kill("SIGKILL");
        }
      }, timeoutMs);
      await this.exited;
      clearTimeout(t);
    }
    spawnSync("ip", ["netns", "del", this.o.name]);
    for (const c of this.cgroups) removeCgroup(c);
  }
}

function readIfThere(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return ""; // exited meanwhile
  }
}

function must(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message}`);
}

/** rmdir a cgroup and the ones the container's systemd made below it (deepest first). */
function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroup(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // still populated (a process left): the next run's name is the same; it is reused
  }
}
