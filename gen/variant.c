/* Typed spec -> variants: the cross product of each entry's axes, tile defaults,
 * validation against the family limits table, kernel names, duplicates.
 *
 * What a family's template supports lives in ONE row of `family_limits` below;
 * both the spec validation (jsdpa-gen) and the runtime's jsdpa_gen_variant_check
 * read it, so the generator and the backends cannot disagree. */
#include <stdlib.h>
#include <string.h>

#include "jsdpa_gen.h"

/* ------------------------------------------------------------ names */

static const char* const family_names[JSDPA_GEN_FAMILY_COUNT] = {"flash", "efficient", "math"};
static const char* const dtype_names[JSDPA_GEN_DTYPE_COUNT] = {"fp16", "bf16", "fp32"};

/* Oldest first. sm_70 and sm_75 exist for the math family only (the flash
 * kernels need sm_80's mma and cp.async); sm_90a adds wgmma/TMA/setmaxnreg. */
static const jsdpa_gen_arch_t known_archs[] = {
    {70, false}, {75, false}, {80, false}, {86, false}, {89, false}, {90, false}, {90, true},
};

const char* jsdpa_gen_family_name(jsdpa_gen_family_t family) {
  return (unsigned)family < JSDPA_GEN_FAMILY_COUNT ? family_names[family] : "?";
}

