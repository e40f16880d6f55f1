/*
 * testutil.h — helpers shared by every C test (unit and GPU).
 *
 *   checks     CHECK / CHECK_OK / CHECK_STATUS and a summary at exit (nonzero on failure)
 *   random     one seeded generator; the seed is printed, JSDPA_TEST_SEED overrides it
 *   fp16/bf16  host conversions (round to nearest even), independent of the library's
 *   cases      random jagged attention problems on the host: lengths, heads, kv heads, dims,
 *              dtype, layout (contiguous, padded, head-major, packed QKV), NaN-poisoned out
 *   reference  a naive float64 attention and a "same-precision" one (what a plain
 *              implementation in the input dtype computes), and the 2x-rule comparison
 *   gpu        testutil_require_gpu (exit 77 with the reason when there is none) and
 *              copies through the dlopen'ed driver
 *
 * Start every test with testutil_init(argv[0]); end main with `return testutil_finish();`.
 */
#ifndef JSDPA_TEST_TESTUTIL_H_
#define JSDPA_TEST_TESTUTIL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda_dl.h"
#include "jsdpa.h"

/* ------------------------------------------------------------ checks */

void testutil_init(const char* test_name);
/* Prints "<name>: N checks, M failed" and returns the exit code (0 or 1). */
int testutil_finish(void);
/* Records one check; on failure prints file:line and the message. Returns ok. */
bool testutil_check(bool ok, const char* file, int line, const char* format, ...)
    __attribute__((format(printf, 4, 5)));
int testutil_failures(void);

#define CHECK(cond, ...) testutil_check((cond), __FILE__, __LINE__, __VA_ARGS__)
/* The status must be OK; prints its message and frees it otherwise. */
#define CHECK_OK(status_expr) testutil_check_ok((status_expr), #status_expr, __FILE__, __LINE__)
bool testutil_check_ok(jsdpa_status_t status, const char* what, const char* file, int line);
/* The status must have `code` and its message must contain every string of the
 * NULL-terminated list; frees the status. */
#define CHECK_STATUS(status_expr, code, ...) \
  testutil_check_status((status_expr), (code), __FILE__, __LINE__, __VA_ARGS__, (const char*)NULL)
bool testutil_check_status(jsdpa_status_t status, jsdpa_status_code_t code, const char* file,
                           int line, ...);

/* ------------------------------------------------------------ random */

uint64_t testutil_seed(void);
uint64_t testutil_rand_u64(void);
double testutil_rand_uniform(void);                /* [0, 1) */
double testutil_rand_normal(void);                 /* N(0, 1) */
int64_t testutil_rand_int(int64_t lo, int64_t hi); /* [lo, hi] */

/* ------------------------------------------------------------ dtypes */

size_t testutil_dtype_size(jsdpa_dtype_t dtype);
uint16_t testutil_float_to_half(float x); /* round to nearest even, from the float's bits */
float testutil_half_to_float(uint16_t h);
uint16_t testutil_float_to_bf16(float x);
float testutil_bf16_to_float(uint16_t h);
/* x rounded (once, to nearest even) to dtype and back (fp64: unchanged). */
double testutil_round(jsdpa_dtype_t dtype, double x);
/* One unit in the last place at 1.0 for dtype (fp16 2^-10, bf16 2^-7, ...). */
double testutil_epsilon(jsdpa_dtype_t dtype);
/* The 2x rule's absolute floor (times the data's magnitude) for dtype: one ulp
 * at 1.0 for fp16/bf16, 2^-17 for fp32, 1e-12 for fp64. */
double testutil_default_floor(jsdpa_dtype_t dtype);
/* Element i of a buffer of dtype, as a double; and the store (rounded). */
double testutil_load(const void* data, jsdpa_dtype_t dtype, int64_t i);
void testutil_store(void* data, jsdpa_dtype_t dtype, int64_t i, double x);

/* ------------------------------------------------------------ cases */

typedef enum testutil_layout_e {
  TESTUTIL_LAYOUT_CONTIGUOUS = 0, /* [T, H, D], strides 0 */
  TESTUTIL_LAYOUT_PADDED = 1,     /* head and token strides with gaps (pad_elements each) */
  TESTUTIL_LAYOUT_HEAD_MAJOR = 2, /* [H, T, D]: token_stride D, head_stride T*D */
  TESTUTIL_LAYOUT_PACKED_QKV = 3, /* q, k, v interleaved per token in one buffer
                                     [T, H + 2*Hkv, D] (needs q lengths == kv lengths and
                                     head_dim == head_dim_v); out is contiguous */
} testutil_layout_t;

typedef struct testutil_case_config_s {
  int64_t batch;
  const int64_t* q_lens;  /* [batch] */
  const int64_t* kv_lens; /* [batch]; NULL: the q lengths */
  int64_t heads, kv_heads;
  int64_t head_dim, head_dim_v; /* head_dim_v 0: head_dim */
  jsdpa_dtype_t dtype;
  jsdpa_index_type_t offsets_type; /* 0: int32 */
  testutil_layout_t layout;
  int64_t pad_elements; /* PADDED: extra elements after each head and each token (0: 8) */
  bool with_lse;
  double input_scale; /* inputs are N(0, input_scale^2) rounded to dtype; 0: 1 */
} testutil_case_config_t;

/*
 * A random attention problem in host memory. Input gaps (padding) hold NaN so
 * a read outside the logical tensor poisons the result; out (gaps included)
 * and lse are filled with NaN by testutil_case_poison.
 */
