/* The JIT and its cache on the GPU, and the device prep kernel's checks:
 *  - a second call with the same shape hits the memory cache (no compile);
 *  - a fresh context and a new process (this binary, exec'ed with --child)
 *    over the same cache directory hit the disk cache;
 *  - damaged disk entries are counted, rebuilt and republished;
 *  - threads racing on a kernel's first use all get a working kernel;
 *  - malformed device offsets are caught by the prep kernel: out and lse stay
 *    untouched and jsdpa_context_check_device_errors reports (and clears) it. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define KERNEL_SUFFIX ".jsdpa-kernel"

static testutil_case_t* make_case(jsdpa_dtype_t dtype, int64_t head_dim, int64_t batch,
                                  jsdpa_index_type_t offsets_type) {
  int64_t lens[16];
  for (int64_t b = 0; b < batch; ++b) lens[b] = testutil_rand_int(1, 40);
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = batch;
  cfg.q_lens = lens;
  cfg.heads = 4;
  cfg.kv_heads = 2;
  cfg.head_dim = head_dim;
  cfg.dtype = dtype;
  cfg.offsets_type = offsets_type;
  cfg.with_lse = true;
  return testutil_case_create(&cfg);
}

static jsdpa_forward_options_t math_options(void) {
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.backend = JSDPA_BACKEND_MATH;
  o.is_causal = true;
  return o;
}

/* One checked math call on a fresh random case of the shape fp16, d 64, causal. */
static bool checked_call(jsdpa_context_t* ctx, const char* label) {
  testutil_case_t* c = make_case(JSDPA_DTYPE_FP16, 64, 4, JSDPA_INDEX_INT32);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o = math_options();
  bool ok = CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse)) &&
            CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL));
  if (ok) {
    testutil_device_case_download(c, &d);
    ok = testutil_case_check(label, c, &o, 0);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
  return ok;
}

static jsdpa_context_t* open_context(const char* cache_dir) {
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = cache_dir;
  co.verbosity = 1; /* the cold compiles say so */
  jsdpa_context_t* ctx = NULL;
  if (!CHECK_OK(jsdpa_context_create(&co, &ctx))) exit(testutil_finish());
  return ctx;
}

static jsdpa_cache_stats_t stats_of(jsdpa_context_t* ctx) {
  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(ctx, &st);
  printf(
      "  stats: memory hits %lld, disk hits %lld, compiles %lld, disk writes %lld, corrupt "
      "%lld\n",
      (long long)st.memory_hits, (long long)st.disk_hits, (long long)st.compiles,
      (long long)st.disk_writes, (long long)st.corrupt_entries);
  return st;
}

/* --child DIR: a new process over a warm cache directory. */
static int child_main(const char* dir) {
  jsdpa_context_t* ctx = open_context(dir);
  checked_call(ctx, "child process");
  jsdpa_cache_stats_t st = stats_of(ctx);
  CHECK(st.compiles == 0 && st.disk_hits == 2,
        "new process: %lld compiles, %lld disk hits (want 0 and 2: prep + math)",
        (long long)st.compiles, (long long)st.disk_hits);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}

static int for_each_entry(const char* dir, void (*fn)(const char* path)) {
  int n = 0;
  DIR* d = opendir(dir);
  struct dirent* e;
  while (d && (e = readdir(d))) {
    size_t len = strlen(e->d_name), suffix = strlen(KERNEL_SUFFIX);
    if (len <= suffix || strcmp(e->d_name + len - suffix, KERNEL_SUFFIX)) continue;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (fn) fn(path);
    ++n;
  }
  if (d) closedir(d);
  return n;
}

static void flip_last_byte(const char* path) {
  FILE* f = fopen(path, "r+b");
  if (!CHECK(f != NULL, "open %s", path)) return;
  fseek(f, -1, SEEK_END);
  int c = fgetc(f);
  fseek(f, -1, SEEK_END);
  fputc(c ^ 0x20, f);
  fclose(f);
}

static void remove_file(const char* path) {
  unlink(path);
}

