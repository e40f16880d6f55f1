/*
 * The tuning database at run time (runtime/tuning.c, no GPU needed):
 *  - length buckets from total_q / batch, and the GPU-name slug;
 *  - which database a context uses: options.tuning_db, $JSDPA_TUNING_DB, the
 *    built-in one for the device; "" turns tuning off;
 *  - the fallback to the family defaults when no database fits: another GPU
 *    name or SM count, another generator version, no entry for the bucket;
 *  - fp16 reusing bf16's entry; errors of a given file fail with locations;
 *  - the flash backend's tile for a call on a pretend H100: the tuned one, or
 *    the default when the tuned one cannot run on this device.
 * Databases are written to a fresh temp directory from the strings below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"
#include "tuning.h"

static char dir[64];

static const char* write_db(const char* name, const char* gpu, int sms, const char* generator,
                            const char* entries) {
  static char path[8][128];
  static int next;
  char* p = path[next++ % 8];
  snprintf(p, 128, "%s/%s", dir, name);
  FILE* f = fopen(p, "w");
  if (!f) {
    perror(p);
    exit(1);
  }
  fprintf(f,
          "format: 1\ngpu: \"%s\"\nsm_count: %d\ndriver: \"580.159.04\"\ncuda: \"13.0\"\n"
          "nvrtc: \"13.0\"\ngenerator: \"%s\"\ndate: \"2026-11-25\"\nentries:\n%s",
          gpu, sms, generator, entries);
  fclose(f);
  return p;
}

/* bf16 d64: short and long buckets; d256 causal long with a tile (128 rows,
 * two K/V stages of 128 keys) that needs 270 KiB of shared memory at d256:
 * more than any GPU allows, so the backend must fall back. */
static const char* const entries =
    "  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 64, causal: false, bucket: short,\n"
    "     tile: {block_m: 64, block_n: 64, warps: 4, stages: 2}, tflops: 148.6,\n"
    "     default_tflops: 129.4}\n"
    "  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 64, causal: false, bucket: long,\n"
    "     tile: {block_m: 128, block_n: 128, warps: 8, stages: 2}, tflops: 310.0}\n"
    "  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 256, causal: true, bucket: long,\n"
    "     tile: {block_m: 128, block_n: 128, warps: 8, stages: 2}, tflops: 1.0}\n";

static const jsdpa_tuning_device_t pretend = {"Pretend GPU 80GB", 132, {90, true}};
static const jsdpa_gen_tile_t short_tile = {64, 64, 4, 2};

static bool tile_is(jsdpa_gen_tile_t t, jsdpa_gen_tile_t want) {
  return t.block_m == want.block_m && t.block_n == want.block_n && t.warps == want.warps &&
         t.stages == want.stages;
}

static void test_buckets(void) {
  const struct {
    int64_t total, batch;
    jsdpa_tune_bucket_t want;
  } rows[] = {
      {0, 0, JSDPA_TUNE_BUCKET_SHORT},
      {0, 5, JSDPA_TUNE_BUCKET_SHORT},
      {256, 1, JSDPA_TUNE_BUCKET_SHORT},
      {257, 1, JSDPA_TUNE_BUCKET_MEDIUM},
      {2048, 1, JSDPA_TUNE_BUCKET_MEDIUM},
      {2049, 1, JSDPA_TUNE_BUCKET_LONG},
      {71734, 512, JSDPA_TUNE_BUCKET_SHORT}, /* bench/workloads.yaml short */
      {72106, 64, JSDPA_TUNE_BUCKET_MEDIUM}, /* mixed */
      {64005, 16, JSDPA_TUNE_BUCKET_LONG},   /* long */
      {INT64_C(1) << 40, 1, JSDPA_TUNE_BUCKET_LONG},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); ++i) {
    jsdpa_tune_bucket_t b = jsdpa_tune_bucket_of(rows[i].total, rows[i].batch);
    CHECK(b == rows[i].want, "bucket of %lld tokens in %lld sequences: %s, expected %s",
          (long long)rows[i].total, (long long)rows[i].batch, jsdpa_tune_bucket_name(b),
          jsdpa_tune_bucket_name(rows[i].want));
  }
  jsdpa_tune_bucket_t parsed;
  CHECK(jsdpa_tune_parse_bucket("medium", &parsed) && parsed == JSDPA_TUNE_BUCKET_MEDIUM,
        "parse medium");
  CHECK(!jsdpa_tune_parse_bucket("mixed", &parsed), "'mixed' is a workload, not a bucket");
  char slug[64];
  jsdpa_tunedb_slug("NVIDIA H100 80GB HBM3", slug, sizeof(slug));
  CHECK(!strcmp(slug, "nvidia-h100-80gb-hbm3"), "slug %s", slug);
  jsdpa_tunedb_slug("  A100-SXM4__40GB (x) ", slug, sizeof(slug));
  CHECK(!strcmp(slug, "a100-sxm4-40gb-x"), "slug %s", slug);
}

