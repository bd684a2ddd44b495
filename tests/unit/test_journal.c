/* test_journal.c - the journal library: records, chain, indexes, folding, retention,
 * space limits, group commit, error cases and crash safety. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <setjmp.h>
#include <execinfo.h>
#include <signal.h>
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

#include <cmocka.h>

#include "journal.h"
#include "log.h"

#define APIV "bindy.firestoned.io/v1beta1"

/* ---- helpers ------------------------------------------------------------------------- */

static char g_tmp[512];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup_tmp(void **state)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof(g_tmp), "%s/test_journal.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(g_tmp) == NULL)
        return -1;
    return 0;
}

static int teardown_tmp(void **state)
{
    rm_rf(g_tmp);
    return 0;
}

static char *jpath(const char *name)
{
    static char buf[600];
    snprintf(buf, sizeof(buf), "%s/%s", g_tmp, name);
    return buf;
}

static jnl_t *open_new(const char *name, jnl_sync_t sync)
{
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = sync;
    int rc = jnl_open(jpath(name), &o, &j, &err);
    if (rc != 0)
        fail_msg("open %s: %s", name, err.msg);
    return j;
}

static jnl_t *open_ro(const char *name)
{
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;
    int rc = jnl_open(jpath(name), &o, &j, &err);
    if (rc != 0)
        fail_msg("open ro %s: %s", name, err.msg);
    return j;
}

static json_t *mkobj(const char *kind, const char *ns, const char *name, int gen, const char *val)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:i, s:{s:s}}, s:{s:s, s:i, s:[s,s]}, "
                     "s:{s:s}}",
                     "apiVersion", APIV, "kind", kind, "metadata", "name", name, "namespace", ns,
                     "uid", "uid-1234", "resourceVersion", "77", "generation", gen, "labels",
                     "app", "dns", "spec", "value", val, "ttl", 300, "list", "a", "b", "status",
                     "phase", "Ready");
}

static uint64_t append(jnl_t *j, jnl_type_t type, const char *kind, const char *ns,
                       const char *name, const char *val, uint64_t time)
{
    json_t *obj = type == JNL_DELETED || type >= JNL_RELIST_BEGIN ? NULL
                                                                   : mkobj(kind, ns, name, 1, val);
    jnl_event_t ev = {.time_ns = time,
                      .source = JNL_SRC_KUBERNETES,
                      .type = type,
                      .api_version = APIV,
                      .kind = kind,
                      .ns = ns,
                      .name = name,
                      .uid = "uid-1234",
                      .resource_version = "77",
                      .generation = 1,
                      .object = obj};
    uint64_t seq = 0;
    bd_err_t err;
    int rc = jnl_append_sync(j, &ev, &seq, &err);
    json_decref(obj);
    if (rc != 0)
        fail_msg("append: %s", err.msg);
    return seq;
}

/* Open the LMDB environment directly (the test plays the attacker / another tool). */
static MDB_env *raw_env(const char *dir)
{
    MDB_env *env = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 8);
    mdb_env_set_mapsize(env, 64u << 20);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    return env;
}

static void raw_edit(const char *dir, const char *db, const void *key, size_t klen,
                     void (*edit)(MDB_val *v, uint8_t *copy, size_t *len), bool del)
{
    MDB_env *env = raw_env(dir);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    if (del) {
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    } else {
        uint8_t *copy = malloc(v.mv_size + 16);
        memcpy(copy, v.mv_data, v.mv_size);
        size_t len = v.mv_size;
        edit(&v, copy, &len);
        MDB_val nv = {len, copy};
        assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
        free(copy);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void seqkey(uint8_t k[8], uint64_t seq)
{
    for (int i = 7; i >= 0; i--) {
        k[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

/* ---- codec ------------------------------------------------------------------------------ */

static json_t *roundtrip(json_t *obj, uint8_t **bytes, size_t *len)
{
    jnl_event_t ev = {.type = JNL_MODIFIED, .kind = "K", .name = "n", .object = obj};
    jnl_record_t *rec = NULL;
    bd_err_t err;
    assert_int_equal(jnl_record_encode(&ev, 7, 99, NULL, bytes, len, &err), 0);
    int rc = jnl_record_decode(*bytes, *len, 0, &rec, &err);
    if (rc != 0)
        fail_msg("decode: %s", err.msg);
    json_t *out = json_incref(rec->ev.object);
    assert_int_equal(rec->ev.seq, 7);
    assert_int_equal(rec->ev.time_ns, 99);
    jnl_record_free(rec);
    return out;
}

static void test_codec_lossless(void **state)
{
    json_t *obj = json_object();
    json_t *ints = json_array();
    static const json_int_t iv[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 2147483647,
                                    4294967295LL, 4294967296LL, INT64_MAX, -1, -31, -32, -33,
                                    -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
                                    INT64_MIN};
    for (size_t i = 0; i < sizeof(iv) / sizeof(iv[0]); i++)
        json_array_append_new(ints, json_integer(iv[i]));
    json_object_set_new(obj, "ints", ints);
    json_t *reals = json_array();
    static const double rv[] = {0.0, -0.0, 1.0, 1.5, -2.25, 1e300, 5e-324, 0.1, 1e15};
    for (size_t i = 0; i < sizeof(rv) / sizeof(rv[0]); i++)
        json_array_append_new(reals, json_real(rv[i]));
    json_object_set_new(obj, "reals", reals);
    json_object_set_new(obj, "unicode", json_string("ünïcødé 日本語 🎉 \xe2\x80\x8b"));
    json_object_set_new(obj, "nul", json_stringn("a\0b", 3));
    json_object_set_new(obj, "empty_s", json_string(""));
    json_object_set_new(obj, "empty_o", json_object());
    json_object_set_new(obj, "empty_a", json_array());
    json_object_set_new(obj, "t", json_true());
    json_object_set_new(obj, "f", json_false());
    json_object_set_new(obj, "n", json_null());
    json_object_set_new(obj, "numstr", json_string("123"));
    json_object_set_new(obj, "ключ", json_string("значение"));
    json_object_set_new(obj, "", json_string("empty key"));
    /* Strings around every length boundary of the encoding. */
    static const size_t lens[] = {31, 32, 255, 256, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *s = malloc(lens[i]);
        memset(s, 'x', lens[i]);
        char key[16];
        snprintf(key, sizeof(key), "s%zu", lens[i]);
        json_object_set_new(obj, key, json_stringn(s, lens[i]));
        free(s);
    }
    /* Nested, and containers around 15/16 and 65535/65536 elements. */
    json_t *deep = json_object(), *cur = deep;
    for (int i = 0; i < 100; i++) {
        json_t *n = json_object();
        json_object_set_new(cur, "d", n);
        json_object_set_new(cur, "arr", json_pack("[i,[],{}]", i));
        cur = n;
    }
    json_object_set_new(obj, "deep", deep);
    json_t *big = json_array(), *bigo = json_object();
    for (int i = 0; i < 65536; i++)
        json_array_append_new(big, json_integer(i));
    for (int i = 0; i < 16; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%02d", i);
        json_object_set_new(bigo, k, json_integer(i));
    }
    json_object_set_new(obj, "big", big);
    json_object_set_new(obj, "bigo", bigo);

    uint8_t *bytes = NULL;
    size_t len = 0;
    json_t *back = roundtrip(obj, &bytes, &len);
    assert_true(json_equal(obj, back));
    /* Type preservation: 1 stays integer, 1.0 stays real, "123" stays a string. */
    assert_true(json_is_integer(json_array_get(json_object_get(back, "ints"), 2)));
    assert_true(json_is_real(json_array_get(json_object_get(back, "reals"), 2)));
    assert_true(json_is_string(json_object_get(back, "numstr")));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(back, "ints"), 11)),
                     INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(back, "ints"), 22)),
                     INT64_MIN);
    double negz = json_real_value(json_array_get(json_object_get(back, "reals"), 1));
    assert_true(negz == 0.0 && signbit(negz));
    assert_int_equal(json_string_length(json_object_get(back, "nul")), 3);
    assert_int_equal(json_string_length(json_object_get(back, "s70000")), 70000);

    /* Canonical: the same object built in another key order encodes to the same bytes. */
    json_t *rev = json_object();
    const char *k;
    json_t *v;
    size_t nkeys = json_object_size(obj);
    const char **keys = calloc(nkeys, sizeof(*keys));
    size_t i = 0;
    json_object_foreach(obj, k, v) keys[i++] = k;
    for (size_t x = nkeys; x-- > 0;)
        json_object_set(rev, keys[x], json_object_get(obj, keys[x]));
    json_object_set_new(rev, "nul", json_stringn("a\0b", 3));
    free(keys);
    uint8_t *bytes2 = NULL;
    size_t len2 = 0;
    json_t *back2 = roundtrip(rev, &bytes2, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(bytes, bytes2, len);

    /* Re-encoding the decoded value gives the same bytes again. */
    uint8_t *bytes3 = NULL;
    size_t len3 = 0;
    json_t *back3 = roundtrip(back, &bytes3, &len3);
    assert_int_equal(len, len3);
    assert_memory_equal(bytes, bytes3, len);

    free(bytes);
    free(bytes2);
    free(bytes3);
    json_decref(back);
    json_decref(back2);
    json_decref(back3);
    json_decref(rev);
    json_decref(obj);
}

static void test_codec_layout(void **state)
{
    /* A small record, byte by byte, as documented in schema/journal-format.md. */
    json_t *obj = json_pack("{s:i, s:f, s:s}", "b", 1, "a", 0.5, "c", "x");
    jnl_event_t ev = {.source = JNL_SRC_MANIFESTS, .type = JNL_ADDED, .api_version = "v1",
                      .kind = "K", .ns = "", .name = "n", .uid = "", .resource_version = "",
                      .generation = -1, .object = obj};
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(jnl_record_encode(&ev, 1, 2, NULL, &b, &len, NULL), 0);
    static const uint8_t head[] = {0x9f, 0x01, 0x01, 0x02, 0xa9, 'm', 'a', 'n', 'i', 'f', 'e', 's',
                                   't', 's', 0xa5, 'A', 'D', 'D', 'E', 'D', 0xa2, 'v', '1', 0xa1,
                                   'K', 0xa0, 0xa1, 'n', 0xa0, 0xa0, 0xff,
                                   /* object: keys sorted a, b, c; 0.5 as float64 */
                                   0x83, 0xa1, 'a', 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0, 0xa1,
                                   'b', 0x01, 0xa1, 'c', 0xa1, 'x',
                                   /* prev_hash: bin8 32 zeros */
                                   0xc4, 0x20};
    assert_true(len == sizeof(head) + 32 + 34);
    assert_memory_equal(b, head, sizeof(head));
    static const uint8_t zero[32];
    assert_memory_equal(b + sizeof(head), zero, 32);
    assert_int_equal(b[len - 34], 0xc4);
    assert_int_equal(b[len - 33], 0x20);
    uint8_t h[32];
    assert_int_equal(jnl_record_hash(b, len, h), 0);
    assert_memory_equal(h, b + len - 32, 32);
    free(b);
    json_decref(obj);
}

/* A generic MessagePack decoder (msgpack-c) reads our records: the format is plain
 * MessagePack, and the values are what we wrote. */
static json_t *mp_to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(a, mp_to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            assert_int_equal(kv->key.type, MSGPACK_OBJECT_STR);
            json_object_setn_new(m, kv->key.via.str.ptr, kv->key.via.str.size, mp_to_json(&kv->val));
        }
        return m;
    }
    default:
        fail_msg("unexpected msgpack type %d", o->type);
    }
    return NULL;
}

