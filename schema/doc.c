#include "doc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Aliases are expanded by copying; this caps what a "billion laughs" can cost. */
#define DOC_MAX_ALIAS_NODES 100000u

typedef struct {
    size_t path; /* offset in paths */
    int line;
} doc_pos_t;

/* The line of every field, in document order. Paths live in one buffer (a strdup per
 * field was a tenth of parsing 10,000 records) and are looked up only to report a problem,
 * so a linear search does. */
struct doc {
    json_t *value;
    int line;
    doc_pos_t *pos;
    size_t npos, cap;
    char *paths;
    size_t plen, pcap;
};

struct doc_list {
    char *file;
    doc_t **docs;
    size_t n, cap;
    char *error;
    int error_line;
};

/* ---- paths ---------------------------------------------------------------------- */

static void path_append(char *path, const char *piece)
{
    size_t len = strlen(path), plen = strlen(piece);
    if (len + plen + 1 <= DOC_PATH_MAX) {
        memcpy(path + len, piece, plen + 1);
        return;
    }
    if (len + 4 <= DOC_PATH_MAX && (len < 3 || strcmp(path + len - 3, "...") != 0))
        memcpy(path + len, "...", 4);
}

static int is_plain_key(const char *key)
{
    if (*key == '\0')
        return 0;
    for (const char *p = key; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void doc_path_key(char *path, const char *key)
{
    char piece[DOC_PATH_MAX];
    if (is_plain_key(key)) {
        /* The common case, once per field: no printf. */
        size_t klen = strlen(key), o = path[0] ? 1 : 0;
        if (klen > sizeof(piece) - 2)
            klen = sizeof(piece) - 2;
        piece[0] = '.';
        memcpy(piece + o, key, klen);
        piece[o + klen] = '\0';
    } else {
        size_t o = 0;
        piece[o++] = '[';
        piece[o++] = '"';
        for (const char *p = key; *p && o < sizeof(piece) - 4; p++) {
            if (*p == '"' || *p == '\\')
                piece[o++] = '\\';
            piece[o++] = *p;
        }
        piece[o++] = '"';
        piece[o++] = ']';
        piece[o] = '\0';
    }
    path_append(path, piece);
}

void doc_path_index(char *path, size_t i)
{
    char piece[32], *p = piece + sizeof(piece);
    *--p = '\0';
    *--p = ']';
    do
        *--p = (char)('0' + i % 10);
    while ((i /= 10) != 0);
    *--p = '[';
    path_append(path, p);
}

/* ---- documents ---------------------------------------------------------------- */

static void doc_free(doc_t *d)
{
    if (d == NULL)
        return;
    json_decref(d->value);
    free(d->pos);
    free(d->paths);
    free(d);
}

static int doc_add_pos(doc_t *d, const char *path, int line)
{
    if (d->npos == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        doc_pos_t *np = realloc(d->pos, ncap * sizeof(*np));
        if (np == NULL)
            return BD_ENOMEM;
        d->pos = np;
        d->cap = ncap;
    }
    size_t n = strlen(path) + 1;
    if (d->plen + n > d->pcap) {
        size_t ncap = d->pcap ? d->pcap * 2 : 512;
        while (ncap < d->plen + n)
            ncap *= 2;
        char *np = realloc(d->paths, ncap);
        if (np == NULL)
            return BD_ENOMEM;
        d->paths = np;
        d->pcap = ncap;
    }
    memcpy(d->paths + d->plen, path, n);
    d->pos[d->npos].path = d->plen;
    d->pos[d->npos].line = line;
    d->plen += n;
    d->npos++;
    return BD_OK;
}

static const char *pos_path(const doc_t *d, size_t i) { return d->paths + d->pos[i].path; }

json_t *doc_value(const doc_t *doc) { return doc->value; }
int doc_start_line(const doc_t *doc) { return doc->line; }

/* Drop the last component of a path in place; returns 0 at the root. */
static int path_parent(char *path)
{
    size_t len = strlen(path);
    if (len == 0)
        return 0;
    if (path[len - 1] == ']') {
        char *open = strrchr(path, '[');
        if (open == NULL)
            return 0;
        *open = '\0';
        return 1;
    }
    char *dot = strrchr(path, '.');
    char *br = strrchr(path, ']');
    if (dot != NULL && (br == NULL || dot > br))
        *dot = '\0';
    else if (br != NULL)
        br[1] = '\0';
    else
        path[0] = '\0';
    return 1;
}

int doc_line(const doc_t *doc, const char *path)
{
    char buf[DOC_PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path ? path : "");
    for (;;) {
        if (buf[0] == '\0')
            return doc->line;
        for (size_t i = 0; i < doc->npos; i++)
            if (strcmp(pos_path(doc, i), buf) == 0)
                return doc->pos[i].line;
        if (!path_parent(buf))
            return doc->line;
    }
}

/* ---- lists ---------------------------------------------------------------------- */

void doc_list_free(doc_list_t *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->n; i++)
        doc_free(list->docs[i]);
    free(list->docs);
    free(list->file);
    free(list->error);
    free(list);
}

size_t doc_list_count(const doc_list_t *list) { return list->n; }
const doc_t *doc_list_get(const doc_list_t *list, size_t i) { return i < list->n ? list->docs[i] : NULL; }
const char *doc_list_file(const doc_list_t *list) { return list->file; }

const char *doc_list_error(const doc_list_t *list, int *line)
{
    if (line)
        *line = list->error_line;
    return list->error;
}

__attribute__((format(printf, 3, 4))) static void list_problem(doc_list_t *list, int line,
                                                                const char *fmt, ...)
{
    if (list->error != NULL)
        return; /* the first problem is the one worth reporting */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    list->error = strdup(msg);
    list->error_line = line;
}

static int list_push(doc_list_t *list, doc_t *d)
{
    if (list->n == list->cap) {
        size_t ncap = list->cap ? list->cap * 2 : 8;
        doc_t **nd = realloc(list->docs, ncap * sizeof(*nd));
        if (nd == NULL)
            return BD_ENOMEM;
        list->docs = nd;
        list->cap = ncap;
    }
    list->docs[list->n++] = d;
    return BD_OK;
}

/*
 * Add a parsed document; a `kind: List` is replaced by its items, each with the
 * positions under `items[i]` re-rooted. Takes ownership of d in every case.
 */
static int list_add_doc(doc_list_t *list, doc_t *d)
{
    json_t *v = d->value;
    const char *kind = json_string_value(json_object_get(v, "kind"));
    json_t *items = json_object_get(v, "items");
    if (kind == NULL || strcmp(kind, "List") != 0 || !json_is_array(items)) {
        int rc = list_push(list, d);
        if (rc != BD_OK)
            doc_free(d);
        return rc;
    }

    int rc = BD_OK;
    for (size_t i = 0; i < json_array_size(items) && rc == BD_OK; i++) {
        char prefix[64];
        int plen = snprintf(prefix, sizeof(prefix), "items[%zu]", i);
        doc_t *item = calloc(1, sizeof(*item));
        if (item == NULL) {
            rc = BD_ENOMEM;
            break;
        }
        item->value = json_incref(json_array_get(items, i));
        item->line = d->line;
        for (size_t p = 0; p < d->npos && rc == BD_OK; p++) {
            const char *path = pos_path(d, p);
            if (strncmp(path, prefix, (size_t)plen) != 0)
                continue;
            const char *rest = path + plen;
            if (*rest == '\0')
                item->line = d->pos[p].line;
            else if (*rest == '.')
                rc = doc_add_pos(item, rest + 1, d->pos[p].line);
            else if (*rest == '[')
                rc = doc_add_pos(item, rest, d->pos[p].line);
        }
        if (rc == BD_OK)
            rc = list_push(list, item);
        if (rc != BD_OK)
            doc_free(item);
    }
    doc_free(d);
    return rc;
}

static doc_list_t *list_new(const char *name)
{
    doc_list_t *list = calloc(1, sizeof(*list));
    if (list == NULL)
        return NULL;
    list->file = strdup(name);
    if (list->file == NULL) {
        free(list);
        return NULL;
    }
    return list;
}

/* ---- JSON ------------------------------------------------------------------------- */

static int load_json(doc_list_t *list, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        list_problem(list, jerr.line > 0 ? jerr.line : 0, "json: %s", jerr.text);
        return BD_OK;
    }
    if (!json_is_object(v)) {
        list_problem(list, 1, "json: a manifest must be an object");
        json_decref(v);
        return BD_OK;
    }
    doc_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        json_decref(v);
        return BD_ENOMEM;
    }
    d->value = v;
    d->line = 1;
    return list_add_doc(list, d);
}

