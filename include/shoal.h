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

#include <stdarg.h>
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
      what you no longer need (shoal_remove), or the workers' stores fill up. (A local://
      cluster is stopped on disconnect, and its objects go with it.) */

typedef struct shoal shoal_t;

/*  Connects to a cluster and greets its broker (hello -> hello_ok) within timeout_ms.
    url is one of:
    - "tcp://HOST:PORT": an existing broker (`shoal broker`, `shoal up`).
    - "local://N" or "local://N?OPTION=VALUE&...": a cluster of this handle's own, like
      dask.distributed.Client() or ray.init() without an address: a broker and N workers
      (1..256; "local://" alone means 2) on free ports of 127.0.0.1, started now and
      stopped by shoal_disconnect. It is `shoal up` run as a child process; libshoal
      finds the `shoal` binary as $SHOAL_BIN, else `shoal` in the directory of the
      running program, else in the bindir shoal was built to be installed in
      (CMAKE_INSTALL_PREFIX/bin, /usr/local/bin by default), else on PATH. Options (taken
      as written, without percent-decoding):
        slots=N    tasks each worker runs at once (default: the CPUs divided among the
                   workers, at least 1)
        shm=SIZE   each worker's store memory in /dev/shm, such as 64M or 1G (default
                   256M). It is committed RAM and there is no swap: N x SIZE must fit
        log=FILE   append the cluster's stderr (the broker's and workers' logs) to FILE.
                   By default it goes to an unnamed temporary file, whose last lines the
                   error message quotes when the cluster fails to start
      timeout_ms covers the start (about 0.3 s for 2 workers here) and the greeting
      (which gets at least 1 s once the cluster is up).
      Starting forks the calling process and execs `shoal`, with only async-signal-safe
      calls in between: safe in a program with threads. The cluster has its own process
      group, so a Ctrl-C at the terminal reaches only the program, which stops it by
      disconnecting or exiting; and it gets SIGTERM when the thread that called
      shoal_connect ends (PR_SET_PDEATHSIG, which follows the thread, not the process),
      so it never outlives the program, even one killed outright: connect from a thread
      that lives as long as the handle (the main thread, say). Its stores are temporary:
      objects go with the cluster. SHOAL_LOG (debug, info, warn, error) in the
      environment sets the daemons' log level. libshoal waits for the child by its pid
      only; a program that reaps any child (waitpid(-1)) is tolerated.
    - slurm:// is not supported yet.
    On success *self_p is a new handle owned by the caller: release it with
    shoal_disconnect(). Its client id is a fresh random 64-bit number, so the refs it
    makes never collide with another client's.
    Returns 0, or:
      SHOAL_EINVAL    url is NULL or malformed (for local://: N out of range, an unknown
                      option or a bad value; nothing is started), or its scheme is not
                      supported (yet);
      SHOAL_EUNREACH  nobody answered within timeout_ms. ZeroMQ's connect never fails, so
                      silence is the only sign of a missing broker; the message names
                      the address;
      SHOAL_EVERSION  the broker speaks another protocol version;
      SHOAL_ENOTFOUND local://: no `shoal` binary; the message says where it looked;
      SHOAL_ETIMEDOUT local://: the cluster was not ready within timeout_ms. What was
                      started is stopped again (which can take a moment longer) and the
                      message quotes the end of its stderr;
      SHOAL_EIO       no socket could be made; local://: `shoal up` could not run or
                      ended before it was ready, and the message says how it ended and
                      quotes the end of its stderr;
      SHOAL_ENOMEM;
      another SHOAL_E* code: the broker refused the greeting with that code.
    On failure *self_p is untouched, nothing started is left running, and
    shoal_last_error(NULL) gives the reason (kept per thread). timeout_ms < 0 waits
    forever. */
int shoal_connect(const char *url, int timeout_ms, shoal_t **self_p);

/*  Sends what shoal_submit has buffered (without waiting for acknowledgements: call
    shoal_flush first to know they arrived), then RELEASES what this client owns, unless
    shoal_keep(self, true) was called: the broker cancels its unfinished tasks (and their
    dependents, whoever submitted them), drops their outputs and logs and forgets them,
    as Dask's Client.close() does with its futures. It waits at most 2 s for the broker
    to confirm (a warning on stderr if it does not). Then it closes the sockets, waits at
    most 200 ms for queued bytes to leave, frees everything and sets *self_p to NULL.
    Views from shoal_get stay valid until released. NULL-safe.
    A local:// handle then stops its cluster: SIGTERM to `shoal up`, which stops the
    workers, then the broker, and removes their stores and their arenas in /dev/shm.
    It waits for that (well under a second here; `shoal up` is killed if it has not
    ended after 30 s). Objects go with the cluster; an abnormal end of `shoal up` is
    logged on stderr. */
void shoal_disconnect(shoal_t **self_p);

