/* The math backend on the GPU against the float64 oracle under the 2x rule:
 * random jagged batches (lengths 0 and 1, q and kv lengths that differ), GQA
 * and MQA, causal, sliding window, softcap, strided layouts, LSE, fp16 / bf16 /
 * fp32, head dims 40 / 64 / 128 / 256 and odd ones, offsets on the host or the
 * device, int32 or int64. Outputs are NaN-poisoned before every call. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

typedef struct math_case_s {
  const char* name;
  jsdpa_dtype_t dtype;
  int64_t head_dim, head_dim_v;
  int64_t heads, kv_heads;
  bool causal;
  int64_t window_left, window_right;
  float softcap;
  testutil_layout_t layout;
  bool lse;
  jsdpa_index_type_t offsets_type;
  bool cross;    /* kv lengths drawn independently of q lengths */
  bool q_longer; /* q lengths exceed kv lengths: causal rows with no visible key */
  int64_t max_len;
} math_case_t;

static const math_case_t cases[] = {
    {"gqa", JSDPA_DTYPE_FP16, 64, 64, 8, 2, false, -1, -1, 0, TESTUTIL_LAYOUT_CONTIGUOUS, true,
     JSDPA_INDEX_INT32, false, false, 90},
    {"causal cross", JSDPA_DTYPE_BF16, 128, 128, 4, 4, true, -1, -1, 0, TESTUTIL_LAYOUT_CONTIGUOUS,
     true, JSDPA_INDEX_INT64, true, false, 80},
    {"padded mqa", JSDPA_DTYPE_FP32, 40, 40, 3, 1, false, -1, -1, 0, TESTUTIL_LAYOUT_PADDED, false,
     JSDPA_INDEX_INT32, true, false, 70},
    {"causal head-major", JSDPA_DTYPE_FP16, 256, 256, 4, 1, true, -1, -1, 0,
     TESTUTIL_LAYOUT_HEAD_MAJOR, true, JSDPA_INDEX_INT32, false, false, 64},
    {"odd head dim", JSDPA_DTYPE_BF16, 97, 97, 2, 2, false, -1, -1, 0, TESTUTIL_LAYOUT_PADDED, true,
     JSDPA_INDEX_INT64, true, false, 70},
    {"window", JSDPA_DTYPE_FP16, 64, 64, 4, 2, false, 7, 3, 0, TESTUTIL_LAYOUT_CONTIGUOUS, true,
     JSDPA_INDEX_INT32, true, false, 80},
    {"causal softcap window", JSDPA_DTYPE_BF16, 128, 128, 4, 2, true, 16, -1, 20.0f,
     TESTUTIL_LAYOUT_CONTIGUOUS, true, JSDPA_INDEX_INT32, true, false, 80},
    {"packed qkv", JSDPA_DTYPE_FP16, 64, 64, 4, 2, false, -1, -1, 0, TESTUTIL_LAYOUT_PACKED_QKV,
     true, JSDPA_INDEX_INT32, false, false, 80},
    {"fp32 causal lse", JSDPA_DTYPE_FP32, 128, 128, 2, 2, true, -1, -1, 0,
     TESTUTIL_LAYOUT_CONTIGUOUS, true, JSDPA_INDEX_INT64, false, false, 80},
    {"dv differs", JSDPA_DTYPE_BF16, 64, 128, 4, 4, false, -1, -1, 0, TESTUTIL_LAYOUT_PADDED, true,
     JSDPA_INDEX_INT32, true, false, 64},
    {"softcap", JSDPA_DTYPE_FP16, 40, 40, 2, 1, false, -1, -1, 5.0f, TESTUTIL_LAYOUT_CONTIGUOUS,
     true, JSDPA_INDEX_INT32, true, false, 60},
    {"causal q longer", JSDPA_DTYPE_FP32, 256, 256, 2, 1, true, -1, -1, 0,
     TESTUTIL_LAYOUT_CONTIGUOUS, true, JSDPA_INDEX_INT32, true, true, 60},
    {"odd small dim", JSDPA_DTYPE_FP16, 13, 13, 3, 3, true, 5, 5, 0, TESTUTIL_LAYOUT_CONTIGUOUS,
     true, JSDPA_INDEX_INT64, true, false, 40},
};

