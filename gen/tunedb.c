/* The tuning database: YAML <-> jsdpa_tunedb_t (format in docs/tuning.md).
 *
 * Parsing walks libyaml's document graph against a table of keys per mapping,
 * like gen/spec.c does for specs, and reports every problem it finds with the
 * location of the offending node: syntax, unknown or missing keys, wrong
 * types, tiles the family's template does not support (jsdpa_gen_variant_check,
 * the same limits table the generator and the backends read), duplicate keys.
 * Writing sorts the entries and prints numbers with fixed formats, so merging
 * the same databases always gives the same bytes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsdpa_tunedb.h"
#include "yamldoc.h"

/* ------------------------------------------------------------ buckets */

static const char* const bucket_names[JSDPA_TUNE_BUCKET_COUNT] = {"short", "medium", "long"};

const char* jsdpa_tune_bucket_name(jsdpa_tune_bucket_t bucket) {
  return (unsigned)bucket < JSDPA_TUNE_BUCKET_COUNT ? bucket_names[bucket] : "?";
}

bool jsdpa_tune_parse_bucket(const char* text, jsdpa_tune_bucket_t* out) {
  for (int b = 0; b < JSDPA_TUNE_BUCKET_COUNT; ++b)
    if (!strcmp(text, bucket_names[b])) {
      *out = (jsdpa_tune_bucket_t)b;
      return true;
    }
  return false;
}

jsdpa_tune_bucket_t jsdpa_tune_bucket_of(int64_t total_q, int64_t batch) {
  /* mean <= limit  <=>  total <= limit * batch: no division, no rounding. */
  if (batch <= 0 || total_q <= (int64_t)JSDPA_TUNE_SHORT_MAX_MEAN * batch)
    return JSDPA_TUNE_BUCKET_SHORT;
  if (total_q <= (int64_t)JSDPA_TUNE_MEDIUM_MAX_MEAN * batch) return JSDPA_TUNE_BUCKET_MEDIUM;
  return JSDPA_TUNE_BUCKET_LONG;
}

/* ------------------------------------------------------------ entries */

static void* xrealloc(void* p, size_t n) {
  void* q = realloc(p, n ? n : 1);
  if (!q) abort(); /* out of memory while reading a small file: nothing useful to report */
  return q;
}

/* Orders keys: family, arch, dtype, head dims, causal, bucket. */
static int compare_keys(const jsdpa_tunedb_entry_t* a, const jsdpa_tunedb_entry_t* b) {
  const jsdpa_gen_variant_t *x = &a->variant, *y = &b->variant;
  const int ka[] = {(int)x->family, x->arch.sm,    (int)x->arch.arch_specific,
                    (int)x->dtype,  x->head_dim,   x->head_dim_v,
                    (int)x->causal, (int)a->bucket};
  const int kb[] = {(int)y->family, y->arch.sm,    (int)y->arch.arch_specific,
                    (int)y->dtype,  y->head_dim,   y->head_dim_v,
                    (int)y->causal, (int)b->bucket};
  for (size_t i = 0; i < sizeof(ka) / sizeof(ka[0]); ++i)
    if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
  return 0;
}

bool jsdpa_tunedb_same_key(const jsdpa_tunedb_entry_t* a, const jsdpa_tunedb_entry_t* b) {
  return compare_keys(a, b) == 0;
}

const jsdpa_tunedb_entry_t* jsdpa_tunedb_find(const jsdpa_tunedb_t* db,
                                              const jsdpa_gen_variant_t* variant,
                                              jsdpa_tune_bucket_t bucket) {
  jsdpa_tunedb_entry_t key = {.variant = *variant, .bucket = bucket};
  for (size_t i = 0; i < db->count; ++i)
    if (jsdpa_tunedb_same_key(&db->entries[i], &key)) return &db->entries[i];
  return NULL;
}

void jsdpa_tunedb_put(jsdpa_tunedb_t* db, const jsdpa_tunedb_entry_t* entry) {
  for (size_t i = 0; i < db->count; ++i)
    if (jsdpa_tunedb_same_key(&db->entries[i], entry)) {
      db->entries[i] = *entry;
      return;
    }
  if (db->count == db->capacity) {
    db->capacity = db->capacity ? 2 * db->capacity : 16;
    db->entries = xrealloc(db->entries, db->capacity * sizeof(*db->entries));
  }
  db->entries[db->count++] = *entry;
}

