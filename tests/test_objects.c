/*  test_objects.c: objects a client puts into the cluster, on a real cluster.

    One broker and one worker (2 slots, a 32 MiB arena) serve every test, with the client
    in this process (libshoal) or the `shoal` command. What is checked: small puts live in
    the broker's directory, large ones are allocated in the worker's store first (the ref
    exists and tasks may name it at once) and written in place through shared memory or in
    parts over the data socket ($SHOAL_NO_LOCAL_STORE forces the socket path), then sealed
    or aborted; a reader on the worker's host gets a zero-copy view of the arena; space
    comes back when objects are removed, released, expire or their writer dies; a task's
    stray write faults instead of corrupting its neighbours; a store too small answers
    SHOAL_EFULL naming the sizes, at once or after a bounded wait. */
#include "harness.h"

#include <shoal.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#if !defined(SHOAL_EXAMPLES_PLUGIN) || !defined(SHOAL_TEST_PLUGIN)
#error "tests/CMakeLists.txt defines SHOAL_EXAMPLES_PLUGIN and SHOAL_TEST_PLUGIN"
#endif

#define CMD_MS  20000
#define WAIT_MS (30000 * h_scale())
#define MiB     (1024 * 1024)

//  No disk tier: these tests are about the memory store (a full one fails writers with
//  EFULL after its wait); test_spill.c has the disk tier's.
static int s_setup(void **state)
{
    h_cluster_t *c = h_cluster_start_with(1, 2, "32M", "--spill-size 0");
    *state = c;
    return c ? 0 : -1;
}

//  The worker's store bytes as the broker last heard them.
static uint64_t s_store_bytes(shoal_t *sh)
{
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(shoal_workers(sh, &list, &n, 10000), 0);
    assert_int_equal(n, 1);
    uint64_t bytes = list[0].store_bytes;
    shoal_workers_free(&list, n);
    return bytes;
}

//  Polls until the worker reports between lo and hi store bytes (heartbeats carry it).
static void s_wait_store(shoal_t *sh, uint64_t lo, uint64_t hi)
{
    int64_t deadline = h_now_ms() + WAIT_MS;
    uint64_t bytes;
    while (((bytes = s_store_bytes(sh)) > hi || bytes < lo) && h_now_ms() < deadline)
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL); //  between polls
    if (bytes > hi || bytes < lo)
        print_error("the store holds %" PRIu64 " bytes, wanted %" PRIu64 "..%" PRIu64 "\n", bytes,
                    lo, hi);
    assert_true(bytes <= hi && bytes >= lo);
}

static void s_wait_store_at_most(shoal_t *sh, uint64_t want)
{
    s_wait_store(sh, 0, want);
}

//  Whether p lies in a mapping of path in /proc/self/maps.
static bool s_in_mapping_of(const void *p, const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
            found = strstr(line, path) != NULL;
    }
    fclose(f);
    return found;
}

static shoal_ref_t s_submit_fn(shoal_t *sh, const char *fn, const char *arg,
                               const shoal_ref_t *inputs, size_t n_inputs)
{
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                              .fn = fn,
                              .arg = arg,
                              .arg_size = arg ? strlen(arg) : 0,
                              .inputs = inputs,
                              .n_inputs = n_inputs};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    return id;
}

static char s_concat[PATH_MAX + 16], s_stray[PATH_MAX + 16], s_crash[PATH_MAX + 16];

static void s_fns(void)
{
    snprintf(s_concat, sizeof s_concat, "%s:concat", SHOAL_EXAMPLES_PLUGIN);
    snprintf(s_stray, sizeof s_stray, "%s:stray_write", SHOAL_TEST_PLUGIN);
    snprintf(s_crash, sizeof s_crash, "%s:crash_mid_write", SHOAL_TEST_PLUGIN);
}

//  ----------------------------------------------------------------------------- tests

