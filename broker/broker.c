/*  broker.c: routing, scheduling, the object directory, events.

    One thread and one loop. Each turn: wait on the ROUTER and the XPUB (up to the next
    heartbeat tick), drain up to S_DRAIN_MAX messages, then dispatch ready tasks to workers
    with credit and flush the statuses owed to clients. Everything that goes out is
    batched per peer per turn: one w_dispatch per worker, one statuses per client.

    State
    - tasks: by task id (the ref of output 0). A task is 104 bytes from a slab: its
      state, attempt, the count of inputs not yet available, its interned fn name, one
      block for what varies (inputs, argument, command line), and, only when needed, an
      extension with the tasks that consume it (with multiplicity), the clients watching
      it and its failure. Queued, a no-op task costs about 175 bytes with its hash slot
      and its place in the ready queue (`shoal bench`: broker_bytes_per_queued_task).
    - objects: the directory, by ref: size, holder, and the bytes when small.
    - puts: objects a client stored (SHOAL_KIND_PUT) are tasks too, which never run: an
      inline put is DONE on arrival; another is RUNNING on the worker whose store holds it
      until that worker's w_objects note says SEALED (DONE) or ABORTED (CANCELED). A put is
      never run again: lost with its worker, it fails (SHOAL_ELOST), and so do its
      consumers. Notes flagged `put` may come before the client's PUT task (another
      socket): the note then makes the task, and the client's is a duplicate. A put
      RUNNING that its worker has not reported has a deadline (put_due): 2 x the workers'
      put lease after its PUT task came, or, restored from the journal, the time its
      worker has to say hello again; past it, it ends (nobody is writing it).
    - ttl: a task with ttl_ms is removed that long after it is DONE, from a min-heap of
      (deadline, id) checked each turn. A task forgotten or run again earlier leaves a
      stale entry, skipped when it reaches the top; the heap counts the entries still
      armed and is rebuilt without the stale ones once they outnumber those (a ttl of
      years must not pin an entry per forgotten task).
    - gone: tombstones of forgotten puts, in a map and in a FIFO ring in creation order
      (all live equally long, so the ring is in deadline order): expired ones are popped
      from its head, O(1) each.
    - workers: a small array (tens to hundreds), found by routing id or name.
    - jobs: by name. A job counts its tasks by state and lists them in job order; a task
      points to its job and knows its place in that list (16 bytes a task, plus 8 to 16
      in the job's list), so every state change and every forgotten task updates the job
      in O(1).
    - queries (`shoal ls`): no index of names or tags; one walk of the task map (of a job's
      list, with a job filter) per query, keeping the limit oldest matches in a heap.

    Availability is tracked per task: a task's outputs are available when it is DONE.
    When the worker holding them dies, a task whose outputs were not all inline goes
    back to the queue (lineage) and every consumer not yet finished counts it missing
    again. */
#include "broker.h"

#include "common.h"
#include "journal.h"
#include "refmap.h"
#include "wire.h"

#include <errno.h>
#include <fnmatch.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define S_DRAIN_MAX      1000 //  messages per socket per turn, so no socket starves
#define S_MAX_LOST       3    //  worker deaths a task survives (Dask's allowed-failures)
#define S_HWM            100000
#define S_ERROR_MAX      4096        //  bytes of failure text kept per task
#define S_DISPATCH_BATCH 256         //  tasks per w_dispatch message
#define S_DISPATCH_BYTES (16u << 20) //  a quarter of SHOAL_MAX_MSG_SIZE, for headroom
#define S_HEAP_SLACK     1024        //  stale deadlines let be (24 KiB): not worth a rebuild

/*  ------------------------------------------------------------------------- types */

typedef struct s_worker s_worker_t;
typedef struct s_task s_task_t;

//  An interned string with a count of its users.
typedef struct s_str {
    struct s_str *next;
    uint64_t users;
    char text[];
} s_str_t;

#define S_FN_BUCKETS 256  //  distinct fn names are few: tens, not millions
#define S_SLAB_TASKS 8192 //  tasks per slab: 960 KiB, mapped on its own
typedef struct s_job s_job_t;

typedef struct {
    shoal_wire_peer_t peer;
    shoal_ref_t ref;
    bool allocated; //  SHOAL_WATCH_ALLOCATED: also told where the object is being written
} s_watch_t;

/*  What few tasks are submitted with: a name or tags for their outputs, a ttl, flags, and
    for a put the worker holding it and its size. One malloc'd block with its strings after
    it, hung on the extension: a plain queued task has none. */
typedef struct {
    const char *name;   //  the name given to its outputs, or NULL
    const char *worker; //  put: the worker whose store holds it, or NULL
    const char *tags;   //  n_tags NUL-terminated strings, one after the other
    uint64_t flags;     //  as submitted (SHOAL_OUT_INLINE: an inline put)
    uint64_t ttl_ms;    //  0, or: removed this long after it is DONE
    uint64_t size;      //  put: the size announced
    int64_t expires_us; //  DONE with a ttl: the deadline; heap entries for another are stale
    int64_t since_us;   //  put: when the broker heard of it (shoal ls: the age while written)
    int64_t put_due_us; //  put RUNNING that its worker has not reported: when it ends; or 0
    uint64_t stream;    //  fn: bit i, input i streams (may be read while it is written)
    uint32_t n_tags;
} s_meta_t;

/*  What a task needs only sometimes, allocated on first use: a queued task that nothing
    consumes, nobody watches and that has not failed has none. */
typedef struct {
    //  By id, with multiplicity (one entry per input naming this task). Ids, not pointers:
    //  a forgotten consumer leaves a stale entry that lookups skip, so forgetting costs
    //  nothing here (scanning producers' lists was quadratic: 16 s for 100,000 consumers).
    shoal_ref_t *consumers;
    uint32_t n_consumers, cap_consumers;
    s_watch_t *watchers;
    uint32_t n_watchers, cap_watchers;
    int64_t code, exit_code;
    char *error;        //  failure text
    s_meta_t *meta;     //  what it was submitted with beyond the common fields, or NULL
    uint64_t allocated; //  RUNNING: bit i, output i is allocated on its worker (i < 64)
} s_task_x_t;

/*  A task: 104 bytes from a slab (no malloc header), because the broker holds millions of
    queued ones (goal: at most 200 bytes per queued task, the hash slot and the ready queue
    included). What varies in size (inputs, argument bytes, command line) is one malloc'd
    block, absent for a task with none; the fn name is interned: a million tasks of one
    function share one copy. */
struct s_task {
    shoal_ref_t id;
    s_worker_t *worker; //  RUNNING: where; DONE: who holds the outputs
    s_task_x_t *x;      //  NULL until needed (s_x); the slab's free list when free
    s_job_t *job;       //  NULL when submitted without one
    const char *fn;     //  fn: "lib:symbol", interned; NULL for exec
    uint8_t *var;       //  inputs (16 bytes each), arg bytes, argv strings; or NULL
    uint64_t array_index;
    uint32_t job_pos; //  its index in job->tasks
    uint32_t missing; //  inputs whose producer is waited for (s_producer_waits)
    uint32_t attempt;
    uint32_t n_inputs;
    uint32_t arg_size;
    int32_t priority;
    uint16_t n_outputs;
    uint16_t n_argv;
    uint16_t retries; //  extra attempts after failures of the task itself (capped)
    uint16_t failures;
    uint8_t state; //  SHOAL_STATE_*
    uint8_t lost;  //  attempts lost with a worker
    uint8_t kind;
    bool queued : 1;     //  in the ready queue (entries are checked lazily)
    bool linked : 1;     //  on its worker's outstanding list
    bool all_inline : 1; //  every output lives in the directory: survives its worker
    bool doomed : 1;     //  forgotten while in the ready queue: recycled when popped
};
//  The figure `shoal bench memory` depends on: new per-task data goes in s_meta_t.
_Static_assert(sizeof(s_task_t) == 104, "s_task_t must stay 104 bytes");

/*  The tasks submitted under one name. tasks is in job order: submission order, with each
    run of array tasks (array_index > 0) sorted by index (s_job_tidy, lazily: arrays are
    submitted in order, so sorting is rare). A forgotten task leaves a NULL hole, squeezed
    out once holes are half the list, so leaving costs O(1) amortized. */
struct s_job {
    s_job_t *next; //  the next job whose name has the same hash
    char *name;
    uint64_t created;  //  creation order, for listing
    uint64_t count[8]; //  tasks by SHOAL_STATE_*
    uint64_t total;    //  tasks in the job (holes aside)
    s_task_t **tasks;
    uint32_t n_tasks, cap_tasks; //  slots used (holes included) and allocated
    bool unsorted;               //  an array task came after one with a larger index
    size_t slot;                 //  its index in the broker's jobs array
};

typedef struct {
    shoal_ref_t ref;
    uint64_t size;
    s_worker_t *worker; //  holder; NULL when only inline
    uint8_t *data;      //  inline bytes (size of them), or NULL
    int64_t since_us;   //  when it became available (shoal ls: its age). 40 -> 48 bytes:
                        //  a 64-byte malloc chunk instead of 48, per object, not per task
    bool spilled;       //  its holder moved it to its disk tier (object_note SPILLED); still
                        //  56 bytes, within the same 64-byte chunk
    bool away;          //  persisted, its holder is gone for now: worker NULL, the holder's
                        //  name in the broker's away map until it says hello again
} s_object_t;

struct s_worker {
    shoal_wire_peer_t peer;
    char name[128], host[256], endpoint[256];
    char *store_dir, *arena; //  from its w_hello, for same-host readers; NULL from older workers
    uint64_t slots, capacity, store_capacity, store_bytes, pid;
    uint64_t running, queued; //  as the worker last reported
    uint64_t done, failed;
    uint64_t outstanding; //  length of the task list
    uint64_t n_puts;      //  puts RUNNING on it (being written into its store): no credit
    int64_t last_heard_us;
    //  The dispatch batch being built this turn.
    s_task_t **batch;
    size_t n_batch, cap_batch;
    //  Objects to delete from its store, sent as one w_drop at the end of the turn.
    shoal_ref_t *drops;
    size_t n_drops, cap_drops;
};

//  A deadline: the task with this id is due at deadline_us (if still due then).
typedef struct {
    int64_t deadline_us;
    shoal_ref_t id;
} s_due_t;

/*  A binary min-heap of deadlines. Nothing is removed from the middle: an entry whose task
    moved on (forgotten, run again, reported) is stale, skipped when it reaches the top.
    live counts the entries still armed; once stale ones outnumber them by S_HEAP_SLACK the
    heap is rebuilt without them (O(n), so O(1) amortized per entry). */
typedef struct {
    s_due_t *items;
    size_t n, cap, live;
} s_heap_t;

//  A tombstone in creation order (s_broker_t.gone_ring).
typedef struct {
    shoal_ref_t ref;
    int64_t until_ms;
} s_gone_t;

typedef struct {
    shoal_wire_peer_t peer;
    shoal_wire_status_t *items;
    size_t count, cap;
} s_outbox_t;

//  A positive ack not sent yet (SHOAL_MSG_ack or SHOAL_MSG_w_done_ack). due_us 0: at the
//  end of this loop turn; else held until another message goes to the peer (it rides
//  along: one wake-up of the peer instead of two) or until due_us.
typedef struct {
    shoal_wire_peer_t peer;
    int type;
    uint64_t seq, count;
    int64_t due_us;
} s_ack_t;

/*  How long an ack may wait for company. A w_done_ack waits for the worker's next
    dispatch; a submission's ack, when the same turn brought a watch from that client,
    waits for the statuses it asked for. On two cores each separate ack cost the task in
    flight 35-40 us of latency (the peer's I/O thread and main thread woke up in the
    middle of it); the peers resend what is unacknowledged after 1 s (clients) or 2 s
    (workers), far above this. */
#define S_ACK_HOLD_US 1000

typedef struct {
    s_task_t **items;
    size_t head, count, cap; //  ring buffer
} s_queue_t;

typedef struct {
    shoal_broker_config_t cfg;
    void *ctx, *router, *xpub;
    shoal__journal_t *journal; //  NULL without --state-dir
    int64_t dispatch_after_us; //  after a restart: time for workers to say hello again
    char listen_ep[256], events_ep[256];
    shoal__refmap_t *tasks, *objects;
    shoal__refmap_t *away; //  ref -> the name (malloc'd) of the away holder of a persisted object
    shoal__refmap_t *job_names; //  hash of a name -> chain of jobs with that hash
    s_job_t **jobs;
    size_t n_jobs, cap_jobs;
    uint64_t jobs_created;
    s_worker_t **workers;
    size_t n_workers, cap_workers;
    s_queue_t ready;
    s_outbox_t *outbox;
    size_t n_outbox, cap_outbox;
    //  events
    char **subs; //  subscribed topic prefixes
    size_t n_subs, cap_subs;
    uint64_t event_seq;
    //  counters
    uint64_t n_submitted, n_done, n_failed, n_malformed, n_waiting, n_running;
    //  Task memory: slabs of S_SLAB_TASKS tasks, a free list through ->x, and the
    //  interned fn names.
    s_task_t *free_tasks;
    void **slabs;
    size_t n_slabs, cap_slabs;
    s_str_t *fns[S_FN_BUCKETS];
    int64_t next_tick_us;
    //  Bytes of small objects kept in the directory (broker.stats).
    uint64_t inline_bytes;
    //  Puts held by workers that were forgotten (released, removed, canceled, expired),
    //  id -> when to forget the tombstone (ms): a worker's note about one may still be on
    //  its way (it travels on another connection than the client's release), and must not
    //  bring the put back. Kept for put_lease_ms. The ring lists them in creation order,
    //  which is deadline order: a power of two in size, head and count as in s_queue_t.
    shoal__refmap_t *gone;
    s_gone_t *gone_ring;
    size_t gone_head, gone_count, gone_cap;
    int64_t put_lease_ms; //  the workers' put lease (cfg.put_lease_ms or SHOAL_PUT_LEASE_MS)
    //  ttl deadlines, and the deadlines of puts their worker has not reported.
    s_heap_t ttl, put_due;
    //  The clock, read once per loop turn: for timestamps that need no finer grain (the
    //  age of an object in `shoal ls`).
    int64_t turn_us;
    //  Puts RUNNING when the broker restarted, waiting for their worker to say hello
    //  (ids; entries for tasks that moved on are dropped at the next hello).
    shoal_ref_t *unbound;
    size_t n_unbound, cap_unbound;
    //  Positive acks (of submissions and the like, of w_done) go after the messages on a
    //  task's critical path, never before (the first send of a turn wakes libzmq's I/O
    //  thread, and on two cores a w_done_ack sent first delayed the client's status by a
    //  second wake-up, ~40 us): at the end of the loop turn, or held (S_ACK_HOLD_US) to ride
    //  along with the next message to the same peer. With a journal, never before the
    //  turn's commit, so a task is acknowledged only once it is in the journal.
    s_ack_t *acks;
    size_t n_acks, cap_acks;
} s_broker_t;

static volatile sig_atomic_t s_stop_requested;

void shoal_broker_stop(void)
{
    s_stop_requested = 1;
}

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop_requested = 1;
}

/*  ------------------------------------------------------------------- small helpers */

#define S_PUSH(arr, n, cap, item)                                                                  \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            size_t ncap__ = (cap) ? (cap)*2 : 4;                                                   \
            void *p__ = realloc((arr), ncap__ * sizeof *(arr));                                    \
            if (!p__)                                                                              \
                abort(); /*  out of memory in the broker: nothing sane to do */                    \
            (arr) = p__;                                                                           \
            (cap) = ncap__;                                                                        \
        }                                                                                          \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

static char *s_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static void s_queue_push(s_queue_t *q, s_task_t *t, bool front)
{
    if (q->count == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 1024; //  a power of two, so & replaces %
        s_task_t **items = malloc(ncap * sizeof *items);
        if (!items)
            abort();
        for (size_t i = 0; i < q->count; i++)
            items[i] = q->items[(q->head + i) & (q->cap - 1)];
        free(q->items);
        q->items = items;
        q->cap = ncap;
        q->head = 0;
    }
    if (front) {
        q->head = (q->head - 1) & (q->cap - 1);
        q->items[q->head] = t;
    } else
        q->items[(q->head + q->count) & (q->cap - 1)] = t;
    q->count++;
    t->queued = true;
}

static s_task_t *s_queue_pop(s_queue_t *q)
{
    if (!q->count)
        return NULL;
    s_task_t *t = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    t->queued = false;
    return t;
}

static size_t s_queue_len(const s_queue_t *q)
{
    return q->count;
}

static const char *s_ref_text(shoal_ref_t ref, char buf[SHOAL_REF_TEXT_SIZE])
{
    return shoal_ref_format(ref, buf);
}

static bool s_is_final(uint8_t state)
{
    return state == SHOAL_STATE_DONE || state == SHOAL_STATE_FAILED ||
           state == SHOAL_STATE_CANCELED;
}

static s_task_x_t *s_x(s_task_t *t)
{
    if (!t->x && !(t->x = calloc(1, sizeof *t->x)))
        abort(); //  out of memory in the broker: nothing sane to do
    return t->x;
}

static inline const shoal_ref_t *s_inputs(const s_task_t *t)
{
    return (const shoal_ref_t *)t->var;
}

static inline uint32_t s_n_consumers(const s_task_t *t)
{
    return t->x ? t->x->n_consumers : 0;
}

//  Consumer i of t, or NULL if it was forgotten.
static inline s_task_t *s_consumer(shoal__refmap_t *tasks, const s_task_t *t, uint32_t i)
{
    return shoal__refmap_get(tasks, t->x->consumers[i]);
}

static inline const char *s_error(const s_task_t *t)
{
    return t->x ? t->x->error : NULL;
}

static inline const char *s_job_name(const s_task_t *t)
{
    return t->job ? t->job->name : NULL;
}

static inline s_meta_t *s_meta(const s_task_t *t)
{
    return t->x ? t->x->meta : NULL;
}

static inline bool s_is_put(const s_task_t *t)
{
    return t->kind == SHOAL_KIND_PUT;
}

//  "1.0 GiB": sizes in messages people read.
static const char *s_size_text(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, size, "%llu bytes", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

/*  --------------------------------------------------------------------------- events */

static bool s_wants(s_broker_t *self, const char *topic)
{
    for (size_t i = 0; i < self->n_subs; i++)
        if (strncmp(topic, self->subs[i], strlen(self->subs[i])) == 0)
            return true;
    return false;
}

typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} s_event_t;

//  Starts an event map with nfields fields besides seq and ts.
static void s_event_begin(s_broker_t *self, s_event_t *ev, size_t nfields)
{
    msgpack_sbuffer_init(&ev->buf);
    msgpack_packer_init(&ev->pk, &ev->buf, msgpack_sbuffer_write);
    msgpack_pack_map(&ev->pk, nfields + 2);
    msgpack_pack_str_with_body(&ev->pk, "seq", 3);
    msgpack_pack_uint64(&ev->pk, ++self->event_seq);
    msgpack_pack_str_with_body(&ev->pk, "ts", 2);
    msgpack_pack_int64(&ev->pk, shoal__wall_us());
}

static void s_ev_str(s_event_t *ev, const char *key, const char *value)
{
    msgpack_pack_str_with_body(&ev->pk, key, strlen(key));
    if (value)
        msgpack_pack_str_with_body(&ev->pk, value, strlen(value));
    else
        msgpack_pack_nil(&ev->pk);
}

static void s_ev_int(s_event_t *ev, const char *key, int64_t value)
{
    msgpack_pack_str_with_body(&ev->pk, key, strlen(key));
    msgpack_pack_int64(&ev->pk, value);
}

static void s_ev_ref(s_event_t *ev, const char *key, shoal_ref_t ref)
{
    char text[SHOAL_REF_TEXT_SIZE];
    s_ev_str(ev, key, shoal_ref_format(ref, text));
}

