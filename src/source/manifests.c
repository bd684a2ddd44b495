#include "manifests.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "hmap.h"
#include "log.h"
#include "sort.h"

typedef struct {
    char *key; /* apiVersion \n kind \n ns \n name: the journal's own order */
    json_t *obj;
    bool invalid;
    int rank; /* kind_rank(key), computed once: the sort compares 10,000 objects */
} want_t;

typedef struct {
    want_t *v;
    size_t n, cap;
    int oom;
    const mf_visitor_t *report;
    void *report_arg;
    msrc_result_t *res;
} scan_t;

static char *key_of(const char *api, const char *kind, const char *ns, const char *name)
{
    char *k = NULL;
    if (asprintf(&k, "%s\n%s\n%s\n%s", api, kind, ns, name) < 0)
        return NULL;
    return k;
}

static int kind_rank(const char *key);

static void on_object(void *arg, const mf_object_t *o)
{
    scan_t *s = arg;
    if (s->report && (o->rep->n > 0))
        s->report->object(s->report_arg, o);
    if (o->cls != VAL_CLASS_OURS || o->name[0] == '\0')
        return; /* built-in kinds are not bindy's to journal */
    if (!o->valid)
        s->res->invalid++;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        want_t *nv = realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            s->oom = 1;
            return;
        }
        s->v = nv;
        s->cap = ncap;
    }
    char *key = strdup(o->key);
    if (key == NULL) {
        s->oom = 1;
        return;
    }
    s->v[s->n++] = (want_t){key, json_incref(o->obj), !o->valid, kind_rank(key)};
}

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    scan_t *s = arg;
    s->res->problems++;
    if (s->report)
        s->report->problem(s->report_arg, file, line, msg, unreadable);
}

/* Objects a kind depends on come first (clusters, instances, zones, then records), so a
 * fresh import never shows a record "not selected" before its zone arrives. */
static int kind_rank(const char *key)
{
    static const char *const order[] = {"\nBind9Cluster\n", "\nBind9Instance\n", "\nDNSZone\n"};
    for (int i = 0; i < 3; i++)
        if (strstr(key, order[i]) != NULL)
            return i;
    return 3;
}

static int want_cmp(const void *a, const void *b)
{
    const want_t *x = a, *y = b;
    return x->rank != y->rank ? x->rank - y->rank : strcmp(x->key, y->key);
}

static int append(jnl_t *j, jnl_type_t type, const char *api, const char *kind, const char *ns, const char *name,
                  json_t *obj, uint64_t *seq, bd_err_t *err)
{
    const json_t *meta = json_object_get(obj, "metadata");
    jnl_event_t ev = {
        .source = JNL_SRC_MANIFESTS,
        .type = type,
        .api_version = api,
        .kind = kind,
        .ns = ns,
        .name = name,
        .uid = json_string_value(json_object_get(meta, "uid")),
        .resource_version = json_string_value(json_object_get(meta, "resourceVersion")),
        .generation = json_integer_value(json_object_get(meta, "generation")),
        .object = obj,
    };
    return jnl_append(j, &ev, seq, err);
}

/* ---- the cache: parsed files and the journaled state, kept between imports ---------- */

/* One manifest file as last parsed: its objects (ours), problems and refusals. */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    struct timespec scanned; /* the wall clock just before it was read */
    want_t *v;
    size_t n;
    size_t problems, invalid;
} cfile_t;

/* One object of the journal's current state (the folded last event of its key). */
typedef struct {
    jnl_source_t source;
    char *api, *kind, *ns, *name;
    json_t *obj;
} sent_t;

struct msrc_cache {
    bd_hmap_t *files; /* path -> cfile_t */
    bd_hmap_t *state; /* key -> sent_t; NULL: to be read from the journal */
    uint64_t seq;     /* the journal's last seq the state reflects */
};

static void wants_free(want_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        json_decref(v[i].obj);
    }
    free(v);
}

static void cfile_free(cfile_t *f)
{
    if (f != NULL)
        wants_free(f->v, f->n);
    free(f);
}

static void sent_free(sent_t *e)
{
    if (e == NULL)
        return;
    free(e->api);
    free(e->kind);
    free(e->ns);
    free(e->name);
    json_decref(e->obj);
    free(e);
}

static void state_free(bd_hmap_t *m)
{
    size_t pos = 0;
    sent_t *e;
    while (m && bd_hmap_next(m, &pos, NULL, (void **)&e))
        sent_free(e);
    bd_hmap_free(m);
}

