/* YAML text -> typed spec (jsdpa_gen_spec_t). The only file that sees libyaml.
 *
 * libyaml's document API gives a node graph with marks (0-based line/column)
 * on every node; this file walks it against a small schema (a table of keys per
 * mapping), checks every key and every scalar's type, and records each value
 * with the location of its node, so the later stages (gen/variant.c) can point
 * at the exact offending value. Range and family checks happen there, not here:
 * whether 512 is a valid head_dim depends on the family. Every error found is
 * reported; parsing goes on past bad keys and values. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jsdpa_gen.h"
#include "yamldoc.h"

typedef enum jsdpa_gen_kind_e {
  KIND_FAMILY,
  KIND_ARCH,
  KIND_DTYPE,
  KIND_INT,
  KIND_BOOL,
} jsdpa_gen_kind_t;

static const char* const kind_article[] = {"a family", "an arch", "a dtype", "an integer",
                                           "a boolean (true or false)"};

static const char* node_kind_name(const yaml_node_t* node) {
  switch (node->type) {
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "a scalar";
  }
}

/* ------------------------------------------------------------ "did you mean" */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions,
 * the Damerau idea): "dtpye" is one typo away from "dtype", not two. */
static size_t edit_distance(const char* a, const char* b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return SIZE_MAX;
  size_t d[65][65];
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t best = d[i - 1][j - 1] + cost;
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[n][m];
}

/* The closest candidate within two edits that changes less than half of it,
 * so "sm80" suggests "sm_80" but "fp64" does not suggest "fp16", or NULL. */
static const char* closest(const char* word, const char* const* candidates, size_t count) {
  const char* best = NULL;
  size_t best_distance = 3;
  for (size_t i = 0; i < count; ++i) {
    size_t dist = edit_distance(word, candidates[i]);
    if (dist < best_distance && 2 * dist < strlen(candidates[i])) {
      best = candidates[i];
      best_distance = dist;
    }
  }
  return best;
}

/* ------------------------------------------------------------ scalar values */

/* The spellings of every enumerated kind, for parsing, suggestions and messages. */
static size_t kind_names(jsdpa_gen_kind_t kind, const char** names, size_t capacity,
                         char storage[][16]) {
  size_t n = 0;
  if (kind == KIND_FAMILY) {
    for (int f = 0; f < JSDPA_GEN_FAMILY_COUNT && n < capacity; ++f)
      names[n++] = jsdpa_gen_family_name((jsdpa_gen_family_t)f);
  } else if (kind == KIND_DTYPE) {
    for (int t = 0; t < JSDPA_GEN_DTYPE_COUNT && n < capacity; ++t)
      names[n++] = jsdpa_gen_dtype_name((jsdpa_gen_dtype_t)t);
  } else if (kind == KIND_ARCH) {
    size_t count = 0;
    const jsdpa_gen_arch_t* archs = jsdpa_gen_known_archs(&count);
    for (size_t i = 0; i < count && n < capacity; ++i, ++n)
      names[n] = jsdpa_gen_arch_name(archs[i], storage[n], 16);
  }
  return n;
}

static bool same_digits(const char* a, const char* b) {
  for (;; ++a, ++b) {
    while (*a && (*a < '0' || *a > '9')) ++a;
    while (*b && (*b < '0' || *b > '9')) ++b;
    if (*a != *b) return false;
    if (!*a) return true;
  }
}

