/*  store.h: a worker's local object store, and zero-copy readers of it on the same host.

    Bytes live in an arena: one file in /dev/shm, mapped MAP_SHARED and pre-faulted
    (MAP_POPULATE) once, because page faults, not copies, dominate large writes on these
    machines (256 MiB: 40 ms into touched pages, 270 ms into fresh ones). The index lives
    in LMDB in the store directory (env "index.mdb"), keyed by the 16-byte ref. Next to the
    arena, a pin table (the arena's path with ".arena" replaced by ".pins") records which
    ranges same-host readers are viewing.

    One process owns a store: the worker. It alone allocates, seals, deletes and writes the
    index. Executors map the arena file (shoal_arena_map) and reach objects by offset; the
    worker tells them where. Other processes on the host (clients, executors) open a
    shoal_store_reader_t: it finds sealed objects through the index and pins them, so the
    owner neither frees nor reuses their space while they are viewed.

    Space: allocations are page-aligned (4096) so an executor can map just its own output
    writable. The allocator is first-fit over a free list ordered by offset, coalescing on
    free; it lives in the owner's memory and is rebuilt from the index on open.

    Index writes are batched: alloc/seal/delete change the in-memory index at once and
    mark it dirty; shoal_store_flush() commits everything dirty in ONE LMDB transaction
    (the worker calls it once per loop iteration, before it reports completions). The
    environment uses MDB_NOSYNC: the index survives a process kill, not a power cut.
    Readers see only what has been flushed.

    Object states: ALLOCATED (space reserved, being written) -> SEALED (immutable) <->
    SPILLED (bytes in the disk tier only; see "Disk tier" below).
    Freeing is deferred for objects readers may see: deleting an object whose SEALED record
    was flushed puts its range in "limbo", still counted in shoal_store_used(); it returns
    to the free list only after a flush has committed the delete to the index AND no pin
    covers it (checked at every flush that commits deletes, in shoal_store_tick, and by an
    alloc that finds no room). Aborting or deleting an object readers cannot have seen
    (never flushed as SEALED) frees its space at once, as before.

    Reset: when an existing store cannot be re-adopted (another capacity, an unreadable or
    foreign index), open gives it a NEW arena file (and pin table) instead of rewriting the
    old one in place, so readers that still map the old file keep intact bytes, and their
    next get fails with SHOAL_EIO. Until they close, the old file's RAM stays in use.

    Thread safety: the owner's calls: none; one thread uses a store. Readers: see below.
    Never use a store or a reader across fork(). */
#ifndef SHOAL_STORE_H_INCLUDED
#define SHOAL_STORE_H_INCLUDED

#include "shoal.h"

typedef struct shoal_store shoal_store_t;

/*  SPILLED: sealed, its bytes moved to the disk tier (see "Disk tier" below); no arena
    space, obj.data is NULL. Readers (shoal_store_reader_get) do not find it in the arena:
    they get SHOAL_ENOTFOUND and ask the owner (the worker serves it over its data socket). */
enum { SHOAL_OBJ_ALLOCATED = 1, SHOAL_OBJ_SEALED = 2, SHOAL_OBJ_SPILLED = 3 };

typedef struct {
    const char *dir;   /*  store directory (created 0700 if missing): the LMDB index */
    const char *name;  /*  arena name: see shoal_store_arena_path_for */
    uint64_t capacity; /*  arena bytes, rounded up to a page */
    /*  The disk tier: an LMDB environment "spill.mdb" in spill_dir (NULL: "DIR/spill"),
        which the store locks for itself (flock on "spill.owner": one store per directory).
        spill_size caps the bytes spilled under memory pressure (0: never spill);
        persisted copies are not counted in it: they are bounded by the disk and by the
        64 GiB of LMDB map reserved for them on top of it (past either: SHOAL_EFULL). */
    const char *spill_dir;
    uint64_t spill_size;
    /*  The largest object shoal_store_persist writes (0: SHOAL_STORE_PERSIST_MAX). */
    uint64_t persist_max;
} shoal_store_config_t;

