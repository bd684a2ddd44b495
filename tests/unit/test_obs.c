/*
 * Health and metrics (src/obs): the registry's text exposition checked byte for byte, then
 * the operator's endpoints queried with libcurl on a loopback ephemeral port: /metrics
 * parsed line by line (format, sorted order, counters that move, cumulative histograms,
 * label escaping), /healthz going 503 when heartbeats stop, /readyz listing the false
 * conditions, 404/405/HEAD, and updates from a second thread while scrapes run. Every
 * wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "obs.h"

/* ---- an HTTP client ------------------------------------------------------------------ */

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char ctype[128];
    char allow[64];
    char clen[32];
} resp_t;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t add = sz * n;
    char *nb = realloc(r->body, r->len + add + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, p, add);
    r->body = nb;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0)
        return;
    const char *v = line + nl;
    size_t vl = n - nl;
    while (vl > 0 && (*v == ' '))
        v++, vl--;
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    if (vl >= cap)
        vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    resp_t *r = arg;
    header_value(p, sz * n, "content-type:", r->ctype, sizeof(r->ctype));
    header_value(p, sz * n, "allow:", r->allow, sizeof(r->allow));
    header_value(p, sz * n, "content-length:", r->clen, sizeof(r->clen));
    return sz * n;
}

/* method: "GET", "HEAD", "POST". The body is always a string ("" when empty). */
static void http(unsigned short port, const char *method, const char *path, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->body = calloc(1, 1);
    assert_non_null(r->body);
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static obs_t *start_obs(unsigned staleness_ms)
{
    obs_opts_t o;
    obs_opts_init(&o);
    o.addr = "127.0.0.1:0";
    o.staleness_ms = staleness_ms;
    obs_t *obs = NULL;
    bd_err_t err;
    assert_int_equal(obs_new(&o, &obs, &err), BD_OK);
    if (obs_start(obs, &err) != BD_OK)
        fail_msg("obs_start: %s", err.msg);
    assert_true(obs_port(obs) > 0);
    return obs;
}

/* ---- an exposition parser ------------------------------------------------------------ */

#define MAX_SAMPLES 512

typedef struct sample {
    char name[128];
    char labels[512]; /* canonical: k="v",k="v" as sent (escapes kept) */
    char le[256];     /* the le label's value, "" if none */
    double value;
} sample_t;

typedef struct expo {
    sample_t s[MAX_SAMPLES];
    size_t n;
    char fams[64][128]; /* TYPE lines in order */
    char types[64][16];
    size_t nfams;
} expo_t;

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Parses text strictly (fails the test on any malformed line). */
static void parse_expo(const char *text, expo_t *e)
{
    memset(e, 0, sizeof(*e));
    size_t tl = strlen(text);
    assert_true(tl > 0 && text[tl - 1] == '\n');
    const char *p = text;
    char help_for[128] = "";
    while (*p) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol);
        char line[1024];
        size_t ll = (size_t)(eol - p);
        assert_true(ll < sizeof(line));
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = eol + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *sp = strchr(line + 7, ' ');
            assert_non_null(sp);
            snprintf(help_for, sizeof(help_for), "%.*s", (int)(sp - (line + 7)), line + 7);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], type[16];
            assert_int_equal(sscanf(line + 7, "%127s %15s", name, type), 2);
            assert_string_equal(name, help_for); /* HELP comes right before its TYPE */
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            assert_true(e->nfams < 64);
            snprintf(e->fams[e->nfams], sizeof(e->fams[0]), "%s", name);
            snprintf(e->types[e->nfams], sizeof(e->types[0]), "%s", type);
            e->nfams++;
            continue;
        }
        assert_true(line[0] != '#');
        assert_true(e->n < MAX_SAMPLES);
        sample_t *s = &e->s[e->n++];
        const char *q = line;
        size_t k = 0;
        assert_true(name_char(*q, true));
        while (name_char(*q, false) && k < sizeof(s->name) - 1)
            s->name[k++] = *q++;
        size_t lk = 0;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                const char *ls = q;
                assert_true(name_char(*q, true) && *q != ':');
                while (name_char(*q, false) && *q != ':')
                    q++;
                int kl = (int)(q - ls);
                bool is_le = (size_t)(q - ls) == 2 && strncmp(ls, "le", 2) == 0;
                assert_true(q[0] == '=' && q[1] == '"');
                q += 2;
                char val[256];
                size_t vk = 0;
                while (*q != '"') {
                    assert_true(*q != '\0' && *q != '\n');
                    if (*q == '\\') {
                        assert_true(q[1] == '\\' || q[1] == '"' || q[1] == 'n');
                        if (vk < sizeof(val) - 2)
                            val[vk++] = *q;
                        q++;
                    }
                    if (vk < sizeof(val) - 1)
                        val[vk++] = *q;
                    q++;
                }
                val[vk] = '\0';
                q++;
                if (is_le) {
                    snprintf(s->le, sizeof(s->le), "%s", val);
                } else {
                    snprintf(s->labels + lk, sizeof(s->labels) - lk, "%s%.*s=\"%s\"",
                             lk ? "," : "", kl, ls, val);
                    lk = strlen(s->labels);
                }
                if (*q == ',')
                    q++;
                else
                    assert_true(*q == '}');
            }
            q++;
        }
        assert_true(*q == ' ');
        q++;
        char *end = NULL;
        s->value = strtod(q, &end);
        assert_true(end != q && *end == '\0');
    }
}

