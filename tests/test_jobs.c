/*  test_jobs.c: jobs and arrays through the `shoal` command, against a real broker and two
    workers (2 slots each): submit --array, jobs, wait --job, get --job, cancel --job; and
    the same through the C API (shoal_submit_array, shoal_jobs, shoal_job_tasks,
    shoal_cancel_job).

    One cluster serves every test in this file; each test uses its own job names, so the
    tests do not see each other's tasks. The group teardown stops the cluster, reaps every
    process and removes its files even when a test failed. */
#include "harness.h"

#include "shoal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  A command: a process start, a hello round trip and a request or two.
#define CMD_MS 20000

static int s_setup(void **state)
{
    return h_fixture_start(state, 2, 2, "64M");
}

/*  `shoal submit --array SPEC ARG...`: asserts success, a first line `job NAME` and
    n_tasks refs after it; returns NAME, and the refs in refs (up to max) when not NULL. */
static const char *s_submit_array_v(h_cluster_t *c, const char *spec, int n_tasks, char (*refs)[33],
                                    int max, const char *const *args)
{
    const char *argv[64] = {"submit", "--array", spec};
    size_t n = 3;
    while (args[n - 3] && n < 63) {
        argv[n] = args[n - 3];
        n++;
    }
    argv[n] = NULL;
    h_result_t *r = h_runv(c, CMD_MS, argv);
    h_assert_exit(r, 0);
    char name[300];
    if (sscanf(r->out, "job %299s\n", name) != 1 || strncmp(r->out, "job ", 4) != 0) {
        print_error("submit --array printed:\n%s\n", r->out);
        fail();
    }
    char dummy[1][33];
    int got = h_parse_refs(r->out, refs ? refs : dummy, refs ? max : 1);
    if (got != n_tasks)
        print_error("submit --array printed:\n%s\n", r->out);
    assert_int_equal(got, n_tasks);
    return h_fmt(c, "%s", name);
}

#define s_submit_array(c, spec, n_tasks, refs, max, ...)                                           \
    s_submit_array_v((c), (spec), (n_tasks), (refs), (max),                                        \
                     (const char *const[]){__VA_ARGS__, NULL})

/*  `shoal submit ARG...`: asserts success; returns the ref it printed (owned by c). */
static const char *s_submit_v(h_cluster_t *c, const char *const *args)
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
    char refs[1][33];
    assert_int_equal(h_parse_refs(r->out, refs, 1), 1);
    return h_fmt(c, "%s", refs[0]);
}

#define s_submit(c, ...) s_submit_v((c), (const char *const[]){__VA_ARGS__, NULL})

typedef struct {
    unsigned long long total, waiting, running, done, failed, canceled;
} s_counts_t;

/*  The row of job name in `shoal jobs`; false when it is not listed. */
static bool s_job_row(h_cluster_t *c, const char *name, s_counts_t *k)
{
    h_result_t *r = h_run(c, CMD_MS, "jobs", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "JOB") && h_contains(r->out, "CANCELED"));
    for (char *line = r->out; line && *line;) {
        char job[300];
        if (sscanf(line, "%299s %llu %llu %llu %llu %llu %llu", job, &k->total, &k->waiting,
                   &k->running, &k->done, &k->failed, &k->canceled) == 7 &&
            strcmp(job, name) == 0)
            return true;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return false;
}

static bool s_file_exists(void *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static bool s_pid_gone(void *pid)
{
    return !h_pid_alive(*(pid_t *)pid);
}

//  -------------------------------------------------------------------- the command

static void test_job_commands_and_options_have_help(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "jobs", "--help", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "usage"));
    assert_true(h_contains(r->out, "jobs"));
    r = h_run(c, CMD_MS, "--help", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "jobs"));
    r = h_run(c, CMD_MS, "submit", "--help", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "--array"));
    assert_true(h_contains(r->out, "SHOAL_TASK_INDEX"));
    static const char *const with_job[] = {"wait", "get", "cancel"};
    for (size_t i = 0; i < sizeof with_job / sizeof with_job[0]; i++) {
        r = h_run(c, CMD_MS, with_job[i], "--help", NULL);
        h_assert_exit(r, 0);
        if (!h_contains(r->out, "--job NAME"))
            print_error("`shoal %s --help` printed:\n%s\n", with_job[i], r->out);
        assert_true(h_contains(r->out, "--job NAME"));
    }
}