static void report_unknown(jsdpa_yaml_t* p, jsdpa_gen_kind_t kind, const yaml_node_t* node) {
  static const char* const what[] = {"family", "arch", "dtype"};
  const char* names[32];
  char storage[32][16];
  size_t n = kind_names(kind, names, 32, storage);
  char list[512] = "";
  for (size_t i = 0; i < n; ++i) {
    strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
    strncat(list, names[i], sizeof(list) - strlen(list) - 1);
  }
  /* An arch with other digits is another GPU, not a typo: "sm_100a" must not
   * suggest "sm_90a". Only spellings of the same number are offered. */
  const char* similar[32];
  size_t similar_count = 0;
  for (size_t i = 0; i < n; ++i)
    if (kind != KIND_ARCH || same_digits(jsdpa_yaml_scalar(node), names[i]))
      similar[similar_count++] = names[i];
  const char* guess = closest(jsdpa_yaml_scalar(node), similar, similar_count);
  if (guess)
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "unknown %s '%s'; did you mean '%s'? (valid: %s)",
                     what[kind], jsdpa_yaml_scalar(node), guess, list);
  else
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "unknown %s '%s' (valid: %s)", what[kind],
                     jsdpa_yaml_scalar(node), list);
}

static void report_type(jsdpa_yaml_t* p, jsdpa_gen_kind_t kind, const char* key,
                        const yaml_node_t* node, bool in_list) {
  const char* quote = jsdpa_yaml_is_plain(node) ? "" : "a quoted string ";
  if (in_list)
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "expected %s in the list '%s', got %s'%s'",
                     kind_article[kind], key, quote, jsdpa_yaml_scalar(node));
  else
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, node), "expected a list or %s for '%s', got %s'%s'",
                     kind_article[kind], key, quote, jsdpa_yaml_scalar(node));
}

/* Parses one scalar node as `kind`. `key` names the axis for messages;
 * `in_list` words them for an element of a list. */
static bool parse_value(jsdpa_yaml_t* p, jsdpa_gen_kind_t kind, const char* key,
                        const yaml_node_t* node, bool in_list, jsdpa_gen_value_t* out) {
  out->loc = jsdpa_yaml_loc(p, node);
  if (node->type != YAML_SCALAR_NODE) {
    JSDPA_YAML_ERROR(p, out->loc, "expected %s in the list '%s', got %s", kind_article[kind], key,
                     node_kind_name(node));
    return false;
  }
  const char* s = jsdpa_yaml_scalar(node);
  switch (kind) {
    case KIND_FAMILY:
      if (jsdpa_gen_parse_family(s, &out->family)) return true;
      break;
    case KIND_ARCH:
      if (jsdpa_gen_parse_arch(s, &out->arch)) return true;
      break;
    case KIND_DTYPE:
      if (jsdpa_gen_parse_dtype(s, &out->dtype)) return true;
      break;
    case KIND_INT: {
      /* Plain scalars only: "64" in quotes is a string in YAML, and silently
       * accepting it would hide a spec that means something else. */
      const char* digits = s + (*s == '+' || *s == '-');
      if (!jsdpa_yaml_is_plain(node) || !*digits ||
          strspn(digits, "0123456789") != strlen(digits)) {
        report_type(p, kind, key, node, in_list);
        return false;
      }
      errno = 0;
      long long v = strtoll(s, NULL, 10);
      if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
        JSDPA_YAML_ERROR(p, out->loc, "integer %s for '%s' is out of range", s, key);
        return false;
      }
      out->integer = (int)v;
      return true;
    }
    case KIND_BOOL: {
      static const char* const spellings[] = {"false", "False", "FALSE", "true", "True", "TRUE"};
      for (int i = 0; i < 6 && jsdpa_yaml_is_plain(node); ++i)
        if (!strcmp(s, spellings[i])) {
          out->boolean = i >= 3;
          return true;
        }
      report_type(p, kind, key, node, in_list);
      return false;
    }
  }
  report_unknown(p, kind, node);
  return false;
}

