#include "projector.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "proj_int.h"
#include "sort.h"
#include "validate.h"

static const char R_READY[] = "Ready", R_INVALID[] = "InvalidSpec", R_NOINST[] = "NoInstancesSelected",
                  R_DUPZONE[] = "DuplicateZone", R_CNAME[] = "CnameConflict", R_RECORD[] = "RecordConflict",
                  R_NOTSEL[] = "NotSelected";

/* ---- small helpers ------------------------------------------------------------------ */

static char *xstrdup(proj_t *p, const char *s)
{
    char *c = strdup(s ? s : "");
    if (c == NULL)
        p->oom = 1;
    return c;
}

__attribute__((format(printf, 2, 3))) static char *xfmt(proj_t *p, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        s = NULL;
        p->oom = 1;
    }
    va_end(ap);
    return s;
}

/* The concatenation of its arguments (none NULL: the macro adds the NULL that ends them):
 * the strings built for every event (owners, RR lines, keys, status texts), which
 * vasprintf built at ~1,500 instructions each, a tenth of catching up on 10,000 records. */
static char *xcat_(proj_t *p, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, p);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        n += strlen(s);
    va_end(ap);
    char *out = malloc(n + 1), *o = out;
    if (out == NULL) {
        p->oom = 1;
        return NULL;
    }
    va_start(ap, p);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        size_t l = strlen(s);
        memcpy(o, s, l);
        o += l;
    }
    va_end(ap);
    *o = '\0';
    return out;
}
#define xcat(p, ...) xcat_((p), __VA_ARGS__, (const char *)NULL)

/* Decimal text of v in buf (at least 21 bytes); returns buf. */
static char *dec(char *buf, long long v)
{
    char tmp[24], *t = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    *--t = '\0';
    do
        *--t = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--t = '-';
    memcpy(buf, t, (size_t)(tmp + sizeof(tmp) - t));
    return buf;
}

