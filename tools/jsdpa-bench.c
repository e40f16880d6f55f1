/*
 * jsdpa-bench — times jsdpa_forward on the canonical jagged workloads.
 *
 * Reads bench/workloads.yaml (or --file) with libyaml: every workload x head
 * config (head_dim, heads) x dtype x causal cell, or one custom batch from
 * --lengths. Per cell it prints the backend that ran, the median time of
 * --reps calls after --warmup calls (CUDA events around each call on its
 * stream, after a 256 MiB device write that flushes the L2), and TFLOP/s
 * counted as 4*L*L*d*H per sequence (4*d*H*L*(L+1)/2 when causal). The time
 * covers the whole call on the device: the prep kernel and the attention
 * kernel. --json writes the cells for bench/compare.py.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dl.h"
#include "jsdpa.h"
#include "toolutil.h"
#include "tuning.h"

typedef struct args_s {
  const char* file;
  const char* lengths;
  const char* workload;
  const char* json;
  jsdpa_backend_t backend;
  int64_t head_dim, heads, kv_heads;
  int dtype;  /* 0: the file's list */
  int causal; /* -1: the file's list */
  int warmup, reps;
  bool tile_set; /* --tile: every tiled kernel runs this tile */
  jsdpa_gen_tile_t tile;
} args_t;

static void usage(FILE* f) {
  fprintf(f,
          "usage: jsdpa-bench [options]\n"
          "Times jsdpa_forward on the canonical jagged workloads (bench/workloads.yaml).\n"
          "  --file PATH          workloads file (default bench/workloads.yaml)\n"
          "  --workload NAME      only this workload of the file\n"
          "  --lengths a,b,...    one custom batch (self-attention) instead of the file's\n"
          "  --head-dim D --heads H   one head config instead of the file's (both needed)\n"
          "  --kv-heads G         kv heads (default: heads)\n"
          "  --dtype fp16|bf16|fp32   one dtype instead of the file's\n"
          "  --causal 0|1         one causal setting instead of the file's\n"
          "  --backend NAME       auto (default), flash, efficient, math\n"
          "  --tile mMnNwWsS      run the tiled backends with this tile (e.g. m64n32w4s1)\n"
          "                       instead of the tuning database's or the default\n"
          "  --warmup N --reps N  calls before timing (3) and timed calls (15)\n"
          "  --json FILE          also write the cells as JSON\n");
}

typedef struct bench_s {
  jsdpa_context_t* ctx;
  const jsdpa_cuda_driver_t* cu;
  toolutil_timer_t timer;
  const args_t* a;
  FILE* json;
  int cells;
} bench_t;

/* Times one cell; prints its line and JSON entry. */
static void run_cell(bench_t* b, const toolutil_batch_t* t, bool causal) {
  const args_t* a = b->a;
  const double flops = toolutil_flops(t->lengths, t->count, t->head_dim, t->heads, causal);
  toolutil_call_t call = {.ctx = b->ctx, .batch = t};
  jsdpa_forward_options_initialize(&call.options);
  call.options.is_causal = causal;
  call.options.backend = a->backend;
  call.options.stream = (void*)b->timer.stream;

  jsdpa_selection_t sel;
  jsdpa_status_t s = jsdpa_explain(b->ctx, &call.options, &t->q, &t->k, &t->v, &t->out, NULL, &sel);
  if (s) toolutil_die_status("explain", s);
  const char* backend = jsdpa_backend_name(sel.backend);

  double median = 0;
  s = toolutil_time_median(&b->timer, toolutil_forward_call, &call, a->warmup, a->reps, &median);
  if (s) toolutil_die_status("forward", s);
  s = jsdpa_context_check_device_errors(b->ctx, (void*)b->timer.stream);
  if (s) toolutil_die_status("device errors", s);
  const double tflops = median > 0 ? flops / (median * 1e9) : 0;
  printf("%-8s %5lld %5lld %-5s %-6s %-10s %10.3f %9.1f\n", t->name, (long long)t->head_dim,
         (long long)t->heads, jsdpa_dtype_name(t->dtype), causal ? "yes" : "no", backend, median,
         tflops);
  fflush(stdout);
  if (b->json)
    fprintf(b->json,
            "%s  {\"workload\": \"%s\", \"head_dim\": %lld, \"heads\": %lld, \"kv_heads\": %lld, "
            "\"dtype\": \"%s\", \"causal\": %s, \"backend\": \"%s\", \"ms\": %.4f, "
            "\"tflops\": %.2f, \"tokens\": %lld, \"sequences\": %d}",
            b->cells ? ",\n" : "", t->name, (long long)t->head_dim, (long long)t->heads,
            (long long)t->kv_heads, jsdpa_dtype_name(t->dtype), causal ? "true" : "false", backend,
            median, tflops, (long long)t->total, t->count);
  ++b->cells;
}

