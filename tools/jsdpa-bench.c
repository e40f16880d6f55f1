/*
 * jsdpa-bench — times jsdpa_forward on the canonical jagged workloads.
 *
 * Reads bench/workloads.yaml (or --file) with libyaml: every workload x head
 * config (head_dim, heads) x dtype x causal cell, or one custom batch from
 * --lengths. Per cell it prints the backend that ran, the median time of
 * --reps calls after --warmup calls (CUDA events around each call on its
 * stream, after a 256 MiB device write that flushes the L2), and TFLOP/s
 * counted as 4*L*L*d*H per sequence (4*d*H*L*(L+1)/2 when causal). The time
 * covers the whole call on the device: the prep kernel and the attention
 * kernel. --json writes the cells for bench/compare.py.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cuda_dl.h"
#include "jsdpa.h"

#define MAX_ITEMS 4096
#define FLUSH_BYTES ((size_t)256 << 20)

typedef struct workload_s {
  char name[64];
  int64_t* lengths;
  int count;
} workload_t;

typedef struct plan_s {
  workload_t workloads[16];
  int num_workloads;
  int64_t head_dims[8], heads[8];
  int num_heads;
  jsdpa_dtype_t dtypes[2];
  int num_dtypes;
  bool causal[2];
  int num_causal;
} plan_t;

typedef struct args_s {
  const char* file;
  const char* lengths;
  const char* workload;
  const char* json;
  jsdpa_backend_t backend;
  int64_t head_dim, heads, kv_heads;
  int dtype;  /* 0: the file's list */
  int causal; /* -1: the file's list */
  int warmup, reps;
} args_t;

static void usage(FILE* f) {
  fprintf(f,
          "usage: jsdpa-bench [options]\n"
          "Times jsdpa_forward on the canonical jagged workloads (bench/workloads.yaml).\n"
          "  --file PATH          workloads file (default bench/workloads.yaml)\n"
          "  --workload NAME      only this workload of the file\n"
          "  --lengths a,b,...    one custom batch (self-attention) instead of the file's\n"
          "  --head-dim D --heads H   one head config instead of the file's (both needed)\n"
          "  --kv-heads G         kv heads (default: heads)\n"
          "  --dtype fp16|bf16|fp32   one dtype instead of the file's\n"
          "  --causal 0|1         one causal setting instead of the file's\n"
          "  --backend NAME       auto (default), flash, efficient, math\n"
          "  --warmup N --reps N  calls before timing (3) and timed calls (15)\n"
          "  --json FILE          also write the cells as JSON\n");
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "jsdpa-bench: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static bool parse_i64(const char* text, int64_t lo, int64_t hi, int64_t* out) {
  char* end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool parse_dtype(const char* s, jsdpa_dtype_t* out) {
  if (!strcmp(s, "fp16"))
    *out = JSDPA_DTYPE_FP16;
  else if (!strcmp(s, "bf16"))
    *out = JSDPA_DTYPE_BF16;
  else if (!strcmp(s, "fp32"))
    *out = JSDPA_DTYPE_FP32;
  else
    return false;
  return true;
}

/* ------------------------------------------------------------ workloads file */

static const char* scalar(yaml_node_t* n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char*)n->data.scalar.value : NULL;
}

static yaml_node_t* lookup(yaml_document_t* doc, yaml_node_t* map, const char* key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; ++p) {
    const char* k = scalar(yaml_document_get_node(doc, p->key));
    if (k && !strcmp(k, key)) return yaml_document_get_node(doc, p->value);
  }
  return NULL;
}

/* The items of a sequence node; count 0 if it is not one. */
static int items(yaml_document_t* doc, yaml_node_t* seq, yaml_node_t** out, int capacity) {
  int n = 0;
  if (!seq || seq->type != YAML_SEQUENCE_NODE) return 0;
  for (yaml_node_item_t* i = seq->data.sequence.items.start;
       i < seq->data.sequence.items.top && n < capacity; ++i)
    out[n++] = yaml_document_get_node(doc, *i);
  return n;
}

