/*
 * efficient.cu — the tiled jagged forward for what flash.cu does not take:
 * fp32 inputs, head dims past 256 (to 1024: 512, MLA's 576/512), and value
 * head dims that differ from the query/key one.
 *
 * Same skeleton as flash.cu (read its header first: persistent grid over the
 * prep kernel's longest-first (query tile, head) units, K/V cp.async ring,
 * key tiles visited from the last one, exp2-domain online softmax, bottom-
 * right masking, padded shared-memory rows), with three generalizations:
 *
 *  1. Element width. One mma k step always covers 32 bytes of a row: k16 of
 *     fp16/bf16 (m16n8k16) or k8 of fp32 (m16n8k8 tf32). With byte offsets,
 *     the ldmatrix addressing of Q (A) and K (B) is the same code for both:
 *     ldmatrix on 32-bit data hands lane l word l % 4 of row l / 4, which is
 *     the tf32 fragment layout.
 *
 *  2. fp32 accuracy. TF32 keeps 10 mantissa bits; fp32 inputs are instead
 *     split x = big + small with big = tf32(x), small = tf32(x - big), and a
 *     product is a_big b_big + a_big b_small + a_small b_big (the small x
 *     small term is below fp32's rounding): three tensor-core passes give
 *     products at fp32 precision (the 3xTF32 idea of NVIDIA's CUTLASS, which
 *     PyTorch's efficient kernel also uses for fp32); the sums are kept
 *     short (mma_split below), and the result measures within 2-5x of a
 *     plain fp32 dot product's error on an H100. A caller who opts into TF32
 *     (JSDPA_PRECISION_TF32 -> the variant's tf32 flag) gets one pass.
 *     P V in fp32 cannot use ldmatrix.trans (it moves 16-bit values), so V is
 *     read with 32-bit loads, and the key order inside each k8 step is
 *     permuted instead of P: the S accumulator holds keys 2t and 2t+1 where
 *     the tf32 A fragment wants keys t and t+4, so fragment slot t is fed key
 *     2t and slot t+4 key 2t+1 — from V's rows 2t and 2t+1 — and P never
 *     moves between lanes. (A sum over keys does not care about their order.)
 *
 *  3. Output slices. The output accumulators of a 16-row block take DVS / 2
 *     registers per thread; past 256 columns they would not fit. The value
 *     head dim is cut into SLICES column slices of at most 256, and a slice
 *     is part of the work unit: each unit recomputes S = Q K^T for its query
 *     tile (the price: one extra Q K^T per extra slice) and accumulates P V
 *     for its columns only. Slices of one (tile, head) are adjacent units, so
 *     they run at the same time and read K through the L2 once. For 16-bit
 *     inputs whose key tile splits evenly the slices are instead warp groups
 *     of one block that compute Q K^T once ("wide", see WIDE below).
 *
 * Q K^T with a long head dim re-reads Q from shared memory per k step when
 * its fragments would not fit the register budget (as flash.cu does).
 */

#if !defined(JSDPA_FAMILY_EFFICIENT)
#error "efficient.cu is instantiated by the generator (JSDPA_FAMILY_EFFICIENT missing)"
#endif

