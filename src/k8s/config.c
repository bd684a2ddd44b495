/*
 * config.c - in-cluster and kubeconfig configuration (see config.h).
 *
 * Kubeconfig files are parsed with the manifest reader (schema/doc.h), so YAML scalars
 * resolve as kubectl's reader resolves them and every error can name the line of the
 * field it concerns. Files of a KUBECONFIG list are merged as kubectl merges them: for
 * clusters, users and contexts the first file that defines a name wins, and the first
 * non-empty current-context wins. Each entry remembers its file, so relative paths in it
 * resolve against that file's directory.
 *
 * Secrets (tokens, key PEM) are wiped from memory when freed and never put in a message.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doc.h"

#define SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
#define CFG_MAX_FILE (4u << 20) /* a certificate bundle, key or token file */
#define KC_MAX_FILES 32         /* entries of a KUBECONFIG list */

/* ---- small helpers ------------------------------------------------------------------ */

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void k8s_config_free(k8s_config_t *c)
{
    if (c == NULL)
        return;
    free(c->server);
    free(c->ca_pem);
    wipe_free(c->token);
    free(c->token_file);
    free(c->cert_pem);
    wipe_free(c->key_pem);
    free(c->tls_server_name);
    free(c->ns);
    free(c->origin);
    free(c);
}

/* Whole file as a NUL-terminated string (malloc'd, caller frees; wipe it if secret).
 * what names the file's role in messages ("token file"). Never puts content in err. */
static int read_text(const char *path, const char *what, char **out, bd_err_t *err)
{
    *out = NULL;
    int rc = BD_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return bd_err_set(err, BD_EIO, "%s %s: %s", what, path, strerror(errno));
    size_t cap = 4096, len = 0;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "%s %s: out of memory", what, path);
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= CFG_MAX_FILE) {
                rc = bd_err_set(err, BD_EIO, "%s %s: larger than %u bytes", what, path,
                                CFG_MAX_FILE);
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = bd_err_set(err, BD_ENOMEM, "%s %s: out of memory", what, path);
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = bd_err_set(err, BD_EIO, "%s %s: read error", what, path);
        goto out;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        rc = bd_err_set(err, BD_EPARSE, "%s %s: contains a NUL byte", what, path);
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    if (buf != NULL) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    fclose(f);
    return rc;
}

/* Trim trailing and leading whitespace in place. */
static char *trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t lead = 0;
    while (s[lead] && isspace((unsigned char)s[lead]))
        lead++;
    if (lead > 0)
        memmove(s, s + lead, n - lead + 1);
    return s;
}

static int looks_pem(const char *s, const char *label)
{
    char want[64];
    snprintf(want, sizeof(want), "-----BEGIN %s", label);
    return strstr(s, want) != NULL;
}

/* Standard base64 (whitespace ignored, '=' padding optional). malloc'd NUL-terminated
 * result or NULL when the text is not base64 (*bad set) or on allocation failure. */
static char *b64_decode(const char *in, int *bad)
{
    static const signed char tbl[256] = {
        ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
        ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
        ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
        ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
        ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
        ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
        ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
        ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
        ['/'] = 64,
    }; /* value + 1; 0 means "not a base64 digit" */
    *bad = 0;
    size_t n = strlen(in);
    char *out = malloc(n / 4 * 3 + 4);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    int pad = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (isspace(*p))
            continue;
        if (*p == '=') {
            pad++;
            continue;
        }
        if (pad || tbl[*p] == 0) {
            *bad = 1;
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)(tbl[*p] - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6) {
        *bad = 1;
        free(out);
        return NULL;
    }
    out[o] = '\0';
    if (strlen(out) != o) { /* binary (DER) data: we want PEM text */
        *bad = 1;
        free(out);
        return NULL;
    }
    return out;
}

/* ---- in-cluster --------------------------------------------------------------------- */

