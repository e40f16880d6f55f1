/* Status values: a code plus a heap message naming the argument and values. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jsdpa_status_s {
  jsdpa_status_code_t code;
  bool is_static;
  char* message;
};

static struct jsdpa_status_s oom_status = {JSDPA_STATUS_OUT_OF_MEMORY, true,
                                           "out of host memory while reporting an error"};

static char* vformat(const char* format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(NULL, 0, format, copy);
  va_end(copy);
  if (n < 0) return NULL;
  char* text = malloc((size_t)n + 1);
  if (text) vsnprintf(text, (size_t)n + 1, format, args);
  return text;
}

jsdpa_status_t jsdpa_make_status(jsdpa_status_code_t code, const char* format, ...) {
  if (code == JSDPA_STATUS_OK) return NULL;
  jsdpa_status_t s = malloc(sizeof(*s));
  if (!s) return &oom_status;
  va_list args;
  va_start(args, format);
  s->message = vformat(format, args);
  va_end(args);
  if (!s->message) {
    free(s);
    return &oom_status;
  }
  s->code = code;
  s->is_static = false;
  return s;
}

jsdpa_status_t jsdpa_status_annotate(jsdpa_status_t status, const char* format, ...) {
  if (!status || status->is_static) return status;
  va_list args;
  va_start(args, format);
  char* prefix = vformat(format, args);
  va_end(args);
  if (!prefix) return status;
  size_t n = strlen(prefix) + 2 + strlen(status->message) + 1;
  char* joined = malloc(n);
  if (joined) {
    snprintf(joined, n, "%s: %s", prefix, status->message);
    free(status->message);
    status->message = joined;
  }
  free(prefix);
  return status;
}

jsdpa_status_code_t jsdpa_status_code(jsdpa_status_t status) {
  return status ? status->code : JSDPA_STATUS_OK;
}

const char* jsdpa_status_message(jsdpa_status_t status) { return status ? status->message : "OK"; }

void jsdpa_status_free(jsdpa_status_t status) {
  if (!status || status->is_static) return;
  free(status->message);
  free(status);
}

const char* jsdpa_status_code_name(jsdpa_status_code_t code) {
  switch (code) {
    case JSDPA_STATUS_OK: return "OK";
    case JSDPA_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case JSDPA_STATUS_UNSUPPORTED: return "UNSUPPORTED";
    case JSDPA_STATUS_UNAVAILABLE: return "UNAVAILABLE";
    case JSDPA_STATUS_COMPILE_ERROR: return "COMPILE_ERROR";
    case JSDPA_STATUS_CUDA_ERROR: return "CUDA_ERROR";
    case JSDPA_STATUS_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case JSDPA_STATUS_IO_ERROR: return "IO_ERROR";
    case JSDPA_STATUS_INTERNAL: return "INTERNAL";
  }
  return "UNKNOWN";
}
