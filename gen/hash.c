/* SHA-256 through OpenSSL's libcrypto (EVP), so the cache key and the manifest
 * hash come from a maintained implementation rather than a hand-rolled one. */
#include <openssl/evp.h>
#include <stdlib.h>

#include "jsdpa_gen.h"

void jsdpa_gen_sha256_init(jsdpa_gen_sha256_t* h) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) abort();
  h->ctx = ctx;
}

void jsdpa_gen_sha256_update(jsdpa_gen_sha256_t* h, const void* data, size_t length) {
  if (length && EVP_DigestUpdate((EVP_MD_CTX*)h->ctx, data, length) != 1) abort();
}

void jsdpa_gen_sha256_final(jsdpa_gen_sha256_t* h, uint8_t out[32]) {
  unsigned int n = 0;
  if (EVP_DigestFinal_ex((EVP_MD_CTX*)h->ctx, out, &n) != 1 || n != 32) abort();
  EVP_MD_CTX_free((EVP_MD_CTX*)h->ctx);
  h->ctx = NULL;
}

void jsdpa_gen_hex(const uint8_t* bytes, size_t n, char* out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * n] = '\0';
}

void jsdpa_gen_sha256_hex(const void* data, size_t length, char out_hex[65]) {
  jsdpa_gen_sha256_t h;
  uint8_t digest[32];
  jsdpa_gen_sha256_init(&h);
  jsdpa_gen_sha256_update(&h, data, length);
  jsdpa_gen_sha256_final(&h, digest);
  jsdpa_gen_hex(digest, 32, out_hex);
}
