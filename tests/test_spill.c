/*  test_spill.c: the disk tier of a worker's store, on a real cluster.

    Each test starts its own broker and worker with a small arena (--shm-size 16M) and a
    disk tier (--spill-size) in the worker's store directory. What is checked: puts that
    do not fit in the arena spill older objects to disk and every object reads back
    whole, also through a same-host client whose zero-copy view finds it spilled; a task
    whose input was spilled gets it restored; a full disk tier gives the writer
    SHOAL_EFULL naming the sizes within a bounded time, never a hang. */
#include "harness.h"

#include <shoal.h>

#include "store.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(SHOAL_EXAMPLES_PLUGIN)
#error "tests/CMakeLists.txt defines SHOAL_EXAMPLES_PLUGIN"
#endif

#define WAIT_MS (30000 * h_scale())
#define MiB     (1024 * 1024)

static int s_teardown(void **state)
{
    return h_fixture_stop(state);
}

static h_cluster_t *s_start(void **state, const char *spill_size)
{
    char args[64];
    snprintf(args, sizeof args, "--spill-size %s", spill_size);
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", args);
    assert_non_null(c);
    *state = c;
    return c;
}

//  Waits until `shoal ls` shows ref in state (a word of its line). true, or false at the
//  deadline (after printing the last listing).
static bool s_wait_ls_state(h_cluster_t *c, shoal_ref_t ref, const char *state)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    int64_t deadline = h_now_ms() + 10000 * h_scale();
    h_result_t *r = NULL;
    do {
        r = h_run(c, 20000, "ls", NULL);
        const char *line = r->status == 0 ? strstr(r->out, text) : NULL;
        const char *end = line ? strchr(line, '\n') : NULL;
        const char *at = line ? strstr(line, state) : NULL;
        if (at && (!end || at < end))
            return true;
    } while (h_now_ms() < deadline);
    print_error("%s is not %s:\n%s%s\n", text, state, r->out, r->err);
    return false;
}

static void test_puts_beyond_the_arena_spill_and_every_one_reads_back(void **state)
{
    h_cluster_t *c = s_start(state, "64M");
    shoal_t *sh = h_connect(c);
    enum { N = 6 };
    size_t size = 5 * MiB + 4321; //  6 x 5 MiB in a 16 MiB arena: at least 3 spill
    shoal_ref_t refs[N];
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    for (int i = 0; i < N; i++) {
        uint8_t *data = h_pattern((uint64_t)i, size);
        int rc = shoal_put(sh, data, size, &store, &refs[i]);
        if (rc)
            print_error("put %d: %s\n", i, shoal_last_error(sh));
        assert_int_equal(rc, 0);
        free(data);
    }
    //  Newest first, then the oldest (spilled): a same-host reader falls back to the data
    //  socket, transparently.
    for (int i = N - 1; i >= 0; i--) {
        shoal_view_t v;
        int rc = shoal_get(sh, refs[i], WAIT_MS, &v);
        if (rc)
            print_error("get %d: %s\n", i, shoal_last_error(sh));
        assert_int_equal(rc, 0);
        h_assert_pattern(v.data, v.size, (uint64_t)i, size);
        shoal_view_release(&v);
    }
    //  The same through the CLI, in another process.
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(refs[0], text);
    h_result_t *r = h_run(c, 20000, "get", text, NULL);
    assert_int_equal(r->status, 0);
    h_assert_pattern(r->out, r->out_len, 0, size);
    //  The worker says it spilled.
    char *log = h_read_file(c, c->workers[0].log, NULL);
    assert_non_null(log);
    char *spill = h_fmt(c, "%s/spill/spill.mdb", c->workers[0].store_dir);
    size_t bytes = 0;
    assert_non_null(h_read_file(c, spill, &bytes));
    assert_true(bytes >= 3 * size);
    //  `shoal ls` tells which are on disk: the oldest, not the newest.
    assert_true(s_wait_ls_state(c, refs[0], "spilled"));
    assert_true(s_wait_ls_state(c, refs[N - 1], "sealed"));
    shoal_disconnect(&sh);
}

