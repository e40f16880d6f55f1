/*
 * mma.cuh — the sm80 tensor-core and copy primitives the tiled families share
 * (flash.cu, efficient.cu): inline PTX for cp.async, ldmatrix, mma.sync and
 * the fast exponentials, so NVRTC needs no CUDA header.
 *
 * The generator pastes this file after common.cuh for the families that run
 * on sm_80 and newer only; the math family (sm_70+) never sees it.
 */
#ifndef JSDPA_MMA_CUH_
#define JSDPA_MMA_CUH_

namespace jsdpa_tc {

typedef unsigned int u32;

__device__ __forceinline__ u32 smem_u32(const void* ptr) {
  u32 addr;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(ptr));
  return addr;
}

/* 16 bytes global -> shared; bytes < 16 zero-fills the rest (0: all zeros, nothing read). */
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Four 8x8 matrices of 16-bit values (or 8x4 of 32-bit ones: lane l then gets
 * word l % 4 of row l / 4, which is exactly a tf32 fragment's element). */
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

#if !defined(JSDPA_DTYPE_FP32)
/* c += a * b for one m16n8k16 tile (fp32 accumulate). */
__device__ __forceinline__ void mma16816(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
#if defined(JSDPA_DTYPE_BF16)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* Two floats -> one register of two 16-bit values, lo in the low half (round to nearest). */
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  u32 r;
#if defined(JSDPA_DTYPE_BF16)
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}
#endif

/* c += a * b for one m16n8k8 tile of tf32 values (fp32 registers whose low 13
 * mantissa bits the tensor core ignores). */
__device__ __forceinline__ void mma1688_tf32(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* fp32 -> tf32, round to nearest (ties away), as a 32-bit pattern. */
__device__ __forceinline__ u32 to_tf32(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float log2_approx(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp_approx(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
/* tanh from ex2: 1 - 2 / (1 + 2^(2x log2 e)); exact limits +-1 for large |x|. */
__device__ __forceinline__ float tanh_ex2(float x) {
  return 1.0f - 2.0f * rcp_approx(1.0f + exp2_approx(2.0f * JSDPA_LOG2E * x));
}

__device__ __forceinline__ void st_shared_u32(u32 addr, u32 v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v));
}
__device__ __forceinline__ void st_shared_v2(u32 addr, u32 a, u32 b) {
  asm volatile("st.shared.v2.b32 [%0], {%1, %2};\n" ::"r"(addr), "r"(a), "r"(b));
}
__device__ __forceinline__ u32 ld_shared_u32(u32 addr) {
  u32 v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ void ld_shared_v4(u32 addr, u32 (&v)[4]) {
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
               : "r"(addr));
}
__device__ __forceinline__ void st_global_v4(void* ptr, const u32 (&v)[4]) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(ptr), "r"(v[0]), "r"(v[1]),
               "r"(v[2]), "r"(v[3])
               : "memory");
}

/* ------------------------------------------------------------ softmax pieces */

/* Bottom-right masking of a warp's score fragments (m16n8 accumulators:
 * element 2h + e of tile n is row row0 + 8h (+16 mt), column col0 + 8n + e,
 * where row0 / col0 already hold the lane's g / 2t). Row i sees key j iff
 * j <= i + diag (causal), i + diag - wl <= j <= i + diag + wr (windows, when
 * >= 0) and j < lk; the rest become -inf. */
template <int MT, int NT>
__device__ __forceinline__ void mask_scores(float (&s)[MT][NT][4], int row0, int col0, int lk,
                                            int diag, bool causal, int wl, int wr) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + mt * 16 + 8 * h;
      int hi = lk - 1;
      if (causal) hi = min(hi, row + diag);
      if (wr >= 0) hi = min(hi, row + diag + wr);
      const int lo = wl >= 0 ? row + diag - wl : 0;
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = col0 + n * 8 + e;
          if (col > hi || col < lo) s[mt][n][2 * h + e] = JSDPA_NEG_INFINITY;
        }
    }
}

/* The maximum of row half h of m16 block mt over a warp's scores (the quad
 * of lanes holding the row reduces it). */
template <int MT, int NT>
__device__ __forceinline__ float quad_row_max(const float (&s)[MT][NT][4], int mt, int h,
                                              float mx) {
#pragma unroll
  for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  return fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
}

/* One online-softmax step for row half h of m16 block mt, in the exp2
 * domain (the scale folded into the FFMA as mult): the row's new maximum mx
 * turns its scores into probabilities, and the running sum and the output
 * accumulators are rescaled by 2^((old max - new max) * mult). */
template <int MT, int NT, int DT>
__device__ __forceinline__ void softmax_rows(float (&s)[MT][NT][4], float (&row_max)[MT][2],
                                             float (&row_sum)[MT][2], float (&o)[MT][DT][4], int mt,
                                             int h, float mx, float mult) {
  /* A row that has seen only masked keys keeps max -inf: subtract 0
   * instead, so exp2 gives 0 rather than NaN. */
  const float shift = mx == JSDPA_NEG_INFINITY ? 0.f : mx * mult;
  const float corr = exp2_approx(row_max[mt][h] * mult - shift);
  row_max[mt][h] = mx;
  float sum = 0.f;
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    s[mt][n][2 * h] = exp2_approx(fmaf(s[mt][n][2 * h], mult, -shift));
    s[mt][n][2 * h + 1] = exp2_approx(fmaf(s[mt][n][2 * h + 1], mult, -shift));
    sum += s[mt][n][2 * h] + s[mt][n][2 * h + 1];
  }
  row_sum[mt][h] = row_sum[mt][h] * corr + sum;
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    o[mt][dt][2 * h] *= corr;
    o[mt][dt][2 * h + 1] *= corr;
  }
}

}  // namespace jsdpa_tc

#endif /* JSDPA_MMA_CUH_ */