/*  keep = true: shoal_disconnect leaves this client's tasks running and their results
    stored, for other clients (who know the refs) or a later run; remove them with
    shoal_remove. The `shoal` command keeps: `shoal submit` exits right after the broker
    has the task. Default false. NULL-safe. */
void shoal_keep(shoal_t *self, bool keep);

/*  The explanation of the last failing call on self, or, with self NULL, of the last
    failing shoal_connect in this thread. "" when there is none. Borrowed: valid until
    the next call on self (or the next shoal_connect). */
const char *shoal_last_error(const shoal_t *self);

/*  The events endpoint the broker announced in its greeting (a SUB socket connects to
    it). Borrowed until shoal_disconnect. */
const char *shoal_events_endpoint(const shoal_t *self);

/*  The broker this handle talks to: the tcp:// URL given to shoal_connect or, for
    local://, the address of the broker it started, where other programs and the shoal
    command can reach the same cluster (SHOAL_BROKER=...). Borrowed until
    shoal_disconnect; "" for NULL. */
const char *shoal_broker_endpoint(const shoal_t *self);

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
    const char *name;   /*  optional name for the outputs (not 32 hex digits); NULL for none */
    unsigned retries;   /*  extra attempts after a failure of the task itself */
    const char *job;    /*  optional job the task belongs to; NULL for none */
    int priority;       /*  higher runs first; default 0 */
    /*  Its index in an array: $SHOAL_TASK_INDEX of an exec task, shoal_task_index() of a
        fn task; 0 outside arrays. See "jobs and arrays" (also for job names). */
    uint64_t array_index;
    /*  Its outputs are removed this long after it is done (as by shoal_remove); 0: they
        live until removed or released. */
    uint64_t ttl_ms;
    /*  Tags for its outputs (shoal ls): n_tags of them, at most SHOAL_TAGS_MAX, each at
        most SHOAL_TAG_MAX bytes. */
    const char *const *tags;
    size_t n_tags;
    unsigned flags; /*  SHOAL_TASK_PERSIST */
    /*  Bit i set, input i streams: the task may start as soon as that input is allocated
        in a store (a put being written, an output of a running task), on the worker
        writing it. A fn task reads it with shoal_task_input_read, which waits for the
        bytes; an exec task streams one input at most, which becomes its stdin (a pipe
        fed as the bytes land; $SHOAL_INPUT_i is then /dev/stdin). Inputs 0..63 only. */
    uint64_t stream_inputs;
} shoal_task_spec_t;
/*  Its outputs held in a worker's store are written to that worker's disk too, synced
    before the task is reported done: they survive a kill or restart of the worker (also
    without its memory), and are neither recomputed nor failed while it is away (not after
    a broker restart, which forgets who holds what: see docs/protocol.md). Outputs the task
    sends inline (up to 64 KiB each, 4 MiB in all) are the broker's and are not written to
    disk; an output kept in the store is, whatever its size. A task with a name is
    persisted likewise. An output larger than 1 GiB cannot be persisted: the task fails
    with SHOAL_ETOOBIG. */
#define SHOAL_TASK_PERSIST      (1u << 8)
#define SHOAL_STREAM_INPUTS_MAX 64 /*  inputs 0..63 may stream (stream_inputs) */

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
    "lib:symbol", n_outputs above SHOAL_MAX_OUTPUTS, a name that looks like a ref: 32 hex
    digits), SHOAL_ETOOBIG (the task alone would
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
    their status from the broker. An object in the store of a worker on this host is not
    copied at all: the view points into that worker's shared-memory arena (mapped
    read-only) and pins the object there until released, so a get costs about a
    microsecond whatever the size; once this client has read from a worker's store, an
    object sealed there is found without asking the broker. Other objects are fetched
    from the data socket of the worker that holds them, in 1 MiB chunks with 8 in
    flight, into one buffer. If that worker has lost the object or does not answer, the
    broker is asked again (a lost object is computed again from its task).
    ($SHOAL_NO_LOCAL_STORE=1 makes every worker count as remote.)
    On success *view holds the bytes until shoal_view_release(view), which the caller
    must call; the view does not depend on self (it may outlive shoal_disconnect).
    Returns 0; the failure code of the ref as shoal_wait gives it (SHOAL_ETASK, ...);
    SHOAL_ETIMEDOUT; SHOAL_EUNREACH (the worker holding it never answered);
    SHOAL_ENOTFOUND; SHOAL_ENOMEM (the object does not fit in memory); SHOAL_EPROTO;
    SHOAL_EINVAL (NULL arguments). On failure *view is untouched. */
int shoal_get(shoal_t *self, shoal_ref_t ref, int timeout_ms, shoal_view_t *view);

/*  Frees the bytes of a view and zeroes it. NULL-safe; releasing twice is harmless. */
void shoal_view_release(shoal_view_t *view);

