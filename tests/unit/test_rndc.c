/*
 * test_rndc.c - the native rndc client against a real named (started here on loopback, on
 * free ports) and against a fake control-channel server thread that sends broken replies.
 *
 * If named cannot be started the group setup fails, and so does every test that needs it:
 * nothing is skipped silently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "named_harness.h"
#include "rndc.h"
#include "rndc_wire.h"

/* ---- shared state: one named with one key per algorithm ---- */

#define NALGS 4
static const bind_rndc_alg_t all_algs[NALGS] = {BIND_RNDC_HMAC_SHA224, BIND_RNDC_HMAC_SHA256,
                                                BIND_RNDC_HMAC_SHA384, BIND_RNDC_HMAC_SHA512};
static const char *key_names[NALGS] = {"k224", "k256", "k384", "k512"};
static char secrets[NALGS][96];
static bd_named_t *g_named;
static char g_setup_error[2048];

static void random_secret_b64(char *out, size_t cap, size_t nbytes)
{
    unsigned char raw[64];
    assert_true(nbytes <= sizeof(raw) && cap >= (nbytes + 2) / 3 * 4 + 1);
    assert_int_equal(RAND_bytes(raw, (int)nbytes), 1);
    EVP_EncodeBlock((unsigned char *)out, raw, (int)nbytes);
}

static int alg_index(bind_rndc_alg_t alg)
{
    for (int i = 0; i < NALGS; i++)
        if (all_algs[i] == alg)
            return i;
    return -1;
}

static bind_rndc_config_t named_cfg(bind_rndc_alg_t alg)
{
    int i = alg_index(alg);
    bind_rndc_config_t cfg = {
        .host = "127.0.0.1",
        .port = bd_named_ctl_port(g_named),
        .key_name = key_names[i],
        .alg = alg,
        .secret_b64 = secrets[i],
        .timeout = 5.0,
    };
    return cfg;
}

static const char zone_text[] = "$TTL 300\n"
                                "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
                                "@ IN NS ns1\n"
                                "ns1 IN A 127.0.0.1\n"
                                "www IN A 192.0.2.1\n";

static int group_setup(void **state)
{
    bd_err_t err;
    char conf[4096];
    size_t off = 0;

    bd_err_clear(&err);
    for (int i = 0; i < NALGS; i++)
        random_secret_b64(secrets[i], sizeof(secrets[i]), 32 + 8 * (size_t)i);
    off += (size_t)snprintf(conf + off, sizeof(conf) - off,
                            "options {\n"
                            "  directory \"@DIR@\";\n"
                            "  pid-file \"@DIR@/named.pid\";\n"
                            "  listen-on port @PORT@ { 127.0.0.1; };\n"
                            "  listen-on-v6 { none; };\n"
                            "  recursion no;\n"
                            "};\n");
    for (int i = 0; i < NALGS; i++)
        off += (size_t)snprintf(conf + off, sizeof(conf) - off,
                                "key \"%s\" { algorithm %s; secret \"%s\"; };\n", key_names[i],
                                bind_rndc_alg_name(all_algs[i]), secrets[i]);
    off += (size_t)snprintf(conf + off, sizeof(conf) - off,
                            "controls { inet 127.0.0.1 port @CTLPORT@ allow { 127.0.0.1; } "
                            "keys { \"k224\"; \"k256\"; \"k384\"; \"k512\"; }; };\n"
                            "zone \"example.com\" { type primary; file "
                            "\"@DIR@/example.com.db\"; };\n");
    assert_true(off < sizeof(conf));

    int rc = bd_named_new(&g_named, &err);
    if (rc == 0)
        rc = bd_named_write_file(g_named, "example.com.db", zone_text, &err);
    if (rc == 0)
        rc = bd_named_start(g_named, conf, 30.0, &err);
    if (rc != 0) {
        snprintf(g_setup_error, sizeof(g_setup_error), "%s (%s)", err.msg, bd_strerror(rc));
        print_error("FATAL: could not start named for the rndc tests: %s\n", g_setup_error);
        bd_named_free(g_named);
        g_named = NULL;
        /* Not a group failure: the tests that need named each fail with this message, the
         * others (codec, fake server) still run. */
    }
    return 0;
}

static int group_teardown(void **state)
{
    bd_named_free(g_named);
    g_named = NULL;
    return 0;
}

/* ---- async capture helpers ---- */

#define MAXCAP 300

typedef struct cap {
    int calls;
    int status[MAXCAP];
    uint32_t result[MAXCAP];
    char *text[MAXCAP];
    char *err[MAXCAP];
    char msg[MAXCAP][512];
    int tag[MAXCAP];          /* which request, in completion order */
    bool free_in_first_cb;    /* bind_rndc_free(c) from the first callback */
    bool cmd_in_cb;           /* try bind_rndc_command from each callback */
    int cmd_in_cb_rc;
} cap_t;

typedef struct tagged {
    cap_t *cap;
    int tag;
} tagged_t;

