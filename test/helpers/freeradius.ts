// A real FreeRADIUS (Debian `freeradius`, installed by scripts/test-deps.sh) for the PCP
// authentication tests: EAP-TTLS (RFC 5281) with inner PAP, the EAP server RFC 7652's
// authenticator relays to. Everything it needs is generated at test time in a scratch
// directory — a test CA and server certificate (openssl), radiusd.conf with one loopback
// listener, one client (127.0.0.1 with the given secret), the eap module and the users file —
// and the daemon runs in the foreground (-f) with -d pointing there: /etc/freeradius is never
// read or touched. `startFreeRadius` resolves once the daemon says "Ready to process requests".
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitForLine } from "./wait.js";

export const FREERADIUS = ["/usr/sbin/freeradius", "/usr/sbin/radiusd"].find((p) => existsSync(p)) ?? null;
export const EAPOL_TEST = ["/usr/bin/eapol_test", "/usr/sbin/eapol_test"].find((p) => existsSync(p)) ?? null;
/** Why the FreeRADIUS tests skip, or null when they can run. */
export const freeRadiusMissing = FREERADIUS ? null : "freeradius is not installed (scripts/test-deps.sh installs Debian's freeradius)";

export interface RadiusUser {
  name: string;
  password: string;
  /** Session-Timeout (RFC 2865 §5.27) in the Access-Accept, seconds. */
  sessionTimeoutS?: number;
}

export interface FreeRadiusOptions {
  /** UDP port on 127.0.0.1 (the authaaa range is 25200–25299). */
  port: number;
  users: RadiusUser[];
  /** The shared secret of the one client, 127.0.0.1 (default "testing123-pcpd"). */
  secret?: string;
  /** eap tls-config fragment_size (default 1000): the largest EAP-Request/TTLS packet it sends. */
  fragmentSize?: number;
  /**
   * Intermediate CAs between the test CA and the server certificate (default 0), all sent in
   * the server's Certificate message: a longer TLS flight, fragmented by EAP-TTLS.
   */
  intermediates?: number;
  /** EAP-TTLS asks the peer for a certificate (require_client_cert); `clientCert` is one, issued through the same intermediates. */
  requireClientCert?: boolean;
}

export interface FreeRadius {
  host: "127.0.0.1";
  port: number;
  secret: string;
  /** The test CA's certificate (PEM) the server certificate chains to. */
  caPem: string;
  /** The server certificate's subject common name. */
  serverName: string;
  /** With requireClientCert: a client certificate with its intermediates (PEM) and its key. */
  clientCert?: { cert: string; key: string };
  /** The generated configuration directory (-d). */
  dir: string;
  /** The daemon's process id (benchmarks read its CPU time). */
  pid: number;
  /** The last 20,000 characters the daemon printed (for failure messages). */
  output(): string;
  /** Every "Auth:" log line so far (log.auth = yes: one per Login OK / Login incorrect, inner and outer). */
  authLines(): string[];
  stop(): Promise<void>;
}

export const FREERADIUS_SERVER_NAME = "radius.pcpd.test";

/**
 * A test CA, `intermediates` CAs below it, and a server certificate (server.pem: the
 * certificate, then the intermediates) and a client certificate (client.pem, likewise) issued
 * by the last one (the client one only if asked), written to `dir`.
 */