/*  Without --spill-size a worker has a disk tier of 4 x its arena (at most half the free
    disk), says so in its log, and a full arena spills rather than failing the writer. */
static void test_a_worker_spills_by_default(void **state)
{
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", NULL);
    assert_non_null(c);
    *state = c;
    shoal_t *sh = h_connect(c);
    enum { N = 5 };
    size_t size = 5 * MiB; //  25 MiB in a 16 MiB arena
    shoal_ref_t refs[N];
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    uint8_t *data = h_pattern(3, size);
    for (int i = 0; i < N; i++) {
        int rc = shoal_put(sh, data, size, &store, &refs[i]);
        if (rc)
            print_error("put %d: %s\n", i, shoal_last_error(sh));
        assert_int_equal(rc, 0);
    }
    free(data);
    assert_true(s_wait_ls_state(c, refs[0], "spilled"));
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, refs[0], WAIT_MS, &v), 0);
    h_assert_pattern(v.data, v.size, 3, size);
    shoal_view_release(&v);
    char *log = h_read_file(c, c->workers[0].log, NULL);
    assert_non_null(log);
    if (!strstr(log, "disk tier: up to"))
        print_error("worker log:\n%s\n", log);
    assert_non_null(strstr(log, "disk tier: up to"));
    shoal_disconnect(&sh);
}

static void test_a_task_whose_input_was_spilled_gets_it_back(void **state)
{
    h_cluster_t *c = s_start(state, "64M");
    shoal_t *sh = h_connect(c);
    size_t size = 6 * MiB;
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    shoal_ref_t first, other[3];
    uint8_t *data = h_pattern(7, size);
    assert_int_equal(shoal_put(sh, data, size, &store, &first), 0);
    free(data);
    for (int i = 0; i < 3; i++) { //  pushes first out to disk
        data = h_pattern(10 + (uint64_t)i, size);
        assert_int_equal(shoal_put(sh, data, size, &store, &other[i]), 0);
        free(data);
    }
    char fn[PATH_MAX + 16];
    snprintf(fn, sizeof fn, "%s:concat", SHOAL_EXAMPLES_PLUGIN);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = fn, .inputs = &first, .n_inputs = 1};
    shoal_ref_t task;
    assert_int_equal(shoal_submit(sh, &spec, &task), 0);
    shoal_view_t v;
    int rc = shoal_get(sh, task, WAIT_MS, &v);
    if (rc)
        print_error("get: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    h_assert_pattern(v.data, v.size, 7, size);
    shoal_view_release(&v);
    //  Back in memory, and the broker knows.
    assert_true(s_wait_ls_state(c, first, "sealed"));
    shoal_disconnect(&sh);
}

static void test_a_full_disk_tier_fails_the_writer_with_efull_in_bounded_time(void **state)
{
    h_cluster_t *c = s_start(state, "8M");
    shoal_t *sh = h_connect(c);
    size_t size = 6 * MiB;
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    shoal_ref_t refs[4];
    uint8_t *data = h_pattern(1, size);
    //  Two fit in the arena, the third spills one to disk (8 MiB), the fourth finds both
    //  full.
    for (int i = 0; i < 3; i++) {
        int rc = shoal_put(sh, data, size, &store, &refs[i]);
        if (rc)
            print_error("put %d: %s\n", i, shoal_last_error(sh));
        assert_int_equal(rc, 0);
    }
    int64_t start = h_now_ms();
    assert_int_equal(shoal_put(sh, data, size, &store, &refs[3]), SHOAL_EFULL);
    int64_t waited = h_now_ms() - start;
    print_message("the put failed after %" PRId64 " ms\n", waited);
    assert_true(waited < 10000 * h_scale());
    const char *why = shoal_last_error(sh);
    if (!strstr(why, "store full") || !strstr(why, "6 MiB") || !strstr(why, "disk tier"))
        print_error("error: %s\n", why);
    assert_true(strstr(why, "store full") && strstr(why, "6 MiB") && strstr(why, "disk tier"));
    //  Everything stored still reads back.
    for (int i = 0; i < 3; i++) {
        shoal_view_t v;
        assert_int_equal(shoal_get(sh, refs[i], WAIT_MS, &v), 0);
        h_assert_pattern(v.data, v.size, 1, size);
        shoal_view_release(&v);
    }
    free(data);
    shoal_disconnect(&sh);
}