static void cap_cb(bind_rndc_t *c, const bind_rndc_reply_t *rep, void *arg)
{
    tagged_t *t = arg;
    cap_t *cap = t->cap;
    assert_true(cap->calls < MAXCAP);
    int i = cap->calls++;
    cap->status[i] = rep->status;
    cap->result[i] = rep->result;
    assert_non_null(rep->text);
    assert_non_null(rep->msg);
    cap->text[i] = strdup(rep->text);
    cap->err[i] = rep->err ? strdup(rep->err) : NULL;
    snprintf(cap->msg[i], sizeof(cap->msg[i]), "%s", rep->msg);
    cap->tag[i] = t->tag;
    if (rep->status != 0)
        assert_true(rep->msg[0] != '\0');
    if (cap->cmd_in_cb)
        cap->cmd_in_cb_rc = bind_rndc_command(c, "status", cap_cb, t);
    if (cap->free_in_first_cb && i == 0)
        bind_rndc_free(c);
}

static void cap_clear(cap_t *cap)
{
    for (int i = 0; i < cap->calls; i++) {
        free(cap->text[i]);
        free(cap->err[i]);
    }
    memset(cap, 0, sizeof(*cap));
}

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(bool *)w->data = true;
}

/* Run loop until cap has want callbacks, or secs pass (then fail). */
static void run_until(struct ev_loop *loop, cap_t *cap, int want, double secs)
{
    bool expired = false;
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, secs, 0.);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (cap->calls < want && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    if (cap->calls < want)
        fail_msg("only %d of %d callbacks within %.1fs", cap->calls, want, secs);
}

/* Let the loop turn for secs (no expectations). */
static void run_for(struct ev_loop *loop, double secs)
{
    bool expired = false;
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, secs, 0.);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (!expired)
        ev_run(loop, EVRUN_ONCE);
}

static void need_named(void)
{
    if (g_named == NULL)
        fail_msg("named is not running: %s", g_setup_error);
}

/* ---- configuration and API contract (no server) ---- */

static void test_alg_names(void **state)
{
    bind_rndc_alg_t a;
    assert_int_equal(bind_rndc_alg_parse("hmac-sha224", &a), 0);
    assert_int_equal(a, BIND_RNDC_HMAC_SHA224);
    assert_int_equal(bind_rndc_alg_parse("HMAC-SHA256", &a), 0);
    assert_int_equal(a, BIND_RNDC_HMAC_SHA256);
    assert_int_equal(bind_rndc_alg_parse("hmac-sha384", &a), 0);
    assert_int_equal(a, BIND_RNDC_HMAC_SHA384);
    assert_int_equal(bind_rndc_alg_parse("hmac-sha512", &a), 0);
    assert_int_equal(a, BIND_RNDC_HMAC_SHA512);
    assert_int_equal(bind_rndc_alg_parse("hmac-md5", &a), BD_EINVAL);
    assert_int_equal(bind_rndc_alg_parse("hmac-sha1", &a), BD_EINVAL);
    assert_int_equal(bind_rndc_alg_parse("", &a), BD_EINVAL);
    assert_int_equal(bind_rndc_alg_parse(NULL, &a), BD_EINVAL);
    for (int i = 0; i < NALGS; i++) {
        assert_int_equal(bind_rndc_alg_parse(bind_rndc_alg_name(all_algs[i]), &a), 0);
        assert_int_equal(a, all_algs[i]);
    }
    bind_rndc_config_t zero = {0};
    assert_int_equal(zero.alg, BIND_RNDC_HMAC_SHA256); /* the default */
}

static void test_config_errors(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = (bind_rndc_t *)&c; /* must be reset to NULL on failure */
    bd_err_t err;
    bind_rndc_config_t cfg = {.host = "localhost", .port = 953, .key_name = "rndc-key",
                              .secret_b64 = "c2VjcmV0LXNlY3JldA=="};

    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), BD_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, "not a numeric IP address"));

    cfg.host = "127.0.0.1";
    const char *bad[] = {"", "abc", "a===", "####", "=abc", "ab=c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.secret_b64 = bad[i];
        assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), BD_EINVAL);
        assert_non_null(strstr(err.msg, "rndc-key"));
    }
    cfg.secret_b64 = "c2VjcmV0LXNlY3JldA==";
    cfg.alg = (bind_rndc_alg_t)42;
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), BD_EINVAL);
    cfg.alg = BIND_RNDC_HMAC_SHA256;
    assert_int_equal(bind_rndc_new(NULL, &cfg, &c, &err), BD_EINVAL);
    assert_int_equal(bind_rndc_new(loop, NULL, &c, &err), BD_EINVAL);

    /* IPv6 and whitespace in the secret are fine. */
    cfg.host = "::1";
    cfg.secret_b64 = " c2VjcmV0\nLXNlY3JldA== ";
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    bind_rndc_free(c);

    /* A call that returns an error never fires its callback. */
    cfg.host = "127.0.0.1";
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    cap_t cap = {0};
    tagged_t t = {&cap, 0};
    char *huge = malloc(BIND_RNDC_MAX_COMMAND + 2);
    assert_non_null(huge);
    memset(huge, 'a', BIND_RNDC_MAX_COMMAND + 1);
    huge[BIND_RNDC_MAX_COMMAND + 1] = '\0';
    assert_int_equal(bind_rndc_command(c, "", cap_cb, &t), BD_EINVAL);
    assert_int_equal(bind_rndc_command(c, NULL, cap_cb, &t), BD_EINVAL);
    assert_int_equal(bind_rndc_command(c, "status", NULL, &t), BD_EINVAL);
    assert_int_equal(bind_rndc_command(c, huge, cap_cb, &t), BD_ETOOBIG);
    assert_int_equal(bind_rndc_pending(c), 0);
    run_for(loop, 0.05);
    assert_int_equal(cap.calls, 0);
    bind_rndc_stats_t st;
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 0); /* no I/O without a command */
    free(huge);
    bind_rndc_free(c);
    bind_rndc_free(NULL);
    ev_loop_destroy(loop);
}

