/*
 * Argument checks for jsdpa_forward and jsdpa_explain. Everything a backend
 * relies on is checked here, before any work, and the call is normalized
 * (strides and scale resolved, host offsets measured). The only thing written
 * is *out_call, and only on success.
 *
 * Limits (JSDPA_MAX_* in jsdpa.h): heads <= 65535 (a CUDA grid dimension),
 * head_dim <= 1024, total_tokens and batch below 2^31 (the device side keeps
 * offsets and counts in int32).
 *
 * Layouts: strides are only rejected when unsafe. Inputs may overlap
 * themselves (a packed-QKV view, a broadcast head); out may not, since two
 * rows landing on one address would make the result depend on write order.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "element.h"
#include "internal.h"

static bool index_type_valid(jsdpa_index_type_t type) {
  return type == JSDPA_INDEX_INT32 || type == JSDPA_INDEX_INT64;
}

/* One tensor argument while it is being checked. */
typedef struct tensor_s {
  const char* name;
  jsdpa_jagged_t t;     /* strides resolved */
  uintptr_t begin, end; /* byte range it can touch; begin == end when empty */
} tensor_t;

/* Per-tensor checks that need no other argument. */
static jsdpa_status_t check_tensor(tensor_t* x) {
  jsdpa_jagged_t* t = &x->t;
  const char* n = x->name;
  if (jsdpa_dtype_size(t->dtype) == 0)
    return JSDPA_INVALID("%s.dtype (%d) is not a jsdpa_dtype_t", n, (int)t->dtype);
  if (t->heads < 1 || t->heads > JSDPA_MAX_HEADS)
    return JSDPA_INVALID("%s.heads (%" PRId64 ") must be in [1, %d]", n, t->heads, JSDPA_MAX_HEADS);
  if (t->head_dim < 1 || t->head_dim > JSDPA_MAX_HEAD_DIM)
    return JSDPA_INVALID("%s.head_dim (%" PRId64 ") must be in [1, %d]", n, t->head_dim,
                         JSDPA_MAX_HEAD_DIM);
  if (t->total_tokens < 0 || t->total_tokens > JSDPA_MAX_TOTAL_TOKENS)
    return JSDPA_INVALID("%s.total_tokens (%" PRId64 ") must be in [0, %" PRId64 "]", n,
                         t->total_tokens, (int64_t)JSDPA_MAX_TOTAL_TOKENS);
  if (t->token_stride < 0)
    return JSDPA_INVALID("%s.token_stride (%" PRId64 ") is negative", n, t->token_stride);
  if (t->head_stride < 0)
    return JSDPA_INVALID("%s.head_stride (%" PRId64 ") is negative", n, t->head_stride);
  if (!t->data && t->total_tokens > 0)
    return JSDPA_INVALID("%s.data is NULL but %s.total_tokens is %" PRId64, n, n, t->total_tokens);

  /* 0 means contiguous. A token stride of 0 packs tokens after all heads at
   * the (possibly padded) head stride, so padding heads alone stays legal. */
  if (t->head_stride == 0) t->head_stride = t->head_dim;
  if (t->token_stride == 0 && __builtin_mul_overflow(t->heads, t->head_stride, &t->token_stride))
    return JSDPA_INVALID("%s.head_stride (%" PRId64 ") times %s.heads (%" PRId64
                         ") overflows int64",
                         n, t->head_stride, n, t->heads);
  const size_t esize = jsdpa_dtype_size(t->dtype);

  /* The largest element index, (T-1)*ts + (H-1)*hs + (D-1), and its byte end
   * must not overflow (the kernels index with 64-bit element offsets). */
  int64_t a = 0, b = 0, last = 0, bytes = 0;
  if (__builtin_mul_overflow(t->heads, t->head_stride, &a) ||
      __builtin_mul_overflow(t->total_tokens > 0 ? t->total_tokens - 1 : 0, t->token_stride, &b) ||
      __builtin_add_overflow(a - t->head_stride, b, &last) ||
      __builtin_add_overflow(last, t->head_dim, &last) ||
      __builtin_mul_overflow(last, (int64_t)esize, &bytes))
    return JSDPA_INVALID(
        "%s's strides overflow: total_tokens %" PRId64 ", heads %" PRId64 ", head_dim %" PRId64
        ", token_stride %" PRId64 ", head_stride %" PRId64 " reach past 2^63 bytes",
        n, t->total_tokens, t->heads, t->head_dim, t->token_stride, t->head_stride);
  if (t->data && (uintptr_t)t->data % esize != 0)
    return JSDPA_INVALID("%s.data (%p) is not aligned to its element size (%zu bytes, %s)", n,
                         t->data, esize, jsdpa_dtype_name(t->dtype));
  x->begin = x->end = (uintptr_t)t->data;
  if (t->total_tokens > 0) {
    if ((uintptr_t)bytes > UINTPTR_MAX - x->begin)
      return JSDPA_INVALID("%s.data (%p) plus its extent (%" PRId64 " bytes) wraps around memory",
                           n, t->data, bytes);
    x->end = x->begin + (uintptr_t)bytes;
  }
  return NULL;
}

