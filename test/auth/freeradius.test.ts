// The generated FreeRADIUS configuration (test/helpers/freeradius.ts) checked independently of
// the project's own EAP code: wpa_supplicant's eapol_test runs EAP-TTLS/PAP against it and
// compares the Access-Accept's MS-MPPE keys with the MSK it derived itself.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EAPOL_TEST, type FreeRadius, freeRadiusMissing, runEapolTest, startFreeRadius } from "../helpers/freeradius.js";

const skip = freeRadiusMissing ?? (EAPOL_TEST ? null : "eapol_test is not installed (scripts/test-deps.sh installs Debian's eapoltest)");
if (skip) console.warn(`skipping: ${skip}`);

describe.skipIf(skip)("the test AAA server, checked with eapol_test", () => {
  let radius: FreeRadius;
  beforeAll(async () => {
    radius = await startFreeRadius({ port: 25200, users: [{ name: "alice", password: "wonderland" }], secret: "eapol-check-secret" });
  });
  afterAll(async () => {
    await radius?.stop();
  });

  it("accepts EAP-TTLS/PAP with the right password, with MS-MPPE keys equal to the peer's MSK", async () => {
    const result = await runEapolTest(radius, { name: "alice", password: "wonderland" });
    expect(result.success, result.output.slice(-4000)).toBe(true);
    expect(result.mppeKeysMatch, result.output.slice(-4000)).toBe(true);
  });

  it("rejects a wrong password and an unknown user", async () => {
    expect((await runEapolTest(radius, { name: "alice", password: "not-wonderland" })).success).toBe(false);
    expect((await runEapolTest(radius, { name: "mallory", password: "wonderland" })).success).toBe(false);
  });
});
