/*
 * supervisor.c - local named processes, supervised like pods (see supervisor.h).
 *
 * Each process is a proc_t in a string-keyed map. Its watchers are embedded: child_w
 * (libev reaps it on the default loop), timer_w (one deadline at a time, by state:
 * BACKOFF restart, STOPPING grace, STARTING/RELOADING verdict) and poll_w (reads new
 * lines of named.log while STARTING or RELOADING). A proc_t is freed only after its
 * child was reaped (or when it never had one), from forget().
 */
#include "supervisor.h"

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
#include <unistd.h>

#include "fs.h"
#include "hmap.h"
#include "log.h"

#define POLL_S 0.1                  /* named.log scan period while waiting for a verdict */
#define LOG_CHECK_S 2.0             /* named.log size check period */
#define LOG_KEEP_BYTES (256 * 1024) /* copied to named.log.1 when named.log is capped */
#define SCAN_CHUNK (64 * 1024)      /* bytes of named.log read per scan, at most */
#define TAIL_BYTES 8192             /* bytes read to find the last lines */
#define TAIL_LINES 6                /* lines quoted when named exits or rejects a reload */
#define MSG_CAP 1536

typedef struct {
    char *name;
    char *text;
} pfile_t;

typedef struct proc {
    loc_sup_t *sup;
    char *key;
    char *dir;
    char *conf_path;
    char *log_path;
    char *conf;       /* named.conf text as last written */
    pfile_t *files;   /* extra files as last written */
    size_t nfiles;
    uint16_t dns_port, ctl_port;

    loc_state_t state;
    double since;
    pid_t pid;
    ev_child child_w;
    ev_timer timer_w;
    ev_timer poll_w;
    double started_at; /* ev_now() at the last start attempt */
    double backoff;    /* the delay of the last back-off; 0: none yet */
    unsigned restarts;
    off_t run_off;     /* size of named.log when the current run began */
    off_t scan_off;    /* next byte of named.log to scan */
    off_t reload_off;  /* size of named.log when SIGHUP was sent */
    bool reload_wanted; /* files changed since named last read them: SIGHUP when possible */
    bool reload_ok;     /* RELOADING: "reloading configuration succeeded" seen */
    bool removing;      /* STOPPING for good */
    bool rm_dir;        /* ... and delete the directory then */
    bool respawn;       /* STOPPING to start again (new directory, or removal cancelled) */
    bool start_timed_out;
    char last_exit[MSG_CAP];
    char reload_error[MSG_CAP];
} proc_t;

struct loc_sup {
    struct ev_loop *loop;
    loc_sup_opts_t opts;
    char *named_bin;
    char threads_arg[16];
    bd_hmap_t *procs;
    ev_timer logcap_w;
    ev_timer done_w;
    bool shutting_down;
    loc_sup_stopped_fn stopped_cb;
    void *stopped_arg;
};

static void proc_spawn(proc_t *p);
static void send_reload(proc_t *p);

