#define _GNU_SOURCE /* vasprintf */
/* jsdpa-gen: the code generator's command line. A straight pipeline over the
 * gen library: read specs -> variants -> sources -> (NVRTC) -> write.
 * Everything is validated, emitted and compiled in memory first; files are
 * written last, each to a temporary name and then renamed, so an error never
 * leaves a partial output behind. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "cuda_dl.h"
#include "fsutil.h"
#include "jsdpa_gen.h"

enum {
  EXIT_SPEC_ERROR = 1,
  EXIT_USAGE = 2,
};

typedef enum emit_kind_e {
  EMIT_CUDA = 1 << 0,
  EMIT_LIST = 1 << 1,
  EMIT_MANIFEST = 1 << 2,
  EMIT_PTX = 1 << 3,
  EMIT_CUBIN = 1 << 4,
} emit_kind_t;

static const struct {
  const char* name;
  emit_kind_t kind;
} emit_kinds[] = {
    {"cuda", EMIT_CUDA}, {"list", EMIT_LIST},   {"manifest", EMIT_MANIFEST},
    {"ptx", EMIT_PTX},   {"cubin", EMIT_CUBIN},
};

static const char usage_text[] =
    "usage: jsdpa-gen [options] FILE...\n"
    "\n"
    "Reads kernel specs (YAML; '-' reads standard input), expands them into\n"
    "variants, and emits each variant's self-contained CUDA source, or its\n"
    "PTX/CUBIN compiled through NVRTC (no GPU needed). The spec format is\n"
    "described in docs/spec.md.\n"
    "\n"
    "options:\n"
    "  --emit=KIND[,KIND...]  what to produce (default: cuda):\n"
    "      cuda      one CUDA source per variant: DIR/<kernel>.cu, or all of\n"
    "                them on stdout, each after a '// ===== jsdpa-gen: ...' line\n"
    "      list      one line per variant: its kernel name and parameters\n"
    "                (DIR/variants.txt with -o)\n"
    "      manifest  a JSON index: generator version; per variant its name,\n"
    "                parameters, tile, sha256 of its source, spec file:line\n"
    "                (DIR/manifest.json with -o)\n"
    "      ptx       PTX per variant from NVRTC: DIR/<kernel>.ptx, or stdout\n"
    "      cubin     CUBIN per variant from NVRTC: DIR/<kernel>.cubin (needs -o)\n"
    "  -o DIR                 write the outputs into DIR (created if missing);\n"
    "                         several kinds at once need -o\n"
    "  -j N                   NVRTC compiles in parallel (default: online CPUs)\n"
    "  --nvrtc-option=OPT     pass OPT to NVRTC after the generator's own options\n"
    "                         (e.g. -lineinfo); repeatable\n"
    "  --cache[=DIR]          with --emit=cubin: also publish every CUBIN into the\n"
    "                         runtime's kernel cache (DIR, else $JSDPA_CACHE_DIR,\n"
    "                         else $XDG_CACHE_HOME/jsdpa, else ~/.cache/jsdpa), keyed\n"
    "                         exactly as libjsdpa's JIT looks them up, so a deployed\n"
    "                         process starts warm. Not with --nvrtc-option.\n"
    "  -h, --help             print this help and exit\n"
    "  --version              print the generator version and exit\n"
    "\n"
    "Diagnostics go to stderr as FILE:LINE:COL: error: MESSAGE with the source\n"
    "line and a caret; every error in every file is reported. Output is\n"
    "deterministic: the same specs give the same bytes.\n"
    "\n"
    "exit status: 0 success; 1 spec, compile or I/O errors (no output file is\n"
    "written); 2 usage errors.\n";

static int usage_error(const char* format, const char* arg) {
  fprintf(stderr, "jsdpa-gen: error: ");
  fprintf(stderr, format, arg);
  fprintf(stderr, "\n(run 'jsdpa-gen --help' for usage)\n");
  return EXIT_USAGE;
}

/* ------------------------------------------------------------ inputs */

