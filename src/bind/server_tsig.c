/*
 * server_tsig.c - TSIG keys and the TSIG calls of the server, on top of ldns
 * (ldns_pkt_tsig_sign_next / ldns_pkt_tsig_verify_next) and OpenSSL (random secrets,
 * base64).
 *
 * What ldns 1.8 does and does not do, and what this file adds:
 *   - ldns wants the secret as base64 text and the algorithm as a name ("hmac-sha256.");
 *     it knows hmac-md5, -sha1, -sha256, -sha512 ("hmac-sha384." is misspelled in its
 *     table, so it cannot be used).
 *   - ldns_pkt_tsig_sign_next(..., prior_mac, 1) computes the "timers only" MAC of the
 *     second and later messages of a transfer (RFC 8945 section 5.3.1): prior MAC, the
 *     message, time signed, fudge.
 *   - verify does not look at the time: the fudge check (BADTIME) is here.
 *   - verify detaches the TSIG RR from the packet and leaves it detached when it fails
 *     internally (bad base64, unknown algorithm): we put it back, or it would leak.
 */
#include "server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "log.h"
#include "zonedb.h"

static const struct {
    const char *name; /* named.conf */
    const char *ldns; /* ldns / wire */
    size_t len;       /* hash bytes = generated secret bytes */
    const EVP_MD *(*md)(void);
} algs[] = {
    [BIND_SERVER_HMAC_SHA256] = {"hmac-sha256", "hmac-sha256.", 32, EVP_sha256},
    [BIND_SERVER_HMAC_SHA512] = {"hmac-sha512", "hmac-sha512.", 64, EVP_sha512},
};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

int bind_server_alg_parse(const char *name, bind_server_alg_t *out)
{
    for (size_t i = 0; name != NULL && i < NALGS; i++) {
        if (strcasecmp(name, algs[i].name) == 0) {
            *out = (bind_server_alg_t)i;
            return BD_OK;
        }
    }
    return BD_EINVAL;
}

const char *bind_server_alg_name(bind_server_alg_t alg)
{
    return (size_t)alg < NALGS ? algs[alg].name : "unknown";
}

static int key_name_ok(const char *name)
{
    char canon[BIND_SERVER_KEY_NAME_MAX + 2];
    if (name == NULL || strlen(name) > BIND_SERVER_KEY_NAME_MAX)
        return BD_EINVAL;
    return bind_zonedb_canon_name(name, canon, sizeof(canon)) == 0 ? BD_OK : BD_EINVAL;
}

int bind_server_key_generate(bind_server_key_t *key, const char *name, bind_server_alg_t alg)
{
    if ((size_t)alg >= NALGS || key_name_ok(name) != 0)
        return BD_EINVAL;
    memset(key, 0, sizeof(*key));
    snprintf(key->name, sizeof(key->name), "%s", name);
    key->alg = alg;
    key->secret_len = algs[alg].len;
    if (RAND_bytes(key->secret, (int)key->secret_len) != 1) {
        bind_server_key_wipe(key);
        return BD_EINTERNAL;
    }
    return BD_OK;
}

int bind_server_key_from_b64(bind_server_key_t *key, const char *name, bind_server_alg_t alg,
                             const char *secret_b64)
{
    unsigned char buf[BIND_SERVER_SECRET_MAX + 3];
    size_t len = secret_b64 ? strlen(secret_b64) : 0;
    int rc = BD_EINVAL;

    if ((size_t)alg >= NALGS || key_name_ok(name) != 0)
        return BD_EINVAL;
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf))
        return BD_EINVAL;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)secret_b64, (int)len);
    if (n < 0)
        goto cleanup;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (secret_b64[len - 1] == '=')
        n--;
    if (secret_b64[len - 2] == '=')
        n--;
    if (n <= 0 || (size_t)n > BIND_SERVER_SECRET_MAX)
        goto cleanup;
    memset(key, 0, sizeof(*key));
    snprintf(key->name, sizeof(key->name), "%s", name);
    key->alg = alg;
    key->secret_len = (size_t)n;
    memcpy(key->secret, buf, (size_t)n);
    rc = BD_OK;
