/*
 * bindy-journal: inspect a bindy journal. A thin main over journal.h.
 *
 * Opens the journal read-only (MDB_RDONLY), so it runs while the operator writes.
 * Exit codes: 0 ok, 1 verification failed or the thing asked for does not exist,
 * 2 the journal cannot be read (missing, foreign, other version) or bad usage.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "journal.h"
#include "manifests.h"
#include "log.h"
#include "sort.h"

#ifndef BINDY_VERSION
#define BINDY_VERSION "dev"
#endif

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_ERR = 2 };
typedef enum { OUT_TEXT = 0, OUT_JSON, OUT_YAML } out_t;

typedef struct ctx {
    const char *journal_arg; /* --journal as given (NULL: default) */
    char path[4300];         /* resolved journal directory */
    out_t out;
    bool out_set;
    jnl_t *j;
} ctx_t;

typedef struct cmd {
    const char *name;
    int (*run)(ctx_t *c, int argc, char **argv);
    const char *args;
    const char *summary;
    const char *help; /* options and details */
} cmd_t;

static const char *prog = "bindy-journal";

static void errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errf(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- journal location ------------------------------------------------------------------ */

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* PATH is the journal itself (holds data.mdb) or a state directory (then PATH/journal).
 * Default: $BINDY_STATE_DIR, else ./state. */
static void resolve_path(ctx_t *c)
{
    const char *p = c->journal_arg;
    if (p == NULL || *p == '\0') {
        p = getenv("BINDY_STATE_DIR");
        if (p == NULL || *p == '\0')
            p = "./state";
    }
    char probe[4200];
    snprintf(probe, sizeof(probe), "%s/data.mdb", p);
    if (is_file(probe)) {
        snprintf(c->path, sizeof(c->path), "%s", p);
        return;
    }
    snprintf(probe, sizeof(probe), "%s/journal", p);
    if (is_dir(probe)) {
        snprintf(c->path, sizeof(c->path), "%s", probe);
        return;
    }
    snprintf(c->path, sizeof(c->path), "%s", p);
}

static int open_journal(ctx_t *c)
{
    jnl_opts_t o;
    bd_err_t err;
    resolve_path(c);
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;
    int rc = jnl_open(c->path, &o, &c->j, &err);
    if (rc != 0) {
        errf("%s", err.msg);
        if (rc == BD_ENOTFOUND)
            fprintf(stderr, "%s: give the journal (or state) directory with --journal PATH or "
                            "BINDY_STATE_DIR\n", prog);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* ---- times ------------------------------------------------------------------------------ */

static void fmt_time(uint64_t ns, char *buf, size_t size)
{
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;
    char base[32];
    gmtime_r(&secs, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03uZ", base, (unsigned)(ns % 1000000000u / 1000000u));
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "90s", "10m", "1h30m", "2d", "1w", "500ms" -> nanoseconds. */
static bool parse_duration(const char *s, uint64_t *out)
{
    uint64_t total = 0;
    if (*s == '\0')
        return false;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return false;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno != 0)
            return false;
        uint64_t unit;
        if (strncmp(end, "ms", 2) == 0) {
            unit = 1000000u;
            end += 2;
        } else if (*end == 's') {
            unit = 1000000000u;
            end++;
        } else if (*end == 'm') {
            unit = 60ull * 1000000000u;
            end++;
        } else if (*end == 'h') {
            unit = 3600ull * 1000000000u;
            end++;
        } else if (*end == 'd') {
            unit = 86400ull * 1000000000u;
            end++;
        } else if (*end == 'w') {
            unit = 7 * 86400ull * 1000000000u;
            end++;
        } else {
            return false;
        }
        if (v > UINT64_MAX / unit || total > UINT64_MAX - v * unit)
            return false;
        total += v * unit;
        s = end;
    }
    *out = total;
    return true;
}

/* RFC 3339 ("2026-11-23T10:00:00Z", fractions, offsets), a date, "now", or a duration
 * meaning that long ago. */
static bool parse_time(const char *s, uint64_t *out)
{
    uint64_t d;
    if (strcmp(s, "now") == 0) {
        *out = now_ns();
        return true;
    }
    if (parse_duration(s, &d)) {
        uint64_t now = now_ns();
        *out = d > now ? 0 : now - d;
        return true;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
        return false;
    const char *p = s + n;
    uint64_t frac = 0;
    int64_t offset = 0;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        p++;
        if (sscanf(p, "%2d:%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 3 || n != 8)
            return false;
        p += n;
        if (*p == '.') {
            p++;
            uint64_t scale = 100000000u;
            if (!isdigit((unsigned char)*p))
                return false;
            while (isdigit((unsigned char)*p)) {
                frac += (uint64_t)(*p - '0') * scale;
                scale /= 10;
                p++;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
                return false;
            offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
            p += 6;
        } else {
            return false;
        }
        if (*p != '\0')
            return false;
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || (int64_t)t - offset < 0)
        return false;
    *out = (uint64_t)((int64_t)t - offset) * 1000000000u + frac;
    return true;
}

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* A point: a seq (digits) or a time. */
typedef struct point {
    bool is_seq;
    uint64_t seq, time;
} point_t;

static bool parse_point(const char *s, point_t *p)
{
    memset(p, 0, sizeof(*p));
    if (all_digits(s)) {
        p->is_seq = true;
        p->seq = strtoull(s, NULL, 10);
        return true;
    }
    return parse_time(s, &p->time);
}

static int state_at(ctx_t *c, const point_t *p, jnl_state_t **st)
{
    bd_err_t err;
    int rc = p->is_seq ? jnl_state_at(c->j, p->seq, st, &err)
                       : jnl_state_at_time(c->j, p->time, st, &err);
    if (rc != 0) {
        errf("%s", err.msg);
        return rc == BD_ENOTFOUND ? EXIT_FAIL : EXIT_ERR;
    }
    return EXIT_OK;
}

/* ---- output helpers ------------------------------------------------------------------------ */

static void hex(const uint8_t *h, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[2 * n] = '\0';
}

static const char *or_dash(const char *s)
{
    return s != NULL && *s ? s : "-";
}

static void obj_name(const jnl_event_t *e, char *buf, size_t size)
{
    if (e->name == NULL || *e->name == '\0')
        snprintf(buf, size, "-");
    else if (e->ns != NULL && *e->ns)
        snprintf(buf, size, "%s/%s", e->ns, e->name);
    else
        snprintf(buf, size, "%s", e->name);
}

/* Aligned columns, like kubectl: two spaces apart, the last column unpadded. Widths come
 * from the first TABLE_BUFFER rows; after that rows are printed as they come (bounded
 * memory for long listings). */
#define MAXCOLS 10
#define TABLE_BUFFER 5000
typedef struct table {
    size_t ncols, nrows, cap;
    char **cells;
    size_t width[MAXCOLS];
    bool streaming;
} table_t;

static void table_print(table_t *t, FILE *f);
static void table_free(table_t *t);

static void print_row(const table_t *t, const char *const *cols, FILE *f)
{
    for (size_t i = 0; i < t->ncols; i++) {
        if (i + 1 < t->ncols)
            fprintf(f, "%-*s  ", (int)t->width[i], cols[i] ? cols[i] : "");
        else
            fprintf(f, "%s\n", cols[i] ? cols[i] : "");
    }
}

static void table_add(table_t *t, const char *const *cols)
{
    if (t->streaming) {
        print_row(t, cols, stdout);
        return;
    }
    if (t->nrows == TABLE_BUFFER) {
        table_print(t, stdout);
        table_free(t);
        t->streaming = true;
        print_row(t, cols, stdout);
        return;
    }
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **p = realloc(t->cells, cap * t->ncols * sizeof(*p));
        if (p == NULL) {
            errf("out of memory");
            exit(EXIT_ERR);
        }
        t->cells = p;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        char *s = strdup(cols[i] ? cols[i] : "");
        if (s == NULL) {
            errf("out of memory");
            exit(EXIT_ERR);
        }
        t->cells[t->nrows * t->ncols + i] = s;
        size_t w = strlen(s);
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->nrows++;
}

static void table_print(table_t *t, FILE *f)
{
    for (size_t r = 0; r < t->nrows; r++)
        print_row(t, (const char *const *)&t->cells[r * t->ncols], f);
}

static void table_free(table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

static void json_out(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

/* ---- YAML (libyaml's emitter; strings quoted unless plainly a string) ---------------------- */

typedef struct yout {
    yaml_emitter_t em;
    bool ok;
} yout_t;

static void y_emit(yout_t *y, yaml_event_t *ev)
{
    if (y->ok && !yaml_emitter_emit(&y->em, ev))
        y->ok = false;
}

/* Plain only when every YAML 1.1 reader (kubectl's included) reads it back as this very
 * string: identifier-like, not starting with a digit, not a boolean or null word. */
static bool plain_ok(const char *s, size_t n)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "y", "n",
                                        "null"};
    if (n == 0 || n > 256)
        return false;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_' && s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '/')
            return false;
    }
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strlen(words[i]) == n && strncasecmp(s, words[i], n) == 0)
            return false;
    return true;
}

static void y_scalar(yout_t *y, const char *s, size_t n, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (n > INT_MAX)
        n = INT_MAX;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)s, (int)n, 1, 1, style)) {
        y->ok = false;
        return;
    }
    y_emit(y, &ev);
}

static void y_string(yout_t *y, const char *s, size_t n)
{
    yaml_scalar_style_t style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (plain_ok(s, n))
        style = YAML_PLAIN_SCALAR_STYLE;
    else if (memchr(s, '\n', n) != NULL && memchr(s, '\0', n) == NULL)
        style = YAML_LITERAL_SCALAR_STYLE; /* libyaml falls back to quoted when it must */
    y_scalar(y, s, n, style);
}

/* Shortest text that reads back as the same double, always recognisably a float. */
static void fmt_real(double d, char *buf, size_t size)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (strchr(buf, '.') == NULL) {
        char *e = strpbrk(buf, "eE");
        char tail[40] = "";
        if (e != NULL) {
            snprintf(tail, sizeof(tail), "%s", e);
            *e = '\0';
        }
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, ".0%s", tail);
    }
}

