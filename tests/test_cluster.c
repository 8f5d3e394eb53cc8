/*  test_cluster.c: the `shoal` command against a real broker and two workers.

    One cluster (broker + 2 workers, 2 slots each) serves every test in this file; the
    group teardown stops it, reaps every process and removes its files even when a test
    failed. Tests that break the cluster on purpose live in test_cluster_faults.c. */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Deadlines for single commands (scaled by h_scale() inside the harness): a command is
//  a process start, a hello round trip and one request, well under a second unloaded.
#define CMD_MS 20000
//  Whole workloads (1,000 tasks, DAGs): minutes would mean something is wrong.
#define LONG_MS 180000

static int s_setup(void **state)
{
    return h_fixture_start(state, 2, 2, "64M");
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
    char refs[16][33];
    int got = h_parse_refs(r->out, refs, 16);
    if (got != n_outputs)
        print_error("submit printed:\n%s\n", r->out);
    assert_int_equal(got, n_outputs);
    return h_fmt(c, "%s", refs[0]);
}

#define s_submit(c, ...) s_submit_v((c), 1, (const char *const[]){__VA_ARGS__, NULL})

/*  The ref of output i of the task whose output 0 is ref: the last four hex digits. */
static const char *s_output(h_cluster_t *c, const char *ref, int i)
{
    return h_fmt(c, "%.28s%04x", ref, i);
}

static bool s_file_nonempty(void *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static bool s_pid_gone(void *pid)
{
    return !h_pid_alive(*(pid_t *)pid);
}

//  -------------------------------------------------------------------- the command

static void test_every_subcommand_prints_usage_with_help(void **state)
{
    h_cluster_t *c = h_state(state);
    static const char *const subs[] = {"broker", "worker", "up",   "submit", "run",    "get",
                                       "wait",   "cancel", "logs", "rm",     "workers"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        h_result_t *r = h_run(c, CMD_MS, subs[i], "--help", NULL);
        h_assert_exit(r, 0);
        if (!h_contains(r->out, "usage"))
            print_error("`shoal %s --help` printed on stdout:\n%s\n", subs[i], r->out);
        assert_true(h_contains(r->out, "usage"));
        assert_true(h_contains(r->out, subs[i]));
    }
    h_result_t *r = h_run(c, CMD_MS, "--help", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "usage"));
    assert_true(h_contains(r->out, "submit"));
    assert_true(h_contains(r->out, "workers"));
}

static void test_an_unknown_subcommand_or_option_is_a_usage_error(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "frobnicate", NULL);
    h_assert_exit(r, 2);
    assert_true(h_contains(r->err, "frobnicate"));
    r = h_run(c, CMD_MS, "run", "--no-such-option", "--", "true", NULL);
    h_assert_exit(r, 2);
    r = h_run(c, CMD_MS, "run", NULL);
    h_assert_exit(r, 2);
}

static void test_workers_lists_both_workers_in_a_table(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "workers", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, c->workers[0].name));
    assert_true(h_contains(r->out, c->workers[1].name));
    //  The header names the columns the issue asks for.
    static const char *const cols[] = {"name",   "host", "slots", "running",
                                       "queued", "done", "failed"};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        if (!h_contains(r->out, cols[i]))
            print_error("no column %s in:\n%s\n", cols[i], r->out);
        assert_true(h_contains(r->out, cols[i]));
    }
}

//  -------------------------------------------------------------------- run

static void test_run_prints_the_task_output_and_exits_zero(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "run", "--", "echo", "hello", "world", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "hello world\n");
}

static void test_run_passes_what_follows_the_double_dash_untouched(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "run", "--", "printf", "[%s]", "a b", "--help", "-x", "", "--",
                          "$HOME", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "[a b][--help][-x][][--][$HOME]");
}

static void test_run_exits_with_the_task_exit_status(void **state)
{
    h_cluster_t *c = h_state(state);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "sh", "-c", "exit 7", NULL), 7);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "sh", "-c", "exit 1", NULL), 1);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "false", NULL), 1);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "true", NULL), 0);
}

