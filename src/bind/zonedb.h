/*
 * zonedb.h - the zones bindy serves as hidden primary, in memory.
 *
 * One bind_zonedb_t holds any number of zones, by name. Names are compared
 * case-insensitively; everything this module hands out uses the canonical form (lower
 * case, absolute: "example.com."). Each zone holds its SOA and its other RRs in a
 * red-black tree of RRsets keyed by (canonical owner, type), in DNSSEC canonical order
 * (RFC 4034 section 6.1); the RRs of one RRset sit in a sorted array. So adding or
 * removing one RR costs O(log n + size of its RRset), never O(zone size).
 *
 * Updates are diffs: bind_zonedb_apply(zone, removed, added, new_serial). The owner (the
 * projector) computes serials; zonedb only checks that each new serial is greater than the
 * current one in RFC 1982 arithmetic and writes it into the SOA it keeps. The last diffs
 * of each zone (bounded by count and bytes) stay in memory, so an IXFR from a recent
 * serial gets one condensed diff (RFC 1995 section 4); an unknown or too-old serial gets
 * the whole zone (AXFR-style answer, as RFC 1995 allows).
 *
 * Transfers read a bind_zonedb_xfr_t: an immutable list of the RRs to send, in order,
 * taken in O(n) pointer copies (RRs are reference-counted and shared with the zone), so a
 * transfer in progress is unaffected by later changes and can be written out over many
 * loop iterations.
 *
 * Change hooks: the owner of a side effect (the server, to send NOTIFY) registers a hook;
 * it runs synchronously at the end of every successful apply/remove.
 *
 * RRs cross this API as ldns objects (ldns_rr, ldns_rr_list). Inputs are borrowed and
 * copied; outputs say who owns them.
 *
 * Threads: none inside. A bind_zonedb_t and its xfr objects belong to one thread (the
 * loop thread). Errors: 0 or a BD_E* code (err.h); with a message in err where taken.
 */
#ifndef BIND_ZONEDB_H
#define BIND_ZONEDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ldns/ldns.h>

#include "err.h"

typedef struct bind_zonedb bind_zonedb_t;
typedef struct bind_zonedb_xfr bind_zonedb_xfr_t;

#define BIND_ZONEDB_DEFAULT_HISTORY 64                      /* diffs kept per zone */
#define BIND_ZONEDB_DEFAULT_HISTORY_BYTES (4u * 1024 * 1024) /* wire bytes kept per zone */
#define BIND_ZONEDB_MAX_HOOKS 8

typedef struct bind_zonedb_config {
    size_t max_history;       /* diffs kept per zone; 0: BIND_ZONEDB_DEFAULT_HISTORY */
    size_t max_history_bytes; /* bytes (uncompressed wire) of the diffs kept per zone; 0:
                                 BIND_ZONEDB_DEFAULT_HISTORY_BYTES. A diff larger than this
                                 is not kept at all: IXFR across it falls back to AXFR. */
} bind_zonedb_config_t;

typedef enum {
    BIND_ZONEDB_CREATED = 0,
    BIND_ZONEDB_UPDATED,
    BIND_ZONEDB_REMOVED,
} bind_zonedb_event_t;

/* zone: canonical name, borrowed for the call. serial: the zone's serial after the change
 * (its last serial for REMOVED). The hook must not free db; it may read it. */
typedef void (*bind_zonedb_hook_fn)(void *arg, const char *zone, uint32_t serial,
                                    bind_zonedb_event_t ev);

/* ---- RFC 1982 serial arithmetic ---- */

/* true when a is greater than b in RFC 1982 arithmetic (a != b and the distance from b to
 * a, going up, is below 2^31). Distance exactly 2^31 is undefined by the RFC: false. */
bool bind_zonedb_serial_gt(uint32_t a, uint32_t b);

/* ---- lifetime ---- */

/* cfg may be NULL (defaults). *out set only on success. Returns 0 or BD_ENOMEM. */
int bind_zonedb_new(bind_zonedb_t **out, const bind_zonedb_config_t *cfg);

/* Frees every zone. Outstanding bind_zonedb_xfr_t stay valid (they hold their own
 * references) and are freed separately. NULL is a no-op. */
void bind_zonedb_free(bind_zonedb_t *db);

/* Register fn(arg, ...) for every change. Returns 0, BD_EEXISTS (same fn and arg already
 * registered), BD_EFULL (BIND_ZONEDB_MAX_HOOKS already). */
int bind_zonedb_add_hook(bind_zonedb_t *db, bind_zonedb_hook_fn fn, void *arg);
/* Returns 0 or BD_ENOTFOUND. Safe to call from inside a hook. */
int bind_zonedb_remove_hook(bind_zonedb_t *db, bind_zonedb_hook_fn fn, void *arg);

/* ---- changes ---- */

/*
 * Apply one diff to zone (any case, with or without the final dot) and set its serial.
 *
 * Zone absent: it is created. removed must be empty (or NULL) and added must hold exactly
 * one SOA, owned by the apex; every RR must be class IN and at or below the apex.
 * Zone present: every RR of removed must be in the zone (compared by owner, type and
 * rdata; the TTL is ignored), every RR of added must not be (after the removals), and
 * new_serial must be greater than the current serial (RFC 1982).
 * SOA handling: the SOA is the module's. An SOA in removed is ignored; an SOA in added
 * replaces the SOA's other fields (names, timers, TTL). The kept SOA always carries
 * new_serial, whatever serial the given SOA had.
 * RRs are copied (owners lower-cased); the lists stay the caller's.
 *
 * All or nothing: on any error the zone is unchanged. Costs O(k log n) for a diff of k
 * RRs on a zone of n. The hooks run after a successful change.
 *
 * Returns 0; BD_EINVAL (bad zone name, RR outside the zone, wrong class, meta type, no SOA
 * or two SOAs, removed not empty on creation, an RR removed twice); BD_ECONFLICT
 * (new_serial not greater);
 * BD_ENOTFOUND (an RR of removed is not in the zone); BD_EEXISTS (an RR of added already
 * is, or is given twice); BD_ENOMEM. err (may be NULL) says which RR.
 */
