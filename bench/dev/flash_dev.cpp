// flash_dev — development harness for templates/flash.cu (not part of the build).
//
// Builds each variant's source exactly as the generator does (config prelude +
// jsdpa_abi.h + common.cuh + flash.cu), compiles it with NVRTC to a cubin,
// loads it with the driver API, and
//   compile  DIR            NVRTC only (no GPU): writes DIR/<kernel>.cubin and the ptxas report
//   test     DIR [quick]    correctness against a float64 reference under the 2x rule
//   bench    DIR YAML       times the canonical workloads (events, warm-up, L2 flush, median)
// The schedule (work list longest-first) is built on the host here; the
// runtime's prep kernel builds the same on the device.
//
// Build: g++ -O2 -std=c++17 -I/usr/local/cuda/include flash_dev.cpp -o flash_dev
//          -L/usr/local/cuda/lib64 -lnvrtc -lcuda -lpthread
// (-DFLASH_DEV_NO_DRIVER for a compile-only binary on a machine without libcuda).
#include <cuda.h>
#include <nvrtc.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "../../templates/jsdpa_abi.h"
}

// ------------------------------------------------------------ variants

struct Variant {
  int arch = 90;
  bool arch_specific = true;
  bool bf16 = true;
  int d = 128;
  bool causal = false;
  int bm = 128, bn = 64, warps = 4, stages = 2;
  std::string name() const {
    char buf[160];
    snprintf(buf, sizeof buf, "jsdpa_flash_sm%d%s_%s_d%d_dv%d_%s_m%dn%dw%ds%d", arch,
             arch_specific ? "a" : "", bf16 ? "bf16" : "fp16", d, d, causal ? "causal" : "full", bm,
             bn, warps, stages);
    return buf;
  }
};

// The default tile per head dim (mirrors gen/variant.c's flash defaults).
static void default_tile(Variant& v) {
  if (v.d <= 128) {
    v.bm = 128, v.bn = 64, v.warps = 4, v.stages = 2;
  } else {
    v.bm = 64, v.bn = 64, v.warps = 4, v.stages = 1;
  }
}

// Tiles timed per head dim (block_m, block_n, warps, stages): the default first.
static std::map<int, std::vector<std::array<int, 4>>> bench_tiles() {
  return {
      {64, {{128, 64, 4, 2}, {64, 64, 4, 2}, {128, 64, 8, 2}, {128, 32, 4, 2}}},
      {128, {{128, 64, 4, 2}, {128, 32, 4, 2}, {64, 64, 4, 1}, {64, 64, 4, 2}}},
      {256, {{64, 64, 4, 1}, {128, 64, 8, 1}, {64, 32, 4, 2}}},
  };
}

// Every tile the benchmark times, as (d, block_m, block_n, warps, stages).
static std::vector<std::array<int, 5>> test_tiles() {
  std::vector<std::array<int, 5>> out;
  for (auto& dt : bench_tiles())
    for (auto& t : dt.second) out.push_back({dt.first, t[0], t[1], t[2], t[3]});
  return out;
}

static std::string read_file(const std::string& path, bool required = true) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (required) {
      fprintf(stderr, "cannot read %s\n", path.c_str());
      exit(2);
    }
    return "";
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

static std::string source_of(const Variant& v, const std::string& root) {
  std::ostringstream s;
  s << "/* flash_dev: " << v.name() << " */\n";
  s << "#define JSDPA_KERNEL_NAME " << v.name() << "\n";
  s << "#define JSDPA_FAMILY_FLASH 1\n";
  s << "#define JSDPA_ARCH " << v.arch << "\n";
  s << "#define JSDPA_ARCH_SPECIFIC " << (v.arch_specific ? 1 : 0) << "\n";
  s << (v.bf16 ? "#define JSDPA_DTYPE_BF16 1\n" : "#define JSDPA_DTYPE_FP16 1\n");
  s << "#define JSDPA_HEAD_DIM " << v.d << "\n#define JSDPA_HEAD_DIM_V " << v.d << "\n";
  s << "#define JSDPA_CAUSAL " << (v.causal ? 1 : 0) << "\n";
  s << "#define JSDPA_BLOCK_M " << v.bm << "\n#define JSDPA_BLOCK_N " << v.bn << "\n";
  s << "#define JSDPA_WARPS " << v.warps << "\n#define JSDPA_STAGES " << v.stages << "\n";
  s << read_file(root + "/templates/jsdpa_abi.h");
  s << read_file(root + "/templates/common.cuh", false);
  s << read_file(root + "/templates/flash.cu");
  return s.str();
}

// Compiles to a cubin; returns false with the log on error. `info` gets ptxas -v lines.
static bool nvrtc_compile(const Variant& v, const std::string& root, std::string* cubin,
                          std::string* info) {
  std::string src = source_of(v, root);
  nvrtcProgram prog;
  if (nvrtcCreateProgram(&prog, src.c_str(), (v.name() + ".cu").c_str(), 0, nullptr, nullptr) !=
      NVRTC_SUCCESS)
    return false;
  char arch[64];
  snprintf(arch, sizeof arch, "--gpu-architecture=sm_%d%s", v.arch, v.arch_specific ? "a" : "");
  const char* opts[] = {arch, "--std=c++17", "--ptxas-options=-v"};
  nvrtcResult r = nvrtcCompileProgram(prog, 3, opts);
  size_t log_size = 0;
  nvrtcGetProgramLogSize(prog, &log_size);
  std::string log(log_size, '\0');
  if (log_size) nvrtcGetProgramLog(prog, &log[0]);
  *info = log;
  if (r != NVRTC_SUCCESS) {
    nvrtcDestroyProgram(&prog);
    return false;
  }
  size_t n = 0;
  nvrtcGetCUBINSize(prog, &n);
  cubin->resize(n);
  nvrtcGetCUBIN(prog, &(*cubin)[0]);
  nvrtcDestroyProgram(&prog);
  return true;
}

