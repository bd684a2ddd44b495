/*
 * named_harness.c - run BIND named for tests (see named_harness.h).
 */
#include "named_harness.h"
#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_INSTANCES 32

struct bd_named {
    char dir[256];
    char conf_path[300];
    char log_path[300];
    char *conf;          /* expanded configuration, for restarts */
    bool wants_ctl;      /* the configuration uses @CTLPORT@ */
    uint16_t port, ctl_port;
    pid_t pid;
};

static bd_named_t *instances[MAX_INSTANCES];
static bool atexit_done;

static void kill_all_at_exit(void)
{
    for (size_t i = 0; i < MAX_INSTANCES; i++) {
        if (instances[i] != NULL && instances[i]->pid > 0) {
            kill(instances[i]->pid, SIGKILL);
            (void)waitpid(instances[i]->pid, NULL, 0);
            instances[i]->pid = 0;
        }
    }
}

static void track(bd_named_t *n, bool on)
{
    if (!atexit_done) {
        atexit(kill_all_at_exit);
        atexit_done = true;
    }
    for (size_t i = 0; i < MAX_INSTANCES; i++) {
        if (on && instances[i] == NULL) {
            instances[i] = n;
            return;
        }
        if (!on && instances[i] == n) {
            instances[i] = NULL;
            return;
        }
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int bd_named_free_port(uint16_t *port, bd_err_t *err)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
        socklen_t len = sizeof(sin);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return bd_err_set(err, BD_EIO, "socket: %s", strerror(errno));
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
            int e = errno;
            close(fd);
            return bd_err_set(err, BD_EIO, "bind 127.0.0.1:0: %s", strerror(e));
        }
        close(fd);
        /* DNS needs the UDP port too. */
        int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (ufd < 0)
            return bd_err_set(err, BD_EIO, "socket: %s", strerror(errno));
        int ok = bind(ufd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        close(ufd);
        if (ok) {
            *port = ntohs(sin.sin_port);
            return 0;
        }
    }
    return bd_err_set(err, BD_EIO, "no free TCP+UDP port on 127.0.0.1");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int bd_named_new(bd_named_t **out, bd_err_t *err)
{
    bd_named_t *n = NULL;
    int rc;

    *out = NULL;
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(n->dir, sizeof(n->dir), "%s/bindy-named-XXXXXX", tmp);
    if (mkdtemp(n->dir) == NULL) {
        rc = bd_err_set(err, BD_EIO, "mkdtemp %s: %s", n->dir, strerror(errno));
        free(n);
        return rc;
    }
    snprintf(n->conf_path, sizeof(n->conf_path), "%s/named.conf", n->dir);
    snprintf(n->log_path, sizeof(n->log_path), "%s/named.log", n->dir);
    rc = bd_named_free_port(&n->port, err);
    if (rc == 0) {
        do {
            rc = bd_named_free_port(&n->ctl_port, err);
        } while (rc == 0 && n->ctl_port == n->port);
    }
    if (rc != 0) {
        rm_rf(n->dir);
        free(n);
        return rc;
    }
    track(n, true);
    *out = n;
    return 0;
}

const char *bd_named_dir(const bd_named_t *n)
{
    return n->dir;
}

uint16_t bd_named_port(const bd_named_t *n)
{
    return n->port;
}

uint16_t bd_named_ctl_port(const bd_named_t *n)
{
    return n->ctl_port;
}

pid_t bd_named_pid(const bd_named_t *n)
{
    return n->pid;
}

static int write_text(const char *path, const char *text, bd_err_t *err)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return bd_err_set(err, BD_EIO, "open %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return bd_err_set(err, BD_EIO, "write %s failed", path);
    return 0;
}

int bd_named_write_file(bd_named_t *n, const char *name, const char *text, bd_err_t *err)
{
    char path[600];
    if (name == NULL || text == NULL || name[0] == '\0' || strchr(name, '/') != NULL)
        return bd_err_set(err, BD_EINVAL, "bad file name");
    snprintf(path, sizeof(path), "%s/%s", n->dir, name);
    return write_text(path, text, err);
}

/* conf with every @DIR@, @PORT@, @CTLPORT@ replaced; malloc()ed or NULL. */
static char *expand(const bd_named_t *n, const char *conf)
{
    char port[16], ctl[16];
    snprintf(port, sizeof(port), "%u", (unsigned)n->port);
    snprintf(ctl, sizeof(ctl), "%u", (unsigned)n->ctl_port);
    const struct {
        const char *from, *to;
    } subst[] = {{"@DIR@", n->dir}, {"@PORT@", port}, {"@CTLPORT@", ctl}};
    size_t cap = strlen(conf) * 2 + 1024, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    for (const char *p = conf; *p != '\0';) {
        const char *rep = NULL;
        size_t skip = 1;
        for (size_t i = 0; i < sizeof(subst) / sizeof(subst[0]); i++) {
            size_t fl = strlen(subst[i].from);
            if (strncmp(p, subst[i].from, fl) == 0) {
                rep = subst[i].to;
                skip = fl;
                break;
            }
        }
        size_t add = rep ? strlen(rep) : 1;
        if (len + add + 1 > cap) {
            cap = (len + add + 1) * 2;
            char *bigger = realloc(out, cap);
            if (bigger == NULL) {
                free(out);
                return NULL;
            }
            out = bigger;
        }
        if (rep != NULL)
            memcpy(out + len, rep, add);
        else
            out[len] = *p;
        len += add;
        p += skip;
    }
    out[len] = '\0';
    return out;
}

void bd_named_log_tail(const bd_named_t *n, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    FILE *f = fopen(n->log_path, "r");
    if (f == NULL)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long from = size > (long)(cap - 1) ? size - (long)(cap - 1) : 0;
        if (fseek(f, from, SEEK_SET) == 0) {
            size_t got = fread(buf, 1, cap - 1, f);
            buf[got] = '\0';
        }
    }
    fclose(f);
}

