/* The efficient backend on the GPU against the float64 oracle under the 2x
 * rule, outputs NaN-poisoned before every call:
 *  - fp32 (3xTF32, fp32-sized floor) on FlashAttention's (Lq, Lk) sweep with
 *    every 5th sequence empty, head dims 8..512, causal and not, kv heads
 *    6/2/1, contiguous / padded / head-major layouts, LSE, offsets on the
 *    host or the device, int32 or int64; and the opt-in TF32 pass (a TF32-
 *    sized floor: 10 mantissa bits like fp16);
 *  - fp16/bf16 past flash's 256 (320, 512, 1024) and MLA's qk 576 / v 512,
 *    value head dims different from the query/key one in both directions;
 *    equal dims in 257..512 run twice: as chosen (on sm_90a the wide wgmma
 *    template, flash_sm90.cu) and with JSDPA_EFFICIENT_SM80=1 (efficient.cu);
 *    so do the fp32 sweep's head dims 65..128 (3xTF32 wgmma on sm_90a);
 *  - long pairs (1023/1024, 2048 square), windows, softcap, custom scale;
 *  - automatic choice: efficient for all of the above (math is never chosen
 *    when efficient can run), flash still first for what it takes, and the
 *    reasons when rows are not 16-byte aligned. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct pair_s {
  int64_t lq, lk;
} pair_t;

static const pair_t sweep_pairs[] = {{1, 147}, {113, 203}, {128, 217}, {108, 256}, {0, 0},
                                     {7, 0},   {64, 64},   {33, 17},   {200, 3},   {0, 5}};
static const pair_t large_pairs[] = {{1023, 1024}, {1024, 1023}};
static const pair_t square_pair[] = {{2048, 2048}};
enum { sweep_count = sizeof(sweep_pairs) / sizeof(sweep_pairs[0]) };

typedef struct eff_case_s {
  const char* name;
  jsdpa_dtype_t dtype;
  int64_t head_dim, head_dim_v;
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
  double scale;           /* NaN: the default */
  bool tf32;              /* options.precision = TF32 */
  jsdpa_backend_t expect; /* what the automatic choice must be */
} eff_case_t;