static void test_run_of_a_failing_command_still_prints_its_stdout_and_stderr(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r =
        h_run(c, CMD_MS, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3", NULL);
    h_assert_exit(r, 3);
    assert_string_equal(r->out, "out\n");
    assert_true(h_contains(r->err, "err"));
}

static void test_run_exits_128_plus_the_signal_that_killed_the_task(void **state)
{
    h_cluster_t *c = h_state(state);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "sh", "-c", "kill -SEGV $$", NULL), 139);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "sh", "-c", "kill -KILL $$", NULL), 137);
    h_assert_exit(h_run(c, CMD_MS, "run", "--", "sh", "-c", "kill -ABRT $$", NULL), 134);
}

//  -------------------------------------------------------------------- failures

/*  After a failure the cluster carries on: both workers alive and listed, and a batch of
    tasks (more than one worker's slots) all succeed. */
static void s_assert_cluster_carries_on(h_cluster_t *c)
{
    for (int i = 0; i < c->n_workers; i++)
        assert_true(h_pid_alive(c->workers[i].pid));
    assert_int_equal(h_wait_workers(c, 10000), 0);
    const char *refs[6];
    for (int i = 0; i < 6; i++)
        refs[i] = s_submit(c, "--exec", "--", "echo", h_fmt(c, "next-%d", i));
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "60", refs[0], refs[1], refs[2], refs[3],
                        refs[4], refs[5], NULL),
                  0);
    for (int i = 0; i < 6; i++) {
        h_result_t *r = h_run(c, CMD_MS, "get", refs[i], NULL);
        h_assert_exit(r, 0);
        assert_string_equal(r->out, h_fmt(c, "next-%d\n", i));
    }
}

static void test_a_missing_command_fails_clearly_and_the_worker_runs_the_next_task(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *cmd = "no-such-command-shoal-test";
    h_result_t *r = h_run(c, CMD_MS, "run", "--", cmd, "arg", NULL);
    h_assert_exit(r, 127);
    assert_true(h_contains(r->err, cmd));
    assert_true(h_contains(r->err, "not found"));

    const char *ref = s_submit(c, "--exec", "--", cmd);
    r = h_run(c, CMD_MS, "wait", "--timeout", "30", ref, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    if (!h_contains(all, "command not found"))
        print_error("wait said:\n%s\n", all);
    assert_true(h_contains(all, "command not found"));
    assert_true(h_contains(all, cmd));
    s_assert_cluster_carries_on(c);
}

static void test_a_failing_task_reports_its_exit_status_and_stderr_tail(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *ref =
        s_submit(c, "--exec", "--", "sh", "-c", "echo partial; echo something broke >&2; exit 3");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "30", ref, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    if (!h_contains(all, "something broke") || !strstr(all, "3"))
        print_error("wait said:\n%s\n", all);
    assert_true(h_contains(all, "something broke"));
    assert_true(h_contains(all, "exit"));
    assert_non_null(strstr(all, "3"));
    s_assert_cluster_carries_on(c);
}

static void
test_a_segfaulting_task_is_reported_by_its_signal_and_the_worker_carries_on(void **state)
{
    h_cluster_t *c = h_state(state);
    pid_t pids[2] = {c->workers[0].pid, c->workers[1].pid};
    const char *ref = s_submit(c, "--exec", "--", "sh", "-c", "kill -SEGV $$");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "30", ref, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    bool named = h_contains(all, "SIGSEGV") || h_contains(all, "signal 11") ||
                 h_contains(all, "segmentation");
    if (!named)
        print_error("wait said:\n%s\n", all);
    assert_true(named);
    //  The same worker processes serve on: nothing restarted behind our back.
    assert_int_equal(c->workers[0].pid, pids[0]);
    assert_int_equal(c->workers[1].pid, pids[1]);
    s_assert_cluster_carries_on(c);
}

static void test_a_dependent_of_a_failed_task_fails_naming_its_input(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *bad = s_submit(c, "--exec", "--", "sh", "-c", "exit 5");
    const char *dep =
        s_submit(c, "--input", bad, "--exec", "--", "sh", "-c", "cat \"$SHOAL_INPUT_0\"");
    const char *dep2 = s_submit(c, "--input", dep, "--exec", "--", "cat");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "30", dep, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    if (!h_contains(all, bad))
        print_error("wait %s said:\n%s\n(the failed input is %s)\n", dep, all, bad);
    assert_true(h_contains(all, bad));
    //  Two levels down it fails too, naming its own failed input.
    r = h_run(c, CMD_MS, "wait", "--timeout", "30", dep2, NULL);
    h_assert_exit(r, 1);
    assert_true(h_contains(h_all(c, r), dep));
}

static void test_an_input_nobody_produced_fails_the_task_naming_it(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *ghost = h_fmt(c, "%016llx00000000badd0000", (unsigned long long)getpid() << 20);
    const char *ref = s_submit(c, "--input", ghost, "--exec", "--", "cat");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "30", ref, NULL);
    h_assert_exit(r, 1);
    char *all = h_all(c, r);
    if (!h_contains(all, ghost))
        print_error("wait said:\n%s\n", all);
    assert_true(h_contains(all, ghost));
}