static void test_a_small_put_is_read_back_and_feeds_a_task(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    shoal_ref_t ref, in[2];
    assert_int_equal(shoal_put(sh, "hello, ", 7, NULL, &in[0]), 0);
    assert_int_equal(shoal_put(sh, "world", 5, NULL, &in[1]), 0);
    shoal_ref_t task = s_submit_fn(sh, s_concat, NULL, in, 2);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, in[1], WAIT_MS, &v), 0);
    assert_int_equal(v.size, 5);
    assert_memory_equal(v.data, "world", 5);
    shoal_view_release(&v);
    assert_int_equal(shoal_get(sh, task, WAIT_MS, &v), 0);
    assert_int_equal(v.size, 12);
    assert_memory_equal(v.data, "hello, world", 12);
    shoal_view_release(&v);
    //  A name longer than SHOAL_NAME_MAX is refused before anything is sent.
    static char long_name[SHOAL_NAME_MAX + 2];
    memset(long_name, 'n', SHOAL_NAME_MAX + 1);
    shoal_put_opts_t named = {.name = long_name};
    assert_int_equal(shoal_put(sh, "x", 1, &named, &ref), SHOAL_EINVAL);
    assert_non_null(strstr(shoal_last_error(sh), "at most 1024 bytes"));
    //  An empty object is an object too.
    assert_int_equal(shoal_put(sh, NULL, 0, NULL, &ref), 0);
    assert_int_equal(shoal_get(sh, ref, WAIT_MS, &v), 0);
    assert_int_equal(v.size, 0);
    shoal_view_release(&v);
    shoal_disconnect(&sh);
}

static void test_a_large_put_is_written_in_shared_memory_and_read_zero_copy(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    uint64_t before = s_store_bytes(sh);
    size_t size = 4 * MiB + 123;
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    shoal_put_opts_t opts = {.name = "big", .tags = (const char *[]){"test"}, .n_tags = 1};
    assert_int_equal(shoal_put_begin(sh, size, &opts, &ref, &put), 0);
    uint8_t *mem = shoal_put_memory(put);
    assert_non_null(mem); //  the worker is on this host
    assert_true(s_in_mapping_of(mem, c->workers[0].arena));
    for (size_t i = 0; i < size; i++)
        mem[i] = h_pat(1, i);
    assert_int_equal(shoal_put_end(&put), 0);
    assert_null(put);
    //  A second client on this host: the view is the arena itself, not a copy.
    shoal_t *reader = h_connect(c);
    shoal_view_t v;
    assert_int_equal(shoal_get(reader, ref, WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 1, size);
    assert_true(s_in_mapping_of(v.data, c->workers[0].arena));
    //  The view outlives its client.
    shoal_disconnect(&reader);
    h_assert_pattern(v.data, v.size, 1, size);
    shoal_view_release(&v);
    s_wait_store(sh, before + size, before + size + 4096);
    assert_int_equal(shoal_remove(sh, &ref, 1, WAIT_MS), 1);
    s_wait_store_at_most(sh, before);
    shoal_disconnect(&sh);
}

static void test_a_removed_object_is_not_found_even_while_its_bytes_linger(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    uint8_t *data = h_pattern(11, 100000);
    for (int i = 0; i < 20; i++) {
        shoal_ref_t ref;
        assert_int_equal(shoal_put(sh, data, 100000, &store, &ref), 0);
        shoal_view_t v;
        assert_int_equal(shoal_get(sh, ref, WAIT_MS, &v), 0); //  opens the store's reader
        shoal_view_release(&v);
        assert_int_equal(shoal_remove(sh, &ref, 1, WAIT_MS), 1);
        //  The worker may not have deleted it yet; the client must not serve it anyway.
        assert_int_equal(shoal_get(sh, ref, 2000, &v), SHOAL_ENOTFOUND);
    }
    free(data);
    shoal_disconnect(&sh);
}

static void test_a_remote_writer_sends_parts_and_a_remote_reader_fetches_them(void **state)
{
    h_cluster_t *c = h_state(state);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    shoal_t *sh = h_connect(c);
    size_t size = 3 * MiB + 100;
    uint8_t *data = h_pattern(2, size);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(sh, size, NULL, &ref, &put), 0);
    assert_null(shoal_put_memory(put));
    size_t parts[] = {1, 4095, MiB, 2 * MiB - 4096, 100};
    size_t off = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        assert_int_equal(shoal_put_write(put, data + off, parts[i]), 0);
        off += parts[i];
    }
    assert_int_equal(off, size);
    //  Not one byte more than the size.
    assert_int_equal(shoal_put_write(put, data, 1), SHOAL_EINVAL);
    assert_int_equal(shoal_put_end(&put), 0);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, ref, WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 2, size);
    assert_false(s_in_mapping_of(v.data, c->workers[0].arena));
    shoal_view_release(&v);
    //  Ending with bytes missing aborts the object.
    assert_int_equal(shoal_put_begin(sh, 100, NULL, &ref, &put), 0);
    assert_int_equal(shoal_put_write(put, data, 99), 0);
    assert_int_equal(shoal_put_end(&put), SHOAL_EINVAL);
    assert_true(strstr(shoal_last_error(sh), "99 of its 100 bytes") != NULL);
    assert_int_not_equal(shoal_wait(sh, &ref, 1, false, WAIT_MS), 0);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    free(data);
    shoal_disconnect(&sh);
}