namespace jsdpa_eff {

using namespace jsdpa_tc; /* mma.cuh */
typedef jsdpa_elem_t elem_t;

constexpr bool F32 = JSDPA_ELEM_IS_F32;
#if defined(JSDPA_TF32)
constexpr int PASSES = 1; /* the caller opted into TF32 */
#else
constexpr int PASSES = F32 ? 3 : 1;
#endif

constexpr int ES = sizeof(elem_t);
constexpr int KE = 32 / ES; /* elements per mma k step: 16 halves or 8 floats */
constexpr int D = JSDPA_HEAD_DIM;
constexpr int DV = JSDPA_HEAD_DIM_V;
constexpr int DP = (D + KE - 1) / KE * KE; /* padded q/k head dim */
constexpr int VQ = F32 ? 8 : 16;           /* column quantum of P V (one ldmatrix.trans x4: 16) */
constexpr int DVQ = (DV + VQ - 1) / VQ * VQ;
constexpr int SLICES = (DVQ + 255) / 256;
constexpr int DVS = ((DVQ + SLICES - 1) / SLICES + VQ - 1) / VQ * VQ; /* columns per slice */
constexpr int BM = JSDPA_BLOCK_M;
constexpr int BN = JSDPA_BLOCK_N;
constexpr int WARPS = JSDPA_WARPS;
constexpr int STAGES = JSDPA_STAGES;
/* Wide mode (16-bit, more than one slice, and key tiles that split evenly):
 * the slices become warp groups of one block instead of separate units. Each
 * group of WARPS warps computes S for all BM rows but only its BN / GROUPS
 * keys, the groups agree on each row's maximum through shared memory, write
 * their part of P there, and every group then multiplies all of P by its own
 * slice of V. Q K^T is computed once instead of once per slice, for a P round
 * trip through shared memory (BM x BN 16-bit values per key tile). */
constexpr bool WIDE = !F32 && SLICES > 1 && BN % (16 * SLICES) == 0;
constexpr int GROUPS = WIDE ? SLICES : 1;
constexpr int UNIT_SLICES = WIDE ? 1 : SLICES; /* slices that are separate work units */
constexpr int KN = BN / GROUPS;                /* keys of one group's scores */
constexpr int THREADS = 32 * WARPS * GROUPS;
constexpr int WM = BM / WARPS;
constexpr int MT = WM / 16;
constexpr int NT = KN / 8;              /* n8 tiles of one warp's scores */
constexpr int KS = DP / KE;             /* k steps of Q K^T */
constexpr int DT = DVS / 8;             /* n8 tiles of the output slice */
constexpr int KV = BN / (F32 ? 8 : 16); /* k steps of P V */
/* Row pitches in bytes: 16 bytes of padding make every pitch an odd multiple
 * of 16, so the 8 rows of an ldmatrix phase hit 8 distinct bank groups; for
 * fp32 V the 32-bit reads of rows 2t, 2t + 1 and columns g are then also
 * conflict-free (bank 8t + g, or 24t + g, mod 32). */
constexpr int QROW = DP * ES + 16;
constexpr int VROW = GROUPS * DVS * ES + 16; /* wide: every group's slice in one row */
constexpr int QCH = DP * ES / 16;            /* 16-byte chunks per padded row */
constexpr int VCH = GROUPS * DVS * ES / 16;  /* chunks of one V row load */
constexpr int OCH = DVS * ES / 16;           /* chunks of one warp's output row */
constexpr int PROW = BN * 2 + 16;            /* wide: P rows, 16-bit */
/* The Q tile's buffer also stages the output slice (rows at pitch VROW). */
constexpr int SMEM_Q = BM * (QROW > VROW ? QROW : VROW);
constexpr int SMEM_K = BN * QROW;
constexpr int SMEM_V = BN * VROW;
/* Wide: P, and per (group, row) the partial maxima and sums. */
constexpr int SMEM_P = WIDE ? BM * PROW + 2 * GROUPS * BM * 4 : 0;
/* fp32-accurate: K and V are split into big + small once per block, in
 * shared memory, instead of by every warp from its ldmatrix / ld.shared
 * registers (each warp reads the whole tile, so WARPS warps repeated the same
 * split; at d 128 that was ~1000 of the key-tile loop's ~2500 instructions).
 * big replaces the copied value in place; small goes to one extra plane per
 * operand. One plane suffices at any stage count: K(j)'s small is written
 * before the barrier that opens Q K(j), after every warp passed the barrier
 * that closed Q K(j - 1); V(j)'s likewise around P V(j). The price: K and V
 * are read twice from shared memory, and the planes need shared memory that
 * sm_80/86/89 (164/100 KiB per SM) would pay for with half the resident
 * warps: sm_90 only, and head dims up to 256 (past that even a 32x32 tile
 * with the planes exceeds a block's 227 KiB: fp32 d512 fell to the math
 * backend on an H100). gen/variant.c's jsdpa_gen_smem_bytes mirrors this. */
constexpr bool KV_SPLIT = F32 && PASSES == 3 && JSDPA_ARCH >= 90 && D <= 256 && DV <= 256;
constexpr int SMEM_KS = KV_SPLIT ? SMEM_K : 0;
constexpr int SMEM_VS = KV_SPLIT ? SMEM_V : 0;
constexpr int SMEM_BYTES = SMEM_Q + STAGES * (SMEM_K + SMEM_V) + SMEM_P + SMEM_KS + SMEM_VS;
constexpr int QF = PASSES == 3 ? 2 : 1; /* registers per Q fragment word: big (+ small) */
constexpr bool Q_IN_REGS = MT * (NT + DT + KS * QF) * 4 <= 160;

static_assert(D >= 1 && D <= 1024 && DV >= 1 && DV <= 1024, "efficient: head dims are 1..1024");
static_assert(WM * WARPS == BM && MT * 16 == WM && (MT == 1 || MT == 2),
              "efficient: block_m must be 16 or 32 rows per warp");
static_assert(BN % 16 == 0 && BN >= 16 && BN <= 256, "efficient: block_n must be a multiple of 16");
static_assert(STAGES >= 1 && STAGES <= 4, "efficient: stages must be 1..4");
static_assert(!F32 || PASSES == 3 || PASSES == 1, "efficient: 1 or 3 tf32 passes");

/* ------------------------------------------------------------ tf32 products */

/* x -> big + small, each a tf32 value: together ~22 of x's 24 mantissa bits.
 * Rounding to nearest (ties away) is integer arithmetic on the bit pattern:
 * add half a tf32 ulp (bit 12) and drop the 13 low bits, which for finite x
 * gives exactly cvt.rna.tf32.f32 (the carry ripples into the exponent as the
 * rounding should; Inf stays Inf). The tensor core ignores an operand's 13
 * low bits (ptxas itself leaves cvt.rna's mask out for values that only feed
 * an mma), so only `big`, which the subtraction needs exact, is masked: 2
 * integer ops instead of cvt.rna's 4 (its sm_90 SASS adds an isfinite test
 * and a select), 4 SASS instructions per split instead of 7. A NaN whose payload lies in
 * the low bits becomes Inf in `big`, and its `small` (NaN - Inf) is NaN, so
 * the product is NaN as with cvt.rna. */
__device__ __forceinline__ void split_tf32(float x, u32& big, u32& small) {
  constexpr u32 HALF = 0x1000u, MASK = 0xffffe000u;
  if (PASSES == 3) {
    big = (__float_as_uint(x) + HALF) & MASK;
    small = __float_as_uint(x - __uint_as_float(big)) + HALF;
  } else {
    big = to_tf32(x); /* the opt-in pass keeps cvt.rna's NaN handling */
    small = 0u;
  }
}

/* c += a * b over one k step, for this element type and precision. The small
 * terms go first: they are tiny, and adding them before the big product keeps
 * their bits in the accumulator. */
__device__ __forceinline__ void mma_step(float (&c)[4], const u32 (&a)[4], const u32 (&as)[4],
                                         u32 b0, u32 b1, u32 bs0, u32 bs1) {
#if defined(JSDPA_DTYPE_FP32)
  if (PASSES == 3) {
    mma1688_tf32(c, as, b0, b1);
    mma1688_tf32(c, a, bs0, bs1);
  }
  mma1688_tf32(c, a, b0, b1);
#else
  (void)as, (void)bs0, (void)bs1;
  mma16816(c, a, b0, b1);
#endif
}

/* fp32 accumulation. The tensor core's fp32 accumulation truncates
 * (it does not round to nearest), so a long sum accumulated on it drifts: on
 * an H100, a P V over 2048 keys accumulated in place (768 tf32 products per
 * output) came out at 7x the error of a plain fp32 dot product (jsdpa-run,
 * fp32 d128, 2026-11-25). So the three-pass path keeps the truncated sums
 * short and adds them up with ordinary round-to-nearest FADDs:
 *  - Q K^T: the small cross terms go to their own accumulator (their
 *    truncation is relative to their own tiny size), added to S at the end;
 *  - P V: one output column tile at a time, every key of the tile into a
 *    fresh partial (3 * BN / 8 products), added to O once per key tile.
 * (CUTLASS's multistage mainloop does the same for its fast-fp32 operator: a
 * temporary accumulator added to the real one once per main-loop iteration.) */
__device__ __forceinline__ void mma_split(float (&c)[4], float (&cs)[4], const u32 (&a)[4],
                                          const u32 (&as)[4], u32 b0, u32 b1, u32 bs0, u32 bs1) {
#if defined(JSDPA_DTYPE_FP32)
  mma1688_tf32(cs, as, b0, b1);
  mma1688_tf32(cs, a, bs0, bs1);
  mma1688_tf32(c, a, b0, b1);
#else
  (void)cs, (void)as, (void)bs0, (void)bs1;
  mma16816(c, a, b0, b1);
#endif
}

/* ------------------------------------------------------------ tile loads */

/*
 * ROWS rows of CH 16-byte chunks from global rows (pitch `stride` elements)
 * into shared memory at `dst` (pitch PITCH bytes). Rows >= `valid` and bytes
 * >= `real` of a row are zero-filled (cp.async src-size): padding must be
 * exact zeros, or 0 * NaN would leak into the scores and the output. As in
 * flash.cu, thread i copies chunk i % CH of rows i / CH + k * (THREADS / CH)
 * with one pointer step per row group; rows wider than the block (CH >
 * THREADS, fp32 past d 512) take a plain loop.
 */
template <int ROWS, int CH, int PITCH>
__device__ __forceinline__ void load_rows(u32 dst, const elem_t* src, long long stride, int valid,
                                          int real, const void* fallback) {
  if (CH <= THREADS) {
    constexpr int RSTEP = CH <= THREADS ? THREADS / CH : 1;
    const int r0 = threadIdx.x / CH, c = threadIdx.x % CH;
    if (RSTEP * CH != THREADS && r0 >= RSTEP) return;
    const int left = real - c * 16;
    const int bytes_col = left <= 0 ? 0 : (left < 16 ? left : 16);
    const char* from = (const char*)(src + r0 * stride) + c * 16;
    const long long step = RSTEP * stride * ES;
    const int rows_left = valid - r0;
    dst += r0 * PITCH + c * 16;
#pragma unroll
    for (int it = 0; it < (ROWS + RSTEP - 1) / RSTEP; ++it) {
      if (ROWS % RSTEP != 0 && r0 + it * RSTEP >= ROWS) break;
      const int bytes = it * RSTEP < rows_left ? bytes_col : 0;
      cp_async16(dst + it * RSTEP * PITCH, bytes ? (const void*)from : fallback, bytes);
      from += step;
    }
  } else {
#pragma unroll 1
    for (int r = 0; r < ROWS; ++r)
      for (int c = threadIdx.x; c < CH; c += THREADS) {
        const int left = r < valid ? real - c * 16 : 0;
        const int bytes = left <= 0 ? 0 : (left < 16 ? left : 16);
        const char* from = (const char*)(src + r * stride) + c * 16;
        cp_async16(dst + r * PITCH + c * 16, bytes ? (const void*)from : fallback, bytes);
      }
  }
}

__device__ __forceinline__ void st_shared_v4(u32 addr, const u32 (&v)[4]) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v[0]), "r"(v[1]),
               "r"(v[2]), "r"(v[3]));
}

