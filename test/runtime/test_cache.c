/* The kernel cache without a GPU: keys, directory choice, the disk layer
 * (cold, warm, corrupt, truncated, wrong magic, read-only, racing processes)
 * and the memory layer. Payloads are random bytes, fresh each run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_OK(expr)                                                     \
  do {                                                                     \
    jsdpa_status_t s_ = (expr);                                            \
    if (s_) {                                                              \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, \
              jsdpa_status_message(s_));                                   \
      jsdpa_status_free(s_);                                               \
      ++failures;                                                          \
    }                                                                      \
  } while (0)

static uint64_t rng_state;

static uint64_t rng_next(void) {
  /* xorshift64*: test data only. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint8_t* random_bytes(size_t n) {
  uint8_t* p = malloc(n);
  for (size_t i = 0; i < n; ++i) p[i] = (uint8_t)(rng_next() >> 56);
  return p;
}

static char root[256];

static void make_root(void) {
  snprintf(root, sizeof(root), "/tmp/jsdpa-test-cache-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    exit(1);
  }
}

static void remove_tree(const char* path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    chmod(path, 0755);
    DIR* d = opendir(path);
    struct dirent* e;
    while (d && (e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char child[1024];
      snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
      remove_tree(child);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static void key_for(const char* source, jsdpa_cache_key_t* key) {
  const char* options[] = {"--gpu-architecture=sm_90a", "-default-device"};
  jsdpa_cache_key_inputs_t in = {
      .generator_version = JSDPA_GEN_VERSION,
      .source = source,
      .source_length = strlen(source),
      .options = options,
      .num_options = 2,
      .arch = "sm_90a",
      .nvrtc_major = 13,
      .nvrtc_minor = 0,
      .abi_version = JSDPA_ABI_VERSION,
  };
  jsdpa_cache_key_compute(&in, key);
}

/* Counts the entries of dir whose name starts with '.' (temp files). */
static int count_hidden(const char* dir) {
  int n = 0;
  DIR* d = opendir(dir);
  struct dirent* e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) ++n;
  if (d) closedir(d);
  return n;
}

static void test_keys(void) {
  const char* options[] = {"--gpu-architecture=sm_90a", "-default-device"};
  jsdpa_cache_key_inputs_t base = {
      .generator_version = "0.1.0",
      .source = "kernel source",
      .source_length = 13,
      .options = options,
      .num_options = 2,
      .arch = "sm_90a",
      .nvrtc_major = 13,
      .nvrtc_minor = 0,
      .abi_version = 1,
  };
  jsdpa_cache_key_t a, b;
  jsdpa_cache_key_compute(&base, &a);
  jsdpa_cache_key_compute(&base, &b);
  CHECK(memcmp(a.digest, b.digest, 32) == 0);
  CHECK(strlen(a.hex) == 64);

  const char* other_options[] = {"--gpu-architecture=sm_90a", "-lineinfo"};
  /* Each input on its own changes the key. */
  jsdpa_cache_key_inputs_t variants[7];
  for (int i = 0; i < 7; ++i) variants[i] = base;
  variants[0].generator_version = "0.1.1";
  variants[1].source_length = 12;
  variants[2].options = other_options;
  variants[3].arch = "sm_90";
  variants[4].nvrtc_minor = 1;
  variants[5].abi_version = 2;
  variants[6].num_options = 1;
  for (int i = 0; i < 7; ++i) {
    jsdpa_cache_key_compute(&variants[i], &b);
    if (memcmp(a.digest, b.digest, 32) == 0) {
      fprintf(stderr, "key variant %d did not change the key\n", i);
      ++failures;
    }
  }
  /* Length prefixes: moving a byte between fields changes the key. */
  const char* split_a[] = {"ab", "c"};
  const char* split_b[] = {"a", "bc"};
  jsdpa_cache_key_inputs_t x = base, y = base;
  x.options = split_a;
  y.options = split_b;
  jsdpa_cache_key_compute(&x, &a);
  jsdpa_cache_key_compute(&y, &b);
  CHECK(memcmp(a.digest, b.digest, 32) != 0);
}

