/*  proto.h: every message of the shoal wire protocol, defined once.

    A message is one ZeroMQ frame: byte 0 is the protocol version (SHOAL_PROTO_VERSION),
    byte 1 the message type, the rest a msgpack array holding the message's fields in the
    order given below. Bulk bytes (object data) travel as raw frames after it. Over a
    ROUTER socket the routing id frame comes first, as usual.

    The tables below generate: the C struct of every record (shoal_wire_NAME_t), its field
    descriptor (shoal_wire_NAME_desc), the message type enum (SHOAL_MSG_NAME), the message
    names, and one generic codec that walks the descriptors. docs/protocol.md gives the
    grammar and who sends what when.

    Evolution: fields are append-only. A decoder ignores fields past those it knows and
    leaves missing trailing fields zero/NULL, so old and new peers interoperate; a change
    of meaning bumps SHOAL_PROTO_VERSION, which peers check in their hello.

    Field types and their C form:
      U64   uint64_t                          msgpack positive int
      I64   int64_t                           msgpack int
      STR   char * (NUL-terminated, or NULL)  msgpack str or nil
      BIN   shoal_wire_bin_t                  msgpack bin
      REF   shoal_ref_t                       bin of 16 bytes (hi, lo big-endian)
      REFS  shoal_wire_refs_t                 bin of 16 bytes per ref
      STRS  shoal_wire_strs_t                 array of str
      U64S  shoal_wire_u64s_t                 array of int
      REC   shoal_wire_SUB_t (by value)       array (the nested record)
      RECS  array of shoal_wire_SUB_t         array of arrays
*/
#ifndef SHOAL_PROTO_H_INCLUDED
#define SHOAL_PROTO_H_INCLUDED

#include "shoal.h"

#include <msgpack.h>
#include <stddef.h>

#define SHOAL_PROTO_VERSION 1

/*  Small objects travel inline in completions and live in the broker's directory: 64 KiB
    keeps a 1,000-task completion batch of small results within a few MiB. */
#define SHOAL_INLINE_MAX (64 * 1024)
/*  ZMQ_MAXMSGSIZE on sockets that face the network: submission batches are split by the
    client to stay below it; object bytes move in chunks of SHOAL_CHUNK_SIZE. */
#define SHOAL_MAX_MSG_SIZE (64 * 1024 * 1024)
#define SHOAL_CHUNK_SIZE   (1024 * 1024)

/*  Task kinds. */
/*  SHOAL_KIND_PUT: not a computation but an object a client put. With SHOAL_OUT_INLINE in
    flags, arg holds the whole object (at most SHOAL_INLINE_MAX bytes) and the broker keeps
    it in its directory: the task is DONE on arrival. Without it, the object is in the
    store of the worker named by `worker` (the client allocated it there with a `put`
    ALLOC on that worker's data socket before submitting this), `size` bytes: the task is
    RUNNING until that worker's w_objects note says SEALED (DONE) or ABORTED (CANCELED). A
    put has no inputs, one output, and is never run again: lost with its worker, it fails
    with SHOAL_ELOST. */
enum { SHOAL_KIND_EXEC = 0, SHOAL_KIND_FN = 1, SHOAL_KIND_PUT = 2 };

/*  Task and object states as the broker reports them. */
enum {
    SHOAL_STATE_UNKNOWN = 0, /*  never submitted, or forgotten */
    SHOAL_STATE_WAITING = 1, /*  waiting for inputs */
    SHOAL_STATE_READY = 2,   /*  queued at the broker */
    SHOAL_STATE_RUNNING = 3, /*  dispatched to a worker (queued there or running) */
    SHOAL_STATE_DONE = 4,
    SHOAL_STATE_FAILED = 5,
    SHOAL_STATE_CANCELED = 6,
    SHOAL_STATE_LOST = 7, /*  the object was lost with its worker, being recomputed */
};
const char *shoal_wire_state_name(uint64_t state);

/*  Flags. task.flags also carries SHOAL_TASK_PERSIST (shoal.h, 1u << 8): its outputs (a
    put's object) are written to the disk tier of the worker that stores them, synced, and
    survive that worker's restart; the broker keeps them listed while that worker is gone.
    A task or put with a name is persisted too. */
#define SHOAL_OUT_INLINE 1u /*  output/status/input: data holds the whole object */
#define SHOAL_OUT_STDOUT                                                                           \
    2u /*  result output of a FAILED exec attempt: the tail of its                                 \
           stdout (inline), kept as index SHOAL_REF_STDOUT_INDEX */
