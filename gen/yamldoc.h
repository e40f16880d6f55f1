/*
 * yamldoc.h (gen-internal) — what the two YAML readers of the project (the
 * spec parser, gen/spec.c, and the tuning database, gen/tunedb.c) share:
 * loading exactly one document with libyaml's document API, turning libyaml's
 * errors into located diagnostics, and reading nodes. libyaml stays inside
 * these three files.
 */
#ifndef JSDPA_GEN_YAMLDOC_H_
#define JSDPA_GEN_YAMLDOC_H_

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "jsdpa_gen.h"

/* One document being read; `failed` is set by every reported error. */
typedef struct jsdpa_yaml_s {
  const char* file;
  yaml_document_t* doc;
  jsdpa_gen_diags_t* diags;
  bool failed;
} jsdpa_yaml_t;

#define JSDPA_YAML_ERROR(y, loc, ...)                              \
  do {                                                             \
    jsdpa_gen_diag((y)->diags, JSDPA_GEN_ERROR, loc, __VA_ARGS__); \
    (y)->failed = true;                                            \
  } while (0)

/* What a file of this kind is called in messages: "a spec" / "the spec". */
typedef struct jsdpa_yaml_kind_s {
  const char* a_name;
  const char* the_name;
  const char* empty_message; /* reported at 1:1 when the file holds no document */
} jsdpa_yaml_kind_t;

/*
 * Registers `text` with diags, loads its one document and calls
 * parse_root(y, root, arg); syntax errors, an empty file and a second
 * document are reported as located errors. Returns false if any error was
 * reported (by this or by parse_root).
 */
bool jsdpa_yaml_parse(const char* file, const char* text, size_t length, jsdpa_gen_diags_t* diags,
                      const jsdpa_yaml_kind_t* kind,
                      void (*parse_root)(jsdpa_yaml_t* y, const yaml_node_t* root, void* arg),
                      void* arg);

/* 1-based locations of a libyaml mark and of a node's start. */
jsdpa_gen_loc_t jsdpa_yaml_mark(const jsdpa_yaml_t* y, yaml_mark_t mark);
jsdpa_gen_loc_t jsdpa_yaml_loc(const jsdpa_yaml_t* y, const yaml_node_t* node);

const char* jsdpa_yaml_scalar(const yaml_node_t* node);
bool jsdpa_yaml_is_plain(const yaml_node_t* node);
/* YAML's null: an empty plain scalar (`key:` with nothing after it), ~ or null. */
bool jsdpa_yaml_is_null(const yaml_node_t* node);

#endif
