/* The math backend: the generated row kernel (templates/math.cu, one query row
 * per warp, rows numbered head-major) for everything the GPU path accepts. Slow but general; the
 * correctness baseline for the tiled kernels on the device. */
#include <stdio.h>

#include "internal.h"

/* The kernel is compiled for the context's exact arch (sm_90a on Hopper).
 * It uses nothing arch-specific, but a JIT builds per device anyway, and one
 * arch everywhere keeps one cache key per kernel and one code path. */
static jsdpa_gen_variant_t math_variant(const jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  return jsdpa_gen_variant_make(JSDPA_GEN_FAMILY_MATH, ctx->arch, jsdpa_gen_dtype_of(call->q.dtype),
                                (int)call->head_dim, (int)call->head_dim_v,
                                call->options.is_causal);
}

static bool math_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                         size_t capacity) {
  if (!jsdpa_gpu_common_can_run(ctx, call, why, capacity)) return false;
  if (call->q.dtype == JSDPA_DTYPE_FP64) {
    snprintf(why, capacity, "dtype fp64 runs only on the cpu backend");
    return false;
  }
  jsdpa_gen_variant_t variant = math_variant(ctx, call);
  if (!jsdpa_gen_variant_check(&variant, why, capacity)) return false;
  /* grid.x = ceil(rows / rows per block), rows per block >= 1. */
  if (call->total_q * call->heads > INT32_MAX) {
    snprintf(why, capacity, "q.total_tokens (%lld) x q.heads (%lld) rows exceed one grid dimension",
             (long long)call->total_q, (long long)call->heads);
    return false;
  }
  return true;
}

static jsdpa_status_t math_run(jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  jsdpa_gen_variant_t variant = math_variant(ctx, call);
  const jsdpa_kernel_t* kernel = NULL;
  JSDPA_RETURN_IF_ERROR(jsdpa_jit_get(ctx, &variant, &kernel));

  jsdpa_params_t params;
  jsdpa_params_from_call(call, &params);
  JSDPA_RETURN_IF_ERROR(jsdpa_context_push(ctx));
  jsdpa_workspace_t ws;
  /* Row kernels take a (sequence, row) tile of 1x1: the prep kernel still
   * normalizes and checks the offsets, which is all this kernel reads. */
  jsdpa_status_t status = jsdpa_prepare_jagged(ctx, call, 1, 1, &ws, &params);
  if (!status) {
    const long long rows = (long long)call->total_q * call->heads;
    /* templates/math.cu: one query row per warp. */
    const long long rows_per_block = kernel->threads / 32;
    if (rows > 0) {
      unsigned grid = (unsigned)((rows + rows_per_block - 1) / rows_per_block);
      void* args[] = {&params};
      CUresult r = ctx->cu->cuLaunchKernel(kernel->function, grid, 1, 1, (unsigned)kernel->threads,
                                           1, 1, (unsigned)kernel->smem_bytes,
                                           (CUstream)call->options.stream, args, NULL);
      if (r != CUDA_SUCCESS)
        status = jsdpa_cuda_status(r, "cuLaunchKernel(math)", __FILE__, __LINE__);
    }
    jsdpa_workspace_release(ctx, call, &ws);
  }
  jsdpa_context_pop(ctx);
  return status;
}

const jsdpa_backend_impl_t jsdpa_backend_math = {
    .id = JSDPA_BACKEND_MATH,
    .name = "math",
    .can_run = math_can_run,
    .run = math_run,
};