static void s_event_send(s_broker_t *self, const char *topic, s_event_t *ev)
{
    //  XPUB drops at its high-water mark rather than block: events are best effort.
    if (zmq_send(self->xpub, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        zmq_send(self->xpub, ev->buf.data, ev->buf.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy(&ev->buf);
}

static void s_event_task(s_broker_t *self, const char *topic, s_task_t *t)
{
    if (!s_wants(self, topic))
        return;
    s_event_t ev;
    bool failed = t->state == SHOAL_STATE_FAILED || t->state == SHOAL_STATE_CANCELED;
    s_event_begin(self, &ev, failed ? 6 : 4);
    s_ev_ref(&ev, "task", t->id);
    s_ev_int(&ev, "attempt", t->attempt);
    s_ev_str(&ev, "worker", t->worker ? t->worker->name : NULL);
    s_ev_str(&ev, "job", s_job_name(t));
    if (failed) {
        s_ev_int(&ev, "code", t->x ? t->x->code : 0);
        s_ev_str(&ev, "error", s_error(t));
    }
    s_event_send(self, topic, &ev);
}

static void s_event_worker(s_broker_t *self, const char *topic, s_worker_t *w, const char *reason)
{
    if (!s_wants(self, topic))
        return;
    s_event_t ev;
    s_event_begin(self, &ev, 5);
    s_ev_str(&ev, "worker", w->name);
    s_ev_str(&ev, "host", w->host);
    s_ev_int(&ev, "slots", (int64_t)w->slots);
    s_ev_str(&ev, "endpoint", w->endpoint);
    s_ev_str(&ev, "reason", reason);
    s_event_send(self, topic, &ev);
}

/*  object.allocated|sealed|deleted: ref, worker (the holder, or nil), size, and for
    object.deleted the reason (removed, released, expired, lost). */
static void s_event_object(s_broker_t *self, const char *topic, shoal_ref_t ref,
                           const s_worker_t *w, uint64_t size, const char *reason)
{
    if (!s_wants(self, topic))
        return;
    s_event_t ev;
    s_event_begin(self, &ev, reason ? 4 : 3);
    s_ev_ref(&ev, "ref", ref);
    s_ev_str(&ev, "worker", w ? w->name : NULL);
    s_ev_int(&ev, "size", (int64_t)SHOAL__MIN(size, (uint64_t)INT64_MAX));
    if (reason)
        s_ev_str(&ev, "reason", reason);
    s_event_send(self, topic, &ev);
}

/*  ------------------------------------------------------------------------ statuses */

static s_outbox_t *s_outbox_for(s_broker_t *self, const shoal_wire_peer_t *peer)
{
    for (size_t i = 0; i < self->n_outbox; i++)
        if (shoal_wire_peer_equal(&self->outbox[i].peer, peer))
            return &self->outbox[i];
    s_outbox_t box = {.peer = *peer};
    S_PUSH(self->outbox, self->n_outbox, self->cap_outbox, box);
    return &self->outbox[self->n_outbox - 1];
}

static s_object_t *s_object(s_broker_t *self, shoal_ref_t ref)
{
    return shoal__refmap_get(self->objects, ref);
}

static void s_object_free_data(s_broker_t *self, s_object_t *o)
{
    if (o->data) {
        self->inline_bytes -= o->size;
        free(o->data);
        o->data = NULL;
    }
}

//  Takes o out of the directory and frees it (object.deleted says why).
//  Whether ref is a persisted object: an output (not the log) of a task, or a put, marked
//  SHOAL_TASK_PERSIST or named (proto.h).
static bool s_is_persisted(s_broker_t *self, shoal_ref_t ref)
{
    if (shoal_ref_index(ref) == SHOAL_REF_LOG_INDEX ||
        shoal_ref_index(ref) == SHOAL_REF_STDOUT_INDEX)
        return false;
    const s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
    const s_meta_t *m = t ? s_meta(t) : NULL;
    return m && ((m->flags & SHOAL_TASK_PERSIST) || (m->name && m->name[0]));
}

static void s_object_forget(s_broker_t *self, s_object_t *o, const char *reason)
{
    if (o->away)
        free(shoal__refmap_remove(self->away, o->ref));
    shoal__refmap_remove(self->objects, o->ref);
    s_event_object(self, "object.deleted", o->ref, o->worker, o->size, reason);
    s_object_free_data(self, o);
    free(o);
}

/*  Records ref: size bytes held by holder (NULL: no worker keeps it), and a copy of data
    (the whole object, or NULL). Workers do not keep outputs they send whole (<= 64 KiB)
    nor logs the broker gets whole: for those the directory's copy is the only one, so it
    is kept whatever its size, until the object is removed. Returns whether the bytes are
    inline. */
static bool s_object_set(s_broker_t *self, shoal_ref_t ref, uint64_t size, const void *data,
                         s_worker_t *holder)
{
    s_object_t *o = s_object(self, ref);
    if (!o) {
        if (!(o = calloc(1, sizeof *o)))
            abort();
        o->ref = ref;
        shoal__refmap_put(self->objects, ref, o);
    }
    s_object_free_data(self, o);
    if (o->away)
        free(shoal__refmap_remove(self->away, o->ref));
    o->away = false;
    o->size = size;
    o->worker = holder;
    o->spilled = false;
    o->since_us = self->turn_us; //  an age in `shoal ls` needs no finer grain than a turn
    if (!data)
        return false;
    if (!(o->data = malloc(size ? size : 1)))
        abort();
    memcpy(o->data, data, size);
    self->inline_bytes += size;
    return true;
}

//  A task's log: an object too, inline when the tail it came with is all of it.
static void s_log_set(s_broker_t *self, s_task_t *t, const shoal_wire_result_t *r, s_worker_t *w)
{
    bool whole = r->log_tail.size == r->log_size;
    s_object_set(self, shoal_ref_output(t->id, SHOAL_REF_LOG_INDEX), r->log_size,
                 whole ? r->log_tail.data : NULL, whole ? NULL : w);
}

//  Fills st with what the broker knows of ref. Strings and bytes are borrowed from the
//  broker's state: valid until the state changes, so statuses are sent within the turn.
static void s_status_of(s_broker_t *self, shoal_ref_t ref, shoal_wire_status_t *st, bool with_data)
{
    memset(st, 0, sizeof *st);
    st->ref = ref;
    s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
    s_object_t *o = s_object(self, ref);
    uint16_t index = shoal_ref_index(ref);
    if (t && (index == SHOAL_REF_LOG_INDEX || index == SHOAL_REF_STDOUT_INDEX) &&
        s_is_final(t->state)) {
        if (!o) {
            st->state = SHOAL_STATE_UNKNOWN;
            st->code = SHOAL_ENOTFOUND;
            st->error = index == SHOAL_REF_LOG_INDEX
                            ? "the task left no log (it never started)"
                            : "the task left no stdout of a failed command";
            return;
        }
        t = NULL; //  a final task's log is an object like any other
    }
    if (t) {
        st->state = t->state;
        st->code = t->x ? t->x->code : 0;
        st->exit_code = t->x ? t->x->exit_code : 0;
        st->error = t->x ? t->x->error : NULL;
        if (t->state == SHOAL_STATE_DONE && !o) {
            st->state = SHOAL_STATE_UNKNOWN;
            st->code = SHOAL_ENOTFOUND;
            st->error = (index != SHOAL_REF_LOG_INDEX && index >= t->n_outputs)
                            ? "no such output: the task has fewer outputs"
                            : "removed";
        }
        if (t->state != SHOAL_STATE_DONE || !o)
            return;
    } else if (!o) {
        st->state = SHOAL_STATE_UNKNOWN;
        st->code = SHOAL_ENOTFOUND;
        st->error = "unknown ref: never submitted, or removed";
        return;
    }
    st->state = SHOAL_STATE_DONE;
    st->size = o->size;
    if (o->data) {
        st->flags = SHOAL_OUT_INLINE;
        if (with_data)
            st->data = (shoal_wire_bin_t){o->data, o->size};
    }
    if (o->worker) {
        st->endpoint = o->worker->endpoint;
        st->worker = o->worker->name;
    } else if (o->away) {
        //  No endpoint: the reader is told why, and may ask again once the worker is back.
        st->worker = shoal__refmap_get(self->away, ref);
        st->error = "persisted on a worker that is away: served again when it is back";
    }
}

/*  Owes peer a RUNNING status for ref of t, which is being written (or will be) on t's
    worker: a streaming reader asks that worker for the bytes (SHOAL_WATCH_ALLOCATED). size:
    the object's size when known, else 0. Strings borrowed from the worker, sent this turn. */
static void s_owe_where(s_broker_t *self, const shoal_wire_peer_t *peer, const s_task_t *t,
                        shoal_ref_t ref, uint64_t size)
{
    s_outbox_t *box = s_outbox_for(self, peer);
    shoal_wire_status_t st = {.ref = ref,
                              .state = SHOAL_STATE_RUNNING,
                              .size = size,
                              .endpoint = t->worker->endpoint,
                              .worker = t->worker->name};
    S_PUSH(box->items, box->count, box->cap, st);
}

//  Tells t's SHOAL_WATCH_ALLOCATED watchers of ref where it is being written.
static void s_notify_allocated(s_broker_t *self, s_task_t *t, shoal_ref_t ref, uint64_t size)
{
    if (!t->x || !t->worker)
        return;
    for (uint32_t i = 0; i < t->x->n_watchers; i++)
        if (t->x->watchers[i].allocated && shoal_ref_equal(t->x->watchers[i].ref, ref))
            s_owe_where(self, &t->x->watchers[i].peer, t, ref, size);
}

static void s_owe_status(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_ref_t ref)
{
    s_outbox_t *box = s_outbox_for(self, peer);
    shoal_wire_status_t st;
    s_status_of(self, ref, &st, true);
    S_PUSH(box->items, box->count, box->cap, st);
}

static void s_acks_ride(s_broker_t *self, const shoal_wire_peer_t *peer);

//  Sends the statuses owed, one message per client, split to stay below the size limit.
static void s_flush_outbox(s_broker_t *self)
{
    for (size_t i = 0; i < self->n_outbox; i++) {
        s_outbox_t *box = &self->outbox[i];
        size_t start = 0;
        while (start < box->count) {
            size_t end = start, bytes = 0;
            while (end < box->count && (end == start || bytes < SHOAL_MAX_MSG_SIZE / 2)) {
                const shoal_wire_status_t *st = &box->items[end++];
                bytes += 128 + st->data.size + (st->error ? strlen(st->error) : 0) +
                         (st->endpoint ? strlen(st->endpoint) : 0) +
                         (st->worker ? strlen(st->worker) : 0);
            }
            shoal_wire_statuses_t msg = {.items = {box->items + start, end - start}};
            int rc = shoal_wire_send(self->router, &box->peer, SHOAL_MSG_statuses, &msg, NULL, 0);
            if (rc == SHOAL_EAGAIN)
                shoal__warn("client pipe full: %zu statuses dropped (the client re-watches)",
                            end - start);
            start = end;
        }
        if (self->n_acks)
            s_acks_ride(self, &box->peer);
        free(box->items);
    }
    self->n_outbox = 0;
}

/*  --------------------------------------------------------------------------- tasks */

static uint64_t s_str_hash(const char *text)
{
    uint64_t h = 0xcbf29ce484222325ull; //  FNV-1a
    for (; *text; text++)
        h = (h ^ (uint8_t)*text) * 0x100000001b3ull;
    return h;
}

static const char *s_fn_intern(s_broker_t *self, const char *text)
{
    s_str_t **bucket = &self->fns[s_str_hash(text) % S_FN_BUCKETS];
    for (s_str_t *s = *bucket; s; s = s->next)
        if (strcmp(s->text, text) == 0) {
            s->users++;
            return s->text;
        }
    size_t len = strlen(text);
    s_str_t *s = malloc(sizeof *s + len + 1);
    if (!s)
        abort();
    memcpy(s->text, text, len + 1);
    s->users = 1;
    s->next = *bucket;
    *bucket = s;
    return s->text;
}

static void s_fn_release(s_broker_t *self, const char *text)
{
    if (!text)
        return;
    s_str_t **link = &self->fns[s_str_hash(text) % S_FN_BUCKETS];
    for (; *link; link = &(*link)->next)
        if ((*link)->text == text) {
            s_str_t *s = *link;
            if (--s->users == 0) {
                *link = s->next;
                free(s);
            }
            return;
        }
}

static s_task_t *s_task_alloc(s_broker_t *self)
{
    if (!self->free_tasks) {
        //  Slabs are mapped, not malloc'd: interleaved with the heap's short-lived decode
        //  buffers they would pin its freed pages (measured: +34 bytes per queued task).
        s_task_t *slab = mmap(NULL, S_SLAB_TASKS * sizeof *slab, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (slab == MAP_FAILED)
            abort();
        S_PUSH(self->slabs, self->n_slabs, self->cap_slabs, (void *)slab);
        for (size_t i = 0; i < S_SLAB_TASKS; i++) {
            slab[i].x = (s_task_x_t *)self->free_tasks;
            self->free_tasks = &slab[i];
        }
    }
    s_task_t *t = self->free_tasks;
    self->free_tasks = (s_task_t *)t->x;
    memset(t, 0, sizeof *t);
    return t;
}

//  The meta block of spec, or NULL when it has nothing beyond the common fields.
static s_meta_t *s_meta_new(const shoal_wire_task_t *spec)
{
    bool put = spec->kind == SHOAL_KIND_PUT;
    const char *name = spec->name && spec->name[0] ? spec->name : NULL;
    const char *worker = put && spec->worker && spec->worker[0] ? spec->worker : NULL;
    uint64_t stream = spec->kind != SHOAL_KIND_PUT ? spec->stream : 0;
    if (!put && !name && !spec->flags && !spec->ttl_ms && !spec->tags.count && !stream)
        return NULL;
    size_t n_tags = SHOAL__MIN(spec->tags.count, (size_t)UINT32_MAX);
    size_t bytes =
        sizeof(s_meta_t) + (name ? strlen(name) + 1 : 0) + (worker ? strlen(worker) + 1 : 0);
    for (size_t i = 0; i < n_tags; i++)
        bytes += strlen(spec->tags.items[i] ? spec->tags.items[i] : "") + 1;
    s_meta_t *m = calloc(1, bytes);
    if (!m)
        abort();
    char *p = (char *)(m + 1);
    if (name) {
        m->name = strcpy(p, name);
        p += strlen(name) + 1;
    }
    if (worker) {
        m->worker = strcpy(p, worker);
        p += strlen(worker) + 1;
    }
    m->tags = p;
    for (size_t i = 0; i < n_tags; i++) {
        const char *tag = spec->tags.items[i] ? spec->tags.items[i] : "";
        strcpy(p, tag);
        p += strlen(tag) + 1;
    }
    m->n_tags = (uint32_t)n_tags;
    m->flags = spec->flags;
    m->ttl_ms = spec->ttl_ms;
    m->stream = stream;
    m->size = put ? spec->size : 0;
    m->since_us = put ? shoal__now_us() : 0;
    return m;
}

//  A task from its wire form. Copies what it keeps; spec is the caller's.
static s_task_t *s_task_new(s_broker_t *self, const shoal_wire_task_t *spec)
{
    //  A put's bytes go to the directory, not here: it never runs.
    bool put = spec->kind == SHOAL_KIND_PUT;
    s_task_t *t = s_task_alloc(self);
    t->id = spec->id;
    t->kind = (uint8_t)spec->kind;
    t->fn = spec->fn && !put ? s_fn_intern(self, spec->fn) : NULL;
    t->array_index = spec->array_index;
    t->n_outputs = (uint16_t)spec->n_outputs; //  validated: 1..SHOAL_MAX_OUTPUTS
    t->retries = (uint16_t)SHOAL__MIN(spec->retries, (uint64_t)UINT16_MAX);
    t->priority =
        (int32_t)SHOAL__MAX(SHOAL__MIN(spec->priority, (int64_t)INT32_MAX), (int64_t)INT32_MIN);
    t->n_inputs = put ? 0 : (uint32_t)spec->inputs.count;
    t->arg_size = put ? 0 : (uint32_t)spec->arg.size;
    t->n_argv = put ? 0 : (uint16_t)spec->argv.count;
    size_t argv_bytes = 0;
    for (size_t i = 0; i < t->n_argv; i++)
        argv_bytes += strlen(spec->argv.items[i] ? spec->argv.items[i] : "") + 1;
    size_t var = (size_t)t->n_inputs * sizeof(shoal_ref_t) + t->arg_size + argv_bytes;
    if (var) {
        if (!(t->var = malloc(var)))
            abort();
        uint8_t *p = t->var;
        if (t->n_inputs)
            memcpy(p, spec->inputs.items, (size_t)t->n_inputs * sizeof(shoal_ref_t));
        p += (size_t)t->n_inputs * sizeof(shoal_ref_t);
        if (t->arg_size)
            memcpy(p, spec->arg.data, t->arg_size);
        p += t->arg_size;
        for (size_t i = 0; i < t->n_argv; i++) {
            const char *a = spec->argv.items[i] ? spec->argv.items[i] : "";
            size_t len = strlen(a) + 1;
            memcpy(p, a, len);
            p += len;
        }
    }
    s_meta_t *meta = s_meta_new(spec);
    if (meta)
        s_x(t)->meta = meta;
    return t;
}

//  Entries s_task_wire needs in its strings buffer.
static size_t s_task_strs(const s_task_t *t)
{
    const s_meta_t *m = s_meta(t);
    return (size_t)t->n_argv + (m ? m->n_tags : 0) + 1;
}

/*  The wire form of t, for dispatch: pointers into t, and argv and tags pointers in strs
    (s_task_strs(t) entries). Valid while t is unchanged. */
static void s_task_wire(const s_task_t *t, shoal_wire_task_t *w, char **strs)
{
    memset(w, 0, sizeof *w);
    w->id = t->id;
    w->kind = t->kind;
    w->fn = (char *)t->fn;
    w->n_outputs = t->n_outputs;
    w->retries = t->retries;
    w->priority = t->priority;
    w->array_index = t->array_index;
    w->job = (char *)s_job_name(t);
    w->inputs = (shoal_wire_refs_t){(shoal_ref_t *)s_inputs(t), t->n_inputs};
    char **argv_buf = strs;
    argv_buf[t->n_argv] = NULL;
    w->argv = (shoal_wire_strs_t){argv_buf, t->n_argv};
    const s_meta_t *m = s_meta(t);
    if (m) {
        w->name = (char *)m->name;
        w->flags = m->flags;
        w->ttl_ms = m->ttl_ms;
        w->stream = m->stream;
        char **tags = strs + t->n_argv + 1;
        const char *p = m->tags;
        for (uint32_t i = 0; i < m->n_tags; i++) {
            tags[i] = (char *)p;
            p += strlen(p) + 1;
        }
        w->tags = (shoal_wire_strs_t){tags, m->n_tags};
    }
    if (!t->var)
        return;
    const uint8_t *p = t->var + (size_t)t->n_inputs * sizeof(shoal_ref_t);
    w->arg = (shoal_wire_bin_t){p, t->arg_size};
    p += t->arg_size;
    for (uint16_t i = 0; i < t->n_argv; i++) {
        argv_buf[i] = (char *)p;
        p += strlen((const char *)p) + 1;
    }
}

static void s_task_free(s_broker_t *self, s_task_t *t)
{
    if (t->x) {
        free(t->x->consumers);
        free(t->x->watchers);
        free(t->x->error);
        free(t->x->meta);
        free(t->x);
    }
    free(t->var);
    s_fn_release(self, t->fn);
    t->x = NULL;
    t->var = NULL;
    t->fn = NULL;
    if (t->queued) {
        //  Its ready-queue entry still points here: recycle it when popped.
        t->doomed = true;
        t->state = SHOAL_STATE_UNKNOWN;
        return;
    }
    t->x = (s_task_x_t *)self->free_tasks;
    self->free_tasks = t;
}

//  Asks w to delete ref from its store, in the w_drop sent at the end of the turn.
static void s_queue_drop(s_worker_t *w, shoal_ref_t ref)
{
    S_PUSH(w->drops, w->n_drops, w->cap_drops, ref);
}

//  At most 65,536 refs (1 MiB) a w_drop: a release of a million objects stays far below the
//  worker's ZMQ_MAXMSGSIZE.
#define S_DROP_BATCH 65536

static void s_flush_drops(s_broker_t *self)
{
    for (size_t i = 0; i < self->n_workers; i++) {
        s_worker_t *w = self->workers[i];
        for (size_t start = 0; start < w->n_drops; start += S_DROP_BATCH) {
            size_t n = SHOAL__MIN(w->n_drops - start, (size_t)S_DROP_BATCH);
            shoal_wire_w_drop_t drop = {.refs = {w->drops + start, n}};
            //  A full pipe loses these: the objects stay in its store until the worker
            //  says hello again and the broker drops what nobody names (orphans).
            if (shoal_wire_send(self->router, &w->peer, SHOAL_MSG_w_drop, &drop, NULL, 0))
                shoal__warn("worker %s: %zu object deletion(s) not sent", w->name, n);
        }
        w->n_drops = 0;
        if (w->cap_drops > 4096) { //  a big release once does not pin memory for ever
            free(w->drops);
            w->drops = NULL;
            w->cap_drops = 0;
        }
    }
}

static void s_worker_free(s_worker_t *w)
{
    free(w->batch);
    free(w->drops);
    free(w->store_dir);
    free(w->arena);
    free(w);
}

static void s_worker_detach(s_task_t *t)
{
    s_worker_t *w = t->worker;
    if (!w || !t->linked)
        return;
    t->linked = false;
    w->outstanding--;
}

static void s_set_error(s_task_t *t, int64_t code, int64_t exit_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_set_error(s_task_t *t, int64_t code, int64_t exit_code, const char *fmt, ...)
{
    char text[S_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    s_task_x_t *x = s_x(t);
    free(x->error);
    x->error = s_strdup(text);
    x->code = code;
    x->exit_code = exit_code;
}

/*  ---------------------------------------------------------------------------- jobs */

//  A job name's key in job_names: FNV-1a and the length. Names whose keys collide share
//  a chain, so a collision costs a strcmp, never a wrong job.
static shoal_ref_t s_job_key(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++, len++)
        h = (h ^ *p) * 0x100000001b3ull;
    return (shoal_ref_t){h, len};
}

static s_job_t *s_job_find(s_broker_t *self, const char *name)
{
    for (s_job_t *j = shoal__refmap_get(self->job_names, s_job_key(name)); j; j = j->next)
        if (strcmp(j->name, name) == 0)
            return j;
    return NULL;
}

static s_job_t *s_job_get(s_broker_t *self, const char *name)
{
    s_job_t *j = s_job_find(self, name);
    if (j)
        return j;
    if (!(j = calloc(1, sizeof *j)))
        abort();
    j->name = s_strdup(name);
    j->created = ++self->jobs_created;
    shoal_ref_t key = s_job_key(name);
    j->next = shoal__refmap_get(self->job_names, key);
    if (shoal__refmap_put(self->job_names, key, j) != 0)
        abort();
    j->slot = self->n_jobs;
    S_PUSH(self->jobs, self->n_jobs, self->cap_jobs, j);
    return j;
}

static void s_job_free(s_broker_t *self, s_job_t *j)
{
    shoal_ref_t key = s_job_key(j->name);
    s_job_t *head = shoal__refmap_get(self->job_names, key);
    if (head == j) {
        if (j->next)
            shoal__refmap_put(self->job_names, key, j->next); //  replaces: never grows
        else
            shoal__refmap_remove(self->job_names, key);
    } else
        for (s_job_t *p = head; p; p = p->next)
            if (p->next == j) {
                p->next = j->next;
                break;
            }
    self->jobs[j->slot] = self->jobs[--self->n_jobs];
    self->jobs[j->slot]->slot = j->slot;
    free(j->tasks);
    free(j->name);
    free(j);
}

static int s_job_order(const void *a, const void *b)
{
    const s_task_t *x = *(s_task_t *const *)a, *y = *(s_task_t *const *)b;
    if (x->array_index != y->array_index)
        return x->array_index < y->array_index ? -1 : 1;
    return x->job_pos < y->job_pos ? -1 : x->job_pos > y->job_pos;
}

//  Squeezes out the holes and sorts each run of array tasks by index (ties, and tasks
//  outside arrays, keep submission order), then renumbers job_pos.
static void s_job_tidy(s_job_t *j)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < j->n_tasks; i++)
        if (j->tasks[i])
            j->tasks[n++] = j->tasks[i];
    j->n_tasks = n;
    if (j->unsorted) {
        for (uint32_t start = 0, end; start < n; start = end) {
            for (end = start; end < n && j->tasks[end]->array_index; end++)
                ;
            if (end - start > 1)
                qsort(j->tasks + start, end - start, sizeof *j->tasks, s_job_order);
            end += end == start;
        }
        j->unsorted = false;
    }
    for (uint32_t i = 0; i < n; i++)
        j->tasks[i]->job_pos = i;
    //  A job that shrank a lot gives the memory back.
    if (n && j->cap_tasks > 64 && n < j->cap_tasks / 4) {
        s_task_t **smaller = realloc(j->tasks, (size_t)n * 2 * sizeof *smaller);
        if (smaller) {
            j->tasks = smaller;
            j->cap_tasks = n * 2;
        }
    }
}

//  A new task joins the job its spec names (if any), counted in its current state.
static void s_job_join(s_broker_t *self, s_task_t *t, const char *name)
{
    if (!name || !name[0])
        return;
    s_job_t *j = s_job_get(self, name);
    uint64_t index = t->array_index;
    //  The last slot is never a hole (s_job_leave trims them).
    if (index && j->n_tasks && j->tasks[j->n_tasks - 1]->array_index > index)
        j->unsorted = true;
    if (j->n_tasks == UINT32_MAX)
        abort(); //  4 billion tasks in one job: the broker ran out of memory long before
    S_PUSH(j->tasks, j->n_tasks, j->cap_tasks, t);
    t->job = j;
    t->job_pos = j->n_tasks - 1;
    j->count[t->state]++;
    j->total++;
}

//  A forgotten task leaves its job; the last one to leave frees it.
static void s_job_leave(s_broker_t *self, s_task_t *t)
{
    s_job_t *j = t->job;
    if (!j)
        return;
    j->count[t->state]--;
    j->total--;
    j->tasks[t->job_pos] = NULL;
    t->job = NULL;
    while (j->n_tasks && !j->tasks[j->n_tasks - 1])
        j->n_tasks--;
    if (j->total == 0)
        s_job_free(self, j);
    else if (j->n_tasks - j->total > j->n_tasks / 2)
        s_job_tidy(j);
}

//  Every change of a task's state goes through here, so its job's counts stay exact.
static void s_set_state(s_task_t *t, uint8_t state)
{
    if (t->job) {
        t->job->count[t->state]--;
        t->job->count[state]++;
    }
    t->state = state;
}

static void s_make_ready(s_broker_t *self, s_task_t *t, bool front)
{
    s_set_state(t, t->missing ? SHOAL_STATE_WAITING : SHOAL_STATE_READY);
    if (t->state == SHOAL_STATE_READY && !t->queued)
        s_queue_push(&self->ready, t, front);
}

static void s_finish(s_broker_t *self, s_task_t *t, uint8_t state);

static inline uint64_t s_stream_mask(const s_task_t *t)
{
    const s_meta_t *m = s_meta(t);
    return m ? m->stream : 0;
}

//  Whether input i of t (made by p, not DONE) streams and is being written already: a
//  put RUNNING on its worker, or an output its running producer has allocated.
static bool s_streamable(const s_task_t *t, uint32_t i, const s_task_t *p)
{
    if (i >= SHOAL_STREAM_INPUTS_MAX || !(s_stream_mask(t) >> i & 1) ||
        p->state != SHOAL_STATE_RUNNING || !p->worker)
        return false;
    uint16_t index = shoal_ref_index(s_inputs(t)[i]);
    return s_is_put(p) || (index < 64 && p->x && (p->x->allocated >> index & 1));
}

/*  The worker t prefers: the one writing its first streaming input that is not done yet,
    or NULL (anywhere). There it reads that input in the arena as it lands, with no copy;
    anywhere else the worker pulls it from the writer's as it lands (SHOAL_IN_WRITING). */
static s_worker_t *s_stream_worker(s_broker_t *self, const s_task_t *t)
{
    if (!s_stream_mask(t))
        return NULL;
    for (uint32_t i = 0; i < t->n_inputs && i < SHOAL_STREAM_INPUTS_MAX; i++) {
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(s_inputs(t)[i]));
        if (p && p->state != SHOAL_STATE_DONE && s_streamable(t, i, p))
            return p->worker;
    }
    return NULL;
}

/*  Whether the consumers of p wait for it: p is not DONE, or one of its outputs is persisted
    on a worker that is away. It holds for every input taken from p alike, so a task reading
    P.0 (inline) and P.1 (away) counts P twice, as s_consumers_update does: a consumer is
    listed once per input it takes from p, and the worker's hello counts each of them back
    down. Counting only the away inputs made the hello take one too many, and the task ran
    before its other inputs existed. */
static bool s_producer_waits(s_broker_t *self, const s_task_t *p)
{
    if (p->state != SHOAL_STATE_DONE)
        return true;
    if (!shoal__refmap_size(self->away))
        return false; //  the common case: no worker away, one compare per input
    for (uint16_t i = 0; i < p->n_outputs; i++) {
        const s_object_t *o = shoal__refmap_get(self->objects, shoal_ref_output(p->id, i));
        if (o && o->away)
            return true;
    }
    return false;
}

/*  Inputs of t whose producer is known and waited for (s_producer_waits), streaming inputs
    being written (s_streamable) aside: they are read as they land, wherever t runs (on the
    writer's worker in its arena, elsewhere pulled from it). */
static uint32_t s_count_missing(s_broker_t *self, s_task_t *t)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_inputs; i++) {
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(s_inputs(t)[i]));
        if (p && s_producer_waits(self, p) && !s_streamable(t, i, p))
            n++;
    }
    return n;
}

