/*
 * rndc_wire.c - encode, parse and sign BIND control-channel messages (see rndc_wire.h).
 */
#include "rndc_wire.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* The _auth entry as BIND's cc.c lays it out for the HMAC-SHA* family. */
#define AUTH_B64_LEN 88                  /* base64 of a SHA-512 digest, padded */
#define AUTH_VALUE_LEN (1 + AUTH_B64_LEN) /* algorithm byte + base64 */
static const uint8_t auth_prefix[] = {
    0x05, '_', 'a', 'u', 't', 'h',  /* key */
    BIND_RNDC__T_TABLE, 0x00, 0x00, 0x00, 0x63, /* table, 99 bytes */
    0x04, 'h', 's', 'h', 'a',       /* key */
    BIND_RNDC__T_BINARY, 0x00, 0x00, 0x00, 0x59, /* binary, 89 bytes */
};
#define AUTH_ENTRY_LEN (sizeof(auth_prefix) + AUTH_VALUE_LEN)
#define MSG_HEAD_LEN 8 /* length prefix + version */

uint8_t bind_rndc__alg_dst(bind_rndc_alg_t alg)
{
    switch (alg) {
    case BIND_RNDC_HMAC_SHA224:
        return 162;
    case BIND_RNDC_HMAC_SHA256:
        return 163;
    case BIND_RNDC_HMAC_SHA384:
        return 164;
    case BIND_RNDC_HMAC_SHA512:
        return 165;
    }
    return 0;
}

static const EVP_MD *alg_md(bind_rndc_alg_t alg)
{
    switch (alg) {
    case BIND_RNDC_HMAC_SHA224:
        return EVP_sha224();
    case BIND_RNDC_HMAC_SHA256:
        return EVP_sha256();
    case BIND_RNDC_HMAC_SHA384:
        return EVP_sha384();
    case BIND_RNDC_HMAC_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The _auth value for data: algorithm byte, then base64 of the HMAC, zero-filled.
 * Returns 0, BD_EINVAL (unsupported alg) or BD_EINTERNAL.
 */
static int auth_value(bind_rndc_alg_t alg, const uint8_t *secret, size_t secret_len,
                      const uint8_t *data, size_t len, uint8_t out[AUTH_VALUE_LEN])
{
    const EVP_MD *md = alg_md(alg);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    unsigned char b64[AUTH_B64_LEN + 4];

    if (md == NULL || secret_len == 0 || secret_len > INT_MAX)
        return BD_EINVAL;
    if (HMAC(md, secret, (int)secret_len, data, len, digest, &dlen) == NULL)
        return BD_EINTERNAL;
    if (dlen > 64)
        return BD_EINTERNAL;
    int n = EVP_EncodeBlock(b64, digest, (int)dlen);
    OPENSSL_cleanse(digest, sizeof(digest));
    if (n < 0 || n > AUTH_B64_LEN)
        return BD_EINTERNAL;
    memset(out, 0, AUTH_VALUE_LEN);
    out[0] = bind_rndc__alg_dst(alg);
    memcpy(out + 1, b64, (size_t)n);
    return 0;
}

/* ---- writer ---- */

static void w_reserve(bind_rndc__wbuf_t *w, size_t more)
{
    if (w->ret != 0)
        return;
    if (more > (size_t)UINT32_MAX - w->len) {
        w->ret = BD_ETOOBIG;
        return;
    }
    if (w->len + more <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + more)
        cap *= 2;
    uint8_t *p = realloc(w->p, cap);
    if (p == NULL) {
        w->ret = BD_ENOMEM;
        return;
    }
    w->p = p;
    w->cap = cap;
}

void bind_rndc__w_raw(bind_rndc__wbuf_t *w, const void *data, size_t len)
{
    w_reserve(w, len);
    if (w->ret != 0 || len == 0)
        return;
    memcpy(w->p + w->len, data, len);
    w->len += len;
}

static void w_u8(bind_rndc__wbuf_t *w, uint8_t v)
{
    bind_rndc__w_raw(w, &v, 1);
}

static void w_be32(bind_rndc__wbuf_t *w, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    bind_rndc__w_raw(w, b, 4);
}

static void w_key(bind_rndc__wbuf_t *w, const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (w->ret != 0)
        return;
    if (key == NULL || n > 255) {
        w->ret = BD_EINVAL;
        return;
    }
    w_u8(w, (uint8_t)n);
    bind_rndc__w_raw(w, key, n);
}

void bind_rndc__w_init(bind_rndc__wbuf_t *w, bool sign)
{
    memset(w, 0, sizeof(*w));
    w->sign = sign;
    w_be32(w, 0); /* length, patched by finish */
    w_be32(w, 1); /* version */
    if (sign) {
        static const uint8_t zeros[AUTH_VALUE_LEN];
        bind_rndc__w_raw(w, auth_prefix, sizeof(auth_prefix));
        bind_rndc__w_raw(w, zeros, sizeof(zeros));
    }
}

void bind_rndc__w_table_begin(bind_rndc__wbuf_t *w, const char *key)
{
    w_key(w, key);
    w_u8(w, BIND_RNDC__T_TABLE);
    if (w->ret != 0)
        return;
    if (w->depth >= BIND_RNDC__MAX_DEPTH) {
        w->ret = BD_EINVAL;
        return;
    }
    w->open[w->depth++] = w->len;
    w_be32(w, 0);
}

void bind_rndc__w_table_end(bind_rndc__wbuf_t *w)
{
    if (w->ret != 0)
        return;
    if (w->depth == 0) {
        w->ret = BD_EINVAL;
        return;
    }
    size_t at = w->open[--w->depth];
    put32(w->p + at, (uint32_t)(w->len - at - 4));
}

void bind_rndc__w_bin(bind_rndc__wbuf_t *w, const char *key, const void *data, size_t len)
{
    w_key(w, key);
    w_u8(w, BIND_RNDC__T_BINARY);
    if (w->ret == 0 && len > UINT32_MAX)
        w->ret = BD_ETOOBIG;
    w_be32(w, (uint32_t)len);
    bind_rndc__w_raw(w, data, len);
}

void bind_rndc__w_str(bind_rndc__wbuf_t *w, const char *key, const char *s)
{
    bind_rndc__w_bin(w, key, s, s ? strlen(s) : 0);
}

void bind_rndc__w_u32(bind_rndc__wbuf_t *w, const char *key, uint32_t v)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "%u", (unsigned)v);
    bind_rndc__w_bin(w, key, b, (size_t)n);
}

