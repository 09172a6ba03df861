// The repository's per-byte work in C (src/repo/native-codec.ts): the chunker's gear-hash scan, blob
// ids (HMAC-SHA-256), pack names (SHA-256), and sealing and opening blobs (zstd, AES-256-GCM). Hashing, sealing and opening
// run on libuv's thread pool, so they use every core without worker isolates, message copies or the
// garbage those leave behind. OpenSSL is Node's own (its symbols are exported by the node binary);
// zstd is compiled from the sources zstd-napi ships (the same pinned version the JS side used).
//
// Formats are those of docs/design/repository-format.md, unchanged: a sealed blob is
// nonce(12) ‖ AES-256-GCM(flag(1) ‖ payload) ‖ tag(16), flag 0 = raw, 1 = one zstd frame.
#define NAPI_VERSION 8
// HMAC_CTX is deprecated in OpenSSL 3 in favour of EVP_MAC, but it is what the node binary exports
// most simply and it is not going away within 3.x.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __linux__
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <zstd.h>

#define NONCE_BYTES 12
#define TAG_BYTES 16
#define SEAL_OVERHEAD (NONCE_BYTES + 1 + TAG_BYTES)
/** Chunks at least this large are first probed on samples to skip hopeless compression. */
#define PROBE_MIN_BYTES (256 * 1024)
#define PROBE_SAMPLE (16 * 1024)

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "bunker-codec: bad arguments");     \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

typedef struct {
  uint8_t enc_key[32];
  uint8_t id_key[32];
} Keys;

// One compression and one decompression context per pool thread, reused for every blob: creating
// them per call would allocate and zero megabytes of tables each time.
static __thread ZSTD_CCtx *thread_cctx;
static __thread ZSTD_DCtx *thread_dctx;

static ZSTD_CCtx *cctx(void) {
  if (!thread_cctx) thread_cctx = ZSTD_createCCtx();
  return thread_cctx;
}

static ZSTD_DCtx *dctx(void) {
  if (!thread_dctx) thread_dctx = ZSTD_createDCtx();
  return thread_dctx;
}

// ---------- keys ----------

static void free_keys(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  OPENSSL_cleanse(data, sizeof(Keys));
  free(data);
}

/** keys(encKey: Buffer(32), idKey: Buffer(32)) → an opaque handle holding copies of both keys. */
static napi_value create_keys(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *enc, *id;
  size_t enc_len, id_len;
  if (argc != 2 || napi_get_buffer_info(env, argv[0], &enc, &enc_len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &id, &id_len) != napi_ok || enc_len != 32 || id_len != 32) {
    napi_throw_type_error(env, NULL, "keys(encKey, idKey): two 32-byte Buffers expected");
    return NULL;
  }
  Keys *keys = malloc(sizeof(Keys));
  if (!keys) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  memcpy(keys->enc_key, enc, 32);
  memcpy(keys->id_key, id, 32);
  napi_value handle;
  CHECK(napi_create_external(env, keys, free_keys, NULL, &handle));
  return handle;
}

static Keys *get_keys(napi_env env, napi_value v) {
  void *keys = NULL;
  if (napi_get_value_external(env, v, &keys) != napi_ok) return NULL;
  return keys;
}

// ---------- chunker scan ----------

/**
 * scan(data, from, stop, mask, gear: Int32Array(256), state: Int32Array(1)) → index just past the
 * first cut in [from, stop), or -1. state[0] carries the rolling hash in and out. Same arithmetic as
 * the JS reference in chunker.ts (32-bit wrap-around), so boundaries and golden vectors are unchanged.
 */
static napi_value scan(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6) {
    napi_throw_type_error(env, NULL, "scan: 6 arguments expected");
    return NULL;
  }
  void *data;
  size_t len;
  int64_t from, stop;
  int32_t mask;
  napi_typedarray_type gtype, stype;
  size_t glen, slen;
  void *gdata, *sdata;
  CHECK(napi_get_buffer_info(env, argv[0], &data, &len));
  CHECK(napi_get_value_int64(env, argv[1], &from));
  CHECK(napi_get_value_int64(env, argv[2], &stop));
  CHECK(napi_get_value_int32(env, argv[3], &mask));
  CHECK(napi_get_typedarray_info(env, argv[4], &gtype, &glen, &gdata, NULL, NULL));
  CHECK(napi_get_typedarray_info(env, argv[5], &stype, &slen, &sdata, NULL, NULL));
  if (gtype != napi_int32_array || glen != 256 || stype != napi_int32_array || slen < 1 || from < 0 || stop < from ||
      (size_t)stop > len) {
    napi_throw_range_error(env, NULL, "scan: bad range, gear table or state");
    return NULL;
  }
  const uint8_t *p = data;
  const uint32_t *gear = gdata;
  uint32_t h = (uint32_t)((int32_t *)sdata)[0];
  const uint32_t m = (uint32_t)mask;
  int64_t cut = -1;
  int64_t i = from;
  // Four positions per step, each with exactly the hash h = (h << 1) + G[byte] would give there:
  // h after byte k of the step is (h << k) plus a sum of the step's gear values that does not depend
  // on h. The loop-carried chain is then one shift and one add per four bytes instead of per byte
  // (1.75 → 2.07 GB/s here; the byte and table loads now bound it), and every position is still
  // tested, so the cuts are the same.
  for (; i + 4 <= stop; i += 4) {
    const uint32_t s1 = gear[p[i]];
    const uint32_t s2 = (s1 << 1) + gear[p[i + 1]];
    const uint32_t s3 = (s2 << 1) + gear[p[i + 2]];
    const uint32_t s4 = (s3 << 1) + gear[p[i + 3]];
    const uint32_t h1 = (h << 1) + s1, h2 = (h << 2) + s2, h3 = (h << 3) + s3, h4 = (h << 4) + s4;
    if (((h1 & m) == 0) | ((h2 & m) == 0) | ((h3 & m) == 0) | ((h4 & m) == 0)) {
      if ((h1 & m) == 0) { h = h1; cut = i + 1; }
      else if ((h2 & m) == 0) { h = h2; cut = i + 2; }
      else if ((h3 & m) == 0) { h = h3; cut = i + 3; }
      else { h = h4; cut = i + 4; }
      break;
    }
    h = h4;
  }
  for (; cut < 0 && i < stop; i++) {
    h = (h << 1) + gear[p[i]];
    if ((h & m) == 0) cut = i + 1;
  }
  ((int32_t *)sdata)[0] = (int32_t)h;
  napi_value result;
  CHECK(napi_create_int64(env, cut, &result));
  return result;
}

// ---------- blob work on the thread pool ----------

typedef enum { OP_HASH, OP_HASH2, OP_SEAL, OP_OPEN, OP_SHA256 } OpKind;

typedef struct {
  OpKind kind;
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;    // the input (a Uint8Array or an array of them), alive until the op settles
  napi_ref keys_ref;
  const Keys *keys;
  // The input as parts, in order (one part for a plain Uint8Array). Seal and open see them joined in
  // `in` (no copy for a single part); hashes run over the parts as they are.
  size_t part_count;
  const uint8_t **parts;
  size_t *part_lens;
  const uint8_t *in;
  size_t in_len;
  uint8_t *joined;       // the allocation behind `in` when several parts were joined
  int level;             // seal: zstd level, 0 = never compress
  size_t expected_len;   // open: the plaintext length the index records
  bool in_place;         // open: the caller owns the sealed bytes and lets them be decrypted over
  // seal, open: the blob's id, authenticated as GCM associated data (format 3), which binds the
  // ciphertext to the id it is stored under. Open then recomputes the HMAC id only when asked.
  bool has_aad;
  uint8_t aad[32];
  bool hash_plain;       // open: recompute the plaintext's HMAC id into `id`
  // results
  uint8_t id[32];
  uint8_t id2[32];       // hash2: the second chunk's id
  uint8_t *out;          // allocation handed to the result Buffer (freed by its finalizer)
  size_t out_len;
  size_t out_offset;     // open in place, raw blob: the plaintext is the input at this offset (out NULL)
  int compressed;
  const char *error;
} Op;

static void free_op_input(Op *op) {
  free(op->parts);
  free(op->part_lens);
  free(op->joined);
  op->parts = NULL;
  op->part_lens = NULL;
  op->joined = NULL;
}

/** Reads `value` (a Uint8Array, or an array of them) into op's parts; false when it is neither. */
static bool parse_input(napi_env env, napi_value value, Op *op) {
  bool is_array = false;
  uint32_t count = 1;
  if (napi_is_array(env, value, &is_array) != napi_ok) return false;
  if (is_array && napi_get_array_length(env, value, &count) != napi_ok) return false;
  op->part_count = count;
  op->parts = calloc(count ? count : 1, sizeof *op->parts);
  op->part_lens = calloc(count ? count : 1, sizeof *op->part_lens);
  if (!op->parts || !op->part_lens) return false;
  size_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value part = value;
    napi_typedarray_type type;
    void *data = NULL;
    if (is_array && napi_get_element(env, value, i, &part) != napi_ok) return false;
    if (napi_get_typedarray_info(env, part, &type, &op->part_lens[i], &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
      return false;
    }
    op->parts[i] = data;
    total += op->part_lens[i];
  }
  if (total > INT32_MAX) return false;
  op->in_len = total;
  op->in = count == 1 ? op->parts[0] : NULL;
  return true;
}

