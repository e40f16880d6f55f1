/* Shared test helpers; see testutil.h. Everything here is written apart from
 * the library (its own conversions, its own reference) so the tests check the
 * library rather than repeat it. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ checks */

static const char* test_name = "test";
static int64_t checks_run, checks_failed;

static uint64_t rng_state[4];
static uint64_t seed_value;

static uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void testutil_init(const char* name) {
  const char* slash = name ? strrchr(name, '/') : NULL;
  test_name = slash ? slash + 1 : name ? name : "test";
  const char* env = getenv("JSDPA_TEST_SEED");
  if (env && *env) {
    seed_value = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed_value = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  uint64_t x = seed_value;
  for (int i = 0; i < 4; ++i) rng_state[i] = splitmix64(&x);
  printf("%s: seed %llu (JSDPA_TEST_SEED=%llu reproduces this run)\n", test_name,
         (unsigned long long)seed_value, (unsigned long long)seed_value);
  fflush(stdout);
}

int testutil_finish(void) {
  printf("%s: %lld checks, %lld failed (seed %llu)\n", test_name, (long long)checks_run,
         (long long)checks_failed, (unsigned long long)seed_value);
  fflush(stdout);
  return checks_failed ? 1 : 0;
}

int testutil_failures(void) {
  return (int)checks_failed;
}

static bool vcheck(bool ok, const char* file, int line, const char* format, va_list args) {
  ++checks_run;
  if (ok) return true;
  ++checks_failed;
  fprintf(stdout, "%s:%d: FAILED: ", file, line);
  vfprintf(stdout, format, args);
  fputc('\n', stdout);
  fflush(stdout);
  return false;
}

bool testutil_check(bool ok, const char* file, int line, const char* format, ...) {
  va_list args;
  va_start(args, format);
  bool r = vcheck(ok, file, line, format, args);
  va_end(args);
  return r;
}

bool testutil_check_ok(jsdpa_status_t status, const char* what, const char* file, int line) {
  bool ok = testutil_check(status == NULL, file, line, "%s: %s: %s", what,
                           jsdpa_status_code_name(jsdpa_status_code(status)),
                           jsdpa_status_message(status));
  jsdpa_status_free(status);
  return ok;
}

bool testutil_check_status(jsdpa_status_t status, jsdpa_status_code_t code, const char* file,
                           int line, ...) {
  const char* message = jsdpa_status_message(status);
  bool ok = testutil_check(jsdpa_status_code(status) == code, file, line, "expected %s, got %s: %s",
                           jsdpa_status_code_name(code),
                           jsdpa_status_code_name(jsdpa_status_code(status)), message);
  va_list args;
  va_start(args, line);
  for (const char* part = va_arg(args, const char*); part; part = va_arg(args, const char*))
    ok = testutil_check(strstr(message, part) != NULL, file, line, "message lacks \"%s\": %s", part,
                        message) &&
         ok;
  va_end(args);
  jsdpa_status_free(status);
  return ok;
}

/* ------------------------------------------------------------ random (xoshiro256**) */

uint64_t testutil_seed(void) {
  return seed_value;
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t testutil_rand_u64(void) {
  uint64_t* s = rng_state;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double testutil_rand_uniform(void) {
  return (double)(testutil_rand_u64() >> 11) * 0x1.0p-53;
}

double testutil_rand_normal(void) {
  double u1 = 1.0 - testutil_rand_uniform(); /* (0, 1] */
  double u2 = testutil_rand_uniform();
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int64_t testutil_rand_int(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + (int64_t)(testutil_rand_u64() % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------ dtypes */

size_t testutil_dtype_size(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16:
    case JSDPA_DTYPE_BF16: return 2;
    case JSDPA_DTYPE_FP32: return 4;
    case JSDPA_DTYPE_FP64: return 8;
  }
  return 0;
}

/* Bit-level rounding of the float's mantissa: keep the top 10 bits, round the
 * 13 dropped ones to nearest even; the carry runs into the exponent. */
uint16_t testutil_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
  if (magnitude < 0x38800000u) {                       /* below 2^-14: subnormal half */
    return sign | (uint16_t)nearbyintf(fabsf(f) * 16777216.0f);
  }
  uint32_t h = ((magnitude >> 23) - 112) << 10 | ((magnitude >> 13) & 0x3ffu);
  const uint32_t dropped = magnitude & 0x1fffu;
  if (dropped > 0x1000u || (dropped == 0x1000u && (h & 1u))) ++h;
  return sign | (uint16_t)h;
}

float testutil_half_to_float(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  float v;
  if (e == 31)
    v = m ? NAN : INFINITY;
  else if (e == 0)
    v = ldexpf((float)m, -24);
  else
    v = ldexpf((float)(1024 + m), e - 25);
  return (h & 0x8000u) ? -v : v;
}

uint16_t testutil_float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

float testutil_bf16_to_float(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, sizeof(f));
  return f;
}

/* double -> float rounding to odd (truncate, then set the last bit if
 * anything was dropped): rounding that float to fp16/bf16 to nearest even then
 * gives the correctly rounded result of the double, with no double rounding. */
static float to_float_round_odd(double x) {
  float f = (float)x;
  if (!isfinite(f) || (double)f == x) return f;
  if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  bits |= 1u;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

double testutil_round(jsdpa_dtype_t dtype, double x) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16:
      return testutil_half_to_float(testutil_float_to_half(to_float_round_odd(x)));
    case JSDPA_DTYPE_BF16:
      return testutil_bf16_to_float(testutil_float_to_bf16(to_float_round_odd(x)));
    case JSDPA_DTYPE_FP32: return (float)x;
    case JSDPA_DTYPE_FP64: return x;
  }
  return NAN;
}

double testutil_epsilon(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: return 0x1p-10;
    case JSDPA_DTYPE_BF16: return 0x1p-7;
    case JSDPA_DTYPE_FP32: return 0x1p-23;
    case JSDPA_DTYPE_FP64: return 0x1p-52;
  }
  return NAN;
}

double testutil_default_floor(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16:
    case JSDPA_DTYPE_BF16: return testutil_epsilon(dtype);
    /* An fp32 "same-precision" result is as exact as the candidate: only the
     * summation order differs, and on a long dot product that alone moves
     * tens of ulps. 2^-17 is 64 ulps, far below any real error. */
    case JSDPA_DTYPE_FP32: return 0x1p-17;
    case JSDPA_DTYPE_FP64: return 1e-12;
  }
  return NAN;
}

