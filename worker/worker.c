/*  worker.c: the shoal worker daemon.

    One thread, one loop (zmq_poll over raw libzmq sockets and two fds). Each turn: wait
    for the broker DEALER, the data ROUTER, the executors' ROUTER, the peer DEALERs it
    fetches from, a signalfd (SIGINT, SIGTERM, SIGCHLD) and a self-pipe (shoal_worker_stop);
    drain up to S_DRAIN_MAX messages a socket; run the timers; then move work along: send
    fetch requests for missing inputs, hand runnable tasks to idle executors, and flush
    what the turn produced, batched: one shoal_store_flush (one LMDB transaction), one
    w_done (split only to stay far below the message limit) and, for tasks running 10 ms
    or more, one w_started.

    Tasks: the broker hands over up to `capacity` tasks (slots + prefetch). Each waits in
    the local queue while its missing inputs are fetched from the peers that hold them
    (opportunistic prefetch, chunks of 1 MiB, S_FETCH_WINDOW in flight per peer), then
    goes FIFO to the idle executors, in batches of short tasks (worker.h). Inputs in use
    by queued or running tasks are counted, so a w_drop of one waits until no task needs
    it. Copies of other workers' objects made for inputs are evicted, least recently used
    first, when the store is full.

    Per task, on the path of a no-op fn task, the worker's own code neither allocates nor
    calls the system: a task struct from a pool, pointing into the w_dispatch it came in
    (kept while its tasks live); results that point into the executor's message (kept
    until the flush) and into a bump arena emptied each turn; a w_done encoded once per
    turn and kept encoded for resends; inline outputs not stored (the broker keeps them),
    nor inline inputs (they go to the executor in the e_run), so no arena page and no LMDB
    entry per small object. What is left is mostly the codec (~80% of the worker's ~8,000
    instructions per task).

    Failure: executors run in their own process groups; a cancel or a reset kills the
    group and starts a new executor, and the rest of its batch runs on the new one. A
    w_done is kept until acknowledged and resent. A worker the broker forgot (error
    ESTATE) or that hears nothing for 5 heartbeats says w_hello again, dropping its local
    queue: the broker has requeued those tasks. */
#include "worker.h"

#include "common.h"
#include "refmap.h"
#include "chan.h"
#include "store.h"
#include "wire.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define S_DRAIN_MAX  1000 //  messages per socket per turn, so no socket starves
#define S_DEAD_AFTER 5    //  heartbeats of silence before the broker counts as gone
#define S_RETRY_MS   100  //  a send that met a full pipe is tried again after this
//  While the broker connection is not up (ZMQ_IMMEDIATE), hello is tried again after 10 ms
//  (a loopback connect takes about 1 ms), doubling up to 500 ms.
#define S_HELLO_RETRY_MIN_MS 10
#define S_HELLO_RETRY_MAX_MS 500
#define S_DONE_RESEND_MS     2000 //  an unacknowledged w_done goes again after this
#define S_DONE_PENDING_MAX   4096 //  unacknowledged w_done messages kept (each <= 8 MiB)
//  Inline bytes per w_done: 8 MiB stays far below SHOAL_MAX_MSG_SIZE (64 MiB) at the
//  broker while still carrying ~128 full 64 KiB results.
#define S_DONE_BUDGET (8u << 20)
//  Inline bytes per result: a task with many small outputs sends the rest by location.
#define S_RESULT_INLINE_BUDGET (4u << 20)
#define S_FETCH_WINDOW         8           //  chunk requests in flight per peer (protocol.md)
#define S_FETCH_TIMEOUT_MS     10000       //  a peer silent this long with fetches pending is gone
#define S_PEER_IDLE_MS         60000       //  peer sockets unused this long are closed
#define S_DATA_REPLY_MAX       (16u << 20) //  bytes per data reply, whatever length asks
#define S_DATA_STASH_MAX       1024        //  fetch requests held while readers' pipes are full
//  Streaming fetches held until bytes land: a reader holds one at a time (its frontier), so
//  4096 is 4096 streaming readers; beyond that a reader is told to ask again.
#define S_STREAM_WAIT_MAX 4096
#define S_STREAM_HOLD_MS  5000  //  the longest a streaming fetch is held (wait_ms is capped)
#define S_LINGER_MS       200   //  pending sends at close: enough, and never a hang
#define S_RESPAWN_MAX_MS  10000 //  back-off cap for an executor that keeps dying at start
#define S_QUEUE_SLACK     64    //  tasks accepted beyond capacity before refusing
//  The default prefetch depth, at least: the broker refills a worker's credit one round trip
//  (its turn plus ours, 1-2 ms under load) after results leave, and a worker turns over
//  ~50,000 short tasks/s, so it needs about 100 tasks in hand not to idle between refills.
//  Measured with no-op tasks, 2 workers x 1 slot: depth 2: 15,000 tasks/s, 32: 70,000,
//  64: 95,000, 128: 110,000. The cost: long tasks queued here wait for this worker even
//  when another frees up (the broker does not steal them back yet).
#define S_PREFETCH_MIN 128
//  Batches (worker.h). An e_run costs both ends ~20 us of CPU and a wake-up each: batching
//  pays for tasks of tens of microseconds and matters little beyond 1 ms, so a fn task
//  whose function averaged more than S_BATCH_SHORT_US goes alone, and a batch holds about
//  S_BATCH_BUDGET_US of expected work: what one executor may hold while another idles.
#define S_BATCH_SHORT_US  1000
#define S_BATCH_BUDGET_US 2000
#define S_EST_SLOTS       64 //  functions whose runtime is remembered (direct-mapped by hash)
//  w_started goes only for tasks still running this long after they started: shorter ones
//  are reported by their result alone, with no message (and no wake-up) for the start.
#define S_STARTED_DELAY_MS 10
//  A task requeued this many times because its executor died while no task was running
//  (the progress page blames nobody) fails instead of going round for ever.
#define S_EXEC_LOST_MAX 3
//  A w_dispatch whose tasks carry at most this many bytes (arguments, inline inputs) is
//  kept whole while any of its tasks lives, instead of copying each task out of it: a
//  straggler holds at most this much memory hostage.
#define S_PIN_MAX (64u << 10)
//  The per-turn bump arena grows in chunks of 64 KiB.
#define S_BUMP_CHUNK (64u << 10)
//  A peer's store on this host that cannot be read is tried again after this long.
#define S_NEAR_RETRY_MS 10000
//  An allocation that does not fit now (not even after evicting unused input copies)
//  waits this long for room -- outputs read and dropped, puts aborted, pins released --
//  before it fails with SHOAL_EFULL. Bounded: a writer is never left hanging, also when a
//  disk tier is spilling for it (1 GB/s here: 5 s is ~5 GB spilled) or is full.
#define S_ALLOC_WAIT_MS 5000
//  Spill work per loop turn while allocations wait for room: 8 MiB is 8 pieces and one
//  synced commit, 7-19 ms here (shoal bench spill, docs/architecture.md), so a 256 MiB
//  spill takes 32 turns and the loop still answers fetches, heartbeats and executors
//  between them.
#define S_SPILL_BUDGET (8ull << 20)
//  After a spill found nothing to move (the disk tier full, or every object in use), wait
//  this long before trying again, so the loop does not spin on it.
#define S_SPILL_RETRY_MS 100
//  Persists are written in steps too: at most S_PERSIST_STEP bytes (one synced commit, as
//  a spill step) and S_PERSIST_TURN_US of persisting a loop turn (many small persists
//  cost an fdatasync each), so a 4 GiB persist (about 4 s here) never makes the broker,
//  which counts 5 s of silence as death, lose the worker. $SHOAL_TEST_PERSIST_STEP (bytes)
//  sets the step, so a test forces many steps with a few MiB.
#define S_PERSIST_STEP    (8ull << 20)
#define S_PERSIST_TURN_US 20000
//  What each object of a persist costs of a turn's step at least: a small object's copy is
//  two fdatasyncs (its commit and the meta page), about 1 ms here, the time 512 KiB of
//  pieces take; an object already spilled costs nothing else. So a task with 1000 small
//  stored outputs is written 16 a turn, not all in one turn of 2000 syncs (2 s).
#define S_PERSIST_REF_COST (512ull << 10)
#define S_PERSIST_STEP_ENV "SHOAL_TEST_PERSIST_STEP"
//  Tests: while the file $SHOAL_TEST_PERSIST_GATE names exists, no persist step is written
//  (looked at every 10 ms), so a test can kill a worker in the middle of a persist.
#define S_PERSIST_GATE_ENV "SHOAL_TEST_PERSIST_GATE"

/*  ------------------------------------------------------------------------- types */

typedef struct s_task s_task_t;
typedef struct s_fetch s_fetch_t;
typedef struct s_peer s_peer_t;

//  A FIFO of tasks (the ready queue, the tasks waiting for room in the store).
typedef struct {
    s_task_t *head, *tail;
    size_t n;
} s_list_t;

enum { S_TASK_FETCHING, S_TASK_READY, S_TASK_RUNNING };

//  A received message kept while tasks point into it.
typedef struct {
    shoal_wire_in_t in;
    size_t refs;
} s_held_t;

struct s_task {
    const shoal_wire_dispatch_t *d; //  in held, or one malloc block (shoal_wire_dup)
    s_held_t *held;                 //  the w_dispatch d points into, or NULL
    int state;
    size_t missing;        //  inputs still being fetched
    size_t n_used;         //  inputs looked at and counted in uses (released on free)
    s_task_t *prev, *next; //  in list (next: in the pool of free tasks)
    s_list_t *list;        //  the ready list, the room list, or NULL
    int slot;              //  RUNNING: the executor slot
    size_t batch_index;    //  RUNNING: its place in the slot's batch
    bool started_sent;     //  a w_started names it
    uint8_t exec_lost;     //  requeued after its executor died blaming nobody
    uint64_t fn_hash;      //  fn tasks: s_hash(fn), the key of runtime estimates; else 0
    shoal_ref_t *allocs;   //  RUNNING: outputs allocated by e_alloc, not yet sealed
    size_t n_allocs;
};

//  A streaming pull's request in flight: [off, off + len) asked with seq; done once its
//  reply came (got bytes) but lies beyond the watermark (replies may come out of order).
//  deadline_us: when to ask again if no reply came (its hold plus S_PULL_RESEND_MS): the
//  holder may have dropped it (its stash drops requests past S_STASH_MAX, "the reader asks
//  again"), and the ask at the watermark must not be waited for in vain.
typedef struct {
    uint64_t seq, off, len, got, wait_ms;
    int64_t deadline_us;
    bool done;
} s_ask_t;

//  A pull keeps at most S_FETCH_WINDOW asks in flight; answered ones beyond the watermark
//  are kept too, until it reaches them, up to this many in all.
#define S_PULL_ASKS_MAX (4 * S_FETCH_WINDOW)

//  One object being copied from a peer into the store. A streaming pull (stream: an input
//  a task streams, still being written on the peer) asks with SHOAL_FETCH_STREAM, learns
//  the size from the first reply, and advances ready, the watermark of our copy, which the
//  executors reading it are told (s_ready); the copy is sealed when the peer's is.
struct s_fetch {
    shoal_ref_t ref;
    s_peer_t *peer;
    s_fetch_t *next; //  in the peer's FIFO
    uint64_t size, nchunks, next_chunk, received;
    uint64_t *got;      //  bitmap of chunks received
    uint8_t *data;      //  the store allocation
    uint64_t seq_base;  //  replies to requests older than this belong to a discarded try
    s_task_t **waiters; //  tasks that need it whole (sealed)
    size_t n_waiters, cap_waiters;
    s_task_t **readers; //  stream: tasks that stream it, runnable once it is sized
    size_t n_readers, cap_readers;
    char *worker; //  the holder's name, for messages
    bool stream, sized, final;
    uint64_t frontier; //  stream: the seq of the ask beyond remote, or 0
    uint64_t ready;    //  stream: bytes here, contiguous from 0
    uint64_t remote;   //  stream: the holder's watermark as last told
    uint64_t next_off; //  stream: the next byte to ask for
    uint64_t gen;      //  stream: the holder's allocation generation
    //  stream: no room for the copy yet: its allocation is tried again as room frees, until
    //  this deadline (S_ALLOC_WAIT_MS after the first try, as for ordinary inputs); else 0.
    int64_t room_until_us;
    s_ask_t asks[S_PULL_ASKS_MAX];
    size_t n_asks;
};

struct s_peer {
    char *endpoint;
    void *sock; //  DEALER, or NULL until needed
    s_fetch_t *head, *tail;
    size_t inflight;
    int64_t last_progress_us; //  last reply, or when work arrived for an idle peer
    int64_t last_used_us;
};

enum { S_SLOT_DOWN, S_SLOT_STARTING, S_SLOT_IDLE, S_SLOT_BUSY, S_SLOT_DYING };

typedef struct {
    int index;
    int state;
    pid_t pid;
    shoal_chan_t *chan; //  to its executor (chan.h), from spawn until it dies
    char chan_arg[24];  //  "fd:N": the executor's end, in its argv
    //  BUSY: the tasks of the e_run it runs, in order; an entry is NULL once its result is
    //  in (or the task is gone); n_left counts the others.
    s_task_t **batch;
    size_t n_batch, cap_batch, n_left;
    size_t hint;                     //  where the next result's task likely is
    uint64_t seq;                    //  the e_run's number (worker.h: progress page)
    int64_t sent_us;                 //  when it was sent
    shoal_exec_progress_t *progress; //  shared with its executor, or NULL
    int progress_fd;                 //  the memfd behind it, inherited by the executor
    int fails;                       //  deaths in a row before saying hello
    int64_t respawn_at_us;           //  DOWN: when to start again
    char index_text[16];
    char scratch[PATH_MAX];
    char **envp; //  prepared before any fork: environ + SHOAL_SCRATCH_DIR
} s_slot_t;

//  A w_done, encoded once: resent as it is until acknowledged.
typedef struct {
    uint64_t seq;
    uint8_t *data; //  the message frame (malloc'd)
    size_t size;
    size_t count;    //  results in it
    int64_t sent_us; //  0: not sent since it was made or since the last hello
} s_done_t;

//  A bump allocator for what a turn's results point to, emptied after the flush.
typedef struct s_bump_chunk s_bump_chunk_t;
struct s_bump_chunk {
    s_bump_chunk_t *next;
    size_t size, used;
    max_align_t data[];
};

//  The average runtime of one function's tasks (fn string hash).
typedef struct {
    uint64_t hash;
    uint64_t avg_us;
} s_est_t;

//  A fetch request held back while the reader's pipe is full.
typedef struct {
    shoal_wire_peer_t peer;
    shoal_wire_fetch_t req;
} s_stash_t;

//  The store of another worker on this host, read for inputs it holds (s_near_copy).
//  reader NULL: it could not be opened at tried_ms (tried again S_NEAR_RETRY_MS later).
typedef struct {
    char *arena;
    shoal_store_reader_t *reader;
    int64_t tried_ms;
} s_near_t;

//  A client's put being written: between its ALLOC and its SEAL or ABORT.
typedef struct {
    shoal_wire_put_t *spec; //  the ALLOC, one shoal_wire_dup block (name, tags, ttl)
    int64_t last_us;        //  its writer's last message: the lease (SHOAL_PUT_LEASE_MS)
    uint64_t watermark;     //  bytes that arrived in WRITEs, contiguous from 0
    //  A writer on this host writes in place and never sends bytes: its WRITEs without
    //  bytes say how many it has written (offset), the watermark streaming readers get.
    uint64_t in_place;
    bool sent_bytes; //  a WRITE with bytes came: the writer is remote, offsets are asks
} s_put_t;

//  A streaming fetch held until bytes beyond its offset land (SHOAL_FETCH_STREAM).
typedef struct {
    shoal_wire_peer_t peer;
    shoal_wire_fetch_t req;
    int64_t deadline_us;
    bool seen; //  the object was in the store when last looked at
    bool exec; //  an executor's e_read (answered by e_ready on the executor socket)
} s_waiter_t;

//  An allocation waiting for room (S_ALLOC_WAIT_MS): an executor's e_alloc (the executor
//  blocks until answered) or a client's put ALLOC.
typedef struct {
    s_slot_t *slot;         //  e_alloc: its executor's slot, else NULL
    pid_t pid;              //  e_alloc: that executor; a new one never gets the answer
    shoal_wire_peer_t peer; //  put: the client
    void *msg;              //  shoal_wire_dup of the e_alloc or put
    int64_t deadline_us;
} s_parked_t;

//  An ALLOC or a SEAL answered after the flush that puts the object in the index: a
//  client on this host looks it up there as soon as it has the answer (a writer pins its
//  allocation, a reader finds the sealed object).
typedef struct {
    shoal_wire_peer_t peer;
    uint64_t seq;
    shoal_ref_t ref;
    bool alloc; //  an ALLOC (else a SEAL)
} s_sealed_t;

/*  A persist in progress, written in steps across loop turns (s_persist_pump): a put's,
    whose SEAL is answered, or a task's stored outputs, whose result goes to the broker,
    once every copy is on disk and synced. */
typedef struct {
    shoal_ref_t *refs; //  the objects to persist, in order (malloc'd)
    uint64_t *gens;    //  s_gen of each when queued: a failed job deletes only its own
    size_t n_refs, next;
    uint64_t done;  //  bytes of refs[next] committed (shoal_store_persist_step's cursor)
    uint64_t bytes; //  committed of the objects before refs[next]
    unsigned turns; //  loop turns that wrote some of it (logged at its end)
    //  a put: its spec and its writer's SEAL (no spec: a resent SEAL that asked for a
    //  persist found the object sealed, not persisted)
    s_put_t *put;
    shoal_wire_peer_t peer;
    uint64_t seq;
    //  a task: its result, held back (one shoal_wire_dup block)
    shoal_wire_result_t *result;
} s_persist_t;

typedef struct {
    //  configuration, defaults applied
    char name[128], store_name[80], broker_ep[256], host[256];
    //  Sizes leave room for what is appended to each within PATH_MAX.
    char store_dir[PATH_MAX - 64], scratch_dir[PATH_MAX - 32];
    char exec_bin[PATH_MAX];
    char data_ep[300]; //  as advertised
    int n_slots;
    uint64_t capacity, shm_size;
    const char *spill_dir;
    uint64_t spill_size;
    bool spill_wanted;      //  an allocation found no room: spill until it fits
    int64_t spill_stuck_ms; //  a spill found nothing to move: try again after this
    int heartbeat_ms, fixed_heartbeat_ms;

    void *ctx, *broker, *data;
    int sigfd, stop_rd;
    sigset_t old_mask;
    bool mask_set;
    shoal_store_t *store;
    const char *arena_path;
    uint64_t arena_dev, arena_ino; //  put replies: a same-host client checks it opened this

    //  broker link
    bool welcomed, hello_warned, stopping;
    int exit_code;
    int64_t hello_next_us, hello_since_us, last_heard_us, last_sent_us;
    int hello_retry_ms;

    //  tasks, inputs and fetches
    shoal__refmap_t *tasks; //  id -> s_task_t
    s_list_t ready;         //  all inputs here: waiting for an executor
    s_list_t room;          //  waiting for space in the store for its next input
    bool room_changed;      //  space may have been freed since the room list was tried
    size_t n_running;
    shoal__refmap_t *uses;    //  ref -> count of queued/running tasks reading it
    shoal__refmap_t *drops;   //  ref -> (void *)1: w_drop waiting until unused
    shoal__refmap_t *copies;  //  ref -> last use in ms + 1: input copies made by this run
    shoal__refmap_t *fetches; //  ref -> s_fetch_t
    s_peer_t **peers;
    size_t n_peers, cap_peers;
    size_t n_pull_room; //  streaming pulls waiting for room for their copy (room_until_us)
    uint64_t fetch_seq;

    s_slot_t *slots;

    //  produced this turn. Results are shallow: what they point to lives in messages kept
    //  until the flush (kept) or in the bump arena.
    shoal_wire_attempt_ref_t *started;
    size_t n_started, cap_started;
    shoal_wire_result_t *results;
    size_t n_results, cap_results;
    shoal_wire_in_t *kept;
    size_t n_kept, cap_kept;
    s_bump_chunk_t *bump;
    s_task_t *free_tasks; //  a pool: no malloc per task
    s_est_t est[S_EST_SLOTS];
    uint64_t batch_seq;
    shoal_wire_e_task_t *etasks; //  e_run being built
    size_t cap_etasks;
    shoal_wire_e_input_t *eins;
    size_t cap_eins;
    //  unacknowledged w_done, oldest first
    s_done_t **done;
    size_t n_done, cap_done;
    uint64_t done_seq;

    s_stash_t *stash;
    size_t n_stash;
    s_waiter_t *waiters; //  streaming fetches held (s_stream_run)
    size_t n_waiters, cap_waiters;
    shoal__refmap_t *gens; //  ref -> allocation generation (s_gen_bump), packed
    size_t gens_sweep_at;

    //  client puts, notes for the broker (w_objects, one shoal_wire_dup each), allocations
    //  waiting for room, SEALs to answer after the flush
    shoal__refmap_t *puts; //  ref -> s_put_t
    shoal_wire_object_note_t **notes;
    size_t n_notes, cap_notes;
    s_parked_t *parked;
    size_t n_parked, cap_parked;
    s_sealed_t *sealed;
    s_persist_t *persists; //  persists written in steps (s_persist_pump), in turn
    size_t persist_next;   //  the one whose step comes next (round robin)
    size_t n_persists, cap_persists;
    uint64_t persist_step;    //  bytes a loop turn writes of them (S_PERSIST_STEP)
    const char *persist_gate; //  S_PERSIST_GATE_ENV, or NULL
    bool persist_gated;       //  the gate held the persists back last turn (said in the log)
    void **held;              //  shoal_wire_dup blocks results point to until the flush
    size_t n_held, cap_held;
    size_t n_sealed, cap_sealed;
    int64_t puts_checked_us;
    s_near_t *nears; //  stores of the other workers on this host
    size_t n_nears;

    uint64_t n_malformed, n_tasks_done, n_tasks_failed;
} s_worker_t;

static volatile sig_atomic_t s_stop_flag;
static volatile int s_stop_wr = -1;

void shoal_worker_stop(void)
{
    int saved = errno;
    s_stop_flag = 1;
    int fd = s_stop_wr;
    if (fd >= 0) {
        char c = 1;
        ssize_t rc = write(fd, &c, 1);
        (void)rc;
    }
    errno = saved;
}

#define S_PUSH(arr, n, cap, item)                                                                  \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            size_t ncap__ = (cap) ? (cap)*2 : 8;                                                   \
            void *p__ = realloc((arr), ncap__ * sizeof *(arr));                                    \
            if (!p__)                                                                              \
                s_oom();                                                                           \
            (arr) = p__;                                                                           \
            (cap) = ncap__;                                                                        \
        }                                                                                          \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

//  Out of memory in the worker's own bookkeeping: nothing sane is left to do, and the
//  broker requeues what we held once we are gone.
static void s_oom(void) __attribute__((noreturn));
static void s_oom(void)
{
    shoal__error("worker out of memory");
    abort();
}

static void *s_alloc0(size_t size)
{
    void *p = calloc(1, size ? size : 1);
    if (!p)
        s_oom();
    return p;
}

static char *s_strdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        s_oom();
    return p;
}

static const char *s_ref_text(shoal_ref_t ref, char buf[SHOAL_REF_TEXT_SIZE])
{
    return shoal_ref_format(ref, buf);
}

//  "64 MiB"-style sizes for messages.
static const char *s_size_text(uint64_t bytes, char *buf, size_t size)
{
    if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0)
        snprintf(buf, size, "%llu GiB", (unsigned long long)(bytes >> 30));
    else if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0)
        snprintf(buf, size, "%llu MiB", (unsigned long long)(bytes >> 20));
    else if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0)
        snprintf(buf, size, "%llu KiB", (unsigned long long)(bytes >> 10));
    else
        snprintf(buf, size, "%llu bytes", (unsigned long long)bytes);
    return buf;
}

static size_t s_n_outputs(const s_task_t *t)
{
    return t->d->task.n_outputs ? (size_t)t->d->task.n_outputs : 1;
}

//  Malformed input is counted; the first few are logged, then every 1000th, so a
//  flood of garbage cannot flood the log too.
static void s_malformed(s_worker_t *self, const char *where, int rc)
{
    self->n_malformed++;
    if (self->n_malformed <= 10 || self->n_malformed % 1000 == 0)
        shoal__warn("malformed message on the %s socket (%s); %llu so far", where,
                    shoal_strerror(rc), (unsigned long long)self->n_malformed);
}

/*  ------------------------------------------------------------------------ results */

