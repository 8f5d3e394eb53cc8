/*  test_stream.c: streaming reads of objects still being written, on a real cluster.

    One broker and one worker (2 slots, a 32 MiB arena, a 64 MiB disk tier). A reader
    opens a stream on a put between its allocation and its seal and must receive the bytes
    written so far before the seal (a read made before any byte is written times out
    instead), then the rest and the end at the seal: with the writer on the worker's host
    (in place, publishing its progress) and over TCP ($SHOAL_NO_LOCAL_STORE forces the
    socket path in libshoal); also when the put is spilled to the disk tier before the
    reader has read it. An aborted put fails its streaming readers naming the ref; `shoal
    get --follow` prints what `shoal put --size N -` receives while it receives it. */
#include "harness.h"

#include <shoal.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(SHOAL_EXAMPLES_PLUGIN) || !defined(SHOAL_TEST_PLUGIN)
#error "tests/CMakeLists.txt defines SHOAL_EXAMPLES_PLUGIN and SHOAL_TEST_PLUGIN"
#endif

#define CMD_MS  20000
#define WAIT_MS (30000 * h_scale())
#define MiB     (1024 * 1024)

static int s_setup(void **state)
{
    h_cluster_t *c = h_cluster_start_with(1, 2, "32M", "--spill-size 64M");
    *state = c;
    return c ? 0 : -1;
}

/*  Reads from the stream into buf + *got until want bytes in all are there (each read may
    give fewer), failing the test on an error. */
static void s_read_to(shoal_stream_t *s, uint8_t *buf, size_t *got, size_t want)
{
    while (*got < want) {
        int n = shoal_stream_read(s, buf + *got, want - *got, WAIT_MS);
        if (n <= 0)
            print_error("read at %zu of %zu: %d (%s)\n", *got, want, n, shoal_strerror(n));
        assert_true(n > 0);
        *got += (size_t)n;
    }
}

/*  Begins a put of size bytes on writer, writes the first `first` bytes of data (size
    bytes) in place and publishes them, and flushes, so another client may name the put:
    returns its memory (for the rest), *ref and *put. */
static uint8_t *s_put_started(shoal_t *writer, size_t size, const uint8_t *data, size_t first,
                              shoal_ref_t *ref, shoal_put_t **put)
{
    assert_int_equal(shoal_put_begin(writer, size, NULL, ref, put), 0);
    uint8_t *mem = shoal_put_memory(*put);
    assert_non_null(mem);
    memcpy(mem, data, first);
    assert_int_equal(shoal_put_progress(*put, first), 0);
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    return mem;
}

/*  Writes size bytes in three parts; after each part but the last, a streaming reader
    gets exactly the bytes written so far before anything is sealed, and a read beyond
    them waits (times out). memory: write in place through shoal_put_memory and publish
    with shoal_put_progress; else shoal_put_write. */
static void s_stream_while_writing(h_cluster_t *c, bool memory)
{
    shoal_t *writer = h_connect(c), *reader = h_connect(c);
    size_t size = 3 * MiB + 100;
    uint8_t *data = h_pattern(7, size), *got_bytes = calloc(1, size + 1);
    assert_non_null(got_bytes);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(writer, size, NULL, &ref, &put), 0);
    uint8_t *mem = memory ? shoal_put_memory(put) : NULL;
    if (memory)
        assert_non_null(mem);
    //  The reader is another client: the broker must know the put first.
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(reader, ref, &s), 0);
    //  Nothing written yet: the read waits.
    assert_int_equal(shoal_stream_read(s, got_bytes, size, 300), SHOAL_ETIMEDOUT);
    size_t parts[] = {1000, MiB + 5000, size - 1000 - (MiB + 5000)};
    size_t written = 0, got = 0;
    for (size_t i = 0; i < 3; i++) {
        if (memory) {
            memcpy(mem + written, data + written, parts[i]);
            assert_int_equal(shoal_put_progress(put, written + parts[i]), 0);
        } else
            assert_int_equal(shoal_put_write(put, data + written, parts[i]), 0);
        written += parts[i];
        if (i == 2)
            break;
        s_read_to(s, got_bytes, &got, written);
        assert_memory_equal(got_bytes, data, written);
        //  Nothing beyond the watermark before the seal.
        assert_int_equal(shoal_stream_read(s, got_bytes + got, size - got, 200), SHOAL_ETIMEDOUT);
        shoal_status_t st;
        assert_int_equal(shoal_status(reader, ref, &st), SHOAL_EAGAIN); //  not final
    }
    assert_int_equal(shoal_put_end(&put), 0);
    s_read_to(s, got_bytes, &got, size);
    assert_memory_equal(got_bytes, data, size);
    assert_int_equal(shoal_stream_read(s, got_bytes, 1, WAIT_MS), 0); //  the end
    assert_int_equal(shoal_stream_size(s), size);
    shoal_stream_close(&s);
    assert_null(s);
    assert_int_equal(shoal_remove(writer, &ref, 1, WAIT_MS), 1);
    free(data);
    free(got_bytes);
    shoal_disconnect(&reader);
    shoal_disconnect(&writer);
}

