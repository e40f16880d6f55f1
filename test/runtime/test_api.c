/*
 * The public API around the forward call: option defaults, names, status
 * helpers, context creation errors, explain and its text, and what
 * verbosity / JSDPA_LOG print to stderr.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

/* ------------------------------------------------------------ stderr capture */

static int saved_stderr = -1;
static FILE* capture_file;

static void capture_begin(void) {
  fflush(stderr);
  capture_file = tmpfile();
  saved_stderr = dup(STDERR_FILENO);
  dup2(fileno(capture_file), STDERR_FILENO);
}

/* Returns what was written to stderr since capture_begin (malloc'd). */
static char* capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  long size = ftell(capture_file);
  if (size < 0) size = 0;
  char* text = calloc((size_t)size + 1, 1);
  rewind(capture_file);
  size_t got = fread(text, 1, (size_t)size, capture_file);
  text[got] = '\0';
  fclose(capture_file);
  return text;
}

/* ------------------------------------------------------------ tests */

static void test_defaults(void) {
  jsdpa_context_options_t co;
  memset(&co, 0x5a, sizeof(co));
  jsdpa_context_options_initialize(&co);
  CHECK(co.device == 0 && co.cache_dir == NULL && co.verbosity == 0 && co.cpu_threads == 0 &&
            co.tuning_db == NULL,
        "context option defaults");

  jsdpa_forward_options_t fo;
  memset(&fo, 0x5a, sizeof(fo));
  jsdpa_forward_options_initialize(&fo);
  CHECK(isnan(fo.scale), "default scale is NaN (1/sqrt(head_dim))");
  CHECK(!fo.is_causal && fo.backend == JSDPA_BACKEND_AUTO && fo.stream == NULL &&
            fo.window_left == -1 && fo.window_right == -1 && fo.softcap == 0.0f &&
            fo.precision == JSDPA_PRECISION_DEFAULT && !fo.validate_device_offsets,
        "forward option defaults");

  jsdpa_jagged_t t;
  memset(&t, 0x5a, sizeof(t));
  int32_t offsets[3] = {0, 2, 5};
  float data[5 * 3 * 4];
  jsdpa_jagged_initialize(&t, data, JSDPA_DTYPE_FP32, 5, 3, 4, offsets, JSDPA_INDEX_INT32, 2);
  CHECK(t.data == data && t.dtype == JSDPA_DTYPE_FP32 && t.total_tokens == 5 && t.heads == 3 &&
            t.head_dim == 4 && t.token_stride == 0 && t.head_stride == 0 && t.offsets == offsets &&
            t.offsets_type == JSDPA_INDEX_INT32 && t.batch == 2 && t.max_seqlen == -1,
        "jsdpa_jagged_initialize");
}

static void test_names(void) {
  CHECK(!strcmp(jsdpa_dtype_name(JSDPA_DTYPE_FP16), "fp16") &&
            !strcmp(jsdpa_dtype_name(JSDPA_DTYPE_BF16), "bf16") &&
            !strcmp(jsdpa_dtype_name(JSDPA_DTYPE_FP32), "fp32") &&
            !strcmp(jsdpa_dtype_name(JSDPA_DTYPE_FP64), "fp64") &&
            !strcmp(jsdpa_dtype_name((jsdpa_dtype_t)77), "invalid"),
        "dtype names");
  const char* const backends[] = {"auto", "flash", "efficient", "math", "cpu"};
  for (int b = 0; b < JSDPA_BACKEND_COUNT; ++b)
    CHECK(!strcmp(jsdpa_backend_name((jsdpa_backend_t)b), backends[b]), "backend %d is %s", b,
          jsdpa_backend_name((jsdpa_backend_t)b));
  CHECK(!strcmp(jsdpa_backend_name(JSDPA_BACKEND_COUNT), "invalid"), "backend COUNT name");
}

