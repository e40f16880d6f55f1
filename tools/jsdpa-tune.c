/*
 * jsdpa-tune — the autotuner: the fastest flash tile per (dtype, head dim,
 * causal, length bucket) on this GPU, written into the tuning database the
 * runtime reads (docs/tuning.md).
 *
 * The sweep, as a straight list:
 *   1. configurations: --spec FILE's flash variants, else the workloads file's
 *      grid (dtypes x head_configs x causal) at the device's arch;
 *   2. candidates per configuration: the spec's tiles, or every tile the
 *      family supports (a superset of power-of-two tiles filtered by
 *      jsdpa_gen_variant_check, the limits table the generator and the backends
 *      read, and the device's shared memory), minus those whose accumulators
 *      cannot fit the registers; ranked by closeness to the family default,
 *      which always comes first (--max-candidates keeps the best N);
 *   3. cells: workloads x configurations, random inputs on the device;
 *   4. compile every candidate through the JIT and its cache, -j threads;
 *   5. per candidate, round-robin over the cells by rank (a budget cut leaves
 *      every cell with its best-ranked candidates): run it once on poisoned
 *      output and judge it against the float64 cpu oracle under the 2x rule,
 *      THEN time it (warm-up, median of --reps calls, events, L2 flushed), the
 *      whole jsdpa_forward as users call it, with the candidate's tile forced;
 *   6. the winner per database key (cells that share a bucket add their
 *      times) replaces the default only when faster by more than --min-gain;
 *      the database is merged and written atomically, every candidate goes to
 *      --csv, and a verify pass times each cell through the written database
 *      as the runtime loads it.
 * Modes without a GPU: --check-db (diagnostics, exit 1 on any error) and
 * --merge (later files replace earlier entries of the same key).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "jsdpa_tunedb.h"
#include "toolutil.h"
#include "tuning.h"

#define MAX_TILES 128
#define MAX_GROUPS 64
#define MAX_LIST 8

typedef enum mode_e { MODE_SWEEP, MODE_CHECK_DB, MODE_MERGE, MODE_PICK } tune_mode_t;

typedef struct args_s {
  tune_mode_t mode;
  const char** files; /* --check-db / --merge inputs */
  int num_files;
  const char* out; /* -o */
  const char* spec;
  const char* workloads;
  const char* lengths_file;
  const char* workload; /* only this workload of the file */
  jsdpa_dtype_t dtypes[MAX_LIST];
  int num_dtypes;
  int64_t head_dims[MAX_LIST];
  int num_head_dims;
  int causal; /* -1: both / the file's */
  int64_t heads;
  int max_candidates;
  bool all_tiles;
  double budget;
  int jobs;
  const char* db;
  const char* csv;
  const char* inject_fault;
  int warmup, reps;
  double min_gain;
  double check_budget;
  uint64_t seed;
  bool verify;
} args_t;

static void usage(FILE* f) {
  fprintf(
      f,
      "usage: jsdpa-tune [options]               sweep tiles on GPU 0, write the tuning database\n"
      "       jsdpa-tune --check-db FILE...      check tuning databases (no GPU); exit 1 on "
      "errors\n"
      "       jsdpa-tune --merge FILE... -o OUT  merge databases: later files replace earlier\n"
      "                                          entries of the same key (no GPU)\n"
      "       jsdpa-tune --pick CSV... --db FILE pick the winners again from sweeps' --csv files\n"
      "                                          into FILE, which keeps its GPU and versions\n"
      "                                          (no GPU; --min-gain applies)\n"
      "sweep options:\n"
      "  --spec FILE          configurations (and tiles) to tune, a jsdpa-gen spec; default:\n"
      "                       the workloads file's dtypes x head_configs x causal, flash, at\n"
      "                       the device's arch\n"
      "  --workloads FILE     workloads file (default bench/workloads.yaml)\n"
      "  --workload NAME      only this workload of the file\n"
      "  --lengths-file FILE  one custom batch instead: sequence lengths, comma or space\n"
      "                       separated, '#' comments\n"
      "  --dtype LIST         e.g. bf16 or bf16,fp16 (default: the file's)\n"
      "  --head-dim LIST      e.g. 64,128 (default: the file's head configs)\n"
      "  --causal 0|1         one causal setting (default both)\n"
      "  --heads N            query heads where the workloads file has no head config for the\n"
      "                       head dim (default 2048 / head_dim)\n"
      "  --max-candidates N   per configuration: the default and the N-1 tiles closest to it\n"
      "                       (default 0: all)\n"
      "  --all-tiles          every tile the template supports, also those whose accumulators\n"
      "                       exceed the register estimate, and also with --spec\n"
      "  --budget SECONDS     stop starting candidates after this long (default 600)\n"
      "  -j N                 parallel NVRTC compiles (default: online CPUs)\n"
      "  --db FILE            database to merge into (default specs/tuned/<gpu-slug>.yaml)\n"
      "  --csv FILE           every candidate's result\n"
      "  --inject-fault NAME  corrupt the output of the candidate NAME (a kernel name or a tile\n"
      "                       like m64n64w4s2) after it runs: the check must reject it\n"
      "  --warmup N --reps N  calls before timing (2) and timed calls (10, at least 10)\n"
      "  --min-gain F         a tile replaces the default only if faster by more than F (0.02)\n"
      "  --check-budget N     oracle multiply-adds per cell (1e9)\n"
      "  --seed N             input seed (default: from the clock; printed)\n"
      "  --no-verify          skip timing the cells through the written database\n");
}

static int usage_error(const char* format, const char* value) {
  fprintf(stderr, "jsdpa-tune: ");
  fprintf(stderr, format, value);
  fprintf(stderr, "\n");
  usage(stderr);
  return 2;
}

static int parse_list(const char* text, const char* option, args_t* a) {
  char* copy = strdup(text);
  int rc = 0;
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && !rc;
       tok = strtok_r(NULL, ",", &save)) {
    if (!strcmp(option, "--dtype")) {
      jsdpa_dtype_t t;
      if (!toolutil_parse_dtype(tok, &t) || t == JSDPA_DTYPE_FP32 || a->num_dtypes == MAX_LIST)
        rc = usage_error("--dtype: '%s' is not fp16 or bf16 (the flash family's)", tok);
      else
        a->dtypes[a->num_dtypes++] = t;
    } else {
      int64_t d = 0;
      if (!toolutil_parse_i64(tok, 1, 1024, &d) || a->num_head_dims == MAX_LIST)
        rc = usage_error("--head-dim: '%s' is not a head dim in 1..1024", tok);
      else
        a->head_dims[a->num_head_dims++] = d;
    }
  }
  free(copy);
  return rc;
}

static bool parse_double(const char* text, double lo, double* out) {
  char* end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !(v >= lo)) return false;
  *out = v;
  return true;
}

static int parse_args(int argc, char** argv, args_t* a) {
  memset(a, 0, sizeof(*a));
  a->workloads = "bench/workloads.yaml";
  a->causal = -1;
  a->budget = 600;
  a->jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
  a->warmup = 2;
  a->reps = 10;
  a->min_gain = 0.02;
  a->check_budget = 1e9;
  a->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  a->verify = true;
  a->files = calloc((size_t)argc, sizeof(*a->files));
  for (int i = 1; i < argc; ++i) {
    const char* o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      usage(stdout);
      exit(0);
    }
    if (!strcmp(o, "--check-db") || !strcmp(o, "--merge") || !strcmp(o, "--pick")) {
      a->mode = !strcmp(o, "--merge")  ? MODE_MERGE
                : !strcmp(o, "--pick") ? MODE_PICK
                                       : MODE_CHECK_DB;
      continue;
    }
    if (!strcmp(o, "--all-tiles")) {
      a->all_tiles = true;
      continue;
    }
    if (!strcmp(o, "--no-verify")) {
      a->verify = false;
      continue;
    }
    if (o[0] != '-') {
      a->files[a->num_files++] = o;
      continue;
    }
    const char* v = i + 1 < argc ? argv[++i] : NULL;
    if (!v) return usage_error("%s needs a value", o);
    int64_t n = 0;
    if (!strcmp(o, "-o")) {
      a->out = v;
    } else if (!strcmp(o, "--spec")) {
      a->spec = v;
    } else if (!strcmp(o, "--workloads")) {
      a->workloads = v;
    } else if (!strcmp(o, "--workload")) {
      a->workload = v;
    } else if (!strcmp(o, "--lengths-file")) {
      a->lengths_file = v;
    } else if (!strcmp(o, "--dtype") || !strcmp(o, "--head-dim")) {
      int rc = parse_list(v, o, a);
      if (rc) return rc;
    } else if (!strcmp(o, "--causal") && toolutil_parse_i64(v, 0, 1, &n)) {
      a->causal = (int)n;
    } else if (!strcmp(o, "--heads") && toolutil_parse_i64(v, 1, 65535, &n)) {
      a->heads = n;
    } else if (!strcmp(o, "--max-candidates") && toolutil_parse_i64(v, 0, MAX_TILES, &n)) {
      a->max_candidates = (int)n;
    } else if (!strcmp(o, "--budget") && parse_double(v, 0, &a->budget)) {
    } else if (!strcmp(o, "-j") && toolutil_parse_i64(v, 1, 1024, &n)) {
      a->jobs = (int)n;
    } else if (!strcmp(o, "--db")) {
      a->db = v;
    } else if (!strcmp(o, "--csv")) {
      a->csv = v;
    } else if (!strcmp(o, "--inject-fault")) {
      a->inject_fault = v;
    } else if (!strcmp(o, "--warmup") && toolutil_parse_i64(v, 0, 1000, &n)) {
      a->warmup = (int)n;
    } else if (!strcmp(o, "--reps") && toolutil_parse_i64(v, 10, 100000, &n)) {
      a->reps = (int)n;
    } else if (!strcmp(o, "--min-gain") && parse_double(v, 0, &a->min_gain)) {
    } else if (!strcmp(o, "--check-budget") && parse_double(v, 1, &a->check_budget)) {
    } else if (!strcmp(o, "--seed") && toolutil_parse_i64(v, 0, INT64_MAX, &n)) {
      a->seed = (uint64_t)n;
    } else {
      fprintf(stderr, "jsdpa-tune: bad option or value: %s %s\n", o, v);
      usage(stderr);
      return 2;
    }
  }
  if (a->mode == MODE_PICK && a->num_files == 0)
    return usage_error("%s needs at least one CSV file (jsdpa-tune --csv)", "--pick");
  if (a->mode != MODE_SWEEP && a->num_files == 0)
    return usage_error("%s needs at least one database file",
                       a->mode == MODE_MERGE ? "--merge" : "--check-db");
  if (a->mode == MODE_MERGE && !a->out) return usage_error("%s needs -o OUT", "--merge");
  if (a->mode == MODE_PICK && !a->db)
    return usage_error("%s needs --db FILE (the database the sweep wrote)", "--pick");
  if (a->mode == MODE_SWEEP && a->num_files)
    return usage_error("unexpected argument '%s' (a sweep takes options only)", a->files[0]);
  return 0;
}

