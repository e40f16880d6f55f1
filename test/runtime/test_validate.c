/*
 * Every validation error of jsdpa_forward (and jsdpa_explain, which validates
 * the same way): the status code, a message that names the argument and the
 * values, and out / out_lse left byte for byte as they were (poisoned).
 * Errors that need device memory (data split between host and device, fp64 on
 * the device, offsets on another device) are exercised by the GPU tests.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static jsdpa_context_t* ctx;
static testutil_case_t* pristine; /* the valid call every case starts from */

/* The arguments of one call, reset before each case. */
static struct {
  jsdpa_context_t* ctx;
  jsdpa_forward_options_t options;
  const jsdpa_forward_options_t* options_ptr;
  jsdpa_jagged_t q, k, v, out;
  const jsdpa_jagged_t *q_ptr, *k_ptr, *v_ptr, *out_ptr;
  float* lse;
  int64_t offsets[8]; /* room for hand-written offsets */
} f;

static unsigned char* out_snapshot;
static unsigned char* lse_snapshot;
static size_t lse_bytes;

static void reset(void) {
  memset(&f, 0, sizeof(f));
  f.ctx = ctx;
  jsdpa_forward_options_initialize(&f.options);
  f.options_ptr = &f.options;
  f.q = pristine->q;
  f.k = pristine->k;
  f.v = pristine->v;
  f.out = pristine->out;
  f.q_ptr = &f.q;
  f.k_ptr = &f.k;
  f.v_ptr = &f.v;
  f.out_ptr = &f.out;
  f.lse = pristine->lse;
}

/* Runs forward and explain on the current arguments; both must fail with
 * `code` and a message holding every given string; out and lse untouched. */
static void expect_rejected(int line, jsdpa_status_code_t code, ...) {
  const char* parts[8] = {0};
  va_list args;
  va_start(args, code);
  int n = 0;
  for (const char* p = va_arg(args, const char*); p && n < 7; p = va_arg(args, const char*))
    parts[n++] = p;
  va_end(args);
  for (int explain = 0; explain < 2; ++explain) {
    jsdpa_status_t s;
    jsdpa_selection_t sel;
    if (explain)
      s = jsdpa_explain(f.ctx, f.options_ptr, f.q_ptr, f.k_ptr, f.v_ptr, f.out_ptr, f.lse, &sel);
    else
      s = jsdpa_forward(f.ctx, f.options_ptr, f.q_ptr, f.k_ptr, f.v_ptr, f.out_ptr, f.lse);
    const char* message = jsdpa_status_message(s);
    if (explain == 0) printf("  line %d: %s\n", line, message);
    testutil_check(jsdpa_status_code(s) == code, __FILE__, line, "%s: expected %s, got %s: %s",
                   explain ? "explain" : "forward", jsdpa_status_code_name(code),
                   jsdpa_status_code_name(jsdpa_status_code(s)), message);
    for (int i = 0; i < n; ++i)
      testutil_check(strstr(message, parts[i]) != NULL, __FILE__, line, "message lacks \"%s\": %s",
                     parts[i], message);
    jsdpa_status_free(s);
  }
  testutil_check(memcmp(out_snapshot, pristine->out_buffer, pristine->out_bytes) == 0, __FILE__,
                 line, "out was written although the call failed");
  testutil_check(memcmp(lse_snapshot, pristine->lse, lse_bytes) == 0, __FILE__, line,
                 "out_lse was written although the call failed");
  reset();
}

#define REJECTS(code, ...) expect_rejected(__LINE__, code, __VA_ARGS__, (const char*)NULL)
#define INVALID(...) REJECTS(JSDPA_STATUS_INVALID_ARGUMENT, __VA_ARGS__)

static void accepted(int line, const char* what) {
  jsdpa_selection_t sel;
  jsdpa_status_t s =
      jsdpa_explain(f.ctx, f.options_ptr, f.q_ptr, f.k_ptr, f.v_ptr, f.out_ptr, f.lse, &sel);
  testutil_check(s == NULL, __FILE__, line, "%s should be accepted: %s", what,
                 jsdpa_status_message(s));
  jsdpa_status_free(s);
  reset();
}
#define ACCEPTED(what) accepted(__LINE__, what)