//  ----------------------------------------------------------------------------- tests

static void test_a_stream_reads_a_put_written_in_place_on_this_host_as_it_lands(void **state)
{
    s_stream_while_writing(h_state(state), true);
}

static void test_a_stream_reads_a_put_written_over_tcp_as_it_lands(void **state)
{
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    s_stream_while_writing(h_state(state), false);
    unsetenv("SHOAL_NO_LOCAL_STORE");
}

static void test_a_stream_of_an_aborted_put_fails_naming_it(void **state)
{
    h_cluster_t *c = h_state(state);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    shoal_t *writer = h_connect(c), *reader = h_connect(c);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(writer, 2 * MiB, NULL, &ref, &put), 0);
    uint8_t *data = h_pattern(3, 4096);
    assert_int_equal(shoal_put_write(put, data, 4096), 0);
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(reader, ref, &s), 0);
    uint8_t buf[8192];
    size_t got = 0;
    s_read_to(s, buf, &got, 4096);
    //  The next read is held at the worker when the abort comes.
    assert_int_equal(shoal_stream_read(s, buf, sizeof buf, 200), SHOAL_ETIMEDOUT);
    shoal_put_abort(&put);
    int rc = shoal_stream_read(s, buf, sizeof buf, WAIT_MS);
    assert_int_equal(rc, SHOAL_ECANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    if (!strstr(shoal_last_error(reader), text))
        print_error("error: %s\n", shoal_last_error(reader));
    assert_non_null(strstr(shoal_last_error(reader), text));
    assert_non_null(strstr(shoal_last_error(reader), "abort"));
    shoal_stream_close(&s);
    //  A stream opened after the abort fails too, naming it.
    assert_int_equal(shoal_stream_open(reader, ref, &s), 0);
    assert_int_equal(shoal_stream_read(s, buf, sizeof buf, WAIT_MS), SHOAL_ECANCELED);
    assert_non_null(strstr(shoal_last_error(reader), text));
    shoal_stream_close(&s);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    free(data);
    shoal_disconnect(&reader);
    shoal_disconnect(&writer);
}

static void test_a_stream_of_a_final_or_unknown_ref_reads_it_whole_or_fails(void **state)
{
    shoal_t *sh = h_connect(h_state(state));
    size_t size = 2 * MiB + 3;
    uint8_t *data = h_pattern(5, size), *buf = malloc(size);
    assert_non_null(buf);
    shoal_ref_t ref;
    assert_int_equal(shoal_put(sh, data, size, NULL, &ref), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, ref, &s), 0);
    size_t got = 0;
    s_read_to(s, buf, &got, size);
    assert_memory_equal(buf, data, size);
    assert_int_equal(shoal_stream_read(s, buf, size, WAIT_MS), 0);
    shoal_stream_close(&s);
    //  A small put lives in the broker's directory: streamed all the same.
    shoal_ref_t small;
    assert_int_equal(shoal_put(sh, "hello", 5, NULL, &small), 0);
    assert_int_equal(shoal_stream_open(sh, small, &s), 0);
    assert_int_equal(shoal_stream_read(s, buf, size, WAIT_MS), 5);
    assert_memory_equal(buf, "hello", 5);
    shoal_stream_close(&s);
    //  A task's small output travels inline and is never in a store: streamed all the
    //  same, whether the stream starts while the task is queued, runs or is done.
    const char *argv[] = {"echo", "hello", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = argv};
    shoal_ref_t echo;
    assert_int_equal(shoal_submit(sh, &spec, &echo), 0);
    assert_int_equal(shoal_stream_open(sh, echo, &s), 0);
    got = 0;
    s_read_to(s, buf, &got, 6);
    assert_memory_equal(buf, "hello\n", 6);
    assert_int_equal(shoal_stream_read(s, buf, size, WAIT_MS), 0);
    shoal_stream_close(&s);
    //  Never submitted: not found, naming it.
    shoal_ref_t unknown = shoal_ref_make(0x5eed5eedull, 77, 0);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(unknown, text);
    assert_int_equal(shoal_stream_open(sh, unknown, &s), 0);
    assert_int_equal(shoal_stream_read(s, buf, size, WAIT_MS), SHOAL_ENOTFOUND);
    assert_non_null(strstr(shoal_last_error(sh), text));
    shoal_stream_close(&s);
    shoal_stream_close(&s); //  NULL-safe
    assert_int_equal(shoal_stream_read(NULL, buf, 1, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_remove(sh, (shoal_ref_t[]){ref, small}, 2, WAIT_MS), 2);
    free(data);
    free(buf);
    shoal_disconnect(&sh);
}

