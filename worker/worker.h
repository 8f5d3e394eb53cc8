/*  worker.h: the shoal worker and its executors, embeddable, with a thin main (cli/).

    shoal_worker_run() connects to the broker, starts one executor process per slot
    (fork + exec of `shoal executor`), keeps results in its store and serves them on its
    data socket; it blocks until SIGINT/SIGTERM and returns 0 (after killing its
    executors and closing the store), or returns a negative SHOAL_E* code when it cannot
    start or the broker refused it (after printing why). */
#ifndef SHOAL_WORKER_H_INCLUDED
#define SHOAL_WORKER_H_INCLUDED

#include "shoal.h"

#include <stdatomic.h>

typedef struct {
    const char *broker;       /*  default $SHOAL_BROKER, else tcp://127.0.0.1:7400 */
    const char *name;         /*  default the host name; unique per cluster */
    int slots;                /*  default the number of CPUs */
    int prefetch;             /*  tasks held beyond slots; default max(2 * slots, 128) */
    const char *store_dir;    /*  default ~/.local/state/shoal/NAME */
    uint64_t shm_size;        /*  arena bytes; default 256 MiB */
    const char *data;         /*  data socket bind endpoint; default tcp://ADDR:* where ADDR
                                  is the local address that reaches the broker */
    const char *advertise;    /*  host peers use to reach the data socket; default ADDR */
    const char *executor_bin; /*  the shoal binary for executors; default /proc/self/exe */
    int heartbeat_ms;         /*  default: what the broker's welcome says */
    bool reset_store;         /*  start with an empty store: what the store dir and arena held
                                  is removed (`shoal worker --reset-store`) */
    const char *spill_dir;    /*  the disk tier's directory; default STORE_DIR/spill */
    uint64_t spill_size;      /*  the disk tier's cap in bytes; 0: no disk tier (no spilling);
                                  SHOAL_WORKER_SPILL_AUTO: 4 x shm_size, at most half the disk
                                  space free at start */
} shoal_worker_config_t;
#define SHOAL_WORKER_SPILL_AUTO UINT64_MAX
/*  Zero (or NULL) in any field means "the default" above; prefetch < 0 means no prefetch
    (capacity = slots). */

int shoal_worker_run(const shoal_worker_config_t *config);
void shoal_worker_stop(void); /*  async-signal-safe */

/*  `shoal executor fd:N ARENA SLOT` (internal): talks to the worker over the socketpair end
    it inherited as fd N (proto/chan.h), runs the tasks it is given until the worker goes
    away. Returns an exit status. */
int shoal_executor_run(const char *endpoint, const char *arena_path, int slot);

