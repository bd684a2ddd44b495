/*
 * zonedb.c - the zones bindy serves, in memory. See zonedb.h for the contract.
 *
 * Layout:
 *   bind_zonedb_t  - a red-black tree (ldns_rbtree) of zones keyed by canonical apex.
 *   zone_t         - SOA entry, a red-black tree of RRsets keyed by (owner, type), and a
 *                    FIFO of diffs (oldest first) for IXFR.
 *   rrset_t        - the entries of one (owner, type), sorted by canonical rdata.
 *   entry_t        - one RR: a reference-counted ldns_rr plus its canonical wire form
 *                    (RFC 4034 section 6.2), used for every comparison. Entries are shared
 *                    by the zone, the diffs that mention them and transfers in progress.
 *
 * bind_zonedb_apply runs in two phases so that it is all or nothing without an undo log:
 * phase 1 allocates everything the change needs (new entries, new RRset nodes, array
 * capacity, the diff) and checks it against the zone without touching it; phase 2 then
 * changes the zone and cannot fail.
 */
#include "zonedb.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "sort.h"

#define NAME_TEXT_MAX 1024 /* longest name text accepted (escapes make names long) */

/* ---- entries ---- */

typedef struct entry {
    uint32_t refs;
    uint32_t wlen;      /* bytes of wire */
    uint32_t owner_len; /* bytes of the owner at the start of wire */
    ldns_rr *rr;        /* owner lower-cased */
    uint8_t wire[];     /* canonical wire: owner, type, class, ttl, rdlength, rdata */
} entry_t;

static const uint8_t *entry_rdata(const entry_t *e, size_t *len)
{
    *len = e->wlen - e->owner_len - 10;
    return e->wire + e->owner_len + 10;
}

static void entry_unref(entry_t *e)
{
    if (e == NULL || --e->refs > 0)
        return;
    ldns_rr_free(e->rr);
    free(e);
}

static entry_t *entry_ref(entry_t *e)
{
    e->refs++;
    return e;
}

/* New entry (refs 1) from a copy of src. serial: when not NULL, the RR is an SOA whose
 * serial is replaced. Returns NULL on allocation failure or an RR ldns cannot encode. */
static entry_t *entry_new(const ldns_rr *src, const uint32_t *serial)
{
    ldns_rr *rr = ldns_rr_clone(src);
    ldns_buffer *buf = NULL;
    entry_t *e = NULL;

    if (rr == NULL)
        goto cleanup;
    ldns_dname2canonical(ldns_rr_owner(rr));
    if (serial != NULL) {
        ldns_rdf *s = ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, *serial);
        if (s == NULL || ldns_rr_rd_count(rr) < 3) {
            ldns_rdf_deep_free(s);
            goto cleanup;
        }
        ldns_rdf_deep_free(ldns_rr_set_rdf(rr, s, 2));
    }
    buf = ldns_buffer_new(256);
    if (buf == NULL)
        goto cleanup;
    if (ldns_rr2buffer_wire_canonical(buf, rr, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK ||
        !ldns_buffer_status_ok(buf))
        goto cleanup;
    size_t wlen = ldns_buffer_position(buf);
    size_t olen = ldns_rdf_size(ldns_rr_owner(rr));
    if (wlen < olen + 10 || wlen > UINT32_MAX)
        goto cleanup;
    e = malloc(sizeof(*e) + wlen);
    if (e == NULL)
        goto cleanup;
    e->refs = 1;
    e->wlen = (uint32_t)wlen;
    e->owner_len = (uint32_t)olen;
    e->rr = rr;
    memcpy(e->wire, ldns_buffer_begin(buf), wlen);
    rr = NULL;
cleanup:
    ldns_rr_free(rr);
    ldns_buffer_free(buf);
    return e;
}

/* RFC 4034 order of two rdata: octet strings, a missing octet sorts first. */
static int rdata_cmp(const entry_t *a, const entry_t *b)
{
    size_t la, lb;
    const uint8_t *ra = entry_rdata(a, &la), *rb = entry_rdata(b, &lb);
    int c = memcmp(ra, rb, la < lb ? la : lb);
    if (c != 0)
        return c;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

/* Whole canonical wire, TTL included: identity for condensing IXFR diffs. */
static int entry_cmp_full(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int c = memcmp(x->wire, y->wire, x->wlen < y->wlen ? x->wlen : y->wlen);
    if (c != 0)
        return c;
    return x->wlen < y->wlen ? -1 : x->wlen > y->wlen ? 1 : 0;
}

/* ---- RRsets ---- */

typedef struct rrset_key {
    ldns_rdf *owner; /* canonical */
    uint16_t type;
    uint64_t *ops; /* the db's work counter */
    uint8_t *ck;   /* owner in an encoding whose memcmp order is the canonical order */
    size_t cklen;
} rrset_key_t;

#define CK_MAX (2 * LDNS_MAX_DOMAINLEN + 2)

/* The owner's labels from the last to the first, each lower-cased and ended by 0x00, its
 * bytes 0x00 and 0x01 escaped as 0x01 0x01 and 0x01 0x02: memcmp then orders names as
 * RFC 4034 6.1 (ldns_dname_compare) does, a label before the labels it is a prefix of,
 * a name before its subdomains, without walking labels on every comparison of the
 * tree. out: CK_MAX bytes. Returns the length. */
static size_t canon_key(const ldns_rdf *dname, uint8_t *out)
{
    const uint8_t *d = ldns_rdf_data(dname);
    size_t n = ldns_rdf_size(dname), starts[LDNS_MAX_DOMAINLEN / 2 + 1], nl = 0, len = 0;
    for (size_t p = 0; p < n && d[p] != 0 && nl < sizeof(starts) / sizeof(*starts); p += 1 + d[p])
        starts[nl++] = p;
    while (nl-- > 0) {
        const uint8_t *l = d + starts[nl];
        for (size_t i = 1; i <= l[0] && len + 3 <= CK_MAX; i++) {
            uint8_t c = LDNS_DNAME_NORMALIZE(l[i]);
            if (c <= 1) {
                out[len++] = 1;
                out[len++] = (uint8_t)(c + 1);
            } else {
                out[len++] = c;
            }
        }
        if (len < CK_MAX)
            out[len++] = 0;
    }
    return len;
}

static int rrset_key_cmp(const void *a, const void *b)
{
    const rrset_key_t *x = a, *y = b;
    (*x->ops)++;
    int c = memcmp(x->ck, y->ck, x->cklen < y->cklen ? x->cklen : y->cklen);
    if (c != 0)
        return c;
    if (x->cklen != y->cklen)
        return x->cklen < y->cklen ? -1 : 1;
    return x->type < y->type ? -1 : x->type > y->type ? 1 : 0;
}

typedef struct rrset {
    ldns_rbnode_t node; /* first; node.key = &key */
    rrset_key_t key;
    entry_t **rrs; /* sorted by rdata_cmp */
    size_t n, cap;
} rrset_t;

static rrset_t *rrset_new(const entry_t *first, uint64_t *ops, size_t cap)
{
    rrset_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    uint8_t ck[CK_MAX];
    s->key.owner = ldns_rdf_clone(ldns_rr_owner(first->rr));
    s->key.type = ldns_rr_get_type(first->rr);
    s->key.ops = ops;
    s->key.cklen = s->key.owner ? canon_key(s->key.owner, ck) : 0;
    s->key.ck = malloc(s->key.cklen ? s->key.cklen : 1);
    s->rrs = calloc(cap ? cap : 1, sizeof(*s->rrs));
    s->cap = cap ? cap : 1;
    if (s->key.owner == NULL || s->key.ck == NULL || s->rrs == NULL) {
        ldns_rdf_deep_free(s->key.owner);
        free(s->key.ck);
        free(s->rrs);
        free(s);
        return NULL;
    }
    memcpy(s->key.ck, ck, s->key.cklen);
    s->node.key = &s->key;
    return s;
}

static void rrset_free(rrset_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_unref(s->rrs[i]);
    free(s->rrs);
    ldns_rdf_deep_free(s->key.owner);
    free(s->key.ck);
    free(s);
}

/* Index of the first element >= e (by rdata); *found when equal. */
static size_t rrset_pos(const rrset_t *s, const entry_t *e, bool *found, uint64_t *ops)
{
    size_t lo = 0, hi = s->n;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        (*ops)++;
        int c = rdata_cmp(s->rrs[mid], e);
        if (c < 0) {
            lo = mid + 1;
        } else {
            if (c == 0)
                *found = true;
            hi = mid;
        }
    }
    return lo;
}