/* ---- YAML ------------------------------------------------------------------------- */

typedef struct {
    char *name;
    json_t *value;
    size_t weight; /* node count of the anchored subtree */
} anchor_t;

typedef struct {
    yaml_parser_t parser;
    doc_list_t *list;
    doc_t *doc;
    size_t nodes, alias_nodes;
    anchor_t *anchors;
    size_t nanchors, acap;
    int failed; /* a problem was recorded; stop reading */
    int rc;     /* BD_ENOMEM and such: abort the whole load */
} yctx_t;

__attribute__((format(printf, 3, 4))) static int yfail(yctx_t *c, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    list_problem(c->list, line, "yaml: %s", msg);
    c->failed = 1;
    return -1;
}

static int ynomem(yctx_t *c)
{
    c->rc = BD_ENOMEM;
    c->failed = 1;
    return -1;
}

static int ynext(yctx_t *c, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&c->parser, ev)) {
        const char *problem = c->parser.problem ? c->parser.problem : "malformed YAML";
        int line = (int)c->parser.problem_mark.line + 1;
        if (c->parser.context)
            return yfail(c, line, "%s %s", problem, c->parser.context);
        return yfail(c, line, "%s", problem);
    }
    return 0;
}

static void anchors_clear(yctx_t *c)
{
    for (size_t i = 0; i < c->nanchors; i++) {
        free(c->anchors[i].name);
        json_decref(c->anchors[i].value);
    }
    c->nanchors = 0;
}