static void strv_add(proj_t *p, res_strv_t *v, char *owned)
{
    if (owned == NULL) {
        p->oom = 1;
        return;
    }
    char **nv = realloc(v->v, (v->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(owned);
        p->oom = 1;
        return;
    }
    v->v = nv;
    v->v[v->n++] = owned;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void strv_sort_unique(res_strv_t *v)
{
    bd_qsort(v->v, v->n, sizeof(*v->v), cmp_str);
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (o > 0 && strcmp(v->v[o - 1], v->v[i]) == 0)
            free(v->v[i]);
        else
            v->v[o++] = v->v[i];
    }
    v->n = o;
}

static bool strv_equal(const res_strv_t *a, const res_strv_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return false;
    return true;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Age order: creationTimestamp, first seq, key. */
static int obj_age_cmp(const obj_t *a, const obj_t *b)
{
    const char *ca = a->res ? a->res->meta.creation_timestamp : NULL;
    const char *cb = b->res ? b->res->meta.creation_timestamp : NULL;
    if (ca && cb) {
        int c = strcmp(ca, cb);
        if (c)
            return c;
    }
    if (a->first_seq != b->first_seq)
        return a->first_seq < b->first_seq ? -1 : 1;
    return strcmp(a->key, b->key);
}

static int obj_ptr_age_cmp(const void *a, const void *b)
{
    return obj_age_cmp(*(obj_t *const *)a, *(obj_t *const *)b);
}

static void touch(proj_t *p, obj_t *o)
{
    if (o != NULL && bd_hmap_put(p->touched, o->key, o, NULL) != BD_OK)
        p->oom = 1;
}

/* ---- pending changes -------------------------------------------------------------- */

static pend_t *pend_get(proj_t *p, const char *zone, bool existed_if_new)
{
    pend_t *pd = bd_hmap_get(p->pending, zone);
    if (pd != NULL)
        return pd;
    pd = calloc(1, sizeof(*pd));
    if (pd == NULL || (pd->net = bd_hmap_new()) == NULL || bd_hmap_put(p->pending, zone, pd, NULL) != BD_OK) {
        if (pd)
            bd_hmap_free(pd->net);
        free(pd);
        p->oom = 1;
        return NULL;
    }
    pd->existed = existed_if_new;
    return pd;
}

static void pend_rr(proj_t *p, proj_zone_t *z, const char *line, int delta)
{
    pend_t *pd = pend_get(p, z->name, true);
    if (pd == NULL)
        return;
    intptr_t v = (intptr_t)bd_hmap_get(pd->net, line) + delta;
    if (v == 0)
        bd_hmap_del(pd->net, line);
    else if (bd_hmap_put(pd->net, line, (void *)v, NULL) != BD_OK)
        p->oom = 1;
    /* The serial moves only if the event's net effect is not empty: a record that is
     * detached and attached again unchanged does not make a new zone version. */
    if (z->evnet == NULL && (z->evnet = bd_hmap_new()) == NULL) {
        p->oom = 1;
        return;
    }
    intptr_t e = (intptr_t)bd_hmap_get(z->evnet, line) + delta;
    if (e == 0)
        bd_hmap_del(z->evnet, line);
    else if (bd_hmap_put(z->evnet, line, (void *)e, NULL) != BD_OK)
        p->oom = 1;
    if (bd_hmap_put(p->zchanged, z->name, (void *)1, NULL) != BD_OK)
        p->oom = 1;
}

/* ---- names and rendering ---------------------------------------------------------- */

/* Absolute, lower-case owner of a record name in a zone, or NULL if outside it. */
static char *owner_of(proj_t *p, const proj_zone_t *z, const char *name)
{
    char *abs;
    size_t n = strlen(name);
    if (strcmp(name, "@") == 0)
        abs = xstrdup(p, z->origin);
    else if (n > 0 && name[n - 1] == '.')
        abs = xstrdup(p, name);
    else
        abs = xcat(p, name, ".", z->origin);
    if (abs == NULL)
        return NULL;
    lower(abs);
    size_t al = strlen(abs), ol = strlen(z->origin);
    bool inside = strcmp(abs, z->origin) == 0 || (al > ol && strcmp(abs + al - ol, z->origin) == 0 &&
                                                  abs[al - ol - 1] == '.');
    if (!inside) {
        free(abs);
        return NULL;
    }
    return abs;
}

/* A target name made absolute relative to the zone (as in a zone file). */
static char *target_of(proj_t *p, const proj_zone_t *z, const char *name)
{
    size_t n = strlen(name);
    char *t;
    if (strcmp(name, "@") == 0)
        t = xstrdup(p, z->origin);
    else if (strcmp(name, ".") == 0 || (n > 0 && name[n - 1] == '.'))
        t = xstrdup(p, name);
    else
        t = xcat(p, name, ".", z->origin);
    if (t)
        lower(t);
    return t;
}

/* Quote a character-string for presentation format. */
static char *quote(proj_t *p, const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(n * 4 + 3);
    if (q == NULL) {
        p->oom = 1;
        return NULL;
    }
    size_t o = 0;
    q[o++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            q[o++] = '\\';
            q[o++] = (char)*c;
        } else if (*c < 0x20 || *c >= 0x7f) {
            o += (size_t)sprintf(q + o, "\\%03u", *c);
        } else {
            q[o++] = (char)*c;
        }
    }
    q[o++] = '"';
    q[o] = '\0';
    return q;
}

static const char *rr_type(res_kind_t k)
{
    static const char *const t[RES_KIND_COUNT] = {[RES_A] = "A",     [RES_AAAA] = "AAAA", [RES_CNAME] = "CNAME",
                                                  [RES_MX] = "MX",   [RES_TXT] = "TXT",   [RES_NS] = "NS",
                                                  [RES_SRV] = "SRV", [RES_CAA] = "CAA"};
    return t[k];
}

static int64_t record_ttl(const proj_zone_t *z, const res_t *r)
{
    return r->u.record.ttl >= 0 ? r->u.record.ttl : (z->obj ? z->obj->res->u.zone.ttl : 0);
}

/* Append the presentation lines of record r at owner to out. */
static void render_record(proj_t *p, const proj_zone_t *z, const char *owner, const res_t *r, res_strv_t *out)
{
    const res_record_t *rec = &r->u.record;
    long long ttl = (long long)record_ttl(z, r);
    const char *type = rr_type(r->kind);
    char *t = NULL, ttls[24];
    dec(ttls, ttl);
    switch (r->kind) {
    case RES_A:
    case RES_AAAA:
        for (size_t i = 0; i < rec->u.addrs.n; i++)
            strv_add(p, out, xcat(p, owner, " ", ttls, " IN ", type, " ", rec->u.addrs.v[i]));
        break;
    case RES_CNAME:
    case RES_NS:
        if ((t = target_of(p, z, rec->u.target)))
            strv_add(p, out, xcat(p, owner, " ", ttls, " IN ", type, " ", t));
        break;
    case RES_MX:
        if ((t = target_of(p, z, rec->u.mx.exchange)))
            strv_add(p, out, xfmt(p, "%s %lld IN MX %u %s", owner, ttl, rec->u.mx.priority, t));
        break;
    case RES_SRV:
        if ((t = target_of(p, z, rec->u.srv.target)))
            strv_add(p, out, xfmt(p, "%s %lld IN SRV %u %u %u %s", owner, ttl, rec->u.srv.priority,
                                  rec->u.srv.weight, rec->u.srv.port, t));
        break;
    case RES_CAA: {
        char *v = quote(p, rec->u.caa.value);
        if (v)
            strv_add(p, out, xfmt(p, "%s %lld IN CAA %u %s %s", owner, ttl, rec->u.caa.flags, rec->u.caa.tag, v));
        free(v);
        break;
    }
    case RES_TXT:
        for (size_t i = 0; i < rec->u.txt.n; i++) {
            const res_strv_t *chunks = &rec->u.txt.strings[i];
            size_t len = 0;
            char **qs = calloc(chunks->n ? chunks->n : 1, sizeof(*qs));
            if (qs == NULL) {
                p->oom = 1;
                break;
            }
            for (size_t c = 0; c < chunks->n; c++)
                if ((qs[c] = quote(p, chunks->v[c])))
                    len += strlen(qs[c]) + 1;
            char *joined = calloc(len + 1, 1);
            if (joined == NULL)
                p->oom = 1;
            for (size_t c = 0; joined && c < chunks->n; c++) {
                if (c)
                    strcat(joined, " ");
                if (qs[c])
                    strcat(joined, qs[c]);
            }
            if (joined)
                strv_add(p, out, xfmt(p, "%s %lld IN TXT %s", owner, ttl, joined));
            for (size_t c = 0; c < chunks->n; c++)
                free(qs[c]);
            free(qs);
            free(joined);
        }
        break;
    default:
        break;
    }
    free(t);
}

/* ---- objects ---------------------------------------------------------------------- */

static void obj_free(obj_t *o)
{
    if (o == NULL)
        return;
    free(o->key);
    free(o->ns);
    free(o->name);
    res_free(o->res);
    free(o->invalid_msg);
    for (size_t i = 0; i < o->ncontribs; i++) {
        free(o->contribs[i].zone);
        free(o->contribs[i].owner);
    }
    free(o->contribs);
    free(o->message);
    free(o->reported);
    free(o);
}

static void contrib_set(proj_t *p, obj_t *o, const char *zone, const char *owner, const char *reason)
{
    for (size_t i = 0; i < o->ncontribs; i++) {
        if (strcmp(o->contribs[i].zone, zone) == 0 && strcmp(o->contribs[i].owner, owner) == 0) {
            o->contribs[i].reason = reason;
            return;
        }
    }
    contrib_t *nc = realloc(o->contribs, (o->ncontribs + 1) * sizeof(*nc));
    if (nc == NULL) {
        p->oom = 1;
        return;
    }
    o->contribs = nc;
    o->contribs[o->ncontribs++] = (contrib_t){xstrdup(p, zone), xstrdup(p, owner), reason};
}

static void contrib_drop_zone(obj_t *o, const char *zone)
{
    size_t w = 0;
    for (size_t i = 0; i < o->ncontribs; i++) {
        if (strcmp(o->contribs[i].zone, zone) == 0) {
            free(o->contribs[i].zone);
            free(o->contribs[i].owner);
        } else {
            o->contribs[w++] = o->contribs[i];
        }
    }
    o->ncontribs = w;
}

/* ---- owners ----------------------------------------------------------------------- */

static owner_t *owner_get(proj_t *p, proj_zone_t *z, const char *name, bool create)
{
    owner_t *ow = bd_hmap_get(z->owners, name);
    if (ow != NULL || !create)
        return ow;
    ow = calloc(1, sizeof(*ow));
    if (ow == NULL || (ow->name = strdup(name)) == NULL || bd_hmap_put(z->owners, name, ow, NULL) != BD_OK) {
        if (ow)
            free(ow->name);
        free(ow);
        p->oom = 1;
        return NULL;
    }
    return ow;
}

static void owner_free(owner_t *ow)
{
    if (ow == NULL)
        return;
    free(ow->name);
    free(ow->recs);
    res_strv_deinit(&ow->synth);
    res_strv_deinit(&ow->rrs);
    free(ow);
}

typedef struct {
    const char *type;
    int64_t ttl;
    const char *cname_target;
} claim_t;

/* Re-evaluate one owner name: conflicts, then the rendered RRs; record the difference. */
static void owner_eval(proj_t *p, proj_zone_t *z, owner_t *ow)
{
    res_strv_t out = {0};
    bd_qsort(ow->recs, ow->n, sizeof(*ow->recs), obj_ptr_age_cmp);
    for (size_t i = 0; i < ow->synth.n; i++)
        strv_add(p, &out, xstrdup(p, ow->synth.v[i]));

    bool apex = strcmp(ow->name, z->origin) == 0;
    bool has_cname = false, has_other = ow->synth.n > 0 || apex;
    for (size_t i = 0; i < ow->n; i++) {
        if (ow->recs[i]->kind == RES_CNAME)
            has_cname = true;
        else
            has_other = true;
    }
    bool cname_wins = has_cname && !apex && ow->synth.n == 0 && ow->n > 0 && ow->recs[0]->kind == RES_CNAME;

    claim_t claims[RES_KIND_COUNT + 2];
    size_t nclaims = 0;
    if (ow->synth.n > 0) /* zone-owned data: NS at the apex, glue A/AAAA */
        claims[nclaims++] = (claim_t){apex ? "NS" : "GLUE", z->obj ? z->obj->res->u.zone.ttl : 0, NULL};

    for (size_t i = 0; i < ow->n; i++) {
        obj_t *o = ow->recs[i];
        const res_t *r = o->res;
        const char *reason = NULL;
        const char *type = rr_type(r->kind);
        int64_t ttl = record_ttl(z, r);
        if (has_cname && has_other && (r->kind == RES_CNAME) != cname_wins)
            reason = R_CNAME;
        for (size_t c = 0; reason == NULL && c < nclaims; c++) {
            bool same_type = strcmp(claims[c].type, type) == 0 ||
                             (strcmp(claims[c].type, "GLUE") == 0 && (r->kind == RES_A || r->kind == RES_AAAA));
            if (!same_type)
                continue;
            if (claims[c].ttl != ttl)
                reason = R_RECORD;
            else if (r->kind == RES_CNAME && strcmp(claims[c].cname_target, r->u.record.u.target) != 0)
                reason = R_RECORD; /* one CNAME per name */
        }
        if (reason == NULL) {
            if (nclaims < sizeof(claims) / sizeof(*claims))
                claims[nclaims++] = (claim_t){type, ttl, r->kind == RES_CNAME ? r->u.record.u.target : NULL};
            render_record(p, z, ow->name, r, &out);
        }
        contrib_set(p, o, z->name, ow->name, reason);
        touch(p, o);
    }
    strv_sort_unique(&out);

    /* Both lists are sorted: one merge pass yields the difference. */
    size_t i = 0, j = 0;
    while (i < ow->rrs.n || j < out.n) {
        int c = i >= ow->rrs.n ? 1 : j >= out.n ? -1 : strcmp(ow->rrs.v[i], out.v[j]);
        if (c < 0)
            pend_rr(p, z, ow->rrs.v[i++], -1);
        else if (c > 0)
            pend_rr(p, z, out.v[j++], +1);
        else
            i++, j++;
    }
    res_strv_deinit(&ow->rrs);
    ow->rrs = out;
    if (ow->n == 0 && ow->synth.n == 0 && ow->rrs.n == 0)
        owner_free(bd_hmap_del(z->owners, ow->name));
}

static void owner_add_rec(proj_t *p, owner_t *ow, obj_t *o)
{
    if (ow->n == ow->cap) {
        size_t ncap = ow->cap ? ow->cap * 2 : 4;
        obj_t **nr = realloc(ow->recs, ncap * sizeof(*nr));
        if (nr == NULL) {
            p->oom = 1;
            return;
        }
        ow->recs = nr;
        ow->cap = ncap;
    }
    ow->recs[ow->n++] = o;
}

static void owner_del_rec(owner_t *ow, const obj_t *o)
{
    for (size_t i = 0; i < ow->n; i++) {
        if (ow->recs[i] == o) {
            memmove(&ow->recs[i], &ow->recs[i + 1], (ow->n - i - 1) * sizeof(*ow->recs));
            ow->n--;
            return;
        }
    }
}

/* ---- candidate indexes ---------------------------------------------------------------- */

static void idx_put(proj_t *p, bd_hmap_t *idx, const char *ikey, obj_t *o)
{
    bd_hmap_t *set = bd_hmap_get(idx, ikey);
    if (set == NULL) {
        if ((set = bd_hmap_new()) == NULL || bd_hmap_put(idx, ikey, set, NULL) != BD_OK) {
            bd_hmap_free(set);
            p->oom = 1;
            return;
        }
    }
    if (bd_hmap_put(set, o->key, o, NULL) != BD_OK)
        p->oom = 1;
}

static void idx_del(bd_hmap_t *idx, const char *ikey, const obj_t *o)
{
    bd_hmap_t *set = bd_hmap_get(idx, ikey);
    if (set == NULL)
        return;
    bd_hmap_del(set, o->key);
    if (bd_hmap_count(set) == 0)
        bd_hmap_free(bd_hmap_del(idx, ikey));
}

static void idx_free(bd_hmap_t *idx)
{
    size_t pos = 0;
    void *set;
    while (idx && bd_hmap_next(idx, &pos, NULL, &set))
        bd_hmap_free(set);
    bd_hmap_free(idx);
}

/* "ns\nkey\nvalue" in buf (size IKEY_SMALL) or, when longer, in a new string (free it
 * if != buf); NULL on ENOMEM. Once or twice per event: no printf. */
#define IKEY_SMALL 256
static char *label_ikey(proj_t *p, char *buf, const char *ns, const char *k, const char *v)
{
    size_t a = strlen(ns), b = strlen(k), c = strlen(v), n = a + b + c + 3;
    char *s = n <= IKEY_SMALL ? buf : malloc(n);
    if (s == NULL) {
        p->oom = 1;
        return NULL;
    }
    memcpy(s, ns, a);
    s[a] = '\n';
    memcpy(s + a + 1, k, b);
    s[a + 1 + b] = '\n';
    memcpy(s + a + b + 2, v, c + 1);
    return s;
}

/* File o (or unfile it) under the label k=v of its namespace. */
static void idx_label(proj_t *p, bd_hmap_t *idx, const obj_t *o, const char *k, const char *v, bool add)
{
    char buf[IKEY_SMALL];
    char *ikey = label_ikey(p, buf, o->ns, k, v);
    if (ikey == NULL)
        return;
    if (add)
        idx_put(p, idx, ikey, (obj_t *)o);
    else
        idx_del(idx, ikey, o);
    if (ikey != buf)
        free(ikey);
}

/* The requirement a selector's matches must all satisfy with one of a few label values:
 * its first `In` (matchLabels become `key In (value)`), or NULL if it has none. */
static const sel_req_t *sel_pivot(const sel_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->reqs[i].op == SEL_IN)
            return &s->reqs[i];
    return NULL;
}