static void test_codec_msgpack_c(void **state)
{
    json_t *obj = json_pack("{s:s, s:{s:i, s:I, s:f, s:b, s:n, s:[s,{}], s:s}}", "kind", "DNSZone",
                            "spec", "ttl", 300, "big", (json_int_t)-5000000000LL, "r", 2.5, "t", 1,
                            "z", "l", "x", "u", "ünï");
    jnl_event_t ev = {.source = JNL_SRC_RESTORE, .type = JNL_MODIFIED, .api_version = APIV,
                      .kind = "DNSZone", .ns = "dns", .name = "z", .uid = "u1",
                      .resource_version = "42", .generation = 3, .object = obj};
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(jnl_record_encode(&ev, 1234567, 1700000000000000000ull, NULL, &b, &len, NULL), 0);
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)b, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len); /* exactly one value */
    const msgpack_object *a = &u.data;
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(a->via.array.size, 15);
    const msgpack_object *f = a->via.array.ptr;
    assert_int_equal(f[0].via.u64, 1);
    assert_int_equal(f[1].via.u64, 1234567);
    assert_int_equal(f[2].via.u64, 1700000000000000000ull);
    assert_memory_equal(f[3].via.str.ptr, "restore", 7);
    assert_memory_equal(f[4].via.str.ptr, "MODIFIED", 8);
    assert_memory_equal(f[10].via.str.ptr, "42", 2);
    assert_int_equal(f[11].via.u64, 3);
    json_t *back = mp_to_json(&f[12]);
    assert_true(json_equal(back, obj));
    assert_int_equal(f[13].type, MSGPACK_OBJECT_BIN);
    assert_int_equal(f[13].via.bin.size, 32);
    assert_int_equal(f[14].via.bin.size, 32);
    /* The documented hash: SHA-256(prev_hash || bytes without the last 34). */
    uint8_t h[32];
    assert_int_equal(jnl_record_hash(b, len, h), 0);
    assert_memory_equal(h, f[14].via.bin.ptr, 32);
    json_decref(back);
    msgpack_unpacked_destroy(&u);
    free(b);
    json_decref(obj);
}

static void expect_bad(const uint8_t *buf, size_t len, int code, const char *needle)
{
    jnl_record_t *rec = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    int rc = jnl_record_decode(buf, len, 0, &rec, &err);
    assert_null(rec);
    assert_int_equal(rc, code);
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_codec_rejects(void **state)
{
    json_t *obj = json_pack("{s:i, s:s}", "a", 5, "b", "xy");
    jnl_event_t ev = {.type = JNL_ADDED, .kind = "K", .name = "n", .object = obj};
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(jnl_record_encode(&ev, 3, 4, NULL, &b, &len, NULL), 0);
    /* Locate the object: 0x82 0xa1 'a' 0x05 0xa1 'b' 0xa2 'x' 'y'. */
    size_t at = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (b[i] == 0x82 && b[i + 1] == 0xa1 && b[i + 2] == 'a') {
            at = i;
            break;
        }
    assert_true(at > 0);
    uint8_t *c = malloc(len + 8);

    /* Every truncation fails cleanly. */
    for (size_t n = 0; n < len; n++)
        expect_bad(b, n, n == 0 ? BD_ECORRUPT : BD_ECORRUPT, NULL);
    /* Trailing garbage. */
    memcpy(c, b, len);
    c[len] = 0;
    expect_bad(c, len + 1, BD_ECORRUPT, "trailing");
    /* Unsorted keys: swap "a" and "b". */
    memcpy(c, b, len);
    c[at + 2] = 'b';
    expect_bad(c, len, BD_ECORRUPT, "canonical");
    /* Duplicate keys. */
    memcpy(c, b, len);
    c[at + 5] = 'a';
    expect_bad(c, len, BD_ECORRUPT, "canonical");
    /* Invalid UTF-8 in a value. */
    memcpy(c, b, len);
    c[at + 7] = 0xff;
    expect_bad(c, len, BD_ECORRUPT, "UTF-8");
    /* Non-canonical integer: 5 as uint8 (cc 05) instead of fixint. */
    memcpy(c, b, at + 3);
    c[at + 3] = 0xcc;
    c[at + 4] = 0x05;
    memcpy(c + at + 5, b + at + 4, len - at - 4);
    expect_bad(c, len + 1, BD_ECORRUPT, "non-canonical");
    /* float32 */
    memcpy(c, b, at + 3);
    c[at + 3] = 0xca;
    memset(c + at + 4, 0, 4);
    memcpy(c + at + 8, b + at + 4, len - at - 4);
    expect_bad(c, len + 4, BD_ECORRUPT, "float32");
    /* Another format version. */
    memcpy(c, b, len);
    c[1] = 0x02;
    expect_bad(c, len, BD_EVERSION, "version 2");
    /* Not a record at all. */
    expect_bad((const uint8_t *)"hello world", 11, BD_ECORRUPT, NULL);
    /* Random byte flips never crash (most fail; some only change a value). */
    srand(1);
    for (int i = 0; i < 20000; i++) {
        memcpy(c, b, len);
        c[rand() % len] ^= (uint8_t)(1u << (rand() % 8));
        jnl_record_t *rec = NULL;
        if (jnl_record_decode(c, len, 0, &rec, NULL) == 0)
            jnl_record_free(rec);
    }
    /* Encoding refuses what the decoder would refuse. */
    jnl_event_t bad = {.type = JNL_ADDED, .kind = "K", .name = "n", .object = NULL};
    bd_err_t err;
    uint8_t *x = NULL;
    size_t xl = 0;
    assert_int_equal(jnl_record_encode(&bad, 1, 1, NULL, &x, &xl, &err), BD_EINVAL);
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < JNL_MAX_DEPTH + 5; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    json_t *o = json_pack("{s:O}", "d", deep);
    bad.object = o;
    assert_int_equal(jnl_record_encode(&bad, 1, 1, NULL, &x, &xl, &err), BD_ETOOBIG);
    assert_null(x);
    json_decref(o);
    json_decref(deep);
    free(c);
    free(b);
    json_decref(obj);
}

/* ---- journal basics ------------------------------------------------------------------------ */

static void test_append_read(void **state)
{
    jnl_t *j = open_new("basic", JNL_SYNC_DURABLE);
    bd_err_t err;
    uint8_t id1[JNL_ID_LEN], id2[JNL_ID_LEN];
    assert_int_equal(jnl_id(j, id1, &err), 0);
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "zone-%d", i % 10);
        uint64_t s = append(j, i < 10 ? JNL_ADDED : JNL_MODIFIED, "DNSZone", "dns", name, "v", 0);
        assert_int_equal(s, (uint64_t)i + 1);
    }
    assert_int_equal(jnl_committed_seq(j), 100);
    jnl_record_t *r = NULL;
    assert_int_equal(jnl_get(j, 42, 0, &r, &err), 0);
    assert_int_equal(r->ev.seq, 42);
    assert_string_equal(r->ev.kind, "DNSZone");
    assert_string_equal(r->ev.ns, "dns");
    assert_string_equal(r->ev.name, "zone-1");
    assert_string_equal(r->ev.api_version, APIV);
    assert_int_equal(r->ev.type, JNL_MODIFIED);
    assert_int_equal(r->ev.source, JNL_SRC_KUBERNETES);
    assert_non_null(r->ev.object);
    assert_string_equal(json_string_value(json_object_get(r->ev.object, "kind")), "DNSZone");
    jnl_record_t *p = NULL;
    assert_int_equal(jnl_get(j, 41, JNL_DECODE_NO_OBJECT, &p, &err), 0);
    assert_null(p->ev.object);
    assert_memory_equal(p->hash, r->prev_hash, JNL_HASH_LEN);
    assert_true(p->ev.time_ns <= r->ev.time_ns);
    jnl_record_free(p);
    jnl_record_free(r);
    assert_int_equal(jnl_get(j, 101, 0, &r, &err), BD_ENOTFOUND);
    assert_null(r);
    assert_int_equal(jnl_get(j, 0, 0, &r, &err), BD_ENOTFOUND);

    uint64_t first, last;
    assert_int_equal(jnl_bounds(j, &first, &last, &err), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 100);

    /* Iterate from 95; then more events appear and the iterator sees them. */
    jnl_iter_t *it = NULL;
    assert_int_equal(jnl_iter_new(j, 95, JNL_DECODE_NO_OBJECT, &it, &err), 0);
    int n = 0;
    while (jnl_iter_next(it, &r, &err) == 0) {
        assert_int_equal(r->ev.seq, 95 + (uint64_t)n);
        n++;
        jnl_record_free(r);
    }
    assert_int_equal(n, 6);
    append(j, JNL_DELETED, "DNSZone", "dns", "zone-3", NULL, 0);
    assert_int_equal(jnl_iter_next(it, &r, &err), 0);
    assert_int_equal(r->ev.seq, 101);
    assert_int_equal(r->ev.type, JNL_DELETED);
    assert_null(r->ev.object);
    jnl_record_free(r);
    assert_int_equal(jnl_iter_next(it, &r, &err), BD_ENOTFOUND);
    jnl_iter_free(it);

    /* Metadata: resume points and watermarks are committed with the queue. */
    char *rv = NULL;
    assert_int_equal(jnl_resume_get(j, "dnszones", &rv, &err), BD_ENOTFOUND);
    assert_int_equal(jnl_resume_set(j, "dnszones", "12345", &err), 0);
    assert_int_equal(jnl_watermark_set(j, "bind:primary-0", 99, &err), 0);
    assert_int_equal(jnl_flush(j, &err), 0);
    assert_int_equal(jnl_resume_get(j, "dnszones", &rv, &err), 0);
    assert_string_equal(rv, "12345");
    free(rv);
    uint64_t wm = 0;
    assert_int_equal(jnl_watermark_get(j, "bind:primary-0", &wm, &err), 0);
    assert_int_equal(wm, 99);
    assert_int_equal(jnl_watermark_get(j, "other", &wm, &err), 0);
    assert_int_equal(wm, 0);

    /* Bad appends. */
    jnl_event_t bad = {.type = JNL_ADDED, .kind = "K", .name = "x"};
    uint64_t s = 7;
    assert_int_equal(jnl_append(j, &bad, &s, &err), BD_EINVAL);
    assert_int_equal(s, 0);
    bad.type = (jnl_type_t)42;
    assert_int_equal(jnl_append(j, &bad, &s, &err), BD_EINVAL);
    jnl_close(j);

    /* Reopen: same id, seqs continue, read-only refuses appends. */
    j = open_new("basic", JNL_SYNC_DURABLE);
    assert_int_equal(jnl_id(j, id2, &err), 0);
    assert_memory_equal(id1, id2, JNL_ID_LEN);
    assert_int_equal(append(j, JNL_ADDED, "DNSZone", "dns", "zone-x", "v", 0), 102);
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.events, 102);
    jnl_close(j);
    j = open_ro("basic");
    jnl_event_t ok = {.type = JNL_RELIST_BEGIN, .kind = "DNSZone"};
    assert_int_equal(jnl_append(j, &ok, NULL, &err), BD_EINVAL);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.last, 102);
    jnl_close(j);
}