static int anchor_add(yctx_t *c, const char *name, json_t *v, size_t weight)
{
    /* A redefined anchor shadows the older one: lookups scan from the end. */
    if (c->nanchors == c->acap) {
        size_t ncap = c->acap ? c->acap * 2 : 8;
        anchor_t *na = realloc(c->anchors, ncap * sizeof(*na));
        if (na == NULL)
            return ynomem(c);
        c->anchors = na;
        c->acap = ncap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return ynomem(c);
    c->anchors[c->nanchors++] = (anchor_t){copy, json_incref(v), weight};
    return 0;
}

static int all_digits(const char *s, const char *set)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (strchr(set, *s) == NULL)
            return 0;
    return 1;
}

static int is_float_text(const char *s)
{
    /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (digits == 0)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/* Resolve a plain scalar as YAML 1.1 / sigs.k8s.io/yaml does. NULL on allocation failure
 * or an unrepresentable number (then *why is set). */
static json_t *resolve_plain(const char *s, const char **why)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    /* Every keyword has at most 5 characters and starts with one of these (or is ""): most
     * scalars are names and addresses, and skip the 23 comparisons. */
    if (s[0] == '\0' || (strchr("~nNtTyYoOfF", s[0]) != NULL && strnlen(s, 6) <= 5)) {
        for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++)
            if (strcmp(s, nulls[i]) == 0)
                return json_null();
        for (size_t i = 0; i < sizeof(trues) / sizeof(*trues); i++)
            if (strcmp(s, trues[i]) == 0)
                return json_true();
        for (size_t i = 0; i < sizeof(falses) / sizeof(*falses); i++)
            if (strcmp(s, falses[i]) == 0)
                return json_false();
    }

    const char *body = (*s == '-' || *s == '+') ? s + 1 : s;
    int base = 0;
    const char *digits = NULL;
    if ((body[0] == '0') && (body[1] == 'x' || body[1] == 'X') && all_digits(body + 2, "0123456789abcdefABCDEF"))
        base = 16, digits = body + 2;
    else if (body[0] == '0' && body[1] == 'o' && all_digits(body + 2, "01234567"))
        base = 8, digits = body + 2;
    else if (body[0] == '0' && body[1] != '\0' && all_digits(body + 1, "01234567"))
        base = 8, digits = body + 1;
    else if (all_digits(body, "0123456789"))
        base = 10, digits = body;
    if (base != 0) {
        errno = 0;
        char *end = NULL;
        unsigned long long u = strtoull(digits, &end, base);
        int neg = (*s == '-');
        if (errno == ERANGE || *end != '\0' || (!neg && u > (unsigned long long)INT64_MAX) ||
            (neg && u > (unsigned long long)INT64_MAX + 1ull)) {
            *why = "integer out of range";
            return NULL;
        }
        json_int_t v = neg ? (json_int_t)(0 - u) : (json_int_t)u;
        return json_integer(v);
    }
    if (is_float_text(s)) {
        errno = 0;
        double d = strtod(s, NULL);
        if (errno == ERANGE) {
            *why = "number out of range";
            return NULL;
        }
        return json_real(d);
    }
    static const char *const specials[] = {".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF",
                                           "+.inf", ".nan", ".NaN", ".NAN"};
    for (size_t i = 0; i < sizeof(specials) / sizeof(*specials); i++) {
        if (strcmp(s, specials[i]) == 0) {
            *why = "infinity and NaN cannot be represented in JSON";
            return NULL;
        }
    }
    return json_string(s);
}