/*  input (w_dispatch): a streaming input (task.stream) still being written on the worker
    named by endpoint/worker, which is not the one the task is sent to: that worker pulls it
    with SHOAL_FETCH_STREAM as it lands. size is the size announced, or 0 when unknown. */
#define SHOAL_IN_WRITING 4u
/*  object_note states */
/*  SPILLED: a sealed object's bytes moved to the worker's disk tier (still served: over the
    data socket, not zero-copy); RESTORED: back in the arena. Both for any object the
    worker holds (a task's output or a put); the broker only records the state, for
    `shoal ls`, query_reply and events. */
enum {
    SHOAL_OBJ_NOTE_ALLOCATED = 1,
    SHOAL_OBJ_NOTE_SEALED = 2,
    SHOAL_OBJ_NOTE_ABORTED = 3,
    SHOAL_OBJ_NOTE_SPILLED = 4,
    SHOAL_OBJ_NOTE_RESTORED = 5,
};
/*  put ops */
enum {
    SHOAL_PUT_OP_ALLOC = 1,
    SHOAL_PUT_OP_WRITE = 2,
    SHOAL_PUT_OP_SEAL = 3,
    SHOAL_PUT_OP_ABORT = 4
};
#define SHOAL_PUT_LEASE_MS 60000
#define SHOAL_WATCH_NODATA 1u /*  watch: do not send inline bytes with statuses */
/*  watch: also answer at once, or when its holder reports the allocation, with a RUNNING
    status naming the worker that holds (or will hold) the object, for streaming readers.
    The final status follows as usual. */
#define SHOAL_WATCH_ALLOCATED 2u

/*  A job_tasks_reply carries at most this many refs (16 MiB); the client asks for the
    rest from offset. Job names are at most SHOAL_JOB_NAME_MAX bytes (shoal.h). */
#define SHOAL_JOB_TASKS_MAX (1024 * 1024)

/*  A query lists at most this many objects (its limit is capped to it), and by default
    SHOAL_QUERY_DEFAULT_LIMIT (shoal.h). A million entries of ~150 bytes is more than the
    32 MiB a reply may take: the byte bound usually stops a reply first. */
#define SHOAL_QUERY_LIMIT_MAX 1000000

typedef struct {
    const uint8_t *data;
    size_t size;
} shoal_wire_bin_t;
typedef struct {
    shoal_ref_t *items;
    size_t count;
} shoal_wire_refs_t;
typedef struct {
    char **items;
    size_t count;
} shoal_wire_strs_t;
typedef struct {
    uint64_t *items;
    size_t count;
} shoal_wire_u64s_t;

/*  ----------------------------------------------------------------------------- records
    F(R, TYPE, name, SUB): R is the record, SUB names the nested record for REC/RECS, else _ . */

/*  A task as submitted. Its id is the ref of output 0; outputs are id with index i. */
#define SHOAL_WIRE_task(F, R)                                                                      \
    F(R, REF, id, _)                                                                               \
    F(R, U64, kind, _)      /*  SHOAL_KIND_EXEC or SHOAL_KIND_FN */                                \
    F(R, STRS, argv, _)     /*  exec: the command line */                                          \
    F(R, STR, fn, _)        /*  fn: "lib.so:symbol" */                                             \
    F(R, BIN, arg, _)       /*  fn: argument bytes */                                              \
    F(R, REFS, inputs, _)   /*  refs this task reads, in order */                                  \
    F(R, U64, n_outputs, _) /*  1..SHOAL_MAX_OUTPUTS */                                            \
    F(R, STR, name, _)      /*  optional name for the outputs */                                   \
    F(R, U64, retries, _)   /*  extra attempts after a failure of the task itself */               \
    F(R, I64, priority, _)                                                                         \
    F(R, STR, job, _) /*  NULL or the job it belongs to, <= SHOAL_JOB_NAME_MAX bytes */            \
    F(R, U64, flags, _)                                                                            \
    F(R, U64, array_index, _) /*  its index in an array: $SHOAL_TASK_INDEX; 0 otherwise */         \
    F(R, U64, ttl_ms, _)      /*  0, or: its outputs are removed this long after it is done */     \
    F(R, STRS, tags, _)       /*  tags for its outputs (shoal ls), each <= 64 bytes */             \
    F(R, STR, worker, _)      /*  put: the worker that holds the object */                         \
    F(R, U64, size, _)        /*  put: the object's size */                                        \
    F(R, U64, stream, _)      /*  fn: bit i, input i streams (SHOAL_STREAM_INPUTS_MAX) */