static jsdpa_gen_variant_t flash(jsdpa_gen_dtype_t dtype, int d, bool causal) {
  return jsdpa_gen_variant_make(JSDPA_GEN_FAMILY_FLASH, (jsdpa_gen_arch_t){90, true}, dtype, d, d,
                                causal);
}

/* Loads `path` for `device`; expects a table (or none) without an error. */
static jsdpa_tuning_t* load(const char* path, const jsdpa_tuning_device_t* device, bool want,
                            const char* label) {
  jsdpa_tuning_t* t = NULL;
  CHECK_OK(jsdpa_tuning_load(NULL, path, device, &t));
  CHECK((t != NULL) == want, "%s: %s", label, want ? "no table" : "a table that should not apply");
  return t;
}

static void test_lookup(void) {
  const char* good =
      write_db("good.yaml", pretend.name, pretend.sm_count, JSDPA_GEN_VERSION, entries);
  jsdpa_tuning_t* t = load(good, &pretend, true, "a database for this GPU");
  if (!t) return;
  jsdpa_tuning_choice_t c;
  jsdpa_gen_variant_t v = flash(JSDPA_GEN_DTYPE_BF16, 64, false);
  CHECK(jsdpa_tuning_lookup(t, &v, 71734, 512, &c) && tile_is(c.tile, short_tile) &&
            c.bucket == JSDPA_TUNE_BUCKET_SHORT && c.tflops > 148 && c.tflops < 149,
        "bf16 d64 short: the tuned tile");
  CHECK(jsdpa_tuning_lookup(t, &v, 64005, 16, &c) && c.tile.block_n == 128,
        "bf16 d64 long: the long bucket's tile");
  CHECK(!jsdpa_tuning_lookup(t, &v, 72106, 64, &c), "bf16 d64 medium: no entry, the default");
  v = flash(JSDPA_GEN_DTYPE_FP16, 64, false);
  CHECK(jsdpa_tuning_lookup(t, &v, 100, 1, &c) && tile_is(c.tile, short_tile) &&
            c.measured_dtype == JSDPA_GEN_DTYPE_BF16,
        "fp16 d64 short reuses bf16's entry");
  v = flash(JSDPA_GEN_DTYPE_BF16, 64, true);
  CHECK(!jsdpa_tuning_lookup(t, &v, 100, 1, &c), "causal: no entry, the default");
  v = flash(JSDPA_GEN_DTYPE_BF16, 128, false);
  CHECK(!jsdpa_tuning_lookup(t, &v, 100, 1, &c), "d128: no entry, the default");
  v.arch = (jsdpa_gen_arch_t){80, false};
  v.head_dim = v.head_dim_v = 64;
  CHECK(!jsdpa_tuning_lookup(t, &v, 100, 1, &c), "sm_80: no entry, the default");
  CHECK(!jsdpa_tuning_lookup(NULL, &v, 100, 1, &c), "no table: the default");
  CHECK(strstr(jsdpa_tuning_source(t), "good.yaml") != NULL, "source %s", jsdpa_tuning_source(t));
  jsdpa_tuning_destroy(t);
}