/* Value of the sample name{labels} (labels without le), le "" or a bucket bound. */
static const sample_t *find(const expo_t *e, const char *name, const char *labels, const char *le)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].name, name) == 0 && strcmp(e->s[i].labels, labels) == 0 &&
            strcmp(e->s[i].le, le) == 0)
            return &e->s[i];
    return NULL;
}

static double value_of(const expo_t *e, const char *name, const char *labels)
{
    const sample_t *s = find(e, name, labels, "");
    if (s == NULL)
        fail_msg("no sample %s{%s}", name, labels);
    return s->value;
}

static expo_t *scrape(unsigned short port)
{
    resp_t r;
    http(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    expo_t *e = malloc(sizeof(*e));
    assert_non_null(e);
    parse_expo(r.body, e);
    resp_free(&r);
    return e;
}

/* Every family's samples sit under its TYPE line, families are sorted, and a histogram's
 * buckets are cumulative with increasing bounds, ending at +Inf == _count. */
static void check_structure(const char *text)
{
    const char *p = text;
    char fam[128] = "", type[16] = "", prev_fam[128] = "";
    double prev_le = -INFINITY, prev_cum = 0;
    bool saw_inf = false;
    char prev_series[512] = "";
    bool have_prev = false;
    while (*p) {
        const char *eol = strchr(p, '\n');
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)(eol - p), p);
        p = eol + 1;
        if (strncmp(line, "# HELP", 6) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%127s %15s", fam, type);
            assert_true(strcmp(prev_fam, fam) < 0);
            snprintf(prev_fam, sizeof(prev_fam), "%s", fam);
            prev_le = -INFINITY;
            prev_cum = 0;
            saw_inf = false;
            have_prev = false;
            continue;
        }
        size_t fl = strlen(fam);
        assert_true(strncmp(line, fam, fl) == 0);
        const char *suffix = line + fl;
        if (strcmp(type, "histogram") != 0) {
            assert_true(suffix[0] == ' ' || suffix[0] == '{');
            /* series in order: label part up to the value */
            char labels[512];
            snprintf(labels, sizeof(labels), "%s", suffix);
            char *sp = strrchr(labels, ' ');
            *sp = '\0';
            assert_true(!have_prev || strcmp(prev_series, labels) < 0);
            snprintf(prev_series, sizeof(prev_series), "%s", labels);
            have_prev = true;
            continue;
        }
        if (strncmp(suffix, "_bucket", 7) == 0) {
            const char *le = strstr(suffix, "le=\"");
            assert_non_null(le);
            double b = strtod(le + 4, NULL);
            double cum = strtod(strrchr(suffix, ' ') + 1, NULL);
            if (prev_le == INFINITY) { /* a new series of the same family */
                prev_le = -INFINITY;
                prev_cum = 0;
            }
            assert_true(b > prev_le);
            assert_true(cum >= prev_cum);
            prev_le = b;
            prev_cum = cum;
            saw_inf = strncmp(le + 4, "+Inf\"", 5) == 0;
        } else if (strncmp(suffix, "_sum", 4) == 0) {
            assert_true(saw_inf);
        } else if (strncmp(suffix, "_count", 6) == 0) {
            assert_true(saw_inf);
            assert_true(strtod(strrchr(suffix, ' ') + 1, NULL) == prev_cum);
        } else {
            fail_msg("unexpected histogram line %s", line);
        }
    }
}