static void test_a_task_reading_a_put_waits_for_the_seal(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    size_t size = MiB;
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(sh, size, NULL, &ref, &put), 0);
    shoal_ref_t task = s_submit_fn(sh, s_concat, NULL, &ref, 1);
    //  Allocated, not sealed: the task cannot have run.
    assert_int_equal(shoal_wait(sh, &task, 1, false, 300), SHOAL_ETIMEDOUT);
    uint8_t *data = h_pattern(3, size);
    assert_int_equal(shoal_put_write(put, data, size), 0);
    assert_int_equal(shoal_put_end(&put), 0);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, task, WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 3, size);
    shoal_view_release(&v);
    free(data);
    shoal_remove(sh, (shoal_ref_t[]){ref, task}, 2, WAIT_MS);
    shoal_disconnect(&sh);
}

static void test_an_aborted_put_fails_its_readers_naming_it(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    uint64_t before = s_store_bytes(sh);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(sh, 2 * MiB, NULL, &ref, &put), 0);
    shoal_ref_t task = s_submit_fn(sh, s_concat, NULL, &ref, 1);
    assert_int_equal(shoal_flush(sh, WAIT_MS), 0);
    shoal_put_abort(&put);
    assert_null(put);
    assert_int_not_equal(shoal_wait(sh, &task, 1, false, WAIT_MS), 0);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, task, &st), 0);
    assert_int_equal(st.code, SHOAL_ECANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    if (!st.error || !strstr(st.error, text))
        print_error("error: %s\n", st.error ? st.error : "(none)");
    assert_true(st.error && strstr(st.error, text));
    s_wait_store_at_most(sh, before);
    shoal_disconnect(&sh);
}

static void test_a_put_larger_than_the_store_fails_at_once_naming_the_sizes(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    int64_t start = h_now_ms();
    assert_int_equal(shoal_put_begin(sh, 64 * MiB, NULL, &ref, &put), SHOAL_EFULL);
    assert_true(h_now_ms() - start < 2000 * h_scale());
    const char *why = shoal_last_error(sh);
    if (!strstr(why, "larger than the whole store") || !strstr(why, "64"))
        print_error("error: %s\n", why);
    assert_true(strstr(why, "larger than the whole store") && strstr(why, "64"));
    assert_null(put);
    shoal_disconnect(&sh);
}

static void test_a_put_that_does_not_fit_now_waits_then_fails_naming_the_sizes(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    uint64_t before = s_store_bytes(sh);
    size_t big = 24 * MiB;
    uint8_t *data = h_pattern(4, big);
    shoal_ref_t first, second;
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    assert_int_equal(shoal_put(sh, data, big, &store, &first), 0);
    int64_t start = h_now_ms();
    assert_int_equal(shoal_put(sh, data, 16 * MiB, &store, &second), SHOAL_EFULL);
    int64_t waited = h_now_ms() - start;
    print_message("the put waited %" PRId64 " ms for room\n", waited);
    assert_true(waited >= 4000); //  S_ALLOC_WAIT_MS is 5 s
    const char *why = shoal_last_error(sh);
    if (!strstr(why, "store full") || !strstr(why, "16 MiB"))
        print_error("error: %s\n", why);
    assert_true(strstr(why, "store full") && strstr(why, "16 MiB"));
    //  Room again: the same put goes through.
    assert_int_equal(shoal_remove(sh, &first, 1, WAIT_MS), 1);
    assert_int_equal(shoal_put(sh, data, 16 * MiB, &store, &second), 0);
    assert_int_equal(shoal_remove(sh, &second, 1, WAIT_MS), 1);
    s_wait_store_at_most(sh, before);
    free(data);
    shoal_disconnect(&sh);
}