static int mark_line(const yaml_mark_t *m) { return (int)m->line + 1; }

static int build_node(yctx_t *c, yaml_event_t *ev, char *path, int depth, json_t **out);

static int build_children(yctx_t *c, yaml_event_t *start, char *path, int depth, json_t *container)
{
    int is_map = start->type == YAML_MAPPING_START_EVENT;
    size_t index = 0;
    size_t plen = strlen(path);
    for (;;) {
        yaml_event_t ev;
        if (ynext(c, &ev) != 0)
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int rc;
        json_t *child = NULL;
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                int line = mark_line(&ev.start_mark);
                yaml_event_delete(&ev);
                return yfail(c, line, "%s: mapping keys must be strings", path[0] ? path : "<root>");
            }
            char *key = strdup((const char *)ev.data.scalar.value);
            int line = mark_line(&ev.start_mark);
            yaml_event_delete(&ev);
            if (key == NULL)
                return ynomem(c);
            doc_path_key(path, key);
            if (json_object_get(container, key) != NULL) {
                rc = yfail(c, line, "%s: duplicate key \"%s\"", path, key);
                free(key);
                return rc;
            }
            if (doc_add_pos(c->doc, path, line) != BD_OK) {
                free(key);
                return ynomem(c);
            }
            yaml_event_t vev;
            if (ynext(c, &vev) != 0) {
                free(key);
                return -1;
            }
            rc = build_node(c, &vev, path, depth + 1, &child);
            if (rc == 0 && json_object_set_new(container, key, child) != 0)
                rc = ynomem(c);
            free(key);
        } else {
            doc_path_index(path, index++);
            if (doc_add_pos(c->doc, path, mark_line(&ev.start_mark)) != BD_OK) {
                yaml_event_delete(&ev);
                return ynomem(c);
            }
            rc = build_node(c, &ev, path, depth + 1, &child);
            if (rc == 0 && json_array_append_new(container, child) != 0)
                rc = ynomem(c);
        }
        path[plen] = '\0';
        if (rc != 0)
            return rc;
    }
}