static void test_indexes_history(void **state)
{
    jnl_t *j = open_new("idx", JNL_SYNC_NOSYNC);
    bd_err_t err;
    const uint64_t T = 1700000000000000000ull;
    append(j, JNL_ADDED, "DNSZone", "dns", "a", "1", T + 1000);          /* 1 */
    append(j, JNL_ADDED, "DNSZone", "dns", "b", "1", T + 2000);          /* 2 */
    append(j, JNL_ADDED, "ARecord", "dns", "a", "1", T + 3000);          /* 3 */
    append(j, JNL_MODIFIED, "DNSZone", "dns", "a", "2", T + 4000);       /* 4 */
    append(j, JNL_ADDED, "DNSZone", "other", "a", "1", T + 5000);        /* 5 */
    append(j, JNL_DELETED, "DNSZone", "dns", "a", NULL, T + 6000);       /* 6 */
    append(j, JNL_ADDED, "DNSZone", "dns", "a", "3", T + 6000);          /* 7: same time */
    append(j, JNL_ADDED, "DNSZone", "dns", "ab", "1", 1);                /* 8: clamped */

    jnl_record_t *r = NULL;
    assert_int_equal(jnl_get(j, 8, JNL_DECODE_NO_OBJECT, &r, &err), 0);
    assert_int_equal(r->ev.time_ns, T + 6000); /* never before the previous event */
    jnl_record_free(r);

    uint64_t seq = 99;
    assert_int_equal(jnl_seq_at_time(j, T, &seq, &err), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(jnl_seq_at_time(j, T + 1000, &seq, &err), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(jnl_seq_at_time(j, T + 3999, &seq, &err), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(jnl_seq_at_time(j, T + 6000, &seq, &err), 0);
    assert_int_equal(seq, 8);
    assert_int_equal(jnl_seq_at_time(j, UINT64_MAX, &seq, &err), 0);
    assert_int_equal(seq, 8);

    uint64_t *seqs = NULL;
    size_t n = 0;
    assert_int_equal(jnl_history(j, NULL, "DNSZone", "dns", "a", &seqs, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 4);
    assert_int_equal(seqs[2], 6);
    assert_int_equal(seqs[3], 7);
    free(seqs);
    /* kind is case-insensitive; "a" does not match "ab"; apiVersion filter. */
    assert_int_equal(jnl_history(j, NULL, "dnszone", "dns", "a", &seqs, &n, &err), 0);
    assert_int_equal(n, 4);
    free(seqs);
    assert_int_equal(jnl_history(j, "v1", "DNSZone", "dns", "a", &seqs, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(seqs);
    assert_int_equal(jnl_history(j, APIV, "ARecord", "dns", "a", &seqs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(seqs[0], 3);
    free(seqs);
    assert_int_equal(jnl_history(j, NULL, "DNSZone", "none", "a", &seqs, &n, &err), 0);
    assert_int_equal(n, 0);
    jnl_close(j);
}

static void test_state_fold(void **state)
{
    jnl_t *j = open_new("state", JNL_SYNC_NOSYNC);
    bd_err_t err;
    const uint64_t T = 1700000000000000000ull;
    append(j, JNL_ADDED, "DNSZone", "dns", "b", "1", T + 10);         /* 1 */
    append(j, JNL_ADDED, "DNSZone", "dns", "a", "1", T + 20);         /* 2 */
    append(j, JNL_RELIST_BEGIN, "DNSZone", "", "", NULL, T + 30);     /* 3 */
    append(j, JNL_ADDED, "ARecord", "dns", "www", "1", T + 40);       /* 4 */
    append(j, JNL_RELIST_END, "DNSZone", "", "", NULL, T + 50);       /* 5 */
    append(j, JNL_MODIFIED, "DNSZone", "dns", "b", "2", T + 60);      /* 6 */
    append(j, JNL_DELETED, "DNSZone", "dns", "a", NULL, T + 70);      /* 7 */

    jnl_state_t *st = NULL;
    assert_int_equal(jnl_state_at(j, 0, &st, &err), 0);
    assert_int_equal(jnl_state_count(st), 0);
    jnl_state_free(st);

    assert_int_equal(jnl_state_at(j, 4, &st, &err), 0);
    assert_int_equal(jnl_state_seq(st), 4);
    assert_int_equal(jnl_state_count(st), 3);
    /* Sorted by apiVersion, kind, namespace, name. */
    assert_string_equal(jnl_state_get(st, 0)->kind, "ARecord");
    assert_string_equal(jnl_state_get(st, 1)->name, "a");
    assert_string_equal(jnl_state_get(st, 2)->name, "b");
    assert_null(jnl_state_get(st, 3));
    const jnl_event_t *e = jnl_state_find(st, APIV, "DNSZone", "dns", "b");
    assert_non_null(e);
    assert_int_equal(e->seq, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e->object, "spec"), "value")),
                        "1");
    jnl_state_free(st);

    assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &st, &err), 0);
    assert_int_equal(jnl_state_seq(st), 7);
    assert_int_equal(jnl_state_count(st), 2);
    assert_null(jnl_state_find(st, APIV, "DNSZone", "dns", "a"));
    e = jnl_state_find(st, APIV, "DNSZone", "dns", "b");
    assert_int_equal(e->seq, 6);
    assert_int_equal(e->type, JNL_MODIFIED);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e->object, "spec"), "value")),
                        "2");
    jnl_state_free(st);

    /* By time: between events 5 (T+50) and 6 (T+60). */
    assert_int_equal(jnl_state_at_time(j, T + 55, &st, &err), 0);
    assert_int_equal(jnl_state_seq(st), 5);
    assert_int_equal(jnl_state_count(st), 3);
    jnl_state_free(st);

    assert_int_equal(jnl_state_at(j, 8, &st, &err), BD_ENOTFOUND);
    assert_null(st);
    assert_non_null(strstr(err.msg, "after the last event"));
    jnl_close(j);
}

/* ---- verification and tampering ------------------------------------------------------------- */

static void flip_byte(MDB_val *v, uint8_t *copy, size_t *len)
{
    /* Inside the object: "Ready" -> "Reade" keeps the record decodable. */
    for (size_t i = 0; i + 5 <= *len; i++)
        if (memcmp(copy + i, "Ready", 5) == 0) {
            copy[i + 4] = 'e';
            return;
        }
    fail_msg("no byte to flip");
}

static void cut_tail(MDB_val *v, uint8_t *copy, size_t *len)
{
    *len -= 10;
}

static void make_chain(const char *name, int n)
{
    jnl_t *j = open_new(name, JNL_SYNC_NOSYNC);
    for (int i = 0; i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "o%d", i % 7);
        append(j, i < 7 ? JNL_ADDED : JNL_MODIFIED, "DNSZone", "dns", nm, "v", 0);
    }
    jnl_close(j);
}

