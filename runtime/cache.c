/* The kernel cache: loaded kernels in memory per context, cubins on disk under
 * SHA-256 keys (see cache.h for the file format and the publish protocol). */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

#define CACHE_MAGIC "JSDPAKC\0"
#define CACHE_MAX_PAYLOAD ((uint64_t)1 << 30) /* a larger length is a corrupt header */

/* Fixed-width fields in host byte order: an entry is only ever read by the
 * machine kind that can run its cubin, and the key covers the arch. */
typedef struct cache_header_s {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;
  uint64_t payload_length;
  uint8_t payload_sha256[32];
  uint8_t key[32];
} cache_header_t;
_Static_assert(sizeof(cache_header_t) == 88, "cache header has no padding");

typedef struct cache_entry_s {
  char* name;
  void* value;
  jsdpa_cache_value_destroy_fn destroy;
  void* arg;
} cache_entry_t;

struct jsdpa_cache_s {
  pthread_mutex_t lock;
  char* dir; /* as configured (kept for messages); used only while stats.disk_enabled */
  bool warned;
  cache_entry_t* entries;
  size_t count, capacity;
  jsdpa_cache_stats_t stats;
};

/* ------------------------------------------------------------ keys */

/* Each field is length-prefixed so no two different inputs concatenate to the
 * same byte stream. */
static void hash_field(jsdpa_gen_sha256_t* h, const void* data, size_t length) {
  uint64_t n = length;
  jsdpa_gen_sha256_update(h, &n, sizeof(n));
  jsdpa_gen_sha256_update(h, data, length);
}

static void hash_string(jsdpa_gen_sha256_t* h, const char* s) {
  hash_field(h, s ? s : "", s ? strlen(s) : 0);
}

void jsdpa_cache_key_compute(const jsdpa_cache_key_inputs_t* in, jsdpa_cache_key_t* out_key) {
  jsdpa_gen_sha256_t h;
  jsdpa_gen_sha256_init(&h);
  hash_string(&h, "jsdpa-kernel-cache");
  hash_string(&h, in->generator_version);
  hash_field(&h, in->source, in->source_length);
  int32_t n = in->num_options;
  jsdpa_gen_sha256_update(&h, &n, sizeof(n));
  for (int i = 0; i < in->num_options; ++i) hash_string(&h, in->options[i]);
  hash_string(&h, in->arch);
  int32_t versions[3] = {in->nvrtc_major, in->nvrtc_minor, in->abi_version};
  jsdpa_gen_sha256_update(&h, versions, sizeof(versions));
  jsdpa_gen_sha256_final(&h, out_key->digest);
  jsdpa_gen_hex(out_key->digest, 32, out_key->hex);
}

bool jsdpa_cache_compile_setup(jsdpa_gen_arch_t arch, const char* source, size_t length,
                               jsdpa_cache_compile_t* out, const char** out_reason) {
  const jsdpa_nvrtc_t* nv = jsdpa_nvrtc(out_reason);
  if (!nv) return false;
  const int capacity = (int)(sizeof(out->options) / sizeof(out->options[0]));
  out->num_options =
      jsdpa_gen_compile_options(arch, out->options, capacity, out->storage, sizeof(out->storage));
  char arch_name[16];
  jsdpa_gen_arch_name(arch, arch_name, sizeof(arch_name));
  jsdpa_cache_key_inputs_t inputs = {
      .generator_version = JSDPA_GEN_VERSION,
      .source = source,
      .source_length = length,
      .options = out->options,
      .num_options = out->num_options,
      .arch = arch_name,
      .nvrtc_major = nv->major,
      .nvrtc_minor = nv->minor,
      .abi_version = JSDPA_ABI_VERSION,
  };
  jsdpa_cache_key_compute(&inputs, &out->key);
  return true;
}

/* ------------------------------------------------------------ directory */

static char* join(const char* a, const char* b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char* s = malloc(n);
  if (s) snprintf(s, n, "%s/%s", a, b);
  return s;
}