/*  shoal put --size N - reads a fifo; shoal get --follow prints each piece before the
    next is written (the script waits for it to appear in the output), and ends when the
    put is sealed. Polls with a deadline, as the harness does. The reader must not hold
    the fifo open (3>&-), or the writer would never see its input end. */
static const char s_follow_script[] =
    "mkfifo $H_TMP/%1$s.fifo && (shoal put --store --size 11 - < $H_TMP/%1$s.fifo > "
    "$H_TMP/%1$s.ref &) && exec 3>$H_TMP/%1$s.fifo && "
    "for i in $(seq 400); do test -s $H_TMP/%1$s.ref && break; sleep 0.05; done; "
    "ref=$(cat $H_TMP/%1$s.ref); test -n \"$ref\" || { echo 'no ref'; exit 1; }; "
    "shoal get --follow --timeout 20 $ref > $H_TMP/%1$s.out 2> $H_TMP/%1$s.err 3>&- & g=$!; "
    "printf hello >&3; "
    "for i in $(seq 400); do test \"$(cat $H_TMP/%1$s.out)\" = hello && break; sleep 0.05; "
    "done; test \"$(cat $H_TMP/%1$s.out)\" = hello || { echo 'hello not streamed'; exit 1; }; "
    "%2$s; wait $g; echo \"get: $?\"; cat $H_TMP/%1$s.out; echo; cat $H_TMP/%1$s.err; "
    "echo ref=$ref";

static void test_shoal_get_follow_prints_the_bytes_of_a_put_as_they_arrive(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r = h_sh(c, CMD_MS, s_follow_script, "whole", "printf ' world' >&3; exec 3>&-");
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "get: 0"));
    assert_true(h_contains(r->out, "hello world"));
}

static void test_shoal_get_follow_fails_naming_the_ref_when_the_put_is_aborted(void **state)
{
    h_cluster_t *c = h_state(state);
    //  The input ends early: shoal put aborts the object.
    h_result_t *r = h_sh(c, CMD_MS, s_follow_script, "cut", "exec 3>&-");
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, "get: 1"));
    const char *ref = strstr(r->out, "ref=");
    assert_non_null(ref);
    char text[SHOAL_REF_TEXT_SIZE];
    snprintf(text, sizeof text, "%.32s", ref + 4);
    //  The error names the ref, in the message before "ref=".
    char *err = strstr(r->out, text);
    assert_true(err && err < ref);
    assert_true(h_contains(r->out, "abort"));
}

static char s_slowly[PATH_MAX + 32], s_crash[PATH_MAX + 32], s_copy[PATH_MAX + 32],
    s_crash_once[PATH_MAX + 32], s_concat[PATH_MAX + 32], s_read_pause[PATH_MAX + 32];

