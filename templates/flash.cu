/*
 * flash.cu — the tensor-core jagged attention forward (sm80 and newer).
 *
 * The FlashAttention-2 algorithm (Dao, 2023) written from the paper's ideas:
 * every warp owns 16 * MT query rows of a BLOCK_M x HEAD_DIM query tile and
 * walks the key/value tiles of its sequence with an online softmax, so the
 * score matrix never leaves registers and the output is written once.
 *
 * Instantiated by the generator with the config prelude (JSDPA_HEAD_DIM,
 * JSDPA_BLOCK_M/N, JSDPA_WARPS, JSDPA_STAGES, JSDPA_CAUSAL, the dtype) after
 * jsdpa_abi.h, common.cuh (element type, constants) and mma.cuh. NVRTC
 * compiles it without any header: fp16/bf16 are raw 16-bit words and every
 * tensor-core, shared-memory and conversion step is inline PTX from mma.cuh
 * (mma.sync m16n8k16 with fp32 accumulation, ldmatrix, cp.async, ex2.approx).
 *
 * Grid convention (backend_flash.c launches it so): a persistent grid of at
 * most (SMs x resident blocks) blocks. Each block takes the next unit from
 * schedule->tile_counter (atomicAdd; the prep kernel zeroed it). Unit u is
 * work[u % num_work] for query head u / num_work: head-major, so the blocks
 * running at one time are query tiles of few (sequence, head) pairs and share
 * their K/V through the L2 (heads-minor ordering spreads them over every head;
 * bench/NOTES.md has the measurements). The
 * prep orders work[] longest sequence first, each sequence's tiles together
 * (its most expensive first), so within each head the expensive work starts
 * first, the tiles that share K/V run together, and the last head's short
 * tiles fill the tail. A block asks for
 * its next unit when it starts the current one, so the atomic's round trip
 * overlaps the work instead of preceding it.
 *
 * Shapes inside one unit:
 *  - head dims are padded to DP = a multiple of 16; cp.async's src-size
 *    zero-fills the pad columns and the rows past a sequence's end, so any
 *    head dim 1..256 works (the runtime passes rows whose start and stride
 *    are 16-byte aligned; backend_flash.c rejects the others);
 *  - shared-memory rows are padded by 16 bytes (pitch DP + 8 elements): the 8
 *    row addresses of every ldmatrix phase then fall into 8 distinct 16-byte
 *    bank groups, because DP / 8 + 1 is odd. Padding instead of an XOR swizzle
 *    keeps every DP (48, 80, 112, ...) conflict-free with one formula;
 *  - key tiles run from the last visible one down to the first, so the tiles
 *    that need masking (the sequence's end, the causal diagonal, a window
 *    edge) come first and the rest run without mask arithmetic;
 *  - K/V pipeline: STAGES buffers each for K and V. K tile j and V tile j are
 *    separate cp.async groups; V(j + STAGES - 1) is issued once every warp has
 *    finished P V(j - 1), K(j + STAGES) once every warp has finished Q K(j).
 *    With STAGES == 1 this is FlashAttention-2's interleaving (the V load
 *    overlaps Q K^T and the softmax, the next K load overlaps P V).
 *
 * Masking is bottom-right aligned: row i of a sequence with Lq queries and Lk
 * keys sees key j iff j <= i + Lk - Lq (causal), j <= i + Lk - Lq + window_right
 * and j >= i + Lk - Lq - window_left (when those are >= 0). A row that sees no
 * key gets zeros and LSE -inf.
 */

#if !defined(JSDPA_FAMILY_FLASH)
#error "flash.cu is instantiated by the generator (JSDPA_FAMILY_FLASH missing)"
#endif
#if !defined(JSDPA_DTYPE_BF16) && !defined(JSDPA_DTYPE_FP16)
#error "flash.cu supports fp16 and bf16 only"
#endif