static int bad_file(const char* file, const char* what) {
  fprintf(stderr, "jsdpa-bench: %s: %s\n", file, what);
  return 1;
}

static int read_plan(const char* file, plan_t* plan) {
  FILE* f = fopen(file, "rb");
  if (!f) {
    fprintf(stderr, "jsdpa-bench: cannot open %s: %s\n", file, strerror(errno));
    return 1;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    fprintf(stderr, "jsdpa-bench: %s:%zu:%zu: error: %s\n", file, parser.problem_mark.line + 1,
            parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML error");
    yaml_parser_delete(&parser);
    fclose(f);
    return 1;
  }
  int rc = 0;
  yaml_node_t* root = yaml_document_get_root_node(&doc);
  yaml_node_t** list = xmalloc(sizeof(yaml_node_t*) * MAX_ITEMS);
  int n = items(&doc, lookup(&doc, root, "head_configs"), list, 8);
  for (int i = 0; i < n && !rc; ++i) {
    const char* d = scalar(lookup(&doc, list[i], "head_dim"));
    const char* h = scalar(lookup(&doc, list[i], "heads"));
    if (!d || !h || !parse_i64(d, 1, 1 << 20, &plan->head_dims[i]) ||
        !parse_i64(h, 1, 1 << 20, &plan->heads[i]))
      rc = bad_file(file, "head_configs entries need integer head_dim and heads");
  }
  plan->num_heads = n;
  n = items(&doc, lookup(&doc, root, "dtypes"), list, 2);
  for (int i = 0; i < n && !rc; ++i) {
    const char* s = scalar(list[i]);
    if (!s || !parse_dtype(s, &plan->dtypes[i])) rc = bad_file(file, "unknown dtype in dtypes");
  }
  plan->num_dtypes = n;
  n = items(&doc, lookup(&doc, root, "causal"), list, 2);
  for (int i = 0; i < n && !rc; ++i) {
    const char* s = scalar(list[i]);
    if (!s || (strcmp(s, "true") && strcmp(s, "false")))
      rc = bad_file(file, "causal entries must be true or false");
    else
      plan->causal[i] = !strcmp(s, "true");
  }
  plan->num_causal = n;
  yaml_node_t* wl[16];
  n = items(&doc, lookup(&doc, root, "workloads"), wl, 16);
  for (int i = 0; i < n && !rc; ++i) {
    workload_t* w = &plan->workloads[i];
    const char* name = scalar(lookup(&doc, wl[i], "name"));
    int count = items(&doc, lookup(&doc, wl[i], "lengths"), list, MAX_ITEMS);
    if (!name || count == 0) {
      rc = bad_file(file, "workloads entries need a name and a non-empty lengths list");
      break;
    }
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->lengths = xmalloc(sizeof(int64_t) * (size_t)count);
    w->count = count;
    for (int j = 0; j < count && !rc; ++j) {
      const char* s = scalar(list[j]);
      if (!s || !parse_i64(s, 0, INT32_MAX, &w->lengths[j]))
        rc = bad_file(file, "lengths must be non-negative integers");
    }
    plan->num_workloads = i + 1;
  }
  if (!rc && (!plan->num_workloads || !plan->num_heads || !plan->num_dtypes || !plan->num_causal))
    rc = bad_file(file, "needs head_configs, dtypes, causal and workloads");
  free(list);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

/* ------------------------------------------------------------ device */

static const jsdpa_cuda_driver_t* cu;

#define CU(call)                                                                   \
  do {                                                                             \
    CUresult r_ = cu->call;                                                        \
    if (r_ != CUDA_SUCCESS) {                                                      \
      const char* name_ = "?";                                                     \
      cu->cuGetErrorName(r_, &name_);                                              \
      fprintf(stderr, "jsdpa-bench: %s failed: %s\n", #call, name_ ? name_ : "?"); \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static void die_status(const char* what, jsdpa_status_t s) {
  fprintf(stderr, "jsdpa-bench: %s: %s: %s\n", what, jsdpa_status_code_name(jsdpa_status_code(s)),
          jsdpa_status_message(s));
  jsdpa_status_free(s);
  exit(1);
}

/* Uniform values in [-2, 2) as fp16 / bf16 / fp32 bits: random, never zeros. */
static void fill_random(void* data, jsdpa_dtype_t dtype, size_t count, uint64_t* state) {
  for (size_t i = 0; i < count; ++i) {
    uint64_t x = *state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    *state = x;
    float f = (float)((x >> 40) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    if (dtype == JSDPA_DTYPE_FP32) {
      ((float*)data)[i] = f;
    } else if (dtype == JSDPA_DTYPE_BF16) {
      ((uint16_t*)data)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
      /* |f| < 2 and normal: exponent rebias and round to 10 mantissa bits. */
      uint32_t sign = (u >> 16) & 0x8000u, ax = u & 0x7fffffffu;
      uint16_t h = 0;
      if (ax >= 0x38800000u) {
        uint32_t m = ((ax >> 23) - 112u) << 10 | ((ax >> 13) & 0x3ffu);
        uint32_t rest = ax & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (m & 1u))) ++m;
        h = (uint16_t)m;
      }
      ((uint16_t*)data)[i] = (uint16_t)(sign | h);
    }
  }
}

static int compare_floats(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return x < y ? -1 : x > y;
}

typedef struct bench_s {
  jsdpa_context_t* ctx;
  CUstream stream;
  CUdeviceptr flush;
  CUevent e0, e1;
  const args_t* a;
  FILE* json;
  int cells;
} bench_t;

/* One batch on the device: random q/k/v (uploaded once for both causal
 * settings), an output buffer and int32 offsets. */
typedef struct batch_s {
  const char* name;
  const int64_t* lengths;
  int count;
  int64_t head_dim, heads, kv_heads, total;
  jsdpa_dtype_t dtype;
  CUdeviceptr buffers[5]; /* q, k, v, out, offsets */
  jsdpa_jagged_t q, k, v, out;
} batch_t;

static void batch_upload(batch_t* t, const args_t* a) {
  t->kv_heads = a->kv_heads > 0 ? a->kv_heads : t->heads;
  int32_t* offsets = xmalloc(sizeof(int32_t) * (size_t)(t->count + 1));
  offsets[0] = 0;
  for (int i = 0; i < t->count; ++i) offsets[i + 1] = offsets[i] + (int32_t)t->lengths[i];
  t->total = offsets[t->count];
  const size_t es = t->dtype == JSDPA_DTYPE_FP32 ? 4 : 2;
  const size_t counts[3] = {(size_t)(t->total * t->heads * t->head_dim),
                            (size_t)(t->total * t->kv_heads * t->head_dim),
                            (size_t)(t->total * t->kv_heads * t->head_dim)};
  void* host = xmalloc(counts[0] > counts[1] ? counts[0] * es : counts[1] * es);
  uint64_t state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(t->head_dim * 131 + t->heads);
  for (int i = 0; i < 3; ++i) {
    CU(cuMemAlloc(&t->buffers[i], counts[i] * es + 16));
    fill_random(host, t->dtype, counts[i], &state);
    CU(cuMemcpyHtoD(t->buffers[i], host, counts[i] * es));
  }
  free(host);
  CU(cuMemAlloc(&t->buffers[3], counts[0] * es + 16));
  CU(cuMemAlloc(&t->buffers[4], sizeof(int32_t) * (size_t)(t->count + 1)));
  CU(cuMemcpyHtoD(t->buffers[4], offsets, sizeof(int32_t) * (size_t)(t->count + 1)));
  free(offsets);
  const void* off = (const void*)(uintptr_t)t->buffers[4];
  jsdpa_jagged_initialize(&t->q, (void*)(uintptr_t)t->buffers[0], t->dtype, t->total, t->heads,
                          t->head_dim, off, JSDPA_INDEX_INT32, t->count);
  jsdpa_jagged_initialize(&t->k, (void*)(uintptr_t)t->buffers[1], t->dtype, t->total, t->kv_heads,
                          t->head_dim, off, JSDPA_INDEX_INT32, t->count);
  jsdpa_jagged_initialize(&t->v, (void*)(uintptr_t)t->buffers[2], t->dtype, t->total, t->kv_heads,
                          t->head_dim, off, JSDPA_INDEX_INT32, t->count);
  jsdpa_jagged_initialize(&t->out, (void*)(uintptr_t)t->buffers[3], t->dtype, t->total, t->heads,
                          t->head_dim, NULL, JSDPA_INDEX_INT32, t->count);
}

static void batch_free(batch_t* t) {
  for (int i = 0; i < 5; ++i) CU(cuMemFree(t->buffers[i]));
}

/* Times one cell; prints its line and JSON entry. */
static void run_cell(bench_t* b, const batch_t* t, bool causal) {
  const args_t* a = b->a;
  double flops = 0;
  for (int i = 0; i < t->count; ++i) {
    const double l = (double)t->lengths[i];
    flops += 4.0 * (double)t->head_dim * (double)t->heads * (causal ? l * (l + 1) / 2 : l * l);
  }
  jsdpa_forward_options_t fo;
  jsdpa_forward_options_initialize(&fo);
  fo.is_causal = causal;
  fo.backend = a->backend;
  fo.stream = (void*)b->stream;

  jsdpa_selection_t sel;
  jsdpa_status_t s = jsdpa_explain(b->ctx, &fo, &t->q, &t->k, &t->v, &t->out, NULL, &sel);
  if (s) die_status("explain", s);
  const char* backend = jsdpa_backend_name(sel.backend);

  float* ms = xmalloc(sizeof(float) * (size_t)a->reps);
  for (int i = 0; i < a->warmup + a->reps; ++i) {
    CU(cuMemsetD8Async(b->flush, (unsigned char)i, FLUSH_BYTES, b->stream));
    CU(cuEventRecord(b->e0, b->stream));
    s = jsdpa_forward(b->ctx, &fo, &t->q, &t->k, &t->v, &t->out, NULL);
    if (s) die_status("forward", s);
    CU(cuEventRecord(b->e1, b->stream));
    CU(cuEventSynchronize(b->e1));
    if (i >= a->warmup) CU(cuEventElapsedTime(&ms[i - a->warmup], b->e0, b->e1));
  }
  s = jsdpa_context_check_device_errors(b->ctx, fo.stream);
  if (s) die_status("device errors", s);
  qsort(ms, (size_t)a->reps, sizeof(float), compare_floats);
  const double median = ms[a->reps / 2];
  const double tflops = median > 0 ? flops / (median * 1e9) : 0;
  printf("%-8s %5lld %5lld %-5s %-6s %-10s %10.3f %9.1f\n", t->name, (long long)t->head_dim,
         (long long)t->heads, jsdpa_dtype_name(t->dtype), causal ? "yes" : "no", backend, median,
         tflops);
  fflush(stdout);
  if (b->json)
    fprintf(b->json,
            "%s  {\"workload\": \"%s\", \"head_dim\": %lld, \"heads\": %lld, \"kv_heads\": %lld, "
            "\"dtype\": \"%s\", \"causal\": %s, \"backend\": \"%s\", \"ms\": %.4f, "
            "\"tflops\": %.2f, \"tokens\": %lld, \"sequences\": %d}",
            b->cells ? ",\n" : "", t->name, (long long)t->head_dim, (long long)t->heads,
            (long long)t->kv_heads, jsdpa_dtype_name(t->dtype), causal ? "true" : "false", backend,
            median, tflops, (long long)t->total, t->count);
  ++b->cells;
  free(ms);
}

/* ------------------------------------------------------------ main */

static int parse_args(int argc, char** argv, args_t* a) {
  memset(a, 0, sizeof(*a));
  a->file = "bench/workloads.yaml";
  a->causal = -1;
  a->warmup = 3;
  a->reps = 15;
  for (int i = 1; i < argc; ++i) {
    const char* opt = argv[i];
    const char* val = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n = 0;
    if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
      usage(stdout);
      exit(0);
    }
    if (!val) {
      fprintf(stderr, "jsdpa-bench: %s needs a value\n", opt);
      return 2;
    }
    ++i;
    if (!strcmp(opt, "--file")) {
      a->file = val;
    } else if (!strcmp(opt, "--lengths")) {
      a->lengths = val;
    } else if (!strcmp(opt, "--workload")) {
      a->workload = val;
    } else if (!strcmp(opt, "--json")) {
      a->json = val;
    } else if (!strcmp(opt, "--head-dim") && parse_i64(val, 1, 1024, &n)) {
      a->head_dim = n;
    } else if (!strcmp(opt, "--heads") && parse_i64(val, 1, 1 << 16, &n)) {
      a->heads = n;
    } else if (!strcmp(opt, "--kv-heads") && parse_i64(val, 1, 1 << 16, &n)) {
      a->kv_heads = n;
    } else if (!strcmp(opt, "--dtype")) {
      jsdpa_dtype_t t;
      if (!parse_dtype(val, &t)) {
        fprintf(stderr, "jsdpa-bench: --dtype '%s' is not fp16, bf16 or fp32\n", val);
        return 2;
      }
      a->dtype = (int)t;
    } else if (!strcmp(opt, "--causal") && parse_i64(val, 0, 1, &n)) {
      a->causal = (int)n;
    } else if (!strcmp(opt, "--backend")) {
      jsdpa_backend_t found = JSDPA_BACKEND_COUNT;
      for (int b = 0; b < JSDPA_BACKEND_COUNT; ++b)
        if (!strcmp(val, jsdpa_backend_name((jsdpa_backend_t)b))) found = (jsdpa_backend_t)b;
      if (found == JSDPA_BACKEND_COUNT || found == JSDPA_BACKEND_CPU) {
        fprintf(stderr, "jsdpa-bench: --backend '%s' is not auto, flash, efficient or math\n", val);
        return 2;
      }
      a->backend = found;
    } else if (!strcmp(opt, "--warmup") && parse_i64(val, 0, 1000, &n)) {
      a->warmup = (int)n;
    } else if (!strcmp(opt, "--reps") && parse_i64(val, 1, 100000, &n)) {
      a->reps = (int)n;
    } else {
      fprintf(stderr, "jsdpa-bench: bad option or value: %s %s\n", opt, val);
      usage(stderr);
      return 2;
    }
  }
  if ((a->head_dim > 0) != (a->heads > 0)) {
    fprintf(stderr, "jsdpa-bench: --head-dim and --heads go together\n");
    return 2;
  }
  if (a->kv_heads > 0 && a->heads > 0 && a->heads % a->kv_heads) {
    fprintf(stderr, "jsdpa-bench: --heads (%lld) is not a multiple of --kv-heads (%lld)\n",
            (long long)a->heads, (long long)a->kv_heads);
    return 2;
  }
  return 0;
}

/* --lengths a,b,c as a one-workload plan named "custom". */
static int custom_workload(const char* text, workload_t* w) {
  int count = 1;
  for (const char* p = text; *p; ++p) count += *p == ',';
  w->lengths = xmalloc(sizeof(int64_t) * (size_t)count);
  w->count = 0;
  snprintf(w->name, sizeof(w->name), "custom");
  char* copy = strdup(text);
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (!parse_i64(tok, 0, INT32_MAX, &w->lengths[w->count++])) {
      fprintf(stderr, "jsdpa-bench: --lengths: '%s' is not a length\n", tok);
      free(copy);
      return 2;
    }
  free(copy);
  return w->count ? 0 : 2;
}

int main(int argc, char** argv) {
  args_t a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  plan_t plan;
  memset(&plan, 0, sizeof(plan));
  if (a.lengths) {
    /* A custom batch still takes the file's head configs, dtypes and causal
     * settings unless the options name them. */
    if (a.head_dim == 0 || a.dtype == 0 || a.causal < 0) {
      rc = read_plan(a.file, &plan);
      if (rc) return rc;
    }
    for (int i = 0; i < plan.num_workloads; ++i) free(plan.workloads[i].lengths);
    plan.num_workloads = 1;
    rc = custom_workload(a.lengths, &plan.workloads[0]);
    if (rc) return rc;
  } else {
    rc = read_plan(a.file, &plan);
    if (rc) return rc;
  }
  if (a.head_dim) plan.head_dims[0] = a.head_dim, plan.heads[0] = a.heads, plan.num_heads = 1;
  if (a.dtype) plan.dtypes[0] = (jsdpa_dtype_t)a.dtype, plan.num_dtypes = 1;
  if (a.causal >= 0) plan.causal[0] = a.causal, plan.num_causal = 1;

  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  bench_t b;
  memset(&b, 0, sizeof(b));
  b.a = &a;
  jsdpa_status_t s = jsdpa_context_create(&co, &b.ctx);
  if (s) die_status("context", s);
  const char* no_gpu = NULL;
  if (!jsdpa_context_has_gpu(b.ctx, &no_gpu)) {
    fprintf(stderr, "jsdpa-bench: no GPU: %s\n", no_gpu ? no_gpu : "");
    jsdpa_context_destroy(b.ctx);
    return 1;
  }
  cu = jsdpa_cuda_driver(NULL);
  CUdevice dev;
  CUcontext cuctx;
  char name[256] = "";
  CU(cuDeviceGet(&dev, co.device));
  CU(cuDeviceGetName(name, sizeof(name), dev));
  CU(cuDevicePrimaryCtxRetain(&cuctx, dev));
  CU(cuCtxSetCurrent(cuctx));
  CU(cuStreamCreate(&b.stream, CU_STREAM_NON_BLOCKING));
  CU(cuEventCreate(&b.e0, CU_EVENT_DEFAULT));
  CU(cuEventCreate(&b.e1, CU_EVENT_DEFAULT));
  CU(cuMemAlloc(&b.flush, FLUSH_BYTES));
  if (a.json) {
    b.json = fopen(a.json, "w");
    if (!b.json) {
      fprintf(stderr, "jsdpa-bench: cannot write %s: %s\n", a.json, strerror(errno));
      return 1;
    }
    fprintf(b.json, "{\"device\": \"%s\", \"warmup\": %d, \"reps\": %d, \"cells\": [\n", name,
            a.warmup, a.reps);
  }
  printf("device: %s; median of %d calls after %d warm-up, L2 flushed before each\n", name, a.reps,
         a.warmup);
  printf("%-8s %5s %5s %-5s %-6s %-10s %10s %9s\n", "workload", "d", "heads", "dtype", "causal",
         "backend", "ms", "TFLOP/s");
  int ran = 0;
  for (int w = 0; w < plan.num_workloads; ++w) {
    const workload_t* wl = &plan.workloads[w];
    if (a.workload && strcmp(a.workload, wl->name)) continue;
    for (int h = 0; h < plan.num_heads; ++h)
      for (int d = 0; d < plan.num_dtypes; ++d) {
        batch_t t = {.name = wl->name,
                     .lengths = wl->lengths,
                     .count = wl->count,
                     .head_dim = plan.head_dims[h],
                     .heads = plan.heads[h],
                     .dtype = plan.dtypes[d]};
        batch_upload(&t, &a);
        for (int c = 0; c < plan.num_causal; ++c, ++ran) run_cell(&b, &t, plan.causal[c]);
        batch_free(&t);
      }
  }
  if (b.json) {
    fprintf(b.json, "\n]}\n");
    fclose(b.json);
  }
  for (int w = 0; w < plan.num_workloads; ++w) free(plan.workloads[w].lengths);
  cu->cuMemFree(b.flush);
  cu->cuEventDestroy(b.e0);
  cu->cuEventDestroy(b.e1);
  cu->cuStreamDestroy(b.stream);
  jsdpa_context_destroy(b.ctx);
  cu->cuDevicePrimaryCtxRelease(dev);
  if (!ran) {
    fprintf(stderr, "jsdpa-bench: no workload named '%s' in %s\n", a.workload, a.file);
    return 2;
  }
  return 0;
}
