/* status.h (runtime-internal) — building jsdpa_status_t values. */
#ifndef JSDPA_RUNTIME_STATUS_H_
#define JSDPA_RUNTIME_STATUS_H_

#include "jsdpa.h"

#if defined(__GNUC__)
#define JSDPA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define JSDPA_PRINTF(a, b)
#endif

/* A new status with a printf-style message; never returns NULL for code != OK
 * (allocation failure yields a static out-of-memory status). */
jsdpa_status_t jsdpa_make_status(jsdpa_status_code_t code, const char* format, ...)
    JSDPA_PRINTF(2, 3);

/* Prefixes "context: " to an existing status's message (returns the same status). */
jsdpa_status_t jsdpa_status_annotate(jsdpa_status_t status, const char* format, ...)
    JSDPA_PRINTF(2, 3);

#define JSDPA_INVALID(...) jsdpa_make_status(JSDPA_STATUS_INVALID_ARGUMENT, __VA_ARGS__)

#endif
