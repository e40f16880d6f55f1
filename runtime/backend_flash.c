/* The flash backend: the generated tensor-core kernel (templates/flash.cu,
 * mma.sync + ldmatrix + cp.async, online softmax) for fp16/bf16 on sm_80 and
 * newer, head dims 1..256 with equal q/k and v dims. On sm_90a the Hopper
 * template (templates/flash_sm90.cu: wgmma, TMA, warp specialization) takes
 * the call (docs/hopper.md says when not); JSDPA_FLASH_SM80=1 always keeps
 * the sm80 template, JSDPA_FLASH_SM90=1 skips the speed preference for it.
 * The Hopper kernel takes the parameters plus six TMA tensor maps built here
 * (Q, K, V with whole-tile boxes and with 16-row boxes for the tiles a
 * sequence ends in).
 *
 * Launch convention (the template's header says the same): a persistent grid
 * of min(resident blocks per SM x SMs, work tiles x heads) blocks; each block
 * takes (query tile, head) units from schedule->tile_counter with atomicAdd,
 * head-major over the prep kernel's longest-first work list, until none is
 * left. The grid size needs no host knowledge of the lengths: blocks past the
 * last unit exit at their first fetch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tuning.h"

/* The Hopper template's tiles: 12 or 16 warps (a producer and two or three
 * consumer warpgroups), or 8 with block_m 64 (one, two or three blocks per SM), select
 * templates/flash_sm90.cu (gen/variant.c). */

/* The kernel parameter of templates/flash_sm90.cu (jsdpa_flash_sm90_params_t
 * there): the common parameters, then three 128-byte aligned tensor maps. */
typedef struct flash_sm90_params_s {
  jsdpa_params_t p;
  CUtensorMap q, k, v;                /* whole-tile boxes */
  CUtensorMap q_rows, k_rows, v_rows; /* JSDPA_GEN_FLASH_SM90_CHUNK-row boxes */
} flash_sm90_params_t;

bool jsdpa_sm90_available(const jsdpa_context_t* ctx, const char* opt_out, const char* fallback,
                          char* why, size_t capacity) {
  if (opt_out && jsdpa_env_is_1(opt_out)) {
    snprintf(why, capacity, "%s=1 keeps %s", opt_out, fallback);
    return false;
  }
  if (ctx->arch.sm != 90 || !ctx->arch.arch_specific) {
    snprintf(why, capacity, "the wgmma template needs sm_90a; this GPU is sm_%d", ctx->arch.sm);
    return false;
  }
  if (!ctx->cu || !ctx->cu->cuTensorMapEncodeTiled) {
    snprintf(why, capacity, "the driver has no cuTensorMapEncodeTiled (TMA tensor maps)");
    return false;
  }
  return true;
}

/* Whether the Hopper template runs this flash call; *why says why not.
 * Callers have checked what both templates need (dtype, head dims, 16-byte
 * aligned rows). */
static bool flash_sm90_usable(const jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                              size_t capacity) {
  if (!jsdpa_sm90_available(ctx, "JSDPA_FLASH_SM80", "the sm80 template", why, capacity))
    return false;
  if (call->head_dim != call->head_dim_v || call->head_dim > 256) {
    snprintf(why, capacity,
             "head_dim %lld / head_dim_v %lld: the wgmma template needs equal dims <= 256",
             (long long)call->head_dim, (long long)call->head_dim_v);
    return false;
  }
  /* jsdpa-tune times the sm80 tiles of its forced table. */
  if (ctx->tuning && !jsdpa_tuning_database(ctx->tuning)) {
    snprintf(why, capacity, "a forced tuning table (jsdpa-tune) times sm80 tiles");
    return false;
  }
  /* Measured on an H100 (2026-11-25, bench/NOTES.md): on the short workload
   * at head dim 64 the sm80 template's several blocks per SM beat one wgmma
   * block per SM (bf16 150 vs 132 TFLOP/s, causal 89 vs 67); everywhere else
   * the wgmma template wins. JSDPA_FLASH_SM90=1 takes it anyway. */
  if (call->head_dim <= 64 &&
      jsdpa_tune_bucket_of(call->total_q, call->batch) == JSDPA_TUNE_BUCKET_SHORT &&
      !jsdpa_env_is_1("JSDPA_FLASH_SM90")) {
    snprintf(why, capacity,
             "short sequences at head dim %lld run faster on the sm80 template "
             "(JSDPA_FLASH_SM90=1 overrides)",
             (long long)call->head_dim);
    return false;
  }
  return true;
}