/* Consumes ev. On success *out is a new reference. */
static int build_node(yctx_t *c, yaml_event_t *ev, char *path, int depth, json_t **out)
{
    int line = mark_line(&ev->start_mark);
    const char *where = path[0] ? path : "<root>";
    json_t *v = NULL;
    const char *anchor = NULL;
    size_t nodes_before = c->nodes, alias_before = c->alias_nodes;
    int rc = 0;

    if (++c->nodes > DOC_MAX_NODES) {
        yaml_event_delete(ev);
        return yfail(c, line, "too many nodes (more than %u)", DOC_MAX_NODES);
    }
    if (depth > DOC_MAX_DEPTH) {
        yaml_event_delete(ev);
        return yfail(c, line, "%s: nesting deeper than %d levels", where, DOC_MAX_DEPTH);
    }

    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        anchor = (const char *)ev->data.scalar.anchor;
        const char *text = (const char *)ev->data.scalar.value;
        if (ev->data.scalar.length > DOC_MAX_SCALAR_BYTES) {
            rc = yfail(c, line, "%s: value longer than %u bytes", where, DOC_MAX_SCALAR_BYTES);
            break;
        }
        if (strlen(text) != ev->data.scalar.length) {
            rc = yfail(c, line, "%s: value contains a NUL character", where);
            break;
        }
        const char *tag = (const char *)ev->data.scalar.tag;
        int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0)
            plain = 0;
        if (plain) {
            const char *why = "out of memory";
            v = resolve_plain(text, &why);
            if (v == NULL) {
                rc = strcmp(why, "out of memory") == 0 ? ynomem(c)
                                                       : yfail(c, line, "%s: %s: %s", where, text, why);
                break;
            }
        } else {
            v = json_stringn(text, ev->data.scalar.length);
            if (v == NULL) {
                rc = yfail(c, line, "%s: value is not valid UTF-8", where);
                break;
            }
        }
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        anchor = (const char *)(ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                                     : ev->data.sequence_start.anchor);
        v = ev->type == YAML_MAPPING_START_EVENT ? json_object() : json_array();
        if (v == NULL) {
            rc = ynomem(c);
            break;
        }
        rc = build_children(c, ev, path, depth, v);
        break;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const anchor_t *a = NULL;
        for (size_t i = c->nanchors; i-- > 0;) {
            if (strcmp(c->anchors[i].name, name) == 0) {
                a = &c->anchors[i];
                break;
            }
        }
        if (a == NULL) {
            rc = yfail(c, line, "%s: unknown alias *%s", where, name);
            break;
        }
        c->alias_nodes += a->weight;
        if (c->alias_nodes > DOC_MAX_ALIAS_NODES) {
            rc = yfail(c, line, "%s: aliases expand to more than %u nodes", where, DOC_MAX_ALIAS_NODES);
            break;
        }
        v = json_deep_copy(a->value);
        if (v == NULL)
            rc = ynomem(c);
        break;
    }
    default:
        rc = yfail(c, line, "%s: unexpected YAML event", where);
        break;
    }

    if (rc == 0 && anchor != NULL)
        rc = anchor_add(c, anchor, v, (c->nodes - nodes_before) + (c->alias_nodes - alias_before));
    yaml_event_delete(ev);
    if (rc != 0) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int load_yaml_part(doc_list_t *list, const char *buf, size_t len, int *failed)
{
    yctx_t c = {.list = list};
    if (!yaml_parser_initialize(&c.parser))
        return BD_ENOMEM;
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)buf, len);

    for (;;) {
        yaml_event_t ev;
        if (ynext(&c, &ev) != 0)
            break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue; /* STREAM_START */
        }
        int doc_line0 = mark_line(&ev.start_mark);
        yaml_event_delete(&ev);

        c.doc = calloc(1, sizeof(*c.doc));
        if (c.doc == NULL) {
            ynomem(&c);
            break;
        }
        c.doc->line = doc_line0;
        char path[DOC_PATH_MAX] = "";
        json_t *root = NULL;
        yaml_event_t rev;
        if (ynext(&c, &rev) != 0 || build_node(&c, &rev, path, 0, &root) != 0) {
            doc_free(c.doc);
            c.doc = NULL;
            break;
        }
        c.doc->value = root;
        if (c.doc->npos > 0 || !json_is_null(root)) {
            /* The first field's line is a better start than a leading comment's. */
            if (c.doc->npos > 0)
                c.doc->line = c.doc->pos[0].line;
        }
        yaml_event_t end;
        if (ynext(&c, &end) != 0) {
            doc_free(c.doc);
            c.doc = NULL;
            break;
        }
        yaml_event_delete(&end); /* DOCUMENT_END */
        anchors_clear(&c);       /* anchors are scoped to their document */
        c.alias_nodes = 0;

        if (json_is_null(root)) { /* an empty document (a stray `---`) */
            doc_free(c.doc);
        } else if (!json_is_object(root)) {
            list_problem(list, c.doc->line, "yaml: a manifest must be a mapping");
            doc_free(c.doc);
        } else if (list_add_doc(list, c.doc) != BD_OK) {
            c.doc = NULL;
            ynomem(&c);
            break;
        }
        c.doc = NULL;
    }
    anchors_clear(&c);
    free(c.anchors);
    yaml_parser_delete(&c.parser);
    *failed = c.failed;
    return c.rc;
}

/* Where a second parser can take over a big stream: the first line at or after the
 * middle that is a document marker ("---" alone or before a space), not right after a
 * directive; 0 when there is none. Such a line is a document boundary wherever it is:
 * YAML forbids document markers inside scalars (c-forbidden), and anchors are scoped to
 * their document. */
static size_t split_point(const char *buf, size_t len)
{
    for (size_t p = len / 2;;) {
        const char *nl = memchr(buf + p, '\n', len - p);
        if (nl == NULL || (p = (size_t)(nl - buf) + 1) + 3 > len)
            return 0;
        char after = p + 3 < len ? buf[p + 3] : '\n';
        if (memcmp(buf + p, "---", 3) != 0 || (after != '\n' && after != '\r' && after != ' ' && after != '\t'))
            continue;
        /* not the marker that ends a directive block: the nearest line before it that is
         * neither blank nor a comment must not be a directive */
        size_t end = p - 1, ls = end;
        for (;;) {
            ls = end;
            while (ls > 0 && buf[ls - 1] != '\n')
                ls--;
            if (ls == 0 || (buf[ls] != '#' && buf[ls] != '\n' && buf[ls] != '\r'))
                break;
            end = ls - 1;
        }
        if (buf[ls] != '%')
            return p;
    }
}