/*  A consumer that streams inputs counts what it misses again (a producer's output may be
    streamable already, so counting down per producer would count it twice). */
static void s_recount(s_broker_t *self, s_task_t *c)
{
    c->missing = s_count_missing(self, c);
    if (!c->missing && c->state == SHOAL_STATE_WAITING)
        s_make_ready(self, c, false);
    else if (c->missing && c->state == SHOAL_STATE_READY)
        s_set_state(c, SHOAL_STATE_WAITING); //  its queue entry is skipped lazily
}

//  One of p's outputs became streamable: its streaming consumers may start.
static void s_consumers_stream(s_broker_t *self, s_task_t *p)
{
    for (uint32_t i = 0; i < s_n_consumers(p); i++) {
        s_task_t *c = s_consumer(self->tasks, p, i);
        if (c && !s_is_final(c->state) && s_stream_mask(c))
            s_recount(self, c);
    }
}

//  A producer's outputs became available (up) or unavailable (down).
static void s_consumers_update(s_broker_t *self, s_task_t *p, bool up)
{
    for (uint32_t i = 0; i < s_n_consumers(p); i++) {
        s_task_t *c = s_consumer(self->tasks, p, i);
        if (!c || s_is_final(c->state))
            continue;
        if (s_stream_mask(c)) {
            s_recount(self, c);
            continue;
        }
        if (up) {
            if (c->missing && --c->missing == 0 && c->state == SHOAL_STATE_WAITING)
                s_make_ready(self, c, false);
        } else {
            c->missing++;
            if (c->state == SHOAL_STATE_READY)
                s_set_state(c, SHOAL_STATE_WAITING); //  its queue entry is skipped lazily
        }
    }
}

static void s_finish_one(s_broker_t *self, s_task_t *t, uint8_t state);

/*  Sets the error of c, whose input ref was made by p, which failed or was canceled;
    returns the state c ends in. A failed task's code was its own (SHOAL_ETASK for c); a
    put's says what became of the object, and c carries it on: aborted by its writer
    (SHOAL_ECANCELED), c is canceled, as the dependents of a canceled task are; lost
    with its worker (SHOAL_ELOST) or refused, c fails. */
static uint8_t s_input_failed(s_task_t *c, const s_task_t *p, shoal_ref_t ref)
{
    char text[SHOAL_REF_TEXT_SIZE];
    s_ref_text(ref, text);
    if (p->state == SHOAL_STATE_CANCELED) {
        s_set_error(c, SHOAL_ECANCELED, 0, "input %s was canceled", text);
        return SHOAL_STATE_CANCELED;
    }
    const char *first = s_error(p) ? s_error(p) : "";
    int len = (int)strcspn(first, "\n");
    int64_t code = s_is_put(p) && p->x && p->x->code ? p->x->code : SHOAL_ETASK;
    s_set_error(c, code, 0, "input %s failed: %.*s", text, len, first);
    return code == SHOAL_ECANCELED ? SHOAL_STATE_CANCELED : SHOAL_STATE_FAILED;
}

//  Fails (or cancels) every task downstream of p not yet final, each naming the input
//  that failed. With a worklist, not recursion: a chain of 25,000 tasks overflowed the
//  stack.
static void s_propagate_failure(s_broker_t *self, s_task_t *p0)
{
    s_task_t **work = NULL;
    size_t n = 0, cap = 0;
    S_PUSH(work, n, cap, p0);
    while (n) {
        s_task_t *p = work[--n];
        for (uint32_t i = 0; i < s_n_consumers(p); i++) {
            s_task_t *c = s_consumer(self->tasks, p, i);
            if (!c || s_is_final(c->state))
                continue;
            //  Name the exact input ref the consumer reads from p.
            shoal_ref_t input = p->id;
            for (uint32_t k = 0; k < c->n_inputs; k++)
                if (shoal_ref_equal(shoal_ref_task(s_inputs(c)[k]), p->id)) {
                    input = s_inputs(c)[k];
                    break;
                }
            s_finish_one(self, c, s_input_failed(c, p, input));
            S_PUSH(work, n, cap, c);
        }
    }
    free(work);
}

static void s_notify_watchers(s_broker_t *self, s_task_t *t)
{
    if (!t->x)
        return;
    for (uint32_t i = 0; i < t->x->n_watchers; i++)
        s_owe_status(self, &t->x->watchers[i].peer, t->x->watchers[i].ref);
    t->x->n_watchers = 0;
}

/*  ---------------------------------------------------------------------- deadlines */

static void s_heap_swap(s_due_t *a, s_due_t *b)
{
    s_due_t t = *a;
    *a = *b;
    *b = t;
}

static void s_heap_down(s_heap_t *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        if (l < h->n && h->items[l].deadline_us < h->items[min].deadline_us)
            min = l;
        if (r < h->n && h->items[r].deadline_us < h->items[min].deadline_us)
            min = r;
        if (min == i)
            return;
        s_heap_swap(&h->items[i], &h->items[min]);
        i = min;
    }
}

//  Adds an armed entry.
static void s_heap_push(s_heap_t *h, s_due_t e)
{
    S_PUSH(h->items, h->n, h->cap, e);
    h->live++;
    for (size_t i = h->n - 1; i > 0;) {
        size_t up = (i - 1) / 2;
        if (h->items[up].deadline_us <= h->items[i].deadline_us)
            break;
        s_heap_swap(&h->items[i], &h->items[up]);
        i = up;
    }
}

//  Gives memory back once the heap is a quarter full (a burst of deadlines that passed).
static void s_heap_shrink(s_heap_t *h)
{
    if (h->cap > 1024 && h->n < h->cap / 4) {
        s_due_t *smaller = realloc(h->items, h->cap / 2 * sizeof *smaller);
        if (smaller) {
            h->items = smaller;
            h->cap /= 2;
        }
    }
}

//  Takes the earliest entry out; the caller says whether it was armed (s_heap_disarmed).
static s_due_t s_heap_pop(s_heap_t *h)
{
    s_due_t top = h->items[0];
    h->items[0] = h->items[--h->n];
    s_heap_down(h, 0);
    s_heap_shrink(h);
    return top;
}

typedef bool(s_due_armed_fn)(s_broker_t *self, const s_due_t *e);

//  Keeps only the armed entries (armed says which), then restores the heap order from the
//  bottom up (Floyd: O(n)).
static void s_heap_rebuild(s_broker_t *self, s_heap_t *h, s_due_armed_fn *armed)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        if (armed(self, &h->items[i]))
            h->items[n++] = h->items[i];
    h->n = h->live = n;
    for (size_t i = n / 2; i-- > 0;)
        s_heap_down(h, i);
    while (h->cap > 1024 && h->n < h->cap / 4)
        s_heap_shrink(h);
}

//  An entry of h is no longer armed (its task moved on, or it was popped).
static void s_heap_disarmed(s_broker_t *self, s_heap_t *h, s_due_armed_fn *armed)
{
    if (h->live)
        h->live--;
    if (h->n - h->live > h->live + S_HEAP_SLACK)
        s_heap_rebuild(self, h, armed);
}

//  Saturated: a deadline of centuries is "never", not an overflow.
static int64_t s_deadline(int64_t now_us, uint64_t ms)
{
    return ms > (uint64_t)(INT64_MAX - now_us) / 1000 ? INT64_MAX : now_us + (int64_t)ms * 1000;
}

//  Whether the ttl entry e is armed: its task is DONE with that deadline.
static bool s_ttl_armed(s_broker_t *self, const s_due_t *e)
{
    s_task_t *t = shoal__refmap_get(self->tasks, e->id);
    s_meta_t *m = t ? s_meta(t) : NULL;
    return m && m->expires_us == e->deadline_us && t->state == SHOAL_STATE_DONE;
}

//  t leaves DONE, or is forgotten: its ttl entry, if any, is stale from now on.
static void s_ttl_disarm(s_broker_t *self, s_task_t *t)
{
    s_meta_t *m = s_meta(t);
    if (!m || !m->expires_us)
        return;
    m->expires_us = 0;
    s_heap_disarmed(self, &self->ttl, s_ttl_armed);
}

//  A task with a ttl became DONE: it is removed ttl_ms from now.
static void s_ttl_arm(s_broker_t *self, s_task_t *t)
{
    s_meta_t *m = s_meta(t);
    if (!m || !m->ttl_ms)
        return;
    s_ttl_disarm(self, t); //  one entry a task
    m->expires_us = s_deadline(shoal__now_us(), m->ttl_ms);
    s_heap_push(&self->ttl, (s_due_t){m->expires_us, t->id});
}

//  Whether the put_due entry e is armed: a put RUNNING with that deadline.
static bool s_put_due_armed(s_broker_t *self, const s_due_t *e)
{
    s_task_t *t = shoal__refmap_get(self->tasks, e->id);
    s_meta_t *m = t ? s_meta(t) : NULL;
    return m && m->put_due_us == e->deadline_us && t->state == SHOAL_STATE_RUNNING;
}

//  Its worker reported the put (a note, or w_hello's writing), or it ended: no deadline.
static void s_put_due_disarm(s_broker_t *self, s_task_t *t)
{
    s_meta_t *m = s_meta(t);
    if (!m || !m->put_due_us)
        return;
    m->put_due_us = 0;
    s_heap_disarmed(self, &self->put_due, s_put_due_armed);
}

//  The put RUNNING t ends at deadline_us unless its worker reports it first.
static void s_put_due_arm(s_broker_t *self, s_task_t *t, int64_t deadline_us)
{
    s_meta_t *m = s_meta(t);
    if (!m) //  cannot happen: every put has one (s_meta_new)
        return;
    s_put_due_disarm(self, t);
    m->put_due_us = deadline_us;
    s_heap_push(&self->put_due, (s_due_t){deadline_us, t->id});
}

//  Whether t's worker has reported t, a put RUNNING (it has no deadline then).
static bool s_put_reported(const s_task_t *t)
{
    const s_meta_t *m = s_meta(t);
    return !m || !m->put_due_us;
}

//  Records a final task's outcome: the statuses of its outputs and log.
static void s_journal_outcome(s_broker_t *self, s_task_t *t)
{
    size_t n = (size_t)t->n_outputs + 2;
    shoal_wire_status_t *items = calloc(n, sizeof *items);
    if (!items)
        return;
    for (size_t i = 0; i + 1 < n; i++)
        s_status_of(self, shoal_ref_output(t->id, (uint16_t)i), &items[i], true);
    s_status_of(self, shoal_ref_output(t->id, SHOAL_REF_LOG_INDEX), &items[n - 2], true);
    s_status_of(self, shoal_ref_output(t->id, SHOAL_REF_STDOUT_INDEX), &items[n - 1], true);
    shoal__journal_final(self->journal, t->id, items, n);
    free(items);
}

//  The task reaches a final state.
//  A task reaches a final state, without touching what depends on it (s_finish does).
static void s_finish_one(s_broker_t *self, s_task_t *t, uint8_t state)
{
    if (t->state == SHOAL_STATE_RUNNING && s_is_put(t)) {
        if (t->worker)
            t->worker->n_puts--; //  never linked: a put takes no credit
        s_put_due_disarm(self, t);
    } else if (t->state == SHOAL_STATE_RUNNING) {
        //  Failed from upstream while running (during lineage): stop it on its worker.
        if (state != SHOAL_STATE_DONE && t->worker && t->linked) {
            shoal_wire_attempt_ref_t a = {.id = t->id, .attempt = t->attempt};
            shoal_wire_w_cancel_t msg = {.tasks = {&a, 1}};
            shoal_wire_send(self->router, &t->worker->peer, SHOAL_MSG_w_cancel, &msg, NULL, 0);
        }
        s_worker_detach(t);
    }
    s_set_state(t, state);
    if (self->journal)
        s_journal_outcome(self, t);
    if (state == SHOAL_STATE_DONE) {
        self->n_done++;
        s_event_task(self, "task.finished", t);
        s_consumers_update(self, t, true);
        s_ttl_arm(self, t);
    } else {
        self->n_failed++;
        t->worker = NULL;
        s_event_task(self, "task.failed", t);
    }
    s_notify_watchers(self, t);
}

static void s_finish(s_broker_t *self, s_task_t *t, uint8_t state)
{
    s_finish_one(self, t, state);
    if (state != SHOAL_STATE_DONE)
        s_propagate_failure(self, t);
}

//  Checks the tags of task (or put) id: at most SHOAL_TAGS_MAX, each 1..SHOAL_TAG_MAX bytes.
//  Returns 0 or SHOAL_EINVAL with err naming the bad tag.
static int s_check_tags(const shoal_wire_strs_t *tags, const char *id, char *err, size_t errlen)
{
    if (tags->count > SHOAL_TAGS_MAX) {
        snprintf(err, errlen, "%s: at most %d tags, got %zu", id, SHOAL_TAGS_MAX, tags->count);
        return SHOAL_EINVAL;
    }
    for (size_t i = 0; i < tags->count; i++) {
        const char *tag = tags->items[i];
        size_t len = tag ? strlen(tag) : 0;
        if (len == 0) {
            snprintf(err, errlen, "%s: tag %zu is empty", id, i);
            return SHOAL_EINVAL;
        }
        if (len > SHOAL_TAG_MAX) {
            snprintf(err, errlen, "%s: tag '%.*s%s' has %zu bytes, at most %d", id, 80, tag,
                     len > 80 ? "..." : "", len, SHOAL_TAG_MAX);
            return SHOAL_EINVAL;
        }
    }
    return 0;
}

//  Whether name is 32 hex digits (either case): a name a ref could be mistaken for.
static bool s_looks_like_ref(const char *name)
{
    shoal_ref_t ref;
    return name && shoal_ref_parse(name, &ref) == 0;
}

