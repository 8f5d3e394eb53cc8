/*  store.h: a worker's local object store.

    Bytes live in an arena: one file in /dev/shm, mapped MAP_SHARED and pre-faulted
    (MAP_POPULATE) once, because page faults, not copies, dominate large writes on these
    machines (256 MiB: 40 ms into touched pages, 270 ms into fresh ones). The index lives
    in LMDB in the store directory (env "index.mdb"), keyed by the 16-byte ref.

    One process owns a store: the worker. It alone allocates, seals, deletes and writes the
    index. Executors and same-host readers map the arena file (shoal_arena_map) and reach
    objects by offset; the worker tells them where.

    Space: allocations are page-aligned (4096) so an executor can map just its own output
    writable. The allocator is first-fit over a free list ordered by offset, coalescing on
    free; it lives in the owner's memory and is rebuilt from the index on open.

    Index writes are batched: alloc/seal/delete change the in-memory index at once and
    mark it dirty; shoal_store_flush() commits everything dirty in ONE LMDB transaction
    (the worker calls it once per loop iteration, before it reports completions). The
    environment uses MDB_NOSYNC: the index survives a process kill, not a power cut.

    Object states: ALLOCATED (space reserved, being written) -> SEALED (immutable).
    abort and delete free the space.

    Thread safety: none; one thread uses a store. Never use a store across fork(). */
#ifndef SHOAL_STORE_H_INCLUDED
#define SHOAL_STORE_H_INCLUDED

#include "shoal.h"

typedef struct shoal_store shoal_store_t;

enum { SHOAL_OBJ_ALLOCATED = 1, SHOAL_OBJ_SEALED = 2 };

typedef struct {
    const char *dir;   /*  store directory (created 0700 if missing): the LMDB index */
    const char *name;  /*  arena name: see shoal_store_arena_path_for */
    uint64_t capacity; /*  arena bytes, rounded up to a page */
} shoal_store_config_t;

typedef struct {
    shoal_ref_t ref;
    uint64_t offset; /*  in the arena, page-aligned */
    uint64_t size;   /*  the object's bytes (the reserved space is size rounded to a page) */
    int state;       /*  SHOAL_OBJ_* */
    uint8_t *data;   /*  base + offset: borrowed, valid until the object is deleted/aborted */
} shoal_store_obj_t;

/*  Opens the store: creates the directory and the arena, or re-adopts them. On re-adopt,
    sealed objects whose index entries fit the arena are kept; allocated (unsealed) ones are
    aborted (their writer is gone); if the arena is missing or of another size, or the index
    cannot be read, the store is reset and a warning is logged naming the file and why.
    Returns 0, SHOAL_EINVAL (bad config), SHOAL_EIO (cannot create dir/arena; logged with
    the path and errno), SHOAL_ENOMEM. */
int shoal_store_open(const shoal_store_config_t *config, shoal_store_t **self_p);
/*  Flushes and closes; the arena file stays (a restarted worker re-adopts it). NULL-safe,
    sets *self_p to NULL. */
void shoal_store_close(shoal_store_t **self_p);
/*  Closes and removes the arena file and the index (shoal up, tests). */
void shoal_store_destroy(shoal_store_t **self_p);

const char *shoal_store_arena_path(const shoal_store_t *self);
/*  The arena file a store of this dir and name uses, without opening it (for cleaning up
    after a worker): /dev/shm/shoal-UID-NAME-HASH.arena, HASH from the absolute dir.
    0 or SHOAL_EINVAL (bad name, or the path does not fit in size). */
int shoal_store_arena_path_for(const char *dir, const char *name, char *buf, size_t size);
uint64_t shoal_store_capacity(const shoal_store_t *self);
uint64_t shoal_store_used(const shoal_store_t *self); /*  bytes reserved (page-rounded) */
size_t shoal_store_count(const shoal_store_t *self);  /*  objects in any state */
uint8_t *shoal_store_base(const shoal_store_t *self); /*  the arena mapping */

/*  Reserves size bytes for ref (size 0 is allowed: it takes no space). On success *obj
    describes the new ALLOCATED object; obj->data is writable. Returns 0, SHOAL_EEXIST (ref
    already in the store), SHOAL_ETOOBIG (size exceeds the whole arena), SHOAL_EFULL (no
    free range large enough now), SHOAL_ENOMEM. */
int shoal_store_alloc(shoal_store_t *self, shoal_ref_t ref, uint64_t size, shoal_store_obj_t *obj);
/*  ALLOCATED -> SEALED. 0, SHOAL_ENOTFOUND, SHOAL_ESTATE (already sealed). */
int shoal_store_seal(shoal_store_t *self, shoal_ref_t ref);
/*  Drops an ALLOCATED object and frees its space. 0, SHOAL_ENOTFOUND, SHOAL_ESTATE. */
int shoal_store_abort(shoal_store_t *self, shoal_ref_t ref);
/*  alloc + copy + seal. Same returns as alloc. */
int shoal_store_put(shoal_store_t *self, shoal_ref_t ref, const void *data, uint64_t size);
/*  Finds ref. 0 or SHOAL_ENOTFOUND. */
int shoal_store_lookup(shoal_store_t *self, shoal_ref_t ref, shoal_store_obj_t *obj);
/*  Deletes an object in any state and frees its space. 0 or SHOAL_ENOTFOUND. */
int shoal_store_delete(shoal_store_t *self, shoal_ref_t ref);
/*  Commits index changes since the last flush in one transaction. 0 or SHOAL_EIO (logged;
    the in-memory index stays right, the next flush tries again), SHOAL_EFULL (the LMDB
    map is full). */
int shoal_store_flush(shoal_store_t *self);
/*  Iterates over sealed objects: start with *cursor = 0; false at the end. */
bool shoal_store_next(const shoal_store_t *self, size_t *cursor, shoal_store_obj_t *obj);

/*  For processes that do not own the store (executors, same-host readers): maps the arena
    file at path, read-only, whole. *size_p receives its size. 0 or SHOAL_EIO. */
int shoal_arena_map(const char *path, void **base_p, uint64_t *size_p);
/*  Maps [offset, offset + size) of the arena file writable (offset page-aligned), so a
    stray write beyond an executor's own allocation faults instead of corrupting others.
    Unmap with shoal_arena_unmap(p, size). 0, SHOAL_EINVAL, SHOAL_EIO. */
int shoal_arena_map_range(const char *path, uint64_t offset, uint64_t size, void **p);
void shoal_arena_unmap(void *p, uint64_t size);

/*  ------------------------------------------------------------------------- testing only
    Not part of the store's API: hooks for tests/test_store.c. */

/*  Fault injection for fault sweeps (SQLite's habit). While shoal__store_fail_at is N > 0,
    every fallible step inside the store counts it down: each malloc/calloc/realloc, each
    system call that opens, sizes, locks or maps the arena, and each LMDB call that can fail
    (environment, transaction, put, del, drop, commit). The step that brings it to 0 fails
    as if out of memory (allocations) or with EIO (everything else); later steps run
    normally. A value still above 0 afterwards means the fault was never reached. 0, the
    default, disables injection. A plain global: one thread, tests only. */
extern int shoal__store_fail_at;

/*  The allocator's free list: returns the number of free ranges; *largest (optional)
    receives the largest free range and *total (optional) the sum of all of them, in bytes.
    With no allocation fragmenting the arena there is one range of shoal_store_capacity(). */
size_t shoal__store_free_ranges(const shoal_store_t *self, uint64_t *largest, uint64_t *total);

#endif