static void test_status(void) {
  CHECK(jsdpa_status_code(NULL) == JSDPA_STATUS_OK, "NULL status is OK");
  CHECK(!strcmp(jsdpa_status_message(NULL), "OK"), "NULL status message");
  jsdpa_status_free(NULL);
  const char* const names[] = {
      "OK",         "INVALID_ARGUMENT", "UNSUPPORTED", "UNAVAILABLE", "COMPILE_ERROR",
      "CUDA_ERROR", "OUT_OF_MEMORY",    "IO_ERROR",    "INTERNAL"};
  for (int c = 0; c <= JSDPA_STATUS_INTERNAL; ++c)
    CHECK(!strcmp(jsdpa_status_code_name((jsdpa_status_code_t)c), names[c]), "code %d name %s", c,
          jsdpa_status_code_name((jsdpa_status_code_t)c));
  jsdpa_status_t s = jsdpa_make_status(JSDPA_STATUS_IO_ERROR, "file %s: %d", "x", 3);
  s = jsdpa_status_annotate(s, "loading %s", "cache");
  CHECK(jsdpa_status_code(s) == JSDPA_STATUS_IO_ERROR, "annotate keeps the code");
  CHECK(!strcmp(jsdpa_status_message(s), "loading cache: file x: 3"), "annotated: %s",
        jsdpa_status_message(s));
  jsdpa_status_free(s);
  CHECK(jsdpa_make_status(JSDPA_STATUS_OK, "nothing") == NULL, "an OK status is NULL");
}

static void test_context_errors(void) {
  jsdpa_context_t* ctx = (jsdpa_context_t*)&ctx; /* must be reset to NULL on error */
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  CHECK_STATUS(jsdpa_context_create(&co, NULL), JSDPA_STATUS_INVALID_ARGUMENT,
               "out_context is NULL");
  CHECK_STATUS(jsdpa_context_create(NULL, &ctx), JSDPA_STATUS_INVALID_ARGUMENT, "options is NULL");
  CHECK(ctx == NULL, "out_context is NULL after an error");
  co.device = -2;
  CHECK_STATUS(jsdpa_context_create(&co, &ctx), JSDPA_STATUS_INVALID_ARGUMENT,
               "options.device (-2) is negative");
  /* JSDPA_DEVICE_NONE: a cpu-only context that says so in its GPU reason. */
  co.device = JSDPA_DEVICE_NONE;
  ctx = NULL;
  CHECK(jsdpa_context_create(&co, &ctx) == NULL, "a JSDPA_DEVICE_NONE context is created");
  if (ctx) {
    const char* why = NULL;
    CHECK(!jsdpa_context_has_gpu(ctx, &why), "a JSDPA_DEVICE_NONE context has no GPU");
    CHECK(why && (strstr(why, "JSDPA_DEVICE_NONE") || strstr(why, "no CUDA driver")),
          "the GPU reason names JSDPA_DEVICE_NONE or the missing driver");
    jsdpa_context_destroy(ctx);
    ctx = NULL;
  }
  co.device = 0;
  co.verbosity = -3;
  CHECK_STATUS(jsdpa_context_create(&co, &ctx), JSDPA_STATUS_INVALID_ARGUMENT,
               "options.verbosity (-3) is negative");
  co.verbosity = 0;
  co.cpu_threads = 5000;
  CHECK_STATUS(jsdpa_context_create(&co, &ctx), JSDPA_STATUS_INVALID_ARGUMENT,
               "options.cpu_threads (5000) must be in [0, 4096]");
  co.cpu_threads = -1;
  CHECK_STATUS(jsdpa_context_create(&co, &ctx), JSDPA_STATUS_INVALID_ARGUMENT,
               "options.cpu_threads (-1)");
  const char* reason = NULL;
  CHECK(!jsdpa_context_has_gpu(NULL, &reason) && reason && strstr(reason, "NULL"), "has_gpu(NULL)");
  CHECK_STATUS(jsdpa_context_check_device_errors(NULL, NULL), JSDPA_STATUS_INVALID_ARGUMENT,
               "context is NULL");
  jsdpa_cache_stats_t stats;
  memset(&stats, 0x5a, sizeof(stats));
  jsdpa_context_cache_stats(NULL, &stats);
  CHECK(stats.compiles == 0 && stats.memory_hits == 0 && !stats.disk_enabled,
        "cache stats of no context are zero");
  jsdpa_context_destroy(NULL);
}