cleanup:
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

int bind_server_key_b64(const bind_server_key_t *key, char *buf, size_t cap)
{
    size_t need = (key->secret_len + 2) / 3 * 4 + 1;
    if (key->secret_len == 0 || key->secret_len > BIND_SERVER_SECRET_MAX)
        return BD_EINVAL;
    if (cap < need)
        return BD_ETOOBIG;
    EVP_EncodeBlock((unsigned char *)buf, key->secret, (int)key->secret_len);
    return BD_OK;
}

void bind_server_key_wipe(bind_server_key_t *key)
{
    if (key != NULL)
        OPENSSL_cleanse(key, sizeof(*key));
}

/* ---- server side ---- */

static void tsig_clear(server_tsig_t *t)
{
    ldns_rdf_deep_free(t->name_rdf);
    ldns_rdf_deep_free(t->alg_rdf);
    if (t->b64 != NULL) {
        OPENSSL_cleanse(t->b64, strlen(t->b64));
        free(t->b64);
    }
    OPENSSL_cleanse(t->secret, sizeof(t->secret));
    memset(t, 0, sizeof(*t));
}

int server__tsig_set(server_tsig_t *t, const bind_server_key_t *key)
{
    server_tsig_t n;
    memset(&n, 0, sizeof(n));
    if (key == NULL) {
        tsig_clear(t);
        return BD_OK;
    }
    if ((size_t)key->alg >= NALGS || key->secret_len == 0 ||
        key->secret_len > BIND_SERVER_SECRET_MAX)
        return BD_EINVAL;
    if (bind_zonedb_canon_name(key->name, n.name, sizeof(n.name)) != 0)
        return BD_EINVAL;
    n.alg = algs[key->alg].ldns;
    n.name_rdf = ldns_dname_new_frm_str(n.name);
    n.alg_rdf = ldns_dname_new_frm_str(n.alg);
    size_t blen = (key->secret_len + 2) / 3 * 4 + 1;
    n.b64 = malloc(blen);
    if (n.name_rdf == NULL || n.alg_rdf == NULL || n.b64 == NULL) {
        tsig_clear(&n);
        return BD_ENOMEM;
    }
    EVP_EncodeBlock((unsigned char *)n.b64, key->secret, (int)key->secret_len);
    memcpy(n.secret, key->secret, key->secret_len);
    n.secret_len = key->secret_len;
    n.md = algs[key->alg].md();
    n.set = true;
    tsig_clear(t);
    *t = n;
    return BD_OK;
}

void server__tsig_deinit(server_tsig_t *t) { tsig_clear(t); }

const ldns_rdf *server__tsig_mac(const ldns_pkt *pkt)
{
    const ldns_rr *t = ldns_pkt_tsig(pkt);
    return t != NULL && ldns_rr_rd_count(t) >= 7 ? ldns_rr_rdf(t, 3) : NULL;
}

static uint64_t tsig_time(const ldns_rdf *r)
{
    uint64_t v = 0;
    if (r == NULL || ldns_rdf_size(r) != 6)
        return 0;
    const uint8_t *p = ldns_rdf_data(r);
    for (int i = 0; i < 6; i++)
        v = (v << 8) | p[i];
    return v;
}

