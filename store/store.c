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
      device and inode). Readers skip keys that are not 16 bytes long. */
#include "store.h"

#include "common.h"
#include "refmap.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
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
#define S_META_MAGIC   "shoalidx"
#define S_META_VERSION 1u

//  One index record. 32 bytes, so a leaf entry (8-byte node header, 16-byte key, 2-byte
//  slot) is 58 bytes: about 70 objects per 4 KiB LMDB page.
typedef struct {
    uint64_t offset;
    uint64_t size;
    uint32_t state;
    uint32_t reserved; //  0; room for flags (persist, spilled) without a format change
    int64_t created_us;
} s_record_t;

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
    int state;
    bool dirty; //  its ref is in the dirty list
} s_entry_t;

typedef struct {
    uint64_t offset;
    uint64_t length;
} s_range_t;

struct shoal_store {
    char arena_path[PATH_MAX];
    char index_path[PATH_MAX];
    char lock_path[PATH_MAX];
    uint64_t capacity;
    int arena_fd;       //  kept open: it carries the flock that makes us the only owner
    bool arena_created; //  by this open: removed again if the open fails
    uint64_t arena_dev;
    uint64_t arena_ino;
    uint8_t *base;
    MDB_env *env;
    MDB_dbi dbi;
    shoal__refmap_t *map; //  ref -> s_entry_t *

    //  Free list, sorted by offset, no two ranges adjacent: the ranges are the gaps
    //  between spaced objects, so there are never more than spaced + 1 of them. alloc
    //  keeps free_cap >= spaced + 1, hence a free (merge or insert) never allocates.
    s_range_t *free;
    size_t free_len;
    size_t free_cap;
    size_t spaced; //  objects that take space (size > 0)
    uint64_t used; //  bytes reserved, page-rounded

    //  Dirty list. May hold a ref twice (deleted and allocated again between flushes) or a
    //  ref no longer in the map (deleted): flush writes whatever the map says now.
    //  dirty_cap >= dirty_len + clean always, so marking a clean entry dirty never
    //  allocates.
    shoal_ref_t *dirty;
    size_t dirty_len;
    size_t dirty_cap;
    size_t clean; //  entries in the map whose ref is not in the dirty list
};

//  --------------------------------------------------------------------- fault injection

int shoal__store_fail_at = 0;

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
    obj->data = self->base + entry->offset;
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

//  Opens (or creates) the arena file, locks it, sizes and maps it. *why is set when the
//  arena's previous contents cannot be trusted, so the index must be reset.
static int s_arena_open(shoal_store_t *self, const char **why)
{
    //  O_NOFOLLOW: /dev/shm is world-writable; never follow someone else's symlink.
    //  O_EXCL first, to know whether this open created the file.
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
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
                     errno == EWOULDBLOCK ? "another process owns this store" : strerror(errno));
        return SHOAL_EIO;
    }
    struct stat st;
    if (S_SYS(fstat(fd, &st)) != 0) {
        shoal__error("store: cannot stat arena %s: %s", self->arena_path, strerror(errno));
        return SHOAL_EIO;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        shoal__error("store: arena %s is not a regular file owned by uid %u", self->arena_path,
                     (unsigned)geteuid());
        return SHOAL_EIO;
    }
    if ((st.st_mode & 077) && fchmod(fd, 0600) != 0)
        shoal__warn("store: cannot restrict arena %s to mode 0600: %s", self->arena_path,
                    strerror(errno));
    if ((uint64_t)st.st_size != self->capacity) {
        if (st.st_size == 0)
            *why = "its arena is new (first start, or the arena file was removed)";
        else {
            shoal__warn("store: arena %s is %llu bytes, not the configured %llu: resetting "
                        "the store",
                        self->arena_path, (unsigned long long)st.st_size,
                        (unsigned long long)self->capacity);
            *why = "its arena was resized";
        }
        if (S_SYS(ftruncate(fd, (off_t)self->capacity)) != 0) {
            shoal__error("store: cannot size arena %s to %llu bytes: %s", self->arena_path,
                         (unsigned long long)self->capacity, strerror(errno));
            return SHOAL_EIO;
        }
    }
    //  Claim the tmpfs pages now: a full /dev/shm then fails here with ENOSPC instead of
    //  a SIGBUS on some later write (or the OOM killer). Cheap for pages already there.
    if (S_SYS(fallocate(fd, 0, 0, (off_t)self->capacity)) != 0 && errno != EOPNOTSUPP &&
        errno != ENOSYS) {
        shoal__error("store: cannot reserve %llu bytes for arena %s: %s",
                     (unsigned long long)self->capacity, self->arena_path, strerror(errno));
        return SHOAL_EIO;
    }
    //  Pre-fault once (MAP_POPULATE): 256 MiB take ~40 ms to fill when mapped and touched
    //  against ~270 ms through fresh page faults.
    void *base = s_fault() ? (errno = EIO, MAP_FAILED)
                           : mmap(NULL, self->capacity, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        shoal__error("store: cannot map arena %s (%llu bytes): %s", self->arena_path,
                     (unsigned long long)self->capacity, strerror(errno));
        return SHOAL_EIO;
    }
    self->base = base;
    self->arena_dev = (uint64_t)st.st_dev;
    self->arena_ino = (uint64_t)st.st_ino;
    return 0;
}

