/*  client.c: libshoal, a client of a shoal cluster. include/shoal.h is the manual.

    One thread and no background thread of our own: every call that waits runs the socket
    loop (s_run) until its condition holds or its deadline passes, and takes in whatever
    the broker sent meanwhile: acks free submission batches, statuses fill the cache, an
    error message is kept for the call that is waiting (or the next one).

    What must arrive is acknowledged and resent: libzmq drops what is queued on a
    connection that closes. A socket monitor tells us when the connection to the broker
    comes back after a drop; we then greet the broker again and resend, in order, every
    unacknowledged batch, the pending request and every watch that has no final answer.
    While connected, a batch or request unanswered for a second while the broker has
    said nothing at all for a second is resent too (the broker's replies are
    idempotent). */
#include "shoal.h"

#include "common.h"
#include "local.h"
#include "refmap.h"
#include "store.h"
#include "wire.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#define S_SAME(a, b) _Static_assert((int)(a) == (int)(b), #a " is the wire's " #b)
S_SAME(SHOAL_TASK_EXEC, SHOAL_KIND_EXEC);
S_SAME(SHOAL_TASK_FN, SHOAL_KIND_FN);
S_SAME(SHOAL_STATUS_UNKNOWN, SHOAL_STATE_UNKNOWN);
S_SAME(SHOAL_STATUS_WAITING, SHOAL_STATE_WAITING);
S_SAME(SHOAL_STATUS_READY, SHOAL_STATE_READY);
S_SAME(SHOAL_STATUS_RUNNING, SHOAL_STATE_RUNNING);
S_SAME(SHOAL_STATUS_DONE, SHOAL_STATE_DONE);
S_SAME(SHOAL_STATUS_FAILED, SHOAL_STATE_FAILED);
S_SAME(SHOAL_STATUS_CANCELED, SHOAL_STATE_CANCELED);
S_SAME(SHOAL_STATUS_LOST, SHOAL_STATE_LOST);

/*  A batch goes out at 1,000 tasks or 1 MiB of encoded tasks, whichever comes first: big
    enough that the ~90 us per-message cost of a round trip vanishes per task, small enough
    that the broker handles one in a few milliseconds and a resend costs little. */
//  How long disconnect waits for the broker to acknowledge a release: a dead broker must
//  not hold up a program that is exiting.
#define S_RELEASE_TIMEOUT_MS 2000
#define S_BATCH_TASKS        1000
#define S_BATCH_BYTES        (1024 * 1024)
/*  Unanswered for this long while the broker is silent: resend. */
#define S_RESEND_MS 1000
/*  At most this many batches are resent per round: if the oldest get through, their acks
    restart the flow; resending thousands would only fill the pipe with duplicates. */
#define S_RESEND_BATCHES 16
/*  On close, queued bytes get this long to leave: acks make delivery safe, and
    shoal_disconnect must not hang on a dead broker. */
#define S_LINGER_MS 200
/*  The loop wakes at least this often to run its timers. */
#define S_TICK_MS 200
/*  Refs still open this long after the last watch went out are watched again: the broker
    drops statuses for a client whose pipe is full, expecting it to ask again, and keeps
    one watch per client and ref, so asking again costs it nothing but the message. */
#define S_REWATCH_MS 5000
/*  Refs per watch/cancel/remove message: 64 Ki refs are 1 MiB on the wire. */
#define S_REFS_PER_MSG 65536
/*  Fetches in flight per object (credit): 8 MiB keeps a loopback or LAN link busy. */
#define S_FETCH_CREDIT 8
/*  A data socket that returns nothing for this long gets its fetches again; after
    S_FETCH_STALLS such rounds the worker counts as unreachable. */
#define S_FETCH_STALL_MS 3000
#define S_FETCH_STALLS   3
/*  A same-host store that could not be opened is tried again after this long. */
#define S_LOCAL_RETRY_MS 10000
/*  The workers list used to place puts is asked for again when older than this. */
#define S_WORKERS_TTL_MS 1000
/*  Put: the whole call's default deadline (an allocation may wait up to 5 s for room at
    the worker), how long an answer may take before the message goes again, and the
    WRITE messages in flight (1 MiB each, as fetches). */
#define S_PUT_TIMEOUT_MS 60000
#define S_PUT_RESEND_MS  1000
/*  A worker that answers nothing for this long is unreachable: it answers even an
    allocation that waits for room within 5 s, and a resent SEAL whose persist is being
    written with `busy`. Tests: $SHOAL_TEST_PUT_SILENT_MS sets it (ms), so a test need
    not hold a persist for 15 s. */
#define S_PUT_SILENT_MS     15000
#define S_PUT_SILENT_MS_ENV "SHOAL_TEST_PUT_SILENT_MS"
#define S_PUT_CREDIT        8
/*  A same-host writer tells the worker it is alive this often (the lease is a minute). */
#define S_PUT_KEEPALIVE_MS   10000
#define S_PUT_PROGRESS_BYTES (64u << 10)
/*  How many times shoal_get asks the broker again after the holder failed it. */
#define S_GET_RELOCATES 3
#define S_STR_(x)       #x
#define S_STR(x)        S_STR_(x)
#define S_AGENT                                                                                    \
    "libshoal/" S_STR(SHOAL_VERSION_MAJOR) "." S_STR(SHOAL_VERSION_MINOR) "." S_STR(               \
        SHOAL_VERSION_PATCH)
/*  Room for the message frame around the largest single task. */
#define S_MSG_SLACK 4096

typedef struct s_batch {
    struct s_batch *next;
    uint64_t seq;
    void **tasks; //  each one shoal_wire_task_t block from shoal_wire_dup
    size_t count;
    int64_t sent_ms; //  0: not handed to libzmq yet
} s_batch_t;

//  What we know of one ref. status is one shoal_wire_dup block; once final it is never
//  replaced, so the error string shoal_status lends stays put.
typedef struct {
    shoal_wire_status_t *status;
    bool watched; //  a watch was sent (or is queued in to_watch)
    bool final;
} s_entry_t;

typedef struct {
    char *endpoint;
    void *sock;
} s_data_t;

//  A worker as the last workers reply described it (for puts and same-host reads).
typedef struct {
    char *name, *host, *endpoint, *store_dir, *arena;
    uint64_t store_bytes, store_capacity;
} s_wk_t;

typedef struct s_shared s_shared_t;

//  The store of a worker on this host, as this connection uses it; shared NULL: it could
//  not be opened at tried_ms (tried again after S_LOCAL_RETRY_MS).
typedef struct {
    char *worker;
    s_shared_t *shared;
    int64_t tried_ms;
} s_local_t;

//  An arena of a worker on this host, mapped writable for puts (s_warena).
typedef struct {
    char *path;
    uint64_t dev, ino, size;
    uint8_t *base;
} s_warena_t;

//  What a view owns: a buffer, or a pin in a same-host store.
typedef struct {
    void *buf;
    size_t cap; //  buf came from s_buffer with this many bytes (0: a plain malloc)
    shoal_store_view_t pin;
} s_view_priv_t;

struct shoal {
    void *ctx;
    void *sock;    //  DEALER to the broker
    void *monitor; //  PAIR receiving the DEALER's connect/disconnect events
    char *url;
    char *events;
    uint64_t max_msg;
    uint64_t client_id;
    uint64_t counter; //  last task counter used
    uint64_t seq;     //  last message sequence number used
    bool connected, was_disconnected, reconnected;
    bool keep;          //  leave what we own on the cluster at disconnect (shoal_keep)
    int64_t last_rx_ms; //  when the broker last said anything

    //  Submissions: buffered here until a batch fills, then unacknowledged batches.
    void **pending;
    size_t n_pending, cap_pending, pending_bytes;
    s_batch_t *unacked, *unacked_tail;
    int refused_code; //  first batch the broker refused, until shoal_flush reports it
    char *refused_error;

    //  An error message from the broker, for the call that is waiting.
    int async_code;
    char async_error[512];

    //  Statuses, and refs whose watch is still to be sent.
    shoal__refmap_t *refs;
    shoal_ref_t *to_watch;
    size_t n_to_watch, cap_to_watch;
    size_t n_open;         //  entries watched and not final
    int64_t last_watch_ms; //  when watches last went out

    //  The one request (cancel, remove, workers) waiting for its reply.
    int req_type;
    uint64_t req_seq;
    const shoal_wire_refs_t *req_refs;
    int64_t req_sent_ms; //  0: to send
    bool req_done;
    int64_t req_code;
    uint64_t req_count;
    char *req_error;
    shoal_wire_worker_list_t *req_workers;
    const char *req_job; //  job_tasks, cancel: the job named (borrowed from the caller)
    uint64_t req_offset; //  job_tasks: the first task wanted
    void *req_job_reply; //  job_list, job_tasks_reply or query_reply: one shoal_wire_dup block
    const shoal_wire_query_t *req_query; //  query: the request (borrowed from the caller)

    s_data_t *data;
    size_t n_data;

    s_wk_t *wks; //  the workers, as of wks_ms
    size_t n_wks;
    int64_t wks_ms;
    s_local_t *locals; //  stores of workers on this host
    size_t n_locals;
    s_warena_t *warenas; //  their arenas, mapped writable for puts
    size_t n_warenas;
    //  Refs this client removed while it reads stores on this host, ref -> until when (ms):
    //  their bytes may stay in a store a moment longer (the worker deletes them when the
    //  broker's drop arrives), and a get must not find them there.
    shoal__refmap_t *removed;

    char error[1024];
    shoal__local_t *local; //  local://: the cluster we started, stopped on disconnect
};

//  Room for a local cluster's failure: where it looked for the binary, its stderr's tail.
static _Thread_local char s_connect_error[1024];

/*  ------------------------------------------------------------------------- helpers */

static int s_fail(shoal_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fail(shoal_t *self, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    return code;
}

static int64_t s_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : shoal__now_ms() + timeout_ms;
}

static bool s_expired(int64_t deadline)
{
    return deadline >= 0 && shoal__now_ms() >= deadline;
}

//  Milliseconds to poll: until the deadline, at most cap.
static long s_poll_ms(int64_t deadline, long cap)
{
    if (deadline < 0)
        return cap;
    int64_t left = deadline - shoal__now_ms();
    return left <= 0 ? 0 : (long)SHOAL__MIN(left, (int64_t)cap);
}

static char *s_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void *s_socket(void *ctx, int type, int linger)
{
    void *sock = zmq_socket(ctx, type);
    if (!sock)
        return NULL;
    int64_t maxmsg = SHOAL_MAX_MSG_SIZE;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

static bool s_state_final(uint64_t state)
{
    return state == SHOAL_STATE_DONE || state == SHOAL_STATE_FAILED ||
           state == SHOAL_STATE_CANCELED || state == SHOAL_STATE_UNKNOWN;
}

/*  The failure code of a final status: 0 when done. */
static int s_status_code(const shoal_wire_status_t *st)
{
    switch (st->state) {
    case SHOAL_STATE_DONE:
        return 0;
    case SHOAL_STATE_UNKNOWN:
        return st->code < 0 ? (int)st->code : SHOAL_ENOTFOUND;
    case SHOAL_STATE_CANCELED:
        return st->code < 0 ? (int)st->code : SHOAL_ECANCELED;
    default:
        return st->code < 0 && st->code >= INT_MIN ? (int)st->code : SHOAL_ETASK;
    }
}

const char *shoal_state_name(int state)
{
    return state < 0 ? "invalid" : shoal_wire_state_name((uint64_t)state);
}

/*  ------------------------------------------------------------------ status cache */

static s_entry_t *s_entry(shoal_t *self, shoal_ref_t ref, bool create)
{
    s_entry_t *e = shoal__refmap_get(self->refs, ref);
    if (e || !create)
        return e;
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    if (shoal__refmap_put(self->refs, ref, e) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

static void s_entry_drop(shoal_t *self, shoal_ref_t ref)
{
    s_entry_t *e = shoal__refmap_remove(self->refs, ref);
    if (e) {
        if (e->watched && !e->final)
            self->n_open--;
        free(e->status);
        free(e);
    }
}

//  Keeps a status. The first final one for a ref stays; later ones are dropped, so
//  borrowed pointers into it stay valid. Returns 0 or SHOAL_ENOMEM.
static int s_keep_status(shoal_t *self, const shoal_wire_status_t *st)
{
    s_entry_t *e = s_entry(self, st->ref, true);
    if (!e)
        return SHOAL_ENOMEM;
    if (e->final)
        return 0;
    shoal_wire_status_t *copy = shoal_wire_dup(&shoal_wire_status_desc, st);
    if (!copy)
        return SHOAL_ENOMEM;
    free(e->status);
    e->status = copy;
    e->final = s_state_final(st->state);
    if (e->final && e->watched)
        self->n_open--;
    return 0;
}

//  A status made here, for the refs of a task the broker refused.
static int s_keep_failure(shoal_t *self, shoal_ref_t ref, int code, const char *error)
{
    shoal_wire_status_t st = {.ref = ref, .state = SHOAL_STATE_FAILED, .code = code};
    st.error = (char *)error;
    return s_keep_status(self, &st);
}

/*  --------------------------------------------------------------------------- sends */

static void s_batch_free(s_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->tasks[i]);
    free(b->tasks);
    free(b);
}

static int s_batch_send(shoal_t *self, s_batch_t *b)
{
    shoal_wire_task_t *items = malloc(b->count * sizeof *items);
    if (!items)
        return SHOAL_ENOMEM;
    for (size_t i = 0; i < b->count; i++)
        items[i] = *(shoal_wire_task_t *)b->tasks[i];
    shoal_wire_submit_t msg = {.seq = b->seq};
    msg.tasks.items = items;
    msg.tasks.count = b->count;
    int rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_submit, &msg, NULL, 0);
    free(items);
    if (rc == 0)
        b->sent_ms = shoal__now_ms();
    else
        shoal__debug("submit seq %llu: %s", (unsigned long long)b->seq, shoal_strerror(rc));
    return rc;
}

//  Moves the buffered tasks into a batch and tries to send it; a batch that cannot be
//  sent now (full pipe) stays queued with sent_ms 0 and goes out from the loop.
static int s_seal_pending(shoal_t *self)
{
    if (self->n_pending == 0)
        return 0;
    s_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return SHOAL_ENOMEM;
    b->seq = ++self->seq;
    b->tasks = self->pending;
    b->count = self->n_pending;
    self->pending = NULL;
    self->n_pending = self->cap_pending = self->pending_bytes = 0;
    if (self->unacked_tail)
        self->unacked_tail->next = b;
    else
        self->unacked = b;
    self->unacked_tail = b;
    int rc = s_batch_send(self, b);
    return rc == SHOAL_EAGAIN ? 0 : rc;
}

static bool s_unsent_batches(const shoal_t *self)
{
    for (s_batch_t *b = self->unacked; b; b = b->next)
        if (b->sent_ms == 0)
            return true;
    return false;
}

static int s_send_hello(shoal_t *self)
{
    shoal_wire_hello_t hello = {.version = SHOAL_PROTO_VERSION, .client_id = self->client_id};
    hello.agent = S_AGENT;
    return shoal_wire_send(self->sock, NULL, SHOAL_MSG_hello, &hello, NULL, 0);
}

//  Sends queued watches, in messages of at most S_REFS_PER_MSG refs. Watches wait while
//  a submission batch is unsent: the broker must see a task before a watch on it.
static int s_send_watches(shoal_t *self)
{
    if (self->n_to_watch == 0 || s_unsent_batches(self))
        return 0;
    size_t done = 0;
    int rc = 0;
    while (done < self->n_to_watch) {
        size_t n = SHOAL__MIN(self->n_to_watch - done, (size_t)S_REFS_PER_MSG);
        shoal_wire_watch_t w = {.seq = ++self->seq, .flags = 0};
        w.refs.items = self->to_watch + done;
        w.refs.count = n;
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_watch, &w, NULL, 0);
        if (rc)
            break;
        done += n;
    }
    memmove(self->to_watch, self->to_watch + done,
            (self->n_to_watch - done) * sizeof *self->to_watch);
    self->n_to_watch -= done;
    if (done)
        self->last_watch_ms = shoal__now_ms();
    return rc == SHOAL_EAGAIN ? 0 : rc;
}

static int s_queue_watch(shoal_t *self, shoal_ref_t ref)
{
    if (self->n_to_watch == self->cap_to_watch) {
        size_t cap = self->cap_to_watch ? self->cap_to_watch * 2 : 64;
        shoal_ref_t *grown = realloc(self->to_watch, cap * sizeof *grown);
        if (!grown)
            return SHOAL_ENOMEM;
        self->to_watch = grown;
        self->cap_to_watch = cap;
    }
    self->to_watch[self->n_to_watch++] = ref;
    return 0;
}

