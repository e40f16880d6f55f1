/*
 * The cpu backend against the float64 references of testutil on random jagged
 * batches: every dtype, lengths 0 and 1, q/kv lengths that differ, GQA and MQA,
 * causal, sliding window, softcap, strided and packed layouts, LSE, threads;
 * the fp64 oracle mode against the naive reference at 1e-12; rounding ties of
 * the fp16/bf16 output conversion.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static jsdpa_context_t* ctx_1; /* one cpu thread */
static jsdpa_context_t* ctx_4; /* four */

static const jsdpa_dtype_t dtypes[] = {JSDPA_DTYPE_FP16, JSDPA_DTYPE_BF16, JSDPA_DTYPE_FP32,
                                       JSDPA_DTYPE_FP64};

static jsdpa_context_t* make_context(int threads) {
  jsdpa_context_options_t o;
  jsdpa_context_options_initialize(&o);
  o.cpu_threads = threads;
  o.cache_dir = "";
  jsdpa_context_t* ctx = NULL;
  CHECK_OK(jsdpa_context_create(&o, &ctx));
  if (!ctx) exit(testutil_finish());
  return ctx;
}

/* Runs one case through jsdpa_forward on the cpu backend and checks it. */
static void run_case(const char* what, testutil_case_config_t* cfg, jsdpa_forward_options_t* opt,
                     jsdpa_context_t* ctx) {
  testutil_case_t* c = testutil_case_create(cfg);
  char desc[256], label[512];
  testutil_case_describe(c, desc, sizeof(desc));
  snprintf(label, sizeof(label), "%s [%s%s%s wl%lld wr%lld cap%g%s]", what, desc,
           opt->is_causal ? " causal" : "", opt->precision == JSDPA_PRECISION_FP64 ? " prec64" : "",
           (long long)opt->window_left, (long long)opt->window_right, (double)opt->softcap,
           c->lse ? " lse" : "");
  opt->backend = JSDPA_BACKEND_CPU;
  if (CHECK_OK(jsdpa_forward(ctx, opt, &c->q, &c->k, &c->v, &c->out, c->lse)))
    testutil_case_check(label, c, opt, 0);
  testutil_case_destroy(c);
}

static void random_lengths(int64_t batch, int64_t max_len, int64_t* out) {
  for (int64_t b = 0; b < batch; ++b) out[b] = testutil_rand_int(0, max_len);
}

/* Every dtype and layout, with lengths that include 0 and 1 and differ
 * between q and kv, GQA 6/6, 6/2, 6/1, causal or not, LSE on. */
static void test_feature_matrix(void) {
  static const int64_t kv_heads[] = {6, 2, 1};
  static const testutil_layout_t layouts[] = {TESTUTIL_LAYOUT_CONTIGUOUS, TESTUTIL_LAYOUT_PADDED,
                                              TESTUTIL_LAYOUT_HEAD_MAJOR};
  for (size_t di = 0; di < sizeof(dtypes) / sizeof(dtypes[0]); ++di) {
    for (size_t gi = 0; gi < 3; ++gi) {
      for (int causal = 0; causal < 2; ++causal) {
        int64_t q_lens[5] = {0, 1, 0, 0, 0}, kv_lens[5] = {3, 0, 1, 0, 0};
        random_lengths(3, 24, q_lens + 2);
        random_lengths(3, 24, kv_lens + 2);
        testutil_case_config_t cfg = {
            .batch = 5,
            .q_lens = q_lens,
            .kv_lens = kv_lens,
            .heads = 6,
            .kv_heads = kv_heads[gi],
            .head_dim = testutil_rand_int(1, 3) * 16,
            .dtype = dtypes[di],
            .offsets_type = (gi & 1) ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32,
            .layout = layouts[(di + gi + (size_t)causal) % 3],
            .with_lse = true,
        };
        cfg.head_dim_v = (gi == 2) ? 8 : cfg.head_dim;
        jsdpa_forward_options_t opt;
        jsdpa_forward_options_initialize(&opt);
        opt.is_causal = causal;
        run_case("matrix", &cfg, &opt, (gi & 1) ? ctx_4 : ctx_1);
      }
    }
  }
}

/* Bottom-right causal where q is longer than kv (rows that see nothing: zeros,
 * LSE -inf) and shorter (every row sees a prefix plus its offset). */