int k8s_config_in_cluster(k8s_config_t **out, bd_err_t *err)
{
    *out = NULL;
    int rc = BD_OK;
    k8s_config_t *c = NULL;
    char *ns = NULL;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (host == NULL || *host == '\0')
        return bd_err_set(err, BD_ENOTFOUND,
                          "in-cluster: KUBERNETES_SERVICE_HOST is not set (not in a cluster)");
    if (port == NULL || *port == '\0')
        return bd_err_set(err, BD_ENOTFOUND,
                          "in-cluster: KUBERNETES_SERVICE_PORT is not set (not in a cluster)");
    char *end;
    errno = 0;
    long pn = strtol(port, &end, 10);
    if (errno || *end || pn <= 0 || pn > 65535)
        return bd_err_set(err, BD_EINVAL,
                          "in-cluster: KUBERNETES_SERVICE_PORT \"%.32s\" is not a port", port);
    const char *dir = getenv("BINDY_SERVICEACCOUNT_DIR");
    if (dir == NULL || *dir == '\0')
        dir = SA_DIR_DEFAULT;

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bd_err_set(err, BD_ENOMEM, "in-cluster: out of memory");
    size_t sl = strlen(host) + 32;
    c->server = malloc(sl);
    if (c->server == NULL)
        goto nomem;
    if (strchr(host, ':') != NULL && host[0] != '[') /* IPv6 literal */
        snprintf(c->server, sl, "https://[%s]:%ld", host, pn);
    else
        snprintf(c->server, sl, "https://%s:%ld", host, pn);

    char path[PATH_MAX];
    char *tok = NULL;
    snprintf(path, sizeof(path), "%s/token", dir);
    rc = read_text(path, "in-cluster: service-account token file", &tok, err);
    if (rc != BD_OK)
        goto fail;
    int empty = *trim(tok) == '\0';
    wipe_free(tok);
    if (empty) {
        rc = bd_err_set(err, BD_EPARSE, "in-cluster: service-account token file %s is empty", path);
        goto fail;
    }
    c->token_file = strdup(path);
    if (c->token_file == NULL)
        goto nomem;

    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    rc = read_text(path, "in-cluster: service-account CA file", &c->ca_pem, err);
    if (rc != BD_OK)
        goto fail;
    if (!looks_pem(c->ca_pem, "CERTIFICATE")) {
        rc = bd_err_set(err, BD_EPARSE, "in-cluster: CA file %s holds no PEM certificate", path);
        goto fail;
    }

    snprintf(path, sizeof(path), "%s/namespace", dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        rc = read_text(path, "in-cluster: namespace file", &ns, err);
        if (rc != BD_OK)
            goto fail;
        trim(ns);
    }
    c->ns = strdup(ns != NULL && *ns ? ns : "default");
    c->origin = strdup("in-cluster");
    if (c->ns == NULL || c->origin == NULL)
        goto nomem;
    free(ns);
    *out = c;
    return BD_OK;
nomem:
    rc = bd_err_set(err, BD_ENOMEM, "in-cluster: out of memory");
fail:
    free(ns);
    k8s_config_free(c);
    return rc;
}

/* ---- kubeconfig --------------------------------------------------------------------- */

typedef struct kc_file {
    char *path; /* as given */
    char *dir;  /* its directory, for relative paths */
    doc_list_t *docs;
    const doc_t *doc; /* the first document, or NULL for an empty file */
    json_t *root;     /* borrowed from doc; NULL for an empty file */
} kc_file_t;

typedef struct kc {
    kc_file_t files[KC_MAX_FILES];
    size_t nfiles;
    char names[1024]; /* "a, b" for messages */
    bd_err_t *err;
} kc_t;

/* A located entry: files[fi], LIST[idx], and the inner object (cluster/user/context). */
typedef struct kc_ent {
    const kc_file_t *f;
    char path[DOC_PATH_MAX]; /* "clusters[1].cluster" */
    json_t *obj;
    const char *name;
} kc_ent_t;

