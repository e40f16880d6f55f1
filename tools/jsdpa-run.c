/*
 * jsdpa-run — the main job: one jagged attention on the best available backend,
 * checked against the float64 cpu oracle.
 *
 * Builds a jagged batch (default: the `mixed` workload of bench/workloads.yaml;
 * on a machine without a GPU the lengths are divided by 16 and 4 heads are used,
 * so the cpu backend finishes in seconds), asks the library which backend runs
 * it and why the others cannot, runs it cold (compile or cache load) and warm
 * (CUDA events on the GPU, wall clock on the cpu), and compares the output with
 * a float64 reference under the 2x rule: the error must be at most twice that
 * of a plain same-precision implementation (the cpu backend with fp32
 * accumulation) plus one unit of the dtype's precision.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda_dl.h"
#include "element.h"
#include "jsdpa.h"
#include "toolutil.h"

/* ------------------------------------------------------------ workloads */

/* The canonical batches, copied from bench/workloads.yaml (lengths drawn once
 * with Python random.Random(20261125)); self-attention, kv lengths = q lengths. */
static const int workload_long[] = {7430, 8017, 589,  3092, 4220, 5105, 2518, 814,
                                    4781, 3761, 1999, 5991, 4442, 6776, 1523, 2947};
static const int workload_mixed[] = {
    1993, 1342, 990,  1789, 1602, 174,  1847, 1316, 1911, 1807, 1363, 1613, 701,  1832, 1372, 1813,
    1584, 152,  115,  1328, 647,  1937, 1548, 1407, 1222, 426,  1334, 232,  558,  630,  955,  1430,
    732,  1660, 559,  823,  824,  1492, 612,  1605, 1274, 1673, 734,  103,  1724, 1602, 1615, 728,
    1374, 1327, 1557, 966,  866,  1011, 310,  1506, 974,  372,  529,  912,  962,  470,  1280, 960};
static const int workload_short[] = {
    28,  172, 249, 252, 240, 204, 181, 66,  93,  141, 34,  47,  46,  153, 188, 119, 244, 192, 230,
    250, 153, 63,  164, 220, 96,  160, 194, 182, 129, 66,  135, 167, 251, 88,  23,  194, 20,  61,
    34,  96,  45,  215, 80,  235, 147, 109, 85,  222, 121, 123, 212, 33,  76,  192, 78,  107, 248,
    120, 131, 139, 208, 196, 172, 31,  28,  225, 211, 156, 45,  166, 176, 59,  213, 197, 72,  138,
    86,  165, 99,  43,  17,  124, 186, 250, 170, 77,  79,  64,  28,  97,  160, 28,  171, 25,  22,
    17,  163, 139, 142, 156, 42,  25,  216, 227, 242, 181, 215, 251, 24,  178, 92,  65,  86,  168,
    107, 163, 110, 100, 225, 216, 40,  217, 25,  195, 65,  135, 113, 186, 56,  234, 68,  151, 229,
    168, 98,  200, 122, 159, 225, 233, 190, 115, 182, 123, 232, 136, 141, 122, 206, 232, 248, 133,
    97,  163, 178, 17,  218, 231, 246, 186, 171, 47,  203, 111, 216, 241, 242, 197, 189, 209, 47,
    22,  186, 105, 256, 161, 29,  116, 162, 219, 128, 247, 157, 58,  123, 56,  157, 114, 147, 215,
    231, 83,  105, 190, 161, 60,  79,  147, 147, 50,  142, 81,  97,  30,  205, 191, 176, 118, 164,
    78,  141, 227, 128, 205, 217, 113, 253, 230, 96,  128, 183, 166, 219, 207, 68,  99,  21,  98,
    134, 20,  47,  240, 155, 198, 55,  173, 82,  138, 205, 185, 90,  225, 37,  116, 144, 31,  55,
    18,  174, 94,  137, 201, 255, 111, 103, 178, 31,  167, 171, 38,  108, 170, 231, 219, 102, 192,
    179, 64,  83,  143, 50,  185, 67,  122, 245, 32,  157, 115, 184, 227, 48,  43,  140, 194, 175,
    208, 138, 69,  117, 231, 34,  179, 54,  72,  73,  100, 65,  240, 41,  39,  69,  101, 138, 227,
    86,  145, 191, 204, 237, 212, 171, 241, 222, 241, 203, 232, 45,  92,  204, 121, 222, 135, 206,
    109, 144, 64,  245, 38,  86,  162, 103, 148, 108, 127, 54,  238, 179, 152, 43,  160, 38,  28,
    101, 144, 151, 71,  18,  222, 75,  109, 30,  236, 182, 81,  19,  168, 95,  70,  246, 129, 238,
    142, 108, 19,  166, 252, 56,  222, 31,  106, 40,  161, 183, 101, 211, 179, 36,  151, 26,  251,
    150, 105, 41,  146, 229, 125, 71,  181, 103, 134, 56,  182, 77,  115, 52,  137, 72,  29,  174,
    250, 114, 184, 205, 181, 106, 109, 242, 60,  30,  125, 237, 222, 185, 62,  140, 87,  239, 211,
    222, 231, 31,  80,  219, 179, 234, 256, 89,  226, 49,  170, 191, 222, 138, 218, 78,  180, 224,
    219, 218, 181, 78,  58,  142, 112, 247, 218, 206, 227, 129, 88,  79,  121, 106, 234, 183, 162,
    139, 45,  18,  82,  103, 47,  220, 214, 210, 185, 143, 155, 155, 152, 181, 94,  217, 157, 180,
    138, 244, 94,  211, 84,  214, 18,  108, 116, 94,  175, 140, 189, 63,  177, 135, 49,  103, 206,
    240, 186, 256, 22,  104, 115, 59,  105, 192, 233, 103, 250, 59,  67,  254, 33,  207, 184};