/* ---- the wire codec alone ---- */

static uint8_t *build_msg(bool sign, bind_rndc_alg_t alg, const uint8_t *secret, size_t slen,
                          size_t *len)
{
    bind_rndc__wbuf_t w;
    uint8_t *msg = NULL;
    bind_rndc__w_init(&w, sign);
    bind_rndc__w_table_begin(&w, "_ctrl");
    bind_rndc__w_u32(&w, "_ser", 77);
    bind_rndc__w_u32(&w, "_tim", 1700000000u);
    bind_rndc__w_u32(&w, "_nonce", 4294967295u);
    bind_rndc__w_table_end(&w);
    bind_rndc__w_table_begin(&w, "_data");
    bind_rndc__w_str(&w, "type", "status");
    bind_rndc__w_str(&w, "text", "hello");
    bind_rndc__w_str(&w, "text", "last wins");
    bind_rndc__w_table_end(&w);
    assert_int_equal(bind_rndc__w_finish(&w, alg, secret, slen, &msg, len), 0);
    return msg;
}

/* A version-1 body of n tables nested in each other ("x" = { "x" = { ... } }). */
static size_t nested(uint8_t *buf, size_t n)
{
    memset(buf, 0, 4 + n * 7);
    buf[3] = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = buf + 4 + i * 7;
        uint32_t inner = (uint32_t)((n - 1 - i) * 7);
        p[0] = 1;
        p[1] = 'x';
        p[2] = BIND_RNDC__T_TABLE;
        p[3] = (uint8_t)(inner >> 24);
        p[4] = (uint8_t)(inner >> 16);
        p[5] = (uint8_t)(inner >> 8);
        p[6] = (uint8_t)inner;
    }
    return 4 + n * 7;
}

static void test_wire_codec(void **state)
{
    const uint8_t secret[] = "0123456789abcdef0123456789abcdef";
    const uint8_t other[] = "0123456789abcdef0123456789abcdeX";
    size_t slen = sizeof(secret) - 1;
    bd_err_t err;

    for (int a = 0; a < NALGS; a++) {
        size_t len;
        uint8_t *msg = build_msg(true, all_algs[a], secret, slen, &len);
        const uint8_t *body = msg + 4;
        size_t blen = len - 4;
        bind_rndc__val_t top, ctrl, data;
        uint32_t v;
        char *s = NULL;

        assert_int_equal((uint32_t)msg[0] << 24 | msg[1] << 16 | msg[2] << 8 | msg[3], blen);
        assert_int_equal(bind_rndc__parse(body, blen, all_algs[a], secret, slen, &top, &err), 0);
        assert_int_equal(bind_rndc__lookup_table(&top, "_ctrl", &ctrl), 0);
        assert_int_equal(bind_rndc__lookup_u32(&ctrl, "_ser", &v), 0);
        assert_int_equal(v, 77);
        assert_int_equal(bind_rndc__lookup_u32(&ctrl, "_nonce", &v), 0);
        assert_int_equal(v, 4294967295u);
        assert_int_equal(bind_rndc__lookup_u32(&ctrl, "_missing", &v), BD_ENOTFOUND);
        assert_int_equal(bind_rndc__lookup_table(&top, "_data", &data), 0);
        assert_int_equal(bind_rndc__lookup_str(&data, "text", &s), 0);
        assert_string_equal(s, "last wins");
        free(s);
        assert_int_equal(bind_rndc__lookup_u32(&data, "type", &v), BD_EPROTO);
        assert_int_equal(bind_rndc__lookup_table(&data, "type", &ctrl), BD_EPROTO);

        /* wrong secret, wrong algorithm, unsigned */
        assert_int_equal(bind_rndc__parse(body, blen, all_algs[a], other, slen, &top, &err),
                         BD_EAUTH);
        assert_int_equal(
            bind_rndc__parse(body, blen, all_algs[(a + 1) % NALGS], secret, slen, &top, &err),
            BD_EAUTH);
        assert_non_null(strstr(err.msg, "algorithm"));

        /* Every strict prefix and every single-byte change is refused, never accepted. */
        for (size_t cut = 0; cut < blen; cut++) {
            int rc = bind_rndc__parse(body, cut, all_algs[a], secret, slen, &top, &err);
            assert_true(rc == BD_EPROTO || rc == BD_EAUTH);
        }
        uint8_t *copy = malloc(blen);
        assert_non_null(copy);
        for (size_t i = 0; i < blen; i++) {
            memcpy(copy, body, blen);
            copy[i] ^= (uint8_t)(1u << (i % 8));
            int rc = bind_rndc__parse(copy, blen, all_algs[a], secret, slen, &top, &err);
            if (rc != BD_EPROTO && rc != BD_EAUTH)
                fail_msg("byte %zu flipped: parse returned %d", i, rc);
        }
        free(copy);
        free(msg);
    }

    /* Unsigned: structure is fine without a secret, refused with one. */
    size_t len;
    uint8_t *msg = build_msg(false, BIND_RNDC_HMAC_SHA256, NULL, 0, &len);
    bind_rndc__val_t top;
    assert_int_equal(bind_rndc__parse(msg + 4, len - 4, 0, NULL, 0, &top, &err), 0);
    assert_int_equal(
        bind_rndc__parse(msg + 4, len - 4, BIND_RNDC_HMAC_SHA256, secret, slen, &top, &err),
        BD_EAUTH);
    assert_non_null(strstr(err.msg, "not signed"));
    free(msg);

    /* Version 2, and nesting deeper than the limit. */
    const uint8_t v2[] = {0, 0, 0, 2};
    assert_int_equal(bind_rndc__parse(v2, sizeof(v2), 0, NULL, 0, &top, &err), BD_EPROTO);
    uint8_t deep[4 + 40 * 7];
    size_t dlen = nested(deep, 40);
    assert_int_equal(bind_rndc__parse(deep, dlen, 0, NULL, 0, &top, &err), BD_EPROTO);
    dlen = nested(deep, 10);
    assert_int_equal(bind_rndc__parse(deep, dlen, 0, NULL, 0, &top, &err), 0);

    /* Numbers: strict decimal u32. */
    const char *nums[] = {"", "12a", "4294967296", "-1", "00000000001"};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        bind_rndc__wbuf_t w;
        uint32_t v;
        bind_rndc__val_t t;
        bind_rndc__w_init(&w, false);
        bind_rndc__w_str(&w, "n", nums[i]);
        assert_int_equal(bind_rndc__w_finish(&w, 0, NULL, 0, &msg, &len), 0);
        assert_int_equal(bind_rndc__parse(msg + 4, len - 4, 0, NULL, 0, &t, &err), 0);
        assert_int_equal(bind_rndc__lookup_u32(&t, "n", &v), BD_EPROTO);
        free(msg);
    }
    /* Writer misuse is a sticky error. */
    bind_rndc__wbuf_t w;
    bind_rndc__w_init(&w, false);
    bind_rndc__w_table_begin(&w, "open");
    assert_int_equal(bind_rndc__w_finish(&w, 0, NULL, 0, &msg, &len), BD_EINVAL);
    assert_null(msg);
    char longkey[300];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    bind_rndc__w_init(&w, false);
    bind_rndc__w_str(&w, longkey, "v");
    assert_int_equal(bind_rndc__w_finish(&w, 0, NULL, 0, &msg, &len), BD_EINVAL);
}