/*  ------------------------------------------------------------------ streaming reads

    A stream reads an object while it is being written (a put between shoal_put_begin and
    shoal_put_end, or a task's output): the bytes below the writer's watermark as they
    land, the end once it is sealed. It asks the broker which worker holds the allocation
    and that worker's data socket for the bytes (held requests, answered as bytes land);
    an object that is final already is read as shoal_get reads it. A put written on the
    worker's host publishes its progress as it writes (shoal_put_progress); a task's output
    written in place becomes readable at its seal. */
typedef struct shoal_stream shoal_stream_t;

/*  Opens a stream of ref at offset 0 (nothing waits yet). The broker must know ref: a
    put another client has begun is known once that client's submissions are flushed
    (shoal_flush; `shoal put` prints a ref only then), else reads fail SHOAL_ENOTFOUND.
    *stream_p borrows self: close it before shoal_disconnect. Returns 0, SHOAL_EINVAL, SHOAL_ENOMEM,
   SHOAL_ETIMEDOUT (buffered submissions not taken), SHOAL_EIO. */
int shoal_stream_open(shoal_t *self, shoal_ref_t ref, shoal_stream_t **stream_p);
/*  Copies up to cap bytes from the stream's position into buf, waiting up to timeout_ms
    (-1: no limit) until at least one byte is readable. Returns the count (> 0), 0 at the
    end (sealed and all read; also when cap is 0), or SHOAL_ETIMEDOUT (nothing new in
    time: call again), SHOAL_ECANCELED (the object was aborted: its writer aborted it or
    died; the message names the ref and why), the ref's failure code as shoal_wait gives
    it, SHOAL_ENOTFOUND, SHOAL_EUNREACH (its worker stopped answering), SHOAL_EPROTO,
    SHOAL_EINVAL, SHOAL_ENOMEM, SHOAL_EIO. After a failure other than SHOAL_ETIMEDOUT, only
    shoal_stream_close is useful. */
int shoal_stream_read(shoal_stream_t *stream, void *buf, size_t cap, int timeout_ms);
/*  The object's size once a read has learnt it, else 0. */
uint64_t shoal_stream_size(const shoal_stream_t *stream);
/*  Closes the stream. NULL-safe, sets *stream_p to NULL. */
void shoal_stream_close(shoal_stream_t **stream_p);

/*  ------------------------------------------------------------------------------- put

    Objects a program puts into the cluster, to read back or to give tasks as inputs.
    Writing is split in two, as in Ray's plasma store: shoal_put_begin allocates the space
    (the ref exists, and the broker knows where the object will be, at once), the bytes
    land with shoal_put_write (or straight into shoal_put_memory on the worker's host),
    then shoal_put_end seals the object (immutable from then on) or shoal_put_abort drops
    it. shoal_put does all of it in one call.

    Where an object goes: small ones (up to SHOAL_INLINE_MAX bytes) to the broker's
    directory, which keeps them within its --inline-budget, unless SHOAL_PUT_STORE asks
    for a worker's store; larger ones to the store of opts->worker, or else a worker on
    this host (the bytes then move through shared memory, never a socket), or else the
    worker with the most free space. A put is owned like a task: released at disconnect
    unless shoal_keep, removed by shoal_remove or its TTL. */

/*  Put options; zero-initialise. Pointers are borrowed for the call only. */
typedef struct {
    const char *name;        /*  a name for the object (shoal ls; not 32 hex digits), or NULL */
    const char *const *tags; /*  n_tags tags, each at most SHOAL_TAG_MAX bytes */
    size_t n_tags;
    uint64_t ttl_ms;    /*  removed this long after it is sealed; 0: until removed */
    const char *worker; /*  put it in this worker's store; NULL: as said above */
    unsigned flags;     /*  SHOAL_PUT_STORE, SHOAL_PUT_PERSIST */
} shoal_put_opts_t;
#define SHOAL_PUT_STORE 1u /*  keep even a small object in a worker's store */
/*  Keep it on the worker's disk too (implies SHOAL_PUT_STORE): written and synced when it
    is sealed (shoal_put returns after that), it survives a kill or restart of the worker,
    even when its memory (/dev/shm) is lost, and the broker keeps listing it while that
    worker is away. A named object (opts->name) is persisted likewise. At most 1 GiB: a
    larger persisted put fails with SHOAL_ETOOBIG. */
#define SHOAL_PUT_PERSIST 2u
#define SHOAL_TAG_MAX     64
#define SHOAL_NAME_MAX    1024 /*  bytes of an object's name (shoal_put_opts_t, task specs) */
#define SHOAL_TAGS_MAX    16

/*  Puts size bytes as a new object; its ref comes back in *ref. A small object goes in
    the submission stream (buffered and acknowledged like shoal_submit: shoal_flush says
    the broker has it); a larger one is written and sealed before the call returns.
    Returns 0; SHOAL_EINVAL (NULL arguments, bad tags, a name that looks like a ref: 32
    hex digits); SHOAL_EFULL (no worker's store has
    room, within a bounded wait: the message names the sizes); SHOAL_EUNREACH (no worker,
    or the chosen one does not answer); SHOAL_ETIMEDOUT; SHOAL_ENOMEM; SHOAL_EIO. */