static void test_causal_alignment(void) {
  int64_t q_lens[] = {9, 3, 5, 1};
  int64_t kv_lens[] = {4, 11, 5, 7};
  for (size_t di = 0; di < 3; ++di) {
    testutil_case_config_t cfg = {.batch = 4,
                                  .q_lens = q_lens,
                                  .kv_lens = kv_lens,
                                  .heads = 2,
                                  .kv_heads = 1,
                                  .head_dim = 32,
                                  .dtype = dtypes[di],
                                  .with_lse = true};
    jsdpa_forward_options_t opt;
    jsdpa_forward_options_initialize(&opt);
    opt.is_causal = true;
    run_case("causal-align", &cfg, &opt, ctx_1);
  }
}

/* Sliding windows (left only, right only, both, with and without causal),
 * softcap, and an explicit scale. */
static void test_window_softcap_scale(void) {
  static const int64_t windows[][2] = {{0, -1}, {-1, 0}, {0, 0},  {3, 0}, {0, 3},
                                       {2, 5},  {7, -1}, {-1, 4}, {1, 1}, {30, 30}};
  const int rounds = (int)(sizeof(windows) / sizeof(windows[0]));
  for (int round = 0; round < 2 * rounds; ++round) {
    int64_t q_lens[3], kv_lens[3];
    random_lengths(3, 30, q_lens);
    random_lengths(3, 30, kv_lens);
    testutil_case_config_t cfg = {.batch = 3,
                                  .q_lens = q_lens,
                                  .kv_lens = kv_lens,
                                  .heads = 4,
                                  .kv_heads = 2,
                                  .head_dim = 24,
                                  .head_dim_v = 40,
                                  .dtype = dtypes[round % 4],
                                  .with_lse = round % 2 == 0,
                                  .layout = (testutil_layout_t)(round % 3)};
    jsdpa_forward_options_t opt;
    jsdpa_forward_options_initialize(&opt);
    opt.window_left = windows[round % rounds][0];
    opt.window_right = windows[round % rounds][1];
    opt.is_causal = round >= rounds;
    opt.softcap = (round % 3 == 0) ? 0.0f : (float)(2 + round % 7);
    opt.scale = (round % 4 == 1) ? 0.3 : NAN;
    cfg.input_scale = opt.softcap > 0 ? 3 : 1; /* scores large enough that the cap bites */
    run_case("window/softcap", &cfg, &opt, ctx_4);
  }
}

/* A packed QKV buffer ([T, H + 2 Hkv, D], token stride (H + 2 Hkv) D): the
 * layout of PyTorch's fused projection views. */
static void test_packed_qkv(void) {
  for (size_t di = 0; di < 4; ++di) {
    int64_t lens[4];
    random_lengths(4, 20, lens);
    lens[0] = 1;
    testutil_case_config_t cfg = {.batch = 4,
                                  .q_lens = lens,
                                  .heads = 6,
                                  .kv_heads = 2,
                                  .head_dim = 32,
                                  .dtype = dtypes[di],
                                  .with_lse = true,
                                  .layout = TESTUTIL_LAYOUT_PACKED_QKV};
    jsdpa_forward_options_t opt;
    jsdpa_forward_options_initialize(&opt);
    opt.is_causal = di % 2 == 1;
    run_case("packed-qkv", &cfg, &opt, ctx_4);
  }
}

/* precision FP64: the oracle. fp64 inputs against the naive float64 reference
 * at 1e-12; fp16/bf16/fp32 inputs accumulate in double and round once. */
