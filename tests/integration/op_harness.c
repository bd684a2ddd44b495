#include "op_harness.h"
#include "clock.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "named_harness.h"

struct oph {
    char bindy[1024];
    char dir[64];
    int n;
    bd_apiserver_t *as;
    bd_proxy_t *px[OPH_MAX];
    pid_t pid[OPH_MAX];
    uint16_t health[OPH_MAX];
};

double oph_now(void)
{
    return bd_mono_s();
}

double oph_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t oph_requests(oph_t *h, int i, double after, bd_apiserver_req_t **out)
{
    char ua[32];
    snprintf(ua, sizeof(ua), "(op-%d)", i);
    size_t n = bd_apiserver_log_count(h->as), got = 0;
    bd_apiserver_req_t *v = n ? calloc(n, sizeof(*v)) : NULL;
    for (size_t k = 0; v != NULL && k < n; k++)
        if (bd_apiserver_log_get(h->as, k, &v[got]) == BD_OK && v[got].time >= after &&
            strstr(v[got].user_agent, ua) != NULL && strcmp(v[got].verb, "watch") != 0)
            got++;
    *out = v;
    return got;
}

int oph_new(const char *bindy, int n, oph_t **out, bd_err_t *err)
{
    oph_t *h = calloc(1, sizeof(*h));
    if (h == NULL || n < 1 || n > OPH_MAX) {
        free(h);
        return bd_err_set(err, BD_EINVAL, "bad replica count");
    }
    snprintf(h->bindy, sizeof(h->bindy), "%s", bindy);
    snprintf(h->dir, sizeof(h->dir), "/tmp/bindy-ha.XXXXXX");
    h->n = n;
    if (mkdtemp(h->dir) == NULL) {
        free(h);
        return bd_err_set(err, BD_EIO, "mkdtemp failed");
    }
    bd_apiserver_opts_t ao;
    bd_apiserver_opts_init(&ao);
    /* no token required: kubectl sends no bearer token over plain HTTP, and the tests run
     * kubectl against the double as a user would (the replicas send theirs anyway) */
    ao.bookmark_ms = 1000;
    const char *src = getenv("BINDY_SOURCE_DIR");
    char crds[1024], json[256];
    snprintf(crds, sizeof(crds), "%s/schema/crds", src ? src : BD_SOURCE_DIR);
    int rc;
    if ((rc = bd_apiserver_start(&ao, &h->as, err)) != BD_OK || (rc = bd_apiserver_load_crds(h->as, crds, err)) != BD_OK ||
        (rc = bd_apiserver_create(
             h->as, "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"dns-system\"}}", err)) !=
            BD_OK)
        goto fail;
    for (int i = 0; i < n; i++) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"op-%d\",\"namespace\":\"dns-system\","
                 "\"labels\":{\"app\":\"bindy\"}},\"spec\":{\"containers\":[{\"name\":\"operator\",\"image\":\"bindy\"}]}}",
                 i);
        if ((rc = bd_apiserver_create(h->as, json, err)) != BD_OK ||
            (rc = bd_proxy_start(bd_apiserver_port(h->as), &h->px[i], err)) != BD_OK ||
            (rc = bd_named_free_port(&h->health[i], err)) != BD_OK)
            goto fail;
        char path[256];
        snprintf(path, sizeof(path), "%s/kubeconfig-%d", h->dir, i);
        FILE *f = fopen(path, "w");
        if (f == NULL) {
            rc = bd_err_set(err, BD_EIO, "%s: cannot write", path);
            goto fail;
        }
        fprintf(f,
                "apiVersion: v1\nkind: Config\ncurrent-context: ha\n"
                "clusters:\n- name: double\n  cluster:\n    server: http://127.0.0.1:%u\n"
                "users:\n- name: op\n  user:\n    token: ha-token\n"
                "contexts:\n- name: ha\n  context:\n    cluster: double\n    user: op\n    namespace: dns-system\n",
                bd_proxy_port(h->px[i]));
        fclose(f);
    }
    *out = h;
    return BD_OK;
fail:
    oph_free(h);
    return rc;
}

void oph_free(oph_t *h)
{
    if (h == NULL)
        return;
    for (int i = 0; i < h->n; i++)
        if (h->pid[i] > 0)
            oph_signal(h, i, SIGKILL, true);
    for (int i = 0; i < h->n; i++)
        bd_proxy_stop(h->px[i]);
    bd_apiserver_stop(h->as);
    if (getenv("BINDY_KEEP_TMP") == NULL) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", h->dir);
    }
    free(h);
}

