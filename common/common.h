/*  common.h: small helpers shared by every module (time, logging, randomness, parsing).
    Internal to shoal; not installed. */
#ifndef SHOAL_COMMON_H_INCLUDED
#define SHOAL_COMMON_H_INCLUDED

#include "shoal.h"

#include <stdarg.h>
#include <stdio.h>

/*  Monotonic and wall clocks, in microseconds. */
int64_t shoal__now_us(void);
int64_t shoal__wall_us(void);
static inline int64_t shoal__now_ms(void)
{
    return shoal__now_us() / 1000;
}

/*  Logging to stderr: "shoal ROLE[pid] LEVEL: message". Level from $SHOAL_LOG
    (error, warn, info, debug; default warn for clients, info for daemons). */
enum { SHOAL_LOG_ERROR, SHOAL_LOG_WARN, SHOAL_LOG_INFO, SHOAL_LOG_DEBUG };
void shoal__log_init(const char *role, int default_level);
void shoal__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool shoal__log_enabled(int level);
#define shoal__error(...) shoal__log(SHOAL_LOG_ERROR, __VA_ARGS__)
#define shoal__warn(...)  shoal__log(SHOAL_LOG_WARN, __VA_ARGS__)
#define shoal__info(...)  shoal__log(SHOAL_LOG_INFO, __VA_ARGS__)
#define shoal__debug(...)                                                                          \
    do {                                                                                           \
        if (shoal__log_enabled(SHOAL_LOG_DEBUG))                                                   \
            shoal__log(SHOAL_LOG_DEBUG, __VA_ARGS__);                                              \
    } while (0)

/*  64 random bits from getrandom(2); never zero. */
uint64_t shoal__random64(void);

/*  Parses "123", "64K", "256M", "2G" (powers of 1024) into *bytes. 0 or SHOAL_EINVAL. */
int shoal__parse_size(const char *text, uint64_t *bytes);
/*  Parses a non-negative integer with no trailing garbage. 0 or SHOAL_EINVAL. */
int shoal__parse_u64(const char *text, uint64_t *value);
/*  Parses seconds, possibly fractional ("2", "0.5"), into milliseconds. */
int shoal__parse_seconds_ms(const char *text, int64_t *ms);

/*  snprintf into a fixed buffer that always terminates and never fails. */
#define shoal__strlcpy(dst, src, size) snprintf((dst), (size), "%s", (src))

/*  mkdir -p with the given mode. 0 or a negative errno. */
int shoal__mkdir_p(const char *path, unsigned mode);

/*  The local host name (never empty). */
const char *shoal__hostname(void);

#define SHOAL__MIN(a, b)     ((a) < (b) ? (a) : (b))
#define SHOAL__MAX(a, b)     ((a) > (b) ? (a) : (b))
#define SHOAL__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
