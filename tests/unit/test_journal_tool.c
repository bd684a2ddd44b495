/* test_journal_tool.c - runs the built bindy-journal against a journal written by the
 * library and checks what users and scripts rely on: ls columns, -o json, verify exit
 * codes, export round-trips, history/diff, errors, the kubectl plugin. */
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include <cmocka.h>

#include "journal.h"

#ifndef BINDY_JOURNAL_TOOL
#error "BINDY_JOURNAL_TOOL must name the built tool"
#endif

extern char **environ;

#define APIV "bindy.firestoned.io/v1beta1"
static const uint64_t T0 = 1795000000000000000ull; /* 2026-11-18T... */

static char g_tmp[512];
static char g_jdir[600];

/* ---- running the tool ------------------------------------------------------------------- */

typedef struct result {
    int code;
    char *out, *err;
} result_t;

static void result_free(result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void slurp(int fd, char **buf, size_t *len, size_t *cap)
{
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n <= 0)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        *cap = (*len + (size_t)n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, tmp, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
}

/* Run argv (argv[0] is the program path) with extra environment entries (NULL-terminated
 * list, may be NULL). */
static result_t run_env(char *const *argv, char *const *extra_env)
{
    result_t r = {0};
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, err[0]);
    char *env[256];
    size_t ne = 0;
    for (char **e = environ; *e && ne < 200; e++)
        env[ne++] = *e;
    for (size_t i = 0; extra_env && extra_env[i] && ne < 255; i++)
        env[ne++] = extra_env[i];
    env[ne] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    close(out[1]);
    close(err[1]);
    size_t ol = 0, oc = 1, el = 0, ec = 1;
    r.out = calloc(1, 1);
    r.err = calloc(1, 1);
    struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(p, 2, 30000) <= 0)
            fail_msg("tool timed out: %s", argv[1]);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            size_t before = i == 0 ? ol : el;
            if (i == 0)
                slurp(p[i].fd, &r.out, &ol, &oc);
            else
                slurp(p[i].fd, &r.err, &el, &ec);
            if ((i == 0 ? ol : el) == before) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            }
        }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

/* Run the tool: tool(ARGS..., NULL). */
static result_t tool(const char *first, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)BINDY_JOURNAL_TOOL;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 31; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return run_env(argv, NULL);
}

static json_t *parse_json(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("output is not JSON (%s at line %d): %.300s", e.text, e.line, s);
    return v;
}

/* ---- a YAML reader with YAML 1.1 / kubectl scalar resolution (enough for our output) ---- */

static bool match_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool match_float(const char *s)
{
    char *end;
    if (strchr(s, '.') == NULL)
        return false;
    strtod(s, &end);
    return *end == '\0' && ((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+');
}

static json_t *yaml_value(yaml_parser_t *p, yaml_event_t *ev);

static json_t *yaml_next(yaml_parser_t *p)
{
    yaml_event_t ev;
    if (!yaml_parser_parse(p, &ev))
        fail_msg("YAML parse error: %s (line %zu)", p->problem, p->problem_mark.line + 1);
    json_t *v = yaml_value(p, &ev);
    yaml_event_delete(&ev);
    return v;
}

static json_t *yaml_value(yaml_parser_t *p, yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *s = (const char *)ev->data.scalar.value;
        size_t n = ev->data.scalar.length;
        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return json_stringn(s, n);
        if (n == 0 || strcmp(s, "null") == 0 || strcmp(s, "~") == 0)
            return json_null();
        if (strcmp(s, "true") == 0)
            return json_true();
        if (strcmp(s, "false") == 0)
            return json_false();
        if (match_int(s))
            return json_integer(strtoll(s, NULL, 10));
        if (match_float(s))
            return json_real(strtod(s, NULL));
        return json_stringn(s, n);
    }
    case YAML_MAPPING_START_EVENT: {
        json_t *o = json_object();
        for (;;) {
            yaml_event_t k;
            if (!yaml_parser_parse(p, &k))
                fail_msg("YAML parse error: %s", p->problem);
            if (k.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&k);
                return o;
            }
            assert_int_equal(k.type, YAML_SCALAR_EVENT);
            char *key = strndup((const char *)k.data.scalar.value, k.data.scalar.length);
            yaml_event_delete(&k);
            json_object_set_new(o, key, yaml_next(p));
            free(key);
        }
    }
    case YAML_SEQUENCE_START_EVENT: {
        json_t *a = json_array();
        for (;;) {
            yaml_event_t e;
            if (!yaml_parser_parse(p, &e))
                fail_msg("YAML parse error: %s", p->problem);
            if (e.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&e);
                return a;
            }
            json_array_append_new(a, yaml_value(p, &e));
            yaml_event_delete(&e);
        }
    }
    default:
        fail_msg("unexpected YAML event %d", ev->type);
    }
    return NULL;
}