static void test_bad_array_specs_are_usage_errors(void **state)
{
    h_cluster_t *c = h_state(state);
    static const char *const bad[] = {"5-1", "1,1", "x", "1-", "-3", "1-9:0", "2:3", "0-2000000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_result_t *r = h_run(c, CMD_MS, "submit", "--array", bad[i], "--", "true", NULL);
        h_assert_exit(r, 2);
        if (!h_contains(r->err, "--array"))
            print_error("submit --array %s said:\n%s\n", bad[i], r->err);
        assert_true(h_contains(r->err, "--array"));
    }
    //  get --job takes no ref besides.
    h_assert_exit(h_run(c, CMD_MS, "get", "--job", "x", "0123456789abcdef0123456789abcdef", NULL),
                  2);
}

static void test_an_unknown_job_is_exit_1_naming_it(void **state)
{
    h_cluster_t *c = h_state(state);
    static const char *const cmds[] = {"wait", "get", "cancel"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        h_result_t *r = h_run(c, CMD_MS, cmds[i], "--job", "no-such-job-here", NULL);
        h_assert_exit(r, 1);
        if (!h_contains(r->err, "no-such-job-here"))
            print_error("%s --job said:\n%s\n", cmds[i], r->err);
        assert_true(h_contains(r->err, "no-such-job-here"));
    }
}

//  -------------------------------------------------------------------- arrays

static void test_an_array_of_50_tasks_gets_its_outputs_in_index_order(void **state)
{
    h_cluster_t *c = h_state(state);
    char refs[50][33];
    const char *job =
        s_submit_array(c, "1-50", 50, refs, 50, "--", "sh", "-c", "echo \"$SHOAL_TASK_INDEX\"");
    //  Without --job the array is its own job, named after its first task.
    assert_string_equal(job, h_fmt(c, "array-%s", refs[0]));
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "60", "--job", job, NULL), 0);

    size_t len = 0;
    char *want = h_fmt(c, "%*s", 50 * 4, "");
    for (int i = 1; i <= 50; i++)
        len += (size_t)sprintf(want + len, "%d\n", i);
    h_result_t *r = h_run(c, CMD_MS, "get", "--job", job, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, want);
    //  The same into a file.
    const char *file = h_fmt(c, "%s/array.out", c->tmp);
    r = h_run(c, CMD_MS, "get", "--job", job, "-o", file, NULL);
    h_assert_exit(r, 0);
    assert_int_equal(r->out_len, 0);
    assert_string_equal(h_read_file(c, file, NULL), want);
    //  Each ref printed is the task of its index.
    r = h_run(c, CMD_MS, "get", refs[36], NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "37\n");

    s_counts_t k;
    assert_true(s_job_row(c, job, &k));
    assert_int_equal(k.total, 50);
    assert_int_equal(k.done, 50);
    assert_int_equal(k.waiting + k.running + k.failed + k.canceled, 0);
}

static void test_an_array_with_steps_and_lists_joins_a_named_job_in_index_order(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *job = s_submit_array(c, "7,0-4:2", 4, NULL, 0, "--job", "stepped", "--", "sh", "-c",
                                     "echo \"i$SHOAL_TASK_INDEX\"");
    assert_string_equal(job, "stepped");
    //  A task outside the array joins the job after it.
    s_submit(c, "--job", "stepped", "--", "echo", "last");
    h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "60", "--job", "stepped", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "i0\ni2\ni4\ni7\nlast\n");
    s_counts_t k;
    assert_true(s_job_row(c, "stepped", &k));
    assert_int_equal(k.total, 5);
    assert_int_equal(k.done, 5);
}

//  -------------------------------------------------------------------- wait, cancel

static void test_wait_job_exits_1_naming_the_task_that_failed(void **state)
{
    h_cluster_t *c = h_state(state);
    char refs[5][33];
    s_submit_array(c, "1-5", 5, refs, 5, "--job", "one-fails", "--", "sh", "-c",
                   "[ \"$SHOAL_TASK_INDEX\" != 3 ] || { echo index three broke >&2; exit 4; }; "
                   "echo ok");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "60", "--job", "one-fails", NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    if (!h_contains(all, refs[2]) || !h_contains(all, "index three broke"))
        print_error("wait --job said:\n%s\n(the failing task is %s)\n", all, refs[2]);
    assert_true(h_contains(all, refs[2]));
    assert_true(h_contains(all, "index three broke"));
    assert_false(h_contains(all, refs[0]));

    s_counts_t k;
    assert_true(s_job_row(c, "one-fails", &k));
    assert_int_equal(k.total, 5);
    assert_int_equal(k.done, 4);
    assert_int_equal(k.failed, 1);
    //  get --job writes nothing then, and leaves no file behind.
    const char *file = h_fmt(c, "%s/one-fails.out", c->tmp);
    r = h_run(c, CMD_MS, "get", "--job", "one-fails", "-o", file, NULL);
    h_assert_exit(r, 1);
    assert_true(h_contains(r->err, refs[2]));
    assert_int_equal(access(file, F_OK), -1);
    r = h_run(c, CMD_MS, "get", "--job", "one-fails", NULL);
    h_assert_exit(r, 1);
    assert_int_equal(r->out_len, 0);
    //  A job that is still running times out with exit 3.
    s_submit(c, "--job", "slow-one", "--", "sleep", "60");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "0.3", "--job", "slow-one", NULL), 3);
    h_assert_exit(h_run(c, CMD_MS, "cancel", "--job", "slow-one", NULL), 0);
}