int shoal_put(shoal_t *self, const void *data, size_t size, const shoal_put_opts_t *opts,
              shoal_ref_t *ref);

typedef struct shoal_put shoal_put_t;

/*  Allocates size bytes in a worker's store (always a store, whatever the size) and
    tells the broker: *ref is the object's ref, usable as an input straight away (tasks
    reading it wait for the seal). *put_p is the writer, to finish with shoal_put_end or
    shoal_put_abort; it borrows self, so it must not outlive it. Returns as shoal_put. */
int shoal_put_begin(shoal_t *self, uint64_t size, const shoal_put_opts_t *opts, shoal_ref_t *ref,
                    shoal_put_t **put_p);
/*  The object's memory when the worker is on this host: size bytes, writable, mapped for
    this writer only (writing past them faults). NULL when the worker is remote: use
    shoal_put_write. Valid until shoal_put_end or shoal_put_abort. The writer pins the
    allocation in the worker's store while it writes, so if the put is aborted under it
    (canceled, removed, or a writer silent for a minute) the space is not reused until
    shoal_put_end (which then fails) or shoal_put_abort: late writes harm nothing. */
void *shoal_put_memory(shoal_put_t *put);
/*  Appends n bytes after those written so far (copies them: into shared memory on the
    worker's host, else in 1 MiB messages with a few in flight). Returns 0, SHOAL_EINVAL
    (more than size bytes in all), SHOAL_EUNREACH, SHOAL_ETIMEDOUT, SHOAL_EIO. A writer
    that stays silent for a minute is aborted by the worker. */
int shoal_put_write(shoal_put_t *put, const void *data, size_t n);
/*  Tells streaming readers that the first bytes bytes are written, for a writer on the
    worker's host that writes through shoal_put_memory (shoal_put_write publishes by
    itself, at least every 64 KiB or millisecond; call this to publish a tail at once).
    A message to the worker, no wait; a no-op for a remote worker, which counts what
    arrives. Returns 0, SHOAL_EINVAL (more than the object's size), SHOAL_EIO. */
int shoal_put_progress(shoal_put_t *put, uint64_t bytes);
/*  Seals the object and frees the writer (*put_p = NULL, whatever the outcome). With
    shoal_put_write, all size bytes must have been written (else SHOAL_EINVAL and the
    object is aborted); with shoal_put_memory the caller vouches for them. Returns 0 once
    the worker has sealed it, or SHOAL_EUNREACH, SHOAL_ETIMEDOUT, SHOAL_EIO. */
int shoal_put_end(shoal_put_t **put_p);
/*  Drops the object: readers waiting for it fail with SHOAL_ECANCELED naming it. Frees
    the writer. NULL-safe. */
void shoal_put_abort(shoal_put_t **put_p);

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

/*  ---------------------------------------------------------------------------- query

    What is stored, as the broker knows it (`shoal ls`): the outputs of done tasks (every
    output index below n_outputs; not logs nor the stdout of failed commands) and puts,
    being written or sealed. Names and tags are those given at submission or put
    (spec.name, spec.tags; opts.name, opts.tags): every output of a task carries its
    task's. A name that looks like a ref (32 hex digits) is refused at submission, so
    `shoal get NAME` can tell them apart. */

/*  The state of a stored object (the same numbers as on the wire). */
enum {
    SHOAL_OBJECT_ALLOCATED = 1, /*  a put being written (allocated, not sealed yet) */
    SHOAL_OBJECT_SEALED = 2,    /*  complete and immutable: readable */
    SHOAL_OBJECT_SPILLED = 3,   /*  sealed, its bytes moved from the worker's memory to its
                                    disk tier (memory pressure); still readable: a get reads
                                    it over the data socket, a task gets it back in memory */
    SHOAL_OBJECT_PERSISTED = 4, /*  sealed and kept on its worker's disk too (persist, or a
                                    name): survives the worker's restart; listed with its
                                    worker's name even while that worker is away */
};

/*  A query; zero-initialise. Filters are ANDed; NULL (or "") for any. Pointers are
    borrowed for the call only. */
typedef struct {
    const char *name_glob; /*  fnmatch(3) pattern on the name: "run-*"; objects without a
                              name never match. For an exact name, escape * ? [ and \ with
                              a backslash */
    const char *tag;       /*  one of the object's tags, exactly */
    const char *worker;    /*  the name of the worker whose store holds it */
    const char *job;       /*  the job of the task that produced it */
    size_t limit;          /*  list at most this many; 0: SHOAL_QUERY_DEFAULT_LIMIT; at most
                              1,000,000 */
} shoal_query_t;
#define SHOAL_QUERY_DEFAULT_LIMIT 1000

