/*
 * keys.h - the transfer (TSIG) and rndc keys bindy generates once and keeps.
 *
 * A keys file holds two lines, "xfr BASE64" and "rndc BASE64" (HMAC-SHA256 secrets), mode
 * 0600. Local mode and the operator keep theirs in STATE/keys. The secrets are never
 * logged; errors name the file only.
 */
#ifndef BIND_KEYS_H
#define BIND_KEYS_H

#include "err.h"
#include "server.h"

#define BIND_KEY_B64_MAX 128

/* Read path, or generate both keys and write it (0600) when it does not exist.
 * On success xfr holds the transfer key (wipe it with bind_server_key_wipe) and the two
 * buffers the base64 secrets. BD_ECORRUPT (not a keys file), BD_EIO, BD_EINTERNAL. */
int bind_keys_load(const char *path, bind_server_key_t *xfr, char xfr_b64[BIND_KEY_B64_MAX],
                   char rndc_b64[BIND_KEY_B64_MAX], bd_err_t *err);

#endif