static shoal_ref_t s_concat(shoal_t *sh, const shoal_ref_t *input, unsigned flags)
{
    static char fn[PATH_MAX + 16];
    snprintf(fn, sizeof fn, "%s:concat", SHOAL_EXAMPLES_PLUGIN);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = fn, .inputs = input, .n_inputs = 1, .flags = flags};
    shoal_ref_t task;
    assert_int_equal(shoal_submit(sh, &spec, &task), 0);
    return task;
}

static void s_assert_get(shoal_t *sh, shoal_ref_t ref, uint64_t seed, size_t size)
{
    shoal_view_t v;
    int rc = shoal_get(sh, ref, WAIT_MS, &v);
    if (rc)
        print_error("get: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    h_assert_pattern(v.data, v.size, seed, size);
    shoal_view_release(&v);
}

static void
test_persisted_objects_survive_a_sigkill_of_their_worker_and_the_loss_of_its_memory(void **state)
{
    //  Persists in steps of one 1 MiB piece a loop turn (worker.c: S_PERSIST_STEP): each
    //  3 MiB object below takes 4 turns, and its seal or its task's result waits for the last.
    setenv("SHOAL_TEST_PERSIST_STEP", "1048576", 1);
    //  No spill tier: persisted copies do not need one.
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", "--spill-size 0");
    unsetenv("SHOAL_TEST_PERSIST_STEP");
    assert_non_null(c);
    *state = c;
    shoal_t *sh = h_connect(c);
    size_t size = 3 * MiB + 17;
    uint8_t *data = h_pattern(21, size);
    shoal_ref_t kept, plain;
    shoal_put_opts_t persist = {.flags = SHOAL_PUT_PERSIST};
    assert_int_equal(shoal_put(sh, data, size, &persist, &kept), 0);
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    assert_int_equal(shoal_put(sh, data, size, &store, &plain), 0);
    shoal_ref_t task = s_concat(sh, &kept, SHOAL_TASK_PERSIST);
    s_assert_get(sh, task, 21, size);
    assert_true(s_wait_ls_state(c, kept, "persisted"));
    assert_true(s_wait_ls_state(c, task, "persisted"));
    assert_true(s_wait_ls_state(c, plain, "sealed"));
    //  The command line too.
    h_result_t *r =
        h_sh(c, 20000, "head -c 300000 /dev/urandom > $H_TMP/f && shoal put --persist $H_TMP/f");
    assert_int_equal(r->status, 0);
    char cli_ref[SHOAL_REF_TEXT_SIZE];
    assert_true(r->out_len >= 32);
    snprintf(cli_ref, sizeof cli_ref, "%.32s", r->out);

    //  Killed, and its memory gone with it (as a reboot empties /dev/shm).
    h_worker_t *w = &c->workers[0];
    assert_int_equal(h_kill_worker(c, 0, SIGKILL), 0);
    char pins[PATH_MAX];
    assert_int_equal(shoal_store_pins_path_for(w->arena, pins, sizeof pins), 0);
    assert_int_equal(unlink(w->arena), 0);
    unlink(pins);
    //  The broker counts it dead after missed heartbeats: its persisted objects stay listed,
    //  not lost, not recomputed; a get says why it cannot be served now.
    int64_t deadline = h_now_ms() + WAIT_MS;
    shoal_worker_info_t *list = NULL;
    size_t n = 1;
    while (n > 0 && h_now_ms() < deadline) {
        assert_int_equal(shoal_workers(sh, &list, &n, WAIT_MS), 0);
        shoal_workers_free(&list, n);
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL); //  between polls
    }
    assert_int_equal(n, 0);
    //  (A new client: this one's view of the old arena would still show the bytes.)
    shoal_t *other = h_connect(c);
    shoal_view_t v;
    assert_int_equal(shoal_get(other, kept, WAIT_MS, &v), SHOAL_EAGAIN);
    const char *why = shoal_last_error(other);
    if (!strstr(why, "away") || !strstr(why, w->name))
        print_error("error: %s\n", why);
    assert_true(strstr(why, "away") && strstr(why, w->name));
    shoal_disconnect(&other);
    assert_true(s_wait_ls_state(c, kept, "persisted"));
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, task, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_DONE); //  not rerun
    //  A task that reads it waits for the worker instead of failing.
    shoal_ref_t later = s_concat(sh, &kept, 0);
    assert_int_equal(shoal_flush(sh, WAIT_MS), 0);

    //  Back on the same store directory: served again, from its disk copy.
    assert_int_equal(h_start_worker(c, 0), 0);
    assert_int_equal(h_wait_workers(c, WAIT_MS), 0);
    s_assert_get(sh, kept, 21, size);
    s_assert_get(sh, task, 21, size);
    s_assert_get(sh, later, 21, size);
    r = h_sh(c, 20000, "shoal get %s > $H_TMP/g && cmp $H_TMP/f $H_TMP/g", cli_ref);
    assert_int_equal(r->status, 0);
    //  What was not persisted is lost with the memory.
    assert_int_not_equal(shoal_get(sh, plain, 5000, &v), 0);
    char *log = h_read_file(c, w->log, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "re-adopted 3 objects from the disk tier"));
    free(data);
    shoal_disconnect(&sh);
}