/* All documents of a YAML stream, as a JSON array. */
static json_t *parse_yaml_docs(const char *s)
{
    yaml_parser_t p;
    yaml_event_t ev;
    json_t *docs = json_array();
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)s, strlen(s));
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            fail_msg("YAML parse error: %s (line %zu)", p.problem, p.problem_mark.line + 1);
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t == YAML_DOCUMENT_START_EVENT) {
            json_array_append_new(docs, yaml_next(&p));
            if (!yaml_parser_parse(&p, &ev))
                fail_msg("YAML parse error: %s", p.problem);
            assert_int_equal(ev.type, YAML_DOCUMENT_END_EVENT);
            yaml_event_delete(&ev);
        }
    }
    yaml_parser_delete(&p);
    return docs;
}

/* ---- the journal under test ------------------------------------------------------------- */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static json_t *tricky(void)
{
    return json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:f, "
                     "s:f, s:n, s:{}, s:[], s:b, s:[i,s,f]}, s:{s:s}}",
                     "apiVersion", APIV, "kind", "Bind9Cluster", "metadata", "name", "global",
                     "spec", "t", "true", "num", "123", "empty", "", "colon", "a: b", "multi",
                     "line1\nline2\n", "uni", "ünïcødé 日本 🎉", "on", "off", "dash", "-x",
                     "int", -42, "one", 1.0, "half", 0.5, "nil", "eo", "ea", "yes", 1, "list", 7,
                     "07", 1e-7, "status", "phase", "Ready");
}

static void add(jnl_t *j, jnl_type_t type, const char *kind, const char *ns, const char *name,
                json_t *obj, uint64_t t)
{
    jnl_event_t ev = {.time_ns = t,
                      .source = JNL_SRC_KUBERNETES,
                      .type = type,
                      .api_version = APIV,
                      .kind = kind,
                      .ns = ns,
                      .name = name,
                      .uid = "11111111-2222",
                      .resource_version = "100",
                      .generation = 1,
                      .object = obj};
    bd_err_t err;
    if (jnl_append_sync(j, &ev, NULL, &err) != 0)
        fail_msg("append: %s", err.msg);
    json_decref(obj);
}

static json_t *zone(const char *name, int ttl)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:i, s:s, s:[{s:s}]}, s:{s:s, s:i}, "
                     "s:{s:s}}",
                     "apiVersion", APIV, "kind", "DNSZone", "metadata", "name", name, "namespace",
                     "dns", "uid", "u-1", "resourceVersion", "100", "generation", 2,
                     "creationTimestamp", "2026-11-18T00:00:00Z", "managedFields", "manager",
                     "kubectl", "spec", "zoneName", "example.com", "ttl", ttl, "status", "phase",
                     "Ready");
}

static json_t *arec(const char *name, const char *ip)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}", "apiVersion", APIV, "kind",
                     "ARecord", "metadata", "name", name, "namespace", "dns", "spec", "name", name,
                     "ipv4Address", ip);
}

static void make_journal(const char *dir)
{
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    assert_int_equal(jnl_open(dir, &o, &j, &err), 0);
    const uint64_t S = 1000000000ull;
    add(j, JNL_ADDED, "DNSZone", "dns", "example-com", zone("example-com", 300), T0 + 1 * S);
    add(j, JNL_ADDED, "ARecord", "dns", "www", arec("www", "192.0.2.1"), T0 + 2 * S);
    add(j, JNL_MODIFIED, "DNSZone", "dns", "example-com", zone("example-com", 600), T0 + 3 * S);
    add(j, JNL_RELIST_BEGIN, "DNSZone", "", "", NULL, T0 + 4 * S);
    add(j, JNL_RELIST_END, "DNSZone", "", "", NULL, T0 + 5 * S);
    add(j, JNL_ADDED, "ARecord", "dns", "mail", arec("mail", "192.0.2.25"), T0 + 6 * S);
    add(j, JNL_DELETED, "ARecord", "dns", "www", arec("www", "192.0.2.1"), T0 + 7 * S);
    add(j, JNL_ADDED, "Bind9Cluster", "", "global", tricky(), T0 + 8 * S);
    jnl_close(j);
}