static void test_a_put_released_at_disconnect_or_expired_frees_its_space(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *watcher = h_connect(c);
    uint64_t before = s_store_bytes(watcher);
    uint8_t *data = h_pattern(5, 2 * MiB);
    shoal_t *sh = h_connect(c);
    shoal_ref_t gone, kept;
    assert_int_equal(shoal_put(sh, data, 2 * MiB, NULL, &gone), 0);
    shoal_disconnect(&sh); //  not kept: released
    s_wait_store_at_most(watcher, before);
    assert_int_not_equal(shoal_wait(watcher, &gone, 1, false, WAIT_MS), 0);
    //  A TTL removes it a while after it is sealed, kept or not.
    shoal_put_opts_t ttl = {.ttl_ms = 300};
    assert_int_equal(shoal_put(watcher, data, 2 * MiB, &ttl, &kept), 0);
    assert_int_equal(shoal_wait(watcher, &kept, 1, false, WAIT_MS), 0);
    s_wait_store_at_most(watcher, before);
    free(data);
    shoal_disconnect(&watcher);
}

static void test_a_stray_write_in_a_plugin_faults_and_spares_its_neighbours(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    size_t size = MiB;
    uint8_t *data = h_pattern(6, size);
    shoal_ref_t neighbour;
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    assert_int_equal(shoal_put(sh, data, size, &store, &neighbour), 0);
    for (int i = 0; i < 3; i++) {
        shoal_ref_t task = s_submit_fn(sh, s_stray, "100000", NULL, 0);
        assert_int_not_equal(shoal_wait(sh, &task, 1, false, WAIT_MS), 0);
        shoal_status_t st;
        assert_int_equal(shoal_status(sh, task, &st), 0);
        assert_int_equal(st.state, SHOAL_STATUS_FAILED);
        //  Under AddressSanitizer the executor's SEGV handler reports and exits with status
        //  1 instead of dying by the signal (handle_segv).
#if defined(__SANITIZE_ADDRESS__)
        bool named = st.error && (strstr(st.error, "SIGSEGV") || strstr(st.error, "status 1"));
#else
        bool named = st.error && strstr(st.error, "SIGSEGV");
#endif
        if (!named)
            print_error("error: %s\n", st.error ? st.error : "(none)");
        assert_true(named);
    }
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, neighbour, WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 6, size);
    shoal_view_release(&v);
    shoal_remove(sh, &neighbour, 1, WAIT_MS);
    free(data);
    shoal_disconnect(&sh);
}

static void test_a_writer_that_dies_mid_write_is_aborted_and_its_space_reclaimed(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    uint64_t before = s_store_bytes(sh);
    shoal_ref_t task = s_submit_fn(sh, s_crash, NULL, NULL, 0);
    shoal_ref_t reader = s_submit_fn(sh, s_concat, NULL, &task, 1);
    assert_int_not_equal(shoal_wait(sh, (shoal_ref_t[]){task, reader}, 2, false, WAIT_MS), 0);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, task, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_FAILED);
    assert_int_equal(shoal_status(sh, reader, &st), 0);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(task, text);
    if (!st.error || !strstr(st.error, text))
        print_error("error: %s\n", st.error ? st.error : "(none)");
    assert_true(st.error && strstr(st.error, text));
    s_wait_store_at_most(sh, before);
    shoal_disconnect(&sh);
}

static void test_shoal_put_prints_a_ref_that_shoal_get_reads_back(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r =
        h_sh(c, CMD_MS,
             "head -c 300000 /dev/urandom > $H_TMP/in && "
             "ref=$(shoal put --name data --tag a --tag b $H_TMP/in) && "
             "shoal get $ref > $H_TMP/out && cmp $H_TMP/in $H_TMP/out && "
             "small=$(printf hello | shoal put -) && test \"$(shoal get $small)\" = hello && "
             "s2=$(printf abc | shoal put --store --size 3 -) && "
             "test \"$(shoal get $s2)\" = abc && shoal rm $ref $small $s2 && echo ok");
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "ok"));
    r = h_run(c, CMD_MS, "put", "/nonexistent/file", NULL);
    h_assert_exit(r, 2);
    assert_true(h_contains(r->err, "/nonexistent/file"));
    r = h_sh(c, CMD_MS, "printf ab | shoal put --size 3 -");
    h_assert_exit(r, 2);
    assert_true(h_contains(r->err, "2 bytes"));
}

static void test_shoal_put_with_a_size_prints_the_ref_before_the_bytes_arrive(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r =
        h_sh(c, CMD_MS,
             "mkfifo $H_TMP/early.fifo && (shoal put --store --size 5 - < $H_TMP/early.fifo > "
             "$H_TMP/early.ref &) && "
             "exec 3>$H_TMP/early.fifo && "
             "for i in $(seq 200); do test -s $H_TMP/early.ref && break; sleep 0.05; done; "
             "test -s $H_TMP/early.ref || { echo 'no ref before the input'; exit 1; }; "
             "ref=$(cat $H_TMP/early.ref); shoal get --timeout 20 $ref > $H_TMP/early.out & g=$!; "
             "printf hello >&3; exec 3>&-; wait $g; test \"$(cat $H_TMP/early.out)\" = hello && "
             "echo ok");
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "ok"));
}