static void test_a_task_with_retries_succeeds_on_a_later_attempt(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *counter = h_fmt(c, "%s/attempts", c->tmp);
    const char *script = h_fmt(c,
                               "n=$(cat %s 2>/dev/null || echo 0); n=$((n + 1)); echo $n > %s; "
                               "[ $n -ge 3 ] || exit 1; echo ok-after-$n",
                               counter, counter);
    const char *ref = s_submit(c, "--retries", "2", "--exec", "--", "sh", "-c", script);
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "60", ref, NULL), 0);
    h_result_t *r = h_run(c, CMD_MS, "get", ref, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "ok-after-3\n");
}

//  -------------------------------------------------------------------- DAGs and data

static void test_a_three_level_dag_computes_the_right_result(void **state)
{
    h_cluster_t *c = h_state(state);
    //  Level 1 takes a moment, so the later levels name outputs that do not exist yet.
    const char *a =
        s_submit(c, "--exec", "--", "sh", "-c", "sleep 0.3; printf 'the quick brown fox\\n'");
    const char *b = s_submit(c, "--exec", "--", "printf", "jumps over the lazy dog\\n");
    const char *joined = s_submit(c, "--input", a, "--input", b, "--exec", "--", "sh", "-c",
                                  "cat \"$SHOAL_INPUT_0\" \"$SHOAL_INPUT_1\"");
    const char *words = s_submit(c, "--input", b, "--input", a, "--exec", "--", "sh", "-c",
                                 "cat \"$SHOAL_INPUT_0\" \"$SHOAL_INPUT_1\" | wc -w");
    const char *top =
        s_submit(c, "--input", joined, "--input", words, "--exec", "--", "sh", "-c",
                 "printf '%s words; last: %s\\n' \"$(tr -d ' \\n' < \"$SHOAL_INPUT_1\")\" "
                 "\"$(tail -n 1 \"$SHOAL_INPUT_0\")\"");
    h_assert_exit(h_run(c, LONG_MS, "wait", "--timeout", "60", a, b, joined, words, top, NULL), 0);
    h_result_t *r = h_run(c, CMD_MS, "get", top, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "9 words; last: jumps over the lazy dog\n");
    r = h_run(c, CMD_MS, "get", joined, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "the quick brown fox\njumps over the lazy dog\n");
}

static void test_outputs_beyond_the_first_are_the_files_at_shoal_output_i(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *ref = s_submit_v(c, 3,
                                 (const char *const[]){"--outputs", "3", "--exec", "--", "sh", "-c",
                                                       "echo zero; echo one > \"$SHOAL_OUTPUT_1\"; "
                                                       "seq 1 30000 > \"$SHOAL_OUTPUT_2\"",
                                                       NULL});
    const char *second = s_output(c, ref, 2);
    const char *tail =
        s_submit(c, "--input", second, "--exec", "--", "sh", "-c", "tail -n 1 \"$SHOAL_INPUT_0\"");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "60", tail, NULL), 0);
    h_result_t *r = h_run(c, CMD_MS, "get", ref, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "zero\n");
    r = h_run(c, CMD_MS, "get", s_output(c, ref, 1), NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "one\n");
    r = h_run(c, CMD_MS, "get", tail, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "30000\n");
}