static void test_context(void) {
  char dir[] = "/dev/null/jsdpa-cache"; /* cannot be created, even by root */
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = dir;
  jsdpa_context_t* ctx = NULL;
  capture_begin(); /* an unusable cache directory warns on stderr */
  jsdpa_status_t s = jsdpa_context_create(&co, &ctx);
  free(capture_end());
  if (!CHECK_OK(s)) return;
  /* The context keeps its own copy of the caller's strings. */
  CHECK(ctx->options.cache_dir != dir && !strcmp(ctx->options.cache_dir, dir),
        "options.cache_dir is copied");
  memset(dir, 'x', sizeof(dir) - 1);
  CHECK(ctx->cpu_threads >= 1, "cpu_threads 0 resolves to the online CPUs (%d)", ctx->cpu_threads);
  const char* reason = NULL;
  bool gpu = jsdpa_context_has_gpu(ctx, &reason);
  CHECK(gpu || (reason && reason[0]), "no GPU must come with a reason");
  printf("  GPU: %s%s\n", gpu ? "yes" : "no: ", gpu ? "" : reason);
  if (!gpu) CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL));
  jsdpa_cache_stats_t stats;
  jsdpa_context_cache_stats(ctx, &stats);
  CHECK(stats.compiles == 0 && stats.disk_hits == 0, "a fresh context compiled nothing");
  jsdpa_context_destroy(ctx);
}

/* A small host case shared by the explain and logging tests. */
static testutil_case_t* small_case(void) {
  int64_t lens[] = {4, 1};
  testutil_case_config_t cfg = {.batch = 2,
                                .q_lens = lens,
                                .heads = 2,
                                .kv_heads = 2,
                                .head_dim = 16,
                                .dtype = JSDPA_DTYPE_FP16,
                                .with_lse = true};
  return testutil_case_create(&cfg);
}

static void test_explain(jsdpa_context_t* ctx) {
  testutil_case_t* c = small_case();
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &c->q, &c->k, &c->v, &c->out, c->lse, &sel))) {
    CHECK(sel.backend == JSDPA_BACKEND_CPU, "explain chose %s", jsdpa_backend_name(sel.backend));
    CHECK(sel.reasons[JSDPA_BACKEND_CPU][0] == '\0', "cpu could run");
    for (int b = JSDPA_BACKEND_FLASH; b <= JSDPA_BACKEND_MATH; ++b)
      CHECK(sel.reasons[b][0] != '\0', "%s must say why not", jsdpa_backend_name(b));
    char text[4096];
    jsdpa_selection_format(&sel, text, sizeof(text));
    CHECK(!strncmp(text,
                   "backend: cpu\nflash: rejected: ", strlen("backend: cpu\nflash: rejected: ")),
          "explain text: %s", text);
    CHECK(strstr(text, "\ncpu: chosen\n") != NULL, "explain text: %s", text);
    /* Truncation stays NUL-terminated; capacity 0 writes nothing. */
    char small[12];
    memset(small, '#', sizeof(small));
    jsdpa_selection_format(&sel, small, 10);
    CHECK(strlen(small) == 9 && !strncmp(small, "backend: ", 9) && small[10] == '#',
          "truncated explain text: \"%s\"", small);
    jsdpa_selection_format(&sel, small, 0);
    CHECK(small[0] == 'b', "capacity 0 writes nothing");
  }
  /* Nothing is computed: out and lse keep their poison. */
  CHECK(isnan(testutil_load(c->out.data, c->out.dtype, 0)) && isnan(c->lse[0]),
        "explain must not write out or lse");

  /* A forced backend that cannot run: UNSUPPORTED, and the selection is
   * still filled so the caller can show why. */
  o.backend = JSDPA_BACKEND_EFFICIENT;
  jsdpa_status_t s = jsdpa_explain(ctx, &o, &c->q, &c->k, &c->v, &c->out, c->lse, &sel);
  CHECK_STATUS(s, JSDPA_STATUS_UNSUPPORTED, "options.backend forces efficient");
  CHECK(sel.backend == JSDPA_BACKEND_AUTO && sel.reasons[JSDPA_BACKEND_EFFICIENT][0] != '\0' &&
            sel.reasons[JSDPA_BACKEND_CPU][0] == '\0',
        "selection after a failed forced explain");
  char text[4096];
  jsdpa_selection_format(&sel, text, sizeof(text));
  CHECK(!strncmp(text, "backend: none\n", strlen("backend: none\n")) &&
            strstr(text, "cpu: could run (lower preference)\n") != NULL,
        "explain text without a choice: %s", text);
  testutil_case_destroy(c);
}