static int rrset_reserve(rrset_t *s, size_t extra)
{
    if (s->n + extra <= s->cap)
        return BD_OK;
    size_t cap = s->cap * 2;
    if (cap < s->n + extra)
        cap = s->n + extra;
    entry_t **p = realloc(s->rrs, cap * sizeof(*p));
    if (p == NULL)
        return BD_ENOMEM;
    s->rrs = p;
    s->cap = cap;
    return BD_OK;
}

/* ---- diffs and zones ---- */

typedef struct diff {
    struct diff *next; /* newer */
    uint32_t from, to;
    entry_t *old_soa, *new_soa;
    entry_t **rm, **add;
    size_t nrm, nadd;
    size_t bytes;
} diff_t;

static void diff_free(diff_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nrm; i++)
        entry_unref(d->rm[i]);
    for (size_t i = 0; i < d->nadd; i++)
        entry_unref(d->add[i]);
    entry_unref(d->old_soa);
    entry_unref(d->new_soa);
    free(d->rm);
    free(d->add);
    free(d);
}

typedef struct zone {
    ldns_rbnode_t node; /* first; node.key = apex */
    ldns_rdf *apex;     /* canonical */
    char *name;         /* canonical text */
    entry_t *soa;
    uint32_t serial;
    ldns_rbtree_t rrsets;
    size_t nrr; /* RRs in rrsets (the SOA is not there) */
    diff_t *hist_head, *hist_tail;
    size_t hist_n, hist_bytes;
} zone_t;

typedef struct hook {
    bind_zonedb_hook_fn fn;
    void *arg;
} hook_t;

struct bind_zonedb {
    ldns_rbtree_t zones;
    size_t max_hist, max_hist_bytes;
    hook_t hooks[BIND_ZONEDB_MAX_HOOKS];
    size_t nhooks;
    int in_hooks;
    uint64_t ops;
};

static void rrset_free_node(ldns_rbnode_t *n, void *arg)
{
    rrset_free((rrset_t *)n);
}

static void hist_clear(zone_t *z)
{
    while (z->hist_head != NULL) {
        diff_t *d = z->hist_head;
        z->hist_head = d->next;
        diff_free(d);
    }
    z->hist_tail = NULL;
    z->hist_n = 0;
    z->hist_bytes = 0;
}

static void zone_free(zone_t *z)
{
    if (z == NULL)
        return;
    ldns_traverse_postorder(&z->rrsets, rrset_free_node, NULL);
    hist_clear(z);
    entry_unref(z->soa);
    ldns_rdf_deep_free(z->apex);
    free(z->name);
    free(z);
}

static void zone_free_node(ldns_rbnode_t *n, void *arg)
{
    zone_free((zone_t *)n);
}

/* ---- names ---- */

/* Canonical absolute dname rdf for name text (any case, final dot optional). */
static ldns_rdf *name_rdf(const char *name)
{
    if (name == NULL || *name == '\0' || strlen(name) >= NAME_TEXT_MAX)
        return NULL;
    ldns_rdf *r = ldns_dname_new_frm_str(name);
    if (r != NULL)
        ldns_dname2canonical(r);
    return r;
}

int bind_zonedb_canon_name(const char *name, char *buf, size_t cap)
{
    ldns_rdf *r = name_rdf(name);
    char *s = NULL;
    int rc = BD_EINVAL;

    if (r == NULL)
        goto cleanup;
    s = ldns_rdf2str(r);
    if (s == NULL) {
        rc = BD_ENOMEM;
        goto cleanup;
    }
    if (strlen(s) >= cap) {
        rc = BD_ETOOBIG;
        goto cleanup;
    }
    memcpy(buf, s, strlen(s) + 1);
    rc = BD_OK;
cleanup:
    free(s);
    ldns_rdf_deep_free(r);
    return rc;
}

static zone_t *zone_find(const bind_zonedb_t *db, const ldns_rdf *apex)
{
    ldns_rbnode_t *n = ldns_rbtree_search((ldns_rbtree_t *)&db->zones, apex);
    return n == NULL ? NULL : (zone_t *)n;
}

