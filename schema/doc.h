/*
 * doc.h - manifest documents: YAML (multi-document, `kind: List`) and JSON files parsed
 * into jansson values, with the source line of every field.
 *
 * YAML scalars resolve as Kubernetes' YAML reader does (sigs.k8s.io/yaml, YAML 1.1):
 * quoted scalars are strings; plain true/false/yes/no/on/off are booleans, null/~/empty
 * is null, decimal/hex/octal integers and decimal floats are numbers, the rest strings.
 * Duplicate keys are errors (as in the API server's strict decoding).
 *
 * Limits keep hostile input from hurting: file size, nesting depth, scalar length and
 * total node count (aliases count their whole expansion). A limit hit is a parse problem
 * reported with its line, not a crash or an allocation storm.
 *
 * Field paths look like `spec.ipv4Addresses[1]`, or `metadata.labels["a.b/c"]` for keys
 * that are not plain identifiers; doc_path_key()/doc_path_index() build them and the
 * validator uses the same functions, so paths and line lookups always agree.
 */
#ifndef BD_DOC_H
#define BD_DOC_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

#define DOC_MAX_FILE_BYTES (16u << 20)
#define DOC_MAX_DEPTH 64
#define DOC_MAX_SCALAR_BYTES (1u << 20)
#define DOC_MAX_NODES 1000000u
#define DOC_PATH_MAX 512
#define DOC_SPLIT_MIN_BYTES (256u << 10) /* YAML at least this big is parsed by two threads */

typedef struct doc doc_t;
typedef struct doc_list doc_list_t;

/*
 * Parse a file: ".json" with jansson, anything else with libyaml.
 * Returns 0 and a new list in *out (free with doc_list_free) even when the content is
 * malformed: the documents read before the problem are kept and doc_list_error() tells
 * what went wrong and where. Returns BD_EIO (err says why) when the file cannot be read,
 * BD_ENOMEM on allocation failure; *out is then NULL.
 */
int doc_load_file(const char *path, doc_list_t **out, bd_err_t *err);

/* Same as doc_load_file for a buffer; name is used in messages (copied). */
int doc_load_buffer(const char *name, const char *buf, size_t len, int is_json,
                    doc_list_t **out, bd_err_t *err);

void doc_list_free(doc_list_t *list);
size_t doc_list_count(const doc_list_t *list);
/* Borrowed; valid until doc_list_free. */
const doc_t *doc_list_get(const doc_list_t *list, size_t i);
/* The first parse problem (NULL when none) and its 1-based line (0 when unknown). */
const char *doc_list_error(const doc_list_t *list, int *line);
const char *doc_list_file(const doc_list_t *list);

/* The document's value (borrowed; the caller may modify it in place, e.g. defaulting). */
json_t *doc_value(const doc_t *doc);
/* 1-based line where the document starts. */
int doc_start_line(const doc_t *doc);
/*
 * Line of the field at path; for a path that has no entry (a field that is absent, or a
 * JSON file, which has no positions) the line of the nearest enclosing field.
 */
int doc_line(const doc_t *doc, const char *path);

/* Append ".key" (or `["key"]`) / "[i]" to a path buffer of size DOC_PATH_MAX; a path
 * that would not fit is truncated with "..." so that messages stay bounded. */
void doc_path_key(char *path, const char *key);
void doc_path_index(char *path, size_t i);

#endif