static void test_a_stream_reads_a_task_output_as_its_executor_publishes_it(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    char *go = h_fmt(c, "%s/go", c->tmp);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_slowly, .arg = go, .arg_size = strlen(go) + 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    size_t size = 2 * MiB, got = 0;
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    //  The first half, published while the task still runs (it waits for the file).
    s_read_to(s, buf, &got, MiB);
    for (size_t i = 0; i < MiB; i++)
        assert_int_equal(buf[i], 'a');
    assert_int_equal(shoal_stream_read(s, buf + got, size - got, 200), SHOAL_ETIMEDOUT);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, id, &st), SHOAL_EAGAIN); //  still running
    assert_int_equal(h_write_file(go, "", 0), 0);
    s_read_to(s, buf, &got, size);
    for (size_t i = MiB; i < size; i++)
        assert_int_equal(buf[i], 'b');
    assert_int_equal(shoal_stream_read(s, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s);
    assert_int_equal(shoal_wait(sh, &id, 1, false, WAIT_MS), 0);
    free(buf);
    shoal_disconnect(&sh);
}

static void test_a_stream_of_a_task_output_fails_at_once_when_its_executor_dies(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = s_crash};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    uint8_t buf[4096];
    int64_t t0 = h_now_ms();
    int rc = shoal_stream_read(s, buf, sizeof buf, WAIT_MS);
    //  Not the put lease (a minute): at once, naming the ref.
    assert_true(h_now_ms() - t0 < 10000 * h_scale());
    assert_true(rc < 0 && rc != SHOAL_ETIMEDOUT);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(id, text);
    if (!strstr(shoal_last_error(sh), text))
        print_error("error: %s\n", shoal_last_error(sh));
    assert_non_null(strstr(shoal_last_error(sh), text));
    shoal_stream_close(&s);
    shoal_disconnect(&sh);
}

/*  A fn task whose input streams starts while the put it reads is written, copies what
    has landed and publishes its own output as it goes: a stream of its output gets the
    first MiB before the put is sealed. */
static void test_a_fn_task_reads_a_streaming_input_while_it_is_written(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *writer = h_connect(c), *sh = h_connect(c);
    size_t size = 2 * MiB;
    uint8_t *data = h_pattern(11, size), *buf = malloc(size);
    assert_non_null(buf);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    uint8_t *mem = s_put_started(writer, size, data, MiB, &ref, &put);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_copy, .inputs = &ref, .n_inputs = 1, .stream_inputs = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    size_t got = 0;
    s_read_to(s, buf, &got, MiB);
    assert_memory_equal(buf, data, MiB);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, id, &st), SHOAL_EAGAIN); //  the task still runs
    memcpy(mem + MiB, data + MiB, size - MiB);
    assert_int_equal(shoal_put_end(&put), 0);
    s_read_to(s, buf, &got, size);
    assert_memory_equal(buf, data, size);
    assert_int_equal(shoal_stream_read(s, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s);
    assert_int_equal(shoal_wait(sh, &id, 1, false, WAIT_MS), 0);
    //  A command streams one input at most (its stdin), and tasks only inputs they have.
    spec.kind = SHOAL_TASK_EXEC;
    spec.argv = (const char *const[]){"true", NULL};
    spec.stream_inputs = 3;
    assert_int_equal(shoal_submit(sh, &spec, &id), SHOAL_EINVAL);
    assert_non_null(strstr(shoal_last_error(sh), "one input at most"));
    spec.kind = SHOAL_TASK_FN;
    spec.stream_inputs = 2;
    assert_int_equal(shoal_submit(sh, &spec, &id), SHOAL_EINVAL);
    assert_non_null(strstr(shoal_last_error(sh), "input 1"));
    assert_int_equal(shoal_remove(writer, &ref, 1, WAIT_MS), 1);
    free(data);
    free(buf);
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

//  The put a task streams is aborted: the task fails, naming the put.
static void test_a_fn_task_streaming_an_aborted_put_fails_naming_it(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *writer = h_connect(c), *sh = h_connect(c);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    uint8_t first[4096];
    memset(first, 7, sizeof first);
    s_put_started(writer, 2 * MiB, first, sizeof first, &ref, &put);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_copy, .inputs = &ref, .n_inputs = 1, .stream_inputs = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    //  Its output's first bytes: the task runs and waits for more of its input.
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    uint8_t buf[4096];
    size_t got = 0;
    s_read_to(s, buf, &got, sizeof buf);
    shoal_stream_close(&s);
    shoal_put_abort(&put);
    assert_int_not_equal(shoal_wait(sh, &id, 1, false, WAIT_MS), 0);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, id, &st), 0);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    if (!st.error || !strstr(st.error, text))
        print_error("error: %s\n", st.error ? st.error : "(none)");
    assert_true(st.error && strstr(st.error, text));
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

