/*
 * journal.c - opening and closing journals, LMDB plumbing (transactions, map growth,
 * error translation), metadata and statistics.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "jnl_int.h"
#include "log.h"

#define MIB (1024u * 1024u)
static const char MAGIC[] = "bindy-journal";

/* ---- options -------------------------------------------------------------------------- */

void jnl_opts_init(jnl_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->sync = JNL_SYNC_DURABLE;
    opts->map_size = 16 * MIB;
    opts->map_limit = 1024 * MIB;
    opts->batch_max = 1024;
    opts->batch_ms = 2;
    opts->queue_max_bytes = 64 * MIB;
}

static const char *const sync_names[] = {"durable", "nometasync", "nosync"};

const char *jnl_sync_name(jnl_sync_t s)
{
    return (unsigned)s < 3 ? sync_names[s] : "?";
}

int jnl_sync_parse(const char *s, jnl_sync_t *out)
{
    for (unsigned i = 0; s != NULL && i < 3; i++) {
        if (strcmp(s, sync_names[i]) == 0) {
            *out = (jnl_sync_t)i;
            return BD_OK;
        }
    }
    return BD_EINVAL;
}

/* ---- errors --------------------------------------------------------------------------- */

int jnl__mdb_err(const jnl_t *j, int rc, bd_err_t *err, const char *what)
{
    int code;
    switch (rc) {
    case MDB_MAP_FULL:
        code = BD_EFULL;
        break;
    case MDB_NOTFOUND:
    case ENOENT:
        code = BD_ENOTFOUND;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_BAD_TXN:
        code = BD_ECORRUPT;
        break;
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        code = BD_EFOREIGN;
        break;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
    case EBUSY:
    case EAGAIN:
        code = BD_EBUSY;
        break;
    case ENOMEM:
        code = BD_ENOMEM;
        break;
    default:
        code = BD_EIO;
        break;
    }
    return bd_err_set(err, code, "journal %s: %s: %s", j->path, what, mdb_strerror(rc));
}

/* ---- transactions and the map ------------------------------------------------------------ */

int jnl__rtxn_begin(jnl_t *j, MDB_txn **txn, bd_err_t *err)
{
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&j->maplock);
        int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, txn);
        if (rc == 0)
            return BD_OK;
        pthread_rwlock_unlock(&j->maplock);
        if (rc == MDB_MAP_RESIZED && tries < 5) {
            /* Another process grew the map beyond ours: adopt its size. */
            pthread_rwlock_wrlock(&j->maplock);
            mdb_env_set_mapsize(j->env, 0);
            pthread_rwlock_unlock(&j->maplock);
            continue;
        }
        *txn = NULL;
        return jnl__mdb_err(j, rc, err, "read transaction");
    }
}

void jnl__rtxn_end(jnl_t *j, MDB_txn *txn)
{
    if (txn == NULL)
        return;
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&j->maplock);
}

int jnl__wtxn_begin(jnl_t *j, MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&j->maplock);
        int rc = mdb_txn_begin(j->env, NULL, 0, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&j->maplock);
        if (rc == MDB_MAP_RESIZED && tries < 5) {
            pthread_rwlock_wrlock(&j->maplock);
            mdb_env_set_mapsize(j->env, 0);
            pthread_rwlock_unlock(&j->maplock);
            continue;
        }
        *txn = NULL;
        return rc;
    }
}

int jnl__wtxn_end(jnl_t *j, MDB_txn *txn, int rc)
{
    if (rc != 0)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&j->maplock);
    return rc;
}