static void *s_bump_alloc(s_worker_t *self, size_t size)
{
    size = size ? (size + 15) & ~(size_t)15 : 16;
    s_bump_chunk_t *c = self->bump;
    if (!c || c->size - c->used < size) {
        size_t cap = size > S_BUMP_CHUNK ? size : S_BUMP_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            s_oom();
        c->next = self->bump;
        c->size = cap;
        c->used = 0;
        self->bump = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

static char *s_bump_strdup(s_worker_t *self, const char *text)
{
    if (!text)
        return NULL;
    size_t n = strlen(text) + 1;
    return memcpy(s_bump_alloc(self, n), text, n);
}

//  Frees the bump arena but one chunk, kept for the next turn (all = true: that one too).
static void s_bump_reset(s_worker_t *self, bool all)
{
    s_bump_chunk_t *keep = NULL;
    for (s_bump_chunk_t *c = self->bump, *next; c; c = next) {
        next = c->next;
        if (!all && !keep && c->size == S_BUMP_CHUNK) {
            keep = c;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(c);
        }
    }
    self->bump = keep;
}

//  Queues one result for this turn's w_done. Shallow: what r points to must live until
//  the flush (a kept message, the bump arena, or static text).
static void s_result_add(s_worker_t *self, const shoal_wire_result_t *r)
{
    S_PUSH(self->results, self->n_results, self->cap_results, *r);
    if (r->status == 0)
        self->n_tasks_done++;
    else
        self->n_tasks_failed++;
}

static void s_result_fail(s_worker_t *self, shoal_ref_t id, uint64_t attempt, int status,
                          const char *error)
{
    shoal_wire_result_t r = {
        .id = id, .attempt = attempt, .status = status, .error = s_bump_strdup(self, error)};
    s_result_add(self, &r);
}

//  FNV-1a: the key of a function's runtime estimate.
static uint64_t s_hash(const char *text)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ? h : 1;
}

//  The expected runtime of a task of function hash, or UINT64_MAX when none finished yet.
static uint64_t s_est_get(s_worker_t *self, uint64_t hash)
{
    const s_est_t *e = &self->est[hash % S_EST_SLOTS];
    return hash && e->hash == hash ? e->avg_us : UINT64_MAX;
}

//  A task of function hash took us: a moving average that follows a change within a few
//  tasks (1/4 new), so a function that turns slow stops being batched quickly.
static void s_est_note(s_worker_t *self, uint64_t hash, uint64_t us)
{
    if (!hash)
        return;
    s_est_t *e = &self->est[hash % S_EST_SLOTS];
    if (e->hash != hash)
        *e = (s_est_t){hash, us};
    else
        e->avg_us = (3 * e->avg_us + us) / 4;
}

/*  ------------------------------------------------------------------- input bookkeeping */

static uintptr_t s_uses(s_worker_t *self, shoal_ref_t ref)
{
    return (uintptr_t)shoal__refmap_get(self->uses, ref);
}

static void s_use_acquire(s_worker_t *self, shoal_ref_t ref)
{
    if (shoal__refmap_put(self->uses, ref, (void *)(s_uses(self, ref) + 1)))
        s_oom();
    if (shoal__refmap_get(self->copies, ref) &&
        shoal__refmap_put(self->copies, ref, (void *)(uintptr_t)(shoal__now_ms() + 1)))
        s_oom();
}

static void s_use_release(s_worker_t *self, shoal_ref_t ref)
{
    uintptr_t n = s_uses(self, ref);
    if (n > 1) {
        shoal__refmap_put(self->uses, ref, (void *)(n - 1)); //  replaces: cannot fail
        return;
    }
    shoal__refmap_remove(self->uses, ref);
    if (shoal__refmap_remove(self->drops, ref)) {
        shoal__refmap_remove(self->copies, ref);
        shoal_store_delete(self->store, ref);
    }
}

//  Deletes the least recently used copy no task reads. false: nothing to evict.
static bool s_evict_one(s_worker_t *self)
{
    size_t cursor = 0;
    shoal_ref_t key, best = {0, 0};
    void *value;
    uintptr_t best_ms = UINTPTR_MAX;
    bool found = false;
    while (shoal__refmap_next(self->copies, &cursor, &key, &value)) {
        if (s_uses(self, key) || shoal__refmap_get(self->fetches, key))
            continue;
        if ((uintptr_t)value < best_ms) {
            best_ms = (uintptr_t)value;
            best = key;
            found = true;
        }
    }
    if (!found)
        return false;
    char text[SHOAL_REF_TEXT_SIZE];
    shoal__debug("evicting input copy %s to make room", s_ref_text(best, text));
    shoal__refmap_remove(self->copies, best);
    shoal__refmap_remove(self->drops, best);
    shoal_store_delete(self->store, best);
    return true;
}

//  Whether the disk tier may make room soon: there is one, and the last spill did not
//  find everything in use or the disk tier full (within S_SPILL_RETRY_MS).
static bool s_spill_can(s_worker_t *self)
{
    //  Persisted objects spill for free even when --spill-size is 0.
    return shoal_store_spill_capacity(self->store) > 0 || shoal_store_persist_used(self->store) > 0;
}

static bool s_spill_may_free(s_worker_t *self)
{
    return s_spill_can(self) && shoal__now_ms() >= self->spill_stuck_ms;
}

//  Whether the outputs of a task (or a put) with these flags and name go to disk too.
static bool s_wants_persist(uint64_t flags, const char *name)
{
    return (flags & SHOAL_TASK_PERSIST) || (name && name[0]);
}

//  shoal_store_alloc, evicting unused input copies while the store is full. Still full:
//  the loop starts spilling (s_spill_pump), and the caller waits for room or fails.
static int s_store_alloc(s_worker_t *self, shoal_ref_t ref, uint64_t size, shoal_store_obj_t *obj)
{
    int rc;
    while ((rc = shoal_store_alloc(self->store, ref, size, obj)) == SHOAL_EFULL)
        if (!s_evict_one(self))
            break;
    if (rc == SHOAL_EFULL)
        self->spill_wanted = true;
    return rc;
}

static int s_store_put(s_worker_t *self, shoal_ref_t ref, const void *data, uint64_t size)
{
    int rc;
    while ((rc = shoal_store_put(self->store, ref, data, size)) == SHOAL_EFULL)
        if (!s_evict_one(self))
            break;
    if (rc == SHOAL_EFULL)
        self->spill_wanted = true;
    return rc;
}

static void s_note(s_worker_t *self, shoal_ref_t ref, uint64_t state, uint64_t size,
                   const shoal_wire_put_t *spec, const char *error);
static void s_gen_bump(s_worker_t *self, shoal_ref_t ref);
static uint64_t s_gen(s_worker_t *self, shoal_ref_t ref);
static void s_persist_add(s_worker_t *self, const s_persist_t *job, const shoal_ref_t *refs,
                          size_t n);
static bool s_persist_has(s_worker_t *self, shoal_ref_t ref);
static void s_persist_cancel(s_worker_t *self, shoal_ref_t ref);
static void s_store_text(s_worker_t *self, char *buf, size_t size);

//  A spilled object back into the arena, evicting input copies while it does not fit.
//  SHOAL_EFULL: no room yet (the loop spills others meanwhile).
static int s_restore(s_worker_t *self, shoal_ref_t ref)
{
    int rc;
    while ((rc = shoal_store_restore(self->store, ref, NULL)) == SHOAL_EFULL)
        if (!s_evict_one(self))
            break;
    if (rc == SHOAL_EFULL)
        self->spill_wanted = true;
    else if (rc == 0) {
        shoal_store_obj_t obj;
        shoal_store_lookup(self->store, ref, &obj);
        if (!shoal__refmap_get(self->copies, ref))
            s_note(self, ref, SHOAL_OBJ_NOTE_RESTORED, obj.size, NULL, NULL);
    }
    return rc;
}

//  Objects the spill must leave in the arena: read by a task here (executors map them by
//  offset), being fetched into, or copies of other workers' objects. A copy is evicted
//  (s_evict_one) instead: deleting it frees its room at once, where spilling it cost a
//  synced write of bytes another worker holds anyway, and a spilled copy, evicted later,
//  cost one more synced commit and freed no memory.
static bool s_spill_skip(void *arg, shoal_ref_t ref)
{
    s_worker_t *self = arg;
    return s_uses(self, ref) || shoal__refmap_get(self->fetches, ref) ||
           shoal__refmap_get(self->puts, ref) || shoal__refmap_get(self->copies, ref);
}

static void s_spill_done(void *arg, shoal_ref_t ref, uint64_t size)
{
    s_worker_t *self = arg;
    //  Copies of other workers' objects are ours alone: the broker does not list them here.
    if (!shoal__refmap_get(self->copies, ref))
        s_note(self, ref, SHOAL_OBJ_NOTE_SPILLED, size, NULL, NULL);
}

//  Once per loop turn while allocations wait for room: spills at most S_SPILL_BUDGET bytes.
//  Room made lets the waiting tasks and allocations try again (this turn).
static void s_spill_pump(s_worker_t *self)
{
    if (!self->spill_wanted)
        return;
    if ((!self->n_parked && !self->room.head && !self->n_pull_room) || !s_spill_can(self)) {
        self->spill_wanted = false; //  nobody waits any more, or no disk tier
        return;
    }
    if (!s_spill_may_free(self))
        return;
    shoal_store_spill_hooks_t hooks = {.skip = s_spill_skip, .spilled = s_spill_done, .arg = self};
    uint64_t freed = 0;
    int rc = shoal_store_spill(self->store, S_SPILL_BUDGET, &hooks, &freed);
    if (freed)
        self->room_changed = true;
    if (rc) {
        //  Nothing (more) to spill: waiting allocations get their EFULL at their deadline,
        //  tasks waiting for room for their inputs are looked at again (and fail unless
        //  running tasks may still free room).
        char st[192];
        s_store_text(self, st, sizeof st);
        shoal__debug("spill: %s; %s", shoal_strerror(rc), st);
        self->spill_stuck_ms = shoal__now_ms() + S_SPILL_RETRY_MS;
        self->spill_wanted = false;
        self->room_changed = true;
    }
}

//  Before storing a task output: an object of the same ref left by an earlier attempt
//  (or by the same task before a re-hello) goes, unless a task still reads it.
static void s_fetch_fail(s_worker_t *self, s_fetch_t *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_clear_for_output(s_worker_t *self, shoal_ref_t ref)
{
    shoal_store_obj_t obj;
    if (shoal_store_lookup(self->store, ref, &obj) != 0)
        return 0;
    s_fetch_t *f = shoal__refmap_get(self->fetches, ref);
    if (f && f->stream) {
        //  A copy of an earlier attempt's output, pulled from the worker that wrote it: that
        //  attempt is over (its worker died, and this is the retry), and the copy will never
        //  be whole. Its readers are lost, not failed: they read the retry's output anew.
        char text[SHOAL_REF_TEXT_SIZE];
        s_fetch_fail(self, f, SHOAL_ELOST,
                     "streaming input %s: a new attempt of its producer writes it on worker %s",
                     s_ref_text(ref, text), self->name);
        if (shoal_store_lookup(self->store, ref, &obj) != 0)
            return 0; //  the copy was aborted (and its generation bumped)
    }
    if (s_uses(self, ref) || shoal__refmap_get(self->fetches, ref))
        return SHOAL_EEXIST;
    s_persist_cancel(self, ref); //  an earlier attempt's, whose result waits for it
    shoal__refmap_remove(self->copies, ref);
    shoal__refmap_remove(self->drops, ref);
    shoal_store_delete(self->store, ref);
    s_gen_bump(self, ref); //  what a stream read of it is not what comes next
    return 0;
}

//  Why a persist failed with rc, for its error message: the size limit, or what the store
//  holds.
static void s_persist_text(s_worker_t *self, int rc, char *buf, size_t size)
{
    char max[32];
    if (rc == SHOAL_ETOOBIG)
        snprintf(buf, size, "persisted objects are limited to %s",
                 s_size_text(shoal_store_persist_max(self->store), max, sizeof max));
    else
        s_store_text(self, buf, size);
}

static void s_store_text(s_worker_t *self, char *buf, size_t size)
{
    char used[32], cap[32], sused[32], scap[32];
    int n = snprintf(buf, size, "the store holds %s of %s",
                     s_size_text(shoal_store_used(self->store), used, sizeof used),
                     s_size_text(shoal_store_capacity(self->store), cap, sizeof cap));
    if (n < 0 || (size_t)n >= size)
        return;
    if (shoal_store_spill_capacity(self->store) == 0)
        snprintf(buf + n, size - (size_t)n, " in memory (no spilling to disk: --spill-size)");
    else
        snprintf(buf + n, size - (size_t)n, " in memory and its disk tier %s of %s",
                 s_size_text(shoal_store_spill_used(self->store), sused, sizeof sused),
                 s_size_text(shoal_store_spill_capacity(self->store), scap, sizeof scap));
}

/*  ------------------------------------------------------------------------- tasks */

static void s_list_push(s_list_t *list, s_task_t *t, bool front)
{
    t->list = list;
    list->n++;
    if (front) {
        t->prev = NULL;
        t->next = list->head;
        if (list->head)
            list->head->prev = t;
        else
            list->tail = t;
        list->head = t;
    } else {
        t->next = NULL;
        t->prev = list->tail;
        if (list->tail)
            list->tail->next = t;
        else
            list->head = t;
        list->tail = t;
    }
}

static void s_list_unlink(s_task_t *t)
{
    s_list_t *list = t->list;
    if (!list)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        list->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        list->tail = t->prev;
    t->prev = t->next = NULL;
    t->list = NULL;
    list->n--;
}

static void s_ready_push(s_worker_t *self, s_task_t *t, bool front)
{
    t->state = S_TASK_READY;
    s_list_push(&self->ready, t, front);
}

static void s_fetch_abandon(s_worker_t *self, s_fetch_t *f);
static void s_put_drop(s_worker_t *self, shoal_ref_t ref, const char *why);
static void s_stream_abort(s_worker_t *self, shoal_ref_t ref, const char *why);
static void s_stream_ask(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req, bool exec);
static void s_slot_kill(s_worker_t *self, s_slot_t *slot, s_task_t *except);

static void s_held_release(s_held_t *held)
{
    if (held && --held->refs == 0) {
        shoal_wire_in_clear(&held->in);
        free(held);
    }
}

//  A zeroed task, from the pool when it has one.
static s_task_t *s_task_new(s_worker_t *self)
{
    s_task_t *t = self->free_tasks;
    if (!t)
        return s_alloc0(sizeof *t);
    self->free_tasks = t->next;
    memset(t, 0, sizeof *t);
    return t;
}

//  t will live a while (it waits for inputs, or runs long): its own copy of its dispatch,
//  so it does not keep a whole w_dispatch in memory.
static void s_task_unpin(s_task_t *t)
{
    if (!t->held)
        return;
    shoal_wire_dispatch_t *d = shoal_wire_dup(&shoal_wire_dispatch_desc, t->d);
    if (!d)
        s_oom();
    s_held_release(t->held);
    t->held = NULL;
    t->d = d;
}

//  The slot of a task handed to an executor, when t is still in its batch.
static s_slot_t *s_task_slot(s_worker_t *self, const s_task_t *t)
{
    if (t->state != S_TASK_RUNNING || t->slot < 0)
        return NULL;
    s_slot_t *slot = &self->slots[t->slot];
    return t->batch_index < slot->n_batch && slot->batch[t->batch_index] == t ? slot : NULL;
}

//  Unlinks t from everything that holds it and frees it: its inputs are released, fetches
//  nobody else waits for are abandoned, unsealed output allocations aborted.
static void s_task_free(s_worker_t *self, s_task_t *t)
{
    const shoal_wire_task_t *task = &t->d->task;
    if (shoal__refmap_get(self->tasks, task->id) == t)
        shoal__refmap_remove(self->tasks, task->id);
    s_list_unlink(t);
    self->room_changed = true;
    //  A task that streams an input pulled from a peer reads it while it runs, too.
    if (t->state == S_TASK_FETCHING || task->stream) {
        for (size_t i = 0; i < t->n_used; i++) {
            s_fetch_t *f = shoal__refmap_get(self->fetches, task->inputs.items[i]);
            if (!f)
                continue;
            size_t kept = 0;
            for (size_t k = 0; k < f->n_waiters; k++)
                if (f->waiters[k] != t)
                    f->waiters[kept++] = f->waiters[k];
            f->n_waiters = kept;
            kept = 0;
            for (size_t k = 0; k < f->n_readers; k++)
                if (f->readers[k] != t)
                    f->readers[kept++] = f->readers[k];
            f->n_readers = kept;
            if (!f->n_waiters && !f->n_readers)
                s_fetch_abandon(self, f);
        }
    }
    if (t->state == S_TASK_RUNNING) {
        self->n_running--;
        s_slot_t *slot = s_task_slot(self, t);
        if (slot) {
            slot->batch[t->batch_index] = NULL;
            slot->n_left--;
        }
    }
    for (size_t i = 0; i < t->n_allocs; i++) {
        shoal_store_abort(self->store, t->allocs[i]);
        s_stream_abort(self, t->allocs[i], "the task writing it ended without sealing it");
    }
    free(t->allocs);
    for (size_t i = 0; i < t->n_used; i++)
        s_use_release(self, task->inputs.items[i]);
    if (t->held)
        s_held_release(t->held);
    else
        free((void *)t->d);
    t->next = self->free_tasks;
    self->free_tasks = t;
}

//  Drops t; a running one takes its executor's process group with it (the other tasks of
//  its batch go back to the queue).
static void s_task_kill(s_worker_t *self, s_task_t *t)
{
    s_slot_t *slot = s_task_slot(self, t);
    if (slot)
        s_slot_kill(self, slot, t);
    s_task_free(self, t);
}

//  Reports t as failed (no outputs) and drops it.
static void s_task_fail(s_worker_t *self, s_task_t *t, int status, int64_t exit_code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void s_task_fail(s_worker_t *self, s_task_t *t, int status, int64_t exit_code,
                        const char *fmt, ...)
{
    char error[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, sizeof error, fmt, ap);
    va_end(ap);
    shoal_wire_result_t r = {.id = t->d->task.id,
                             .attempt = t->d->attempt,
                             .status = status,
                             .exit_code = exit_code,
                             .error = s_bump_strdup(self, error)};
    s_result_add(self, &r);
    s_task_kill(self, t);
}

//  Fails every task in waiters that still exists. Ids are taken first: failing one task
//  frees it, and a task that reads the same input twice is listed twice.
static void s_fail_waiters(s_worker_t *self, s_task_t **waiters, size_t n, int status,
                           const char *error)
{
    shoal_wire_attempt_ref_t *ids = s_alloc0(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (shoal_wire_attempt_ref_t){waiters[i]->d->task.id, waiters[i]->d->attempt};
    for (size_t i = 0; i < n; i++) {
        s_task_t *t = shoal__refmap_get(self->tasks, ids[i].id);
        if (t && t->d->attempt == ids[i].attempt)
            s_task_fail(self, t, status, 0, "%s", error);
    }
    free(ids);
}

/*  ------------------------------------------------------------------------- fetches */

static s_peer_t *s_peer_get(s_worker_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->n_peers; i++)
        if (strcmp(self->peers[i]->endpoint, endpoint) == 0)
            return self->peers[i];
    s_peer_t *p = s_alloc0(sizeof *p);
    p->endpoint = s_strdup(endpoint);
    p->last_used_us = shoal__now_us();
    S_PUSH(self->peers, self->n_peers, self->cap_peers, p);
    return p;
}

static int s_peer_connect(s_worker_t *self, s_peer_t *p)
{
    if (p->sock)
        return 0;
    p->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!p->sock)
        return SHOAL_EIO;
    int linger = 0; //  requests to a peer we give up on are worthless
    int64_t maxmsg = SHOAL_MAX_MSG_SIZE;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(p->sock, p->endpoint) != 0) {
        zmq_close(p->sock);
        p->sock = NULL;
        return SHOAL_EINVAL;
    }
    p->inflight = 0;
    return 0;
}

static void s_peer_close(s_peer_t *p)
{
    if (p->sock)
        zmq_close(p->sock);
    p->sock = NULL;
    p->inflight = 0;
}

static void s_peer_unlink(s_peer_t *p, s_fetch_t *f)
{
    s_fetch_t **at = &p->head, *prev = NULL;
    while (*at && *at != f) {
        prev = *at;
        at = &(*at)->next;
    }
    if (!*at)
        return;
    *at = f->next;
    if (p->tail == f)
        p->tail = prev;
    f->next = NULL;
}

static void s_fetch_free(s_fetch_t *f)
{
    free(f->got);
    free(f->worker);
    free(f->waiters);
    free(f->readers);
    free(f);
}

//  Drops a fetch: its allocation is aborted; replies still on their way are ignored.
static void s_fetch_abandon(s_worker_t *self, s_fetch_t *f)
{
    //  A streaming pull not sized yet has allocated nothing: an allocation of that ref is
    //  someone else's (a new attempt of its producer, here).
    if (!f->stream || f->sized)
        shoal_store_abort(self->store, f->ref);
    if (f->room_until_us)
        self->n_pull_room--;
    s_peer_unlink(f->peer, f);
    if (shoal__refmap_get(self->fetches, f->ref) == f)
        shoal__refmap_remove(self->fetches, f->ref);
    shoal__refmap_remove(self->copies, f->ref);
    s_fetch_free(f);
}

static void s_fetch_fail(s_worker_t *self, s_fetch_t *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_fetch_fail(s_worker_t *self, s_fetch_t *f, int status, const char *fmt, ...)
{
    char error[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, sizeof error, fmt, ap);
    va_end(ap);
    shoal__warn("%s", error);
    s_task_t **waiters = f->waiters;
    size_t n = f->n_waiters;
    f->waiters = NULL;
    f->n_waiters = 0;
    //  The tasks streaming it too (they may be running: failing them kills their executor,
    //  so none reads the copy's range once it is aborted and reused).
    for (size_t i = 0; i < f->n_readers; i++)
        S_PUSH(waiters, n, f->cap_waiters, f->readers[i]);
    f->n_readers = 0;
    bool copy = f->stream && f->sized;
    shoal_ref_t ref = f->ref;
    //  Its tasks die before the copy's range is aborted (and maybe reused at once): an
    //  executor still running never reads another object's bytes there. Unlinked first,
    //  so freeing them does not drop it under us.
    s_peer_unlink(f->peer, f);
    shoal__refmap_remove(self->fetches, ref);
    s_fail_waiters(self, waiters, n, status, error);
    free(waiters);
    s_fetch_abandon(self, f);
    if (copy) //  executors' held e_reads of the copy, and its generation
        s_stream_abort(self, ref, error);
}

//  All bytes are in (a streaming pull: and the holder sealed it): seal our copy, whose
//  streaming readers see it final, and the tasks waiting only for this input become
//  runnable.
static void s_fetch_done(s_worker_t *self, s_fetch_t *f)
{
    char text[SHOAL_REF_TEXT_SIZE];
    int rc = shoal_store_seal(self->store, f->ref);
    if (rc) {
        s_fetch_fail(self, f, SHOAL_EIO, "input %s: cannot seal its copy: %s",
                     s_ref_text(f->ref, text), shoal_strerror(rc));
        return;
    }
    shoal__debug("%s input %s (%llu bytes) from %s", f->stream ? "streamed" : "fetched",
                 s_ref_text(f->ref, text), (unsigned long long)f->size, f->peer->endpoint);
    s_peer_unlink(f->peer, f);
    shoal__refmap_remove(self->fetches, f->ref);
    for (size_t i = 0; i < f->n_waiters; i++) {
        s_task_t *t = f->waiters[i];
        //  A task on the room list has inputs left to look at: it is not ready yet.
        if (--t->missing == 0 && t->state == S_TASK_FETCHING && !t->list &&
            t->n_used == t->d->task.inputs.count)
            s_ready_push(self, t, false);
    }
    s_fetch_free(f);
}

//  (Re)starts a fetch for size bytes: allocates them and forgets earlier requests.
static int s_fetch_reset(s_worker_t *self, s_fetch_t *f, uint64_t size)
{
    shoal_store_obj_t obj;
    int rc = s_store_alloc(self, f->ref, size, &obj);
    if (rc)
        return rc;
    f->size = size;
    f->data = obj.data;
    f->nchunks = (size + SHOAL_CHUNK_SIZE - 1) / SHOAL_CHUNK_SIZE;
    f->next_chunk = f->received = 0;
    free(f->got);
    f->got = s_alloc0((size_t)((f->nchunks + 63) / 64) * sizeof *f->got);
    f->seq_base = self->fetch_seq + 1;
    return 0;
}

//  Starts copying input in from the peer that holds it; t waits for it. Returns 0,
//  SHOAL_ELOST (error says why), or the store's code when there is no room.
//  The reader of the store in->arena when it is another worker's on this host, or NULL.
static shoal_store_reader_t *s_near_reader(s_worker_t *self, const shoal_wire_input_t *in)
{
    if (!in->arena || !in->store_dir || !in->arena[0] || strcmp(in->arena, self->arena_path) == 0)
        return NULL;
    s_near_t *n = NULL;
    for (size_t i = 0; i < self->n_nears && !n; i++)
        if (strcmp(self->nears[i].arena, in->arena) == 0)
            n = &self->nears[i];
    int64_t now = shoal__now_ms();
    if (n && (n->reader || now - n->tried_ms < S_NEAR_RETRY_MS))
        return n->reader;
    if (!n) {
        self->nears = realloc(self->nears, (self->n_nears + 1) * sizeof *self->nears);
        if (!self->nears)
            s_oom();
        n = &self->nears[self->n_nears++];
        *n = (s_near_t){.arena = s_strdup(in->arena)};
    }
    n->tried_ms = now;
    //  Another host's path does not exist here: no warning for that.
    if (access(in->arena, R_OK) == 0 &&
        shoal_store_reader_open(in->store_dir, in->arena, &n->reader) != 0)
        n->reader = NULL;
    return n->reader;
}

/*  Copies input ref out of the arena of the worker holding it when that worker runs on
    this host: one memcpy instead of a stream of chunks over its data socket. 0 (the copy
    is sealed in our store), SHOAL_EFULL (no room here), or another code: fetch it. */
static int s_near_copy(s_worker_t *self, const shoal_wire_input_t *in, shoal_ref_t ref)
{
    shoal_store_reader_t *reader = s_near_reader(self, in);
    if (!reader)
        return SHOAL_ENOTFOUND;
    shoal_store_view_t view;
    int rc = shoal_store_reader_get(reader, ref, &view);
    if (rc == SHOAL_EIO) { //  that store was reset: open it again next time
        for (size_t i = 0; i < self->n_nears; i++)
            if (self->nears[i].reader == reader)
                shoal_store_reader_close(&self->nears[i].reader);
        return rc;
    }
    if (rc)
        return rc;
    shoal_store_obj_t obj;
    if (view.size != in->size)
        rc = SHOAL_EPROTO;
    else if ((rc = s_store_alloc(self, ref, view.size, &obj)) == 0) {
        memcpy(obj.data, view.data, view.size);
        shoal_store_seal(self->store, ref);
        char text[SHOAL_REF_TEXT_SIZE], sz[32];
        shoal__debug("input %s: %s copied from the store of worker %s on this host",
                     s_ref_text(ref, text), s_size_text(view.size, sz, sizeof sz),
                     in->worker ? in->worker : "?");
        if (shoal__refmap_put(self->copies, ref, (void *)(uintptr_t)(shoal__now_ms() + 1)))
            s_oom();
    }
    shoal_store_view_release(&view);
    return rc;
}

/*  A new fetch of in's object from the worker holding it (ref, peer, holder's name set);
    NULL, with error filled, when that worker cannot be reached. */
static s_fetch_t *s_fetch_new(s_worker_t *self, const shoal_wire_input_t *in, char *error,
                              size_t size)
{
    char text[SHOAL_REF_TEXT_SIZE];
    const char *holder = in->worker && in->worker[0] ? in->worker : "?";
    s_peer_t *p = s_peer_get(self, in->endpoint);
    if (s_peer_connect(self, p) != 0) {
        snprintf(error, size, "input %s: cannot connect to worker %s at %s",
                 s_ref_text(in->ref, text), holder, in->endpoint);
        return NULL;
    }
    s_fetch_t *f = s_alloc0(sizeof *f);
    f->ref = in->ref;
    f->peer = p;
    f->worker = s_strdup(holder);
    return f;
}

//  Makes f known (fetches, copies) and queues it on its peer, whose pump sends its asks.
static void s_fetch_queue(s_worker_t *self, s_fetch_t *f)
{
    s_peer_t *p = f->peer;
    if (shoal__refmap_put(self->fetches, f->ref, f) ||
        shoal__refmap_put(self->copies, f->ref, (void *)(uintptr_t)(shoal__now_ms() + 1)))
        s_oom();
    if (!p->head)
        p->last_progress_us = shoal__now_us();
    if (p->tail)
        p->tail->next = f;
    else
        p->head = f;
    p->tail = f;
}

static int s_fetch_start(s_worker_t *self, const shoal_wire_input_t *in, s_task_t *t, char *error,
                         size_t size)
{
    s_fetch_t *f = s_fetch_new(self, in, error, size);
    if (!f)
        return SHOAL_ELOST;
    int rc = s_fetch_reset(self, f, in->size);
    if (rc) {
        s_fetch_free(f);
        return rc;
    }
    s_fetch_queue(self, f);
    S_PUSH(f->waiters, f->n_waiters, f->cap_waiters, t);
    return 0;
}

/*  ------------------------------------------------------------------ streaming pulls

    A task here streams an input that another worker is still writing (the broker sent
    SHOAL_IN_WRITING with its holder): we pull it from that worker's data socket with
    streaming fetches into a copy in our store, whose watermark (s_ready) the executors'
    e_reads are answered from, exactly as when the writer is here. The first ask is a probe
    (held 1 ms at most) that tells the size, so the copy is allocated and the task runs one
    round trip after it arrives, whether bytes have landed or not. Then, as libshoal's
    stream does, up to S_FETCH_WINDOW chunk asks below the holder's last watermark (they
    come back whole) and one beyond it (held until bytes land, at most 1 s), so a pull of
    bytes already there runs as fast as a fetch and one at the writer's heels pays a round
    trip per batch of new bytes. The holder's abort (SHOAL_ECANCELED) or another allocation
    generation fail the tasks reading it, naming the input, as a failed input fails them
    (SHOAL_ETASK: their retries apply); its silence (S_FETCH_TIMEOUT_MS) loses them
    (SHOAL_ELOST: placed again), as the broker does when the holder's worker dies. */

#define S_PULL_PROBE_MS 1    //  the first ask: the size at once, bytes or not
#define S_PULL_HOLD_MS  1000 //  an ask beyond the holder's watermark (as libshoal's)
//  An ask with no reply this long after its hold is asked again: a live holder answers at
//  the hold's end; 2 s leaves room for a busy one and its pipes.
#define S_PULL_RESEND_MS 2000

//  Starts pulling input in, being written on another worker, for t, which streams it.
static int s_pull_start(s_worker_t *self, const shoal_wire_input_t *in, s_task_t *t, char *error,
                        size_t size)
{
    s_fetch_t *f = s_fetch_new(self, in, error, size);
    if (!f)
        return SHOAL_ELOST;
    f->stream = true;
    f->seq_base = self->fetch_seq + 1;
    s_fetch_queue(self, f);
    S_PUSH(f->readers, f->n_readers, f->cap_readers, t);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal__debug("input %s: streaming it from worker %s at %s", s_ref_text(in->ref, text),
                 f->worker, in->endpoint);
    return 0;
}

//  Sends ask a of f (anew: a new seq, a new deadline). false: the pipe is full (next turn).
//  Pulls do not count in the peer's inflight, the window of ordinary fetches: a pull has a
//  window of its own (S_FETCH_WINDOW asks in flight), so neither starves the other.
static bool s_pull_send(s_worker_t *self, s_fetch_t *f, s_ask_t *a)
{
    s_peer_t *p = f->peer;
    shoal_wire_fetch_t req = {.seq = self->fetch_seq + 1,
                              .ref = f->ref,
                              .offset = a->off,
                              .length = a->len,
                              .flags = SHOAL_FETCH_STREAM,
                              .wait_ms = a->wait_ms};
    if (shoal_wire_send(p->sock, NULL, SHOAL_MSG_fetch, &req, NULL, 0) != 0)
        return false;
    self->fetch_seq++;
    int64_t now = shoal__now_us();
    p->last_used_us = now;
    if (a->seq && f->frontier == a->seq)
        f->frontier = req.seq; //  asked again
    a->seq = req.seq;
    a->deadline_us = now + (int64_t)(a->wait_ms + S_PULL_RESEND_MS) * 1000;
    return true;
}

//  Sends a new ask of f for [off, off + len). false: the pipe is full, or no room to keep it.
static bool s_pull_ask(s_worker_t *self, s_fetch_t *f, uint64_t off, uint64_t len, uint64_t wait_ms)
{
    if (f->n_asks == S_PULL_ASKS_MAX)
        return false;
    //  The silence of a peer counts from the first request it has to answer (a resent
    //  ask does not count: a dead peer's pulls would never time out).
    s_peer_t *p = f->peer;
    bool idle = p->inflight == 0;
    for (s_fetch_t *g = p->head; g && idle; g = g->next)
        for (size_t i = 0; g->stream && i < g->n_asks && idle; i++)
            idle = g->asks[i].done;
    s_ask_t *a = &f->asks[f->n_asks];
    *a = (s_ask_t){.off = off, .len = len, .wait_ms = wait_ms};
    if (!s_pull_send(self, f, a))
        return false;
    if (idle)
        p->last_progress_us = a->deadline_us - (int64_t)(wait_ms + S_PULL_RESEND_MS) * 1000;
    f->n_asks++;
    return true;
}

//  Keeps f's asks in flight: the probe, then chunks below the holder's watermark, then one
//  beyond it (also for the seal, at offset == size). Asks past their deadline are sent
//  again; only those in flight count against the window; an ask at the watermark always
//  goes (answered asks beyond it give way when there is no room to keep it).
static void s_pull_pump(s_worker_t *self, s_fetch_t *f)
{
    if (f->room_until_us)
        return; //  no copy yet: nothing to ask
    int64_t now = shoal__now_us();
    size_t inflight = 0;
    bool at_mark = false;
    for (size_t i = 0; i < f->n_asks; i++) {
        s_ask_t *a = &f->asks[i];
        if (a->done)
            continue;
        if (now > a->deadline_us && !s_pull_send(self, f, a))
            return;
        inflight++;
        at_mark |= a->off <= f->ready && f->ready < a->off + SHOAL__MAX(a->len, 1);
    }
    if (!f->sized) {
        if (!f->n_asks)
            s_pull_ask(self, f, 0, SHOAL_CHUNK_SIZE, S_PULL_PROBE_MS);
        return;
    }
    if (!at_mark && f->ready < f->remote && f->next_off > f->ready) {
        //  Nothing in flight brings the bytes at the watermark (an ask came back short and
        //  later ones went on): ask for them now, making room if need be.
        if (f->n_asks == S_PULL_ASKS_MAX) {
            size_t far = 0;
            for (size_t i = 1; i < f->n_asks; i++)
                if (f->asks[i].done && (!f->asks[far].done || f->asks[i].off > f->asks[far].off))
                    far = i;
            if (f->asks[far].done) {
                f->next_off = SHOAL__MIN(f->next_off, f->asks[far].off); //  asked again
                f->asks[far] = f->asks[--f->n_asks];
            }
        }
        uint64_t len = SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, f->remote - f->ready);
        if (s_pull_ask(self, f, f->ready, len, S_PULL_HOLD_MS))
            inflight++;
    }
    while (!f->frontier && inflight < S_FETCH_WINDOW && f->next_off < f->remote) {
        uint64_t len = SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, f->remote - f->next_off);
        if (!s_pull_ask(self, f, f->next_off, len, S_PULL_HOLD_MS))
            return;
        inflight++;
        f->next_off += len;
    }
    //  Beyond the holder's watermark: bytes not landed yet, or, once we have them all, the
    //  seal (an ask at offset == size, answered when it comes).
    if (!f->frontier && inflight <= S_FETCH_WINDOW && f->next_off >= f->remote &&
        (f->next_off < f->size || (!f->final && f->ready >= f->size))) {
        uint64_t len = SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, f->size - f->next_off);
        uint64_t seq = self->fetch_seq + 1;
        if (s_pull_ask(self, f, f->next_off, len, S_PULL_HOLD_MS))
            f->frontier = seq;
    }
}

