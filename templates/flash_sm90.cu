/*
 * flash_sm90.cu — the Hopper (sm_90a) jagged attention forward: wgmma tensor
 * cores, TMA bulk tensor copies on mbarriers, warp specialization.
 *
 * The ideas are FlashAttention-3's (Shah et al., 2024), written from the
 * paper and the PTX ISA:
 *  - a block is two, three or four warpgroups: warpgroup 0 is the producer
 *    (one thread issues every TMA copy and fetches work units), the others
 *    are consumers that own 64 query rows each of a BLOCK_M = 64 (8 warps,
 *    two or three blocks per SM), 128 (12 warps) or 192 (16 warps, head dims up to 64)
 *    query tile. setmaxnreg moves registers from the producer (56 / 40 / 32)
 *    to the consumers (200 / 232 / 160). The 8-warp tile is for short
 *    sequences: two independent blocks per SM overlap one's loads and
 *    epilogue with the other's math, and a 64-row unit wastes fewer rows;
 *  - S = Q K^T is wgmma with both operands in shared memory (K-major, 128-byte
 *    swizzle, exactly the layout TMA's 128B swizzle writes); O += P V is wgmma
 *    with P straight from the score accumulators in registers (the m64nNk16
 *    accumulator fragment is, register for register, the A fragment) and V
 *    from shared memory read N-major through the descriptor's transpose bit;
 *  - K/V tiles run through STAGES buffers, each with a full barrier (TMA
 *    completes its byte count) and an empty barrier (each consumer warp
 *    arrives once its wgmma has read the buffer). Q has one buffer with the
 *    same pair, so the next unit's Q loads while the last tiles finish.
 *
 * The efficient family instantiates the same template "wide" (WIDE below):
 * both consumer warpgroups share one 64-row tile and split the head dim
 * (fp16/bf16 head dims past 256), and fp32 runs as 3xTF32 on tf32 wgmma
 * (F32 below: V transposed into K-major planes, two K buffers and one V).
 *
 * Jagged batches need no padding copies: the tensor maps cover the whole
 * packed tensors [total tokens, heads, head dim] with the caller's strides
 * (backend_flash.c builds them), and a tile is addressed by its first token.
 * Rows past a sequence's end read the next sequence's tokens, or zeros past
 * the tensor's end (TMA's out-of-bounds fill): their keys are masked to -inf
 * and their query rows are never stored. Head dims are padded to DP, whole
 * 128-byte swizzle rows (64 16-bit or 32 fp32 columns; wide: an even number
 * of them), by the same zero fill.
 *
 * Work: the persistent grid and unit order of flash.cu (units over
 * schedule->tile_counter, head-major over the prep kernel's longest-first
 * list). The producer takes the next unit and hands it to the consumers
 * through a two-slot ring in shared memory guarded by mbarriers, so it can
 * start the next unit's loads while the consumers finish this one.
 *
 * Masking (bottom-right causal, windows, softcap, LSE, zero-length sequences)
 * is flash.cu's: key tiles run from the last visible one down, so the tiles
 * that need masking come first; a row that sees no key gets zeros and LSE -inf.
 */

#if !defined(JSDPA_FAMILY_FLASH) && !defined(JSDPA_FAMILY_EFFICIENT)
#error "flash_sm90.cu is instantiated by the generator (JSDPA_FAMILY_FLASH or _EFFICIENT missing)"
#endif
#if !defined(JSDPA_DTYPE_BF16) && !defined(JSDPA_DTYPE_FP16) && \
    !(defined(JSDPA_DTYPE_FP32) && defined(JSDPA_FAMILY_EFFICIENT))
#error "flash_sm90.cu supports fp16 and bf16 (and fp32 in the efficient family's wide mode)"
#endif
#if JSDPA_ARCH != 90 || !JSDPA_ARCH_SPECIFIC
#error "flash_sm90.cu needs sm_90a (wgmma, setmaxnreg)"
#endif

#if defined(JSDPA_DTYPE_BF16)
#define JSDPA_SM90_AB ".bf16.bf16"
#elif defined(JSDPA_DTYPE_FP16)
#define JSDPA_SM90_AB ".f16.f16"
#endif

/* The kernel's single parameter: the common parameters and the three tensor
 * maps (CUtensorMap: 128 opaque bytes, 128-byte aligned), passed by value as
 * a __grid_constant__ so TMA reads the maps from parameter space. The host's
 * mirror is in runtime/backend_flash.c. */
#if !defined(JSDPA_SM90_CHUNK)
#error "flash_sm90.cu: the generator defines JSDPA_SM90_CHUNK (the chunk maps' box rows)"
#endif
typedef struct alignas(128) jsdpa_tmap_s {
  unsigned long long opaque[16];
} jsdpa_tmap_t;

typedef struct jsdpa_flash_sm90_params_s {
  jsdpa_params_t p;
  jsdpa_tmap_t q, k, v;                /* boxes of a whole tile: BM (Q) or BN (K, V) rows */
  jsdpa_tmap_t q_rows, k_rows, v_rows; /* boxes of CHUNK rows, for tiles a sequence ends in */
} jsdpa_flash_sm90_params_t;