/* The key the JIT and a prewarming tool share: same inputs, same key and
 * options; another source or arch, another key. Needs NVRTC (its version is
 * part of the key), which a machine without the CUDA toolkit lacks. */
static void test_compile_setup(void) {
  const char* reason = NULL;
  if (!jsdpa_nvrtc(&reason)) {
    printf("  compile setup: skipped (NVRTC unavailable: %s)\n", reason);
    return;
  }
  jsdpa_gen_arch_t sm90a = {90, true}, sm80 = {80, false};
  jsdpa_cache_compile_t a, b, c, d;
  CHECK(jsdpa_cache_compile_setup(sm90a, "source", 6, &a, &reason));
  CHECK(jsdpa_cache_compile_setup(sm90a, "source", 6, &b, &reason));
  CHECK(jsdpa_cache_compile_setup(sm80, "source", 6, &c, &reason));
  CHECK(jsdpa_cache_compile_setup(sm90a, "sourcf", 6, &d, &reason));
  CHECK(memcmp(a.key.digest, b.key.digest, 32) == 0);
  CHECK(memcmp(a.key.digest, c.key.digest, 32) != 0);
  CHECK(memcmp(a.key.digest, d.key.digest, 32) != 0);
  CHECK(a.num_options > 0 && strstr(a.options[0], "sm_90a") != NULL);
  CHECK(c.num_options > 0 && strstr(c.options[0], "sm_80") != NULL);
}

static void test_resolve_dir(void) {
  char* d = jsdpa_cache_resolve_dir("/opt/cache");
  CHECK(d && strcmp(d, "/opt/cache") == 0);
  free(d);
  CHECK(jsdpa_cache_resolve_dir("") == NULL);

  setenv("JSDPA_CACHE_DIR", "/env/cache", 1);
  d = jsdpa_cache_resolve_dir(NULL);
  CHECK(d && strcmp(d, "/env/cache") == 0);
  free(d);
  setenv("JSDPA_CACHE_DIR", "", 1);
  CHECK(jsdpa_cache_resolve_dir(NULL) == NULL);
  unsetenv("JSDPA_CACHE_DIR");

  setenv("XDG_CACHE_HOME", "/xdg", 1);
  d = jsdpa_cache_resolve_dir(NULL);
  CHECK(d && strcmp(d, "/xdg/jsdpa") == 0);
  free(d);
  unsetenv("XDG_CACHE_HOME");

  setenv("HOME", "/home/someone", 1);
  d = jsdpa_cache_resolve_dir(NULL);
  CHECK(d && strcmp(d, "/home/someone/.cache/jsdpa") == 0);
  free(d);
}

/* Cold miss, store, warm hit; a second cache over the same directory (what a
 * new process sees) hits too. The directory does not exist at first. */
static void test_cold_warm(void) {
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/cold/a/b", root);
  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open(dir, &cache));
  if (!cache) return;
  jsdpa_cache_stats_t st;
  jsdpa_cache_get_stats(cache, &st);
  CHECK(st.disk_enabled);

  jsdpa_cache_key_t key;
  key_for("cold warm", &key);
  size_t n = 100000 + (size_t)(rng_next() % 1000);
  uint8_t* payload = random_bytes(n);
  void* got = NULL;
  size_t got_n = 0;
  CHECK(!jsdpa_cache_disk_load(cache, &key, &got, &got_n));
  CHECK(got == NULL && got_n == 0);
  CHECK(jsdpa_cache_disk_store(cache, &key, payload, n));
  CHECK(jsdpa_cache_disk_load(cache, &key, &got, &got_n));
  CHECK(got_n == n && got && memcmp(got, payload, n) == 0);
  free(got);
  jsdpa_cache_get_stats(cache, &st);
  CHECK(st.disk_hits == 1 && st.disk_writes == 1 && st.corrupt_entries == 0);
  jsdpa_cache_destroy(cache);

  CHECK_OK(jsdpa_cache_open(dir, &cache));
  CHECK(jsdpa_cache_disk_load(cache, &key, &got, &got_n));
  CHECK(got_n == n && got && memcmp(got, payload, n) == 0);
  free(got);
  CHECK(count_hidden(dir) == 0);
  jsdpa_cache_destroy(cache);

  /* A zero-byte payload is a valid entry too. */
  CHECK_OK(jsdpa_cache_open(dir, &cache));
  key_for("empty", &key);
  CHECK(jsdpa_cache_disk_store(cache, &key, payload, 0));
  CHECK(jsdpa_cache_disk_load(cache, &key, &got, &got_n));
  CHECK(got && got_n == 0);
  free(got);
  jsdpa_cache_destroy(cache);
  free(payload);
}