static char* read_stream(FILE* f, size_t* out_length) {
  size_t capacity = 1 << 14, length = 0;
  char* data = malloc(capacity);
  if (!data) abort();
  size_t n;
  while ((n = fread(data + length, 1, capacity - length - 1, f)) > 0) {
    length += n;
    if (capacity - length - 1 == 0) {
      capacity *= 2;
      data = realloc(data, capacity);
      if (!data) abort();
    }
  }
  if (ferror(f)) {
    free(data);
    return NULL;
  }
  data[length] = '\0';
  *out_length = length;
  return data;
}

/* ------------------------------------------------------------ outputs */

/* One output file (or one stdout section), fully built in memory. */
typedef struct artifact_s {
  char* file_name; /* under -o DIR */
  char* banner;    /* stdout: the separator line before it, or NULL */
  void* data;
  size_t size;
} artifact_t;

typedef struct artifacts_s {
  artifact_t* items;
  size_t count;
} artifacts_t;

static char* xstrdup_printf(const char* format, ...) __attribute__((format(printf, 1, 2)));
static char* xstrdup_printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  char* s = NULL;
  if (vasprintf(&s, format, args) < 0) abort();
  va_end(args);
  return s;
}

static void artifacts_add(artifacts_t* a, char* file_name, char* banner, void* data, size_t size) {
  a->items = realloc(a->items, (a->count + 1) * sizeof(*a->items));
  if (!a->items) abort();
  a->items[a->count++] = (artifact_t){file_name, banner, data, size};
}

static void artifacts_free(artifacts_t* a) {
  for (size_t i = 0; i < a->count; ++i) {
    free(a->items[i].file_name);
    free(a->items[i].banner);
    free(a->items[i].data);
  }
  free(a->items);
}

/* Writes every artifact to a temporary name first, then renames them all: a
 * failure part-way leaves no output file (the temporaries are removed). */
static bool write_outputs(const char* dir, const artifacts_t* a) {
  int err = jsdpa_make_dirs(dir);
  if (err) {
    fprintf(stderr, "jsdpa-gen: error: cannot create output directory '%s': %s\n", dir,
            strerror(err));
    return false;
  }
  char** temps = calloc(a->count + 1, sizeof(*temps));
  if (!temps) abort();
  bool ok = true;
  size_t made = 0;
  for (; ok && made < a->count; ++made) {
    temps[made] = xstrdup_printf("%s/.%s.tmp%ld", dir, a->items[made].file_name, (long)getpid());
    int fd = open(temps[made], O_WRONLY | O_CREAT | O_TRUNC, 0666);
    ok = fd >= 0 && jsdpa_write_all(fd, a->items[made].data, a->items[made].size);
    if (fd >= 0 && close(fd) != 0) ok = false;
    if (!ok)
      fprintf(stderr, "jsdpa-gen: error: cannot write '%s': %s\n", temps[made], strerror(errno));
  }
  for (size_t i = 0; ok && i < a->count; ++i) {
    char* final_path = xstrdup_printf("%s/%s", dir, a->items[i].file_name);
    if (rename(temps[i], final_path) != 0) {
      fprintf(stderr, "jsdpa-gen: error: cannot rename '%s' to '%s': %s\n", temps[i], final_path,
              strerror(errno));
      ok = false;
    }
    free(final_path);
    free(temps[i]);
    temps[i] = NULL;
  }
  for (size_t i = 0; i < made; ++i) {
    if (temps[i]) unlink(temps[i]);
    free(temps[i]);
  }
  free(temps);
  return ok;
}

static bool write_stdout(const artifacts_t* a) {
  for (size_t i = 0; i < a->count; ++i) {
    if (a->items[i].banner) fputs(a->items[i].banner, stdout);
    fwrite(a->items[i].data, 1, a->items[i].size, stdout);
  }
  return fflush(stdout) == 0 && !ferror(stdout);
}

/* ------------------------------------------------------------ per variant */

typedef struct kernel_s {
  const jsdpa_gen_variant_t* variant;
  char name[160];
  char* source;
  size_t source_length;
  char sha256[65];
  /* NVRTC results, one per compiled kind */
  void* image;
  size_t image_size;
  jsdpa_status_t status;
  jsdpa_cache_key_t cache_key; /* the runtime's key for this source (--cache) */
} kernel_t;

