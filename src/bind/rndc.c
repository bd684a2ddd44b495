/*
 * rndc.c - the control-channel client: one connection, a FIFO of commands, libev I/O.
 *
 * States of the connection:
 *
 *   IDLE ──connect()──> CONNECTING ──writable──> HANDSHAKE ──nonce reply──> READY
 *    ^                                                                       │  ^
 *    └──────────── any failure (socket closed) ────────────  send command ───┘  │
 *                                                             BUSY ──reply──────┘
 *
 * Only the head of the queue is ever on the wire. Failures while connecting or during the
 * nonce exchange fail every queued command (they would all fail the same way); a failure
 * in BUSY fails the head only, and the next command reconnects. A reused connection found
 * closed before any byte of the reply (named restarted, or dropped an idle connection)
 * sends the head again once on a new connection.
 *
 * Re-entrancy: callbacks may queue commands or free the client. Every libev entry point
 * counts itself in c->depth; bind_rndc_free() inside a callback marks c->freeing, tears
 * the connection down, and the memory goes when the outermost entry point returns.
 */
#include "rndc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "rndc_wire.h"

typedef enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_BUSY } rndc_state_t;

typedef struct rndc_req rndc_req_t;
struct rndc_req {
    rndc_req_t *next;
    bind_rndc_cb_t cb;
    void *arg;
    unsigned sends;  /* times put on the wire */
    char cmd[];
};

struct bind_rndc {
    struct ev_loop *loop;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char peer[INET6_ADDRSTRLEN + 8]; /* "127.0.0.1#953", for messages */
    char key_name[256];
    bind_rndc_alg_t alg;
    uint8_t *secret;
    size_t secret_len;
    double timeout;
    size_t max_reply;

    int fd;
    rndc_state_t st;
    ev_io rio, wio;
    ev_timer tmo;   /* connect + handshake, then each command's reply */
    ev_timer kick;  /* zero-delay: run the queue from the loop, never from the caller */
    uint32_t serial;
    uint32_t nonce;
    bool have_nonce;
    uint32_t expect_ser;
    unsigned conn_done;  /* commands answered on this connection */

    rndc_req_t *head, *tail;
    size_t npending;

    uint8_t *out;        /* message being written */
    size_t out_len, out_off;
    uint8_t hdr[4];      /* length prefix being read */
    size_t hdr_got;
    uint8_t *in;         /* body being read */
    size_t in_len, in_got;

    unsigned depth;
    bool freeing;
    bind_rndc_stats_t stats;
};

static void pump(bind_rndc_t *c);

/* ---- small helpers ---- */

int bind_rndc_alg_parse(const char *name, bind_rndc_alg_t *out)
{
    static const struct {
        const char *name;
        bind_rndc_alg_t alg;
    } algs[] = {
        {"hmac-sha224", BIND_RNDC_HMAC_SHA224},
        {"hmac-sha256", BIND_RNDC_HMAC_SHA256},
        {"hmac-sha384", BIND_RNDC_HMAC_SHA384},
        {"hmac-sha512", BIND_RNDC_HMAC_SHA512},
    };
    if (name == NULL || out == NULL)
        return BD_EINVAL;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcasecmp(name, algs[i].name) == 0) {
            *out = algs[i].alg;
            return 0;
        }
    }
    return BD_EINVAL;
}

const char *bind_rndc_alg_name(bind_rndc_alg_t alg)
{
    switch (alg) {
    case BIND_RNDC_HMAC_SHA224:
        return "hmac-sha224";
    case BIND_RNDC_HMAC_SHA256:
        return "hmac-sha256";
    case BIND_RNDC_HMAC_SHA384:
        return "hmac-sha384";
    case BIND_RNDC_HMAC_SHA512:
        return "hmac-sha512";
    }
    return "unknown";
}