// Short "regs N, spill S" summary of a ptxas report.
static std::string ptxas_summary(const std::string& info) {
  std::string out;
  std::istringstream in(info);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("registers") != std::string::npos || line.find("spill") != std::string::npos ||
        line.find("error") != std::string::npos || line.find("arning") != std::string::npos) {
      size_t p = line.find(": ");
      out += (p != std::string::npos && line.find("ptxas") == 0) ? line.substr(p + 2) : line;
      out += " | ";
    }
  }
  return out;
}

static std::string g_root = ".";

// ------------------------------------------------------------ host numerics

static uint16_t f2bf(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, 4);
  return x;
}
static uint16_t f2h(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t ax = u & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf
  if (ax < 0x38800000u) {                                    // subnormal half
    float f;
    memcpy(&f, &ax, 4);
    float scaled = f * 16777216.0f;  // 2^24: units of the smallest subnormal
    uint32_t q = (uint32_t)std::nearbyint(scaled);
    return (uint16_t)(sign | q);
  }
  uint32_t mant = ax & 0x7fffffu;
  int exp = (int)(ax >> 23) - 127 + 15;
  uint32_t h = ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return (uint16_t)(sign | h);
}
static float h2f(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp((float)mant, -24);
    if (sign) f = -f;
    return f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (mant << 13))
                         : (sign | ((exp - 15 + 127) << 23) | (mant << 13));
  memcpy(&f, &u, 4);
  return f;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
};

static void parallel_for(int n, const std::function<void(int)>& fn) {
  int threads = (int)std::max(1u, std::thread::hardware_concurrency());
  std::atomic<int> next(0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i; (i = next++) < n;) fn(i);
    });
  for (auto& th : pool) th.join();
}

#ifndef FLASH_DEV_NO_DRIVER

// ------------------------------------------------------------ driver helpers

#define CK(call)                                                                      \
  do {                                                                                \
    CUresult r_ = (call);                                                             \
    if (r_ != CUDA_SUCCESS) {                                                         \
      const char* s_ = nullptr;                                                       \
      cuGetErrorString(r_, &s_);                                                      \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, s_ ? s_ : "?"); \
      exit(3);                                                                        \
    }                                                                                 \
  } while (0)

struct Kernel {
  CUmodule mod = nullptr;
  CUfunction fn = nullptr;
  int threads = 0, smem = 0, bm = 0, bn = 0, grid = 0;
};

static CUdevice g_dev;
static int g_sms = 0;
static std::map<std::string, Kernel> g_kernels;
static std::string g_cubins;

static Kernel* get_kernel(const Variant& v) {
  auto it = g_kernels.find(v.name());
  if (it != g_kernels.end()) return &it->second;
  std::string cubin = read_file(g_cubins + "/" + v.name() + ".cubin", false), info;
  if (cubin.empty() && !nvrtc_compile(v, g_root, &cubin, &info)) {
    fprintf(stderr, "compile %s failed:\n%s\n", v.name().c_str(), info.c_str());
    return nullptr;
  }
  Kernel k;
  CK(cuModuleLoadData(&k.mod, cubin.data()));
  CK(cuModuleGetFunction(&k.fn, k.mod, v.name().c_str()));
  CUdeviceptr launch;
  size_t bytes;
  CK(cuModuleGetGlobal(&launch, &bytes, k.mod, "jsdpa_launch"));
  int shape[4];
  CK(cuMemcpyDtoH(shape, launch, sizeof shape));
  k.threads = shape[0], k.smem = shape[1], k.bm = shape[2], k.bn = shape[3];
  if (k.smem > 48 * 1024)
    CK(cuFuncSetAttribute(k.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, k.smem));
  int per_sm = 0;
  CK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.fn, k.threads, k.smem));
  k.grid = per_sm * g_sms;
  int regs = 0, local = 0;
  cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, k.fn);
  cuFuncGetAttribute(&local, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, k.fn);
  fprintf(stderr, "loaded %s: %d threads, %d B smem, %d regs, %d B local, %d blocks/SM\n",
          v.name().c_str(), k.threads, k.smem, regs, local, per_sm);
  if (per_sm == 0) return nullptr;
  return &(g_kernels[v.name()] = k);
}

static CUdeviceptr dalloc(size_t bytes) {
  CUdeviceptr p = 0;
  CK(cuMemAlloc(&p, bytes ? bytes : 16));
  return p;
}

// ------------------------------------------------------------ problems

struct Problem {
  bool bf16 = true;
  int d = 64, heads = 4, kv_heads = 4;
  bool causal = false;
  std::vector<int> lq, lk;
  // Strides in elements (token, head) per tensor; 0 = contiguous.
  long long q_ts = 0, q_hs = 0, k_ts = 0, k_hs = 0, v_ts = 0, v_hs = 0, o_ts = 0, o_hs = 0;
  bool packed_qkv = false;  // q, k, v interleaved in one buffer per token
  bool lse = true;
  double scale = NAN;
  int window_left = -1, window_right = -1;
  float softcap = 0.f;
};

// Offsets and the longest-first work list, built on the host.
struct Schedule {
  std::vector<int> qo, ko;
  std::vector<jsdpa_work_t> work;
};

// Work order: "cost" sorts (sequence, query tile) by key blocks visited, most
// first (what the prep kernel does); "seq" takes sequences longest first and
// each one's tiles costliest first, keeping a sequence's tiles together.
static bool g_order_seq = false;