typedef struct workload_s {
  const char* name;
  const int* lengths;
  int count;
} workload_t;

#define WORKLOAD(n, a) \
  { n, a, (int)(sizeof(a) / sizeof(a[0])) }
static const workload_t workloads[] = {
    WORKLOAD("long", workload_long),
    WORKLOAD("mixed", workload_mixed),
    WORKLOAD("short", workload_short),
};

/* ------------------------------------------------------------ options */

typedef struct args_s {
  const char* workload;
  int64_t* lengths; /* --lengths, or NULL */
  int64_t batch;
  int64_t heads, kv_heads, head_dim;
  jsdpa_dtype_t dtype;
  bool causal;
  jsdpa_backend_t backend;
  uint64_t seed;
  bool heads_set;
} args_t;

static void usage(FILE* f) {
  fprintf(f,
          "usage: jsdpa-run [options]\n"
          "  Runs one jagged attention on the best available backend and checks it against\n"
          "  the float64 cpu oracle (2x rule). Exits nonzero on failure.\n"
          "  --workload long|mixed|short  lengths from bench/workloads.yaml (default mixed;\n"
          "                               without a GPU divided by 16, with 4 heads)\n"
          "  --lengths a,b,c              explicit sequence lengths (overrides --workload)\n"
          "  --heads N                    query heads (default 16)\n"
          "  --kv-heads N                 key/value heads, divides --heads (default = heads)\n"
          "  --head-dim D                 head dim (default 128)\n"
          "  --dtype fp16|bf16|fp32       (default bf16)\n"
          "  --causal                     bottom-right causal mask\n"
          "  --backend auto|flash|efficient|math|cpu   (default auto)\n"
          "  --seed N                     input seed (default: from the clock, printed)\n"
          "  --help\n");
}