static void run_case(jsdpa_context_t* ctx, const eff_case_t* ec) {
  int64_t q_lens[16], kv_lens[16];
  for (int64_t b = 0; b < ec->batch; ++b) q_lens[b] = ec->pairs[b].lq, kv_lens[b] = ec->pairs[b].lk;
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = ec->batch;
  cfg.q_lens = q_lens;
  cfg.kv_lens = kv_lens;
  cfg.heads = ec->heads;
  cfg.kv_heads = ec->kv_heads;
  cfg.head_dim = ec->head_dim;
  cfg.head_dim_v = ec->head_dim_v;
  cfg.dtype = ec->dtype;
  cfg.offsets_type = ec->offsets_type;
  cfg.layout = ec->layout;
  cfg.with_lse = ec->lse;
  testutil_case_t* c = testutil_case_create(&cfg);
  testutil_device_case_t d;
  testutil_device_case_upload(c, ec->offsets_on_device, &d);

  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = ec->causal;
  o.window_left = ec->window_left;
  o.window_right = ec->window_right;
  o.softcap = ec->softcap;
  if (ec->scale == ec->scale) o.scale = ec->scale;
  if (ec->tf32) o.precision = JSDPA_PRECISION_TF32;

  char desc[256], label[1024];
  testutil_case_describe(c, desc, sizeof(desc));
  jsdpa_selection_t sel;
  bool ok = CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse, &sel));
  if (ok)
    ok = CHECK(sel.backend == ec->expect, "%s [%s]: auto chose %s, expected %s; efficient: %s",
               ec->name, desc, jsdpa_backend_name(sel.backend), jsdpa_backend_name(ec->expect),
               sel.reasons[JSDPA_BACKEND_EFFICIENT]);
  /* Always run on efficient, also where flash is preferred. */
  o.backend = JSDPA_BACKEND_EFFICIENT;
  snprintf(label, sizeof(label), "efficient%s %s [%s, offsets on the %s]", ec->tf32 ? " tf32" : "",
           ec->name, desc, ec->offsets_on_device ? "device" : "host");
  if (ok && CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse)) &&
      CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL))) {
    testutil_device_case_download(c, &d);
    /* TF32 keeps 10 mantissa bits: fp16's floor. The same-precision
     * reference of an fp32 case is plain fp32, which TF32 is not. */
    testutil_case_check(label, c, &o, ec->tf32 ? testutil_default_floor(JSDPA_DTYPE_FP16) : 0);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

static eff_case_t base_case(const char* name, jsdpa_dtype_t dtype, int64_t head_dim,
                            int64_t head_dim_v, bool causal) {
  eff_case_t ec;
  memset(&ec, 0, sizeof(ec));
  ec.name = name;
  ec.dtype = dtype;
  ec.head_dim = head_dim;
  ec.head_dim_v = head_dim_v;
  ec.heads = 6;
  ec.kv_heads = 6;
  ec.causal = causal;
  ec.layout = TESTUTIL_LAYOUT_CONTIGUOUS;
  ec.lse = true;
  ec.offsets_type = JSDPA_INDEX_INT32;
  ec.pairs = sweep_pairs;
  ec.batch = sweep_count;
  ec.window_left = ec.window_right = -1;
  ec.scale = NAN;
  ec.expect = JSDPA_BACKEND_EFFICIENT;
  return ec;
}

/* Rows that are not 16-byte aligned: efficient refuses with the reason and
 * the call still runs (on math), correctly. */
static void check_unaligned(jsdpa_context_t* ctx, jsdpa_dtype_t dtype, int64_t head_dim) {
  eff_case_t ec = base_case("unaligned rows", dtype, head_dim, head_dim, false);
  ec.heads = ec.kv_heads = 3;
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  int64_t lens[3] = {5, 0, 19};
  cfg.batch = 3;
  cfg.q_lens = lens;
  cfg.heads = ec.heads;
  cfg.kv_heads = ec.kv_heads;
  cfg.head_dim = head_dim;
  cfg.dtype = dtype;
  testutil_case_t* c = testutil_case_create(&cfg);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL, &sel))) {
    const char* why = sel.reasons[JSDPA_BACKEND_EFFICIENT];
    CHECK(strstr(why, "16 bytes") != NULL, "%s d%lld: efficient's reason \"%s\" lacks \"16 bytes\"",
          jsdpa_dtype_name(dtype), (long long)head_dim, why);
    CHECK(sel.backend == JSDPA_BACKEND_MATH, "%s d%lld: chose %s", jsdpa_dtype_name(dtype),
          (long long)head_dim, jsdpa_backend_name(sel.backend));
    printf("efficient rejects %s d%lld: %s\n", jsdpa_dtype_name(dtype), (long long)head_dim, why);
    char label[128];
    snprintf(label, sizeof(label), "%s d%lld on %s", jsdpa_dtype_name(dtype), (long long)head_dim,
             jsdpa_backend_name(sel.backend));
    if (CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse))) {
      testutil_device_case_download(c, &d);
      testutil_case_check(label, c, &o, 0);
    }
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
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

  static const int64_t kv_heads[] = {6, 2, 1};
  static const testutil_layout_t layouts[] = {TESTUTIL_LAYOUT_CONTIGUOUS, TESTUTIL_LAYOUT_PADDED,
                                              TESTUTIL_LAYOUT_HEAD_MAJOR};
  int turn = 0;

  /* fp32 sweep: the 3xTF32 default, every 3rd case also with TF32. */
  static const int64_t f32_dims[] = {8, 40, 64, 72, 96, 128, 200, 256, 512};
  for (size_t i = 0; i < sizeof(f32_dims) / sizeof(f32_dims[0]); ++i)
    for (int causal = 0; causal < 2; ++causal, ++turn) {
      eff_case_t ec = base_case(causal ? "fp32 sweep causal" : "fp32 sweep", JSDPA_DTYPE_FP32,
                                f32_dims[i], f32_dims[i], causal);
      if (f32_dims[i] > 128) ec.heads = 2;
      ec.kv_heads = ec.heads == 6 ? kv_heads[turn % 3] : (turn % 2 ? 1 : 2);
      ec.layout = layouts[turn % 3];
      ec.offsets_on_device = turn % 2 == 0;
      ec.offsets_type = turn % 4 == 3 ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32;
      run_case(ctx, &ec);
      if (f32_dims[i] > 64 && f32_dims[i] <= 128) {
        setenv("JSDPA_EFFICIENT_SM80", "1", 1);
        ec.name = causal ? "fp32 sweep causal, efficient.cu" : "fp32 sweep, efficient.cu";
        run_case(ctx, &ec);
        unsetenv("JSDPA_EFFICIENT_SM80");
      }
      if (turn % 3 == 0) {
        ec.tf32 = true;
        run_case(ctx, &ec);
      }
    }

  /* 16-bit past flash's range, and unequal value head dims. */
  static const struct {
    int64_t d, dv;
  } big[] = {{320, 320}, {512, 512}, {264, 264}, {576, 512}, {1024, 1024},
             {64, 32},   {192, 128}, {128, 256}, {40, 200},   {256, 64}};
  for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); ++i)
    for (int causal = 0; causal < 2; ++causal, ++turn) {
      eff_case_t ec =
          base_case(causal ? "16-bit causal" : "16-bit",
                    turn % 2 ? JSDPA_DTYPE_FP16 : JSDPA_DTYPE_BF16, big[i].d, big[i].dv, causal);
      ec.heads = big[i].d > 256 ? 2 : 6;
      ec.kv_heads = ec.heads == 6 ? kv_heads[turn % 3] : 1;
      ec.layout = layouts[turn % 3];
      ec.offsets_on_device = turn % 2 == 1;
      run_case(ctx, &ec);
      if (big[i].d == big[i].dv && big[i].d > 256 && big[i].d <= 512) {
        setenv("JSDPA_EFFICIENT_SM80", "1", 1);
        ec.name = causal ? "16-bit causal, efficient.cu" : "16-bit, efficient.cu";
        run_case(ctx, &ec);
        unsetenv("JSDPA_EFFICIENT_SM80");
      }
    }

  /* Flash's shapes forced onto efficient (auto still picks flash). */
  {
    eff_case_t ec = base_case("bf16 d128 (flash's)", JSDPA_DTYPE_BF16, 128, 128, true);
    ec.kv_heads = 2;
    ec.expect = JSDPA_BACKEND_FLASH;
    run_case(ctx, &ec);
  }

  /* Long pairs. */
  for (int causal = 0; causal < 2; ++causal) {
    eff_case_t ec = base_case("fp32 1023/1024 pairs", JSDPA_DTYPE_FP32, 128, 128, causal);
    ec.heads = ec.kv_heads = 1;
    ec.pairs = large_pairs;
    ec.batch = 2;
    ec.offsets_on_device = causal;
    run_case(ctx, &ec);
  }
  {
    eff_case_t ec = base_case("bf16 2048 square d512", JSDPA_DTYPE_BF16, 512, 512, true);
    ec.heads = ec.kv_heads = 1;
    ec.pairs = square_pair;
    ec.batch = 1;
    run_case(ctx, &ec);
  }

  /* Packed QKV, windows, softcap, custom scale, no LSE. */
  {
    static const pair_t self[] = {{300, 300}, {0, 0}, {77, 77}, {129, 129}, {1, 1}};
    eff_case_t ec = base_case("fp32 packed qkv", JSDPA_DTYPE_FP32, 64, 64, true);
    ec.kv_heads = 2;
    ec.layout = TESTUTIL_LAYOUT_PACKED_QKV;
    ec.pairs = self;
    ec.batch = 5;
    ec.offsets_on_device = true;
    run_case(ctx, &ec);
  }
  {
    eff_case_t ec = base_case("fp32 window 100/20", JSDPA_DTYPE_FP32, 128, 128, false);
    ec.heads = ec.kv_heads = 4;
    ec.window_left = 100;
    ec.window_right = 20;
    run_case(ctx, &ec);
    ec.name = "bf16 d512 causal window 64";
    ec.dtype = JSDPA_DTYPE_BF16;
    ec.head_dim = ec.head_dim_v = 512;
    ec.heads = ec.kv_heads = 2;
    ec.causal = true;
    ec.window_left = 64;
    ec.window_right = -1;
    ec.offsets_on_device = true;
    run_case(ctx, &ec);
    ec.name = "fp32 causal softcap 5, scale 0.3";
    ec.dtype = JSDPA_DTYPE_FP32;
    ec.head_dim = ec.head_dim_v = 64;
    ec.window_left = -1;
    ec.softcap = 5.0f;
    ec.scale = 0.3;
    run_case(ctx, &ec);
    /* The same on the wide tiles (on sm_90a: the Hopper template), no LSE. */
    ec.name = "fp32 d128 causal softcap 5, scale 0.3, no lse";
    ec.head_dim = ec.head_dim_v = 128;
    ec.lse = false;
    run_case(ctx, &ec);
    ec.name = "bf16 d512 causal softcap 5, scale 0.3, no lse";
    ec.dtype = JSDPA_DTYPE_BF16;
    ec.head_dim = ec.head_dim_v = 512;
    ec.heads = ec.kv_heads = 2;
    run_case(ctx, &ec);
    ec.lse = true;
    ec.name = "fp16 d576/512 no lse, int64 offsets";
    ec.softcap = 0;
    ec.scale = NAN;
    ec.lse = false;
    ec.dtype = JSDPA_DTYPE_FP16;
    ec.head_dim = 576;
    ec.head_dim_v = 512;
    ec.offsets_type = JSDPA_INDEX_INT64;
    run_case(ctx, &ec);
  }

  check_unaligned(ctx, JSDPA_DTYPE_FP32, 6);
  check_unaligned(ctx, JSDPA_DTYPE_BF16, 12);

  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(ctx, &st);
  printf("kernel cache: %lld compiles (%.0f ms), %lld disk hits, %lld memory hits\n",
         (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, (long long)st.memory_hits);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