static Schedule make_schedule(const Problem& pr, int bm, int bn) {
  Schedule s;
  int b = (int)pr.lq.size();
  s.qo.assign(b + 1, 0), s.ko.assign(b + 1, 0);
  for (int i = 0; i < b; ++i) s.qo[i + 1] = s.qo[i] + pr.lq[i], s.ko[i + 1] = s.ko[i] + pr.lk[i];
  std::vector<std::pair<int, jsdpa_work_t>> items;
  for (int i = 0; i < b; ++i) {
    int tiles = (pr.lq[i] + bm - 1) / bm;
    for (int m = 0; m < tiles; ++m) {
      long long keys = pr.lk[i];
      if (pr.causal) {
        long long last = std::min<long long>((long long)(m + 1) * bm, pr.lq[i]);
        keys = std::max<long long>(0, std::min<long long>(keys, last + pr.lk[i] - pr.lq[i]));
      }
      items.push_back({(int)((keys + bn - 1) / bn), jsdpa_work_t{i, m}});
    }
  }
  if (g_order_seq) {
    std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
      int la = pr.lq[a.second.batch], lb = pr.lq[b.second.batch];
      if (la != lb) return la > lb;
      if (a.second.batch != b.second.batch) return a.second.batch < b.second.batch;
      return a.first > b.first;
    });
  } else {
    std::stable_sort(items.begin(), items.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
  }
  for (auto& it : items) s.work.push_back(it.second);
  return s;
}

struct HostData {
  std::vector<uint16_t> qkv;  // packed: one buffer; else q | k | v concatenated
  size_t q_base = 0, k_base = 0, v_base = 0;
  long long q_ts, q_hs, k_ts, k_hs, v_ts, v_hs, o_ts, o_hs;
  size_t o_elems = 0;
  int total_q = 0, total_k = 0;
};

static const uint16_t POISON = 0xffff;  // NaN in both fp16 and bf16

// Fills q/k/v with N(0,1) values and every gap (padding) with NaN. `fast`
// (benchmarks: hundreds of millions of values) draws uniform [-2, 2) values
// from per-thread xorshift generators instead.
static HostData make_data(Problem& pr, Rng& rng, bool fast = false) {
  HostData h;
  for (int x : pr.lq) h.total_q += x;
  for (int x : pr.lk) h.total_k += x;
  int H = pr.heads, G = pr.kv_heads, d = pr.d;
  int dp = (d + 7) / 8 * 8;  // 16-byte aligned head slots
  if (pr.packed_qkv) {
    long long ts = (long long)(H + 2 * G) * dp;
    h.q_ts = h.k_ts = h.v_ts = ts;
    h.q_hs = h.k_hs = h.v_hs = dp;
    h.q_base = 0, h.k_base = (size_t)H * dp, h.v_base = (size_t)(H + G) * dp;
    h.qkv.assign((size_t)h.total_q * ts, POISON);
  } else {
    h.q_hs = pr.q_hs ? pr.q_hs : d, h.q_ts = pr.q_ts ? pr.q_ts : H * h.q_hs;
    h.k_hs = pr.k_hs ? pr.k_hs : d, h.k_ts = pr.k_ts ? pr.k_ts : G * h.k_hs;
    h.v_hs = pr.v_hs ? pr.v_hs : d, h.v_ts = pr.v_ts ? pr.v_ts : G * h.v_hs;
    size_t qn = (size_t)std::max(h.total_q, 1) * h.q_ts, kn = (size_t)std::max(h.total_k, 1) * h.k_ts;
    h.q_base = 0, h.k_base = qn, h.v_base = qn + kn;
    h.qkv.assign(qn + 2 * kn + 64, POISON);
  }
  h.o_hs = pr.o_hs ? pr.o_hs : d, h.o_ts = pr.o_ts ? pr.o_ts : H * h.o_hs;
  h.o_elems = (size_t)std::max(h.total_q, 1) * h.o_ts + 64;
  auto fill = [&](size_t base, long long ts, long long hs, int tokens, int heads) {
    if (fast) {
      uint64_t seed0 = rng.g();
      parallel_for(tokens, [&](int t) {
        uint64_t x = seed0 ^ (0x9e3779b97f4a7c15ull * (uint64_t)(t + 1));
        for (int hh = 0; hh < heads; ++hh)
          for (int e = 0; e < d; ++e) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            float f = (float)((x >> 40) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
            h.qkv[base + t * ts + hh * hs + e] = pr.bf16 ? f2bf(f) : f2h(f);
          }
      });
      return;
    }
    for (int t = 0; t < tokens; ++t)
      for (int hh = 0; hh < heads; ++hh)
        for (int e = 0; e < d; ++e) {
          float x = (float)rng.normal();
          h.qkv[base + t * ts + hh * hs + e] = pr.bf16 ? f2bf(x) : f2h(x);
        }
  };
  fill(h.q_base, h.q_ts, h.q_hs, h.total_q, H);
  fill(h.k_base, h.k_ts, h.k_hs, h.total_k, G);
  fill(h.v_base, h.v_ts, h.v_hs, h.total_k, G);
  return h;
}

static double elem(const Problem& pr, uint16_t x) { return pr.bf16 ? bf2f(x) : h2f(x); }
static double round_lp(const Problem& pr, double x) {
  float f = (float)x;
  return pr.bf16 ? bf2f(f2bf(f)) : h2f(f2h(f));
}

// float64 reference and the same-precision one (scores and P rounded to the
// dtype, fp32 accumulation, output rounded), per (sequence, head).
struct Reference {
  std::vector<double> o64, olp, lse64, lselp;
};

