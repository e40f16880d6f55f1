/*
 * jsdpa.h — the one public header of libjsdpa: jagged scaled-dot-product attention.
 *
 * A batch of B variable-length sequences is stored packed, without padding:
 *   values[total_tokens, heads, head_dim]  plus  offsets[B + 1]
 * (offsets[0] == 0, offsets[B] == total_tokens, non-decreasing). For every
 * sequence b and every query head h:
 *   out_b,h = softmax(scale * Q_b,h K_b,g^T + mask) V_b,g,   g = h / (heads / kv_heads)
 *
 * Conventions (IREE-style):
 *  - every fallible call returns a jsdpa_status_t; NULL means success. A non-NULL
 *    status is owned by the caller and released with jsdpa_status_free().
 *  - options structs are filled with defaults by their *_initialize() function;
 *    always call it, then change the fields you need (new fields keep working).
 *  - outputs come last and are named out_*.
 *
 * Thread safety: a jsdpa_context_t may be used from several host threads at
 * once (its caches are locked). Calls on one CUDA stream are ordered by that
 * stream; the library never synchronizes the device on the GPU path unless an
 * option below asks it to.
 */
#ifndef JSDPA_H_
#define JSDPA_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define JSDPA_MUST_USE __attribute__((warn_unused_result))
#else
#define JSDPA_MUST_USE
#endif

#define JSDPA_VERSION_MAJOR 0
#define JSDPA_VERSION_MINOR 1
#define JSDPA_VERSION_PATCH 0

/* ------------------------------------------------------------------ status */

typedef enum jsdpa_status_code_e {
  JSDPA_STATUS_OK = 0,
  JSDPA_STATUS_INVALID_ARGUMENT = 1, /* the call's arguments are wrong */
  JSDPA_STATUS_UNSUPPORTED = 2,      /* valid, but no (or not the forced) backend can run it */
  JSDPA_STATUS_UNAVAILABLE = 3,      /* no CUDA driver / NVRTC / device */
  JSDPA_STATUS_COMPILE_ERROR = 4,    /* NVRTC rejected a generated kernel */
  JSDPA_STATUS_CUDA_ERROR = 5,       /* a CUDA driver call failed */
  JSDPA_STATUS_OUT_OF_MEMORY = 6,
  JSDPA_STATUS_IO_ERROR = 7,         /* cache or file trouble that could not be degraded */
  JSDPA_STATUS_INTERNAL = 8,
} jsdpa_status_code_t;

typedef struct jsdpa_status_s* jsdpa_status_t; /* NULL == OK */

jsdpa_status_code_t jsdpa_status_code(jsdpa_status_t status);
/* The message names the argument and the values; valid until jsdpa_status_free. */
const char* jsdpa_status_message(jsdpa_status_t status);
void jsdpa_status_free(jsdpa_status_t status);
const char* jsdpa_status_code_name(jsdpa_status_code_t code);

#define JSDPA_RETURN_IF_ERROR(expr)          \
  do {                                       \
    jsdpa_status_t jsdpa_status_tmp_ = (expr); \
    if (jsdpa_status_tmp_) return jsdpa_status_tmp_; \
  } while (0)

/* ------------------------------------------------------------------ types */

typedef enum jsdpa_dtype_e {
  JSDPA_DTYPE_FP16 = 1,
  JSDPA_DTYPE_BF16 = 2,
  JSDPA_DTYPE_FP32 = 3,
  JSDPA_DTYPE_FP64 = 4, /* host (cpu backend) only: the float64 oracle */
} jsdpa_dtype_t;

typedef enum jsdpa_index_type_e {
  JSDPA_INDEX_INT32 = 1,
  JSDPA_INDEX_INT64 = 2,
} jsdpa_index_type_t;

typedef enum jsdpa_backend_e {
  JSDPA_BACKEND_AUTO = 0,
  JSDPA_BACKEND_FLASH = 1,     /* generated tensor-core kernel (sm80+) */
  JSDPA_BACKEND_EFFICIENT = 2, /* generated generic kernel: fp32, large / unequal head dims */
  JSDPA_BACKEND_MATH = 3,      /* generated simple CUDA kernel: everything the API accepts */
  JSDPA_BACKEND_CPU = 4,       /* C on the host: everything, also the float64 oracle */
  JSDPA_BACKEND_COUNT = 5,
} jsdpa_backend_t;