/* ---- against the real named ---- */

static void test_status(void **state)
{
    need_named();
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    bind_rndc_result_t res;
    bd_err_t err;
    int rc = bind_rndc_command_sync(&cfg, "status", &res, &err);
    if (rc != 0)
        fail_msg("status: %s: %s", bd_strerror(rc), err.msg);
    assert_int_equal(res.result, BIND_RNDC_R_SUCCESS);
    assert_null(res.err);
    assert_non_null(strstr(res.text, "server is up and running"));
    bind_rndc_result_deinit(&res);
    bind_rndc_result_deinit(&res);
}

static void test_zonestatus(void **state)
{
    need_named();
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    bind_rndc_result_t res;
    bd_err_t err;
    int rc = bind_rndc_command_sync(&cfg, "zonestatus example.com", &res, &err);
    if (rc != 0)
        fail_msg("zonestatus: %s: %s", bd_strerror(rc), err.msg);
    assert_int_equal(res.result, BIND_RNDC_R_SUCCESS);
    assert_null(res.err);
    assert_non_null(strstr(res.text, "name: example.com"));
    assert_non_null(strstr(res.text, "serial: 1"));
    bind_rndc_result_deinit(&res);

    /* An unknown zone: named answers, and the answer is a failure. */
    rc = bind_rndc_command_sync(&cfg, "zonestatus nope.example", &res, &err);
    if (rc != 0)
        fail_msg("zonestatus nope: %s: %s", bd_strerror(rc), err.msg);
    assert_int_equal(res.result, BIND_RNDC_R_NOTFOUND);
    assert_non_null(res.err);
    assert_string_equal(res.err, "not found");
    assert_non_null(strstr(res.text, "no matching zone 'nope.example'"));
    bind_rndc_result_deinit(&res);

    /* The other commands bindy uses. */
    const char *cmds[] = {"notify example.com", "retransfer example.com", "reload"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        rc = bind_rndc_command_sync(&cfg, cmds[i], &res, &err);
        if (rc != 0)
            fail_msg("%s: %s: %s", cmds[i], bd_strerror(rc), err.msg);
        /* retransfer of a primary zone is an error reported by named, not a transport one */
        if (i != 1)
            assert_int_equal(res.result, BIND_RNDC_R_SUCCESS);
        else
            assert_non_null(res.err);
        bind_rndc_result_deinit(&res);
    }
}

static void test_algorithms(void **state)
{
    need_named();
    for (int i = 0; i < NALGS; i++) {
        bind_rndc_config_t cfg = named_cfg(all_algs[i]);
        bind_rndc_result_t res;
        bd_err_t err;
        int rc = bind_rndc_command_sync(&cfg, "status", &res, &err);
        if (rc != 0)
            fail_msg("%s: %s: %s", bind_rndc_alg_name(all_algs[i]), bd_strerror(rc), err.msg);
        assert_int_equal(res.result, 0);
        assert_non_null(strstr(res.text, "server is up and running"));
        bind_rndc_result_deinit(&res);
    }
}

