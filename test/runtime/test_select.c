/*
 * Backend choice, table-driven: the seed's constraints (flash: fp16/bf16,
 * equal head dims <= 256; the fused kernels' sequence-length-0 and causal
 * limits) and ours (GQA, empty sequences, q/kv lengths that differ, host vs
 * device memory, forced backends, fp64 precision on the cpu only).
 *
 * Device rows run against a pretend H100 context (gpu = true, sm_90a) and a
 * validated call whose memory is marked as device memory: selection only
 * reads the call, so no GPU is needed. Host rows use a real context, which on
 * CI has no driver: then every GPU backend's reason names the missing driver.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"
#include "tuning.h"

typedef struct row_s {
  const char* name;
  jsdpa_dtype_t dtype;
  int64_t head_dim, head_dim_v;
  int64_t heads, kv_heads;
  bool causal;
  bool empty_sequence;  /* one q and one kv sequence of length 0 */
  bool unequal_lengths; /* q and kv lengths differ per sequence */
  jsdpa_memory_t memory;
  int device;
  jsdpa_precision_t precision;
  jsdpa_backend_t forced;
  jsdpa_backend_t expect; /* AUTO: none can run (UNSUPPORTED) */
  /* Per backend: NULL = must be able to run; else a substring of its reason. */
  const char* why[JSDPA_BACKEND_COUNT];
} row_t;

#define HOST JSDPA_MEMORY_HOST
#define DEV JSDPA_MEMORY_DEVICE
#define FP16 JSDPA_DTYPE_FP16
#define BF16 JSDPA_DTYPE_BF16
#define FP32 JSDPA_DTYPE_FP32
#define FP64 JSDPA_DTYPE_FP64
#define P_DEF JSDPA_PRECISION_DEFAULT
#define P_64 JSDPA_PRECISION_FP64
#define AUTO JSDPA_BACKEND_AUTO
#define FLASH JSDPA_BACKEND_FLASH
#define EFF JSDPA_BACKEND_EFFICIENT
#define MATH JSDPA_BACKEND_MATH
#define CPU JSDPA_BACKEND_CPU
#define P_TF32 JSDPA_PRECISION_TF32
#define UNALIGNED "not a multiple of 16 bytes"
#define ON_DEVICE "the data is in device 0 memory"