/* Decode a base64 secret (whitespace ignored) into a malloc()ed buffer. */
static int decode_secret(const char *b64, uint8_t **out, size_t *out_len, bd_err_t *err)
{
    size_t n = strlen(b64), m = 0, pad = 0;
    char *clean = NULL;
    uint8_t *raw = NULL;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    clean = malloc(n + 1);
    if (clean == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory decoding the key secret");
    for (size_t i = 0; i < n; i++) {
        if (b64[i] != ' ' && b64[i] != '\t' && b64[i] != '\n' && b64[i] != '\r')
            clean[m++] = b64[i];
    }
    clean[m] = '\0';
    while (pad < m && pad < 2 && clean[m - 1 - pad] == '=')
        pad++;
    if (m == 0 || m % 4 != 0 || memchr(clean, '=', m - pad) != NULL || m / 4 * 3 > INT32_MAX) {
        rc = bd_err_set(err, BD_EINVAL, "key secret is not valid base64");
        goto out;
    }
    raw = malloc(m / 4 * 3 + 1);
    if (raw == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory decoding the key secret");
        goto out;
    }
    int got = EVP_DecodeBlock(raw, (const unsigned char *)clean, (int)m);
    if (got < 0 || (size_t)got < pad) {
        rc = bd_err_set(err, BD_EINVAL, "key secret is not valid base64");
        goto out;
    }
    size_t len = (size_t)got - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    if (len == 0 || len > BIND_RNDC_MAX_SECRET) {
        rc = bd_err_set(err, BD_EINVAL, "key secret must decode to 1..%d bytes, not %zu",
                        BIND_RNDC_MAX_SECRET, len);
        goto out;
    }
    *out = raw;
    *out_len = len;
    raw = NULL;
out:
    if (raw != NULL) {
        OPENSSL_cleanse(raw, m / 4 * 3 + 1);
        free(raw);
    }
    OPENSSL_cleanse(clean, n + 1);
    free(clean);
    return rc;
}

static int parse_addr(bind_rndc_t *c, const char *host, uint16_t port, bd_err_t *err)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addr;

    memset(&c->addr, 0, sizeof(c->addr));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        c->addr_len = sizeof(*sin);
        snprintf(c->peer, sizeof(c->peer), "%s#%u", host, (unsigned)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        c->addr_len = sizeof(*sin6);
        snprintf(c->peer, sizeof(c->peer), "%s#%u", host, (unsigned)port);
        return 0;
    }
    return bd_err_set(err, BD_EINVAL, "rndc server '%s' is not a numeric IP address", host);
}

static int errno_status(int e)
{
    switch (e) {
    case ECONNREFUSED:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EADDRNOTAVAIL:
        return BD_EUNAVAIL;
    case ETIMEDOUT:
        return BD_ETIMEOUT;
    case ENOMEM:
    case ENOBUFS:
        return BD_ENOMEM;
    default:
        return BD_EIO;
    }
}

/* ---- completing requests ---- */

static rndc_req_t *pop_head(bind_rndc_t *c)
{
    rndc_req_t *r = c->head;
    if (r != NULL) {
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        r->next = NULL;
        c->npending--;
    }
    return r;
}

static void fire(bind_rndc_t *c, rndc_req_t *r, const bind_rndc_reply_t *rep)
{
    if (rep->status == 0)
        c->stats.replies++;
    else
        c->stats.failures++;
    r->cb(c, rep, r->arg);
    free(r);
}

static void fire_error(bind_rndc_t *c, rndc_req_t *r, int status, const char *msg)
{
    bind_rndc_reply_t rep = {
        .status = status, .result = BIND_RNDC_R_UNKNOWN, .text = "", .err = NULL, .msg = msg};
    fire(c, r, &rep);
}

/* ---- connection ---- */

static void close_conn(bind_rndc_t *c)
{
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->tmo);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_got = 0;
    c->hdr_got = 0;
    c->have_nonce = false;
    c->nonce = 0;
    c->conn_done = 0;
    c->st = ST_IDLE;
}

static void kick(bind_rndc_t *c)
{
    if (!c->freeing && c->head != NULL && !ev_is_active(&c->kick)) {
        ev_timer_set(&c->kick, 0., 0.);
        ev_timer_start(c->loop, &c->kick);
    }
}

static void arm_timer(bind_rndc_t *c)
{
    ev_timer_stop(c->loop, &c->tmo);
    ev_timer_set(&c->tmo, c->timeout, 0.);
    ev_timer_start(c->loop, &c->tmo);
}