static void y_json(yout_t *y, const json_t *v)
{
    yaml_event_t ev;
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                            json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE
                                                                : YAML_FLOW_MAPPING_STYLE);
        y_emit(y, &ev);
        for (void *it = json_object_iter((json_t *)v); it != NULL && y->ok;
             it = json_object_iter_next((json_t *)v, it)) {
            y_string(y, json_object_iter_key(it), json_object_iter_key_len(it));
            y_json(y, json_object_iter_value(it));
        }
        yaml_mapping_end_event_initialize(&ev);
        y_emit(y, &ev);
        return;
    }
    case JSON_ARRAY: {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                             json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
                                                                : YAML_FLOW_SEQUENCE_STYLE);
        y_emit(y, &ev);
        for (size_t i = 0; i < json_array_size(v) && y->ok; i++)
            y_json(y, json_array_get(v, i));
        yaml_sequence_end_event_initialize(&ev);
        y_emit(y, &ev);
        return;
    }
    case JSON_STRING:
        y_string(y, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        y_scalar(y, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
        return;
    case JSON_REAL:
        fmt_real(json_real_value(v), num, sizeof(num));
        y_scalar(y, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
        return;
    case JSON_TRUE:
        y_scalar(y, "true", 4, YAML_PLAIN_SCALAR_STYLE);
        return;
    case JSON_FALSE:
        y_scalar(y, "false", 5, YAML_PLAIN_SCALAR_STYLE);
        return;
    case JSON_NULL:
        y_scalar(y, "null", 4, YAML_PLAIN_SCALAR_STYLE);
        return;
    }
}

static bool y_begin(yout_t *y, FILE *f)
{
    yaml_event_t ev;
    memset(y, 0, sizeof(*y));
    if (!yaml_emitter_initialize(&y->em))
        return false;
    y->ok = true;
    yaml_emitter_set_output_file(&y->em, f);
    yaml_emitter_set_unicode(&y->em, 1);
    yaml_emitter_set_width(&y->em, -1);
    yaml_emitter_set_indent(&y->em, 2);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    y_emit(y, &ev);
    return y->ok;
}

/* One document; explicit "---" unless it is the only one (first && !multi). */
static void y_doc(yout_t *y, const json_t *v, bool explicit_start)
{
    yaml_event_t ev;
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, explicit_start ? 0 : 1);
    y_emit(y, &ev);
    y_json(y, v);
    yaml_document_end_event_initialize(&ev, 1);
    y_emit(y, &ev);
}

static bool y_end(yout_t *y)
{
    yaml_event_t ev;
    yaml_stream_end_event_initialize(&ev);
    y_emit(y, &ev);
    yaml_emitter_flush(&y->em);
    bool ok = y->ok;
    if (!ok)
        errf("YAML output failed: %s", y->em.problem ? y->em.problem : "write error");
    yaml_emitter_delete(&y->em);
    return ok;
}

/* ---- records as JSON ------------------------------------------------------------------------ */

static json_t *event_json(const jnl_event_t *e)
{
    char t[48];
    fmt_time(e->time_ns, t, sizeof(t));
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "time", json_string(t));
    json_object_set_new(o, "timeNs", json_integer((json_int_t)e->time_ns));
    json_object_set_new(o, "source", json_string(jnl_source_name(e->source)));
    json_object_set_new(o, "type", json_string(jnl_type_name(e->type)));
    json_object_set_new(o, "apiVersion", json_string(e->api_version));
    json_object_set_new(o, "kind", json_string(e->kind));
    json_object_set_new(o, "namespace", json_string(e->ns));
    json_object_set_new(o, "name", json_string(e->name));
    json_object_set_new(o, "uid", json_string(e->uid));
    json_object_set_new(o, "resourceVersion", json_string(e->resource_version));
    json_object_set_new(o, "generation", json_integer(e->generation));
    return o;
}

static json_t *record_json(const jnl_record_t *r, bool with_object)
{
    char h[2 * JNL_HASH_LEN + 1];
    json_t *o = event_json(&r->ev);
    hex(r->prev_hash, JNL_HASH_LEN, h);
    json_object_set_new(o, "prevHash", json_string(h));
    hex(r->hash, JNL_HASH_LEN, h);
    json_object_set_new(o, "hash", json_string(h));
    json_object_set_new(o, "size", json_integer((json_int_t)r->size));
    if (with_object)
        json_object_set(o, "object", r->ev.object ? r->ev.object : json_null());
    return o;
}

/* ---- filters (ls, tail) ---------------------------------------------------------------------- */

typedef struct filter {
    const char *kind, *ns, *name;
    int type; /* -1: any */
    bool has_since, has_until;
    uint64_t since, until;
} filter_t;

static bool filter_match(const filter_t *f, const jnl_event_t *e)
{
    if (f->kind && strcasecmp(f->kind, e->kind) != 0)
        return false;
    if (f->ns && strcmp(f->ns, e->ns) != 0)
        return false;
    if (f->name && strcmp(f->name, e->name) != 0)
        return false;
    if (f->type >= 0 && (int)e->type != f->type)
        return false;
    if (f->has_since && e->time_ns < f->since)
        return false;
    if (f->has_until && e->time_ns > f->until)
        return false;
    return true;
}

static void row_cols(const jnl_record_t *r, char bufs[7][160], const char *cols[7])
{
    char h[2 * JNL_HASH_LEN + 1];
    snprintf(bufs[0], 160, "%" PRIu64, r->ev.seq);
    fmt_time(r->ev.time_ns, bufs[1], 160);
    snprintf(bufs[2], 160, "%s", jnl_type_name(r->ev.type));
    snprintf(bufs[3], 160, "%s", or_dash(r->ev.kind));
    obj_name(&r->ev, bufs[4], 160);
    snprintf(bufs[5], 160, "%s", or_dash(r->ev.resource_version));
    hex(r->hash, 6, h);
    snprintf(bufs[6], 160, "%s", h);
    for (int i = 0; i < 7; i++)
        cols[i] = bufs[i];
}

static const char *const LS_HEADER[7] = {"SEQ", "TIME", "TYPE", "KIND", "NAMESPACE/NAME", "RV",
                                         "HASH"};

/* ---- option parsing shared by commands ------------------------------------------------------- */

enum { OPT_KIND = 1000, OPT_NS, OPT_NAME, OPT_TYPE, OPT_SINCE, OPT_UNTIL, OPT_AT, OPT_FROM,
       OPT_TO, OPT_LIMIT, OPT_ALL, OPT_INTERVAL, OPT_DRY_RUN };

static int common_opt(ctx_t *c, int opt, const char *arg)
{
    switch (opt) {
    case 'o':
        if (strcmp(arg, "json") == 0)
            c->out = OUT_JSON;
        else if (strcmp(arg, "yaml") == 0)
            c->out = OUT_YAML;
        else if (strcmp(arg, "text") == 0 || strcmp(arg, "wide") == 0)
            c->out = OUT_TEXT;
        else {
            errf("unknown output format \"%s\" (json, yaml or text)", arg);
            return EXIT_ERR;
        }
        c->out_set = true;
        return EXIT_OK;
    case 'j':
        c->journal_arg = arg;
        return EXIT_OK;
    default:
        return EXIT_ERR;
    }
}

static const cmd_t *find_cmd(const char *name);
static void cmd_usage(const cmd_t *cmd, FILE *f);

