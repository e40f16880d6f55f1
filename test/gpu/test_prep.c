/* The jagged prep kernel (templates/prep.cu through runtime/jagged.c), checked
 * on its own outputs: int32 offsets equal to the caller's, max lengths, the
 * work list (every (sequence, tile) exactly once; each sequence's tiles one
 * run, its last tile first; runs ordered by non-increasing sequence cost),
 * the schedule fields; and its error codes for malformed offsets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* The cost the prep kernel gives a tile (key blocks visited), as its comment
 * defines it: all key blocks, or under bottom-right causal only the visible. */
static int64_t tile_cost(int64_t lq, int64_t lk, int64_t m, int bm, int bn, bool causal) {
  int64_t keys = lk;
  if (causal) {
    int64_t last_row = (m + 1) * bm < lq ? (m + 1) * bm : lq;
    keys = last_row + lk - lq;
    keys = keys < 0 ? 0 : keys > lk ? lk : keys;
  }
  return (keys + bn - 1) / bn;
}

/* The bucket order the kernel sorts by: exact below 1024 buckets, scaled above. */
static int64_t bucket(int64_t cost, int64_t max_cost) {
  return max_cost < 1024 ? cost : cost * 1023 / max_cost;
}

typedef struct prep_result_s {
  jsdpa_schedule_t schedule;
  int* q_offsets;
  int* kv_offsets;
  jsdpa_work_t* work;
  int max_work;
} prep_result_t;

/* Runs only the prep stage for the case's device tensors. */
static bool run_prep(jsdpa_context_t* ctx, const testutil_case_t* c,
                     const testutil_device_case_t* d, int bm, int bn, bool causal,
                     prep_result_t* r) {
  memset(r, 0, sizeof(*r));
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = causal;
  jsdpa_call_t call;
  if (!CHECK_OK(jsdpa_validate(ctx, &o, &d->q, &d->k, &d->v, &d->out, d->lse, &call))) return false;
  if (!CHECK_OK(jsdpa_context_push(ctx))) return false;
  jsdpa_workspace_t ws;
  jsdpa_params_t params;
  memset(&params, 0, sizeof(params));
  bool ok = CHECK_OK(jsdpa_prepare_jagged(ctx, &call, bm, bn, &ws, &params));
  if (ok) {
    const jsdpa_cuda_driver_t* cu = ctx->cu;
    const size_t n = (size_t)(c->config.batch + 1);
    r->max_work = params.max_work;
    r->q_offsets = malloc(n * sizeof(int));
    r->kv_offsets = malloc(n * sizeof(int));
    r->work = malloc((size_t)(params.max_work ? params.max_work : 1) * sizeof(jsdpa_work_t));
    ok = CHECK(cu->cuCtxSynchronize() == CUDA_SUCCESS, "prep kernel failed") &&
         CHECK(cu->cuMemcpyDtoH(&r->schedule, (CUdeviceptr)(uintptr_t)params.schedule,
                                sizeof(r->schedule)) == CUDA_SUCCESS &&
                   cu->cuMemcpyDtoH(r->q_offsets, (CUdeviceptr)(uintptr_t)params.q_offsets,
                                    n * sizeof(int)) == CUDA_SUCCESS &&
                   cu->cuMemcpyDtoH(r->kv_offsets, (CUdeviceptr)(uintptr_t)params.kv_offsets,
                                    n * sizeof(int)) == CUDA_SUCCESS &&
                   cu->cuMemcpyDtoH(r->work, (CUdeviceptr)(uintptr_t)params.work,
                                    (size_t)params.max_work * sizeof(jsdpa_work_t)) == CUDA_SUCCESS,
               "copying the prep results back");
    jsdpa_workspace_release(ctx, &call, &ws);
  }
  jsdpa_context_pop(ctx);
  return ok;
}

static void free_result(prep_result_t* r) {
  free(r->q_offsets);
  free(r->kv_offsets);
  free(r->work);
}