/*
 * The connection failed with status: close it and complete what the state says (see the
 * file comment). lost: the peer went away (EOF, reset, broken pipe) rather than answering
 * wrongly, which allows the one resend of a command on a reused connection.
 */
static void conn_fail(bind_rndc_t *c, int status, bool lost, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conn_fail(bind_rndc_t *c, int status, bool lost, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    rndc_state_t st = c->st;
    bool reused = c->conn_done > 0;
    bool reply_started = c->hdr_got > 0;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    close_conn(c);

    if (st == ST_READY) {
        /* Nothing on the wire: the next command simply reconnects. */
        bd_debug("rndc %s: idle connection dropped: %s", c->peer, msg);
        kick(c);
        return;
    }
    if (st == ST_BUSY) {
        rndc_req_t *r = c->head;
        if (r != NULL && lost && reused && !reply_started && r->sends < 2) {
            c->stats.retries++;
            bd_debug("rndc %s: reused connection lost before the reply (%s); resending '%s'",
                     c->peer, msg, r->cmd);
            kick(c);
            return;
        }
        r = pop_head(c);
        if (r != NULL) {
            bd_debug("rndc %s: '%s' failed: %s", c->peer, r->cmd, msg);
            fire_error(c, r, status, msg);
        }
        kick(c);
        return;
    }
    /* Connecting or handshaking: every queued command would fail the same way. Commands
     * queued by these callbacks are not part of this batch and get their own attempt. */
    rndc_req_t *list = c->head;
    c->head = c->tail = NULL;
    c->npending = 0;
    if (list != NULL)
        bd_debug("rndc %s: connection failed: %s", c->peer, msg);
    while (list != NULL) {
        rndc_req_t *r = list;
        list = r->next;
        r->next = NULL;
        fire_error(c, r, status, msg);
    }
    kick(c);
}

/* Write what is left of c->out; on EAGAIN wait for the socket to be writable. */
static void flush_out(bind_rndc_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->loop, &c->wio);
            return;
        }
        int e = n < 0 ? errno : EPIPE;
        bool lost = e == EPIPE || e == ECONNRESET;
        if (c->st == ST_HANDSHAKE && lost) {
            conn_fail(c, BD_EAUTH, true,
                      "%s closed the control connection on our first request: key '%s' "
                      "(%s) rejected, address not allowed by named's controls, or clocks "
                      "more than 5 minutes apart",
                      c->peer, c->key_name, bind_rndc_alg_name(c->alg));
        } else {
            conn_fail(c, errno_status(e), lost, "sending to %s: %s", c->peer, strerror(e));
        }
        return;
    }
    ev_io_stop(c->loop, &c->wio);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
}

/* Build a signed request with _data.type = type into c->out. */
static int build_request(bind_rndc_t *c, const char *type)
{
    bind_rndc__wbuf_t w;
    uint32_t now = (uint32_t)time(NULL);

    c->serial++;
    c->expect_ser = c->serial;
    bind_rndc__w_init(&w, true);
    bind_rndc__w_table_begin(&w, "_ctrl");
    bind_rndc__w_u32(&w, "_ser", c->serial);
    bind_rndc__w_u32(&w, "_tim", now);
    bind_rndc__w_u32(&w, "_exp", now + 60);
    if (c->have_nonce)
        bind_rndc__w_u32(&w, "_nonce", c->nonce);
    bind_rndc__w_table_end(&w);
    bind_rndc__w_table_begin(&w, "_data");
    bind_rndc__w_str(&w, "type", type);
    bind_rndc__w_table_end(&w);
    free(c->out);
    c->out = NULL;
    c->out_off = 0;
    return bind_rndc__w_finish(&w, c->alg, c->secret, c->secret_len, &c->out, &c->out_len);
}

static void on_connected(bind_rndc_t *c)
{
    c->st = ST_HANDSHAKE;
    int rc = build_request(c, "null");
    if (rc != 0) {
        conn_fail(c, rc, false, "building the nonce request for %s: %s", c->peer,
                  bd_strerror(rc));
        return;
    }
    ev_io_set(&c->rio, c->fd, EV_READ);
    ev_io_start(c->loop, &c->rio);
    flush_out(c);
}