#define COMMON_LONGOPTS                                                             \
    {"output", required_argument, NULL, 'o'}, {"journal", required_argument, NULL, 'j'}, \
        {"help", no_argument, NULL, 'h'}

/* Parse filter options; returns -1 when opt is not one of them. */
static int filter_opt(filter_t *f, int opt, const char *arg)
{
    switch (opt) {
    case OPT_KIND:
        f->kind = arg;
        return EXIT_OK;
    case OPT_NS:
        f->ns = arg;
        return EXIT_OK;
    case OPT_NAME:
        f->name = arg;
        return EXIT_OK;
    case OPT_TYPE: {
        jnl_type_t t;
        if (jnl_type_parse(arg, &t) != 0) {
            errf("unknown event type \"%s\" (ADDED, MODIFIED, DELETED, RELIST_BEGIN, RELIST_END)",
                 arg);
            return EXIT_ERR;
        }
        f->type = (int)t;
        return EXIT_OK;
    }
    case OPT_SINCE:
        if (!parse_time(arg, &f->since)) {
            errf("bad time \"%s\" (RFC 3339 like 2026-11-23T10:00:00Z, or 10m, 2h, 1d ago)", arg);
            return EXIT_ERR;
        }
        f->has_since = true;
        return EXIT_OK;
    case OPT_UNTIL:
        if (!parse_time(arg, &f->until)) {
            errf("bad time \"%s\" (RFC 3339 like 2026-11-23T10:00:00Z, or 10m, 2h, 1d ago)", arg);
            return EXIT_ERR;
        }
        f->has_until = true;
        return EXIT_OK;
    default:
        return -1;
    }
}

#define FILTER_LONGOPTS                                                                         \
    {"kind", required_argument, NULL, OPT_KIND}, {"namespace", required_argument, NULL, OPT_NS}, \
        {"name", required_argument, NULL, OPT_NAME}, {"type", required_argument, NULL, OPT_TYPE}, \
        {"since", required_argument, NULL, OPT_SINCE},                                          \
        {"until", required_argument, NULL, OPT_UNTIL}

/* Runs getopt over a command's argv; handles common and filter options, calls back for
 * the rest. Returns EXIT_OK, EXIT_ERR, or -1 after --help was printed. */
typedef int (*optfn_t)(void *arg, int opt, const char *val);

/* For commands that take no positional argument: an extra one is a usage error. */
static int no_args_left(const char *cmd, int argc, char **argv)
{
    if (optind < argc) {
        errf("%s: unexpected argument \"%s\"", cmd, argv[optind]);
        return EXIT_ERR;
    }
    return 0;
}

static int parse_opts(ctx_t *c, const cmd_t *cmd, int argc, char **argv, const char *shortopts,
                      const struct option *longopts, filter_t *f, optfn_t fn, void *arg)
{
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        int rc;
        if (opt == 'h') {
            cmd_usage(cmd, stdout);
            return -1;
        }
        if (opt == '?' || opt == ':') {
            if (optopt != 0 && optopt < 256)
                errf("%s: bad option -%c (see %s %s --help)", cmd->name, optopt, prog, cmd->name);
            else
                errf("%s: bad option %s (see %s %s --help)", cmd->name, argv[optind - 1], prog,
                     cmd->name);
            return EXIT_ERR;
        }
        if (opt == 'o' || opt == 'j') {
            if ((rc = common_opt(c, opt, optarg)) != 0)
                return rc;
            continue;
        }
        /* -n: the namespace, except for tail where it is the count (as in tail(1)). */
        if (opt == 'n')
            opt = strcmp(cmd->name, "tail") == 0 ? 'N' : OPT_NS;
        if (f != NULL && (rc = filter_opt(f, opt, optarg)) >= 0) {
            if (rc != 0)
                return rc;
            continue;
        }
        if (fn == NULL || (rc = fn(arg, opt, optarg)) != 0)
            return rc ? rc : EXIT_ERR;
    }
    return EXIT_OK;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    if (!all_digits(s))
        return false;
    errno = 0;
    *v = strtoull(s, NULL, 10);
    return errno == 0;
}

/* ---- ls ---------------------------------------------------------------------------------------- */

typedef struct ls_opts {
    uint64_t from, limit;
} ls_opts_t;

static int ls_opt(void *arg, int opt, const char *val)
{
    ls_opts_t *o = arg;
    if (opt == OPT_FROM && parse_u64(val, &o->from))
        return 0;
    if (opt == OPT_LIMIT && parse_u64(val, &o->limit))
        return 0;
    errf("bad number \"%s\"", val);
    return EXIT_ERR;
}

/* The first seq to look at for a filter (times map to seqs through the time index). */
static int start_seq(ctx_t *c, const filter_t *f, uint64_t from, uint64_t *out)
{
    bd_err_t err;
    *out = from;
    if (f->has_since && f->since > 0) {
        uint64_t s = 0;
        int rc = jnl_seq_at_time(c->j, f->since - 1, &s, &err);
        if (rc == 0 && s + 1 > *out)
            *out = s + 1;
        else if (rc != 0 && rc != BD_ENOTFOUND) {
            errf("%s", err.msg);
            return EXIT_ERR;
        }
    }
    return EXIT_OK;
}

