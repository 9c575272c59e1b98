// A small in-test EAP method for the PCP side's unit tests (the end-to-end tests use
// FreeRADIUS and EAP-TTLS): MD5-Challenge framing (RFC 3748 §5.4) with an MSK derived from
// the password and the challenge, so both sides hold the same key only when the password
// matches. The relay answers like the RADIUS relay: challenge, accept, reject, unreachable.
import { createHash, randomBytes } from "node:crypto";
import type { AaaVerdict, EapPeer, EapRelay } from "../../../src/auth/pa-types.js";

const md5 = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash("md5")).digest();
const mskOf = (password: string, challenge: Uint8Array) => createHash("sha512").update(password).update(challenge).digest();

export class ToyRelay implements EapRelay {
  private readonly challenges = new Map<string, { identity: string; challenge: Buffer; id: number }>();
  exchanges = 0;
  unreachable = false;
  forgotten = 0;
  constructor(
    private readonly users: Record<string, string>,
    private readonly sessionTimeoutS?: number,
    /** Octets of Name after the challenge Value (RFC 3748 §5.4): long EAP requests. */
    private readonly nameLength = 0,
  ) {}

  async exchange(session: string, eap: Uint8Array): Promise<AaaVerdict> {
    this.exchanges++;
    await new Promise((r) => setImmediate(r)); // asynchronous like the RADIUS round trip
    if (this.unreachable) return { kind: "unreachable", reason: "test: AAA down" };
    const id = eap[1];
    if (eap[0] === 2 && eap[4] === 1) {
      const challenge = randomBytes(16);
      this.challenges.set(session, { identity: Buffer.from(eap.subarray(5)).toString(), challenge, id: (id + 1) & 0xff });
      const req = Buffer.concat([Buffer.from([1, (id + 1) & 0xff, 0, 0, 4, 16]), challenge, Buffer.alloc(this.nameLength, "s")]);
      req.writeUInt16BE(req.length, 2);
      return { kind: "challenge", eap: req };
    }
    const c = this.challenges.get(session);
    if (!c || eap[0] !== 2 || eap[4] !== 4) return { kind: "reject", eap: Buffer.from([4, id, 0, 4]) };
    const password = this.users[c.identity];
    const value = Buffer.from(eap.subarray(6, 22));
    if (password === undefined || !md5(Buffer.from([c.id]), Buffer.from(password), c.challenge).equals(value))
      return { kind: "reject", eap: Buffer.from([4, id, 0, 4]) };
    return { kind: "accept", eap: Buffer.from([3, id, 0, 4]), msk: mskOf(password, c.challenge), sessionTimeoutS: this.sessionTimeoutS ?? null };
  }

  forget(session: string): void {
    this.forgotten++;
    this.challenges.delete(session);
  }

  close(): void {}
}

export class ToyPeer implements EapPeer {
  msk: Uint8Array | undefined;
  constructor(
    private readonly identity: string,
    private readonly password: string,
    /** Octets of Name after the response Value (RFC 3748 §5.4): long EAP responses. */
    private readonly nameLength = 0,
  ) {}

  async receive(eap: Uint8Array): Promise<Uint8Array | null> {
    const id = eap[1];
    if (eap[0] === 1 && eap[4] === 1) {
      const name = Buffer.from(this.identity);
      const out = Buffer.concat([Buffer.from([2, id, 0, 0, 1]), name]);
      out.writeUInt16BE(out.length, 2);
      return out;
    }
    if (eap[0] === 1 && eap[4] === 4) {
      const challenge = Buffer.from(eap.subarray(6, 22));
      this.msk = mskOf(this.password, challenge);
      const out = Buffer.concat([
        Buffer.from([2, id, 0, 0, 4, 16]),
        md5(Buffer.from([id]), Buffer.from(this.password), challenge),
        Buffer.alloc(this.nameLength, "p"),
      ]);
      out.writeUInt16BE(out.length, 2);
      return out;
    }
    return null; // Success / Failure
  }
}