static zone_t *zone_find_str(const bind_zonedb_t *db, const char *zone)
{
    ldns_rdf *apex = name_rdf(zone);
    zone_t *z = apex == NULL ? NULL : zone_find(db, apex);
    ldns_rdf_deep_free(apex);
    return z;
}

/* ---- public: basics ---- */

bool bind_zonedb_serial_gt(uint32_t a, uint32_t b)
{
    uint32_t d = a - b; /* unsigned: wraps by definition */
    return d != 0 && d < 0x80000000u;
}

int bind_zonedb_new(bind_zonedb_t **out, const bind_zonedb_config_t *cfg)
{
    *out = NULL;
    bind_zonedb_t *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return BD_ENOMEM;
    ldns_rbtree_init(&db->zones, ldns_dname_compare_v);
    db->max_hist = cfg && cfg->max_history ? cfg->max_history : BIND_ZONEDB_DEFAULT_HISTORY;
    db->max_hist_bytes =
        cfg && cfg->max_history_bytes ? cfg->max_history_bytes : BIND_ZONEDB_DEFAULT_HISTORY_BYTES;
    *out = db;
    return BD_OK;
}

void bind_zonedb_free(bind_zonedb_t *db)
{
    if (db == NULL)
        return;
    ldns_traverse_postorder(&db->zones, zone_free_node, NULL);
    free(db);
}

int bind_zonedb_add_hook(bind_zonedb_t *db, bind_zonedb_hook_fn fn, void *arg)
{
    for (size_t i = 0; i < db->nhooks; i++)
        if (db->hooks[i].fn == fn && db->hooks[i].arg == arg)
            return BD_EEXISTS;
    if (db->nhooks >= BIND_ZONEDB_MAX_HOOKS)
        return BD_EFULL;
    db->hooks[db->nhooks].fn = fn;
    db->hooks[db->nhooks].arg = arg;
    db->nhooks++;
    return BD_OK;
}

static void hooks_compact(bind_zonedb_t *db)
{
    size_t j = 0;
    for (size_t i = 0; i < db->nhooks; i++)
        if (db->hooks[i].fn != NULL)
            db->hooks[j++] = db->hooks[i];
    db->nhooks = j;
}

int bind_zonedb_remove_hook(bind_zonedb_t *db, bind_zonedb_hook_fn fn, void *arg)
{
    for (size_t i = 0; i < db->nhooks; i++) {
        if (db->hooks[i].fn == fn && db->hooks[i].arg == arg) {
            db->hooks[i].fn = NULL; /* tombstone while hooks run */
            if (!db->in_hooks)
                hooks_compact(db);
            return BD_OK;
        }
    }
    return BD_ENOTFOUND;
}

static void run_hooks(bind_zonedb_t *db, const char *zone, uint32_t serial,
                      bind_zonedb_event_t ev)
{
    db->in_hooks++;
    for (size_t i = 0; i < db->nhooks; i++)
        if (db->hooks[i].fn != NULL)
            db->hooks[i].fn(db->hooks[i].arg, zone, serial, ev);
    if (--db->in_hooks == 0)
        hooks_compact(db);
}

/* ---- apply ---- */

static const char *type_name(uint16_t type, char *buf, size_t cap)
{
    const ldns_rr_descriptor *d = ldns_rr_descript(type);
    if (d != NULL && d->_name != NULL)
        snprintf(buf, cap, "%s", d->_name);
    else
        snprintf(buf, cap, "TYPE%u", (unsigned)type);
    return buf;
}

static int rr_err(bd_err_t *err, int code, const char *zone, const ldns_rr *rr, const char *what)
{
    char *owner = rr ? ldns_rdf2str(ldns_rr_owner(rr)) : NULL;
    char tbuf[32];
    bd_err_set(err, code, "zone %s: %s %s: %s", zone, owner ? owner : "?",
               rr ? type_name(ldns_rr_get_type(rr), tbuf, sizeof(tbuf)) : "?", what);
    free(owner);
    return code;
}

/* Is name the apex (canonical: lower case) or below it? A suffix of its wire form at a
 * label boundary, ASCII letters compared without case (RFC 4343): what
 * ldns_dname_compare and ldns_dname_is_subdomain decide, at a hundredth of their cost,
 * which was 4 % of loading 10,000 records. */
static bool at_or_below(const ldns_rdf *name, const ldns_rdf *apex)
{
    const uint8_t *n = ldns_rdf_data(name), *a = ldns_rdf_data(apex);
    size_t nl = ldns_rdf_size(name), al = ldns_rdf_size(apex);
    for (size_t i = 0; i < nl && nl - i >= al; i += (size_t)n[i] + 1) {
        if (nl - i != al)
            continue;
        for (size_t k = 0; k < al; k++) {
            uint8_t c = n[i + k];
            if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != a[k])
                return false;
        }
        return true;
    }
    return false;
}

/* Checks common to every RR of a diff. */
static int rr_check(const ldns_rr *rr, const ldns_rdf *apex, const char *zone, bd_err_t *err)
{
    if (rr == NULL || ldns_rr_owner(rr) == NULL)
        return bd_err_set(err, BD_EINVAL, "zone %s: empty RR", zone);
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
        return rr_err(err, BD_EINVAL, zone, rr, "class is not IN");
    switch (ldns_rr_get_type(rr)) {
    case LDNS_RR_TYPE_OPT:
    case LDNS_RR_TYPE_TSIG:
    case LDNS_RR_TYPE_TKEY:
    case LDNS_RR_TYPE_IXFR:
    case LDNS_RR_TYPE_AXFR:
    case LDNS_RR_TYPE_MAILA:
    case LDNS_RR_TYPE_MAILB:
    case LDNS_RR_TYPE_ANY:
        return rr_err(err, BD_EINVAL, zone, rr, "meta type cannot be in a zone");
    default:
        break;
    }
    const ldns_rdf *owner = ldns_rr_owner(rr);
    if (!at_or_below(owner, apex))
        return rr_err(err, BD_EINVAL, zone, rr, "owner is outside the zone");
    if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_dname_compare(owner, apex) != 0)
        return rr_err(err, BD_EINVAL, zone, rr, "SOA below the apex");
    return BD_OK;
}