static int cmd_ls(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, FILTER_LONGOPTS,
                                             {"from", required_argument, NULL, OPT_FROM},
                                             {"limit", required_argument, NULL, OPT_LIMIT},
                                             {NULL, 0, NULL, 0}};
    filter_t f = {.type = -1};
    ls_opts_t lo = {0};
    int rc = parse_opts(c, find_cmd("ls"), argc, argv, "ho:j:n:", longopts, &f, ls_opt, &lo);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = no_args_left("ls", argc, argv)) != 0)
        return rc;
    if ((rc = open_journal(c)) != 0)
        return rc;
    uint64_t start;
    if ((rc = start_seq(c, &f, lo.from, &start)) != 0)
        return rc;
    jnl_iter_t *it = NULL;
    bd_err_t err;
    if (jnl_iter_new(c->j, start, JNL_DECODE_NO_OBJECT, &it, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    table_t t = {.ncols = 7};
    /* JSON streams (one element at a time); YAML is built whole. */
    json_t *arr = c->out == OUT_YAML ? json_array() : NULL;
    if (c->out == OUT_TEXT)
        table_add(&t, LS_HEADER);
    else if (c->out == OUT_JSON)
        fputs("[", stdout);
    uint64_t shown = 0;
    int ret = EXIT_OK;
    for (;;) {
        jnl_record_t *r = NULL;
        int n = jnl_iter_next(it, &r, &err);
        if (n == BD_ENOTFOUND)
            break;
        if (n != 0) {
            errf("%s", err.msg);
            ret = EXIT_ERR;
            break;
        }
        if (f.has_until && r->ev.time_ns > f.until) {
            jnl_record_free(r);
            break;
        }
        if (filter_match(&f, &r->ev)) {
            if (arr != NULL) {
                json_array_append_new(arr, record_json(r, false));
            } else if (c->out == OUT_JSON) {
                json_t *o = record_json(r, false);
                char *txt = json_dumps(o, JSON_INDENT(2));
                json_decref(o);
                if (txt != NULL) {
                    /* Indent the element one level inside the array. */
                    fputs(shown ? ",\n  " : "\n  ", stdout);
                    for (const char *q = txt; *q; q++) {
                        fputc(*q, stdout);
                        if (*q == '\n')
                            fputs("  ", stdout);
                    }
                    free(txt);
                }
            } else {
                char bufs[7][160];
                const char *cols[7];
                row_cols(r, bufs, cols);
                table_add(&t, cols);
            }
            shown++;
        }
        jnl_record_free(r);
        if (lo.limit && shown >= lo.limit)
            break;
    }
    jnl_iter_free(it);
    if (arr != NULL) {
        yout_t y;
        if (y_begin(&y, stdout)) {
            y_doc(&y, arr, false);
            y_end(&y);
        }
        json_decref(arr);
    } else if (c->out == OUT_JSON) {
        fputs(shown ? "\n]\n" : "]\n", stdout);
    } else {
        table_print(&t, stdout);
        table_free(&t);
    }
    return ret;
}

/* ---- show ---------------------------------------------------------------------------------------- */

static int cmd_show(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int rc = parse_opts(c, find_cmd("show"), argc, argv, "ho:j:", longopts, NULL, NULL, NULL);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    uint64_t seq;
    if (optind + 1 != argc || !parse_u64(argv[optind], &seq)) {
        errf("show: expected one SEQ (see %s show --help)", prog);
        return EXIT_ERR;
    }
    if ((rc = open_journal(c)) != 0)
        return rc;
    jnl_record_t *r = NULL;
    bd_err_t err;
    rc = jnl_get(c->j, seq, 0, &r, &err);
    if (rc != 0) {
        errf("%s", err.msg);
        return rc == BD_ENOTFOUND ? EXIT_FAIL : EXIT_ERR;
    }
    json_t *o = record_json(r, true);
    if (c->out == OUT_JSON) {
        json_out(o);
    } else {
        yout_t y;
        if (!y_begin(&y, stdout))
            rc = EXIT_ERR;
        else {
            y_doc(&y, o, false);
            rc = y_end(&y) ? EXIT_OK : EXIT_ERR;
        }
    }
    json_decref(o);
    jnl_record_free(r);
    return rc;
}

/* ---- tail ------------------------------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    g_stop = 1;
}

typedef struct tail_opts {
    bool follow;
    uint64_t n;
    uint64_t interval_ms;
} tail_opts_t;

static int tail_opt(void *arg, int opt, const char *val)
{
    tail_opts_t *o = arg;
    if (opt == 'f') {
        o->follow = true;
        return 0;
    }
    if (opt == 'N' && parse_u64(val, &o->n))
        return 0;
    if (opt == OPT_INTERVAL) {
        uint64_t d;
        if (parse_duration(val, &d) && d >= 1000000u) {
            o->interval_ms = d / 1000000u;
            return 0;
        }
    }
    errf("bad value \"%s\"", val);
    return EXIT_ERR;
}

static void tail_print(ctx_t *c, const jnl_record_t *r)
{
    if (c->out == OUT_JSON) {
        json_t *o = record_json(r, false);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
        return;
    }
    char bufs[7][160];
    const char *cols[7];
    row_cols(r, bufs, cols);
    printf("%-8s  %-24s  %-12s  %-16s  %-32s  %-10s  %s\n", cols[0], cols[1], cols[2], cols[3],
           cols[4], cols[5], cols[6]);
}

static int cmd_tail(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, FILTER_LONGOPTS,
                                             {"follow", no_argument, NULL, 'f'},
                                             {"lines", required_argument, NULL, 'N'},
                                             {"interval", required_argument, NULL, OPT_INTERVAL},
                                             {NULL, 0, NULL, 0}};
    filter_t f = {.type = -1};
    tail_opts_t to = {.n = 10, .interval_ms = 200};
    /* -n is the line count here (as in tail(1)); the namespace is --namespace. */
    int rc = parse_opts(c, find_cmd("tail"), argc, argv, "ho:j:fn:", longopts, &f, tail_opt, &to);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = no_args_left("tail", argc, argv)) != 0)
        return rc;
    if (c->out == OUT_YAML)
        c->out = OUT_JSON;
    if ((rc = open_journal(c)) != 0)
        return rc;
    bd_err_t err;
    uint64_t first = 0, last = 0;
    if (jnl_bounds(c->j, &first, &last, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    /* Where the last N matching events start: scan growing windows back from the end,
     * remembering the last N matches in a ring. */
    uint64_t start = last + 1;
    if (to.n > 0 && last > 0) {
        uint64_t cap = to.n, window = to.n;
        uint64_t *ring = malloc(cap * sizeof(*ring));
        if (ring == NULL) {
            errf("out of memory");
            return EXIT_ERR;
        }
        for (;;) {
            uint64_t from = last - first + 1 > window ? last - window + 1 : first, found = 0;
            jnl_iter_t *it = NULL;
            if (jnl_iter_new(c->j, from, JNL_DECODE_NO_OBJECT, &it, &err) != 0)
                break;
            jnl_record_t *r = NULL;
            int n;
            while ((n = jnl_iter_next(it, &r, &err)) == 0 || n == BD_ECORRUPT) {
                if (n != 0)
                    continue;
                bool stop = r->ev.seq > last;
                if (!stop && filter_match(&f, &r->ev))
                    ring[found++ % cap] = r->ev.seq;
                jnl_record_free(r);
                if (stop)
                    break;
            }
            jnl_iter_free(it);
            if (found >= to.n || from == first) {
                if (found > 0)
                    start = found >= cap ? ring[found % cap] : ring[0];
                break;
            }
            window = window > UINT64_MAX / 4 ? UINT64_MAX : window * 4;
        }
        free(ring);
    }
    if (c->out == OUT_TEXT)
        printf("%-8s  %-24s  %-12s  %-16s  %-32s  %-10s  %s\n", LS_HEADER[0], LS_HEADER[1],
               LS_HEADER[2], LS_HEADER[3], LS_HEADER[4], LS_HEADER[5], LS_HEADER[6]);
    jnl_iter_t *it = NULL;
    if (jnl_iter_new(c->j, start, JNL_DECODE_NO_OBJECT, &it, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int ret = EXIT_OK;
    while (!g_stop) {
        jnl_record_t *r = NULL;
        int n = jnl_iter_next(it, &r, &err);
        if (n == 0) {
            if (filter_match(&f, &r->ev))
                tail_print(c, r);
            jnl_record_free(r);
            continue;
        }
        if (n != BD_ENOTFOUND) {
            errf("%s", err.msg);
            ret = EXIT_ERR;
            if (n != BD_ECORRUPT)
                break;
            continue; /* the iterator moved past the bad record */
        }
        if (!to.follow)
            break;
        fflush(stdout);
        struct timespec ts = {(time_t)(to.interval_ms / 1000), (long)(to.interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    jnl_iter_free(it);
    return ret;
}

/* ---- diffs between JSON values (history, diff) ----------------------------------------------- */

typedef struct change {
    char op; /* '+', '-', '~' */
    char *path;
    json_t *from, *to; /* borrowed */
} change_t;

typedef struct changes {
    change_t *v;
    size_t n, cap;
} changes_t;

static bool ident(const char *k, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)k[0]) || k[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)k[i]) && k[i] != '_' && k[i] != '-')
            return false;
    return true;
}

static char *path_key(const char *base, const char *k, size_t n)
{
    char *out = NULL;
    if (ident(k, n)) {
        if (asprintf(&out, "%s%s%.*s", base, *base ? "." : "", (int)n, k) < 0)
            out = NULL;
    } else {
        json_t *s = json_stringn(k, n);
        char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        if (q == NULL || asprintf(&out, "%s[%s]", base, q) < 0)
            out = NULL;
        free(q);
        json_decref(s);
    }
    return out;
}

static void add_change(changes_t *cs, char op, char *path, json_t *from, json_t *to)
{
    if (path == NULL)
        return;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 16;
        change_t *v = realloc(cs->v, cap * sizeof(*v));
        if (v == NULL) {
            free(path);
            return;
        }
        cs->v = v;
        cs->cap = cap;
    }
    cs->v[cs->n++] = (change_t){op, path, from, to};
}

static void changes_free(changes_t *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        free(cs->v[i].path);
    free(cs->v);
    memset(cs, 0, sizeof(*cs));
}

static void diff_json(changes_t *cs, const char *path, json_t *a, json_t *b)
{
    if (json_is_object(a) && json_is_object(b)) {
        size_t n = json_object_size(a) + json_object_size(b), k = 0;
        const char **keys = malloc((n ? n : 1) * sizeof(*keys));
        const char *key;
        json_t *v;
        if (keys == NULL)
            return;
        json_object_foreach(a, key, v) keys[k++] = key;
        json_object_foreach(b, key, v) if (json_object_get(a, key) == NULL) keys[k++] = key;
        bd_qsort(keys, k, sizeof(*keys), bd_cmp_strp);
        for (size_t i = 0; i < k; i++) {
            json_t *x = json_object_get(a, keys[i]), *y = json_object_get(b, keys[i]);
            char *p = path_key(path, keys[i], strlen(keys[i]));
            if (x == NULL)
                add_change(cs, '+', p, NULL, y);
            else if (y == NULL)
                add_change(cs, '-', p, x, NULL);
            else {
                if (p != NULL)
                    diff_json(cs, p, x, y);
                free(p);
            }
        }
        free(keys);
        return;
    }
    if (json_is_array(a) && json_is_array(b)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na || i < nb; i++) {
            char *p = NULL;
            if (asprintf(&p, "%s[%zu]", path, i) < 0)
                return;
            if (i >= na)
                add_change(cs, '+', p, NULL, json_array_get(b, i));
            else if (i >= nb)
                add_change(cs, '-', p, json_array_get(a, i), NULL);
            else {
                diff_json(cs, p, json_array_get(a, i), json_array_get(b, i));
                free(p);
            }
        }
        return;
    }
    if (!json_equal(a, b))
        add_change(cs, '~', strdup(*path ? path : "(whole object)"), a, b);
}

static void short_value(const json_t *v, char *buf, size_t size)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s == NULL) {
        snprintf(buf, size, "?");
        return;
    }
    if (strlen(s) > 60)
        snprintf(buf, size, "%.57s...", s);
    else
        snprintf(buf, size, "%s", s);
    free(s);
}