static int setup(void **state)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof(g_tmp), "%s/test_journal_tool.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(g_tmp) == NULL)
        return -1;
    snprintf(g_jdir, sizeof(g_jdir), "%s/state/journal", g_tmp);
    make_journal(g_jdir);
    return 0;
}

static int teardown(void **state)
{
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_ls_columns(void **state)
{
    result_t r = tool("--journal", g_jdir, "ls", NULL);
    assert_int_equal(r.code, 0);
    assert_int_equal(count_lines(r.out), 9);
    static const char *const cols[] = {"SEQ", "TIME", "TYPE", "KIND", "NAMESPACE/NAME", "RV",
                                       "HASH"};
    size_t off[7];
    const char *p = r.out;
    for (int i = 0; i < 7; i++) {
        const char *c = strstr(p, cols[i]);
        assert_non_null(c);
        off[i] = (size_t)(c - r.out);
        p = c + strlen(cols[i]);
    }
    assert_int_equal(off[0], 0);
    /* Every row has a value starting exactly under each header. */
    const char *line = strchr(r.out, '\n') + 1;
    int row = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = (size_t)(end - line);
        for (int i = 1; i < 7; i++) {
            assert_true(off[i] < len);
            assert_true(line[off[i] - 1] == ' ');
            assert_true(line[off[i]] != ' ');
        }
        if (row == 0) {
            assert_non_null(strstr(line, "ADDED"));
            assert_non_null(strstr(line, "DNSZone"));
            assert_non_null(strstr(line, "dns/example-com"));
            assert_non_null(strstr(line, "2026-11-"));
        }
        if (row == 3)
            assert_non_null(strstr(line, "RELIST_BEGIN"));
        if (row == 7)
            assert_non_null(strstr(line, "global")); /* cluster-scoped: no namespace */
        line = end + 1;
        row++;
    }
    result_free(&r);
}

static void test_ls_filters_json(void **state)
{
    result_t r = tool("-j", g_jdir, "ls", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *v = parse_json(r.out);
    assert_true(json_is_array(v));
    assert_int_equal(json_array_size(v), 8);
    json_t *e = json_array_get(v, 2);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 3);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "MODIFIED");
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "DNSZone");
    assert_string_equal(json_string_value(json_object_get(e, "namespace")), "dns");
    assert_string_equal(json_string_value(json_object_get(e, "name")), "example-com");
    assert_string_equal(json_string_value(json_object_get(e, "resourceVersion")), "100");
    assert_int_equal(strlen(json_string_value(json_object_get(e, "hash"))), 64);
    assert_string_equal(json_string_value(json_object_get(e, "prevHash")),
                        json_string_value(json_object_get(json_array_get(v, 1), "hash")));
    json_decref(v);
    result_free(&r);

    struct {
        const char *args[6];
        size_t rows;
    } cases[] = {
        {{"--kind", "arecord"}, 3},
        {{"--type", "deleted"}, 1},
        {{"--namespace", "dns", "--name", "www"}, 2},
        {{"-n", "dns"}, 5},
        {{"--since", "2026-11-18T00:00:00Z"}, 8},
        {{"--since", "3650d"}, 8},
        {{"--until", "1s"}, 8},
        {{"--from", "6", "--limit", "2"}, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char **a = cases[i].args;
        result_t q = tool("-j", g_jdir, "-o", "json", "ls", a[0], a[1], a[2], a[3], NULL);
        if (q.code != 0)
            fail_msg("ls %s %s: exit %d: %s", a[0], a[1], q.code, q.err);
        json_t *arr = parse_json(q.out);
        if (json_array_size(arr) != cases[i].rows)
            fail_msg("ls %s %s: %zu rows, want %zu", a[0], a[1], json_array_size(arr), cases[i].rows);
        json_decref(arr);
        result_free(&q);
    }
    /* Times in the middle, with an offset: T0 is 2026-11-18T...; events every second. */
    char since[64], until[64];
    time_t s = (time_t)(T0 / 1000000000u) + 3;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    s += 2;
    gmtime_r(&s, &tm);
    tm.tm_hour = (tm.tm_hour + 2) % 24; /* the same instant at +02:00 (no day change here) */
    strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%S+02:00", &tm);
    result_t q = tool("-j", g_jdir, "-o", "json", "ls", "--since", since, "--until", until, NULL);
    assert_int_equal(q.code, 0);
    json_t *arr = parse_json(q.out);
    assert_int_equal(json_array_size(arr), 3); /* seqs 3, 4, 5 */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 3);
    json_decref(arr);
    result_free(&q);
    q = tool("-j", g_jdir, "ls", "--since", "yesterday-ish", NULL);
    assert_int_equal(q.code, 2);
    assert_non_null(strstr(q.err, "bad time"));
    result_free(&q);
}