/* clang-format off */
static const row_t rows[] = {
  /* name                          dtype d    dv   H  Hkv causal empty unequal mem  dev prec  forced expect  {-, flash, efficient, math, cpu} */
  {"fp16 d64",                     FP16, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, AUTO, FLASH, {0, NULL, NULL, NULL, ON_DEVICE}},
  {"bf16 d128 causal GQA, len 0",  BF16, 128, 128, 8, 2,  true,  true,  false, DEV, 0, P_DEF, AUTO, FLASH, {0, NULL, NULL, NULL, ON_DEVICE}},
  {"fp16 d256 MQA, lq != lkv",     FP16, 256, 256, 6, 1,  true,  false, true,  DEV, 0, P_DEF, AUTO, FLASH, {0, NULL, NULL, NULL, ON_DEVICE}},
  {"fp16 d40 (not a multiple of 8)", FP16, 40, 40, 2, 2,  false, false, false, DEV, 0, P_DEF, AUTO, FLASH, {0, NULL, NULL, NULL, ON_DEVICE}},
  {"fp32 d64",                     FP32, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, AUTO, EFF,   {0, "fp32", NULL, NULL, ON_DEVICE}},
  {"fp32 d128 tf32 opted in",      FP32, 128, 128, 4, 2,  true,  true,  true,  DEV, 0, P_TF32, AUTO, EFF,  {0, "fp32", NULL, NULL, ON_DEVICE}},
  {"fp16 d512",                    FP16, 512, 512, 2, 2,  false, false, false, DEV, 0, P_DEF, AUTO, EFF,   {0, "head_dim 512", NULL, NULL, ON_DEVICE}},
  {"bf16 d576 dv512 causal (MLA)", BF16, 576, 512, 4, 1,  true,  true,  true,  DEV, 0, P_DEF, AUTO, EFF,   {0, "head_dim 576", NULL, NULL, ON_DEVICE}},
  {"fp16 d64 dv32",                FP16, 64,  32,  2, 2,  false, false, false, DEV, 0, P_DEF, AUTO, EFF,   {0, "head_dim_v", NULL, NULL, ON_DEVICE}},
  {"bf16 d1024 dv8 causal",        BF16, 1024, 8,  2, 1,  true,  true,  true,  DEV, 0, P_DEF, AUTO, EFF,   {0, "head_dim", NULL, NULL, ON_DEVICE}},
  {"fp32 d6 (24-byte heads)",      FP32, 6,   6,   4, 4,  false, false, false, DEV, 0, P_DEF, AUTO, MATH,  {0, "fp32", UNALIGNED, NULL, ON_DEVICE}},
  {"fp16 d12 (24-byte heads)",     FP16, 12,  12,  3, 3,  false, false, false, DEV, 0, P_DEF, AUTO, MATH,  {0, UNALIGNED, UNALIGNED, NULL, ON_DEVICE}},
  {"fp16 precision fp64, device",  FP16, 64,  64,  2, 2,  false, false, false, DEV, 0, P_64,  AUTO, AUTO,  {0, "FP64", "FP64", "FP64", ON_DEVICE}},
  {"fp16 on device 1",             FP16, 64,  64,  2, 2,  false, false, false, DEV, 1, P_DEF, AUTO, AUTO,  {0, "device 1 but the context uses device 0", "device 1", "device 1", "device 1 memory"}},
  {"fp16 host, GPU context",       FP16, 64,  64,  2, 2,  true,  true,  true,  HOST, -1, P_DEF, AUTO, CPU,  {0, "host memory", "host memory", "host memory", NULL}},
  {"fp64 host precision fp64",     FP64, 32,  16,  3, 1,  true,  true,  true,  HOST, -1, P_64,  AUTO, CPU,  {0, "host memory", "host memory", "host memory", NULL}},
  {"forced math over flash",       FP16, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, MATH, MATH,  {0, NULL, NULL, NULL, ON_DEVICE}},
  {"forced efficient over flash",  BF16, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, EFF,  EFF,   {0, NULL, NULL, NULL, ON_DEVICE}},
  {"forced cpu, device data",      FP16, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, CPU,  AUTO,  {0, NULL, NULL, NULL, ON_DEVICE}},
  {"forced efficient",             FP32, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, EFF,  EFF,   {0, "fp32", NULL, NULL, ON_DEVICE}},
  {"forced flash, fp32",           FP32, 64,  64,  4, 4,  false, false, false, DEV, 0, P_DEF, FLASH, AUTO, {0, "fp32", NULL, NULL, ON_DEVICE}},
  {"forced cpu, host",             FP32, 64,  64,  4, 4,  false, false, false, HOST, -1, P_DEF, CPU, CPU,  {0, "host memory", "host memory", "host memory", NULL}},
};
/* clang-format on */

static jsdpa_context_t* real_ctx;

/* A validated call for the row's shape, on the host. */
static testutil_case_t* make_case(const row_t* r, jsdpa_call_t* call) {
  int64_t q_lens[3] = {5, 9, 2}, kv_lens[3] = {5, 9, 2};
  if (r->unequal_lengths) {
    kv_lens[0] = 11;
    kv_lens[2] = 1;
  }
  if (r->empty_sequence) q_lens[1] = kv_lens[1] = 0;
  testutil_case_config_t cfg = {.batch = 3,
                                .q_lens = q_lens,
                                .kv_lens = kv_lens,
                                .heads = r->heads,
                                .kv_heads = r->kv_heads,
                                .head_dim = r->head_dim,
                                .head_dim_v = r->head_dim_v,
                                .dtype = r->dtype};
  testutil_case_t* c = testutil_case_create(&cfg);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = r->causal;
  o.precision = r->precision;
  o.backend = r->forced;
  CHECK_OK(jsdpa_validate(real_ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL, call));
  return c;
}