/* Does the log, from offset on, contain named's final start-up line "running"? */
static bool log_says_running(const bd_named_t *n, long offset)
{
    bool found = false;
    FILE *f = fopen(n->log_path, "r");
    if (f == NULL)
        return false;
    if (fseek(f, offset, SEEK_SET) == 0) {
        char line[1024];
        while (!found && fgets(line, sizeof(line), f) != NULL) {
            size_t len = strlen(line);
            found = len >= 9 && strcmp(line + len - 9, " running\n") == 0;
        }
    }
    fclose(f);
    return found;
}

static bool port_accepts(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

/* Path of the named binary into buf: $BINDY_NAMED, /usr/sbin/named, or PATH. */
static bool named_binary(char *buf, size_t cap)
{
    const char *env = getenv("BINDY_NAMED");
    if (env != NULL && env[0] != '\0') {
        snprintf(buf, cap, "%s", env);
        return access(buf, X_OK) == 0;
    }
    snprintf(buf, cap, "/usr/sbin/named");
    if (access(buf, X_OK) == 0)
        return true;
    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0) {
            snprintf(buf, cap, "%.*s/named", (int)len, path);
            if (access(buf, X_OK) == 0)
                return true;
        }
        path = colon ? colon + 1 : NULL;
    }
    snprintf(buf, cap, "named");
    return false;
}

/* Reap without blocking; true (and pid cleared) if named has exited. */
static bool reaped(bd_named_t *n, int *status)
{
    if (n->pid <= 0)
        return true;
    pid_t r = waitpid(n->pid, status, WNOHANG);
    if (r == n->pid || (r < 0 && errno == ECHILD)) {
        n->pid = 0;
        return true;
    }
    return false;
}

