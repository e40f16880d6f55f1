/*
 * jsdpa_tunedb.h — the tuning database: the fastest kernel tile measured per
 * (family, arch, dtype, head dims, causal, length bucket) on one GPU model,
 * stored as YAML in specs/tuned/<gpu-slug>.yaml (format: docs/tuning.md).
 *
 * gen/tunedb.c parses it (libyaml document API, diagnostics with locations
 * through gen/diag.c, tiles validated with jsdpa_gen_variant_check), merges
 * databases and writes them back deterministically (sorted entries, fixed
 * number formats) and atomically. Pure C, no CUDA: jsdpa-tune writes it, the
 * runtime (runtime/tuning.c) reads it at context creation.
 */
#ifndef JSDPA_GEN_TUNEDB_H_
#define JSDPA_GEN_TUNEDB_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jsdpa_gen.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JSDPA_TUNEDB_FORMAT 1

/* ------------------------------------------------------------ length buckets */

/*
 * A call's bucket comes from what the host always knows without a device
 * sync: the mean query length total_q / batch.
 *   short   mean <= 256           (many short sequences: scheduling dominates)
 *   medium  256 < mean <= 2048    (serving batches of mixed lengths)
 *   long    mean > 2048           (prefill: few long sequences)
 * The canonical workloads of bench/workloads.yaml fall one in each: short
 * (mean 140), mixed (1127: medium), long (4000). An empty batch is short.
 */
typedef enum jsdpa_tune_bucket_e {
  JSDPA_TUNE_BUCKET_SHORT = 0,
  JSDPA_TUNE_BUCKET_MEDIUM = 1,
  JSDPA_TUNE_BUCKET_LONG = 2,
  JSDPA_TUNE_BUCKET_COUNT = 3,
} jsdpa_tune_bucket_t;

#define JSDPA_TUNE_SHORT_MAX_MEAN 256
#define JSDPA_TUNE_MEDIUM_MAX_MEAN 2048

const char* jsdpa_tune_bucket_name(jsdpa_tune_bucket_t bucket); /* "short" */
bool jsdpa_tune_parse_bucket(const char* text, jsdpa_tune_bucket_t* out);
jsdpa_tune_bucket_t jsdpa_tune_bucket_of(int64_t total_q, int64_t batch);

/* ------------------------------------------------------------ the database */

typedef struct jsdpa_tunedb_meta_s {
  char gpu[256];      /* the CUDA device name, exactly as cuDeviceGetName gives it */
  int sm_count;       /* multiprocessors */
  char driver[64];    /* kernel driver version ("580.159.04"), or "unknown" */
  char cuda[16];      /* driver API version ("13.0") */
  char nvrtc[16];     /* NVRTC version the kernels were compiled with ("13.0") */
  char generator[32]; /* JSDPA_GEN_VERSION of the jsdpa-tune that measured */
  char date[32];      /* UTC date of the last sweep written into it */
  jsdpa_gen_loc_t gpu_loc, sm_count_loc, generator_loc; /* for messages; 0s when built */
} jsdpa_tunedb_meta_t;

typedef struct jsdpa_tunedb_entry_s {
  /* The key (family, arch, dtype, head_dim, head_dim_v, causal) and the tuned
   * tile; variant.loc is the entry's mapping (0s when built in memory). */
  jsdpa_gen_variant_t variant;
  jsdpa_tune_bucket_t bucket;
  double tflops;         /* the tuned tile's, measured in the sweep */
  double default_tflops; /* the family default tile's in the same sweep; < 0: not measured */
} jsdpa_tunedb_entry_t;

typedef struct jsdpa_tunedb_s {
  jsdpa_tunedb_meta_t meta;
  jsdpa_tunedb_entry_t* entries;
  size_t count;
  size_t capacity;
} jsdpa_tunedb_t;

/*
 * YAML text -> database. Reports every syntax, key, type and value error
 * (unknown keys, tiles the family's template does not support, duplicate
 * keys) GCC style with the source line and a caret; returns false if any was
 * reported. `file` names the text in diagnostics and must outlive `out`.
 * Free with jsdpa_tunedb_free either way.
 */
bool jsdpa_tunedb_parse(const char* file, const char* text, size_t length, jsdpa_gen_diags_t* diags,
                        jsdpa_tunedb_t* out);
void jsdpa_tunedb_free(jsdpa_tunedb_t* db);

/* Whether two entries have the same key (everything but tile and numbers). */
bool jsdpa_tunedb_same_key(const jsdpa_tunedb_entry_t* a, const jsdpa_tunedb_entry_t* b);
/* The entry for the variant's key (its tile ignored) and bucket, or NULL. */
const jsdpa_tunedb_entry_t* jsdpa_tunedb_find(const jsdpa_tunedb_t* db,
                                              const jsdpa_gen_variant_t* variant,
                                              jsdpa_tune_bucket_t bucket);
/* Adds the entry, replacing one with the same key. */
void jsdpa_tunedb_put(jsdpa_tunedb_t* db, const jsdpa_tunedb_entry_t* entry);

/* The YAML text (malloc'd, NUL-terminated): entries sorted by key, numbers
 * with one decimal, so equal databases give equal bytes. */
char* jsdpa_tunedb_format(const jsdpa_tunedb_t* db, size_t* out_length);
/* Writes the text to `path` through a temp file in the same directory and a
 * rename (readers see the old file or the new one, never a part). On failure
 * returns false with the reason in `why`. */
bool jsdpa_tunedb_write(const char* path, const jsdpa_tunedb_t* db, char* why, size_t capacity);

/* "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3": lower case, every run of
 * other characters one '-'. The file name (plus ".yaml") under specs/tuned/. */
size_t jsdpa_tunedb_slug(const char* gpu_name, char* buf, size_t capacity);

#ifdef __cplusplus
}
#endif
#endif /* JSDPA_GEN_TUNEDB_H_ */