//  ------------------------------------------------------------------------------- index

static int s_env_open(shoal_store_t *self)
{
    int rc = S_MDB(mdb_env_create(&self->env));
    if (rc) {
        self->env = NULL;
        return rc;
    }
    rc = S_MDB(mdb_env_set_mapsize(self->env, S_MAPSIZE));
    //  NOSYNC: the index survives a process kill (the OS has the pages), not a power cut;
    //  arena bytes in /dev/shm would not survive that either.
    if (rc == 0)
        rc = S_MDB(mdb_env_open(self->env, self->index_path, MDB_NOSUBDIR | MDB_NOSYNC, 0600));
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

static int s_row_by_offset(const void *a, const void *b)
{
    const s_row_t *x = a, *y = b;
    return x->rec.offset < y->rec.offset ? -1 : x->rec.offset > y->rec.offset;
}

//  Why an index whose meta record is m cannot describe our arena, or NULL if it can.
static const char *s_meta_mismatch(const shoal_store_t *self, const MDB_val *m)
{
    s_meta_t meta;
    if (m->mv_size != sizeof meta)
        return "its header has the wrong size";
    memcpy(&meta, m->mv_data, sizeof meta);
    if (memcmp(meta.magic, S_META_MAGIC, 8) != 0 || meta.version != S_META_VERSION ||
        meta.page != S_PAGE)
        return "its header has another format";
    if (meta.capacity != self->capacity)
        return "it describes an arena of another capacity";
    if (meta.arena_dev != self->arena_dev || meta.arena_ino != self->arena_ino)
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
    if (rc == 0) {
        records--;
        if (!why)
            why = s_meta_mismatch(self, &val);
    } else if (rc == MDB_NOTFOUND) {
        if (!why && records > 0)
            why = "it has no header";
    } else
        goto mdb_fail;

    if (why) {
        if (records > 0)
            shoal__warn("store: resetting index %s (%zu objects): %s", self->index_path, records,
                        why);
        what = "empty the database";
        rc = S_MDB(mdb_drop(txn, dbi, 0));
        if (rc)
            goto mdb_fail;
    } else {
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

        //  Keep sealed objects that lie inside the arena and overlap nobody. Of two that
        //  overlap, neither can be trusted: drop both.
        size_t unsealed = 0, outside = 0, overlapping = 0;
        for (size_t i = 0; i < nrows; i++) {
            s_record_t *r = &rows[i].rec;
            if (r->state != SHOAL_OBJ_SEALED) {
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
        entry->offset = row->rec.offset;
        entry->size = row->rec.size;
        entry->state = SHOAL_OBJ_SEALED;
        entry->created_us = row->rec.created_us;
        entry->dirty = false;
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
    return 0;

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
    if (self->base)
        munmap(self->base, self->capacity);
    if (self->arena_fd >= 0)
        close(self->arena_fd);
    free(self->free);
    free(self->dirty);
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
    rc = shoal_store_arena_path_for(config->dir, config->name, self->arena_path,
                                    sizeof self->arena_path);
    if (rc)
        goto fail;
    const char *why = NULL;
    rc = s_arena_open(self, &why);
    if (rc == 0)
        rc = s_index_open(self, why);
    if (rc)
        goto fail;
    shoal__debug("store: opened %s (%llu bytes, %zu objects re-adopted)", self->arena_path,
                 (unsigned long long)self->capacity, shoal__refmap_size(self->map));
    *self_p = self;
    return 0;

fail:
    //  Do not leave a fallocated arena that nobody owns in /dev/shm (it is RAM); one that
    //  existed before stays, with whatever objects it holds.
    if (self->arena_created && unlink(self->arena_path) != 0)
        shoal__warn("store: cannot remove arena %s: %s", self->arena_path, strerror(errno));
    s_store_free(self);
    return rc;
}

void shoal_store_close(shoal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_t *self = *self_p;
    //  flush logs its own failure; what it could not write is lost with this process,
    //  as after a kill: unsealed objects are aborted on the next open anyway.
    shoal_store_flush(self);
    s_store_free(self);
    *self_p = NULL;
}

void shoal_store_destroy(shoal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_t *self = *self_p;
    //  Unlink while we still hold the arena lock, so no new owner opens the old files.
    if (unlink(self->arena_path) != 0 && errno != ENOENT)
        shoal__warn("store: cannot remove arena %s: %s", self->arena_path, strerror(errno));
    s_index_unlink(self);
    s_store_free(self);
    *self_p = NULL;
}

const char *shoal_store_arena_path(const shoal_store_t *self)
{
    return self->arena_path;
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

int shoal_store_alloc(shoal_store_t *self, shoal_ref_t ref, uint64_t size, shoal_store_obj_t *obj)
{
    assert(self && obj);
    if (shoal__refmap_get(self->map, ref))
        return SHOAL_EEXIST;
    if (size > self->capacity)
        return SHOAL_ETOOBIG;
    uint64_t span = s_page_round(size);
    //  Reserve, before changing anything, all memory that this object's later seal and
    //  delete could need: those calls cannot fail.
    int rc = s_dirty_reserve(self, self->dirty_len + 1 + self->clean);
    if (rc == 0 && span)
        rc = s_free_reserve(self, self->spaced + 2);
    if (rc)
        return rc;
    uint64_t offset = 0;
    if (span && !s_free_take(self, span, &offset))
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
    entry->created_us = shoal__wall_us();
    entry->dirty = true;
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

static void s_drop(shoal_store_t *self, shoal_ref_t ref)
{
    s_entry_t *entry = shoal__refmap_remove(self->map, ref);
    assert(entry);
    uint64_t span = s_page_round(entry->size);
    if (span) {
        s_free_give(self, entry->offset, span);
        self->used -= span;
        self->spaced--;
    }
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
    s_fill_obj(self, ref, entry, obj);
    return 0;
}

bool shoal_store_next(const shoal_store_t *self, size_t *cursor, shoal_store_obj_t *obj)
{
    shoal_ref_t ref;
    void *value;
    while (shoal__refmap_next(self->map, cursor, &ref, &value)) {
        const s_entry_t *entry = value;
        if (entry->state == SHOAL_OBJ_SEALED) {
            s_fill_obj(self, ref, entry, obj);
            return true;
        }
    }
    return false;
}

int shoal_store_flush(shoal_store_t *self)
{
    assert(self);
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
            s_record_t rec = {entry->offset, entry->size, (uint32_t)entry->state, 0,
                              entry->created_us};
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
    }
    self->dirty_len = 0;
    return 0;

fail:
    shoal__error("store: cannot %s in index %s (%zu changes kept for the next flush): %s", what,
                 self->index_path, self->dirty_len, mdb_strerror(rc));
    return rc == MDB_MAP_FULL ? SHOAL_EFULL : SHOAL_EIO;
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

int shoal_arena_map_range(const char *path, uint64_t offset, uint64_t size, void **p)
{
    if (!path || !p || offset % S_PAGE)
        return SHOAL_EINVAL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        shoal__error("store: cannot open arena %s: %s", path, strerror(errno));
        return SHOAL_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        shoal__error("store: cannot stat arena %s: %s", path, strerror(errno));
        close(fd);
        return SHOAL_EIO;
    }
    //  Beyond the end of the file a mapping raises SIGBUS on access: refuse it here.
    if (offset > (uint64_t)st.st_size || size > (uint64_t)st.st_size - offset) {
        close(fd);
        return SHOAL_EINVAL;
    }
    //  MAP_POPULATE: the executor is about to write the whole range.
    int err = s_map_guarded(fd, offset, size, PROT_READ | PROT_WRITE, MAP_POPULATE, p);
    close(fd);
    if (err) {
        shoal__error("store: cannot map %llu bytes at %llu of arena %s: %s",
                     (unsigned long long)size, (unsigned long long)offset, path, strerror(err));
        return SHOAL_EIO;
    }
    return 0;
}

void shoal_arena_unmap(void *p, uint64_t size)
{
    if (!p)
        return;
    munmap((uint8_t *)p - S_PAGE, s_page_round(size) + 2 * S_PAGE);
}