//  Validates one submitted task; returns 0 or fills err.
static int s_validate(s_broker_t *self, const shoal_wire_task_t *spec, char *err, size_t errlen)
{
    char id[SHOAL_REF_TEXT_SIZE];
    s_ref_text(spec->id, id);
    if (shoal_ref_index(spec->id) != 0 || shoal_ref_is_null(spec->id)) {
        snprintf(err, errlen, "task %s: a task id must be a ref with output index 0", id);
        return SHOAL_EINVAL;
    }
    if (spec->kind == SHOAL_KIND_EXEC) {
        if (spec->argv.count == 0 || !spec->argv.items[0] || !spec->argv.items[0][0]) {
            snprintf(err, errlen, "task %s: an exec task needs a command", id);
            return SHOAL_EINVAL;
        }
        //  An exec task streams one input at most: its stdin (--stdin-input).
        if (spec->stream & (spec->stream - 1) || (spec->inputs.count < SHOAL_STREAM_INPUTS_MAX &&
                                                  (spec->stream >> spec->inputs.count))) {
            snprintf(err, errlen,
                     "task %s: an exec task streams one of its inputs at most (its stdin)", id);
            return SHOAL_EINVAL;
        }
    } else if (spec->kind == SHOAL_KIND_FN) {
        if (!spec->fn || !strchr(spec->fn, ':')) {
            snprintf(err, errlen, "task %s: a fn task needs LIB.so:SYMBOL, got '%s'", id,
                     spec->fn ? spec->fn : "");
            return SHOAL_EINVAL;
        }
        if (spec->inputs.count < SHOAL_STREAM_INPUTS_MAX && (spec->stream >> spec->inputs.count)) {
            snprintf(err, errlen, "task %s: stream names inputs it does not have (%zu inputs)", id,
                     spec->inputs.count);
            return SHOAL_EINVAL;
        }
    } else if (spec->kind == SHOAL_KIND_PUT) {
        if (spec->inputs.count || spec->n_outputs != 1) {
            snprintf(err, errlen, "put %s: a put has no inputs and one output, got %zu and %llu",
                     id, spec->inputs.count, (unsigned long long)spec->n_outputs);
            return SHOAL_EINVAL;
        }
        if ((spec->flags & SHOAL_OUT_INLINE) && spec->arg.size > SHOAL_INLINE_MAX) {
            snprintf(err, errlen,
                     "put %s: an inline put holds at most %d bytes, got %zu; put it in a "
                     "worker's store",
                     id, SHOAL_INLINE_MAX, spec->arg.size);
            return SHOAL_EINVAL;
        }
        if (!(spec->flags & SHOAL_OUT_INLINE) && (!spec->worker || !spec->worker[0])) {
            snprintf(err, errlen,
                     "put %s: a put that is not inline names the worker whose store holds it", id);
            return SHOAL_EINVAL;
        }
        if (!(spec->flags & SHOAL_OUT_INLINE) && spec->arg.size) {
            snprintf(err, errlen,
                     "put %s: a store put carries no bytes in its task (got %zu): they are in "
                     "the store of worker %s",
                     id, spec->arg.size, spec->worker);
            return SHOAL_EINVAL;
        }
    } else {
        snprintf(err, errlen, "task %s: unknown task kind %llu", id,
                 (unsigned long long)spec->kind);
        return SHOAL_EINVAL;
    }
    for (size_t i = 0; i < spec->inputs.count; i++)
        if (shoal_ref_equal(shoal_ref_task(spec->inputs.items[i]), spec->id)) {
            snprintf(err, errlen, "task %s: input %zu is an output of the task itself", id, i);
            return SHOAL_EINVAL;
        }
    if (spec->job && strlen(spec->job) > SHOAL_JOB_NAME_MAX) {
        snprintf(err, errlen, "task %s: a job name has at most %d bytes, got %zu", id,
                 SHOAL_JOB_NAME_MAX, strlen(spec->job));
        return SHOAL_EINVAL;
    }
    if (spec->name && strlen(spec->name) > SHOAL_NAME_MAX) {
        //  Listings carry names: a name of megabytes would crowd every other object out.
        snprintf(err, errlen, "%s %s: a name has at most %d bytes, got %zu",
                 spec->kind == SHOAL_KIND_PUT ? "put" : "task", id, SHOAL_NAME_MAX,
                 strlen(spec->name));
        return SHOAL_EINVAL;
    }
    if (s_looks_like_ref(spec->name)) {
        snprintf(err, errlen,
                 "%s %s: the name '%s' looks like a ref (32 hex digits): `shoal get NAME` could "
                 "not tell them apart; choose another name",
                 spec->kind == SHOAL_KIND_PUT ? "put" : "task", id, spec->name);
        return SHOAL_EINVAL;
    }
    if (spec->n_outputs < 1 || spec->n_outputs > SHOAL_MAX_OUTPUTS) {
        snprintf(err, errlen, "task %s: outputs must be 1..%d, got %llu", id, SHOAL_MAX_OUTPUTS,
                 (unsigned long long)spec->n_outputs);
        return SHOAL_EINVAL;
    }
    if (spec->tags.count) { //  the label only when needed: this runs for every task
        char what[8 + SHOAL_REF_TEXT_SIZE];
        snprintf(what, sizeof what, "%s %s", spec->kind == SHOAL_KIND_PUT ? "put" : "task", id);
        int rc = s_check_tags(&spec->tags, what, err, errlen);
        if (rc)
            return rc;
    }
    (void)self;
    return 0;
}

//  Registers t and links it to its inputs' producers. Inputs that the broker does not know
//  fail the task at once.
static void s_add_task(s_broker_t *self, s_task_t *t)
{
    shoal__refmap_put(self->tasks, t->id, t);
    self->n_submitted++;
    s_event_task(self, "task.submitted", t);
    //  Streaming inputs being written count as there (s_count_missing).
    for (uint32_t i = 0; i < t->n_inputs; i++) {
        shoal_ref_t ref = s_inputs(t)[i];
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
        char text[SHOAL_REF_TEXT_SIZE];
        if (p && shoal_ref_index(ref) >= p->n_outputs) {
            s_set_error(t, SHOAL_ENOTFOUND, 0, "input %s: its task has only %llu outputs",
                        s_ref_text(ref, text), (unsigned long long)p->n_outputs);
            s_finish(self, t, SHOAL_STATE_FAILED);
            return;
        }
        if (!p && !s_object(self, ref)) {
            s_set_error(t, SHOAL_ENOTFOUND, 0, "input %s not found: never submitted, or removed",
                        s_ref_text(ref, text));
            s_finish(self, t, SHOAL_STATE_FAILED);
            return;
        }
        if (!p)
            continue; //  a stored object with no task: available
        if (p->state == SHOAL_STATE_FAILED || p->state == SHOAL_STATE_CANCELED) {
            s_finish(self, t, s_input_failed(t, p, ref));
            return;
        }
        s_task_x_t *px = s_x(p);
        S_PUSH(px->consumers, px->n_consumers, px->cap_consumers, t->id);
        if (s_producer_waits(self, p) && !s_streamable(t, i, p))
            t->missing++;
    }
    s_make_ready(self, t, false);
}

/*  Lineage: a DONE task whose outputs are gone runs again; its consumers not yet final
    count it missing until it is done again. */
static void s_undo_done(s_broker_t *self, s_task_t *p)
{
    //  Consumers that wait for an output of p away count it missing already.
    bool counted = s_producer_waits(self, p);
    s_ttl_disarm(self, p); //  a new completion counts its ttl anew
    s_set_state(p, SHOAL_STATE_WAITING);
    p->worker = NULL;
    if (!counted)
        s_consumers_update(self, p, false);
    self->n_done--;
}

static void s_rerun(s_broker_t *self, s_task_t *p)
{
    s_undo_done(self, p);
    p->missing = s_count_missing(self, p);
    s_make_ready(self, p, true);
}

/*  ------------------------------------------------------------------------- workers */

static s_worker_t *s_worker_by_peer(s_broker_t *self, const shoal_wire_peer_t *peer)
{
    for (size_t i = 0; i < self->n_workers; i++)
        if (shoal_wire_peer_equal(&self->workers[i]->peer, peer))
            return self->workers[i];
    return NULL;
}

static s_worker_t *s_worker_by_name(s_broker_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_workers; i++)
        if (strcmp(self->workers[i]->name, name) == 0)
            return self->workers[i];
    return NULL;
}

/*  ---------------------------------------------------------------------------- puts */

/*  A tombstone for the forgotten or aborted put ref, kept for the put lease: a note about
    it may still be on its way and must not bring it back. */
static void s_gone_add(s_broker_t *self, shoal_ref_t ref)
{
    //  From the turn's clock: the tombstones of one turn (a release of many puts) go together.
    int64_t until = self->turn_us / 1000 + self->put_lease_ms;
    if (shoal__refmap_put(self->gone, ref, (void *)(uintptr_t)until))
        abort(); //  out of memory in the broker: nothing sane to do
    if (self->gone_count == self->gone_cap) {
        size_t ncap = self->gone_cap ? self->gone_cap * 2 : 64; //  a power of two
        s_gone_t *ring = malloc(ncap * sizeof *ring);
        if (!ring)
            abort();
        for (size_t i = 0; i < self->gone_count; i++)
            ring[i] = self->gone_ring[(self->gone_head + i) & (self->gone_cap - 1)];
        free(self->gone_ring);
        self->gone_ring = ring;
        self->gone_cap = ncap;
        self->gone_head = 0;
    }
    self->gone_ring[(self->gone_head + self->gone_count++) & (self->gone_cap - 1)] =
        (s_gone_t){ref, until};
}

//  Forgets the tombstones whose time is up, from the head of the ring: O(1) each.
static void s_gone_expire(s_broker_t *self)
{
    int64_t now = shoal__now_ms();
    while (self->gone_count && self->gone_ring[self->gone_head].until_ms <= now) {
        s_gone_t g = self->gone_ring[self->gone_head];
        self->gone_head = (self->gone_head + 1) & (self->gone_cap - 1);
        self->gone_count--;
        //  Tombstoned again since, the map holds the later time: the later entry removes it.
        if ((int64_t)(uintptr_t)shoal__refmap_get(self->gone, g.ref) == g.until_ms)
            shoal__refmap_remove(self->gone, g.ref);
    }
    if (!self->gone_count && self->gone_cap > 4096) { //  a burst once does not pin memory
        free(self->gone_ring);
        self->gone_ring = NULL;
        self->gone_cap = self->gone_head = 0;
    }
}

/*  The put is being written into w's store: RUNNING there until w's note says how it ended.
    A put RUNNING on an earlier entry of the same worker name (one that said hello again)
    moves. */
static void s_put_start(s_task_t *t, s_worker_t *w)
{
    if (t->state == SHOAL_STATE_RUNNING && t->worker)
        t->worker->n_puts--;
    s_set_state(t, SHOAL_STATE_RUNNING);
    t->worker = w;
    w->n_puts++;
}

//  w sealed the put: DONE, its object held by w.
static void s_put_sealed(s_broker_t *self, s_task_t *t, s_worker_t *w, uint64_t size)
{
    s_object_set(self, t->id, size, NULL, w);
    t->all_inline = false;
    t->worker = w;
    s_event_object(self, "object.sealed", t->id, w, size, NULL);
    s_finish(self, t, SHOAL_STATE_DONE);
}

//  The put's bytes went with their worker (why: w's name and reason): it fails, and so do
//  its consumers. A put is never run again: nobody but its client has its bytes.
static void s_put_lost(s_broker_t *self, s_task_t *t, const char *why)
{
    char text[SHOAL_REF_TEXT_SIZE];
    if (t->state == SHOAL_STATE_DONE) {
        self->n_done--;
        s_ttl_disarm(self, t);
    }
    s_set_error(t, SHOAL_ELOST, 0, "object %s was lost %s", s_ref_text(t->id, text), why);
    s_finish(self, t, SHOAL_STATE_FAILED);
}

//  Registers a put (its journal entry is the caller's): an inline one is DONE at once, within
//  the inline budget; another is RUNNING on the worker it names, if that one is connected.
static void s_add_put(s_broker_t *self, s_task_t *t, const shoal_wire_task_t *spec)
{
    shoal__refmap_put(self->tasks, t->id, t);
    self->n_submitted++;
    s_event_task(self, "task.submitted", t);
    char text[SHOAL_REF_TEXT_SIZE];
    s_ref_text(t->id, text);
    if (spec->flags & SHOAL_OUT_INLINE) {
        if (self->inline_bytes + spec->arg.size > self->cfg.inline_budget) {
            char held[32], budget[32];
            s_set_error(t, SHOAL_EFULL, 0,
                        "put %s (%zu bytes): the broker holds %s of small objects and its "
                        "--inline-budget is %s; put it in a worker's store (SHOAL_PUT_STORE / "
                        "shoal put --store) or raise --inline-budget",
                        text, spec->arg.size, s_size_text(self->inline_bytes, held, sizeof held),
                        s_size_text(self->cfg.inline_budget, budget, sizeof budget));
            s_finish(self, t, SHOAL_STATE_FAILED);
            return;
        }
        s_object_set(self, t->id, spec->arg.size, spec->arg.data ? spec->arg.data : (void *)"",
                     NULL);
        t->all_inline = true;
        s_finish(self, t, SHOAL_STATE_DONE);
        return;
    }
    if (shoal__refmap_get(self->gone, t->id)) {
        //  Its worker gave it up (or it was dropped) before this task arrived.
        s_set_error(t, SHOAL_ECANCELED, 0,
                    "put %s was aborted on worker %s before the broker heard of it", text,
                    spec->worker);
        s_finish(self, t, SHOAL_STATE_CANCELED);
        return;
    }
    s_worker_t *w = s_worker_by_name(self, spec->worker);
    if (!w) {
        s_set_error(t, SHOAL_EUNREACH, 0,
                    "put %s: no worker named '%s' is connected to the broker (its store was to "
                    "hold the object)",
                    text, spec->worker);
        s_finish(self, t, SHOAL_STATE_FAILED);
        return;
    }
    s_put_start(t, w);
    //  Its worker reports it at once (it allocated it before the client sent this); one that
    //  does not have it says ABORTED, but if that note came and went with its tombstone,
    //  or was lost, nobody would ever end this put: the deadline does.
    s_put_due_arm(self, t, s_deadline(shoal__now_us(), 2 * (uint64_t)self->put_lease_ms));
}

//  The put's worker aborted it, or no longer has it (why): CANCELED, as its consumers.
static void s_put_canceled(s_broker_t *self, s_task_t *t, const char *why)
{
    char text[SHOAL_REF_TEXT_SIZE];
    s_set_error(t, SHOAL_ECANCELED, 0, "put %s was %s", s_ref_text(t->id, text), why);
    s_finish(self, t, SHOAL_STATE_CANCELED);
}

/*  One note of w about an object in its store. Returns false for a note that makes no
    sense (counted as malformed, ignored). A put the broker does not know yet (the client's
    PUT task comes over another socket, maybe later) is made from the note: its spec goes
    to *fresh for the journal (strings borrowed from the note and from w). */
static bool s_on_note(s_broker_t *self, s_worker_t *w, const shoal_wire_object_note_t *n,
                      shoal_wire_task_t **fresh, size_t *n_fresh, size_t *cap_fresh)
{
    shoal_ref_t ref = n->ref;
    uint16_t index = shoal_ref_index(ref);
    if (n->state == SHOAL_OBJ_NOTE_SPILLED || n->state == SHOAL_OBJ_NOTE_RESTORED) {
        //  Where its bytes are within the holder: for ls and events only. A note about an
        //  object the broker no longer lists at w (removed, or moved on) is stale: ignored.
        s_object_t *o = s_object(self, ref);
        if (o && o->worker == w) {
            o->spilled = n->state == SHOAL_OBJ_NOTE_SPILLED;
            s_event_object(self, o->spilled ? "object.spilled" : "object.restored", ref, w, o->size,
                           NULL);
        }
        return true;
    }
    if (n->state < SHOAL_OBJ_NOTE_ALLOCATED || n->state > SHOAL_OBJ_NOTE_ABORTED ||
        shoal_ref_is_null(shoal_ref_task(ref)))
        return false;
    s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
    char text[SHOAL_REF_TEXT_SIZE];
    s_ref_text(ref, text);
    if (!t && !n->put) {
        //  A task's output the broker forgot (canceled and released, or a restart without
        //  a journal): only a client's put may stand in for a task. The worker owns what a
        //  running task allocates, and its result is fenced (s_on_result drops the outputs).
        return true;
    }
    if (!t) {
        if (index != 0)
            return false;
        if (n->state == SHOAL_OBJ_NOTE_ABORTED) {
            //  Given up before the client's PUT task came: when it comes, it is canceled.
            s_gone_add(self, ref);
            return true;
        }
        if (shoal__refmap_get(self->gone, ref)) {
            s_queue_drop(w, ref); //  released or removed before this note came: its bytes go too
            return true;
        }
        char err[256];
        if (s_check_tags(&n->tags, text, err, sizeof err)) {
            shoal__debug("worker %s: note for %s: %s", w->name, text, err);
            return false;
        }
        if (s_looks_like_ref(n->name) || (n->name && strlen(n->name) > SHOAL_NAME_MAX)) {
            //  Its PUT task will be refused (s_validate): nobody will name these bytes.
            shoal__debug("worker %s: note for %s: its name looks like a ref or is longer than "
                         "%d bytes",
                         w->name, text, SHOAL_NAME_MAX);
            s_queue_drop(w, ref);
            return false;
        }
        shoal_wire_task_t spec = {.id = ref,
                                  .kind = SHOAL_KIND_PUT,
                                  .n_outputs = 1,
                                  .name = n->name,
                                  .tags = n->tags,
                                  .ttl_ms = n->ttl_ms,
                                  .worker = w->name,
                                  .size = n->size,
                                  .flags = n->flags & SHOAL_TASK_PERSIST};
        S_PUSH(*fresh, *n_fresh, *cap_fresh, spec);
        t = s_task_new(self, &spec);
        shoal__refmap_put(self->tasks, t->id, t);
        self->n_submitted++;
        s_event_task(self, "task.submitted", t);
        s_put_start(t, w);
        if (n->state == SHOAL_OBJ_NOTE_SEALED)
            s_put_sealed(self, t, w, n->size);
        else
            s_event_object(self, "object.allocated", ref, w, n->size, NULL);
        return true;
    }
    if (!s_is_put(t)) {
        //  A task's output (or log) that its executor allocated: news for subscribers only.
        bool output = index < t->n_outputs || index == SHOAL_REF_LOG_INDEX;
        if (n->state != SHOAL_OBJ_NOTE_ALLOCATED || !output || t->state != SHOAL_STATE_RUNNING ||
            t->worker != w)
            return false;
        s_event_object(self, "object.allocated", ref, w, n->size, NULL);
        s_notify_allocated(self, t, ref, n->size);
        if (index < 64) {
            s_x(t)->allocated |= 1ull << index;
            s_consumers_stream(self, t);
        }
        return true;
    }
    if (index != 0)
        return false;
    const s_meta_t *m = s_meta(t);
    bool named_w = m && m->worker && strcmp(m->worker, w->name) == 0;
    if (t->state == SHOAL_STATE_RUNNING) {
        if (!t->worker && named_w)
            s_put_start(t, w); //  restored from the journal, its worker is back
        if (t->worker != w)
            return false;
        s_put_due_disarm(self, t); //  its worker has it: no deadline
        if (n->state == SHOAL_OBJ_NOTE_ALLOCATED) {
            s_event_object(self, "object.allocated", ref, w, n->size, NULL);
            s_notify_allocated(self, t, ref, n->size);
        } else if (n->state == SHOAL_OBJ_NOTE_SEALED)
            s_put_sealed(self, t, w, n->size);
        else {
            char why[S_ERROR_MAX];
            snprintf(why, sizeof why, "aborted: %s",
                     n->error && n->error[0] ? n->error : "no reason given");
            s_put_canceled(self, t, why);
        }
        return true;
    }
    if (t->state == SHOAL_STATE_DONE) {
        //  A repeat of what made it DONE, from its holder: nothing new.
        s_object_t *o = s_object(self, ref);
        return o && o->worker == w && n->state != SHOAL_OBJ_NOTE_ABORTED;
    }
    if (s_is_final(t->state) && named_w) {
        //  Canceled or failed while its worker wrote it: nobody names these bytes now.
        if (n->state != SHOAL_OBJ_NOTE_ABORTED)
            s_queue_drop(w, ref);
        return true;
    }
    return false;
}

static void s_on_w_objects(s_broker_t *self, s_worker_t *w, const shoal_wire_w_objects_t *m)
{
    shoal_wire_task_t *fresh = NULL;
    size_t n_fresh = 0, cap_fresh = 0;
    for (size_t i = 0; i < m->items.count; i++)
        if (!s_on_note(self, w, &m->items.items[i], &fresh, &n_fresh, &cap_fresh)) {
            self->n_malformed++;
            char text[SHOAL_REF_TEXT_SIZE];
            shoal__debug("worker %s: a note on %s (state %llu) that makes no sense: ignored",
                         w->name, s_ref_text(m->items.items[i].ref, text),
                         (unsigned long long)m->items.items[i].state);
        }
    //  Puts made from notes are journaled like submitted ones (no ack waits on it: a write
    //  that fails is logged, and the put lives on in memory).
    if (n_fresh && self->journal)
        shoal__journal_add_tasks(self->journal, fresh, n_fresh);
    free(fresh);
}

//  A worker is gone (silent, replaced, or shut down): its tasks go back to the queue and
//  the outputs only it held are recomputed.
/*  p, which was writing its outputs on worker w, goes back to the queue (w is gone): a
    consumer dispatched to another worker that streams one of those outputs pulls it from w,
    which will never answer again (its worker would wait 10 s for nothing, then fail it).
    Stopped on its worker and requeued as lost, as a task of a dead worker is (bounded by
    S_MAX_LOST, not by its retries): it reads the output anew, from 0, as p's next attempt
    writes it. Before p ran on another worker, such a consumer ran on w and was lost with it:
    the same outcome. */