__attribute__((format(printf, 5, 6))) static int kc_fail(kc_t *k, int code, const kc_file_t *f,
                                                         const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (f == NULL)
        return bd_err_set(k->err, code, "kubeconfig %s: %s", k->names, msg);
    int line = f->doc != NULL ? doc_line(f->doc, path) : 0;
    if (path == NULL || *path == '\0')
        return bd_err_set(k->err, code, "kubeconfig %s:%d: %s", f->path, line, msg);
    return bd_err_set(k->err, code, "kubeconfig %s:%d: %s: %s", f->path, line, path, msg);
}

static void kc_deinit(kc_t *k)
{
    for (size_t i = 0; i < k->nfiles; i++) {
        free(k->files[i].path);
        free(k->files[i].dir);
        doc_list_free(k->files[i].docs);
    }
    k->nfiles = 0;
}

static const char *kind_list(const char *kind)
{
    return strcmp(kind, "cluster") == 0 ? "clusters"
           : strcmp(kind, "user") == 0  ? "users"
                                        : "contexts";
}

/* Check a file's top-level shape: an object whose clusters/users/contexts are lists of
 * {name: string, KIND: object}. */
static int kc_check_shape(kc_t *k, const kc_file_t *f)
{
    if (f->root == NULL || json_is_null(f->root))
        return BD_OK;
    if (!json_is_object(f->root))
        return kc_fail(k, BD_EPARSE, f, "", "not a mapping (a kubeconfig is a YAML mapping)");
    const json_t *cc = json_object_get(f->root, "current-context");
    if (cc != NULL && !json_is_string(cc) && !json_is_null(cc))
        return kc_fail(k, BD_EPARSE, f, "current-context", "must be a string");
    static const char *const kinds[] = {"cluster", "user", "context"};
    for (size_t ki = 0; ki < 3; ki++) {
        const char *list = kind_list(kinds[ki]);
        json_t *arr = json_object_get(f->root, list);
        if (arr == NULL || json_is_null(arr))
            continue;
        if (!json_is_array(arr))
            return kc_fail(k, BD_EPARSE, f, list, "must be a list");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e)
        {
            char p[DOC_PATH_MAX] = "";
            doc_path_key(p, list);
            doc_path_index(p, i);
            if (!json_is_object(e))
                return kc_fail(k, BD_EPARSE, f, p, "must be a mapping with name and %s", kinds[ki]);
            const json_t *nm = json_object_get(e, "name");
            if (!json_is_string(nm) || *json_string_value(nm) == '\0') {
                char q[DOC_PATH_MAX];
                snprintf(q, sizeof(q), "%s", p);
                doc_path_key(q, "name");
                return kc_fail(k, BD_EPARSE, f, q,
                               nm == NULL ? "missing" : "must be a non-empty string");
            }
            const json_t *in = json_object_get(e, kinds[ki]);
            if (in != NULL && !json_is_object(in) && !json_is_null(in)) {
                doc_path_key(p, kinds[ki]);
                return kc_fail(k, BD_EPARSE, f, p, "must be a mapping");
            }
        }
    }
    return BD_OK;
}

static int kc_add_file(kc_t *k, const char *path)
{
    if (k->nfiles == KC_MAX_FILES)
        return bd_err_set(k->err, BD_EINVAL, "kubeconfig: more than %d files in KUBECONFIG",
                          KC_MAX_FILES);
    kc_file_t *f = &k->files[k->nfiles];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    const char *slash = strrchr(path, '/');
    f->dir = slash == NULL   ? strdup(".")
             : slash == path ? strdup("/")
                             : strndup(path, (size_t)(slash - path));
    if (f->path == NULL || f->dir == NULL) {
        free(f->path);
        free(f->dir);
        return bd_err_set(k->err, BD_ENOMEM, "kubeconfig %s: out of memory", path);
    }
    k->nfiles++;
    size_t nl = strlen(k->names);
    if (nl + 8 < sizeof(k->names))
        snprintf(k->names + nl, sizeof(k->names) - nl, "%s%s", nl ? ", " : "", path);

    bd_err_t e;
    bd_err_clear(&e);
    int rc = doc_load_file(path, &f->docs, &e);
    if (rc != BD_OK)
        return bd_err_set(k->err, rc, "kubeconfig %s", e.msg);
    int line = 0;
    const char *perr = doc_list_error(f->docs, &line);
    if (perr != NULL)
        return bd_err_set(k->err, BD_EPARSE, "kubeconfig %s:%d: malformed YAML: %s", path, line,
                          perr);
    if (doc_list_count(f->docs) > 1)
        return bd_err_set(k->err, BD_EPARSE, "kubeconfig %s: more than one YAML document", path);
    if (doc_list_count(f->docs) == 1) {
        f->doc = doc_list_get(f->docs, 0);
        f->root = doc_value(f->doc);
    }
    return kc_check_shape(k, f);
}

