/* Jagged metadata on the device, without a host sync: a per-call workspace
 * allocated stream-ordered, host offsets uploaded asynchronously, and the prep
 * kernel (templates/prep.cu) that normalizes and checks the offsets and writes
 * the longest-first work list the attention kernels read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define JAGGED_ALIGN 256

static size_t align_up(size_t n) {
  return (n + JAGGED_ALIGN - 1) / JAGGED_ALIGN * JAGGED_ALIGN;
}

jsdpa_gen_dtype_t jsdpa_gen_dtype_of(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: return JSDPA_GEN_DTYPE_FP16;
    case JSDPA_DTYPE_BF16: return JSDPA_GEN_DTYPE_BF16;
    default: return JSDPA_GEN_DTYPE_FP32;
  }
}

void jsdpa_params_from_call(const jsdpa_call_t* call, jsdpa_params_t* params) {
  memset(params, 0, sizeof(*params));
  params->q = call->q.data;
  params->k = call->k.data;
  params->v = call->v.data;
  params->o = call->o.data;
  params->lse = call->lse;
  params->q_token_stride = call->q.token_stride;
  params->q_head_stride = call->q.head_stride;
  params->k_token_stride = call->k.token_stride;
  params->k_head_stride = call->k.head_stride;
  params->v_token_stride = call->v.token_stride;
  params->v_head_stride = call->v.head_stride;
  params->o_token_stride = call->o.token_stride;
  params->o_head_stride = call->o.head_stride;
  params->batch = (int)call->batch;
  params->heads = (int)call->heads;
  params->kv_heads = (int)call->kv_heads;
  params->total_q = (int)call->total_q;
  params->total_kv = (int)call->total_kv;
  params->head_dim = (int)call->head_dim;
  params->head_dim_v = (int)call->head_dim_v;
  params->scale = (float)call->scale;
  params->scale_log2 = (float)(call->scale * M_LOG2E);
  /* validate.c folds windows wider than any int32 sequence into -1. */
  params->window_left = (int)call->options.window_left;
  params->window_right = (int)call->options.window_right;
  params->softcap = call->options.softcap;
}

/* Host offsets (already validated on the host) as int32 in a fresh malloc'd
 * buffer: the upload then reads pageable memory, which the driver copies to
 * its staging area before cuMemcpyHtoDAsync returns, so the caller may reuse
 * its (possibly pinned) offsets as soon as jsdpa_forward returns. */
static int* host_offsets_int32(const void* offsets, jsdpa_index_type_t type, int64_t count) {
  int* out = malloc((size_t)count * sizeof(int));
  if (!out) return NULL;
  for (int64_t i = 0; i < count; ++i)
    out[i] = type == JSDPA_INDEX_INT64 ? (int)((const int64_t*)offsets)[i]
                                       : ((const int32_t*)offsets)[i];
  return out;
}

static jsdpa_status_t upload_offsets(jsdpa_context_t* ctx, const void* offsets,
                                     jsdpa_index_type_t type, int64_t count, CUdeviceptr dst,
                                     CUstream stream) {
  int* host = host_offsets_int32(offsets, type, count);
  if (!host)
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "out of host memory for %lld offsets",
                             (long long)count);
  CUresult r = ctx->cu->cuMemcpyHtoDAsync(dst, host, (size_t)count * sizeof(int), stream);
  free(host);
  if (r != CUDA_SUCCESS)
    return jsdpa_cuda_status(r, "cuMemcpyHtoDAsync(offsets)", __FILE__, __LINE__);
  return NULL;
}

/*
 * The workspace is allocated per call from the context's pool (device.c) on the
 * call's stream and freed with cuMemFreeAsync after the attention launch: the pool
 * makes this cheap, concurrent calls on different streams never share memory,
 * and nothing waits on the host. Drivers without stream-ordered allocation get
 * a plain cuMemAlloc, and the release synchronizes the stream before
 * cuMemFree (a host sync on that fallback path only, never a shared buffer
 * that another stream could still be reading).
 */
static jsdpa_status_t workspace_alloc(jsdpa_context_t* ctx, size_t bytes, CUstream stream,
                                      jsdpa_workspace_t* ws) {
  const jsdpa_cuda_driver_t* cu = ctx->cu;
  ws->bytes = bytes;
  ws->async = false;
  if (ctx->pool && cu->cuMemFreeAsync) {
    CUresult r = cu->cuMemAllocFromPoolAsync(&ws->base, bytes, ctx->pool, stream);
    if (r != CUDA_SUCCESS)
      return jsdpa_cuda_status(r, "cuMemAllocFromPoolAsync(workspace)", __FILE__, __LINE__);
    ws->async = true;
    return NULL;
  }
  if (cu->cuMemAllocAsync && cu->cuMemFreeAsync) {
    CUresult r = cu->cuMemAllocAsync(&ws->base, bytes, stream);
    if (r == CUDA_SUCCESS) {
      ws->async = true;
      return NULL;
    }
    if (r != CUDA_ERROR_NOT_SUPPORTED)
      return jsdpa_cuda_status(r, "cuMemAllocAsync(workspace)", __FILE__, __LINE__);
  }
  CU_CHECK(cu, cuMemAlloc(&ws->base, bytes));
  return NULL;
}

