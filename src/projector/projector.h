/*
 * projector.h - the desired state, as a pure and deterministic function of the journal.
 *
 * Feed it journal events in seq order (proj_apply); it keeps the resource set and the
 * state derived from it: for every zone its SOA, apex NS and glue and RRsets; which
 * instances serve which zones; one catalog zone per instance (RFC 9432); the status of
 * every object (Ready, or why not). Nothing here reads a clock, the network or the disk,
 * and all output is sorted, so every operator replica that applied the same events holds
 * byte-identical state, and a restore that replays a journal prefix rebuilds exactly the
 * state of that moment.
 *
 * Cost. An event costs time proportional to what it touches: a record event re-evaluates
 * only the owner names it contributes to, in the zones that select it; a DNSZone event
 * rebuilds that zone; an instance event re-evaluates membership and catalogs.
 *
 * Membership. A DNSZone is served by the instances its bind9InstancesFrom selectors pick
 * (in its namespace; entries are OR'd) plus every instance whose clusterRef equals the
 * zone's clusterRef. A record joins every zone of its namespace whose recordsFrom selects
 * its labels and whose name contains the record's owner name.
 *
 * Topology. A primary instance consumes its catalog from bindy (the hidden primary). A
 * secondary consumes its catalog from its upstream primaries: the primary instances with
 * the same clusterRef, or without one, the primaries of its namespace. Those primaries
 * carry the secondary's zones and its catalog zone in their own catalogs, so secondaries
 * receive everything by transfer from primaries. A secondary with no upstream primary
 * consumes from bindy directly.
 *
 * Conflicts are resolved deterministically, the oldest object winning (creationTimestamp,
 * then first journal seq, then kind/namespace/name), and reported on the losers:
 * DuplicateZone, CnameConflict, RecordConflict (same name and type with another TTL).
 *
 * Serials. Every event that changes a zone's content advances its serial by one
 * (RFC 1982), never below spec.soaRecord.serial nor below a floor set with
 * proj_serial_floor (a new leader raises it above what servers already publish).
 */
#ifndef BD_PROJECTOR_H
#define BD_PROJECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "journal.h"
#include "resource.h"

typedef struct proj proj_t;

typedef struct {
    /* Catalog zone of an instance is "<name>.<namespace>.<catalog_suffix>". */
    const char *catalog_suffix; /* default "catalog.bindy.invalid" */
} proj_opts_t;

/* New empty projector; opts may be NULL. Free with proj_free. BD_ENOMEM, BD_EINTERNAL. */
int proj_new(const proj_opts_t *opts, proj_t **out, bd_err_t *err);
void proj_free(proj_t *p);

/*
 * Apply one event (borrowed; the object gains a reference where kept). Events of kinds
 * that are not bindy's and markers are ignored. An object that fails validation keeps
 * its last valid version in the projection and gets Ready=False/InvalidSpec. An object
 * with metadata.deletionTimestamp (held by a finalizer) leaves the projection as if
 * DELETED; its later events change nothing.
 * Returns BD_OK, or BD_ENOMEM (the projector must then be rebuilt: it may be partial).
 */
int proj_apply(proj_t *p, const jnl_event_t *ev, bd_err_t *err);

/* The seq of the last event applied (0 before any). */
uint64_t proj_seq(const proj_t *p);

/* Raise a zone's serial to at least floor (serial arithmetic); a change if it moves. */
int proj_serial_floor(proj_t *p, const char *zone, uint32_t floor);

/* ---- zones ---- */

typedef struct proj_zone proj_zone_t;

/* Zones (DNS zones and catalog zones) sorted by name; borrowed until the next apply. */
const proj_zone_t **proj_zones(const proj_t *p, size_t *n);
const proj_zone_t *proj_zone_get(const proj_t *p, const char *name);
const char *proj_zone_name(const proj_zone_t *z); /* "example.com" (no trailing dot) */
bool proj_zone_is_catalog(const proj_zone_t *z);
uint32_t proj_zone_serial(const proj_zone_t *z);
/* "example.com. 3600 IN SOA ns1.example.com. admin.example.com. 7 3600 600 604800 86400" */
int proj_zone_soa(const proj_zone_t *z, char **out);
/* Every RR but the SOA, one presentation-format line each, sorted; caller frees the
 * vector with res_strv_deinit. */
int proj_zone_rrs(const proj_zone_t *z, res_strv_t *out);
/* Keys ("namespace/name") of the instances that serve the zone, sorted (borrowed). */
const res_strv_t *proj_zone_instances(const proj_zone_t *z);

/* ---- instances ---- */

typedef struct {
    const char *key;          /* "namespace/name" */
    const res_t *res;         /* last valid Bind9Instance (borrowed) */
    uint64_t version;         /* changes whenever res is replaced */
    const char *catalog;      /* its catalog zone name */
    res_strv_t zones;         /* zones it serves (its catalog's members but catalogs), sorted */
    res_strv_t upstream;      /* secondaries: upstream primary instance keys; empty: bindy */
} proj_instance_t;