/* A key's value: one scalar, or a non-empty list of scalars. */
static void parse_axis(jsdpa_yaml_t* p, jsdpa_gen_kind_t kind, const char* key,
                       const yaml_node_t* key_node, const yaml_node_t* value,
                       jsdpa_gen_axis_t* out) {
  out->loc = jsdpa_yaml_loc(p, key_node);
  if (jsdpa_yaml_is_null(value)) {
    JSDPA_YAML_ERROR(p, out->loc, "'%s' has no value: expected a list or %s", key,
                     kind_article[kind]);
    return;
  }
  if (value->type == YAML_MAPPING_NODE) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, value), "expected a list or %s for '%s', got a mapping",
                     kind_article[kind], key);
    return;
  }
  const yaml_node_item_t* first = NULL;
  size_t count = 1;
  if (value->type == YAML_SEQUENCE_NODE) {
    first = value->data.sequence.items.start;
    count = (size_t)(value->data.sequence.items.top - first);
    if (count == 0) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, value), "empty list for '%s': give at least one value",
                       key);
      return;
    }
  }
  jsdpa_gen_value_t* items = calloc(count, sizeof(*items));
  const yaml_node_t** nodes = calloc(count, sizeof(*nodes));
  if (!items || !nodes) abort();
  size_t n = 0;
  for (size_t i = 0; i < count; ++i) {
    nodes[n] = first ? yaml_document_get_node(p->doc, first[i]) : value;
    if (parse_value(p, kind, key, nodes[n], first != NULL, &items[n])) ++n;
  }
  /* A repeated value would only produce duplicate variants; say it at the value.
   * Items are calloc'd, so the union compares equal exactly when the values do. */
  const size_t at = offsetof(jsdpa_gen_value_t, integer);
  for (size_t i = 1; i < n; ++i)
    for (size_t j = 0; j < i; ++j)
      if (!memcmp((const char*)&items[i] + at, (const char*)&items[j] + at,
                  sizeof(items[i]) - at)) {
        JSDPA_YAML_ERROR(p, items[i].loc, "duplicate value '%s' in '%s'",
                         jsdpa_yaml_scalar(nodes[i]), key);
        jsdpa_gen_diag(p->diags, JSDPA_GEN_NOTE, items[j].loc, "first given here");
        break;
      }
  free(nodes);
  /* After a bad value the entry emits nothing (the parse failed), but its good
   * values still go on to validation, which may find more errors. */
  if (n == 0) {
    free(items);
    return;
  }
  out->items = items;
  out->count = n;
}

/* ------------------------------------------------------------ mappings */

/* One row of a mapping's schema: a key and where its value goes. */
typedef struct jsdpa_gen_key_s {
  const char* name;
  jsdpa_gen_kind_t kind;
  size_t offset; /* of the jsdpa_gen_axis_t in jsdpa_gen_spec_entry_t; SIZE_MAX: handled apart */
  bool required;
} jsdpa_gen_key_t;

#define AXIS(field) offsetof(jsdpa_gen_spec_entry_t, field)

static const jsdpa_gen_key_t entry_keys[] = {
    {"family", KIND_FAMILY, AXIS(family), true},
    {"arch", KIND_ARCH, AXIS(arch), false},
    {"dtype", KIND_DTYPE, AXIS(dtype), true},
    {"head_dim", KIND_INT, AXIS(head_dim), true},
    {"head_dim_v", KIND_INT, AXIS(head_dim_v), false},
    {"causal", KIND_BOOL, AXIS(causal), false},
    {"tf32", KIND_BOOL, AXIS(tf32), false},
    {"tile", KIND_INT, SIZE_MAX, false},
};

static const jsdpa_gen_key_t tile_keys[] = {
    {"block_m", KIND_INT, AXIS(block_m), false},
    {"block_n", KIND_INT, AXIS(block_n), false},
    {"warps", KIND_INT, AXIS(warps), false},
    {"stages", KIND_INT, AXIS(stages), false},
};