static void test_wrong_key(void **state)
{
    need_named();
    char bad[96];
    random_secret_b64(bad, sizeof(bad), 32);
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    bind_rndc_result_t res;
    bd_err_t err;

    cfg.secret_b64 = bad;
    assert_int_equal(bind_rndc_command_sync(&cfg, "status", &res, &err), BD_EAUTH);
    assert_null(res.text);
    assert_non_null(strstr(err.msg, "k256"));
    assert_non_null(strstr(err.msg, "rejected"));

    /* Right secret, wrong algorithm. */
    cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    cfg.alg = BIND_RNDC_HMAC_SHA512;
    assert_int_equal(bind_rndc_command_sync(&cfg, "status", &res, &err), BD_EAUTH);

    /* named is unharmed. */
    cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    assert_int_equal(bind_rndc_command_sync(&cfg, "status", &res, &err), 0);
    bind_rndc_result_deinit(&res);
}

static void test_queue_one_connection(void **state)
{
    need_named();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA384);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t[5];
    const char *cmds[5] = {"status", "zonestatus example.com", "zonestatus nope.example",
                           "status", "zonestatus example.com"};

    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    for (int i = 0; i < 5; i++) {
        t[i] = (tagged_t){&cap, i};
        assert_int_equal(bind_rndc_command(c, cmds[i], cap_cb, &t[i]), 0);
    }
    assert_int_equal(bind_rndc_pending(c), 5);
    assert_int_equal(cap.calls, 0); /* never from inside bind_rndc_command */
    run_until(loop, &cap, 5, 10.0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cap.tag[i], i);
        if (cap.status[i] != 0)
            fail_msg("%s: %s", cmds[i], cap.msg[i]);
    }
    assert_non_null(strstr(cap.text[0], "server is up and running"));
    assert_non_null(strstr(cap.text[1], "name: example.com"));
    assert_int_equal(cap.result[2], BIND_RNDC_R_NOTFOUND);
    assert_int_equal(bind_rndc_pending(c), 0);

    /* Later commands reuse the same connection. */
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t[0]), 0);
    run_until(loop, &cap, 6, 10.0);
    assert_int_equal(cap.status[5], 0);
    bind_rndc_stats_t st;
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.replies, 6);
    assert_int_equal(st.failures, 0);

    bind_rndc_free(c);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

static void test_reconnect_after_restart(void **state)
{
    need_named();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA256);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t = {&cap, 0};
    bind_rndc_stats_t st;

    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 1, 10.0);
    assert_int_equal(cap.status[0], 0);

    /* Restart named while the client's loop is not running: the client finds its
     * connection dead only when it uses it, and must recover transparently. */
    if (bd_named_restart(g_named, 30.0, &err) != 0)
        fail_msg("restart: %s", err.msg);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 2, 10.0);
    if (cap.status[1] != 0)
        fail_msg("after restart: %s", cap.msg[1]);
    assert_non_null(strstr(cap.text[1], "server is up and running"));
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 2);

    /* named down: refused, reported as unavailable. */
    bd_named_stop(g_named);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 3, 10.0);
    assert_int_equal(cap.status[2], BD_EUNAVAIL);
    assert_non_null(strstr(cap.msg[2], "refused"));

    /* named back: the next command reconnects. */
    if (bd_named_restart(g_named, 30.0, &err) != 0)
        fail_msg("restart: %s", err.msg);
    assert_int_equal(bind_rndc_command(c, "zonestatus example.com", cap_cb, &t), 0);
    run_until(loop, &cap, 4, 10.0);
    if (cap.status[3] != 0)
        fail_msg("after second restart: %s", cap.msg[3]);
    assert_int_equal(cap.result[3], 0);

    bind_rndc_free(c);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

static void test_free_from_callback(void **state)
{
    need_named();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_config_t cfg = named_cfg(BIND_RNDC_HMAC_SHA224);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t[3] = {{&cap, 0}, {&cap, 1}, {&cap, 2}};

    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t[i]), 0);
    cap.free_in_first_cb = true;
    run_until(loop, &cap, 3, 10.0);
    /* First answered; its callback freed the client; the other two were canceled, in
     * order, from inside that free. */
    assert_int_equal(cap.status[0], 0);
    assert_int_equal(cap.status[1], BD_ECANCELED);
    assert_int_equal(cap.status[2], BD_ECANCELED);
    assert_int_equal(cap.tag[1], 1);
    assert_int_equal(cap.tag[2], 2);
    assert_non_null(strstr(cap.msg[1], "canceled"));
    run_for(loop, 0.1);
    assert_int_equal(cap.calls, 3);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

/* ---- a fake control-channel server ---- */

typedef enum {
    FK_GARBAGE,        /* framed, version 1, junk table */
    FK_BAD_VERSION,
    FK_SHORT_LEN,      /* length 2 */
    FK_HUGE_LEN,       /* length 0xffffffff */
    FK_VALID,          /* correct replies (for the size-limit test) */
    FK_UNSIGNED,
    FK_WRONG_KEY,
    FK_TRUNCATED,      /* announce 100 bytes, send 10, close */
    FK_SILENT,         /* read, never answer */
    FK_CLOSE,          /* read the first request, close (what named does on bad auth) */
    FK_NONCE_THEN_GARBAGE,
    FK_BAD_SERIAL,
    FK_RESET_SECOND,   /* conn 1: answer nonce + 1 command, close on the 2nd; then valid */
    FK_CLOSE_IDLE,     /* conn 1: answer nonce + 1 command, then close; then valid */
    FK_FUZZ,           /* mutated valid nonce replies, one connection each */
} fake_mode_t;