void jsdpa_tunedb_free(jsdpa_tunedb_t* db) {
  free(db->entries);
  memset(db, 0, sizeof(*db));
}

size_t jsdpa_tunedb_slug(const char* gpu_name, char* buf, size_t capacity) {
  size_t n = 0;
  bool dash = false;
  for (const char* p = gpu_name; *p; ++p) {
    char c = *p;
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
    if (!alnum) {
      dash = n > 0;
      continue;
    }
    if (dash && n + 1 < capacity) buf[n++] = '-';
    dash = false;
    if (n + 1 < capacity) buf[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  if (capacity) buf[n] = '\0';
  return n;
}

/* ------------------------------------------------------------ parser */

static const char* describe(const yaml_node_t* node) {
  if (node->type == YAML_SEQUENCE_NODE) return "a list";
  if (node->type == YAML_MAPPING_NODE) return "a mapping";
  return jsdpa_yaml_is_null(node) ? "no value" : "a scalar";
}

/* How a key's value is read. */
typedef enum kind_e {
  KIND_STRING,
  KIND_INT,
  KIND_NUMBER,
  KIND_BOOL,
  KIND_FAMILY,
  KIND_ARCH,
  KIND_DTYPE,
  KIND_BUCKET,
  KIND_NODE, /* handled by the caller (a mapping or list) */
} kind_t;

typedef struct key_s {
  const char* name;
  kind_t kind;
  bool required;
} db_key_t;

/* Walks a mapping's pairs against `keys`: reports non-scalar, unknown and
 * duplicate keys and missing required ones; values[k] is key k's value node
 * or NULL, key_nodes[k] its key node. */
static void match_keys(jsdpa_yaml_t* p, const yaml_node_t* map, const char* what,
                       const db_key_t* keys, size_t count, const yaml_node_t** key_nodes,
                       const yaml_node_t** values) {
  for (size_t k = 0; k < count; ++k) key_nodes[k] = values[k] = NULL;
  for (const yaml_node_pair_t* pair = map->data.mapping.pairs.start;
       pair < map->data.mapping.pairs.top; ++pair) {
    const yaml_node_t* key = yaml_document_get_node(p->doc, pair->key);
    const yaml_node_t* value = yaml_document_get_node(p->doc, pair->value);
    if (key->type != YAML_SCALAR_NODE) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "expected a key name in %s, got %s", what,
                       describe(key));
      continue;
    }
    size_t k = 0;
    while (k < count && strcmp(keys[k].name, jsdpa_yaml_scalar(key)) != 0) ++k;
    if (k == count) {
      char list[256] = "";
      for (size_t i = 0; i < count; ++i) {
        strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, keys[i].name, sizeof(list) - strlen(list) - 1);
      }
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "unknown key '%s' in %s (valid keys: %s)",
                       jsdpa_yaml_scalar(key), what, list);
      continue;
    }
    if (key_nodes[k]) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "duplicate key '%s' in %s", keys[k].name, what);
      jsdpa_gen_diag(p->diags, JSDPA_GEN_NOTE, jsdpa_yaml_loc(p, key_nodes[k]), "first given here");
      continue;
    }
    key_nodes[k] = key;
    values[k] = value;
  }
  for (size_t k = 0; k < count; ++k)
    if (keys[k].required && !key_nodes[k])
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, map), "%s is missing the required key '%s'", what,
                       keys[k].name);
}

/* A scalar value of `key`; reports and returns NULL for anything else. */
static const char* value_text(jsdpa_yaml_t* p, const char* key, const yaml_node_t* key_node,
                              const yaml_node_t* node, const char* expected) {
  if (node->type != YAML_SCALAR_NODE || jsdpa_yaml_is_null(node)) {
    JSDPA_YAML_ERROR(
        p, jsdpa_yaml_is_null(node) ? jsdpa_yaml_loc(p, key_node) : jsdpa_yaml_loc(p, node),
        "expected %s for '%s', got %s", expected, key, describe(node));
    return NULL;
  }
  return jsdpa_yaml_scalar(node);
}

static void copy_string(jsdpa_yaml_t* p, const char* key, const yaml_node_t* key_node,
                        const yaml_node_t* node, char* out, size_t capacity) {
  const char* s = value_text(p, key, key_node, node, "a string");
  if (!s) return;
  if (strlen(s) >= capacity) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "'%s' is longer than %zu characters", key,
                     capacity - 1);
    return;
  }
  memcpy(out, s, strlen(s) + 1);
}

