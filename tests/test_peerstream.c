/*  test_peerstream.c: a task streams an input that another worker is still writing.

    One broker and two workers of one slot each and no prefetch (--prefetch 0), so a
    worker running one task has no room for another and the broker must place a streaming
    consumer away from the worker writing its input. The consumer's worker pulls the input
    from the writer's data socket (TCP on 127.0.0.1) as it lands: the consumer starts and
    has read bytes (the test streams its output) before the input is sealed, and its result
    is byte-exact. Sources: a client's put written over TCP, a running task's output, and
    an aborted put (the consumer fails naming it); consumers: a fn task and a command
    reading it on its stdin (--stdin-input). */
#include "harness.h"
#include "wire.h"

#include <shoal.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(SHOAL_TEST_PLUGIN)
#error "tests/CMakeLists.txt defines SHOAL_TEST_PLUGIN"
#endif

#define CMD_MS  20000
#define WAIT_MS (30000 * h_scale())
#define MiB     (1024 * 1024)

static char s_copy[PATH_MAX + 32], s_slowly[PATH_MAX + 32], s_crash_once[PATH_MAX + 32];

static int s_setup(void **state)
{
    h_cluster_t *c = h_cluster_start_with(2, 1, "64M", "--prefetch 0");
    *state = c;
    return c ? 0 : -1;
}

static shoal_t *s_connect(h_cluster_t *c)
{
    shoal_t *sh = NULL;
    int rc = shoal_connect(c->listen, 10000 * h_scale(), &sh);
    if (rc)
        print_error("connect: %s\n", shoal_strerror(rc));
    assert_int_equal(rc, 0);
    return sh;
}

static uint8_t *s_pattern(uint64_t seed, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    assert_non_null(p);
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)((i * 2654435761u + seed) >> 7);
    return p;
}

//  Reads from s into buf + *got until want bytes in all are there, failing on an error.
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

//  The worker `shoal ls` names as the holder of ref (a stored, done object), or -1.
static int s_holder(h_cluster_t *c, shoal_ref_t ref)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    h_result_t *r = h_run(c, CMD_MS, "ls", NULL);
    const char *line = r->status == 0 ? strstr(r->out, text) : NULL;
    if (!line)
        return -1;
    const char *end = strchr(line, '\n');
    char *copy = h_fmt(c, "%.*s", end ? (int)(end - line) : (int)strlen(line), line);
    for (int i = 0; i < c->n_workers; i++) {
        //  As a word: w1 must not match w10.
        for (char *at = strstr(copy, c->workers[i].name); at;
             at = strstr(at + 1, c->workers[i].name)) {
            char after = at[strlen(c->workers[i].name)];
            if ((at == copy || at[-1] == ' ') && (after == ' ' || after == '\0'))
                return i;
        }
    }
    print_error("no worker holds %s:\n%s\n", text, r->out);
    return -1;
}

//  A put of size bytes begun on worker i, its first `first` bytes of data written.
static shoal_put_t *s_put_on(h_cluster_t *c, shoal_t *writer, int i, const uint8_t *data,
                             size_t size, size_t first, shoal_ref_t *ref)
{
    shoal_put_t *put = NULL;
    shoal_put_opts_t opts = {.worker = c->workers[i].name};
    assert_int_equal(shoal_put_begin(writer, size, &opts, ref, &put), 0);
    if (first)
        assert_int_equal(shoal_put_write(put, data, first), 0);
    assert_int_equal(shoal_flush(writer, WAIT_MS), 0);
    return put;
}

//  Submits stream_copy of ref (streaming) and waits until its output shows `want` bytes,
//  read into buf: the task runs and has read them.
static shoal_ref_t s_copy_of(shoal_t *sh, shoal_ref_t ref, uint8_t *buf, size_t want,
                             shoal_stream_t **s)
{
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_copy, .inputs = &ref, .n_inputs = 1, .stream_inputs = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &spec, &id), 0);
    assert_int_equal(shoal_stream_open(sh, id, s), 0);
    size_t got = 0;
    s_read_to(*s, buf, &got, want);
    return id;
}

/*  Worker 0 writes a put and runs a task streaming it (so it is full); a second put on
    worker 0, written in parts over TCP, is streamed by a task the broker places on worker
    1: its output has each part before the next is written, the end after the seal. */