namespace jsdpa_sm90 {

using namespace jsdpa_tc; /* mma.cuh: smem_u32, pack2, exp2/log2/tanh */
typedef unsigned long long u64;

/* Wide mode (the efficient family's tiles: the runtime sends fp16/bf16 head
 * dims 257..512 and fp32 head dims 65..128 here): the output of one
 * 64-row tile no longer fits a warpgroup's registers (64 x 512 fp32 is 256
 * per thread), so the two consumer warpgroups share the same 64 query rows
 * and split the head dim instead. Each computes the partial S of its half of
 * the head dim, they add the halves through shared memory (both then hold
 * the whole S and run the same softmax), and each multiplies P by its half
 * of V's columns. The idea is the one of efficient.cu's wide mode (output
 * slices as warp groups of one block), here with wgmma operands. */
#if defined(JSDPA_FAMILY_EFFICIENT)
constexpr bool WIDE = true;
#else
constexpr bool WIDE = false;
#endif
/* fp32 (wide only, head dims up to 128): tf32 wgmma, three passes per
 * product (3xTF32, see KS_BYTES below). A caller's TF32 opt-in runs
 * efficient.cu: here one pass would read the operands truncated, not
 * rounded, and measured outside the TF32 bound (H100, gpu_test_efficient). */
constexpr bool F32 = JSDPA_ELEM_IS_F32;
#if defined(JSDPA_TF32)
#error "flash_sm90.cu runs fp32 as 3xTF32 only (the generator sends tf32 variants to efficient.cu)"
#endif
constexpr int ES = F32 ? 4 : 2;  /* element bytes */
constexpr int EPR = 128 / ES;    /* elements per 128-byte row (one TMA box column block) */
constexpr int KSTEP = 32 / ES;   /* elements per wgmma k step: k16 (16-bit) or k8 (tf32) */
constexpr int D = JSDPA_HEAD_DIM;
/* Padded head dim: whole 128-byte rows; wide: an even number of them. */
constexpr int DP = WIDE ? (D + 2 * EPR - 1) / (2 * EPR) * (2 * EPR) : (D + EPR - 1) / EPR * EPR;
constexpr int CB = DP / EPR;             /* 128-byte column blocks (one TMA box each) */
constexpr int NWG = JSDPA_WARPS / 4 - 1; /* consumer warpgroups, 64 query rows each (wide: shared) */
constexpr int DO = WIDE ? DP / 2 : DP;   /* output columns per consumer warpgroup */
constexpr int KS_WG = (WIDE ? DP / 2 : DP) / KSTEP; /* k steps of S per warpgroup */
constexpr int BM = JSDPA_BLOCK_M;
constexpr int BN = JSDPA_BLOCK_N;
constexpr int STAGES = JSDPA_STAGES;
/* K and V buffers. fp32 keeps one V buffer (its transpose copies V(j) out
 * of it early) and spends the shared memory on STAGES K buffers. */
constexpr int KST = STAGES;
constexpr int VST = F32 ? 1 : STAGES;
constexpr int THREADS = JSDPA_WARPS * 32;
constexpr int Q_BYTES = BM * DP * ES;
constexpr int KV_BYTES = BN * DP * ES; /* one K or one V buffer */
/* Swizzled operands must start on 1024-byte boundaries (the 8-row swizzle
 * atom); dynamic shared memory is aligned by hand, hence the slack. */
constexpr int KV_SMEM = (KST + VST) * KV_BYTES + 1024;
/* Wide: each warpgroup's partial S (64 x BN fp32) for the other to add
 * (fp32: in K's small plane, see exchange_s). */
constexpr int X_BYTES = WIDE && !F32 ? 2 * 64 * BN * 4 : 0;
/* fp32 (F32), 3xTF32. A tf32 operand is an fp32 value whose 13 low mantissa
 * bits the tensor core ignores (truncation), so x = big + small with big = x
 * as stored and small = x - trunc(x) (exact, then itself truncated: ~21 of 24
 * bits in all), and a product is a_big b_big + a_big b_small + a_small b_big
 * (the 3xTF32 idea of NVIDIA's CUTLASS; efficient.cu does the same with
 * mma.sync). Q, K and V arrive raw through TMA and are the big halves
 * themselves; Q's small half lives in registers (an A operand), K's in a
 * shared plane beside K. tf32 wgmma reads both shared operands K-major only,
 * so V (keys x columns) is transposed by the consumers into planes of V^T
 * (big, and small), its keys permuted inside every group of 8 so that P's
 * A fragment comes straight from the S accumulators (see transpose_v). */
constexpr int KS_BYTES = F32 ? KV_BYTES : 0;     /* K's small plane */
constexpr int VT_BYTES = F32 ? 2 * KV_BYTES : 0; /* V^T, big and small */
/* Two Q buffers where they fit (227 KiB per block), so the producer loads the
 * next unit's Q while the consumers still read this one's: short sequences
 * take one or two key tiles per unit, and the Q load would otherwise be
 * exposed once per unit. */
/* One consumer warpgroup (8 warps, 64 rows) runs two blocks per SM (three at
 * head dims up to 64 with 64-key tiles), so its budget is that share of an
 * SM's 228 KiB, less each block's 1 KiB reserve and the static barriers; the
 * generator decides both (jsdpa_gen_sm90_blocks_per_sm) and refuses tiles
 * that do not fit. */
#if !defined(JSDPA_SM90_BLOCKS) || !defined(JSDPA_SM90_SMEM_BUDGET)
#error "flash_sm90.cu: the generator defines JSDPA_SM90_BLOCKS and JSDPA_SM90_SMEM_BUDGET"
#endif
constexpr int BLOCKS_PER_SM = JSDPA_SM90_BLOCKS;
constexpr int SMEM_BUDGET = JSDPA_SM90_SMEM_BUDGET;
/* Row sums on the tensor core (head dims up to 64): P V runs with 8 more
 * output columns whose V is all ones, so those accumulators are each row's
 * sum of P, rescaled with O for free (a row sum as a product with a ones
 * vector, placed where the P V product already runs). That takes the
 * softmax's per-element FADD off the issue slots (at d64 about a sixth of a
 * consumer thread's instructions per tile; issue slots, not the exponentials,
 * were the tighter resource in the software-exp2 trial, bench/NOTES.md) for
 * 1/8 more P V work: +1-5.5% on long/mixed d64 (H100, sixth session). The
 * ones live in one BN x 128-byte block (any swizzle reads 1.0 everywhere in
 * it), reached from each V stage through the B descriptor's leading byte
 * offset (the stride to the next 64-column block). The sum then is of P as
 * the tensor core reads it (16-bit), the same P that O is made of. */
constexpr bool ROWSUM = !WIDE && !F32 && DO == 64;
constexpr int ON = DO + (ROWSUM ? 8 : 0); /* P V's N: output columns (+ the row sums) */
constexpr int ONES_BYTES = ROWSUM ? BN * 128 : 0;
constexpr int Q_STAGES =
    2 * Q_BYTES + KV_SMEM + X_BYTES + KS_BYTES + VT_BYTES + ONES_BYTES <= SMEM_BUDGET ? 2 : 1;
constexpr int SMEM_BYTES =
    Q_STAGES * Q_BYTES + KV_SMEM + X_BYTES + KS_BYTES + VT_BYTES + ONES_BYTES;
/* Registers per thread after setmaxnreg: two consumer warpgroups get 232, three
 * (FlashAttention-3's shape for head dim 64: more warps per scheduler to hide
 * the softmax's latency) 160, the producer what is left. One consumer
 * warpgroup (8 warps) with two blocks per SM (half the register file each)
 * gets 200 and the producer 56 (at 24 / 232 ptxas spilled the producer's
 * unit bookkeeping, 8-24 bytes: ptxas compiles each side of a setmaxnreg
 * with its count); with three blocks (80 registers a thread at entry) 128 and
 * 32. */
constexpr int PRODUCER_REGS = NWG == 1 ? (BLOCKS_PER_SM == 3 ? 32 : 56) : NWG == 2 ? 40 : 32;
constexpr int CONSUMER_REGS = NWG == 1 ? (BLOCKS_PER_SM == 3 ? 128 : 200) : NWG == 2 ? 232 : 160;
/* Overlapping S(j + 1) with P(j) V(j) keeps a score tile (BN / 2 registers),
 * the previous P (BN / 4) and O (DP / 2) live at once: ptxas fits that
 * without spills up to 160 of them in 232 registers (d128 x 128 keys; d256 x
 * 64 keys spilled 76 bytes) and up to 80 in 160 (d64 x 64 keys; x 128 keys
 * spilled 112 bytes); one consumer warpgroup (200) takes up to 128. */
constexpr bool OVERLAP =
    !WIDE && BN / 2 + BN / 4 + DP / 2 <=
                 (CONSUMER_REGS == 232 ? 160 : CONSUMER_REGS == 200 ? 128 : CONSUMER_REGS == 160 ? 80 : 0);
/* Conditional rescaling of O (softmax_tile): only where a warpgroup's output
 * has 256 columns (128 registers of O per thread to multiply). Same-machine
 * A/B on an H100 (bench/NOTES.md, fifth session, call 11): d256 +1-12% (mixed
 * +2.7% in both rounds), d128 within noise, d64 -1 to -8%. */
constexpr bool COND_RESCALE = DO >= 256;
/* A tile a sequence ends in is loaded in CHUNK-row boxes: the chunks that
 * hold its rows, and zeros (a box wholly out of the tensor's bounds, which
 * TMA fills without reading memory) for the rest. Whole-tile boxes read the
 * next sequence's rows instead, and on ~140-token sequences that was a third
 * more DRAM traffic than the data (ncu, H100). 16 rows: two 8-row swizzle
 * atoms, so chunks compose into the whole-tile layout. */
constexpr int CHUNK = JSDPA_SM90_CHUNK;
static_assert(CHUNK * 8 == 128, "flash_sm90: the V tail clear maps a warpgroup onto CHUNK rows");

static_assert(JSDPA_HEAD_DIM_V == JSDPA_HEAD_DIM,
              "flash_sm90: v head dim must equal the qk head dim");
static_assert(D >= 1 && D <= (WIDE ? 512 : 256),
              "flash_sm90: head dim must be in 1..256 (wide, the efficient family: 1..512)");
static_assert(!WIDE || (NWG == 2 && BM == 64 && BN == 64 && DO <= 256),
              "flash_sm90 wide: two consumer warpgroups on one 64 x 64 tile, <= 256 columns each");
static_assert(!F32 || (WIDE && D <= 128 && DP == 128),
              "flash_sm90 fp32: wide, 3xTF32, head dims 65..128");
static_assert(JSDPA_WARPS == 8 || JSDPA_WARPS == 12 || JSDPA_WARPS == 16,
              "flash_sm90: a producer and one, two or three consumer warpgroups (8, 12 or 16 warps)");
static_assert(BM == (WIDE ? 64 : 64 * NWG), "flash_sm90: block_m is 64 rows per consumer warpgroup");
static_assert(NWG != 3 || DP <= 64, "flash_sm90: three consumer warpgroups up to head dim 64");
static_assert(NWG != 1 || DP <= 128, "flash_sm90: one consumer warpgroup up to head dim 128");
static_assert(BN == 64 || BN == 80 || BN == 128, "flash_sm90: block_n is 64, 80 or 128");
static_assert(STAGES >= 1 && STAGES <= 4, "flash_sm90: stages must be 1..4");
static_assert(BLOCKS_PER_SM * (PRODUCER_REGS * 128 + NWG * CONSUMER_REGS * 128) <= 65536,
              "register file");
static_assert(BLOCKS_PER_SM == 1 || SMEM_BYTES <= SMEM_BUDGET,
              "flash_sm90: one consumer warpgroup's tile must leave room for a second block per SM");

/* Barrier slots (static shared memory). */
enum {
  BAR_UNIT_FULL = 0,             /* 2: a unit index was written to the ring slot */
  BAR_UNIT_EMPTY = 2,            /* 2: every consumer warp has read it */
  BAR_Q_FULL = 4,                /* Q_STAGES: Q landed (TMA byte count) */
  BAR_Q_EMPTY = 4 + Q_STAGES,    /* Q_STAGES: every consumer warp is done reading Q */
  BAR_K_FULL = 4 + 2 * Q_STAGES, /* STAGES each */
  BAR_K_EMPTY = BAR_K_FULL + KST,
  BAR_V_FULL = BAR_K_FULL + 2 * KST, /* VST each */
  BAR_V_EMPTY = BAR_V_FULL + VST,
  BAR_COUNT = BAR_V_FULL + 2 * VST,
};
constexpr int CONSUMER_WARPS = 4 * NWG;

/* ------------------------------------------------------------ PTX helpers */

__device__ __forceinline__ void mbar_init(u32 bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
/* Waits for the completion of the barrier's phase with the given parity. A
 * fresh barrier counts as having completed the phase before its first, so a
 * producer waiting on an empty barrier with parity 1 passes at once. */
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

/* One TMA box of the 3-d map {head dim, heads, tokens} into shared memory,
 * completing `bar`'s transaction count. */
__device__ __forceinline__ void tma_load(u32 dst, const jsdpa_tmap_t* map, int col, int head,
                                         int token, u32 bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3, %4}], [%5];\n" ::"r"(dst),
      "l"((u64)map), "r"(col), "r"(head), "r"(token), "r"(bar)
      : "memory");
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Pins accumulator registers at this point of the program: the compiler does
 * not know wgmma writes them asynchronously, so without these it could read
 * them before the wait or move them across the issue. */
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