static void print_changes(const changes_t *cs, const char *indent)
{
    char a[80], b[80];
    for (size_t i = 0; i < cs->n; i++) {
        const change_t *ch = &cs->v[i];
        if (ch->op == '+') {
            short_value(ch->to, b, sizeof(b));
            printf("%s+ %s: %s\n", indent, ch->path, b);
        } else if (ch->op == '-') {
            short_value(ch->from, a, sizeof(a));
            printf("%s- %s: %s\n", indent, ch->path, a);
        } else {
            short_value(ch->from, a, sizeof(a));
            short_value(ch->to, b, sizeof(b));
            printf("%s~ %s: %s -> %s\n", indent, ch->path, a, b);
        }
    }
}

static json_t *changes_json(const changes_t *cs)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < cs->n; i++) {
        const change_t *ch = &cs->v[i];
        json_t *o = json_pack("{s:s, s:s}", "op",
                              ch->op == '+' ? "added" : ch->op == '-' ? "removed" : "changed",
                              "path", ch->path);
        if (ch->from)
            json_object_set(o, "from", ch->from);
        if (ch->to)
            json_object_set(o, "to", ch->to);
        json_array_append_new(arr, o);
    }
    return arr;
}

/* What `kubectl apply` should get: no status, no server-owned metadata. */
static json_t *strip_for_apply(const json_t *obj)
{
    static const char *const meta_fields[] = {"resourceVersion", "uid", "creationTimestamp",
                                              "managedFields", "generation", "selfLink"};
    json_t *o = json_deep_copy(obj);
    if (o == NULL || !json_is_object(o))
        return o;
    json_object_del(o, "status");
    json_t *meta = json_object_get(o, "metadata");
    if (json_is_object(meta))
        for (size_t i = 0; i < sizeof(meta_fields) / sizeof(meta_fields[0]); i++)
            json_object_del(meta, meta_fields[i]);
    return o;
}

/* Noise in a history diff: every version changes them. */
static json_t *strip_noise(const json_t *obj)
{
    json_t *o = json_deep_copy(obj);
    json_t *meta = json_object_get(o, "metadata");
    if (json_is_object(meta)) {
        json_object_del(meta, "resourceVersion");
        json_object_del(meta, "managedFields");
    }
    return o;
}

/* ---- history ---------------------------------------------------------------------------------- */

typedef struct history_opts {
    bool all;
    const char *api_version;
} history_opts_t;

static int history_opt(void *arg, int opt, const char *val)
{
    history_opts_t *o = arg;
    if (opt == OPT_ALL)
        o->all = true;
    else if (opt == 'a')
        o->api_version = val;
    else
        return EXIT_ERR;
    return 0;
}

