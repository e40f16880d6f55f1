// Host emulation of the generated math kernel (fp32 variants), so its logic —
// jagged rows, bottom-right causal alignment, sliding window, softcap, GQA,
// strides, empty sequences, LSE, the prep error flag — is checked on machines
// without a GPU. Each warp runs as 32 host threads; __shfl_xor_sync exchanges
// values through an array between two barriers, which is exactly the
// lockstep the kernel relies on (all lanes reach every shuffle together).
//
// Only fp32 variants: their loads and stores are plain floats, while the
// 16-bit conversions are PTX inline assembly that only the device compiles
// (those are covered by the GPU tests and by the PTX checks).
//
//   c++ -std=c++20 -pthread -DJSDPA_SOURCE='"kernel.cu"' emulate_math.cpp
//   ./a.out [seed]
//
// Compares against a float64 reference under the 2x rule: the kernel's error
// must be at most twice that of a plain fp32 implementation plus a floor.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>
#include <vector>

// ---- the CUDA surface the templates use, on the host
struct jsdpa_emu_dim3 {
  unsigned x = 0, y = 0, z = 0;
};
static thread_local jsdpa_emu_dim3 threadIdx, blockIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)

static inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
static inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
static inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}

static std::barrier<> emu_barrier(32); /* one warp runs at a time */
static float emu_lanes[32];
static inline float __shfl_xor_sync(unsigned, float x, int offset) {
  const int lane = threadIdx.x & 31;
  emu_barrier.arrive_and_wait();  // everyone has read the previous exchange
  emu_lanes[lane] = x;
  emu_barrier.arrive_and_wait();  // everyone has written this one
  return emu_lanes[lane ^ offset];
}

#include JSDPA_SOURCE

#define JSDPA_EMU_STR2(x) #x
#define JSDPA_EMU_STR(x) JSDPA_EMU_STR2(x)

#ifndef JSDPA_DTYPE_FP32
#error "the emulation runs fp32 variants only"
#endif

// ---- one random problem
struct problem {
  int batch, heads, kv_heads, total_q = 0, total_kv = 0;
  std::vector<int> q_off, kv_off;
  long long q_ts, q_hs, k_ts, k_hs, v_ts, v_hs, o_ts, o_hs;
  std::vector<float> q, k, v;
  float scale, softcap;
  int window_left, window_right;
};

static void run_kernel(const problem& pb, float* o, float* lse, int prep_error) {
  jsdpa_schedule_t schedule = {};
  schedule.error = prep_error;
  jsdpa_params_t p = {};
  p.q = pb.q.data();
  p.k = pb.k.data();
  p.v = pb.v.data();
  p.o = o;
  p.lse = lse;
  p.q_token_stride = pb.q_ts, p.q_head_stride = pb.q_hs;
  p.k_token_stride = pb.k_ts, p.k_head_stride = pb.k_hs;
  p.v_token_stride = pb.v_ts, p.v_head_stride = pb.v_hs;
  p.o_token_stride = pb.o_ts, p.o_head_stride = pb.o_hs;
  p.q_offsets = pb.q_off.data();
  p.kv_offsets = pb.kv_off.data();
  p.schedule = &schedule;
  p.batch = pb.batch;
  p.heads = pb.heads;
  p.kv_heads = pb.kv_heads;
  p.total_q = pb.total_q;
  p.total_kv = pb.total_kv;
  p.head_dim = JSDPA_HEAD_DIM;
  p.head_dim_v = JSDPA_HEAD_DIM_V;
  p.scale = pb.scale;
  p.scale_log2 = pb.scale * 1.4426950408889634f;
  p.window_left = pb.window_left;
  p.window_right = pb.window_right;
  p.softcap = pb.softcap;

  const int threads = jsdpa_launch[0];
  const long long rows = (long long)pb.total_q * pb.heads;
  const long long blocks = (rows + JSDPA_WARPS - 1) / JSDPA_WARPS;
  for (long long b = 0; b < blocks; ++b)
    for (int warp = 0; warp < threads / 32; ++warp) {
      std::vector<std::thread> lanes;
      for (int lane = 0; lane < 32; ++lane)
        lanes.emplace_back([&, b, warp, lane] {
          blockIdx.x = (unsigned)b;
          threadIdx.x = (unsigned)(warp * 32 + lane);
          JSDPA_KERNEL_NAME(p);
        });
      for (auto& t : lanes) t.join();
    }
}