/* The same for A fragments in registers: keeps them live (unreused) until the
 * wgmma that reads them asynchronously has been waited for. */
template <int K>
__device__ __forceinline__ void fence_frags(u32 (&r)[K][4]) {
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(r[k][e])::"memory");
}

/* A shared-memory matrix descriptor with the 128-byte swizzle. K-major
 * operands (Q, K, fp32's V^T: 128 bytes of one row, 64 16-bit or 32 fp32
 * elements) step 1024 bytes per 8 rows (SBO) and ignore LBO. The 16-bit
 * N-major V operand (64 head-dim columns of one key per 128 bytes) steps 1024
 * bytes per 8 keys (SBO) and BN * 128 bytes per 64 columns (LBO). */
__device__ __forceinline__ u64 smem_desc(u32 addr, u32 lbo) {
  return (u64)((addr & 0x3ffff) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(1024 >> 4) << 32) |
         (1ull << 62);
}

/* wgmma with fp32 accumulators, N/2 per thread; acc == 0 overwrites D.
 * 16-bit inputs (m64nNk16, N = 64, 128, 192, 256): ss takes A and B from
 * shared memory, both K-major; rs takes A from registers and B N-major
 * (transposed). fp32 inputs (tf32, m64nNk8, N = 32, 64): both K-major (tf32
 * has no transposed form). The specializations (one asm operand per
 * accumulator register) are written by the generator into the line below
 * (gen/emit.c, emit_wgmma_gemms). */
template <int N>
struct gemm;

/* @jsdpa-gen: wgmma gemm<N> wrappers */

/* ------------------------------------------------------------ work units */

typedef struct unit_s {
  int q_begin, rows, m0;  /* first token, valid rows of the tile, tile start within the sequence */
  int kv_begin, lk, diag; /* first key token, keys, causal offset lk - lq */
  int head, kv_head;
  int t_last, n_tiles; /* key tiles visited: t_last down to t_last - n_tiles + 1 */
} unit_t;

/* One past the last key that row `row` (within its sequence) sees: the
 * sequence end, the bottom-right causal diagonal, a right window. */
__device__ __forceinline__ int keys_end(int lk, int diag, int window_right, int row) {
  int n_end = lk;
  if (JSDPA_CAUSAL) n_end = min(n_end, row + diag + 1);
  if (window_right >= 0) n_end = min(n_end, row + diag + window_right + 1);
  return n_end;
}

/* The producer and the consumers derive the same unit description, so both
 * sides agree on how many tiles (and barrier phases) a unit takes. */
__device__ __forceinline__ unit_t describe(const jsdpa_params_t& p, int u, int num_work) {
  unit_t w;
  const jsdpa_work_t work = p.work[u % num_work];
  w.head = u / num_work;
  w.kv_head = w.head / (p.heads / p.kv_heads);
  w.q_begin = p.q_offsets[work.batch];
  const int lq = p.q_offsets[work.batch + 1] - w.q_begin;
  w.kv_begin = p.kv_offsets[work.batch];
  w.lk = p.kv_offsets[work.batch + 1] - w.kv_begin;
  w.m0 = work.m_block * BM;
  w.rows = min(BM, lq - w.m0);
  w.diag = w.lk - lq;
  const int last_row = w.m0 + w.rows - 1;
  const int n_end = keys_end(w.lk, w.diag, p.window_right, last_row);
  int n_begin = 0;
  if (p.window_left >= 0) n_begin = max(0, w.m0 + w.diag - p.window_left);
  const int t_begin = n_begin / BN;
  w.n_tiles = n_end > n_begin ? (n_end + BN - 1) / BN - t_begin : 0;
  w.t_last = t_begin + w.n_tiles - 1;
  return w;
}

/* ------------------------------------------------------------ producer */

/* One operand tile of ROWS rows starting at `token`, `valid` of them inside
 * the sequence, into shared memory at dst (CB column blocks of ROWS x 128
 * bytes), completing ROWS * DP * ES bytes on `bar` either way. */
template <int ROWS>
__device__ __forceinline__ void load_tile(u32 dst, const jsdpa_tmap_t* whole,
                                          const jsdpa_tmap_t* rows, int head, int token, int valid,
                                          u32 bar) {
  if (valid >= ROWS) {
#pragma unroll
    for (int c = 0; c < CB; ++c) tma_load(dst + c * ROWS * 128, whole, c * EPR, head, token, bar);
    return;
  }
#pragma unroll
  for (int c = 0; c < CB; ++c)
#pragma unroll
    for (int r = 0; r < ROWS; r += CHUNK)
      tma_load(dst + c * ROWS * 128 + r * 128, rows, c * EPR, head, r < valid ? token + r : -CHUNK,
               bar);
}

