/*
 * rndc_wire.h - internal: the BIND control-channel ("isccc") wire format.
 *
 * Not a public header: rndc.c uses it, and so do the unit tests (a fake server builds
 * signed or broken replies with it). Everything here is pure: no I/O, no allocation in the
 * parser (values point into the caller's buffer).
 *
 * One message on a stream socket (BIND lib/isccc/cc.c, ccmsg.c):
 *
 *     u32 length            big-endian, counts every byte after itself
 *     u32 version           always 1
 *     table                 the top-level table, up to the end of the message
 *
 *     table  := { u8 keylen, key[keylen], value }*
 *     list   := { value }*
 *     value  := u8 type, u32 len (big-endian), bytes[len]
 *     type   := 0 string | 1 binary | 2 table | 3 list
 *
 * A signed message starts its top-level table with "_auth" = { "hsha": binary(89) }: one
 * algorithm byte (BIND's DST number, 162 = hmac-sha224 ... 165 = hmac-sha512) then the
 * base64 (padded) of the HMAC, zero-filled to 88 bytes. The HMAC covers every byte after
 * the _auth entry to the end of the message. (hmac-md5 used "hmd5" with 22 bytes of
 * unpadded base64: not supported here.) Numbers ("_ser", "_tim", "result", ...) travel as
 * decimal text in binary values; strings travel as binary values.
 */
#ifndef BIND_RNDC_WIRE_H
#define BIND_RNDC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rndc.h"

enum {
    BIND_RNDC__T_STRING = 0,
    BIND_RNDC__T_BINARY = 1,
    BIND_RNDC__T_TABLE = 2,
    BIND_RNDC__T_LIST = 3,
};

/* Deepest nesting of tables/lists accepted by the parser and produced by the writer. */
#define BIND_RNDC__MAX_DEPTH 16

/* DST algorithm number for alg (162..165), or 0 when alg is not supported. */
uint8_t bind_rndc__alg_dst(bind_rndc_alg_t alg);

/* ---- writer (sticky error: check the result of bind_rndc__w_finish only) ---- */

typedef struct bind_rndc__wbuf {
    uint8_t *p;
    size_t len, cap;
    int ret;                              /* first error, or 0 */
    size_t open[BIND_RNDC__MAX_DEPTH];    /* offsets of open tables' length fields */
    unsigned depth;
    bool sign;                            /* an _auth placeholder was written */
} bind_rndc__wbuf_t;

/* Start a message: length placeholder, version 1 and, if sign, an _auth placeholder. */
void bind_rndc__w_init(bind_rndc__wbuf_t *w, bool sign);
/* Open / close a nested table value under key (key at most 255 bytes). */
void bind_rndc__w_table_begin(bind_rndc__wbuf_t *w, const char *key);
void bind_rndc__w_table_end(bind_rndc__wbuf_t *w);
/* Binary value, string value (as binary, like BIND), decimal u32 value. */
void bind_rndc__w_bin(bind_rndc__wbuf_t *w, const char *key, const void *data, size_t len);
void bind_rndc__w_str(bind_rndc__wbuf_t *w, const char *key, const char *s);
void bind_rndc__w_u32(bind_rndc__wbuf_t *w, const char *key, uint32_t v);
/* Raw bytes appended as they are (tests build malformed messages with it). */
void bind_rndc__w_raw(bind_rndc__wbuf_t *w, const void *data, size_t len);

/*
 * Finish: patch the length prefix and, if the message was started with sign, compute the
 * HMAC with (alg, secret). On success *msg_out takes the buffer (length prefix included;
 * free() it) and *len_out its size; w is left empty. On error w is freed.
 * Returns 0, BD_ENOMEM, BD_EINVAL (bad key name, unbalanced tables, unsupported alg),
 * BD_ETOOBIG (over 4 GiB) or BD_EINTERNAL (OpenSSL failure).
 */
int bind_rndc__w_finish(bind_rndc__wbuf_t *w, bind_rndc_alg_t alg, const uint8_t *secret,
                        size_t secret_len, uint8_t **msg_out, size_t *len_out);
/* Free a writer that was not finished (NULL-safe on an empty writer). */
void bind_rndc__w_deinit(bind_rndc__wbuf_t *w);

/* ---- parser ---- */

typedef struct bind_rndc__val {
    uint8_t type;      /* BIND_RNDC__T_* */
    const uint8_t *p;  /* value bytes (borrowed from the parsed message) */
    size_t len;
} bind_rndc__val_t;

/*
 * Parse one message body (the bytes after the u32 length prefix). Checks the version and the
 * whole structure (bounds, types, nesting at most BIND_RNDC__MAX_DEPTH) and, when secret is
 * not NULL, the _auth signature. *top receives the top-level table (borrowed from msg).
 * Returns 0; BD_EPROTO for a malformed message or another version; BD_EAUTH when secret is
 * given and the message is unsigned, signed with another algorithm, or the HMAC differs;
 * BD_EINTERNAL for an OpenSSL failure. err gets a message (never key material).
 */
int bind_rndc__parse(const uint8_t *msg, size_t len, bind_rndc_alg_t alg,
                     const uint8_t *secret, size_t secret_len, bind_rndc__val_t *top,
                     bd_err_t *err);

/* Value of key in a table (the last one if the key repeats, as BIND's alist does).
 * Returns 0, BD_ENOTFOUND, or BD_EPROTO when table is not a well-formed table. */
int bind_rndc__lookup(const bind_rndc__val_t *table, const char *key, bind_rndc__val_t *out);
/* As lookup, and the value must be a table (else BD_EPROTO). */
int bind_rndc__lookup_table(const bind_rndc__val_t *table, const char *key,
                            bind_rndc__val_t *out);
/* Decimal u32 in a string/binary value: 0, BD_ENOTFOUND, BD_EPROTO (not 1-10 digits,
 * over UINT32_MAX, or not a string/binary value). */
int bind_rndc__lookup_u32(const bind_rndc__val_t *table, const char *key, uint32_t *out);
/* String/binary value copied to a NUL-terminated malloc()ed string (*out owned by the
 * caller). 0, BD_ENOTFOUND, BD_EPROTO (wrong type) or BD_ENOMEM. */
int bind_rndc__lookup_str(const bind_rndc__val_t *table, const char *key, char **out);

#endif
