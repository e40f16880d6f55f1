/* The JIT: variant -> CUDA source (the gen library) -> cubin (disk cache or
 * NVRTC) -> loaded kernel (memory cache). The hot path is one lookup by kernel
 * name, which encodes every specialization; the source is emitted and hashed
 * only on a memory miss. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "internal.h"

#define JIT_PREP_NAME "jsdpa_prep"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* The memory cache's destroy callback: unloads the module in its context. */
static void kernel_destroy(void* value, void* arg) {
  jsdpa_kernel_t* kernel = value;
  jsdpa_context_t* ctx = arg;
  jsdpa_status_t s = jsdpa_context_push(ctx);
  if (!s) {
    ctx->cu->cuModuleUnload(kernel->module);
    jsdpa_context_pop(ctx);
  }
  jsdpa_status_free(s);
  free(kernel);
}

static const char* dir_or_empty(const jsdpa_context_t* ctx) {
  const char* dir = jsdpa_cache_dir(ctx->cache);
  return dir ? dir : "";
}

/* The cubin for `source`: from the disk cache, else compiled (and stored). */
static jsdpa_status_t get_image(jsdpa_context_t* ctx, const char* name, jsdpa_gen_arch_t arch,
                                const char* source, size_t length, void** out_image,
                                size_t* out_size) {
  const char* reason = NULL;
  jsdpa_cache_compile_t compile;
  if (!jsdpa_cache_compile_setup(arch, source, length, &compile, &reason))
    return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE, "NVRTC unavailable: %s", reason);
  const jsdpa_cache_key_t* key = &compile.key;

  double start = now_ms();
  if (jsdpa_cache_disk_load(ctx->cache, key, out_image, out_size)) {
    jsdpa_cache_note_load(ctx->cache, now_ms() - start);
    jsdpa_log(ctx, 2, "%s: disk cache hit (%s)", name, key->hex);
    return NULL;
  }

  start = now_ms();
  char* log = NULL;
  jsdpa_status_t status = jsdpa_nvrtc_compile(name, source, compile.options, compile.num_options,
                                              false, out_image, out_size, &log);
  double ms = now_ms() - start;
  if (status) {
    free(log);
    return status;
  }
  jsdpa_cache_note_compile(ctx->cache, ms);
  bool stored = jsdpa_cache_disk_store(ctx->cache, key, *out_image, *out_size);
  const jsdpa_nvrtc_t* nv = jsdpa_nvrtc(NULL);
  char arch_name[16];
  jsdpa_log(ctx, 1, "cold compile of %s for %s: %.1f ms (NVRTC %d.%d)%s%s", name,
            jsdpa_gen_arch_name(arch, arch_name, sizeof(arch_name)), ms, nv->major, nv->minor,
            stored ? ", stored in " : ", not stored on disk", stored ? dir_or_empty(ctx) : "");
  if (log && log[0]) jsdpa_log(ctx, 2, "NVRTC log for %s:\n%s", name, log);
  free(log);
  return NULL;
}

/*
 * The template's launch shape, the 16 initial bytes of its jsdpa_launch
 * global, read from the cubin's ELF symbol table on the host. Reading it
 * through the loaded module instead (cuModuleGetGlobal + cuMemcpyDtoH) is a
 * synchronous device copy, which on a cold call would also wait for the
 * caller's work in flight; NVRTC emits the constant as a local symbol with
 * its bytes in a PROGBITS section (.nv.global.init), which this reads.
 */
static bool read_launch(const uint8_t* image, size_t size, int out[4]) {
  Elf64_Ehdr eh;
  if (size < sizeof(eh)) return false;
  memcpy(&eh, image, sizeof(eh));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_shoff > size || (size - eh.e_shoff) / sizeof(Elf64_Shdr) < eh.e_shnum)
    return false;
  Elf64_Shdr* sections = malloc(sizeof(Elf64_Shdr) * (eh.e_shnum ? eh.e_shnum : 1));
  if (!sections) return false;
  memcpy(sections, image + eh.e_shoff, sizeof(Elf64_Shdr) * eh.e_shnum);
  bool found = false;
  for (unsigned s = 0; s < eh.e_shnum && !found; ++s) {
    const Elf64_Shdr* symtab = &sections[s];
    if (symtab->sh_type != SHT_SYMTAB || symtab->sh_link >= eh.e_shnum) continue;
    const Elf64_Shdr* strtab = &sections[symtab->sh_link];
    if (symtab->sh_offset > size || symtab->sh_size > size - symtab->sh_offset ||
        strtab->sh_offset > size || strtab->sh_size > size - strtab->sh_offset)
      continue;
    for (size_t i = 0; i < symtab->sh_size / sizeof(Elf64_Sym) && !found; ++i) {
      Elf64_Sym sym;
      memcpy(&sym, image + symtab->sh_offset + i * sizeof(sym), sizeof(sym));
      static const char wanted[] = "jsdpa_launch";
      if (sym.st_name >= strtab->sh_size || strtab->sh_size - sym.st_name < sizeof(wanted) ||
          memcmp(image + strtab->sh_offset + sym.st_name, wanted, sizeof(wanted)) != 0 ||
          sym.st_shndx == SHN_UNDEF || sym.st_shndx >= eh.e_shnum || sym.st_size < 16)
        continue;
      const Elf64_Shdr* data = &sections[sym.st_shndx];
      if (data->sh_type != SHT_PROGBITS || sym.st_value < data->sh_addr) continue;
      uint64_t at = sym.st_value - data->sh_addr;
      if (at > data->sh_size || data->sh_size - at < 16 || data->sh_offset > size ||
          size - data->sh_offset < data->sh_size)
        continue;
      memcpy(out, image + data->sh_offset + at, 16);
      found = true;
    }
  }
  free(sections);
  return found;
}

