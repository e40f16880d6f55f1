/*
 * toolutil.h — what the benchmark (jsdpa-bench) and the autotuner (jsdpa-tune)
 * share, so both time the same batches the same way:
 *   workloads  bench/workloads.yaml (libyaml) or a list of lengths -> a plan
 *   data       random inputs (threaded, reproducible from a seed), device batches
 *   timing     CUDA events around each call on a stream, after a 256 MiB write
 *              that flushes the L2; warm-up calls, then the median
 *   oracle     the float64 cpu check of a candidate's output under the 2x rule
 *              (toolutil_oracle_*, tools/oracle.c)
 * Errors that leave a tool nothing to do print "<tool>: ..." and exit(1).
 */
#ifndef JSDPA_TOOLS_TOOLUTIL_H_
#define JSDPA_TOOLS_TOOLUTIL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_dl.h"
#include "element.h"
#include "jsdpa.h"

#define TOOLUTIL_MAX_WORKLOADS 16
#define TOOLUTIL_MAX_HEAD_CONFIGS 8
#define TOOLUTIL_FLUSH_BYTES ((size_t)256 << 20)

/* The name in messages ("jsdpa-bench"); set once by main. */
void toolutil_init(const char* tool_name);
void* toolutil_xmalloc(size_t bytes);
void* toolutil_xcalloc(size_t count, size_t size);
void* toolutil_xrealloc(void* p, size_t bytes);
bool toolutil_parse_i64(const char* text, int64_t lo, int64_t hi, int64_t* out);
bool toolutil_parse_dtype(const char* text, jsdpa_dtype_t* out); /* fp16, bf16, fp32 */
void toolutil_die_status(const char* what, jsdpa_status_t status);

/* ------------------------------------------------------------ workloads */

typedef struct toolutil_workload_s {
  char name[64];
  int64_t* lengths;
  int count;
} toolutil_workload_t;

typedef struct toolutil_plan_s {
  toolutil_workload_t workloads[TOOLUTIL_MAX_WORKLOADS];
  int num_workloads;
  int64_t head_dims[TOOLUTIL_MAX_HEAD_CONFIGS], heads[TOOLUTIL_MAX_HEAD_CONFIGS];
  int num_heads;
  jsdpa_dtype_t dtypes[3];
  int num_dtypes;
  bool causal[2];
  int num_causal;
} toolutil_plan_t;

/* Reads a workloads file (bench/workloads.yaml's format); 0 or 1 after a
 * message naming the file (and line and column for YAML errors). */
int toolutil_read_plan(const char* file, toolutil_plan_t* plan);
/* Lengths separated by commas or white space, '#' comments to the end of the
 * line, into a workload called `name`; 0 or 2 after a message naming `what`. */
int toolutil_parse_lengths(const char* text, const char* what, const char* name,
                           toolutil_workload_t* out);
void toolutil_plan_free(toolutil_plan_t* plan);

/* Attention FLOPs of a self-attention batch: 4*L*L*d*H per sequence, half of
 * the pairs (L*(L+1)/2) when causal. */
double toolutil_flops(const int64_t* lengths, int count, int64_t head_dim, int64_t heads,
                      bool causal);

/* ------------------------------------------------------------ device */

/* The driver table, device 0's primary context current on this thread; exits
 * with the reason when there is no GPU. */
const jsdpa_cuda_driver_t* toolutil_gpu_open(char* name, size_t capacity);
/* Releases what toolutil_gpu_open retained. */
void toolutil_gpu_close(void);
/* A driver call that must succeed (exits with the call's text otherwise). */
void toolutil_cu_check(CUresult result, const char* what);
#define TOOLUTIL_CU(cu, call) toolutil_cu_check((cu)->call, #call)

/* Uniform values in [-2, 2) rounded to dtype (fp16 / bf16 / fp32). Chunks get their own streams
 * derived from `seed`, so the bytes depend on the seed only, not on the number of threads. */
void toolutil_fill_random(void* data, jsdpa_dtype_t dtype, size_t count, uint64_t seed);

/* A self-attention batch on the device: random q/k/v, an output buffer, int32
 * offsets on the device. With keep_host the host q/k/v stay for a check
 * (toolutil_batch_free_host drops them). */