//  f's copy of size bytes is allocated (obj): the tasks streaming it run now, reading what
//  lands.
static void s_pull_sized(s_worker_t *self, s_fetch_t *f, const shoal_store_obj_t *obj,
                         uint64_t size)
{
    f->size = size;
    f->data = obj->data;
    f->sized = true;
    for (size_t i = 0; i < f->n_readers; i++) {
        s_task_t *t = f->readers[i];
        if (--t->missing == 0 && t->state == S_TASK_FETCHING && !t->list &&
            t->n_used == t->d->task.inputs.count)
            s_ready_push(self, t, false);
    }
}

//  Streaming pulls whose copy waits for room try to allocate it again; those past their
//  deadline fail with SHOAL_EFULL, naming the sizes.
static void s_pull_room_retry(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    for (size_t i = 0; i < self->n_peers && self->n_pull_room; i++) {
        for (s_fetch_t *f = self->peers[i]->head, *next; f && self->n_pull_room; f = next) {
            next = f->next;
            if (!f->room_until_us)
                continue;
            shoal_store_obj_t obj;
            int rc = s_store_alloc(self, f->ref, f->size, &obj);
            if (rc == SHOAL_EFULL && now < f->room_until_us)
                continue;
            f->room_until_us = 0;
            self->n_pull_room--;
            if (rc == 0) {
                self->peers[i]->last_progress_us = now; //  its asks start now
                s_pull_sized(self, f, &obj, f->size);
                continue;
            }
            char text[SHOAL_REF_TEXT_SIZE], sz[32], st[192];
            s_store_text(self, st, sizeof st);
            s_fetch_fail(self, f, rc == SHOAL_EEXIST ? SHOAL_ELOST : rc,
                         "no room for streaming input %s (%s, on worker %s) within %d ms: %s; %s",
                         s_ref_text(f->ref, text), s_size_text(f->size, sz, sizeof sz), f->worker,
                         S_ALLOC_WAIT_MS, shoal_strerror(rc), st);
            return; //  failing tasks may have dropped other fetches: the rest next turn
        }
    }
}

//  A reply to one of f's streaming asks (in: its raw frame).
static void s_pull_reply(s_worker_t *self, s_fetch_t *f, const shoal_wire_data_t *d,
                         shoal_wire_in_t *in)
{
    char text[SHOAL_REF_TEXT_SIZE], sz[32], st[192];
    s_peer_t *p = f->peer;
    size_t k = 0;
    while (k < f->n_asks && f->asks[k].seq != d->seq)
        k++;
    if (k == f->n_asks || f->asks[k].done)
        return; //  not ours (any more)
    s_ask_t *a = &f->asks[k];
    if (f->frontier == d->seq)
        f->frontier = 0;
    s_ref_text(f->ref, text);
    if (d->code) {
        //  Gone before we read a byte: the broker's news was stale (the writer's worker
        //  lost it, or a retry has not allocated it yet): lost, the broker places it again.
        int status = d->code == SHOAL_ENOTFOUND && !f->sized ? SHOAL_ELOST : SHOAL_ETASK;
        s_fetch_fail(self, f, status, "streaming input %s failed: %s", text,
                     d->error ? d->error : shoal_strerror((int)d->code));
        return;
    }
    if (!f->sized) {
        shoal_store_obj_t obj;
        int rc = s_store_alloc(self, f->ref, d->size, &obj);
        if (rc == SHOAL_EFULL) {
            //  As an ordinary input does, wait for room (running tasks end, the disk tier
            //  takes sealed objects), S_ALLOC_WAIT_MS at most; the bytes of this reply are
            //  asked again once the copy is allocated.
            f->size = d->size;
            f->gen = d->gen;
            f->room_until_us = shoal__now_us() + (int64_t)S_ALLOC_WAIT_MS * 1000;
            f->n_asks = 0;
            self->n_pull_room++;
            shoal__debug("input %s: waiting for room for its copy (%s)", text,
                         s_size_text(d->size, sz, sizeof sz));
            return;
        }
        if (rc == SHOAL_EEXIST) {
            //  A new attempt of its producer allocated it here meanwhile: what the holder
            //  has is an attempt that is over. Lost: the broker places the readers again.
            s_fetch_fail(self, f, SHOAL_ELOST,
                         "streaming input %s: a new attempt of its producer writes it on "
                         "worker %s",
                         text, self->name);
            return;
        }
        if (rc) {
            s_store_text(self, st, sizeof st);
            s_fetch_fail(self, f, rc, "no room for streaming input %s (%s, on worker %s): %s; %s",
                         text, s_size_text(d->size, sz, sizeof sz), f->worker, shoal_strerror(rc),
                         st);
            return;
        }
        f->gen = d->gen;
        s_pull_sized(self, f, &obj, d->size);
    } else if (d->gen != f->gen || d->size != f->size) {
        s_fetch_fail(self, f, SHOAL_ETASK,
                     "streaming input %s failed: it was aborted on worker %s and is written anew "
                     "(generation %llu, then %llu)",
                     text, f->worker, (unsigned long long)f->gen, (unsigned long long)d->gen);
        return;
    }
    size_t len = in->has_raw ? zmq_msg_size(&in->raw) : 0;
    if (d->offset != a->off || len > a->len || d->offset + len > f->size) {
        s_malformed(self, "peer", SHOAL_EPROTO);
        s_fetch_fail(self, f, SHOAL_ELOST,
                     "input %s: worker %s at %s sent a bad chunk (offset %llu, %zu bytes)", text,
                     f->worker, p->endpoint, (unsigned long long)d->offset, len);
        return;
    }
    if (len)
        memcpy(f->data + d->offset, zmq_msg_data(&in->raw), len);
    a->done = true;
    a->got = len;
    if (len < a->len && d->offset + len < f->next_off)
        f->next_off = d->offset + len; //  came back short: ask the rest again
    f->remote = SHOAL__MIN(SHOAL__MAX(f->remote, d->ready), f->size);
    if (d->final)
        f->final = true, f->remote = f->size;
    //  The watermark: answered asks that reach it, in any order (a short one ends the run;
    //  its rest is asked again).
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < f->n_asks; i++)
            if (f->asks[i].done && f->asks[i].off <= f->ready) {
                f->ready = SHOAL__MAX(f->ready, f->asks[i].off + f->asks[i].got);
                f->asks[i] = f->asks[--f->n_asks];
                moved = true;
                break;
            }
    }
    f->next_off = SHOAL__MAX(f->next_off, f->ready);
    if (f->final && f->ready >= f->size) {
        //  Asks still in flight can only repeat bytes we have.
        f->n_asks = 0;
        s_fetch_done(self, f);
    }
}

//  Keeps S_FETCH_WINDOW chunk requests in flight per peer, oldest fetch first.
static void s_fetch_pump(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    for (size_t i = 0; i < self->n_peers; i++) {
        s_peer_t *p = self->peers[i];
        //  Streaming pulls keep their own window (they have no chunks: the loop below skips
        //  them).
        for (s_fetch_t *f = p->head; f && p->sock; f = f->next)
            if (f->stream)
                s_pull_pump(self, f);
        while (p->sock && p->inflight < S_FETCH_WINDOW) {
            s_fetch_t *f = p->head;
            while (f && f->next_chunk >= f->nchunks)
                f = f->next;
            if (!f)
                break;
            uint64_t offset = f->next_chunk * SHOAL_CHUNK_SIZE;
            shoal_wire_fetch_t req = {.seq = self->fetch_seq + 1,
                                      .ref = f->ref,
                                      .offset = offset,
                                      .length =
                                          SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, f->size - offset)};
            int rc = shoal_wire_send(p->sock, NULL, SHOAL_MSG_fetch, &req, NULL, 0);
            if (rc)
                break; //  full pipe: next turn; a dead peer: its timeout fails the fetches
            self->fetch_seq++;
            if (p->inflight++ == 0)
                p->last_progress_us = now;
            p->last_used_us = now;
            f->next_chunk++;
        }
    }
}

static void s_on_peer_msg(s_worker_t *self, s_peer_t *p, shoal_wire_in_t *in)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_msg_t *m = &in->msg;
    if (m->type == SHOAL_MSG_error) {
        if (p->inflight)
            p->inflight--;
        shoal__warn("worker at %s answered a fetch with an error: %s", p->endpoint,
                    m->u.error.error ? m->u.error.error : shoal_strerror((int)m->u.error.code));
        return;
    }
    if (m->type != SHOAL_MSG_data) {
        s_malformed(self, "peer", SHOAL_EPROTO);
        return;
    }
    p->last_progress_us = p->last_used_us = shoal__now_us();
    const shoal_wire_data_t *d = &m->u.data;
    s_fetch_t *f = shoal__refmap_get(self->fetches, d->ref);
    //  A pull's asks are not counted in inflight (s_pull_send). The reply to an ask of a
    //  pull dropped meanwhile is counted off: at worst a chunk more in flight for a while.
    if (!(f && f->stream && f->peer == p) && p->inflight)
        p->inflight--;
    if (!f || f->peer != p || d->seq < f->seq_base)
        return; //  for an abandoned fetch or an earlier try
    if (f->stream) {
        s_pull_reply(self, f, d, in);
        return;
    }
    s_ref_text(f->ref, text);
    if (d->code) {
        s_fetch_fail(self, f, SHOAL_ELOST, "input %s: worker %s at %s answered: %s", text,
                     f->worker, p->endpoint, d->error ? d->error : shoal_strerror((int)d->code));
        return;
    }
    if (d->size != f->size) {
        //  The broker's size was stale: start again with the holder's.
        shoal_store_abort(self->store, f->ref);
        int rc = s_fetch_reset(self, f, d->size);
        if (rc) {
            char sz[32], st[192];
            s_store_text(self, st, sizeof st);
            s_fetch_fail(self, f, SHOAL_EFULL, "no room for input %s (%s, on worker %s): %s; %s",
                         text, s_size_text(d->size, sz, sizeof sz), f->worker, shoal_strerror(rc),
                         st);
        } else if (f->nchunks == 0) {
            s_fetch_done(self, f);
        }
        return;
    }
    uint64_t idx = d->offset / SHOAL_CHUNK_SIZE;
    size_t len = in->has_raw ? zmq_msg_size(&in->raw) : 0;
    uint64_t want = idx < f->nchunks
                        ? SHOAL__MIN((uint64_t)SHOAL_CHUNK_SIZE, f->size - idx * SHOAL_CHUNK_SIZE)
                        : 0;
    if (!in->has_raw || d->offset % SHOAL_CHUNK_SIZE || idx >= f->nchunks || len != want ||
        (f->got[idx / 64] >> (idx % 64)) & 1) {
        s_malformed(self, "peer", SHOAL_EPROTO);
        s_fetch_fail(self, f, SHOAL_ELOST,
                     "input %s: worker %s at %s sent a bad chunk (offset %llu, %zu bytes)", text,
                     f->worker, p->endpoint, (unsigned long long)d->offset, len);
        return;
    }
    memcpy(f->data + d->offset, zmq_msg_data(&in->raw), len);
    f->got[idx / 64] |= 1ull << (idx % 64);
    if (++f->received == f->nchunks)
        s_fetch_done(self, f);
}

//  Fails the fetches of peers that stopped answering; closes peers long unused.
static void s_peers_tick(s_worker_t *self, int64_t now)
{
    for (size_t i = 0; i < self->n_peers;) {
        s_peer_t *p = self->peers[i];
        if (p->head && now - p->last_progress_us > (int64_t)S_FETCH_TIMEOUT_MS * 1000) {
            char text[SHOAL_REF_TEXT_SIZE];
            //  A live worker answers a held ask within a second: this one died, and its
            //  objects with it. Lost, also for a task streaming an input it has read some
            //  of: the broker requeues the input's producer, and the task reads its output
            //  anew from 0 (it may have canceled and requeued the task already).
            while (p->head)
                s_fetch_fail(self, p->head, SHOAL_ELOST,
                             "input %s: no answer from worker %s at %s for %d s",
                             s_ref_text(p->head->ref, text), p->head->worker, p->endpoint,
                             S_FETCH_TIMEOUT_MS / 1000);
            s_peer_close(p);
            p->last_used_us = now;
        }
        if (!p->head && now - p->last_used_us > (int64_t)S_PEER_IDLE_MS * 1000) {
            s_peer_close(p);
            free(p->endpoint);
            free(p);
            self->peers[i] = self->peers[--self->n_peers];
            continue;
        }
        i++;
    }
}

/*  -------------------------------------------------------------------- dispatches */

//  The broker's location record for input i of d (matched by ref), or NULL.
static const shoal_wire_input_t *s_input_record(const shoal_wire_dispatch_t *d, size_t i)
{
    shoal_ref_t ref = d->task.inputs.items[i];
    if (i < d->inputs.count && shoal_ref_equal(d->inputs.items[i].ref, ref))
        return &d->inputs.items[i];
    for (size_t k = 0; k < d->inputs.count; k++)
        if (shoal_ref_equal(d->inputs.items[k].ref, ref))
            return &d->inputs.items[k];
    return NULL;
}

//  Whether space in the store may still free up without anyone's help: a running or
//  runnable task will finish and release the copies it reads; a fetching task will become
//  runnable. t (not on any list) does not count.
static bool s_room_may_free(s_worker_t *self)
{
    size_t others = self->n_running + self->ready.n + self->room.n + 1;
    return self->n_running || self->ready.n || shoal__refmap_size(self->tasks) > others ||
           s_spill_may_free(self);
}

enum { S_INPUTS_WAIT, S_INPUTS_ROOM, S_INPUTS_FAILED };