/* Plain digits only: "64" in quotes is a string in YAML. */
static bool read_int(jsdpa_yaml_t* p, const char* key, const yaml_node_t* key_node,
                     const yaml_node_t* node, int lo, int* out) {
  const char* s = value_text(p, key, key_node, node, "an integer");
  if (!s) return false;
  if (!jsdpa_yaml_is_plain(node) || !*s || strspn(s, "0123456789") != strlen(s)) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "expected an integer for '%s', got %s'%s'", key,
                     jsdpa_yaml_is_plain(node) ? "" : "a quoted string ", s);
    return false;
  }
  errno = 0;
  long long v = strtoll(s, NULL, 10);
  if (errno == ERANGE || v > INT_MAX || v < lo) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "integer %s for '%s' is out of range (%d..%d)", s,
                     key, lo, INT_MAX);
    return false;
  }
  *out = (int)v;
  return true;
}

static bool read_number(jsdpa_yaml_t* p, const char* key, const yaml_node_t* key_node,
                        const yaml_node_t* node, double* out) {
  const char* s = value_text(p, key, key_node, node, "a number");
  if (!s) return false;
  char* end = NULL;
  errno = 0;
  double v = jsdpa_yaml_is_plain(node) ? strtod(s, &end) : NAN;
  if (!jsdpa_yaml_is_plain(node) || end == s || *end || errno == ERANGE || !isfinite(v) || v < 0) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node),
                     "expected a non-negative number (TFLOP/s) for '%s', got %s'%s'", key,
                     jsdpa_yaml_is_plain(node) ? "" : "a quoted string ", s);
    return false;
  }
  *out = v;
  return true;
}

static bool read_bool(jsdpa_yaml_t* p, const char* key, const yaml_node_t* key_node,
                      const yaml_node_t* node, bool* out) {
  const char* s = value_text(p, key, key_node, node, "a boolean (true or false)");
  if (!s) return false;
  static const char* const spellings[] = {"false", "False", "FALSE", "true", "True", "TRUE"};
  for (int i = 0; i < 6 && jsdpa_yaml_is_plain(node); ++i)
    if (!strcmp(s, spellings[i])) {
      *out = i >= 3;
      return true;
    }
  JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node),
                   "expected a boolean (true or false) for '%s', got %s'%s'", key,
                   jsdpa_yaml_is_plain(node) ? "" : "a quoted string ", s);
  return false;
}

/* family / arch / dtype / bucket: a known name, or an error listing them. */
static bool read_name(jsdpa_yaml_t* p, kind_t kind, const char* key, const yaml_node_t* key_node,
                      const yaml_node_t* node, jsdpa_tunedb_entry_t* e) {
  const char* s = value_text(p, key, key_node, node, "a name");
  if (!s) return false;
  char list[256] = "";
  char name[16];
  switch (kind) {
    case KIND_FAMILY:
      if (jsdpa_gen_parse_family(s, &e->variant.family)) return true;
      for (int f = 0; f < JSDPA_GEN_FAMILY_COUNT; ++f)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", f ? ", " : "",
                 jsdpa_gen_family_name((jsdpa_gen_family_t)f));
      break;
    case KIND_ARCH: {
      if (jsdpa_gen_parse_arch(s, &e->variant.arch)) return true;
      size_t n = 0;
      const jsdpa_gen_arch_t* archs = jsdpa_gen_known_archs(&n);
      for (size_t i = 0; i < n; ++i)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 jsdpa_gen_arch_name(archs[i], name, sizeof(name)));
      break;
    }
    case KIND_DTYPE:
      if (jsdpa_gen_parse_dtype(s, &e->variant.dtype)) return true;
      for (int t = 0; t < JSDPA_GEN_DTYPE_COUNT; ++t)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", t ? ", " : "",
                 jsdpa_gen_dtype_name((jsdpa_gen_dtype_t)t));
      break;
    default:
      if (jsdpa_tune_parse_bucket(s, &e->bucket)) return true;
      for (int b = 0; b < JSDPA_TUNE_BUCKET_COUNT; ++b)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", b ? ", " : "",
                 bucket_names[b]);
      break;
  }
  JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "unknown %s '%s' (valid: %s)", key, s, list);
  return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const db_key_t tile_keys[] = {
    {"block_m", KIND_INT, true},
    {"block_n", KIND_INT, true},
    {"warps", KIND_INT, true},
    {"stages", KIND_INT, true},
};