static int s_send_request(shoal_t *self)
{
    int rc;
    if (self->req_type == SHOAL_MSG_workers) {
        shoal_wire_workers_t w = {.seq = self->req_seq};
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_workers, &w, NULL, 0);
    } else if (self->req_type == SHOAL_MSG_jobs) {
        shoal_wire_jobs_t j = {.seq = self->req_seq};
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_jobs, &j, NULL, 0);
    } else if (self->req_type == SHOAL_MSG_release) {
        shoal_wire_release_t r = {.seq = self->req_seq, .client_id = self->client_id};
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_release, &r, NULL, 0);
    } else if (self->req_type == SHOAL_MSG_job_tasks) {
        shoal_wire_job_tasks_t j = {
            .seq = self->req_seq, .name = (char *)self->req_job, .offset = self->req_offset};
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_job_tasks, &j, NULL, 0);
    } else if (self->req_type == SHOAL_MSG_query) {
        shoal_wire_query_t q = *self->req_query;
        q.seq = self->req_seq;
        rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_query, &q, NULL, 0);
    } else {
        //  cancel and remove share their layout: seq, refs (cancel adds a job)
        shoal_wire_cancel_t c = {.seq = self->req_seq};
        if (self->req_refs)
            c.refs = *self->req_refs;
        c.job = self->req_type == SHOAL_MSG_cancel ? (char *)self->req_job : NULL;
        rc = shoal_wire_send(self->sock, NULL, self->req_type, &c, NULL, 0);
    }
    if (rc == 0)
        self->req_sent_ms = shoal__now_ms();
    return rc == SHOAL_EAGAIN ? 0 : rc;
}

//  Queues a watch for every open ref again (the queue restarts from scratch, so nothing
//  goes twice).
static int s_rewatch(shoal_t *self)
{
    self->n_to_watch = 0;
    size_t cursor = 0;
    shoal_ref_t ref;
    void *value;
    while (self->n_open && shoal__refmap_next(self->refs, &cursor, &ref, &value)) {
        s_entry_t *e = value;
        int rc;
        if (e->watched && !e->final && (rc = s_queue_watch(self, ref)) != 0)
            return rc;
    }
    return 0;
}

//  The connection came back: greet the broker again, then resend in order everything
//  that may have been lost with the old connection.
static int s_resend_all(shoal_t *self)
{
    shoal__info("connection to %s is back: resending", self->url);
    int rc = s_send_hello(self);
    if (rc && rc != SHOAL_EAGAIN)
        return rc;
    for (s_batch_t *b = self->unacked; b; b = b->next)
        b->sent_ms = 0;
    if (self->req_type && !self->req_done)
        self->req_sent_ms = 0;
    return s_rewatch(self);
}

//  Timers: what is unsent goes out; what is unanswered for a second while the broker is
//  silent goes out again.
static int s_timers(shoal_t *self)
{
    int rc;
    if (self->reconnected) {
        self->reconnected = false;
        if ((rc = s_resend_all(self)) != 0)
            return rc;
    }
    int64_t now = shoal__now_ms();
    bool silent = self->connected && now - self->last_rx_ms >= S_RESEND_MS;
    int resent = 0;
    for (s_batch_t *b = self->unacked; b; b = b->next) {
        bool due = b->sent_ms == 0 ||
                   (silent && now - b->sent_ms >= S_RESEND_MS && resent < S_RESEND_BATCHES);
        if (!due)
            continue;
        if (b->sent_ms)
            resent++;
        rc = s_batch_send(self, b);
        if (rc == SHOAL_EAGAIN)
            break; //  keep the order: nothing after an unsent batch
        if (rc)
            return rc;
    }
    if (self->n_open && self->n_to_watch == 0 && self->connected &&
        now - self->last_watch_ms >= S_REWATCH_MS) {
        shoal__debug("watching %zu open refs again", self->n_open);
        if ((rc = s_rewatch(self)) != 0)
            return rc;
    }
    if ((rc = s_send_watches(self)) != 0)
        return rc;
    if (self->req_type && !self->req_done && !s_unsent_batches(self) &&
        (self->req_sent_ms == 0 || (silent && now - self->req_sent_ms >= S_RESEND_MS)))
        return s_send_request(self);
    return 0;
}

/*  ------------------------------------------------------------------------ receives */

static void s_on_ack(shoal_t *self, const shoal_wire_ack_t *ack)
{
    s_batch_t *prev = NULL;
    for (s_batch_t *b = self->unacked; b; prev = b, b = b->next) {
        if (b->seq != ack->seq)
            continue;
        if (ack->code < 0) {
            const char *why = ack->error ? ack->error : shoal_strerror((int)ack->code);
            shoal__debug("submit seq %llu refused: %s", (unsigned long long)b->seq, why);
            if (!self->refused_code) {
                self->refused_code = (int)ack->code;
                free(self->refused_error);
                self->refused_error = s_strdup(why);
            }
            //  Waiting on the refused tasks' refs fails with the broker's reason.
            for (size_t i = 0; i < b->count; i++) {
                const shoal_wire_task_t *t = b->tasks[i];
                char text[1024];
                snprintf(text, sizeof text, "submission refused: %s", why);
                for (uint64_t j = 0; j < t->n_outputs; j++)
                    s_keep_failure(self, shoal_ref_output(t->id, (uint16_t)j), (int)ack->code,
                                   text);
                s_keep_failure(self, shoal_ref_output(t->id, SHOAL_REF_LOG_INDEX), (int)ack->code,
                               text);
            }
        }
        if (prev)
            prev->next = b->next;
        else
            self->unacked = b->next;
        if (self->unacked_tail == b)
            self->unacked_tail = prev;
        s_batch_free(b);
        return;
    }
    //  Only cancel, remove and release are answered with an ack.
    if ((self->req_type == SHOAL_MSG_cancel || self->req_type == SHOAL_MSG_remove ||
         self->req_type == SHOAL_MSG_release) &&
        !self->req_done && ack->seq == self->req_seq) {
        self->req_done = true;
        self->req_code = ack->code;
        self->req_count = ack->count;
        free(self->req_error);
        self->req_error = s_strdup(ack->error);
    }
    //  else: a duplicate ack for a resend; nothing to do
}

//  The reply to the pending jobs or job_tasks request: kept whole for the call waiting.
static void s_on_job_reply(shoal_t *self, const shoal_msg_t *msg)
{
    bool list = msg->type == SHOAL_MSG_job_list;
    uint64_t seq = list ? msg->u.job_list.seq : msg->u.job_tasks_reply.seq;
    if (self->req_type != (list ? SHOAL_MSG_jobs : SHOAL_MSG_job_tasks) || self->req_done ||
        seq != self->req_seq)
        return; //  a late reply to a resend
    free(self->req_job_reply);
    self->req_job_reply =
        list ? shoal_wire_dup(&shoal_wire_job_list_desc, &msg->u.job_list)
             : shoal_wire_dup(&shoal_wire_job_tasks_reply_desc, &msg->u.job_tasks_reply);
    self->req_done = true;
    self->req_code = !self->req_job_reply ? SHOAL_ENOMEM : list ? 0 : msg->u.job_tasks_reply.code;
    if (!list && self->req_code < 0) {
        free(self->req_error);
        self->req_error = s_strdup(msg->u.job_tasks_reply.error);
    }
}

//  The reply to the pending query: kept whole (in req_job_reply) for the call waiting.
static void s_on_query_reply(shoal_t *self, const shoal_wire_query_reply_t *r)
{
    if (self->req_type != SHOAL_MSG_query || self->req_done || r->seq != self->req_seq)
        return; //  a late reply to a resend
    free(self->req_job_reply);
    self->req_job_reply = shoal_wire_dup(&shoal_wire_query_reply_desc, r);
    self->req_done = true;
    self->req_code = !self->req_job_reply ? SHOAL_ENOMEM : r->code;
    if (self->req_code < 0 && self->req_job_reply) {
        free(self->req_error);
        self->req_error = s_strdup(r->error);
    }
}

static void s_handle(shoal_t *self, shoal_wire_in_t *in)
{
    shoal_msg_t *msg = &in->msg;
    switch (msg->type) {
    case SHOAL_MSG_ack:
        s_on_ack(self, &msg->u.ack);
        break;
    case SHOAL_MSG_statuses:
        for (size_t i = 0; i < msg->u.statuses.items.count; i++)
            if (s_keep_status(self, &msg->u.statuses.items.items[i]) != 0 && !self->async_code) {
                self->async_code = SHOAL_ENOMEM;
                snprintf(self->async_error, sizeof self->async_error,
                         "out of memory keeping task statuses");
            }
        break;
    case SHOAL_MSG_job_list:
    case SHOAL_MSG_job_tasks_reply:
        s_on_job_reply(self, msg);
        break;
    case SHOAL_MSG_query_reply:
        s_on_query_reply(self, &msg->u.query_reply);
        break;
    case SHOAL_MSG_worker_list:
        if (self->req_type == SHOAL_MSG_workers && !self->req_done &&
            msg->u.worker_list.seq == self->req_seq) {
            self->req_workers = shoal_wire_dup(&shoal_wire_worker_list_desc, &msg->u.worker_list);
            self->req_done = true;
            self->req_code = self->req_workers ? 0 : SHOAL_ENOMEM;
        }
        break;
    case SHOAL_MSG_error:
        shoal__debug("broker error %lld: %s", (long long)msg->u.error.code,
                     msg->u.error.error ? msg->u.error.error : "");
        if (!self->async_code) {
            int64_t code = msg->u.error.code;
            self->async_code = code < 0 && code >= INT_MIN ? (int)code : SHOAL_EPROTO;
            snprintf(self->async_error, sizeof self->async_error, "broker %s: %s", self->url,
                     msg->u.error.error ? msg->u.error.error : shoal_strerror((int)code));
        }
        break;
    case SHOAL_MSG_hello_ok:
        //  A greeting again after a reconnect: the broker may have been replaced.
        if (msg->u.hello_ok.version != SHOAL_PROTO_VERSION && !self->async_code) {
            self->async_code = SHOAL_EVERSION;
            snprintf(self->async_error, sizeof self->async_error,
                     "broker %s speaks protocol %llu, we speak %d", self->url,
                     (unsigned long long)msg->u.hello_ok.version, SHOAL_PROTO_VERSION);
        }
        break;
    default:
        shoal__debug("ignoring %s from the broker", shoal_msg_name(msg->type));
        break;
    }
}

static void s_on_monitor(shoal_t *self)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&m) >= 6)
            memcpy(&event, zmq_msg_data(&m), sizeof event);
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (more) { //  the second frame names the endpoint
            zmq_msg_init(&m);
            zmq_msg_recv(&m, self->monitor, 0);
            zmq_msg_close(&m);
        }
        if (event == ZMQ_EVENT_CONNECTED) {
            if (self->was_disconnected)
                self->reconnected = true;
            self->connected = true;
            self->was_disconnected = false;
            self->last_rx_ms = shoal__now_ms();
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            shoal__info("lost the connection to %s", self->url);
            self->connected = false;
            self->was_disconnected = true;
        }
    }
}

//  Reads everything the broker has sent so far, without waiting. 0 or SHOAL_EIO.
static int s_drain(shoal_t *self)
{
    //  A bound so that a flood of statuses cannot starve the caller's own work.
    for (int i = 0; i < 10000; i++) {
        shoal_wire_in_t in;
        int rc = shoal_wire_recv(self->sock, false, &in, ZMQ_DONTWAIT);
        if (rc == SHOAL_EAGAIN)
            return 0;
        if (rc == SHOAL_EIO)
            return errno == EINTR ? 0 : SHOAL_EIO;
        self->last_rx_ms = shoal__now_ms();
        if (rc) {
            //  A broker must not send us garbage; count it by logging, carry on.
            shoal__warn("malformed message from the broker %s: %s", self->url, shoal_strerror(rc));
            continue;
        }
        s_handle(self, &in);
        shoal_wire_in_clear(&in);
    }
    return 0;
}

/*  One turn of the loop: timers, then poll the broker (and extra, when given) for up to
    ms, then take in what arrived. *extra_ready says whether extra is readable. */
static int s_turn(shoal_t *self, long ms, void *extra, bool *extra_ready)
{
    int rc = s_timers(self);
    if (rc)
        return rc;
    zmq_pollitem_t items[3] = {
        {self->sock, 0, ZMQ_POLLIN, 0},
        {self->monitor, 0, ZMQ_POLLIN, 0},
        {extra, 0, ZMQ_POLLIN, 0},
    };
    int n = zmq_poll(items, extra ? 3 : 2, ms);
    if (n < 0 && errno != EINTR)
        return s_fail(self, SHOAL_EIO, "poll: %s", zmq_strerror(errno));
    if (extra_ready)
        *extra_ready = n > 0 && extra && (items[2].revents & ZMQ_POLLIN);
    if (n > 0 && (items[1].revents & ZMQ_POLLIN))
        s_on_monitor(self);
    if (n > 0 && (items[0].revents & ZMQ_POLLIN) && (rc = s_drain(self)) != 0)
        return s_fail(self, rc, "receiving from the broker %s: %s", self->url, zmq_strerror(errno));
    return 0;
}

//  Returns (and clears) an error message the broker sent, into self->error.
static int s_take_async(shoal_t *self)
{
    if (!self->async_code)
        return 0;
    int code = self->async_code;
    self->async_code = 0;
    return s_fail(self, code, "%s", self->async_error);
}

/*  Runs the loop until done() says so, the deadline passes (SHOAL_ETIMEDOUT, with no
    message: the caller says what it waited for) or an error arrives. */
static int s_run(shoal_t *self, int64_t deadline, bool (*done)(shoal_t *, void *), void *arg)
{
    for (;;) {
        int rc = s_take_async(self);
        if (rc)
            return rc;
        if (done(self, arg))
            return 0;
        if (s_expired(deadline))
            return SHOAL_ETIMEDOUT;
        if ((rc = s_turn(self, s_poll_ms(deadline, S_TICK_MS), NULL, NULL)) != 0)
            return rc;
    }
}

/*  ----------------------------------------------------------------------- connect */

static void s_wks_clear(shoal_t *self);
static void s_locals_clear(shoal_t *self);
static void s_shared_release(s_shared_t *e);

static void s_destroy(shoal_t *self)
{
    s_wks_clear(self);
    s_locals_clear(self);
    shoal__refmap_destroy(&self->removed);
    for (size_t i = 0; i < self->n_data; i++) {
        zmq_close(self->data[i].sock);
        free(self->data[i].endpoint);
    }
    free(self->data);
    if (self->monitor) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
    }
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    for (size_t i = 0; i < self->n_pending; i++)
        free(self->pending[i]);
    free(self->pending);
    while (self->unacked) {
        s_batch_t *next = self->unacked->next;
        s_batch_free(self->unacked);
        self->unacked = next;
    }
    if (self->refs) {
        size_t cursor = 0;
        void *value;
        while (shoal__refmap_next(self->refs, &cursor, NULL, &value)) {
            free(((s_entry_t *)value)->status);
            free(value);
        }
        shoal__refmap_destroy(&self->refs);
    }
    free(self->to_watch);
    free(self->req_error);
    free(self->req_workers);
    free(self->req_job_reply);
    free(self->refused_error);
    free(self->events);
    free(self->url);
    free(self);
}

//  Accepts tcp://HOST:PORT with a non-empty host and a numeric port.
static bool s_tcp_url_ok(const char *url)
{
    const char *host = url + 6;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host || !colon[1])
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

//  local://N: start `shoal up` (client/local.c), then connect to its broker.
static int s_connect_local(const char *url, int timeout_ms, shoal_t **self_p)
{
    int64_t deadline = s_deadline(timeout_ms);
    shoal__local_t *local = NULL;
    char endpoint[256];
    int rc = shoal__local_start(url, deadline, &local, endpoint, sizeof endpoint, s_connect_error,
                                sizeof s_connect_error);
    if (rc)
        return rc;
    //  Its broker has just said it is ready: a greeting takes milliseconds, but give it a
    //  second even when the start used up the timeout.
    int left = timeout_ms < 0 ? -1 : (int)SHOAL__MAX(deadline - shoal__now_ms(), (int64_t)1000);
    shoal_t *self = NULL;
    if ((rc = shoal_connect(endpoint, left, &self)) != 0) {
        char why[sizeof s_connect_error];
        shoal__strlcpy(why, s_connect_error, sizeof why);
        snprintf(s_connect_error, sizeof s_connect_error, "%.200s: started, but %.700s", url, why);
        shoal__local_stop(&local);
        return rc;
    }
    self->local = local;
    *self_p = self;
    return 0;
}