char* jsdpa_cache_resolve_dir(const char* options_dir) {
  if (options_dir) return *options_dir ? strdup(options_dir) : NULL;
  const char* env = getenv("JSDPA_CACHE_DIR");
  if (env) return *env ? strdup(env) : NULL;
  env = getenv("XDG_CACHE_HOME");
  if (env && *env) return join(env, "jsdpa");
  env = getenv("HOME");
  if (env && *env) return join(env, ".cache/jsdpa");
  return NULL;
}

/* Whether files can be created in dir: a real probe, because access(W_OK)
 * answers yes to root for a read-only directory it can in fact write. */
static int probe_writable(const char* dir) {
  char* path = join(dir, ".probe.XXXXXX");
  if (!path) return ENOMEM;
  int fd = mkstemp(path);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    close(fd);
    unlink(path);
  }
  free(path);
  return err;
}

static void warn_once(jsdpa_cache_t* cache, const char* what, int err) {
  if (cache->warned) return;
  cache->warned = true;
  fprintf(stderr, "jsdpa: warning: kernel cache directory '%s' %s (%s); caching in memory only\n",
          cache->dir, what, strerror(err));
}

jsdpa_status_t jsdpa_cache_open(const char* dir, jsdpa_cache_t** out_cache) {
  *out_cache = NULL;
  jsdpa_cache_t* cache = calloc(1, sizeof(*cache));
  if (!cache) return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "kernel cache: out of memory");
  pthread_mutex_init(&cache->lock, NULL);
  if (dir && *dir) {
    cache->dir = strdup(dir);
    if (!cache->dir) {
      jsdpa_cache_destroy(cache);
      return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "kernel cache: out of memory");
    }
    int err = jsdpa_make_dirs(dir);
    const char* what = "cannot be created";
    if (!err) {
      err = probe_writable(dir);
      what = "is not writable";
    }
    cache->stats.disk_enabled = err == 0;
    if (err) warn_once(cache, what, err);
  }
  *out_cache = cache;
  return NULL;
}

jsdpa_status_t jsdpa_cache_create(jsdpa_context_t* ctx, jsdpa_cache_t** out_cache) {
  if (ctx->cache_dir) return jsdpa_cache_open(ctx->cache_dir, out_cache);
  char* dir = jsdpa_cache_resolve_dir(ctx->options.cache_dir);
  jsdpa_status_t status = jsdpa_cache_open(dir, out_cache);
  free(dir);
  return status;
}

void jsdpa_cache_destroy(jsdpa_cache_t* cache) {
  if (!cache) return;
  for (size_t i = 0; i < cache->count; ++i) {
    cache_entry_t* e = &cache->entries[i];
    if (e->destroy) e->destroy(e->value, e->arg);
    free(e->name);
  }
  free(cache->entries);
  free(cache->dir);
  pthread_mutex_destroy(&cache->lock);
  free(cache);
}

void jsdpa_cache_get_stats(const jsdpa_cache_t* cache, jsdpa_cache_stats_t* out_stats) {
  memset(out_stats, 0, sizeof(*out_stats));
  if (!cache) return;
  pthread_mutex_t* lock = (pthread_mutex_t*)&cache->lock;
  pthread_mutex_lock(lock);
  *out_stats = cache->stats;
  pthread_mutex_unlock(lock);
}

const char* jsdpa_cache_dir(const jsdpa_cache_t* cache) {
  pthread_mutex_t* lock = (pthread_mutex_t*)&cache->lock;
  pthread_mutex_lock(lock);
  const char* dir = cache->stats.disk_enabled ? cache->dir : NULL;
  pthread_mutex_unlock(lock);
  return dir;
}

/* ------------------------------------------------------------ disk layer */

static bool entry_path(const char* dir, const jsdpa_cache_key_t* key, char* buf, size_t capacity) {
  int n = snprintf(buf, capacity, "%s/%s%s", dir, key->hex, JSDPA_CACHE_FILE_SUFFIX);
  return n > 0 && (size_t)n < capacity;
}