int bind_rndc__w_finish(bind_rndc__wbuf_t *w, bind_rndc_alg_t alg, const uint8_t *secret,
                        size_t secret_len, uint8_t **msg_out, size_t *len_out)
{
    int rc = w->ret;

    *msg_out = NULL;
    *len_out = 0;
    if (rc == 0 && (w->depth != 0 || w->len < MSG_HEAD_LEN))
        rc = BD_EINVAL;
    if (rc != 0)
        goto out;
    put32(w->p, (uint32_t)(w->len - 4));
    if (w->sign) {
        size_t signed_from = MSG_HEAD_LEN + AUTH_ENTRY_LEN;
        uint8_t *value = w->p + MSG_HEAD_LEN + sizeof(auth_prefix);
        rc = auth_value(alg, secret, secret_len, w->p + signed_from, w->len - signed_from,
                        value);
        if (rc != 0)
            goto out;
    }
    *msg_out = w->p;
    *len_out = w->len;
    w->p = NULL;
    w->len = w->cap = 0;
out:
    bind_rndc__w_deinit(w);
    return rc;
}

void bind_rndc__w_deinit(bind_rndc__wbuf_t *w)
{
    free(w->p);
    w->p = NULL;
    w->len = w->cap = 0;
    w->depth = 0;
}

/* ---- parser ---- */

static int validate_value(uint8_t type, const uint8_t *p, size_t len, unsigned depth);

/* One value at p + *off (type byte, 32-bit length, data) of a table or list body; moves
 * *off past it. 0 or BD_EPROTO. */