int msrc_cache_new(msrc_cache_t **out)
{
    *out = NULL;
    msrc_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->files = bd_hmap_new()) == NULL) {
        free(c);
        return BD_ENOMEM;
    }
    *out = c;
    return BD_OK;
}

void msrc_cache_free(msrc_cache_t *c)
{
    if (c == NULL)
        return;
    size_t pos = 0;
    cfile_t *f;
    while (bd_hmap_next(c->files, &pos, NULL, (void **)&f))
        cfile_free(f);
    bd_hmap_free(c->files);
    state_free(c->state);
    free(c);
}

/* Put an event into a state map (ADDED/MODIFIED) or take it out (DELETED). */
static int state_put(bd_hmap_t *m, const char *key, jnl_source_t source, const char *api, const char *kind,
                     const char *ns, const char *name, json_t *obj, bool deleted)
{
    sent_t *old = bd_hmap_del(m, key);
    sent_free(old);
    if (deleted)
        return BD_OK;
    sent_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->api = strdup(api)) == NULL || (e->kind = strdup(kind)) == NULL ||
        (e->ns = strdup(ns)) == NULL || (e->name = strdup(name)) == NULL || bd_hmap_put(m, key, e, NULL) != BD_OK) {
        sent_free(e);
        return BD_ENOMEM;
    }
    e->source = source;
    e->obj = json_incref(obj);
    return BD_OK;
}

/* The journal's current state as a map, read with one fold. */
static int state_load(jnl_t *j, uint64_t last, bd_hmap_t **out, bd_err_t *err)
{
    *out = NULL;
    jnl_state_t *st = NULL;
    bd_hmap_t *m = bd_hmap_new();
    int rc = m ? BD_OK : bd_err_set(err, BD_ENOMEM, "import: out of memory");
    if (rc == BD_OK && last > 0)
        rc = jnl_state_at(j, JNL_SEQ_LAST, &st, err);
    for (size_t i = 0; rc == BD_OK && st && i < jnl_state_count(st); i++) {
        const jnl_event_t *ev = jnl_state_get(st, i);
        char *key = key_of(ev->api_version, ev->kind, ev->ns, ev->name);
        if (key == NULL || state_put(m, key, ev->source, ev->api_version, ev->kind, ev->ns, ev->name,
                                     ev->object, false) != BD_OK)
            rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
        free(key);
    }
    jnl_state_free(st);
    if (rc != BD_OK) {
        state_free(m);
        return rc;
    }
    *out = m;
    return BD_OK;
}

/* Unchanged since it was read, as far as stat can tell. A file changed within a second of
 * its reading is read again: file times are coarse (a jiffy), so a second write of the same
 * size in the same tick would look unchanged (git's "racy" entries). */
