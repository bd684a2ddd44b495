/*
 * codec.c - the journal's byte formats: canonical msgpack for JSON values, records and
 * checkpoints (schema/journal-format.md). No LMDB here.
 *
 * Encoding uses a small writer of our own: the canonical form (shortest integers, strings and
 * container headers, float64 reals, sorted map keys) is ours to guarantee, and writing
 * straight into a reserved buffer costs a third of going through msgpack-c's packer
 * callbacks. The bytes are plain MessagePack: test_journal decodes them with msgpack-c.
 * Decoding is our own zero-copy reader: it rejects every non-canonical form, so a record
 * that decodes re-encodes to the very same bytes, and it never allocates more than the
 * input can describe (counts are bounded by the bytes left, nesting by JNL_MAX_DEPTH).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "jnl_int.h"
#include "clock.h"

/* ---- names ---------------------------------------------------------------------------- */

static const char *const source_names[] = {"kubernetes", "manifests", "restore"};
static const char *const type_names[] = {"ADDED", "MODIFIED", "DELETED", "RELIST_BEGIN",
                                         "RELIST_END"};
#define NSOURCES (sizeof(source_names) / sizeof(source_names[0]))
#define NTYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *jnl_source_name(jnl_source_t s)
{
    return (unsigned)s < NSOURCES ? source_names[s] : "?";
}

const char *jnl_type_name(jnl_type_t t)
{
    return (unsigned)t < NTYPES ? type_names[t] : "?";
}

int jnl_source_parse(const char *s, jnl_source_t *out)
{
    for (unsigned i = 0; s != NULL && i < NSOURCES; i++) {
        if (strcmp(s, source_names[i]) == 0) {
            *out = (jnl_source_t)i;
            return BD_OK;
        }
    }
    return BD_EINVAL;
}

jnl_event_t jnl_event_of(jnl_source_t source, jnl_type_t type, json_t *obj)
{
    const json_t *meta = json_object_get(obj, "metadata");
    return (jnl_event_t){
        .source = source,
        .type = type,
        .api_version = json_string_value(json_object_get(obj, "apiVersion")),
        .kind = json_string_value(json_object_get(obj, "kind")),
        .ns = json_string_value(json_object_get(meta, "namespace")),
        .name = json_string_value(json_object_get(meta, "name")),
        .uid = json_string_value(json_object_get(meta, "uid")),
        .resource_version = json_string_value(json_object_get(meta, "resourceVersion")),
        .generation = json_integer_value(json_object_get(meta, "generation")),
        .object = obj,
    };
}

int jnl_type_parse(const char *s, jnl_type_t *out)
{
    for (unsigned i = 0; s != NULL && i < NTYPES; i++) {
        if (strcasecmp(s, type_names[i]) == 0) {
            *out = (jnl_type_t)i;
            return BD_OK;
        }
    }
    return BD_EINVAL;
}

static int span_enum(const uint8_t *s, uint32_t len, const char *const *names, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return (int)i;
    return -1;
}

/* ---- clock ------------------------------------------------------------------------------ */

uint64_t jnl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- buffer ----------------------------------------------------------------------------- */