static void test_a_task_streams_a_put_being_written_on_a_full_worker_from_another(void **state)
{
    h_cluster_t *c = h_state(state);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1); //  the put's bytes travel in WRITEs
    shoal_t *writer = s_connect(c), *sh = s_connect(c);
    size_t size = 3 * MiB + 100;
    uint8_t *data = s_pattern(21, size), *buf = malloc(size);
    assert_non_null(buf);
    shoal_ref_t ref0, ref1;
    shoal_put_t *put0 = s_put_on(c, writer, 0, data, MiB, 4096, &ref0);
    shoal_stream_t *s0 = NULL, *s1 = NULL;
    shoal_ref_t id0 = s_copy_of(sh, ref0, buf, 4096, &s0); //  on worker 0, which is full now
    size_t parts[] = {1000, MiB + 5000, size - 1000 - (MiB + 5000)};
    shoal_put_t *put1 = s_put_on(c, writer, 0, data, size, parts[0], &ref1);
    shoal_ref_t id1 = s_copy_of(sh, ref1, buf, parts[0], &s1);
    size_t got = parts[0], written = parts[0];
    assert_memory_equal(buf, data, got);
    assert_int_equal(shoal_stream_read(s1, buf + got, size - got, 200), SHOAL_ETIMEDOUT);
    assert_int_equal(shoal_put_write(put1, data + written, parts[1]), 0);
    written += parts[1];
    s_read_to(s1, buf, &got, written);
    assert_memory_equal(buf, data, written);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, id1, &st), SHOAL_EAGAIN); //  it still runs
    assert_int_equal(shoal_put_write(put1, data + written, parts[2]), 0);
    assert_int_equal(shoal_put_end(&put1), 0);
    s_read_to(s1, buf, &got, size);
    assert_memory_equal(buf, data, size);
    assert_int_equal(shoal_stream_read(s1, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s1);
    int rc = shoal_wait(sh, &id1, 1, false, WAIT_MS);
    if (rc)
        print_error("task: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    assert_int_equal(s_holder(c, id1), 1);
    assert_int_equal(shoal_put_write(put0, data + 4096, MiB - 4096), 0);
    assert_int_equal(shoal_put_end(&put0), 0);
    shoal_stream_close(&s0);
    assert_int_equal(shoal_wait(sh, &id0, 1, false, WAIT_MS), 0);
    assert_int_equal(s_holder(c, id0), 0);
    assert_int_equal(shoal_remove(writer, (shoal_ref_t[]){ref0, ref1}, 2, WAIT_MS), 2);
    assert_int_equal(shoal_remove(sh, (shoal_ref_t[]){id0, id1}, 2, WAIT_MS), 2);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    free(data);
    free(buf);
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

/*  A task's output written in place by its executor (published with
    shoal_task_output_progress) is streamed by a task on the other worker: its output has
    the first MiB while the producer still runs, then all of it. */
static void test_a_task_streams_an_output_its_producer_writes_on_the_other_worker(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = s_connect(c);
    char *go = h_fmt(c, "%s/peer-go", c->tmp);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_slowly, .arg = go, .arg_size = strlen(go) + 1};
    shoal_ref_t producer;
    assert_int_equal(shoal_submit(sh, &spec, &producer), 0);
    size_t size = 2 * MiB, got = 0;
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    shoal_stream_t *s = NULL;
    //  The producer has written its first MiB: its worker is full (one slot, no prefetch).
    assert_int_equal(shoal_stream_open(sh, producer, &s), 0);
    s_read_to(s, buf, &got, MiB);
    shoal_stream_close(&s);
    shoal_ref_t id = s_copy_of(sh, producer, buf, MiB, &s);
    got = MiB;
    for (size_t i = 0; i < MiB; i++)
        assert_int_equal(buf[i], 'a');
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, producer, &st), SHOAL_EAGAIN); //  still writing
    assert_int_equal(h_write_file(go, "", 0), 0);
    s_read_to(s, buf, &got, size);
    for (size_t i = MiB; i < size; i++)
        assert_int_equal(buf[i], 'b');
    assert_int_equal(shoal_stream_read(s, buf, 1, WAIT_MS), 0);
    shoal_stream_close(&s);
    assert_int_equal(shoal_wait(sh, (shoal_ref_t[]){producer, id}, 2, false, WAIT_MS), 0);
    int p = s_holder(c, producer), q = s_holder(c, id);
    assert_true(p >= 0 && q >= 0 && p != q);
    assert_int_equal(shoal_remove(sh, (shoal_ref_t[]){producer, id}, 2, WAIT_MS), 2);
    free(buf);
    shoal_disconnect(&sh);
}

/*  A put streamed by a task on the other worker is aborted after the task has read some
    of it: the task fails as a task whose input failed (SHOAL_ETASK), naming the put and
    the abort (or is canceled with the put by the broker, whichever comes first); likewise
    when its input is a task output aborted by the death of its executor. */