static double ts_s(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

static bool same_file(const cfile_t *f, const struct stat *st)
{
    return ts_s(f->mtime) + 1.0 < ts_s(f->scanned) && ts_s(f->ctime) + 1.0 < ts_s(f->scanned) &&
           f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
           f->mtime.tv_sec == st->st_mtim.tv_sec && f->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           f->ctime.tv_sec == st->st_ctim.tv_sec && f->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Scan paths through the cache: files whose identity, size and times are unchanged are
 * not read again (an edit in a directory of 10,000 objects re-read all of them: 0.4 s).
 * Objects of ours go to s in file order; a key already seen in an earlier file is refused
 * as mf_scan refuses it (it only sees one file at a time here). */
static int scan_cached(const val_catalog_t *cat, const char *const *paths, size_t npaths, msrc_cache_t *cache,
                       scan_t *s, bd_err_t *err)
{
    mf_visitor_t vis = {on_object, on_problem};
    char **files = NULL;
    size_t nfiles = 0;
    bd_hmap_t *keep = bd_hmap_new(), *first = bd_hmap_new();
    int rc = keep && first ? mf_files(paths, npaths, &vis, s, &files, &nfiles) : BD_ENOMEM;
    for (size_t i = 0; rc == BD_OK && i < nfiles; i++) {
        struct stat st;
        cfile_t *f = bd_hmap_get(cache->files, files[i]);
        bool seen = stat(files[i], &st) == 0;
        if (!seen) {
            memset(&st, 0, sizeof(st));
            st.st_size = -1; /* never matches: read it (and report it) again next time */
        }
        if (!seen || f == NULL || !same_file(f, &st)) {
            cfile_free(bd_hmap_del(cache->files, files[i]));
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            f = calloc(1, sizeof(*f));
            msrc_result_t fres = {0};
            scan_t fs = {.report = s->report, .report_arg = s->report_arg, .res = &fres};
            const char *one[] = {files[i]};
            mf_visitor_t fvis = {on_object, on_problem};
            if (f == NULL || (rc = mf_scan(cat, one, 1, &fvis, &fs)) != BD_OK || fs.oom) {
                wants_free(fs.v, fs.n);
                free(f);
                rc = BD_ENOMEM;
                break;
            }
            *f = (cfile_t){st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim, now, fs.v, fs.n, fres.problems,
                           fres.invalid};
            if (bd_hmap_put(cache->files, files[i], f, NULL) != BD_OK) {
                cfile_free(f);
                rc = BD_ENOMEM;
                break;
            }
        }
        if (bd_hmap_put(keep, files[i], f, NULL) != BD_OK) {
            rc = BD_ENOMEM;
            break;
        }
        s->res->problems += f->problems;
        s->res->invalid += f->invalid;
        for (size_t k = 0; k < f->n && rc == BD_OK; k++) {
            want_t w = f->v[k];
            const char *where = bd_hmap_get(first, w.key);
            if (where != NULL && strcmp(where, files[i]) != 0) {
                char msg[1200];
                snprintf(msg, sizeof(msg), "%.200s: duplicates the object in %.900s", strchr(w.key, '\n') + 1, where);
                for (char *c = msg; *c; c++)
                    if (*c == '\n')
                        *c = '/';
                on_problem(s, files[i], 0, msg, false);
                s->res->problems--; /* a refused object, not a bad file */
                s->res->invalid++;
                continue;
            }
            if (where == NULL && bd_hmap_put(first, w.key, files[i], NULL) != BD_OK) {
                rc = BD_ENOMEM;
                break;
            }
            if (s->n == s->cap) {
                size_t ncap = s->cap ? s->cap * 2 : 64;
                want_t *nv = realloc(s->v, ncap * sizeof(*nv));
                if (nv == NULL) {
                    rc = BD_ENOMEM;
                    break;
                }
                s->v = nv;
                s->cap = ncap;
            }
            if ((w.key = strdup(w.key)) == NULL) {
                rc = BD_ENOMEM;
                break;
            }
            json_incref(w.obj);
            s->v[s->n++] = w;
        }
    }
    /* forget files that are gone */
    size_t nk = 0;
    const char **known = rc == BD_OK ? bd_hmap_keys_sorted(cache->files, &nk) : NULL;
    for (size_t i = 0; i < nk; i++)
        if (bd_hmap_get(keep, known[i]) == NULL)
            cfile_free(bd_hmap_del(cache->files, known[i]));
    free(known);
    mf_files_free(files, nfiles);
    bd_hmap_free(keep);
    bd_hmap_free(first);
    return rc == BD_OK ? BD_OK : bd_err_set(err, rc, "import: %s", bd_strerror(rc));
}

int msrc_import(jnl_t *j, const val_catalog_t *cat, const char *const *paths, size_t npaths, bool dry_run,
                const mf_visitor_t *report, void *report_arg, msrc_result_t *res, bd_err_t *err)
{
    return msrc_import_cached(j, cat, paths, npaths, dry_run, NULL, report, report_arg, res, err);
}

int msrc_import_cached(jnl_t *j, const val_catalog_t *cat, const char *const *paths, size_t npaths, bool dry_run,
                       msrc_cache_t *cache, const mf_visitor_t *report, void *report_arg, msrc_result_t *res,
                       bd_err_t *err)
{
    memset(res, 0, sizeof(*res));
    scan_t s = {.report = report, .report_arg = report_arg, .res = res};
    bd_hmap_t *state = NULL, *wanted = NULL;
    int rc;
    mf_visitor_t vis = {on_object, on_problem};
    if (cache != NULL) {
        if ((rc = scan_cached(cat, paths, npaths, cache, &s, err)) != BD_OK)
            goto out;
    } else if ((rc = mf_scan(cat, paths, npaths, &vis, &s)) != BD_OK || s.oom) {
        rc = bd_err_set(err, s.oom ? BD_ENOMEM : rc, "import: %s", bd_strerror(s.oom ? BD_ENOMEM : rc));
        goto out;
    }
    bd_qsort(s.v, s.n, sizeof(*s.v), want_cmp);

    uint64_t first = 0, last = 0;
    rc = jnl_bounds(j, &first, &last, err);
    if (rc != BD_OK)
        goto out;
    /* The journal's state: kept by the cache while nothing but this import appends (the
     * fold reads every object: 0.3 s at 10,000), read again otherwise. */
    if (cache != NULL && cache->state != NULL && cache->seq == last) {
        state = cache->state;
    } else {
        if (cache != NULL) {
            state_free(cache->state);
            cache->state = NULL;
        }
        if ((rc = state_load(j, last, &state, err)) != BD_OK)
            goto out;
        if (cache != NULL) {
            cache->state = state;
            cache->seq = last;
        }
    }

    if ((wanted = bd_hmap_new()) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
        goto out;
    }
    for (size_t i = 0; i < s.n; i++) {
        want_t *w = &s.v[i];
        if (bd_hmap_put(wanted, w->key, w, NULL) != BD_OK) {
            rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
            goto out;
        }
        if (w->invalid)
            continue; /* its journaled version stays as it is */
        const char *api = json_string_value(json_object_get(w->obj, "apiVersion"));
        const char *kind = json_string_value(json_object_get(w->obj, "kind"));
        const json_t *meta = json_object_get(w->obj, "metadata");
        const char *ns = json_string_value(json_object_get(meta, "namespace")) ?: "default";
        const char *name = json_string_value(json_object_get(meta, "name"));
        const sent_t *have = bd_hmap_get(state, w->key);
        if (have != NULL && json_equal(have->obj, w->obj)) {
            res->unchanged++;
            continue;
        }
        if (have)
            res->modified++;
        else
            res->added++;
        if (dry_run)
            continue;
        if ((rc = append(j, have ? JNL_MODIFIED : JNL_ADDED, api, kind, ns, name, w->obj, &res->last_seq, err)) !=
            BD_OK)
            goto out;
        if (cache != NULL &&
            state_put(state, w->key, JNL_SRC_MANIFESTS, api, kind, ns, name, w->obj, false) != BD_OK) {
            rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
            goto out;
        }
    }

    /* Deletions: manifest objects the directory no longer has, in key order (only those
     * are sorted: sorting every key of a 10,000-object state took most of an edit's time). */
    res->deletions_held = res->problems > 0;
    size_t nkeys = 0, cap = 0, pos = 0;
    const char **keys = NULL, *key;
    sent_t *ev;
    while (bd_hmap_next(state, &pos, &key, (void **)&ev)) {
        if (ev->source != JNL_SRC_MANIFESTS || bd_hmap_get(wanted, key) != NULL ||
            val_classify(cat, ev->api, ev->kind) != VAL_CLASS_OURS)
            continue;
        if (nkeys == cap) {
            cap = cap ? cap * 2 : 16;
            const char **nk = realloc(keys, cap * sizeof(*nk));
            if (nk == NULL) {
                free(keys);
                rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
                goto out;
            }
            keys = nk;
        }
        keys[nkeys++] = key;
    }
    bd_qsort(keys, nkeys, sizeof(*keys), bd_cmp_strp);
    for (size_t i = 0; i < nkeys; i++) {
        ev = bd_hmap_get(state, keys[i]);
        if (res->deletions_held) {
            bd_warn("%s %s/%s: its manifest is gone, but deletion waits until every file parses", ev->kind, ev->ns,
                    ev->name);
            continue;
        }
        res->deleted++;
        if (dry_run)
            continue;
        if ((rc = append(j, JNL_DELETED, ev->api, ev->kind, ev->ns, ev->name, ev->obj, &res->last_seq, err)) !=
            BD_OK)
            break;
        if (cache != NULL)
            state_put(state, keys[i], ev->source, NULL, NULL, NULL, NULL, NULL, true); /* frees ev */
    }
    free(keys);
    if (rc != BD_OK)
        goto out;
    if (!dry_run && res->last_seq > 0)
        rc = jnl_flush(j, err);
    if (cache != NULL)
        cache->seq = rc == BD_OK && res->last_seq > 0 ? res->last_seq : cache->seq;
out:
    if (cache != NULL && rc != BD_OK) {
        /* the journal may hold part of this import: read it again next time */
        state_free(cache->state);
        cache->state = NULL;
    } else if (cache == NULL) {
        state_free(state);
    }
    for (size_t i = 0; i < s.n; i++) {
        free(s.v[i].key);
        json_decref(s.v[i].obj);
    }
    free(s.v);
    bd_hmap_free(wanted);
    return rc;
}
