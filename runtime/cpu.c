/*
 * The cpu backend: attention in C on the host, for every feature the API has
 * (GQA, strides, causal bottom-right, sliding window, softcap, LSE, empty
 * sequences). fp32 accumulation by default; double for fp64 inputs or
 * options.precision == FP64, which makes it the float64 oracle of the tests.
 *
 * Work items are (sequence, head) pairs handed out longest sequence first
 * (LPT scheduling) to ctx->cpu_threads threads through an atomic counter.
 * Each row uses a two-pass softmax over its visible keys: scores, then max,
 * then exp and sum, then the weighted sum of values.
 *
 * All memory is allocated before the first output element is written and
 * nothing can fail after that (a thread that cannot start leaves its share to
 * the others), so an error leaves out and out_lse untouched. Validation has
 * already rejected outputs that alias inputs, so rows are written in place.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "element.h"
#include "internal.h"

/* ------------------------------------------------------------ the job */

typedef struct cpu_job_s {
  const jsdpa_call_t* call;
  const int64_t* q_offsets; /* [batch + 1], widened */
  const int64_t* kv_offsets;
  const int64_t* order; /* sequence indices, most expensive first */
  int64_t num_items;    /* batch * heads */
  int64_t next_item;    /* atomic */
  size_t scratch_elements;
  bool f64; /* accumulate in double */
} cpu_job_t;

/* Dot products with eight partial sums: independent chains the compiler can
 * keep in SIMD lanes, where one running sum waits on every add. */
#define JSDPA_DEFINE_DOT(NAME, ACC)                               \
  static ACC NAME(const ACC* a, const ACC* b, int64_t n) {        \
    ACC part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                       \
    int64_t i = 0;                                                \
    for (; i + 8 <= n; i += 8)                                    \
      for (int l = 0; l < 8; ++l) part[l] += a[i + l] * b[i + l]; \
    for (; i < n; ++i) part[i % 8] += a[i] * b[i];                \
    return ((part[0] + part[4]) + (part[1] + part[5])) +          \
           ((part[2] + part[6]) + (part[3] + part[7]));           \
  }
JSDPA_DEFINE_DOT(dot_f32, float)
JSDPA_DEFINE_DOT(dot_f64, double)
#undef JSDPA_DEFINE_DOT

/* The keys row i of a sequence sees (bottom-right aligned): [*lo, *hi]. */
static void visible_keys(const jsdpa_call_t* call, int64_t i, int64_t q_len, int64_t kv_len,
                         int64_t* lo, int64_t* hi) {
  const int64_t aligned = i + kv_len - q_len; /* the row's position among the keys */
  *lo = 0;
  *hi = kv_len - 1;
  if (call->options.is_causal && aligned < *hi) *hi = aligned;
  if (call->options.window_left >= 0 && aligned - call->options.window_left > *lo)
    *lo = aligned - call->options.window_left;
  if (call->options.window_right >= 0 && aligned + call->options.window_right < *hi)
    *hi = aligned + call->options.window_right;
}

/*
 * One (sequence, head) item, instantiated for float and double accumulation.
 * K and V of the item's kv head are widened once into scratch, so the inner
 * loops run over contiguous ACC rows.
 */
