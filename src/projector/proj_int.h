/*
 * proj_int.h - the projector's internal types, shared by projector.c (the projection) and
 * snapshot.c (saving and restoring it). Not installed; nothing outside src/projector
 * includes it.
 */
#ifndef BD_PROJ_INT_H
#define BD_PROJ_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "hmap.h"
#include "projector.h"
#include "validate.h"

/* ---- types --------------------------------------------------------------------------- */

typedef struct obj obj_t;

typedef struct {
    char *zone, *owner;
    const char *reason; /* NULL: published */
} contrib_t;

struct obj {
    char *key; /* "Kind/namespace/name" */
    res_kind_t kind;
    char *ns, *name;
    res_t *res; /* last valid version, NULL if none */
    char *invalid_msg; /* the latest version failed validation: why */
    uint64_t first_seq;
    uint64_t valid_seq; /* seq of the event that produced res (snapshots fetch it) */
    contrib_t *contribs; /* records: where they are published */
    size_t ncontribs;
    bool deleted;
    uint64_t version; /* bumped whenever res is replaced */
    /* status, current after every apply */
    bool ready;
    const char *reason;
    char *message;
    char *reported; /* "reason\nmessage" at the last take */
};

typedef struct {
    char *name; /* absolute, lower case, trailing dot */
    obj_t **recs;
    size_t n, cap;
    res_strv_t synth; /* zone-owned lines: apex NS, glue, catalog content */
    res_strv_t rrs;   /* rendered, sorted */
} owner_t;

struct proj_zone {
    char *name, *origin;
    bool catalog;
    obj_t *obj;          /* the winning DNSZone; NULL for catalogs */
    char *catalog_of;    /* catalogs: the instance key */
    bd_hmap_t *owners;   /* owner name -> owner_t */
    uint32_t serial;
    uint32_t taken_serial; /* the serial the last proj_take_changes reported */
    char *soa_sig;       /* the SOA without its serial, as last rebuilt */
    bool changed;        /* in the current event */
    int64_t ev_pub;      /* a serial a leader published, from a record's status in the current event (0: none) */
    bd_hmap_t *evnet;    /* rr line -> net delta in the current event (NULL: none yet) */
    res_strv_t instances;
    size_t nrecords;     /* record contributions, for status */
};

typedef struct {
    bd_hmap_t *net; /* rr line -> (intptr_t) +n / -n */
    bool existed;   /* at the last take */
} pend_t;

struct proj {
    char *catalog_suffix;
    val_catalog_t *cat;
    uint64_t seq;
    bd_hmap_t *objs;    /* key -> obj_t */
    bd_hmap_t *zones;   /* zone name -> proj_zone_t */
    bd_hmap_t *floors;  /* zone name -> (uintptr_t) floor + 1 */
    bd_hmap_t *pending; /* zone name -> pend_t */
    bd_hmap_t *touched; /* obj key -> obj_t: status may have changed */
    bd_hmap_t *inst_changed; /* instance key -> (void *)1 */
    bd_hmap_t *status_dirty; /* obj key -> (void *)1, since the last take */
    bd_hmap_t *zchanged;     /* zone name -> (void *)1, in the current event */
    proj_instance_t **instances; /* sorted, rebuilt by refresh */
    size_t ninstances;
    const proj_zone_t **zone_list; /* cache for proj_zones */
    size_t nzone_list;
    /* Candidate indexes, so that an event looks only at the objects it can concern: each
     * maps an index key to a set (obj key -> obj_t) of the objects with a valid version
     * filed under it. A set is a superset of the matches; users filter with the exact test
     * (zone_selects, the zone name) and sort by key, so results do not depend on them. */
    bd_hmap_t *zclaims;  /* zone name -> DNSZones claiming it */
    bd_hmap_t *rec_lbl;  /* "ns\nkey\nvalue" -> records with that label */
    bd_hmap_t *rec_ns;   /* namespace -> records */
    bd_hmap_t *zsel_lbl; /* "ns\nkey\nvalue" -> DNSZones with a recordsFrom selector requiring it */
    bd_hmap_t *zsel_any; /* namespace -> DNSZones with a recordsFrom selector requiring no label value */
    uint64_t visited;    /* objects and zones looked at by the indexed scans (tests) */
    int oom;
};

/* Objects and zones the indexed scans have looked at since proj_new: tests check that an
 * event's work does not grow with unrelated state. */
uint64_t proj__visited(const proj_t *p);

#endif