/* Add o (with version r) to the indexes, or remove it; r NULL is a no-op. */
static void idx_obj(proj_t *p, obj_t *o, const res_t *r, bool add)
{
    if (r == NULL)
        return;
    if (res_kind_is_record(o->kind)) {
        for (size_t i = 0; i < r->meta.labels.n; i++)
            idx_label(p, p->rec_lbl, o, r->meta.labels.items[i].key, r->meta.labels.items[i].value, add);
        if (add)
            idx_put(p, p->rec_ns, o->ns, o);
        else
            idx_del(p->rec_ns, o->ns, o);
    } else if (o->kind == RES_DNSZONE) {
        const res_zone_t *spec = &r->u.zone;
        if (add)
            idx_put(p, p->zclaims, spec->zone_name, o);
        else
            idx_del(p->zclaims, spec->zone_name, o);
        for (size_t s = 0; s < spec->n_records_from; s++) {
            const sel_req_t *pv = sel_pivot(&spec->records_from[s]);
            for (size_t v = 0; pv != NULL && v < pv->nvalues; v++)
                idx_label(p, p->zsel_lbl, o, pv->key, pv->values[v], add);
            if (pv == NULL && add)
                idx_put(p, p->zsel_any, o->ns, o);
            else if (pv == NULL)
                idx_del(p->zsel_any, o->ns, o);
        }
    }
}

/* Append the members of set to *v (grown as needed). */
static void idx_collect(proj_t *p, const bd_hmap_t *set, obj_t ***v, size_t *n, size_t *cap)
{
    size_t pos = 0;
    obj_t *o;
    while (set != NULL && bd_hmap_next(set, &pos, NULL, (void **)&o)) {
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            obj_t **nv = realloc(*v, ncap * sizeof(*nv));
            if (nv == NULL) {
                p->oom = 1;
                return;
            }
            *v = nv;
            *cap = ncap;
        }
        (*v)[(*n)++] = o;
        p->visited++;
    }
}

static int obj_ptr_key_cmp(const void *a, const void *b)
{
    return strcmp((*(obj_t *const *)a)->key, (*(obj_t *const *)b)->key);
}

/* Sort candidates by key and drop duplicates (an object filed under several keys). */
static void objs_sort_unique(obj_t **v, size_t *n)
{
    bd_qsort(v, *n, sizeof(*v), obj_ptr_key_cmp);
    size_t o = 0;
    for (size_t i = 0; i < *n; i++)
        if (o == 0 || v[o - 1] != v[i])
            v[o++] = v[i];
    *n = o;
}

/* Records that zone z's DNSZone may select, sorted by key: those carrying a label value
 * its selectors require, or its whole namespace for a selector that requires none. */
static obj_t **zone_record_candidates(proj_t *p, const proj_zone_t *z, size_t *n)
{
    const res_zone_t *spec = &z->obj->res->u.zone;
    obj_t **v = NULL;
    size_t cap = 0;
    *n = 0;
    for (size_t s = 0; s < spec->n_records_from; s++) {
        const sel_req_t *pv = sel_pivot(&spec->records_from[s]);
        if (pv == NULL) {
            idx_collect(p, bd_hmap_get(p->rec_ns, z->obj->ns), &v, n, &cap);
            continue;
        }
        for (size_t k = 0; k < pv->nvalues; k++) {
            char buf[IKEY_SMALL];
            char *ikey = label_ikey(p, buf, z->obj->ns, pv->key, pv->values[k]);
            if (ikey != NULL)
                idx_collect(p, bd_hmap_get(p->rec_lbl, ikey), &v, n, &cap);
            if (ikey != buf)
                free(ikey);
        }
    }
    objs_sort_unique(v, n);
    return v;
}

uint64_t proj__visited(const proj_t *p) { return p->visited; }

/* ---- zones ------------------------------------------------------------------------ */

static proj_zone_t *zone_new(proj_t *p, const char *name, bool catalog)
{
    proj_zone_t *z = calloc(1, sizeof(*z));
    if (z == NULL || (z->owners = bd_hmap_new()) == NULL) {
        free(z);
        p->oom = 1;
        return NULL;
    }
    z->name = xstrdup(p, name);
    z->origin = xfmt(p, "%s.", name);
    z->catalog = catalog;
    if (p->oom || bd_hmap_put(p->zones, name, z, NULL) != BD_OK) {
        bd_hmap_free(z->owners);
        free(z->name);
        free(z->origin);
        free(z);
        p->oom = 1;
        return NULL;
    }
    pend_get(p, name, false); /* a zone new since the last take: "created" */
    z->changed = true;
    if (bd_hmap_put(p->zchanged, z->name, (void *)1, NULL) != BD_OK)
        p->oom = 1;
    return z;
}

/* Remove every RR of z into pending and every record's contribution to it. */
static void zone_clear(proj_t *p, proj_zone_t *z)
{
    size_t pos = 0;
    owner_t *ow;
    while (bd_hmap_next(z->owners, &pos, NULL, (void **)&ow)) {
        for (size_t i = 0; i < ow->rrs.n; i++)
            pend_rr(p, z, ow->rrs.v[i], -1);
        for (size_t i = 0; i < ow->n; i++) {
            contrib_drop_zone(ow->recs[i], z->name);
            touch(p, ow->recs[i]);
        }
        owner_free(ow);
    }
    bd_hmap_free(z->owners);
    z->owners = bd_hmap_new();
    z->nrecords = 0;
    if (z->owners == NULL)
        p->oom = 1;
}

/* Free a zone's own memory (its owners must be empty or freed already). */
static void zone_free(proj_zone_t *z)
{
    bd_hmap_free(z->owners);
    bd_hmap_free(z->evnet);
    res_strv_deinit(&z->instances);
    free(z->name);
    free(z->origin);
    free(z->catalog_of);
    free(z->soa_sig);
    free(z);
}

static void zone_destroy(proj_t *p, proj_zone_t *z)
{
    zone_clear(p, z);
    bd_hmap_del(p->zones, z->name);
    zone_free(z);
}

static bool zone_selects(const proj_zone_t *z, const obj_t *rec)
{
    const res_zone_t *spec = &z->obj->res->u.zone;
    if (strcmp(z->obj->ns, rec->ns) != 0)
        return false;
    for (size_t i = 0; i < spec->n_records_from; i++)
        if (sel_matches(&spec->records_from[i], &rec->res->meta.labels))
            return true;
    return false;
}

/* Publish record o in zone z if z selects it. */
static void zone_attach(proj_t *p, proj_zone_t *z, obj_t *o)
{
    if (o->res == NULL || !zone_selects(z, o))
        return;
    char *owner = owner_of(p, z, o->res->u.record.name);
    if (owner == NULL)
        return;
    owner_t *ow = owner_get(p, z, owner, true);
    if (ow != NULL) {
        owner_add_rec(p, ow, o);
        z->nrecords++;
        touch(p, z->obj);
        owner_eval(p, z, ow);
    }
    free(owner);
}

static void zone_detach(proj_t *p, obj_t *o)
{
    while (o->ncontribs > 0) {
        char *zone = strdup(o->contribs[0].zone), *owner = strdup(o->contribs[0].owner);
        if (zone == NULL || owner == NULL) {
            free(zone);
            free(owner);
            p->oom = 1;
            return;
        }
        contrib_drop_zone(o, zone);
        proj_zone_t *z = bd_hmap_get(p->zones, zone);
        owner_t *ow = z ? owner_get(p, z, owner, false) : NULL;
        if (ow != NULL) {
            owner_del_rec(ow, o);
            z->nrecords--;
            touch(p, z->obj);
            owner_eval(p, z, ow);
        }
        free(zone);
        free(owner);
    }
    touch(p, o);
}

/* The SOA rname from adminEmail: "admin@example.com" -> "admin.example.com." */
static char *soa_rname(proj_t *p, const char *email)
{
    const char *at = strchr(email, '@');
    if (at == NULL) {
        size_t n = strlen(email);
        return n && email[n - 1] == '.' ? xstrdup(p, email) : xfmt(p, "%s.", email);
    }
    char local[256];
    size_t o = 0;
    for (const char *c = email; c < at && o < sizeof(local) - 3; c++) {
        if (*c == '.')
            local[o++] = '\\';
        local[o++] = *c;
    }
    local[o] = '\0';
    size_t dn = strlen(at + 1);
    return xfmt(p, "%s.%s%s", local, at + 1, dn && at[dn] == '.' ? "" : ".");
}

