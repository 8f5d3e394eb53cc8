/*  test_plugins.c: fn tasks, C functions in plugins, on a real cluster.

    One cluster (broker + 2 workers, 2 slots each) serves every test. The functions come
    from the example plugin (examples/plugins/shoal_examples.c) and from a plugin that
    exercises the corners of the API (tests/plugin_test.c); tests/CMakeLists.txt passes
    their paths as SHOAL_EXAMPLES_PLUGIN and SHOAL_TEST_PLUGIN. The 10,000-task DAG is
    submitted from this process through libshoal: a `shoal submit` per task would spend
    its time starting processes. */
#include "harness.h"

#include <shoal.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if !defined(SHOAL_EXAMPLES_PLUGIN) || !defined(SHOAL_TEST_PLUGIN)
#error "tests/CMakeLists.txt defines SHOAL_EXAMPLES_PLUGIN and SHOAL_TEST_PLUGIN"
#endif

//  A command is a process start, a hello round trip and a request: well under a second.
#define CMD_MS 20000
//  The 10,000-task DAG takes a few seconds; minutes would mean something is wrong.
#define LONG_MS 180000

static int s_setup(void **state)
{
    //  128 MiB: the DAG leaves 11,111 small objects, a page each, spread over two workers.
    return h_fixture_start(state, 2, 2, "128M");
}

//  "LIB:SYMBOL" of the example plugin and of the test plugin.
static const char *s_ex(h_cluster_t *c, const char *symbol)
{
    return h_fmt(c, "%s:%s", SHOAL_EXAMPLES_PLUGIN, symbol);
}

static const char *s_tp(h_cluster_t *c, const char *symbol)
{
    return h_fmt(c, "%s:%s", SHOAL_TEST_PLUGIN, symbol);
}

/*  `shoal submit ARG...`: asserts success and n_outputs refs on stdout; returns the first
    (owned by the cluster). */
static const char *s_submit_v(h_cluster_t *c, int n_outputs, const char *const *args)
{
    const char *argv[64] = {"submit"};
    size_t n = 1;
    while (args[n - 1] && n < 63) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    h_result_t *r = h_runv(c, CMD_MS, argv);
    h_assert_exit(r, 0);
    char refs[128][33];
    int got = h_parse_refs(r->out, refs, 128);
    if (got != n_outputs)
        print_error("submit printed:\n%s\n", r->out);
    assert_int_equal(got, n_outputs);
    return h_fmt(c, "%s", refs[0]);
}

#define s_submit(c, ...)      s_submit_v((c), 1, (const char *const[]){__VA_ARGS__, NULL})
#define s_submit_n(c, n, ...) s_submit_v((c), (n), (const char *const[]){__VA_ARGS__, NULL})

//  The ref of output i of the task whose output 0 is ref: the last four hex digits.
static const char *s_output(h_cluster_t *c, const char *ref, int i)
{
    return h_fmt(c, "%.28s%04x", ref, i);
}

//  `shoal get REF`, asserting success; returns stdout (owned by the cluster).
static h_result_t *s_get(h_cluster_t *c, const char *ref)
{
    h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "60", ref, NULL);
    h_assert_exit(r, 0);
    return r;
}

//  Asserts that text mentions what, printing text when it does not.
static void s_assert_says(const char *text, const char *what)
{
    if (!h_contains(text, what))
        print_error("expected \"%s\" in:\n%s\n", what, text);
    assert_true(h_contains(text, what));
}

//  `shoal wait REF` of a task that must fail: returns what it printed.
static char *s_wait_fails(h_cluster_t *c, const char *ref)
{
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "60", ref, NULL);
    h_assert_exit(r, 1);
    return h_all(c, r);
}

//  Asserts that the size bytes at data are the pattern of examples' fill: i % 251.
static void s_assert_fill_pattern(const char *data, size_t size, size_t want)
{
    assert_int_equal(size, want);
    for (size_t i = 0; i < size; i++)
        if ((unsigned char)data[i] != i % 251) {
            print_error("byte %zu is %u, not %zu\n", i, (unsigned char)data[i], i % 251);
            fail();
        }
}

//  ---------------------------------------------------------------- functions that work

static void test_a_function_computes_its_output_from_its_argument(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "run", "--fn", s_ex(c, "square"), "--arg", "12", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "144\n");

    char *file = h_fmt(c, "%s/arg.txt", c->tmp);
    assert_int_equal(h_write_file(file, "  -9\n", 5), 0);
    const char *ref = s_submit(c, "--fn", s_ex(c, "square"), "--arg-file", file);
    assert_string_equal(s_get(c, ref)->out, "81\n");
}