//  A put made in another thread (its connection is the thread's alone).
typedef struct {
    shoal_t *sh;
    const void *data;
    size_t size;
    shoal_ref_t ref;
    int rc;
} s_put_arg_t;

static void *s_put_thread(void *arg)
{
    s_put_arg_t *a = arg;
    shoal_put_opts_t persist = {.flags = SHOAL_PUT_PERSIST};
    a->rc = shoal_put(a->sh, a->data, a->size, &persist, &a->ref);
    return NULL;
}

static bool s_log_has(h_cluster_t *c, int i, const char *what)
{
    char *log = h_read_file(c, c->workers[i].log, NULL);
    return log && strstr(log, what);
}

static int s_log_count(h_cluster_t *c, int i, const char *what)
{
    char *log = h_read_file(c, c->workers[i].log, NULL);
    int n = 0;
    for (const char *at = log; at && (at = strstr(at, what)); at++)
        n++;
    return n;
}

static void test_a_persist_cut_short_by_a_kill_is_neither_acknowledged_nor_kept(void **state)
{
    //  Persists wait while the gate file exists: the worker is killed with the put sealed in
    //  its store, its disk copy not written.
    char gate[PATH_MAX];
    snprintf(gate, sizeof gate, "/tmp/shoal-gate-%d", (int)getpid());
    assert_int_equal(h_write_file(gate, "", 0), 0);
    setenv("SHOAL_TEST_PERSIST_GATE", gate, 1);
    //  A fixed data port: the writer's resent SEAL reaches the restarted worker.
    char args[96];
    snprintf(args, sizeof args, "--spill-size 0 --data tcp://127.0.0.1:%d", h_free_port());
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", args);
    unsetenv("SHOAL_TEST_PERSIST_GATE");
    if (!c)
        unlink(gate);
    assert_non_null(c);
    *state = c;
    size_t size = 3 * MiB + 5;
    uint8_t *data = h_pattern(31, size);
    s_put_arg_t put = {.sh = h_connect(c), .data = data, .size = size};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_put_thread, &put), 0);
    int64_t deadline = h_now_ms() + WAIT_MS;
    while (!s_log_has(c, 0, "held back by") && h_now_ms() < deadline)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
    bool held = s_log_has(c, 0, "held back by");
    //  Another put's seal is answered after an index flush: the index then says what it
    //  says of the first one.
    shoal_t *sh = h_connect(c);
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    shoal_ref_t other;
    assert_int_equal(shoal_put(sh, data, 100, &store, &other), 0);
    assert_int_equal(h_kill_worker(c, 0, SIGKILL), 0);
    unlink(gate);
    assert_true(held);
    //  Back on the same store before the broker counts it dead (a new process may take
    //  the name once the old one has been silent for two heartbeats: until then it is
    //  refused and exits, and starts again). The object was never on disk, so it is not
    //  re-adopted, its hello does not report it (the broker would mark the put done), and
    //  the writer's resent SEAL is not answered OK.
    int joined = s_log_count(c, 0, "joined the broker");
    for (;;) {
        assert_int_equal(h_start_worker(c, 0), 0);
        pid_t pid = c->workers[0].pid;
        while (h_pid_alive(pid) && s_log_count(c, 0, "joined the broker") == joined &&
               h_now_ms() < deadline)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
        if (s_log_count(c, 0, "joined the broker") > joined)
            break;
        waitpid(pid, NULL, 0);
        c->workers[0].pid = 0;
        assert_true(h_now_ms() < deadline);
    }
    pthread_join(thread, NULL);
    if (put.rc == 0)
        print_error("the put was acknowledged though its copy was never written\n");
    assert_int_not_equal(put.rc, 0);
    shoal_view_t v;
    assert_int_not_equal(shoal_get(sh, put.ref, 2000, &v), 0);
    assert_false(s_log_has(c, 0, "re-adopted 2 objects")); //  the other put only
    shoal_disconnect(&sh);
    shoal_disconnect(&put.sh);
    free(data);
}