typedef struct fake {
    int lfd;
    uint16_t port;
    pthread_t th;
    fake_mode_t mode;
    uint8_t secret[32];
    char secret_b64[64];
    atomic_int stop;
    atomic_int conns;
    uint32_t rng;
} fake_t;

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static bool wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    return poll(&p, 1, ms) > 0;
}

static bool read_full(fake_t *f, int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        if (atomic_load(&f->stop))
            return false;
        if (!wait_fd(fd, POLLIN, 100))
            continue;
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* Read one request; returns its _ctrl._ser (0 if the client went away). */
static uint32_t read_request(fake_t *f, int fd)
{
    uint8_t hdr[4];
    uint32_t ser = 0;
    if (!read_full(f, fd, hdr, 4))
        return 0;
    uint32_t len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
    if (len > 65536)
        return 0;
    uint8_t *body = malloc(len);
    if (body == NULL || !read_full(f, fd, body, len)) {
        free(body);
        return 0;
    }
    bind_rndc__val_t top, ctrl;
    bd_err_t err;
    if (bind_rndc__parse(body, len, BIND_RNDC_HMAC_SHA256, f->secret, sizeof(f->secret), &top,
                         &err) == 0 &&
        bind_rndc__lookup_table(&top, "_ctrl", &ctrl) == 0)
        (void)bind_rndc__lookup_u32(&ctrl, "_ser", &ser);
    free(body);
    return ser;
}

static void send_all(int fd, const void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, (const uint8_t *)p + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* A reply to request ser; signed with our secret, another one, or not at all. */
static uint8_t *make_reply(fake_t *f, uint32_t ser, int signing, const char *text,
                           size_t *len)
{
    static const uint8_t other[32] = {1, 2, 3};
    bind_rndc__wbuf_t w;
    uint8_t *msg = NULL;
    uint32_t now = (uint32_t)time(NULL);
    bind_rndc__w_init(&w, signing != 0);
    bind_rndc__w_table_begin(&w, "_ctrl");
    bind_rndc__w_u32(&w, "_ser", ser);
    bind_rndc__w_u32(&w, "_tim", now);
    bind_rndc__w_u32(&w, "_exp", now + 60);
    bind_rndc__w_str(&w, "_rpl", "1");
    bind_rndc__w_u32(&w, "_nonce", 12345);
    bind_rndc__w_table_end(&w);
    bind_rndc__w_table_begin(&w, "_data");
    bind_rndc__w_str(&w, "type", "x");
    bind_rndc__w_u32(&w, "result", 0);
    if (text != NULL)
        bind_rndc__w_str(&w, "text", text);
    bind_rndc__w_table_end(&w);
    int rc = bind_rndc__w_finish(&w, BIND_RNDC_HMAC_SHA256, signing == 2 ? other : f->secret,
                                 32, &msg, len);
    assert_int_equal(rc, 0);
    return msg;
}

static void send_reply(fake_t *f, int fd, uint32_t ser, int signing, const char *text)
{
    size_t len;
    uint8_t *msg = make_reply(f, ser, signing, text, &len);
    send_all(fd, msg, len);
    free(msg);
}

static void hold_until_closed(fake_t *f, int fd)
{
    char buf[256];
    while (!atomic_load(&f->stop)) {
        if (wait_fd(fd, POLLIN, 100) && recv(fd, buf, sizeof(buf), 0) <= 0)
            return;
    }
}

static void serve(fake_t *f, int fd, int idx)
{
    uint32_t ser = read_request(f, fd);
    if (ser == 0)
        return;
    switch (f->mode) {
    case FK_GARBAGE: {
        const uint8_t m[] = {0, 0, 0, 16, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        send_all(fd, m, sizeof(m));
        break;
    }
    case FK_BAD_VERSION: {
        const uint8_t m[] = {0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0};
        send_all(fd, m, sizeof(m));
        break;
    }
    case FK_SHORT_LEN: {
        const uint8_t m[] = {0, 0, 0, 2, 0, 1};
        send_all(fd, m, sizeof(m));
        break;
    }
    case FK_HUGE_LEN: {
        const uint8_t m[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1};
        send_all(fd, m, sizeof(m));
        break;
    }
    case FK_VALID:
        send_reply(f, fd, ser, 1, NULL);
        while ((ser = read_request(f, fd)) != 0)
            send_reply(f, fd, ser, 1, "fake ok");
        return;
    case FK_UNSIGNED:
        send_reply(f, fd, ser, 0, NULL);
        break;
    case FK_WRONG_KEY:
        send_reply(f, fd, ser, 2, NULL);
        break;
    case FK_TRUNCATED: {
        const uint8_t m[] = {0, 0, 0, 100, 0, 0, 0, 1, 5, '_'};
        send_all(fd, m, sizeof(m));
        return; /* close */
    }
    case FK_SILENT:
        break;
    case FK_CLOSE:
        return;
    case FK_NONCE_THEN_GARBAGE: {
        send_reply(f, fd, ser, 1, NULL);
        if (read_request(f, fd) == 0)
            return;
        uint8_t junk[64];
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)xorshift(&f->rng);
        junk[0] = junk[1] = 0;
        junk[2] = 0;
        junk[3] = 60; /* framed: the junk is the body */
        send_all(fd, junk, sizeof(junk));
        break;
    }
    case FK_BAD_SERIAL:
        send_reply(f, fd, ser + 1, 1, NULL);
        break;
    case FK_RESET_SECOND:
        send_reply(f, fd, ser, 1, NULL);
        if ((ser = read_request(f, fd)) == 0)
            return;
        send_reply(f, fd, ser, 1, idx == 0 ? "one" : "two");
        if (idx == 0) {
            (void)read_request(f, fd); /* the second command: drop it and close */
            return;
        }
        while ((ser = read_request(f, fd)) != 0)
            send_reply(f, fd, ser, 1, "more");
        return;
    case FK_CLOSE_IDLE:
        send_reply(f, fd, ser, 1, NULL);
        while ((ser = read_request(f, fd)) != 0) {
            send_reply(f, fd, ser, 1, idx == 0 ? "one" : "two");
            if (idx == 0)
                return; /* as named does after 30 s of silence */
        }
        return;
    case FK_FUZZ: {
        size_t len;
        uint8_t *msg = make_reply(f, ser, 1, "fuzz", &len);
        uint32_t r = xorshift(&f->rng);
        switch (r % 4) {
        case 0: /* flip 1-4 random bytes anywhere, the length prefix included */
            for (uint32_t k = 0; k <= (r >> 8) % 4; k++)
                msg[xorshift(&f->rng) % len] ^= (uint8_t)(1 + xorshift(&f->rng) % 255);
            break;
        case 1: /* truncate (the prefix still announces the full length) */
            len = 4 + xorshift(&f->rng) % (len - 4);
            break;
        case 2: /* random length prefix */
            msg[0] = 0;
            msg[1] = (uint8_t)(xorshift(&f->rng) % 2);
            msg[2] = (uint8_t)xorshift(&f->rng);
            msg[3] = (uint8_t)xorshift(&f->rng);
            break;
        default: /* random body after the version */
            for (size_t i = 8; i < len; i++)
                msg[i] = (uint8_t)xorshift(&f->rng);
            break;
        }
        send_all(fd, msg, len);
        free(msg);
        return;
    }
    }
    hold_until_closed(f, fd);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        if (!wait_fd(f->lfd, POLLIN, 50))
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int idx = atomic_fetch_add(&f->conns, 1);
        serve(f, fd, idx);
        close(fd);
    }
    return NULL;
}

static void fake_start(fake_t *f, fake_mode_t mode)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->rng = 0x9e3779b9u ^ (uint32_t)mode;
    assert_int_equal(RAND_bytes(f->secret, sizeof(f->secret)), 1);
    EVP_EncodeBlock((unsigned char *)f->secret_b64, f->secret, sizeof(f->secret));
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &sl), 0);
    f->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static bind_rndc_config_t fake_cfg(fake_t *f, double timeout)
{
    bind_rndc_config_t cfg = {.host = "127.0.0.1", .port = f->port, .key_name = "fake",
                              .secret_b64 = f->secret_b64, .timeout = timeout};
    return cfg;
}