/*  Where a task's input is: inline bytes, or the data endpoint of the worker holding it. */
#define SHOAL_WIRE_input(F, R)                                                                     \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, size, _)                                                                             \
    F(R, U64, flags, _) /*  SHOAL_OUT_INLINE: data is the object */                                \
    F(R, BIN, data, _)                                                                             \
    F(R, STR, endpoint, _)                                                                         \
    F(R, STR, worker, _)                                                                           \
    F(R, STR, store_dir, _) /*  the holder's store, for a worker on its host */                    \
    F(R, STR, arena, _)

/*  One task handed to a worker. attempt fences off late results of earlier attempts. */
#define SHOAL_WIRE_dispatch(F, R)                                                                  \
    F(R, REC, task, task)                                                                          \
    F(R, U64, attempt, _)                                                                          \
    F(R, RECS, inputs, input)

/*  One output of a finished task. offset is used between executor and worker only. */
#define SHOAL_WIRE_output(F, R)                                                                    \
    F(R, U64, size, _)                                                                             \
    F(R, U64, flags, _) /*  SHOAL_OUT_INLINE: data is the object */                                \
    F(R, BIN, data, _)                                                                             \
    F(R, U64, offset, _)

/*  The end of one task attempt. status is 0 or a SHOAL_E* code (SHOAL_ETASK: the task
    code failed; exit_code is its exit status, or -N when killed by signal N). */
#define SHOAL_WIRE_result(F, R)                                                                    \
    F(R, REF, id, _)                                                                               \
    F(R, U64, attempt, _)                                                                          \
    F(R, I64, status, _)                                                                           \
    F(R, I64, exit_code, _)                                                                        \
    F(R, STR, error, _)                                                                            \
    F(R, RECS, outputs, output)                                                                    \
    F(R, U64, log_size, _)                                                                         \
    F(R, BIN, log_tail, _)                                                                         \
    F(R, U64, runtime_us, _)

/*  What the broker knows of a ref. */
#define SHOAL_WIRE_status(F, R)                                                                    \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, state, _)     /*  SHOAL_STATE_* */                                                   \
    F(R, I64, code, _)      /*  0, or why it failed */                                             \
    F(R, I64, exit_code, _) /*  of the producing task */                                           \
    F(R, STR, error, _)                                                                            \
    F(R, U64, size, _)                                                                             \
    F(R, U64, flags, _) /*  SHOAL_OUT_INLINE: data is the object */                                \
    F(R, BIN, data, _)                                                                             \
    F(R, STR, endpoint, _) /*  data endpoint of the worker holding it */                           \
    F(R, STR, worker, _)

#define SHOAL_WIRE_worker_info(F, R)                                                               \
    F(R, STR, name, _)                                                                             \
    F(R, STR, host, _)                                                                             \
    F(R, U64, slots, _)                                                                            \
    F(R, U64, running, _)                                                                          \
    F(R, U64, queued, _)                                                                           \
    F(R, U64, done, _)                                                                             \
    F(R, U64, failed, _)                                                                           \
    F(R, U64, store_bytes, _)                                                                      \
    F(R, U64, store_capacity, _)                                                                   \
    F(R, STR, endpoint, _)                                                                         \
    F(R, STR, store_dir, _)                                                                        \
    F(R, STR, arena, _)

/*  One job as the broker counts it: its tasks by state. total counts every task the
    broker still knows in the job (forgotten ones have left it). */
#define SHOAL_WIRE_job_info(F, R)                                                                  \
    F(R, STR, name, _)                                                                             \
    F(R, U64, waiting, _)                                                                          \
    F(R, U64, ready, _)                                                                            \
    F(R, U64, running, _)                                                                          \
    F(R, U64, done, _)                                                                             \
    F(R, U64, failed, _)                                                                           \
    F(R, U64, canceled, _)                                                                         \
    F(R, U64, total, _)

#define SHOAL_WIRE_attempt_ref(F, R)                                                               \
    F(R, REF, id, _)                                                                               \
    F(R, U64, attempt, _)

/*  Executor side: an input already in the worker's arena, or (data, appended) its bytes
    travelling in the e_run instead, for a small input the broker sent inline: offset is
    then UINT64_MAX (SHOAL_EXEC_INLINE, worker.h). */
#define SHOAL_WIRE_e_input(F, R)                                                                   \
    F(R, U64, offset, _)                                                                           \
    F(R, U64, size, _)                                                                             \
    F(R, BIN, data, _)                                                                             \
    F(R, U64, stream, _) /*  1: still being written: read it with e_read (below) */                \
    F(R, U64, gen, _)    /*  a streaming input's allocation generation at dispatch */

#define SHOAL_WIRE_e_task(F, R)                                                                    \
    F(R, REC, task, task)                                                                          \
    F(R, U64, attempt, _)                                                                          \
    F(R, RECS, inputs, e_input)