const char* jsdpa_gen_dtype_name(jsdpa_gen_dtype_t dtype) {
  return (unsigned)dtype < JSDPA_GEN_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

const char* jsdpa_gen_arch_name(jsdpa_gen_arch_t arch, char* buf, size_t capacity) {
  snprintf(buf, capacity, "sm_%d%s", arch.sm, arch.arch_specific ? "a" : "");
  return buf;
}

const jsdpa_gen_arch_t* jsdpa_gen_known_archs(size_t* out_count) {
  *out_count = sizeof(known_archs) / sizeof(known_archs[0]);
  return known_archs;
}

bool jsdpa_gen_parse_family(const char* text, jsdpa_gen_family_t* out) {
  for (int f = 0; f < JSDPA_GEN_FAMILY_COUNT; ++f)
    if (!strcmp(text, family_names[f])) {
      *out = (jsdpa_gen_family_t)f;
      return true;
    }
  return false;
}

bool jsdpa_gen_parse_dtype(const char* text, jsdpa_gen_dtype_t* out) {
  for (int t = 0; t < JSDPA_GEN_DTYPE_COUNT; ++t)
    if (!strcmp(text, dtype_names[t])) {
      *out = (jsdpa_gen_dtype_t)t;
      return true;
    }
  return false;
}

bool jsdpa_gen_parse_arch(const char* text, jsdpa_gen_arch_t* out) {
  char name[16];
  for (size_t i = 0; i < sizeof(known_archs) / sizeof(known_archs[0]); ++i)
    if (!strcmp(text, jsdpa_gen_arch_name(known_archs[i], name, sizeof(name)))) {
      *out = known_archs[i];
      return true;
    }
  return false;
}

bool jsdpa_gen_parse_tile(const char* text, jsdpa_gen_tile_t* out) {
  jsdpa_gen_tile_t t;
  int used = 0;
  if (sscanf(text, "m%dn%dw%ds%d%n", &t.block_m, &t.block_n, &t.warps, &t.stages, &used) != 4 ||
      text[used] != '\0')
    return false;
  *out = t;
  return true;
}

/* ------------------------------------------------------------ family limits */

#define JSDPA_GEN_MAX_CHOICES 8

/* What one family's template supports. Tile choice lists end at the first 0. */
typedef struct jsdpa_gen_family_limits_s {
  /* templates/<template_name>; a family whose template is not embedded in this
   * build is reported as having none, so adding the file enables the family. */
  const char* template_name;
  bool dtypes[JSDPA_GEN_DTYPE_COUNT]; /* indexed by jsdpa_gen_dtype_t */
  int head_dim_min, head_dim_max;     /* for head_dim and head_dim_v */
  bool head_dim_v_free;               /* head_dim_v may differ from head_dim */
  int min_sm;
  int block_m[JSDPA_GEN_MAX_CHOICES];
  int block_n[JSDPA_GEN_MAX_CHOICES];
  int warps[JSDPA_GEN_MAX_CHOICES];
  int stages[JSDPA_GEN_MAX_CHOICES];
  bool warps_is_block_m; /* a row kernel: one warp per query row, block_m rows per block */
} jsdpa_gen_family_limits_t;

/*                        template        fp16  bf16  fp32   head dim  dv free  sm
 *                        block_m              block_n         warps       stages */
static const jsdpa_gen_family_limits_t family_limits[JSDPA_GEN_FAMILY_COUNT] = {
    [JSDPA_GEN_FAMILY_FLASH] = {"flash.cu",
                                {true, true, false},
                                1,
                                256,
                                false,
                                80,
                                {64, 128, 192},
                                {32, 64, 80, 128},
                                {4, 8, JSDPA_GEN_FLASH_SM90_WARPS, JSDPA_GEN_FLASH_SM90_WARPS_3WG},
                                {1, 2, 3},
                                false},
    [JSDPA_GEN_FAMILY_EFFICIENT] = {"efficient.cu",
                                    {true, true, true},
                                    1,
                                    1024,
                                    true,
                                    80,
                                    {32, 64, 128},
                                    {32, 64, 128},
                                    {2, 4, 8, JSDPA_GEN_FLASH_SM90_WARPS},
                                    {1, 2},
                                    false},
    [JSDPA_GEN_FAMILY_MATH] = {"math.cu",
                               {true, true, true},
                               1,
                               1024,
                               true,
                               70,
                               {1, 2, 4, 8, 16},
                               {1},
                               {1, 2, 4, 8, 16},
                               {1},
                               true},
};

jsdpa_gen_tile_t jsdpa_gen_default_tile(jsdpa_gen_family_t family, jsdpa_gen_arch_t arch,
                                        jsdpa_gen_dtype_t dtype, int head_dim, int head_dim_v,
                                        bool causal) {
  (void)dtype, (void)causal;
  int d = head_dim > head_dim_v ? head_dim : head_dim_v;
  switch (family) {
    case JSDPA_GEN_FAMILY_FLASH:
      /* Measured on an H100 (bench/NOTES.md): 128x64 tiles, 4 warps, K/V
       * double-buffered up to d = 128; past that a 128-row tile's accumulators
       * no longer fit the registers of 4 warps, and 64x64 single-buffered
       * (101 KiB of shared memory) keeps two blocks per SM. sm_86/89 allow
       * 99 KiB per block: single-buffered there, and 32 keys per tile past
       * d = 128. */
      if (arch.sm == 86 || arch.sm == 89) {
        if (d <= 64) return (jsdpa_gen_tile_t){128, 64, 4, 2};
        return d <= 128 ? (jsdpa_gen_tile_t){128, 64, 4, 1} : (jsdpa_gen_tile_t){64, 32, 4, 1};
      }
      return d <= 128 ? (jsdpa_gen_tile_t){128, 64, 4, 2} : (jsdpa_gen_tile_t){64, 64, 4, 1};
    case JSDPA_GEN_FAMILY_EFFICIENT: {
      /* The first tile whose shared memory leaves two blocks per SM (half of
       * sm_80/90's 164/228 KiB, less the 1 KiB the driver reserves per block
       * and the static slots; sm_86/89's 100 allow one), from 64 keys double-
       * buffered down to 32 rows of 2 warps, single-buffered. A 16-bit value
       * head dim above 256 runs wide (a warp group per slice, one block per
       * SM): the largest tile that fits a block then. */
      static const jsdpa_gen_tile_t order[] = {
          {64, 64, 4, 2}, {64, 32, 4, 2}, {64, 64, 4, 1}, {64, 32, 4, 1}, {32, 32, 2, 1},
      };
      static const jsdpa_gen_tile_t wide[] = {{64, 64, 4, 1}, {64, 32, 4, 1}, {32, 32, 2, 1}};
      /* fp32: up to d 64, 32 rows per warp halve the tf32 split work per
       * product (on an H100, bench/dev/efficient_tiles.sh, mixed: m128n32w4s2
       * 53.8 TFLOP/s, m64n64w4s2 44.6); past that two row blocks per warp no
       * longer fit the registers of the three-pass accumulation
       * (efficient.cu, mma_split) without spills. On sm_90 at d 128 the
       * three-pass split's extra K and V planes (efficient.cu, KV_SPLIT)
       * take 64x32 double-buffered to 132 KiB, one block per SM: single-
       * buffered keeps two. The function does not see the precision, so a
       * TF32 opt-in takes the same tile. */
      static const jsdpa_gen_tile_t fp32[] = {
          {128, 32, 4, 2},
          {64, 32, 4, 2},
          {64, 32, 4, 1},
          {32, 32, 2, 1},
      };
      const bool big16 = dtype != JSDPA_GEN_DTYPE_FP32 && head_dim_v > 256;
      const bool f32 = dtype == JSDPA_GEN_DTYPE_FP32;
      const bool f32_small = f32 && (head_dim > head_dim_v ? head_dim : head_dim_v) <= 64;
      const jsdpa_gen_tile_t* list = big16 ? wide : f32 ? fp32 + (f32_small ? 0 : 1) : order;
      const size_t count = big16 ? sizeof(wide) / sizeof(wide[0])
                           : f32 ? sizeof(fp32) / sizeof(fp32[0]) - (f32_small ? 0 : 1)
                                 : sizeof(order) / sizeof(order[0]);
      const bool small_sm = arch.sm == 86 || arch.sm == 89;
      const int64_t block_max = (small_sm ? 99 : arch.sm == 80 ? 163 : 227) * 1024;
      const int64_t sm_bytes = (small_sm ? 100 : arch.sm == 80 ? 164 : 228) * 1024;
      const int64_t one = block_max - JSDPA_GEN_STATIC_SMEM;
      const int64_t two = sm_bytes / 2 - 1024 - JSDPA_GEN_STATIC_SMEM;
      const int64_t budget = big16 || small_sm ? one : two;
      for (size_t i = 0; i < count; ++i) {
        jsdpa_gen_variant_t v = {.family = family,
                                 .arch = arch,
                                 .dtype = dtype,
                                 .head_dim = head_dim,
                                 .head_dim_v = head_dim_v,
                                 .tile = list[i]};
        if (jsdpa_gen_smem_bytes(&v) <= budget) return list[i];
      }
      return list[count - 1];
    }
    default: return (jsdpa_gen_tile_t){4, 1, 4, 1}; /* math: 4 rows (warps) per block */
  }
}

/* The efficient template's output slicing (efficient.cu: SLICES, DVS, WIDE):
 * value head dims above 256 columns are cut into slices; for 16-bit inputs
 * whose key tile splits evenly, the slices are warp groups of one block
 * ("wide"), otherwise separate work units. */
typedef struct efficient_shape_s {
  int64_t es, dp, dvs, slices, groups;
} efficient_shape_t;

static efficient_shape_t efficient_shape(const jsdpa_gen_variant_t* v) {
  efficient_shape_t s;
  s.es = v->dtype == JSDPA_GEN_DTYPE_FP32 ? 4 : 2;
  const int64_t ke = 32 / s.es, vq = s.es == 4 ? 8 : 16;
  s.dp = (v->head_dim + ke - 1) / ke * ke;
  const int64_t dvq = (v->head_dim_v + vq - 1) / vq * vq;
  s.slices = (dvq + 255) / 256;
  s.dvs = ((dvq + s.slices - 1) / s.slices + vq - 1) / vq * vq;
  const bool wide = s.es == 2 && s.slices > 1 && v->tile.block_n % (16 * s.slices) == 0;
  s.groups = wide ? s.slices : 1;
  return s;
}

int64_t jsdpa_gen_work_slices(const jsdpa_gen_variant_t* v) {
  /* (The Hopper template's wide tiles split the head dim inside a block.) */
  if (v->family != JSDPA_GEN_FAMILY_EFFICIENT || jsdpa_gen_uses_flash_sm90(v)) return 1;
  const efficient_shape_t s = efficient_shape(v);
  return s.groups > 1 ? 1 : s.slices;
}

/* Mirrors the templates' SMEM_BYTES (flash.cu, efficient.cu): a Q tile and
 * STAGES K and V tiles with rows padded to the mma step plus 16 bytes; the
 * efficient family's V rows hold one output slice of at most 256 columns
 * (wide: every group's), and a wide tile adds P and the groups' row maxima
 * and sums. fp32-accurate (not tf32) tiles for sm_90 with head dims up to 256
 * add one K and one V plane for the split's small halves (efficient.cu,
 * KV_SPLIT). */
int64_t jsdpa_gen_smem_bytes(const jsdpa_gen_variant_t* v) {
  const jsdpa_gen_tile_t* t = &v->tile;
  /* flash_sm90.cu: 128-byte rows (head dim padded to one; wide, the efficient
   * family's, to two) plus 1 KiB to align them; wide adds the two warpgroups'
   * partial scores (64 x block_n fp32 each); fp32 (3xTF32) has `stages` K
   * buffers but one V buffer, K's small plane (which also holds the partial
   * scores) and the two V^T planes. */
  if (jsdpa_gen_uses_flash_sm90(v)) {
    const bool wide = v->family == JSDPA_GEN_FAMILY_EFFICIENT;
    const bool f32 = v->dtype == JSDPA_GEN_DTYPE_FP32;
    const int64_t es = f32 ? 4 : 2, epr = 128 / es, pad = wide ? 2 * epr : epr;
    const int64_t row = (v->head_dim + pad - 1) / pad * pad * es, q = t->block_m * row;
    const int64_t tile = (int64_t)t->block_n * row;
    const int64_t kv = ((int64_t)t->stages + (f32 ? 1 : t->stages)) * tile + 1024;
    const int64_t x = wide && !f32 ? 2 * 64 * (int64_t)t->block_n * 4 : 0;
    const int64_t planes = f32 ? 3 * tile : 0;
    /* (head dims up to 64: the row-sum ones block, block_n x 128 bytes) */
    const int64_t ones = !wide && !f32 && v->head_dim <= 64 ? (int64_t)t->block_n * 128 : 0;
    const int64_t rest = kv + x + planes + ones;
    const int64_t budget = jsdpa_gen_sm90_smem_budget(v);
    return (2 * q + rest <= budget ? 2 : 1) * q + rest; /* Q double-buffered if it fits */
  }
  if (v->family == JSDPA_GEN_FAMILY_FLASH) {
    const int64_t pitch = (v->head_dim + 15) / 16 * 16 + 8;
    return (t->block_m + 2 * (int64_t)t->stages * t->block_n) * pitch * 2;
  }
  if (v->family != JSDPA_GEN_FAMILY_EFFICIENT) return 0;
  const efficient_shape_t s = efficient_shape(v);
  const int64_t qrow = s.dp * s.es + 16, vrow = s.groups * s.dvs * s.es + 16;
  const int64_t p =
      s.groups > 1 ? t->block_m * (t->block_n * 2 + 16) + 8 * s.groups * t->block_m : 0;
  const bool kv_split = v->dtype == JSDPA_GEN_DTYPE_FP32 && !v->tf32 && v->arch.sm >= 90 &&
                        v->head_dim <= 256 && v->head_dim_v <= 256;
  const int64_t planes = t->stages + (kv_split ? 1 : 0);
  return t->block_m * (qrow > vrow ? qrow : vrow) + planes * t->block_n * (qrow + vrow) + p;
}

jsdpa_gen_variant_t jsdpa_gen_variant_make(jsdpa_gen_family_t family, jsdpa_gen_arch_t arch,
                                           jsdpa_gen_dtype_t dtype, int head_dim, int head_dim_v,
                                           bool causal) {
  jsdpa_gen_variant_t v = {
      .family = family,
      .arch = arch,
      .dtype = dtype,
      .head_dim = head_dim,
      .head_dim_v = head_dim_v,
      .causal = causal,
      .tile = jsdpa_gen_default_tile(family, arch, dtype, head_dim, head_dim_v, causal),
  };
  return v;
}

int jsdpa_gen_sm90_blocks_per_sm(const jsdpa_gen_variant_t* v) {
  /* (The efficient family's wgmma tiles have 12 warps.) */
  if (!jsdpa_gen_uses_flash_sm90(v) || v->tile.warps != JSDPA_GEN_FLASH_SM90_WARPS_1WG) return 1;
  return v->head_dim <= 64 && v->tile.block_n == 64 ? 3 : 2;
}

int64_t jsdpa_gen_sm90_smem_budget(const jsdpa_gen_variant_t* v) {
  static const int64_t budget[] = {0, 227 * 1024, 112 * 1024, 74 * 1024};
  return budget[jsdpa_gen_sm90_blocks_per_sm(v)];
}

bool jsdpa_gen_uses_flash_sm90(const jsdpa_gen_variant_t* variant) {
  if (variant->family == JSDPA_GEN_FAMILY_EFFICIENT)
    return variant->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS;
  return variant->family == JSDPA_GEN_FAMILY_FLASH &&
         (variant->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS ||
          variant->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS_3WG ||
          (variant->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS_1WG && variant->tile.block_m == 64));
}

const char* jsdpa_gen_template_name(const jsdpa_gen_variant_t* variant) {
  if ((unsigned)variant->family >= JSDPA_GEN_FAMILY_COUNT) return NULL;
  if (jsdpa_gen_uses_flash_sm90(variant)) return "flash_sm90.cu";
  return family_limits[variant->family].template_name;
}

size_t jsdpa_gen_kernel_name(const jsdpa_gen_variant_t* v, char* buf, size_t capacity) {
  int n = snprintf(buf, capacity, "jsdpa_%s_sm%d%s_%s%s_d%d_dv%d_%s_m%dn%dw%ds%d",
                   jsdpa_gen_family_name(v->family), v->arch.sm, v->arch.arch_specific ? "a" : "",
                   jsdpa_gen_dtype_name(v->dtype), v->tf32 ? "_tf32" : "", v->head_dim,
                   v->head_dim_v, v->causal ? "causal" : "full", v->tile.block_m, v->tile.block_n,
                   v->tile.warps, v->tile.stages);
  return n < 0 ? 0 : (size_t)n;
}

/* ------------------------------------------------------------ checks */

/* The part of a variant a problem is about, so the spec validation can point
 * at the YAML node that holds it. */
typedef enum jsdpa_gen_field_e {
  FIELD_FAMILY,
  FIELD_ARCH,
  FIELD_DTYPE,
  FIELD_HEAD_DIM,
  FIELD_HEAD_DIM_V,
  FIELD_CAUSAL,
  FIELD_TF32,
  FIELD_BLOCK_M,
  FIELD_BLOCK_N,
  FIELD_WARPS,
  FIELD_STAGES,
  FIELD_COUNT,
} jsdpa_gen_field_t;

typedef struct jsdpa_gen_problem_s {
  jsdpa_gen_field_t field;
  char message[256];
} jsdpa_gen_problem_t;

static bool allowed(const int* choices, int value) {
  for (int i = 0; i < JSDPA_GEN_MAX_CHOICES && choices[i]; ++i)
    if (choices[i] == value) return true;
  return false;
}

static void format_choices(const int* choices, char* buf, size_t capacity) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < JSDPA_GEN_MAX_CHOICES && choices[i] && n < capacity; ++i)
    n += (size_t)snprintf(buf + n, capacity - n, "%s%d", i ? ", " : "", choices[i]);
}