/** Gives seal and open one contiguous input (runs on the pool thread, so the copy costs no main-thread time). */
static bool join_input(Op *op) {
  if (op->in || op->in_len == 0) {
    if (!op->in) op->in = (const uint8_t *)"";
    return true;
  }
  op->joined = malloc(op->in_len);
  if (!op->joined) return false;
  size_t at = 0;
  for (size_t i = 0; i < op->part_count; i++) {
    memcpy(op->joined + at, op->parts[i], op->part_lens[i]);
    at += op->part_lens[i];
  }
  op->in = op->joined;
  return true;
}

static void hmac_id(const Keys *keys, const uint8_t *data, size_t len, uint8_t out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), keys->id_key, 32, data, len, out, &n);
}

static void hmac_parts(Op *op) {
  if (op->part_count == 1) return hmac_id(op->keys, op->parts[0], op->part_lens[0], op->id);
  HMAC_CTX *h = HMAC_CTX_new();
  unsigned int n = 32;
  int ok = h && HMAC_Init_ex(h, op->keys->id_key, 32, EVP_sha256(), NULL) == 1;
  for (size_t i = 0; ok && i < op->part_count; i++) ok = HMAC_Update(h, op->parts[i], op->part_lens[i]) == 1;
  ok = ok && HMAC_Final(h, op->id, &n) == 1;
  HMAC_CTX_free(h);
  if (!ok) op->error = "hmac failed";
}

// ---------- two HMAC ids at once (SHA-NI) ----------
// The SHA-256 round instruction has a 4-cycle latency here, so hashing one message leaves the SHA unit
// half idle (1.65 GB/s per thread, the same as OpenSSL's). Two chunks hashed block by block in one
// thread run at ~2.5 GB/s. Same HMAC-SHA-256, so the same ids; without SHA-NI, two plain HMACs.

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_HASH2 1

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
static const uint32_t SHA256_IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/** A SHA-256 state as SHA-NI keeps it: abef = (a, b, e, f), cdgh = (c, d, g, h). */
typedef struct {
  __m128i abef, cdgh;
} ShaState;

static bool cpu_has_sha(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) && __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) && (c & (1u << 9));
}

__attribute__((target("sha,sse4.1,ssse3"))) static ShaState sha_load(const uint32_t h[8]) {
  __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xB1);       // (b, a, d, c)
  __m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1B); // (h, g, f, e)
  return (ShaState){_mm_alignr_epi8(t, u, 8), _mm_blend_epi16(u, t, 0xF0)};
}

__attribute__((target("sha,sse4.1,ssse3"))) static void sha_store(ShaState s, uint8_t out[32]) {
  __m128i t = _mm_shuffle_epi32(s.abef, 0x1B);
  __m128i u = _mm_shuffle_epi32(s.cdgh, 0xB1);
  uint32_t h[8];
  _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(t, u, 0xF0));
  _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(u, t, 8));
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

#define SHA_LOAD(p, i) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (i))), bswap)
#define SHA_ROUNDS4(i, S, m)                                                                  \
  do {                                                                                        \
    __m128i k_ = _mm_add_epi32(m, _mm_loadu_si128((const __m128i *)&SHA256_K[i]));          \
    S.cdgh = _mm_sha256rnds2_epu32(S.cdgh, S.abef, k_);                                       \
    S.abef = _mm_sha256rnds2_epu32(S.abef, S.cdgh, _mm_shuffle_epi32(k_, 0x0e));             \
  } while (0)
#define SHA_NEXT(m0, m1, m2, m3) _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(m0, m1), _mm_alignr_epi8(m3, m2, 4)), m3)

/** One block into s; a second block into *t when t is not NULL, interleaved with the first. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha_blocks(ShaState *s, const uint8_t *p, ShaState *t, const uint8_t *q) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  ShaState S = *s, T = t ? *t : *s;
  const ShaState S0 = S, T0 = T;
  if (!q) q = p; // the second lane then repeats the first block and is thrown away
  __m128i m0 = SHA_LOAD(p, 0), m1 = SHA_LOAD(p, 1), m2 = SHA_LOAD(p, 2), m3 = SHA_LOAD(p, 3);
  __m128i n0 = SHA_LOAD(q, 0), n1 = SHA_LOAD(q, 1), n2 = SHA_LOAD(q, 2), n3 = SHA_LOAD(q, 3);
  for (int i = 0; i < 64; i += 16) {
    SHA_ROUNDS4(i, S, m0);
    SHA_ROUNDS4(i, T, n0);
    SHA_ROUNDS4(i + 4, S, m1);
    SHA_ROUNDS4(i + 4, T, n1);
    SHA_ROUNDS4(i + 8, S, m2);
    SHA_ROUNDS4(i + 8, T, n2);
    SHA_ROUNDS4(i + 12, S, m3);
    SHA_ROUNDS4(i + 12, T, n3);
    if (i < 48) {
      m0 = SHA_NEXT(m0, m1, m2, m3);
      n0 = SHA_NEXT(n0, n1, n2, n3);
      m1 = SHA_NEXT(m1, m2, m3, m0);
      n1 = SHA_NEXT(n1, n2, n3, n0);
      m2 = SHA_NEXT(m2, m3, m0, m1);
      n2 = SHA_NEXT(n2, n3, n0, n1);
      m3 = SHA_NEXT(m3, m0, m1, m2);
      n3 = SHA_NEXT(n3, n0, n1, n2);
    }
  }
  s->abef = _mm_add_epi32(S.abef, S0.abef);
  s->cdgh = _mm_add_epi32(S.cdgh, S0.cdgh);
  if (t) {
    t->abef = _mm_add_epi32(T.abef, T0.abef);
    t->cdgh = _mm_add_epi32(T.cdgh, T0.cdgh);
  }
}

/** The padded message of an HMAC's inner hash (after the key block), 64 bytes at a time, across parts. */
typedef struct {
  const uint8_t *const *parts;
  const size_t *lens;
  size_t count, part, off, left; // left: message bytes not yet handed out
  uint8_t buf[64], tail[128];
  int tail_blocks, tail_at;
} Feed;

static void feed_init(Feed *f, const uint8_t *const *parts, const size_t *lens, size_t count) {
  memset(f, 0, sizeof *f);
  f->parts = parts;
  f->lens = lens;
  f->count = count;
  for (size_t i = 0; i < count; i++) f->left += lens[i];
  f->tail_blocks = -1;
}

static void feed_copy(Feed *f, uint8_t *dst, size_t n) {
  while (n > 0) {
    const size_t avail = f->lens[f->part] - f->off;
    if (avail == 0) {
      f->part++;
      f->off = 0;
      continue;
    }
    const size_t take = avail < n ? avail : n;
    memcpy(dst, f->parts[f->part] + f->off, take);
    f->off += take;
    dst += take;
    n -= take;
  }
}

/** The next block, or NULL after the last; the message with the key block before it is `total` bytes. */
static const uint8_t *feed_next(Feed *f, uint64_t total) {
  if (f->left >= 64) {
    f->left -= 64;
    while (f->off == f->lens[f->part]) {
      f->part++;
      f->off = 0;
    }
    if (f->lens[f->part] - f->off >= 64) {
      f->off += 64;
      return f->parts[f->part] + f->off - 64;
    }
    feed_copy(f, f->buf, 64);
    return f->buf;
  }
  if (f->tail_blocks < 0) { // the last bytes, 0x80, zeros and the bit length: one or two blocks
    const size_t r = f->left;
    memset(f->tail, 0, sizeof f->tail);
    feed_copy(f, f->tail, r);
    f->left = 0;
    f->tail[r] = 0x80;
    f->tail_blocks = r + 9 <= 64 ? 1 : 2;
    const uint64_t bits = total * 8;
    for (int i = 0; i < 8; i++) f->tail[64 * f->tail_blocks - 1 - i] = (uint8_t)(bits >> (8 * i));
  }
  return f->tail_at < f->tail_blocks ? f->tail + 64 * f->tail_at++ : NULL;
}