/* ---- the registry, byte for byte ----------------------------------------------------- */

static void test_exposition_exact(void **state)
{
    obs_reg_t *r = NULL;
    assert_int_equal(obs_reg_new(&r), BD_OK);
    obs_family_t *zz, *aa, *mm, *hh;
    const char *two[] = {"target", "zone"}, *one[] = {"target"};
    const double bounds[] = {0.25, 0.5, 1};
    assert_int_equal(obs_reg_add(r, "zz_gauge", "A gauge.", OBS_GAUGE, NULL, 0, NULL, 0, &zz), 0);
    assert_int_equal(obs_reg_add(r, "aa_total", "Line one\nback\\slash \"q\"", OBS_COUNTER,
                                 two, 2, NULL, 0, &aa), 0);
    assert_int_equal(obs_reg_add(r, "mm_seconds", "Hist.", OBS_HISTOGRAM, NULL, 0, bounds, 3,
                                 &mm), 0);
    assert_int_equal(obs_reg_add(r, "hh_seconds", "Labelled hist.", OBS_HISTOGRAM, one, 1,
                                 bounds, 3, &hh), 0);
    assert_ptr_equal(obs_reg_find(r, "mm_seconds"), mm);
    assert_null(obs_reg_find(r, "nope"));

    obs_gauge_set(obs_series(zz, NULL, NULL), 1.5);
    obs_counter_add(obs_series(aa, "b", "x"), 2);
    obs_counter_inc(obs_series(aa, "a", "q\"u\\o\nte"));
    obs_counter_add(obs_series(aa, "a", "a"), 5);
    obs_counter_add(obs_series(aa, "a", "a"), 1); /* same series again */
    assert_true(obs_series_value(obs_series(aa, "a", "a")) == 6);
    obs_series_t *m = obs_series(mm, NULL, NULL);
    obs_hist_observe(m, 0.125);
    obs_hist_observe(m, 0.25); /* le is inclusive */
    obs_hist_observe(m, 0.75);
    obs_hist_observe(m, 3);
    obs_series(hh, "z", NULL); /* a series that was never observed */

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(obs_reg_render(r, &text, &len), BD_OK);
    const char *want =
        "# HELP aa_total Line one\\nback\\\\slash \"q\"\n"
        "# TYPE aa_total counter\n"
        "aa_total{target=\"a\",zone=\"a\"} 6\n"
        "aa_total{target=\"a\",zone=\"q\\\"u\\\\o\\nte\"} 1\n"
        "aa_total{target=\"b\",zone=\"x\"} 2\n"
        "# HELP hh_seconds Labelled hist.\n"
        "# TYPE hh_seconds histogram\n"
        "hh_seconds_bucket{target=\"z\",le=\"0.25\"} 0\n"
        "hh_seconds_bucket{target=\"z\",le=\"0.5\"} 0\n"
        "hh_seconds_bucket{target=\"z\",le=\"1\"} 0\n"
        "hh_seconds_bucket{target=\"z\",le=\"+Inf\"} 0\n"
        "hh_seconds_sum{target=\"z\"} 0\n"
        "hh_seconds_count{target=\"z\"} 0\n"
        "# HELP mm_seconds Hist.\n"
        "# TYPE mm_seconds histogram\n"
        "mm_seconds_bucket{le=\"0.25\"} 2\n"
        "mm_seconds_bucket{le=\"0.5\"} 2\n"
        "mm_seconds_bucket{le=\"1\"} 3\n"
        "mm_seconds_bucket{le=\"+Inf\"} 4\n"
        "mm_seconds_sum 4.125\n"
        "mm_seconds_count 4\n"
        "# HELP zz_gauge A gauge.\n"
        "# TYPE zz_gauge gauge\n"
        "zz_gauge 1.5\n";
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    check_structure(text);
    free(text);
    obs_reg_free(r);
}