int shoal_connect(const char *url, int timeout_ms, shoal_t **self_p)
{
    s_connect_error[0] = '\0';
    if (!url || !self_p) {
        snprintf(s_connect_error, sizeof s_connect_error, "shoal_connect: NULL argument");
        return SHOAL_EINVAL;
    }
    if (strncmp(url, "local://", 8) == 0)
        return s_connect_local(url, timeout_ms, self_p);
    if (strncmp(url, "tcp://", 6) != 0) {
        const char *sep = strstr(url, "://");
        if (sep)
            snprintf(s_connect_error, sizeof s_connect_error,
                     "%.*s:// URLs are not supported yet (use tcp://HOST:PORT or local://N)",
                     (int)SHOAL__MIN(sep - url, 32), url);
        else
            snprintf(s_connect_error, sizeof s_connect_error,
                     "not a broker URL: %s (expected tcp://HOST:PORT)", url);
        return SHOAL_EINVAL;
    }
    if (!s_tcp_url_ok(url)) {
        snprintf(s_connect_error, sizeof s_connect_error,
                 "not a broker URL: %s (expected tcp://HOST:PORT)", url);
        return SHOAL_EINVAL;
    }

    shoal_t *self = calloc(1, sizeof *self);
    if (!self || !(self->url = strdup(url)) || !(self->refs = shoal__refmap_new())) {
        if (self)
            s_destroy(self);
        snprintf(s_connect_error, sizeof s_connect_error, "out of memory");
        return SHOAL_ENOMEM;
    }
    self->client_id = shoal__random64();
    self->max_msg = SHOAL_MAX_MSG_SIZE;
    int rc = SHOAL_EIO;
    self->ctx = zmq_ctx_new();
    if (!self->ctx || !(self->sock = s_socket(self->ctx, ZMQ_DEALER, S_LINGER_MS)) ||
        !(self->monitor = zmq_socket(self->ctx, ZMQ_PAIR))) {
        snprintf(s_connect_error, sizeof s_connect_error, "cannot make a socket: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    //  ZMTP heartbeats: a broker whose host vanished without closing the connection is
    //  noticed within 5 s, the connection is dropped and remade, and we resend.
    int ivl = 1000, ttl = 5000, reconnect_max = 2000;
    zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_TIMEOUT, &ttl, sizeof ttl);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof reconnect_max);
    char monitor_ep[64];
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://shoal-monitor-%016llx",
             (unsigned long long)self->client_id);
    if (zmq_socket_monitor(self->sock, monitor_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) !=
            0 ||
        zmq_connect(self->monitor, monitor_ep) != 0) {
        snprintf(s_connect_error, sizeof s_connect_error, "cannot monitor a socket: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    if (zmq_connect(self->sock, url) != 0) {
        snprintf(s_connect_error, sizeof s_connect_error, "cannot connect to %s: %s", url,
                 zmq_strerror(errno));
        rc = errno == EINVAL || errno == EPROTONOSUPPORT ? SHOAL_EINVAL : SHOAL_EIO;
        goto fail;
    }
    if ((rc = s_send_hello(self)) != 0) {
        snprintf(s_connect_error, sizeof s_connect_error, "cannot greet %s: %s", url,
                 shoal_strerror(rc));
        goto fail;
    }

    //  Wait for hello_ok: read it here rather than in s_handle, which only sees it again
    //  after a reconnect.
    int64_t deadline = s_deadline(timeout_ms);
    bool greeted = false;
    while (!greeted) {
        if (s_expired(deadline)) {
            rc = SHOAL_EUNREACH;
            snprintf(s_connect_error, sizeof s_connect_error,
                     "no broker answered at %s within %d ms", url, timeout_ms);
            goto fail;
        }
        zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                   {self->monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, s_poll_ms(deadline, S_TICK_MS)) < 0 && errno != EINTR) {
            rc = SHOAL_EIO;
            snprintf(s_connect_error, sizeof s_connect_error, "poll: %s", zmq_strerror(errno));
            goto fail;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_on_monitor(self);
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        shoal_wire_in_t in;
        rc = shoal_wire_recv(self->sock, false, &in, ZMQ_DONTWAIT);
        if (rc == SHOAL_EAGAIN)
            continue;
        if (rc) {
            snprintf(s_connect_error, sizeof s_connect_error, "%s answered with a bad greeting: %s",
                     url, shoal_strerror(rc));
            goto fail;
        }
        self->last_rx_ms = shoal__now_ms();
        if (in.msg.type == SHOAL_MSG_hello_ok) {
            const shoal_wire_hello_ok_t *ok = &in.msg.u.hello_ok;
            if (ok->version != SHOAL_PROTO_VERSION) {
                rc = SHOAL_EVERSION;
                snprintf(s_connect_error, sizeof s_connect_error,
                         "the broker at %s speaks protocol %llu, this client %d", url,
                         (unsigned long long)ok->version, SHOAL_PROTO_VERSION);
                shoal_wire_in_clear(&in);
                goto fail;
            }
            self->events = s_strdup(ok->events ? ok->events : "");
            if (ok->max_msg)
                self->max_msg = SHOAL__MIN(ok->max_msg, (uint64_t)SHOAL_MAX_MSG_SIZE);
            greeted = true;
        } else if (in.msg.type == SHOAL_MSG_error) {
            int64_t code = in.msg.u.error.code;
            rc = code < 0 && code >= INT_MIN ? (int)code : SHOAL_EPROTO;
            snprintf(s_connect_error, sizeof s_connect_error, "the broker at %s refused: %s", url,
                     in.msg.u.error.error ? in.msg.u.error.error : shoal_strerror(rc));
            shoal_wire_in_clear(&in);
            goto fail;
        }
        shoal_wire_in_clear(&in);
    }
    if (!self->events) {
        rc = SHOAL_ENOMEM;
        snprintf(s_connect_error, sizeof s_connect_error, "out of memory");
        goto fail;
    }
    *self_p = self;
    return 0;

fail:
    s_destroy(self);
    return rc;
}

static int s_request(shoal_t *self, int64_t deadline);

void shoal_disconnect(shoal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_t *self = *self_p;
    //  Best effort, no waiting: whoever needs delivery calls shoal_flush first.
    if (s_seal_pending(self) == 0)
        for (s_batch_t *b = self->unacked; b; b = b->next)
            if (b->sent_ms == 0 && s_batch_send(self, b) != 0)
                break;
    //  Release what we own, unless asked to keep it (a local cluster goes away whole).
    if (!self->keep && !self->local && self->counter > 0 && self->connected) {
        self->req_type = SHOAL_MSG_release;
        if (s_request(self, s_deadline(S_RELEASE_TIMEOUT_MS)) != 0)
            shoal__warn("disconnect: could not release this client's tasks: %s", self->error);
    }
    shoal__local_t *local = self->local;
    s_destroy(self);
    *self_p = NULL;
    //  After our sockets are closed, so the broker does not wait for us.
    shoal__local_stop(&local);
}

void shoal_keep(shoal_t *self, bool keep)
{
    if (self)
        self->keep = keep;
}

const char *shoal_last_error(const shoal_t *self)
{
    return self ? self->error : s_connect_error;
}

const char *shoal_events_endpoint(const shoal_t *self)
{
    return self && self->events ? self->events : "";
}

const char *shoal_broker_endpoint(const shoal_t *self)
{
    return self && self->url ? self->url : "";
}

/*  ------------------------------------------------------------------------- submit */

//  An upper bound of a task's encoded size: msgpack spends at most 5 bytes of header on
//  each string or binary, 9 on each integer.
static size_t s_task_wire_size(const shoal_task_spec_t *spec, size_t argc)
{
    size_t size = 16 + 2 + 16 + 13 * 9;
    for (size_t i = 0; i < argc; i++)
        size += strlen(spec->argv[i]) + 5;
    size += (spec->fn ? strlen(spec->fn) : 0) + 5;
    size += spec->arg_size + 5;
    size += spec->n_inputs * 16 + 5;
    size += (spec->name ? strlen(spec->name) : 0) + 5;
    size += (spec->job ? strlen(spec->job) : 0) + 5;
    for (size_t i = 0; i < spec->n_tags; i++)
        size += (spec->tags && spec->tags[i] ? strlen(spec->tags[i]) : 0) + 5;
    return size + 2 * 9;
}

//  Tags: at most SHOAL_TAGS_MAX, each 1..SHOAL_TAG_MAX bytes. 0 or SHOAL_EINVAL.
static int s_check_tags(shoal_t *self, const char *const *tags, size_t n)
{
    if (n && !tags)
        return s_fail(self, SHOAL_EINVAL, "n_tags is %zu but tags is NULL", n);
    if (n > SHOAL_TAGS_MAX)
        return s_fail(self, SHOAL_EINVAL, "%zu tags: at most %d", n, SHOAL_TAGS_MAX);
    for (size_t i = 0; i < n; i++) {
        size_t len = tags[i] ? strlen(tags[i]) : 0;
        if (len == 0 || len > SHOAL_TAG_MAX)
            return s_fail(self, SHOAL_EINVAL, "tag %zu ('%s') must have 1 to %d bytes", i,
                          tags[i] ? tags[i] : "NULL", SHOAL_TAG_MAX);
    }
    return 0;
}

static int s_enqueue(shoal_t *self, const shoal_wire_task_t *t, size_t wire);

//  A name must not look like a ref (32 hex digits): `shoal get NAME` tells them apart by
//  that; and it has at most SHOAL_NAME_MAX bytes. The broker refuses a whole batch for one
//  bad name: catch it here. 0 or SHOAL_EINVAL.
static int s_check_name(shoal_t *self, const char *name)
{
    shoal_ref_t ref;
    if (name && strlen(name) > SHOAL_NAME_MAX)
        return s_fail(self, SHOAL_EINVAL, "a name has at most %d bytes, got %zu", SHOAL_NAME_MAX,
                      strlen(name));
    if (name && shoal_ref_parse(name, &ref) == 0)
        return s_fail(self, SHOAL_EINVAL,
                      "the name '%s' looks like a ref (32 hex digits); choose another name", name);
    return 0;
}

int shoal_submit(shoal_t *self, const shoal_task_spec_t *spec, shoal_ref_t *task_id)
{
    int rc;
    if (!self)
        return SHOAL_EINVAL;
    if (!spec || !task_id)
        return s_fail(self, SHOAL_EINVAL, "shoal_submit: NULL argument");
    size_t argc = 0;
    if (spec->kind == SHOAL_TASK_EXEC) {
        while (spec->argv && spec->argv[argc])
            argc++;
        //  The broker refuses a whole batch for one bad task: catch here all it would
        //  refuse, so one mistake cannot sink the tasks batched with it.
        if (argc == 0 || !spec->argv[0][0])
            return s_fail(self, SHOAL_EINVAL, "an exec task needs a command (argv is empty)");
    } else if (spec->kind == SHOAL_TASK_FN) {
        const char *colon = spec->fn ? strchr(spec->fn, ':') : NULL;
        if (!colon || colon == spec->fn || !colon[1])
            return s_fail(self, SHOAL_EINVAL, "a fn task needs fn as \"lib.so:symbol\", not %s",
                          spec->fn ? spec->fn : "NULL");
    } else
        return s_fail(self, SHOAL_EINVAL, "unknown task kind %d", spec->kind);
    if (spec->n_outputs > SHOAL_MAX_OUTPUTS)
        return s_fail(self, SHOAL_EINVAL, "%u outputs: at most %d", spec->n_outputs,
                      SHOAL_MAX_OUTPUTS);
    if (spec->job && strlen(spec->job) > SHOAL_JOB_NAME_MAX)
        return s_fail(self, SHOAL_EINVAL, "a job name has at most %d bytes, got %zu",
                      SHOAL_JOB_NAME_MAX, strlen(spec->job));
    if ((spec->n_inputs && !spec->inputs) || (spec->arg_size && !spec->arg))
        return s_fail(self, SHOAL_EINVAL, "shoal_submit: inputs or arg is NULL");
    if (spec->kind == SHOAL_TASK_EXEC && (spec->stream_inputs & (spec->stream_inputs - 1)))
        return s_fail(self, SHOAL_EINVAL,
                      "an exec task streams one input at most: its stdin (stream_inputs)");
    if (spec->n_inputs < SHOAL_STREAM_INPUTS_MAX && (spec->stream_inputs >> spec->n_inputs))
        return s_fail(self, SHOAL_EINVAL,
                      "stream_inputs names input %d, but the task has %zu inputs",
                      63 - __builtin_clzll(spec->stream_inputs), spec->n_inputs);
    size_t wire = s_task_wire_size(spec, argc);
    if (wire + S_MSG_SLACK > self->max_msg)
        return s_fail(self, SHOAL_ETOOBIG,
                      "a task of %zu bytes does not fit in one message (at most %llu)", wire,
                      (unsigned long long)(self->max_msg - S_MSG_SLACK));
    if (self->counter + 1 >= ((uint64_t)1 << 48))
        return s_fail(self, SHOAL_EINVAL, "this connection has used up its 2^48 task ids");
    if ((rc = s_check_tags(self, spec->tags, spec->n_tags)) != 0 ||
        (rc = s_check_name(self, spec->name)) != 0)
        return rc;

    shoal_ref_t id = shoal_ref_make(self->client_id, self->counter + 1, 0);
    shoal_wire_task_t t = {
        .id = id,
        .kind = (uint64_t)spec->kind,
        .fn = (char *)spec->fn,
        .n_outputs = spec->n_outputs ? spec->n_outputs : 1,
        .name = (char *)spec->name,
        .retries = spec->retries,
        .priority = spec->priority,
        .job = (char *)spec->job,
        .array_index = spec->array_index,
        .ttl_ms = spec->ttl_ms,
        .flags = spec->flags & SHOAL_TASK_PERSIST,
        .stream = spec->stream_inputs,
    };
    t.argv.items = (char **)spec->argv;
    t.argv.count = argc;
    t.arg.data = spec->arg;
    t.arg.size = spec->arg_size;
    t.inputs.items = (shoal_ref_t *)spec->inputs;
    t.inputs.count = spec->n_inputs;
    t.tags.items = (char **)spec->tags;
    t.tags.count = spec->n_tags;
    if ((rc = s_enqueue(self, &t, wire)) != 0)
        return rc;
    *task_id = id;
    return 0;
}

//  Adds one task (its id made from self->counter + 1) to the submission buffer, sending a
//  full batch first. wire: its encoded size, at most. Returns 0 or a code (self->error).
static int s_enqueue(shoal_t *self, const shoal_wire_task_t *t, size_t wire)
{
    int rc;
    //  A full batch leaves before this task joins it, so no batch exceeds the bounds.
    if (self->n_pending >= S_BATCH_TASKS ||
        (self->n_pending && self->pending_bytes + wire > S_BATCH_BYTES)) {
        rc = s_seal_pending(self);
        if (rc)
            return s_fail(self, rc, "sending a batch of tasks: %s", shoal_strerror(rc));
        //  Take in acks now and then, so a long stream of submissions without any wait
        //  does not keep every batch in memory.
        if ((rc = s_drain(self)) != 0)
            return s_fail(self, rc, "receiving from the broker %s", self->url);
        if (self->connected && (rc = s_timers(self)) != 0)
            return s_fail(self, rc, "sending to the broker %s: %s", self->url, shoal_strerror(rc));
    }
    if (self->n_pending == self->cap_pending) {
        size_t cap = self->cap_pending ? self->cap_pending * 2 : 64;
        void **grown = realloc(self->pending, cap * sizeof *grown);
        if (!grown)
            return s_fail(self, SHOAL_ENOMEM, "out of memory");
        self->pending = grown;
        self->cap_pending = cap;
    }

    void *copy = shoal_wire_dup(&shoal_wire_task_desc, t);
    if (!copy)
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    self->pending[self->n_pending++] = copy;
    self->pending_bytes += wire;
    self->counter++;
    return 0;
}

static bool s_all_acked(shoal_t *self, void *arg)
{
    return self->unacked == NULL;
}

//  Sends what is buffered; then, when wait_acks, waits for every ack.
static int s_flush(shoal_t *self, int64_t deadline, bool wait_acks)
{
    int rc = s_seal_pending(self);
    if (rc)
        return s_fail(self, rc, "sending a batch of tasks: %s", shoal_strerror(rc));
    if (!wait_acks)
        return 0;
    rc = s_run(self, deadline, s_all_acked, NULL);
    if (rc == SHOAL_ETIMEDOUT) {
        size_t n = 0;
        for (s_batch_t *b = self->unacked; b; b = b->next)
            n += b->count;
        return s_fail(self, rc, "the broker at %s has not acknowledged %zu submitted tasks",
                      self->url, n);
    }
    return rc;
}