/** HMAC-SHA-256 of two messages (each a list of parts) at once. */
__attribute__((target("sha,sse4.1,ssse3"))) static void hmac2(const Keys *keys, const uint8_t *const *parts, const size_t *lens, size_t count_a,
                                                              size_t count, uint8_t id_a[32], uint8_t id_b[32]) {
  uint8_t pad[64];
  ShaState iv = sha_load(SHA256_IV), inner = iv, outer = iv;
  memset(pad, 0x36, 64);
  for (int i = 0; i < 32; i++) pad[i] ^= keys->id_key[i];
  sha_blocks(&inner, pad, NULL, NULL);
  memset(pad, 0x5c, 64);
  for (int i = 0; i < 32; i++) pad[i] ^= keys->id_key[i];
  sha_blocks(&outer, pad, NULL, NULL);
  OPENSSL_cleanse(pad, sizeof pad);

  Feed fa, fb;
  feed_init(&fa, parts, lens, count_a);
  feed_init(&fb, parts + count_a, lens + count_a, count - count_a);
  const uint64_t total_a = 64 + fa.left, total_b = 64 + fb.left;
  ShaState a = inner, b = inner;
  for (;;) {
    const uint8_t *p = feed_next(&fa, total_a);
    const uint8_t *q = p ? feed_next(&fb, total_b) : NULL;
    if (!p || !q) {
      if (p) sha_blocks(&a, p, NULL, NULL);
      for (const uint8_t *r; (r = feed_next(&fa, total_a));) sha_blocks(&a, r, NULL, NULL);
      for (const uint8_t *r; (r = feed_next(&fb, total_b));) sha_blocks(&b, r, NULL, NULL);
      break;
    }
    sha_blocks(&a, p, &b, q);
  }
  // Outer hash: the key block, then the inner digest padded to one block (96 bytes in all).
  uint8_t block[2][64];
  memset(block, 0, sizeof block);
  sha_store(a, block[0]);
  sha_store(b, block[1]);
  for (int k = 0; k < 2; k++) {
    block[k][32] = 0x80;
    block[k][62] = (96 * 8) >> 8;
    block[k][63] = (uint8_t)(96 * 8);
  }
  ShaState oa = outer, ob = outer;
  sha_blocks(&oa, block[0], &ob, block[1]);
  sha_store(oa, id_a);
  sha_store(ob, id_b);
}
#endif

static bool hash2_fast;

/** Both ids of an OP_HASH2 op: the first `split` parts are one chunk, the rest the other. */
static void hmac_two(Op *op) {
  const size_t split = (size_t)op->level;
  if (split > op->part_count) {
    op->error = "hash2: bad split";
    return;
  }
#ifdef HAVE_HASH2
  if (hash2_fast) return hmac2(op->keys, op->parts, op->part_lens, split, op->part_count, op->id, op->id2);
#endif
  HMAC_CTX *h = HMAC_CTX_new();
  unsigned int n = 32;
  int ok = h != NULL;
  for (int k = 0; ok && k < 2; k++) {
    const size_t from = k ? split : 0, to = k ? op->part_count : split;
    ok = HMAC_Init_ex(h, op->keys->id_key, 32, EVP_sha256(), NULL) == 1;
    for (size_t i = from; ok && i < to; i++) ok = HMAC_Update(h, op->parts[i], op->part_lens[i]) == 1;
    ok = ok && HMAC_Final(h, k ? op->id2 : op->id, &n) == 1;
  }
  HMAC_CTX_free(h);
  if (!ok) op->error = "hmac failed";
}

static void sha256_parts(Op *op) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned int n = 32;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  for (size_t i = 0; ok && i < op->part_count; i++) ok = EVP_DigestUpdate(md, op->parts[i], op->part_lens[i]) == 1;
  ok = ok && EVP_DigestFinal_ex(md, op->id, &n) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) op->error = "sha256 failed";
}

/** Copies bytes [from, from + n) of the op's input, whichever parts they lie in, to dst. */
static void copy_input(const Op *op, size_t from, uint8_t *dst, size_t n) {
  for (size_t i = 0; i < op->part_count && n > 0; i++) {
    const size_t part_len = op->part_lens[i];
    if (from >= part_len) {
      from -= part_len;
      continue;
    }
    const size_t take = part_len - from < n ? part_len - from : n;
    memcpy(dst, op->parts[i] + from, take);
    dst += take;
    n -= take;
    from = 0;
  }
}

/**
 * The zstd level a chunk gets: 0 when three 16 KiB samples don't shrink by 3 % at level 1 (compressing
 * the whole chunk won't pay), level 1 when the configured level compresses the samples no better
 * than level 1 does, else the configured level. Data such as random digits (sysbench's rows) comes
 * out ~10 % larger and 4-8x slower at level 3 than at level 1; text is 5-10 % smaller at level 3.
 */
static int choose_level(const Op *op) {
  const size_t len = op->in_len;
  if (len < PROBE_MIN_BYTES) return op->level;
  // Per pool thread, reused: the samples and their compressed output (~96 KiB together).
  static __thread uint8_t *scratch;
  const size_t sample_len = 3 * PROBE_SAMPLE, out_len = ZSTD_compressBound(3 * PROBE_SAMPLE);
  if (!scratch && !(scratch = malloc(sample_len + out_len))) return op->level;
  copy_input(op, 0, scratch, PROBE_SAMPLE);
  copy_input(op, len / 2 - PROBE_SAMPLE / 2, scratch + PROBE_SAMPLE, PROBE_SAMPLE);
  copy_input(op, len - PROBE_SAMPLE, scratch + 2 * PROBE_SAMPLE, PROBE_SAMPLE);
  const size_t z1 = ZSTD_compressCCtx(cctx(), scratch + sample_len, out_len, scratch, sample_len, 1);
  if (ZSTD_isError(z1) || z1 >= sample_len * 97 / 100) return 0;
  if (op->level <= 1) return op->level;
  const size_t zl = ZSTD_compressCCtx(cctx(), scratch + sample_len, out_len, scratch, sample_len, op->level);
  return !ZSTD_isError(zl) && zl < z1 ? op->level : 1;
}

/**
 * Compresses when it pays, then encrypts. The parts are joined only for compression: a chunk stored
 * raw (incompressible, or level 0) is encrypted part by part, with no copy of its megabyte(s).
 */
static void do_seal(Op *op) {
  const size_t len = op->in_len;
  uint8_t *z = NULL;
  size_t zlen = 0;
  const int level = op->level > 0 && len > 64 ? choose_level(op) : 0;
  if (level > 0) {
    const size_t bound = ZSTD_compressBound(len);
    if (!join_input(op) || !(z = malloc(bound))) {
      op->error = "out of memory";
      return;
    }
    zlen = ZSTD_compressCCtx(cctx(), z, bound, op->in, len, level);
    if (ZSTD_isError(zlen)) {
      free(z);
      op->error = "zstd compression failed";
      return;
    }
  }
  const int use_z = z && zlen > 0 && zlen < len * 97 / 100;
  const size_t plen = use_z ? zlen : len;
  uint8_t *out = malloc(SEAL_OVERHEAD + plen);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int n, ok = out && c && RAND_bytes(out, NONCE_BYTES) == 1 &&
              EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, op->keys->enc_key, out) == 1;
  const uint8_t flag = use_z ? 1 : 0;
  if (op->has_aad) ok = ok && EVP_EncryptUpdate(c, NULL, &n, op->aad, sizeof op->aad) == 1;
  ok = ok && EVP_EncryptUpdate(c, out + NONCE_BYTES, &n, &flag, 1) == 1;
  if (use_z) {
    ok = ok && EVP_EncryptUpdate(c, out + NONCE_BYTES + 1, &n, z, (int)plen) == 1;
  } else {
    size_t at = NONCE_BYTES + 1;
    for (size_t i = 0; ok && i < op->part_count; i++) {
      if (op->part_lens[i] == 0) continue;
      ok = EVP_EncryptUpdate(c, out + at, &n, op->parts[i], (int)op->part_lens[i]) == 1;
      at += (size_t)n;
    }
  }
  ok = ok && EVP_EncryptFinal_ex(c, out + NONCE_BYTES + 1 + plen, &n) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + 1 + plen) == 1;
  EVP_CIPHER_CTX_free(c);
  free(z);
  if (!ok) {
    free(out);
    op->error = "encryption failed";
    return;
  }
  op->out = out;
  op->out_len = SEAL_OVERHEAD + plen;
  op->compressed = use_z;
}

/**
 * Starts opening a sealed blob (at least SEAL_OVERHEAD bytes): authenticates `aad` (the blob's id, or
 * NULL) and decrypts the flag byte alone into *flag, so the caller can pick where the payload goes by
 * what it is. Returns the cipher context for open_finish(), or NULL (nothing to free).
 */
static EVP_CIPHER_CTX *open_begin(const Keys *keys, const uint8_t *in, const uint8_t *aad, uint8_t *flag) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int n;
  if (c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, keys->enc_key, in) == 1 && (!aad || EVP_DecryptUpdate(c, NULL, &n, aad, 32) == 1) &&
      EVP_DecryptUpdate(c, flag, &n, in + NONCE_BYTES, 1) == 1)
    return c;
  EVP_CIPHER_CTX_free(c);
  return NULL;
}