static Reference reference(const Problem& pr, const HostData& h, const Schedule& s) {
  Reference r;
  int H = pr.heads, G = pr.kv_heads, d = pr.d, B = (int)pr.lq.size();
  size_t n = (size_t)h.total_q * H * d;
  r.o64.assign(n, 0), r.olp.assign(n, 0), r.lse64.assign((size_t)h.total_q * H, 0);
  r.lselp = r.lse64;
  double scale = std::isnan(pr.scale) ? 1.0 / std::sqrt((double)d) : pr.scale;
  parallel_for(B * H, [&](int job) {
    int b = job / H, hh = job % H, g = hh / (H / G);
    int lq = pr.lq[b], lk = pr.lk[b];
    std::vector<double> sc(lk), sl(lk);
    for (int i = 0; i < lq; ++i) {
      int qt = s.qo[b] + i;
      const uint16_t* q = &h.qkv[h.q_base + qt * h.q_ts + hh * h.q_hs];
      double mx = -INFINITY, mxl = -INFINITY;
      int ip = i + lk - lq;
      for (int j = 0; j < lk; ++j) {
        bool vis = true;
        if (pr.causal && j > ip) vis = false;
        if (pr.window_right >= 0 && j > ip + pr.window_right) vis = false;
        if (pr.window_left >= 0 && j < ip - pr.window_left) vis = false;
        if (!vis) {
          sc[j] = sl[j] = -INFINITY;
          continue;
        }
        const uint16_t* k = &h.qkv[h.k_base + (size_t)(s.ko[b] + j) * h.k_ts + g * h.k_hs];
        double acc = 0;
        float accf = 0;
        for (int e = 0; e < d; ++e) {
          double a = elem(pr, q[e]) * elem(pr, k[e]);
          acc += a;
          accf += (float)a;
        }
        double x = acc * scale, xl = (double)accf * scale;
        if (pr.softcap > 0) {
          x = pr.softcap * std::tanh(x / pr.softcap);
          xl = pr.softcap * std::tanh(xl / pr.softcap);
        }
        sc[j] = x;
        sl[j] = round_lp(pr, xl);
        mx = std::max(mx, x), mxl = std::max(mxl, sl[j]);
      }
      double sum = 0, suml = 0;
      for (int j = 0; j < lk; ++j) {
        sc[j] = sc[j] == -INFINITY ? 0 : std::exp(sc[j] - mx);
        sl[j] = sl[j] == -INFINITY ? 0 : (double)(float)std::exp(sl[j] - mxl);
        sum += sc[j], suml += sl[j];
      }
      size_t lrow = (size_t)qt * H + hh;
      r.lse64[lrow] = sum > 0 ? mx + std::log(sum) : -INFINITY;
      r.lselp[lrow] = suml > 0 ? mxl + std::log(suml) : -INFINITY;
      double* o = &r.o64[((size_t)qt * H + hh) * d];
      double* ol = &r.olp[((size_t)qt * H + hh) * d];
      std::vector<double> acc(d, 0.0);
      std::vector<float> accl(d, 0.f);
      for (int j = 0; j < lk; ++j) {
        if (sc[j] == 0 && sl[j] == 0) continue;
        const uint16_t* v = &h.qkv[h.v_base + (size_t)(s.ko[b] + j) * h.v_ts + g * h.v_hs];
        double p = sum > 0 ? sc[j] / sum : 0;
        float pl = (float)round_lp(pr, suml > 0 ? sl[j] / suml : 0);
        for (int e = 0; e < d; ++e) {
          double ve = elem(pr, v[e]);
          acc[e] += p * ve;
          accl[e] += pl * (float)ve;
        }
      }
      for (int e = 0; e < d; ++e) o[e] = acc[e], ol[e] = round_lp(pr, accl[e]);
    }
  });
  return r;
}

// Everything a launch needs, on the device.
struct DeviceProblem {
  CUdeviceptr qkv = 0, o = 0, lse = 0, qo = 0, ko = 0, work = 0, sched = 0;
  jsdpa_params_t p;
  int units = 0;
};

// `data` (qkv, o, lse) is reused when given, so benchmarks upload the tensors once.
static DeviceProblem upload(const Problem& pr, const HostData& h, const Schedule& s,
                            const DeviceProblem* data = nullptr) {
  DeviceProblem dp;
  if (data) {
    dp.qkv = data->qkv, dp.o = data->o, dp.lse = data->lse;
  } else {
    dp.qkv = dalloc(h.qkv.size() * 2);
    CK(cuMemcpyHtoD(dp.qkv, h.qkv.data(), h.qkv.size() * 2));
    dp.o = dalloc(h.o_elems * 2);
    dp.lse = dalloc((size_t)std::max(h.total_q, 1) * pr.heads * 4);
  }
  dp.qo = dalloc(s.qo.size() * 4), dp.ko = dalloc(s.ko.size() * 4);
  CK(cuMemcpyHtoD(dp.qo, s.qo.data(), s.qo.size() * 4));
  CK(cuMemcpyHtoD(dp.ko, s.ko.data(), s.ko.size() * 4));
  dp.work = dalloc(std::max<size_t>(1, s.work.size()) * sizeof(jsdpa_work_t));
  if (!s.work.empty())
    CK(cuMemcpyHtoD(dp.work, s.work.data(), s.work.size() * sizeof(jsdpa_work_t)));
  jsdpa_schedule_t sc = {};
  sc.num_work = (int)s.work.size();
  dp.sched = dalloc(sizeof sc);
  CK(cuMemcpyHtoD(dp.sched, &sc, sizeof sc));
  jsdpa_params_t& p = dp.p;
  memset(&p, 0, sizeof p);
  p.q = (const void*)(dp.qkv + h.q_base * 2);
  p.k = (const void*)(dp.qkv + h.k_base * 2);
  p.v = (const void*)(dp.qkv + h.v_base * 2);
  p.o = (void*)dp.o;
  p.lse = pr.lse ? (float*)dp.lse : nullptr;
  p.q_token_stride = h.q_ts, p.q_head_stride = h.q_hs;
  p.k_token_stride = h.k_ts, p.k_head_stride = h.k_hs;
  p.v_token_stride = h.v_ts, p.v_head_stride = h.v_hs;
  p.o_token_stride = h.o_ts, p.o_head_stride = h.o_hs;
  p.q_offsets = (const int*)dp.qo, p.kv_offsets = (const int*)dp.ko;
  p.work = (const jsdpa_work_t*)dp.work;
  p.schedule = (jsdpa_schedule_t*)dp.sched;
  p.batch = (int)pr.lq.size(), p.heads = pr.heads, p.kv_heads = pr.kv_heads;
  p.total_q = h.total_q, p.total_kv = h.total_k, p.max_work = (int)s.work.size();
  p.head_dim = p.head_dim_v = pr.d;
  double scale = std::isnan(pr.scale) ? 1.0 / std::sqrt((double)pr.d) : pr.scale;
  p.scale = (float)scale, p.scale_log2 = (float)(scale * 1.4426950408889634);
  p.window_left = pr.window_left, p.window_right = pr.window_right, p.softcap = pr.softcap;
  dp.units = (int)s.work.size() * pr.heads;
  return dp;
}