static void s_stream_readers_lost(s_broker_t *self, s_task_t *p, const s_worker_t *w)
{
    char text[SHOAL_REF_TEXT_SIZE], ptext[SHOAL_REF_TEXT_SIZE];
    for (uint32_t i = 0; i < s_n_consumers(p); i++) {
        s_task_t *c = s_consumer(self->tasks, p, i);
        if (!c || c->state != SHOAL_STATE_RUNNING || !c->linked || !c->worker || c->worker == w ||
            !s_stream_mask(c))
            continue;
        bool streams = false;
        for (uint32_t k = 0; k < c->n_inputs && k < SHOAL_STREAM_INPUTS_MAX && !streams; k++)
            streams = (s_stream_mask(c) >> k & 1) &&
                      shoal_ref_equal(shoal_ref_task(s_inputs(c)[k]), p->id);
        if (!streams)
            continue;
        shoal_wire_attempt_ref_t a = {.id = c->id, .attempt = c->attempt};
        shoal_wire_w_cancel_t msg = {.tasks = {&a, 1}};
        shoal_wire_send(self->router, &c->worker->peer, SHOAL_MSG_w_cancel, &msg, NULL, 0);
        shoal__info("task %s on worker %s streams an output of %s, lost with worker %s: "
                    "requeued",
                    s_ref_text(c->id, text), c->worker->name, s_ref_text(p->id, ptext), w->name);
        s_worker_detach(c);
        c->worker = NULL;
        c->lost++;
        if (c->lost > S_MAX_LOST) {
            s_set_error(c, SHOAL_ELOST, 0,
                        "lost %d times (last: an input it streamed was lost with worker %s); "
                        "giving up",
                        c->lost, w->name);
            s_finish(self, c, SHOAL_STATE_FAILED);
            continue;
        }
        c->missing = s_count_missing(self, c); //  p is not running: c waits for it
        s_make_ready(self, c, true);
    }
}

static void s_worker_remove(s_broker_t *self, s_worker_t *w, const char *reason)
{
    //  A clean stop is news, not trouble.
    shoal__log(strncmp(reason, "shut down", 9) == 0 ? SHOAL_LOG_INFO : SHOAL_LOG_WARN,
               "worker %s (%s) left: %s; %llu task(s) requeued", w->name, w->host, reason,
               (unsigned long long)w->outstanding);
    s_event_worker(self, "worker.left", w, reason);
    //  Its tasks, and the puts being written into its store: found by a walk of the task
    //  map rather than a per-task list, which would cost 16 bytes in every task to save
    //  milliseconds once per worker death. Collected first: failing one changes the map
    //  (never by removal, but stay safe).
    char why[300];
    snprintf(why, sizeof why, "with worker %s (%s)", w->name, reason);
    s_task_t **lost = NULL;
    size_t n_lost = 0, cap_lost = 0, tcursor = 0;
    void *tvalue;
    while ((w->outstanding || w->n_puts) &&
           shoal__refmap_next(self->tasks, &tcursor, NULL, &tvalue)) {
        s_task_t *t = tvalue;
        if (t->worker == w && (t->linked || (s_is_put(t) && t->state == SHOAL_STATE_RUNNING)))
            S_PUSH(lost, n_lost, cap_lost, t);
    }
    for (size_t i = 0; i < n_lost; i++) {
        s_task_t *t = lost[i];
        if (s_is_put(t)) {
            if (t->state == SHOAL_STATE_RUNNING && t->worker == w)
                s_put_lost(self, t, why);
            continue;
        }
        if (!t->linked || t->worker != w)
            continue;
        s_worker_detach(t);
        t->worker = NULL;
        t->lost++;
        if (t->lost > S_MAX_LOST) {
            s_set_error(t, SHOAL_ELOST, 0,
                        "lost with its worker %d times (last: %s, %s); giving up", t->lost, w->name,
                        reason);
            s_finish(self, t, SHOAL_STATE_FAILED);
        } else {
            s_make_ready(self, t, true);
            s_stream_readers_lost(self, t, w);
        }
    }
    free(lost);
    //  Objects: drop this holder; DONE tasks whose outputs are gone run again.
    size_t cursor = 0;
    void *value;
    shoal_ref_t key;
    s_object_t **dead = NULL;
    size_t n_dead = 0, cap_dead = 0;
    s_task_t **waits = NULL; //  producers of persisted objects now away: consumers wait
    size_t n_waits = 0, cap_waits = 0, n_away = 0;
    while (shoal__refmap_next(self->objects, &cursor, &key, &value)) {
        s_object_t *o = value;
        if (o->worker != w)
            continue;
        o->worker = NULL;
        if (!o->data && s_is_persisted(self, o->ref)) {
            //  On its disk: it comes back with the worker (w_hello held). Neither lost nor
            //  recomputed meanwhile; readers and consumers wait for it. Its producer's
            //  consumers count it missing once (s_producer_waits), not once per away output.
            s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(o->ref));
            if (p && !s_producer_waits(self, p))
                S_PUSH(waits, n_waits, cap_waits, p);
            char *name = strdup(w->name);
            if (!name || shoal__refmap_put(self->away, o->ref, name) != 0)
                abort();
            o->away = true;
            n_away++;
            continue;
        }
        if (!o->data)
            S_PUSH(dead, n_dead, cap_dead, o);
    }
    for (size_t i = 0; i < n_waits; i++)
        s_consumers_update(self, waits[i], false);
    free(waits);
    if (n_away)
        shoal__info("worker %s: %zu persisted objects wait for it to come back", w->name, n_away);
    //  First take every lost producer out of DONE, then count what each one misses:
    //  a producer may itself consume another lost producer.
    s_task_t **rerun = NULL;
    size_t n_rerun = 0, cap_rerun = 0;
    for (size_t i = 0; i < n_dead; i++) {
        s_object_t *o = dead[i];
        shoal_ref_t ref = o->ref;
        o->worker = w; //  for object.deleted
        s_object_forget(self, o, "lost");
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
        if (p && s_is_put(p)) {
            if (p->state == SHOAL_STATE_DONE)
                s_put_lost(self, p, why);
            continue;
        }
        if (p && p->state == SHOAL_STATE_DONE && shoal_ref_index(ref) != SHOAL_REF_LOG_INDEX) {
            s_undo_done(self, p);
            S_PUSH(rerun, n_rerun, cap_rerun, p);
        }
    }
    for (size_t i = 0; i < n_rerun; i++) {
        rerun[i]->missing = s_count_missing(self, rerun[i]);
        s_make_ready(self, rerun[i], true);
    }
    free(rerun);
    free(dead);
    //  Statuses owed borrow its name and endpoint: send them before they go.
    s_flush_outbox(self);
    for (size_t i = 0; i < self->n_workers; i++)
        if (self->workers[i] == w) {
            self->workers[i] = self->workers[--self->n_workers];
            break;
        }
    //  Finished tasks still name it as where they ran: a new worker allocated at the same
    //  address must not pass for it (results are fenced by worker and attempt). One more
    //  walk of the task map, once per worker that leaves.
    tcursor = 0;
    while (shoal__refmap_next(self->tasks, &tcursor, NULL, &tvalue))
        if (((s_task_t *)tvalue)->worker == w)
            ((s_task_t *)tvalue)->worker = NULL;
    s_worker_free(w);
}

//  refs as a set (each mapped to a dummy value), or NULL when there are none.
static shoal__refmap_t *s_ref_set(const shoal_wire_refs_t *refs)
{
    if (!refs->count)
        return NULL;
    shoal__refmap_t *set = shoal__refmap_new();
    if (!set)
        abort(); //  out of memory in the broker: nothing sane to do
    for (size_t i = 0; i < refs->count; i++)
        if (shoal__refmap_put(set, refs->items[i], (void *)1))
            abort();
    return set;
}

//  Whether t, a put RUNNING, is being written by the worker called name: on its earlier
//  entry old, or, restored from the journal (no worker yet), naming it.
static bool s_put_writer_is(const s_task_t *t, const char *name, const s_worker_t *old)
{
    const s_meta_t *m = s_meta(t);
    if (t->worker)
        return old && t->worker == old;
    return m && m->worker && strcmp(m->worker, name) == 0;
}

//  w said hello without t, a put it was writing: it gave it up.
static void s_put_abandoned(s_broker_t *self, s_task_t *t, s_worker_t *w)
{
    char why[200];
    snprintf(why, sizeof why, "abandoned: its worker %s no longer has it", w->name);
    s_put_canceled(self, t, why);
}

/*  The puts old was writing, when its worker says hello again as w (same: the same
    process). Those it lists in writing move to w. Of the rest (those held were sealed
    already): from the same process, one it never reported may still be (its note is on the
    way), and moves under its deadline; one it reported and no longer has was abandoned.
    From a new process, the rest is lost with old (s_worker_remove). */
static void s_adopt_puts(s_broker_t *self, s_worker_t *old, s_worker_t *w,
                         const shoal__refmap_t *writing, bool same)
{
    s_task_t **puts = NULL;
    size_t n = 0, cap = 0, cursor = 0;
    void *value;
    //  A walk of the task map, once per worker that says hello again with puts open.
    while (n < old->n_puts && shoal__refmap_next(self->tasks, &cursor, NULL, &value)) {
        s_task_t *t = value;
        if (s_is_put(t) && t->state == SHOAL_STATE_RUNNING && t->worker == old)
            S_PUSH(puts, n, cap, t);
    }
    for (size_t i = 0; i < n; i++) {
        s_task_t *t = puts[i];
        if (writing && shoal__refmap_get(writing, t->id)) {
            s_put_start(t, w);
            s_put_due_disarm(self, t);
        } else if (same && !s_put_reported(t))
            s_put_start(t, w);
        else if (same)
            s_put_abandoned(self, t, w);
    }
    free(puts);
}

/*  w said hello: the persisted objects still away under its name are those it did not bring
    back in `held` (its store was reset, its spill.mdb damaged and started afresh, or it is a
    new process that replaced a live one). They will not come back: lost, as a dead worker's
    objects are (recomputed by lineage; a put fails with SHOAL_ELOST naming the worker), or
    their readers and consumers would wait for ever. */
static void s_away_lost(s_broker_t *self, s_worker_t *w)
{
    if (!shoal__refmap_size(self->away))
        return;
    shoal_ref_t *gone = NULL;
    size_t n_gone = 0, cap_gone = 0, cursor = 0;
    shoal_ref_t ref;
    void *name;
    while (shoal__refmap_next(self->away, &cursor, &ref, &name))
        if (strcmp(name, w->name) == 0)
            S_PUSH(gone, n_gone, cap_gone, ref);
    if (!n_gone)
        return;
    shoal__warn("worker %s is back without %zu persisted object(s): lost", w->name, n_gone);
    char why[300];
    snprintf(why, sizeof why, "with worker %s (it came back without it: its store was reset)",
             w->name);
    //  As in s_worker_remove: every lost producer leaves DONE first, then each counts what
    //  it misses (a producer may consume another).
    s_task_t **rerun = NULL;
    size_t n_rerun = 0, cap_rerun = 0;
    for (size_t i = 0; i < n_gone; i++) {
        s_object_t *o = s_object(self, gone[i]);
        if (!o)
            continue;
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(gone[i]));
        //  Undone while its outputs still count as away: its consumers count it missing
        //  already (s_undo_done), and go on doing so while it runs again.
        bool again = p && !s_is_put(p) && p->state == SHOAL_STATE_DONE;
        if (again) {
            s_undo_done(self, p);
            S_PUSH(rerun, n_rerun, cap_rerun, p);
        }
        o->worker = w; //  for object.deleted
        s_object_forget(self, o, "lost");
        if (p && s_is_put(p) && p->state == SHOAL_STATE_DONE)
            s_put_lost(self, p, why);
    }
    for (size_t i = 0; i < n_rerun; i++) {
        rerun[i]->missing = s_count_missing(self, rerun[i]);
        s_make_ready(self, rerun[i], true);
    }
    free(rerun);
    free(gone);
}

static void s_on_w_hello(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_w_hello_t *m)
{
    shoal_wire_w_welcome_t reply = {.version = SHOAL_PROTO_VERSION,
                                    .heartbeat_ms = (uint64_t)self->cfg.heartbeat_ms};
    char err[512];
    if (m->version != SHOAL_PROTO_VERSION) {
        snprintf(err, sizeof err, "protocol version %llu, this broker speaks %d",
                 (unsigned long long)m->version, SHOAL_PROTO_VERSION);
        reply.code = SHOAL_EVERSION;
        reply.error = err;
        shoal_wire_send(self->router, peer, SHOAL_MSG_w_welcome, &reply, NULL, 0);
        return;
    }
    if (!m->name || !m->name[0] || strlen(m->name) >= 128 || !m->endpoint ||
        strlen(m->endpoint) >= 256 || m->slots == 0) {
        reply.code = SHOAL_EINVAL;
        reply.error = "w_hello needs a name (< 128 bytes), an endpoint and slots > 0";
        shoal_wire_send(self->router, peer, SHOAL_MSG_w_welcome, &reply, NULL, 0);
        return;
    }
    const char *host = m->host ? m->host : "";
    s_worker_t *old = s_worker_by_name(self, m->name);
    if (old) {
        int64_t silent_ms = (shoal__now_us() - old->last_heard_us) / 1000;
        bool same_session = shoal_wire_peer_equal(&old->peer, peer);
        bool same_process = strcmp(old->host, host) == 0 && old->pid == m->pid;
        if (!same_session && !same_process && silent_ms < 2 * self->cfg.heartbeat_ms) {
            snprintf(err, sizeof err,
                     "worker name '%s' is taken by a live worker on %s (pid %llu); give "
                     "this one another --name",
                     m->name, old->host, (unsigned long long)old->pid);
            reply.code = SHOAL_EEXIST;
            reply.error = err;
            shoal_wire_send(self->router, peer, SHOAL_MSG_w_welcome, &reply, NULL, 0);
            return;
        }
    }
    s_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->peer = *peer;
    shoal__strlcpy(w->name, m->name, sizeof w->name);
    shoal__strlcpy(w->host, host, sizeof w->host);
    shoal__strlcpy(w->endpoint, m->endpoint, sizeof w->endpoint);
    w->slots = m->slots;
    w->capacity = m->capacity ? m->capacity : m->slots;
    w->store_capacity = m->store_capacity;
    w->pid = m->pid;
    w->store_dir = m->store_dir ? s_strdup(m->store_dir) : NULL;
    w->arena = m->arena ? s_strdup(m->arena) : NULL;
    w->last_heard_us = shoal__now_us();
    shoal__refmap_t *writing = s_ref_set(&m->writing);
    bool same = old && (shoal_wire_peer_equal(&old->peer, peer) ||
                        (strcmp(old->host, host) == 0 && old->pid == m->pid));
    /*  Objects it already holds stay with it: its earlier entry's (the same process saying
        hello again, or a new process that re-adopted the store), or a restarted broker's.
        Only what it no longer has is lost with the earlier entry (recomputed, or failed for
        a put). What nobody can name any more (no directory entry, no live task) it drops,
        or its store would fill with orphans. */
    shoal_ref_t *orphans = NULL;
    size_t n_orphans = 0, cap_orphans = 0, n_back = 0;
    s_task_t **backs = NULL;
    size_t n_backs = 0, cap_backs = 0;
    for (size_t i = 0; i < m->held.count; i++) {
        shoal_ref_t ref = m->held.items[i];
        s_object_t *o = s_object(self, ref);
        if (o) {
            if (!o->worker || (old && o->worker == old))
                o->worker = w;
            if (o->away && o->worker == w) {
                //  A persisted object back with its worker: its consumers may go on.
                free(shoal__refmap_remove(self->away, ref));
                o->away = false;
                n_back++;
                s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
                bool seen = false;
                for (size_t k = 0; k < n_backs && !seen; k++)
                    seen = backs[k] == p;
                if (p && p->state == SHOAL_STATE_DONE && !seen)
                    S_PUSH(backs, n_backs, cap_backs, p);
            }
            continue;
        }
        s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
        if (t && s_is_put(t) && t->state == SHOAL_STATE_RUNNING && shoal_ref_index(ref) == 0 &&
            s_put_writer_is(t, w->name, old)) {
            //  A put it was writing, sealed while the broker was not listening (restarted,
            //  or the note lost): it has it whole.
            s_put_start(t, w);
            s_put_sealed(self, t, w, s_meta(t)->size);
            continue;
        }
        if (!t || s_is_final(t->state))
            S_PUSH(orphans, n_orphans, cap_orphans, ref);
    }
    if (old) {
        s_adopt_puts(self, old, w, writing, same);
        //  The same process: the deletions not yet sent are still due.
        for (size_t i = 0; same && i < old->n_drops; i++)
            s_queue_drop(w, old->drops[i]);
        s_worker_remove(self, old, same ? "reconnected" : "replaced by a new process");
    }
    S_PUSH(self->workers, self->n_workers, self->cap_workers, w);
    s_away_lost(self, w);
    for (size_t i = 0; i < n_backs; i++)
        if (backs[i]->state == SHOAL_STATE_DONE && !s_producer_waits(self, backs[i]))
            s_consumers_update(self, backs[i], true);
    free(backs);
    if (n_back)
        shoal__info("worker %s is back with %zu persisted object(s)", w->name, n_back);
    //  Puts the broker restarted in the middle of: this worker still writes those it lists;
    //  the others (neither held nor being written) it gave up while the broker was away.
    size_t kept = 0;
    for (size_t i = 0; i < self->n_unbound; i++) {
        s_task_t *t = shoal__refmap_get(self->tasks, self->unbound[i]);
        const s_meta_t *meta = t ? s_meta(t) : NULL;
        if (!t || !s_is_put(t) || t->state != SHOAL_STATE_RUNNING || t->worker || !meta ||
            !meta->worker)
            continue; //  moved on: the entry goes
        if (strcmp(meta->worker, w->name) != 0)
            self->unbound[kept++] = self->unbound[i];
        else if (writing && shoal__refmap_get(writing, t->id)) {
            s_put_start(t, w);
            s_put_due_disarm(self, t);
        } else
            s_put_abandoned(self, t, w);
    }
    self->n_unbound = kept;
    shoal__refmap_destroy(&writing);
    if (n_orphans) {
        shoal_wire_w_drop_t drop = {.refs = {orphans, n_orphans}};
        shoal_wire_send(self->router, peer, SHOAL_MSG_w_drop, &drop, NULL, 0);
        shoal__info("worker %s holds %zu object(s) nobody can name any more: dropped", w->name,
                    n_orphans);
    }
    free(orphans);
    shoal__info("worker %s joined from %s: %llu slots, data %s", w->name, w->host,
                (unsigned long long)w->slots, w->endpoint);
    s_event_worker(self, "worker.joined", w, NULL);
    shoal_wire_send(self->router, peer, SHOAL_MSG_w_welcome, &reply, NULL, 0);
}

//  w kept ref for a result that was fenced off: dropped unless w holds it for the outcome
//  the broker knows (the same ref, from another attempt).
static void s_drop_orphan(s_broker_t *self, s_worker_t *w, shoal_ref_t ref)
{
    s_object_t *o = s_object(self, ref);
    if (!o || o->worker != w)
        s_queue_drop(w, ref);
}

static void s_on_result(s_broker_t *self, s_worker_t *w, shoal_wire_result_t *r)
{
    s_task_t *t = shoal__refmap_get(self->tasks, r->id);
    if (t && s_is_put(t)) {
        self->n_malformed++; //  a put is never run, so no worker has a result for it
        return;
    }
    if (!t || t->state != SHOAL_STATE_RUNNING || t->worker != w || t->attempt != r->attempt) {
        //  Fenced: an earlier attempt, a task canceled (or forgotten, or unknown to a broker
        //  restarted without a journal), or a repeated w_done. What it kept in its store
        //  (outputs, and a log not sent whole) no entry will ever name: dropped in this
        //  turn's w_drop, unless this worker holds that task's objects (same refs) for the
        //  outcome the broker knows, or makes them for its current attempt.
        if (!t || t->worker != w) {
            size_t n_out = SHOAL__MIN(r->outputs.count, (size_t)SHOAL_MAX_OUTPUTS);
            //  Even an output sent whole may be in its store (copied out of the executor's
            //  allocation): a drop of what it does not have changes nothing.
            for (size_t i = 0; i < n_out; i++)
                if (!(r->outputs.items[i].flags & SHOAL_OUT_STDOUT))
                    s_drop_orphan(self, w, shoal_ref_output(r->id, (uint16_t)i));
            if (r->log_tail.size != r->log_size)
                s_drop_orphan(self, w, shoal_ref_output(r->id, SHOAL_REF_LOG_INDEX));
        }
        return;
    }
    s_worker_detach(t);
    if (r->status == 0) {
        w->done++;
        t->all_inline = true;
        bool sealed_events = s_wants(self, "object.sealed");
        for (size_t i = 0; i < r->outputs.count && i < t->n_outputs; i++) {
            shoal_wire_output_t *out = &r->outputs.items[i];
            bool whole = (out->flags & SHOAL_OUT_INLINE) && out->data.size == out->size;
            shoal_ref_t ref = shoal_ref_output(t->id, (uint16_t)i);
            if (!s_object_set(self, ref, out->size, whole ? out->data.data : NULL,
                              whole ? NULL : w)) {
                t->all_inline = false;
                if (sealed_events)
                    s_event_object(self, "object.sealed", ref, w, out->size, NULL);
            }
        }
        s_log_set(self, t, r, w);
        t->worker = w;
        s_finish(self, t, SHOAL_STATE_DONE);
        return;
    }
    //  A failed attempt.
    w->failed++;
    t->worker = NULL;
    char tail[2100] = "";
    if (r->log_tail.size) {
        size_t n = SHOAL__MIN(r->log_tail.size, sizeof tail - 1);
        memcpy(tail, r->log_tail.data + r->log_tail.size - n, n);
        tail[n] = '\0';
    }
    const char *reason = r->error && r->error[0] ? r->error : shoal_strerror((int)r->status);
    if (r->status == SHOAL_ECANCELED) {
        s_set_error(t, SHOAL_ECANCELED, 0, "canceled");
        s_finish(self, t, SHOAL_STATE_CANCELED);
        return;
    }
    if (r->status == SHOAL_ELOST) {
        //  An input vanished with its worker: not the task's fault; wait for lineage.
        t->lost++;
        if (t->lost <= S_MAX_LOST) {
            s_make_ready(self, t, true);
            return;
        }
    }
    bool retry = r->status == SHOAL_ETASK && t->failures < t->retries;
    s_set_error(t, r->status, r->exit_code, "%s on worker %s%s%s", reason, w->name,
                tail[0] ? "\n" : "", tail);
    //  A log object for failed tasks too, so `shoal logs` works on them.
    s_log_set(self, t, r, w);
    //  The end of a failed command's stdout, kept inline (SHOAL_REF_STDOUT_INDEX): no
    //  worker holds it, so the directory keeps it whatever the budget.
    for (size_t i = 0; i < r->outputs.count; i++) {
        shoal_wire_output_t *out = &r->outputs.items[i];
        if ((out->flags & SHOAL_OUT_STDOUT) && (out->flags & SHOAL_OUT_INLINE))
            s_object_set(self, shoal_ref_output(t->id, SHOAL_REF_STDOUT_INDEX), out->data.size,
                         out->data.data, NULL);
    }
    if (retry) {
        t->failures++;
        shoal__info("task attempt %u failed, retrying (%u of %llu)", t->attempt, t->failures,
                    (unsigned long long)t->retries);
        s_make_ready(self, t, false);
        return;
    }
    s_finish(self, t, SHOAL_STATE_FAILED);
}