/** Decrypts the payload into `to` (which may be where it lies in `in`) and checks the tag; frees `c`. */
static bool open_finish(EVP_CIPHER_CTX *c, const uint8_t *in, size_t in_len, uint8_t *to) {
  uint8_t final_block[16];
  int n;
  const bool ok = EVP_DecryptUpdate(c, to, &n, in + NONCE_BYTES + 1, (int)(in_len - SEAL_OVERHEAD)) == 1 &&
                  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, (void *)(in + in_len - TAG_BYTES)) == 1 &&
                  EVP_DecryptFinal_ex(c, final_block, &n) == 1;
  EVP_CIPHER_CTX_free(c);
  return ok;
}

/**
 * Decompresses one zstd frame into exactly the length the index records: a frame that claims more is
 * refused rather than allocated (no decompression bombs), and one that gives less is damage.
 */
static bool decompress_exact(uint8_t *dst, size_t dst_len, const uint8_t *src, size_t src_len) {
  const size_t got = ZSTD_decompressDCtx(dctx(), dst, dst_len, src, src_len);
  return !ZSTD_isError(got) && got == dst_len;
}

static void do_open(Op *op) {
  if (op->in_len < SEAL_OVERHEAD) {
    op->error = "too short to be a sealed blob";
    return;
  }
  // The flag byte is decrypted on its own, so the payload lands at the start of its allocation and a
  // raw blob's plaintext needs no copy. In place (a single input part the caller gave up), the payload
  // is decrypted over its ciphertext: a raw blob's plaintext is then a view of the input, and a
  // restore of incompressible data allocates nothing per blob.
  const size_t payload_len = op->in_len - SEAL_OVERHEAD;
  const bool in_place = op->in_place && !op->joined;
  uint8_t *payload = in_place ? (uint8_t *)op->in + NONCE_BYTES + 1 : malloc(payload_len > 0 ? payload_len : 1);
  uint8_t flag = 0xff;
  EVP_CIPHER_CTX *c = payload ? open_begin(op->keys, op->in, op->has_aad ? op->aad : NULL, &flag) : NULL;
  if (!c || !open_finish(c, op->in, op->in_len, payload)) {
    if (!in_place) free(payload);
    op->error = "authentication failed";
    return;
  }
  const uint8_t *plain_at;
  if (flag == 0) {
    if (in_place) op->out_offset = NONCE_BYTES + 1;
    else op->out = payload;
    op->out_len = payload_len;
    plain_at = payload;
  } else if (flag == 1) {
    uint8_t *plain = malloc(op->expected_len > 0 ? op->expected_len : 1);
    const bool ok = plain && decompress_exact(plain, op->expected_len, payload, payload_len);
    if (!in_place) free(payload);
    if (!ok) {
      free(plain);
      op->error = "decompression failed or gave the wrong length";
      return;
    }
    op->out = plain;
    op->out_len = op->expected_len;
    plain_at = plain;
  } else {
    if (!in_place) free(payload);
    op->error = "unknown blob flag";
    return;
  }
  if (op->hash_plain) hmac_id(op->keys, plain_at, op->out_len, op->id);
}

/** The op's work, on whichever thread runs it. */
static void run_op(Op *op) {
  switch (op->kind) {
    case OP_HASH: hmac_parts(op); break;
    case OP_HASH2: hmac_two(op); break;
    case OP_SHA256: sha256_parts(op); break;
    case OP_SEAL: do_seal(op); break; // joins the parts itself, only when it compresses
    case OP_OPEN:
      if (!join_input(op)) op->error = "out of memory";
      else do_open(op);
      break;
  }
}

/**
 * Pool threads run backup work (hashing, compressing, encrypting) this much nicer than the rest of
 * the process. A backup shares the host with the live services it reads: when the cores are
 * contended, the database's own work (Redis's fork child serialising the snapshot, PostgreSQL's COPY)
 * goes first, and the codec catches up from its queue. Opening blobs (restores, reads) runs at the
 * process's own priority: there the service being restored waits for what the codec produces.
 */
#define POOL_NICENESS 10

static void set_pool_priority(bool backup_work) {
#ifdef __linux__
  // Linux keeps a nice value per thread, so this changes only the pool thread that runs it. Without
  // CAP_SYS_NICE (or RLIMIT_NICE) a thread may not raise its priority back: it then stays lower.
  enum { UNKNOWN = -1, BASE = 0, LOWERED = 1, FIXED = 2 };
  static __thread int state = UNKNOWN, base;
  if (state == FIXED || state == (int)backup_work) return;
  const id_t tid = (id_t)syscall(SYS_gettid);
  if (state == UNKNOWN) {
    errno = 0;
    base = getpriority(PRIO_PROCESS, tid);
    if (errno != 0) base = 0;
  }
  const int target = backup_work ? (base + POOL_NICENESS > 19 ? 19 : base + POOL_NICENESS) : base;
  state = setpriority(PRIO_PROCESS, tid, target) == 0 ? (int)backup_work : FIXED;
#else
  (void)backup_work;
#endif
}

static void execute(napi_env env, void *data) {
  (void)env;
  set_pool_priority(((Op *)data)->kind != OP_OPEN);
  run_op(data);
}

static void free_result(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value hex_id(napi_env env, const uint8_t id[32]) {
  static const char digits[] = "0123456789abcdef";
  char hex[64];
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[id[i] >> 4];
    hex[2 * i + 1] = digits[id[i] & 15];
  }
  napi_value s = NULL;
  napi_create_string_latin1(env, hex, 64, &s);
  return s;
}

/** Hands op->out to a Buffer that frees it when collected (and tells V8 how much it holds). */
static napi_value take_output(napi_env env, Op *op) {
  napi_value buf = NULL;
  if (op->out_len == 0) {
    void *ignored;
    napi_create_buffer(env, 0, &ignored, &buf);
    return buf;
  }
  // No napi_adjust_external_memory: V8 already counts an external buffer's bytes as external
  // memory, and reporting them again made every GC triggered by external memory come twice as often.
  if (napi_create_external_buffer(env, op->out_len, op->out, free_result, NULL, &buf) != napi_ok) {
    return NULL;
  }
  op->out = NULL; // owned by the Buffer now
  return buf;
}

static void complete(napi_env env, napi_status status, void *data) {
  Op *op = data;
  napi_value result = NULL;
  if (status != napi_ok && !op->error) op->error = "cancelled";
  if (!op->error) {
    switch (op->kind) {
      case OP_HASH:
      case OP_SHA256: result = hex_id(env, op->id); break;
      case OP_HASH2:
        napi_create_array_with_length(env, 2, &result);
        napi_set_element(env, result, 0, hex_id(env, op->id));
        napi_set_element(env, result, 1, hex_id(env, op->id2));
        break;
      case OP_SEAL: {
        napi_value sealed = take_output(env, op), flag;
        napi_get_boolean(env, op->compressed, &flag);
        napi_create_object(env, &result);
        napi_set_named_property(env, result, "sealed", sealed);
        napi_set_named_property(env, result, "compressed", flag);
        break;
      }
      case OP_OPEN: {
        napi_create_object(env, &result);
        if (op->out_offset > 0) {
          // Decrypted in place: the caller takes the plaintext as a view of its input.
          napi_value offset, length;
          napi_create_double(env, (double)op->out_offset, &offset);
          napi_create_double(env, (double)op->out_len, &length);
          napi_set_named_property(env, result, "offset", offset);
          napi_set_named_property(env, result, "length", length);
        } else {
          napi_set_named_property(env, result, "plain", take_output(env, op));
        }
        if (op->hash_plain) napi_set_named_property(env, result, "id", hex_id(env, op->id));
        break;
      }
    }
  }
  if (op->error) {
    napi_value msg, err;
    napi_create_string_utf8(env, op->error, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, op->deferred, err);
  } else {
    napi_resolve_deferred(env, op->deferred, result);
  }
  free(op->out);
  free_op_input(op);
  napi_delete_reference(env, op->input_ref);
  if (op->keys_ref) napi_delete_reference(env, op->keys_ref);
  napi_delete_async_work(env, op->work);
  free(op);
}

/** Decodes a 64-digit lowercase or uppercase hex string into 32 bytes; false when it is anything else. */
static bool parse_hex_id(napi_env env, napi_value value, uint8_t out[32]) {
  char hex[66];
  size_t len = 0;
  if (napi_get_value_string_latin1(env, value, hex, sizeof hex, &len) != napi_ok || len != 64) return false;
  for (int i = 0; i < 64; i++) {
    const char c = hex[i];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) return false;
    out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
  }
  return true;
}

static bool is_nullish(napi_env env, napi_value value) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && (type == napi_undefined || type == napi_null);
}

/**
 * Reads (keys?, input, number?, boundId?, hashPlain?) into a new Op. `with_keys`: argv[0] is the keys
 * handle. boundId (seal, open): the blob's hex id, authenticated as associated data. hashPlain (open):
 * whether to recompute the plaintext's id (default true). Throws and returns NULL on bad arguments.
 */