int jnl__grow(jnl_t *j, uint64_t ceiling)
{
    int ret = BD_EFULL;
    MDB_envinfo info;
    pthread_rwlock_wrlock(&j->maplock);
    mdb_env_info(j->env, &info);
    uint64_t cur = info.me_mapsize;
    if (cur < ceiling) {
        uint64_t next = cur * 2;
        if (next > ceiling || next < cur)
            next = ceiling;
        if (mdb_env_set_mapsize(j->env, (size_t)next) == 0) {
            ret = BD_OK;
            bd_debug("journal %s: map grown from %llu to %llu KiB", j->path,
                     (unsigned long long)(cur / 1024), (unsigned long long)(next / 1024));
        }
    }
    pthread_rwlock_unlock(&j->maplock);
    return ret;
}

void jnl__shrink(jnl_t *j)
{
    MDB_envinfo info;
    pthread_rwlock_wrlock(&j->maplock);
    mdb_env_info(j->env, &info);
    /* LMDB keeps the map at least as large as the data already written. */
    if (info.me_mapsize > j->append_ceiling)
        mdb_env_set_mapsize(j->env, (size_t)j->append_ceiling);
    pthread_rwlock_unlock(&j->maplock);
}

void jnl__check_space(jnl_t *j)
{
    MDB_envinfo info;
    mdb_env_info(j->env, &info);
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * j->page_size;
    if (used * 10 < j->opts.map_limit * 9)
        return;
    pthread_mutex_lock(&j->qlock);
    bool warn = !j->warned_near_limit;
    j->warned_near_limit = true;
    pthread_mutex_unlock(&j->qlock);
    if (warn) {
        bd_warn("journal %s: %llu of %llu MiB used (%llu%%); prune old events (retention) or "
                "raise the limit before appends fail",
                j->path, (unsigned long long)(used / MIB),
                (unsigned long long)(j->opts.map_limit / MIB),
                (unsigned long long)(used * 100 / j->opts.map_limit));
    }
}

/* ---- meta ------------------------------------------------------------------------------- */

void jnl__head_value(uint8_t out[48], uint64_t seq, const uint8_t hash[JNL_HASH_LEN],
                     uint64_t time)
{
    jnl__be64(out, seq);
    memcpy(out + 8, hash, JNL_HASH_LEN);
    jnl__be64(out + 8 + JNL_HASH_LEN, time);
}

static int meta_get(jnl_t *j, MDB_txn *txn, const char *key, MDB_val *val)
{
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, j->db_meta, &k, val);
}

int jnl__meta_head(jnl_t *j, MDB_txn *txn, uint64_t *seq, uint8_t hash[JNL_HASH_LEN],
                   uint64_t *time)
{
    MDB_val v;
    int rc = meta_get(j, txn, "head", &v);
    if (rc == MDB_NOTFOUND) {
        *seq = 0;
        *time = 0;
        memset(hash, 0, JNL_HASH_LEN);
        return 0;
    }
    if (rc != 0)
        return rc;
    if (v.mv_size != 48)
        return MDB_CORRUPTED;
    const uint8_t *p = v.mv_data;
    *seq = jnl__get_be64(p);
    memcpy(hash, p + 8, JNL_HASH_LEN);
    *time = jnl__get_be64(p + 8 + JNL_HASH_LEN);
    return 0;
}

static int put_meta(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val, size_t len)
{
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* ---- opening ---------------------------------------------------------------------------- */

/* Is path an LMDB data file? Looks for the meta page magic without letting LMDB touch
 * (or create a lock file next to) something that is not ours. */
static int looks_like_lmdb(const char *path)
{
    uint8_t buf[24];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    /* LMDB creates data.mdb empty and writes both meta pages in one pwrite: an empty file
     * is a creation that was interrupted (a kill), not a foreign file. */
    if (n == 0)
        return -ENOENT;
    if (n < (ssize_t)sizeof(buf))
        return 0;
    /* Page header (16 bytes: pgno, pad, flags, lower, upper), then mm_magic. */
    uint32_t le = (uint32_t)buf[16] | (uint32_t)buf[17] << 8 | (uint32_t)buf[18] << 16 |
                  (uint32_t)buf[19] << 24;
    uint32_t be = (uint32_t)buf[19] | (uint32_t)buf[18] << 8 | (uint32_t)buf[17] << 16 |
                  (uint32_t)buf[16] << 24;
    return le == 0xBEEFC0DEu || be == 0xBEEFC0DEu;
}

static int open_dbs(jnl_t *j, MDB_txn *txn, unsigned create, bd_err_t *err)
{
    static const char *const names[] = {"events", "time", "object", "checkpoints"};
    MDB_dbi *dbis[] = {&j->db_events, &j->db_time, &j->db_object, &j->db_ckpt};
    for (int i = 0; i < 4; i++) {
        int rc = mdb_dbi_open(txn, names[i], create, dbis[i]);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
            return bd_err_set(err, BD_EFOREIGN,
                              "journal %s: not a bindy journal (database \"%s\" missing)",
                              j->path, names[i]);
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "open database");
    }
    return BD_OK;
}

