/*
 * client_write.c - API paths, the conveniences over k8s_call (get, create, replace,
 * merge patch, server-side apply, delete) and read-modify-write (k8s_modify).
 *
 * k8s_modify is a composite call: its handle owns at most one inner call at a time (the
 * GET, then the PUT); cancelling it cancels the inner call, and the inner calls' callbacks
 * drive it. The caller's callback runs from inside an inner call's callback, with both
 * calls held, so it may cancel anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "client_int.h"

char *k8s_path(const k8s_res_t *r, const char *ns, const char *name, const char *sub)
{
    if (r == NULL || r->version == NULL || r->plural == NULL)
        return NULL;
    const char *group = r->group != NULL ? r->group : "";
    char *ens = NULL, *ename = NULL, *esub = NULL, *out = NULL;
    bool with_ns = r->namespaced && ns != NULL && *ns;
    bool with_name = name != NULL && *name;
    if (with_ns && (ens = k8s__escape(ns)) == NULL)
        goto out;
    if (with_name && (ename = k8s__escape(name)) == NULL)
        goto out;
    if (with_name && sub != NULL && *sub && (esub = k8s__escape(sub)) == NULL)
        goto out;
    size_t n = strlen(group) + strlen(r->version) + strlen(r->plural) + (ens ? strlen(ens) : 0) +
               (ename ? strlen(ename) : 0) + (esub ? strlen(esub) : 0) + 32;
    out = malloc(n);
    if (out == NULL)
        goto out;
    snprintf(out, n, "%s%s%s%s%s%s/%s%s%s%s%s", *group ? "/apis/" : "/api/", group,
             *group ? "/" : "", r->version, ens ? "/namespaces/" : "", ens ? ens : "", r->plural,
             ename ? "/" : "", ename ? ename : "", esub ? "/" : "", esub ? esub : "");
out:
    free(ens);
    free(ename);
    free(esub);
    return out;
}

/* One call on the object path (or the collection when name is NULL). */
static int call_on(k8s_client_t *c, k8s_method_t m, const k8s_res_t *r, const char *ns,
                   const char *name, const char *sub, const char *query, const json_t *body,
                   k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || r == NULL || cb == NULL)
        return BD_EINVAL;
    if (r->namespaced && (ns == NULL || *ns == '\0') && name != NULL)
        return BD_EINVAL; /* a namespaced object needs its namespace */
    char *path = k8s_path(r, ns, name, sub);
    if (path == NULL)
        return r->version == NULL || r->plural == NULL ? BD_EINVAL : BD_ENOMEM;
    k8s_req_t req = {.method = m, .path = path, .query = query, .body = body};
    int rc = k8s_call(c, &req, cb, arg, out);
    free(path);
    return rc;
}

int k8s_get(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, k8s_done_cb cb,
            void *arg, k8s_call_t **out)
{
    return call_on(c, K8S_GET, r, ns, name, NULL, NULL, NULL, cb, arg, out);
}