int shoal_flush(shoal_t *self, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    int rc = s_flush(self, s_deadline(timeout_ms), true);
    if (rc == 0 && self->refused_code) {
        rc = s_fail(self, self->refused_code, "%s",
                    self->refused_error ? self->refused_error : "submission refused");
        self->refused_code = 0;
    }
    return rc;
}

/*  --------------------------------------------------------------------------- wait */

typedef struct {
    const shoal_ref_t *refs;
    size_t n;
    bool any;
    size_t first_open; //  all-mode: refs before it are final
} s_wait_t;

static bool s_is_final(shoal_t *self, shoal_ref_t ref)
{
    s_entry_t *e = shoal__refmap_get(self->refs, ref);
    return e && e->final;
}

static bool s_wait_done(shoal_t *self, void *arg)
{
    s_wait_t *w = arg;
    if (w->any) {
        for (size_t i = 0; i < w->n; i++)
            if (s_is_final(self, w->refs[i]))
                return true;
        return false;
    }
    while (w->first_open < w->n && s_is_final(self, w->refs[w->first_open]))
        w->first_open++;
    return w->first_open == w->n;
}

//  "ref 0123...: reason" into self->error; returns code.
static int s_fail_status(shoal_t *self, const shoal_wire_status_t *st, int code)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(st->ref, text);
    if (st->error && *st->error)
        return s_fail(self, code, "%s: %s", text, st->error);
    if (st->state == SHOAL_STATE_UNKNOWN)
        return s_fail(self, code, "%s: not found (never submitted, or removed)", text);
    if (st->exit_code > 0)
        return s_fail(self, code, "%s: exit status %lld", text, (long long)st->exit_code);
    if (st->exit_code < 0)
        return s_fail(self, code, "%s: killed by signal %lld", text, -(long long)st->exit_code);
    return s_fail(self, code, "%s: %s", text, shoal_strerror(code));
}

static int s_wait(shoal_t *self, const shoal_ref_t *refs, size_t n, bool any, int64_t deadline)
{
    int rc = s_flush(self, deadline, false);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        s_entry_t *e = s_entry(self, refs[i], true);
        if (!e)
            return s_fail(self, SHOAL_ENOMEM, "out of memory");
        if (e->final || e->watched)
            continue;
        if ((rc = s_queue_watch(self, refs[i])) != 0)
            return s_fail(self, rc, "out of memory");
        e->watched = true;
        self->n_open++;
    }
    //  Right behind the submission s_flush just sent, so that libzmq's I/O thread takes
    //  both in one wake-up and the broker reads both in one turn (a task submitted then
    //  waited on costs one message exchange, not two).
    if ((rc = s_send_watches(self)) != 0)
        return s_fail(self, rc, "sending a watch: %s", shoal_strerror(rc));
    s_wait_t w = {refs, n, any, 0};
    rc = s_run(self, deadline, s_wait_done, &w);
    if (rc == SHOAL_ETIMEDOUT) {
        size_t open = 0;
        for (size_t i = 0; i < n; i++)
            open += !s_is_final(self, refs[i]);
        return s_fail(self, rc, "%zu of %zu refs unfinished", open, n);
    }
    if (rc)
        return rc;
    //  Final: succeed if all (any: one) did, else report the first failure.
    const shoal_wire_status_t *failed = NULL;
    for (size_t i = 0; i < n; i++) {
        s_entry_t *e = shoal__refmap_get(self->refs, refs[i]);
        if (!e || !e->final)
            continue;
        if (s_status_code(e->status) == 0) {
            if (any)
                return 0;
        } else if (!failed)
            failed = e->status;
    }
    return failed ? s_fail_status(self, failed, s_status_code(failed)) : 0;
}

int shoal_wait(shoal_t *self, const shoal_ref_t *refs, size_t n, bool any, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (n == 0)
        return 0;
    if (!refs)
        return s_fail(self, SHOAL_EINVAL, "shoal_wait: refs is NULL");
    return s_wait(self, refs, n, any, s_deadline(timeout_ms));
}

int shoal_status(shoal_t *self, shoal_ref_t ref, shoal_status_t *status)
{
    if (!self || !status)
        return SHOAL_EINVAL;
    s_entry_t *e = shoal__refmap_get(self->refs, ref);
    if (!e || !e->final) {
        char text[SHOAL_REF_TEXT_SIZE];
        return s_fail(self, SHOAL_EAGAIN, "%s: no final status yet", shoal_ref_format(ref, text));
    }
    const shoal_wire_status_t *st = e->status;
    status->ref = ref;
    status->state = (int)st->state;
    status->code = s_status_code(st);
    status->exit_code =
        (int)SHOAL__MAX(SHOAL__MIN(st->exit_code, (int64_t)INT_MAX), (int64_t)INT_MIN);
    status->error = st->error;
    status->size = st->size;
    return 0;
}

/*  --------------------------------------------------------------------------- fetch */

/*  One released fetch buffer kept for the next large get, process-wide: writing into
    fresh pages costs more than the copy (256 MiB: ~100 ms against ~40 ms into touched
    pages), so a program that gets large objects one after another reuses the same pages.
    At most one buffer of S_SPARE_MAX bytes is held; it is taken and given back with an
    atomic exchange, so views may be released from any thread. */
#define S_SPARE_MIN (4u << 20)
#define S_SPARE_MAX (1ull << 30)
typedef struct {
    void *buf;
    size_t cap;
} s_spare_t;
static _Atomic(s_spare_t *) s_spare;

static void s_spare_give(void *buf, size_t cap)
{
    s_spare_t *mine = NULL;
    if (cap >= S_SPARE_MIN && cap <= S_SPARE_MAX && (mine = malloc(sizeof *mine))) {
        *mine = (s_spare_t){buf, cap};
        mine = atomic_exchange(&s_spare, mine);
    } else if (!mine)
        free(buf);
    if (mine) {
        free(mine->buf);
        free(mine);
    }
}

//  The spare buffer when it holds size bytes without wasting more than half of it.
static void *s_spare_take(size_t size, size_t *cap)
{
    s_spare_t *spare = atomic_exchange(&s_spare, NULL);
    if (!spare)
        return NULL;
    if (spare->cap < size || spare->cap / 2 > size) {
        s_spare_give(spare->buf, spare->cap); //  back; another may fit it
        free(spare);
        return NULL;
    }
    void *buf = spare->buf;
    *cap = spare->cap;
    free(spare);
    return buf;
}

void shoal_view_release(shoal_view_t *view)
{
    if (!view)
        return;
    s_view_priv_t *priv = view->priv_;
    if (priv) {
        if (priv->cap)
            s_spare_give(priv->buf, priv->cap);
        else
            free(priv->buf);
        shoal_store_view_release(&priv->pin);
        free(priv);
    }
    memset(view, 0, sizeof *view);
}

//  Hands buf (size bytes, malloc'd, or from s_buffer when cap > 0; freed here on
//  failure) to view.
static int s_view_buffer(shoal_t *self, shoal_view_t *view, void *buf, size_t cap, size_t size)
{
    s_view_priv_t *priv = calloc(1, sizeof *priv);
    if (!priv) {
        free(buf);
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    priv->buf = buf;
    priv->cap = cap;
    view->data = buf;
    view->size = size;
    view->priv_ = priv;
    return 0;
}

//  A buffer for size bytes; *cap > 0 when it is a big one (give it back to the spare
//  slot, not free). Fresh pages cost more than the copy (256 MiB: 270 ms into fresh
//  pages, 130 ms with huge pages, on these machines), so big buffers come from the spare
//  slot when they can, else are aligned to 2 MiB and asked for huge pages.
static void *s_buffer(size_t size, size_t *cap)
{
    *cap = 0;
    if (size < S_SPARE_MIN)
        return malloc(size ? size : 1);
    void *p = s_spare_take(size, cap);
    if (p)
        return p;
    if (posix_memalign(&p, 2 * 1024 * 1024, size) != 0)
        return NULL;
    madvise(p, size, MADV_HUGEPAGE);
    *cap = size;
    return p;
}

static void *s_data_socket(shoal_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->n_data; i++)
        if (strcmp(self->data[i].endpoint, endpoint) == 0)
            return self->data[i].sock;
    s_data_t *grown = realloc(self->data, (self->n_data + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    self->data = grown;
    //  Fetches are idempotent and resent on a stall: nothing to linger for.
    void *sock = s_socket(self->ctx, ZMQ_DEALER, 0);
    if (!sock)
        return NULL;
    char *copy = strdup(endpoint);
    if (!copy || zmq_connect(sock, endpoint) != 0) {
        free(copy);
        zmq_close(sock);
        return NULL;
    }
    self->data[self->n_data].endpoint = copy;
    self->data[self->n_data].sock = sock;
    self->n_data++;
    return sock;
}

enum { S_CHUNK_TODO, S_CHUNK_SENT, S_CHUNK_DONE };

static int s_send_fetch(void *sock, uint64_t seq, shoal_ref_t ref, uint64_t offset)
{
    shoal_wire_fetch_t f = {.seq = seq, .ref = ref, .offset = offset, .length = SHOAL_CHUNK_SIZE};
    return shoal_wire_send(sock, NULL, SHOAL_MSG_fetch, &f, NULL, 0);
}

/*  Fetches size bytes of ref from endpoint into a new buffer, S_FETCH_CREDIT chunks in
    flight; chunk i is fetch seq base + i. Returns 0 with *buf_p, or SHOAL_ENOTFOUND /
    SHOAL_EUNREACH (the caller asks the broker again), SHOAL_ETIMEDOUT, another code. */
static int s_fetch(shoal_t *self, shoal_ref_t ref, const char *endpoint, uint64_t size,
                   int64_t deadline, void **buf_p, size_t *cap_p)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    if (size > SIZE_MAX / 2)
        return s_fail(self, SHOAL_ENOMEM, "%s: %llu bytes do not fit in memory", text,
                      (unsigned long long)size);
    void *sock = s_data_socket(self, endpoint);
    if (!sock)
        return s_fail(self, SHOAL_EIO, "cannot connect to the worker at %s: %s", endpoint,
                      zmq_strerror(errno));
    size_t n_chunks = (size_t)((size + SHOAL_CHUNK_SIZE - 1) / SHOAL_CHUNK_SIZE);
    size_t cap;
    uint8_t *buf = s_buffer((size_t)size, &cap);
    uint8_t *state = calloc(n_chunks, 1);
    if (!buf || !state) {
        free(buf);
        free(state);
        return s_fail(self, SHOAL_ENOMEM, "%s: no memory for %llu bytes", text,
                      (unsigned long long)size);
    }
    uint64_t base = self->seq + 1;
    self->seq += n_chunks;
    size_t next = 0, done = 0, in_flight = 0;
    int stalls = 0, rc = 0;
    int64_t last_progress = shoal__now_ms();
    while (done < n_chunks) {
        //  Keep the credit used: send the next chunks.
        while (in_flight < S_FETCH_CREDIT && next < n_chunks) {
            if (state[next] == S_CHUNK_TODO) {
                int src = s_send_fetch(sock, base + next, ref, (uint64_t)next * SHOAL_CHUNK_SIZE);
                if (src == SHOAL_EAGAIN)
                    break;
                if (src) {
                    rc = s_fail(self, src, "fetching %s from %s: %s", text, endpoint,
                                shoal_strerror(src));
                    goto out;
                }
                state[next] = S_CHUNK_SENT;
                in_flight++;
            }
            next++;
        }
        if (s_expired(deadline)) {
            rc = s_fail(self, SHOAL_ETIMEDOUT, "%s: %zu of %zu chunks fetched from %s", text, done,
                        n_chunks, endpoint);
            goto out;
        }
        if (shoal__now_ms() - last_progress >= S_FETCH_STALL_MS) {
            if (++stalls >= S_FETCH_STALLS) {
                rc = s_fail(self, SHOAL_EUNREACH, "the worker at %s does not answer for %s",
                            endpoint, text);
                goto out;
            }
            //  Ask again for what is outstanding; the worker's replies are idempotent.
            shoal__debug("fetch of %s from %s stalled: asking again", text, endpoint);
            for (size_t i = 0; i < next; i++)
                if (state[i] == S_CHUNK_SENT)
                    s_send_fetch(sock, base + i, ref, (uint64_t)i * SHOAL_CHUNK_SIZE);
            last_progress = shoal__now_ms();
        }
        bool ready = false;
        if ((rc = s_turn(self, s_poll_ms(deadline, S_TICK_MS), sock, &ready)) != 0)
            goto out;
        if ((rc = s_take_async(self)) != 0)
            goto out;
        while (ready) {
            shoal_wire_in_t in;
            int rrc = shoal_wire_recv(sock, false, &in, ZMQ_DONTWAIT);
            if (rrc == SHOAL_EAGAIN)
                break;
            if (rrc == SHOAL_EIO && errno == EINTR)
                break;
            if (rrc) {
                shoal__warn("malformed reply from the worker at %s: %s", endpoint,
                            shoal_strerror(rrc));
                if (rrc == SHOAL_EIO) {
                    rc = s_fail(self, rrc, "receiving from %s: %s", endpoint, zmq_strerror(errno));
                    goto out;
                }
                continue;
            }
            if (in.msg.type == SHOAL_MSG_error) {
                rc = s_fail(self, in.msg.u.error.code < 0 ? (int)in.msg.u.error.code : SHOAL_EPROTO,
                            "the worker at %s: %s", endpoint,
                            in.msg.u.error.error ? in.msg.u.error.error : "error");
                shoal_wire_in_clear(&in);
                goto out;
            }
            //  Replies to fetches of an earlier, abandoned get are ignored.
            const shoal_wire_data_t *d = &in.msg.u.data;
            uint64_t idx = d->seq - base;
            if (in.msg.type != SHOAL_MSG_data || d->seq < base || idx >= n_chunks ||
                !shoal_ref_equal(d->ref, ref) || state[idx] != S_CHUNK_SENT) {
                shoal_wire_in_clear(&in);
                continue;
            }
            if (d->code == SHOAL_EAGAIN) {
                //  Not sealed yet (v1 has no streaming reads): ask again on the next stall.
                shoal_wire_in_clear(&in);
                continue;
            }
            if (d->code < 0) {
                int code = d->code >= INT_MIN ? (int)d->code : SHOAL_EPROTO;
                rc = s_fail(self, code, "%s on the worker at %s: %s", text, endpoint,
                            d->error ? d->error : shoal_strerror(code));
                shoal_wire_in_clear(&in);
                goto out;
            }
            uint64_t offset = idx * SHOAL_CHUNK_SIZE;
            size_t want = (size_t)SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, size - offset);
            size_t got = in.has_raw ? zmq_msg_size(&in.raw) : 0;
            if (d->size != size || d->offset != offset || got != want) {
                rc = s_fail(self, SHOAL_EPROTO,
                            "%s from %s: chunk at %llu of %llu bytes (object %llu), expected "
                            "%zu bytes of %llu",
                            text, endpoint, (unsigned long long)d->offset, (unsigned long long)got,
                            (unsigned long long)d->size, want, (unsigned long long)size);
                shoal_wire_in_clear(&in);
                goto out;
            }
            memcpy(buf + offset, zmq_msg_data(&in.raw), got);
            shoal_wire_in_clear(&in);
            state[idx] = S_CHUNK_DONE;
            in_flight--;
            done++;
            stalls = 0;
            last_progress = shoal__now_ms();
        }
    }
out:
    free(state);
    if (rc) {
        if (cap)
            s_spare_give(buf, cap);
        else
            free(buf);
        return rc;
    }
    *buf_p = buf;
    *cap_p = cap;
    return 0;
}

/*  ------------------------------------------------------------- same-host stores */

static void s_wks_clear(shoal_t *self)
{
    for (size_t i = 0; i < self->n_wks; i++) {
        s_wk_t *w = &self->wks[i];
        free(w->name);
        free(w->host);
        free(w->endpoint);
        free(w->store_dir);
        free(w->arena);
    }
    free(self->wks);
    self->wks = NULL;
    self->n_wks = 0;
}

static void s_locals_clear(shoal_t *self)
{
    for (size_t i = 0; i < self->n_warenas; i++) {
        shoal_arena_unmap(self->warenas[i].base, self->warenas[i].size);
        free(self->warenas[i].path);
    }
    free(self->warenas);
    self->warenas = NULL;
    self->n_warenas = 0;
    for (size_t i = 0; i < self->n_locals; i++) {
        free(self->locals[i].worker);
        s_shared_release(self->locals[i].shared); //  views keep their readers alive
    }
    free(self->locals);
    self->locals = NULL;
    self->n_locals = 0;
}