double testutil_load(const void* data, jsdpa_dtype_t dtype, int64_t i) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: return testutil_half_to_float(((const uint16_t*)data)[i]);
    case JSDPA_DTYPE_BF16: return testutil_bf16_to_float(((const uint16_t*)data)[i]);
    case JSDPA_DTYPE_FP32: return ((const float*)data)[i];
    case JSDPA_DTYPE_FP64: return ((const double*)data)[i];
  }
  return NAN;
}

void testutil_store(void* data, jsdpa_dtype_t dtype, int64_t i, double x) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16:
      ((uint16_t*)data)[i] = testutil_float_to_half(to_float_round_odd(x));
      break;
    case JSDPA_DTYPE_BF16:
      ((uint16_t*)data)[i] = testutil_float_to_bf16(to_float_round_odd(x));
      break;
    case JSDPA_DTYPE_FP32: ((float*)data)[i] = (float)x; break;
    case JSDPA_DTYPE_FP64: ((double*)data)[i] = x; break;
  }
}

/* ------------------------------------------------------------ cases */

static void* xmalloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "%s: out of host memory (%zu bytes)\n", test_name, bytes);
    exit(1);
  }
  return p;
}

static int64_t stride_h(const jsdpa_jagged_t* t) {
  return t->head_stride ? t->head_stride : t->head_dim;
}
static int64_t stride_t(const jsdpa_jagged_t* t) {
  return t->token_stride ? t->token_stride : t->heads * stride_h(t);
}
static int64_t element_index(const jsdpa_jagged_t* t, int64_t token, int64_t head, int64_t d) {
  return token * stride_t(t) + head * stride_h(t) + d;
}

static int64_t offset_at(const void* offsets, jsdpa_index_type_t type, int64_t i) {
  return type == JSDPA_INDEX_INT64 ? ((const int64_t*)offsets)[i] : ((const int32_t*)offsets)[i];
}