static rrset_t *rrset_find(zone_t *z, const ldns_rdf *owner, uint16_t type, uint64_t *ops)
{
    uint8_t ck[CK_MAX];
    rrset_key_t k = {(ldns_rdf *)owner, type, ops, ck, canon_key(owner, ck)};
    ldns_rbnode_t *n = ldns_rbtree_search(&z->rrsets, &k);
    return n == NULL ? NULL : (rrset_t *)n;
}

/* One RR of a diff during apply. */
typedef struct op {
    entry_t *e;   /* added: the new entry; removed: a probe */
    rrset_t *set; /* the RRset it goes to / comes from (maybe pre-allocated) */
    bool new_set; /* set was allocated here and is not in the tree yet */
} op_t;

static void ops_free(op_t *ops, size_t n)
{
    if (ops == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        entry_unref(ops[i].e);
    free(ops);
}

static bool same_owner(const entry_t *a, const entry_t *b)
{
    return a->owner_len == b->owner_len && memcmp(a->wire, b->wire, a->owner_len) == 0;
}

/* The order a diff's RRs are sorted in, so that one RRset's are adjacent and duplicates
 * meet: owner (its canonical wire: lower case, uncompressed), type, rdata. Not the
 * canonical order (the tree keeps that), and cheaper than ldns_dname_compare. */
static int op_cmp(const void *a, const void *b)
{
    const entry_t *x = ((const op_t *)a)->e, *y = ((const op_t *)b)->e;
    if (!same_owner(x, y)) {
        int c = memcmp(x->wire, y->wire, x->owner_len < y->owner_len ? x->owner_len : y->owner_len);
        return c != 0 ? c : x->owner_len < y->owner_len ? -1 : 1;
    }
    uint16_t ta = ldns_rr_get_type(x->rr), tb = ldns_rr_get_type(y->rr);
    if (ta != tb)
        return ta < tb ? -1 : 1;
    return rdata_cmp(x, y);
}

/* Insert e into s at its place (capacity reserved beforehand). */
static void rrset_insert_reserved(rrset_t *s, entry_t *e, uint64_t *ops)
{
    bool found;
    size_t pos = rrset_pos(s, e, &found, ops);
    memmove(&s->rrs[pos + 1], &s->rrs[pos], (s->n - pos) * sizeof(*s->rrs));
    *ops += s->n - pos;
    s->rrs[pos] = e;
    s->n++;
}

static void hist_append(bind_zonedb_t *db, zone_t *z, diff_t *d)
{
    if (d->bytes > db->max_hist_bytes) {
        /* Keeping older diffs is pointless: no chain from them can cross this one. */
        hist_clear(z);
        diff_free(d);
        return;
    }
    if (z->hist_tail != NULL)
        z->hist_tail->next = d;
    else
        z->hist_head = d;
    z->hist_tail = d;
    z->hist_n++;
    z->hist_bytes += d->bytes;
    while (z->hist_n > db->max_hist || z->hist_bytes > db->max_hist_bytes) {
        diff_t *old = z->hist_head;
        z->hist_head = old->next;
        if (z->hist_head == NULL)
            z->hist_tail = NULL;
        z->hist_n--;
        z->hist_bytes -= old->bytes;
        diff_free(old);
    }
}

static int zone_create(bind_zonedb_t *db, ldns_rdf **apexp, const char *zname,
                       const ldns_rr_list *added, uint32_t serial, bd_err_t *err)
{
    zone_t *z = NULL;
    const ldns_rr *soa = NULL;
    size_t n = added ? ldns_rr_list_rr_count(added) : 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(added, i);
        if ((rc = rr_check(rr, *apexp, zname, err)) != 0)
            return rc;
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA) {
            if (soa != NULL)
                return rr_err(err, BD_EINVAL, zname, rr, "second SOA");
            soa = rr;
        }
    }
    if (soa == NULL)
        return bd_err_set(err, BD_EINVAL, "zone %s: a new zone needs an SOA", zname);

    z = calloc(1, sizeof(*z));
    if (z == NULL)
        return bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", zname);
    ldns_rbtree_init(&z->rrsets, rrset_key_cmp);
    z->apex = *apexp;
    *apexp = NULL;
    z->node.key = z->apex;
    z->name = ldns_rdf2str(z->apex);
    z->soa = entry_new(soa, &serial);
    z->serial = serial;
    if (z->name == NULL || z->soa == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", zname);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(added, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA)
            continue;
        entry_t *e = entry_new(rr, NULL);
        if (e == NULL) {
            rc = rr_err(err, BD_ENOMEM, zname, rr, "out of memory or not encodable");
            goto fail;
        }
        rrset_t *s = rrset_find(z, ldns_rr_owner(e->rr), ldns_rr_get_type(e->rr), &db->ops);
        if (s == NULL) {
            s = rrset_new(e, &db->ops, 1);
            if (s == NULL) {
                entry_unref(e);
                rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", zname);
                goto fail;
            }
            ldns_rbtree_insert(&z->rrsets, &s->node);
        }
        bool found;
        (void)rrset_pos(s, e, &found, &db->ops);
        if (found) {
            entry_unref(e);
            rc = rr_err(err, BD_EEXISTS, zname, rr, "given twice");
            goto fail;
        }
        if (rrset_reserve(s, 1) != 0) {
            entry_unref(e);
            rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", zname);
            goto fail;
        }
        rrset_insert_reserved(s, e, &db->ops);
        z->nrr++;
    }
    ldns_rbtree_insert(&db->zones, &z->node);
    bd_debug("zone %s: created with %zu RRs, serial %u", z->name, z->nrr + 1, serial);
    run_hooks(db, z->name, serial, BIND_ZONEDB_CREATED);
    return BD_OK;
fail:
    zone_free(z);
    return rc;
}

