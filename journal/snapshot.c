/*
 * snapshot.c - opaque blobs tied to a seq (a consumer's state at that point), in meta.
 *
 * A consumer of the journal (the projector) stores its own state at seq N so that a
 * restart replays only N+1 onwards. The journal does not interpret the bytes; it binds
 * them to this journal's history with the chain hash of event N, so a blob copied from
 * another journal, or one whose journal was rewritten, is refused instead of producing a
 * state that never existed here, and it checksums the whole value so an altered blob is
 * refused too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jnl_int.h"

#define SNAP_VERSION 1u
#define SNAP_HDR (1u + 8u + JNL_HASH_LEN + 8u) /* version, seq, chain hash, length */
#define SNAP_MAX ((uint64_t)1 << 30)

static int snap_key(jnl_t *j, const char *name, char *key, size_t size, bd_err_t *err)
{
    if (name == NULL || *name == '\0' || strlen(name) + sizeof("snapshot/") > size ||
        strlen(name) + sizeof("snapshot/") > JNL__META_KEY_MAX)
        return bd_err_set(err, BD_EINVAL, "journal %s: bad snapshot name", j->path);
    strcpy(key, "snapshot/");
    strcat(key, name);
    return BD_OK;
}

/* The chain hash of seq: from the stored event, else from a checkpoint at seq (its anchor).
 * Returns an LMDB code (MDB_NOTFOUND when neither is stored). */
static int hash_of(jnl_t *j, MDB_txn *txn, uint64_t seq, uint8_t out[JNL_HASH_LEN])
{
    uint8_t key[8];
    jnl__be64(key, seq);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(txn, j->db_events, &k, &v);
    if (rc == 0) {
        jnl__rd_t rd;
        jnl__hdr_t h;
        jnl__rd_init(&rd, v.mv_data, v.mv_size);
        if (jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) != 0 || h.seq != seq)
            return MDB_CORRUPTED;
        memcpy(out, h.hash, JNL_HASH_LEN);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    k.mv_size = 8;
    k.mv_data = key;
    if ((rc = mdb_get(txn, j->db_ckpt, &k, &v)) != 0)
        return rc;
    jnl__rd_t rd;
    jnl__ckpt_t c;
    jnl__rd_init(&rd, v.mv_data, v.mv_size);
    if (jnl__ckpt_parse(&rd, &c) != 0)
        return MDB_CORRUPTED;
    memcpy(out, c.anchor, JNL_HASH_LEN);
    return 0;
}

int jnl_snapshot_put(jnl_t *j, const char *name, uint64_t seq, const void *buf, size_t len,
                     bd_err_t *err)
{
    char key[JNL__META_KEY_MAX + 1];
    uint8_t *val = NULL;
    int ret;
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    if ((ret = snap_key(j, name, key, sizeof(key), err)) != BD_OK)
        return ret;
    if ((buf == NULL && len > 0) || (uint64_t)len > SNAP_MAX)
        return bd_err_set(err, len > 0 && buf != NULL ? BD_ETOOBIG : BD_EINVAL,
                          "journal %s: snapshot %s of %zu bytes refused", j->path, name, len);
    size_t vlen = SNAP_HDR + len + JNL_HASH_LEN;
    if ((val = malloc(vlen)) == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    val[0] = SNAP_VERSION;
    jnl__be64(val + 1, seq);
    jnl__be64(val + 1 + 8 + JNL_HASH_LEN, len);
    if (len > 0)
        memcpy(val + SNAP_HDR, buf, len);
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = jnl__wtxn_begin(j, &txn);
        if (rc != 0) {
            ret = jnl__mdb_err(j, rc, err, "snapshot");
            break;
        }
        /* The hash is read in the same transaction as the put: a prune cannot slip in. */
        rc = hash_of(j, txn, seq, val + 1 + 8);
        if (rc == MDB_NOTFOUND) {
            jnl__wtxn_end(j, txn, rc);
            ret = bd_err_set(err, BD_ENOTFOUND, "journal %s: snapshot %s: seq %llu is not stored",
                             j->path, name, (unsigned long long)seq);
            break;
        }
        if (rc == 0 && jnl__sha256(NULL, NULL, val, SNAP_HDR + len, val + SNAP_HDR + len) != 0)
            rc = ENOMEM;
        if (rc == 0) {
            MDB_val k = {strlen(key), key}, v = {vlen, val};
            rc = mdb_put(txn, j->db_meta, &k, &v, 0);
        }
        rc = jnl__wtxn_end(j, txn, rc);
        /* Snapshots grow the map only up to the append ceiling: the reserve above it is
         * for the checkpoint that prunes a full journal. */
        if (rc == MDB_MAP_FULL && jnl__grow(j, j->append_ceiling) == 0)
            continue;
        if (rc == MDB_MAP_FULL)
            ret = bd_err_set(err, BD_EFULL, "journal %s: no room for a snapshot of %zu KiB",
                             j->path, len / 1024);
        else
            ret = rc == 0 ? BD_OK : jnl__mdb_err(j, rc, err, "write snapshot");
        break;
    }
    free(val);
    return ret;
}