/* Instances sorted by key; borrowed until the next apply. */
const proj_instance_t **proj_instances(const proj_t *p, size_t *n);

/* The last valid version of an object (borrowed until the next apply), or NULL. */
const res_t *proj_resource(const proj_t *p, const char *kind, const char *ns, const char *name);

/* ---- changes since the last proj_take_changes ---- */

typedef struct {
    char *zone;
    uint32_t serial; /* the new serial */
    bool created, deleted;
    res_strv_t removed, added; /* RR lines (no SOA), sorted */
} proj_zone_change_t;

typedef struct {
    proj_zone_change_t *zones; /* sorted by zone */
    size_t nzones;
    res_strv_t instances; /* keys of instances whose desired state changed */
    res_strv_t statuses;  /* "Kind/namespace/name" whose status changed */
} proj_changes_t;

/* Move the accumulated changes into out (caller storage; proj_changes_deinit). */
int proj_take_changes(proj_t *p, proj_changes_t *out);
void proj_changes_deinit(proj_changes_t *c);

/* ---- status ---- */

typedef struct {
    bool known;           /* the object exists */
    bool ready;
    const char *reason;   /* "Ready", "InvalidSpec", "NoInstancesSelected", "DuplicateZone",
                             "CnameConflict", "RecordConflict", "NotSelected" */
    const char *message;  /* human text naming the zone/record concerned */
} proj_status_t;

/* Status of an object (borrowed strings, valid until the next apply). */
void proj_status(const proj_t *p, const char *kind, const char *ns, const char *name, proj_status_t *out);

/* ---- snapshots (a restart replays only the events after the snapshot's seq) ---- */

/* The last valid version of an object, as journaled by the event at seq: a new reference,
 * or NULL with err set (the event is gone or unreadable). */
typedef json_t *(*proj_fetch_fn)(void *arg, uint64_t seq, bd_err_t *err);

/*
 * Serialise the projection at proj_seq(p) into *out (malloc'd, *len bytes; caller frees):
 * compact JSON text in a fixed key order, one value per line (schema/journal-format.md,
 * "Snapshots"); the same events give the same bytes on every replica. The
 * projector keeps no JSON, so fetch supplies each object's last valid version from the
 * journal and the snapshot is self-contained. Call it with nothing pending (right after
 * proj_take_changes). Pure apart from fetch. Returns BD_OK, BD_EINVAL (changes not taken),
 * fetch's error (BD_ENOTFOUND, ...), BD_ECORRUPT (a fetched object is not the object it
 * should be), BD_ENOMEM.
 */
int proj_snapshot(const proj_t *p, proj_fetch_fn fetch, void *arg, char **out, size_t *len,
                  bd_err_t *err);

/*
 * proj_snapshot in two steps, so that a caller whose thread owns the projector (the event
 * loop) does only the cheap part: capture copies what the snapshot needs out of p (no JSON,
 * no fetch; same preconditions and errors as proj_snapshot but fetch's) into *out (free
 * with proj_snap_free); render then touches no projector and may run on any thread
 * (fetch is called on that thread). render returns what proj_snapshot returns.
 */
typedef struct proj_snap proj_snap_t;
int proj_snapshot_capture(const proj_t *p, proj_snap_t **out, bd_err_t *err);
int proj_snapshot_render(const proj_snap_t *s, proj_fetch_fn fetch, void *arg, char **out, size_t *len,
                         bd_err_t *err);
uint64_t proj_snap_seq(const proj_snap_t *s);
void proj_snap_free(proj_snap_t *s); /* NULL is a no-op */

/*
 * Load a snapshot into p, a projector that has applied nothing yet (it may be shared by
 * pointer already: the status writer and the workload applier hold it). The objects are
 * fed through the normal apply path in first-seq order (so age order and conflicts are
 * those of the original history), then versions, serials, floors and the statuses that
 * depend on history are set from the snapshot. Afterwards proj_seq(p) is the snapshot's
 * seq, and proj_take_changes reports every zone as created with its whole content, every
 * instance and every status as changed. On failure p is left as it was.
 * Returns BD_OK, BD_EINVAL (p is not empty, or another catalog suffix), BD_EVERSION
 * (another snapshot format), BD_ECORRUPT (the text is malformed, an object it holds is
 * not valid any more (the schema changed since), or it does not rebuild the zones it
 * lists), BD_ENOMEM.
 */
int proj_restore(proj_t *p, const char *buf, size_t len, bd_err_t *err);

/* A hash of everything rendered (zones without serials, instances), for tests that
 * prove determinism. Hex SHA-256 in out[65]. */
int proj_digest(const proj_t *p, char out[65]);

#endif