/*  One stored object as a query lists it (query_reply). state: SHOAL_OBJECT_* (shoal.h:
    1 allocated, 2 sealed; 3 spilled and 4 persisted are reserved for stores that spill to
    disk or persist). worker: the holder, NULL for an object inline in the broker's
    directory. task: the id of the task that produced it (a put's own ref). age_ms: since
    it became available (sealed), or, for a put being written, since the broker heard of
    it; after a broker restart, since the restart. */
#define SHOAL_WIRE_object_info(F, R)                                                               \
    F(R, REF, ref, _)                                                                              \
    F(R, STR, name, _)                                                                             \
    F(R, STRS, tags, _)                                                                            \
    F(R, U64, size, _)                                                                             \
    F(R, U64, state, _)                                                                            \
    F(R, STR, worker, _)                                                                           \
    F(R, REF, task, _)                                                                             \
    F(R, U64, age_ms, _)

/*  ---------------------------------------------------------------------------- messages */

/*  client -> broker */
#define SHOAL_WIRE_hello(F, R)                                                                     \
    F(R, U64, version, _)                                                                          \
    F(R, U64, client_id, _)                                                                        \
    F(R, STR, agent, _)
/*  broker -> client */
#define SHOAL_WIRE_hello_ok(F, R)                                                                  \
    F(R, U64, version, _)                                                                          \
    F(R, STR, events, _) /*  the events endpoint, as a client can connect to it */                 \
    F(R, U64, inline_max, _)                                                                       \
    F(R, U64, max_msg, _)
#define SHOAL_WIRE_submit(F, R)                                                                    \
    F(R, U64, seq, _)                                                                              \
    F(R, RECS, tasks, task)
/*  Replies to submit, cancel, remove. code 0 or SHOAL_E*; count: how many were taken. */
#define SHOAL_WIRE_ack(F, R)                                                                       \
    F(R, U64, seq, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, U64, count, _)
/*  Ask to be told when each ref is final (done, failed, canceled): the broker answers at
    once with a status for each that already is, and later for each other. */
#define SHOAL_WIRE_watch(F, R)                                                                     \
    F(R, U64, seq, _)                                                                              \
    F(R, REFS, refs, _)                                                                            \
    F(R, U64, flags, _)
#define SHOAL_WIRE_statuses(F, R) F(R, RECS, items, status)
/*  job: also every unfinished task of that job (NULL: none). */
#define SHOAL_WIRE_cancel(F, R)                                                                    \
    F(R, U64, seq, _)                                                                              \
    F(R, REFS, refs, _)                                                                            \
    F(R, STR, job, _)
#define SHOAL_WIRE_remove(F, R)                                                                    \
    F(R, U64, seq, _)                                                                              \
    F(R, REFS, refs, _)
#define SHOAL_WIRE_workers(F, R)     F(R, U64, seq, _)
#define SHOAL_WIRE_worker_list(F, R) F(R, U64, seq, _) F(R, RECS, workers, worker_info)
/*  Jobs: jobs -> job_list (omitted: jobs left out to keep the reply below 32 MiB);
    job_tasks -> job_tasks_reply: the ids of a job's tasks in job order, at most
    SHOAL_JOB_TASKS_MAX from offset; total is how many the job has. An unknown job is
    code SHOAL_ENOTFOUND. */
#define SHOAL_WIRE_jobs(F, R) F(R, U64, seq, _)
#define SHOAL_WIRE_job_list(F, R)                                                                  \
    F(R, U64, seq, _)                                                                              \
    F(R, RECS, jobs, job_info)                                                                     \
    F(R, U64, omitted, _)
#define SHOAL_WIRE_job_tasks(F, R)                                                                 \
    F(R, U64, seq, _)                                                                              \
    F(R, STR, name, _)                                                                             \
    F(R, U64, offset, _)
/*  Release everything a client owns (tasks whose ids carry its client id, and their
    objects): unfinished tasks are canceled, outputs and logs dropped, tasks forgotten.
    libshoal sends it on disconnect unless told to keep. Answered by ack (count: tasks). */
#define SHOAL_WIRE_release(F, R)                                                                   \
    F(R, U64, seq, _)                                                                              \
    F(R, U64, client_id, _)
#define SHOAL_WIRE_job_tasks_reply(F, R)                                                           \
    F(R, U64, seq, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, REFS, tasks, _)                                                                           \
    F(R, U64, offset, _)                                                                           \
    F(R, U64, total, _)
