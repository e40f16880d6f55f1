/*
 * jsdpa_gen.h — the code generator as a library (pure C, no CUDA).
 *
 * Pipeline, one file per stage:
 *   gen/diag.c     diagnostics: FILE:LINE:COL: error: MESSAGE + source line + caret
 *   gen/spec.c     YAML (libyaml document API) -> typed spec (jsdpa_gen_spec_t)
 *   gen/variant.c  spec -> variants (cross product), defaults, per-family validation, names
 *   gen/emit.c     variant -> CUDA source (generated config prelude + embedded template)
 *   gen/hash.c     SHA-256 (OpenSSL libcrypto) for manifests and the runtime's cache keys
 *
 * Used by tools/jsdpa-gen.c and by the runtime's JIT (runtime/jit.c): one generator.
 * Nothing after gen/spec.c sees YAML; everything after it sees these structs.
 */
#ifndef JSDPA_GEN_H_
#define JSDPA_GEN_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JSDPA_GEN_VERSION "0.1.0"

/* ------------------------------------------------------------ typed values */

typedef enum jsdpa_gen_family_e {
  JSDPA_GEN_FAMILY_FLASH = 0,
  JSDPA_GEN_FAMILY_EFFICIENT = 1,
  JSDPA_GEN_FAMILY_MATH = 2,
  JSDPA_GEN_FAMILY_COUNT = 3,
} jsdpa_gen_family_t;

typedef enum jsdpa_gen_dtype_e {
  JSDPA_GEN_DTYPE_FP16 = 0,
  JSDPA_GEN_DTYPE_BF16 = 1,
  JSDPA_GEN_DTYPE_FP32 = 2,
  JSDPA_GEN_DTYPE_COUNT = 3,
} jsdpa_gen_dtype_t;

/* sm_80 -> {80, false}; sm_90a -> {90, true} (arch-specific features: wgmma, setmaxnreg). */
typedef struct jsdpa_gen_arch_s {
  int sm;
  bool arch_specific;
} jsdpa_gen_arch_t;

typedef struct jsdpa_gen_tile_s {
  int block_m; /* query rows per thread block (math: rows per block) */
  int block_n; /* keys per inner iteration */
  int warps;   /* warps per thread block */
  int stages;  /* K/V pipeline depth */
} jsdpa_gen_tile_t;

/* A location in a spec file (1-based; 0 = unknown). */
typedef struct jsdpa_gen_loc_s {
  const char* file;
  int line;
  int col;
} jsdpa_gen_loc_t;

/* One fully specified kernel: every field is a compile-time constant of its source. */
typedef struct jsdpa_gen_variant_s {
  jsdpa_gen_family_t family;
  jsdpa_gen_arch_t arch;
  jsdpa_gen_dtype_t dtype;
  int head_dim;   /* q/k head dim, exact (templates pad internally and predicate the tail) */
  int head_dim_v; /* v / output head dim */
  bool causal;
  /* fp32 only (efficient family): one TF32 tensor-core pass per product
   * instead of the three-pass (3xTF32) split. The caller opts in. */
  bool tf32;
  jsdpa_gen_tile_t tile; /* resolved: explicit from the spec or the family default */
  jsdpa_gen_loc_t loc;   /* the spec entry it came from (0s when built by the runtime) */
} jsdpa_gen_variant_t;

const char* jsdpa_gen_family_name(jsdpa_gen_family_t family); /* "flash" */
const char* jsdpa_gen_dtype_name(jsdpa_gen_dtype_t dtype);    /* "bf16" */
/* "sm_90a"; writes into buf (>= 16 bytes), returns buf. */
const char* jsdpa_gen_arch_name(jsdpa_gen_arch_t arch, char* buf, size_t capacity);
bool jsdpa_gen_parse_family(const char* text, jsdpa_gen_family_t* out);
bool jsdpa_gen_parse_dtype(const char* text, jsdpa_gen_dtype_t* out);
bool jsdpa_gen_parse_arch(const char* text, jsdpa_gen_arch_t* out);
/* "m64n32w4s2" (block_m, block_n, warps, stages: the tile part of a kernel
 * name) -> tile; false if text is not exactly that form. */
bool jsdpa_gen_parse_tile(const char* text, jsdpa_gen_tile_t* out);
/* The arches the spec language accepts, oldest first (for messages and docs). */
const jsdpa_gen_arch_t* jsdpa_gen_known_archs(size_t* out_count);

/* ------------------------------------------------------------ diagnostics */

typedef enum jsdpa_gen_severity_e {
  JSDPA_GEN_ERROR = 0,
  JSDPA_GEN_WARNING = 1,
  JSDPA_GEN_NOTE = 2,
} jsdpa_gen_severity_t;

/* Collects diagnostics for one or more source buffers; prints them GCC style. */
typedef struct jsdpa_gen_diags_s jsdpa_gen_diags_t;