/* Rebuild a DNS zone from its DNSZone and every record of its namespace. */
static void zone_rebuild(proj_t *p, proj_zone_t *z)
{
    zone_clear(p, z);
    const res_zone_t *spec = &z->obj->res->u.zone;
    /* apex NS and in-zone glue */
    owner_t *apex = owner_get(p, z, z->origin, true);
    if (apex == NULL)
        return;
    for (size_t i = 0; i < spec->n_name_servers || (i == 0 && spec->n_name_servers == 0); i++) {
        const res_ns_t *ns = spec->n_name_servers ? &spec->name_servers[i] : NULL;
        char *host = target_of(p, z, ns ? ns->hostname : spec->primary_ns);
        if (host == NULL)
            continue;
        strv_add(p, &apex->synth, xfmt(p, "%s %d IN NS %s", z->origin, spec->ttl, host));
        char *glue_owner = ns ? owner_of(p, z, host) : NULL;
        if (glue_owner != NULL && (ns->ipv4 || ns->ipv6)) {
            owner_t *g = owner_get(p, z, glue_owner, true);
            if (g && ns->ipv4)
                strv_add(p, &g->synth, xfmt(p, "%s %d IN A %s", glue_owner, spec->ttl, ns->ipv4));
            if (g && ns->ipv6)
                strv_add(p, &g->synth, xfmt(p, "%s %d IN AAAA %s", glue_owner, spec->ttl, ns->ipv6));
        }
        free(glue_owner);
        free(host);
    }
    size_t nkeys = 0;
    const char **keys = bd_hmap_keys_sorted(z->owners, &nkeys);
    for (size_t i = 0; i < nkeys; i++)
        owner_eval(p, z, bd_hmap_get(z->owners, keys[i]));
    free(keys);

    /* Records: only those the selectors can match (the index), in key order as a scan of
     * every object would visit them, so contributor order stays the same. */
    size_t ncand = 0;
    obj_t **cand = zone_record_candidates(p, z, &ncand);
    for (size_t i = 0; i < ncand; i++)
        zone_attach(p, z, cand[i]);
    free(cand);
    touch(p, z->obj);
}

/* The oldest valid DNSZone for a zone name, or NULL. */
static obj_t *zone_winner(proj_t *p, const char *zone_name)
{
    obj_t *best = NULL;
    size_t pos = 0;
    obj_t *o;
    const bd_hmap_t *claims = bd_hmap_get(p->zclaims, zone_name);
    while (claims != NULL && bd_hmap_next(claims, &pos, NULL, (void **)&o) && ++p->visited)
        if (o->kind == RES_DNSZONE && !o->deleted && o->res && strcmp(o->res->u.zone.zone_name, zone_name) == 0 &&
            (best == NULL || obj_age_cmp(o, best) < 0))
            best = o;
    return best;
}

/* Make the zone named zone_name reflect its winning DNSZone (or remove it). */
static char *soa_text(proj_t *p, const proj_zone_t *z, uint32_t serial);
static bool serial_gt(uint32_t a, uint32_t b);

static void zone_sync(proj_t *p, const char *zone_name)
{
    char *name = xstrdup(p, zone_name);
    if (name == NULL)
        return;
    obj_t *win = zone_winner(p, name);
    proj_zone_t *z = bd_hmap_get(p->zones, name);
    if (win == NULL) {
        if (z != NULL && !z->catalog)
            zone_destroy(p, z);
    } else {
        if (z == NULL)
            z = zone_new(p, name, false);
        if (z != NULL) {
            z->obj = win;
            zone_rebuild(p, z);
            /* A new zone version when the SOA's fields change even if no RR does; not for
             * an event that changes nothing served (a status or label update). */
            char *sig = soa_text(p, z, 0);
            if (z->soa_sig == NULL || sig == NULL || strcmp(sig, z->soa_sig) != 0)
                z->changed = true;
            free(z->soa_sig);
            z->soa_sig = sig;
            if (bd_hmap_put(p->zchanged, z->name, (void *)1, NULL) != BD_OK)
                p->oom = 1;
        }
    }
    /* Every DNSZone naming it may have won or lost. */
    size_t pos = 0;
    obj_t *o;
    const bd_hmap_t *claims = bd_hmap_get(p->zclaims, name);
    while (claims != NULL && bd_hmap_next(claims, &pos, NULL, (void **)&o) && ++p->visited)
        if (o->kind == RES_DNSZONE && o->res && strcmp(o->res->u.zone.zone_name, name) == 0)
            touch(p, o);
    free(name);
}

/* ---- instances and catalogs ---------------------------------------------------------- */

static void instance_free(proj_instance_t *in)
{
    if (in == NULL)
        return;
    free((char *)in->key);
    free((char *)in->catalog);
    res_strv_deinit(&in->zones);
    res_strv_deinit(&in->upstream);
    free(in);
}

static bool zone_selects_instance(const proj_zone_t *z, const obj_t *inst)
{
    const res_zone_t *spec = &z->obj->res->u.zone;
    const res_instance_t *in = &inst->res->u.instance;
    if (strcmp(z->obj->ns, inst->ns) != 0)
        return false;
    if (spec->cluster_ref && in->cluster_ref && strcmp(spec->cluster_ref, in->cluster_ref) == 0)
        return true;
    for (size_t i = 0; i < spec->n_instances_from; i++)
        if (sel_matches(&spec->instances_from[i], &inst->res->meta.labels))
            return true;
    return false;
}

static bool is_upstream(const obj_t *primary, const obj_t *secondary)
{
    const res_instance_t *a = &primary->res->u.instance, *b = &secondary->res->u.instance;
    if (a->role != RES_ROLE_PRIMARY || b->role != RES_ROLE_SECONDARY)
        return false;
    if (b->cluster_ref)
        return a->cluster_ref && strcmp(a->cluster_ref, b->cluster_ref) == 0;
    return strcmp(primary->ns, secondary->ns) == 0;
}

/* Add or remove member's PTR in catalog zone cat. Each member's PTR has an owner of its
 * own (a stable id from the member's name; RFC 9432 leaves ids to the producer), so a
 * change re-renders that owner only: O(1) in the size of the catalog, where one owner for
 * every line made each zone event re-render every catalog in full. */
static void catalog_member(proj_t *p, proj_zone_t *cat, const char *member, bool add)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = member; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    char *owner = xfmt(p, "%016llx.zones.%s", (unsigned long long)h, cat->origin);
    char *line = owner ? xfmt(p, "%s 0 IN PTR %s.", owner, member) : NULL;
    owner_t *ow = line ? owner_get(p, cat, owner, add) : NULL;
    size_t at = ow ? ow->synth.n : 0;
    for (size_t i = 0; ow && i < ow->synth.n; i++)
        if (strcmp(ow->synth.v[i], line) == 0)
            at = i;
    if (ow && add && at == ow->synth.n) {
        strv_add(p, &ow->synth, line); /* two members whose ids collide share the owner */
        line = NULL;
        strv_sort_unique(&ow->synth);
        owner_eval(p, cat, ow); /* ow may be freed from here on */
    } else if (ow && !add && at < ow->synth.n) {
        free(ow->synth.v[at]);
        memmove(&ow->synth.v[at], &ow->synth.v[at + 1], (ow->synth.n - at - 1) * sizeof(*ow->synth.v));
        ow->synth.n--;
        owner_eval(p, cat, ow);
    }
    free(owner);
    free(line);
}

/* Make a catalog zone list exactly members (sorted); diff into pending. */
static void catalog_sync(proj_t *p, const char *cat_name, const char *inst_key, const res_strv_t *members)
{
    proj_zone_t *z = bd_hmap_get(p->zones, cat_name);
    if (z == NULL) {
        if ((z = zone_new(p, cat_name, true)) == NULL)
            return;
        z->catalog_of = xstrdup(p, inst_key);
    }
    /* The apex: NS and the schema version. */
    res_strv_t want = {0};
    strv_add(p, &want, xfmt(p, "%s 0 IN NS invalid.", z->origin));
    strv_add(p, &want, xfmt(p, "version.%s 0 IN TXT \"2\"", z->origin));
    strv_sort_unique(&want);
    owner_t *apex = owner_get(p, z, z->origin, true);
    if (apex != NULL && !strv_equal(&apex->synth, &want)) {
        res_strv_deinit(&apex->synth);
        apex->synth = want;
        owner_eval(p, z, apex);
    } else {
        res_strv_deinit(&want);
    }
    /* Members: drop those not wanted any more (in owner order), then add the missing. */
    size_t nk = 0;
    const char **owners = bd_hmap_keys_sorted(z->owners, &nk);
    res_strv_t drop = {0};
    for (size_t i = 0; i < nk; i++) {
        owner_t *ow = bd_hmap_get(z->owners, owners[i]);
        for (size_t k = 0; strcmp(owners[i], z->origin) != 0 && k < ow->synth.n; k++) {
            const char *ptr = strstr(ow->synth.v[k], " IN PTR ");
            char *member = ptr ? xstrdup(p, ptr + 8) : NULL;
            size_t ml = member ? strlen(member) : 0;
            if (ml > 0 && member[ml - 1] == '.')
                member[ml - 1] = '\0';
            if (member && bd_bsearch(&member, members->v, members->n, sizeof(*members->v), cmp_str) == NULL)
                strv_add(p, &drop, member);
            else
                free(member);
        }
    }
    free(owners);
    for (size_t i = 0; i < drop.n; i++)
        catalog_member(p, z, drop.v[i], false);
    res_strv_deinit(&drop);
    for (size_t i = 0; i < members->n; i++)
        catalog_member(p, z, members->v[i], true);
}

static int instance_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, (*(proj_instance_t *const *)elem)->key);
}

