/*
 * cuda_dl.h (runtime-internal) — the CUDA driver and NVRTC, loaded with dlopen.
 *
 * One X-macro list per library names every entry point the project uses; the
 * table of function pointers is filled once per process. Without a driver the
 * library still loads and the cpu backend runs; jsdpa_cuda_driver() then
 * returns NULL and a reason. CU_CHECK / NVRTC_CHECK turn a failed call into a
 * jsdpa_status_t naming the call site (and, for NVRTC, carrying the log).
 *
 * Types and versioned symbol names come from the toolkit's <cuda.h> / <nvrtc.h>
 * (the macro renames there, e.g. cuMemAlloc -> cuMemAlloc_v2, pick the symbol).
 */
#ifndef JSDPA_RUNTIME_CUDA_DL_H_
#define JSDPA_RUNTIME_CUDA_DL_H_

#include <cuda.h>
#include <nvrtc.h>

#include "jsdpa.h"

/* X(name, required): optional symbols may be NULL (e.g. newer-driver entry points). */
#define JSDPA_CUDA_DRIVER_SYMBOLS(X)              \
  X(cuInit, 1)                                    \
  X(cuDriverGetVersion, 1)                        \
  X(cuGetErrorName, 1)                            \
  X(cuGetErrorString, 1)                          \
  X(cuDeviceGet, 1)                               \
  X(cuDeviceGetCount, 1)                          \
  X(cuDeviceGetAttribute, 1)                      \
  X(cuDeviceGetName, 1)                           \
  X(cuDevicePrimaryCtxRetain, 1)                  \
  X(cuDevicePrimaryCtxRelease, 1)                 \
  X(cuCtxGetCurrent, 1)                           \
  X(cuCtxSetCurrent, 1)                           \
  X(cuCtxPushCurrent, 1)                          \
  X(cuCtxPopCurrent, 1)                           \
  X(cuCtxSynchronize, 1)                          \
  X(cuPointerGetAttribute, 1)                     \
  X(cuModuleLoadData, 1)                          \
  X(cuModuleUnload, 1)                            \
  X(cuModuleGetFunction, 1)                       \
  X(cuModuleGetGlobal, 1)                         \
  X(cuFuncSetAttribute, 1)                        \
  X(cuFuncGetAttribute, 1)                        \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor, 1) \
  X(cuLaunchKernel, 1)                            \
  X(cuMemAlloc, 1)                                \
  X(cuMemFree, 1)                                 \
  X(cuMemAllocAsync, 0)                           \
  X(cuMemFreeAsync, 0)                            \
  X(cuMemPoolCreate, 0)                           \
  X(cuMemPoolDestroy, 0)                          \
  X(cuMemPoolSetAttribute, 0)                     \
  X(cuMemAllocFromPoolAsync, 0)                   \
  X(cuMemAllocHost, 1)                            \
  X(cuMemFreeHost, 1)                             \
  X(cuMemGetInfo, 1)                              \
  X(cuMemcpyHtoD, 1)                              \
  X(cuMemcpyDtoH, 1)                              \
  X(cuMemcpyDtoD, 1)                              \
  X(cuMemcpyHtoDAsync, 1)                         \
  X(cuMemcpyDtoHAsync, 1)                         \
  X(cuMemsetD8Async, 1)                           \
  X(cuMemsetD32Async, 1)                          \
  X(cuMemsetD8, 1)                                \
  X(cuStreamCreate, 1)                            \
  X(cuStreamDestroy, 1)                           \
  X(cuStreamSynchronize, 1)                       \
  X(cuEventCreate, 1)                             \
  X(cuEventDestroy, 1)                            \
  X(cuEventRecord, 1)                             \
  X(cuEventSynchronize, 1)                        \
  X(cuEventElapsedTime, 1)                        \
  X(cuTensorMapEncodeTiled, 0)

#define JSDPA_NVRTC_SYMBOLS(X)   \
  X(nvrtcVersion, 1)             \
  X(nvrtcGetErrorString, 1)      \
  X(nvrtcCreateProgram, 1)       \
  X(nvrtcDestroyProgram, 1)      \
  X(nvrtcCompileProgram, 1)      \
  X(nvrtcGetProgramLogSize, 1)   \
  X(nvrtcGetProgramLog, 1)       \
  X(nvrtcGetPTXSize, 1)          \
  X(nvrtcGetPTX, 1)              \
  X(nvrtcGetCUBINSize, 1)        \
  X(nvrtcGetCUBIN, 1)            \
  X(nvrtcGetNumSupportedArchs, 1) \
  X(nvrtcGetSupportedArchs, 1)

#define JSDPA_DECLARE_PFN(name, required) __typeof__(&name) name;

typedef struct jsdpa_cuda_driver_s {
  JSDPA_CUDA_DRIVER_SYMBOLS(JSDPA_DECLARE_PFN)
  int version; /* cuDriverGetVersion */
} jsdpa_cuda_driver_t;

typedef struct jsdpa_nvrtc_s {
  JSDPA_NVRTC_SYMBOLS(JSDPA_DECLARE_PFN)
  int major, minor;
} jsdpa_nvrtc_t;

/* Loaded once per process (thread-safe). NULL if unavailable; *out_reason says why. */
const jsdpa_cuda_driver_t* jsdpa_cuda_driver(const char** out_reason);
const jsdpa_nvrtc_t* jsdpa_nvrtc(const char** out_reason);

/* Status from a failed CUresult: "cuLaunchKernel (runtime/x.c:12): CUDA_ERROR_...: text". */
jsdpa_status_t jsdpa_cuda_status(CUresult result, const char* call, const char* file, int line);

#define CU_CHECK(drv, call)                                                         \
  do {                                                                              \
    CUresult jsdpa_cu_result_ = (drv)->call;                                        \
    if (jsdpa_cu_result_ != CUDA_SUCCESS)                                           \
      return jsdpa_cuda_status(jsdpa_cu_result_, #call, __FILE__, __LINE__);        \
  } while (0)

/*
 * NVRTC compile of one source for one arch. On success returns NULL and fills
 * *out_image (malloc'd cubin, or PTX text when want_ptx) and *out_size. On a
 * compile error returns JSDPA_STATUS_COMPILE_ERROR naming `what` (the kernel
 * name) and carrying NVRTC's log. *out_log (optional, malloc'd) gets the log
 * either way (warnings, -Xptxas -v style info).
 */
jsdpa_status_t jsdpa_nvrtc_compile(const char* what, const char* source, const char* const* options,
                                   int num_options, bool want_ptx, void** out_image,
                                   size_t* out_size, char** out_log);

#endif /* JSDPA_RUNTIME_CUDA_DL_H_ */