/* Find KIND named name in the files, first file first. BD_ENOTFOUND when absent. */
static int kc_find(kc_t *k, const char *kind, const char *name, kc_ent_t *out)
{
    const char *list = kind_list(kind);
    for (size_t fi = 0; fi < k->nfiles; fi++) {
        const kc_file_t *f = &k->files[fi];
        json_t *arr = f->root != NULL ? json_object_get(f->root, list) : NULL;
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e)
        {
            const char *nm = json_string_value(json_object_get(e, "name"));
            if (nm == NULL || strcmp(nm, name) != 0)
                continue;
            out->f = f;
            out->name = nm;
            out->path[0] = '\0';
            doc_path_key(out->path, list);
            doc_path_index(out->path, i);
            doc_path_key(out->path, kind);
            out->obj = json_object_get(e, kind);
            if (!json_is_object(out->obj))
                return kc_fail(k, BD_EPARSE, f, out->path, "missing");
            return BD_OK;
        }
    }
    return BD_ENOTFOUND;
}

/* String field of an entry: *out NULL when absent (or empty). */
static int kc_str(kc_t *k, const kc_ent_t *e, const char *key, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(e->obj, key);
    if (v == NULL || json_is_null(v))
        return BD_OK;
    if (!json_is_string(v)) {
        char p[DOC_PATH_MAX];
        snprintf(p, sizeof(p), "%s", e->path);
        doc_path_key(p, key);
        return kc_fail(k, BD_EPARSE, e->f, p, "must be a string");
    }
    if (*json_string_value(v) != '\0')
        *out = json_string_value(v);
    return BD_OK;
}

static void kc_field_path(const kc_ent_t *e, const char *key, char *p)
{
    snprintf(p, DOC_PATH_MAX, "%s", e->path);
    doc_path_key(p, key);
}

/* A path relative to the entry's file (malloc'd). */
static char *kc_resolve(const kc_ent_t *e, const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    size_t n = strlen(e->f->dir) + strlen(path) + 2;
    char *r = malloc(n);
    if (r != NULL)
        snprintf(r, n, "%s/%s", e->f->dir, path);
    return r;
}

/* PEM from KEY-data (base64) or KEY (a file), into *out (malloc'd). label: "CERTIFICATE"
 * or "" (any PEM block, for keys). secret: never quote the content. */