/* Read and check the value of key in txn; *payload points into the map. */
static int snap_read(jnl_t *j, MDB_txn *txn, const char *name, const char *key, bool verify,
                     uint64_t *seq, const uint8_t **payload, size_t *len, bd_err_t *err)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, j->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return bd_err_set(err, BD_ENOTFOUND, "journal %s: no snapshot %s", j->path, name);
    if (rc != 0)
        return jnl__mdb_err(j, rc, err, "read snapshot");
    const uint8_t *p = v.mv_data;
    if (v.mv_size < SNAP_HDR + JNL_HASH_LEN)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: snapshot %s is truncated", j->path, name);
    if (p[0] != SNAP_VERSION)
        return bd_err_set(err, BD_EVERSION, "journal %s: snapshot %s has format version %u",
                          j->path, name, p[0]);
    uint64_t s = jnl__get_be64(p + 1), l = jnl__get_be64(p + 1 + 8 + JNL_HASH_LEN);
    if (l != v.mv_size - SNAP_HDR - JNL_HASH_LEN)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: snapshot %s at seq %llu: bad length",
                          j->path, name, (unsigned long long)s);
    if (verify) {
        uint8_t sum[JNL_HASH_LEN], chain[JNL_HASH_LEN], hseq_hash[JNL_HASH_LEN];
        uint64_t hseq = 0, htime = 0;
        if (jnl__sha256(NULL, NULL, p, SNAP_HDR + l, sum) != 0)
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        if (memcmp(sum, p + SNAP_HDR + l, JNL_HASH_LEN) != 0)
            return bd_err_set(err, BD_ECORRUPT,
                              "journal %s: snapshot %s at seq %llu: checksum mismatch (altered)",
                              j->path, name, (unsigned long long)s);
        if ((rc = jnl__meta_head(j, txn, &hseq, hseq_hash, &htime)) != 0)
            return jnl__mdb_err(j, rc, err, "read head");
        if (s > hseq)
            return bd_err_set(err, BD_ECORRUPT,
                              "journal %s: snapshot %s at seq %llu is after the last event (%llu): "
                              "it belongs to another journal",
                              j->path, name, (unsigned long long)s, (unsigned long long)hseq);
        rc = hash_of(j, txn, s, chain);
        if (rc == 0 && memcmp(chain, p + 1 + 8, JNL_HASH_LEN) != 0)
            return bd_err_set(err, BD_ECORRUPT,
                              "journal %s: snapshot %s at seq %llu does not match event "
                              "%llu's hash: it belongs to another journal",
                              j->path, name, (unsigned long long)s, (unsigned long long)s);
        /* Pruned past it: nothing left to compare with; the caller finds it too old. */
        if (rc != 0 && rc != MDB_NOTFOUND)
            return jnl__mdb_err(j, rc, err, "read snapshot's event");
    }
    *seq = s;
    *payload = p + SNAP_HDR;
    *len = (size_t)l;
    return BD_OK;
}

/* jnl_snapshot_get (buf non-NULL: a copy of the data) and jnl_snapshot_stat (buf NULL:
 * its seq and length only, checksum unchecked). */
static int snap_fetch(jnl_t *j, const char *name, uint64_t *seq, void **buf, size_t *len, bd_err_t *err)
{
    char key[JNL__META_KEY_MAX + 1];
    MDB_txn *txn = NULL;
    const uint8_t *p = NULL;
    uint64_t s = 0;
    size_t l = 0;
    *seq = 0;
    *len = 0;
    if (buf != NULL)
        *buf = NULL;
    int ret = snap_key(j, name, key, sizeof(key), err);
    if (ret != BD_OK || (ret = jnl__rtxn_begin(j, &txn, err)) != BD_OK)
        return ret;
    if ((ret = snap_read(j, txn, name, key, buf != NULL, &s, &p, &l, err)) == BD_OK) {
        void *copy = buf != NULL ? malloc(l ? l : 1) : NULL;
        if (buf != NULL && copy == NULL) {
            ret = bd_err_set(err, BD_ENOMEM, "out of memory");
        } else {
            if (buf != NULL) {
                memcpy(copy, p, l);
                *buf = copy;
            }
            *seq = s;
            *len = l;
        }
    }
    jnl__rtxn_end(j, txn);
    return ret;
}

int jnl_snapshot_get(jnl_t *j, const char *name, uint64_t *seq, void **buf, size_t *len,
                     bd_err_t *err)
{
    return snap_fetch(j, name, seq, buf, len, err);
}

int jnl_snapshot_stat(jnl_t *j, const char *name, uint64_t *seq, size_t *len, bd_err_t *err)
{
    return snap_fetch(j, name, seq, NULL, len, err);
}
