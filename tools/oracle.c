/* The float64 check of a candidate's output on a subset of a batch
 * (toolutil.h, "oracle"): references computed once per batch and causal
 * setting, each candidate's rows downloaded and judged under the 2x rule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolutil.h"

/* Sequences within `budget` multiply-adds (L*L*d per checked head): the
 * shortest non-empty one, then the longest if it fits, then others at random. */
static int pick_sequences(const toolutil_batch_t* t, int num_heads, double budget, uint64_t seed,
                          int* out) {
  int n = 0, shortest = -1, longest = -1;
  for (int b = 0; b < t->count; ++b) {
    if (t->lengths[b] == 0) continue;
    if (shortest < 0 || t->lengths[b] < t->lengths[shortest]) shortest = b;
    if (longest < 0 || t->lengths[b] > t->lengths[longest]) longest = b;
  }
  if (shortest < 0) return 0;
  bool* taken = toolutil_xmalloc((size_t)t->count);
  memset(taken, 0, (size_t)t->count);
  double used = 0;
  uint64_t x = seed ? seed : 1;
  for (int tries = 0; tries < 4 * t->count; ++tries) {
    int b = shortest;
    if (tries == 1) b = longest;
    if (tries > 1) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = (int)(x % (uint64_t)t->count);
    }
    const double l = (double)t->lengths[b];
    const double cost = l * l * (double)t->head_dim * num_heads;
    if (taken[b] || t->lengths[b] == 0 || (n > 0 && used + cost > budget)) continue;
    taken[b] = true;
    used += cost;
    out[n++] = b;
  }
  free(taken);
  return n;
}

/* The subset's q/k/v for the chosen heads (kv heads of GQA mapped per q
 * head), in the dtype and widened exactly to float64. */
static void gather(const toolutil_oracle_t* o, const toolutil_batch_t* t, int which, void* small,
                   double* wide) {
  const size_t es = jsdpa_dtype_size(t->dtype);
  const int64_t heads = which == 0 ? t->heads : t->kv_heads;
  const int64_t group = t->heads / t->kv_heads;
  const uint8_t* src = t->host[which];
  size_t at = 0;
  for (int i = 0; i < o->num_seqs; ++i) {
    const int64_t first = t->offsets[o->seqs[i]];
    for (int64_t tok = 0; tok < t->lengths[o->seqs[i]]; ++tok)
      for (int h = 0; h < o->num_heads; ++h, at += (size_t)t->head_dim) {
        const int64_t head = which == 0 ? o->heads[h] : o->heads[h] / group;
        const size_t from = (size_t)(((first + tok) * heads + head) * t->head_dim);
        memcpy((uint8_t*)small + at * es, src + from * es, (size_t)t->head_dim * es);
        for (int64_t d = 0; d < t->head_dim; ++d)
          wide[at + (size_t)d] = jsdpa_element_load(small, t->dtype, at + (size_t)d);
      }
  }
}