/* One command against a fake server in mode; returns the callback's status. */
static int fake_one(fake_mode_t mode, size_t max_reply, char *msg, size_t msg_cap)
{
    fake_t f;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t = {&cap, 0};

    fake_start(&f, mode);
    bind_rndc_config_t cfg = fake_cfg(&f, 2.0);
    cfg.max_reply = max_reply;
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 1, 10.0);
    int status = cap.status[0];
    snprintf(msg, msg_cap, "%s", cap.msg[0]);
    bind_rndc_free(c);
    fake_stop(&f);
    cap_clear(&cap);
    ev_loop_destroy(loop);
    return status;
}

static void test_malformed_replies(void **state)
{
    char msg[512];
    static const struct {
        fake_mode_t mode;
        int want;
        const char *words;
    } cases[] = {
        {FK_GARBAGE, BD_EPROTO, "malformed"},
        {FK_BAD_VERSION, BD_EPROTO, "version 2"},
        {FK_SHORT_LEN, BD_EPROTO, "announces only 2 bytes"},
        {FK_TRUNCATED, BD_EPROTO, "middle of a reply"},
        {FK_UNSIGNED, BD_EAUTH, "not signed"},
        {FK_WRONG_KEY, BD_EAUTH, "does not verify"},
        {FK_CLOSE, BD_EAUTH, "rejected"},
        {FK_NONCE_THEN_GARBAGE, BD_EPROTO, ""},
        {FK_BAD_SERIAL, BD_EPROTO, "expected"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = fake_one(cases[i].mode, 0, msg, sizeof(msg));
        if (st != cases[i].want || strstr(msg, cases[i].words) == NULL)
            fail_msg("case %zu: status %d (%s) msg '%s', want %d with '%s'", i, st,
                     bd_strerror(st), msg, cases[i].want, cases[i].words);
    }
}

static void test_oversized_reply(void **state)
{
    char msg[512];
    /* A length prefix of 4 GiB: refused on the prefix, nothing allocated. */
    assert_int_equal(fake_one(FK_HUGE_LEN, 0, msg, sizeof(msg)), BD_ETOOBIG);
    assert_non_null(strstr(msg, "4294967295 bytes"));
    assert_non_null(strstr(msg, "1048576-byte limit"));
    /* A correct reply over a small configured limit. */
    assert_int_equal(fake_one(FK_VALID, 100, msg, sizeof(msg)), BD_ETOOBIG);
    assert_non_null(strstr(msg, "100-byte limit"));
    /* The same reply under the default limit is accepted. */
    assert_int_equal(fake_one(FK_VALID, 0, msg, sizeof(msg)), 0);
}

static void test_timeout(void **state)
{
    fake_t f;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t = {&cap, 0};

    fake_start(&f, FK_SILENT);
    bind_rndc_config_t cfg = fake_cfg(&f, 0.3);
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    ev_tstamp t0 = ev_time();
    run_until(loop, &cap, 1, 5.0);
    ev_tstamp took = ev_time() - t0;
    assert_int_equal(cap.status[0], BD_ETIMEOUT);
    assert_non_null(strstr(cap.msg[0], "within 0.3s"));
    assert_true(took >= 0.25 && took < 3.0);
    bind_rndc_free(c);
    fake_stop(&f);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

static void test_cancel_on_free(void **state)
{
    fake_t f;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t[3] = {{&cap, 0}, {&cap, 1}, {&cap, 2}};

    fake_start(&f, FK_SILENT);
    bind_rndc_config_t cfg = fake_cfg(&f, 5.0);
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t[i]), 0);
    run_for(loop, 0.2); /* connected, nonce request on the wire, no answer */
    assert_int_equal(cap.calls, 0);
    assert_int_equal(bind_rndc_pending(c), 3);
    cap.cmd_in_cb = true;
    bind_rndc_free(c);
    assert_int_equal(cap.calls, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cap.status[i], BD_ECANCELED);
        assert_int_equal(cap.tag[i], i);
        assert_non_null(strstr(cap.msg[i], "canceled"));
    }
    assert_int_equal(cap.cmd_in_cb_rc, BD_EBUSY);
    run_for(loop, 0.05);
    assert_int_equal(cap.calls, 3);
    fake_stop(&f);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