static void* make_offsets(const int64_t* lens, int64_t batch, jsdpa_index_type_t type,
                          int64_t* out_total) {
  void* offsets = xmalloc((size_t)(batch + 1) * 8);
  int64_t total = 0;
  for (int64_t b = 0; b <= batch; ++b) {
    if (type == JSDPA_INDEX_INT64)
      ((int64_t*)offsets)[b] = total;
    else
      ((int32_t*)offsets)[b] = (int32_t)total;
    if (b < batch) total += lens[b];
  }
  *out_total = total;
  return offsets;
}

/* Sets strides for a layout and returns the buffer's element count. */
static int64_t lay_out(jsdpa_jagged_t* t, testutil_layout_t layout, int64_t pad) {
  const int64_t tokens = t->total_tokens, heads = t->heads, d = t->head_dim;
  switch (layout) {
    case TESTUTIL_LAYOUT_PADDED:
      t->head_stride = d + pad;
      t->token_stride = heads * t->head_stride + pad;
      return tokens * t->token_stride;
    case TESTUTIL_LAYOUT_HEAD_MAJOR:
      t->token_stride = d;
      t->head_stride = (tokens > 0 ? tokens : 1) * d;
      return heads * t->head_stride;
    case TESTUTIL_LAYOUT_CONTIGUOUS:
    case TESTUTIL_LAYOUT_PACKED_QKV: break;
  }
  t->token_stride = t->head_stride = 0;
  return tokens * heads * d;
}

static void fill_random(const jsdpa_jagged_t* t, double scale) {
  for (int64_t token = 0; token < t->total_tokens; ++token)
    for (int64_t h = 0; h < t->heads; ++h)
      for (int64_t d = 0; d < t->head_dim; ++d)
        testutil_store(t->data, t->dtype, element_index(t, token, h, d),
                       scale * testutil_rand_normal());
}

