/*
 * manifest.h - read manifests from files and directories and validate every object.
 *
 * One pass over PATH...: directories are walked recursively (names starting with '.'
 * are skipped; *.yaml, *.yml and *.json are read) in sorted order, so output and
 * journal imports are deterministic. Each object is validated (defaults applied) and
 * handed to the visitor with its issues; an object that repeats the kind, namespace and
 * name of an earlier one gets an error naming where the first one is.
 * Used by `bindy validate`, `bindy-journal import` and local mode, so all three accept
 * and reject exactly the same input.
 */
#ifndef BD_MANIFEST_H
#define BD_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>

#include "doc.h"
#include "validate.h"

typedef struct {
    const char *file;
    const doc_t *doc; /* for doc_line(doc, issue->path) */
    json_t *obj;      /* validated and defaulted; borrowed, a visitor may keep a reference */
    const char *kind, *ns, *name; /* borrowed; ns is "default" when absent; may be "" */
    const char *key; /* "apiVersion\nkind\nns\nname" (the journal's order); "" without a name */
    val_class_t cls;
    const val_report_t *rep; /* issues of this object, errors and warnings */
    bool valid;              /* no errors */
} mf_object_t;

typedef struct {
    /* Every object of every readable file, in order. */
    void (*object)(void *arg, const mf_object_t *obj);
    /* A file that cannot be read (unreadable=true) or is malformed: line may be 0. */
    void (*problem)(void *arg, const char *file, int line, const char *msg, bool unreadable);
} mf_visitor_t;

/* Is name (a file name, not a path) one mf_scan reads: *.yaml, *.yml or *.json? Local
 * mode asks before it decides how soon a change to that file is imported. */
bool mf_is_manifest_name(const char *name);

/* The manifest files under paths (directories walked as mf_scan walks them), in the order
 * mf_scan reads them: *files is a new array of new strings, freed with mf_files_free.
 * Paths that cannot be read go to vis->problem. Returns BD_OK or BD_ENOMEM. */
int mf_files(const char *const *paths, size_t npaths, const mf_visitor_t *vis, void *arg, char ***files,
             size_t *nfiles);
void mf_files_free(char **files, size_t n);

/* Returns BD_OK after visiting everything (problems go to the visitor), BD_ENOMEM. */
int mf_scan(const val_catalog_t *cat, const char *const *paths, size_t npaths, const mf_visitor_t *vis,
            void *arg);

#endif