int k8s_create(k8s_client_t *c, const k8s_res_t *r, const char *ns, const json_t *obj,
               k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (obj == NULL) {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    if (r != NULL && r->namespaced && (ns == NULL || *ns == '\0')) {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    return call_on(c, K8S_POST, r, ns, NULL, NULL, NULL, obj, cb, arg, out);
}

int k8s_replace(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
                const char *sub, const json_t *obj, k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (obj == NULL || name == NULL || *name == '\0') {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    return call_on(c, K8S_PUT, r, ns, name, sub, NULL, obj, cb, arg, out);
}

int k8s_merge_patch(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
                    const char *sub, const json_t *patch, k8s_done_cb cb, void *arg,
                    k8s_call_t **out)
{
    if (patch == NULL || name == NULL || *name == '\0') {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    return call_on(c, K8S_PATCH_MERGE, r, ns, name, sub, NULL, patch, cb, arg, out);
}

int k8s_apply(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
              const char *sub, const json_t *obj, bool force, k8s_done_cb cb, void *arg,
              k8s_call_t **out)
{
    if (obj == NULL || name == NULL || *name == '\0') {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    return call_on(c, K8S_PATCH_APPLY, r, ns, name, sub, force ? "force=true" : NULL, obj, cb, arg,
                   out);
}

int k8s_delete(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
               k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (name == NULL || *name == '\0') {
        if (out != NULL)
            *out = NULL;
        return BD_EINVAL;
    }
    return call_on(c, K8S_DELETE, r, ns, name, NULL, NULL, NULL, cb, arg, out);
}

/* ---- read-modify-write ------------------------------------------------------------------ */

static void modify_got(void *arg, const k8s_resp_t *r);

static int modify_read(k8s_call_t *k)
{
    k8s_req_t req = {.method = K8S_GET, .path = k->path};
    k->attempts++;
    return k8s_call(k->c, &req, modify_got, k, &k->sub);
}

static void modify_fail(k8s_call_t *k, int code, int status, const char *what)
{
    snprintf(k->msg, sizeof(k->msg), "modify %s: %s: %s", k->path, what, bd_strerror(code));
    k8s_resp_t r = {.code = code, .status = status, .body = NULL, .reason = "", .message = k->msg};
    k8s__call_deliver(k, &r);
}

static void modify_put(void *arg, const k8s_resp_t *r)
{
    k8s_call_t *k = arg;
    k->sub = NULL; /* the inner call ends with this callback */
    if (r->code == BD_ECONFLICT && k->attempts < K8S__MODIFY_ATTEMPTS) {
        int rc = modify_read(k);
        if (rc != BD_OK)
            modify_fail(k, rc, 0, "cannot read again after a conflict");
        return;
    }
    k8s__call_deliver(k, r);
}

static void modify_got(void *arg, const k8s_resp_t *r)
{
    k8s_call_t *k = arg;
    k->sub = NULL;
    if (r->code != BD_OK) {
        k8s__call_deliver(k, r);
        return;
    }
    if (!json_is_object(r->body)) {
        modify_fail(k, BD_EPARSE, r->status, "the object read is not a JSON object");
        return;
    }
    json_t *obj = json_deep_copy(r->body);
    if (obj == NULL) {
        modify_fail(k, BD_ENOMEM, r->status, "copying the object read");
        return;
    }
    k->hold++;
    int m = k->mutate(k->arg, obj);
    if (k->finished) { /* cancelled from inside mutate */
        json_decref(obj);
        k8s__call_unhold(k);
        return;
    }
    if (m == 1) {
        k8s__call_deliver(k, r);
    } else if (m != 0) {
        snprintf(k->msg, sizeof(k->msg), "modify %s: mutate gave up: %s", k->path,
                 m < 0 ? bd_strerror(m) : "bad return value");
        k8s_resp_t g = {
            .code = m < 0 ? m : BD_EINVAL, .status = 0, .reason = "", .message = k->msg};
        k8s__call_deliver(k, &g);
    } else {
        k8s_req_t req = {.method = K8S_PUT, .path = k->path, .body = obj};
        int rc = k8s_call(k->c, &req, modify_put, k, &k->sub);
        if (rc != BD_OK)
            modify_fail(k, rc, 0, "cannot start the write");
    }
    json_decref(obj);
    k8s__call_unhold(k);
}

int k8s_modify(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
               const char *sub, k8s_mutate_fn mutate, k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || r == NULL || name == NULL || *name == '\0' || mutate == NULL || cb == NULL ||
        c->closing || (r->namespaced && (ns == NULL || *ns == '\0')))
        return BD_EINVAL;
    char *path = k8s_path(r, ns, name, sub);
    if (path == NULL)
        return r->version == NULL || r->plural == NULL ? BD_EINVAL : BD_ENOMEM;
    k8s_req_t req = {.method = K8S_GET, .path = path};
    k8s_call_t *k = k8s__call_new(c, K8S__MODIFY, &req);
    free(path);
    if (k == NULL)
        return BD_ENOMEM;
    k->cb = cb;
    k->arg = arg;
    k->mutate = mutate;
    int rc = modify_read(k);
    if (rc != BD_OK) {
        k8s__call_finish(k);
        return rc;
    }
    if (out != NULL)
        *out = k;
    return BD_OK;
}