static void test_nulls(void) {
  f.ctx = NULL;
  INVALID("context is NULL");
  f.options_ptr = NULL;
  INVALID("options is NULL");
  f.q_ptr = NULL;
  INVALID("q is NULL");
  f.k_ptr = NULL;
  INVALID("k is NULL");
  f.v_ptr = NULL;
  INVALID("v is NULL");
  f.out_ptr = NULL;
  INVALID("out is NULL");
  f.q.data = NULL;
  INVALID("q.data is NULL", "q.total_tokens is 7");
  f.k.data = NULL;
  INVALID("k.data is NULL", "k.total_tokens is 8");
  f.v.data = NULL;
  INVALID("v.data is NULL");
  f.out.data = NULL;
  INVALID("out.data is NULL", "out.total_tokens is 7");
  f.q.offsets = NULL;
  INVALID("q.offsets is NULL", "4 integers");
  f.k.offsets = NULL;
  f.v.offsets = NULL;
  INVALID("k.offsets is NULL");
  jsdpa_status_t s = jsdpa_explain(ctx, &f.options, &f.q, &f.k, &f.v, &f.out, f.lse, NULL);
  CHECK_STATUS(s, JSDPA_STATUS_INVALID_ARGUMENT, "out_selection is NULL");
}

static void test_dtypes(void) {
  f.q.dtype = (jsdpa_dtype_t)9;
  INVALID("q.dtype (9) is not a jsdpa_dtype_t");
  f.out.dtype = (jsdpa_dtype_t)0;
  INVALID("out.dtype (0)");
  f.k.dtype = JSDPA_DTYPE_FP32;
  INVALID("k.dtype (fp32) differs from q.dtype (fp16)");
  f.v.dtype = JSDPA_DTYPE_BF16;
  INVALID("v.dtype (bf16) differs from q.dtype (fp16)");
  f.out.dtype = JSDPA_DTYPE_FP64;
  INVALID("out.dtype (fp64) differs from q.dtype (fp16)");
}

static void test_sizes(void) {
  f.q.heads = 0;
  INVALID("q.heads (0) must be in [1, 65535]");
  f.k.heads = 65536;
  INVALID("k.heads (65536) must be in [1, 65535]");
  f.v.head_dim = 0;
  INVALID("v.head_dim (0) must be in [1, 1024]");
  f.q.head_dim = 1025;
  INVALID("q.head_dim (1025) must be in [1, 1024]");
  f.q.total_tokens = -1;
  INVALID("q.total_tokens (-1) must be in [0, 2147483647]");
  f.k.total_tokens = 2147483648;
  INVALID("k.total_tokens (2147483648) must be in [0, 2147483647]");
  f.q.head_dim = 8;
  INVALID("k.head_dim (16) differs from q.head_dim (8)");
  f.v.heads = 1;
  INVALID("v.heads (1) differs from k.heads (2)");
  f.k.heads = f.v.heads = 3;
  INVALID("q.heads (4) is not a multiple of k.heads (3)");
  f.out.heads = 2;
  INVALID("out.heads (2) differs from q.heads (4)");
  f.out.head_dim = 16;
  INVALID("out.head_dim (16) differs from v.head_dim (8)");
  f.v.total_tokens = 5;
  INVALID("v.total_tokens (5) differs from k.total_tokens (8)");
  f.out.total_tokens = 6;
  INVALID("out.total_tokens (6) differs from q.total_tokens (7)");
}