typedef struct compile_job_s {
  kernel_t* kernels;
  size_t count;
  bool want_ptx;
  const char* const* extra_options; /* --nvrtc-option, appended after the generator's */
  int extra_count;
  bool for_cache; /* compile with the runtime's options and record its cache key */
  size_t next;
  pthread_mutex_t lock;
} compile_job_t;

static void* compile_worker(void* arg) {
  compile_job_t* job = arg;
  for (;;) {
    pthread_mutex_lock(&job->lock);
    size_t i = job->next++;
    pthread_mutex_unlock(&job->lock);
    if (i >= job->count) return NULL;
    kernel_t* k = &job->kernels[i];
    if (job->for_cache) {
      /* The JIT's own setup (cache.c), so the key and options match a lookup. */
      jsdpa_cache_compile_t setup;
      const char* reason = NULL;
      if (!jsdpa_cache_compile_setup(k->variant->arch, k->source, k->source_length, &setup,
                                     &reason)) {
        k->status = jsdpa_nvrtc_compile(k->name, k->source, NULL, 0, false, &k->image,
                                        &k->image_size, NULL); /* reports NVRTC missing */
        continue;
      }
      k->cache_key = setup.key;
      k->status = jsdpa_nvrtc_compile(k->name, k->source, setup.options, setup.num_options, false,
                                      &k->image, &k->image_size, NULL);
      continue;
    }
    const char* options[64];
    char storage[64];
    int n = jsdpa_gen_compile_options(k->variant->arch, options, 8, storage, sizeof(storage));
    for (int e = 0; e < job->extra_count; ++e) options[n++] = job->extra_options[e];
    k->status = jsdpa_nvrtc_compile(k->name, k->source, options, n, job->want_ptx, &k->image,
                                    &k->image_size, NULL);
  }
}

/* Compiles every kernel with `jobs` threads; reports failures in variant order
 * (so the output does not depend on thread timing). */
static bool compile_all(kernel_t* kernels, size_t count, bool want_ptx,
                        const char* const* extra_options, int extra_count, bool for_cache, int jobs,
                        jsdpa_gen_diags_t* diags) {
  compile_job_t job = {kernels,     count,     want_ptx, extra_options,
                       extra_count, for_cache, 0,        PTHREAD_MUTEX_INITIALIZER};
  if (jobs < 1) jobs = 1;
  if ((size_t)jobs > count) jobs = count ? (int)count : 1;
  pthread_t* threads = calloc((size_t)jobs, sizeof(*threads));
  if (!threads) abort();
  int started = 0;
  for (; started < jobs - 1; ++started)
    if (pthread_create(&threads[started], NULL, compile_worker, &job) != 0) break;
  compile_worker(&job);
  for (int t = 0; t < started; ++t) pthread_join(threads[t], NULL);
  free(threads);
  bool ok = true;
  for (size_t i = 0; i < count; ++i)
    if (kernels[i].status) {
      char arch[16];
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, kernels[i].variant->loc,
                     "cannot compile kernel '%s' for %s", kernels[i].name,
                     jsdpa_gen_arch_name(kernels[i].variant->arch, arch, sizeof(arch)));
      jsdpa_gen_diag(diags, JSDPA_GEN_NOTE, (jsdpa_gen_loc_t){0}, "%s",
                     jsdpa_status_message(kernels[i].status));
      jsdpa_status_free(kernels[i].status);
      kernels[i].status = NULL;
      ok = false;
    }
  return ok;
}

/* Publishes every compiled CUBIN into the kernel cache (after all compiled, so
 * a failing spec publishes nothing). */
static bool publish_to_cache(const char* dir_option, const kernel_t* kernels, size_t count) {
  char* dir = jsdpa_cache_resolve_dir(dir_option);
  if (!dir) {
    fprintf(stderr,
            "jsdpa-gen: error: --cache: no cache directory (set JSDPA_CACHE_DIR or HOME)\n");
    return false;
  }
  jsdpa_cache_t* cache = NULL;
  jsdpa_status_t s = jsdpa_cache_open(dir, &cache);
  bool ok = !s && jsdpa_cache_dir(cache);
  if (s)
    fprintf(stderr, "jsdpa-gen: error: --cache: %s\n", jsdpa_status_message(s));
  else if (!ok)
    fprintf(stderr, "jsdpa-gen: error: --cache: '%s' is not usable\n", dir);
  jsdpa_status_free(s);
  for (size_t i = 0; ok && i < count; ++i) {
    ok = jsdpa_cache_disk_store(cache, &kernels[i].cache_key, kernels[i].image,
                                kernels[i].image_size);
    if (!ok)
      fprintf(stderr, "jsdpa-gen: error: --cache: cannot store '%s' in '%s'\n", kernels[i].name,
              dir);
  }
  if (ok) fprintf(stderr, "jsdpa-gen: published %zu kernels to the cache in %s\n", count, dir);
  if (cache) jsdpa_cache_destroy(cache);
  free(dir);
  return ok;
}