/*
 * out must map every (token, head, d) to its own element. Sorting the
 * dimensions by stride, each stride must step past everything the smaller
 * ones span (the classic sufficient test for a strided view without internal
 * overlap; it accepts token-major, head-major and padded layouts alike).
 */
static jsdpa_status_t check_no_self_overlap(const tensor_t* x) {
  const jsdpa_jagged_t* t = &x->t;
  if (t->total_tokens == 0) return NULL;
  struct {
    int64_t stride, extent;
    const char* what;
  } dims[2];
  int count = 0;
  if (t->heads > 1) dims[count++] = (__typeof__(dims[0])){t->head_stride, t->heads, "head_stride"};
  if (t->total_tokens > 1)
    dims[count++] = (__typeof__(dims[0])){t->token_stride, t->total_tokens, "token_stride"};
  if (count == 2 && dims[1].stride < dims[0].stride) {
    __typeof__(dims[0]) tmp = dims[0];
    dims[0] = dims[1];
    dims[1] = tmp;
  }
  int64_t span = t->head_dim; /* elements covered so far, from index 0 */
  for (int i = 0; i < count; ++i) {
    if (dims[i].stride < span)
      return JSDPA_INVALID(
          "%s's layout overlaps itself: %s.%s (%" PRId64 ") is smaller than the %" PRId64
          " elements the smaller dimensions span (heads %" PRId64 ", head_dim %" PRId64
          ", token_stride %" PRId64 ", head_stride %" PRId64 "); out must not alias itself",
          x->name, x->name, dims[i].what, dims[i].stride, span, t->heads, t->head_dim,
          t->token_stride, t->head_stride);
    span = (dims[i].extent - 1) * dims[i].stride + span; /* no overflow: checked in check_tensor */
  }
  return NULL;
}

static bool ranges_overlap(const tensor_t* a, uintptr_t begin, uintptr_t end) {
  return a->begin < a->end && begin < end && a->begin < end && begin < a->end;
}

/* Host offsets: offsets[0] == 0, non-decreasing, offsets[batch] == total.
 * Also the shortest and longest sequence. */
static jsdpa_status_t check_host_offsets(const char* name, const void* offsets,
                                         jsdpa_index_type_t type, int64_t batch, int64_t total,
                                         int64_t* out_min, int64_t* out_max) {
  const int32_t* o32 = offsets;
  const int64_t* o64 = offsets;
#define OFFSET_AT(i) (type == JSDPA_INDEX_INT32 ? (int64_t)o32[i] : o64[i])
  if (OFFSET_AT(0) != 0)
    return JSDPA_INVALID("%s.offsets[0] is %" PRId64 ", expected 0", name, OFFSET_AT(0));
  int64_t min_len = batch > 0 ? INT64_MAX : 0, max_len = 0;
  for (int64_t i = 0; i < batch; ++i) {
    int64_t lo = OFFSET_AT(i), hi = OFFSET_AT(i + 1);
    if (hi < lo)
      return JSDPA_INVALID("%s.offsets decrease at index %" PRId64 ": offsets[%" PRId64
                           "] = %" PRId64 ", offsets[%" PRId64 "] = %" PRId64,
                           name, i + 1, i, lo, i + 1, hi);
    if (hi > total)
      return JSDPA_INVALID("%s.offsets[%" PRId64 "] (%" PRId64 ") exceeds %s.total_tokens (%" PRId64
                           ")",
                           name, i + 1, hi, name, total);
    if (hi - lo < min_len) min_len = hi - lo;
    if (hi - lo > max_len) max_len = hi - lo;
  }
  if (OFFSET_AT(batch) != total)
    return JSDPA_INVALID("%s.offsets[%" PRId64 "] (the last) is %" PRId64
                         " but %s.total_tokens is %" PRId64,
                         name, batch, OFFSET_AT(batch), name, total);
#undef OFFSET_AT
  *out_min = min_len;
  *out_max = max_len;
  return NULL;
}