static proj_instance_t *instance_get(const proj_t *p, const char *key)
{
    proj_instance_t **in = bd_bsearch(key, p->instances, p->ninstances, sizeof(*p->instances), instance_key_cmp);
    return in ? *in : NULL;
}

/* The catalogs that list a zone served by the instances insts (keys): theirs, and those
 * of their upstream primaries (a primary carries what its secondaries serve). Sorted. */
static void catalogs_listing(proj_t *p, const res_strv_t *insts, res_strv_t *out)
{
    for (size_t i = 0; i < insts->n; i++) {
        const proj_instance_t *in = instance_get(p, insts->v[i]);
        if (in == NULL)
            continue;
        strv_add(p, out, xstrdup(p, in->catalog));
        for (size_t u = 0; u < in->upstream.n; u++) {
            const proj_instance_t *up = instance_get(p, in->upstream.v[u]);
            if (up != NULL)
                strv_add(p, out, xstrdup(p, up->catalog));
        }
    }
    strv_sort_unique(out);
}

/* The instances that serve the DNS zone named name now (keys, sorted; empty if none). */
static void zone_served_by(proj_t *p, const char *name, res_strv_t *out)
{
    const proj_zone_t *z = bd_hmap_get(p->zones, name);
    for (size_t i = 0; z != NULL && !z->catalog && i < z->instances.n; i++)
        strv_add(p, out, xstrdup(p, z->instances.v[i]));
}