static void release(DeviceProblem& dp, bool data = true) {
  for (CUdeviceptr* x : {&dp.qo, &dp.ko, &dp.work, &dp.sched, &dp.qkv, &dp.o, &dp.lse}) {
    if (!data && (x == &dp.qkv || x == &dp.o || x == &dp.lse)) continue;
    if (*x) cuMemFree(*x);
    *x = 0;
  }
}

static void launch(const Kernel& k, DeviceProblem& dp, CUstream st) {
  CK(cuMemsetD32Async(dp.sched + offsetof(jsdpa_schedule_t, tile_counter), 0, 1, st));
  int grid = std::max(1, std::min(k.grid, dp.units));
  void* args[] = {&dp.p};
  CK(cuLaunchKernel(k.fn, grid, 1, 1, k.threads, 1, 1, k.smem, st, args, nullptr));
}

// ------------------------------------------------------------ test

static int g_fail = 0, g_pass = 0;


static void run_case(const char* label, Problem pr, const Variant& v, Rng& rng) {
  Kernel* k = get_kernel(v);
  if (!k) {
    printf("FAIL %-40s %s: kernel unavailable\n", label, v.name().c_str());
    ++g_fail;
    return;
  }
  HostData h = make_data(pr, rng);
  Schedule s = make_schedule(pr, k->bm, k->bn);
  Reference ref = reference(pr, h, s);
  DeviceProblem dp = upload(pr, h, s);
  CK(cuMemsetD16(dp.o, POISON, h.o_elems));
  CK(cuMemsetD32(dp.lse, 0x7fc00000u, (size_t)std::max(h.total_q, 1) * pr.heads));
  launch(*k, dp, 0);
  CK(cuCtxSynchronize());
  std::vector<uint16_t> o(h.o_elems);
  std::vector<float> lse((size_t)std::max(h.total_q, 1) * pr.heads);
  CK(cuMemcpyDtoH(o.data(), dp.o, o.size() * 2));
  CK(cuMemcpyDtoH(lse.data(), dp.lse, lse.size() * 4));
  release(dp);

  int H = pr.heads, d = pr.d;
  double err = 0, err_lp = 0, lse_err = 0, lse_err_lp = 0, ref_max = 0;
  size_t worst = 0, first_nan = (size_t)-1;
  long long nan = 0, gaps = 0, lse_bad = 0;
  std::vector<char> touched(h.o_elems, 0);
  for (int t = 0; t < h.total_q; ++t)
    for (int hh = 0; hh < H; ++hh) {
      for (int e = 0; e < d; ++e) {
        size_t oi = (size_t)t * h.o_ts + (size_t)hh * h.o_hs + e;
        touched[oi] = 1;
        double x = elem(pr, o[oi]);
        size_t ri = ((size_t)t * H + hh) * d + e;
        if (std::isnan(x)) {
          if (!nan++) first_nan = ri;
          continue;
        }
        if (std::fabs(x - ref.o64[ri]) > err) worst = ri;
        err = std::max(err, std::fabs(x - ref.o64[ri]));
        err_lp = std::max(err_lp, std::fabs(ref.olp[ri] - ref.o64[ri]));
        ref_max = std::max(ref_max, std::fabs(ref.o64[ri]));
      }
      if (pr.lse) {
        size_t li = (size_t)t * H + hh;
        double a = lse[li], r64 = ref.lse64[li];
        if (std::isinf(r64) || std::isinf(a)) {
          if (!(std::isinf(a) && a < 0 && std::isinf(r64))) ++lse_bad;
        } else if (std::isnan(a)) {
          ++lse_bad;
        } else {
          lse_err = std::max(lse_err, std::fabs(a - r64));
          lse_err_lp = std::max(lse_err_lp, std::fabs(ref.lselp[li] - r64));
        }
      }
    }
  for (size_t i = 0; i < h.o_elems; ++i)
    if (!touched[i] && o[i] != POISON) ++gaps;
  bool ok = nan == 0 && gaps == 0 && lse_bad == 0 && err <= 2 * err_lp + 1e-4 &&
            lse_err <= 2 * lse_err_lp + 1e-3;
  printf("%s %-34s %-58s err %.2e (lp %.2e, |ref| %.2f) lse %.1e (lp %.1e) nan %lld gaps %lld "
         "lse_bad %lld\n",
         ok ? "ok  " : "FAIL", label, v.name().c_str(), err, err_lp, ref_max, lse_err, lse_err_lp,
         nan, gaps, lse_bad);
  if (!ok) {
    // Where it went wrong: (token, head, column), its sequence and row.
    for (size_t ri : {worst, first_nan}) {
      if (ri == (size_t)-1) continue;
      int t = (int)(ri / ((size_t)H * d)), hh = (int)(ri / d % H), e = (int)(ri % d);
      int b = (int)(std::upper_bound(s.qo.begin(), s.qo.end(), t) - s.qo.begin()) - 1;
      size_t oi = (size_t)t * h.o_ts + (size_t)hh * h.o_hs + e;
      printf("     at token %d head %d col %d (seq %d: lq %d lk %d row %d): got %g ref %g lp %g "
             "lse got %g ref %g\n",
             t, hh, e, b, pr.lq[b], pr.lk[b], t - s.qo[b], elem(pr, o[oi]), ref.o64[ri],
             ref.olp[ri], pr.lse ? lse[(size_t)t * H + hh] : 0.f, ref.lse64[(size_t)t * H + hh]);
    }
  }
  fflush(stdout);
  ok ? ++g_pass : ++g_fail;
}

