/* Reading and writing one element of any API dtype: fp16/bf16 widen exactly,
 * narrowing rounds to nearest even straight from double (element.h). Shared
 * by the cpu backend and the tools; the tests keep their own independent
 * conversions, so an oracle never shares code with what it checks. */
#include "element.h"

#include <math.h>
#include <string.h>

size_t jsdpa_dtype_size(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16:
    case JSDPA_DTYPE_BF16: return 2;
    case JSDPA_DTYPE_FP32: return 4;
    case JSDPA_DTYPE_FP64: return 8;
  }
  return 0;
}

static float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    float magnitude = ldexpf((float)mantissa, -24); /* subnormal (or zero): exact */
    return sign ? -magnitude : magnitude;
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

static float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

/*
 * Rounds a double to a small binary float (fp16: 5 exponent / 10 mantissa
 * bits; bf16: 8 / 7) with round-to-nearest-even, directly from the double so
 * that fp64 results are rounded once, not twice through float. Overflow goes
 * to infinity, underflow through the subnormals to zero.
 */
static uint16_t round_to_small_float(double x, int exponent_bits, int mantissa_bits) {
  const uint16_t sign = signbit(x) ? (uint16_t)(1u << (exponent_bits + mantissa_bits)) : 0;
  const int max_field = (1 << exponent_bits) - 1;
  const uint16_t inf = (uint16_t)(max_field << mantissa_bits);
  if (isnan(x)) return (uint16_t)(sign | inf | (1u << (mantissa_bits - 1)));
  const double a = fabs(x);
  if (isinf(a)) return sign | inf;
  if (a == 0) return sign;
  const int bias = (1 << (exponent_bits - 1)) - 1;
  int e;
  const double f = frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
  e -= 1;                        /* a = (2f) * 2^e */
  if (e < 1 - bias) {
    /* Subnormal: an integer count of the smallest step. A count of
     * 2^mantissa_bits is the smallest normal, whose encoding is that count. */
    return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, bias - 1 + mantissa_bits)));
  }
  double m = nearbyint(ldexp(2 * f - 1, mantissa_bits)); /* ties to even: the encoding's last bit */
  if (m == ldexp(1, mantissa_bits)) {
    m = 0;
    e += 1;
  }
  if (e + bias >= max_field) return sign | inf;
  return (uint16_t)(sign | (uint16_t)((e + bias) << mantissa_bits) | (uint16_t)m);
}

double jsdpa_element_load(const void* base, jsdpa_dtype_t dtype, int64_t i) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: return half_to_float(((const uint16_t*)base)[i]);
    case JSDPA_DTYPE_BF16: return bf16_to_float(((const uint16_t*)base)[i]);
    case JSDPA_DTYPE_FP32: return ((const float*)base)[i];
    case JSDPA_DTYPE_FP64: return ((const double*)base)[i];
  }
  return NAN;
}

void jsdpa_element_store(void* base, jsdpa_dtype_t dtype, int64_t i, double x) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: ((uint16_t*)base)[i] = round_to_small_float(x, 5, 10); break;
    case JSDPA_DTYPE_BF16: ((uint16_t*)base)[i] = round_to_small_float(x, 8, 7); break;
    case JSDPA_DTYPE_FP32: ((float*)base)[i] = (float)x; break;
    case JSDPA_DTYPE_FP64: ((double*)base)[i] = x; break;
  }
}