static void test_resend_on_reused_connection(void **state)
{
    fake_t f;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t = {&cap, 0};
    bind_rndc_stats_t st;

    fake_start(&f, FK_RESET_SECOND);
    bind_rndc_config_t cfg = fake_cfg(&f, 3.0);
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 1, 10.0);
    assert_int_equal(cap.status[0], 0);
    assert_string_equal(cap.text[0], "one");
    /* The server drops this one unanswered on the reused connection: sent again. */
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 2, 10.0);
    if (cap.status[1] != 0)
        fail_msg("%s", cap.msg[1]);
    assert_string_equal(cap.text[1], "two");
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.retries, 1);
    bind_rndc_free(c);
    fake_stop(&f);
    cap_clear(&cap);

    /* A server that closes the idle connection: noticed while idle, no resend needed. */
    fake_start(&f, FK_CLOSE_IDLE);
    cfg = fake_cfg(&f, 3.0);
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 1, 10.0);
    assert_int_equal(cap.status[0], 0);
    run_for(loop, 0.2);
    assert_int_equal(cap.calls, 1); /* an idle drop completes nothing */
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
    run_until(loop, &cap, 2, 10.0);
    assert_int_equal(cap.status[1], 0);
    assert_string_equal(cap.text[1], "two");
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.retries, 0);
    bind_rndc_free(c);
    fake_stop(&f);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

static void test_connection_refused(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t[2] = {{&cap, 0}, {&cap, 1}};
    uint16_t port;

    assert_int_equal(bd_named_free_port(&port, &err), 0);
    bind_rndc_config_t cfg = {.host = "127.0.0.1", .port = port, .key_name = "k",
                              .secret_b64 = "c2VjcmV0LXNlY3JldA==", .timeout = 2.0};
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t[0]), 0);
    assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t[1]), 0);
    run_until(loop, &cap, 2, 5.0);
    assert_int_equal(cap.status[0], BD_EUNAVAIL);
    assert_int_equal(cap.status[1], BD_EUNAVAIL);
    assert_non_null(strstr(cap.msg[0], "refused"));
    bind_rndc_stats_t st;
    bind_rndc_get_stats(c, &st);
    assert_int_equal(st.connects, 1); /* both failed with the one connection attempt */
    assert_int_equal(st.failures, 2);
    bind_rndc_free(c);
    cap_clear(&cap);
    ev_loop_destroy(loop);

    /* The blocking form says the same. */
    bind_rndc_result_t res;
    assert_int_equal(bind_rndc_command_sync(&cfg, "status", &res, &err), BD_EUNAVAIL);
    assert_non_null(strstr(err.msg, "refused"));
}

static void test_fuzzed_replies(void **state)
{
    fake_t f;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    bind_rndc_t *c = NULL;
    bd_err_t err;
    cap_t cap = {0};
    tagged_t t = {&cap, 0};
    enum { N = 250 };

    fake_start(&f, FK_FUZZ);
    bind_rndc_config_t cfg = fake_cfg(&f, 2.0);
    assert_int_equal(bind_rndc_new(loop, &cfg, &c, &err), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(bind_rndc_command(c, "status", cap_cb, &t), 0);
        run_until(loop, &cap, i + 1, 10.0);
        int st = cap.status[i];
        if (st != BD_EPROTO && st != BD_EAUTH && st != BD_ETOOBIG)
            fail_msg("fuzz %d: status %d (%s): %s", i, st, bd_strerror(st), cap.msg[i]);
    }
    bind_rndc_free(c);
    fake_stop(&f);
    cap_clear(&cap);
    ev_loop_destroy(loop);
}

int main(void)
{
    bd_log_init_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_wire_codec),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_oversized_reply),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_cancel_on_free),
        cmocka_unit_test(test_resend_on_reused_connection),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_fuzzed_replies),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_zonestatus),
        cmocka_unit_test(test_algorithms),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_queue_one_connection),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_reconnect_after_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
