#include "sort.h"
#include "manifest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hmap.h"

typedef struct {
    char **v;
    size_t n, cap;
} pathv_t;

static int pathv_push(pathv_t *p, const char *s)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 16;
        char **nv = realloc(p->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return BD_ENOMEM;
        p->v = nv;
        p->cap = ncap;
    }
    if ((p->v[p->n] = strdup(s)) == NULL)
        return BD_ENOMEM;
    p->n++;
    return BD_OK;
}

static void pathv_free(pathv_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

bool mf_is_manifest_name(const char *name)
{
    size_t n = strlen(name);
    static const char *const exts[] = {".yaml", ".yml", ".json"};
    for (size_t i = 0; i < 3; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcmp(name + n - e, exts[i]) == 0)
            return true;
    }
    return false;
}

/* Collect manifest files below dir, sorted; depth-bounded against symlink loops. */
static int collect(const char *dir, int depth, pathv_t *out, const mf_visitor_t *vis, void *arg)
{
    if (depth > 32) {
        vis->problem(arg, dir, 0, "directory nesting too deep (a symlink loop?)", true);
        return BD_OK;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cannot read directory: %s", strerror(errno));
        vis->problem(arg, dir, 0, msg, true);
        return BD_OK;
    }
    pathv_t names = {0};
    int rc = BD_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && rc == BD_OK)
        if (e->d_name[0] != '.')
            rc = pathv_push(&names, e->d_name);
    closedir(d);
    bd_qsort(names.v, names.n, sizeof(*names.v), str_cmp);
    for (size_t i = 0; i < names.n && rc == BD_OK; i++) {
        char *full = NULL;
        if (asprintf(&full, "%s/%s", dir, names.v[i]) < 0) {
            rc = BD_ENOMEM;
            break;
        }
        struct stat st;
        if (stat(full, &st) == 0 && S_ISDIR(st.st_mode))
            rc = collect(full, depth + 1, out, vis, arg);
        else if (mf_is_manifest_name(names.v[i]))
            rc = pathv_push(out, full);
        free(full);
    }
    pathv_free(&names);
    return rc;
}

/* Where each kind/namespace/name was first seen (key -> owned "file:line"), to report
 * duplicates. A map, not a list: a single manifest may hold 10,000 objects, and a linear
 * scan per object made the scan quadratic (a fifth of a 10,000-record import). */
typedef struct {
    bd_hmap_t *m;
} seenv_t;

/* parts joined into out (cap bytes), cut short if they do not fit */
static void join_into(char *out, size_t cap, const char *const *parts, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        if (l > cap - 1 - o)
            l = cap - 1 - o;
        memcpy(out + o, parts[i], l);
        o += l;
    }
    out[o] = '\0';
}

static const char *seen_check(seenv_t *s, const char *key, const char *where, int *nomem)
{
    if (s->m == NULL && (s->m = bd_hmap_new()) == NULL) {
        *nomem = 1;
        return NULL;
    }
    const char *first = bd_hmap_get(s->m, key);
    if (first != NULL)
        return first;
    char *w = strdup(where);
    if (w == NULL || bd_hmap_put(s->m, key, w, NULL) != BD_OK) {
        free(w);
        *nomem = 1;
    }
    return NULL;
}

static void seen_free(seenv_t *s)
{
    size_t pos = 0;
    void *where;
    while (s->m && bd_hmap_next(s->m, &pos, NULL, &where))
        free(where);
    bd_hmap_free(s->m);
}

static int scan_file(const val_catalog_t *cat, const char *file, seenv_t *seen, const mf_visitor_t *vis,
                     void *arg)
{
    doc_list_t *list = NULL;
    bd_err_t err;
    int rc = doc_load_file(file, &list, &err);
    if (rc == BD_EIO) {
        vis->problem(arg, file, 0, err.msg, true);
        return BD_OK;
    }
    if (rc != BD_OK)
        return rc;

    val_report_t rep;
    val_report_init(&rep);
    int nomem = 0;
    for (size_t i = 0; i < doc_list_count(list) && !nomem; i++) {
        const doc_t *doc = doc_list_get(list, i);
        json_t *obj = doc_value(doc);
        val_report_reset(&rep);
        if (val_check(cat, obj, &rep) == BD_ENOMEM) {
            nomem = 1;
            break;
        }
        const json_t *meta = json_object_get(obj, "metadata");
        mf_object_t o = {
            .file = file,
            .doc = doc,
            .obj = obj,
            .kind = json_string_value(json_object_get(obj, "kind")) ?: "",
            .ns = json_string_value(json_object_get(meta, "namespace")) ?: "default",
            .name = json_string_value(json_object_get(meta, "name")) ?: "",
            .cls = val_classify(cat, json_string_value(json_object_get(obj, "apiVersion")), json_string_value(json_object_get(obj, "kind"))),
            .rep = &rep,
        };
        char key[1024];
        key[0] = '\0';
        o.key = key;
        if (o.name[0] != '\0') {
            /* once per object: joined without printf */
            char line[24], where[1024];
            const char *api = json_string_value(json_object_get(obj, "apiVersion")) ?: "";
            const char *kparts[] = {api, "\n", o.kind, "\n", o.ns, "\n", o.name};
            const char *wparts[] = {file, ":", line};
            snprintf(line, sizeof(line), "%d", doc_start_line(doc));
            join_into(key, sizeof(key), kparts, 7);
            join_into(where, sizeof(where), wparts, 3);
            const char *first = seen_check(seen, key, where, &nomem);
            if (first != NULL)
                val_report_add(&rep, VAL_ERROR, "metadata.name", "duplicates the object at %s", first);
        }
        o.valid = rep.nerrors == 0;
        vis->object(arg, &o);
    }
    int line;
    const char *problem = doc_list_error(list, &line);
    if (problem != NULL && !nomem)
        vis->problem(arg, file, line, problem, false);
    val_report_deinit(&rep);
    doc_list_free(list);
    return nomem ? BD_ENOMEM : BD_OK;
}

/* The files under paths, in the order mf_scan reads them. */
static int collect_paths(const char *const *paths, size_t npaths, const mf_visitor_t *vis, void *arg, pathv_t *files)
{
    int rc = BD_OK;
    for (size_t i = 0; i < npaths && rc == BD_OK; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", strerror(errno));
            vis->problem(arg, paths[i], 0, msg, true);
        } else if (S_ISDIR(st.st_mode)) {
            rc = collect(paths[i], 0, files, vis, arg);
        } else {
            rc = pathv_push(files, paths[i]);
        }
    }
    return rc;
}

int mf_files(const char *const *paths, size_t npaths, const mf_visitor_t *vis, void *arg, char ***files,
             size_t *nfiles)
{
    *files = NULL;
    *nfiles = 0;
    pathv_t v = {0};
    int rc = collect_paths(paths, npaths, vis, arg, &v);
    if (rc != BD_OK) {
        pathv_free(&v);
        return rc;
    }
    *files = v.v;
    *nfiles = v.n;
    return BD_OK;
}

void mf_files_free(char **files, size_t n)
{
    pathv_t v = {files, n, n};
    pathv_free(&v);
}

int mf_scan(const val_catalog_t *cat, const char *const *paths, size_t npaths, const mf_visitor_t *vis,
            void *arg)
{
    pathv_t files = {0};
    seenv_t seen = {0};
    int rc = collect_paths(paths, npaths, vis, arg, &files);
    for (size_t i = 0; i < files.n && rc == BD_OK; i++)
        rc = scan_file(cat, files.v[i], &seen, vis, arg);
    seen_free(&seen);
    pathv_free(&files);
    return rc;
}