const char *loc_state_name(loc_state_t state)
{
    switch (state) {
    case LOC_STATE_STARTING:
        return "starting";
    case LOC_STATE_RUNNING:
        return "running";
    case LOC_STATE_RELOADING:
        return "reloading";
    case LOC_STATE_BACKOFF:
        return "backoff";
    case LOC_STATE_STOPPING:
        return "stopping";
    case LOC_STATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s == NULL)
        return NULL;
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

/* Write len bytes to dir/name atomically (dir/.name.tmp, then rename), mode 0600. */
static int write_atomic(const char *dir, const char *name, const char *data, size_t len,
                        bd_err_t *err)
{
    char *path = NULL, *tmp = NULL;
    char *tmpname = NULL;
    int fd = -1, rc = 0;

    path = path_join(dir, name);
    if (path != NULL && asprintf(&tmpname, ".%s.tmp", name) < 0)
        tmpname = NULL;
    if (tmpname != NULL)
        tmp = path_join(dir, tmpname);
    if (path == NULL || tmp == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = bd_err_set(err, BD_EIO, "open %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    (void)fchmod(fd, 0600); /* an existing temporary file keeps its mode otherwise */
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = bd_err_set(err, BD_EIO, "write %s: %s", tmp, strerror(errno));
            goto cleanup;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = bd_err_set(err, BD_EIO, "close %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = bd_err_set(err, BD_EIO, "rename %s to %s: %s", tmp, path, strerror(errno));
        goto cleanup;
    }
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && tmp != NULL)
        (void)unlink(tmp);
    free(path);
    free(tmp);
    free(tmpname);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir == NULL || dir[0] != '/' || strcmp(dir, "/") == 0)
        return;
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The message of a named -g log line: without "23-Nov-2026 20:28:38.592 ". */
static const char *strip_ts(const char *line, size_t len, size_t *mlen)
{
    static const char pat[] = "00-Aaa-0000 00:00:00.000 ";
    size_t plen = sizeof(pat) - 1;
    *mlen = len;
    if (len < plen)
        return line;
    for (size_t i = 0; i < plen; i++) {
        char c = line[i];
        bool ok = pat[i] == '0'   ? (c >= '0' && c <= '9')
                  : pat[i] == 'A' ? (c >= 'A' && c <= 'Z')
                  : pat[i] == 'a' ? (c >= 'a' && c <= 'z')
                                  : c == pat[i];
        if (!ok)
            return line;
    }
    *mlen = len - plen;
    return line + plen;
}

static bool msg_is(const char *msg, size_t mlen, const char *want)
{
    size_t wl = strlen(want);
    return mlen == wl && memcmp(msg, want, wl) == 0;
}

static bool msg_starts(const char *msg, size_t mlen, const char *want)
{
    size_t wl = strlen(want);
    return mlen >= wl && memcmp(msg, want, wl) == 0;
}

/*
 * The last TAIL_LINES non-empty lines of path between byte offsets from and to (to < 0:
 * the end), without timestamps, joined by " | " into out. "(no output)" when empty.
 */
static void log_tail(const char *path, off_t from, off_t to, char *out, size_t cap)
{
    char buf[TAIL_BYTES + 1];
    struct stat st;
    ssize_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    snprintf(out, cap, "(no output)");
    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0)
        goto cleanup;
    if (to < 0 || to > st.st_size)
        to = st.st_size;
    if (from > to)
        from = 0; /* the file was truncated meanwhile */
    bool clipped = to - from > TAIL_BYTES;
    if (clipped)
        from = to - TAIL_BYTES;
    n = pread(fd, buf, (size_t)(to - from), from);
    if (n <= 0)
        goto cleanup;
    buf[n] = '\0';
    /* Walk back over at most TAIL_LINES non-empty lines. */
    const char *starts[TAIL_LINES];
    size_t lens[TAIL_LINES];
    int got = 0;
    size_t end = (size_t)n;
    while (end > 0 && got < TAIL_LINES) {
        size_t s = end;
        while (s > 0 && buf[s - 1] != '\n')
            s--;
        size_t len = end - s;
        if (len > 0 && !(s == 0 && clipped && got > 0)) {
            /* The first line of a clipped read is partial: shown only when it is all
             * there is. */
            size_t mlen;
            const char *msg = strip_ts(buf + s, len, &mlen);
            starts[got] = msg;
            lens[got] = mlen;
            got++;
        }
        if (s == 0)
            break;
        end = s - 1;
    }
    if (got == 0)
        goto cleanup;
    size_t used = 0;
    out[0] = '\0';
    for (int i = got - 1; i >= 0 && used + 1 < cap; i--) {
        int w = snprintf(out + used, cap - used, "%s%.*s", i == got - 1 ? "" : " | ",
                         (int)lens[i], starts[i]);
        if (w < 0)
            break;
        used += (size_t)w;
        if (used >= cap)
            used = cap - 1;
    }
cleanup:
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* ---- state and lifecycle ---- */

/* kill(2) for our child only: never pid 0 or -1 (which would signal a process group or
 * everything). Returns 0 or -1 with errno. */
static int signal_proc(const proc_t *p, int sig)
{
    if (p->pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    return kill(p->pid, sig);
}

static void info_fill(const proc_t *p, loc_proc_info_t *info)
{
    memset(info, 0, sizeof(*info));
    info->key = p->key;
    info->dir = p->dir;
    info->state = p->state;
    info->pid = p->pid;
    info->dns_port = p->dns_port;
    info->ctl_port = p->ctl_port;
    info->restarts = p->restarts;
    info->backoff = p->backoff;
    info->since = p->since;
    info->last_exit = p->last_exit;
    info->reload_error = p->reload_error;
}

static void set_state(proc_t *p, loc_state_t state)
{
    loc_sup_t *sup = p->sup;
    loc_proc_info_t info;

    p->state = state;
    p->since = ev_now(sup->loop);
    bd_debug("named for %s: %s (pid %d)", p->key, loc_state_name(state), (int)p->pid);
    if (sup->opts.on_state != NULL) {
        info_fill(p, &info);
        sup->opts.on_state(&info, sup->opts.arg);
    }
}

static void files_free(pfile_t *files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(files[i].name);
        free(files[i].text);
    }
    free(files);
}

/* Stop every watcher and free; the child (if any) is not touched. */
static void proc_free(proc_t *p)
{
    if (p == NULL)
        return;
    if (p->sup != NULL) {
        ev_child_stop(p->sup->loop, &p->child_w);
        ev_timer_stop(p->sup->loop, &p->timer_w);
        ev_timer_stop(p->sup->loop, &p->poll_w);
    }
    free(p->key);
    free(p->dir);
    free(p->conf_path);
    free(p->log_path);
    free(p->conf);
    files_free(p->files, p->nfiles);
    free(p);
}

static void update_timers(loc_sup_t *sup)
{
    size_t n = bd_hmap_count(sup->procs);
    if (n > 0 && !ev_is_active(&sup->logcap_w))
        ev_timer_again(sup->loop, &sup->logcap_w);
    else if (n == 0)
        ev_timer_stop(sup->loop, &sup->logcap_w);
    if (n == 0 && sup->shutting_down && sup->stopped_cb != NULL &&
        !ev_is_active(&sup->done_w)) {
        ev_timer_set(&sup->done_w, 0.0, 0.0);
        ev_timer_start(sup->loop, &sup->done_w);
    }
}

/* The process is gone for good: STOPPED, optional rm -rf, then forget it. */
static void finish_stop(proc_t *p)
{
    loc_sup_t *sup = p->sup;
    p->pid = 0;
    bd_info("named for %s stopped", p->key);
    set_state(p, LOC_STATE_STOPPED);
    if (p->rm_dir)
        rm_rf(p->dir);
    (void)bd_hmap_del(sup->procs, p->key);
    proc_free(p);
    update_timers(sup);
}

/*
 * The process exited unexpectedly (or could not be forked): count it, log it with the end
 * of its log, and arm the restart. `now`: its files changed after it started (it never ran
 * the current configuration), so restart at once; the delay is not doubled then.
 */
static void enter_backoff(proc_t *p, const char *how, bool now)
{
    loc_sup_t *sup = p->sup;
    const loc_sup_opts_t *o = &sup->opts;
    char tail[1024];
    double uptime = ev_now(sup->loop) - p->started_at;
    double delay;

    if (now)
        delay = 0.0;
    else if (p->backoff <= 0 || uptime >= o->backoff_reset)
        delay = o->backoff_min;
    else
        delay = p->backoff * 2 > o->backoff_max ? o->backoff_max : p->backoff * 2;
    if (!now || p->backoff <= 0)
        p->backoff = delay > 0 ? delay : o->backoff_min;
    p->restarts++;
    p->pid = 0;
    p->reload_wanted = false;
    log_tail(p->log_path, p->run_off, -1, tail, sizeof(tail));
    snprintf(p->last_exit, sizeof(p->last_exit), "%s; last lines of %s: %s", how, p->log_path,
             tail);
    bd_warn("named for %s %s; restarting in %.1f s%s; last lines of %s: %s", p->key, how, delay,
            now ? " (its configuration changed since it started)" : "", p->log_path, tail);
    ev_timer_stop(sup->loop, &p->poll_w);
    ev_timer_stop(sup->loop, &p->timer_w);
    ev_timer_set(&p->timer_w, delay, 0.0);
    ev_timer_start(sup->loop, &p->timer_w);
    set_state(p, LOC_STATE_BACKOFF);
}

/* Ask the process to stop (removal, stop_all, or a restart when p->respawn is set). */
static void stop_proc(proc_t *p)
{
    loc_sup_t *sup = p->sup;

    p->reload_wanted = false;
    switch (p->state) {
    case LOC_STATE_BACKOFF:
        ev_timer_stop(sup->loop, &p->timer_w);
        if (p->respawn) {
            p->respawn = false;
            proc_spawn(p);
        } else {
            finish_stop(p);
        }
        return;
    case LOC_STATE_STOPPING:
    case LOC_STATE_STOPPED:
        return;
    case LOC_STATE_STARTING:
    case LOC_STATE_RUNNING:
    case LOC_STATE_RELOADING:
        break;
    }
    ev_timer_stop(sup->loop, &p->poll_w);
    ev_timer_stop(sup->loop, &p->timer_w);
    if (signal_proc(p, SIGTERM) != 0 && errno != ESRCH)
        bd_warn("named for %s: kill(%d, SIGTERM): %s", p->key, (int)p->pid, strerror(errno));
    ev_timer_set(&p->timer_w, sup->opts.stop_grace, 0.0);
    ev_timer_start(sup->loop, &p->timer_w);
    set_state(p, LOC_STATE_STOPPING);
}

static void become_running(proc_t *p, bool after_reload)
{
    loc_sup_t *sup = p->sup;
    ev_timer_stop(sup->loop, &p->poll_w);
    ev_timer_stop(sup->loop, &p->timer_w);
    if (!after_reload)
        bd_info("named for %s is running (pid %d, DNS port %u, control port %u)", p->key,
                (int)p->pid, (unsigned)p->dns_port, (unsigned)p->ctl_port);
    set_state(p, LOC_STATE_RUNNING);
    if (p->reload_wanted)
        send_reload(p);
}

static void send_reload(proc_t *p)
{
    loc_sup_t *sup = p->sup;

    p->reload_wanted = false;
    p->reload_ok = false;
    p->reload_off = p->scan_off = file_size(p->log_path);
    if (signal_proc(p, SIGHUP) != 0) {
        /* ESRCH: it just died; the reap will restart it with the new files. */
        bd_warn("named for %s: kill(%d, SIGHUP): %s", p->key, (int)p->pid, strerror(errno));
        return;
    }
    bd_info("named for %s: configuration changed; sent SIGHUP to reload it", p->key);
    ev_timer_set(&p->timer_w, sup->opts.start_timeout, 0.0);
    ev_timer_start(sup->loop, &p->timer_w);
    ev_timer_again(sup->loop, &p->poll_w);
    set_state(p, LOC_STATE_RELOADING);
}

/* One line of named.log while STARTING or RELOADING; true when the state changed. */
static bool scan_line(proc_t *p, const char *line, size_t len, off_t line_end)
{
    size_t mlen;
    const char *msg = strip_ts(line, len, &mlen);

    if (p->state == LOC_STATE_STARTING) {
        if (msg_is(msg, mlen, "running")) {
            become_running(p, false);
            return true;
        }
        return false;
    }
    if (p->state != LOC_STATE_RELOADING)
        return false;
    if (msg_starts(msg, mlen, "reloading configuration succeeded")) {
        p->reload_ok = true;
        p->reload_error[0] = '\0';
    } else if (msg_starts(msg, mlen, "reloading configuration failed")) {
        log_tail(p->log_path, p->reload_off, line_end, p->reload_error,
                 sizeof(p->reload_error));
        bd_warn("named for %s rejected its new configuration and keeps the previous one: %s",
                p->key, p->reload_error);
        become_running(p, true);
        return true;
    } else if (p->reload_ok && msg_is(msg, mlen, "running")) {
        bd_info("named for %s reloaded its configuration", p->key);
        become_running(p, true);
        return true;
    }
    return false;
}

/* Read what named logged since scan_off (bounded) and act on complete lines. */
static void scan_log(proc_t *p)
{
    char *buf = NULL;
    struct stat st;
    int fd = open(p->log_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0)
        goto cleanup;
    if (st.st_size < p->scan_off)
        p->scan_off = 0; /* truncated by someone else */
    if (st.st_size == p->scan_off)
        goto cleanup;
    buf = malloc(SCAN_CHUNK);
    if (buf == NULL)
        goto cleanup;
    ssize_t n = pread(fd, buf, SCAN_CHUNK, p->scan_off);
    if (n <= 0)
        goto cleanup;
    off_t base = p->scan_off;
    size_t start = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        if (buf[i] != '\n')
            continue;
        const char *line = buf + start;
        size_t len = i - start;
        start = i + 1;
        p->scan_off = base + (off_t)start;
        if (scan_line(p, line, len, p->scan_off)) {
            /* The rest of this chunk was logged before the new state began (and before any
             * new SIGHUP, whose send_reload set scan_off): skip it. */
            if (p->state != LOC_STATE_RELOADING) {
                for (size_t j = (size_t)n; j > 0; j--) {
                    if (buf[j - 1] == '\n') {
                        p->scan_off = base + (off_t)j;
                        break;
                    }
                }
            }
            goto cleanup;
        }
    }
    if (start == 0 && (size_t)n == SCAN_CHUNK)
        p->scan_off = base + n; /* a line longer than the chunk: skip it */
cleanup:
    free(buf);
    close(fd);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    scan_log((proc_t *)w->data);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    proc_t *p = w->data;
    loc_sup_t *sup = p->sup;

    switch (p->state) {
    case LOC_STATE_BACKOFF:
        proc_spawn(p);
        break;
    case LOC_STATE_STOPPING:
        bd_warn("named for %s did not exit within %.1f s of SIGTERM; sending SIGKILL", p->key,
                sup->opts.stop_grace);
        (void)signal_proc(p, SIGKILL);
        break;
    case LOC_STATE_STARTING:
        scan_log(p); /* last chance */
        if (p->state != LOC_STATE_STARTING)
            break;
        bd_warn("named for %s did not log \"running\" within %.1f s; killing it", p->key,
                sup->opts.start_timeout);
        p->start_timed_out = true;
        ev_timer_stop(loop, &p->poll_w);
        (void)signal_proc(p, SIGKILL);
        break;
    case LOC_STATE_RELOADING:
        scan_log(p);
        if (p->state != LOC_STATE_RELOADING)
            break;
        bd_warn("named for %s gave no reload verdict within %.1f s; assuming it still runs",
                p->key, sup->opts.start_timeout);
        become_running(p, true);
        break;
    case LOC_STATE_RUNNING:
    case LOC_STATE_STOPPED:
        break;
    }
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    proc_t *p = w->data;
    int status = w->rstatus;
    char how[160];

    ev_child_stop(loop, w);
    ev_timer_stop(loop, &p->timer_w);
    ev_timer_stop(loop, &p->poll_w);
    p->pid = 0;
    if (p->state == LOC_STATE_STOPPING) {
        if (p->respawn) {
            p->respawn = false;
            proc_spawn(p);
        } else {
            finish_stop(p);
        }
        return;
    }
    if (p->start_timed_out)
        snprintf(how, sizeof(how), "did not start within %.1f s and was killed",
                 p->sup->opts.start_timeout);
    else if (WIFEXITED(status))
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(how, sizeof(how), "was killed by signal %d (SIG%s)%s", WTERMSIG(status),
                 abbrev != NULL ? abbrev : "?", WCOREDUMP(status) ? ", core dumped" : "");
    } else
        snprintf(how, sizeof(how), "ended with wait status 0x%x", (unsigned)status);
    enter_backoff(p, how, p->reload_wanted);
}

