/*  test_query.c: what is stored, listed and found by name, on a real cluster.

    One broker and one worker (2 slots, a 32 MiB arena) serve every test; each test uses
    names and tags of its own, since objects outlive the commands that made them. What is
    checked: `shoal ls` lists puts and task outputs oldest first with their name, tags,
    size, state, holder, task and age, and its filters (--name glob, --tag, --worker,
    --job, --limit) combine; `shoal get NAME` reads a uniquely named object, and exits 1
    for a name nobody has and 2 for one several objects share (listing their refs); names
    that look like refs are refused before anything is sent; shoal_query gives the same
    in C, a put being written included. */
#include "harness.h"

#include <shoal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_MS  20000
#define WAIT_MS (30000 * h_scale())

static int s_setup(void **state)
{
    return h_fixture_start(state, 1, 2, "32M");
}

//  The lines of text after the first (the header), as a count.
static int s_rows(const char *text)
{
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    return lines - 1;
}

//  Line i (0: the header) of text, copied into a string owned by c.
static char *s_line(h_cluster_t *c, const char *text, int i)
{
    for (; i > 0 && text; i--)
        if ((text = strchr(text, '\n')))
            text++;
    assert_non_null(text);
    return h_fmt(c, "%.*s", (int)strcspn(text, "\n"), text);
}

static void s_assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("expected '%s' in:\n%s", part, text);
}

//  ----------------------------------------------------------------------------- tests

static void test_shoal_ls_lists_puts_and_task_outputs_and_filters_them(void **state)
{
    h_cluster_t *c = h_state(state);
    //  Three objects, made one after the other: a small put, a large one (in the worker's
    //  store), and a task of job j-ls with two outputs.
    h_result_t *r = h_sh(
        c, CMD_MS,
        "printf hello | shoal put --name ls-greeting --tag ls-a --tag ls-b - > /dev/null && "
        "head -c 300000 /dev/urandom > $H_TMP/big && "
        "shoal put --name ls-data/big --tag ls-b $H_TMP/big > /dev/null && "
        "shoal submit --name ls-out --job j-ls --outputs 2 -- sh -c 'echo x; echo yy > "
        "$SHOAL_OUTPUT_1' > $H_TMP/refs && shoal wait $(head -n 1 $H_TMP/refs) && cat $H_TMP/refs");
    h_assert_exit(r, 0);
    char task[2][33];
    assert_int_equal(h_parse_refs(r->out, task, 2), 2);

    r = h_run(c, CMD_MS, "ls", NULL);
    h_assert_exit(r, 0);
    const char *header = s_line(c, r->out, 0);
    s_assert_has(header, "REF");
    const char *columns[] = {"NAME", "TAGS", "SIZE", "STATE", "WORKER", "TASK", "AGE"};
    for (size_t i = 0; i < sizeof columns / sizeof *columns; i++)
        s_assert_has(header, columns[i]);
    //  Only what this test made, oldest first.
    r = h_run(c, CMD_MS, "ls", "--name", "ls-*", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 4);
    const char *greeting = s_line(c, r->out, 1), *big = s_line(c, r->out, 2);
    s_assert_has(greeting, "ls-greeting");
    s_assert_has(greeting, "ls-a,ls-b");
    s_assert_has(greeting, "5B");
    s_assert_has(greeting, "sealed");
    assert_non_null(strstr(greeting, " - ")); //  held inline by the broker
    s_assert_has(big, "ls-data/big");
    s_assert_has(big, "293K");
    s_assert_has(big, c->workers[0].name);
    const char *out0 = s_line(c, r->out, 3), *out1 = s_line(c, r->out, 4);
    assert_true(strncmp(out0, task[0], 32) == 0);
    assert_true(strncmp(out1, task[1], 32) == 0);
    s_assert_has(out1, "3B");
    assert_non_null(strstr(out1 + 32, task[0])); //  TASK: the producing task, for both
    //  The ref of a put is its own task.
    char greeting_ref[33];
    assert_int_equal(h_parse_refs(h_fmt(c, "%.32s\n", greeting), &greeting_ref, 1), 1);
    assert_non_null(strstr(greeting + 32, greeting_ref));

    //  Each filter, and filters together.
    r = h_run(c, CMD_MS, "ls", "--tag", "ls-b", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 2);
    s_assert_has(r->out, "ls-greeting");
    s_assert_has(r->out, "ls-data/big");
    r = h_run(c, CMD_MS, "ls", "--name", "ls-data/*", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 1);
    r = h_run(c, CMD_MS, "ls", "--tag", "ls-b", "--worker", c->workers[0].name, NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 1);
    s_assert_has(r->out, "ls-data/big");
    r = h_run(c, CMD_MS, "ls", "--job", "j-ls", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 2);
    s_assert_has(r->out, task[0]);
    s_assert_has(r->out, task[1]);
    r = h_run(c, CMD_MS, "ls", "--name", "ls-*", "--limit", "1", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 1);
    s_assert_has(r->out, "ls-greeting");
    s_assert_has(r->err, "3 more");
    //  Nothing matches: the header alone, success.
    r = h_run(c, CMD_MS, "ls", "--name", "ls-*", "--tag", "ls-a", "--job", "j-ls", NULL);
    h_assert_exit(r, 0);
    assert_int_equal(s_rows(r->out), 0);
    s_assert_has(r->out, "REF");
    //  Bad usage.
    r = h_run(c, CMD_MS, "ls", "--limit", "0", NULL);
    h_assert_exit(r, 2);
    r = h_run(c, CMD_MS, "ls", "extra", NULL);
    h_assert_exit(r, 2);
}