/*
 * KV_SPLIT: the chunks this thread copied with load_rows<ROWS, CH, PITCH>
 * (same thread -> chunk map, zero-filled ones included) become big in place
 * and small at the same offset from `small`. The thread's cp.async wait makes
 * its own chunks visible to it, so no barrier is needed before; the caller's
 * next barrier publishes the split.
 */
template <int ROWS, int CH, int PITCH>
__device__ __forceinline__ void split_rows(u32 big, u32 small) {
  auto split16 = [&](u32 off) {
    u32 x[4], b[4], sm[4];
    ld_shared_v4(big + off, x);
#pragma unroll
    for (int e = 0; e < 4; ++e) split_tf32(__uint_as_float(x[e]), b[e], sm[e]);
    st_shared_v4(big + off, b);
    st_shared_v4(small + off, sm);
  };
  if (CH <= THREADS) {
    constexpr int RSTEP = CH <= THREADS ? THREADS / CH : 1;
    const int r0 = threadIdx.x / CH, c = threadIdx.x % CH;
    if (RSTEP * CH != THREADS && r0 >= RSTEP) return;
#pragma unroll
    for (int it = 0; it < (ROWS + RSTEP - 1) / RSTEP; ++it) {
      if (ROWS % RSTEP != 0 && r0 + it * RSTEP >= ROWS) break;
      split16((r0 + it * RSTEP) * PITCH + c * 16);
    }
  } else {
#pragma unroll 1
    for (int r = 0; r < ROWS; ++r)
      for (int c = threadIdx.x; c < CH; c += THREADS) split16(r * PITCH + c * 16);
  }
}