static void test_batch_and_offsets(void) {
  f.q.batch = f.k.batch = f.v.batch = -1;
  INVALID("q.batch (-1) must be in [0, 2147483646]");
  f.k.batch = 2;
  INVALID("k.batch (2) differs from q.batch (3)");
  f.v.batch = 4;
  INVALID("v.batch (4) differs from k.batch (3)");
  f.q.offsets_type = (jsdpa_index_type_t)3;
  INVALID("q.offsets_type (3) is not a jsdpa_index_type_t");
  f.k.offsets = (const char*)f.k.offsets + 2;
  f.v.offsets = f.k.offsets;
  INVALID("k.offsets", "is not aligned to its index size (4 bytes)");
  f.v.offsets = f.q.offsets;
  INVALID("v.offsets", "differs from k.offsets", "pass NULL or the same pointer");
  f.v.offsets_type = JSDPA_INDEX_INT64;
  INVALID("v.offsets", "type 2) differs from k.offsets");
  f.q.max_seqlen = -2;
  INVALID("q.max_seqlen (-2) must be -1 (unknown) or in [0, q.total_tokens = 7]");
  f.k.max_seqlen = 9;
  INVALID("k.max_seqlen (9) must be -1 (unknown) or in [0, k.total_tokens = 8]");
  f.q.max_seqlen = 3;
  INVALID("q.max_seqlen (3) is less than the longest q sequence (4)");
  f.k.max_seqlen = 5;
  ACCEPTED("k.max_seqlen equal to the longest sequence");
  f.v.offsets = NULL;
  ACCEPTED("v.offsets NULL (shares k's)");

  /* Host offsets, int32 and int64: q lengths {3, 0, 4}, kv {2, 5, 1}. */
  for (int wide = 0; wide < 2; ++wide) {
    const jsdpa_index_type_t type = wide ? JSDPA_INDEX_INT64 : JSDPA_INDEX_INT32;
    const int64_t cases[][4] = {{1, 3, 3, 7}, {0, 3, 2, 7}, {0, 3, 3, 6}, {0, 9, 9, 7}};
    const char* const expected[][2] = {
        {"q.offsets[0] is 1, expected 0", NULL},
        {"q.offsets decrease at index 2", "offsets[1] = 3, offsets[2] = 2"},
        {"q.offsets[3] (the last) is 6 but q.total_tokens is 7", NULL},
        {"q.offsets[1] (9) exceeds q.total_tokens (7)", NULL}};
    for (int c = 0; c < 4; ++c) {
      int32_t* narrow = (int32_t*)f.offsets;
      for (int i = 0; i < 4; ++i) {
        if (wide)
          f.offsets[i] = cases[c][i];
        else
          narrow[i] = (int32_t)cases[c][i];
      }
      f.q.offsets = f.offsets;
      f.q.offsets_type = type;
      if (expected[c][1])
        INVALID(expected[c][0], expected[c][1]);
      else
        INVALID(expected[c][0]);
    }
    /* kv offsets 0, 2, 1, 8: decrease at index 2. */
    const int64_t kv[] = {0, 2, 1, 8};
    int32_t* narrow = (int32_t*)f.offsets;
    for (int i = 0; i < 4; ++i) {
      if (wide)
        f.offsets[i] = kv[i];
      else
        narrow[i] = (int32_t)kv[i];
    }
    f.k.offsets = f.offsets;
    f.k.offsets_type = type;
    f.v.offsets = NULL;
    INVALID("k.offsets decrease at index 2: offsets[1] = 2, offsets[2] = 1");
  }
}

static void test_strides(void) {
  f.q.token_stride = -64;
  INVALID("q.token_stride (-64) is negative");
  f.v.head_stride = -1;
  INVALID("v.head_stride (-1) is negative");
  f.k.token_stride = INT64_MAX / 4;
  INVALID("k's strides overflow", "token_stride 2305843009213693951");
  f.q.head_stride = INT64_MAX / 2;
  INVALID("q.head_stride (4611686018427387903) times q.heads (4) overflows int64");
  f.q.data = (char*)f.q.data + 1;
  INVALID("q.data", "is not aligned to its element size (2 bytes, fp16)");
  f.out.data = (char*)f.out.data + 1;
  INVALID("out.data", "is not aligned to its element size (2 bytes, fp16)");

  /* out must not overlap itself; inputs may (packed or broadcast views). */
  f.out.head_stride = 4;
  INVALID("out's layout overlaps itself", "out.head_stride (4) is smaller than the 8 elements");
  f.out.token_stride = 16;
  INVALID("out's layout overlaps itself", "out.token_stride (16) is smaller than the 32 elements");
  f.out.token_stride = 8;
  f.out.head_stride = 7 * 8;
  ACCEPTED("a head-major out [heads, tokens, d]");
  f.out.token_stride = 8;
  f.out.head_stride = 6 * 8;
  INVALID("out's layout overlaps itself", "out.head_stride (48) is smaller than the 56 elements");
  f.q.head_stride = 8;
  f.q.token_stride = 16;
  ACCEPTED("q rows that overlap each other (inputs may alias themselves)");
  f.k.token_stride = 16;
  f.k.head_stride = 0;
  ACCEPTED("k with token_stride 16, head_stride 0 (= head_dim)");
}

static void test_aliasing(void) {
  f.out.data = f.q.data;
  INVALID("out (bytes", "overlaps q (bytes", "must not alias an input");
  f.out.data = (char*)f.k.data + 16;
  INVALID("overlaps k (bytes");
  f.out.data = f.v.data;
  INVALID("overlaps v (bytes");
  f.lse = (float*)f.v.data;
  INVALID("out_lse (bytes", "overlaps v (bytes");
  f.lse = (float*)f.out.data;
  INVALID("out_lse (bytes", "overlaps out (bytes");
  f.lse = (float*)((char*)pristine->lse + 2);
  INVALID("out_lse", "is not aligned to 4 bytes");
}