#define JSDPA_DEFINE_ATTEND(SUFFIX, ACC, DOT, EXP, LOG, TANH)                                   \
  static void attend_##SUFFIX(const cpu_job_t* job, int64_t b, int64_t h, ACC* scratch) {       \
    const jsdpa_call_t* call = job->call;                                                       \
    const int64_t q0 = job->q_offsets[b], q_len = job->q_offsets[b + 1] - q0;                   \
    const int64_t kv0 = job->kv_offsets[b], kv_len = job->kv_offsets[b + 1] - kv0;              \
    const int64_t d = call->head_dim, dv = call->head_dim_v;                                    \
    const int64_t g = h / (call->heads / call->kv_heads);                                       \
    const jsdpa_dtype_t dtype = call->q.dtype;                                                  \
    ACC* keys = scratch;                                                                        \
    ACC* values = keys + kv_len * d;                                                            \
    ACC* q_row = values + kv_len * dv;                                                          \
    ACC* scores = q_row + d;                                                                    \
    ACC* o_row = scores + kv_len;                                                               \
    for (int64_t j = 0; j < kv_len; ++j) {                                                      \
      const int64_t kb = (kv0 + j) * call->k.token_stride + g * call->k.head_stride;            \
      const int64_t vb = (kv0 + j) * call->v.token_stride + g * call->v.head_stride;            \
      for (int64_t c = 0; c < d; ++c)                                                           \
        keys[j * d + c] = (ACC)jsdpa_element_load(call->k.data, dtype, kb + c);                 \
      for (int64_t c = 0; c < dv; ++c)                                                          \
        values[j * dv + c] = (ACC)jsdpa_element_load(call->v.data, dtype, vb + c);              \
    }                                                                                           \
    const ACC scale = (ACC)call->scale;                                                         \
    const ACC softcap = (ACC)call->options.softcap;                                             \
    for (int64_t i = 0; i < q_len; ++i) {                                                       \
      const int64_t row = q0 + i;                                                               \
      const int64_t ob = row * call->o.token_stride + h * call->o.head_stride;                  \
      int64_t lo, hi;                                                                           \
      visible_keys(call, i, q_len, kv_len, &lo, &hi);                                           \
      if (lo > hi) {                                                                            \
        for (int64_t c = 0; c < dv; ++c) jsdpa_element_store(call->o.data, dtype, ob + c, 0.0); \
        if (call->lse) call->lse[row * call->heads + h] = -INFINITY;                            \
        continue;                                                                               \
      }                                                                                         \
      const int64_t qb = row * call->q.token_stride + h * call->q.head_stride;                  \
      for (int64_t c = 0; c < d; ++c)                                                           \
        q_row[c] = (ACC)jsdpa_element_load(call->q.data, dtype, qb + c);                        \
      ACC max = -INFINITY;                                                                      \
      for (int64_t j = lo; j <= hi; ++j) {                                                      \
        const ACC* key = keys + j * d;                                                          \
        const ACC dot = DOT(q_row, key, d);                                                     \
        ACC s = dot * scale;                                                                    \
        if (softcap > 0) s = softcap * TANH(s / softcap);                                       \
        scores[j - lo] = s;                                                                     \
        if (s > max) max = s;                                                                   \
      }                                                                                         \
      ACC sum = 0;                                                                              \
      for (int64_t j = lo; j <= hi; ++j) {                                                      \
        scores[j - lo] = EXP(scores[j - lo] - max);                                             \
        sum += scores[j - lo];                                                                  \
      }                                                                                         \
      for (int64_t c = 0; c < dv; ++c) o_row[c] = 0;                                            \
      for (int64_t j = lo; j <= hi; ++j) {                                                      \
        const ACC p = scores[j - lo];                                                           \
        const ACC* value = values + j * dv;                                                     \
        for (int64_t c = 0; c < dv; ++c) o_row[c] += p * value[c];                              \
      }                                                                                         \
      for (int64_t c = 0; c < dv; ++c)                                                          \
        jsdpa_element_store(call->o.data, dtype, ob + c, (double)(o_row[c] / sum));             \
      if (call->lse) call->lse[row * call->heads + h] = (float)(max + LOG(sum));                \
    }                                                                                           \
  }

JSDPA_DEFINE_ATTEND(f32, float, dot_f32, expf, logf, tanhf)
JSDPA_DEFINE_ATTEND(f64, double, dot_f64, exp, log, tanh)
#undef JSDPA_DEFINE_ATTEND

typedef struct cpu_worker_s {
  cpu_job_t* job;
  void* scratch;
} cpu_worker_t;

static void* worker_main(void* arg) {
  cpu_worker_t* w = arg;
  cpu_job_t* job = w->job;
  const int64_t heads = job->call->heads;
  for (;;) {
    int64_t item = __atomic_fetch_add(&job->next_item, 1, __ATOMIC_RELAXED);
    if (item >= job->num_items) break;
    const int64_t b = job->order[item / heads], h = item % heads;
    if (job->f64)
      attend_f64(job, b, h, w->scratch);
    else
      attend_f32(job, b, h, w->scratch);
  }
  return NULL;
}

typedef struct seq_cost_s {
  int64_t cost, index;
} seq_cost_t;

static int by_cost_descending(const void* a, const void* b) {
  const seq_cost_t* x = a;
  const seq_cost_t* y = b;
  if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
  return (x->index > y->index) - (x->index < y->index);
}