static void test_cache_levels(const char* self) {
  char dir[] = "/tmp/jsdpa-test-jit-XXXXXX";
  if (!CHECK(mkdtemp(dir) != NULL, "mkdtemp")) return;

  printf("cold context over an empty cache directory %s\n", dir);
  jsdpa_context_t* ctx = open_context(dir);
  checked_call(ctx, "cold");
  jsdpa_cache_stats_t s1 = stats_of(ctx);
  CHECK(s1.disk_enabled, "the disk cache is off");
  CHECK(s1.compiles == 2 && s1.disk_writes == 2 && s1.disk_hits == 0,
        "cold: %lld compiles, %lld writes, %lld disk hits (want 2, 2, 0)", (long long)s1.compiles,
        (long long)s1.disk_writes, (long long)s1.disk_hits);
  CHECK(s1.compile_ms > 0, "compile time %.3f ms", s1.compile_ms);
  CHECK(for_each_entry(dir, NULL) == 2, "%d entries on disk (want 2)", for_each_entry(dir, NULL));

  checked_call(ctx, "warm");
  jsdpa_cache_stats_t s2 = stats_of(ctx);
  CHECK(s2.compiles == s1.compiles && s2.memory_hits >= s1.memory_hits + 2 &&
            s2.disk_hits == s1.disk_hits,
        "second call: compiles %lld -> %lld, memory hits %lld -> %lld", (long long)s1.compiles,
        (long long)s2.compiles, (long long)s1.memory_hits, (long long)s2.memory_hits);
  jsdpa_context_destroy(ctx);

  printf("fresh context, same directory\n");
  ctx = open_context(dir);
  checked_call(ctx, "fresh context");
  jsdpa_cache_stats_t s3 = stats_of(ctx);
  CHECK(s3.compiles == 0 && s3.disk_hits == 2, "fresh context: %lld compiles, %lld disk hits",
        (long long)s3.compiles, (long long)s3.disk_hits);
  jsdpa_context_destroy(ctx);

  printf("new process, same directory\n");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execl(self, self, "--child", dir, (char*)NULL);
    perror("execl");
    _exit(127);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the child process failed (status 0x%x)", status);

  printf("damaged entries are rebuilt\n");
  for_each_entry(dir, flip_last_byte);
  ctx = open_context(dir);
  checked_call(ctx, "after damage");
  jsdpa_cache_stats_t s4 = stats_of(ctx);
  CHECK(s4.corrupt_entries == 2 && s4.compiles == 2 && s4.disk_writes == 2,
        "damaged: %lld corrupt, %lld compiles, %lld writes (want 2 each)",
        (long long)s4.corrupt_entries, (long long)s4.compiles, (long long)s4.disk_writes);
  jsdpa_context_destroy(ctx);
  ctx = open_context(dir);
  checked_call(ctx, "after rebuild");
  jsdpa_cache_stats_t s5 = stats_of(ctx);
  CHECK(s5.disk_hits == 2 && s5.corrupt_entries == 0, "rebuilt entries: %lld disk hits",
        (long long)s5.disk_hits);
  jsdpa_context_destroy(ctx);

  for_each_entry(dir, remove_file);
  CHECK(rmdir(dir) == 0, "%s held more than the entries (temp files?)", dir);
}

/* ------------------------------------------------------------ racing threads */

typedef struct race_arg_s {
  jsdpa_context_t* ctx;
  testutil_case_t* c;
  testutil_device_case_t d;
  jsdpa_status_t status;
} race_arg_t;

static void* race_thread(void* p) {
  race_arg_t* a = p;
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.backend = JSDPA_BACKEND_MATH;
  a->status = jsdpa_forward(a->ctx, &o, &a->d.q, &a->d.k, &a->d.v, &a->d.out, a->d.lse);
  return NULL;
}

static void test_racing_threads(void) {
  enum { threads = 4 };
  printf("%d threads race on a new kernel's first use (memory cache only)\n", threads);
  jsdpa_context_t* ctx = open_context("");
  race_arg_t args[threads];
  pthread_t tids[threads];
  for (int i = 0; i < threads; ++i) {
    args[i].ctx = ctx;
    args[i].c = make_case(JSDPA_DTYPE_BF16, 80, 3, JSDPA_INDEX_INT64);
    testutil_device_case_upload(args[i].c, i % 2 == 0, &args[i].d);
  }
  for (int i = 0; i < threads; ++i) pthread_create(&tids[i], NULL, race_thread, &args[i]);
  for (int i = 0; i < threads; ++i) pthread_join(tids[i], NULL);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  for (int i = 0; i < threads; ++i) {
    if (CHECK_OK(args[i].status)) {
      testutil_device_case_download(args[i].c, &args[i].d);
      testutil_case_check("racing thread", args[i].c, &o, 0);
    }
    testutil_device_case_free(&args[i].d);
    testutil_case_destroy(args[i].c);
  }
  CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL));
  jsdpa_cache_stats_t st = stats_of(ctx);
  CHECK(st.compiles >= 2 && st.compiles <= 2 * threads, "%lld compiles", (long long)st.compiles);
  jsdpa_context_destroy(ctx);
}