static Op *new_op(napi_env env, napi_callback_info info, OpKind kind, bool with_keys, napi_value *input_out) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) argc = 0;
  size_t first = with_keys ? 1 : 0;
  Op *op = calloc(1, sizeof(Op));
  int64_t number = 0;
  bool ok = op && argc > first && (!with_keys || (op->keys = get_keys(env, argv[0])) != NULL) &&
            parse_input(env, argv[first], op) &&
            (argc <= first + 1 || (napi_get_value_int64(env, argv[first + 1], &number) == napi_ok && number >= 0 && number <= INT32_MAX));
  if (ok) {
    op->hash_plain = true;
    if (argc > first + 2 && !is_nullish(env, argv[first + 2])) ok = (op->has_aad = parse_hex_id(env, argv[first + 2], op->aad));
    if (ok && argc > first + 3 && !is_nullish(env, argv[first + 3])) ok = napi_get_value_bool(env, argv[first + 3], &op->hash_plain) == napi_ok;
  }
  if (!ok) {
    if (op) free_op_input(op);
    free(op);
    napi_throw_type_error(env, NULL, "bunker-codec: bad arguments (keys, Uint8Array or Uint8Array[], number, hex id?, boolean?)");
    return NULL;
  }
  op->kind = kind;
  op->level = (int)number;
  op->expected_len = (size_t)number;
  *input_out = argv[first];
  if (with_keys) napi_create_reference(env, argv[0], 1, &op->keys_ref);
  return op;
}

/** Queues `data` on the thread pool with a new promise (`deferred`), which `complete` settles; returns the promise. */
static napi_value queue_pool_work(napi_env env, void *data, napi_async_execute_callback execute, napi_async_complete_callback complete,
                                  napi_deferred *deferred, napi_async_work *work) {
  napi_value promise, name;
  CHECK(napi_create_promise(env, deferred, &promise));
  CHECK(napi_create_string_utf8(env, "bunker-codec", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, data, work));
  CHECK(napi_queue_async_work(env, *work));
  return promise;
}

/**
 * Queues an op on the thread pool; returns its promise. The input must not change until it settles.
 * `in_place`: an open may decrypt over its input.
 */
static napi_value queue_op_in(napi_env env, napi_callback_info info, OpKind kind, bool with_keys, bool in_place) {
  napi_value input;
  Op *op = new_op(env, info, kind, with_keys, &input);
  if (!op) return NULL;
  op->in_place = in_place;
  CHECK(napi_create_reference(env, input, 1, &op->input_ref));
  return queue_pool_work(env, op, execute, complete, &op->deferred, &op->work);
}

static napi_value queue_op(napi_env env, napi_callback_info info, OpKind kind, bool with_keys) {
  return queue_op_in(env, info, kind, with_keys, false);
}

/** hash(keys, data | parts) → Promise<hex id>. */
static napi_value hash_async(napi_env env, napi_callback_info info) { return queue_op(env, info, OP_HASH, true); }
/** hash2(keys, [...partsOfA, ...partsOfB], partsOfA.length) → Promise<[idA, idB]>: two chunks' ids in one pass. */
static napi_value hash2_async(napi_env env, napi_callback_info info) { return queue_op(env, info, OP_HASH2, true); }
/**
 * seal(keys, data | parts, level, boundId?) → Promise<{ sealed: Buffer, compressed: boolean }>; with
 * boundId (format 3) the blob's id is authenticated with it, and open must be given the same id.
 */
static napi_value seal_async(napi_env env, napi_callback_info info) { return queue_op(env, info, OP_SEAL, true); }
/**
 * open(keys, sealed, plainLength, boundId?, hashPlain = true) → Promise<{ plain: Buffer, id?: hex }>;
 * rejects when damaged, or when boundId is not the id the blob was sealed with. `id` (the plaintext's
 * recomputed HMAC id) is there only when hashPlain.
 */
static napi_value open_async(napi_env env, napi_callback_info info) { return queue_op(env, info, OP_OPEN, true); }
/**
 * openInPlace(keys, sealed, plainLength, boundId?, hashPlain = true) → Promise<{ plain: Buffer, id? } |
 * { offset, length, id? }>: the same,
 * decrypting over `sealed` (the caller's to give up: its bytes are plaintext or garbage afterwards).
 * A raw blob's plaintext is then sealed[offset, offset + length), returned as `offset` and `length`
 * (the blob's own length, which the caller checks against plainLength as for open()).
 */
static napi_value open_in_place_async(napi_env env, napi_callback_info info) { return queue_op_in(env, info, OP_OPEN, true, true); }
/** sha256(parts) → Promise<hex>: the plain SHA-256 of the concatenated parts (pack names). */
static napi_value sha256_async(napi_env env, napi_callback_info info) { return queue_op(env, info, OP_SHA256, false); }

/**
 * hashSync / sealSync / openSync: the same work on the calling thread, for small blobs (a mount of
 * small files), where a pool round trip costs more than the work and a malloc per blob on pool
 * threads fragments their arenas. Results are copied into ordinary Buffers.
 */
static napi_value run_sync(napi_env env, napi_callback_info info, OpKind kind) {
  napi_value input;
  Op *op = new_op(env, info, kind, true, &input);
  if (!op) return NULL;
  run_op(op);
  napi_value result = NULL, buf = NULL, extra;
  if (!op->error && kind != OP_HASH) {
    void *copy;
    if (napi_create_buffer_copy(env, op->out_len, op->out ? op->out : (void *)"", &copy, &buf) != napi_ok) op->error = "out of memory";
  }
  if (op->error) {
    napi_throw_error(env, NULL, op->error);
  } else if (kind == OP_HASH) {
    result = hex_id(env, op->id);
  } else {
    napi_create_object(env, &result);
    if (kind == OP_SEAL) {
      napi_get_boolean(env, op->compressed, &extra);
      napi_set_named_property(env, result, "sealed", buf);
      napi_set_named_property(env, result, "compressed", extra);
    } else {
      napi_set_named_property(env, result, "plain", buf);
      if (op->hash_plain) napi_set_named_property(env, result, "id", hex_id(env, op->id));
    }
  }
  free(op->out);
  free_op_input(op);
  if (op->keys_ref) napi_delete_reference(env, op->keys_ref);
  free(op);
  return result;
}

static napi_value hash_sync(napi_env env, napi_callback_info info) { return run_sync(env, info, OP_HASH); }
static napi_value seal_sync(napi_env env, napi_callback_info info) { return run_sync(env, info, OP_SEAL); }
static napi_value open_sync(napi_env env, napi_callback_info info) { return run_sync(env, info, OP_OPEN); }

// ---------- opening a run of blobs into one buffer ----------

/**
 * Opens one sealed blob into dst, which receives exactly dst_len bytes; decrypts over `in` (the
 * caller's to give up). A raw payload is decrypted straight into dst, a compressed one in place and
 * then decompressed into dst. Returns NULL, or what was wrong. dst may hold garbage after an error.
 */
static const char *open_into(const Keys *keys, uint8_t *in, size_t in_len, const uint8_t *aad, uint8_t *dst, size_t dst_len) {
  if (in_len < SEAL_OVERHEAD) return "too short to be a sealed blob";
  const size_t payload_len = in_len - SEAL_OVERHEAD;
  uint8_t *payload = in + NONCE_BYTES + 1;
  uint8_t flag = 0xff;
  EVP_CIPHER_CTX *c = open_begin(keys, in, aad, &flag);
  uint8_t *to = flag == 0 && payload_len == dst_len ? dst : payload;
  if (!c || !open_finish(c, in, in_len, to)) return "authentication failed";
  if (flag == 0) return to == dst ? NULL : "a raw blob has the wrong length";
  if (flag != 1) return "unknown blob flag";
  return decompress_exact(dst, dst_len, payload, payload_len) ? NULL : "decompression failed or gave the wrong length";
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref args_ref;     // the arguments array: keys, sealed, layout, ids and out stay alive until settled
  const Keys *keys;
  uint8_t *sealed;       // decrypted over
  size_t sealed_len;
  const uint32_t *layout; // per blob: offset in sealed, sealed length, plaintext length, offset in out
  size_t count;
  const uint8_t *ids;    // per blob: its 32-byte id
  bool bound;            // the ids are the blobs' associated data (format 3); else their HMAC ids are recomputed
  uint8_t *out;          // the plaintexts land here, each at its own offset
  size_t out_len;
  size_t failed;         // the blob an error is about
  bool mismatch;         // the error: a blob opened but is not the one its id names
  const char *error;
} RunOp;