__device__ __forceinline__ void produce(const jsdpa_flash_sm90_params_t& a, u32 bars, u32 s_q,
                                        u32 s_k, u32 s_v, volatile int* ring) {
  const jsdpa_params_t& p = a.p;
  const int num_work = p.schedule->num_work;
  const int units = num_work * p.heads;
  auto bar = [&](int i) { return bars + 8 * i; };
  int kv_it = 0, q_it = 0;
  for (int i = 0;; ++i) {
    const int slot = i & 1;
    mbar_wait(bar(BAR_UNIT_EMPTY + slot), ((i >> 1) & 1) ^ 1);
    const int u = atomicAdd(&p.schedule->tile_counter, 1);
    ring[slot] = u;
    mbar_arrive(bar(BAR_UNIT_FULL + slot));
    if (u >= units) return;
    const unit_t w = describe(p, u, num_work);
    if (w.n_tiles == 0) continue;
    const int qs = q_it % Q_STAGES;
    mbar_wait(bar(BAR_Q_EMPTY + qs), ((q_it / Q_STAGES) & 1) ^ 1);
    mbar_expect_tx(bar(BAR_Q_FULL + qs), Q_BYTES);
    load_tile<BM>(s_q + qs * Q_BYTES, &a.q, &a.q_rows, w.head, w.q_begin + w.m0, w.rows,
                  bar(BAR_Q_FULL + qs));
    ++q_it;
    for (int j = 0; j < w.n_tiles; ++j, ++kv_it) {
      const int sk = kv_it % KST, sv = kv_it % VST;
      const int n0 = (w.t_last - j) * BN, token = w.kv_begin + n0;
      mbar_wait(bar(BAR_K_EMPTY + sk), ((kv_it / KST) & 1) ^ 1);
      mbar_expect_tx(bar(BAR_K_FULL + sk), KV_BYTES);
      load_tile<BN>(s_k + sk * KV_BYTES, &a.k, &a.k_rows, w.kv_head, token, w.lk - n0,
                    bar(BAR_K_FULL + sk));
      mbar_wait(bar(BAR_V_EMPTY + sv), ((kv_it / VST) & 1) ^ 1);
      mbar_expect_tx(bar(BAR_V_FULL + sv), KV_BYTES);
      load_tile<BN>(s_v + sv * KV_BYTES, &a.v, &a.v_rows, w.kv_head, token, w.lk - n0,
                    bar(BAR_V_FULL + sv));
    }
  }
}

/* ------------------------------------------------------------ consumers */

/* Ping-pong (FlashAttention-3): the two consumer warpgroups take turns
 * issuing their GEMMs, so one's softmax runs while the other's GEMMs hold the
 * tensor cores. Named barrier 5 + g is warpgroup g's turn: it syncs there
 * (its 128 threads plus the other's 128 arrivals) before issuing and arrives
 * on the other's after. */
__device__ __forceinline__ void turn_wait(int wg) {
  asm volatile("bar.sync %0, 256;\n" ::"r"(5 + wg) : "memory");
}
__device__ __forceinline__ void turn_pass(int wg) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(6 - wg) : "memory");
}

/* Wide mode: the two consumer warpgroups add their partial scores (each over
 * half of the head dim) through shared memory, X[g] being warpgroup g's. A
 * thread stores its BN / 2 accumulators as float4s at (i * 128 + thread) * 16
 * (conflict-free), and the thread of the same index in the other warpgroup
 * holds the same rows and columns, so it reads exactly those. Barriers:
 *  - 3 (256 threads): both partials are written, either may be read;
 *  - 7 + g (128 threads sync, 128 arrive): warpgroup 1 - g has read X[g], so g
 *    may overwrite it with the next tile's partial. Each warpgroup arrives
 *    once up front (X starts free), so arrivals and syncs alternate.
 * Floating-point addition is commutative: both warpgroups get the same sum,
 * hence the same maxima, P and row sums. fp32 keeps X[g] in the half of K's
 * small plane that only warpgroup g's S reads (its head-dim half: 64 rows x
 * 64 keys x 4 bytes, the same 16 KiB), and waits on barrier 7 + g before
 * rewriting that half with the next K's small values instead of before the
 * exchange (wait_free false). */
__device__ __forceinline__ void x_free_pass(int wg) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(8 - wg) : "memory");
}
__device__ __forceinline__ void exchange_s(float (&sc)[BN / 2], u32 x0, u32 half, int wg,
                                           bool wait_free) {
  const u32 tid = threadIdx.x & 127;
  const u32 mine = x0 + wg * half + tid * 16;
  const u32 other = x0 + (1 - wg) * half + tid * 16;
  if (wait_free) asm volatile("bar.sync %0, 256;\n" ::"r"(7 + wg) : "memory");
#pragma unroll
  for (int i = 0; i < BN / 8; ++i)
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(mine + i * 128 * 16),
                 "f"(sc[4 * i]), "f"(sc[4 * i + 1]), "f"(sc[4 * i + 2]), "f"(sc[4 * i + 3])
                 : "memory");
  asm volatile("bar.sync 3, 256;\n" ::: "memory");
  /* Load and add in one statement: loaded separately, all BN / 2 values were
   * live at once next to O and S, and d512 spilled. */
#pragma unroll
  for (int i = 0; i < BN / 8; ++i)
    asm volatile(
        "{\n.reg .f32 x0, x1, x2, x3;\n"
        "ld.shared.v4.f32 {x0, x1, x2, x3}, [%4];\n"
        "add.f32 %0, %0, x0;\nadd.f32 %1, %1, x1;\nadd.f32 %2, %2, x2;\nadd.f32 %3, %3, x3;\n}\n"
        : "+f"(sc[4 * i]), "+f"(sc[4 * i + 1]), "+f"(sc[4 * i + 2]), "+f"(sc[4 * i + 3])
        : "r"(other + i * 128 * 16)
        : "memory");
  x_free_pass(wg);
}

/* ------------------------------------------------------------ fp32 (F32) */

/* The small half of x's tf32 split: x less x with its 13 low bits cleared
 * (what the tensor core reads of x). Exact in fp32. */
__device__ __forceinline__ u32 tf32_small(u32 x) {
  return __float_as_uint(__uint_as_float(x) - __uint_as_float(x & 0xffffe000u));
}

/* The A fragments of Q's small half for this warpgroup's k steps, read once
 * per unit from the swizzled Q tile at q_base (the warpgroup's first column
 * block). tf32 m64k8 A fragment, per thread: rows g and g + 8 of its warp's
 * 16, columns t and t + 4 of the k step, in the order (g, t), (g + 8, t),
 * (g, t + 4), (g + 8, t + 4). A k step is 32 bytes: chunks 2 (ks % 4) and
 * 2 (ks % 4) + 1 of a 128-byte row, which the 128-byte swizzle XORs with the
 * row's index mod 8 (= g for both rows). */
__device__ __forceinline__ void load_q_small(u32 (&qs)[KS_WG][4], u32 q_base) {
  const int lane = threadIdx.x & 31, wl = (threadIdx.x >> 5) & 3;
  const int g = lane >> 2, t = lane & 3;
  const u32 r0 = (wl * 16 + g) * 128, r1 = r0 + 8 * 128;
#pragma unroll
  for (int ks = 0; ks < KS_WG; ++ks) {
    const u32 base = q_base + (ks / 4) * BM * 128 + t * 4;
    const u32 c0 = ((2 * (ks % 4)) ^ g) * 16, c1 = ((2 * (ks % 4) + 1) ^ g) * 16;
    qs[ks][0] = tf32_small(ld_shared_u32(base + r0 + c0));
    qs[ks][1] = tf32_small(ld_shared_u32(base + r1 + c0));
    qs[ks][2] = tf32_small(ld_shared_u32(base + r0 + c1));
    qs[ks][3] = tf32_small(ld_shared_u32(base + r1 + c1));
  }
}

/* A consumer warpgroup writes its half of K's small plane (k and ks point at
 * the half: its head-dim columns, CB / 2 column blocks), at the same swizzled
 * positions as K, 16 bytes per thread and step (conflict-free). */
__device__ __forceinline__ void split_k(u32 k, u32 ks) {
  asm volatile("" : "+r"(k), "+r"(ks)); /* formed here each time (see issue_s) */
  const u32 tid = threadIdx.x & 127;
#pragma unroll
  for (int i = 0; i < KV_BYTES / 2 / 16 / 128; ++i) {
    const u32 off = (i * 128 + tid) * 16;
    u32 x[4];
    ld_shared_v4(k + off, x);
#pragma unroll
    for (int e = 0; e < 4; ++e) x[e] = tf32_small(x[e]);
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(ks + off), "r"(x[0]),
                 "r"(x[1]), "r"(x[2]), "r"(x[3])
                 : "memory");
  }
}