/* ------------------------------------------------------------ main */

static int parse_args(int argc, char** argv, args_t* a) {
  memset(a, 0, sizeof(*a));
  a->file = "bench/workloads.yaml";
  a->causal = -1;
  a->warmup = 3;
  a->reps = 15;
  for (int i = 1; i < argc; ++i) {
    const char* opt = argv[i];
    const char* val = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n = 0;
    if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
      usage(stdout);
      exit(0);
    }
    if (!val) {
      fprintf(stderr, "jsdpa-bench: %s needs a value\n", opt);
      return 2;
    }
    ++i;
    if (!strcmp(opt, "--file")) {
      a->file = val;
    } else if (!strcmp(opt, "--lengths")) {
      a->lengths = val;
    } else if (!strcmp(opt, "--workload")) {
      a->workload = val;
    } else if (!strcmp(opt, "--json")) {
      a->json = val;
    } else if (!strcmp(opt, "--head-dim") && toolutil_parse_i64(val, 1, 1024, &n)) {
      a->head_dim = n;
    } else if (!strcmp(opt, "--heads") && toolutil_parse_i64(val, 1, 1 << 16, &n)) {
      a->heads = n;
    } else if (!strcmp(opt, "--kv-heads") && toolutil_parse_i64(val, 1, 1 << 16, &n)) {
      a->kv_heads = n;
    } else if (!strcmp(opt, "--dtype")) {
      jsdpa_dtype_t t;
      if (!toolutil_parse_dtype(val, &t)) {
        fprintf(stderr, "jsdpa-bench: --dtype '%s' is not fp16, bf16 or fp32\n", val);
        return 2;
      }
      a->dtype = (int)t;
    } else if (!strcmp(opt, "--causal") && toolutil_parse_i64(val, 0, 1, &n)) {
      a->causal = (int)n;
    } else if (!strcmp(opt, "--backend")) {
      jsdpa_backend_t found = JSDPA_BACKEND_COUNT;
      for (int b = 0; b < JSDPA_BACKEND_COUNT; ++b)
        if (!strcmp(val, jsdpa_backend_name((jsdpa_backend_t)b))) found = (jsdpa_backend_t)b;
      if (found == JSDPA_BACKEND_COUNT || found == JSDPA_BACKEND_CPU) {
        fprintf(stderr, "jsdpa-bench: --backend '%s' is not auto, flash, efficient or math\n", val);
        return 2;
      }
      a->backend = found;
    } else if (!strcmp(opt, "--tile")) {
      if (!jsdpa_gen_parse_tile(val, &a->tile)) {
        fprintf(stderr, "jsdpa-bench: --tile '%s' is not of the form m64n32w4s1\n", val);
        return 2;
      }
      a->tile_set = true;
    } else if (!strcmp(opt, "--warmup") && toolutil_parse_i64(val, 0, 1000, &n)) {
      a->warmup = (int)n;
    } else if (!strcmp(opt, "--reps") && toolutil_parse_i64(val, 1, 100000, &n)) {
      a->reps = (int)n;
    } else {
      fprintf(stderr, "jsdpa-bench: bad option or value: %s %s\n", opt, val);
      usage(stderr);
      return 2;
    }
  }
  if ((a->head_dim > 0) != (a->heads > 0)) {
    fprintf(stderr, "jsdpa-bench: --head-dim and --heads go together\n");
    return 2;
  }
  if (a->kv_heads > 0 && a->heads > 0 && a->heads % a->kv_heads) {
    fprintf(stderr, "jsdpa-bench: --heads (%lld) is not a multiple of --kv-heads (%lld)\n",
            (long long)a->heads, (long long)a->kv_heads);
    return 2;
  }
  return 0;
}

