/* The tuning database at run time: which one applies to this context's GPU
 * (tuning.h says the order), and the tuned tile for a call's length bucket.
 * Parsing and validation are the generator library's (gen/tunedb.c). */
#include "tuning.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jsdpa_tuning_s {
  jsdpa_tunedb_t db;
  char* file;   /* the name diagnostics and entry locations point at */
  char* source; /* for logs */
  bool forced;
  jsdpa_gen_tile_t forced_tile;
};

static jsdpa_tuning_t* tuning_new(const char* file, const char* source) {
  jsdpa_tuning_t* t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->file = strdup(file);
  t->source = strdup(source);
  if (!t->file || !t->source) {
    jsdpa_tuning_destroy(t);
    return NULL;
  }
  return t;
}

void jsdpa_tuning_destroy(jsdpa_tuning_t* tuning) {
  if (!tuning) return;
  jsdpa_tunedb_free(&tuning->db);
  free(tuning->file);
  free(tuning->source);
  free(tuning);
}

jsdpa_tuning_t* jsdpa_tuning_create_forced(jsdpa_gen_tile_t tile) {
  jsdpa_tuning_t* t = tuning_new("forced", "forced");
  if (!t) return NULL;
  t->forced = true;
  t->forced_tile = tile;
  return t;
}

const char* jsdpa_tuning_source(const jsdpa_tuning_t* tuning) {
  return tuning ? tuning->source : "none";
}

const jsdpa_tunedb_t* jsdpa_tuning_database(const jsdpa_tuning_t* tuning) {
  return tuning && !tuning->forced ? &tuning->db : NULL;
}

jsdpa_tuning_t* jsdpa_tuning_swap(jsdpa_context_t* ctx, jsdpa_tuning_t* tuning) {
  jsdpa_tuning_t* old = ctx->tuning;
  ctx->tuning = tuning;
  return old;
}

/* ------------------------------------------------------------ lookup */

bool jsdpa_tuning_lookup(const jsdpa_tuning_t* tuning, const jsdpa_gen_variant_t* variant,
                         int64_t total_q, int64_t batch, jsdpa_tuning_choice_t* out_choice) {
  if (!tuning) return false;
  jsdpa_tuning_choice_t c = {.bucket = jsdpa_tune_bucket_of(total_q, batch),
                             .measured_dtype = variant->dtype,
                             .tflops = -1};
  if (tuning->forced) {
    c.tile = tuning->forced_tile;
    *out_choice = c;
    return true;
  }
  const jsdpa_tunedb_entry_t* e = jsdpa_tunedb_find(&tuning->db, variant, c.bucket);
  if (!e && (variant->dtype == JSDPA_GEN_DTYPE_FP16 || variant->dtype == JSDPA_GEN_DTYPE_BF16)) {
    jsdpa_gen_variant_t other = *variant;
    other.dtype =
        variant->dtype == JSDPA_GEN_DTYPE_FP16 ? JSDPA_GEN_DTYPE_BF16 : JSDPA_GEN_DTYPE_FP16;
    e = jsdpa_tunedb_find(&tuning->db, &other, c.bucket);
  }
  if (!e) return false;
  c.tile = e->variant.tile;
  c.measured_dtype = e->variant.dtype;
  c.tflops = e->tflops;
  *out_choice = c;
  return true;
}

/* ------------------------------------------------------------ loading */

/* Whether the database was measured on this GPU model by this generator; if
 * not, says why in `why`. */
static bool fits(const jsdpa_tunedb_t* db, const jsdpa_tuning_device_t* device, char* why,
                 size_t capacity) {
  if (strcmp(db->meta.gpu, device->name) != 0 || db->meta.sm_count != device->sm_count) {
    snprintf(why, capacity, "it was measured on '%s' (%d SMs); this GPU is '%s' (%d SMs)",
             db->meta.gpu, db->meta.sm_count, device->name, device->sm_count);
    return false;
  }
  if (strcmp(db->meta.generator, JSDPA_GEN_VERSION) != 0) {
    snprintf(why, capacity,
             "it was measured with generator %s; this library's generator is %s (tiles may "
             "mean other kernels)",
             db->meta.generator, JSDPA_GEN_VERSION);
    return false;
  }
  return true;
}

/* Parses `text` into a new table; an INVALID_ARGUMENT status with every
 * diagnostic when the database has errors. */
static jsdpa_status_t parse(const char* file, const char* source, const char* text, size_t length,
                            jsdpa_tuning_t** out) {
  *out = NULL;
  jsdpa_tuning_t* t = tuning_new(file, source);
  jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(NULL);
  if (!t || !diags) {
    jsdpa_tuning_destroy(t);
    jsdpa_gen_diags_destroy(diags);
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "reading the tuning database %s", file);
  }
  jsdpa_status_t s = NULL;
  if (!jsdpa_tunedb_parse(t->file, text, length, diags, &t->db)) {
    s = JSDPA_INVALID("the tuning database %s has %d error(s):\n%s", source,
                      jsdpa_gen_diags_error_count(diags), jsdpa_gen_diags_text(diags));
    jsdpa_tuning_destroy(t);
    t = NULL;
  }
  jsdpa_gen_diags_destroy(diags);
  *out = t;
  return s;
}