// The reference, written independently of the kernel: every key is tested
// against the mask, softmax in two passes. T = double is the oracle, T =
// float the same-precision implementation the 2x rule compares with.
template <typename T>
static void reference(const problem& pb, std::vector<T>& o, std::vector<T>& lse) {
  const int D = JSDPA_HEAD_DIM, DV = JSDPA_HEAD_DIM_V;
  o.assign((size_t)pb.total_q * pb.heads * DV, 0);
  lse.assign((size_t)pb.total_q * pb.heads, -INFINITY);
  for (int b = 0; b < pb.batch; ++b) {
    const int lq = pb.q_off[b + 1] - pb.q_off[b], lk = pb.kv_off[b + 1] - pb.kv_off[b];
    for (int h = 0; h < pb.heads; ++h) {
      const int g = h / (pb.heads / pb.kv_heads);
      for (int i = 0; i < lq; ++i) {
        const int tq = pb.q_off[b] + i;
        std::vector<T> s(lk);
        std::vector<bool> seen(lk);
        T mx = -INFINITY;
        for (int j = 0; j < lk; ++j) {
          const long long shift = (long long)lk - lq;  // bottom-right alignment
          bool visible = true;
          if (JSDPA_CAUSAL && j > i + shift) visible = false;
          if (pb.window_left >= 0 && j < i + shift - pb.window_left) visible = false;
          if (pb.window_right >= 0 && j > i + shift + pb.window_right) visible = false;
          if (!visible) continue;
          const int tk = pb.kv_off[b] + j;
          T dot = 0;
          for (int d = 0; d < D; ++d)
            dot +=
                (T)pb.q[tq * pb.q_ts + h * pb.q_hs + d] * (T)pb.k[tk * pb.k_ts + g * pb.k_hs + d];
          T sc = dot * (T)pb.scale;
          if (pb.softcap > 0) sc = (T)pb.softcap * std::tanh(sc / (T)pb.softcap);
          s[j] = sc;
          seen[j] = true;
          mx = std::max(mx, sc);
        }
        if (mx == -INFINITY) continue;  // no visible key: zeros, -inf
        T sum = 0;
        for (int j = 0; j < lk; ++j)
          if (seen[j]) sum += std::exp(s[j] - mx);
        for (int d = 0; d < DV; ++d) {
          T acc = 0;
          for (int j = 0; j < lk; ++j)
            if (seen[j])
              acc += std::exp(s[j] - mx) / sum *
                     (T)pb.v[(pb.kv_off[b] + j) * pb.v_ts + g * pb.v_hs + d];
          o[((size_t)tq * pb.heads + h) * DV + d] = acc;
        }
        lse[(size_t)tq * pb.heads + h] = mx + std::log(sum);
      }
    }
  }
}