static void widen_offsets(const void* offsets, jsdpa_index_type_t type, int64_t count,
                          int64_t* out) {
  for (int64_t i = 0; i < count; ++i)
    out[i] =
        type == JSDPA_INDEX_INT32 ? ((const int32_t*)offsets)[i] : ((const int64_t*)offsets)[i];
}

static jsdpa_status_t cpu_run(jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  const int64_t batch = call->batch;
  if (batch == 0 || call->total_q == 0) return NULL;

  /* offsets (2 x (batch + 1)), costs (2 x batch) and the order (batch), all int64. */
  int64_t* ints = malloc(sizeof(int64_t) * (size_t)(5 * batch + 2));
  if (!ints)
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "cpu backend: offsets for batch %lld",
                             (long long)batch);
  int64_t* q_offsets = ints;
  int64_t* kv_offsets = q_offsets + batch + 1;
  seq_cost_t* cost = (seq_cost_t*)(kv_offsets + batch + 1);
  int64_t* order = (int64_t*)(cost + batch);
  widen_offsets(call->q.offsets, call->q.offsets_type, batch + 1, q_offsets);
  widen_offsets(call->k.offsets, call->k.offsets_type, batch + 1, kv_offsets);
  double flops = 0;
  int64_t max_kv = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t lq = q_offsets[b + 1] - q_offsets[b], lk = kv_offsets[b + 1] - kv_offsets[b];
    cost[b] = (seq_cost_t){lq * (lk + 1), b}; /* + 1: empty key sequences still write rows */
    flops += (double)lq * (double)lk * (double)(call->head_dim + call->head_dim_v);
    if (lk > max_kv) max_kv = lk;
  }
  qsort(cost, (size_t)batch, sizeof(*cost), by_cost_descending);
  for (int64_t b = 0; b < batch; ++b) order[b] = cost[b].index;

  cpu_job_t job = {
      .call = call,
      .q_offsets = q_offsets,
      .kv_offsets = kv_offsets,
      .order = order,
      .num_items = batch * call->heads,
      .next_item = 0,
      .f64 = call->q.dtype == JSDPA_DTYPE_FP64 || call->options.precision == JSDPA_PRECISION_FP64,
  };
  job.scratch_elements = (size_t)(max_kv * (call->head_dim + call->head_dim_v + 1) +
                                  call->head_dim + call->head_dim_v);
  const size_t scratch_bytes = job.scratch_elements * (job.f64 ? sizeof(double) : sizeof(float));

  /* A thread is worth starting for about a million multiply-adds. */
  flops *= (double)call->heads;
  int threads = ctx->cpu_threads;
  if ((double)threads > flops / (1 << 20) + 1) threads = (int)(flops / (1 << 20)) + 1;
  if (threads > job.num_items) threads = (int)job.num_items;
  if (threads < 1) threads = 1;

  cpu_worker_t* workers = calloc((size_t)threads, sizeof(*workers));
  pthread_t* ids = calloc((size_t)threads, sizeof(*ids));
  char* scratch = malloc(scratch_bytes * (size_t)threads);
  if (!workers || !ids || !scratch) {
    free(workers);
    free(ids);
    free(scratch);
    free(ints);
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY,
                             "cpu backend: %zu bytes of scratch for %d threads",
                             scratch_bytes * (size_t)threads, threads);
  }
  int started = 0;
  for (int t = 0; t < threads; ++t) {
    workers[t] = (cpu_worker_t){&job, scratch + scratch_bytes * (size_t)t};
    if (t > 0 && pthread_create(&ids[started + 1], NULL, worker_main, &workers[t]) == 0) ++started;
  }
  worker_main(&workers[0]);
  for (int t = 1; t <= started; ++t) pthread_join(ids[t], NULL);
  jsdpa_log(ctx, 2, "cpu backend: %lld items on %d threads, %s accumulation",
            (long long)job.num_items, started + 1, job.f64 ? "fp64" : "fp32");
  free(workers);
  free(ids);
  free(scratch);
  free(ints);
  return NULL;
}

static bool cpu_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                        size_t capacity) {
  (void)ctx;
  if (call->memory != JSDPA_MEMORY_HOST) {
    snprintf(why, capacity, "the data is in device %d memory (the cpu backend reads host memory)",
             call->device);
    return false;
  }
  return true;
}

const jsdpa_backend_impl_t jsdpa_backend_cpu = {
    .id = JSDPA_BACKEND_CPU,
    .name = "cpu",
    .can_run = cpu_can_run,
    .run = cpu_run,
};
