/*
 * Backend choice. Each backend is a row of one table (QBE's target struct):
 * a constraint check that explains itself and a run function. Selection asks
 * every row, so the caller always gets every rejection reason, and takes the
 * first row in preference order that can run (or the forced one).
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Preference order, as PyTorch's jagged SDPA (flash -> efficient -> math),
 * with the host backend last. */
static const jsdpa_backend_impl_t* const table[] = {
    &jsdpa_backend_flash,
    &jsdpa_backend_efficient,
    &jsdpa_backend_math,
    &jsdpa_backend_cpu,
};
enum { table_size = sizeof(table) / sizeof(table[0]) };

bool jsdpa_gpu_common_can_run(jsdpa_context_t* ctx, const jsdpa_call_t* call, char* why,
                              size_t capacity) {
  if (!ctx->gpu) {
    snprintf(why, capacity, "no usable GPU: %s", ctx->gpu_reason);
    return false;
  }
  if (call->memory != JSDPA_MEMORY_DEVICE) {
    snprintf(why, capacity, "the data is in host memory (GPU backends read device memory)");
    return false;
  }
  if (call->device != ctx->options.device) {
    snprintf(why, capacity, "the data is on device %d but the context uses device %d", call->device,
             ctx->options.device);
    return false;
  }
  if (call->options.precision == JSDPA_PRECISION_FP64) {
    snprintf(why, capacity,
             "options.precision is FP64 (float64 accumulation), which only the cpu backend runs");
    return false;
  }
  const char* reason = NULL;
  if (!jsdpa_nvrtc(&reason)) {
    snprintf(why, capacity, "NVRTC is unavailable: %s", reason);
    return false;
  }
  return true;
}

jsdpa_status_t jsdpa_select(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                            jsdpa_selection_t* out_selection,
                            const jsdpa_backend_impl_t** out_backend) {
  jsdpa_selection_t sel;
  memset(&sel, 0, sizeof(sel));
  sel.backend = JSDPA_BACKEND_AUTO;
  const jsdpa_backend_impl_t* chosen = NULL;
  const jsdpa_backend_t forced = call->options.backend;
  for (int i = 0; i < table_size; ++i) {
    const jsdpa_backend_impl_t* b = table[i];
    char* why = sel.reasons[b->id];
    if (b->can_run(ctx, call, why, JSDPA_REASON_CAPACITY)) {
      why[0] = '\0';
      if (!chosen && (forced == JSDPA_BACKEND_AUTO || forced == b->id)) chosen = b;
    } else if (why[0] == '\0') {
      snprintf(why, JSDPA_REASON_CAPACITY, "rejected without a reason");
    }
  }
  if (chosen) sel.backend = chosen->id;
  *out_selection = sel;
  *out_backend = chosen;
  if (chosen) return NULL;

  if (forced != JSDPA_BACKEND_AUTO)
    return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED,
                             "options.backend forces %s, which cannot run this call: %s",
                             jsdpa_backend_name(forced), sel.reasons[forced]);
  char list[JSDPA_BACKEND_COUNT * (JSDPA_REASON_CAPACITY + 32)];
  size_t used = 0;
  for (int b = JSDPA_BACKEND_FLASH; b < JSDPA_BACKEND_COUNT && used < sizeof(list); ++b)
    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s: %s",
                             b > JSDPA_BACKEND_FLASH ? "; " : "",
                             jsdpa_backend_name((jsdpa_backend_t)b), sel.reasons[b]);
  return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED,
                           "No viable backend for jagged attention was found: %s", list);
}

void jsdpa_selection_format(const jsdpa_selection_t* selection, char* buffer, size_t capacity) {
  if (!buffer || capacity == 0) return;
  buffer[0] = '\0';
  if (!selection) return;
  size_t used = 0;
#define APPEND(...)                                                                             \
  do {                                                                                          \
    if (used < capacity) used += (size_t)snprintf(buffer + used, capacity - used, __VA_ARGS__); \
  } while (0)
  APPEND("backend: %s\n", selection->backend == JSDPA_BACKEND_AUTO
                              ? "none"
                              : jsdpa_backend_name(selection->backend));
  for (int b = JSDPA_BACKEND_FLASH; b < JSDPA_BACKEND_COUNT; ++b) {
    const char* name = jsdpa_backend_name((jsdpa_backend_t)b);
    const char* why = selection->reasons[b];
    if (why[0] != '\0')
      APPEND("%s: rejected: %s\n", name, why);
    else if (b == (int)selection->backend)
      APPEND("%s: chosen\n", name);
    else
      APPEND("%s: could run (lower preference)\n", name);
  }
#undef APPEND
}