static int cmd_history(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS,
                                             {"all-fields", no_argument, NULL, OPT_ALL},
                                             {"api-version", required_argument, NULL, 'a'},
                                             {NULL, 0, NULL, 0}};
    history_opts_t ho = {0};
    int rc = parse_opts(c, find_cmd("history"), argc, argv, "ho:j:a:", longopts, NULL, history_opt,
                        &ho);
    bool all = ho.all;
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (optind + 2 != argc) {
        errf("history: expected KIND NAMESPACE/NAME (see %s history --help)", prog);
        return EXIT_ERR;
    }
    const char *kind = argv[optind];
    char ns[512] = "", name[512];
    const char *slash = strchr(argv[optind + 1], '/');
    if (slash != NULL) {
        snprintf(ns, sizeof(ns), "%.*s", (int)(slash - argv[optind + 1]), argv[optind + 1]);
        snprintf(name, sizeof(name), "%s", slash + 1);
    } else {
        snprintf(name, sizeof(name), "%s", argv[optind + 1]);
    }
    if ((rc = open_journal(c)) != 0)
        return rc;
    uint64_t *seqs = NULL, first = 0;
    size_t n = 0;
    bd_err_t err;
    if (jnl_history(c->j, ho.api_version, kind, ns, name, &seqs, &n, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    if (n == 0) {
        errf("no events for %s %s%s%s in the journal", kind, ns, *ns ? "/" : "", name);
        free(seqs);
        return EXIT_FAIL;
    }
    jnl_bounds(c->j, &first, NULL, &err);
    json_t *arr = c->out != OUT_TEXT ? json_array() : NULL;
    json_t *prev = NULL;
    int ret = EXIT_OK;
    if (arr == NULL && first > 1)
        printf("(events before seq %" PRIu64 " were folded into a checkpoint)\n", first);
    for (size_t i = 0; i < n; i++) {
        jnl_record_t *r = NULL;
        if (jnl_get(c->j, seqs[i], 0, &r, &err) != 0) {
            errf("%s", err.msg);
            ret = EXIT_ERR;
            continue;
        }
        json_t *cur = r->ev.object ? (all ? json_incref(r->ev.object) : strip_noise(r->ev.object))
                                   : NULL;
        changes_t cs = {0};
        if (prev != NULL && cur != NULL)
            diff_json(&cs, "", prev, cur);
        if (arr != NULL) {
            json_t *o = record_json(r, true);
            if (prev != NULL && cur != NULL)
                json_object_set_new(o, "changes", changes_json(&cs));
            json_array_append_new(arr, o);
        } else {
            char t[48];
            fmt_time(r->ev.time_ns, t, sizeof(t));
            printf("%sseq %" PRIu64 "  %s  %-8s  %s %s%s%s  rv=%s  gen=%" PRId64 "\n", i ? "\n" : "",
                   r->ev.seq, t, jnl_type_name(r->ev.type), r->ev.kind, r->ev.ns,
                   *r->ev.ns ? "/" : "", r->ev.name, or_dash(r->ev.resource_version),
                   r->ev.generation);
            if (r->ev.type == JNL_DELETED)
                printf("  (deleted)\n");
            else if (prev == NULL && i > 0)
                printf("  (created again)\n");
            else if (prev == NULL)
                printf("  (first version in the journal)\n");
            else if (cs.n == 0)
                printf("  (no changes)\n");
            else
                print_changes(&cs, "  ");
        }
        changes_free(&cs);
        json_decref(prev);
        prev = r->ev.type == JNL_DELETED ? NULL : cur;
        if (r->ev.type == JNL_DELETED)
            json_decref(cur);
        jnl_record_free(r);
    }
    json_decref(prev);
    free(seqs);
    if (arr != NULL) {
        if (c->out == OUT_YAML) {
            yout_t y;
            if (y_begin(&y, stdout)) {
                y_doc(&y, arr, false);
                y_end(&y);
            }
        } else {
            json_out(arr);
        }
        json_decref(arr);
    }
    return ret;
}

/* ---- stats -------------------------------------------------------------------------------------- */

typedef struct kstat {
    char *kind;
    uint64_t by_type[5];
} kstat_t;

static int kstat_cmp(const void *a, const void *b)
{
    return strcmp(((const kstat_t *)a)->kind, ((const kstat_t *)b)->kind);
}

static void human_bytes(uint64_t b, char *buf, size_t size)
{
    if (b >= (1ull << 30))
        snprintf(buf, size, "%.1f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, size, "%.1f MiB", (double)b / (1ull << 20));
    else
        snprintf(buf, size, "%.1f KiB", (double)b / 1024);
}

static int cmd_stats(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int rc = parse_opts(c, find_cmd("stats"), argc, argv, "ho:j:", longopts, NULL, NULL, NULL);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = no_args_left("stats", argc, argv)) != 0)
        return rc;
    if ((rc = open_journal(c)) != 0)
        return rc;
    bd_err_t err;
    jnl_stats_t st;
    uint8_t id[JNL_ID_LEN];
    char idhex[2 * JNL_ID_LEN + 1] = "";
    if (jnl_stats(c->j, &st, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    if (jnl_id(c->j, id, &err) == 0)
        hex(id, JNL_ID_LEN, idhex);
    kstat_t *ks = NULL;
    size_t nk = 0;
    uint64_t totals[5] = {0};
    jnl_iter_t *it = NULL;
    if (jnl_iter_new(c->j, 0, JNL_DECODE_NO_OBJECT, &it, &err) != 0) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    int ret = EXIT_OK;
    for (;;) {
        jnl_record_t *r = NULL;
        int n = jnl_iter_next(it, &r, &err);
        if (n == BD_ENOTFOUND)
            break;
        if (n != 0) {
            errf("%s", err.msg);
            ret = EXIT_ERR;
            if (n == BD_ECORRUPT)
                continue;
            break;
        }
        const char *kind = *r->ev.kind ? r->ev.kind : "-";
        size_t i;
        for (i = 0; i < nk && strcmp(ks[i].kind, kind) != 0; i++)
            ;
        if (i == nk) {
            kstat_t *p = realloc(ks, (nk + 1) * sizeof(*ks));
            if (p == NULL) {
                jnl_record_free(r);
                break;
            }
            ks = p;
            memset(&ks[nk], 0, sizeof(ks[nk]));
            ks[nk].kind = strdup(kind);
            nk++;
        }
        if ((unsigned)r->ev.type < 5) {
            ks[i].by_type[r->ev.type]++;
            totals[r->ev.type]++;
        }
        jnl_record_free(r);
    }
    jnl_iter_free(it);
    if (nk > 1)
        qsort(ks, nk, sizeof(*ks), kstat_cmp);
    char ft[48] = "-", lt[48] = "-", ct[48] = "";
    if (st.first_time_ns)
        fmt_time(st.first_time_ns, ft, sizeof(ft));
    if (st.last_time_ns)
        fmt_time(st.last_time_ns, lt, sizeof(lt));
    uint64_t ck_time = 0;
    if (st.checkpoint_seq && jnl_checkpoint_latest(c->j, NULL, &ck_time, NULL, &err) == 0)
        fmt_time(ck_time, ct, sizeof(ct));
    unsigned pct = st.map_limit ? (unsigned)(st.used_bytes * 100 / st.map_limit) : 0;
    uint64_t snap_seq = 0;
    size_t snap_len = 0;
    bool have_snap = jnl_snapshot_stat(c->j, JNL_SNAPSHOT_PROJECTOR, &snap_seq, &snap_len, &err) == 0;
    if (c->out != OUT_TEXT) {
        json_t *kinds = json_object();
        for (size_t i = 0; i < nk; i++) {
            json_t *o = json_object();
            uint64_t tot = 0;
            for (int t = 0; t < 5; t++) {
                json_object_set_new(o, jnl_type_name((jnl_type_t)t),
                                    json_integer((json_int_t)ks[i].by_type[t]));
                tot += ks[i].by_type[t];
            }
            json_object_set_new(o, "total", json_integer((json_int_t)tot));
            json_object_set_new(kinds, ks[i].kind, o);
        }
        json_t *types = json_object();
        for (int t = 0; t < 5; t++)
            json_object_set_new(types, jnl_type_name((jnl_type_t)t), json_integer((json_int_t)totals[t]));
        json_t *o = json_pack(
            "{s:s, s:s, s:i, s:I, s:I, s:I, s:s?, s:s?, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:i, s:b}, "
            "s:o, s:o}",
            "journal", c->path, "id", idhex, "formatVersion", JNL_FORMAT_VERSION, "events",
            (json_int_t)st.events, "firstSeq", (json_int_t)st.first_seq, "lastSeq",
            (json_int_t)st.last_seq, "firstTime", st.first_time_ns ? ft : NULL, "lastTime",
            st.last_time_ns ? lt : NULL, "checkpointSeq", (json_int_t)st.checkpoint_seq,
            "checkpoints", (json_int_t)st.checkpoints, "space", "usedBytes",
            (json_int_t)st.used_bytes, "fileBytes", (json_int_t)st.file_bytes, "mapSize",
            (json_int_t)st.map_size, "mapLimit", (json_int_t)st.map_limit, "pageSize",
            (json_int_t)st.page_size, "usedPercent", (int)pct, "nearLimit", st.near_limit,
            "byKind", kinds, "byType", types);
        if (have_snap)
            json_object_set_new(o, "projectorSnapshot",
                                json_pack("{s:I, s:I}", "seq", (json_int_t)snap_seq, "bytes",
                                          (json_int_t)snap_len));
        if (c->out == OUT_YAML) {
            yout_t y;
            if (y_begin(&y, stdout)) {
                y_doc(&y, o, false);
                y_end(&y);
            }
        } else {
            json_out(o);
        }
        json_decref(o);
    } else {
        char used[32], file[32], map[32], lim[32];
        human_bytes(st.used_bytes, used, sizeof(used));
        human_bytes(st.file_bytes, file, sizeof(file));
        human_bytes(st.map_size, map, sizeof(map));
        human_bytes(st.map_limit, lim, sizeof(lim));
        printf("Journal:      %s\n", c->path);
        printf("Id:           %s (format version %d)\n", idhex, JNL_FORMAT_VERSION);
        if (st.events)
            printf("Events:       %" PRIu64 " (seq %" PRIu64 "..%" PRIu64 ")\n", st.events,
                   st.first_seq, st.last_seq);
        else
            printf("Events:       0\n");
        printf("First event:  %s\n", ft);
        printf("Last event:   %s\n", lt);
        if (st.checkpoint_seq)
            printf("Checkpoint:   seq %" PRIu64 " (%s), %" PRIu64 " stored\n", st.checkpoint_seq,
                   ct, st.checkpoints);
        else
            printf("Checkpoint:   none\n");
        if (have_snap) {
            char sb[32];
            human_bytes(snap_len, sb, sizeof(sb));
            printf("Projector:    snapshot at seq %" PRIu64 " (%s)\n", snap_seq, sb);
        } else {
            printf("Projector:    no snapshot\n");
        }
        printf("Space:        %s used of %s (%u%%); file %s, map %s%s\n", used, lim, pct, file, map,
               st.near_limit ? "  NEAR THE LIMIT" : "");
        printf("\n");
        table_t t = {.ncols = 7};
        static const char *const hdr[7] = {"KIND", "ADDED", "MODIFIED", "DELETED", "RELIST_BEGIN",
                                           "RELIST_END", "TOTAL"};
        table_add(&t, hdr);
        for (size_t i = 0; i <= nk; i++) {
            const uint64_t *v = i < nk ? ks[i].by_type : totals;
            char b[7][32];
            const char *cols[7];
            uint64_t tot = 0;
            snprintf(b[0], sizeof(b[0]), "%s", i < nk ? ks[i].kind : "(all)");
            for (int k = 0; k < 5; k++) {
                snprintf(b[k + 1], sizeof(b[k + 1]), "%" PRIu64, v[k]);
                tot += v[k];
            }
            snprintf(b[6], sizeof(b[6]), "%" PRIu64, tot);
            for (int k = 0; k < 7; k++)
                cols[k] = b[k];
            table_add(&t, cols);
        }
        table_print(&t, stdout);
        table_free(&t);
    }
    for (size_t i = 0; i < nk; i++)
        free(ks[i].kind);
    free(ks);
    return ret;
}

/* ---- verify --------------------------------------------------------------------------------------- */

static int cmd_verify(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int rc = parse_opts(c, find_cmd("verify"), argc, argv, "ho:j:", longopts, NULL, NULL, NULL);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = no_args_left("verify", argc, argv)) != 0)
        return rc;
    if ((rc = open_journal(c)) != 0)
        return rc;
    jnl_verify_report_t rep;
    bd_err_t err;
    bd_err_clear(&err);
    rc = jnl_verify(c->j, &rep, &err);
    bool bad = rc == BD_ECORRUPT || rc == BD_EVERSION;
    int ret = rc == 0 ? EXIT_OK : bad ? EXIT_FAIL : EXIT_ERR;
    if (c->out != OUT_TEXT) {
        json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "ok", rc == 0, "events",
                              (json_int_t)rep.events, "first", (json_int_t)rep.first, "last",
                              (json_int_t)rep.last, "anchorSeq", (json_int_t)rep.anchor_seq,
                              "checkpoints", (json_int_t)rep.checkpoints);
        if (rc != 0) {
            json_object_set_new(o, "badSeq", json_integer((json_int_t)rep.bad_seq));
            json_object_set_new(o, "error", json_string(err.msg));
        }
        json_out(o);
        json_decref(o);
        return ret;
    }
    if (rc == 0) {
        char from[64];
        if (rep.anchor_seq)
            snprintf(from, sizeof(from), "checkpoint at seq %" PRIu64, rep.anchor_seq);
        else
            snprintf(from, sizeof(from), "genesis");
        if (rep.events)
            printf("OK: %" PRIu64 " events verified (seq %" PRIu64 "..%" PRIu64
                   "), chain from %s, %" PRIu64 " checkpoint(s)\n",
                   rep.events, rep.first, rep.last, from, rep.checkpoints);
        else
            printf("OK: no events stored, chain from %s, %" PRIu64 " checkpoint(s)\n", from,
                   rep.checkpoints);
        return EXIT_OK;
    }
    printf("FAILED: %s\n", err.msg);
    if (rep.bad_seq)
        printf("first bad seq: %" PRIu64 "\n", rep.bad_seq);
    return ret;
}

/* ---- export ------------------------------------------------------------------------------------------ */

typedef struct export_opts {
    const char *at;
} export_opts_t;