/* Every way the variant breaks its family's limits (at most one per field),
 * each worded without the other fields' values, so one bad node reached by many
 * variants gives one message. Returns the number written. */
static int check_variant(const jsdpa_gen_variant_t* v, jsdpa_gen_problem_t* out) {
  int n = 0;
#define PROBLEM(f, ...)                                            \
  do {                                                             \
    out[n].field = (f);                                            \
    snprintf(out[n].message, sizeof(out[n].message), __VA_ARGS__); \
    ++n;                                                           \
  } while (0)
  if ((unsigned)v->family >= JSDPA_GEN_FAMILY_COUNT) {
    PROBLEM(FIELD_FAMILY, "unknown family %d", (int)v->family);
    return n;
  }
  const jsdpa_gen_family_limits_t* lim = &family_limits[v->family];
  const char* fam = family_names[v->family];
  const char* template_name = jsdpa_gen_template_name(v);
  if (!jsdpa_gen_template(template_name, NULL))
    PROBLEM(FIELD_FAMILY, "family '%s' has no kernel template in this version (templates/%s)", fam,
            template_name);
  char arch[16];
  if (v->arch.sm < lim->min_sm)
    PROBLEM(FIELD_ARCH, "family '%s' needs sm_%d or newer, got %s", fam, lim->min_sm,
            jsdpa_gen_arch_name(v->arch, arch, sizeof(arch)));
  if ((unsigned)v->dtype >= JSDPA_GEN_DTYPE_COUNT || !lim->dtypes[v->dtype]) {
    char list[64] = "";
    for (int t = 0; t < JSDPA_GEN_DTYPE_COUNT; ++t)
      if (lim->dtypes[t]) {
        strncat(list, list[0] ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, dtype_names[t], sizeof(list) - strlen(list) - 1);
      }
    PROBLEM(FIELD_DTYPE, "family '%s' does not support dtype '%s' (supported: %s)", fam,
            jsdpa_gen_dtype_name(v->dtype), list);
  }
  bool d_ok = v->head_dim >= lim->head_dim_min && v->head_dim <= lim->head_dim_max;
  if (!d_ok)
    PROBLEM(FIELD_HEAD_DIM, "head_dim %d is out of range for family '%s' (%d..%d)", v->head_dim,
            fam, lim->head_dim_min, lim->head_dim_max);
  /* An out-of-range head_dim_v equal to head_dim was said about head_dim. */
  if ((v->head_dim_v < lim->head_dim_min || v->head_dim_v > lim->head_dim_max) &&
      (d_ok || v->head_dim_v != v->head_dim))
    PROBLEM(FIELD_HEAD_DIM_V, "head_dim_v %d is out of range for family '%s' (%d..%d)",
            v->head_dim_v, fam, lim->head_dim_min, lim->head_dim_max);
  else if (!lim->head_dim_v_free && d_ok && v->head_dim_v != v->head_dim)
    PROBLEM(FIELD_HEAD_DIM_V,
            "family '%s' needs head_dim_v == head_dim; head_dim_v %d != head_dim %d", fam,
            v->head_dim_v, v->head_dim);
  if (v->tf32 && (v->family != JSDPA_GEN_FAMILY_EFFICIENT || v->dtype != JSDPA_GEN_DTYPE_FP32))
    PROBLEM(FIELD_TF32,
            "tf32 applies to fp32 inputs of the 'efficient' family only (got family '%s', dtype "
            "'%s')",
            fam, jsdpa_gen_dtype_name(v->dtype));
  const struct {
    jsdpa_gen_field_t field;
    const char* name;
    int value;
    const int* choices;
  } tile[] = {
      {FIELD_BLOCK_M, "block_m", v->tile.block_m, lim->block_m},
      {FIELD_BLOCK_N, "block_n", v->tile.block_n, lim->block_n},
      {FIELD_WARPS, "warps", v->tile.warps, lim->warps},
      {FIELD_STAGES, "stages", v->tile.stages, lim->stages},
  };
  for (size_t i = 0; i < sizeof(tile) / sizeof(tile[0]); ++i) {
    /* A row kernel's warps equal to its block_m were said about block_m. */
    if (lim->warps_is_block_m && tile[i].field == FIELD_WARPS && v->tile.warps == v->tile.block_m)
      continue;
    if (!allowed(tile[i].choices, tile[i].value)) {
      char list[64];
      format_choices(tile[i].choices, list, sizeof(list));
      PROBLEM(tile[i].field, "tile %s %d is not supported by family '%s' (allowed: %s)",
              tile[i].name, tile[i].value, fam, list);
    }
  }
  if (lim->warps_is_block_m && v->tile.warps != v->tile.block_m &&
      allowed(lim->warps, v->tile.warps))
    PROBLEM(FIELD_WARPS,
            "family '%s' runs one warp per row: tile warps (%d) must equal block_m (%d)", fam,
            v->tile.warps, v->tile.block_m);
  /* The tiled templates split a tile's query rows evenly over its warps and
   * each warp runs one or two 16-row mma blocks (templates/flash.cu). */
  const int rows_per_warp = v->tile.warps > 0 ? v->tile.block_m / v->tile.warps : 0;
  /* The Hopper template: a producer warpgroup, 64 query rows per consumer
   * warpgroup, wgmma n = block_n; three consumer warpgroups (160 registers
   * each) hold a 64-column output at most (ptxas spills at 128). */
  /* The efficient family's 12-warp tiles run the same template wide: two
   * consumer warpgroups share 64 query rows and split the head dim. */
  const bool sm90 = jsdpa_gen_uses_flash_sm90(v);
  const bool wide = sm90 && v->family == JSDPA_GEN_FAMILY_EFFICIENT;
  const int sm90_rows = wide ? 64 : (v->tile.warps / 4 - 1) * 64;
  if (sm90 && (v->arch.sm != 90 || !v->arch.arch_specific))
    PROBLEM(FIELD_ARCH, "%s tiles of %d warps (the wgmma template) need sm_90a, got %s", fam,
            v->tile.warps, jsdpa_gen_arch_name(v->arch, arch, sizeof(arch)));
  if (sm90 && allowed(lim->block_m, v->tile.block_m) && v->tile.block_m != sm90_rows)
    PROBLEM(FIELD_BLOCK_M, "%s tiles of %d warps (the wgmma template) need block_m %d, got %d", fam,
            v->tile.warps, sm90_rows, v->tile.block_m);
  if (sm90 && !wide && allowed(lim->block_n, v->tile.block_n) && v->tile.block_n != 64 &&
      v->tile.block_n != 80 && v->tile.block_n != 128)
    PROBLEM(FIELD_BLOCK_N,
            "flash tiles of %d warps (the wgmma template) need block_n 64, 80 or 128, got %d",
            v->tile.warps, v->tile.block_n);
  if (!sm90 && v->family == JSDPA_GEN_FAMILY_FLASH && v->tile.block_n == 80)
    PROBLEM(FIELD_BLOCK_N,
            "flash tiles of %d warps take block_n 32, 64 or 128 (80 is for the wgmma template's "
            "tiles), got 80",
            v->tile.warps);
  if (wide && allowed(lim->block_n, v->tile.block_n) && v->tile.block_n != 64)
    PROBLEM(FIELD_BLOCK_N,
            "efficient tiles of %d warps (the wgmma template) need block_n 64, got %d",
            v->tile.warps, v->tile.block_n);
  if (wide && v->dtype != JSDPA_GEN_DTYPE_FP32 && allowed(lim->stages, v->tile.stages) &&
      v->tile.stages != 1)
    PROBLEM(FIELD_STAGES,
            "efficient tiles of %d warps (the wgmma template) need stages 1 for fp16/bf16 (one K "
            "and one V buffer of up to 64 KiB each), got %d",
            v->tile.warps, v->tile.stages);
  /* The callers' arrays hold FIELD_COUNT + 1 problems: one per field, and the
   * arch field's two (the family's minimum, the wgmma template's sm_90a). So
   * these only where the family's range checks above passed. fp32 runs tf32
   * wgmma with K's and V^T's planes beside the tiles: head dims up to 128. */
  const bool wide_f32 = v->dtype == JSDPA_GEN_DTYPE_FP32;
  const int wide_min = wide_f32 ? 65 : 1, wide_max = wide_f32 ? 128 : 512;
  if (wide && d_ok && (v->head_dim < wide_min || v->head_dim > wide_max))
    PROBLEM(FIELD_HEAD_DIM,
            "efficient tiles of %d warps (the wgmma template) take %s head dims %d..%d, got %d",
            v->tile.warps, wide_f32 ? "fp32" : "fp16/bf16", wide_min, wide_max, v->head_dim);
  if (wide && v->tf32 && v->dtype == JSDPA_GEN_DTYPE_FP32)
    PROBLEM(FIELD_TF32,
            "efficient tiles of %d warps (the wgmma template) run fp32 as 3xTF32 only; tf32 "
            "(one pass) runs the family's other tiles",
            v->tile.warps);
  if (wide && d_ok && v->head_dim >= wide_min && v->head_dim <= wide_max &&
      v->head_dim_v != v->head_dim && v->head_dim_v >= lim->head_dim_min &&
      v->head_dim_v <= lim->head_dim_max)
    PROBLEM(FIELD_HEAD_DIM_V,
            "efficient tiles of %d warps (the wgmma template) need head_dim_v == head_dim; "
            "head_dim_v %d != head_dim %d",
            v->tile.warps, v->head_dim_v, v->head_dim);
  if (sm90 && !wide && v->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS_1WG && v->head_dim > 128)
    PROBLEM(
        FIELD_WARPS,
        "flash tiles of %d warps (one consumer warpgroup, several blocks per SM) take head dims up "
        "to 128, got %d",
        v->tile.warps, v->head_dim);
  else if (sm90 && !wide && v->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS_1WG && d_ok &&
           allowed(lim->block_n, v->tile.block_n) && allowed(lim->stages, v->tile.stages) &&
           jsdpa_gen_smem_bytes(v) > jsdpa_gen_sm90_smem_budget(v))
    PROBLEM(FIELD_STAGES,
            "flash tiles of %d warps (one consumer warpgroup, %d blocks per SM) need at most %lld "
            "bytes of shared memory per block; m%dn%dw%ds%d at head dim %d needs %lld (fewer "
            "stages or a smaller block_n)",
            v->tile.warps, jsdpa_gen_sm90_blocks_per_sm(v),
            (long long)jsdpa_gen_sm90_smem_budget(v), v->tile.block_m, v->tile.block_n,
            v->tile.warps, v->tile.stages, v->head_dim, (long long)jsdpa_gen_smem_bytes(v));
  if (sm90 && v->tile.warps == JSDPA_GEN_FLASH_SM90_WARPS_3WG && v->head_dim > 64)
    PROBLEM(FIELD_WARPS,
            "flash tiles of %d warps (three consumer warpgroups, 160 registers each) take head "
            "dims up to 64, got %d",
            v->tile.warps, v->head_dim);
  if (!sm90 && v->family != JSDPA_GEN_FAMILY_MATH && allowed(lim->block_m, v->tile.block_m) &&
      allowed(lim->warps, v->tile.warps) &&
      (v->tile.block_m % v->tile.warps != 0 || (rows_per_warp != 16 && rows_per_warp != 32)))
    PROBLEM(FIELD_WARPS,
            "family '%s' gives each warp 16 or 32 query rows: block_m %d over %d warps does not",
            fam, v->tile.block_m, v->tile.warps);
#undef PROBLEM
  return n;
}