static int spawn(bd_named_t *n, double timeout, bd_err_t *err)
{
    char bin[512];
    char tail[1500];
    int status = 0;

    if (!named_binary(bin, sizeof(bin)))
        return bd_err_set(err, BD_ENOTFOUND,
                          "named not found (tried %s; install Debian's bind9 package, or set "
                          "BINDY_NAMED)", bin);
    struct stat st;
    long offset = stat(n->log_path, &st) == 0 ? (long)st.st_size : 0;
    int logfd = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return bd_err_set(err, BD_EIO, "open %s: %s", n->log_path, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        close(logfd);
        return bd_err_set(err, BD_EIO, "open /dev/null: %s", strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(logfd);
        close(nullfd);
        return bd_err_set(err, BD_EIO, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        sigset_t all;
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigemptyset(&all);
        (void)sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(127);
        execl(bin, "named", "-g", "-n", "1", "-c", n->conf_path, (char *)NULL);
        static const char msg[] = "named_harness: exec of named failed\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(127);
    }
    close(logfd);
    close(nullfd);
    n->pid = pid;

    double deadline = bd_mono_s() + timeout;
    for (;;) {
        if (reaped(n, &status)) {
            bd_named_log_tail(n, tail, sizeof(tail));
            char how[48];
            if (WIFSIGNALED(status))
                snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
            else
                snprintf(how, sizeof(how), "exit code %d", WEXITSTATUS(status));
            return bd_err_set(err, BD_EIO, "named exited during start-up (%s); end of %s:\n%s",
                              how, n->log_path, tail);
        }
        if (log_says_running(n, offset) && (!n->wants_ctl || port_accepts(n->ctl_port)))
            return 0;
        if (bd_mono_s() > deadline)
            break;
        sleep_ms(50);
    }
    bd_named_stop(n);
    bd_named_log_tail(n, tail, sizeof(tail));
    return bd_err_set(err, BD_ETIMEOUT, "named not ready within %.1fs; end of %s:\n%s", timeout,
                      n->log_path, tail);
}

int bd_named_start(bd_named_t *n, const char *conf, double timeout, bd_err_t *err)
{
    if (n->pid > 0)
        return bd_err_set(err, BD_EBUSY, "named already running (pid %d)", (int)n->pid);
    char *expanded = expand(n, conf);
    if (expanded == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    int rc = write_text(n->conf_path, expanded, err);
    if (rc != 0) {
        free(expanded);
        return rc;
    }
    free(n->conf);
    n->conf = expanded;
    n->wants_ctl = strstr(conf, "@CTLPORT@") != NULL;
    return spawn(n, timeout, err);
}

int bd_named_restart(bd_named_t *n, double timeout, bd_err_t *err)
{
    if (n->conf == NULL)
        return bd_err_set(err, BD_EINVAL, "named was never started");
    bd_named_stop(n);
    return spawn(n, timeout, err);
}

int bd_named_stop(bd_named_t *n)
{
    int status;
    if (n == NULL || n->pid <= 0)
        return 0;
    kill(n->pid, SIGTERM);
    double deadline = bd_mono_s() + 10.0;
    while (bd_mono_s() < deadline) {
        if (reaped(n, &status))
            return 0;
        sleep_ms(20);
    }
    kill(n->pid, SIGKILL);
    (void)waitpid(n->pid, &status, 0);
    n->pid = 0;
    return BD_ETIMEOUT;
}

void bd_named_free(bd_named_t *n)
{
    if (n == NULL)
        return;
    bd_named_stop(n);
    const char *keep = getenv("BINDY_KEEP_NAMED_DIR");
    if (keep == NULL || keep[0] == '\0')
        rm_rf(n->dir);
    track(n, false);
    free(n->conf);
    free(n);
}

ldns_rr_list *bd_named_ask(const char *addr, uint16_t port, const char *name, ldns_rr_type type)
{
    ldns_rr_list *out = NULL;
    ldns_resolver *res = ldns_resolver_new();
    ldns_rdf *ns = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, addr);
    ldns_rdf *dn = ldns_dname_new_frm_str(name);
    ldns_pkt *pkt = NULL;
    if (res == NULL || ns == NULL || dn == NULL)
        goto out;
    ldns_resolver_push_nameserver(res, ns);
    ldns_resolver_set_port(res, port);
    ldns_resolver_set_timeout(res, (struct timeval){0, 500000});
    ldns_resolver_set_retry(res, 1);
    ldns_resolver_set_recursive(res, false);
    if (ldns_resolver_query_status(&pkt, res, dn, type, LDNS_RR_CLASS_IN, 0) == LDNS_STATUS_OK && pkt &&
        ldns_pkt_get_rcode(pkt) == LDNS_RCODE_NOERROR)
        out = ldns_pkt_rr_list_by_type(pkt, type, LDNS_SECTION_ANSWER);
out:
    ldns_pkt_free(pkt);
    ldns_rdf_deep_free(dn);
    ldns_rdf_deep_free(ns);
    ldns_resolver_deep_free(res);
    return out;
}