/* options.validate_device_offsets: copies device offsets to the host (after the
 * caller's stream has produced them) and checks them like host offsets. */
static jsdpa_status_t check_device_offsets(jsdpa_context_t* ctx, const jsdpa_forward_options_t* o,
                                           const char* name, const jsdpa_jagged_t* t,
                                           int64_t* out_min, int64_t* out_max) {
  if (!ctx->gpu)
    return jsdpa_make_status(JSDPA_STATUS_UNAVAILABLE,
                             "options.validate_device_offsets: %s.offsets is in device memory but "
                             "the context has no GPU: %s",
                             name, ctx->gpu_reason);
  size_t bytes = (size_t)(t->batch + 1) * (t->offsets_type == JSDPA_INDEX_INT32 ? 4 : 8);
  void* host = malloc(bytes);
  if (!host)
    return jsdpa_make_status(JSDPA_STATUS_OUT_OF_MEMORY, "%zu bytes to copy %s.offsets", bytes,
                             name);
  jsdpa_status_t s = jsdpa_context_push(ctx);
  if (!s) {
    CUresult r = ctx->cu->cuStreamSynchronize((CUstream)o->stream);
    if (r != CUDA_SUCCESS) {
      s = jsdpa_cuda_status(r, "cuStreamSynchronize(options.stream)", __FILE__, __LINE__);
    } else {
      r = ctx->cu->cuMemcpyDtoH(host, (CUdeviceptr)(uintptr_t)t->offsets, bytes);
      if (r != CUDA_SUCCESS) s = jsdpa_cuda_status(r, "cuMemcpyDtoH(offsets)", __FILE__, __LINE__);
    }
    jsdpa_context_pop(ctx);
  }
  if (!s)
    s = check_host_offsets(name, host, t->offsets_type, t->batch, t->total_tokens, out_min,
                           out_max);
  free(host);
  return s;
}

static const char* memory_text(jsdpa_memory_t memory, int device, char* buf, size_t capacity) {
  if (memory == JSDPA_MEMORY_HOST) return "host memory";
  snprintf(buf, capacity, "device %d memory", device);
  return buf;
}

static jsdpa_status_t check_options(const jsdpa_forward_options_t* o) {
  if (!isnan(o->scale) && !isfinite(o->scale))
    return JSDPA_INVALID("options.scale (%g) is not finite (NaN selects 1/sqrt(head_dim))",
                         o->scale);
  if (fabs(o->scale) > FLT_MAX)
    return JSDPA_INVALID("options.scale (%g) does not fit in float", o->scale);
  if (o->window_left < -1)
    return JSDPA_INVALID("options.window_left (%" PRId64 ") must be -1 (unlimited) or >= 0",
                         o->window_left);
  if (o->window_right < -1)
    return JSDPA_INVALID("options.window_right (%" PRId64 ") must be -1 (unlimited) or >= 0",
                         o->window_right);
  if (!isfinite(o->softcap) || o->softcap < 0)
    return JSDPA_INVALID("options.softcap (%g) must be finite and >= 0 (0 = off)",
                         (double)o->softcap);
  if ((int)o->backend < 0 || o->backend >= JSDPA_BACKEND_COUNT)
    return JSDPA_INVALID("options.backend (%d) is not a jsdpa_backend_t", (int)o->backend);
  if (o->precision != JSDPA_PRECISION_DEFAULT && o->precision != JSDPA_PRECISION_FP64 &&
      o->precision != JSDPA_PRECISION_TF32)
    return JSDPA_INVALID("options.precision (%d) is not a jsdpa_precision_t", (int)o->precision);
  return NULL;
}