static void test_a_persist_of_many_small_outputs_is_spread_over_loop_turns(void **state)
{
    //  Steps of 1 MiB: each object costs at least 512 KiB of one (worker.c:
    //  S_PERSIST_REF_COST), so two of them a turn, however small.
    setenv("SHOAL_TEST_PERSIST_STEP", "1048576", 1);
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", "--spill-size 0");
    unsetenv("SHOAL_TEST_PERSIST_STEP");
    assert_non_null(c);
    *state = c;
    shoal_t *sh = h_connect(c);
    //  64 outputs of 64 KiB fill the result's 4 MiB inline budget: the 100 of 10 bytes
    //  after them are stored, and persisted.
    enum { n_big = 64, n_small = 100 };
    char arg[n_big * 8 + n_small * 4];
    size_t len = 0;
    for (int i = 0; i < n_big + n_small; i++)
        len += (size_t)snprintf(arg + len, sizeof arg - len, "%s ", i < n_big ? "65536" : "10");
    static char fn[PATH_MAX + 16];
    snprintf(fn, sizeof fn, "%s:outputs", SHOAL_TEST_PLUGIN);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                              .fn = fn,
                              .arg = arg,
                              .arg_size = len + 1,
                              .n_outputs = n_big + n_small,
                              .flags = SHOAL_TASK_PERSIST};
    shoal_ref_t task;
    assert_int_equal(shoal_submit(sh, &spec, &task), 0);
    assert_int_equal(shoal_wait(sh, &task, 1, false, WAIT_MS), 0);
    shoal_ref_t last = shoal_ref_output(task, n_big + n_small - 1);
    assert_true(s_wait_ls_state(c, last, "persisted"));
    char *log = h_read_file(c, c->workers[0].log, NULL);
    const char *at = log ? strstr(log, "persist: 100 objects (1000 bytes) written in ") : NULL;
    unsigned turns = 0; //  no line: written in one turn
    if (at)
        assert_int_equal(sscanf(at, "persist: %*u objects (%*u bytes) written in %u", &turns), 1);
    if (turns < n_small / 2)
        print_error("the persist took %u turns:\n%s\n", turns, log ? log : "");
    assert_true(turns >= n_small / 2);
    shoal_disconnect(&sh);
}