testutil_case_t* testutil_case_create(const testutil_case_config_t* config) {
  testutil_case_t* c = xmalloc(sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->config = *config;
  testutil_case_config_t* cf = &c->config;
  if (cf->offsets_type == 0) cf->offsets_type = JSDPA_INDEX_INT32;
  if (cf->head_dim_v == 0) cf->head_dim_v = cf->head_dim;
  if (cf->pad_elements == 0) cf->pad_elements = 8;
  if (cf->input_scale == 0) cf->input_scale = 1;
  const int64_t batch = cf->batch;
  c->q_lens = xmalloc(sizeof(int64_t) * (size_t)(batch + 1));
  c->kv_lens = xmalloc(sizeof(int64_t) * (size_t)(batch + 1));
  for (int64_t b = 0; b < batch; ++b) {
    c->q_lens[b] = config->q_lens[b];
    c->kv_lens[b] = config->kv_lens ? config->kv_lens[b] : config->q_lens[b];
  }
  cf->q_lens = c->q_lens;
  cf->kv_lens = c->kv_lens;
  c->q_offsets = make_offsets(c->q_lens, batch, cf->offsets_type, &c->total_q);
  c->kv_offsets = make_offsets(c->kv_lens, batch, cf->offsets_type, &c->total_kv);

  const jsdpa_dtype_t dt = cf->dtype;
  const size_t es = testutil_dtype_size(dt);
  jsdpa_jagged_initialize(&c->q, NULL, dt, c->total_q, cf->heads, cf->head_dim, c->q_offsets,
                          cf->offsets_type, batch);
  jsdpa_jagged_initialize(&c->k, NULL, dt, c->total_kv, cf->kv_heads, cf->head_dim, c->kv_offsets,
                          cf->offsets_type, batch);
  jsdpa_jagged_initialize(&c->v, NULL, dt, c->total_kv, cf->kv_heads, cf->head_dim_v, c->kv_offsets,
                          cf->offsets_type, batch);
  jsdpa_jagged_initialize(&c->out, NULL, dt, c->total_q, cf->heads, cf->head_dim_v, c->q_offsets,
                          cf->offsets_type, batch);

  if (cf->layout == TESTUTIL_LAYOUT_PACKED_QKV) {
    bool same = cf->head_dim == cf->head_dim_v;
    for (int64_t b = 0; b < batch; ++b) same = same && c->q_lens[b] == c->kv_lens[b];
    if (!same) {
      fprintf(stderr, "%s: packed QKV needs equal q/kv lengths and head dims\n", test_name);
      exit(1);
    }
    const int64_t width = (cf->heads + 2 * cf->kv_heads) * cf->head_dim;
    c->q_bytes = (size_t)(c->total_q * width) * es;
    c->q_buffer = xmalloc(c->q_bytes);
    c->q.data = c->q_buffer;
    c->k.data = (char*)c->q_buffer + (size_t)(cf->heads * cf->head_dim) * es;
    c->v.data = (char*)c->q_buffer + (size_t)((cf->heads + cf->kv_heads) * cf->head_dim) * es;
    c->q.token_stride = c->k.token_stride = c->v.token_stride = width;
    c->q.head_stride = c->k.head_stride = c->v.head_stride = cf->head_dim;
    c->out_bytes = (size_t)lay_out(&c->out, TESTUTIL_LAYOUT_CONTIGUOUS, 0) * es;
  } else {
    c->q_bytes = (size_t)lay_out(&c->q, cf->layout, cf->pad_elements) * es;
    c->kv_bytes = (size_t)lay_out(&c->k, cf->layout, cf->pad_elements) * es;
    c->v_bytes = (size_t)lay_out(&c->v, cf->layout, cf->pad_elements) * es;
    c->out_bytes = (size_t)lay_out(&c->out, cf->layout, cf->pad_elements) * es;
    c->q_buffer = xmalloc(c->q_bytes);
    c->kv_buffer = xmalloc(c->kv_bytes);
    c->v_buffer = xmalloc(c->v_bytes);
    c->q.data = c->q_buffer;
    c->k.data = c->kv_buffer;
    c->v.data = c->v_buffer;
  }
  c->out_buffer = xmalloc(c->out_bytes);
  c->out.data = c->out_buffer;
  /* NaN in every gap: a read outside the logical tensor shows in the result. */
  memset(c->q_buffer, 0xff, c->q_bytes);
  if (c->kv_buffer) memset(c->kv_buffer, 0xff, c->kv_bytes);
  if (c->v_buffer) memset(c->v_buffer, 0xff, c->v_bytes);
  fill_random(&c->q, cf->input_scale);
  fill_random(&c->k, cf->input_scale);
  fill_random(&c->v, cf->input_scale);
  if (cf->with_lse) c->lse = xmalloc(sizeof(float) * (size_t)(c->total_q * cf->heads));
  testutil_case_poison(c);
  return c;
}

void testutil_case_destroy(testutil_case_t* c) {
  if (!c) return;
  free(c->q_lens);
  free(c->kv_lens);
  free(c->q_offsets);
  free(c->kv_offsets);
  free(c->q_buffer);
  free(c->kv_buffer);
  free(c->v_buffer);
  free(c->out_buffer);
  free(c->lse);
  free(c);
}

void testutil_case_poison(testutil_case_t* c) {
  memset(c->out_buffer, 0xff, c->out_bytes);
  if (c->lse) memset(c->lse, 0xff, sizeof(float) * (size_t)(c->total_q * c->config.heads));
}

bool testutil_case_out_gaps_intact(const testutil_case_t* c) {
  const size_t es = testutil_dtype_size(c->out.dtype);
  const int64_t count = (int64_t)(c->out_bytes / es);
  bool* logical = calloc((size_t)count + 1, sizeof(bool));
  for (int64_t t = 0; t < c->out.total_tokens; ++t)
    for (int64_t h = 0; h < c->out.heads; ++h)
      for (int64_t d = 0; d < c->out.head_dim; ++d) logical[element_index(&c->out, t, h, d)] = true;
  bool intact = true;
  const unsigned char* bytes = c->out_buffer;
  for (int64_t i = 0; i < count && intact; ++i)
    if (!logical[i])
      for (size_t b = 0; b < es; ++b) intact = intact && bytes[(size_t)i * es + b] == 0xff;
  free(logical);
  return intact;
}

const char* testutil_case_describe(const testutil_case_t* c, char* buf, size_t capacity) {
  static const char* const layouts[] = {"contiguous", "padded", "head-major", "packed-qkv"};
  const testutil_case_config_t* cf = &c->config;
  snprintf(buf, capacity, "%s B%lld H%lld/%lld d%lld/%lld q%lld kv%lld %s %s",
           jsdpa_dtype_name(cf->dtype), (long long)cf->batch, (long long)cf->heads,
           (long long)cf->kv_heads, (long long)cf->head_dim, (long long)cf->head_dim_v,
           (long long)c->total_q, (long long)c->total_kv, layouts[cf->layout],
           cf->offsets_type == JSDPA_INDEX_INT64 ? "i64" : "i32");
  return buf;
}

double* testutil_read_tensor(const jsdpa_jagged_t* t) {
  double* x = xmalloc(sizeof(double) * (size_t)(t->total_tokens * t->heads * t->head_dim));
  int64_t n = 0;
  for (int64_t token = 0; token < t->total_tokens; ++token)
    for (int64_t h = 0; h < t->heads; ++h)
      for (int64_t d = 0; d < t->head_dim; ++d)
        x[n++] = testutil_load(t->data, t->dtype, element_index(t, token, h, d));
  return x;
}

/* ------------------------------------------------------------ references */

/* Whether key j is visible to row i of a sequence, written as the mask
 * definition (bottom-right alignment: the last query row sees the last key). */
static bool visible(const jsdpa_forward_options_t* o, int64_t i, int64_t j, int64_t q_len,
                    int64_t kv_len) {
  const int64_t aligned = i + kv_len - q_len;
  if (o->is_causal && j > aligned) return false;
  if (o->window_left >= 0 && j < aligned - o->window_left) return false;
  if (o->window_right >= 0 && j > aligned + o->window_right) return false;
  return true;
}

static void reference_impl(const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                           const jsdpa_jagged_t* v, const jsdpa_forward_options_t* o, double* out,
                           double* lse, bool same_precision) {
  const jsdpa_dtype_t dt = q->dtype;
  const bool plain = same_precision && dt != JSDPA_DTYPE_FP64;
  const int64_t heads = q->heads, group = q->heads / k->heads;
  const int64_t d = q->head_dim, dv = v->head_dim;
  const double scale = isnan(o->scale) ? 1.0 / sqrt((double)d) : o->scale;
  int64_t max_kv = 0;
  for (int64_t b = 0; b < q->batch; ++b) {
    int64_t len =
        offset_at(k->offsets, k->offsets_type, b + 1) - offset_at(k->offsets, k->offsets_type, b);
    if (len > max_kv) max_kv = len;
  }
  double* s = xmalloc(sizeof(double) * (size_t)(max_kv + 1));
  for (int64_t b = 0; b < q->batch; ++b) {
    const int64_t q0 = offset_at(q->offsets, q->offsets_type, b);
    const int64_t q_len = offset_at(q->offsets, q->offsets_type, b + 1) - q0;
    const int64_t k0 = offset_at(k->offsets, k->offsets_type, b);
    const int64_t kv_len = offset_at(k->offsets, k->offsets_type, b + 1) - k0;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < q_len; ++i) {
        double* o_row = out + ((q0 + i) * heads + h) * dv;
        double m = -INFINITY;
        int64_t seen = 0;
        for (int64_t j = 0; j < kv_len; ++j) {
          if (!visible(o, i, j, q_len, kv_len)) continue;
          ++seen;
          double score;
          if (plain) {
            float dot = 0;
            for (int64_t c = 0; c < d; ++c)
              dot += (float)testutil_load(q->data, dt, element_index(q, q0 + i, h, c)) *
                     (float)testutil_load(k->data, dt, element_index(k, k0 + j, g, c));
            score = testutil_round(dt, dot * (float)scale);
            if (o->softcap > 0)
              score = testutil_round(dt, o->softcap * tanhf((float)score / o->softcap));
          } else {
            double dot = 0;
            for (int64_t c = 0; c < d; ++c)
              dot += testutil_load(q->data, dt, element_index(q, q0 + i, h, c)) *
                     testutil_load(k->data, dt, element_index(k, k0 + j, g, c));
            score = dot * scale;
            if (o->softcap > 0) score = o->softcap * tanh(score / o->softcap);
          }
          s[j] = score;
          if (score > m) m = score;
        }
        for (int64_t c = 0; c < dv; ++c) o_row[c] = 0;
        if (seen == 0) {
          if (lse) lse[(q0 + i) * heads + h] = -INFINITY;
          continue;
        }
        double sum = 0;
        float sum_f = 0;
        for (int64_t j = 0; j < kv_len; ++j) {
          if (!visible(o, i, j, q_len, kv_len)) continue;
          if (plain) {
            s[j] = expf((float)(s[j] - m));
            sum_f += (float)s[j];
          } else {
            s[j] = exp(s[j] - m);
            sum += s[j];
          }
        }
        if (plain) {
          float acc[dv];
          for (int64_t c = 0; c < dv; ++c) acc[c] = 0;
          for (int64_t j = 0; j < kv_len; ++j) {
            if (!visible(o, i, j, q_len, kv_len)) continue;
            const float p = (float)testutil_round(dt, (float)s[j] / sum_f);
            for (int64_t c = 0; c < dv; ++c)
              acc[c] += p * (float)testutil_load(v->data, dt, element_index(v, k0 + j, g, c));
          }
          for (int64_t c = 0; c < dv; ++c) o_row[c] = testutil_round(dt, acc[c]);
          if (lse) lse[(q0 + i) * heads + h] = (float)m + logf(sum_f);
        } else {
          for (int64_t j = 0; j < kv_len; ++j) {
            if (!visible(o, i, j, q_len, kv_len)) continue;
            for (int64_t c = 0; c < dv; ++c)
              o_row[c] += s[j] * testutil_load(v->data, dt, element_index(v, k0 + j, g, c));
          }
          for (int64_t c = 0; c < dv; ++c) o_row[c] /= sum;
          if (lse) lse[(q0 + i) * heads + h] = m + log(sum);
        }
      }
    }
  }
  free(s);
}