typedef enum {
  DAMAGE_PAYLOAD_BYTE,
  DAMAGE_TRUNCATE,
  DAMAGE_TRUNCATE_HEADER,
  DAMAGE_MAGIC,
  DAMAGE_OTHER_KEY,
  DAMAGE_APPEND
} damage_t;

static void damage_file(const char* path, damage_t how, const char* other_path) {
  FILE* f = fopen(path, "r+b");
  if (!f) {
    perror(path);
    ++failures;
    return;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  switch (how) {
    case DAMAGE_PAYLOAD_BYTE: {
      long at = 88 + (long)(rng_next() % (uint64_t)(size - 88));
      fseek(f, at, SEEK_SET);
      int c = fgetc(f);
      fseek(f, at, SEEK_SET);
      fputc(c ^ (1 << (rng_next() % 8)), f);
      break;
    }
    case DAMAGE_TRUNCATE: CHECK(ftruncate(fileno(f), size / 2) == 0); break;
    case DAMAGE_TRUNCATE_HEADER: CHECK(ftruncate(fileno(f), 40) == 0); break;
    case DAMAGE_MAGIC:
      fseek(f, 0, SEEK_SET);
      fputc('X', f);
      break;
    case DAMAGE_OTHER_KEY:
      fclose(f);
      CHECK(rename(other_path, path) == 0);
      return;
    case DAMAGE_APPEND: fputc(0, f); break;
  }
  fclose(f);
}

/* Every kind of damage is a miss counted as corrupt; a rebuild republishes a
 * valid entry over it. */
static void test_damage(void) {
  static const struct {
    damage_t how;
    const char* name;
  } cases[] = {
      {DAMAGE_PAYLOAD_BYTE, "payload byte flipped"},
      {DAMAGE_TRUNCATE, "truncated"},
      {DAMAGE_TRUNCATE_HEADER, "truncated inside the header"},
      {DAMAGE_MAGIC, "wrong magic"},
      {DAMAGE_OTHER_KEY, "another key's entry"},
      {DAMAGE_APPEND, "trailing byte"},
  };
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/damage", root);
  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open(dir, &cache));
  if (!cache) return;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    jsdpa_cache_key_t key, other;
    char source[64];
    snprintf(source, sizeof(source), "damage %zu", i);
    key_for(source, &key);
    key_for("the other key", &other);
    size_t n = 4096 + (size_t)(rng_next() % 4096);
    uint8_t* payload = random_bytes(n);
    CHECK(jsdpa_cache_disk_store(cache, &key, payload, n));
    CHECK(jsdpa_cache_disk_store(cache, &other, payload, n));
    char path[1024], other_path[1024];
    CHECK(jsdpa_cache_entry_path(cache, &key, path, sizeof(path)));
    CHECK(jsdpa_cache_entry_path(cache, &other, other_path, sizeof(other_path)));
    damage_file(path, cases[i].how, other_path);

    jsdpa_cache_stats_t before, after;
    jsdpa_cache_get_stats(cache, &before);
    void* got = NULL;
    size_t got_n = 0;
    bool hit = jsdpa_cache_disk_load(cache, &key, &got, &got_n);
    jsdpa_cache_get_stats(cache, &after);
    if (hit || after.corrupt_entries != before.corrupt_entries + 1) {
      fprintf(stderr, "damage '%s': hit %d, corrupt %lld -> %lld\n", cases[i].name, hit,
              (long long)before.corrupt_entries, (long long)after.corrupt_entries);
      ++failures;
    }
    free(got);
    CHECK(jsdpa_cache_disk_store(cache, &key, payload, n));
    CHECK(jsdpa_cache_disk_load(cache, &key, &got, &got_n));
    CHECK(got && got_n == n && memcmp(got, payload, n) == 0);
    free(got);
    free(payload);
  }
  CHECK(count_hidden(dir) == 0);
  jsdpa_cache_destroy(cache);
}