static void start_connect(bind_rndc_t *c)
{
    c->st = ST_CONNECTING;
    c->stats.connects++;
    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        conn_fail(c, errno_status(e), false, "socket for %s: %s", c->peer, strerror(e));
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_set(&c->wio, c->fd, EV_WRITE);
    arm_timer(c);
    if (connect(c->fd, (struct sockaddr *)&c->addr, c->addr_len) == 0) {
        on_connected(c);
        return;
    }
    if (errno == EINPROGRESS || errno == EINTR) {
        ev_io_start(c->loop, &c->wio);
        return;
    }
    int e = errno;
    conn_fail(c, errno_status(e), false, "connecting to %s: %s", c->peer, strerror(e));
}

static void send_command(bind_rndc_t *c)
{
    rndc_req_t *r = c->head;
    int rc = build_request(c, r->cmd);
    if (rc != 0) {
        r = pop_head(c);
        char msg[128];
        snprintf(msg, sizeof(msg), "building the request for %s: %s", c->peer, bd_strerror(rc));
        fire_error(c, r, rc, msg);
        kick(c);
        return;
    }
    r->sends++;
    c->st = ST_BUSY;
    arm_timer(c);
    flush_out(c);
}

static void pump(bind_rndc_t *c)
{
    if (c->freeing || c->head == NULL)
        return;
    if (c->st == ST_IDLE)
        start_connect(c);
    else if (c->st == ST_READY)
        send_command(c);
}

/* ---- replies ---- */

static void handle_reply(bind_rndc_t *c, const uint8_t *msg, size_t len)
{
    bind_rndc__val_t top, ctrl, data;
    bd_err_t e;
    uint32_t ser = 0;
    int rc;

    bd_err_clear(&e);
    rc = bind_rndc__parse(msg, len, c->alg, c->secret, c->secret_len, &top, &e);
    if (rc != 0) {
        conn_fail(c, rc, false, "reply from %s: %s", c->peer, e.msg);
        return;
    }
    if (bind_rndc__lookup_table(&top, "_ctrl", &ctrl) != 0) {
        conn_fail(c, BD_EPROTO, false, "reply from %s has no _ctrl section", c->peer);
        return;
    }
    rc = bind_rndc__lookup_u32(&ctrl, "_ser", &ser);
    if (rc != 0 || ser != c->expect_ser) {
        conn_fail(c, BD_EPROTO, false, "reply from %s answers request %u, expected %u",
                  c->peer, rc == 0 ? (unsigned)ser : 0u, (unsigned)c->expect_ser);
        return;
    }

    if (c->st == ST_HANDSHAKE) {
        uint32_t nonce = 0;
        rc = bind_rndc__lookup_u32(&ctrl, "_nonce", &nonce);
        if (rc != 0 && rc != BD_ENOTFOUND) {
            conn_fail(c, BD_EPROTO, false, "reply from %s has a malformed _nonce", c->peer);
            return;
        }
        c->have_nonce = rc == 0;
        c->nonce = nonce;
        c->st = ST_READY;
        ev_timer_stop(c->loop, &c->tmo);
        bd_debug("rndc %s: connected", c->peer);
        pump(c);
        return;
    }

    /* ST_BUSY */
    if (bind_rndc__lookup_table(&top, "_data", &data) != 0) {
        conn_fail(c, BD_EPROTO, false, "reply from %s has no _data section", c->peer);
        return;
    }
    char *text = NULL, *errs = NULL;
    uint32_t result = 0;
    int rc_res = bind_rndc__lookup_u32(&data, "result", &result);
    int rc_text = bind_rndc__lookup_str(&data, "text", &text);
    int rc_err = bind_rndc__lookup_str(&data, "err", &errs);
    if ((rc_res != 0 && rc_res != BD_ENOTFOUND) || (rc_text != 0 && rc_text != BD_ENOTFOUND) ||
        (rc_err != 0 && rc_err != BD_ENOTFOUND)) {
        free(text);
        free(errs);
        bool oom = rc_text == BD_ENOMEM || rc_err == BD_ENOMEM;
        conn_fail(c, oom ? BD_ENOMEM : BD_EPROTO, false,
                  "reply from %s has a malformed result, text or err", c->peer);
        return;
    }
    if (rc_res == BD_ENOTFOUND)
        result = errs != NULL ? BIND_RNDC_R_UNKNOWN : BIND_RNDC_R_SUCCESS;

    rndc_req_t *r = pop_head(c);
    c->conn_done++;
    c->st = ST_READY;
    ev_timer_stop(c->loop, &c->tmo);
    bind_rndc_reply_t rep = {
        .status = 0, .result = result, .text = text ? text : "", .err = errs, .msg = ""};
    fire(c, r, &rep);
    free(text);
    free(errs);
    if (!c->freeing)
        pump(c);
}

