// Forwarding records for the dataplane tests (one mapping as a backend receives it): a TCP
// MAP forwarded both ways, IPv4 or IPv6, with the fields a test changes overridden.
import type { Forwarding } from "../../src/dataplane/ops.js";

export const forwarding = (over: Partial<Forwarding> = {}): Forwarding => ({
  protocol: 6,
  family: 4,
  external: { address: "198.51.100.1", port: 1234 },
  internal: { address: "10.0.0.2", port: 8080 },
  inbound: true,
  outbound: true,
  filters: [],
  ...over,
});

export const forwarding6 = (over: Partial<Forwarding> = {}): Forwarding =>
  forwarding({ family: 6, external: { address: "2001:db8::100", port: 1234 }, internal: { address: "2001:db8:1::2", port: 8080 }, ...over });
