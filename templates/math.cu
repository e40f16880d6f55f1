/*
 * math.cu — the `math` family: a plain, readable attention kernel that runs
 * everything the API accepts (any dtype, any head dims up to 1024, GQA, any
 * strides, sliding window, softcap). It is the GPU fallback and the reference
 * the fast families are debugged against, so clarity beats speed here.
 *
 * Mapping: one warp computes one query row (one token of one head), and a block
 * holds JSDPA_WARPS such rows. The host launches
 *     grid.x = ceil(total_q * heads / JSDPA_WARPS),  block.x = JSDPA_WARPS * 32
 * with no dynamic shared memory; there is no cross-warp cooperation at all.
 * Within a warp, lane L owns dimensions L, L + 32, L + 64, ... of q and of the
 * output, so every load of a K or V row is coalesced across the warp, and a
 * q.k dot product is a per-lane partial sum plus one warp reduction.
 *
 * Softmax is computed online (one pass over the keys, Milakov & Gimelshein's
 * running max and running sum) in fp32, in the exp2 domain: scores are scaled
 * by p.scale_log2 = scale * log2(e) so each exponential is one exp2.
 *
 * Reads from the prelude: JSDPA_KERNEL_NAME, JSDPA_HEAD_DIM, JSDPA_HEAD_DIM_V,
 * JSDPA_CAUSAL, JSDPA_WARPS (== JSDPA_BLOCK_M), JSDPA_DTYPE_*.
 */

/* The launch shape, read by the runtime when it loads the module:
 * {threads per block, dynamic shared memory bytes, rows per work unit, keys per
 * step}. A row kernel takes no work schedule, so its tile is 1 x 1. */
extern "C" __device__ const int jsdpa_launch[4] = {JSDPA_WARPS * 32, 0, 1, 1};

/* Register arrays sized for the head dims: lane L holds dims L + 32 * t. */
#define JSDPA_QK_PER_LANE JSDPA_DIV_UP(JSDPA_HEAD_DIM, 32)
#define JSDPA_V_PER_LANE JSDPA_DIV_UP(JSDPA_HEAD_DIM_V, 32)

extern "C" __global__ void __launch_bounds__(JSDPA_WARPS * 32)
    JSDPA_KERNEL_NAME(const jsdpa_params_t p) {
  /* Malformed offsets (found by the prep kernel, on the device, without a host
   * sync) would make every index below meaningless: write nothing. */
  if (p.schedule->error != 0) return;

  const int lane = threadIdx.x & 31;
  const long long row = (long long)blockIdx.x * JSDPA_WARPS + (threadIdx.x >> 5);
  if (row >= (long long)p.total_q * p.heads) return; /* whole warps leave together */

  /* Rows are numbered head-major, so the warps of one block work on
   * neighbouring tokens of the same head and read the same K/V rows, which
   * then come from L1/L2 instead of memory. */
  const int head = (int)(row / p.total_q);
  const int token = (int)(row - (long long)head * p.total_q);
  /* GQA/MQA without copies: consecutive groups of heads / kv_heads query
   * heads share one kv head. */
  const int kv_head = head / (p.heads / p.kv_heads);

  const int b = jsdpa_find_sequence(p.q_offsets, p.batch, token);
  const int q_start = p.q_offsets[b];
  const int q_len = p.q_offsets[b + 1] - q_start;
  const int kv_start = p.kv_offsets[b];
  const int kv_len = p.kv_offsets[b + 1] - kv_start;
  const int i = token - q_start;

  /* The visible keys form one interval [j_begin, j_end). Masks are aligned
   * bottom-right (FlashAttention >= 2.1): the last query row lines up with the
   * last key, so row i's own position among the keys is i + kv_len - q_len.
   * When q_len > kv_len the first rows see no key at all under causal. */
  const long long diag = (long long)i + kv_len - q_len;
  long long j_begin = 0, j_end = kv_len;
  if (JSDPA_CAUSAL) j_end = jsdpa_min_ll(j_end, diag + 1);
  if (p.window_left >= 0) j_begin = jsdpa_max_ll(j_begin, diag - p.window_left);
  if (p.window_right >= 0) j_end = jsdpa_min_ll(j_end, diag + p.window_right + 1);

  const long long q_row = (long long)token * p.q_token_stride + (long long)head * p.q_head_stride;
  float q[JSDPA_QK_PER_LANE];
#pragma unroll
  for (int t = 0; t < JSDPA_QK_PER_LANE; ++t) {
    const int d = lane + 32 * t;
    q[t] = d < JSDPA_HEAD_DIM ? jsdpa_load(p.q, q_row + d) : 0.0f;
  }

  /* Online softmax state, identical in every lane (see jsdpa_warp_sum):
   * m = the largest score so far (log2 domain), l = sum of exp2(score - m),
   * acc = sum of exp2(score - m) * v for this lane's output dims. */
  float m = JSDPA_NEG_INFINITY;
  float l = 0.0f;
  float acc[JSDPA_V_PER_LANE];
#pragma unroll
  for (int t = 0; t < JSDPA_V_PER_LANE; ++t) acc[t] = 0.0f;

  const bool softcap = p.softcap > 0.0f;
  for (long long j = j_begin; j < j_end; ++j) {
    const long long k_row =
        (kv_start + j) * p.k_token_stride + (long long)kv_head * p.k_head_stride;
    float dot = 0.0f;
#pragma unroll
    for (int t = 0; t < JSDPA_QK_PER_LANE; ++t) {
      const int d = lane + 32 * t;
      if (d < JSDPA_HEAD_DIM) dot += q[t] * jsdpa_load(p.k, k_row + d);
    }
    dot = jsdpa_warp_sum(dot);

    /* Softcap bends the scaled score (s -> c * tanh(s / c)) before anything
     * else sees it; masking needs no -inf here because masked keys are simply
     * outside [j_begin, j_end). */
    const float score =
        softcap ? p.softcap * tanhf(dot * p.scale / p.softcap) * JSDPA_LOG2E : dot * p.scale_log2;

    /* Rescale what was accumulated under the old maximum. On the first key
     * m is -inf and the factor exp2(-inf) = 0 clears the (zero) state. */
    const float m_new = fmaxf(m, score);
    const float correction = exp2f(m - m_new);
    const float weight = exp2f(score - m_new);
    l = l * correction + weight;
    const long long v_row =
        (kv_start + j) * p.v_token_stride + (long long)kv_head * p.v_head_stride;
#pragma unroll
    for (int t = 0; t < JSDPA_V_PER_LANE; ++t) {
      const int d = lane + 32 * t;
      const float v = d < JSDPA_HEAD_DIM_V ? jsdpa_load(p.v, v_row + d) : 0.0f;
      acc[t] = acc[t] * correction + weight * v;
    }
    m = m_new;
  }

  /* A row that sees no key (empty key sequence, or masked out entirely) has
   * l == 0: its output is 0 and its log-sum-exp is -inf, not NaN. */
  const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
  const long long o_row = (long long)token * p.o_token_stride + (long long)head * p.o_head_stride;
#pragma unroll
  for (int t = 0; t < JSDPA_V_PER_LANE; ++t) {
    const int d = lane + 32 * t;
    if (d < JSDPA_HEAD_DIM_V) jsdpa_store(p.o, o_row + d, acc[t] * inv_l);
  }
  /* LSE in natural log of the scaled scores: ln(sum exp(s)) = (m + log2(l)) * ln 2. */
  if (p.lse && lane == 0)
    p.lse[(long long)token * p.heads + head] =
        l > 0.0f ? (m + log2f(l)) * JSDPA_LN2 : JSDPA_NEG_INFINITY;
}
