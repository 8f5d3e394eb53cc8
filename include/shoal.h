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
#define SHOAL_ERRORS(X)                                                                            \
    X(SHOAL_EINVAL, -1, "invalid argument")                                                        \
    X(SHOAL_ENOMEM, -2, "out of memory")                                                           \
    X(SHOAL_EPROTO, -3, "malformed or unexpected message")                                         \
    X(SHOAL_ETIMEDOUT, -4, "timed out")                                                            \
    X(SHOAL_EUNREACH, -5, "peer unreachable")                                                      \
    X(SHOAL_ENOTFOUND, -6, "not found")                                                            \
    X(SHOAL_EFULL, -7, "store full")                                                               \
    X(SHOAL_EIO, -8, "input/output error")                                                         \
    X(SHOAL_ETASK, -9, "task failed")                                                              \
    X(SHOAL_ECANCELED, -10, "canceled")                                                            \
    X(SHOAL_ELOST, -11, "object lost with its worker")                                             \
    X(SHOAL_EVERSION, -12, "protocol version mismatch")                                            \
    X(SHOAL_EEXIST, -13, "already exists")                                                         \
    X(SHOAL_ECORRUPT, -14, "store file corrupt")                                                   \
    X(SHOAL_EAGAIN, -15, "resource temporarily unavailable")                                       \
    X(SHOAL_ESTATE, -16, "wrong state for this operation")                                         \
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
/*  Output index 0xfffe of a task whose exec command failed names the end of what it wrote
    on stdout (its last 64 KiB): a failed task has no outputs, but its output is often
    the explanation. `shoal run` prints it. */
#define SHOAL_REF_STDOUT_INDEX 0xfffe
#define SHOAL_MAX_OUTPUTS      1024

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

/*  --------------------------------------------------------------------------- client

    A shoal_t is one connection to a cluster: a DEALER socket to the broker, the cache of
    task statuses this client has learnt, its buffered submissions, and one DEALER per
    worker data endpoint it has fetched from. It is not thread-safe: use it from one
    thread at a time (a handle per thread is fine). Do not use it across fork(): the
    child must connect anew. Calls run the socket loop themselves (there is no
    background thread), so statuses and acknowledgements are taken in whenever any call
    that waits is running.

    Errors: besides its return code, a failing call leaves a one-line explanation in
    shoal_last_error(self) (which address did not answer, the broker's error text, which
    task failed and why).

    Caveats
    - Final statuses are cached per ref (a few dozen bytes, plus the bytes of small
      results) until shoal_remove of the ref or shoal_disconnect: a long-lived client
      that never removes what it made grows with the work it has waited on.
    - Calls retry on EINTR: a signal does not cut a wait short. To react to signals, wait
      in slices (short timeouts) and check a flag between them.
    - Objects outlive the connection: shoal_disconnect does not release them. Remove
      what you no longer need (shoal_remove), or the workers' stores fill up. */

typedef struct shoal shoal_t;

/*  Connects to a cluster and greets its broker (hello -> hello_ok) within timeout_ms.
    url: "tcp://HOST:PORT", an existing broker (`shoal broker`, `shoal up`). local://N
    (start a cluster on this host) and slurm:// are not supported yet.
    On success *self_p is a new handle owned by the caller: release it with
    shoal_disconnect(). Its client id is a fresh random 64-bit number, so the refs it
    makes never collide with another client's.
    Returns 0, or:
      SHOAL_EINVAL    url is NULL or malformed, or its scheme is not supported (yet);
      SHOAL_EUNREACH  nobody answered within timeout_ms. ZeroMQ's connect never fails, so
                      silence is the only sign of a missing broker; the message names
                      the address;
      SHOAL_EVERSION  the broker speaks another protocol version;
      SHOAL_ENOMEM, SHOAL_EIO  no memory, or no socket could be made;
      another SHOAL_E* code: the broker refused the greeting with that code.
    On failure *self_p is untouched and shoal_last_error(NULL) gives the reason (kept per
    thread). timeout_ms < 0 waits forever. */
int shoal_connect(const char *url, int timeout_ms, shoal_t **self_p);

/*  Sends what shoal_submit has buffered (without waiting for acknowledgements: call
    shoal_flush first to know they arrived), closes the sockets, waits at most 200 ms for
    queued bytes to leave, frees everything and sets *self_p to NULL. Views from
    shoal_get stay valid until released. The objects this client made stay in the
    cluster until removed. NULL-safe. */
void shoal_disconnect(shoal_t **self_p);

/*  The explanation of the last failing call on self, or, with self NULL, of the last
    failing shoal_connect in this thread. "" when there is none. Borrowed: valid until
    the next call on self (or the next shoal_connect). */
const char *shoal_last_error(const shoal_t *self);

/*  The events endpoint the broker announced in its greeting (a SUB socket connects to
    it). Borrowed until shoal_disconnect. */