/*
 * A consumer warpgroup writes the rows of V^T (and of its small half) that
 * its own P V reads, columns wg * DO .. + DO - 1 of V, from the
 * raw V tile at v (TMA's layout: CB column blocks of BN key rows x 128
 * bytes, swizzled), zeroing keys >= kv_valid (rows past the sequence's end
 * hold the next sequence's values, and P's zeros times an Inf there would be
 * NaN). V^T is the K-major B operand of O += P V: BN / 32 key blocks, each DP
 * column rows x 128 bytes (32 keys), with the same swizzle.
 * Key order: the S accumulators hold keys 2t and 2t + 1 of each group of 8
 * where the tf32 A fragment's slots t and t + 4 are, so key 2i + e of a
 * group is stored at position i + 4e and P goes to the tensor core as it is.
 * A task is one column n and keys {8q + e + 2i : i < 4}: four 4-byte reads
 * (a warp's 32 lanes read 32 consecutive columns of one key row: one
 * wavefront) and one 16-byte write per plane, positions 8q + 4e .. + 3 of
 * V^T row n (8 consecutive rows land in 8 distinct swizzled chunks). A first
 * version gave each lane four columns instead and its writes a 4-way bank
 * conflict: the transpose then cost more shared-memory wavefronts than S.
 */
__device__ __forceinline__ void transpose_v(u32 v, u32 vt, u32 vts, int kv_valid, int wg) {
  constexpr int TASKS = BN / 4 * DO;
  static_assert(TASKS % 128 == 0 && DO % 32 == 0, "flash_sm90 fp32: V transpose tasks");
  /* Formed here each time, not hoisted out of the key loop (see issue_s). */
  asm volatile("" : "+r"(v), "+r"(vt), "+r"(vts));
  const u32 tid = threadIdx.x & 127;
  /* Two tasks per iteration: unrolled fully, ptxas issued every task's reads
   * up front and spilled next to O, P and Q's small half. */
#pragma unroll 2
  for (int it = 0; it < TASKS / 128; ++it) {
    const int task = it * 128 + tid;
    const int n = wg * DO + task % DO, kq = task / DO, q = kq / 2, e = kq % 2;
    const u32 col = (n / 32) * BN * 128 + (n % 4) * 4;
    float x[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = 8 * q + e + 2 * i;
      const float val =
          __uint_as_float(ld_shared_u32(v + col + key * 128 + ((((n % 32) / 4) ^ (key % 8)) * 16)));
      x[i] = key < kv_valid ? val : 0.f;
    }
    const int pos = 8 * q + 4 * e; /* first of the four positions */
    const u32 off = (pos / 32) * DP * 128 + n * 128 + ((((pos % 32) / 4) ^ (n % 8)) * 16);
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(vt + off), "f"(x[0]),
                 "f"(x[1]), "f"(x[2]), "f"(x[3])
                 : "memory");
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(vts + off),
                   "r"(tf32_small(__float_as_uint(x[0]))), "r"(tf32_small(__float_as_uint(x[1]))),
                   "r"(tf32_small(__float_as_uint(x[2]))), "r"(tf32_small(__float_as_uint(x[3])))
                   : "memory");
  }
}

/* What the masking and softmax of one key tile need (per thread). */
typedef struct tile_ctx_s {
  int row;      /* this thread's first row in its sequence (the other is row + 8) */
  int m0w;      /* its warpgroup's first row */
  int last_row; /* the tile's last valid row */
  int lk, diag, win_l, win_r, t;
  float mult, cap_in, cap_out;
  bool softcap;
} tile_ctx_t;

/* S = Q K^T over the padded head dim (wide: this warpgroup's half; the bases
 * then point at its first column block), 16 columns per wgmma (not
 * committed). */
__device__ __forceinline__ void issue_s(float (&sc)[BN / 2], u32 q_base, u32 k_base) {
  /* With one K buffer (wide) every descriptor is loop-invariant, and ptxas
   * kept all 2 x KS_WG of them (64 registers) live across the key loop and
   * spilled at d512 (and at d256 with 80-key tiles): hide the bases' origin
   * so they are formed at the issue. Not everywhere: where the registers
   * fit, the hoisted descriptors measured 1-10% faster (bench/NOTES.md). */
  if (STAGES == 1 || BN == 80) asm volatile("" : "+r"(q_base), "+r"(k_base));
#pragma unroll
  for (int ks = 0; ks < KS_WG; ++ks)
    gemm<BN>::ss(sc, smem_desc(q_base + (ks / 4) * BM * 128 + (ks % 4) * 32, 16),
                 smem_desc(k_base + (ks / 4) * BN * 128 + (ks % 4) * 32, 16), ks);
}

/* fp32: S = Q K^T in three tf32 passes per k8 step (Q K, Q K_small from
 * shared memory, Q_small K with Q_small in registers). */
__device__ __forceinline__ void issue_s_f32(float (&sc)[BN / 2], u32 q_base, u32 k_base,
                                            u32 ks_base, const u32 (&qsm)[KS_WG][4]) {
  asm volatile("" : "+r"(q_base), "+r"(k_base), "+r"(ks_base)); /* see issue_s */
#pragma unroll
  for (int ks = 0; ks < KS_WG; ++ks) {
    const u32 off_q = (ks / 4) * BM * 128 + (ks % 4) * 32, off_k = (ks / 4) * BN * 128 + (ks % 4) * 32;
    gemm<BN>::ss(sc, smem_desc(q_base + off_q, 16), smem_desc(k_base + off_k, 16), ks);
    gemm<BN>::ss(sc, smem_desc(q_base + off_q, 16), smem_desc(ks_base + off_k, 16), 1);
    gemm<BN>::rs(sc, qsm[ks], smem_desc(k_base + off_k, 16), 1);
  }
}

/* Softcap, the masks of the tile starting at key n0 and the online softmax in
 * the exp2 domain (flash.cu's), in place. The output correction goes to corr;
 * the caller applies it to O. */