enum {
  E_FAMILY,
  E_ARCH,
  E_DTYPE,
  E_HEAD_DIM,
  E_HEAD_DIM_V,
  E_CAUSAL,
  E_BUCKET,
  E_TILE,
  E_TFLOPS,
  E_DEFAULT_TFLOPS,
};
static const db_key_t entry_keys[] = {
    [E_FAMILY] = {"family", KIND_FAMILY, true},
    [E_ARCH] = {"arch", KIND_ARCH, true},
    [E_DTYPE] = {"dtype", KIND_DTYPE, true},
    [E_HEAD_DIM] = {"head_dim", KIND_INT, true},
    [E_HEAD_DIM_V] = {"head_dim_v", KIND_INT, false},
    [E_CAUSAL] = {"causal", KIND_BOOL, true},
    [E_BUCKET] = {"bucket", KIND_BUCKET, true},
    [E_TILE] = {"tile", KIND_NODE, true},
    [E_TFLOPS] = {"tflops", KIND_NUMBER, true},
    [E_DEFAULT_TFLOPS] = {"default_tflops", KIND_NUMBER, false},
};

enum {
  R_FORMAT,
  R_GPU,
  R_SM_COUNT,
  R_DRIVER,
  R_CUDA,
  R_NVRTC,
  R_GENERATOR,
  R_DATE,
  R_ENTRIES,
};
static const db_key_t root_keys[] = {
    [R_FORMAT] = {"format", KIND_INT, true},          [R_GPU] = {"gpu", KIND_STRING, true},
    [R_SM_COUNT] = {"sm_count", KIND_INT, true},      [R_DRIVER] = {"driver", KIND_STRING, false},
    [R_CUDA] = {"cuda", KIND_STRING, false},          [R_NVRTC] = {"nvrtc", KIND_STRING, false},
    [R_GENERATOR] = {"generator", KIND_STRING, true}, [R_DATE] = {"date", KIND_STRING, false},
    [R_ENTRIES] = {"entries", KIND_NODE, true},
};

/* "flash sm_90a bf16 d64/64 causal, bucket short": an entry's key for messages. */
static void describe_key(const jsdpa_tunedb_entry_t* e, char* buf, size_t capacity) {
  char arch[16];
  snprintf(buf, capacity, "%s %s %s d%d/%d %s, bucket %s", jsdpa_gen_family_name(e->variant.family),
           jsdpa_gen_arch_name(e->variant.arch, arch, sizeof(arch)),
           jsdpa_gen_dtype_name(e->variant.dtype), e->variant.head_dim, e->variant.head_dim_v,
           e->variant.causal ? "causal" : "non-causal", jsdpa_tune_bucket_name(e->bucket));
}

static bool parse_tile(jsdpa_yaml_t* p, const yaml_node_t* key_node, const yaml_node_t* node,
                       jsdpa_gen_tile_t* out) {
  if (node->type != YAML_MAPPING_NODE) {
    JSDPA_YAML_ERROR(
        p, jsdpa_yaml_is_null(node) ? jsdpa_yaml_loc(p, key_node) : jsdpa_yaml_loc(p, node),
        "expected a mapping for 'tile' (keys block_m, block_n, warps, stages), got %s",
        describe(node));
    return false;
  }
  const yaml_node_t* key_nodes[COUNT(tile_keys)];
  const yaml_node_t* values[COUNT(tile_keys)];
  int before = jsdpa_gen_diags_error_count(p->diags);
  match_keys(p, node, "'tile'", tile_keys, COUNT(tile_keys), key_nodes, values);
  int* fields[] = {&out->block_m, &out->block_n, &out->warps, &out->stages};
  for (size_t k = 0; k < COUNT(tile_keys); ++k)
    if (values[k]) read_int(p, tile_keys[k].name, key_nodes[k], values[k], 1, fields[k]);
  return jsdpa_gen_diags_error_count(p->diags) == before;
}