static void test_fallbacks(void) {
  const char* good =
      write_db("good.yaml", pretend.name, pretend.sm_count, JSDPA_GEN_VERSION, entries);
  printf("  (the 'ignored' warnings below are expected)\n");
  fflush(stdout);
  jsdpa_tuning_device_t other = pretend;
  other.name = "Another GPU";
  load(good, &other, false, "another GPU name");
  other = pretend;
  other.sm_count = 114;
  load(good, &other, false, "another SM count");
  const char* old = write_db("old.yaml", pretend.name, pretend.sm_count, "0.0.1", entries);
  load(old, &pretend, false, "another generator version");
  load("", &pretend, false, "\"\" turns tuning off");
  load(good, NULL, false, "no GPU: read, not used");

  /* $JSDPA_TUNING_DB when the option is not set; the option wins over it. */
  setenv("JSDPA_TUNING_DB", good, 1);
  jsdpa_tuning_destroy(load(NULL, &pretend, true, "$JSDPA_TUNING_DB"));
  load(old, &pretend, false, "options.tuning_db over $JSDPA_TUNING_DB");
  setenv("JSDPA_TUNING_DB", "", 1);
  load(NULL, &pretend, false, "$JSDPA_TUNING_DB=\"\"");
  unsetenv("JSDPA_TUNING_DB");

  /* A given file with errors fails, with every diagnostic and its location. */
  const char* bad = write_db("bad.yaml", pretend.name, pretend.sm_count, JSDPA_GEN_VERSION,
                             "  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 64,\n"
                             "     causal: false, bucket: tiny, tflops: 1,\n"
                             "     tile: {block_m: 192, block_n: 64, warps: 8, stages: 2}}\n");
  jsdpa_tuning_t* t = NULL;
  CHECK_STATUS(jsdpa_tuning_load(NULL, bad, &pretend, &t), JSDPA_STATUS_INVALID_ARGUMENT,
               "bad.yaml:11:29: error: unknown bucket 'tiny'", "2 error(s)",
               "bad.yaml:12:12: error: tile m192n64w8s2", "16 or 32 query rows");
  CHECK(t == NULL, "no table from a bad file");
  char missing[128];
  snprintf(missing, sizeof(missing), "%s/missing.yaml", dir);
  CHECK_STATUS(jsdpa_tuning_load(NULL, missing, &pretend, &t), JSDPA_STATUS_IO_ERROR,
               "options.tuning_db", "missing.yaml", "No such file");

  /* Context creation reads the option too (this machine may have no GPU). */
  jsdpa_context_options_t co;
  jsdpa_context_options_initialize(&co);
  co.device = JSDPA_DEVICE_NONE;
  co.tuning_db = bad;
  jsdpa_context_t* ctx = NULL;
  CHECK_STATUS(jsdpa_context_create(&co, &ctx), JSDPA_STATUS_INVALID_ARGUMENT, "unknown bucket");
  co.tuning_db = good;
  if (CHECK_OK(jsdpa_context_create(&co, &ctx))) {
    CHECK(ctx->tuning == NULL, "a cpu-only context keeps no table");
    jsdpa_context_destroy(ctx);
  }
}

/* The database built into the library for the H100 (specs/tuned/), if this
 * build has one: it must load for that GPU, and only for it. */
static void test_builtin(void) {
  const jsdpa_tuning_device_t h100 = {"NVIDIA H100 80GB HBM3", 132, {90, true}};
  if (!jsdpa_gen_template("tuned/nvidia-h100-80gb-hbm3.yaml", NULL)) {
    printf("  no built-in H100 database in this build: skipped\n");
    return;
  }
  jsdpa_tuning_t* t = load(NULL, &h100, true, "the built-in H100 database");
  if (t) {
    const jsdpa_tunedb_t* db = jsdpa_tuning_database(t);
    CHECK(db && db->count > 0, "the built-in database has entries");
    jsdpa_tuning_choice_t c;
    jsdpa_gen_variant_t v = flash(JSDPA_GEN_DTYPE_BF16, 128, false);
    CHECK(jsdpa_tuning_lookup(t, &v, 64005, 16, &c), "bf16 d128 long has a tuned tile");
    CHECK(strstr(jsdpa_tuning_source(t), "built-in tuned/nvidia-h100-80gb-hbm3.yaml") != NULL,
          "source %s", jsdpa_tuning_source(t));
    jsdpa_tuning_destroy(t);
  }
  jsdpa_tuning_device_t other = h100;
  other.sm_count = 114; /* an H100 PCIe-like part */
  load(NULL, &other, false, "the built-in database on another SM count");
}