static int validate_entry(const uint8_t *p, size_t len, size_t *off, unsigned depth)
{
    if (len - *off < 5)
        return BD_EPROTO;
    uint8_t type = p[*off];
    size_t vlen = get32(p + *off + 1);
    *off += 5;
    if (len - *off < vlen || validate_value(type, p + *off, vlen, depth) != 0)
        return BD_EPROTO;
    *off += vlen;
    return 0;
}

/* Walk the entries of a table body; 0 or BD_EPROTO. */
static int validate_table(const uint8_t *p, size_t len, unsigned depth)
{
    size_t off = 0;

    if (depth > BIND_RNDC__MAX_DEPTH)
        return BD_EPROTO;
    while (off < len) {
        size_t klen = p[off++];
        if (len - off < klen)
            return BD_EPROTO;
        off += klen;
        if (validate_entry(p, len, &off, depth) != 0)
            return BD_EPROTO;
    }
    return 0;
}

static int validate_list(const uint8_t *p, size_t len, unsigned depth)
{
    size_t off = 0;

    if (depth > BIND_RNDC__MAX_DEPTH)
        return BD_EPROTO;
    while (off < len)
        if (validate_entry(p, len, &off, depth) != 0)
            return BD_EPROTO;
    return 0;
}

static int validate_value(uint8_t type, const uint8_t *p, size_t len, unsigned depth)
{
    switch (type) {
    case BIND_RNDC__T_STRING:
    case BIND_RNDC__T_BINARY:
        return 0;
    case BIND_RNDC__T_TABLE:
        return validate_table(p, len, depth + 1);
    case BIND_RNDC__T_LIST:
        return validate_list(p, len, depth + 1);
    default:
        return BD_EPROTO;
    }
}

/*
 * First entry of a validated table: key and value, and the offset just past the entry.
 * Returns 0 or BD_EPROTO (empty or truncated table).
 */
static int first_entry(const bind_rndc__val_t *t, const uint8_t **key, size_t *klen,
                       bind_rndc__val_t *val, size_t *end)
{
    const uint8_t *p = t->p;
    size_t len = t->len, off = 0;

    if (len < 1)
        return BD_EPROTO;
    *klen = p[off++];
    if (len - off < *klen)
        return BD_EPROTO;
    *key = p + off;
    off += *klen;
    if (len - off < 5)
        return BD_EPROTO;
    val->type = p[off];
    val->len = get32(p + off + 1);
    off += 5;
    if (len - off < val->len)
        return BD_EPROTO;
    val->p = p + off;
    *end = off + val->len;
    return 0;
}

static int verify(const bind_rndc__val_t *top, bind_rndc_alg_t alg, const uint8_t *secret,
                  size_t secret_len, bd_err_t *err)
{
    const uint8_t *key;
    size_t klen, end;
    bind_rndc__val_t auth, hsha;
    uint8_t want[AUTH_VALUE_LEN];

    if (first_entry(top, &key, &klen, &auth, &end) != 0 || klen != 5 ||
        memcmp(key, "_auth", 5) != 0 || auth.type != BIND_RNDC__T_TABLE)
        return bd_err_set(err, BD_EAUTH, "message is not signed (no leading _auth section)");
    int rc = bind_rndc__lookup(&auth, "hsha", &hsha);
    if (rc == BD_ENOTFOUND) {
        bind_rndc__val_t md5;
        if (bind_rndc__lookup(&auth, "hmd5", &md5) == 0)
            return bd_err_set(err, BD_EAUTH, "message is signed with hmac-md5 (unsupported)");
        return bd_err_set(err, BD_EAUTH, "message has no hmac-sha signature");
    }
    if (rc != 0 || (hsha.type != BIND_RNDC__T_BINARY && hsha.type != BIND_RNDC__T_STRING) ||
        hsha.len != AUTH_VALUE_LEN)
        return bd_err_set(err, BD_EAUTH, "message signature has the wrong shape");
    if (hsha.p[0] != bind_rndc__alg_dst(alg))
        return bd_err_set(err, BD_EAUTH, "message is signed with algorithm %u, expected %u (%s)",
                          (unsigned)hsha.p[0], (unsigned)bind_rndc__alg_dst(alg),
                          bind_rndc_alg_name(alg));
    rc = auth_value(alg, secret, secret_len, top->p + end, top->len - end, want);
    if (rc != 0)
        return bd_err_set(err, rc, "computing the message HMAC failed");
    if (CRYPTO_memcmp(want, hsha.p, AUTH_VALUE_LEN) != 0)
        return bd_err_set(err, BD_EAUTH, "message signature does not verify with our key");
    return 0;
}