/*  One stored object. Strings are NULL when absent. */
typedef struct {
    shoal_ref_t ref;
    const char *name;        /*  its name, or NULL */
    const char *const *tags; /*  n_tags tags (NULL when there are none) */
    size_t n_tags;
    uint64_t size;      /*  bytes (being written: the size allocated) */
    int state;          /*  SHOAL_OBJECT_* */
    const char *worker; /*  the worker holding it, or NULL: inline in the broker's directory */
    shoal_ref_t task;   /*  the task that produced it (for a put, ref itself) */
    uint64_t age_ms;    /*  since it was sealed (allocated, while being written), as the
                           broker counts: after a broker restart, since the restart */
} shoal_object_info_t;

/*  Lists the stored objects that match q (NULL: every object), the oldest first, at most
    q->limit of them, and no more than fit in one reply (32 MiB: about 200,000 objects of
    short names and few tags). Sends buffered submissions first, so puts just made are
    listed. On success *list is a new array of *n entries (*n may be 0), owned by the
    caller with everything it points to: free it with shoal_objects_free(list, *n).
    The broker walks every task it knows once: fine for listings, not for a hot path.
    Returns how many more objects matched than *list holds (>= 0; 0 when it holds them
    all; at most INT_MAX); SHOAL_EINVAL (self, list or n NULL); SHOAL_ETIMEDOUT; the code
    of an error from the broker (SHOAL_EPROTO from a broker that predates queries);
    SHOAL_ENOMEM; SHOAL_EIO. On failure *list and *n are untouched. */
int shoal_query(shoal_t *self, const shoal_query_t *q, shoal_object_info_t **list, size_t *n,
                int timeout_ms);
/*  Frees a list from shoal_query and sets *list to NULL. NULL-safe. */
void shoal_objects_free(shoal_object_info_t **list, size_t n);

/*  ---------------------------------------------------------------------- jobs and arrays

    A job is a name that groups tasks (spec.job; `shoal submit --job NAME`), as in
    HyperQueue: the broker counts a job's tasks by state, lists them, and cancels them
    together. A job exists while the broker knows any of its tasks: it appears with its
    first task and goes when its last task is forgotten (once every output of it is
    removed). Several clients may submit into the same job.

    An array is a set of tasks that differ by their index (spec.array_index): an exec task
    reads it in $SHOAL_TASK_INDEX, a fn task with shoal_task_index(). shoal_submit_array
    submits one.

    Job order, in which shoal_job_tasks lists a job's tasks (and `shoal get --job`
    concatenates their outputs): submission order, except that each run of consecutive
    array tasks (index > 0) is sorted by index. So an array is listed in index order
    however it was submitted, and tasks outside arrays (index 0) keep their place. */

/*  Job names are at most this many bytes: so a list of 100,000 jobs stays within half of
    the 64 MiB message limit. */
#define SHOAL_JOB_NAME_MAX 255

/*  Submits an array: one task per index first..last (inclusive), in index order, each a
    copy of spec with array_index set to its index (spec->array_index is ignored). ids
    receives the ids of the last - first + 1 tasks, in index order. The tasks form the
    job spec->job, or with spec->job NULL or "", the job "array-<id of the first task>"
    (ids[0] as 32 hex digits). Like shoal_submit, this only buffers: call shoal_flush to
    know the broker has them.
    Returns 0; SHOAL_EINVAL (spec or ids NULL, last < first, first == 0 and last ==
    UINT64_MAX, or what shoal_submit refuses), SHOAL_ETOOBIG, SHOAL_ENOMEM as shoal_submit.
    A spec that shoal_submit refuses fails before any task is submitted. A failure later
    on (out of memory, a batch that cannot be sent) leaves the tasks before it submitted,
    their ids in ids. */
int shoal_submit_array(shoal_t *self, const shoal_task_spec_t *spec, uint64_t first, uint64_t last,
                       shoal_ref_t *ids);

/*  One job as the broker counts it: its tasks by state (the SHOAL_STATUS_* they are in). */
typedef struct {
    const char *name;
    uint64_t waiting;  /*  waiting for inputs */
    uint64_t ready;    /*  inputs there, queued at the broker */
    uint64_t running;  /*  on a worker, queued there or running */
    uint64_t done;     /*  succeeded */
    uint64_t failed;   /*  failed, or an input failed */
    uint64_t canceled; /*  canceled, or an input was */
    uint64_t total;    /*  the sum: the tasks the broker knows in the job */
} shoal_job_info_t;

/*  Lists the jobs, oldest first (the 100,000 newest when there are more). On success
    *list is a new array of *n entries (*n may be 0), owned by the caller with everything
    it points to: free it with shoal_jobs_free(list, *n). Sends buffered submissions first,
    so the counts include them.
    Returns 0, SHOAL_ETIMEDOUT, SHOAL_EINVAL (NULL arguments), the code of an error message
    from the broker, SHOAL_ENOMEM, SHOAL_EIO. On failure *list and *n are untouched. */
int shoal_jobs(shoal_t *self, shoal_job_info_t **list, size_t *n, int timeout_ms);
/*  Frees a list from shoal_jobs and sets *list to NULL. NULL-safe. */
void shoal_jobs_free(shoal_job_info_t **list, size_t n);