static void open_run(RunOp *op) {
  for (size_t i = 0; i < op->count && !op->error; i++) {
    const uint32_t *b = op->layout + 4 * i;
    uint8_t *dst = op->out + b[3];
    op->failed = i;
    op->error = open_into(op->keys, op->sealed + b[0], b[1], op->bound ? op->ids + 32 * i : NULL, dst, b[2]);
    if (!op->error && !op->bound) {
      uint8_t id[32];
      hmac_id(op->keys, dst, b[2], id);
      if (memcmp(id, op->ids + 32 * i, 32) != 0) op->error = "does not match its id", op->mismatch = true;
    }
  }
}

static void run_execute(napi_env env, void *data) {
  (void)env;
  set_pool_priority(false);
  open_run(data);
}

static napi_value run_error(napi_env env, const RunOp *op) {
  napi_value msg, err, index, mismatch;
  napi_create_string_utf8(env, op->error, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_uint32(env, (uint32_t)op->failed, &index);
  napi_get_boolean(env, op->mismatch, &mismatch);
  napi_set_named_property(env, err, "index", index);
  napi_set_named_property(env, err, "mismatch", mismatch);
  return err;
}

static void run_complete(napi_env env, napi_status status, void *data) {
  RunOp *op = data;
  if (status != napi_ok && !op->error) op->error = "cancelled";
  if (op->error) napi_reject_deferred(env, op->deferred, run_error(env, op));
  else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, op->deferred, undefined);
  }
  napi_delete_reference(env, op->args_ref);
  napi_delete_async_work(env, op->work);
  free(op);
}