/*  ------------------------------------------------------------------------ dispatch */

//  Bytes of t's inputs that w would have to fetch.
static uint64_t s_missing_bytes(s_broker_t *self, s_task_t *t, s_worker_t *w)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < t->n_inputs; i++) {
        s_object_t *o = s_object(self, s_inputs(t)[i]);
        if (o && !o->data && o->worker != w)
            bytes += o->size;
    }
    return bytes;
}

//  Placement: the worker with room and the least estimated finish: bytes it lacks at
//  about 1 GB/s (loopback ZeroMQ, DESIGN.md), then its queue per slot.
static s_worker_t *s_place(s_broker_t *self, s_task_t *t)
{
    //  A streaming input is best read where it is being written (in the arena, as it lands,
    //  no copy); when that worker is full, elsewhere, pulled from it as it lands.
    s_worker_t *writer = s_stream_worker(self, t);
    if (writer && writer->outstanding < writer->capacity)
        return writer;
    s_worker_t *best = NULL;
    double best_cost = 0;
    for (size_t i = 0; i < self->n_workers; i++) {
        s_worker_t *w = self->workers[i];
        if (w->outstanding >= w->capacity)
            continue;
        double cost = (double)s_missing_bytes(self, t, w) / 1e9 +
                      (double)w->outstanding / (double)w->slots * 1e-3;
        if (!best || cost < best_cost) {
            best = w;
            best_cost = cost;
        }
    }
    return best;
}

static void s_send_batches(s_broker_t *self);

//  An input whose bytes are neither inline nor on a live worker (after a broker restart,
//  until workers report what they hold) is recomputed. Returns false when t must wait.
static bool s_inputs_available(s_broker_t *self, s_task_t *t)
{
    bool ok = true;
    for (uint32_t i = 0; i < t->n_inputs; i++) {
        s_object_t *o = s_object(self, s_inputs(t)[i]);
        if (!o || o->data || o->worker)
            continue;
        s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(o->ref));
        if (o->away && (t->missing = s_count_missing(self, t))) {
            //  Persisted, its worker away: wait for it, counted as at submission (its hello
            //  counts it back down).
            s_set_state(t, SHOAL_STATE_WAITING);
            ok = false;
            continue;
        }
        if (p && p->state == SHOAL_STATE_DONE) {
            s_object_forget(self, o, "lost");
            if (s_is_put(p)) //  never run again: fails, and t with it
                s_put_lost(self, p, "with its worker: none holds it since the broker restarted");
            else
                s_rerun(self, p); //  t counts p missing now, and waits
            ok = false;
            if (s_is_final(t->state))
                break;
        }
    }
    return ok;
}

static void s_dispatch(s_broker_t *self)
{
    bool any_room = false;
    for (size_t i = 0; i < self->n_workers; i++)
        if (self->workers[i]->outstanding < self->workers[i]->capacity)
            any_room = true;
    while (any_room && s_queue_len(&self->ready)) {
        s_task_t *t = s_queue_pop(&self->ready);
        if (t->doomed) { //  forgotten while queued (s_task_free)
            t->doomed = false;
            t->x = (s_task_x_t *)self->free_tasks;
            self->free_tasks = t;
            continue;
        }
        if (t->state != SHOAL_STATE_READY || s_is_put(t))
            continue; //  canceled or back to waiting since it was queued; a put never runs
        if (!s_inputs_available(self, t))
            continue; //  back to waiting while the producers run again
        if (s_stream_mask(t)) {
            //  What streams may have stopped being written (its producer was requeued).
            s_recount(self, t);
            if (t->state != SHOAL_STATE_READY)
                continue;
        }
        s_worker_t *w = s_place(self, t);
        if (!w) {
            s_queue_push(&self->ready, t, true);
            break;
        }
        s_set_state(t, SHOAL_STATE_RUNNING);
        if (t->x)
            t->x->allocated = 0; //  this attempt allocates its outputs anew
        t->attempt++;
        t->worker = w;
        t->linked = true;
        w->outstanding++;
        S_PUSH(w->batch, w->n_batch, w->cap_batch, t);
        s_event_task(self, "task.dispatched", t);
    }
    s_send_batches(self);
}

//  About how many bytes t takes in a w_dispatch (inputs inline at most).
static uint64_t s_dispatch_bytes(s_broker_t *self, const s_task_t *t)
{
    uint64_t bytes = 256 + t->arg_size + (uint64_t)t->n_inputs * 96;
    const char *argv =
        t->var ? (const char *)t->var + (size_t)t->n_inputs * sizeof(shoal_ref_t) + t->arg_size
               : NULL;
    for (uint16_t i = 0; argv && i < t->n_argv; i++) {
        size_t len = strlen(argv) + 1;
        bytes += len;
        argv += len;
    }
    for (uint32_t i = 0; i < t->n_inputs; i++) {
        s_object_t *o = s_object(self, s_inputs(t)[i]);
        if (o && o->data)
            bytes += o->size;
    }
    const s_meta_t *m = s_meta(t);
    if (m) {
        bytes += m->name ? strlen(m->name) : 0;
        const char *p = m->tags;
        for (uint32_t i = 0; i < m->n_tags; i++, p += strlen(p) + 1)
            bytes += strlen(p) + 2;
    }
    return bytes;
}

/*  Input j of t streams and is being written on another worker than w: in says where, for
    w to pull it as it lands (SHOAL_IN_WRITING). false: an input as any other. */
static bool s_input_writing(s_broker_t *self, const s_task_t *t, uint32_t j, const s_worker_t *w,
                            shoal_wire_input_t *in)
{
    if (j >= SHOAL_STREAM_INPUTS_MAX || !(s_stream_mask(t) >> j & 1))
        return false;
    s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(in->ref));
    if (!p || p->state == SHOAL_STATE_DONE || !s_streamable(t, j, p) || p->worker == w)
        return false;
    const s_meta_t *m = s_is_put(p) ? s_meta(p) : NULL;
    in->size = m ? m->size : 0;
    in->flags = SHOAL_IN_WRITING;
    in->endpoint = p->worker->endpoint;
    in->worker = p->worker->name;
    in->store_dir = p->worker->store_dir;
    in->arena = p->worker->arena;
    return true;
}

static void s_send_batches(s_broker_t *self)
{
    for (size_t i = 0; i < self->n_workers; i++) {
        s_worker_t *w = self->workers[i];
        for (size_t start = 0, n; start < w->n_batch; start += n) {
            //  At most S_DISPATCH_BATCH tasks and about S_DISPATCH_BYTES a message: a
            //  message over the worker's ZMQ_MAXMSGSIZE would cut its link for good.
            uint64_t bytes = 0;
            for (n = 0; start + n < w->n_batch && n < S_DISPATCH_BATCH &&
                        (n == 0 || bytes < S_DISPATCH_BYTES);
                 n++)
                bytes += s_dispatch_bytes(self, w->batch[start + n]);
            uint64_t inline_budget = S_DISPATCH_BYTES;
            //  The wire form of each task, and where each input is, for the worker to
            //  prefetch while the task waits. One scratch block for the whole message.
            size_t n_inputs = 0, n_argv = 0;
            for (size_t k = 0; k < n; k++) {
                n_inputs += w->batch[start + k]->n_inputs;
                n_argv += s_task_strs(w->batch[start + k]);
            }
            shoal_wire_dispatch_t *ds = calloc(n, sizeof *ds);
            shoal_wire_input_t *inputs = calloc(n_inputs ? n_inputs : 1, sizeof *inputs);
            char **argv = calloc(n_argv, sizeof *argv);
            if (!ds || !inputs || !argv)
                abort();
            shoal_wire_input_t *next = inputs;
            char **next_argv = argv;
            for (size_t k = 0; k < n; k++) {
                s_task_t *t = w->batch[start + k];
                shoal_wire_dispatch_t *d = &ds[k];
                s_task_wire(t, &d->task, next_argv);
                next_argv += s_task_strs(t);
                d->attempt = t->attempt;
                d->inputs.items = next;
                d->inputs.count = t->n_inputs;
                for (uint32_t j = 0; j < t->n_inputs; j++, next++) {
                    next->ref = s_inputs(t)[j];
                    if (s_input_writing(self, t, j, w, next))
                        continue;
                    s_object_t *o = s_object(self, next->ref);
                    if (!o)
                        continue; //  cannot happen: READY means every input is DONE
                    next->size = o->size;
                    //  Inline while the message's budget lasts; past it, where the bytes
                    //  are (a holder) is enough. Bytes only the directory has go inline.
                    if (o->data && (!o->worker || o->size <= inline_budget)) {
                        next->flags = SHOAL_OUT_INLINE;
                        next->data = (shoal_wire_bin_t){o->data, o->size};
                        inline_budget -= SHOAL__MIN(inline_budget, o->size);
                    }
                    if (o->worker) {
                        next->endpoint = o->worker->endpoint;
                        next->worker = o->worker->name;
                        //  A worker on the holder's host copies out of its arena.
                        next->store_dir = o->worker->store_dir;
                        next->arena = o->worker->arena;
                    }
                }
            }
            shoal_wire_w_dispatch_t msg = {.tasks = {ds, n}};
            int rc = shoal_wire_send(self->router, &w->peer, SHOAL_MSG_w_dispatch, &msg, NULL, 0);
            if (self->n_acks)
                s_acks_ride(self, &w->peer);
            free(ds);
            free(inputs);
            free(argv);
            if (rc)
                //  The worker's pipe is full or it is gone: its heartbeat timeout requeues
                //  what it holds; these tasks never left, so requeue them now.
                for (size_t k = 0; k < n; k++) {
                    s_task_t *t = w->batch[start + k];
                    if (t->state == SHOAL_STATE_RUNNING && t->worker == w) {
                        s_worker_detach(t);
                        t->worker = NULL;
                        s_make_ready(self, t, true);
                    }
                }
        }
        w->n_batch = 0;
    }
}

/*  ------------------------------------------------------------------------ clients */

//  Errors go at once (their text is borrowed); a positive ack waits for the end of the turn.
static void s_ack(s_broker_t *self, const shoal_wire_peer_t *peer, uint64_t seq, int code,
                  const char *error, uint64_t count)
{
    if (code == 0 && !error) {
        s_ack_t a = {.peer = *peer, .type = SHOAL_MSG_ack, .seq = seq, .count = count};
        S_PUSH(self->acks, self->n_acks, self->cap_acks, a);
        return;
    }
    shoal_wire_ack_t ack = {.seq = seq, .code = code, .error = (char *)error, .count = count};
    shoal_wire_send(self->router, peer, SHOAL_MSG_ack, &ack, NULL, 0);
}

static void s_ack_send(s_broker_t *self, const s_ack_t *a)
{
    if (a->type == SHOAL_MSG_ack) {
        shoal_wire_ack_t ack = {.seq = a->seq, .count = a->count};
        shoal_wire_send(self->router, &a->peer, SHOAL_MSG_ack, &ack, NULL, 0);
    } else {
        shoal_wire_w_done_ack_t ack = {.seq = a->seq};
        shoal_wire_send(self->router, &a->peer, SHOAL_MSG_w_done_ack, &ack, NULL, 0);
    }
}

//  End of a loop turn (after the journal's commit): sends the acks due now. now 0: all.
static void s_flush_acks(s_broker_t *self, int64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->n_acks; i++) {
        const s_ack_t *a = &self->acks[i];
        if (a->due_us == 0 || a->due_us <= now || now == 0)
            s_ack_send(self, a);
        else
            self->acks[kept++] = *a;
    }
    self->n_acks = kept;
}

//  A message just went to peer: its held acks follow it at once (without a journal: with
//  one, they wait for the end of the turn, after the commit).
static void s_acks_ride(s_broker_t *self, const shoal_wire_peer_t *peer)
{
    if (self->journal)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < self->n_acks; i++) {
        const s_ack_t *a = &self->acks[i];
        if (shoal_wire_peer_equal(&a->peer, peer))
            s_ack_send(self, a);
        else
            self->acks[kept++] = *a;
    }
    self->n_acks = kept;
}

//  When the next held ack is due, or limit.
static int64_t s_acks_wait_us(const s_broker_t *self, int64_t now, int64_t limit)
{
    for (size_t i = 0; i < self->n_acks; i++)
        if (self->acks[i].due_us)
            limit = SHOAL__MIN(limit, self->acks[i].due_us - now);
    return limit;
}

static void s_on_submit(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_submit_t *m)
{
    char err[1024];
    //  Validate the whole batch before taking any of it.
    for (size_t i = 0; i < m->tasks.count; i++) {
        int rc = s_validate(self, &m->tasks.items[i], err, sizeof err);
        if (rc) {
            s_ack(self, peer, m->seq, rc, err, 0);
            return;
        }
    }
    if (self->journal) {
        int rc = shoal__journal_add_tasks(self->journal, m->tasks.items, m->tasks.count);
        if (rc) {
            s_ack(self, peer, m->seq, rc, "the broker cannot write its journal (see its log)", 0);
            return;
        }
    }
    uint64_t taken = 0;
    for (size_t i = 0; i < m->tasks.count; i++) {
        shoal_wire_task_t *spec = &m->tasks.items[i];
        if (shoal__refmap_get(self->tasks, spec->id))
            continue; //  a resend after a lost ack
        s_task_t *t = s_task_new(self, spec);
        s_job_join(self, t, spec->job);
        if (s_is_put(t))
            s_add_put(self, t, spec);
        else
            s_add_task(self, t);
        taken++;
    }
    s_ack(self, peer, m->seq, 0, NULL, m->tasks.count);
    (void)taken;
}

static void s_on_watch(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_watch_t *m)
{
    //  The client waits for statuses: its acks of this turn may ride along with them.
    for (size_t i = 0; i < self->n_acks; i++)
        if (self->acks[i].type == SHOAL_MSG_ack && !self->acks[i].due_us &&
            shoal_wire_peer_equal(&self->acks[i].peer, peer))
            self->acks[i].due_us = self->turn_us + S_ACK_HOLD_US;
    bool with_data = !(m->flags & SHOAL_WATCH_NODATA);
    bool allocated = m->flags & SHOAL_WATCH_ALLOCATED;
    for (size_t i = 0; i < m->refs.count; i++) {
        shoal_ref_t ref = m->refs.items[i];
        s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
        if (t && !s_is_final(t->state)) {
            //  Once per (peer, ref): a client re-watching must not pile up entries.
            s_watch_t *dup = NULL;
            s_task_x_t *x = s_x(t);
            for (uint32_t k = 0; k < x->n_watchers && !dup; k++)
                if (shoal_ref_equal(x->watchers[k].ref, ref) &&
                    shoal_wire_peer_equal(&x->watchers[k].peer, peer))
                    dup = &x->watchers[k];
            if (!dup) {
                s_watch_t w = {.peer = *peer, .ref = ref, .allocated = allocated};
                S_PUSH(x->watchers, x->n_watchers, x->cap_watchers, w);
            } else if (allocated)
                dup->allocated = true;
            //  A streaming reader learns at once where a running task or a put is being
            //  written; the worker holds its fetches until the object is allocated there.
            if (allocated && t->state == SHOAL_STATE_RUNNING && t->worker)
                s_owe_where(self, peer, t, ref, s_is_put(t) && s_meta(t) ? s_meta(t)->size : 0);
            continue;
        }
        s_outbox_t *box = s_outbox_for(self, peer);
        shoal_wire_status_t st;
        s_status_of(self, ref, &st, with_data);
        S_PUSH(box->items, box->count, box->cap, st);
    }
}

static void s_cancel_task(s_broker_t *self, s_task_t *t)
{
    if (s_is_final(t->state))
        return;
    //  s_finish_one tells its worker to stop it if it is running; a put being written is
    //  aborted by its worker when told to drop it.
    if (s_is_put(t) && t->state == SHOAL_STATE_RUNNING && t->worker)
        s_queue_drop(t->worker, t->id);
    s_set_error(t, SHOAL_ECANCELED, 0, "canceled");
    s_finish(self, t, SHOAL_STATE_CANCELED);
}

static uint64_t s_job_unfinished(const s_job_t *j)
{
    return j->count[SHOAL_STATE_WAITING] + j->count[SHOAL_STATE_READY] +
           j->count[SHOAL_STATE_RUNNING];
}

#define S_NO_JOB_SIZE (SHOAL_JOB_NAME_MAX + 128)

static const char *s_no_job(char err[S_NO_JOB_SIZE], const char *name)
{
    snprintf(err, S_NO_JOB_SIZE, "no job named '%.*s' (never submitted, or all its tasks removed)",
             SHOAL_JOB_NAME_MAX, name ? name : "");
    return err;
}

//  count: the tasks named by refs that were canceled, plus the job's tasks that were
//  unfinished and are canceled now (dependents outside the job are canceled too, but
//  not counted).
static void s_on_cancel(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_cancel_t *m)
{
    s_job_t *job = NULL;
    if (m->job && m->job[0] && !(job = s_job_find(self, m->job))) {
        char err[S_NO_JOB_SIZE];
        s_ack(self, peer, m->seq, SHOAL_ENOTFOUND, s_no_job(err, m->job), 0);
        return;
    }
    uint64_t count = 0;
    for (size_t i = 0; i < m->refs.count; i++) {
        s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(m->refs.items[i]));
        if (t && !s_is_final(t->state)) {
            s_cancel_task(self, t);
            count++;
        }
    }
    if (job) {
        //  Canceling never removes a task from a job, so the list stays put meanwhile.
        uint64_t before = s_job_unfinished(job);
        for (uint32_t i = 0; i < job->n_tasks; i++)
            if (job->tasks[i])
                s_cancel_task(self, job->tasks[i]);
        count += before - s_job_unfinished(job);
    }
    s_ack(self, peer, m->seq, 0, NULL, count);
}

//  Drops ref from the directory and from the worker holding it (in that worker's w_drop of
//  this turn); reason is for object.deleted. True if it was there.
static bool s_drop_object(s_broker_t *self, shoal_ref_t ref, const char *reason)
{
    s_object_t *o = s_object(self, ref);
    if (!o)
        return false;
    if (o->worker)
        s_queue_drop(o->worker, ref);
    s_object_forget(self, o, reason);
    return true;
}

/*  Some of final task t's outputs were removed (rm, ttl, release): its journaled outcome is
    written again, saying so, or a restarted broker would bring them back (away, for a
    persisted one, then lost when its worker says hello without it: the task ran again).
    The task itself is forgotten, and its journal entry with it, once no output lives. */
static void s_journal_removed(s_broker_t *self, s_task_t *t)
{
    if (self->journal && t && s_is_final(t->state))
        s_journal_outcome(self, t);
}

//  Forgets a final task once none of its outputs lives and nothing waits on it: its log
//  and stdout tail go with it (reason: why, for object.deleted).
static void s_maybe_forget(s_broker_t *self, s_task_t *t, const char *reason)
{
    if (!s_is_final(t->state))
        return;
    //  Statuses owed borrow the task's strings: send them before they go.
    if (self->n_outbox)
        s_flush_outbox(self);
    for (uint64_t k = 0; k < t->n_outputs; k++)
        if (s_object(self, shoal_ref_output(t->id, (uint16_t)k)))
            return;
    for (uint32_t k = 0; k < s_n_consumers(t); k++) {
        s_task_t *c = s_consumer(self->tasks, t, k);
        if (c && !s_is_final(c->state))
            return;
    }
    s_drop_object(self, shoal_ref_output(t->id, SHOAL_REF_STDOUT_INDEX), reason);
    s_drop_object(self, shoal_ref_output(t->id, SHOAL_REF_LOG_INDEX), reason);
    shoal__refmap_remove(self->tasks, t->id);
    if (self->journal)
        shoal__journal_forget(self->journal, t->id);
    if (s_is_put(t) && !t->all_inline)
        s_gone_add(self, t->id);
    s_ttl_disarm(self, t);
    s_job_leave(self, t);
    s_task_free(self, t);
}

