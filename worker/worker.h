/*  worker.h: the shoal worker and its executors, embeddable, with a thin main (cli/).

    shoal_worker_run() connects to the broker, starts one executor process per slot
    (fork + exec of `shoal executor`), keeps results in its store and serves them on its
    data socket; it blocks until SIGINT/SIGTERM and returns 0 (after killing its
    executors and closing the store), or returns a negative SHOAL_E* code when it cannot
    start or the broker refused it (after printing why). */
#ifndef SHOAL_WORKER_H_INCLUDED
#define SHOAL_WORKER_H_INCLUDED

#include "shoal.h"

typedef struct {
    const char *broker;       /*  default $SHOAL_BROKER, else tcp://127.0.0.1:7400 */
    const char *name;         /*  default the host name; unique per cluster */
    int slots;                /*  default the number of CPUs */
    int prefetch;             /*  tasks held beyond slots; default 2 * slots */
    const char *store_dir;    /*  default ~/.local/state/shoal/NAME */
    uint64_t shm_size;        /*  arena bytes; default 256 MiB */
    const char *data;         /*  data socket bind endpoint; default tcp://ADDR:* where ADDR
                                  is the local address that reaches the broker */
    const char *advertise;    /*  host peers use to reach the data socket; default ADDR */
    const char *executor_bin; /*  the shoal binary for executors; default /proc/self/exe */
    int heartbeat_ms;         /*  default: what the broker's welcome says */
} shoal_worker_config_t;
/*  Zero (or NULL) in any field means "the default" above; prefetch < 0 means no prefetch
    (capacity = slots). */

int shoal_worker_run(const shoal_worker_config_t *config);
void shoal_worker_stop(void); /*  async-signal-safe */

/*  `shoal executor ENDPOINT ARENA SLOT` (internal): connects to the worker's executor
    socket, runs the tasks it is given until the worker goes away. Returns an exit status. */
int shoal_executor_run(const char *endpoint, const char *arena_path, int slot);

/*  ------------------------------------------------------------------------------------
    Worker <-> executor conventions, beyond docs/protocol.md (both ends live in worker/):
    - An executor runs e_run's tasks one after another; the worker sends one task per
      e_run in this version and keeps the rest in its local queue.
    - e_done's result.outputs: the task's n_outputs outputs in order, then ONE more entry,
      the task's log (stderr; stored as shoal_ref_output(id, SHOAL_REF_LOG_INDEX)). A failed
      task (status != 0) sends only the log entry, or no entry at all, then possibly one
      entry flagged SHOAL_OUT_INLINE | SHOAL_OUT_STDOUT: the end of a failed command's
      stdout, which the worker forwards to the broker without storing it.
    - e_alloc's sizes has n_outputs + 1 entries: output i at index i, the log last;
      SHOAL_EXEC_INLINE marks one that needs no space (it travels inline, or a failed task
      does not report it). e_alloc_ok's offsets has one entry per size (SHOAL_EXEC_INLINE
      for those skipped). The worker seals the allocations an e_done names and aborts the
      rest. A task may send several e_alloc: a fn task sends one per large output as the
      function allocates it (only that index sized, the others SHOAL_EXEC_INLINE), and one
      for a large log; it never names the same output twice.
    - fn tasks: what the function writes on fds 1 and 2 is its log (the executor points
      them at a memfd around the call); a log entry is sent only when it is not empty.
    - The executor makes each task's scratch directory under $SHOAL_SCRATCH_DIR (set per
      slot by the worker, which wipes it when an executor dies). */
#define SHOAL_EXEC_INLINE      UINT64_MAX
#define SHOAL_EXEC_SCRATCH_ENV "SHOAL_SCRATCH_DIR"

/*  rm -rf path, not following symlinks, making unreadable directories readable on the
    way (task code may chmod its scratch). Best effort, bounded depth (64). */
void shoal__tree_remove(const char *path);

#endif