int bind_rndc__parse(const uint8_t *msg, size_t len, bind_rndc_alg_t alg,
                     const uint8_t *secret, size_t secret_len, bind_rndc__val_t *top,
                     bd_err_t *err)
{
    memset(top, 0, sizeof(*top));
    if (msg == NULL || len < 4)
        return bd_err_set(err, BD_EPROTO, "message of %zu bytes is too short", len);
    uint32_t version = get32(msg);
    if (version != 1)
        return bd_err_set(err, BD_EPROTO, "unsupported control protocol version %u",
                          (unsigned)version);
    if (validate_table(msg + 4, len - 4, 1) != 0)
        return bd_err_set(err, BD_EPROTO, "malformed message structure");
    bind_rndc__val_t t = {.type = BIND_RNDC__T_TABLE, .p = msg + 4, .len = len - 4};
    if (secret != NULL) {
        int rc = verify(&t, alg, secret, secret_len, err);
        if (rc != 0)
            return rc;
    }
    *top = t;
    return 0;
}

int bind_rndc__lookup(const bind_rndc__val_t *table, const char *key, bind_rndc__val_t *out)
{
    size_t want = strlen(key), off = 0;
    const uint8_t *p = table->p;
    size_t len = table->len;
    bool found = false;

    if (table->type != BIND_RNDC__T_TABLE || (p == NULL && len != 0))
        return BD_EPROTO;
    while (off < len) {
        size_t klen = p[off++];
        if (len - off < klen)
            return BD_EPROTO;
        const uint8_t *k = p + off;
        off += klen;
        if (len - off < 5)
            return BD_EPROTO;
        uint8_t type = p[off];
        size_t vlen = get32(p + off + 1);
        off += 5;
        if (len - off < vlen)
            return BD_EPROTO;
        if (klen == want && memcmp(k, key, klen) == 0) {
            out->type = type;
            out->p = p + off;
            out->len = vlen;
            found = true;
        }
        off += vlen;
    }
    return found ? 0 : BD_ENOTFOUND;
}

int bind_rndc__lookup_table(const bind_rndc__val_t *table, const char *key,
                            bind_rndc__val_t *out)
{
    bind_rndc__val_t v;
    int rc = bind_rndc__lookup(table, key, &v);
    if (rc != 0)
        return rc;
    if (v.type != BIND_RNDC__T_TABLE)
        return BD_EPROTO;
    *out = v;
    return 0;
}

int bind_rndc__lookup_u32(const bind_rndc__val_t *table, const char *key, uint32_t *out)
{
    bind_rndc__val_t v;
    int rc = bind_rndc__lookup(table, key, &v);
    if (rc != 0)
        return rc;
    if ((v.type != BIND_RNDC__T_BINARY && v.type != BIND_RNDC__T_STRING) || v.len == 0 ||
        v.len > 10)
        return BD_EPROTO;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return BD_EPROTO;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (n > UINT32_MAX)
        return BD_EPROTO;
    *out = (uint32_t)n;
    return 0;
}

int bind_rndc__lookup_str(const bind_rndc__val_t *table, const char *key, char **out)
{
    bind_rndc__val_t v;
    int rc = bind_rndc__lookup(table, key, &v);
    if (rc != 0)
        return rc;
    if (v.type != BIND_RNDC__T_BINARY && v.type != BIND_RNDC__T_STRING)
        return BD_EPROTO;
    char *s = malloc(v.len + 1);
    if (s == NULL)
        return BD_ENOMEM;
    if (v.len)
        memcpy(s, v.p, v.len);
    s[v.len] = '\0';
    *out = s;
    return 0;
}