static void expect_verify_fails(const char *name, uint64_t bad, const char *needle)
{
    jnl_t *j = open_ro(name);
    jnl_verify_report_t rep;
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(jnl_verify(j, &rep, &err), BD_ECORRUPT);
    assert_int_equal(rep.bad_seq, bad);
    char want[64];
    snprintf(want, sizeof(want), "seq %llu", (unsigned long long)bad);
    if (strstr(err.msg, want) == NULL || (needle && strstr(err.msg, needle) == NULL))
        fail_msg("verify message \"%s\" lacks \"%s\" / \"%s\"", err.msg, want, needle ? needle : "");
    jnl_close(j);
}

static void test_verify_tamper(void **state)
{
    uint8_t k[8];
    bd_err_t err;
    make_chain("chain", 60);
    jnl_t *j = open_ro("chain");
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.first, 1);
    assert_int_equal(rep.last, 60);
    assert_int_equal(rep.events, 60);
    assert_int_equal(rep.anchor_seq, 0);
    jnl_close(j);

    /* One altered byte in the object of seq 20. */
    make_chain("t1", 60);
    seqkey(k, 20);
    raw_edit(jpath("t1"), "events", k, 8, flip_byte, false);
    expect_verify_fails("t1", 20, "altered");
    /* The tampered record still decodes, but the reader can tell from verify. */

    /* A truncated record. */
    make_chain("t2", 60);
    seqkey(k, 33);
    raw_edit(jpath("t2"), "events", k, 8, cut_tail, false);
    expect_verify_fails("t2", 33, NULL);
    j = open_ro("t2");
    jnl_record_t *r = NULL;
    assert_int_equal(jnl_get(j, 33, 0, &r, &err), BD_ECORRUPT);
    assert_non_null(strstr(err.msg, "seq 33"));
    jnl_state_t *st = NULL;
    assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &st, &err), BD_ECORRUPT);
    assert_non_null(strstr(err.msg, "seq 33"));
    jnl_close(j);

    /* A missing event in the middle, and a missing last event. */
    make_chain("t3", 60);
    seqkey(k, 40);
    raw_edit(jpath("t3"), "events", k, 8, NULL, true);
    expect_verify_fails("t3", 40, "missing");
    make_chain("t4", 60);
    seqkey(k, 60);
    raw_edit(jpath("t4"), "events", k, 8, NULL, true);
    expect_verify_fails("t4", 60, "missing");
}

/* ---- verification in parallel ranges -------------------------------------------------------- */

/* A journal of n events appended without waiting (a few flushes), for the big cases. */
static void make_big(const char *name, int n)
{
    jnl_t *j = open_new(name, JNL_SYNC_NOSYNC);
    bd_err_t err;
    for (int i = 0; i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "o%d", i % 97);
        json_t *obj = mkobj("DNSZone", "dns", nm, i, "v");
        jnl_event_t ev = {.source = JNL_SRC_KUBERNETES, .type = i < 97 ? JNL_ADDED : JNL_MODIFIED,
                          .api_version = APIV, .kind = "DNSZone", .ns = "dns", .name = nm,
                          .generation = i, .object = obj};
        int rc = jnl_append(j, &ev, NULL, &err);
        json_decref(obj);
        if (rc == BD_EBUSY) {
            assert_int_equal(jnl_flush(j, &err), 0);
            i--;
            continue;
        }
        if (rc != 0)
            fail_msg("append: %s", err.msg);
    }
    assert_int_equal(jnl_flush(j, &err), 0);
    jnl_close(j);
}

/* Copy journal src to dst (data file only: the lock file is made again). */
static void copy_journal(const char *src, const char *dst)
{
    char from[700], to[700];
    snprintf(from, sizeof(from), "%s/data.mdb", jpath(src));
    assert_int_equal(mkdir(jpath(dst), 0750), 0);
    snprintf(to, sizeof(to), "%s/data.mdb", jpath(dst));
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void tamper(const char *name, uint64_t seq, void (*edit)(MDB_val *, uint8_t *, size_t *),
                   bool del)
{
    uint8_t k[8];
    seqkey(k, seq);
    raw_edit(jpath(name), "events", k, 8, edit, del);
}

/* Re-encode the record with a prev_hash that is not its predecessor's hash: the record is
 * valid on its own (its hash matches its bytes), only the link is broken. */
static void relink(MDB_val *v, uint8_t *copy, size_t *len)
{
    jnl_record_t *rec = NULL;
    bd_err_t err;
    uint8_t bogus[JNL_HASH_LEN], *buf = NULL;
    size_t blen = 0;
    assert_int_equal(jnl_record_decode(copy, *len, 0, &rec, &err), 0);
    memset(bogus, 0x5a, sizeof(bogus));
    assert_int_equal(jnl_record_encode(&rec->ev, rec->ev.seq, rec->ev.time_ns, bogus, &buf,
                                       &blen, &err), 0);
    assert_int_equal(blen, *len);
    memcpy(copy, buf, blen);
    free(buf);
    jnl_record_free(rec);
}

static void test_verify_parallel(void **state)
{
    enum { N = 20000 };
    make_big("big", N);
    jnl_t *j = open_ro("big");
    jnl_verify_report_t rep;
    bd_err_t err;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.first, 1);
    assert_int_equal(rep.last, N);
    assert_int_equal(rep.events, N);
    assert_int_equal(rep.bad_seq, 0);
    jnl_close(j);

    /* One altered record in the middle of a large journal. */
    copy_journal("big", "mid");
    tamper("mid", 10007, flip_byte, false);
    expect_verify_fails("mid", 10007, "altered");

    /* Several ranges are bad (altered records, a missing one, a truncated one): the report
     * names the first bad seq whatever order the workers finish in. */
    copy_journal("big", "many");
    tamper("many", 17777, flip_byte, false);
    tamper("many", 12001, NULL, true);
    tamper("many", 6500, cut_tail, false);
    tamper("many", 3333, flip_byte, false);
    tamper("many", 2050, flip_byte, false);
    tamper("many", 19999, flip_byte, false);
    for (int round = 0; round < 5; round++)
        expect_verify_fails("many", 2050, "altered");
    /* ... and once the first is mended (a copy without it), the next one. */
    copy_journal("big", "many2");
    tamper("many2", 17777, flip_byte, false);
    tamper("many2", 12001, NULL, true);
    tamper("many2", 6500, cut_tail, false);
    expect_verify_fails("many2", 6500, NULL);

    /* A broken link where one range meets the next, and one inside a range, with altered
     * records after both. */
    static const uint64_t links[] = {1025, 2049, 4096, 4097, 9001};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "link%zu", i);
        copy_journal("big", name);
        tamper(name, links[i], relink, false);
        tamper(name, links[i] + 3000, flip_byte, false);
        tamper(name, 15000, NULL, true);
        char want[64];
        snprintf(want, sizeof(want), "does not match the hash of seq %llu",
                 (unsigned long long)(links[i] - 1));
        expect_verify_fails(name, links[i], want);
    }

    /* The last event altered, and the last one missing (the head names it). */
    copy_journal("big", "tail");
    tamper("tail", N, flip_byte, false);
    expect_verify_fails("tail", N, "altered");
    copy_journal("big", "tail2");
    tamper("tail2", N, NULL, true);
    expect_verify_fails("tail2", N, "missing");
}

typedef struct appender {
    jnl_t *j;
    int id, n;
    int rc;
    uint64_t last_seq;
} appender_t;

static void *appender_main(void *arg)
{
    appender_t *a = arg;
    bd_err_t err;
    char nm[32], target[32];
    snprintf(nm, sizeof(nm), "t%d", a->id);
    snprintf(target, sizeof(target), "thread:%d", a->id);
    for (int i = 0; i < a->n && a->rc == 0; i++) {
        json_t *obj = mkobj("DNSZone", "dns", nm, i, "value");
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone",
                          .ns = "dns", .name = nm, .generation = i, .object = obj};
        uint64_t seq = 0;
        int rc = jnl_append(a->j, &ev, &seq, &err);
        json_decref(obj);
        if (rc == BD_EBUSY) {
            jnl_flush(a->j, NULL);
            i--;
            continue;
        }
        if (rc == 0 && seq <= a->last_seq)
            rc = BD_EINTERNAL; /* seqs of one thread must increase */
        a->last_seq = seq;
        /* A meta update queued behind the event: never ahead of it. */
        if (rc == 0 && i % 50 == 49)
            rc = jnl_watermark_set(a->j, target, seq, &err);
        if (rc == 0 && i % 500 == 499)
            rc = jnl_flush(a->j, &err);
        a->rc = rc;
    }
    if (a->rc == 0)
        a->rc = jnl_watermark_set(a->j, target, a->last_seq, &err);
    return NULL;
}

/* Appends from several threads through the sealer and the writer with a small batch size
 * (the queue is longer than a batch), verified while they run: every verify sees a chain
 * that proves, and at the end every seq is there once, chained, with its watermark. */
