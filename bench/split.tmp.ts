import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { buildLoadgen, ECHO_KEYS, populate, root, startServer, refreshRun, withEcho, type Settings } from "./e2e/harness.js";
const TICK = 100;
function threads(pid: number) {
  const m = new Map<string, [number, number]>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    m.set(`${tid}:${name}`, [Number(f[11]) / TICK, Number(f[12]) / TICK]);
  }
  return m;
}
function split(pid: number) {
  let u = 0,
    s = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    u += Number(f[11]);
    s += Number(f[12]);
  }
  return { u: u / TICK, s: s / TICK };
}
const settings = (a: string): Settings => ({ listen: [a], window: 128, seconds: Number(process.env.SECS ?? 5), repeat: 1 });
buildLoadgen();
const ECHO_C = join(root, "build", "e2e-echo-mmsg");
execFileSync("gcc", ["-O2", "-pthread", "-o", ECHO_C, join(root, "bench", "e2e", "echo-mmsg.c")]);
const small = Number(process.env.SMALL ?? 1000);
const srv = await startServer(["127.0.0.26"], small, { name: "split", env: process.env.SRV_ENV ? Object.fromEntries([process.env.SRV_ENV.split("=")]) : {} });
try {
  await srv.step(populate(settings("127.0.0.26"), small));
  console.log(
    readFileSync(`/proc/${srv.pid}/smaps_rollup`, "utf8")
      .split("\n")
      .filter((l) => /Rss|AnonHuge/.test(l))
      .join("; "),
  );
  await withEcho("echo", [ECHO_C], settings("127.0.0.20"), async (echoPid) => {
    for (let r = 0; r < Number(process.env.ROUNDS ?? 3); r++) {
      for (const [name, pid, addr, mode, keys] of [
        ["echo", echoPid, "127.0.0.20", "echo", ECHO_KEYS],
        ["server", srv.pid, "127.0.0.26", "run", small],
      ] as const) {
        const a = split(pid);
        const ta = threads(pid);
        const run = refreshRun(settings(addr), mode, keys);
        if (process.env.PERF && r === 0) {
          await new Promise((ok) => setTimeout(ok, 1000));
          const busiest = [...threads(pid)].sort((x, y) => y[1][0] + y[1][1] - x[1][0] - x[1][1])[0][0].split(":")[0];
          execFileSync(
            "perf",
            process.env.PERF === "stat"
              ? [
                  "stat",
                  "-o",
                  `/tmp/perfstat-${name}.txt`,
                  "-e",
                  "syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl,context-switches",
                  name === "echo" ? `-p` : `-t`,
                  name === "echo" ? String(pid) : busiest,
                  "--",
                  "sleep",
                  "2",
                ]
              : [
                  "record",
                  "-q",
                  "-g",
                  name === "echo" ? `-p` : `-t`,
                  name === "echo" ? String(pid) : busiest,
                  "-o",
                  `/tmp/perf-${name}.data`,
                  "--",
                  "sleep",
                  "2",
                ],
            { stdio: "ignore" },
          );
        }
        const res = await run;
        const b = split(pid);
        const tb = threads(pid);
        if (name === "server")
          for (const [k, v] of tb) {
            const o = ta.get(k) ?? [0, 0];
            const du = v[0] - o[0],
              ds = v[1] - o[1];
            if (du + ds > 0.02) console.log(`   ${k} user ${du.toFixed(2)} sys ${ds.toFixed(2)}`);
          }
        const us = (x: number) => ((x * 1e6) / res.ok).toFixed(2);
        console.log(
          `${name}: ${Math.round(res.okPerSecond)} req/s user ${us(b.u - a.u)} sys ${us(b.s - a.s)} µs/req loadgen cpu ${((res.cpuSeconds * 1e6) / res.ok).toFixed(2)}`,
        );
      }
    }
  });
} finally {
  await srv.stop();
}