typedef struct {
    shoal_ref_t ref;
    uint64_t offset; /*  in the arena, page-aligned */
    uint64_t size;   /*  the object's bytes (the reserved space is size rounded to a page) */
    int state;       /*  SHOAL_OBJ_* */
    bool persisted;  /*  a copy is in the disk tier for good (shoal_store_persist) */
    bool pending;    /*  sealed, its persist not done (shoal_store_persist_pending) */
    uint8_t *data;   /*  base + offset: borrowed, valid until the object is deleted/aborted */
} shoal_store_obj_t;

/*  Opens the store: creates the directory and the arena, or re-adopts them. On re-adopt,
    sealed objects whose index entries fit the arena are kept; allocated (unsealed) ones are
    aborted (their writer is gone); if the arena is missing or of another size, or the index
    cannot be read, the store is reset and a warning is logged naming the file and why.
    Returns 0, SHOAL_EINVAL (bad config), SHOAL_EIO (cannot create the dir, the arena, the
    index or the pin table; or another store holds the disk tier's directory, which one store
    locks for itself: logged naming the directory and the holder), SHOAL_ENOMEM. */
int shoal_store_open(const shoal_store_config_t *config, shoal_store_t **self_p);
/*  Flushes and closes; the arena file stays (a restarted worker re-adopts it). The pin
    table stays only while readers hold pins (so the next owner respects them); otherwise it
    is removed and readers' next get returns SHOAL_EIO (reopen once an owner is back; the
    views they hold stay valid). NULL-safe, sets *self_p to NULL. */
void shoal_store_close(shoal_store_t **self_p);
/*  Closes and removes the arena file, the pin table and the index (shoal up, tests).
    Readers still open keep the views they hold (their mappings keep the bytes); their
    next shoal_store_reader_get returns SHOAL_EIO. */
void shoal_store_destroy(shoal_store_t **self_p);

const char *shoal_store_arena_path(const shoal_store_t *self);
/*  The store directory, absolute (what shoal_store_reader_open takes as dir). */
const char *shoal_store_dir(const shoal_store_t *self);
/*  The arena file a store of this dir and name uses, without opening it (for cleaning up
    after a worker): /dev/shm/shoal-UID-NAME-HASH.arena, HASH from the absolute dir.
    0 or SHOAL_EINVAL (bad name, or the path does not fit in size). */
int shoal_store_arena_path_for(const char *dir, const char *name, char *buf, size_t size);
/*  The pin table that goes with the arena file at arena_path: the same path with ".arena"
    replaced by ".pins" (remove it with the arena when cleaning up after a worker).
    0 or SHOAL_EINVAL (arena_path does not end in ".arena", or the path does not fit). */
int shoal_store_pins_path_for(const char *arena_path, char *buf, size_t size);
uint64_t shoal_store_capacity(const shoal_store_t *self);
/*  Bytes not free: reserved by objects (page-rounded), plus deleted objects' ranges not
    given back yet (see shoal_store_pinned_pending). Always capacity minus the free list. */
uint64_t shoal_store_used(const shoal_store_t *self);
size_t shoal_store_count(const shoal_store_t *self);  /*  objects in any state */
uint8_t *shoal_store_base(const shoal_store_t *self); /*  the arena mapping */

/*  Reserves size bytes for ref (size 0 is allowed: it takes no space). On success *obj
    describes the new ALLOCATED object; obj->data is writable. When no free range is large
    enough and deleted objects wait in limbo, it first flushes (one LMDB commit) and gives
    back what no reader pins, then tries once more. Returns 0, SHOAL_EEXIST (ref already in
    the store), SHOAL_ETOOBIG (size exceeds the whole arena), SHOAL_EFULL (no free range
    large enough now), SHOAL_ENOMEM. */
int shoal_store_alloc(shoal_store_t *self, shoal_ref_t ref, uint64_t size, shoal_store_obj_t *obj);
/*  ALLOCATED -> SEALED. 0, SHOAL_ENOTFOUND, SHOAL_ESTATE (already sealed). */
int shoal_store_seal(shoal_store_t *self, shoal_ref_t ref);
/*  Drops an ALLOCATED object and frees its space at once (readers never see unsealed
    objects). 0, SHOAL_ENOTFOUND, SHOAL_ESTATE. */