void jsdpa_workspace_release(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                             jsdpa_workspace_t* ws) {
  if (!ws->base) return;
  CUstream stream = (CUstream)call->options.stream;
  if (ws->async) {
    ctx->cu->cuMemFreeAsync(ws->base, stream);
  } else {
    ctx->cu->cuStreamSynchronize(stream);
    ctx->cu->cuMemFree(ws->base);
  }
  ws->base = 0;
  ws->bytes = 0;
}

jsdpa_status_t jsdpa_prepare_jagged(jsdpa_context_t* ctx, const jsdpa_call_t* call, int block_m,
                                    int block_n, jsdpa_workspace_t* out_ws,
                                    jsdpa_params_t* out_params) {
  memset(out_ws, 0, sizeof(*out_ws));
  if (block_m <= 0 || block_n <= 0)
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL, "prep tile %dx%d is not positive", block_m,
                             block_n);
  const jsdpa_kernel_t* prep = NULL;
  JSDPA_RETURN_IF_ERROR(jsdpa_jit_get_prep(ctx, &prep));

  /* Every tile list fits: sum ceil(L_b / m) <= floor(total / m) + batch. */
  const int64_t batch = call->batch;
  const int64_t max_work = call->total_q / block_m + batch;
  if (max_work > INT32_MAX || batch >= INT32_MAX)
    return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED,
                             "q has %lld tokens in %lld sequences: %lld work tiles of %d rows "
                             "exceed the int32 schedule",
                             (long long)call->total_q, (long long)batch, (long long)max_work,
                             block_m);
  const size_t offsets_bytes = align_up((size_t)(batch + 1) * sizeof(int));
  const size_t schedule_bytes = align_up(sizeof(jsdpa_schedule_t));
  const size_t work_bytes = align_up((size_t)(max_work ? max_work : 1) * sizeof(jsdpa_work_t));
  CUstream stream = (CUstream)call->options.stream;

  JSDPA_RETURN_IF_ERROR(
      workspace_alloc(ctx, 2 * offsets_bytes + schedule_bytes + work_bytes, stream, out_ws));
  CUdeviceptr q_offsets = out_ws->base;
  CUdeviceptr kv_offsets = q_offsets + offsets_bytes;
  CUdeviceptr schedule = kv_offsets + offsets_bytes;
  CUdeviceptr work = schedule + schedule_bytes;

  jsdpa_prep_params_t p;
  memset(&p, 0, sizeof(p));
  jsdpa_status_t status = NULL;
  /* Host offsets are uploaded already as int32 into the output arrays; the
   * kernel converts them in place (a no-op) and checks them again. */
  if (call->q_offsets_memory == JSDPA_MEMORY_HOST) {
    status =
        upload_offsets(ctx, call->q.offsets, call->q.offsets_type, batch + 1, q_offsets, stream);
    p.q_offsets_in = (const void*)(uintptr_t)q_offsets;
  } else {
    p.q_offsets_in = call->q.offsets;
    p.q_offsets_is64 = call->q.offsets_type == JSDPA_INDEX_INT64;
  }
  if (!status && call->kv_offsets_memory == JSDPA_MEMORY_HOST) {
    status =
        upload_offsets(ctx, call->k.offsets, call->k.offsets_type, batch + 1, kv_offsets, stream);
    p.kv_offsets_in = (const void*)(uintptr_t)kv_offsets;
  } else {
    p.kv_offsets_in = call->k.offsets;
    p.kv_offsets_is64 = call->k.offsets_type == JSDPA_INDEX_INT64;
  }
  if (!status) {
    p.batch = (int)batch;
    p.total_q = (int)call->total_q;
    p.total_kv = (int)call->total_kv;
    p.block_m = block_m;
    p.block_n = block_n;
    p.causal = call->options.is_causal;
    p.max_work = (int)max_work;
    p.q_offsets_out = (int*)(uintptr_t)q_offsets;
    p.kv_offsets_out = (int*)(uintptr_t)kv_offsets;
    p.work = (jsdpa_work_t*)(uintptr_t)work;
    p.schedule = (jsdpa_schedule_t*)(uintptr_t)schedule;
    p.sticky_error = (int*)(uintptr_t)ctx->sticky_error;
    void* args[] = {&p};
    CUresult r = ctx->cu->cuLaunchKernel(prep->function, 1, 1, 1, (unsigned)prep->threads, 1, 1,
                                         (unsigned)prep->smem_bytes, stream, args, NULL);
    if (r != CUDA_SUCCESS)
      status = jsdpa_cuda_status(r, "cuLaunchKernel(jsdpa_prep)", __FILE__, __LINE__);
  }
  if (status) {
    jsdpa_workspace_release(ctx, call, out_ws);
    return status;
  }
  out_params->q_offsets = p.q_offsets_out;
  out_params->kv_offsets = p.kv_offsets_out;
  out_params->work = p.work;
  out_params->schedule = p.schedule;
  out_params->max_work = p.max_work;
  return NULL;
}