/* Shapes and types shared between tensors. */
static jsdpa_status_t check_consistency(const tensor_t* q, const tensor_t* k, const tensor_t* v,
                                        const tensor_t* o) {
  const tensor_t* others[] = {k, v, o};
  for (int i = 0; i < 3; ++i)
    if (others[i]->t.dtype != q->t.dtype)
      return JSDPA_INVALID("%s.dtype (%s) differs from q.dtype (%s)", others[i]->name,
                           jsdpa_dtype_name(others[i]->t.dtype), jsdpa_dtype_name(q->t.dtype));
  if (k->t.head_dim != q->t.head_dim)
    return JSDPA_INVALID("k.head_dim (%" PRId64 ") differs from q.head_dim (%" PRId64 ")",
                         k->t.head_dim, q->t.head_dim);
  if (v->t.heads != k->t.heads)
    return JSDPA_INVALID("v.heads (%" PRId64 ") differs from k.heads (%" PRId64 ")", v->t.heads,
                         k->t.heads);
  if (q->t.heads % k->t.heads != 0)
    return JSDPA_INVALID("q.heads (%" PRId64 ") is not a multiple of k.heads (%" PRId64 ")",
                         q->t.heads, k->t.heads);
  if (o->t.heads != q->t.heads)
    return JSDPA_INVALID("out.heads (%" PRId64 ") differs from q.heads (%" PRId64 ")", o->t.heads,
                         q->t.heads);
  if (o->t.head_dim != v->t.head_dim)
    return JSDPA_INVALID("out.head_dim (%" PRId64 ") differs from v.head_dim (%" PRId64 ")",
                         o->t.head_dim, v->t.head_dim);
  if (v->t.total_tokens != k->t.total_tokens)
    return JSDPA_INVALID("v.total_tokens (%" PRId64 ") differs from k.total_tokens (%" PRId64 ")",
                         v->t.total_tokens, k->t.total_tokens);
  if (o->t.total_tokens != q->t.total_tokens)
    return JSDPA_INVALID("out.total_tokens (%" PRId64 ") differs from q.total_tokens (%" PRId64 ")",
                         o->t.total_tokens, q->t.total_tokens);

  /* Batch and offsets: out shares q's (its own are ignored), v shares k's. */
  if (q->t.batch < 0 || q->t.batch > JSDPA_MAX_BATCH)
    return JSDPA_INVALID("q.batch (%" PRId64 ") must be in [0, %d]", q->t.batch, JSDPA_MAX_BATCH);
  if (k->t.batch != q->t.batch)
    return JSDPA_INVALID("k.batch (%" PRId64 ") differs from q.batch (%" PRId64 ")", k->t.batch,
                         q->t.batch);
  if (v->t.batch != k->t.batch)
    return JSDPA_INVALID("v.batch (%" PRId64 ") differs from k.batch (%" PRId64 ")", v->t.batch,
                         k->t.batch);
  const tensor_t* with_offsets[] = {q, k};
  for (int i = 0; i < 2; ++i) {
    const jsdpa_jagged_t* t = &with_offsets[i]->t;
    const char* n = with_offsets[i]->name;
    if (!t->offsets)
      return JSDPA_INVALID("%s.offsets is NULL (%s.batch + 1 = %" PRId64 " integers are needed)", n,
                           n, t->batch + 1);
    if (!index_type_valid(t->offsets_type))
      return JSDPA_INVALID("%s.offsets_type (%d) is not a jsdpa_index_type_t", n,
                           (int)t->offsets_type);
    size_t align = t->offsets_type == JSDPA_INDEX_INT32 ? 4 : 8;
    if ((uintptr_t)t->offsets % align != 0)
      return JSDPA_INVALID("%s.offsets (%p) is not aligned to its index size (%zu bytes)", n,
                           t->offsets, align);
    if (t->max_seqlen < -1 || t->max_seqlen > t->total_tokens)
      return JSDPA_INVALID("%s.max_seqlen (%" PRId64
                           ") must be -1 (unknown) or in [0, %s.total_tokens = %" PRId64 "]",
                           n, t->max_seqlen, n, t->total_tokens);
  }
  if (v->t.offsets && (v->t.offsets != k->t.offsets || v->t.offsets_type != k->t.offsets_type))
    return JSDPA_INVALID(
        "v.offsets (%p, type %d) differs from k.offsets (%p, type %d): v shares "
        "k's offsets, pass NULL or the same pointer and type",
        v->t.offsets, (int)v->t.offsets_type, k->t.offsets, (int)k->t.offsets_type);
  return NULL;
}

/* Where every buffer lives: the data together (host, or one device), offsets
 * on the host or that device, out_lse with the data. */
