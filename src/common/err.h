/*
 * err.h - one error space for every bindy module.
 *
 * Functions return 0 (BD_OK) or a negative BD_E* code. Foreign errors (LMDB, curl,
 * msgpack, ldns, errno) are translated once, at the module boundary. Where the caller
 * needs to know *which* object or field failed, the function also takes a bd_err_t and
 * fills its message; the message is always safe to log (never holds key material).
 */
#ifndef BD_ERR_H
#define BD_ERR_H

#include <stddef.h>

#define BD_ERROR_TABLE(X)                                                   \
    X(NOMEM, "out of memory")                                               \
    X(INVAL, "invalid argument")                                            \
    X(IO, "input/output error")                                             \
    X(PARSE, "malformed input")                                             \
    X(NOTFOUND, "not found")                                                \
    X(EXISTS, "already exists")                                             \
    X(TOOBIG, "too large")                                                  \
    X(FULL, "no space left")                                                \
    X(CORRUPT, "corrupt data")                                              \
    X(VERSION, "unsupported format version")                                \
    X(FOREIGN, "not a bindy file")                                          \
    X(BUSY, "resource busy")                                                \
    X(TIMEOUT, "timed out")                                                 \
    X(CONFLICT, "conflict")                                                 \
    X(PROTO, "protocol error")                                              \
    X(AUTH, "authentication failed")                                        \
    X(UNAVAIL, "service unavailable")                                       \
    X(CANCELED, "canceled")                                                 \
    X(GONE, "gone (resource version expired)")                              \
    X(INTERNAL, "internal error")

enum {
    BD_OK = 0,
    BD__ERR_BASE = -1000,
#define BD__ENUM(name, str) BD_E##name,
    BD_ERROR_TABLE(BD__ENUM)
#undef BD__ENUM
};

/* Static string for a BD_E* code (or "success"); never NULL. */
const char *bd_strerror(int code);

/* Error context filled by a callee; callers own the storage (usually on the stack). */
typedef struct bd_err {
    int code;
    char msg[512];
} bd_err_t;

/* Record code and a formatted message in err (err may be NULL); returns code. */
int bd_err_set(bd_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clear err to BD_OK and an empty message (err may be NULL). */
void bd_err_clear(bd_err_t *err);

#endif