//  Looks at the inputs of t not looked at yet: present, inline (they go to the executor in
//  the e_run, from the dispatch record: no store work), or to be fetched. t becomes READY, keeps
//  waiting for fetches, waits on the room list (the store is full, but running tasks will free
//  space: prefetching must not fail what running the tasks one by one would not), or fails (and is
//  freed).
static int s_task_start_inputs(s_worker_t *self, s_task_t *t, bool retry)
{
    const shoal_wire_task_t *task = &t->d->task;
    char error[1024], text[SHOAL_REF_TEXT_SIZE], sz[32], st[192];
    int status = 0;
    t->state = S_TASK_FETCHING;
    for (size_t i = t->n_used; i < task->inputs.count && !status; i++) {
        shoal_ref_t ref = task->inputs.items[i];
        const shoal_wire_input_t *in = s_input_record(t->d, i);
        s_use_acquire(self, ref);
        t->n_used++;
        bool streams = i < SHOAL_STREAM_INPUTS_MAX && (task->stream >> i & 1);
        s_fetch_t *f = shoal__refmap_get(self->fetches, ref);
        if (f && f->stream && streams) {
            //  Pulled as it is written: runnable once its size is known.
            S_PUSH(f->readers, f->n_readers, f->cap_readers, t);
            t->missing += !f->sized;
            continue;
        }
        if (f) {
            S_PUSH(f->waiters, f->n_waiters, f->cap_waiters, t);
            t->missing++;
            continue;
        }
        shoal_store_obj_t obj;
        if (shoal_store_lookup(self->store, ref, &obj) == 0 && obj.state == SHOAL_OBJ_SPILLED) {
            //  Executors read inputs in the arena: bring it back (our use keeps it there).
            int rc = s_restore(self, ref);
            if (rc == SHOAL_EFULL && s_room_may_free(self)) {
                s_use_release(self, ref);
                t->n_used--;
                s_list_push(&self->room, t, retry);
                return S_INPUTS_ROOM;
            }
            if (rc) {
                s_store_text(self, st, sizeof st);
                status = rc;
                snprintf(error, sizeof error,
                         "cannot bring input %s (%s) back from the disk tier of worker %s: %s; %s",
                         s_ref_text(ref, text), s_size_text(obj.size, sz, sizeof sz), self->name,
                         shoal_strerror(rc), st);
                break;
            }
            continue;
        }
        if (shoal_store_lookup(self->store, ref, &obj) == 0) {
            if (obj.state == SHOAL_OBJ_SEALED ||
                (i < SHOAL_STREAM_INPUTS_MAX && (task->stream >> i & 1)))
                continue; //  sealed, or streamed while it is written here
            status = SHOAL_ESTATE;
            snprintf(error, sizeof error, "input %s is still being written on worker %s",
                     s_ref_text(ref, text), self->name);
            break;
        }
        bool has_inline = in && (in->flags & SHOAL_OUT_INLINE) && in->data.size == in->size;
        bool remote =
            in && in->endpoint && in->endpoint[0] && strcmp(in->endpoint, self->data_ep) != 0;
        if (!has_inline && !remote) {
            status = SHOAL_ELOST;
            snprintf(error, sizeof error, "input %s is not in the store of worker %s%s",
                     s_ref_text(ref, text), self->name,
                     in && in->endpoint && in->endpoint[0] ? "" : " and no other worker has it");
            break;
        }
        if (has_inline)
            continue;
        int rc;
        if (remote && streams && (in->flags & SHOAL_IN_WRITING)) {
            //  Being written on another worker: stream it from there (s_pull_*).
            rc = s_pull_start(self, in, t, error, sizeof error);
            if (rc == 0)
                t->missing++;
        } else if (in->size == 0) {
            rc = s_store_put(self, ref, "", 0);
            if (rc == 0 &&
                shoal__refmap_put(self->copies, ref, (void *)(uintptr_t)(shoal__now_ms() + 1)))
                s_oom();
        } else if ((rc = s_near_copy(self, in, ref)) != 0 && rc != SHOAL_EFULL) {
            rc = s_fetch_start(self, in, t, error, sizeof error);
            if (rc == 0)
                t->missing++;
        }
        if (rc == SHOAL_EFULL && s_room_may_free(self)) {
            //  Look at this input again when space frees up.
            s_use_release(self, ref);
            t->n_used--;
            s_list_push(&self->room, t, retry);
            return S_INPUTS_ROOM;
        }
        if (rc && rc != SHOAL_ELOST) {
            s_store_text(self, st, sizeof st);
            status = rc;
            snprintf(error, sizeof error, "no room for input %s (%s%s%s): %s; %s",
                     s_ref_text(ref, text), s_size_text(in->size, sz, sizeof sz),
                     remote ? ", on worker " : "",
                     remote ? (in->worker && in->worker[0] ? in->worker : "?") : "",
                     shoal_strerror(rc), st);
        } else if (rc) {
            status = rc; //  error says why
        }
    }
    if (status) {
        shoal__warn("%s", error);
        s_task_fail(self, t, status, 0, "%s", error);
        return S_INPUTS_FAILED;
    }
    if (t->missing == 0)
        s_ready_push(self, t, false);
    return S_INPUTS_WAIT;
}

//  Space may have been freed: tasks waiting for room try again, oldest first.
static void s_room_retry(s_worker_t *self)
{
    while (self->room.head && self->room_changed) {
        self->room_changed = false;
        while (self->room.head) {
            s_task_t *t = self->room.head;
            s_list_unlink(t);
            if (s_task_start_inputs(self, t, true) == S_INPUTS_ROOM)
                break;
        }
    }
    self->room_changed = false;
}

//  Takes the tasks of a w_dispatch. Returns true when it kept the message (in->msg then
//  belongs to the tasks that point into it: the caller must not clear it).
static bool s_on_dispatch(s_worker_t *self, shoal_wire_in_t *in)
{
    const shoal_wire_w_dispatch_t *m = &in->msg.u.w_dispatch;
    //  Expected-short fn tasks point into the message, kept while any of them lives, when
    //  what they carry is small (S_PIN_MAX); the others get a copy of their own.
    size_t payload = 0;
    for (size_t i = 0; i < m->tasks.count && payload <= S_PIN_MAX; i++) {
        const shoal_wire_dispatch_t *d = &m->tasks.items[i];
        payload += d->task.arg.size;
        for (size_t k = 0; k < d->inputs.count; k++)
            payload += d->inputs.items[k].data.size;
    }
    s_held_t *held = NULL;
    if (payload <= S_PIN_MAX && m->tasks.count) {
        held = s_alloc0(sizeof *held);
        held->in = *in;
        held->refs = 1; //  this loop's own, so failed tasks cannot free it under us
        m = &held->in.msg.u.w_dispatch;
    }
    const char *prev_fn = NULL;
    uint64_t prev_hash = 0;
    for (size_t i = 0; i < m->tasks.count; i++) {
        const shoal_wire_dispatch_t *d = &m->tasks.items[i];
        s_task_t *old = shoal__refmap_get(self->tasks, d->task.id);
        if (old) {
            if (old->d->attempt >= d->attempt)
                continue;           //  a repeat
            s_task_kill(self, old); //  superseded; the broker fences its result anyway
        }
        if (shoal__refmap_size(self->tasks) >= self->capacity + S_QUEUE_SLACK) {
            char error[256];
            snprintf(error, sizeof error, "the local queue of worker %s is full (%zu tasks)",
                     self->name, shoal__refmap_size(self->tasks));
            s_result_fail(self, d->task.id, d->attempt, SHOAL_EFULL, error);
            continue;
        }
        s_task_t *t = s_task_new(self);
        t->slot = -1;
        if (d->task.kind == SHOAL_KIND_FN && d->task.fn) {
            //  A batch usually calls one function: compare rather than hash again.
            if (!prev_fn || strcmp(prev_fn, d->task.fn) != 0)
                prev_hash = s_hash(prev_fn = d->task.fn);
            t->fn_hash = prev_hash;
        }
        if (held && s_est_get(self, t->fn_hash) <= S_BATCH_SHORT_US) {
            t->d = d;
            t->held = held;
            held->refs++;
        } else if (!(t->d = shoal_wire_dup(&shoal_wire_dispatch_desc, d))) {
            s_oom();
        }
        if (shoal__refmap_put(self->tasks, d->task.id, t))
            s_oom();
        int rc = s_task_start_inputs(self, t, false);
        if (rc == S_INPUTS_ROOM || (rc == S_INPUTS_WAIT && t->state == S_TASK_FETCHING))
            s_task_unpin(t);
    }
    s_held_release(held);
    return held != NULL;
}

static void s_on_cancel(s_worker_t *self, const shoal_wire_w_cancel_t *m)
{
    for (size_t i = 0; i < m->tasks.count; i++) {
        const shoal_wire_attempt_ref_t *a = &m->tasks.items[i];
        s_task_t *t = shoal__refmap_get(self->tasks, a->id);
        if (!t || (a->attempt && t->d->attempt != a->attempt))
            continue;
        s_task_fail(self, t, SHOAL_ECANCELED, 0, "canceled");
    }
}

static void s_on_drop(s_worker_t *self, const shoal_wire_w_drop_t *m)
{
    shoal__debug("w_drop: %zu objects", m->refs.count);
    for (size_t i = 0; i < m->refs.count; i++) {
        shoal_ref_t ref = m->refs.items[i];
        shoal_store_obj_t obj;
        if (shoal_store_lookup(self->store, ref, &obj) != 0)
            continue;
        if (shoal__refmap_get(self->puts, ref)) {
            s_put_drop(self, ref, NULL); //  removed or released while being written
            continue;
        }
        if (s_uses(self, ref) || shoal__refmap_get(self->fetches, ref)) {
            //  A queued or running task reads it: delete when the last one is done.
            if (shoal__refmap_put(self->drops, ref, (void *)1))
                s_oom();
            continue;
        }
        if (obj.state != SHOAL_OBJ_SEALED)
            continue; //  an output being written by a running task: its task owns it
        shoal__refmap_remove(self->copies, ref);
        shoal_store_delete(self->store, ref);
        self->room_changed = true;
    }
}

/*  ----------------------------------------------------------------------- executors */

static void s_describe_status(int status, char *buf, size_t size, int64_t *exit_code)
{
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(buf, size, "killed by signal %d (SIG%s)", sig, abbrev ? abbrev : "?");
        *exit_code = -sig;
    } else {
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
        *exit_code = WEXITSTATUS(status);
    }
}

//  The child between fork and exec of `shoal executor`: only async-signal-safe calls,
//  since the worker runs libzmq threads. Everything it needs was prepared before fork.
static void s_exec_child(const char *bin, char *const argv[], char *const envp[], pid_t parent,
                         int progress_fd, int chan_fd) __attribute__((noreturn));
static void s_exec_child(const char *bin, char *const argv[], char *const envp[], pid_t parent,
                         int progress_fd, int chan_fd)
{
    //  Its own process group (and session): exec tasks run in it and die with it.
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) //  the worker died before prctl took effect
        _exit(127);
    //  The OOM killer should pick task code, not the worker and its store (0 is neutral,
    //  1000 always first; 500 leaves room for what users raise themselves).
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t rc = write(fd, "500", 3);
        (void)rc;
        close(fd);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close_range(3, ~0u, CLOSE_RANGE_CLOEXEC); //  no worker fd (store, sockets) leaks
    if (progress_fd >= 0) //  but the progress page ($SHOAL_EXEC_PROGRESS_FD, worker.h)
        fcntl(progress_fd, F_SETFD, 0);
    fcntl(chan_fd, F_SETFD, 0); //  and its end of the channel (argv: fd:N)
    execve(bin, argv, envp);
    static const char msg[] = "shoal worker: cannot exec the executor binary\n";
    ssize_t rc = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)rc;
    _exit(127);
}

static void s_slot_spawn(s_worker_t *self, s_slot_t *slot)
{
    //  Its channel: a socketpair, both ends close-on-exec; the child clears the flag on
    //  its own end alone, so no other executor (nor any task) holds either.
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        shoal__warn("cannot start an executor for slot %d: socketpair: %s", slot->index,
                    strerror(errno));
        slot->state = S_SLOT_DOWN;
        slot->respawn_at_us = shoal__now_us() + 1000000;
        return;
    }
    snprintf(slot->chan_arg, sizeof slot->chan_arg, "fd:%d", sv[1]);
    char *argv[] = {"shoal",          "executor", slot->chan_arg, (char *)self->arena_path,
                    slot->index_text, NULL};
    pid_t parent = getpid();
    if (slot->progress) {
        atomic_store(&slot->progress->pos, 0);
        //  A dead executor's published outputs are aborted: a retry must not find them.
        for (int k = 0; k < SHOAL_EXEC_STREAMS; k++) {
            atomic_store(&slot->progress->streams[k].ref_hi, 0);
            atomic_store(&slot->progress->streams[k].ref_lo, 0);
        }
    }
    pid_t pid = fork();
    if (pid < 0) {
        shoal__warn("cannot start an executor for slot %d: fork: %s", slot->index, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        slot->state = S_SLOT_DOWN;
        slot->respawn_at_us = shoal__now_us() + 1000000;
        return;
    }
    if (pid == 0)
        s_exec_child(self->exec_bin, argv, slot->envp, parent, slot->progress_fd, sv[1]);
    close(sv[1]);
    slot->pid = pid;
    slot->state = S_SLOT_STARTING;
    shoal_chan_destroy(&slot->chan);
    if (shoal_chan_new(sv[0], SHOAL_MAX_MSG_SIZE, &slot->chan) != 0)
        s_oom();
    shoal__debug("executor for slot %d started (pid %d)", slot->index, (int)pid);
}

//  Sends slot's executor a message (queued in its channel when the socket is full: the
//  loop flushes it). SHOAL_EUNREACH: it has no channel or the channel broke.
static int s_exec_send(s_slot_t *slot, int type, const void *body)
{
    if (!slot->chan)
        return SHOAL_EUNREACH;
    int rc = shoal_chan_send(slot->chan, type, body);
    return rc == SHOAL_EIO ? SHOAL_EUNREACH : rc;
}

//  Executors have no routing id (a socketpair each): where code keyed by peer answers an
//  executor (held streaming reads), the slot and its executor's pid stand in for one, so
//  an answer for an executor that died meanwhile goes nowhere.
static shoal_wire_peer_t s_exec_peer(const s_slot_t *slot)
{
    shoal_wire_peer_t peer = {.size = 8};
    int32_t ids[2] = {slot->index, (int32_t)slot->pid};
    memcpy(peer.id, ids, sizeof ids);
    return peer;
}

static int s_exec_send_peer(s_worker_t *self, const shoal_wire_peer_t *peer, int type,
                            const void *body)
{
    int32_t ids[2];
    if (peer->size != sizeof ids)
        return SHOAL_EUNREACH;
    memcpy(ids, peer->id, sizeof ids);
    if (ids[0] < 0 || ids[0] >= self->n_slots || self->slots[ids[0]].pid != (pid_t)ids[1])
        return SHOAL_EUNREACH;
    return s_exec_send(&self->slots[ids[0]], type, body);
}

//  The unfinished tasks of the slot's batch but except go back to the front of the ready
//  queue, in order, to run on another executor; their output allocations are aborted.
//  lost: count this against them (the executor died and nobody can be blamed).
static void s_batch_requeue(s_worker_t *self, s_slot_t *slot, s_task_t *except, bool lost,
                            const char *how, int64_t exit_code)
{
    for (size_t i = slot->n_batch; i-- > 0;) { //  backwards: each goes to the front
        s_task_t *t = slot->batch[i];
        if (!t || t == except)
            continue;
        slot->batch[i] = NULL;
        slot->n_left--;
        self->n_running--;
        for (size_t k = 0; k < t->n_allocs; k++) {
            shoal_store_abort(self->store, t->allocs[k]);
            s_stream_abort(self, t->allocs[k], "the executor writing it died");
        }
        t->n_allocs = 0;
        t->slot = -1;
        if (lost && ++t->exec_lost > S_EXEC_LOST_MAX) {
            t->state = S_TASK_READY; //  on no list: failing it just frees it
            s_task_fail(self, t, SHOAL_ETASK, exit_code,
                        "executor died %d times while this task waited in its batch: %s",
                        t->exec_lost, how);
            continue;
        }
        s_ready_push(self, t, true);
    }
    slot->n_batch = slot->n_left = 0;
}

//  Kills the executor's process group (the executor and the task it runs); the SIGCHLD
//  that follows starts a new one. The rest of its batch but except is requeued.
static void s_slot_kill(s_worker_t *self, s_slot_t *slot, s_task_t *except)
{
    if (slot->pid > 0) {
        kill(-slot->pid, SIGKILL);
        kill(slot->pid, SIGKILL); //  in case it had not called setsid yet
        slot->state = S_SLOT_DYING;
    } else {
        slot->state = S_SLOT_DOWN;
    }
    s_batch_requeue(self, slot, except, false, NULL, 0);
    shoal_chan_destroy(&slot->chan);
}

//  The task the slot's executor runs now, per its progress page (or, without one, the
//  task of its batch of one), and since when; NULL when it is between tasks.
static s_task_t *s_slot_running(s_slot_t *slot, int64_t *start_us)
{
    if (slot->state != S_SLOT_BUSY || !slot->n_left)
        return NULL;
    shoal_exec_progress_t *pg = slot->progress;
    if (!pg) {
        *start_us = slot->sent_us;
        return slot->batch[0];
    }
    uint64_t pos = atomic_load_explicit(&pg->pos, memory_order_acquire);
    int64_t start = atomic_load_explicit(&pg->start_us, memory_order_acquire);
    if (atomic_load_explicit(&pg->pos, memory_order_relaxed) != pos ||
        !SHOAL_EXEC_POS_RUNNING(pos) ||
        SHOAL_EXEC_POS_SEQ(pos) != (slot->seq & ((1ull << 48) - 1)) ||
        SHOAL_EXEC_POS_INDEX(pos) >= slot->n_batch)
        return NULL;
    *start_us = start;
    return slot->batch[SHOAL_EXEC_POS_INDEX(pos)];
}

static s_slot_t *s_slot_by_pid(s_worker_t *self, pid_t pid)
{
    for (int i = 0; i < self->n_slots; i++)
        if (self->slots[i].pid == pid)
            return &self->slots[i];
    return NULL;
}

//  Collects dead children: an executor that died fails its task and is started again.
static void s_reap(s_worker_t *self)
{
    int status;
    pid_t pid;
    int64_t now = shoal__now_us();
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        s_slot_t *slot = s_slot_by_pid(self, pid);
        if (!slot)
            continue;
        kill(-pid, SIGKILL); //  whatever its tasks left behind in its group
        shoal__tree_remove(slot->scratch);
        slot->pid = 0;
        shoal_chan_destroy(&slot->chan);
        if (slot->state == S_SLOT_DYING) { //  we killed it
            slot->state = S_SLOT_DOWN;
            slot->respawn_at_us = now;
            continue;
        }
        char how[96];
        int64_t exit_code;
        s_describe_status(status, how, sizeof how, &exit_code);
        //  The task it was running fails; the rest of its batch runs again elsewhere, with
        //  those whose results died with it (worker.h: progress page).
        int64_t since;
        s_task_t *t = s_slot_running(slot, &since);
        bool busy = slot->state == S_SLOT_BUSY && slot->n_left;
        if (busy)
            s_batch_requeue(self, slot, t, !t, how, exit_code);
        if (t) {
            char text[SHOAL_REF_TEXT_SIZE];
            shoal__warn("executor for slot %d (pid %d) %s while running task %s", slot->index,
                        (int)pid, how, s_ref_text(t->d->task.id, text));
            s_task_fail(self, t, SHOAL_ETASK, exit_code, "executor died: %s", how);
        } else if (busy) {
            shoal__warn("executor for slot %d (pid %d) %s between tasks; its batch runs again",
                        slot->index, (int)pid, how);
        } else if (slot->state == S_SLOT_STARTING) {
            slot->fails++;
            if (slot->fails <= 3 || slot->fails % 100 == 0)
                shoal__error("executor for slot %d (pid %d) %s before it said hello (%s %s); "
                             "%d times in a row",
                             slot->index, (int)pid, how, self->exec_bin, slot->chan_arg,
                             slot->fails);
        } else {
            shoal__warn("executor for slot %d (pid %d) %s", slot->index, (int)pid, how);
        }
        slot->state = S_SLOT_DOWN;
        //  Back off when it dies at start (a broken binary): 200 ms doubling up to 10 s.
        int64_t delay_ms = slot->fails ? SHOAL__MIN((int64_t)100 << SHOAL__MIN(slot->fails, 7),
                                                    (int64_t)S_RESPAWN_MAX_MS)
                                       : 0;
        slot->respawn_at_us = now + delay_ms * 1000;
    }
}

