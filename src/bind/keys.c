#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "render.h"

int bind_keys_load(const char *path, bind_server_key_t *xfr, char xfr_b64[BIND_KEY_B64_MAX],
                   char rndc_b64[BIND_KEY_B64_MAX], bd_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        int ok = fscanf(f, "xfr %127s\nrndc %127s\n", xfr_b64, rndc_b64) == 2;
        fclose(f);
        if (ok && bind_server_key_from_b64(xfr, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256, xfr_b64) == BD_OK)
            return BD_OK;
        return bd_err_set(err, BD_ECORRUPT, "%s: not a bindy keys file; remove it to generate new keys", path);
    }
    bind_server_key_t rndc;
    if (bind_server_key_generate(xfr, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256) != BD_OK ||
        bind_server_key_generate(&rndc, BIND_RNDC_KEY_NAME, BIND_SERVER_HMAC_SHA256) != BD_OK ||
        bind_server_key_b64(xfr, xfr_b64, BIND_KEY_B64_MAX) != BD_OK ||
        bind_server_key_b64(&rndc, rndc_b64, BIND_KEY_B64_MAX) != BD_OK)
        return bd_err_set(err, BD_EINTERNAL, "cannot generate keys");
    bind_server_key_wipe(&rndc);
    mode_t old = umask(077);
    f = fopen(path, "w");
    umask(old);
    if (f == NULL)
        return bd_err_set(err, BD_EIO, "%s: %s", path, strerror(errno));
    fprintf(f, "xfr %s\nrndc %s\n", xfr_b64, rndc_b64);
    if (fclose(f) != 0)
        return bd_err_set(err, BD_EIO, "%s: %s", path, strerror(errno));
    return BD_OK;
}
