#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

static bd_log_level_t g_level = BD_LOG_INFO;

void bd_log_set_level(bd_log_level_t level) { g_level = level; }

bd_log_level_t bd_log_get_level(void) { return g_level; }

int bd_log_parse_level(const char *s, bd_log_level_t *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (bd_log_level_t)i;
            return BD_OK;
        }
    }
    return BD_EINVAL;
}

int bd_log_init_from_env(void)
{
    const char *s = getenv("BINDY_LOG_LEVEL");
    bd_log_level_t lv;
    if (s == NULL || *s == '\0')
        return BD_OK;
    if (bd_log_parse_level(s, &lv) != BD_OK) {
        bd_warn("BINDY_LOG_LEVEL=%s is not one of debug, info, warn, error; keeping info", s);
        return BD_EINVAL;
    }
    bd_log_set_level(lv);
    return BD_OK;
}

void bd_log(bd_log_level_t level, const char *fmt, ...)
{
    static const char *const words[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < g_level)
        return;

    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line keeps lines from different threads whole. */
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000L, words[level], line);
}
