/* Workloads, random data, device batches and timing shared by jsdpa-bench and
 * jsdpa-tune (toolutil.h). */
#include "toolutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

static const char* tool = "jsdpa";

void toolutil_init(const char* tool_name) {
  tool = tool_name;
}

void* toolutil_xmalloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "%s: out of host memory (%zu bytes)\n", tool, bytes);
    exit(1);
  }
  return p;
}

void* toolutil_xcalloc(size_t count, size_t size) {
  void* p = calloc(count ? count : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "%s: out of host memory (%zu x %zu bytes)\n", tool, count, size);
    exit(1);
  }
  return p;
}

void* toolutil_xrealloc(void* p, size_t bytes) {
  void* q = realloc(p, bytes ? bytes : 1);
  if (!q) {
    fprintf(stderr, "%s: out of host memory (%zu bytes)\n", tool, bytes);
    exit(1);
  }
  return q;
}

bool toolutil_parse_i64(const char* text, int64_t lo, int64_t hi, int64_t* out) {
  char* end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool toolutil_parse_dtype(const char* text, jsdpa_dtype_t* out) {
  static const jsdpa_dtype_t dtypes[] = {JSDPA_DTYPE_FP16, JSDPA_DTYPE_BF16, JSDPA_DTYPE_FP32};
  for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); ++i)
    if (!strcmp(text, jsdpa_dtype_name(dtypes[i]))) {
      *out = dtypes[i];
      return true;
    }
  return false;
}

