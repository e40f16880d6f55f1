/* Variant -> CUDA source: a header comment, the generated config prelude (one
 * #define per specialization constant), then the embedded files verbatim:
 * jsdpa_abi.h, common.cuh, mma.cuh (tiled families) and the family template.
 * The result includes nothing, so NVRTC compiles it as is, and it depends only
 * on the variant and the generator version: the runtime's JIT and jsdpa-gen
 * produce the same bytes, and the kernel cache can key on them. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jsdpa_gen.h"

typedef struct jsdpa_gen_text_s {
  char* data;
  size_t length;
  size_t capacity;
} jsdpa_gen_text_t;

static void text_append(jsdpa_gen_text_t* t, const char* s, size_t n) {
  if (t->length + n + 1 > t->capacity) {
    size_t cap = t->capacity ? t->capacity : 4096;
    while (cap < t->length + n + 1) cap *= 2;
    t->data = realloc(t->data, cap);
    if (!t->data) abort();
    t->capacity = cap;
  }
  memcpy(t->data + t->length, s, n);
  t->length += n;
  t->data[t->length] = '\0';
}

static void text_printf(jsdpa_gen_text_t* t, const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void text_printf(jsdpa_gen_text_t* t, const char* format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (n <= 0) return;
  char* line = malloc((size_t)n + 1);
  if (!line) abort();
  va_start(args, format);
  vsnprintf(line, (size_t)n + 1, format, args);
  va_end(args);
  text_append(t, line, (size_t)n);
  free(line);
}

/* ------------------------------------------------------------ generated parts */

/* " {%first, ..., %last}" or "\"+f\"(d[0]), ..." lists, 8 per line. */
static void operand_list(jsdpa_gen_text_t* t, int first, int count, bool outputs) {
  for (int i = 0; i < count; ++i) {
    if (outputs)
      text_printf(t, "%s\"+f\"(d[%d])", i == 0 ? "" : i % 8 ? ", " : ",\n          ", i);
    else
      text_printf(t, "%s%%%d", i == 0 ? "" : i % 8 ? ", " : ", \"\n        \"", first + i);
  }
}

/* The wgmma wrappers of templates/flash_sm90.cu: one asm statement per
 * (N, operand source) must name each of its N / 2 accumulator registers, so
 * the generator writes them instead of a person: gemm<N>::ss (A and B from
 * shared memory) and gemm<N>::rs (A from registers), each overwriting D when
 * acc == 0. 16-bit inputs: m64nNk16, rs reading B transposed (N-major); fp32
 * inputs: tf32 m64nNk8, both operands K-major (tf32 has no transposed form).
 * Both sets are emitted, each under its dtype's #if. */
static void emit_wgmma_set(jsdpa_gen_text_t* t, const int* widths, size_t count, const char* kind,
                           const char* ab, const char* ss_tail, const char* rs_tail) {
  for (size_t w = 0; w < count; ++w) {
    const int n = widths[w], r = n / 2;
    text_printf(t, "template <>\nstruct gemm<%d> {\n", n);
    text_printf(
        t,
        "  static __device__ __forceinline__ void ss(float (&d)[%d], u64 a, u64 b, int acc) "
        "{\n    asm volatile(\n        \"{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n\"\n"
        "        \"wgmma.mma_async.sync.aligned.m64n%d%s.f32\" %s\n        \" {",
        r, r + 2, n, kind, ab);
    operand_list(t, 0, r, false);
    text_printf(t, "}, %%%d, %%%d, p, %s;\\n}\\n\"\n        : ", r, r + 1, ss_tail);
    operand_list(t, 0, r, true);
    text_printf(t, "\n        : \"l\"(a), \"l\"(b), \"r\"(acc));\n  }\n");
    text_printf(
        t,
        "  static __device__ __forceinline__ void rs(float (&d)[%d], const u32 (&a)[4], u64 b, "
        "int acc) {\n    asm volatile(\n"
        "        \"{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n\"\n"
        "        \"wgmma.mma_async.sync.aligned.m64n%d%s.f32\" %s\n        \" {",
        r, r + 5, n, kind, ab);
    operand_list(t, 0, r, false);
    text_printf(t, "}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, %s;\\n}\\n\"\n        : ", r, r + 1,
                r + 2, r + 3, r + 4, rs_tail);
    operand_list(t, 0, r, true);
    text_printf(t,
                "\n        : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"l\"(b), "
                "\"r\"(acc));\n  }\n};\n");
  }
}

