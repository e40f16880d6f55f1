/* The README's C example, built and run by the test suite so it cannot rot:
 * two sequences of 3 and 5 tokens, 4 heads of dim 64, causal. Host pointers
 * run on the cpu backend (device pointers would run on the GPU backends). */
#include <jsdpa.h>
#include <math.h>
#include <stdio.h>

enum { TOKENS = 8, HEADS = 4, DIM = 64 };

int main(void) {
  static float q[TOKENS * HEADS * DIM], k[TOKENS * HEADS * DIM], v[TOKENS * HEADS * DIM],
      out[TOKENS * HEADS * DIM];
  for (int i = 0; i < TOKENS * HEADS * DIM; ++i) {
    q[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    k[i] = (float)((i * 11) % 13) / 13.0f - 0.5f;
    v[i] = (float)((i * 7) % 19) / 19.0f - 0.5f;
    out[i] = NAN;
  }
  const int32_t offsets[] = {0, 3, 8}; /* batch of 2: tokens [0, 3) and [3, 8) */

  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  jsdpa_context_t* ctx = NULL;
  jsdpa_status_t s = jsdpa_context_create(&co, &ctx);

  jsdpa_jagged_t tq, tk, tv, to;
  jsdpa_jagged_initialize(&tq, q, JSDPA_DTYPE_FP32, TOKENS, HEADS, DIM, offsets, JSDPA_INDEX_INT32,
                          2);
  jsdpa_jagged_initialize(&tk, k, JSDPA_DTYPE_FP32, TOKENS, HEADS, DIM, offsets, JSDPA_INDEX_INT32,
                          2);
  jsdpa_jagged_initialize(&tv, v, JSDPA_DTYPE_FP32, TOKENS, HEADS, DIM, offsets, JSDPA_INDEX_INT32,
                          2);
  jsdpa_jagged_initialize(&to, out, JSDPA_DTYPE_FP32, TOKENS, HEADS, DIM, NULL, JSDPA_INDEX_INT32,
                          2);
  jsdpa_forward_options_t fo;
  jsdpa_forward_options_initialize(&fo);
  fo.is_causal = true;
  if (!s) s = jsdpa_forward(ctx, &fo, &tq, &tk, &tv, &to, NULL);
  if (s) {
    fprintf(stderr, "jsdpa: %s\n", jsdpa_status_message(s));
    jsdpa_status_free(s);
    jsdpa_context_destroy(ctx);
    return 1;
  }
  jsdpa_context_destroy(ctx);

  /* Causal, bottom-right aligned: each sequence's first token sees only itself,
   * so its output is its own value row. */
  for (int b = 0; b < 2; ++b)
    for (int h = 0, first = offsets[b]; h < HEADS; ++h)
      for (int d = 0; d < DIM; ++d) {
        const int i = (first * HEADS + h) * DIM + d;
        if (fabsf(out[i] - v[i]) > 1e-6f) {
          fprintf(stderr, "token %d head %d dim %d: %g, expected %g\n", first, h, d, out[i], v[i]);
          return 1;
        }
      }
  printf("test_example: ok (out[0] = %f)\n", out[0]);
  return 0;
}
