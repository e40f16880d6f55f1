/* Diagnostics, GCC style: "FILE:LINE:COL: error: MESSAGE", then the source line
 * and a caret under the column, so editors and CI can parse and jump to them.
 * Every diagnostic is printed as it arrives (to the sink, if any) and also kept
 * as text, so a library caller (the runtime) can read them back. An exact repeat
 * of an earlier diagnostic is dropped: the cross product reaches one bad node
 * once per variant, and the user wants to hear about the node once. A note
 * follows the fate of the diagnostic it annotates. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jsdpa_gen.h"

typedef struct jsdpa_gen_source_s {
  char* file;
  char* text; /* a private copy: callers may free theirs before printing */
  size_t length;
} jsdpa_gen_source_t;

/* A held diagnostic and the notes after it, waiting to be sorted and printed. */
typedef struct jsdpa_gen_held_s {
  jsdpa_gen_loc_t loc;
  size_t file_rank; /* files keep the order in which they were first reported */
  size_t seq;       /* arrival order, to keep the sort stable */
  char* text;
} jsdpa_gen_held_t;

struct jsdpa_gen_diags_s {
  FILE* sink;
  jsdpa_gen_source_t* sources;
  size_t source_count;
  char* text; /* every diagnostic so far, NUL-terminated */
  size_t text_length;
  size_t text_capacity;
  char** seen; /* the formatted diagnostics, for dropping repeats */
  size_t seen_count;
  bool dropped_last; /* the last error or warning repeated an earlier one */
  int errors;
  int hold_depth;
  jsdpa_gen_held_t* held; /* while held: one group per error or warning, with its notes */
  size_t held_count;
};

static void* xrealloc(void* p, size_t n) {
  void* q = realloc(p, n ? n : 1);
  if (!q) abort(); /* a generator out of memory cannot report anything useful */
  return q;
}

static char* xstrndup(const char* s, size_t n) {
  char* d = xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

jsdpa_gen_diags_t* jsdpa_gen_diags_create(FILE* sink) {
  jsdpa_gen_diags_t* d = xrealloc(NULL, sizeof(*d));
  memset(d, 0, sizeof(*d));
  d->sink = sink;
  d->text = xstrndup("", 0);
  return d;
}

void jsdpa_gen_diags_destroy(jsdpa_gen_diags_t* diags) {
  if (!diags) return;
  for (size_t i = 0; i < diags->source_count; ++i) {
    free(diags->sources[i].file);
    free(diags->sources[i].text);
  }
  for (size_t i = 0; i < diags->seen_count; ++i) free(diags->seen[i]);
  for (size_t i = 0; i < diags->held_count; ++i) free(diags->held[i].text);
  free(diags->held);
  free(diags->sources);
  free(diags->seen);
  free(diags->text);
  free(diags);
}

void jsdpa_gen_diags_add_source(jsdpa_gen_diags_t* diags, const char* file, const char* text,
                                size_t length) {
  for (size_t i = 0; i < diags->source_count; ++i)
    if (strcmp(diags->sources[i].file, file) == 0) {
      free(diags->sources[i].text);
      diags->sources[i].text = xstrndup(text, length);
      diags->sources[i].length = length;
      return;
    }
  diags->sources = xrealloc(diags->sources, (diags->source_count + 1) * sizeof(*diags->sources));
  diags->sources[diags->source_count++] =
      (jsdpa_gen_source_t){xstrndup(file, strlen(file)), xstrndup(text, length), length};
}

int jsdpa_gen_diags_error_count(const jsdpa_gen_diags_t* diags) {
  return diags->errors;
}

const char* jsdpa_gen_diags_text(const jsdpa_gen_diags_t* diags) {
  return diags->text;
}

/* A growable string for formatting one diagnostic. */
typedef struct jsdpa_gen_buf_s {
  char* data;
  size_t length;
  size_t capacity;
} jsdpa_gen_buf_t;

static void buf_reserve(jsdpa_gen_buf_t* b, size_t extra) {
  if (b->length + extra + 1 <= b->capacity) return;
  size_t cap = b->capacity ? b->capacity : 128;
  while (cap < b->length + extra + 1) cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->capacity = cap;
}

static void buf_append(jsdpa_gen_buf_t* b, const char* s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->length, s, n);
  b->length += n;
  b->data[b->length] = '\0';
}

static void buf_vprintf(jsdpa_gen_buf_t* b, const char* format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(NULL, 0, format, copy);
  va_end(copy);
  if (n < 0) return;
  buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->length, (size_t)n + 1, format, args);
  b->length += (size_t)n;
}

static void buf_printf(jsdpa_gen_buf_t* b, const char* format, ...) {
  va_list args;
  va_start(args, format);
  buf_vprintf(b, format, args);
  va_end(args);
}

static const jsdpa_gen_source_t* find_source(const jsdpa_gen_diags_t* diags, const char* file) {
  for (size_t i = 0; file && i < diags->source_count; ++i)
    if (strcmp(diags->sources[i].file, file) == 0) return &diags->sources[i];
  return NULL;
}

/* Quotes line `line` of the source and puts a caret under column `col`.
 * Columns count characters (as libyaml's marks do), so the caret walks UTF-8
 * sequences, and it copies tabs so it stays aligned however tabs render. */