/* Lengths in [0, max_len] with a 0 and a 1 planted at random places. */
static void random_lengths(int64_t batch, int64_t max_len, int64_t* out) {
  for (int64_t b = 0; b < batch; ++b) out[b] = testutil_rand_int(0, max_len);
  out[testutil_rand_int(0, batch - 1)] = 0;
  out[testutil_rand_int(0, batch - 1)] = 1;
}

static void run_case(jsdpa_context_t* ctx, const math_case_t* mc) {
  int64_t batch = testutil_rand_int(3, 8);
  int64_t q_lens[8], kv_lens[8];
  random_lengths(batch, mc->max_len, q_lens);
  if (mc->cross) {
    random_lengths(batch, mc->max_len, kv_lens);
    if (mc->q_longer)
      for (int64_t b = 0; b < batch; ++b) kv_lens[b] = q_lens[b] / 2;
  } else {
    memcpy(kv_lens, q_lens, sizeof(q_lens));
  }
  /* A total of zero tokens has no buffers to point at; keep one row. */
  q_lens[0] += 2;
  kv_lens[0] += 2;

  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = batch;
  cfg.q_lens = q_lens;
  cfg.kv_lens = kv_lens;
  cfg.heads = mc->heads;
  cfg.kv_heads = mc->kv_heads;
  cfg.head_dim = mc->head_dim;
  cfg.head_dim_v = mc->head_dim_v;
  cfg.dtype = mc->dtype;
  cfg.offsets_type = mc->offsets_type;
  cfg.layout = mc->layout;
  cfg.with_lse = mc->lse;
  testutil_case_t* c = testutil_case_create(&cfg);

  const bool offsets_on_device = testutil_rand_int(0, 1) == 1;
  testutil_device_case_t d;
  testutil_device_case_upload(c, offsets_on_device, &d);
  testutil_device_case_poison(c, &d);

  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.backend = JSDPA_BACKEND_MATH;
  o.is_causal = mc->causal;
  o.window_left = mc->window_left;
  o.window_right = mc->window_right;
  o.softcap = mc->softcap;

  char desc[256], label[512];
  testutil_case_describe(c, desc, sizeof(desc));
  snprintf(label, sizeof(label), "math %s [%s, offsets on the %s]", mc->name, desc,
           offsets_on_device ? "device" : "host");
  if (CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse)) &&
      CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL))) {
    testutil_device_case_download(c, &d);
    testutil_case_check(label, c, &o, 0);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

/* auto picks math (or a faster GPU backend) for device data, never cpu. */
static void check_auto_choice(jsdpa_context_t* ctx) {
  int64_t lens[2] = {5, 9};
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = 2;
  cfg.q_lens = lens;
  cfg.heads = 2;
  cfg.kv_heads = 2;
  cfg.head_dim = 64;
  cfg.dtype = JSDPA_DTYPE_FP16;
  testutil_case_t* c = testutil_case_create(&cfg);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL, &sel))) {
    char text[4 * JSDPA_REASON_CAPACITY];
    jsdpa_selection_format(&sel, text, sizeof(text));
    printf("auto choice for device data:\n%s", text);
    CHECK(sel.backend != JSDPA_BACKEND_CPU && sel.backend != JSDPA_BACKEND_AUTO,
          "auto chose %s for device data", jsdpa_backend_name(sel.backend));
    CHECK(sel.reasons[JSDPA_BACKEND_MATH][0] == '\0', "math rejected: %s",
          sel.reasons[JSDPA_BACKEND_MATH]);
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
  check_auto_choice(ctx);
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) run_case(ctx, &cases[i]);
  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(ctx, &st);
  printf("kernel cache: %lld compiles (%.0f ms), %lld disk hits, %lld memory hits\n",
         (long long)st.compiles, st.compile_ms, (long long)st.disk_hits, (long long)st.memory_hits);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