/* ------------------------------------------------------------ one unit */

__device__ __forceinline__ void attend(const jsdpa_params_t& p, int batch, int m_block, int head,
                                       int slice, unsigned char* smem) {
  const int lane = threadIdx.x & 31;
  /* Wide: this warp's group (slice), else 0; and its 16 * MT rows in the tile. */
  const int grp = WIDE ? (threadIdx.x >> 5) / WARPS : 0;
  const int warp = WIDE ? (threadIdx.x >> 5) % WARPS : threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3; /* mma fragment row group / column pair */

  const int q_begin = p.q_offsets[batch], lq = p.q_offsets[batch + 1] - q_begin;
  const int kv_begin = p.kv_offsets[batch], lk = p.kv_offsets[batch + 1] - kv_begin;
  const int m0 = m_block * BM;
  const int rows = min(BM, lq - m0);
  const int diag = lk - lq; /* row i's causal limit is key i + diag */
  const int kv_head = head / (p.heads / p.kv_heads);
  const int wl = p.window_left, wr = p.window_right;
  const int c0 = (WIDE ? grp : slice) * DVS;              /* this warp's output columns */
  const int o_real = max(0, min(DV, c0 + DVS) - c0) * ES; /* bytes of them that exist */
  const int v_real = WIDE ? DV * ES : o_real;             /* bytes of a V row to load */

  /* Keys visible to some row of this tile: [n_begin, n_end). */
  const int last_row = m0 + rows - 1;
  int n_begin = 0, n_end = lk;
  if (JSDPA_CAUSAL) n_end = min(n_end, last_row + diag + 1);
  if (wr >= 0) n_end = min(n_end, last_row + diag + wr + 1);
  if (wl >= 0) n_begin = max(0, m0 + diag - wl);
  const int t_begin = n_begin / BN;
  const int n_tiles = n_end > n_begin ? (n_end + BN - 1) / BN - t_begin : 0;
  const int t_last = t_begin + n_tiles - 1;

  const elem_t* qg = (const elem_t*)p.q + (long long)(q_begin + m0) * p.q_token_stride +
                     (long long)head * p.q_head_stride;
  const elem_t* kg = (const elem_t*)p.k + (long long)kv_begin * p.k_token_stride +
                     (long long)kv_head * p.k_head_stride;
  const elem_t* vg = (const elem_t*)p.v + (long long)kv_begin * p.v_token_stride +
                     (long long)kv_head * p.v_head_stride + (WIDE ? 0 : c0);

  const u32 s_q = smem_u32(smem);
  const u32 s_k = s_q + SMEM_Q;
  const u32 s_v = s_k + STAGES * SMEM_K;
#if !defined(JSDPA_DTYPE_FP32)
  const u32 s_p = s_v + STAGES * SMEM_V; /* wide: P */
#endif
  const u32 s_ks = s_v + STAGES * SMEM_V + SMEM_P; /* KV_SPLIT: small planes */
  const u32 s_vs = s_ks + SMEM_KS;
  float* red_max = (float*)(smem + SMEM_Q + STAGES * (SMEM_K + SMEM_V) + BM * PROW);
  float* red_sum = red_max + GROUPS * BM;

  /* The j-th tile visited (from the last): key tile t_last - j. */
  auto load_k = [&](int j) {
    if (j < n_tiles) {
      const int n0 = (t_last - j) * BN;
      load_rows<BN, QCH, QROW>(s_k + (j % STAGES) * SMEM_K, kg + (long long)n0 * p.k_token_stride,
                               p.k_token_stride, lk - n0, D * ES, p.k);
    }
    cp_async_commit();
  };
  auto load_v = [&](int j) {
    if (j < n_tiles) {
      const int n0 = (t_last - j) * BN;
      load_rows<BN, VCH, VROW>(s_v + (j % STAGES) * SMEM_V, vg + (long long)n0 * p.v_token_stride,
                               p.v_token_stride, lk - n0, v_real, p.v);
    }
    cp_async_commit();
  };

  float o[MT][DT][4];
  float row_max[MT][2], row_sum[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
    row_max[mt][0] = row_max[mt][1] = JSDPA_NEG_INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  /* Softcap folds the scale into the tanh; the exponent multiplier is then 1. */
  const bool softcap = p.softcap > 0.f;
  const float mult = softcap ? 1.0f : p.scale_log2;
  const float cap_in = softcap ? p.scale / p.softcap : 0.f;
  const float cap_out = p.softcap * JSDPA_LOG2E;

  /* Per-lane byte offsets. A (Q) and B (K) fragments: see flash.cu, in bytes
   * so that one k step is 32 bytes for either width. V: 16-bit as flash.cu
   * (ldmatrix.trans); fp32 rows 2t and 2t + 1, column g (the permuted keys). */
  const u32 q_off = (warp * WM + (lane & 15)) * QROW + (lane >> 4) * 16;
  /* Wide: a group's keys start KN rows into the K tile, its V columns c0
   * into the V rows; P's A fragments are addressed like Q's. */
  const u32 k_off = (grp * KN + (lane & 7) + ((lane >> 4) << 3)) * QROW + ((lane >> 3) & 1) * 16;
  const u32 v_off = F32 ? 2 * t * VROW + g * 4
                        : ((lane & 7) + (((lane >> 3) & 1) << 3)) * VROW + (lane >> 4) * 16 +
                              (WIDE ? c0 * ES : 0);
#if !defined(JSDPA_DTYPE_FP32)
  const u32 p_off = (warp * WM + (lane & 15)) * PROW + (lane >> 4) * 16;
#endif

  if (n_tiles > 0) {
    load_rows<BM, QCH, QROW>(s_q, qg, p.q_token_stride, rows, D * ES, p.q);
    load_k(0); /* group 0: Q and K(0) */
#pragma unroll
    for (int s = 0; s + 1 < STAGES; ++s) {
      load_v(s);
      load_k(s + 1);
    }
  }

  /* Q fragments (split for fp32), loaded once per unit when they fit. */
  constexpr int QM = Q_IN_REGS ? MT : 1, QK = Q_IN_REGS ? KS : 1;
  u32 qf[QM][QK][4], qs[QM][QK][4];
  auto q_fragment = [&](int mt, int ks, u32(&a)[4], u32(&as)[4]) {
    ldmatrix_x4(a, s_q + q_off + mt * 16 * QROW + ks * 32);
    if (F32) {
#pragma unroll
      for (int e = 0; e < 4; ++e) split_tf32(__uint_as_float(a[e]), a[e], as[e]);
    }
  };

  for (int j = 0; j < n_tiles; ++j) {
    const int slot = j % STAGES;
    const int n0 = (t_last - j) * BN;

    /* K(j) (and Q) landed; every warp is done with P V(j - 1). */
    cp_async_wait<2 * STAGES - 2>();
    if (KV_SPLIT) split_rows<BN, QCH, QROW>(s_k + slot * SMEM_K, s_ks);
    __syncthreads();
    if (Q_IN_REGS && j == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
          q_fragment(mt, ks, qf[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0],
                     qs[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0]);
    }
    load_v(j + STAGES - 1);

    /* S = Q K^T for this warp's rows. */
    constexpr bool SPLIT_ACC = F32 && PASSES == 3; /* see mma_split */
    constexpr int SLM = SPLIT_ACC ? MT : 1, SLN = SPLIT_ACC ? NT : 1;
    float s[MT][NT][4], sl[SLM][SLN][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < NT; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
    for (int mt = 0; mt < SLM; ++mt)
#pragma unroll
      for (int n = 0; n < SLN; ++n) sl[mt][n][0] = sl[mt][n][1] = sl[mt][n][2] = sl[mt][n][3] = 0.f;
    const u32 kbase = s_k + slot * SMEM_K + k_off, ksbase = s_ks + k_off;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      u32 a[MT][4], as[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if (Q_IN_REGS) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            a[mt][e] = qf[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0][e];
            as[mt][e] = qs[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0][e];
          }
        } else {
          q_fragment(mt, ks, a[mt], as[mt]);
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        u32 b[4], bs[4] = {0u, 0u, 0u, 0u};
        ldmatrix_x4(b, kbase + np * 16 * QROW + ks * 32);
        if (KV_SPLIT) {
          ldmatrix_x4(bs, ksbase + np * 16 * QROW + ks * 32);
        } else if (F32) {
#pragma unroll
          for (int e = 0; e < 4; ++e) split_tf32(__uint_as_float(b[e]), b[e], bs[e]);
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if (SPLIT_ACC) {
            mma_split(s[mt][2 * np], sl[SPLIT_ACC ? mt : 0][SPLIT_ACC ? 2 * np : 0], a[mt], as[mt],
                      b[0], b[1], bs[0], bs[1]);
            mma_split(s[mt][2 * np + 1], sl[SPLIT_ACC ? mt : 0][SPLIT_ACC ? 2 * np + 1 : 0], a[mt],
                      as[mt], b[2], b[3], bs[2], bs[3]);
          } else {
            mma_step(s[mt][2 * np], a[mt], as[mt], b[0], b[1], bs[0], bs[1]);
            mma_step(s[mt][2 * np + 1], a[mt], as[mt], b[2], b[3], bs[2], bs[3]);
          }
        }
      }
    }
    if (SPLIT_ACC) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][n][e] += sl[SPLIT_ACC ? mt : 0][SPLIT_ACC ? n : 0][e];
    }

    if (softcap) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][n][e] = cap_out * tanh_ex2(s[mt][n][e] * cap_in);
    }

    /* Only tiles crossing the sequence end, the causal diagonal or a window
     * edge pay for masking. */
    const bool full = n0 + BN <= lk && (!JSDPA_CAUSAL || n0 + BN - 1 <= m0 + diag) &&
                      (wr < 0 || n0 + BN - 1 <= m0 + diag + wr) &&
                      (wl < 0 || n0 >= last_row + diag - wl);
    if (!full)
      mask_scores(s, m0 + warp * WM + g, n0 + grp * KN + 2 * t, lk, diag, JSDPA_CAUSAL, wl, wr);

    /* Wide: each group has the maximum over its keys only; they meet in
     * shared memory (written by lane t == 0 of each row's quad). */
    if (WIDE) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float mx = quad_row_max(s, mt, h, JSDPA_NEG_INFINITY);
          if (t == 0) red_max[grp * BM + warp * WM + mt * 16 + g + 8 * h] = mx;
        }
      /* Every group's partial maxima are written (and every warp is past
       * reading the last tile's, which happened before the previous barrier). */
      __syncthreads();
    }

    /* Online softmax in the exp2 domain; the scale is folded into the FFMA. */
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = row_max[mt][h];
        if (WIDE) {
#pragma unroll
          for (int gi = 0; gi < GROUPS; ++gi)
            mx = fmaxf(mx, red_max[gi * BM + warp * WM + mt * 16 + g + 8 * h]);
        } else {
          mx = quad_row_max(s, mt, h, mx);
        }
        /* wide: row_sum covers this group's keys only */
        softmax_rows(s, row_max, row_sum, o, mt, h, mx, mult);
      }