static void test_a_persisted_put_held_longer_than_the_writers_silence_limit_succeeds(void **state)
{
    //  Persists wait while the gate file exists; the writer takes 2 s of silence for death
    //  (client.c: S_PUT_SILENT_MS), and its resent SEALs are answered busy meanwhile.
    char gate[PATH_MAX];
    snprintf(gate, sizeof gate, "/tmp/shoal-gate-busy-%d", (int)getpid());
    assert_int_equal(h_write_file(gate, "", 0), 0);
    setenv("SHOAL_TEST_PERSIST_GATE", gate, 1);
    setenv("SHOAL_TEST_PERSIST_STEP", "1048576", 1);
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", "--spill-size 0");
    unsetenv("SHOAL_TEST_PERSIST_GATE");
    unsetenv("SHOAL_TEST_PERSIST_STEP");
    if (!c)
        unlink(gate);
    assert_non_null(c);
    *state = c;
    setenv("SHOAL_TEST_PUT_SILENT_MS", "2000", 1);
    size_t size = 3 * MiB + 7;
    uint8_t *data = h_pattern(41, size);
    s_put_arg_t put = {.sh = h_connect(c), .data = data, .size = size, .rc = 1};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_put_thread, &put), 0);
    int64_t deadline = h_now_ms() + WAIT_MS;
    while (!s_log_has(c, 0, "held back by") && h_now_ms() < deadline)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
    bool held = s_log_has(c, 0, "held back by");
    //  Held for twice the writer's silence limit.
    int64_t until = h_now_ms() + 4000;
    while (h_now_ms() < until)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
    unlink(gate);
    pthread_join(thread, NULL);
    unsetenv("SHOAL_TEST_PUT_SILENT_MS");
    assert_true(held);
    if (put.rc)
        print_error("put: %s\n", shoal_last_error(put.sh));
    assert_int_equal(put.rc, 0);
    s_assert_get(put.sh, put.ref, 41, size);
    assert_true(s_wait_ls_state(c, put.ref, "persisted"));
    shoal_disconnect(&put.sh);
    free(data);
}