void jnl__buf_init(jnl__buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void jnl__buf_deinit(jnl__buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Make room for n more bytes; false (and b->ret set) when that is not possible. */
static bool buf_grow(jnl__buf_t *b, size_t n)
{
    if (b->ret != 0)
        return false;
    if (n > b->max - b->len) {
        b->ret = BD_ETOOBIG;
        return false;
    }
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) {
        b->ret = BD_ENOMEM;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void jnl__buf_reserve(jnl__buf_t *b, size_t n)
{
    if (n > b->max - b->len)
        n = b->max - b->len;
    buf_grow(b, n);
}

void jnl__buf_put(jnl__buf_t *b, const void *d, size_t n)
{
    if (!buf_grow(b, n))
        return;
    if (n > 0)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* Room for n bytes at the end of b (NULL after an error); the caller advances b->len. */
static inline uint8_t *wr_reserve(jnl__buf_t *b, size_t n)
{
    if (b->ret == 0 && n <= b->cap - b->len)
        return b->p + b->len;
    return buf_grow(b, n) ? b->p + b->len : NULL;
}

static inline void st_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static void wr_uint(jnl__buf_t *b, uint64_t v)
{
    uint8_t *p = wr_reserve(b, 9);
    if (p == NULL)
        return;
    if (v < 128) {
        p[0] = (uint8_t)v;
        b->len += 1;
    } else if (v < 256) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        b->len += 2;
    } else if (v < 65536) {
        p[0] = 0xcd;
        st_be(p + 1, v, 2);
        b->len += 3;
    } else if (v <= UINT32_MAX) {
        p[0] = 0xce;
        st_be(p + 1, v, 4);
        b->len += 5;
    } else {
        p[0] = 0xcf;
        st_be(p + 1, v, 8);
        b->len += 9;
    }
}

static void wr_int(jnl__buf_t *b, int64_t v)
{
    if (v >= 0) {
        wr_uint(b, (uint64_t)v);
        return;
    }
    uint8_t *p = wr_reserve(b, 9);
    if (p == NULL)
        return;
    if (v >= -32) {
        p[0] = (uint8_t)(int8_t)v;
        b->len += 1;
    } else if (v >= INT8_MIN) {
        p[0] = 0xd0;
        p[1] = (uint8_t)(int8_t)v;
        b->len += 2;
    } else if (v >= INT16_MIN) {
        p[0] = 0xd1;
        st_be(p + 1, (uint64_t)v, 2);
        b->len += 3;
    } else if (v >= INT32_MIN) {
        p[0] = 0xd2;
        st_be(p + 1, (uint64_t)v, 4);
        b->len += 5;
    } else {
        p[0] = 0xd3;
        st_be(p + 1, (uint64_t)v, 8);
        b->len += 9;
    }
}

/* A str, array or map header with the shortest length field. */
enum { H_STR, H_ARR, H_MAP };

static void wr_hdr(jnl__buf_t *b, int kind, size_t n)
{
    static const uint8_t fix[] = {0xa0, 0x90, 0x80}, fixmax[] = {32, 16, 16};
    static const uint8_t c8[] = {0xd9, 0, 0}, c16[] = {0xda, 0xdc, 0xde}, c32[] = {0xdb, 0xdd, 0xdf};
    if (n > UINT32_MAX) {
        if (b->ret == 0)
            b->ret = BD_ETOOBIG;
        return;
    }
    uint8_t *p = wr_reserve(b, 5);
    if (p == NULL)
        return;
    if (n < fixmax[kind]) {
        p[0] = (uint8_t)(fix[kind] | n);
        b->len += 1;
    } else if (kind == H_STR && n < 256) {
        p[0] = c8[kind];
        p[1] = (uint8_t)n;
        b->len += 2;
    } else if (n < 65536) {
        p[0] = c16[kind];
        st_be(p + 1, n, 2);
        b->len += 3;
    } else {
        p[0] = c32[kind];
        st_be(p + 1, n, 4);
        b->len += 5;
    }
}

static inline void wr_str(jnl__buf_t *b, const void *s, size_t n)
{
    if (b->ret == 0 && n < 65536 && n + 3 <= b->cap - b->len) {
        /* Room already reserved: the common case, inline. */
        uint8_t *p = b->p + b->len;
        if (n < 32) {
            *p++ = (uint8_t)(0xa0 | n);
        } else if (n < 256) {
            *p++ = 0xd9;
            *p++ = (uint8_t)n;
        } else {
            *p++ = 0xda;
            *p++ = (uint8_t)(n >> 8);
            *p++ = (uint8_t)n;
        }
        memcpy(p, s, n);
        b->len = (size_t)(p - b->p) + n;
        return;
    }
    wr_hdr(b, H_STR, n);
    jnl__buf_put(b, s, n);
}

static void wr_byte(jnl__buf_t *b, uint8_t c)
{
    uint8_t *p = wr_reserve(b, 1);
    if (p != NULL) {
        p[0] = c;
        b->len++;
    }
}

static void wr_f64(jnl__buf_t *b, double d)
{
    uint64_t bits;
    uint8_t *p = wr_reserve(b, 9);
    if (p == NULL)
        return;
    memcpy(&bits, &d, sizeof(bits));
    p[0] = 0xcb;
    st_be(p + 1, bits, 8);
    b->len += 9;
}

static void wr_hash(jnl__buf_t *b, const uint8_t *h)
{
    static const uint8_t zero[JNL_HASH_LEN];
    uint8_t *p = wr_reserve(b, 2 + JNL_HASH_LEN);
    if (p == NULL)
        return;
    p[0] = 0xc4;
    p[1] = JNL_HASH_LEN;
    memcpy(p + 2, h != NULL ? h : zero, JNL_HASH_LEN);
    b->len += 2 + JNL_HASH_LEN;
}

uint8_t *jnl__buf_take(jnl__buf_t *b, size_t *len)
{
    uint8_t *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF), as jansson requires. */
static bool utf8_slow(const uint8_t *s, size_t n, bool nonul)
{
    size_t i = 0;
    while (i < n) {
        if (!nonul) {
            while (i + 32 <= n) {
                uint64_t w[4];
                memcpy(w, s + i, sizeof(w));
                if ((w[0] | w[1] | w[2] | w[3]) & UINT64_C(0x8080808080808080))
                    break;
                i += 32;
            }
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i >= n)
                break;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            if (nonul && c == 0)
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (len > n - i)
            return false;
        for (size_t k = 1; k < len; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3fu);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
            return false;
        if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
            return false;
        i += len;
    }
    return true;
}

/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF), as jansson requires; NUL
 * bytes refused too when nonul. Nearly every string is ASCII and most are short (keys, names):
 * check that a word at a time first, short strings with two overlapping loads. */
static inline bool utf8_valid(const uint8_t *s, size_t n, bool nonul)
{
    const uint64_t hi = UINT64_C(0x8080808080808080), lo = UINT64_C(0x0101010101010101);
    uint64_t acc = 0, zero = 0;
    size_t i = 0;
    if (n < 8) {
        if (n >= 4) {
            uint32_t a, c;
            memcpy(&a, s, 4);
            memcpy(&c, s + n - 4, 4);
            uint32_t z = ((a - 0x01010101u) & ~a) | ((c - 0x01010101u) & ~c);
            if (!((a | c) & 0x80808080u) && !(nonul && (z & 0x80808080u)))
                return true;
        } else if (n > 0) {
            /* Bytes 0, n/2 and n-1 are every byte of a string of 1 to 3. */
            uint8_t x = s[0], y = s[n >> 1], z = s[n - 1];
            if (!((x | y | z) & 0x80) && !(nonul && (x == 0 || y == 0 || z == 0)))
                return true;
        } else {
            return true;
        }
        return utf8_slow(s, n, nonul);
    }
    if (!nonul) {
        /* Long strings: four words per step (no NUL check to do). */
        for (; i + 32 <= n; i += 32) {
            uint64_t w[4];
            memcpy(w, s + i, sizeof(w));
            acc |= w[0] | w[1] | w[2] | w[3];
        }
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        acc |= w;
        zero |= (w - lo) & ~w & hi;
    }
    if (i < n) {
        /* The last word, overlapping bytes already seen (harmless for OR and NUL tests). */
        uint64_t w;
        memcpy(&w, s + n - 8, 8);
        acc |= w;
        zero |= (w - lo) & ~w & hi;
    }
    if (!(acc & hi) && !(nonul && zero))
        return true;
    return utf8_slow(s, n, nonul);
}

/* ---- canonical JSON -> msgpack ------------------------------------------------------------ */

typedef struct kv {
    uint64_t pre; /* the key's first 8 bytes, big-endian, zero-padded: most compares end here */
    const char *key;
    size_t len;
    const json_t *val;
} kv_t;

/* Bytewise order, a proper prefix first (memcmp's order; inline: keys are short). */
static inline int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    size_t n = al < bl ? al : bl, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
    }
    for (; i < n; i++)
        if (a[i] != b[i])
            return (uint8_t)a[i] < (uint8_t)b[i] ? -1 : 1;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static inline uint64_t key_prefix(const char *k, size_t len)
{
    uint64_t v = 0;
    if (len >= 8) {
        memcpy(&v, k, 8);
        return __builtin_bswap64(v);
    }
    for (size_t i = 0; i < len; i++)
        v |= (uint64_t)(uint8_t)k[i] << (56 - 8 * i);
    return v;
}

/* Bytewise order of the keys (a proper prefix first): prefixes first, the rest on a tie. */
static inline int kv_order(const kv_t *a, const kv_t *b)
{
    if (a->pre != b->pre)
        return a->pre < b->pre ? -1 : 1;
    return key_cmp(a->key, a->len, b->key, b->len);
}

static int kv_cmp(const void *pa, const void *pb)
{
    return kv_order(pa, pb);
}

static void enc_json(jnl__buf_t *b, const json_t *v, int depth)
{
    if (b->ret != 0)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth >= JNL_MAX_DEPTH) {
            b->ret = BD_ETOOBIG;
            return;
        }
        size_t n = json_object_size(v);
        kv_t stackv[32];
        kv_t *kvs = n <= 32 ? stackv : malloc(n * sizeof(*kvs));
        if (kvs == NULL) {
            b->ret = BD_ENOMEM;
            return;
        }
        size_t i = 0;
        for (void *it = json_object_iter((json_t *)v); it != NULL && i < n;
             it = json_object_iter_next((json_t *)v, it), i++) {
            kvs[i].key = json_object_iter_key(it);
            kvs[i].len = json_object_iter_key_len(it);
            kvs[i].val = json_object_iter_value(it);
            kvs[i].pre = key_prefix(kvs[i].key, kvs[i].len);
            /* The values are read after sorting: start loading them now. */
            __builtin_prefetch(kvs[i].val);
        }
        n = i;
        if (n > 24) {
            qsort(kvs, n, sizeof(*kvs), kv_cmp);
        } else {
            /* Objects are small: insertion sort beats qsort's set-up (and its malloc). */
            for (size_t x = 1; x < n; x++) {
                kv_t t = kvs[x];
                size_t y = x;
                while (y > 0 && kv_order(&kvs[y - 1], &t) > 0) {
                    kvs[y] = kvs[y - 1];
                    y--;
                }
                kvs[y] = t;
            }
        }
        wr_hdr(b, H_MAP, n);
        for (i = 0; i < n && b->ret == 0; i++) {
            /* A key of at most 8 bytes is all in its prefix: ASCII when no high bit is set. */
            bool ascii = kvs[i].len <= 8 && !(kvs[i].pre & UINT64_C(0x8080808080808080));
            if (!ascii && !utf8_valid((const uint8_t *)kvs[i].key, kvs[i].len, false)) {
                b->ret = BD_EINVAL;
                break;
            }
            wr_str(b, kvs[i].key, kvs[i].len);
            enc_json(b, kvs[i].val, depth + 1);
        }
        if (kvs != stackv)
            free(kvs);
        return;
    }
    case JSON_ARRAY: {
        if (depth >= JNL_MAX_DEPTH) {
            b->ret = BD_ETOOBIG;
            return;
        }
        size_t n = json_array_size(v);
        wr_hdr(b, H_ARR, n);
        for (size_t i = 0; i < n && b->ret == 0; i++)
            enc_json(b, json_array_get(v, i), depth + 1);
        return;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (!utf8_valid((const uint8_t *)s, len, false)) {
            b->ret = BD_EINVAL;
            return;
        }
        wr_str(b, s, len);
        return;
    }
    case JSON_INTEGER:
        wr_int(b, (int64_t)json_integer_value(v));
        return;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d)) {
            b->ret = BD_EINVAL;
            return;
        }
        wr_f64(b, d);
        return;
    }
    case JSON_TRUE:
        wr_byte(b, 0xc3);
        return;
    case JSON_FALSE:
        wr_byte(b, 0xc2);
        return;
    case JSON_NULL:
        wr_byte(b, 0xc0);
        return;
    }
}