void testutil_reference(const jsdpa_jagged_t* q, const jsdpa_jagged_t* k, const jsdpa_jagged_t* v,
                        const jsdpa_forward_options_t* options, double* out, double* lse) {
  reference_impl(q, k, v, options, out, lse, false);
}

void testutil_reference_same_precision(const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                                       const jsdpa_jagged_t* v,
                                       const jsdpa_forward_options_t* options, double* out,
                                       double* lse) {
  reference_impl(q, k, v, options, out, lse, true);
}

/* ------------------------------------------------------------ comparison */

/* |a - b| where equal infinities are exact and a NaN or a lone infinity is infinite. */
static double difference(double reference, double x) {
  if (reference == x) return 0;
  double e = fabs(x - reference);
  return isnan(e) ? INFINITY : e;
}

static testutil_compare_t compare(const char* label, const double* reference, const double* same,
                                  const double* candidate, int64_t count, double floor,
                                  double tolerance) {
  testutil_compare_t r = {0, 0, 0, 0, -1, true};
  double magnitude = 1; /* the floor is in units of the data's size */
  for (int64_t i = 0; i < count; ++i)
    if (isfinite(reference[i]) && fabs(reference[i]) > magnitude) magnitude = fabs(reference[i]);
  for (int64_t i = 0; i < count; ++i) {
    if (same) {
      double e = difference(reference[i], same[i]);
      if (e > r.same_error) r.same_error = e;
    }
    if (isnan(candidate[i]) || (isinf(candidate[i]) && candidate[i] != reference[i])) ++r.nan_count;
    double e = difference(reference[i], candidate[i]);
    if (e > r.max_error || r.worst_index < 0) {
      r.max_error = e;
      r.worst_index = i;
    }
  }
  r.bound = same ? 2 * r.same_error + floor * magnitude : tolerance;
  r.ok = r.nan_count == 0 && r.max_error <= r.bound;
  if (same)
    printf("  %s: max err %.3g (same-precision %.3g, bound %.3g)%s %s\n", label, r.max_error,
           r.same_error, r.bound, r.nan_count ? " NaN!" : "", r.ok ? "ok" : "FAIL");
  else
    printf("  %s: max err %.3g (tolerance %.3g)%s %s\n", label, r.max_error, r.bound,
           r.nan_count ? " NaN!" : "", r.ok ? "ok" : "FAIL");
  if (!r.ok && r.worst_index >= 0)
    printf("    worst at %lld: reference %.17g, candidate %.17g\n", (long long)r.worst_index,
           reference[r.worst_index], candidate[r.worst_index]);
  CHECK(r.ok, "%s: error %.3g exceeds %.3g (%lld non-finite)", label, r.max_error, r.bound,
        (long long)r.nan_count);
  return r;
}