static void test_show(void **state)
{
    result_t r = tool("-j", g_jdir, "show", "8", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *v = parse_json(r.out);
    json_t *want = tricky();
    assert_true(json_equal(json_object_get(v, "object"), want));
    assert_string_equal(json_string_value(json_object_get(v, "source")), "kubernetes");
    result_free(&r);
    /* YAML (the default) says the same, with every type intact. */
    r = tool("-j", g_jdir, "show", "8", NULL);
    assert_int_equal(r.code, 0);
    json_t *docs = parse_yaml_docs(r.out);
    assert_int_equal(json_array_size(docs), 1);
    json_t *y = json_array_get(docs, 0);
    if (!json_equal(json_object_get(y, "object"), want)) {
        char *a = json_dumps(json_object_get(y, "object"), JSON_SORT_KEYS);
        fail_msg("YAML show differs: %s\n%s", a, r.out);
    }
    assert_int_equal(json_integer_value(json_object_get(y, "seq")), 8);
    assert_string_equal(json_string_value(json_object_get(y, "hash")),
                        json_string_value(json_object_get(v, "hash")));
    json_decref(docs);
    json_decref(want);
    json_decref(v);
    result_free(&r);
    r = tool("-j", g_jdir, "show", "99", NULL);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "no event with seq 99"));
    result_free(&r);
    r = tool("-j", g_jdir, "show", NULL);
    assert_int_equal(r.code, 2);
    result_free(&r);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static void test_verify_codes(void **state)
{
    result_t r = tool("-j", g_jdir, "verify", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "OK: 8 events verified"));
    result_free(&r);
    r = tool("-j", g_jdir, "verify", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *v = parse_json(r.out);
    assert_true(json_is_true(json_object_get(v, "ok")));
    assert_int_equal(json_integer_value(json_object_get(v, "events")), 8);
    json_decref(v);
    result_free(&r);

    /* A copy with one byte of seq 3 altered ("example.com" -> "exbmple.com"). */
    char dir[700], src[800], dst[800];
    snprintf(dir, sizeof(dir), "%s/tampered", g_tmp);
    mkdir(dir, 0700);
    snprintf(src, sizeof(src), "%s/data.mdb", g_jdir);
    snprintf(dst, sizeof(dst), "%s/data.mdb", dir);
    copy_file(src, dst);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 8);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "events", 0, &dbi), 0);
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 3};
    MDB_val k = {8, key}, val;
    assert_int_equal(mdb_get(txn, dbi, &k, &val), 0);
    uint8_t *copy = malloc(val.mv_size);
    memcpy(copy, val.mv_data, val.mv_size);
    uint8_t *at = memmem(copy, val.mv_size, "example.com", 11);
    assert_non_null(at);
    at[2] = 'b';
    MDB_val nv = {val.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);

    r = tool("-j", dir, "verify", NULL);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.out, "FAILED"));
    assert_non_null(strstr(r.out, "first bad seq: 3"));
    result_free(&r);
    r = tool("-j", dir, "-o", "json", "verify", NULL);
    assert_int_equal(r.code, 1);
    v = parse_json(r.out);
    assert_false(json_is_true(json_object_get(v, "ok")));
    assert_int_equal(json_integer_value(json_object_get(v, "badSeq")), 3);
    json_decref(v);
    result_free(&r);
}