/*  ------------------------------------------------------------------------------------
    Worker <-> executor conventions, beyond docs/protocol.md (both ends live in worker/):
    - Batches. An e_run carries up to 256 tasks, which the executor runs one after another
      in order. The worker batches only fn tasks it expects to be short (the average
      runtime of earlier tasks of the same function is at most 1 ms), up to about 2 ms of
      expected work per e_run, dividing the runnable tasks among its idle executors; exec
      tasks, and fn tasks of a function it has not seen finish yet, go one per e_run. An
      executor has at most one e_run at a time.
    - Results travel in e_done_batch, in the order the tasks ran. The executor's main
      thread sends what it holds between tasks: when the batch is done, after a task that
      took 1 ms or more, when the oldest result held is 1 ms old, or when the inline bytes
      held reach 4 MiB (messages stay far below SHOAL_MAX_MSG_SIZE); and a watch thread
      sends them when a task has run for 1 ms while results wait, so a long task never
      holds back the results of the short ones before it. e_done (one result) is still
      understood.
    - Progress page. The worker gives each executor one shared page (a memfd whose fd
      number is in $SHOAL_EXEC_PROGRESS_FD; the executor maps it and closes the fd) holding
      a shoal_exec_progress_t. Before running task i of the e_run numbered seq the
      executor stores start_us then pos = SHOAL_EXEC_POS(seq, i, 1); when the task's code
      has returned, pos = SHOAL_EXEC_POS(seq, i, 0). No message, no system call: the
      worker reads it to report w_started for tasks still running 10 ms after they
      started, and, when an executor dies, to know which task it was running (that one
      fails with the signal; the other unfinished tasks of the batch, including those
      whose results died with the executor, run again on its replacement; if it was
      between tasks, all of them run again, and one that went through 3 such deaths
      fails). An executor without the page (none given, or it cannot be mapped) sends
      e_started before each task instead, and the worker then sends it one task per
      e_run.
    - Cancel of a task in a batch kills the executor's process group, as for a single task;
      the other unfinished tasks of that batch go back to the front of the worker's local
      queue, in order, and run on the new executor (at least once, as after a crash).
    - A result's outputs (in e_done_batch or e_done): the task's n_outputs outputs in
      order, then ONE more entry, the task's log (stderr; stored as shoal_ref_output(id,
      SHOAL_REF_LOG_INDEX)). A failed task (status != 0) sends only the log entry, or no
      entry at all, then possibly one entry flagged SHOAL_OUT_INLINE | SHOAL_OUT_STDOUT:
      the end of a failed command's stdout, which the worker forwards to the broker
      without storing it.
    - What the worker keeps: outputs that travel inline (at most SHOAL_INLINE_MAX bytes)
      are forwarded to the broker in w_done, which keeps their bytes in its directory; the
      worker does not put them in its store (no arena page, no LMDB entry for them). Nor a
      log the broker gets whole as log_tail. Larger outputs and logs are in the store.
      Likewise an input the broker sent inline is not stored: its bytes go in the e_run
      (e_input.offset == SHOAL_EXEC_INLINE, e_input.data), and the executor copies a
      batch's inline inputs into a private mapping it makes read-only while the batch
      runs, so inputs stay read-only views either way.
    - e_alloc's sizes has n_outputs + 1 entries: output i at index i, the log last;
      SHOAL_EXEC_INLINE marks one that needs no space (it travels inline, or a failed task
      does not report it). e_alloc_ok's offsets has one entry per size (SHOAL_EXEC_INLINE
      for those skipped). The worker seals the allocations a result names and aborts the
      rest. A task may send several e_alloc: a fn task sends one per large output as the
      function allocates it (only that index sized, the others SHOAL_EXEC_INLINE), and one
      for a large log; it never names the same output twice.
    - fn tasks: what the function writes on fds 1 and 2 is its log (the executor points
      them at a memfd from its first fn task on and measures each task's part; its own
      messages go around it); a log entry is sent only when it is not empty.
    - The executor makes each task's scratch directory under $SHOAL_SCRATCH_DIR (set per
      slot by the worker, which wipes it when an executor dies). */
/*  Streaming readers of a fn task's output written in place: the executor publishes how
    many bytes of it are written (shoal_task_output_progress) in one of these entries of
    its progress page, a memory write, no message. ref_hi/ref_lo name the output (0, 0:
    free), ready its watermark (size once sealed). The executor frees its task's entries
    when the function returns; the worker reads them only while a streaming reader waits
    on an allocated output of a task the executor runs, so a writer nobody streams costs
    nothing but the store. */
#define SHOAL_EXEC_STREAMS 16
typedef struct {
    _Atomic uint64_t ref_hi, ref_lo;
    _Atomic uint64_t ready;
} shoal_exec_stream_t;

typedef struct {
    _Atomic uint64_t pos;     /*  SHOAL_EXEC_POS(seq, index, running) */
    _Atomic int64_t start_us; /*  shoal__now_us() when the task at pos started */
    shoal_exec_stream_t streams[SHOAL_EXEC_STREAMS];
} shoal_exec_progress_t;
#define SHOAL_EXEC_POS(seq, index, running)                                                        \
    (((uint64_t)(seq) << 16) | (((uint64_t)(index)&0x7fff) << 1) | ((running) ? 1u : 0u))
#define SHOAL_EXEC_POS_SEQ(pos)     ((pos) >> 16)
#define SHOAL_EXEC_POS_INDEX(pos)   ((size_t)(((pos) >> 1) & 0x7fff))
#define SHOAL_EXEC_POS_RUNNING(pos) (((pos)&1u) != 0)
#define SHOAL_EXEC_BATCH_MAX        256 /*  tasks per e_run (< 32768: 15 bits of pos) */
#define SHOAL_EXEC_PROGRESS_ENV     "SHOAL_EXEC_PROGRESS_FD"
#define SHOAL_EXEC_INLINE           UINT64_MAX
#define SHOAL_EXEC_SCRATCH_ENV      "SHOAL_SCRATCH_DIR"

/*  rm -rf path, not following symlinks, making unreadable directories readable on the
    way (task code may chmod its scratch). Best effort, bounded depth (64). */
void shoal__tree_remove(const char *path);

#endif