testutil_compare_t testutil_compare(const char* label, const double* reference, const double* same,
                                    const double* candidate, int64_t count, double floor) {
  return compare(label, reference, same, candidate, count, floor, 0);
}

testutil_compare_t testutil_compare_tol(const char* label, const double* reference,
                                        const double* candidate, int64_t count, double tolerance) {
  return compare(label, reference, NULL, candidate, count, 0, tolerance);
}

bool testutil_case_check(const char* label, const testutil_case_t* c,
                         const jsdpa_forward_options_t* options, double floor) {
  const jsdpa_dtype_t dt = c->config.dtype;
  if (floor == 0) floor = testutil_default_floor(dt);
  const int64_t rows = c->total_q * c->config.heads;
  const int64_t n = rows * c->config.head_dim_v;
  double* ref = xmalloc(sizeof(double) * (size_t)n);
  double* same = xmalloc(sizeof(double) * (size_t)n);
  double* ref_lse = xmalloc(sizeof(double) * (size_t)rows);
  double* same_lse = xmalloc(sizeof(double) * (size_t)rows);
  testutil_reference(&c->q, &c->k, &c->v, options, ref, ref_lse);
  testutil_reference_same_precision(&c->q, &c->k, &c->v, options, same, same_lse);
  double* got = testutil_read_tensor(&c->out);
  char name[512];
  snprintf(name, sizeof(name), "%s out", label);
  bool ok = compare(name, ref, same, got, n, floor, 0).ok;
  if (c->lse) {
    double* got_lse = xmalloc(sizeof(double) * (size_t)rows);
    for (int64_t i = 0; i < rows; ++i) {
      got_lse[i] = c->lse[i];
      same_lse[i] = (float)same_lse[i]; /* the API's LSE is fp32 whatever the dtype */
    }
    snprintf(name, sizeof(name), "%s lse", label);
    ok = compare(name, ref_lse, same_lse, got_lse, rows, floor, 0).ok && ok;
    free(got_lse);
  }
  ok = CHECK(testutil_case_out_gaps_intact(c), "%s: out's padding was written", label) && ok;
  free(got);
  free(ref);
  free(same);
  free(ref_lse);
  free(same_lse);
  return ok;
}

