/*
 * bench_journal.c - journal throughput.
 *
 * Prints `BENCH <name> <value> <unit>` lines:
 *   journal_append_<mode>        events/s through jnl_append + group commit (flushed)
 *   journal_raw_put_<mode>       events/s of plain LMDB puts of the same encoded records,
 *                                same batch size and sync flags, one thread (the ceiling)
 *   journal_append_ratio_<mode>  the two divided (goal >= 0.5)
 *   journal_raw_encode_put_<mode> events/s of one thread encoding each record
 *                                (jnl_record_encode: JSON -> msgpack + SHA-256) and putting
 *                                it, batch by batch: a synchronous journal without the
 *                                writer thread and without indexes
 *   journal_append_vs_encode_put_ratio_<mode>  append / raw_encode_put
 *   journal_enqueue_<mode>       events/s at which jnl_append returned (loop-thread cost)
 *   journal_batch_size           events per commit used above
 *   journal_encode_1k            events/s of jnl_record_encode alone (JSON -> canonical
 *                                msgpack + SHA-256), one thread: the work raw puts skip
 *   journal_sha256_1k            events/s of SHA-256 over prev_hash + record, one reused
 *                                context (what the sealer thread does per event)
 *   journal_msgpackc_pack_1k     events/s of msgpack-c's own packer walking the same objects
 *                                (keys unsorted, strings unchecked, no record fields): the
 *                                library's cost of turning these trees into msgpack at all
 *   journal_cpu_floor_nosync     CPU per event of the work no journal of this format can skip:
 *                                msgpack-c's packing + SHA-256 + one raw nosync put (us)
 *   journal_cpu_bound_ratio_nosync  (online CPUs / that floor) / raw nosync puts: the best
 *                                ratio any journal of this format could reach on this machine,
 *                                with perfect parallelism, free indexes and free hand-offs
 *   journal_verify_1k            events/s of jnl_verify with ~1 KiB objects (goal >= 1e6)
 *   journal_state_at_100k        seconds to fold a 100,000-event journal (goal <= 1 s)
 *   journal_export_at_100k       the same plus turning every object into JSON text
 * Usage: bench_journal [--quick]. Bounded: about 30 s on 2 cores.
 */
#include <ftw.h>
#include <lmdb.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "clock.h"
#include "log.h"

#define APIV "bindy.firestoned.io/v1beta1"
#define BATCH 1024

static char g_tmp[512];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, const bd_err_t *err)
{
    fprintf(stderr, "bench_journal: %s: %s\n", what, err ? err->msg : "");
    rm_rf(g_tmp);
    exit(1);
}

/* A DNS-record-like object of about `size` bytes once encoded. */
static json_t *make_obj(int i, int nobj, size_t size)
{
    char name[32], data[64];
    snprintf(name, sizeof(name), "rec-%05d", i % nobj);
    snprintf(data, sizeof(data), "192.0.2.%d", i % 250);
    json_t *o = json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:i, s:s, s:{s:s, s:s}, s:{s:s}}, "
        "s:{s:s, s:s, s:i, s:[s], s:{s:[s,s]}}, s:{s:[{s:s, s:s, s:s}], s:i}}",
        "apiVersion", APIV, "kind", "ARecord", "metadata", "name", name, "namespace", "dns-system",
        "uid", "8f14e45f-ceea-467f-a0e6-7f3f0b0e0c11", "resourceVersion", "123456", "generation",
        i, "creationTimestamp", "2026-11-23T10:00:00Z", "labels", "app.kubernetes.io/part-of",
        "bindy", "zone", "example-com", "annotations", "note", "benchmark", "spec", "zone",
        "example.com", "name", "www", "ttl", 300, "ipv4Addresses", data, "selector",
        "matchNames", "a", "b", "status", "conditions", "type", "Ready", "status", "True",
        "reason", "Applied", "observedGeneration", i);
    /* Pad to the wanted size with a filler field. */
    size_t have = 0;
    char *dump = json_dumps(o, JSON_COMPACT);
    have = strlen(dump);
    free(dump);
    if (have < size) {
        size_t pad = size - have;
        char *p = malloc(pad + 1);
        memset(p, 'x', pad);
        p[pad] = 0;
        json_object_set_new(json_object_get(o, "spec"), "comment", json_string(p));
        free(p);
    }
    return o;
}