static void test_a_function_sums_the_outputs_of_other_tasks(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *a = s_submit(c, "--fn", s_ex(c, "square"), "--arg", "3");
    const char *b = s_submit(c, "--fn", s_ex(c, "square"), "--arg", "4");
    const char *e = s_submit(c, "--fn", s_ex(c, "echo"), "--arg", "10 -2 x7");
    const char *x = s_submit(c, "--exec", "--", "echo", "100");
    const char *sum =
        s_submit(c, "--fn", s_ex(c, "sum"), "--input", a, "--input", b, "--input", e, "--input", x);
    assert_string_equal(s_get(c, sum)->out, "140\n");
    //  And an exec task reads a function's output like any other object.
    const char *cat = s_submit(c, "--input", sum, "--exec", "--", "sh", "-c",
                               "cat \"$SHOAL_INPUT_0\" \"$SHOAL_INPUT_0\"");
    assert_string_equal(s_get(c, cat)->out, "140\n140\n");
}

static void test_outputs_beyond_64_kib_are_written_in_place_in_the_store(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *big = s_submit(c, "--fn", s_ex(c, "fill"), "--arg", "200k");
    const char *huge = s_submit(c, "--fn", s_ex(c, "fill"), "--arg", "3m");
    const char *three = s_submit(c, "--fn", s_ex(c, "echo"), "--arg", "abc");
    const char *cat =
        s_submit(c, "--fn", s_ex(c, "concat"), "--input", big, "--input", three, "--input", huge);
    h_result_t *r = s_get(c, big);
    s_assert_fill_pattern(r->out, r->out_len, 200 * 1024);
    r = s_get(c, huge);
    s_assert_fill_pattern(r->out, r->out_len, 3 << 20);
    r = s_get(c, cat);
    assert_int_equal(r->out_len, 200 * 1024 + 3 + (3 << 20));
    s_assert_fill_pattern(r->out, 200 * 1024, 200 * 1024);
    assert_memory_equal(r->out + 200 * 1024, "abc", 3);
    s_assert_fill_pattern(r->out + 200 * 1024 + 3, 3 << 20, 3 << 20);

    //  Several outputs, small and large mixed, sealed in any order.
    const char *mixed =
        s_submit_n(c, 3, "--fn", s_tp(c, "outputs"), "--outputs", "3", "--arg", "10 100000 0");
    size_t sizes[3] = {10, 100000, 0};
    for (int i = 0; i < 3; i++) {
        r = s_get(c, s_output(c, mixed, i));
        assert_int_equal(r->out_len, sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal((unsigned char)r->out[j], (i + j) % 253);
    }
    //  80 outputs of 64 KiB: each may travel inline, but not all together (a result
    //  carries at most 4 MiB inline); the rest go through the store.
    char sz[80 * 8] = "";
    for (int i = 0; i < 80; i++)
        strcat(sz, "65536 ");
    const char *many =
        s_submit_n(c, 80, "--fn", s_tp(c, "outputs"), "--outputs", "80", "--arg", sz);
    for (int i = 0; i < 80; i += 13) {
        r = s_get(c, s_output(c, many, i));
        assert_int_equal(r->out_len, 65536);
        assert_int_equal((unsigned char)r->out[1000], (i + 1000) % 253);
    }
    r = s_get(c, s_output(c, many, 79));
    assert_int_equal(r->out_len, 65536);
    assert_int_equal((unsigned char)r->out[65535], (79 + 65535) % 253);
}

static void test_a_function_sees_its_id_argument_and_counts(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *a = s_submit(c, "--fn", s_ex(c, "echo"), "--arg", "a");
    const char *info = s_submit_n(c, 2, "--fn", s_tp(c, "info"), "--input", a, "--input", a,
                                  "--outputs", "2", "--arg", "xyz");
    h_result_t *r = s_get(c, info);
    assert_string_equal(r->out, h_fmt(c, "%s 0 2 2 3 1\n", info));
    //  An empty argument is "" (NUL-terminated) too.
    r = h_run(c, CMD_MS, "run", "--fn", s_tp(c, "info"), NULL);
    h_assert_exit(r, 0);
    assert_non_null(strstr(r->out, " 0 0 1 0 1\n"));
}

static void test_the_task_api_refuses_misuse_with_error_codes(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *in = s_submit(c, "--fn", s_ex(c, "echo"), "--arg", "input");
    const char *ref = s_submit(c, "--fn", s_tp(c, "api_misuse"), "--input", in);
    h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "60", ref, NULL);
    if (r->status != 0)
        print_error("%s\n", h_all(c, r));
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "fine\n");
}