/*  shoal submit --stdin-input: the command starts while `shoal put --size N -` still
    reads its input, and reads the bytes on its stdin as they land (it writes its first
    line to a file the script waits for before it sends the rest). */
static void test_an_exec_task_reads_a_put_on_its_stdin_while_it_is_written(void **state)
{
    h_cluster_t *c = h_state(state);
    h_result_t *r =
        h_sh(c, CMD_MS,
             "mkfifo $H_TMP/in.fifo && (shoal put --store --size 12 - < $H_TMP/in.fifo > "
             "$H_TMP/in.ref &) && exec 3>$H_TMP/in.fifo && "
             "for i in $(seq 400); do test -s $H_TMP/in.ref && break; sleep 0.05; done; "
             "ref=$(cat $H_TMP/in.ref); test -n \"$ref\" || { echo 'no ref'; exit 1; }; "
             "task=$(shoal submit --stdin-input $ref -- sh -c "
             "'read l; echo \"$l\" > '$H_TMP/first'; cat; echo \"got $l\"' 3>&-) || exit 1; "
             "printf 'hello\\n' >&3; "
             "for i in $(seq 400); do test \"$(cat $H_TMP/first 2>/dev/null)\" = hello && break; "
             "sleep 0.05; done; test \"$(cat $H_TMP/first 2>/dev/null)\" = hello || "
             "{ echo 'the command did not start before the seal'; exit 1; }; "
             "printf 'world\\n' >&3; exec 3>&-; shoal get --timeout 20 $task");
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "world\ngot hello\n");
    //  One input at most is a command's stdin; a function streams with --stream-input.
    r = h_run(c, CMD_MS, "submit", "--stdin-input", "00000000000000010000000000010000",
              "--stdin-input", "00000000000000010000000000020000", "--", "cat", NULL);
    h_assert_exit(r, 2);
    r = h_run(c, CMD_MS, "submit", "--stream-input", "00000000000000010000000000010000", "--",
              "cat", NULL);
    h_assert_exit(r, 2);
    assert_true(h_contains(r->err, "--stdin-input"));
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
        r = h_run(c, CMD_MS, "ls", NULL);
        const char *line = r->status == 0 ? strstr(r->out, text) : NULL;
        const char *end = line ? strchr(line, '\n') : NULL;
        const char *at = line ? strstr(line, state) : NULL;
        if (at && (!end || at < end))
            return true;
    } while (h_now_ms() < deadline);
    print_error("%s is not %s:\n%s%s\n", text, state, r->out, r->err);
    return false;
}

/*  A put of 20 MiB is sealed while a stream has read only its first MiB, then spilled to
    make room for another (the arena is 32 MiB): the stream still gets every byte (from
    the disk tier) and the end. */
static void test_a_stream_reads_a_put_to_the_end_after_it_is_spilled_to_disk(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *writer = h_connect(c), *reader = h_connect(c);
    size_t size = 20 * MiB;
    uint8_t *data = h_pattern(13, size), *buf = malloc(size);
    assert_non_null(buf);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    uint8_t *mem = s_put_started(writer, size, data, MiB, &ref, &put);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(reader, ref, &s), 0);
    size_t got = 0;
    s_read_to(s, buf, &got, MiB);
    memcpy(mem + MiB, data + MiB, size - MiB);
    assert_int_equal(shoal_put_end(&put), 0);
    //  Another 20 MiB does not fit next to it: the sealed put goes to the disk tier.
    shoal_put_opts_t store = {.flags = SHOAL_PUT_STORE};
    shoal_ref_t other;
    int rc = shoal_put(writer, data, size, &store, &other);
    if (rc)
        print_error("second put: %s\n", shoal_last_error(writer));
    assert_int_equal(rc, 0);
    assert_true(s_wait_ls_state(c, ref, "spilled"));
    s_read_to(s, buf, &got, size);
    assert_memory_equal(buf, data, size);
    assert_int_equal(shoal_stream_read(s, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s);
    assert_int_equal(shoal_remove(writer, (shoal_ref_t[]){ref, other}, 2, WAIT_MS), 2);
    free(data);
    free(buf);
    shoal_disconnect(&reader);
    shoal_disconnect(&writer);
}

/*  A command reading on its stdin an output whose executor dies mid-write (its producer
    is retried) fails as a task whose input failed: SHOAL_ETASK naming the input and the
    abort, not a cancel; with --retries its next attempt reads the retried output whole. */