static void check_row(jsdpa_context_t* ctx, const row_t* r) {
  jsdpa_call_t call;
  testutil_case_t* c = make_case(r, &call);
  call.memory = r->memory;
  call.device = r->device;
  if (r->memory == JSDPA_MEMORY_DEVICE) call.q_offsets_memory = call.kv_offsets_memory = r->memory;
  jsdpa_backend_t expect = r->expect;

  jsdpa_selection_t sel;
  const jsdpa_backend_impl_t* impl = NULL;
  jsdpa_status_t s = jsdpa_select(ctx, &call, &sel, &impl);
  CHECK(sel.backend == expect, "%s: chose %s, expected %s (%s)", r->name,
        jsdpa_backend_name(sel.backend), jsdpa_backend_name(expect), jsdpa_status_message(s));
  CHECK((impl != NULL) == (expect != JSDPA_BACKEND_AUTO) && (!impl || impl->id == expect),
        "%s: the returned backend does not match the selection", r->name);
  if (expect == JSDPA_BACKEND_AUTO) {
    const char* want =
        r->forced != JSDPA_BACKEND_AUTO ? "options.backend forces" : "No viable backend";
    CHECK_STATUS(s, JSDPA_STATUS_UNSUPPORTED, want);
  } else {
    CHECK_OK(s);
  }
  for (int b = JSDPA_BACKEND_FLASH; b < JSDPA_BACKEND_COUNT; ++b) {
    const char* name = jsdpa_backend_name((jsdpa_backend_t)b);
    const char* why = r->why[b];
    if (!why)
      CHECK(sel.reasons[b][0] == '\0', "%s: %s should be able to run, rejected: %s", r->name, name,
            sel.reasons[b]);
    else
      CHECK(strstr(sel.reasons[b], why) != NULL, "%s: %s's reason lacks \"%s\": \"%s\"", r->name,
            name, why, sel.reasons[b]);
  }
  char text[4096];
  jsdpa_selection_format(&sel, text, sizeof(text));
  printf("  %-32s -> %s\n", r->name, jsdpa_backend_name(sel.backend));
  testutil_case_destroy(c);
}

/* A context that looks like an H100 to every can_run (they read no driver). */
static jsdpa_context_t* pretend_h100(void) {
  jsdpa_context_t* ctx = calloc(1, sizeof(*ctx));
  jsdpa_context_options_initialize(&ctx->options);
  ctx->gpu = true;
  ctx->arch = (jsdpa_gen_arch_t){90, true};
  snprintf(ctx->device_name, sizeof(ctx->device_name), "pretend H100");
  ctx->sm_count = 132;
  ctx->max_smem_optin = 227 * 1024;
  ctx->cpu_threads = 1;
  return ctx;
}

/* On the real context of this machine: host data always runs on the cpu. */
/* The efficient backend's reason for one call under a forced tile (jsdpa-bench
 * --tile, jsdpa-tune) or a given per-block shared-memory limit. */
static void check_efficient_reason(jsdpa_context_t* ctx, const row_t* r, const char* tile,
                                   int max_smem, const char* expect) {
  jsdpa_tuning_t* forced = NULL;
  if (tile) {
    jsdpa_gen_tile_t t;
    CHECK(jsdpa_gen_parse_tile(tile, &t), "bad tile %s", tile);
    forced = jsdpa_tuning_create_forced(t);
  }
  jsdpa_tuning_t* old = jsdpa_tuning_swap(ctx, forced);
  const int old_smem = ctx->max_smem_optin;
  if (max_smem) ctx->max_smem_optin = max_smem;
  jsdpa_call_t call;
  testutil_case_t* c = make_case(r, &call);
  call.memory = call.q_offsets_memory = call.kv_offsets_memory = JSDPA_MEMORY_DEVICE;
  call.device = 0;
  char why[JSDPA_REASON_CAPACITY] = "";
  const bool ok = jsdpa_backend_efficient.can_run(ctx, &call, why, sizeof(why));
  if (expect)
    CHECK(!ok && strstr(why, expect), "%s, tile %s, smem %d: efficient should refuse (\"%s\"): %s",
          r->name, tile ? tile : "default", ctx->max_smem_optin, expect, ok ? "accepted" : why);
  else
    CHECK(ok, "%s, tile %s, smem %d: efficient refused: %s", r->name, tile ? tile : "default",
          ctx->max_smem_optin, why);
  printf("  %-32s tile %-11s smem %6d -> %s%s\n", r->name, tile ? tile : "default",
         ctx->max_smem_optin, ok ? "runs" : "refused: ", ok ? "" : why);
  testutil_case_destroy(c);
  ctx->max_smem_optin = old_smem;
  jsdpa_tuning_swap(ctx, old);
  jsdpa_tuning_destroy(forced);
}

/* A forced tile that cannot run is refused with its reason (it must not time
 * the default tile under its name), and a tile needs its dynamic shared memory
 * plus the static slots within the per-block limit. */