server_tsig_result_t server__tsig_verify(const server_tsig_t *t, ldns_pkt *pkt,
                                         const uint8_t *wire, size_t len,
                                         const ldns_rdf *prior_mac, char *keyname, size_t cap)
{
    ldns_rr *tsig = ldns_pkt_tsig(pkt);
    if (cap > 0)
        keyname[0] = '\0';
    if (tsig == NULL)
        return SERVER_TSIG_NONE;
    char *kn = ldns_rdf2str(ldns_rr_owner(tsig));
    if (kn != NULL && cap > 0)
        snprintf(keyname, cap, "%s", kn);
    free(kn);
    if (!t->set || ldns_rr_rd_count(tsig) < 7)
        return SERVER_TSIG_BADKEY;
    if (ldns_dname_compare(ldns_rr_owner(tsig), t->name_rdf) != 0 ||
        ldns_rdf_get_type(ldns_rr_rdf(tsig, 0)) != LDNS_RDF_TYPE_DNAME ||
        ldns_dname_compare(ldns_rr_rdf(tsig, 0), t->alg_rdf) != 0)
        return SERVER_TSIG_BADKEY;

    uint16_t id = ldns_pkt_id(pkt);
    bool ok = ldns_pkt_tsig_verify_next(pkt, wire, len, t->name, t->b64, prior_mac, 0);
    if (ldns_pkt_tsig(pkt) == NULL)
        ldns_pkt_set_tsig(pkt, tsig);
    ldns_pkt_set_id(pkt, id);
    if (!ok)
        return SERVER_TSIG_BADSIG;

    uint64_t signed_at = tsig_time(ldns_rr_rdf(tsig, 1));
    uint16_t fudge = ldns_rdf2native_int16(ldns_rr_rdf(tsig, 2));
    uint64_t now = (uint64_t)time(NULL);
    uint64_t skew = now > signed_at ? now - signed_at : signed_at - now;
    if (skew > fudge)
        return SERVER_TSIG_BADTIME;
    return SERVER_TSIG_OK;
}

int server__tsig_sign(const server_tsig_t *t, ldns_pkt *pkt, const ldns_rdf *prior_mac,
                      bool timers_only)
{
    if (!t->set || ldns_pkt_tsig(pkt) != NULL)
        return BD_EINTERNAL;
    ldns_status st = ldns_pkt_tsig_sign_next(pkt, t->name, t->b64, SERVER_TSIG_FUDGE, t->alg,
                                             prior_mac, timers_only ? 1 : 0);
    if (st != LDNS_STATUS_OK) {
        bd_error("TSIG: cannot sign with key '%s': %s", t->name, ldns_get_errorstr_by_id(st));
        return BD_EINTERNAL;
    }
    return BD_OK;
}

/* Now as TSIG's 48-bit time signed. */
static void time_signed(uint8_t when[6])
{
    uint64_t now = (uint64_t)time(NULL);
    for (int i = 5; i >= 0; i--) {
        when[i] = (uint8_t)(now & 0xff);
        now >>= 8;
    }
}

/* A TSIG RR (RFC 8945 4.2; owned by the caller), NULL without memory. */
static ldns_rr *tsig_rr_new(const ldns_rdf *name, const ldns_rdf *alg, const uint8_t when[6], const uint8_t *mac,
                            size_t maclen, uint16_t orig_id, uint16_t error)
{
    ldns_rr *rr = ldns_rr_new();
    ldns_rdf *owner = ldns_rdf_clone(name);
    ldns_rdf *rd[7] = {
        ldns_rdf_clone(alg),
        ldns_rdf_new_frm_data(LDNS_RDF_TYPE_TSIGTIME, 6, when),
        ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, SERVER_TSIG_FUDGE),
        ldns_native2rdf_int16_data(maclen, (uint8_t *)mac), /* copied; ldns takes it non-const */
        ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, orig_id),
        ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, error),
        ldns_native2rdf_int16_data(0, NULL),
    };
    bool ok = rr != NULL && owner != NULL;
    for (int i = 0; i < 7; i++)
        ok = ok && rd[i] != NULL;
    if (!ok) {
        ldns_rdf_deep_free(owner);
        for (int i = 0; i < 7; i++)
            ldns_rdf_deep_free(rd[i]);
        ldns_rr_free(rr);
        return NULL;
    }
    ldns_rr_set_type(rr, LDNS_RR_TYPE_TSIG);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);
    ldns_rr_set_ttl(rr, 0);
    ldns_rr_set_owner(rr, owner);
    for (int i = 0; i < 7; i++)
        ldns_rr_push_rdf(rr, rd[i]);
    return rr;
}

