/*
 * render.h - the static configuration of a BIND server of one Bind9Instance.
 *
 * A BIND server is configured once and then driven only by DNS: it consumes its
 * instance's catalog zone (RFC 9432) from its upstream (bindy's hidden primary for a
 * primary instance, the primary instances for a secondary) and transfers every member
 * zone from there. So named.conf depends only on the instance's spec, its cluster's
 * global options and where it runs: no zone, no record, no serial. It never contains key
 * material: secrets live in a separate keys file it includes (bind_render_keys), so the
 * configuration can be shown, diffed and stored in a ConfigMap.
 */
#ifndef BD_RENDER_H
#define BD_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "resource.h"

#define BIND_XFR_KEY_NAME "bindy-xfr"
#define BIND_RNDC_KEY_NAME "bindy-rndc"

/* An upstream server: a numeric address and a port. */
typedef struct {
    const char *addr;
    uint16_t port;
} bind_endpoint_t;

typedef struct {
    const char *directory;  /* named's working directory */
    const char *keys_file;  /* path of the file written by bind_render_keys */
    const char *listen_v4;  /* address or "any"; listen-on */
    const char *listen_v6;  /* address, "any" or "none" (default) */
    uint16_t port;          /* DNS port (53) */
    const char *control_addr; /* rndc control channel address (127.0.0.1), or "*": every
                                 address, IPv4 and IPv6 */
    uint16_t control_port;    /* (953) */
    const char *control_allow; /* who may connect: an address match list element ("any");
                                  NULL: control_addr only (required with "*"). Every
                                  command must be signed with the rndc key either way. */
    const char *catalog;      /* the instance's catalog zone name */
    const bind_endpoint_t *upstream; /* where the catalog and its members come from */
    size_t nupstream;
    const bind_endpoint_t *notify;   /* also-notify targets (downstream servers) */
    size_t nnotify;
    bool zone_files;   /* zones in files under directory, with journals: a server answers
                          IXFR from downstream servers and reloads its zones after a
                          restart. Only where directory belongs to this one named (two
                          writing the same files corrupt them); false: in memory only. */
} bind_render_params_t;

/*
 * named.conf for a server of instance `inst` (a Bind9Instance), with the options of
 * `cluster` (its Bind9Cluster, or NULL) underneath its own. Returns BD_OK and a new
 * string in *out (free()), BD_EINVAL when a parameter is missing (err names it),
 * BD_ENOMEM.
 */
int bind_render_named_conf(const res_t *inst, const res_t *cluster, const bind_render_params_t *prm,
                           char **out, bd_err_t *err);

/*
 * The keys file: the transfer key and the rndc key as `key` statements. Secrets are
 * base64 as in rndc.key; algorithms are "hmac-sha256" and the like. *out: new string.
 */
int bind_render_keys(const char *xfr_alg, const char *xfr_secret_b64, const char *rndc_alg,
                     const char *rndc_secret_b64, char **out, bd_err_t *err);

#endif