/*  The ids of the tasks of job name (the refs of their outputs 0), in job order (see
    above). Sends buffered submissions first, so tasks just submitted are listed; tasks
    that join the job later are not. On success *refs is a new array of *n (>= 1) refs,
    owned by the caller: release it with free().
    Returns 0; SHOAL_ENOTFOUND (no such job: never submitted, or all its tasks were
    removed; shoal_last_error names it); SHOAL_EINVAL (name NULL, empty or longer than
    SHOAL_JOB_NAME_MAX, refs or n NULL); SHOAL_ETIMEDOUT; the code of an error message from
    the broker; SHOAL_ENOMEM; SHOAL_EIO. On failure *refs and *n are untouched. */
int shoal_job_tasks(shoal_t *self, const char *name, shoal_ref_t **refs, size_t *n, int timeout_ms);

/*  Cancels every unfinished task of job name, as shoal_cancel does: queued ones never
    run, running ones are killed, and their dependents (in the job or not) are canceled
    too. Sends buffered submissions first, so tasks just submitted are canceled as well.
    Returns how many of the job's tasks were canceled (>= 0: 0 when all had finished);
    SHOAL_ENOTFOUND (no such job; shoal_last_error names it); SHOAL_EINVAL (name NULL,
    empty or too long); else as shoal_cancel. */
int shoal_cancel_job(shoal_t *self, const char *name, int timeout_ms);

/*  -------------------------------------------------------------- Task API for fn plugins

    A fn task runs a C function from a shared library (a "plugin") inside an executor
    process of a worker. Submit it with kind SHOAL_TASK_FN and fn "LIB:SYMBOL" (on the
    command line: `shoal submit --fn LIB:SYMBOL [--arg TEXT]`). The executor splits fn at
    its LAST ':', loads LIB with dlopen(LIB, RTLD_NOW | RTLD_LOCAL) and looks SYMBOL up
    with dlsym. LIB is resolved on the worker, as dlopen does: a path with a '/' is opened
    as given (a relative one from the worker's working directory: prefer absolute
    paths); a bare file name is searched in LD_LIBRARY_PATH and the system's library
    directories. Each executor loads a library once and keeps it loaded for its whole
    life (it never calls dlclose): rebuilding a plugin takes effect in new executors only.
    A library that cannot be loaded fails the task with SHOAL_ENOTFOUND and "cannot load
    plugin LIB: <the dynamic loader's reason>"; a missing symbol with SHOAL_ENOTFOUND and
    "plugin LIB has no function SYMBOL".

    The function has the type shoal_task_fn_t:

        SHOAL_PLUGIN_EXPORT int SYMBOL(shoal_task_t *t);

    A plugin includes only this header and does NOT link libshoal: everything it asks of
    shoal goes through the table of function pointers in t->api, which the static inline
    helpers below wrap (SQLite's loadable extensions do the same with
    sqlite3_api_routines). So there is never a second copy of libshoal's state in an
    executor, and a plugin keeps working with later executors, whose tables only grow.
    Build it as a shared module:

        cc -shared -fPIC -O2 -I/path/to/shoal/include -o libmine.so mine.c

    A minimal plugin:

        #include <shoal.h>
        #include <stdio.h>
        #include <stdlib.h>

        SHOAL_PLUGIN_EXPORT int twice(shoal_task_t *t)
        {
            const char *arg = shoal_task_arg(t, NULL); //  NUL-terminated
            char out[32];
            int n = snprintf(out, sizeof out, "%lld\n", 2 * atoll(arg));
            return shoal_task_output_put(t, 0, out, (size_t)n);
        }

    examples/plugins/ has more (sum of inputs, concatenation, a Monte Carlo estimate of pi).

    The contract
    - Return 0 for success: every output 0 .. n_outputs-1 must then be sealed (by
      shoal_task_output_put, or shoal_task_output_alloc then shoal_task_output_seal), else
      the task fails naming the first output that was never written or never sealed.
    - Return anything else for failure: the task fails (SHOAL_ETASK) with the message
      given to shoal_task_set_error, else "SYMBOL returned N"; the outputs written so far
      are dropped. A positive N is also the task's exit code, what `shoal run` exits with.
      --retries applies as for exec tasks.
    - Inputs are zero-copy, read-only views of objects in the worker's store: the executor
      maps the store read-only, so writing through an input pointer faults.
    - Outputs up to 64 KiB (SHOAL_INLINE_MAX, within 4 MiB for all of a task's small
      outputs) are allocated in the executor's memory and travel inline with the result;
      larger ones are allocated in the worker's store (one round trip to the worker each)
      and mapped writable for just their range, between guard pages, so a write beyond an
      allocation faults instead of corrupting another object. The size is fixed when an
      output is allocated: allocate exactly what it will hold.
    - What the function writes on stdout or stderr (the file descriptors 1 and 2) is the
      task's log: `shoal logs REF` prints it, and its end is added to the failure reason
      of a failed task.
    - An executor runs one task at a time. The library stays loaded between tasks, so its
      global state lives on from one task to the next on the same executor: fine for
      caches, but results must not depend on it (another executor, or a new one after a
      crash, starts afresh). Call the helpers only from the thread that runs the function
      and only until it returns.
    - A crash (a segfault, abort(), exit(), the OOM killer) ends the executor, never the
      worker: the task fails with "executor died: killed by signal N (SIGxxx)" (or "exited
      with status N") and the worker starts a new executor for the next task.
    - Misuse of the helpers (an index out of range, allocating an output twice, sealing
      one that was not allocated, sealing twice, NULL pointers) returns a negative
      SHOAL_E* code and changes nothing. It never crashes the executor: only the
      plugin's own bugs (a wild pointer, a write beyond an allocation) do.

    Lifetimes (all borrowed from the executor)
    - t, the argument bytes and the input views: valid until the function returns. Copy
      what you need to keep. Never keep t: called through a kept t, the helpers refuse
      (SHOAL_ESTATE) while the executor is idle, but act on whatever task it runs next.
    - The memory shoal_task_output_alloc gives: writable until shoal_task_output_seal of
      that output or the return of the function, whichever comes first; not after.

    Error codes the helpers return: SHOAL_EINVAL (an index out of range, a NULL pointer),
    SHOAL_ESTATE (the output's state does not allow the call, or no task is running), and
    for allocations SHOAL_EFULL (the worker's store has no room),
    SHOAL_ETOOBIG (larger than the whole store), SHOAL_ENOMEM, SHOAL_EIO (the worker could
    not be reached or the range could not be mapped). A failed allocation also records a
    reason (which output, how large, how full the store is) that becomes the task's
    failure reason unless the function sets its own. */