static void quote_line(jsdpa_gen_buf_t* b, const jsdpa_gen_source_t* src, int line, int col) {
  const char* p = src->text;
  const char* end = src->text + src->length;
  for (int l = 1; l < line && p < end; ++l) {
    const char* nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return;
    p = nl + 1;
  }
  const char* eol = memchr(p, '\n', (size_t)(end - p));
  if (!eol) eol = end;
  if (eol > p && eol[-1] == '\r') --eol;
  buf_append(b, p, (size_t)(eol - p));
  buf_append(b, "\n", 1);
  int chars = 0;
  for (const char* q = p; q < eol && chars < col - 1; ++q) {
    if (((unsigned char)*q & 0xC0) == 0x80) continue; /* UTF-8 continuation byte */
    buf_append(b, *q == '\t' ? "\t" : " ", 1);
    ++chars;
  }
  for (; chars < col - 1; ++chars) buf_append(b, " ", 1); /* past the end: a missing token */
  buf_append(b, "^\n", 2);
}

/* Prints a formatted diagnostic to the sink and keeps it in the text. */
static void deliver(jsdpa_gen_diags_t* diags, const char* text, size_t length) {
  if (diags->sink) {
    fputs(text, diags->sink);
    fflush(diags->sink);
  }
  size_t need = diags->text_length + length + 1;
  if (need > diags->text_capacity) {
    diags->text_capacity = need * 2;
    diags->text = xrealloc(diags->text, diags->text_capacity);
  }
  memcpy(diags->text + diags->text_length, text, length + 1);
  diags->text_length += length;
}

void jsdpa_gen_diag(jsdpa_gen_diags_t* diags, jsdpa_gen_severity_t severity, jsdpa_gen_loc_t loc,
                    const char* format, ...) {
  static const char* const names[] = {"error", "warning", "note"};
  jsdpa_gen_buf_t b = {0};
  if (loc.file && loc.line > 0)
    buf_printf(&b, "%s:%d:%d: ", loc.file, loc.line, loc.col > 0 ? loc.col : 1);
  else if (loc.file)
    buf_printf(&b, "%s: ", loc.file);
  buf_printf(&b, "%s: ", names[severity]);
  va_list args;
  va_start(args, format);
  buf_vprintf(&b, format, args);
  va_end(args);
  buf_append(&b, "\n", 1);
  const jsdpa_gen_source_t* src = find_source(diags, loc.file);
  if (src && loc.line > 0) quote_line(&b, src, loc.line, loc.col > 0 ? loc.col : 1);

  /* A note belongs to the diagnostic before it and shares its fate. */
  if (severity == JSDPA_GEN_NOTE) {
    if (diags->dropped_last) {
      free(b.data);
      return;
    }
  } else {
    diags->dropped_last = false;
    for (size_t i = 0; i < diags->seen_count; ++i)
      if (strcmp(diags->seen[i], b.data) == 0) diags->dropped_last = true;
    if (diags->dropped_last) {
      free(b.data);
      return;
    }
    diags->seen = xrealloc(diags->seen, (diags->seen_count + 1) * sizeof(*diags->seen));
    diags->seen[diags->seen_count++] = xstrndup(b.data, b.length);
  }

  if (severity == JSDPA_GEN_ERROR) ++diags->errors;
  if (diags->hold_depth == 0) {
    deliver(diags, b.data, b.length);
  } else if (severity == JSDPA_GEN_NOTE && diags->held_count) {
    jsdpa_gen_held_t* h = &diags->held[diags->held_count - 1];
    size_t old = strlen(h->text);
    h->text = xrealloc(h->text, old + b.length + 1);
    memcpy(h->text + old, b.data, b.length + 1);
  } else {
    size_t rank = diags->held_count;
    for (size_t i = 0; i < diags->held_count; ++i)
      if (diags->held[i].loc.file && loc.file && !strcmp(diags->held[i].loc.file, loc.file)) {
        rank = diags->held[i].file_rank;
        break;
      }
    diags->held = xrealloc(diags->held, (diags->held_count + 1) * sizeof(*diags->held));
    diags->held[diags->held_count] =
        (jsdpa_gen_held_t){loc, rank, diags->held_count, xstrndup(b.data, b.length)};
    ++diags->held_count;
  }
  free(b.data);
}

void jsdpa_gen_diags_hold(jsdpa_gen_diags_t* diags) {
  ++diags->hold_depth;
}

static int compare_held(const void* pa, const void* pb) {
  const jsdpa_gen_held_t* a = pa;
  const jsdpa_gen_held_t* b = pb;
  if (a->file_rank != b->file_rank) return a->file_rank < b->file_rank ? -1 : 1;
  if (a->loc.line != b->loc.line) return a->loc.line < b->loc.line ? -1 : 1;
  if (a->loc.col != b->loc.col) return a->loc.col < b->loc.col ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void jsdpa_gen_diags_release(jsdpa_gen_diags_t* diags) {
  if (diags->hold_depth == 0 || --diags->hold_depth > 0) return;
  if (diags->held_count) qsort(diags->held, diags->held_count, sizeof(*diags->held), compare_held);
  for (size_t i = 0; i < diags->held_count; ++i) {
    deliver(diags, diags->held[i].text, strlen(diags->held[i].text));
    free(diags->held[i].text);
  }
  free(diags->held);
  diags->held = NULL;
  diags->held_count = 0;
}
