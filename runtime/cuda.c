/* The CUDA driver and NVRTC through dlopen: one table of symbols per library,
 * filled once per process, so libjsdpa loads (and the cpu backend runs) on a
 * machine without either. */
#include "cuda_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define JSDPA_STR2(x) #x
#define JSDPA_STR(x) JSDPA_STR2(x) /* expands cuda.h's renames: cuMemAlloc -> "cuMemAlloc_v2" */

static jsdpa_cuda_driver_t driver;
static const jsdpa_cuda_driver_t* driver_ptr;
static char driver_reason[512];
static pthread_once_t driver_once = PTHREAD_ONCE_INIT;

static jsdpa_nvrtc_t nvrtc;
static const jsdpa_nvrtc_t* nvrtc_ptr;
static char nvrtc_reason[512];
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;

static void* open_first(const char* env, const char* const* names, char* reason, size_t cap) {
  const char* forced = getenv(env);
  if (forced && *forced) {
    void* h = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(reason, cap, "%s=%s could not be loaded: %s", env, forced, dlerror());
    return h;
  }
  const char* last = "";
  for (int i = 0; names[i]; ++i) {
    void* h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    last = dlerror();
  }
  snprintf(reason, cap, "could not load %s (set %s): %s", names[0], env, last ? last : "");
  return NULL;
}

static void load_driver(void) {
  static const char* const names[] = {"libcuda.so.1", "libcuda.so", NULL};
  void* h = open_first("JSDPA_CUDA_LIBRARY", names, driver_reason, sizeof(driver_reason));
  if (!h) return;
#define LOAD(name, required)                                                                  \
  driver.name = (__typeof__(driver.name))dlsym(h, JSDPA_STR(name));                          \
  if (!driver.name && required) {                                                            \
    snprintf(driver_reason, sizeof(driver_reason), "CUDA driver lacks %s", JSDPA_STR(name)); \
    return;                                                                                  \
  }
  JSDPA_CUDA_DRIVER_SYMBOLS(LOAD)
#undef LOAD
  CUresult r = driver.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = NULL;
    driver.cuGetErrorName(r, &name);
    snprintf(driver_reason, sizeof(driver_reason), "cuInit failed: %s (no usable GPU?)",
             name ? name : "unknown error");
    return;
  }
  driver.cuDriverGetVersion(&driver.version);
  driver_ptr = &driver;
}

static void load_nvrtc(void) {
  static const char* const names[] = {"libnvrtc.so.13",
                                      "libnvrtc.so.12",
                                      "libnvrtc.so",
                                      "/usr/local/cuda/lib64/libnvrtc.so.13",
                                      "/usr/local/cuda/lib64/libnvrtc.so",
                                      NULL};
  void* h = open_first("JSDPA_NVRTC_LIBRARY", names, nvrtc_reason, sizeof(nvrtc_reason));
  if (!h) return;
#define LOAD(name, required)                                                                 \
  nvrtc.name = (__typeof__(nvrtc.name))dlsym(h, JSDPA_STR(name));                           \
  if (!nvrtc.name && required) {                                                            \
    snprintf(nvrtc_reason, sizeof(nvrtc_reason), "NVRTC lacks %s", JSDPA_STR(name));        \
    return;                                                                                 \
  }
  JSDPA_NVRTC_SYMBOLS(LOAD)
#undef LOAD
  nvrtc.nvrtcVersion(&nvrtc.major, &nvrtc.minor);
  nvrtc_ptr = &nvrtc;
}

const jsdpa_cuda_driver_t* jsdpa_cuda_driver(const char** out_reason) {
  pthread_once(&driver_once, load_driver);
  if (out_reason) *out_reason = driver_ptr ? "" : driver_reason;
  return driver_ptr;
}

const jsdpa_nvrtc_t* jsdpa_nvrtc(const char** out_reason) {
  pthread_once(&nvrtc_once, load_nvrtc);
  if (out_reason) *out_reason = nvrtc_ptr ? "" : nvrtc_reason;
  return nvrtc_ptr;
}

jsdpa_status_t jsdpa_cuda_status(CUresult result, const char* call, const char* file, int line) {
  const char* name = "?";
  const char* text = "";
  if (driver_ptr) {
    driver.cuGetErrorName(result, &name);
    driver.cuGetErrorString(result, &text);
  }
  jsdpa_status_code_t code =
      result == CUDA_ERROR_OUT_OF_MEMORY ? JSDPA_STATUS_OUT_OF_MEMORY : JSDPA_STATUS_CUDA_ERROR;
  return jsdpa_make_status(code, "%s (%s:%d): %s: %s", call, file, line, name ? name : "?",
                           text ? text : "");
}

jsdpa_status_t jsdpa_nvrtc_compile(const char* what, const char* source, const char* const* options,
                                   int num_options, bool want_ptx, void** out_image,
                                   size_t* out_size, char** out_log) {
  *out_image = NULL;
  *out_size = 0;
  if (out_log) *out_log = NULL;
  const char* reason = NULL;
  const jsdpa_nvrtc_t* nv = jsdpa_nvrtc(&reason);
  if (!nv) return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE, "NVRTC unavailable: %s", reason);

  nvrtcProgram prog;
  nvrtcResult r = nv->nvrtcCreateProgram(&prog, source, what, 0, NULL, NULL);
  if (r != NVRTC_SUCCESS)
    return jsdpa_make_status(JSDPA_STATUS_COMPILE_ERROR, "nvrtcCreateProgram(%s): %s", what,
                             nv->nvrtcGetErrorString(r));
  nvrtcResult cr = nv->nvrtcCompileProgram(prog, num_options, options);
  size_t log_size = 0;
  char* log = NULL;
  if (nv->nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    log = malloc(log_size);
    if (log && nv->nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS) log[0] = '\0';
  }
  jsdpa_status_t status = NULL;
  if (cr != NVRTC_SUCCESS) {
    status = jsdpa_make_status(JSDPA_STATUS_COMPILE_ERROR, "NVRTC failed to compile %s: %s\n%s",
                               what, nv->nvrtcGetErrorString(cr), log ? log : "(no log)");
  } else {
    size_t size = 0;
    r = want_ptx ? nv->nvrtcGetPTXSize(prog, &size) : nv->nvrtcGetCUBINSize(prog, &size);
    char* image = r == NVRTC_SUCCESS ? malloc(size ? size : 1) : NULL;
    if (image) r = want_ptx ? nv->nvrtcGetPTX(prog, image) : nv->nvrtcGetCUBIN(prog, image);
    if (!image || r != NVRTC_SUCCESS) {
      free(image);
      status = jsdpa_make_status(JSDPA_STATUS_COMPILE_ERROR, "NVRTC produced no %s for %s: %s",
                                 want_ptx ? "PTX" : "CUBIN", what, nv->nvrtcGetErrorString(r));
    } else {
      *out_image = image;
      *out_size = size;
    }
  }
  nv->nvrtcDestroyProgram(&prog);
  if (out_log)
    *out_log = log;
  else
    free(log);
  return status;
}