static const jsdpa_gen_key_t root_keys[] = {
    {"kernels", KIND_INT, SIZE_MAX, true},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Walks a mapping's pairs against `keys`: reports non-scalar, unknown and
 * duplicate keys, and returns for each key row the value node (or NULL) in
 * values[] and the key node in key_nodes[]. `what` names the mapping. */
static void match_keys(jsdpa_yaml_t* p, const yaml_node_t* map, const char* what,
                       const jsdpa_gen_key_t* keys, size_t key_count, const yaml_node_t** key_nodes,
                       const yaml_node_t** values) {
  for (size_t k = 0; k < key_count; ++k) key_nodes[k] = values[k] = NULL;
  for (const yaml_node_pair_t* pair = map->data.mapping.pairs.start;
       pair < map->data.mapping.pairs.top; ++pair) {
    const yaml_node_t* key = yaml_document_get_node(p->doc, pair->key);
    const yaml_node_t* value = yaml_document_get_node(p->doc, pair->value);
    if (key->type != YAML_SCALAR_NODE) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "expected a key name in %s, got %s", what,
                       node_kind_name(key));
      continue;
    }
    size_t k = 0;
    while (k < key_count && strcmp(keys[k].name, jsdpa_yaml_scalar(key)) != 0) ++k;
    if (k == key_count) {
      const char* names[16];
      for (size_t i = 0; i < key_count; ++i) names[i] = keys[i].name;
      const char* guess = closest(jsdpa_yaml_scalar(key), names, key_count);
      bool tile_key = false;
      for (size_t i = 0; keys == entry_keys && i < COUNT(tile_keys); ++i)
        tile_key |= !strcmp(jsdpa_yaml_scalar(key), tile_keys[i].name);
      if (tile_key)
        JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key),
                         "unknown key '%s' in %s; it belongs under 'tile:'", jsdpa_yaml_scalar(key),
                         what);
      else if (guess)
        JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "unknown key '%s' in %s; did you mean '%s'?",
                         jsdpa_yaml_scalar(key), what, guess);
      else {
        char list[256] = "";
        for (size_t i = 0; i < key_count; ++i) {
          strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
          strncat(list, keys[i].name, sizeof(list) - strlen(list) - 1);
        }
        JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, key), "unknown key '%s' in %s (valid keys: %s)",
                         jsdpa_yaml_scalar(key), what, list);
      }
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
  for (size_t k = 0; k < key_count; ++k)
    if (keys[k].required && !key_nodes[k])
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, map), "%s is missing the required key '%s'", what,
                       keys[k].name);
}

static void parse_tile(jsdpa_yaml_t* p, const yaml_node_t* key, const yaml_node_t* value,
                       jsdpa_gen_spec_entry_t* entry) {
  if (value->type != YAML_MAPPING_NODE) {
    JSDPA_YAML_ERROR(p,
                     jsdpa_yaml_is_null(value) ? jsdpa_yaml_loc(p, key) : jsdpa_yaml_loc(p, value),
                     "expected a mapping for 'tile' (keys block_m, block_n, warps, stages), got %s",
                     jsdpa_yaml_is_null(value) ? "no value" : node_kind_name(value));
    return;
  }
  const yaml_node_t* key_nodes[COUNT(tile_keys)];
  const yaml_node_t* values[COUNT(tile_keys)];
  match_keys(p, value, "'tile'", tile_keys, COUNT(tile_keys), key_nodes, values);
  for (size_t k = 0; k < COUNT(tile_keys); ++k)
    if (values[k])
      parse_axis(p, tile_keys[k].kind, tile_keys[k].name, key_nodes[k], values[k],
                 (jsdpa_gen_axis_t*)((char*)entry + tile_keys[k].offset));
}