static void handle_eof(bind_rndc_t *c)
{
    if (c->hdr_got > 0) {
        conn_fail(c, BD_EPROTO, true, "%s closed the connection in the middle of a reply",
                  c->peer);
    } else if (c->st == ST_HANDSHAKE) {
        conn_fail(c, BD_EAUTH, true,
                  "%s closed the control connection on our first request: key '%s' (%s) "
                  "rejected, address not allowed by named's controls, or clocks more than "
                  "5 minutes apart",
                  c->peer, c->key_name, bind_rndc_alg_name(c->alg));
    } else if (c->st == ST_READY) {
        /* named 9.18 closes control connections that stay idle for 30 s. */
        conn_fail(c, BD_EIO, true, "%s closed the idle connection", c->peer);
    } else {
        conn_fail(c, BD_EIO, true, "%s closed the connection before replying", c->peer);
    }
}

/* Read from the socket; one complete message at most per call (level-triggered). */
static void on_readable(bind_rndc_t *c)
{
    for (;;) {
        ssize_t n;
        if (c->hdr_got < 4) {
            n = recv(c->fd, c->hdr + c->hdr_got, 4 - c->hdr_got, 0);
        } else {
            n = recv(c->fd, c->in + c->in_got, c->in_len - c->in_got, 0);
        }
        if (n == 0) {
            handle_eof(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            int e = errno;
            if (c->st == ST_HANDSHAKE && c->hdr_got == 0 && e == ECONNRESET) {
                handle_eof(c);
                return;
            }
            conn_fail(c, errno_status(e), e == ECONNRESET, "receiving from %s: %s", c->peer,
                      strerror(e));
            return;
        }
        if (c->st != ST_HANDSHAKE && c->st != ST_BUSY) {
            conn_fail(c, BD_EPROTO, false, "%s sent data while no request was pending",
                      c->peer);
            return;
        }
        if (c->hdr_got < 4) {
            c->hdr_got += (size_t)n;
            if (c->hdr_got < 4)
                continue;
            uint32_t len = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
                           (uint32_t)c->hdr[2] << 8 | c->hdr[3];
            if (len > c->max_reply) {
                conn_fail(c, BD_ETOOBIG, false,
                          "reply from %s announces %u bytes, over the %zu-byte limit", c->peer,
                          (unsigned)len, c->max_reply);
                return;
            }
            if (len < 4) {
                conn_fail(c, BD_EPROTO, false, "reply from %s announces only %u bytes",
                          c->peer, (unsigned)len);
                return;
            }
            c->in = malloc(len);
            if (c->in == NULL) {
                conn_fail(c, BD_ENOMEM, false, "out of memory for a %u-byte reply", len);
                return;
            }
            c->in_len = len;
            c->in_got = 0;
            continue;
        }
        c->in_got += (size_t)n;
        if (c->in_got < c->in_len)
            continue;
        uint8_t *msg = c->in;
        size_t len = c->in_len;
        c->in = NULL;
        c->in_len = c->in_got = 0;
        c->hdr_got = 0;
        handle_reply(c, msg, len);
        free(msg);
        return;
    }
}

/* ---- libev entry points ---- */

static void destroy(bind_rndc_t *c)
{
    if (c->secret != NULL) {
        OPENSSL_cleanse(c->secret, c->secret_len);
        free(c->secret);
    }
    free(c);
}

static void leave(bind_rndc_t *c)
{
    if (--c->depth == 0 && c->freeing)
        destroy(c);
}

static void io_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bind_rndc_t *c = w->data;
    c->depth++;
    on_readable(c);
    leave(c);
}