//  Sends slot's executor one e_run: runnable tasks from the head of the queue, at most
//  share of them, batched as worker.h says. A task whose input vanished fails on the way.
static void s_batch_send(s_worker_t *self, s_slot_t *slot, size_t share)
{
    char text[SHOAL_REF_TEXT_SIZE];
    //  Without a progress page a crash could not be blamed on the right task: one at a time.
    size_t max = slot->progress ? SHOAL__MIN(share, (size_t)SHOAL_EXEC_BATCH_MAX) : 1;
    if (max > slot->cap_batch) {
        slot->batch = realloc(slot->batch, max * sizeof *slot->batch);
        if (!slot->batch)
            s_oom();
        slot->cap_batch = max;
    }
    if (max > self->cap_etasks) {
        self->etasks = realloc(self->etasks, max * sizeof *self->etasks);
        if (!self->etasks)
            s_oom();
        self->cap_etasks = max;
    }
    size_t n = 0, n_ins = 0;
    uint64_t budget = 0;
    while (n < max && self->ready.head) {
        s_task_t *t = self->ready.head;
        const shoal_wire_task_t *task = &t->d->task;
        uint64_t est =
            task->kind == SHOAL_KIND_FN ? s_est_get(self, t->fn_hash) : (uint64_t)UINT64_MAX;
        bool alone = est > S_BATCH_SHORT_US;
        if (n && (alone || budget + est > S_BATCH_BUDGET_US))
            break;
        s_list_unlink(t);
        if (n_ins + task->inputs.count > self->cap_eins) {
            size_t cap = SHOAL__MAX(2 * self->cap_eins, n_ins + task->inputs.count);
            self->eins = realloc(self->eins, cap * sizeof *self->eins);
            if (!self->eins)
                s_oom();
            self->cap_eins = cap;
        }
        size_t lost = SIZE_MAX;
        for (size_t i = 0; i < task->inputs.count && lost == SIZE_MAX; i++) {
            shoal_store_obj_t obj;
            const shoal_wire_input_t *in;
            bool here = shoal_store_lookup(self->store, task->inputs.items[i], &obj) == 0;
            if (here && obj.state == SHOAL_OBJ_SEALED)
                self->eins[n_ins + i] =
                    (shoal_wire_e_input_t){obj.offset, obj.size, {NULL, 0}, 0, 0};
            else if (here && i < SHOAL_STREAM_INPUTS_MAX && (task->stream >> i & 1))
                //  Still being written here: the executor reads it with e_read.
                //  gen: a read that finds another generation fails rather than read the
                //  bytes of a new allocation at this one's offset.
                self->eins[n_ins + i] = (shoal_wire_e_input_t){
                    obj.offset, obj.size, {NULL, 0}, 1, s_gen(self, task->inputs.items[i])};
            else if ((in = s_input_record(t->d, i)) && (in->flags & SHOAL_OUT_INLINE) &&
                     in->data.size == in->size)
                self->eins[n_ins + i] =
                    (shoal_wire_e_input_t){SHOAL_EXEC_INLINE, in->size, in->data, 0, 0};
            else
                lost = i;
        }
        if (lost != SIZE_MAX) {
            s_task_fail(self, t, SHOAL_ELOST, 0, "input %s vanished from the store of worker %s",
                        s_ref_text(task->inputs.items[lost], text), self->name);
            continue;
        }
        if (alone)
            s_task_unpin(t); //  it may run a long while
        //  inputs.items is set below: eins may still move.
        self->etasks[n] = (shoal_wire_e_task_t){
            .task = t->d->task, .attempt = t->d->attempt, .inputs = {NULL, task->inputs.count}};
        slot->batch[n++] = t;
        n_ins += task->inputs.count;
        budget += alone ? 0 : est;
        if (alone)
            break;
    }
    if (!n)
        return;
    for (size_t i = 0, at = 0; i < n; i++) {
        self->etasks[i].inputs.items = self->eins + at;
        at += self->etasks[i].inputs.count;
    }
    shoal_wire_e_run_t msg = {.tasks = {self->etasks, n}, .seq = ++self->batch_seq};
    int rc = s_exec_send(slot, SHOAL_MSG_e_run, &msg);
    if (rc) {
        for (size_t i = n; i-- > 0;)
            s_ready_push(self, slot->batch[i], true);
        if (rc != SHOAL_EAGAIN) {
            shoal__warn("executor for slot %d is unreachable (%s); restarting it", slot->index,
                        shoal_strerror(rc));
            s_slot_kill(self, slot, NULL);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s_task_t *t = slot->batch[i];
        t->state = S_TASK_RUNNING;
        t->slot = slot->index;
        t->batch_index = i;
    }
    self->n_running += n;
    slot->n_batch = slot->n_left = n;
    slot->hint = 0;
    slot->seq = self->batch_seq;
    slot->sent_us = shoal__now_us();
    slot->state = S_SLOT_BUSY;
    shoal__debug("e_run %llu: %zu tasks to slot %d", (unsigned long long)slot->seq, n, slot->index);
}

//  The queue is FIFO: its head goes to the idle executors, divided evenly among them.
static void s_schedule(s_worker_t *self)
{
    int idle = 0;
    for (int k = 0; k < self->n_slots; k++)
        idle += self->slots[k].state == S_SLOT_IDLE;
    for (int k = 0; k < self->n_slots && self->ready.head && idle; k++) {
        s_slot_t *slot = &self->slots[k];
        if (slot->state != S_SLOT_IDLE)
            continue;
        s_batch_send(self, slot, (self->ready.n + (size_t)idle - 1) / (size_t)idle);
        idle--;
        if (slot->state == S_SLOT_IDLE)
            break; //  its pipe is full: the others' likely too; next turn
    }
}

//  The unfinished task of slot's batch with this id and attempt, or NULL. Results come in
//  order, so the first unfinished one is nearly always it.
static s_task_t *s_batch_find(s_slot_t *slot, shoal_ref_t id, uint64_t attempt)
{
    if (slot->state != S_SLOT_BUSY)
        return NULL;
    for (size_t k = 0, n = slot->n_batch; k < n; k++) {
        size_t i = (slot->hint + k) % n;
        s_task_t *t = slot->batch[i];
        if (t && shoal_ref_equal(t->d->task.id, id) && t->d->attempt == attempt) {
            slot->hint = i;
            return t;
        }
    }
    return NULL;
}

//  Tells the broker, with this turn's flush, what happened to an object (w_objects).
//  spec: the put's ALLOC for a client's put (its name, tags, ttl go along), else NULL.
static void s_note(s_worker_t *self, shoal_ref_t ref, uint64_t state, uint64_t size,
                   const shoal_wire_put_t *spec, const char *error)
{
    shoal_wire_object_note_t note = {.ref = ref, .state = state, .size = size};
    if (spec) {
        note.name = spec->name;
        note.tags = spec->tags;
        note.ttl_ms = spec->ttl_ms;
        note.put = 1;
        note.flags = spec->flags & SHOAL_TASK_PERSIST;
    }
    note.error = (char *)error;
    shoal_wire_object_note_t *copy = shoal_wire_dup(&shoal_wire_object_note_desc, &note);
    if (!copy)
        s_oom();
    S_PUSH(self->notes, self->n_notes, self->cap_notes, copy);
}

//  The message for an allocation of size bytes that failed with rc.
static int s_alloc_error(s_worker_t *self, int rc, const char *what, uint64_t size, char *error,
                         size_t len)
{
    char sz[32], st[192];
    s_store_text(self, st, sizeof st);
    if (rc == SHOAL_EFULL)
        snprintf(error, len, "store full: no room for %s (%s) after waiting %d ms; %s", what,
                 s_size_text(size, sz, sizeof sz), S_ALLOC_WAIT_MS, st);
    else if (rc == SHOAL_ETOOBIG) {
        snprintf(error, len, "%s (%s) is larger than the whole store of worker %s (%s)", what,
                 s_size_text(size, sz, sizeof sz), self->name,
                 s_size_text(shoal_store_capacity(self->store), st, sizeof st));
        rc = SHOAL_EFULL; //  the issue's contract: EFULL at once, naming the sizes
    } else
        snprintf(error, len, "cannot allocate %s (%s): %s", what, s_size_text(size, sz, sizeof sz),
                 shoal_strerror(rc));
    return rc;
}

static void s_park(s_worker_t *self, s_slot_t *slot, const shoal_wire_peer_t *peer,
                   const shoal_wire_desc_t *desc, const void *msg)
{
    s_parked_t p = {.slot = slot, .pid = slot ? slot->pid : 0};
    if (peer)
        p.peer = *peer;
    if (!(p.msg = shoal_wire_dup(desc, msg)))
        s_oom();
    p.deadline_us = shoal__now_us() + (int64_t)S_ALLOC_WAIT_MS * 1000;
    S_PUSH(self->parked, self->n_parked, self->cap_parked, p);
}

/*  Answers an e_alloc. may_wait: an allocation that does not fit now returns true
    without answering (the caller parks the request); else it fails with SHOAL_EFULL. */
static bool s_on_e_alloc(s_worker_t *self, s_slot_t *slot, const shoal_wire_e_alloc_t *m,
                         bool may_wait)
{
    s_task_t *t = s_batch_find(slot, m->id, m->attempt);
    shoal_wire_e_alloc_ok_t reply = {0};
    char error[512];
    uint64_t *offsets = NULL;
    if (!t) {
        reply.code = SHOAL_ESTATE;
        reply.error = "e_alloc for a task this executor is not running";
        goto send;
    }
    size_t n_out = s_n_outputs(t);
    if (m->sizes.count != n_out + 1) {
        reply.code = SHOAL_EPROTO;
        snprintf(error, sizeof error, "e_alloc with %zu sizes for %zu outputs and the log",
                 m->sizes.count, n_out);
        reply.error = error;
        goto send;
    }
    offsets = s_alloc0(m->sizes.count * sizeof *offsets);
    t->allocs = realloc(t->allocs, (t->n_allocs + m->sizes.count) * sizeof *t->allocs);
    if (!t->allocs)
        s_oom();
    size_t first = t->n_allocs;
    for (size_t i = 0; i < m->sizes.count; i++) {
        uint64_t size = m->sizes.items[i];
        if (size == SHOAL_EXEC_INLINE) {
            offsets[i] = SHOAL_EXEC_INLINE;
            continue;
        }
        bool is_log = i == n_out;
        shoal_ref_t ref =
            shoal_ref_output(t->d->task.id, is_log ? SHOAL_REF_LOG_INDEX : (uint16_t)i);
        shoal_store_obj_t obj;
        int rc = s_clear_for_output(self, ref);
        if (rc == 0)
            rc = s_store_alloc(self, ref, size, &obj);
        if (rc) {
            for (size_t k = first; k < t->n_allocs; k++)
                shoal_store_abort(self->store, t->allocs[k]);
            t->n_allocs = first;
            if (rc == SHOAL_EFULL && may_wait) {
                free(offsets);
                return true;
            }
            char what[32];
            if (is_log)
                snprintf(what, sizeof what, "the log");
            else
                snprintf(what, sizeof what, "output %zu", i);
            reply.code = s_alloc_error(self, rc, what, size, error, sizeof error);
            reply.error = error;
            goto send;
        }
        offsets[i] = obj.offset;
        t->allocs[t->n_allocs++] = ref;
    }
    reply.offsets = (shoal_wire_u64s_t){offsets, m->sizes.count};
    //  The broker learns where the outputs will be before their bytes exist.
    for (size_t i = 0; i < m->sizes.count; i++)
        if (m->sizes.items[i] != SHOAL_EXEC_INLINE && i != n_out)
            s_note(self, shoal_ref_output(t->d->task.id, (uint16_t)i), SHOAL_OBJ_NOTE_ALLOCATED,
                   m->sizes.items[i], NULL, NULL);
send:;
    int rc = s_exec_send(slot, SHOAL_MSG_e_alloc_ok, &reply);
    if (rc)
        shoal__warn("cannot answer the executor of slot %d: %s", slot->index, shoal_strerror(rc));
    free(offsets);
    return false;
}

//  Stores one result entry: inline bytes are put, allocated ones sealed.
static int s_store_entry(s_worker_t *self, s_task_t *t, shoal_ref_t ref,
                         const shoal_wire_output_t *o)
{
    if (o->flags & SHOAL_OUT_INLINE) {
        if (o->data.size != o->size)
            return SHOAL_EPROTO;
        int rc = s_clear_for_output(self, ref);
        return rc ? rc : s_store_put(self, ref, o->size ? (const void *)o->data.data : "", o->size);
    }
    for (size_t k = 0; k < t->n_allocs; k++) {
        if (!shoal_ref_equal(t->allocs[k], ref))
            continue;
        shoal_store_obj_t obj;
        if (shoal_store_lookup(self->store, ref, &obj) != 0 || obj.state != SHOAL_OBJ_ALLOCATED ||
            obj.offset != o->offset || obj.size != o->size)
            return SHOAL_EPROTO;
        t->allocs[k] = t->allocs[--t->n_allocs];
        return shoal_store_seal(self->store, ref);
    }
    return SHOAL_EPROTO;
}

//  One result from slot's executor. r points into a message kept until the flush: the
//  result for the broker points into it too (inline outputs, the log tail).
static void s_on_e_done(s_worker_t *self, s_slot_t *slot, const shoal_wire_result_t *r)
{
    char error[1024], text[SHOAL_REF_TEXT_SIZE], sz[32], st[192];
    s_task_t *t = s_batch_find(slot, r->id, r->attempt);
    if (!t) {
        shoal__warn("executor of slot %d reported a task it was not running (%s)", slot->index,
                    s_ref_text(r->id, text));
        return;
    }
    s_est_note(self, t->fn_hash, r->runtime_us);
    shoal_ref_t id = t->d->task.id;
    size_t n_out = s_n_outputs(t);
    //  Codes are small negatives (shoal.h); anything else from an executor is a failure.
    int status = r->status == 0                       ? 0
                 : r->status < 0 && r->status > -1000 ? (int)r->status
                                                      : SHOAL_ETASK;
    const char *reason = r->error && r->error[0] ? r->error : NULL;
    size_t count = r->outputs.count;
    size_t stored = 0; //  outputs 0..stored-1 may be in the store
    bool log_kept = false;
    //  A failed command may add, last, the tail of its stdout (SHOAL_OUT_STDOUT): it is
    //  not stored here, only forwarded to the broker, which keeps it inline.
    const shoal_wire_output_t *stdout_tail = NULL;
    if (status != 0 && count > 0 && (r->outputs.items[count - 1].flags & SHOAL_OUT_STDOUT) &&
        (r->outputs.items[count - 1].flags & SHOAL_OUT_INLINE))
        stdout_tail = &r->outputs.items[--count];
    bool shape_ok = status == 0 ? (count == n_out || count == n_out + 1) : count <= 1;
    if (!shape_ok) {
        snprintf(error, sizeof error, "executor sent %zu result entries for %zu outputs", count,
                 n_out);
        status = SHOAL_EPROTO;
        reason = error;
        count = 0;
    }
    //  Outputs that travel inline go to the broker, which keeps their bytes: the store
    //  does not keep them too (worker.h). The result's inline bytes stay within a budget;
    //  past it (only a worker with a larger budget than its executors'), they are stored.
    shoal_wire_output_t *outs = NULL;
    if (status == 0) {
        outs = s_bump_alloc(self, n_out * sizeof *outs);
        memset(outs, 0, n_out * sizeof *outs);
    }
    uint64_t budget = S_RESULT_INLINE_BUDGET;
    int first_status = status;
    for (size_t i = 0; i < count; i++) {
        bool is_log = first_status == 0 ? i == n_out : true;
        if (!is_log && status != 0)
            continue; //  a failed task keeps no outputs; s_task_free aborts their space
        shoal_ref_t ref = shoal_ref_output(id, is_log ? SHOAL_REF_LOG_INDEX : (uint16_t)i);
        const shoal_wire_output_t *o = &r->outputs.items[i];
        bool in_line = (o->flags & SHOAL_OUT_INLINE) && o->data.size == o->size;
        if (is_log && in_line && o->size <= r->log_tail.size)
            continue; //  the broker gets all of it as the log tail
        if (!is_log && in_line && o->size <= SHOAL_INLINE_MAX && o->size <= budget) {
            outs[i] =
                (shoal_wire_output_t){.size = o->size, .flags = SHOAL_OUT_INLINE, .data = o->data};
            budget -= o->size;
            int rc = s_clear_for_output(self, ref); //  left by an earlier attempt
            if (rc == 0)
                continue;
            s_store_text(self, st, sizeof st);
            snprintf(error, sizeof error, "cannot keep output %zu (%s): %s; %s", i,
                     s_size_text(o->size, sz, sizeof sz), "an object of that name is in use", st);
            status = rc;
            reason = error;
            continue;
        }
        int rc = s_store_entry(self, t, ref, o);
        if (rc == 0) {
            if (is_log)
                log_kept = true;
            else
                stored = i + 1;
            continue;
        }
        if (is_log) {
            shoal__warn("cannot keep the log of task %s: %s", s_ref_text(id, text),
                        shoal_strerror(rc));
        } else if (status == 0) {
            s_store_text(self, st, sizeof st);
            snprintf(error, sizeof error, "cannot keep output %zu (%s): %s; %s", i,
                     s_size_text(o->size, sz, sizeof sz),
                     rc == SHOAL_EEXIST ? "an object of that name is in use" : shoal_strerror(rc),
                     st);
            status = rc == SHOAL_ETOOBIG ? SHOAL_EFULL : rc;
            reason = error;
        }
    }
    //  Persisted: each output in the store gets its synced disk copy before the result goes
    //  (s_persist_pump, in steps across loop turns; the flush that sends it syncs the index
    //  too).
    shoal_ref_t *persist = NULL;
    size_t n_persist = 0;
    if (status == 0 && stored && s_wants_persist(t->d->task.flags, t->d->task.name)) {
        persist = malloc(stored * sizeof *persist);
        if (!persist)
            s_oom();
        for (size_t i = 0; i < stored; i++) {
            shoal_ref_t ref = shoal_ref_output(id, (uint16_t)i);
            shoal_store_obj_t obj;
            if (shoal_store_lookup(self->store, ref, &obj) == 0) //  else inline: the broker has it
                persist[n_persist++] = ref;
        }
    }
    if (status != 0)
        for (size_t i = 0; i < stored; i++) { //  a failed task leaves no outputs behind
            shoal_store_delete(self->store, shoal_ref_output(id, (uint16_t)i));
            s_gen_bump(self, shoal_ref_output(id, (uint16_t)i)); //  a stream may have read it
        }

    //  The result for the broker: sizes, and the bytes of small outputs so the broker can
    //  answer small gets itself, even after this worker is gone.
    size_t n = 0;
    if (status == 0) {
        for (size_t i = 0; i < n_out; i++) {
            if (outs[i].flags & SHOAL_OUT_INLINE)
                continue;
            shoal_store_obj_t obj;
            outs[i] = (shoal_wire_output_t){0};
            if (shoal_store_lookup(self->store, shoal_ref_output(id, (uint16_t)i), &obj) != 0)
                continue; //  cannot happen: stored above
            outs[i].size = obj.size;
            if (obj.state == SHOAL_OBJ_SEALED && obj.size <= SHOAL_INLINE_MAX &&
                obj.size <= budget) {
                //  A copy: the store's bytes could go before the flush (a w_drop).
                outs[i].flags = SHOAL_OUT_INLINE;
                outs[i].data = (shoal_wire_bin_t){
                    memcpy(s_bump_alloc(self, obj.size), obj.data, obj.size), obj.size};
                budget -= obj.size;
            }
        }
        n = n_out;
    } else if (stdout_tail) {
        outs = s_bump_alloc(self, sizeof *outs);
        outs[0] = *stdout_tail;
        n = 1;
    }
    bool log_whole = log_kept || r->log_size <= r->log_tail.size;
    shoal_wire_result_t res = {
        .id = id,
        .attempt = t->d->attempt,
        .status = status,
        .exit_code = r->exit_code,
        .error = status ? s_bump_strdup(self, reason ? reason : shoal_strerror(status)) : NULL,
        .outputs = {outs, n},
        //  A log that could not be kept: its tail stands in for it (the broker keeps a
        //  log whose tail is all of it inline).
        .log_size = log_whole ? r->log_size : r->log_tail.size,
        .log_tail = r->log_tail,
        .runtime_us = r->runtime_us};
    if (n_persist) {
        s_persist_t job = {.result = shoal_wire_dup(&shoal_wire_result_desc, &res)};
        if (!job.result)
            s_oom();
        s_persist_add(self, &job, persist, n_persist);
    } else
        s_result_add(self, &res);
    free(persist);
    s_task_free(self, t); //  aborts allocations the result did not name
    if (!slot->n_left) {
        slot->n_batch = 0;
        slot->state = S_SLOT_IDLE;
    }
}

//  Returns true when it kept the message (results point into it until the flush).
static bool s_on_exec_msg(s_worker_t *self, s_slot_t *slot, shoal_wire_in_t *in)
{
    shoal_msg_t *m = &in->msg;
    if (m->type == SHOAL_MSG_e_hello) {
        if (slot->state != S_SLOT_STARTING || (uint64_t)slot->pid != m->u.e_hello.pid ||
            m->u.e_hello.slot != (uint64_t)slot->index) {
            shoal__debug("ignoring e_hello from pid %llu for slot %llu on slot %d",
                         (unsigned long long)m->u.e_hello.pid,
                         (unsigned long long)m->u.e_hello.slot, slot->index);
            return false;
        }
        slot->state = S_SLOT_IDLE;
        slot->fails = 0;
        return false;
    }
    if (slot->state != S_SLOT_IDLE && slot->state != S_SLOT_BUSY)
        return false; //  before its hello, or the last words of an executor we killed
    switch (m->type) {
    case SHOAL_MSG_e_started: { //  from an executor without a progress page
        s_task_t *t = s_batch_find(slot, m->u.e_started.id, m->u.e_started.attempt);
        if (t && !t->started_sent) {
            shoal_wire_attempt_ref_t a = {t->d->task.id, t->d->attempt};
            S_PUSH(self->started, self->n_started, self->cap_started, a);
            t->started_sent = true;
        }
        return false;
    }
    case SHOAL_MSG_e_alloc:
        if (s_on_e_alloc(self, slot, &m->u.e_alloc, true))
            s_park(self, slot, NULL, &shoal_wire_e_alloc_desc, &m->u.e_alloc);
        return false;
    case SHOAL_MSG_e_read: {
        //  A fn task reading a streaming input: answered as a streaming fetch would be.
        shoal_wire_fetch_t req = {.ref = m->u.e_read.ref,
                                  .offset = m->u.e_read.offset,
                                  .flags = SHOAL_FETCH_STREAM,
                                  .wait_ms = m->u.e_read.wait_ms};
        s_stream_ask(self, &in->peer, &req, true);
        return false;
    }
    case SHOAL_MSG_e_done:
        s_on_e_done(self, slot, &m->u.e_done.result);
        break;
    case SHOAL_MSG_e_done_batch:
        for (size_t i = 0; i < m->u.e_done_batch.results.count; i++)
            s_on_e_done(self, slot, &m->u.e_done_batch.results.items[i]);
        break;
    default:
        s_malformed(self, "executor", SHOAL_EPROTO);
        return false;
    }
    S_PUSH(self->kept, self->n_kept, self->cap_kept, *in);
    return true;
}

//  Reads what slot's executor sent. A channel that broke (the executor died: its fd reads
//  as end of file) is closed at once, so the loop does not wake for it again; s_reap
//  then deals with the process.
static void s_exec_drain(s_worker_t *self, s_slot_t *slot)
{
    for (int i = 0; i < S_DRAIN_MAX && slot->chan && !self->stopping; i++) {
        shoal_wire_in_t in;
        memset(&in, 0, sizeof in);
        in.peer = s_exec_peer(slot);
        int rc = shoal_chan_recv(slot->chan, &in.msg);
        if (rc == SHOAL_EAGAIN || rc == SHOAL_ENOMEM)
            return;
        if (rc == SHOAL_EIO) {
            shoal__debug("executor for slot %d closed its channel", slot->index);
            shoal_chan_destroy(&slot->chan);
            return;
        }
        if (rc) {
            s_malformed(self, "executor", rc);
            continue;
        }
        if (!s_on_exec_msg(self, slot, &in))
            shoal_wire_in_clear(&in);
    }
}

/*  ---------------------------------------------------------------------- data server */

static const char s_empty[1] = "";

/*  ------------------------------------------------------------------ streaming reads

    A streaming fetch (SHOAL_FETCH_STREAM) of an object still being written is answered
    with the bytes below its watermark, or held (s_waiter_t) until some land beyond its
    offset, it is sealed or aborted, or its wait runs out. Held fetches are looked at again
    on every loop turn while any are held (a lookup each: a few per streaming reader), so
    nothing is spent on streaming unless a reader streams. */

#define S_HELD 1 //  s_serve_stream: not answerable yet

static int s_serve_final(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req, const shoal_store_obj_t *obj);

/*  Allocation generations. A ref aborted here (its writer aborted it, its executor died,
    its task failed) may be allocated again by a retry, which writes other bytes under the
    same ref; a stream that had read some of the first allocation must not go on into the
    second. So data replies carry the ref's generation: 0 for a ref never aborted here,
    bumped at each abort. Kept S_GEN_MS after the last abort and while the ref is in the
    store; packed in the map's value as (until_ms << 16 | gen), gen 1..65535 (an entry
    per aborted ref, no malloc). */
#define S_GEN_MS        60000 //  as long as the client remembers removed refs
#define S_GEN_SWEEP_MIN 4096  //  entries before expired ones are swept

static uint64_t s_gen(s_worker_t *self, shoal_ref_t ref)
{
    uintptr_t v = (uintptr_t)shoal__refmap_get(self->gens, ref);
    return v & 0xffff;
}

static void s_gen_bump(s_worker_t *self, shoal_ref_t ref)
{
    int64_t now = shoal__now_ms();
    if (shoal__refmap_size(self->gens) >= SHOAL__MAX(self->gens_sweep_at, S_GEN_SWEEP_MIN)) {
        size_t cursor = 0, n = 0, cap = shoal__refmap_size(self->gens);
        shoal_ref_t key, *old = malloc(cap * sizeof *old);
        void *value;
        shoal_store_obj_t obj;
        if (!old)
            s_oom();
        while (n < cap && shoal__refmap_next(self->gens, &cursor, &key, &value))
            if ((int64_t)((uintptr_t)value >> 16) <= now &&
                shoal_store_lookup(self->store, key, &obj) != 0)
                old[n++] = key;
        for (size_t i = 0; i < n; i++)
            shoal__refmap_remove(self->gens, old[i]);
        free(old);
        //  Live entries (refs still in the store) do not make every bump sweep.
        self->gens_sweep_at = 2 * shoal__refmap_size(self->gens);
    }
    uint64_t gen = s_gen(self, ref) % 0xffff + 1;
    if (shoal__refmap_put(self->gens, ref, (void *)(((uintptr_t)(now + S_GEN_MS) << 16) | gen)))
        s_oom();
}

//  What the executors running tasks published of obj (worker.h: shoal_exec_stream_t).
static uint64_t s_exec_ready(s_worker_t *self, const shoal_store_obj_t *obj)
{
    for (int i = 0; i < self->n_slots; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->state != S_SLOT_BUSY || !slot->progress)
            continue;
        for (int k = 0; k < SHOAL_EXEC_STREAMS; k++) {
            shoal_exec_stream_t *e = &slot->progress->streams[k];
            if (atomic_load_explicit(&e->ref_hi, memory_order_acquire) != obj->ref.hi ||
                atomic_load_explicit(&e->ref_lo, memory_order_acquire) != obj->ref.lo)
                continue;
            uint64_t ready = atomic_load_explicit(&e->ready, memory_order_acquire);
            //  Still its entry after the read: not one freed and claimed again meanwhile.
            if (atomic_load_explicit(&e->ref_hi, memory_order_acquire) == obj->ref.hi &&
                atomic_load_explicit(&e->ref_lo, memory_order_acquire) == obj->ref.lo)
                return SHOAL__MIN(ready, obj->size);
        }
    }
    return 0;
}

//  Bytes of an object readable from 0: all once sealed; for a put being written what
//  arrived (remote writer) or what its writer said it wrote (in place); for a task's
//  output what its executor published.
static uint64_t s_ready(s_worker_t *self, const shoal_store_obj_t *obj)
{
    if (obj->state != SHOAL_OBJ_ALLOCATED) //  sealed, or sealed and spilled since
        return obj->size;
    const s_put_t *p = shoal__refmap_get(self->puts, obj->ref);
    if (!p) {
        const s_fetch_t *f = shoal__refmap_get(self->fetches, obj->ref);
        if (f && f->stream) //  our copy of an object streamed from its writer's worker
            return SHOAL__MIN(f->ready, obj->size);
        return s_exec_ready(self, obj);
    }
    return SHOAL__MIN(SHOAL__MAX(p->watermark, p->in_place), obj->size);
}

/*  Answers a streaming fetch, or returns S_HELD when nothing beyond its offset has landed
    and last is false (last: its wait ran out, answer what there is). Else returns what
    shoal_wire_send returned (SHOAL_EAGAIN: the reader's pipe is full, try later). */
static int s_serve_stream(s_worker_t *self, const shoal_wire_peer_t *peer,
                          const shoal_wire_fetch_t *req, bool last, bool exec)
{
    char error[256], text[SHOAL_REF_TEXT_SIZE];
    shoal_wire_data_t reply = {
        .seq = req->seq, .ref = req->ref, .offset = req->offset, .gen = s_gen(self, req->ref)};
    if (exec) {
        //  An executor reads the bytes in the arena itself: it needs only the watermark.
        shoal_store_obj_t obj;
        shoal_wire_e_ready_t r = {.ref = req->ref, .gen = reply.gen};
        if (shoal_store_lookup(self->store, req->ref, &obj) != 0) {
            if (!last)
                return S_HELD;
            r.code = SHOAL_ENOTFOUND;
            snprintf(error, sizeof error, "input %s is not on worker %s (aborted or removed)",
                     s_ref_text(req->ref, text), self->name);
            r.error = error;
        } else {
            r.size = obj.size;
            r.ready = s_ready(self, &obj);
            //  A task's input is never spilled (s_spill_skip): any final state is SEALED.
            r.final = obj.state != SHOAL_OBJ_ALLOCATED;
            if (req->offset >= r.ready && !r.final && !last)
                return S_HELD;
        }
        return s_exec_send_peer(self, peer, SHOAL_MSG_e_ready, &r);
    }
    shoal_store_obj_t obj;
    if (shoal_store_lookup(self->store, req->ref, &obj) != 0) {
        if (!last)
            return S_HELD; //  its writer may not have allocated it yet
        reply.code = SHOAL_ENOTFOUND;
        snprintf(error, sizeof error, "object %s is not on worker %s", s_ref_text(req->ref, text),
                 self->name);
    } else if (obj.state != SHOAL_OBJ_ALLOCATED) {
        //  Sealed, or sealed and spilled to the disk tier since (obj.data is NULL then):
        //  final, served as a plain fetch is.
        return s_serve_final(self, peer, req, &obj);
    } else if (req->offset > obj.size) {
        reply.code = SHOAL_EINVAL;
        reply.size = obj.size;
        snprintf(error, sizeof error, "offset %llu is beyond the %llu bytes of object %s",
                 (unsigned long long)req->offset, (unsigned long long)obj.size,
                 s_ref_text(req->ref, text));
    } else {
        uint64_t ready = s_ready(self, &obj);
        if (req->offset >= ready && !last)
            return S_HELD;
        reply.size = obj.size;
        reply.ready = ready;
        uint64_t len = req->length ? req->length : SHOAL_CHUNK_SIZE;
        len = SHOAL__MIN(len, ready > req->offset ? ready - req->offset : 0);
        len = SHOAL__MIN(len, (uint64_t)S_DATA_REPLY_MAX);
        return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply,
                               len ? (const void *)(obj.data + req->offset) : s_empty, (size_t)len);
    }
    reply.error = error;
    return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply, s_empty, 0);
}