static void test_a_command_whose_stdin_input_is_aborted_fails_naming_it_and_is_retried(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    for (unsigned retries = 0; retries < 2; retries++) {
        char *go = h_fmt(c, "%s/crash-go-%u", c->tmp, retries);
        shoal_task_spec_t producer = {.kind = SHOAL_TASK_FN,
                                      .fn = s_crash_once,
                                      .arg = go,
                                      .arg_size = strlen(go) + 1,
                                      .retries = 1};
        shoal_ref_t input;
        assert_int_equal(shoal_submit(sh, &producer, &input), 0);
        //  Reads the first MiB, lets the producer crash, then reads to the end.
        char *script = h_fmt(c, "head -c 1048576 > /dev/null && touch %s && wc -c", go);
        const char *argv[] = {"sh", "-c", script, NULL};
        shoal_task_spec_t consumer = {.kind = SHOAL_TASK_EXEC,
                                      .argv = argv,
                                      .inputs = &input,
                                      .n_inputs = 1,
                                      .stream_inputs = 1,
                                      .retries = retries};
        shoal_ref_t id;
        assert_int_equal(shoal_submit(sh, &consumer, &id), 0);
        int rc = shoal_wait(sh, &id, 1, false, WAIT_MS);
        shoal_status_t st;
        assert_int_equal(shoal_status(sh, id, &st), 0);
        if (retries == 0) {
            char text[SHOAL_REF_TEXT_SIZE];
            shoal_ref_format(input, text);
            if (rc != SHOAL_ETASK || !st.error || !strstr(st.error, text) ||
                !strstr(st.error, "abort"))
                print_error("rc %d (%s), error: %s\n", rc, shoal_strerror(rc),
                            st.error ? st.error : "(none)");
            assert_int_equal(rc, SHOAL_ETASK);
            assert_int_equal(st.state, SHOAL_STATUS_FAILED);
            assert_non_null(strstr(st.error, text));
            assert_non_null(strstr(st.error, "abort"));
        } else {
            if (rc)
                print_error("retried: %s\n", shoal_last_error(sh));
            assert_int_equal(rc, 0);
            shoal_view_t v;
            assert_int_equal(shoal_get(sh, id, WAIT_MS, &v), 0);
            assert_int_equal(strtoul((const char *)v.data, NULL, 10), MiB);
            shoal_view_release(&v);
        }
        assert_int_equal(shoal_wait(sh, &input, 1, false, WAIT_MS), 0);
    }
    shoal_disconnect(&sh);
}

/*  A command that stops reading its streaming stdin early (`head -c 5`) ends the task when
    it exits, while the put it reads is still being written (and stays so). */