/* ------------------------------------------------------------ database files */

static char* read_text(const char* path, size_t* out_length) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  size_t length = 0, capacity = 4096;
  char* text = toolutil_xmalloc(capacity);
  size_t n;
  while ((n = fread(text + length, 1, capacity - length - 1, f)) > 0) {
    length += n;
    if (capacity - length - 1 == 0) {
      capacity *= 2;
      text = toolutil_xrealloc(text, capacity);
    }
  }
  bool failed = ferror(f) != 0;
  fclose(f);
  if (failed) {
    free(text);
    return NULL;
  }
  text[length] = '\0';
  *out_length = length;
  return text;
}

/* Reads and parses one database; false after its diagnostics (or an I/O error). */
static bool load_db(const char* path, jsdpa_gen_diags_t* diags, jsdpa_tunedb_t* out) {
  size_t length = 0;
  char* text = read_text(path, &length);
  if (!text) {
    fprintf(stderr, "jsdpa-tune: error: cannot read '%s': %s\n", path, strerror(errno));
    memset(out, 0, sizeof(*out));
    return false;
  }
  bool ok = jsdpa_tunedb_parse(path, text, length, diags, out);
  free(text);
  return ok;
}

static int check_dbs(const args_t* a) {
  jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(stderr);
  int rc = 0;
  for (int i = 0; i < a->num_files; ++i) {
    jsdpa_tunedb_t db;
    if (load_db(a->files[i], diags, &db))
      printf("%s: ok: %zu entries, %s (%d SMs), generator %s, measured %s\n", a->files[i], db.count,
             db.meta.gpu, db.meta.sm_count, db.meta.generator, db.meta.date);
    else
      rc = 1;
    jsdpa_tunedb_free(&db);
  }
  jsdpa_gen_diags_destroy(diags);
  return rc;
}

static bool same_gpu(const jsdpa_tunedb_meta_t* a, const jsdpa_tunedb_meta_t* b) {
  return !strcmp(a->gpu, b->gpu) && a->sm_count == b->sm_count &&
         !strcmp(a->generator, b->generator);
}

static int merge_dbs(const args_t* a) {
  jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(stderr);
  jsdpa_tunedb_t merged;
  memset(&merged, 0, sizeof(merged));
  bool ok = true;
  for (int i = 0; i < a->num_files && ok; ++i) {
    jsdpa_tunedb_t db;
    ok = load_db(a->files[i], diags, &db);
    if (ok && i > 0 && !same_gpu(&merged.meta, &db.meta)) {
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, db.meta.gpu_loc,
                     "'%s' was measured on '%s' (%d SMs) with generator %s; '%s' on '%s' (%d "
                     "SMs) with generator %s: databases of different GPUs or generators do not "
                     "merge",
                     a->files[i], db.meta.gpu, db.meta.sm_count, db.meta.generator, a->files[0],
                     merged.meta.gpu, merged.meta.sm_count, merged.meta.generator);
      ok = false;
    }
    if (ok) {
      merged.meta = db.meta;
      for (size_t e = 0; e < db.count; ++e) jsdpa_tunedb_put(&merged, &db.entries[e]);
    }
    jsdpa_tunedb_free(&db);
  }
  char why[1024];
  if (ok && !jsdpa_tunedb_write(a->out, &merged, why, sizeof(why))) {
    fprintf(stderr, "jsdpa-tune: error: %s\n", why);
    ok = false;
  }
  if (ok) printf("%s: %zu entries from %d files\n", a->out, merged.count, a->num_files);
  jsdpa_tunedb_free(&merged);
  jsdpa_gen_diags_destroy(diags);
  return ok ? 0 : 1;
}

/* ------------------------------------------------------------ sweep state */

typedef enum status_e { ST_PENDING, ST_OK, ST_REJECTED, ST_ERROR, ST_SKIPPED } result_status_t;
static const char* const status_names[] = {"pending", "ok", "rejected", "error", "skipped"};

/* One kernel configuration and its candidate tiles (tiles[0] is the default). */
typedef struct group_s {
  jsdpa_gen_variant_t key; /* tile: the default */
  int64_t heads;
  jsdpa_gen_tile_t tiles[MAX_TILES];
  int num_tiles;
  jsdpa_status_t compile[MAX_TILES]; /* NULL: compiled */
  bool compiled[MAX_TILES];
} group_t;

typedef struct result_s {
  result_status_t status;
  double ms, tflops;
  toolutil_verdict_t verdict;
  char note[256];
} result_t;

/* A workload x configuration: one batch on the device, one oracle. */
typedef struct cell_s {
  const toolutil_workload_t* workload;
  group_t* group;
  toolutil_batch_t* batch;
  jsdpa_tune_bucket_t bucket;
  double flops;
  toolutil_oracle_t oracle;
  bool oracle_ready;
  result_t results[MAX_TILES];
  double verify_tflops; /* < 0: not verified */
  jsdpa_gen_tile_t verify_tile;
  bool verify_tuned;
} cell_t;

typedef struct sweep_s {
  const args_t* a;
  jsdpa_context_t* ctx;
  const jsdpa_cuda_driver_t* cu;
  toolutil_timer_t timer;
  double start;
  group_t groups[MAX_GROUPS];
  int num_groups;
  toolutil_batch_t* batches;
  int num_batches;
  cell_t* cells;
  int num_cells;
  FILE* csv;
  int fault_matches, fault_rejected;
  bool cuda_failed;
} sweep_t;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double elapsed(const sweep_t* s) {
  return now_s() - s->start;
}

static void tile_tag(jsdpa_gen_tile_t t, char* buf, size_t capacity) {
  snprintf(buf, capacity, "m%dn%dw%ds%d", t.block_m, t.block_n, t.warps, t.stages);
}

static bool same_tile(jsdpa_gen_tile_t a, jsdpa_gen_tile_t b) {
  return a.block_m == b.block_m && a.block_n == b.block_n && a.warps == b.warps &&
         a.stages == b.stages;
}

static jsdpa_gen_variant_t candidate(const group_t* g, int i) {
  jsdpa_gen_variant_t v = g->key;
  v.tile = g->tiles[i];
  return v;
}

/* ------------------------------------------------------------ candidates */

/*
 * Accumulator registers per thread of a flash tile: each warp owns
 * block_m / warps query rows; its S tile (rows x block_n) and O tile
 * (rows x head dim padded to 16) are fp32 spread over 32 lanes. Past ~192 of
 * a thread's 255 registers ptxas spills in the inner loop (bench/NOTES.md: the
 * d128 128x64 default at 192 already uses 254), so such tiles are not worth a
 * device minute unless --all-tiles asks.
 */
static int accumulator_registers(const jsdpa_gen_variant_t* v) {
  const int rows = v->tile.block_m / v->tile.warps;
  const int d = (v->head_dim + 15) / 16 * 16;
  return rows * (d + v->tile.block_n) / 32;
}