/* import: manifests into a fresh journal; re-import is a no-op; refused input exits 1. */
static void test_import(void **state)
{
    char jdir[700], examples[1024], bad[1024];
    snprintf(jdir, sizeof(jdir), "%s/imported", g_tmp);
    const char *src = getenv("BINDY_SOURCE_DIR");
    snprintf(examples, sizeof(examples), "%s/deploy/examples", src ? src : ".");
    snprintf(bad, sizeof(bad), "%s/tests/data/invalid/a-bad-ipv4.yaml", src ? src : ".");

    result_t r = tool("-j", jdir, "import", "--dry-run", examples, NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "would be: 15 added"));
    result_free(&r);
    r = tool("-j", jdir, "import", examples, NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "15 added, 0 modified, 0 deleted, 0 unchanged"));
    result_free(&r);
    r = tool("-j", jdir, "import", "-o", "json", examples, bad, NULL);
    assert_int_equal(r.code, 1); /* the bad file is refused and named on stderr */
    assert_non_null(strstr(r.err, "a-bad-ipv4.yaml:13: ARecord dns-system/www: spec.ipv4Addresses[1]"));
    json_t *v = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(v, "unchanged")), 15);
    assert_int_equal(json_integer_value(json_object_get(v, "added")), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "invalid")), 1);
    json_decref(v);
    result_free(&r);
    r = tool("-j", jdir, "verify", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "OK: 15 events verified"));
    result_free(&r);
}

static json_t *strip(json_t *o)
{
    json_t *c = json_deep_copy(o);
    json_object_del(c, "status");
    json_t *m = json_object_get(c, "metadata");
    static const char *const f[] = {"resourceVersion", "uid", "creationTimestamp",
                                    "managedFields", "generation", "selfLink"};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        json_object_del(m, f[i]);
    return c;
}

static void check_export(const char *at, uint64_t seq, size_t want)
{
    result_t r = at ? tool("-j", g_jdir, "export", "--at", at, NULL) : tool("-j", g_jdir, "export", NULL);
    if (r.code != 0)
        fail_msg("export --at %s: exit %d: %s", at ? at : "-", r.code, r.err);
    json_t *docs = parse_yaml_docs(r.out);
    assert_int_equal(json_array_size(docs), want);
    /* The library's state at the same point, stripped as documented. */
    jnl_opts_t o;
    jnl_t *j = NULL;
    jnl_state_t *st = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;
    assert_int_equal(jnl_open(g_jdir, &o, &j, &err), 0);
    assert_int_equal(jnl_state_at(j, seq, &st, &err), 0);
    assert_int_equal(jnl_state_count(st), want);
    for (size_t i = 0; i < want; i++) {
        json_t *expect = strip(jnl_state_get(st, i)->object);
        json_t *got = json_array_get(docs, i);
        if (!json_equal(expect, got)) {
            char *a = json_dumps(expect, JSON_SORT_KEYS), *b = json_dumps(got, JSON_SORT_KEYS);
            fail_msg("export differs:\nwant %s\ngot  %s", a, b);
        }
        assert_null(json_object_get(got, "status"));
        assert_null(json_object_get(json_object_get(got, "metadata"), "resourceVersion"));
        assert_null(json_object_get(json_object_get(got, "metadata"), "managedFields"));
        json_decref(expect);
    }
    jnl_state_free(st);
    jnl_close(j);
    json_decref(docs);
    result_free(&r);
}

static void test_export_roundtrip(void **state)
{
    check_export(NULL, JNL_SEQ_LAST, 3); /* zone, mail, global */
    check_export("2", 2, 2);
    check_export("7", 7, 2);
    /* By time: 2.5 s after T0 is between seq 2 and 3. */
    char at[64];
    time_t s = (time_t)(T0 / 1000000000u) + 2;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S.500Z", &tm);
    check_export(at, 2, 2);
    result_t r = tool("-j", g_jdir, "export", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *list = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(list, "kind")), "List");
    assert_int_equal(json_array_size(json_object_get(list, "items")), 3);
    json_decref(list);
    result_free(&r);
    r = tool("-j", g_jdir, "export", "--at", "100", NULL);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "after the last event"));
    result_free(&r);
}