/* ------------------------------------------------------------ list, manifest */

static void json_string(FILE* f, const char* s) {
  fputc('"', f);
  for (; *s; ++s) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static char* format_list(const kernel_t* kernels, size_t count, size_t* out_size) {
  char* text = NULL;
  FILE* f = open_memstream(&text, out_size);
  if (!f) abort();
  for (size_t i = 0; i < count; ++i) {
    const jsdpa_gen_variant_t* v = kernels[i].variant;
    char arch[16];
    fprintf(f,
            "%s family=%s arch=%s dtype=%s head_dim=%d head_dim_v=%d causal=%s%s block_m=%d "
            "block_n=%d warps=%d stages=%d\n",
            kernels[i].name, jsdpa_gen_family_name(v->family),
            jsdpa_gen_arch_name(v->arch, arch, sizeof(arch)), jsdpa_gen_dtype_name(v->dtype),
            v->head_dim, v->head_dim_v, v->causal ? "true" : "false", v->tf32 ? " tf32=true" : "",
            v->tile.block_m, v->tile.block_n, v->tile.warps, v->tile.stages);
  }
  fclose(f);
  return text;
}

static char* format_manifest(const kernel_t* kernels, size_t count, size_t* out_size) {
  char* text = NULL;
  FILE* f = open_memstream(&text, out_size);
  if (!f) abort();
  fprintf(f, "{\n  \"generator\": \"jsdpa-gen\",\n  \"version\": \"%s\",\n  \"kernels\": [",
          JSDPA_GEN_VERSION);
  for (size_t i = 0; i < count; ++i) {
    const jsdpa_gen_variant_t* v = kernels[i].variant;
    char arch[16];
    fprintf(f,
            "%s\n    {\"name\": \"%s\", \"family\": \"%s\", \"arch\": \"%s\", \"dtype\": \"%s\", ",
            i ? "," : "", kernels[i].name, jsdpa_gen_family_name(v->family),
            jsdpa_gen_arch_name(v->arch, arch, sizeof(arch)), jsdpa_gen_dtype_name(v->dtype));
    fprintf(f, "\"head_dim\": %d, \"head_dim_v\": %d, \"causal\": %s, \"tf32\": %s,\n", v->head_dim,
            v->head_dim_v, v->causal ? "true" : "false", v->tf32 ? "true" : "false");
    fprintf(f,
            "     \"tile\": {\"block_m\": %d, \"block_n\": %d, \"warps\": %d, \"stages\": %d}, "
            "\"template\": \"%s\",\n",
            v->tile.block_m, v->tile.block_n, v->tile.warps, v->tile.stages,
            jsdpa_gen_template_name(v));
    fprintf(f, "     \"sha256\": \"%s\", \"spec\": ", kernels[i].sha256);
    char* where = xstrdup_printf("%s:%d", v->loc.file, v->loc.line);
    json_string(f, where);
    free(where);
    fputc('}', f);
  }
  fprintf(f, "\n  ]\n}\n");
  fclose(f);
  return text;
}

/* ------------------------------------------------------------ arguments */

typedef struct cli_s {
  unsigned emit; /* emit_kind_t bits */
  const char* out_dir;
  long jobs;
  const char** files;
  int file_count;
  const char* nvrtc_options[48];
  int nvrtc_option_count;
  bool cache;            /* --cache */
  const char* cache_dir; /* --cache=DIR, or NULL for the default chain */
} cli_t;

/* Fills *cli; returns -1 to go on, else the exit status (after --help or a
 * usage error). */
static int parse_args(int argc, char** argv, cli_t* cli) {
  bool options_done = false, stdin_used = false;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (options_done || arg[0] != '-' || !strcmp(arg, "-")) {
      if (!strcmp(arg, "-")) {
        if (stdin_used) return usage_error("standard input ('-') given twice%s", "");
        stdin_used = true;
      }
      cli->files[cli->file_count++] = arg;
    } else if (!strcmp(arg, "--")) {
      options_done = true;
    } else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (!strcmp(arg, "--version")) {
      printf("jsdpa-gen %s\n", JSDPA_GEN_VERSION);
      return 0;
    } else if (!strncmp(arg, "--emit=", 7)) {
      const char* s = arg + 7;
      for (;;) {
        size_t n = strcspn(s, ",");
        size_t k = 0;
        while (k < sizeof(emit_kinds) / sizeof(emit_kinds[0]) &&
               (strlen(emit_kinds[k].name) != n || strncmp(emit_kinds[k].name, s, n)))
          ++k;
        if (k == sizeof(emit_kinds) / sizeof(emit_kinds[0]))
          return usage_error(
              "unknown --emit kind in '%s' (valid: cuda, list, manifest, ptx, cubin)", arg);
        cli->emit |= emit_kinds[k].kind;
        if (!s[n]) break;
        s += n + 1;
      }
    } else if (!strncmp(arg, "--nvrtc-option=", 15)) {
      if (cli->nvrtc_option_count == (int)(sizeof(cli->nvrtc_options) / sizeof(char*)))
        return usage_error("too many --nvrtc-option flags (at most 48): '%s'", arg);
      cli->nvrtc_options[cli->nvrtc_option_count++] = arg + 15;
    } else if (!strcmp(arg, "--cache") || !strncmp(arg, "--cache=", 8)) {
      cli->cache = true;
      cli->cache_dir = arg[7] == '=' ? arg + 8 : NULL;
      if (cli->cache_dir && !*cli->cache_dir)
        return usage_error("'--cache=' needs a directory%s", "");
    } else if (!strncmp(arg, "-o", 2)) {
      const char* value = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!value || !*value) return usage_error("'-o' needs a directory%s", "");
      cli->out_dir = value;
    } else if (!strncmp(arg, "-j", 2)) {
      const char* value = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
      char* end = NULL;
      cli->jobs = value ? strtol(value, &end, 10) : 0;
      if (!value || *end || cli->jobs < 1 || cli->jobs > 1024)
        return usage_error("'-j' needs a number of jobs between 1 and 1024, got '%s'",
                           value ? value : "");
    } else {
      return usage_error("unknown option '%s'", arg);
    }
  }
  if (!cli->emit) cli->emit = EMIT_CUDA;
  if (cli->file_count == 0) return usage_error("no input files%s", "");
  if ((cli->emit & EMIT_CUBIN) && !cli->out_dir)
    return usage_error("--emit=cubin needs -o DIR%s", "");
  if (cli->cache && !(cli->emit & EMIT_CUBIN))
    return usage_error("--cache publishes CUBINs: it needs --emit=cubin%s", "");
  if (cli->cache && cli->nvrtc_option_count)
    return usage_error(
        "--cache cannot be combined with --nvrtc-option (the runtime would never look up "
        "kernels compiled with other options)%s",
        "");
  if ((cli->emit & (cli->emit - 1)) && !cli->out_dir)
    return usage_error("several --emit kinds at once need -o DIR%s", "");
  return -1;
}

