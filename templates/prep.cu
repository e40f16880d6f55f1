/*
 * prep.cu — the jagged preprocessing kernel, run once per call before the
 * attention kernel, on the call's stream (so the host never waits for it).
 *
 * One thread block of JSDPA_PREP_THREADS threads:
 *   1. converts the caller's offsets (int32 or int64) to int32 and checks them
 *      (start 0, non-decreasing, last == total); on failure it records the
 *      error in the schedule and (the first one) in the context's sticky
 *      word and stops, and the attention kernels, seeing schedule->error,
 *      write nothing;
 *   2. finds the longest q and kv sequence;
 *   3. writes the (sequence, query tile) work list longest-first, by a
 *      counting sort on each sequence's cost (the key blocks its most
 *      expensive tile visits): a histogram in shared memory, a scan over its
 *      buckets from the most expensive down, and a scatter that gives each
 *      sequence one run of slots, its tiles most expensive first (the order
 *      of sequences within a bucket varies).
 *
 * Why sequences and not tiles: the tiles of one (sequence, head) read the
 * same keys and values, and the persistent kernels take units in list order,
 * so adjacent tiles run at the same time and the second read of K/V hits L2.
 * Sorting by tile cost split a causal sequence's tiles over several buckets:
 * on the short workload (~140-token sequences, d 256) the sm90 kernel read
 * 1.32 GB from DRAM against torch FA2's 0.89 (ncu, H100, 2026-11-25). The
 * tail stays short: the last units are the cheapest tiles of the shortest
 * sequences.
 *
 * The ABI (jsdpa_abi.h) is prepended by the generator; nothing is #included.
 */

#define JSDPA_PREP_THREADS 1024
#define JSDPA_PREP_WARPS (JSDPA_PREP_THREADS / 32)
/* Cost buckets, one per thread for the scan; larger costs are scaled down
 * (the order stays monotone, only coarser). */
#define JSDPA_PREP_BUCKETS JSDPA_PREP_THREADS
#define JSDPA_PREP_INT_MAX 0x7fffffff

static __device__ __forceinline__ long long jsdpa_prep_load(const void* p, int is64, int i) {
  return is64 ? ((const long long*)p)[i] : (long long)((const int*)p)[i];
}

/* Converts one offsets array; records the first bad index of each error kind. */
static __device__ void jsdpa_prep_convert(const void* in, int is64, int* out, int batch, int total,
                                          int* bad) {
  for (int i = threadIdx.x; i <= batch; i += blockDim.x) {
    long long value = jsdpa_prep_load(in, is64, i);
    if (i == 0 && value != 0) atomicMin(&bad[0], 0);
    if (i == batch && value != total) atomicMin(&bad[2], batch);
    if (i > 0 && jsdpa_prep_load(in, is64, i - 1) > value) atomicMin(&bad[1], i);
    /* Out-of-range values are reported as a decrease at their index: with a
     * valid start and end, they can only come from one. Checking the 64-bit
     * value also stops a huge int64 from wrapping into a plausible int32. */
    if (value < 0 || value > total) {
      atomicMin(&bad[1], i);
      value = 0;
    }
    out[i] = (int)value;
  }
}

/* The key blocks a query tile visits: all of them, or with causal masking
 * (bottom-right aligned: row r sees keys j <= r + lk - lq) only the visible
 * ones. Empty key sequences and fully masked tiles cost 0: they only write
 * zeros and -inf, and go last. */
static __device__ __forceinline__ int jsdpa_prep_tile_cost(int lq, int lk, int m_block,
                                                           const jsdpa_prep_params_t& p) {
  long long keys = lk;
  if (p.causal) {
    long long last_row = (long long)(m_block + 1) * p.block_m;
    if (last_row > lq) last_row = lq;
    keys = last_row + lk - lq;
    if (keys < 0) keys = 0;
    if (keys > lk) keys = lk;
  }
  return (int)((keys + p.block_n - 1) / p.block_n);
}

static __device__ __forceinline__ int jsdpa_prep_bucket(int cost, int max_cost) {
  if (max_cost < JSDPA_PREP_BUCKETS) return cost;
  return (int)((long long)cost * (JSDPA_PREP_BUCKETS - 1) / max_cost);
}

/* Exclusive scan of v over the block, in thread order (warp shuffles, then one
 * warp over the per-warp totals). Every thread of the block must call it. */
static __device__ int jsdpa_prep_block_exclusive_scan(int v, int* warp_sums) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int inclusive = v;
  for (int d = 1; d < 32; d <<= 1) {
    int n = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += n;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int s = lane < JSDPA_PREP_WARPS ? warp_sums[lane] : 0;
    for (int d = 1; d < 32; d <<= 1) {
      int n = __shfl_up_sync(0xffffffffu, s, d);
      if (lane >= d) s += n;
    }
    if (lane < JSDPA_PREP_WARPS) warp_sums[lane] = s;
  }
  __syncthreads();
  return inclusive - v + (warp > 0 ? warp_sums[warp - 1] : 0);
}

/* The launch shape, read by the runtime as for the attention templates. */
extern "C" __device__ const int jsdpa_launch[4] = {JSDPA_PREP_THREADS, 0, 1, 1};