/*  seq 1 n, as the task prints it. */
static char *s_seq(h_cluster_t *c, int n, size_t *len_p)
{
    size_t cap = (size_t)n * 8 + 16, len = 0;
    char *s = h_fmt(c, "%*s", (int)cap, "");
    for (int i = 1; i <= n; i++)
        len += (size_t)sprintf(s + len, "%d\n", i);
    *len_p = len;
    return s;
}

static void test_get_prints_an_output_and_writes_it_to_a_file(void **state)
{
    h_cluster_t *c = h_state(state);
    //  Small (inline at the broker) and large (2.9 MB: kept by the worker, fetched from
    //  its data socket in 1 MiB chunks).
    const char *small = s_submit(c, "--exec", "--", "echo", "small result");
    const char *large = s_submit(c, "--exec", "--", "seq", "1", "400000");
    h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "60", small, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "small result\n");

    size_t want_len;
    char *want = s_seq(c, 400000, &want_len);
    r = h_run(c, CMD_MS, "get", "--timeout", "60", large, NULL);
    h_assert_exit(r, 0);
    assert_int_equal(r->out_len, want_len);
    assert_memory_equal(r->out, want, want_len);

    const char *file = h_fmt(c, "%s/large.out", c->tmp);
    r = h_run(c, CMD_MS, "get", "-o", file, large, NULL);
    h_assert_exit(r, 0);
    assert_int_equal(r->out_len, 0);
    size_t got_len;
    char *got = h_read_file(c, file, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
}

static void test_logs_prints_the_stderr_of_the_task(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *ref = s_submit(c, "--exec", "--", "sh", "-c",
                               "echo to-stdout; echo to-stderr-1 >&2; "
                               "echo to-stderr-2 >&2");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "30", ref, NULL), 0);
    h_result_t *r = h_run(c, CMD_MS, "logs", ref, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "to-stderr-1\nto-stderr-2\n");
    r = h_run(c, CMD_MS, "get", ref, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "to-stdout\n");
}

//  -------------------------------------------------------------------- cancel, rm, wait

static void test_cancel_kills_a_running_task_and_cancels_its_dependents(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *pidfile = h_fmt(c, "%s/long.pid", c->tmp);
    const char *lng =
        s_submit(c, "--exec", "--", "sh", "-c", h_fmt(c, "echo $$ > %s; exec sleep 120", pidfile));
    const char *dep =
        s_submit(c, "--input", lng, "--exec", "--", "sh", "-c", "cat \"$SHOAL_INPUT_0\"");
    const char *dep2 =
        s_submit(c, "--input", dep, "--exec", "--", "sh", "-c", "cat \"$SHOAL_INPUT_0\"");
    assert_true(h_wait_until(s_file_nonempty, (void *)pidfile, 20000));
    pid_t pid = (pid_t)atoi(h_read_file(c, pidfile, NULL));
    assert_true(pid > 1);
    assert_true(h_pid_alive(pid));

    h_assert_exit(h_run(c, CMD_MS, "cancel", lng, NULL), 0);
    //  The task's process goes (its process group is killed), the task is canceled, and
    //  so are its dependents, two levels down.
    assert_true(h_wait_until(s_pid_gone, &pid, 10000));
    const char *refs[] = {lng, dep, dep2};
    for (int i = 0; i < 3; i++) {
        h_result_t *r = h_run(c, CMD_MS, "wait", "--timeout", "30", refs[i], NULL);
        h_assert_exit(r, 1);
        char *all = h_all(c, r);
        if (!h_contains(all, "cancel"))
            print_error("wait %s said:\n%s\n", refs[i], all);
        assert_true(h_contains(all, "cancel"));
    }
    //  The slot is free again.
    h_result_t *r = h_run(c, CMD_MS, "run", "--", "echo", "after-cancel", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "after-cancel\n");
}