int shoal_store_abort(shoal_store_t *self, shoal_ref_t ref);
/*  alloc + copy + seal. Same returns as alloc. */
int shoal_store_put(shoal_store_t *self, shoal_ref_t ref, const void *data, uint64_t size);
/*  Finds ref. 0 or SHOAL_ENOTFOUND. */
int shoal_store_lookup(shoal_store_t *self, shoal_ref_t ref, shoal_store_obj_t *obj);
/*  Deletes an object in any state. Its ref is gone at once (lookup, alloc of the same ref);
    its space is freed at once if readers cannot have seen it (never flushed as SEALED),
    otherwise it waits in limbo as described at the top. Never fails for lack of memory.
    0 or SHOAL_ENOTFOUND. */
int shoal_store_delete(shoal_store_t *self, shoal_ref_t ref);
/*  Commits index changes since the last flush in one transaction; then, if it committed
    deletes, gives back the deleted ranges no reader pins. 0 or SHOAL_EIO (logged; the
    in-memory index stays right, the next flush tries again), SHOAL_EFULL (the LMDB map is
    full). */
int shoal_store_flush(shoal_store_t *self);
/*  Iterates over sealed and spilled objects: start with *cursor = 0; false at the end. */
bool shoal_store_next(const shoal_store_t *self, size_t *cursor, shoal_store_obj_t *obj);
/*  Owner housekeeping; the worker calls it every loop turn. Cheap when there is nothing to
    do (a clock read and a few compares). While deleted objects wait in limbo, at most every
    10 ms: commits their deletes if no flush has (so an idle owner gets its space back too:
    this is the one place besides alloc where the store flushes by itself) and gives back
    the ranges no longer pinned. At most once a second, clears the pins of holders
    that died (a killed reader delays the reuse of what it pinned by about a second, never
    forever); at most every 10 s, clears LMDB reader slots of dead processes. */
void shoal_store_tick(shoal_store_t *self);
/*  Deleted objects' ranges not given back yet: pinned by a reader, or deleted since the
    last flush (for tests and stats). */
size_t shoal_store_pinned_pending(const shoal_store_t *self);

/*  ---------------------------------------------------------------- same-host readers

    A reader opens the store's index read-only and maps its arena read-only; a get looks a
    ref up and pins its range in the pin table (shared memory), so the view's bytes stay
    put however long it lives, even after the owner deletes the object, closes, restarts or
    resets. A pin whose holder dies is cleared by the owner within about a second.

    Costs: open maps the whole arena with MAP_POPULATE (a 1 GiB get then costs what a 1 KiB
    one does); a get is two short LMDB read transactions and two compare-and-swaps on the
    pin table, about a microsecond; a view costs one of 4096 pin slots per store.

    Caveats (LMDB's rules for environments):
    - never use a reader across fork(); open a new one in the child;
    - never open a reader in the process that owns the store, nor two readers of one store
      in one process: LMDB must not open one environment twice in a process (closing one
      drops the POSIX locks of the other). One reader per store per process, shared;
    - readers must run in the owner's PID namespace (pins name their holder by pid):
      open checks this where /proc tells;
    - no read transaction is held between calls, so readers never stall the owner's
      writes or make the index grow.

    Thread safety: gets on one reader may come from several threads (a mutex serializes
    them); views may be released from any thread; close must not race a get on the same
    reader. */
typedef struct shoal_store_reader shoal_store_reader_t;

typedef struct {
    const uint8_t *data; /*  size bytes, read-only: borrowed until shoal_store_view_release */
    uint64_t size;
    shoal_store_reader_t *reader_; /*  internal */
    uint32_t pin_;                 /*  internal: pin slot */
} shoal_store_view_t;

/*  Opens a reader of the store whose index lives in dir and whose arena file is arena_path
    (both as the owner reports them: shoal_store_dir(), shoal_store_arena_path()). Maps the
    arena read-only (whole, MAP_POPULATE), opens the index read-only, checks that the index
    describes this arena file (device, inode, capacity) and maps the pin table. *self_p is
    set only on success. Returns 0, SHOAL_EINVAL (a NULL argument, or arena_path does not
    end in ".arena"), SHOAL_ENOTFOUND (no such arena, pin table or index), SHOAL_EIO (cannot
    open or map a file, or a reader in another PID namespace; logged naming the path),
    SHOAL_ECORRUPT (the index or pin table does not describe this arena: damaged, or the
    owner is resetting the store right now, so a retry may succeed; logged), SHOAL_ENOMEM. */