/* Check magic and version of an existing journal; load the head. */
static int check_meta(jnl_t *j, MDB_txn *txn, bd_err_t *err)
{
    MDB_val v;
    int rc = meta_get(j, txn, "magic", &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size != strlen(MAGIC) ||
                                           memcmp(v.mv_data, MAGIC, v.mv_size) != 0)))
        return bd_err_set(err, BD_EFOREIGN, "journal %s: not a bindy journal (no journal magic)",
                          j->path);
    if (rc != 0)
        return jnl__mdb_err(j, rc, err, "read meta");
    rc = meta_get(j, txn, "version", &v);
    if (rc != 0 || v.mv_size != 4)
        return bd_err_set(err, BD_EFOREIGN, "journal %s: not a bindy journal (no format version)",
                          j->path);
    const uint8_t *p = v.mv_data;
    uint32_t version = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (version != JNL_FORMAT_VERSION)
        return bd_err_set(err, BD_EVERSION,
                          "journal %s: format version %u, this build reads version %d", j->path,
                          version, JNL_FORMAT_VERSION);
    rc = jnl__meta_head(j, txn, &j->committed_seq, j->committed_hash, &j->committed_time);
    if (rc != 0)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: head record in meta is damaged", j->path);
    rc = meta_get(j, txn, "object_epoch_shift", &v);
    if (rc == MDB_NOTFOUND) {
        j->epoch_shift = JNL__EPOCH_SHIFT_OLD;
    } else if (rc != 0) {
        return jnl__mdb_err(j, rc, err, "read meta");
    } else {
        if (v.mv_size != 1 || *(const uint8_t *)v.mv_data > 40)
            return bd_err_set(err, BD_ECORRUPT, "journal %s: object_epoch_shift in meta is damaged",
                              j->path);
        j->epoch_shift = *(const uint8_t *)v.mv_data;
    }
    return BD_OK;
}

static int init_meta(jnl_t *j, MDB_txn *txn, bd_err_t *err)
{
    uint8_t id[JNL_ID_LEN], ver[4] = {0, 0, 0, JNL_FORMAT_VERSION}, created[8], head[48];
    static const uint8_t zero[JNL_HASH_LEN];
    if (RAND_bytes(id, sizeof(id)) != 1)
        return bd_err_set(err, BD_EINTERNAL, "journal %s: no random bytes for the journal id",
                          j->path);
    jnl__be64(created, jnl__now_ns());
    jnl__head_value(head, 0, zero, 0);
    int rc = put_meta(txn, j->db_meta, "magic", MAGIC, strlen(MAGIC));
    if (rc == 0)
        rc = put_meta(txn, j->db_meta, "version", ver, sizeof(ver));
    if (rc == 0)
        rc = put_meta(txn, j->db_meta, "id", id, sizeof(id));
    if (rc == 0)
        rc = put_meta(txn, j->db_meta, "created", created, sizeof(created));
    if (rc == 0)
        rc = put_meta(txn, j->db_meta, "head", head, sizeof(head));
    if (rc == 0)
        rc = put_meta(txn, j->db_meta, "object_epoch_shift", &(uint8_t){JNL__EPOCH_SHIFT}, 1);
    j->epoch_shift = JNL__EPOCH_SHIFT;
    return rc == 0 ? BD_OK : jnl__mdb_err(j, rc, err, "initialise meta");
}