typedef struct toolutil_batch_s {
  const char* name;
  const int64_t* lengths;
  int count;
  int64_t head_dim, heads, kv_heads, total;
  jsdpa_dtype_t dtype;
  int64_t* offsets;       /* host, [count + 1] */
  CUdeviceptr buffers[5]; /* q, k, v, out, offsets */
  size_t out_bytes;
  jsdpa_jagged_t q, k, v, out;
  void* host[3]; /* q, k, v (when kept) */
} toolutil_batch_t;

void toolutil_batch_create(toolutil_batch_t* t, const jsdpa_cuda_driver_t* cu, uint64_t seed,
                           bool keep_host);
void toolutil_batch_free_host(toolutil_batch_t* t);
void toolutil_batch_free(toolutil_batch_t* t, const jsdpa_cuda_driver_t* cu);

/* ------------------------------------------------------------ timing */

typedef struct toolutil_timer_s {
  const jsdpa_cuda_driver_t* cu;
  CUstream stream;
  CUdeviceptr flush;
  CUevent e0, e1;
} toolutil_timer_t;

void toolutil_timer_create(toolutil_timer_t* timer, const jsdpa_cuda_driver_t* cu);
void toolutil_timer_destroy(toolutil_timer_t* timer);

/* One timed unit of work, enqueued on `stream`. */
typedef jsdpa_status_t (*toolutil_call_fn)(void* arg, void* stream);

/* One jsdpa_forward over a batch, as a toolutil_call_fn (arg: a toolutil_call_t;
 * the timer's stream replaces options.stream). */
typedef struct toolutil_call_s {
  jsdpa_context_t* ctx;
  jsdpa_forward_options_t options;
  const toolutil_batch_t* batch;
} toolutil_call_t;
jsdpa_status_t toolutil_forward_call(void* arg, void* stream);

/* warmup + reps calls, each after an L2 flush with events around the call
 * alone; the median of the timed ones in ms. A failing call's status is
 * returned (then *out_median_ms is unset). */
JSDPA_MUST_USE jsdpa_status_t toolutil_time_median(toolutil_timer_t* timer, toolutil_call_fn call,
                                                   void* arg, int warmup, int reps,
                                                   double* out_median_ms);

/* ------------------------------------------------------------ oracle */

/*
 * The float64 check of a batch's output on a subset of it: the sequences and
 * heads `toolutil_oracle_create` picks (the shortest sequence, then others at
 * random within `budget` multiply-adds of L*L*d per sequence and head; at most
 * four heads spread over the range), computed once on the cpu backend in
 * float64 and with the same-precision path (fp32 accumulation, output in the
 * dtype), so every candidate is judged against the same reference:
 *   max |candidate - float64| <= 2 * max |same-precision - float64| + floor,
 * no NaN, floor one unit of the dtype at 1.0 (bf16 2^-7, fp16 2^-10).
 */
typedef struct toolutil_oracle_s {
  int num_seqs, num_heads;
  int* seqs;            /* indices into the batch */
  int64_t* heads;       /* head indices */
  int64_t total;        /* q tokens of the subset */
  int32_t* sub_offsets; /* [num_seqs + 1] */
  double* reference;    /* [total, num_heads, head_dim] float64 */
  double same_error;
  double floor;
  jsdpa_dtype_t dtype;
  int64_t head_dim;
  bool causal;
} toolutil_oracle_t;

typedef struct toolutil_verdict_s {
  double max_error, bound;
  int64_t nonfinite;
  bool ok;
} toolutil_verdict_t;

/* Picks the subset (seeded: same seed, same subset), needs the batch's host
 * copies, computes both references on `ctx`'s cpu backend. */
void toolutil_oracle_create(toolutil_oracle_t* o, jsdpa_context_t* ctx, const toolutil_batch_t* t,
                            bool causal, double budget, uint64_t seed);
/* Downloads the subset's rows of the batch's device output and judges them.
 * `fault` adds 8.0 to one checked element first (jsdpa-tune --inject-fault). */
toolutil_verdict_t toolutil_oracle_judge(const toolutil_oracle_t* o, const toolutil_batch_t* t,
                                         const jsdpa_cuda_driver_t* cu, bool fault);
void toolutil_oracle_free(toolutil_oracle_t* o);

#endif /* JSDPA_TOOLS_TOOLUTIL_H_ */