const char *shoal_events_endpoint(const shoal_t *self);

/*  ---------------------------------------------------------------------------- tasks */

/*  Task kinds (the same numbers as on the wire). */
enum {
    SHOAL_TASK_EXEC = 0, /*  a command line; stdout is output 0, stderr the log */
    SHOAL_TASK_FN = 1,   /*  a C function "lib.so:symbol" run by an executor */
};

/*  A task to submit. Zero-initialise and set what you need; every pointer is borrowed
    for the duration of shoal_submit only (the call copies what it keeps). */
typedef struct {
    int kind;                /*  SHOAL_TASK_EXEC or SHOAL_TASK_FN */
    const char *const *argv; /*  exec: the command line, NULL-terminated, non-empty.
                                 Input i is the file $SHOAL_INPUT_i, output i >= 1 the
                                 file the command writes at $SHOAL_OUTPUT_i. */
    const char *fn;          /*  fn: "lib.so:symbol" */
    const void *arg;         /*  fn: argument bytes (arg_size of them) */
    size_t arg_size;
    const shoal_ref_t *inputs; /*  refs the task reads, in order: outputs of tasks
                                   submitted before (by any client), or stored objects */
    size_t n_inputs;
    unsigned n_outputs; /*  1..SHOAL_MAX_OUTPUTS; 0 means 1 */
    const char *name;   /*  optional name for the outputs; NULL for none */
    unsigned retries;   /*  extra attempts after a failure of the task itself */
    const char *job;    /*  optional job the task belongs to; NULL for none */
    int priority;       /*  higher runs first; default 0 */
} shoal_task_spec_t;

/*  Submits a task. Its id comes back at once in *task_id (the ref of its output 0);
    output i is shoal_ref_output(*task_id, i) and its log (the stderr of an exec task)
    shoal_ref_output(*task_id, SHOAL_REF_LOG_INDEX). Later tasks may name these refs as
    inputs straight away: that is how a dependency graph is built.
    Submissions are buffered and sent in batches (at 1,000 tasks or 1 MiB, and before
    any call that waits); the broker acknowledges each batch and libshoal resends what
    is not acknowledged. Nothing here waits: call shoal_flush to know the broker has the
    tasks (a batch the broker refuses is reported there, and waiting on its refs fails
    with the broker's reason).
    Returns 0, or SHOAL_EINVAL (spec NULL, an unknown kind, exec without argv, fn without
    "lib:symbol", n_outputs above SHOAL_MAX_OUTPUTS), SHOAL_ETOOBIG (the task alone would
    not fit in one message: SHOAL_MAX_MSG_SIZE, 64 MiB), SHOAL_ENOMEM. On failure
    *task_id is untouched and nothing is submitted. */
int shoal_submit(shoal_t *self, const shoal_task_spec_t *spec, shoal_ref_t *task_id);

/*  Sends buffered submissions and waits until the broker has acknowledged every batch
    sent so far, resending unacknowledged ones (with the same sequence number, so the
    broker does not run them twice) every second while the broker is silent.
    Returns 0; SHOAL_ETIMEDOUT (some batch still unacknowledged: it stays queued and is
    resent by later calls); the code of a batch the broker refused (shoal_last_error
    gives the broker's reason, naming the task; the refused tasks then count as failed
    with that reason); the code of an error message from the broker; SHOAL_EIO. */
int shoal_flush(shoal_t *self, int timeout_ms);

/*  Task and object states (the same numbers as on the wire). */
enum {
    SHOAL_STATUS_UNKNOWN = 0,  /*  the broker never heard of it, or forgot it */
    SHOAL_STATUS_WAITING = 1,  /*  waiting for its inputs */
    SHOAL_STATUS_READY = 2,    /*  queued at the broker */
    SHOAL_STATUS_RUNNING = 3,  /*  on a worker, queued there or running */
    SHOAL_STATUS_DONE = 4,     /*  final: succeeded */
    SHOAL_STATUS_FAILED = 5,   /*  final */
    SHOAL_STATUS_CANCELED = 6, /*  final */
    SHOAL_STATUS_LOST = 7,     /*  lost with its worker, being computed again */
};
/*  "unknown", "waiting", ... "lost"; "invalid" for other numbers. Static. */
const char *shoal_state_name(int state);

/*  Waits until every ref (any == false) or at least one ref (any == true) is final:
    done, failed, canceled, or unknown to the broker (which counts as final, failed with
    SHOAL_ENOTFOUND). Sends buffered submissions first. In all-mode it waits for every
    ref even when one has failed already, so shoal_status then tells the fate of each.
    Statuses are cached: waiting again on a final ref costs nothing.
    Returns 0 when all (any: at least one) of the refs succeeded; else, when they are
    final, the code of the first failed ref in the order given (SHOAL_ETASK: the task's
    code failed or it named a failed input; SHOAL_ENOTFOUND: the ref, an input or the
    command was not found; SHOAL_ECANCELED; ...) with shoal_last_error naming the ref
    and the reason; SHOAL_ETIMEDOUT (the message says how many are unfinished);
    SHOAL_EINVAL (refs NULL with n > 0); the code of an error message from the broker;
    SHOAL_ENOMEM; SHOAL_EIO. n == 0 returns 0 at once. */
