/*
 * checkpoint.c - start-up from the projector's snapshot instead of a replay from seq 1,
 * and the snapshots themselves.
 *
 * Writing: what the snapshot needs is captured on the loop thread (it reads the
 * projector, which only that thread may touch: a copy of each object's bookkeeping, no
 * JSON, no journal reads); a short-lived thread fetches the objects from the journal,
 * renders the text and writes it, so the loop never waits for the journal's reads, its
 * write transaction or its fsync. One write is in flight at a time; a catch-up that
 * finds one still running leaves the next snapshot to a later one.
 *
 * Deferral: a snapshot falls due at the end of a burst (an import of 10,000 objects),
 * exactly when the zone store's new versions are being transferred to named; rendering
 * and writing it then takes CPU from named and from the transfers. So the thread waits
 * until the applier has applied nothing for APP_CKPT_IDLE_S, or APP_CKPT_DEFER_MAX_S at
 * most (a steady trickle of events must not put it off for ever), before it renders.
 * The capture still happens when it falls due, so the snapshot holds the state at that
 * seq; a shutdown (app__ckpt_write with wait, app__ckpt_free) cuts the wait short.
 *
 * Loading: the newest snapshot is verified by the journal (bound to this journal's event
 * hash), restored, and the zone store is loaded from the restored projector; the replay
 * then starts after its seq. A snapshot that is refused, unreadable or older than the
 * journal's pruning checkpoint is ignored with a warning. Without a usable snapshot a
 * pruned journal is rebuilt from its own checkpoint (the resources it holds, fed as
 * ADDED events in seq order): the history before it is gone, so zone serials restart
 * from what the resources say (spec.soaRecord.serial, status.serial).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app_ckpt.h"
#include "clock.h"
#include "log.h"
#include "sort.h"

#define ENV_EVERY "BINDY_PROJECTOR_CHECKPOINT_EVENTS"

struct app_ckpt {
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    app_hooks_t hooks;
    void *arg;
    uint64_t every;    /* 0: never (but at shutdown) */
    bool loaded;
    uint64_t base_seq; /* the last snapshot written or loaded */
    /* the write in flight: owned by the thread while busy */
    pthread_t th;
    bool th_started;
    atomic_bool busy;
    /* deferral: the loop updates last_active (CLOCK_MONOTONIC ns) and sets hurry; the
     * thread waits on cv under mu */
    uint64_t seen_seq;
    atomic_uint_fast64_t last_active_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hurry;
    proj_snap_t *snap;
    double t0; /* when the capture began */
    int wrc;
    bd_err_t werr;
};

static int every_from_env(uint64_t *out, bd_err_t *err)
{
    const char *v = getenv(ENV_EVERY);
    *out = APP_CKPT_EVERY_DEFAULT;
    if (v == NULL)
        return BD_OK;
    if (*v == '\0')
        return bd_err_set(err, BD_EINVAL, "%s is set but empty: expected a number of events (0 = never)", ENV_EVERY);
    uint64_t n = 0;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9')
            return bd_err_set(err, BD_EINVAL, "%s=\"%s\": not a whole number of events (0 = never)", ENV_EVERY, v);
        if (n <= APP_CKPT_EVERY_MAX)
            n = n * 10 + (uint64_t)(*c - '0');
    }
    if (n > APP_CKPT_EVERY_MAX)
        return bd_err_set(err, BD_EINVAL, "%s=\"%s\": at most %u events", ENV_EVERY, v, APP_CKPT_EVERY_MAX);
    *out = n;
    return BD_OK;
}

int app__ckpt_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg, app_ckpt_t **out,
                  bd_err_t *err)
{
    uint64_t every = 0;
    *out = NULL;
    int rc = every_from_env(&every, err);
    if (rc != BD_OK)
        return rc;
    app_ckpt_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    c->j = j;
    c->p = p;
    c->db = db;
    c->hooks = hooks ? *hooks : (app_hooks_t){0};
    c->arg = arg;
    c->every = every;
    atomic_init(&c->busy, false);
    atomic_init(&c->last_active_ns, bd_mono_ns());
    pthread_condattr_t ca;
    bool ok = pthread_condattr_init(&ca) == 0;
    if (ok) {
        /* the deferral is measured on the monotonic clock, like last_active_ns */
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&c->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!ok) {
        free(c);
        return bd_err_set(err, BD_ENOMEM, "applier: cannot create a condition variable");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        pthread_cond_destroy(&c->cv);
        free(c);
        return bd_err_set(err, BD_ENOMEM, "applier: cannot create a mutex");
    }
    *out = c;
    return BD_OK;
}