static jsdpa_status_t read_file(const char* setting, const char* path, char** out_text,
                                size_t* out_length) {
  *out_text = NULL;
  FILE* f = fopen(path, "rb");
  if (!f)
    return jsdpa_make_status(JSDPA_STATUS_IO_ERROR,
                             "%s ('%s'): cannot open the tuning database: %s", setting, path,
                             strerror(errno));
  char* text = NULL;
  size_t length = 0, capacity = 0;
  for (;;) {
    if (length + 4096 + 1 > capacity) {
      capacity = (length + 4096 + 1) * 2;
      char* grown = realloc(text, capacity);
      if (!grown) {
        free(text);
        fclose(f);
        return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "reading %s ('%s')", setting, path);
      }
      text = grown;
    }
    size_t n = fread(text + length, 1, 4096, f);
    length += n;
    if (n < 4096) break;
  }
  bool failed = ferror(f) != 0;
  fclose(f);
  if (failed) {
    free(text);
    return jsdpa_make_status(JSDPA_STATUS_IO_ERROR, "%s ('%s'): cannot read the tuning database",
                             setting, path);
  }
  text[length] = '\0';
  *out_text = text;
  *out_length = length;
  return NULL;
}

static void log_loaded(const jsdpa_context_t* ctx, const jsdpa_tuning_t* t) {
  const jsdpa_tunedb_meta_t* m = &t->db.meta;
  jsdpa_log(ctx, 1, "tuning: %zu entries from %s (%s, measured %s, NVRTC %s, generator %s)",
            t->db.count, t->source, m->gpu, m->date[0] ? m->date : "?",
            m->nvrtc[0] ? m->nvrtc : "?", m->generator);
}

/* The database built into the library for this GPU, if any and if it fits. */
static jsdpa_tuning_t* load_builtin(const jsdpa_context_t* ctx,
                                    const jsdpa_tuning_device_t* device) {
  char slug[256], name[300];
  jsdpa_tunedb_slug(device->name, slug, sizeof(slug));
  snprintf(name, sizeof(name), "tuned/%s.yaml", slug);
  size_t length = 0;
  const char* text = jsdpa_gen_template(name, &length);
  if (!text) {
    jsdpa_log(ctx, 1, "tuning: no built-in database for %s (specs/tuned/%s.yaml): default tiles",
              device->name, slug);
    return NULL;
  }
  char source[320];
  snprintf(source, sizeof(source), "built-in %s", name);
  jsdpa_tuning_t* t = NULL;
  jsdpa_status_t s = parse(name, source, text, length, &t);
  if (s) {
    /* CI checks every shipped database; this is a broken build, not a user error. */
    jsdpa_log(ctx, 0, "warning: %s: ignored", jsdpa_status_message(s));
    jsdpa_status_free(s);
    return NULL;
  }
  char why[512];
  if (!fits(&t->db, device, why, sizeof(why))) {
    jsdpa_log(ctx, 0, "warning: the tuning database %s is ignored: %s", source, why);
    jsdpa_tuning_destroy(t);
    return NULL;
  }
  log_loaded(ctx, t);
  return t;
}

jsdpa_status_t jsdpa_tuning_load(const jsdpa_context_t* ctx, const char* path,
                                 const jsdpa_tuning_device_t* device, jsdpa_tuning_t** out_tuning) {
  *out_tuning = NULL;
  const char* setting = "options.tuning_db";
  if (!path) {
    path = getenv("JSDPA_TUNING_DB");
    setting = "$JSDPA_TUNING_DB";
  }
  if (path && !*path) {
    jsdpa_log(ctx, 1, "tuning: off (%s is \"\"): default tiles", setting);
    return NULL;
  }
  if (path) {
    char* text = NULL;
    size_t length = 0;
    JSDPA_RETURN_IF_ERROR(read_file(setting, path, &text, &length));
    char source[1024];
    snprintf(source, sizeof(source), "'%s' (%s)", path, setting);
    jsdpa_tuning_t* t = NULL;
    jsdpa_status_t s = parse(path, source, text, length, &t);
    free(text);
    if (s) return s;
    char why[512];
    if (!device) {
      jsdpa_log(ctx, 1, "tuning: %s is valid but unused: no GPU", source);
      jsdpa_tuning_destroy(t);
      return NULL;
    }
    if (fits(&t->db, device, why, sizeof(why))) {
      log_loaded(ctx, t);
      *out_tuning = t;
      return NULL;
    }
    jsdpa_log(ctx, 0, "warning: the tuning database %s is ignored: %s", source, why);
    jsdpa_tuning_destroy(t);
  }
  if (device) *out_tuning = load_builtin(ctx, device);
  return NULL;
}