static void test_rm_deletes_stored_results(void **state)
{
    h_cluster_t *c = h_state(state);
    //  One result small enough to live inline at the broker, one only on a worker.
    const char *small = s_submit(c, "--exec", "--", "echo", "small");
    const char *large = s_submit(c, "--exec", "--", "seq", "1", "50000");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "30", small, large, NULL), 0);
    h_assert_exit(h_run(c, CMD_MS, "get", large, NULL), 0);
    h_assert_exit(h_run(c, CMD_MS, "rm", small, large, NULL), 0);
    const char *refs[] = {small, large};
    for (int i = 0; i < 2; i++) {
        h_result_t *r = h_run(c, CMD_MS, "get", "--timeout", "2", refs[i], NULL);
        if (r->status == 0 || r->status == -1 || r->out_len > 0)
            print_error("get after rm: status %d, stdout %zu bytes, stderr: %s\n", r->status,
                        r->out_len, r->err);
        assert_true(r->status > 0);
        assert_int_equal(r->out_len, 0);
        assert_true(r->err_len > 0);
    }
}

static void test_submit_prints_refs_before_the_task_runs(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_run(c, CMD_MS, "submit", "--exec", "--", "sleep", "60", NULL);
    h_assert_exit(r, 0);
    char refs[1][33];
    assert_int_equal(h_parse_refs(r->out, refs, 1), 1);
    assert_true(r->elapsed_ms < 5000 * h_scale());
    //  The task has not finished: waiting briefly times out (exit 3), and so does get.
    r = h_run(c, CMD_MS, "wait", "--timeout", "0.2", refs[0], NULL);
    h_assert_exit(r, 3);
    r = h_run(c, CMD_MS, "get", "--timeout", "0.2", refs[0], NULL);
    h_assert_exit(r, 3);
    h_assert_exit(h_run(c, CMD_MS, "cancel", refs[0], NULL), 0);
}

static void test_wait_any_returns_when_one_task_is_done(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *slow = s_submit(c, "--exec", "--", "sleep", "120");
    const char *fast = s_submit(c, "--exec", "--", "echo", "fast");
    h_result_t *r = h_run(c, CMD_MS, "wait", "--any", "--timeout", "60", slow, fast, NULL);
    h_assert_exit(r, 0);
    assert_true(r->elapsed_ms < 30000);
    r = h_run(c, CMD_MS, "wait", "--timeout", "0.2", slow, fast, NULL);
    h_assert_exit(r, 3);
    h_assert_exit(h_run(c, CMD_MS, "cancel", slow, NULL), 0);
}

//  -------------------------------------------------------------------- many tasks

/*  The DONE column of `shoal workers` for each of the cluster's workers. */
static void s_done_counts(h_cluster_t *c, unsigned long long *done)
{
    h_result_t *r = h_run(c, CMD_MS, "workers", NULL);
    h_assert_exit(r, 0);
    for (int i = 0; i < c->n_workers; i++) {
        done[i] = ~0ull;
        for (char *line = r->out; line && *line;) {
            char name[128], host[128];
            unsigned slots;
            unsigned long long running, queued, n;
            if (sscanf(line, "%127s %127s %u %llu %llu %llu", name, host, &slots, &running, &queued,
                       &n) == 6 &&
                strcmp(name, c->workers[i].name) == 0)
                done[i] = n;
            line = strchr(line, '\n');
            line = line ? line + 1 : NULL;
        }
        if (done[i] == ~0ull)
            print_error("no DONE count for %s in:\n%s\n", c->workers[i].name, r->out);
        assert_true(done[i] != ~0ull);
    }
}