static void test_shoal_get_reads_an_object_by_its_name_when_the_name_is_unique(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_sh(c, CMD_MS,
                         "printf hello | shoal put --name get-greeting - > /dev/null && "
                         "printf star | shoal put --name 'get-a*b' - > /dev/null && "
                         "printf plain | shoal put --name get-aXb - > /dev/null && "
                         "printf one | shoal put --name get-twice - > $H_TMP/twice && "
                         "printf two | shoal put --name get-twice - >> $H_TMP/twice && "
                         "cat $H_TMP/twice");
    h_assert_exit(r, 0);
    char twice[2][33];
    assert_int_equal(h_parse_refs(r->out, twice, 2), 2);
    r = h_run(c, CMD_MS, "get", "get-greeting", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "hello");
    //  Glob characters in a name are taken as they are.
    r = h_run(c, CMD_MS, "get", "get-a*b", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "star");
    r = h_sh(c, CMD_MS, "shoal get -o $H_TMP/plain get-aXb && cat $H_TMP/plain");
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "plain");
    //  Nobody has it: 1.
    r = h_run(c, CMD_MS, "get", "get-missing", NULL);
    h_assert_exit(r, 1);
    s_assert_has(r->err, "no object named get-missing");
    //  Several have it: 2, naming them.
    r = h_run(c, CMD_MS, "get", "get-twice", NULL);
    h_assert_exit(r, 2);
    assert_int_equal(r->out_len, 0);
    s_assert_has(r->err, "2 objects are named get-twice");
    s_assert_has(r->err, twice[0]);
    s_assert_has(r->err, twice[1]);
    //  A ref is a ref, whatever the case of its digits.
    char upper[33];
    for (int i = 0; i < 33; i++)
        upper[i] =
            (char)(twice[1][i] >= 'a' && twice[1][i] <= 'f' ? twice[1][i] - 32 : twice[1][i]);
    r = h_run(c, CMD_MS, "get", upper, NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "two");
}

static void test_names_that_look_like_refs_are_refused_before_anything_is_sent(void **state)
{
    h_cluster_t *c = h_state(state);
    const char *hex = "00112233445566778899aabbccddeeff";
    h_result_t *r = h_sh(c, CMD_MS, "printf x | shoal put --name %s -", hex);
    h_assert_exit(r, 2);
    s_assert_has(r->err, hex);
    s_assert_has(r->err, "looks like a ref");
    r = h_run(c, CMD_MS, "submit", "--name", "00112233445566778899AABBCCDDEEFF", "--", "true",
              NULL);
    h_assert_exit(r, 2);
    s_assert_has(r->err, "looks like a ref");
    shoal_t *sh = h_connect(c);
    shoal_ref_t ref;
    shoal_put_opts_t opts = {.name = hex};
    assert_int_equal(shoal_put(sh, "x", 1, &opts, &ref), SHOAL_EINVAL);
    s_assert_has(shoal_last_error(sh), hex);
    shoal_put_t *put = NULL;
    assert_int_equal(shoal_put_begin(sh, 1 << 20, &opts, &ref, &put), SHOAL_EINVAL);
    assert_null(put);
    const char *argv[] = {"true", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = argv, .name = hex};
    assert_int_equal(shoal_submit(sh, &spec, &ref), SHOAL_EINVAL);
    //  Nothing of it reached the broker, and the client goes on.
    spec.name = "fine";
    assert_int_equal(shoal_submit(sh, &spec, &ref), 0);
    assert_int_equal(shoal_wait(sh, &ref, 1, false, WAIT_MS), 0);
    shoal_query_t q = {.name_glob = hex};
    shoal_object_info_t *list = NULL;
    size_t n = 99;
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 0);
    assert_int_equal(n, 0);
    shoal_objects_free(&list, n);
    assert_null(list);
    shoal_disconnect(&sh);
}