static problem make_problem(std::mt19937_64& rng, int trial) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  problem pb;
  pb.batch = uniform(1, 4);
  pb.kv_heads = uniform(1, 2);
  pb.heads = pb.kv_heads * uniform(1, 3);
  pb.q_off = {0};
  pb.kv_off = {0};
  for (int b = 0; b < pb.batch; ++b) {
    // Lengths 0..12, with q and kv lengths differing (cross attention), and
    // trial 0 forcing an empty query and an empty key sequence.
    int lq = uniform(0, 12), lk = uniform(0, 12);
    if (trial == 0 && b == 0) lk = 0;
    if (trial == 0 && b == pb.batch - 1) lq = 0;
    pb.q_off.push_back(pb.q_off.back() + lq);
    pb.kv_off.push_back(pb.kv_off.back() + lk);
  }
  pb.total_q = pb.q_off.back();
  pb.total_kv = pb.kv_off.back();
  if (pb.total_q == 0) {  // keep at least one row to check
    for (int b = 1; b <= pb.batch; ++b) pb.q_off[b] += 1;
    pb.total_q = pb.q_off.back();
  }
  // Padded, head-major or token-major layouts: strides the kernel must honor.
  const int D = JSDPA_HEAD_DIM, DV = JSDPA_HEAD_DIM_V;
  auto layout = [&](int tokens, int heads, int dim, long long& ts, long long& hs) {
    const int pad = uniform(0, 3);
    if (uniform(0, 1)) {
      hs = dim + pad;
      ts = heads * hs + uniform(0, 5);
      return (size_t)(tokens * ts + 1);
    }
    ts = dim + pad;
    hs = (long long)tokens * ts + uniform(0, 5);
    return (size_t)(heads * hs + 1);
  };
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& x, size_t n) {
    x.resize(n);
    for (auto& e : x) e = normal(rng);
  };
  fill(pb.q, layout(pb.total_q, pb.heads, D, pb.q_ts, pb.q_hs));
  fill(pb.k, layout(pb.total_kv, pb.kv_heads, D, pb.k_ts, pb.k_hs));
  fill(pb.v, layout(pb.total_kv, pb.kv_heads, DV, pb.v_ts, pb.v_hs));
  pb.o_hs = DV;
  pb.o_ts = (long long)pb.heads * DV;
  pb.scale = (float)(1.0 / std::sqrt((double)D)) * (uniform(0, 1) ? 1.0f : 2.5f);
  pb.softcap = uniform(0, 1) ? 0.0f : 5.0f;
  pb.window_left = uniform(0, 1) ? -1 : uniform(0, 4);
  pb.window_right = uniform(0, 1) ? -1 : uniform(0, 4);
  return pb;
}

int main(int argc, char** argv) {
  const unsigned long long seed =
      argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (unsigned long long)std::time(nullptr);
  std::printf("emulate_math: %s seed %llu\n", JSDPA_EMU_STR(JSDPA_KERNEL_NAME), seed);
  std::mt19937_64 rng(seed);
  int failures = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const problem pb = make_problem(rng, trial);
    const size_t n_out = (size_t)pb.total_q * pb.heads * JSDPA_HEAD_DIM_V;
    std::vector<float> o(n_out, NAN), lse((size_t)pb.total_q * pb.heads, NAN);
    run_kernel(pb, o.data(), lse.data(), 0);
    std::vector<double> o64, lse64;
    std::vector<float> o32, lse32;
    reference(pb, o64, lse64);
    reference(pb, o32, lse32);
    double err = 0, err32 = 0, lse_err = 0, lse_err32 = 0;
    bool bad = false;
    for (size_t i = 0; i < n_out; ++i) {
      if (!std::isfinite(o[i])) bad = true;  // NaN: unwritten (poisoned) or broken
      err = std::max(err, std::fabs(o[i] - o64[i]));
      err32 = std::max(err32, std::fabs(o32[i] - o64[i]));
    }
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(lse64[i])) {
        if (!(std::isinf(lse[i]) && lse[i] < 0)) bad = true;  // empty row: exactly -inf
        continue;
      }
      lse_err = std::max(lse_err, std::fabs(lse[i] - lse64[i]));
      lse_err32 = std::max(lse_err32, std::fabs(lse32[i] - lse64[i]));
    }
    const double floor = 1e-5;
    const bool ok = !bad && err <= 2 * err32 + floor && lse_err <= 2 * lse_err32 + floor;
    std::printf(
        "trial %d: batch %d heads %d/%d rows %d window %d/%d softcap %g: out err %.3g (fp32 "
        "ref %.3g), lse err %.3g (fp32 ref %.3g) %s\n",
        trial, pb.batch, pb.heads, pb.kv_heads, pb.total_q, pb.window_left, pb.window_right,
        pb.softcap, err, err32, lse_err, lse_err32, ok ? "ok" : "FAIL");
    failures += !ok;

    // Malformed offsets reported by prep: nothing may be written.
    if (trial != 0) continue;
    std::vector<float> untouched(n_out, NAN), untouched_lse(lse.size(), NAN);
    run_kernel(pb, untouched.data(), untouched_lse.data(), JSDPA_PREP_ERR_Q_END);
    for (float x : untouched) failures += !std::isnan(x);
    for (float x : untouched_lse) failures += !std::isnan(x);
  }
  std::printf("emulate_math: %s\n", failures ? "FAILED" : "all trials ok");
  return failures ? 1 : 0;
}