static void test_append_threads_verify(void **state)
{
    enum { T = 4, PER = 3000 };
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    o.batch_max = 16;
    o.batch_ms = 1;
    assert_int_equal(jnl_open(jpath("threads"), &o, &j, &err), 0);
    appender_t a[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        a[t] = (appender_t){.j = j, .id = t, .n = PER};
        assert_int_equal(pthread_create(&th[t], NULL, appender_main, &a[t]), 0);
    }
    int verifies = 0;
    uint64_t prev_last = 0;
    for (;;) {
        jnl_verify_report_t rep;
        int rc = jnl_verify(j, &rep, &err);
        if (rc != 0)
            fail_msg("verify while appending: %s", err.msg);
        assert_true(rep.last >= prev_last);
        prev_last = rep.last;
        verifies++;
        if (rep.last >= (uint64_t)T * PER)
            break;
        usleep(2000);
    }
    for (int t = 0; t < T; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(a[t].rc, 0);
    }
    assert_int_equal(jnl_flush(j, &err), 0);
    assert_int_equal(jnl_committed_seq(j), (uint64_t)T * PER);
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.events, (uint64_t)T * PER);
    for (int t = 0; t < T; t++) {
        char nm[32], target[32];
        snprintf(nm, sizeof(nm), "t%d", t);
        snprintf(target, sizeof(target), "thread:%d", t);
        uint64_t *seqs = NULL, wm = 0;
        size_t n = 0;
        assert_int_equal(jnl_history(j, APIV, "DNSZone", "dns", nm, &seqs, &n, &err), 0);
        assert_int_equal(n, PER);
        assert_int_equal(seqs[n - 1], a[t].last_seq);
        free(seqs);
        assert_int_equal(jnl_watermark_get(j, target, &wm, &err), 0);
        assert_int_equal(wm, a[t].last_seq);
    }
    jnl_close(j);
    print_message("append threads: %d verifies while appending\n", verifies);
}

/* History through the object index, in a journal of the current layout and in one of the
 * layout before the epoch shift was recorded (keys under seq >> 12, no meta entry): both
 * find every version, and appends to the older journal keep its layout. */
static void history_of(jnl_t *j, const char *name, size_t want)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    bd_err_t err;
    assert_int_equal(jnl_history(j, APIV, "DNSZone", "dns", name, &seqs, &n, &err), 0);
    assert_int_equal(n, want);
    for (size_t i = 1; i < n; i++)
        assert_true(seqs[i] == seqs[i - 1] + 7); /* every 7th event is this object's */
    free(seqs);
}

static void append_round(jnl_t *j, int from, int to)
{
    bd_err_t err;
    for (int i = from; i < to; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "o%d", i % 7);
        json_t *obj = mkobj("DNSZone", "dns", nm, i, "v");
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone",
                          .ns = "dns", .name = nm, .object = obj};
        assert_int_equal(jnl_append(j, &ev, NULL, &err), 0);
        json_decref(obj);
    }
    assert_int_equal(jnl_flush(j, &err), 0);
}

static void test_object_index_epochs(void **state)
{
    jnl_t *j = open_new("epochs", JNL_SYNC_NOSYNC);
    append_round(j, 0, 7000); /* seqs 1..7000: epochs 0..6 of 1024 */
    history_of(j, "o3", 1000);
    jnl_close(j);

    /* the shift is in meta; rewrite the journal to the older layout */
    MDB_env *env = raw_env(jpath("epochs"));
    MDB_txn *txn;
    MDB_dbi meta, obj;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, "object", 0, &obj), 0);
    MDB_val k = {strlen("object_epoch_shift"), "object_epoch_shift"}, v;
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    assert_int_equal(v.mv_size, 1);
    assert_int_equal(*(const uint8_t *)v.mv_data, 10);
    assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
    size_t nkeys = 0;
    uint8_t(*keys)[128] = calloc(8000, sizeof(*keys));
    size_t *lens = calloc(8000, sizeof(*lens));
    MDB_cursor *cur;
    assert_int_equal(mdb_cursor_open(txn, obj, &cur), 0);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        assert_true(nkeys < 8000 && k.mv_size <= 128);
        memcpy(keys[nkeys], k.mv_data, k.mv_size);
        lens[nkeys++] = k.mv_size;
    }
    mdb_cursor_close(cur);
    assert_int_equal(nkeys, 7000);
    assert_int_equal(mdb_drop(txn, obj, 0), 0);
    for (size_t i = 0; i < nkeys; i++) {
        uint64_t seq = 0;
        for (int b = 0; b < 8; b++)
            seq = seq << 8 | keys[i][lens[i] - 8 + b];
        seqkey(keys[i], seq >> 12);
        MDB_val nk = {lens[i], keys[i]}, nv = {0, ""};
        assert_int_equal(mdb_put(txn, obj, &nk, &nv, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(keys);
    free(lens);

    jnl_t *ro = open_ro("epochs");
    history_of(ro, "o3", 1000);
    jnl_close(ro);
    jnl_opts_t o;
    bd_err_t err;
    jnl_opts_init(&o);
    assert_int_equal(jnl_open(jpath("epochs"), &o, &j, &err), 0);
    append_round(j, 7000, 14000); /* written in the journal's own layout */
    history_of(j, "o3", 2000);
    /* pruning removes the index entries of what it folds: none is left behind */
    jnl_retention_t pol = {.max_events = 3500};
    assert_int_equal(jnl_retain(j, &pol, NULL, &err), 0);
    uint64_t first = 0, last = 0;
    assert_int_equal(jnl_bounds(j, &first, &last, &err), 0);
    assert_true(first > 1);
    jnl_close(j);
    env = raw_env(jpath("epochs"));
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "object", 0, &obj), 0);
    MDB_stat ms;
    assert_int_equal(mdb_stat(txn, obj, &ms), 0);
    assert_int_equal(ms.ms_entries, last - first + 1);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* ---- checkpoints and retention -------------------------------------------------------------- */

static void test_checkpoint_retention(void **state)
{
    jnl_t *j = open_new("ret", JNL_SYNC_NOSYNC);
    bd_err_t err;
    const uint64_t T = 1600000000000000000ull;
    for (int i = 0; i < 300; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "o%d", i % 17);
        jnl_type_t t = i < 17 ? JNL_ADDED : (i % 29 == 0 ? JNL_DELETED : JNL_MODIFIED);
        if (t == JNL_MODIFIED && i % 29 == 1)
            t = JNL_ADDED;
        char val[16];
        snprintf(val, sizeof(val), "%d", i);
        append(j, t, "DNSZone", "dns", nm, val, T + (uint64_t)i * 1000000000ull);
    }
    jnl_state_t *before = NULL, *mid = NULL;
    assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &before, &err), 0);
    assert_int_equal(jnl_state_at(j, 250, &mid, &err), 0);

    /* A checkpoint that prunes nothing, then state through it. */
    assert_int_equal(jnl_checkpoint(j, 100, 0, &err), 0);
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.checkpoints, 1);
    assert_int_equal(rep.anchor_seq, 0);

    /* Keep at most 50 events: checkpoint at 250, events 1..250 deleted. */
    uint64_t ck = 0;
    jnl_retention_t pol = {.max_events = 50};
    assert_int_equal(jnl_retain(j, &pol, &ck, &err), 0);
    assert_int_equal(ck, 250);
    uint64_t first, last;
    assert_int_equal(jnl_bounds(j, &first, &last, &err), 0);
    assert_int_equal(first, 251);
    assert_int_equal(last, 300);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.anchor_seq, 250);
    assert_int_equal(rep.first, 251);
    assert_int_equal(rep.events, 50);
    assert_int_equal(rep.checkpoints, 1); /* the one at 100 went with the events */

    uint8_t anchor[JNL_HASH_LEN];
    uint64_t cks = 0, ckt = 0;
    assert_int_equal(jnl_checkpoint_latest(j, &cks, &ckt, anchor, &err), 0);
    assert_int_equal(cks, 250);
    assert_int_equal(ckt, T + 249 * 1000000000ull);

    jnl_state_t *after = NULL, *mid2 = NULL;
    assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &after, &err), 0);
    assert_int_equal(jnl_state_at(j, 250, &mid2, &err), 0);
    assert_int_equal(jnl_state_count(before), jnl_state_count(after));
    assert_int_equal(jnl_state_count(mid), jnl_state_count(mid2));
    for (size_t i = 0; i < jnl_state_count(before); i++) {
        const jnl_event_t *a = jnl_state_get(before, i), *b = jnl_state_get(after, i);
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->seq, b->seq);
        assert_int_equal(a->type, b->type);
        assert_true(json_equal(a->object, b->object));
    }
    for (size_t i = 0; i < jnl_state_count(mid); i++)
        assert_true(json_equal(jnl_state_get(mid, i)->object, jnl_state_get(mid2, i)->object));
    jnl_state_free(before);
    jnl_state_free(after);
    jnl_state_free(mid);
    jnl_state_free(mid2);

    jnl_state_t *st = NULL;
    assert_int_equal(jnl_state_at(j, 100, &st, &err), BD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "before the oldest retained point"));
    uint64_t seq;
    assert_int_equal(jnl_seq_at_time(j, T, &seq, &err), BD_ENOTFOUND);
    assert_int_equal(jnl_seq_at_time(j, T + 249500000000ull, &seq, &err), 0);
    assert_int_equal(seq, 250);

    /* History only shows retained events. */
    uint64_t *seqs = NULL;
    size_t n = 0;
    assert_int_equal(jnl_history(j, NULL, "DNSZone", "dns", "o3", &seqs, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_true(seqs[i] > 250);
    free(seqs);

    /* The chain continues from the anchor. */
    append(j, JNL_MODIFIED, "DNSZone", "dns", "o1", "new", 0);
    jnl_close(j);
    j = open_new("ret", JNL_SYNC_NOSYNC);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.last, 301);

    /* Age: everything older than ~now-1h goes (all events have 2020 times but the last). */
    pol = (jnl_retention_t){.max_age_ns = 3600ull * 1000000000ull};
    assert_int_equal(jnl_retain(j, &pol, &ck, &err), 0);
    assert_int_equal(ck, 300);
    /* Size: keep at most one record's worth. */
    for (int i = 0; i < 5; i++)
        append(j, JNL_MODIFIED, "DNSZone", "dns", "o1", "x", 0);
    pol = (jnl_retention_t){.max_bytes = 1};
    assert_int_equal(jnl_retain(j, &pol, &ck, &err), 0);
    assert_int_equal(ck, 306);
    assert_int_equal(jnl_bounds(j, &first, &last, &err), 0);
    assert_int_equal(first, 0); /* everything folded into the checkpoint */
    assert_int_equal(last, 306); /* ... but the last committed seq is still known */
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.anchor_seq, 306);
    assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &st, &err), 0);
    assert_int_equal(jnl_state_seq(st), 306);
    assert_true(jnl_state_count(st) > 0);
    jnl_state_free(st);
    assert_int_equal(append(j, JNL_ADDED, "DNSZone", "dns", "fresh", "x", 0), 307);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.first, 307);
    /* Nothing to do. */
    pol = (jnl_retention_t){.max_events = 1000};
    assert_int_equal(jnl_retain(j, &pol, &ck, &err), 0);
    assert_int_equal(ck, 0);
    jnl_close(j);
}