static void test_what_a_function_prints_is_its_log(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *ref = s_submit(c, "--fn", s_tp(c, "noisy"), "--arg", "0");
    assert_string_equal(s_get(c, ref)->out, "quiet\n");
    h_result_t *r = h_run(c, CMD_MS, "logs", ref, NULL);
    h_assert_exit(r, 0);
    s_assert_says(r->out, "printf to stdout");
    s_assert_says(r->out, "write to stdout");
    s_assert_says(r->out, "fprintf to stderr");

    //  A log beyond 64 KiB goes to the store like a large output.
    ref = s_submit(c, "--fn", s_tp(c, "noisy"), "--arg", "100000");
    assert_string_equal(s_get(c, ref)->out, "quiet\n");
    r = h_run(c, CMD_MS, "logs", ref, NULL);
    h_assert_exit(r, 0);
    assert_true(r->out_len > 100000);
    s_assert_says(r->out, "fprintf to stderr");

    //  `shoal run` shows the output on stdout and the log on stderr.
    r = h_run(c, CMD_MS, "run", "--fn", s_tp(c, "noisy"), "--arg", "0", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "quiet\n");
    s_assert_says(r->err, "fprintf to stderr");
}

//  -------------------------------------------------------------------------- failures

/*  After a failure the cluster carries on: the same worker processes, and a batch of
    function tasks (more than all the slots) all succeed. */
static void s_assert_cluster_carries_on(h_cluster_t *c, const pid_t *pids)
{
    for (int i = 0; i < c->n_workers; i++) {
        assert_true(h_pid_alive(c->workers[i].pid));
        assert_int_equal(c->workers[i].pid, pids[i]);
    }
    const char *refs[8];
    for (int i = 0; i < 8; i++)
        refs[i] = s_submit(c, "--fn", s_ex(c, "square"), "--arg", h_fmt(c, "%d", i + 10));
    for (int i = 0; i < 8; i++)
        assert_string_equal(s_get(c, refs[i])->out, h_fmt(c, "%d\n", (i + 10) * (i + 10)));
}

static void test_a_failing_function_reports_its_message(void **state)
{
    h_cluster_t *c = h_state(state);
    pid_t pids[2] = {c->workers[0].pid, c->workers[1].pid};
    const char *bad = s_submit(c, "--fn", s_ex(c, "fail"), "--arg", "the flux capacitor broke");
    const char *dep = s_submit(c, "--fn", s_ex(c, "sum"), "--input", bad);
    char *said = s_wait_fails(c, bad);
    s_assert_says(said, "the flux capacitor broke");
    s_assert_says(said, "about to fail"); //  the end of its log comes with the reason
    said = s_wait_fails(c, dep);
    s_assert_says(said, bad); //  a dependent names its failed input
    h_result_t *r = h_run(c, CMD_MS, "logs", bad, NULL);
    h_assert_exit(r, 0);
    s_assert_says(r->out, "fail: about to fail");

    //  `shoal run` prints the message, and exits with what the function returned.
    r = h_run(c, CMD_MS, "run", "--fn", s_ex(c, "fail"), "--arg", "no luck", NULL);
    h_assert_exit(r, 1);
    s_assert_says(r->err, "no luck");
    r = h_run(c, CMD_MS, "run", "--fn", s_tp(c, "returns_three"), NULL);
    h_assert_exit(r, 3);
    s_assert_says(r->err, "returns_three returned 3");
    r = h_run(c, CMD_MS, "run", "--fn", s_ex(c, "square"), "--arg", "twelve", NULL);
    h_assert_exit(r, 2);
    s_assert_says(r->err, "twelve");

    //  Success needs every output sealed.
    said = s_wait_fails(c, s_submit(c, "--fn", s_tp(c, "unsealed")));
    s_assert_says(said, "never sealed output 0");
    said = s_wait_fails(c, s_submit_n(c, 2, "--fn", s_tp(c, "half_written"), "--outputs", "2"));
    s_assert_says(said, "never wrote output 1");
    //  An allocation the store cannot hold fails with the store's reason.
    said = s_wait_fails(c, s_submit(c, "--fn", s_ex(c, "fill"), "--arg", "1g"));
    s_assert_says(said, "larger than the whole store");
    s_assert_cluster_carries_on(c, pids);
}