/*  Objects the broker knows (outputs of done tasks, puts) that match every filter given
    (NULL: any): name_glob an fnmatch pattern on the name, tag one of the tags exactly,
    worker the holder's name, job the producing task's job. The reply lists the oldest
    first, at most limit of them (0: 1000; at most SHOAL_QUERY_LIMIT_MAX) and at most what
    fits in half of SHOAL_MAX_MSG_SIZE; more counts the matches left out. */
#define SHOAL_WIRE_query(F, R)                                                                     \
    F(R, U64, seq, _)                                                                              \
    F(R, STR, name_glob, _)                                                                        \
    F(R, STR, tag, _)                                                                              \
    F(R, STR, worker, _)                                                                           \
    F(R, STR, job, _)                                                                              \
    F(R, U64, limit, _)
#define SHOAL_WIRE_query_reply(F, R)                                                               \
    F(R, U64, seq, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, RECS, objects, object_info)                                                               \
    F(R, U64, more, _)
/*  Any side: a request that cannot be served, or a malformed message. */
#define SHOAL_WIRE_error(F, R)                                                                     \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)

/*  worker -> broker: what happened to an object in its store that the broker must know at
    once. state: SHOAL_OBJ_NOTE_*. For a client's put (ALLOCATED, SEALED, ABORTED) the note
    carries what the put said (name, tags, ttl) so it can stand in for the client's PUT
    task if that arrives later; for a task's output only ALLOCATED is sent (the result
    says the rest). */
#define SHOAL_WIRE_object_note(F, R)                                                               \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, state, _)                                                                            \
    F(R, U64, size, _)                                                                             \
    F(R, STR, name, _)                                                                             \
    F(R, STRS, tags, _)                                                                            \
    F(R, U64, ttl_ms, _)                                                                           \
    F(R, STR, error, _) /*  ABORTED: why */                                                        \
    F(R, U64, put, _)   /*  1: a client's put (only these may stand in for a PUT task) */          \
    F(R, U64, flags, _) /*  a put's: SHOAL_TASK_PERSIST when it asked for it */
#define SHOAL_WIRE_w_objects(F, R) F(R, RECS, items, object_note)

/*  worker -> broker: (re)register. held: objects already in its store. */
#define SHOAL_WIRE_w_hello(F, R)                                                                   \
    F(R, U64, version, _)                                                                          \
    F(R, STR, name, _)                                                                             \
    F(R, STR, host, _)                                                                             \
    F(R, U64, slots, _)                                                                            \
    F(R, U64, capacity, _) /*  tasks it accepts at once: slots + prefetch depth */                 \
    F(R, STR, endpoint, _) /*  its data socket, as peers and clients reach it */                   \
    F(R, U64, store_capacity, _)                                                                   \
    F(R, U64, pid, _)                                                                              \
    F(R, REFS, held, _)                                                                            \
    F(R, STR, store_dir, _) /*  its store's index directory, for same-host readers */              \
    F(R, STR, arena, _)     /*  its arena file (/dev/shm/...) */                                   \
    F(R, REFS, writing, _)  /*  client puts it is still writing (allocated, not sealed) */
/*  broker -> worker. code < 0: refused (error says why), the worker exits. */
#define SHOAL_WIRE_w_welcome(F, R)                                                                 \
    F(R, U64, version, _)                                                                          \
    F(R, U64, heartbeat_ms, _)                                                                     \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)
#define SHOAL_WIRE_w_dispatch(F, R) F(R, RECS, tasks, dispatch)
#define SHOAL_WIRE_w_started(F, R)  F(R, RECS, tasks, attempt_ref)
/*  worker -> broker, acknowledged by w_done_ack with the same seq; resent until then. */
#define SHOAL_WIRE_w_done(F, R)                                                                    \
    F(R, U64, seq, _)                                                                              \
    F(R, RECS, results, result)                                                                    \
    F(R, U64, store_bytes, _)
#define SHOAL_WIRE_w_done_ack(F, R) F(R, U64, seq, _)
/*  Both ways, every heartbeat_ms; the broker sends zeros. */
#define SHOAL_WIRE_heartbeat(F, R)                                                                 \
    F(R, U64, store_bytes, _)                                                                      \
    F(R, U64, running, _)                                                                          \
    F(R, U64, queued, _)
#define SHOAL_WIRE_w_cancel(F, R) F(R, RECS, tasks, attempt_ref)
#define SHOAL_WIRE_w_drop(F, R)   F(R, REFS, refs, _)
/*  worker -> broker on a clean shutdown: requeue my tasks now, my name is free. */
#define SHOAL_WIRE_w_bye(F, R) F(R, STR, reason, _)