namespace jsdpa_flash {

using namespace jsdpa_tc;    /* mma.cuh: cp.async, ldmatrix, mma.sync, ex2 */
typedef jsdpa_elem_t elem_t; /* common.cuh: fp16 / bf16 bits */

constexpr int D = JSDPA_HEAD_DIM;
constexpr int DP = (D + 15) / 16 * 16; /* padded head dim */
constexpr int BM = JSDPA_BLOCK_M;
constexpr int BN = JSDPA_BLOCK_N;
constexpr int WARPS = JSDPA_WARPS;
constexpr int STAGES = JSDPA_STAGES;
constexpr int THREADS = 32 * WARPS;
constexpr int WM = BM / WARPS; /* query rows per warp */
constexpr int MT = WM / 16;    /* m16 tiles per warp */
constexpr int NT = BN / 8;     /* n8 tiles of a score row block */
constexpr int KS = DP / 16;    /* k16 steps of Q K^T */
constexpr int DT = DP / 8;     /* n8 tiles of the output */
constexpr int KV = BN / 16;    /* k16 steps of P V */
constexpr int CH = DP / 8;     /* 16-byte chunks per padded row */
constexpr int PITCH = DP + 8;  /* shared-memory row pitch in elements (see the padding note) */
constexpr int SMEM_Q = BM * PITCH * 2;
constexpr int SMEM_KV = BN * PITCH * 2; /* one K or one V buffer */
constexpr int SMEM_BYTES = SMEM_Q + 2 * STAGES * SMEM_KV;
/* Q fragments stay in registers when scores, output and Q fit a budget that
 * leaves room for addresses; otherwise they are re-read from shared memory. */
constexpr bool Q_IN_REGS = MT * (NT + DT + KS) * 4 <= 160;

/* Resident blocks per SM asked of the compiler (__launch_bounds__), for tiles
 * of one m16 row block per warp with Q in registers: as many as shared memory
 * allows (per SM: 228 KiB on sm_90, 164 on sm_80, 100 on sm_86/89; 1 KiB
 * reserved per block) and a register estimate (accumulators + Q fragments +
 * ~40 for addresses and softmax state) fits, so such tiles get 3-4 blocks
 * instead of the 2 that an unconstrained 255-register allocation leaves room
 * for. Larger tiles (two row blocks per warp, Q re-read from shared memory)
 * need more than the estimate and keep the compiler's choice (ptxas reports
 * spills under a tighter cap). */
constexpr int SM_SMEM_KB = JSDPA_ARCH >= 90 ? 228 : (JSDPA_ARCH == 80 ? 164 : 100);
constexpr int SMEM_BLOCKS = (SM_SMEM_KB * 1024) / (SMEM_BYTES + 1024);
constexpr int REG_ESTIMATE = MT * (NT + DT + (Q_IN_REGS ? KS : 0)) * 4 + 40;
constexpr int REG_BLOCKS = 65536 / (THREADS * ((REG_ESTIMATE + 7) / 8 * 8));
constexpr int MIN_BLOCKS_RAW = SMEM_BLOCKS < REG_BLOCKS ? SMEM_BLOCKS : REG_BLOCKS;
constexpr int MIN_BLOCKS =
    MT != 1 || !Q_IN_REGS || MIN_BLOCKS_RAW < 1 ? 1 : (MIN_BLOCKS_RAW > 4 ? 4 : MIN_BLOCKS_RAW);

static_assert(JSDPA_HEAD_DIM_V == JSDPA_HEAD_DIM, "flash: v head dim must equal the qk head dim");
static_assert(D >= 1 && D <= 256, "flash: head dim must be in 1..256");
static_assert(WM * WARPS == BM && MT * 16 == WM && (MT == 1 || MT == 2),
              "flash: block_m must be 16 or 32 rows per warp");
static_assert(BN % 16 == 0 && BN >= 16 && BN <= 256, "flash: block_n must be a multiple of 16");
static_assert(STAGES >= 1 && STAGES <= 4, "flash: stages must be 1..4");

/* ------------------------------------------------------------ tile loads */

/*
 * ROWS x DP elements from global rows (pitch `stride` elements) into shared
 * memory at `dst` (pitch PITCH). Rows >= `valid` and columns >= D are zero:
 * padding must be exact zeros, not stale data, or 0 * NaN would leak into the
 * scores and the output. Invalid chunks read nothing (src-size 0) from `fallback`.
 *
 * Thread i copies column chunk i % CH of rows i / CH, i / CH + RSTEP, ...: the
 * source pointer advances by one 64-bit step per row group instead of being
 * recomputed per chunk, which keeps the unrolled copy from holding a pointer
 * per chunk in registers across the main loop. Threads past RSTEP * CH idle
 * (at most CH - 1 of them, when CH does not divide the block).
 */
constexpr int RSTEP = THREADS / CH; /* rows per copy step */
static_assert(RSTEP >= 1, "flash: a block must cover one padded row with 16-byte chunks");

template <int ROWS>
__device__ __forceinline__ void load_rows(u32 dst, const elem_t* src, long long stride, int valid,
                                          const void* fallback) {
  const int r0 = threadIdx.x / CH, c = threadIdx.x % CH;
  if (RSTEP * CH != THREADS && r0 >= RSTEP) return;
  int bytes_col = 16; /* real bytes of this thread's column chunk */
  if (D != DP || D % 8 != 0) {
    const int left = (D - c * 8) * 2;
    bytes_col = left <= 0 ? 0 : (left < 16 ? left : 16);
  }
  const elem_t* from = src + r0 * stride + c * 8;
  const long long step = RSTEP * stride;
  const int rows_left = valid - r0;
  dst += (r0 * PITCH + c * 8) * 2;
#pragma unroll
  for (int it = 0; it < (ROWS + RSTEP - 1) / RSTEP; ++it) {
    if (ROWS % RSTEP != 0 && r0 + it * RSTEP >= ROWS) break;
    const int bytes = it * RSTEP < rows_left ? bytes_col : 0;
    cp_async16(dst + it * RSTEP * PITCH * 2, bytes ? (const void*)from : fallback, bytes);
    from += step;
  }
}

/* ------------------------------------------------------------ one unit */

__device__ __forceinline__ void attend(const jsdpa_params_t& p, int batch, int m_block, int head,
                                       unsigned char* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3; /* mma fragment row group / column pair */

  const int q_begin = p.q_offsets[batch], lq = p.q_offsets[batch + 1] - q_begin;
  const int kv_begin = p.kv_offsets[batch], lk = p.kv_offsets[batch + 1] - kv_begin;
  const int m0 = m_block * BM;
  const int rows = min(BM, lq - m0);
  const int diag = lk - lq; /* row i's causal limit is key i + diag */
  const int kv_head = head / (p.heads / p.kv_heads);
  const int wl = p.window_left, wr = p.window_right;

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
                     (long long)kv_head * p.v_head_stride;

  const u32 s_q = smem_u32(smem);
  const u32 s_k = s_q + SMEM_Q;
  const u32 s_v = s_k + STAGES * SMEM_KV;

  /* The j-th tile visited (from the last): key tile t_last - j. */
  auto load_k = [&](int j) {
    if (j < n_tiles) {
      const int n0 = (t_last - j) * BN;
      load_rows<BN>(s_k + (j % STAGES) * SMEM_KV, kg + (long long)n0 * p.k_token_stride,
                    p.k_token_stride, lk - n0, p.k);
    }
    cp_async_commit();
  };
  auto load_v = [&](int j) {
    if (j < n_tiles) {
      const int n0 = (t_last - j) * BN;
      load_rows<BN>(s_v + (j % STAGES) * SMEM_KV, vg + (long long)n0 * p.v_token_stride,
                    p.v_token_stride, lk - n0, p.v);
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

  /* Per-lane ldmatrix offsets (bytes). A fragments: rows lane & 15, column
   * half lane >> 4. B (K, non-transposed): keys (lane & 7) + 8 * (lane >> 4),
   * column half (lane >> 3) & 1. B (V, transposed): keys (lane & 7) + 8 *
   * ((lane >> 3) & 1), column half lane >> 4. */
  const u32 q_off = ((warp * WM + (lane & 15)) * PITCH + (lane >> 4) * 8) * 2;
  const u32 k_off = (((lane & 7) + ((lane >> 4) << 3)) * PITCH + ((lane >> 3) & 1) * 8) * 2;
  const u32 v_off = (((lane & 7) + (((lane >> 3) & 1) << 3)) * PITCH + (lane >> 4) * 8) * 2;

  if (n_tiles > 0) {
    load_rows<BM>(s_q, qg, p.q_token_stride, rows, p.q);
    load_k(0); /* group 0: Q and K(0) */
#pragma unroll
    for (int s = 0; s + 1 < STAGES; ++s) {
      load_v(s);
      load_k(s + 1);
    }
  }

  u32 qf[Q_IN_REGS ? MT : 1][Q_IN_REGS ? KS : 1][4];

  for (int j = 0; j < n_tiles; ++j) {
    const int slot = j % STAGES;
    const int n0 = (t_last - j) * BN;

    /* K(j) (and Q) landed; every warp is done with P V(j - 1). */
    cp_async_wait<2 * STAGES - 2>();
    __syncthreads();
    if (Q_IN_REGS && j == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
          ldmatrix_x4(qf[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0],
                      s_q + q_off + (mt * 16 * PITCH + ks * 16) * 2);
    }
    load_v(j + STAGES - 1);

    /* S = Q K^T for this warp's rows. */
    float s[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < NT; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
    const u32 kbase = s_k + slot * SMEM_KV + k_off;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      u32 a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if (Q_IN_REGS) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a[mt][e] = qf[Q_IN_REGS ? mt : 0][Q_IN_REGS ? ks : 0][e];
        } else {
          ldmatrix_x4(a[mt], s_q + q_off + (mt * 16 * PITCH + ks * 16) * 2);
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        u32 b[4];
        ldmatrix_x4(b, kbase + (np * 16 * PITCH + ks * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(s[mt][2 * np], a[mt], b[0], b[1]);
          mma16816(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
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
    if (!full) mask_scores(s, m0 + warp * WM + g, n0 + 2 * t, lk, diag, JSDPA_CAUSAL, wl, wr);

    /* Online softmax in the exp2 domain; the scale is folded into the FFMA. */
    u32 pf[MT][KV][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h)
        softmax_rows(s, row_max, row_sum, o, mt, h, quad_row_max(s, mt, h, row_max[mt][h]), mult);
        /* The accumulators of n8 tiles 2k and 2k+1 are, register for register,
         * the A fragment of k16 step k: P never goes through shared memory. */
#pragma unroll
      for (int k = 0; k < KV; ++k) {
        pf[mt][k][0] = pack2(s[mt][2 * k][0], s[mt][2 * k][1]);
        pf[mt][k][1] = pack2(s[mt][2 * k][2], s[mt][2 * k][3]);
        pf[mt][k][2] = pack2(s[mt][2 * k + 1][0], s[mt][2 * k + 1][1]);
        pf[mt][k][3] = pack2(s[mt][2 * k + 1][2], s[mt][2 * k + 1][3]);
      }
    }

    /* V(j) landed; every warp is done with Q K(j), so its buffer takes K(j + STAGES). */
    cp_async_wait<2 * STAGES - 2>();
    __syncthreads();
    load_k(j + STAGES);

    const u32 vbase = s_v + slot * SMEM_KV + v_off;
#pragma unroll
    for (int k = 0; k < KV; ++k) {
#pragma unroll
      for (int dp = 0; dp < DT / 2; ++dp) {
        u32 b[4];
        ldmatrix_x4_trans(b, vbase + (k * 16 * PITCH + dp * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(o[mt][2 * dp], pf[mt][k], b[0], b[1]);
          mma16816(o[mt][2 * dp + 1], pf[mt][k], b[2], b[3]);
        }
      }
    }
  }

  /* Epilogue: normalize, LSE, and the output through this warp's own rows of
   * the Q buffer (no other warp reads them), so global stores are 16 bytes. */
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[mt][h];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = sum > 0.f ? 1.0f / sum : 0.f;
      const int r = warp * WM + mt * 16 + g + 8 * h;
      if (p.lse != 0 && t == 0 && r < rows) {
        const float lse =
            sum > 0.f ? (row_max[mt][h] * mult + log2_approx(sum)) * JSDPA_LN2 : JSDPA_NEG_INFINITY;
        p.lse[(long long)(q_begin + m0 + r) * p.heads + head] = lse;
      }
#pragma unroll
      for (int dt = 0; dt < DT; ++dt)
        st_shared_u32(s_q + (r * PITCH + dt * 8 + 2 * t) * 2,
                      pack2(o[mt][dt][2 * h] * inv, o[mt][dt][2 * h + 1] * inv));
    }
  }
  __syncwarp();
  elem_t* og = (elem_t*)p.o + (long long)(q_begin + m0) * p.o_token_stride +
               (long long)head * p.o_head_stride;
#pragma unroll
  for (int it = 0; it < (WM * CH + 31) / 32; ++it) {
    const int i = lane + it * 32;
    if ((WM * CH) % 32 != 0 && i >= WM * CH) break;
    const int r = warp * WM + i / CH, c = i % CH;
    if (r >= rows || c * 8 >= D) continue;
    u32 v[4];
    ld_shared_v4(s_q + (r * PITCH + c * 8) * 2, v);
    elem_t* dst = og + (long long)r * p.o_token_stride + c * 8;
    if (D % 8 == 0 || c * 8 + 8 <= D) {
      st_global_v4(dst, v);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (c * 8 + e < D) dst[e] = (elem_t)(v[e >> 1] >> ((e & 1) * 16));
    }
  }
}

}  // namespace jsdpa_flash

extern "C" __device__ const int jsdpa_launch[4] = {jsdpa_flash::THREADS, jsdpa_flash::SMEM_BYTES,
                                                   JSDPA_BLOCK_M, JSDPA_BLOCK_N};

extern "C" __global__ void __launch_bounds__(jsdpa_flash::THREADS, jsdpa_flash::MIN_BLOCKS)
    JSDPA_KERNEL_NAME(const jsdpa_params_t p) {
  extern __shared__ __align__(128) unsigned char jsdpa_flash_smem[];
  /* Two slots: thread 0 writes one while the others may still read the last. */
  __shared__ int next_unit[2];
  if (p.schedule->error) return;
  const int num_work = p.schedule->num_work;
  const int units = num_work * p.heads;
  if (threadIdx.x == 0) next_unit[0] = atomicAdd(&p.schedule->tile_counter, 1);
  __syncthreads();
  int u = next_unit[0];
  for (int parity = 1; u < units; parity ^= 1) {
    int next = 0;
    if (threadIdx.x == 0) next = atomicAdd(&p.schedule->tile_counter, 1);
    const jsdpa_work_t w = p.work[u % num_work];
    jsdpa_flash::attend(p, w.batch, w.m_block, u / num_work, jsdpa_flash_smem);
    if (threadIdx.x == 0) next_unit[parity] = next;
    /* Publishes the next unit; the next unit's loads overwrite shared memory
     * this one may still read. */
    __syncthreads();
    u = next_unit[parity];
  }
}