#if !defined(JSDPA_DTYPE_FP32)
      /* Wide: this warp's 16 rows x KN keys of P into the block's P tile. */
      if (WIDE) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int n = 0; n < NT; ++n)
            st_shared_u32(
                s_p + (warp * WM + mt * 16 + g + 8 * h) * PROW + (grp * KN + n * 8 + 2 * t) * 2,
                pack2(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
      }
#endif
    }

    /* V(j) landed; every warp is done with Q K(j), so its buffer takes
     * K(j + STAGES); wide: every group's part of P is written. */
    cp_async_wait<2 * STAGES - 2>();
    if (KV_SPLIT) split_rows<BN, VCH, VROW>(s_v + slot * SMEM_V, s_vs);
    __syncthreads();
    load_k(j + STAGES);

    const u32 vbase = s_v + slot * SMEM_V + v_off, vsbase = s_vs + v_off;
#if defined(JSDPA_DTYPE_FP32)
    if (SPLIT_ACC) {
      /* P for every k step of the tile, split once; keys permuted as below. */
      u32 pb[MT][KV][4], pl[MT][KV][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int k = 0; k < KV; ++k) {
          split_tf32(s[mt][k][0], pb[mt][k][0], pl[mt][k][0]);
          split_tf32(s[mt][k][2], pb[mt][k][1], pl[mt][k][1]);
          split_tf32(s[mt][k][1], pb[mt][k][2], pl[mt][k][2]);
          split_tf32(s[mt][k][3], pb[mt][k][3], pl[mt][k][3]);
        }
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        float part[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) part[mt][0] = part[mt][1] = part[mt][2] = part[mt][3] = 0.f;
#pragma unroll
        for (int k = 0; k < KV; ++k) {
          const u32 off = k * 8 * VROW + dt * 32;
          u32 b0, b1, bs0, bs1;
          if (KV_SPLIT) {
            b0 = ld_shared_u32(vbase + off), b1 = ld_shared_u32(vbase + off + VROW);
            bs0 = ld_shared_u32(vsbase + off), bs1 = ld_shared_u32(vsbase + off + VROW);
          } else {
            split_tf32(__uint_as_float(ld_shared_u32(vbase + off)), b0, bs0);
            split_tf32(__uint_as_float(ld_shared_u32(vbase + off + VROW)), b1, bs1);
          }
#pragma unroll
          for (int mt = 0; mt < MT; ++mt)
            mma_step(part[mt], pb[mt][k], pl[mt][k], b0, b1, bs0, bs1);
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) o[mt][dt][e] += part[mt][e];
      }
    } else
