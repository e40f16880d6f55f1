/*
 * jsdpa-tune end to end on the GPU (the built tool, run as a user would):
 *  - a small sweep (bf16 d64, three tiles from a spec, a random short batch)
 *    with --inject-fault on one tile: the float64 check rejects exactly that
 *    one, it is never timed and never wins, and the database and CSV say so;
 *  - the runtime picks the written database up (options.tuning_db): the flash
 *    backend runs the tuned tile and its output passes the 2x rule;
 *  - --budget 0 measures nothing, reports every candidate skipped and leaves
 *    the database as it was.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"
#include "tuning.h"

static char dir[64];
static char tool[PATH_MAX];

static char* slurp(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* text = malloc((size_t)n + 1);
  if (text && fread(text, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (text) text[n] = '\0';
  fclose(f);
  return text;
}

static void put(const char* name, const char* text) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE* f = fopen(path, "w");
  if (!f || fputs(text, f) < 0) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

/* Runs the tool with `args`, its output into dir/log; prints the log; returns the exit status. */
static int run_tool(const char* args) {
  char command[PATH_MAX + 4096];
  snprintf(command, sizeof(command), "'%s' %s > '%s/log' 2>&1", tool, args, dir);
  printf("$ jsdpa-tune %s\n", args);
  fflush(stdout);
  int status = system(command);
  char path[128];
  snprintf(path, sizeof(path), "%s/log", dir);
  char* log = slurp(path);
  printf("%s", log ? log : "(no output)\n");
  free(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The CSV line of a tile (first match) copied into `line`, or NULL. */
static const char* csv_line(const char* csv, const char* tile, char* line, size_t capacity) {
  char needle[64];
  snprintf(needle, sizeof(needle), ",%s,", tile);
  const char* at = strstr(csv, needle);
  if (!at) return NULL;
  while (at > csv && at[-1] != '\n') --at;
  size_t n = strcspn(at, "\n");
  snprintf(line, capacity, "%.*s", (int)(n < capacity ? n : capacity - 1), at);
  return line;
}

static int64_t lens[40];
static const int batch = 40;

static void test_sweep(uint64_t seed) {
  char text[1024] = "# a random short batch (mean length <= 256: the short bucket)\n";
  for (int i = 0; i < batch; ++i) {
    lens[i] = i == 7 ? 0 : testutil_rand_int(1, 300);
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "%lld%s", (long long)lens[i],
             i + 1 < batch ? ", " : "\n");
  }
  put("lengths.txt", text);
  put("spec.yaml",
      "kernels:\n"
      "  - family: flash\n    dtype: bf16\n    head_dim: 64\n    causal: false\n"
      "    tile: {block_m: 64, block_n: 64, warps: 4, stages: 2}\n"
      "  - family: flash\n    dtype: bf16\n    head_dim: 64\n    causal: false\n"
      "    tile: {block_m: 128, block_n: 64, warps: 8, stages: 2}\n");
  char args[2048];
  snprintf(args, sizeof(args),
           "--spec %s/spec.yaml --lengths-file %s/lengths.txt --heads 4 --budget 120 "
           "--db %s/db.yaml --csv %s/sweep.csv --inject-fault m64n64w4s2 --seed %llu",
           dir, dir, dir, dir, (unsigned long long)seed);
  int rc = run_tool(args);
  CHECK(rc == 0, "the sweep exits 0, got %d", rc);

  char path[128], line[1024];
  snprintf(path, sizeof(path), "%s/sweep.csv", dir);
  char* csv = slurp(path);
  CHECK(csv != NULL, "the sweep wrote its CSV");
  if (csv) {
    const char* faulty = csv_line(csv, "m64n64w4s2", line, sizeof(line));
    CHECK(faulty && strstr(faulty, ",rejected,") && strstr(faulty, "--inject-fault"),
          "the corrupted tile is rejected by the check: %s", faulty ? faulty : "(no line)");
    const char* dflt = csv_line(csv, "m128n64w4s2", line, sizeof(line));
    CHECK(dflt && strstr(dflt, ",1,jsdpa_flash_") && strstr(dflt, ",ok,"),
          "the default tile passes and is timed: %s", dflt ? dflt : "(no line)");
    const char* other = csv_line(csv, "m128n64w8s2", line, sizeof(line));
    CHECK(other && strstr(other, ",ok,"), "the third tile passes and is timed: %s",
          other ? other : "(no line)");
    free(csv);
  }
  snprintf(path, sizeof(path), "%s/log", dir);
  char* log = slurp(path);
  CHECK(log && strstr(log, "--inject-fault m64n64w4s2: 1 candidates corrupted, 1 rejected"),
        "the tool reports the injected fault as caught");
  free(log);

  snprintf(path, sizeof(path), "%s/db.yaml", dir);
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.tuning_db = path;
  co.verbosity = 1; /* the backend says which tile it runs */
  jsdpa_context_t* ctx = NULL;
  if (!CHECK_OK(jsdpa_context_create(&co, &ctx))) return;
  CHECK(ctx->tuning != NULL, "the context uses the written database");
  const jsdpa_tunedb_t* db = jsdpa_tuning_database(ctx->tuning);
  CHECK(db && db->count == 1, "one entry (bf16 d64 non-causal, short bucket)");
  if (db && db->count == 1) {
    const jsdpa_tunedb_entry_t* e = &db->entries[0];
    CHECK(e->bucket == JSDPA_TUNE_BUCKET_SHORT && e->variant.head_dim == 64 && !e->variant.causal,
          "the entry's key");
    CHECK(!(e->variant.tile.block_m == 64 && e->variant.tile.warps == 4),
          "the rejected tile did not win");
    CHECK(e->tflops > 0 && e->default_tflops > 0, "measured TFLOP/s %.1f, default %.1f", e->tflops,
          e->default_tflops);
  }

  /* A call in that bucket runs the tuned tile and is right. */
  testutil_case_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.batch = batch;
  cfg.q_lens = lens;
  cfg.heads = 4;
  cfg.kv_heads = 4;
  cfg.head_dim = 64;
  cfg.dtype = JSDPA_DTYPE_BF16;
  testutil_case_t* c = testutil_case_create(&cfg);
  testutil_device_case_t d;
  testutil_device_case_upload(c, true, &d);
  testutil_device_case_poison(c, &d);
  jsdpa_forward_options_t o;
  jsdpa_forward_options_initialize(&o);
  jsdpa_call_t call;
  if (CHECK_OK(jsdpa_validate(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL, &call)) && db &&
      db->count == 1) {
    bool tuned = false;
    jsdpa_gen_variant_t v = jsdpa_flash_variant(ctx, &call, &tuned);
    const jsdpa_gen_tile_t want = db->entries[0].variant.tile;
    CHECK(tuned && v.tile.block_m == want.block_m && v.tile.block_n == want.block_n &&
              v.tile.warps == want.warps && v.tile.stages == want.stages,
          "the flash backend runs the tuned tile m%dn%dw%ds%d", want.block_m, want.block_n,
          want.warps, want.stages);
  }
  jsdpa_selection_t sel;
  if (CHECK_OK(jsdpa_explain(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL, &sel)))
    CHECK(sel.backend == JSDPA_BACKEND_FLASH, "flash runs it (%s)",
          jsdpa_backend_name(sel.backend));
  if (CHECK_OK(jsdpa_forward(ctx, &o, &d.q, &d.k, &d.v, &d.out, NULL)) &&
      CHECK_OK(jsdpa_context_check_device_errors(ctx, NULL))) {
    testutil_device_case_download(c, &d);
    testutil_case_check("tuned tile vs float64", c, &o, 0);
  }
  testutil_device_case_free(&d);
  testutil_case_destroy(c);
  jsdpa_context_destroy(ctx);
}

static void test_zero_budget(void) {
  char path[128];
  snprintf(path, sizeof(path), "%s/db.yaml", dir);
  char* before = slurp(path);
  char args[1024];
  snprintf(args, sizeof(args),
           "--spec %s/spec.yaml --lengths-file %s/lengths.txt --heads 4 --budget 0 "
           "--db %s/db.yaml --csv %s/zero.csv",
           dir, dir, dir, dir);
  int rc = run_tool(args);
  CHECK(rc == 0, "a zero budget exits 0, got %d", rc);
  snprintf(path, sizeof(path), "%s/log", dir);
  char* log = slurp(path);
  CHECK(log && strstr(log, "0 ok, 0 rejected by the check, 0 errors, 3 skipped (budget)"),
        "every candidate skipped and reported");
  CHECK(log && strstr(log, "nothing measured"), "nothing written");
  free(log);
  snprintf(path, sizeof(path), "%s/db.yaml", dir);
  char* after = slurp(path);
  CHECK(before && after && !strcmp(before, after), "the database is unchanged");
  free(before);
  free(after);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  testutil_require_gpu();
  ssize_t n = readlink("/proc/self/exe", tool, sizeof(tool) - 32);
  if (n <= 0) {
    perror("readlink /proc/self/exe");
    return 1;
  }
  tool[n] = '\0';
  char* slash = strrchr(tool, '/');
  snprintf(slash ? slash + 1 : tool, sizeof(tool) - (size_t)(slash ? slash + 1 - tool : 0),
           "../tools/jsdpa-tune");
  if (access(tool, X_OK) != 0) {
    CHECK(false, "jsdpa-tune not found at %s (build the tools)", tool);
    return testutil_finish();
  }
  snprintf(dir, sizeof(dir), "/tmp/jsdpa-test-tune-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_sweep(testutil_seed());
  test_zero_budget();
  char command[256];
  snprintf(command, sizeof(command), "rm -rf '%s'", dir);
  if (system(command) != 0) printf("could not remove %s\n", dir);
  return testutil_finish();
}