static void test_options(void) {
  f.options.scale = INFINITY;
  INVALID("options.scale (inf) is not finite");
  f.options.scale = 1e300;
  INVALID("options.scale (1e+300) does not fit in float");
  f.options.window_left = -2;
  INVALID("options.window_left (-2) must be -1 (unlimited) or >= 0");
  f.options.window_right = -7;
  INVALID("options.window_right (-7) must be -1 (unlimited) or >= 0");
  f.options.softcap = -1.0f;
  INVALID("options.softcap (-1) must be finite and >= 0");
  f.options.softcap = NAN;
  INVALID("options.softcap (nan) must be finite and >= 0");
  f.options.backend = (jsdpa_backend_t)9;
  INVALID("options.backend (9) is not a jsdpa_backend_t");
  f.options.precision = (jsdpa_precision_t)5;
  INVALID("options.precision (5) is not a jsdpa_precision_t");
  f.options.window_left = (int64_t)1 << 40;
  ACCEPTED("a window wider than any sequence");
  f.options.scale = -0.5;
  ACCEPTED("a negative finite scale");
}

/* A forced backend that cannot run is UNSUPPORTED, with its reason. */
static void test_forced_backends(void) {
  static const jsdpa_backend_t gpu_backends[] = {JSDPA_BACKEND_FLASH, JSDPA_BACKEND_EFFICIENT,
                                                 JSDPA_BACKEND_MATH};
  for (int i = 0; i < 3; ++i) {
    char expected[64];
    snprintf(expected, sizeof(expected), "options.backend forces %s",
             jsdpa_backend_name(gpu_backends[i]));
    f.options.backend = gpu_backends[i];
    REJECTS(JSDPA_STATUS_UNSUPPORTED, expected, "which cannot run this call");
  }
}

/* Empty tensors may have NULL data; a batch of zero sequences is valid. */
static void test_empty_accepted(void) {
  int64_t zeros[2] = {0, 0};
  testutil_case_config_t cfg = {.batch = 2,
                                .q_lens = zeros,
                                .heads = 2,
                                .kv_heads = 1,
                                .head_dim = 8,
                                .dtype = JSDPA_DTYPE_FP32};
  testutil_case_t* c = testutil_case_create(&cfg);
  c->q.data = c->k.data = c->v.data = c->out.data = NULL;
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  CHECK_OK(jsdpa_forward(ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL));
  c->q.batch = c->k.batch = c->v.batch = 0;
  CHECK_OK(jsdpa_forward(ctx, &o, &c->q, &c->k, &c->v, &c->out, NULL));
  testutil_case_destroy(c);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = "";
  CHECK_OK(jsdpa_context_create(&co, &ctx));
  if (!ctx) return testutil_finish();

  int64_t q_lens[] = {3, 0, 4}, kv_lens[] = {2, 5, 1};
  testutil_case_config_t cfg = {.batch = 3,
                                .q_lens = q_lens,
                                .kv_lens = kv_lens,
                                .heads = 4,
                                .kv_heads = 2,
                                .head_dim = 16,
                                .head_dim_v = 8,
                                .dtype = JSDPA_DTYPE_FP16,
                                .with_lse = true};
  pristine = testutil_case_create(&cfg);
  lse_bytes = sizeof(float) * (size_t)(pristine->total_q * cfg.heads);
  out_snapshot = malloc(pristine->out_bytes);
  lse_snapshot = malloc(lse_bytes);
  memcpy(out_snapshot, pristine->out_buffer, pristine->out_bytes);
  memcpy(lse_snapshot, pristine->lse, lse_bytes);
  reset();

  test_nulls();
  test_dtypes();
  test_sizes();
  test_batch_and_offsets();
  test_strides();
  test_aliasing();
  test_options();
  test_forced_backends();
  test_empty_accepted();

  /* The fixture itself is valid: the same arguments run and match the reference. */
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  if (CHECK_OK(jsdpa_forward(ctx, &o, &pristine->q, &pristine->k, &pristine->v, &pristine->out,
                             pristine->lse)))
    testutil_case_check("fixture", pristine, &o, 0);

  free(out_snapshot);
  free(lse_snapshot);
  testutil_case_destroy(pristine);
  jsdpa_context_destroy(ctx);
  return testutil_finish();
}