void jnl__enc_json(jnl__buf_t *b, const json_t *v)
{
    enc_json(b, v, 0);
}

/* ---- strict reader ------------------------------------------------------------------------- */

void jnl__rd_init(jnl__rd_t *rd, const void *buf, size_t len)
{
    rd->start = rd->p = buf;
    rd->end = rd->p + len;
    rd->ret = 0;
    rd->why[0] = '\0';
}

int jnl__rd_fail(jnl__rd_t *rd, int code, const char *fmt, ...)
{
    if (rd->ret != 0)
        return rd->ret;
    rd->ret = code;
    int off = snprintf(rd->why, sizeof(rd->why), "byte %zu: ", (size_t)(rd->p - rd->start));
    if (off < 0 || (size_t)off >= sizeof(rd->why))
        off = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rd->why + off, sizeof(rd->why) - (size_t)off, fmt, ap);
    va_end(ap);
    return code;
}

static inline size_t left(const jnl__rd_t *rd)
{
    return (size_t)(rd->end - rd->p);
}

static inline uint64_t ld_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

typedef enum { T_NIL, T_BOOL, T_UINT, T_NINT, T_F64, T_STR, T_ARR, T_MAP } tkind_t;

typedef struct tok {
    tkind_t kind;
    bool b;
    uint64_t u; /* T_UINT value; T_STR/T_ARR/T_MAP length or count */
    int64_t i;  /* T_NINT */
    double d;
    const uint8_t *s; /* T_STR bytes */
} tok_t;

#define NC(what) jnl__rd_fail(rd, BD_ECORRUPT, "non-canonical %s", what)

/* Read one item header, rejecting every form the canonical encoding never writes. */
static int rd_tok(jnl__rd_t *rd, tok_t *t)
{
    if (rd->ret != 0)
        return rd->ret;
    if (left(rd) < 1)
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated");
    uint8_t c = *rd->p;
    unsigned extra = 0; /* length of the big-endian field after the type byte */
    if (c <= 0x7f) {
        t->kind = T_UINT;
        t->u = c;
        rd->p++;
        return 0;
    }
    if (c >= 0xe0) {
        t->kind = T_NINT;
        t->i = (int8_t)c;
        rd->p++;
        return 0;
    }
    if (c >= 0x80 && c <= 0x8f) {
        t->kind = T_MAP;
        t->u = c & 0x0fu;
        rd->p++;
        goto counts;
    }
    if (c >= 0x90 && c <= 0x9f) {
        t->kind = T_ARR;
        t->u = c & 0x0fu;
        rd->p++;
        goto counts;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        t->kind = T_STR;
        t->u = c & 0x1fu;
        rd->p++;
        goto str;
    }
    switch (c) {
    case 0xc0:
        t->kind = T_NIL;
        rd->p++;
        return 0;
    case 0xc2:
    case 0xc3:
        t->kind = T_BOOL;
        t->b = c == 0xc3;
        rd->p++;
        return 0;
    case 0xcb: {
        if (left(rd) < 9)
            return jnl__rd_fail(rd, BD_ECORRUPT, "truncated float");
        uint64_t bits = ld_be(rd->p + 1, 8);
        memcpy(&t->d, &bits, sizeof(t->d));
        if (!isfinite(t->d))
            return jnl__rd_fail(rd, BD_ECORRUPT, "NaN or infinite number");
        t->kind = T_F64;
        rd->p += 9;
        return 0;
    }
    case 0xcc: extra = 1; break;
    case 0xcd: extra = 2; break;
    case 0xce: extra = 4; break;
    case 0xcf: extra = 8; break;
    case 0xd0: extra = 1; break;
    case 0xd1: extra = 2; break;
    case 0xd2: extra = 4; break;
    case 0xd3: extra = 8; break;
    case 0xd9: extra = 1; break;
    case 0xda: extra = 2; break;
    case 0xdb: extra = 4; break;
    case 0xdc: extra = 2; break;
    case 0xdd: extra = 4; break;
    case 0xde: extra = 2; break;
    case 0xdf: extra = 4; break;
    case 0xca:
        return jnl__rd_fail(rd, BD_ECORRUPT, "float32 (reals are float64)");
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return jnl__rd_fail(rd, BD_ECORRUPT, "unexpected bin");
    default:
        return jnl__rd_fail(rd, BD_ECORRUPT, "unexpected type byte 0x%02x", c);
    }
    if (left(rd) < 1 + extra)
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated");
    uint64_t v = ld_be(rd->p + 1, extra);
    switch (c) {
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        static const uint64_t min[] = {0, 128, 256, 0, 65536, 0, 0, 0, UINT64_C(1) << 32};
        if (v < min[extra])
            return NC("unsigned integer");
        t->kind = T_UINT;
        t->u = v;
        break;
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int64_t i;
        if (extra == 1)
            i = (int8_t)v;
        else if (extra == 2)
            i = (int16_t)v;
        else if (extra == 4)
            i = (int32_t)v;
        else
            i = (int64_t)v;
        static const int64_t lim[] = {0, -32, -128, 0, -32768, 0, 0, 0, -(INT64_C(1) << 31)};
        if (i >= lim[extra])
            return NC("signed integer");
        t->kind = T_NINT;
        t->i = i;
        break;
    }
    case 0xd9:
    case 0xda:
    case 0xdb: {
        static const uint64_t min[] = {0, 32, 256, 0, 65536};
        if (v < min[extra])
            return NC("string length");
        t->kind = T_STR;
        t->u = v;
        break;
    }
    default: {
        static const uint64_t min[] = {0, 0, 16, 0, 65536};
        if (v < min[extra])
            return NC("container length");
        t->kind = (c == 0xdc || c == 0xdd) ? T_ARR : T_MAP;
        t->u = v;
        break;
    }
    }
    rd->p += 1 + extra;
    if (t->kind == T_STR)
        goto str;
    if (t->kind == T_UINT || t->kind == T_NINT)
        return 0;
