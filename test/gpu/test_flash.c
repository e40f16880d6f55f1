/* The flash backend on the GPU against the float64 oracle under the 2x rule,
 * outputs NaN-poisoned before every call:
 *  - FlashAttention's (Lq, Lk) sweep in batches whose every 5th sequence is
 *    empty (plus queries without keys), heads 6 with kv heads 6/2/1, head dims
 *    40..256, causal and not, fp16 and bf16, contiguous / padded / head-major
 *    layouts, LSE, offsets on the host or the device, int32 or int64;
 *  - head dims whose rows are not 16-byte aligned (59, 111 contiguous): flash
 *    must refuse with a reason and the call must still run right elsewhere;
 *    the same dims on 16-byte aligned rows (a 64 / 112 wide buffer) run on
 *    flash, with NaN in the columns past the head dim;
 *  - long pairs up to 2048 x 2048, packed QKV, windows, softcap, custom scale;
 *  - +Inf in some sequences' keys and values leaves the others' outputs alone;
 *  - the reasons for fp32, head dim > 256 and a negative scale. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct pair_s {
  int64_t lq, lk;
} pair_t;

/* FlashAttention's test pairs, split by cost (the float64 references run on
 * one host thread): the short ones in every sweep batch, whose indices 4 and
 * 9 are empty (every 5th) and where (7, 0) has queries but no keys (zeros,
 * LSE -inf) and (200, 3) causal rows that see none; the longer ones below on
 * fewer heads and head dims. */
static const pair_t sweep_pairs[] = {{1, 147}, {113, 203}, {128, 217}, {108, 256}, {0, 0},
                                     {7, 0},   {64, 64},   {33, 17},   {200, 3},   {0, 5}};
static const pair_t mid_pairs[] = {{256, 512}, {512, 256}};
static const pair_t large_pairs[] = {{1023, 1024}, {1024, 1023}};
static const pair_t square_pair[] = {{2048, 2048}};
enum { sweep_count = sizeof(sweep_pairs) / sizeof(sweep_pairs[0]) };

typedef struct flash_case_s {
  const char* name;
  jsdpa_dtype_t dtype;
  int64_t head_dim;
  int64_t heads, kv_heads;
  bool causal;
  testutil_layout_t layout;
  bool lse;
  jsdpa_index_type_t offsets_type;
  bool offsets_on_device;
  const pair_t* pairs;
  int64_t batch;
  int64_t window_left, window_right;
  float softcap;
  double scale;     /* NaN: the default */
  int64_t view_dim; /* > 0: run on the first view_dim columns of head_dim-wide rows */
} flash_case_t;

static testutil_case_t* make_case(const flash_case_t* fc) {
  int64_t q_lens[16], kv_lens[16];
  for (int64_t b = 0; b < fc->batch; ++b) q_lens[b] = fc->pairs[b].lq, kv_lens[b] = fc->pairs[b].lk;
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = fc->batch;
  cfg.q_lens = q_lens;
  cfg.kv_lens = kv_lens;
  cfg.heads = fc->heads;
  cfg.kv_heads = fc->kv_heads;
  cfg.head_dim = fc->head_dim;
  cfg.dtype = fc->dtype;
  cfg.offsets_type = fc->offsets_type;
  cfg.layout = fc->layout;
  cfg.with_lse = fc->lse;
  testutil_case_t* c = testutil_case_create(&cfg);
  if (fc->view_dim > 0) {
    /* Narrow every descriptor to view_dim columns of the contiguous rows and
     * put NaN in the columns past it: reading them would poison the result,
     * writing them breaks the gap check. */
    jsdpa_jagged_t* ts[4] = {&c->q, &c->k, &c->v, &c->out};
    for (int i = 0; i < 4; ++i) {
      ts[i]->head_stride = fc->head_dim;
      ts[i]->token_stride = ts[i]->heads * fc->head_dim;
      ts[i]->head_dim = fc->view_dim;
    }
    for (int i = 0; i < 3; ++i)
      for (int64_t t = 0; t < ts[i]->total_tokens; ++t)
        for (int64_t h = 0; h < ts[i]->heads; ++h)
          for (int64_t e = fc->view_dim; e < fc->head_dim; ++e)
            memset((char*)ts[i]->data + 2 * (t * ts[i]->token_stride + h * ts[i]->head_stride + e),
                   0xff, 2);
    c->config.head_dim = c->config.head_dim_v = fc->view_dim;
  }
  return c;
}