typedef struct testutil_case_s {
  testutil_case_config_t config; /* lengths copied into q_lens / kv_lens below */
  int64_t* q_lens;
  int64_t* kv_lens;
  int64_t total_q, total_kv;
  jsdpa_jagged_t q, k, v, out; /* host descriptors */
  float* lse;                  /* [total_q, heads] or NULL */
  void* q_offsets;             /* [batch + 1] of config.offsets_type */
  void* kv_offsets;
  /* Buffers: q/k/v may share one (packed QKV). */
  void* q_buffer;
  void* kv_buffer; /* NULL when q_buffer holds k and v too */
  void* v_buffer;  /* NULL when k and v share kv_buffer or q_buffer */
  void* out_buffer;
  size_t q_bytes, kv_bytes, v_bytes, out_bytes;
} testutil_case_t;

testutil_case_t* testutil_case_create(const testutil_case_config_t* config);
void testutil_case_destroy(testutil_case_t* c);
/* out (all of its buffer) and lse to NaN (0xff bytes). */
void testutil_case_poison(testutil_case_t* c);
/* Whether the bytes of out's buffer outside the logical tensor still hold the poison. */
bool testutil_case_out_gaps_intact(const testutil_case_t* c);
/* A short description for summaries: "fp16 B3 H6/2 d64/64 padded". */
const char* testutil_case_describe(const testutil_case_t* c, char* buf, size_t capacity);

/* Reads a host jagged tensor into doubles [total_tokens, heads, head_dim] (malloc'd). */
double* testutil_read_tensor(const jsdpa_jagged_t* t);

/* ------------------------------------------------------------ references */

/*
 * out[total_q, heads, head_dim_v] and lse[total_q, heads] (both malloc'd by the
 * caller, doubles) for host q/k/v with host offsets and the options' features
 * (scale NaN = 1/sqrt(head_dim), causal bottom-right, window, softcap, GQA).
 * Rows that see no key get zeros and lse -inf.
 *   testutil_reference: float64 throughout, two-pass softmax.
 *   testutil_reference_same_precision: what a plain implementation in q's dtype
 *   computes: fp32 dot products, scores and probabilities rounded to the dtype,
 *   fp32 sums, output rounded to the dtype (fp64 inputs: float64 throughout).
 */
void testutil_reference(const jsdpa_jagged_t* q, const jsdpa_jagged_t* k, const jsdpa_jagged_t* v,
                        const jsdpa_forward_options_t* options, double* out, double* lse);
void testutil_reference_same_precision(const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                                       const jsdpa_jagged_t* v,
                                       const jsdpa_forward_options_t* options, double* out,
                                       double* lse);

/* ------------------------------------------------------------ comparison */

typedef struct testutil_compare_s {
  double max_error;  /* candidate vs reference */
  double same_error; /* same-precision vs reference */
  double bound;      /* 2 * same_error + floor */
  int64_t nan_count; /* NaN (or an infinity where the reference is finite) in the candidate */
  int64_t worst_index;
  bool ok;
} testutil_compare_t;

/*
 * The 2x rule: max |candidate - reference| <= 2 * max |same - reference| + floor * M,
 * and no NaN, where M = max(1, max |reference|) keeps the floor at the data's
 * scale (LSE values are larger than outputs; summation order alone moves the
 * last bits of an fp32 result). Equal infinities (lse -inf of empty rows) count as exact. Prints
 * one line "label: max err E (same-precision S, bound B) ok|FAIL" and records
 * a check.
 */
testutil_compare_t testutil_compare(const char* label, const double* reference, const double* same,
                                    const double* candidate, int64_t count, double floor);
/* Plain tolerance: max |candidate - reference| <= tolerance, no NaN. */
testutil_compare_t testutil_compare_tol(const char* label, const double* reference,
                                        const double* candidate, int64_t count, double tolerance);

/* Runs the case's reference, same-precision reference, and compares the case's
 * out (and lse if any) after a forward call. floor 0: testutil_default_floor(dtype). */
bool testutil_case_check(const char* label, const testutil_case_t* c,
                         const jsdpa_forward_options_t* options, double floor);

/* ------------------------------------------------------------ gpu */

/*
 * Exits 77 (ctest: skipped) with the reason printed when there is no CUDA
 * driver or no device. Otherwise makes device 0's primary context current on
 * this thread and returns the driver table.
 */
const jsdpa_cuda_driver_t* testutil_require_gpu(void);
/* Device buffers (exit the test with a message on any driver error). */
void* testutil_device_alloc(size_t bytes);
void testutil_device_free(void* device);
void* testutil_to_device(const void* host, size_t bytes); /* alloc + copy; NULL for 0 bytes */
void testutil_from_device(void* host, const void* device, size_t bytes);

/*
 * Device copies of a case: descriptors d_q/d_k/d_v/d_out pointing at device
 * buffers (same strides as the host ones), device lse, offsets on the device
 * or on the host. testutil_device_case_download copies out and lse back into
 * the host case, so testutil_case_check then checks the device result.
 */
typedef struct testutil_device_case_s {
  jsdpa_jagged_t q, k, v, out;
  float* lse;
  void* buffers[6]; /* q, kv, v, out, lse, offsets */
  void* q_offsets;
  void* kv_offsets;
} testutil_device_case_t;

void testutil_device_case_upload(const testutil_case_t* c, bool offsets_on_device,
                                 testutil_device_case_t* out_device);
/* Poisons the device out / lse (NaN) like testutil_case_poison. */
void testutil_device_case_poison(const testutil_case_t* c, testutil_device_case_t* d);
void testutil_device_case_download(testutil_case_t* c, const testutil_device_case_t* d);
void testutil_device_case_free(testutil_device_case_t* d);

#endif /* JSDPA_TEST_TESTUTIL_H_ */