counts:
    /* Every element takes at least one byte (two for a map entry). */
    if (t->u > left(rd) / (t->kind == T_MAP ? 2 : 1))
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated (%llu elements announced)",
                            (unsigned long long)t->u);
    return 0;
str:
    if (t->u > left(rd))
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated string");
    t->s = rd->p;
    rd->p += t->u;
    return 0;
}

int jnl__rd_array(jnl__rd_t *rd, uint32_t *n)
{
    tok_t t;
    if (rd->ret == 0 && rd->p < rd->end && *rd->p >= 0x90 && *rd->p <= 0x9f &&
        (size_t)(*rd->p & 0x0fu) <= left(rd) - 1) {
        *n = *rd->p++ & 0x0fu; /* fixarray */
        return 0;
    }
    if (rd_tok(rd, &t) != 0)
        return rd->ret;
    if (t.kind != T_ARR)
        return jnl__rd_fail(rd, BD_ECORRUPT, "expected an array");
    *n = (uint32_t)t.u;
    return 0;
}

int jnl__rd_uint(jnl__rd_t *rd, uint64_t *v)
{
    tok_t t;
    if (rd->ret == 0 && rd->p < rd->end && *rd->p <= 0x7f) {
        *v = *rd->p++; /* positive fixint */
        return 0;
    }
    if (rd_tok(rd, &t) != 0)
        return rd->ret;
    if (t.kind != T_UINT)
        return jnl__rd_fail(rd, BD_ECORRUPT, "expected an unsigned integer");
    *v = t.u;
    return 0;
}

int jnl__rd_int(jnl__rd_t *rd, int64_t *v)
{
    tok_t t;
    if (rd->ret == 0 && rd->p < rd->end && (*rd->p <= 0x7f || *rd->p >= 0xe0)) {
        *v = (int8_t)*rd->p++; /* positive or negative fixint */
        return 0;
    }
    if (rd_tok(rd, &t) != 0)
        return rd->ret;
    if (t.kind == T_UINT && t.u <= (uint64_t)INT64_MAX)
        *v = (int64_t)t.u;
    else if (t.kind == T_NINT)
        *v = t.i;
    else
        return jnl__rd_fail(rd, BD_ECORRUPT, "expected a signed 64-bit integer");
    return 0;
}

int jnl__rd_str(jnl__rd_t *rd, const uint8_t **s, uint32_t *len, bool nonul)
{
    tok_t t;
    const uint8_t *at = rd->p;
    if (rd->ret == 0 && rd->p < rd->end && *rd->p >= 0xa0 && *rd->p <= 0xbf) {
        /* fixstr: the usual case, without the general reader */
        uint32_t n = *rd->p & 0x1fu;
        if (n < left(rd) && utf8_valid(rd->p + 1, n, nonul)) {
            *s = rd->p + 1;
            *len = n;
            rd->p += 1 + n;
            return 0;
        }
    }
    if (rd_tok(rd, &t) != 0)
        return rd->ret;
    if (t.kind != T_STR) {
        rd->p = at;
        return jnl__rd_fail(rd, BD_ECORRUPT, "expected a string");
    }
    if (!utf8_valid(t.s, t.u, nonul)) {
        rd->p = at;
        return jnl__rd_fail(rd, BD_ECORRUPT, nonul ? "invalid UTF-8 or NUL in string"
                                                   : "invalid UTF-8 in string");
    }
    *s = t.s;
    *len = (uint32_t)t.u;
    return 0;
}

int jnl__rd_hash(jnl__rd_t *rd, const uint8_t **h)
{
    if (rd->ret != 0)
        return rd->ret;
    if (left(rd) < 2 + JNL_HASH_LEN)
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated hash");
    if (rd->p[0] != 0xc4 || rd->p[1] != JNL_HASH_LEN)
        return jnl__rd_fail(rd, BD_ECORRUPT, "expected a 32-byte bin (hash)");
    *h = rd->p + 2;
    rd->p += 2 + JNL_HASH_LEN;
    return 0;
}

/*
 * The validation fast path of jnl__rd_json (out NULL): walk one value without building it
 * and without diagnostics, containers on a small stack instead of recursion. Returns the end
 * of the value, or NULL when it is not canonical or unusual (a map key over 65535 bytes): the
 * general reader then runs from the same place and says why. It accepts only what the
 * general reader accepts, and stops at the same byte.
 */
