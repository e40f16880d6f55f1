/*
 * tuning.h (runtime-internal) — the tuning database as the runtime uses it.
 *
 * At context creation jsdpa_tuning_load picks one database (docs/tuning.md):
 *   1. options.tuning_db (a file), else
 *   2. $JSDPA_TUNING_DB (a file), else
 *   3. the database built into the library for this GPU: specs/tuned/<slug>.yaml
 *      embedded at build time, <slug> from the device name.
 * "" at step 1 or 2 turns tuning off (family defaults). A given file that
 * cannot be read or has errors fails context creation with its diagnostics.
 * A database measured on another GPU model (name or SM count) or by another
 * generator version is ignored with a warning on stderr; for a given file the
 * built-in one is tried next.
 *
 * The result is immutable: backends read it from any thread without a lock.
 */
#ifndef JSDPA_RUNTIME_TUNING_H_
#define JSDPA_RUNTIME_TUNING_H_

#include "internal.h"
#include "jsdpa_tunedb.h"

/* What a database must match. */
typedef struct jsdpa_tuning_device_s {
  const char* name; /* cuDeviceGetName */
  int sm_count;
  jsdpa_gen_arch_t arch;
} jsdpa_tuning_device_t;

/* `path`: options.tuning_db (NULL: not set). `device`: NULL without a GPU (a
 * given file is still read and checked, then unused). *out_tuning is NULL when
 * no database applies. `ctx` is only used for logging (may be NULL). */
JSDPA_MUST_USE jsdpa_status_t jsdpa_tuning_load(const jsdpa_context_t* ctx, const char* path,
                                                const jsdpa_tuning_device_t* device,
                                                jsdpa_tuning_t** out_tuning);

/* A table that answers every lookup with `tile` (jsdpa-tune times each
 * candidate through the normal jsdpa_forward path with one of these). */
jsdpa_tuning_t* jsdpa_tuning_create_forced(jsdpa_gen_tile_t tile);

void jsdpa_tuning_destroy(jsdpa_tuning_t* tuning);

typedef struct jsdpa_tuning_choice_s {
  jsdpa_gen_tile_t tile;
  jsdpa_tune_bucket_t bucket;
  /* The dtype the entry was measured for: fp16 and bf16 run the same tensor-core
   * shapes and registers, so one reuses the other's entry when it has none. */
  jsdpa_gen_dtype_t measured_dtype;
  double tflops; /* the entry's; < 0 for a forced table */
} jsdpa_tuning_choice_t;

/* The tuned tile for `variant` (its tile is ignored) on a call of total_q
 * query tokens in `batch` sequences; false: none (use the default). */
bool jsdpa_tuning_lookup(const jsdpa_tuning_t* tuning, const jsdpa_gen_variant_t* variant,
                         int64_t total_q, int64_t batch, jsdpa_tuning_choice_t* out_choice);

/* Where the table came from ("file specs/tuned/x.yaml", "built-in tuned/x.yaml",
 * "forced"), for logs. */
const char* jsdpa_tuning_source(const jsdpa_tuning_t* tuning);
/* The database behind the table (NULL for a forced one). */
const jsdpa_tunedb_t* jsdpa_tuning_database(const jsdpa_tuning_t* tuning);

/* Replaces the context's table and returns the old one (the caller owns it).
 * Not safe while other threads call jsdpa_forward on the context: for
 * jsdpa-tune, which times one call at a time. */
jsdpa_tuning_t* jsdpa_tuning_swap(jsdpa_context_t* ctx, jsdpa_tuning_t* tuning);

#endif /* JSDPA_RUNTIME_TUNING_H_ */