int shoal_wait(shoal_t *self, const shoal_ref_t *refs, size_t n, bool any, int timeout_ms);

/*  What this client knows of a ref. */
typedef struct {
    shoal_ref_t ref;
    int state;         /*  SHOAL_STATUS_* (final ones only: see shoal_status) */
    int code;          /*  0 when done, else why it failed (a SHOAL_E* code) */
    int exit_code;     /*  of the producing exec task: its exit status, or -N when it was
                           killed by signal N; 0 otherwise */
    const char *error; /*  NULL, or a one-line reason followed by the tail of the task's
                           stderr. Borrowed: valid until shoal_remove of this ref,
                           shoal_disconnect, or a shoal_get of this ref that finds the
                           object gone and looks it up again */
    uint64_t size;     /*  the object's size in bytes, when done */
} shoal_status_t;

/*  Fills *status with the final status of ref, from the cache that shoal_wait and
    shoal_get fill (it does not ask the broker). Returns 0, SHOAL_EAGAIN (no final status
    is known yet: wait for it first), SHOAL_EINVAL (NULL arguments). */
int shoal_status(shoal_t *self, shoal_ref_t ref, shoal_status_t *status);

/*  Bytes of an object, owned by the view. */
typedef struct {
    const void *data; /*  size bytes; never NULL after a successful shoal_get */
    size_t size;
    void *priv_; /*  internal */
} shoal_view_t;

/*  Waits until ref is final and gives its bytes. Small objects (up to 64 KiB) come with
    their status from the broker; larger ones are fetched from the data socket of the
    worker that holds them, in 1 MiB chunks with 8 in flight, into one buffer. If that
    worker has lost the object or does not answer, the broker is asked again (a lost
    object is computed again from its task).
    On success *view holds the bytes until shoal_view_release(view), which the caller
    must call; the view does not depend on self (it may outlive shoal_disconnect).
    Returns 0; the failure code of the ref as shoal_wait gives it (SHOAL_ETASK, ...);
    SHOAL_ETIMEDOUT; SHOAL_EUNREACH (the worker holding it never answered);
    SHOAL_ENOTFOUND; SHOAL_ENOMEM (the object does not fit in memory); SHOAL_EPROTO;
    SHOAL_EINVAL (NULL arguments). On failure *view is untouched. */
int shoal_get(shoal_t *self, shoal_ref_t ref, int timeout_ms, shoal_view_t *view);

/*  Frees the bytes of a view and zeroes it. NULL-safe; releasing twice is harmless. */
void shoal_view_release(shoal_view_t *view);

/*  Cancels tasks (refs of any of their outputs name them): queued ones never run,
    running ones are killed (an exec task's whole process group), and their dependents
    are canceled too. Finished tasks are left alone. Sends buffered submissions first.
    Returns how many the broker canceled (>= 0), or SHOAL_ETIMEDOUT (no acknowledgement
    in time), SHOAL_EINVAL, the broker's code with its reason, SHOAL_ENOMEM, SHOAL_EIO. */
int shoal_cancel(shoal_t *self, const shoal_ref_t *refs, size_t n, int timeout_ms);

/*  Removes objects from the cluster: the workers drop their bytes, the broker forgets
    them (and a finished task once none of its outputs lives). Also forgets their cached
    statuses here. Returns how many the broker removed (>= 0), or as shoal_cancel. */
int shoal_remove(shoal_t *self, const shoal_ref_t *refs, size_t n, int timeout_ms);

/*  One worker as the broker sees it. */
typedef struct {
    const char *name;
    const char *host;
    const char *endpoint; /*  its data socket */
    unsigned slots;
    uint64_t running, queued, done, failed;
    uint64_t store_bytes, store_capacity;
} shoal_worker_info_t;

/*  Lists the live workers. On success *list is a new array of *n entries, owned by the
    caller with everything it points to: free it with shoal_workers_free(list, *n).
    Returns 0, SHOAL_ETIMEDOUT, SHOAL_EINVAL, the code of an error message from the
    broker, SHOAL_ENOMEM, SHOAL_EIO. */
int shoal_workers(shoal_t *self, shoal_worker_info_t **list, size_t *n, int timeout_ms);
/*  Frees a list from shoal_workers and sets *list to NULL. NULL-safe. */
void shoal_workers_free(shoal_worker_info_t **list, size_t n);

#ifdef __cplusplus
}
#endif
#endif