static void test_a_task_streaming_from_another_worker_fails_naming_an_aborted_input(void **state)
{
    h_cluster_t *c = h_state(state);
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    shoal_t *writer = s_connect(c), *sh = s_connect(c);
    uint8_t *data = s_pattern(23, MiB), buf[8192];
    shoal_ref_t ref0, ref1;
    shoal_put_t *put0 = s_put_on(c, writer, 0, data, MiB, 4096, &ref0);
    shoal_stream_t *s0 = NULL, *s1 = NULL;
    shoal_ref_t id0 = s_copy_of(sh, ref0, buf, 4096, &s0);
    shoal_put_t *put1 = s_put_on(c, writer, 0, data, MiB, 4096, &ref1);
    shoal_ref_t id1 = s_copy_of(sh, ref1, buf, 4096, &s1);
    shoal_stream_close(&s1);
    shoal_put_abort(&put1);
    int rc = shoal_wait(sh, &id1, 1, false, WAIT_MS);
    shoal_status_t st;
    assert_int_equal(shoal_status(sh, id1, &st), 0);
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref1, text);
    //  Whichever comes first: the worker's failure (the pull was told of the abort) or the
    //  broker's cancel of the put's dependents (its worker's note), as for a local stream.
    if ((rc != SHOAL_ETASK && rc != SHOAL_ECANCELED) || !st.error || !strstr(st.error, text) ||
        (rc == SHOAL_ETASK && !strstr(st.error, "abort")))
        print_error("rc %d, error: %s\n", rc, st.error ? st.error : "(none)");
    assert_true(rc == SHOAL_ETASK || rc == SHOAL_ECANCELED);
    assert_non_null(strstr(st.error, text));
    if (rc == SHOAL_ETASK)
        assert_non_null(strstr(st.error, "abort"));
    assert_int_equal(shoal_put_write(put0, data + 4096, MiB - 4096), 0);
    assert_int_equal(shoal_put_end(&put0), 0);
    shoal_stream_close(&s0);
    assert_int_equal(shoal_wait(sh, &id0, 1, false, WAIT_MS), 0);
    assert_int_equal(shoal_remove(writer, &ref0, 1, WAIT_MS), 1);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    //  A task's output aborted because its executor died (its producer is retried, so only
    //  the pull hears of it): the consumer fails as a task whose input failed, SHOAL_ETASK
    //  naming the input and the abort.
    char *go = h_fmt(c, "%s/peer-crash-go", c->tmp);
    shoal_task_spec_t producer = {.kind = SHOAL_TASK_FN,
                                  .fn = s_crash_once,
                                  .arg = go,
                                  .arg_size = strlen(go) + 1,
                                  .retries = 1};
    shoal_ref_t input;
    assert_int_equal(shoal_submit(sh, &producer, &input), 0);
    assert_int_equal(shoal_stream_open(sh, input, &s0), 0);
    size_t got = 0;
    uint8_t *big = malloc(MiB);
    assert_non_null(big);
    s_read_to(s0, big, &got, MiB); //  it runs: its worker is full
    shoal_stream_close(&s0);
    id1 = s_copy_of(sh, input, big, MiB, &s1); //  on the other worker, read the first MiB
    shoal_stream_close(&s1);
    assert_int_equal(h_write_file(go, "", 0), 0); //  the producer crashes
    rc = shoal_wait(sh, &id1, 1, false, WAIT_MS);
    assert_int_equal(shoal_status(sh, id1, &st), 0);
    shoal_ref_format(input, text);
    if (rc != SHOAL_ETASK || !st.error || !strstr(st.error, text) || !strstr(st.error, "abort"))
        print_error("rc %d, error: %s\n", rc, st.error ? st.error : "(none)");
    assert_int_equal(rc, SHOAL_ETASK);
    assert_non_null(strstr(st.error, text));
    assert_non_null(strstr(st.error, "abort"));
    assert_int_equal(shoal_wait(sh, &input, 1, false, WAIT_MS), 0); //  its retry
    free(big);
    free(data);
    shoal_disconnect(&sh);
    shoal_disconnect(&writer);
}

/*  A command on the other worker reads a running task's output on its stdin
    (--stdin-input): after the first MiB it lets the producer write the rest, which it
    then reads to the end. */
static void test_a_command_reads_on_its_stdin_an_output_written_on_the_other_worker(void **state)
{
    h_cluster_t *c = h_state(state);
    shoal_t *sh = s_connect(c);
    char *go = h_fmt(c, "%s/peer-stdin-go", c->tmp);
    shoal_task_spec_t spec = {
        .kind = SHOAL_TASK_FN, .fn = s_slowly, .arg = go, .arg_size = strlen(go) + 1};
    shoal_ref_t producer;
    assert_int_equal(shoal_submit(sh, &spec, &producer), 0);
    uint8_t *buf = malloc(MiB);
    assert_non_null(buf);
    shoal_stream_t *s = NULL;
    assert_int_equal(shoal_stream_open(sh, producer, &s), 0);
    size_t got = 0;
    s_read_to(s, buf, &got, MiB); //  it runs: its worker is full
    shoal_stream_close(&s);
    char *script = h_fmt(c, "head -c 1048576 > /dev/null && touch %s && wc -c", go);
    const char *argv[] = {"sh", "-c", script, NULL};
    shoal_task_spec_t consumer = {.kind = SHOAL_TASK_EXEC,
                                  .argv = argv,
                                  .inputs = &producer,
                                  .n_inputs = 1,
                                  .stream_inputs = 1};
    shoal_ref_t id;
    assert_int_equal(shoal_submit(sh, &consumer, &id), 0);
    int rc = shoal_wait(sh, &id, 1, false, WAIT_MS);
    if (rc)
        print_error("command: %s\n", shoal_last_error(sh));
    assert_int_equal(rc, 0);
    shoal_view_t v;
    assert_int_equal(shoal_get(sh, id, WAIT_MS, &v), 0);
    assert_int_equal(strtoul((const char *)v.data, NULL, 10), MiB);
    shoal_view_release(&v);
    assert_int_equal(shoal_wait(sh, &producer, 1, false, WAIT_MS), 0);
    assert_int_equal(shoal_remove(sh, (shoal_ref_t[]){producer, id}, 2, WAIT_MS), 2);
    free(buf);
    shoal_disconnect(&sh);
}