static void test_cancel_job_cancels_running_and_waiting_tasks_and_their_dependents(void **state)
{
    h_cluster_t *c = h_state(state);
    //  Six long tasks (more than the 4 slots: some run, some are queued), one task in the
    //  job waiting for the first, and one outside the job waiting for that one.
    const char *script =
        h_fmt(c, "echo $$ > %s/cancel.pid.$SHOAL_TASK_INDEX; exec sleep 120", c->tmp);
    char refs[6][33];
    s_submit_array(c, "1-6", 6, refs, 6, "--job", "to-cancel", "--", "sh", "-c", script);
    const char *waiting = s_submit(c, "--job", "to-cancel", "--input", refs[0], "--", "sh", "-c",
                                   "cat \"$SHOAL_INPUT_0\"");
    const char *outside = s_submit(c, "--input", waiting, "--", "true");
    const char *pid1 = h_fmt(c, "%s/cancel.pid.1", c->tmp);
    assert_true(h_wait_until(s_file_exists, (void *)pid1, 20000));
    s_counts_t k;
    assert_true(s_job_row(c, "to-cancel", &k));
    assert_int_equal(k.total, 7);
    assert_true(k.running >= 1);
    assert_true(k.waiting >= 1);

    h_result_t *r = h_run(c, CMD_MS, "cancel", "--job", "to-cancel", NULL);
    h_assert_exit(r, 0);
    //  Every task process that started is killed.
    for (int i = 1; i <= 6; i++) {
        char *text = h_read_file(c, h_fmt(c, "%s/cancel.pid.%d", c->tmp, i), NULL);
        if (!text)
            continue;
        pid_t pid = (pid_t)atoi(text);
        assert_true(pid > 1);
        assert_true(h_wait_until(s_pid_gone, &pid, 10000));
    }
    r = h_run(c, CMD_MS, "wait", "--timeout", "30", "--job", "to-cancel", outside, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    for (int i = 0; i < 6; i++)
        assert_true(h_contains(all, refs[i]));
    assert_true(h_contains(all, waiting));
    assert_true(h_contains(all, outside));
    assert_true(h_contains(all, "cancel"));
    assert_true(s_job_row(c, "to-cancel", &k));
    assert_int_equal(k.canceled, 7);
    assert_int_equal(k.total, 7);
    //  Canceling again finds nothing unfinished; the slots are free for new work.
    h_assert_exit(h_run(c, CMD_MS, "cancel", "--job", "to-cancel", NULL), 0);
    r = h_run(c, CMD_MS, "run", "--", "echo", "after-cancel", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "after-cancel\n");
}

static void test_a_job_is_gone_once_its_tasks_are_removed(void **state)
{
    h_cluster_t *c = h_state(state);
    char refs[2][33];
    s_submit_array(c, "1-2", 2, refs, 2, "--job", "short-lived", "--", "echo", "x");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "30", "--job", "short-lived", NULL), 0);
    s_counts_t k;
    assert_true(s_job_row(c, "short-lived", &k));
    h_assert_exit(h_run(c, CMD_MS, "rm", refs[0], NULL), 0);
    assert_true(s_job_row(c, "short-lived", &k));
    assert_int_equal(k.total, 1);
    h_assert_exit(h_run(c, CMD_MS, "rm", refs[1], NULL), 0);
    assert_false(s_job_row(c, "short-lived", &k));
}

//  -------------------------------------------------------------------- fn tasks, C API

static void test_fn_tasks_of_an_array_read_their_index(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *fn = h_fmt(c, "%s:array_index", SHOAL_EXAMPLES_PLUGIN);
    s_submit_array(c, "3-5", 3, NULL, 0, "--job", "fn-array", "--fn", fn);
    h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "60", "--job", "fn-array", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "3\n4\n5\n");
}