static void options_of(const flash_case_t* fc, jsdpa_forward_options_t* o) {
  jsdpa_forward_options_initialize(o);
  o->is_causal = fc->causal;
  o->window_left = fc->window_left;
  o->window_right = fc->window_right;
  o->softcap = fc->softcap;
  if (fc->scale == fc->scale) o->scale = fc->scale;
}

/* Runs the case forced onto flash (or, when `expect_reject` names a fragment
 * of flash's reason, checks that reason and runs the automatic choice). */
static void run_case(jsdpa_context_t* ctx, const flash_case_t* fc, const char* expect_reject) {
  testutil_case_t* c = make_case(fc);
  testutil_device_case_t d;
  testutil_device_case_upload(c, fc->offsets_on_device, &d);
  jsdpa_forward_options_t o;
  options_of(fc, &o);

  char desc[256], label[1024];
  testutil_case_describe(c, desc, sizeof(desc));
  jsdpa_selection_t sel;
  bool ok = CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse, &sel));
  if (ok && expect_reject) {
    const char* why = sel.reasons[JSDPA_BACKEND_FLASH];
    CHECK(strstr(why, expect_reject) != NULL, "%s [%s]: flash's reason \"%s\" lacks \"%s\"",
          fc->name, desc, why, expect_reject);
    snprintf(label, sizeof(label), "%s on %s [%s]", fc->name, jsdpa_backend_name(sel.backend),
             desc);
  } else if (ok) {
    ok = CHECK(sel.backend == JSDPA_BACKEND_FLASH, "%s [%s]: auto chose %s; flash: %s", fc->name,
               desc, jsdpa_backend_name(sel.backend), sel.reasons[JSDPA_BACKEND_FLASH]);
    o.backend = JSDPA_BACKEND_FLASH;
    snprintf(label, sizeof(label), "flash %s [%s, offsets on the %s]", fc->name, desc,
             fc->offsets_on_device ? "device" : "host");
  }
  if (ok && CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse)) &&
      CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL))) {
    testutil_device_case_download(c, &d);
    testutil_case_check(label, c, &o, 0);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

/* A reason, without running: fp32, head dim above 256, a negative scale. */
static void check_reason(jsdpa_context_t* ctx, jsdpa_dtype_t dtype, int64_t head_dim, double scale,
                         const char* expect) {
  int64_t lens[2] = {5, 9};
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = 2;
  cfg.q_lens = lens;
  cfg.heads = 2;
  cfg.kv_heads = 2;
  cfg.head_dim = head_dim;
  cfg.dtype = dtype;
  testutil_case_t* c = testutil_case_create(&cfg);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  if (scale == scale) o.scale = scale;
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL, &sel))) {
    const char* why = sel.reasons[JSDPA_BACKEND_FLASH];
    CHECK(strstr(why, expect) != NULL, "%s d%lld scale %g: flash's reason \"%s\" lacks \"%s\"",
          jsdpa_dtype_name(dtype), (long long)head_dim, scale, why, expect);
    printf("flash rejects %s d%lld scale %g: %s\n", jsdpa_dtype_name(dtype), (long long)head_dim,
           scale, why);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

/* A non-finite key or value in one sequence must not reach another: the
 * kernels load whole blocks of rows, and a block that runs past a sequence's
 * end into its neighbour's values computes 0 * Inf = NaN unless those rows
 * are zeros. Runs a batch twice, the second time with the odd sequences'
 * keys and values all +Inf, and wants the even ones' outputs unchanged, bit
 * for bit (the first run is also checked against the oracle). Each even
 * sequence ends inside a 16-row chunk, right before a poisoned one, at a row
 * that a different consumer warpgroup of the Hopper template reads first:
 * 37 tokens (warpgroup 0), 150 (warpgroup 1 of the 128-row tile), 200
 * (warpgroup 2 of the 192-row tile at d64). */
static void check_isolation(jsdpa_context_t* ctx, jsdpa_dtype_t dtype, int64_t head_dim,
                            bool causal) {
  static const int64_t lens[] = {37, 100, 150, 64, 200, 45};
  const int64_t batch = sizeof(lens) / sizeof(lens[0]), heads = 2;
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = batch;
  cfg.q_lens = lens;
  cfg.heads = cfg.kv_heads = heads;
  cfg.head_dim = head_dim;
  cfg.dtype = dtype;
  testutil_case_t* c = testutil_case_create(&cfg);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = causal;
  o.backend = JSDPA_BACKEND_FLASH;
  char desc[256], label[400];
  testutil_case_describe(c, desc, sizeof(desc));
  snprintf(label, sizeof(label), "flash isolation%s [%s]", causal ? " causal" : "", desc);
  unsigned char* before = malloc(c->out_bytes);
  bool ok = true;
  for (int run = 0; run < 2 && ok; ++run) {
    for (int64_t b = 0, t0 = 0; run == 1 && b < batch; t0 += lens[b++])
      for (int64_t i = t0 * heads * head_dim; b % 2 && i < (t0 + lens[b]) * heads * head_dim; ++i) {
        testutil_store(c->k.data, dtype, i, INFINITY);
        testutil_store(c->v.data, dtype, i, INFINITY);
      }
    testutil_device_case_t d;
    testutil_device_case_upload(c, true, &d);
    ok = CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse)) &&
         CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL));
    if (ok) testutil_device_case_download(c, &d);
    testutil_device_case_free(&d);
    if (ok && run == 0) {
      testutil_case_check(label, c, &o, 0);
      memcpy(before, c->out.data, c->out_bytes);
    }
  }
  if (ok) {
    int64_t changed = -1;
    const size_t es = testutil_dtype_size(dtype), row = (size_t)(heads * head_dim) * es;
    for (int64_t b = 0, t0 = 0; b < batch; t0 += lens[b++])
      for (int64_t t = t0; b % 2 == 0 && t < t0 + lens[b] && changed < 0; ++t)
        if (memcmp(before + t * row, (unsigned char*)c->out.data + t * row, row)) changed = t;
    CHECK(changed < 0, "%s: +Inf in the odd sequences' keys and values changed token %lld's output",
          label, (long long)changed);
  }
  free(before);
  testutil_case_destroy(c);
}