// A few representative cases, for compute-sanitizer (slow) runs.
static int cmd_tiny(uint64_t seed) {
  Rng rng(seed);
  printf("seed %llu\n", (unsigned long long)seed);
  for (int d : {59, 64, 128, 256})
    for (int causal = 0; causal < 2; ++causal) {
      Problem pr;
      pr.d = d, pr.causal = causal, pr.heads = 2, pr.kv_heads = 1;
      for (auto x : std::vector<std::pair<int, int>>{{1, 147}, {113, 203}, {0, 0}, {7, 0}, {200, 100}})
        pr.lq.push_back(x.first), pr.lk.push_back(x.second);
      if (d % 8) pr.q_hs = pr.k_hs = pr.v_hs = pr.o_hs = (d + 7) / 8 * 8;
      Variant v;
      v.d = d, v.causal = causal;
      default_tile(v);
      run_case("tiny", pr, v, rng);
    }
  printf("tiny: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

static int cmd_test(bool quick, uint64_t seed) {
  Rng rng(seed);
  printf("seed %llu\n", (unsigned long long)seed);
  // FlashAttention's (Lq, Lk) sweep, in batches where every 5th sequence is empty
  // and one has keys but no... (7, 0): queries without keys.
  std::vector<std::pair<int, int>> small = {{1, 147},  {113, 203}, {128, 217}, {108, 256},
                                            {0, 0},    {256, 512}, {512, 256}, {7, 0},
                                            {64, 64},  {0, 5}};
  std::vector<std::pair<int, int>> large = {{1023, 1024}, {1024, 1023}, {2048, 2048}};
  std::vector<int> dims = {40, 59, 64, 72, 96, 111, 128, 160, 192, 224, 256};
  if (quick) dims = {59, 64, 128, 256};
  int kvh[3] = {6, 2, 1};
  int idx = 0;
  for (int d : dims)
    for (int causal = 0; causal < 2; ++causal)
      for (int bf = 0; bf < 2; ++bf) {
        Problem pr;
        pr.bf16 = bf, pr.d = d, pr.causal = causal, pr.heads = 6, pr.kv_heads = kvh[idx++ % 3];
        for (auto& x : small) pr.lq.push_back(x.first), pr.lk.push_back(x.second);
        Variant v;
        v.bf16 = bf, v.d = d, v.causal = causal;
        default_tile(v);
        // d with rows that are not 16-byte aligned: run on padded head slots.
        if (d % 8) pr.q_hs = pr.k_hs = pr.v_hs = pr.o_hs = (d + 7) / 8 * 8;
        char label[96];
        snprintf(label, sizeof label, "sweep d%d %s kvh%d%s", d, causal ? "causal" : "full",
                 pr.kv_heads, d % 8 ? " padded" : "");
        run_case(label, pr, v, rng);
      }
  // Long pairs, self and cross lengths, on the shipped head dims.
  for (int d : {64, 128, 256})
    for (int causal = 0; causal < 2; ++causal) {
      Problem pr;
      pr.bf16 = (d != 128), pr.d = d, pr.causal = causal, pr.heads = 6, pr.kv_heads = 2;
      for (auto& x : large) pr.lq.push_back(x.first), pr.lk.push_back(x.second);
      if (quick) pr.lq.pop_back(), pr.lk.pop_back();
      Variant v;
      v.bf16 = pr.bf16, v.d = d, v.causal = causal;
      default_tile(v);
      char label[96];
      snprintf(label, sizeof label, "large d%d %s", d, causal ? "causal" : "full");
      run_case(label, pr, v, rng);
    }
  // Strided: packed QKV (self-attention lengths) and padded strides with an odd-stride output.
  for (int d : {64, 128, 96}) {
    Problem pr;
    pr.bf16 = true, pr.d = d, pr.causal = d != 96, pr.heads = 6, pr.kv_heads = 2;
    pr.packed_qkv = true;
    for (int L : {300, 0, 77, 129, 1}) pr.lq.push_back(L), pr.lk.push_back(L);
    pr.o_hs = d + 8, pr.o_ts = 6 * (d + 8) + 16;
    Variant v;
    v.d = d, v.causal = pr.causal;
    default_tile(v);
    char label[96];
    snprintf(label, sizeof label, "packed-qkv d%d", d);
    run_case(label, pr, v, rng);
  }
  // Window, softcap, custom scale, no LSE.
  {
    Problem pr;
    pr.d = 128, pr.heads = 4, pr.kv_heads = 4, pr.window_left = 100, pr.window_right = 20;
    for (auto& x : small) pr.lq.push_back(x.first), pr.lk.push_back(x.second);
    Variant v;
    v.d = 128;
    default_tile(v);
    run_case("window 100/20", pr, v, rng);
    pr.causal = true, pr.window_right = -1, pr.window_left = 64;
    v.causal = true;
    run_case("causal window 64", pr, v, rng);
    pr.window_left = -1, pr.softcap = 5.0f, pr.scale = 0.3;
    run_case("causal softcap 5 scale .3", pr, v, rng);
    pr.softcap = 0, pr.lse = false, pr.bf16 = false;
    v.bf16 = false;
    run_case("causal fp16 no-lse", pr, v, rng);
  }
  // Non-default tiles that the benchmark times.
  std::vector<std::array<int, 5>> tiles = test_tiles();
  if (quick) tiles.resize(3);
  for (auto& t : tiles)
    for (int causal = 0; causal < 2; ++causal) {
      Problem pr;
      pr.d = t[0], pr.causal = causal, pr.heads = 3, pr.kv_heads = 1;
      for (auto& x : small) pr.lq.push_back(x.first), pr.lk.push_back(x.second);
      pr.lq.push_back(700), pr.lk.push_back(650);
      Variant v;
      v.d = t[0], v.causal = causal, v.bm = t[1], v.bn = t[2], v.warps = t[3], v.stages = t[4];
      run_case("tile", pr, v, rng);
    }
  printf("test: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

// ------------------------------------------------------------ bench


struct Workload {
  std::string name;
  std::vector<int> lengths;
};

// Just enough YAML for bench/workloads.yaml: "- name: X" then "lengths: [a, b, ...]".
static std::vector<Workload> read_workloads(const std::string& path) {
  std::string text = read_file(path);
  std::vector<Workload> out;
  size_t pos = 0;
  while ((pos = text.find("- name:", pos)) != std::string::npos) {
    Workload w;
    size_t e = text.find_first_of("#\n", pos + 7);
    std::string n = text.substr(pos + 7, e - pos - 7);
    n.erase(0, n.find_first_not_of(' '));
    n.erase(n.find_last_not_of(' ') + 1);
    w.name = n;
    size_t lb = text.find('[', text.find("lengths:", pos)), rb = text.find(']', lb);
    std::string list = text.substr(lb + 1, rb - lb - 1);
    for (char& c : list)
      if (c == ',' || c == '\n') c = ' ';
    std::istringstream in(list);
    for (int x; in >> x;) w.lengths.push_back(x);
    out.push_back(w);
    pos = rb;
  }
  return out;
}

static double flops_of(const std::vector<int>& lengths, int d, int heads, bool causal) {
  double f = 0;
  for (int L : lengths) f += causal ? 4.0 * d * heads * (double)L * (L + 1) / 2 : 4.0 * L * L * d * heads;
  return f;
}

static int cmd_bench(const std::string& yaml, const std::string& filter, const std::string& json) {
  std::vector<Workload> wls = read_workloads(yaml);
  struct Cfg {
    int d, heads;
  } cfgs[] = {{64, 32}, {128, 16}, {256, 8}};
  std::map<int, std::vector<std::array<int, 4>>> tiles = bench_tiles();
  CUdeviceptr flush = dalloc(256 << 20);
  CUstream st;
  CK(cuStreamCreate(&st, CU_STREAM_NON_BLOCKING));
  CUevent e0, e1;
  CK(cuEventCreate(&e0, CU_EVENT_DEFAULT));
  CK(cuEventCreate(&e1, CU_EVENT_DEFAULT));
  FILE* jf = json.empty() ? nullptr : fopen(json.c_str(), "w");
  if (jf) fprintf(jf, "[\n");
  bool first_json = true;
  printf("%-6s %-4s %-5s %-6s %-18s %-5s %9s %8s\n", "wl", "d", "dtype", "causal", "tile",
         "order", "ms", "TFLOP/s");
  Rng rng(1234);
  for (auto& wl : wls)
    for (auto& c : cfgs)
      for (int bf = 1; bf >= 0; --bf) {
        Problem base;
        base.bf16 = bf, base.d = c.d, base.heads = base.kv_heads = c.heads;
        base.lq = base.lk = wl.lengths;
        base.lse = true;
        HostData h = make_data(base, rng, true);
        Schedule s0 = make_schedule(base, 128, 64);
        DeviceProblem data = upload(base, h, s0);
        release(data, false);
        for (int causal = 0; causal < 2; ++causal) {
          Problem pr = base;
          pr.causal = causal;
          double fl = flops_of(wl.lengths, c.d, c.heads, causal);
          for (int order = 0; order < 2; ++order)
          for (auto& t : tiles[c.d]) {
            g_order_seq = order == 1;
            Variant v;
            v.bf16 = bf, v.d = c.d, v.causal = causal;
            v.bm = t[0], v.bn = t[1], v.warps = t[2], v.stages = t[3];
            if (!filter.empty() && v.name().find(filter) == std::string::npos) continue;
            if (!bf && &t != &tiles[c.d][0]) continue;  // fp16: default tile only
            Kernel* k = get_kernel(v);
            if (!k) continue;
            Schedule s = make_schedule(pr, k->bm, k->bn);
            DeviceProblem dp = upload(pr, h, s, &data);
            std::vector<float> ms;
            for (int rep = 0; rep < 3 + 15; ++rep) {
              CK(cuMemsetD8Async(flush, (unsigned char)rep, 256 << 20, st));
              CK(cuMemsetD32Async(dp.sched + offsetof(jsdpa_schedule_t, tile_counter), 0, 1, st));
              CK(cuEventRecord(e0, st));
              int grid = std::max(1, std::min(k->grid, dp.units));
              void* args[] = {&dp.p};
              CK(cuLaunchKernel(k->fn, grid, 1, 1, k->threads, 1, 1, k->smem, st, args, nullptr));
              CK(cuEventRecord(e1, st));
              CK(cuEventSynchronize(e1));
              float x;
              CK(cuEventElapsedTime(&x, e0, e1));
              if (rep >= 3) ms.push_back(x);
            }
            std::sort(ms.begin(), ms.end());
            double med = ms[ms.size() / 2];
            char tile[32];
            snprintf(tile, sizeof tile, "m%dn%dw%ds%d", v.bm, v.bn, v.warps, v.stages);
            printf("%-6s %-4d %-5s %-6s %-18s %-5s %9.3f %8.1f\n", wl.name.c_str(), c.d,
                   bf ? "bf16" : "fp16", causal ? "yes" : "no", tile, order ? "seq" : "cost", med,
                   fl / med / 1e9);
            fflush(stdout);
            if (jf) {
              fprintf(jf,
                      "%s{\"workload\":\"%s\",\"d\":%d,\"heads\":%d,\"dtype\":\"%s\",\"causal\":%s,"
                      "\"tile\":\"%s\",\"order\":\"%s\",\"ms\":%.4f,\"tflops\":%.2f}",
                      first_json ? "" : ",\n", wl.name.c_str(), c.d, c.heads, bf ? "bf16" : "fp16",
                      causal ? "true" : "false", tile, order ? "seq" : "cost", med, fl / med / 1e9);
              first_json = false;
            }
            release(dp, false);
          }
        }
        release(data);
      }
  if (jf) fprintf(jf, "\n]\n"), fclose(jf);
  return 0;
}

#endif  // FLASH_DEV_NO_DRIVER

// ------------------------------------------------------------ compile

// Every variant test and bench load, for prebuilding cubins (no GPU needed).
static std::vector<Variant> all_variants(int arch, bool arch_specific) {
  std::vector<Variant> out;
  auto add = [&](Variant v) {
    v.arch = arch, v.arch_specific = arch_specific;
    for (auto& x : out)
      if (x.name() == v.name()) return;
    out.push_back(v);
  };
  for (int d : {40, 59, 64, 72, 96, 111, 128, 160, 192, 224, 256})
    for (int c = 0; c < 2; ++c)
      for (int bf = 0; bf < 2; ++bf) {
        Variant v;
        v.d = d, v.causal = c, v.bf16 = bf;
        default_tile(v);
        add(v);
      }
  for (auto& dt : bench_tiles())
    for (auto& t : dt.second)
      for (int c = 0; c < 2; ++c)
        for (int bf = 0; bf < 2; ++bf) {
          Variant v;
          v.d = dt.first, v.causal = c, v.bf16 = bf;
          v.bm = t[0], v.bn = t[1], v.warps = t[2], v.stages = t[3];
          add(v);
        }
  for (auto& t : test_tiles())
    for (int c = 0; c < 2; ++c) {
      Variant v;
      v.d = t[0], v.causal = c, v.bm = t[1], v.bn = t[2], v.warps = t[3], v.stages = t[4];
      add(v);
    }
  return out;
}

static int cmd_compile(const std::string& dir, int arch, bool arch_specific) {
  std::vector<Variant> vs = all_variants(arch, arch_specific);
  std::vector<std::string> reports(vs.size());
  std::atomic<int> failed(0);
  parallel_for((int)vs.size(), [&](int i) {
    std::string cubin, info;
    if (!nvrtc_compile(vs[i], g_root, &cubin, &info)) {
      reports[i] = "COMPILE ERROR\n" + info;
      ++failed;
      return;
    }
    std::ofstream(dir + "/" + vs[i].name() + ".cubin", std::ios::binary) << cubin;
    reports[i] = ptxas_summary(info);
  });
  for (size_t i = 0; i < vs.size(); ++i) printf("%-60s %s\n", vs[i].name().c_str(), reports[i].c_str());
  printf("compile: %zu variants, %d failed\n", vs.size(), (int)failed);
  return failed ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: flash_dev compile DIR [sm_80|sm_90a]\n"
            "       flash_dev test DIR [quick] [seed]\n"
            "       flash_dev bench DIR WORKLOADS.yaml [filter] [json]\n"
            "(run from the repository root; JSDPA_ROOT overrides)\n");
    return 2;
  }
  if (getenv("JSDPA_ROOT")) g_root = getenv("JSDPA_ROOT");
  std::string cmd = argv[1], dir = argv[2];
  if (cmd == "compile") {
    std::string arch = argc > 3 ? argv[3] : "sm_90a";
    return cmd_compile(dir, atoi(arch.c_str() + 3), arch.back() == 'a');
  }
#ifndef FLASH_DEV_NO_DRIVER
  g_cubins = dir;
  CK(cuInit(0));
  CK(cuDeviceGet(&g_dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, g_dev));
  CK(cuCtxSetCurrent(ctx));
  CK(cuDeviceGetAttribute(&g_sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g_dev));
  char name[256];
  cuDeviceGetName(name, sizeof name, g_dev);
  printf("device: %s, %d SMs\n", name, g_sms);
  if (cmd == "test") {
    uint64_t seed = argc > 4 ? strtoull(argv[4], nullptr, 10) : (uint64_t)time(nullptr);
    if (argc > 3 && !strcmp(argv[3], "tiny")) return cmd_tiny(seed);
    bool quick = argc > 3 && !strcmp(argv[3], "quick");
    return cmd_test(quick, seed);
  }
  if (cmd == "bench" && argc > 3)
    return cmd_bench(argv[3], argc > 4 ? argv[4] : "", argc > 5 ? argv[5] : "");
#endif
  fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