static void test_the_c_api_submits_arrays_and_lists_and_cancels_jobs(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = NULL;
    assert_int_equal(shoal_connect(c->listen, 10000 * h_scale(), &sh), 0);
    const char *argv[] = {"sh", "-c", "echo \"$SHOAL_TASK_INDEX\"", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = argv};
    shoal_ref_t ids[10];
    assert_int_equal(shoal_submit_array(sh, &spec, 10, 19, ids), 0);
    //  Bad ranges and specs submit nothing.
    shoal_ref_t unused[2];
    assert_int_equal(shoal_submit_array(sh, &spec, 5, 4, unused), SHOAL_EINVAL);
    assert_int_equal(shoal_submit_array(sh, &spec, 0, UINT64_MAX, unused), SHOAL_EINVAL);
    shoal_task_spec_t no_argv = {.kind = SHOAL_TASK_EXEC};
    assert_int_equal(shoal_submit_array(sh, &no_argv, 0, 1, unused), SHOAL_EINVAL);
    char long_name[SHOAL_JOB_NAME_MAX + 2];
    memset(long_name, 'j', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    shoal_task_spec_t long_job = spec;
    long_job.job = long_name;
    assert_int_equal(shoal_submit_array(sh, &long_job, 0, 1, unused), SHOAL_EINVAL);

    //  Without a job name, the array is the job "array-<its first id>", in index order.
    char text[SHOAL_REF_TEXT_SIZE], name[64];
    snprintf(name, sizeof name, "array-%s", shoal_ref_format(ids[0], text));
    shoal_ref_t *refs = NULL;
    size_t n = 0;
    assert_int_equal(shoal_job_tasks(sh, name, &refs, &n, 10000 * h_scale()), 0);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        assert_true(shoal_ref_equal(refs[i], ids[i]));
    free(refs);
    assert_int_equal(shoal_wait(sh, ids, 10, false, 60000 * h_scale()), 0);
    shoal_view_t view;
    assert_int_equal(shoal_get(sh, ids[3], 10000 * h_scale(), &view), 0);
    assert_int_equal(view.size, 3);
    assert_memory_equal(view.data, "13\n", 3);
    shoal_view_release(&view);

    shoal_job_info_t *list = NULL;
    size_t n_jobs = 0;
    assert_int_equal(shoal_jobs(sh, &list, &n_jobs, 10000 * h_scale()), 0);
    bool found = false;
    for (size_t i = 0; i < n_jobs; i++)
        if (strcmp(list[i].name, name) == 0) {
            found = true;
            assert_int_equal(list[i].total, 10);
            assert_int_equal(list[i].done, 10);
            assert_int_equal(list[i].waiting + list[i].ready + list[i].running, 0);
        }
    assert_true(found);
    shoal_jobs_free(&list, n_jobs);
    assert_null(list);

    //  Unknown jobs and bad names.
    assert_int_equal(shoal_job_tasks(sh, "no-such-c-job", &refs, &n, 10000), SHOAL_ENOTFOUND);
    assert_non_null(strstr(shoal_last_error(sh), "no-such-c-job"));
    assert_int_equal(shoal_cancel_job(sh, "no-such-c-job", 10000), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_cancel_job(sh, "", 10000), SHOAL_EINVAL);
    assert_int_equal(shoal_cancel_job(sh, NULL, 10000), SHOAL_EINVAL);
    assert_int_equal(shoal_job_tasks(sh, name, NULL, &n, 10000), SHOAL_EINVAL);

    //  Cancel: tasks just submitted (still buffered) count; a finished job cancels none.
    const char *sleep_argv[] = {"sleep", "60", NULL};
    shoal_task_spec_t slow = {.kind = SHOAL_TASK_EXEC, .argv = sleep_argv, .job = "c-api-slow"};
    shoal_ref_t slow_ids[3];
    assert_int_equal(shoal_submit_array(sh, &slow, 1, 3, slow_ids), 0);
    assert_int_equal(shoal_cancel_job(sh, "c-api-slow", 10000 * h_scale()), 3);
    assert_int_equal(shoal_wait(sh, slow_ids, 3, false, 10000 * h_scale()), SHOAL_ECANCELED);
    assert_int_equal(shoal_cancel_job(sh, name, 10000 * h_scale()), 0);
    shoal_disconnect(&sh);
}

int main(void)
{
    //  SHOAL_TEST_FILTER=PATTERN runs only the tests whose name matches (* wildcards).
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_commands_and_options_have_help),
        cmocka_unit_test(test_bad_array_specs_are_usage_errors),
        cmocka_unit_test(test_an_unknown_job_is_exit_1_naming_it),
        cmocka_unit_test(test_an_array_of_50_tasks_gets_its_outputs_in_index_order),
        cmocka_unit_test(test_an_array_with_steps_and_lists_joins_a_named_job_in_index_order),
        cmocka_unit_test(test_wait_job_exits_1_naming_the_task_that_failed),
        cmocka_unit_test(test_cancel_job_cancels_running_and_waiting_tasks_and_their_dependents),
        cmocka_unit_test(test_a_job_is_gone_once_its_tasks_are_removed),
        cmocka_unit_test(test_fn_tasks_of_an_array_read_their_index),
        cmocka_unit_test(test_the_c_api_submits_arrays_and_lists_and_cancels_jobs),
    };
    return cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
}