static void test_shoal_submit_tags_outputs_and_expires_them_after_their_ttl(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_sh(c, CMD_MS,
                         "ref=$(shoal submit --ttl 1 --tag ttl-test -- echo hi) && "
                         "shoal wait --timeout 20 $ref && shoal ls --tag ttl-test | grep -c $ref; "
                         "for i in $(seq 100); do shoal ls --tag ttl-test | grep -q $ref || "
                         "{ echo expired; break; }; sleep 0.1; done; shoal get $ref");
    //  Listed by its tag while it lives, gone after its ttl: get finds nothing (exit 1).
    h_assert_exit(r, 1);
    assert_true(h_contains(r->out, "1\n"));
    assert_true(h_contains(r->out, "expired"));
}

static void test_a_restarted_worker_keeps_its_store_unless_told_to_reset_it(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    size_t size = 3 * MiB;
    uint8_t *data = h_pattern(10, size);
    shoal_ref_t ref;
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    assert_int_equal(shoal_put(sh, data, size, &store, &ref), 0);
    assert_int_equal(shoal_flush(sh, WAIT_MS), 0);
    assert_int_equal(h_kill_worker(c, 0, SIGKILL), 0);
    //  The broker counts it dead after five missed heartbeats; then its name is free.
    int64_t deadline = h_now_ms() + WAIT_MS;
    shoal_worker_info_t *list = NULL;
    size_t n = 1;
    while (n > 0 && h_now_ms() < deadline) {
        assert_int_equal(shoal_workers(sh, &list, &n, WAIT_MS), 0);
        shoal_workers_free(&list, n);
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL); //  between polls
    }
    assert_int_equal(n, 0);
    shoal_disconnect(&sh);
    //  --reset-store starts it empty (it says so, naming the store and what it held).
    h_worker_t *w = &c->workers[0];
    h_result_t *r = h_sh(c, CMD_MS,
                         "shoal worker --name %s --store-dir %s --shm-size %s --reset-store "
                         "> $H_TMP/reset.log 2>&1 & pid=$!; "
                         "for i in $(seq 200); do grep -q 'removed the store' $H_TMP/reset.log "
                         "&& break; sleep 0.05; done; kill $pid; wait $pid; cat $H_TMP/reset.log",
                         w->name, w->store_dir, c->shm);
    //  It held what was put before the kill (and what earlier tests left): not nothing.
    const char *said = h_fmt(c, "--reset-store: removed the store in %s (", w->store_dir);
    bool emptied = h_contains(r->out, said) && !h_contains(r->out, "(0 objects)");
    if (!emptied)
        print_error("the worker said:\n%s\n", r->out);
    free(data);
    assert_true(emptied);
    assert_int_equal(h_start_worker(c, 0), 0);
    assert_int_equal(h_wait_workers(c, WAIT_MS), 0);
}

/*  ------------------------------------------------ two workers on one host (debug logs) */

static int s_setup_two(void **state)
{
    setenv("SHOAL_LOG", "debug", 1); //  the workers say where each input came from
    int rc = h_fixture_start(state, 2, 1, "32M");
    unsetenv("SHOAL_LOG");
    return rc;
}

static void test_a_worker_copies_an_input_out_of_a_peer_on_its_host(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    //  A lies on worker 0, the larger B on worker 1: the task goes where less is missing,
    //  worker 1, which copies A out of worker 0's arena instead of fetching it.
    size_t a_size = MiB, b_size = 2 * MiB;
    uint8_t *a = h_pattern(7, a_size), *b = h_pattern(8, b_size);
    shoal_ref_t in[2];
    shoal_put_opts_t on0 = {.worker = c->workers[0].name}, on1 = {.worker = c->workers[1].name};
    assert_int_equal(shoal_put(sh, a, a_size, &on0, &in[0]), 0);
    assert_int_equal(shoal_put(sh, b, b_size, &on1, &in[1]), 0);
    shoal_ref_t task = s_submit_fn(sh, s_concat, NULL, in, 2);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, task, WAIT_MS, &v), 0);
    assert_int_equal(v.size, a_size + b_size);
    h_assert_pattern(v.data, a_size, 7, a_size);
    h_assert_pattern((const uint8_t *)v.data + a_size, b_size, 8, b_size);
    shoal_view_release(&v);
    char text[SHOAL_REF_TEXT_SIZE], *log = h_read_file(c, c->workers[1].log, NULL);
    const char *said = h_fmt(c, "input %s: 1 MiB copied from the store of worker %s",
                             shoal_ref_format(in[0], text), c->workers[0].name);
    if (!log || !strstr(log, said))
        print_error("expected \"%s\" in the log of %s:\n%s\n", said, c->workers[1].name,
                    log ? log : "(none)");
    assert_true(log && strstr(log, said));
    free(a);
    free(b);
    shoal_disconnect(&sh);
}