//  The failure reason of a task killed by SIGSEGV. Under AddressSanitizer the executor's
//  SEGV handler reports and exits with status 1 instead (handle_segv).
static void s_assert_segv(const char *said)
{
    s_assert_says(said, "executor died");
#if defined(__SANITIZE_ADDRESS__)
    bool named = h_contains(said, "SIGSEGV") || h_contains(said, "exited with status 1");
#else
    bool named = h_contains(said, "SIGSEGV") && h_contains(said, "signal 11");
#endif
    if (!named)
        print_error("wait said:\n%s\n", said);
    assert_true(named);
}

static void test_a_crashing_function_fails_naming_the_signal_and_the_worker_goes_on(void **state)
{
    h_cluster_t *c = h_state(state);
    pid_t pids[2] = {c->workers[0].pid, c->workers[1].pid};
    s_assert_segv(s_wait_fails(c, s_submit(c, "--fn", s_ex(c, "crash"))));

    //  Inputs are mapped read-only: a function that writes into one dies, the object is
    //  intact.
    const char *in = s_submit(c, "--fn", s_ex(c, "echo"), "--arg", "precious");
    const char *vandal = s_submit(c, "--fn", s_tp(c, "write_input"), "--input", in);
    s_assert_segv(s_wait_fails(c, vandal));
    assert_string_equal(s_get(c, in)->out, "precious");
    //  Several crashes in a row: each executor is replaced.
    const char *refs[4];
    for (int i = 0; i < 4; i++)
        refs[i] = s_submit(c, "--fn", s_ex(c, "crash"));
    for (int i = 0; i < 4; i++)
        s_assert_segv(s_wait_fails(c, refs[i]));
    s_assert_cluster_carries_on(c, pids);
}

static void test_a_missing_library_or_function_is_named(void **state)
{
    h_cluster_t *c = h_state(state);
    pid_t pids[2] = {c->workers[0].pid, c->workers[1].pid};
    h_result_t *r = h_run(c, CMD_MS, "run", "--fn", "/nonexistent/libnope.so:f", NULL);
    h_assert_exit(r, 127);
    s_assert_says(r->err, "cannot load plugin /nonexistent/libnope.so");
    s_assert_says(r->err, "no such file");

    char *said = s_wait_fails(c, s_submit(c, "--fn", s_ex(c, "no_such_function")));
    s_assert_says(said,
                  h_fmt(c, "plugin %s has no function no_such_function", SHOAL_EXAMPLES_PLUGIN));
    //  Both are "not found" (SHOAL_ENOTFOUND): `shoal run` exits 127 as for a command.
    r = h_run(c, CMD_MS, "run", "--fn", s_ex(c, "no_such_function"), NULL);
    h_assert_exit(r, 127);
    s_assert_says(r->err, "has no function no_such_function");

    //  Not a library at all.
    char *junk = h_fmt(c, "%s/junk.so", c->tmp);
    assert_int_equal(h_write_file(junk, "not an ELF file\n", 16), 0);
    said = s_wait_fails(c, s_submit(c, "--fn", h_fmt(c, "%s:f", junk)));
    s_assert_says(said, h_fmt(c, "cannot load plugin %s", junk));

    //  The CLI refuses what cannot name a function.
    r = h_run(c, CMD_MS, "submit", "--fn", "no-colon", NULL);
    h_assert_exit(r, 2);
    r = h_run(c, CMD_MS, "submit", "--fn", s_ex(c, "square"), "--", "ls", NULL);
    h_assert_exit(r, 2);
    r = h_run(c, CMD_MS, "submit", "--arg", "1", "--", "ls", NULL);
    h_assert_exit(r, 2);
    s_assert_cluster_carries_on(c, pids);
}

//  ------------------------------------------------------------------- the large DAG

//  Task counts by worker name, from the broker.
static void s_done_counts(shoal_t *sh, h_cluster_t *c, uint64_t *done)
{
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(shoal_workers(sh, &list, &n, 10000), 0);
    for (int i = 0; i < c->n_workers; i++) {
        done[i] = UINT64_MAX;
        for (size_t k = 0; k < n; k++)
            if (strcmp(list[k].name, c->workers[i].name) == 0)
                done[i] = list[k].done;
        assert_true(done[i] != UINT64_MAX);
    }
    shoal_workers_free(&list, n);
}

/*  10,000 square tasks (arguments 1..10,000), summed by a tree of sum tasks ten inputs
    wide (1,000 + 100 + 10 + 1 of them): the root must be the sum of the squares,
    n(n+1)(2n+1)/6. */