static void test_history_diff(void **state)
{
    result_t r = tool("-j", g_jdir, "history", "dnszone", "dns/example-com", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "seq 1"));
    assert_non_null(strstr(r.out, "seq 3"));
    assert_non_null(strstr(r.out, "~ spec.ttl: 300 -> 600"));
    result_free(&r);
    r = tool("-j", g_jdir, "history", "ARecord", "dns/www", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *v = parse_json(r.out);
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 1), "type")), "DELETED");
    json_decref(v);
    result_free(&r);
    r = tool("-j", g_jdir, "history", "ARecord", "dns/nope", NULL);
    assert_int_equal(r.code, 1);
    result_free(&r);

    r = tool("-j", g_jdir, "diff", "--from", "2", "--to", "8", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "+ ARecord dns/mail (added)"));
    assert_non_null(strstr(r.out, "- ARecord dns/www (removed)"));
    assert_non_null(strstr(r.out, "~ DNSZone dns/example-com (changed)"));
    assert_non_null(strstr(r.out, "spec.ttl: 300 -> 600"));
    assert_non_null(strstr(r.out, "+ Bind9Cluster global (added)"));
    result_free(&r);
    r = tool("-j", g_jdir, "diff", "--from", "2", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    v = parse_json(r.out);
    assert_int_equal(json_array_size(json_object_get(v, "added")), 2);
    assert_int_equal(json_array_size(json_object_get(v, "removed")), 1);
    assert_int_equal(json_array_size(json_object_get(v, "changed")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "to")), 8);
    json_decref(v);
    result_free(&r);
}

static void test_stats_tail(void **state)
{
    result_t r = tool("-j", g_jdir, "stats", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    json_t *v = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(v, "events")), 8);
    assert_int_equal(json_integer_value(json_object_get(v, "lastSeq")), 8);
    json_t *dz = json_object_get(json_object_get(v, "byKind"), "DNSZone");
    assert_int_equal(json_integer_value(json_object_get(dz, "total")), 4);
    assert_int_equal(json_integer_value(json_object_get(dz, "MODIFIED")), 1);
    assert_true(json_integer_value(json_object_get(json_object_get(v, "space"), "mapLimit")) >=
                (1 << 20));
    json_decref(v);
    result_free(&r);
    r = tool("-j", g_jdir, "stats", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "Events:       8 (seq 1..8)"));
    assert_non_null(strstr(r.out, "ARecord"));
    assert_non_null(strstr(r.out, "Projector:    no snapshot"));
    result_free(&r);

    /* the projector's checkpoint, as the applier stores it: its seq and size */
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    char blob[3000];
    memset(blob, 'x', sizeof(blob));
    jnl_opts_init(&o);
    assert_int_equal(jnl_open(g_jdir, &o, &j, &err), 0);
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 6, blob, sizeof(blob), &err), 0);
    jnl_close(j);
    r = tool("-j", g_jdir, "stats", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "Projector:    snapshot at seq 6 (2.9 KiB)"));
    result_free(&r);
    r = tool("-j", g_jdir, "stats", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    v = parse_json(r.out);
    json_t *ps = json_object_get(v, "projectorSnapshot");
    assert_int_equal(json_integer_value(json_object_get(ps, "seq")), 6);
    assert_int_equal(json_integer_value(json_object_get(ps, "bytes")), sizeof(blob));
    json_decref(v);
    result_free(&r);

    r = tool("-j", g_jdir, "tail", "-n", "2", NULL);
    assert_int_equal(r.code, 0);
    assert_int_equal(count_lines(r.out), 3);
    assert_non_null(strstr(r.out, "\n7 "));
    assert_non_null(strstr(r.out, "\n8 "));
    result_free(&r);
    r = tool("-j", g_jdir, "tail", "-n", "2", "--kind", "ARecord", "-o", "json", NULL);
    assert_int_equal(r.code, 0);
    assert_int_equal(count_lines(r.out), 2);
    char *nl = strchr(r.out, '\n');
    *nl = '\0';
    v = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(v, "seq")), 6);
    json_decref(v);
    result_free(&r);
}