/* Add or remove zone name in an instance's sorted zone list; whether it changed. */
static bool instance_zone_set(proj_t *p, proj_instance_t *in, const char *name, bool add)
{
    size_t lo = 0, hi = in->zones.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(in->zones.v[mid], name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool present = lo < in->zones.n && strcmp(in->zones.v[lo], name) == 0;
    if (present == add)
        return false;
    if (!add) {
        free(in->zones.v[lo]);
        memmove(&in->zones.v[lo], &in->zones.v[lo + 1], (in->zones.n - lo - 1) * sizeof(*in->zones.v));
        in->zones.n--;
        return true;
    }
    char *copy = xstrdup(p, name);
    char **nv = copy ? realloc(in->zones.v, (in->zones.n + 1) * sizeof(*nv)) : NULL;
    if (nv == NULL) {
        free(copy);
        p->oom = 1;
        return false;
    }
    in->zones.v = nv;
    memmove(&in->zones.v[lo + 1], &in->zones.v[lo], (in->zones.n - lo) * sizeof(*nv));
    in->zones.v[lo] = copy;
    in->zones.n++;
    return true;
}

/*
 * After a DNSZone event: the membership of the one zone named name, given who served it
 * before the event (sorted keys). Only the instances that gain or lose it and the catalogs
 * that list it change, so the cost is O(instances), not O(zones): instances_refresh would
 * recompute every zone's membership and every catalog. The result is the same as
 * instances_refresh's (a DNSZone event changes neither instances nor topology), which
 * tests/unit/test_projector.c checks.
 */
static void zone_membership(proj_t *p, const char *name, const res_strv_t *before)
{
    proj_zone_t *z = bd_hmap_get(p->zones, name);
    if (z != NULL && z->catalog)
        return;
    res_strv_t now = {0};
    for (size_t i = 0; z != NULL && i < p->ninstances; i++) {
        char *okey = xfmt(p, "Bind9Instance/%s", p->instances[i]->key);
        const obj_t *o = okey ? bd_hmap_get(p->objs, okey) : NULL;
        if (o != NULL && zone_selects_instance(z, o))
            strv_add(p, &now, xstrdup(p, p->instances[i]->key));
        free(okey);
    }
    if (z != NULL && !strv_equal(&now, &z->instances)) {
        touch(p, z->obj);
        res_strv_deinit(&z->instances);
        z->instances = now;
        now = (res_strv_t){0};
    }
    const res_strv_t *after = z != NULL ? &z->instances : &now;
    /* instances that gain or lose the zone: both lists are sorted, one merge pass */
    for (size_t i = 0, j = 0; i < before->n || j < after->n;) {
        int c = i >= before->n ? 1 : j >= after->n ? -1 : strcmp(before->v[i], after->v[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        const char *key = c < 0 ? before->v[i++] : after->v[j++];
        proj_instance_t *in = instance_get(p, key);
        if (in == NULL || !instance_zone_set(p, in, name, c > 0))
            continue;
        char *okey = xfmt(p, "Bind9Instance/%s", key);
        touch(p, okey ? bd_hmap_get(p->objs, okey) : NULL); /* "serves N zones" */
        free(okey);
        if (bd_hmap_put(p->inst_changed, key, (void *)1, NULL) != BD_OK)
            p->oom = 1;
    }
    /* catalogs that stop or start listing it */
    res_strv_t was = {0}, will = {0};
    catalogs_listing(p, before, &was);
    catalogs_listing(p, after, &will);
    for (size_t i = 0, j = 0; i < was.n || j < will.n;) {
        int c = i >= was.n ? 1 : j >= will.n ? -1 : strcmp(was.v[i], will.v[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        proj_zone_t *cz = bd_hmap_get(p->zones, c < 0 ? was.v[i++] : will.v[j++]);
        if (cz != NULL && cz->catalog)
            catalog_member(p, cz, name, c > 0);
    }
    res_strv_deinit(&was);
    res_strv_deinit(&will);
    res_strv_deinit(&now);
}

/* Recompute zone membership, instance desired state and catalogs. */
static void instances_refresh(proj_t *p)
{
    size_t nkeys = 0, nzones = 0;
    const char **keys = bd_hmap_keys_sorted(p->objs, &nkeys);
    const char **znames = bd_hmap_keys_sorted(p->zones, &nzones);
    obj_t **insts = calloc(nkeys + 1, sizeof(*insts));
    size_t ni = 0;
    if (insts == NULL) {
        p->oom = 1;
        goto out;
    }
    for (size_t i = 0; i < nkeys; i++) {
        obj_t *o = bd_hmap_get(p->objs, keys[i]);
        if (o->kind == RES_BIND9INSTANCE && !o->deleted && o->res)
            insts[ni++] = o;
    }
    /* zone -> instances */
    for (size_t zi = 0; zi < nzones; zi++) {
        proj_zone_t *z = bd_hmap_get(p->zones, znames[zi]);
        if (z->catalog)
            continue;
        res_strv_t now = {0};
        for (size_t i = 0; i < ni; i++)
            if (zone_selects_instance(z, insts[i]))
                strv_add(p, &now, xfmt(p, "%s/%s", insts[i]->ns, insts[i]->name));
        if (!strv_equal(&now, &z->instances)) {
            touch(p, z->obj);
            res_strv_deinit(&z->instances);
            z->instances = now;
        } else {
            res_strv_deinit(&now);
        }
    }
    /* instance desired state */
    proj_instance_t **fresh = calloc(ni + 1, sizeof(*fresh));
    if (fresh == NULL) {
        p->oom = 1;
        goto out;
    }
    for (size_t i = 0; i < ni; i++) {
        proj_instance_t *in = calloc(1, sizeof(*in));
        if (in == NULL) {
            p->oom = 1;
            break;
        }
        fresh[i] = in;
        in->key = xfmt(p, "%s/%s", insts[i]->ns, insts[i]->name);
        in->res = insts[i]->res;
        in->version = insts[i]->version;
        in->catalog = xfmt(p, "%s.%s.%s", insts[i]->name, insts[i]->ns, p->catalog_suffix);
        for (size_t zi = 0; zi < nzones && in->key; zi++) {
            proj_zone_t *z = bd_hmap_get(p->zones, znames[zi]);
            for (size_t k = 0; !z->catalog && k < z->instances.n; k++)
                if (strcmp(z->instances.v[k], in->key) == 0)
                    strv_add(p, &in->zones, xstrdup(p, z->name));
        }
        for (size_t j = 0; j < ni; j++)
            if (is_upstream(insts[j], insts[i]))
                strv_add(p, &in->upstream, xfmt(p, "%s/%s", insts[j]->ns, insts[j]->name));
        touch(p, insts[i]);
    }
    /* catalogs: a primary also carries what its downstream secondaries serve */
    for (size_t i = 0; i < ni && !p->oom; i++) {
        res_strv_t members = {0};
        for (size_t k = 0; k < fresh[i]->zones.n; k++)
            strv_add(p, &members, xstrdup(p, fresh[i]->zones.v[k]));
        for (size_t j = 0; j < ni; j++) {
            if (!is_upstream(insts[i], insts[j]))
                continue;
            for (size_t k = 0; k < fresh[j]->zones.n; k++)
                strv_add(p, &members, xstrdup(p, fresh[j]->zones.v[k]));
            strv_add(p, &members, xstrdup(p, fresh[j]->catalog));
        }
        strv_sort_unique(&members);
        catalog_sync(p, fresh[i]->catalog, fresh[i]->key, &members);
        res_strv_deinit(&members);
    }
    /* catalogs of instances that are gone */
    for (size_t zi = 0; zi < nzones; zi++) {
        proj_zone_t *z = bd_hmap_get(p->zones, znames[zi]);
        if (z == NULL || !z->catalog)
            continue;
        bool alive = false;
        for (size_t i = 0; i < ni && !alive; i++)
            alive = fresh[i]->catalog && strcmp(fresh[i]->catalog, z->name) == 0;
        if (!alive)
            zone_destroy(p, z);
    }
    /* which instances changed */
    for (size_t i = 0; i < ni && !p->oom; i++) {
        const proj_instance_t *old = NULL;
        for (size_t k = 0; k < p->ninstances; k++)
            if (strcmp(p->instances[k]->key, fresh[i]->key) == 0)
                old = p->instances[k];
        if (old == NULL || old->version != fresh[i]->version || !strv_equal(&old->zones, &fresh[i]->zones) ||
            !strv_equal(&old->upstream, &fresh[i]->upstream))
            if (bd_hmap_put(p->inst_changed, fresh[i]->key, (void *)1, NULL) != BD_OK)
                p->oom = 1;
    }
    for (size_t k = 0; k < p->ninstances; k++) {
        bool alive = false;
        for (size_t i = 0; i < ni && !alive; i++)
            alive = strcmp(p->instances[k]->key, fresh[i]->key) == 0;
        if (!alive && bd_hmap_put(p->inst_changed, p->instances[k]->key, (void *)1, NULL) != BD_OK)
            p->oom = 1;
        instance_free(p->instances[k]);
    }
    free(p->instances);
    p->instances = fresh;
    p->ninstances = ni;
out:
    free(insts);
    free(keys);
    free(znames);
}

/* ---- status ----------------------------------------------------------------------- */

static void status_set(proj_t *p, obj_t *o, bool ready, const char *reason, char *message)
{
    o->ready = ready;
    o->reason = reason;
    free(o->message);
    o->message = message ? message : xstrdup(p, "");
}

static void status_compute(proj_t *p, obj_t *o)
{
    if (o->invalid_msg != NULL) {
        status_set(p, o, false, R_INVALID,
                   xfmt(p, "%s%s", o->invalid_msg, o->res ? " (the last valid version is still served)" : ""));
        return;
    }
    if (o->res == NULL)
        return;
    switch (o->kind) {
    case RES_DNSZONE: {
        const char *zn = o->res->u.zone.zone_name;
        proj_zone_t *z = bd_hmap_get(p->zones, zn);
        if (z == NULL || z->obj != o)
            status_set(p, o, false, R_DUPZONE,
                       xfmt(p, "zone %s is already defined by %s/%s", zn, z && z->obj ? z->obj->ns : "?",
                            z && z->obj ? z->obj->name : "?"));
        else if (z->instances.n == 0)
            status_set(p, o, false, R_NOINST,
                       xfmt(p, "no Bind9Instance is selected by bind9InstancesFrom or clusterRef"));
        else {
            /* recomputed whenever one of its records changes: no printf */
            char ni[24], nr[24];
            status_set(p, o, true, R_READY,
                       xcat(p, "served by ", dec(ni, (long long)z->instances.n), " instance",
                            z->instances.n == 1 ? "" : "s", " with ", dec(nr, (long long)z->nrecords), " record",
                            z->nrecords == 1 ? "" : "s"));
        }
        break;
    }
    case RES_BIND9INSTANCE: {
        size_t nz = 0;
        for (size_t i = 0; i < p->ninstances; i++)
            if (p->instances[i]->res == o->res)
                nz = p->instances[i]->zones.n;
        status_set(p, o, true, R_READY, xfmt(p, "serves %zu zone%s", nz, nz == 1 ? "" : "s"));
        break;
    }
    case RES_BIND9CLUSTER:
        status_set(p, o, true, R_READY, NULL);
        break;
    default: {
        if (o->ncontribs == 0) {
            status_set(p, o, false, R_NOTSEL,
                       xfmt(p, "no DNSZone in namespace %s selects this record with a name inside the zone",
                            o->ns));
            break;
        }
        for (size_t i = 0; i < o->ncontribs; i++) {
            const contrib_t *c = &o->contribs[i];
            if (c->reason == R_CNAME) {
                status_set(p, o, false, R_CNAME,
                           xfmt(p, "%s in zone %s: a CNAME cannot stand beside other data", c->owner, c->zone));
                return;
            }
            if (c->reason == R_RECORD) {
                status_set(p, o, false, R_RECORD,
                           xfmt(p, "%s in zone %s: an older record has the same name and type with another "
                                   "TTL or target", c->owner, c->zone));
                return;
            }
        }
        status_set(p, o, true, R_READY,
                   xcat(p, "published as ", o->contribs[0].owner, " in zone ", o->contribs[0].zone,
                        o->ncontribs > 1 ? " and others" : ""));
        break;
    }
    }
}

void proj_status(const proj_t *p, const char *kind, const char *ns, const char *name, proj_status_t *out)
{
    memset(out, 0, sizeof(*out));
    char key[1024];
    snprintf(key, sizeof(key), "%s/%s/%s", kind, ns, name);
    const obj_t *o = bd_hmap_get(p->objs, key);
    if (o == NULL || o->reason == NULL)
        return;
    out->known = true;
    out->ready = o->ready;
    out->reason = o->reason;
    out->message = o->message;
}

/* ---- serials ------------------------------------------------------------------------ */

/* RFC 1982: is a greater than b? */
static bool serial_gt(uint32_t a, uint32_t b)
{
    return a != b && ((a > b && a - b < 0x80000000u) || (a < b && b - a > 0x80000000u));
}

static void zone_bump_serial(proj_t *p, proj_zone_t *z)
{
    uint32_t next = z->serial == 0 ? 1 : z->serial + 1;
    if (next == 0)
        next = 1;
    if (z->obj && z->obj->res->u.zone.serial >= 0) {
        uint32_t want = (uint32_t)z->obj->res->u.zone.serial;
        if (serial_gt(want, next))
            next = want;
    }
    uintptr_t f = (uintptr_t)bd_hmap_get(p->floors, z->name);
    if (f != 0 && !serial_gt(next, (uint32_t)(f - 1)))
        next = (uint32_t)(f - 1) + 1;
    z->serial = next;
}

int proj_serial_floor(proj_t *p, const char *zone, uint32_t floor)
{
    if (bd_hmap_put(p->floors, zone, (void *)((uintptr_t)floor + 1), NULL) != BD_OK)
        return BD_ENOMEM;
    proj_zone_t *z = bd_hmap_get(p->zones, zone);
    if (z != NULL && !serial_gt(z->serial, floor)) {
        zone_bump_serial(p, z);
        if (pend_get(p, z->name, true) == NULL)
            return BD_ENOMEM;
    }
    return p->oom ? BD_ENOMEM : BD_OK;
}

/* ---- apply ------------------------------------------------------------------------ */

static int cmp_claim_zone(const void *a, const void *b)
{
    return strcmp((*(obj_t *const *)a)->res->u.zone.zone_name, (*(obj_t *const *)b)->res->u.zone.zone_name);
}

/* Publish record o in every zone that selects it, in zone-name order (its contributions'
 * order, which its status names first). Only zones whose DNSZones can select it are
 * looked at: those requiring one of its labels, and those requiring no label value. */
static void attach_everywhere(proj_t *p, obj_t *o)
{
    obj_t **v = NULL;
    size_t n = 0, cap = 0;
    const sel_labels_t *labels = &o->res->meta.labels;
    for (size_t i = 0; i < labels->n; i++) {
        char buf[IKEY_SMALL];
        char *ikey = label_ikey(p, buf, o->ns, labels->items[i].key, labels->items[i].value);
        if (ikey != NULL)
            idx_collect(p, bd_hmap_get(p->zsel_lbl, ikey), &v, &n, &cap);
        if (ikey != buf)
            free(ikey);
    }
    idx_collect(p, bd_hmap_get(p->zsel_any, o->ns), &v, &n, &cap);
    bd_qsort(v, n, sizeof(*v), cmp_claim_zone);
    for (size_t i = 0; i < n; i++) {
        const char *name = v[i]->res->u.zone.zone_name;
        if (i > 0 && strcmp(name, v[i - 1]->res->u.zone.zone_name) == 0)
            continue;
        proj_zone_t *z = bd_hmap_get(p->zones, name);
        if (z != NULL && !z->catalog)
            zone_attach(p, z, o);
    }
    free(v);
}

/* The first validation error of obj (borrowed) as "field: message", or NULL when valid;
 * *validated gets obj as validated (schema defaults applied), a new reference, or NULL. An
 * object that has its defaults already (every object bindy imported) is validated where it
 * is: only one that lacks some is copied, as val_check writes them in. */
static char *first_invalid(proj_t *p, const json_t *obj, json_t **validated)
{
    val_report_t rep;
    val_report_init(&rep);
    char *msg = NULL;
    bool missing = false;
    int rc = val_check_borrowed(p->cat, obj, &rep, &missing);
    json_t *v = missing ? json_deep_copy(obj) : json_incref((json_t *)obj);
    if (missing && v != NULL) {
        val_report_reset(&rep);
        rc = val_check(p->cat, v, &rep);
    }
    *validated = v;
    if (v == NULL) {
        p->oom = 1;
        msg = xstrdup(p, "out of memory");
    } else if (rc != BD_OK) {
        for (size_t i = 0; i < rep.n && msg == NULL; i++)
            if (rep.items[i].sev == VAL_ERROR)
                msg = rep.items[i].path[0] ? xfmt(p, "%s: %s", rep.items[i].path, rep.items[i].msg)
                                           : xstrdup(p, rep.items[i].msg);
        if (msg == NULL)
            msg = xstrdup(p, rep.nomem ? "out of memory" : "invalid");
    }
    val_report_deinit(&rep);
    return msg;
}

static void finish_event(proj_t *p)
{
    size_t n = 0;
    const char **names = bd_hmap_keys_sorted(p->zchanged, &n);
    for (size_t i = 0; i < n; i++) {
        proj_zone_t *z = bd_hmap_get(p->zones, names[i]);
        if (z == NULL)
            continue;
        if (z->changed || (z->evnet && bd_hmap_count(z->evnet) > 0))
            zone_bump_serial(p, z);
        /* Continuity across leaders: a serial a leader published (status.serial of the
         * zone or of one of its records, as journaled from the API server) is a floor. A
         * replica below it (it journaled fewer versions, e.g. it started later) goes one
         * above it: its content may differ from what the leader published under that
         * serial, so servers must transfer. */
        int64_t pub = z->obj && z->obj->res ? z->obj->res->u.zone.status_serial : -1;
        if (z->ev_pub > 0 && (pub <= 0 || serial_gt((uint32_t)z->ev_pub, (uint32_t)pub)))
            pub = z->ev_pub;
        z->ev_pub = 0;
        if (pub > 0 && serial_gt((uint32_t)pub, z->serial)) {
            uint32_t above = (uint32_t)pub + 1; /* RFC 1982: 0 is skipped, as everywhere */
            z->serial = above ? above : 1;
            if (pend_get(p, z->name, true) == NULL)
                p->oom = 1;
        }
        z->changed = false;
        bd_hmap_clear(z->evnet);
    }
    free(names);
    bd_hmap_clear(p->zchanged);
    size_t pos = 0;
    const char *key;
    obj_t *o;
    while (bd_hmap_next(p->touched, &pos, &key, (void **)&o)) {
        status_compute(p, o);
        if (bd_hmap_put(p->status_dirty, key, (void *)1, NULL) != BD_OK)
            p->oom = 1;
    }
    bd_hmap_clear(p->touched);
}

int proj_apply(proj_t *p, const jnl_event_t *ev, bd_err_t *err)
{
    if (p->oom)
        return bd_err_set(err, BD_ENOMEM, "projector: out of memory earlier; rebuild it");
    p->seq = ev->seq;
    res_kind_t kind;
    if (ev->type > JNL_DELETED || res_kind_from_name(ev->kind, &kind) != BD_OK || ev->api_version == NULL ||
        strcmp(ev->api_version, BD_API_VERSION) != 0 || ev->name == NULL)
        return BD_OK; /* markers and kinds that are not ours */

    /* An object with metadata.deletionTimestamp is being deleted (a finalizer holds it):
     * it leaves the desired state now, exactly as on DELETED, so the deletion reaches BIND
     * before the finalizer is released; its later events (finalizer edits, DELETED)
     * change nothing more. Decided from the journaled object alone. */
    const json_t *dts = ev->object ? json_object_get(json_object_get(ev->object, "metadata"), "deletionTimestamp") : NULL;
    bool gone = ev->type == JNL_DELETED || (dts != NULL && !json_is_null(dts));
    const char *ns = ev->ns && ev->ns[0] ? ev->ns : "default";
    char *key = xcat(p, ev->kind, "/", ns, "/", ev->name);
    if (key == NULL)
        return bd_err_set(err, BD_ENOMEM, "projector: out of memory");
    obj_t *o = bd_hmap_get(p->objs, key);
    if (gone && o == NULL) {
        free(key);
        return BD_OK;
    }
    if (o == NULL) {
        o = calloc(1, sizeof(*o));
        if (o == NULL || bd_hmap_put(p->objs, key, o, NULL) != BD_OK) {
            free(o);
            free(key);
            return bd_err_set(err, BD_ENOMEM, "projector: out of memory");
        }
        o->key = key;
        o->kind = kind;
        o->ns = xstrdup(p, ns);
        o->name = xstrdup(p, ev->name);
        o->first_seq = ev->seq;
    } else {
        free(key);
    }

    res_t *fresh = NULL;
    if (!gone) {
        json_t *valid = NULL;
        char *why = ev->object ? first_invalid(p, ev->object, &valid) : xstrdup(p, "event without an object");
        bd_err_t rerr;
        if (why == NULL && res_from_json(valid, &fresh, &rerr) != BD_OK)
            why = xstrdup(p, rerr.msg);
        json_decref(valid);
        free(o->invalid_msg);
        o->invalid_msg = why;
        touch(p, o);
        if (why != NULL) {
            finish_event(p);
            return p->oom ? bd_err_set(err, BD_ENOMEM, "projector: out of memory") : BD_OK;
        }
    }

    res_t *old = o->res;
    char *old_zone = old && kind == RES_DNSZONE ? xstrdup(p, old->u.zone.zone_name) : NULL;
    if (res_kind_is_record(kind))
        zone_detach(p, o); /* o->res is still the old version here */
    idx_obj(p, o, old, false);
    idx_obj(p, o, fresh, true);
    o->res = fresh;
    if (fresh != NULL)
        o->valid_seq = ev->seq;
    o->version++;
    o->deleted = gone;
    switch (kind) {
    case RES_DNSZONE: {
        /* Instances and topology stay as they are: only the zone names this event touches
         * change membership (zone_membership), given who served them before. */
        const char *new_zone = fresh ? fresh->u.zone.zone_name : NULL;
        bool moved = old_zone && (!new_zone || strcmp(old_zone, new_zone) != 0);
        res_strv_t was_old = {0}, was_new = {0};
        if (moved)
            zone_served_by(p, old_zone, &was_old);
        if (new_zone)
            zone_served_by(p, new_zone, &was_new);
        if (moved)
            zone_sync(p, old_zone);
        if (new_zone)
            zone_sync(p, new_zone);
        if (moved)
            zone_membership(p, old_zone, &was_old);
        if (new_zone)
            zone_membership(p, new_zone, &was_new);
        res_strv_deinit(&was_old);
        res_strv_deinit(&was_new);
        break;
    }
    case RES_BIND9INSTANCE:
        instances_refresh(p);
        break;
    case RES_BIND9CLUSTER:
        instances_refresh(p);
        /* an instance's configuration includes its cluster's */
        for (size_t i = 0; i < p->ninstances; i++) {
            const res_t *r = p->instances[i]->res;
            if (r->u.instance.cluster_ref && strcmp(r->u.instance.cluster_ref, o->name) == 0 &&
                strcmp(r->meta.ns, o->ns) == 0 && bd_hmap_put(p->inst_changed, p->instances[i]->key, (void *)1, NULL))
                p->oom = 1;
        }
        break;
    default:
        if (fresh)
            attach_everywhere(p, o);
        if (fresh && fresh->u.record.status_zone && fresh->u.record.status_serial > 0) {
            proj_zone_t *z = bd_hmap_get(p->zones, fresh->u.record.status_zone);
            if (z != NULL && bd_hmap_put(p->zchanged, z->name, (void *)1, NULL) != BD_OK)
                p->oom = 1;
            else if (z != NULL)
                z->ev_pub = fresh->u.record.status_serial;
        }
        break;
    }
    res_free(old);
    free(old_zone);

    if (o->deleted) {
        bd_hmap_del(p->touched, o->key);
        bd_hmap_del(p->status_dirty, o->key);
        bd_hmap_del(p->objs, o->key);
        obj_free(o);
    }
    finish_event(p);
    if (p->oom)
        return bd_err_set(err, BD_ENOMEM, "projector: out of memory");
    return BD_OK;
}

/* ---- changes ---------------------------------------------------------------------- */

static void pend_free(pend_t *pd)
{
    if (pd == NULL)
        return;
    bd_hmap_free(pd->net);
    free(pd);
}

void proj_changes_deinit(proj_changes_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nzones; i++) {
        free(c->zones[i].zone);
        res_strv_deinit(&c->zones[i].removed);
        res_strv_deinit(&c->zones[i].added);
    }
    free(c->zones);
    res_strv_deinit(&c->instances);
    res_strv_deinit(&c->statuses);
    memset(c, 0, sizeof(*c));
}

static void keys_into(proj_t *p, const bd_hmap_t *m, res_strv_t *out)
{
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(m, &n);
    for (size_t i = 0; i < n; i++)
        strv_add(p, out, xstrdup(p, keys[i]));
    free(keys);
}

int proj_take_changes(proj_t *p, proj_changes_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = 0;
    const char **names = bd_hmap_keys_sorted(p->pending, &n);
    out->zones = calloc(n ? n : 1, sizeof(*out->zones));
    if (out->zones == NULL)
        p->oom = 1;
    for (size_t i = 0; out->zones && i < n; i++) {
        pend_t *pd = bd_hmap_get(p->pending, names[i]);
        proj_zone_t *z = bd_hmap_get(p->zones, names[i]);
        if (z == NULL && !pd->existed)
            continue; /* created and deleted between two takes */
        if (z != NULL && pd->existed && bd_hmap_count(pd->net) == 0 && z->serial == z->taken_serial)
            continue; /* rebuilt, but nothing served changed */
        if (z != NULL)
            z->taken_serial = z->serial;
        proj_zone_change_t *c = &out->zones[out->nzones++];
        c->zone = xstrdup(p, names[i]);
        c->serial = z ? z->serial : 0;
        c->created = z != NULL && !pd->existed;
        c->deleted = z == NULL;
        size_t pos = 0;
        const char *line;
        void *v;
        while (bd_hmap_next(pd->net, &pos, &line, &v))
            strv_add(p, (intptr_t)v < 0 ? &c->removed : &c->added, xstrdup(p, line));
        strv_sort_unique(&c->removed);
        strv_sort_unique(&c->added);
    }
    free(names);
    size_t pos = 0;
    pend_t *pd;
    while (bd_hmap_next(p->pending, &pos, NULL, (void **)&pd))
        pend_free(pd);
    bd_hmap_clear(p->pending);

    keys_into(p, p->inst_changed, &out->instances);
    bd_hmap_clear(p->inst_changed);

    /* Only statuses that really differ from what the last take reported. */
    names = bd_hmap_keys_sorted(p->status_dirty, &n);
    for (size_t i = 0; i < n; i++) {
        obj_t *o = bd_hmap_get(p->objs, names[i]);
        if (o == NULL || o->reason == NULL)
            continue;
        char *now = xcat(p, o->reason, o->ready ? "\n1\n" : "\n0\n", o->message ? o->message : "");
        if (now != NULL && (o->reported == NULL || strcmp(now, o->reported) != 0)) {
            strv_add(p, &out->statuses, xstrdup(p, names[i]));
            free(o->reported);
            o->reported = now;
        } else {
            free(now);
        }
    }
    free(names);
    bd_hmap_clear(p->status_dirty);
    if (p->oom) {
        proj_changes_deinit(out);
        return BD_ENOMEM;
    }
    return BD_OK;
}

/* ---- queries ---------------------------------------------------------------------- */

uint64_t proj_seq(const proj_t *p) { return p->seq; }

const proj_zone_t **proj_zones(const proj_t *p, size_t *n)
{
    proj_t *mp = (proj_t *)p; /* the cache is not part of the observable state */
    free(mp->zone_list);
    mp->zone_list = NULL;
    mp->nzone_list = 0;
    size_t nk = 0;
    const char **names = bd_hmap_keys_sorted(p->zones, &nk);
    if (nk > 0 && names == NULL) {
        *n = 0;
        return NULL;
    }
    mp->zone_list = calloc(nk ? nk : 1, sizeof(*mp->zone_list));
    for (size_t i = 0; mp->zone_list && i < nk; i++)
        mp->zone_list[mp->nzone_list++] = bd_hmap_get(p->zones, names[i]);
    free(names);
    *n = mp->nzone_list;
    return mp->zone_list;
}

const proj_zone_t *proj_zone_get(const proj_t *p, const char *name) { return bd_hmap_get(p->zones, name); }
const char *proj_zone_name(const proj_zone_t *z) { return z->name; }
bool proj_zone_is_catalog(const proj_zone_t *z) { return z->catalog; }
uint32_t proj_zone_serial(const proj_zone_t *z) { return z->serial; }
const res_strv_t *proj_zone_instances(const proj_zone_t *z) { return &z->instances; }

static char *soa_text(proj_t *p, const proj_zone_t *z, uint32_t serial)
{
    if (z->catalog)
        return xfmt(p, "%s 0 IN SOA invalid. invalid. %u 3600 600 2147483646 0", z->origin, serial);
    const res_zone_t *spec = &z->obj->res->u.zone;
    char *mname = target_of(p, z, spec->primary_ns), *rname = soa_rname(p, spec->admin_email);
    char *s = mname && rname ? xfmt(p, "%s %d IN SOA %s %s %u %d %d %d %d", z->origin, spec->ttl, mname, rname,
                                    serial, spec->refresh, spec->retry, spec->expire, spec->negative_ttl)
                             : NULL;
    free(mname);
    free(rname);
    return s;
}

int proj_zone_soa(const proj_zone_t *z, char **out)
{
    proj_t scratch = {0};
    *out = soa_text(&scratch, z, z->serial);
    return *out ? BD_OK : BD_ENOMEM;
}

int proj_zone_rrs(const proj_zone_t *z, res_strv_t *out)
{
    proj_t scratch = {0};
    memset(out, 0, sizeof(*out));
    size_t pos = 0;
    owner_t *ow;
    while (bd_hmap_next(z->owners, &pos, NULL, (void **)&ow))
        for (size_t i = 0; i < ow->rrs.n; i++)
            strv_add(&scratch, out, xstrdup(&scratch, ow->rrs.v[i]));
    strv_sort_unique(out);
    if (scratch.oom) {
        res_strv_deinit(out);
        return BD_ENOMEM;
    }
    return BD_OK;
}

const res_t *proj_resource(const proj_t *p, const char *kind, const char *ns, const char *name)
{
    char key[1024];
    snprintf(key, sizeof(key), "%s/%s/%s", kind, ns, name);
    const obj_t *o = bd_hmap_get(p->objs, key);
    return o && !o->deleted ? o->res : NULL;
}

const proj_instance_t **proj_instances(const proj_t *p, size_t *n)
{
    *n = p->ninstances;
    return (const proj_instance_t **)p->instances;
}

int proj_digest(const proj_t *p, char out[65])
{
    out[0] = '\0';
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return BD_ENOMEM;
    }
    int rc = BD_OK;
    proj_t scratch = {0};
    size_t nz = 0;
    const proj_zone_t **zones = proj_zones(p, &nz);
    for (size_t i = 0; i < nz; i++) {
        char *soa = soa_text(&scratch, zones[i], 0); /* serials depend on history, not content */
        res_strv_t rrs;
        if (soa == NULL || proj_zone_rrs(zones[i], &rrs) != BD_OK) {
            free(soa);
            rc = BD_ENOMEM;
            break;
        }
        EVP_DigestUpdate(md, soa, strlen(soa) + 1);
        for (size_t k = 0; k < rrs.n; k++)
            EVP_DigestUpdate(md, rrs.v[k], strlen(rrs.v[k]) + 1);
        for (size_t k = 0; k < zones[i]->instances.n; k++)
            EVP_DigestUpdate(md, zones[i]->instances.v[k], strlen(zones[i]->instances.v[k]) + 1);
        res_strv_deinit(&rrs);
        free(soa);
    }
    for (size_t i = 0; rc == BD_OK && i < p->ninstances; i++) {
        const proj_instance_t *in = p->instances[i];
        char head[512];
        snprintf(head, sizeof(head), "%s|%s|%d|%d", in->key, in->catalog, (int)in->res->u.instance.role,
                 in->res->u.instance.replicas);
        EVP_DigestUpdate(md, head, strlen(head) + 1);
        for (size_t k = 0; k < in->zones.n; k++)
            EVP_DigestUpdate(md, in->zones.v[k], strlen(in->zones.v[k]) + 1);
        for (size_t k = 0; k < in->upstream.n; k++)
            EVP_DigestUpdate(md, in->upstream.v[k], strlen(in->upstream.v[k]) + 1);
    }
    unsigned char h[32];
    unsigned int hl = 0;
    if (rc == BD_OK && EVP_DigestFinal_ex(md, h, &hl) == 1) {
        for (unsigned i = 0; i < hl; i++)
            sprintf(out + 2 * i, "%02x", h[i]);
    } else if (rc == BD_OK) {
        rc = BD_EINTERNAL;
    }
    EVP_MD_CTX_free(md);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------- */

int proj_new(const proj_opts_t *opts, proj_t **out, bd_err_t *err)
{
    *out = NULL;
    proj_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return bd_err_set(err, BD_ENOMEM, "projector: out of memory");
    int rc = val_catalog_new(&p->cat, err);
    if (rc != BD_OK) {
        free(p);
        return rc;
    }
    p->catalog_suffix = xstrdup(p, opts && opts->catalog_suffix ? opts->catalog_suffix : "catalog.bindy.invalid");
    p->objs = bd_hmap_new();
    p->zones = bd_hmap_new();
    p->floors = bd_hmap_new();
    p->pending = bd_hmap_new();
    p->touched = bd_hmap_new();
    p->inst_changed = bd_hmap_new();
    p->status_dirty = bd_hmap_new();
    p->zchanged = bd_hmap_new();
    p->zclaims = bd_hmap_new();
    p->rec_lbl = bd_hmap_new();
    p->rec_ns = bd_hmap_new();
    p->zsel_lbl = bd_hmap_new();
    p->zsel_any = bd_hmap_new();
    if (!p->zclaims || !p->rec_lbl || !p->rec_ns || !p->zsel_lbl || !p->zsel_any)
        p->oom = 1;
    if (p->oom || !p->objs || !p->zones || !p->floors || !p->pending || !p->touched || !p->inst_changed ||
        !p->status_dirty || !p->zchanged) {
        proj_free(p);
        return bd_err_set(err, BD_ENOMEM, "projector: out of memory");
    }
    *out = p;
    return BD_OK;
}

void proj_free(proj_t *p)
{
    if (p == NULL)
        return;
    size_t pos = 0;
    void *v;
    if (p->zones) {
        /* zones first: clearing them touches objects */
        proj_zone_t *z;
        while (bd_hmap_next(p->zones, &pos, NULL, (void **)&z)) {
            owner_t *ow;
            size_t op = 0;
            while (bd_hmap_next(z->owners, &op, NULL, (void **)&ow))
                owner_free(ow);
            zone_free(z);
        }
    }
    pos = 0;
    while (p->objs && bd_hmap_next(p->objs, &pos, NULL, &v))
        obj_free(v);
    pos = 0;
    while (p->pending && bd_hmap_next(p->pending, &pos, NULL, &v))
        pend_free(v);
    for (size_t i = 0; i < p->ninstances; i++)
        instance_free(p->instances[i]);
    free(p->instances);
    free(p->zone_list);
    bd_hmap_free(p->objs);
    bd_hmap_free(p->zones);
    bd_hmap_free(p->floors);
    bd_hmap_free(p->pending);
    bd_hmap_free(p->touched);
    bd_hmap_free(p->inst_changed);
    bd_hmap_free(p->status_dirty);
    bd_hmap_free(p->zchanged);
    idx_free(p->zclaims);
    idx_free(p->rec_lbl);
    idx_free(p->rec_ns);
    idx_free(p->zsel_lbl);
    idx_free(p->zsel_any);
    val_catalog_free(p->cat);
    free(p->catalog_suffix);
    free(p);
}
