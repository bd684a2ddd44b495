/*
 * manifests.h - a directory of manifests as an event source.
 *
 * msrc_import() compares the manifests under PATH... with the journal's current state
 * and appends what differs, in key order: ADDED for a new object, MODIFIED for a changed
 * one, DELETED for an object whose manifest is gone. `bindy-journal import` and local
 * mode both use it, so a manifest directory becomes the same journal either way.
 *
 * Bad input loses nothing: an invalid object is reported and its journaled version is
 * left as it is (not modified, not deleted), and while any file fails to parse no object
 * is deleted at all (its objects might be among the unreadable ones).
 * Only objects previously imported from manifests can be deleted by an import; objects
 * journaled from the API server are never touched.
 */
#ifndef BD_MANIFESTS_H
#define BD_MANIFESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "journal.h"
#include "manifest.h"

typedef struct {
    size_t added, modified, deleted, unchanged;
    size_t invalid;       /* objects refused (reported through the visitor) */
    size_t problems;      /* files unreadable or malformed */
    bool deletions_held;  /* a file failed to parse: no deletion was made */
    uint64_t last_seq;    /* seq of the last appended event (0: none) */
} msrc_result_t;

/*
 * Import paths into j (writable). Problems and invalid objects are handed to report
 * (may be NULL), exactly as `bindy validate` would print them. dry_run: compute, append
 * nothing. Blocks until the appended events are committed (jnl_flush).
 * Returns BD_OK (even with invalid objects; see *res), or the journal's error.
 */
int msrc_import(jnl_t *j, const val_catalog_t *cat, const char *const *paths, size_t npaths, bool dry_run,
                const mf_visitor_t *report, void *report_arg, msrc_result_t *res, bd_err_t *err);

/*
 * Local mode's import: the same as msrc_import, with a cache (msrc_cache_new) kept by the
 * caller between imports of the same paths into the same journal. A file whose device,
 * inode, size, mtime and ctime are unchanged is not read again (its objects and problems
 * are reused, and its issues are not reported again); the journal's state is kept and
 * updated with what the import appends, and read again when the journal's last seq is
 * not the one the cache left (someone else appended) or after an error. Objects that
 * repeat the key of one in an earlier file are refused and reported as a problem of the
 * later file. cache NULL: exactly msrc_import.
 */
typedef struct msrc_cache msrc_cache_t;
int msrc_cache_new(msrc_cache_t **out); /* BD_OK or BD_ENOMEM; free with msrc_cache_free */
void msrc_cache_free(msrc_cache_t *c);  /* NULL is a no-op */
int msrc_import_cached(jnl_t *j, const val_catalog_t *cat, const char *const *paths, size_t npaths, bool dry_run,
                       msrc_cache_t *cache, const mf_visitor_t *report, void *report_arg, msrc_result_t *res,
                       bd_err_t *err);

#endif