static void test_shoal_query_lists_objects_in_c_a_put_being_written_included(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    const char *tags[] = {"q-t1", "q-t2"};
    shoal_put_opts_t opts = {.name = "q-small", .tags = tags, .n_tags = 2};
    shoal_ref_t small, big, other;
    assert_int_equal(shoal_put(sh, "abc", 3, &opts, &small), 0);
    opts = (shoal_put_opts_t){.name = "q-other", .tags = tags + 1, .n_tags = 1};
    assert_int_equal(shoal_put(sh, "defg", 4, &opts, &other), 0);
    //  The broker has them before the big one's allocation, which the worker reports too.
    assert_int_equal(shoal_flush(sh, WAIT_MS), 0);
    opts = (shoal_put_opts_t){.name = "q-big"};
    shoal_put_t *put = NULL;
    assert_int_equal(shoal_put_begin(sh, 2 << 20, &opts, &big, &put), 0);

    //  Being written: allocated, in the worker's store, with the size allocated.
    shoal_query_t q = {.name_glob = "q-*"};
    shoal_object_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 0);
    assert_int_equal(n, 3);
    assert_true(shoal_ref_equal(list[0].ref, small));
    assert_string_equal(list[0].name, "q-small");
    assert_int_equal(list[0].n_tags, 2);
    assert_string_equal(list[0].tags[0], "q-t1");
    assert_string_equal(list[0].tags[1], "q-t2");
    assert_int_equal(list[0].size, 3);
    assert_int_equal(list[0].state, SHOAL_OBJECT_SEALED);
    assert_null(list[0].worker); //  inline in the broker's directory
    assert_true(shoal_ref_equal(list[0].task, small));
    assert_true(list[0].age_ms < (uint64_t)WAIT_MS);
    assert_true(shoal_ref_equal(list[1].ref, other));
    assert_true(shoal_ref_equal(list[2].ref, big));
    assert_int_equal(list[2].state, SHOAL_OBJECT_ALLOCATED);
    assert_int_equal(list[2].size, 2 << 20);
    assert_string_equal(list[2].worker, c->workers[0].name);
    assert_int_equal(list[2].n_tags, 0);
    assert_null(list[2].tags);
    shoal_objects_free(&list, n);
    assert_null(list);
    memset(shoal_put_memory(put), 7, 2 << 20);
    assert_int_equal(shoal_put_end(&put), 0);
    assert_int_equal(shoal_wait(sh, &big, 1, false, WAIT_MS), 0); //  the broker heard the seal

    //  Sealed now; filters, the limit and the count of the rest.
    q = (shoal_query_t){.name_glob = "q-*", .worker = c->workers[0].name};
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 0);
    assert_int_equal(n, 1);
    assert_true(shoal_ref_equal(list[0].ref, big));
    assert_int_equal(list[0].state, SHOAL_OBJECT_PERSISTED); //  named, in a worker's store
    shoal_objects_free(&list, n);
    q = (shoal_query_t){.tag = "q-t2"};
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 0);
    assert_int_equal(n, 2);
    shoal_objects_free(&list, n);
    q = (shoal_query_t){.name_glob = "q-*", .limit = 1};
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 2);
    assert_int_equal(n, 1);
    assert_true(shoal_ref_equal(list[0].ref, small));
    shoal_objects_free(&list, n);
    //  A task's outputs, by job.
    const char *argv[] = {"echo", "out", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = argv, .job = "q-job", .name = "q-t"};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    assert_int_equal(shoal_wait(sh, &id, 1, false, WAIT_MS), 0);
    q = (shoal_query_t){.job = "q-job"};
    assert_int_equal(shoal_query(sh, &q, &list, &n, WAIT_MS), 0);
    assert_int_equal(n, 1);
    assert_true(shoal_ref_equal(list[0].ref, id));
    assert_true(shoal_ref_equal(list[0].task, id));
    assert_string_equal(list[0].name, "q-t");
    assert_int_equal(list[0].size, 4);
    shoal_objects_free(&list, n);
    //  Everything (q NULL); bad arguments.
    assert_true(shoal_query(sh, NULL, &list, &n, WAIT_MS) >= 0);
    assert_true(n >= 4);
    shoal_objects_free(&list, n);
    assert_int_equal(shoal_query(sh, &q, NULL, &n, WAIT_MS), SHOAL_EINVAL);
    assert_int_equal(shoal_query(sh, &q, &list, NULL, WAIT_MS), SHOAL_EINVAL);
    assert_int_equal(shoal_query(NULL, &q, &list, &n, WAIT_MS), SHOAL_EINVAL);
    shoal_objects_free(NULL, 0);
    shoal_disconnect(&sh);
}

int main(void)
{
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shoal_ls_lists_puts_and_task_outputs_and_filters_them),
        cmocka_unit_test(test_shoal_get_reads_an_object_by_its_name_when_the_name_is_unique),
        cmocka_unit_test(test_names_that_look_like_refs_are_refused_before_anything_is_sent),
        cmocka_unit_test(test_shoal_query_lists_objects_in_c_a_put_being_written_included),
    };
    return cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
}