//  Polls until the log at path says what (cluster-owned result), within the deadline.
static bool s_log_says(h_cluster_t *c, const char *path, const char *what)
{
    int64_t deadline = h_now_ms() + WAIT_MS;
    do {
        char *log = h_read_file(c, path, NULL);
        if (log && strstr(log, what))
            return true;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL); //  between polls
    } while (h_now_ms() < deadline);
    return false;
}

static void
test_a_put_aborted_under_its_writer_keeps_its_space_until_the_writer_lets_go(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    size_t size = 8 * MiB;
    shoal_put_opts_t on0 = {.worker = c->workers[0].name};
    shoal_put_t *doomed = NULL, *next = NULL;
    shoal_ref_t ref, ref2;
    assert_int_equal(shoal_put_begin(sh, size, &on0, &ref, &doomed), 0);
    uint8_t *late = shoal_put_memory(doomed);
    assert_non_null(late);
    //  Canceled under its writer: the worker aborts it.
    assert_int_equal(shoal_cancel(sh, &ref, 1, WAIT_MS), 1);
    assert_true(s_log_says(c, c->workers[0].log, "w_drop: 1 objects"));
    //  The next allocation must not get the aborted range while the writer may write.
    assert_int_equal(shoal_put_begin(sh, size, &on0, &ref2, &next), 0);
    uint8_t *data = h_pattern(9, size);
    assert_int_equal(shoal_put_write(next, data, size), 0);
    assert_int_equal(shoal_put_end(&next), 0);
    memset(late, 0xee, size); //  the writer did not notice
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, ref2, WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 9, size);
    shoal_view_release(&v);
    //  The writer learns of it at the end, and lets go.
    assert_int_not_equal(shoal_put_end(&doomed), 0);
    assert_int_equal(shoal_remove(sh, &ref2, 1, WAIT_MS), 1);
    free(data);
    shoal_disconnect(&sh);
}

int main(void)
{
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    s_fns();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_small_put_is_read_back_and_feeds_a_task),
        cmocka_unit_test(test_a_large_put_is_written_in_shared_memory_and_read_zero_copy),
        cmocka_unit_test(test_a_removed_object_is_not_found_even_while_its_bytes_linger),
        cmocka_unit_test(test_a_remote_writer_sends_parts_and_a_remote_reader_fetches_them),
        cmocka_unit_test(test_a_task_reading_a_put_waits_for_the_seal),
        cmocka_unit_test(test_an_aborted_put_fails_its_readers_naming_it),
        cmocka_unit_test(test_a_put_larger_than_the_store_fails_at_once_naming_the_sizes),
        cmocka_unit_test(test_a_put_that_does_not_fit_now_waits_then_fails_naming_the_sizes),
        cmocka_unit_test(test_a_put_released_at_disconnect_or_expired_frees_its_space),
        cmocka_unit_test(test_a_stray_write_in_a_plugin_faults_and_spares_its_neighbours),
        cmocka_unit_test(test_a_writer_that_dies_mid_write_is_aborted_and_its_space_reclaimed),
        cmocka_unit_test(test_shoal_put_prints_a_ref_that_shoal_get_reads_back),
        cmocka_unit_test(test_shoal_put_with_a_size_prints_the_ref_before_the_bytes_arrive),
        cmocka_unit_test(test_shoal_submit_tags_outputs_and_expires_them_after_their_ttl),
        cmocka_unit_test(test_a_restarted_worker_keeps_its_store_unless_told_to_reset_it),
    };
    const struct CMUnitTest two[] = {
        cmocka_unit_test(test_a_worker_copies_an_input_out_of_a_peer_on_its_host),
        cmocka_unit_test(
            test_a_put_aborted_under_its_writer_keeps_its_space_until_the_writer_lets_go),
    };
    int failed = cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
    return failed + cmocka_run_group_tests(two, s_setup_two, h_fixture_stop);
}
