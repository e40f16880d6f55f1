/*
 * internal.h — the runtime's shared types. One file per stage:
 *   api.c       public entry points: options, context, jsdpa_forward / jsdpa_explain
 *   validate.c  argument checks -> a normalized jsdpa_call_t (nothing is written on error)
 *   select.c    the backend table (flash -> efficient -> math -> cpu) and the choice
 *   jagged.c    host-side offsets work and the device prep kernel launch (no host sync)
 *   cpu.c       the cpu backend (threads; fp32 or fp64 accumulate)
 *   backend_*.c one file per GPU backend: constraint checks and launch
 *   jit.c       variant -> source (gen library) -> kernel, through the cache
 *   cache.c     memory cache, disk cache (sha256 keys, atomic publish, checksums)
 *   cuda.c      dlopen'ed driver and NVRTC (cuda_dl.h)
 */
#ifndef JSDPA_RUNTIME_INTERNAL_H_
#define JSDPA_RUNTIME_INTERNAL_H_

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuda_dl.h"
#include "jsdpa.h"
#include "jsdpa_abi.h"
#include "jsdpa_gen.h"
#include "status.h"

/* ------------------------------------------------------------ the call */

/* Where a tensor's memory lives. */
typedef enum jsdpa_memory_e {
  JSDPA_MEMORY_HOST = 0,
  JSDPA_MEMORY_DEVICE = 1,
} jsdpa_memory_t;

/*
 * A validated, normalized call: strides resolved (no zeros), scale resolved,
 * sizes checked. Built by jsdpa_validate(); read by selection and backends.
 */
typedef struct jsdpa_call_s {
  jsdpa_jagged_t q, k, v, o; /* copies with strides filled in */
  float* lse;
  jsdpa_forward_options_t options;
  double scale; /* resolved */

  jsdpa_memory_t memory; /* of q/k/v/out data (all the same, or validation failed) */
  jsdpa_memory_t q_offsets_memory;
  jsdpa_memory_t kv_offsets_memory;
  int device; /* CUDA ordinal of the data when on the device */

  int64_t batch;
  int64_t total_q, total_kv;
  int64_t heads, kv_heads;
  int64_t head_dim, head_dim_v;
  int64_t max_q_len, max_kv_len; /* -1 if unknown on the host */
  int64_t min_q_len, min_kv_len; /* -1 if unknown on the host */
  bool window;                   /* a sliding window is set */
} jsdpa_call_t;

/* ------------------------------------------------------------ context */

typedef struct jsdpa_cache_s jsdpa_cache_t;
typedef struct jsdpa_tuning_s jsdpa_tuning_t;

struct jsdpa_context_s {
  jsdpa_context_options_t options;
  char* cache_dir; /* resolved; NULL if memory-only */
  int verbosity;
  int cpu_threads;

  /* GPU state; gpu == false means cpu only (gpu_reason says why). */
  bool gpu;
  char gpu_reason[512];
  const jsdpa_cuda_driver_t* cu;
  CUdevice cu_device;
  CUcontext cu_context;  /* the device's primary context (shared with the CUDA runtime) */
  jsdpa_gen_arch_t arch; /* exact: sm_90 on Hopper becomes sm_90a */
  char device_name[256];
  int sm_count;
  int max_smem_optin;
  CUdeviceptr sticky_error; /* int: set by prep kernels on malformed device offsets */
  CUmemoryPool pool;        /* per-call workspaces; NULL: the driver lacks pools */

  jsdpa_cache_t* cache;
  jsdpa_tuning_t* tuning; /* NULL: defaults */
  pthread_mutex_t lock;
};

/* device.c: opens the GPU of options.device (primary context, exact arch, SM
 * count, sticky error word). Never fails hard: without a driver or device it
 * leaves ctx->gpu false and ctx->gpu_reason set. */
void jsdpa_device_open(jsdpa_context_t* ctx);
void jsdpa_device_close(jsdpa_context_t* ctx);
/* Makes the context's CUDA context current on this thread (pushes); pair with pop. */
JSDPA_MUST_USE jsdpa_status_t jsdpa_context_push(jsdpa_context_t* ctx);
void jsdpa_context_pop(jsdpa_context_t* ctx);
/* Where ptr lives: host memory (also unregistered host pointers and any pointer
 * when there is no driver) or device memory (then *out_device is its ordinal).
 * Managed memory counts as device memory. */
jsdpa_memory_t jsdpa_pointer_memory(const jsdpa_context_t* ctx, const void* ptr, int* out_device);