/* ---- space limit ------------------------------------------------------------------------------ */

static void test_space_limit(void **state)
{
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    o.map_size = 1u << 20;
    o.map_limit = 4u << 20;
    bd_log_set_level(BD_LOG_ERROR); /* the 90% warning is expected */
    assert_int_equal(jnl_open(jpath("full"), &o, &j, &err), 0);
    char *big = malloc(20000);
    memset(big, 'z', 19999);
    big[19999] = 0;
    int rc = 0, n = 0;
    uint64_t lastok = 0;
    for (n = 0; n < 1000; n++) {
        char nm[16];
        /* Few live objects (a small state), many versions (a long history). */
        snprintf(nm, sizeof(nm), "o%d", n % 5);
        json_t *obj = mkobj("DNSZone", "dns", nm, 1, big);
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone", .ns = "dns",
                          .name = nm, .object = obj};
        uint64_t s;
        rc = jnl_append_sync(j, &ev, &s, &err);
        json_decref(obj);
        if (rc != 0)
            break;
        lastok = s;
    }
    assert_int_equal(rc, BD_EFULL);
    assert_non_null(strstr(err.msg, "size limit"));
    assert_true(lastok > 50);
    /* Sticky: the next append fails at once. */
    jnl_event_t ev = {.type = JNL_RELIST_BEGIN, .kind = "DNSZone"};
    assert_int_equal(jnl_append(j, &ev, NULL, &err), BD_EFULL);
    /* Reads go on, the journal verifies, stats tell. */
    jnl_stats_t st;
    assert_int_equal(jnl_stats(j, &st, &err), 0);
    assert_true(st.full);
    assert_true(st.near_limit);
    assert_int_equal(st.map_limit, 4u << 20);
    assert_true(st.map_size <= st.map_limit);
    assert_int_equal(st.last_seq, lastok);
    jnl_record_t *r = NULL;
    assert_int_equal(jnl_get(j, lastok, 0, &r, &err), 0);
    jnl_record_free(r);
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.last, lastok);
    /* A full journal opens again (its map has no page left for the meta write of
     * opening; a writer killed before it grew the map leaves the same), with its limit
     * and with a larger one, under which appends go on. */
    jnl_close(j);
    assert_int_equal(jnl_open(jpath("full"), &o, &j, &err), 0);
    json_t *more = mkobj("DNSZone", "dns", "o1", 1, big);
    jnl_event_t ev_more = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone", .ns = "dns", .name = "o1",
                           .object = more};
    assert_int_equal(jnl_append_sync(j, &ev_more, NULL, &err), BD_EFULL);
    json_decref(more);
    jnl_close(j);
    o.map_limit = 5u << 20;
    if (jnl_open(jpath("full"), &o, &j, &err) != 0)
        fail_msg("reopen with a larger limit: %s", err.msg);
    assert_int_equal(append(j, JNL_ADDED, "DNSZone", "dns", "roomier", "x", 0), lastok + 1);
    jnl_close(j);
    o.map_limit = 4u << 20;
    assert_int_equal(jnl_open(jpath("full"), &o, &j, &err), 0);
    lastok++;
    /* Pruning frees room and clears the error. */
    jnl_retention_t pol = {.max_events = 5};
    uint64_t ck = 0;
    assert_int_equal(jnl_retain(j, &pol, &ck, &err), 0);
    assert_int_equal(ck, lastok - 5);
    assert_int_equal(jnl_stats(j, &st, &err), 0);
    assert_false(st.full);
    assert_int_equal(append(j, JNL_ADDED, "DNSZone", "dns", "again", "x", 0), lastok + 1);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    jnl_close(j);

    /* Reopened at the limit with a journal already full beyond a smaller limit. */
    o.flags = 0;
    o.map_limit = 1u << 20;
    o.map_size = 1u << 20;
    assert_int_equal(jnl_open(jpath("full"), &o, &j, &err), 0);
    assert_int_equal(jnl_append(j, &ev, NULL, &err), BD_EFULL);
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    jnl_close(j);
    bd_log_set_level(BD_LOG_INFO);
    free(big);
}

/* ---- group commit reports ------------------------------------------------------------------------ */

typedef struct cbstate {
    uint64_t committed;
    int calls, fails;
    uint64_t want;
    struct ev_loop *loop;
} cbstate_t;