static void test_a_command_that_exits_early_ends_its_task_while_its_stdin_is_written(void **state)
{
    h_cluster_t *c = h_state(state);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    shoal_t *writer = h_connect(c), *sh = h_connect(c);
    shoal_put_t *put = NULL;
    shoal_ref_t ref;
    assert_int_equal(shoal_put_begin(writer, 2 * MiB, NULL, &ref, &put), 0);
    assert_int_equal(shoal_put_write(put, "hello world", 11), 0);
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    const char *argv[] = {"head", "-c", "5", NULL};
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_EXEC, .argv = argv, .inputs = &ref, .n_inputs = 1, .stream_inputs = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    //  The put stays open: only the command's exit can end the task.
    int rc = shoal_wait(sh, &id, 1, false, 10000 * h_scale());
    if (rc)
        print_error("task: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, id, WAIT_MS, &v), 0);
    assert_int_equal(v.size, 5);
    assert_memory_equal(v.data, "hello", 5);
    shoal_view_release(&v);
    shoal_put_abort(&put);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

/*  A stream that has read the first MiB of a task's output, with nothing in flight when
    the task's executor dies, must not go on into the retry's output of the same ref: it
    fails naming the ref and the abort rather than end as if it had read one object. */
static void test_a_stream_fails_rather_than_read_on_into_a_retried_output(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    char *go = h_fmt(c, "%s/retry-go", c->tmp);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                              .fn = s_crash_once,
                              .arg = go,
                              .arg_size = strlen(go) + 1,
                              .retries = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    size_t size = 2 * MiB, got = 0;
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    s_read_to(s, buf, &got, MiB);
    //  The first attempt crashes; the second writes the output whole under the same ref.
    assert_int_equal(h_write_file(go, "", 0), 0);
    assert_int_equal(shoal_wait(sh, &id, 1, false, WAIT_MS), 0);
    int rc = 0;
    while (got < size && (rc = shoal_stream_read(s, buf + got, size - got, WAIT_MS)) > 0)
        got += (size_t)rc;
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(id, text);
    if (rc != SHOAL_ECANCELED)
        print_error("read %zu bytes, then %d: %s\n", got, rc, shoal_last_error(sh));
    assert_int_equal(rc, SHOAL_ECANCELED);
    assert_non_null(strstr(shoal_last_error(sh), text));
    assert_non_null(strstr(shoal_last_error(sh), "abort"));
    shoal_stream_close(&s);
    //  A stream opened now reads the retry's output whole.
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    got = 0;
    s_read_to(s, buf, &got, size);
    assert_int_equal(shoal_stream_read(s, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s);
    free(buf);
    shoal_disconnect(&sh);
}

/*  A fn task has read the first MiB of its streaming input (a task's output) and reads
    nothing while the input's producer crashes and its retry writes the output anew under
    the same ref: its next read must fail, naming the input and the new allocation, rather
    than read the new allocation's bytes at the old one's place. */
static void test_a_fn_task_fails_rather_than_read_on_into_a_retried_input(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = h_connect(c);
    char *go = h_fmt(c, "%s/input-retry-go", c->tmp);
    char *resume = h_fmt(c, "%s/input-retry-resume", c->tmp);
    shoal_task_spec_t producer = {.kind = SHOAL_TASK_FN,
                                  .fn = s_crash_once,
                                  .arg = go,
                                  .arg_size = strlen(go) + 1,
                                  .retries = 1};
    shoal_ref_t ids[2];
    assert_int_equal(shoal_submit(sh, &producer, &ids[0]), 0);
    size_t arg_size = strlen(go) + 1 + strlen(resume) + 1;
    char *arg = malloc(arg_size); //  "GO\0RESUME\0"
    assert_non_null(arg);
    memcpy(arg, go, strlen(go) + 1);
    memcpy(arg + strlen(go) + 1, resume, strlen(resume) + 1);
    shoal_task_spec_t consumer = {.kind = SHOAL_TASK_FN,
                                  .fn = s_read_pause,
                                  .arg = arg,
                                  .arg_size = arg_size,
                                  .inputs = &ids[0],
                                  .n_inputs = 1,
                                  .stream_inputs = 1};
    assert_int_equal(shoal_submit(sh, &consumer, &ids[1]), 0);
    //  The consumer creates go after its first MiB; the producer then crashes and its
    //  retry writes the output whole.
    int rc = shoal_wait(sh, &ids[0], 1, false, WAIT_MS);
    if (rc)
        print_error("producer: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    assert_int_equal(h_write_file(resume, "", 0), 0);
    assert_int_not_equal(shoal_wait(sh, &ids[1], 1, false, WAIT_MS), 0);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, ids[1], &st), 0);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ids[0], text);
    if (!st.error || !strstr(st.error, text) || !strstr(st.error, "allocated anew"))
        print_error("consumer: state %d, error: %s\n", (int)st.state,
                    st.error ? st.error : "(none)");
    assert_int_equal(st.state, SHOAL_STATUS_FAILED);
    assert_true(st.error && strstr(st.error, text) && strstr(st.error, "allocated anew"));
    assert_int_equal(shoal_remove(sh, ids, 2, WAIT_MS) >= 1, 1);
    free(arg);
    shoal_disconnect(&sh);
}

/*  A task with two streaming inputs written on different workers runs at once where the
    first is written and pulls the second from the other worker as it lands: its output
    (the two inputs one after the other) has the first bytes of input 1 before input 1 is
    sealed. Adds a second worker to the cluster: the last test. */
static void test_a_task_streams_inputs_written_on_two_workers_as_they_land(void **state)
{
    h_cluster_t *c = h_state(state);
    assert_int_equal(h_start_worker(c, 1), 0);
    assert_int_equal(h_wait_workers(c, 20000), 0);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1); //  the worker counts what arrives
    shoal_t *writer = h_connect(c), *sh = h_connect(c);
    size_t size = MiB;
    uint8_t *data = h_pattern(17, size), *buf = malloc(2 * size);
    assert_non_null(buf);
    shoal_put_t *put[2] = {NULL, NULL};
    shoal_ref_t refs[2];
    for (int i = 0; i < 2; i++) {
        shoal_put_opts_t opts = {.worker = c->workers[i].name};
        assert_int_equal(shoal_put_begin(writer, size, &opts, &refs[i], &put[i]), 0);
        assert_int_equal(shoal_put_write(put[i], data, 4096), 0);
    }
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_concat, .inputs = refs, .n_inputs = 2, .stream_inputs = 3};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, id, &s), 0);
    size_t got = 0;
    s_read_to(s, buf, &got, 4096);
    assert_memory_equal(buf, data, 4096);
    assert_int_equal(shoal_put_write(put[0], data + 4096, size - 4096), 0);
    assert_int_equal(shoal_put_end(&put[0]), 0);
    //  Input 1's first bytes, while it is still being written on the other worker.
    s_read_to(s, buf, &got, size + 4096);
    assert_memory_equal(buf, data, size);
    assert_memory_equal(buf + size, data, 4096);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, refs[1], &st), SHOAL_EAGAIN); //  not sealed
    assert_int_equal(shoal_put_write(put[1], data + 4096, size - 4096), 0);
    assert_int_equal(shoal_put_end(&put[1]), 0);
    s_read_to(s, buf, &got, 2 * size);
    assert_memory_equal(buf + size, data, size);
    shoal_stream_close(&s);
    int rc = shoal_wait(sh, &id, 1, false, WAIT_MS);
    if (rc)
        print_error("task: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    free(data);
    free(buf);
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

int main(void)
{
    snprintf(s_copy, sizeof s_copy, "%s:stream_copy", SHOAL_TEST_PLUGIN);
    snprintf(s_slowly, sizeof s_slowly, "%s:stream_slowly", SHOAL_TEST_PLUGIN);
    snprintf(s_crash, sizeof s_crash, "%s:crash_mid_write", SHOAL_TEST_PLUGIN);
    snprintf(s_crash_once, sizeof s_crash_once, "%s:stream_crash_once", SHOAL_TEST_PLUGIN);
    snprintf(s_concat, sizeof s_concat, "%s:stream_concat", SHOAL_TEST_PLUGIN);
    snprintf(s_read_pause, sizeof s_read_pause, "%s:stream_read_pause", SHOAL_TEST_PLUGIN);
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stream_reads_a_put_written_in_place_on_this_host_as_it_lands),
        cmocka_unit_test(test_a_stream_reads_a_put_written_over_tcp_as_it_lands),
        cmocka_unit_test(test_a_stream_of_an_aborted_put_fails_naming_it),
        cmocka_unit_test(test_a_stream_of_a_final_or_unknown_ref_reads_it_whole_or_fails),
        cmocka_unit_test(test_shoal_get_follow_prints_the_bytes_of_a_put_as_they_arrive),
        cmocka_unit_test(test_shoal_get_follow_fails_naming_the_ref_when_the_put_is_aborted),
        cmocka_unit_test(test_a_stream_reads_a_task_output_as_its_executor_publishes_it),
        cmocka_unit_test(test_a_stream_of_a_task_output_fails_at_once_when_its_executor_dies),
        cmocka_unit_test(test_a_fn_task_reads_a_streaming_input_while_it_is_written),
        cmocka_unit_test(test_a_fn_task_streaming_an_aborted_put_fails_naming_it),
        cmocka_unit_test(test_an_exec_task_reads_a_put_on_its_stdin_while_it_is_written),
        cmocka_unit_test(test_a_stream_reads_a_put_to_the_end_after_it_is_spilled_to_disk),
        cmocka_unit_test(
            test_a_command_whose_stdin_input_is_aborted_fails_naming_it_and_is_retried),
        cmocka_unit_test(test_a_command_that_exits_early_ends_its_task_while_its_stdin_is_written),
        cmocka_unit_test(test_a_stream_fails_rather_than_read_on_into_a_retried_output),
        cmocka_unit_test(test_a_fn_task_fails_rather_than_read_on_into_a_retried_input),
        cmocka_unit_test(test_a_task_streams_inputs_written_on_two_workers_as_they_land),
    };
    return cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
}