static void io_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bind_rndc_t *c = w->data;
    c->depth++;
    if (c->st == ST_CONNECTING) {
        int e = 0;
        socklen_t elen = sizeof(e);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
            e = errno;
        ev_io_stop(c->loop, &c->wio);
        if (e != 0)
            conn_fail(c, errno_status(e), false, "connecting to %s: %s", c->peer, strerror(e));
        else
            on_connected(c);
    } else {
        flush_out(c);
    }
    leave(c);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bind_rndc_t *c = w->data;
    c->depth++;
    switch (c->st) {
    case ST_CONNECTING:
        conn_fail(c, BD_ETIMEOUT, false, "connecting to %s timed out after %.1fs", c->peer,
                  c->timeout);
        break;
    case ST_HANDSHAKE:
        conn_fail(c, BD_ETIMEOUT, false, "no reply to the nonce request from %s within %.1fs",
                  c->peer, c->timeout);
        break;
    case ST_BUSY:
        conn_fail(c, BD_ETIMEOUT, false, "no reply to '%s' from %s within %.1fs",
                  c->head ? c->head->cmd : "?", c->peer, c->timeout);
        break;
    case ST_IDLE:
    case ST_READY:
        break;
    }
    leave(c);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bind_rndc_t *c = w->data;
    c->depth++;
    pump(c);
    leave(c);
}

/* ---- public API ---- */

int bind_rndc_new(struct ev_loop *loop, const bind_rndc_config_t *cfg, bind_rndc_t **out,
                  bd_err_t *err)
{
    bind_rndc_t *c = NULL;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (loop == NULL || cfg == NULL || out == NULL || cfg->host == NULL ||
        cfg->secret_b64 == NULL)
        return bd_err_set(err, BD_EINVAL, "rndc: loop, config, host and secret are required");
    if (bind_rndc__alg_dst(cfg->alg) == 0)
        return bd_err_set(err, BD_EINVAL, "rndc: unsupported key algorithm %d", (int)cfg->alg);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bd_err_set(err, BD_ENOMEM, "rndc: out of memory");
    c->fd = -1;
    c->loop = loop;
    c->alg = cfg->alg;
    uint16_t port = cfg->port ? cfg->port : BIND_RNDC_DEFAULT_PORT;
    rc = parse_addr(c, cfg->host, port, err);
    if (rc != 0)
        goto fail;
    snprintf(c->key_name, sizeof(c->key_name), "%s", cfg->key_name ? cfg->key_name : "");
    rc = decode_secret(cfg->secret_b64, &c->secret, &c->secret_len, err);
    if (rc != 0) {
        if (err != NULL) {
            char m[sizeof(err->msg)];
            snprintf(m, sizeof(m), "%s", err->msg);
            bd_err_set(err, rc, "rndc key '%s': %s", c->key_name, m);
        }
        goto fail;
    }
    c->timeout = cfg->timeout > 0 ? cfg->timeout : BIND_RNDC_DEFAULT_TIMEOUT;
    c->max_reply = cfg->max_reply ? cfg->max_reply : BIND_RNDC_DEFAULT_MAX_REPLY;
    if (c->max_reply > UINT32_MAX)
        c->max_reply = UINT32_MAX;
    if (RAND_bytes((unsigned char *)&c->serial, sizeof(c->serial)) != 1)
        c->serial = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
    /* named drops a request whose (_ser, _tim) it has seen in the last 15 minutes as a
     * replay, so serials start at random, as rndc's do. */
    ev_io_init(&c->rio, io_read_cb, -1, EV_READ);
    ev_io_init(&c->wio, io_write_cb, -1, EV_WRITE);
    ev_timer_init(&c->tmo, timeout_cb, 0., 0.);
    ev_timer_init(&c->kick, kick_cb, 0., 0.);
    c->rio.data = c->wio.data = c->tmo.data = c->kick.data = c;
    *out = c;
    return 0;
fail:
    destroy(c);
    return rc;
}

