/*
 * common.cuh — device helpers every kernel family may use.
 *
 * The generator pastes this file after the config prelude and jsdpa_abi.h, and
 * NVRTC compiles the result with no headers at all: there is no cuda_fp16.h or
 * cuda_bf16.h here. So 16-bit values travel as their bit patterns (unsigned
 * short) and are converted with PTX cvt instructions, which is also exactly
 * what those headers do underneath.
 *
 * Reads the prelude's JSDPA_DTYPE_* and JSDPA_ARCH.
 */
#ifndef JSDPA_COMMON_CUH_
#define JSDPA_COMMON_CUH_

/* ------------------------------------------------------------ constants */

/* Built from bit patterns: INFINITY comes from <math.h>, which NVRTC lacks. */
#define JSDPA_INFINITY (__int_as_float(0x7f800000))
#define JSDPA_NEG_INFINITY (__int_as_float((int)0xff800000u))
#define JSDPA_LOG2E 1.4426950408889634f /* log2(e): exp(x) == exp2(x * log2(e)) */
#define JSDPA_LN2 0.6931471805599453f   /* ln(2): ln(x) == log2(x) * ln(2) */

#define JSDPA_DIV_UP(a, b) (((a) + (b)-1) / (b))
#define JSDPA_FULL_MASK 0xffffffffu

/* ------------------------------------------------------------ element types */

/* The storage type of q, k, v and o for this kernel's dtype, and whether it
 * is fp32 (for the templates' constant expressions). */
#if defined(JSDPA_DTYPE_FP32)
typedef float jsdpa_elem_t;
#define JSDPA_ELEM_IS_F32 true
#else
typedef unsigned short jsdpa_elem_t; /* fp16 or bf16 bits */
#define JSDPA_ELEM_IS_F32 false
#endif

__device__ __forceinline__ float jsdpa_fp16_to_float(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

__device__ __forceinline__ unsigned short jsdpa_float_to_fp16(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); /* round to nearest even */
  return h;
}

/* bf16 is the top half of an fp32: widening is a shift, exact. */
__device__ __forceinline__ float jsdpa_bf16_to_float(unsigned short b) {
  return __uint_as_float((unsigned int)b << 16);
}

__device__ __forceinline__ unsigned short jsdpa_float_to_bf16(float f) {
#if JSDPA_ARCH >= 80
  unsigned short b;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(f)); /* round to nearest even */
  return b;
#else
  /* No bf16 cvt before sm_80: round to nearest even on the bits. Adding
   * 0x7fff plus the lowest kept bit carries into the kept half exactly when
   * the dropped half is above one half, or equal to it with an odd kept half.
   * NaN must not carry into infinity: keep it a quiet NaN instead. */
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
#endif
}

__device__ __forceinline__ float jsdpa_elem_to_float(jsdpa_elem_t x) {
#if defined(JSDPA_DTYPE_FP32)
  return x;
#elif defined(JSDPA_DTYPE_BF16)
  return jsdpa_bf16_to_float(x);
#else
  return jsdpa_fp16_to_float(x);
#endif
}

__device__ __forceinline__ jsdpa_elem_t jsdpa_float_to_elem(float x) {
#if defined(JSDPA_DTYPE_FP32)
  return x;
#elif defined(JSDPA_DTYPE_BF16)
  return jsdpa_float_to_bf16(x);
#else
  return jsdpa_float_to_fp16(x);
#endif
}

/* Element `idx` (in elements, not bytes) of a q/k/v/o tensor, as float. */
__device__ __forceinline__ float jsdpa_load(const void* base, long long idx) {
  return jsdpa_elem_to_float(static_cast<const jsdpa_elem_t*>(base)[idx]);
}

/* Stores x, rounded to nearest even, into element `idx`. */
__device__ __forceinline__ void jsdpa_store(void* base, long long idx, float x) {
  static_cast<jsdpa_elem_t*>(base)[idx] = jsdpa_float_to_elem(x);
}

/* ------------------------------------------------------------ small math */

__device__ __forceinline__ long long jsdpa_min_ll(long long a, long long b) {
  return a < b ? a : b;
}
__device__ __forceinline__ long long jsdpa_max_ll(long long a, long long b) {
  return a > b ? a : b;
}

/* ------------------------------------------------------------ warp reductions */

/* Butterfly (xor) reductions: every lane ends with the result. Float addition
 * is commutative, so at each step a lane and its partner add the same two
 * values and all 32 lanes hold bit-identical results; code that branches on
 * a reduced value therefore never diverges across the warp. */
__device__ __forceinline__ float jsdpa_warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(JSDPA_FULL_MASK, x, offset);
  return x;
}

__device__ __forceinline__ float jsdpa_warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    x = fmaxf(x, __shfl_xor_sync(JSDPA_FULL_MASK, x, offset));
  return x;
}

/* ------------------------------------------------------------ jagged batches */

/* The sequence that holds row `token` of a packed batch: the last b with
 * offsets[b] <= token. Taking the last one skips empty sequences, whose equal
 * offsets would otherwise claim the token. Needs offsets validated by the prep
 * kernel (non-decreasing, offsets[batch] > token). */
__device__ __forceinline__ int jsdpa_find_sequence(const int* offsets, int batch, int token) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= token)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

#endif /* JSDPA_COMMON_CUH_ */