static void check_schedule(const char* label, const testutil_case_t* c, const prep_result_t* r,
                           int bm, int bn, bool causal) {
  const int64_t batch = c->config.batch;
  int64_t max_q = 0, max_kv = 0, tiles = 0;
  bool offsets_ok = true;
  for (int64_t b = 0; b < batch; ++b) {
    max_q = c->q_lens[b] > max_q ? c->q_lens[b] : max_q;
    max_kv = c->kv_lens[b] > max_kv ? c->kv_lens[b] : max_kv;
    tiles += (c->q_lens[b] + bm - 1) / bm;
  }
  for (int64_t b = 0; b <= batch; ++b) {
    int64_t qo = c->config.offsets_type == JSDPA_INDEX_INT64 ? ((int64_t*)c->q_offsets)[b]
                                                             : ((int32_t*)c->q_offsets)[b];
    int64_t ko = c->config.offsets_type == JSDPA_INDEX_INT64 ? ((int64_t*)c->kv_offsets)[b]
                                                             : ((int32_t*)c->kv_offsets)[b];
    offsets_ok &= r->q_offsets[b] == qo && r->kv_offsets[b] == ko;
  }
  CHECK(offsets_ok, "%s: int32 offsets differ from the caller's", label);
  CHECK(r->schedule.error == 0 && r->schedule.bad_index == -1, "%s: error %d at %d", label,
        r->schedule.error, r->schedule.bad_index);
  CHECK(r->schedule.max_q_len == max_q && r->schedule.max_kv_len == max_kv,
        "%s: max lengths %d/%d, want %lld/%lld", label, r->schedule.max_q_len,
        r->schedule.max_kv_len, (long long)max_q, (long long)max_kv);
  CHECK(r->schedule.tile_counter == 0, "%s: tile_counter %d", label, r->schedule.tile_counter);
  if (!CHECK(r->schedule.num_work == tiles && tiles <= r->max_work,
             "%s: num_work %d, want %lld (capacity %d)", label, r->schedule.num_work,
             (long long)tiles, r->max_work))
    return;

  /* Every tile once: mark (b, m) through the per-sequence tile offsets. */
  int64_t* first_tile = malloc(sizeof(int64_t) * (size_t)(batch + 1));
  first_tile[0] = 0;
  for (int64_t b = 0; b < batch; ++b)
    first_tile[b + 1] = first_tile[b] + (c->q_lens[b] + bm - 1) / bm;
  unsigned char* seen = calloc((size_t)(tiles ? tiles : 1), 1);
  const int64_t max_cost = (max_kv + bn - 1) / bn > 1 ? (max_kv + bn - 1) / bn : 1;
  /* A run is one sequence's tiles, descending from its last; a sequence's
   * cost is its last tile's (the one that sees the most keys). */
  int64_t bad_entry = -1, order_break = -1, run_break = -1, previous = INT64_MAX;
  for (int64_t i = 0; i < tiles; ++i) {
    jsdpa_work_t w = r->work[i];
    if (w.batch < 0 || w.batch >= batch || w.m_block < 0 ||
        first_tile[w.batch] + w.m_block >= first_tile[w.batch + 1] ||
        seen[first_tile[w.batch] + w.m_block]++) {
      bad_entry = i;
      break;
    }
    const int64_t last = (c->q_lens[w.batch] + bm - 1) / bm - 1;
    const bool starts_run = i == 0 || r->work[i - 1].batch != w.batch;
    if (run_break < 0 && (starts_run ? w.m_block != last : w.m_block != r->work[i - 1].m_block - 1))
      run_break = i;
    if (!starts_run) continue;
    int64_t cost =
        bucket(tile_cost(c->q_lens[w.batch], c->kv_lens[w.batch], last, bm, bn, causal), max_cost);
    if (cost > previous && order_break < 0) order_break = i;
    previous = cost;
  }
  CHECK(bad_entry < 0, "%s: work[%lld] is out of range or repeated", label, (long long)bad_entry);
  CHECK(run_break < 0, "%s: work[%lld] breaks its sequence's run (last tile first, descending)",
        label, (long long)run_break);
  CHECK(order_break < 0, "%s: work[%lld] starts a sequence that costs more than the one before",
        label, (long long)order_break);
  free(seen);
  free(first_tile);
}

typedef struct shape_s {
  const char* name;
  int64_t batch;
  int64_t min_len, max_len;
  bool cross;
} shape_t;

