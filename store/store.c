/*  store.c: the arena (object bytes in /dev/shm), its first-fit allocator, the LMDB index.

    Three structures live in the owner's memory and change together on alloc/seal/delete:
    - the object map (ref -> s_entry_t),
    - the free list: a sorted array of free ranges, coalesced, first fit,
    - the dirty list: refs changed since the last flush; shoal_store_flush writes the
      current state of each one in a single LMDB write transaction.
    None of these calls touches LMDB, and delete/abort/seal cannot fail: shoal_store_alloc
    reserves beforehand every slot they might need in the free list and the dirty list.

    On-disk index format (same-host readers depend on it; it never leaves the host, so it
    is in host byte order):
    - key: 16 bytes, ref.hi then ref.lo, both big-endian, so keys sort by client then
      counter; value: s_record_t (32 bytes).
    - key "meta" (4 bytes): s_meta_t, which ties the index to one arena file (capacity,
      device and inode). Readers skip keys that are not 16 bytes long.

    Same-host readers and the pin table. A reader maps the arena read-only and opens the
    index read-only; to view an object it pins the object's range in the pin table, a file
    next to the arena (s_pins_header_t + S_PIN_SLOTS s_pin_t, shared memory). The owner
    never hands out space a reader may be viewing:
    - deleting (or aborting) an object whose record was committed (entry->published) does
      not free its range: the range goes to the limbo list, still counted as used;
    - a limbo range returns to the free list only when (a) a flush has committed the delete
      (limbo_safe counts those entries) and (b) a scan of the pin table, made after that
      commit, finds no pin covering it (a slot still being claimed covers nothing: its claimer
   validates after our commit);
    - a reader (1) looks the ref up in a read transaction, (2) claims a slot and publishes
      its pin with a sequentially consistent CAS, (3) looks the ref up again in a fresh read
      transaction and gives up unless it is still SEALED at the same offset. A writer on
      the host (a client writing its put in place) pins its ALLOCATED object the same way
      (shoal_store_reader_pin_writing), so a put aborted under it keeps its range until
      the writer lets go or dies: its late writes never land in another object.
    Why that suffices: take a pin P on the range of object X that passed (3), and an owner
    scan S after the commit C that deleted X. Both sides order a store before a load with a
    seq_cst fence (the reader: publish P, then read the index; the owner: commit C, then read
    the slot), so either S sees P (and keeps the range) or (3) starts after C and does not
    find X (and the reader gives up). A pin that S misses was therefore either released or
    never validated. Deleting an object that was never committed frees at once: no reader
    or writer can have found it, since they only see committed index states.

    Dead holders: a pin names its holder by pid and start time (/proc/PID/stat field 22, so
    a reused pid is not mistaken for the holder). Holders are checked at most once a second
    (kill(pid, 0), then /proc: gone, zombie, or another start time means dead) and their
    slots cleared by CAS, so a killed reader delays the reuse of a range by about a second.

    Resets never rewrite an arena in place: the store gets a new arena file (rename over the
    old path) and a new pin table, and the old table is marked retired; old readers keep
    intact bytes and their next get fails. Re-adopting keeps the pin table: live pins on
    ranges the index no longer holds (deleted before the owner died, still pinned) go back
    to limbo instead of the free list. */
#include "store.h"

#include "common.h"
#include "refmap.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

//  Allocations are page-aligned so an executor can map exactly its own output writable.
//  4096 is the page on every machine we target (x86-64, and arm64 with 4K pages).
#define S_PAGE 4096ull
//  1 TiB: far beyond RAM here, and keeps offset + size arithmetic far from overflow.
#define S_MAX_CAPACITY (1ull << 40)
//  The LMDB map is sparse (no MDB_WRITEMAP, so the file grows only as pages are used).
//  At about 100 bytes per object including B-tree overhead, 1 GiB indexes ~10M objects.
#define S_MAPSIZE      (1ull << 30)
#define S_META_KEY     "meta"
#define S_MAX_READERS  1024
#define S_META_MAGIC   "shoalidx"
#define S_META_VERSION 1u

//  Pin table. 4096 slots: a slot is one live view on this host (a client's get, an
//  executor's input); 4096 is 64 executors with 64 inputs each, far above 2-core hosts'
//  needs, and the table stays 256 KiB, which the owner scans in ~10 us when deleted objects
//  wait for their pins. 64-byte slots: one cache line each, so readers in different
//  processes never write the same line.
#define S_PINS_MAGIC   "shoalpin"
#define S_PINS_VERSION 1u
#define S_PIN_SLOTS    4096u
#define S_PINS_MAX     (1u << 20) //  a sanity bound on a table's slot count, when reading one
//  holder: 0 free; else pid (bits 0-31) | start-time tag (bits 32-62: start time modulo
//  2^31 clock ticks, 0 if unknown) | S_PIN_CLAIMING while the slot is being filled. The
//  tag makes the value itself name one process, even while claiming.
#define S_PIN_CLAIMING (1ull << 63)
#define S_PIN_NONE     UINT32_MAX //  view->pin_ of an empty object: nothing pinned
//  Owner housekeeping periods: limbo re-scans while something stays pinned (a tick is a
//  worker loop turn, far more often); dead-holder checks (each reads /proc); LMDB's stale
//  reader slots (mdb_reader_check walks the reader table).
#define S_REAP_MS         10
#define S_DEAD_CHECK_MS   1000
#define S_READER_CHECK_MS 10000

//  One index record. 32 bytes, so a leaf entry (8-byte node header, 16-byte key, 2-byte
//  slot) is 58 bytes: about 70 objects per 4 KiB LMDB page.
typedef struct {
    uint64_t offset;
    uint64_t size;
    uint32_t state;
    uint32_t reserved; //  S_REC_PERSISTED (informational: the disk tier's record decides)
    int64_t created_us;
} s_record_t;
#define S_REC_PERSISTED 1u

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t page;
    uint64_t capacity;
    uint64_t arena_dev;
    uint64_t arena_ino;
} s_meta_t;

typedef struct {
    uint64_t offset;
    uint64_t size;
    int64_t created_us;
    uint64_t seq; //  the store's use counter at its last use: least recent spills first
    int state;
    bool dirty;      //  its ref is in the dirty list
    bool published;  //  committed to the index: readers (sealed) or writers may pin it
    bool persisted;  //  a complete copy is in the disk tier for good (until deleted)
    bool sums;       //  its pieces in the disk tier carry a checksum (S_DISK_SUMMED)
    bool persisting; //  shoal_store_persist_step has committed some of its pieces: no spill
    //  Sealed, its persist not done yet (shoal_store_persist_pending): the index says
    //  ALLOCATED, so a restart drops it instead of re-adopting what never reached the disk.
    bool pending;
} s_entry_t;

typedef struct {
    uint64_t offset;
    uint64_t length;
} s_range_t;

//  A delete from the disk tier waiting for its commit (s_disk_drops_commit).
typedef struct {
    shoal_ref_t ref;
    uint64_t size;  //  given back to persist_used or spill_used once committed
    bool persisted; //  which of them
} s_drop_t;

//  The pin table's header: 64 bytes, so the slots after it are cache-line aligned.
typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t nslots;
    uint32_t slot_size;
    _Atomic uint32_t retired; //  set when the store is destroyed or reset: readers reopen
    uint64_t arena_dev;       //  the arena file this table belongs to
    uint64_t arena_ino;
    uint64_t pidns; //  inode of the owner's PID namespace (0: unknown)
    uint64_t reserved[2];
} s_pins_header_t;

typedef struct {
    _Atomic uint64_t holder; //  see S_PIN_CLAIMING
    _Atomic uint64_t start;  //  the holder's start time, whole (for diagnostics)
    _Atomic uint64_t offset; //  the pinned range: [offset, offset + size rounded to a page)
    _Atomic uint64_t size;
    _Atomic uint64_t ref_hi;
    _Atomic uint64_t ref_lo;
    uint64_t reserved[2];
} s_pin_t;

_Static_assert(sizeof(s_pins_header_t) == 64, "pin table header is one cache line");
_Static_assert(sizeof(s_pin_t) == 64, "a pin slot is one cache line");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "atomics in shared memory must be lock-free");

//  A pinned range as the owner's scan sees it.
typedef struct {
    uint64_t start;
    uint64_t end; //  after sorting: the largest end among this and all earlier pins
} s_span_t;

struct shoal_store {
    char arena_path[PATH_MAX];
    char index_path[PATH_MAX];
    char lock_path[PATH_MAX];
    uint64_t capacity;
    int arena_fd;       //  kept open: it carries the flock that makes us the only owner
    bool arena_created; //  by this open: removed again if the open fails
    bool arena_fresh;   //  created or replaced by this open: no reader can have mapped it
    bool pins_created;  //  by this open: removed again if the open fails
    uint64_t arena_dev;
    uint64_t arena_ino;
    uint8_t *base;
    char dir[PATH_MAX]; //  absolute
    char pins_path[PATH_MAX];
    s_pins_header_t *pins; //  the pin table, mapped read-write
    s_pin_t *slots;
    s_span_t *spans; //  S_PIN_SLOTS: scratch for pin scans
    uint64_t *ids;   //  S_PIN_SLOTS: scratch for dead-holder checks
    MDB_env *env;
    MDB_dbi dbi;
    shoal__refmap_t *map; //  ref -> s_entry_t *

    //  Free list, sorted by offset, no two ranges adjacent: the ranges are the gaps
    //  between occupied extents (spaced objects and limbo ranges), so there are never more
    //  than spaced + limbo_len + 1 of them. Only alloc (and open) adds extents, and it keeps
    //  free_cap >= spaced + limbo_len + 1 afterwards, hence a free never allocates.
    s_range_t *free;
    size_t free_len;
    size_t free_cap;
    size_t spaced; //  objects that take space (size > 0)
    uint64_t used; //  bytes not free: objects' (page-rounded) and limbo ranges'

    //  Limbo: ranges of deleted objects that readers may still view, in the order deleted.
    //  The first limbo_safe were deleted before the last successful commit; only those may
    //  be given back. limbo_cap >= limbo_len + spaced always, so delete never allocates.
    s_range_t *limbo;
    size_t limbo_len;
    size_t limbo_cap;
    size_t limbo_safe;
    int64_t next_reap_ms;         //  tick: next limbo scan while some stay pinned
    int64_t next_dead_ms;         //  next dead-holder check
    int64_t next_reader_check_ms; //  next mdb_reader_check

    //  Dirty list. May hold a ref twice (deleted and allocated again between flushes) or a
    //  ref no longer in the map (deleted): flush writes whatever the map says now.
    //  dirty_cap >= dirty_len + clean always, so marking a clean entry dirty never
    //  allocates.
    shoal_ref_t *dirty;
    size_t dirty_len;
    size_t dirty_cap;
    size_t clean; //  entries in the map whose ref is not in the dirty list

    uint64_t seq; //  use counter (alloc, lookup, restore): the spill's LRU order

    //  Disk tier (see store.h). spill_used counts the bytes of spilled objects plus the
    //  whole size of the one being spilled (reserved when its spill starts).
    MDB_env *spill_env;
    MDB_dbi spill_dbi;
    int spill_lock_fd; //  carries the flock that makes us the only store using spill_dir
    char spill_lock_path[PATH_MAX];
    shoal__refmap_t *disk; //  while opening: ref -> s_disk_t, what the disk tier holds
    uint64_t persist_used; //  bytes of persisted objects' copies (not counted in spill_used)
    bool sync_index;       //  a persisted object's record awaits a synced index commit
    //  Deleted objects whose disk pieces and record go in one commit (s_disk_drops_commit)
    //  before the next index commit or disk-tier write, not one synced commit each; kept,
    //  and their bytes still counted, until that commit succeeds.
    s_drop_t *disk_drops;
    size_t n_disk_drops, cap_disk_drops;
    char spill_path[PATH_MAX];
    uint64_t spill_cap;
    uint64_t spill_used;
    uint64_t persist_max; //  the largest object shoal_store_persist writes
    bool job;             //  an object is being spilled: job_ref, job_done bytes written so far
    shoal_ref_t job_ref;
    uint64_t job_offset; //  its arena offset when the spill started (changes = another object)
    uint64_t job_done;
    //  Restored objects whose pieces go once the index commit that records the restore is
    //  done: dropped sooner, a kill before that commit would leave an index saying SPILLED
    //  and nothing on disk. Their disk room is given back at the restore.
    shoal_ref_t *restored;
    size_t restored_len;
    size_t restored_cap;
};

//  --------------------------------------------------------------------- fault injection

int shoal__store_fail_at = 0;
void (*shoal__store_reader_hook)(void *arg) = NULL;
void *shoal__store_reader_hook_arg = NULL;

static bool s_fault(void)
{
    return shoal__store_fail_at > 0 && --shoal__store_fail_at == 0;
}

static void *s_malloc(size_t size)
{
    return s_fault() ? NULL : malloc(size);
}

static void *s_calloc(size_t n, size_t size)
{
    return s_fault() ? NULL : calloc(n, size);
}

static void *s_realloc(void *p, size_t size)
{
    return s_fault() ? NULL : realloc(p, size);
}

//  An LMDB call that may fail, or an injected EIO in its place (the call is not made).
#define S_MDB(call) (s_fault() ? EIO : (call))
//  A system call returning -1 and errno on failure, or an injected EIO.
#define S_SYS(call) (s_fault() ? (errno = EIO, -1) : (call))

//  ------------------------------------------------------------------------------ helpers

static inline uint64_t s_page_round(uint64_t size)
{
    return (size + S_PAGE - 1) & ~(S_PAGE - 1);
}

static void s_key_encode(shoal_ref_t ref, uint8_t key[16])
{
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(ref.hi >> (56 - 8 * i));
        key[8 + i] = (uint8_t)(ref.lo >> (56 - 8 * i));
    }
}

static shoal_ref_t s_key_decode(const uint8_t *key)
{
    shoal_ref_t ref = {0, 0};
    for (int i = 0; i < 8; i++) {
        ref.hi = (ref.hi << 8) | key[i];
        ref.lo = (ref.lo << 8) | key[8 + i];
    }
    return ref;
}

//  LMDB codes that mean the file is not a usable index (as opposed to ENOMEM, EACCES...).
static bool s_mdb_is_corrupt(int rc)
{
    return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
           rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE;
}

static void s_fill_obj(const shoal_store_t *self, shoal_ref_t ref, const s_entry_t *entry,
                       shoal_store_obj_t *obj)
{
    obj->ref = ref;
    obj->offset = entry->offset;
    obj->size = entry->size;
    obj->state = entry->state;
    obj->persisted = entry->persisted;
    obj->pending = entry->pending;
    obj->data = entry->state == SHOAL_OBJ_SPILLED ? NULL : self->base + entry->offset;
}

//  ---------------------------------------------------------------------------- allocator

//  Grows *array (of elem-byte items, *cap of them) to hold at least need: capacities
//  double from 64, so reserving ahead stays cheap. 0 or SHOAL_ENOMEM (array unchanged).
static int s_reserve(void **array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *grown = s_realloc(*array, n * elem);
    if (!grown)
        return SHOAL_ENOMEM;
    *array = grown;
    *cap = n;
    return 0;
}

static int s_free_reserve(shoal_store_t *self, size_t need)
{
    void *array = self->free;
    int rc = s_reserve(&array, &self->free_cap, need, sizeof *self->free);
    self->free = array;
    return rc;
}

static int s_limbo_reserve(shoal_store_t *self, size_t need)
{
    void *array = self->limbo;
    int rc = s_reserve(&array, &self->limbo_cap, need, sizeof *self->limbo);
    self->limbo = array;
    return rc;
}

//  First fit: the lowest free range that is large enough. Linear in the number of free
//  ranges, which coalescing keeps far below the number of objects (268 at most over 20,000
//  mixed operations in test_store); even 15,000 one-page holes cost ~30 us an allocation.
static bool s_free_take(shoal_store_t *self, uint64_t length, uint64_t *offset)
{
    for (size_t i = 0; i < self->free_len; i++) {
        s_range_t *r = &self->free[i];
        if (r->length < length)
            continue;
        *offset = r->offset;
        r->offset += length;
        r->length -= length;
        if (r->length == 0) {
            memmove(r, r + 1, (self->free_len - i - 1) * sizeof *r);
            self->free_len--;
        }
        return true;
    }
    return false;
}