int bind_zonedb_apply(bind_zonedb_t *db, const char *zone, const ldns_rr_list *removed,
                      const ldns_rr_list *added, uint32_t new_serial, bd_err_t *err)
{
    ldns_rdf *apex = name_rdf(zone);
    size_t nrm_in = removed ? ldns_rr_list_rr_count(removed) : 0;
    size_t nadd_in = added ? ldns_rr_list_rr_count(added) : 0;
    op_t *rm = NULL, *add = NULL;
    size_t nrm = 0, nadd = 0;
    const ldns_rr *new_soa_src = NULL;
    diff_t *d = NULL;
    entry_t *soa = NULL;
    zone_t *z;
    int rc;

    bd_err_clear(err);
    if (apex == NULL)
        return bd_err_set(err, BD_EINVAL, "invalid zone name '%s'", zone ? zone : "(null)");
    z = zone_find(db, apex);
    if (z == NULL) {
        if (nrm_in != 0) {
            rc = bd_err_set(err, BD_EINVAL, "zone %s does not exist: nothing to remove", zone);
            goto cleanup;
        }
        rc = zone_create(db, &apex, zone, added, new_serial, err);
        goto cleanup;
    }

    if (!bind_zonedb_serial_gt(new_serial, z->serial)) {
        rc = bd_err_set(err, BD_ECONFLICT,
                        "zone %s: new serial %u is not greater than %u (RFC 1982)", z->name,
                        new_serial, z->serial);
        goto cleanup;
    }

    /* Phase 1: build and check everything, change nothing. */
    rm = calloc(nrm_in ? nrm_in : 1, sizeof(*rm));
    add = calloc(nadd_in ? nadd_in : 1, sizeof(*add));
    d = calloc(1, sizeof(*d));
    if (rm == NULL || add == NULL || d == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", z->name);
        goto cleanup;
    }
    for (size_t i = 0; i < nrm_in; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(removed, i);
        if ((rc = rr_check(rr, z->apex, z->name, err)) != 0)
            goto cleanup;
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA)
            continue;
        entry_t *e = entry_new(rr, NULL);
        if (e == NULL) {
            rc = rr_err(err, BD_ENOMEM, z->name, rr, "out of memory or not encodable");
            goto cleanup;
        }
        rm[nrm++].e = e;
        rrset_t *s = rrset_find(z, ldns_rr_owner(e->rr), ldns_rr_get_type(e->rr), &db->ops);
        bool found = false;
        if (s != NULL)
            (void)rrset_pos(s, e, &found, &db->ops);
        if (!found) {
            rc = rr_err(err, BD_ENOTFOUND, z->name, rr, "to remove, but not in the zone");
            goto cleanup;
        }
        rm[nrm - 1].set = s;
    }
    for (size_t i = 0; i < nadd_in; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(added, i);
        if ((rc = rr_check(rr, z->apex, z->name, err)) != 0)
            goto cleanup;
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA) {
            if (new_soa_src != NULL) {
                rc = rr_err(err, BD_EINVAL, z->name, rr, "second SOA");
                goto cleanup;
            }
            new_soa_src = rr;
            continue;
        }
        entry_t *e = entry_new(rr, NULL);
        if (e == NULL) {
            rc = rr_err(err, BD_ENOMEM, z->name, rr, "out of memory or not encodable");
            goto cleanup;
        }
        add[nadd++].e = e;
    }
    /* Duplicates inside each list; sorting also groups adds by RRset. */
    bd_qsort(rm, nrm, sizeof(*rm), op_cmp);
    bd_qsort(add, nadd, sizeof(*add), op_cmp);
    for (size_t i = 1; i < nrm; i++) {
        if (op_cmp(&rm[i - 1], &rm[i]) == 0) {
            rc = rr_err(err, BD_EINVAL, z->name, rm[i].e->rr, "removed twice");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < nadd;) {
        /* One group = the adds of one RRset (adjacent after sorting). */
        entry_t *first = add[i].e;
        size_t group = 1;
        while (i + group < nadd && ldns_rr_get_type(add[i + group].e->rr) == ldns_rr_get_type(first->rr) &&
               same_owner(add[i + group].e, first))
            group++;
        for (size_t j = i + 1; j < i + group; j++) {
            if (op_cmp(&add[j - 1], &add[j]) == 0) {
                rc = rr_err(err, BD_EEXISTS, z->name, add[j].e->rr, "added twice");
                goto cleanup;
            }
        }
        rrset_t *s = rrset_find(z, ldns_rr_owner(first->rr), ldns_rr_get_type(first->rr),
                                &db->ops);
        if (s == NULL) {
            s = rrset_new(first, &db->ops, group);
            if (s == NULL) {
                rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", z->name);
                goto cleanup;
            }
            add[i].new_set = true; /* owned by this op until phase 2 */
        } else {
            if (rrset_reserve(s, group) != 0) {
                rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", z->name);
                goto cleanup;
            }
            for (size_t j = i; j < i + group; j++) {
                bool found;
                (void)rrset_pos(s, add[j].e, &found, &db->ops);
                /* Already there: allowed only when the same diff removes it. */
                if (found && bd_bsearch(&add[j], rm, nrm, sizeof(*rm), op_cmp) == NULL) {
                    rc = rr_err(err, BD_EEXISTS, z->name, add[j].e->rr,
                                "to add, but already in the zone");
                    goto cleanup;
                }
            }
        }
        for (size_t j = i; j < i + group; j++)
            add[j].set = s;
        i += group;
    }
    soa = entry_new(new_soa_src ? new_soa_src : z->soa->rr, &new_serial);
    d->rm = calloc(nrm ? nrm : 1, sizeof(*d->rm));
    d->add = calloc(nadd ? nadd : 1, sizeof(*d->add));
    if (soa == NULL || d->rm == NULL || d->add == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "zone %s: out of memory", z->name);
        goto cleanup;
    }

    /* Phase 2: change the zone; nothing below can fail. */
    for (size_t i = 0; i < nrm; i++) {
        rrset_t *s = rm[i].set;
        bool found;
        size_t pos = rrset_pos(s, rm[i].e, &found, &db->ops);
        d->rm[d->nrm++] = s->rrs[pos]; /* the zone's reference moves to the diff */
        d->bytes += s->rrs[pos]->wlen;
        memmove(&s->rrs[pos], &s->rrs[pos + 1], (s->n - pos - 1) * sizeof(*s->rrs));
        db->ops += s->n - pos - 1;
        s->n--;
        z->nrr--;
    }
    for (size_t i = 0; i < nadd; i++) {
        rrset_t *s = add[i].set;
        if (add[i].new_set)
            ldns_rbtree_insert(&z->rrsets, &s->node);
        add[i].new_set = false; /* the tree owns it now */
        rrset_insert_reserved(s, entry_ref(add[i].e), &db->ops);
        d->add[d->nadd++] = add[i].e; /* the op's reference moves to the diff */
        d->bytes += add[i].e->wlen;
        add[i].e = NULL;
        z->nrr++;
    }
    for (size_t i = 0; i < nrm; i++) {
        rrset_t *s = rm[i].set;
        if (i + 1 < nrm && rm[i + 1].set == s)
            continue; /* same RRset: look once, after its last removal */
        if (s->n == 0) {
            ldns_rbtree_delete(&z->rrsets, &s->key);
            rrset_free(s);
        }
    }
    d->from = z->serial;
    d->to = new_serial;
    d->old_soa = z->soa;
    d->new_soa = entry_ref(soa);
    d->bytes += d->old_soa->wlen + soa->wlen;
    z->soa = soa;
    soa = NULL;
    z->serial = new_serial;
    hist_append(db, z, d);
    d = NULL;
    bd_debug("zone %s: serial %u, -%zu +%zu RRs", z->name, new_serial, nrm, nadd);
    run_hooks(db, z->name, new_serial, BIND_ZONEDB_UPDATED);
    rc = BD_OK;