/* Runs open (+ a store and a load) with stderr captured; returns the number
 * of warning lines and the cache's disk_enabled. */
static int open_counting_warnings(const char* dir, bool* out_disk_enabled) {
  char log[512];
  snprintf(log, sizeof(log), "%s/stderr.txt", root);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(log, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  dup2(fd, 2);
  close(fd);

  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open(dir, &cache));
  if (cache) {
    jsdpa_cache_key_t key;
    key_for("read-only", &key);
    uint8_t bytes[16] = {1, 2, 3};
    void* got = NULL;
    size_t got_n = 0;
    CHECK(!jsdpa_cache_disk_store(cache, &key, bytes, sizeof(bytes)));
    CHECK(!jsdpa_cache_disk_load(cache, &key, &got, &got_n));
    CHECK(!jsdpa_cache_disk_store(cache, &key, bytes, sizeof(bytes)));
    jsdpa_cache_stats_t st;
    jsdpa_cache_get_stats(cache, &st);
    *out_disk_enabled = st.disk_enabled;
    CHECK(jsdpa_cache_dir(cache) == NULL);
    jsdpa_cache_destroy(cache);
  }
  fflush(stderr);
  dup2(saved, 2);
  close(saved);

  int warnings = 0;
  FILE* f = fopen(log, "r");
  char line[1024];
  while (f && fgets(line, sizeof(line), f)) {
    if (strstr(line, "warning")) ++warnings;
    fprintf(stderr, "  (captured) %s", line);
  }
  if (f) fclose(f);
  return warnings;
}

/* A directory that cannot be created or written: memory only, one warning.
 * chmod does not stop root, so as root the uncreatable path runs under a
 * regular file instead. */
static void test_unwritable(void) {
  char file[300], dir[512];
  snprintf(file, sizeof(file), "%s/plain-file", root);
  FILE* f = fopen(file, "w");
  CHECK(f != NULL);
  if (f) fclose(f);
  snprintf(dir, sizeof(dir), "%s/sub/deeper", file);
  bool enabled = true;
  CHECK(open_counting_warnings(dir, &enabled) == 1);
  CHECK(!enabled);

  if (geteuid() != 0) {
    char ro[300];
    snprintf(ro, sizeof(ro), "%s/read-only", root);
    CHECK(mkdir(ro, 0755) == 0);
    CHECK(chmod(ro, 0500) == 0);
    enabled = true;
    CHECK(open_counting_warnings(ro, &enabled) == 1);
    CHECK(!enabled);
    snprintf(dir, sizeof(dir), "%s/missing", ro);
    enabled = true;
    CHECK(open_counting_warnings(dir, &enabled) == 1);
    CHECK(!enabled);
    chmod(ro, 0755);
  } else {
    fprintf(stderr,
            "  running as root: read-only directories are writable; tested the "
            "uncreatable path only\n");
  }

  /* The directory disappears after open: the first failed store turns the
   * disk layer off with one warning, and the cache keeps working in memory. */
  char gone[512];
  snprintf(gone, sizeof(gone), "%s/gone", root);
  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open(gone, &cache));
  if (!cache) return;
  remove_tree(gone);
  jsdpa_cache_key_t key;
  key_for("gone", &key);
  uint8_t bytes[8] = {0};
  CHECK(!jsdpa_cache_disk_store(cache, &key, bytes, sizeof(bytes)));
  jsdpa_cache_stats_t st;
  jsdpa_cache_get_stats(cache, &st);
  CHECK(!st.disk_enabled);
  jsdpa_cache_destroy(cache);
}

/* N processes store and load one key at once, many times: every load after
 * the process's own store hits and returns the exact bytes, the final file
 * verifies, and no temp file is left behind. */
