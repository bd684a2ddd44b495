/*
 * validate.h - validation of manifests against bindy's CRDs.
 *
 * The CustomResourceDefinitions in schema/crds/ are the single source of truth: they are
 * embedded into the binary at build time and this module interprets their OpenAPI v3
 * schemas (types, required, enum, ranges, lengths, patterns, formats, defaults) exactly
 * where the API server would. What OpenAPI cannot say is done in C and tied to the CRDs:
 *  - every CEL rule (x-kubernetes-validations) has a C twin, matched by kind, schema
 *    path and rule text; a CEL rule without a twin is reported, never skipped;
 *  - stricter checks (an ACL address really is an address, a name fits in 255 octets)
 *    are attached to schema paths that must exist in the CRD.
 * tests/unit/test_schema.c proves both tables match the CRDs, so the two cannot drift.
 *
 * Like the API server, validation first applies schema defaults to the object in place.
 * Fields the schema does not know are warnings (the API server prunes them).
 */
#ifndef BD_VALIDATE_H
#define BD_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "doc.h"
#include "err.h"

#define BD_GROUP "bindy.firestoned.io"
#define BD_VERSION "v1beta1"
#define BD_API_VERSION BD_GROUP "/" BD_VERSION

typedef struct val_catalog val_catalog_t;

typedef enum { VAL_ERROR = 0, VAL_WARNING = 1 } val_sev_t;

typedef struct {
    val_sev_t sev;
    char path[DOC_PATH_MAX]; /* field path, "" for the object itself */
    char msg[512];
} val_issue_t;

/* Issues found in one object; caller storage, val_report_init/deinit. */
typedef struct {
    val_issue_t *items;
    size_t n, cap;
    size_t nerrors;
    int nomem; /* an issue could not be recorded */
} val_report_t;

void val_report_init(val_report_t *rep);
void val_report_deinit(val_report_t *rep);
void val_report_reset(val_report_t *rep);
void val_report_add(val_report_t *rep, val_sev_t sev, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Load the embedded CRDs. Returns 0 and a new catalog (free with val_catalog_free), or
 * BD_EINTERNAL when a CRD is malformed (err names the file and field), BD_ENOMEM. */
int val_catalog_new(val_catalog_t **out, bd_err_t *err);
void val_catalog_free(val_catalog_t *cat);

typedef enum {
    VAL_CLASS_OURS,    /* a bindy kind: fully validated */
    VAL_CLASS_BUILTIN, /* a Kubernetes built-in group (v1, apps/v1, *.k8s.io ...): not ours */
    VAL_CLASS_UNKNOWN, /* anything else: an error */
} val_class_t;

/* Classify an object by apiVersion and kind (either may be NULL). */
val_class_t val_classify(const val_catalog_t *cat, const char *api_version, const char *kind);

/*
 * Validate obj in place (schema defaults are applied first). Issues are appended to rep.
 * Returns BD_OK when no error was found, BD_EINVAL when any was, BD_ENOMEM.
 * Built-in Kubernetes kinds get only the object-level checks (apiVersion, kind, name).
 */
int val_check(const val_catalog_t *cat, json_t *obj, val_report_t *rep);

/*
 * val_check without writing to obj, for a caller that borrows it. When obj lacks a field
 * that has a schema default, val_check would add it and validate the result: then
 * *defaults_missing is set, the return is BD_OK, rep is incomplete (reset it), and the
 * caller runs val_check on a copy. Otherwise exactly val_check's issues and return (obj is
 * then what val_check would have left). BD_OK, BD_EINVAL, BD_ENOMEM.
 */
int val_check_borrowed(const val_catalog_t *cat, const json_t *obj, val_report_t *rep, bool *defaults_missing);

/* ---- introspection for tests and tools ---- */

size_t val_catalog_count(const val_catalog_t *cat);
/* Kind name of CRD i ("ARecord"), its plural ("arecords"), and its openAPIV3Schema. */
const char *val_catalog_kind(const val_catalog_t *cat, size_t i);
const char *val_catalog_plural(const val_catalog_t *cat, size_t i);
const json_t *val_catalog_schema(const val_catalog_t *cat, size_t i);
/* The CRD document itself, as a JSON value (borrowed). */
const json_t *val_catalog_crd(const val_catalog_t *cat, size_t i);

/* Calls fn for every x-kubernetes-validations rule in every CRD. */
typedef void (*val_cel_visit_fn)(const char *kind, const char *schema_path, const char *rule,
                                 void *arg);
void val_catalog_each_cel(const val_catalog_t *cat, val_cel_visit_fn fn, void *arg);

/* Whether the C rule tables have a twin for this CEL rule / list their entries. */
int val_has_cel_twin(const char *kind, const char *schema_path, const char *rule);
typedef void (*val_rule_visit_fn)(const char *kind, const char *schema_path, const char *rule,
                                  void *arg);
/* rule is the CEL text for twins and NULL for C-only checks. */
void val_each_c_rule(val_rule_visit_fn fn, void *arg);

/* The schema node at a schema path ("spec.config.allowQuery[]"), or NULL. */
const json_t *val_schema_at(const json_t *root, const char *schema_path);

#endif