static void test_a_dag_of_10000_function_tasks_over_two_workers(void **state)
{
    h_cluster_t *c = h_state(state);
    enum { N = 10000, FAN = 10 };
    shoal_t *sh = NULL;
    int rc = shoal_connect(c->listen, 10000 * h_scale(), &sh);
    if (rc)
        print_error("connect: %s\n", shoal_last_error(NULL));
    assert_int_equal(rc, 0);
    uint64_t before[2], after[2];
    s_done_counts(sh, c, before);

    shoal_ref_t *all = calloc(2 * N, sizeof *all);
    assert_non_null(all);
    size_t n_all = 0;
    const char *square = s_ex(c, "square"), *sum = s_ex(c, "sum");
    int64_t t0 = h_now_ms();
    for (int i = 1; i <= N; i++) {
        char arg[16];
        int len = snprintf(arg, sizeof arg, "%d", i);
        shoal_task_spec_t spec = {
            .kind = SHOAL_TASK_FN, .fn = square, .arg = arg, .arg_size = (size_t)len};
        assert_int_equal(shoal_submit(sh, &spec, &all[n_all++]), 0);
    }
    //  Each level sums groups of FAN refs of the level below.
    size_t level = 0, level_n = N;
    while (level_n > 1) {
        size_t next = n_all;
        for (size_t k = 0; k < level_n; k += FAN) {
            shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                                      .fn = sum,
                                      .inputs = all + level + k,
                                      .n_inputs = level_n - k < FAN ? level_n - k : FAN};
            assert_int_equal(shoal_submit(sh, &spec, &all[n_all++]), 0);
        }
        level = next;
        level_n = n_all - next;
    }
    shoal_ref_t root = all[n_all - 1];
    assert_int_equal(shoal_flush(sh, 30000 * h_scale()), 0);
    int64_t t_submitted = h_now_ms();
    rc = shoal_wait(sh, &root, 1, false, LONG_MS * h_scale());
    if (rc)
        print_error("wait: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    int64_t t_done = h_now_ms();
    shoal_view_t view;
    assert_int_equal(shoal_get(sh, root, 30000 * h_scale(), &view), 0);
    char got[64];
    snprintf(got, sizeof got, "%.*s", (int)view.size, (const char *)view.data);
    shoal_view_release(&view);
    const uint64_t n = N;
    assert_string_equal(got, h_fmt(c, "%" PRIu64 "\n", n * (n + 1) * (2 * n + 1) / 6));
    double secs = (double)(t_done - t0) / 1000.0;
    print_message("%zu fn tasks (%d squares, %zu sums): submitted in %.2f s, done in %.2f s: "
                  "%.0f tasks/s\n",
                  n_all, N, n_all - N, (double)(t_submitted - t0) / 1000.0, secs,
                  (double)n_all / (secs > 0 ? secs : 1));

    //  Both workers took a real share.
    s_done_counts(sh, c, after);
    print_message("tasks done: %s %" PRIu64 ", %s %" PRIu64 "\n", c->workers[0].name,
                  after[0] - before[0], c->workers[1].name, after[1] - before[1]);
    assert_true(after[0] - before[0] >= n_all / 10);
    assert_true(after[1] - before[1] >= n_all / 10);
    assert_int_equal(after[0] - before[0] + after[1] - before[1], n_all);
    //  Leave the stores as they were.
    assert_int_equal(shoal_remove(sh, all, n_all, 30000 * h_scale()), (int)n_all);
    free(all);
    shoal_disconnect(&sh);
}

int main(void)
{
    //  SHOAL_TEST_FILTER=PATTERN runs only the tests whose name matches (* wildcards).
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_function_computes_its_output_from_its_argument),
        cmocka_unit_test(test_a_function_sums_the_outputs_of_other_tasks),
        cmocka_unit_test(test_outputs_beyond_64_kib_are_written_in_place_in_the_store),
        cmocka_unit_test(test_a_function_sees_its_id_argument_and_counts),
        cmocka_unit_test(test_the_task_api_refuses_misuse_with_error_codes),
        cmocka_unit_test(test_what_a_function_prints_is_its_log),
        cmocka_unit_test(test_a_failing_function_reports_its_message),
        cmocka_unit_test(test_a_crashing_function_fails_naming_the_signal_and_the_worker_goes_on),
        cmocka_unit_test(test_a_missing_library_or_function_is_named),
        cmocka_unit_test(test_a_dag_of_10000_function_tasks_over_two_workers),
    };
    return cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
}