/*  ------------------------------------------------------------------------------------
    One real worker driven by the test: the test is its broker (a ROUTER it dispatches
    from) and the worker writing the input (a ROUTER that gets the streaming asks and
    answers them as the test says), so the pull's corners come in a known order. */

typedef struct {
    h_cluster_t *c; //  its broker is not used; worker 0 talks to the test
    void *ctx, *broker, *peer;
    char broker_ep[256], peer_ep[256];
    shoal_wire_peer_t w; //  the worker, on the broker ROUTER
    int64_t next_hb;
    shoal_wire_result_t results[16]; //  w_done results (id, attempt, status) in order
    char errors[16][256];
    int n_results;
    shoal_ref_t allocated[16]; //  refs the worker noted ALLOCATED
    int n_allocated;
    uint64_t store_bytes; //  as its last heartbeat said
    int heartbeats;
} s_fake_t;

static void *s_fake_bind(s_fake_t *f, char *ep, size_t size)
{
    void *s = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &size), 0);
    return s;
}

//  Handles what the worker sends the broker; heartbeats it.
static void s_fake_broker(s_fake_t *f)
{
    shoal_wire_in_t in;
    while (shoal_wire_recv(f->broker, true, &in, ZMQ_DONTWAIT) == 0) {
        f->w = in.peer;
        shoal_msg_t *m = &in.msg;
        if (m->type == SHOAL_MSG_w_hello) {
            shoal_wire_w_welcome_t wel = {.version = SHOAL_PROTO_VERSION, .heartbeat_ms = 500};
            shoal_wire_send(f->broker, &f->w, SHOAL_MSG_w_welcome, &wel, NULL, 0);
        } else if (m->type == SHOAL_MSG_w_done) {
            for (size_t i = 0; i < m->u.w_done.results.count && f->n_results < 16; i++) {
                const shoal_wire_result_t *r = &m->u.w_done.results.items[i];
                f->results[f->n_results] =
                    (shoal_wire_result_t){.id = r->id, .attempt = r->attempt, .status = r->status};
                snprintf(f->errors[f->n_results++], 256, "%s", r->error ? r->error : "");
            }
            shoal_wire_w_done_ack_t ack = {.seq = m->u.w_done.seq};
            shoal_wire_send(f->broker, &f->w, SHOAL_MSG_w_done_ack, &ack, NULL, 0);
        } else if (m->type == SHOAL_MSG_heartbeat) {
            f->store_bytes = m->u.heartbeat.store_bytes;
            f->heartbeats++;
        } else if (m->type == SHOAL_MSG_w_objects) {
            for (size_t i = 0; i < m->u.w_objects.items.count && f->n_allocated < 16; i++)
                if (m->u.w_objects.items.items[i].state == SHOAL_OBJ_NOTE_ALLOCATED)
                    f->allocated[f->n_allocated++] = m->u.w_objects.items.items[i].ref;
        }
        shoal_wire_in_clear(&in);
    }
    if (h_now_ms() >= f->next_hb && f->w.size) {
        shoal_wire_heartbeat_t hb = {0};
        shoal_wire_send(f->broker, &f->w, SHOAL_MSG_heartbeat, &hb, NULL, 0);
        f->next_hb = h_now_ms() + 200;
    }
}

static int s_fake_setup(void **state)
{
    s_fake_t *f = calloc(1, sizeof *f);
    f->c = h_cluster_start_with(0, 2, "32M", "--prefetch 0 --spill-size 0");
    assert_non_null(f->c);
    f->ctx = zmq_ctx_new();
    f->broker = s_fake_bind(f, f->broker_ep, sizeof f->broker_ep);
    f->peer = s_fake_bind(f, f->peer_ep, sizeof f->peer_ep);
    char listen[sizeof f->c->listen];
    memcpy(listen, f->c->listen, sizeof listen);
    snprintf(f->c->listen, sizeof f->c->listen, "%s", f->broker_ep);
    assert_int_equal(h_start_worker(f->c, 0), 0);
    memcpy(f->c->listen, listen, sizeof listen);
    int64_t deadline = h_now_ms() + 10000 * h_scale();
    while (!f->w.size && h_now_ms() < deadline) {
        zmq_pollitem_t item = {f->broker, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 20);
        s_fake_broker(f);
    }
    assert_true(f->w.size > 0);
    *state = f;
    return 0;
}