static int export_opt(void *arg, int opt, const char *val)
{
    if (opt == OPT_AT) {
        ((export_opts_t *)arg)->at = val;
        return 0;
    }
    return EXIT_ERR;
}

static int cmd_export(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, FILTER_LONGOPTS,
                                             {"at", required_argument, NULL, OPT_AT},
                                             {NULL, 0, NULL, 0}};
    filter_t f = {.type = -1};
    export_opts_t eo = {0};
    int rc = parse_opts(c, find_cmd("export"), argc, argv, "ho:j:n:", longopts, &f, export_opt, &eo);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = no_args_left("export", argc, argv)) != 0)
        return rc;
    point_t p = {.is_seq = true, .seq = JNL_SEQ_LAST};
    if (eo.at != NULL && !parse_point(eo.at, &p)) {
        errf("export: bad --at \"%s\" (a seq, an RFC 3339 time, or 10m/2h/1d ago)", eo.at);
        return EXIT_ERR;
    }
    if ((rc = open_journal(c)) != 0)
        return rc;
    jnl_state_t *st = NULL;
    if ((rc = state_at(c, &p, &st)) != 0)
        return rc;
    size_t n = jnl_state_count(st);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        const jnl_event_t *e = jnl_state_get(st, i);
        if (e->object == NULL || !filter_match(&f, e))
            continue;
        json_array_append_new(items, strip_for_apply(e->object));
    }
    int ret = EXIT_OK;
    if (c->out == OUT_JSON) {
        json_t *list = json_pack("{s:s, s:s, s:o}", "apiVersion", "v1", "kind", "List", "items",
                                 json_incref(items));
        json_out(list);
        json_decref(list);
    } else {
        char t[48] = "";
        if (jnl_state_seq(st) > 0) {
            jnl_record_t *r = NULL;
            bd_err_t err;
            if (jnl_get(c->j, jnl_state_seq(st), JNL_DECODE_NO_OBJECT, &r, &err) == 0)
                fmt_time(r->ev.time_ns, t, sizeof(t));
            jnl_record_free(r);
        }
        printf("# bindy-journal export: %zu resources as of seq %" PRIu64 "%s%s\n",
               json_array_size(items), jnl_state_seq(st), *t ? " " : "", t);
        fflush(stdout);
        yout_t y;
        if (!y_begin(&y, stdout)) {
            ret = EXIT_ERR;
        } else {
            for (size_t i = 0; i < json_array_size(items); i++)
                y_doc(&y, json_array_get(items, i), true);
            ret = y_end(&y) ? EXIT_OK : EXIT_ERR;
        }
    }
    json_decref(items);
    jnl_state_free(st);
    return ret;
}

/* ---- diff ---------------------------------------------------------------------------------------------- */

typedef struct diff_opts {
    const char *from, *to;
} diff_opts_t;

static int diff_opt(void *arg, int opt, const char *val)
{
    diff_opts_t *o = arg;
    if (opt == OPT_FROM)
        o->from = val;
    else if (opt == OPT_TO)
        o->to = val;
    else
        return EXIT_ERR;
    return 0;
}

static int ev_cmp(const jnl_event_t *a, const jnl_event_t *b)
{
    int c = strcmp(a->api_version, b->api_version);
    if (c == 0)
        c = strcmp(a->kind, b->kind);
    if (c == 0)
        c = strcmp(a->ns, b->ns);
    if (c == 0)
        c = strcmp(a->name, b->name);
    return c;
}

static json_t *key_json(const jnl_event_t *e)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", e->api_version, "kind", e->kind,
                     "namespace", e->ns, "name", e->name);
}

static int cmd_diff(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, FILTER_LONGOPTS,
                                             {"from", required_argument, NULL, OPT_FROM},
                                             {"to", required_argument, NULL, OPT_TO},
                                             {NULL, 0, NULL, 0}};
    filter_t f = {.type = -1};
    diff_opts_t d = {0};
    int rc = parse_opts(c, find_cmd("diff"), argc, argv, "ho:j:n:", longopts, &f, diff_opt, &d);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (d.from == NULL || optind < argc) {
        errf("diff: expected --from A [--to B] (see %s diff --help)", prog);
        return EXIT_ERR;
    }
    point_t pa, pb = {.is_seq = true, .seq = JNL_SEQ_LAST};
    if (!parse_point(d.from, &pa) || (d.to != NULL && !parse_point(d.to, &pb))) {
        errf("diff: bad point (a seq, an RFC 3339 time, or 10m/2h/1d ago)");
        return EXIT_ERR;
    }
    if ((rc = open_journal(c)) != 0)
        return rc;
    jnl_state_t *sa = NULL, *sb = NULL;
    if ((rc = state_at(c, &pa, &sa)) != 0)
        return rc;
    if ((rc = state_at(c, &pb, &sb)) != 0) {
        jnl_state_free(sa);
        return rc;
    }
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    size_t i = 0, k = 0, na = jnl_state_count(sa), nb = jnl_state_count(sb);
    if (c->out == OUT_TEXT)
        printf("# from seq %" PRIu64 " to seq %" PRIu64 "\n", jnl_state_seq(sa), jnl_state_seq(sb));
    while (i < na || k < nb) {
        const jnl_event_t *a = i < na ? jnl_state_get(sa, i) : NULL;
        const jnl_event_t *b = k < nb ? jnl_state_get(sb, k) : NULL;
        int cmp = a == NULL ? 1 : b == NULL ? -1 : ev_cmp(a, b);
        const jnl_event_t *e = cmp <= 0 ? a : b;
        bool match = filter_match(&f, e);
        char nm[600];
        obj_name(e, nm, sizeof(nm));
        if (cmp < 0) {
            if (match) {
                json_array_append_new(removed, key_json(a));
                if (c->out == OUT_TEXT)
                    printf("- %s %s (removed)\n", a->kind, nm);
            }
            i++;
            continue;
        }
        if (cmp > 0) {
            if (match) {
                json_array_append_new(added, key_json(b));
                if (c->out == OUT_TEXT)
                    printf("+ %s %s (added)\n", b->kind, nm);
            }
            k++;
            continue;
        }
        i++;
        k++;
        if (!match)
            continue;
        json_t *x = strip_for_apply(a->object ? a->object : json_null());
        json_t *y = strip_for_apply(b->object ? b->object : json_null());
        changes_t cs = {0};
        diff_json(&cs, "", x, y);
        if (cs.n > 0) {
            json_t *o = key_json(b);
            json_object_set_new(o, "changes", changes_json(&cs));
            json_array_append_new(changed, o);
            if (c->out == OUT_TEXT) {
                printf("~ %s %s (changed)\n", b->kind, nm);
                print_changes(&cs, "    ");
            }
        }
        changes_free(&cs);
        json_decref(x);
        json_decref(y);
    }
    if (c->out != OUT_TEXT) {
        json_t *o = json_pack("{s:I, s:I, s:o, s:o, s:o}", "from", (json_int_t)jnl_state_seq(sa),
                              "to", (json_int_t)jnl_state_seq(sb), "added", json_incref(added),
                              "removed", json_incref(removed), "changed", json_incref(changed));
        json_out(o);
        json_decref(o);
    } else if (json_array_size(added) + json_array_size(removed) + json_array_size(changed) == 0) {
        printf("(no differences)\n");
    }
    json_decref(added);
    json_decref(removed);
    json_decref(changed);
    jnl_state_free(sa);
    jnl_state_free(sb);
    return EXIT_OK;
}

/* ---- import ------------------------------------------------------------------------------------ */

static void import_report_object(void *arg, const mf_object_t *o)
{
    for (size_t i = 0; i < o->rep->n; i++) {
        const val_issue_t *is = &o->rep->items[i];
        fprintf(stderr, "%s:%d: %s %s/%s: %s%s%s%s\n", o->file, doc_line(o->doc, is->path), o->kind, o->ns,
                o->name, is->path, is->path[0] ? ": " : "", is->sev == VAL_WARNING ? "warning: " : "", is->msg);
    }
}

static void import_report_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    if (line > 0)
        fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    else
        fprintf(stderr, "%s: %s\n", file, msg);
}

static int import_opt(void *arg, int opt, const char *val)
{
    if (opt == OPT_DRY_RUN) {
        *(bool *)arg = true;
        return 0;
    }
    return EXIT_ERR;
}