static void test_tiles(jsdpa_context_t* h100) {
  const row_t* fp32 = &rows[4]; /* fp32 d64 */
  const row_t* d512 = &rows[6]; /* fp16 d512 */
  check_efficient_reason(h100, fp32, "m64n32w4s2", 0, NULL);
  check_efficient_reason(h100, fp32, "m64n64w8s1", 0, "16 or 32 query rows");
  check_efficient_reason(h100, d512, "m128n128w8s2", 0, "bytes of shared memory");
  /* fp32 d64's default m128n32w4s2 on sm_90: 87040 bytes (with the split's
   * small K and V planes, efficient.cu KV_SPLIT); with the static slots it
   * needs 88064. */
  check_efficient_reason(h100, fp32, NULL, 88064, NULL);
  check_efficient_reason(h100, fp32, NULL, 88063, "(+1024 static)");
}

static void test_real_context(void) {
  const char* gpu_reason = NULL;
  const bool has_gpu = jsdpa_context_has_gpu(real_ctx, &gpu_reason);
  printf("  this machine: %s%s\n", has_gpu ? "GPU" : "no GPU: ", has_gpu ? "" : gpu_reason);
  int64_t lens[] = {3, 0, 5};
  testutil_case_config_t cfg = {.batch = 3,
                                .q_lens = lens,
                                .heads = 2,
                                .kv_heads = 1,
                                .head_dim = 64,
                                .dtype = JSDPA_DTYPE_BF16};
  testutil_case_t* c = testutil_case_create(&cfg);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = true;
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(real_ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL, &sel))) {
    CHECK(sel.backend == JSDPA_BACKEND_CPU, "host data chose %s", jsdpa_backend_name(sel.backend));
    const char* want = has_gpu ? "host memory" : "no usable GPU";
    for (int b = JSDPA_BACKEND_EFFICIENT; b <= JSDPA_BACKEND_MATH; ++b)
      CHECK(strstr(sel.reasons[b], want) != NULL, "%s's reason lacks \"%s\": %s",
            jsdpa_backend_name((jsdpa_backend_t)b), want, sel.reasons[b]);
    if (!has_gpu)
      CHECK(strstr(sel.reasons[JSDPA_BACKEND_MATH], "CUDA driver") != NULL,
            "without a GPU the reason should name the driver: %s", sel.reasons[JSDPA_BACKEND_MATH]);
    char text[4096];
    jsdpa_selection_format(&sel, text, sizeof(text));
    printf("%s", text);
    CHECK(strstr(text, "backend: cpu\n") && strstr(text, "cpu: chosen\n") &&
              strstr(text, "math: rejected: ") && strstr(text, "efficient: rejected: ") &&
              strstr(text, "flash: rejected: "),
          "selection text: %s", text);
  }
  /* Forcing a GPU backend on host data: UNSUPPORTED with its reason; forcing
   * the cpu runs it. */
  o.backend = JSDPA_BACKEND_MATH;
  CHECK_STATUS(jsdpa_forward(real_ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL),
               JSDPA_STATUS_UNSUPPORTED, "options.backend forces math", "cannot run this call");
  o.backend = JSDPA_BACKEND_CPU;
  CHECK_OK(jsdpa_forward(real_ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL));
  testutil_case_destroy(c);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = "";
  CHECK_OK(jsdpa_context_create(&co, &real_ctx));
  if (!real_ctx) return testutil_finish();
  test_real_context();

  jsdpa_context_t* h100 = pretend_h100();
  const char* nvrtc_reason = NULL;
  const bool nvrtc = jsdpa_nvrtc(&nvrtc_reason) != NULL;
  jsdpa_call_t call;
  testutil_case_t* probe = make_case(&rows[0], &call);
  call.memory = JSDPA_MEMORY_DEVICE;
  call.device = 0;
  jsdpa_selection_t sel;
  const jsdpa_backend_impl_t* impl;
  jsdpa_status_free(jsdpa_select(h100, &call, &sel, &impl));
  testutil_case_destroy(probe);
  printf("  NVRTC %s%s\n", nvrtc ? "loadable" : "unavailable: ", nvrtc ? "" : nvrtc_reason);
  if (!nvrtc) {
    /* Without NVRTC no GPU backend can compile: each says so. */
    for (int b = JSDPA_BACKEND_EFFICIENT; b <= JSDPA_BACKEND_MATH; ++b)
      CHECK(strstr(sel.reasons[b], "NVRTC") != NULL, "%s: %s",
            jsdpa_backend_name((jsdpa_backend_t)b), sel.reasons[b]);
  } else {
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); ++i) check_row(h100, &rows[i]);
    test_tiles(h100);
  }
  free(h100);
  jsdpa_context_destroy(real_ctx);
  return testutil_finish();
}
