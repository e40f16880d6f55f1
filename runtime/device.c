/* The GPU a context uses: primary context (shared with the CUDA runtime, so
 * PyTorch's tensors and streams work as they are), exact architecture, and a
 * sticky error word the prep kernels set on malformed device offsets. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/*
 * Per-call workspaces (offsets, schedule) come from a pool of the context's own
 * with an unbounded release threshold: the driver's default pool returns its
 * memory at every synchronization, so the first call after a sync would map
 * memory again (measured on an H100: 100-255 us instead of ~10 us per call).
 * An own pool also leaves the default pool's settings, which other libraries
 * in the process may rely on, alone. Without pool support (old driver) the
 * workspace falls back to cuMemAllocAsync / cuMemAlloc (see jagged.c).
 */
static void create_pool(jsdpa_context_t* ctx) {
  const jsdpa_cuda_driver_t* cu = ctx->cu;
  if (!cu->cuMemPoolCreate || !cu->cuMemAllocFromPoolAsync || !cu->cuMemPoolSetAttribute) return;
  CUmemPoolProps props;
  memset(&props, 0, sizeof(props));
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = ctx->options.device;
  if (cu->cuMemPoolCreate(&ctx->pool, &props) != CUDA_SUCCESS) {
    ctx->pool = NULL;
    return;
  }
  cuuint64_t keep = ~(cuuint64_t)0;
  cu->cuMemPoolSetAttribute(ctx->pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep);
}

static jsdpa_status_t device_query(jsdpa_context_t* ctx) {
  const jsdpa_cuda_driver_t* cu = ctx->cu;
  int count = 0;
  CU_CHECK(cu, cuDeviceGetCount(&count));
  if (ctx->options.device < 0 || ctx->options.device >= count)
    return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE,
                             "options.device (%d) is not a CUDA device ordinal (found %d devices)",
                             ctx->options.device, count);
  CU_CHECK(cu, cuDeviceGet(&ctx->cu_device, ctx->options.device));
  int major = 0, minor = 0;
  CU_CHECK(cu, cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                    ctx->cu_device));
  CU_CHECK(cu, cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                    ctx->cu_device));
  CU_CHECK(cu, cuDeviceGetAttribute(&ctx->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                    ctx->cu_device));
  CU_CHECK(cu, cuDeviceGetAttribute(&ctx->max_smem_optin,
                                    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                    ctx->cu_device));
  CU_CHECK(cu, cuDeviceGetName(ctx->device_name, (int)sizeof(ctx->device_name), ctx->cu_device));
  ctx->arch.sm = major * 10 + minor;
  /* Hopper and newer data-center parts expose arch-specific instructions
   * (wgmma, setmaxnreg) only to code built for the "a" target. */
  ctx->arch.arch_specific = (ctx->arch.sm == 90 || ctx->arch.sm == 100);
  CU_CHECK(cu, cuDevicePrimaryCtxRetain(&ctx->cu_context, ctx->cu_device));
  JSDPA_RETURN_IF_ERROR(jsdpa_context_push(ctx));
  CUresult r = cu->cuMemAlloc(&ctx->sticky_error, sizeof(int));
  if (r == CUDA_SUCCESS) r = cu->cuMemsetD8(ctx->sticky_error, 0, sizeof(int));
  if (r == CUDA_SUCCESS) create_pool(ctx);
  jsdpa_context_pop(ctx);
  if (r != CUDA_SUCCESS)
    return jsdpa_cuda_status(r, "cuMemAlloc(sticky_error)", __FILE__, __LINE__);
  return NULL;
}

void jsdpa_device_open(jsdpa_context_t* ctx) {
  const char* reason = NULL;
  ctx->gpu = false;
  ctx->cu = jsdpa_cuda_driver(&reason);
  if (!ctx->cu) {
    snprintf(ctx->gpu_reason, sizeof(ctx->gpu_reason), "no CUDA driver: %s", reason);
    return;
  }
  /* The driver stays loaded so device pointers are still recognized (and
   * rejected by the cpu backend rather than dereferenced on the host). */
  if (ctx->options.device == JSDPA_DEVICE_NONE) {
    snprintf(ctx->gpu_reason, sizeof(ctx->gpu_reason),
             "the context was created without a GPU (options.device = JSDPA_DEVICE_NONE)");
    return;
  }
  jsdpa_status_t s = device_query(ctx);
  if (s) {
    snprintf(ctx->gpu_reason, sizeof(ctx->gpu_reason), "%s", jsdpa_status_message(s));
    jsdpa_status_free(s);
    if (ctx->cu_context) ctx->cu->cuDevicePrimaryCtxRelease(ctx->cu_device);
    ctx->cu_context = NULL;
    return;
  }
  ctx->gpu = true;
  ctx->gpu_reason[0] = '\0';
}

void jsdpa_device_close(jsdpa_context_t* ctx) {
  if (!ctx->gpu) return;
  if (jsdpa_context_push(ctx) == NULL) {
    if (ctx->sticky_error) ctx->cu->cuMemFree(ctx->sticky_error);
    if (ctx->pool) ctx->cu->cuMemPoolDestroy(ctx->pool);
    jsdpa_context_pop(ctx);
  }
  ctx->cu->cuDevicePrimaryCtxRelease(ctx->cu_device);
  ctx->gpu = false;
}

jsdpa_status_t jsdpa_context_push(jsdpa_context_t* ctx) {
  if (!ctx->gpu && !ctx->cu_context)
    return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE, "no GPU: %s", ctx->gpu_reason);
  CU_CHECK(ctx->cu, cuCtxPushCurrent(ctx->cu_context));
  return NULL;
}

void jsdpa_context_pop(jsdpa_context_t* ctx) {
  CUcontext popped;
  ctx->cu->cuCtxPopCurrent(&popped);
}

jsdpa_memory_t jsdpa_pointer_memory(const jsdpa_context_t* ctx, const void* ptr, int* out_device) {
  if (out_device) *out_device = -1;
  if (!ctx->cu || !ptr) return JSDPA_MEMORY_HOST;
  unsigned int type = 0;
  CUresult r = ctx->cu->cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                              (CUdeviceptr)(uintptr_t)ptr);
  if (r != CUDA_SUCCESS) return JSDPA_MEMORY_HOST; /* unregistered host memory */
  if (type == CU_MEMORYTYPE_HOST) return JSDPA_MEMORY_HOST;
  if (out_device) {
    int ordinal = -1;
    if (ctx->cu->cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                       (CUdeviceptr)(uintptr_t)ptr) == CUDA_SUCCESS)
      *out_device = ordinal;
  }
  return JSDPA_MEMORY_DEVICE;
}