/* Writes: the only command that opens the journal read-write (and creates it). */
static int cmd_import(ctx_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_LONGOPTS, {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                             {NULL, 0, NULL, 0}};
    bool dry = false;
    int rc = parse_opts(c, find_cmd("import"), argc, argv, "ho:j:", longopts, NULL, import_opt, &dry);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (optind >= argc) {
        errf("import: give one or more manifest files or directories");
        return EXIT_ERR;
    }
    resolve_path(c);
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    bd_err_t err;
    val_catalog_t *cat = NULL;
    if (jnl_open(c->path, &o, &c->j, &err) != BD_OK || val_catalog_new(&cat, &err) != BD_OK) {
        errf("%s", err.msg);
        return EXIT_ERR;
    }
    msrc_result_t res;
    mf_visitor_t vis = {import_report_object, import_report_problem};
    rc = msrc_import(c->j, cat, (const char *const *)argv + optind, (size_t)(argc - optind), dry, &vis, NULL, &res,
                     &err);
    val_catalog_free(cat);
    if (rc != BD_OK) {
        errf("import: %s", err.msg);
        return EXIT_ERR;
    }
    if (c->out != OUT_TEXT) {
        json_t *j = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "dryRun", dry, "added",
                              (json_int_t)res.added, "modified", (json_int_t)res.modified, "deleted",
                              (json_int_t)res.deleted, "unchanged", (json_int_t)res.unchanged, "invalid",
                              (json_int_t)res.invalid, "problems", (json_int_t)res.problems, "deletionsHeld",
                              res.deletions_held, "lastSeq", (json_int_t)res.last_seq);
        json_out(j);
        json_decref(j);
    } else {
        printf("%s%zu added, %zu modified, %zu deleted, %zu unchanged", dry ? "would be: " : "", res.added,
               res.modified, res.deleted, res.unchanged);
        if (res.invalid)
            printf("; %zu invalid (their journaled versions are kept)", res.invalid);
        if (res.deletions_held)
            printf("; deletions held until every file parses");
        printf("\n");
    }
    /* like bindy validate: 1 when some input was refused */
    return res.invalid || res.problems ? EXIT_FAIL : EXIT_OK;
}

/* ---- command table --------------------------------------------------------------------------------- */

static const cmd_t commands[] = {
    {"ls", cmd_ls, "[FILTERS] [--from SEQ] [--limit N]",
     "list events: seq, time, type, kind, namespace/name, resourceVersion, short hash",
     "Filters:\n"
     "  --kind KIND           only this kind (case-insensitive)\n"
     "  -n, --namespace NS    only this namespace\n"
     "  --name NAME           only objects with this name\n"
     "  --type TYPE           ADDED, MODIFIED, DELETED, RELIST_BEGIN or RELIST_END\n"
     "  --since TIME          events at or after TIME\n"
     "  --until TIME          events at or before TIME\n"
     "  --from SEQ            start at this seq\n"
     "  --limit N             stop after N events\n"
     "TIME is RFC 3339 (2026-11-23T10:00:00Z, +02:00 offsets) or an age such as 90s, 10m,\n"
     "1h30m, 2d (that long ago).\n"},
    {"show", cmd_show, "SEQ", "the whole record at SEQ (YAML; -o json for JSON)", ""},
    {"tail", cmd_tail, "[-f] [-n N] [FILTERS]", "the last events; -f follows new ones",
     "  -f, --follow          keep printing new events (Ctrl-C stops)\n"
     "  -n, --lines N         how many events to show first (default 10)\n"
     "  --interval DURATION   how often to look for new events (default 200ms)\n"
     "Filters as for ls (the namespace is --namespace here). -o json prints one JSON\n"
     "object per line.\n"},
    {"history", cmd_history, "KIND NAMESPACE/NAME",
     "every version of one object with the fields that changed",
     "NAMESPACE/NAME, or NAME alone for a cluster-scoped object. KIND is case-insensitive.\n"
     "  -a, --api-version V   only this apiVersion (default: all of them)\n"
     "  --all-fields          also diff metadata.resourceVersion and managedFields\n"},
    {"stats", cmd_stats, "", "counts by kind and type, first and last time, size and map use",
     ""},
    {"verify", cmd_verify, "",
     "walk the hash chain and decode every record; exit 1 and name the first bad seq",
     "Checks every record decodes (strictly), its hash, that seqs are contiguous, that each\n"
     "prev_hash is the previous hash (or the checkpoint's anchor), checkpoints, and the head.\n"},
    {"export", cmd_export, "[--at TIME|SEQ] [FILTERS]",
     "every resource as it was at a point, as YAML that kubectl apply -f accepts",
     "  --at POINT            a seq, an RFC 3339 time or an age (default: the latest)\n"
     "status and server-set metadata (resourceVersion, uid, creationTimestamp, managedFields,\n"
     "generation) are removed. -o json prints a v1 List.\n"},
    {"diff", cmd_diff, "--from A [--to B] [FILTERS]",
     "resources added, changed and removed between two points",
     "  --from POINT, --to POINT   seqs, RFC 3339 times or ages (--to defaults to the latest)\n"
     "Objects are compared as export prints them (no status, no server-set metadata).\n"},
    {"import", cmd_import, "[--dry-run] PATH...",
     "append the differences between manifests and the journal's current state",
     "PATH: manifest files or directories (*.yaml, *.yml, *.json), as for bindy validate.\n"
     "New objects become ADDED, changed ones MODIFIED, objects whose manifest is gone DELETED\n"
     "(source \"manifests\"). Invalid objects are reported and keep their journaled version;\n"
     "while a file does not parse, nothing is deleted. Creates the journal when missing.\n"
     "  --dry-run             count the changes, append nothing\n"
     "Exit status: 0 imported, 1 some input refused, 2 error.\n"},
};

static const cmd_t *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void cmd_usage(const cmd_t *cmd, FILE *f)
{
    fprintf(f, "usage: %s [--journal PATH] %s %s [-o json|yaml]\n\n%s.\n\n", prog, cmd->name,
            cmd->args, cmd->summary);
    if (*cmd->help)
        fprintf(f, "%s\n", cmd->help);
    fprintf(f, "Common options:\n"
               "  -j, --journal PATH    the journal directory, or a state directory holding\n"
               "                        journal/ (default: $BINDY_STATE_DIR, else ./state)\n"
               "  -o, --output FORMAT   text (default), json or yaml\n"
               "  -h, --help            this help\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: %s [--journal PATH] [-o json|yaml] COMMAND [ARGS...]\n\n"
               "Inspect a bindy journal (read-only; safe while the operator runs).\n\n"
               "Commands:\n",
            prog);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n"
               "  -j, --journal PATH    the journal directory, or a state directory holding\n"
               "                        journal/ (default: $BINDY_STATE_DIR, else ./state)\n"
               "  -o, --output FORMAT   text (default), json or yaml\n"
               "  -h, --help            this help; `%s COMMAND --help` describes a command\n"
               "  --version             print the version\n\n"
               "Exit status: 0 ok, 1 verification failed or not found, 2 unreadable journal or\n"
               "bad usage. Also runs as `kubectl bindy journal ...`.\n",
            prog);
}

int main(int argc, char **argv)
{
    ctx_t c = {0};
    int i = 1;
    const char *level = getenv("BINDY_LOG_LEVEL");
    bd_log_level_t lv = BD_LOG_WARN;
    if (level != NULL)
        bd_log_parse_level(level, &lv);
    bd_log_set_level(lv);

    /* Global options come before the command. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("bindy-journal %s (journal format %d)\n", BINDY_VERSION, JNL_FORMAT_VERSION);
            return EXIT_OK;
        }
        if (strncmp(a, "--journal=", 10) == 0)
            val = a + 10;
        else if (strncmp(a, "--output=", 9) == 0)
            val = a + 9;
        else if (strcmp(a, "--journal") == 0 || strcmp(a, "-j") == 0 || strcmp(a, "--output") == 0 ||
                 strcmp(a, "-o") == 0) {
            if (i + 1 >= argc) {
                errf("%s needs a value", a);
                return EXIT_ERR;
            }
            val = argv[++i];
        } else {
            errf("unknown option \"%s\"\n", a);
            usage(stderr);
            return EXIT_ERR;
        }
        bool journal = strncmp(a, "--journal", 9) == 0 || strcmp(a, "-j") == 0;
        if (common_opt(&c, journal ? 'j' : 'o', val) != 0)
            return EXIT_ERR;
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_ERR;
    }
    if (strcmp(argv[i], "help") == 0) {
        const cmd_t *cmd = i + 1 < argc ? find_cmd(argv[i + 1]) : NULL;
        if (cmd != NULL)
            cmd_usage(cmd, stdout);
        else
            usage(stdout);
        return EXIT_OK;
    }
    const cmd_t *cmd = find_cmd(argv[i]);
    if (cmd == NULL) {
        errf("unknown command \"%s\"\n", argv[i]);
        usage(stderr);
        return EXIT_ERR;
    }
    int rc = cmd->run(&c, argc - i, argv + i);
    jnl_close(c.j);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE)
            errf("write error: %s", strerror(errno));
        return rc ? rc : EXIT_ERR;
    }
    return rc;
}