int shoal_store_reader_open(const char *dir, const char *arena_path, shoal_store_reader_t **self_p);
/*  Finds ref; if it is SEALED in the index (as of the owner's last flush), pins it and fills
    *view; view->data points into the read-only arena mapping (writing through it faults).
    An empty object gives a valid pointer with size 0. *view is zeroed on failure. Returns 0,
    SHOAL_EINVAL (NULL argument), SHOAL_ENOTFOUND (not in the index: unknown, deleted, or
    not flushed yet), SHOAL_EAGAIN (allocated, not sealed yet), SHOAL_EFULL (no free pin
    slot: release views), SHOAL_EIO (the owner reset or destroyed the store since open, or
    the index cannot be read: close and reopen; views already held stay valid). */
int shoal_store_reader_get(shoal_store_reader_t *self, shoal_ref_t ref, shoal_store_view_t *view);
/*  For a writer on the host (a client writing a put in place through its own writable
    mapping): pins ref while it is ALLOCATED in the index, as shoal_store_reader_get pins a
    sealed object, so that if the owner aborts it meanwhile its range stays out of use until
    the view is released (or the writer dies). view->data is the read-only view of the
    range. Returns as shoal_store_reader_get, except SHOAL_ESTATE (sealed already) instead
    of SHOAL_EAGAIN. */
int shoal_store_reader_pin_writing(shoal_store_reader_t *self, shoal_ref_t ref,
                                   shoal_store_view_t *view);
/*  Unpins the view and zeroes it. NULL-safe, idempotent (a zeroed view is a no-op), callable
    from any thread. The last release after shoal_store_reader_close frees the reader. */
void shoal_store_view_release(shoal_store_view_t *view);
/*  Drops the opener's reference and nulls *self_p: the reader (its mappings, pin table and
    index handle) lives on until the last of its views is released. NULL-safe. */
void shoal_store_reader_close(shoal_store_reader_t **self_p);
/*  Views of this reader not yet released (a reader whose store was reset may be closed and
    a new one opened on the same index only once this is 0: two LMDB environments of one
    file in one process clear each other's reader slots when one closes). Before close. */
size_t shoal_store_reader_views(shoal_store_reader_t *self);

/*  For processes that do not own the store (executors, same-host readers): maps the arena
    file at path, read-only, whole. *size_p receives its size. 0 or SHOAL_EIO. */
int shoal_arena_map(const char *path, void **base_p, uint64_t *size_p);
/*  Maps [offset, offset + size) of the arena file writable (offset page-aligned), so a
    stray write beyond an executor's own allocation faults instead of corrupting others.
    Unmap with shoal_arena_unmap(p, size). 0, SHOAL_EINVAL, SHOAL_EIO. */
int shoal_arena_map_range(const char *path, uint64_t offset, uint64_t size, void **p);
/*  shoal_arena_map_range for a process that is not the owner's child (a client writing a
    put): maps only if the file at path is still the arena of device dev and inode ino, as
    the worker reported it (a restarted worker renames a new arena over the same path), and
    checks that on the descriptor it maps from. size UINT64_MAX maps from offset to the end;
    *mapped_p (optional) receives the bytes mapped (unmap with shoal_arena_unmap(p, them)).
    0, SHOAL_ENOTFOUND (no such file, or another file now), SHOAL_EINVAL, SHOAL_EIO. */
int shoal_arena_map_checked(const char *path, uint64_t dev, uint64_t ino, uint64_t offset,
                            uint64_t size, void **p, uint64_t *mapped_p);
void shoal_arena_unmap(void *p, uint64_t size);