static flash_case_t base_case(const char* name, jsdpa_dtype_t dtype, int64_t head_dim,
                              bool causal) {
  flash_case_t fc;
  memset(&fc, 0, sizeof(fc));
  fc.name = name;
  fc.dtype = dtype;
  fc.head_dim = head_dim;
  fc.heads = 6;
  fc.kv_heads = 6;
  fc.causal = causal;
  fc.layout = TESTUTIL_LAYOUT_CONTIGUOUS;
  fc.lse = true;
  fc.offsets_type = JSDPA_INDEX_INT32;
  fc.pairs = sweep_pairs;
  fc.batch = sweep_count;
  fc.window_left = fc.window_right = -1;
  fc.scale = NAN;
  return fc;
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  testutil_require_gpu();
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  jsdpa_context_t* ctx = NULL;
  if (!CHECK_OK(jsdpa_context_create(&co, &ctx))) return testutil_finish();
  const char* reason = "";
  if (!CHECK(jsdpa_context_has_gpu(ctx, &reason), "context has no GPU: %s", reason ? reason : "")) {
    jsdpa_context_destroy(ctx);
    return testutil_finish();
  }

  /* The sweep: every head dim, causal and not, the dtypes, kv heads, layouts
   * and offsets placements in rotation. */
  static const int64_t dims[] = {40, 59, 64, 72, 96, 111, 128, 160, 192, 224, 256};
  static const int64_t kv_heads[] = {6, 2, 1};
  static const testutil_layout_t layouts[] = {TESTUTIL_LAYOUT_CONTIGUOUS, TESTUTIL_LAYOUT_PADDED,
                                              TESTUTIL_LAYOUT_HEAD_MAJOR};
  int turn = 0;
  for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); ++i)
    for (int causal = 0; causal < 2; ++causal, ++turn) {
      flash_case_t fc = base_case(causal ? "sweep causal" : "sweep",
                                  turn % 2 ? JSDPA_DTYPE_FP16 : JSDPA_DTYPE_BF16, dims[i], causal);
      fc.kv_heads = kv_heads[turn % 3];
      fc.layout = layouts[turn % 3];
      fc.offsets_on_device = turn % 2 == 0;
      fc.offsets_type = turn % 4 == 3 ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32;
      if (dims[i] % 8) {
        /* Contiguous rows of 59 or 111 elements are not 16-byte aligned. */
        fc.layout = TESTUTIL_LAYOUT_CONTIGUOUS;
        run_case(ctx, &fc, "16 bytes");
        /* The same dim on aligned rows runs on flash. */
        fc.name = causal ? "aligned view causal" : "aligned view";
        fc.view_dim = dims[i];
        fc.head_dim = (dims[i] + 7) / 8 * 8;
        run_case(ctx, &fc, NULL);
      } else {
        run_case(ctx, &fc, NULL);
      }
    }

  /* Longer pairs, self and cross lengths. */
  for (int64_t d = 64; d <= 256; d *= 4) {
    flash_case_t fc =
        base_case("256/512 pairs", d == 64 ? JSDPA_DTYPE_FP16 : JSDPA_DTYPE_BF16, d, d == 256);
    fc.heads = 2;
    fc.kv_heads = 1;
    fc.pairs = mid_pairs;
    fc.batch = 2;
    run_case(ctx, &fc, NULL);
  }
  for (int causal = 0; causal < 2; ++causal) {
    flash_case_t fc =
        base_case("1023/1024 pairs", causal ? JSDPA_DTYPE_BF16 : JSDPA_DTYPE_FP16, 64, causal);
    fc.heads = fc.kv_heads = 1;
    fc.pairs = large_pairs;
    fc.batch = 2;
    fc.offsets_on_device = causal;
    run_case(ctx, &fc, NULL);
  }
  {
    flash_case_t fc = base_case("2048 square", JSDPA_DTYPE_BF16, 64, true);
    fc.heads = fc.kv_heads = 1;
    fc.pairs = square_pair;
    fc.batch = 1;
    run_case(ctx, &fc, NULL);
  }

  /* Packed QKV (self-attention lengths). */
  static const pair_t self[] = {{300, 300}, {0, 0}, {77, 77}, {129, 129}, {1, 1}};
  for (int64_t d = 64; d <= 128; d *= 2) {
    flash_case_t fc = base_case("packed qkv", JSDPA_DTYPE_BF16, d, d == 64);
    fc.kv_heads = 2;
    fc.layout = TESTUTIL_LAYOUT_PACKED_QKV;
    fc.pairs = self;
    fc.batch = 5;
    fc.offsets_on_device = true;
    run_case(ctx, &fc, NULL);
  }

  /* Windows, softcap, custom scale, no LSE. */
  {
    flash_case_t fc = base_case("window 100/20", JSDPA_DTYPE_BF16, 128, false);
    fc.heads = fc.kv_heads = 4;
    fc.window_left = 100;
    fc.window_right = 20;
    run_case(ctx, &fc, NULL);
    fc.name = "causal window 64";
    fc.causal = true;
    fc.window_left = 64;
    fc.window_right = -1;
    fc.offsets_on_device = true;
    run_case(ctx, &fc, NULL);
    fc.name = "causal softcap 5, scale 0.3";
    fc.window_left = -1;
    fc.softcap = 5.0f;
    fc.scale = 0.3;
    run_case(ctx, &fc, NULL);
    fc.name = "fp16 causal, no lse, int64 offsets";
    fc.softcap = 0;
    fc.scale = NAN;
    fc.lse = false;
    fc.dtype = JSDPA_DTYPE_FP16;
    fc.offsets_type = JSDPA_INDEX_INT64;
    run_case(ctx, &fc, NULL);
  }

  for (int64_t d = 64; d <= 256; d *= 2) {
    check_isolation(ctx, d == 128 ? JSDPA_DTYPE_FP16 : JSDPA_DTYPE_BF16, d, false);
    check_isolation(ctx, JSDPA_DTYPE_BF16, d, true);
  }

  check_reason(ctx, JSDPA_DTYPE_FP32, 64, NAN, "fp16 and bf16");
  check_reason(ctx, JSDPA_DTYPE_BF16, 320, NAN, "256");
  check_reason(ctx, JSDPA_DTYPE_BF16, 64, -0.125, "not positive");

  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(ctx, &st);
  printf("kernel cache: %lld compiles (%.0f ms), %lld disk hits, %lld memory hits\n",
         (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, (long long)st.memory_hits);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