static int setup_rdonly(jnl_t *j, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = mdb_dbi_open(txn, "meta", 0, &j->db_meta);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
        ret = bd_err_set(err, BD_EFOREIGN, "journal %s: not a bindy journal (no meta database)",
                         j->path);
        goto cleanup;
    }
    if (rc != 0) {
        ret = jnl__mdb_err(j, rc, err, "open meta");
        goto cleanup;
    }
    if ((ret = check_meta(j, txn, err)) != 0 || (ret = open_dbs(j, txn, 0, err)) != 0)
        goto cleanup;
    /* Committing a read-only txn keeps the database handles open. */
    rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&j->maplock);
    txn = NULL;
    if (rc != 0)
        ret = jnl__mdb_err(j, rc, err, "open databases");
cleanup:
    jnl__rtxn_end(j, txn);
    return ret;
}

static int setup_rdwr(jnl_t *j, bool create, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_dbi main_dbi;
    MDB_stat st;
    int ret = BD_OK;
    int rc = jnl__wtxn_begin(j, &txn);
    if (rc != 0)
        return jnl__mdb_err(j, rc, err, "write transaction");
    rc = mdb_dbi_open(txn, "meta", 0, &j->db_meta);
    if (rc == MDB_NOTFOUND) {
        /* A journal is initialised in one transaction: no meta means "new" only when the
         * environment is empty. */
        if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) != 0 ||
            (rc = mdb_stat(txn, main_dbi, &st)) != 0) {
            ret = jnl__mdb_err(j, rc, err, "inspect environment");
            goto cleanup;
        }
        if (st.ms_entries != 0) {
            ret = bd_err_set(err, BD_EFOREIGN,
                             "journal %s: not a bindy journal (an LMDB environment with other data)",
                             j->path);
            goto cleanup;
        }
        if (!create) {
            /* initialised in one transaction: an empty environment is a creation that
             * was interrupted before it, i.e. no journal yet */
            ret = bd_err_set(err, BD_ENOTFOUND,
                             "journal %s: no journal yet (an empty LMDB environment)", j->path);
            goto cleanup;
        }
        if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &j->db_meta)) != 0) {
            ret = jnl__mdb_err(j, rc, err, "create meta");
            goto cleanup;
        }
        if ((ret = open_dbs(j, txn, MDB_CREATE, err)) != 0 || (ret = init_meta(j, txn, err)) != 0)
            goto cleanup;
        bd_info("journal %s: created (format version %d)", j->path, JNL_FORMAT_VERSION);
    } else if (rc == MDB_INCOMPATIBLE) {
        ret = bd_err_set(err, BD_EFOREIGN, "journal %s: not a bindy journal", j->path);
        goto cleanup;
    } else if (rc != 0) {
        ret = jnl__mdb_err(j, rc, err, "open meta");
        goto cleanup;
    } else if ((ret = check_meta(j, txn, err)) != 0 || (ret = open_dbs(j, txn, 0, err)) != 0) {
        goto cleanup;
    }
    /* Tools opening read-only report use against the writer's limit (written when it
     * changed: an open writes nothing else). */
    uint8_t lim[8];
    MDB_val had;
    jnl__be64(lim, j->opts.map_limit);
    rc = meta_get(j, txn, "map_limit", &had);
    if ((rc != 0 || had.mv_size != sizeof(lim) || memcmp(had.mv_data, lim, sizeof(lim)) != 0) &&
        (rc = put_meta(txn, j->db_meta, "map_limit", lim, sizeof(lim))) != 0) {
        ret = jnl__mdb_err(j, rc, err, "write meta");
        goto cleanup;
    }
    rc = jnl__wtxn_end(j, txn, 0);
    txn = NULL;
    if (rc != 0)
        ret = jnl__mdb_err(j, rc, err, "initialise");
