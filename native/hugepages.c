// Transparent huge pages for a WebAssembly memory (docs/engine.md, "Huge pages").
// V8 reserves a wasm32 memory's whole address range (4 GiB and its guard region) at
// creation, PROT_NONE, and makes pages accessible with mprotect as the memory grows; it
// never madvises it, and with the kernel's THP mode `madvise` the engine's tables (about
// 1 GB at 10M mappings) are then backed by 4 KiB pages: nearly every random access is
// also a TLB miss. madvise(MADV_HUGEPAGE) only marks the mappings (VM_HUGEPAGE): a page
// faulted in later gets a 2 MiB page; pages already present are left to khugepaged. So
// the host advises the reservation before the engine first touches its tables; the mark
// stays on the parts mprotect later splits off when the memory grows.
//
// hugePages(buffer, length) → [base address, bytes advised, errno]: advises
// [base, base + length) clipped to the anonymous mappings that continue from the
// buffer's first byte without a gap (so a reservation smaller than `length` never marks
// a neighbour that is not anonymous memory: a file, a stack, a hole). errno 0: done.
// length 0 advises nothing (the base alone: the host reads /proc/self/smaps for it).
#include "udp_batch.h"
#include <stdio.h>
#include <sys/mman.h>

// The end of the run of anonymous mappings, without gaps, that starts at or before `from`
// (0 when `from` is not mapped or /proc/self/maps cannot be read).
static uintptr_t anonymous_run_end(uintptr_t from, uintptr_t limit) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  uintptr_t end = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, inode;
    char path[2] = "";
    // start-end perms offset dev inode [path]
    if (sscanf(line, "%lx-%lx %*s %*s %*s %lu %1s", &lo, &hi, &inode, path) < 3) continue;
    int anonymous = inode == 0 && path[0] == '\0';
    if (end == 0) {
      if (from >= lo && from < hi && anonymous) end = hi;
    } else if (lo == end && anonymous) {
      end = hi;
    } else {
      break;
    }
    if (end >= limit) break;
  }
  fclose(f);
  return end < limit ? end : limit;
}

napi_value huge_pages(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  void *data = NULL;
  size_t bytes = 0;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &bytes) != napi_ok) {
    napi_throw_type_error(env, NULL, "hugePages: an ArrayBuffer (a WebAssembly.Memory's buffer) expected");
    return NULL;
  }
  double want = num(env, argv[1]);
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t base = (uintptr_t)data;
  int err = 0;
  size_t advised = 0;
  if (want == 0) {
    // the base only
  } else if (data == NULL || want < 1 || base % (uintptr_t)page != 0) {
    err = EINVAL;
  } else {
    uintptr_t end = anonymous_run_end(base, base + (uintptr_t)want);
    if (end <= base) err = ENOMEM;
    else if (madvise(data, end - base, MADV_HUGEPAGE) != 0) err = errno;
    else advised = end - base;
  }
  napi_value out, v;
  CHECK(napi_create_array_with_length(env, 3, &out));
  double values[3] = {(double)base, (double)advised, (double)err};
  for (uint32_t i = 0; i < 3; i++) {
    CHECK(napi_create_double(env, values[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  (void)bytes;
  return out;
}