//  Returns [offset, offset + length) to the free list, merging with its neighbours.
static void s_free_give(shoal_store_t *self, uint64_t offset, uint64_t length)
{
    //  Binary search: i = the first range that starts after offset.
    size_t lo = 0, hi = self->free_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->free[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t i = lo;
    s_range_t *prev = i > 0 ? &self->free[i - 1] : NULL;
    s_range_t *next = i < self->free_len ? &self->free[i] : NULL;
    assert(!prev || prev->offset + prev->length <= offset);
    assert(!next || offset + length <= next->offset);
    bool join_prev = prev && prev->offset + prev->length == offset;
    bool join_next = next && offset + length == next->offset;
    if (join_prev && join_next) {
        prev->length += length + next->length;
        memmove(next, next + 1, (self->free_len - i - 1) * sizeof *next);
        self->free_len--;
    } else if (join_prev)
        prev->length += length;
    else if (join_next) {
        next->offset = offset;
        next->length += length;
    } else {
        assert(self->free_len < self->free_cap); //  reserved by alloc
        memmove(&self->free[i + 1], &self->free[i], (self->free_len - i) * sizeof *self->free);
        self->free[i].offset = offset;
        self->free[i].length = length;
        self->free_len++;
    }
}

size_t shoal__store_free_ranges(const shoal_store_t *self, uint64_t *largest, uint64_t *total)
{
    uint64_t max = 0, sum = 0;
    for (size_t i = 0; i < self->free_len; i++) {
        max = SHOAL__MAX(max, self->free[i].length);
        sum += self->free[i].length;
    }
    if (largest)
        *largest = max;
    if (total)
        *total = sum;
    return self->free_len;
}

//  ------------------------------------------------------------------------ dirty tracking

static int s_dirty_reserve(shoal_store_t *self, size_t need)
{
    void *array = self->dirty;
    int rc = s_reserve(&array, &self->dirty_cap, need, sizeof *self->dirty);
    self->dirty = array;
    return rc;
}

//  Never allocates: see the invariant on dirty_cap.
static void s_mark_dirty(shoal_store_t *self, shoal_ref_t ref, s_entry_t *entry)
{
    if (entry->dirty)
        return;
    assert(self->dirty_len < self->dirty_cap && self->clean > 0);
    self->dirty[self->dirty_len++] = ref;
    entry->dirty = true;
    self->clean--;
}

//  ------------------------------------------------------------------------------- arena

//  Sizes the arena file fd to the capacity (when resize), claims its pages and maps it at
//  self->base. 0 or SHOAL_EIO (logged).
static int s_arena_size_map(shoal_store_t *self, int fd, const char *path, bool resize)
{
    if (resize && S_SYS(ftruncate(fd, (off_t)self->capacity)) != 0) {
        shoal__error("store: cannot size arena %s to %llu bytes: %s", path,
                     (unsigned long long)self->capacity, strerror(errno));
        return SHOAL_EIO;
    }
    //  Claim the tmpfs pages now: a full /dev/shm then fails here with ENOSPC instead of
    //  a SIGBUS on some later write (or the OOM killer). Cheap for pages already there.
    if (S_SYS(fallocate(fd, 0, 0, (off_t)self->capacity)) != 0 && errno != EOPNOTSUPP &&
        errno != ENOSYS) {
        shoal__error("store: cannot reserve %llu bytes for arena %s: %s",
                     (unsigned long long)self->capacity, path, strerror(errno));
        return SHOAL_EIO;
    }
    //  Pre-fault once (MAP_POPULATE): 256 MiB take ~40 ms to fill when mapped and touched
    //  against ~270 ms through fresh page faults.
    void *base = s_fault() ? (errno = EIO, MAP_FAILED)
                           : mmap(NULL, self->capacity, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        shoal__error("store: cannot map arena %s (%llu bytes): %s", path,
                     (unsigned long long)self->capacity, strerror(errno));
        return SHOAL_EIO;
    }
    self->base = base;
    return 0;
}

//  Gives the store a new, empty arena file in place of the current one, whose old bytes
//  may still be mapped and pinned by readers: they keep that inode (and its bytes) until
//  they unmap it. The new file is made complete under a temporary name, locked, then
//  renamed over the arena path, so nobody ever opens a half-made arena. 0 or SHOAL_EIO
//  (logged; the store keeps its current arena).
static int s_arena_replace(shoal_store_t *self)
{
    char tmp[PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.new", self->arena_path) >= (int)sizeof tmp)
        return SHOAL_EIO;
    //  A leftover of an open that died right here: the name is ours (uid, name, dir hash).
    if (unlink(tmp) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", tmp, strerror(errno));
    int fd = S_SYS(open(tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_CREAT | O_EXCL, 0600));
    if (fd < 0) {
        shoal__error("store: cannot create arena %s: %s", tmp, strerror(errno));
        return SHOAL_EIO;
    }
    uint8_t *old_base = self->base;
    self->base = NULL;
    struct stat st;
    int rc = SHOAL_EIO;
    if (S_SYS(flock(fd, LOCK_EX | LOCK_NB)) != 0 || S_SYS(fstat(fd, &st)) != 0)
        shoal__error("store: cannot lock arena %s: %s", tmp, strerror(errno));
    else
        rc = s_arena_size_map(self, fd, tmp, true);
    if (rc == 0 && S_SYS(rename(tmp, self->arena_path)) != 0) {
        shoal__error("store: cannot rename %s to %s: %s", tmp, self->arena_path, strerror(errno));
        munmap(self->base, self->capacity);
        rc = SHOAL_EIO;
    }
    if (rc) {
        close(fd);
        unlink(tmp);
        self->base = old_base;
        return rc;
    }
    if (old_base)
        munmap(old_base, self->capacity);
    close(self->arena_fd); //  drops the lock on the old inode, which no path names now
    self->arena_fd = fd;
    self->arena_dev = (uint64_t)st.st_dev;
    self->arena_ino = (uint64_t)st.st_ino;
    //  If the open fails later, remove it: an arena nobody owns is RAM.
    self->arena_created = true;
    self->arena_fresh = true;
    shoal__info("store: gave the store a new arena %s; readers of the old one keep their "
                "views until they release them",
                self->arena_path);
    return 0;
}

//  Opens (or creates) the arena file, locks it, sizes and maps it. *why is set when the
//  arena's previous contents cannot be trusted, so the index must be reset.
static int s_arena_open(shoal_store_t *self, const char **why)
{
    //  O_NOFOLLOW: /dev/shm is world-writable; never follow someone else's symlink.
    //  O_EXCL first, to know whether this open created the file.
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
    struct stat st;
    //  A few tries: the file we lock must still be the one the path names (an owner that
    //  destroys or replaces the arena unlinks or renames it while holding the lock).
    for (int attempt = 0;; attempt++) {
        int fd = S_SYS(open(self->arena_path, flags | O_CREAT | O_EXCL, 0600));
        if (fd >= 0)
            self->arena_created = true;
        else if (errno == EEXIST)
            fd = S_SYS(open(self->arena_path, flags));
        if (fd < 0) {
            shoal__error("store: cannot open arena %s: %s", self->arena_path, strerror(errno));
            return SHOAL_EIO;
        }
        self->arena_fd = fd;
        //  One owner per store: a second worker with the same name would hand out the same
        //  bytes twice. The lock dies with the process, so a crash never leaves it stale.
        if (S_SYS(flock(fd, LOCK_EX | LOCK_NB)) != 0) {
            if (errno == EWOULDBLOCK)
                self->arena_created = false; //  raced with its owner: the file is theirs
            shoal__error("store: cannot lock arena %s: %s", self->arena_path,
                         errno == EWOULDBLOCK ? "another process owns this store"
                                              : strerror(errno));
            return SHOAL_EIO;
        }
        if (S_SYS(fstat(fd, &st)) != 0) {
            shoal__error("store: cannot stat arena %s: %s", self->arena_path, strerror(errno));
            return SHOAL_EIO;
        }
        struct stat now;
        if (stat(self->arena_path, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
            break;
        close(fd);
        self->arena_fd = -1;
        self->arena_created = false;
        if (attempt == 3) {
            shoal__error("store: arena %s keeps being replaced while opening it", self->arena_path);
            return SHOAL_EIO;
        }
    }
    int fd = self->arena_fd;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        shoal__error("store: arena %s is not a regular file owned by uid %u", self->arena_path,
                     (unsigned)geteuid());
        return SHOAL_EIO;
    }
    if ((st.st_mode & 077) && fchmod(fd, 0600) != 0)
        shoal__warn("store: cannot restrict arena %s to mode 0600: %s", self->arena_path,
                    strerror(errno));
    self->arena_dev = (uint64_t)st.st_dev;
    self->arena_ino = (uint64_t)st.st_ino;
    //  An empty file holds nothing a reader could have mapped: size it in place.
    self->arena_fresh = self->arena_created || st.st_size == 0;
    if ((uint64_t)st.st_size == self->capacity)
        return s_arena_size_map(self, fd, self->arena_path, false);
    if (st.st_size == 0) {
        *why = "its arena is new (first start, or the arena file was removed)";
        return s_arena_size_map(self, fd, self->arena_path, true);
    }
    //  Another size: never truncate in place, which would pull pages from under readers'
    //  mappings (SIGBUS) or hand their pinned bytes to new objects.
    shoal__warn("store: arena %s is %llu bytes, not the configured %llu: resetting the store",
                self->arena_path, (unsigned long long)st.st_size,
                (unsigned long long)self->capacity);
    *why = "its arena was resized";
    return s_arena_replace(self);
}

//  ------------------------------------------------------------------------------- index

/*  Whether the LMDB file at path (open in env) is shorter than the pages its meta page says
    are in use: truncated (a full disk while it grew, a bad copy). LMDB maps the file and
    would take SIGBUS on the first page past its end, so such a file counts as corrupt:
    MDB_CORRUPTED, after a warning with both sizes. 0 otherwise. */
static int s_env_check_size(MDB_env *env, const char *path)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat file;
    if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0 || stat(path, &file) != 0)
        return 0; //  nothing to compare with: the reads themselves will tell
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if ((uint64_t)file.st_size >= need)
        return 0;
    shoal__warn("store: %s is %llu bytes, shorter than the %llu its pages take: truncated", path,
                (unsigned long long)file.st_size, (unsigned long long)need);
    return MDB_CORRUPTED;
}

static int s_env_open(shoal_store_t *self)
{
    int rc = S_MDB(mdb_env_create(&self->env));
    if (rc) {
        self->env = NULL;
        return rc;
    }
    rc = S_MDB(mdb_env_set_mapsize(self->env, S_MAPSIZE));
    //  Every same-host reader process holds one slot of LMDB's reader table for as long as
    //  it is open (its transaction handle keeps it between gets). LMDB's default of 126
    //  would cap readers per store; 1024 slots cost 64 KiB of lock file.
    if (rc == 0)
        rc = S_MDB(mdb_env_set_maxreaders(self->env, S_MAX_READERS));
    //  NOSYNC: the index survives a process kill (the OS has the pages), not a power cut;
    //  arena bytes in /dev/shm would not survive that either.
    if (rc == 0)
        rc = S_MDB(mdb_env_open(self->env, self->index_path, MDB_NOSUBDIR | MDB_NOSYNC, 0600));
    if (rc == 0)
        rc = s_env_check_size(self->env, self->index_path);
    if (rc) {
        mdb_env_close(self->env);
        self->env = NULL;
    }
    return rc;
}

static void s_env_close(shoal_store_t *self)
{
    if (self->env)
        mdb_env_close(self->env);
    self->env = NULL;
}

static void s_index_unlink(shoal_store_t *self)
{
    if (unlink(self->index_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", self->index_path, strerror(errno));
    if (unlink(self->lock_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", self->lock_path, strerror(errno));
}

//  A record read from the index while loading.
typedef struct {
    shoal_ref_t ref;
    s_record_t rec;
    bool drop;
} s_row_t;

static int s_disk_merge(shoal_store_t *self);

static int s_row_by_offset(const void *a, const void *b)
{
    const s_row_t *x = a, *y = b;
    return x->rec.offset < y->rec.offset ? -1 : x->rec.offset > y->rec.offset;
}

//  Why an index whose meta record is m cannot describe the arena file (capacity, dev,
//  ino), or NULL if it can.
static const char *s_meta_mismatch(const MDB_val *m, uint64_t capacity, uint64_t dev, uint64_t ino)
{
    s_meta_t meta;
    if (m->mv_size != sizeof meta)
        return "its header has the wrong size";
    memcpy(&meta, m->mv_data, sizeof meta);
    if (memcmp(meta.magic, S_META_MAGIC, 8) != 0 || meta.version != S_META_VERSION ||
        meta.page != S_PAGE)
        return "its header has another format";
    if (meta.capacity != capacity)
        return "it describes an arena of another capacity";
    if (meta.arena_dev != dev || meta.arena_ino != ino)
        return "it describes another arena file";
    return NULL;
}

//  Reads the index into memory. In one write transaction: checks the meta record, drops
//  what cannot be kept (unsealed objects, records that do not fit the arena or overlap),
//  writes the meta record. why != NULL resets the index. Returns SHOAL_ECORRUPT when LMDB
//  says the file is damaged; the caller then starts a new file.
static int s_index_load(shoal_store_t *self, const char *why)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    s_row_t *rows = NULL;
    size_t nrows = 0, cap_rows = 0;
    MDB_dbi dbi;
    const char *what = "begin a transaction";
    int rc = S_MDB(mdb_txn_begin(self->env, NULL, 0, &txn));
    if (rc)
        goto mdb_fail;
    what = "open the database";
    rc = S_MDB(mdb_dbi_open(txn, NULL, 0, &dbi));
    if (rc)
        goto mdb_fail;
    MDB_stat stat;
    what = "read statistics";
    rc = mdb_stat(txn, dbi, &stat);
    if (rc)
        goto mdb_fail;
    size_t records = stat.ms_entries;
    MDB_val key = {strlen(S_META_KEY), S_META_KEY}, val;
    what = "read the header";
    rc = mdb_get(txn, dbi, &key, &val);
    bool reset = why != NULL;
    if (rc == 0) {
        records--;
        if (!why)
            why = s_meta_mismatch(&val, self->capacity, self->arena_dev, self->arena_ino);
    } else if (rc == MDB_NOTFOUND) {
        if (!why && records > 0)
            why = "it has no header";
        reset = true; //  a new index: whatever the arena held is unknown to it
    } else
        goto mdb_fail;
    reset = reset || why != NULL;
    //  The arena may be mapped by readers of the index being reset (their old index file,
    //  or this one before the reset): give the store a new arena instead of reusing it.
    if (reset && !self->arena_fresh) {
        rc = s_arena_replace(self);
        if (rc)
            goto fail;
    }

    if (why && records > 0)
        shoal__warn("store: resetting index %s (%zu objects): %s", self->index_path, records, why);
    {
        what = "open a cursor";
        rc = S_MDB(mdb_cursor_open(txn, dbi, &cursor));
        if (rc)
            goto mdb_fail;
        size_t malformed = 0;
        what = "read a record";
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
        while (rc == 0) {
            if (key.mv_size == 16 && val.mv_size == sizeof(s_record_t)) {
                if (nrows == cap_rows) {
                    size_t cap = cap_rows ? cap_rows * 2 : 256;
                    s_row_t *grown = s_realloc(rows, cap * sizeof *rows);
                    if (!grown) {
                        rc = SHOAL_ENOMEM;
                        goto fail;
                    }
                    rows = grown;
                    cap_rows = cap;
                }
                s_row_t *row = &rows[nrows++];
                row->ref = s_key_decode(key.mv_data);
                memcpy(&row->rec, val.mv_data, sizeof row->rec);
                row->drop = false;
            } else if (!(key.mv_size == strlen(S_META_KEY) &&
                         memcmp(key.mv_data, S_META_KEY, key.mv_size) == 0)) {
                //  Deleting at the cursor leaves it on the next record, which MDB_NEXT
                //  then returns (LMDB's C_DEL handling).
                what = "drop a malformed record";
                rc = S_MDB(mdb_cursor_del(cursor, 0));
                if (rc)
                    goto mdb_fail;
                malformed++;
            }
            what = "read a record";
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
        }
        if (rc != MDB_NOTFOUND)
            goto mdb_fail;
        mdb_cursor_close(cursor);
        cursor = NULL;
        if (malformed)
            shoal__warn("store: index %s: dropped %zu malformed records", self->index_path,
                        malformed);

        //  Unless resetting, keep sealed objects that lie inside the arena and overlap
        //  nobody. Of two that overlap, neither can be trusted: drop both. Spilled records
        //  go too: the disk tier says what it holds (s_disk_merge re-adds them).
        size_t unsealed = 0, outside = 0, overlapping = 0;
        for (size_t i = 0; i < nrows; i++) {
            s_record_t *r = &rows[i].rec;
            if (r->state == SHOAL_OBJ_SPILLED || why)
                rows[i].drop = true;
            else if (r->state != SHOAL_OBJ_SEALED) {
                rows[i].drop = true;
                unsealed++;
            } else if (r->offset % S_PAGE || r->size > self->capacity ||
                       r->offset > self->capacity - s_page_round(r->size)) {
                rows[i].drop = true;
                outside++;
            }
        }
        if (nrows > 1) //  qsort's base must not be NULL, even for 0 rows
            qsort(rows, nrows, sizeof *rows, s_row_by_offset);
        s_row_t *last = NULL; //  the kept row that reaches furthest so far
        for (size_t i = 0; i < nrows; i++) {
            s_row_t *row = &rows[i];
            if (row->drop || row->rec.size == 0)
                continue;
            if (last && row->rec.offset < last->rec.offset + s_page_round(last->rec.size)) {
                overlapping += 1 + !last->drop;
                row->drop = last->drop = true;
            }
            if (!last || row->rec.offset + s_page_round(row->rec.size) >
                             last->rec.offset + s_page_round(last->rec.size))
                last = row;
        }
        if (unsealed)
            shoal__info("store: index %s: aborted %zu unsealed objects (their writer is gone)",
                        self->index_path, unsealed);
        if (outside || overlapping)
            shoal__warn("store: index %s: dropped %zu objects outside the %llu-byte arena and "
                        "%zu overlapping ones",
                        self->index_path, outside, (unsigned long long)self->capacity, overlapping);
        what = "drop a record";
        for (size_t i = 0; i < nrows; i++) {
            if (!rows[i].drop)
                continue;
            uint8_t k[16];
            s_key_encode(rows[i].ref, k);
            MDB_val kv = {sizeof k, k};
            rc = S_MDB(mdb_del(txn, dbi, &kv, NULL));
            if (rc)
                goto mdb_fail;
        }
    }

    s_meta_t meta;
    memset(&meta, 0, sizeof meta);
    memcpy(meta.magic, S_META_MAGIC, 8);
    meta.version = S_META_VERSION;
    meta.page = S_PAGE;
    meta.capacity = self->capacity;
    meta.arena_dev = self->arena_dev;
    meta.arena_ino = self->arena_ino;
    key.mv_size = strlen(S_META_KEY);
    key.mv_data = S_META_KEY;
    val.mv_size = sizeof meta;
    val.mv_data = &meta;
    what = "write the header";
    rc = S_MDB(mdb_put(txn, dbi, &key, &val, 0));
    if (rc)
        goto mdb_fail;
    what = "commit";
    if (s_fault()) {
        mdb_txn_abort(txn);
        rc = EIO;
    } else
        rc = mdb_txn_commit(txn);
    txn = NULL; //  commit frees the transaction even when it fails
    if (rc)
        goto mdb_fail;
    self->dbi = dbi;

    //  Build the in-memory state from the rows kept, already sorted by offset.
    size_t kept = 0, spaced = 0;
    for (size_t i = 0; i < nrows; i++)
        if (!rows[i].drop) {
            kept++;
            spaced += rows[i].rec.size > 0;
        }
    rc = s_free_reserve(self, spaced + 2);
    if (rc == 0)
        rc = s_dirty_reserve(self, kept + 1);
    if (rc)
        goto fail;
    uint64_t cursor_off = 0;
    for (size_t i = 0; i < nrows; i++) {
        s_row_t *row = &rows[i];
        if (row->drop)
            continue;
        s_entry_t *entry = s_malloc(sizeof *entry);
        if (!entry) {
            rc = SHOAL_ENOMEM;
            goto fail;
        }
        *entry = (s_entry_t){.offset = row->rec.offset,
                             .size = row->rec.size,
                             .state = SHOAL_OBJ_SEALED,
                             .created_us = row->rec.created_us,
                             .published = true};
        if (shoal__refmap_put(self->map, row->ref, entry) != 0) {
            free(entry);
            rc = SHOAL_ENOMEM;
            goto fail;
        }
        self->clean++;
        if (entry->size == 0)
            continue;
        if (entry->offset > cursor_off) {
            self->free[self->free_len].offset = cursor_off;
            self->free[self->free_len].length = entry->offset - cursor_off;
            self->free_len++;
        }
        uint64_t span = s_page_round(entry->size);
        cursor_off = entry->offset + span;
        self->used += span;
        self->spaced++;
    }
    if (cursor_off < self->capacity) {
        self->free[self->free_len].offset = cursor_off;
        self->free[self->free_len].length = self->capacity - cursor_off;
        self->free_len++;
    }
    free(rows);
    return s_disk_merge(self);

mdb_fail:
    if (s_mdb_is_corrupt(rc)) {
        shoal__warn("store: index %s is corrupt (%s while trying to %s): resetting the store",
                    self->index_path, mdb_strerror(rc), what);
        rc = SHOAL_ECORRUPT;
    } else {
        shoal__error("store: cannot %s in index %s: %s", what, self->index_path, mdb_strerror(rc));
        rc = rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
    }
fail:
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    free(rows);
    return rc;
}

static int s_index_open(shoal_store_t *self, const char *why)
{
    int rc = s_env_open(self);
    if (s_mdb_is_corrupt(rc)) {
        shoal__warn("store: index %s is unreadable (%s): resetting the store", self->index_path,
                    mdb_strerror(rc));
        s_index_unlink(self);
        why = "its index was unreadable";
        rc = s_env_open(self);
    }
    if (rc) {
        shoal__error("store: cannot open index %s: %s", self->index_path, mdb_strerror(rc));
        return rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
    }
    //  A reader that crashed leaves its slot taken; clear such slots at every start.
    int dead = 0;
    if (mdb_reader_check(self->env, &dead) == 0 && dead > 0)
        shoal__info("store: index %s: cleared %d stale reader slots", self->index_path, dead);
    rc = s_index_load(self, why);
    if (rc == SHOAL_ECORRUPT) {
        s_env_close(self);
        s_index_unlink(self);
        rc = s_env_open(self);
        if (rc) {
            shoal__error("store: cannot create index %s: %s", self->index_path, mdb_strerror(rc));
            return rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
        }
        rc = s_index_load(self, "its index was corrupt");
        if (rc == SHOAL_ECORRUPT)
            rc = SHOAL_EIO; //  a file we just created: not corruption we can fix here
    }
    return rc;
}

//  -------------------------------------------------------------------------- disk tier

/*  Disk tier format (one LMDB environment, "spill.mdb"; host byte order, never leaves the
    host):
    - key: ref (16 bytes, as in the index) then the piece number (4 bytes, big-endian), so
      an object's pieces are adjacent and in order; value: up to SHOAL_STORE_PIECE bytes,
      after an 8-byte checksum of them (s_sum) when the record says S_DISK_SUMMED (pieces
      written before checksums have none);
    - key: ref alone (16 bytes, sorts right before its pieces): s_disk_rec_t, written in
      the same transaction as the last piece. An object is on disk exactly when its record
      is there and its pieces add up to the record's size.
    The disk tier describes itself, so it does not depend on the index (which is MDB_NOSYNC
    and may be reset or, after a power cut, corrupt): on open, every complete object on
    disk that the index does not hold in the arena is re-adopted as SPILLED. Commits are
    synced (MDB_NOMETASYNC: one fdatasync per spill step or delete of a spilled object; a
    persist also syncs the meta page), so a power cut can undo at most the last commit
    (a spill step, never a persist that returned) and never corrupts the file. */
#define S_PIECE_KEY      20
#define S_DISK_PERSISTED 1u
#define S_DISK_SUMMED    2u //  its pieces start with their checksum
#define S_PIECE_SUM      8u //  bytes of that checksum
//  Address space for persisted copies beyond the spill cap (the file is sparse: it grows
//  only as pages are used). A full disk shows as ENOSPC or MDB_MAP_FULL: SHOAL_EFULL.
#define S_DISK_PERSIST_MAP (64ull << 30)
//  A persist writes its pieces in commits of at most this many bytes, as a spill step does:
//  without LMDB's write map a transaction keeps a copy of every page it dirties in memory
//  until it commits, so one transaction for a 256 MiB object doubled the worker's peak RSS.
#define S_PERSIST_STEP (8ull << 20)

typedef struct {
    uint64_t size;
    uint32_t flags; //  S_DISK_PERSISTED
    uint32_t reserved;
    int64_t created_us;
} s_disk_rec_t;

//  What the open's scan found of one object.
typedef struct {
    uint64_t bytes; //  its pieces' sizes, summed
    s_disk_rec_t rec;
    bool has_rec;
} s_disk_t;

static void s_piece_key(shoal_ref_t ref, uint32_t piece, uint8_t k[S_PIECE_KEY])
{
    s_key_encode(ref, k);
    for (int i = 0; i < 4; i++)
        k[16 + i] = (uint8_t)(piece >> (24 - 8 * i));
}

/*  The checksum of a piece: four 64-bit lanes, each word xored in and multiplied by an odd
    constant (a bijection, so a change within one lane always shows), then mixed and added.
    Not cryptographic: it catches damaged or misplaced pages, at several GB/s (a byte-wise
    FNV would halve the spill's 1 GB/s). */
static uint64_t s_sum(const uint8_t *p, size_t n)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t h[4] = {k, k ^ 1, k ^ 2, k ^ 3}, w;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            memcpy(&w, p + i + 8 * (size_t)l, 8);
            h[l] = (h[l] ^ w) * k;
            h[l] ^= h[l] >> 29;
        }
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h[0] = (h[0] ^ w) * k;
        h[0] ^= h[0] >> 29;
    }
    for (; i < n; i++)
        h[1] = (h[1] ^ p[i]) * k;
    uint64_t sum = n;
    for (int l = 0; l < 4; l++) {
        uint64_t z = h[l];
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        sum += z ^ (z >> 31);
    }
    return sum;
}

static bool s_disk_complete(const s_disk_t *d)
{
    return d->has_rec && d->bytes == d->rec.size;
}

static int s_spill_env_open(shoal_store_t *self)
{
    int rc = S_MDB(mdb_env_create(&self->spill_env));
    if (rc) {
        self->spill_env = NULL;
        return rc;
    }
    //  The map must hold spill_cap bytes of pieces, plus LMDB's overhead: a 1 MiB piece
    //  takes 257 overflow pages (0.4%), branch/leaf pages are tiny, and pages freed by
    //  deletes are reused only once no older transaction can see them. A quarter more plus
    //  16 MiB covers that; the cap itself is enforced by spill_used. Persisted copies get
    //  S_DISK_PERSIST_MAP on top. The map is address space only: the file is sparse.
    size_t mapsize =
        (size_t)(self->spill_cap + self->spill_cap / 4 + (16u << 20) + S_DISK_PERSIST_MAP);
    mapsize = (mapsize + S_PAGE - 1) & ~(size_t)(S_PAGE - 1);
    rc = S_MDB(mdb_env_set_mapsize(self->spill_env, mapsize));
    //  Synced commits, without MDB_NOSYNC (a crash of the machine could then corrupt the
    //  file, persisted copies included), but MDB_NOMETASYNC: one fdatasync per commit
    //  instead of two, and a power cut can only undo the last commit, never break the file.
    //  A persist syncs the meta page too (mdb_env_sync), so it is on disk when it returns.
    if (rc == 0)
        rc = S_MDB(mdb_env_open(self->spill_env, self->spill_path,
                                MDB_NOSUBDIR | MDB_NOTLS | MDB_NOMETASYNC, 0600));
    if (rc == 0)
        rc = s_env_check_size(self->spill_env, self->spill_path);
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, 0, &txn));
    if (rc == 0)
        rc = S_MDB(mdb_dbi_open(txn, NULL, 0, &self->spill_dbi));
    if (rc == 0) {
        rc = s_fault() ? EIO : mdb_txn_commit(txn);
        if (rc)
            mdb_txn_abort(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc) {
        mdb_env_close(self->spill_env);
        self->spill_env = NULL;
    }
    return rc;
}

static void s_spill_unlink(const char *path)
{
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s-lock", path);
    if (unlink(path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", path, strerror(errno));
    if (unlink(lock) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", lock, strerror(errno));
}

static void s_disk_free(shoal_store_t *self)
{
    if (!self->disk)
        return;
    size_t cursor = 0;
    void *value;
    while (shoal__refmap_next(self->disk, &cursor, NULL, &value))
        free(value);
    shoal__refmap_destroy(&self->disk);
}

//  The scan's record of ref, made on first sight. NULL: out of memory.
static s_disk_t *s_disk_get(shoal_store_t *self, shoal_ref_t ref)
{
    s_disk_t *d = shoal__refmap_get(self->disk, ref);
    if (d)
        return d;
    d = s_calloc(1, sizeof *d);
    if (d && shoal__refmap_put(self->disk, ref, d) != 0) {
        free(d);
        d = NULL;
    }
    return d;
}

//  Reads which objects the disk tier holds into self->disk (ref -> s_disk_t). Reads only
//  keys and sizes: a piece's overflow pages are not touched. An LMDB code or SHOAL_ENOMEM.
static int s_spill_scan(shoal_store_t *self)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    int rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, MDB_RDONLY, &txn));
    if (rc == 0)
        rc = S_MDB(mdb_cursor_open(txn, self->spill_dbi, &cursor));
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    while (rc == 0) {
        if (key.mv_size == S_PIECE_KEY || key.mv_size == 16) {
            s_disk_t *d = s_disk_get(self, s_key_decode(key.mv_data));
            if (!d) {
                rc = SHOAL_ENOMEM;
                break;
            }
            //  The record comes first (its key is a prefix of its pieces'): it says whether
            //  they carry a checksum.
            size_t head = d->has_rec && (d->rec.flags & S_DISK_SUMMED) ? S_PIECE_SUM : 0;
            if (key.mv_size == S_PIECE_KEY && val.mv_size >= head)
                d->bytes += val.mv_size - head;
            else if (key.mv_size == S_PIECE_KEY)
                d->has_rec = false; //  a piece too short for its checksum: not complete
            else if (val.mv_size == sizeof d->rec) {
                memcpy(&d->rec, val.mv_data, sizeof d->rec);
                d->has_rec = true;
            }
        }
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/*  Locks the disk tier's directory for this store alone: two stores sharing one would each
    re-adopt the other's objects at open and sweep away what their own index does not name.
    flock on DIR/spill.owner (dies with the process, so never stale), which then says who
    holds it, for the error the next store gets. 0, SHOAL_EINVAL, SHOAL_EIO (logged). */
static int s_spill_lock(shoal_store_t *self, const char *dir)
{
    if (snprintf(self->spill_lock_path, sizeof self->spill_lock_path, "%s/spill.owner", dir) >=
        (int)sizeof self->spill_lock_path)
        return SHOAL_EINVAL;
    const char *path = self->spill_lock_path;
    //  A few tries: the file locked must still be the one the path names (a store being
    //  destroyed unlinks it while holding the lock).
    for (int attempt = 0;; attempt++) {
        int fd = S_SYS(open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (fd < 0) {
            shoal__error("store: cannot open %s: %s", path, strerror(errno));
            return SHOAL_EIO;
        }
        if (S_SYS(flock(fd, LOCK_EX | LOCK_NB)) != 0) {
            int err = errno;
            char holder[PATH_MAX + 64] = "";
            ssize_t n = err == EWOULDBLOCK ? pread(fd, holder, sizeof holder - 1, 0) : 0;
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            close(fd);
            if (err == EWOULDBLOCK)
                shoal__error("store: disk tier directory %s is in use by another store (%s); "
                             "give each worker its own --spill-dir",
                             dir, holder[0] ? holder : "its holder did not say who it is");
            else
                shoal__error("store: cannot lock %s: %s", path, strerror(err));
            return SHOAL_EIO;
        }
        struct stat st, now;
        if (fstat(fd, &st) == 0 && stat(path, &now) == 0 && st.st_dev == now.st_dev &&
            st.st_ino == now.st_ino) {
            self->spill_lock_fd = fd;
            break;
        }
        close(fd);
        if (attempt == 3) {
            shoal__error("store: %s keeps being replaced while locking it", path);
            return SHOAL_EIO;
        }
    }
    char note[PATH_MAX + 64];
    int len = snprintf(note, sizeof note, "pid %d, store %s\n", (int)getpid(), self->dir);
    len = SHOAL__MIN(len, (int)sizeof note - 1);
    if (ftruncate(self->spill_lock_fd, 0) != 0 ||
        pwrite(self->spill_lock_fd, note, (size_t)len, 0) != len)
        shoal__debug("store: cannot write who holds %s: %s", path, strerror(errno));
    return 0;
}

//  Opens the disk tier before the index is loaded, and reads what it holds. A damaged file
//  is named, removed and made anew (what was on it is lost, with a warning). 0,
//  SHOAL_EINVAL (the path does not fit), SHOAL_EIO, SHOAL_ENOMEM.
static int s_spill_open(shoal_store_t *self, const char *spill_dir)
{
    char dir[PATH_MAX];
    if (spill_dir && *spill_dir)
        shoal__strlcpy(dir, spill_dir, sizeof dir);
    else if (snprintf(dir, sizeof dir, "%s/spill", self->dir) >= (int)sizeof dir)
        return SHOAL_EINVAL;
    int err = s_fault() ? -EIO : shoal__mkdir_p(dir, 0700);
    if (err) {
        shoal__error("store: cannot create the disk tier's directory %s: %s", dir, strerror(-err));
        return SHOAL_EIO;
    }
    if (snprintf(self->spill_path, sizeof self->spill_path, "%s/spill.mdb", dir) >=
        (int)sizeof self->spill_path)
        return SHOAL_EINVAL;
    int lrc = s_spill_lock(self, dir);
    if (lrc)
        return lrc;
    self->disk = s_fault() ? NULL : shoal__refmap_new();
    if (!self->disk)
        return SHOAL_ENOMEM;
    int rc = s_spill_env_open(self);
    if (rc == 0) {
        rc = s_spill_scan(self);
        if (rc && rc != SHOAL_ENOMEM) {
            mdb_env_close(self->spill_env);
            self->spill_env = NULL;
        }
    }
    if (s_mdb_is_corrupt(rc)) {
        shoal__warn("store: disk tier %s is corrupt (%s): starting it afresh; the objects "
                    "spilled or persisted to it are lost",
                    self->spill_path, mdb_strerror(rc));
        s_spill_unlink(self->spill_path);
        s_disk_free(self);
        self->disk = s_fault() ? NULL : shoal__refmap_new();
        if (!self->disk)
            return SHOAL_ENOMEM;
        rc = s_spill_env_open(self);
    }
    if (rc == SHOAL_ENOMEM)
        return rc;
    if (rc) {
        shoal__error("store: cannot open disk tier %s: %s", self->spill_path, mdb_strerror(rc));
        return rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
    }
    return 0;
}

//  At the end of the index load: objects complete on disk become known. One the index
//  holds in the arena gets its persisted flag from disk; one it does not hold (spilled,
//  or the arena was lost or reset) is re-adopted as SPILLED (a new index record, written
//  at the next flush). 0 or SHOAL_ENOMEM.
static int s_disk_merge(shoal_store_t *self)
{
    if (!self->disk)
        return 0;
    int rc =
        s_dirty_reserve(self, self->dirty_len + self->clean + shoal__refmap_size(self->disk) + 1);
    if (rc)
        return rc;
    size_t cursor = 0, adopted = 0, incomplete = 0;
    shoal_ref_t ref;
    void *value;
    while (shoal__refmap_next(self->disk, &cursor, &ref, &value)) {
        const s_disk_t *d = value;
        if (!s_disk_complete(d)) {
            incomplete++;
            continue;
        }
        bool persisted = d->rec.flags & S_DISK_PERSISTED;
        bool sums = d->rec.flags & S_DISK_SUMMED;
        s_entry_t *entry = shoal__refmap_get(self->map, ref);
        if (entry) {
            entry->persisted = persisted && entry->state == SHOAL_OBJ_SEALED;
            entry->sums = sums;
            continue;
        }
        if (!(entry = s_malloc(sizeof *entry)))
            return SHOAL_ENOMEM;
        *entry = (s_entry_t){.size = d->rec.size,
                             .created_us = d->rec.created_us,
                             .state = SHOAL_OBJ_SPILLED,
                             .persisted = persisted,
                             .sums = sums,
                             .dirty = true};
        if (shoal__refmap_put(self->map, ref, entry) != 0) {
            free(entry);
            return SHOAL_ENOMEM;
        }
        self->dirty[self->dirty_len++] = ref;
        adopted++;
    }
    if (adopted)
        shoal__info("store: re-adopted %zu objects from the disk tier %s", adopted,
                    self->spill_path);
    if (incomplete)
        shoal__info("store: disk tier %s: %zu objects were cut short (a spill or persist "
                    "interrupted): dropped",
                    self->spill_path, incomplete);
    return 0;
}

/*  After the index load: counts spill_used and persist_used and, when clean is set, deletes
    what no object owns (incomplete objects, and copies of objects neither spilled nor
    persisted: deleted or restored while their pieces could not be removed) in one
    transaction. 0 or an LMDB code (nothing deleted then). */
static int s_spill_walk(shoal_store_t *self, bool clean, size_t *dropped_p)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    size_t dropped = 0;
    uint64_t spilled = 0, persisted = 0;
    MDB_val key, val;
    int rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, clean ? 0 : MDB_RDONLY, &txn));
    if (rc)
        txn = NULL;
    if (rc == 0)
        rc = S_MDB(mdb_cursor_open(txn, self->spill_dbi, &cursor));
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    while (rc == 0) {
        const s_entry_t *entry = key.mv_size == S_PIECE_KEY || key.mv_size == 16
                                     ? shoal__refmap_get(self->map, s_key_decode(key.mv_data))
                                     : NULL;
        if (entry && (entry->persisted || entry->state == SHOAL_OBJ_SPILLED)) {
            size_t head = entry->sums ? S_PIECE_SUM : 0;
            if (key.mv_size == S_PIECE_KEY && val.mv_size >= head)
                *(entry->persisted ? &persisted : &spilled) += val.mv_size - head;
        } else if (clean) {
            rc = S_MDB(mdb_cursor_del(cursor, 0));
            if (rc)
                break;
            dropped++;
            //  The cursor now stands on the next key, which MDB_NEXT returns (C_DEL).
        }
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (cursor)
        mdb_cursor_close(cursor);
    if (rc == MDB_NOTFOUND) {
        rc = dropped == 0 ? (mdb_txn_abort(txn), 0) : s_fault() ? EIO : mdb_txn_commit(txn);
        if (rc && dropped)
            mdb_txn_abort(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc == 0) {
        self->spill_used = spilled;
        self->persist_used = persisted;
        *dropped_p = dropped;
    }
    return rc;
}

//  After the index load: cleans the disk tier and counts what it holds (s_spill_walk). A
//  clean-up that cannot commit (ENOSPC on a full disk, say) is no reason to refuse to
//  start: what it would have deleted stays, unused, until an open manages to. 0 or
//  SHOAL_EIO (the tier cannot even be read; logged).
static int s_spill_sweep(shoal_store_t *self)
{
    s_disk_free(self);
    size_t dropped = 0;
    int rc = s_spill_walk(self, true, &dropped);
    if (rc) {
        shoal__warn("store: cannot clean disk tier %s (%s): going on without; the pieces no "
                    "object owns stay until a later open",
                    self->spill_path, mdb_strerror(rc));
        rc = s_spill_walk(self, false, &dropped);
    }
    if (rc) {
        shoal__error("store: cannot read disk tier %s: %s", self->spill_path, mdb_strerror(rc));
        return SHOAL_EIO;
    }
    if (dropped)
        shoal__info("store: disk tier %s: dropped %zu pieces and records no object owns",
                    self->spill_path, dropped);
    return 0;
}

//  ---------------------------------------------------------------------------- pin table

static size_t s_pins_bytes(uint32_t nslots)
{
    return sizeof(s_pins_header_t) + (size_t)nslots * sizeof(s_pin_t);
}

//  The inode of this process's PID namespace, 0 when /proc does not say.
static uint64_t s_pidns(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

//  Reads /proc/PID/stat: the state letter (field 3) and the start time (field 22, clock
//  ticks since boot). 0 or a negative errno (-ENOENT: no such process).
static int s_proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? -err : -EIO;
    buf[n] = '\0';
    //  Field 2, the command, is in parentheses and may hold spaces and ')': skip to the last.
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -EIO;
    p += 2;
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -EIO;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

static uint64_t s_holder_tag(uint64_t start)
{
    return start & 0x7fffffffull;
}

//  Whether the process a holder value names is gone: no such pid, a zombie (PID 1 here
//  reaps slowly, so kill(pid, 0) alone would call a killed reader alive), or another
//  process that reuses the pid (another start time). When unsure, alive.
static bool s_holder_dead(uint64_t holder)
{
    pid_t pid = (pid_t)(holder & 0xffffffffull);
    uint64_t tag = (holder >> 32) & 0x7fffffffull;
    if (pid <= 0)
        return true;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char state;
    uint64_t start;
    int rc = s_proc_stat(pid, &state, &start);
    if (rc == -ENOENT || rc == -ESRCH)
        return true;
    if (rc)
        return false;
    if (state == 'Z' || state == 'X' || state == 'x')
        return true;
    return tag && s_holder_tag(start) != tag;
}

static int s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Clears the slots of holders that died. Each distinct holder is checked once (a kill and
//  a /proc read, ~10 us); a slot is cleared only if it still holds what was checked (CAS),
//  so a slot released and claimed again meanwhile is left alone. Returns slots cleared.
static size_t s_clear_dead(shoal_store_t *self)
{
    self->next_dead_ms = shoal__now_ms() + S_DEAD_CHECK_MS;
    size_t n = 0;
    for (uint32_t i = 0; i < S_PIN_SLOTS; i++) {
        uint64_t h = atomic_load_explicit(&self->slots[i].holder, memory_order_relaxed);
        if (h)
            self->ids[n++] = h & ~S_PIN_CLAIMING;
    }
    if (n == 0)
        return 0;
    qsort(self->ids, n, sizeof *self->ids, s_u64_cmp);
    size_t dead = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && self->ids[i] == self->ids[i - 1])
            continue;
        if (s_holder_dead(self->ids[i]))
            self->ids[dead++] = self->ids[i]; //  sorted still: dead <= i
    }
    size_t cleared = 0;
    for (uint32_t i = 0; i < S_PIN_SLOTS && dead > 0; i++) {
        uint64_t h = atomic_load(&self->slots[i].holder);
        uint64_t id = h & ~S_PIN_CLAIMING;
        if (h && bsearch(&id, self->ids, dead, sizeof *self->ids, s_u64_cmp) &&
            atomic_compare_exchange_strong(&self->slots[i].holder, &h, 0))
            cleared++;
    }
    if (cleared)
        shoal__info("store: cleared %zu pins of %zu dead readers of %s", cleared, dead,
                    self->arena_path);
    return cleared;
}

static int s_span_cmp(const void *a, const void *b)
{
    const s_span_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

//  Reads the pin table into self->spans, sorted by start, each end turned into the largest
//  end so far. Always true. A slot still being claimed (CLAIMING) pins nothing: its
//  publish comes after our read of it in the holder's order, so after our commit and
//  fence, and the claimer's validating look-up then sees the commit and gives up. (It
//  used to pin everything, and a reader stopped mid-claim -- Ctrl-Z, a debugger, a
//  suspended job -- kept every deleted range out of use for as long as it stayed stopped.)
static bool s_pins_scan(shoal_store_t *self, size_t *n_p)
{
    //  The other half of the reader's publish-then-look-up: our commit happened before
    //  this, so a pin published after we read its slot is validated against that commit.
    atomic_thread_fence(memory_order_seq_cst);
    size_t n = 0;
    for (uint32_t i = 0; i < S_PIN_SLOTS; i++) {
        s_pin_t *pin = &self->slots[i];
        uint64_t h = atomic_load(&pin->holder);
        if (!h)
            continue;
        if (h & S_PIN_CLAIMING)
            continue;
        uint64_t offset = atomic_load_explicit(&pin->offset, memory_order_relaxed);
        uint64_t size = atomic_load_explicit(&pin->size, memory_order_relaxed);
        //  A slot changing under us yields a mix of two pins: a wrong range, never a
        //  missed validated pin (see the argument at the top). Clamp, so it cannot overflow.
        size = SHOAL__MIN(size, S_MAX_CAPACITY);
        offset = SHOAL__MIN(offset, S_MAX_CAPACITY);
        self->spans[n].start = offset;
        self->spans[n].end = offset + s_page_round(size);
        n++;
    }
    if (n > 1)
        qsort(self->spans, n, sizeof *self->spans, s_span_cmp);
    for (size_t i = 1; i < n; i++)
        self->spans[i].end = SHOAL__MAX(self->spans[i].end, self->spans[i - 1].end);
    *n_p = n;
    return true;
}

//  Whether a pin of spans[0, n) overlaps [offset, offset + length).
static bool s_pinned(const s_span_t *spans, size_t n, uint64_t offset, uint64_t length)
{
    //  i = the number of pins that start before the range ends.
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (spans[mid].start < offset + length)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && spans[lo - 1].end > offset;
}

//  Gives the committed limbo ranges that no pin covers back to the free list. When some
//  stay pinned and the last dead-holder check is a second old, checks holders and tries
//  once more. Never allocates (see the free list's invariant).
static void s_reap(shoal_store_t *self)
{
    for (int pass = 0; pass < 2 && self->limbo_safe > 0; pass++) {
        size_t n = 0;
        bool all_pinned = !s_pins_scan(self, &n);
        size_t kept = 0, kept_safe = 0;
        for (size_t i = 0; i < self->limbo_len; i++) {
            s_range_t r = self->limbo[i];
            if (i >= self->limbo_safe || all_pinned ||
                s_pinned(self->spans, n, r.offset, r.length)) {
                kept_safe += i < self->limbo_safe;
                self->limbo[kept++] = r;
            } else {
                s_free_give(self, r.offset, r.length);
                self->used -= r.length;
            }
        }
        self->limbo_len = kept;
        self->limbo_safe = kept_safe;
        if (kept_safe == 0 || shoal__now_ms() < self->next_dead_ms || s_clear_dead(self) == 0)
            break;
    }
}

//  Moves the free parts of [offset, end) from the free list to limbo (re-adopting a range
//  a live reader still pins). 0 or SHOAL_ENOMEM.
static int s_carve(shoal_store_t *self, uint64_t offset, uint64_t end)
{
    size_t i = 0;
    while (i < self->free_len) {
        s_range_t *r = &self->free[i];
        uint64_t r_end = r->offset + r->length;
        if (r_end <= offset) {
            i++;
            continue;
        }
        if (r->offset >= end)
            break;
        int rc = s_free_reserve(self, self->free_len + 1);
        if (rc == 0)
            rc = s_limbo_reserve(self, self->limbo_len + 1);
        if (rc)
            return rc;
        r = &self->free[i]; //  the reserve may have moved the array
        uint64_t lo = SHOAL__MAX(r->offset, offset), hi = SHOAL__MIN(r_end, end);
        self->limbo[self->limbo_len++] = (s_range_t){lo, hi - lo};
        self->limbo_safe = self->limbo_len; //  no index holds it: nothing to commit first
        self->used += hi - lo;
        if (lo == r->offset && hi == r_end) {
            memmove(r, r + 1, (self->free_len - i - 1) * sizeof *r);
            self->free_len--;
        } else if (lo == r->offset) {
            r->offset = hi;
            r->length = r_end - hi;
        } else if (hi == r_end) {
            r->length = lo - r->offset;
            i++;
        } else {
            memmove(r + 1, r, (self->free_len - i) * sizeof *r);
            self->free_len++;
            r->length = lo - r->offset;
            self->free[i + 1] = (s_range_t){hi, r_end - hi};
            i += 2;
        }
    }
    return 0;
}

//  Re-adopts the pin table: clears the slots of holders that died, and puts the ranges
//  live ones pin that the index no longer holds (deleted, not yet freed when the previous
//  owner stopped) in limbo. Runs after the index load committed (see the argument at the
//  top): a reader that claims a slot later validates against this index.
static int s_pins_adopt(shoal_store_t *self)
{
    s_clear_dead(self);
    for (uint32_t i = 0; i < S_PIN_SLOTS; i++) {
        s_pin_t *pin = &self->slots[i];
        uint64_t h = atomic_load(&pin->holder);
        if (!h || (h & S_PIN_CLAIMING))
            continue; //  a claim in progress validates against the index we just wrote
        uint64_t offset = atomic_load_explicit(&pin->offset, memory_order_relaxed);
        uint64_t size = atomic_load_explicit(&pin->size, memory_order_relaxed);
        if (offset >= self->capacity || size == 0)
            continue;
        uint64_t end =
            size > self->capacity - offset ? self->capacity : offset + s_page_round(size);
        int rc = s_carve(self, offset, SHOAL__MIN(end, self->capacity));
        if (rc)
            return rc;
    }
    if (self->limbo_len)
        shoal__info("store: %zu ranges of %s stay reserved while live readers view them",
                    self->limbo_len, self->arena_path);
    return 0;
}

//  Makes a new, empty pin table for the current arena: filled under a temporary name,
//  then renamed into place, so a reader never maps a half-made one.
static int s_pins_create(shoal_store_t *self)
{
    size_t size = s_pins_bytes(S_PIN_SLOTS);
    char tmp[PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.new", self->pins_path) >= (int)sizeof tmp)
        return SHOAL_EIO;
    if (unlink(tmp) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", tmp, strerror(errno));
    int fd = S_SYS(open(tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_CREAT | O_EXCL, 0600));
    if (fd < 0) {
        shoal__error("store: cannot create pin table %s: %s", tmp, strerror(errno));
        return SHOAL_EIO;
    }
    const char *what = NULL;
    void *map = MAP_FAILED;
    if (S_SYS(ftruncate(fd, (off_t)size)) != 0)
        what = "size";
    else if (fallocate(fd, 0, 0, (off_t)size) != 0 && errno != EOPNOTSUPP && errno != ENOSYS)
        what = "reserve";
    else if ((map = s_fault() ? (errno = EIO, MAP_FAILED)
                              : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
             MAP_FAILED)
        what = "map";
    close(fd);
    if (!what) {
        s_pins_header_t *h = map;
        memcpy(h->magic, S_PINS_MAGIC, 8);
        h->version = S_PINS_VERSION;
        h->nslots = S_PIN_SLOTS;
        h->slot_size = sizeof(s_pin_t);
        h->arena_dev = self->arena_dev;
        h->arena_ino = self->arena_ino;
        h->pidns = s_pidns();
        if (S_SYS(rename(tmp, self->pins_path)) != 0)
            what = "rename";
    }
    if (what) {
        shoal__error("store: cannot %s pin table %s: %s", what, tmp, strerror(errno));
        if (map != MAP_FAILED)
            munmap(map, size);
        unlink(tmp);
        return SHOAL_EIO;
    }
    self->pins = map;
    self->slots = (s_pin_t *)(self->pins + 1);
    self->pins_created = true;
    return 0;
}

//  Opens the pin table after the index: re-adopts it when it belongs to this arena and the
//  arena is not new, else retires the old one (its readers' next get fails) and makes a
//  new one.
static int s_pins_open(shoal_store_t *self)
{
    int rc = shoal_store_pins_path_for(self->arena_path, self->pins_path, sizeof self->pins_path);
    if (rc)
        return rc;
    self->spans = s_malloc(S_PIN_SLOTS * sizeof *self->spans);
    self->ids = s_malloc(S_PIN_SLOTS * sizeof *self->ids);
    if (!self->spans || !self->ids)
        return SHOAL_ENOMEM;
    size_t size = s_pins_bytes(S_PIN_SLOTS);
    int fd = S_SYS(open(self->pins_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (fd < 0 && errno != ENOENT) {
        //  Not knowing the pins of live readers, we must not reuse anything they may view.
        shoal__error("store: cannot open pin table %s: %s", self->pins_path, strerror(errno));
        return SHOAL_EIO;
    }
    if (fd >= 0) {
        struct stat st;
        void *map = MAP_FAILED;
        if (S_SYS(fstat(fd, &st)) != 0) {
            shoal__error("store: cannot stat pin table %s: %s", self->pins_path, strerror(errno));
            close(fd);
            return SHOAL_EIO;
        }
        if (S_ISREG(st.st_mode) && st.st_uid == geteuid() && (uint64_t)st.st_size == size)
            map = s_fault() ? (errno = EIO, MAP_FAILED)
                            : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int err = errno;
        close(fd);
        if (map == MAP_FAILED && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) {
            shoal__error("store: cannot map pin table %s: %s", self->pins_path, strerror(err));
            return SHOAL_EIO;
        }
        if (map != MAP_FAILED) {
            s_pins_header_t *h = map;
            bool valid = memcmp(h->magic, S_PINS_MAGIC, 8) == 0 && h->version == S_PINS_VERSION &&
                         h->nslots == S_PIN_SLOTS && h->slot_size == sizeof(s_pin_t);
            if (valid && !self->arena_fresh && h->arena_dev == self->arena_dev &&
                h->arena_ino == self->arena_ino && !atomic_load(&h->retired)) {
                self->pins = h;
                self->slots = (s_pin_t *)(h + 1);
                return s_pins_adopt(self);
            }
            if (valid)
                atomic_store(&h->retired, 1);
            munmap(map, size);
        }
    }
    return s_pins_create(self);
}

//  -------------------------------------------------------------------------- lifecycle

//  Frees everything, whatever state open reached. Does not flush.
static void s_store_free(shoal_store_t *self)
{
    if (self->map) {
        size_t cursor = 0;
        void *entry;
        while (shoal__refmap_next(self->map, &cursor, NULL, &entry))
            free(entry);
        shoal__refmap_destroy(&self->map);
    }
    s_env_close(self);
    if (self->spill_env)
        mdb_env_close(self->spill_env);
    free(self->disk_drops);
    s_disk_free(self);
    if (self->base)
        munmap(self->base, self->capacity);
    if (self->arena_fd >= 0)
        close(self->arena_fd);
    if (self->spill_lock_fd >= 0)
        close(self->spill_lock_fd);
    if (self->pins)
        munmap(self->pins, s_pins_bytes(S_PIN_SLOTS));
    free(self->spans);
    free(self->ids);
    free(self->free);
    free(self->limbo);
    free(self->dirty);
    free(self->restored);
    free(self);
}

int shoal_store_arena_path_for(const char *dir, const char *name, char *buf, size_t size)
{
    if (!dir || !*dir || !name || !*name || strchr(name, '/'))
        return SHOAL_EINVAL;
    //  The store directory, absolute, names the arena together with the worker's name, so
    //  two clusters on one host whose workers share names (two `shoal up`s, parallel
    //  tests) never share an arena, and a restart on the same directory finds its own.
    char abs[PATH_MAX];
    if (!realpath(dir, abs)) {
        char cwd[PATH_MAX];
        if (dir[0] == '/' || !getcwd(cwd, sizeof cwd))
            shoal__strlcpy(abs, dir, sizeof abs);
        else if (snprintf(abs, sizeof abs, "%s/%s", cwd, dir) >= (int)sizeof abs)
            return SHOAL_EINVAL;
    }
    uint64_t h = 0xcbf29ce484222325ull; //  FNV-1a
    for (const char *p = abs; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    if (snprintf(buf, size, "/dev/shm/shoal-%u-%s-%08x.arena", (unsigned)geteuid(), name,
                 (unsigned)(h ^ (h >> 32))) >= (int)size)
        return SHOAL_EINVAL;
    return 0;
}

int shoal_store_open(const shoal_store_config_t *config, shoal_store_t **self_p)
{
    if (!config || !self_p || !config->dir || !*config->dir || !config->name || !*config->name ||
        strchr(config->name, '/') || config->capacity == 0 || config->capacity > S_MAX_CAPACITY)
        return SHOAL_EINVAL;
    shoal_store_t *self = s_calloc(1, sizeof *self);
    if (!self)
        return SHOAL_ENOMEM;
    self->arena_fd = -1;
    self->spill_lock_fd = -1;
    self->capacity = s_page_round(config->capacity);
    int rc = SHOAL_EINVAL;
    if (snprintf(self->index_path, sizeof self->index_path, "%s/index.mdb", config->dir) >=
            (int)sizeof self->index_path ||
        snprintf(self->lock_path, sizeof self->lock_path, "%s-lock", self->index_path) >=
            (int)sizeof self->lock_path)
        goto fail;
    rc = SHOAL_ENOMEM;
    self->map = s_fault() ? NULL : shoal__refmap_new();
    if (!self->map)
        goto fail;
    int err = s_fault() ? -EIO : shoal__mkdir_p(config->dir, 0700);
    if (err) {
        shoal__error("store: cannot create directory %s: %s", config->dir, strerror(-err));
        rc = SHOAL_EIO;
        goto fail;
    }
    if (!realpath(config->dir, self->dir)) {
        shoal__error("store: cannot resolve directory %s: %s", config->dir, strerror(errno));
        rc = SHOAL_EIO;
        goto fail;
    }
    rc = shoal_store_arena_path_for(config->dir, config->name, self->arena_path,
                                    sizeof self->arena_path);
    if (rc)
        goto fail;
    const char *why = NULL;
    rc = s_arena_open(self, &why);
    self->spill_cap = config->spill_size;
    self->persist_max = config->persist_max ? config->persist_max : SHOAL_STORE_PERSIST_MAX;
    if (rc == 0)
        rc = s_spill_open(self, config->spill_dir);
    if (rc == 0)
        rc = s_index_open(self, why);
    if (rc == 0)
        rc = s_pins_open(self);
    if (rc == 0 && self->spill_env)
        rc = s_spill_sweep(self);
    //  The invariants on capacities (see the struct), for deletes before any alloc.
    if (rc == 0)
        rc = s_free_reserve(self, self->spaced + self->limbo_len + 1);
    if (rc == 0)
        rc = s_limbo_reserve(self, self->limbo_len + self->spaced);
    if (rc)
        goto fail;
    int64_t now = shoal__now_ms();
    self->next_dead_ms = now + S_DEAD_CHECK_MS;
    self->next_reader_check_ms = now + S_READER_CHECK_MS;
    shoal__debug("store: opened %s (%llu bytes, %zu objects re-adopted)", self->arena_path,
                 (unsigned long long)self->capacity, shoal__refmap_size(self->map));
    *self_p = self;
    return 0;

fail:
    //  Do not leave a fallocated arena that nobody owns in /dev/shm (it is RAM); one that
    //  existed before stays, with whatever objects it holds.
    if (self->arena_created && unlink(self->arena_path) != 0)
        shoal__warn("store: cannot remove arena %s: %s", self->arena_path, strerror(errno));
    if (self->pins_created && unlink(self->pins_path) != 0)
        shoal__warn("store: cannot remove pin table %s: %s", self->pins_path, strerror(errno));
    s_store_free(self);
    return rc;
}

//  At close: removes the pin table when no reader holds a pin (the next open makes a new
//  one), so a stopped worker leaves only its arena behind. Retired first, then scanned:
//  a reader that pins after the scan sees the flag in its validating look-up and fails
//  (the same store-then-load ordering as deletes). A table with pins stays for the next
//  owner to re-adopt.
static void s_pins_close(shoal_store_t *self)
{
    if (!self->pins)
        return;
    atomic_store(&self->pins->retired, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (shoal__store_pins_held(self) > 0)
        atomic_store(&self->pins->retired, 0);
    else if (unlink(self->pins_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove pin table %s: %s", self->pins_path, strerror(errno));
}

void shoal_store_close(shoal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_t *self = *self_p;
    //  flush logs its own failure; what it could not write is lost with this process,
    //  as after a kill: unsealed objects are aborted on the next open anyway.
    shoal_store_flush(self);
    s_pins_close(self);
    s_store_free(self);
    *self_p = NULL;
}

void shoal_store_destroy(shoal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_t *self = *self_p;
    //  Readers' next get fails from now on; the views they hold keep their bytes.
    if (self->pins)
        atomic_store(&self->pins->retired, 1);
    //  Unlink while we still hold the arena lock, so no new owner opens the old files.
    if (unlink(self->arena_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove arena %s: %s", self->arena_path, strerror(errno));
    if (self->pins && unlink(self->pins_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove pin table %s: %s", self->pins_path, strerror(errno));
    s_index_unlink(self);
    if (self->spill_env)
        s_spill_unlink(self->spill_path);
    if (self->spill_lock_fd >= 0 && unlink(self->spill_lock_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove %s: %s", self->spill_lock_path, strerror(errno));
    s_store_free(self);
    *self_p = NULL;
}

const char *shoal_store_arena_path(const shoal_store_t *self)
{
    return self->arena_path;
}

const char *shoal_store_dir(const shoal_store_t *self)
{
    return self->dir;
}

int shoal_store_pins_path_for(const char *arena_path, char *buf, size_t size)
{
    static const char suffix[] = ".arena";
    size_t len = arena_path ? strlen(arena_path) : 0, n = sizeof suffix - 1;
    if (len <= n || strcmp(arena_path + len - n, suffix) != 0 || !buf ||
        snprintf(buf, size, "%.*s.pins", (int)(len - n), arena_path) >= (int)size)
        return SHOAL_EINVAL;
    return 0;
}

size_t shoal_store_pinned_pending(const shoal_store_t *self)
{
    return self->limbo_len;
}

size_t shoal__store_pins_held(const shoal_store_t *self)
{
    size_t n = 0;
    for (uint32_t i = 0; i < S_PIN_SLOTS; i++)
        n += atomic_load_explicit(&self->slots[i].holder, memory_order_relaxed) != 0;
    return n;
}

uint64_t shoal_store_capacity(const shoal_store_t *self)
{
    return self->capacity;
}

uint64_t shoal_store_used(const shoal_store_t *self)
{
    return self->used;
}

size_t shoal_store_count(const shoal_store_t *self)
{
    return shoal__refmap_size(self->map);
}

uint8_t *shoal_store_base(const shoal_store_t *self)
{
    return self->base;
}

//  ---------------------------------------------------------------------------- objects

static int s_commit(shoal_store_t *self);

/*  Takes span bytes of arena into *offset. When no free range fits and deleted objects
    wait in limbo, commits their deletes (a failure is logged, and what was committed
    before can still be freed), gives back what no reader pins and tries again. */
static bool s_room_take(shoal_store_t *self, uint64_t span, uint64_t *offset)
{
    if (s_free_take(self, span, offset))
        return true;
    if (self->limbo_len == 0)
        return false;
    s_commit(self);
    s_reap(self);
    return s_free_take(self, span, offset);
}

int shoal_store_alloc(shoal_store_t *self, shoal_ref_t ref, uint64_t size, shoal_store_obj_t *obj)
{
    assert(self && obj);
    if (shoal__refmap_get(self->map, ref))
        return SHOAL_EEXIST;
    if (size > self->capacity)
        return SHOAL_ETOOBIG;
    uint64_t span = s_page_round(size);
    //  Reserve, before changing anything, all memory that this object's later seal and
    //  delete could need: those calls cannot fail. The free list may gain a range per
    //  extent (object or limbo range) plus one; limbo, a range per object.
    int rc = s_dirty_reserve(self, self->dirty_len + 1 + self->clean);
    if (rc == 0 && span)
        rc = s_free_reserve(self, self->spaced + self->limbo_len + 2);
    if (rc == 0 && span)
        rc = s_limbo_reserve(self, self->limbo_len + self->spaced + 1);
    if (rc)
        return rc;
    uint64_t offset = 0;
    if (span && !s_room_take(self, span, &offset))
        return SHOAL_EFULL;
    s_entry_t *entry = s_malloc(sizeof *entry);
    if (!entry || shoal__refmap_put(self->map, ref, entry) != 0) {
        free(entry);
        if (span)
            s_free_give(self, offset, span);
        return SHOAL_ENOMEM;
    }
    entry->offset = offset;
    entry->size = size;
    entry->state = SHOAL_OBJ_ALLOCATED;
    entry->seq = ++self->seq;
    entry->created_us = shoal__wall_us();
    entry->dirty = true;
    entry->published = false;
    entry->persisted = false;
    entry->persisting = false;
    entry->pending = false;
    self->dirty[self->dirty_len++] = ref;
    if (span) {
        self->used += span;
        self->spaced++;
    }
    s_fill_obj(self, ref, entry, obj);
    return 0;
}

int shoal_store_seal(shoal_store_t *self, shoal_ref_t ref)
{
    assert(self);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state != SHOAL_OBJ_ALLOCATED)
        return SHOAL_ESTATE;
    entry->state = SHOAL_OBJ_SEALED;
    s_mark_dirty(self, ref, entry);
    return 0;
}

int shoal_store_persist_pending(shoal_store_t *self, shoal_ref_t ref)
{
    assert(self);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state != SHOAL_OBJ_SEALED)
        return SHOAL_ESTATE;
    if (!entry->persisted && !entry->pending) {
        entry->pending = true;
        s_mark_dirty(self, ref, entry);
    }
    return 0;
}

static void s_pieces_drop(shoal_store_t *self, shoal_ref_t ref, uint64_t size, bool persisted);
static void s_pieces_drop_later(shoal_store_t *self, shoal_ref_t ref, uint64_t size,
                                bool persisted);
static int s_disk_drops_commit(shoal_store_t *self);

//  Gives up the arena range of entry, which stays in the map (spill) or leaves it (drop):
//  to limbo if readers may view it, else to the free list. Never allocates.
static void s_range_release(shoal_store_t *self, const s_entry_t *entry)
{
    uint64_t span = s_page_round(entry->size);
    if (span && entry->published) {
        //  Readers may view it: limbo until a commit and a pin scan say otherwise.
        assert(self->limbo_len < self->limbo_cap); //  reserved by alloc and open
        self->limbo[self->limbo_len++] = (s_range_t){entry->offset, span};
        self->spaced--;
    } else if (span) {
        s_free_give(self, entry->offset, span);
        self->used -= span;
        self->spaced--;
    }
}

static void s_drop(shoal_store_t *self, shoal_ref_t ref)
{
    s_entry_t *entry = shoal__refmap_remove(self->map, ref);
    assert(entry);
    if (entry->state == SHOAL_OBJ_SPILLED || entry->persisted)
        s_pieces_drop_later(self, ref, entry->size, entry->persisted);
    else if (entry->persisting)
        s_pieces_drop_later(self, ref, 0, false); //  a persist cut short: its pieces so far
    else if (self->job && shoal_ref_equal(self->job_ref, ref)) {
        //  Being spilled: the pieces written so far go, and its reserved disk room.
        s_pieces_drop(self, ref, entry->size, false);
        self->job = false;
    }
    if (entry->state != SHOAL_OBJ_SPILLED)
        s_range_release(self, entry);
    if (!entry->dirty) {
        //  Flush must delete its record: the slot this takes was counted in clean.
        assert(self->dirty_len < self->dirty_cap && self->clean > 0);
        self->dirty[self->dirty_len++] = ref;
        self->clean--;
    }
    free(entry);
}

int shoal_store_abort(shoal_store_t *self, shoal_ref_t ref)
{
    assert(self);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state != SHOAL_OBJ_ALLOCATED)
        return SHOAL_ESTATE;
    s_drop(self, ref);
    return 0;
}

int shoal_store_delete(shoal_store_t *self, shoal_ref_t ref)
{
    assert(self);
    if (!shoal__refmap_get(self->map, ref))
        return SHOAL_ENOTFOUND;
    s_drop(self, ref);
    return 0;
}

int shoal_store_put(shoal_store_t *self, shoal_ref_t ref, const void *data, uint64_t size)
{
    if (size > 0 && !data)
        return SHOAL_EINVAL;
    shoal_store_obj_t obj;
    int rc = shoal_store_alloc(self, ref, size, &obj);
    if (rc)
        return rc;
    if (size > 0)
        memcpy(obj.data, data, size);
    return shoal_store_seal(self, ref);
}

int shoal_store_lookup(shoal_store_t *self, shoal_ref_t ref, shoal_store_obj_t *obj)
{
    assert(self && obj);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    entry->seq = ++self->seq;
    s_fill_obj(self, ref, entry, obj);
    return 0;
}

bool shoal_store_next(const shoal_store_t *self, size_t *cursor, shoal_store_obj_t *obj)
{
    shoal_ref_t ref;
    void *value;
    while (shoal__refmap_next(self->map, cursor, &ref, &value)) {
        const s_entry_t *entry = value;
        if (entry->state == SHOAL_OBJ_SEALED || entry->state == SHOAL_OBJ_SPILLED) {
            s_fill_obj(self, ref, entry, obj);
            return true;
        }
    }
    return false;
}

//  Commits the dirty list in one write transaction (shoal_store_flush without the reaping).
//  After a commit: the index no longer says SPILLED for the objects restored before it, so
//  their pieces may go, unless the disk tier holds them again (spilled or persisted anew,
//  or being spilled: the same keys).
static void s_restored_drop(shoal_store_t *self)
{
    for (size_t i = 0; i < self->restored_len; i++) {
        shoal_ref_t ref = self->restored[i];
        const s_entry_t *entry = shoal__refmap_get(self->map, ref);
        if (entry && (entry->state == SHOAL_OBJ_SPILLED || entry->persisted ||
                      (self->job && shoal_ref_equal(self->job_ref, ref))))
            continue;
        s_pieces_drop(self, ref, 0, false); //  its room was given back at the restore
    }
    self->restored_len = 0;
}

static int s_commit(shoal_store_t *self)
{
    s_disk_drops_commit(self); //  the disk tier is never behind the index on a delete
    if (self->dirty_len == 0)
        return 0;
    MDB_txn *txn = NULL;
    const char *what = "begin a transaction";
    int rc = S_MDB(mdb_txn_begin(self->env, NULL, 0, &txn));
    if (rc)
        goto fail;
    for (size_t i = 0; i < self->dirty_len; i++) {
        shoal_ref_t ref = self->dirty[i];
        const s_entry_t *entry = shoal__refmap_get(self->map, ref);
        uint8_t k[16];
        s_key_encode(ref, k);
        MDB_val key = {sizeof k, k};
        if (entry) {
            //  A pending persist is not sealed for good (see s_entry_t.pending).
            uint32_t state = entry->pending ? SHOAL_OBJ_ALLOCATED : (uint32_t)entry->state;
            s_record_t rec = {entry->offset, entry->size, state,
                              entry->persisted ? S_REC_PERSISTED : 0, entry->created_us};
            MDB_val val = {sizeof rec, &rec};
            what = "write a record";
            rc = S_MDB(mdb_put(txn, self->dbi, &key, &val, 0));
        } else {
            what = "delete a record";
            rc = S_MDB(mdb_del(txn, self->dbi, &key, NULL));
            if (rc == MDB_NOTFOUND)
                rc = 0; //  allocated and deleted between two flushes: never written
        }
        if (rc) {
            mdb_txn_abort(txn);
            goto fail;
        }
    }
    what = "commit";
    if (s_fault()) {
        mdb_txn_abort(txn);
        rc = EIO;
    } else
        rc = mdb_txn_commit(txn);
    if (rc)
        goto fail;
    for (size_t i = 0; i < self->dirty_len; i++) {
        s_entry_t *entry = shoal__refmap_get(self->map, self->dirty[i]);
        if (entry && entry->dirty) {
            entry->dirty = false;
            self->clean++;
        }
        if (entry)
            entry->published = true;
    }
    self->dirty_len = 0;
    //  Every delete so far is in the index now.
    self->limbo_safe = self->limbo_len;
    s_restored_drop(self);
    //  A persisted object's record is on the disk before its seal is reported (the worker
    //  flushes before it answers): one fdatasync, only in a flush that follows a persist.
    if (self->sync_index) {
        rc = s_fault() ? EIO : mdb_env_sync(self->env, 1);
        if (rc) {
            shoal__error("store: cannot sync index %s: %s", self->index_path, mdb_strerror(rc));
            return SHOAL_EIO;
        }
        self->sync_index = false;
    }
    return 0;

fail:
    shoal__error("store: cannot %s in index %s (%zu changes kept for the next flush): %s", what,
                 self->index_path, self->dirty_len, mdb_strerror(rc));
    return rc == MDB_MAP_FULL ? SHOAL_EFULL : SHOAL_EIO;
}

int shoal_store_flush(shoal_store_t *self)
{
    assert(self);
    size_t safe = self->limbo_safe;
    int rc = s_commit(self);
    //  Scan the pins only when deletes were just committed; tick retries the others.
    if (rc == 0 && self->limbo_safe > safe)
        s_reap(self);
    return rc;
}

void shoal_store_tick(shoal_store_t *self)
{
    assert(self);
    int64_t now = shoal__now_ms();
    bool reap = self->limbo_len > 0 && now >= self->next_reap_ms;
    if (now >= self->next_dead_ms && s_clear_dead(self) > 0)
        reap = self->limbo_len > 0;
    if (reap) {
        //  Deletes not committed yet (an owner that flushes only when it has results to
        //  report) would keep their space forever on an idle owner: commit them, at most
        //  every S_REAP_MS, so batching is kept.
        if (self->limbo_safe < self->limbo_len)
            s_commit(self);
        s_reap(self);
        self->next_reap_ms = now + S_REAP_MS;
    }
    if (now >= self->next_reader_check_ms) {
        self->next_reader_check_ms = now + S_READER_CHECK_MS;
        int dead = 0;
        if (mdb_reader_check(self->env, &dead) == 0 && dead > 0)
            shoal__info("store: index %s: cleared %d stale reader slots", self->index_path, dead);
    }
}

//  ----------------------------------------------------------------------- spill, restore

//  Deletes ref's record and pieces from the disk tier and gives its size back to the
//  counter it was in. A failure is logged: what stays is swept by the next open (the
//  counters are our accounting, so the room is given back anyway; the map has slack).
//  Deletes ref's record and pieces in txn (the record's 16-byte key sorts right before
//  the pieces' 20-byte ones, same prefix).
static int s_pieces_del(shoal_store_t *self, MDB_txn *txn, shoal_ref_t ref)
{
    MDB_cursor *cursor = NULL;
    uint8_t k[16];
    s_key_encode(ref, k);
    MDB_val key = {sizeof k, k}, val;
    int rc = S_MDB(mdb_cursor_open(txn, self->spill_dbi, &cursor));
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size >= 16 && memcmp(key.mv_data, k, 16) == 0) {
        rc = S_MDB(mdb_cursor_del(cursor, 0));
        if (rc == 0)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT); //  the next one (C_DEL)
    }
    if (cursor)
        mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Deletes the records and pieces of refs (or of drops[i].ref) in one synced commit. 0 or
//  an LMDB code.
static int s_disk_del(shoal_store_t *self, const shoal_ref_t *refs, const s_drop_t *drops, size_t n)
{
    MDB_txn *txn = NULL;
    int rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, 0, &txn));
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = s_pieces_del(self, txn, refs ? refs[i] : drops[i].ref);
    if (rc == 0) {
        rc = s_fault() ? EIO : mdb_txn_commit(txn);
        if (rc)
            mdb_txn_abort(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

static void s_pieces_drop(shoal_store_t *self, shoal_ref_t ref, uint64_t size, bool persisted)
{
    uint64_t *used = persisted ? &self->persist_used : &self->spill_used;
    *used -= SHOAL__MIN(size, *used);
    int rc = s_disk_del(self, &ref, NULL, 1);
    if (rc) {
        char text[SHOAL_REF_TEXT_SIZE];
        shoal__error("store: cannot delete %s from the disk tier %s (the next open will): %s",
                     shoal_ref_format(ref, text), self->spill_path, mdb_strerror(rc));
    }
}

/*  Commits the deletes s_drop queued, in one synced transaction: a `shoal rm` of 500
    persisted objects was 500 synced commits, one fdatasync each (1.7 s in all here, 10 ms
    now). Called before every index commit (s_commit: the disk tier is never behind the
    index that forgets the objects) and before any disk-tier write (a deleted ref written
    again must not lose its new pieces to the old delete: that write fails instead). On
    failure (logged) the deletes stay queued, their bytes counted, for the next call: a
    batch dropped would come back, re-adopted by the next open. 0 or an LMDB code. */
static int s_disk_drops_commit(shoal_store_t *self)
{
    if (!self->n_disk_drops)
        return 0;
    int rc = s_disk_del(self, NULL, self->disk_drops, self->n_disk_drops);
    if (rc) {
        shoal__error("store: cannot delete %zu objects from the disk tier %s (tried again at "
                     "the next commit): %s",
                     self->n_disk_drops, self->spill_path, mdb_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < self->n_disk_drops; i++) {
        const s_drop_t *d = &self->disk_drops[i];
        uint64_t *used = d->persisted ? &self->persist_used : &self->spill_used;
        *used -= SHOAL__MIN(d->size, *used);
    }
    self->n_disk_drops = 0;
    return 0;
}

//  s_pieces_drop at the next s_disk_drops_commit; at once when the queue cannot grow.
static void s_pieces_drop_later(shoal_store_t *self, shoal_ref_t ref, uint64_t size, bool persisted)
{
    if (self->n_disk_drops == self->cap_disk_drops) {
        size_t cap = self->cap_disk_drops ? 2 * self->cap_disk_drops : 64;
        s_drop_t *p = s_realloc(self->disk_drops, cap * sizeof *p);
        if (!p) {
            s_pieces_drop(self, ref, size, persisted);
            return;
        }
        self->disk_drops = p;
        self->cap_disk_drops = cap;
    }
    self->disk_drops[self->n_disk_drops++] = (s_drop_t){ref, size, persisted};
}

//  Writes entry's record (flags) in txn.
static int s_disk_rec_put(shoal_store_t *self, MDB_txn *txn, shoal_ref_t ref,
                          const s_entry_t *entry, uint32_t flags)
{
    uint8_t k[16];
    s_key_encode(ref, k);
    s_disk_rec_t rec = {.size = entry->size,
                        .flags = flags | (entry->sums ? S_DISK_SUMMED : 0),
                        .created_us = entry->created_us};
    MDB_val key = {sizeof k, k}, val = {sizeof rec, &rec};
    return S_MDB(mdb_put(txn, self->spill_dbi, &key, &val, 0));
}

//  Writes pieces of entry's bytes, from *done on, in txn, until all are written or budget
//  bytes were. 0 or an LMDB code.
static int s_pieces_put(shoal_store_t *self, MDB_txn *txn, shoal_ref_t ref, const s_entry_t *entry,
                        uint64_t *done, uint64_t budget)
{
    uint64_t written = 0;
    while (*done < entry->size && written < budget) {
        //  MDB_RESERVE: copied straight from the arena into LMDB's pages.
        uint64_t len = SHOAL__MIN((uint64_t)SHOAL_STORE_PIECE, entry->size - *done);
        uint8_t k[S_PIECE_KEY];
        s_piece_key(ref, (uint32_t)(*done / SHOAL_STORE_PIECE), k);
        MDB_val key = {sizeof k, k}, val = {(size_t)len + S_PIECE_SUM, NULL};
        int rc = S_MDB(mdb_put(txn, self->spill_dbi, &key, &val, MDB_RESERVE));
        if (rc)
            return rc;
        const uint8_t *src = self->base + entry->offset + *done;
        uint64_t sum = s_sum(src, (size_t)len);
        memcpy(val.mv_data, &sum, S_PIECE_SUM);
        memcpy((uint8_t *)val.mv_data + S_PIECE_SUM, src, (size_t)len);
        *done += len;
        written += len;
    }
    return 0;
}

static int s_disk_code(int rc)
{
    return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT ? SHOAL_EFULL
           : rc == ENOMEM                                     ? SHOAL_ENOMEM
                                                              : SHOAL_EIO;
}

//  The least recently used object that may be spilled now, or false.
static bool s_victim(shoal_store_t *self, const shoal_store_spill_hooks_t *hooks,
                     shoal_ref_t *ref_p)
{
    size_t n = 0;
    s_pins_scan(self, &n);
    size_t cursor = 0;
    shoal_ref_t ref;
    void *value;
    const s_entry_t *best = NULL;
    //  Linear in the objects: ~5 ns each, so 10,000 objects cost 50 us per victim, against
    //  the milliseconds it takes to write a 1 MiB piece.
    while (shoal__refmap_next(self->map, &cursor, &ref, &value)) {
        const s_entry_t *e = value;
        if (e->state != SHOAL_OBJ_SEALED || e->size == 0 || e->persisting || e->pending ||
            (best && e->seq >= best->seq))
            continue;
        //  A persisted object is on disk already: spilling it costs no disk room.
        if (!e->persisted &&
            (self->spill_used >= self->spill_cap || e->size > self->spill_cap - self->spill_used))
            continue;
        if (s_pinned(self->spans, n, e->offset, s_page_round(e->size)) ||
            (hooks && hooks->skip && hooks->skip(hooks->arg, ref)))
            continue;
        best = e;
        *ref_p = ref;
    }
    return best != NULL;
}

//  The spill of entry is on disk: gives up its arena range (limbo, as a delete does).
static void s_spilled(shoal_store_t *self, shoal_ref_t ref, s_entry_t *entry,
                      const shoal_store_spill_hooks_t *hooks, uint64_t *freed_p)
{
    s_range_release(self, entry);
    entry->state = SHOAL_OBJ_SPILLED;
    entry->offset = 0;
    s_mark_dirty(self, ref, entry);
    if (freed_p)
        *freed_p += s_page_round(entry->size);
    if (hooks && hooks->spilled)
        hooks->spilled(hooks->arg, ref, entry->size);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal__debug("store: spilled %s (%llu bytes) to %s", shoal_ref_format(ref, text),
                 (unsigned long long)entry->size, self->spill_path);
}

int shoal_store_spill(shoal_store_t *self, uint64_t budget, const shoal_store_spill_hooks_t *hooks,
                      uint64_t *freed_p)
{
    assert(self);
    if (freed_p)
        *freed_p = 0;
    if (!self->spill_env)
        return SHOAL_EFULL;
    int drc = s_disk_drops_commit(self); //  logged
    if (drc)
        return s_disk_code(drc);
    budget = SHOAL__MAX(budget, 1);
    uint64_t written = 0;
    bool progress = false, done_one = false;
    MDB_txn *txn = NULL;
    const char *what = "begin a transaction";
    int rc = 0;
    while (written < budget) {
        s_entry_t *entry = self->job ? shoal__refmap_get(self->map, self->job_ref) : NULL;
        if (self->job &&
            (!entry || entry->state != SHOAL_OBJ_SEALED || entry->offset != self->job_offset ||
             entry->persisted || entry->persisting ||
             (hooks && hooks->skip && hooks->skip(hooks->arg, self->job_ref)))) {
            //  Deleted (s_drop cleaned up), persisted meanwhile (its copy is complete), or
            //  wanted by the owner now: give up on it. Nothing of it is in txn: a job
            //  starts a call or follows a commit.
            if (entry && !entry->persisted)
                s_pieces_drop(self, self->job_ref, entry->size, false);
            self->job = false;
            entry = NULL;
        }
        if (!self->job) {
            //  One object made room: the caller asks again if it needs more, rather than
            //  this call starting on another object nobody may need on disk.
            if (done_one)
                break;
            shoal_ref_t ref;
            if (!s_victim(self, hooks, &ref))
                break;
            entry = shoal__refmap_get(self->map, ref);
            if (entry->persisted) {
                s_spilled(self, ref, entry, hooks, freed_p);
                progress = done_one = true;
                continue;
            }
            self->job = true;
            self->job_ref = ref;
            self->job_offset = entry->offset;
            self->job_done = 0;
            self->spill_used += entry->size;
        }
        if (!txn) {
            what = "begin a transaction";
            rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, 0, &txn));
            if (rc) {
                txn = NULL;
                goto fail;
            }
        }
        uint64_t before = self->job_done;
        what = "write a piece";
        rc = s_pieces_put(self, txn, self->job_ref, entry, &self->job_done, budget - written);
        if (rc)
            goto fail;
        written += self->job_done - before;
        progress = true;
        if (self->job_done < entry->size)
            continue;
        //  All pieces: the record goes in the same commit, before the range is given up.
        what = "write a record";
        entry->sums = true; //  s_pieces_put wrote them with their checksums
        rc = s_disk_rec_put(self, txn, self->job_ref, entry, 0);
        if (rc)
            goto fail;
        what = "commit";
        rc = s_fault() ? (mdb_txn_abort(txn), EIO) : mdb_txn_commit(txn);
        txn = NULL;
        if (rc)
            goto fail;
        self->job = false;
        //  A reader may have pinned it since it was chosen: it keeps its bytes either way
        //  (limbo), but the rule is that a pinned object is not spilled. Undo.
        size_t n = 0;
        s_pins_scan(self, &n);
        if (s_pinned(self->spans, n, entry->offset, s_page_round(entry->size))) {
            s_pieces_drop(self, self->job_ref, entry->size, false);
            continue;
        }
        s_spilled(self, self->job_ref, entry, hooks, freed_p);
        done_one = true;
    }
    if (txn) {
        what = "commit";
        rc = s_fault() ? (mdb_txn_abort(txn), EIO) : mdb_txn_commit(txn);
        txn = NULL;
        if (rc)
            goto fail;
    }
    return progress ? 0 : SHOAL_EFULL;

fail:
    if (txn)
        mdb_txn_abort(txn);
    //  What this call wrote of the current object is gone: start it over next time.
    if (self->job) {
        s_entry_t *entry = shoal__refmap_get(self->map, self->job_ref);
        s_pieces_drop(self, self->job_ref, entry ? entry->size : 0, false);
        self->job = false;
    }
    shoal__error("store: cannot %s in disk tier %s: %s", what, self->spill_path, mdb_strerror(rc));
    return s_disk_code(rc);
}

int shoal_store_persist_step(shoal_store_t *self, shoal_ref_t ref, uint64_t budget,
                             uint64_t *done_p)
{
    assert(self && done_p);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state == SHOAL_OBJ_ALLOCATED)
        return SHOAL_ESTATE;
    if (entry->persisted)
        return 0;
    if (!self->spill_env)
        return SHOAL_EFULL;
    bool spilled = entry->state == SHOAL_OBJ_SPILLED;
    char text[SHOAL_REF_TEXT_SIZE];
    if (!spilled && entry->size > self->persist_max) {
        shoal__error("store: cannot persist %s (%llu bytes): larger than the %llu bytes a "
                     "persisted object may have",
                     shoal_ref_format(ref, text), (unsigned long long)entry->size,
                     (unsigned long long)self->persist_max);
        return SHOAL_ETOOBIG;
    }
    if (!entry->persisting) {
        *done_p = 0; //  a fresh start, whatever the caller kept
        if (self->job && shoal_ref_equal(self->job_ref, ref)) {
            //  Half spilled: start over, whole.
            s_pieces_drop(self, ref, entry->size, false);
            self->job = false;
        }
    }
    /*  Pieces in commits of at most budget, the record with the last: until that commit
        the object is incomplete on disk (a crash leaves litter the next open sweeps),
        never persisted in part. Between steps entry->persisting keeps the spill away from
        it (its pieces would collide), and a delete drops what was written. */
    MDB_txn *txn = NULL;
    const char *what = "commit the deletes queued";
    int rc = s_disk_drops_commit(self);
    bool last = false;
    if (rc == 0) {
        what = "begin a transaction";
        rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, 0, &txn));
        if (rc)
            txn = NULL;
    }
    if (rc == 0 && !spilled) {
        what = "write a piece";
        rc = s_pieces_put(self, txn, ref, entry, done_p, SHOAL__MAX(budget, 1));
    }
    if (rc == 0) {
        last = spilled || *done_p == entry->size;
        if (last) {
            what = "write a record";
            if (!spilled)
                entry->sums = true; //  s_pieces_put wrote them with their checksums
            rc = s_disk_rec_put(self, txn, ref, entry, S_DISK_PERSISTED);
        }
    }
    if (rc == 0) {
        what = "commit";
        rc = s_fault() ? (mdb_txn_abort(txn), EIO) : mdb_txn_commit(txn);
        txn = NULL;
        if (rc == 0 && !spilled)
            entry->persisting = true;
    }
    if (rc == 0 && last) {
        //  The commit synced the pages; this syncs the meta page that names them, so the
        //  copy is on the disk when we return.
        what = "sync";
        rc = s_fault() ? EIO : mdb_env_sync(self->spill_env, 1);
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc) {
        //  Cut short, or maybe not durable: undo, so nothing claims what is not so.
        if (entry->persisting)
            s_pieces_drop(self, ref, 0, false);
        entry->persisting = false;
        *done_p = 0;
        shoal__error("store: cannot persist %s (%llu bytes): cannot %s in disk tier %s: %s",
                     shoal_ref_format(ref, text), (unsigned long long)entry->size, what,
                     self->spill_path, mdb_strerror(rc));
        return s_disk_code(rc);
    }
    if (!last)
        return SHOAL_EAGAIN;
    entry->persisting = false;
    entry->pending = false;
    if (spilled)
        self->spill_used -= SHOAL__MIN(entry->size, self->spill_used);
    self->persist_used += entry->size;
    entry->persisted = true;
    s_mark_dirty(self, ref, entry);
    self->sync_index = true;
    return 0;
}

int shoal_store_persist(shoal_store_t *self, shoal_ref_t ref)
{
    uint64_t done = 0;
    int rc;
    while ((rc = shoal_store_persist_step(self, ref, S_PERSIST_STEP, &done)) == SHOAL_EAGAIN)
        ;
    return rc;
}

uint64_t shoal_store_persist_max(const shoal_store_t *self)
{
    return self->persist_max;
}

//  Copies [offset, offset + size) of ref's pieces into dst in one read transaction. With
//  sums, each piece read is checked against its checksum first: a damaged one is an error
//  naming the object and the file (SHOAL_ECORRUPT), never wrong bytes.
static int s_pieces_read(shoal_store_t *self, shoal_ref_t ref, bool sums, uint64_t total,
                         uint64_t offset, uint64_t size, uint8_t *dst)
{
    MDB_txn *txn = NULL;
    int rc = S_MDB(mdb_txn_begin(self->spill_env, NULL, MDB_RDONLY, &txn));
    if (rc)
        txn = NULL;
    uint32_t piece = (uint32_t)(offset / SHOAL_STORE_PIECE);
    size_t head = sums ? S_PIECE_SUM : 0;
    char text[SHOAL_REF_TEXT_SIZE];
    while (rc == 0 && size > 0) {
        uint8_t k[S_PIECE_KEY];
        s_piece_key(ref, piece, k);
        MDB_val key = {sizeof k, k}, val;
        rc = S_MDB(mdb_get(txn, self->spill_dbi, &key, &val));
        uint64_t start = (uint64_t)piece * SHOAL_STORE_PIECE;
        uint64_t want = SHOAL__MIN((uint64_t)SHOAL_STORE_PIECE, total - start);
        if (rc == MDB_NOTFOUND || (rc == 0 && val.mv_size != want + head)) {
            shoal__error("store: disk tier %s: piece %u of %s is missing or of the wrong size",
                         self->spill_path, piece, shoal_ref_format(ref, text));
            mdb_txn_abort(txn);
            return SHOAL_ECORRUPT;
        }
        if (rc)
            break;
        const uint8_t *bytes = (const uint8_t *)val.mv_data + head;
        uint64_t sum;
        if (sums && (memcpy(&sum, val.mv_data, sizeof sum), sum != s_sum(bytes, (size_t)want))) {
            shoal__error("store: disk tier %s: piece %u of %s does not match its checksum: "
                         "the file is damaged",
                         self->spill_path, piece, shoal_ref_format(ref, text));
            mdb_txn_abort(txn);
            return SHOAL_ECORRUPT;
        }
        uint64_t at = offset - start, len = SHOAL__MIN(size, want - at);
        memcpy(dst, bytes + at, (size_t)len);
        dst += len;
        offset += len;
        size -= len;
        piece++;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc) {
        shoal__error("store: cannot read disk tier %s: %s", self->spill_path, mdb_strerror(rc));
        return s_mdb_is_corrupt(rc) ? SHOAL_ECORRUPT : SHOAL_EIO;
    }
    return 0;
}

int shoal_store_read(shoal_store_t *self, shoal_ref_t ref, uint64_t offset, uint64_t size,
                     void *dst)
{
    assert(self);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state != SHOAL_OBJ_SPILLED)
        return SHOAL_ESTATE;
    if (offset > entry->size || size > entry->size - offset || (size && !dst))
        return SHOAL_EINVAL;
    return s_pieces_read(self, ref, entry->sums, entry->size, offset, size, dst);
}

int shoal_store_restore(shoal_store_t *self, shoal_ref_t ref, shoal_store_obj_t *obj)
{
    assert(self);
    s_entry_t *entry = shoal__refmap_get(self->map, ref);
    if (!entry)
        return SHOAL_ENOTFOUND;
    if (entry->state != SHOAL_OBJ_SPILLED)
        return SHOAL_ESTATE;
    uint64_t span = s_page_round(entry->size);
    //  The same reservations as alloc: the restored object's later delete cannot fail.
    int rc = s_free_reserve(self, self->spaced + self->limbo_len + 2);
    if (rc == 0)
        rc = s_limbo_reserve(self, self->limbo_len + self->spaced + 1);
    if (rc == 0 && !entry->persisted)
        rc = s_reserve((void **)&self->restored, &self->restored_cap, self->restored_len + 1,
                       sizeof *self->restored);
    if (rc)
        return rc;
    uint64_t offset = 0;
    if (span && !s_room_take(self, span, &offset))
        return SHOAL_EFULL;
    rc = s_pieces_read(self, ref, entry->sums, entry->size, 0, entry->size, self->base + offset);
    if (rc) {
        if (span)
            s_free_give(self, offset, span);
        return rc;
    }
    if (span) {
        self->used += span;
        self->spaced++;
    }
    entry->offset = offset;
    entry->state = SHOAL_OBJ_SEALED;
    //  A new range no reader can have seen: a delete before the next flush frees it at once.
    entry->published = false;
    entry->seq = ++self->seq;
    s_mark_dirty(self, ref, entry);
    //  A persisted object keeps its copy (a later spill of it is free); others give theirs
    //  back to the disk tier, but only after the next index commit (s_restored_drop): until
    //  then the index says SPILLED, and a kill would otherwise lose the object.
    if (!entry->persisted) {
        self->spill_used -= SHOAL__MIN(entry->size, self->spill_used);
        self->restored[self->restored_len++] = ref;
    }
    if (obj)
        s_fill_obj(self, ref, entry, obj);
    return 0;
}

uint64_t shoal_store_spill_used(const shoal_store_t *self)
{
    return self->spill_used;
}

uint64_t shoal_store_persist_used(const shoal_store_t *self)
{
    return self->persist_used;
}

uint64_t shoal_store_spill_capacity(const shoal_store_t *self)
{
    return self->spill_env ? self->spill_cap : 0;
}

const char *shoal_store_spill_path(const shoal_store_t *self)
{
    return self->spill_env ? self->spill_path : "";
}

//  --------------------------------------------------------------------- other processes

//  Maps [offset, offset + size) of fd between two PROT_NONE guard pages, so an overrun or
//  underrun faults even when the kernel would have put another mapping right next to it
//  (it hands out addresses top-down, so neighbours are the rule, not the exception).
//  Size 0 maps only the guards: a valid pointer with nothing behind it, as for an empty
//  object. shoal_arena_unmap removes the guards with the mapping.
static int s_map_guarded(int fd, uint64_t offset, uint64_t size, int prot, int flags, void **p)
{
    uint64_t span = s_page_round(size);
    size_t total = span + 2 * S_PAGE;
    uint8_t *area =
        mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        return errno;
    if (span && mmap(area + S_PAGE, span, prot, MAP_SHARED | MAP_FIXED | flags, fd,
                     (off_t)offset) == MAP_FAILED) {
        int err = errno;
        munmap(area, total);
        return err;
    }
    *p = area + S_PAGE;
    return 0;
}

int shoal_arena_map(const char *path, void **base_p, uint64_t *size_p)
{
    if (!path || !base_p || !size_p)
        return SHOAL_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        shoal__error("store: cannot open arena %s: %s", path, strerror(errno));
        return SHOAL_EIO;
    }
    struct stat st;
    int err = fstat(fd, &st) != 0 ? errno : st.st_size <= 0 ? EINVAL : 0;
    void *base = NULL;
    //  No MAP_POPULATE: a reader touches a few objects, not the whole arena.
    if (err == 0)
        err = s_map_guarded(fd, 0, (uint64_t)st.st_size, PROT_READ, 0, &base);
    close(fd);
    if (err) {
        shoal__error("store: cannot map arena %s: %s", path, strerror(err));
        return SHOAL_EIO;
    }
    *base_p = base;
    *size_p = (uint64_t)st.st_size;
    return 0;
}

//  Maps [offset, offset + size) of the arena at path writable (size UINT64_MAX: to the
//  end); with check, only when the file opened is device dev, inode ino.
static int s_map_range(const char *path, bool check, uint64_t dev, uint64_t ino, uint64_t offset,
                       uint64_t size, void **p, uint64_t *mapped_p)
{
    if (!path || !p || offset % S_PAGE)
        return SHOAL_EINVAL;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (check && errno == ENOENT)
            return SHOAL_ENOTFOUND;
        shoal__error("store: cannot open arena %s: %s", path, strerror(errno));
        return SHOAL_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        shoal__error("store: cannot stat arena %s: %s", path, strerror(errno));
        close(fd);
        return SHOAL_EIO;
    }
    //  Checked on the descriptor we map from: a path checked and then opened again could
    //  name a new arena renamed over it in between.
    if (check && ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)) {
        close(fd);
        return SHOAL_ENOTFOUND;
    }
    if (size == UINT64_MAX)
        size = offset <= (uint64_t)st.st_size ? (uint64_t)st.st_size - offset : 0;
    //  Beyond the end of the file a mapping raises SIGBUS on access: refuse it here.
    if (offset > (uint64_t)st.st_size || size > (uint64_t)st.st_size - offset) {
        close(fd);
        return SHOAL_EINVAL;
    }
    //  MAP_POPULATE: the writer is about to write the whole range.
    int err = s_map_guarded(fd, offset, size, PROT_READ | PROT_WRITE, MAP_POPULATE, p);
    close(fd);
    if (err) {
        shoal__error("store: cannot map %llu bytes at %llu of arena %s: %s",
                     (unsigned long long)size, (unsigned long long)offset, path, strerror(err));
        return SHOAL_EIO;
    }
    if (mapped_p)
        *mapped_p = size;
    return 0;
}

int shoal_arena_map_range(const char *path, uint64_t offset, uint64_t size, void **p)
{
    return size == UINT64_MAX ? SHOAL_EINVAL
                              : s_map_range(path, false, 0, 0, offset, size, p, NULL);
}

int shoal_arena_map_checked(const char *path, uint64_t dev, uint64_t ino, uint64_t offset,
                            uint64_t size, void **p, uint64_t *mapped_p)
{
    return s_map_range(path, true, dev, ino, offset, size, p, mapped_p);
}

void shoal_arena_unmap(void *p, uint64_t size)
{
    if (!p)
        return;
    munmap((uint8_t *)p - S_PAGE, s_page_round(size) + 2 * S_PAGE);
}

//  ------------------------------------------------------------------- same-host readers

struct shoal_store_reader {
    _Atomic size_t refs;  //  the opener's, plus one per view
    pthread_mutex_t lock; //  gets share one read transaction handle
    uint8_t *base;        //  the arena, read-only
    uint64_t capacity;
    s_pins_header_t *pins;
    s_pin_t *slots;
    uint32_t nslots;
    size_t pins_size;
    MDB_env *env;
    MDB_txn *txn; //  reset between gets: never holds a snapshot between calls
    MDB_dbi dbi;
    uint8_t meta[sizeof(s_meta_t)]; //  the index's meta record at open
    uint64_t me;                    //  holder value: pid | start-time tag << 32
    uint64_t start;                 //  our start time, whole
    _Atomic uint32_t hint;          //  where the next free-slot search starts
};

static void s_reader_free(shoal_store_reader_t *self)
{
    if (self->txn)
        mdb_txn_abort(self->txn);
    if (self->env)
        mdb_env_close(self->env);
    if (self->base)
        munmap(self->base, self->capacity);
    if (self->pins)
        munmap(self->pins, self->pins_size);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

size_t shoal_store_reader_views(shoal_store_reader_t *self)
{
    return self ? atomic_load(&self->refs) - 1 : 0;
}

static void s_reader_unref(shoal_store_reader_t *self)
{
    if (atomic_fetch_sub_explicit(&self->refs, 1, memory_order_acq_rel) == 1)
        s_reader_free(self);
}

//  Maps the arena read-only. *st receives its stat.
static int s_reader_map_arena(shoal_store_reader_t *self, const char *path, struct stat *st)
{
    int fd = S_SYS(open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd < 0) {
        if (errno == ENOENT)
            return SHOAL_ENOTFOUND;
        shoal__error("store: cannot open arena %s: %s", path, strerror(errno));
        return SHOAL_EIO;
    }
    int rc = 0;
    if (S_SYS(fstat(fd, st)) != 0) {
        shoal__error("store: cannot stat arena %s: %s", path, strerror(errno));
        rc = SHOAL_EIO;
    } else if (!S_ISREG(st->st_mode) || st->st_size <= 0 ||
               (uint64_t)st->st_size > S_MAX_CAPACITY) {
        shoal__error("store: arena %s is not a regular file of a usable size", path);
        rc = SHOAL_EIO;
    } else {
        //  Whole and pre-faulted: after this, a get of 1 GiB costs what one of 1 KiB does.
        void *base = s_fault() ? (errno = EIO, MAP_FAILED)
                               : mmap(NULL, (size_t)st->st_size, PROT_READ,
                                      MAP_SHARED | MAP_POPULATE, fd, 0);
        if (base == MAP_FAILED) {
            shoal__error("store: cannot map arena %s: %s", path, strerror(errno));
            rc = SHOAL_EIO;
        } else {
            self->base = base;
            self->capacity = (uint64_t)st->st_size;
        }
    }
    close(fd);
    return rc;
}

//  Maps the pin table read-write and checks that it belongs to the arena (arena).
static int s_reader_map_pins(shoal_store_reader_t *self, const char *path, const struct stat *arena)
{
    int fd = S_SYS(open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (fd < 0) {
        if (errno == ENOENT)
            return SHOAL_ENOTFOUND;
        shoal__error("store: cannot open pin table %s: %s", path, strerror(errno));
        return SHOAL_EIO;
    }
    struct stat st;
    int rc = 0;
    if (S_SYS(fstat(fd, &st)) != 0) {
        shoal__error("store: cannot stat pin table %s: %s", path, strerror(errno));
        rc = SHOAL_EIO;
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < s_pins_bytes(1) ||
               (uint64_t)st.st_size > s_pins_bytes(S_PINS_MAX)) {
        shoal__warn("store: pin table %s has an unusable size", path);
        rc = SHOAL_ECORRUPT;
    } else {
        void *map = s_fault()
                        ? (errno = EIO, MAP_FAILED)
                        : mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            shoal__error("store: cannot map pin table %s: %s", path, strerror(errno));
            rc = SHOAL_EIO;
        } else {
            self->pins = map;
            self->pins_size = (size_t)st.st_size;
        }
    }
    close(fd);
    if (rc)
        return rc;
    const s_pins_header_t *h = self->pins;
    const char *why = NULL;
    if (memcmp(h->magic, S_PINS_MAGIC, 8) != 0 || h->version != S_PINS_VERSION ||
        h->slot_size != sizeof(s_pin_t) || h->nslots == 0 || h->nslots > S_PINS_MAX ||
        s_pins_bytes(h->nslots) != self->pins_size)
        why = "it has another format";
    else if (h->arena_dev != (uint64_t)arena->st_dev || h->arena_ino != (uint64_t)arena->st_ino)
        why = "it belongs to another arena file";
    else if (atomic_load(&self->pins->retired))
        why = "the store was reset or destroyed";
    if (why) {
        shoal__warn("store: pin table %s does not describe the arena: %s", path, why);
        return SHOAL_ECORRUPT;
    }
    uint64_t ns = s_pidns();
    if (h->pidns && ns && h->pidns != ns) {
        shoal__error("store: %s: this process runs in another PID namespace than the store's "
                     "owner, which could not tell whether it is alive",
                     path);
        return SHOAL_EIO;
    }
    self->slots = (s_pin_t *)(self->pins + 1);
    self->nslots = h->nslots;
    return 0;
}

//  Opens the index read-only and checks its meta record against the arena.
static int s_reader_open_index(shoal_store_reader_t *self, const char *path,
                               const struct stat *arena)
{
    const char *what = "create an environment";
    int rc = S_MDB(mdb_env_create(&self->env));
    if (rc) {
        self->env = NULL;
        goto fail;
    }
    //  The owner's map size, so the owner's growth never outruns our mapping.
    what = "set the map size";
    rc = S_MDB(mdb_env_set_mapsize(self->env, S_MAPSIZE));
    if (rc)
        goto fail;
    //  NOTLS: the one transaction handle is not tied to a thread (gets come from any
    //  thread, under the mutex), and it keeps its reader slot between reset and renew.
    what = "open";
    rc = S_MDB(mdb_env_open(self->env, path, MDB_RDONLY | MDB_NOTLS | MDB_NOSUBDIR, 0600));
    if (rc == ENOENT)
        return SHOAL_ENOTFOUND;
    if (rc)
        goto fail;
    what = "begin a transaction";
    rc = S_MDB(mdb_txn_begin(self->env, NULL, MDB_RDONLY, &self->txn));
    if (rc) {
        self->txn = NULL;
        goto fail;
    }
    what = "open the database";
    rc = S_MDB(mdb_dbi_open(self->txn, NULL, 0, &self->dbi));
    if (rc)
        goto fail;
    MDB_val key = {strlen(S_META_KEY), S_META_KEY}, val;
    what = "read the header";
    rc = S_MDB(mdb_get(self->txn, self->dbi, &key, &val));
    const char *why = rc == MDB_NOTFOUND ? "it has no header" : NULL;
    if (rc == 0) {
        why = s_meta_mismatch(&val, (uint64_t)arena->st_size, (uint64_t)arena->st_dev,
                              (uint64_t)arena->st_ino);
        if (!why)
            memcpy(self->meta, val.mv_data, sizeof self->meta);
    }
    if (why) {
        shoal__warn("store: index %s does not describe the arena: %s", path, why);
        return SHOAL_ECORRUPT;
    }
    if (rc)
        goto fail;
    //  From here on the handle only ever holds a snapshot inside a get.
    mdb_txn_reset(self->txn);
    return 0;

fail:
    shoal__error("store: cannot %s for index %s: %s", what, path, mdb_strerror(rc));
    return s_mdb_is_corrupt(rc) ? SHOAL_ECORRUPT : rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
}

int shoal_store_reader_open(const char *dir, const char *arena_path, shoal_store_reader_t **self_p)
{
    if (!dir || !arena_path || !self_p)
        return SHOAL_EINVAL;
    char index_path[PATH_MAX], pins_path[PATH_MAX];
    if (snprintf(index_path, sizeof index_path, "%s/index.mdb", dir) >= (int)sizeof index_path ||
        shoal_store_pins_path_for(arena_path, pins_path, sizeof pins_path) != 0)
        return SHOAL_EINVAL;
    shoal_store_reader_t *self = s_calloc(1, sizeof *self);
    if (!self)
        return SHOAL_ENOMEM;
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self);
        return SHOAL_ENOMEM;
    }
    atomic_init(&self->refs, 1);
    struct stat arena;
    int rc = s_reader_map_arena(self, arena_path, &arena);
    if (rc == 0)
        rc = s_reader_map_pins(self, pins_path, &arena);
    if (rc == 0)
        rc = s_reader_open_index(self, index_path, &arena);
    if (rc) {
        s_reader_free(self);
        return rc;
    }
    //  Who we are, as the owner's dead-holder check sees it; 0: no /proc, pid alone.
    pid_t pid = getpid();
    char state;
    if (s_proc_stat(pid, &state, &self->start) != 0)
        self->start = 0;
    self->me = (uint64_t)(uint32_t)pid | s_holder_tag(self->start) << 32;
    //  Processes start their slot searches apart, so they rarely contend for a line.
    atomic_init(&self->hint, (uint32_t)(((uint64_t)pid * 2654435761u) % self->nslots));
    *self_p = self;
    return 0;
}

//  Looks ref up in a fresh snapshot of the index. 0, SHOAL_ENOTFOUND, or SHOAL_EIO (the
//  store was reset or destroyed, or the index cannot be read).
static int s_reader_lookup(shoal_store_reader_t *self, shoal_ref_t ref, s_record_t *rec)
{
    if (atomic_load(&self->pins->retired))
        return SHOAL_EIO;
    int rc = S_MDB(mdb_txn_renew(self->txn));
    if (rc)
        return SHOAL_EIO;
    MDB_val key = {strlen(S_META_KEY), S_META_KEY}, val;
    rc = S_MDB(mdb_get(self->txn, self->dbi, &key, &val));
    if (rc == MDB_NOTFOUND || (rc == 0 && (val.mv_size != sizeof self->meta ||
                                           memcmp(val.mv_data, self->meta, sizeof self->meta))))
        rc = EIO; //  the owner reset the index for another arena
    uint8_t k[16];
    s_key_encode(ref, k);
    key.mv_size = sizeof k;
    key.mv_data = k;
    if (rc == 0)
        rc = S_MDB(mdb_get(self->txn, self->dbi, &key, &val));
    if (rc == 0 && val.mv_size != sizeof *rec)
        rc = EIO;
    if (rc == 0)
        memcpy(rec, val.mv_data, sizeof *rec);
    mdb_txn_reset(self->txn);
    return rc == 0 ? 0 : rc == MDB_NOTFOUND ? SHOAL_ENOTFOUND : SHOAL_EIO;
}

//  Claims a free slot and publishes a pin on rec's range in it. 0 or SHOAL_EFULL.
static int s_pin_claim(shoal_store_reader_t *self, shoal_ref_t ref, const s_record_t *rec,
                       uint32_t *slot_p)
{
    uint32_t n = self->nslots;
    uint32_t first = atomic_load_explicit(&self->hint, memory_order_relaxed) % n;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = first + k < n ? first + k : first + k - n;
        s_pin_t *pin = &self->slots[i];
        uint64_t expect = 0;
        if (atomic_load_explicit(&pin->holder, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong(&pin->holder, &expect, self->me | S_PIN_CLAIMING))
            continue;
        //  While CLAIMING, the owner treats the slot as pinning everything: fill it, then
        //  publish (seq_cst, a full barrier: the validating look-up reads the index after).
        atomic_store_explicit(&pin->start, self->start, memory_order_relaxed);
        atomic_store_explicit(&pin->offset, rec->offset, memory_order_relaxed);
        atomic_store_explicit(&pin->size, rec->size, memory_order_relaxed);
        atomic_store_explicit(&pin->ref_hi, ref.hi, memory_order_relaxed);
        atomic_store_explicit(&pin->ref_lo, ref.lo, memory_order_relaxed);
        expect = self->me | S_PIN_CLAIMING;
        //  A CAS, not a store: if the owner took us for dead and cleared the slot (it cannot
        //  while we live, but a store would then publish into a slot someone else may own).
        if (!atomic_compare_exchange_strong(&pin->holder, &expect, self->me))
            continue;
        atomic_thread_fence(memory_order_seq_cst);
        atomic_store_explicit(&self->hint, i + 1, memory_order_relaxed);
        *slot_p = i;
        return 0;
    }
    return SHOAL_EFULL;
}

//  Releases our pin in slot i (a CAS: a slot the owner cleared is left to its new holder).
static void s_pin_drop(shoal_store_reader_t *self, uint32_t i)
{
    uint64_t expect = self->me;
    atomic_compare_exchange_strong(&self->slots[i].holder, &expect, 0);
}

//  reader_get (want SEALED) and pin_writing (want ALLOCATED).
static int s_reader_pin(shoal_store_reader_t *self, shoal_ref_t ref, uint32_t want,
                        shoal_store_view_t *view)
{
    if (!view)
        return SHOAL_EINVAL;
    memset(view, 0, sizeof *view);
    if (!self)
        return SHOAL_EINVAL;
    pthread_mutex_lock(&self->lock);
    uint32_t slot = S_PIN_NONE;
    s_record_t rec, again;
    int rc = s_reader_lookup(self, ref, &rec);
    if (rc == 0 && rec.state != want)
        rc = rec.state == SHOAL_OBJ_ALLOCATED ? SHOAL_EAGAIN
             : rec.state == SHOAL_OBJ_SEALED  ? SHOAL_ESTATE
                                              : SHOAL_ENOTFOUND;
    if (rc == 0 && (rec.offset % S_PAGE || rec.size > self->capacity ||
                    rec.offset > self->capacity - s_page_round(rec.size))) {
        shoal__warn("store: index record of an object lies outside the %llu-byte arena",
                    (unsigned long long)self->capacity);
        rc = SHOAL_EIO;
    }
    //  An empty object has no bytes to protect: no pin.
    if (rc == 0 && rec.size > 0) {
        if (shoal__store_reader_hook)
            shoal__store_reader_hook(shoal__store_reader_hook_arg);
        rc = s_pin_claim(self, ref, &rec, &slot);
        //  Validate in a fresh snapshot, taken after the pin was published: if the object is
        //  still there, the owner will see our pin before it frees the range.
        if (rc == 0)
            rc = s_reader_lookup(self, ref, &again);
        if (rc == 0 &&
            (again.state != want || again.offset != rec.offset || again.size != rec.size))
            rc = SHOAL_ENOTFOUND; //  deleted (and maybe stored anew) meanwhile
        if (rc && slot != S_PIN_NONE)
            s_pin_drop(self, slot);
    }
    pthread_mutex_unlock(&self->lock);
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&self->refs, 1, memory_order_relaxed);
    view->data = self->base + rec.offset;
    view->size = rec.size;
    view->reader_ = self;
    view->pin_ = slot;
    return 0;
}

int shoal_store_reader_get(shoal_store_reader_t *self, shoal_ref_t ref, shoal_store_view_t *view)
{
    return s_reader_pin(self, ref, SHOAL_OBJ_SEALED, view);
}

int shoal_store_reader_pin_writing(shoal_store_reader_t *self, shoal_ref_t ref,
                                   shoal_store_view_t *view)
{
    return s_reader_pin(self, ref, SHOAL_OBJ_ALLOCATED, view);
}

void shoal_store_view_release(shoal_store_view_t *view)
{
    if (!view || !view->reader_)
        return;
    shoal_store_reader_t *reader = view->reader_;
    if (view->pin_ != S_PIN_NONE && view->pin_ < reader->nslots)
        s_pin_drop(reader, view->pin_);
    memset(view, 0, sizeof *view);
    s_reader_unref(reader);
}

void shoal_store_reader_close(shoal_store_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_reader_t *self = *self_p;
    *self_p = NULL;
    s_reader_unref(self);
}
