/* element.h (runtime-internal) — one element of an API dtype, as a double. */
#ifndef JSDPA_RUNTIME_ELEMENT_H_
#define JSDPA_RUNTIME_ELEMENT_H_

#include <stddef.h>
#include <stdint.h>

#include "jsdpa.h"

/* Bytes per element; 0 for a value outside jsdpa_dtype_t. */
size_t jsdpa_dtype_size(jsdpa_dtype_t dtype);
/* base[i] widened exactly (fp16, bf16, fp32 are all doubles). */
double jsdpa_element_load(const void* base, jsdpa_dtype_t dtype, int64_t i);
/* base[i] = x, rounded to nearest even for fp16/bf16 (overflow to infinity). */
void jsdpa_element_store(void* base, jsdpa_dtype_t dtype, int64_t i, double x);

#endif