bd_apiserver_t *oph_apiserver(oph_t *h)
{
    return h->as;
}

bd_proxy_t *oph_proxy(oph_t *h, int i)
{
    return h->px[i];
}

const char *oph_dir(const oph_t *h)
{
    return h->dir;
}

pid_t oph_pid(oph_t *h, int i)
{
    return h->pid[i];
}

int oph_start(oph_t *h, int i, int duration_s, int renew_s, int retry_s, const char *const *env, bd_err_t *err)
{
    char state[256], log[256], kc[256], pod[16], health[64], d[16], r[16], t[16];
    snprintf(state, sizeof(state), "%s/state-%d", h->dir, i);
    snprintf(log, sizeof(log), "%s/op-%d.log", h->dir, i);
    snprintf(kc, sizeof(kc), "%s/kubeconfig-%d", h->dir, i);
    snprintf(pod, sizeof(pod), "op-%d", i);
    snprintf(health, sizeof(health), "127.0.0.1:%u", h->health[i]);
    snprintf(d, sizeof(d), "%d", duration_s);
    snprintf(r, sizeof(r), "%d", renew_s);
    snprintf(t, sizeof(t), "%d", retry_s);
    /* The environment is built here: between fork and exec the child of a threaded
     * process may not allocate (another thread may hold the allocator's lock; seen as a
     * replica that never started under ASan). */
    char vars[10][320];
    snprintf(vars[0], sizeof(vars[0]), "KUBECONFIG=%s", kc);
    snprintf(vars[1], sizeof(vars[1]), "POD_NAME=%s", pod);
    snprintf(vars[2], sizeof(vars[2]), "POD_NAMESPACE=dns-system");
    snprintf(vars[3], sizeof(vars[3]), "LEASE_NAMESPACE=dns-system");
    snprintf(vars[4], sizeof(vars[4]), "LEASE_DURATION_SECONDS=%s", d);
    snprintf(vars[5], sizeof(vars[5]), "LEASE_RENEW_DEADLINE_SECONDS=%s", r);
    snprintf(vars[6], sizeof(vars[6]), "LEASE_RETRY_PERIOD_SECONDS=%s", t);
    snprintf(vars[7], sizeof(vars[7]), "BINDY_HEALTH_ADDR=%s", health);
    snprintf(vars[8], sizeof(vars[8]), "BINDY_WATCH_NAMESPACES=dns-system");
    size_t nenv = 0, nextra = 0;
    while (environ[nenv])
        nenv++;
    while (env && env[nextra])
        nextra++;
    const char **envp = calloc(nenv + 9 + nextra + 1, sizeof(*envp));
    if (envp == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t e = 0; e < nenv; e++) { /* ours override the test's own */
        bool ours = false;
        for (size_t v = 0; v < 9 && !ours; v++)
            ours = strncmp(environ[e], vars[v], (size_t)(strchr(vars[v], '=') - vars[v]) + 1) == 0;
        for (size_t v = 0; v < nextra && !ours; v++)
            ours = strncmp(environ[e], env[v], (size_t)(strchr(env[v], '=') - env[v]) + 1) == 0;
        if (!ours)
            envp[k++] = environ[e];
    }
    for (size_t v = 0; v < 9; v++) { /* the caller's extras override ours */
        bool overridden = false;
        for (size_t x = 0; x < nextra && !overridden; x++)
            overridden = strncmp(env[x], vars[v], (size_t)(strchr(vars[v], '=') - vars[v]) + 1) == 0;
        if (!overridden)
            envp[k++] = vars[v];
    }
    for (size_t v = 0; v < nextra; v++)
        envp[k++] = env[v];
    const char *argv[] = {h->bindy, "run", "--state-dir", state, "--address", "127.0.0.1", "--port", "0", NULL};
    pid_t pid = fork();
    if (pid < 0) {
        free(envp);
        return bd_err_set(err, BD_EIO, "fork failed");
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execve(h->bindy, (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    free(envp);
    h->pid[i] = pid;
    return BD_OK;
}

int oph_signal(oph_t *h, int i, int sig, bool wait)
{
    if (h->pid[i] <= 0)
        return 0;
    kill(h->pid[i], sig);
    if (!wait)
        return 0;
    int st = 0;
    for (int k = 0; k < 2000; k++) {
        if (waitpid(h->pid[i], &st, WNOHANG) == h->pid[i]) {
            h->pid[i] = 0;
            return st;
        }
        usleep(10000);
    }
    kill(h->pid[i], SIGKILL);
    waitpid(h->pid[i], &st, 0);
    h->pid[i] = 0;
    return st;
}

bool oph_running(oph_t *h, int i)
{
    int st;
    if (h->pid[i] <= 0)
        return false;
    if (waitpid(h->pid[i], &st, WNOHANG) == h->pid[i]) {
        h->pid[i] = 0;
        return false;
    }
    return true;
}

bool oph_lease(oph_t *h, char *holder, size_t cap, long *transitions)
{
    char *txt = bd_apiserver_get(h->as, "coordination.k8s.io", "leases", "dns-system", "bindy-leader");
    holder[0] = '\0';
    *transitions = -1;
    if (txt == NULL)
        return false;
    json_t *j = json_loads(txt, 0, NULL);
    free(txt);
    json_t *spec = json_object_get(j, "spec");
    const char *hi = json_string_value(json_object_get(spec, "holderIdentity"));
    snprintf(holder, cap, "%s", hi ? hi : "");
    *transitions = (long)json_integer_value(json_object_get(spec, "leaseTransitions"));
    json_decref(j);
    return true;
}

int oph_index(const char *holder)
{
    int i;
    char end;
    if (sscanf(holder, "op-%d%c", &i, &end) == 1 && i >= 0 && i < OPH_MAX)
        return i;
    return -1;
}

int oph_wait_holder(oph_t *h, int not, double timeout_s)
{
    double end = oph_now() + timeout_s;
    char holder[256];
    long tr;
    while (oph_now() < end) {
        if (oph_lease(h, holder, sizeof(holder), &tr)) {
            int i = oph_index(holder);
            if (i >= 0 && i != not)
                return i;
        }
        usleep(5000);
    }
    return -1;
}

typedef struct {
    char *buf;
    size_t len;
} body_t;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    body_t *b = arg;
    char *nb = realloc(b->buf, b->len + sz * n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + b->len, p, sz * n);
    b->len += sz * n;
    nb[b->len] = '\0';
    b->buf = nb;
    return sz * n;
}

/* GET path on replica i's health port: the HTTP status (0: no answer) and the body. */
static long http_get(oph_t *h, int i, const char *path, body_t *b)
{
    char url[128];
    long code = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", h->health[i], path);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    if (curl_easy_perform(c) != CURLE_OK || curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
        code = 0;
    curl_easy_cleanup(c);
    return code;
}

long oph_merge_patch(oph_t *h, const char *path, const char *json)
{
    char url[512];
    body_t b = {0};
    long code = 0;
    snprintf(url, sizeof(url), "%s%s", bd_apiserver_url(h->as), path);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return 0;
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/merge-patch+json");
    hd = curl_slist_append(hd, "Authorization: Bearer ha-token");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    if (curl_easy_perform(c) != CURLE_OK || curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
        code = 0;
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    free(b.buf);
    return code;
}

long oph_http(oph_t *h, int i, const char *path)
{
    body_t b = {0};
    long code = http_get(h, i, path, &b);
    free(b.buf);
    return code;
}

double oph_metric(oph_t *h, int i, const char *name)
{
    body_t b = {0};
    double v = NAN;
    if (http_get(h, i, "/metrics", &b) == 200 && b.buf) {
        size_t nl = strlen(name);
        for (char *line = b.buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
            if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
                v = strtod(line + nl + 1, NULL);
                break;
            }
    }
    free(b.buf);
    return v;
}

bool oph_pod_labelled(oph_t *h, int i)
{
    char name[16];
    snprintf(name, sizeof(name), "op-%d", i);
    char *txt = bd_apiserver_get(h->as, "", "pods", "dns-system", name);
    json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    const char *v = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "metadata"), "labels"), "bindy.firestoned.io/hidden-primary"));
    bool on = v && strcmp(v, "true") == 0;
    json_decref(j);
    return on;
}

double oph_log_time(oph_t *h, int i, const char *text)
{
    char path[256], line[2048];
    snprintf(path, sizeof(path), "%s/op-%d.log", h->dir, i);
    FILE *f = fopen(path, "r");
    double t = NAN;
    if (f == NULL)
        return NAN;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, text) == NULL)
            continue;
        struct tm tm = {0};
        int ms = 0;
        char *rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
        if (rest && sscanf(rest, ".%3dZ", &ms) == 1)
            t = (double)timegm(&tm) + ms / 1000.0;
        break;
    }
    fclose(f);
    return t;
}
