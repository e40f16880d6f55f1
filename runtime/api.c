/*
 * The public entry points: names, options, the context, and jsdpa_forward /
 * jsdpa_explain, which run the pipeline as a straight list
 * (validate -> select -> run).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tuning.h"

/* More host threads than this is a mistake, not a machine. */
#define JSDPA_MAX_CPU_THREADS 4096

const char* jsdpa_dtype_name(jsdpa_dtype_t dtype) {
  switch (dtype) {
    case JSDPA_DTYPE_FP16: return "fp16";
    case JSDPA_DTYPE_BF16: return "bf16";
    case JSDPA_DTYPE_FP32: return "fp32";
    case JSDPA_DTYPE_FP64: return "fp64";
  }
  return "invalid";
}

const char* jsdpa_backend_name(jsdpa_backend_t backend) {
  switch (backend) {
    case JSDPA_BACKEND_AUTO: return "auto";
    case JSDPA_BACKEND_FLASH: return "flash";
    case JSDPA_BACKEND_EFFICIENT: return "efficient";
    case JSDPA_BACKEND_MATH: return "math";
    case JSDPA_BACKEND_CPU: return "cpu";
    case JSDPA_BACKEND_COUNT: break;
  }
  return "invalid";
}

void jsdpa_jagged_initialize(jsdpa_jagged_t* t, void* data, jsdpa_dtype_t dtype,
                             int64_t total_tokens, int64_t heads, int64_t head_dim,
                             const void* offsets, jsdpa_index_type_t offsets_type, int64_t batch) {
  memset(t, 0, sizeof(*t));
  t->data = data;
  t->dtype = dtype;
  t->total_tokens = total_tokens;
  t->heads = heads;
  t->head_dim = head_dim;
  t->offsets = offsets;
  t->offsets_type = offsets_type;
  t->batch = batch;
  t->max_seqlen = -1;
}

/* ------------------------------------------------------------ logging */

/* JSDPA_LOG=N raises the verbosity of every context to at least N. */
static int env_log_level(void) {
  const char* text = getenv("JSDPA_LOG");
  if (!text || !*text) return 0;
  char* end = NULL;
  long level = strtol(text, &end, 10);
  if (end == text) return 1; /* JSDPA_LOG=yes */
  return level < 0 ? 0 : level > 9 ? 9 : (int)level;
}

void jsdpa_log(const jsdpa_context_t* ctx, int level, const char* format, ...) {
  int verbosity = ctx ? ctx->verbosity : env_log_level();
  if (verbosity < level) return;
  char line[2048];
  int n = snprintf(line, sizeof(line), "jsdpa: ");
  va_list args;
  va_start(args, format);
  vsnprintf(line + n, sizeof(line) - (size_t)n, format, args);
  va_end(args);
  size_t len = strlen(line);
  if (len > 0 && line[len - 1] != '\n' && len + 1 < sizeof(line)) {
    line[len] = '\n';
    line[len + 1] = '\0';
  }
  /* One fputs per line: stdio's lock keeps lines of concurrent calls whole. */
  fputs(line, stderr);
}

/* ------------------------------------------------------------ context */

void jsdpa_context_options_initialize(jsdpa_context_options_t* options) {
  memset(options, 0, sizeof(*options));
  options->device = 0;
  options->cache_dir = NULL;
  options->verbosity = 0;
  options->cpu_threads = 0;
  options->tuning_db = NULL;
}

static jsdpa_status_t copy_string(const char* name, const char* text, const char** out) {
  *out = NULL;
  if (!text) return NULL;
  char* copy = strdup(text);
  if (!copy) return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "copying %s", name);
  *out = copy;
  return NULL;
}