/*  --------------------------------------------------------------------------- disk tier

    Every store has a disk tier: an LMDB environment whose values are pieces of
    SHOAL_STORE_PIECE bytes keyed by (ref, piece number), so no value needs a long
    contiguous run of LMDB pages, plus one small record per object written with its last
    piece. Its commits are synced (fdatasync), unlike the index's: what is on disk survives
    a power cut, and on open every complete object on disk that the index does not hold in
    the arena (the arena was lost, the index reset) is re-adopted as SPILLED. Each piece
    carries a checksum, checked when it is read (SHOAL_ECORRUPT, never wrong bytes); a file
    shorter than the pages LMDB says it uses (truncated) is started afresh at open, with a
    warning naming it, like one LMDB cannot read.

    Spill: when the arena is full, the owner moves sealed objects to disk. Incremental:
    each shoal_store_spill call writes at most `budget` bytes in one transaction, so the
    owner's loop stays responsive; an object's arena range is released (to limbo, as a
    delete: readers that pin it keep their bytes) only once all its pieces are committed.
    Victims: sealed, non-empty, not pinned by a reader, not refused by the owner's skip
    hook, least recently used first (alloc, lookup and restore count as uses), and fitting
    in what is left of spill_size (a persisted object is on disk already: it costs
    nothing). A spilled object is read in place (shoal_store_read, for the data socket) or
    restored into the arena (shoal_store_restore, for executors, which read the arena).

    Persist: shoal_store_persist writes a sealed object's copy to disk for good (until it
    is deleted), synced; the next flush also syncs the index. Deleting an object deletes
    its copy. */
#define SHOAL_STORE_PIECE (1024 * 1024)

/*  The owner's say in a spill (all optional). skip is asked about each candidate: true
    leaves it in the arena (an object the owner's tasks are reading). spilled is told of
    each object whose spill completed (now SHOAL_OBJ_SPILLED). */
typedef struct {
    bool (*skip)(void *arg, shoal_ref_t ref);
    void (*spilled)(void *arg, shoal_ref_t ref, uint64_t size);
    void *arg;
} shoal_store_spill_hooks_t;

/*  Spills at most budget bytes (rounded up to whole pieces) of the least recently used
    eligible object, finishing at most one object per call (call again for more: an object
    half written stays in the arena, and the next call goes on with it). hooks may be
    NULL. *freed_p (optional) receives the arena bytes
    released by objects whose spill completed in this call. Returns 0 (some work done; call
    again while more room is needed), SHOAL_EFULL (nothing can be spilled: no disk tier, no
    eligible object, none fits in the disk tier's remaining room, or the disk itself is
    full: MDB_MAP_FULL), SHOAL_EIO (logged; pieces written by this call are dropped),
    SHOAL_ENOMEM. */
int shoal_store_spill(shoal_store_t *self, uint64_t budget, const shoal_store_spill_hooks_t *hooks,
                      uint64_t *freed_p);
/*  Copies [offset, offset + size) of a SPILLED object's bytes into dst. 0, SHOAL_ENOTFOUND,
    SHOAL_ESTATE (not spilled: read the arena), SHOAL_EINVAL (range beyond the object),
    SHOAL_ECORRUPT (a piece is missing, of the wrong size, or does not match its checksum:
    logged naming the object and the file; dst holds garbage), SHOAL_EIO. */
int shoal_store_read(shoal_store_t *self, shoal_ref_t ref, uint64_t offset, uint64_t size,
                     void *dst);
/*  Brings a SPILLED object back into the arena (SEALED again, at a new offset, which *obj
    (optional) describes). Its pieces (unless persisted) are dropped once the next index
    commit (shoal_store_flush) records the restore, so a kill in between finds it still
    spilled; its disk room counts as free at once. Synchronous: about 1 ms per MiB when the
    pieces are in the page cache. 0, SHOAL_ENOTFOUND, SHOAL_ESTATE (not spilled),
    SHOAL_EFULL (no arena range large enough now: spill others first), SHOAL_ECORRUPT,
    SHOAL_EIO, SHOAL_ENOMEM. */
int shoal_store_restore(shoal_store_t *self, shoal_ref_t ref, shoal_store_obj_t *obj);
/*  The largest object a store persists by default: no limit. The owner persists in steps
    (shoal_store_persist_step), so a large object does not stall its loop; persist_max
    remains for a store that wants a cap (SHOAL_ETOOBIG above it). */
#define SHOAL_STORE_PERSIST_MAX UINT64_MAX