static void test_fp64_oracle(void) {
  for (size_t di = 0; di < 4; ++di) {
    int64_t q_lens[4], kv_lens[4];
    random_lengths(4, 40, q_lens);
    random_lengths(4, 40, kv_lens);
    testutil_case_config_t cfg = {.batch = 4,
                                  .q_lens = q_lens,
                                  .kv_lens = kv_lens,
                                  .heads = 3,
                                  .kv_heads = 1,
                                  .head_dim = 64,
                                  .dtype = dtypes[di],
                                  .with_lse = true};
    jsdpa_forward_options_t opt;
    jsdpa_forward_options_initialize(&opt);
    opt.precision = JSDPA_PRECISION_FP64;
    opt.is_causal = di % 2 == 0;
    opt.softcap = di == 3 ? 5.0f : 0.0f;
    testutil_case_t* c = testutil_case_create(&cfg);
    opt.backend = JSDPA_BACKEND_CPU;
    if (CHECK_OK(jsdpa_forward(ctx_4, &opt, &c->q, &c->k, &c->v, &c->out, c->lse))) {
      const int64_t rows = c->total_q * 3, n = rows * 64;
      double* ref = malloc(sizeof(double) * (size_t)n);
      double* ref_lse = malloc(sizeof(double) * (size_t)rows);
      testutil_reference(&c->q, &c->k, &c->v, &opt, ref, ref_lse);
      double* got = testutil_read_tensor(&c->out);
      char label[128];
      snprintf(label, sizeof(label), "oracle %s out", jsdpa_dtype_name(cfg.dtype));
      if (cfg.dtype == JSDPA_DTYPE_FP64) {
        testutil_compare_tol(label, ref, got, n, 1e-12);
      } else {
        /* Rounded once from an almost exact value: the nearest dtype value. */
        for (int64_t i = 0; i < n; ++i) ref[i] = testutil_round(cfg.dtype, ref[i]);
        testutil_compare_tol(label, ref, got, n, cfg.dtype == JSDPA_DTYPE_FP32 ? 1e-12 : 0);
      }
      /* LSE is fp32 in the API: within float rounding of the exact value. */
      double* got_lse = malloc(sizeof(double) * (size_t)rows);
      double lse_tol = 0;
      for (int64_t i = 0; i < rows; ++i) {
        got_lse[i] = c->lse[i];
        if (isfinite(ref_lse[i]) && fabs(ref_lse[i]) * 0x1p-24 > lse_tol)
          lse_tol = fabs(ref_lse[i]) * 0x1p-24;
      }
      snprintf(label, sizeof(label), "oracle %s lse", jsdpa_dtype_name(cfg.dtype));
      testutil_compare_tol(label, ref_lse, got_lse, rows, lse_tol);
      free(ref);
      free(ref_lse);
      free(got);
      free(got_lse);
    }
    testutil_case_destroy(c);
  }
}

/*
 * Output conversion ties: q = 0 makes both keys weigh exactly 1/2, so each
 * output is the exact mean of two values of the dtype, often halfway between
 * two representable numbers. The library must round it to nearest even like
 * testutil's independent conversion does.
 */
static void test_rounding_ties(void) {
  const jsdpa_dtype_t small[] = {JSDPA_DTYPE_FP16, JSDPA_DTYPE_BF16};
  for (int di = 0; di < 2; ++di) {
    for (int precision = 0; precision < 2; ++precision) {
      int64_t q_lens[] = {1}, kv_lens[] = {2};
      testutil_case_config_t cfg = {.batch = 1,
                                    .q_lens = q_lens,
                                    .kv_lens = kv_lens,
                                    .heads = 1,
                                    .kv_heads = 1,
                                    .head_dim = 4,
                                    .head_dim_v = 1024,
                                    .dtype = small[di]};
      testutil_case_t* c = testutil_case_create(&cfg);
      for (int64_t i = 0; i < 4; ++i) testutil_store(c->q.data, cfg.dtype, i, 0.0);
      /* v[1] = v[0] + small steps (ties and non-ties), also subnormal and huge values. */
      for (int64_t i = 0; i < 1024; ++i) {
        double base = ldexp(1.0 + testutil_rand_uniform(), (int)testutil_rand_int(-20, 14));
        if (i % 7 == 0) base = ldexp(testutil_rand_uniform(), -20); /* fp16 subnormals */
        if (i % 2) base = -base;
        double a = testutil_round(cfg.dtype, base);
        double b = testutil_round(cfg.dtype, base * (1 + ldexp(1, -(int)testutil_rand_int(3, 9))));
        testutil_store(c->v.data, cfg.dtype, i, a);
        testutil_store(c->v.data, cfg.dtype, 1024 + i, b);
      }
      jsdpa_forward_options_t opt;
      jsdpa_forward_options_initialize(&opt);
      opt.precision = precision ? JSDPA_PRECISION_FP64 : JSDPA_PRECISION_DEFAULT;
      opt.backend = JSDPA_BACKEND_CPU;
      if (CHECK_OK(jsdpa_forward(ctx_1, &opt, &c->q, &c->k, &c->v, &c->out, NULL))) {
        int64_t wrong = 0, ties = 0;
        for (int64_t i = 0; i < 1024; ++i) {
          double a = testutil_load(c->v.data, cfg.dtype, i);
          double b = testutil_load(c->v.data, cfg.dtype, 1024 + i);
          double mean = (a + b) / 2; /* exact in double (and float) */
          double want = testutil_round(cfg.dtype, mean);
          double got = testutil_load(c->out.data, cfg.dtype, i);
          if (got != want) ++wrong;
          if (testutil_round(cfg.dtype, mean) != mean) ++ties;
        }
        CHECK(wrong == 0, "%s ties (precision %d): %lld of 1024 outputs rounded wrongly",
              jsdpa_dtype_name(cfg.dtype), precision, (long long)wrong);
        printf("  rounding %s precision %d: %lld inexact means, %lld wrong\n",
               jsdpa_dtype_name(cfg.dtype), precision, (long long)ties, (long long)wrong);
      }
      testutil_case_destroy(c);
    }
  }
}