/* ------------------------------------------------------------ main */

static int generate(const cli_t* cli) {
  /* Read and validate every spec: all errors of all files, then stop. */
  jsdpa_gen_diags_t* diags = jsdpa_gen_diags_create(stderr);
  jsdpa_gen_variant_list_t variants = {0};
  char** texts = calloc((size_t)cli->file_count, sizeof(*texts));
  if (!texts) abort();
  bool ok = true;
  for (int i = 0; i < cli->file_count; ++i) {
    bool is_stdin = !strcmp(cli->files[i], "-");
    const char* name = is_stdin ? "<stdin>" : cli->files[i];
    FILE* f = is_stdin ? stdin : fopen(cli->files[i], "rb");
    size_t length = 0;
    texts[i] = f ? read_stream(f, &length) : NULL;
    if (f && !is_stdin) fclose(f);
    if (!texts[i]) {
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, (jsdpa_gen_loc_t){name, 0, 0}, "cannot read: %s",
                     strerror(errno));
      ok = false;
      continue;
    }
    ok &= jsdpa_gen_load_spec(name, texts[i], length, diags, &variants);
  }

  /* Emit every source (and hash it) in memory. */
  kernel_t* kernels = calloc(variants.count + 1, sizeof(*kernels));
  if (!kernels) abort();
  for (size_t i = 0; ok && i < variants.count; ++i) {
    kernel_t* k = &kernels[i];
    k->variant = &variants.items[i];
    jsdpa_gen_kernel_name(k->variant, k->name, sizeof(k->name));
    char why[512];
    k->source = jsdpa_gen_emit_source(k->variant, &k->source_length, why, sizeof(why));
    if (!k->source) {
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, k->variant->loc, "cannot emit '%s': %s", k->name, why);
      ok = false;
      continue;
    }
    jsdpa_gen_sha256_hex(k->source, k->source_length, k->sha256);
  }

  artifacts_t out = {0};
  if (ok && (cli->emit & EMIT_CUDA))
    for (size_t i = 0; i < variants.count; ++i)
      artifacts_add(&out, xstrdup_printf("%s.cu", kernels[i].name),
                    xstrdup_printf("// ===== jsdpa-gen: %s.cu =====\n", kernels[i].name),
                    xstrdup_printf("%s", kernels[i].source), kernels[i].source_length);
  if (ok && (cli->emit & EMIT_LIST)) {
    size_t size = 0;
    char* text = format_list(kernels, variants.count, &size);
    artifacts_add(&out, xstrdup_printf("variants.txt"), NULL, text, size);
  }
  if (ok && (cli->emit & EMIT_MANIFEST)) {
    size_t size = 0;
    char* text = format_manifest(kernels, variants.count, &size);
    artifacts_add(&out, xstrdup_printf("manifest.json"), NULL, text, size);
  }
  for (int pass = 0; pass < 2; ++pass) {
    bool want_ptx = pass == 0;
    if (!ok || !(cli->emit & (want_ptx ? EMIT_PTX : EMIT_CUBIN))) continue;
    ok = compile_all(kernels, variants.count, want_ptx, cli->nvrtc_options, cli->nvrtc_option_count,
                     !want_ptx && cli->cache, (int)cli->jobs, diags);
    if (ok && !want_ptx && cli->cache)
      ok = publish_to_cache(cli->cache_dir, kernels, variants.count);
    for (size_t i = 0; i < variants.count; ++i) {
      kernel_t* k = &kernels[i];
      if (ok) {
        /* NVRTC's PTX size counts its terminating NUL; the file should not. */
        size_t size = want_ptx && k->image_size ? k->image_size - 1 : k->image_size;
        artifacts_add(&out, xstrdup_printf("%s.%s", k->name, want_ptx ? "ptx" : "cubin"),
                      xstrdup_printf("// ===== jsdpa-gen: %s.ptx =====\n", k->name), k->image,
                      size);
      } else {
        free(k->image);
      }
      k->image = NULL;
    }
  }

  if (ok) ok = cli->out_dir ? write_outputs(cli->out_dir, &out) : write_stdout(&out);

  artifacts_free(&out);
  for (size_t i = 0; i < variants.count; ++i) free(kernels[i].source);
  free(kernels);
  jsdpa_gen_variant_list_free(&variants);
  for (int i = 0; i < cli->file_count; ++i) free(texts[i]);
  free(texts);
  jsdpa_gen_diags_destroy(diags);
  return ok ? 0 : EXIT_SPEC_ERROR;
}

int main(int argc, char** argv) {
  cli_t cli = {.jobs = sysconf(_SC_NPROCESSORS_ONLN)};
  cli.files = calloc((size_t)argc, sizeof(*cli.files));
  if (!cli.files) abort();
  int status = parse_args(argc, argv, &cli);
  if (status < 0) status = generate(&cli);
  free(cli.files);
  return status;
}
