#include "err.h"

#include <stdarg.h>
#include <stdio.h>

const char *bd_strerror(int code)
{
    switch (code) {
    case BD_OK:
        return "success";
#define BD__CASE(name, str) \
    case BD_E##name:        \
        return str;
        BD_ERROR_TABLE(BD__CASE)
#undef BD__CASE
    default:
        return "unknown error";
    }
}

int bd_err_set(bd_err_t *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void bd_err_clear(bd_err_t *err)
{
    if (err == NULL)
        return;
    err->code = BD_OK;
    err->msg[0] = '\0';
}