static char *s_strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

//  Asks the broker for the workers (unless the list is fresher than S_WORKERS_TTL_MS).
static int s_wks_refresh(shoal_t *self, int64_t deadline, bool force)
{
    if (!force && self->wks && shoal__now_ms() - self->wks_ms < S_WORKERS_TTL_MS)
        return 0;
    self->req_type = SHOAL_MSG_workers;
    free(self->req_workers);
    self->req_workers = NULL;
    int rc = s_request(self, deadline);
    if (rc)
        return rc;
    const shoal_wire_worker_list_t *wl = self->req_workers;
    s_wks_clear(self);
    self->wks = calloc(wl->workers.count ? wl->workers.count : 1, sizeof *self->wks);
    if (!self->wks)
        rc = s_fail(self, SHOAL_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < wl->workers.count; i++) {
        const shoal_wire_worker_info_t *w = &wl->workers.items[i];
        s_wk_t *o = &self->wks[self->n_wks++];
        o->name = s_strdup_or_null(w->name ? w->name : "");
        o->host = s_strdup_or_null(w->host ? w->host : "");
        o->endpoint = s_strdup_or_null(w->endpoint ? w->endpoint : "");
        o->store_dir = s_strdup_or_null(w->store_dir);
        o->arena = s_strdup_or_null(w->arena);
        o->store_bytes = w->store_bytes;
        o->store_capacity = w->store_capacity;
        if (!o->name || !o->host || !o->endpoint || (w->store_dir && !o->store_dir) ||
            (w->arena && !o->arena))
            rc = s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    free(self->req_workers);
    self->req_workers = NULL;
    self->wks_ms = shoal__now_ms();
    return rc;
}

static s_wk_t *s_wk_find(shoal_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_wks; i++)
        if (strcmp(self->wks[i].name, name) == 0)
            return &self->wks[i];
    return NULL;
}

//  $SHOAL_NO_LOCAL_STORE (set, not "0"): treat every worker as remote -- no shared
//  memory, only sockets (to test or compare the remote paths on one machine).
static bool s_no_local(void)
{
    const char *v = getenv("SHOAL_NO_LOCAL_STORE");
    return v && *v && strcmp(v, "0") != 0;
}

//  Whether worker w runs on this host: same host name, and its arena file is here.
static bool s_wk_is_local(const s_wk_t *w)
{
    return !s_no_local() && w->arena && w->store_dir && strcmp(w->host, shoal__hostname()) == 0 &&
           access(w->arena, R_OK) == 0;
}

/*  -------------------------------------------------- readers shared by the process

    One reader per store for the whole process, whatever the number of connections: LMDB
    allows one environment of a file per process (closing a second one clears the reader
    slots of the first, and the owner's reader check then clears the rest). A reader whose
    store was reset (its gets say SHOAL_EIO) is replaced only once its last view is
    released; until then gets from that store go through its worker's data socket. The
    list is short (the workers on this host) and its lock is held through each get (about a
    microsecond), so a reader is never closed under a get in another thread. */
struct s_shared {
    s_shared_t *next;
    char *dir, *arena;
    shoal_store_reader_t *reader; //  NULL while a stale one still has views
    shoal_store_reader_t *stale;  //  its store was reset; closed once its views are gone
    size_t users;                 //  connections holding the entry
};
static pthread_mutex_t s_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static s_shared_t *s_shared_list;

//  Opens the entry's reader if it has none and it may. Lock held.
static void s_shared_open(s_shared_t *e)
{
    if (e->reader)
        return;
    if (e->stale) {
        if (shoal_store_reader_views(e->stale) > 0)
            return;
        shoal_store_reader_close(&e->stale);
    }
    if (shoal_store_reader_open(e->dir, e->arena, &e->reader) != 0)
        e->reader = NULL;
}

//  The entry of store (dir, arena), one more user; NULL when out of memory or the store
//  cannot be read here.
static s_shared_t *s_shared_acquire(const char *dir, const char *arena)
{
    pthread_mutex_lock(&s_shared_lock);
    s_shared_t *e = s_shared_list;
    while (e && (strcmp(e->dir, dir) != 0 || strcmp(e->arena, arena) != 0))
        e = e->next;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        e->dir = strdup(dir);
        e->arena = strdup(arena);
        if (!e->dir || !e->arena) {
            free(e->dir);
            free(e->arena);
            free(e);
            e = NULL;
        } else {
            e->next = s_shared_list;
            s_shared_list = e;
        }
    }
    if (e) {
        s_shared_open(e);
        if (e->reader || e->stale || e->users)
            e->users++;
        else { //  nothing to share: forget it
            s_shared_list = e->next;
            free(e->dir);
            free(e->arena);
            free(e);
            e = NULL;
        }
    }
    pthread_mutex_unlock(&s_shared_lock);
    return e;
}

static void s_shared_release(s_shared_t *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&s_shared_lock);
    if (--e->users == 0) {
        s_shared_t **p = &s_shared_list;
        while (*p != e)
            p = &(*p)->next;
        *p = e->next;
        shoal_store_reader_close(&e->reader);
        shoal_store_reader_close(&e->stale);
        free(e->dir);
        free(e->arena);
        free(e);
    }
    pthread_mutex_unlock(&s_shared_lock);
}

/*  Pins ref in the entry's store: sealed (writing false) into a view of it, or allocated
    (writing true, for a writer on this host) into *pin. 0, or the store's code. */
static int s_shared_pin(s_shared_t *e, shoal_ref_t ref, bool writing, shoal_store_view_t *pin)
{
    pthread_mutex_lock(&s_shared_lock);
    s_shared_open(e);
    int rc = SHOAL_ENOTFOUND;
    if (e->reader) {
        rc = writing ? shoal_store_reader_pin_writing(e->reader, ref, pin)
                     : shoal_store_reader_get(e->reader, ref, pin);
        if (rc == SHOAL_EIO) { //  reset under us: replaced once its views are gone
            e->stale = e->reader;
            e->reader = NULL;
        }
    }
    pthread_mutex_unlock(&s_shared_lock);
    return rc;
}

/*  The store of worker if that worker is on this host: opened on first use (the workers
    list is asked for when the worker is not in it). NULL: not on this host, or its store
    cannot be read here (tried again later). */
static s_shared_t *s_local_store(shoal_t *self, const char *worker, int64_t deadline)
{
    s_local_t *l = NULL;
    for (size_t i = 0; i < self->n_locals && !l; i++)
        if (strcmp(self->locals[i].worker, worker) == 0)
            l = &self->locals[i];
    if (l && (l->shared || shoal__now_ms() - l->tried_ms < S_LOCAL_RETRY_MS))
        return l->shared;
    s_wk_t *w = s_wk_find(self, worker);
    if (!w && s_wks_refresh(self, deadline, false) == 0)
        w = s_wk_find(self, worker);
    if (!l) {
        s_local_t *grown = realloc(self->locals, (self->n_locals + 1) * sizeof *grown);
        char *name = strdup(worker);
        if (!grown || !name) {
            free(name);
            if (grown)
                self->locals = grown;
            return NULL;
        }
        self->locals = grown;
        l = &self->locals[self->n_locals++];
        *l = (s_local_t){.worker = name};
    }
    l->tried_ms = shoal__now_ms();
    if (w && s_wk_is_local(w))
        l->shared = s_shared_acquire(w->store_dir, w->arena);
    return l->shared;
}

//  Pins ref in store e into view. 0, or the store's code (SHOAL_ENOTFOUND, ...).
static int s_local_get(s_shared_t *e, shoal_ref_t ref, shoal_view_t *view)
{
    s_view_priv_t *priv = calloc(1, sizeof *priv);
    if (!priv)
        return SHOAL_ENOMEM;
    int rc = s_shared_pin(e, ref, false, &priv->pin);
    if (rc) {
        free(priv);
        return rc;
    }
    view->data = priv->pin.data;
    view->size = (size_t)priv->pin.size;
    view->priv_ = priv;
    return 0;
}

/*  Zero-copy from a store on this host, without asking anyone: the stores opened so far
    find sealed objects through their index. 0, or SHOAL_ENOTFOUND. */
static int s_local_find(shoal_t *self, shoal_ref_t ref, shoal_view_t *view)
{
    for (size_t i = 0; i < self->n_locals; i++)
        if (self->locals[i].shared && s_local_get(self->locals[i].shared, ref, view) == 0)
            return 0;
    return SHOAL_ENOTFOUND;
}

static bool s_removed_lately(shoal_t *self, shoal_ref_t ref);

int shoal_get(shoal_t *self, shoal_ref_t ref, int timeout_ms, shoal_view_t *view)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!view)
        return s_fail(self, SHOAL_EINVAL, "shoal_get: view is NULL");
    int64_t deadline = s_deadline(timeout_ms);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    //  A sealed object in a store on this host is final: no need to ask the broker.
    s_entry_t *known = shoal__refmap_get(self->refs, ref);
    if ((!known || !known->final) && self->n_locals && !s_removed_lately(self, ref) &&
        s_local_find(self, ref, view) == 0)
        return 0;
    for (int attempt = 0;; attempt++) {
        int rc = s_wait(self, &ref, 1, false, deadline);
        if (rc)
            return rc;
        const shoal_wire_status_t *st = ((s_entry_t *)shoal__refmap_get(self->refs, ref))->status;
        void *buf = NULL;
        if ((st->flags & SHOAL_OUT_INLINE) || st->size == 0) {
            size_t size = (st->flags & SHOAL_OUT_INLINE) ? st->data.size : 0;
            if (!(buf = malloc(size ? size : 1)))
                return s_fail(self, SHOAL_ENOMEM, "out of memory");
            if (size)
                memcpy(buf, st->data.data, size);
            return s_view_buffer(self, view, buf, 0, size);
        }
        if ((!st->endpoint || !*st->endpoint) && st->error && *st->error) {
            //  A persisted object whose worker is away: not lost, not here either.
            return s_fail(self, SHOAL_EAGAIN, "%s: %s%s%s", text, st->error,
                          st->worker ? ": worker " : "", st->worker ? st->worker : "");
        } else if (!st->endpoint || !*st->endpoint) {
            rc = s_fail(self, SHOAL_ELOST, "%s: done, but the broker names no worker holding it",
                        text);
        } else {
            s_shared_t *store = st->worker ? s_local_store(self, st->worker, deadline) : NULL;
            if (store && s_local_get(store, ref, view) == 0)
                return 0;
            size_t cap = 0;
            rc = s_fetch(self, ref, st->endpoint, st->size, deadline, &buf, &cap);
            if (rc == 0)
                return s_view_buffer(self, view, buf, cap, (size_t)st->size);
        }
        bool relocate = rc == SHOAL_ENOTFOUND || rc == SHOAL_EUNREACH || rc == SHOAL_ELOST;
        if (!relocate || attempt >= S_GET_RELOCATES || s_expired(deadline))
            return rc;
        //  The holder lost it or is gone: forget what we knew and ask the broker again
        //  (it recomputes lost objects from their task).
        shoal__info("%s: %s; asking the broker again", text, self->error);
        s_entry_drop(self, ref);
    }
}

/*  ---------------------------------------------------------- cancel, remove, workers */

static bool s_req_done(shoal_t *self, void *arg)
{
    return self->req_done;
}

//  Runs one request to its reply. The caller has set req_type (and req_refs).
static int s_request(shoal_t *self, int64_t deadline)
{
    self->req_seq = ++self->seq;
    self->req_sent_ms = 0;
    self->req_done = false;
    self->req_code = 0;
    self->req_count = 0;
    free(self->req_error);
    self->req_error = NULL;
    int rc = s_run(self, deadline, s_req_done, NULL);
    if (rc == SHOAL_ETIMEDOUT)
        rc = s_fail(self, rc, "the broker at %s did not answer %s in time", self->url,
                    shoal_msg_name(self->req_type));
    else if (rc == 0 && self->req_code < 0) {
        int code = self->req_code >= INT_MIN ? (int)self->req_code : SHOAL_EPROTO;
        rc = s_fail(self, code, "%s", self->req_error ? self->req_error : shoal_strerror(code));
    }
    self->req_type = 0;
    self->req_refs = NULL;
    self->req_job = NULL;
    self->req_query = NULL;
    return rc;
}

#define S_REMOVED_MS    60000 //  far longer than a drop takes to reach a worker
#define S_REMOVED_SWEEP 65536 //  entries beyond which expired ones are swept

static void s_removed_add(shoal_t *self, shoal_ref_t ref)
{
    if (!self->removed && !(self->removed = shoal__refmap_new()))
        return; //  out of memory: the fast path may then serve a removed object
    int64_t now = shoal__now_ms();
    if (shoal__refmap_size(self->removed) >= S_REMOVED_SWEEP) {
        size_t cursor = 0, n = 0;
        shoal_ref_t key, *old = malloc(S_REMOVED_SWEEP * sizeof *old);
        void *value;
        while (old && n < S_REMOVED_SWEEP &&
               shoal__refmap_next(self->removed, &cursor, &key, &value))
            if ((int64_t)(uintptr_t)value <= now)
                old[n++] = key;
        for (size_t i = 0; i < n; i++)
            shoal__refmap_remove(self->removed, old[i]);
        free(old);
    }
    shoal__refmap_put(self->removed, ref, (void *)(uintptr_t)(now + S_REMOVED_MS));
}

static bool s_removed_lately(shoal_t *self, shoal_ref_t ref)
{
    void *until = self->removed ? shoal__refmap_get(self->removed, ref) : NULL;
    return until && (int64_t)(uintptr_t)until > shoal__now_ms();
}

static int s_refs_request(shoal_t *self, int type, const shoal_ref_t *refs, size_t n,
                          int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (n && !refs)
        return s_fail(self, SHOAL_EINVAL, "%s: refs is NULL", shoal_msg_name(type));
    int64_t deadline = s_deadline(timeout_ms);
    int rc = s_flush(self, deadline, false);
    if (rc)
        return rc;
    uint64_t count = 0;
    for (size_t done = 0; done < n;) {
        shoal_wire_refs_t chunk = {(shoal_ref_t *)refs + done,
                                   SHOAL__MIN(n - done, (size_t)S_REFS_PER_MSG)};
        self->req_type = type;
        self->req_refs = &chunk;
        if ((rc = s_request(self, deadline)) != 0)
            return rc;
        count += self->req_count;
        done += chunk.count;
    }
    if (type == SHOAL_MSG_remove)
        for (size_t i = 0; i < n; i++) {
            s_entry_drop(self, refs[i]);
            if (self->n_locals)
                s_removed_add(self, refs[i]);
        }
    return (int)SHOAL__MIN(count, (uint64_t)INT_MAX);
}

int shoal_cancel(shoal_t *self, const shoal_ref_t *refs, size_t n, int timeout_ms)
{
    return s_refs_request(self, SHOAL_MSG_cancel, refs, n, timeout_ms);
}

int shoal_remove(shoal_t *self, const shoal_ref_t *refs, size_t n, int timeout_ms)
{
    return s_refs_request(self, SHOAL_MSG_remove, refs, n, timeout_ms);
}

int shoal_workers(shoal_t *self, shoal_worker_info_t **list, size_t *n, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!list || !n)
        return s_fail(self, SHOAL_EINVAL, "shoal_workers: NULL argument");
    self->req_type = SHOAL_MSG_workers;
    free(self->req_workers);
    self->req_workers = NULL;
    int rc = s_request(self, s_deadline(timeout_ms));
    if (rc)
        return rc;
    const shoal_wire_worker_list_t *wl = self->req_workers;
    size_t count = wl->workers.count;
    //  One block: the array, then the strings.
    size_t bytes = (count ? count : 1) * sizeof(shoal_worker_info_t);
    for (size_t i = 0; i < count; i++) {
        const shoal_wire_worker_info_t *w = &wl->workers.items[i];
        bytes += (w->name ? strlen(w->name) : 0) + (w->host ? strlen(w->host) : 0) +
                 (w->endpoint ? strlen(w->endpoint) : 0) + 3;
    }
    shoal_worker_info_t *out = malloc(bytes);
    if (!out) {
        free(self->req_workers);
        self->req_workers = NULL;
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    char *strings = (char *)(out + (count ? count : 1));
    for (size_t i = 0; i < count; i++) {
        const shoal_wire_worker_info_t *w = &wl->workers.items[i];
        const char *src[3] = {w->name ? w->name : "", w->host ? w->host : "",
                              w->endpoint ? w->endpoint : ""};
        const char *dst[3];
        for (int k = 0; k < 3; k++) {
            size_t len = strlen(src[k]) + 1;
            memcpy(strings, src[k], len);
            dst[k] = strings;
            strings += len;
        }
        out[i] = (shoal_worker_info_t){
            .name = dst[0],
            .host = dst[1],
            .endpoint = dst[2],
            .slots = (unsigned)SHOAL__MIN(w->slots, (uint64_t)UINT_MAX),
            .running = w->running,
            .queued = w->queued,
            .done = w->done,
            .failed = w->failed,
            .store_bytes = w->store_bytes,
            .store_capacity = w->store_capacity,
        };
    }
    free(self->req_workers);
    self->req_workers = NULL;
    *list = out;
    *n = count;
    return 0;
}