static void test_racing_processes(void) {
  enum { processes = 8, rounds = 40 };
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/race", root);
  jsdpa_cache_key_t key;
  key_for("racing", &key);
  size_t n = (1 << 20) + (size_t)(rng_next() % 4096);
  uint8_t* payload = random_bytes(n);

  int gate[2];
  CHECK(pipe(gate) == 0);
  pid_t pids[processes];
  for (int p = 0; p < processes; ++p) {
    pids[p] = fork();
    if (pids[p] == 0) {
      close(gate[1]);
      char c;
      /* Blocks until the parent closes the pipe: all start together. */
      while (read(gate[0], &c, 1) > 0) {
      }
      jsdpa_cache_t* cache = NULL;
      jsdpa_status_t s = jsdpa_cache_open(dir, &cache);
      int bad = s != NULL;
      jsdpa_status_free(s);
      for (int r = 0; r < rounds && !bad; ++r) {
        void* got = NULL;
        size_t got_n = 0;
        bad |= !jsdpa_cache_disk_store(cache, &key, payload, n);
        bad |= !jsdpa_cache_disk_load(cache, &key, &got, &got_n);
        bad |= got_n != n || !got || memcmp(got, payload, n) != 0;
        free(got);
      }
      jsdpa_cache_stats_t st;
      jsdpa_cache_get_stats(cache, &st);
      bad |= st.corrupt_entries != 0;
      jsdpa_cache_destroy(cache);
      _exit(bad);
    }
  }
  close(gate[0]);
  close(gate[1]);
  for (int p = 0; p < processes; ++p) {
    int status = 0;
    CHECK(waitpid(pids[p], &status, 0) == pids[p]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "racing process %d failed (status 0x%x)\n", p, status);
      ++failures;
    }
  }
  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open(dir, &cache));
  if (cache) {
    void* got = NULL;
    size_t got_n = 0;
    CHECK(jsdpa_cache_disk_load(cache, &key, &got, &got_n));
    CHECK(got && got_n == n && memcmp(got, payload, n) == 0);
    free(got);
    jsdpa_cache_destroy(cache);
  }
  CHECK(count_hidden(dir) == 0);
  free(payload);
}

static int destroyed;

static void count_destroy(void* value, void* arg) {
  CHECK(arg == &destroyed);
  free(value);
  ++destroyed;
}

static void test_memory_layer(void) {
  jsdpa_cache_t* cache = NULL;
  CHECK_OK(jsdpa_cache_open("", &cache));
  if (!cache) return;
  jsdpa_cache_stats_t st;
  jsdpa_cache_get_stats(cache, &st);
  CHECK(!st.disk_enabled);
  CHECK(jsdpa_cache_memory_find(cache, "k1") == NULL);
  int names = 40; /* more than the initial capacity */
  for (int i = 0; i < names; ++i) {
    char name[32];
    snprintf(name, sizeof(name), "kernel_%d", i);
    int* value = malloc(sizeof(int));
    *value = i;
    CHECK(jsdpa_cache_memory_insert(cache, name, value, count_destroy, &destroyed) == value);
  }
  /* A second insert under a taken name keeps the first value. */
  int* loser = malloc(sizeof(int));
  int* winner = jsdpa_cache_memory_insert(cache, "kernel_7", loser, count_destroy, &destroyed);
  CHECK(winner != loser && winner && *winner == 7);
  free(loser);
  for (int i = 0; i < names; ++i) {
    char name[32];
    snprintf(name, sizeof(name), "kernel_%d", i);
    int* value = jsdpa_cache_memory_find(cache, name);
    CHECK(value && *value == i);
  }
  jsdpa_cache_note_compile(cache, 2.5);
  jsdpa_cache_note_load(cache, 1.0);
  jsdpa_cache_get_stats(cache, &st);
  CHECK(st.memory_hits == names && st.compiles == 1 && st.compile_ms == 2.5 && st.load_ms == 1.0);
  jsdpa_cache_destroy(cache);
  CHECK(destroyed == names);
}

int main(void) {
  uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  const char* forced = getenv("JSDPA_TEST_SEED");
  if (forced) seed = strtoull(forced, NULL, 0);
  rng_state = seed ? seed : 1;
  printf("test_cache: seed %llu (JSDPA_TEST_SEED to repeat)\n", (unsigned long long)seed);
  make_root();

  test_keys();
  test_compile_setup();
  test_resolve_dir();
  test_cold_warm();
  test_damage();
  test_unwritable();
  test_racing_processes();
  test_memory_layer();

  remove_tree(root);
  printf("test_cache: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