void toolutil_oracle_create(toolutil_oracle_t* o, jsdpa_context_t* ctx, const toolutil_batch_t* t,
                            bool causal, double budget, uint64_t seed) {
  memset(o, 0, sizeof(*o));
  o->dtype = t->dtype;
  o->head_dim = t->head_dim;
  o->causal = causal;
  o->floor = t->dtype == JSDPA_DTYPE_FP32   ? 0x1.0p-20
             : t->dtype == JSDPA_DTYPE_BF16 ? 0x1.0p-7
                                            : 0x1.0p-10;
  o->num_heads = t->heads < 4 ? (int)t->heads : 4;
  o->heads = toolutil_xmalloc(sizeof(int64_t) * (size_t)o->num_heads);
  for (int h = 0; h < o->num_heads; ++h)
    o->heads[h] = o->num_heads > 1 ? h * (t->heads - 1) / (o->num_heads - 1) : 0;
  o->seqs = toolutil_xmalloc(sizeof(int) * (size_t)(t->count ? t->count : 1));
  o->num_seqs = pick_sequences(t, o->num_heads, budget, seed, o->seqs);
  o->sub_offsets = toolutil_xmalloc(sizeof(int32_t) * (size_t)(o->num_seqs + 1));
  o->sub_offsets[0] = 0;
  for (int i = 0; i < o->num_seqs; ++i)
    o->sub_offsets[i + 1] = o->sub_offsets[i] + (int32_t)t->lengths[o->seqs[i]];
  o->total = o->sub_offsets[o->num_seqs];
  if (o->total == 0) return;

  const size_t es = jsdpa_dtype_size(t->dtype);
  const size_t count = (size_t)(o->total * o->num_heads * t->head_dim);
  void* small[3];
  double* wide[3];
  for (int i = 0; i < 3; ++i) {
    small[i] = toolutil_xmalloc(count * es);
    wide[i] = toolutil_xmalloc(count * sizeof(double));
    gather(o, t, i, small[i], wide[i]);
  }
  o->reference = toolutil_xmalloc(count * sizeof(double));
  void* same = toolutil_xmalloc(count * es);

  jsdpa_forward_options_t fo;
  jsdpa_forward_options_initialize(&fo);
  fo.is_causal = causal;
  fo.backend = JSDPA_BACKEND_CPU;
  jsdpa_jagged_t q, k, v, out;
  const int64_t nh = o->num_heads, d = t->head_dim, total = o->total;
  jsdpa_jagged_initialize(&q, wide[0], JSDPA_DTYPE_FP64, total, nh, d, o->sub_offsets,
                          JSDPA_INDEX_INT32, o->num_seqs);
  jsdpa_jagged_initialize(&k, wide[1], JSDPA_DTYPE_FP64, total, nh, d, o->sub_offsets,
                          JSDPA_INDEX_INT32, o->num_seqs);
  jsdpa_jagged_initialize(&v, wide[2], JSDPA_DTYPE_FP64, total, nh, d, o->sub_offsets,
                          JSDPA_INDEX_INT32, o->num_seqs);
  jsdpa_jagged_initialize(&out, o->reference, JSDPA_DTYPE_FP64, total, nh, d, NULL,
                          JSDPA_INDEX_INT32, o->num_seqs);
  fo.precision = JSDPA_PRECISION_FP64;
  jsdpa_status_t s = jsdpa_forward(ctx, &fo, &q, &k, &v, &out, NULL);
  if (s) toolutil_die_status("float64 oracle (cpu backend)", s);

  q.data = small[0], k.data = small[1], v.data = small[2], out.data = same;
  q.dtype = k.dtype = v.dtype = out.dtype = t->dtype;
  fo.precision = JSDPA_PRECISION_DEFAULT;
  s = jsdpa_forward(ctx, &fo, &q, &k, &v, &out, NULL);
  if (s) toolutil_die_status("same-precision reference (cpu backend, fp32 accumulation)", s);
  for (size_t i = 0; i < count; ++i) {
    const double e = fabs(jsdpa_element_load(same, t->dtype, i) - o->reference[i]);
    if (e > o->same_error) o->same_error = e;
  }
  for (int i = 0; i < 3; ++i) {
    free(small[i]);
    free(wide[i]);
  }
  free(same);
}

toolutil_verdict_t toolutil_oracle_judge(const toolutil_oracle_t* o, const toolutil_batch_t* t,
                                         const jsdpa_cuda_driver_t* cu, bool fault) {
  toolutil_verdict_t v = {.bound = 2 * o->same_error + o->floor};
  const size_t es = jsdpa_dtype_size(t->dtype);
  const size_t row = (size_t)(t->heads * t->head_dim);
  if (fault && o->num_seqs > 0) {
    /* 8.0 where the reference is a mean of values in [-2, 2): plainly wrong. */
    const uint32_t bits = t->dtype == JSDPA_DTYPE_FP32   ? 0x41000000u
                          : t->dtype == JSDPA_DTYPE_BF16 ? 0x4100u
                                                         : 0x4800u;
    const size_t at = ((size_t)t->offsets[o->seqs[0]] * row + (size_t)(o->heads[0] * t->head_dim));
    TOOLUTIL_CU(cu, cuMemcpyHtoD(t->buffers[3] + at * es, &bits, es));
  }
  uint8_t* rows = NULL;
  size_t capacity = 0;
  for (int i = 0; i < o->num_seqs; ++i) {
    const int b = o->seqs[i];
    const size_t bytes = (size_t)t->lengths[b] * row * es;
    if (bytes > capacity) {
      free(rows);
      rows = toolutil_xmalloc(bytes);
      capacity = bytes;
    }
    TOOLUTIL_CU(cu, cuMemcpyDtoH(rows, t->buffers[3] + (size_t)t->offsets[b] * row * es, bytes));
    for (int64_t tok = 0; tok < t->lengths[b]; ++tok)
      for (int h = 0; h < o->num_heads; ++h)
        for (int64_t d = 0; d < t->head_dim; ++d) {
          const double x = jsdpa_element_load(
              rows, t->dtype,
              (size_t)(tok * (int64_t)row) + (size_t)(o->heads[h] * t->head_dim + d));
          const double ref =
              o->reference[((size_t)(o->sub_offsets[i] + tok) * (size_t)o->num_heads + (size_t)h) *
                               (size_t)t->head_dim +
                           (size_t)d];
          if (!isfinite(x)) {
            ++v.nonfinite;
            continue;
          }
          if (fabs(x - ref) > v.max_error) v.max_error = fabs(x - ref);
        }
  }
  free(rows);
  v.ok = v.nonfinite == 0 && v.max_error <= v.bound;
  return v;
}

void toolutil_oracle_free(toolutil_oracle_t* o) {
  free(o->seqs);
  free(o->heads);
  free(o->sub_offsets);
  free(o->reference);
  memset(o, 0, sizeof(*o));
}