extern "C" __global__ void __launch_bounds__(JSDPA_PREP_THREADS)
    jsdpa_prep(const jsdpa_prep_params_t p) {
  __shared__ int bad[6]; /* first bad index per JSDPA_PREP_ERR_* - 1 */
  __shared__ int error, bad_index, max_q, max_kv, num_work;
  __shared__ int hist[JSDPA_PREP_BUCKETS];
  __shared__ int warp_sums[JSDPA_PREP_WARPS];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x < 6) bad[threadIdx.x] = JSDPA_PREP_INT_MAX;
  if (threadIdx.x == 0) max_q = max_kv = num_work = 0;
  for (int i = threadIdx.x; i < JSDPA_PREP_BUCKETS; i += blockDim.x) hist[i] = 0;
  __syncthreads();

  jsdpa_prep_convert(p.q_offsets_in, p.q_offsets_is64, p.q_offsets_out, p.batch, p.total_q, bad);
  jsdpa_prep_convert(p.kv_offsets_in, p.kv_offsets_is64, p.kv_offsets_out, p.batch, p.total_kv,
                     bad + 3);
  __syncthreads();

  if (threadIdx.x == 0) {
    error = 0;
    bad_index = -1;
    for (int e = 0; e < 6 && !error; ++e)
      if (bad[e] != JSDPA_PREP_INT_MAX) {
        error = JSDPA_PREP_ERR_Q_START + e;
        bad_index = bad[e];
      }
  }
  __syncthreads();

  /* Lengths, maxima and the number of tiles; the converted offsets written
   * above by other threads are visible after the barrier. */
  if (!error) {
    int local_q = 0, local_kv = 0, local_tiles = 0;
    for (int b = threadIdx.x; b < p.batch; b += blockDim.x) {
      int lq = p.q_offsets_out[b + 1] - p.q_offsets_out[b];
      int lk = p.kv_offsets_out[b + 1] - p.kv_offsets_out[b];
      local_q = max(local_q, lq);
      local_kv = max(local_kv, lk);
      local_tiles += (lq + p.block_m - 1) / p.block_m;
    }
    atomicMax(&max_q, local_q);
    atomicMax(&max_kv, local_kv);
    atomicAdd(&num_work, local_tiles);
  }
  __syncthreads();
  if (threadIdx.x == 0 && !error && num_work > p.max_work) {
    /* Cannot happen for offsets that passed the checks above (the host's
     * bound is floor(total_q / block_m) + batch); kept as a guard so a bad
     * bound fails loudly instead of writing past work[]. */
    error = JSDPA_PREP_ERR_Q_END;
    bad_index = p.batch;
  }
  __syncthreads();

  if (error) {
    if (threadIdx.x == 0) {
      p.schedule->num_work = 0;
      p.schedule->max_q_len = 0;
      p.schedule->max_kv_len = 0;
      p.schedule->tile_counter = 0;
      p.schedule->error = error;
      p.schedule->bad_index = bad_index;
      /* The first error wins: the word keeps one readable JSDPA_PREP_ERR_* code. */
      atomicCAS(p.sticky_error, 0, error);
    }
    return;
  }

  const int max_cost = max(1, (max_kv + p.block_n - 1) / p.block_n);

  /* A thread per sequence: its tiles go into the bucket of its most
   * expensive one, the last (bottom-right causal: the last rows see the most
   * keys). */
  for (int b = threadIdx.x; b < p.batch; b += blockDim.x) {
    int lq = p.q_offsets_out[b + 1] - p.q_offsets_out[b];
    int lk = p.kv_offsets_out[b + 1] - p.kv_offsets_out[b];
    int tiles = (lq + p.block_m - 1) / p.block_m;
    if (tiles > 0)
      atomicAdd(&hist[jsdpa_prep_bucket(jsdpa_prep_tile_cost(lq, lk, tiles - 1, p), max_cost)],
                tiles);
  }
  __syncthreads();

  /* Thread t owns bucket BUCKETS-1-t, so the scan in thread order puts the
   * most expensive bucket first. */
  {
    int bucket = JSDPA_PREP_BUCKETS - 1 - (int)threadIdx.x;
    hist[bucket] = jsdpa_prep_block_exclusive_scan(hist[bucket], warp_sums);
  }
  __syncthreads();

  /* A warp per sequence: lane 0 reserves the sequence's run of slots, the
   * lanes write it, the last (most expensive) tile first. */
  for (int b = warp; b < p.batch; b += JSDPA_PREP_WARPS) {
    int lq = p.q_offsets_out[b + 1] - p.q_offsets_out[b];
    int lk = p.kv_offsets_out[b + 1] - p.kv_offsets_out[b];
    int tiles = (lq + p.block_m - 1) / p.block_m;
    if (tiles == 0) continue;
    int first = 0;
    if (lane == 0)
      first = atomicAdd(
          &hist[jsdpa_prep_bucket(jsdpa_prep_tile_cost(lq, lk, tiles - 1, p), max_cost)], tiles);
    first = __shfl_sync(0xffffffffu, first, 0);
    for (int i = lane; i < tiles; i += 32) {
      jsdpa_work_t w;
      w.batch = b;
      w.m_block = tiles - 1 - i;
      p.work[first + i] = w;
    }
  }

  if (threadIdx.x == 0) {
    p.schedule->num_work = num_work;
    p.schedule->max_q_len = max_q;
    p.schedule->max_kv_len = max_kv;
    p.schedule->tile_counter = 0;
    p.schedule->error = 0;
    p.schedule->bad_index = -1;
  }
}