#endif
#pragma unroll
      for (int k = 0; k < KV; ++k) {
        /* P's A fragment for k step k, straight from the S accumulators:
         * 16-bit: n8 tiles 2k and 2k + 1 packed (see flash.cu); fp32: n8 tile
         * k, its keys 2t / 2t + 1 in fragment slots t / t + 4 (header, 2.). */
        u32 pa[MT][4], ps[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#if defined(JSDPA_DTYPE_FP32)
          split_tf32(s[mt][k][0], pa[mt][0], ps[mt][0]);
          split_tf32(s[mt][k][2], pa[mt][1], ps[mt][1]);
          split_tf32(s[mt][k][1], pa[mt][2], ps[mt][2]);
          split_tf32(s[mt][k][3], pa[mt][3], ps[mt][3]);
#else
        if (WIDE) {
          ldmatrix_x4(pa[mt], s_p + p_off + mt * 16 * PROW + k * 32);
        } else {
          /* (NT - 1 bounds the index for wide tiles, where this is not run.) */
          const int na = 2 * k < NT ? 2 * k : NT - 1, nb = 2 * k + 1 < NT ? 2 * k + 1 : NT - 1;
          pa[mt][0] = pack2(s[mt][na][0], s[mt][na][1]);
          pa[mt][1] = pack2(s[mt][na][2], s[mt][na][3]);
          pa[mt][2] = pack2(s[mt][nb][0], s[mt][nb][1]);
          pa[mt][3] = pack2(s[mt][nb][2], s[mt][nb][3]);
        }
        ps[mt][0] = ps[mt][1] = ps[mt][2] = ps[mt][3] = 0u;
#endif
        }
        if (F32) {
#pragma unroll
          for (int dt = 0; dt < DT; ++dt) {
            const u32 addr = vbase + k * 8 * VROW + dt * 32;
            u32 b0, b1, bs0, bs1;
            split_tf32(__uint_as_float(ld_shared_u32(addr)), b0, bs0);
            split_tf32(__uint_as_float(ld_shared_u32(addr + VROW)), b1, bs1);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) mma_step(o[mt][dt], pa[mt], ps[mt], b0, b1, bs0, bs1);
          }
        } else {
#pragma unroll
          for (int dp = 0; dp < DT / 2; ++dp) {
            u32 b[4];
            ldmatrix_x4_trans(b, vbase + k * 16 * VROW + dp * 32);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              mma_step(o[mt][2 * dp], pa[mt], ps[mt], b[0], b[1], 0u, 0u);
              mma_step(o[mt][2 * dp + 1], pa[mt], ps[mt], b[2], b[3], 0u, 0u);
            }
          }
        }
      }
  }

  /* Epilogue: normalize, LSE (slice 0 writes it), and the output slice
   * through this warp's own rows of the Q buffer, staged at pitch VROW (wide:
   * each group at its columns). Every warp finished reading Q before the last
   * barrier above, so the other pitch cannot collide with a Q row in use. */
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_sum[mt][h] += __shfl_xor_sync(0xffffffffu, row_sum[mt][h], 1);
      row_sum[mt][h] += __shfl_xor_sync(0xffffffffu, row_sum[mt][h], 2);
      if (WIDE && t == 0) red_sum[grp * BM + warp * WM + mt * 16 + g + 8 * h] = row_sum[mt][h];
    }
  if (WIDE) {
    /* Each group summed P over its keys only: the row's sum is theirs together. */
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = 0.f;
#pragma unroll
        for (int gi = 0; gi < GROUPS; ++gi)
          sum += red_sum[gi * BM + warp * WM + mt * 16 + g + 8 * h];
        row_sum[mt][h] = sum;
      }
  }
  const int stage0 = (WIDE ? c0 : 0) * ES; /* this warp's columns in a staged row */
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float sum = row_sum[mt][h];
      const float inv = sum > 0.f ? 1.0f / sum : 0.f;
      const int r = warp * WM + mt * 16 + g + 8 * h;
      if (p.lse != 0 && (WIDE ? grp : slice) == 0 && t == 0 && r < rows) {
        const float lse =
            sum > 0.f ? (row_max[mt][h] * mult + log2_approx(sum)) * JSDPA_LN2 : JSDPA_NEG_INFINITY;
        p.lse[(long long)(q_begin + m0 + r) * p.heads + head] = lse;
      }
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        const float x0 = o[mt][dt][2 * h] * inv, x1 = o[mt][dt][2 * h + 1] * inv;
#if defined(JSDPA_DTYPE_FP32)
        st_shared_v2(s_q + r * VROW + stage0 + (dt * 8 + 2 * t) * 4, __float_as_uint(x0),
                     __float_as_uint(x1));