static void test_a_retry_on_the_same_worker_keeps_its_outputs_from_an_older_persist(void **state)
{
    //  Attempt 1 seals its output at once (the go file exists) and its persist is held by
    //  the gate; the worker is stopped until the broker counts it dead, so the task runs
    //  again there once it is back: attempt 2 allocates the same output and waits for the
    //  go file. Then the gate opens: attempt 1's persist must not take attempt 2's
    //  allocation with it.
    char gate[PATH_MAX], go[PATH_MAX];
    snprintf(gate, sizeof gate, "/tmp/shoal-gate-retry-%d", (int)getpid());
    snprintf(go, sizeof go, "/tmp/shoal-go-retry-%d", (int)getpid());
    assert_int_equal(h_write_file(gate, "", 0), 0);
    assert_int_equal(h_write_file(go, "", 0), 0);
    setenv("SHOAL_TEST_PERSIST_GATE", gate, 1);
    h_cluster_t *c = h_cluster_start_with(1, 2, "16M", "--spill-size 0");
    unsetenv("SHOAL_TEST_PERSIST_GATE");
    if (!c)
        unlink(gate), unlink(go);
    assert_non_null(c);
    *state = c;
    shoal_t *sh = h_connect(c);
    static char fn[PATH_MAX + 16];
    snprintf(fn, sizeof fn, "%s:stream_slowly", SHOAL_TEST_PLUGIN);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                              .fn = fn,
                              .arg = go,
                              .arg_size = strlen(go) + 1,
                              .retries = 0,
                              .flags = SHOAL_TASK_PERSIST};
    shoal_ref_t task;
    assert_int_equal(shoal_submit(sh, &spec, &task), 0);
    assert_int_equal(shoal_flush(sh, WAIT_MS), 0);
    int64_t deadline = h_now_ms() + WAIT_MS;
    while (!s_log_has(c, 0, "held back by") && h_now_ms() < deadline)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
    bool held = s_log_has(c, 0, "held back by");
    unlink(go);
    pid_t pid = c->workers[0].pid;
    assert_int_equal(kill(pid, SIGSTOP), 0);
    shoal_worker_info_t *list = NULL;
    size_t n = 1;
    while (n > 0 && h_now_ms() < deadline) {
        assert_int_equal(shoal_workers(sh, &list, &n, WAIT_MS), 0);
        shoal_workers_free(&list, n);
        if (n)
            nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL); //  between polls
    }
    assert_int_equal(kill(pid, SIGCONT), 0);
    if (!held || n)
        unlink(gate);
    assert_true(held);
    assert_int_equal(n, 0);
    //  Attempt 2 runs (the broker says so), and has its output allocated a moment later.
    bool running = false;
    while (!running && h_now_ms() < deadline) {
        assert_int_equal(shoal_workers(sh, &list, &n, WAIT_MS), 0);
        running = n == 1 && list[0].running == 1;
        shoal_workers_free(&list, n);
        if (!running)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
    }
    //  Then the gate opens for a while (persists look at it every 10 ms) before attempt 2
    //  may go on.
    for (int k = 0; k < 2; k++) {
        int64_t until = h_now_ms() + 500;
        while (h_now_ms() < until)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); //  between polls
        unlink(gate);
    }
    assert_int_equal(h_write_file(go, "", 0), 0);
    int rc = shoal_wait(sh, &task, 1, false, WAIT_MS);
    if (rc)
        print_error("wait: %s\n", shoal_last_error(sh));
    unlink(go);
    assert_true(running);
    assert_int_equal(rc, 0);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, task, WAIT_MS, &v), 0);
    assert_int_equal(v.size, 2 << 20);
    const uint8_t *b = v.data;
    assert_true(b[0] == 'a' && b[(1 << 20) - 1] == 'a' && b[1 << 20] == 'b' &&
                b[(2 << 20) - 1] == 'b');
    shoal_view_release(&v);
    assert_true(s_wait_ls_state(c, task, "persisted"));
    shoal_disconnect(&sh);
}

int main(void)
{
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_puts_beyond_the_arena_spill_and_every_one_reads_back,
                                  s_teardown),
        cmocka_unit_test_teardown(test_a_worker_spills_by_default, s_teardown),
        cmocka_unit_test_teardown(test_a_task_whose_input_was_spilled_gets_it_back, s_teardown),
        cmocka_unit_test_teardown(test_a_full_disk_tier_fails_the_writer_with_efull_in_bounded_time,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_persisted_objects_survive_a_sigkill_of_their_worker_and_the_loss_of_its_memory,
            s_teardown),
        cmocka_unit_test_teardown(
            test_a_persist_cut_short_by_a_kill_is_neither_acknowledged_nor_kept, s_teardown),
        cmocka_unit_test_teardown(test_a_persist_of_many_small_outputs_is_spread_over_loop_turns,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_a_persisted_put_held_longer_than_the_writers_silence_limit_succeeds, s_teardown),
        cmocka_unit_test_teardown(
            test_a_retry_on_the_same_worker_keeps_its_outputs_from_an_older_persist, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