/*  data socket (client or peer worker -> worker's ROUTER). fetch asks for length bytes
    from offset (0: to the end, in chunks of at most SHOAL_CHUNK_SIZE); the reply data
    carries the bytes in one raw frame after it. */
#define SHOAL_WIRE_fetch(F, R)                                                                     \
    F(R, U64, seq, _)                                                                              \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, offset, _)                                                                           \
    F(R, U64, length, _)                                                                           \
    F(R, U64, flags, _)   /*  SHOAL_FETCH_STREAM: a streaming read (below) */                      \
    F(R, U64, wait_ms, _) /*  stream: how long the worker may hold it (capped at 5 s) */
/*  Streaming fetch (flags SHOAL_FETCH_STREAM): the object may be ALLOCATED and still being
    written. The reply carries the bytes of [offset, offset + length) that have landed, as
    soon as at least one byte beyond offset has (fewer than asked when the watermark is
    inside the range); with none yet the worker holds the request until bytes land, the
    object is sealed (a reply with the bytes, or none at offset == size, final 1), it is
    aborted (code SHOAL_ECANCELED, error naming the object and why) or wait_ms passes (a
    reply with no bytes: ask again). An object not in the store yet (its writer has not
    allocated it) is waited for the same way, then answered SHOAL_ENOTFOUND. Appended to
    data: ready, the watermark when the reply was made (bytes readable from 0), and final,
    1 once the object is sealed (ready == size); then gen, the ref's allocation generation
    on that worker (0, bumped at each abort of it there): a stream that has read bytes and
    sees another gen reads an allocation written anew (a retry) and must fail. */
#define SHOAL_FETCH_STREAM 1u
#define SHOAL_WIRE_data(F, R)                                                                      \
    F(R, U64, seq, _)                                                                              \
    F(R, REF, ref, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, U64, size, _)                                                                             \
    F(R, U64, offset, _)                                                                           \
    F(R, U64, ready, _)                                                                            \
    F(R, U64, final, _)                                                                            \
    F(R, U64, gen, _)

/*  data socket: a client writes an object into the worker's store. op SHOAL_PUT_OP_ALLOC
    reserves size bytes for ref (name, tags, ttl_ms go to the broker with the worker's
    notes); SHOAL_PUT_OP_WRITE carries bytes for [offset, offset + raw size) in the raw frame
    (a same-host client writes into the arena directly and sends WRITE without a frame,
    offset = bytes written so far, as a keepalive); SHOAL_PUT_OP_SEAL makes it final;
    SHOAL_PUT_OP_ABORT drops it. Every op is answered by put_reply with the same seq. An
    allocation left without a message for SHOAL_PUT_LEASE_MS is aborted. */
#define SHOAL_WIRE_put(F, R)                                                                       \
    F(R, U64, seq, _)                                                                              \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, op, _)                                                                               \
    F(R, U64, size, _)                                                                             \
    F(R, U64, offset, _)                                                                           \
    F(R, STR, name, _)                                                                             \
    F(R, STRS, tags, _)                                                                            \
    F(R, U64, ttl_ms, _)                                                                           \
    F(R, U64, flags, _) /*  ALLOC: SHOAL_TASK_PERSIST (keep a synced disk copy at seal) */
/*  ALLOC's answer names the arena and the offset, so a client on the worker's host that
    opens that file and finds the same device and inode writes there directly. busy
    (appended; 0 from older workers): 1 answers a resent SEAL whose persist is still being
    written (code 0), so the writer waits on; the real answer follows once it is synced. */
#define SHOAL_WIRE_put_reply(F, R)                                                                 \
    F(R, U64, seq, _)                                                                              \
    F(R, REF, ref, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, U64, offset, _)                                                                           \
    F(R, STR, arena, _)                                                                            \
    F(R, U64, arena_dev, _)                                                                        \
    F(R, U64, arena_ino, _)                                                                        \
    F(R, U64, busy, _)

/*  executor <-> worker over a socketpair (proto/chan.h: length-prefixed frames) */
#define SHOAL_WIRE_e_hello(F, R)                                                                   \
    F(R, U64, pid, _)                                                                              \
    F(R, U64, slot, _)
/*  seq (appended): the batch's number, which the executor writes in its progress page
    (worker.h) so the worker knows which task runs; 0 from an older worker. */
#define SHOAL_WIRE_e_run(F, R)     F(R, RECS, tasks, e_task) F(R, U64, seq, _)
#define SHOAL_WIRE_e_started(F, R) F(R, REF, id, _) F(R, U64, attempt, _) F(R, U64, pid, _)
/*  Asks the worker for arena space for outputs too large to travel inline. */
#define SHOAL_WIRE_e_alloc(F, R)                                                                   \
    F(R, REF, id, _)                                                                               \
    F(R, U64, attempt, _)                                                                          \
    F(R, U64S, sizes, _)