cleanup:
    if (txn != NULL)
        jnl__wtxn_end(j, txn, -1);
    return ret;
}

static uint64_t round_down(uint64_t v, uint64_t unit)
{
    return v / unit * unit;
}

int jnl_open(const char *dir, const jnl_opts_t *opts, jnl_t **out, bd_err_t *err)
{
    jnl_t *j = NULL;
    jnl_opts_t o;
    struct stat st;
    char data[4096];
    int ret = BD_OK, rc;

    if (out == NULL || dir == NULL || *dir == '\0')
        return bd_err_set(err, BD_EINVAL, "jnl_open: no journal path");
    *out = NULL;
    if (opts != NULL)
        o = *opts;
    else
        jnl_opts_init(&o);
    bool rdonly = (o.flags & JNL_OPEN_RDONLY) != 0;
    bool create = !rdonly && (o.flags & JNL_OPEN_CREATE) != 0;
    if ((unsigned)o.sync > JNL_SYNC_NOSYNC)
        return bd_err_set(err, BD_EINVAL, "journal %s: invalid sync mode", dir);
    if (o.batch_max == 0)
        o.batch_max = 1;
    if (o.batch_ms > 10)
        o.batch_ms = 10;
    if (o.map_size < MIB)
        o.map_size = MIB;
    if (o.map_limit < o.map_size)
        o.map_limit = o.map_size;
    if (o.queue_max_bytes == 0)
        o.queue_max_bytes = 64 * MIB;

    if (stat(dir, &st) != 0) {
        if (errno != ENOENT)
            return bd_err_set(err, BD_EIO, "journal %s: %s", dir, strerror(errno));
        if (!create)
            return bd_err_set(err, BD_ENOTFOUND, "journal %s: no such directory", dir);
        bd_err_t merr;
        if (bd_mkdirs(dir, 0750, &merr) != BD_OK)
            return bd_err_set(err, BD_EIO, "journal %s: cannot create: %s", dir, merr.msg);
    } else if (!S_ISDIR(st.st_mode)) {
        return bd_err_set(err, BD_EFOREIGN,
                          "journal %s: not a journal (a journal is a directory holding data.mdb)",
                          dir);
    }
    if ((size_t)snprintf(data, sizeof(data), "%s/data.mdb", dir) >= sizeof(data))
        return bd_err_set(err, BD_EINVAL, "journal %s: path too long", dir);
    rc = looks_like_lmdb(data);
    if (rc == -ENOENT && !create)
        return bd_err_set(err, BD_ENOTFOUND,
                          "journal %s: no journal in this directory (no data.mdb, or an empty one)", dir);
    if (rc < 0 && rc != -ENOENT)
        return bd_err_set(err, BD_EIO, "journal %s: cannot read data.mdb: %s", dir, strerror(-rc));
    if (rc == 0)
        return bd_err_set(err, BD_EFOREIGN, "journal %s: data.mdb is not an LMDB file", dir);

    j = calloc(1, sizeof(*j));
    if (j == NULL || (j->path = strdup(dir)) == NULL) {
        free(j);
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    j->opts = o;
    j->rdonly = rdonly;
    pthread_rwlockattr_t rwa;
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&j->maplock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    pthread_mutex_init(&j->ckpt_lock, NULL);
    pthread_mutex_init(&j->qlock, NULL);
    pthread_mutex_init(&j->pool_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->work_cv, &ca);
    pthread_cond_init(&j->seal_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&j->done_cv, NULL);

    if ((rc = mdb_env_create(&j->env)) != 0) {
        ret = jnl__mdb_err(j, rc, err, "create environment");
        goto cleanup;
    }
    mdb_env_set_maxdbs(j->env, 8);
    long psz = sysconf(_SC_PAGESIZE);
    j->page_size = psz > 0 ? (size_t)psz : 4096;
    unsigned flags = MDB_NOTLS;
    if (rdonly) {
        flags |= MDB_RDONLY;
    } else {
        o.map_limit = round_down(o.map_limit, j->page_size);
        j->opts.map_limit = o.map_limit;
        j->append_ceiling = round_down(o.map_limit - o.map_limit / 16, j->page_size);
        uint64_t initial = round_down(o.map_size, j->page_size);
        if (initial > j->append_ceiling)
            initial = j->append_ceiling;
        mdb_env_set_mapsize(j->env, (size_t)initial);
        if (o.sync == JNL_SYNC_NOMETASYNC)
            flags |= MDB_NOMETASYNC;
        else if (o.sync == JNL_SYNC_NOSYNC)
            flags |= MDB_NOSYNC;
    }
    rc = mdb_env_open(j->env, dir, flags, 0640);
    if (rc == EACCES && rdonly) {
        /* A copy of a journal we may not lock (read-only directory): read without the
         * lock file. Safe as long as nobody writes it. */
        mdb_env_close(j->env);
        j->env = NULL;
        if ((rc = mdb_env_create(&j->env)) == 0) {
            mdb_env_set_maxdbs(j->env, 8);
            rc = mdb_env_open(j->env, dir, flags | MDB_NOLOCK, 0640);
            if (rc == 0)
                bd_warn("journal %s: no write access to the lock file; reading without locking",
                        dir);
        }
    }
    if (rc != 0) {
        ret = jnl__mdb_err(j, rc, err, "open");
        goto cleanup;
    }
    MDB_stat est;
    if (mdb_env_stat(j->env, &est) == 0 && est.ms_psize > 0)
        j->page_size = est.ms_psize;

    ret = rdonly ? setup_rdonly(j, err) : setup_rdwr(j, create, err);
    /* A journal whose map was full when its writer stopped (at the limit, or killed before
     * it grew the map) has no page left for the meta write of opening: grow as appends do,
     * into the reserve above the append ceiling if need be. */
    for (int tries = 0; !rdonly && ret == BD_EFULL && tries < 8 && jnl__grow(j, j->opts.map_limit) == BD_OK; tries++)
        ret = setup_rdwr(j, create, err);
    if (ret != 0)
        goto cleanup;
    j->next_seq = j->committed_seq + 1;
    j->last_time = j->committed_time;
    memcpy(j->chain_hash, j->committed_hash, JNL_HASH_LEN);
    if (!rdonly) {
        if ((j->md_ctx = EVP_MD_CTX_new()) == NULL) {
            ret = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto cleanup;
        }
        MDB_envinfo info;
        mdb_env_info(j->env, &info);
        uint64_t used = ((uint64_t)info.me_last_pgno + 1) * j->page_size;
        if (used >= j->append_ceiling) {
            j->full = true;
            j->werr = BD_EFULL;
            snprintf(j->werr_msg, sizeof(j->werr_msg),
                     "journal %s: size limit of %llu MiB reached; appends are refused until old "
                     "events are pruned or the limit is raised",
                     j->path, (unsigned long long)(j->opts.map_limit / MIB));
        }
        jnl__check_space(j);
        if ((ret = jnl__writer_start(j, err)) != 0)
            goto cleanup;
    }
    *out = j;
    return BD_OK;
cleanup:
    jnl_close(j);
    return ret;
}

void jnl_close(jnl_t *j)
{
    if (j == NULL)
        return;
    jnl__writer_stop(j);
    if (j->loop != NULL)
        ev_async_stop(j->loop, &j->async);
    if (j->env != NULL) {
        if (!j->rdonly && j->opts.sync != JNL_SYNC_DURABLE)
            mdb_env_sync(j->env, 1);
        mdb_env_close(j->env);
    }
    EVP_MD_CTX_free(j->md_ctx);
    jnl__pool_free(j);
    pthread_mutex_destroy(&j->pool_lock);
    pthread_cond_destroy(&j->work_cv);
    pthread_cond_destroy(&j->done_cv);
    pthread_cond_destroy(&j->seal_cv);
    pthread_mutex_destroy(&j->qlock);
    pthread_mutex_destroy(&j->ckpt_lock);
    pthread_rwlock_destroy(&j->maplock);
    free(j->path);
    free(j);
}

const char *jnl_path(const jnl_t *j)
{
    return j->path;
}

int jnl_id(jnl_t *j, uint8_t id[JNL_ID_LEN], bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = meta_get(j, txn, "id", &v);
    if (rc != 0)
        ret = jnl__mdb_err(j, rc, err, "read id");
    else if (v.mv_size != JNL_ID_LEN)
        ret = bd_err_set(err, BD_ECORRUPT, "journal %s: journal id is damaged", j->path);
    else
        memcpy(id, v.mv_data, JNL_ID_LEN);
    jnl__rtxn_end(j, txn);
    return ret;
}

int jnl_sync(jnl_t *j, bd_err_t *err)
{
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    int rc = mdb_env_sync(j->env, 1);
    return rc == 0 ? BD_OK : jnl__mdb_err(j, rc, err, "sync");
}

/* ---- resume points and watermarks ----------------------------------------------------------- */

static int meta_key(jnl_t *j, char *buf, size_t size, const char *prefix, const char *name,
                    bd_err_t *err)
{
    if (name == NULL || *name == '\0')
        return bd_err_set(err, BD_EINVAL, "journal %s: empty %s key", j->path, prefix);
    int n = snprintf(buf, size, "%s/%s", prefix, name);
    if (n < 0 || (size_t)n >= size || (size_t)n > JNL__META_KEY_MAX)
        return bd_err_set(err, BD_EINVAL, "journal %s: %s key too long", j->path, prefix);
    return n;
}

int jnl_resume_set(jnl_t *j, const char *resource, const char *rv, bd_err_t *err)
{
    char key[512];
    int n = meta_key(j, key, sizeof(key), "resume", resource, err);
    if (n < 0)
        return n;
    size_t vl = rv != NULL ? strlen(rv) : 0;
    if (vl > 1024)
        return bd_err_set(err, BD_EINVAL, "journal %s: resourceVersion too long", j->path);
    return jnl__queue_meta(j, key, (size_t)n, rv != NULL ? rv : "", vl, err);
}

int jnl_resume_get(jnl_t *j, const char *resource, char **rv_out, bd_err_t *err)
{
    char key[512];
    MDB_txn *txn = NULL;
    MDB_val v;
    *rv_out = NULL;
    int n = meta_key(j, key, sizeof(key), "resume", resource, err);
    if (n < 0)
        return n;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = meta_get(j, txn, key, &v);
    if (rc == MDB_NOTFOUND) {
        ret = bd_err_set(err, BD_ENOTFOUND, "journal %s: no resume point for %s", j->path, resource);
    } else if (rc != 0) {
        ret = jnl__mdb_err(j, rc, err, "read resume point");
    } else if ((*rv_out = strndup(v.mv_data, v.mv_size)) == NULL) {
        ret = bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    jnl__rtxn_end(j, txn);
    return ret;
}

int jnl_watermark_set(jnl_t *j, const char *target, uint64_t seq, bd_err_t *err)
{
    char key[512];
    uint8_t v[8];
    int n = meta_key(j, key, sizeof(key), "watermark", target, err);
    if (n < 0)
        return n;
    jnl__be64(v, seq);
    return jnl__queue_meta(j, key, (size_t)n, v, sizeof(v), err);
}

int jnl_watermark_get(jnl_t *j, const char *target, uint64_t *seq_out, bd_err_t *err)
{
    char key[512];
    MDB_txn *txn = NULL;
    MDB_val v;
    *seq_out = 0;
    int n = meta_key(j, key, sizeof(key), "watermark", target, err);
    if (n < 0)
        return n;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = meta_get(j, txn, key, &v);
    if (rc == 0 && v.mv_size == 8)
        *seq_out = jnl__get_be64(v.mv_data);
    else if (rc == 0)
        ret = bd_err_set(err, BD_ECORRUPT, "journal %s: watermark %s is damaged", j->path, target);
    else if (rc != MDB_NOTFOUND)
        ret = jnl__mdb_err(j, rc, err, "read watermark");
    jnl__rtxn_end(j, txn);
    return ret;
}

/* ---- statistics ------------------------------------------------------------------------------ */

static uint64_t event_time(const MDB_val *v)
{
    jnl__rd_t rd;
    jnl__hdr_t h;
    jnl__rd_init(&rd, v->mv_data, v->mv_size);
    return jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) == 0 ? h.time : 0;
}

int jnl_stats(jnl_t *j, jnl_stats_t *st, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_stat ms;
    MDB_envinfo info;
    MDB_val k, v;
    int rc;
    memset(st, 0, sizeof(*st));
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    if ((rc = mdb_stat(txn, j->db_events, &ms)) != 0)
        goto lmdb;
    st->events = ms.ms_entries;
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8) {
        st->first_seq = jnl__get_be64(k.mv_data);
        st->first_time_ns = event_time(&v);
    }
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) {
        st->last_seq = jnl__get_be64(k.mv_data);
        st->last_time_ns = event_time(&v);
    }
    mdb_cursor_close(cur);
    cur = NULL;
    if ((rc = mdb_stat(txn, j->db_ckpt, &ms)) != 0)
        goto lmdb;
    st->checkpoints = ms.ms_entries;
    if ((rc = mdb_cursor_open(txn, j->db_ckpt, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
        st->checkpoint_seq = jnl__get_be64(k.mv_data);
    mdb_cursor_close(cur);
    cur = NULL;
    /* Free pages: the free list (dbi 0) holds page-number lists; the first word of each
     * is its length (as mdb_stat -f counts them). */
    uint64_t free_pages = 0;
    if (mdb_cursor_open(txn, 0, &cur) == 0) {
        while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
            if (v.mv_size >= sizeof(size_t)) {
                size_t n;
                memcpy(&n, v.mv_data, sizeof(n));
                free_pages += n;
            }
        mdb_cursor_close(cur);
        cur = NULL;
    }
    mdb_env_info(j->env, &info);
    st->page_size = j->page_size;
    st->file_bytes = ((uint64_t)info.me_last_pgno + 1) * j->page_size;
    st->used_bytes = st->file_bytes - (free_pages * j->page_size < st->file_bytes
                                           ? free_pages * j->page_size
                                           : 0);
    st->map_size = info.me_mapsize;
    st->map_limit = j->opts.map_limit;
    if (j->rdonly) {
        MDB_val lv;
        st->map_limit = info.me_mapsize;
        if (meta_get(j, txn, "map_limit", &lv) == 0 && lv.mv_size == 8)
            st->map_limit = jnl__get_be64(lv.mv_data);
    }
    st->near_limit = st->used_bytes * 10 >= st->map_limit * 9;
    st->sync = j->opts.sync;
    st->rdonly = j->rdonly;
    pthread_mutex_lock(&j->qlock);
    st->full = j->full;
    pthread_mutex_unlock(&j->qlock);
    jnl__rtxn_end(j, txn);
    return BD_OK;
lmdb:
    if (cur != NULL)
        mdb_cursor_close(cur);
    ret = jnl__mdb_err(j, rc, err, "statistics");
    jnl__rtxn_end(j, txn);
    return ret;
}