cleanup:
    if (add != NULL)
        for (size_t i = 0; i < nadd; i++)
            if (add[i].new_set)
                rrset_free(add[i].set);
    ops_free(rm, nrm);
    ops_free(add, nadd);
    entry_unref(soa);
    diff_free(d);
    ldns_rdf_deep_free(apex);
    return rc;
}

int bind_zonedb_remove(bind_zonedb_t *db, const char *zone)
{
    ldns_rdf *apex = name_rdf(zone);
    if (apex == NULL)
        return BD_EINVAL;
    ldns_rbnode_t *n = ldns_rbtree_delete(&db->zones, apex);
    ldns_rdf_deep_free(apex);
    if (n == NULL)
        return BD_ENOTFOUND;
    zone_t *z = (zone_t *)n;
    bd_debug("zone %s: removed (serial %u)", z->name, z->serial);
    run_hooks(db, z->name, z->serial, BIND_ZONEDB_REMOVED);
    zone_free(z);
    return BD_OK;
}

/* ---- reading ---- */

int bind_zonedb_serial(const bind_zonedb_t *db, const char *zone, uint32_t *serial)
{
    ldns_rdf *apex = name_rdf(zone);
    if (apex == NULL)
        return BD_EINVAL;
    zone_t *z = zone_find(db, apex);
    ldns_rdf_deep_free(apex);
    if (z == NULL)
        return BD_ENOTFOUND;
    *serial = z->serial;
    return BD_OK;
}

const ldns_rr *bind_zonedb_soa(const bind_zonedb_t *db, const char *zone)
{
    zone_t *z = zone_find_str(db, zone);
    return z == NULL ? NULL : z->soa->rr;
}

const ldns_rr *bind_zonedb_soa_dname(const bind_zonedb_t *db, const ldns_rdf *zone)
{
    if (zone == NULL || ldns_rdf_get_type(zone) != LDNS_RDF_TYPE_DNAME)
        return NULL;
    zone_t *z = zone_find(db, zone);
    return z == NULL ? NULL : z->soa->rr;
}

size_t bind_zonedb_zone_count(const bind_zonedb_t *db) { return db->zones.count; }

size_t bind_zonedb_rr_count(const bind_zonedb_t *db, const char *zone)
{
    zone_t *z = zone_find_str(db, zone);
    return z == NULL ? 0 : z->nrr + 1;
}

size_t bind_zonedb_history_count(const bind_zonedb_t *db, const char *zone)
{
    zone_t *z = zone_find_str(db, zone);
    return z == NULL ? 0 : z->hist_n;
}

int bind_zonedb_lookup(const bind_zonedb_t *db, const char *zone, const char *owner,
                       uint16_t type, ldns_rr_list **out)
{
    ldns_rdf *apex = name_rdf(zone);
    ldns_rdf *name = NULL;
    ldns_rr_list *list = NULL;
    int rc = BD_EINVAL;

    *out = NULL;
    if (apex == NULL || owner == NULL || *owner == '\0' || strlen(owner) >= NAME_TEXT_MAX)
        goto cleanup;
    zone_t *z = zone_find(db, apex);
    if (z == NULL) {
        rc = BD_ENOTFOUND;
        goto cleanup;
    }
    size_t olen = strlen(owner);
    if (strcmp(owner, "@") == 0) {
        name = ldns_rdf_clone(apex);
    } else if (owner[olen - 1] == '.') {
        name = ldns_dname_new_frm_str(owner);
    } else {
        /* relative to the zone: "www" -> "www.<zone>" */
        size_t cap = olen + 1 + strlen(z->name) + 1;
        char *abs = malloc(cap);
        if (abs == NULL) {
            rc = BD_ENOMEM;
            goto cleanup;
        }
        snprintf(abs, cap, "%s.%s", owner, z->name);
        name = ldns_dname_new_frm_str(abs);
        free(abs);
    }
    if (name == NULL)
        goto cleanup;
    ldns_dname2canonical(name);
    list = ldns_rr_list_new();
    if (list == NULL) {
        rc = BD_ENOMEM;
        goto cleanup;
    }
    uint64_t ops = 0; /* a read: not counted in db->ops */
    rrset_t *s = rrset_find(z, name, type, &ops);
    if (type == LDNS_RR_TYPE_SOA && ldns_dname_compare(name, apex) == 0) {
        ldns_rr *c = ldns_rr_clone(z->soa->rr);
        if (c == NULL || !ldns_rr_list_push_rr(list, c)) {
            ldns_rr_free(c);
            rc = BD_ENOMEM;
            goto cleanup;
        }
    }
    for (size_t i = 0; s != NULL && i < s->n; i++) {
        ldns_rr *c = ldns_rr_clone(s->rrs[i]->rr);
        if (c == NULL || !ldns_rr_list_push_rr(list, c)) {
            ldns_rr_free(c);
            rc = BD_ENOMEM;
            goto cleanup;
        }
    }
    *out = list;
    list = NULL;
    rc = BD_OK;
cleanup:
    ldns_rr_list_deep_free(list);
    ldns_rdf_deep_free(name);
    ldns_rdf_deep_free(apex);
    return rc;
}

int bind_zonedb_foreach(const bind_zonedb_t *db,
                        int (*fn)(void *arg, const char *zone, uint32_t serial), void *arg)
{
    zone_t *z;
    LDNS_RBTREE_FOR(z, zone_t *, (ldns_rbtree_t *)&db->zones)
    {
        int rc = fn(arg, z->name, z->serial);
        if (rc != 0)
            return rc;
    }
    return BD_OK;
}