jsdpa_status_t jsdpa_context_create(const jsdpa_context_options_t* options,
                                    jsdpa_context_t** out_context) {
  if (!out_context) return JSDPA_INVALID("out_context is NULL");
  *out_context = NULL;
  if (!options)
    return JSDPA_INVALID("options is NULL (fill one with jsdpa_context_options_initialize)");
  if (options->device < JSDPA_DEVICE_NONE)
    return JSDPA_INVALID("options.device (%d) is negative (JSDPA_DEVICE_NONE is %d)", options->device,
                         JSDPA_DEVICE_NONE);
  if (options->verbosity < 0)
    return JSDPA_INVALID("options.verbosity (%d) is negative", options->verbosity);
  if (options->cpu_threads < 0 || options->cpu_threads > JSDPA_MAX_CPU_THREADS)
    return JSDPA_INVALID("options.cpu_threads (%d) must be in [0, %d] (0 = online CPUs)",
                         options->cpu_threads, JSDPA_MAX_CPU_THREADS);

  jsdpa_context_t* ctx = calloc(1, sizeof(*ctx));
  if (!ctx) return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "allocating a context");
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    free(ctx);
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL, "pthread_mutex_init failed");
  }
  /* The caller's strings may not outlive this call: the context keeps copies. */
  ctx->options = *options;
  jsdpa_status_t s = copy_string("options.cache_dir", options->cache_dir, &ctx->options.cache_dir);
  if (!s) s = copy_string("options.tuning_db", options->tuning_db, &ctx->options.tuning_db);
  if (s) {
    jsdpa_context_destroy(ctx);
    return s;
  }
  int env = env_log_level();
  ctx->verbosity = options->verbosity > env ? options->verbosity : env;
  ctx->cpu_threads = options->cpu_threads;
  if (ctx->cpu_threads == 0) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    ctx->cpu_threads = online < 1                       ? 1
                       : online > JSDPA_MAX_CPU_THREADS ? JSDPA_MAX_CPU_THREADS
                                                        : (int)online;
  }

  jsdpa_device_open(ctx);
  if (ctx->gpu)
    jsdpa_log(ctx, 1, "device %d: %s (sm_%d%s, %d SMs)", options->device, ctx->device_name,
              ctx->arch.sm, ctx->arch.arch_specific ? "a" : "", ctx->sm_count);
  else
    jsdpa_log(ctx, 1, "no GPU, the cpu backend runs: %s", ctx->gpu_reason);

  s = jsdpa_cache_create(ctx, &ctx->cache);
  if (!s) {
    const jsdpa_tuning_device_t device = {ctx->device_name, ctx->sm_count, ctx->arch};
    s = jsdpa_tuning_load(ctx, ctx->options.tuning_db, ctx->gpu ? &device : NULL, &ctx->tuning);
  }
  if (s) {
    jsdpa_context_destroy(ctx);
    return s;
  }
  *out_context = ctx;
  return NULL;
}

void jsdpa_context_destroy(jsdpa_context_t* context) {
  if (!context) return;
  if (context->cache) jsdpa_cache_destroy(context->cache);
  jsdpa_tuning_destroy(context->tuning);
  jsdpa_device_close(context);
  pthread_mutex_destroy(&context->lock);
  free((char*)context->options.cache_dir);
  free((char*)context->options.tuning_db);
  free(context);
}

bool jsdpa_context_has_gpu(const jsdpa_context_t* context, const char** out_reason) {
  if (!context) {
    if (out_reason) *out_reason = "context is NULL";
    return false;
  }
  if (out_reason) *out_reason = context->gpu ? "" : context->gpu_reason;
  return context->gpu;
}

static const char* prep_error_text(int code) {
  switch (code) {
    case JSDPA_PREP_ERR_Q_START: return "q.offsets[0] is not 0";
    case JSDPA_PREP_ERR_Q_DECREASE: return "q.offsets decrease";
    case JSDPA_PREP_ERR_Q_END: return "q.offsets[batch] differs from q.total_tokens";
    case JSDPA_PREP_ERR_KV_START: return "k.offsets[0] is not 0";
    case JSDPA_PREP_ERR_KV_DECREASE: return "k.offsets decrease";
    case JSDPA_PREP_ERR_KV_END: return "k.offsets[batch] differs from k.total_tokens";
  }
  return NULL;
}

static jsdpa_status_t read_and_clear_sticky(jsdpa_context_t* ctx, int* out_code) {
  CU_CHECK(ctx->cu, cuMemcpyDtoH(out_code, ctx->sticky_error, sizeof(*out_code)));
  if (*out_code != 0) CU_CHECK(ctx->cu, cuMemsetD8(ctx->sticky_error, 0, sizeof(*out_code)));
  return NULL;
}