/* Write "bindy: <what> failed: errno N\n" to fd 2 with async-signal-safe calls only. */
static void child_fail(const char *what, int e)
{
    char buf[256];
    size_t n = 0;
    const char *parts[] = {"bindy: ", what, " failed: errno "};
    for (size_t i = 0; i < 3; i++)
        for (const char *s = parts[i]; *s != '\0' && n < sizeof(buf) - 16; s++)
            buf[n++] = *s;
    char digits[12];
    int nd = 0;
    unsigned v = (unsigned)e;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && nd < (int)sizeof(digits));
    while (nd > 0)
        buf[n++] = digits[--nd];
    buf[n++] = '\n';
    (void)!write(2, buf, n);
    _exit(127);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void __attribute__((noreturn))
child_exec(const char *bin, char *const argv[], const char *dir, int logfd, int nullfd,
           pid_t parent)
{
    struct sigaction sa;
    sigset_t none;

    /* Die with the thread that forked us, even if it is SIGKILLed; if it already died
     * (we were re-parented before prctl), give up. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &sa, NULL);
    /* Move both descriptors above 2 first, so that dup2 never meets itself (and drops
     * FD_CLOEXEC) even when bindy runs with 0-2 closed. */
    int lf = fcntl(logfd, F_DUPFD, 3);
    int nf = fcntl(nullfd, F_DUPFD, 3);
    if (lf < 0 || nf < 0 || dup2(nf, 0) < 0 || dup2(lf, 1) < 0 || dup2(lf, 2) < 0)
        _exit(127);
    if (chdir(dir) != 0)
        child_fail("chdir to the working directory", errno);
    if (close_range(3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 65536; fd++)
            (void)close(fd);
    }
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execv(bin, argv);
    child_fail("exec of named", errno);
    _exit(127); /* not reached */
}