int server__tsig_sign_wire(const server_tsig_t *t, uint8_t **wire, size_t *len, const ldns_rdf *prior_mac,
                           bool timers_only, ldns_rdf **mac_out)
{
    int rc = BD_ENOMEM;
    ldns_buffer *in = NULL, *out = NULL;
    ldns_rr *rr = NULL;
    uint8_t when[6], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    *mac_out = NULL;
    if (!t->set || *len < LDNS_HEADER_SIZE)
        return BD_EINTERNAL;
    time_signed(when);
    /* what the MAC covers, in ldns_pkt_tsig_sign_next's order (RFC 8945 4.3.1-4.3.3) */
    if ((in = ldns_buffer_new(*len + 600)) == NULL)
        goto out;
    if (prior_mac != NULL)
        ldns_rdf2buffer_wire(in, prior_mac); /* MAC size, MAC */
    ldns_buffer_write(in, *wire, *len);
    if (!timers_only) {
        ldns_rdf2buffer_wire(in, t->name_rdf); /* canonical (lower case) since set */
        ldns_buffer_write_u16(in, LDNS_RR_CLASS_ANY);
        ldns_buffer_write_u32(in, 0);
        ldns_rdf2buffer_wire(in, t->alg_rdf);
    }
    ldns_buffer_write(in, when, sizeof(when));
    ldns_buffer_write_u16(in, SERVER_TSIG_FUDGE);
    if (!timers_only) {
        ldns_buffer_write_u16(in, 0); /* error */
        ldns_buffer_write_u16(in, 0); /* other len */
    }
    if (ldns_buffer_status(in) != LDNS_STATUS_OK)
        goto out;
    rc = BD_EINTERNAL;
    if (HMAC(t->md, t->secret, (int)t->secret_len, ldns_buffer_begin(in), ldns_buffer_position(in), md, &mdlen) ==
        NULL)
        goto out;
    rc = BD_ENOMEM;
    /* the TSIG RR, encoded by ldns and appended: owner and algorithm uncompressed */
    if ((rr = tsig_rr_new(t->name_rdf, t->alg_rdf, when, md, mdlen, LDNS_ID_WIRE(*wire), 0)) == NULL)
        goto out;
    if ((out = ldns_buffer_new(512)) == NULL || ldns_rr2buffer_wire(out, rr, LDNS_SECTION_ADDITIONAL) != LDNS_STATUS_OK)
        goto out;
    size_t add = ldns_buffer_position(out);
    uint8_t *grown = realloc(*wire, *len + add);
    if (grown == NULL)
        goto out;
    memcpy(grown + *len, ldns_buffer_begin(out), add);
    ldns_write_uint16(grown + LDNS_ARCOUNT_OFF, (uint16_t)(LDNS_ARCOUNT(grown) + 1));
    *wire = grown;
    *len += add;
    if ((*mac_out = ldns_rdf_clone(ldns_rr_rdf(rr, 3))) == NULL)
        goto out;
    rc = BD_OK;
out:
    ldns_buffer_free(in);
    ldns_buffer_free(out);
    ldns_rr_free(rr);
    return rc;
}

int server__tsig_error(ldns_pkt *resp, const ldns_pkt *req, uint16_t error)
{
    const ldns_rr *qt = ldns_pkt_tsig(req);
    uint8_t when[6];
    if (qt == NULL || ldns_rr_owner(qt) == NULL || ldns_rr_rd_count(qt) < 1)
        return BD_EINVAL;
    time_signed(when);
    ldns_rr *rr = tsig_rr_new(ldns_rr_owner(qt), ldns_rr_rdf(qt, 0), when, NULL, 0, ldns_pkt_id(req), error);
    if (rr == NULL)
        return BD_ENOMEM;
    ldns_pkt_set_tsig(resp, rr);
    return BD_OK;
}