jsdpa_status_t jsdpa_context_check_device_errors(jsdpa_context_t* context, void* stream) {
  if (!context) return JSDPA_INVALID("context is NULL");
  if (!context->gpu) return NULL; /* nothing ever ran on a device */
  JSDPA_RETURN_IF_ERROR(jsdpa_context_push(context));
  int code = 0;
  CUresult r = context->cu->cuStreamSynchronize((CUstream)stream);
  jsdpa_status_t s =
      r == CUDA_SUCCESS ? NULL : jsdpa_cuda_status(r, "cuStreamSynchronize", __FILE__, __LINE__);
  if (!s) {
    /* Locked so two threads cannot both read one error and both clear it. */
    pthread_mutex_lock(&context->lock);
    s = read_and_clear_sticky(context, &code);
    pthread_mutex_unlock(&context->lock);
  }
  jsdpa_context_pop(context);
  if (s || code == 0) return s;
  const char* text = prep_error_text(code);
  if (text)
    return JSDPA_INVALID(
        "malformed device offsets in an earlier call: %s (prep error %d); its "
        "attention wrote nothing",
        text, code);
  return jsdpa_make_status(JSDPA_STATUS_INTERNAL, "the device error word holds unknown code %d",
                           code);
}

void jsdpa_context_cache_stats(const jsdpa_context_t* context, jsdpa_cache_stats_t* out_stats) {
  if (!out_stats) return;
  memset(out_stats, 0, sizeof(*out_stats));
  if (context && context->cache) jsdpa_cache_get_stats(context->cache, out_stats);
}

/* ------------------------------------------------------------ forward */

void jsdpa_forward_options_initialize(jsdpa_forward_options_t* options) {
  memset(options, 0, sizeof(*options));
  options->is_causal = false;
  options->scale = NAN;
  options->backend = JSDPA_BACKEND_AUTO;
  options->stream = NULL;
  options->window_left = -1;
  options->window_right = -1;
  options->softcap = 0.0f;
  options->precision = JSDPA_PRECISION_DEFAULT;
  options->validate_device_offsets = false;
}

static void log_selection(jsdpa_context_t* ctx, const jsdpa_call_t* call,
                          const jsdpa_selection_t* sel) {
  if (ctx->verbosity < 1) return;
  jsdpa_log(
      ctx, 1,
      "forward: batch %lld, q %lld tokens x %lld heads, kv %lld tokens x %lld heads, d %lld/%lld, "
      "%s%s%s -> backend %s",
      (long long)call->batch, (long long)call->total_q, (long long)call->heads,
      (long long)call->total_kv, (long long)call->kv_heads, (long long)call->head_dim,
      (long long)call->head_dim_v, jsdpa_dtype_name(call->q.dtype),
      call->options.is_causal ? ", causal" : "", call->window ? ", window" : "",
      sel->backend == JSDPA_BACKEND_AUTO ? "none" : jsdpa_backend_name(sel->backend));
  for (int b = JSDPA_BACKEND_FLASH; b < JSDPA_BACKEND_COUNT; ++b)
    if (sel->reasons[b][0] != '\0')
      jsdpa_log(ctx, 1, "  %s rejected: %s", jsdpa_backend_name((jsdpa_backend_t)b),
                sel->reasons[b]);
}

jsdpa_status_t jsdpa_forward(jsdpa_context_t* context, const jsdpa_forward_options_t* options,
                             const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                             const jsdpa_jagged_t* v, const jsdpa_jagged_t* out, float* out_lse) {
  jsdpa_call_t call;
  JSDPA_RETURN_IF_ERROR(jsdpa_validate(context, options, q, k, v, out, out_lse, &call));
  jsdpa_selection_t sel;
  const jsdpa_backend_impl_t* backend = NULL;
  jsdpa_status_t s = jsdpa_select(context, &call, &sel, &backend);
  log_selection(context, &call, &sel);
  if (s) return s;
  return backend->run(context, &call);
}

jsdpa_status_t jsdpa_explain(jsdpa_context_t* context, const jsdpa_forward_options_t* options,
                             const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                             const jsdpa_jagged_t* v, const jsdpa_jagged_t* out,
                             const float* out_lse, jsdpa_selection_t* out_selection) {
  if (!out_selection) return JSDPA_INVALID("out_selection is NULL");
  memset(out_selection, 0, sizeof(*out_selection));
  out_selection->backend = JSDPA_BACKEND_AUTO;
  jsdpa_call_t call;
  JSDPA_RETURN_IF_ERROR(jsdpa_validate(context, options, q, k, v, out, out_lse, &call));
  const jsdpa_backend_impl_t* backend = NULL;
  jsdpa_status_t s = jsdpa_select(context, &call, out_selection, &backend);
  log_selection(context, &call, out_selection);
  return s;
}