/* A process whose directory was removed (or emptied) starts from its last written files,
 * as a pod starts from a fresh volume: named then refills itself by transfer. */
static int restore_files(proc_t *p, bd_err_t *err)
{
    struct stat st;
    if (stat(p->conf_path, &st) == 0)
        return 0;
    int rc = bd_mkdirs(p->dir, 0750, err);
    if (rc == 0)
        rc = write_atomic(p->dir, "named.conf", p->conf, strlen(p->conf), err);
    for (size_t i = 0; rc == 0 && i < p->nfiles; i++)
        rc = write_atomic(p->dir, p->files[i].name, p->files[i].text, strlen(p->files[i].text), err);
    if (rc == 0)
        bd_warn("named for %s: its directory %s was missing; recreated it from the current configuration",
                p->key, p->dir);
    return rc;
}

static void proc_spawn(proc_t *p)
{
    loc_sup_t *sup = p->sup;
    int logfd = -1, nullfd = -1;
    char how[200];
    struct stat st;
    sigset_t all, old;
    char a0[] = "named", a1[] = "-g", a2[] = "-n", a4[] = "-c";
    char *argv[] = {a0, a1, a2, sup->threads_arg, a4, p->conf_path, NULL};

    p->started_at = ev_now(sup->loop);
    p->start_timed_out = false;
    p->reload_wanted = false; /* named reads the current files */
    p->respawn = false;
    bd_err_t ferr;
    if (restore_files(p, &ferr) != 0) {
        snprintf(how, sizeof(how), "could not be started (%.150s)", ferr.msg);
        goto fail;
    }
    logfd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0 || fstat(logfd, &st) != 0) {
        snprintf(how, sizeof(how), "could not be started (open %s: %s)", p->log_path,
                 strerror(errno));
        goto fail;
    }
    p->run_off = p->scan_off = st.st_size;
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        snprintf(how, sizeof(how), "could not be started (open /dev/null: %s)",
                 strerror(errno));
        goto fail;
    }
    /* No signal handler of ours may run in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(sup->named_bin, argv, p->dir, logfd, nullfd, parent);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(how, sizeof(how), "could not be started (fork: %s)", strerror(fork_errno));
        goto fail;
    }
    close(logfd);
    close(nullfd);
    p->pid = pid;
    ev_child_set(&p->child_w, pid, 0);
    ev_child_start(sup->loop, &p->child_w);
    ev_timer_set(&p->timer_w, sup->opts.start_timeout, 0.0);
    ev_timer_start(sup->loop, &p->timer_w);
    ev_timer_again(sup->loop, &p->poll_w);
    bd_debug("named for %s: started pid %d in %s", p->key, (int)pid, p->dir);
    set_state(p, LOC_STATE_STARTING);
    return;
fail:
    if (logfd >= 0)
        close(logfd);
    if (nullfd >= 0)
        close(nullfd);
    enter_backoff(p, how, false);
}

/* ---- the log cap ---- */

