/*  common.c: errors, refs, clocks, logging, parsing. */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *shoal_strerror(int code)
{
    switch (code) {
    case SHOAL_OK:
        return "success";
#define SHOAL__ERR_CASE(name, value, text)                                                         \
    case name:                                                                                     \
        return text;
        SHOAL_ERRORS(SHOAL__ERR_CASE)
#undef SHOAL__ERR_CASE
    default:
        return "unknown error";
    }
}

char *shoal_ref_format(shoal_ref_t ref, char buf[SHOAL_REF_TEXT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        buf[i] = hex[(ref.hi >> (60 - 4 * i)) & 0xf];
        buf[16 + i] = hex[(ref.lo >> (60 - 4 * i)) & 0xf];
    }
    buf[32] = '\0';
    return buf;
}

static int s_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int shoal_ref_parse(const char *text, shoal_ref_t *ref)
{
    if (!text || !ref)
        return SHOAL_EINVAL;
    uint64_t part[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        int v = s_hexval((unsigned char)text[i]);
        if (v < 0)
            return SHOAL_EINVAL; //  also catches a short string at its NUL
        part[i / 16] = (part[i / 16] << 4) | (uint64_t)v;
    }
    if (text[32] != '\0')
        return SHOAL_EINVAL;
    ref->hi = part[0];
    ref->lo = part[1];
    return 0;
}

int64_t shoal__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t shoal__wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *s_role = "shoal";
static int s_level = SHOAL_LOG_WARN;
static const char *s_level_names[] = {"error", "warn", "info", "debug"};

void shoal__log_init(const char *role, int default_level)
{
    s_role = role;
    s_level = default_level;
    const char *env = getenv("SHOAL_LOG");
    if (env)
        for (int i = 0; i < 4; i++)
            if (strcmp(env, s_level_names[i]) == 0)
                s_level = i;
}

bool shoal__log_enabled(int level)
{
    return level <= s_level;
}

void shoal__log(int level, const char *fmt, ...)
{
    if (level > s_level)
        return;
    //  One write(2) per line so lines from several processes sharing a terminal or a
    //  log file do not interleave mid-line.
    char line[2048];
    int n = snprintf(line, sizeof line, "shoal %s[%d] %s: ", s_role, (int)getpid(),
                     s_level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = SHOAL__MIN((size_t)n + (size_t)m, sizeof line - 2);
    line[len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, len);
    (void)rc;
}

uint64_t shoal__random64(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
            //  getrandom cannot fail for 8 bytes once the pool is initialised; fall back
            //  to time and pid mixing rather than abort.
            v = (uint64_t)shoal__wall_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
        }
    }
    return v;
}

int shoal__parse_u64(const char *text, uint64_t *value)
{
    if (!text || !*text || !isdigit((unsigned char)*text))
        return SHOAL_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end)
        return SHOAL_EINVAL;
    *value = v;
    return 0;
}

int shoal__parse_size(const char *text, uint64_t *bytes)
{
    if (!text || !*text || !isdigit((unsigned char)*text))
        return SHOAL_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return SHOAL_EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        return SHOAL_EINVAL;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return SHOAL_EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return SHOAL_EINVAL;
    *bytes = (uint64_t)v << shift;
    return 0;
}

int shoal__parse_seconds_ms(const char *text, int64_t *ms)
{
    if (!text || !*text)
        return SHOAL_EINVAL;
    errno = 0;
    char *end;
    double s = strtod(text, &end);
    if (errno || *end || s < 0 || s > 1e9)
        return SHOAL_EINVAL;
    *ms = (int64_t)(s * 1000.0 + 0.5);
    return 0;
}

int shoal__mkdir_p(const char *path, unsigned mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

const char *shoal__hostname(void)
{
    static char name[256];
    if (!name[0]) {
        if (gethostname(name, sizeof name - 1) != 0 || !name[0])
            shoal__strlcpy(name, "localhost", sizeof name);
    }
    return name;
}