#define SHOAL_WIRE_e_alloc_ok(F, R)                                                                \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, U64S, offsets, _)
/*  A fn task reading a streaming input (e_input.stream) that is being written asks how
    far it is: the worker answers e_ready once bytes lie beyond offset, at the seal, at an
    abort (code SHOAL_ECANCELED, error naming the object and why) or after wait_ms (at most
    5 s) with what there is. ready: bytes readable from 0; final: 1 once sealed. gen
    (appended): the ref's allocation generation, as in data; one other than the e_input's
    gen means the input was aborted and allocated anew since the task began reading it. */
#define SHOAL_WIRE_e_read(F, R)                                                                    \
    F(R, REF, ref, _)                                                                              \
    F(R, U64, offset, _)                                                                           \
    F(R, U64, wait_ms, _)
#define SHOAL_WIRE_e_ready(F, R)                                                                   \
    F(R, REF, ref, _)                                                                              \
    F(R, I64, code, _)                                                                             \
    F(R, STR, error, _)                                                                            \
    F(R, U64, size, _)                                                                             \
    F(R, U64, ready, _)                                                                            \
    F(R, U64, final, _)                                                                            \
    F(R, U64, gen, _)
/*  outputs: inline (flags SHOAL_OUT_INLINE) or written at offset from e_alloc_ok. */
#define SHOAL_WIRE_e_done(F, R) F(R, REC, result, result)
/*  The results of several tasks of one e_run, in the order they ran (worker.h says when
    the executor sends them). */
#define SHOAL_WIRE_e_done_batch(F, R) F(R, RECS, results, result)

/*  Every record, nested ones before their users. */
#define SHOAL_WIRE_RECORDS(X)                                                                      \
    X(task)                                                                                        \
    X(input)                                                                                       \
    X(dispatch)                                                                                    \
    X(output)                                                                                      \
    X(result)                                                                                      \
    X(status)                                                                                      \
    X(worker_info)                                                                                 \
    X(attempt_ref)                                                                                 \
    X(e_input)                                                                                     \
    X(e_task)                                                                                      \
    X(job_info)                                                                                    \
    X(object_note)                                                                                 \
    X(object_info)

/*  Every message: X(type number, NAME). Numbers are stable on the wire. */
#define SHOAL_WIRE_MESSAGES(X)                                                                     \
    X(1, hello)                                                                                    \
    X(2, hello_ok)                                                                                 \
    X(3, submit)                                                                                   \
    X(4, ack)                                                                                      \
    X(5, watch)                                                                                    \
    X(6, statuses)                                                                                 \
    X(7, cancel)                                                                                   \
    X(8, remove)                                                                                   \
    X(9, workers)                                                                                  \
    X(10, worker_list)                                                                             \
    X(11, error)                                                                                   \
    X(12, jobs)                                                                                    \
    X(13, job_list)                                                                                \
    X(14, job_tasks)                                                                               \
    X(15, job_tasks_reply)                                                                         \
    X(16, release)                                                                                 \
    X(17, query)                                                                                   \
    X(18, query_reply)                                                                             \
    X(20, w_hello)                                                                                 \
    X(21, w_welcome)                                                                               \
    X(22, w_dispatch)                                                                              \
    X(23, w_started)                                                                               \
    X(24, w_done)                                                                                  \
    X(25, w_done_ack)                                                                              \
    X(26, heartbeat)                                                                               \
    X(27, w_cancel)                                                                                \
    X(28, w_drop)                                                                                  \
    X(29, w_bye)                                                                                   \
    X(30, w_objects)                                                                               \
    X(40, fetch)                                                                                   \
    X(41, data)                                                                                    \
    X(42, put)                                                                                     \
    X(43, put_reply)                                                                               \
    X(60, e_hello)                                                                                 \
    X(61, e_run)                                                                                   \
    X(62, e_started)                                                                               \
    X(63, e_alloc)                                                                                 \
    X(64, e_alloc_ok)                                                                              \
    X(65, e_done)                                                                                  \
    X(66, e_done_batch)                                                                            \
    X(67, e_read)                                                                                  \
    X(68, e_ready)

/*  ------------------------------------------------------------------- generated C types */