bool jsdpa_gen_variant_check(const jsdpa_gen_variant_t* variant, char* why, size_t capacity) {
  jsdpa_gen_problem_t problems[FIELD_COUNT + 1];
  int n = check_variant(variant, problems);
  if (n == 0) {
    if (capacity) why[0] = '\0';
    return true;
  }
  size_t used = 0;
  if (capacity) why[0] = '\0';
  for (int i = 0; i < n && used < capacity; ++i)
    used +=
        (size_t)snprintf(why + used, capacity - used, "%s%s", i ? "; " : "", problems[i].message);
  return false;
}

/* ------------------------------------------------------------ expansion */

void jsdpa_gen_variant_list_free(jsdpa_gen_variant_list_t* list) {
  free(list->items);
  memset(list, 0, sizeof(*list));
}

static void list_push(jsdpa_gen_variant_list_t* list, const jsdpa_gen_variant_t* v) {
  if (list->count == list->capacity) {
    list->capacity = list->capacity ? 2 * list->capacity : 16;
    list->items = realloc(list->items, list->capacity * sizeof(*list->items));
    if (!list->items) abort();
  }
  list->items[list->count++] = *v;
}

/* Same kernel = same name: the name encodes every specialization. */
static bool same_kernel(const jsdpa_gen_variant_t* a, const jsdpa_gen_variant_t* b) {
  return a->family == b->family && a->arch.sm == b->arch.sm &&
         a->arch.arch_specific == b->arch.arch_specific && a->dtype == b->dtype &&
         a->head_dim == b->head_dim && a->head_dim_v == b->head_dim_v && a->causal == b->causal &&
         a->tf32 == b->tf32 && a->tile.block_m == b->tile.block_m &&
         a->tile.block_n == b->tile.block_n && a->tile.warps == b->tile.warps &&
         a->tile.stages == b->tile.stages;
}