//  Output ref of p is gone (how: "removed", "expired"): every consumer not yet final that
//  reads it fails now, naming it, rather than finding nothing when it is dispatched.
static void s_fail_readers(s_broker_t *self, s_task_t *p, shoal_ref_t ref, const char *how)
{
    char text[SHOAL_REF_TEXT_SIZE];
    for (uint32_t i = 0; i < s_n_consumers(p); i++) {
        s_task_t *c = s_consumer(self->tasks, p, i);
        if (!c || s_is_final(c->state))
            continue;
        for (uint32_t k = 0; k < c->n_inputs; k++)
            if (shoal_ref_equal(s_inputs(c)[k], ref)) {
                s_set_error(c, SHOAL_ENOTFOUND, 0, "input %s was %s before it was read",
                            s_ref_text(ref, text), how);
                s_finish(self, c, SHOAL_STATE_FAILED);
                break;
            }
    }
}

static void s_on_remove(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_remove_t *m)
{
    uint64_t count = 0;
    for (size_t i = 0; i < m->refs.count; i++) {
        shoal_ref_t ref = m->refs.items[i];
        s_task_t *t = shoal__refmap_get(self->tasks, shoal_ref_task(ref));
        if (t && s_is_put(t) && t->state == SHOAL_STATE_RUNNING && shoal_ref_index(ref) == 0) {
            //  Being written: as a cancel (its worker drops the bytes), then forgotten below.
            s_cancel_task(self, t);
            count++;
        }
        bool dropped = s_drop_object(self, ref, "removed");
        count += dropped;
        if (t && dropped && shoal_ref_index(ref) < t->n_outputs) {
            s_fail_readers(self, t, ref, "removed");
            s_journal_removed(self, t);
        }
        if (t)
            s_maybe_forget(self, t, "removed");
    }
    s_ack(self, peer, m->seq, 0, NULL, count);
}

//  At most this many ttls expire per loop turn, so a million tasks that were done at once
//  do not stall the loop (the next turn does not wait: the top is due).
#define S_TTL_TURN 10000

//  Removes the tasks whose ttl is due, as a client's remove of all their outputs would.
static void s_ttl_expire(s_broker_t *self)
{
    int64_t now = shoal__now_us();
    s_heap_t *h = &self->ttl;
    for (int n = 0; n < S_TTL_TURN && h->n && h->items[0].deadline_us <= now; n++) {
        s_due_t due = s_heap_pop(h);
        //  Stale: forgotten (maybe submitted again), or run again since (a new deadline).
        if (!s_ttl_armed(self, &due))
            continue;
        s_task_t *t = shoal__refmap_get(self->tasks, due.id);
        s_ttl_disarm(self, t);
        bool dropped = false;
        for (uint16_t k = 0; k < t->n_outputs; k++) {
            shoal_ref_t ref = shoal_ref_output(t->id, k);
            if (s_drop_object(self, ref, "expired")) {
                s_fail_readers(self, t, ref, "removed (its ttl expired)");
                dropped = true;
            }
        }
        if (dropped)
            s_journal_removed(self, t);
        s_maybe_forget(self, t, "expired");
    }
}

//  Microseconds until the next ttl is due (at most limit).
static int64_t s_ttl_wait_us(const s_broker_t *self, int64_t now, int64_t limit)
{
    if (!self->ttl.n)
        return limit;
    int64_t left = self->ttl.items[0].deadline_us - now;
    return left < 0 ? 0 : SHOAL__MIN(left, limit);
}

/*  Ends the puts RUNNING whose deadline passed with no word from their worker (checked each
    tick: the deadlines are seconds to minutes long). Restored from the journal with no
    worker yet, its worker did not come back in time: lost. On a worker that never reported
    it: canceled, and that worker told to drop it in case it has it after all. */
static void s_put_due_expire(s_broker_t *self)
{
    int64_t now = shoal__now_us();
    s_heap_t *h = &self->put_due;
    while (h->n && h->items[0].deadline_us <= now) {
        s_due_t due = s_heap_pop(h);
        if (!s_put_due_armed(self, &due))
            continue;
        s_task_t *t = shoal__refmap_get(self->tasks, due.id);
        const s_meta_t *m = s_meta(t);
        s_put_due_disarm(self, t);
        char text[SHOAL_REF_TEXT_SIZE], why[300];
        if (!t->worker) {
            s_set_error(t, SHOAL_ELOST, 0,
                        "object %s was lost: its worker %s did not say hello again after the "
                        "broker restarted",
                        s_ref_text(t->id, text), m->worker ? m->worker : "(none)");
            s_finish(self, t, SHOAL_STATE_FAILED);
            continue;
        }
        snprintf(why, sizeof why,
                 "canceled: its worker %s never reported it (no note in %g s: it does not have "
                 "the allocation)",
                 t->worker->name, 2 * (double)self->put_lease_ms / 1000);
        s_queue_drop(t->worker, t->id);
        s_put_canceled(self, t, why);
    }
}

static int s_newest_first(const void *a, const void *b)
{
    uint64_t x = (*(s_task_t *const *)a)->id.lo, y = (*(s_task_t *const *)b)->id.lo;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void s_on_release(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_release_t *m)
{
    //  Collect first: canceling and forgetting change the maps being walked.
    s_task_t **mine = NULL;
    size_t n = 0, cap = 0, cursor = 0;
    void *value;
    while (shoal__refmap_next(self->tasks, &cursor, NULL, &value))
        if (((s_task_t *)value)->id.hi == m->client_id)
            S_PUSH(mine, n, cap, (s_task_t *)value);
    for (size_t i = 0; i < n; i++)
        s_cancel_task(self, mine[i]); //  no-op for final ones
    for (size_t i = 0; i < n; i++) {
        s_task_t *t = mine[i];
        bool dropped = false;
        for (uint64_t k = 0; k < t->n_outputs; k++) {
            shoal_ref_t ref = shoal_ref_output(t->id, (uint16_t)k);
            if (s_drop_object(self, ref, "released")) {
                s_fail_readers(self, t, ref, "removed"); //  other clients' tasks need it
                dropped = true;
            }
        }
        if (dropped)
            s_journal_removed(self, t);
    }
    //  A task is forgotten only once its consumers are final and its outputs gone, so
    //  forget consumers before producers: tasks of one client were submitted in counter
    //  order, and a consumer always comes after its producers.
    if (n) //  mine is NULL for a client with no task: qsort of NULL is undefined
        qsort(mine, n, sizeof *mine, s_newest_first);
    for (size_t i = 0; i < n; i++)
        s_maybe_forget(self, mine[i], "released");
    //  Objects it stored without a task.
    shoal_ref_t *objs = NULL;
    size_t n_objs = 0, cap_objs = 0;
    cursor = 0;
    shoal_ref_t key;
    while (shoal__refmap_next(self->objects, &cursor, &key, &value))
        if (key.hi == m->client_id && !shoal__refmap_get(self->tasks, shoal_ref_task(key)))
            S_PUSH(objs, n_objs, cap_objs, key);
    for (size_t i = 0; i < n_objs; i++)
        s_drop_object(self, objs[i], "released");
    free(objs);
    free(mine);
    s_ack(self, peer, m->seq, 0, NULL, n);
}

static void s_on_workers(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_workers_t *m)
{
    shoal_wire_worker_info_t *items = calloc(self->n_workers ? self->n_workers : 1, sizeof *items);
    if (!items)
        abort();
    for (size_t i = 0; i < self->n_workers; i++) {
        s_worker_t *w = self->workers[i];
        items[i] = (shoal_wire_worker_info_t){
            .name = w->name,
            .host = w->host,
            .slots = w->slots,
            //  The broker's own count, exact at every moment (heartbeats carry the
            //  worker's, but only when it has sent nothing else for a while).
            .running = SHOAL__MIN(w->outstanding, w->slots),
            .queued = w->outstanding - SHOAL__MIN(w->outstanding, w->slots),
            .done = w->done,
            .failed = w->failed,
            .store_bytes = w->store_bytes,
            .store_capacity = w->store_capacity,
            .endpoint = w->endpoint,
            .store_dir = w->store_dir,
            .arena = w->arena,
        };
    }
    shoal_wire_worker_list_t reply = {.seq = m->seq, .workers = {items, self->n_workers}};
    shoal_wire_send(self->router, peer, SHOAL_MSG_worker_list, &reply, NULL, 0);
    free(items);
}

//  Jobs in creation order: the newest S_JOB_LIST_MAX of them, the rest counted as
//  omitted (100,000 jobs of 255-byte names stay below 32 MiB).
#define S_JOB_LIST_MAX 100000

static int s_job_created_order(const void *a, const void *b)
{
    const s_job_t *x = *(s_job_t *const *)a, *y = *(s_job_t *const *)b;
    return x->created < y->created ? -1 : x->created > y->created;
}

static void s_on_jobs(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_jobs_t *m)
{
    size_t n = self->n_jobs, skip = n > S_JOB_LIST_MAX ? n - S_JOB_LIST_MAX : 0;
    s_job_t **sorted = malloc((n ? n : 1) * sizeof *sorted);
    shoal_wire_job_info_t *items = calloc(n ? n : 1, sizeof *items);
    if (!sorted || !items)
        abort();
    if (n) //  self->jobs is NULL before the first job: memcpy from NULL is undefined
        memcpy(sorted, self->jobs, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, s_job_created_order);
    for (size_t i = skip; i < n; i++) {
        const s_job_t *j = sorted[i];
        items[i - skip] = (shoal_wire_job_info_t){
            .name = j->name,
            .waiting = j->count[SHOAL_STATE_WAITING],
            .ready = j->count[SHOAL_STATE_READY],
            .running = j->count[SHOAL_STATE_RUNNING],
            .done = j->count[SHOAL_STATE_DONE],
            .failed = j->count[SHOAL_STATE_FAILED],
            .canceled = j->count[SHOAL_STATE_CANCELED],
            .total = j->total,
        };
    }
    shoal_wire_job_list_t reply = {.seq = m->seq, .jobs = {items, n - skip}, .omitted = skip};
    shoal_wire_send(self->router, peer, SHOAL_MSG_job_list, &reply, NULL, 0);
    free(items);
    free(sorted);
}

static void s_on_job_tasks(s_broker_t *self, const shoal_wire_peer_t *peer,
                           shoal_wire_job_tasks_t *m)
{
    shoal_wire_job_tasks_reply_t reply = {.seq = m->seq, .offset = m->offset};
    char err[S_NO_JOB_SIZE];
    s_job_t *j = m->name ? s_job_find(self, m->name) : NULL;
    if (!j) {
        reply.code = SHOAL_ENOTFOUND;
        reply.error = (char *)s_no_job(err, m->name);
        shoal_wire_send(self->router, peer, SHOAL_MSG_job_tasks_reply, &reply, NULL, 0);
        return;
    }
    s_job_tidy(j); //  no holes: positions are offsets
    size_t n = 0;
    if (m->offset < j->n_tasks)
        n = SHOAL__MIN((size_t)(j->n_tasks - m->offset), (size_t)SHOAL_JOB_TASKS_MAX);
    shoal_ref_t *refs = malloc((n ? n : 1) * sizeof *refs);
    if (!refs)
        abort();
    for (size_t i = 0; i < n; i++)
        refs[i] = j->tasks[m->offset + i]->id;
    reply.tasks = (shoal_wire_refs_t){refs, n};
    reply.total = j->n_tasks;
    shoal_wire_send(self->router, peer, SHOAL_MSG_job_tasks_reply, &reply, NULL, 0);
    free(refs);
}

/*  ------------------------------------------------------------------------ queries */

//  A query reply takes at most half the message cap, as a statuses message does.
#define S_QUERY_BYTES (SHOAL_MAX_MSG_SIZE / 2)

//  An object a query matched: o NULL for a put being written (t says the rest).
typedef struct {
    int64_t since_us;
    s_task_t *t;
    s_object_t *o;
} s_hit_t;

//  The limit oldest matches so far, in a max-heap on age order (heap[0] is the newest
//  kept): a listing of a million objects with --limit 10 holds 10, not a million.
typedef struct {
    const shoal_wire_query_t *q;
    s_hit_t *heap;
    size_t n, cap, limit;
    uint64_t matched;
} s_query_t;

static shoal_ref_t s_hit_ref(const s_hit_t *h)
{
    return h->o ? h->o->ref : h->t->id;
}

//  Age order: the oldest first; equal times by ref, so a listing is the same every time.
static bool s_hit_before(const s_hit_t *a, const s_hit_t *b)
{
    if (a->since_us != b->since_us)
        return a->since_us < b->since_us;
    shoal_ref_t x = s_hit_ref(a), y = s_hit_ref(b);
    return x.hi != y.hi ? x.hi < y.hi : x.lo < y.lo;
}

static int s_hit_order(const void *a, const void *b)
{
    return s_hit_before(a, b) ? -1 : s_hit_before(b, a) ? 1 : 0;
}

static void s_hit_swap(s_hit_t *a, s_hit_t *b)
{
    s_hit_t t = *a;
    *a = *b;
    *b = t;
}

static void s_query_offer(s_query_t *qs, s_hit_t hit)
{
    qs->matched++;
    s_hit_t *h = qs->heap;
    if (qs->n < qs->limit) {
        if (qs->n == qs->cap) {
            size_t cap = SHOAL__MIN(qs->cap ? qs->cap * 2 : 64, qs->limit);
            if (!(h = realloc(qs->heap, cap * sizeof *h)))
                abort();
            qs->heap = h;
            qs->cap = cap;
        }
        size_t i = qs->n++;
        h[i] = hit;
        for (; i && s_hit_before(&h[(i - 1) / 2], &h[i]); i = (i - 1) / 2)
            s_hit_swap(&h[(i - 1) / 2], &h[i]);
        return;
    }
    if (!s_hit_before(&hit, &h[0]))
        return;
    h[0] = hit;
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < qs->n && s_hit_before(&h[top], &h[l]))
            top = l;
        if (r < qs->n && s_hit_before(&h[top], &h[r]))
            top = r;
        if (top == i)
            break;
        s_hit_swap(&h[i], &h[top]);
        i = top;
    }
}

static bool s_has_tag(const s_meta_t *m, const char *tag)
{
    const char *p = m->tags;
    for (uint32_t i = 0; i < m->n_tags; i++, p += strlen(p) + 1)
        if (strcmp(p, tag) == 0)
            return true;
    return false;
}

//  The worker whose store holds (or is being written) h's object; NULL: inline.
static const char *s_hit_holder(const s_hit_t *h)
{
    if (h->o)
        return h->o->worker ? h->o->worker->name : NULL;
    const s_meta_t *m = s_meta(h->t);
    //  A put restored from the journal has no worker until that one says hello again.
    return h->t->worker ? h->t->worker->name : m ? m->worker : NULL;
}

//  Offers t's objects that match: a put being written, or each output of a done task
//  that is still in the directory.
static void s_query_task(s_broker_t *self, s_query_t *qs, s_task_t *t)
{
    const shoal_wire_query_t *q = qs->q;
    bool writing = s_is_put(t) && t->state == SHOAL_STATE_RUNNING;
    if (t->state != SHOAL_STATE_DONE && !writing)
        return;
    const s_meta_t *m = s_meta(t);
    if (q->name_glob && (!m || !m->name || fnmatch(q->name_glob, m->name, 0) != 0))
        return;
    if (q->tag && (!m || !s_has_tag(m, q->tag)))
        return;
    if (q->job && (!t->job || strcmp(t->job->name, q->job) != 0))
        return;
    if (writing) {
        s_hit_t hit = {m ? m->since_us : 0, t, NULL};
        const char *holder = s_hit_holder(&hit);
        if (!q->worker || (holder && strcmp(holder, q->worker) == 0))
            s_query_offer(qs, hit);
        return;
    }
    for (uint32_t i = 0; i < t->n_outputs; i++) {
        s_object_t *o = s_object(self, shoal_ref_output(t->id, (uint16_t)i));
        if (!o)
            continue;
        //  A persisted object whose worker is away is listed under that worker's name.
        const char *holder = o->worker ? o->worker->name
                             : o->away ? shoal__refmap_get(self->away, o->ref)
                                       : NULL;
        if (!q->worker || (holder && strcmp(holder, q->worker) == 0))
            s_query_offer(qs, (s_hit_t){o->since_us, t, o});
    }
}

/*  One walk of the task map (of the job's list with a job filter), keeping the limit
    oldest matches; the reply lists them oldest first, as many as fit in S_QUERY_BYTES,
    and counts the rest in more. Strings are borrowed from the broker's state and sent
    within the call. */
static void s_on_query(s_broker_t *self, const shoal_wire_peer_t *peer, shoal_wire_query_t *m)
{
    //  "" filters nothing, as NULL.
    char **filters[] = {&m->name_glob, &m->tag, &m->worker, &m->job};
    for (size_t i = 0; i < SHOAL__ARRAY_SIZE(filters); i++)
        if (*filters[i] && !**filters[i])
            *filters[i] = NULL;
    s_query_t qs = {.q = m,
                    .limit = m->limit ? (size_t)SHOAL__MIN(m->limit, SHOAL_QUERY_LIMIT_MAX)
                                      : SHOAL_QUERY_DEFAULT_LIMIT};
    if (m->job) {
        s_job_t *j = s_job_find(self, m->job);
        for (uint32_t i = 0; j && i < j->n_tasks; i++)
            if (j->tasks[i])
                s_query_task(self, &qs, j->tasks[i]);
    } else {
        size_t cursor = 0;
        void *value;
        while (shoal__refmap_next(self->tasks, &cursor, NULL, &value))
            s_query_task(self, &qs, value);
    }
    if (qs.n)
        qsort(qs.heap, qs.n, sizeof *qs.heap, s_hit_order);
    size_t n_tags = 0;
    for (size_t i = 0; i < qs.n; i++)
        n_tags += s_meta(qs.heap[i].t) ? s_meta(qs.heap[i].t)->n_tags : 0;
    shoal_wire_object_info_t *items = calloc(qs.n ? qs.n : 1, sizeof *items);
    char **tags = calloc(n_tags ? n_tags : 1, sizeof *tags);
    if (!items || !tags)
        abort();
    int64_t now = shoal__now_us();
    //  msgpack spends at most 9 bytes on an integer, 5 on a string's or array's header:
    //  two refs (18 each), three integers and five headers bound an entry's frame.
    size_t bytes = 64, k = 0;
    char **tag_at = tags;
    for (size_t i = 0; i < qs.n; i++) {
        const s_hit_t *h = &qs.heap[i];
        const s_meta_t *meta = s_meta(h->t);
        const char *holder = s_hit_holder(h);
        if (!holder && h->o && h->o->away)
            holder = shoal__refmap_get(self->away, h->o->ref);
        const char *name = meta ? meta->name : NULL;
        uint32_t nt = meta ? meta->n_tags : 0;
        size_t need =
            2 * 18 + 3 * 9 + 5 * 5 + (name ? strlen(name) : 0) + (holder ? strlen(holder) : 0);
        const char *p = meta ? meta->tags : NULL;
        for (uint32_t j = 0; j < nt; j++, p += strlen(p) + 1) {
            tag_at[j] = (char *)p;
            need += strlen(p) + 5;
        }
        if (64 + need > S_QUERY_BYTES)
            continue; //  could never be listed (a name from before SHOAL_NAME_MAX): in more
        if (bytes + need > S_QUERY_BYTES)
            break;
        bytes += need;
        items[k] = (shoal_wire_object_info_t){
            .ref = s_hit_ref(h),
            .name = (char *)name,
            .tags = {nt ? tag_at : NULL, nt},
            .size = h->o   ? h->o->size
                    : meta ? meta->size
                           : 0,
            .state = !h->o                                            ? SHOAL_OBJECT_ALLOCATED
                     : !h->o->data && s_is_persisted(self, h->o->ref) ? SHOAL_OBJECT_PERSISTED
                     : h->o->spilled                                  ? SHOAL_OBJECT_SPILLED
                                                                      : SHOAL_OBJECT_SEALED,
            .worker = (char *)holder,
            .task = h->t->id,
            .age_ms = (uint64_t)SHOAL__MAX(now - h->since_us, (int64_t)0) / 1000,
        };
        tag_at += nt;
        k++;
    }
    shoal_wire_query_reply_t reply = {.seq = m->seq, .objects = {items, k}, .more = qs.matched - k};
    shoal_wire_send(self->router, peer, SHOAL_MSG_query_reply, &reply, NULL, 0);
    free(tags);
    free(items);
    free(qs.heap);
}

/*  ------------------------------------------------------------------------- the loop */

