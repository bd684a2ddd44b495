/*
 * soacheck.h - confirm that servers publish a zone's new serial.
 *
 * After a change, bindy asks every server that should carry the zone for its SOA (over
 * UDP, non-blocking, on the caller's libev loop) and asks again, backing off, until
 * each one answers with the wanted serial or newer (RFC 1982), or the deadline passes.
 * The callback then gets every server's last answer, so lagging servers can be reported
 * by name and serial. One check is one UDP socket and one timer; it frees itself after
 * its callback.
 */
#ifndef BD_SOACHECK_H
#define BD_SOACHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "render.h"

struct ev_loop;

typedef struct {
    const char *name;  /* the server's name for messages ("dns-system/primary-dns/0") */
    bool answered;     /* it answered with an SOA at least once */
    bool ok;           /* it publishes the wanted serial or newer */
    uint32_t serial;   /* its last SOA serial (when answered) */
    double ms;         /* milliseconds until ok (when ok) */
} bind_soacheck_result_t;

/* results: one per server, in the order given; borrowed for the call only. */
typedef void (*bind_soacheck_cb)(void *arg, const char *zone, uint32_t want, const bind_soacheck_result_t *results,
                                 size_t n);

typedef struct bind_soacheck bind_soacheck_t;

/*
 * Start a check of zone at serial `want` on n servers (endpoints and names are copied).
 * *out (may be NULL) gets a handle, valid until the callback returns or cancel.
 * deadline: seconds until the callback fires with whatever was seen; interval: seconds
 * before the second ask to servers not yet ok, doubling after each ask up to 1 s. Returns 0 (the callback will fire exactly once, on
 * the loop, never inside this call), BD_EINVAL (err names the problem), BD_EIO, BD_ENOMEM
 * (the callback never fires).
 */
int bind_soacheck_start(struct ev_loop *loop, const char *zone, uint32_t want, const bind_endpoint_t *servers,
                        const char *const *names, size_t n, double deadline, double interval, bind_soacheck_cb cb,
                        void *arg, bind_soacheck_t **out, bd_err_t *err);

/* Stop a check and free it; its callback never fires. */
void bind_soacheck_cancel(bind_soacheck_t *c);

#endif