jsdpa_gen_variant_t jsdpa_flash_variant(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                        bool* out_tuned) {
  jsdpa_gen_variant_t v =
      jsdpa_gen_variant_make(JSDPA_GEN_FAMILY_FLASH, ctx->arch, jsdpa_gen_dtype_of(call->q.dtype),
                             (int)call->head_dim, (int)call->head_dim_v, call->options.is_causal);
  if (out_tuned) *out_tuned = false;
  char no_sm90[JSDPA_REASON_CAPACITY];
  if (flash_sm90_usable(ctx, call, no_sm90, sizeof(no_sm90))) {
    /* 128 keys per tile up to d = 128; past that 64 keep two K/V stages and
     * the 128-column accumulators of a 256 head dim in the registers. */
    v.tile = call->head_dim <= 128 ? (jsdpa_gen_tile_t){128, 128, JSDPA_GEN_FLASH_SM90_WARPS, 2}
                                   : (jsdpa_gen_tile_t){128, 64, JSDPA_GEN_FLASH_SM90_WARPS, 2};
    /* Up to d = 64, three consumer warpgroups (192 query rows): +14-18% on
     * long and mixed d64 over two (H100, bench/NOTES.md). */
    if (call->head_dim <= 64)
      v.tile = (jsdpa_gen_tile_t){192, 128, JSDPA_GEN_FLASH_SM90_WARPS_3WG, 2};
    /* Short sequences at head dims 65..128: 64-row tiles of one consumer
     * warpgroup, two blocks per SM (each overlaps its loads and epilogue with
     * the other's math): short bf16 d128 195.5 vs 183.5 TFLOP/s, causal 110.4
     * vs 104.9, but mixed 458 vs 537 (H100, 2026-11-26, bench/NOTES.md). At
     * head dim 64 the sm80 template stays faster (flash_sm90_usable). */
    if (call->head_dim > 64 && call->head_dim <= 128 &&
        jsdpa_tune_bucket_of(call->total_q, call->batch) == JSDPA_TUNE_BUCKET_SHORT)
      (void)jsdpa_tiled_take(ctx, &v,
                             (jsdpa_gen_tile_t){64, 64, JSDPA_GEN_FLASH_SM90_WARPS_1WG, 2});
    /* For measurements: JSDPA_SM90_TILE=m192n64w16s2 (any valid Hopper tile)
     * replaces the choice above where the generator accepts it for the call
     * and its shared memory fits this GPU (else a forced tile too large for
     * some head dim would send those calls to another backend). */
    const char* forced = getenv("JSDPA_SM90_TILE");
    jsdpa_gen_variant_t f = v;
    if (forced && jsdpa_gen_parse_tile(forced, &f.tile) && jsdpa_gen_uses_flash_sm90(&f))
      (void)jsdpa_tiled_take(ctx, &v, f.tile);
    return v;
  }
  return jsdpa_tiled_tuned(ctx, call, v, out_tuned);
}

static bool flash_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                          size_t capacity) {
  if (!jsdpa_gpu_common_can_run(ctx, call, why, capacity)) return false;
  if (call->q.dtype != JSDPA_DTYPE_FP16 && call->q.dtype != JSDPA_DTYPE_BF16) {
    snprintf(why, capacity, "dtype %s: flash runs fp16 and bf16 only",
             jsdpa_dtype_name(call->q.dtype));
    return false;
  }
  if (ctx->arch.sm < 80) {
    snprintf(why, capacity,
             "flash needs sm_80 or newer (bf16 mma.sync, cp.async); this GPU is sm_%d",
             ctx->arch.sm);
    return false;
  }
  if (call->head_dim > 256) {
    snprintf(why, capacity, "head_dim %lld is above flash's 256", (long long)call->head_dim);
    return false;
  }
  if (call->head_dim_v != call->head_dim) {
    snprintf(why, capacity,
             "head_dim_v (%lld) differs from head_dim (%lld); flash needs them equal",
             (long long)call->head_dim_v, (long long)call->head_dim);
    return false;
  }
  /* The online softmax takes the running maximum of the unscaled scores,
   * which is the maximum of the scaled ones only for a positive scale. */
  if (!(call->scale > 0)) {
    snprintf(why, capacity, "scale %g is not positive (flash's online softmax needs scale > 0)",
             call->scale);
    return false;
  }
  /* 16-byte chunks (cp.async, TMA) in, 16-byte vectors out. */
  const jsdpa_jagged_t* tensors[] = {&call->q, &call->k, &call->v, &call->o};
  const char* names[] = {"q", "k", "v", "out"};
  for (int i = 0; i < 4; ++i)
    if (!jsdpa_tiled_rows_aligned("flash", names[i], tensors[i], why, capacity)) return false;
  jsdpa_gen_variant_t variant = jsdpa_flash_variant(ctx, call, NULL);
  if (!jsdpa_gen_variant_check(&variant, why, capacity)) return false;
  return jsdpa_tiled_fits(ctx, &variant, why, capacity) &&
         jsdpa_tiled_units_fit(ctx, call, &variant, why, capacity);
}