int bind_zonedb_apply(bind_zonedb_t *db, const char *zone, const ldns_rr_list *removed,
                      const ldns_rr_list *added, uint32_t new_serial, bd_err_t *err);

/* Drop a zone and its history. Returns 0, BD_ENOTFOUND, BD_EINVAL (bad name). */
int bind_zonedb_remove(bind_zonedb_t *db, const char *zone);

/* ---- reading ---- */

/* Current serial. Returns 0, BD_ENOTFOUND, BD_EINVAL. *serial written only on success. */
int bind_zonedb_serial(const bind_zonedb_t *db, const char *zone, uint32_t *serial);

/* The zone's SOA (borrowed; valid until the next change to that zone), NULL if absent. */
const ldns_rr *bind_zonedb_soa(const bind_zonedb_t *db, const char *zone);

/* Same, for a zone given as an ldns dname (the server's hot path: no string conversion). */
const ldns_rr *bind_zonedb_soa_dname(const bind_zonedb_t *db, const ldns_rdf *zone);

size_t bind_zonedb_zone_count(const bind_zonedb_t *db);

/* RRs in zone, SOA included; 0 when absent. */
size_t bind_zonedb_rr_count(const bind_zonedb_t *db, const char *zone);

/* Diffs currently kept for zone (0 when absent). */
size_t bind_zonedb_history_count(const bind_zonedb_t *db, const char *zone);

/*
 * Copies of the RRs of one RRset (owner: absolute or relative to zone; type: an
 * LDNS_RR_TYPE_* value) into *out (new list, the caller frees it with
 * ldns_rr_list_deep_free). O(log n). Returns 0 (possibly an empty list), BD_ENOTFOUND
 * (no such zone), BD_EINVAL, BD_ENOMEM. *out set only on success.
 */
int bind_zonedb_lookup(const bind_zonedb_t *db, const char *zone, const char *owner,
                       uint16_t type, ldns_rr_list **out);

/* Call fn for each zone, in canonical order, with its canonical name and serial. Stops
 * and returns fn's value when it is not 0. fn must not change db. */
int bind_zonedb_foreach(const bind_zonedb_t *db,
                        int (*fn)(void *arg, const char *zone, uint32_t serial), void *arg);

/* ---- transfers ---- */

typedef enum {
    BIND_ZONEDB_XFR_AXFR = 0, /* SOA, every other RR, SOA */
    BIND_ZONEDB_XFR_IXFR,     /* SOA(new), SOA(old), removed..., SOA(new), added..., SOA(new) */
    BIND_ZONEDB_XFR_UPTODATE, /* just SOA(new): the client has this serial or a newer one */
} bind_zonedb_xfr_kind_t;

/* The RRs of an AXFR of zone, in order. *out set only on success.
 * Returns 0, BD_ENOTFOUND, BD_EINVAL, BD_ENOMEM. O(n). */
int bind_zonedb_axfr(const bind_zonedb_t *db, const ldns_rdf *zone, bind_zonedb_xfr_t **out);

/*
 * The RRs of the answer to an IXFR from client_serial (RFC 1995): UPTODATE when
 * client_serial is the current serial or newer; IXFR (one condensed diff from
 * client_serial to now) when the history reaches back to it; otherwise AXFR.
 * Costs O(size of the diffs walked) for IXFR. Returns as bind_zonedb_axfr.
 */
int bind_zonedb_ixfr(const bind_zonedb_t *db, const ldns_rdf *zone, uint32_t client_serial,
                     bind_zonedb_xfr_t **out);

bind_zonedb_xfr_kind_t bind_zonedb_xfr_kind(const bind_zonedb_xfr_t *x);
uint32_t bind_zonedb_xfr_serial(const bind_zonedb_xfr_t *x); /* serial being sent */
size_t bind_zonedb_xfr_count(const bind_zonedb_xfr_t *x);
/* RR i (borrowed; valid until bind_zonedb_xfr_free), NULL past the end. */
const ldns_rr *bind_zonedb_xfr_rr(const bind_zonedb_xfr_t *x, size_t i);
void bind_zonedb_xfr_free(bind_zonedb_xfr_t *x); /* NULL is a no-op */

/* ---- helpers ---- */

/*
 * Parse zone-file text, one RR per line (no parentheses), into *out (new list; free it
 * with ldns_rr_list_deep_free). Blank lines and ';' comments are skipped; "$TTL n" and
 * "$ORIGIN name" lines are honoured; a line starting with white space reuses the previous
 * owner. origin: for relative names (NULL: names must be absolute). default_ttl: for RRs
 * without a TTL. Returns 0, BD_EPARSE (err names the line), BD_ENOMEM.
 */
int bind_zonedb_parse_rrs(const char *text, const char *origin, uint32_t default_ttl,
                          ldns_rr_list **out, bd_err_t *err);

/*
 * Canonical form of a zone or owner name ("Example.COM" -> "example.com.") into buf.
 * Returns 0, BD_EINVAL (not a valid name), BD_ETOOBIG (cap too small; 256 always fits
 * names without escapes, 1024 fits every name).
 */
int bind_zonedb_canon_name(const char *name, char *buf, size_t cap);

/*
 * Work counter: tree key comparisons plus RR moves inside RRset arrays, since db was
 * created. For tests that check a change costs O(change), by counting, not timing.
 */
uint64_t bind_zonedb_ops(const bind_zonedb_t *db);

#endif