#else
        st_shared_u32(s_q + r * VROW + stage0 + (dt * 8 + 2 * t) * 2, pack2(x0, x1));
#endif
      }
    }
  }
  __syncwarp();
  elem_t* og = (elem_t*)p.o + (long long)(q_begin + m0) * p.o_token_stride +
               (long long)head * p.o_head_stride + c0;
#pragma unroll
  for (int it = 0; it < (WM * OCH + 31) / 32; ++it) {
    const int i = lane + it * 32;
    if ((WM * OCH) % 32 != 0 && i >= WM * OCH) break;
    const int r = warp * WM + i / OCH, c = i % OCH;
    if (r >= rows || c * 16 >= o_real) continue;
    u32 v[4];
    ld_shared_v4(s_q + r * VROW + stage0 + c * 16, v);
    char* dst = (char*)(og + (long long)r * p.o_token_stride) + c * 16;
    if (c * 16 + 16 <= o_real) {
      st_global_v4(dst, v);
    } else {
      /* The row's last, partial chunk: whole elements only (unrolled, so v
       * stays in registers). */
#pragma unroll
      for (int e = 0; e < 16 / ES; ++e) {
        if (c * 16 + (e + 1) * ES > o_real) break;
        const u32 word = v[e * ES / 4];
        if (ES == 4)
          ((u32*)dst)[e] = word;
        else
          ((unsigned short*)dst)[e] = (unsigned short)(word >> ((e & 1) * 16));
      }
    }
  }
}

}  // namespace jsdpa_eff