/* cache.c: the kernel cache (memory per context, then disk). */
JSDPA_MUST_USE jsdpa_status_t jsdpa_cache_create(jsdpa_context_t* ctx, jsdpa_cache_t** out_cache);
void jsdpa_cache_destroy(jsdpa_cache_t* cache);
void jsdpa_cache_get_stats(const jsdpa_cache_t* cache, jsdpa_cache_stats_t* out_stats);

/* ------------------------------------------------------------ stages */

/* validate.c: checks every argument; fills *out_call. Nothing is written. */
JSDPA_MUST_USE jsdpa_status_t jsdpa_validate(jsdpa_context_t* ctx,
                                             const jsdpa_forward_options_t* options,
                                             const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                                             const jsdpa_jagged_t* v, const jsdpa_jagged_t* out,
                                             const float* out_lse, jsdpa_call_t* out_call);

/* select.c: a backend is a row of this table (QBE-style target struct). */
typedef struct jsdpa_backend_impl_s {
  jsdpa_backend_t id;
  const char* name;
  /* true if it can run the call; else writes a one-line reason into why. */
  bool (*can_run)(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why, size_t capacity);
  jsdpa_status_t (*run)(jsdpa_context_t* ctx, const jsdpa_call_t* call);
} jsdpa_backend_impl_t;

extern const jsdpa_backend_impl_t jsdpa_backend_flash;
extern const jsdpa_backend_impl_t jsdpa_backend_efficient;
extern const jsdpa_backend_impl_t jsdpa_backend_math;
extern const jsdpa_backend_impl_t jsdpa_backend_cpu;

/* Fills every reason and picks the first backend in preference order that can
 * run (or the forced one). Returns an UNSUPPORTED status listing all reasons
 * when none (or not the forced one) can. */
JSDPA_MUST_USE jsdpa_status_t jsdpa_select(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                           jsdpa_selection_t* out_selection,
                                           const jsdpa_backend_impl_t** out_backend);

/* backend_flash.c: the variant the flash backend runs for a call: the tuning
 * table's tile for the call's length bucket when one applies and fits this
 * GPU (tuning.h), else the family default; *out_tuned (may be NULL) says which. */
jsdpa_gen_variant_t jsdpa_flash_variant(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                        bool* out_tuned);

/* Shared GPU-backend checks (device memory, a GPU in the context, ...). */
bool jsdpa_gpu_common_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                              size_t capacity);

/* ------------------------------------------------------------ JIT and launch */

/*
 * A loaded kernel. Every attention template defines
 *   extern "C" __device__ const int jsdpa_launch[4] = {threads, smem_bytes, block_m, block_n};
 * (its launch shape, owned by the template since it owns the layout); jit.c
 * reads it once when the module is loaded and raises the function's dynamic
 * shared-memory limit when smem_bytes > 48 KiB.
 */
typedef struct jsdpa_kernel_s {
  CUmodule module;
  CUfunction function;
  int threads;    /* block size */
  int smem_bytes; /* dynamic shared memory */
  int block_m;    /* query rows per work unit (the prep kernel's tile) */
  int block_n;    /* keys per inner iteration (for cost estimates) */
  jsdpa_gen_variant_t variant;
} jsdpa_kernel_t;

/* jit.c: the compiled kernel for a variant (memory cache -> disk cache -> NVRTC). */
JSDPA_MUST_USE jsdpa_status_t jsdpa_jit_get(jsdpa_context_t* ctx,
                                            const jsdpa_gen_variant_t* variant,
                                            const jsdpa_kernel_t** out_kernel);
/* jit.c: the prep kernel for this context's arch. */
JSDPA_MUST_USE jsdpa_status_t jsdpa_jit_get_prep(jsdpa_context_t* ctx,
                                                 const jsdpa_kernel_t** out_kernel);

/* jagged.c: per-call device workspace + prep launch. Fills the pointers of *params
 * that the prep kernel produces (offsets, work, schedule) and params->max_work.
 * block_m/block_n: the attention kernel's tile (1,1 for row kernels). Frees the
 * workspace stream-ordered after the attention launch via jsdpa_workspace_release. */
typedef struct jsdpa_workspace_s {
  CUdeviceptr base;
  size_t bytes;
  bool async; /* allocated with cuMemAllocAsync */
} jsdpa_workspace_t;

JSDPA_MUST_USE jsdpa_status_t jsdpa_prepare_jagged(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                                   int block_m, int block_n,
                                                   jsdpa_workspace_t* out_ws,
                                                   jsdpa_params_t* out_params);
