/*
 * rules.h - internal to the schema library: the C side of validation that OpenAPI
 * cannot express (CEL twins and stricter checks), keyed by kind and schema path.
 * Schema paths name schema nodes: properties joined by '.', array items as "[]",
 * map values (additionalProperties) as "{}".
 */
#ifndef BD_RULES_H
#define BD_RULES_H

#include <jansson.h>

#include "validate.h"

/* value: the instance at path (borrowed). Problems are added to rep at path. */
typedef void (*val__check_fn)(const json_t *value, const char *path, val_report_t *rep);

typedef struct {
    const char *kind;  /* "ARecord", or "*" for every kind that has the path */
    const char *spath; /* schema path */
    const char *cel;   /* the CEL rule this twins, or NULL for a C-only check */
    val__check_fn fn;
} val__rule_t;

extern const val__rule_t val__rules[];
extern const size_t val__nrules;

/* Shared predicates, also used by the typed model. */
int val__is_ipv4(const char *s);
int val__is_ipv6(const char *s);
/* A DNS name as users write them: "@", or dot-separated labels of 1..63 octets from
 * [A-Za-z0-9_-] (a leading "*" label allowed), an optional trailing dot, at most 255
 * octets in wire form (RFC 1035). */
int val__dns_name_ok(const char *s);

/* A POSIX ERE with every {m,n} whose n >= 16 written {m,} (outside bracket expressions,
 * not escaped), and in *min_n the smallest such n: for subjects of at most *min_n bytes
 * both match the same strings (no repetition can exceed its bound), and glibc runs the
 * relaxed one faster. NULL when nothing was relaxed (or out of memory); free() it. */
char *val__relax_pattern(const char *pattern, size_t *min_n);

#endif