void shoal_workers_free(shoal_worker_info_t **list, size_t n)
{
    (void)n;
    if (!list)
        return;
    free(*list);
    *list = NULL;
}

/*  ----------------------------------------------------------------- jobs and arrays */

int shoal_submit_array(shoal_t *self, const shoal_task_spec_t *spec, uint64_t first, uint64_t last,
                       shoal_ref_t *ids)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!spec || !ids)
        return s_fail(self, SHOAL_EINVAL, "shoal_submit_array: NULL argument");
    if (last < first || (first == 0 && last == UINT64_MAX))
        return s_fail(self, SHOAL_EINVAL, "shoal_submit_array: %llu..%llu is not a range",
                      (unsigned long long)first, (unsigned long long)last);
    //  The copies differ by their index only: what shoal_submit refuses, it refuses for
    //  the first one, before anything is submitted.
    shoal_task_spec_t one = *spec;
    char job[sizeof "array-" + SHOAL_REF_TEXT_SIZE], text[SHOAL_REF_TEXT_SIZE];
    if (!one.job || !*one.job) {
        //  shoal_submit gives the next task this id.
        shoal_ref_t first_id = shoal_ref_make(self->client_id, self->counter + 1, 0);
        snprintf(job, sizeof job, "array-%s", shoal_ref_format(first_id, text));
        one.job = job;
    }
    for (uint64_t i = 0;; i++) {
        one.array_index = first + i;
        int rc = shoal_submit(self, &one, &ids[i]);
        if (rc)
            return rc;
        if (one.array_index == last)
            return 0;
    }
}

static int s_check_job(shoal_t *self, const char *call, const char *name)
{
    if (!name || !*name)
        return s_fail(self, SHOAL_EINVAL, "%s: no job name", call);
    if (strlen(name) > SHOAL_JOB_NAME_MAX)
        return s_fail(self, SHOAL_EINVAL, "%s: a job name has at most %d bytes, got %zu", call,
                      SHOAL_JOB_NAME_MAX, strlen(name));
    return 0;
}

int shoal_jobs(shoal_t *self, shoal_job_info_t **list, size_t *n, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!list || !n)
        return s_fail(self, SHOAL_EINVAL, "shoal_jobs: NULL argument");
    int64_t deadline = s_deadline(timeout_ms);
    int rc = s_flush(self, deadline, false);
    if (rc)
        return rc;
    self->req_type = SHOAL_MSG_jobs;
    rc = s_request(self, deadline);
    shoal_wire_job_list_t *jl = self->req_job_reply;
    self->req_job_reply = NULL;
    if (rc) {
        free(jl);
        return rc;
    }
    //  One block: the array, then the names.
    size_t count = jl->jobs.count;
    size_t bytes = (count ? count : 1) * sizeof(shoal_job_info_t);
    for (size_t i = 0; i < count; i++)
        bytes += (jl->jobs.items[i].name ? strlen(jl->jobs.items[i].name) : 0) + 1;
    shoal_job_info_t *out = malloc(bytes);
    if (!out) {
        free(jl);
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    char *strings = (char *)(out + (count ? count : 1));
    for (size_t i = 0; i < count; i++) {
        const shoal_wire_job_info_t *j = &jl->jobs.items[i];
        size_t len = (j->name ? strlen(j->name) : 0) + 1;
        memcpy(strings, j->name ? j->name : "", len);
        out[i] = (shoal_job_info_t){
            .name = strings,
            .waiting = j->waiting,
            .ready = j->ready,
            .running = j->running,
            .done = j->done,
            .failed = j->failed,
            .canceled = j->canceled,
            .total = j->total,
        };
        strings += len;
    }
    free(jl);
    *list = out;
    *n = count;
    return 0;
}

void shoal_jobs_free(shoal_job_info_t **list, size_t n)
{
    (void)n;
    if (!list)
        return;
    free(*list);
    *list = NULL;
}

int shoal_job_tasks(shoal_t *self, const char *name, shoal_ref_t **refs, size_t *n, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!refs || !n)
        return s_fail(self, SHOAL_EINVAL, "shoal_job_tasks: NULL argument");
    int rc = s_check_job(self, "shoal_job_tasks", name);
    int64_t deadline = s_deadline(timeout_ms);
    if (rc || (rc = s_flush(self, deadline, false)) != 0)
        return rc;
    //  Pages of up to SHOAL_JOB_TASKS_MAX refs, until the job's total is reached (or a
    //  page comes back empty: tasks were forgotten meanwhile).
    shoal_ref_t *out = NULL;
    size_t got = 0, total = 0;
    do {
        self->req_type = SHOAL_MSG_job_tasks;
        self->req_job = name;
        self->req_offset = got;
        rc = s_request(self, deadline);
        shoal_wire_job_tasks_reply_t *r = self->req_job_reply;
        self->req_job_reply = NULL;
        shoal_ref_t *grown = NULL;
        if (rc == 0 && r->tasks.count &&
            !(grown = realloc(out, (got + r->tasks.count) * sizeof *grown)))
            rc = s_fail(self, SHOAL_ENOMEM, "out of memory");
        if (rc) {
            free(r);
            free(out);
            return rc;
        }
        if (grown) {
            memcpy(grown + got, r->tasks.items, r->tasks.count * sizeof *grown);
            out = grown;
            got += r->tasks.count;
        }
        total = r->tasks.count ? (size_t)r->total : got;
        free(r);
    } while (got < total);
    if (!got)
        return s_fail(self, SHOAL_ENOTFOUND, "job '%s' has no tasks any more", name);
    *refs = out;
    *n = got;
    return 0;
}

int shoal_cancel_job(shoal_t *self, const char *name, int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    int rc = s_check_job(self, "shoal_cancel_job", name);
    int64_t deadline = s_deadline(timeout_ms);
    if (rc || (rc = s_flush(self, deadline, false)) != 0)
        return rc;
    self->req_type = SHOAL_MSG_cancel;
    self->req_refs = NULL;
    self->req_job = name;
    if ((rc = s_request(self, deadline)) != 0)
        return rc;
    return (int)SHOAL__MIN(self->req_count, (uint64_t)INT_MAX);
}

/*  ------------------------------------------------------------------------------- put */

struct shoal_put {
    shoal_t *owner;
    shoal_ref_t ref;
    uint64_t size;
    uint64_t written; //  bytes handed over (copied into mem, or sent)
    uint64_t acked;   //  remote: WRITE answers received
    size_t in_flight; //  remote: WRITE messages not answered yet (flow control only:
                      //  the worker takes one pipe's messages in order)
    void *sock;       //  a DEALER of its own to the worker's data socket
    char *worker;     //  the worker's name
    char *endpoint;
    //  Same host: where the object is in the worker's arena, the arena mapped writable
    //  for libshoal's own copies (shoal_put_write), and, made on demand by
    //  shoal_put_memory, a mapping of just the object's pages for the caller to write.
    bool local;
    uint64_t offset;
    uint8_t *arena; //  borrowed from the owner's cache (s_warena_t)
    uint8_t *mem;
    char *arena_path;
    shoal_store_view_t pin; //  on the allocation while we write in place
    uint64_t arena_dev, arena_ino;
    int64_t last_msg_ms;
    uint64_t published; //  same host: the bytes the last WRITE without bytes said were written
    uint64_t flags;     //  the ALLOC's (SHOAL_TASK_PERSIST), sent again with the SEAL
};

//  Waits for the put_reply to seq on put's socket (WRITE answers met on the way are
//  counted). Sends msg (op, with raw bytes if any) again when the worker is silent for
//  S_PUT_RESEND_MS: every op is idempotent at the worker. Returns 0 with *reply (clear
//  it with shoal_wire_in_clear), or a code (self->error).
static int s_put_call(shoal_put_t *put, const shoal_wire_put_t *msg, const void *raw,
                      size_t raw_size, int timeout_ms, shoal_wire_in_t *reply)
{
    shoal_t *self = put->owner;
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(put->ref, text);
    //  A deadline per call, not per put: a writer may take its time between calls (the
    //  lease only asks for a word a minute).
    int64_t deadline = s_deadline(timeout_ms);
    int64_t sent = 0, asked = shoal__now_ms();
    const char *env = getenv(S_PUT_SILENT_MS_ENV);
    int64_t silent = env && atoll(env) > 0 ? atoll(env) : S_PUT_SILENT_MS;
    for (;;) {
        if (shoal__now_ms() - asked >= silent)
            return s_fail(self, SHOAL_EUNREACH, "put %s: worker %s at %s does not answer", text,
                          put->worker, put->endpoint);
        if (s_expired(deadline))
            return s_fail(self, SHOAL_ETIMEDOUT, "put %s: worker %s at %s did not answer in time",
                          text, put->worker, put->endpoint);
        if (!sent || shoal__now_ms() - sent >= S_PUT_RESEND_MS) {
            int rc = shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, msg, raw, raw_size);
            if (rc && rc != SHOAL_EAGAIN)
                return s_fail(self, rc, "put %s: sending to worker %s at %s: %s", text, put->worker,
                              put->endpoint, shoal_strerror(rc));
            sent = shoal__now_ms();
            put->last_msg_ms = sent;
        }
        bool ready = false;
        int rc = s_turn(self, s_poll_ms(deadline, S_PUT_RESEND_MS / 4), put->sock, &ready);
        if (rc)
            return rc;
        while (ready) {
            shoal_wire_in_t in;
            rc = shoal_wire_recv(put->sock, false, &in, ZMQ_DONTWAIT);
            if (rc == SHOAL_EAGAIN || (rc == SHOAL_EIO && errno == EINTR))
                break;
            if (rc == SHOAL_EIO)
                return s_fail(self, rc, "put %s: receiving from %s: %s", text, put->endpoint,
                              zmq_strerror(errno));
            if (rc)
                continue; //  malformed: ignored (the resend covers it)
            if (in.msg.type == SHOAL_MSG_error) {
                int code = in.msg.u.error.code < 0 && in.msg.u.error.code >= INT_MIN
                               ? (int)in.msg.u.error.code
                               : SHOAL_EPROTO;
                rc = s_fail(self, code, "put %s: worker %s: %s", text, put->worker,
                            in.msg.u.error.error ? in.msg.u.error.error : shoal_strerror(code));
                shoal_wire_in_clear(&in);
                return rc;
            }
            const shoal_wire_put_reply_t *r = &in.msg.u.put_reply;
            if (in.msg.type != SHOAL_MSG_put_reply || !shoal_ref_equal(r->ref, put->ref)) {
                shoal_wire_in_clear(&in);
                continue;
            }
            asked = shoal__now_ms(); //  the worker is alive
            if (r->seq == msg->seq && r->busy && r->code == 0) {
                //  Our SEAL's persist is being written: however long that takes (about
                //  1 s per GiB, more behind other persists), the answer comes.
                deadline = s_deadline(timeout_ms);
                shoal_wire_in_clear(&in);
                continue;
            }
            if (r->seq == msg->seq) {
                *reply = in;
                return 0;
            }
            {
                //  An earlier WRITE's answer (or a duplicate answer to a resent ask).
                if (r->code < 0) {
                    int code = r->code >= INT_MIN ? (int)r->code : SHOAL_EPROTO;
                    rc = s_fail(self, code, "put %s: worker %s: %s", text, put->worker,
                                r->error ? r->error : shoal_strerror(code));
                    shoal_wire_in_clear(&in);
                    return rc;
                }
                if (put->in_flight)
                    put->in_flight--;
                put->acked = SHOAL__MAX(put->acked, r->offset);
            }
            shoal_wire_in_clear(&in);
        }
    }
}

//  Checks a put_reply's code. 0 or the code (self->error names the ref and the worker).
static int s_put_check(shoal_put_t *put, const shoal_wire_in_t *in)
{
    const shoal_wire_put_reply_t *r = &in->msg.u.put_reply;
    if (r->code >= 0)
        return 0;
    char text[SHOAL_REF_TEXT_SIZE];
    int code = r->code >= INT_MIN ? (int)r->code : SHOAL_EPROTO;
    return s_fail(put->owner, code, "put %s on worker %s: %s", shoal_ref_format(put->ref, text),
                  put->worker, r->error ? r->error : shoal_strerror(code));
}

static void s_put_free(shoal_put_t *put)
{
    if (!put)
        return;
    if (put->mem)
        shoal_arena_unmap(put->mem, put->size);
    shoal_store_view_release(&put->pin);
    free(put->arena_path);
    if (put->sock)
        zmq_close(put->sock);
    free(put->worker);
    free(put->endpoint);
    free(put);
}

//  Maps the allocation writable when the reply's arena is the very file on this host.
/*  The arena at path (device dev, inode ino) mapped writable, whole, kept until
    disconnect: a put's copy then costs only the copy. Mapping (and populating) 256 MiB
    per put and unmapping it after cost 16-20 ms + 8-10 ms here, against ~40 ms for the
    copy itself (bench/README.md). Only libshoal writes through it, within the object's
    bounds; the caller's pointer (shoal_put_memory) is a mapping of the object's pages
    alone, guarded, so a stray write faults. NULL when it cannot be mapped. */
static uint8_t *s_warena(shoal_t *self, const char *path, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < self->n_warenas; i++) {
        s_warena_t *w = &self->warenas[i];
        if (w->dev == dev && w->ino == ino && strcmp(w->path, path) == 0)
            return w->base;
    }
    void *base = NULL;
    uint64_t size = 0;
    if (shoal_arena_map_checked(path, dev, ino, 0, UINT64_MAX, &base, &size) != 0)
        return NULL;
    s_warena_t *grown = realloc(self->warenas, (self->n_warenas + 1) * sizeof *grown);
    char *copy = strdup(path);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            self->warenas = grown;
        shoal_arena_unmap(base, size);
        return NULL;
    }
    self->warenas = grown;
    self->warenas[self->n_warenas++] =
        (s_warena_t){.path = copy, .dev = dev, .ino = ino, .base = base, .size = size};
    return base;
}

static void s_put_map(shoal_put_t *put, const shoal_wire_put_reply_t *r)
{
    struct stat st;
    if (s_no_local() || !r->arena || !*r->arena || stat(r->arena, &st) != 0 ||
        (uint64_t)st.st_dev != r->arena_dev || (uint64_t)st.st_ino != r->arena_ino)
        return; //  another host (or another arena of that name): bytes go by message
    //  A pin on the allocation keeps its space out of use should the worker abort the put
    //  under us (a remove, the lease): a late write then lands nowhere that matters.
    s_shared_t *store = s_local_store(put->owner, put->worker, s_deadline(S_PUT_TIMEOUT_MS));
    if (!store || s_shared_pin(store, put->ref, true, &put->pin) != 0)
        return;
    if (put->pin.size != put->size) { //  not the allocation we asked for
        shoal_store_view_release(&put->pin);
        return;
    }
    uint8_t *base = s_warena(put->owner, r->arena, r->arena_dev, r->arena_ino);
    if (!base || !(put->arena_path = strdup(r->arena))) {
        shoal_store_view_release(&put->pin);
        return;
    }
    put->arena = base;
    put->offset = r->offset;
    put->arena_dev = r->arena_dev;
    put->arena_ino = r->arena_ino;
    put->local = true;
}