typedef struct shoal_task shoal_task_t;

/*  The type of a task function. */
typedef int shoal_task_fn_t(shoal_task_t *t);

/*  Marks a task function as exported from its library, so dlsym finds it even when the
    library is built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define SHOAL_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SHOAL_PLUGIN_EXPORT
#endif

/*  The table an executor hands to task functions. Append-only: entries are added at the
    end, never removed or reordered, and size tells how many this executor has. A plugin
    that uses an entry added after version 1 checks SHOAL_TASK_API_HAS(t, entry) first.
    Call the entries through the helpers below, not directly. */
#define SHOAL_TASK_API_VERSION 1

typedef struct shoal_task_api {
    size_t size;      /*  sizeof (shoal_task_api_t) as the executor was built */
    unsigned version; /*  the executor's SHOAL_TASK_API_VERSION */
    const void *(*arg)(shoal_task_t *t, size_t *size);
    uint64_t (*index)(shoal_task_t *t);
    shoal_ref_t (*id)(shoal_task_t *t);
    size_t (*n_inputs)(shoal_task_t *t);
    int (*input)(shoal_task_t *t, size_t i, const void **data, size_t *size);
    size_t (*n_outputs)(shoal_task_t *t);
    int (*output_alloc)(shoal_task_t *t, size_t i, size_t size, void **data);
    int (*output_seal)(shoal_task_t *t, size_t i);
    int (*output_put)(shoal_task_t *t, size_t i, const void *data, size_t size);
    void (*set_error)(shoal_task_t *t, const char *fmt, va_list ap);
    const char *(*strerror)(int code);
    int (*output_progress)(shoal_task_t *t, size_t i, size_t bytes);
    int (*input_read)(shoal_task_t *t, size_t i, uint64_t offset, void *buf, size_t n,
                      int timeout_ms);
} shoal_task_api_t;

/*  What a task function receives. Only api is public; the executor keeps its own state
    behind it. */
struct shoal_task {
    const shoal_task_api_t *api;
};

#define SHOAL_TASK_API_HAS(t, entry)                                                               \
    ((t)->api->size >= offsetof(shoal_task_api_t, entry) + sizeof((t)->api->entry))

/*  The argument bytes of the task (spec.arg, `--arg TEXT`, `--arg-file FILE`); their
    number in *size when size is not NULL. Never NULL: with no argument, "" and 0. The
    bytes are followed by a NUL that *size does not count, so a text argument can be used
    as a C string as it is. */
static inline const void *shoal_task_arg(shoal_task_t *t, size_t *size)
{
    return t->api->arg(t, size);
}

/*  The task's index in its array (`shoal submit --array A-B`), 0 outside arrays. */
static inline uint64_t shoal_task_index(shoal_task_t *t)
{
    return t->api->index(t);
}

/*  The task's id (the ref of its output 0). */
static inline shoal_ref_t shoal_task_id(shoal_task_t *t)
{
    return t->api->id(t);
}

/*  How many inputs the task has (spec.n_inputs, the `--input` options). */
static inline size_t shoal_task_n_inputs(shoal_task_t *t)
{
    return t->api->n_inputs(t);
}