static jsdpa_status_t check_memory(jsdpa_context_t* ctx, tensor_t* const all[4], const float* lse,
                                   jsdpa_call_t* call) {
  const tensor_t* first = NULL;
  int first_device = -1;
  jsdpa_memory_t first_memory = JSDPA_MEMORY_HOST;
  char b1[32], b2[32];
  for (int i = 0; i < 4; ++i) {
    if (!all[i]->t.data) continue;
    int device = -1;
    jsdpa_memory_t m = jsdpa_pointer_memory(ctx, all[i]->t.data, &device);
    if (!first) {
      first = all[i];
      first_memory = m;
      first_device = device;
    } else if (m != first_memory || device != first_device) {
      return JSDPA_INVALID("%s.data is in %s but %s.data is in %s", all[i]->name,
                           memory_text(m, device, b1, sizeof(b1)), first->name,
                           memory_text(first_memory, first_device, b2, sizeof(b2)));
    }
  }
  call->memory = first_memory;
  call->device = first_device;
  if (lse) {
    int device = -1;
    jsdpa_memory_t m = jsdpa_pointer_memory(ctx, lse, &device);
    if (first && (m != first_memory || device != first_device))
      return JSDPA_INVALID("out_lse is in %s but the data is in %s",
                           memory_text(m, device, b1, sizeof(b1)),
                           memory_text(first_memory, first_device, b2, sizeof(b2)));
    if (!first) {
      call->memory = m;
      call->device = device;
    }
  } else if (!first) {
    /* Every tensor is empty and has no data pointer (an empty batch from a
     * framework): the call runs where q's offsets live. */
    call->memory = jsdpa_pointer_memory(ctx, all[0]->t.offsets, &call->device);
  }
  const char* data_memory = memory_text(call->memory, call->device, b2, sizeof(b2));
  if (call->memory == JSDPA_MEMORY_DEVICE && all[0]->t.dtype == JSDPA_DTYPE_FP64)
    return JSDPA_INVALID("q.dtype is fp64, which only the cpu backend runs, but the data is in %s",
                         data_memory);

  const tensor_t* with_offsets[] = {all[0], all[1]};
  jsdpa_memory_t* offsets_memory[] = {&call->q_offsets_memory, &call->kv_offsets_memory};
  for (int i = 0; i < 2; ++i) {
    int device = -1;
    jsdpa_memory_t m = jsdpa_pointer_memory(ctx, with_offsets[i]->t.offsets, &device);
    *offsets_memory[i] = m;
    if (m == JSDPA_MEMORY_HOST) continue;
    if (call->memory == JSDPA_MEMORY_HOST)
      return JSDPA_INVALID(
          "%s.offsets is in %s but the data is in host memory (offsets on the "
          "device need the data on the device)",
          with_offsets[i]->name, memory_text(m, device, b1, sizeof(b1)));
    if (device != call->device)
      return JSDPA_INVALID("%s.offsets is in %s but the data is in %s", with_offsets[i]->name,
                           memory_text(m, device, b1, sizeof(b1)), data_memory);
  }
  return NULL;
}

/* out and out_lse must not share memory with the inputs (nor with each
 * other): the backends read inputs while writing outputs. */
static jsdpa_status_t check_aliasing(tensor_t* const all[4], const float* lse, int64_t lse_bytes) {
  const tensor_t* o = all[3];
  for (int i = 0; i < 3; ++i)
    if (ranges_overlap(all[i], o->begin, o->end))
      return JSDPA_INVALID(
          "out (bytes %p..%p) overlaps %s (bytes %p..%p): the output must not "
          "alias an input",
          (void*)o->begin, (void*)o->end, all[i]->name, (void*)all[i]->begin, (void*)all[i]->end);
  if (!lse || lse_bytes == 0) return NULL;
  uintptr_t begin = (uintptr_t)lse, end = begin + (uintptr_t)lse_bytes;
  for (int i = 0; i < 4; ++i)
    if (ranges_overlap(all[i], begin, end))
      return JSDPA_INVALID("out_lse (bytes %p..%p) overlaps %s (bytes %p..%p)", (void*)begin,
                           (void*)end, all[i]->name, (void*)all[i]->begin, (void*)all[i]->end);
  return NULL;
}