uint64_t bind_zonedb_ops(const bind_zonedb_t *db) { return db->ops; }

/* ---- transfers ---- */

struct bind_zonedb_xfr {
    bind_zonedb_xfr_kind_t kind;
    uint32_t serial;
    size_t n, cap;
    entry_t *e[];
};

static bind_zonedb_xfr_t *xfr_new(bind_zonedb_xfr_kind_t kind, uint32_t serial, size_t cap)
{
    bind_zonedb_xfr_t *x = malloc(sizeof(*x) + cap * sizeof(x->e[0]));
    if (x == NULL)
        return NULL;
    x->kind = kind;
    x->serial = serial;
    x->n = 0;
    x->cap = cap;
    return x;
}

static void xfr_push(bind_zonedb_xfr_t *x, entry_t *e)
{
    /* cap was computed exactly by the caller */
    x->e[x->n++] = entry_ref(e);
}

int bind_zonedb_axfr(const bind_zonedb_t *db, const ldns_rdf *zone, bind_zonedb_xfr_t **out)
{
    *out = NULL;
    if (zone == NULL || ldns_rdf_get_type(zone) != LDNS_RDF_TYPE_DNAME)
        return BD_EINVAL;
    zone_t *z = zone_find(db, zone);
    if (z == NULL)
        return BD_ENOTFOUND;
    bind_zonedb_xfr_t *x = xfr_new(BIND_ZONEDB_XFR_AXFR, z->serial, z->nrr + 2);
    if (x == NULL)
        return BD_ENOMEM;
    xfr_push(x, z->soa);
    rrset_t *s;
    LDNS_RBTREE_FOR(s, rrset_t *, &z->rrsets)
    {
        for (size_t i = 0; i < s->n; i++)
            xfr_push(x, s->rrs[i]);
    }
    xfr_push(x, z->soa);
    *out = x;
    return BD_OK;
}

typedef struct cnode {
    ldns_rbnode_t node; /* key = entry */
} cnode_t;

int bind_zonedb_ixfr(const bind_zonedb_t *db, const ldns_rdf *zone, uint32_t client_serial,
                     bind_zonedb_xfr_t **out)
{
    ldns_rbtree_t rset, aset; /* net removed / added, keyed by the whole wire (TTL too) */
    cnode_t *nodes = NULL;
    bind_zonedb_xfr_t *x = NULL;
    int rc;

    *out = NULL;
    if (zone == NULL || ldns_rdf_get_type(zone) != LDNS_RDF_TYPE_DNAME)
        return BD_EINVAL;
    zone_t *z = zone_find(db, zone);
    if (z == NULL)
        return BD_ENOTFOUND;
    if (client_serial == z->serial || bind_zonedb_serial_gt(client_serial, z->serial)) {
        x = xfr_new(BIND_ZONEDB_XFR_UPTODATE, z->serial, 1);
        if (x == NULL)
            return BD_ENOMEM;
        xfr_push(x, z->soa);
        *out = x;
        return BD_OK;
    }
    diff_t *first = z->hist_head;
    while (first != NULL && first->from != client_serial)
        first = first->next;
    if (first == NULL)
        return bind_zonedb_axfr(db, zone, out);

    size_t total = 0;
    for (diff_t *d = first; d != NULL; d = d->next)
        total += d->nrm + d->nadd;
    nodes = calloc(total ? total : 1, sizeof(*nodes));
    if (nodes == NULL)
        return BD_ENOMEM;
    ldns_rbtree_init(&rset, entry_cmp_full);
    ldns_rbtree_init(&aset, entry_cmp_full);
    size_t used = 0;
    for (diff_t *d = first; d != NULL; d = d->next) {
        for (size_t i = 0; i < d->nrm; i++) {
            if (ldns_rbtree_delete(&aset, d->rm[i]) == NULL) {
                nodes[used].node.key = d->rm[i];
                ldns_rbtree_insert(&rset, &nodes[used++].node);
            }
        }
        for (size_t i = 0; i < d->nadd; i++) {
            if (ldns_rbtree_delete(&rset, d->add[i]) == NULL) {
                nodes[used].node.key = d->add[i];
                ldns_rbtree_insert(&aset, &nodes[used++].node);
            }
        }
    }
    x = xfr_new(BIND_ZONEDB_XFR_IXFR, z->serial, rset.count + aset.count + 4);
    if (x == NULL) {
        rc = BD_ENOMEM;
        goto cleanup;
    }
    xfr_push(x, z->soa);
    xfr_push(x, first->old_soa);
    ldns_rbnode_t *n;
    for (n = ldns_rbtree_first(&rset); n != LDNS_RBTREE_NULL; n = ldns_rbtree_next(n))
        xfr_push(x, (entry_t *)n->key);
    xfr_push(x, z->soa);
    for (n = ldns_rbtree_first(&aset); n != LDNS_RBTREE_NULL; n = ldns_rbtree_next(n))
        xfr_push(x, (entry_t *)n->key);
    xfr_push(x, z->soa);
    *out = x;
    rc = BD_OK;
cleanup:
    free(nodes);
    return rc;
}

bind_zonedb_xfr_kind_t bind_zonedb_xfr_kind(const bind_zonedb_xfr_t *x) { return x->kind; }
uint32_t bind_zonedb_xfr_serial(const bind_zonedb_xfr_t *x) { return x->serial; }
size_t bind_zonedb_xfr_count(const bind_zonedb_xfr_t *x) { return x->n; }

const ldns_rr *bind_zonedb_xfr_rr(const bind_zonedb_xfr_t *x, size_t i)
{
    return i < x->n ? x->e[i]->rr : NULL;
}

void bind_zonedb_xfr_free(bind_zonedb_xfr_t *x)
{
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->n; i++)
        entry_unref(x->e[i]);
    free(x);
}

/* ---- text parsing ---- */

/* The lines the projector writes, "owner. TTL IN TYPE RDATA" with an absolute owner, a
 * decimal TTL and rdata of plain tokens, parsed field by field with ldns' own field parsers.
 * ldns_rr_new_frm_str tokenises through an ldns_buffer: ~19,000 instructions for an A
 * record, 18 % of catching up on 10,000 records. Only field types whose text is one plain
 * token are taken (addresses, absolute names, integers: A, AAAA, CNAME, NS, PTR, MX, SRV);
 * NULL for anything else, which ldns_rr_new_frm_str then parses (and words the errors of). */