static void cap_log(loc_sup_t *sup, proc_t *p)
{
    char *buf = NULL;
    char marker[200];
    bd_err_t err;
    struct stat st;
    int fd = open(p->log_path, O_RDWR | O_APPEND | O_CLOEXEC);

    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size <= sup->opts.log_max_bytes)
        goto cleanup;
    size_t keep = (size_t)st.st_size < LOG_KEEP_BYTES ? (size_t)st.st_size : LOG_KEEP_BYTES;
    buf = malloc(keep);
    if (buf == NULL)
        goto cleanup;
    ssize_t n = pread(fd, buf, keep, st.st_size - (off_t)keep);
    if (n < 0)
        goto cleanup;
    if (write_atomic(p->dir, "named.log.1", buf, (size_t)n, &err) != 0) {
        bd_warn("named for %s: cannot keep the end of its log: %s", p->key, err.msg);
        goto cleanup;
    }
    if (ftruncate(fd, 0) != 0) {
        bd_warn("named for %s: truncate %s: %s", p->key, p->log_path, strerror(errno));
        goto cleanup;
    }
    int m = snprintf(marker, sizeof(marker),
                     "-- bindy: named.log reached %lld bytes; its last %zd bytes are in "
                     "named.log.1 --\n",
                     (long long)st.st_size, n);
    if (m > 0)
        (void)!write(fd, marker, (size_t)m);
    p->scan_off = p->run_off = 0;
    bd_info("named for %s: %s capped at %zu bytes", p->key, p->log_path,
            sup->opts.log_max_bytes);
cleanup:
    free(buf);
    close(fd);
}

static void logcap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    loc_sup_t *sup = w->data;
    size_t pos = 0;
    const char *key;
    void *value;

    while (bd_hmap_next(sup->procs, &pos, &key, &value)) {
        proc_t *p = value;
        /* Never while a verdict is awaited: truncation could drop the line we wait for. */
        if (p->state == LOC_STATE_STARTING || p->state == LOC_STATE_RELOADING)
            continue;
        if ((size_t)file_size(p->log_path) > sup->opts.log_max_bytes)
            cap_log(sup, p);
    }
}

static void done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    loc_sup_t *sup = w->data;
    loc_sup_stopped_fn cb = sup->stopped_cb;
    sup->stopped_cb = NULL;
    if (cb != NULL)
        cb(sup, sup->stopped_arg);
}

/* ---- public API ---- */