jsdpa_status_t jsdpa_validate(jsdpa_context_t* ctx, const jsdpa_forward_options_t* options,
                              const jsdpa_jagged_t* q, const jsdpa_jagged_t* k,
                              const jsdpa_jagged_t* v, const jsdpa_jagged_t* out,
                              const float* out_lse, jsdpa_call_t* out_call) {
  if (!ctx) return JSDPA_INVALID("context is NULL");
  if (!options)
    return JSDPA_INVALID("options is NULL (fill one with jsdpa_forward_options_initialize)");
  if (!q) return JSDPA_INVALID("q is NULL");
  if (!k) return JSDPA_INVALID("k is NULL");
  if (!v) return JSDPA_INVALID("v is NULL");
  if (!out) return JSDPA_INVALID("out is NULL");
  JSDPA_RETURN_IF_ERROR(check_options(options));

  tensor_t tq = {"q", *q, 0, 0}, tk = {"k", *k, 0, 0}, tv = {"v", *v, 0, 0},
           to = {"out", *out, 0, 0};
  tensor_t* const all[4] = {&tq, &tk, &tv, &to};
  for (int i = 0; i < 4; ++i) JSDPA_RETURN_IF_ERROR(check_tensor(all[i]));
  JSDPA_RETURN_IF_ERROR(check_consistency(&tq, &tk, &tv, &to));
  JSDPA_RETURN_IF_ERROR(check_no_self_overlap(&to));
  if (out_lse && (uintptr_t)out_lse % sizeof(float) != 0)
    return JSDPA_INVALID("out_lse (%p) is not aligned to 4 bytes", (const void*)out_lse);
  /* No overflow: total_tokens < 2^31 and heads <= 65535. */
  const int64_t lse_bytes = q->total_tokens * q->heads * (int64_t)sizeof(float);
  JSDPA_RETURN_IF_ERROR(check_aliasing(all, out_lse, lse_bytes));

  jsdpa_call_t call;
  memset(&call, 0, sizeof(call));
  JSDPA_RETURN_IF_ERROR(check_memory(ctx, all, out_lse, &call));

  call.max_q_len = call.min_q_len = call.max_kv_len = call.min_kv_len = -1;
  const tensor_t* with_offsets[] = {&tq, &tk};
  int64_t* mins[] = {&call.min_q_len, &call.min_kv_len};
  int64_t* maxs[] = {&call.max_q_len, &call.max_kv_len};
  jsdpa_memory_t memories[] = {call.q_offsets_memory, call.kv_offsets_memory};
  for (int i = 0; i < 2; ++i) {
    const jsdpa_jagged_t* t = &with_offsets[i]->t;
    const char* n = with_offsets[i]->name;
    if (memories[i] == JSDPA_MEMORY_HOST) {
      JSDPA_RETURN_IF_ERROR(check_host_offsets(n, t->offsets, t->offsets_type, t->batch,
                                               t->total_tokens, mins[i], maxs[i]));
    } else if (options->validate_device_offsets) {
      JSDPA_RETURN_IF_ERROR(check_device_offsets(ctx, options, n, t, mins[i], maxs[i]));
    } else {
      /* Checked by the prep kernel on the device; the caller's bound (if any)
       * sizes the launch meanwhile. */
      *maxs[i] = t->max_seqlen;
      continue;
    }
    if (t->max_seqlen >= 0 && t->max_seqlen < *maxs[i])
      return JSDPA_INVALID("%s.max_seqlen (%" PRId64
                           ") is less than the longest %s sequence (%" PRId64 ")",
                           n, t->max_seqlen, n, *maxs[i]);
  }

  call.q = tq.t;
  call.k = tk.t;
  call.v = tv.t;
  call.o = to.t;
  /* out's batch and offsets are q's (the header says out's are ignored). */
  call.o.offsets = q->offsets;
  call.o.offsets_type = q->offsets_type;
  call.o.batch = q->batch;
  call.o.max_seqlen = q->max_seqlen;
  call.v.offsets = k->offsets;
  call.v.offsets_type = k->offsets_type;
  call.lse = (float*)out_lse;
  call.options = *options;
  call.scale = isnan(options->scale) ? 1.0 / sqrt((double)q->head_dim) : options->scale;
  call.options.scale = call.scale;
  /* A window past every sequence is no window; folding such values into -1
   * keeps them inside the kernels' int32 parameters. */
  if (call.options.window_left > JSDPA_MAX_TOTAL_TOKENS) call.options.window_left = -1;
  if (call.options.window_right > JSDPA_MAX_TOTAL_TOKENS) call.options.window_right = -1;
  call.window = call.options.window_left >= 0 || call.options.window_right >= 0;
  call.batch = q->batch;
  call.total_q = q->total_tokens;
  call.total_kv = k->total_tokens;
  call.heads = q->heads;
  call.kv_heads = k->heads;
  call.head_dim = q->head_dim;
  call.head_dim_v = v->head_dim;
  *out_call = call;
  return NULL;
}
