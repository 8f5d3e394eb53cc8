/*  journal.h: the broker's record of acknowledged tasks and their outcomes (LMDB).

    A submission is written, in one transaction per batch, before it is acknowledged: a
    broker restarted on the same --state-dir loses nothing it acknowledged. Outcomes are
    queued as they happen and committed once per loop turn (one transaction, never one per
    task); an outcome lost in a crash only means the task runs again. The environment uses
    MDB_NOSYNC: it survives a process kill, not a power cut. Internal to the broker. */
#ifndef SHOAL_JOURNAL_H_INCLUDED
#define SHOAL_JOURNAL_H_INCLUDED

#include "proto.h"

typedef struct shoal__journal shoal__journal_t;

/*  Opens (creating) DIR/journal.mdb. 0, SHOAL_EIO (logged with the path), SHOAL_ENOMEM. */
int shoal__journal_open(const char *dir, shoal__journal_t **self_p);
void shoal__journal_close(shoal__journal_t **self_p);

/*  Writes tasks now, in one transaction. 0 or SHOAL_EIO / SHOAL_EFULL (not acknowledged
    then: the client resends). */
int shoal__journal_add_tasks(shoal__journal_t *self, const shoal_wire_task_t *tasks, size_t n);
/*  Queues the final outcome of task id: statuses of its outputs (done) or of the task
    (failed, canceled). Copied. */
void shoal__journal_final(shoal__journal_t *self, shoal_ref_t id, const shoal_wire_status_t *items,
                          size_t n);
/*  Queues forgetting task id (its outputs were all removed). */
void shoal__journal_forget(shoal__journal_t *self, shoal_ref_t id);
/*  Commits what was queued in one transaction. 0 or SHOAL_EIO (logged; kept for the next
    commit). */
int shoal__journal_commit(shoal__journal_t *self);

/*  Calls on_task for every journaled task, then on_final for every recorded outcome. The
    records passed are valid only during the call. */
typedef void(shoal__journal_task_fn)(void *arg, const shoal_wire_task_t *spec);
typedef void(shoal__journal_final_fn)(void *arg, shoal_ref_t id,
                                      const shoal_wire_statuses_t *outcome);
int shoal__journal_load(shoal__journal_t *self, shoal__journal_task_fn *on_task,
                        shoal__journal_final_fn *on_final, void *arg);

#endif
