import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Servers under test listen on ephemeral ports (listen.port 0), which pcp-server refuses
    // otherwise (src/config/checks.ts); child processes inherit it.
    env: { PCPD_TEST_EPHEMERAL_PORTS: "1" },
  },
});
