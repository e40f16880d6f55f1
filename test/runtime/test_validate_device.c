/*
 * The validation errors that need device memory: data split between host and
 * device, fp64 on the device, offsets on the device with data on the host,
 * options.validate_device_offsets, fp64 precision with device data; pinned
 * host memory counts as host memory. Exits 77 (skipped) without a GPU.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static jsdpa_context_t* ctx;

static bool all_bytes(const void* data, size_t n, unsigned char value) {
  const unsigned char* p = data;
  for (size_t i = 0; i < n; ++i)
    if (p[i] != value) return false;
  return true;
}

static testutil_case_t* make_case(jsdpa_dtype_t dtype) {
  int64_t q_lens[] = {5, 0, 7}, kv_lens[] = {3, 4, 9};
  testutil_case_config_t cfg = {.batch = 3,
                                .q_lens = q_lens,
                                .kv_lens = kv_lens,
                                .heads = 4,
                                .kv_heads = 2,
                                .head_dim = 32,
                                .dtype = dtype,
                                .with_lse = true};
  return testutil_case_create(&cfg);
}

/* The device out and lse still hold the poison. */
static void check_untouched(const char* what, testutil_case_t* c, testutil_device_case_t* d) {
  testutil_device_case_download(c, d);
  CHECK(all_bytes(c->out_buffer, c->out_bytes, 0xff), "%s: out was written", what);
  CHECK(all_bytes(c->lse, sizeof(float) * (size_t)(c->total_q * c->config.heads), 0xff),
        "%s: out_lse was written", what);
}

static void test_memory_mismatch(void) {
  testutil_case_t* c = make_case(JSDPA_DTYPE_BF16);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);

  jsdpa_jagged_t k_host = c->k;
  k_host.offsets = d.k.offsets;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &k_host, &d.v, &d.out, d.lse),
               JSDPA_STATUS_INVALID_ARGUMENT, "k.data is in host memory",
               "q.data is in device 0 memory");
  check_untouched("k on the host", c, &d);

  jsdpa_jagged_t out_host = c->out;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &out_host, d.lse),
               JSDPA_STATUS_INVALID_ARGUMENT, "out.data is in host memory",
               "q.data is in device 0 memory");

  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, c->lse),
               JSDPA_STATUS_INVALID_ARGUMENT, "out_lse is in host memory",
               "the data is in device 0 memory");
  check_untouched("lse on the host", c, &d);

  /* Host data with device offsets: the cpu cannot read them. */
  jsdpa_jagged_t q_host = c->q;
  q_host.offsets = d.q.offsets;
  jsdpa_jagged_t out_host_q = c->out;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &q_host, &c->k, &c->v, &out_host_q, c->lse),
               JSDPA_STATUS_INVALID_ARGUMENT, "q.offsets is in device 0 memory",
               "the data is in host memory");

  /* Device data with host offsets is fine. */
  jsdpa_jagged_t q_dev = d.q, k_dev = d.k, v_dev = d.v;
  q_dev.offsets = c->q_offsets;
  k_dev.offsets = v_dev.offsets = c->kv_offsets;
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &q_dev, &k_dev, &v_dev, &d.out, d.lse, &sel)))
    CHECK(sel.backend != JSDPA_BACKEND_CPU && sel.backend != JSDPA_BACKEND_AUTO,
          "device data with host offsets chose %s", jsdpa_backend_name(sel.backend));

  /* fp64 accumulation is the cpu's: no backend for device data. */
  o.precision = JSDPA_PRECISION_FP64;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse), JSDPA_STATUS_UNSUPPORTED,
               "No viable backend", "FP64");
  check_untouched("precision fp64 on the device", c, &d);
  testutil_device_case_free(&d);
  testutil_case_destroy(c);

  c = make_case(JSDPA_DTYPE_FP64);
  testutil_device_case_upload(c, false, &d);
  o.precision = JSDPA_PRECISION_DEFAULT;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse),
               JSDPA_STATUS_INVALID_ARGUMENT, "q.dtype is fp64",
               "but the data is in device 0 memory");
  check_untouched("fp64 on the device", c, &d);
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

/* options.validate_device_offsets copies the offsets to the host and checks
 * them before anything runs. */
static void test_validate_device_offsets(void) {
  testutil_case_t* c = make_case(JSDPA_DTYPE_FP16);
  /* q offsets {0, 5, 5, 12} -> {0, 5, 4, 12}: a decrease at index 2. */
  ((int32_t*)c->q_offsets)[2] = 4;
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.validate_device_offsets = true;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse),
               JSDPA_STATUS_INVALID_ARGUMENT,
               "q.offsets decrease at index 2: offsets[1] = 5, offsets[2] = 4");
  check_untouched("bad device offsets", c, &d);
  testutil_device_case_free(&d);

  ((int32_t*)c->q_offsets)[2] = 5;
  testutil_device_case_upload(c, true, &d);
  d.q.max_seqlen = 6;
  CHECK_STATUS(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse),
               JSDPA_STATUS_INVALID_ARGUMENT,
               "q.max_seqlen (6) is less than the longest q sequence (7)");
  d.q.max_seqlen = 7;
  jsdpa_selection_t sel;
  CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, d.lse, &sel));
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
}

/* Page-locked host memory is host memory: the cpu backend runs it. */
static void test_pinned_host(const jsdpa_cuda_driver_t* cu) {
  testutil_case_t* c = make_case(JSDPA_DTYPE_FP32);
  void* pinned = NULL;
  if (!CHECK(cu->cuMemAllocHost(&pinned, c->q_bytes) == CUDA_SUCCESS, "cuMemAllocHost")) return;
  memcpy(pinned, c->q_buffer, c->q_bytes);
  jsdpa_jagged_t q = c->q;
  q.data = pinned;
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &q, &c->k, &c->v, &c->out, c->lse, &sel)))
    CHECK(sel.backend == JSDPA_BACKEND_CPU, "pinned host memory chose %s",
          jsdpa_backend_name(sel.backend));
  if (CHECK_OK(jsdpa_forward(ctx, &o, &q, &c->k, &c->v, &c->out, c->lse)))
    testutil_case_check("pinned q on the cpu", c, &o, 0);
  cu->cuMemFreeHost(pinned);
  testutil_case_destroy(c);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  const jsdpa_cuda_driver_t* cu = testutil_require_gpu();
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  CHECK_OK(jsdpa_context_create(&co, &ctx));
  if (!ctx) return testutil_finish();
  const char* reason = NULL;
  const bool gpu = jsdpa_context_has_gpu(ctx, &reason);
  if (!CHECK(gpu, "the context has no GPU: %s", reason)) return testutil_finish();
  test_memory_mismatch();
  test_validate_device_offsets();
  test_pinned_host(cu);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