jsdpa_gen_diags_t* jsdpa_gen_diags_create(FILE* sink /* NULL: collect only */);
void jsdpa_gen_diags_destroy(jsdpa_gen_diags_t* diags);
/* Registers the text of `file` so diagnostics can quote the source line. */
void jsdpa_gen_diags_add_source(jsdpa_gen_diags_t* diags, const char* file, const char* text,
                                size_t length);
void jsdpa_gen_diag(jsdpa_gen_diags_t* diags, jsdpa_gen_severity_t severity, jsdpa_gen_loc_t loc,
                    const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Holds the diagnostics reported from now on until the matching release, which
 * prints them sorted by position in their file (a note stays after the error it
 * annotates). jsdpa_gen_load_spec holds around its work, so one file's errors
 * read top to bottom although validation finds some after parsing. Nests. */
void jsdpa_gen_diags_hold(jsdpa_gen_diags_t* diags);
void jsdpa_gen_diags_release(jsdpa_gen_diags_t* diags);
int jsdpa_gen_diags_error_count(const jsdpa_gen_diags_t* diags);
/* All diagnostics so far, formatted, NUL-terminated (owned by diags). */
const char* jsdpa_gen_diags_text(const jsdpa_gen_diags_t* diags);

/* ------------------------------------------------------------ typed spec */

/* One value of an axis, with the location of its YAML node. */
typedef struct jsdpa_gen_value_s {
  jsdpa_gen_loc_t loc;
  union {
    jsdpa_gen_family_t family;
    jsdpa_gen_arch_t arch;
    jsdpa_gen_dtype_t dtype;
    int integer;
    bool boolean;
  };
} jsdpa_gen_value_t;

/* A key whose value was a scalar or a non-empty list; count == 0: key absent. */
typedef struct jsdpa_gen_axis_s {
  jsdpa_gen_loc_t loc; /* the key */
  jsdpa_gen_value_t* items;
  size_t count;
} jsdpa_gen_axis_t;

/* One element of `kernels:`, type-checked but not yet expanded or validated. */
typedef struct jsdpa_gen_spec_entry_s {
  jsdpa_gen_loc_t loc; /* the entry's mapping */
  jsdpa_gen_axis_t family, arch, dtype, head_dim, head_dim_v, causal, tf32;
  jsdpa_gen_axis_t block_m, block_n, warps, stages; /* under `tile:` */
  bool incomplete; /* a key or value had an error: validate what is there, emit nothing */
} jsdpa_gen_spec_entry_t;

typedef struct jsdpa_gen_spec_s {
  const char* file;
  jsdpa_gen_spec_entry_t* entries;
  size_t count;
} jsdpa_gen_spec_t;

/* gen/spec.c: YAML text -> typed spec. Reports every syntax, key and type error;
 * returns false if any was reported. Free with jsdpa_gen_spec_free either way. */
bool jsdpa_gen_parse_spec(const char* file, const char* text, size_t length,
                          jsdpa_gen_diags_t* diags, jsdpa_gen_spec_t* out);
void jsdpa_gen_spec_free(jsdpa_gen_spec_t* spec);

/* ------------------------------------------------------------ spec -> variants */

typedef struct jsdpa_gen_variant_list_s {
  jsdpa_gen_variant_t* items;
  size_t count;
  size_t capacity;
} jsdpa_gen_variant_list_t;

void jsdpa_gen_variant_list_free(jsdpa_gen_variant_list_t* list);

/*
 * Parses a spec file's text and appends its variants (expanded, defaulted,
 * validated, duplicates rejected) to `out`. `file` names the text in
 * diagnostics and must outlive `out` (locations point at it). Reports every
 * error it finds; returns false if any was reported (then nothing is appended).
 */
bool jsdpa_gen_load_spec(const char* file, const char* text, size_t length,
                         jsdpa_gen_diags_t* diags, jsdpa_gen_variant_list_t* out);

/* gen/variant.c: the second half of jsdpa_gen_load_spec (expand, default,
 * validate, reject duplicates, also against what `out` already holds). */
bool jsdpa_gen_expand_spec(const jsdpa_gen_spec_t* spec, jsdpa_gen_diags_t* diags,
                           jsdpa_gen_variant_list_t* out);

/* The family's default tile for (arch, dtype, head dims, causal). */
jsdpa_gen_tile_t jsdpa_gen_default_tile(jsdpa_gen_family_t family, jsdpa_gen_arch_t arch,
                                        jsdpa_gen_dtype_t dtype, int head_dim, int head_dim_v,
                                        bool causal);

/* Builds a variant with the default tile (what the runtime does per call). */
/* The Hopper template (templates/flash_sm90.cu) runs the flash family's tiles
 * of 12 or 16 warps: a producer warpgroup and two (block_m 128) or three
 * (block_m 192) consumer warpgroups of 64 query rows each, sm_90a only; the
 * flash tiles of 8 warps with block_m 64 (one consumer warpgroup, two or three
 * blocks per SM: the sm80 template gives a warp 16 or 32 rows, never 8); and
 * the efficient family's 12-warp tiles (fp16/bf16 head dims up to 512, fp32
 * 65..128 as 3xTF32): two consumer warpgroups on the same 64 rows, each with
 * half the head dim. */
#define JSDPA_GEN_FLASH_SM90_WARPS 12
#define JSDPA_GEN_FLASH_SM90_WARPS_3WG 16
#define JSDPA_GEN_FLASH_SM90_WARPS_1WG 8
/* How many blocks per SM a Hopper template tile is built for (its
 * __launch_bounds__ and register split): 1; for the 8-warp tiles 2, or 3 at
 * head dims up to 64 with block_n 64. And the shared memory a block may then
 * take: 228 KiB per SM shared by that many blocks, less each block's 1 KiB
 * reserve and static barriers (227, 112 or 74 KiB). Emitted into the
 * template as JSDPA_SM90_BLOCKS and JSDPA_SM90_SMEM_BUDGET. */
int jsdpa_gen_sm90_blocks_per_sm(const jsdpa_gen_variant_t* variant);
int64_t jsdpa_gen_sm90_smem_budget(const jsdpa_gen_variant_t* variant);
/* Whether the variant is instantiated from templates/flash_sm90.cu. */
bool jsdpa_gen_uses_flash_sm90(const jsdpa_gen_variant_t* variant);
/* Rows per box of the Hopper template's chunk tensor maps (tiles a sequence
 * ends in load in boxes this tall); emitted as JSDPA_SM90_CHUNK for it. */
#define JSDPA_GEN_FLASH_SM90_CHUNK 16

/* Static shared memory a tiled kernel may declare next to its dynamic tile
 * (the persistent loop's next-unit slots, aligned): tile budgets and the
 * runtime's fit checks keep it free, since static + dynamic must fit. */
#define JSDPA_GEN_STATIC_SMEM 1024

/* Dynamic shared memory of a tiled variant's kernel (0 for the math family). */
int64_t jsdpa_gen_smem_bytes(const jsdpa_gen_variant_t* variant);
/* Work units per (query tile, head) of the variant's kernel: the efficient
 * family's output slices when they are separate units, else 1. */
int64_t jsdpa_gen_work_slices(const jsdpa_gen_variant_t* variant);

jsdpa_gen_variant_t jsdpa_gen_variant_make(jsdpa_gen_family_t family, jsdpa_gen_arch_t arch,
                                           jsdpa_gen_dtype_t dtype, int head_dim, int head_dim_v,
                                           bool causal);

/* Whether the family's template supports the variant; if not, a one-line reason. */
bool jsdpa_gen_variant_check(const jsdpa_gen_variant_t* variant, char* why, size_t capacity);

/*
 * The kernel's entry name; encodes every specialization, e.g.
 * "jsdpa_flash_sm90a_bf16_d128_dv128_causal_m128n64w4s2". Returns the length.
 */
size_t jsdpa_gen_kernel_name(const jsdpa_gen_variant_t* variant, char* buf, size_t capacity);

/* ------------------------------------------------------------ emission */

/*
 * The complete, self-contained CUDA source of a variant (no #include of any
 * file: NVRTC compiles it as is). Deterministic: same variant, same bytes.
 * Returns a malloc'd NUL-terminated string (caller frees) or NULL on an
 * unsupported variant (then `why` says why).
 */
char* jsdpa_gen_emit_source(const jsdpa_gen_variant_t* variant, size_t* out_length, char* why,
                            size_t why_capacity);

/* The source of the jagged prep kernel (entry "jsdpa_prep"); caller frees. */
char* jsdpa_gen_emit_prep_source(size_t* out_length);

/* NVRTC options for a variant's arch, e.g. {"--gpu-architecture=sm_90a", "-default-device", ...}.
 * Returns the count written (<= capacity); the strings are static or in `storage`. */
int jsdpa_gen_compile_options(jsdpa_gen_arch_t arch, const char** out_options, int capacity,
                              char* storage, size_t storage_capacity);

/* ------------------------------------------------------------ templates */

/* The template file a variant instantiates ("math.cu"): chosen by family (and,
 * where a family has per-arch templates, by arch). Present or not in this build. */
const char* jsdpa_gen_template_name(const jsdpa_gen_variant_t* variant);

/* A file embedded at build time from templates/ (NULL if absent). */
const char* jsdpa_gen_template(const char* name, size_t* out_length);

/* ------------------------------------------------------------ hashing */

/* SHA-256 through OpenSSL's libcrypto. */
typedef struct jsdpa_gen_sha256_s {
  void* ctx;
} jsdpa_gen_sha256_t;
void jsdpa_gen_sha256_init(jsdpa_gen_sha256_t* h);
void jsdpa_gen_sha256_update(jsdpa_gen_sha256_t* h, const void* data, size_t length);
void jsdpa_gen_sha256_final(jsdpa_gen_sha256_t* h, uint8_t out[32]);
/* One-shot into 64 hex chars + NUL. */
void jsdpa_gen_sha256_hex(const void* data, size_t length, char out_hex[65]);
void jsdpa_gen_hex(const uint8_t* bytes, size_t n, char* out /* 2n + 1 */);

#ifdef __cplusplus
}
#endif
#endif /* JSDPA_GEN_H_ */