static int s_fake_teardown(void **state)
{
    s_fake_t *f = *state;
    h_kill_worker(f->c, 0, SIGKILL); //  its broker is the test: no clean goodbye
    zmq_close(f->broker);
    zmq_close(f->peer);
    zmq_ctx_term(f->ctx);
    int rc = h_cluster_stop(&f->c);
    free(f);
    return rc;
}

//  Dispatches task n (output ref shoal_ref_output(id, 0)) running fn with arg; input, when
//  not NULL, streams and is being written by the fake peer.
//  Dispatches task id running fn with arg and one input, when not NULL: one that streams,
//  being written by the fake peer, or (sealed_size > 0) one sealed there, fetched whole.
static shoal_ref_t s_fake_dispatch_of(s_fake_t *f, shoal_ref_t id, uint64_t attempt, const char *fn,
                                      const char *arg, const shoal_ref_t *input,
                                      uint64_t sealed_size)
{
    shoal_ref_t in_ref = input ? *input : id;
    shoal_wire_input_t in = {.ref = in_ref,
                             .size = sealed_size,
                             .flags = sealed_size ? 0 : SHOAL_IN_WRITING,
                             .endpoint = f->peer_ep,
                             .worker = "fake"};
    shoal_wire_dispatch_t d = {.task = {.id = id,
                                        .kind = SHOAL_KIND_FN,
                                        .fn = (char *)fn,
                                        .arg = {(const uint8_t *)arg, arg ? strlen(arg) + 1 : 0},
                                        .inputs = {&in_ref, input ? 1 : 0},
                                        .n_outputs = 1,
                                        .stream = input && !sealed_size ? 1 : 0},
                               .attempt = attempt,
                               .inputs = {&in, input ? 1 : 0}};
    shoal_wire_w_dispatch_t msg = {.tasks = {&d, 1}};
    assert_int_equal(shoal_wire_send(f->broker, &f->w, SHOAL_MSG_w_dispatch, &msg, NULL, 0), 0);
    return id;
}

static shoal_ref_t s_fake_dispatch(s_fake_t *f, shoal_ref_t id, uint64_t attempt, const char *fn,
                                   const char *arg, const shoal_ref_t *input)
{
    return s_fake_dispatch_of(f, id, attempt, fn, arg, input, 0);
}

//  Waits for the next ask the fake peer gets (its sender in *from), serving the broker.
static shoal_wire_fetch_t s_fake_ask(s_fake_t *f, shoal_wire_peer_t *from, int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    while (h_now_ms() < deadline) {
        zmq_pollitem_t items[] = {{f->broker, 0, ZMQ_POLLIN, 0}, {f->peer, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 20);
        s_fake_broker(f);
        shoal_wire_in_t in;
        if (shoal_wire_recv(f->peer, true, &in, ZMQ_DONTWAIT) == 0) {
            assert_int_equal(in.msg.type, SHOAL_MSG_fetch);
            shoal_wire_fetch_t req = in.msg.u.fetch;
            *from = in.peer;
            shoal_wire_in_clear(&in);
            return req;
        }
    }
    fail_msg("the fake peer got no ask within %d ms", timeout_ms * h_scale());
    return (shoal_wire_fetch_t){0};
}

//  Answers req as a holder of an object of size bytes with ready of them, pattern 'p'.
static void s_fake_reply(s_fake_t *f, const shoal_wire_peer_t *to, const shoal_wire_fetch_t *req,
                         uint64_t size, uint64_t ready, bool final)
{
    static uint8_t chunk[SHOAL_CHUNK_SIZE];
    memset(chunk, 'p', sizeof chunk);
    uint64_t end = req->offset + req->length < ready ? req->offset + req->length : ready;
    uint64_t n = end > req->offset ? end - req->offset : 0;
    shoal_wire_data_t d = {.seq = req->seq,
                           .ref = req->ref,
                           .size = size,
                           .offset = req->offset,
                           .ready = ready,
                           .final = final && ready == size,
                           .gen = 1};
    assert_int_equal(shoal_wire_send(f->peer, to, SHOAL_MSG_data, &d, n ? chunk : NULL, (size_t)n),
                     0);
}

//  The next ask for ref (asks for other refs are dropped: they are asked again).
static shoal_wire_fetch_t s_fake_ask_for(s_fake_t *f, shoal_ref_t ref, shoal_wire_peer_t *from,
                                         int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            fail_msg("the fake peer got no ask for its object within %d ms", timeout_ms);
        shoal_wire_fetch_t req = s_fake_ask(f, from, (int)(left / h_scale()) + 1);
        if (shoal_ref_equal(req.ref, ref))
            return req;
    }
}

static void s_fake_fail(s_fake_t *f, const shoal_wire_peer_t *to, const shoal_wire_fetch_t *req,
                        int code)
{
    shoal_wire_data_t d = {
        .seq = req->seq, .ref = req->ref, .code = code, .error = "aborted by the test"};
    assert_int_equal(shoal_wire_send(f->peer, to, SHOAL_MSG_data, &d, NULL, 0), 0);
}