/* Loads the image and configures the kernel for its launch shape. */
static jsdpa_status_t load_module(jsdpa_context_t* ctx, const char* name, const void* image,
                                  size_t size, jsdpa_kernel_t* kernel) {
  const jsdpa_cuda_driver_t* cu = ctx->cu;
  int launch[4];
  if (!read_launch(image, size, launch))
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL,
                             "%s: the cubin (%zu bytes) defines no 16-byte jsdpa_launch", name,
                             size);
  CU_CHECK(cu, cuModuleLoadData(&kernel->module, image));
  CU_CHECK(cu, cuModuleGetFunction(&kernel->function, kernel->module, name));
  kernel->threads = launch[0];
  kernel->smem_bytes = launch[1];
  kernel->block_m = launch[2];
  kernel->block_n = launch[3];
  if (kernel->threads <= 0 || kernel->threads > 1024 || kernel->smem_bytes < 0 ||
      kernel->block_m <= 0 || kernel->block_n <= 0)
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL,
                             "%s: bad jsdpa_launch {threads %d, smem %d, block_m %d, block_n %d}",
                             name, launch[0], launch[1], launch[2], launch[3]);
  if (kernel->smem_bytes > ctx->max_smem_optin)
    return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED,
                             "%s needs %d bytes of shared memory; %s allows %d per block", name,
                             kernel->smem_bytes, ctx->device_name, ctx->max_smem_optin);
  if (kernel->smem_bytes > 48 * 1024)
    CU_CHECK(cu,
             cuFuncSetAttribute(kernel->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                kernel->smem_bytes));
  return NULL;
}

/* Memory miss: image (disk or NVRTC), module, kernel, then publish it in the
 * memory cache. Two threads missing at once both build; the loser's module is
 * unloaded and both return the winner. */
static jsdpa_status_t build_kernel(jsdpa_context_t* ctx, const char* name,
                                   const jsdpa_gen_variant_t* variant, const char* source,
                                   size_t length, const jsdpa_kernel_t** out_kernel) {
  void* image = NULL;
  size_t size = 0;
  double start = now_ms();
  JSDPA_RETURN_IF_ERROR(get_image(ctx, name, variant->arch, source, length, &image, &size));
  double load_start = now_ms();

  jsdpa_kernel_t* kernel = calloc(1, sizeof(*kernel));
  jsdpa_status_t status =
      kernel ? jsdpa_context_push(ctx)
             : jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "out of host memory loading %s", name);
  if (!status) {
    kernel->variant = *variant;
    status = load_module(ctx, name, image, size, kernel);
    if (status && kernel->module) ctx->cu->cuModuleUnload(kernel->module);
    jsdpa_context_pop(ctx);
  }
  free(image);
  if (status) {
    free(kernel);
    return jsdpa_status_annotate(status, "loading kernel %s", name);
  }
  jsdpa_cache_note_load(ctx->cache, now_ms() - load_start);
  jsdpa_log(ctx, 2, "%s ready in %.1f ms", name, now_ms() - start);

  jsdpa_kernel_t* cached = jsdpa_cache_memory_insert(ctx->cache, name, kernel, kernel_destroy, ctx);
  if (cached != kernel) kernel_destroy(kernel, ctx);
  if (!cached)
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "out of host memory caching %s", name);
  *out_kernel = cached;
  return NULL;
}

jsdpa_status_t jsdpa_jit_get(jsdpa_context_t* ctx, const jsdpa_gen_variant_t* variant,
                             const jsdpa_kernel_t** out_kernel) {
  *out_kernel = NULL;
  if (!ctx->gpu) return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE, "no GPU: %s", ctx->gpu_reason);
  char name[256];
  size_t n = jsdpa_gen_kernel_name(variant, name, sizeof(name));
  if (n == 0 || n >= sizeof(name))
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL, "kernel name of %zu characters", n);
  *out_kernel = jsdpa_cache_memory_find(ctx->cache, name);
  if (*out_kernel) return NULL;

  char why[JSDPA_REASON_CAPACITY] = "";
  size_t length = 0;
  char* source = jsdpa_gen_emit_source(variant, &length, why, sizeof(why));
  if (!source) return jsdpa_make_status(JSDPA_STATUS_UNSUPPORTED, "%s: %s", name, why);
  jsdpa_status_t status = build_kernel(ctx, name, variant, source, length, out_kernel);
  free(source);
  return status;
}

jsdpa_status_t jsdpa_jit_get_prep(jsdpa_context_t* ctx, const jsdpa_kernel_t** out_kernel) {
  *out_kernel = NULL;
  if (!ctx->gpu) return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE, "no GPU: %s", ctx->gpu_reason);
  *out_kernel = jsdpa_cache_memory_find(ctx->cache, JIT_PREP_NAME);
  if (*out_kernel) return NULL;

  size_t length = 0;
  char* source = jsdpa_gen_emit_prep_source(&length);
  if (!source)
    return jsdpa_make_status(JSDPA_STATUS_INTERNAL, "the generator has no prep kernel source");
  jsdpa_gen_variant_t variant;
  memset(&variant, 0, sizeof(variant));
  variant.arch = ctx->arch;
  jsdpa_status_t status = build_kernel(ctx, JIT_PREP_NAME, &variant, source, length, out_kernel);
  free(source);
  return status;
}