static const uint8_t *skim_json(const uint8_t *p, const uint8_t *end, int depth)
{
    /* The innermost open container lives in locals; the ones around it on the stack. */
    typedef struct {
        uint32_t left; /* items still to read (entries for a map) */
        bool map;
        const uint8_t *pk; /* previous key of a map */
        size_t pkl;
    } level_t;
    level_t st[JNL_MAX_DEPTH], cur = {0, false, NULL, 0};
    int top = 0; /* open containers, cur included */
    bool first = true;
    for (;;) {
        if (!first) {
            while (top > 0 && cur.left == 0) {
                if (--top > 0)
                    cur = st[top - 1];
            }
            if (top == 0)
                return p;
            cur.left--;
            if (cur.map) {
                if (p >= end)
                    return NULL;
                const uint8_t *k;
                size_t kl;
                if (*p >= 0xa0 && *p <= 0xbf) {
                    kl = *p & 0x1fu;
                    k = p + 1;
                } else if (*p == 0xd9 && end - p >= 2 && p[1] >= 32) {
                    kl = p[1];
                    k = p + 2;
                } else if (*p == 0xda && end - p >= 3 && ld_be(p + 1, 2) >= 256) {
                    kl = (size_t)ld_be(p + 1, 2);
                    k = p + 3;
                } else {
                    return NULL;
                }
                if (kl > (size_t)(end - k) || !utf8_valid(k, kl, false))
                    return NULL;
                if (cur.pk != NULL &&
                    key_cmp((const char *)cur.pk, cur.pkl, (const char *)k, kl) >= 0)
                    return NULL;
                cur.pk = k;
                cur.pkl = kl;
                p = k + kl;
            }
        }
        first = false;
        if (p >= end)
            return NULL;
        uint8_t c = *p;
        size_t avail = (size_t)(end - p), n;
        bool map = false;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            p++;
            continue;
        }
        if (c >= 0xa0 && c <= 0xbf) {
            n = c & 0x1fu;
            p++;
            goto str;
        }
        if (c >= 0x80 && c <= 0x9f) {
            n = c & 0x0fu;
            map = c < 0x90;
            p++;
            goto open;
        }
        static const uint8_t extra[32] = {
            [0x0b] = 8, [0x0c] = 1, [0x0d] = 2, [0x0e] = 4, [0x0f] = 8, [0x10] = 1, [0x11] = 2,
            [0x12] = 4, [0x13] = 8, [0x19] = 1, [0x1a] = 2, [0x1b] = 4, [0x1c] = 2, [0x1d] = 4,
            [0x1e] = 2, [0x1f] = 4};
        unsigned x = (c >= 0xc0 && c < 0xe0) ? extra[c - 0xc0] : 0;
        if (x == 0 || avail < 1 + x)
            return NULL;
        uint64_t v = ld_be(p + 1, x);
        p += 1 + x;
        switch (c) {
        case 0xcb: {
            double d;
            memcpy(&d, &v, sizeof(d));
            if (!isfinite(d))
                return NULL;
            continue;
        }
        case 0xcc:
            if (v < 128)
                return NULL;
            continue;
        case 0xcd:
            if (v < 256)
                return NULL;
            continue;
        case 0xce:
            if (v < 65536)
                return NULL;
            continue;
        case 0xcf:
            if (v <= UINT32_MAX || v > (uint64_t)INT64_MAX)
                return NULL;
            continue;
        case 0xd0:
            if ((int8_t)v >= -32)
                return NULL;
            continue;
        case 0xd1:
            if ((int16_t)v >= -128)
                return NULL;
            continue;
        case 0xd2:
            if ((int32_t)v >= -32768)
                return NULL;
            continue;
        case 0xd3:
            if ((int64_t)v >= -(INT64_C(1) << 31))
                return NULL;
            continue;
        case 0xd9:
        case 0xda:
        case 0xdb:
            if (v < (c == 0xd9 ? 32u : c == 0xda ? 256u : 65536u))
                return NULL;
            n = (size_t)v;
            goto str;
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf:
            if (v < (c == 0xdc || c == 0xde ? 16u : 65536u))
                return NULL;
            n = (size_t)v;
            map = c >= 0xde;
            goto open;
        default:
            return NULL;
        }
    str:
        if (n > (size_t)(end - p) || !utf8_valid(p, n, false))
            return NULL;
        p += n;
        continue;
    open:
        if (depth + top >= JNL_MAX_DEPTH)
            return NULL;
        if (top > 0)
            st[top - 1] = cur;
        cur.left = (uint32_t)n;
        cur.map = map;
        cur.pk = NULL;
        cur.pkl = 0;
        top++;
    }
}

static int rd_json(jnl__rd_t *rd, int depth, json_t **out, bool skim);

int jnl__rd_json(jnl__rd_t *rd, int depth, json_t **out)
{
    return rd_json(rd, depth, out, true);
}

/* skim: try skim_json first (validation only); false below a value it refused, so that a
 * bad value is not skimmed again at every level on the way down. */
static int rd_json(jnl__rd_t *rd, int depth, json_t **out, bool skim)
{
    tok_t t;
    json_t *v = NULL;
    if (out != NULL)
        *out = NULL;
    const uint8_t *at = rd->p;
    if (out == NULL && skim && rd->ret == 0) {
        const uint8_t *q = skim_json(rd->p, rd->end, depth);
        if (q != NULL) {
            rd->p = q;
            return 0;
        }
    }
    if (rd_tok(rd, &t) != 0)
        return rd->ret;
    switch (t.kind) {
    case T_NIL:
        if (out != NULL)
            v = json_null();
        break;
    case T_BOOL:
        if (out != NULL)
            v = json_boolean(t.b);
        break;
    case T_UINT:
        if (t.u > (uint64_t)INT64_MAX) {
            rd->p = at;
            return jnl__rd_fail(rd, BD_ECORRUPT, "integer above the int64 range");
        }
        if (out != NULL)
            v = json_integer((json_int_t)t.u);
        break;
    case T_NINT:
        if (out != NULL)
            v = json_integer((json_int_t)t.i);
        break;
    case T_F64:
        if (out != NULL)
            v = json_real(t.d);
        break;
    case T_STR:
        if (!utf8_valid(t.s, t.u, false)) {
            rd->p = at;
            return jnl__rd_fail(rd, BD_ECORRUPT, "invalid UTF-8 in string");
        }
        if (out != NULL)
            v = json_stringn_nocheck((const char *)t.s, t.u);
        break;
    case T_ARR:
        if (depth >= JNL_MAX_DEPTH) {
            rd->p = at;
            return jnl__rd_fail(rd, BD_ECORRUPT, "nesting deeper than %d", JNL_MAX_DEPTH);
        }
        if (out != NULL && (v = json_array()) == NULL)
            break;
        for (uint64_t i = 0; i < t.u; i++) {
            json_t *el = NULL;
            if (rd_json(rd, depth + 1, out != NULL ? &el : NULL, false) != 0)
                goto fail;
            if (out != NULL && json_array_append_new(v, el) != 0)
                goto nomem;
        }
        break;
    case T_MAP: {
        if (depth >= JNL_MAX_DEPTH) {
            rd->p = at;
            return jnl__rd_fail(rd, BD_ECORRUPT, "nesting deeper than %d", JNL_MAX_DEPTH);
        }
        if (out != NULL && (v = json_object()) == NULL)
            break;
        const uint8_t *pk = NULL;
        uint32_t pkl = 0;
        for (uint64_t i = 0; i < t.u; i++) {
            const uint8_t *k = NULL;
            uint32_t kl = 0;
            uint8_t c = rd->p < rd->end ? *rd->p : 0;
            if (c >= 0xa0 && c <= 0xbf && (size_t)(c & 0x1fu) < left(rd) &&
                utf8_valid(rd->p + 1, c & 0x1fu, false)) {
                k = rd->p + 1; /* fixstr key: the common case, inline */
                kl = c & 0x1fu;
                rd->p += 1 + kl;
            } else if (jnl__rd_str(rd, &k, &kl, false) != 0) {
                goto fail;
            }
            if (pk != NULL && key_cmp((const char *)pk, pkl, (const char *)k, kl) >= 0) {
                jnl__rd_fail(rd, BD_ECORRUPT, "map keys not in canonical (sorted, unique) order");
                goto fail;
            }
            pk = k;
            pkl = kl;
            json_t *el = NULL;
            if (rd_json(rd, depth + 1, out != NULL ? &el : NULL, false) != 0)
                goto fail;
            if (out != NULL && json_object_setn_new_nocheck(v, (const char *)k, kl, el) != 0)
                goto nomem;
        }
        break;
    }
    }
    if (out != NULL) {
        if (v == NULL)
            return jnl__rd_fail(rd, BD_ENOMEM, "out of memory");
        *out = v;
    }
    return 0;
nomem:
    jnl__rd_fail(rd, BD_ENOMEM, "out of memory");
fail:
    json_decref(v);
    return rd->ret;
}