static bool is_exec(const char *path)
{
    struct stat st;
    return access(path, X_OK) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int resolve_named(const char *name, char **out, bd_err_t *err)
{
    char tried[400] = "";
    size_t used = 0;

    *out = NULL;
    if (strchr(name, '/') != NULL) {
        if (!is_exec(name))
            return bd_err_set(err, BD_ENOTFOUND,
                              "named binary %s is not an executable file (install Debian's "
                              "bind9 package, or set BINDY_NAMED)",
                              name);
        *out = strdup(name);
        return *out != NULL ? 0 : bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    const char *path = getenv("PATH");
    char *dirs = NULL;
    if (asprintf(&dirs, "%s:/usr/sbin:/sbin", path != NULL ? path : "") < 0)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        char *cand = path_join(d, name);
        if (cand == NULL) {
            free(dirs);
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        }
        if (is_exec(cand)) {
            free(dirs);
            *out = cand;
            return 0;
        }
        free(cand);
        if (used < sizeof(tried)) {
            int w = snprintf(tried + used, sizeof(tried) - used, "%s%s", used ? ":" : "", d);
            if (w > 0)
                used += (size_t)w;
        }
    }
    free(dirs);
    return bd_err_set(err, BD_ENOTFOUND,
                      "no executable \"%s\" in %s (install Debian's bind9 package, or set "
                      "BINDY_NAMED to named's path)",
                      name, tried);
}

int loc_sup_new(struct ev_loop *loop, const loc_sup_opts_t *opts, loc_sup_t **out,
                bd_err_t *err)
{
    loc_sup_t *sup = NULL;
    loc_sup_opts_t o;
    int rc;

    if (out == NULL)
        return bd_err_set(err, BD_EINVAL, "supervisor: out is required");
    *out = NULL;
    if (loop == NULL || !ev_is_default_loop(loop))
        return bd_err_set(err, BD_EINVAL,
                          "supervisor: needs libev's default loop (EV_DEFAULT): only it can "
                          "reap child processes");
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    if (o.backoff_min < 0 || o.backoff_max < 0 || o.backoff_reset < 0 || o.stop_grace < 0 ||
        o.start_timeout < 0)
        return bd_err_set(err, BD_EINVAL, "supervisor: negative duration in options");
    if (o.backoff_min == 0)
        o.backoff_min = 0.5;
    if (o.backoff_max == 0)
        o.backoff_max = o.backoff_min > 30.0 ? o.backoff_min : 30.0;
    if (o.backoff_max < o.backoff_min)
        return bd_err_set(err, BD_EINVAL, "supervisor: backoff_max %.3f < backoff_min %.3f",
                          o.backoff_max, o.backoff_min);
    if (o.backoff_reset == 0)
        o.backoff_reset = 60.0;
    if (o.stop_grace == 0)
        o.stop_grace = 10.0;
    if (o.start_timeout == 0)
        o.start_timeout = 60.0;
    if (o.log_max_bytes == 0)
        o.log_max_bytes = 4u * 1024 * 1024;
    if (o.named_threads == 0)
        o.named_threads = 1;

    sup = calloc(1, sizeof(*sup));
    if (sup == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    sup->loop = loop;
    sup->opts = o;
    snprintf(sup->threads_arg, sizeof(sup->threads_arg), "%u", o.named_threads);
    const char *name = o.named_path;
    if (name == NULL || name[0] == '\0')
        name = getenv("BINDY_NAMED");
    if (name == NULL || name[0] == '\0')
        name = "named";
    rc = resolve_named(name, &sup->named_bin, err);
    if (rc != 0)
        goto cleanup;
    sup->opts.named_path = sup->named_bin;
    sup->procs = bd_hmap_new();
    if (sup->procs == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    ev_timer_init(&sup->logcap_w, logcap_cb, 0.0, LOG_CHECK_S);
    sup->logcap_w.data = sup;
    ev_timer_init(&sup->done_w, done_cb, 0.0, 0.0);
    sup->done_w.data = sup;
    *out = sup;
    sup = NULL;
cleanup:
    if (sup != NULL) {
        free(sup->named_bin);
        bd_hmap_free(sup->procs);
        free(sup);
    }
    return rc;
}

void loc_sup_free(loc_sup_t *sup)
{
    size_t pos = 0;
    const char *key;
    void *value;

    if (sup == NULL)
        return;
    while (bd_hmap_next(sup->procs, &pos, &key, &value)) {
        proc_t *p = value;
        if (p->pid > 0) {
            bd_warn("named for %s still runs as the supervisor is freed; sending SIGKILL",
                    p->key);
            (void)kill(p->pid, SIGKILL);
        }
        proc_free(p);
    }
    ev_timer_stop(sup->loop, &sup->logcap_w);
    ev_timer_stop(sup->loop, &sup->done_w);
    bd_hmap_free(sup->procs);
    free(sup->named_bin);
    free(sup);
}

static bool valid_file_name(const char *name)
{
    return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strcmp(name, "named.conf") != 0 && strncmp(name, "named.log", 9) != 0;
}

static int check_spec(const char *key, const loc_proc_spec_t *spec, bd_err_t *err)
{
    if (key == NULL || key[0] == '\0')
        return bd_err_set(err, BD_EINVAL, "supervisor: empty process key");
    if (spec == NULL || spec->dir == NULL || spec->dir[0] != '/' || strcmp(spec->dir, "/") == 0)
        return bd_err_set(err, BD_EINVAL, "named for %s: the working directory must be an "
                                          "absolute path other than /", key);
    if (spec->conf == NULL)
        return bd_err_set(err, BD_EINVAL, "named for %s: no named.conf text", key);
    if (spec->nfiles > 0 && spec->files == NULL)
        return bd_err_set(err, BD_EINVAL, "named for %s: nfiles without files", key);
    for (size_t i = 0; i < spec->nfiles; i++) {
        const loc_file_t *f = &spec->files[i];
        if (!valid_file_name(f->name))
            return bd_err_set(err, BD_EINVAL, "named for %s: bad extra file name \"%s\"", key,
                              f->name != NULL ? f->name : "(null)");
        if (f->text == NULL)
            return bd_err_set(err, BD_EINVAL, "named for %s: no text for %s", key, f->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(spec->files[j].name, f->name) == 0)
                return bd_err_set(err, BD_EINVAL, "named for %s: file %s given twice", key,
                                  f->name);
    }
    return 0;
}

static pfile_t *find_file(proc_t *p, const char *name)
{
    for (size_t i = 0; i < p->nfiles; i++)
        if (strcmp(p->files[i].name, name) == 0)
            return &p->files[i];
    return NULL;
}

/* Write every file into dir (a new process or a new directory); records replaced only on
 * success. */
static int write_all(proc_t *p, const char *dir, const loc_proc_spec_t *spec, bd_err_t *err)
{
    char *conf = NULL;
    pfile_t *files = NULL;
    size_t n = 0;
    int rc;

    rc = bd_mkdirs(dir, 0750, err);
    if (rc != 0)
        goto cleanup;
    conf = strdup(spec->conf);
    files = calloc(spec->nfiles + 1, sizeof(*files));
    if (conf == NULL || files == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = write_atomic(dir, "named.conf", spec->conf, strlen(spec->conf), err);
    for (; rc == 0 && n < spec->nfiles; n++) {
        const loc_file_t *f = &spec->files[n];
        files[n].name = strdup(f->name);
        files[n].text = strdup(f->text);
        if (files[n].name == NULL || files[n].text == NULL) {
            n++;
            rc = bd_err_set(err, BD_ENOMEM, "out of memory");
            break;
        }
        rc = write_atomic(dir, f->name, f->text, strlen(f->text), err);
    }
    if (rc != 0)
        goto cleanup;
    free(p->conf);
    files_free(p->files, p->nfiles);
    p->conf = conf;
    p->files = files;
    p->nfiles = n;
    conf = NULL;
    files = NULL;
    n = 0;
cleanup:
    free(conf);
    files_free(files, n);
    return rc;
}

/* Rewrite what differs from the records, delete dropped files; *changed says if any. */
static int write_changes(proc_t *p, const loc_proc_spec_t *spec, bool *changed, bd_err_t *err)
{
    int rc;

    *changed = false;
    rc = bd_mkdirs(p->dir, 0750, err);
    if (rc != 0)
        return rc;
    if (strcmp(p->conf, spec->conf) != 0) {
        char *conf = strdup(spec->conf);
        if (conf == NULL)
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        rc = write_atomic(p->dir, "named.conf", conf, strlen(conf), err);
        if (rc != 0) {
            free(conf);
            return rc;
        }
        free(p->conf);
        p->conf = conf;
        *changed = true;
    }
    for (size_t i = 0; i < spec->nfiles; i++) {
        const loc_file_t *f = &spec->files[i];
        pfile_t *r = find_file(p, f->name);
        if (r != NULL && strcmp(r->text, f->text) == 0)
            continue;
        char *text = strdup(f->text);
        char *name = r == NULL ? strdup(f->name) : NULL;
        pfile_t *grown = NULL;
        if (text == NULL || (r == NULL && name == NULL)) {
            free(text);
            free(name);
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        }
        if (r == NULL) {
            grown = realloc(p->files, (p->nfiles + 1) * sizeof(*p->files));
            if (grown == NULL) {
                free(text);
                free(name);
                return bd_err_set(err, BD_ENOMEM, "out of memory");
            }
            p->files = grown;
        }
        rc = write_atomic(p->dir, f->name, text, strlen(text), err);
        if (rc != 0) {
            free(text);
            free(name);
            return rc;
        }
        if (r == NULL) {
            p->files[p->nfiles].name = name;
            p->files[p->nfiles].text = text;
            p->nfiles++;
        } else {
            free(r->text);
            r->text = text;
        }
        *changed = true;
    }
    for (size_t i = 0; i < p->nfiles;) {
        bool keep = false;
        for (size_t j = 0; j < spec->nfiles && !keep; j++)
            keep = strcmp(spec->files[j].name, p->files[i].name) == 0;
        if (keep) {
            i++;
            continue;
        }
        char *path = path_join(p->dir, p->files[i].name);
        if (path == NULL)
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = bd_err_set(err, BD_EIO, "unlink %s: %s", path, strerror(errno));
            free(path);
            return rc;
        }
        free(path);
        free(p->files[i].name);
        free(p->files[i].text);
        p->files[i] = p->files[p->nfiles - 1];
        p->nfiles--;
        *changed = true;
    }
    return 0;
}

static int set_paths(const char *dir, char **d, char **conf, char **log, bd_err_t *err)
{
    *d = strdup(dir);
    *conf = path_join(dir, "named.conf");
    *log = path_join(dir, "named.log");
    if (*d == NULL || *conf == NULL || *log == NULL) {
        free(*d);
        free(*conf);
        free(*log);
        *d = *conf = *log = NULL;
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    return 0;
}

static int ensure_new(loc_sup_t *sup, const char *key, const loc_proc_spec_t *spec,
                      bd_err_t *err)
{
    proc_t *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    p->key = strdup(key);
    if (p->key == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = set_paths(spec->dir, &p->dir, &p->conf_path, &p->log_path, err);
    if (rc != 0)
        goto cleanup;
    rc = write_all(p, spec->dir, spec, err);
    if (rc != 0)
        goto cleanup;
    rc = bd_hmap_put(sup->procs, key, p, NULL);
    if (rc != 0) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    p->sup = sup;
    p->dns_port = spec->dns_port;
    p->ctl_port = spec->ctl_port;
    ev_child_init(&p->child_w, child_cb, 0, 0);
    p->child_w.data = p;
    ev_timer_init(&p->timer_w, timer_cb, 0.0, 0.0);
    p->timer_w.data = p;
    ev_timer_init(&p->poll_w, poll_cb, POLL_S, POLL_S);
    p->poll_w.data = p;
    update_timers(sup);
    proc_spawn(p);
    return 0;
cleanup:
    proc_free(p);
    return rc;
}

int loc_sup_ensure(loc_sup_t *sup, const char *key, const loc_proc_spec_t *spec, bd_err_t *err)
{
    proc_t *p;
    bool changed = false;
    int rc;

    rc = check_spec(key, spec, err);
    if (rc != 0)
        return rc;
    if (sup->shutting_down)
        return bd_err_set(err, BD_ECANCELED, "named for %s: the supervisor is stopping", key);
    p = bd_hmap_get(sup->procs, key);
    if (p == NULL)
        return ensure_new(sup, key, spec, err);

    if (strcmp(p->dir, spec->dir) != 0) {
        char *d = NULL, *c = NULL, *l = NULL;
        rc = set_paths(spec->dir, &d, &c, &l, err);
        if (rc != 0)
            return rc;
        rc = write_all(p, spec->dir, spec, err);
        if (rc != 0) {
            free(d);
            free(c);
            free(l);
            return rc;
        }
        free(p->dir);
        free(p->conf_path);
        free(p->log_path);
        p->dir = d;
        p->conf_path = c;
        p->log_path = l;
        p->dns_port = spec->dns_port;
        p->ctl_port = spec->ctl_port;
        p->removing = false;
        p->rm_dir = false;
        bd_info("named for %s moves to %s; restarting it", key, spec->dir);
        p->respawn = true;
        stop_proc(p);
        return 0;
    }

    rc = write_changes(p, spec, &changed, err);
    if (rc != 0)
        return rc;
    p->dns_port = spec->dns_port;
    p->ctl_port = spec->ctl_port;
    if (p->state == LOC_STATE_STOPPING) {
        if (p->removing) {
            bd_info("named for %s: removal cancelled; it starts again once stopped", key);
            p->removing = false;
            p->rm_dir = false;
            p->respawn = true;
        }
        return 0;
    }
    if (!changed)
        return 0;
    switch (p->state) {
    case LOC_STATE_STARTING:
    case LOC_STATE_RELOADING:
        p->reload_wanted = true;
        break;
    case LOC_STATE_RUNNING:
        send_reload(p);
        break;
    case LOC_STATE_BACKOFF:
        bd_info("named for %s: configuration changed; starting it now", key);
        ev_timer_stop(sup->loop, &p->timer_w);
        proc_spawn(p);
        break;
    case LOC_STATE_STOPPING:
    case LOC_STATE_STOPPED:
        break;
    }
    return 0;
}

int loc_sup_remove(loc_sup_t *sup, const char *key, unsigned flags)
{
    proc_t *p = key != NULL ? bd_hmap_get(sup->procs, key) : NULL;
    if (p == NULL)
        return BD_ENOTFOUND;
    p->removing = true;
    p->respawn = false;
    if (flags & LOC_RM_DIR)
        p->rm_dir = true;
    stop_proc(p);
    return 0;
}

int loc_sup_stop_all(loc_sup_t *sup, loc_sup_stopped_fn cb, void *arg)
{
    size_t pos = 0;
    const char *key;
    void *value;

    if (sup->shutting_down)
        return BD_EBUSY;
    sup->shutting_down = true;
    sup->stopped_cb = cb;
    sup->stopped_arg = arg;
    while (bd_hmap_next(sup->procs, &pos, &key, &value)) {
        proc_t *p = value;
        p->removing = true;
        p->respawn = false;
    }
    /* stop_proc frees a process without a child (BACKOFF) at once, which changes the map:
     * start the walk again after each call. Every call leaves one process fewer that is not
     * STOPPING, so this ends; the number of processes is small. */
    for (bool again = true; again;) {
        again = false;
        pos = 0;
        while (bd_hmap_next(sup->procs, &pos, &key, &value)) {
            proc_t *p = value;
            if (p->state != LOC_STATE_STOPPING) {
                stop_proc(p);
                again = true;
                break;
            }
        }
    }
    update_timers(sup);
    return 0;
}

int loc_sup_get(const loc_sup_t *sup, const char *key, loc_proc_info_t *out)
{
    const proc_t *p = key != NULL ? bd_hmap_get(sup->procs, key) : NULL;
    if (p == NULL)
        return BD_ENOTFOUND;
    info_fill(p, out);
    return 0;
}

int loc_sup_each(const loc_sup_t *sup, void (*fn)(const loc_proc_info_t *info, void *arg),
                 void *arg)
{
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(sup->procs, &n);
    loc_proc_info_t info;

    if (keys == NULL)
        return n == 0 ? 0 : BD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        info_fill(bd_hmap_get(sup->procs, keys[i]), &info);
        fn(&info, arg);
    }
    free(keys);
    return 0;
}

size_t loc_sup_count(const loc_sup_t *sup)
{
    return bd_hmap_count(sup->procs);
}

int loc_sup_alloc_port(uint16_t *port)
{
    static uint16_t recent[64];
    static size_t next;

    for (int attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
        socklen_t len = sizeof(sin);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return BD_EIO;
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
            close(fd);
            return BD_EIO;
        }
        close(fd);
        uint16_t got = ntohs(sin.sin_port);
        bool seen = false;
        for (size_t i = 0; i < sizeof(recent) / sizeof(recent[0]) && !seen; i++)
            seen = recent[i] == got;
        if (seen)
            continue;
        /* DNS needs the UDP port too. */
        int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (ufd < 0)
            return BD_EIO;
        bool ok = bind(ufd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        close(ufd);
        if (!ok)
            continue;
        recent[next] = got;
        next = (next + 1) % (sizeof(recent) / sizeof(recent[0]));
        *port = got;
        return 0;
    }
    return BD_EIO;
}