static jnl_t *open_journal(const char *name, jnl_sync_t sync, bd_err_t *err)
{
    char path[600];
    jnl_opts_t o;
    jnl_t *j = NULL;
    snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = sync;
    o.batch_max = BATCH;
    o.map_size = 256u << 20;
    o.map_limit = 4096ull << 20;
    o.queue_max_bytes = 256u << 20;
    if (jnl_open(path, &o, &j, err) != 0)
        die("open", err);
    return j;
}

/* Append n events (objects precomputed) through the queue; returns events/s until all
 * are committed, and in *enqueue the rate at which jnl_append returned. */
static double bench_append(jnl_t *j, json_t **objs, int nobjs, int n, int nnames, double *enqueue)
{
    bd_err_t err;
    double t0 = bd_mono_s();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "rec-%05d", i % nnames);
        jnl_event_t ev = {.source = JNL_SRC_KUBERNETES,
                          .type = i < nnames ? JNL_ADDED : (i % 97 == 0 ? JNL_DELETED : JNL_MODIFIED),
                          .api_version = APIV,
                          .kind = "ARecord",
                          .ns = "dns-system",
                          .name = name,
                          .uid = "8f14e45f-ceea-467f-a0e6-7f3f0b0e0c11",
                          .resource_version = "123456",
                          .generation = i,
                          .object = objs[i % nobjs]};
        int rc = jnl_append(j, &ev, NULL, &err);
        if (rc == BD_EBUSY) {
            if (jnl_flush(j, &err) != 0)
                die("flush", &err);
            i--;
            continue;
        }
        if (rc != 0)
            die("append", &err);
    }
    double t1 = bd_mono_s();
    if (jnl_flush(j, &err) != 0)
        die("flush", &err);
    if (enqueue != NULL)
        *enqueue = n / (t1 - t0);
    return n / (bd_mono_s() - t0);
}

/* SHA-256(prev_hash || record without its hash) of each record, one context and the digest
 * fetched once (as the sealer does), n times: events/s. */
static double bench_sha(uint8_t **recs, size_t *lens, int nrecs, int n)
{
    static const uint8_t prev[32];
    uint8_t out[EVP_MAX_MD_SIZE];
    unsigned olen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (ctx == NULL || md == NULL)
        die("SHA-256 context", NULL);
    double t0 = bd_mono_s();
    for (int i = 0; i < n; i++) {
        if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
            EVP_DigestUpdate(ctx, prev, sizeof(prev)) != 1 ||
            EVP_DigestUpdate(ctx, recs[i % nrecs], lens[i % nrecs] - 32) != 1 ||
            EVP_DigestFinal_ex(ctx, out, &olen) != 1)
            die("SHA-256", NULL);
    }
    double rate = n / (bd_mono_s() - t0);
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    return rate;
}

static void pack(msgpack_packer *pk, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach ((json_t *)v, k, x) {
            size_t l = strlen(k);
            msgpack_pack_str_with_body(pk, k, l);
            pack(pk, x);
        }
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach (v, i, x)
            pack(pk, x);
        return;
    }
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        return;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        return;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return;
    }
}

/* msgpack-c packing each object into one reused buffer, n times: events/s. */
static double bench_msgpackc(json_t **objs, int nobjs, int n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    double t0 = bd_mono_s();
    for (int i = 0; i < n; i++) {
        msgpack_sbuffer_clear(&sb);
        pack(&pk, objs[i % nobjs]);
    }
    double rate = n / (bd_mono_s() - t0);
    msgpack_sbuffer_destroy(&sb);
    return rate;
}

/* Plain LMDB: the same records (encoded beforehand, or now when objs is not NULL), same
 * batch size and sync flags. */