//  Holds a streaming fetch; when too many are held, it is answered now (ask again).
static void s_stream_hold(s_worker_t *self, const shoal_wire_peer_t *peer,
                          const shoal_wire_fetch_t *req, bool exec)
{
    if (self->n_waiters >= S_STREAM_WAIT_MAX) {
        s_serve_stream(self, peer, req, true, exec);
        return;
    }
    uint64_t wait_ms = SHOAL__MIN(req->wait_ms ? req->wait_ms : 1000, (uint64_t)S_STREAM_HOLD_MS);
    shoal_store_obj_t obj;
    s_waiter_t w = {.peer = *peer,
                    .req = *req,
                    .deadline_us = shoal__now_us() + (int64_t)wait_ms * 1000,
                    .seen = shoal_store_lookup(self->store, req->ref, &obj) == 0,
                    .exec = exec};
    S_PUSH(self->waiters, self->n_waiters, self->cap_waiters, w);
}

//  Answers a streaming read now, or holds it.
static void s_stream_ask(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req, bool exec)
{
    if (s_serve_stream(self, peer, req, false, exec) == S_HELD)
        s_stream_hold(self, peer, req, exec);
}

//  Fails the streaming fetches held on ref: its writer aborted it or died (why says which).
static void s_stream_abort(s_worker_t *self, shoal_ref_t ref, const char *why)
{
    char error[512], text[SHOAL_REF_TEXT_SIZE];
    s_gen_bump(self, ref);
    size_t kept = 0;
    for (size_t i = 0; i < self->n_waiters; i++) {
        s_waiter_t *w = &self->waiters[i];
        if (!shoal_ref_equal(w->req.ref, ref)) {
            self->waiters[kept++] = *w;
            continue;
        }
        snprintf(error, sizeof error, "object %s was aborted on worker %s: %s",
                 s_ref_text(ref, text), self->name, why);
        if (w->exec) {
            shoal_wire_e_ready_t r = {.ref = ref, .code = SHOAL_ECANCELED, .error = error};
            s_exec_send_peer(self, &w->peer, SHOAL_MSG_e_ready, &r);
            continue;
        }
        shoal_wire_data_t reply = {.seq = w->req.seq,
                                   .ref = ref,
                                   .offset = w->req.offset,
                                   .code = SHOAL_ECANCELED,
                                   .error = error};
        shoal_wire_send(self->data, &w->peer, SHOAL_MSG_data, &reply, s_empty, 0);
    }
    self->n_waiters = kept;
}

//  Answers the held streaming fetches that can be now (bytes landed, sealed, gone, or out
//  of time). An object that vanished under a held fetch was aborted or removed.
static void s_stream_run(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    size_t kept = 0;
    shoal_ref_t gone = {0};
    bool any_gone = false;
    for (size_t i = 0; i < self->n_waiters; i++) {
        s_waiter_t *w = &self->waiters[i];
        shoal_store_obj_t obj;
        bool here = shoal_store_lookup(self->store, w->req.ref, &obj) == 0;
        if (w->seen && !here) {
            gone = w->req.ref; //  answered below, with the others on it
            any_gone = true;
            self->waiters[kept++] = *w;
            continue;
        }
        w->seen = here;
        int rc = s_serve_stream(self, &w->peer, &w->req, now >= w->deadline_us, w->exec);
        if (rc == S_HELD || rc == SHOAL_EAGAIN)
            self->waiters[kept++] = *w;
    }
    self->n_waiters = kept;
    //  One vanished object a turn is plenty: aborts and removals tell first (s_put_drop).
    if (any_gone)
        s_stream_abort(self, gone, "it was removed or its writer went away");
}

//  Answers one fetch. Returns what shoal_wire_send returned (SHOAL_EAGAIN: try later), or
//  S_HELD for a streaming fetch to hold (s_stream_hold).
static int s_serve_fetch(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req)
{
    if (req->flags & SHOAL_FETCH_STREAM)
        return s_serve_stream(self, peer, req, false, false);
    char error[256], text[SHOAL_REF_TEXT_SIZE];
    shoal_wire_data_t reply = {.seq = req->seq, .ref = req->ref, .offset = req->offset};
    shoal_store_obj_t obj;
    if (shoal_store_lookup(self->store, req->ref, &obj) != 0) {
        reply.code = SHOAL_ENOTFOUND;
        snprintf(error, sizeof error, "object %s is not on worker %s", s_ref_text(req->ref, text),
                 self->name);
    } else if (obj.state != SHOAL_OBJ_SEALED && obj.state != SHOAL_OBJ_SPILLED) {
        reply.code = SHOAL_EAGAIN;
        snprintf(error, sizeof error, "object %s is not sealed yet", s_ref_text(req->ref, text));
    } else
        return s_serve_final(self, peer, req, &obj);
    reply.error = error;
    return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply, s_empty, 0);
}

/*  Answers a fetch of obj, sealed or spilled (a streaming fetch too: ready is the size and
    final 1). Returns what shoal_wire_send returned. */
static int s_serve_final(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req, const shoal_store_obj_t *obj)
{
    char error[256], text[SHOAL_REF_TEXT_SIZE];
    shoal_wire_data_t reply = {
        .seq = req->seq, .ref = req->ref, .offset = req->offset, .gen = s_gen(self, req->ref)};
    if (req->offset > obj->size) {
        reply.code = SHOAL_EINVAL;
        reply.size = obj->size;
        snprintf(error, sizeof error, "offset %llu is beyond the %llu bytes of object %s",
                 (unsigned long long)req->offset, (unsigned long long)obj->size,
                 s_ref_text(req->ref, text));
    } else {
        reply.size = obj->size;
        reply.ready = obj->size;
        reply.final = 1;
        uint64_t len = req->length ? req->length : SHOAL_CHUNK_SIZE;
        len = SHOAL__MIN(len, obj->size - req->offset);
        len = SHOAL__MIN(len, (uint64_t)S_DATA_REPLY_MAX);
        if (obj->state == SHOAL_OBJ_SPILLED && len) {
            //  Served from the disk tier as it is: no arena room needed, nothing on the wire
            //  changes (one LMDB read transaction per chunk, from the page cache ~0.3 ms/MiB).
            void *buf = malloc((size_t)len);
            if (!buf)
                s_oom();
            int rc = shoal_store_read(self->store, req->ref, req->offset, len, buf);
            if (rc == 0) {
                rc = shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply, buf, (size_t)len);
                free(buf);
                return rc;
            }
            free(buf);
            reply.code = rc;
            snprintf(error, sizeof error,
                     "cannot read object %s from the disk tier of worker %s: %s",
                     s_ref_text(req->ref, text), self->name, shoal_strerror(rc));
            reply.error = error;
            return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply, s_empty, 0);
        }
        //  Copied into the frame: a zero-copy frame would read freed space if the object
        //  were deleted while the frame waits in the pipe.
        return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply,
                               len ? (const void *)(obj->data + req->offset) : s_empty,
                               (size_t)len);
    }
    reply.error = error;
    return shoal_wire_send(self->data, peer, SHOAL_MSG_data, &reply, s_empty, 0);
}

static bool s_stash_has(s_worker_t *self, const shoal_wire_peer_t *peer)
{
    for (size_t i = 0; i < self->n_stash; i++)
        if (shoal_wire_peer_equal(&self->stash[i].peer, peer))
            return true;
    return false;
}

//  A reader's pipe is full: keep its request (in order behind its others) for later.
static void s_stash_push(s_worker_t *self, const shoal_wire_peer_t *peer,
                         const shoal_wire_fetch_t *req)
{
    if (self->n_stash == S_DATA_STASH_MAX) {
        //  The reader times out and asks again; better than unbounded memory.
        s_malformed(self, "data (overflow)", SHOAL_EAGAIN);
        return;
    }
    if (!self->stash)
        self->stash = s_alloc0(S_DATA_STASH_MAX * sizeof *self->stash);
    self->stash[self->n_stash].peer = *peer;
    self->stash[self->n_stash].req = *req;
    self->n_stash++;
}

//  Retries held requests in order; a reader still full keeps the rest of its requests.
static void s_stash_retry(s_worker_t *self)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->n_stash; i++) {
        s_stash_t *e = &self->stash[i];
        bool blocked = false;
        for (size_t k = 0; k < kept && !blocked; k++)
            blocked = shoal_wire_peer_equal(&self->stash[k].peer, &e->peer);
        int rc = blocked ? SHOAL_EAGAIN : s_serve_fetch(self, &e->peer, &e->req);
        if (rc == S_HELD)
            s_stream_hold(self, &e->peer, &e->req, false);
        if (rc != SHOAL_EAGAIN)
            continue; //  sent, held, or the reader is gone
        self->stash[kept++] = *e;
    }
    self->n_stash = kept;
}

/*  --------------------------------------------------------------------- client puts */

static void s_put_reply(s_worker_t *self, const shoal_wire_peer_t *peer, const shoal_wire_put_t *m,
                        int code, const char *error, uint64_t offset)
{
    shoal_wire_put_reply_t reply = {
        .seq = m->seq, .ref = m->ref, .code = code, .error = (char *)error, .offset = offset};
    int rc = shoal_wire_send(self->data, peer, SHOAL_MSG_put_reply, &reply, NULL, 0);
    if (rc && rc != SHOAL_EUNREACH)
        shoal__debug("cannot answer a put: %s", shoal_strerror(rc)); //  the writer asks again
}

static void s_put_free(s_put_t *p)
{
    if (p) {
        free(p->spec);
        free(p);
    }
}

//  Drops a put being written (abort, lease, w_drop); why != NULL tells the broker.
static void s_put_drop(s_worker_t *self, shoal_ref_t ref, const char *why)
{
    s_put_t *p = shoal__refmap_remove(self->puts, ref);
    if (!p)
        return;
    shoal_store_abort(self->store, ref);
    self->room_changed = true;
    s_stream_abort(self, ref, why ? why : "it was removed");
    if (why)
        s_note(self, ref, SHOAL_OBJ_NOTE_ABORTED, p->spec->size, p->spec, why);
    s_put_free(p);
}

/*  SHOAL_PUT_OP_ALLOC. Idempotent: a client that asks again (its answer was lost) gets the
    same offset. may_wait as for s_on_e_alloc: true = park me. */
static bool s_put_alloc(s_worker_t *self, const shoal_wire_peer_t *peer, const shoal_wire_put_t *m,
                        bool may_wait)
{
    char error[512], text[SHOAL_REF_TEXT_SIZE], what[64];
    shoal_store_obj_t obj;
    s_put_t *p = shoal__refmap_get(self->puts, m->ref);
    if (p) {
        if (p->spec->size != m->size) {
            snprintf(error, sizeof error, "object %s is being written with another size (%llu)",
                     s_ref_text(m->ref, text), (unsigned long long)p->spec->size);
            s_put_reply(self, peer, m, SHOAL_EEXIST, error, 0);
            return false;
        }
        p->last_us = shoal__now_us();
    } else {
        if (shoal_ref_is_null(m->ref) || shoal_ref_index(m->ref) != 0) {
            snprintf(error, sizeof error, "put: %s is not a put's ref (output index must be 0)",
                     s_ref_text(m->ref, text));
            s_put_reply(self, peer, m, SHOAL_EINVAL, error, 0);
            return false;
        }
        if (shoal_store_lookup(self->store, m->ref, &obj) == 0) {
            snprintf(error, sizeof error, "object %s already exists on worker %s",
                     s_ref_text(m->ref, text), self->name);
            s_put_reply(self, peer, m, SHOAL_EEXIST, error, 0);
            return false;
        }
        if (s_wants_persist(m->flags, m->name) && m->size > shoal_store_persist_max(self->store)) {
            //  Refused now rather than at the seal, after every byte was sent.
            char st[96];
            s_persist_text(self, SHOAL_ETOOBIG, st, sizeof st);
            snprintf(error, sizeof error, "object %s (%llu bytes) cannot be persisted: %s",
                     s_ref_text(m->ref, text), (unsigned long long)m->size, st);
            s_put_reply(self, peer, m, SHOAL_ETOOBIG, error, 0);
            return false;
        }
        int rc = s_store_alloc(self, m->ref, m->size, &obj);
        if (rc == SHOAL_EFULL && may_wait)
            return true;
        if (rc) {
            snprintf(what, sizeof what, "object %s", s_ref_text(m->ref, text));
            rc = s_alloc_error(self, rc, what, m->size, error, sizeof error);
            s_put_reply(self, peer, m, rc, error, 0);
            return false;
        }
        p = s_alloc0(sizeof *p);
        if (!(p->spec = shoal_wire_dup(&shoal_wire_put_desc, m)))
            s_oom();
        p->last_us = shoal__now_us();
        if (shoal__refmap_put(self->puts, m->ref, p))
            s_oom();
        s_note(self, m->ref, SHOAL_OBJ_NOTE_ALLOCATED, m->size, p->spec, NULL);
    }
    s_sealed_t answer = {*peer, m->seq, m->ref, true};
    S_PUSH(self->sealed, self->n_sealed, self->cap_sealed, answer);
    return false;
}

static void s_on_put(s_worker_t *self, shoal_wire_in_t *in)
{
    const shoal_wire_put_t *m = &in->msg.u.put;
    char error[512], text[SHOAL_REF_TEXT_SIZE];
    s_ref_text(m->ref, text);
    if (m->op == SHOAL_PUT_OP_ALLOC) {
        //  The writer asks again after a second without an answer: one waiting is enough.
        for (size_t i = 0; i < self->n_parked; i++)
            if (!self->parked[i].slot &&
                shoal_ref_equal(((const shoal_wire_put_t *)self->parked[i].msg)->ref, m->ref))
                return;
        if (s_put_alloc(self, &in->peer, m, true))
            s_park(self, NULL, &in->peer, &shoal_wire_put_desc, m);
        return;
    }
    s_put_t *p = shoal__refmap_get(self->puts, m->ref);
    shoal_store_obj_t obj;
    if (m->op == SHOAL_PUT_OP_SEAL && !p && s_persist_has(self, m->ref)) {
        //  A resend while its disk copy is written: answered for good when it is, and
        //  told busy now, so a writer that waits longer than its silence limit (a persist
        //  of 10 GiB takes about 10 s, more behind others) does not take us for dead.
        shoal_wire_put_reply_t busy = {.seq = m->seq, .ref = m->ref, .busy = 1};
        int rc = shoal_wire_send(self->data, &in->peer, SHOAL_MSG_put_reply, &busy, NULL, 0);
        if (rc && rc != SHOAL_EUNREACH)
            shoal__debug("cannot answer a put: %s", shoal_strerror(rc)); //  it asks again
        return;
    }
    if (m->op == SHOAL_PUT_OP_SEAL && !p && shoal_store_lookup(self->store, m->ref, &obj) == 0 &&
        (obj.state == SHOAL_OBJ_SEALED || obj.state == SHOAL_OBJ_SPILLED)) {
        if ((m->flags & SHOAL_TASK_PERSIST) && !obj.persisted) {
            //  Sealed but not on disk, though its writer asked (the SEAL carries the
            //  ALLOC's flags): answered once it is, never before.
            s_persist_t job = {.peer = in->peer, .seq = m->seq};
            s_persist_add(self, &job, &m->ref, 1);
            return;
        }
        //  Sealed already (a resend): answered with the others, after the flush.
        s_sealed_t done = {in->peer, m->seq, m->ref, false};
        S_PUSH(self->sealed, self->n_sealed, self->cap_sealed, done);
        return;
    }
    if (m->op == SHOAL_PUT_OP_ABORT && !p) {
        s_put_reply(self, &in->peer, m, 0, NULL, 0); //  nothing left to drop
        return;
    }
    if (!p) {
        snprintf(error, sizeof error,
                 "object %s is not being written on worker %s (never allocated, or aborted "
                 "after %d s without a word from its writer)",
                 text, self->name, SHOAL_PUT_LEASE_MS / 1000);
        s_put_reply(self, &in->peer, m, SHOAL_ENOTFOUND, error, 0);
        return;
    }
    p->last_us = shoal__now_us();
    switch (m->op) {
    case SHOAL_PUT_OP_WRITE: {
        //  Parts land in order (one pipe): a part that starts beyond the watermark means
        //  one went missing (libzmq drops what is queued on a connection that breaks), and
        //  sealing then would seal a hole. A part already in (a resend) is ignored. A
        //  WRITE without bytes only asks for the watermark (and keeps the lease).
        size_t n = in->has_raw ? zmq_msg_size(&in->raw) : 0;
        if (m->offset > p->spec->size || n > p->spec->size - m->offset) {
            snprintf(error, sizeof error,
                     "write of %zu bytes at %llu is beyond the %llu bytes of object %s", n,
                     (unsigned long long)m->offset, (unsigned long long)p->spec->size, text);
            s_put_reply(self, &in->peer, m, SHOAL_EINVAL, error, 0);
            return;
        }
        if (n && m->offset > p->watermark) {
            snprintf(error, sizeof error,
                     "object %s: a part is missing (%llu bytes arrived, the next part starts "
                     "at %llu)",
                     text, (unsigned long long)p->watermark, (unsigned long long)m->offset);
            s_put_reply(self, &in->peer, m, SHOAL_EPROTO, error, p->watermark);
            return;
        }
        if (n)
            p->sent_bytes = true;
        else if (!p->sent_bytes && m->offset <= p->spec->size)
            p->in_place = SHOAL__MAX(p->in_place, m->offset); //  progress of an in-place writer
        if (n && m->offset + n > p->watermark &&
            shoal_store_lookup(self->store, m->ref, &obj) == 0) {
            uint64_t skip = p->watermark - m->offset;
            memcpy(obj.data + p->watermark, (const uint8_t *)zmq_msg_data(&in->raw) + skip,
                   n - skip);
            p->watermark = m->offset + n;
        }
        s_put_reply(self, &in->peer, m, 0, NULL, p->watermark);
        return;
    }
    case SHOAL_PUT_OP_SEAL: {
        //  offset == size: the writer wrote in place (same host) and vouches for the bytes;
        //  otherwise every byte must have come in WRITEs.
        if (m->offset != p->spec->size && p->watermark != p->spec->size) {
            snprintf(error, sizeof error, "object %s: only %llu of its %llu bytes arrived", text,
                     (unsigned long long)p->watermark, (unsigned long long)p->spec->size);
            s_put_reply(self, &in->peer, m, SHOAL_EPROTO, error, p->watermark);
            return;
        }
        shoal__refmap_remove(self->puts, m->ref);
        int rc = shoal_store_seal(self->store, m->ref);
        if (rc) {
            snprintf(error, sizeof error, "cannot seal %s: %s", text, shoal_strerror(rc));
            s_put_reply(self, &in->peer, m, rc, error, 0);
            s_put_free(p);
            return;
        }
        if (s_wants_persist(p->spec->flags, p->spec->name)) {
            //  Answered once its disk copy is written and synced (s_persist_pump).
            s_persist_t job = {.put = p, .peer = in->peer, .seq = m->seq};
            s_persist_add(self, &job, &m->ref, 1);
            return;
        }
        s_note(self, m->ref, SHOAL_OBJ_NOTE_SEALED, p->spec->size, p->spec, NULL);
        s_sealed_t done = {in->peer, m->seq, m->ref, false};
        S_PUSH(self->sealed, self->n_sealed, self->cap_sealed, done);
        s_put_free(p);
        return;
    }
    case SHOAL_PUT_OP_ABORT:
        s_put_drop(self, m->ref, "its writer aborted it");
        s_put_reply(self, &in->peer, m, 0, NULL, 0);
        return;
    default:
        snprintf(error, sizeof error, "put: unknown op %llu", (unsigned long long)m->op);
        s_put_reply(self, &in->peer, m, SHOAL_EPROTO, error, 0);
    }
}

//  Tries the parked allocations again; those past their deadline fail with EFULL.
static void s_parked_retry(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    size_t kept = 0;
    for (size_t i = 0; i < self->n_parked; i++) {
        s_parked_t *p = &self->parked[i];
        bool may_wait = now < p->deadline_us, again;
        if (p->slot) {
            //  The executor that asked is gone: its replacement never expects the answer.
            if (p->slot->pid != p->pid || p->slot->state != S_SLOT_BUSY)
                again = false;
            else
                again = s_on_e_alloc(self, p->slot, p->msg, may_wait);
        } else
            again = s_put_alloc(self, &p->peer, p->msg, may_wait);
        if (again)
            self->parked[kept++] = *p;
        else
            free(p->msg);
    }
    self->n_parked = kept;
}

//  Client puts whose writer has been silent for SHOAL_PUT_LEASE_MS are aborted.
static void s_puts_tick(s_worker_t *self, int64_t now)
{
    size_t cursor = 0;
    shoal_ref_t ref;
    void *value;
    shoal_ref_t expired[64];
    size_t n = 0;
    while (n < 64 && shoal__refmap_next(self->puts, &cursor, &ref, &value))
        if (now - ((s_put_t *)value)->last_us > (int64_t)SHOAL_PUT_LEASE_MS * 1000)
            expired[n++] = ref;
    for (size_t i = 0; i < n; i++) {
        char text[SHOAL_REF_TEXT_SIZE];
        shoal__warn("aborting put %s: no word from its writer for %d s",
                    s_ref_text(expired[i], text), SHOAL_PUT_LEASE_MS / 1000);
        s_put_drop(self, expired[i], "its writer was silent for a minute (the put's lease)");
    }
}

static bool s_on_data_msg(s_worker_t *self, shoal_wire_in_t *in)
{
    if (in->msg.type == SHOAL_MSG_put) {
        s_on_put(self, in);
        return false;
    }
    if (in->msg.type != SHOAL_MSG_fetch) {
        s_malformed(self, "data", SHOAL_EPROTO);
        shoal_wire_send_error(self->data, &in->peer, SHOAL_EPROTO,
                              "unexpected '%s' on the data socket of worker %s (send fetch or put)",
                              shoal_msg_name(in->msg.type), self->name);
        return false;
    }
    const shoal_wire_fetch_t *req = &in->msg.u.fetch;
    int rc = s_stash_has(self, &in->peer) ? SHOAL_EAGAIN : s_serve_fetch(self, &in->peer, req);
    if (rc == SHOAL_EAGAIN)
        s_stash_push(self, &in->peer, req);
    else if (rc == S_HELD)
        s_stream_hold(self, &in->peer, req, false);
    return false;
}

/*  ---------------------------------------------------------------------- broker link */

static int s_broker_send(s_worker_t *self, int type, const void *body)
{
    int rc = shoal_wire_send(self->broker, NULL, type, body, NULL, 0);
    if (rc == 0)
        self->last_sent_us = shoal__now_us();
    return rc;
}

static void s_send_hello(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    //  held: sealed objects, so a restarted broker learns them; copies of other workers'
    //  objects made by this run are left out (they may be evicted without notice).
    size_t cap = shoal_store_count(self->store);
    shoal_ref_t *held = s_alloc0(cap * sizeof *held);
    size_t n = 0, cursor = 0;
    shoal_store_obj_t obj;
    //  Not those whose persist is still being written: they are not done yet.
    while (n < cap && shoal_store_next(self->store, &cursor, &obj))
        if (!shoal__refmap_get(self->copies, obj.ref) && !obj.pending)
            held[n++] = obj.ref;
    //  writing: client puts still open here (or sealed, their persist under way), so a
    //  restarted broker knows which of the puts it left RUNNING on us are still coming.
    size_t n_writing = 0;
    shoal_ref_t *writing =
        s_alloc0((shoal__refmap_size(self->puts) + self->n_persists + 1) * sizeof *writing);
    void *value;
    shoal_ref_t key;
    cursor = 0;
    while (shoal__refmap_next(self->puts, &cursor, &key, &value))
        writing[n_writing++] = key;
    for (size_t i = 0; i < self->n_persists; i++)
        if (self->persists[i].put)
            writing[n_writing++] = self->persists[i].refs[0];
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = self->name,
                                  .host = self->host,
                                  .slots = (uint64_t)self->n_slots,
                                  .capacity = self->capacity,
                                  .endpoint = self->data_ep,
                                  .store_capacity = shoal_store_capacity(self->store),
                                  .pid = (uint64_t)getpid(),
                                  .held = {held, n},
                                  .store_dir = (char *)shoal_store_dir(self->store),
                                  .arena = (char *)self->arena_path,
                                  .writing = {writing, n_writing}};
    int rc = s_broker_send(self, SHOAL_MSG_w_hello, &hello);
    free(held);
    free(writing);
    if (rc == 0) {
        self->hello_next_us = now + (int64_t)S_DEAD_AFTER * self->heartbeat_ms * 1000;
        self->hello_retry_ms = 0;
    } else {
        //  SHOAL_EAGAIN: not connected yet (ZMQ_IMMEDIATE keeps hellos from piling up in
        //  a pipe to nowhere and arriving as a burst later).
        if (rc != SHOAL_EAGAIN)
            shoal__warn("cannot send w_hello to %s: %s", self->broker_ep, shoal_strerror(rc));
        self->hello_retry_ms = self->hello_retry_ms
                                   ? SHOAL__MIN(2 * self->hello_retry_ms, S_HELLO_RETRY_MAX_MS)
                                   : S_HELLO_RETRY_MIN_MS;
        self->hello_next_us = now + (int64_t)self->hello_retry_ms * 1000;
    }
}

