/*  test_store.c: the arena, its allocator, the LMDB index, re-adoption, fault sweeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "store.h"

#include <lmdb.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)

typedef struct {
    char dir[64];
    char name[64];
    char arena[PATH_MAX];
    char index[PATH_MAX];
    shoal_store_t *store;
} fixture_t;

static int s_counter;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/shoal-test-store-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->name, sizeof f->name, "test-%d-%d", (int)getpid(), ++s_counter);
    if (shoal_store_arena_path_for(f->dir, f->name, f->arena, sizeof f->arena) != 0) {
        free(f);
        return -1;
    }
    snprintf(f->index, sizeof f->index, "%s/index.mdb", f->dir);
    *state = f;
    return 0;
}

static void s_remove_files(fixture_t *f)
{
    unlink(f->arena);
    DIR *dir = opendir(f->dir);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", f->dir, de->d_name);
        unlink(path);
    }
    closedir(dir);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    shoal__store_fail_at = 0;
    shoal_store_destroy(&f->store);
    s_remove_files(f);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int s_open(fixture_t *f, uint64_t capacity)
{
    shoal_store_config_t config = {f->dir, f->name, capacity};
    return shoal_store_open(&config, &f->store);
}

static int s_reopen(fixture_t *f, uint64_t capacity)
{
    shoal_store_close(&f->store);
    return s_open(f, capacity);
}

static shoal_ref_t s_ref(uint64_t i)
{
    return shoal_ref_make(0x5ea1ab1edeadbeefull, i, 0);
}

static void s_fill(uint8_t *p, uint64_t size, uint64_t seed)
{
    for (uint64_t i = 0; i < size; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static bool s_check(const uint8_t *p, uint64_t size, uint64_t seed)
{
    for (uint64_t i = 0; i < size; i++)
        if (p[i] != (uint8_t)(seed * 131 + i * 7 + (i >> 9)))
            return false;
    return true;
}

//  splitmix64: deterministic, so a failing run can be replayed.
static uint64_t s_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double s_elapsed_ms(int64_t start_us)
{
    return (double)(shoal__now_us() - start_us) / 1000.0;
}

//  ----------------------------------------------------------------------------- basics

static void test_alloc_write_seal_lookup_round_trips(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 4 * MiB), 0);
    assert_int_equal(shoal_store_capacity(f->store), 4 * MiB);
    assert_string_equal(shoal_store_arena_path(f->store), f->arena);

    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 10000, &obj), 0);
    assert_true(shoal_ref_equal(obj.ref, s_ref(1)));
    assert_int_equal(obj.state, SHOAL_OBJ_ALLOCATED);
    assert_int_equal(obj.size, 10000);
    assert_int_equal(obj.offset % 4096, 0);
    assert_ptr_equal(obj.data, shoal_store_base(f->store) + obj.offset);
    s_fill(obj.data, obj.size, 1);
    assert_int_equal(shoal_store_used(f->store), 12288); //  10000 rounded to 3 pages

    //  An allocated object is found at once, but only sealed ones are iterated.
    size_t cursor = 0;
    shoal_store_obj_t it;
    assert_false(shoal_store_next(f->store, &cursor, &it));
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), 0);

    shoal_store_obj_t found;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &found), 0);
    assert_int_equal(found.state, SHOAL_OBJ_SEALED);
    assert_int_equal(found.offset, obj.offset);
    assert_int_equal(found.size, 10000);
    assert_true(s_check(found.data, found.size, 1));

    uint8_t small[100];
    s_fill(small, sizeof small, 2);
    assert_int_equal(shoal_store_put(f->store, s_ref(2), small, sizeof small), 0);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(2), &found), 0);
    assert_int_not_equal(found.offset, obj.offset);
    assert_true(s_check(found.data, sizeof small, 2));
    assert_int_equal(shoal_store_count(f->store), 2);

    cursor = 0;
    int seen = 0;
    while (shoal_store_next(f->store, &cursor, &it)) {
        assert_int_equal(it.state, SHOAL_OBJ_SEALED);
        seen++;
    }
    assert_int_equal(seen, 2);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(3), &found), SHOAL_ENOTFOUND);
}

static void test_alloc_of_a_ref_already_stored_returns_eexist(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 100, &obj), 0);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 100, &obj), SHOAL_EEXIST);
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "x", 1), SHOAL_EEXIST);
    assert_int_equal(shoal_store_count(f->store), 1);
    assert_int_equal(shoal_store_used(f->store), 4096);
}

static void test_alloc_larger_than_the_arena_returns_etoobig(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB - 100), 0);
    assert_int_equal(shoal_store_capacity(f->store), 1 * MiB); //  rounded up to a page
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 1 * MiB + 1, &obj), SHOAL_ETOOBIG);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), UINT64_MAX, &obj), SHOAL_ETOOBIG);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 1 * MiB, &obj), 0);
    assert_int_equal(shoal_store_used(f->store), 1 * MiB);
}

static void test_alloc_when_full_returns_efull_and_delete_makes_room(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(shoal_store_alloc(f->store, s_ref(i), 256 * 1024, &obj), 0);
    assert_int_equal(shoal_store_used(f->store), 1 * MiB);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(9), 1, &obj), SHOAL_EFULL);
    //  Size 0 takes no space, so it fits even now.
    assert_int_equal(shoal_store_alloc(f->store, s_ref(10), 0, &obj), 0);
    assert_int_equal(shoal_store_seal(f->store, s_ref(10)), 0);

    assert_int_equal(shoal_store_delete(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_delete(f->store, s_ref(1)), SHOAL_ENOTFOUND);
    //  The hole is 256 KiB: one byte more does not fit, exactly that does.
    assert_int_equal(shoal_store_alloc(f->store, s_ref(9), 256 * 1024 + 1, &obj), SHOAL_EFULL);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(9), 256 * 1024, &obj), 0);
    assert_int_equal(obj.offset, 256 * 1024);
    assert_int_equal(shoal_store_count(f->store), 5);
}

static void test_abort_frees_the_space_and_forgets_the_ref(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 1 * MiB, &obj), 0);
    assert_int_equal(shoal_store_abort(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_used(f->store), 0);
    assert_int_equal(shoal_store_count(f->store), 0);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_abort(f->store, s_ref(1)), SHOAL_ENOTFOUND);
    //  The whole arena is free again, and the ref can be used anew.
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 1 * MiB, &obj), 0);
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), 0);
    //  A sealed object cannot be aborted, only deleted.
    assert_int_equal(shoal_store_abort(f->store, s_ref(1)), SHOAL_ESTATE);
    assert_int_equal(shoal_store_delete(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_used(f->store), 0);
}

static void test_seal_twice_returns_estate(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 10, &obj), 0);
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), SHOAL_ESTATE);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), 0);
    assert_int_equal(obj.state, SHOAL_OBJ_SEALED);
}

static void test_open_rejects_a_bad_config(void **state)
{
    fixture_t *f = *state;
    shoal_store_config_t config = {f->dir, "a/b", 1 * MiB};
    assert_int_equal(shoal_store_open(&config, &f->store), SHOAL_EINVAL);
    config.name = "";
    assert_int_equal(shoal_store_open(&config, &f->store), SHOAL_EINVAL);
    config.name = f->name;
    config.capacity = 0;
    assert_int_equal(shoal_store_open(&config, &f->store), SHOAL_EINVAL);
    config.capacity = 1 * MiB;
    config.dir = NULL;
    assert_int_equal(shoal_store_open(&config, &f->store), SHOAL_EINVAL);
    assert_int_equal(shoal_store_open(NULL, &f->store), SHOAL_EINVAL);
    assert_null(f->store);
}

static void test_a_second_open_of_an_owned_store_fails(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_config_t config = {f->dir, f->name, 1 * MiB};
    shoal_store_t *other = NULL;
    assert_int_equal(shoal_store_open(&config, &other), SHOAL_EIO);
    assert_null(other);
    //  The failed open must not have removed or reset the owner's arena.
    assert_int_equal(access(f->arena, F_OK), 0);
    shoal_store_close(&f->store);
    assert_null(f->store);
    assert_int_equal(shoal_store_open(&config, &other), 0);
    shoal_store_close(&other);
}

static void test_store_files_are_private_to_their_user(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    struct stat st;
    assert_int_equal(stat(f->arena, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, 1 * MiB);
    assert_int_equal(stat(f->index, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    shoal_store_destroy(&f->store);
    assert_null(f->store);
    assert_int_not_equal(access(f->arena, F_OK), 0);
    assert_int_not_equal(access(f->index, F_OK), 0);
}

//  --------------------------------------------------------------------------- re-adopt

static void test_reopen_readopts_sealed_objects_with_identical_bytes(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 8 * MiB), 0);
    uint64_t sizes[] = {1, 4096, 4097, 100000, 0, 1 * MiB};
    shoal_store_obj_t before[6];
    for (uint64_t i = 0; i < 6; i++) {
        assert_int_equal(shoal_store_alloc(f->store, s_ref(i), sizes[i], &before[i]), 0);
        s_fill(before[i].data, sizes[i], i);
        assert_int_equal(shoal_store_seal(f->store, s_ref(i)), 0);
    }
    //  Allocated but never sealed: its writer dies with this process.
    shoal_store_obj_t unsealed;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(100), 50000, &unsealed), 0);
    //  Sealed, flushed, then deleted: the delete must reach the index too.
    assert_int_equal(shoal_store_put(f->store, s_ref(101), "gone", 4), 0);
    assert_int_equal(shoal_store_flush(f->store), 0);
    assert_int_equal(shoal_store_delete(f->store, s_ref(101)), 0);
    uint64_t used_sealed = shoal_store_used(f->store) - 53248;

    //  close flushes what is still dirty.
    assert_int_equal(s_reopen(f, 8 * MiB), 0);
    assert_int_equal(shoal_store_count(f->store), 6);
    assert_int_equal(shoal_store_used(f->store), used_sealed);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(100), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(101), &obj), SHOAL_ENOTFOUND);
    for (uint64_t i = 0; i < 6; i++) {
        assert_int_equal(shoal_store_lookup(f->store, s_ref(i), &obj), 0);
        assert_int_equal(obj.state, SHOAL_OBJ_SEALED);
        assert_int_equal(obj.offset, before[i].offset);
        assert_int_equal(obj.size, sizes[i]);
        assert_true(s_check(obj.data, obj.size, i));
    }
    //  The free list was rebuilt around the survivors: filling every free byte must not
    //  touch them.
    uint64_t largest = 0;
    for (uint64_t i = 200; shoal__store_free_ranges(f->store, &largest, NULL) > 0; i++) {
        assert_int_equal(shoal_store_alloc(f->store, s_ref(i), largest, &obj), 0);
        memset(obj.data, 0xee, largest);
    }
    assert_int_equal(shoal_store_used(f->store), 8 * MiB);
    for (uint64_t i = 0; i < 6; i++) {
        assert_int_equal(shoal_store_lookup(f->store, s_ref(i), &obj), 0);
        assert_true(s_check(obj.data, obj.size, i));
    }
}

static void test_reopen_with_another_capacity_resets_the_store(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 2 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "hello", 5), 0);
    assert_int_equal(s_reopen(f, 2 * MiB), 0);
    assert_int_equal(shoal_store_count(f->store), 1);

    assert_int_equal(s_reopen(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_capacity(f->store), 1 * MiB);
    assert_int_equal(shoal_store_count(f->store), 0);
    assert_int_equal(shoal_store_used(f->store), 0);
    struct stat st;
    assert_int_equal(stat(f->arena, &st), 0);
    assert_int_equal((uint64_t)st.st_size, 1 * MiB);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 1 * MiB, &obj), 0);
    memset(obj.data, 1, 1 * MiB);
    assert_int_equal(shoal_store_seal(f->store, s_ref(1)), 0);
    //  And back up: the new arena is bigger, the old object gone, all space usable.
    assert_int_equal(s_reopen(f, 3 * MiB), 0);
    assert_int_equal(shoal_store_count(f->store), 0);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 3 * MiB, &obj), 0);
}

static void test_reopen_after_the_arena_was_removed_forgets_its_objects(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "hello", 5), 0);
    shoal_store_close(&f->store);
    assert_int_equal(unlink(f->arena), 0); //  as a reboot clears /dev/shm
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_count(f->store), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), SHOAL_ENOTFOUND);
}

//  Runs open with stderr captured into log.
static int s_open_logged(fixture_t *f, uint64_t capacity, char *log, size_t log_size)
{
    char path[] = "/tmp/shoal-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int rc = s_open(f, capacity);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, log, log_size - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    printf("%s", log); //  keep the warning visible in the test output
    return rc;
}

static void test_a_corrupt_index_resets_the_store_with_a_warning(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "hello", 5), 0);
    shoal_store_close(&f->store);

    int fd = open(f->index, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    uint8_t garbage[12288];
    uint64_t seed = 42;
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)s_random(&seed);
    assert_int_equal(write(fd, garbage, sizeof garbage), (ssize_t)sizeof garbage);
    close(fd);

    char log[4096];
    assert_int_equal(s_open_logged(f, 1 * MiB, log, sizeof log), 0);
    assert_non_null(strstr(log, "warn"));
    assert_non_null(strstr(log, f->index));
    assert_int_equal(shoal_store_count(f->store), 0);
    //  The reset store works and persists like a new one.
    assert_int_equal(shoal_store_put(f->store, s_ref(2), "again", 5), 0);
    assert_int_equal(s_reopen(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(2), &obj), 0);
    assert_memory_equal(obj.data, "again", 5);
}

static void test_a_truncated_index_resets_the_store_with_a_warning(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "hello", 5), 0);
    shoal_store_close(&f->store);
    assert_int_equal(truncate(f->index, 10), 0);
    char log[4096];
    assert_int_equal(s_open_logged(f, 1 * MiB, log, sizeof log), 0);
    assert_non_null(strstr(log, f->index));
    assert_int_equal(shoal_store_count(f->store), 0);
}

//  The index record as store.c writes it (host byte order), to forge bad ones.
typedef struct {
    uint64_t offset;
    uint64_t size;
    uint32_t state;
    uint32_t reserved;
    int64_t created_us;
} record_t;

static void s_index_put(MDB_txn *txn, MDB_dbi dbi, shoal_ref_t ref, record_t rec)
{
    uint8_t key[16];
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(ref.hi >> (56 - 8 * i));
        key[8 + i] = (uint8_t)(ref.lo >> (56 - 8 * i));
    }
    MDB_val k = {sizeof key, key}, v = {sizeof rec, &rec};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
}

static void test_reopen_drops_records_that_overlap_or_lie_outside_the_arena(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "first", 5), 0);  //  offset 0
    assert_int_equal(shoal_store_put(f->store, s_ref(2), "second", 6), 0); //  offset 4096
    shoal_store_close(&f->store);

    //  Forge records as a buggy or older writer might have left them (the store is closed,
    //  and this process never forks while the environment is open).
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, f->index, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    s_index_put(txn, dbi, s_ref(3), (record_t){4096, 5000, SHOAL_OBJ_SEALED, 0, 0});
    s_index_put(txn, dbi, s_ref(4), (record_t){1 * MiB - 4096, 4097, SHOAL_OBJ_SEALED, 0, 0});
    s_index_put(txn, dbi, s_ref(5), (record_t){100, 10, SHOAL_OBJ_SEALED, 0, 0});
    s_index_put(txn, dbi, s_ref(6), (record_t){2 * MiB, 0, SHOAL_OBJ_SEALED, 0, 0});
    s_index_put(txn, dbi, s_ref(7), (record_t){512 * 1024, 10, 77, 0, 0});
    s_index_put(txn, dbi, s_ref(8), (record_t){600 * 1024, 10, SHOAL_OBJ_SEALED, 0, 0});
    MDB_val k = {5, "bogus"}, v = {3, "abc"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    //  Kept: ref 1 and the well-formed forged ref 8. Dropped: 2 and 3 (overlapping each
    //  other, so neither is trusted), 4 (past the end), 5 (unaligned), 6 (outside),
    //  7 (unknown state).
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), 0);
    assert_memory_equal(obj.data, "first", 5);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(8), &obj), 0);
    assert_int_equal(obj.offset, 600 * 1024);
    for (uint64_t i = 2; i <= 7; i++)
        assert_int_equal(shoal_store_lookup(f->store, s_ref(i), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_count(f->store), 2);
    assert_int_equal(shoal_store_used(f->store), 8192);
    uint64_t total;
    assert_int_equal(shoal__store_free_ranges(f->store, NULL, &total), 2);
    assert_int_equal(total, 1 * MiB - 8192);
    //  The dropped records are gone from the index too, not just from memory.
    assert_int_equal(s_reopen(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_count(f->store), 2);
}

static void test_an_arena_replaced_behind_the_stores_back_resets_it(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "hello", 5), 0);
    shoal_store_close(&f->store);
    //  Same name, same size, another file: the index describes bytes that are gone.
    assert_int_equal(unlink(f->arena), 0);
    int fd = open(f->arena, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 * MiB), 0);
    close(fd);
    char log[4096];
    assert_int_equal(s_open_logged(f, 1 * MiB, log, sizeof log), 0);
    assert_non_null(strstr(log, "another arena file"));
    assert_int_equal(shoal_store_count(f->store), 0);
}

static void test_a_failed_flush_keeps_its_changes_for_the_next_one(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "one", 3), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(2), "two", 3), 0);
    assert_int_equal(shoal_store_flush(f->store), 0);
    assert_int_equal(shoal_store_delete(f->store, s_ref(1)), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(3), "three", 5), 0);
    //  Fail each step in turn: begin, delete 1, put 3, commit.
    for (int step = 1; step <= 4; step++) {
        shoal__store_fail_at = step;
        assert_int_equal(shoal_store_flush(f->store), SHOAL_EIO);
        assert_int_equal(shoal__store_fail_at, 0);
    }
    //  The in-memory index stayed right all along, and the next flush writes it all.
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(3), &obj), 0);
    assert_int_equal(shoal_store_flush(f->store), 0);
    //  Nothing left to write: a flush now opens no transaction, so it cannot fail.
    shoal__store_fail_at = 1;
    assert_int_equal(shoal_store_flush(f->store), 0);
    assert_int_equal(shoal__store_fail_at, 1);
    shoal__store_fail_at = 0;
    assert_int_equal(s_reopen(f, 1 * MiB), 0);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(2), &obj), 0);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(3), &obj), 0);
    assert_memory_equal(obj.data, "three", 5);
}

static void test_flushed_state_survives_without_close(void **state)
{
    fixture_t *f = *state;
    //  A child process does the work and exits without closing: as a killed worker would.
    fflush(NULL); //  children _exit, but must not inherit and lose buffered output
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        shoal_store_config_t config = {f->dir, f->name, 1 * MiB};
        shoal_store_t *store = NULL;
        if (shoal_store_open(&config, &store) != 0)
            _exit(10);
        shoal_store_obj_t obj;
        if (shoal_store_put(store, s_ref(1), "kept", 4) != 0 ||
            shoal_store_alloc(store, s_ref(2), 4, &obj) != 0 || shoal_store_flush(store) != 0 ||
            shoal_store_put(store, s_ref(3), "unflushed", 9) != 0)
            _exit(11);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(1), &obj), 0);
    assert_memory_equal(obj.data, "kept", 4);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(2), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_lookup(f->store, s_ref(3), &obj), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_store_count(f->store), 1);
}

//  -------------------------------------------------------------------------- allocator

static void test_fragmentation_heals_when_everything_is_freed(void **state)
{
    fixture_t *f = *state;
    const uint64_t capacity = 64 * MiB;
    assert_int_equal(s_open(f, capacity), 0);
    enum { OPS = 20000, MAX_LIVE = 20000 };
    static shoal_ref_t live[MAX_LIVE];
    static uint64_t live_size[MAX_LIVE];
    size_t nlive = 0;
    uint64_t rng = 12345, next_ref = 1;
    double worst = 0;
    uint64_t worst_free = 0, worst_largest = 0;
    size_t worst_ranges = 0, max_ranges = 0, efull = 0, efull_fragmented = 0, allocs = 0;
    uint64_t peak_used = 0;
    int64_t start = shoal__now_us();
    for (int op = 0; op < OPS; op++) {
        bool do_alloc = nlive == 0 || (nlive < MAX_LIVE && s_random(&rng) % 100 < 55);
        if (do_alloc) {
            //  Log-uniform sizes from 1 B to 1 MiB: many small objects, a few large ones.
            uint64_t bits = s_random(&rng) % 21;
            uint64_t size = 1 + s_random(&rng) % (1ull << bits);
            shoal_ref_t ref = s_ref(next_ref++);
            shoal_store_obj_t obj;
            int rc = shoal_store_alloc(f->store, ref, size, &obj);
            if (rc == SHOAL_EFULL) {
                efull++;
                if (capacity - shoal_store_used(f->store) >= ((size + 4095) & ~4095ull))
                    efull_fragmented++;
                do_alloc = false; //  free something instead
            } else {
                assert_int_equal(rc, 0);
                allocs++;
                //  Stamp both ends: an overlapping allocation would overwrite a stamp.
                obj.data[0] = (uint8_t)ref.lo;
                obj.data[size - 1] = (uint8_t)(ref.lo >> 8);
                if (s_random(&rng) % 2)
                    assert_int_equal(shoal_store_seal(f->store, ref), 0);
                live[nlive] = ref;
                live_size[nlive++] = size;
            }
        }
        if (!do_alloc && nlive > 0) {
            size_t i = s_random(&rng) % nlive;
            shoal_store_obj_t obj;
            assert_int_equal(shoal_store_lookup(f->store, live[i], &obj), 0);
            assert_int_equal(obj.data[0], (uint8_t)live[i].lo);
            assert_int_equal(obj.data[live_size[i] - 1], (uint8_t)(live[i].lo >> 8));
            assert_int_equal(shoal_store_delete(f->store, live[i]), 0);
            live[i] = live[--nlive];
            live_size[i] = live_size[nlive];
        }
        uint64_t largest, total;
        size_t ranges = shoal__store_free_ranges(f->store, &largest, &total);
        //  Every byte is either free or used, never both or neither.
        assert_int_equal(total, capacity - shoal_store_used(f->store));
        max_ranges = SHOAL__MAX(max_ranges, ranges);
        peak_used = SHOAL__MAX(peak_used, shoal_store_used(f->store));
        //  Fragmentation: the share of free space outside the largest free range.
        //  Measured while at least 4 MiB are free, so a nearly full arena is not counted.
        if (total >= 4 * MiB) {
            double frag = 1.0 - (double)largest / (double)total;
            if (frag > worst) {
                worst = frag;
                worst_free = total;
                worst_largest = largest;
                worst_ranges = ranges;
            }
        }
        if (op % 500 == 0)
            assert_int_equal(shoal_store_flush(f->store), 0);
        if (op == OPS / 2) {
            //  Re-adoption rebuilds the same free list from the index (sealed objects only,
            //  so abort the unsealed first).
            for (size_t i = 0; i < nlive;) {
                shoal_store_obj_t obj;
                assert_int_equal(shoal_store_lookup(f->store, live[i], &obj), 0);
                if (obj.state == SHOAL_OBJ_ALLOCATED) {
                    assert_int_equal(shoal_store_abort(f->store, live[i]), 0);
                    live[i] = live[--nlive];
                    live_size[i] = live_size[nlive];
                } else
                    i++;
            }
            uint64_t used = shoal_store_used(f->store);
            size_t ranges_before = shoal__store_free_ranges(f->store, &largest, NULL);
            uint64_t largest_before = largest;
            assert_int_equal(s_reopen(f, capacity), 0);
            assert_int_equal(shoal_store_count(f->store), nlive);
            assert_int_equal(shoal_store_used(f->store), used);
            assert_int_equal(shoal__store_free_ranges(f->store, &largest, NULL), ranges_before);
            assert_int_equal(largest, largest_before);
        }
    }
    double ms = s_elapsed_ms(start);
    while (nlive > 0)
        assert_int_equal(shoal_store_delete(f->store, live[--nlive]), 0);
    uint64_t largest, total;
    assert_int_equal(shoal__store_free_ranges(f->store, &largest, &total), 1);
    assert_int_equal(largest, capacity);
    assert_int_equal(shoal_store_used(f->store), 0);
    assert_int_equal(shoal_store_count(f->store), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(0), capacity, &obj), 0);
    printf("fragmentation: %d ops (%zu allocs) in %.1f ms, 64 MiB arena, sizes 1 B..1 MiB "
           "log-uniform; peak use %.1f%%; worst 1 - largest/free = %.1f%% (%.1f MiB free, "
           "largest range %.2f MiB, %zu ranges); at most %zu free ranges; %zu EFULL, %zu of "
           "them with enough total free space\n",
           OPS, allocs, ms, 100.0 * (double)peak_used / (double)capacity, 100.0 * worst,
           (double)worst_free / MiB, (double)worst_largest / MiB, worst_ranges, max_ranges, efull,
           efull_fragmented);
}

static void test_tens_of_thousands_of_objects_stay_fast(void **state)
{
    fixture_t *f = *state;
    const uint64_t capacity = 128 * MiB; //  32768 pages
    assert_int_equal(s_open(f, capacity), 0);
    enum { N = 30000 };
    int64_t start = shoal__now_us();
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(shoal_store_put(f->store, s_ref(i), &i, sizeof i), 0);
    double t_put = s_elapsed_ms(start);
    start = shoal__now_us();
    assert_int_equal(shoal_store_flush(f->store), 0);
    double t_flush = s_elapsed_ms(start);
    //  Every other object freed: 15,000 one-page holes that first fit must walk past.
    start = shoal__now_us();
    for (uint64_t i = 0; i < N; i += 2)
        assert_int_equal(shoal_store_delete(f->store, s_ref(i)), 0);
    double t_delete = s_elapsed_ms(start);
    assert_int_equal(shoal__store_free_ranges(f->store, NULL, NULL), N / 2 + 1);
    start = shoal__now_us();
    shoal_store_obj_t obj;
    for (uint64_t i = 0; i < 600; i++)
        assert_int_equal(shoal_store_alloc(f->store, s_ref(N + i), 8192, &obj), 0);
    double t_alloc = s_elapsed_ms(start);
    for (uint64_t i = 0; i < 600; i++)
        assert_int_equal(shoal_store_seal(f->store, s_ref(N + i)), 0);
    start = shoal__now_us();
    assert_int_equal(s_reopen(f, capacity), 0);
    double t_reopen = s_elapsed_ms(start);
    assert_int_equal(shoal_store_count(f->store), N / 2 + 600);
    for (uint64_t i = 1; i < N; i += 2) {
        assert_int_equal(shoal_store_lookup(f->store, s_ref(i), &obj), 0);
        assert_memory_equal(obj.data, &i, sizeof i);
    }
    printf("%d objects: put %.1f ms, flush %.1f ms, delete half %.1f ms, 600 two-page allocs "
           "past 15,000 holes %.1f ms, close + reopen %.1f ms\n",
           N, t_put, t_flush, t_delete, t_alloc, t_reopen);
}

//  ------------------------------------------------------------------ other processes

//  The stray write an executor's buggy task code would make: one byte past its range.
//  no_sanitize_address: ASan must not intercept it; the guard page must.
__attribute__((no_sanitize_address, noinline)) static void s_write_past(uint8_t *p, uint64_t size)
{
    ((volatile uint8_t *)p)[size] = 0x66;
}

static void test_map_range_gives_a_child_its_range_and_faults_past_it(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    shoal_store_obj_t mine, neighbour;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(1), 8192, &mine), 0);
    assert_int_equal(shoal_store_alloc(f->store, s_ref(2), 4096, &neighbour), 0);
    assert_int_equal(neighbour.offset, mine.offset + 8192);
    memset(mine.data, 0, 8192);
    memset(neighbour.data, 0x11, 4096);

    //  The child uses only the arena helpers, never the store (LMDB must not cross fork).
    fflush(NULL); //  children _exit, but must not inherit and lose buffered output
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *p;
        if (shoal_arena_map_range(f->arena, mine.offset, mine.size, &p) != 0)
            _exit(10);
        s_fill(p, mine.size, 7);
        shoal_arena_unmap(p, mine.size);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(s_check(mine.data, mine.size, 7));

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *p;
        if (shoal_arena_map_range(f->arena, mine.offset, mine.size, &p) != 0)
            _exit(10);
        //  cmocka catches SIGSEGV to report a failed test and jumps back into its runner,
        //  which would go on running tests in this child: let the signal kill it instead.
        //  Under ASan the SEGV report would clutter the output; the status says enough.
        signal(SIGSEGV, SIG_DFL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        s_write_past(p, mine.size);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
    //  ASan's SEGV handler reports and exits with 1 unless ASAN_OPTIONS=handle_segv=0.
    assert_true((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
                (WIFEXITED(status) && WEXITSTATUS(status) == 1));
#else
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
#endif
    uint8_t expect[4096];
    memset(expect, 0x11, sizeof expect);
    assert_memory_equal(neighbour.data, expect, sizeof expect);
}

static void test_map_range_rejects_unaligned_or_outside_ranges(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    void *p = NULL;
    assert_int_equal(shoal_arena_map_range(f->arena, 100, 4096, &p), SHOAL_EINVAL);
    assert_int_equal(shoal_arena_map_range(f->arena, 1 * MiB - 4096, 8192, &p), SHOAL_EINVAL);
    assert_int_equal(shoal_arena_map_range(f->arena, 2 * MiB, 1, &p), SHOAL_EINVAL);
    assert_int_equal(shoal_arena_map_range(f->arena, 0, UINT64_MAX, &p), SHOAL_EINVAL);
    assert_null(p);
    assert_int_equal(shoal_arena_map_range("/dev/shm/shoal-no-such.arena", 0, 1, &p), SHOAL_EIO);
    assert_int_equal(shoal_arena_map_range(f->arena, 1 * MiB - 4096, 4096, &p), 0);
    shoal_arena_unmap(p, 4096);
    //  An empty object maps too: a pointer with nothing behind it.
    p = NULL;
    assert_int_equal(shoal_arena_map_range(f->arena, 1 * MiB, 0, &p), 0);
    assert_non_null(p);
    shoal_arena_unmap(p, 0);
}

static void test_arena_names_differ_by_store_dir_and_are_stable(void **state)
{
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    assert_int_equal(shoal_store_arena_path_for("/tmp/x/one", "w", a, sizeof a), 0);
    assert_int_equal(shoal_store_arena_path_for("/tmp/x/two", "w", b, sizeof b), 0);
    assert_int_equal(shoal_store_arena_path_for("/tmp/x/one", "w", c, sizeof c), 0);
    assert_string_not_equal(a, b);
    assert_string_equal(a, c);
    assert_int_equal(shoal_store_arena_path_for("/tmp/x", "a/b", c, sizeof c), SHOAL_EINVAL);
}

static void test_arena_map_shows_a_reader_the_sealed_bytes(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(s_open(f, 1 * MiB), 0);
    uint8_t bytes[20000];
    s_fill(bytes, sizeof bytes, 3);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), "x", 1), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(2), bytes, sizeof bytes), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_lookup(f->store, s_ref(2), &obj), 0);
    void *base;
    uint64_t size;
    assert_int_equal(shoal_arena_map(f->arena, &base, &size), 0);
    assert_int_equal(size, 1 * MiB);
    assert_ptr_not_equal(base, shoal_store_base(f->store));
    assert_memory_equal((uint8_t *)base + obj.offset, bytes, sizeof bytes);
    shoal_arena_unmap(base, size);
    assert_int_equal(shoal_arena_map("/dev/shm/shoal-no-such.arena", &base, &size), SHOAL_EIO);
}

//  ------------------------------------------------------------------------ fault sweeps

static bool s_is_clean_error(int rc)
{
    return rc == SHOAL_ENOMEM || rc == SHOAL_EIO;
}

static void test_fault_sweep_on_a_new_store_fails_cleanly_at_every_step(void **state)
{
    fixture_t *f = *state;
    shoal_store_config_t config = {f->dir, f->name, 1 * MiB};
    uint8_t bytes[5000];
    s_fill(bytes, sizeof bytes, 9);
    int n, failures = 0;
    for (n = 1; n < 10000; n++) {
        s_remove_files(f);
        shoal__store_fail_at = n;
        shoal_store_t *store = NULL;
        shoal_store_obj_t obj;
        int rc = shoal_store_open(&config, &store);
        if (rc == 0)
            rc = shoal_store_alloc(store, s_ref(1), sizeof bytes, &obj);
        if (rc == 0) {
            memcpy(obj.data, bytes, sizeof bytes);
            rc = shoal_store_seal(store, s_ref(1));
        }
        if (rc == 0)
            rc = shoal_store_flush(store);
        bool reached = shoal__store_fail_at == 0;
        shoal__store_fail_at = 0;
        if (rc != 0) {
            failures++;
            assert_true(reached);
            assert_true(s_is_clean_error(rc));
            if (!store) //  a failed open leaves no arena it created behind
                assert_int_not_equal(access(f->arena, F_OK), 0);
        }
        shoal_store_close(&store);
        assert_null(store);
        if (!reached)
            break;
        //  Whatever failed, a fault-free open finds a working store, holding the object
        //  exactly when the sequence got as far as sealing it.
        assert_int_equal(shoal_store_open(&config, &store), 0);
        if (shoal_store_lookup(store, s_ref(1), &obj) == 0)
            assert_memory_equal(obj.data, bytes, sizeof bytes);
        assert_int_equal(shoal_store_put(store, s_ref(2), "ok", 2), 0);
        shoal_store_destroy(&store);
    }
    assert_true(n < 10000);
    printf("fault sweep, new store: %d fallible steps, each failed cleanly (%d errors)\n", n - 1,
           failures);
}

static void test_fault_sweep_on_reopen_never_loses_a_sealed_object(void **state)
{
    fixture_t *f = *state;
    shoal_store_config_t config = {f->dir, f->name, 1 * MiB};
    uint8_t bytes[70000];
    s_fill(bytes, sizeof bytes, 4);
    assert_int_equal(shoal_store_open(&config, &f->store), 0);
    assert_int_equal(shoal_store_put(f->store, s_ref(1), bytes, sizeof bytes), 0);
    shoal_store_obj_t obj;
    assert_int_equal(shoal_store_alloc(f->store, s_ref(2), 100, &obj), 0); //  unsealed
    shoal_store_close(&f->store);

    int n, failures = 0;
    for (n = 1; n < 10000; n++) {
        shoal_ref_t extra = s_ref(1000 + (uint64_t)n);
        shoal__store_fail_at = n;
        shoal_store_t *store = NULL;
        int rc = shoal_store_open(&config, &store);
        if (rc == 0) {
            assert_int_equal(shoal_store_lookup(store, s_ref(1), &obj), 0);
            rc = shoal_store_alloc(store, extra, 9000, &obj);
        }
        if (rc == 0)
            rc = shoal_store_seal(store, extra);
        if (rc == 0)
            rc = shoal_store_delete(store, extra);
        if (rc == 0)
            rc = shoal_store_put(store, extra, "x", 1);
        if (rc == 0)
            rc = shoal_store_flush(store);
        bool reached = shoal__store_fail_at == 0;
        shoal__store_fail_at = 0;
        if (rc != 0) {
            failures++;
            assert_true(reached);
            assert_true(s_is_clean_error(rc));
        }
        shoal_store_close(&store);
        if (!reached)
            break;
        assert_int_equal(shoal_store_open(&config, &store), 0);
        assert_int_equal(shoal_store_lookup(store, s_ref(1), &obj), 0);
        assert_int_equal(obj.size, sizeof bytes);
        assert_memory_equal(obj.data, bytes, sizeof bytes);
        assert_int_equal(shoal_store_lookup(store, s_ref(2), &obj), SHOAL_ENOTFOUND);
        shoal_store_delete(store, extra);
        assert_int_equal(shoal_store_count(store), 1);
        shoal_store_close(&store);
    }
    assert_true(n < 10000);
    printf("fault sweep, reopen: %d fallible steps, each failed cleanly (%d errors)\n", n - 1,
           failures);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_alloc_write_seal_lookup_round_trips),
        T(test_alloc_of_a_ref_already_stored_returns_eexist),
        T(test_alloc_larger_than_the_arena_returns_etoobig),
        T(test_alloc_when_full_returns_efull_and_delete_makes_room),
        T(test_abort_frees_the_space_and_forgets_the_ref),
        T(test_seal_twice_returns_estate),
        T(test_open_rejects_a_bad_config),
        T(test_a_second_open_of_an_owned_store_fails),
        T(test_store_files_are_private_to_their_user),
        T(test_reopen_readopts_sealed_objects_with_identical_bytes),
        T(test_reopen_with_another_capacity_resets_the_store),
        T(test_reopen_after_the_arena_was_removed_forgets_its_objects),
        T(test_a_corrupt_index_resets_the_store_with_a_warning),
        T(test_a_truncated_index_resets_the_store_with_a_warning),
        T(test_reopen_drops_records_that_overlap_or_lie_outside_the_arena),
        T(test_an_arena_replaced_behind_the_stores_back_resets_it),
        T(test_a_failed_flush_keeps_its_changes_for_the_next_one),
        T(test_flushed_state_survives_without_close),
        T(test_fragmentation_heals_when_everything_is_freed),
        T(test_tens_of_thousands_of_objects_stay_fast),
        T(test_map_range_gives_a_child_its_range_and_faults_past_it),
        T(test_map_range_rejects_unaligned_or_outside_ranges),
        T(test_arena_map_shows_a_reader_the_sealed_bytes),
        cmocka_unit_test(test_arena_names_differ_by_store_dir_and_are_stable),
        T(test_fault_sweep_on_a_new_store_fails_cleanly_at_every_step),
        T(test_fault_sweep_on_reopen_never_loses_a_sealed_object),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