/* One element of `entries:`; returns whether it is complete and valid. */
static bool parse_entry(jsdpa_yaml_t* p, const yaml_node_t* map, jsdpa_tunedb_entry_t* e) {
  memset(e, 0, sizeof(*e));
  e->variant.loc = jsdpa_yaml_loc(p, map);
  e->default_tflops = -1;
  int before = jsdpa_gen_diags_error_count(p->diags);
  const yaml_node_t* key_nodes[COUNT(entry_keys)];
  const yaml_node_t* values[COUNT(entry_keys)];
  match_keys(p, map, "entry", entry_keys, COUNT(entry_keys), key_nodes, values);
  /* The variant's own keys decide whether it can be checked against the
   * family; a bad bucket or number does not hide a bad tile. */
  bool variant_ok = true;
  for (size_t k = 0; k < COUNT(entry_keys); ++k) {
    const yaml_node_t* v = values[k];
    const char* name = entry_keys[k].name;
    const bool in_variant = k != E_BUCKET && k != E_TFLOPS && k != E_DEFAULT_TFLOPS;
    if (!v) {
      variant_ok &= !(in_variant && entry_keys[k].required);
      continue;
    }
    int errors = jsdpa_gen_diags_error_count(p->diags);
    switch (k) {
      case E_HEAD_DIM: read_int(p, name, key_nodes[k], v, 1, &e->variant.head_dim); break;
      case E_HEAD_DIM_V: read_int(p, name, key_nodes[k], v, 1, &e->variant.head_dim_v); break;
      case E_CAUSAL: read_bool(p, name, key_nodes[k], v, &e->variant.causal); break;
      case E_TILE: parse_tile(p, key_nodes[k], v, &e->variant.tile); break;
      case E_TFLOPS: read_number(p, name, key_nodes[k], v, &e->tflops); break;
      case E_DEFAULT_TFLOPS: read_number(p, name, key_nodes[k], v, &e->default_tflops); break;
      default: read_name(p, entry_keys[k].kind, name, key_nodes[k], v, e); break;
    }
    variant_ok &= !in_variant || jsdpa_gen_diags_error_count(p->diags) == errors;
  }
  if (!values[E_HEAD_DIM_V]) e->variant.head_dim_v = e->variant.head_dim;
  const bool parsed = jsdpa_gen_diags_error_count(p->diags) == before;
  if (!variant_ok) return false;

  /* The key first (with the family's default tile), so a bad head dim is
   * not reported as a bad tile; then the tuned tile. */
  char why[512];
  jsdpa_gen_variant_t key = e->variant;
  key.tile = jsdpa_gen_default_tile(key.family, key.arch, key.dtype, key.head_dim, key.head_dim_v,
                                    key.causal);
  if (!jsdpa_gen_variant_check(&key, why, sizeof(why))) {
    JSDPA_YAML_ERROR(p, e->variant.loc, "entry is not a kernel the generator supports: %s", why);
    return false;
  }
  if (!jsdpa_gen_variant_check(&e->variant, why, sizeof(why))) {
    const jsdpa_gen_tile_t* t = &e->variant.tile;
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, values[E_TILE]), "tile m%dn%dw%ds%d: %s", t->block_m,
                     t->block_n, t->warps, t->stages, why);
    return false;
  }
  return parsed;
}

static void parse_entries(jsdpa_yaml_t* p, const yaml_node_t* key_node, const yaml_node_t* list,
                          jsdpa_tunedb_t* out) {
  if (list->type != YAML_SEQUENCE_NODE) {
    JSDPA_YAML_ERROR(
        p, jsdpa_yaml_is_null(list) ? jsdpa_yaml_loc(p, key_node) : jsdpa_yaml_loc(p, list),
        "expected a list of entries for 'entries' ([] for none), got %s", describe(list));
    return;
  }
  for (const yaml_node_item_t* it = list->data.sequence.items.start;
       it < list->data.sequence.items.top; ++it) {
    const yaml_node_t* item = yaml_document_get_node(p->doc, *it);
    if (item->type != YAML_MAPPING_NODE) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, item),
                       "expected an entry (a mapping) in 'entries', got %s", describe(item));
      continue;
    }
    jsdpa_tunedb_entry_t e;
    if (!parse_entry(p, item, &e)) continue;
    const jsdpa_tunedb_entry_t* first = NULL;
    for (size_t i = 0; i < out->count && !first; ++i)
      if (jsdpa_tunedb_same_key(&out->entries[i], &e)) first = &out->entries[i];
    if (first) {
      char what[160];
      describe_key(&e, what, sizeof(what));
      JSDPA_YAML_ERROR(p, e.variant.loc, "duplicate entry for %s", what);
      jsdpa_gen_diag(p->diags, JSDPA_GEN_NOTE, first->variant.loc, "first given here");
      continue;
    }
    jsdpa_tunedb_put(out, &e);
  }
}