/* The flash backend's tile on a pretend H100 (as test_select's). */
static void test_backend(void) {
  jsdpa_context_t* ctx = calloc(1, sizeof(*ctx));
  jsdpa_context_options_initialize(&ctx->options);
  ctx->gpu = true;
  ctx->arch = (jsdpa_gen_arch_t){90, true};
  snprintf(ctx->device_name, sizeof(ctx->device_name), "%s", pretend.name);
  ctx->sm_count = pretend.sm_count;
  ctx->max_smem_optin = 227 * 1024;
  const char* good =
      write_db("good.yaml", pretend.name, pretend.sm_count, JSDPA_GEN_VERSION, entries);
  ctx->tuning = load(good, &pretend, true, "the backend's table");

  jsdpa_call_t call;
  memset(&call, 0, sizeof(call));
  call.q.dtype = JSDPA_DTYPE_BF16;
  call.head_dim = call.head_dim_v = 64;
  call.total_q = 71734;
  call.batch = 512;
  bool tuned = false;
  jsdpa_gen_variant_t v = jsdpa_flash_variant(ctx, &call, &tuned);
  CHECK(tuned && tile_is(v.tile, short_tile), "short bf16 d64 call: the tuned tile");
  call.q.dtype = JSDPA_DTYPE_FP16;
  v = jsdpa_flash_variant(ctx, &call, &tuned);
  CHECK(tuned && tile_is(v.tile, short_tile), "short fp16 d64 call: bf16's tuned tile");
  call.total_q = 72106;
  call.batch = 64;
  v = jsdpa_flash_variant(ctx, &call, &tuned);
  jsdpa_gen_tile_t dflt = jsdpa_gen_default_tile(JSDPA_GEN_FAMILY_FLASH, ctx->arch,
                                                 JSDPA_GEN_DTYPE_FP16, 64, 64, false);
  CHECK(!tuned && tile_is(v.tile, dflt), "medium call: no entry, the default tile");
  /* The d256 causal long entry cannot fit 227 KiB: the default runs. */
  call.head_dim = call.head_dim_v = 256;
  call.options.is_causal = true;
  call.total_q = 64005;
  call.batch = 16;
  v = jsdpa_flash_variant(ctx, &call, &tuned);
  dflt = jsdpa_gen_default_tile(JSDPA_GEN_FAMILY_FLASH, ctx->arch, JSDPA_GEN_DTYPE_FP16, 256, 256,
                                true);
  CHECK(!tuned && tile_is(v.tile, dflt) && jsdpa_gen_smem_bytes(&v) <= ctx->max_smem_optin,
        "an entry that needs too much shared memory: the default tile");
  /* A forced table (jsdpa-tune's) answers every call. */
  jsdpa_tuning_destroy(jsdpa_tuning_swap(ctx, jsdpa_tuning_create_forced(short_tile)));
  v = jsdpa_flash_variant(ctx, &call, &tuned);
  CHECK(tuned && tile_is(v.tile, short_tile), "forced table: its tile");
  jsdpa_tuning_destroy(ctx->tuning);
  free(ctx);
}

int main(int argc, char** argv) {
  (void)argc;
  testutil_init(argv[0]);
  snprintf(dir, sizeof(dir), "/tmp/jsdpa-test-tuning-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  unsetenv("JSDPA_TUNING_DB");
  test_buckets();
  test_lookup();
  test_fallbacks();
  test_builtin();
  test_backend();
  const char* names[] = {"good.yaml", "old.yaml", "bad.yaml"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
  return testutil_finish();
}
