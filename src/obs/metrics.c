/*
 * metrics.c - the metrics registry and its Prometheus text exposition (format 0.0.4).
 *
 * Values are atomics (a gauge and a histogram's _sum hold a double's bits in a
 * uint64_t); the structure (families, series) changes only under the registry mutex,
 * which rendering holds too. Families and series are kept sorted as they are inserted,
 * so rendering walks them in output order.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs.h"

struct obs_series {
    obs_family_t *fam;
    char *lv[OBS_LABELS_MAX];
    _Atomic uint64_t v;        /* counter: count; gauge: double bits */
    _Atomic uint64_t sum;      /* histogram: double bits */
    _Atomic uint64_t *buckets; /* histogram: nbounds + 1 non-cumulative counts (last: > top) */
};

struct obs_family {
    obs_reg_t *reg;
    char *name, *help;
    obs_type_t type;
    size_t nlabels;
    char *labels[OBS_LABELS_MAX];
    double *bounds;
    size_t nbounds;
    obs_series_t **series; /* sorted by label values */
    size_t nseries, cap;
};

struct obs_reg {
    pthread_mutex_t mu;
    obs_family_t **fams; /* sorted by name */
    size_t nfams, cap;
};

/* ---- doubles in atomics -------------------------------------------------------------- */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- registry ------------------------------------------------------------------------ */

int obs_reg_new(obs_reg_t **out)
{
    *out = NULL;
    obs_reg_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return BD_ENOMEM;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return BD_ENOMEM;
    }
    *out = r;
    return BD_OK;
}

static void series_free(obs_series_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < OBS_LABELS_MAX; i++)
        free(s->lv[i]);
    free(s->buckets);
    free(s);
}