/** Reads openRun's arguments into op, checking that every blob lies inside `sealed` and every plaintext inside `out`. */
static bool parse_run(napi_env env, napi_callback_info info, RunOp *op, napi_value *args) {
  size_t argc = 6;
  napi_value argv[6];
  napi_typedarray_type type;
  size_t layout_len = 0, ids_len = 0;
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6) return false;
  if (!(op->keys = get_keys(env, argv[0]))) return false;
  if (napi_get_typedarray_info(env, argv[1], &type, &op->sealed_len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) return false;
  op->sealed = data;
  if (napi_get_typedarray_info(env, argv[2], &type, &layout_len, &data, NULL, NULL) != napi_ok || type != napi_uint32_array || layout_len % 4) return false;
  op->layout = data;
  op->count = layout_len / 4;
  if (napi_get_typedarray_info(env, argv[3], &type, &ids_len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array || ids_len != 32 * op->count) return false;
  op->ids = data;
  if (napi_get_value_bool(env, argv[4], &op->bound) != napi_ok) return false;
  if (napi_get_typedarray_info(env, argv[5], &type, &op->out_len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) return false;
  op->out = data;
  for (size_t i = 0; i < op->count; i++) {
    const uint32_t *b = op->layout + 4 * i;
    if ((uint64_t)b[0] + b[1] > op->sealed_len || b[1] > INT32_MAX || (uint64_t)b[3] + b[2] > op->out_len) return false;
  }
  if (napi_create_array_with_length(env, 6, args) != napi_ok) return false;
  for (uint32_t i = 0; i < 6; i++) napi_set_element(env, *args, i, argv[i]);
  return true;
}

static const char RUN_USAGE[] = "bunker-codec: openRun(keys, sealed, layout: Uint32Array [offset, length, plainLength, outOffset]..., ids: 32 bytes each, bound, out) with every blob inside sealed and every plaintext inside out";

/**
 * openRun(keys, sealed, layout, ids, bound, out) → Promise<void>: opens the blobs lying in `sealed`
 * (a ranged read of a pack, which is decrypted over) into their places in `out`, in one pool trip. For a
 * directory of small files one call replaces a call, a promise and an allocation per file. Rejects
 * with an Error carrying `index` (the failing blob) and `mismatch` (it opened, but has another id).
 */
static napi_value open_run_async(napi_env env, napi_callback_info info) {
  napi_value args;
  RunOp *op = calloc(1, sizeof(RunOp));
  if (!op || !parse_run(env, info, op, &args)) {
    free(op);
    napi_throw_type_error(env, NULL, RUN_USAGE);
    return NULL;
  }
  CHECK(napi_create_reference(env, args, 1, &op->args_ref));
  return queue_pool_work(env, op, run_execute, run_complete, &op->deferred, &op->work);
}

/** openRunSync: the same on the calling thread (a run smaller than a pool round trip); throws instead of rejecting. */
static napi_value open_run_sync(napi_env env, napi_callback_info info) {
  napi_value args;
  RunOp op = {0};
  if (!parse_run(env, info, &op, &args)) {
    napi_throw_type_error(env, NULL, RUN_USAGE);
    return NULL;
  }
  open_run(&op);
  if (op.error) napi_throw(env, run_error(env, &op));
  return NULL;
}

// ---------- CRC-64/Jones, for the Redis engine ----------

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "crc64() loads little-endian words: port it before building on a big-endian machine"
#endif
#define CRC64_JONES_REFLECTED 0x95ac9329ac4bc9b5ULL
static uint64_t crc64_table[16][256];

static void crc64_init(void) {
  for (int i = 0; i < 256; i++) {
    uint64_t c = (uint64_t)i;
    for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ CRC64_JONES_REFLECTED : c >> 1;
    crc64_table[0][i] = c;
  }
  for (int k = 1; k < 16; k++) {
    for (int i = 0; i < 256; i++) crc64_table[k][i] = (crc64_table[k - 1][i] >> 8) ^ crc64_table[0][crc64_table[k - 1][i] & 0xff];
  }
}

/**
 * crc64(state: Int32Array(2) = [low, high], data) folds data into the CRC Redis puts after RDB files
 * and DUMP payloads (reflected, init 0): slice-by-16 over little-endian 64-bit loads.
 */
static napi_value crc64(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type stype, dtype;
  size_t slen = 0, len = 0;
  void *sdata = NULL, *data = NULL;
  if (argc != 2 || napi_get_typedarray_info(env, argv[0], &stype, &slen, &sdata, NULL, NULL) != napi_ok ||
      stype != napi_int32_array || slen < 2 || napi_get_typedarray_info(env, argv[1], &dtype, &len, &data, NULL, NULL) != napi_ok ||
      dtype != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "crc64(state: Int32Array(2), data: Uint8Array) expected");
    return NULL;
  }
  uint32_t *state = sdata;
  uint64_t crc = ((uint64_t)state[1] << 32) | state[0];
  const uint8_t *p = data;
  const uint64_t(*t)[256] = crc64_table;
  for (; len >= 16; len -= 16, p += 16) {
    uint64_t w1, w2;
    memcpy(&w1, p, 8); // x86-64 and arm64 are little-endian, as the CRC's byte order wants
    memcpy(&w2, p + 8, 8);
    w1 ^= crc;
    crc = t[15][w1 & 0xff] ^ t[14][(w1 >> 8) & 0xff] ^ t[13][(w1 >> 16) & 0xff] ^ t[12][(w1 >> 24) & 0xff] ^
          t[11][(w1 >> 32) & 0xff] ^ t[10][(w1 >> 40) & 0xff] ^ t[9][(w1 >> 48) & 0xff] ^ t[8][w1 >> 56] ^
          t[7][w2 & 0xff] ^ t[6][(w2 >> 8) & 0xff] ^ t[5][(w2 >> 16) & 0xff] ^ t[4][(w2 >> 24) & 0xff] ^
          t[3][(w2 >> 32) & 0xff] ^ t[2][(w2 >> 40) & 0xff] ^ t[1][(w2 >> 48) & 0xff] ^ t[0][w2 >> 56];
  }
  for (; len > 0; len--, p++) crc = crc64_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  state[0] = (uint32_t)crc;
  state[1] = (uint32_t)(crc >> 32);
  return NULL;
}

// ---------- scrypt (RFC 7914) ----------
// The repository key is derived with scrypt (N = 2^16, r = 8, p = 2 by default): each lane's ROMix
// fills a 64 MiB table, then reads it back in random order. Salsa20/8 is a chain of dependent
// additions, rotations and xors, so its speed is that chain's latency: the SSE2 version runs the
// four quarter-rounds of each step side by side, on a block held as four diagonals.

#if defined(__SSE2__)
#include <emmintrin.h>

#define ROTL128(v, n) _mm_or_si128(_mm_slli_epi32(v, n), _mm_srli_epi32(v, 32 - (n)))

/**
 * Position k of a 64-byte block holds word DIAGONAL[k]: the four vectors are the diagonals
 * (0,5,10,15), (4,9,14,3), (8,13,2,7) and (12,1,6,11), and a column round is four vector steps.
 * Xors and copies do not care about the order; only Integerify reads a word (word 0 is at position
 * 0, word 1 at position 13).
 */
static const uint8_t DIAGONAL[16] = {0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11};
#define INTEGERIFY_HIGH 13

static void to_diagonal(const uint32_t *in, uint32_t *out) {
  for (int k = 0; k < 16; k++) out[k] = in[DIAGONAL[k]];
}

static void from_diagonal(const uint32_t *in, uint32_t *out) {
  for (int k = 0; k < 16; k++) out[DIAGONAL[k]] = in[k];
}

/** Salsa20/8 core on a block in diagonal order, in place in four registers. */
static inline void salsa20_8(__m128i *a0, __m128i *b0, __m128i *c0, __m128i *d0) {
  __m128i a = *a0, b = *b0, c = *c0, d = *d0;
  for (int round = 0; round < 8; round += 2) {
    // Column round: the quarter-rounds (0,4,8,12), (5,9,13,1), (10,14,2,6), (15,3,7,11) at once.
    b = _mm_xor_si128(b, ROTL128(_mm_add_epi32(a, d), 7));
    c = _mm_xor_si128(c, ROTL128(_mm_add_epi32(b, a), 9));
    d = _mm_xor_si128(d, ROTL128(_mm_add_epi32(c, b), 13));
    a = _mm_xor_si128(a, ROTL128(_mm_add_epi32(d, c), 18));
    // Row round: the diagonals turned so (0,1,2,3), (5,6,7,4), (10,11,8,9), (15,12,13,14) line up.
    b = _mm_shuffle_epi32(b, 0x93), c = _mm_shuffle_epi32(c, 0x4E), d = _mm_shuffle_epi32(d, 0x39);
    d = _mm_xor_si128(d, ROTL128(_mm_add_epi32(a, b), 7));
    c = _mm_xor_si128(c, ROTL128(_mm_add_epi32(d, a), 9));
    b = _mm_xor_si128(b, ROTL128(_mm_add_epi32(c, d), 13));
    a = _mm_xor_si128(a, ROTL128(_mm_add_epi32(b, c), 18));
    b = _mm_shuffle_epi32(b, 0x39), c = _mm_shuffle_epi32(c, 0x4E), d = _mm_shuffle_epi32(d, 0x93);
  }
  *a0 = _mm_add_epi32(*a0, a), *b0 = _mm_add_epi32(*b0, b), *c0 = _mm_add_epi32(*c0, c), *d0 = _mm_add_epi32(*d0, d);
}

/** scryptBlockMix over 2r blocks in diagonal order; the even outputs go to the first half of `out`, the odd to the second. */
static void block_mix(const __m128i *in, __m128i *out, size_t r) {
  const __m128i *last = &in[(2 * r - 1) * 4];
  __m128i a = last[0], b = last[1], c = last[2], d = last[3];
  for (size_t i = 0; i < 2 * r; i++) {
    a = _mm_xor_si128(a, in[i * 4]), b = _mm_xor_si128(b, in[i * 4 + 1]);
    c = _mm_xor_si128(c, in[i * 4 + 2]), d = _mm_xor_si128(d, in[i * 4 + 3]);
    salsa20_8(&a, &b, &c, &d);
    __m128i *o = &out[((i & 1) * r + i / 2) * 4];
    o[0] = a, o[1] = b, o[2] = c, o[3] = d;
  }
}

/** scryptROMix over one 128r-byte block, with `v` (128rN bytes) and `xy` (256r bytes, 16-aligned) as scratch. */
static void ro_mix(uint8_t *block, size_t r, uint64_t n, void *v_mem, void *xy) {
  const size_t vectors = 8 * r;
  __m128i *v = v_mem, *x = xy, *y = x + vectors, *t;
  for (size_t k = 0; k < 2 * r; k++) to_diagonal((const uint32_t *)block + 16 * k, (uint32_t *)(x + 4 * k));
  for (uint64_t i = 0; i < n; i++) {
    memcpy(&v[i * vectors], x, 128 * r);
    block_mix(x, y, r);
    t = x, x = y, y = t;
  }
  for (uint64_t i = 0; i < n; i++) {
    // Integerify: the first 64-bit word of the last 64-byte block, mod N (a power of two).
    const uint32_t *last = (const uint32_t *)(x + (2 * r - 1) * 4);
    const uint64_t j = ((uint64_t)last[INTEGERIFY_HIGH] << 32 | last[0]) & (n - 1);
    const __m128i *vj = &v[j * vectors];
    for (size_t k = 0; k < vectors; k++) x[k] = _mm_xor_si128(x[k], vj[k]);
    block_mix(x, y, r);
    t = x, x = y, y = t;
  }
  for (size_t k = 0; k < 2 * r; k++) from_diagonal((const uint32_t *)(x + 4 * k), (uint32_t *)block + 16 * k);
}

#else  // no SSE2: the same functions on plain words, in the RFC's order

static inline uint32_t rotl32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/** Salsa20/8 core, in place on 16 little-endian words (RFC 7914 section 3). */
static void salsa20_8(uint32_t b[16]) {
  uint32_t x[16];
  memcpy(x, b, sizeof x);
  for (int round = 0; round < 8; round += 2) {
    x[4] ^= rotl32(x[0] + x[12], 7);   x[8] ^= rotl32(x[4] + x[0], 9);
    x[12] ^= rotl32(x[8] + x[4], 13);  x[0] ^= rotl32(x[12] + x[8], 18);
    x[9] ^= rotl32(x[5] + x[1], 7);    x[13] ^= rotl32(x[9] + x[5], 9);
    x[1] ^= rotl32(x[13] + x[9], 13);  x[5] ^= rotl32(x[1] + x[13], 18);
    x[14] ^= rotl32(x[10] + x[6], 7);  x[2] ^= rotl32(x[14] + x[10], 9);
    x[6] ^= rotl32(x[2] + x[14], 13);  x[10] ^= rotl32(x[6] + x[2], 18);
    x[3] ^= rotl32(x[15] + x[11], 7);  x[7] ^= rotl32(x[3] + x[15], 9);
    x[11] ^= rotl32(x[7] + x[3], 13);  x[15] ^= rotl32(x[11] + x[7], 18);
    x[1] ^= rotl32(x[0] + x[3], 7);    x[2] ^= rotl32(x[1] + x[0], 9);
    x[3] ^= rotl32(x[2] + x[1], 13);   x[0] ^= rotl32(x[3] + x[2], 18);
    x[6] ^= rotl32(x[5] + x[4], 7);    x[7] ^= rotl32(x[6] + x[5], 9);
    x[4] ^= rotl32(x[7] + x[6], 13);   x[5] ^= rotl32(x[4] + x[7], 18);
    x[11] ^= rotl32(x[10] + x[9], 7);  x[8] ^= rotl32(x[11] + x[10], 9);
    x[9] ^= rotl32(x[8] + x[11], 13);  x[10] ^= rotl32(x[9] + x[8], 18);
    x[12] ^= rotl32(x[15] + x[14], 7); x[13] ^= rotl32(x[12] + x[15], 9);
    x[14] ^= rotl32(x[13] + x[12], 13); x[15] ^= rotl32(x[14] + x[13], 18);
  }
  for (int i = 0; i < 16; i++) b[i] += x[i];
}

/** scryptBlockMix: `in` is 2r 64-byte blocks; the even outputs go to the first half of `out`, the odd to the second. */
static void block_mix(const uint32_t *in, uint32_t *out, size_t r) {
  uint32_t x[16];
  memcpy(x, &in[(2 * r - 1) * 16], sizeof x);
  for (size_t i = 0; i < 2 * r; i++) {
    for (int k = 0; k < 16; k++) x[k] ^= in[i * 16 + k];
    salsa20_8(x);
    memcpy(&out[((i & 1) * r + i / 2) * 16], x, sizeof x);
  }
}

/** scryptROMix over one 128r-byte block, with `v` (128rN bytes) and `xy` (256r bytes) as scratch. */
static void ro_mix(uint8_t *block, size_t r, uint64_t n, void *v_mem, void *xy) {
  const size_t words = 32 * r;
  uint32_t *v = v_mem, *x = xy, *y = x + words, *t;
  memcpy(x, block, 128 * r); // x86-64 and arm64 are little-endian, as scrypt's words are
  for (uint64_t i = 0; i < n; i++) {
    memcpy(&v[i * words], x, 128 * r);
    block_mix(x, y, r);
    t = x, x = y, y = t;
  }
  for (uint64_t i = 0; i < n; i++) {
    // Integerify: the first 64-bit word of the last 64-byte block, mod N (a power of two).
    const uint64_t j = ((uint64_t)x[(2 * r - 1) * 16 + 1] << 32 | x[(2 * r - 1) * 16]) & (n - 1);
    const uint32_t *vj = &v[j * words];
    for (size_t k = 0; k < words; k++) x[k] ^= vj[k];
    block_mix(x, y, r);
    t = x, x = y, y = t;
  }
  memcpy(block, x, 128 * r);
}
#endif

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  uint8_t *password, *salt, *key;
  size_t password_len, salt_len, key_len;
  uint64_t n;
  uint32_t r, p;
  const char *error;
} ScryptOp;


/** ROMix of lanes [from, to) of `b`, each lane in turn over one table of this thread's own. */
typedef struct {
  uint8_t *b;
  size_t r;
  uint64_t n;
  uint32_t from, to;
  const char *error;
} Lanes;

