/*
 * proxy.h - a loopback TCP proxy that a test can cut (test equipment only).
 *
 * Forwards every connection accepted on its own ephemeral port to a target port, so a
 * test can put one between a process and the API-server double and cut that process
 * off from the cluster (a network partition) without touching the others.
 * One thread; poll(2) over every socket pair.
 */
#ifndef BD_TEST_PROXY_H
#define BD_TEST_PROXY_H

#include <stdint.h>

#include "err.h"

typedef struct bd_proxy bd_proxy_t;

typedef enum {
    BD_PROXY_PASS = 0,  /* forward both ways */
    BD_PROXY_CUT,       /* close every connection now; new ones are closed at once */
    BD_PROXY_BLACKHOLE, /* keep connections open but forward nothing (packets lost) */
} bd_proxy_mode_t;

/* Listen on 127.0.0.1 (ephemeral port), forward to 127.0.0.1:target_port. */
int bd_proxy_start(uint16_t target_port, bd_proxy_t **out, bd_err_t *err);
uint16_t bd_proxy_port(const bd_proxy_t *p);
void bd_proxy_set_mode(bd_proxy_t *p, bd_proxy_mode_t mode);
/* Stop the thread, close everything, free. NULL is a no-op. */
void bd_proxy_stop(bd_proxy_t *p);

#endif
