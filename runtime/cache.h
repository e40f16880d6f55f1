/*
 * cache.h (runtime-internal) — the kernel cache's two layers, usable without a GPU.
 *
 * Memory layer: per context, opaque values (jit.c stores loaded kernels) found
 * by kernel name; the value's destroy callback runs at jsdpa_cache_destroy.
 * Disk layer: opaque bytes (a cubin) stored under a SHA-256 key as one file
 *   <dir>/<key hex>.jsdpa-kernel = header (magic, format version, payload
 *   length, SHA-256 of the payload, key) + payload,
 * published by writing a unique temp file in the same directory, fsync and
 * rename (readers only ever see whole files). A file that fails any check is
 * counted as corrupt and reported as a miss, so the caller rebuilds and
 * republishes it. Every function is thread-safe.
 */
#ifndef JSDPA_RUNTIME_CACHE_H_
#define JSDPA_RUNTIME_CACHE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define JSDPA_CACHE_FORMAT_VERSION 1
#define JSDPA_CACHE_FILE_SUFFIX ".jsdpa-kernel"

typedef struct jsdpa_cache_key_s {
  uint8_t digest[32];
  char hex[65];
} jsdpa_cache_key_t;

/* Everything a compiled image depends on. */
typedef struct jsdpa_cache_key_inputs_s {
  const char* generator_version;
  const char* source;
  size_t source_length;
  const char* const* options;
  int num_options;
  const char* arch; /* exact, with the "a" suffix: "sm_90a" */
  int nvrtc_major, nvrtc_minor;
  int abi_version;
} jsdpa_cache_key_inputs_t;

void jsdpa_cache_key_compute(const jsdpa_cache_key_inputs_t* inputs, jsdpa_cache_key_t* out_key);

/* How a generated source is compiled and cached: the generator's NVRTC
 * options for the arch and the key over them, the source and the loaded
 * NVRTC's version. jit.c compiles with exactly these options; a tool that
 * prewarms the cache (jsdpa-gen --emit=cubin) must use this key too. The
 * options point into `storage`: use the struct where it was filled. */
typedef struct jsdpa_cache_compile_s {
  const char* options[32];
  int num_options;
  char storage[1024];
  jsdpa_cache_key_t key;
} jsdpa_cache_compile_t;

/* False (and *out_reason) when NVRTC is unavailable. */
bool jsdpa_cache_compile_setup(jsdpa_gen_arch_t arch, const char* source, size_t length,
                               jsdpa_cache_compile_t* out, const char** out_reason);

/* The directory the options and environment choose: options_dir, else
 * $JSDPA_CACHE_DIR, else $XDG_CACHE_HOME/jsdpa, else $HOME/.cache/jsdpa.
 * Returns a malloc'd path, or NULL for memory only ("" anywhere in the chain
 * where it is chosen, or no HOME). */
char* jsdpa_cache_resolve_dir(const char* options_dir);

/* A cache over `dir` (NULL or "": memory only). A missing directory is
 * created; one that cannot be created or written degrades to memory only with
 * one warning on stderr. Fails only when out of memory. */
JSDPA_MUST_USE jsdpa_status_t jsdpa_cache_open(const char* dir, jsdpa_cache_t** out_cache);

/* The disk directory in use, or NULL when memory only. */
const char* jsdpa_cache_dir(const jsdpa_cache_t* cache);

/* Disk layer. load: true and a malloc'd copy of the payload on a valid entry;
 * false on a miss (absent, corrupt, or memory only). store: best effort; a
 * failure warns once and turns the disk layer off. */
bool jsdpa_cache_disk_load(jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, void** out_bytes,
                           size_t* out_size);
bool jsdpa_cache_disk_store(jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, const void* bytes,
                            size_t size);
/* The entry's file name (for tests and messages); returns false if memory only. */
bool jsdpa_cache_entry_path(const jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, char* buf,
                            size_t capacity);

/* Memory layer. find: the value stored under `name` (a memory hit is
 * counted), or NULL. insert: stores value unless another thread stored one
 * under the same name first; returns the value that is now in the cache (the
 * caller destroys its own if it lost the race), or NULL when out of memory
 * (the caller keeps and destroys its value). */
typedef void (*jsdpa_cache_value_destroy_fn)(void* value, void* arg);
void* jsdpa_cache_memory_find(jsdpa_cache_t* cache, const char* name);
void* jsdpa_cache_memory_insert(jsdpa_cache_t* cache, const char* name, void* value,
                                jsdpa_cache_value_destroy_fn destroy, void* arg);

/* Counters that only the JIT can see. */
void jsdpa_cache_note_compile(jsdpa_cache_t* cache, double ms);
void jsdpa_cache_note_load(jsdpa_cache_t* cache, double ms);

#endif /* JSDPA_RUNTIME_CACHE_H_ */
