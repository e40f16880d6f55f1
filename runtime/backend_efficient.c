/* The efficient backend: the generated tiled kernel for what flash does not
 * take (templates/efficient.cu): fp32 inputs (3xTF32 tensor-core products with
 * short truncating sums, or one TF32 pass when the caller sets JSDPA_PRECISION_TF32), head
 * dims up to 1024, and a value head dim different from the query/key one (cut
 * into output slices of at most 256 columns). Backend choice asks it after
 * flash, so math runs only what neither can (misaligned rows, scale <= 0, an
 * arch before sm_80, fp64).
 *
 * On sm_90a, fp16/bf16 calls with equal head dims past 256 (up to 512) and
 * fp32 calls with equal head dims 65..128 run the Hopper template wide
 * instead (templates/flash_sm90.cu: wgmma and TMA, two consumer warpgroups
 * splitting the head dim of one 64-row tile; fp32 as 3xTF32 wgmma, and a TF32
 * opt-in stays on efficient.cu); JSDPA_EFFICIENT_SM80=1 keeps efficient.cu.
 *
 * Launch: the persistent grid of the flash backend (backend_tiled.c); a unit
 * is (output slice, work item, head), so units = work items x heads x slices. */
#include <stdint.h>
#include <stdio.h>

#include "internal.h"
#include "tuning.h"

/* Whether the call runs the Hopper template wide; *why says why not. */
static bool efficient_sm90_usable(const jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                                  size_t capacity) {
  if (!jsdpa_sm90_available(ctx, "JSDPA_EFFICIENT_SM80", "templates/efficient.cu", why, capacity))
    return false;
  const bool f32 = call->q.dtype == JSDPA_DTYPE_FP32;
  if (f32 && call->options.precision == JSDPA_PRECISION_TF32) {
    snprintf(why, capacity,
             "fp32 with TF32 opted in runs efficient.cu (the wgmma template runs 3xTF32 only)");
    return false;
  }
  /* fp32 up to head dim 64 runs faster on efficient.cu (H100, 2026-11-26,
   * bench/NOTES.md: long d64 67 vs 53 TFLOP/s): its fixed cost per key tile
   * (the exchange, the softmax, the V transpose) weighs double there. */
  if (f32 ? call->head_dim != call->head_dim_v || call->head_dim <= 64 || call->head_dim > 128
          : call->head_dim != call->head_dim_v || call->head_dim <= 256 || call->head_dim > 512) {
    snprintf(why, capacity,
             "head_dim %lld / head_dim_v %lld: the wide wgmma template takes equal dims in %s",
             (long long)call->head_dim, (long long)call->head_dim_v,
             f32 ? "65..128 for fp32" : "257..512 for fp16/bf16");
    return false;
  }
  /* jsdpa-tune times the tiles of its forced table. */
  if (ctx->tuning && !jsdpa_tuning_database(ctx->tuning)) {
    snprintf(why, capacity, "a forced tuning table (jsdpa-tune) times efficient.cu tiles");
    return false;
  }
  return true;
}

static jsdpa_gen_variant_t efficient_variant(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                             bool* out_tuned) {
  jsdpa_gen_variant_t v = jsdpa_gen_variant_make(
      JSDPA_GEN_FAMILY_EFFICIENT, ctx->arch, jsdpa_gen_dtype_of(call->q.dtype), (int)call->head_dim,
      (int)call->head_dim_v, call->options.is_causal);
  v.tf32 = call->q.dtype == JSDPA_DTYPE_FP32 && call->options.precision == JSDPA_PRECISION_TF32;
  char why[JSDPA_REASON_CAPACITY];
  if (efficient_sm90_usable(ctx, call, why, sizeof(why))) {
    /* 64 query rows, 64 keys, one K and one V buffer (fp32: two K buffers
     * and its planes): at d512 and at fp32 d128 that is 225 KiB of the 227 a
     * block may have (jsdpa_gen_smem_bytes). */
    if (jsdpa_tiled_take(ctx, &v,
                         (jsdpa_gen_tile_t){64, 64, JSDPA_GEN_FLASH_SM90_WARPS,
                                            call->q.dtype == JSDPA_DTYPE_FP32 ? 2 : 1})) {
      if (out_tuned) *out_tuned = false;
      return v;
    }
  }
  return jsdpa_tiled_tuned(ctx, call, v, out_tuned);
}

