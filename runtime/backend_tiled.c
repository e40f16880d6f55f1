/* What the tiled GPU backends (flash, efficient) share: the alignment their
 * 16-byte copies need, the run (JIT, jagged prep, launch, workspace release)
 * and the persistent-grid launch over the prep kernel's work list. */
#include <stdint.h>
#include <stdio.h>

#include "element.h"
#include "internal.h"

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