//  Starts over with the broker: it has requeued (or will) everything it gave us.
static void s_rehello(s_worker_t *self, const char *why)
{
    size_t n = shoal__refmap_size(self->tasks);
    shoal__warn("%s; saying hello again (dropping %zu local tasks, %zu of them running)", why, n,
                self->n_running);
    s_task_t **all = s_alloc0(n * sizeof *all);
    size_t cursor = 0, k = 0;
    shoal_ref_t key;
    void *value;
    while (k < n && shoal__refmap_next(self->tasks, &cursor, &key, &value))
        all[k++] = value;
    for (size_t i = 0; i < k; i++)
        s_task_kill(self, all[i]);
    free(all);
    self->n_started = 0;
    self->welcomed = false;
    self->hello_warned = false;
    self->hello_next_us = 0;
    self->hello_since_us = self->last_heard_us = shoal__now_us();
}

static void s_on_welcome(s_worker_t *self, const shoal_wire_w_welcome_t *w)
{
    if (w->code < 0) {
        shoal__error("broker refused worker %s: %s", self->name,
                     w->error && w->error[0] ? w->error : shoal_strerror((int)w->code));
        self->exit_code = (int)w->code;
        self->stopping = true;
        return;
    }
    if (self->welcomed)
        return; //  the answer to a repeated hello
    if (w->version != SHOAL_PROTO_VERSION) {
        shoal__error("the broker at %s speaks protocol version %llu, this worker %d",
                     self->broker_ep, (unsigned long long)w->version, SHOAL_PROTO_VERSION);
        self->exit_code = SHOAL_EVERSION;
        self->stopping = true;
        return;
    }
    self->welcomed = true;
    self->heartbeat_ms =
        self->fixed_heartbeat_ms
            ? self->fixed_heartbeat_ms
            : (w->heartbeat_ms && w->heartbeat_ms < 3600000 ? (int)w->heartbeat_ms : 1000);
    shoal__info("worker %s joined the broker at %s (heartbeat %d ms)", self->name, self->broker_ep,
                self->heartbeat_ms);
    for (size_t i = 0; i < self->n_done; i++)
        self->done[i]->sent_us = 0; //  resend what is unacknowledged now
    self->last_sent_us = 0;         //  and a heartbeat, so the broker knows our store now
    //  Objects on our disk tier (re-adopted, or spilled while the broker was away): the
    //  broker learnt them from the hello's held list as sealed; tell it where they are.
    size_t cursor = 0;
    shoal_store_obj_t obj;
    while (shoal_store_next(self->store, &cursor, &obj))
        if (obj.state == SHOAL_OBJ_SPILLED && !shoal__refmap_get(self->copies, obj.ref))
            s_note(self, obj.ref, SHOAL_OBJ_NOTE_SPILLED, obj.size, NULL, NULL);
}

static void s_done_free(s_done_t *d)
{
    free(d->data);
    free(d);
}

static void s_on_done_ack(s_worker_t *self, uint64_t seq)
{
    for (size_t i = 0; i < self->n_done; i++)
        if (self->done[i]->seq == seq) {
            s_done_free(self->done[i]);
            memmove(&self->done[i], &self->done[i + 1],
                    (self->n_done - i - 1) * sizeof *self->done);
            self->n_done--;
            return;
        }
}

static bool s_on_broker_msg(s_worker_t *self, shoal_wire_in_t *in)
{
    self->last_heard_us = shoal__now_us();
    shoal_msg_t *m = &in->msg;
    switch (m->type) {
    case SHOAL_MSG_w_welcome:
        s_on_welcome(self, &m->u.w_welcome);
        break;
    case SHOAL_MSG_w_dispatch:
        return s_on_dispatch(self, in);
    case SHOAL_MSG_w_done_ack:
        s_on_done_ack(self, m->u.w_done_ack.seq);
        break;
    case SHOAL_MSG_heartbeat:
        break;
    case SHOAL_MSG_w_cancel:
        s_on_cancel(self, &m->u.w_cancel);
        break;
    case SHOAL_MSG_w_drop:
        s_on_drop(self, &m->u.w_drop);
        break;
    case SHOAL_MSG_error:
        if (m->u.error.code == SHOAL_ESTATE) {
            //  Errors for messages sent before our hello arrive before its welcome: one
            //  hello answers them all.
            if (self->welcomed)
                s_rehello(self, "the broker does not know this worker");
        } else {
            shoal__warn("the broker says: %s (%s)", m->u.error.error ? m->u.error.error : "",
                        shoal_strerror((int)m->u.error.code));
        }
        break;
    default:
        s_malformed(self, "broker", SHOAL_EPROTO);
        break;
    }
    return false;
}

/*  ---------------------------------------------------------------------------- flush */

//  Rough encoded size of a result, to split w_done batches.
static size_t s_result_bytes(const shoal_wire_result_t *r)
{
    size_t n = 128 + (r->error ? strlen(r->error) : 0) + r->log_tail.size;
    for (size_t i = 0; i < r->outputs.count; i++)
        n += 32 + r->outputs.items[i].data.size;
    return n;
}

static int s_done_send(s_worker_t *self, s_done_t *d)
{
    //  Copied into the frame: the bytes stay here until acknowledged, for resends.
    if (zmq_send(self->broker, d->data, d->size, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? SHOAL_EAGAIN : SHOAL_EIO;
    d->sent_us = self->last_sent_us = shoal__now_us();
    return 0;
}

//  Encodes results[0..n) as one w_done, kept until acknowledged.
static void s_done_make(s_worker_t *self, const shoal_wire_result_t *results, size_t n)
{
    s_done_t *d = s_alloc0(sizeof *d);
    d->seq = ++self->done_seq;
    d->count = n;
    shoal_wire_w_done_t msg = {.seq = d->seq,
                               .results = {(shoal_wire_result_t *)results, n},
                               .store_bytes = shoal_store_used(self->store)};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    if (shoal_proto_encode(SHOAL_MSG_w_done, &msg, &buf) != 0)
        s_oom(); //  the only failure of encoding a known type
    d->size = buf.size;
    d->data = (uint8_t *)msgpack_sbuffer_release(&buf);
    S_PUSH(self->done, self->n_done, self->cap_done, d);
}

//  Whether t, running on slot since start_us, should be reported started now; else when.
static bool s_started_due(const s_task_t *t, int64_t start_us, int64_t now, int64_t *when)
{
    if (!t || t->started_sent)
        return false;
    *when = start_us + (int64_t)S_STARTED_DELAY_MS * 1000;
    return now >= *when;
}

//  The end of a turn: one index commit, then what the turn produced goes to the broker.
static void s_flush(s_worker_t *self)
{
    if (self->n_results || self->n_sealed || self->n_notes) {
        //  Outputs must be in the index before anyone is told they exist.
        int rc = shoal_store_flush(self->store);
        if (rc)
            shoal__warn("cannot commit the store index: %s (retrying next turn)",
                        shoal_strerror(rc));
    }
    //  Notes before the answers to SEALs: the broker should hear of a put from us before
    //  its writer's client tells it anything more (a release, a task reading it).
    if (self->n_notes && self->welcomed) {
        //  Informational for task outputs; for puts, the client's PUT task says the same.
        shoal_wire_object_note_t *items = s_bump_alloc(self, self->n_notes * sizeof *items);
        for (size_t i = 0; i < self->n_notes; i++)
            items[i] = *self->notes[i];
        shoal_wire_w_objects_t msg = {.items = {items, self->n_notes}};
        if (s_broker_send(self, SHOAL_MSG_w_objects, &msg) == 0 || self->n_notes > 4096) {
            for (size_t i = 0; i < self->n_notes; i++)
                free(self->notes[i]);
            self->n_notes = 0;
        }
    }
    for (size_t i = 0; i < self->n_sealed; i++) {
        s_sealed_t *d = &self->sealed[i];
        shoal_wire_put_t m = {.seq = d->seq, .ref = d->ref};
        shoal_store_obj_t obj;
        bool there = shoal_store_lookup(self->store, d->ref, &obj) == 0;
        if (!d->alloc) {
            s_put_reply(self, &d->peer, &m, 0, NULL, there ? obj.size : 0);
        } else if (!there || obj.state != SHOAL_OBJ_ALLOCATED) {
            char text[SHOAL_REF_TEXT_SIZE], error[128];
            snprintf(error, sizeof error,
                     "object %s was dropped before its allocation was answered",
                     s_ref_text(d->ref, text));
            s_put_reply(self, &d->peer, &m, SHOAL_ENOTFOUND, error, 0);
        } else {
            shoal_wire_put_reply_t reply = {.seq = d->seq,
                                            .ref = d->ref,
                                            .offset = obj.offset,
                                            .arena = (char *)self->arena_path,
                                            .arena_dev = self->arena_dev,
                                            .arena_ino = self->arena_ino};
            shoal_wire_send(self->data, &d->peer, SHOAL_MSG_put_reply, &reply, NULL, 0);
        }
    }
    self->n_sealed = 0;
    if (self->n_results) {
        for (size_t i = 0; i < self->n_results;) {
            size_t start = i, bytes = 0;
            while (i < self->n_results) {
                size_t b = s_result_bytes(&self->results[i]);
                if (i > start && bytes + b > S_DONE_BUDGET)
                    break;
                bytes += b;
                i++;
            }
            s_done_make(self, self->results + start, i - start);
        }
        self->n_results = 0;
        while (self->n_done > S_DONE_PENDING_MAX) {
            shoal__warn("dropping unacknowledged results (seq %llu): the broker is not "
                        "answering",
                        (unsigned long long)self->done[0]->seq);
            s_done_free(self->done[0]);
            memmove(self->done, self->done + 1, (self->n_done - 1) * sizeof *self->done);
            self->n_done--;
        }
    }
    //  What the results pointed to is encoded now.
    for (size_t i = 0; i < self->n_kept; i++)
        shoal_wire_in_clear(&self->kept[i]);
    self->n_kept = 0;
    for (size_t i = 0; i < self->n_held; i++)
        free(self->held[i]);
    self->n_held = 0;
    s_bump_reset(self, false);
    //  Tasks running long enough to be reported started (worker.h: progress page).
    int64_t now = shoal__now_us(), when, start;
    for (int k = 0; k < self->n_slots; k++) {
        s_task_t *t = s_slot_running(&self->slots[k], &start);
        if (s_started_due(t, start, now, &when)) {
            shoal_wire_attempt_ref_t a = {t->d->task.id, t->d->attempt};
            S_PUSH(self->started, self->n_started, self->cap_started, a);
            t->started_sent = true;
        }
    }
    if (!self->welcomed)
        return;
    if (self->n_started) {
        shoal_wire_w_started_t msg = {.tasks = {self->started, self->n_started}};
        //  Started notes are informational: on a full pipe keep them a while, not forever.
        if (s_broker_send(self, SHOAL_MSG_w_started, &msg) == 0 ||
            self->n_started > 4 * self->capacity)
            self->n_started = 0;
    }
    for (size_t i = 0; i < self->n_done; i++) {
        s_done_t *d = self->done[i];
        if (d->sent_us && now - d->sent_us < (int64_t)S_DONE_RESEND_MS * 1000)
            continue;
        if (s_done_send(self, d) == SHOAL_EAGAIN)
            break;
    }
    if (now - self->last_sent_us >= (int64_t)self->heartbeat_ms * 1000) {
        shoal_wire_heartbeat_t hb = {.store_bytes = shoal_store_used(self->store),
                                     .running = self->n_running,
                                     .queued = shoal__refmap_size(self->tasks) - self->n_running};
        s_broker_send(self, SHOAL_MSG_heartbeat, &hb);
        self->last_sent_us = now; //  even on a full pipe: the next try is a beat away
    }
}

/*  ------------------------------------------------------------------------- persist */

//  Queues job (its refs copied) for s_persist_pump.
static void s_persist_add(s_worker_t *self, const s_persist_t *job, const shoal_ref_t *refs,
                          size_t n)
{
    s_persist_t j = *job;
    j.refs = malloc(n * sizeof *j.refs);
    j.gens = malloc(n * sizeof *j.gens);
    if (!j.refs || !j.gens)
        s_oom();
    memcpy(j.refs, refs, n * sizeof *refs);
    for (size_t i = 0; i < n; i++)
        j.gens[i] = s_gen(self, refs[i]);
    j.n_refs = n;
    //  Not sealed for good until the copy is synced: a kill before that must not leave an
    //  index that re-adopts it as sealed (and a hello that reports it held).
    for (size_t i = 0; i < n; i++)
        shoal_store_persist_pending(self->store, refs[i]);
    S_PUSH(self->persists, self->n_persists, self->cap_persists, j);
}

//  Whether a put's persist of ref is in progress.
static bool s_persist_has(s_worker_t *self, shoal_ref_t ref)
{
    for (size_t i = 0; i < self->n_persists; i++)
        if (!self->persists[i].result && shoal_ref_equal(self->persists[i].refs[0], ref))
            return true;
    return false;
}

/*  A task's persist naming ref (an output of an earlier attempt, which a new attempt of
    the same task on this worker writes anew) is dropped, with the result it held back:
    that attempt is over (the broker sent the task again), and its failing on the
    object the new attempt replaces must not take the new attempt's outputs with it. */
static void s_persist_cancel(s_worker_t *self, shoal_ref_t ref)
{
    for (size_t i = 0; i < self->n_persists; i++) {
        s_persist_t *j = &self->persists[i];
        bool names = false;
        for (size_t k = 0; j->result && !names && k < j->n_refs; k++)
            names = shoal_ref_equal(j->refs[k], ref);
        if (!names)
            continue;
        char text[SHOAL_REF_TEXT_SIZE];
        shoal__info("persist: the outputs of an earlier attempt of task %s dropped: a new "
                    "attempt writes them",
                    s_ref_text(shoal_ref_task(ref), text));
        free(j->refs);
        free(j->gens);
        free(j->result);
        self->n_persists--;
        memmove(self->persists + i, self->persists + i + 1,
                (self->n_persists - i) * sizeof *self->persists);
        if (self->persist_next > i)
            self->persist_next--;
        return;
    }
}

/*  job is complete (rc 0) or failed on job->refs[job->next] (rc < 0): the put's SEAL is
    answered (after the flush) and the broker told, or the task's result goes, failed
    without outputs when a copy could not be made: nothing half-kept. Frees job's parts. */
static void s_persist_end(s_worker_t *self, s_persist_t *job, int rc)
{
    char error[640], st[192], sz[32], text[SHOAL_REF_TEXT_SIZE];
    if (rc) {
        shoal_ref_t ref = job->refs[job->next];
        shoal_store_obj_t obj;
        uint64_t size = shoal_store_lookup(self->store, ref, &obj) == 0 ? obj.size : 0;
        s_persist_text(self, rc, st, sizeof st);
        if (!job->result)
            snprintf(error, sizeof error, "cannot persist %s (%llu bytes) on worker %s: %s; %s",
                     s_ref_text(ref, text), (unsigned long long)size, self->name,
                     shoal_strerror(rc), st);
        else
            snprintf(error, sizeof error, "cannot persist output %u (%s): %s; %s",
                     (unsigned)shoal_ref_index(ref), s_size_text(size, sz, sizeof sz),
                     shoal_strerror(rc), st);
    }
    if (!job->result) {
        shoal_ref_t ref = job->refs[0];
        const shoal_wire_put_t *spec = job->put ? job->put->spec : NULL;
        if (rc == 0) {
            if (spec)
                s_note(self, ref, SHOAL_OBJ_NOTE_SEALED, spec->size, spec, NULL);
            s_sealed_t done = {job->peer, job->seq, ref, false};
            S_PUSH(self->sealed, self->n_sealed, self->cap_sealed, done);
        } else {
            shoal_wire_put_t m = {.seq = job->seq, .ref = ref};
            shoal_store_obj_t obj;
            uint64_t size = shoal_store_lookup(self->store, ref, &obj) == 0 ? obj.size : 0;
            shoal_store_delete(self->store, ref);
            s_note(self, ref, SHOAL_OBJ_NOTE_ABORTED, spec ? spec->size : size, spec, error);
            s_put_reply(self, &job->peer, &m, rc, error, 0);
        }
        s_put_free(job->put);
    } else {
        shoal_wire_result_t *res = job->result;
        if (rc) {
            //  Its own objects only: one written anew since (s_clear_for_output bumped its
            //  generation) belongs to another attempt.
            for (size_t i = 0; i < job->n_refs; i++) {
                shoal_ref_t ref = job->refs[i];
                if (s_gen(self, ref) != job->gens[i])
                    continue;
                shoal_store_delete(self->store, ref);
                s_gen_bump(self, ref); //  a stream may have read it
            }
            res->status = rc;
            res->error = s_bump_strdup(self, error);
            res->outputs.count = 0;
        }
        S_PUSH(self->held, self->n_held, self->cap_held, (void *)res);
        s_result_add(self, res);
    }
    free(job->refs);
    free(job->gens);
}

/*  Writes the persists in progress, a step each in turn, at most persist_step bytes and
    S_PERSIST_TURN_US a loop turn (one synced commit per step; each object costs at least
    S_PERSIST_REF_COST, and the clock is read between objects, so a job of many small
    objects is spread over turns too), ending those complete. */
static void s_persist_pump(s_worker_t *self)
{
    int64_t until = shoal__now_us() + S_PERSIST_TURN_US;
    uint64_t budget = self->persist_step;
    if (self->n_persists && self->persist_gate && access(self->persist_gate, F_OK) == 0) {
        if (!self->persist_gated)
            shoal__info("persist: %zu held back by %s", self->n_persists, self->persist_gate);
        self->persist_gated = true;
        return;
    }
    self->persist_gated = false;
    while (self->n_persists && budget > 0 && shoal__now_us() < until) {
        //  In turn, a step each, not one after the other: a small put behind a 10 GiB
        //  persist is answered in a few turns, not after it.
        size_t i = self->persist_next < self->n_persists ? self->persist_next : 0;
        s_persist_t *j = &self->persists[i];
        int rc = 0;
        j->turns++;
        while (j->next < j->n_refs && budget > 0 && shoal__now_us() < until) {
            uint64_t before = j->done;
            rc = shoal_store_persist_step(self->store, j->refs[j->next], budget, &j->done);
            uint64_t cost = j->done > before ? j->done - before : 0;
            if (rc != SHOAL_EAGAIN)
                cost = SHOAL__MAX(cost, S_PERSIST_REF_COST); //  its syncs, if nothing else
            budget -= SHOAL__MIN(budget, cost);
            if (rc)
                break;
            j->bytes += j->done;
            j->next++;
            j->done = 0;
        }
        if (rc == SHOAL_EAGAIN || (rc == 0 && j->next < j->n_refs)) {
            self->persist_next = i + 1;
            return; //  this turn's share is written: more next turn, after the others
        }
        s_persist_t job = *j;
        if (job.turns > 1)
            shoal__info("persist: %zu objects (%llu bytes) written in %u turns", job.next,
                        (unsigned long long)job.bytes, job.turns);
        self->n_persists--;
        memmove(self->persists + i, self->persists + i + 1,
                (self->n_persists - i) * sizeof *self->persists);
        self->persist_next = i; //  the one after it, now at i
        s_persist_end(self, &job, rc);
    }
}

/*  ----------------------------------------------------------------------------- loop */

static void s_deadline(int64_t *next, int64_t when)
{
    if (when < *next)
        *next = when;
}

//  Milliseconds until the earliest timer.
static long s_poll_timeout(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    int64_t next = now + 1000000;
    int64_t hb_us = (int64_t)self->heartbeat_ms * 1000;
    int64_t retry = now + S_RETRY_MS * 1000;
    if (self->n_stash)
        s_deadline(&next, now + 2000); //  2 ms: a reader's pipe drains quickly
    if (self->n_parked || self->n_pull_room)
        s_deadline(&next, now + 50000); //  allocations waiting for room: look again
    if (self->spill_wanted && (self->n_parked || self->room.head || self->n_pull_room) &&
        s_spill_can(self))
        //  Spilling to make room: the next step at once; after a spill that found nothing
        //  to move, not before S_SPILL_RETRY_MS (no spinning while writers wait).
        s_deadline(&next, s_spill_may_free(self) ? now : self->spill_stuck_ms * 1000);
    if (self->n_notes)
        s_deadline(&next, retry);
    if (self->n_persists) //  the next persist step at once
        s_deadline(&next, self->persist_gated ? now + 10000 : now);
    if (!self->welcomed) {
        s_deadline(&next, self->hello_next_us);
    } else {
        s_deadline(&next, self->last_sent_us + hb_us);
        s_deadline(&next, self->last_heard_us + S_DEAD_AFTER * hb_us + 1000);
        if (self->n_started)
            s_deadline(&next, retry);
        for (int i = 0; i < self->n_slots; i++) {
            s_slot_t *slot = &self->slots[i];
            int64_t start;
            s_task_t *t = s_slot_running(slot, &start);
            if (t && !t->started_sent) //  to report it started, if it still runs then
                s_deadline(&next, start + S_STARTED_DELAY_MS * 1000);
            else if (!t && slot->state == S_SLOT_BUSY && slot->n_left)
                s_deadline(&next, now + S_STARTED_DELAY_MS * 1000); //  between tasks: look again
        }
        for (size_t i = 0; i < self->n_done; i++)
            s_deadline(&next, self->done[i]->sent_us
                                  ? self->done[i]->sent_us + S_DONE_RESEND_MS * 1000
                                  : retry);
    }
    for (int i = 0; i < self->n_slots; i++) {
        if (self->slots[i].state == S_SLOT_DOWN)
            s_deadline(&next, self->slots[i].respawn_at_us);
        if (self->slots[i].state == S_SLOT_IDLE && self->ready.head)
            s_deadline(&next, retry); //  an e_run met a full pipe
    }
    for (size_t i = 0; i < self->n_waiters; i++) {
        s_deadline(&next, self->waiters[i].deadline_us);
        //  A task's output: its executor publishes progress without a message, so look
        //  again within a millisecond while a reader waits on one.
        if (!shoal__refmap_get(self->puts, self->waiters[i].req.ref))
            s_deadline(&next, now + 1000);
    }
    for (size_t i = 0; i < self->n_peers; i++) {
        s_peer_t *p = self->peers[i];
        if (p->head)
            s_deadline(&next, p->last_progress_us + S_FETCH_TIMEOUT_MS * 1000 + 1000);
        else
            s_deadline(&next, p->last_used_us + S_PEER_IDLE_MS * 1000 + 1000);
        if (p->head && p->inflight < S_FETCH_WINDOW)
            s_deadline(&next, retry); //  a fetch request met a full pipe
    }
    if (next <= now)
        return 0;
    return (long)((next - now + 999) / 1000);
}

static void s_timers(s_worker_t *self)
{
    int64_t now = shoal__now_us();
    int64_t hb_us = (int64_t)self->heartbeat_ms * 1000;
    if (!self->welcomed) {
        if (now >= self->hello_next_us) {
            if (!self->hello_warned && now - self->hello_since_us >= S_DEAD_AFTER * hb_us) {
                shoal__warn("no answer from the broker at %s yet; still trying", self->broker_ep);
                self->hello_warned = true;
            }
            s_send_hello(self);
        }
    } else if (now - self->last_heard_us > S_DEAD_AFTER * hb_us) {
        char why[384];
        snprintf(why, sizeof why, "no word from the broker at %s for %lld ms", self->broker_ep,
                 (long long)((now - self->last_heard_us) / 1000));
        s_rehello(self, why);
        s_send_hello(self);
    }
    s_peers_tick(self, now);
    if (now - self->puts_checked_us >= 1000000) {
        self->puts_checked_us = now;
        s_puts_tick(self, now);
    }
    for (int i = 0; i < self->n_slots; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->state == S_SLOT_DOWN && now >= slot->respawn_at_us)
            s_slot_spawn(self, slot);
    }
}

static void s_on_signals(s_worker_t *self)
{
    struct signalfd_siginfo si;
    while (read(self->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
            shoal__info("worker %s: %s, stopping", self->name, strsignal((int)si.ssi_signo));
            self->stopping = true;
        }
    }
    s_reap(self);
}

//  Reads up to S_DRAIN_MAX messages from sock, handing each to fn, which returns true when
//  it kept the message (else it is cleared here).
static void s_drain(s_worker_t *self, void *sock, bool router, const char *what,
                    bool (*fn)(s_worker_t *, shoal_wire_in_t *))
{
    for (int i = 0; i < S_DRAIN_MAX && !self->stopping; i++) {
        shoal_wire_in_t in;
        int rc = shoal_wire_recv(sock, router, &in, ZMQ_DONTWAIT);
        if (rc == SHOAL_EAGAIN || rc == SHOAL_EIO)
            return;
        if (rc) {
            s_malformed(self, what, rc);
            if (router && in.peer.size && sock == self->data)
                shoal_wire_send_error(sock, &in.peer, rc,
                                      rc == SHOAL_EVERSION
                                          ? "protocol version mismatch: this worker speaks %d"
                                          : "malformed message (protocol version %d)",
                                      SHOAL_PROTO_VERSION);
            continue;
        }
        if (!fn(self, &in))
            shoal_wire_in_clear(&in);
    }
}

static void s_loop(s_worker_t *self)
{
    zmq_pollitem_t *items = NULL;
    s_peer_t **polled = NULL;
    size_t cap = 0;
    while (!self->stopping && !s_stop_flag) {
        size_t n = 4 + (size_t)self->n_slots + self->n_peers;
        if (n > cap) {
            cap = n * 2;
            items = realloc(items, cap * sizeof *items);
            polled = realloc(polled, cap * sizeof *polled);
            if (!items || !polled)
                s_oom();
        }
        items[0] = (zmq_pollitem_t){self->broker, 0, ZMQ_POLLIN, 0};
        //  While requests wait for a reader's pipe, new ones wait in libzmq (backpressure).
        items[1] = (zmq_pollitem_t){self->data, 0, self->n_stash ? 0 : ZMQ_POLLIN, 0};
        items[2] = (zmq_pollitem_t){NULL, self->sigfd, ZMQ_POLLIN, 0};
        items[3] = (zmq_pollitem_t){NULL, self->stop_rd, ZMQ_POLLIN, 0};
        size_t k = 4;
        //  Executors' channels: raw fds in the same poll.
        for (int i = 0; i < self->n_slots; i++) {
            shoal_chan_t *chan = self->slots[i].chan;
            if (chan) {
                short events = ZMQ_POLLIN | (shoal_chan_pending(chan) ? ZMQ_POLLOUT : 0);
                items[k++] = (zmq_pollitem_t){NULL, shoal_chan_fd(chan), events, 0};
            }
        }
        size_t first_peer = k;
        for (size_t i = 0; i < self->n_peers; i++)
            if (self->peers[i]->sock) {
                polled[k] = self->peers[i];
                items[k++] = (zmq_pollitem_t){self->peers[i]->sock, 0, ZMQ_POLLIN, 0};
            }
        int rc = zmq_poll(items, (int)k, s_poll_timeout(self));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            shoal__error("zmq_poll: %s", zmq_strerror(errno));
            self->exit_code = SHOAL_EIO;
            break;
        }
        if (items[2].revents)
            s_on_signals(self);
        if (items[3].revents) {
            char buf[64];
            while (read(self->stop_rd, buf, sizeof buf) > 0)
                ;
            self->stopping = true;
        }
        if (self->stopping)
            break;
        if (items[0].revents)
            s_drain(self, self->broker, false, "broker", s_on_broker_msg);
        for (size_t i = 4; i < first_peer; i++) {
            if (!items[i].revents)
                continue;
            //  Find the slot by fd: one that died and was started again meanwhile has
            //  another channel (and this turn's events are not its).
            s_slot_t *slot = NULL;
            for (int j = 0; j < self->n_slots && !slot; j++)
                if (self->slots[j].chan && shoal_chan_fd(self->slots[j].chan) == items[i].fd)
                    slot = &self->slots[j];
            if (!slot)
                continue;
            if ((items[i].revents & ZMQ_POLLOUT) && shoal_chan_flush(slot->chan) == SHOAL_EIO) {
                shoal_chan_destroy(&slot->chan);
                continue;
            }
            if (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
                s_exec_drain(self, slot);
        }
        if (self->n_stash)
            s_stash_retry(self);
        if (items[1].revents && !self->n_stash)
            s_drain(self, self->data, true, "data", s_on_data_msg);
        for (size_t i = first_peer; i < k; i++) {
            s_peer_t *p = polled[i];
            if (!items[i].revents)
                continue;
            for (int m = 0; m < S_DRAIN_MAX && p->sock; m++) {
                shoal_wire_in_t in;
                int r = shoal_wire_recv(p->sock, false, &in, ZMQ_DONTWAIT);
                if (r == SHOAL_EAGAIN || r == SHOAL_EIO)
                    break;
                if (r) {
                    s_malformed(self, "peer", r);
                    continue;
                }
                s_on_peer_msg(self, p, &in);
                shoal_wire_in_clear(&in);
            }
        }
        if (self->stopping)
            break;
        s_timers(self);
        s_spill_pump(self);
        s_persist_pump(self);
        if (self->room.head && self->room_changed)
            s_room_retry(self);
        if (self->n_parked)
            s_parked_retry(self);
        if (self->n_pull_room)
            s_pull_room_retry(self);
        if (self->n_waiters)
            s_stream_run(self);
        shoal_store_tick(self->store);
        s_fetch_pump(self);
        s_schedule(self);
        s_flush(self);
    }
    free(items);
    free(polled);
}

/*  ---------------------------------------------------------------------------- setup */

static int s_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

//  The worker's name made safe for a file name (the arena is shoal-UID-NAME.arena).
static void s_sanitise(const char *name, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size && n < 64; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && n > 0);
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (!n)
        shoal__strlcpy(out, "worker", size);
}

