// Latency histogram of the C load generators (bench/e2e/loadgen.c, bench/auth/tagload.c):
// one bucket per microsecond up to a second, the last bucket holds everything above.
#ifndef PCPD_BENCH_LATENCY_H
#define PCPD_BENCH_LATENCY_H
#include <stdint.h>

enum { HIST_US = 1000000 };
static uint32_t hist[HIST_US + 1];

static void record_latency(uint64_t ns) {
  uint64_t us = ns / 1000;
  hist[us < HIST_US ? us : HIST_US]++;
}

/** The p-quantile (0..1) of the recorded latencies, in µs. */
static double percentile(double p) {
  uint64_t total = 0, seen = 0;
  for (int i = 0; i <= HIST_US; i++) total += hist[i];
  if (total == 0) return 0;
  uint64_t want = (uint64_t)(p * (double)(total - 1)) + 1;
  for (int i = 0; i <= HIST_US; i++) {
    seen += hist[i];
    if (seen >= want) return i;
  }
  return HIST_US;
}
#endif