/* Wait for the thread; hurry: cut its deferral short (a shutdown). */
static void join_writer(app_ckpt_t *c, bool hurry)
{
    if (!c->th_started)
        return;
    if (hurry) {
        pthread_mutex_lock(&c->mu);
        c->hurry = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_join(c->th, NULL);
    c->th_started = false;
}

void app__ckpt_free(app_ckpt_t *c)
{
    if (c == NULL)
        return;
    join_writer(c, true);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- writing ----------------------------------------------------------------------- */

/* The object of the event at seq; after pruning, from the journal's checkpoint, which
 * keeps every live resource with the seq of the event that produced it. */
typedef struct {
    jnl_t *j;
    bool tried;
    jnl_state_t *st;
    const jnl_event_t **by_seq;
    size_t n;
} fetch_t;

static int cmp_ev_seq(const void *a, const void *b)
{
    const jnl_event_t *x = *(const jnl_event_t *const *)a, *y = *(const jnl_event_t *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int fetch_load_ckpt(fetch_t *f, bd_err_t *err)
{
    uint64_t ck = 0;
    int rc = jnl_checkpoint_latest(f->j, &ck, NULL, NULL, err);
    if (rc != BD_OK || ck == 0 || (rc = jnl_state_at(f->j, ck, &f->st, err)) != BD_OK)
        return rc;
    f->n = jnl_state_count(f->st);
    if ((f->by_seq = calloc(f->n ? f->n : 1, sizeof(*f->by_seq))) == NULL)
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    for (size_t i = 0; i < f->n; i++)
        f->by_seq[i] = jnl_state_get(f->st, i);
    bd_qsort(f->by_seq, f->n, sizeof(*f->by_seq), cmp_ev_seq);
    return BD_OK;
}

static json_t *fetch(void *arg, uint64_t seq, bd_err_t *err)
{
    fetch_t *f = arg;
    jnl_record_t *rec = NULL;
    int rc = jnl_get(f->j, seq, 0, &rec, err);
    if (rc == BD_OK) {
        json_t *o = json_incref(rec->ev.object);
        jnl_record_free(rec);
        if (o == NULL)
            bd_err_set(err, BD_ECORRUPT, "journal %s: the event at seq %llu has no object", jnl_path(f->j),
                       (unsigned long long)seq);
        return o;
    }
    if (rc != BD_ENOTFOUND)
        return NULL;
    if (!f->tried) {
        f->tried = true;
        if (fetch_load_ckpt(f, err) != BD_OK)
            return NULL;
    }
    jnl_event_t key = {.seq = seq};
    const jnl_event_t *kp = &key, **hit = f->by_seq ? bd_bsearch(&kp, f->by_seq, f->n, sizeof(*f->by_seq), cmp_ev_seq)
                                                     : NULL;
    if (hit != NULL && (*hit)->object != NULL)
        return json_incref((*hit)->object);
    bd_err_set(err, BD_ENOTFOUND,
               "journal %s: the event at seq %llu was pruned and its object is not in the journal's checkpoint "
               "(a newer version of it is invalid)",
               jnl_path(f->j), (unsigned long long)seq);
    return NULL;
}

/* Wait until the applier has been idle APP_CKPT_IDLE_S, APP_CKPT_DEFER_MAX_S have passed
 * since the capture, or a shutdown hurries us. */
static void wait_idle(app_ckpt_t *c)
{
    const uint64_t idle = (uint64_t)(APP_CKPT_IDLE_S * 1e9), max = (uint64_t)(APP_CKPT_DEFER_MAX_S * 1e9);
    uint64_t limit = bd_mono_ns() + max;
    pthread_mutex_lock(&c->mu);
    while (!c->hurry) {
        uint64_t now = bd_mono_ns(), until = atomic_load(&c->last_active_ns) + idle;
        if (until > limit)
            until = limit;
        if (now >= until)
            break;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u), .tv_nsec = (long)(until % 1000000000u)};
        pthread_cond_timedwait(&c->cv, &c->mu, &ts); /* woken early: re-check */
    }
    pthread_mutex_unlock(&c->mu);
}

static void *writer_main(void *arg)
{
    app_ckpt_t *c = arg;
    fetch_t f = {.j = c->j};
    char *buf = NULL;
    size_t len = 0;
    uint64_t seq = proj_snap_seq(c->snap);
    double t0 = bd_mono_s();
    wait_idle(c);
    double waited = bd_mono_s() - t0;
    c->wrc = proj_snapshot_render(c->snap, fetch, &f, &buf, &len, &c->werr);
    jnl_state_free(f.st);
    free(f.by_seq);
    if (c->wrc == BD_OK)
        c->wrc = jnl_snapshot_put(c->j, JNL_SNAPSHOT_PROJECTOR, seq, buf, len, &c->werr);
    if (c->wrc == BD_OK)
        bd_info("projector checkpoint at seq %llu written (%zu bytes, %.0f ms after %.1f s waiting for the applier to "
                "be idle)",
                (unsigned long long)seq, len, (bd_mono_s() - c->t0 - waited) * 1e3, waited);
    else
        bd_warn("projector checkpoint at seq %llu not written: %s", (unsigned long long)seq, c->werr.msg);
    free(buf);
    proj_snap_free(c->snap);
    c->snap = NULL;
    atomic_store(&c->busy, false);
    return NULL;
}

int app__ckpt_write(app_ckpt_t *c, bool wait, bd_err_t *err)
{
    bd_err_t e;
    bd_err_clear(&e);
    if (c->th_started && (wait || !atomic_load(&c->busy)))
        join_writer(c, wait); /* wait: shutting down; else: the thread has finished already */
    if (c->th_started)
        return bd_err_set(err, BD_EBUSY, "projector checkpoint: a write is in flight");
    uint64_t seq = proj_seq(c->p);
    if (seq == 0 || seq == c->base_seq)
        return BD_OK; /* nothing new since the last one */
    double t0 = bd_mono_s();
    proj_snap_t *snap = NULL;
    int rc = proj_snapshot_capture(c->p, &snap, &e);
    /* the next attempt after N more events, not at every catch-up, even if this one fails */
    c->base_seq = seq;
    if (rc != BD_OK) {
        bd_warn("projector checkpoint at seq %llu not written: %s", (unsigned long long)seq, e.msg);
        if (err)
            *err = e;
        return rc;
    }
    bd_debug("projector checkpoint at seq %llu captured in %.0f ms", (unsigned long long)seq, (bd_mono_s() - t0) * 1e3);
    c->snap = snap;
    c->t0 = t0;
    c->hurry = wait; /* no thread runs: no lock needed */
    atomic_store(&c->busy, true);
    if (pthread_create(&c->th, NULL, writer_main, c) != 0) {
        atomic_store(&c->busy, false);
        proj_snap_free(c->snap);
        c->snap = NULL;
        bd_warn("projector checkpoint at seq %llu not written: cannot start a thread", (unsigned long long)seq);
        return bd_err_set(err, BD_EIO, "projector checkpoint: cannot start a thread");
    }
    c->th_started = true;
    if (!wait)
        return BD_OK;
    join_writer(c, true);
    if (c->wrc != BD_OK && err)
        *err = c->werr;
    return c->wrc;
}

void app__ckpt_applied(app_ckpt_t *c)
{
    uint64_t seq = proj_seq(c->p);
    if (seq != c->seen_seq) { /* events applied: a deferred write waits longer */
        c->seen_seq = seq;
        atomic_store(&c->last_active_ns, bd_mono_ns());
    }
    if (c->every > 0 && proj_seq(c->p) - c->base_seq >= c->every)
        app__ckpt_write(c, false, NULL); /* logged; a write in flight defers it */
}

/* ---- loading ----------------------------------------------------------------------- */

/* The restored projector's changes (every zone created, every status) to the zone store
 * and the hooks. Takes st (may be NULL). */
static int hand_over(app_ckpt_t *c, jnl_state_t *st, bd_err_t *err)
{
    proj_changes_t ch = {0};
    int rc = proj_take_changes(c->p, &ch);
    if (rc != BD_OK)
        rc = bd_err_set(err, rc, "projector: out of memory");
    for (size_t i = 0; rc == BD_OK && i < ch.nzones; i++)
        rc = app_apply_zone(c->db, c->p, &ch.zones[i], err);
    if (rc == BD_OK && c->hooks.restored)
        c->hooks.restored(c->arg, st, &ch);
    proj_changes_deinit(&ch);
    jnl_state_free(st);
    return rc;
}

/* BD_OK: restored; BD_ENOTFOUND: no usable snapshot (logged when one was refused);
 * other: the zone store failed after the projector was restored. */
static int from_snapshot(app_ckpt_t *c, uint64_t ck, uint64_t last, bd_err_t *err)
{
    void *buf = NULL;
    size_t len = 0;
    uint64_t s = 0;
    jnl_state_t *st = NULL;
    bd_err_t e;
    double t0 = bd_mono_s();
    int rc = jnl_snapshot_get(c->j, JNL_SNAPSHOT_PROJECTOR, &s, &buf, &len, &e);
    if (rc == BD_ENOTFOUND)
        return rc;
    if (rc != BD_OK) {
        bd_warn("projector checkpoint ignored: %s", e.msg);
        return BD_ENOTFOUND;
    }
    if (s < ck) {
        bd_warn("projector checkpoint at seq %llu ignored: the journal was pruned up to seq %llu since",
                (unsigned long long)s, (unsigned long long)ck);
        free(buf);
        return BD_ENOTFOUND;
    }
    /* hooks that track every object (statuses, finalizers) learn the objects at s */
    if (c->hooks.restored && c->hooks.restored_state && jnl_state_at(c->j, s, &st, &e) != BD_OK) {
        bd_warn("projector checkpoint at seq %llu ignored: %s", (unsigned long long)s, e.msg);
        free(buf);
        return BD_ENOTFOUND;
    }
    rc = proj_restore(c->p, buf, len, &e);
    free(buf);
    if (rc != BD_OK) {
        bd_warn("projector checkpoint at seq %llu ignored: %s", (unsigned long long)s, e.msg);
        jnl_state_free(st);
        return BD_ENOTFOUND;
    }
    c->base_seq = s;
    double t1 = bd_mono_s();
    if ((rc = hand_over(c, st, err)) != BD_OK)
        return rc;
    bd_info("projector restored from checkpoint at seq %llu; replaying %llu events", (unsigned long long)s,
            (unsigned long long)(last - s));
    bd_debug("projector checkpoint: read and restored in %.0f ms, zone store loaded in %.0f ms", (t1 - t0) * 1e3,
             (bd_mono_s() - t1) * 1e3);
    return BD_OK;
}

static int from_journal_checkpoint(app_ckpt_t *c, uint64_t ck, bd_err_t *err)
{
    jnl_state_t *st = NULL;
    const jnl_event_t **v = NULL;
    bd_warn("journal %s: the events up to seq %llu were pruned and no projector checkpoint fits: rebuilding from "
            "the journal's checkpoint at seq %llu; zone serials restart from the resources' spec and status serials",
            jnl_path(c->j), (unsigned long long)ck, (unsigned long long)ck);
    int rc = jnl_state_at(c->j, ck, &st, err);
    if (rc != BD_OK)
        return rc;
    size_t n = jnl_state_count(st);
    if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "applier: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = jnl_state_get(st, i);
    /* seq order: the objects' age order (first seq) follows their last events */
    bd_qsort(v, n, sizeof(*v), cmp_ev_seq);
    for (size_t i = 0; i < n && rc == BD_OK; i++) {
        jnl_event_t ev = *v[i];
        ev.type = JNL_ADDED;
        rc = proj_apply(c->p, &ev, err);
    }
    if (rc == BD_OK && proj_seq(c->p) != ck) {
        /* the replay resumes after the checkpoint: a marker carries the projector there */
        jnl_event_t mark = {.seq = ck, .source = JNL_SRC_RESTORE, .type = JNL_RELIST_END};
        rc = proj_apply(c->p, &mark, err);
    }
    if (rc == BD_OK) {
        rc = hand_over(c, st, err);
        st = NULL;
    }
out:
    free(v);
    jnl_state_free(st);
    return rc;
}

int app__ckpt_load(app_ckpt_t *c, bd_err_t *err)
{
    uint64_t first = 0, last = 0, ck = 0;
    if (c->loaded)
        return BD_OK;
    c->loaded = true;
    if (proj_seq(c->p) != 0)
        return BD_OK;
    int rc = jnl_bounds(c->j, &first, &last, err);
    if (rc == BD_OK)
        rc = jnl_checkpoint_latest(c->j, &ck, NULL, NULL, err);
    if (rc != BD_OK || last == 0)
        return rc;
    rc = from_snapshot(c, ck, last, err);
    if (rc != BD_ENOTFOUND)
        return rc;
    if (ck > 0 && first != 1)
        return from_journal_checkpoint(c, ck, err);
    return BD_OK;
}