//  The worker for a put: opts->worker, else one on this host, else the one with the most
//  free space (and room for size). NULL with self->error set.
static s_wk_t *s_put_place(shoal_t *self, const shoal_put_opts_t *opts, uint64_t size,
                           int64_t deadline)
{
    if (s_wks_refresh(self, deadline, false) != 0)
        return NULL;
    if (opts && opts->worker) {
        s_wk_t *w = s_wk_find(self, opts->worker);
        if (!w && s_wks_refresh(self, deadline, true) == 0)
            w = s_wk_find(self, opts->worker);
        if (!w)
            s_fail(self, SHOAL_EUNREACH, "no worker named '%s' is connected to the broker at %s",
                   opts->worker, self->url);
        return w;
    }
    s_wk_t *best = NULL, *best_local = NULL;
    for (size_t i = 0; i < self->n_wks; i++) {
        s_wk_t *w = &self->wks[i];
        uint64_t free_w =
            w->store_capacity > w->store_bytes ? w->store_capacity - w->store_bytes : 0;
        if (!best ||
            free_w > best->store_capacity - SHOAL__MIN(best->store_bytes, best->store_capacity))
            best = w;
        if (free_w >= size && s_wk_is_local(w) &&
            (!best_local ||
             free_w > best_local->store_capacity -
                          SHOAL__MIN(best_local->store_bytes, best_local->store_capacity)))
            best_local = w;
    }
    if (!best)
        s_fail(self, SHOAL_EUNREACH,
               "no worker is connected to the broker at %s to hold the "
               "object",
               self->url);
    return best_local ? best_local : best;
}

static size_t s_put_wire_size(const shoal_put_opts_t *opts, size_t data)
{
    size_t size = 128 + data;
    if (opts) {
        size += (opts->name ? strlen(opts->name) : 0) + (opts->worker ? strlen(opts->worker) : 0);
        for (size_t i = 0; i < opts->n_tags; i++)
            size += strlen(opts->tags[i]) + 5;
    }
    return size;
}

//  Checks opts; 0 or SHOAL_EINVAL.
static int s_put_opts_check(shoal_t *self, const shoal_put_opts_t *opts)
{
    if (self->counter + 1 >= ((uint64_t)1 << 48))
        return s_fail(self, SHOAL_EINVAL, "this connection has used up its 2^48 ids");
    int rc = opts ? s_check_tags(self, opts->tags, opts->n_tags) : 0;
    return rc ? rc : opts ? s_check_name(self, opts->name) : 0;
}

//  The PUT task that tells the broker about the put (see SHOAL_KIND_PUT in proto.h).
static shoal_wire_task_t s_put_task(shoal_ref_t ref, const shoal_put_opts_t *opts)
{
    shoal_wire_task_t t = {.id = ref, .kind = SHOAL_KIND_PUT, .n_outputs = 1};
    if (opts) {
        t.name = (char *)opts->name;
        t.tags.items = (char **)opts->tags;
        t.tags.count = opts->n_tags;
        t.ttl_ms = opts->ttl_ms;
        if (opts->flags & SHOAL_PUT_PERSIST)
            t.flags = SHOAL_TASK_PERSIST;
    }
    return t;
}

int shoal_put_begin(shoal_t *self, uint64_t size, const shoal_put_opts_t *opts, shoal_ref_t *ref,
                    shoal_put_t **put_p)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!ref || !put_p)
        return s_fail(self, SHOAL_EINVAL, "shoal_put_begin: NULL argument");
    int rc = s_put_opts_check(self, opts);
    if (rc)
        return rc;
    int64_t deadline = s_deadline(S_PUT_TIMEOUT_MS);
    s_wk_t *w = s_put_place(self, opts, size, deadline);
    if (!w)
        return SHOAL_EUNREACH; //  s_put_place said why
    shoal_put_t *put = calloc(1, sizeof *put);
    if (!put || !(put->worker = strdup(w->name)) || !(put->endpoint = strdup(w->endpoint))) {
        s_put_free(put);
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    put->owner = self;
    put->size = size;
    put->ref = shoal_ref_make(self->client_id, self->counter + 1, 0);
    put->sock = s_socket(self->ctx, ZMQ_DEALER, 0);
    if (!put->sock || zmq_connect(put->sock, put->endpoint) != 0) {
        rc = s_fail(self, SHOAL_EIO, "cannot connect to worker %s at %s: %s", put->worker,
                    put->endpoint, zmq_strerror(errno));
        s_put_free(put);
        return rc;
    }
    shoal_wire_put_t m = {
        .seq = ++self->seq, .ref = put->ref, .op = SHOAL_PUT_OP_ALLOC, .size = size};
    if (opts) {
        m.name = (char *)opts->name;
        m.tags.items = (char **)opts->tags;
        m.tags.count = opts->n_tags;
        m.ttl_ms = opts->ttl_ms;
        if (opts->flags & SHOAL_PUT_PERSIST)
            m.flags = SHOAL_TASK_PERSIST;
    }
    //  A named object is persisted too: its SEAL says so as well.
    put->flags = m.flags | (m.name && m.name[0] ? SHOAL_TASK_PERSIST : 0);
    shoal_wire_in_t in;
    if ((rc = s_put_call(put, &m, NULL, 0, S_PUT_TIMEOUT_MS, &in)) != 0) {
        s_put_free(put);
        return rc;
    }
    if ((rc = s_put_check(put, &in)) != 0) {
        shoal_wire_in_clear(&in);
        s_put_free(put);
        return rc;
    }
    s_put_map(put, &in.msg.u.put_reply);
    shoal_wire_in_clear(&in);
    //  The broker hears of it in the submission stream, so any task this client submits
    //  later that reads it arrives after it.
    shoal_wire_task_t t = s_put_task(put->ref, opts);
    t.worker = put->worker;
    t.size = size;
    if ((rc = s_enqueue(self, &t, s_put_wire_size(opts, strlen(put->worker)))) != 0) {
        shoal_wire_put_t a = {.seq = ++self->seq, .ref = put->ref, .op = SHOAL_PUT_OP_ABORT};
        shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, &a, NULL, 0);
        s_put_free(put);
        return rc;
    }
    put->last_msg_ms = shoal__now_ms();
    *ref = put->ref;
    *put_p = put;
    return 0;
}

void *shoal_put_memory(shoal_put_t *put)
{
    if (!put || !put->local)
        return NULL;
    void *p = NULL;
    //  Checked: a worker restarted since may have a new arena under the same path.
    if (!put->mem && shoal_arena_map_checked(put->arena_path, put->arena_dev, put->arena_ino,
                                             put->offset, put->size, &p, NULL) == 0)
        put->mem = p;
    return put->mem;
}

//  Remote: waits until at most max WRITE messages are unanswered.
static int s_put_drain(shoal_put_t *put, size_t max)
{
    while (put->in_flight > max) {
        //  A no-op ask (WRITE of nothing at the end of what was sent) whose answer comes
        //  after those of the WRITEs before it: one pipe, in order.
        shoal_wire_put_t m = {.seq = ++put->owner->seq,
                              .ref = put->ref,
                              .op = SHOAL_PUT_OP_WRITE,
                              .offset = put->written};
        shoal_wire_in_t in;
        int rc = s_put_call(put, &m, NULL, 0, S_PUT_TIMEOUT_MS, &in);
        if (rc)
            return rc;
        rc = s_put_check(put, &in);
        uint64_t watermark = in.msg.u.put_reply.offset;
        shoal_wire_in_clear(&in);
        if (rc)
            return rc;
        //  Answered in order: every WRITE before it is in, or one was lost on the way.
        if (watermark != put->written) {
            char text[SHOAL_REF_TEXT_SIZE];
            return s_fail(put->owner, SHOAL_EPROTO,
                          "put %s: worker %s has %llu of the %llu bytes sent (a part was lost)",
                          shoal_ref_format(put->ref, text), put->worker,
                          (unsigned long long)watermark, (unsigned long long)put->written);
        }
        put->in_flight = 0;
        put->acked = put->written;
    }
    return 0;
}

int shoal_put_write(shoal_put_t *put, const void *data, size_t n)
{
    if (!put)
        return SHOAL_EINVAL;
    shoal_t *self = put->owner;
    if (n && !data)
        return s_fail(self, SHOAL_EINVAL, "shoal_put_write: data is NULL");
    if (n > put->size - put->written)
        return s_fail(self, SHOAL_EINVAL,
                      "shoal_put_write: %zu more bytes after %llu exceed the object's %llu", n,
                      (unsigned long long)put->written, (unsigned long long)put->size);
    if (put->local) {
        memcpy(put->arena + put->offset + put->written, data, n);
        put->written += n;
        //  Streaming readers learn what is written from these (S_PUT_PROGRESS_BYTES: a
        //  message per 64 KiB or per millisecond at most; shoal_put_progress publishes now).
        if (put->written - put->published >= S_PUT_PROGRESS_BYTES ||
            shoal__now_ms() - put->last_msg_ms >= 1) {
            shoal_put_progress(put, put->written);
        } else if (shoal__now_ms() - put->last_msg_ms >= S_PUT_KEEPALIVE_MS) {
            shoal_wire_put_t m = {.seq = ++self->seq,
                                  .ref = put->ref,
                                  .op = SHOAL_PUT_OP_WRITE,
                                  .offset = put->written};
            shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, &m, NULL, 0); //  answer ignored
            put->last_msg_ms = shoal__now_ms();
        }
        return 0;
    }
    const uint8_t *p = data;
    while (n) {
        int rc = s_put_drain(put, S_PUT_CREDIT - 1);
        if (rc)
            return rc;
        size_t chunk = SHOAL__MIN(n, (size_t)SHOAL_CHUNK_SIZE);
        shoal_wire_put_t m = {
            .seq = ++self->seq, .ref = put->ref, .op = SHOAL_PUT_OP_WRITE, .offset = put->written};
        rc = shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, &m, p, chunk);
        if (rc == SHOAL_EAGAIN) {
            if ((rc = s_put_drain(put, 0)) != 0)
                return rc;
            continue;
        }
        if (rc)
            return s_fail(self, rc, "put: sending to worker %s at %s: %s", put->worker,
                          put->endpoint, shoal_strerror(rc));
        put->in_flight++;
        put->written += chunk;
        put->last_msg_ms = shoal__now_ms();
        p += chunk;
        n -= chunk;
    }
    return 0;
}

int shoal_put_end(shoal_put_t **put_p)
{
    if (!put_p || !*put_p)
        return SHOAL_EINVAL;
    shoal_put_t *put = *put_p;
    *put_p = NULL;
    shoal_t *self = put->owner;
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(put->ref, text);
    int rc = 0;
    if (!put->local && put->written != put->size)
        rc = s_fail(self, SHOAL_EINVAL, "put %s: %llu of its %llu bytes written; aborted", text,
                    (unsigned long long)put->written, (unsigned long long)put->size);
    if (rc == 0)
        rc = s_put_drain(put, 0);
    bool unknown = false;
    if (rc == 0) {
        //  offset = size: written in place, the bytes are ours to vouch for.
        shoal_wire_put_t m = {.seq = ++self->seq,
                              .ref = put->ref,
                              .op = SHOAL_PUT_OP_SEAL,
                              .offset = put->local ? put->size : 0,
                              //  so a resent SEAL is answered only once the copy is synced
                              .flags = put->flags};
        shoal_wire_in_t in;
        if ((rc = s_put_call(put, &m, NULL, 0, S_PUT_TIMEOUT_MS, &in)) == 0) {
            rc = s_put_check(put, &in);
            shoal_wire_in_clear(&in);
        } else if (rc == SHOAL_ETIMEDOUT || rc == SHOAL_EUNREACH) {
            //  The SEAL went out and no answer came: it may have been sealed. An ABORT now
            //  could not undo that, so say so instead.
            unknown = true;
            rc = s_fail(self, rc,
                        "put %s: worker %s did not confirm the seal; the object may be "
                        "stored (shoal_wait on its ref tells)",
                        text, put->worker);
        }
    }
    if (rc && !unknown) {
        //  Best effort: the worker aborts it anyway when the lease runs out.
        shoal_wire_put_t a = {.seq = ++self->seq, .ref = put->ref, .op = SHOAL_PUT_OP_ABORT};
        shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, &a, NULL, 0);
    }
    s_put_free(put);
    return rc;
}

void shoal_put_abort(shoal_put_t **put_p)
{
    if (!put_p || !*put_p)
        return;
    shoal_put_t *put = *put_p;
    *put_p = NULL;
    shoal_wire_put_t m = {.seq = ++put->owner->seq, .ref = put->ref, .op = SHOAL_PUT_OP_ABORT};
    shoal_wire_in_t in;
    if (s_put_call(put, &m, NULL, 0, S_PUT_RESEND_MS * 2, &in) == 0)
        shoal_wire_in_clear(&in);
    s_put_free(put);
}

int shoal_put(shoal_t *self, const void *data, size_t size, const shoal_put_opts_t *opts,
              shoal_ref_t *ref)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!ref || (size && !data))
        return s_fail(self, SHOAL_EINVAL, "shoal_put: NULL argument");
    int rc = s_put_opts_check(self, opts);
    if (rc)
        return rc;
    bool store = opts && ((opts->flags & (SHOAL_PUT_STORE | SHOAL_PUT_PERSIST)) || opts->worker);
    if (size <= SHOAL_INLINE_MAX && !store) {
        //  Small: to the broker's directory, in the submission stream.
        shoal_ref_t id = shoal_ref_make(self->client_id, self->counter + 1, 0);
        shoal_wire_task_t t = s_put_task(id, opts);
        t.flags |= SHOAL_OUT_INLINE;
        t.arg.data = data;
        t.arg.size = size;
        t.size = size;
        if ((rc = s_enqueue(self, &t, s_put_wire_size(opts, size))) != 0)
            return rc;
        *ref = id;
        return 0;
    }
    shoal_put_t *put = NULL;
    shoal_ref_t id;
    if ((rc = shoal_put_begin(self, size, opts, &id, &put)) != 0)
        return rc;
    if ((rc = shoal_put_write(put, data, size)) != 0) {
        shoal_put_abort(&put);
        return rc;
    }
    if ((rc = shoal_put_end(&put)) != 0)
        return rc;
    *ref = id;
    return 0;
}

/*  --------------------------------------------------------------------------- query */

//  Length of s with its NUL, 0 for NULL (which stays NULL in the copy).
static size_t s_str_bytes(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

//  Copies s (NULL stays NULL) to *at and advances it.
static const char *s_str_put(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    char *d = memcpy(*at, s, len);
    *at += len;
    return d;
}

int shoal_query(shoal_t *self, const shoal_query_t *q, shoal_object_info_t **list, size_t *n,
                int timeout_ms)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!list || !n)
        return s_fail(self, SHOAL_EINVAL, "shoal_query: NULL argument");
    int64_t deadline = s_deadline(timeout_ms);
    int rc = s_flush(self, deadline, false);
    if (rc)
        return rc;
    shoal_wire_query_t req = {0};
    if (q) {
        req.name_glob = (char *)q->name_glob;
        req.tag = (char *)q->tag;
        req.worker = (char *)q->worker;
        req.job = (char *)q->job;
        req.limit = q->limit;
    }
    self->req_type = SHOAL_MSG_query;
    self->req_query = &req;
    rc = s_request(self, deadline);
    shoal_wire_query_reply_t *r = self->req_job_reply;
    self->req_job_reply = NULL;
    if (rc) {
        free(r);
        return rc;
    }
    /*  One block: the array, the tag pointers, then the strings (the array and the
        pointers keep the strings 8-byte aligned after them). */
    size_t count = r->objects.count, n_tags = 0, strings = 0;
    for (size_t i = 0; i < count; i++) {
        const shoal_wire_object_info_t *o = &r->objects.items[i];
        n_tags += o->tags.count;
        strings += s_str_bytes(o->name) + s_str_bytes(o->worker);
        for (size_t k = 0; k < o->tags.count; k++)
            strings += strlen(o->tags.items[k] ? o->tags.items[k] : "") + 1;
    }
    size_t bytes =
        (count ? count : 1) * sizeof(shoal_object_info_t) + n_tags * sizeof(char *) + strings;
    shoal_object_info_t *out = malloc(bytes);
    if (!out) {
        free(r);
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    }
    const char **tag_at = (const char **)(out + (count ? count : 1));
    char *at = (char *)(tag_at + n_tags);
    for (size_t i = 0; i < count; i++) {
        const shoal_wire_object_info_t *o = &r->objects.items[i];
        out[i] = (shoal_object_info_t){
            .ref = o->ref,
            .name = s_str_put(&at, o->name),
            .tags = o->tags.count ? tag_at : NULL,
            .n_tags = o->tags.count,
            .size = o->size,
            .state = (int)SHOAL__MIN(o->state, (uint64_t)INT_MAX),
            .worker = s_str_put(&at, o->worker),
            .task = o->task,
            .age_ms = o->age_ms,
        };
        for (size_t k = 0; k < o->tags.count; k++)
            *tag_at++ = s_str_put(&at, o->tags.items[k] ? o->tags.items[k] : "");
    }
    uint64_t more = r->more;
    free(r);
    *list = out;
    *n = count;
    return (int)SHOAL__MIN(more, (uint64_t)INT_MAX);
}

void shoal_objects_free(shoal_object_info_t **list, size_t n)
{
    (void)n;
    if (!list)
        return;
    free(*list);
    *list = NULL;
}

