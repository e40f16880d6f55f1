/* Loading one YAML document with located diagnostics (see yamldoc.h). */
#include "yamldoc.h"

#include <stdlib.h>
#include <string.h>

jsdpa_gen_loc_t jsdpa_yaml_mark(const jsdpa_yaml_t* y, yaml_mark_t mark) {
  return (jsdpa_gen_loc_t){y->file, (int)mark.line + 1, (int)mark.column + 1};
}

jsdpa_gen_loc_t jsdpa_yaml_loc(const jsdpa_yaml_t* y, const yaml_node_t* node) {
  return jsdpa_yaml_mark(y, node->start_mark);
}

const char* jsdpa_yaml_scalar(const yaml_node_t* node) {
  return (const char*)node->data.scalar.value;
}

bool jsdpa_yaml_is_plain(const yaml_node_t* node) {
  return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool jsdpa_yaml_is_null(const yaml_node_t* node) {
  if (node->type != YAML_SCALAR_NODE || !jsdpa_yaml_is_plain(node)) return false;
  const char* s = jsdpa_yaml_scalar(node);
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte
 * offset, not a mark: turn it into line and column. */
static jsdpa_gen_loc_t offset_loc(const char* file, const char* text, size_t length,
                                  size_t offset) {
  jsdpa_gen_loc_t loc = {file, 1, 1};
  for (size_t i = 0; i < offset && i < length; ++i) {
    if (text[i] == '\n') {
      ++loc.line;
      loc.col = 1;
    } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
      ++loc.col;
    }
  }
  return loc;
}

static void report_yaml_error(jsdpa_yaml_t* y, const yaml_parser_t* parser, const char* text,
                              size_t length, const jsdpa_yaml_kind_t* kind) {
  const char* problem = parser->problem ? parser->problem : "unknown problem";
  if (parser->error == YAML_READER_ERROR) {
    JSDPA_YAML_ERROR(y, offset_loc(y->file, text, length, parser->problem_offset),
                     "invalid input: %s", problem);
  } else if (parser->error == YAML_SCANNER_ERROR || parser->error == YAML_PARSER_ERROR ||
             parser->error == YAML_COMPOSER_ERROR) {
    JSDPA_YAML_ERROR(y, jsdpa_yaml_mark(y, parser->problem_mark), "YAML syntax error: %s", problem);
    if (parser->context)
      jsdpa_gen_diag(y->diags, JSDPA_GEN_NOTE, jsdpa_yaml_mark(y, parser->context_mark), "%s",
                     parser->context);
  } else {
    JSDPA_YAML_ERROR(y, ((jsdpa_gen_loc_t){y->file, 0, 0}), "could not read %s: %s", kind->the_name,
                     problem);
  }
}

bool jsdpa_yaml_parse(const char* file, const char* text, size_t length, jsdpa_gen_diags_t* diags,
                      const jsdpa_yaml_kind_t* kind,
                      void (*parse_root)(jsdpa_yaml_t* y, const yaml_node_t* root, void* arg),
                      void* arg) {
  jsdpa_gen_diags_add_source(diags, file, text, length);
  jsdpa_yaml_t y = {file, NULL, diags, false};
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) abort();
  yaml_parser_set_input_string(&parser, (const unsigned char*)text, length);
  yaml_document_t doc;
  if (!yaml_parser_load(&parser, &doc)) {
    report_yaml_error(&y, &parser, text, length, kind);
    yaml_parser_delete(&parser);
    return false;
  }
  y.doc = &doc;
  const yaml_node_t* root = yaml_document_get_root_node(&doc);
  if (!root) {
    JSDPA_YAML_ERROR(&y, ((jsdpa_gen_loc_t){file, 1, 1}), "%s", kind->empty_message);
  } else {
    parse_root(&y, root, arg);
    /* One document per file: a second one would be silently ignored otherwise. */
    yaml_document_t next;
    if (!yaml_parser_load(&parser, &next)) {
      report_yaml_error(&y, &parser, text, length, kind);
    } else {
      if (yaml_document_get_root_node(&next))
        JSDPA_YAML_ERROR(&y, jsdpa_yaml_mark(&y, next.start_mark),
                         "%s is one YAML document; found a second one here", kind->a_name);
      yaml_document_delete(&next);
    }
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return !y.failed;
}