void toolutil_die_status(const char* what, jsdpa_status_t status) {
  fprintf(stderr, "%s: %s: %s: %s\n", tool, what, jsdpa_status_code_name(jsdpa_status_code(status)),
          jsdpa_status_message(status));
  jsdpa_status_free(status);
  exit(1);
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

static int bad_node(const char* file, yaml_node_t* node, const char* what) {
  if (node)
    fprintf(stderr, "%s: %s:%zu:%zu: error: %s\n", tool, file, node->start_mark.line + 1,
            node->start_mark.column + 1, what);
  else
    fprintf(stderr, "%s: %s: error: %s\n", tool, file, what);
  return 1;
}

#define MAX_LENGTHS 65536

int toolutil_read_plan(const char* file, toolutil_plan_t* plan) {
  memset(plan, 0, sizeof(*plan));
  FILE* f = fopen(file, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open %s: %s\n", tool, file, strerror(errno));
    return 1;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    fprintf(stderr, "%s: %s:%zu:%zu: error: %s\n", tool, file, parser.problem_mark.line + 1,
            parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML error");
    yaml_parser_delete(&parser);
    fclose(f);
    return 1;
  }
  int rc = 0;
  yaml_node_t* root = yaml_document_get_root_node(&doc);
  yaml_node_t** list = toolutil_xmalloc(sizeof(yaml_node_t*) * MAX_LENGTHS);
  int n = items(&doc, lookup(&doc, root, "head_configs"), list, TOOLUTIL_MAX_HEAD_CONFIGS);
  for (int i = 0; i < n && !rc; ++i) {
    const char* d = scalar(lookup(&doc, list[i], "head_dim"));
    const char* h = scalar(lookup(&doc, list[i], "heads"));
    if (!d || !h || !toolutil_parse_i64(d, 1, 1 << 20, &plan->head_dims[i]) ||
        !toolutil_parse_i64(h, 1, 1 << 20, &plan->heads[i]))
      rc = bad_node(file, list[i], "head_configs entries need integer head_dim and heads");
  }
  plan->num_heads = n;
  n = items(&doc, lookup(&doc, root, "dtypes"), list, 3);
  for (int i = 0; i < n && !rc; ++i) {
    const char* s = scalar(list[i]);
    if (!s || !toolutil_parse_dtype(s, &plan->dtypes[i]))
      rc = bad_node(file, list[i], "unknown dtype in dtypes (fp16, bf16, fp32)");
  }
  plan->num_dtypes = n;
  n = items(&doc, lookup(&doc, root, "causal"), list, 2);
  for (int i = 0; i < n && !rc; ++i) {
    const char* s = scalar(list[i]);
    if (!s || (strcmp(s, "true") && strcmp(s, "false")))
      rc = bad_node(file, list[i], "causal entries must be true or false");
    else
      plan->causal[i] = !strcmp(s, "true");
  }
  plan->num_causal = n;
  yaml_node_t* wl[TOOLUTIL_MAX_WORKLOADS];
  n = items(&doc, lookup(&doc, root, "workloads"), wl, TOOLUTIL_MAX_WORKLOADS);
  for (int i = 0; i < n && !rc; ++i) {
    toolutil_workload_t* w = &plan->workloads[i];
    const char* name = scalar(lookup(&doc, wl[i], "name"));
    int count = items(&doc, lookup(&doc, wl[i], "lengths"), list, MAX_LENGTHS);
    if (!name || count == 0) {
      rc = bad_node(file, wl[i], "workloads entries need a name and a non-empty lengths list");
      break;
    }
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->lengths = toolutil_xmalloc(sizeof(int64_t) * (size_t)count);
    w->count = count;
    plan->num_workloads = i + 1;
    for (int j = 0; j < count && !rc; ++j) {
      const char* s = scalar(list[j]);
      if (!s || !toolutil_parse_i64(s, 0, INT32_MAX, &w->lengths[j]))
        rc = bad_node(file, list[j], "lengths must be non-negative integers");
    }
  }
  if (!rc && (!plan->num_workloads || !plan->num_heads || !plan->num_dtypes || !plan->num_causal))
    rc = bad_node(file, NULL, "needs head_configs, dtypes, causal and workloads");
  free(list);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  if (rc) toolutil_plan_free(plan);
  return rc;
}

int toolutil_parse_lengths(const char* text, const char* what, const char* name,
                           toolutil_workload_t* out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s", name);
  size_t capacity = 16;
  out->lengths = toolutil_xmalloc(capacity * sizeof(int64_t));
  int line = 1;
  for (const char* p = text; *p;) {
    if (*p == '#') {
      while (*p && *p != '\n') ++p;
      continue;
    }
    if (*p == ',' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
      line += *p++ == '\n';
      continue;
    }
    size_t n = strcspn(p, ", \t\r\n#");
    char token[32];
    snprintf(token, sizeof(token), "%.*s", (int)(n < 31 ? n : 31), p);
    int64_t v = 0;
    if (n > 31 || !toolutil_parse_i64(token, 0, INT32_MAX, &v)) {
      fprintf(stderr, "%s: %s:%d: error: '%.*s' is not a sequence length in [0, 2^31)\n", tool,
              what, line, (int)n, p);
      free(out->lengths);
      out->lengths = NULL;
      return 2;
    }
    if ((size_t)out->count == capacity) {
      capacity *= 2;
      out->lengths = toolutil_xrealloc(out->lengths, capacity * sizeof(int64_t));
    }
    out->lengths[out->count++] = v;
    p += n;
  }
  if (out->count == 0) {
    fprintf(stderr, "%s: %s: error: no sequence lengths\n", tool, what);
    free(out->lengths);
    out->lengths = NULL;
    return 2;
  }
  return 0;
}

void toolutil_plan_free(toolutil_plan_t* plan) {
  for (int w = 0; w < plan->num_workloads; ++w) free(plan->workloads[w].lengths);
  plan->num_workloads = 0;
}

double toolutil_flops(const int64_t* lengths, int count, int64_t head_dim, int64_t heads,
                      bool causal) {
  double flops = 0;
  for (int i = 0; i < count; ++i) {
    const double l = (double)lengths[i];
    flops += 4.0 * (double)head_dim * (double)heads * (causal ? l * (l + 1) / 2 : l * l);
  }
  return flops;
}

/* ------------------------------------------------------------ device */

static const jsdpa_cuda_driver_t* driver;
static CUdevice device;

void toolutil_cu_check(CUresult result, const char* what) {
  if (result == CUDA_SUCCESS) return;
  const char* name = "?";
  if (driver) driver->cuGetErrorName(result, &name);
  fprintf(stderr, "%s: %s failed: %s\n", tool, what, name ? name : "?");
  exit(1);
}

const jsdpa_cuda_driver_t* toolutil_gpu_open(char* name, size_t capacity) {
  const char* reason = NULL;
  driver = jsdpa_cuda_driver(&reason);
  if (!driver) {
    fprintf(stderr, "%s: no GPU: %s\n", tool, reason ? reason : "no CUDA driver");
    exit(1);
  }
  CUcontext ctx;
  TOOLUTIL_CU(driver, cuDeviceGet(&device, 0));
  TOOLUTIL_CU(driver, cuDeviceGetName(name, (int)capacity, device));
  TOOLUTIL_CU(driver, cuDevicePrimaryCtxRetain(&ctx, device));
  TOOLUTIL_CU(driver, cuCtxSetCurrent(ctx));
  return driver;
}

void toolutil_gpu_close(void) {
  if (driver) driver->cuDevicePrimaryCtxRelease(device);
}

/* splitmix64: decorrelates the per-chunk streams of one seed. */
static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void fill_chunk(void* data, jsdpa_dtype_t dtype, size_t begin, size_t end, uint64_t state) {
  if (state == 0) state = 1;
  for (size_t i = begin; i < end; ++i) {
    uint64_t x = state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    state = x;
    float f = (float)((x >> 40) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    if (dtype == JSDPA_DTYPE_FP32) {
      ((float*)data)[i] = f;
    } else if (dtype == JSDPA_DTYPE_BF16) {
      ((uint16_t*)data)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
      /* |f| < 2: rebias the exponent and round to 10 mantissa bits; the rare
       * values below fp16's normal range flush to zero. */
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

#define FILL_CHUNK ((size_t)1 << 20)

typedef struct fill_job_s {
  void* data;
  jsdpa_dtype_t dtype;
  size_t count;
  uint64_t seed;
  size_t next;
  pthread_mutex_t lock;
} fill_job_t;

static void* fill_worker(void* arg) {
  fill_job_t* job = arg;
  for (;;) {
    pthread_mutex_lock(&job->lock);
    size_t chunk = job->next++;
    pthread_mutex_unlock(&job->lock);
    size_t begin = chunk * FILL_CHUNK;
    if (begin >= job->count) return NULL;
    size_t end = begin + FILL_CHUNK < job->count ? begin + FILL_CHUNK : job->count;
    fill_chunk(job->data, job->dtype, begin, end, splitmix64(job->seed ^ splitmix64(chunk)));
  }
}

void toolutil_fill_random(void* data, jsdpa_dtype_t dtype, size_t count, uint64_t seed) {
  fill_job_t job = {data, dtype, count, seed, 0, PTHREAD_MUTEX_INITIALIZER};
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  size_t threads = cpus < 1 ? 1 : cpus > 64 ? 64 : (size_t)cpus;
  size_t chunks = (count + FILL_CHUNK - 1) / FILL_CHUNK;
  if (threads > chunks) threads = chunks ? chunks : 1;
  pthread_t ids[64];
  size_t started = 0;
  for (; started + 1 < threads; ++started)
    if (pthread_create(&ids[started], NULL, fill_worker, &job) != 0) break;
  fill_worker(&job);
  for (size_t t = 0; t < started; ++t) pthread_join(ids[t], NULL);
}

void toolutil_batch_create(toolutil_batch_t* t, const jsdpa_cuda_driver_t* cu, uint64_t seed,
                           bool keep_host) {
  if (t->kv_heads <= 0) t->kv_heads = t->heads;
  t->offsets = toolutil_xmalloc(sizeof(int64_t) * (size_t)(t->count + 1));
  int32_t* offsets32 = toolutil_xmalloc(sizeof(int32_t) * (size_t)(t->count + 1));
  t->offsets[0] = offsets32[0] = 0;
  for (int i = 0; i < t->count; ++i) {
    t->offsets[i + 1] = t->offsets[i] + t->lengths[i];
    offsets32[i + 1] = (int32_t)t->offsets[i + 1];
  }
  t->total = t->offsets[t->count];
  const size_t es = jsdpa_dtype_size(t->dtype);
  const size_t counts[3] = {(size_t)(t->total * t->heads * t->head_dim),
                            (size_t)(t->total * t->kv_heads * t->head_dim),
                            (size_t)(t->total * t->kv_heads * t->head_dim)};
  void* scratch =
      keep_host ? NULL : toolutil_xmalloc(counts[0] > counts[1] ? counts[0] * es : counts[1] * es);
  for (int i = 0; i < 3; ++i) {
    void* host = keep_host ? (t->host[i] = toolutil_xmalloc(counts[i] * es)) : scratch;
    toolutil_fill_random(host, t->dtype, counts[i], splitmix64(seed + (uint64_t)i));
    TOOLUTIL_CU(cu, cuMemAlloc(&t->buffers[i], counts[i] * es + 16));
    TOOLUTIL_CU(cu, cuMemcpyHtoD(t->buffers[i], host, counts[i] * es));
  }
  free(scratch);
  t->out_bytes = counts[0] * es;
  TOOLUTIL_CU(cu, cuMemAlloc(&t->buffers[3], t->out_bytes + 16));
  TOOLUTIL_CU(cu, cuMemAlloc(&t->buffers[4], sizeof(int32_t) * (size_t)(t->count + 1)));
  TOOLUTIL_CU(cu, cuMemcpyHtoD(t->buffers[4], offsets32, sizeof(int32_t) * (size_t)(t->count + 1)));
  free(offsets32);
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

void toolutil_batch_free_host(toolutil_batch_t* t) {
  for (int i = 0; i < 3; ++i) {
    free(t->host[i]);
    t->host[i] = NULL;
  }
}

void toolutil_batch_free(toolutil_batch_t* t, const jsdpa_cuda_driver_t* cu) {
  for (int i = 0; i < 5; ++i)
    if (t->buffers[i]) cu->cuMemFree(t->buffers[i]);
  memset(t->buffers, 0, sizeof(t->buffers));
  toolutil_batch_free_host(t);
  free(t->offsets);
  t->offsets = NULL;
}

/* ------------------------------------------------------------ timing */

void toolutil_timer_create(toolutil_timer_t* timer, const jsdpa_cuda_driver_t* cu) {
  memset(timer, 0, sizeof(*timer));
  timer->cu = cu;
  TOOLUTIL_CU(cu, cuStreamCreate(&timer->stream, CU_STREAM_NON_BLOCKING));
  TOOLUTIL_CU(cu, cuEventCreate(&timer->e0, CU_EVENT_DEFAULT));
  TOOLUTIL_CU(cu, cuEventCreate(&timer->e1, CU_EVENT_DEFAULT));
  TOOLUTIL_CU(cu, cuMemAlloc(&timer->flush, TOOLUTIL_FLUSH_BYTES));
}

void toolutil_timer_destroy(toolutil_timer_t* timer) {
  const jsdpa_cuda_driver_t* cu = timer->cu;
  cu->cuMemFree(timer->flush);
  cu->cuEventDestroy(timer->e0);
  cu->cuEventDestroy(timer->e1);
  cu->cuStreamDestroy(timer->stream);
}

static int compare_floats(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return x < y ? -1 : x > y;
}

jsdpa_status_t toolutil_time_median(toolutil_timer_t* timer, toolutil_call_fn call, void* arg,
                                    int warmup, int reps, double* out_median_ms) {
  const jsdpa_cuda_driver_t* cu = timer->cu;
  float* ms = toolutil_xmalloc(sizeof(float) * (size_t)reps);
  for (int i = 0; i < warmup + reps; ++i) {
    TOOLUTIL_CU(
        cu, cuMemsetD8Async(timer->flush, (unsigned char)i, TOOLUTIL_FLUSH_BYTES, timer->stream));
    TOOLUTIL_CU(cu, cuEventRecord(timer->e0, timer->stream));
    jsdpa_status_t s = call(arg, (void*)timer->stream);
    if (s) {
      cu->cuStreamSynchronize(timer->stream);
      free(ms);
      return s;
    }
    TOOLUTIL_CU(cu, cuEventRecord(timer->e1, timer->stream));
    TOOLUTIL_CU(cu, cuEventSynchronize(timer->e1));
    if (i >= warmup) TOOLUTIL_CU(cu, cuEventElapsedTime(&ms[i - warmup], timer->e0, timer->e1));
  }
  qsort(ms, (size_t)reps, sizeof(float), compare_floats);
  *out_median_ms = ms[reps / 2];
  free(ms);
  return NULL;
}

jsdpa_status_t toolutil_forward_call(void* arg, void* stream) {
  toolutil_call_t* c = arg;
  c->options.stream = stream;
  const toolutil_batch_t* t = c->batch;
  return jsdpa_forward(c->ctx, &c->options, &t->q, &t->k, &t->v, &t->out, NULL);
}