static bool parse_int(const char* text, int64_t lo, int64_t hi, int64_t* out) {
  char* end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static int parse_args(int argc, char** argv, args_t* a) {
  memset(a, 0, sizeof(*a));
  a->workload = "mixed";
  a->heads = 16;
  a->head_dim = 128;
  a->dtype = JSDPA_DTYPE_BF16;
  a->backend = JSDPA_BACKEND_AUTO;
  a->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  for (int i = 1; i < argc; ++i) {
    const char* o = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n = 0;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(o, "--causal")) {
      a->causal = true;
      continue;
    }
    if (!v) {
      fprintf(stderr, "jsdpa-run: %s needs a value\n", o);
      return 2;
    }
    ++i;
    if (!strcmp(o, "--workload")) {
      a->workload = v;
    } else if (!strcmp(o, "--lengths")) {
      free(a->lengths);
      a->batch = 0;
      a->lengths = malloc((strlen(v) / 2 + 2) * sizeof(int64_t));
      for (char *copy = strdup(v), *save = NULL, *tok = strtok_r(copy, ",", &save);;
           tok = strtok_r(NULL, ",", &save)) {
        if (!tok) {
          free(copy);
          break;
        }
        if (!parse_int(tok, 0, 1 << 24, &a->lengths[a->batch++])) {
          fprintf(stderr, "jsdpa-run: --lengths: '%s' is not a length in [0, 2^24]\n", tok);
          free(copy);
          return 2;
        }
      }
      if (a->batch == 0) {
        fprintf(stderr, "jsdpa-run: --lengths is empty\n");
        return 2;
      }
    } else if (!strcmp(o, "--heads") && parse_int(v, 1, 65535, &n)) {
      a->heads = n;
      a->heads_set = true;
    } else if (!strcmp(o, "--kv-heads") && parse_int(v, 1, 65535, &n)) {
      a->kv_heads = n;
    } else if (!strcmp(o, "--head-dim") && parse_int(v, 1, 1024, &n)) {
      a->head_dim = n;
    } else if (!strcmp(o, "--seed") && parse_int(v, 0, INT64_MAX, &n)) {
      a->seed = (uint64_t)n;
    } else if (!strcmp(o, "--dtype")) {
      if (!strcmp(v, "fp16"))
        a->dtype = JSDPA_DTYPE_FP16;
      else if (!strcmp(v, "bf16"))
        a->dtype = JSDPA_DTYPE_BF16;
      else if (!strcmp(v, "fp32"))
        a->dtype = JSDPA_DTYPE_FP32;
      else {
        fprintf(stderr, "jsdpa-run: --dtype '%s' is not fp16, bf16 or fp32\n", v);
        return 2;
      }
    } else if (!strcmp(o, "--backend")) {
      bool found = false;
      for (int b = 0; b < JSDPA_BACKEND_COUNT && !found; ++b)
        if (!strcmp(v, b == 0 ? "auto" : jsdpa_backend_name((jsdpa_backend_t)b))) {
          a->backend = (jsdpa_backend_t)b;
          found = true;
        }
      if (!found) {
        fprintf(stderr, "jsdpa-run: --backend '%s' is not auto, flash, efficient, math or cpu\n",
                v);
        return 2;
      }
    } else {
      fprintf(stderr, "jsdpa-run: bad option or value: %s %s\n", o, v);
      usage(stderr);
      return 2;
    }
  }
  if (a->kv_heads == 0) a->kv_heads = a->heads;
  if (a->heads % a->kv_heads) {
    fprintf(stderr, "jsdpa-run: --heads (%lld) is not a multiple of --kv-heads (%lld)\n",
            (long long)a->heads, (long long)a->kv_heads);
    return 2;
  }
  return 0;
}

/* ------------------------------------------------------------ host data */

static uint64_t rng_state;