static int tile_distance(jsdpa_gen_tile_t a, jsdpa_gen_tile_t b) {
  return (a.block_m != b.block_m) + (a.block_n != b.block_n) + (a.warps != b.warps) +
         (a.stages != b.stages);
}

static const group_t* rank_group; /* qsort has no context argument */

/* Closest to the default first, then less shared memory, then by tag. */
static int compare_candidates(const void* pa, const void* pb) {
  const jsdpa_gen_tile_t *a = pa, *b = pb;
  const jsdpa_gen_tile_t d = rank_group->key.tile;
  int da = tile_distance(*a, d), db = tile_distance(*b, d);
  if (da != db) return da < db ? -1 : 1;
  jsdpa_gen_variant_t va = rank_group->key, vb = rank_group->key;
  va.tile = *a, vb.tile = *b;
  int64_t sa = jsdpa_gen_smem_bytes(&va), sb = jsdpa_gen_smem_bytes(&vb);
  if (sa != sb) return sa < sb ? -1 : 1;
  char ta[32], tb[32];
  tile_tag(*a, ta, sizeof(ta));
  tile_tag(*b, tb, sizeof(tb));
  return strcmp(ta, tb);
}

/* Whether the device can run the tile at all; else why not. */
static bool tile_fits(const sweep_t* s, const jsdpa_gen_variant_t* v, char* why, size_t capacity) {
  return jsdpa_gen_variant_check(v, why, capacity) && jsdpa_tiled_fits(s->ctx, v, why, capacity);
}

/* Every tile the family supports for the group, plausible first. */
static void enumerate_tiles(const sweep_t* s, group_t* g) {
  static const int sizes[] = {16, 32, 64, 128, 256};
  static const int warps[] = {1, 2, 4, 8, 16};
  static const int stages[] = {1, 2, 3, 4};
  jsdpa_gen_tile_t found[MAX_TILES];
  int n = 0, register_bound = 0;
  char why[512];
  for (size_t m = 0; m < 5; ++m)
    for (size_t nn = 0; nn < 5; ++nn)
      for (size_t w = 0; w < 5; ++w)
        for (size_t st = 0; st < 4; ++st) {
          jsdpa_gen_variant_t v = g->key;
          v.tile = (jsdpa_gen_tile_t){sizes[m], sizes[nn], warps[w], stages[st]};
          if (same_tile(v.tile, g->key.tile) || !tile_fits(s, &v, why, sizeof(why))) continue;
          if (!s->a->all_tiles && accumulator_registers(&v) > 192) {
            ++register_bound;
            continue;
          }
          if (n < MAX_TILES - 1) found[n++] = v.tile;
        }
  rank_group = g;
  qsort(found, (size_t)n, sizeof(found[0]), compare_candidates);
  for (int i = 0; i < n && g->num_tiles < MAX_TILES; ++i) g->tiles[g->num_tiles++] = found[i];
  if (register_bound)
    printf("  %d more tiles supported but left out: accumulators over 192 registers per thread\n",
           register_bound);
}

static group_t* find_group(sweep_t* s, const jsdpa_gen_variant_t* v) {
  for (int i = 0; i < s->num_groups; ++i) {
    const jsdpa_gen_variant_t* k = &s->groups[i].key;
    if (k->dtype == v->dtype && k->head_dim == v->head_dim && k->head_dim_v == v->head_dim_v &&
        k->causal == v->causal)
      return &s->groups[i];
  }
  return NULL;
}

static group_t* add_group(sweep_t* s, jsdpa_gen_dtype_t dtype, int d, int dv, bool causal) {
  jsdpa_gen_variant_t key =
      jsdpa_gen_variant_make(JSDPA_GEN_FAMILY_FLASH, s->ctx->arch, dtype, d, dv, causal);
  group_t* g = find_group(s, &key);
  if (g) return g;
  if (s->num_groups == MAX_GROUPS) {
    fprintf(stderr, "jsdpa-tune: more than %d configurations; narrow them down\n", MAX_GROUPS);
    exit(2);
  }
  g = &s->groups[s->num_groups++];
  memset(g, 0, sizeof(*g));
  g->key = key;
  g->tiles[g->num_tiles++] = key.tile;
  return g;
}

static bool wanted_dtype(const args_t* a, jsdpa_gen_dtype_t t) {
  for (int i = 0; i < a->num_dtypes; ++i)
    if (jsdpa_gen_dtype_of(a->dtypes[i]) == t) return true;
  return a->num_dtypes == 0;
}

static bool wanted_dim(const args_t* a, int d) {
  for (int i = 0; i < a->num_head_dims; ++i)
    if (a->head_dims[i] == d) return true;
  return a->num_head_dims == 0;
}

/* Configurations and candidates from --spec: its flash variants for this
 * device's arch (every arch's, re-targeted, when it names none of them). */
static int groups_from_spec(sweep_t* s) {
  const args_t* a = s->a;
  size_t length = 0;
  char* text = read_text(a->spec, &length);
  if (!text) {
    fprintf(stderr, "jsdpa-tune: cannot read --spec '%s': %s\n", a->spec, strerror(errno));
    return 1;
  }
  jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(stderr);
  jsdpa_gen_variant_list_t list = {0};
  bool ok = jsdpa_gen_load_spec(a->spec, text, length, diags, &list);
  jsdpa_gen_diags_destroy(diags);
  free(text);
  if (!ok) {
    jsdpa_gen_variant_list_free(&list);
    return 1;
  }
  bool any_arch = false;
  for (size_t i = 0; i < list.count; ++i)
    any_arch |= list.items[i].family == JSDPA_GEN_FAMILY_FLASH &&
                list.items[i].arch.sm == s->ctx->arch.sm &&
                list.items[i].arch.arch_specific == s->ctx->arch.arch_specific;
  char arch[16];
  if (!any_arch)
    printf("note: %s names no flash kernel for %s: its flash variants are tuned for it\n", a->spec,
           jsdpa_gen_arch_name(s->ctx->arch, arch, sizeof(arch)));
  int skipped = 0;
  for (size_t i = 0; i < list.count; ++i) {
    const jsdpa_gen_variant_t* v = &list.items[i];
    if (v->family != JSDPA_GEN_FAMILY_FLASH) {
      ++skipped;
      continue;
    }
    if (any_arch &&
        (v->arch.sm != s->ctx->arch.sm || v->arch.arch_specific != s->ctx->arch.arch_specific))
      continue;
    if (!wanted_dtype(a, v->dtype) || !wanted_dim(a, v->head_dim) ||
        (a->causal >= 0 && v->causal != (a->causal == 1)))
      continue;
    group_t* g = add_group(s, v->dtype, v->head_dim, v->head_dim_v, v->causal);
    bool have = false;
    for (int t = 0; t < g->num_tiles; ++t) have |= same_tile(g->tiles[t], v->tile);
    if (!have && g->num_tiles < MAX_TILES) g->tiles[g->num_tiles++] = v->tile;
  }
  if (skipped)
    printf("note: %d non-flash variants of %s skipped (jsdpa-tune tunes flash)\n", skipped,
           a->spec);
  jsdpa_gen_variant_list_free(&list);
  return 0;
}

static int64_t heads_for(const sweep_t* s, const toolutil_plan_t* plan, int d) {
  for (int i = 0; i < plan->num_heads; ++i)
    if (plan->head_dims[i] == d) return plan->heads[i];
  if (s->a->heads) return s->a->heads;
  return d > 2048 ? 1 : 2048 / d;
}