static ldns_rr *rr_from_plain_line(const char *line)
{
    enum { MAXTOK = 12 };
    char tok[MAXTOK][NAME_TEXT_MAX];
    size_t n = 0;
    for (const char *p = line; *p != '\0';) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t l = strcspn(p, " \t");
        if (n == MAXTOK || l >= NAME_TEXT_MAX || memchr(p, '"', l) || memchr(p, '(', l) || memchr(p, ')', l) ||
            memchr(p, ';', l) || memchr(p, '\\', l))
            return NULL;
        memcpy(tok[n], p, l);
        tok[n++][l] = '\0';
        p += l;
    }
    if (n < 5 || line[0] == ' ' || line[0] == '\t' || tok[0][strlen(tok[0]) - 1] != '.' ||
        strspn(tok[1], "0123456789") != strlen(tok[1]) || strlen(tok[1]) > 9 || strcasecmp(tok[2], "IN") != 0)
        return NULL;
    ldns_rr_type type = ldns_get_rr_type_by_name(tok[3]);
    const ldns_rr_descriptor *d = type != 0 ? ldns_rr_descript(type) : NULL;
    size_t nf = n - 4;
    if (d == NULL || nf < ldns_rr_descriptor_minimum(d) || nf > ldns_rr_descriptor_maximum(d))
        return NULL;
    for (size_t i = 0; i < nf; i++) {
        ldns_rdf_type ft = ldns_rr_descriptor_field_type(d, i);
        if (!(ft == LDNS_RDF_TYPE_A || ft == LDNS_RDF_TYPE_AAAA || ft == LDNS_RDF_TYPE_INT8 ||
              ft == LDNS_RDF_TYPE_INT16 || ft == LDNS_RDF_TYPE_INT32 ||
              (ft == LDNS_RDF_TYPE_DNAME && tok[4 + i][strlen(tok[4 + i]) - 1] == '.')))
            return NULL;
    }
    ldns_rr *rr = ldns_rr_new();
    ldns_rdf *owner = ldns_dname_new_frm_str(tok[0]);
    if (rr == NULL || owner == NULL)
        goto fail;
    ldns_rr_set_owner(rr, owner);
    owner = NULL;
    ldns_rr_set_ttl(rr, (uint32_t)strtoul(tok[1], NULL, 10));
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_type(rr, type);
    for (size_t i = 0; i < nf; i++) {
        ldns_rdf *f = ldns_rdf_new_frm_str(ldns_rr_descriptor_field_type(d, i), tok[4 + i]);
        if (f == NULL || !ldns_rr_push_rdf(rr, f)) {
            ldns_rdf_deep_free(f);
            goto fail;
        }
    }
    return rr;
fail:
    ldns_rdf_deep_free(owner);
    ldns_rr_free(rr);
    return NULL;
}

int bind_zonedb_parse_rrs(const char *text, const char *origin, uint32_t default_ttl,
                          ldns_rr_list **out, bd_err_t *err)
{
    ldns_rr_list *list = ldns_rr_list_new();
    ldns_rdf *orig = NULL, *prev = NULL;
    const ldns_rr *last_plain = NULL; /* the last line parsed by rr_from_plain_line */
    char *copy = text ? strdup(text) : NULL;
    int rc = BD_OK;
    unsigned lineno = 0;

    *out = NULL;
    bd_err_clear(err);
    if (list == NULL || copy == NULL) {
        rc = bd_err_set(err, text ? BD_ENOMEM : BD_EINVAL, "cannot parse RRs: %s",
                        text ? "out of memory" : "no text");
        goto cleanup;
    }
    if (origin != NULL && (orig = name_rdf(origin)) == NULL) {
        rc = bd_err_set(err, BD_EPARSE, "invalid origin '%s'", origin);
        goto cleanup;
    }
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == ';')
            continue;
        if (strncmp(p, "$TTL", 4) == 0 && isspace((unsigned char)p[4])) {
            char *end;
            unsigned long v = strtoul(p + 5, &end, 10);
            if (end == p + 5 || v > 0x7fffffffUL) {
                rc = bd_err_set(err, BD_EPARSE, "line %u: bad $TTL", lineno);
                goto cleanup;
            }
            default_ttl = (uint32_t)v;
            continue;
        }
        if (strncmp(p, "$ORIGIN", 7) == 0 && isspace((unsigned char)p[7])) {
            char name[NAME_TEXT_MAX];
            if (sscanf(p + 8, "%1023s", name) != 1) {
                rc = bd_err_set(err, BD_EPARSE, "line %u: bad $ORIGIN", lineno);
                goto cleanup;
            }
            ldns_rdf *o = name_rdf(name);
            if (o == NULL) {
                rc = bd_err_set(err, BD_EPARSE, "line %u: bad $ORIGIN '%s'", lineno, name);
                goto cleanup;
            }
            ldns_rdf_deep_free(orig);
            orig = o;
            continue;
        }
        ldns_rr *rr = rr_from_plain_line(line);
        ldns_status st = LDNS_STATUS_OK;
        if (rr != NULL) {
            last_plain = rr; /* the list keeps it */
        } else {
            if (last_plain != NULL) { /* the owner a line that leaves it out takes, as ldns does */
                ldns_rdf_deep_free(prev);
                prev = ldns_rdf_clone(ldns_rr_owner(last_plain));
                last_plain = NULL;
            }
            st = ldns_rr_new_frm_str(&rr, line, default_ttl, orig, &prev);
        }
        if (st != LDNS_STATUS_OK) {
            rc = bd_err_set(err, BD_EPARSE, "line %u: %s: '%.80s'", lineno,
                            ldns_get_errorstr_by_id(st), p);
            goto cleanup;
        }
        if (!ldns_rr_list_push_rr(list, rr)) {
            ldns_rr_free(rr);
            rc = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto cleanup;
        }
    }
    *out = list;
    list = NULL;
cleanup:
    ldns_rr_list_deep_free(list);
    ldns_rdf_deep_free(orig);
    ldns_rdf_deep_free(prev);
    free(copy);
    return rc;
}