static void parse_root(jsdpa_yaml_t* p, const yaml_node_t* root, jsdpa_tunedb_t* out) {
  if (root->type != YAML_MAPPING_NODE) {
    JSDPA_YAML_ERROR(
        p, jsdpa_yaml_loc(p, root),
        "expected a mapping with 'format', 'gpu', ..., 'entries' at the top level, got %s",
        describe(root));
    return;
  }
  const yaml_node_t* key_nodes[COUNT(root_keys)];
  const yaml_node_t* values[COUNT(root_keys)];
  match_keys(p, root, "the top-level mapping", root_keys, COUNT(root_keys), key_nodes, values);
  jsdpa_tunedb_meta_t* m = &out->meta;
  int format = 0;
  if (values[R_FORMAT] &&
      read_int(p, "format", key_nodes[R_FORMAT], values[R_FORMAT], 0, &format) &&
      format != JSDPA_TUNEDB_FORMAT)
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, values[R_FORMAT]),
                     "format %d is not supported (this version reads format %d)", format,
                     JSDPA_TUNEDB_FORMAT);
  struct {
    int key;
    char* out;
    size_t capacity;
  } strings[] = {
      {R_GPU, m->gpu, sizeof(m->gpu)},
      {R_DRIVER, m->driver, sizeof(m->driver)},
      {R_CUDA, m->cuda, sizeof(m->cuda)},
      {R_NVRTC, m->nvrtc, sizeof(m->nvrtc)},
      {R_GENERATOR, m->generator, sizeof(m->generator)},
      {R_DATE, m->date, sizeof(m->date)},
  };
  for (size_t i = 0; i < COUNT(strings); ++i)
    if (values[strings[i].key])
      copy_string(p, root_keys[strings[i].key].name, key_nodes[strings[i].key],
                  values[strings[i].key], strings[i].out, strings[i].capacity);
  if (values[R_SM_COUNT])
    read_int(p, "sm_count", key_nodes[R_SM_COUNT], values[R_SM_COUNT], 1, &m->sm_count);
  if (values[R_GPU]) m->gpu_loc = jsdpa_yaml_loc(p, values[R_GPU]);
  if (values[R_SM_COUNT]) m->sm_count_loc = jsdpa_yaml_loc(p, values[R_SM_COUNT]);
  if (values[R_GENERATOR]) m->generator_loc = jsdpa_yaml_loc(p, values[R_GENERATOR]);
  if (values[R_ENTRIES]) parse_entries(p, key_nodes[R_ENTRIES], values[R_ENTRIES], out);
}

static void parse_db_root(jsdpa_yaml_t* y, const yaml_node_t* root, void* out) {
  parse_root(y, root, out);
}

bool jsdpa_tunedb_parse(const char* file, const char* text, size_t length, jsdpa_gen_diags_t* diags,
                        jsdpa_tunedb_t* out) {
  memset(out, 0, sizeof(*out));
  static const jsdpa_yaml_kind_t kind = {
      "a tuning database", "the database",
      "the tuning database is empty: expected 'format', 'gpu', ..., 'entries'"};
  jsdpa_gen_diags_hold(diags);
  bool ok = jsdpa_yaml_parse(file, text, length, diags, &kind, parse_db_root, out);
  jsdpa_gen_diags_release(diags);
  return ok;
}

/* ------------------------------------------------------------ writer */

typedef struct buf_s {
  char* data;
  size_t length, capacity;
} buf_t;

static void buf_printf(buf_t* b, const char* format, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t* b, const char* format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (n < 0) return;
  if (b->length + (size_t)n + 1 > b->capacity) {
    b->capacity = (b->length + (size_t)n + 1) * 2;
    b->data = xrealloc(b->data, b->capacity);
  }
  va_start(args, format);
  vsnprintf(b->data + b->length, (size_t)n + 1, format, args);
  va_end(args);
  b->length += (size_t)n;
}

/* A YAML double-quoted string. */
static void buf_quoted(buf_t* b, const char* s) {
  buf_printf(b, "\"");
  for (const unsigned char* c = (const unsigned char*)s; *c; ++c) {
    if (*c == '"' || *c == '\\')
      buf_printf(b, "\\%c", *c);
    else if (*c < 0x20 || *c == 0x7f)
      buf_printf(b, "\\x%02x", *c);
    else
      buf_printf(b, "%c", *c);
  }
  buf_printf(b, "\"");
}