static void on_commit(jnl_t *j, uint64_t committed, int status, void *arg)
{
    cbstate_t *s = arg;
    s->calls++;
    if (status != 0) {
        s->fails++;
        return;
    }
    assert_true(committed >= s->committed);
    s->committed = committed;
    if (committed >= s->want)
        ev_break(s->loop, EVBREAK_ALL);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void test_group_commit(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.batch_max = 64;
    o.batch_ms = 5;
    assert_int_equal(jnl_open(jpath("gc"), &o, &j, &err), 0);
    cbstate_t s = {.loop = loop};
    assert_int_equal(jnl_set_commit_cb(j, loop, on_commit, &s), 0);
    assert_int_equal(jnl_set_commit_cb(j, loop, on_commit, &s), BD_EINVAL);
    uint64_t seq = 0;
    uint64_t t0 = 0;
    for (int i = 0; i < 1000; i++) {
        json_t *obj = mkobj("DNSZone", "dns", "z", i, "v");
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone",
                          .ns = "dns", .name = "z", .object = obj};
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(jnl_append(j, &ev, &seq, &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t0 += (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)(b.tv_nsec - a.tv_nsec);
        json_decref(obj);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    s.want = seq;
    ev_timer to;
    ev_timer_init(&to, on_timeout, 20.0, 0);
    ev_timer_start(loop, &to);
    ev_run(loop, 0);
    ev_timer_stop(loop, &to);
    assert_int_equal(s.committed, 1000);
    assert_int_equal(s.fails, 0);
    /* Batches: far fewer reports than events (64 per batch at most), at least one. */
    assert_true(s.calls >= 1 && s.calls < 1000);
    /* Appending never waited for the disk: 1000 durable commits would take seconds on a
     * real disk, 1000 appends take milliseconds. The bound is generous so that a loaded
     * CI machine cannot fail it; a blocking append would still exceed it on disk. */
    assert_true(t0 < 5000000000ull);
    assert_int_equal(jnl_committed_seq(j), 1000);
    jnl_close(j);
    ev_loop_destroy(loop);
}

static void flip_version(MDB_val *v, uint8_t *copy, size_t *len)
{
    copy[1] = 0x02; /* the format version right after the array header */
}

/* A batch that fails (size limit) is reported through the callback: status BD_EFULL and
 * the last committed seq; appends then fail fast. */
static void test_group_commit_failure(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    o.map_size = 1u << 20;
    o.map_limit = 2u << 20;
    o.batch_max = 8;
    bd_log_set_level(BD_LOG_ERROR + 1);
    assert_int_equal(jnl_open(jpath("gcfail"), &o, &j, &err), 0);
    cbstate_t s = {.loop = loop, .want = UINT64_MAX};
    assert_int_equal(jnl_set_commit_cb(j, loop, on_commit, &s), 0);
    char *big = malloc(30000);
    memset(big, 'q', 29999);
    big[29999] = 0;
    int rc = 0;
    for (int i = 0; i < 2000 && rc == 0; i++) {
        json_t *obj = mkobj("DNSZone", "dns", "z", i, big);
        jnl_event_t ev = {.type = JNL_MODIFIED, .api_version = APIV, .kind = "DNSZone",
                          .ns = "dns", .name = "z", .object = obj};
        rc = jnl_append(j, &ev, NULL, &err);
        json_decref(obj);
        if (rc == BD_EBUSY)
            rc = 0;
        ev_run(loop, EVRUN_NOWAIT);
        if (i % 16 == 15)
            jnl_flush(j, NULL);
    }
    assert_int_equal(rc, BD_EFULL);
    /* Let the report arrive. */
    for (int i = 0; i < 100 && s.fails == 0; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(s.fails, 1);
    assert_int_equal(s.committed, jnl_committed_seq(j));
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.last, jnl_committed_seq(j));
    jnl_close(j);
    ev_loop_destroy(loop);
    free(big);
    bd_log_set_level(BD_LOG_INFO);
}

/* ---- errors on open ---------------------------------------------------------------------------- */

static void test_open_errors(void **state)
{
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;

    assert_int_equal(jnl_open(jpath("nope"), &o, &j, &err), BD_ENOTFOUND);
    assert_null(j);
    assert_non_null(strstr(err.msg, "nope"));
    /* A directory without a journal. */
    mkdir(jpath("emptydir"), 0700);
    assert_int_equal(jnl_open(jpath("emptydir"), &o, &j, &err), BD_ENOTFOUND);
    /* A regular file. */
    FILE *f = fopen(jpath("file.txt"), "w");
    fputs("hello\n", f);
    fclose(f);
    assert_int_equal(jnl_open(jpath("file.txt"), &o, &j, &err), BD_EFOREIGN);
    /* A directory whose data.mdb is not LMDB (and no lock file appears). */
    mkdir(jpath("garbage"), 0700);
    f = fopen(jpath("garbage/data.mdb"), "w");
    for (int i = 0; i < 1000; i++)
        fputs("not an lmdb file at all ", f);
    fclose(f);
    assert_int_equal(jnl_open(jpath("garbage"), &o, &j, &err), BD_EFOREIGN);
    assert_int_equal(access(jpath("garbage/lock.mdb"), F_OK), -1);
    o.flags = JNL_OPEN_CREATE;
    assert_int_equal(jnl_open(jpath("garbage"), &o, &j, &err), BD_EFOREIGN);
    /* A creation killed before LMDB wrote its header (an empty data.mdb), then one killed
     * before bindy's first transaction (an empty environment): no journal yet, and
     * creating it works. */
    mkdir(jpath("killed"), 0700);
    fclose(fopen(jpath("killed/data.mdb"), "w"));
    o.flags = 0;
    assert_int_equal(jnl_open(jpath("killed"), &o, &j, &err), BD_ENOTFOUND);
    MDB_env *env = raw_env(jpath("killed"));
    mdb_env_close(env);
    assert_int_equal(jnl_open(jpath("killed"), &o, &j, &err), BD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no journal yet"));
    o.flags = JNL_OPEN_CREATE;
    assert_int_equal(jnl_open(jpath("killed"), &o, &j, &err), BD_OK);
    jnl_close(j);
    j = NULL;
    /* Another application's LMDB environment. */
    mkdir(jpath("other"), 0700);
    env = raw_env(jpath("other"));
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "stuff", MDB_CREATE, &dbi);
    MDB_val k = {3, "key"}, v = {3, "val"};
    mdb_put(txn, dbi, &k, &v, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    for (int ro = 0; ro < 2; ro++) {
        o.flags = ro ? JNL_OPEN_RDONLY : JNL_OPEN_CREATE;
        bd_err_clear(&err);
        assert_int_equal(jnl_open(jpath("other"), &o, &j, &err), BD_EFOREIGN);
        assert_non_null(strstr(err.msg, "not a bindy journal"));
    }

    /* Another format version. */
    j = open_new("ver", JNL_SYNC_DURABLE);
    append(j, JNL_ADDED, "DNSZone", "dns", "a", "1", 0);
    append(j, JNL_ADDED, "DNSZone", "dns", "b", "1", 0);
    jnl_close(j);
    env = raw_env(jpath("ver"));
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "meta", 0, &dbi);
    uint8_t two[4] = {0, 0, 0, 2};
    MDB_val vk = {7, "version"}, vv = {4, two};
    mdb_put(txn, dbi, &vk, &vv, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    for (int ro = 0; ro < 2; ro++) {
        o.flags = ro ? JNL_OPEN_RDONLY : 0;
        assert_int_equal(jnl_open(jpath("ver"), &o, &j, &err), BD_EVERSION);
        assert_non_null(strstr(err.msg, "version 2"));
    }
    /* A record of another version inside a version-1 journal. */
    two[3] = 1;
    env = raw_env(jpath("ver"));
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "meta", 0, &dbi);
    mdb_put(txn, dbi, &vk, &vv, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    static uint8_t key2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    raw_edit(jpath("ver"), "events", key2, 8, flip_version, false);
    j = open_ro("ver");
    jnl_record_t *r = NULL;
    assert_int_equal(jnl_get(j, 2, 0, &r, &err), BD_EVERSION);
    assert_non_null(strstr(err.msg, "seq 2"));
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), BD_EVERSION);
    assert_int_equal(rep.bad_seq, 2);
    jnl_close(j);
}

/* ---- a reader while another process writes ------------------------------------------------------ */

static void test_concurrent_reader(void **state)
{
    /* Create, then let a child append 3000 events with a tiny initial map (so the map
     * grows several times) while we read the journal read-only. */
    jnl_t *j = open_new("conc", JNL_SYNC_NOSYNC);
    jnl_close(j);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        jnl_opts_t o;
        bd_err_t err;
        jnl_opts_init(&o);
        o.sync = JNL_SYNC_NOSYNC;
        o.map_size = 1u << 20;
        o.batch_max = 50;
        if (jnl_open(jpath("conc"), &o, &j, &err) != 0)
            _exit(3);
        for (int i = 0; i < 3000; i++) {
            char nm[16];
            snprintf(nm, sizeof(nm), "o%d", i % 50);
            json_t *obj = mkobj("DNSZone", "dns", nm, i, "some value to take room in the map");
            jnl_event_t ev = {.type = JNL_ADDED, .api_version = APIV, .kind = "DNSZone",
                              .ns = "dns", .name = nm, .object = obj};
            int rc = (i % 100 == 99) ? jnl_append_sync(j, &ev, NULL, &err)
                                     : jnl_append(j, &ev, NULL, &err);
            json_decref(obj);
            if (rc == BD_EBUSY) {
                jnl_flush(j, &err);
                i--;
                continue;
            }
            if (rc != 0)
                _exit(4);
        }
        jnl_close(j);
        _exit(0);
    }
    j = open_ro("conc");
    jnl_iter_t *it = NULL;
    bd_err_t err;
    assert_int_equal(jnl_iter_new(j, 1, JNL_DECODE_NO_OBJECT, &it, &err), 0);
    uint64_t seen = 0;
    int status = 0, polls = 0;
    bool done = false;
    while (polls++ < 20000) {
        jnl_record_t *r = NULL;
        int rc = jnl_iter_next(it, &r, &err);
        if (rc == 0) {
            assert_int_equal(r->ev.seq, seen + 1);
            seen = r->ev.seq;
            jnl_record_free(r);
            continue;
        }
        assert_int_equal(rc, BD_ENOTFOUND);
        if (done)
            break;
        if (waitpid(pid, &status, WNOHANG) == pid)
            done = true; /* one more pass reads what is left */
        else
            usleep(1000);
        jnl_state_t *st = NULL;
        if (jnl_state_at(j, JNL_SEQ_LAST, &st, &err) == 0)
            jnl_state_free(st);
        else
            fail_msg("state while writing: %s", err.msg);
    }
    jnl_iter_free(it);
    assert_true(done);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(seen, 3000);
    jnl_verify_report_t rep;
    assert_int_equal(jnl_verify(j, &rep, &err), 0);
    assert_int_equal(rep.last, 3000);
    jnl_close(j);
}

/* ---- crash safety ---------------------------------------------------------------------------- */

/* A crash in the child: its backtrace on stderr, then the signal itself for the parent. */
static void crash_report(int sig)
{
    static const char msg[] = "crash-safety child: fatal signal; backtrace:\n";
    void *frames[64];
    int n = backtrace(frames, 64);
    if (write(2, msg, sizeof(msg) - 1) < 0)
        n = 0;
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void crash_child(int round)
{
    /* cmocka's handlers would turn a crash into exit(-1) (or a longjmp into the parent's
     * test runner); the parent must see the signal itself */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    void *warm[1];
    backtrace(warm, 1); /* loads what backtrace needs now, not in the handler */
    for (size_t k = 0; k < sizeof(sigs) / sizeof(*sigs); k++)
        signal(sigs[k], crash_report);
    jnl_opts_t o;
    jnl_t *j = NULL;
    bd_err_t err;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = (jnl_sync_t)(round % 3);
    o.map_size = 1u << 20; /* growth happens under the knife too */
    o.batch_max = 1 + (unsigned)(round % 7) * 20;
    o.batch_ms = (unsigned)(round % 3);
    if (jnl_open(jpath("crash"), &o, &j, &err) != 0)
        _exit(3);
    srand((unsigned)getpid());
    for (int i = 0; i < 200000; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "o%d", rand() % 40);
        size_t len = (size_t)(rand() % 3000);
        char *val = malloc(len + 1);
        memset(val, 'a' + (char)(i % 26), len);
        val[len] = 0;
        json_t *obj = mkobj("DNSZone", "dns", nm, i, val);
        free(val);
        jnl_type_t t = rand() % 10 == 0 ? JNL_DELETED : JNL_MODIFIED;
        jnl_event_t ev = {.type = t, .api_version = APIV, .kind = "DNSZone", .ns = "dns",
                          .name = nm, .object = obj};
        int rc = (i % 3 == 0) ? jnl_append_sync(j, &ev, NULL, &err) : jnl_append(j, &ev, NULL, &err);
        json_decref(obj);
        if (rc == BD_EBUSY)
            rc = jnl_flush(j, &err);
        if (rc != 0)
            _exit(4);
        if (i % 500 == 499) {
            jnl_retention_t pol = {.max_events = 2000};
            jnl_retain(j, &pol, NULL, &err);
        }
    }
    jnl_close(j);
    _exit(0);
}

static void test_crash_safety(void **state)
{
    uint64_t prev_last = 0;
    int kills = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    srand(12345);
    bd_log_set_level(BD_LOG_ERROR);
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            crash_child(round);
        /* Let it get going (open, growth, prune), then kill it somewhere. */
        usleep((useconds_t)(20000 + rand() % 150000));
        kill(pid, SIGKILL);
        kills++;
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status))
            fail_msg("round %d: child exited with %d before the kill", round, WEXITSTATUS(status));
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: child died of signal %d (%s)", round, WTERMSIG(status), strsignal(WTERMSIG(status)));

        /* Every reopen finds a consistent prefix that verifies. */
        jnl_opts_t o;
        jnl_t *j = NULL;
        bd_err_t err;
        jnl_opts_init(&o);
        int rc = jnl_open(jpath("crash"), &o, &j, &err);
        if (rc == BD_ENOTFOUND && prev_last == 0)
            continue; /* killed before the journal existed */
        if (rc != 0)
            fail_msg("round %d: reopen: %s", round, err.msg);
        jnl_verify_report_t rep;
        rc = jnl_verify(j, &rep, &err);
        if (rc != 0)
            fail_msg("round %d: verify: %s", round, err.msg);
        uint64_t first, last;
        assert_int_equal(jnl_bounds(j, &first, &last, &err), 0);
        uint64_t head = last;
        assert_true(head >= prev_last); /* nothing committed was lost */
        prev_last = head;
        jnl_state_t *st = NULL;
        assert_int_equal(jnl_state_at(j, JNL_SEQ_LAST, &st, &err), 0);
        jnl_state_free(st);
        jnl_close(j);
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 60)
            break; /* bounded time */
    }
    bd_log_set_level(BD_LOG_INFO);
    print_message("crash safety: %d kills, journal head at seq %llu, every reopen verified\n",
                  kills, (unsigned long long)prev_last);
    assert_true(prev_last > 0);
}

