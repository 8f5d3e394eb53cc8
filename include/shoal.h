/*  shoal.h: the public API of libshoal.

    shoal is a task cluster: a broker routes tasks to long-lived workers, each worker keeps
    the results in a local object store and serves them on demand. This header is the
    manual for C programs that talk to a cluster.

    Conventions
    - Every call that can fail returns an int: 0 (or a count) on success, a negative
      SHOAL_E* code on failure. shoal_strerror() names any code. A call that fails leaves
      its output parameters untouched unless it says otherwise.
    - Objects are named by refs (shoal_ref_t): 128 bits, written as 32 lowercase hex
      digits. The client makes them: a 64-bit client id chosen at random per process, a
      48-bit counter and a 16-bit output index. A task's id is the ref of its output 0.
    - No call waits longer than the timeout it was given; timeout_ms < 0 waits forever.
*/
#ifndef SHOAL_H_INCLUDED
#define SHOAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHOAL_VERSION_MAJOR 0
#define SHOAL_VERSION_MINOR 1
#define SHOAL_VERSION_PATCH 0

/*  Error codes. Distinct and stable; shoal_strerror() names each. */
#define SHOAL_ERRORS(X)                                                                        \
    X(SHOAL_EINVAL, -1, "invalid argument")                                                    \
    X(SHOAL_ENOMEM, -2, "out of memory")                                                       \
    X(SHOAL_EPROTO, -3, "malformed or unexpected message")                                     \
    X(SHOAL_ETIMEDOUT, -4, "timed out")                                                        \
    X(SHOAL_EUNREACH, -5, "peer unreachable")                                                  \
    X(SHOAL_ENOTFOUND, -6, "not found")                                                        \
    X(SHOAL_EFULL, -7, "store full")                                                           \
    X(SHOAL_EIO, -8, "input/output error")                                                     \
    X(SHOAL_ETASK, -9, "task failed")                                                          \
    X(SHOAL_ECANCELED, -10, "canceled")                                                        \
    X(SHOAL_ELOST, -11, "object lost with its worker")                                         \
    X(SHOAL_EVERSION, -12, "protocol version mismatch")                                        \
    X(SHOAL_EEXIST, -13, "already exists")                                                     \
    X(SHOAL_ECORRUPT, -14, "store file corrupt")                                               \
    X(SHOAL_EAGAIN, -15, "resource temporarily unavailable")                                   \
    X(SHOAL_ESTATE, -16, "wrong state for this operation")                                     \
    X(SHOAL_ETOOBIG, -17, "too large")

enum {
    SHOAL_OK = 0,
#define SHOAL__ERR_ENUM(name, value, text) name = value,
    SHOAL_ERRORS(SHOAL__ERR_ENUM)
#undef SHOAL__ERR_ENUM
};

/*  Returns a static string naming code (0, a SHOAL_E* code, or "unknown error"). */
const char *shoal_strerror(int code);

/*  ---------------------------------------------------------------------------------- refs */

typedef struct {
    uint64_t hi; /*  client id */
    uint64_t lo; /*  counter << 16 | output index */
} shoal_ref_t;

/*  Text form: 32 lowercase hex digits and a NUL. */
#define SHOAL_REF_TEXT_SIZE 33
/*  Output index 0xffff of a task names its log (the stderr of an exec task). */
#define SHOAL_REF_LOG_INDEX 0xffff
#define SHOAL_MAX_OUTPUTS   1024

/*  Writes ref as 32 hex digits into buf; returns buf. */
char *shoal_ref_format(shoal_ref_t ref, char buf[SHOAL_REF_TEXT_SIZE]);
/*  Parses exactly 32 hex digits (either case). Returns 0 or SHOAL_EINVAL. */
int shoal_ref_parse(const char *text, shoal_ref_t *ref);

static inline shoal_ref_t shoal_ref_make(uint64_t client, uint64_t counter, uint16_t index)
{
    shoal_ref_t r = {client, (counter << 16) | index};
    return r;
}
static inline uint16_t shoal_ref_index(shoal_ref_t ref)
{
    return (uint16_t)(ref.lo & 0xffff);
}
/*  The id of the task that produces ref: the same ref with index 0. */
static inline shoal_ref_t shoal_ref_task(shoal_ref_t ref)
{
    shoal_ref_t r = {ref.hi, ref.lo & ~(uint64_t)0xffff};
    return r;
}
static inline shoal_ref_t shoal_ref_output(shoal_ref_t task, uint16_t index)
{
    shoal_ref_t r = {task.hi, (task.lo & ~(uint64_t)0xffff) | index};
    return r;
}
static inline bool shoal_ref_equal(shoal_ref_t a, shoal_ref_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}
static inline bool shoal_ref_is_null(shoal_ref_t r)
{
    return r.hi == 0 && r.lo == 0;
}

#ifdef __cplusplus
}
#endif
#endif