static void family_free(obs_family_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i]);
    free(f->series);
    for (size_t i = 0; i < OBS_LABELS_MAX; i++)
        free(f->labels[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void obs_reg_free(obs_reg_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nfams; i++)
        family_free(r->fams[i]);
    free(r->fams);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static bool valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Index of name in r->fams, or where it would go (*found false). Mutex held. */
static size_t fam_pos(const obs_reg_t *r, const char *name, bool *found)
{
    size_t lo = 0, hi = r->nfams;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->fams[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static obs_series_t *series_new(obs_family_t *f, const char *const *lv)
{
    obs_series_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->fam = f;
    atomic_init(&s->v, f->type == OBS_GAUGE ? d2u(0.0) : 0);
    atomic_init(&s->sum, d2u(0.0));
    for (size_t i = 0; i < f->nlabels; i++) {
        if ((s->lv[i] = strdup(lv[i])) == NULL)
            goto fail;
    }
    if (f->type == OBS_HISTOGRAM) {
        s->buckets = malloc((f->nbounds + 1) * sizeof(*s->buckets));
        if (s->buckets == NULL)
            goto fail;
        for (size_t i = 0; i <= f->nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    return s;
fail:
    series_free(s);
    return NULL;
}

int obs_reg_add(obs_reg_t *r, const char *name, const char *help, obs_type_t type,
                const char *const *labels, size_t nlabels, const double *bounds,
                size_t nbounds, obs_family_t **out)
{
    if (out)
        *out = NULL;
    if (r == NULL || !valid_name(name, true) || nlabels > OBS_LABELS_MAX ||
        (nlabels > 0 && labels == NULL) ||
        (type != OBS_COUNTER && type != OBS_GAUGE && type != OBS_HISTOGRAM))
        return BD_EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0 ||
            (type == OBS_HISTOGRAM && strcmp(labels[i], "le") == 0))
            return BD_EINVAL;
        for (size_t k = 0; k < i; k++)
            if (strcmp(labels[k], labels[i]) == 0)
                return BD_EINVAL;
    }
    if (type == OBS_HISTOGRAM) {
        if (bounds == NULL || nbounds == 0 || nbounds > OBS_BUCKETS_MAX)
            return BD_EINVAL;
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return BD_EINVAL;
    } else if (nbounds != 0) {
        return BD_EINVAL;
    }

    int rc = BD_ENOMEM;
    obs_family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return BD_ENOMEM;
    f->reg = r;
    f->type = type;
    f->nlabels = nlabels;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto fail;
    for (size_t i = 0; i < nlabels; i++)
        if ((f->labels[i] = strdup(labels[i])) == NULL)
            goto fail;
    if (type == OBS_HISTOGRAM) {
        if ((f->bounds = malloc(nbounds * sizeof(*f->bounds))) == NULL)
            goto fail;
        memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
        f->nbounds = nbounds;
    }
    if (nlabels == 0) {
        f->series = malloc(sizeof(*f->series));
        if (f->series == NULL || (f->series[0] = series_new(f, NULL)) == NULL)
            goto fail;
        f->nseries = f->cap = 1;
    }

    pthread_mutex_lock(&r->mu);
    bool found;
    size_t pos = fam_pos(r, name, &found);
    if (found) {
        rc = BD_EEXISTS;
    } else if (r->nfams == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        obs_family_t **nf = realloc(r->fams, ncap * sizeof(*nf));
        if (nf) {
            r->fams = nf;
            r->cap = ncap;
        }
    }
    if (!found && r->nfams < r->cap) {
        memmove(&r->fams[pos + 1], &r->fams[pos], (r->nfams - pos) * sizeof(*r->fams));
        r->fams[pos] = f;
        r->nfams++;
        rc = BD_OK;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc != BD_OK)
        goto fail;
    if (out)
        *out = f;
    return BD_OK;
fail:
    family_free(f);
    return rc;
}

obs_family_t *obs_reg_find(obs_reg_t *r, const char *name)
{
    if (r == NULL || name == NULL)
        return NULL;
    pthread_mutex_lock(&r->mu);
    bool found;
    size_t pos = fam_pos(r, name, &found);
    obs_family_t *f = found ? r->fams[pos] : NULL;
    pthread_mutex_unlock(&r->mu);
    return f;
}

static int lv_cmp(const obs_family_t *f, char *const *a, const char *const *b)
{
    for (size_t i = 0; i < f->nlabels; i++) {
        int c = strcmp(a[i], b[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

obs_series_t *obs_series(obs_family_t *f, const char *v1, const char *v2)
{
    if (f == NULL)
        return NULL;
    const char *lv[OBS_LABELS_MAX] = {v1, v2};
    for (size_t i = 0; i < f->nlabels; i++)
        if (lv[i] == NULL || strlen(lv[i]) > OBS_LABEL_VALUE_MAX)
            return NULL;
    if (f->nlabels == 0)
        return f->series[0]; /* never changes after obs_reg_add */

    obs_series_t *s = NULL;
    pthread_mutex_lock(&f->reg->mu);
    size_t lo = 0, hi = f->nseries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = lv_cmp(f, f->series[mid]->lv, lv);
        if (c == 0) {
            s = f->series[mid];
            goto out;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (f->nseries >= OBS_SERIES_MAX)
        goto out;
    if (f->nseries == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 8;
        obs_series_t **ns = realloc(f->series, ncap * sizeof(*ns));
        if (ns == NULL)
            goto out;
        f->series = ns;
        f->cap = ncap;
    }
    if ((s = series_new(f, lv)) == NULL)
        goto out;
    memmove(&f->series[lo + 1], &f->series[lo], (f->nseries - lo) * sizeof(*f->series));
    f->series[lo] = s;
    f->nseries++;
out:
    pthread_mutex_unlock(&f->reg->mu);
    return s;
}

/* ---- updates ------------------------------------------------------------------------- */

void obs_counter_add(obs_series_t *s, uint64_t n)
{
    if (s == NULL)
        return;
    assert(s->fam->type == OBS_COUNTER);
    if (s->fam->type == OBS_COUNTER)
        atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

void obs_gauge_set(obs_series_t *s, double v)
{
    if (s == NULL)
        return;
    assert(s->fam->type == OBS_GAUGE);
    if (s->fam->type == OBS_GAUGE)
        atomic_store_explicit(&s->v, d2u(v), memory_order_relaxed);
}

void obs_hist_observe(obs_series_t *s, double v)
{
    if (s == NULL)
        return;
    const obs_family_t *f = s->fam;
    assert(f->type == OBS_HISTOGRAM);
    if (f->type != OBS_HISTOGRAM)
        return;
    size_t lo = 0, hi = f->nbounds; /* first bound >= v; NaN lands in +Inf only */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(v))
        lo = f->nbounds;
    atomic_add_double(&s->sum, v);
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
}

double obs_series_value(const obs_series_t *s)
{
    if (s == NULL)
        return 0;
    obs_series_t *m = (obs_series_t *)s; /* atomic_load wants a non-const pointer in C11 */
    switch (s->fam->type) {
    case OBS_COUNTER:
        return (double)atomic_load_explicit(&m->v, memory_order_relaxed);
    case OBS_GAUGE:
        return u2d(atomic_load_explicit(&m->v, memory_order_relaxed));
    default:
        return 0;
    }
}

/* ---- exposition ---------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int ret; /* sticky: BD_ENOMEM after the first failure */
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->ret != BD_OK)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->ret = BD_ENOMEM;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->ret = b->ret ? b->ret : BD_EINTERNAL;
        return;
    }
    buf_put(b, tmp, (size_t)n);
}

/* HELP text escapes backslash and newline; label values also escape the double quote. */
static void buf_escaped(buf_t *b, const char *s, bool quote)
{
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (quote && *p == '"')
            rep = "\\\"";
        if (rep) {
            buf_put(b, run, (size_t)(p - run));
            buf_str(b, rep);
            run = p + 1;
        }
    }
    buf_str(b, run);
}

/* Shortest %g that reads back as the same double; Go's spellings for the specials. */
static void fmt_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void buf_labels(buf_t *b, const obs_series_t *s, const char *le)
{
    const obs_family_t *f = s->fam;
    if (f->nlabels == 0 && le == NULL)
        return;
    buf_str(b, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0)
            buf_str(b, ",");
        buf_str(b, f->labels[i]);
        buf_str(b, "=\"");
        buf_escaped(b, s->lv[i], true);
        buf_str(b, "\"");
    }
    if (le) {
        buf_str(b, f->nlabels ? ",le=\"" : "le=\"");
        buf_str(b, le);
        buf_str(b, "\"");
    }
    buf_str(b, "}");
}

static const char *type_name(obs_type_t t)
{
    return t == OBS_COUNTER ? "counter" : t == OBS_GAUGE ? "gauge" : "histogram";
}

static void render_series(buf_t *b, obs_series_t *s)
{
    const obs_family_t *f = s->fam;
    char num[64];
    if (f->type == OBS_COUNTER) {
        buf_str(b, f->name);
        buf_labels(b, s, NULL);
        buf_printf(b, " %llu\n",
                   (unsigned long long)atomic_load_explicit(&s->v, memory_order_relaxed));
        return;
    }
    if (f->type == OBS_GAUGE) {
        fmt_double(num, sizeof(num), u2d(atomic_load_explicit(&s->v, memory_order_relaxed)));
        buf_str(b, f->name);
        buf_labels(b, s, NULL);
        buf_printf(b, " %s\n", num);
        return;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < f->nbounds)
            fmt_double(num, sizeof(num), f->bounds[i]);
        else
            snprintf(num, sizeof(num), "+Inf");
        buf_str(b, f->name);
        buf_str(b, "_bucket");
        buf_labels(b, s, num);
        buf_printf(b, " %llu\n", (unsigned long long)cum);
    }
    fmt_double(num, sizeof(num), u2d(atomic_load_explicit(&s->sum, memory_order_relaxed)));
    buf_str(b, f->name);
    buf_str(b, "_sum");
    buf_labels(b, s, NULL);
    buf_printf(b, " %s\n", num);
    buf_str(b, f->name);
    buf_str(b, "_count");
    buf_labels(b, s, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)cum); /* equals +Inf by construction */
}

int obs_reg_render(obs_reg_t *r, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    if (r == NULL)
        return BD_EINVAL;
    buf_t b = {0};
    buf_put(&b, "", 0); /* an empty registry still yields "" */
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nfams; i++) {
        obs_family_t *f = r->fams[i];
        buf_str(&b, "# HELP ");
        buf_str(&b, f->name);
        buf_str(&b, " ");
        buf_escaped(&b, f->help, false);
        buf_str(&b, "\n# TYPE ");
        buf_str(&b, f->name);
        buf_str(&b, " ");
        buf_str(&b, type_name(f->type));
        buf_str(&b, "\n");
        for (size_t k = 0; k < f->nseries; k++)
            render_series(&b, f->series[k]);
    }
    pthread_mutex_unlock(&r->mu);
    if (b.ret != BD_OK) {
        free(b.p);
        return b.ret;
    }
    *text = b.p;
    if (len)
        *len = b.len;
    return BD_OK;
}