static void test_errors_help(void **state)
{
    char path[700];
    result_t r = tool("-j", "/nonexistent/bindy", "ls", NULL);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "no such directory"));
    result_free(&r);
    snprintf(path, sizeof(path), "%s/foreign", g_tmp);
    mkdir(path, 0700);
    char f[800];
    snprintf(f, sizeof(f), "%s/data.mdb", path);
    FILE *fp = fopen(f, "w");
    fputs("this is not a database, just text that is long enough to be read\n", fp);
    fclose(fp);
    r = tool("-j", path, "verify", NULL);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "not an LMDB file"));
    result_free(&r);
    r = tool("-j", "/etc/hostname", "stats", NULL);
    assert_int_equal(r.code, 2);
    result_free(&r);
    r = tool("frobnicate", NULL);
    assert_int_equal(r.code, 2);
    result_free(&r);
    r = tool(NULL);
    assert_int_equal(r.code, 2);
    result_free(&r);
    r = tool("--help", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "usage: bindy-journal"));
    result_free(&r);
    static const char *const cmds[] = {"ls", "show", "tail", "history", "stats", "verify",
                                       "export", "diff"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        r = tool(cmds[i], "--help", NULL);
        assert_int_equal(r.code, 0);
        char want[64];
        snprintf(want, sizeof(want), "bindy-journal [--journal PATH] %s", cmds[i]);
        assert_non_null(strstr(r.out, want));
        result_free(&r);
    }
    /* The state directory (STATE/journal) from the environment. */
    char env1[800];
    snprintf(env1, sizeof(env1), "BINDY_STATE_DIR=%s/state", g_tmp);
    char *argv[] = {(char *)BINDY_JOURNAL_TOOL, "verify", NULL};
    char *extra[] = {env1, NULL};
    r = run_env(argv, extra);
    assert_int_equal(r.code, 0);
    result_free(&r);
    /* ... and given as --journal. */
    snprintf(path, sizeof(path), "%s/state", g_tmp);
    r = tool("--journal", path, "ls", "--limit", "1", NULL);
    assert_int_equal(r.code, 0);
    assert_int_equal(count_lines(r.out), 2);
    result_free(&r);
}

static void test_kubectl_plugin(void **state)
{
    /* kubectl runs `kubectl-bindy journal ARGS`; the script finds bindy-journal on PATH. */
    char dir[4096], pathenv[8192];
    snprintf(dir, sizeof(dir), "%s", BINDY_JOURNAL_TOOL);
    *strrchr(dir, '/') = '\0';
    snprintf(pathenv, sizeof(pathenv), "PATH=%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    char *argv[] = {"/bin/sh", (char *)KUBECTL_BINDY, "journal", "--journal", g_jdir, "ls", NULL};
    char *extra[] = {pathenv, NULL};
    result_t r = run_env(argv, extra);
    assert_int_equal(r.code, 0);
    result_t d = tool("--journal", g_jdir, "ls", NULL);
    assert_string_equal(r.out, d.out);
    result_free(&r);
    result_free(&d);
    char *argv2[] = {"/bin/sh", (char *)KUBECTL_BINDY, "nope", NULL};
    r = run_env(argv2, extra);
    assert_int_equal(r.code, 2);
    result_free(&r);
}

/* tail -f follows a journal another process (here: this one) is writing. */
static void test_tail_follow(void **state)
{
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/follow", g_tmp);
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    assert_int_equal(jnl_open(dir, &o, &j, &err), 0);
    add(j, JNL_ADDED, "ARecord", "dns", "first", arec("first", "192.0.2.1"), 0);

    int out[2];
    assert_int_equal(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {(char *)BINDY_JOURNAL_TOOL, "-j", dir, "tail", "-f", "-n", "1", "-o", "json",
                    "--interval", "20ms", NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);

    char buf[65536];
    size_t len = 0;
    bool added = false;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(out[0], buf + len, sizeof(buf) - 1 - len);
            if (n > 0)
                len += (size_t)n;
            buf[len] = '\0';
        }
        if (!added && strstr(buf, "\"seq\":1") != NULL) {
            /* The tool is following: write two more events. */
            add(j, JNL_ADDED, "ARecord", "dns", "second", arec("second", "192.0.2.2"), 0);
            add(j, JNL_DELETED, "ARecord", "dns", "first", NULL, 0);
            added = true;
        }
        if (added && strstr(buf, "\"seq\":3") != NULL)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20)
            fail_msg("tail -f did not show the new events; output so far: %s", buf);
    }
    assert_non_null(strstr(buf, "\"name\":\"second\""));
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(out[0]);
    jnl_close(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ls_columns),    cmocka_unit_test(test_ls_filters_json),
        cmocka_unit_test(test_show),          cmocka_unit_test(test_verify_codes),
        cmocka_unit_test(test_export_roundtrip), cmocka_unit_test(test_history_diff),
        cmocka_unit_test(test_stats_tail),    cmocka_unit_test(test_errors_help),
        cmocka_unit_test(test_kubectl_plugin), cmocka_unit_test(test_tail_follow),
        cmocka_unit_test(test_import),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