/* Runs one forward on a fresh context with the given verbosity and
 * JSDPA_LOG value (NULL: unset); returns stderr. */
static char* forward_logged(int verbosity, const char* env) {
  if (env)
    setenv("JSDPA_LOG", env, 1);
  else
    unsetenv("JSDPA_LOG");
  testutil_case_t* c = small_case();
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = "";
  co.verbosity = verbosity;
  co.cpu_threads = 2;
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  o.is_causal = true;
  capture_begin();
  jsdpa_context_t* ctx = NULL;
  jsdpa_status_t s1 = jsdpa_context_create(&co, &ctx);
  jsdpa_status_t s2 = ctx ? jsdpa_forward(ctx, &o, &c->q, &c->k, &c->v, &c->out, c->lse) : NULL;
  jsdpa_log(NULL, 1, "context-free line %d", 7);
  char* text = capture_end();
  CHECK_OK(s1);
  CHECK_OK(s2);
  jsdpa_context_destroy(ctx);
  testutil_case_destroy(c);
  unsetenv("JSDPA_LOG");
  return text;
}

static void test_logging(void) {
  char* quiet = forward_logged(0, NULL);
  CHECK(quiet[0] == '\0', "verbosity 0 prints nothing, got: %s", quiet);
  free(quiet);

  const char* const variants[][2] = {{"verbosity 1", NULL}, {"JSDPA_LOG=1", "1"}};
  for (int i = 0; i < 2; ++i) {
    char* text = forward_logged(variants[i][1] ? 0 : 1, variants[i][1]);
    printf("  %s prints:\n%s", variants[i][0], text);
    CHECK(strstr(text, "jsdpa: forward: batch 2, q 5 tokens x 2 heads") != NULL,
          "%s: the call is described", variants[i][0]);
    CHECK(strstr(text, "-> backend cpu\n") != NULL, "%s: the choice is logged", variants[i][0]);
    CHECK(strstr(text, "jsdpa:   math rejected: ") != NULL &&
              strstr(text, "jsdpa:   efficient rejected: ") != NULL &&
              strstr(text, "jsdpa:   flash rejected: ") != NULL,
          "%s: every rejection is logged", variants[i][0]);
    CHECK(strstr(text, "cpu backend: ") == NULL, "%s: level-2 lines stay quiet", variants[i][0]);
    bool env_line = strstr(text, "jsdpa: context-free line 7\n") != NULL;
    CHECK(env_line == (variants[i][1] != NULL), "%s: jsdpa_log(NULL) follows JSDPA_LOG",
          variants[i][0]);
    free(text);
  }
  char* debug = forward_logged(0, "2");
  CHECK(strstr(debug, "jsdpa: cpu backend: ") != NULL, "JSDPA_LOG=2 shows the cpu backend: %s",
        debug);
  free(debug);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  unsetenv("JSDPA_LOG");
  test_defaults();
  test_names();
  test_status();
  test_context_errors();
  test_context();

  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.cache_dir = "";
  jsdpa_context_t* ctx = NULL;
  if (CHECK_OK(jsdpa_context_create(&co, &ctx))) {
    test_explain(ctx);
    jsdpa_context_destroy(ctx);
  }
  test_logging();
  return testutil_finish();
}