#define SHOAL__DECL_U64(n, s)  uint64_t n;
#define SHOAL__DECL_I64(n, s)  int64_t n;
#define SHOAL__DECL_STR(n, s)  char *n;
#define SHOAL__DECL_BIN(n, s)  shoal_wire_bin_t n;
#define SHOAL__DECL_REF(n, s)  shoal_ref_t n;
#define SHOAL__DECL_REFS(n, s) shoal_wire_refs_t n;
#define SHOAL__DECL_STRS(n, s) shoal_wire_strs_t n;
#define SHOAL__DECL_U64S(n, s) shoal_wire_u64s_t n;
#define SHOAL__DECL_REC(n, s)  shoal_wire_##s##_t n;
#define SHOAL__DECL_RECS(n, s)                                                                     \
    struct {                                                                                       \
        shoal_wire_##s##_t *items;                                                                 \
        size_t count;                                                                              \
    } n;
#define SHOAL__DECL(R, T, n, s) SHOAL__DECL_##T(n, s)

#define SHOAL__DECL_STRUCT(name)                                                                   \
    typedef struct {                                                                               \
        SHOAL_WIRE_##name(SHOAL__DECL, name)                                                       \
    } shoal_wire_##name##_t;
SHOAL_WIRE_RECORDS(SHOAL__DECL_STRUCT)
#define SHOAL__DECL_MSG_STRUCT(id, name) SHOAL__DECL_STRUCT(name)
SHOAL_WIRE_MESSAGES(SHOAL__DECL_MSG_STRUCT)

typedef enum {
#define SHOAL__MSG_ENUM(id, name) SHOAL_MSG_##name = id,
    SHOAL_WIRE_MESSAGES(SHOAL__MSG_ENUM)
#undef SHOAL__MSG_ENUM
} shoal_msg_type_t;

/*  Field descriptors, generated from the tables; the codec walks them. */
enum {
    SHOAL_FT_U64,
    SHOAL_FT_I64,
    SHOAL_FT_STR,
    SHOAL_FT_BIN,
    SHOAL_FT_REF,
    SHOAL_FT_REFS,
    SHOAL_FT_STRS,
    SHOAL_FT_U64S,
    SHOAL_FT_REC,
    SHOAL_FT_RECS
};
typedef struct shoal_wire_desc shoal_wire_desc_t;
typedef struct {
    int type;
    size_t offset;
    const char *name;
    const shoal_wire_desc_t *sub;
} shoal_wire_field_t;
struct shoal_wire_desc {
    const char *name;
    size_t size;
    size_t nfields;
    const shoal_wire_field_t *fields;
};
#define SHOAL__DESC_EXTERN(name) extern const shoal_wire_desc_t shoal_wire_##name##_desc;
SHOAL_WIRE_RECORDS(SHOAL__DESC_EXTERN)
#define SHOAL__DESC_MSG_EXTERN(id, name) SHOAL__DESC_EXTERN(name)
SHOAL_WIRE_MESSAGES(SHOAL__DESC_MSG_EXTERN)

/*  A decoded message. The body's strings and arrays live in storage the message owns,
    until shoal_msg_clear(). */
typedef struct {
    int type; /*  SHOAL_MSG_* */
    union {
#define SHOAL__MSG_UNION(id, name) shoal_wire_##name##_t name;
        SHOAL_WIRE_MESSAGES(SHOAL__MSG_UNION)
#undef SHOAL__MSG_UNION
    } u;
    void *storage_; /*  internal */
    size_t budget_; /*  internal: bytes decoding may still allocate */
} shoal_msg_t;

/*  The name of message type (e.g. "submit"), or NULL if unknown. */
const char *shoal_msg_name(int type);
/*  The descriptor of message type, or NULL if unknown. */
const shoal_wire_desc_t *shoal_msg_desc(int type);

/*  Encodes a message (version, type, msgpack body) into buf, appending. body points to the
    shoal_wire_NAME_t of type. Returns 0, SHOAL_EINVAL (unknown type) or SHOAL_ENOMEM. */
int shoal_proto_encode(int type, const void *body, msgpack_sbuffer *buf);

/*  Decodes one message frame. Pure: reads only data[0..size). Returns 0, SHOAL_EVERSION
    (another protocol version), or SHOAL_EPROTO (truncated, wrong types, unknown message,
    trailing bytes); on error msg holds nothing to clear. On success call
    shoal_msg_clear(msg) when done. Never crashes on any input. */
int shoal_proto_decode(const void *data, size_t size, shoal_msg_t *msg);
void shoal_msg_clear(shoal_msg_t *msg);

/*  Deep-copies a record of the given descriptor into ONE malloc'd block holding the struct
    and everything it points to; free() it when done. For keeping parts of a decoded
    message (the broker keeps each submitted task this way: one allocation a task).
    Returns NULL on ENOMEM. */
void *shoal_wire_dup(const shoal_wire_desc_t *desc, const void *src);

#endif