void jsdpa_workspace_release(jsdpa_context_t* ctx, const jsdpa_call_t* call, jsdpa_workspace_t* ws);

/* Fills the tensor fields of params from the call (pointers, strides, sizes, scale). */
void jsdpa_params_from_call(const jsdpa_call_t* call, jsdpa_params_t* params);

/* backend_tiled.c, shared by the tiled backends (flash, efficient). Rows the
 * kernels copy in 16-byte chunks must start 16-byte aligned: false with the
 * reason (naming `family` and the tensor `name`) otherwise. */
bool jsdpa_tiled_rows_aligned(const char* family, const char* name, const jsdpa_jagged_t* t,
                              char* why, size_t capacity);
/* Launches a persistent tiled kernel: min(resident blocks x SMs, units) blocks,
 * each fetching units from the prep kernel's schedule until none is left.
 * kernel_params: the kernel's one argument (a jsdpa_params_t, or a struct
 * that starts with one). */
JSDPA_MUST_USE jsdpa_status_t jsdpa_tiled_launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                                 const jsdpa_kernel_t* kernel, void* kernel_params,
                                                 int64_t units);
/* Whether the variant's dynamic shared memory plus JSDPA_GEN_STATIC_SMEM fits
 * a block of this GPU; else why not. */
bool jsdpa_tiled_fits(const jsdpa_context_t* ctx, const jsdpa_gen_variant_t* variant, char* why,
                      size_t capacity);
/* Gives *variant the tile where the generator accepts it for the variant and
 * its shared memory fits this GPU; returns whether it did. */
bool jsdpa_tiled_take(const jsdpa_context_t* ctx, jsdpa_gen_variant_t* variant,
                      jsdpa_gen_tile_t tile);
/* Whether the call's work units (and the fetches past the last) fit the
 * kernels' int32 counter; else why not. */
bool jsdpa_tiled_units_fit(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                           const jsdpa_gen_variant_t* variant, char* why, size_t capacity);
/* `v` with the tuning table's tile for the call's length bucket when there is
 * one that the generator accepts and this GPU holds (*out_tuned true); a
 * database tile that does not is logged and dropped, a forced one (jsdpa-tune,
 * jsdpa-bench --tile) is returned as is so the backend check reports it. */
jsdpa_gen_variant_t jsdpa_tiled_tuned(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                      jsdpa_gen_variant_t v, bool* out_tuned);
/* A tiled backend's run: the variant's kernel (JIT), the jagged prep into a
 * call workspace, `launch` (skipped for an empty call), the workspace
 * released stream-ordered. */
typedef jsdpa_status_t (*jsdpa_tiled_launch_fn)(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                                const jsdpa_kernel_t* kernel,
                                                jsdpa_params_t* params);
JSDPA_MUST_USE jsdpa_status_t jsdpa_tiled_run(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                              const jsdpa_gen_variant_t* variant,
                                              jsdpa_tiled_launch_fn launch);

/* Whether the environment variable `name` is set to exactly "1" (the tiled
 * backends' template switches: JSDPA_FLASH_SM80, JSDPA_EFFICIENT_SM80, ...). */
bool jsdpa_env_is_1(const char* name);

/* backend_flash.c: the Hopper template (templates/flash_sm90.cu), which the
 * flash family and the efficient family's wide tiles share. Whether a call
 * may run it: the environment variable opt_out (may be NULL) is not "1" (else
 * the reason says it keeps `fallback`), and this GPU and driver can (sm_90a,
 * TMA tensor maps). And its launch: the parameters plus the tensor maps of Q,
 * K and V. */
bool jsdpa_sm90_available(const jsdpa_context_t* ctx, const char* opt_out, const char* fallback,
                          char* why, size_t capacity);
JSDPA_MUST_USE jsdpa_status_t jsdpa_sm90_launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                                const jsdpa_kernel_t* kernel,
                                                const jsdpa_params_t* params, int64_t units);

/* Maps the API dtype to the generator's. */
jsdpa_gen_dtype_t jsdpa_gen_dtype_of(jsdpa_dtype_t dtype);

/* Logging (verbosity >= level, or JSDPA_LOG=1 for level 1). */
void jsdpa_log(const jsdpa_context_t* ctx, int level, const char* format, ...) JSDPA_PRINTF(3, 4);

#endif /* JSDPA_RUNTIME_INTERNAL_H_ */