static int kc_pem(kc_t *k, const kc_ent_t *e, const char *key, const char *label, char **out)
{
    *out = NULL;
    char dkey[64], p[DOC_PATH_MAX];
    snprintf(dkey, sizeof(dkey), "%s-data", key);
    const char *data = NULL, *file = NULL;
    int rc = kc_str(k, e, dkey, &data);
    if (rc == BD_OK)
        rc = kc_str(k, e, key, &file);
    if (rc != BD_OK)
        return rc;
    if (data != NULL) {
        kc_field_path(e, dkey, p);
        int bad = 0;
        char *pem = b64_decode(data, &bad);
        if (pem == NULL)
            return bad ? kc_fail(k, BD_EPARSE, e->f, p, "not base64-encoded PEM")
                       : kc_fail(k, BD_ENOMEM, e->f, p, "out of memory");
        if (!looks_pem(pem, label)) {
            wipe_free(pem);
            return kc_fail(k, BD_EPARSE, e->f, p, "does not decode to PEM%s%s", *label ? " " : "",
                           label);
        }
        *out = pem;
        return BD_OK;
    }
    if (file == NULL)
        return BD_OK;
    kc_field_path(e, key, p);
    char *full = kc_resolve(e, file);
    if (full == NULL)
        return kc_fail(k, BD_ENOMEM, e->f, p, "out of memory");
    bd_err_t fe;
    bd_err_clear(&fe);
    char *pem = NULL;
    rc = read_text(full, "file", &pem, &fe);
    if (rc != BD_OK) {
        rc = kc_fail(k, rc, e->f, p, "%s", fe.msg);
        free(full);
        return rc;
    }
    if (!looks_pem(pem, label)) {
        wipe_free(pem);
        rc = kc_fail(k, BD_EPARSE, e->f, p, "file %s holds no PEM%s%s", full, *label ? " " : "",
                     label);
        free(full);
        return rc;
    }
    free(full);
    *out = pem;
    return BD_OK;
}

/* Split KUBECONFIG (':'-separated; missing files skipped as kubectl does). */
static int kc_load_env_list(kc_t *k, const char *list)
{
    char *dup = strdup(list);
    if (dup == NULL)
        return bd_err_set(k->err, BD_ENOMEM, "kubeconfig: out of memory");
    int rc = BD_OK;
    char *save = NULL;
    for (char *p = strtok_r(dup, ":", &save); p != NULL; p = strtok_r(NULL, ":", &save)) {
        if (*p == '\0')
            continue;
        int dupe = 0;
        for (size_t i = 0; i < k->nfiles; i++)
            dupe |= strcmp(k->files[i].path, p) == 0;
        struct stat st;
        if (dupe || stat(p, &st) != 0)
            continue;
        rc = kc_add_file(k, p);
        if (rc != BD_OK)
            break;
    }
    if (rc == BD_OK && k->nfiles == 0)
        rc = bd_err_set(k->err, BD_ENOTFOUND,
                        "kubeconfig: none of the files in KUBECONFIG (%.400s) exists", list);
    free(dup);
    return rc;
}

static int kc_set(char **dst, const char *v)
{
    if (v == NULL)
        return BD_OK;
    *dst = strdup(v);
    return *dst != NULL ? BD_OK : BD_ENOMEM;
}

