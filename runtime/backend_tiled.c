/* What the tiled GPU backends (flash, efficient) share: the alignment their
 * 16-byte copies need, the run (JIT, jagged prep, launch, workspace release)
 * and the persistent-grid launch over the prep kernel's work list. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "element.h"
#include "internal.h"
#include "tuning.h"

bool jsdpa_env_is_1(const char* name) {
  const char* value = getenv(name);
  return value && !strcmp(value, "1");
}

bool jsdpa_tiled_rows_aligned(const char* family, const char* name, const jsdpa_jagged_t* t,
                              char* why, size_t capacity) {
  const int64_t es = jsdpa_dtype_size(t->dtype);
  if ((uintptr_t)t->data % 16) {
    snprintf(why, capacity, "%s.data (%p) is not 16-byte aligned (%s copies 16-byte chunks)", name,
             t->data, family);
    return false;
  }
  if ((t->token_stride * es) % 16) {
    snprintf(why, capacity,
             "%s.token_stride (%lld elements = %lld bytes) is not a multiple of 16 bytes "
             "(%s copies 16-byte chunks)",
             name, (long long)t->token_stride, (long long)(t->token_stride * es), family);
    return false;
  }
  if (t->heads > 1 && (t->head_stride * es) % 16) {
    snprintf(why, capacity,
             "%s.head_stride (%lld elements = %lld bytes) is not a multiple of 16 bytes "
             "(%s copies 16-byte chunks)",
             name, (long long)t->head_stride, (long long)(t->head_stride * es), family);
    return false;
  }
  return true;
}

jsdpa_status_t jsdpa_tiled_launch(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                  const jsdpa_kernel_t* kernel, void* kernel_params,
                                  int64_t units) {
  int per_sm = 0;
  CU_CHECK(ctx->cu, cuOccupancyMaxActiveBlocksPerMultiprocessor(
                        &per_sm, kernel->function, kernel->threads, (size_t)kernel->smem_bytes));
  if (per_sm < 1)
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL,
                             "the %s kernel (%d threads, %d bytes of shared memory) fits no SM "
                             "of this GPU",
                             jsdpa_gen_family_name(kernel->variant.family), kernel->threads,
                             kernel->smem_bytes);
  int64_t grid = (int64_t)per_sm * ctx->sm_count;
  if (grid > units) grid = units;
  if (grid < 1) return NULL;
  void* args[] = {kernel_params};
  CU_CHECK(ctx->cu, cuLaunchKernel(kernel->function, (unsigned)grid, 1, 1,
                                   (unsigned)kernel->threads, 1, 1, (unsigned)kernel->smem_bytes,
                                   (CUstream)call->options.stream, args, NULL));
  return NULL;
}

jsdpa_status_t jsdpa_tiled_run(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                               const jsdpa_gen_variant_t* variant, jsdpa_tiled_launch_fn launch) {
  const jsdpa_kernel_t* kernel = NULL;
  JSDPA_RETURN_IF_ERROR(jsdpa_jit_get(ctx, variant, &kernel));
  jsdpa_params_t params;
  jsdpa_params_from_call(call, &params);
  JSDPA_RETURN_IF_ERROR(jsdpa_context_push(ctx));
  jsdpa_workspace_t ws;
  jsdpa_status_t status =
      jsdpa_prepare_jagged(ctx, call, kernel->block_m, kernel->block_n, &ws, &params);
  if (!status) {
    if (call->total_q > 0 && call->heads > 0) status = launch(ctx, call, kernel, &params);
    jsdpa_workspace_release(ctx, call, &ws);
  }
  jsdpa_context_pop(ctx);
  return status;
}

bool jsdpa_tiled_fits(const jsdpa_context_t* ctx, const jsdpa_gen_variant_t* v, char* why,
                      size_t capacity) {
  const int64_t smem = jsdpa_gen_smem_bytes(v);
  if (smem + JSDPA_GEN_STATIC_SMEM <= ctx->max_smem_optin) return true;
  snprintf(why, capacity,
           "the %s tile m%dn%dw%ds%d (head dims %d/%d) needs %lld bytes of shared memory "
           "(+%d static); this GPU allows %d per block",
           jsdpa_gen_family_name(v->family), v->tile.block_m, v->tile.block_n, v->tile.warps,
           v->tile.stages, v->head_dim, v->head_dim_v, (long long)smem, JSDPA_GEN_STATIC_SMEM,
           ctx->max_smem_optin);
  return false;
}

bool jsdpa_tiled_take(const jsdpa_context_t* ctx, jsdpa_gen_variant_t* variant,
                      jsdpa_gen_tile_t tile) {
  jsdpa_gen_variant_t v = *variant;
  v.tile = tile;
  if (!jsdpa_gen_variant_check(&v, NULL, 0) || !jsdpa_tiled_fits(ctx, &v, NULL, 0)) return false;
  *variant = v;
  return true;
}

bool jsdpa_tiled_units_fit(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                           const jsdpa_gen_variant_t* v, char* why, size_t capacity) {
  /* Every resident block fetches one unit past the last: keep that in int32 too. */
  const int64_t units =
      (call->total_q / v->tile.block_m + call->batch) * call->heads * jsdpa_gen_work_slices(v);
  const int64_t slack = (int64_t)ctx->sm_count * 64;
  if (units <= INT32_MAX - slack) return true;
  snprintf(why, capacity,
           "q has %lld tokens in %lld sequences x %lld heads: %lld %s work units (+%lld fetches "
           "past the end) exceed int32",
           (long long)call->total_q, (long long)call->batch, (long long)call->heads,
           (long long)units, jsdpa_gen_family_name(v->family), (long long)slack);
  return false;
}

jsdpa_gen_variant_t jsdpa_tiled_tuned(const jsdpa_context_t* ctx, const jsdpa_call_t* call,
                                      jsdpa_gen_variant_t v, bool* out_tuned) {
  if (out_tuned) *out_tuned = false;
  jsdpa_tuning_choice_t choice;
  if (!jsdpa_tuning_lookup(ctx->tuning, &v, call->total_q, call->batch, &choice)) return v;
  jsdpa_gen_variant_t tuned = v;
  tuned.tile = choice.tile;
  char why[JSDPA_REASON_CAPACITY];
  if (!jsdpa_gen_variant_check(&tuned, why, sizeof(why)) ||
      !jsdpa_tiled_fits(ctx, &tuned, why, sizeof(why))) {
    /* A forced tile (jsdpa-tune, jsdpa-bench --tile) is what was asked for:
     * the backend's check then rejects it with this reason, instead of the
     * default tile running under its name. */
    if (!jsdpa_tuning_database(ctx->tuning)) return tuned;
    /* A database entry names a tile for a GPU model; one this device cannot
     * hold (another smem carve-out) or the generator rejects falls back. */
    jsdpa_log(ctx, 1, "%s: tuned tile m%dn%dw%ds%d rejected (%s): default tile",
              jsdpa_gen_family_name(v.family), tuned.tile.block_m, tuned.tile.block_n,
              tuned.tile.warps, tuned.tile.stages, why);
    return v;
  }
  if (out_tuned) *out_tuned = true;
  return tuned;
}