/* ---- hashing --------------------------------------------------------------------------- */

/* OpenSSL 3 looks the algorithm up again on every init with EVP_sha256() (a lock and a
 * hash lookup per record); fetch it once for the whole process. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&g_sha256_once, fetch_sha256);
    return g_sha256 != NULL ? g_sha256 : EVP_sha256();
}

int jnl__sha256(EVP_MD_CTX *ctx, const uint8_t *prev, const uint8_t *body, size_t len,
                uint8_t out[JNL_HASH_LEN])
{
    EVP_MD_CTX *own = NULL;
    unsigned outl = 0;
    int ret = BD_EINTERNAL;
    if (ctx == NULL && (ctx = own = EVP_MD_CTX_new()) == NULL)
        return BD_ENOMEM;
    if (EVP_DigestInit_ex(ctx, sha256(), NULL) != 1)
        goto cleanup;
    if (prev != NULL && EVP_DigestUpdate(ctx, prev, JNL_HASH_LEN) != 1)
        goto cleanup;
    if (EVP_DigestUpdate(ctx, body, len) != 1 || EVP_DigestFinal_ex(ctx, out, &outl) != 1 ||
        outl != JNL_HASH_LEN)
        goto cleanup;
    ret = BD_OK;
cleanup:
    EVP_MD_CTX_free(own);
    return ret;
}

int jnl__rec_seal(EVP_MD_CTX *ctx, uint8_t *rec, size_t len, const uint8_t prev[JNL_HASH_LEN])
{
    memcpy(rec + len - JNL__TAIL + 2, prev, JNL_HASH_LEN);
    return jnl__sha256(ctx, prev, rec, len - (2 + JNL_HASH_LEN), rec + len - JNL_HASH_LEN);
}

int jnl_record_hash(const void *buf, size_t len, uint8_t out[JNL_HASH_LEN])
{
    const uint8_t *p = buf;
    if (buf == NULL || len < JNL__TAIL + 1)
        return BD_ECORRUPT;
    return jnl__sha256(NULL, p + len - JNL__TAIL + 2, p, len - (2 + JNL_HASH_LEN), out);
}

/* ---- records ---------------------------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

static void wr_cstr(jnl__buf_t *b, const char *s)
{
    wr_str(b, s, strlen(s));
}

size_t jnl__rec_prefix(uint8_t out[JNL__PREFIX_MAX], uint64_t seq, uint64_t time)
{
    jnl__buf_t b = {.p = out, .cap = JNL__PREFIX_MAX, .max = JNL__PREFIX_MAX};
    wr_hdr(&b, H_ARR, JNL__REC_FIELDS);
    wr_uint(&b, JNL_FORMAT_VERSION);
    wr_uint(&b, seq);
    wr_uint(&b, time);
    return b.len;
}

int jnl__rec_body(jnl__buf_t *b, const jnl_event_t *ev, const uint8_t *prev, bd_err_t *err)
{
    const char *who_ns = nz(ev->ns), *who_name = nz(ev->name), *who_kind = nz(ev->kind);
    if ((unsigned)ev->source >= NSOURCES || (unsigned)ev->type >= NTYPES)
        return bd_err_set(err, BD_EINVAL, "%s/%s %s: invalid event source or type", who_ns,
                          who_name, who_kind);
    if ((ev->type == JNL_ADDED || ev->type == JNL_MODIFIED) &&
        (ev->object == NULL || !json_is_object(ev->object)))
        return bd_err_set(err, BD_EINVAL, "%s/%s %s: %s event without an object", who_ns,
                          who_name, who_kind, jnl_type_name(ev->type));
    const char *strs[JNL__S_N] = {nz(ev->api_version), nz(ev->kind), nz(ev->ns),
                                  nz(ev->name), nz(ev->uid), nz(ev->resource_version)};
    size_t lens[JNL__S_N];
    for (int i = 0; i < JNL__S_N; i++) {
        lens[i] = strlen(strs[i]);
        if (!utf8_valid((const uint8_t *)strs[i], lens[i], true))
            return bd_err_set(err, BD_EINVAL, "%s/%s %s: field is not valid UTF-8", who_ns,
                              who_name, who_kind);
    }

    wr_cstr(b, source_names[ev->source]);
    wr_cstr(b, type_names[ev->type]);
    for (int i = 0; i < JNL__S_N; i++)
        wr_str(b, strs[i], lens[i]);
    wr_int(b, ev->generation);
    if (ev->object == NULL || json_is_null(ev->object))
        wr_byte(b, 0xc0);
    else
        enc_json(b, ev->object, 0);
    wr_hash(b, prev);
    wr_hash(b, NULL);
    switch (b->ret) {
    case 0:
        return BD_OK;
    case BD_ETOOBIG:
        return bd_err_set(err, BD_ETOOBIG,
                          "%s/%s %s: record over %u bytes or nesting deeper than %d", who_ns,
                          who_name, who_kind, JNL_RECORD_MAX, JNL_MAX_DEPTH);
    case BD_EINVAL:
        return bd_err_set(err, BD_EINVAL,
                          "%s/%s %s: object has invalid UTF-8 or a non-finite number", who_ns,
                          who_name, who_kind);
    default:
        return bd_err_set(err, b->ret, "%s/%s %s: %s", who_ns, who_name, who_kind,
                          bd_strerror(b->ret));
    }
}

int jnl__rec_encode(jnl__buf_t *b, const jnl_event_t *ev, uint64_t seq, uint64_t time,
                    const uint8_t *prev, bd_err_t *err)
{
    uint8_t pre[JNL__PREFIX_MAX];
    jnl__buf_put(b, pre, jnl__rec_prefix(pre, seq, time));
    return jnl__rec_body(b, ev, prev, err);
}

int jnl__rec_parse(jnl__rd_t *rd, jnl__hdr_t *h, unsigned flags)
{
    uint32_t n = 0;
    uint64_t version = 0;
    if (jnl__rd_array(rd, &n) != 0)
        return rd->ret;
    if (n < 1 || jnl__rd_uint(rd, &version) != 0)
        return jnl__rd_fail(rd, BD_ECORRUPT, "record does not start with a format version");
    if (version != JNL_FORMAT_VERSION)
        return jnl__rd_fail(rd, BD_EVERSION, "record format version %llu (this build reads %d)",
                            (unsigned long long)version, JNL_FORMAT_VERSION);
    if (n != JNL__REC_FIELDS)
        return jnl__rd_fail(rd, BD_ECORRUPT, "record has %u fields, expected %u", n,
                            JNL__REC_FIELDS);
    jnl__rd_uint(rd, &h->seq);
    jnl__rd_uint(rd, &h->time);
    const uint8_t *s = NULL;
    uint32_t sl = 0;
    if (jnl__rd_str(rd, &s, &sl, true) == 0) {
        int v = span_enum(s, sl, source_names, NSOURCES);
        if (v < 0)
            return jnl__rd_fail(rd, BD_ECORRUPT, "unknown source \"%.*s\"", (int)(sl > 40 ? 40 : sl),
                                s);
        h->source = (jnl_source_t)v;
    }
    if (jnl__rd_str(rd, &s, &sl, true) == 0) {
        int v = span_enum(s, sl, type_names, NTYPES);
        if (v < 0)
            return jnl__rd_fail(rd, BD_ECORRUPT, "unknown type \"%.*s\"", (int)(sl > 40 ? 40 : sl), s);
        h->type = (jnl_type_t)v;
    }
    for (int i = 0; i < JNL__S_N; i++)
        jnl__rd_str(rd, &h->s[i].p, &h->s[i].len, true);
    jnl__rd_int(rd, &h->generation);
    if (rd->ret != 0)
        return rd->ret;
    h->obj = rd->p;
    if ((h->type == JNL_ADDED || h->type == JNL_MODIFIED) &&
        (left(rd) == 0 || !((*rd->p >= 0x80 && *rd->p <= 0x8f) || *rd->p == 0xde || *rd->p == 0xdf)))
        return jnl__rd_fail(rd, BD_ECORRUPT, "%s event without an object", jnl_type_name(h->type));
    if (flags & JNL__PARSE_SHALLOW) {
        if (left(rd) < JNL__TAIL + 1)
            return jnl__rd_fail(rd, BD_ECORRUPT, "truncated record");
        rd->p = rd->end - JNL__TAIL;
    } else if (jnl__rd_json(rd, 0, NULL) != 0) {
        return rd->ret;
    }
    h->obj_len = (size_t)(rd->p - h->obj);
    jnl__rd_hash(rd, &h->prev);
    jnl__rd_hash(rd, &h->hash);
    if (rd->ret == 0 && rd->p != rd->end)
        return jnl__rd_fail(rd, BD_ECORRUPT, "%zu trailing bytes after the record", left(rd));
    return rd->ret;
}

int jnl__rec_build(const jnl__hdr_t *h, size_t size, unsigned flags, jnl_record_t **out,
                   bd_err_t *err)
{
    *out = NULL;
    size_t total = sizeof(jnl_record_t);
    for (int i = 0; i < JNL__S_N; i++)
        total += h->s[i].len + 1u;
    jnl_record_t *r = calloc(1, total);
    if (r == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    char *p = (char *)(r + 1);
    const char **dst[JNL__S_N] = {&r->ev.api_version, &r->ev.kind, &r->ev.ns,
                                  &r->ev.name, &r->ev.uid, &r->ev.resource_version};
    for (int i = 0; i < JNL__S_N; i++) {
        memcpy(p, h->s[i].p, h->s[i].len);
        p[h->s[i].len] = '\0';
        *dst[i] = p;
        p += h->s[i].len + 1;
    }
    r->ev.seq = h->seq;
    r->ev.time_ns = h->time;
    r->ev.source = h->source;
    r->ev.type = h->type;
    r->ev.generation = h->generation;
    memcpy(r->prev_hash, h->prev, JNL_HASH_LEN);
    memcpy(r->hash, h->hash, JNL_HASH_LEN);
    r->size = size;
    if (!(flags & JNL_DECODE_NO_OBJECT) && !(h->obj_len == 1 && h->obj[0] == 0xc0)) {
        jnl__rd_t rd;
        jnl__rd_init(&rd, h->obj, h->obj_len);
        if (jnl__rd_json(&rd, 0, &r->ev.object) == 0 && rd.p != rd.end)
            jnl__rd_fail(&rd, BD_ECORRUPT, "object followed by stray bytes");
        if (rd.ret != 0) {
            int code = rd.ret;
            bd_err_set(err, code, "seq %llu: object: %s", (unsigned long long)h->seq, rd.why);
            jnl_record_free(r);
            return code;
        }
    }
    *out = r;
    return BD_OK;
}

void jnl_record_free(jnl_record_t *rec)
{
    if (rec == NULL)
        return;
    json_decref(rec->ev.object);
    free(rec);
}

int jnl_record_encode(const jnl_event_t *ev, uint64_t seq, uint64_t time_ns,
                      const uint8_t prev_hash[JNL_HASH_LEN], uint8_t **buf, size_t *len,
                      bd_err_t *err)
{
    static const uint8_t zero[JNL_HASH_LEN];
    jnl__buf_t b;
    int ret;
    if (buf == NULL || len == NULL || ev == NULL)
        return bd_err_set(err, BD_EINVAL, "jnl_record_encode: NULL argument");
    *buf = NULL;
    *len = 0;
    jnl__buf_init(&b, JNL_RECORD_MAX);
    ret = jnl__rec_encode(&b, ev, seq, time_ns, prev_hash, err);
    if (ret != 0)
        goto cleanup;
    ret = jnl__rec_seal(NULL, b.p, b.len, prev_hash != NULL ? prev_hash : zero);
    if (ret != 0) {
        bd_err_set(err, ret, "SHA-256 failed");
        goto cleanup;
    }
    *buf = jnl__buf_take(&b, len);
cleanup:
    jnl__buf_deinit(&b);
    return ret;
}

int jnl_record_decode(const void *buf, size_t len, unsigned flags, jnl_record_t **out,
                      bd_err_t *err)
{
    jnl__rd_t rd;
    jnl__hdr_t h;
    if (out == NULL)
        return bd_err_set(err, BD_EINVAL, "jnl_record_decode: NULL argument");
    *out = NULL;
    if (buf == NULL || len == 0)
        return bd_err_set(err, BD_ECORRUPT, "empty record");
    jnl__rd_init(&rd, buf, len);
    /* Build validates the object again only when decoding it; shallow is not enough
     * here: the caller asked for a strict decode. */
    if (jnl__rec_parse(&rd, &h, 0) != 0)
        return bd_err_set(err, rd.ret, "record: %s", rd.why);
    return jnl__rec_build(&h, len, flags, out, err);
}