/* ------------------------------------------------------------ gpu */

static const jsdpa_cuda_driver_t* gpu_driver;

#define TU_CU(call)                                                                \
  do {                                                                             \
    CUresult r_ = gpu_driver->call;                                                \
    if (r_ != CUDA_SUCCESS) {                                                      \
      const char* name_ = "?";                                                     \
      gpu_driver->cuGetErrorName(r_, &name_);                                      \
      fprintf(stdout, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, name_); \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

const jsdpa_cuda_driver_t* testutil_require_gpu(void) {
  const char* reason = NULL;
  const jsdpa_cuda_driver_t* cu = jsdpa_cuda_driver(&reason);
  if (!cu) {
    printf("%s: SKIP: no CUDA driver: %s\n", test_name, reason);
    exit(77);
  }
  int count = 0;
  if (cu->cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    printf("%s: SKIP: no CUDA device\n", test_name);
    exit(77);
  }
  gpu_driver = cu;
  CUdevice device;
  CUcontext context;
  TU_CU(cuDeviceGet(&device, 0));
  TU_CU(cuDevicePrimaryCtxRetain(&context, device));
  TU_CU(cuCtxSetCurrent(context));
  char name[256] = "";
  int major = 0, minor = 0;
  TU_CU(cuDeviceGetName(name, (int)sizeof(name), device));
  TU_CU(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
  TU_CU(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
  printf("%s: GPU 0: %s (sm_%d%d), driver %d\n", test_name, name, major, minor, cu->version);
  fflush(stdout);
  return cu;
}

void* testutil_device_alloc(size_t bytes) {
  CUdeviceptr p = 0;
  TU_CU(cuMemAlloc(&p, bytes ? bytes : 1));
  return (void*)(uintptr_t)p;
}

void testutil_device_free(void* device) {
  if (device) TU_CU(cuMemFree((CUdeviceptr)(uintptr_t)device));
}

void* testutil_to_device(const void* host, size_t bytes) {
  if (bytes == 0) return NULL;
  void* p = testutil_device_alloc(bytes);
  TU_CU(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)p, host, bytes));
  return p;
}

void testutil_from_device(void* host, const void* device, size_t bytes) {
  if (bytes == 0) return;
  TU_CU(cuMemcpyDtoH(host, (CUdeviceptr)(uintptr_t)device, bytes));
}

/* The device address of a host address inside one of the case's buffers. */
static void* rebase(const void* host_ptr, const void* host_base, void* device_base) {
  return (char*)device_base + ((const char*)host_ptr - (const char*)host_base);
}

void testutil_device_case_upload(const testutil_case_t* c, bool offsets_on_device,
                                 testutil_device_case_t* d) {
  memset(d, 0, sizeof(*d));
  d->q = c->q;
  d->k = c->k;
  d->v = c->v;
  d->out = c->out;
  void* q_buf = testutil_to_device(c->q_buffer, c->q_bytes);
  void* kv_buf = c->kv_buffer ? testutil_to_device(c->kv_buffer, c->kv_bytes) : NULL;
  void* v_buf = c->v_buffer ? testutil_to_device(c->v_buffer, c->v_bytes) : NULL;
  d->buffers[0] = q_buf;
  d->buffers[1] = kv_buf;
  d->buffers[2] = v_buf;
  d->q.data = q_buf;
  d->k.data = kv_buf ? kv_buf : rebase(c->k.data, c->q_buffer, q_buf);
  d->v.data = v_buf ? v_buf : rebase(c->v.data, c->q_buffer, q_buf);
  d->buffers[3] = testutil_device_alloc(c->out_bytes);
  d->out.data = d->buffers[3];
  if (c->lse) {
    d->buffers[4] = testutil_device_alloc(sizeof(float) * (size_t)(c->total_q * c->config.heads));
    d->lse = d->buffers[4];
  }
  d->q_offsets = c->q_offsets;
  d->kv_offsets = c->kv_offsets;
  if (offsets_on_device) {
    const size_t each =
        (size_t)(c->config.batch + 1) * (c->config.offsets_type == JSDPA_INDEX_INT64 ? 8 : 4);
    d->buffers[5] = testutil_device_alloc(2 * each);
    TU_CU(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d->buffers[5], c->q_offsets, each));
    TU_CU(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d->buffers[5] + each, c->kv_offsets, each));
    d->q_offsets = d->buffers[5];
    d->kv_offsets = (char*)d->buffers[5] + each;
  }
  d->q.offsets = d->out.offsets = d->q_offsets;
  d->k.offsets = d->v.offsets = d->kv_offsets;
  testutil_device_case_poison(c, d);
}

void testutil_device_case_poison(const testutil_case_t* c, testutil_device_case_t* d) {
  TU_CU(cuMemsetD8((CUdeviceptr)(uintptr_t)d->out.data, 0xff, c->out_bytes ? c->out_bytes : 1));
  if (d->lse)
    TU_CU(cuMemsetD8((CUdeviceptr)(uintptr_t)d->lse, 0xff,
                     sizeof(float) * (size_t)(c->total_q * c->config.heads)));
}

void testutil_device_case_download(testutil_case_t* c, const testutil_device_case_t* d) {
  TU_CU(cuCtxSynchronize());
  testutil_from_device(c->out_buffer, d->out.data, c->out_bytes);
  if (c->lse)
    testutil_from_device(c->lse, d->lse, sizeof(float) * (size_t)(c->total_q * c->config.heads));
}

void testutil_device_case_free(testutil_device_case_t* d) {
  for (int i = 0; i < 6; ++i) testutil_device_free(d->buffers[i]);
  memset(d, 0, sizeof(*d));
}