function makeCertificates(dir: string, intermediates = 0, client = false): void {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  run(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=pcpd test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  /** A key and a certificate `name`.pem issued by `issuer` with the extensions `ext`. */
  const issue = (name: string, subject: string, issuer: string, ext: string) => {
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject);
    writeFileSync(join(dir, `${name}.ext`), ext);
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${issuer}.pem`,
      "-CAkey",
      `${issuer}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  };
  let issuer = "ca";
  const chain: string[] = [];
  for (let i = 1; i <= intermediates; i++) {
    issue(`int${i}`, `/CN=pcpd test intermediate CA ${i}`, issuer, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
    issuer = `int${i}`;
    chain.unshift(readFileSync(join(dir, `${issuer}.pem`), "utf8"));
  }
  issue(
    "server",
    `/CN=${FREERADIUS_SERVER_NAME}`,
    issuer,
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${FREERADIUS_SERVER_NAME}\n`,
  );
  if (client)
    issue("client", "/CN=pcp client", issuer, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n");
  for (const name of client ? ["server", "client"] : ["server"])
    writeFileSync(join(dir, `${name}.pem`), readFileSync(join(dir, `${name}.pem`), "utf8") + chain.join(""));
}

/** The users file (rlm_files): a Cleartext-Password per user, inner PAP checks it. */
function usersFile(users: RadiusUser[]): string {
  for (const u of users) {
    if (!/^[\w.@-]+$/.test(u.name) || /["\\\n]/.test(u.password)) throw new Error(`freeradius helper: unsupported user ${JSON.stringify(u.name)}`);
  }
  return users
    .map((u) => `${u.name}\tCleartext-Password := "${u.password}"${u.sessionTimeoutS !== undefined ? `\n\tSession-Timeout = ${u.sessionTimeoutS}` : ""}\n`)
    .join("\n");
}

function radiusdConf(dir: string, port: number, secret: string, fragmentSize: number, requireClientCert: boolean): string {
  return `# Generated by test/helpers/freeradius.ts for one test run.
prefix = /usr
exec_prefix = /usr
sysconfdir = ${dir}
localstatedir = ${dir}
sbindir = /usr/sbin
logdir = ${dir}
raddbdir = ${dir}
radacctdir = ${dir}
name = freeradius
confdir = ${dir}
modconfdir = ${dir}
certdir = ${dir}
cadir = ${dir}
run_dir = ${dir}
db_dir = ${dir}
libdir = /usr/lib/freeradius
pidfile = ${dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {
  destination = stdout
  colourise = no
  auth = yes
  auth_badpass = no
  auth_goodpass = no
}
security {
  allow_core_dumps = no
  max_attributes = 200
  # Rejects are answered at once: the tests wait for them.
  reject_delay = 0
  status_server = yes
}
proxy_requests = no
client pcpd {
  ipaddr = 127.0.0.1
  secret = "${secret}"
  require_message_authenticator = yes
  nas_type = other
}
thread pool {
  start_servers = 2
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 4
  max_requests_per_server = 0
}
modules {
  files {
    filename = ${dir}/users
  }
  pap {
    normalise = yes
  }
  eap {
    default_eap_type = ttls
    timer_expire = 60
    ignore_unknown_eap_types = no
    max_sessions = 4096
    tls-config tls-common {
      private_key_file = ${dir}/server.key
      certificate_file = ${dir}/server.pem
      ca_file = ${dir}/ca.pem
      fragment_size = ${fragmentSize}
      include_length = yes
      tls_min_version = "1.2"
      tls_max_version = "1.2"
      cipher_list = "DEFAULT"
      ecdh_curve = ""
      cache {
        enable = no
      }
    }
    # EAP-MD5 (no TLS, no keys): the benchmark's baseline for the relay's own cost.
    md5 {
    }
    ttls {
      tls = tls-common
      default_eap_type = md5
      copy_request_to_tunnel = no
      use_tunneled_reply = yes
      require_client_cert = ${requireClientCert ? "yes" : "no"}
      virtual_server = "inner-tunnel"
    }
  }
}
server default {
  listen {
    type = auth
    ipaddr = 127.0.0.1
    port = ${port}
  }
  authorize {
    eap {
      ok = return
    }
    files
  }
  authenticate {
    eap
  }
  post-auth {
    Post-Auth-Type REJECT {
      eap
    }
  }
}
server inner-tunnel {
  authorize {
    files
    pap
  }
  authenticate {
    Auth-Type PAP {
      pap
    }
  }
  post-auth {
    Post-Auth-Type REJECT {
    }
  }
}
`;
}

/** Generates a configuration in a scratch directory and starts FreeRADIUS on it. */
export async function startFreeRadius(options: FreeRadiusOptions): Promise<FreeRadius> {
  if (!FREERADIUS) throw new Error(freeRadiusMissing!);
  const secret = options.secret ?? "testing123-pcpd";
  const dir = mkdtempSync(join(tmpdir(), "pcpd-freeradius-"));
  mkdirSync(dir, { recursive: true });
  makeCertificates(dir, options.intermediates, options.requireClientCert);
  writeFileSync(join(dir, "users"), usersFile(options.users));
  // FreeRADIUS reads ${confdir}/dictionary after its own (/usr/share/freeradius): it must exist.
  writeFileSync(join(dir, "dictionary"), "# no local attributes\n");
  writeFileSync(join(dir, "radiusd.conf"), radiusdConf(dir, options.port, secret, options.fragmentSize ?? 1000, options.requireClientCert ?? false));
  // -f: foreground; -l stdout: the log on our pipe; -d: this directory only.
  const child: ChildProcess = spawn(FREERADIUS, ["-f", "-l", "stdout", "-d", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let partial = "";
  const authLines: string[] = [];
  child.stdout!.on("data", (c: Buffer) => {
    output = (output + c.toString()).slice(-20_000);
    const lines = (partial + c.toString()).split("\n");
    partial = lines.pop()!;
    for (const line of lines) if (line.includes(" Auth: ")) authLines.push(line);
  });
  child.stderr!.on("data", (c: Buffer) => {
    output = (output + c.toString()).slice(-20_000);
  });
  // A test run that dies without its afterAll must not leave the daemon holding the port.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      process.off("exit", killOnExit);
      resolve();
    }),
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([
      waitForLine(child.stdout!, /Ready to process requests/, { timeout: 20_000, message: () => output }),
      exited.then(() => {
        throw new Error(`freeradius exited during start-up: ${output}`);
      }),
    ]);
  } catch (error) {
    await stop();
    throw new Error(`freeradius did not start: ${(error as Error).message}\n${output}`);
  }
  return {
    host: "127.0.0.1",
    port: options.port,
    secret,
    caPem: readFileSync(join(dir, "ca.pem"), "utf8"),
    serverName: FREERADIUS_SERVER_NAME,
    clientCert: options.requireClientCert
      ? { cert: readFileSync(join(dir, "client.pem"), "utf8"), key: readFileSync(join(dir, "client.key"), "utf8") }
      : undefined,
    dir,
    pid: child.pid!,
    output: () => output,
    authLines: () => [...authLines],
    stop,
  };
}

export interface EapolTestResult {
  success: boolean;
  /** eapol_test compared the Accept's MS-MPPE keys with the MSK it derived itself: they agreed. */
  mppeKeysMatch: boolean;
  output: string;
}

/**
 * Runs `eapol_test` (Debian `eapoltest`, wpa_supplicant's test client) once: EAP-TTLS with
 * inner PAP against `radius` — the independent check of the generated configuration.
 */
export function runEapolTest(radius: FreeRadius, user: { name: string; password: string }): Promise<EapolTestResult> {
  if (!EAPOL_TEST) throw new Error("eapol_test is not installed (scripts/test-deps.sh installs Debian's eapoltest)");
  const dir = mkdtempSync(join(tmpdir(), "pcpd-eapol-"));
  writeFileSync(join(dir, "ca.pem"), radius.caPem);
  writeFileSync(
    join(dir, "eapol.conf"),
    `network={
  key_mgmt=WPA-EAP
  eap=TTLS
  identity="${user.name}"
  anonymous_identity="${user.name}"
  password="${user.password}"
  ca_cert="${join(dir, "ca.pem")}"
  domain_match="${radius.serverName}"
  phase1="tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_3=1"
  phase2="auth=PAP"
}
`,
  );
  return new Promise((resolve, reject) => {
    const child = spawn(EAPOL_TEST!, ["-c", join(dir, "eapol.conf"), "-a", radius.host, "-p", String(radius.port), "-s", radius.secret, "-t", "20"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      output += c.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      rmSync(dir, { recursive: true, force: true });
      const keys = output.match(/MPPE keys OK: (\d+)\s+mismatch: (\d+)/);
      resolve({ success: code === 0 && /^SUCCESS$/m.test(output), mppeKeysMatch: !!keys && keys[1] !== "0" && keys[2] === "0", output });
    });
  });
}