bool jsdpa_cache_entry_path(const jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, char* buf,
                            size_t capacity) {
  pthread_mutex_t* lock = (pthread_mutex_t*)&cache->lock;
  pthread_mutex_lock(lock);
  bool ok = cache->stats.disk_enabled && entry_path(cache->dir, key, buf, capacity);
  pthread_mutex_unlock(lock);
  return ok;
}

/* Reads the whole file; returns 0, or -1 if absent, or 1 if unreadable. */
static int read_file(const char* path, uint8_t** out_data, size_t* out_size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? -1 : 1;
  struct stat st;
  int rc = 1;
  uint8_t* data = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      (uint64_t)st.st_size <= CACHE_MAX_PAYLOAD + sizeof(cache_header_t)) {
    size_t size = (size_t)st.st_size;
    data = malloc(size ? size : 1);
    size_t done = 0;
    while (data && done < size) {
      ssize_t n = read(fd, data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += (size_t)n;
    }
    if (data && done == size) {
      rc = 0;
      *out_data = data;
      *out_size = size;
      data = NULL;
    }
  }
  free(data);
  close(fd);
  return rc;
}

static bool entry_valid(const uint8_t* file, size_t size, const jsdpa_cache_key_t* key) {
  cache_header_t h;
  if (size < sizeof(h)) return false;
  memcpy(&h, file, sizeof(h));
  if (memcmp(h.magic, CACHE_MAGIC, sizeof(h.magic)) != 0) return false;
  if (h.format_version != JSDPA_CACHE_FORMAT_VERSION || h.header_size != sizeof(h)) return false;
  if (h.payload_length != size - sizeof(h)) return false;
  if (memcmp(h.key, key->digest, 32) != 0) return false;
  uint8_t digest[32];
  jsdpa_gen_sha256_t sha;
  jsdpa_gen_sha256_init(&sha);
  jsdpa_gen_sha256_update(&sha, file + sizeof(h), size - sizeof(h));
  jsdpa_gen_sha256_final(&sha, digest);
  return memcmp(digest, h.payload_sha256, 32) == 0;
}

bool jsdpa_cache_disk_load(jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, void** out_bytes,
                           size_t* out_size) {
  *out_bytes = NULL;
  *out_size = 0;
  char path[4096];
  if (!jsdpa_cache_entry_path(cache, key, path, sizeof(path))) return false;
  uint8_t* file = NULL;
  size_t size = 0;
  int rc = read_file(path, &file, &size);
  if (rc < 0) return false;
  bool valid = rc == 0 && entry_valid(file, size, key);
  void* payload = NULL;
  if (valid) {
    size_t n = size - sizeof(cache_header_t);
    payload = malloc(n ? n : 1);
    if (payload) memcpy(payload, file + sizeof(cache_header_t), n);
    *out_size = n;
  }
  free(file);
  pthread_mutex_lock(&cache->lock);
  if (!valid)
    cache->stats.corrupt_entries++;
  else if (payload)
    cache->stats.disk_hits++;
  pthread_mutex_unlock(&cache->lock);
  if (!payload) *out_size = 0;
  *out_bytes = payload;
  return payload != NULL;
}

/* Writes the entry to a unique temp file beside its final name, makes it
 * durable, then renames it over the final name: rename is atomic within a
 * directory, so concurrent writers of one key all succeed and readers see
 * either the old whole file or the new one. Returns 0 or an errno. */