int bind_rndc_command(bind_rndc_t *c, const char *cmd, bind_rndc_cb_t cb, void *arg)
{
    if (c == NULL || cmd == NULL || cb == NULL || cmd[0] == '\0')
        return BD_EINVAL;
    if (c->freeing)
        return BD_EBUSY;
    size_t len = strlen(cmd);
    if (len > BIND_RNDC_MAX_COMMAND)
        return BD_ETOOBIG;
    rndc_req_t *r = malloc(sizeof(*r) + len + 1);
    if (r == NULL)
        return BD_ENOMEM;
    r->next = NULL;
    r->cb = cb;
    r->arg = arg;
    r->sends = 0;
    memcpy(r->cmd, cmd, len + 1);
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
    kick(c);
    return 0;
}

size_t bind_rndc_pending(const bind_rndc_t *c)
{
    return c ? c->npending : 0;
}

void bind_rndc_get_stats(const bind_rndc_t *c, bind_rndc_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (c != NULL)
        *out = c->stats;
}

void bind_rndc_free(bind_rndc_t *c)
{
    if (c == NULL || c->freeing)
        return;
    c->freeing = true;
    c->depth++;
    close_conn(c);
    ev_timer_stop(c->loop, &c->kick);
    rndc_req_t *list = c->head;
    c->head = c->tail = NULL;
    c->npending = 0;
    char msg[128];
    snprintf(msg, sizeof(msg), "request canceled: rndc client for %s freed", c->peer);
    while (list != NULL) {
        rndc_req_t *r = list;
        list = r->next;
        r->next = NULL;
        fire_error(c, r, BD_ECANCELED, msg);
    }
    leave(c);
}

/* ---- blocking convenience ---- */

typedef struct sync_state {
    bool done;
    int status;
    bind_rndc_result_t res;
    char msg[512];
} sync_state_t;

static void sync_cb(bind_rndc_t *c, const bind_rndc_reply_t *rep, void *arg)
{
    sync_state_t *s = arg;
    s->done = true;
    s->status = rep->status;
    snprintf(s->msg, sizeof(s->msg), "%s", rep->msg);
    if (rep->status != 0)
        return;
    s->res.result = rep->result;
    s->res.text = strdup(rep->text);
    s->res.err = rep->err ? strdup(rep->err) : NULL;
    if (s->res.text == NULL || (rep->err != NULL && s->res.err == NULL)) {
        bind_rndc_result_deinit(&s->res);
        s->status = BD_ENOMEM;
        snprintf(s->msg, sizeof(s->msg), "out of memory copying the reply");
    }
}

int bind_rndc_command_sync(const bind_rndc_config_t *cfg, const char *cmd,
                           bind_rndc_result_t *out, bd_err_t *err)
{
    struct ev_loop *loop = NULL;
    bind_rndc_t *c = NULL;
    sync_state_t s;
    int rc;

    memset(&s, 0, sizeof(s));
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (out == NULL)
        return bd_err_set(err, BD_EINVAL, "rndc: out is required");
    loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL)
        return bd_err_set(err, BD_ENOMEM, "rndc: cannot create an event loop");
    rc = bind_rndc_new(loop, cfg, &c, err);
    if (rc != 0)
        goto out;
    rc = bind_rndc_command(c, cmd, sync_cb, &s);
    if (rc != 0) {
        bd_err_set(err, rc, "rndc: cannot queue command: %s", bd_strerror(rc));
        goto out;
    }
    /* The client's own timer bounds every phase, so this ends. */
    while (!s.done) {
        if (!ev_run(loop, EVRUN_ONCE) && !s.done) {
            rc = bd_err_set(err, BD_EINTERNAL, "rndc: event loop ran dry before the reply");
            goto out;
        }
    }
    rc = s.status;
    if (rc != 0) {
        bd_err_set(err, rc, "%s", s.msg);
        goto out;
    }
    *out = s.res;
    memset(&s.res, 0, sizeof(s.res));
out:
    bind_rndc_free(c);
    bind_rndc_result_deinit(&s.res);
    ev_loop_destroy(loop);
    return rc;
}

void bind_rndc_result_deinit(bind_rndc_result_t *out)
{
    if (out == NULL)
        return;
    free(out->text);
    free(out->err);
    memset(out, 0, sizeof(*out));
}