/* Fills s->groups: configurations, then each one's ranked candidates. */
static int make_groups(sweep_t* s, const toolutil_plan_t* plan) {
  const args_t* a = s->a;
  if (a->spec) {
    int rc = groups_from_spec(s);
    if (rc) return rc;
  } else {
    static const jsdpa_dtype_t grid_dtypes[] = {JSDPA_DTYPE_BF16, JSDPA_DTYPE_FP16};
    static const int64_t grid_dims[] = {64, 128, 256};
    const jsdpa_dtype_t* dtypes = a->num_dtypes      ? a->dtypes
                                  : plan->num_dtypes ? plan->dtypes
                                                     : grid_dtypes;
    int num_dtypes = a->num_dtypes ? a->num_dtypes : plan->num_dtypes ? plan->num_dtypes : 2;
    const int64_t* dims = a->num_head_dims  ? a->head_dims
                          : plan->num_heads ? plan->head_dims
                                            : grid_dims;
    int num_dims = a->num_head_dims ? a->num_head_dims : plan->num_heads ? plan->num_heads : 3;
    bool causal[2] = {false, true};
    int num_causal = 2;
    if (a->causal >= 0)
      causal[0] = a->causal == 1, num_causal = 1;
    else if (plan->num_causal)
      memcpy(causal, plan->causal, sizeof(causal)), num_causal = plan->num_causal;
    for (int t = 0; t < num_dtypes; ++t) {
      if (dtypes[t] != JSDPA_DTYPE_FP16 && dtypes[t] != JSDPA_DTYPE_BF16) continue;
      for (int d = 0; d < num_dims; ++d)
        for (int c = 0; c < num_causal; ++c)
          add_group(s, jsdpa_gen_dtype_of(dtypes[t]), (int)dims[d], (int)dims[d], causal[c]);
    }
  }
  for (int i = 0; i < s->num_groups; ++i) {
    group_t* g = &s->groups[i];
    g->heads = heads_for(s, plan, g->key.head_dim);
    char why[512], tag[32], name[160];
    jsdpa_gen_kernel_name(&g->key, name, sizeof(name));
    printf("configuration %s (%lld heads):\n", name, (long long)g->heads);
    if (!tile_fits(s, &g->key, why, sizeof(why))) {
      fprintf(stderr, "jsdpa-tune: the default tile of %s does not run here: %s\n", name, why);
      return 1;
    }
    if (g->num_tiles == 1 || a->all_tiles) {
      enumerate_tiles(s, g);
    } else {
      /* The spec's tiles, checked; ranked like enumerated ones. */
      int kept = 1;
      for (int t = 1; t < g->num_tiles; ++t) {
        jsdpa_gen_variant_t v = candidate(g, t);
        tile_tag(v.tile, tag, sizeof(tag));
        if (tile_fits(s, &v, why, sizeof(why)))
          g->tiles[kept++] = v.tile;
        else
          printf("  %s left out: %s\n", tag, why);
      }
      g->num_tiles = kept;
      rank_group = g;
      qsort(g->tiles + 1, (size_t)(g->num_tiles - 1), sizeof(g->tiles[0]), compare_candidates);
    }
    if (a->max_candidates > 0 && g->num_tiles > a->max_candidates) g->num_tiles = a->max_candidates;
    printf("  %d candidates:", g->num_tiles);
    for (int t = 0; t < g->num_tiles; ++t) {
      tile_tag(g->tiles[t], tag, sizeof(tag));
      printf(" %s%s", tag, t == 0 ? " (default)" : "");
    }
    printf("\n");
  }
  if (s->num_groups == 0) {
    fprintf(stderr, "jsdpa-tune: no configuration left after the filters\n");
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ compiling */

typedef struct compile_job_s {
  sweep_t* s;
  int (*order)[2]; /* (group, tile) in rank order */
  int count, next, done, failed;
  pthread_mutex_t lock;
} compile_job_t;

static void* compile_worker(void* arg) {
  compile_job_t* job = arg;
  sweep_t* s = job->s;
  for (;;) {
    pthread_mutex_lock(&job->lock);
    int i = job->next++;
    bool over = elapsed(s) >= s->a->budget;
    pthread_mutex_unlock(&job->lock);
    if (i >= job->count || over) return NULL;
    group_t* g = &s->groups[job->order[i][0]];
    const int t = job->order[i][1];
    jsdpa_gen_variant_t v = candidate(g, t);
    const jsdpa_kernel_t* kernel = NULL;
    jsdpa_status_t st = jsdpa_jit_get(s->ctx, &v, &kernel);
    pthread_mutex_lock(&job->lock);
    g->compile[t] = st;
    g->compiled[t] = true;
    ++job->done;
    job->failed += st != NULL;
    if (job->done % 16 == 0 || job->done == job->count)
      printf("  compiled %d/%d (%d failed), %.0f s\n", job->done, job->count, job->failed,
             elapsed(s));
    fflush(stdout);
    pthread_mutex_unlock(&job->lock);
  }
}

static void compile_all(sweep_t* s) {
  int total = 0, max_tiles = 0;
  for (int i = 0; i < s->num_groups; ++i) {
    total += s->groups[i].num_tiles;
    if (s->groups[i].num_tiles > max_tiles) max_tiles = s->groups[i].num_tiles;
  }
  compile_job_t job = {s,
                       toolutil_xmalloc(sizeof(int[2]) * (size_t)total),
                       total,
                       0,
                       0,
                       0,
                       PTHREAD_MUTEX_INITIALIZER};
  int n = 0;
  for (int r = 0; r < max_tiles; ++r)
    for (int i = 0; i < s->num_groups; ++i)
      if (r < s->groups[i].num_tiles) job.order[n][0] = i, job.order[n++][1] = r;
  printf("compiling %d kernels on %d threads (NVRTC, or the kernel cache)\n", total, s->a->jobs);
  const double t0 = elapsed(s);
  int threads = s->a->jobs < total ? s->a->jobs : total;
  pthread_t* ids = toolutil_xmalloc(sizeof(pthread_t) * (size_t)(threads ? threads : 1));
  int started = 0;
  for (; started + 1 < threads; ++started)
    if (pthread_create(&ids[started], NULL, compile_worker, &job) != 0) break;
  compile_worker(&job);
  for (int t = 0; t < started; ++t) pthread_join(ids[t], NULL);
  free(ids);
  free(job.order);
  jsdpa_cache_stats_t st;
  jsdpa_context_cache_stats(s->ctx, &st);
  printf(
      "compile phase: %.1f s (%lld compiled by NVRTC in %.1f s of thread time, %lld from the "
      "disk cache)\n",
      elapsed(s) - t0, (long long)st.compiles, st.compile_ms / 1e3, (long long)st.disk_hits);
  for (int i = 0; i < s->num_groups; ++i)
    for (int t = 0; t < s->groups[i].num_tiles; ++t)
      if (s->groups[i].compile[t]) {
        char name[160];
        jsdpa_gen_variant_t v = candidate(&s->groups[i], t);
        jsdpa_gen_kernel_name(&v, name, sizeof(name));
        printf("  %s does not build: %s\n", name, jsdpa_status_message(s->groups[i].compile[t]));
      }
}

/* ------------------------------------------------------------ measuring */

static bool fault_matches(const sweep_t* s, const jsdpa_gen_variant_t* v) {
  if (!s->a->inject_fault) return false;
  char name[160], tag[32];
  jsdpa_gen_kernel_name(v, name, sizeof(name));
  tile_tag(v->tile, tag, sizeof(tag));
  return !strcmp(s->a->inject_fault, name) || !strcmp(s->a->inject_fault, tag);
}

static void csv_row(sweep_t* s, const cell_t* c, int t) {
  if (!s->csv) return;
  const group_t* g = c->group;
  const result_t* r = &c->results[t];
  jsdpa_gen_variant_t v = candidate(g, t);
  char name[160], tag[32];
  jsdpa_gen_kernel_name(&v, name, sizeof(name));
  tile_tag(v.tile, tag, sizeof(tag));
  fprintf(s->csv, "%s,%s,%s,%d,%lld,%d,%s,%d,%s,%s,", c->workload->name,
          jsdpa_tune_bucket_name(c->bucket), jsdpa_gen_dtype_name(v.dtype), v.head_dim,
          (long long)g->heads, v.causal ? 1 : 0, tag, t == 0, name, status_names[r->status]);
  if (r->status == ST_OK)
    fprintf(s->csv, "%.4f,%.2f,", r->ms, r->tflops);
  else
    fprintf(s->csv, ",,");
  if (r->status == ST_OK || r->status == ST_REJECTED)
    fprintf(s->csv, "%.3g,%.3g,", r->verdict.max_error, r->verdict.bound);
  else
    fprintf(s->csv, ",,");
  /* Notes are free text: keep them one CSV field. */
  fputc('"', s->csv);
  for (const char* p = r->note; *p; ++p) {
    if (*p == '"') fputc('"', s->csv);
    fputc(*p == '\n' ? ' ' : *p, s->csv);
  }
  fprintf(s->csv, "\"\n");
  fflush(s->csv);
}

/* Check, then time, one candidate of one cell. */
static void measure(sweep_t* s, cell_t* c, int t) {
  const args_t* a = s->a;
  group_t* g = c->group;
  result_t* r = &c->results[t];
  jsdpa_gen_variant_t v = candidate(g, t);
  if (!g->compiled[t]) {
    r->status = ST_SKIPPED;
    snprintf(r->note, sizeof(r->note), "budget spent before it was compiled");
    return;
  }
  if (g->compile[t]) {
    r->status = ST_ERROR;
    snprintf(r->note, sizeof(r->note), "%s", jsdpa_status_message(g->compile[t]));
    return;
  }
  jsdpa_tuning_t* forced = jsdpa_tuning_create_forced(v.tile);
  if (!forced)
    toolutil_die_status("forcing a tile",
                        jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "out of host memory"));
  jsdpa_tuning_t* previous = jsdpa_tuning_swap(s->ctx, forced);
  toolutil_call_t call = {.ctx = s->ctx, .batch = c->batch};
  jsdpa_forward_options_initialize(&call.options);
  call.options.is_causal = g->key.causal;
  call.options.backend = JSDPA_BACKEND_FLASH;

  /* Correctness first: on NaN-poisoned output, judged before any timing. */
  TOOLUTIL_CU(s->cu,
              cuMemsetD8Async(c->batch->buffers[3], 0xff, c->batch->out_bytes, s->timer.stream));
  jsdpa_status_t st = toolutil_forward_call(&call, (void*)s->timer.stream);
  if (!st) st = jsdpa_context_check_device_errors(s->ctx, (void*)s->timer.stream);
  if (st) {
    r->status = ST_ERROR;
    snprintf(r->note, sizeof(r->note), "%s", jsdpa_status_message(st));
    /* A launch the driver refused leaves the context usable; a fault does not. */
    s->cuda_failed = jsdpa_status_code(st) == JSDPA_STATUS_CUDA_ERROR &&
                     s->cu->cuCtxSynchronize() != CUDA_SUCCESS;
    jsdpa_status_free(st);
  } else {
    const bool fault = fault_matches(s, &v);
    r->verdict = toolutil_oracle_judge(&c->oracle, c->batch, s->cu, fault);
    s->fault_matches += fault;
    if (!r->verdict.ok) {
      r->status = ST_REJECTED;
      s->fault_rejected += fault;
      snprintf(r->note, sizeof(r->note),
               "REJECTED by the float64 check: max error %.3g (bound %.3g), %lld non-finite%s",
               r->verdict.max_error, r->verdict.bound, (long long)r->verdict.nonfinite,
               fault ? " (--inject-fault)" : "");
    } else {
      st =
          toolutil_time_median(&s->timer, toolutil_forward_call, &call, a->warmup, a->reps, &r->ms);
      if (st) {
        r->status = ST_ERROR;
        snprintf(r->note, sizeof(r->note), "%s", jsdpa_status_message(st));
        jsdpa_status_free(st);
      } else {
        r->status = ST_OK;
        r->tflops = r->ms > 0 ? c->flops / (r->ms * 1e9) : 0;
      }
    }
  }
  jsdpa_tuning_destroy(jsdpa_tuning_swap(s->ctx, previous));
}

static void describe_cell(const cell_t* c, char* buf, size_t capacity) {
  snprintf(buf, capacity, "%-6s %s d%-3d %-6s", c->workload->name,
           jsdpa_gen_dtype_name(c->group->key.dtype), c->group->key.head_dim,
           c->group->key.causal ? "causal" : "full");
}

/* The best ok candidate of a cell (index), or -1. */
static int best_of(const cell_t* c) {
  int best = -1;
  for (int t = 0; t < c->group->num_tiles; ++t)
    if (c->results[t].status == ST_OK && (best < 0 || c->results[t].ms < c->results[best].ms))
      best = t;
  return best;
}

static void run_sweep(sweep_t* s) {
  int max_tiles = 0, total = 0;
  for (int i = 0; i < s->num_cells; ++i) {
    total += s->cells[i].group->num_tiles;
    if (s->cells[i].group->num_tiles > max_tiles) max_tiles = s->cells[i].group->num_tiles;
  }
  printf("sweep: %d candidates in %d cells; check before timing; budget %.0f s (%.0f s used)\n",
         total, s->num_cells, s->a->budget, elapsed(s));
  int done = 0, measured = 0;
  double measure_time = 0;
  for (int r = 0; r < max_tiles; ++r)
    for (int i = 0; i < s->num_cells; ++i) {
      cell_t* c = &s->cells[i];
      if (r >= c->group->num_tiles) continue;
      result_t* res = &c->results[r];
      ++done;
      if (s->cuda_failed) {
        res->status = ST_SKIPPED;
        snprintf(res->note, sizeof(res->note), "not run: an earlier candidate broke the context");
        csv_row(s, c, r);
        continue;
      }
      if (elapsed(s) >= s->a->budget) {
        res->status = ST_SKIPPED;
        snprintf(res->note, sizeof(res->note), "--budget %.0f s spent", s->a->budget);
        csv_row(s, c, r);
        continue;
      }
      const double t0 = now_s();
      measure(s, c, r);
      measure_time += now_s() - t0;
      ++measured;
      csv_row(s, c, r);
      char what[96], tag[32], best_tag[32] = "-", line[512];
      describe_cell(c, what, sizeof(what));
      tile_tag(c->group->tiles[r], tag, sizeof(tag));
      const int best = best_of(c);
      if (best >= 0) tile_tag(c->group->tiles[best], best_tag, sizeof(best_tag));
      if (res->status == ST_OK)
        snprintf(line, sizeof(line), "%7.1f TFLOP/s", res->tflops);
      else if (res->status == ST_REJECTED)
        snprintf(line, sizeof(line), "%.200s", res->note);
      else
        snprintf(line, sizeof(line), "%s: %.200s", status_names[res->status], res->note);
      const double left = (total - done) * (measure_time / measured);
      const double budget_left = s->a->budget - elapsed(s);
      char dflt[32];
      if (c->results[0].status == ST_OK)
        snprintf(dflt, sizeof(dflt), "%.1f", c->results[0].tflops);
      else
        snprintf(dflt, sizeof(dflt), "%s", status_names[c->results[0].status]);
      printf("[%3d/%d %4.0f s, ~%.0f s left] %s %-12s %s | default %s, best %s %.1f\n", done, total,
             elapsed(s),
             left < budget_left ? left
             : budget_left > 0  ? budget_left
                                : 0,
             what, tag, line, dflt, best_tag, best >= 0 ? c->results[best].tflops : 0.0);
      fflush(stdout);
    }
}

/* ------------------------------------------------------------ picking */

/* One measured candidate in one cell, from a sweep or from its CSV. */
typedef struct sample_s {
  jsdpa_gen_variant_t variant; /* with the candidate's dtype and tile */
  jsdpa_tune_bucket_t bucket;
  int cell; /* the samples of one cell (workload x configuration) share it */
  bool is_default;
  bool ok;
  double ms, flops;
} sample_t;

static bool is_16bit(jsdpa_gen_dtype_t t) {
  return t == JSDPA_GEN_DTYPE_FP16 || t == JSDPA_GEN_DTYPE_BF16;
}

/* fp16 and bf16 run the same tensor-core shapes, registers and shared memory
 * per tile, so their cells are pooled: twice the measurements per choice,
 * and one tile for both (the runtime reuses one dtype's entry for the other). */
static bool same_pool(const sample_t* a, const sample_t* b) {
  const jsdpa_gen_variant_t *x = &a->variant, *y = &b->variant;
  return x->family == y->family && x->arch.sm == y->arch.sm &&
         x->arch.arch_specific == y->arch.arch_specific && x->head_dim == y->head_dim &&
         x->head_dim_v == y->head_dim_v && x->causal == y->causal && a->bucket == b->bucket &&
         (x->dtype == y->dtype || (is_16bit(x->dtype) && is_16bit(y->dtype)));
}

/* The sample of `cell` with `tile`, or NULL. */
static const sample_t* find_sample(const sample_t* s, const int* pool, int n, int cell,
                                   jsdpa_gen_tile_t tile) {
  for (int i = 0; i < n; ++i)
    if (s[pool[i]].cell == cell && same_tile(s[pool[i]].variant.tile, tile)) return &s[pool[i]];
  return NULL;
}

/* Total time and FLOPs of `tile` over the pool's cells (of one dtype when
 * dtype >= 0); false unless it passed in every one of them. */
static bool tile_total(const sample_t* s, const int* pool, int n, const int* cells, int num_cells,
                       jsdpa_gen_tile_t tile, int dtype, double* ms, double* flops) {
  *ms = *flops = 0;
  int used = 0;
  for (int c = 0; c < num_cells; ++c) {
    const sample_t* x = find_sample(s, pool, n, cells[c], tile);
    if (!x || !x->ok) return false;
    if (dtype >= 0 && (int)x->variant.dtype != dtype) continue;
    *ms += x->ms;
    *flops += x->flops;
    ++used;
  }
  return used > 0;
}

/*
 * Puts into `db` the entries the samples give. Per pool (a database key but
 * for the dtype, fp16 and bf16 together): the tile with the least total time
 * over every cell of the pool, among those that passed the check in all of
 * them; it replaces the default only when faster by more than min_gain, so
 * noise does not move tiles. One entry per dtype of the pool, with that
 * dtype's own TFLOP/s for the tile and for the default. Returns the count.
 */
static size_t pick_entries(const sample_t* s, int n, double min_gain, jsdpa_tunedb_t* db) {
  bool* done = toolutil_xcalloc((size_t)n + 1, sizeof(bool));
  int* pool = toolutil_xmalloc(sizeof(int) * ((size_t)n + 1));
  int* cells = toolutil_xmalloc(sizeof(int) * ((size_t)n + 1));
  size_t written = 0;
  for (int i = 0; i < n; ++i) {
    if (done[i]) continue;
    int np = 0, nc = 0;
    bool have_default = false;
    jsdpa_gen_tile_t dflt = {0, 0, 0, 0};
    for (int j = i; j < n; ++j) {
      if (done[j] || !same_pool(&s[i], &s[j])) continue;
      done[j] = true;
      pool[np++] = j;
      if (s[j].is_default) have_default = true, dflt = s[j].variant.tile;
      bool seen = false;
      for (int c = 0; c < nc && !seen; ++c) seen = cells[c] == s[j].cell;
      if (!seen) cells[nc++] = s[j].cell;
    }
    double best_ms = 0, ms = 0, flops = 0, default_ms = -1;
    int best = -1;
    for (int k = 0; k < np; ++k) {
      const jsdpa_gen_tile_t t = s[pool[k]].variant.tile;
      if (!tile_total(s, pool, np, cells, nc, t, -1, &ms, &flops)) continue;
      if (have_default && same_tile(t, dflt)) default_ms = ms;
      if (best < 0 || ms < best_ms) best = pool[k], best_ms = ms;
    }
    if (best < 0) continue;
    jsdpa_gen_tile_t tile = s[best].variant.tile;
    if (default_ms > 0 && best_ms * (1 + min_gain) > default_ms) tile = dflt;
    /* One entry per dtype of the pool, from its first sample of that dtype. */
    for (int k = 0; k < np; ++k) {
      const sample_t* x = &s[pool[k]];
      bool first = true;
      for (int m = 0; m < k && first; ++m) first = s[pool[m]].variant.dtype != x->variant.dtype;
      if (!first) continue;
      jsdpa_tunedb_entry_t e = {.variant = x->variant, .bucket = x->bucket, .default_tflops = -1};
      e.variant.tile = tile;
      memset(&e.variant.loc, 0, sizeof(e.variant.loc));
      double d_ms = 0, d_flops = 0;
      if (!tile_total(s, pool, np, cells, nc, tile, (int)x->variant.dtype, &ms, &flops)) continue;
      e.tflops = flops / (ms * 1e9);
      if (have_default &&
          tile_total(s, pool, np, cells, nc, dflt, (int)x->variant.dtype, &d_ms, &d_flops))
        e.default_tflops = d_flops / (d_ms * 1e9);
      jsdpa_tunedb_put(db, &e);
      ++written;
    }
  }
  free(done);
  free(pool);
  free(cells);
  return written;
}

/* The sweep's measurements as samples. */
static sample_t* sweep_samples(const sweep_t* s, int* out_count) {
  int n = 0;
  for (int i = 0; i < s->num_cells; ++i) n += s->cells[i].group->num_tiles;
  sample_t* out = toolutil_xcalloc((size_t)n + 1, sizeof(sample_t));
  n = 0;
  for (int i = 0; i < s->num_cells; ++i) {
    const cell_t* c = &s->cells[i];
    for (int t = 0; t < c->group->num_tiles; ++t)
      out[n++] = (sample_t){.variant = candidate(c->group, t),
                            .bucket = c->bucket,
                            .cell = i,
                            .is_default = t == 0,
                            .ok = c->results[t].status == ST_OK,
                            .ms = c->results[t].ms,
                            .flops = c->flops};
  }
  *out_count = n;
  return out;
}

static void device_meta(const sweep_t* s, jsdpa_tunedb_meta_t* m) {
  memset(m, 0, sizeof(*m));
  snprintf(m->gpu, sizeof(m->gpu), "%s", s->ctx->device_name);
  m->sm_count = s->ctx->sm_count;
  snprintf(m->driver, sizeof(m->driver), "unknown");
  /* The kernel module's version ("580.159.04"), the first dotted number of
   * "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04 ...":
   * the driver API only knows the CUDA version. */
  FILE* f = fopen("/proc/driver/nvidia/version", "r");
  char line[512];
  if (f && fgets(line, sizeof(line), f)) {
    char* save = NULL;
    for (char* tok = strtok_r(line, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
      if (tok[0] >= '0' && tok[0] <= '9' && strchr(tok, '.') &&
          strspn(tok, "0123456789.") == strlen(tok) && strlen(tok) < sizeof(m->driver)) {
        snprintf(m->driver, sizeof(m->driver), "%s", tok);
        break;
      }
  }
  if (f) fclose(f);
  snprintf(m->cuda, sizeof(m->cuda), "%d.%d", s->cu->version / 1000, s->cu->version % 1000 / 10);
  const jsdpa_nvrtc_t* nv = jsdpa_nvrtc(NULL);
  if (nv) snprintf(m->nvrtc, sizeof(m->nvrtc), "%d.%d", nv->major, nv->minor);
  snprintf(m->generator, sizeof(m->generator), "%s", JSDPA_GEN_VERSION);
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(m->date, sizeof(m->date), "%Y-%m-%d", &tm);
}

/* Merges `picked` into the database at `path` and writes it atomically.
 * `meta` is the new sweep's (a file of another GPU or generator is then
 * replaced, not merged), or NULL to keep the file's, which must exist. */
static int merge_into(const char* path, const jsdpa_tunedb_meta_t* meta,
                      const jsdpa_tunedb_t* picked) {
  jsdpa_tunedb_t db;
  memset(&db, 0, sizeof(db));
  size_t had = 0;
  struct stat sb;
  if (stat(path, &sb) == 0) {
    jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(stderr);
    bool ok = load_db(path, diags, &db);
    jsdpa_gen_diags_destroy(diags);
    if (!ok) {
      fprintf(stderr, "jsdpa-tune: %s has errors (above): not overwritten\n", path);
      jsdpa_tunedb_free(&db);
      return 1;
    }
    if (meta && !same_gpu(&db.meta, meta)) {
      printf(
          "warning: %s was measured on '%s' (%d SMs) with generator %s: its %zu entries are "
          "replaced\n",
          path, db.meta.gpu, db.meta.sm_count, db.meta.generator, db.count);
      jsdpa_tunedb_free(&db);
    }
    had = db.count;
  } else if (!meta) {
    fprintf(stderr,
            "jsdpa-tune: error: cannot read --db '%s': %s (it holds the GPU and versions the "
            "sweep measured with)\n",
            path, strerror(errno));
    return 1;
  }
  if (meta) db.meta = *meta;
  if (picked->count == 0) {
    printf("database: nothing measured, %s left as it was\n", path);
    jsdpa_tunedb_free(&db);
    return 0;
  }
  size_t replaced = 0;
  for (size_t i = 0; i < picked->count; ++i) {
    replaced +=
        jsdpa_tunedb_find(&db, &picked->entries[i].variant, picked->entries[i].bucket) != NULL;
    jsdpa_tunedb_put(&db, &picked->entries[i]);
  }
  char why[1024];
  bool ok = jsdpa_tunedb_write(path, &db, why, sizeof(why));
  if (ok)
    printf("database: %s: %zu entries written (%zu replaced, %zu kept from before), %zu in all\n",
           path, picked->count, replaced, had - replaced, db.count);
  else
    fprintf(stderr, "jsdpa-tune: error: %s\n", why);
  jsdpa_tunedb_free(&db);
  return ok ? 0 : 1;
}

/* Times every cell through the written database as the runtime loads it. */
static void verify(sweep_t* s, const char* path) {
  const jsdpa_tuning_device_t device = {s->ctx->device_name, s->ctx->sm_count, s->ctx->arch};
  jsdpa_tuning_t* t = NULL;
  jsdpa_status_t st = jsdpa_tuning_load(s->ctx, path, &device, &t);
  if (st || !t) {
    printf("verify: %s not used: %s\n", path, st ? jsdpa_status_message(st) : "it does not fit");
    jsdpa_status_free(st);
    return;
  }
  printf("verify: every cell through %s as the runtime loads it\n", jsdpa_tuning_source(t));
  jsdpa_tuning_t* previous = jsdpa_tuning_swap(s->ctx, t);
  for (int i = 0; i < s->num_cells; ++i) {
    cell_t* c = &s->cells[i];
    c->verify_tflops = -1;
    toolutil_call_t call = {.ctx = s->ctx, .batch = c->batch};
    jsdpa_forward_options_initialize(&call.options);
    call.options.is_causal = c->group->key.causal;
    jsdpa_call_t vc;
    if (jsdpa_validate(s->ctx, &call.options, &c->batch->q, &c->batch->k, &c->batch->v,
                       &c->batch->out, NULL, &vc) == NULL)
      c->verify_tile = jsdpa_flash_variant(s->ctx, &vc, &c->verify_tuned).tile;
    double ms = 0;
    st = toolutil_time_median(&s->timer, toolutil_forward_call, &call, s->a->warmup, s->a->reps,
                              &ms);
    if (st) {
      printf("verify: %s: %s\n", c->workload->name, jsdpa_status_message(st));
      jsdpa_status_free(st);
      continue;
    }
    c->verify_tflops = c->flops / (ms * 1e9);
  }
  jsdpa_tuning_destroy(jsdpa_tuning_swap(s->ctx, previous));
}

static void print_table(const sweep_t* s, const jsdpa_tunedb_t* picked) {
  printf(
      "\n| workload | bucket | dtype | d | causal | default tile | default TFLOP/s | tuned tile "
      "| tuned TFLOP/s | tuned/default | through the DB | candidates ok/rejected/error/skipped "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < s->num_cells; ++i) {
    const cell_t* c = &s->cells[i];
    const group_t* g = c->group;
    const jsdpa_tunedb_entry_t* e = jsdpa_tunedb_find(picked, &g->key, c->bucket);
    int tuned = -1;
    for (int t = 0; e && t < g->num_tiles && tuned < 0; ++t)
      if (same_tile(g->tiles[t], e->variant.tile)) tuned = t;
    int counts[5] = {0};
    for (int t = 0; t < g->num_tiles; ++t) ++counts[c->results[t].status];
    char dtag[32], ttag[32] = "-", vtag[48] = "-";
    tile_tag(g->tiles[0], dtag, sizeof(dtag));
    const result_t* d = &c->results[0];
    const result_t* w = tuned >= 0 ? &c->results[tuned] : NULL;
    if (w) tile_tag(g->tiles[tuned], ttag, sizeof(ttag));
    if (c->verify_tflops >= 0) {
      char tag[32];
      tile_tag(c->verify_tile, tag, sizeof(tag));
      snprintf(vtag, sizeof(vtag), "%.1f (%s)", c->verify_tflops, tag);
    }
    char dval[32] = "-", wval[32] = "-", ratio[32] = "-";
    if (d->status == ST_OK) snprintf(dval, sizeof(dval), "%.1f", d->tflops);
    if (w) snprintf(wval, sizeof(wval), "%.1f", w->tflops);
    if (w && d->status == ST_OK) snprintf(ratio, sizeof(ratio), "%.2fx", w->tflops / d->tflops);
    printf("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d/%d/%d/%d |\n",
           c->workload->name, jsdpa_tune_bucket_name(c->bucket), jsdpa_gen_dtype_name(g->key.dtype),
           g->key.head_dim, g->key.causal ? "yes" : "no", dtag, dval, ttag, wval, ratio, vtag,
           counts[ST_OK], counts[ST_REJECTED], counts[ST_ERROR], counts[ST_SKIPPED]);
  }
}

/* ------------------------------------------------------------ main */

static int sweep_main(const args_t* a) {
  sweep_t s;
  memset(&s, 0, sizeof(s));
  s.a = a;
  s.start = now_s();
  toolutil_plan_t plan;
  memset(&plan, 0, sizeof(plan));
  if (a->lengths_file) {
    size_t length = 0;
    char* text = read_text(a->lengths_file, &length);
    if (!text) {
      fprintf(stderr, "jsdpa-tune: cannot read --lengths-file '%s': %s\n", a->lengths_file,
              strerror(errno));
      return 1;
    }
    int rc = toolutil_parse_lengths(text, a->lengths_file, "custom", &plan.workloads[0]);
    free(text);
    if (rc) return rc;
    plan.num_workloads = 1;
  } else {
    int rc = toolutil_read_plan(a->workloads, &plan);
    if (rc) return rc;
    if (a->workload) {
      int keep = -1;
      for (int w = 0; w < plan.num_workloads; ++w)
        if (!strcmp(plan.workloads[w].name, a->workload)) keep = w;
      if (keep < 0) {
        fprintf(stderr, "jsdpa-tune: no workload named '%s' in %s\n", a->workload, a->workloads);
        toolutil_plan_free(&plan);
        return 2;
      }
      toolutil_workload_t w = plan.workloads[keep];
      plan.workloads[keep] = plan.workloads[0];
      plan.workloads[0] = w;
      for (int i = 1; i < plan.num_workloads; ++i) free(plan.workloads[i].lengths);
      plan.num_workloads = 1;
    }
  }

  /* The context's own database stays out of the sweep: every call forces its tile. */
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.tuning_db = "";
  jsdpa_status_t st = jsdpa_context_create(&co, &s.ctx);
  if (st) toolutil_die_status("context", st);
  if (!s.ctx->gpu) {
    fprintf(stderr, "jsdpa-tune: no GPU: %s\n", s.ctx->gpu_reason);
    jsdpa_context_destroy(s.ctx);
    toolutil_plan_free(&plan);
    return 1;
  }
  char name[256];
  s.cu = toolutil_gpu_open(name, sizeof(name));
  toolutil_timer_create(&s.timer, s.cu);
  char arch[16];
  const jsdpa_nvrtc_t* nv = jsdpa_nvrtc(NULL);
  printf("device: %s (%s, %d SMs, %d bytes of shared memory per block), NVRTC %d.%d; seed %llu\n",
         s.ctx->device_name, jsdpa_gen_arch_name(s.ctx->arch, arch, sizeof(arch)), s.ctx->sm_count,
         s.ctx->max_smem_optin, nv ? nv->major : 0, nv ? nv->minor : 0,
         (unsigned long long)a->seed);
  printf(
      "timing: the whole jsdpa_forward (prep + flash kernel), median of %d calls after %d "
      "warm-up, CUDA events, L2 flushed before each\n",
      a->reps, a->warmup);

  int rc = make_groups(&s, &plan);
  char db_path[512];
  if (a->db) {
    snprintf(db_path, sizeof(db_path), "%s", a->db);
  } else {
    char slug[256];
    jsdpa_tunedb_slug(s.ctx->device_name, slug, sizeof(slug));
    snprintf(db_path, sizeof(db_path), "specs/tuned/%s.yaml", slug);
  }
  if (!rc && a->csv) {
    s.csv = fopen(a->csv, "w");
    if (!s.csv) {
      fprintf(stderr, "jsdpa-tune: cannot write --csv '%s': %s\n", a->csv, strerror(errno));
      rc = 1;
    } else {
      fprintf(s.csv,
              "workload,bucket,dtype,head_dim,heads,causal,tile,default,kernel,status,ms,"
              "tflops,max_error,bound,note\n");
    }
  }
  if (!rc) {
    /* Batches: one per workload x (dtype, head dim, heads), shared by both
     * causal settings; each batch's host copy lives only until its cells'
     * references are computed. */
    s.batches = toolutil_xcalloc((size_t)(plan.num_workloads * s.num_groups), sizeof(*s.batches));
    s.cells = toolutil_xcalloc((size_t)(plan.num_workloads * s.num_groups), sizeof(*s.cells));
    for (int w = 0; w < plan.num_workloads; ++w)
      for (int i = 0; i < s.num_groups; ++i) {
        group_t* g = &s.groups[i];
        const jsdpa_dtype_t dtype =
            g->key.dtype == JSDPA_GEN_DTYPE_FP16 ? JSDPA_DTYPE_FP16 : JSDPA_DTYPE_BF16;
        toolutil_batch_t* b = NULL;
        for (int j = 0; j < s.num_batches && !b; ++j)
          if (s.batches[j].lengths == plan.workloads[w].lengths && s.batches[j].dtype == dtype &&
              s.batches[j].head_dim == g->key.head_dim && s.batches[j].heads == g->heads)
            b = &s.batches[j];
        if (!b) {
          b = &s.batches[s.num_batches++];
          *b = (toolutil_batch_t){.name = plan.workloads[w].name,
                                  .lengths = plan.workloads[w].lengths,
                                  .count = plan.workloads[w].count,
                                  .head_dim = g->key.head_dim,
                                  .heads = g->heads,
                                  .dtype = dtype};
        }
        cell_t* c = &s.cells[s.num_cells++];
        c->workload = &plan.workloads[w];
        c->group = g;
        c->batch = b;
        c->flops = toolutil_flops(b->lengths, b->count, b->head_dim, b->heads, g->key.causal);
        c->verify_tflops = -1;
      }
    const double t0 = elapsed(&s);
    double bytes = 0;
    int checked_seqs = 0;
    for (int j = 0; j < s.num_batches; ++j) {
      toolutil_batch_t* b = &s.batches[j];
      toolutil_batch_create(b, s.cu, a->seed + (uint64_t)j * 7919, true);
      bytes += 4.0 * (double)b->out_bytes;
      for (int i = 0; i < s.num_cells; ++i) {
        cell_t* c = &s.cells[i];
        if (c->batch != b) continue;
        c->bucket = jsdpa_tune_bucket_of(b->total, b->count);
        toolutil_oracle_create(&c->oracle, s.ctx, b, c->group->key.causal, a->check_budget,
                               a->seed ^ (uint64_t)(i + 1));
        c->oracle_ready = true;
        checked_seqs += c->oracle.num_seqs;
      }
      toolutil_batch_free_host(b);
    }
    printf(
        "data: %d batches, %.2f GB on the device; float64 references of %d sequences x up to 4 "
        "heads in %d cells; %.1f s\n",
        s.num_batches, bytes / 1e9, checked_seqs, s.num_cells, elapsed(&s) - t0);
    compile_all(&s);
    run_sweep(&s);

    int counts[5] = {0};
    for (int i = 0; i < s.num_cells; ++i)
      for (int t = 0; t < s.cells[i].group->num_tiles; ++t) ++counts[s.cells[i].results[t].status];
    printf("sweep done in %.0f s: %d ok, %d rejected by the check, %d errors, %d skipped%s\n",
           elapsed(&s), counts[ST_OK], counts[ST_REJECTED], counts[ST_ERROR], counts[ST_SKIPPED],
           counts[ST_SKIPPED] ? " (budget)" : "");
    if (a->inject_fault)
      printf("--inject-fault %s: %d candidates corrupted, %d rejected by the check%s\n",
             a->inject_fault, s.fault_matches, s.fault_rejected,
             s.fault_matches ? "" : " (it names no candidate that ran)");
    for (int i = 0; i < s.num_cells; ++i)
      if (s.cells[i].results[0].status == ST_REJECTED && !a->inject_fault) {
        char what[96];
        describe_cell(&s.cells[i], what, sizeof(what));
        fprintf(stderr, "jsdpa-tune: error: the DEFAULT tile failed its check in %s: %s\n", what,
                s.cells[i].results[0].note);
        rc = 1;
      }
    /* What was measured before a candidate broke the context still stands. */
    if (s.cuda_failed) {
      fprintf(stderr, "jsdpa-tune: error: a candidate broke the CUDA context; the sweep stopped\n");
      rc = 1;
    }
    int num_samples = 0;
    sample_t* samples = sweep_samples(&s, &num_samples);
    jsdpa_tunedb_t picked;
    memset(&picked, 0, sizeof(picked));
    pick_entries(samples, num_samples, a->min_gain, &picked);
    free(samples);
    jsdpa_tunedb_meta_t meta;
    device_meta(&s, &meta);
    int wrc = merge_into(db_path, &meta, &picked);
    if (wrc)
      rc = wrc;
    else if (a->verify && counts[ST_OK] && !s.cuda_failed)
      verify(&s, db_path);
    print_table(&s, &picked);
    jsdpa_tunedb_free(&picked);
  }
  if (s.csv) fclose(s.csv);
  for (int i = 0; i < s.num_cells; ++i)
    if (s.cells[i].oracle_ready) toolutil_oracle_free(&s.cells[i].oracle);
  for (int j = 0; j < s.num_batches; ++j) toolutil_batch_free(&s.batches[j], s.cu);
  for (int i = 0; i < s.num_groups; ++i)
    for (int t = 0; t < s.groups[i].num_tiles; ++t) jsdpa_status_free(s.groups[i].compile[t]);
  free(s.batches);
  free(s.cells);
  toolutil_timer_destroy(&s.timer);
  jsdpa_context_destroy(s.ctx);
  toolutil_gpu_close();
  toolutil_plan_free(&plan);
  return rc;
}

/* ------------------------------------------------------------ --pick */

/* The columns --pick reads, in the header order jsdpa-tune writes. */
enum {
  C_WORKLOAD,
  C_BUCKET,
  C_DTYPE,
  C_HEAD_DIM,
  C_CAUSAL,
  C_TILE,
  C_DEFAULT,
  C_KERNEL,
  C_STATUS,
  C_MS,
  C_TFLOPS,
  C_COUNT
};
static const char* const csv_columns[C_COUNT] = {"workload", "bucket", "dtype",   "head_dim",
                                                 "causal",   "tile",   "default", "kernel",
                                                 "status",   "ms",     "tflops"};

/* Splits a CSV line at commas outside double quotes (in place); returns the field count. */
static int split_csv(char* line, char** fields, int capacity) {
  int n = 0;
  bool quoted = false;
  fields[n++] = line;
  for (char* p = line; *p; ++p) {
    if (*p == '"') quoted = !quoted;
    if (*p == ',' && !quoted && n < capacity) {
      *p = '\0';
      fields[n++] = p + 1;
    }
  }
  return n;
}

/* One CSV row -> a sample; false (after a message) on a malformed row. */
static bool parse_sample(char** f, const int* col, const char* where, sample_t* out) {
  memset(out, 0, sizeof(*out));
  jsdpa_gen_variant_t* v = &out->variant;
  /* The family and arch come from the kernel name: jsdpa_<family>_sm<NN>[a]_... */
  char family[32] = "", arch[16] = "";
  int sm = 0;
  const char* k = f[col[C_KERNEL]];
  int n = 0;
  bool ok = sscanf(k, "jsdpa_%31[a-z]_sm%d%n", family, &sm, &n) == 2;
  if (ok) snprintf(arch, sizeof(arch), "sm_%d%s", sm, k[n] == 'a' ? "a" : "");
  int64_t d = 0;
  ok = ok && jsdpa_gen_parse_family(family, &v->family) && jsdpa_gen_parse_arch(arch, &v->arch) &&
       jsdpa_gen_parse_dtype(f[col[C_DTYPE]], &v->dtype) &&
       toolutil_parse_i64(f[col[C_HEAD_DIM]], 1, 1024, &d) &&
       jsdpa_tune_parse_bucket(f[col[C_BUCKET]], &out->bucket) &&
       jsdpa_gen_parse_tile(f[col[C_TILE]], &v->tile);
  if (!ok) {
    fprintf(stderr, "jsdpa-tune: %s: error: not a jsdpa-tune sweep row\n", where);
    return false;
  }
  v->head_dim = v->head_dim_v = (int)d;
  v->causal = !strcmp(f[col[C_CAUSAL]], "1");
  out->is_default = !strcmp(f[col[C_DEFAULT]], "1");
  out->ok = !strcmp(f[col[C_STATUS]], "ok");
  if (out->ok) {
    char* end = NULL;
    out->ms = strtod(f[col[C_MS]], &end);
    double tflops = strtod(f[col[C_TFLOPS]], NULL);
    if (end == f[col[C_MS]] || !(out->ms > 0)) {
      fprintf(stderr, "jsdpa-tune: %s: error: an ok row without a time\n", where);
      return false;
    }
    out->flops = tflops * out->ms * 1e9; /* the CSV keeps TFLOP/s, not the count */
  }
  return true;
}

static int pick_main(const args_t* a) {
  sample_t* samples = NULL;
  int count = 0, capacity = 0;
  /* A cell is a (file, workload, dtype, head dim, causal) seen in the rows. */
  char(*cells)[192] = NULL;
  int num_cells = 0;
  int rc = 0;
  for (int i = 0; i < a->num_files && !rc; ++i) {
    size_t length = 0;
    char* text = read_text(a->files[i], &length);
    if (!text) {
      fprintf(stderr, "jsdpa-tune: cannot read '%s': %s\n", a->files[i], strerror(errno));
      rc = 1;
      break;
    }
    int col[C_COUNT], line = 0;
    char* save = NULL;
    for (char* row = strtok_r(text, "\n", &save); row && !rc; row = strtok_r(NULL, "\n", &save)) {
      char* f[32];
      int nf = split_csv(row, f, 32);
      char where[600];
      snprintf(where, sizeof(where), "%s:%d", a->files[i], ++line);
      if (line == 1) {
        for (int c = 0; c < C_COUNT; ++c) {
          col[c] = -1;
          for (int j = 0; j < nf; ++j)
            if (!strcmp(f[j], csv_columns[c])) col[c] = j;
          if (col[c] < 0) {
            fprintf(stderr, "jsdpa-tune: %s: error: no '%s' column (not a jsdpa-tune --csv file)\n",
                    where, csv_columns[c]);
            rc = 1;
          }
        }
        continue;
      }
      bool short_row = false;
      for (int c = 0; c < C_COUNT; ++c) short_row |= col[c] >= nf;
      if (short_row) {
        fprintf(stderr, "jsdpa-tune: %s: error: %d fields, too few\n", where, nf);
        rc = 1;
        break;
      }
      if (count == capacity) {
        capacity = capacity ? 2 * capacity : 256;
        samples = toolutil_xrealloc(samples, sizeof(*samples) * (size_t)capacity);
        cells = toolutil_xrealloc(cells, sizeof(*cells) * (size_t)capacity);
      }
      if (!parse_sample(f, col, where, &samples[count])) {
        rc = 1;
        break;
      }
      char key[192];
      snprintf(key, sizeof(key), "%d/%.60s/%s/%s/%s", i, f[col[C_WORKLOAD]], f[col[C_DTYPE]],
               f[col[C_HEAD_DIM]], f[col[C_CAUSAL]]);
      int cell = 0;
      while (cell < num_cells && strcmp(cells[cell], key)) ++cell;
      if (cell == num_cells) memcpy(cells[num_cells++], key, sizeof(key));
      samples[count++].cell = cell;
    }
    free(text);
  }
  if (!rc) {
    jsdpa_tunedb_t picked;
    memset(&picked, 0, sizeof(picked));
    pick_entries(samples, count, a->min_gain, &picked);
    printf("--pick: %d rows in %d cells of %d files -> %zu entries (min gain %.3g)\n", count,
           num_cells, a->num_files, picked.count, a->min_gain);
    rc = merge_into(a->db, NULL, &picked);
    jsdpa_tunedb_free(&picked);
  }
  free(samples);
  free(cells);
  return rc;
}

int main(int argc, char** argv) {
  toolutil_init("jsdpa-tune");
  args_t a;
  int rc = parse_args(argc, argv, &a);
  if (!rc) {
    if (a.mode == MODE_CHECK_DB)
      rc = check_dbs(&a);
    else if (a.mode == MODE_MERGE)
      rc = merge_dbs(&a);
    else if (a.mode == MODE_PICK)
      rc = pick_main(&a);
    else
      rc = sweep_main(&a);
  }
  free(a.files);
  return rc;
}
