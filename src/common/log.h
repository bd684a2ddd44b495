/*
 * log.h - process-wide logging to stderr.
 *
 * Lines look like "2026-11-23T10:00:00.123Z INFO message": the level word is what users
 * grep for (the seed's documented lines such as "INFO Lease acquired, ..."), so it stays
 * a fixed, upper-case token. Messages name the object they concern
 * ("dns-system/example-com DNSZone: ...") and never contain key material.
 */
#ifndef BD_LOG_H
#define BD_LOG_H

typedef enum { BD_LOG_DEBUG = 0, BD_LOG_INFO, BD_LOG_WARN, BD_LOG_ERROR } bd_log_level_t;

/* Messages below level are dropped. Default INFO. */
void bd_log_set_level(bd_log_level_t level);
/* Apply BINDY_LOG_LEVEL (debug|info|warn|error) if set; every main calls this first.
 * Returns BD_EINVAL (and keeps the level) for a value it does not know. */
int bd_log_init_from_env(void);
bd_log_level_t bd_log_get_level(void);

/* Parse "debug|info|warn|error" (case-insensitive); returns 0 or BD_EINVAL. */
int bd_log_parse_level(const char *s, bd_log_level_t *out);

void bd_log(bd_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bd_debug(...) bd_log(BD_LOG_DEBUG, __VA_ARGS__)
#define bd_info(...) bd_log(BD_LOG_INFO, __VA_ARGS__)
#define bd_warn(...) bd_log(BD_LOG_WARN, __VA_ARGS__)
#define bd_error(...) bd_log(BD_LOG_ERROR, __VA_ARGS__)

#endif