typedef struct {
    doc_list_t *list;
    const char *buf;
    size_t len;
    int rc, failed;
} part_t;

static void *part_main(void *arg)
{
    part_t *pt = arg;
    pt->rc = load_yaml_part(pt->list, pt->buf, pt->len, &pt->failed);
    return NULL;
}

/* Move the documents and the problem of tail (parsed from line `off` + 1 on) behind
 * those of list, as one parser going on would have found them. */
static int list_join(doc_list_t *list, doc_list_t *tail, int off)
{
    for (size_t i = 0; i < tail->n; i++) {
        doc_t *d = tail->docs[i];
        d->line += off;
        for (size_t k = 0; k < d->npos; k++)
            d->pos[k].line += off;
        if (list_push(list, d) != BD_OK) {
            for (size_t k = i; k < tail->n; k++)
                doc_free(tail->docs[k]);
            tail->n = 0;
            return BD_ENOMEM;
        }
    }
    tail->n = 0;
    if (tail->error != NULL && list->error == NULL) {
        list->error = tail->error;
        list->error_line = tail->error_line > 0 ? tail->error_line + off : 0;
        tail->error = NULL;
    }
    return BD_OK;
}

/* A big stream is parsed by two threads, each from a document boundary (building the
 * JSON tree costs more than libyaml's scanning, and the import of a large manifest is on
 * the path of every record it carries); the result is what one parser gives, except that
 * the node limit applies to each half. */
static int load_yaml(doc_list_t *list, const char *buf, size_t len)
{
    int failed = 0;
    size_t cut = len >= DOC_SPLIT_MIN_BYTES ? split_point(buf, len) : 0;
    part_t tail = {.buf = buf + cut, .len = len - cut};
    pthread_t th;
    if (cut == 0 || (tail.list = list_new(list->file)) == NULL ||
        pthread_create(&th, NULL, part_main, &tail) != 0) {
        doc_list_free(tail.list);
        return load_yaml_part(list, buf, len, &failed);
    }
    int rc = load_yaml_part(list, buf, cut, &failed);
    pthread_join(th, NULL);
    int off = 0;
    for (size_t i = 0; i < cut; i++)
        off += buf[i] == '\n';
    if (rc == BD_OK)
        rc = tail.rc;
    if (rc == BD_OK && !failed) /* one parser would have stopped at the first half's error */
        rc = list_join(list, tail.list, off);
    doc_list_free(tail.list);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------ */

int doc_load_buffer(const char *name, const char *buf, size_t len, int is_json,
                    doc_list_t **out, bd_err_t *err)
{
    *out = NULL;
    doc_list_t *list = list_new(name);
    if (list == NULL)
        return bd_err_set(err, BD_ENOMEM, "%s: out of memory", name);
    int rc;
    if (len > DOC_MAX_FILE_BYTES) {
        list_problem(list, 0, "file larger than %u bytes", DOC_MAX_FILE_BYTES);
        rc = BD_OK;
    } else {
        rc = is_json ? load_json(list, buf, len) : load_yaml(list, buf, len);
    }
    if (rc != BD_OK) {
        doc_list_free(list);
        return bd_err_set(err, rc, "%s: %s", name, bd_strerror(rc));
    }
    *out = list;
    return BD_OK;
}

int doc_load_file(const char *path, doc_list_t **out, bd_err_t *err)
{
    *out = NULL;
    int rc = BD_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return bd_err_set(err, BD_EIO, "%s: %s", path, strerror(errno));

    size_t cap = 65536, len = 0;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len > DOC_MAX_FILE_BYTES)
            break; /* doc_load_buffer reports the size problem */
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = bd_err_set(err, BD_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        rc = bd_err_set(err, BD_EIO, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    size_t plen = strlen(path);
    int is_json = plen >= 5 && strcmp(path + plen - 5, ".json") == 0;
    rc = doc_load_buffer(path, buf, len, is_json, out, err);
out:
    free(buf);
    fclose(f);
    return rc;
}