static int publish(const char* dir, const jsdpa_cache_key_t* key, const void* bytes, size_t size) {
  char final_path[4096], temp_path[4096];
  if (!entry_path(dir, key, final_path, sizeof(final_path))) return ENAMETOOLONG;
  int n = snprintf(temp_path, sizeof(temp_path), "%s/.%s.tmp.XXXXXX", dir, key->hex);
  if (n < 0 || (size_t)n >= sizeof(temp_path)) return ENAMETOOLONG;

  cache_header_t h;
  memset(&h, 0, sizeof(h));
  memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
  h.format_version = JSDPA_CACHE_FORMAT_VERSION;
  h.header_size = sizeof(h);
  h.payload_length = size;
  jsdpa_gen_sha256_t sha;
  jsdpa_gen_sha256_init(&sha);
  jsdpa_gen_sha256_update(&sha, bytes, size);
  jsdpa_gen_sha256_final(&sha, h.payload_sha256);
  memcpy(h.key, key->digest, 32);

  int fd = mkstemp(temp_path);
  if (fd < 0) return errno;
  int err = 0;
  /* mkstemp makes 0600; a cache prewarmed by one user may be read by others. */
  if (fchmod(fd, 0644) != 0 || !jsdpa_write_all(fd, &h, sizeof(h)) ||
      !jsdpa_write_all(fd, bytes, size) || fsync(fd) != 0)
    err = errno ? errno : EIO;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && rename(temp_path, final_path) != 0) err = errno;
  if (err) {
    unlink(temp_path);
    return err;
  }
  /* Make the rename itself durable. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

bool jsdpa_cache_disk_store(jsdpa_cache_t* cache, const jsdpa_cache_key_t* key, const void* bytes,
                            size_t size) {
  /* cache->dir lives as long as the cache, so it is read outside the lock. */
  pthread_mutex_lock(&cache->lock);
  bool enabled = cache->stats.disk_enabled;
  pthread_mutex_unlock(&cache->lock);
  if (!enabled) return false;
  errno = 0;
  int err = publish(cache->dir, key, bytes, size);
  pthread_mutex_lock(&cache->lock);
  if (err == 0) {
    cache->stats.disk_writes++;
  } else if (cache->stats.disk_enabled) {
    warn_once(cache, "cannot store kernels", err);
    cache->stats.disk_enabled = false;
  }
  pthread_mutex_unlock(&cache->lock);
  return err == 0;
}

/* ------------------------------------------------------------ memory layer */

void* jsdpa_cache_memory_find(jsdpa_cache_t* cache, const char* name) {
  void* value = NULL;
  pthread_mutex_lock(&cache->lock);
  for (size_t i = 0; i < cache->count; ++i)
    if (strcmp(cache->entries[i].name, name) == 0) {
      value = cache->entries[i].value;
      cache->stats.memory_hits++;
      break;
    }
  pthread_mutex_unlock(&cache->lock);
  return value;
}

void* jsdpa_cache_memory_insert(jsdpa_cache_t* cache, const char* name, void* value,
                                jsdpa_cache_value_destroy_fn destroy, void* arg) {
  void* result = NULL;
  pthread_mutex_lock(&cache->lock);
  for (size_t i = 0; i < cache->count && !result; ++i)
    if (strcmp(cache->entries[i].name, name) == 0) result = cache->entries[i].value;
  if (!result) {
    if (cache->count == cache->capacity) {
      size_t capacity = cache->capacity ? 2 * cache->capacity : 16;
      cache_entry_t* grown = realloc(cache->entries, capacity * sizeof(*grown));
      if (grown) {
        cache->entries = grown;
        cache->capacity = capacity;
      }
    }
    char* copy = strdup(name);
    if (cache->count < cache->capacity && copy) {
      cache->entries[cache->count++] = (cache_entry_t){copy, value, destroy, arg};
      result = value;
    } else {
      free(copy);
    }
  }
  pthread_mutex_unlock(&cache->lock);
  return result;
}

void jsdpa_cache_note_compile(jsdpa_cache_t* cache, double ms) {
  pthread_mutex_lock(&cache->lock);
  cache->stats.compiles++;
  cache->stats.compile_ms += ms;
  pthread_mutex_unlock(&cache->lock);
}

void jsdpa_cache_note_load(jsdpa_cache_t* cache, double ms) {
  pthread_mutex_lock(&cache->lock);
  cache->stats.load_ms += ms;
  pthread_mutex_unlock(&cache->lock);
}