static void emit_wgmma_gemms(jsdpa_gen_text_t* t) {
  static const int half[] = {64, 72, 80, 128, 192, 256}, tf32[] = {32, 64};
  text_printf(t, "#if defined(JSDPA_DTYPE_FP32)\n");
  emit_wgmma_set(t, tf32, sizeof(tf32) / sizeof(tf32[0]), "k8", "\".tf32.tf32\"", "1, 1", "1, 1");
  text_printf(t, "#else\n");
  emit_wgmma_set(t, half, sizeof(half) / sizeof(half[0]), "k16", "JSDPA_SM90_AB", "1, 1, 0, 0",
                 "1, 1, 1");
  text_printf(t, "#endif\n");
}

/* Holes a template leaves for the generator: a line holding exactly the
 * marker is replaced by the generated text. */
static const struct {
  const char* marker;
  void (*emit)(jsdpa_gen_text_t* t);
} generated_parts[] = {
    {"/* @jsdpa-gen: wgmma gemm<N> wrappers */", emit_wgmma_gemms},
};

static const char* find(const char* data, size_t length, const char* what) {
  const size_t n = strlen(what);
  for (size_t i = 0; i + n <= length; ++i)
    if (data[i] == what[0] && memcmp(data + i, what, n) == 0) return data + i;
  return NULL;
}

/* Appends templates/<name> under a banner, so a compile error's line can be
 * traced back to its template, filling the generator's holes. False if it is
 * not embedded in this build. */
static bool append_template(jsdpa_gen_text_t* t, const char* name) {
  size_t length = 0;
  const char* data = jsdpa_gen_template(name, &length);
  if (!data) return false;
  text_printf(t, "\n/* ---------------- templates/%s ---------------- */\n", name);
  for (size_t g = 0; g < sizeof(generated_parts) / sizeof(generated_parts[0]); ++g) {
    const char* hole = find(data, length, generated_parts[g].marker);
    if (!hole) continue;
    const char* after = hole + strlen(generated_parts[g].marker);
    text_append(t, data, (size_t)(hole - data));
    text_printf(t, "/* ---- generated by jsdpa-gen (gen/emit.c) ---- */\n");
    generated_parts[g].emit(t);
    text_printf(t, "/* ---- end of generated part ---- */");
    length -= (size_t)(after - data);
    data = after;
  }
  text_append(t, data, length);
  if (length && data[length - 1] != '\n') text_append(t, "\n", 1);
  return true;
}

static void set_why(char* why, size_t capacity, const char* format, const char* name) {
  if (capacity) snprintf(why, capacity, format, name);
}