//  The local IPv4 address that reaches the broker: connect() a UDP socket (nothing is
//  sent) and read back the address the kernel chose. 127.0.0.1 when it cannot tell.
static void s_local_addr(const char *broker_ep, char *out, size_t size)
{
    shoal__strlcpy(out, "127.0.0.1", size);
    if (strncmp(broker_ep, "tcp://", 6) != 0)
        return;
    const char *h = broker_ep + 6;
    const char *semi = strchr(h, ';'); //  tcp://source;host:port
    if (semi)
        h = semi + 1;
    const char *colon = strrchr(h, ':');
    char host[256];
    size_t len = colon ? (size_t)(colon - h) : 0;
    if (!len || len >= sizeof host || h[0] == '[' || h[0] == '*')
        return;
    memcpy(host, h, len);
    host[len] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        shoal__warn("cannot resolve the broker host '%s' (%s); advertising 127.0.0.1", host,
                    gai_strerror(rc));
        return;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        inet_ntop(AF_INET, &sa.sin_addr, out, (socklen_t)size);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
}

/*  The default disk tier: 4 x the arena (1 GiB for the default 256 MiB), but at most half
    the space free on the spill directory's file system at start, so spilling never fills
    a disk the machine needs. Below 64 MiB it is not worth a tier: none, and the log says
    so. Ray and Dask spill by default too; without a tier, a full arena fails writers with
    'store full' after 5 s. */
#define S_SPILL_AUTO_FACTOR 4
#define S_SPILL_AUTO_MIN    (64ull << 20)
static uint64_t s_spill_auto(s_worker_t *self)
{
    char dir[PATH_MAX];
    if (self->spill_dir && self->spill_dir[0])
        shoal__strlcpy(dir, self->spill_dir, sizeof dir);
    else
        snprintf(dir, sizeof dir, "%s/spill", self->store_dir);
    //  The directory may not exist yet: the nearest one that does is on the same disk.
    struct statvfs vfs;
    while (statvfs(dir, &vfs) != 0) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) {
            shoal__strlcpy(dir, "/", sizeof dir);
            if (statvfs(dir, &vfs) != 0)
                return 0;
            break;
        }
        *slash = 0;
    }
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t size = self->shm_size * S_SPILL_AUTO_FACTOR;
    if (size > free_bytes / 2)
        size = free_bytes / 2 & ~((1ull << 20) - 1); //  whole MiB, for the log
    double free_gib = (double)free_bytes / (1ull << 30);
    if (size < S_SPILL_AUTO_MIN) {
        shoal__warn("no disk tier: %s has %.1f GiB free (a default tier takes at most half); "
                    "a full store fails writers after 5 s (--spill-size sets a tier)",
                    dir, free_gib);
        return 0;
    }
    char text[32];
    shoal__info("disk tier: up to %s (default: %d x --shm-size, at most half of the %.1f GiB "
                "free on %s; --spill-size 0 turns it off)",
                s_size_text(size, text, sizeof text), S_SPILL_AUTO_FACTOR, free_gib, dir);
    return size;
}

static char **s_make_envp(const char *scratch, int progress_fd)
{
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **envp = s_alloc0((n + 3) * sizeof *envp);
    size_t k = 0;
    size_t skip = strlen(SHOAL_EXEC_SCRATCH_ENV "="), pskip = strlen(SHOAL_EXEC_PROGRESS_ENV "=");
    for (char **e = environ; *e; e++)
        if (strncmp(*e, SHOAL_EXEC_SCRATCH_ENV "=", skip) != 0 &&
            strncmp(*e, SHOAL_EXEC_PROGRESS_ENV "=", pskip) != 0)
            envp[k++] = s_strdup(*e);
    if (asprintf(&envp[k++], "%s=%s", SHOAL_EXEC_SCRATCH_ENV, scratch) < 0)
        s_oom();
    if (progress_fd >= 0 && asprintf(&envp[k], "%s=%d", SHOAL_EXEC_PROGRESS_ENV, progress_fd) < 0)
        s_oom();
    return envp;
}

//  The progress page an executor of slot shares with the worker (worker.h): a memfd the
//  executor inherits. Without one (a warning), the slot runs one task per e_run.
static void s_progress_open(s_slot_t *slot)
{
    slot->progress_fd = memfd_create("shoal-exec-progress", MFD_CLOEXEC);
    void *page = MAP_FAILED;
    if (slot->progress_fd >= 0 && ftruncate(slot->progress_fd, sizeof *slot->progress) == 0)
        page = mmap(NULL, sizeof *slot->progress, PROT_READ | PROT_WRITE, MAP_SHARED,
                    slot->progress_fd, 0);
    if (page == MAP_FAILED) {
        shoal__warn("slot %d: no progress page for its executor (%s): one task at a time",
                    slot->index, strerror(errno));
        if (slot->progress_fd >= 0)
            close(slot->progress_fd);
        slot->progress_fd = -1;
        return;
    }
    slot->progress = page;
}

static void *s_socket(s_worker_t *self, int type, bool mandatory)
{
    void *sock = zmq_socket(self->ctx, type);
    if (!sock)
        return NULL;
    int linger = S_LINGER_MS, one = 1;
    int64_t maxmsg = SHOAL_MAX_MSG_SIZE;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (mandatory)
        zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    return sock;
}

static int s_setup(s_worker_t *self, const shoal_worker_config_t *cfg)
{
    //  Configuration and its defaults (worker.h).
    const char *name = cfg->name && cfg->name[0] ? cfg->name : shoal__hostname();
    if (strlen(name) >= sizeof self->name) {
        shoal__error("worker name '%s' is too long (at most %zu bytes)", name,
                     sizeof self->name - 1);
        return SHOAL_EINVAL;
    }
    shoal__strlcpy(self->name, name, sizeof self->name);
    s_sanitise(self->name, self->store_name, sizeof self->store_name);
    shoal__strlcpy(self->host, shoal__hostname(), sizeof self->host);
    const char *broker = cfg->broker && cfg->broker[0] ? cfg->broker : getenv("SHOAL_BROKER");
    shoal__strlcpy(self->broker_ep, broker && broker[0] ? broker : "tcp://127.0.0.1:7400",
                   sizeof self->broker_ep);
    self->n_slots = cfg->slots > 0 ? cfg->slots : s_cpu_count();
    if (self->n_slots > 4096) {
        shoal__error("%d slots is too many (at most 4096)", self->n_slots);
        return SHOAL_EINVAL;
    }
    int prefetch = cfg->prefetch > 0   ? cfg->prefetch
                   : cfg->prefetch < 0 ? 0
                                       : SHOAL__MAX(2 * self->n_slots, S_PREFETCH_MIN);
    self->capacity = (uint64_t)self->n_slots + (uint64_t)prefetch;
    self->shm_size = cfg->shm_size ? cfg->shm_size : 256ull << 20;
    self->spill_dir = cfg->spill_dir;
    self->spill_size = cfg->spill_size;
    self->fixed_heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 0;
    self->heartbeat_ms = self->fixed_heartbeat_ms ? self->fixed_heartbeat_ms : 1000;
    const char *step = getenv(S_PERSIST_STEP_ENV);
    self->persist_step =
        step && strtoull(step, NULL, 10) ? strtoull(step, NULL, 10) : S_PERSIST_STEP;
    self->persist_gate = getenv(S_PERSIST_GATE_ENV);
    if (cfg->store_dir && cfg->store_dir[0]) {
        if (strlen(cfg->store_dir) >= sizeof self->store_dir) {
            shoal__error("store directory path too long: %s", cfg->store_dir);
            return SHOAL_EINVAL;
        }
        shoal__strlcpy(self->store_dir, cfg->store_dir, sizeof self->store_dir);
    } else {
        const char *home = getenv("HOME");
        if (home && home[0])
            snprintf(self->store_dir, sizeof self->store_dir, "%s/.local/state/shoal/%s", home,
                     self->store_name);
        else
            snprintf(self->store_dir, sizeof self->store_dir, "/tmp/shoal-%u/state/%s",
                     (unsigned)getuid(), self->store_name);
    }
    shoal__strlcpy(self->exec_bin,
                   cfg->executor_bin && cfg->executor_bin[0] ? cfg->executor_bin : "/proc/self/exe",
                   sizeof self->exec_bin);

    //  Signals go to a signalfd in the poll set. Blocked before the zmq context exists,
    //  so libzmq's threads inherit the mask and never take them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, &self->old_mask) != 0)
        return SHOAL_EIO;
    self->mask_set = true;
    self->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    int fds[2];
    if (self->sigfd < 0 || pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        shoal__error("cannot set up signal handling: %s", strerror(errno));
        return SHOAL_EIO;
    }
    self->stop_rd = fds[0];
    s_stop_wr = fds[1];
    s_stop_flag = 0;

    if (self->spill_size == SHOAL_WORKER_SPILL_AUTO)
        self->spill_size = s_spill_auto(self);
    shoal_store_config_t sc = {.dir = self->store_dir,
                               .name = self->store_name,
                               .capacity = self->shm_size,
                               .spill_dir = self->spill_dir,
                               .spill_size = self->spill_size};
    int rc = shoal_store_open(&sc, &self->store);
    if (rc == 0 && cfg->reset_store) {
        size_t n = shoal_store_count(self->store);
        shoal_store_destroy(&self->store);
        shoal__info("--reset-store: removed the store in %s (%zu objects)", self->store_dir, n);
        rc = shoal_store_open(&sc, &self->store);
    }
    if (rc) {
        shoal__error("cannot open the store in %s: %s", self->store_dir, shoal_strerror(rc));
        return rc;
    }
    self->arena_path = shoal_store_arena_path(self->store);
    struct stat ast;
    if (stat(self->arena_path, &ast) == 0) {
        self->arena_dev = (uint64_t)ast.st_dev;
        self->arena_ino = (uint64_t)ast.st_ino;
    }

    //  Scratch for exec tasks: whatever a killed worker left is stale.
    snprintf(self->scratch_dir, sizeof self->scratch_dir, "%s/scratch", self->store_dir);
    shoal__tree_remove(self->scratch_dir);
    int err = shoal__mkdir_p(self->scratch_dir, 0700);
    if (err) {
        shoal__error("cannot create %s: %s", self->scratch_dir, strerror(-err));
        return SHOAL_EIO;
    }

    self->ctx = zmq_ctx_new();
    if (!self->ctx)
        return SHOAL_EIO;
    char addr[64], bind_ep[300], last[300];
    s_local_addr(self->broker_ep, addr, sizeof addr);
    if (cfg->data && cfg->data[0])
        shoal__strlcpy(bind_ep, cfg->data, sizeof bind_ep);
    else
        snprintf(bind_ep, sizeof bind_ep, "tcp://%s:*", addr);
    self->data = s_socket(self, ZMQ_ROUTER, true);
    size_t last_len = sizeof last;
    if (!self->data || zmq_bind(self->data, bind_ep) != 0 ||
        zmq_getsockopt(self->data, ZMQ_LAST_ENDPOINT, last, &last_len) != 0) {
        shoal__error("cannot bind the data socket %s: %s", bind_ep, zmq_strerror(errno));
        return SHOAL_EIO;
    }
    //  Advertise --advertise, else the address bound when it is a real one, else the
    //  address that reaches the broker (a wildcard bind reads back as 0.0.0.0).
    const char *port = strrchr(last, ':');
    bool wildcard = strncmp(last, "tcp://0.0.0.0:", 14) == 0;
    if (strncmp(last, "tcp://", 6) == 0 && port &&
        ((cfg->advertise && cfg->advertise[0]) || wildcard))
        snprintf(self->data_ep, sizeof self->data_ep, "tcp://%s%s",
                 cfg->advertise && cfg->advertise[0] ? cfg->advertise : addr, port);
    else
        shoal__strlcpy(self->data_ep, last, sizeof self->data_ep);

    self->broker = s_socket(self, ZMQ_DEALER, false);
    int one = 1;
    if (self->broker)
        zmq_setsockopt(self->broker, ZMQ_IMMEDIATE, &one, sizeof one);
    if (!self->broker || zmq_connect(self->broker, self->broker_ep) != 0) {
        shoal__error("cannot connect to the broker at %s: %s", self->broker_ep,
                     zmq_strerror(errno));
        return SHOAL_EINVAL;
    }

    self->slots = s_alloc0((size_t)self->n_slots * sizeof *self->slots);
    for (int i = 0; i < self->n_slots; i++) {
        s_slot_t *slot = &self->slots[i];
        slot->index = i;
        snprintf(slot->index_text, sizeof slot->index_text, "%d", i);
        snprintf(slot->scratch, sizeof slot->scratch, "%s/slot-%d", self->scratch_dir, i);
        s_progress_open(slot);
        slot->envp = s_make_envp(slot->scratch, slot->progress_fd);
    }
    char size_text[32];
    shoal__info("worker %s: %d slots, data %s, store %s (arena %s, %s)", self->name, self->n_slots,
                self->data_ep, self->store_dir, self->arena_path,
                s_size_text(shoal_store_capacity(self->store), size_text, sizeof size_text));
    if (shoal_store_count(self->store))
        shoal__info("re-adopted %zu objects (%s) from the store", shoal_store_count(self->store),
                    s_size_text(shoal_store_used(self->store), size_text, sizeof size_text));
    for (int i = 0; i < self->n_slots; i++)
        s_slot_spawn(self, &self->slots[i]);
    self->hello_next_us = 0;
    self->hello_since_us = self->last_heard_us = shoal__now_us();
    return 0;
}

static void s_teardown(s_worker_t *self)
{
    if (self->store)
        shoal__info("worker %s: %llu tasks done, %llu failed, %llu malformed messages", self->name,
                    (unsigned long long)self->n_tasks_done,
                    (unsigned long long)self->n_tasks_failed,
                    (unsigned long long)self->n_malformed);
    //  Executors first: kill their groups, then collect them (SIGKILL cannot be caught;
    //  2 s covers a process stuck in the kernel for a moment).
    if (self->slots) {
        for (int i = 0; i < self->n_slots; i++)
            if (self->slots[i].pid > 0) {
                kill(-self->slots[i].pid, SIGKILL);
                kill(self->slots[i].pid, SIGKILL);
            }
        int64_t deadline = shoal__now_us() + 2000000;
        while (true) {
            int left = 0;
            for (int i = 0; i < self->n_slots; i++) {
                s_slot_t *slot = &self->slots[i];
                if (slot->pid > 0) {
                    pid_t r = waitpid(slot->pid, NULL, WNOHANG);
                    if (r == slot->pid || (r < 0 && errno == ECHILD))
                        slot->pid = 0;
                    else
                        left++;
                }
            }
            int64_t wait_ms = (deadline - shoal__now_us()) / 1000;
            if (!left || wait_ms <= 0 || self->sigfd < 0)
                break;
            //  SIGCHLD arrives on the signalfd when the next one dies.
            struct pollfd pfd = {.fd = self->sigfd, .events = POLLIN};
            if (poll(&pfd, 1, (int)wait_ms) > 0) {
                struct signalfd_siginfo si;
                while (read(self->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
                    ;
            }
        }
        for (int i = 0; i < self->n_slots; i++) {
            self->slots[i].pid = 0;
            self->slots[i].n_batch = self->slots[i].n_left = 0; //  its tasks just go, below
        }
    }
    //  Tasks: nothing more will be reported (the broker requeues them when it notices we
    //  are gone); their allocations are aborted, their fetches abandoned.
    if (self->tasks) {
        size_t n = shoal__refmap_size(self->tasks), cursor = 0, k = 0;
        s_task_t **all = s_alloc0(n * sizeof *all);
        shoal_ref_t key;
        void *value;
        while (k < n && shoal__refmap_next(self->tasks, &cursor, &key, &value))
            all[k++] = value;
        for (size_t i = 0; i < k; i++)
            s_task_free(self, all[i]);
        free(all);
    }
    for (size_t i = 0; i < self->n_peers; i++) {
        s_peer_t *p = self->peers[i];
        while (p->head)
            s_fetch_abandon(self, p->head);
        s_peer_close(p);
        free(p->endpoint);
        free(p);
    }
    free(self->peers);
    free(self->results);
    for (size_t i = 0; i < self->n_kept; i++)
        shoal_wire_in_clear(&self->kept[i]);
    free(self->kept);
    s_bump_reset(self, true);
    while (self->free_tasks) {
        s_task_t *t = self->free_tasks;
        self->free_tasks = t->next;
        free(t);
    }
    free(self->etasks);
    free(self->eins);
    for (size_t i = 0; i < self->n_done; i++)
        s_done_free(self->done[i]);
    free(self->done);
    free(self->started);
    free(self->stash);
    free(self->waiters);
    size_t cursor = 0;
    shoal_ref_t key;
    void *value;
    while (self->puts && shoal__refmap_next(self->puts, &cursor, &key, &value))
        s_put_free(value);
    shoal__refmap_destroy(&self->puts);
    shoal__refmap_destroy(&self->gens);
    for (size_t i = 0; i < self->n_notes; i++)
        free(self->notes[i]);
    free(self->notes);
    for (size_t i = 0; i < self->n_parked; i++)
        free(self->parked[i].msg);
    free(self->parked);
    free(self->sealed);
    for (size_t i = 0; i < self->n_persists; i++) {
        //  Unfinished: the writers and the broker hear nothing (the broker requeues the
        //  tasks at w_bye); the pieces written so far are swept at the next open.
        free(self->persists[i].refs);
        free(self->persists[i].gens);
        s_put_free(self->persists[i].put);
        free(self->persists[i].result);
    }
    free(self->persists);
    for (size_t i = 0; i < self->n_held; i++)
        free(self->held[i]);
    free(self->held);
    for (size_t i = 0; i < self->n_nears; i++) {
        free(self->nears[i].arena);
        shoal_store_reader_close(&self->nears[i].reader);
    }
    free(self->nears);
    if (self->broker) {
        //  A clean stop frees our name at once and requeues our tasks without waiting for
        //  the broker to notice our silence; the linger period lets it leave.
        if (self->welcomed) {
            shoal_wire_w_bye_t bye = {.reason = "worker stopped"};
            shoal_wire_send(self->broker, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0);
        }
        zmq_close(self->broker);
    }
    if (self->data)
        zmq_close(self->data);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    shoal_store_close(&self->store);
    if (self->scratch_dir[0])
        shoal__tree_remove(self->scratch_dir);
    if (self->slots) {
        for (int i = 0; i < self->n_slots; i++) {
            char **envp = self->slots[i].envp;
            for (size_t k = 0; envp && envp[k]; k++)
                free(envp[k]);
            free(envp);
            free(self->slots[i].batch);
            shoal_chan_destroy(&self->slots[i].chan);
            if (self->slots[i].progress)
                munmap(self->slots[i].progress, sizeof *self->slots[i].progress);
            if (self->slots[i].progress_fd >= 0)
                close(self->slots[i].progress_fd);
        }
        free(self->slots);
    }
    shoal__refmap_destroy(&self->tasks);
    shoal__refmap_destroy(&self->uses);
    shoal__refmap_destroy(&self->drops);
    shoal__refmap_destroy(&self->copies);
    shoal__refmap_destroy(&self->fetches);
    int wr = s_stop_wr;
    s_stop_wr = -1;
    if (wr >= 0)
        close(wr);
    if (self->stop_rd >= 0)
        close(self->stop_rd);
    if (self->sigfd >= 0)
        close(self->sigfd);
    if (self->mask_set) {
        //  Collect children that died meanwhile before SIGCHLD is unblocked.
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        pthread_sigmask(SIG_SETMASK, &self->old_mask, NULL);
    }
}

int shoal_worker_run(const shoal_worker_config_t *config)
{
    shoal_worker_config_t none;
    memset(&none, 0, sizeof none);
    if (!config)
        config = &none;
    shoal__log_init("worker", SHOAL_LOG_INFO);
    //  Each 1 MiB chunk served goes out in a frame libzmq mallocs here and frees in its
    //  I/O thread. Above glibc's mmap threshold every one is a fresh mmap and ~256 page
    //  faults, which made a 256 MiB remote get 40% slower than raw libzmq; from the heap,
    //  kept (not trimmed) between chunks, the same pages serve every chunk.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    s_worker_t *self = s_alloc0(sizeof *self);
    self->sigfd = self->stop_rd = -1;
    self->tasks = shoal__refmap_new();
    self->uses = shoal__refmap_new();
    self->drops = shoal__refmap_new();
    self->copies = shoal__refmap_new();
    self->fetches = shoal__refmap_new();
    self->puts = shoal__refmap_new();
    self->gens = shoal__refmap_new();
    if (!self->tasks || !self->uses || !self->drops || !self->copies || !self->fetches ||
        !self->puts || !self->gens)
        s_oom();
    int rc = s_setup(self, config);
    if (rc == 0) {
        s_loop(self);
        rc = self->exit_code;
        if (self->welcomed)
            s_flush(self); //  a last chance for results of this turn
    }
    s_teardown(self);
    free(self);
    return rc;
}
