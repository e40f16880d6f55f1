/* The efficient backend (fp32, large or unequal head dims) arrives with its
 * kernel family in a later issue; until then it takes part in selection with
 * the GPU checks every backend shares and an honest rejection. */
#include <stdio.h>

#include "internal.h"

static bool efficient_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                              size_t capacity) {
  if (!jsdpa_gpu_common_can_run(ctx, call, why, capacity)) return false;
  snprintf(why, capacity, "the efficient kernel family is not implemented yet");
  return false;
}

static jsdpa_status_t efficient_run(jsdpa_context_t* ctx, const jsdpa_call_t* call) {
  (void)ctx;
  (void)call;
  return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED,
                           "the efficient kernel family is not implemented yet");
}

const jsdpa_backend_impl_t jsdpa_backend_efficient = {
    .id = JSDPA_BACKEND_EFFICIENT,
    .name = "efficient",
    .can_run = efficient_can_run,
    .run = efficient_run,
};