int k8s_config_kubeconfig(const char *path, const char *context, k8s_config_t **out, bd_err_t *err)
{
    *out = NULL;
    int rc = BD_OK;
    k8s_config_t *c = NULL;
    kc_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return bd_err_set(err, BD_ENOMEM, "kubeconfig: out of memory");
    k->err = err;

    if (path != NULL) {
        struct stat st;
        if (stat(path, &st) != 0) {
            rc = bd_err_set(err, errno == ENOENT ? BD_ENOTFOUND : BD_EIO, "kubeconfig %s: %s", path,
                            strerror(errno));
            goto out;
        }
        rc = kc_add_file(k, path);
    } else if (getenv("KUBECONFIG") != NULL && *getenv("KUBECONFIG") != '\0') {
        rc = kc_load_env_list(k, getenv("KUBECONFIG"));
    } else {
        const char *home = getenv("HOME");
        char def[PATH_MAX];
        snprintf(def, sizeof(def), "%s/.kube/config", home != NULL ? home : "");
        struct stat st;
        if (home == NULL || stat(def, &st) != 0) {
            rc = bd_err_set(err, BD_ENOTFOUND,
                            "kubeconfig: KUBECONFIG is not set and %s does not exist",
                            home != NULL ? def : "~/.kube/config ($HOME unset)");
            goto out;
        }
        rc = kc_add_file(k, def);
    }
    if (rc != BD_OK)
        goto out;

    /* the context: chosen, or the first current-context set */
    const char *ctxname = context;
    for (size_t i = 0; ctxname == NULL && i < k->nfiles; i++) {
        const char *cc =
            k->files[i].root
                ? json_string_value(json_object_get(k->files[i].root, "current-context"))
                : NULL;
        if (cc != NULL && *cc)
            ctxname = cc;
    }
    if (ctxname == NULL || *ctxname == '\0') {
        rc = kc_fail(k, BD_ENOTFOUND, NULL, NULL,
                     "current-context is not set and no context was chosen");
        goto out;
    }
    kc_ent_t ctx, cl, us;
    rc = kc_find(k, "context", ctxname, &ctx);
    if (rc == BD_ENOTFOUND)
        rc = kc_fail(k, rc, NULL, NULL, "no context named \"%s\"%s", ctxname,
                     context ? "" : " (the current-context)");
    if (rc != BD_OK)
        goto out;
    const char *clname = NULL, *usname = NULL, *ns = NULL;
    if ((rc = kc_str(k, &ctx, "cluster", &clname)) != BD_OK ||
        (rc = kc_str(k, &ctx, "user", &usname)) != BD_OK ||
        (rc = kc_str(k, &ctx, "namespace", &ns)) != BD_OK)
        goto out;
    char p[DOC_PATH_MAX];
    if (clname == NULL) {
        kc_field_path(&ctx, "cluster", p);
        rc = kc_fail(k, BD_EPARSE, ctx.f, p, "not set (context \"%s\" names no cluster)", ctxname);
        goto out;
    }
    rc = kc_find(k, "cluster", clname, &cl);
    if (rc == BD_ENOTFOUND) {
        kc_field_path(&ctx, "cluster", p);
        rc = kc_fail(k, rc, ctx.f, p, "no cluster named \"%s\"", clname);
    }
    if (rc != BD_OK)
        goto out;
    if (usname != NULL) {
        rc = kc_find(k, "user", usname, &us);
        if (rc == BD_ENOTFOUND) {
            kc_field_path(&ctx, "user", p);
            rc = kc_fail(k, rc, ctx.f, p, "no user named \"%s\"", usname);
        }
        if (rc != BD_OK)
            goto out;
    }

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto nomem;

    /* cluster */
    const char *server = NULL, *tsn = NULL;
    if ((rc = kc_str(k, &cl, "server", &server)) != BD_OK ||
        (rc = kc_str(k, &cl, "tls-server-name", &tsn)) != BD_OK)
        goto out;
    if (server == NULL) {
        kc_field_path(&cl, "server", p);
        rc = kc_fail(k, BD_EPARSE, cl.f, p, "not set (cluster \"%s\" has no server)", clname);
        goto out;
    }
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
        if (strstr(server, "://") != NULL) {
            kc_field_path(&cl, "server", p);
            rc = kc_fail(k, BD_EINVAL, cl.f, p, "\"%s\": only http:// and https:// are supported",
                         server);
            goto out;
        }
        size_t n = strlen(server) + 9;
        c->server = malloc(n);
        if (c->server != NULL)
            snprintf(c->server, n, "https://%s", server);
    } else {
        c->server = strdup(server);
    }
    if (c->server == NULL)
        goto nomem;
    for (size_t n = strlen(c->server); n > 0 && c->server[n - 1] == '/'; n--)
        c->server[n - 1] = '\0';
    json_t *ins = json_object_get(cl.obj, "insecure-skip-tls-verify");
    if (ins != NULL && !json_is_null(ins)) {
        if (!json_is_boolean(ins)) {
            kc_field_path(&cl, "insecure-skip-tls-verify", p);
            rc = kc_fail(k, BD_EPARSE, cl.f, p, "must be true or false");
            goto out;
        }
        c->insecure = json_is_true(ins);
    }
    static const char *const cl_refused[] = {"proxy-url"};
    for (size_t i = 0; i < sizeof(cl_refused) / sizeof(*cl_refused); i++) {
        if (json_object_get(cl.obj, cl_refused[i]) != NULL) {
            kc_field_path(&cl, cl_refused[i], p);
            rc = kc_fail(k, BD_EINVAL, cl.f, p, "not supported");
            goto out;
        }
    }
    if ((rc = kc_pem(k, &cl, "certificate-authority", "CERTIFICATE", &c->ca_pem)) != BD_OK)
        goto out;
    if (kc_set(&c->tls_server_name, tsn) != BD_OK)
        goto nomem;

    /* user */
    if (usname != NULL) {
        static const struct {
            const char *key, *why;
        } refused[] = {
            {"exec", "exec credential plugins are not supported"},
            {"auth-provider", "auth-provider plugins are not supported"},
            {"username", "basic authentication is not supported"},
            {"password", "basic authentication is not supported"},
            {"as", "impersonation is not supported"},
            {"as-uid", "impersonation is not supported"},
            {"as-groups", "impersonation is not supported"},
        };
        for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
            json_t *v = json_object_get(us.obj, refused[i].key);
            if (v != NULL && !json_is_null(v)) {
                kc_field_path(&us, refused[i].key, p);
                rc = kc_fail(k, BD_EINVAL, us.f, p, "%s (user \"%s\")", refused[i].why, usname);
                goto out;
            }
        }
        const char *tok = NULL, *tokfile = NULL;
        if ((rc = kc_str(k, &us, "token", &tok)) != BD_OK ||
            (rc = kc_str(k, &us, "tokenFile", &tokfile)) != BD_OK)
            goto out;
        if (kc_set(&c->token, tok) != BD_OK)
            goto nomem;
        if (tokfile != NULL) {
            c->token_file = kc_resolve(&us, tokfile);
            if (c->token_file == NULL)
                goto nomem;
            bd_err_t fe;
            bd_err_clear(&fe);
            char *t = NULL;
            rc = read_text(c->token_file, "token file", &t, &fe);
            if (rc != BD_OK) {
                kc_field_path(&us, "tokenFile", p);
                rc = kc_fail(k, rc, us.f, p, "%s", fe.msg);
                goto out;
            }
            wipe_free(t);
        }
        if ((rc = kc_pem(k, &us, "client-certificate", "CERTIFICATE", &c->cert_pem)) != BD_OK ||
            (rc = kc_pem(k, &us, "client-key", "", &c->key_pem)) != BD_OK)
            goto out;
        if ((c->cert_pem == NULL) != (c->key_pem == NULL)) {
            rc = kc_fail(k, BD_EPARSE, us.f, us.path, "%s without %s (user \"%s\")",
                         c->cert_pem ? "client-certificate" : "client-key",
                         c->cert_pem ? "client-key" : "client-certificate", usname);
            goto out;
        }
    }

    if (kc_set(&c->ns, ns != NULL ? ns : "default") != BD_OK)
        goto nomem;
    size_t on = strlen(ctx.f->path) + strlen(ctxname) + 32;
    c->origin = malloc(on);
    if (c->origin == NULL)
        goto nomem;
    snprintf(c->origin, on, "kubeconfig %s context %s", ctx.f->path, ctxname);
    *out = c;
    c = NULL;
    rc = BD_OK;
    goto out;
nomem:
    rc = bd_err_set(err, BD_ENOMEM, "kubeconfig %s: out of memory", k->names);
out:
    k8s_config_free(c);
    kc_deinit(k);
    free(k);
    return rc;
}

int k8s_config_load(const char *context, k8s_config_t **out, bd_err_t *err)
{
    *out = NULL;
    const char *kc = getenv("KUBECONFIG");
    if ((kc != NULL && *kc != '\0') || context != NULL)
        return k8s_config_kubeconfig(NULL, context, out, err);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host != NULL && *host != '\0')
        return k8s_config_in_cluster(out, err);
    return k8s_config_kubeconfig(NULL, NULL, out, err);
}
