/*
 * jsdpa_abi.h — the contract between the host runtime and every generated kernel.
 *
 * This one header is compiled twice: by the C runtime (the runtime sources include it)
 * and, embedded by the generator, at the top of every emitted CUDA source that
 * NVRTC compiles. So it uses only C types that both sides lay out identically
 * on x86-64 / the CUDA ABI (no <stdint.h>: NVRTC compiles without headers).
 *
 * Every attention kernel takes exactly one argument, a jsdpa_params_t by value,
 * and is declared extern "C" with the name the generator chose. The prep kernel
 * (templates/prep.cu) fills the device-side schedule before it.
 */
#ifndef JSDPA_ABI_H_
#define JSDPA_ABI_H_

#define JSDPA_ABI_VERSION 1

/* A unit of work for the tiled kernels: one (sequence, query tile). Heads are
 * a second index (the kernel decides how to map them onto blocks). The prep
 * kernel writes these longest-first, so a long sequence does not finish last. */
typedef struct jsdpa_work_s {
  int batch;   /* sequence index */
  int m_block; /* query tile index within the sequence (rows m_block*BLOCK_M ...) */
} jsdpa_work_t;

/* Device-side results of the prep kernel (one per call, in the call's workspace). */
typedef struct jsdpa_schedule_s {
  int num_work;     /* entries written to work[] */
  int max_q_len;    /* longest query sequence */
  int max_kv_len;   /* longest key/value sequence */
  int tile_counter; /* zeroed by prep; persistent kernels fetch work with atomicAdd */
  int error;        /* nonzero: offsets were malformed (JSDPA_PREP_ERR_*); kernels write nothing */
  int bad_index;    /* the first offending offsets index, for the message */
} jsdpa_schedule_t;

#define JSDPA_PREP_ERR_Q_START 1     /* q offsets[0] != 0 */
#define JSDPA_PREP_ERR_Q_DECREASE 2  /* q offsets decrease */
#define JSDPA_PREP_ERR_Q_END 3       /* q offsets[B] != total */
#define JSDPA_PREP_ERR_KV_START 4
#define JSDPA_PREP_ERR_KV_DECREASE 5
#define JSDPA_PREP_ERR_KV_END 6

typedef struct jsdpa_params_s {
  /* Tensors. Element pointers; strides in elements; last dimension contiguous. */
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse; /* NULL: not requested. Layout [total_q, heads], contiguous. */
  long long q_token_stride, q_head_stride;
  long long k_token_stride, k_head_stride;
  long long v_token_stride, v_head_stride;
  long long o_token_stride, o_head_stride;

  /* Jagged metadata, normalized by the prep kernel to int32 on the device. */
  const int* q_offsets;  /* [batch + 1] */
  const int* kv_offsets; /* [batch + 1] */
  const jsdpa_work_t* work;  /* [max_work] longest-first */
  jsdpa_schedule_t* schedule;

  int batch;
  int heads;    /* query heads */
  int kv_heads; /* divides heads; query head h reads kv head h / (heads / kv_heads) */
  int total_q;
  int total_kv;
  int max_work; /* capacity of work[]: an upper bound known on the host */
  int head_dim;   /* runtime values, equal to the compiled JSDPA_HEAD_DIM(_V) */
  int head_dim_v;

  float scale;      /* softmax scale */
  float scale_log2; /* scale * log2(e): kernels work in the exp2 domain */
  int window_left;  /* -1 = unlimited */
  int window_right; /* -1 = unlimited */
  float softcap;    /* 0 = off */
  int flags;        /* JSDPA_FLAG_* below: kernel options not worth a variant */
} jsdpa_params_t;

/* jsdpa_params_t.flags */
#define JSDPA_FLAG_PINGPONG 1 /* flash_sm90.cu: consumer warpgroups take turns issuing GEMMs */

/* Arguments of the prep kernel (one block; see templates/prep.cu). */
typedef struct jsdpa_prep_params_s {
  const void* q_offsets_in; /* caller's offsets, int32 or int64, device */
  const void* kv_offsets_in;
  int q_offsets_is64;
  int kv_offsets_is64;
  int batch;
  int total_q;
  int total_kv;
  int block_m; /* the attention kernel's query tile (1 for row kernels) */
  int block_n; /* its key tile, to estimate each tile's cost */
  int causal;
  int max_work;
  int pad_;
  int* q_offsets_out; /* [batch + 1] */
  int* kv_offsets_out;
  jsdpa_work_t* work;
  jsdpa_schedule_t* schedule;
  int* sticky_error; /* context-wide: set (never cleared here) when offsets are bad */
} jsdpa_prep_params_t;

#endif /* JSDPA_ABI_H_ */