/* xorshift64*: test inputs, not cryptography. */
static uint64_t rand_u64(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "jsdpa-run: out of host memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static int compare_doubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ device */

typedef struct gpu_s {
  const jsdpa_cuda_driver_t* cu;
  CUdevice device;
  CUcontext context;
  CUstream stream;
} gpu_t;

static void cu_die(const gpu_t* g, CUresult r, const char* what) {
  const char* name = "?";
  if (g->cu) g->cu->cuGetErrorName(r, &name);
  fprintf(stderr, "jsdpa-run: %s failed: %s\n", what, name ? name : "?");
  exit(1);
}

#define CU(g, call)                                 \
  do {                                              \
    CUresult r_ = (g)->cu->call;                    \
    if (r_ != CUDA_SUCCESS) cu_die((g), r_, #call); \
  } while (0)

static void* to_device(gpu_t* g, const void* host, size_t bytes) {
  CUdeviceptr p = 0;
  CU(g, cuMemAlloc(&p, bytes ? bytes : 1));
  if (bytes) CU(g, cuMemcpyHtoD(p, host, bytes));
  return (void*)(uintptr_t)p;
}

/* ------------------------------------------------------------ checking */

/* The sequences checked against the float64 oracle: all of them when the
 * cost allows (the cpu path), else the longest, the shortest and random
 * others that fit a budget of multiply-adds, so the check takes seconds. */
static int pick_sequences(const int64_t* lens, int batch, int64_t heads, int64_t head_dim, int* out,
                          int capacity) {
  if (batch <= 0) return 0;
  const double budget = 3e10;
  double all = 0;
  for (int b = 0; b < batch; ++b) all += (double)lens[b] * (double)lens[b];
  int n = 0;
  if (all * (double)heads * (double)head_dim <= budget) {
    for (int b = 0; b < batch && n < capacity; ++b) out[n++] = b;
    return n;
  }
  int longest = 0, shortest = 0;
  for (int b = 1; b < batch; ++b) {
    if (lens[b] > lens[longest]) longest = b;
    if (lens[b] < lens[shortest]) shortest = b;
  }
  double used = 0;
  bool* taken = xmalloc((size_t)batch);
  memset(taken, 0, (size_t)batch);
  for (int tries = 0; tries < 4 * batch && n < capacity; ++tries) {
    int b = tries == 0 ? longest : tries == 1 ? shortest : (int)(rand_u64() % (uint64_t)batch);
    double cost = (double)lens[b] * (double)lens[b] * (double)heads * (double)head_dim;
    if (taken[b] || used + cost > budget) continue;
    taken[b] = true;
    used += cost;
    out[n++] = b;
  }
  if (n == 0) out[n++] = shortest; /* every sequence alone is over the budget */
  free(taken);
  return n;
}

static void die_status(const char* what, jsdpa_status_t s) {
  fprintf(stderr, "jsdpa-run: %s: %s: %s\n", what, jsdpa_status_code_name(jsdpa_status_code(s)),
          jsdpa_status_message(s));
  jsdpa_status_free(s);
  exit(1);
}

/* Runs the oracle (cpu, float64 inputs and accumulation) and the
 * same-precision cpu run on the chosen sequences and compares `result` (the
 * candidate's output rows of those sequences, in order). */
static bool check(jsdpa_context_t* ctx, const args_t* a, const int64_t* lens,
                  const int64_t* offsets, const void* q, const void* k, const void* v,
                  const int* seqs, int nseq, const void* const* result_rows) {
  const size_t row = (size_t)(a->heads * a->head_dim), kv_row = (size_t)(a->kv_heads * a->head_dim);
  const size_t es = jsdpa_dtype_size(a->dtype);
  int32_t* sub_off = xmalloc((size_t)(nseq + 1) * sizeof(int32_t));
  sub_off[0] = 0;
  for (int i = 0; i < nseq; ++i) sub_off[i + 1] = sub_off[i] + (int32_t)lens[seqs[i]];
  const size_t total = (size_t)sub_off[nseq];

  /* The sub-batch's inputs in the dtype and exactly widened to float64. */
  uint8_t* sq = xmalloc(total * row * es);
  uint8_t* sk = xmalloc(total * kv_row * es);
  uint8_t* sv = xmalloc(total * kv_row * es);
  double *dq = xmalloc(total * row * 8), *dk = xmalloc(total * kv_row * 8),
         *dv = xmalloc(total * kv_row * 8);
  for (int i = 0; i < nseq; ++i) {
    size_t from = (size_t)offsets[seqs[i]], to = (size_t)sub_off[i], n = (size_t)lens[seqs[i]];
    memcpy(sq + to * row * es, (const uint8_t*)q + from * row * es, n * row * es);
    memcpy(sk + to * kv_row * es, (const uint8_t*)k + from * kv_row * es, n * kv_row * es);
    memcpy(sv + to * kv_row * es, (const uint8_t*)v + from * kv_row * es, n * kv_row * es);
  }
  for (size_t i = 0; i < total * row; ++i) dq[i] = jsdpa_element_load(sq, a->dtype, i);
  for (size_t i = 0; i < total * kv_row; ++i) {
    dk[i] = jsdpa_element_load(sk, a->dtype, i);
    dv[i] = jsdpa_element_load(sv, a->dtype, i);
  }
  double* oracle = xmalloc(total * row * 8);
  uint8_t* same = xmalloc(total * row * es);

  jsdpa_forward_options_t fo;
  jsdpa_forward_options_initialize(&fo);
  fo.is_causal = a->causal;
  fo.backend = JSDPA_BACKEND_CPU;
  jsdpa_jagged_t tq, tk, tv, to;
  jsdpa_jagged_initialize(&tq, dq, JSDPA_DTYPE_FP64, (int64_t)total, a->heads, a->head_dim, sub_off,
                          JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&tk, dk, JSDPA_DTYPE_FP64, (int64_t)total, a->kv_heads, a->head_dim,
                          sub_off, JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&tv, dv, JSDPA_DTYPE_FP64, (int64_t)total, a->kv_heads, a->head_dim,
                          sub_off, JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&to, oracle, JSDPA_DTYPE_FP64, (int64_t)total, a->heads, a->head_dim,
                          NULL, JSDPA_INDEX_INT32, nseq);
  fo.precision = JSDPA_PRECISION_FP64;
  jsdpa_status_t s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
  if (s) die_status("float64 oracle (cpu)", s);

  jsdpa_jagged_initialize(&tq, sq, a->dtype, (int64_t)total, a->heads, a->head_dim, sub_off,
                          JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&tk, sk, a->dtype, (int64_t)total, a->kv_heads, a->head_dim, sub_off,
                          JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&tv, sv, a->dtype, (int64_t)total, a->kv_heads, a->head_dim, sub_off,
                          JSDPA_INDEX_INT32, nseq);
  jsdpa_jagged_initialize(&to, same, a->dtype, (int64_t)total, a->heads, a->head_dim, NULL,
                          JSDPA_INDEX_INT32, nseq);
  fo.precision = JSDPA_PRECISION_DEFAULT;
  s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
  if (s) die_status("same-precision reference (cpu, fp32 accumulate)", s);

  double err = 0, same_err = 0;
  size_t nan = 0;
  for (int i = 0; i < nseq; ++i)
    for (size_t j = 0; j < (size_t)lens[seqs[i]] * row; ++j) {
      size_t at = (size_t)sub_off[i] * row + j;
      double x = jsdpa_element_load(result_rows[i], a->dtype, j), ref = oracle[at];
      if (!isfinite(x)) ++nan;
      if (fabs(x - ref) > err) err = fabs(x - ref);
      double y = jsdpa_element_load(same, a->dtype, at);
      if (fabs(y - ref) > same_err) same_err = fabs(y - ref);
    }
  const double floor = a->dtype == JSDPA_DTYPE_FP32   ? 0x1.0p-20
                       : a->dtype == JSDPA_DTYPE_BF16 ? 0x1.0p-7
                                                      : 0x1.0p-10;
  const double bound = 2 * same_err + floor;
  bool ok = nan == 0 && err <= bound;
  printf(
      "check: %d of %lld sequences (%zu q tokens) vs the float64 cpu oracle: max error %.3g, "
      "same-precision cpu %.3g, bound 2x + %.3g = %.3g, non-finite %zu: %s\n",
      nseq, (long long)a->batch, total, err, same_err, floor, bound, nan, ok ? "ok" : "FAIL");
  free(sub_off);
  free(sq);
  free(sk);
  free(sv);
  free(dq);
  free(dk);
  free(dv);
  free(oracle);
  free(same);
  return ok;
}

/* ------------------------------------------------------------ main */

int main(int argc, char** argv) {
  args_t a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  rng_state = a.seed ? a.seed : 1;

  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  jsdpa_context_t* ctx = NULL;
  jsdpa_status_t s = jsdpa_context_create(&co, &ctx);
  if (s) die_status("context", s);
  const char* no_gpu = NULL;
  const bool gpu = jsdpa_context_has_gpu(ctx, &no_gpu) && a.backend != JSDPA_BACKEND_CPU;

  gpu_t g;
  memset(&g, 0, sizeof(g));
  if (gpu) {
    g.cu = jsdpa_cuda_driver(NULL);
    char name[256] = "";
    int major = 0, minor = 0, sms = 0;
    CU(&g, cuDeviceGet(&g.device, co.device));
    CU(&g, cuDeviceGetName(name, sizeof(name), g.device));
    CU(&g, cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g.device));
    CU(&g, cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g.device));
    CU(&g, cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g.device));
    CU(&g, cuDevicePrimaryCtxRetain(&g.context, g.device));
    CU(&g, cuCtxSetCurrent(g.context));
    CU(&g, cuStreamCreate(&g.stream, CU_STREAM_NON_BLOCKING));
    printf("device: %d: %s (compute capability %d.%d, %d SMs, driver %d)\n", co.device, name, major,
           minor, sms, g.cu->version);
  } else if (no_gpu && *no_gpu) {
    printf("device: none: %s\n", no_gpu);
  } else {
    printf("device: not used (--backend cpu)\n");
  }

  /* The batch. */
  const workload_t* w = NULL;
  if (!a.lengths) {
    for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); ++i)
      if (!strcmp(a.workload, workloads[i].name)) w = &workloads[i];
    if (!w) {
      fprintf(stderr, "jsdpa-run: --workload '%s' is not long, mixed or short\n", a.workload);
      return 2;
    }
    a.batch = w->count;
    a.lengths = xmalloc((size_t)w->count * sizeof(int64_t));
    for (int i = 0; i < w->count; ++i)
      a.lengths[i] = gpu ? w->lengths[i] : (w->lengths[i] + 15) / 16;
    if (!gpu && !a.heads_set) {
      a.heads = 4;
      if (a.heads % a.kv_heads) a.kv_heads = a.heads;
    }
  }
  int64_t* offsets = xmalloc((size_t)(a.batch + 1) * sizeof(int64_t));
  int32_t* offsets32 = xmalloc((size_t)(a.batch + 1) * sizeof(int32_t));
  offsets[0] = 0;
  double flops = 0;
  for (int64_t b = 0; b < a.batch; ++b) {
    const double l = (double)a.lengths[b];
    offsets[b + 1] = offsets[b] + a.lengths[b];
    flops += 4.0 * a.head_dim * a.heads * (a.causal ? l * (l + 1) / 2 : l * l);
  }
  for (int64_t b = 0; b <= a.batch; ++b) offsets32[b] = (int32_t)offsets[b];
  const int64_t total = offsets[a.batch];
  const size_t es = jsdpa_dtype_size(a.dtype);
  const size_t q_count = (size_t)(total * a.heads * a.head_dim);
  const size_t kv_count = (size_t)(total * a.kv_heads * a.head_dim);
  printf(
      "batch: %s%s: %lld sequences, %lld tokens, heads %lld/%lld, head dim %lld, %s%s, seed "
      "%llu\n",
      w ? w->name : "--lengths", w && !gpu ? " (scaled for the cpu: lengths/16)" : "",
      (long long)a.batch, (long long)total, (long long)a.heads, (long long)a.kv_heads,
      (long long)a.head_dim, jsdpa_dtype_name(a.dtype), a.causal ? ", causal" : "",
      (unsigned long long)a.seed);

  void* hq = xmalloc(q_count * es);
  void* hk = xmalloc(kv_count * es);
  void* hv = xmalloc(kv_count * es);
  void* ho = xmalloc(q_count * es);
  toolutil_fill_random(hq, a.dtype, q_count, a.seed * 3 + 0);
  toolutil_fill_random(hk, a.dtype, kv_count, a.seed * 3 + 1);
  toolutil_fill_random(hv, a.dtype, kv_count, a.seed * 3 + 2);
  memset(ho, 0xff, q_count * es); /* NaN: unwritten output fails the check */

  void *q = hq, *k = hk, *v = hv, *o = ho;
  const void* off = offsets32;
  if (gpu) {
    q = to_device(&g, hq, q_count * es);
    k = to_device(&g, hk, kv_count * es);
    v = to_device(&g, hv, kv_count * es);
    o = to_device(&g, ho, q_count * es);
    off = to_device(&g, offsets32, (size_t)(a.batch + 1) * sizeof(int32_t));
  }
  jsdpa_jagged_t tq, tk, tv, to;
  jsdpa_jagged_initialize(&tq, q, a.dtype, total, a.heads, a.head_dim, off, JSDPA_INDEX_INT32,
                          a.batch);
  jsdpa_jagged_initialize(&tk, k, a.dtype, total, a.kv_heads, a.head_dim, off, JSDPA_INDEX_INT32,
                          a.batch);
  jsdpa_jagged_initialize(&tv, v, a.dtype, total, a.kv_heads, a.head_dim, off, JSDPA_INDEX_INT32,
                          a.batch);
  jsdpa_jagged_initialize(&to, o, a.dtype, total, a.heads, a.head_dim, NULL, JSDPA_INDEX_INT32,
                          a.batch);
  jsdpa_forward_options_t fo;
  jsdpa_forward_options_initialize(&fo);
  fo.is_causal = a.causal;
  fo.backend = a.backend;
  fo.stream = gpu ? (void*)g.stream : NULL;

  /* Which backend, and why not the others. */
  jsdpa_selection_t sel;
  s = jsdpa_explain(ctx, &fo, &tq, &tk, &tv, &to, NULL, &sel);
  printf("backend: %s\n",
         sel.backend == JSDPA_BACKEND_AUTO ? "none" : jsdpa_backend_name(sel.backend));
  for (int b = JSDPA_BACKEND_FLASH; b < JSDPA_BACKEND_COUNT; ++b)
    if (sel.reasons[b][0])
      printf("  %s rejected: %s\n", jsdpa_backend_name((jsdpa_backend_t)b), sel.reasons[b]);
  if (s) die_status("explain", s);

  /* Cold: the first call compiles (or loads from the disk cache). */
  double t0 = now_s();
  s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
  if (s) die_status("forward", s);
  if (gpu) CU(&g, cuStreamSynchronize(g.stream));
  const double cold_s = now_s() - t0;
  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(ctx, &st);
  printf(
      "cold call: %.1f ms (kernels compiled: %lld in %.1f ms; disk cache hits: %lld, load "
      "%.1f ms; disk cache %s)\n",
      cold_s * 1e3, (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, st.load_ms,
      st.disk_enabled ? "on" : "off");
  s = jsdpa_context_check_device_errors(ctx, fo.stream);
  if (s) die_status("device errors", s);

  /* Warm: about a second of calls, at least 3. */
  int iters = 3;
  if (cold_s < 0.2) iters = 10;
  if (cold_s < 0.02) iters = 100;
  double per_call_ms = 0, first_us = 0, median_us = 0;
  if (gpu) {
    CUevent e0, e1;
    CU(&g, cuEventCreate(&e0, CU_EVENT_DEFAULT));
    CU(&g, cuEventCreate(&e1, CU_EVENT_DEFAULT));
    CU(&g, cuEventRecord(e0, g.stream));
    /* Host time of each call: the first follows a stream sync (after which
     * the driver's pool may hand memory back), the others are steady state. */
    double* host_us = xmalloc(sizeof(double) * (size_t)iters);
    for (int i = 0; i < iters; ++i) {
      double h0 = now_s();
      s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
      host_us[i] = (now_s() - h0) * 1e6;
      if (s) die_status("forward", s);
    }
    first_us = host_us[0];
    qsort(host_us + 1, (size_t)(iters - 1), sizeof(double), compare_doubles);
    median_us = host_us[1 + (iters - 1) / 2];
    free(host_us);
    CU(&g, cuEventRecord(e1, g.stream));
    CU(&g, cuEventSynchronize(e1));
    float ms = 0;
    CU(&g, cuEventElapsedTime(&ms, e0, e1));
    per_call_ms = ms / iters;
    CU(&g, cuEventDestroy(e0));
    CU(&g, cuEventDestroy(e1));
  } else {
    double h0 = now_s();
    for (int i = 0; i < iters; ++i) {
      s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
      if (s) die_status("forward", s);
    }
    per_call_ms = (now_s() - h0) * 1e3 / iters;
  }
  printf("warm call: %.3f ms per call over %d calls (%s), %.3g TFLOP/s", per_call_ms, iters,
         gpu ? "CUDA events" : "wall clock", flops / (per_call_ms * 1e-3) / 1e12);
  if (gpu)
    printf(", host time per call: first %.1f us, median of the rest %.1f us", first_us, median_us);
  printf("\n");
  jsdpa_context_cache_stats(ctx, &st);
  printf(
      "kernel cache: memory hits %lld, disk hits %lld, compiles %lld, disk writes %lld, "
      "corrupt %lld\n",
      (long long)st.memory_hits, (long long)st.disk_hits, (long long)st.compiles,
      (long long)st.disk_writes, (long long)st.corrupt_entries);

  /* Check the last call's output on the chosen sequences. */
  const size_t row_bytes = (size_t)(a.heads * a.head_dim) * es;
  int* seqs = xmalloc((size_t)a.batch * sizeof(int));
  int nseq = pick_sequences(a.lengths, (int)a.batch, a.heads, a.head_dim, seqs, (int)a.batch);
  const void** rows = xmalloc((size_t)(nseq ? nseq : 1) * sizeof(void*));
  for (int i = 0; i < nseq; ++i) {
    uint8_t* dst = (uint8_t*)ho + (size_t)offsets[seqs[i]] * row_bytes;
    if (gpu && a.lengths[seqs[i]] > 0)
      CU(&g, cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)o + (size_t)offsets[seqs[i]] * row_bytes,
                          (size_t)a.lengths[seqs[i]] * row_bytes));
    rows[i] = dst;
  }
  const double check_start = now_s();
  bool ok = check(ctx, &a, a.lengths, offsets, hq, hk, hv, seqs, nseq, rows);
  printf("check time: %.1f s (cpu backend, %d threads by default)\n", now_s() - check_start,
         (int)sysconf(_SC_NPROCESSORS_ONLN));
  printf("%s\n", ok ? "PASS" : "FAIL");

  free(rows);
  free(seqs);
  if (gpu) {
    void* bufs[] = {q, k, v, o, (void*)off};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); ++i)
      g.cu->cuMemFree((CUdeviceptr)(uintptr_t)bufs[i]);
    g.cu->cuStreamDestroy(g.stream);
    g.cu->cuDevicePrimaryCtxRelease(g.device);
  }
  jsdpa_context_destroy(ctx);
  free(hq);
  free(hk);
  free(hv);
  free(ho);
  free(offsets);
  free(offsets32);
  free(a.lengths);
  return ok ? 0 : 1;
}