static void s_handle(s_broker_t *self, shoal_wire_in_t *in)
{
    shoal_msg_t *m = &in->msg;
    const shoal_wire_peer_t *peer = &in->peer;
    s_worker_t *w = s_worker_by_peer(self, peer);
    if (w)
        w->last_heard_us = shoal__now_us();
    switch (m->type) {
    case SHOAL_MSG_hello: {
        shoal_wire_hello_ok_t ok = {.version = SHOAL_PROTO_VERSION,
                                    .events = self->events_ep,
                                    .inline_max = SHOAL_INLINE_MAX,
                                    .max_msg = SHOAL_MAX_MSG_SIZE};
        if (m->u.hello.version != SHOAL_PROTO_VERSION)
            shoal_wire_send_error(self->router, peer, SHOAL_EVERSION,
                                  "protocol version %llu, this broker speaks %d",
                                  (unsigned long long)m->u.hello.version, SHOAL_PROTO_VERSION);
        else
            shoal_wire_send(self->router, peer, SHOAL_MSG_hello_ok, &ok, NULL, 0);
        break;
    }
    case SHOAL_MSG_submit:
        s_on_submit(self, peer, &m->u.submit);
        break;
    case SHOAL_MSG_watch:
        s_on_watch(self, peer, &m->u.watch);
        break;
    case SHOAL_MSG_cancel:
        s_on_cancel(self, peer, &m->u.cancel);
        break;
    case SHOAL_MSG_remove:
        s_on_remove(self, peer, &m->u.remove);
        break;
    case SHOAL_MSG_release:
        s_on_release(self, peer, &m->u.release);
        break;
    case SHOAL_MSG_workers:
        s_on_workers(self, peer, &m->u.workers);
        break;
    case SHOAL_MSG_jobs:
        s_on_jobs(self, peer, &m->u.jobs);
        break;
    case SHOAL_MSG_job_tasks:
        s_on_job_tasks(self, peer, &m->u.job_tasks);
        break;
    case SHOAL_MSG_query:
        s_on_query(self, peer, &m->u.query);
        break;
    case SHOAL_MSG_w_hello:
        s_on_w_hello(self, peer, &m->u.w_hello);
        break;
    case SHOAL_MSG_w_bye:
        if (w) {
            char reason[160];
            snprintf(reason, sizeof reason, "shut down (%s)",
                     m->u.w_bye.reason ? m->u.w_bye.reason : "no reason given");
            s_worker_remove(self, w, reason);
        }
        break;
    case SHOAL_MSG_heartbeat:
    case SHOAL_MSG_w_started:
    case SHOAL_MSG_w_done:
    case SHOAL_MSG_w_objects:
        if (!w) {
            //  A worker the broker does not know (restarted broker, or declared dead):
            //  it says hello again and resends what is unacknowledged.
            shoal_wire_send_error(self->router, peer, SHOAL_ESTATE,
                                  "unknown worker: send w_hello first");
            break;
        }
        if (m->type == SHOAL_MSG_heartbeat) {
            w->store_bytes = m->u.heartbeat.store_bytes;
            w->running = m->u.heartbeat.running;
            w->queued = m->u.heartbeat.queued;
        } else if (m->type == SHOAL_MSG_w_objects) {
            s_on_w_objects(self, w, &m->u.w_objects);
        } else if (m->type == SHOAL_MSG_w_started) {
            for (size_t i = 0; i < m->u.w_started.tasks.count; i++) {
                shoal_wire_attempt_ref_t *a = &m->u.w_started.tasks.items[i];
                s_task_t *t = shoal__refmap_get(self->tasks, a->id);
                if (t && t->state == SHOAL_STATE_RUNNING && t->attempt == a->attempt)
                    s_event_task(self, "task.started", t);
            }
        } else {
            for (size_t i = 0; i < m->u.w_done.results.count; i++)
                s_on_result(self, w, &m->u.w_done.results.items[i]);
            w->store_bytes = m->u.w_done.store_bytes;
            s_ack_t a = {.peer = *peer,
                         .type = SHOAL_MSG_w_done_ack,
                         .seq = m->u.w_done.seq,
                         .due_us = self->turn_us + S_ACK_HOLD_US};
            S_PUSH(self->acks, self->n_acks, self->cap_acks, a);
        }
        break;
    default:
        self->n_malformed++;
        shoal_wire_send_error(self->router, peer, SHOAL_EPROTO,
                              "unexpected message '%s' at the broker", shoal_msg_name(m->type));
        break;
    }
}

static void s_on_xpub(s_broker_t *self)
{
    for (int i = 0; i < S_DRAIN_MAX; i++) {
        char buf[256];
        int n = zmq_recv(self->xpub, buf, sizeof buf - 1, ZMQ_DONTWAIT);
        if (n < 1)
            return;
        n = SHOAL__MIN(n, (int)sizeof buf - 1);
        buf[n] = '\0';
        if (buf[0] == 1) {
            S_PUSH(self->subs, self->n_subs, self->cap_subs, s_strdup(buf + 1));
        } else if (buf[0] == 0) {
            for (size_t k = 0; k < self->n_subs; k++)
                if (strcmp(self->subs[k], buf + 1) == 0) {
                    free(self->subs[k]);
                    self->subs[k] = self->subs[--self->n_subs];
                    break;
                }
        }
    }
}

static void s_tick(s_broker_t *self)
{
    //  Give back what bursts left behind: a million queued submissions arrive as a
    //  thousand batches whose receive buffers and decoded copies are freed at once but
    //  stay in the heap (measured: 33 bytes per queued task). Once a second, a walk of the
    //  free lists, is cheap next to keeping that.
    malloc_trim(0);
    int64_t now = shoal__now_us();
    int64_t dead_us = (int64_t)self->cfg.heartbeat_ms * self->cfg.dead_after * 1000;
    shoal_wire_heartbeat_t hb = {0};
    for (size_t i = 0; i < self->n_workers;) {
        s_worker_t *w = self->workers[i];
        if (now - w->last_heard_us > dead_us) {
            char reason[128];
            snprintf(reason, sizeof reason, "no heartbeat for %lld ms",
                     (long long)((now - w->last_heard_us) / 1000));
            s_worker_remove(self, w, reason); //  swaps the last worker into slot i
            continue;
        }
        shoal_wire_send(self->router, &w->peer, SHOAL_MSG_heartbeat, &hb, NULL, 0);
        i++;
    }
    if (s_wants(self, "broker.stats")) {
        s_event_t ev;
        s_event_begin(self, &ev, 10);
        s_ev_int(&ev, "inline_bytes", (int64_t)self->inline_bytes);
        s_ev_int(&ev, "ttl_pending", (int64_t)self->ttl.live);
        s_ev_int(&ev, "tombstones", (int64_t)shoal__refmap_size(self->gone));
        s_ev_int(&ev, "malformed", (int64_t)self->n_malformed);
        s_ev_int(&ev, "workers", (int64_t)self->n_workers);
        s_ev_int(&ev, "tasks", (int64_t)shoal__refmap_size(self->tasks));
        s_ev_int(&ev, "ready", (int64_t)s_queue_len(&self->ready));
        s_ev_int(&ev, "submitted", (int64_t)self->n_submitted);
        s_ev_int(&ev, "done", (int64_t)self->n_done);
        s_ev_int(&ev, "failed", (int64_t)self->n_failed);
        s_event_send(self, "broker.stats", &ev);
    }
}

/*  ------------------------------------------------------------------------- restart */

static void s_reload_task(void *arg, const shoal_wire_task_t *spec)
{
    s_broker_t *self = arg;
    if (shoal__refmap_get(self->tasks, spec->id))
        return;
    s_task_t *t = s_task_new(self, spec);
    t->state = SHOAL_STATE_WAITING;
    if (s_is_put(t) && (spec->flags & SHOAL_OUT_INLINE)) {
        //  Its bytes are in its spec, not in the task: back in the directory now (its outcome,
        //  if one was recorded, may still say it failed).
        s_object_set(self, t->id, spec->arg.size, spec->arg.data ? spec->arg.data : (void *)"",
                     NULL);
        t->all_inline = true;
        t->state = SHOAL_STATE_DONE;
        self->n_done++;
    }
    shoal__refmap_put(self->tasks, t->id, t);
    s_job_join(self, t, spec->job);
}

static void s_reload_final(void *arg, shoal_ref_t id, const shoal_wire_statuses_t *outcome)
{
    s_broker_t *self = arg;
    s_task_t *t = shoal__refmap_get(self->tasks, id);
    if (!t || outcome->items.count == 0)
        return;
    const shoal_wire_status_t *first = &outcome->items.items[0];
    if (first->state == SHOAL_STATE_FAILED || first->state == SHOAL_STATE_CANCELED) {
        if (t->state == SHOAL_STATE_DONE) { //  an inline put, refused (its budget)
            s_object_t *o = s_object(self, t->id);
            if (o)
                s_object_forget(self, o, "removed");
            self->n_done--;
        }
        s_set_state(t, (uint8_t)first->state);
        s_task_x_t *x = s_x(t);
        x->code = first->code;
        x->exit_code = first->exit_code;
        free(x->error);
        x->error = s_strdup(first->error);
        self->n_failed++;
    } else if ((first->state == SHOAL_STATE_DONE ||
                (first->state == SHOAL_STATE_UNKNOWN && t->n_outputs > 0)) &&
               t->state != SHOAL_STATE_DONE) {
        //  UNKNOWN: output 0 was removed (s_journal_removed); only a done task has that.
        s_set_state(t, SHOAL_STATE_DONE);
        self->n_done++;
    }
    /*  Objects: inline bytes come back now; the rest once their worker says hello. A
        persisted one is away meanwhile, under the name of the worker the outcome recorded
        (status.worker: its holder when the task finished, or the away worker's name, which
        it keeps), as if that worker had died: its readers wait for that worker's hello,
        which brings it back or, without it, loses it (s_away_lost), instead of finding it
        lost at the first dispatch (2 heartbeats) when its worker restarts later. */
    for (size_t i = 0; i < outcome->items.count; i++) {
        const shoal_wire_status_t *st = &outcome->items.items[i];
        if (st->state != SHOAL_STATE_DONE || s_object(self, st->ref))
            continue;
        bool whole = (st->flags & SHOAL_OUT_INLINE) && st->data.size == st->size;
        s_object_set(self, st->ref, st->size, whole ? st->data.data : NULL, NULL);
        s_object_t *o = s_object(self, st->ref);
        if (whole || !o || !st->worker || !st->worker[0] || !s_is_persisted(self, st->ref))
            continue;
        char *name = strdup(st->worker);
        if (name && shoal__refmap_put(self->away, st->ref, name) == 0)
            o->away = true;
        else
            free(name); //  out of memory: no worse than before, lost at the first dispatch
    }
}

//  Rebuilds tasks, outcomes and dependencies from the journal, then waits two heartbeats
//  before dispatching so workers can say hello again and report what they hold.
static int s_journal_reload(s_broker_t *self)
{
    int rc = shoal__journal_load(self->journal, s_reload_task, s_reload_final, self);
    if (rc)
        return rc;
    size_t cursor = 0, pending = 0;
    void *value;
    while (shoal__refmap_next(self->tasks, &cursor, NULL, &value)) {
        s_task_t *t = value;
        if (s_is_final(t->state))
            continue;
        for (uint32_t i = 0; i < t->n_inputs; i++) {
            s_task_t *p = shoal__refmap_get(self->tasks, shoal_ref_task(s_inputs(t)[i]));
            if (!p)
                continue;
            s_task_x_t *px = s_x(p);
            S_PUSH(px->consumers, px->n_consumers, px->cap_consumers, t->id);
            if (s_producer_waits(self, p))
                t->missing++;
        }
        pending++;
    }
    //  Failed producers fail their consumers as at submission; the rest become ready, but
    //  a put never runs: one that was being written waits for its worker to say hello,
    //  for as long as the broker waits before dispatching, plus what it gives a silent
    //  worker before declaring it dead; then it is lost. Done tasks with a ttl live that
    //  long from now.
    int64_t hello_by = shoal__now_us() + 2 * (int64_t)self->cfg.heartbeat_ms * 1000;
    int64_t put_lost_at = hello_by + (int64_t)self->cfg.dead_after * self->cfg.heartbeat_ms * 1000;
    cursor = 0;
    while (shoal__refmap_next(self->tasks, &cursor, NULL, &value)) {
        s_task_t *t = value;
        if (t->state == SHOAL_STATE_FAILED || t->state == SHOAL_STATE_CANCELED)
            s_propagate_failure(self, t);
        else if (t->state == SHOAL_STATE_WAITING && s_is_put(t)) {
            s_set_state(t, SHOAL_STATE_RUNNING);
            S_PUSH(self->unbound, self->n_unbound, self->cap_unbound, t->id);
            s_put_due_arm(self, t, put_lost_at);
        } else if (t->state == SHOAL_STATE_WAITING)
            s_make_ready(self, t, false);
        else if (t->state == SHOAL_STATE_DONE)
            s_ttl_arm(self, t);
    }
    if (shoal__refmap_size(self->tasks)) {
        shoal__info("journal: %zu task(s) restored, %zu to run, %zu persisted object(s) wait "
                    "for their workers",
                    shoal__refmap_size(self->tasks), pending, shoal__refmap_size(self->away));
        self->dispatch_after_us = hello_by;
    }
    return 0;
}

static bool s_is_loopback(const char *ep)
{
    return strncmp(ep, "tcp://127.", 10) == 0 || strncmp(ep, "tcp://localhost:", 16) == 0 ||
           strncmp(ep, "tcp://[::1]:", 12) == 0 || strncmp(ep, "ipc://", 6) == 0 ||
           strncmp(ep, "inproc://", 9) == 0;
}

static int s_bind(void *sock, const char *ep, char *bound, size_t bound_size, const char *what)
{
    if (zmq_bind(sock, ep) != 0) {
        shoal__error("cannot listen for %s on %s: %s", what, ep, zmq_strerror(errno));
        return errno == EADDRINUSE ? SHOAL_EEXIST : SHOAL_EINVAL;
    }
    size_t len = bound_size;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, bound, &len);
    return 0;
}

static void s_destroy(s_broker_t *self)
{
    size_t cursor = 0;
    void *value;
    while (shoal__refmap_next(self->tasks, &cursor, NULL, &value))
        s_task_free(self, value);
    cursor = 0;
    while (shoal__refmap_next(self->objects, &cursor, NULL, &value)) {
        free(((s_object_t *)value)->data);
        free(value);
    }
    shoal__refmap_destroy(&self->tasks);
    for (size_t i = 0; i < self->n_slabs; i++)
        munmap(self->slabs[i], S_SLAB_TASKS * sizeof(s_task_t));
    free(self->slabs);
    for (size_t i = 0; i < S_FN_BUCKETS; i++)
        while (self->fns[i]) {
            s_str_t *next = self->fns[i]->next;
            free(self->fns[i]);
            self->fns[i] = next;
        }
    shoal__refmap_destroy(&self->objects);
    size_t away_cursor = 0;
    void *away_name;
    while (shoal__refmap_next(self->away, &away_cursor, NULL, &away_name))
        free(away_name);
    shoal__refmap_destroy(&self->away);
    shoal__refmap_destroy(&self->gone);
    for (size_t i = 0; i < self->n_jobs; i++) {
        free(self->jobs[i]->tasks);
        free(self->jobs[i]->name);
        free(self->jobs[i]);
    }
    free(self->jobs);
    shoal__refmap_destroy(&self->job_names);
    shoal__journal_close(&self->journal);
    for (size_t i = 0; i < self->n_workers; i++)
        s_worker_free(self->workers[i]);
    free(self->workers);
    free(self->ttl.items);
    free(self->put_due.items);
    free(self->gone_ring);
    free(self->unbound);
    free(self->acks);
    free(self->ready.items);
    for (size_t i = 0; i < self->n_outbox; i++)
        free(self->outbox[i].items);
    free(self->outbox);
    for (size_t i = 0; i < self->n_subs; i++)
        free(self->subs[i]);
    free(self->subs);
    if (self->router)
        zmq_close(self->router);
    if (self->xpub)
        zmq_close(self->xpub);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
}

int shoal_broker_run(const shoal_broker_config_t *config)
{
    s_broker_t self_s = {0}, *self = &self_s;
    self->cfg = *config;
    if (!self->cfg.listen)
        self->cfg.listen = "tcp://127.0.0.1:7400";
    if (!self->cfg.events)
        self->cfg.events = "tcp://127.0.0.1:7401";
    if (self->cfg.heartbeat_ms <= 0)
        self->cfg.heartbeat_ms = 1000;
    if (self->cfg.dead_after <= 0)
        self->cfg.dead_after = 5;
    if (!self->cfg.inline_budget)
        self->cfg.inline_budget = 1ull << 30; //  see broker.h
    self->put_lease_ms = self->cfg.put_lease_ms > 0 ? self->cfg.put_lease_ms : SHOAL_PUT_LEASE_MS;
    self->turn_us = shoal__now_us();
    if (self->cfg.state_dir) {
        int rc = shoal__mkdir_p(self->cfg.state_dir, 0700);
        if (rc) {
            shoal__error("cannot create state dir %s: %s", self->cfg.state_dir, strerror(-rc));
            return SHOAL_EIO;
        }
    }
    self->tasks = shoal__refmap_new();
    self->objects = shoal__refmap_new();
    self->away = shoal__refmap_new();
    self->job_names = shoal__refmap_new();
    self->gone = shoal__refmap_new();
    self->ctx = zmq_ctx_new();
    if (!self->tasks || !self->objects || !self->away || !self->job_names || !self->gone ||
        !self->ctx) {
        s_destroy(self);
        return SHOAL_ENOMEM;
    }
    if (self->cfg.state_dir) {
        int rc = shoal__journal_open(self->cfg.state_dir, &self->journal);
        if (!rc)
            rc = s_journal_reload(self);
        if (rc) {
            s_destroy(self);
            return rc;
        }
    }
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    self->xpub = zmq_socket(self->ctx, ZMQ_XPUB);
    int one = 1, zero = 0, hwm = S_HWM;
    int64_t maxmsg = SHOAL_MAX_MSG_SIZE;
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->xpub, ZMQ_LINGER, &zero, sizeof zero);
    int64_t sub_max = 4096; //  subscriptions are short topic prefixes
    zmq_setsockopt(self->xpub, ZMQ_MAXMSGSIZE, &sub_max, sizeof sub_max);
    int rc = s_bind(self->router, self->cfg.listen, self->listen_ep, sizeof self->listen_ep,
                    "clients and workers");
    if (rc == 0)
        rc =
            s_bind(self->xpub, self->cfg.events, self->events_ep, sizeof self->events_ep, "events");
    if (rc) {
        s_destroy(self);
        return rc;
    }
    if (!s_is_loopback(self->listen_ep))
        shoal__warn("listening on %s without CURVE: anyone who reaches this address can run "
                    "commands on every worker (see docs/operations.md)",
                    self->listen_ep);
    //  The one line `shoal up`, scripts and tests read to learn the bound ports.
    printf("shoal broker: listening on %s, events on %s\n", self->listen_ep, self->events_ep);
    fflush(stdout);

    struct sigaction sa = {.sa_handler = s_on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    self->next_tick_us = shoal__now_us() + self->cfg.heartbeat_ms * 1000;
    shoal_wire_in_t in;
    while (!s_stop_requested) {
        int64_t now = shoal__now_us();
        int64_t wait_us = s_ttl_wait_us(self, now, self->next_tick_us - now);
        wait_us = s_acks_wait_us(self, now, wait_us);
        //  Rounded up: a timeout of 0 ms for a deadline 0.4 ms away would spin.
        long timeout = wait_us <= 0 ? 0 : (long)((wait_us + 999) / 1000);
        zmq_pollitem_t items[] = {{self->router, 0, ZMQ_POLLIN, 0}, {self->xpub, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            shoal__error("poll failed: %s", zmq_strerror(errno));
            break;
        }
        self->turn_us = shoal__now_us();
        if (items[1].revents & ZMQ_POLLIN)
            s_on_xpub(self);
        if (items[0].revents & ZMQ_POLLIN) {
            for (int i = 0; i < S_DRAIN_MAX; i++) {
                int r = shoal_wire_recv(self->router, true, &in, ZMQ_DONTWAIT);
                if (r == SHOAL_EAGAIN || r == SHOAL_EIO)
                    break;
                if (r) {
                    self->n_malformed++;
                    shoal__debug("malformed message (%s)", shoal_strerror(r));
                    if (in.peer.size)
                        shoal_wire_send_error(self->router, &in.peer, r, "%s",
                                              r == SHOAL_EVERSION ? "protocol version mismatch"
                                                                  : "malformed message");
                    continue;
                }
                s_handle(self, &in);
                shoal_wire_in_clear(&in);
                //  Statuses borrow the broker's state: send them before it changes again.
                s_flush_outbox(self);
            }
        }
        if (shoal__now_us() >= self->next_tick_us) {
            s_tick(self);
            s_gone_expire(self);
            s_put_due_expire(self);
            self->next_tick_us = shoal__now_us() + self->cfg.heartbeat_ms * 1000;
        }
        s_ttl_expire(self);
        if (shoal__now_us() >= self->dispatch_after_us)
            s_dispatch(self);
        s_flush_outbox(self);
        s_flush_drops(self);
        if (self->journal)
            shoal__journal_commit(self->journal);
        s_flush_acks(self, shoal__now_us());
    }
    s_flush_acks(self, 0);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    s_stop_requested = 0; //  here, not at the start: a stop that came early still counts
    shoal__info("stopping: %zu tasks known, %zu workers", shoal__refmap_size(self->tasks),
                self->n_workers);
    s_destroy(self);
    return 0;
}