/*  Writes a copy of ref (SEALED or SPILLED) to the disk tier for good, synced, and marks it
    persisted (obj.persisted; the next shoal_store_flush syncs the index too), in one call:
    shoal_store_persist_step until done, 8 MiB per synced commit (so the memory a
    transaction holds stays bounded), its record with the last: about the cost of writing
    its bytes plus one fdatasync per 8 MiB, about 1 s per GiB here. Idempotent. 0,
    SHOAL_ENOTFOUND, SHOAL_ESTATE (not sealed yet), SHOAL_ETOOBIG (sealed, larger than
    shoal_store_persist_max; logged), SHOAL_EFULL (the disk is full: ENOSPC, or the tier's
    map; nothing changed), SHOAL_EIO (logged; nothing changed). */
int shoal_store_persist(shoal_store_t *self, shoal_ref_t ref);
/*  One step of a persist: commits (synced) at most budget bytes (rounded up to whole
    pieces) of ref's disk copy, the record with the last piece, then syncs the meta page.
    *done_p is the caller's cursor: 0 to start, kept between calls (a call on an object
    with no persist in progress starts over, whatever it holds). Between steps the object
    is not spilled, and deleting it drops the pieces written so far. Returns 0 when the
    copy is complete and synced (the object is persisted; at once when it already was),
    SHOAL_EAGAIN when more steps remain, or the codes of shoal_store_persist (the pieces
    written so far are dropped then). */
int shoal_store_persist_step(shoal_store_t *self, shoal_ref_t ref, uint64_t budget,
                             uint64_t *done_p);
/*  Marks a sealed object as waiting for its persist (shoal_store_persist_step): until the
    persist completes, the index records it as ALLOCATED, so a restart (a kill mid-persist)
    drops it rather than re-adopting as sealed an object whose copy never reached the disk;
    it is not spilled meanwhile. A no-op when it is persisted already. 0, SHOAL_ENOTFOUND,
    SHOAL_ESTATE (not SEALED). */
int shoal_store_persist_pending(shoal_store_t *self, shoal_ref_t ref);
/*  The largest object shoal_store_persist writes (config persist_max). */
uint64_t shoal_store_persist_max(const shoal_store_t *self);
/*  Bytes of spilled objects in the disk tier (including one being spilled), and its cap
    (spill_size); bytes of persisted copies. A deleted object's bytes count until its delete
    from the disk tier is committed (before the next index commit or disk-tier write: the
    next shoal_store_flush; a failed one is tried again at the next). */
uint64_t shoal_store_spill_used(const shoal_store_t *self);
uint64_t shoal_store_persist_used(const shoal_store_t *self);
uint64_t shoal_store_spill_capacity(const shoal_store_t *self);
/*  The disk tier's file. */
const char *shoal_store_spill_path(const shoal_store_t *self);

/*  ------------------------------------------------------------------------- testing only
    Not part of the store's API: hooks for tests/test_store.c. */

/*  Fault injection for fault sweeps (SQLite's habit). While shoal__store_fail_at is N > 0,
    every fallible step inside the store counts it down: each malloc/calloc/realloc, each
    system call that opens, sizes, locks or maps the arena, and each LMDB call that can fail
    (environment, transaction, put, del, drop, commit, get in a reader), and the same for
    the pin table and for shoal_store_reader_open/get. The step that brings it to 0 fails
    as if out of memory (allocations) or with EIO (everything else); later steps run
    normally. A value still above 0 afterwards means the fault was never reached. 0, the
    default, disables injection. A plain global: one thread, tests only. */
extern int shoal__store_fail_at;

/*  When set, shoal_store_reader_get calls it with shoal__store_reader_hook_arg between its
    look-up and its pin: a test runs the owner inside that window. NULL, the default, for
    none. Plain globals: tests only. */
extern void (*shoal__store_reader_hook)(void *arg);
extern void *shoal__store_reader_hook_arg;

/*  Pin slots taken right now (by any reader, live or dead, or being claimed). */
size_t shoal__store_pins_held(const shoal_store_t *self);

/*  The allocator's free list: returns the number of free ranges; *largest (optional)
    receives the largest free range and *total (optional) the sum of all of them, in bytes.
    With no allocation fragmenting the arena there is one range of shoal_store_capacity(). */
size_t shoal__store_free_ranges(const shoal_store_t *self, uint64_t *largest, uint64_t *total);

#endif