static void test_schedules(jsdpa_context_t* ctx) {
  static const shape_t shapes[] = {
      {"few long", 3, 0, 9000, false},
      {"many short", 3000, 0, 40, false},
      {"mixed cross", 64, 0, 2048, true},
      {"empty and tiny", 9, 0, 2, true},
  };
  static const int tiles[][2] = {{1, 1}, {64, 64}, {128, 64}, {128, 128}, {192, 128}, {64, 176}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); ++s) {
    const shape_t* sh = &shapes[s];
    int64_t* q_lens = malloc(sizeof(int64_t) * (size_t)sh->batch);
    int64_t* kv_lens = malloc(sizeof(int64_t) * (size_t)sh->batch);
    for (int64_t b = 0; b < sh->batch; ++b) {
      q_lens[b] = testutil_rand_int(sh->min_len, sh->max_len);
      kv_lens[b] = sh->cross ? testutil_rand_int(sh->min_len, sh->max_len) : q_lens[b];
    }
    q_lens[0] += 1; /* never zero tokens in total */
    kv_lens[0] += 1;
    testutil_case_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.batch = sh->batch;
    cfg.q_lens = q_lens;
    cfg.kv_lens = kv_lens;
    cfg.heads = 1;
    cfg.kv_heads = 1;
    cfg.head_dim = 8;
    cfg.dtype = JSDPA_DTYPE_FP16;
    cfg.offsets_type = testutil_rand_int(0, 1) ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32;
    testutil_case_t* c = testutil_case_create(&cfg);
    for (int on_device = 0; on_device < 2; ++on_device) {
      testutil_device_case_t d;
      testutil_device_case_upload(c, on_device, &d);
      for (size_t t = 0; t < sizeof(tiles) / sizeof(tiles[0]); ++t)
        for (int causal = 0; causal < 2; ++causal) {
          char label[256];
          snprintf(label, sizeof(label), "%s (B %lld, %s offsets on the %s) tile %dx%d%s", sh->name,
                   (long long)sh->batch, cfg.offsets_type == JSDPA_INDEX_INT64 ? "int64" : "int32",
                   on_device ? "device" : "host", tiles[t][0], tiles[t][1],
                   causal ? " causal" : "");
          prep_result_t r;
          if (run_prep(ctx, c, &d, tiles[t][0], tiles[t][1], causal, &r))
            check_schedule(label, c, &r, tiles[t][0], tiles[t][1], causal);
          free_result(&r);
        }
      testutil_device_case_free(&d);
    }
    printf("  %s: schedules checked\n", sh->name);
    testutil_case_destroy(c);
    free(q_lens);
    free(kv_lens);
  }
}

/* Malformed device offsets: the first error in q-then-kv, start-decrease-end
 * order, with its index; no work; the context's sticky word set. */
static void test_errors(jsdpa_context_t* ctx) {
  static const struct {
    const char* name;
    bool kv;
    int index;
    int64_t value;
    int error;
  } cases[] = {
      {"q start", false, 0, 2, JSDPA_PREP_ERR_Q_START},
      {"q decrease", false, 3, 1, JSDPA_PREP_ERR_Q_DECREASE},
      {"q negative", false, 2, -5, JSDPA_PREP_ERR_Q_DECREASE},
      {"q end", false, 6, 1, JSDPA_PREP_ERR_Q_END},
      {"kv start", true, 0, 1, JSDPA_PREP_ERR_KV_START},
      {"kv decrease", true, 5, 0, JSDPA_PREP_ERR_KV_DECREASE},
      {"kv end", true, 6, 3, JSDPA_PREP_ERR_KV_END},
      {"kv wraps in int32", true, 4, ((int64_t)1 << 32) + 20, JSDPA_PREP_ERR_KV_DECREASE},
  };
  int64_t lens[6] = {10, 20, 30, 40, 50, 60};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    testutil_case_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.batch = 6;
    cfg.q_lens = lens;
    cfg.heads = 1;
    cfg.kv_heads = 1;
    cfg.head_dim = 8;
    cfg.dtype = JSDPA_DTYPE_FP16;
    cfg.offsets_type = JSDPA_INDEX_INT64;
    testutil_case_t* c = testutil_case_create(&cfg);
    testutil_device_case_t d;
    testutil_device_case_upload(c, true, &d);
    int64_t off[7];
    memcpy(off, cases[i].kv ? c->kv_offsets : c->q_offsets, sizeof(off));
    if (cases[i].index == 6)
      off[6] -= cases[i].value; /* the end: total - value */
    else
      off[cases[i].index] = cases[i].value;
    void* dst = cases[i].kv ? d.kv_offsets : d.q_offsets;
    void* staging = testutil_to_device(off, sizeof(off));
    CHECK(ctx->cu->cuMemcpyDtoD((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)staging,
                                sizeof(off)) == CUDA_SUCCESS,
          "copy");
    testutil_device_free(staging);
    prep_result_t r;
    if (run_prep(ctx, c, &d, 64, 64, false, &r)) {
      CHECK(r.schedule.error == cases[i].error && r.schedule.bad_index == cases[i].index &&
                r.schedule.num_work == 0,
            "%s: error %d at %d with %d work, want error %d at %d", cases[i].name, r.schedule.error,
            r.schedule.bad_index, r.schedule.num_work, cases[i].error, cases[i].index);
      CHECK_STATUS(jsdpa_context_check_device_errors(ctx, NULL), JSDPA_STATUS_INVALID_ARGUMENT,
                   "offsets");
    }
    free_result(&r);
    testutil_device_case_free(&d);
    testutil_case_destroy(c);
  }
  CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL));
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  testutil_require_gpu();
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  jsdpa_context_t* ctx = NULL;
  if (!CHECK_OK(jsdpa_context_create(&co, &ctx))) return testutil_finish();
  if (CHECK(ctx->gpu, "no GPU in the context: %s", ctx->gpu_reason)) {
    test_schedules(ctx);
    test_errors(ctx);
  }
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