const char* jsdpa_dtype_name(jsdpa_dtype_t dtype);
const char* jsdpa_backend_name(jsdpa_backend_t backend);

/*
 * A jagged tensor: packed values [total_tokens, heads, head_dim] plus offsets.
 * Strides are in elements; the last dimension must be contiguous. A stride of 0
 * means "contiguous": token_stride = heads * head_dim, head_stride = head_dim.
 * `offsets` holds batch + 1 integers, on the host or on the same device as
 * `data`. `max_seqlen` is the longest sequence if the caller knows it, or -1
 * (then it is computed on the device without a host sync).
 */
typedef struct jsdpa_jagged_s {
  void* data;
  jsdpa_dtype_t dtype;
  int64_t total_tokens;
  int64_t heads;
  int64_t head_dim;
  int64_t token_stride;
  int64_t head_stride;
  const void* offsets;
  jsdpa_index_type_t offsets_type;
  int64_t batch;
  int64_t max_seqlen;
} jsdpa_jagged_t;

/* Limits jsdpa_forward checks (INVALID_ARGUMENT beyond them). A token_stride
 * of 0 with a nonzero head_stride means heads * head_stride. */
#define JSDPA_MAX_HEADS 65535             /* a CUDA grid dimension */
#define JSDPA_MAX_HEAD_DIM 1024
#define JSDPA_MAX_TOTAL_TOKENS 2147483647 /* counts and offsets are int32 on the device */
#define JSDPA_MAX_BATCH 2147483646        /* batch + 1 offsets in int32 */

/* Fills *t with a contiguous descriptor (strides 0, max_seqlen -1). */
void jsdpa_jagged_initialize(jsdpa_jagged_t* t, void* data, jsdpa_dtype_t dtype,
                             int64_t total_tokens, int64_t heads, int64_t head_dim,
                             const void* offsets, jsdpa_index_type_t offsets_type,
                             int64_t batch);

/* ---------------------------------------------------------------- context */

typedef struct jsdpa_context_s jsdpa_context_t;

/* options.device value for a context that never uses a GPU (no CUDA context is
 * created; device pointers are still recognized and rejected). */
#define JSDPA_DEVICE_NONE (-1)

typedef struct jsdpa_context_options_s {
  /* CUDA device ordinal, or JSDPA_DEVICE_NONE. If no driver or device is found
   * the context is still created and only the cpu backend runs (GPU backends
   * report why). */
  int device;
  /* Kernel cache directory. NULL: $JSDPA_CACHE_DIR, else $XDG_CACHE_HOME/jsdpa,
   * else ~/.cache/jsdpa. "" disables the disk cache (memory only). */
  const char* cache_dir;
  /* 0 quiet, 1 log backend choice and compiles to stderr (also JSDPA_LOG=1),
   * 2 debug. */
  int verbosity;
  /* Host threads for the cpu backend; 0 = number of online CPUs. */
  int cpu_threads;
  /* Tuning database file. NULL: specs/tuned lookup by GPU name (see docs). */
  const char* tuning_db;
} jsdpa_context_options_t;

void jsdpa_context_options_initialize(jsdpa_context_options_t* options);
JSDPA_MUST_USE jsdpa_status_t jsdpa_context_create(const jsdpa_context_options_t* options,
                                                   jsdpa_context_t** out_context);
/* Waits for nothing: the caller must have finished using the context's kernels. */
void jsdpa_context_destroy(jsdpa_context_t* context);

/* Whether the context has a usable GPU; if not, *out_reason (may be NULL) says why. */
bool jsdpa_context_has_gpu(const jsdpa_context_t* context, const char** out_reason);

/*
 * Offsets living on the device are validated by the device preprocessing kernel
 * (no host sync). When they are malformed the attention kernels write nothing
 * and the context records the error. This call synchronizes `stream` and
 * returns (and clears) that recorded error.
 */
JSDPA_MUST_USE jsdpa_status_t jsdpa_context_check_device_errors(jsdpa_context_t* context,
                                                                void* stream);

/* Kernel cache statistics (for tests and the main job). */
typedef struct jsdpa_cache_stats_s {
  int64_t memory_hits;
  int64_t disk_hits;
  int64_t compiles;
  int64_t disk_writes;
  int64_t corrupt_entries; /* disk entries that failed their checksum and were rebuilt */
  double compile_ms;       /* total NVRTC time */
  double load_ms;          /* total disk read + module load time */
  bool disk_enabled;
} jsdpa_cache_stats_t;
void jsdpa_context_cache_stats(const jsdpa_context_t* context, jsdpa_cache_stats_t* out_stats);