//  Waits for the result of task id (serving the broker); returns its status.
static int64_t s_fake_result(s_fake_t *f, shoal_ref_t id, int timeout_ms, const char **error)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    for (;;) {
        for (int i = 0; i < f->n_results; i++)
            if (shoal_ref_equal(f->results[i].id, id)) {
                *error = f->errors[i];
                return f->results[i].status;
            }
        if (h_now_ms() >= deadline)
            fail_msg("no result within %d ms", timeout_ms * h_scale());
        zmq_pollitem_t item = {f->broker, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 20);
        s_fake_broker(f);
    }
}

/*  A consumer pulls its input from the fake writer (its copy is allocated, nothing has
    landed); its producer's next attempt comes to this worker (the writer died): the copy
    gives way to the retry's output, the consumer is lost (requeued by the broker), the
    producer runs. Reverse order: the retry allocates the output while the consumer's
    first ask is on its way, and the consumer is lost when the answer comes, not failed. */
static void test_a_retry_of_the_producer_takes_the_place_of_a_pulled_copy(void **state)
{
    s_fake_t *f = *state;
    char *go = h_fmt(f->c, "%s/retry-go", f->c->tmp);
    assert_int_equal(h_write_file(go, "", 0), 0);
    shoal_ref_t p = shoal_ref_make(99, 1, 0), c1 = shoal_ref_make(99, 2, 0);
    s_fake_dispatch(f, c1, 1, s_copy, NULL, &p);
    shoal_wire_peer_t from;
    shoal_wire_fetch_t probe = s_fake_ask(f, &from, 5000);
    assert_true(probe.flags & SHOAL_FETCH_STREAM);
    s_fake_reply(f, &from, &probe, 2 * MiB, 0, false);
    s_fake_ask(f, &from, 5000); //  c1 runs: its worker asks for the first bytes
    s_fake_dispatch(f, p, 2, s_slowly, go, NULL);
    const char *error;
    int64_t st = s_fake_result(f, p, 10000, &error);
    if (st)
        print_error("producer: %s\n", error);
    assert_int_equal(st, 0);
    st = s_fake_result(f, c1, 10000, &error);
    assert_int_equal(st, SHOAL_ELOST);
    //  Reverse: the probe is answered after the retry allocated the output.
    shoal_ref_t p2 = shoal_ref_make(99, 3, 0), c2 = shoal_ref_make(99, 4, 0);
    char *wait = h_fmt(f->c, "%s/retry-wait", f->c->tmp);
    s_fake_dispatch(f, c2, 1, s_copy, NULL, &p2);
    probe = s_fake_ask(f, &from, 5000);
    s_fake_dispatch(f, p2, 2, s_slowly, wait, NULL);
    int64_t deadline = h_now_ms() + 10000 * h_scale();
    while (!f->n_allocated || !shoal_ref_equal(f->allocated[f->n_allocated - 1], p2)) {
        assert_true(h_now_ms() < deadline);
        zmq_pollitem_t item = {f->broker, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 20);
        s_fake_broker(f);
    }
    s_fake_reply(f, &from, &probe, 2 * MiB, 0, false);
    st = s_fake_result(f, c2, 10000, &error);
    if (st != SHOAL_ELOST)
        print_error("consumer: %s (%s)\n", shoal_strerror((int)st), error);
    assert_int_equal(st, SHOAL_ELOST);
    assert_int_equal(h_write_file(wait, "", 0), 0);
    assert_int_equal(s_fake_result(f, p2, 10000, &error), 0); //  its output was left alone
}

/*  A copy finds no room: it waits for room as an ordinary input does (here the copy of
    another pull goes when its writer aborts it), then pulls; a copy larger than the store
    fails at once, naming the sizes. */
static void test_a_pulled_copy_waits_for_room_and_one_too_big_fails_naming_sizes(void **state)
{
    s_fake_t *f = *state;
    shoal_ref_t a = shoal_ref_make(98, 1, 0), b = shoal_ref_make(98, 2, 0),
                big = shoal_ref_make(98, 3, 0);
    shoal_ref_t c1 = shoal_ref_make(98, 11, 0), c2 = shoal_ref_make(98, 12, 0),
                c3 = shoal_ref_make(98, 13, 0);
    shoal_wire_peer_t from;
    s_fake_dispatch(f, c1, 1, s_copy, NULL, &a);
    shoal_wire_fetch_t req = s_fake_ask_for(f, a, &from, 5000);
    s_fake_reply(f, &from, &req, 20 * MiB, 0, false);
    shoal_wire_fetch_t held = s_fake_ask_for(f, a, &from, 5000); //  c1 runs
    shoal_wire_peer_t held_from = from;
    s_fake_dispatch(f, c2, 1, s_copy, NULL, &b);
    req = s_fake_ask_for(f, b, &from, 5000);
    s_fake_reply(f, &from, &req, 20 * MiB, 0, false); //  no room: 20 of 32 MiB are taken
    const char *error;
    for (int i = 0; i < 10; i++) { //  c2 waits rather than fail
        zmq_pollitem_t item = {f->broker, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 20);
        s_fake_broker(f);
    }
    for (int i = 0; i < f->n_results; i++)
        if (shoal_ref_equal(f->results[i].id, c2))
            fail_msg("c2 failed: %s", f->errors[i]);
    s_fake_fail(f, &held_from, &held, SHOAL_ECANCELED);
    assert_int_equal(s_fake_result(f, c1, 5000, &error), SHOAL_ETASK);
    req = s_fake_ask_for(f, b, &from, 5000); //  c2's copy is allocated: it asks for bytes
    assert_int_equal(req.offset, 0);
    s_fake_dispatch(f, c3, 1, s_copy, NULL, &big);
    req = s_fake_ask_for(f, big, &from, 5000);
    s_fake_reply(f, &from, &req, 1024ull * MiB, 0, false);
    int64_t st = s_fake_result(f, c3, 5000, &error);
    if (st != SHOAL_ETOOBIG || !strstr(error, "1 GiB") || !strstr(error, "32 MiB"))
        print_error("c3: %s: %s\n", shoal_strerror((int)st), error);
    assert_int_equal(st, SHOAL_ETOOBIG);
    assert_non_null(strstr(error, "1 GiB"));
}