/* Records of every type, source and odd value decode back with the hash they carry; they
 * are also the fuzzer's seed corpus, written to $JNL_WRITE_CORPUS when it is set. */
static void test_write_corpus(void **state)
{
    (void)state;
    const char *dir = getenv("JNL_WRITE_CORPUS");
    if (dir == NULL) {
        dir = jpath("corpus");
        mkdir(dir, 0700);
    }
    static const char *const vals[] = {"", "x", "ünïcødé 🎉"};
    for (int i = 0; i < 6; i++) {
        json_t *obj = i == 5 ? NULL : mkobj("DNSZone", "dns", "example-com", i, vals[i % 3]);
        if (i == 3)
            json_object_set_new(obj, "n", json_pack("[i,f,I,b,n,{},[]]", -7, 2.5,
                                                    (json_int_t)INT64_MIN, 1));
        jnl_event_t ev = {.type = i == 5 ? JNL_RELIST_END : (jnl_type_t)(i % 3),
                          .source = (jnl_source_t)(i % 3),
                          .api_version = APIV,
                          .kind = "DNSZone",
                          .ns = i == 4 ? "" : "dns",
                          .name = i == 5 ? "" : "example-com",
                          .uid = "0b5e-11",
                          .resource_version = "12345",
                          .generation = i,
                          .object = i == 2 ? NULL : obj};
        if (ev.type == JNL_DELETED)
            ev.object = obj;
        uint8_t *b = NULL;
        size_t len = 0;
        assert_int_equal(jnl_record_encode(&ev, (uint64_t)i + 1, 1700000000000000000ull + (uint64_t)i,
                                           NULL, &b, &len, NULL), 0);
        char path[700];
        snprintf(path, sizeof(path), "%s/record-%d.bin", dir, i);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(b, 1, len, f);
        fclose(f);
        jnl_record_t *rec = NULL;
        uint8_t want[JNL_HASH_LEN];
        assert_int_equal(jnl_record_decode(b, len, 0, &rec, NULL), 0);
        assert_int_equal(jnl_record_hash(b, len, want), 0);
        assert_memory_equal(rec->hash, want, JNL_HASH_LEN);
        assert_int_equal(rec->ev.seq, (uint64_t)i + 1);
        assert_int_equal(rec->ev.type, ev.type);
        assert_int_equal(rec->ev.generation, i);
        assert_true((rec->ev.object == NULL) == (ev.object == NULL));
        jnl_record_free(rec);
        free(b);
        json_decref(obj);
    }
}


/* ---- snapshots -------------------------------------------------------------------------- */

static void raw_copy_value(const char *from, const char *to, const char *db, const char *key)
{
    char fp[700], tp[700];
    snprintf(fp, sizeof(fp), "%s", jpath(from));
    snprintf(tp, sizeof(tp), "%s", jpath(to));
    MDB_env *src = raw_env(fp), *dst = raw_env(tp);
    MDB_txn *rt, *wt;
    MDB_dbi sd, dd;
    MDB_val k = {strlen(key), (void *)key}, v;
    assert_int_equal(mdb_txn_begin(src, NULL, MDB_RDONLY, &rt), 0);
    assert_int_equal(mdb_dbi_open(rt, db, 0, &sd), 0);
    assert_int_equal(mdb_get(rt, sd, &k, &v), 0);
    assert_int_equal(mdb_txn_begin(dst, NULL, 0, &wt), 0);
    assert_int_equal(mdb_dbi_open(wt, db, 0, &dd), 0);
    assert_int_equal(mdb_put(wt, dd, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(wt), 0);
    mdb_txn_abort(rt);
    mdb_env_close(src);
    mdb_env_close(dst);
}

static void flip_last_payload_byte(MDB_val *v, uint8_t *copy, size_t *len)
{
    copy[*len - JNL_HASH_LEN - 1] ^= 0x20;
}

static void expect_snapshot_refused(const char *name, int code, const char *needle)
{
    jnl_t *j = open_ro(name);
    uint64_t seq = 7;
    void *buf = (void *)1;
    size_t len = 3;
    bd_err_t err;
    int got = jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err);
    if (got != code)
        fail_msg("%s: got %s (%s), want %s", name, bd_strerror(got), err.msg, bd_strerror(code));
    assert_int_equal(seq, 0);
    assert_null(buf);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
    jnl_close(j);
}

/* A consumer's snapshot: stored at a seq, replaced, read back byte for byte; refused when
 * altered or copied from another journal; kept across pruning. */
static void test_snapshot_blob(void **state)
{
    jnl_t *j = open_new("snap", JNL_SYNC_NOSYNC);
    for (int i = 0; i < 20; i++)
        append(j, JNL_ADDED, "ARecord", "dns", "a", i % 2 ? "x" : "y", 0);
    uint64_t seq = 0;
    void *buf = NULL;
    size_t len = 0;
    bd_err_t err;
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_ENOTFOUND);
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 10, "state at 10", 11, &err), BD_OK);
    /* a newer one replaces it, written while the writer has appends in flight */
    for (int i = 0; i < 50; i++) {
        jnl_event_t ev = {.type = JNL_RELIST_BEGIN, .source = JNL_SRC_KUBERNETES, .kind = "ARecord"};
        assert_int_equal(jnl_append(j, &ev, NULL, &err), BD_OK);
    }
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 15, "state at 15!", 12, &err), BD_OK);
    assert_int_equal(jnl_flush(j, &err), BD_OK);
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_OK);
    assert_int_equal(seq, 15);
    assert_int_equal(len, 12);
    assert_memory_equal(buf, "state at 15!", 12);
    free(buf);
    assert_int_equal(jnl_snapshot_stat(j, JNL_SNAPSHOT_PROJECTOR, &seq, &len, &err), BD_OK);
    assert_int_equal(seq, 15);
    assert_int_equal(len, 12);
    /* a seq that is not stored cannot be bound to a hash */
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 999, "x", 1, &err), BD_ENOTFOUND);
    assert_int_equal(jnl_snapshot_put(j, "", 1, "x", 1, &err), BD_EINVAL);
    jnl_close(j);

    /* read-only: readable, not writable */
    j = open_ro("snap");
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 15, "x", 1, &err), BD_EINVAL);
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_OK);
    free(buf);
    jnl_close(j);

    /* copied into another journal with as many events: event 15's hash differs */
    j = open_new("snap-other", JNL_SYNC_NOSYNC);
    for (int i = 0; i < 20; i++)
        append(j, JNL_ADDED, "ARecord", "dns", "b", "z", 0);
    jnl_close(j);
    raw_copy_value("snap", "snap-other", "meta", "snapshot/" JNL_SNAPSHOT_PROJECTOR);
    expect_snapshot_refused("snap-other", BD_ECORRUPT, "seq 15 does not match event 15");
    /* and into a shorter one: after its last event */
    j = open_new("snap-short", JNL_SYNC_NOSYNC);
    for (int i = 0; i < 5; i++)
        append(j, JNL_ADDED, "ARecord", "dns", "b", "z", 0);
    jnl_close(j);
    raw_copy_value("snap", "snap-short", "meta", "snapshot/" JNL_SNAPSHOT_PROJECTOR);
    expect_snapshot_refused("snap-short", BD_ECORRUPT, "after the last event");

    /* pruning: checked against the checkpoint's anchor at its seq, accepted unverified once
     * older than the checkpoint; a snapshot can be taken at a checkpoint's seq */
    j = open_new("snap", JNL_SYNC_NOSYNC);
    assert_int_equal(jnl_checkpoint(j, 15, JNL_CKPT_PRUNE, &err), BD_OK);
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_OK);
    free(buf);
    assert_int_equal(jnl_checkpoint(j, 18, JNL_CKPT_PRUNE, &err), BD_OK);
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_OK);
    assert_int_equal(seq, 15);
    free(buf);
    assert_int_equal(jnl_snapshot_put(j, JNL_SNAPSHOT_PROJECTOR, 18, "at 18", 5, &err), BD_OK);
    assert_int_equal(jnl_snapshot_get(j, JNL_SNAPSHOT_PROJECTOR, &seq, &buf, &len, &err), BD_OK);
    assert_int_equal(seq, 18);
    free(buf);
    /* the chain still verifies with a snapshot in meta */
    assert_int_equal(jnl_verify(j, NULL, &err), BD_OK);
    jnl_close(j);

    /* one payload byte altered */
    const char *key = "snapshot/" JNL_SNAPSHOT_PROJECTOR;
    raw_edit(jpath("snap"), "meta", key, strlen(key), flip_last_payload_byte, false);
    expect_snapshot_refused("snap", BD_ECORRUPT, "altered");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_lossless),
        cmocka_unit_test(test_codec_layout),
        cmocka_unit_test(test_codec_msgpack_c),
        cmocka_unit_test(test_codec_rejects),
        cmocka_unit_test(test_append_read),
        cmocka_unit_test(test_indexes_history),
        cmocka_unit_test(test_state_fold),
        cmocka_unit_test(test_verify_tamper),
        cmocka_unit_test(test_verify_parallel),
        cmocka_unit_test(test_append_threads_verify),
        cmocka_unit_test(test_object_index_epochs),
        cmocka_unit_test(test_checkpoint_retention),
        cmocka_unit_test(test_space_limit),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_group_commit_failure),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_concurrent_reader),
        cmocka_unit_test(test_crash_safety),
        cmocka_unit_test(test_write_corpus),
        cmocka_unit_test(test_snapshot_blob),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