__device__ __forceinline__ void softmax_tile(float (&sc)[BN / 2], float (&row_max)[2],
                                             float (&row_sum)[2], float (&corr)[2],
                                             const tile_ctx_t& c, int n0) {
  if (c.softcap) {
#pragma unroll
    for (int e = 0; e < BN / 2; ++e) sc[e] = c.cap_out * tanh_ex2(sc[e] * c.cap_in);
  }
  /* Only tiles crossing the sequence end, the causal diagonal or a window
   * edge pay for masking. */
  const bool full = n0 + BN <= c.lk && (!JSDPA_CAUSAL || n0 + BN - 1 <= c.m0w + c.diag) &&
                    (c.win_r < 0 || n0 + BN - 1 <= c.m0w + c.diag + c.win_r) &&
                    (c.win_l < 0 || n0 >= c.last_row + c.diag - c.win_l);
  if (!full) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = c.row + 8 * h;
      int hi = c.lk - 1;
      if (JSDPA_CAUSAL) hi = min(hi, row + c.diag);
      if (c.win_r >= 0) hi = min(hi, row + c.diag + c.win_r);
      const int lo = c.win_l >= 0 ? row + c.diag - c.win_l : 0;
#pragma unroll
      for (int n = 0; n < BN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n0 + n * 8 + 2 * c.t + e;
          if (col > hi || col < lo) sc[n * 4 + 2 * h + e] = JSDPA_NEG_INFINITY;
        }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    /* Four partial maxima and sums: a row's 2 * BN / 8 values in one
     * dependent chain left the warps stalled on each FMNMX / FADD's latency
     * (ncu on long d64: "wait" was the top stall reason, with two consumer
     * warps per scheduler to hide it). */
    float m4[4] = {row_max[h], JSDPA_NEG_INFINITY, JSDPA_NEG_INFINITY, JSDPA_NEG_INFINITY};
#pragma unroll
    for (int n = 0; n < BN / 8; ++n)
      m4[n % 4] = fmaxf(m4[n % 4], fmaxf(sc[n * 4 + 2 * h], sc[n * 4 + 2 * h + 1]));
    float mx = fmaxf(fmaxf(m4[0], m4[1]), fmaxf(m4[2], m4[3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    /* Conditional rescaling (COND_RESCALE; FlashAttention-4's idea): the row
     * keeps its reference maximum until the tile's exceeds it by more than 8
     * in the exp2 domain, so P stays <= 256 (floating point: no range or
     * precision lost in fp32 sums or fp16/bf16 P) and O and the row sum need
     * no correction (corr 1) for most tiles of a long row. The reference only has to be the same for P, the row sum
     * and the LSE, which all use row_max. A row that has seen only masked
     * keys keeps max -inf: subtract 0 instead, so exp2 gives 0, not NaN. */
    const bool grow = COND_RESCALE ? mx * c.mult > row_max[h] * c.mult + 8.f : true;
    const float ref = grow ? mx : row_max[h];
    const float shift = ref == JSDPA_NEG_INFINITY ? 0.f : ref * c.mult;
    corr[h] = grow ? exp2_approx(row_max[h] * c.mult - shift) : 1.f;
    row_max[h] = ref;
    float s4[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
      sc[n * 4 + 2 * h] = exp2_approx(fmaf(sc[n * 4 + 2 * h], c.mult, -shift));
      sc[n * 4 + 2 * h + 1] = exp2_approx(fmaf(sc[n * 4 + 2 * h + 1], c.mult, -shift));
      if (!ROWSUM) s4[n % 4] += sc[n * 4 + 2 * h] + sc[n * 4 + 2 * h + 1];
    }
    /* (ROWSUM: P V sums the rows, see ROWSUM.) */
    if (!ROWSUM) row_sum[h] = row_sum[h] * corr[h] + ((s4[0] + s4[1]) + (s4[2] + s4[3]));
  }
}

/* P as A fragments: the m64nNk16 accumulators of columns 16k..16k+15 are,
 * register for register, the k-th A fragment. */
__device__ __forceinline__ void pack_p(const float (&sc)[BN / 2], u32 (&pf)[BN / KSTEP][4]) {
#if !defined(JSDPA_DTYPE_FP32) /* (fp32 packs in consume's pack) */
#pragma unroll
  for (int k = 0; k < BN / 16; ++k) {
    pf[k][0] = pack2(sc[8 * k + 0], sc[8 * k + 1]);
    pf[k][1] = pack2(sc[8 * k + 2], sc[8 * k + 3]);
    pf[k][2] = pack2(sc[8 * k + 4], sc[8 * k + 5]);
    pf[k][3] = pack2(sc[8 * k + 6], sc[8 * k + 7]);
  }
#endif
}

__device__ __forceinline__ void consume(const jsdpa_params_t& p, u32 bars, u32 s_q, u32 s_k,
                                        u32 s_v, u32 s_x, const volatile int* ring) {
  const int num_work = p.schedule->num_work;
  const int units = num_work * p.heads;
  auto bar = [&](int i) { return bars + 8 * i; };
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = warp / 4 - 1, wl = warp & 3;   /* consumer warpgroup 0/1, warp within it */
  const int g = lane >> 2, t = lane & 3;        /* accumulator row group / column pair */
  const int wg_row = WIDE ? 0 : wg * 64;       /* the warpgroup's first row in the tile */
  const int thread_row = wg_row + wl * 16 + g; /* this thread's first row in the tile */
  const int win_l = p.window_left, win_r = p.window_right;

  const bool softcap = p.softcap > 0.f;
  const float mult = softcap ? 1.0f : p.scale_log2;
  const float cap_in = softcap ? p.scale / p.softcap : 0.f;
  const float cap_out = p.softcap * JSDPA_LOG2E;

  const bool pingpong = NWG == 2 && OVERLAP && (p.flags & JSDPA_FLAG_PINGPONG);
  if (pingpong && wg == 1) turn_pass(wg);
  if (WIDE) x_free_pass(wg);
  int kv_it = 0, q_it = 0;
  for (int i = 0;; ++i) {
    const int slot = i & 1;
    mbar_wait(bar(BAR_UNIT_FULL + slot), (i >> 1) & 1);
    const int u = ring[slot];
    __syncwarp();
    if (lane == 0) mbar_arrive(bar(BAR_UNIT_EMPTY + slot));
    if (u >= units) return;
    const unit_t w = describe(p, u, num_work);

    float o[ON / 2];
#pragma unroll
    for (int e = 0; e < ON / 2; ++e) o[e] = 0.f;
    float row_max[2] = {JSDPA_NEG_INFINITY, JSDPA_NEG_INFINITY}, row_sum[2] = {0.f, 0.f};

    if (w.n_tiles > 0) {
      const int qs = q_it % Q_STAGES;
      mbar_wait(bar(BAR_Q_FULL + qs), (q_it / Q_STAGES) & 1);
      ++q_it;
      /* Wide: this warpgroup's half of the head dim starts at column block wg * CB / 2. */
      const u32 q_base = s_q + qs * Q_BYTES + wg_row * 128 + (WIDE ? wg * (CB / 2) * BM * 128 : 0);
      const u32 k_col0 = WIDE ? wg * (CB / 2) * BN * 128 : 0;
      const tile_ctx_t tc = {w.m0 + thread_row,
                             w.m0 + wg_row,
                             w.m0 + w.rows - 1,
                             w.lk,
                             w.diag,
                             win_l,
                             win_r,
                             t,
                             mult,
                             cap_in,
                             cap_out,
                             softcap};
      float sc[BN / 2], corr[2];
      /* P's A fragments (fp32: P as stored, the big half, and its small half). */
      constexpr int PK = BN / KSTEP, PS = F32 ? PK : 1;
      u32 pf[PK][4], ps[PS][4];
      float part[DO / 2]; /* fp32: this key tile's P V, added to O after it (else unused) */
      u32 qsm[KS_WG][4]; /* fp32: Q's small half (unused, so dropped, otherwise) */
      if constexpr (F32) load_q_small(qsm, q_base);
      const u32 s_ks = s_x + X_BYTES, s_vt = s_ks + KS_BYTES, s_vts = s_vt + KV_BYTES;
      /* P from the score accumulators: 16-bit, packed pairs (pack_p); fp32, the
       * keys in transpose_v's order: slot t <- key 2t, slot t + 4 <- key 2t + 1. */
      auto pack = [&]() {
        if constexpr (F32) {
#pragma unroll
          for (int k = 0; k < PK; ++k) {
            pf[k][0] = __float_as_uint(sc[4 * k + 0]);
            pf[k][1] = __float_as_uint(sc[4 * k + 2]);
            pf[k][2] = __float_as_uint(sc[4 * k + 1]);
            pf[k][3] = __float_as_uint(sc[4 * k + 3]);
#pragma unroll
            for (int e = 0; e < 4; ++e) ps[F32 ? k : 0][e] = tf32_small(pf[k][e]);
          }
        } else {
          pack_p(sc, pf);
        }
      };

      /* S(j) = Q K(j)^T: issued and committed here, waited for by the caller. */
      auto issue_tile_s = [&](int it) {
        mbar_wait(bar(BAR_K_FULL + it % KST), (it / KST) & 1);
        wgmma_fence();
        issue_s(sc, q_base, s_k + (it % KST) * KV_BYTES + k_col0);
        wgmma_commit();
      };
      /* After S(j) completed: K(j)'s buffer, and Q's after the unit's last tile, are free. */
      auto release_k = [&](int it, bool last) {
        __syncwarp();
        if (lane == 0) {
          mbar_arrive(bar(BAR_K_EMPTY + it % KST));
          if (last) mbar_arrive(bar(BAR_Q_EMPTY + qs));
        }
      };

      /* O += P(j) V(j), 16 keys per wgmma (issued and committed). */
      auto issue_pv = [&](int it) {
        mbar_wait(bar(BAR_V_FULL + it % VST), (it / VST) & 1);
        wgmma_fence();
        /* Wide: this warpgroup's output columns are V's column blocks from wg * CB / 2. */
        const u32 v_base = s_v + (it % VST) * KV_BYTES + (WIDE ? wg * (CB / 2) * BN * 128 : 0);
        /* ROWSUM: the next 64-column block is the ones block at s_x (V has one). */
        const u32 lbo = ROWSUM ? s_x - v_base : BN * 128;
#pragma unroll
        for (int k = 0; k < BN / 16; ++k)
          gemm<ON>::rs(o, pf[k], smem_desc(v_base + k * 16 * 128, lbo), 1);
        wgmma_commit();
      };
      /* After P(j) V(j) completed: V(j)'s buffer is free. */
      auto release_v = [&](int it) {
        fence_regs(o);
        fence_frags(pf);
        __syncwarp();
        if (lane == 0) mbar_arrive(bar(BAR_V_EMPTY + it % VST));
      };
      /* Applies the softmax's correction to O and moves P(j + 1) in. */
      auto rescale = [&]() {
        /* (COND_RESCALE: skipped where no row of the warp moved its reference
         * maximum.) */
        if (!COND_RESCALE || __any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
#pragma unroll
          for (int dt = 0; dt < ON / 8; ++dt) { /* (ROWSUM: the row sums too) */
            o[dt * 4 + 0] *= corr[0];
            o[dt * 4 + 1] *= corr[0];
            o[dt * 4 + 2] *= corr[1];
            o[dt * 4 + 3] *= corr[1];
          }
        }
        pack();
        /* Keeps the rescale above the next wgmma issue: ptxas serializes
         * every wgmma when accumulators are read inside a pipeline stage. */
        fence_regs(o);
        fence_frags(pf);
        if (F32) fence_frags(ps);
      };

      /* Key tiles run from the last visible one down, so the ones fully
       * masked for this warpgroup's 64 rows come first: all of them when
       * its rows lie past the sequence end, the diagonal's far side under
       * causal or a right window. The warpgroup only passes their buffers
       * on (waiting for each to fill first, so its arrival cannot count
       * toward the phase of the buffer's previous use). On ~140-token
       * causal sequences this is a quarter of the tiles. */
      int skip = w.n_tiles;
      const int wg_first = w.m0 + wg_row, wg_last = min(wg_first + 63, w.m0 + w.rows - 1);
      if (wg_last >= wg_first) {
        const int n_end = keys_end(w.lk, w.diag, win_r, wg_last);
        if (n_end > 0) skip = min(w.n_tiles, w.t_last - (n_end - 1) / BN);
      }
      for (int j = 0; j < skip; ++j, ++kv_it) {
        if (pingpong) turn_wait(wg), turn_pass(wg);
        mbar_wait(bar(BAR_K_FULL + kv_it % KST), (kv_it / KST) & 1);
        release_k(kv_it, j + 1 == w.n_tiles);
        mbar_wait(bar(BAR_V_FULL + kv_it % VST), (kv_it / VST) & 1);
        __syncwarp();
        if (lane == 0) mbar_arrive(bar(BAR_V_EMPTY + kv_it % VST));
      }
      const int n_mine = w.n_tiles - skip, t_first = w.t_last - skip;
      if (pingpong && n_mine == 0) turn_wait(wg), turn_pass(wg);
      if (F32 && n_mine > 0) {
        /* fp32 (wide; KST K buffers, one V buffer). Each consumer warpgroup
         * writes the plane rows its own GEMMs read: its head-dim half of K's
         * small plane, its output columns' rows of V^T. The only meeting of
         * the two is the exchange. A warpgroup writes V(j)^T while its S(j)
         * runs and K(j + 1)'s small half while its P V(j) runs (three producer
         * warps writing the planes instead were slower: the transpose became
         * the critical path). Barrier 1 + wg (its 128 threads) opens tile j:
         * its K(j) small half is written, and its P V(j - 1) is done, so its
         * V^T rows may be rewritten. The small half doubles as the exchange's
         * X[wg] (see exchange_s): before rewriting it, barrier 7 + wg waits
         * for the other warpgroup to have read the last tile's partial. */
        auto split_next = [&](int it) {
          asm volatile("bar.sync %0, 256;\n" ::"r"(7 + wg) : "memory");
          mbar_wait(bar(BAR_K_FULL + it % KST), (it / KST) & 1);
          split_k(s_k + (it % KST) * KV_BYTES + k_col0, s_ks + k_col0);
          asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        };
        split_next(kv_it);
        for (int j = 0; j < n_mine; ++j, ++kv_it) {
          const int n0 = (t_first - j) * BN;
          asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
          wgmma_fence();
          issue_s_f32(sc, q_base, s_k + (kv_it % KST) * KV_BYTES + k_col0, s_ks + k_col0, qsm);
          wgmma_commit();
          /* This warpgroup's rows of V(j)^T (keys past the sequence's end
           * zeroed); the raw V buffer is free once this warp read its part.
           * The exchange's barrier publishes the rows to the P V below. */
          mbar_wait(bar(BAR_V_FULL + kv_it % VST), (kv_it / VST) & 1);
          transpose_v(s_v + (kv_it % VST) * KV_BYTES, s_vt, s_vts, w.lk - n0, wg);
          asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
          __syncwarp();
          if (lane == 0) mbar_arrive(bar(BAR_V_EMPTY + kv_it % VST));
          wgmma_wait<0>();
          fence_regs(sc);
          release_k(kv_it, j + 1 == n_mine);
          /* X[wg] is this warpgroup's half of K's small plane, which its S(j)
           * read: every warp of it waits for S(j) before any stores there. */
          asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
          exchange_s(sc, s_ks, KV_BYTES / 2, wg, false);
          softmax_tile(sc, row_max, row_sum, corr, tc, n0);
          rescale(); /* (O is zero at the first tile) */
          /* P V(j) into a fresh partial, added to O once it completed. */
          wgmma_fence();
          {
            /* (Bases laundered as in issue_s: their descriptors are loop-invariant.) */
            u32 vt = s_vt + wg * DO * 128, vts = s_vts + wg * DO * 128;
            asm volatile("" : "+r"(vt), "+r"(vts));
#pragma unroll
            for (int k = 0; k < PK; ++k) {
              const u32 off = (k / 4) * DP * 128 + (k % 4) * 32;
              gemm<DO>::rs(part, ps[F32 ? k : 0], smem_desc(vt + off, 16), k);
              gemm<DO>::rs(part, pf[k], smem_desc(vts + off, 16), 1);
              gemm<DO>::rs(part, pf[k], smem_desc(vt + off, 16), 1);
            }
          }
          wgmma_commit();
          if (j + 1 < n_mine) split_next(kv_it + 1);
          wgmma_wait<0>();
          fence_regs(part);
          fence_frags(pf);
          fence_frags(ps);
#pragma unroll
          for (int e = 0; e < DO / 2; ++e) o[e] += part[e];
        }
      } else if (n_mine > 0) {
        if (pingpong) turn_wait(wg);
        issue_tile_s(kv_it);
        if (pingpong) turn_pass(wg);
        wgmma_wait<0>();
        fence_regs(sc);
        release_k(kv_it, n_mine == 1);
        if (WIDE) exchange_s(sc, s_x, X_BYTES / 2, wg, true);
        softmax_tile(sc, row_max, row_sum, corr, tc, t_first * BN);
        pack();
        /* The chunk a sequence's last key falls in holds up to CHUNK - 1 rows
         * of the next sequence. Their P is 0, but 0 * Inf is NaN: zero those
         * V rows before P V reads them, so no sequence's non-finite values
         * reach another's output (flash.cu's loads zero-fill the same rows).
         * Only the first tile can hold the sequence's end. Both warpgroups
         * may write the same zeros; each fences its generic stores against
         * its own wgmma (async proxy) and syncs its 128 threads. The buffer
         * is refilled only after both have released it. (fp32: the V transpose
         * zeroes those keys instead.) */
        const int kv_valid = w.lk - t_first * BN;
        if (!F32 && kv_valid < BN && kv_valid % CHUNK != 0) {
          mbar_wait(bar(BAR_V_FULL + kv_it % VST), (kv_it / VST) & 1);
          /* Thread i of the warpgroup clears 16 bytes of row i / 8 (< CHUNK)
           * in every column block. */
          const int r = (threadIdx.x & 127) >> 3;
          if (r < CHUNK - kv_valid % CHUNK) {
            const u32 dst =
                s_v + (kv_it % VST) * KV_BYTES + (kv_valid + r) * 128 + (threadIdx.x & 7) * 16;
#pragma unroll
            for (int c = 0; c < CB; ++c)
              asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst + c * BN * 128),
                           "r"(0)
                           : "memory");
          }
          asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
          asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
        }

        /* With OVERLAP (FlashAttention-3's intra-warpgroup pipelining), S(j + 1)
         * is issued before P(j) V(j) and its softmax runs while P(j) V(j) is on
         * the tensor cores; O is rescaled once P(j) V(j) has finished. The last
         * tile is peeled off so no wgmma is issued under a branch. */
        for (int j = 0; j + 1 < n_mine; ++j, ++kv_it) {
          const int n1 = (t_first - j - 1) * BN;
          if (OVERLAP) {
            if (pingpong) turn_wait(wg);
            issue_tile_s(kv_it + 1);
            issue_pv(kv_it);
            if (pingpong) turn_pass(wg);
            wgmma_wait<1>();
            fence_regs(sc);
            release_k(kv_it + 1, j + 2 == n_mine);
            softmax_tile(sc, row_max, row_sum, corr, tc, n1);
            wgmma_wait<0>();
            release_v(kv_it);
          } else {
            issue_pv(kv_it);
            wgmma_wait<0>();
            release_v(kv_it);
            issue_tile_s(kv_it + 1);
            wgmma_wait<0>();
            fence_regs(sc);
            release_k(kv_it + 1, j + 2 == n_mine);
            if (WIDE) exchange_s(sc, s_x, X_BYTES / 2, wg, true);
            softmax_tile(sc, row_max, row_sum, corr, tc, n1);
          }
          rescale();
        }
        if (pingpong) turn_wait(wg);
        issue_pv(kv_it);
        if (pingpong) turn_pass(wg);
        wgmma_wait<0>();
        release_v(kv_it);
        ++kv_it;
      }
    }

    /* Epilogue: normalize, LSE, and predicated stores of the rows inside the
     * sequence (the tile may run past its end). */
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[h];
      if (ROWSUM) {
        sum = o[DO / 2 + 2 * h]; /* the whole row's, in every thread of the quad */
      } else {
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      }
      const float inv = sum > 0.f ? 1.0f / sum : 0.f;
      const int r = thread_row + 8 * h;
      if (r >= w.rows) continue;
      const long long token = w.q_begin + w.m0 + r;
      if (p.lse != 0 && t == 0 && (!WIDE || wg == 0))
        p.lse[token * p.heads + w.head] =
            sum > 0.f ? (row_max[h] * mult + log2_approx(sum)) * JSDPA_LN2 : JSDPA_NEG_INFINITY;
      jsdpa_elem_t* dst =
          (jsdpa_elem_t*)p.o + token * p.o_token_stride + (long long)w.head * p.o_head_stride;
#pragma unroll
      for (int dt = 0; dt < DO / 8; ++dt) {
        const int col = (WIDE ? wg * DO : 0) + dt * 8 + 2 * t;
        if (col >= D) continue;
        const float x0 = o[dt * 4 + 2 * h] * inv, x1 = o[dt * 4 + 2 * h + 1] * inv;
#if defined(JSDPA_DTYPE_FP32)
        if (D % 2 == 0 || col + 1 < D)
          *(float2*)(dst + col) = make_float2(x0, x1);
        else
          dst[col] = x0;
#else
        const u32 v = pack2(x0, x1);
        if (D % 2 == 0 || col + 1 < D)
          *(u32*)(dst + col) = v;
        else
          dst[col] = (jsdpa_elem_t)v;
#endif
      }
    }
  }
}

}  // namespace jsdpa_sm90