/* An empty batch, batch 0, and all-empty sequences: nothing to do, no crash,
 * and empty-kv rows are zeros with LSE -inf. */
static void test_empty(void) {
  int64_t q_lens[] = {2, 0, 3}, kv_lens[] = {0, 0, 0};
  testutil_case_config_t cfg = {.batch = 3,
                                .q_lens = q_lens,
                                .kv_lens = kv_lens,
                                .heads = 2,
                                .kv_heads = 2,
                                .head_dim = 8,
                                .dtype = JSDPA_DTYPE_FP32,
                                .with_lse = true};
  jsdpa_forward_options_t opt;
  jsdpa_forward_options_initialize(&opt);
  run_case("empty-kv", &cfg, &opt, ctx_1);
  testutil_case_t* c = testutil_case_create(&cfg);
  opt.backend = JSDPA_BACKEND_CPU;
  if (CHECK_OK(jsdpa_forward(ctx_1, &opt, &c->q, &c->k, &c->v, &c->out, c->lse))) {
    bool zeros = true, neg_inf = true;
    for (int64_t i = 0; i < c->total_q * 2 * 8; ++i) zeros = zeros && ((float*)c->out.data)[i] == 0;
    for (int64_t i = 0; i < c->total_q * 2; ++i) neg_inf = neg_inf && c->lse[i] == -INFINITY;
    CHECK(zeros && neg_inf, "empty key sequences: out must be 0 and lse -inf");
  }
  testutil_case_destroy(c);

  cfg.batch = 0;
  run_case("batch-0", &cfg, &opt, ctx_1);
}

/* Larger batch with threads: the result must not depend on the thread count. */
static void test_threads_deterministic(void) {
  int64_t lens[16];
  random_lengths(16, 48, lens);
  testutil_case_config_t cfg = {.batch = 16,
                                .q_lens = lens,
                                .heads = 4,
                                .kv_heads = 2,
                                .head_dim = 32,
                                .dtype = JSDPA_DTYPE_BF16,
                                .with_lse = true};
  testutil_case_t* c = testutil_case_create(&cfg);
  jsdpa_forward_options_t opt;
  jsdpa_forward_options_initialize(&opt);
  opt.is_causal = true;
  opt.backend = JSDPA_BACKEND_CPU;
  if (CHECK_OK(jsdpa_forward(ctx_1, &opt, &c->q, &c->k, &c->v, &c->out, c->lse))) {
    testutil_case_check("threads=1", c, &opt, 0);
    void* first = malloc(c->out_bytes);
    memcpy(first, c->out_buffer, c->out_bytes);
    testutil_case_poison(c);
    if (CHECK_OK(jsdpa_forward(ctx_4, &opt, &c->q, &c->k, &c->v, &c->out, c->lse)))
      CHECK(memcmp(first, c->out_buffer, c->out_bytes) == 0,
            "threads=4 gives other bytes than threads=1");
    free(first);
  }
  testutil_case_destroy(c);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  ctx_1 = make_context(1);
  ctx_4 = make_context(4);
  test_feature_matrix();
  test_causal_alignment();
  test_window_softcap_scale();
  test_packed_qkv();
  test_fp64_oracle();
  test_rounding_ties();
  test_empty();
  test_threads_deterministic();
  jsdpa_context_destroy(ctx_1);
  jsdpa_context_destroy(ctx_4);
  return testutil_finish();
}