/* Where an entry's value for `field` is: the value's node, else (a default)
 * the entry itself. idx[] picks the value of each axis in this combination. */
static jsdpa_gen_loc_t field_loc(const jsdpa_gen_spec_entry_t* e,
                                 const jsdpa_gen_axis_t* const* axes, const size_t* idx,
                                 jsdpa_gen_field_t field) {
  const jsdpa_gen_axis_t* axis = axes[field];
  if (axis->count) return axis->items[idx[field]].loc;
  /* A defaulted head_dim_v is the head_dim: blame that node. */
  if (field == FIELD_HEAD_DIM_V && axes[FIELD_HEAD_DIM]->count)
    return axes[FIELD_HEAD_DIM]->items[idx[FIELD_HEAD_DIM]].loc;
  return e->loc;
}

/* One duplicate group: this entry repeats `count` variants of the entry at `first`. */
typedef struct jsdpa_gen_dup_s {
  jsdpa_gen_loc_t first;
  char name[160];
  size_t count;
} jsdpa_gen_dup_t;

/* Appends the entry's variants to `out`, or nothing if the entry has any error
 * (then returns false): a bad entry must not seed duplicate reports either. */
static bool expand_entry(const jsdpa_gen_spec_entry_t* e, jsdpa_gen_diags_t* diags,
                         const jsdpa_gen_variant_list_t* earlier, jsdpa_gen_variant_list_t* out) {
  /* Absent required axes were reported by the parser; nothing to expand. */
  if (!e->family.count || !e->dtype.count || !e->head_dim.count) return false;
  const jsdpa_gen_axis_t* axes[FIELD_COUNT] = {
      [FIELD_FAMILY] = &e->family,
      [FIELD_ARCH] = &e->arch,
      [FIELD_DTYPE] = &e->dtype,
      [FIELD_HEAD_DIM] = &e->head_dim,
      [FIELD_HEAD_DIM_V] = &e->head_dim_v,
      [FIELD_CAUSAL] = &e->causal,
      [FIELD_TF32] = &e->tf32,
      [FIELD_BLOCK_M] = &e->block_m,
      [FIELD_BLOCK_N] = &e->block_n,
      [FIELD_WARPS] = &e->warps,
      [FIELD_STAGES] = &e->stages,
  };
  size_t idx[FIELD_COUNT] = {0};
  jsdpa_gen_dup_t dups[8];
  size_t dup_groups = 0;
  bool ok = !e->incomplete;
  size_t first_new = out->count;

  /* Odometer over the axes, the first axis slowest, so variants come out in the
   * order a reader of the spec expects (and deterministically). */
  for (;;) {
#define VALUE(field) (axes[field]->items[idx[field]])
#define HAS(field) (axes[field]->count > 0)
    jsdpa_gen_variant_t v = {
        .family = VALUE(FIELD_FAMILY).family,
        .arch = HAS(FIELD_ARCH) ? VALUE(FIELD_ARCH).arch : (jsdpa_gen_arch_t){80, false},
        .dtype = VALUE(FIELD_DTYPE).dtype,
        .head_dim = VALUE(FIELD_HEAD_DIM).integer,
        .causal = HAS(FIELD_CAUSAL) && VALUE(FIELD_CAUSAL).boolean,
        .tf32 = HAS(FIELD_TF32) && VALUE(FIELD_TF32).boolean,
        .loc = e->loc,
    };
    v.head_dim_v = HAS(FIELD_HEAD_DIM_V) ? VALUE(FIELD_HEAD_DIM_V).integer : v.head_dim;
    v.tile = jsdpa_gen_default_tile(v.family, v.arch, v.dtype, v.head_dim, v.head_dim_v, v.causal);
    if (HAS(FIELD_BLOCK_M)) v.tile.block_m = VALUE(FIELD_BLOCK_M).integer;
    if (HAS(FIELD_BLOCK_N)) v.tile.block_n = VALUE(FIELD_BLOCK_N).integer;
    if (HAS(FIELD_WARPS)) v.tile.warps = VALUE(FIELD_WARPS).integer;
    if (HAS(FIELD_STAGES)) v.tile.stages = VALUE(FIELD_STAGES).integer;
    /* A row kernel's warps and block_m are one number: giving either sets both. */
    if (family_limits[v.family].warps_is_block_m && HAS(FIELD_BLOCK_M) != HAS(FIELD_WARPS)) {
      if (HAS(FIELD_BLOCK_M))
        v.tile.warps = v.tile.block_m;
      else
        v.tile.block_m = v.tile.warps;
    }
#undef VALUE
#undef HAS

    jsdpa_gen_problem_t problems[FIELD_COUNT + 1];
    int n = check_variant(&v, problems);
    for (int i = 0; i < n; ++i)
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, field_loc(e, axes, idx, problems[i].field), "%s",
                     problems[i].message);
    ok &= n == 0;
    if (n == 0 && !e->incomplete) {
      const jsdpa_gen_variant_t* first = NULL;
      for (size_t i = 0; i < earlier->count && !first; ++i)
        if (same_kernel(&earlier->items[i], &v)) first = &earlier->items[i];
      for (size_t i = 0; i < out->count && !first; ++i)
        if (same_kernel(&out->items[i], &v)) first = &out->items[i];
      if (!first) {
        list_push(out, &v);
      } else {
        size_t g = 0;
        while (g < dup_groups && memcmp(&dups[g].first, &first->loc, sizeof(first->loc))) ++g;
        if (g == dup_groups && g < sizeof(dups) / sizeof(dups[0])) {
          dups[g] = (jsdpa_gen_dup_t){.first = first->loc};
          jsdpa_gen_kernel_name(&v, dups[g].name, sizeof(dups[g].name));
          ++dup_groups;
        }
        if (g < dup_groups) ++dups[g].count;
        ok = false;
      }
    }

    int f = FIELD_COUNT - 1;
    while (f >= 0 && (axes[f]->count == 0 || ++idx[f] == axes[f]->count)) idx[f--] = 0;
    if (f < 0) break;
  }

  for (size_t g = 0; g < dup_groups; ++g) {
    if (dups[g].count > 1)
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, e->loc,
                     "duplicate variant '%s' (and %zu more): already produced by an earlier entry",
                     dups[g].name, dups[g].count - 1);
    else
      jsdpa_gen_diag(diags, JSDPA_GEN_ERROR, e->loc,
                     "duplicate variant '%s': already produced by an earlier entry", dups[g].name);
    jsdpa_gen_diag(diags, JSDPA_GEN_NOTE, dups[g].first, "first produced by this entry");
  }
  if (!ok) out->count = first_new;
  return ok;
}

bool jsdpa_gen_expand_spec(const jsdpa_gen_spec_t* spec, jsdpa_gen_diags_t* diags,
                           jsdpa_gen_variant_list_t* out) {
  jsdpa_gen_variant_list_t mine = {0};
  bool ok = true;
  for (size_t i = 0; i < spec->count; ++i) ok &= expand_entry(&spec->entries[i], diags, out, &mine);
  for (size_t i = 0; ok && i < mine.count; ++i) list_push(out, &mine.items[i]);
  jsdpa_gen_variant_list_free(&mine);
  return ok;
}

bool jsdpa_gen_load_spec(const char* file, const char* text, size_t length,
                         jsdpa_gen_diags_t* diags, jsdpa_gen_variant_list_t* out) {
  jsdpa_gen_diags_hold(diags);
  jsdpa_gen_spec_t spec;
  bool parsed = jsdpa_gen_parse_spec(file, text, length, diags, &spec);
  /* Expand even after parse errors: the entries that parsed still get their
   * values checked, so one run reports every error in the file. */
  bool expanded = jsdpa_gen_expand_spec(&spec, diags, out);
  jsdpa_gen_spec_free(&spec);
  jsdpa_gen_diags_release(diags);
  return parsed && expanded;
}