extern "C" __device__ const int jsdpa_launch[4] = {jsdpa_sm90::THREADS, jsdpa_sm90::SMEM_BYTES,
                                                   JSDPA_BLOCK_M, JSDPA_BLOCK_N};

/* __launch_bounds__ caps registers at entry (65536 / THREADS / BLOCKS_PER_SM),
 * which setmaxnreg needs: it redistributes within the block's allocation. */
extern "C" __global__ void __launch_bounds__(jsdpa_sm90::THREADS, jsdpa_sm90::BLOCKS_PER_SM)
    JSDPA_KERNEL_NAME(const __grid_constant__ jsdpa_flash_sm90_params_t a) {
  using namespace jsdpa_sm90;
  extern __shared__ unsigned char jsdpa_sm90_smem[];
  __shared__ __align__(8) unsigned long long barriers[BAR_COUNT];
  __shared__ volatile int ring[2];
  if (a.p.schedule->error) return;
  const u32 base = (smem_u32(jsdpa_sm90_smem) + 1023) & ~1023u;
  const u32 s_q = base, s_k = base + Q_STAGES * Q_BYTES, s_v = s_k + KST * KV_BYTES;
  const u32 s_x = s_v + VST * KV_BYTES; /* wide mode's partial scores (fp32: its planes) */
  const u32 bars = smem_u32(barriers);
  if (threadIdx.x == 0) {
    for (int i = 0; i < 2; ++i) {
      mbar_init(bars + 8 * (BAR_UNIT_FULL + i), 1);
      mbar_init(bars + 8 * (BAR_UNIT_EMPTY + i), CONSUMER_WARPS);
    }
    for (int i = 0; i < Q_STAGES; ++i) {
      mbar_init(bars + 8 * (BAR_Q_FULL + i), 1);
      mbar_init(bars + 8 * (BAR_Q_EMPTY + i), CONSUMER_WARPS);
    }
    for (int s = 0; s < KST; ++s) {
      mbar_init(bars + 8 * (BAR_K_FULL + s), 1);
      mbar_init(bars + 8 * (BAR_K_EMPTY + s), CONSUMER_WARPS);
    }
    for (int s = 0; s < VST; ++s) {
      mbar_init(bars + 8 * (BAR_V_FULL + s), 1);
      mbar_init(bars + 8 * (BAR_V_EMPTY + s), CONSUMER_WARPS);
    }
    /* The barriers are written by the generic proxy and completed by TMA. */
    asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::
                     : "memory");
  }
  if (ROWSUM) {
    /* The ones block (1.0 in every 16-bit element), read by wgmma (the async
     * proxy): the writes are fenced into it before the barrier below. */
    static_assert(!ROWSUM || X_BYTES + KS_BYTES + VT_BYTES == 0,
                  "flash_sm90: the ones block sits at s_x");
#if defined(JSDPA_DTYPE_BF16)
    const u32 one2 = 0x3f803f80u;
#else
    const u32 one2 = 0x3c003c00u;
#endif
    for (int i = threadIdx.x; i < ONES_BYTES / 16; i += THREADS)
      asm volatile("st.shared.v4.b32 [%0], {%1, %1, %1, %1};\n" ::"r"(s_x + i * 16), "r"(one2)
                   : "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(PRODUCER_REGS));
    if (threadIdx.x == 0) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)&a.q) : "memory");
      asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)&a.k) : "memory");
      asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)&a.v) : "memory");
      produce(a, bars, s_q, s_k, s_v, ring);
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(CONSUMER_REGS));
    consume(a.p, bars, s_q, s_k, s_v, s_x, ring);
  }
}