static void *run_lanes(void *arg) {
  Lanes *l = arg;
  const size_t block = 128 * l->r, table = block * l->n;
  uint32_t *xy = malloc(2 * block);
  // The table is in ordinary 4 KiB pages. Huge pages save TLB misses on the random reads (the
  // derivation took 100-120 ms instead of 133-158 here) but only in memory this process family
  // freed moments ago: this VM reports free 2 MiB blocks back to the host (virtio-balloon free page
  // reporting), and a fresh huge page then costs a host fault per 4 KiB, so a derivation after a few
  // idle seconds took 223-313 ms with huge pages and 151-168 ms without (ad hoc, alternated). A
  // backup process usually starts after idle seconds.
  uint32_t *v = mmap(NULL, table, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!xy || v == MAP_FAILED) {
    l->error = "out of memory for the key derivation";
  } else {
    for (uint32_t i = l->from; i < l->to; i++) ro_mix(l->b + i * block, l->r, l->n, v, xy);
  }
  // The table is handed back to the kernel, which zeroes pages before any other use.
  if (v != MAP_FAILED) munmap(v, table);
  if (xy) OPENSSL_cleanse(xy, 2 * block);
  free(xy);
  return NULL;
}

static void scrypt_execute(napi_env env, void *data) {
  (void)env;
  ScryptOp *op = data;
  const size_t r = op->r, block = 128 * r;
  const size_t b_len = block * op->p;
  uint8_t *b = malloc(b_len);
  if (!b) {
    op->error = "out of memory for the key derivation";
    return;
  }
  if (PKCS5_PBKDF2_HMAC((const char *)op->password, (int)op->password_len, op->salt, (int)op->salt_len, 1, EVP_sha256(),
                        (int)b_len, b) != 1) {
    op->error = "PBKDF2 failed";
  } else {
    // The p lanes are independent (RFC 7914): with two or more, a second thread takes the upper half,
    // so the derivation's wall time halves on two cores while its work and per-lane memory stay.
    Lanes low = {b, r, op->n, 0, op->p, NULL}, high = {b, r, op->n, op->p, op->p, NULL};
    pthread_t helper;
    bool helped = false;
    if (op->p >= 2) {
      low.to = high.from = op->p / 2;
      helped = pthread_create(&helper, NULL, run_lanes, &high) == 0;
      if (!helped) low.to = op->p; // no second thread: this one does every lane
    }
    run_lanes(&low);
    if (helped) pthread_join(helper, NULL);
    op->error = low.error ? low.error : high.error;
    if (!op->error && PKCS5_PBKDF2_HMAC((const char *)op->password, (int)op->password_len, b, (int)b_len, 1, EVP_sha256(),
                                        (int)op->key_len, op->key) != 1) {
      op->error = "PBKDF2 failed";
    }
  }
  OPENSSL_cleanse(b, b_len);
  free(b);
}

static void scrypt_free(ScryptOp *op) {
  if (op->password) OPENSSL_cleanse(op->password, op->password_len);
  free(op->password);
  free(op->salt);
  if (op->key) OPENSSL_cleanse(op->key, op->key_len);
  free(op->key);
  free(op);
}

static void scrypt_complete(napi_env env, napi_status status, void *data) {
  ScryptOp *op = data;
  if (status != napi_ok && !op->error) op->error = "cancelled";
  napi_value result = NULL;
  if (!op->error && napi_create_buffer_copy(env, op->key_len, op->key, NULL, &result) != napi_ok) op->error = "out of memory";
  if (op->error) {
    napi_value message;
    napi_create_string_utf8(env, op->error, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, op->deferred, result);
  } else {
    napi_resolve_deferred(env, op->deferred, result);
  }
  napi_delete_async_work(env, op->work);
  scrypt_free(op);
}

/**
 * scrypt(password: Buffer, salt: Buffer, N, r, p, keyLength) → Promise<Buffer>, on the thread pool.
 * N a power of two ≥ 2, r·p < 2^30, and the table (128·r·N bytes) at most 1 GiB.
 */
static napi_value scrypt_async(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *password, *salt;
  size_t password_len, salt_len;
  int64_t n = 0, r = 0, p = 0, key_len = 0;
  if (argc != 6 || napi_get_buffer_info(env, argv[0], &password, &password_len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &salt, &salt_len) != napi_ok || napi_get_value_int64(env, argv[2], &n) != napi_ok ||
      napi_get_value_int64(env, argv[3], &r) != napi_ok || napi_get_value_int64(env, argv[4], &p) != napi_ok ||
      napi_get_value_int64(env, argv[5], &key_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "scrypt(password, salt, N, r, p, keyLength): Buffers and integers expected");
    return NULL;
  }
  if (n < 2 || (n & (n - 1)) != 0 || r < 1 || p < 1 || r * p >= (1 << 30) || key_len < 1 || key_len > 1024 ||
      (uint64_t)n * (uint64_t)r * 128 > (1ull << 30) || password_len > INT32_MAX || salt_len > INT32_MAX) {
    napi_throw_range_error(env, NULL, "scrypt: N must be a power of two ≥ 2, r·p < 2^30, 128·r·N ≤ 1 GiB, keyLength 1-1024");
    return NULL;
  }
  ScryptOp *op = calloc(1, sizeof *op);
  if (!op) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  op->password = malloc(password_len ? password_len : 1);
  op->salt = malloc(salt_len ? salt_len : 1);
  op->key = malloc((size_t)key_len);
  if (!op->password || !op->salt || !op->key) {
    scrypt_free(op);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  memcpy(op->password, password, password_len);
  memcpy(op->salt, salt, salt_len);
  op->password_len = password_len;
  op->salt_len = salt_len;
  op->key_len = (size_t)key_len;
  op->n = (uint64_t)n;
  op->r = (uint32_t)r;
  op->p = (uint32_t)p;
  napi_value promise, name;
  if (napi_create_promise(env, &op->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "bunker-scrypt", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, scrypt_execute, scrypt_complete, op, &op->work) != napi_ok ||
      napi_queue_async_work(env, op->work) != napi_ok) {
    scrypt_free(op);
    napi_throw_error(env, NULL, "bunker-codec: could not queue scrypt");
    return NULL;
  }
  return promise;
}

/** trim(): returns free heap memory to the kernel (the thresholds set in init keep it otherwise). */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
#ifdef M_ARENA_MAX
  // Sealed and opened blobs are allocated on pool threads and freed on the main thread. glibc gives
  // each thread its own arena (up to 8 per core), and memory freed into one is not reused by another.
  // One arena for threads that first allocate from now on; threads that allocated before this addon
  // loaded keep theirs, so Bunker processes also start with MALLOC_ARENA_MAX=1 (src/core/node-flags.ts).
  mallopt(M_ARENA_MAX, 1);
#endif
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
  // Blobs, pack reads and stream input are allocated and freed by the megabyte. With glibc's sliding
  // defaults many of them were mapped fresh or carved out of heap memory just trimmed back to the
  // kernel, so every page was faulted in again: storing 1.1 GB took 110k page faults, 1.1 GB unchanged
  // 68k (half of the latter's system time). Now up to 32 MiB comes from the heap and up to 32 MiB free
  // at its top is kept for the next blob (48k faults for the unchanged store, 32k of them scrypt's
  // own 128 MiB); trim() hands the rest back when a repository is closed.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
  crc64_init();
#ifdef HAVE_HASH2
  hash2_fast = cpu_has_sha();
#endif
  napi_property_descriptor props[] = {
      {"keys", NULL, create_keys, NULL, NULL, NULL, napi_default, NULL},
      {"scan", NULL, scan, NULL, NULL, NULL, napi_default, NULL},
      {"hash", NULL, hash_async, NULL, NULL, NULL, napi_default, NULL},
      {"hash2", NULL, hash2_async, NULL, NULL, NULL, napi_default, NULL},
      {"hashSync", NULL, hash_sync, NULL, NULL, NULL, napi_default, NULL},
      {"seal", NULL, seal_async, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, open_async, NULL, NULL, NULL, napi_default, NULL},
      {"openInPlace", NULL, open_in_place_async, NULL, NULL, NULL, napi_default, NULL},
      {"openRun", NULL, open_run_async, NULL, NULL, NULL, napi_default, NULL},
      {"openRunSync", NULL, open_run_sync, NULL, NULL, NULL, napi_default, NULL},
      {"sha256", NULL, sha256_async, NULL, NULL, NULL, napi_default, NULL},
      {"sealSync", NULL, seal_sync, NULL, NULL, NULL, napi_default, NULL},
      {"openSync", NULL, open_sync, NULL, NULL, NULL, napi_default, NULL},
      {"crc64", NULL, crc64, NULL, NULL, NULL, napi_default, NULL},
      {"trim", NULL, trim, NULL, NULL, NULL, napi_default, NULL},
      {"scrypt", NULL, scrypt_async, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