static bool efficient_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                              size_t capacity) {
  if (!jsdpa_gpu_common_can_run(ctx, call, why, capacity)) return false;
  if (call->q.dtype != JSDPA_DTYPE_FP16 && call->q.dtype != JSDPA_DTYPE_BF16 &&
      call->q.dtype != JSDPA_DTYPE_FP32) {
    snprintf(why, capacity, "dtype %s: efficient runs fp16, bf16 and fp32",
             jsdpa_dtype_name(call->q.dtype));
    return false;
  }
  if (ctx->arch.sm < 80) {
    snprintf(why, capacity,
             "efficient needs sm_80 or newer (mma.sync tf32/bf16, cp.async); this GPU is sm_%d",
             ctx->arch.sm);
    return false;
  }
  if (call->head_dim > 1024 || call->head_dim_v > 1024) {
    snprintf(why, capacity, "head_dim %lld / head_dim_v %lld: efficient takes up to 1024",
             (long long)call->head_dim, (long long)call->head_dim_v);
    return false;
  }
  /* The online softmax takes the running maximum of the unscaled scores,
   * which is the maximum of the scaled ones only for a positive scale. */
  if (!(call->scale > 0)) {
    snprintf(why, capacity, "scale %g is not positive (efficient's online softmax needs scale > 0)",
             call->scale);
    return false;
  }
  const jsdpa_jagged_t* tensors[] = {&call->q, &call->k, &call->v, &call->o};
  const char* names[] = {"q", "k", "v", "out"};
  for (int i = 0; i < 4; ++i)
    if (!jsdpa_tiled_rows_aligned("efficient", names[i], tensors[i], why, capacity)) return false;
  jsdpa_gen_variant_t variant = efficient_variant(ctx, call, NULL);
  if (!jsdpa_gen_variant_check(&variant, why, capacity)) return false;
  /* A forced tile (jsdpa-bench --tile, jsdpa-tune) may name a wgmma tile:
   * it still needs the GPU and driver the Hopper template needs. */
  if (jsdpa_gen_uses_flash_sm90(&variant) && !jsdpa_sm90_available(ctx, NULL, NULL, why, capacity))
    return false;
  return jsdpa_tiled_fits(ctx, &variant, why, capacity) &&
         jsdpa_tiled_units_fit(ctx, call, &variant, why, capacity);
}

static jsdpa_status_t launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                             const jsdpa_kernel_t* kernel, jsdpa_params_t* params) {
  const int64_t units =
      (int64_t)params->max_work * call->heads * jsdpa_gen_work_slices(&kernel->variant);
  if (jsdpa_gen_uses_flash_sm90(&kernel->variant))
    return jsdpa_sm90_launch(ctx, call, kernel, params, units);
  return jsdpa_tiled_launch(ctx, call, kernel, params, units);
}

static jsdpa_status_t efficient_run(jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  bool tuned = false;
  jsdpa_gen_variant_t variant = efficient_variant(ctx, call, &tuned);
  jsdpa_log(ctx, 1, "efficient: tile m%dn%dw%ds%d (%s), %lld unit(s) per query tile%s, %s",
            variant.tile.block_m, variant.tile.block_n, variant.tile.warps, variant.tile.stages,
            tuned ? "tuned" : "family default", (long long)jsdpa_gen_work_slices(&variant),
            variant.tf32 ? ", TF32 (opted in)" : "",
            jsdpa_gen_uses_flash_sm90(&variant) ? "templates/flash_sm90.cu (wide)"
                                                : "templates/efficient.cu");
  return jsdpa_tiled_run(ctx, call, &variant, launch);
}

const jsdpa_backend_impl_t jsdpa_backend_efficient = {
    .id = JSDPA_BACKEND_EFFICIENT,
    .name = "efficient",
    .can_run = efficient_can_run,
    .run = efficient_run,
};