/* ---------------------------------------------------------------- forward */

/* How products are computed. By default fp32 inputs keep (near) fp32
 * accuracy: the efficient backend splits each fp32 value into two TF32 parts,
 * issues three tensor-core products (3xTF32, as PyTorch's efficient kernel),
 * and keeps the tensor core's truncating sums short; measured on an H100 its
 * error against float64 is 2-5x a plain fp32 dot product's on 2K-4K keys
 * (bench/RESULTS.md). TF32 trades accuracy for speed (2-3x on an H100): one
 * TF32 product, 10 mantissa bits, fp32 accumulation. It never applies to
 * fp16/bf16 inputs. */
typedef enum jsdpa_precision_e {
  JSDPA_PRECISION_DEFAULT = 0, /* fp32 accumulate (fp64 for fp64 inputs); fp32 inputs 3xTF32 */
  JSDPA_PRECISION_FP64 = 1,    /* cpu backend: accumulate in double (the test oracle) */
  JSDPA_PRECISION_TF32 = 2,    /* fp32 inputs: one TF32 tensor-core pass (opt-in, 10-bit mantissa) */
} jsdpa_precision_t;

typedef struct jsdpa_forward_options_s {
  bool is_causal;       /* bottom-right aligned, as FlashAttention >= 2.1 */
  double scale;         /* NaN (the default) = 1 / sqrt(head_dim) */
  jsdpa_backend_t backend;
  void* stream;         /* CUstream / cudaStream_t; NULL = the legacy default stream */
  int64_t window_left;  /* sliding window: keys j with i' - left <= j <= i' + right, where */
  int64_t window_right; /* i' is the bottom-right-aligned row; -1 = unlimited */
  float softcap;        /* > 0: scores become softcap * tanh(score / softcap) */
  jsdpa_precision_t precision;
  /* Device offsets: copy them to the host and validate before launching
   * (a host sync). Off by default; see jsdpa_context_check_device_errors. */
  bool validate_device_offsets;
} jsdpa_forward_options_t;

void jsdpa_forward_options_initialize(jsdpa_forward_options_t* options);

/*
 * out = attention(q, k, v). q and out share q's offsets (out->offsets is
 * ignored and may be NULL); k and v share k's offsets (v's must be NULL or equal).
 * q.heads must be a multiple of k.heads (GQA / MQA); q and k head dims equal;
 * v's head dim is the output's. `out_lse`, if not NULL, receives the
 * log-sum-exp (natural log, of the scaled scores) as fp32 [q.total_tokens, q.heads]
 * contiguous; rows of empty key sequences get -inf and zero output.
 * On any error nothing is written to out or out_lse.
 */
JSDPA_MUST_USE jsdpa_status_t jsdpa_forward(jsdpa_context_t* context,
                                            const jsdpa_forward_options_t* options,
                                            const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                                            const jsdpa_jagged_t* v, const jsdpa_jagged_t* out,
                                            float* out_lse);

/* ---------------------------------------------------------------- explain */

#define JSDPA_REASON_CAPACITY 512

typedef struct jsdpa_selection_s {
  jsdpa_backend_t backend; /* the one that would run, or AUTO if none */
  /* For each backend (indexed by jsdpa_backend_t): "" if it could run, else why not. */
  char reasons[JSDPA_BACKEND_COUNT][JSDPA_REASON_CAPACITY];
} jsdpa_selection_t;

/*
 * Which backend jsdpa_forward would run for these arguments, and why every other
 * one was rejected. Validates like jsdpa_forward; compiles and launches nothing.
 * When no backend (or not the forced one) can run it returns UNSUPPORTED, as
 * jsdpa_forward would, with *out_selection still filled (backend AUTO).
 */
JSDPA_MUST_USE jsdpa_status_t jsdpa_explain(jsdpa_context_t* context,
                                            const jsdpa_forward_options_t* options,
                                            const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                                            const jsdpa_jagged_t* v, const jsdpa_jagged_t* out,
                                            const float* out_lse,
                                            jsdpa_selection_t* out_selection);

/* Writes the selection as text ("backend: math\nflash: rejected: ...\n"). */
void jsdpa_selection_format(const jsdpa_selection_t* selection, char* buffer, size_t capacity);

#ifdef __cplusplus
}
#endif
#endif /* JSDPA_H_ */