/* ---- object index keys ----------------------------------------------------------------------- */

size_t jnl__okey(uint8_t *out, const uint8_t *kind, size_t kl, const uint8_t *ns, size_t nl,
                 const uint8_t *name, size_t nml, const uint8_t *apiv, size_t al)
{
    size_t n = 0;
    const uint8_t *parts[4] = {kind, ns, name, apiv};
    size_t lens[4] = {kl, nl, nml, al};
    int nparts = apiv != NULL ? 4 : 3;
    for (int i = 0; i < nparts; i++) {
        for (size_t k = 0; k < lens[i] && n < JNL__OKEY_MAX; k++) {
            uint8_t c = parts[i][k];
            if (i == 0 && c >= 'A' && c <= 'Z')
                c = (uint8_t)(c - 'A' + 'a');
            out[n++] = c;
        }
        if (n < JNL__OKEY_MAX)
            out[n++] = 0;
    }
    return n;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

int jnl__ckpt_parse(jnl__rd_t *rd, jnl__ckpt_t *c)
{
    uint32_t n = 0, count = 0;
    uint64_t version = 0;
    if (jnl__rd_array(rd, &n) != 0)
        return rd->ret;
    if (n < 1 || jnl__rd_uint(rd, &version) != 0)
        return jnl__rd_fail(rd, BD_ECORRUPT, "checkpoint does not start with a format version");
    if (version != JNL_FORMAT_VERSION)
        return jnl__rd_fail(rd, BD_EVERSION, "checkpoint format version %llu",
                            (unsigned long long)version);
    if (n != JNL__CKPT_FIELDS)
        return jnl__rd_fail(rd, BD_ECORRUPT, "checkpoint has %u fields", n);
    jnl__rd_uint(rd, &c->seq);
    jnl__rd_uint(rd, &c->time);
    jnl__rd_hash(rd, &c->anchor);
    jnl__rd_array(rd, &count);
    if (rd->ret != 0)
        return rd->ret;
    c->count = count;
    /* The hash sits at a fixed place at the end; entries are read in between. */
    if (left(rd) < 2 + JNL_HASH_LEN)
        return jnl__rd_fail(rd, BD_ECORRUPT, "truncated checkpoint");
    jnl__rd_init(&c->entries, rd->p, (size_t)(rd->end - rd->p) - (2 + JNL_HASH_LEN));
    rd->p = rd->end - (2 + JNL_HASH_LEN);
    return jnl__rd_hash(rd, &c->hash);
}

static int rd_enum(jnl__rd_t *rd, const char *const *names, unsigned n, const char *what)
{
    const uint8_t *s = NULL;
    uint32_t sl = 0;
    if (jnl__rd_str(rd, &s, &sl, true) != 0)
        return -1;
    int v = span_enum(s, sl, names, n);
    if (v < 0)
        jnl__rd_fail(rd, BD_ECORRUPT, "unknown %s \"%.*s\"", what, (int)(sl > 40 ? 40 : sl), s);
    return v;
}

int jnl__ckpt_entry(jnl__rd_t *rd, jnl__hdr_t *e)
{
    uint32_t n = 0;
    memset(e, 0, sizeof(*e));
    if (jnl__rd_array(rd, &n) != 0)
        return rd->ret;
    if (n != JNL__CKPT_ENTRY_FIELDS)
        return jnl__rd_fail(rd, BD_ECORRUPT, "checkpoint entry has %u fields", n);
    for (int i = 0; i < JNL__S_N; i++)
        jnl__rd_str(rd, &e->s[i].p, &e->s[i].len, true);
    jnl__rd_int(rd, &e->generation);
    jnl__rd_uint(rd, &e->seq);
    jnl__rd_uint(rd, &e->time);
    int v = rd_enum(rd, source_names, NSOURCES, "source");
    if (v >= 0)
        e->source = (jnl_source_t)v;
    v = rd_enum(rd, type_names, NTYPES, "type");
    if (v >= 0)
        e->type = (jnl_type_t)v;
    if (rd->ret != 0)
        return rd->ret;
    e->obj = rd->p;
    jnl__rd_json(rd, 0, NULL);
    e->obj_len = (size_t)(rd->p - e->obj);
    return rd->ret;
}

int jnl__ckpt_encode(jnl__buf_t *b, uint64_t seq, uint64_t time,
                     const uint8_t anchor[JNL_HASH_LEN], const jnl__hdr_t *const *entries,
                     size_t n)
{
    wr_hdr(b, H_ARR, JNL__CKPT_FIELDS);
    wr_uint(b, JNL_FORMAT_VERSION);
    wr_uint(b, seq);
    wr_uint(b, time);
    wr_hash(b, anchor);
    wr_hdr(b, H_ARR, n);
    for (size_t i = 0; i < n && b->ret == 0; i++) {
        const jnl__hdr_t *e = entries[i];
        wr_hdr(b, H_ARR, JNL__CKPT_ENTRY_FIELDS);
        for (int k = 0; k < JNL__S_N; k++)
            wr_str(b, e->s[k].p, e->s[k].len);
        wr_int(b, e->generation);
        wr_uint(b, e->seq);
        wr_uint(b, e->time);
        wr_cstr(b, source_names[e->source]);
        wr_cstr(b, type_names[e->type]);
        jnl__buf_put(b, e->obj, e->obj_len); /* already canonical */
    }
    wr_hash(b, NULL);
    if (b->ret != 0)
        return b->ret;
    return jnl__sha256(NULL, NULL, b->p, b->len - (2 + JNL_HASH_LEN), b->p + b->len - JNL_HASH_LEN);
}