/* ------------------------------------------------------------ malformed device offsets */

typedef struct bad_offsets_s {
  const char* name;
  bool kv;            /* damage the kv offsets instead of the q offsets */
  int kind;           /* 0 decrease, 1 start, 2 end, 3 int64 value that wraps in int32 */
  const char* expect; /* in the message */
} bad_offsets_t;

static bool all_bytes(const void* data, size_t n, uint8_t value) {
  const uint8_t* p = data;
  for (size_t i = 0; i < n; ++i)
    if (p[i] != value) return false;
  return true;
}

static void test_bad_device_offsets(void) {
  static const bad_offsets_t cases[] = {
      {"q decrease", false, 0, "q.offsets decrease"}, {"q start", false, 1, "q.offsets[0]"},
      {"q end", false, 2, "q.offsets[batch]"},        {"q int64 wrap", false, 3, "q.offsets"},
      {"kv decrease", true, 0, "k.offsets decrease"}, {"kv end", true, 2, "k.offsets[batch]"},
  };
  jsdpa_context_t* ctx = open_context("");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const bad_offsets_t* bc = &cases[i];
    const bool is64 = bc->kind == 3 || testutil_rand_int(0, 1);
    testutil_case_t* c =
        make_case(JSDPA_DTYPE_FP16, 64, 4, is64 ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32);
    testutil_device_case_t d;
    testutil_device_case_upload(c, true, &d);

    /* Damage the device copy only: the host-side sizes stay consistent, so
     * nothing but the prep kernel can notice. */
    int64_t off[5];
    const void* src = bc->kv ? c->kv_offsets : c->q_offsets;
    const int64_t total = bc->kv ? c->total_kv : c->total_q;
    for (int b = 0; b <= 4; ++b)
      off[b] = is64 ? ((const int64_t*)src)[b] : ((const int32_t*)src)[b];
    switch (bc->kind) {
      case 0: off[2] = off[1] - 1; break;
      case 1: off[0] = 1; break;
      case 2: off[4] = total - 1; break;
      case 3: off[2] = off[2] + ((int64_t)1 << 32); break;
    }
    uint8_t bytes[5 * 8];
    for (int b = 0; b <= 4; ++b) {
      if (is64)
        memcpy(bytes + 8 * b, &off[b], 8);
      else {
        int32_t v = (int32_t)off[b];
        memcpy(bytes + 4 * b, &v, 4);
      }
    }
    void* dst = bc->kv ? d.kv_offsets : d.q_offsets;
    void* staging = testutil_to_device(bytes, is64 ? 40 : 20);
    const jsdpa_cuda_driver_t* cu = jsdpa_cuda_driver(NULL);
    CHECK(cu->cuMemcpyDtoD((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)staging,
                           is64 ? 40 : 20) == CUDA_SUCCESS,
          "copy the damaged offsets");
    testutil_device_free(staging);

    testutil_device_case_poison(c, &d);
    jsdpa_forward_options_t o = math_options();
    CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse));
    CHECK_STATUS(jsdpa_context_check_device_errors(ctx, NULL), JSDPA_STATUS_INVALID_ARGUMENT,
                 bc->expect);
    CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL)); /* reported once, then cleared */
    testutil_device_case_download(c, &d);
    CHECK(all_bytes(c->out_buffer, c->out_bytes, 0xff), "%s: out was written", bc->name);
    CHECK(all_bytes(c->lse, sizeof(float) * (size_t)(c->total_q * c->config.heads), 0xff),
          "%s: lse was written", bc->name);
    printf("  %s: caught on the device, out and lse untouched\n", bc->name);
    testutil_device_case_free(&d);
    testutil_case_destroy(c);
  }
  /* The context works normally afterwards. */
  checked_call(ctx, "after bad offsets");
  jsdpa_context_destroy(ctx);
}

int main(int argc, char** argv) {
  testutil_init(argv[0]);
  testutil_require_gpu();
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (!CHECK(n > 0, "readlink /proc/self/exe")) return testutil_finish();
  self[n] = '\0';
  test_cache_levels(self);
  test_racing_threads();
  test_bad_device_offsets();
  return testutil_finish();
}