static double bench_raw(jnl_sync_t sync, uint8_t **recs, size_t *lens, int nrecs, int n,
                        json_t **objs)
{
    char path[600];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    snprintf(path, sizeof(path), "%s/raw-%s", g_tmp, jnl_sync_name(sync));
    mkdir(path, 0700);
    unsigned flags = sync == JNL_SYNC_NOSYNC ? MDB_NOSYNC
                     : sync == JNL_SYNC_NOMETASYNC ? MDB_NOMETASYNC : 0;
    if (mdb_env_create(&env) != 0)
        die("raw env", NULL);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, (size_t)4096 << 20);
    if (mdb_env_open(env, path, flags | MDB_NOTLS, 0640) != 0)
        die("raw open", NULL);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "events", MDB_CREATE, &dbi);
    mdb_txn_commit(txn);
    double t0 = bd_mono_s();
    for (int i = 0; i < n;) {
        if (mdb_txn_begin(env, NULL, 0, &txn) != 0)
            die("raw txn", NULL);
        for (int k = 0; k < BATCH && i < n; k++, i++) {
            uint8_t key[8];
            uint64_t s = (uint64_t)i + 1;
            for (int b = 7; b >= 0; b--, s >>= 8)
                key[b] = (uint8_t)s;
            MDB_val kv = {8, key}, vv = {lens[i % nrecs], recs[i % nrecs]};
            uint8_t *enc = NULL;
            if (objs != NULL) {
                char name[32];
                bd_err_t err;
                snprintf(name, sizeof(name), "rec-%05d", i % 1000);
                jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "ARecord",
                                  .ns = "dns-system", .name = name,
                                  .uid = "8f14e45f-ceea-467f-a0e6-7f3f0b0e0c11",
                                  .resource_version = "123456", .generation = i,
                                  .object = objs[i % nrecs]};
                if (jnl_record_encode(&ev, (uint64_t)i + 1, 1700000000000000000ull, NULL, &enc,
                                      &vv.mv_size, &err) != 0)
                    die("encode", &err);
                vv.mv_data = enc;
            }
            if (mdb_put(txn, dbi, &kv, &vv, MDB_APPEND) != 0)
                die("raw put", NULL);
            free(enc);
        }
        if (mdb_txn_commit(txn) != 0)
            die("raw commit", NULL);
    }
    double rate = n / (bd_mono_s() - t0);
    mdb_env_close(env);
    rm_rf(path);
    return rate;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const char *base = getenv("TMPDIR");
    bd_err_t err;
    bd_log_set_level(BD_LOG_WARN);
    snprintf(g_tmp, sizeof(g_tmp), "%s/bench_journal.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    /* Objects of ~1 KiB; their records encoded once for the raw baseline. */
    enum { NOBJ = 64, NNAMES = 1000 };
    json_t *objs[NOBJ];
    uint8_t *recs[NOBJ];
    size_t lens[NOBJ];
    for (int i = 0; i < NOBJ; i++) {
        objs[i] = make_obj(i, NNAMES, 1024);
        char name[32];
        snprintf(name, sizeof(name), "rec-%05d", i);
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "ARecord",
                          .ns = "dns-system", .name = name, .uid = "8f14e45f-ceea-467f-a0e6-7f3f0b0e0c11",
                          .resource_version = "123456", .generation = i, .object = objs[i]};
        if (jnl_record_encode(&ev, (uint64_t)i + 1, 1700000000000000000ull, NULL, &recs[i],
                              &lens[i], &err) != 0)
            die("encode", &err);
    }
    printf("BENCH journal_record_size %zu bytes\n", lens[0]);
    {
        int n = quick ? 20000 : 100000;
        double t0 = bd_mono_s();
        for (int i = 0; i < n; i++) {
            uint8_t *b = NULL;
            size_t l = 0;
            jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "ARecord",
                              .ns = "dns-system", .name = "rec-00001", .object = objs[i % NOBJ]};
            if (jnl_record_encode(&ev, (uint64_t)i + 1, 1, NULL, &b, &l, &err) != 0)
                die("encode", &err);
            free(b);
        }
        printf("BENCH journal_encode_1k %.0f events/s\n", n / (bd_mono_s() - t0));
    }
    /* The floor's parts, best of three each (the higher the rate, the kinder the bound). */
    double sha = 0, mpc = 0;
    for (int rep = 0; rep < 3; rep++) {
        int n = quick ? 20000 : 100000;
        double r = bench_sha(recs, lens, NOBJ, n);
        if (r > sha)
            sha = r;
        r = bench_msgpackc(objs, NOBJ, n);
        if (r > mpc)
            mpc = r;
    }
    printf("BENCH journal_sha256_1k %.0f events/s\n", sha);
    printf("BENCH journal_msgpackc_pack_1k %.0f events/s\n", mpc);
    printf("BENCH journal_batch_size %d events\n", BATCH);

    static const jnl_sync_t modes[] = {JNL_SYNC_DURABLE, JNL_SYNC_NOMETASYNC, JNL_SYNC_NOSYNC};
    for (int m = 0; m < 3; m++) {
        jnl_sync_t mode = modes[m];
        int n = mode == JNL_SYNC_NOSYNC ? 200000 : 50000;
        if (quick)
            n /= 10;
        char name[64];
        snprintf(name, sizeof(name), "append-%s", jnl_sync_name(mode));
        /* Alternate and keep the best of two runs each, so that neither side gets a
         * cold or a warm cache unfairly. */
        double app = 0, raw = 0, enq = 0, rawenc = 0;
        for (int rep = 0; rep < 2; rep++) {
            jnl_t *j = open_journal(name, mode, &err);
            double e = 0;
            double a = bench_append(j, objs, NOBJ, n, NNAMES, &e);
            if (e > enq)
                enq = e;
            jnl_close(j);
            char path[700];
            snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
            rm_rf(path);
            double r = bench_raw(mode, recs, lens, NOBJ, n, NULL);
            double re = bench_raw(mode, recs, lens, NOBJ, n, objs);
            if (a > app)
                app = a;
            if (r > raw)
                raw = r;
            if (re > rawenc)
                rawenc = re;
        }
        printf("BENCH journal_append_%s %.0f events/s\n", jnl_sync_name(mode), app);
        printf("BENCH journal_raw_put_%s %.0f events/s\n", jnl_sync_name(mode), raw);
        printf("BENCH journal_append_ratio_%s %.2f ratio\n", jnl_sync_name(mode), app / raw);
        printf("BENCH journal_enqueue_%s %.0f events/s\n", jnl_sync_name(mode), enq);
        printf("BENCH journal_raw_encode_put_%s %.0f events/s\n", jnl_sync_name(mode), rawenc);
        printf("BENCH journal_append_vs_encode_put_ratio_%s %.2f ratio\n", jnl_sync_name(mode),
               app / rawenc);
        if (mode == JNL_SYNC_NOSYNC) {
            /* Without a disk to wait for, CPU is the limit: no journal that packs, hashes
             * and puts every record can beat the CPUs divided by that work. */
            double floor_s = 1 / mpc + 1 / sha + 1 / raw;
            long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            printf("BENCH journal_cpu_floor_nosync %.2f us\n", floor_s * 1e6);
            printf("BENCH journal_cpu_bound_ratio_nosync %.2f ratio\n",
                   (double)(ncpu > 0 ? ncpu : 1) / floor_s / raw);
        }
        fflush(stdout);
    }

    /* A 100,000-event journal of ~1 KiB objects over 1,000 names: verify and fold. */
    int n = quick ? 20000 : 100000;
    jnl_t *j = open_journal("big", JNL_SYNC_NOSYNC, &err);
    bench_append(j, objs, NOBJ, n, NNAMES, NULL);
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        jnl_verify_report_t vr;
        double t0 = bd_mono_s();
        if (jnl_verify(j, &vr, &err) != 0)
            die("verify", &err);
        double dt = bd_mono_s() - t0;
        if (dt < best)
            best = dt;
    }
    printf("BENCH journal_verify_1k %.0f events/s\n", n / best);

    best = 1e9;
    double best_export = 1e9;
    size_t count = 0;
    for (int rep = 0; rep < 3; rep++) {
        jnl_state_t *st = NULL;
        double t0 = bd_mono_s();
        if (jnl_state_at(j, (uint64_t)n - 10, &st, &err) != 0)
            die("state", &err);
        double dt = bd_mono_s() - t0;
        count = jnl_state_count(st);
        size_t bytes = 0;
        for (size_t i = 0; i < count; i++) {
            char *s = json_dumps(jnl_state_get(st, i)->object, JSON_SORT_KEYS | JSON_INDENT(2));
            bytes += strlen(s);
            free(s);
        }
        double dt2 = bd_mono_s() - t0;
        jnl_state_free(st);
        if (dt < best)
            best = dt;
        if (dt2 < best_export)
            best_export = dt2;
        (void)bytes;
    }
    printf("BENCH journal_state_at_%dk %.3f s\n", n / 1000, best);
    printf("BENCH journal_export_at_%dk %.3f s\n", n / 1000, best_export);
    printf("BENCH journal_state_resources %zu resources\n", count);
    jnl_close(j);

    for (int i = 0; i < NOBJ; i++) {
        json_decref(objs[i]);
        free(recs[i]);
    }
    rm_rf(g_tmp);
    return 0;
}