/*  ------------------------------------------------------------------ streaming reads

    A stream reads an object while it is written. It watches the ref with
    SHOAL_WATCH_ALLOCATED, so the broker says at once (or when the allocation is reported)
    which worker holds it, and asks that worker with streaming fetches on a DEALER of its
    own (a get on the same connection must not take its replies). Requests are for 1 MiB
    chunks from the read position: those wholly below the watermark the last reply gave
    are sure to come back whole, so up to S_FETCH_CREDIT of them are in flight; the one
    that reaches past it (the frontier) may come back short, so nothing is asked beyond it
    until it is answered. The worker holds a frontier until bytes land, at most
    S_STREAM_WAIT_MS, so a worker silent for S_FETCH_STALL_MS has lost the requests (asked
    again) and one silent S_FETCH_STALLS times as long is gone. An object already final
    is read with shoal_get (zero-copy on this host) and served from its view. */

#define S_STREAM_WAIT_MS 1000

typedef struct {
    uint64_t seq, offset;
} s_sreq_t;

struct shoal_stream {
    shoal_t *owner;
    shoal_ref_t ref;
    char text[SHOAL_REF_TEXT_SIZE];
    uint64_t pos;      //  bytes handed to the reader
    shoal_view_t view; //  whole: the final object
    bool whole;
    char *endpoint; //  the worker asked, or NULL: ask the broker where
    void *sock;
    uint64_t size, ready; //  as the last reply said
    bool sized, sealed;
    s_sreq_t reqs[S_FETCH_CREDIT]; //  in flight, oldest first (replies come in order)
    size_t n_reqs;
    uint64_t next_off;  //  where the next request starts
    bool frontier;      //  the last request in flight may come back short
    uint64_t seq_floor; //  replies to requests below it belong to an abandoned round
    zmq_msg_t chunk;    //  bytes received, not all handed over yet
    bool have_chunk;
    size_t chunk_off;
    int64_t heard_ms;
    int stalls;
    //  The allocation read (the worker's gen in data replies), and whether bytes of it
    //  came: a stream never splices bytes of an aborted allocation with its rewrite.
    uint64_t gen;
    bool fed;
};

//  Sends the watch that asks the broker where ref is being written.
static int s_stream_watch(shoal_stream_t *s)
{
    shoal_t *self = s->owner;
    shoal_ref_t ref = s->ref;
    shoal_wire_watch_t w = {.seq = ++self->seq, .flags = SHOAL_WATCH_ALLOCATED};
    w.refs.items = &ref;
    w.refs.count = 1;
    s_entry_t *e = s_entry(self, ref, true);
    if (!e)
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    if (!e->watched) {
        e->watched = true;
        if (!e->final)
            self->n_open++;
    }
    int rc = shoal_wire_send(self->sock, NULL, SHOAL_MSG_watch, &w, NULL, 0);
    return rc == SHOAL_EAGAIN ? 0 : rc; //  the periodic rewatch covers a full pipe
}

int shoal_stream_open(shoal_t *self, shoal_ref_t ref, shoal_stream_t **stream_p)
{
    if (!self)
        return SHOAL_EINVAL;
    if (!stream_p)
        return s_fail(self, SHOAL_EINVAL, "shoal_stream_open: stream_p is NULL");
    shoal_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return s_fail(self, SHOAL_ENOMEM, "out of memory");
    s->owner = self;
    s->ref = ref;
    shoal_ref_format(ref, s->text);
    //  Submissions first: the broker must know the task or put before the watch.
    int rc = s_flush(self, s_deadline(10000), false);
    if (rc == 0 && (rc = s_stream_watch(s)) != 0)
        rc = s_fail(self, rc, "%s: cannot ask the broker: %s", s->text, shoal_strerror(rc));
    if (rc) {
        free(s);
        return rc;
    }
    *stream_p = s;
    return 0;
}

//  Forgets the requests in flight (their replies are ignored) and the worker asked.
static void s_stream_reset(shoal_stream_t *s, bool forget_worker)
{
    s->seq_floor = s->owner->seq + 1;
    s->n_reqs = 0;
    s->frontier = false;
    s->next_off = s->pos;
    if (forget_worker) {
        free(s->endpoint);
        s->endpoint = NULL;
        if (s->sock)
            zmq_close(s->sock);
        s->sock = NULL;
    }
}

/*  Learns where to read: the final object (read whole), or the worker writing it. 0, the
    ref's failure, or SHOAL_ETIMEDOUT. */
static int s_stream_locate(shoal_stream_t *s, int64_t deadline)
{
    shoal_t *self = s->owner;
    if (s->fed && !s->sealed)
        //  The worker lost what we were reading (not found there any more): aborted. A
        //  retry writes it again, maybe other bytes, which must not follow the ones read.
        return s_fail(self, SHOAL_ECANCELED,
                      "%s was aborted on the worker at %s after %llu bytes of it were read, "
                      "and may be written anew: this stream cannot go on",
                      s->text, s->endpoint ? s->endpoint : "(unknown)", (unsigned long long)s->pos);
    for (;;) {
        s_entry_t *e = shoal__refmap_get(self->refs, s->ref);
        if (e && e->final) {
            int code = s_status_code(e->status);
            if (code)
                return s_fail_status(self, e->status, code);
            int left = deadline < 0 ? -1
                                    : (int)SHOAL__MIN(SHOAL__MAX(deadline - shoal__now_ms(), 1),
                                                      (int64_t)INT_MAX);
            int rc = shoal_get(self, s->ref, left, &s->view);
            if (rc)
                return rc;
            if (s->pos > s->view.size) {
                shoal_view_release(&s->view);
                return s_fail(self, SHOAL_EPROTO, "%s: %llu bytes read, but it has only %zu",
                              s->text, (unsigned long long)s->pos, s->view.size);
            }
            s->whole = true;
            return 0;
        }
        const shoal_wire_status_t *st = e ? e->status : NULL;
        if (st && st->state == SHOAL_STATE_RUNNING && st->endpoint && *st->endpoint) {
            s_stream_reset(s, true);
            s->endpoint = strdup(st->endpoint);
            s->sock = s->endpoint ? s_socket(self->ctx, ZMQ_DEALER, 0) : NULL;
            if (!s->sock || zmq_connect(s->sock, s->endpoint) != 0) {
                s_stream_reset(s, true);
                return s_fail(self, SHOAL_EIO, "%s: cannot connect to the worker at %s", s->text,
                              st->endpoint);
            }
            s->heard_ms = shoal__now_ms();
            s->stalls = 0;
            return 0;
        }
        if (s_expired(deadline))
            return s_fail(self, SHOAL_ETIMEDOUT, "%s: not allocated on any worker yet", s->text);
        int rc = s_turn(self, s_poll_ms(deadline, S_TICK_MS), NULL, NULL);
        if (rc == 0)
            rc = s_take_async(self);
        if (rc)
            return rc;
    }
}

//  Sends the requests the credit allows (see the top of this section).
static int s_stream_ask(shoal_stream_t *s)
{
    while (s->n_reqs < S_FETCH_CREDIT && !s->frontier) {
        if (s->sized && s->next_off >= s->size && !(s->next_off == s->size && s->n_reqs == 0))
            break; //  everything is asked for (an empty tail is asked once, for the seal)
        bool whole = s->sealed || s->next_off + SHOAL_CHUNK_SIZE <= s->ready;
        if (s->sized && s->next_off == s->size && s->sealed)
            break;
        shoal_wire_fetch_t f = {.seq = ++s->owner->seq,
                                .ref = s->ref,
                                .offset = s->next_off,
                                .length = SHOAL_CHUNK_SIZE,
                                .flags = SHOAL_FETCH_STREAM,
                                .wait_ms = S_STREAM_WAIT_MS};
        int rc = shoal_wire_send(s->sock, NULL, SHOAL_MSG_fetch, &f, NULL, 0);
        if (rc == SHOAL_EAGAIN)
            break;
        if (rc)
            return s_fail(s->owner, rc, "%s: asking the worker at %s: %s", s->text, s->endpoint,
                          shoal_strerror(rc));
        if (s->n_reqs == 0)
            s->heard_ms = shoal__now_ms(); //  the silence counts from the first ask
        s->reqs[s->n_reqs++] = (s_sreq_t){f.seq, f.offset};
        if (whole)
            s->next_off += SHOAL_CHUNK_SIZE;
        else
            s->frontier = true;
    }
    return 0;
}

//  Handles one reply. 0 (maybe with a chunk), or a failure of the read.
static int s_stream_reply(shoal_stream_t *s, shoal_wire_in_t *in)
{
    shoal_t *self = s->owner;
    if (in->msg.type == SHOAL_MSG_error)
        return s_fail(self, in->msg.u.error.code < 0 ? (int)in->msg.u.error.code : SHOAL_EPROTO,
                      "%s: the worker at %s: %s", s->text, s->endpoint,
                      in->msg.u.error.error ? in->msg.u.error.error : "error");
    const shoal_wire_data_t *d = &in->msg.u.data;
    if (in->msg.type != SHOAL_MSG_data || !shoal_ref_equal(d->ref, s->ref) ||
        d->seq < s->seq_floor || s->n_reqs == 0 || d->seq != s->reqs[0].seq)
        return 0; //  a reply to an abandoned round
    s->heard_ms = shoal__now_ms();
    s->stalls = 0;
    uint64_t offset = s->reqs[0].offset;
    memmove(s->reqs, s->reqs + 1, --s->n_reqs * sizeof *s->reqs);
    if (d->code == SHOAL_ENOTFOUND) {
        //  Not allocated there (yet), or lost: the broker says where, or that it failed
        //  (s_stream_locate refuses to go on after bytes of an allocation now gone).
        if (s->fed && !s->sealed) {
            s_stream_reset(s, false);
            return s_stream_locate(s, 0);
        }
        s_stream_reset(s, true);
        s_entry_t *e = shoal__refmap_get(self->refs, s->ref);
        if (e && !e->final) {
            free(e->status);
            e->status = NULL;
        }
        return s_stream_watch(s);
    }
    if (d->code < 0)
        return s_fail(self, d->code >= INT_MIN ? (int)d->code : SHOAL_EPROTO, "%s",
                      d->error ? d->error : shoal_strerror((int)d->code));
    size_t got = in->has_raw ? zmq_msg_size(&in->raw) : 0;
    if (d->gen != s->gen) {
        if (s->fed)
            return s_fail(self, SHOAL_ECANCELED,
                          "%s was aborted on the worker at %s after %llu bytes of it were "
                          "read, and is being written anew: this stream cannot go on",
                          s->text, s->endpoint, (unsigned long long)s->pos);
        //  Nothing read of the allocation before: the new one is read from the start.
        s->gen = d->gen;
        s->sized = false;
        s->ready = 0;
    }
    if (d->offset != offset || offset != s->pos || got > SHOAL_CHUNK_SIZE ||
        offset + got > d->size || (s->sized && d->size != s->size))
        return s_fail(self, SHOAL_EPROTO,
                      "%s from %s: %zu bytes at %llu of %llu, expected them at %llu", s->text,
                      s->endpoint, got, (unsigned long long)d->offset, (unsigned long long)d->size,
                      (unsigned long long)s->pos);
    s->size = d->size;
    s->sized = true;
    s->ready = SHOAL__MAX(s->ready, d->ready);
    s->sealed = s->sealed || d->final;
    if (s->n_reqs == 0 && s->frontier) {
        s->frontier = false;
        s->next_off = offset + got;
    }
    if (got) {
        zmq_msg_init(&s->chunk);
        zmq_msg_move(&s->chunk, &in->raw);
        s->have_chunk = true;
        s->chunk_off = 0;
        s->fed = true;
    }
    return 0;
}

int shoal_stream_read(shoal_stream_t *s, void *buf, size_t cap, int timeout_ms)
{
    if (!s)
        return SHOAL_EINVAL;
    shoal_t *self = s->owner;
    if (cap && !buf)
        return s_fail(self, SHOAL_EINVAL, "shoal_stream_read: buf is NULL");
    cap = SHOAL__MIN(cap, (size_t)INT_MAX);
    int64_t deadline = s_deadline(timeout_ms);
    for (;;) {
        if (s->whole) {
            size_t n = SHOAL__MIN(cap, s->view.size - (size_t)s->pos);
            memcpy(buf, (const uint8_t *)s->view.data + s->pos, n);
            s->pos += n;
            return (int)n;
        }
        if (s->have_chunk) {
            size_t left = zmq_msg_size(&s->chunk) - s->chunk_off;
            size_t n = SHOAL__MIN(cap, left);
            memcpy(buf, (const uint8_t *)zmq_msg_data(&s->chunk) + s->chunk_off, n);
            s->chunk_off += n;
            s->pos += n;
            if (n == left) {
                zmq_msg_close(&s->chunk);
                s->have_chunk = false;
            }
            return (int)n;
        }
        if (s->sealed && s->pos == s->size)
            return 0;
        if (cap == 0)
            return 0;
        int rc = 0;
        if (!s->endpoint && (rc = s_stream_locate(s, deadline)) != 0)
            return rc;
        if (s->whole)
            continue;
        if ((rc = s_stream_ask(s)) != 0)
            return rc;
        if (s_expired(deadline))
            return s_fail(self, SHOAL_ETIMEDOUT, "%s: no bytes beyond %llu in time", s->text,
                          (unsigned long long)s->pos);
        if (s->n_reqs && shoal__now_ms() - s->heard_ms >= S_FETCH_STALL_MS) {
            if (++s->stalls >= S_FETCH_STALLS)
                return s_fail(self, SHOAL_EUNREACH, "%s: the worker at %s does not answer", s->text,
                              s->endpoint);
            s_stream_reset(s, false); //  lost on the way: ask again
            s->heard_ms = shoal__now_ms();
            continue;
        }
        bool ready = false;
        if ((rc = s_turn(self, s_poll_ms(deadline, S_TICK_MS), s->sock, &ready)) != 0 ||
            (rc = s_take_async(self)) != 0)
            return rc;
        //  A failure the broker reports (an abort, a failed task) ends the read too.
        s_entry_t *e = shoal__refmap_get(self->refs, s->ref);
        if (e && e->final && s_status_code(e->status) != 0)
            return s_fail_status(self, e->status, s_status_code(e->status));
        if (e && e->final && !s->sized) {
            //  Done before its worker had it for us (a small output travels inline and is
            //  never in a store): read it whole, nothing was read from the worker yet.
            s_stream_reset(s, true);
            continue;
        }
        while (ready && !s->have_chunk && s->sock) {
            shoal_wire_in_t in;
            int rrc = shoal_wire_recv(s->sock, false, &in, ZMQ_DONTWAIT);
            if (rrc == SHOAL_EAGAIN || (rrc == SHOAL_EIO && errno == EINTR))
                break;
            if (rrc == SHOAL_EIO)
                return s_fail(self, rrc, "%s: receiving from %s: %s", s->text, s->endpoint,
                              zmq_strerror(errno));
            if (rrc)
                continue; //  malformed: the stall covers it
            rc = s_stream_reply(s, &in);
            shoal_wire_in_clear(&in);
            if (rc)
                return rc;
        }
    }
}

uint64_t shoal_stream_size(const shoal_stream_t *s)
{
    if (!s)
        return 0;
    return s->whole ? s->view.size : s->sized ? s->size : 0;
}

void shoal_stream_close(shoal_stream_t **stream_p)
{
    if (!stream_p || !*stream_p)
        return;
    shoal_stream_t *s = *stream_p;
    *stream_p = NULL;
    if (s->have_chunk)
        zmq_msg_close(&s->chunk);
    shoal_view_release(&s->view);
    s_stream_reset(s, true);
    free(s);
}

int shoal_put_progress(shoal_put_t *put, uint64_t bytes)
{
    if (!put)
        return SHOAL_EINVAL;
    if (bytes > put->size)
        return s_fail(put->owner, SHOAL_EINVAL,
                      "shoal_put_progress: %llu bytes exceed the object's %llu",
                      (unsigned long long)bytes, (unsigned long long)put->size);
    if (!put->local)
        return 0; //  a remote worker counts what arrives
    shoal_wire_put_t m = {
        .seq = ++put->owner->seq, .ref = put->ref, .op = SHOAL_PUT_OP_WRITE, .offset = bytes};
    int rc = shoal_wire_send(put->sock, NULL, SHOAL_MSG_put, &m, NULL, 0); //  answer ignored
    if (rc == 0) {
        put->last_msg_ms = shoal__now_ms();
        put->published = bytes;
    }
    return rc == SHOAL_EAGAIN ? 0 : rc;
}