static void test_number_formats(void **state)
{
    obs_reg_t *r = NULL;
    assert_int_equal(obs_reg_new(&r), BD_OK);
    static const struct {
        const char *name;
        double v;
        const char *want;
    } cases[] = {
        {"g_a", 0, "g_a 0\n"},         {"g_b", 0.1, "g_b 0.1\n"},
        {"g_c", -2.5, "g_c -2.5\n"},   {"g_d", 1e-05, "g_d 1e-05\n"},
        {"g_e", 1e20, "g_e 1e+20\n"},  {"g_f", INFINITY, "g_f +Inf\n"},
        {"g_g", -INFINITY, "g_g -Inf\n"}, {"g_h", NAN, "g_h NaN\n"},
        {"g_i", 0.1 + 0.2, "g_i 0.30000000000000004\n"},
        {"g_j", 1234567, "g_j 1234567\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        obs_family_t *f;
        assert_int_equal(obs_reg_add(r, cases[i].name, "", OBS_GAUGE, NULL, 0, NULL, 0, &f), 0);
        obs_gauge_set(obs_series(f, NULL, NULL), cases[i].v);
    }
    char *text = NULL;
    assert_int_equal(obs_reg_render(r, &text, NULL), BD_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        if (strstr(text, cases[i].want) == NULL)
            fail_msg("missing %s in:\n%s", cases[i].want, text);
    assert_non_null(strstr(text, "# HELP g_a \n")); /* empty help */
    free(text);
    obs_reg_free(r);
}

static void test_registry_errors(void **state)
{
    obs_reg_t *r = NULL;
    assert_int_equal(obs_reg_new(&r), BD_OK);
    const double b[] = {1, 2}, bad_b[] = {2, 1}, inf_b[] = {1, INFINITY};
    const char *le[] = {"le"}, *dunder[] = {"__x"}, *digit[] = {"1a"}, *dup[] = {"a", "a"},
               *three[] = {"a", "b", "c"}, *ok[] = {"target"};
    assert_int_equal(obs_reg_add(r, "1bad", "", OBS_COUNTER, NULL, 0, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "", "", OBS_COUNTER, NULL, 0, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "a-b", "", OBS_COUNTER, NULL, 0, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "h", "", OBS_HISTOGRAM, le, 1, b, 2, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "c", "", OBS_COUNTER, dunder, 1, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "c", "", OBS_COUNTER, digit, 1, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "c", "", OBS_COUNTER, dup, 2, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "c", "", OBS_COUNTER, three, 3, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "h", "", OBS_HISTOGRAM, NULL, 0, bad_b, 2, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "h", "", OBS_HISTOGRAM, NULL, 0, inf_b, 2, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "h", "", OBS_HISTOGRAM, NULL, 0, NULL, 0, NULL), BD_EINVAL);
    assert_int_equal(obs_reg_add(r, "c", "", OBS_COUNTER, NULL, 0, b, 2, NULL), BD_EINVAL);
    obs_family_t *f = NULL;
    assert_int_equal(obs_reg_add(r, "ns:c_total", "", OBS_COUNTER, ok, 1, NULL, 0, &f), BD_OK);
    assert_int_equal(obs_reg_add(r, "ns:c_total", "", OBS_COUNTER, NULL, 0, NULL, 0, NULL),
                     BD_EEXISTS);

    /* label values: required, bounded, and the family's cardinality is capped */
    assert_null(obs_series(f, NULL, NULL));
    assert_null(obs_series(NULL, "x", NULL));
    char big[OBS_LABEL_VALUE_MAX + 2];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_null(obs_series(f, big, NULL));
    big[OBS_LABEL_VALUE_MAX] = '\0';
    assert_non_null(obs_series(f, big, NULL));
    obs_series_t *first = obs_series(f, "t0", NULL);
    assert_non_null(first);
    for (int i = 1; i < OBS_SERIES_MAX - 2; i++) { /* "big" and "t0" are already there */
        char v[16];
        snprintf(v, sizeof(v), "t%d", i);
        assert_non_null(obs_series(f, v, NULL));
    }
    assert_non_null(obs_series(f, "last", NULL));
    assert_null(obs_series(f, "one-too-many", NULL));
    assert_ptr_equal(obs_series(f, "t0", NULL), first); /* existing ones still resolve */

    /* NULL handles are no-ops */
    obs_counter_add(NULL, 1);
    obs_gauge_set(NULL, 1);
    obs_hist_observe(NULL, 1);
    assert_true(obs_series_value(NULL) == 0);
    char *text = (char *)"x";
    assert_int_equal(obs_reg_render(NULL, &text, NULL), BD_EINVAL);
    assert_null(text);
    obs_reg_free(r);
    obs_reg_free(NULL);
}

/* ---- the operator's metric set ------------------------------------------------------- */

static const struct {
    const char *name, *type;
} operator_set[] = {
    {"bindy_apply_errors_total", "counter"},
    {"bindy_apply_operations_total", "counter"},
    {"bindy_bind_pods_lagging", "gauge"},
    {"bindy_bind_pods_ready", "gauge"},
    {"bindy_drift_repairs_total", "counter"},
    {"bindy_journal_commit_latency_seconds", "histogram"},
    {"bindy_journal_last_seq", "gauge"},
    {"bindy_journal_map_used_ratio", "gauge"},
    {"bindy_journal_size_bytes", "gauge"},
    {"bindy_kube_requests_total", "counter"},
    {"bindy_kube_throttled_total", "counter"},
    {"bindy_leader", "gauge"},
    {"bindy_leader_transitions_total", "counter"},
    {"bindy_reconcile_duration_seconds", "histogram"},
    {"bindy_watch_events_total", "counter"},
    {"bindy_watch_relists_total", "counter"},
};

static void test_metric_set_over_http(void **state)
{
    obs_t *o = start_obs(0);
    unsigned short port = obs_port(o);
    assert_int_equal(OBS_METRIC_COUNT, sizeof(operator_set) / sizeof(*operator_set));

    expo_t *e = scrape(port);
    assert_int_equal(e->nfams, OBS_METRIC_COUNT); /* exactly the set, in sorted order */
    for (size_t i = 0; i < e->nfams; i++) {
        assert_string_equal(e->fams[i], operator_set[i].name);
        assert_string_equal(e->types[i], operator_set[i].type);
    }
    assert_true(value_of(e, "bindy_leader", "") == 0);
    double w0 = value_of(e, "bindy_watch_events_total", "");
    assert_null(find(e, "bindy_apply_operations_total", "target=\"hidden-primary\"", ""));
    free(e);

    /* the handles: unlabelled by enum, labelled by value */
    assert_null(obs_metric(o, OBS_APPLY_OPERATIONS));
    assert_null(obs_metric_for(o, OBS_WATCH_EVENTS, "x"));
    assert_null(obs_metric(NULL, OBS_WATCH_EVENTS));
    assert_null(obs_metric(o, OBS_METRIC_COUNT));
    assert_null(obs_metric_for(NULL, OBS_APPLY_ERRORS, "x"));
    obs_counter_inc(obs_metric(NULL, OBS_WATCH_EVENTS)); /* no obs_t: a no-op */
    assert_non_null(obs_registry(o));
    assert_null(obs_registry(NULL));

    for (int i = 0; i < 3; i++)
        obs_counter_inc(obs_metric(o, OBS_WATCH_EVENTS));
    obs_gauge_set(obs_metric(o, OBS_LEADER), 1);
    obs_counter_inc(obs_metric(o, OBS_LEADER_TRANSITIONS));
    obs_gauge_set(obs_metric(o, OBS_JOURNAL_LAST_SEQ), 123456789);
    obs_gauge_set(obs_metric(o, OBS_JOURNAL_MAP_USED_RATIO), 0.25);
    obs_series_t *hp = obs_metric_for(o, OBS_APPLY_OPERATIONS, "hidden-primary");
    assert_ptr_equal(obs_metric_for(o, OBS_APPLY_OPERATIONS, "hidden-primary"), hp);
    obs_counter_add(hp, 7);
    obs_counter_add(obs_metric_for(o, OBS_APPLY_OPERATIONS, "a\"b\\c\nd"), 2);
    obs_counter_inc(obs_metric_for(o, OBS_APPLY_ERRORS, "kubernetes"));
    obs_series_t *rd = obs_metric(o, OBS_RECONCILE_DURATION);
    const double obs_v[] = {0.0001, 0.0005, 0.003, 0.003, 0.07, 2, 60};
    double sum = 0;
    for (size_t i = 0; i < sizeof(obs_v) / sizeof(*obs_v); i++) {
        obs_hist_observe(rd, obs_v[i]);
        sum += obs_v[i];
    }

    resp_t r;
    http(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    check_structure(r.body);
    e = malloc(sizeof(*e));
    assert_non_null(e);
    parse_expo(r.body, e);
    /* label escaping as sent on the wire, and the series sorted by value */
    const char *esc = "bindy_apply_operations_total{target=\"a\\\"b\\\\c\\nd\"} 2\n";
    const char *plain = "bindy_apply_operations_total{target=\"hidden-primary\"} 7\n";
    assert_non_null(strstr(r.body, esc));
    assert_non_null(strstr(r.body, plain));
    assert_true(strstr(r.body, esc) < strstr(r.body, plain));
    assert_non_null(strstr(r.body, "bindy_journal_last_seq 123456789\n"));
    resp_free(&r);

    assert_true(value_of(e, "bindy_watch_events_total", "") == w0 + 3);
    assert_true(value_of(e, "bindy_leader", "") == 1);
    assert_true(value_of(e, "bindy_leader_transitions_total", "") == 1);
    assert_true(value_of(e, "bindy_journal_map_used_ratio", "") == 0.25);
    assert_true(value_of(e, "bindy_apply_errors_total", "target=\"kubernetes\"") == 1);
    assert_true(value_of(e, "bindy_apply_operations_total", "target=\"hidden-primary\"") == 7);

    /* the histogram: each bucket counts the observations <= its bound */
    static const struct {
        const char *le;
        double cum;
    } want[] = {{"0.0005", 2}, {"0.001", 2}, {"0.0025", 2}, {"0.005", 4}, {"0.01", 4},
                {"0.025", 4},  {"0.05", 4},  {"0.1", 5},    {"0.25", 5},  {"0.5", 5},
                {"1", 5},      {"2.5", 6},   {"5", 6},      {"10", 6},    {"+Inf", 7}};
    size_t nb = 0;
    for (size_t i = 0; i < e->n; i++)
        nb += strcmp(e->s[i].name, "bindy_reconcile_duration_seconds_bucket") == 0;
    assert_int_equal(nb, sizeof(want) / sizeof(*want));
    for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++) {
        const sample_t *s = find(e, "bindy_reconcile_duration_seconds_bucket", "", want[i].le);
        if (s == NULL)
            fail_msg("no bucket le=%s", want[i].le);
        assert_true(s->value == want[i].cum);
    }
    assert_true(value_of(e, "bindy_reconcile_duration_seconds_count", "") == 7);
    assert_true(fabs(value_of(e, "bindy_reconcile_duration_seconds_sum", "") - sum) < 1e-9);
    assert_non_null(find(e, "bindy_journal_commit_latency_seconds_bucket", "", "0.0001"));
    assert_true(find(e, "bindy_journal_commit_latency_seconds_bucket", "", "+Inf")->value == 0);
    free(e);
    obs_free(o);
}

/* ---- health, readiness, routes ------------------------------------------------------- */

static void test_healthz_goes_stale(void **state)
{
    obs_t *o = start_obs(600);
    unsigned short port = obs_port(o);
    resp_t r;
    http(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    resp_free(&r);

    /* heartbeats every 50 ms keep it alive well past the staleness */
    for (int i = 0; i < 20; i++) { /* 1 s > 600 ms */
        obs_heartbeat(o);
        sleep_ms(50);
        http(port, "GET", "/healthz", &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }

    /* heartbeats stop: 503 within a bounded time (staleness + slack) */
    bool stale = false;
    for (int i = 0; i < 100 && !stale; i++) { /* at most ~5 s */
        sleep_ms(50);
        http(port, "GET", "/healthz", &r);
        if (r.status == 503) {
            stale = true;
            assert_non_null(strstr(r.body, "last heartbeat"));
            assert_non_null(strstr(r.body, "limit 600 ms"));
        } else {
            assert_int_equal(r.status, 200);
        }
        resp_free(&r);
    }
    assert_true(stale);
    http(port, "HEAD", "/healthz", &r);
    assert_int_equal(r.status, 503);
    resp_free(&r);

    obs_heartbeat(o); /* the loop is back */
    http(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    obs_free(o);
}

static void test_readyz_lists_false_conditions(void **state)
{
    obs_t *o = start_obs(0);
    unsigned short port = obs_port(o);
    resp_t r;
    http(port, "GET", "/readyz", &r); /* nothing registered yet */
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    resp_free(&r);

    assert_int_equal(obs_ready_set(o, "journal", false, "not open"), BD_OK);
    assert_int_equal(obs_ready_set(o, "watch", false, "not synced"), BD_OK);
    assert_int_equal(obs_ready_set(o, "lease", true, NULL), BD_OK);
    http(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "journal: not open\nwatch: not synced\n");
    resp_free(&r);

    assert_int_equal(obs_ready_set(o, "journal", true, NULL), BD_OK);
    assert_int_equal(obs_ready_set(o, "lease", false, NULL), BD_OK);
    http(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "watch: not synced\nlease: not ready\n");
    resp_free(&r);

    assert_int_equal(obs_ready_set(o, "watch", true, "synced"), BD_OK);
    assert_int_equal(obs_ready_set(o, "lease", true, NULL), BD_OK);
    http(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    resp_free(&r);

    /* bad names, and the table's limit */
    char longname[OBS_READY_NAME_MAX + 1];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(obs_ready_set(o, longname, true, NULL), BD_EINVAL);
    assert_int_equal(obs_ready_set(o, "", true, NULL), BD_EINVAL);
    assert_int_equal(obs_ready_set(o, NULL, true, NULL), BD_EINVAL);
    assert_int_equal(obs_ready_set(NULL, "x", true, NULL), BD_EINVAL);
    for (int i = 3; i < OBS_READY_MAX; i++) {
        char n[16];
        snprintf(n, sizeof(n), "c%d", i);
        assert_int_equal(obs_ready_set(o, n, true, NULL), BD_OK);
    }
    assert_int_equal(obs_ready_set(o, "one-more", true, NULL), BD_EFULL);
    assert_int_equal(obs_ready_set(o, "watch", true, NULL), BD_OK); /* updates still work */
    obs_free(o);
}

static void test_routes_head_and_methods(void **state)
{
    obs_t *o = start_obs(0);
    unsigned short port = obs_port(o);
    resp_t r;
    const char *missing[] = {"/", "/nope", "/metrics/x", "/healthz/", "/READYZ"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(*missing); i++) {
        http(port, "GET", missing[i], &r);
        assert_int_equal(r.status, 404);
        resp_free(&r);
    }
    http(port, "GET", "/metrics?x=1", &r); /* a query string does not change the path */
    assert_int_equal(r.status, 200);
    resp_free(&r);

    const char *paths[] = {"/healthz", "/readyz", "/metrics"};
    for (size_t i = 0; i < 3; i++) {
        http(port, "HEAD", paths[i], &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        assert_true(r.ctype[0] != '\0');
        resp_free(&r);
    }
    http(port, "HEAD", "/metrics", &r);
    assert_true(atol(r.clen) > 1000); /* the length of the GET body */
    resp_free(&r);
    http(port, "HEAD", "/nope", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    http(port, "POST", "/healthz", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    resp_free(&r);
    obs_free(o);
}

static void test_addresses_and_start(void **state)
{
    obs_opts_t o;
    obs_opts_init(&o);
    assert_null(o.addr);
    assert_int_equal(o.staleness_ms, 10000);
    bd_err_t err;

    unsetenv("BINDY_HEALTH_ADDR");
    assert_int_equal(obs_opts_from_env(&o, &err), BD_OK);
    assert_null(o.addr);
    setenv("BINDY_HEALTH_ADDR", "", 1);
    assert_int_equal(obs_opts_from_env(&o, &err), BD_OK);
    assert_null(o.addr);
    setenv("BINDY_HEALTH_ADDR", "127.0.0.1:0", 1);
    assert_int_equal(obs_opts_from_env(&o, &err), BD_OK);
    assert_string_equal(o.addr, "127.0.0.1:0");
    unsetenv("BINDY_HEALTH_ADDR");

    const char *bad[] = {"nope", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:80x",
                         ":80", "[::1]80", "[::1", "::1:80", "localhost:80", "1.2.3.4:-1",
                         "1.2.3.4:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        obs_t *x = (obs_t *)&o;
        o.addr = bad[i];
        assert_int_equal(obs_new(&o, &x, &err), BD_EINVAL);
        assert_null(x);
        assert_non_null(strstr(err.msg, bad[i]));
    }
    const char *good[] = {"0.0.0.0:8080", "127.0.0.1:0", "[::1]:0", "[::]:9090", NULL};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        obs_t *x = NULL;
        o.addr = good[i];
        assert_int_equal(obs_new(&o, &x, &err), BD_OK);
        assert_int_equal(obs_port(x), 0); /* not started */
        obs_free(x);
    }
    obs_t *d = NULL;
    assert_int_equal(obs_new(NULL, &d, &err), BD_OK); /* all defaults */
    obs_free(d);
    obs_free(NULL);

    /* start twice, and a port that is taken */
    obs_t *a = start_obs(0);
    assert_int_equal(obs_start(a, &err), BD_EBUSY);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)obs_port(a));
    o.addr = addr;
    obs_t *b = NULL;
    assert_int_equal(obs_new(&o, &b, &err), BD_OK);
    assert_int_equal(obs_start(b, &err), BD_EIO);
    assert_non_null(strstr(err.msg, addr));
    assert_int_equal(obs_port(b), 0);
    obs_free(b);
    obs_free(a);
}

/* ---- updates from another thread while scrapes run ----------------------------------- */

#define WRITER_ROUNDS 20000

static void *writer(void *arg)
{
    obs_t *o = arg;
    obs_series_t *ev = obs_metric(o, OBS_WATCH_EVENTS);
    obs_series_t *lat = obs_metric(o, OBS_JOURNAL_COMMIT_LATENCY);
    for (int i = 0; i < WRITER_ROUNDS; i++) {
        obs_counter_inc(ev);
        obs_hist_observe(lat, (i % 4) * 0.001);
        obs_gauge_set(obs_metric(o, OBS_JOURNAL_LAST_SEQ), i);
        obs_heartbeat(o);
        if (i % 100 == 0) { /* new labelled series while the HTTP thread renders */
            char t[32];
            snprintf(t, sizeof(t), "target-%03d", i / 100);
            obs_counter_inc(obs_metric_for(o, OBS_APPLY_OPERATIONS, t));
        }
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    obs_t *o = start_obs(0);
    unsigned short port = obs_port(o);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, o), 0);
    for (int i = 0; i < 10; i++) {
        resp_t r;
        http(port, "GET", "/metrics", &r);
        assert_int_equal(r.status, 200);
        check_structure(r.body); /* consistent at any instant: cumulative, count == +Inf */
        resp_free(&r);
    }
    pthread_join(th, NULL);
    expo_t *e = scrape(port);
    assert_true(value_of(e, "bindy_watch_events_total", "") == WRITER_ROUNDS);
    assert_true(value_of(e, "bindy_journal_last_seq", "") == WRITER_ROUNDS - 1);
    assert_true(value_of(e, "bindy_journal_commit_latency_seconds_count", "") == WRITER_ROUNDS);
    const sample_t *b0 = find(e, "bindy_journal_commit_latency_seconds_bucket", "", "0.0001");
    assert_non_null(b0);
    assert_true(b0->value == WRITER_ROUNDS / 4); /* the observations of 0 */
    assert_true(value_of(e, "bindy_apply_operations_total", "target=\"target-199\"") == 1);
    free(e);
    obs_free(o);
}

static int group_setup(void **state)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_exact),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_registry_errors),
        cmocka_unit_test(test_metric_set_over_http),
        cmocka_unit_test(test_healthz_goes_stale),
        cmocka_unit_test(test_readyz_lists_false_conditions),
        cmocka_unit_test(test_routes_head_and_methods),
        cmocka_unit_test(test_addresses_and_start),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