static void
test_a_thousand_exec_tasks_over_two_workers_all_complete_with_the_right_results(void **state)
{
    h_cluster_t *c = h_state(state);
    enum { N = 1000, LANES = 4 };
    unsigned long long before[2], after[2];
    s_done_counts(c, before);
    //  Four submitting lanes in parallel: each `shoal submit` is a process start and two
    //  round trips, so one lane would spend most of its time starting processes. Each
    //  task squares its number, so a result in the wrong place shows.
    h_result_t *r =
        h_sh(c, LONG_MS,
             "set -e; cd \"$H_TMP\"\n"
             "lane() {\n"
             "  i=$1\n"
             "  while [ $i -lt %d ]; do\n"
             "    ref=$(shoal submit --exec -- sh -c 'echo $(($1 * $1))' sq $i)\n"
             "    echo \"$i $ref\"\n"
             "    i=$((i + %d))\n"
             "  done > refs.$1\n"
             "}\n"
             "pids=; l=0\n"
             "while [ $l -lt %d ]; do lane $l & pids=\"$pids $!\"; l=$((l + 1)); done\n"
             "fail=0; for p in $pids; do wait $p || fail=1; done\n"
             "[ $fail = 0 ] || { echo 'a submit failed' >&2; exit 1; }\n"
             "cat refs.* > refs\n"
             "shoal wait --timeout 150 $(cut -d' ' -f2 refs)\n"
             "getlane() {\n"
             "  sed -n \"$(($1 + 1))~%d p\" refs | while read i ref; do\n"
             "    echo \"$i $(shoal get $ref)\"\n"
             "  done > got.$1\n"
             "}\n"
             "pids=; l=0\n"
             "while [ $l -lt %d ]; do getlane $l & pids=\"$pids $!\"; l=$((l + 1)); done\n"
             "fail=0; for p in $pids; do wait $p || fail=1; done\n"
             "[ $fail = 0 ] || { echo 'a get failed' >&2; exit 1; }\n"
             "cat got.*\n",
             N, LANES, LANES, LANES, LANES);
    h_assert_exit(r, 0);
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    int lines = 0;
    for (char *p = r->out; p && *p;) {
        long i = -1, v = -1;
        if (sscanf(p, "%ld %ld", &i, &v) != 2 || i < 0 || i >= N) {
            print_error("bad line: %.60s\n", p);
            fail();
        }
        if (v != i * i)
            print_error("task %ld printed %ld\n", i, v);
        assert_int_equal(v, i * i);
        assert_false(seen[i]);
        seen[i] = true;
        lines++;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    assert_int_equal(lines, N);
    //  Both workers took a real share (an even split would be 500 each).
    s_done_counts(c, after);
    print_message("tasks done: %s %llu, %s %llu\n", c->workers[0].name, after[0] - before[0],
                  c->workers[1].name, after[1] - before[1]);
    assert_true(after[0] - before[0] >= N / 10);
    assert_true(after[1] - before[1] >= N / 10);
    assert_int_equal(after[0] - before[0] + after[1] - before[1], N);
}

int main(void)
{
    //  SHOAL_TEST_FILTER=PATTERN runs only the tests whose name matches (* wildcards).
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_subcommand_prints_usage_with_help),
        cmocka_unit_test(test_an_unknown_subcommand_or_option_is_a_usage_error),
        cmocka_unit_test(test_workers_lists_both_workers_in_a_table),
        cmocka_unit_test(test_run_prints_the_task_output_and_exits_zero),
        cmocka_unit_test(test_run_passes_what_follows_the_double_dash_untouched),
        cmocka_unit_test(test_run_exits_with_the_task_exit_status),
        cmocka_unit_test(test_run_of_a_failing_command_still_prints_its_stdout_and_stderr),
        cmocka_unit_test(test_run_exits_128_plus_the_signal_that_killed_the_task),
        cmocka_unit_test(test_a_missing_command_fails_clearly_and_the_worker_runs_the_next_task),
        cmocka_unit_test(test_a_failing_task_reports_its_exit_status_and_stderr_tail),
        cmocka_unit_test(
            test_a_segfaulting_task_is_reported_by_its_signal_and_the_worker_carries_on),
        cmocka_unit_test(test_a_dependent_of_a_failed_task_fails_naming_its_input),
        cmocka_unit_test(test_an_input_nobody_produced_fails_the_task_naming_it),
        cmocka_unit_test(test_a_task_with_retries_succeeds_on_a_later_attempt),
        cmocka_unit_test(test_a_three_level_dag_computes_the_right_result),
        cmocka_unit_test(test_outputs_beyond_the_first_are_the_files_at_shoal_output_i),
        cmocka_unit_test(test_get_prints_an_output_and_writes_it_to_a_file),
        cmocka_unit_test(test_logs_prints_the_stderr_of_the_task),
        cmocka_unit_test(test_cancel_kills_a_running_task_and_cancels_its_dependents),
        cmocka_unit_test(test_rm_deletes_stored_results),
        cmocka_unit_test(test_submit_prints_refs_before_the_task_runs),
        cmocka_unit_test(test_wait_any_returns_when_one_task_is_done),
        cmocka_unit_test(
            test_a_thousand_exec_tasks_over_two_workers_all_complete_with_the_right_results),
    };
    return cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
}