char* jsdpa_gen_emit_source(const jsdpa_gen_variant_t* v, size_t* out_length, char* why,
                            size_t why_capacity) {
  if (out_length) *out_length = 0;
  if (!jsdpa_gen_variant_check(v, why, why_capacity)) return NULL;
  const char* template_name = jsdpa_gen_template_name(v);
  static const char* const family_macro[JSDPA_GEN_FAMILY_COUNT] = {
      "JSDPA_FAMILY_FLASH", "JSDPA_FAMILY_EFFICIENT", "JSDPA_FAMILY_MATH"};
  static const char* const dtype_macro[JSDPA_GEN_DTYPE_COUNT] = {
      "JSDPA_DTYPE_FP16", "JSDPA_DTYPE_BF16", "JSDPA_DTYPE_FP32"};
  char name[160], arch[16];
  jsdpa_gen_kernel_name(v, name, sizeof(name));
  jsdpa_gen_arch_name(v->arch, arch, sizeof(arch));

  jsdpa_gen_text_t t = {0};
  text_printf(&t,
              "/*\n"
              " * %s\n"
              " * Generated by jsdpa-gen %s from templates/%s. Do not edit.\n"
              " * family %s, arch %s, dtype %s, head_dim %d, head_dim_v %d, causal %s,\n"
              " * tile block_m %d, block_n %d, warps %d, stages %d\n"
              " */\n",
              name, JSDPA_GEN_VERSION, template_name, jsdpa_gen_family_name(v->family), arch,
              jsdpa_gen_dtype_name(v->dtype), v->head_dim, v->head_dim_v,
              v->causal ? "true" : "false", v->tile.block_m, v->tile.block_n, v->tile.warps,
              v->tile.stages);
  text_printf(&t, "\n/* ---------------- generated config prelude ---------------- */\n");
  text_printf(&t, "#define JSDPA_KERNEL_NAME %s\n", name);
  text_printf(&t, "#define %s 1\n", family_macro[v->family]);
  text_printf(&t, "#define JSDPA_ARCH %d\n", v->arch.sm);
  text_printf(&t, "#define JSDPA_ARCH_SPECIFIC %d\n", v->arch.arch_specific ? 1 : 0);
  text_printf(&t, "#define %s 1\n", dtype_macro[v->dtype]);
  text_printf(&t, "#define JSDPA_HEAD_DIM %d\n", v->head_dim);
  text_printf(&t, "#define JSDPA_HEAD_DIM_V %d\n", v->head_dim_v);
  text_printf(&t, "#define JSDPA_CAUSAL %d\n", v->causal ? 1 : 0);
  /* Only when set: every other variant's source (and cache key) stays as it was. */
  if (v->tf32) text_printf(&t, "#define JSDPA_TF32 1\n");
  text_printf(&t, "#define JSDPA_BLOCK_M %d\n", v->tile.block_m);
  text_printf(&t, "#define JSDPA_BLOCK_N %d\n", v->tile.block_n);
  text_printf(&t, "#define JSDPA_WARPS %d\n", v->tile.warps);
  text_printf(&t, "#define JSDPA_STAGES %d\n", v->tile.stages);
  /* The Hopper template's chunk boxes: the runtime encodes their tensor maps
   * with the same constant (backend_flash.c), so the two cannot disagree. */
  if (jsdpa_gen_uses_flash_sm90(v)) {
    text_printf(&t, "#define JSDPA_SM90_CHUNK %d\n", JSDPA_GEN_FLASH_SM90_CHUNK);
    text_printf(&t, "#define JSDPA_SM90_BLOCKS %d\n", jsdpa_gen_sm90_blocks_per_sm(v));
    text_printf(&t, "#define JSDPA_SM90_SMEM_BUDGET %lld\n",
                (long long)jsdpa_gen_sm90_smem_budget(v));
  }

  /* The tiled families (sm_80+) share the tensor-core primitives of mma.cuh;
   * the math family also runs on sm_70, where they do not assemble. */
  const bool tiled = v->family != JSDPA_GEN_FAMILY_MATH;
  const char* const parts[] = {"jsdpa_abi.h", "common.cuh", tiled ? "mma.cuh" : NULL,
                               template_name};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); ++i)
    if (parts[i] && !append_template(&t, parts[i])) {
      set_why(why, why_capacity, "templates/%s is not embedded in this build", parts[i]);
      free(t.data);
      return NULL;
    }
  if (out_length) *out_length = t.length;
  return t.data;
}

char* jsdpa_gen_emit_prep_source(size_t* out_length) {
  if (out_length) *out_length = 0;
  if (!jsdpa_gen_template("prep.cu", NULL) || !jsdpa_gen_template("jsdpa_abi.h", NULL)) return NULL;
  jsdpa_gen_text_t t = {0};
  text_printf(&t,
              "/*\n"
              " * jsdpa_prep: the jagged preprocessing kernel.\n"
              " * Generated by jsdpa-gen %s from templates/prep.cu. Do not edit.\n"
              " */\n",
              JSDPA_GEN_VERSION);
  append_template(&t, "jsdpa_abi.h");
  append_template(&t, "prep.cu");
  if (out_length) *out_length = t.length;
  return t.data;
}

int jsdpa_gen_compile_options(jsdpa_gen_arch_t arch, const char** out_options, int capacity,
                              char* storage, size_t storage_capacity) {
  /* Only what the templates need: the exact arch (the 'a' suffix unlocks
   * wgmma/setmaxnreg on sm_90a) and C++17. No --use_fast_math: the kernels
   * choose their fast intrinsics (ex2.approx) explicitly, and nothing else
   * should trade accuracy away silently. */
  char arch_name[16];
  snprintf(storage, storage_capacity, "--gpu-architecture=%s",
           jsdpa_gen_arch_name(arch, arch_name, sizeof(arch_name)));
  const char* options[] = {storage, "--std=c++17"};
  int n = 0;
  for (; n < capacity && n < (int)(sizeof(options) / sizeof(options[0])); ++n)
    out_options[n] = options[n];
  return n;
}