/* A 3-d tensor map over a whole packed tensor, dims {head dim, heads, tokens}
 * with the caller's strides; boxes of one 128-byte swizzle row (64 16-bit or
 * 32 fp32 columns) x 1 head x `rows` tokens. Reads past the tensor's end fill
 * zeros. An empty tensor gets no map: the kernel never loads from it. */
static jsdpa_status_t encode_map(jsdpa_context_t* ctx, CUtensorMap* map, const jsdpa_jagged_t* t,
                                 int rows) {
  memset(map, 0, sizeof(*map));
  if (t->total_tokens == 0) return NULL;
  const cuuint64_t es = t->dtype == JSDPA_DTYPE_FP32 ? 4 : 2;
  /* One head: its stride is never stepped; any multiple of 16 bytes does. */
  const cuuint64_t head_stride =
      t->heads > 1 ? (cuuint64_t)t->head_stride * es : (cuuint64_t)t->token_stride * es;
  const cuuint64_t dims[3] = {(cuuint64_t)t->head_dim, (cuuint64_t)t->heads,
                              (cuuint64_t)t->total_tokens};
  const cuuint64_t strides[2] = {head_stride, (cuuint64_t)t->token_stride * es};
  const cuuint32_t box[3] = {(cuuint32_t)(128 / es), 1, (cuuint32_t)rows};
  const cuuint32_t steps[3] = {1, 1, 1};
  const CUtensorMapDataType type = t->dtype == JSDPA_DTYPE_BF16   ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                   : t->dtype == JSDPA_DTYPE_FP32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                                                  : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  CU_CHECK(ctx->cu, cuTensorMapEncodeTiled(
                        map, type, 3, t->data, dims, strides, box, steps,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  return NULL;
}

jsdpa_status_t jsdpa_sm90_launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                 const jsdpa_kernel_t* kernel, const jsdpa_params_t* params,
                                 int64_t units) {
  flash_sm90_params_t sm90;
  sm90.p = *params;
  /* Ping-pong between the consumer warpgroups: built and tested, but it
   * measured -2% to +4% on the H100 (bench/NOTES.md), so it is opt-in. */
  if (jsdpa_env_is_1("JSDPA_SM90_PINGPONG")) sm90.p.flags |= JSDPA_FLAG_PINGPONG;
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.q, &call->q, kernel->block_m));
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.k, &call->k, kernel->block_n));
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.v, &call->v, kernel->block_n));
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.q_rows, &call->q, JSDPA_GEN_FLASH_SM90_CHUNK));
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.k_rows, &call->k, JSDPA_GEN_FLASH_SM90_CHUNK));
  JSDPA_RETURN_IF_ERROR(encode_map(ctx, &sm90.v_rows, &call->v, JSDPA_GEN_FLASH_SM90_CHUNK));
  return jsdpa_tiled_launch(ctx, call, kernel, &sm90, units);
}

/* The sm80 template takes the parameter block; the Hopper one also the
 * tensor maps of Q, K and V. */
static jsdpa_status_t launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                             const jsdpa_kernel_t* kernel, jsdpa_params_t* params) {
  const int64_t units = (int64_t)params->max_work * call->heads;
  if (!jsdpa_gen_uses_flash_sm90(&kernel->variant))
    return jsdpa_tiled_launch(ctx, call, kernel, params, units);
  return jsdpa_sm90_launch(ctx, call, kernel, params, units);
}

static jsdpa_status_t flash_run(jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  bool tuned = false;
  jsdpa_gen_variant_t variant = jsdpa_flash_variant(ctx, call, &tuned);
  if (ctx->verbosity >= 1) {
    char how[400] = "family default";
    if (tuned)
      snprintf(how, sizeof(how), "tuned for the %s length bucket by %s",
               jsdpa_tune_bucket_name(jsdpa_tune_bucket_of(call->total_q, call->batch)),
               jsdpa_tuning_source(ctx->tuning));
    char why[JSDPA_REASON_CAPACITY];
    const bool sm90 = flash_sm90_usable(ctx, call, why, sizeof(why));
    jsdpa_log(ctx, 1, "flash: tile m%dn%dw%ds%d (%s), %s%s", variant.tile.block_m,
              variant.tile.block_n, variant.tile.warps, variant.tile.stages, how,
              sm90 ? "templates/flash_sm90.cu" : "templates/flash.cu: ", sm90 ? "" : why);
  }
  return jsdpa_tiled_run(ctx, call, &variant, launch);
}

const jsdpa_backend_impl_t jsdpa_backend_flash = {
    .id = JSDPA_BACKEND_FLASH,
    .name = "flash",
    .can_run = flash_can_run,
    .run = flash_run,
};