/*  A pull keeps its asks in flight (the writer holds them): an ordinary fetch from the
    same writer still gets its requests out. */
static void test_a_pull_leaves_room_for_ordinary_fetches_from_the_same_peer(void **state)
{
    s_fake_t *f = *state;
    shoal_ref_t a = shoal_ref_make(97, 1, 0), sealed = shoal_ref_make(97, 2, 0);
    shoal_ref_t c1 = shoal_ref_make(97, 11, 0), d = shoal_ref_make(97, 12, 0);
    shoal_wire_peer_t from;
    s_fake_dispatch(f, c1, 1, s_copy, NULL, &a);
    shoal_wire_fetch_t req = s_fake_ask_for(f, a, &from, 5000);
    s_fake_reply(f, &from, &req, 12 * MiB, 12 * MiB, false); //  all there: 8 chunk asks
    for (int i = 0; i < 8; i++)
        assert_true(s_fake_ask_for(f, a, &from, 5000).flags & SHOAL_FETCH_STREAM);
    s_fake_dispatch_of(f, d, 1, s_copy, NULL, &sealed, 100);
    req = s_fake_ask_for(f, sealed, &from, 2000);
    assert_false(req.flags & SHOAL_FETCH_STREAM);
}

/*  An ask the writer drops (its stash was full) is asked again after its hold and 2 s:
    the watermark does not freeze while other asks are answered. */
static void test_a_pull_asks_again_for_an_ask_its_writer_dropped(void **state)
{
    s_fake_t *f = *state;
    shoal_ref_t a = shoal_ref_make(96, 1, 0), c1 = shoal_ref_make(96, 11, 0);
    shoal_wire_peer_t from;
    s_fake_dispatch(f, c1, 1, s_copy, NULL, &a);
    shoal_wire_fetch_t req = s_fake_ask_for(f, a, &from, 5000);
    s_fake_reply(f, &from, &req, 3 * MiB, 3 * MiB, false); //  with its first MiB
    shoal_wire_fetch_t x = s_fake_ask_for(f, a, &from, 5000);
    shoal_wire_fetch_t y = s_fake_ask_for(f, a, &from, 5000);
    if (x.offset > y.offset) {
        shoal_wire_fetch_t t = x;
        x = y;
        y = t;
    }
    assert_int_equal(x.offset, MiB); //  dropped
    s_fake_reply(f, &from, &y, 3 * MiB, 3 * MiB, false);
    req = s_fake_ask_for(f, a, &from, 6000); //  asked again
    assert_int_equal(req.offset, MiB);
    s_fake_reply(f, &from, &req, 3 * MiB, 3 * MiB, false);
    req = s_fake_ask_for(f, a, &from, 5000); //  the seal
    assert_int_equal(req.offset, 3 * MiB);
    s_fake_reply(f, &from, &req, 3 * MiB, 3 * MiB, true);
    const char *error;
    int64_t st = s_fake_result(f, c1, 10000, &error);
    if (st)
        print_error("c1: %s\n", error);
    assert_int_equal(st, 0);
}

//  Serves the broker side until the worker has sent two more heartbeats: the store_bytes of
//  the last one is after what the test did before the call.
static uint64_t s_fake_store_bytes(s_fake_t *f)
{
    int want = f->heartbeats + 2;
    int64_t deadline = h_now_ms() + 5000 * h_scale();
    while (f->heartbeats < want) {
        assert_true(h_now_ms() < deadline);
        zmq_pollitem_t item = {f->broker, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 20);
        s_fake_broker(f);
    }
    return f->store_bytes;
}

/*  A consumer canceled while it pulls: its copy is aborted, the store's usage is back to
    what it was. A zero-size input streams to its end; an input sealed already and larger
    than 8 chunks is pulled whole, each chunk asked once it fits the window. */