int main(int argc, char** argv) {
  toolutil_init("jsdpa-bench");
  args_t a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  toolutil_plan_t plan;
  memset(&plan, 0, sizeof(plan));
  if (a.lengths) {
    /* A custom batch still takes the file's head configs, dtypes and causal
     * settings unless the options name them. */
    if (a.head_dim == 0 || a.dtype == 0 || a.causal < 0) {
      rc = toolutil_read_plan(a.file, &plan);
      if (rc) return rc;
    }
    toolutil_plan_free(&plan);
    rc = toolutil_parse_lengths(a.lengths, "--lengths", "custom", &plan.workloads[0]);
    if (rc) return rc;
    plan.num_workloads = 1;
  } else {
    rc = toolutil_read_plan(a.file, &plan);
    if (rc) return rc;
  }
  if (a.head_dim) plan.head_dims[0] = a.head_dim, plan.heads[0] = a.heads, plan.num_heads = 1;
  if (a.dtype) plan.dtypes[0] = (jsdpa_dtype_t)a.dtype, plan.num_dtypes = 1;
  if (a.causal >= 0) plan.causal[0] = a.causal, plan.num_causal = 1;

  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  bench_t b;
  memset(&b, 0, sizeof(b));
  b.a = &a;
  jsdpa_status_t s = jsdpa_context_create(&co, &b.ctx);
  if (s) toolutil_die_status("context", s);
  const char* no_gpu = NULL;
  if (!jsdpa_context_has_gpu(b.ctx, &no_gpu)) {
    fprintf(stderr, "jsdpa-bench: no GPU: %s\n", no_gpu ? no_gpu : "");
    jsdpa_context_destroy(b.ctx);
    return 1;
  }
  if (a.tile_set) {
    /* A tile the family cannot run is reported per cell by the backend check. */
    jsdpa_tuning_t* forced = jsdpa_tuning_create_forced(a.tile);
    if (!forced)
      toolutil_die_status("--tile", jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "out of memory"));
    jsdpa_tuning_destroy(jsdpa_tuning_swap(b.ctx, forced));
  }
  char name[256] = "";
  b.cu = toolutil_gpu_open(name, sizeof(name));
  toolutil_timer_create(&b.timer, b.cu);
  if (a.json) {
    b.json = fopen(a.json, "w");
    if (!b.json) {
      fprintf(stderr, "jsdpa-bench: cannot write %s: %s\n", a.json, strerror(errno));
      return 1;
    }
    fprintf(b.json, "{\"device\": \"%s\", \"warmup\": %d, \"reps\": %d, \"cells\": [\n", name,
            a.warmup, a.reps);
  }
  printf("device: %s; median of %d calls after %d warm-up, L2 flushed before each\n", name, a.reps,
         a.warmup);
  printf("%-8s %5s %5s %-5s %-6s %-10s %10s %9s\n", "workload", "d", "heads", "dtype", "causal",
         "backend", "ms", "TFLOP/s");
  int ran = 0;
  for (int w = 0; w < plan.num_workloads; ++w) {
    const toolutil_workload_t* wl = &plan.workloads[w];
    if (a.workload && strcmp(a.workload, wl->name)) continue;
    for (int h = 0; h < plan.num_heads; ++h)
      for (int d = 0; d < plan.num_dtypes; ++d) {
        toolutil_batch_t t = {.name = wl->name,
                              .lengths = wl->lengths,
                              .count = wl->count,
                              .head_dim = plan.head_dims[h],
                              .heads = plan.heads[h],
                              .kv_heads = a.kv_heads,
                              .dtype = plan.dtypes[d]};
        /* Fixed inputs per head config: the same numbers on every run. */
        toolutil_batch_create(
            &t, b.cu, 0x9e3779b97f4a7c15ull ^ (uint64_t)(t.head_dim * 131 + t.heads), false);
        for (int c = 0; c < plan.num_causal; ++c, ++ran) run_cell(&b, &t, plan.causal[c]);
        toolutil_batch_free(&t, b.cu);
      }
  }
  if (b.json) {
    fprintf(b.json, "\n]}\n");
    fclose(b.json);
  }
  toolutil_plan_free(&plan);
  toolutil_timer_destroy(&b.timer);
  jsdpa_context_destroy(b.ctx);
  toolutil_gpu_close();
  if (!ran) {
    fprintf(stderr, "jsdpa-bench: no workload named '%s' in %s\n", a.workload, a.file);
    return 2;
  }
  return 0;
}