static int compare_entries(const void* a, const void* b) {
  return compare_keys(a, b);
}

char* jsdpa_tunedb_format(const jsdpa_tunedb_t* db, size_t* out_length) {
  const jsdpa_tunedb_meta_t* m = &db->meta;
  buf_t b = {0};
  buf_printf(&b,
             "# jsdpa tuning database (docs/tuning.md): the fastest kernel tile measured per\n"
             "# (family, arch, dtype, head dims, causal, length bucket) on one GPU model, and\n"
             "# the family default's TFLOP/s in the same sweep. Written by jsdpa-tune.\n");
  buf_printf(&b, "format: %d\ngpu: ", JSDPA_TUNEDB_FORMAT);
  buf_quoted(&b, m->gpu);
  buf_printf(&b, "\nsm_count: %d\n", m->sm_count);
  const struct {
    const char* key;
    const char* value;
  } strings[] = {{"driver", m->driver},
                 {"cuda", m->cuda},
                 {"nvrtc", m->nvrtc},
                 {"generator", m->generator},
                 {"date", m->date}};
  for (size_t i = 0; i < COUNT(strings); ++i) {
    buf_printf(&b, "%s: ", strings[i].key);
    buf_quoted(&b, strings[i].value);
    buf_printf(&b, "\n");
  }
  jsdpa_tunedb_entry_t* sorted = xrealloc(NULL, db->count * sizeof(*sorted));
  if (db->count) memcpy(sorted, db->entries, db->count * sizeof(*sorted));
  qsort(sorted, db->count, sizeof(*sorted), compare_entries);
  buf_printf(&b, "entries:%s\n", db->count ? "" : " []");
  for (size_t i = 0; i < db->count; ++i) {
    const jsdpa_tunedb_entry_t* e = &sorted[i];
    const jsdpa_gen_variant_t* v = &e->variant;
    char arch[16];
    buf_printf(&b,
               "  - family: %s\n    arch: %s\n    dtype: %s\n    head_dim: %d\n"
               "    head_dim_v: %d\n    causal: %s\n    bucket: %s\n"
               "    tile: {block_m: %d, block_n: %d, warps: %d, stages: %d}\n"
               "    tflops: %.1f\n",
               jsdpa_gen_family_name(v->family), jsdpa_gen_arch_name(v->arch, arch, sizeof(arch)),
               jsdpa_gen_dtype_name(v->dtype), v->head_dim, v->head_dim_v,
               v->causal ? "true" : "false", jsdpa_tune_bucket_name(e->bucket), v->tile.block_m,
               v->tile.block_n, v->tile.warps, v->tile.stages, e->tflops);
    if (e->default_tflops >= 0) buf_printf(&b, "    default_tflops: %.1f\n", e->default_tflops);
  }
  free(sorted);
  if (out_length) *out_length = b.length;
  return b.data;
}

bool jsdpa_tunedb_write(const char* path, const jsdpa_tunedb_t* db, char* why, size_t capacity) {
  size_t length = 0;
  char* text = jsdpa_tunedb_format(db, &length);
  size_t n = strlen(path);
  char* temp = xrealloc(NULL, n + 16);
  snprintf(temp, n + 16, "%s.tmp-XXXXXX", path);
  bool ok = false;
  int fd = mkstemp(temp);
  if (fd < 0) {
    snprintf(why, capacity, "cannot create a temp file next to '%s': %s", path, strerror(errno));
  } else {
    size_t done = 0;
    while (done < length) {
      ssize_t w = write(fd, text + done, length - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += (size_t)w;
    }
    /* mkstemp makes the file private; a database is as readable as a spec. */
    if (done < length || fchmod(fd, 0644) != 0 || fsync(fd) != 0)
      snprintf(why, capacity, "cannot write '%s': %s", temp, strerror(errno));
    else
      ok = true;
    if (close(fd) != 0 && ok) {
      snprintf(why, capacity, "cannot write '%s': %s", temp, strerror(errno));
      ok = false;
    }
    if (ok && rename(temp, path) != 0) {
      snprintf(why, capacity, "cannot rename '%s' to '%s': %s", temp, path, strerror(errno));
      ok = false;
    }
    if (!ok) unlink(temp);
  }
  free(temp);
  free(text);
  return ok;
}