/*  Input i: *data points at its *size bytes, in place in the worker's store (no copy),
    read-only (a write faults), valid until the function returns. *data is never NULL on
    success, even for an empty input. The bytes are not NUL-terminated: respect *size.
    Returns 0, or SHOAL_EINVAL (i >= shoal_task_n_inputs, or data or size NULL), leaving
    *data and *size untouched, or SHOAL_EAGAIN: a streaming input (spec.stream_inputs)
    still being written; *data and *size are set, but only the bytes that
    shoal_task_input_read has returned (or says are there) are written yet. */
static inline int shoal_task_input(shoal_task_t *t, size_t i, const void **data, size_t *size)
{
    return t->api->input(t, i, data, size);
}

/*  Copies up to n bytes of input i from offset into buf. For a streaming input
    (spec.stream_inputs) still being written, waits up to timeout_ms (-1: no limit) until
    bytes lie beyond offset; any other input is all there. Returns the count (> 0), 0 at
    the end (offset == the input's size, or n == 0), SHOAL_ETIMEDOUT (nothing new in
    time: call again), SHOAL_ECANCELED or SHOAL_ENOTFOUND (the input was aborted: its
    writer aborted it or died; the task's error says which), SHOAL_EINVAL (i out of range,
    buf NULL, offset beyond the input), SHOAL_ESTATE (the function returned), SHOAL_EIO.
    An executor older than this call: SHOAL_ESTATE. */
static inline int shoal_task_input_read(shoal_task_t *t, size_t i, uint64_t offset, void *buf,
                                        size_t n, int timeout_ms)
{
    return SHOAL_TASK_API_HAS(t, input_read) ? t->api->input_read(t, i, offset, buf, n, timeout_ms)
                                             : SHOAL_ESTATE;
}

/*  How many outputs the task has (spec.n_outputs, `--outputs N`): at least 1. */
static inline size_t shoal_task_n_outputs(shoal_task_t *t)
{
    return t->api->n_outputs(t);
}

/*  Allocates output i with exactly size bytes and points *data at them, writable until
    shoal_task_output_seal(t, i) or the return of the function. The bytes are not zeroed.
    size 0 is fine (a valid pointer to nothing). Returns 0; SHOAL_EINVAL (i out of range,
    data NULL); SHOAL_ESTATE (output i is already allocated or sealed, or the function
    returned); SHOAL_EFULL, SHOAL_ETOOBIG, SHOAL_ENOMEM, SHOAL_EIO (no space: see the
    error codes above). On failure *data is untouched. */
static inline int shoal_task_output_alloc(shoal_task_t *t, size_t i, size_t size, void **data)
{
    return t->api->output_alloc(t, i, size, data);
}

/*  Makes output i final: its bytes are the task's output i once the function returns 0.
    The memory from shoal_task_output_alloc must not be touched after this. Returns 0,
    SHOAL_EINVAL (i out of range), SHOAL_ESTATE (output i was not allocated, is sealed
    already, or the function returned). */
static inline int shoal_task_output_seal(shoal_task_t *t, size_t i)
{
    return t->api->output_seal(t, i);
}

/*  Tells streaming readers of output i (shoal_stream_read, `shoal get --follow`) that
    its first bytes bytes, from shoal_task_output_alloc, are written and final: they get
    them now rather than at the seal. A memory write in a page shared with the worker, no
    message: call it as often as is useful. Without it readers get the bytes at the seal.
    Outputs that travel inline (64 KiB at most) have no streaming readers: a no-op. At
    most 16 outputs of a task publish at once; beyond that a no-op too. Returns 0;
    SHOAL_EINVAL (i out of range, bytes beyond the output's size, or fewer than already
    published); SHOAL_ESTATE (output i is not allocated, or is sealed, or the function
    returned). An executor older than this call: 0, a no-op. */
static inline int shoal_task_output_progress(shoal_task_t *t, size_t i, size_t bytes)
{
    return SHOAL_TASK_API_HAS(t, output_progress) ? t->api->output_progress(t, i, bytes) : 0;
}

/*  Allocates output i with size bytes, copies data into it and seals it: the simple way
    for outputs built in the function's own memory. data may be NULL when size is 0.
    Returns as shoal_task_output_alloc (SHOAL_EINVAL also for data NULL with size > 0). */
static inline int shoal_task_output_put(shoal_task_t *t, size_t i, const void *data, size_t size)
{
    return t->api->output_put(t, i, data, size);
}

/*  Sets the reason the task fails with when the function returns non-zero (printf
    format; up to 1 KiB is kept; a later call replaces it). Without one the reason is
    "SYMBOL returned N". Ignored when the function returns 0. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void
shoal_task_set_error(shoal_task_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t->api->set_error(t, fmt, ap);
    va_end(ap);
}

/*  A static string naming a SHOAL_E* code, like shoal_strerror (which a plugin, not
    linking libshoal, cannot call). */
static inline const char *shoal_task_strerror(shoal_task_t *t, int code)
{
    return t->api->strerror(code);
}

#ifdef __cplusplus
}
#endif
#endif