static void test_a_pull_ends_with_its_consumer_and_reads_empty_and_sealed_inputs(void **state)
{
    s_fake_t *f = *state;
    shoal_ref_t a = shoal_ref_make(95, 1, 0), c1 = shoal_ref_make(95, 11, 0);
    shoal_wire_peer_t from;
    uint64_t before = s_fake_store_bytes(f);
    s_fake_dispatch(f, c1, 1, s_copy, NULL, &a);
    shoal_wire_fetch_t req = s_fake_ask_for(f, a, &from, 5000);
    s_fake_reply(f, &from, &req, 10 * MiB, 0, false);
    s_fake_ask_for(f, a, &from, 5000); //  it runs
    assert_true(s_fake_store_bytes(f) >= before + 10 * MiB);
    shoal_wire_attempt_ref_t at = {.id = c1, .attempt = 1};
    shoal_wire_w_cancel_t cancel = {.tasks = {&at, 1}};
    assert_int_equal(shoal_wire_send(f->broker, &f->w, SHOAL_MSG_w_cancel, &cancel, NULL, 0), 0);
    const char *error;
    assert_int_equal(s_fake_result(f, c1, 5000, &error), SHOAL_ECANCELED);
    uint64_t after = s_fake_store_bytes(f);
    if (after > before + 64 * 1024) //  its output's allocation at most (and the log's)
        fail_msg("the store holds %llu bytes, %llu before", (unsigned long long)after,
                 (unsigned long long)before);
    //  Zero bytes: sized and final in the first reply.
    shoal_ref_t empty = shoal_ref_make(95, 2, 0), c2 = shoal_ref_make(95, 12, 0);
    s_fake_dispatch(f, c2, 1, s_copy, NULL, &empty);
    req = s_fake_ask_for(f, empty, &from, 5000);
    s_fake_reply(f, &from, &req, 0, 0, true);
    int64_t st = s_fake_result(f, c2, 5000, &error);
    if (st)
        print_error("c2: %s\n", error);
    assert_int_equal(st, 0);
    //  Sealed, 12 chunks and a bit: every ask answered as it comes.
    shoal_ref_t sealed = shoal_ref_make(95, 3, 0), c3 = shoal_ref_make(95, 13, 0);
    uint64_t size = 12 * MiB + 77;
    s_fake_dispatch(f, c3, 1, s_copy, NULL, &sealed);
    int64_t deadline = h_now_ms() + 10000 * h_scale();
    for (bool done = false; !done;) {
        assert_true(h_now_ms() < deadline);
        zmq_pollitem_t items[] = {{f->broker, 0, ZMQ_POLLIN, 0}, {f->peer, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 20);
        s_fake_broker(f);
        shoal_wire_in_t in;
        while (shoal_wire_recv(f->peer, true, &in, ZMQ_DONTWAIT) == 0) {
            assert_int_equal(in.msg.type, SHOAL_MSG_fetch);
            if (shoal_ref_equal(in.msg.u.fetch.ref, sealed))
                s_fake_reply(f, &in.peer, &in.msg.u.fetch, size, size, true);
            shoal_wire_in_clear(&in);
        }
        for (int i = 0; i < f->n_results; i++)
            done |= shoal_ref_equal(f->results[i].id, c3);
    }
    st = s_fake_result(f, c3, 10000, &error);
    if (st)
        print_error("c3: %s\n", error);
    assert_int_equal(st, 0);
}

int main(void)
{
    snprintf(s_copy, sizeof s_copy, "%s:stream_copy", SHOAL_TEST_PLUGIN);
    snprintf(s_slowly, sizeof s_slowly, "%s:stream_slowly", SHOAL_TEST_PLUGIN);
    snprintf(s_crash_once, sizeof s_crash_once, "%s:stream_crash_once", SHOAL_TEST_PLUGIN);
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_task_streams_a_put_being_written_on_a_full_worker_from_another),
        cmocka_unit_test(test_a_task_streams_an_output_its_producer_writes_on_the_other_worker),
        cmocka_unit_test(test_a_task_streaming_from_another_worker_fails_naming_an_aborted_input),
        cmocka_unit_test(test_a_command_reads_on_its_stdin_an_output_written_on_the_other_worker),
    };
    const struct CMUnitTest fakes[] = {
        cmocka_unit_test_setup_teardown(
            test_a_retry_of_the_producer_takes_the_place_of_a_pulled_copy, s_fake_setup,
            s_fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_pulled_copy_waits_for_room_and_one_too_big_fails_naming_sizes, s_fake_setup,
            s_fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_pull_leaves_room_for_ordinary_fetches_from_the_same_peer, s_fake_setup,
            s_fake_teardown),
        cmocka_unit_test_setup_teardown(test_a_pull_asks_again_for_an_ask_its_writer_dropped,
                                        s_fake_setup, s_fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_pull_ends_with_its_consumer_and_reads_empty_and_sealed_inputs, s_fake_setup,
            s_fake_teardown),
    };
    int failed = cmocka_run_group_tests(tests, s_setup, h_fixture_stop);
    return failed + cmocka_run_group_tests(fakes, NULL, NULL);
}