static void parse_entry(jsdpa_yaml_t* p, const yaml_node_t* map, jsdpa_gen_spec_entry_t* entry) {
  memset(entry, 0, sizeof(*entry));
  entry->loc = jsdpa_yaml_loc(p, map);
  int errors_before = jsdpa_gen_diags_error_count(p->diags);
  const yaml_node_t* key_nodes[COUNT(entry_keys)];
  const yaml_node_t* values[COUNT(entry_keys)];
  match_keys(p, map, "kernel entry", entry_keys, COUNT(entry_keys), key_nodes, values);
  for (size_t k = 0; k < COUNT(entry_keys); ++k) {
    if (!values[k]) continue;
    if (entry_keys[k].offset == SIZE_MAX)
      parse_tile(p, key_nodes[k], values[k], entry);
    else
      parse_axis(p, entry_keys[k].kind, entry_keys[k].name, key_nodes[k], values[k],
                 (jsdpa_gen_axis_t*)((char*)entry + entry_keys[k].offset));
  }
  entry->incomplete = jsdpa_gen_diags_error_count(p->diags) > errors_before;
}

static void parse_root(jsdpa_yaml_t* p, const yaml_node_t* root, jsdpa_gen_spec_t* out) {
  if (root->type != YAML_MAPPING_NODE) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, root),
                     "expected a mapping with a 'kernels' list at the top level, "
                     "got %s",
                     jsdpa_yaml_is_null(root) ? "nothing" : node_kind_name(root));
    return;
  }
  const yaml_node_t* key_nodes[COUNT(root_keys)];
  const yaml_node_t* values[COUNT(root_keys)];
  match_keys(p, root, "the top-level mapping", root_keys, COUNT(root_keys), key_nodes, values);
  const yaml_node_t* list = values[0];
  if (!list) return;
  if (list->type != YAML_SEQUENCE_NODE) {
    JSDPA_YAML_ERROR(
        p, jsdpa_yaml_is_null(list) ? jsdpa_yaml_loc(p, key_nodes[0]) : jsdpa_yaml_loc(p, list),
        "expected a list of kernel entries for 'kernels', got %s",
        jsdpa_yaml_is_null(list) ? "no value" : node_kind_name(list));
    return;
  }
  size_t count = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
  if (count == 0) {
    JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, list),
                     "empty list for 'kernels': give at least one kernel entry");
    return;
  }
  out->entries = calloc(count, sizeof(*out->entries));
  if (!out->entries) abort();
  for (size_t i = 0; i < count; ++i) {
    const yaml_node_t* item = yaml_document_get_node(p->doc, list->data.sequence.items.start[i]);
    if (item->type != YAML_MAPPING_NODE) {
      JSDPA_YAML_ERROR(p, jsdpa_yaml_loc(p, item),
                       "expected a kernel entry (a mapping) in 'kernels', got %s",
                       node_kind_name(item));
      continue;
    }
    parse_entry(p, item, &out->entries[out->count++]);
  }
}

/* ------------------------------------------------------------ entry point */

static void parse_spec_root(jsdpa_yaml_t* y, const yaml_node_t* root, void* out) {
  parse_root(y, root, out);
}

bool jsdpa_gen_parse_spec(const char* file, const char* text, size_t length,
                          jsdpa_gen_diags_t* diags, jsdpa_gen_spec_t* out) {
  memset(out, 0, sizeof(*out));
  out->file = file;
  static const jsdpa_yaml_kind_t kind = {
      "a spec", "the spec", "the spec is empty: expected a mapping with a 'kernels' list"};
  return jsdpa_yaml_parse(file, text, length, diags, &kind, parse_spec_root, out);
}

void jsdpa_gen_spec_free(jsdpa_gen_spec_t* spec) {
  for (size_t i = 0; i < spec->count; ++i) {
    jsdpa_gen_spec_entry_t* e = &spec->entries[i];
    jsdpa_gen_axis_t* axes[] = {&e->family,  &e->arch,  &e->dtype,   &e->head_dim,
                                &e->head_dim_v, &e->causal, &e->tf32,  &e->block_m,
                                &e->block_n, &e->warps, &e->stages};
    for (size_t a = 0; a < COUNT(axes); ++a) free(axes[a]->items);
  }
  free(spec->entries);
  memset(spec, 0, sizeof(*spec));
}