extern "C" __device__ const int jsdpa_launch[4] = {jsdpa_eff::THREADS, jsdpa_eff::SMEM_BYTES,
                                                   JSDPA_BLOCK_M, JSDPA_BLOCK_N};

/* The persistent loop of flash.cu; a unit is (slice, work item, head), slices
 * fastest, then work items longest first, then heads (wide: no slice index,
 * the block's warp groups cover them). */
extern "C" __global__ void __launch_bounds__(jsdpa_eff::THREADS, 1)
    JSDPA_KERNEL_NAME(const jsdpa_params_t p) {
  extern __shared__ __align__(128) unsigned char jsdpa_eff_smem[];
  __shared__ int next_unit[2];
  if (p.schedule->error) return;
  const int num_work = p.schedule->num_work;
  const int units = num_work * p.heads * jsdpa_eff::UNIT_SLICES;
  if (threadIdx.x == 0) next_unit[0] = atomicAdd(&p.schedule->tile_counter, 1);
  __syncthreads();
  int u = next_unit[0];
  for (int parity = 1; u < units; parity ^= 1) {
    int next = 0;
    if (threadIdx.x == 0) next = atomicAdd(&p.schedule->tile_counter, 1);
    const int rest = u / jsdpa_eff::UNIT_SLICES;
    const jsdpa_work_t w = p.work[rest % num_work];
    jsdpa_eff::attend(p, w.batch, w.m_block, rest / num_work, u % jsdpa_eff::UNIT_SLICES,
                      jsdpa_eff_smem);
    if (threadIdx.x == 0) next_unit[parity] = next;
    /* Publishes the next unit; the next unit's loads overwrite shared memory
     * this one may still read. */
    __syncthreads();
    u = next_unit[parity];
  }
}
