// The physical reference for the engine benchmarks (bench/engine-ab.bench.ts): what one
// core gets from random 64-byte lines over 1 GiB, in 4 KiB pages and in 2 MiB transparent
// huge pages, as the engine's refresh path would see it:
//   chase      dependent loads (each line holds the next line's index): one miss at a time,
//              the latency of one random line (TLB miss and page walk included);
//   prefetch   independent lines in batches of 256, the engine's staged scheme: first a
//              software prefetch of every line of the batch, then a read of each (as many
//              misses in flight as the core's line-fill buffers allow: its memory-level
//              parallelism). 1e9 / (3 × ns per line) is the refresh rate a path that needs
//              three random lines per refresh cannot beat on this core.
// Kept running by the bench: a line on stdin runs one slice of every case and prints one
// JSON line (ns per line), so the slices alternate with the engines' in the same rounds.
// Usage: memref [lines per slice]   (built by the bench: gcc -O2)
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define SIZE (1UL << 30)
#define LINE 64
#define LINES (SIZE / LINE)
#define HUGE (2UL << 20)
#define BATCH 256

static uint32_t *region(int huge) {
  // 2 MiB-aligned so every 2 MiB of it can be one huge page.
  uint8_t *raw = mmap(NULL, SIZE + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
  if (madvise(p, SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) perror("madvise");
  return (uint32_t *)p;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)rng;
}

// One random cycle through every line (Sattolo): line i holds the index of the next one.
static void link(uint32_t *m) {
  uint32_t *perm = malloc(LINES * sizeof(uint32_t));
  for (uint32_t i = 0; i < LINES; i++) perm[i] = i;
  for (uint32_t i = LINES - 1; i > 0; i--) {
    uint32_t j = next_random() % i, t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (uint32_t i = 0; i < LINES; i++) m[(size_t)perm[i] * (LINE / 4)] = perm[(i + 1) % LINES];
  free(perm);
}

static long huge_kib(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[256];
  int in = 0;
  long kib = 0;
  uintptr_t a = (uintptr_t)p;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) in = a + SIZE > lo && a < hi;
    else if (in && strncmp(line, "AnonHugePages:", 14) == 0) kib += atol(line + 14);
  }
  if (f) fclose(f);
  return kib;
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); // CPU time, as the engines' slices: a shared machine deschedules
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static volatile uint64_t sink;
static uint32_t chase_at[2];
static uint32_t stride_at[2];

static double chase(uint32_t *m, int which, long n) {
  uint32_t p = chase_at[which];
  double t = now_ns();
  for (long i = 0; i < n; i++) p = m[(size_t)p * (LINE / 4)];
  t = now_ns() - t;
  chase_at[which] = p;
  return t / n;
}

static double prefetched(uint32_t *m, int which, long n) {
  uint32_t at[BATCH];
  uint32_t p = stride_at[which];
  uint64_t acc = 0;
  double t = now_ns();
  for (long done = 0; done < n; done += BATCH) {
    for (int i = 0; i < BATCH; i++) {
      p = p * 1664525u + 1013904223u; // addresses computed, no load depends on another
      at[i] = p % LINES;
      __builtin_prefetch(&m[(size_t)at[i] * (LINE / 4)]);
    }
    for (int i = 0; i < BATCH; i++) acc += m[(size_t)at[i] * (LINE / 4) + 1];
  }
  t = now_ns() - t;
  stride_at[which] = p;
  sink += acc;
  return t / n;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1L << 20;
  uint32_t *m[2] = {region(0), region(1)};
  for (int k = 0; k < 2; k++) link(m[k]);
  printf("{\"ready\":true,\"hugePageKiB\":[%ld,%ld]}\n", huge_kib(m[0]), huge_kib(m[1]));
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    double r[4];
    for (int k = 0; k < 2; k++) {
      r[2 * k] = chase(m[k], k, n / 8);
      r[2 * k + 1] = prefetched(m[k], k, n);
    }
    printf("{\"chase4k\":%.3f,\"prefetch4k\":%.3f,\"chaseHuge\":%.3f,\"prefetchHuge\":%.3f}\n", r[0], r[1], r[2], r[3]);
    fflush(stdout);
  }
  return 0;
}
