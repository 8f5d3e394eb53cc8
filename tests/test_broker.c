/*  test_broker.c: the real broker, run in a thread, driven over real sockets by a test
    that speaks the protocol as a worker and as a client would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "broker.h"
#include "common.h"
#include "journal.h"
#include "wire.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char dir[64];
    char state_dir[128]; //  DIR/state, once a test restarts the broker with a journal
    char listen[128], events[128];
    pthread_t thread;
    shoal_broker_config_t cfg;
    int rc;
    void *ctx;
    void *socks[64]; //  open test sockets: teardown closes what a failed test left open,
    int n_socks;     //  or zmq_ctx_term would wait for them forever
} fixture_t;

static fixture_t *s_fixture; //  the running test's, for s_close
static void s_close(void *sock);

static void *s_broker_thread(void *arg)
{
    fixture_t *f = arg;
    f->rc = shoal_broker_run(&f->cfg);
    return NULL;
}

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/shoal-test-broker-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->listen, sizeof f->listen, "ipc://%s/b.sock", f->dir);
    snprintf(f->events, sizeof f->events, "ipc://%s/e.sock", f->dir);
    f->cfg = (shoal_broker_config_t){
        .listen = f->listen, .events = f->events, .heartbeat_ms = 100, .dead_after = 10};
    assert_int_equal(pthread_create(&f->thread, NULL, s_broker_thread, f), 0);
    f->ctx = zmq_ctx_new();
    s_fixture = f;
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    while (f->n_socks)
        s_close(f->socks[0]);
    zmq_ctx_term(f->ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(f->rc, 0);
    free(f);
    return 0;
}

//  Messages that arrived before a w_done_ack a test waited for (the broker sends its acks
//  at the end of a loop turn, after that turn's dispatches): s_expect returns them next.
#define S_HELD_MAX 16
static struct {
    void *sock;
    shoal_wire_in_t in;
} s_held[S_HELD_MAX];
static int s_n_held;

static void s_close(void *sock)
{
    fixture_t *f = s_fixture;
    for (int i = 0; i < s_n_held;)
        if (s_held[i].sock == sock) {
            shoal_wire_in_clear(&s_held[i].in);
            s_held[i] = s_held[--s_n_held];
        } else {
            i++;
        }
    for (int i = 0; i < f->n_socks; i++)
        if (f->socks[i] == sock) {
            f->socks[i] = f->socks[--f->n_socks];
            break;
        }
    zmq_close(sock);
}

static void *s_dealer(fixture_t *f)
{
    void *s = zmq_socket(f->ctx, ZMQ_DEALER);
    assert_true(f->n_socks < 64);
    f->socks[f->n_socks++] = s;
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, f->listen), 0);
    return s;
}

//  Receives the next message of type (skipping heartbeats and drops) within timeout_ms.
//  Waiting for a w_done_ack, what comes before it is held for the next calls, in order.
static void s_expect(void *sock, int type, shoal_wire_in_t *in, int timeout_ms)
{
    int64_t deadline = shoal__now_ms() + timeout_ms;
    for (;;) {
        bool held = false;
        for (int i = 0; i < s_n_held && type != SHOAL_MSG_w_done_ack && !held; i++)
            if (s_held[i].sock == sock) {
                *in = s_held[i].in;
                memmove(&s_held[i], &s_held[i + 1], (size_t)(s_n_held - i - 1) * sizeof s_held[0]);
                s_n_held--;
                held = true;
            }
        if (!held) {
            int64_t left = deadline - shoal__now_ms();
            assert_true(left > 0);
            zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, (long)left) < 1)
                continue;
            assert_int_equal(shoal_wire_recv(sock, false, in, 0), 0);
        }
        if (in->msg.type == type)
            return;
        if (in->msg.type == SHOAL_MSG_heartbeat) {
            shoal_wire_in_clear(in);
            continue;
        }
        if (type == SHOAL_MSG_w_done_ack) {
            assert_true(s_n_held < S_HELD_MAX);
            s_held[s_n_held].sock = sock;
            s_held[s_n_held++].in = *in;
            continue;
        }
        if (in->msg.type == SHOAL_MSG_w_drop) {
            shoal_wire_in_clear(in);
            continue;
        }
        fail_msg("expected %s, got %s", shoal_msg_name(type), shoal_msg_name(in->msg.type));
    }
}

//  A worker of one slot that takes capacity tasks at once.
static void *s_worker_of(fixture_t *f, const char *name, uint64_t pid, uint64_t capacity)
{
    void *w = s_dealer(f);
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = (char *)name,
                                  .host = "testhost",
                                  .slots = 1,
                                  .capacity = capacity,
                                  .endpoint = "tcp://127.0.0.1:1",
                                  .pid = pid};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_welcome, &in, 5000);
    assert_int_equal(in.msg.u.w_welcome.code, 0);
    shoal_wire_in_clear(&in);
    return w;
}

static void *s_worker(fixture_t *f, const char *name, uint64_t pid)
{
    return s_worker_of(f, name, pid, 4);
}

static void *s_client(fixture_t *f)
{
    void *c = s_dealer(f);
    shoal_wire_hello_t hello = {.version = SHOAL_PROTO_VERSION, .client_id = 7};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_hello, &hello, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_hello_ok, &in, 5000);
    assert_string_equal(in.msg.u.hello_ok.events, f->events);
    shoal_wire_in_clear(&in);
    return c;
}

static char *s_argv_echo[] = {"echo", "hi", NULL};

static shoal_wire_task_t s_task(uint64_t n, shoal_ref_t *inputs, size_t n_inputs)
{
    return (shoal_wire_task_t){.id = shoal_ref_make(7, n, 0),
                               .kind = SHOAL_KIND_EXEC,
                               .argv = {s_argv_echo, 2},
                               .inputs = {inputs, n_inputs},
                               .n_outputs = 1};
}

static void s_submit(void *c, shoal_wire_task_t *tasks, size_t n, int expect_code)
{
    shoal_wire_submit_t sub = {.seq = 1, .tasks = {tasks, n}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_submit, &sub, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, expect_code);
    shoal_wire_in_clear(&in);
}

static void s_done(void *w, shoal_ref_t id, uint64_t attempt, int64_t status, const char *data)
{
    shoal_wire_output_t out = {.size = data ? strlen(data) : 0,
                               .flags = SHOAL_OUT_INLINE,
                               .data = {(const uint8_t *)data, data ? strlen(data) : 0}};
    shoal_wire_result_t r = {.id = id,
                             .attempt = attempt,
                             .status = status,
                             .exit_code = status ? 3 : 0,
                             .error = status ? "exited with status 3" : NULL,
                             .outputs = {&out, status ? 0 : 1}};
    static uint64_t seq;
    shoal_wire_w_done_t done = {.seq = ++seq, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    assert_int_equal(in.msg.u.w_done_ack.seq, seq);
    shoal_wire_in_clear(&in);
}

//  Stops the fixture's broker and starts it again with the same configuration.
static void s_restart(fixture_t *f)
{
    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    assert_int_equal(f->rc, 0);
    assert_int_equal(pthread_create(&f->thread, NULL, s_broker_thread, f), 0);
}

//  Restarts the fixture's broker with a journal in DIR/state.
static void s_use_state_dir(fixture_t *f)
{
    snprintf(f->state_dir, sizeof f->state_dir, "%s/state", f->dir);
    f->cfg.state_dir = f->state_dir;
    s_restart(f);
}

//  Acks wait for company (S_ACK_HOLD_US, broker.c) but never for long: with nothing else
//  to send, a w_done_ack and a watched submission's ack come within the hold, not at the
//  next heartbeat tick (2 s here). And what the client watches still reaches it.
static void test_held_acks_come_within_the_hold_when_nothing_else_goes(void **state)
{
    fixture_t *f = *state;
    f->cfg.heartbeat_ms = 2000;
    f->cfg.dead_after = 5;
    s_restart(f);
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    //  A submission and a watch on it, back to back: the ack may wait for the statuses.
    shoal_wire_submit_t sub = {.seq = 1, .tasks = {&t, 1}};
    shoal_wire_watch_t watch = {.seq = 2, .refs = {&t.id, 1}};
    int64_t t0 = shoal__now_ms();
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_submit, &sub, NULL, 0), 0);
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, 0);
    assert_true(shoal__now_ms() - t0 < 1000);
    shoal_wire_in_clear(&in);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    uint64_t attempt = in.msg.u.w_dispatch.tasks.items[0].attempt;
    shoal_wire_in_clear(&in);
    //  Nothing else goes to the worker after its result: its ack comes on its own.
    t0 = shoal__now_ms();
    s_done(w, t.id, attempt, 0, "hi");
    assert_true(shoal__now_ms() - t0 < 1000);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_dependent_tasks_run_in_order_with_inputs_inline(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t a_out = shoal_ref_make(7, 1, 0);
    shoal_wire_task_t tasks[2] = {s_task(1, NULL, 0), s_task(2, &a_out, 1)};
    s_submit(c, tasks, 2, 0);
    shoal_ref_t b_out = shoal_ref_make(7, 2, 0);
    shoal_wire_watch_t watch = {.seq = 2, .refs = {&b_out, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);

    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1); //  B waits for A
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, a_out));
    assert_int_equal(in.msg.u.w_dispatch.tasks.items[0].attempt, 1);
    shoal_wire_in_clear(&in);
    s_done(w, a_out, 1, 0, "hello");

    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_dispatch_t *d = &in.msg.u.w_dispatch.tasks.items[0];
    assert_true(shoal_ref_equal(d->task.id, b_out));
    assert_int_equal(d->inputs.count, 1);
    assert_int_equal(d->inputs.items[0].flags & SHOAL_OUT_INLINE, SHOAL_OUT_INLINE);
    assert_memory_equal(d->inputs.items[0].data.data, "hello", 5);
    shoal_wire_in_clear(&in);
    s_done(w, b_out, 1, 0, "world");

    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    shoal_wire_status_t *st = &in.msg.u.statuses.items.items[0];
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->size, 5);
    assert_memory_equal(st->data.data, "world", 5);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_failure_fails_dependents_naming_the_input(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t a_out = shoal_ref_make(7, 1, 0);
    shoal_wire_task_t tasks[2] = {s_task(1, NULL, 0), s_task(2, &a_out, 1)};
    s_submit(c, tasks, 2, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, a_out, 1, SHOAL_ETASK, NULL);

    shoal_ref_t b_out = shoal_ref_make(7, 2, 0);
    shoal_ref_t both[2] = {a_out, b_out};
    shoal_wire_watch_t watch = {.seq = 2, .refs = {both, 2}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    assert_int_equal(in.msg.u.statuses.items.count, 2);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_FAILED);
    assert_int_equal(in.msg.u.statuses.items.items[0].exit_code, 3);
    assert_non_null(strstr(in.msg.u.statuses.items.items[0].error, "exited with status 3"));
    assert_int_equal(in.msg.u.statuses.items.items[1].state, SHOAL_STATE_FAILED);
    char text[SHOAL_REF_TEXT_SIZE];
    assert_non_null(strstr(in.msg.u.statuses.items.items[1].error, shoal_ref_format(a_out, text)));
    shoal_wire_in_clear(&in);

    //  A task submitted later on the failed output fails at once too.
    shoal_wire_task_t late = s_task(3, &a_out, 1);
    s_submit(c, &late, 1, 0);
    shoal_ref_t c_out = shoal_ref_make(7, 3, 0);
    watch.refs = (shoal_wire_refs_t){&c_out, 1};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_FAILED);
    assert_non_null(strstr(in.msg.u.statuses.items.items[0].error, "failed"));
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_silent_worker_is_declared_dead_and_its_task_runs_elsewhere(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    //  w1 now stays silent; w2 joins and keeps talking.
    void *w2 = s_worker(f, "w2", 2);
    int64_t deadline = shoal__now_ms() + 5000;
    bool got = false;
    while (!got && shoal__now_ms() < deadline) {
        shoal_wire_heartbeat_t hb = {0};
        shoal_wire_send(w2, NULL, SHOAL_MSG_heartbeat, &hb, NULL, 0);
        zmq_pollitem_t item = {w2, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 50) < 1)
            continue;
        assert_int_equal(shoal_wire_recv(w2, false, &in, 0), 0);
        if (in.msg.type == SHOAL_MSG_w_dispatch) {
            assert_int_equal(in.msg.u.w_dispatch.tasks.items[0].attempt, 2);
            got = true;
        }
        shoal_wire_in_clear(&in);
    }
    assert_true(got);
    //  A late result from the dead worker's attempt is fenced off: w1 is unknown now.
    shoal_wire_result_t r = {.id = t.id, .attempt = 1};
    shoal_wire_w_done_t done = {.seq = 1, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1, SHOAL_MSG_error, &in, 5000);
    assert_int_equal(in.msg.u.error.code, SHOAL_ESTATE);
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

static void s_output_note(void *w, shoal_ref_t ref, uint64_t size);
static shoal_wire_status_t *s_watch(void *c, shoal_ref_t ref, shoal_wire_in_t *in);

/*  A task on w2 streams an output that its producer writes on w1 (w1 is full): w2 pulls it
    from w1. w1 goes silent: its producer is requeued, and the consumer is stopped on w2
    (w_cancel) and requeued as lost, not failed (its worker would otherwise wait for a
    reply from w1 that never comes, then fail it): it runs again once the producer's next
    attempt has written its output, and reads it anew. */
static void
test_a_task_streaming_an_output_lost_with_its_worker_is_stopped_and_requeued(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker_of(f, "w1", 1, 1);
    void *c = s_client(f);
    shoal_wire_task_t p = s_task(1, NULL, 0);
    s_submit(c, &p, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, p.id));
    shoal_wire_in_clear(&in);
    shoal_ref_t out = shoal_ref_output(p.id, 0);
    s_output_note(w1, out, 0);
    void *w2 = s_worker_of(f, "w2", 2, 1);
    shoal_wire_task_t t = s_task(2, &out, 1);
    t.stream = 1;
    s_submit(c, &t, 1, 0);
    s_expect(w2, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_dispatch_t *d = &in.msg.u.w_dispatch.tasks.items[0];
    assert_true(shoal_ref_equal(d->task.id, t.id));
    assert_int_equal(d->attempt, 1);
    assert_int_equal(d->inputs.items[0].flags, SHOAL_IN_WRITING);
    shoal_wire_in_clear(&in);
    //  w1 stays silent; w2 keeps talking. It is told to stop the consumer, then gets the
    //  producer's next attempt (the consumer no longer takes its only place).
    int64_t deadline = shoal__now_ms() + 5000;
    bool canceled = false, got = false;
    while (!got && shoal__now_ms() < deadline) {
        shoal_wire_heartbeat_t hb = {0};
        shoal_wire_send(w2, NULL, SHOAL_MSG_heartbeat, &hb, NULL, 0);
        zmq_pollitem_t item = {w2, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 50) < 1)
            continue;
        assert_int_equal(shoal_wire_recv(w2, false, &in, 0), 0);
        if (in.msg.type == SHOAL_MSG_w_cancel) {
            assert_int_equal(in.msg.u.w_cancel.tasks.count, 1);
            assert_true(shoal_ref_equal(in.msg.u.w_cancel.tasks.items[0].id, t.id));
            assert_int_equal(in.msg.u.w_cancel.tasks.items[0].attempt, 1);
            canceled = true;
        } else if (in.msg.type == SHOAL_MSG_w_dispatch) {
            assert_true(canceled);
            d = &in.msg.u.w_dispatch.tasks.items[0];
            assert_true(shoal_ref_equal(d->task.id, p.id));
            assert_int_equal(d->attempt, 2);
            got = true;
        }
        shoal_wire_in_clear(&in);
    }
    assert_true(got);
    //  The canceled attempt's result is fenced off; the consumer waits for the producer.
    s_done(w2, t.id, 1, SHOAL_ECANCELED, NULL);
    s_output_note(w2, out, 0);
    s_done(w2, p.id, 2, 0, "bytes");
    s_expect(w2, SHOAL_MSG_w_dispatch, &in, 5000);
    d = &in.msg.u.w_dispatch.tasks.items[0];
    assert_true(shoal_ref_equal(d->task.id, t.id));
    assert_int_equal(d->attempt, 2);
    assert_int_equal(d->inputs.items[0].flags, SHOAL_OUT_INLINE);
    shoal_wire_in_clear(&in);
    s_done(w2, t.id, 2, 0, "done");
    shoal_wire_status_t *st = s_watch(c, t.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

static void test_bad_batches_and_garbage_get_errors_and_the_broker_keeps_serving(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    t.n_outputs = 0;
    s_submit(c, &t, 1, SHOAL_EINVAL);
    //  A task that reads its own output would wait forever: refused.
    shoal_ref_t self_out = t.id;
    shoal_wire_task_t loop = s_task(2, &self_out, 1);
    loop.inputs.items[0] = loop.id;
    s_submit(c, &loop, 1, SHOAL_EINVAL);
    //  Random frames.
    unsigned seed = 99;
    for (int i = 0; i < 200; i++) {
        uint8_t junk[64];
        for (size_t k = 0; k < sizeof junk; k++)
            junk[k] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 16);
        if (i % 2)
            junk[0] = SHOAL_PROTO_VERSION;
        zmq_send(c, junk, (size_t)(i % 64) + 1, 0);
    }
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_error, &in, 5000);
    shoal_wire_in_clear(&in);
    //  Still serving: a hello is answered.
    void *c2 = s_client(f);
    s_close(c2);
    s_close(c);
}

static void test_a_name_taken_by_a_live_worker_is_refused(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker(f, "same", 1);
    void *w2 = s_dealer(f);
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = "same",
                                  .host = "otherhost",
                                  .slots = 1,
                                  .endpoint = "tcp://x:1",
                                  .pid = 2};
    assert_int_equal(shoal_wire_send(w2, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w2, SHOAL_MSG_w_welcome, &in, 5000);
    assert_int_equal(in.msg.u.w_welcome.code, SHOAL_EEXIST);
    assert_non_null(strstr(in.msg.u.w_welcome.error, "taken"));
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
}

static void test_a_restarted_broker_keeps_acknowledged_tasks_and_small_results(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);

    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t a_out = shoal_ref_make(7, 1, 0), b_out = shoal_ref_make(7, 2, 0);
    shoal_wire_task_t tasks[2] = {s_task(1, NULL, 0), s_task(2, &a_out, 1)};
    s_submit(c, tasks, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, a_out, 1, 0, "hello");
    //  B reaches the broker, but no worker has room for it... because w1 leaves first.
    s_close(w);
    s_submit(c, tasks + 1, 1, 0);
    s_close(c);

    s_restart(f);

    c = s_client(f);
    shoal_wire_watch_t watch = {.seq = 1, .refs = {&a_out, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_DONE);
    assert_memory_equal(in.msg.u.statuses.items.items[0].data.data, "hello", 5);
    shoal_wire_in_clear(&in);
    //  B was acknowledged before the restart: a new worker runs it, with A's bytes.
    w = s_worker(f, "w2", 2);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, b_out));
    assert_memory_equal(in.msg.u.w_dispatch.tasks.items[0].inputs.items[0].data.data, "hello", 5);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

/*  ------------------------------------------------------------------------- jobs */

//  A task in job (NULL: none) with an array index.
static shoal_wire_task_t s_job_task(uint64_t n, const char *job, uint64_t index,
                                    shoal_ref_t *inputs, size_t n_inputs)
{
    shoal_wire_task_t t = s_task(n, inputs, n_inputs);
    t.job = (char *)job;
    t.array_index = index;
    return t;
}

//  Asks for the job list and copies the entry of name into *info (found: true).
static bool s_job_info(void *c, const char *name, shoal_wire_job_info_t *info)
{
    static uint64_t seq = 1000;
    shoal_wire_jobs_t req = {.seq = ++seq};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_jobs, &req, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_job_list, &in, 5000);
    assert_int_equal(in.msg.u.job_list.seq, seq);
    bool found = false;
    for (size_t i = 0; i < in.msg.u.job_list.jobs.count; i++) {
        shoal_wire_job_info_t *j = &in.msg.u.job_list.jobs.items[i];
        if (strcmp(j->name, name) == 0) {
            *info = *j;
            info->name = NULL; //  borrowed from the message
            found = true;
        }
    }
    shoal_wire_in_clear(&in);
    return found;
}

static void s_assert_counts(void *c, const char *name, uint64_t waiting, uint64_t ready,
                            uint64_t running, uint64_t done, uint64_t failed, uint64_t canceled)
{
    shoal_wire_job_info_t j;
    assert_true(s_job_info(c, name, &j));
    if (j.waiting != waiting || j.ready != ready || j.running != running || j.done != done ||
        j.failed != failed || j.canceled != canceled)
        fail_msg("job %s: waiting %llu ready %llu running %llu done %llu failed %llu canceled "
                 "%llu, expected %llu %llu %llu %llu %llu %llu",
                 name, (unsigned long long)j.waiting, (unsigned long long)j.ready,
                 (unsigned long long)j.running, (unsigned long long)j.done,
                 (unsigned long long)j.failed, (unsigned long long)j.canceled,
                 (unsigned long long)waiting, (unsigned long long)ready,
                 (unsigned long long)running, (unsigned long long)done, (unsigned long long)failed,
                 (unsigned long long)canceled);
    assert_int_equal(j.total, waiting + ready + running + done + failed + canceled);
}

/*  Asks for the tasks of job; returns the reply's code, and the refs in *in (clear it). */
static int64_t s_job_tasks(void *c, const char *name, uint64_t offset, shoal_wire_in_t *in)
{
    static uint64_t seq = 2000;
    shoal_wire_job_tasks_t req = {.seq = ++seq, .name = (char *)name, .offset = offset};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_job_tasks, &req, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_job_tasks_reply, in, 5000);
    assert_int_equal(in->msg.u.job_tasks_reply.seq, seq);
    return in->msg.u.job_tasks_reply.code;
}

static void test_a_job_counts_its_tasks_through_every_state(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  A and C run at once, B waits for A; D is in no job and E in another.
    shoal_ref_t a = shoal_ref_make(7, 1, 0), b = shoal_ref_make(7, 2, 0);
    shoal_ref_t cc = shoal_ref_make(7, 3, 0);
    shoal_wire_task_t tasks[5] = {s_job_task(1, "j", 0, NULL, 0), s_job_task(2, "j", 0, &a, 1),
                                  s_job_task(3, "j", 0, NULL, 0), s_task(4, NULL, 0),
                                  s_job_task(5, "other", 0, NULL, 0)};
    s_submit(c, tasks, 5, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 4); //  the worker's credit
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "j", 1, 0, 2, 0, 0, 0);
    s_assert_counts(c, "other", 0, 0, 1, 0, 0, 0);

    s_done(w, a, 1, 0, "a"); //  B becomes ready and runs
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, b));
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "j", 0, 0, 2, 1, 0, 0);
    s_done(w, cc, 1, SHOAL_ETASK, NULL);
    s_done(w, b, 1, 0, "b");
    s_assert_counts(c, "j", 0, 0, 0, 2, 1, 0);

    //  Forgotten tasks leave their job; the job goes with its last task.
    shoal_ref_t e = shoal_ref_make(7, 5, 0);
    s_done(w, e, 1, 0, "e");
    shoal_wire_remove_t rm = {.seq = 3, .refs = {&e, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_job_info_t info;
    assert_false(s_job_info(c, "other", &info));
    assert_int_equal(s_job_tasks(c, "other", 0, &in), SHOAL_ENOTFOUND);
    shoal_wire_in_clear(&in);
    rm.refs = (shoal_wire_refs_t){&b, 1};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "j", 0, 0, 0, 1, 1, 0);
    s_close(w);
    s_close(c);
}

static void test_job_tasks_lists_arrays_by_index_and_other_tasks_in_submission_order(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    //  Counters 1..6 with array indices 3, 1, 2, none, 5, 4: the job lists 1 2 3 X 4 5.
    shoal_wire_task_t tasks[6] = {
        s_job_task(1, "arr", 3, NULL, 0), s_job_task(2, "arr", 1, NULL, 0),
        s_job_task(3, "arr", 2, NULL, 0), s_job_task(4, "arr", 0, NULL, 0),
        s_job_task(5, "arr", 5, NULL, 0), s_job_task(6, "arr", 4, NULL, 0)};
    s_submit(c, tasks, 6, 0);
    static const uint64_t want[6] = {2, 3, 1, 4, 6, 5};
    shoal_wire_in_t in;
    assert_int_equal(s_job_tasks(c, "arr", 0, &in), 0);
    assert_int_equal(in.msg.u.job_tasks_reply.total, 6);
    assert_int_equal(in.msg.u.job_tasks_reply.tasks.count, 6);
    for (int i = 0; i < 6; i++)
        assert_true(shoal_ref_equal(in.msg.u.job_tasks_reply.tasks.items[i],
                                    shoal_ref_make(7, want[i], 0)));
    shoal_wire_in_clear(&in);
    //  From an offset, and past the end.
    assert_int_equal(s_job_tasks(c, "arr", 4, &in), 0);
    assert_int_equal(in.msg.u.job_tasks_reply.tasks.count, 2);
    assert_true(shoal_ref_equal(in.msg.u.job_tasks_reply.tasks.items[0], shoal_ref_make(7, 6, 0)));
    shoal_wire_in_clear(&in);
    assert_int_equal(s_job_tasks(c, "arr", 9, &in), 0);
    assert_int_equal(in.msg.u.job_tasks_reply.tasks.count, 0);
    assert_int_equal(in.msg.u.job_tasks_reply.total, 6);
    shoal_wire_in_clear(&in);
    //  A resent batch does not add the tasks twice.
    s_submit(c, tasks, 6, 0);
    s_assert_counts(c, "arr", 0, 6, 0, 0, 0, 0);
    //  An unknown job is an error naming it.
    assert_int_equal(s_job_tasks(c, "no-such-job", 0, &in), SHOAL_ENOTFOUND);
    assert_non_null(strstr(in.msg.u.job_tasks_reply.error, "no-such-job"));
    shoal_wire_in_clear(&in);
    //  A job name longer than SHOAL_JOB_NAME_MAX refuses the batch.
    char long_name[SHOAL_JOB_NAME_MAX + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    shoal_wire_task_t t = s_job_task(7, long_name, 0, NULL, 0);
    s_submit(c, &t, 1, SHOAL_EINVAL);
    s_close(c);
}

static void test_cancel_by_job_cancels_its_unfinished_tasks_and_their_dependents(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  P1..P5 in job c (four run, one stays queued), Q in c waits for P1, S in no job
    //  waits for Q; D is done before the cancel and stays done.
    shoal_ref_t p1 = shoal_ref_make(7, 1, 0), q = shoal_ref_make(7, 6, 0);
    shoal_ref_t s = shoal_ref_make(7, 7, 0), d = shoal_ref_make(7, 8, 0);
    shoal_wire_task_t first = s_job_task(8, "c", 0, NULL, 0);
    s_submit(c, &first, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, d, 1, 0, "d");
    shoal_wire_task_t tasks[7];
    for (int i = 0; i < 5; i++)
        tasks[i] = s_job_task((uint64_t)i + 1, "c", 0, NULL, 0);
    tasks[5] = s_job_task(6, "c", 0, &p1, 1);
    tasks[6] = s_task(7, &q, 1);
    s_submit(c, tasks, 7, 0);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 4);
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "c", 1, 1, 4, 1, 0, 0);

    //  An unknown job: nothing is canceled, the error names it.
    shoal_wire_cancel_t cancel = {.seq = 5, .job = "nope"};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, SHOAL_ENOTFOUND);
    assert_non_null(strstr(in.msg.u.ack.error, "nope"));
    shoal_wire_in_clear(&in);

    cancel = (shoal_wire_cancel_t){.seq = 6, .job = "c"};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, 0);
    assert_int_equal(in.msg.u.ack.count, 6);
    shoal_wire_in_clear(&in);
    //  The worker is told to kill the four it runs.
    for (int i = 0; i < 4; i++) {
        s_expect(w, SHOAL_MSG_w_cancel, &in, 5000);
        shoal_wire_in_clear(&in);
    }
    s_assert_counts(c, "c", 0, 0, 0, 1, 0, 6);
    //  The dependent outside the job is canceled too, naming its input.
    shoal_wire_watch_t watch = {.seq = 7, .refs = {&s, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_CANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    assert_non_null(strstr(in.msg.u.statuses.items.items[0].error, shoal_ref_format(q, text)));
    shoal_wire_in_clear(&in);
    //  A late result of a canceled task changes nothing.
    s_done(w, p1, 1, 0, "late");
    s_assert_counts(c, "c", 0, 0, 0, 1, 0, 6);
    s_close(w);
    s_close(c);
}

static void test_a_worker_lost_and_lineage_reruns_keep_job_counts_exact(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  A's output is big (held by w1 only); B reads it and waits for a free slot.
    shoal_ref_t a = shoal_ref_make(7, 1, 0);
    shoal_wire_task_t ta = s_job_task(1, "l", 0, NULL, 0);
    s_submit(c, &ta, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_output_t out = {.size = 1 << 20}; //  not inline: only w1 holds it
    shoal_wire_result_t r = {.id = a, .attempt = 1, .outputs = {&out, 1}};
    shoal_wire_w_done_t done = {.seq = 100, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "l", 0, 0, 0, 1, 0, 0);
    //  w1 shuts down: A's output is gone, A runs again (lineage), so it is not done.
    shoal_wire_w_bye_t bye = {.reason = "test"};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0), 0);
    shoal_wire_job_info_t info;
    int64_t deadline = shoal__now_ms() + 5000;
    do
        assert_true(s_job_info(c, "l", &info));
    while (info.done && shoal__now_ms() < deadline);
    s_assert_counts(c, "l", 0, 1, 0, 0, 0, 0);
    //  A new worker runs it again.
    void *w2 = s_worker(f, "w2", 2);
    s_expect(w2, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.items[0].attempt, 2);
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "l", 0, 0, 1, 0, 0, 0);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

//  Removes the outputs 0 of tasks 7:n for each n in counters.
static void s_remove(void *c, const uint64_t *counters, size_t n)
{
    shoal_ref_t refs[16];
    for (size_t i = 0; i < n; i++)
        refs[i] = shoal_ref_make(7, counters[i], 0);
    shoal_wire_remove_t rm = {.seq = 9, .refs = {refs, n}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
}

static void s_assert_job_tasks(void *c, const char *name, const uint64_t *counters, size_t n)
{
    shoal_wire_in_t in;
    assert_int_equal(s_job_tasks(c, name, 0, &in), 0);
    assert_int_equal(in.msg.u.job_tasks_reply.total, n);
    assert_int_equal(in.msg.u.job_tasks_reply.tasks.count, n);
    for (size_t i = 0; i < n; i++)
        assert_true(shoal_ref_equal(in.msg.u.job_tasks_reply.tasks.items[i],
                                    shoal_ref_make(7, counters[i], 0)));
    shoal_wire_in_clear(&in);
}

static void test_forgotten_tasks_leave_their_job_which_keeps_its_order(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    //  Ten tasks (no worker: they stay queued), canceled, so that removing their outputs
    //  forgets them.
    shoal_wire_task_t tasks[10];
    for (int i = 0; i < 10; i++)
        tasks[i] = s_job_task((uint64_t)i + 1, "holes", 0, NULL, 0);
    s_submit(c, tasks, 10, 0);
    shoal_wire_cancel_t cancel = {.seq = 8, .job = "holes"};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.count, 10);
    shoal_wire_in_clear(&in);
    //  Holes in the middle (more than half: squeezed out), then at the end.
    s_remove(c, (const uint64_t[]){2, 3, 4, 5, 6, 8}, 6);
    s_assert_job_tasks(c, "holes", (const uint64_t[]){1, 7, 9, 10}, 4);
    s_assert_counts(c, "holes", 0, 0, 0, 0, 0, 4);
    s_remove(c, (const uint64_t[]){10}, 1);
    s_assert_job_tasks(c, "holes", (const uint64_t[]){1, 7, 9}, 3);
    //  New tasks join at the end.
    shoal_wire_task_t more = s_job_task(11, "holes", 0, NULL, 0);
    s_submit(c, &more, 1, 0);
    s_assert_job_tasks(c, "holes", (const uint64_t[]){1, 7, 9, 11}, 4);
    s_assert_counts(c, "holes", 0, 1, 0, 0, 0, 3);
    //  The last task out takes the job with it.
    cancel.seq = 10;
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.count, 1);
    shoal_wire_in_clear(&in);
    s_remove(c, (const uint64_t[]){1, 7, 9, 11}, 4);
    shoal_wire_job_info_t info;
    assert_false(s_job_info(c, "holes", &info));
    s_close(c);
}

static void test_a_restarted_broker_knows_its_jobs_again(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);

    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t a = shoal_ref_make(7, 1, 0);
    shoal_wire_task_t tasks[3] = {s_job_task(1, "keep", 2, NULL, 0),
                                  s_job_task(2, "keep", 1, &a, 1), s_job_task(3, "keep", 3, &a, 1)};
    s_submit(c, tasks, 3, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, a, 1, SHOAL_ETASK, NULL); //  fails its two dependents
    s_assert_counts(c, "keep", 0, 0, 0, 0, 3, 0);
    s_close(w);
    s_close(c);

    s_restart(f);
    c = s_client(f);
    s_assert_counts(c, "keep", 0, 0, 0, 0, 3, 0);
    assert_int_equal(s_job_tasks(c, "keep", 0, &in), 0);
    assert_int_equal(in.msg.u.job_tasks_reply.tasks.count, 3);
    assert_true(shoal_ref_equal(in.msg.u.job_tasks_reply.tasks.items[0], shoal_ref_make(7, 2, 0)));
    assert_true(shoal_ref_equal(in.msg.u.job_tasks_reply.tasks.items[1], a));
    shoal_wire_in_clear(&in);
    s_close(c);
}

static void test_small_results_outlive_their_worker_and_big_ones_are_recomputed(void **state)
{
    //  A worker does not keep what it sends whole: the directory's copy is the only one,
    //  and it survives the worker. A big output lives only on its worker: when that worker
    //  dies, its task runs again.
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t tasks[2] = {s_task(1, NULL, 0), s_task(2, NULL, 0)};
    s_submit(c, tasks, 2, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, tasks[0].id, 1, 0, "small");
    //  The second: 100,000 bytes, not inline (held by w1 only).
    shoal_wire_output_t big = {.size = 100000};
    shoal_wire_result_t r = {.id = tasks[1].id, .attempt = 1, .outputs = {&big, 1}};
    shoal_wire_w_done_t done = {.seq = 99, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_close(w); //  silent from now on: declared dead after 1 s
    void *w2 = s_worker(f, "w2", 2);
    int64_t deadline = shoal__now_ms() + 5000;
    bool rerun = false;
    while (!rerun && shoal__now_ms() < deadline) {
        shoal_wire_heartbeat_t hb = {0};
        shoal_wire_send(w2, NULL, SHOAL_MSG_heartbeat, &hb, NULL, 0);
        zmq_pollitem_t item = {w2, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 50) < 1)
            continue;
        assert_int_equal(shoal_wire_recv(w2, false, &in, 0), 0);
        if (in.msg.type == SHOAL_MSG_w_dispatch) {
            assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, tasks[1].id));
            rerun = true;
        }
        shoal_wire_in_clear(&in);
    }
    assert_true(rerun);
    shoal_wire_watch_t watch = {.seq = 2, .refs = {&tasks[0].id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    shoal_wire_status_t *st = &in.msg.u.statuses.items.items[0];
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_memory_equal(st->data.data, "small", 5);
    assert_null(st->endpoint); //  no worker holds it: the directory's copy is the object
    shoal_wire_in_clear(&in);
    s_close(w2);
    s_close(c);
}

static void test_a_failure_at_the_head_of_a_long_chain_fails_it_all(void **state)
{
    //  30,000 tasks, each reading the previous: failing the head used to recurse once per
    //  task and overflow the stack at about 25,000.
    fixture_t *f = *state;
    enum { N = 30000 };
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t *tasks = calloc(N, sizeof *tasks);
    shoal_ref_t *outs = calloc(N, sizeof *outs);
    for (uint64_t i = 0; i < N; i++) {
        outs[i] = shoal_ref_make(7, i + 1, 0);
        tasks[i] = s_task(i + 1, i ? &outs[i - 1] : NULL, i ? 1 : 0);
    }
    s_submit(c, tasks, N, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, outs[0], 1, SHOAL_ETASK, NULL);
    shoal_wire_watch_t watch = {.seq = 2, .refs = {&outs[N - 1], 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 10000);
    assert_int_equal(in.msg.u.statuses.items.items[0].state, SHOAL_STATE_FAILED);
    char text[SHOAL_REF_TEXT_SIZE];
    assert_non_null(
        strstr(in.msg.u.statuses.items.items[0].error, shoal_ref_format(outs[N - 2], text)));
    shoal_wire_in_clear(&in);
    free(tasks);
    free(outs);
    s_close(w);
    s_close(c);
}

static void test_a_queued_task_canceled_and_removed_is_never_dispatched(void **state)
{
    //  Its ready-queue entry outlives it: the entry must be dropped, not dispatched (this
    //  was a use-after-free once a worker joined).
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0), u = s_task(2, NULL, 0);
    s_submit(c, &t, 1, 0);
    shoal_wire_cancel_t cancel = {.seq = 5, .refs = {&t.id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_remove_t rm = {.seq = 6, .refs = {&t.id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_submit(c, &u, 1, 0);
    void *w = s_worker(f, "w1", 1);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, u.id));
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_removed_input_fails_its_waiting_reader_naming_it(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t a_out = shoal_ref_make(7, 1, 0), b_out = shoal_ref_make(7, 2, 0);
    shoal_wire_task_t a = s_task(1, NULL, 0), b = s_task(2, &a_out, 1);
    b.kind = SHOAL_KIND_FN; //  b stays waiting: no worker can take it while w1 holds a
    b.fn = "lib.so:f";
    s_submit(c, &a, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, a_out, 1, 0, "x");
    s_close(w); //  no worker takes b
    //  b arrives once a is done, then a's output is removed before b runs.
    s_submit(c, &b, 1, 0);
    shoal_wire_remove_t rm = {.seq = 6, .refs = {&a_out, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_watch_t watch = {.seq = 7, .refs = {&b_out, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    //  Queued or dispatched to the closed w1, b is not final, so it fails at once.
    shoal_wire_status_t *st = &in.msg.u.statuses.items.items[0];
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ENOTFOUND);
    assert_non_null(strstr(st->error, "removed"));
    shoal_wire_in_clear(&in);
    s_close(c);
}

/*  ------------------------------------------------------------------------- puts */

//  An inline put of data (a C string) as task 7:n.
static shoal_wire_task_t s_put_inline(uint64_t n, const char *data)
{
    return (shoal_wire_task_t){.id = shoal_ref_make(7, n, 0),
                               .kind = SHOAL_KIND_PUT,
                               .arg = {(const uint8_t *)data, strlen(data)},
                               .n_outputs = 1,
                               .flags = SHOAL_OUT_INLINE};
}

//  A put of size bytes in the store of worker, as task 7:n.
static shoal_wire_task_t s_put_store(uint64_t n, const char *worker, uint64_t size)
{
    return (shoal_wire_task_t){.id = shoal_ref_make(7, n, 0),
                               .kind = SHOAL_KIND_PUT,
                               .n_outputs = 1,
                               .worker = (char *)worker,
                               .size = size};
}

//  Worker w tells the broker what became of ref, a client's put (put: 1) or a task's output
//  (put: 0).
static void s_send_note_of(void *w, shoal_ref_t ref, uint64_t state, uint64_t size,
                           const char *error, uint64_t put)
{
    shoal_wire_object_note_t note = {
        .ref = ref, .state = state, .size = size, .error = (char *)error, .put = put};
    shoal_wire_w_objects_t msg = {.items = {&note, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_objects, &msg, NULL, 0), 0);
}

//  Worker w tells the broker what became of ref, a client's put.
static void s_send_note(void *w, shoal_ref_t ref, uint64_t state, uint64_t size, const char *error)
{
    s_send_note_of(w, ref, state, size, error, 1);
}

//  Waits until the broker has read what w sent (a workers request on the same socket is
//  answered after it): w must expect nothing else meanwhile.
static void s_round_trip(void *w)
{
    static uint64_t seq = 5000;
    shoal_wire_workers_t req = {.seq = ++seq};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_workers, &req, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_worker_list, &in, 5000);
    assert_int_equal(in.msg.u.worker_list.seq, seq);
    shoal_wire_in_clear(&in);
}

//  s_send_note, then waits until the broker has read it.
static void s_note(void *w, shoal_ref_t ref, uint64_t state, uint64_t size, const char *error)
{
    s_send_note(w, ref, state, size, error);
    s_round_trip(w);
}

//  Worker w says its executor allocated ref, an output of a task; waits until it is read.
static void s_output_note(void *w, shoal_ref_t ref, uint64_t size)
{
    s_send_note_of(w, ref, SHOAL_OBJ_NOTE_ALLOCATED, size, NULL, 0);
    s_round_trip(w);
}

//  Watches ref and returns its (final) status in *in: clear it.
static shoal_wire_status_t *s_watch(void *c, shoal_ref_t ref, shoal_wire_in_t *in)
{
    shoal_wire_watch_t watch = {.seq = 3, .refs = {&ref, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_statuses, in, 5000);
    assert_int_equal(in->msg.u.statuses.items.count, 1);
    assert_true(shoal_ref_equal(in->msg.u.statuses.items.items[0].ref, ref));
    return &in->msg.u.statuses.items.items[0];
}

static void s_assert_error_has(const char *error, const char *part)
{
    if (!error || !strstr(error, part))
        fail_msg("expected an error with '%s', got '%s'", part, error ? error : "(null)");
}

static void test_an_inline_put_is_done_at_once_and_its_bytes_come_back_in_the_status(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_inline(1, "small object");
    put.job = "puts";
    s_submit(c, &put, 1, 0);
    s_assert_counts(c, "puts", 0, 0, 0, 1, 0, 0);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->flags & SHOAL_OUT_INLINE, SHOAL_OUT_INLINE);
    assert_int_equal(st->size, 12);
    assert_memory_equal(st->data.data, "small object", 12);
    assert_null(st->worker);
    shoal_wire_in_clear(&in);
    //  An empty object is an object too.
    shoal_wire_task_t empty = s_put_inline(2, "");
    s_submit(c, &empty, 1, 0);
    st = s_watch(c, empty.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->size, 0);
    shoal_wire_in_clear(&in);
    s_close(c);
}

static void test_an_inline_put_over_the_budget_fails_full_naming_the_budget(void **state)
{
    fixture_t *f = *state;
    f->cfg.inline_budget = 100;
    s_restart(f);
    void *c = s_client(f);
    char bytes[61];
    memset(bytes, 'x', 60);
    bytes[60] = '\0';
    shoal_wire_task_t puts[2] = {s_put_inline(1, bytes), s_put_inline(2, bytes)};
    s_submit(c, puts, 2, 0); //  accepted, the second fails
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    st = s_watch(c, puts[1].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_EFULL);
    s_assert_error_has(st->error, "--inline-budget is 100 bytes");
    s_assert_error_has(st->error, "holds 60 bytes");
    s_assert_error_has(st->error, "shoal put --store");
    shoal_wire_in_clear(&in);
    //  Removing the first makes room.
    shoal_wire_remove_t rm = {.seq = 4, .refs = {&puts[0].id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_task_t again = s_put_inline(3, bytes);
    s_submit(c, &again, 1, 0);
    st = s_watch(c, again.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    s_close(c);
}

static void test_a_put_in_a_store_is_running_until_its_worker_seals_it(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 1 << 20);
    put.job = "p";
    s_submit(c, &put, 1, 0);
    s_assert_counts(c, "p", 0, 0, 1, 0, 0, 0);
    s_note(w, put.id, SHOAL_OBJ_NOTE_ALLOCATED, 1 << 20, NULL);
    s_assert_counts(c, "p", 0, 0, 1, 0, 0, 0);
    //  A watcher waits: nothing final yet (the counts' round trip orders watch and seal).
    shoal_wire_watch_t watch = {.seq = 3, .refs = {&put.id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    s_assert_counts(c, "p", 0, 0, 1, 0, 0, 0);
    s_note(w, put.id, SHOAL_OBJ_NOTE_SEALED, 1 << 20, NULL);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    shoal_wire_status_t *st = &in.msg.u.statuses.items.items[0];
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->size, 1 << 20);
    assert_int_equal(st->flags & SHOAL_OUT_INLINE, 0);
    assert_string_equal(st->worker, "w1");
    assert_string_equal(st->endpoint, "tcp://127.0.0.1:1");
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "p", 0, 0, 0, 1, 0, 0);
    //  A put takes none of the worker's credit: it still gets 4 tasks at once.
    shoal_wire_task_t tasks[4] = {s_task(2, NULL, 0), s_task(3, NULL, 0), s_task(4, NULL, 0),
                                  s_task(5, NULL, 0)};
    s_submit(c, tasks, 4, 0);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 4);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_an_aborted_put_is_canceled_naming_it_and_so_is_its_reader(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 4096);
    shoal_wire_task_t reader = s_task(2, &put.id, 1);
    shoal_wire_task_t both[2] = {put, reader};
    s_submit(c, both, 2, 0);
    s_note(w, put.id, SHOAL_OBJ_NOTE_ABORTED, 0, "its writer went silent");
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    //  Canceled, as when the abort comes before the PUT task (see
    //  test_a_put_whose_abort_came_first_is_canceled_when_it_arrives).
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    assert_int_equal(st->code, SHOAL_ECANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    s_assert_error_has(st->error, shoal_ref_format(put.id, text));
    s_assert_error_has(st->error, "aborted: its writer went silent");
    shoal_wire_in_clear(&in);
    st = s_watch(c, reader.id, &in); //  canceled, as the dependents of a canceled task
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    assert_int_equal(st->code, SHOAL_ECANCELED);
    s_assert_error_has(st->error, text);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_note_before_the_put_task_makes_it_and_the_later_put_is_a_duplicate(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_ref_t ref = shoal_ref_make(7, 1, 0);
    //  Allocated: a watcher of the ref waits (it is RUNNING, not unknown).
    s_note(w, ref, SHOAL_OBJ_NOTE_ALLOCATED, 300000, NULL);
    shoal_wire_watch_t watch = {.seq = 3, .refs = {&ref, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_watch, &watch, NULL, 0), 0);
    shoal_wire_job_info_t info;
    assert_false(s_job_info(c, "none", &info)); //  a round trip: the watch is in
    s_note(w, ref, SHOAL_OBJ_NOTE_SEALED, 300000, NULL);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_statuses, &in, 5000);
    shoal_wire_status_t *st = &in.msg.u.statuses.items.items[0];
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->size, 300000);
    assert_string_equal(st->worker, "w1");
    shoal_wire_in_clear(&in);
    //  The client's PUT task comes last: acknowledged, and changes nothing.
    shoal_wire_task_t put = s_put_store(1, "w1", 300000);
    put.job = "late";
    s_submit(c, &put, 1, 0);
    assert_false(s_job_info(c, "late", &info));
    st = s_watch(c, ref, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->worker, "w1");
    shoal_wire_in_clear(&in);
    //  A seal straight away (no allocated note seen) makes a DONE put too.
    shoal_ref_t ref2 = shoal_ref_make(7, 2, 0);
    s_note(w, ref2, SHOAL_OBJ_NOTE_SEALED, 70000, NULL);
    st = s_watch(c, ref2, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->size, 70000);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_task_reading_a_put_waits_for_the_seal_and_finds_it_on_that_worker(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 200000);
    shoal_wire_task_t reader = s_job_task(2, "r", 0, &put.id, 1);
    shoal_wire_task_t both[2] = {put, reader};
    s_submit(c, both, 2, 0);
    s_assert_counts(c, "r", 1, 0, 0, 0, 0, 0);
    s_send_note(w, put.id, SHOAL_OBJ_NOTE_SEALED, 200000, NULL);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    shoal_wire_dispatch_t *d = &in.msg.u.w_dispatch.tasks.items[0];
    assert_true(shoal_ref_equal(d->task.id, reader.id));
    assert_int_equal(d->inputs.count, 1);
    assert_true(shoal_ref_equal(d->inputs.items[0].ref, put.id));
    assert_int_equal(d->inputs.items[0].size, 200000);
    assert_int_equal(d->inputs.items[0].flags & SHOAL_OUT_INLINE, 0);
    assert_string_equal(d->inputs.items[0].worker, "w1");
    assert_string_equal(d->inputs.items[0].endpoint, "tcp://127.0.0.1:1");
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_put_on_a_worker_nobody_knows_fails_unreachable_naming_it(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "nowhere", 100);
    s_submit(c, &put, 1, 0);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_EUNREACH);
    s_assert_error_has(st->error, "'nowhere'");
    shoal_wire_in_clear(&in);
    s_close(c);
}

//  Asks for the workers until name is not among them.
static void s_wait_worker_gone(void *c, const char *name)
{
    int64_t deadline = shoal__now_ms() + 5000;
    for (bool there = true; there;) {
        assert_true(shoal__now_ms() < deadline);
        shoal_wire_workers_t req = {.seq = 77};
        assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_workers, &req, NULL, 0), 0);
        shoal_wire_in_t in;
        s_expect(c, SHOAL_MSG_worker_list, &in, 5000);
        there = false;
        for (size_t i = 0; i < in.msg.u.worker_list.workers.count; i++)
            there = there || strcmp(in.msg.u.worker_list.workers.items[i].name, name) == 0;
        shoal_wire_in_clear(&in);
    }
}

static void test_puts_lost_with_their_worker_fail_and_so_do_their_readers(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  P1 is sealed, P2 is being written; R reads P1 and waits for task A, which never ends.
    shoal_wire_task_t a = s_task(1, NULL, 0);
    shoal_wire_task_t p1 = s_put_store(2, "w1", 100000), p2 = s_put_store(3, "w1", 100000);
    shoal_ref_t r_in[2] = {p1.id, a.id};
    shoal_wire_task_t r = s_task(4, r_in, 2);
    shoal_wire_task_t all[4] = {a, p1, p2, r};
    s_submit(c, all, 4, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000); //  A
    shoal_wire_in_clear(&in);
    s_note(w1, p1.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    shoal_wire_w_bye_t bye = {.reason = "test"};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0), 0);
    s_wait_worker_gone(c, "w1");
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_wire_status_t *st = s_watch(c, p1.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, shoal_ref_format(p1.id, text));
    s_assert_error_has(st->error, "lost with worker w1");
    shoal_wire_in_clear(&in);
    st = s_watch(c, p2.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "lost with worker w1");
    shoal_wire_in_clear(&in);
    st = s_watch(c, r.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, shoal_ref_format(p1.id, text));
    shoal_wire_in_clear(&in);
    //  A put is never run again: a new worker gets A, and only A.
    void *w2 = s_worker(f, "w2", 2);
    s_expect(w2, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, a.id));
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

//  Waits for a w_drop on w that names ref.
static void s_expect_drop(void *w, shoal_ref_t ref)
{
    int64_t deadline = shoal__now_ms() + 5000;
    for (;;) {
        shoal_wire_in_t in;
        s_expect(w, SHOAL_MSG_w_drop, &in, (int)(deadline - shoal__now_ms()));
        bool found = false;
        for (size_t i = 0; i < in.msg.u.w_drop.refs.count; i++)
            found = found || shoal_ref_equal(in.msg.u.w_drop.refs.items[i], ref);
        shoal_wire_in_clear(&in);
        if (found)
            return;
    }
}

static void test_removing_or_canceling_a_put_in_a_store_tells_its_worker_to_drop_it(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t puts[2] = {s_put_store(1, "w1", 100000), s_put_store(2, "w1", 100000)};
    s_submit(c, puts, 2, 0);
    s_note(w, puts[0].id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    //  The sealed one is removed: deleted from the store, forgotten by the broker.
    s_remove(c, (const uint64_t[]){1}, 1);
    s_expect_drop(w, puts[0].id);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_UNKNOWN);
    shoal_wire_in_clear(&in);
    //  The one being written is canceled: the worker aborts it.
    shoal_wire_cancel_t cancel = {.seq = 5, .refs = {&puts[1].id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_cancel, &cancel, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.count, 1);
    shoal_wire_in_clear(&in);
    s_expect_drop(w, puts[1].id);
    //  Its seal, already on its way, is answered by another drop: nobody names it now.
    s_send_note(w, puts[1].id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_expect_drop(w, puts[1].id);
    st = s_watch(c, puts[1].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_seal_that_comes_after_the_release_does_not_bring_the_put_back(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  The client's PUT task and its release arrive before the worker's SEALED note (they
    //  travel on other connections): the put is forgotten, then its note comes.
    shoal_wire_task_t put = s_put_store(1, "w1", 100000);
    s_submit(c, &put, 1, 0);
    shoal_wire_release_t rel = {.seq = 8, .client_id = 7};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_release, &rel, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_expect_drop(w, put.id);
    s_send_note(w, put.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_expect_drop(w, put.id); //  its bytes go, and nothing is made of the note
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_UNKNOWN);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_put_whose_abort_came_first_is_canceled_when_it_arrives(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 100000);
    s_send_note(w, put.id, SHOAL_OBJ_NOTE_ABORTED, 0, "its writer went silent");
    shoal_wire_job_info_t info;
    assert_false(s_job_info(c, "none", &info)); //  a round trip: the note is in
    s_submit(c, &put, 1, 0);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    assert_int_equal(st->code, SHOAL_ECANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    s_assert_error_has(st->error, shoal_ref_format(put.id, text));
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_restarted_broker_keeps_puts_and_never_runs_them(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  Inline; sealed in w1's store; being written into it when the broker stops.
    shoal_wire_task_t puts[3] = {s_put_inline(1, "kept"), s_put_store(2, "w1", 5000),
                                 s_put_store(3, "w1", 6000)};
    s_submit(c, puts, 3, 0);
    s_note(w, puts[1].id, SHOAL_OBJ_NOTE_SEALED, 5000, NULL);
    s_close(w);
    s_close(c);
    s_restart(f);

    c = s_client(f);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_memory_equal(st->data.data, "kept", 4);
    shoal_wire_in_clear(&in);
    //  w1 comes back holding both: the one being written was sealed meanwhile.
    w = s_dealer(f);
    shoal_ref_t held[2] = {puts[1].id, puts[2].id};
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = "w1",
                                  .host = "testhost",
                                  .slots = 1,
                                  .capacity = 4,
                                  .endpoint = "tcp://127.0.0.1:1",
                                  .pid = 9,
                                  .held = {held, 2}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_welcome, &in, 5000);
    assert_int_equal(in.msg.u.w_welcome.code, 0);
    shoal_wire_in_clear(&in);
    for (int i = 1; i < 3; i++) {
        st = s_watch(c, puts[i].id, &in);
        assert_int_equal(st->state, SHOAL_STATE_DONE);
        assert_int_equal(st->size, i == 1 ? 5000 : 6000);
        assert_string_equal(st->worker, "w1");
        shoal_wire_in_clear(&in);
    }
    //  The first dispatch holds the one task that reads them, and no put.
    shoal_wire_task_t reader = s_task(4, held, 2);
    s_submit(c, &reader, 1, 0);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, reader.id));
    assert_string_equal(in.msg.u.w_dispatch.tasks.items[0].inputs.items[1].worker, "w1");
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

/*  ------------------------------------------------------------------------- ttl */

static void test_a_ttl_removes_a_done_tasks_outputs_once_it_expires(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    t.ttl_ms = 300;
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.items[0].task.ttl_ms, 300);
    shoal_wire_in_clear(&in);
    int64_t done_at = shoal__now_ms();
    s_done(w, t.id, 1, 0, "short-lived");
    shoal_wire_status_t *st = s_watch(c, t.id, &in);
    bool early = shoal__now_ms() - done_at < 250;
    if (early) //  a slow machine may take longer than the ttl to answer
        assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    //  Gone after the ttl: its output and the task itself (an inline put's too).
    shoal_wire_task_t put = s_put_inline(2, "bytes");
    put.ttl_ms = 1;
    s_submit(c, &put, 1, 0);
    int64_t deadline = shoal__now_ms() + 5000;
    uint64_t state_t, state_put;
    do {
        st = s_watch(c, t.id, &in);
        state_t = st->state;
        shoal_wire_in_clear(&in);
        st = s_watch(c, put.id, &in);
        state_put = st->state;
        shoal_wire_in_clear(&in);
    } while ((state_t != SHOAL_STATE_UNKNOWN || state_put != SHOAL_STATE_UNKNOWN) &&
             shoal__now_ms() < deadline);
    assert_int_equal(state_t, SHOAL_STATE_UNKNOWN);
    assert_int_equal(state_put, SHOAL_STATE_UNKNOWN);
    if (early)
        assert_true(shoal__now_ms() - done_at >= 300);
    s_close(w);
    s_close(c);
}

//  An event's map, unpacked from a copy of its body (the map's strings point into it).
typedef struct {
    msgpack_unpacked u;
    char *body;
} s_ev_t;

static void s_ev_free(s_ev_t *ev)
{
    msgpack_unpacked_destroy(&ev->u);
    free(ev->body);
}

//  A SUB socket on the broker's events, subscribed to prefix (and to broker.stats, whose
//  first arrival says the subscriptions are in place).
static void *s_subscriber(fixture_t *f, const char *prefix);
//  Waits for the next event of topic; returns its map in *ev (s_ev_free it).
static void s_expect_event(void *sub, const char *topic, s_ev_t *ev, int timeout_ms);
//  The value of key in the event map, or NULL.
static msgpack_object *s_field(s_ev_t *ev, const char *key);

static void test_a_task_removed_before_its_ttl_leaves_nothing_behind(void **state)
{
    fixture_t *f = *state;
    void *sub = s_subscriber(f, "broker.stats");
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    t.ttl_ms = 400;
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, t.id, 1, 0, "x");
    s_remove(c, (const uint64_t[]){1}, 1);
    //  The same id again, without a ttl: the old deadline must not touch it.
    t.ttl_ms = 0;
    s_submit(c, &t, 1, 0);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w, t.id, 1, 0, "y");
    //  Past the old deadline, the heap holds nothing (the stale entry was popped).
    int64_t deadline = shoal__now_ms() + 5000, pending;
    do {
        s_ev_t ev;
        s_expect_event(sub, "broker.stats", &ev, 5000);
        pending = s_field(&ev, "ttl_pending")->via.i64;
        s_ev_free(&ev);
    } while (pending && shoal__now_ms() < deadline);
    assert_int_equal(pending, 0);
    shoal_wire_status_t *st = s_watch(c, t.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_memory_equal(st->data.data, "y", 1);
    shoal_wire_in_clear(&in);
    s_close(sub);
    s_close(w);
    s_close(c);
}

/*  ----------------------------------------------------------------------- events */

static void *s_subscriber(fixture_t *f, const char *prefix)
{
    void *s = zmq_socket(f->ctx, ZMQ_SUB);
    assert_true(f->n_socks < 64);
    f->socks[f->n_socks++] = s;
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefix, strlen(prefix)), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_SUBSCRIBE, "broker.stats", 12), 0);
    assert_int_equal(zmq_connect(s, f->events), 0);
    //  broker.stats comes every heartbeat (100 ms): once one arrives, the broker has read
    //  both subscriptions (in order, on one pipe).
    s_ev_t ev;
    s_expect_event(s, "broker.stats", &ev, 5000);
    s_ev_free(&ev);
    return s;
}

static void s_expect_event(void *sub, const char *topic, s_ev_t *ev, int timeout_ms)
{
    int64_t deadline = shoal__now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - shoal__now_ms();
        if (left <= 0)
            fail_msg("no %s event within %d ms", topic, timeout_ms);
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) < 1)
            continue;
        char name[64];
        int n = zmq_recv(sub, name, sizeof name - 1, 0);
        assert_true(n > 0);
        name[SHOAL__MIN(n, (int)sizeof name - 1)] = '\0';
        zmq_msg_t body;
        zmq_msg_init(&body);
        assert_true(zmq_msg_recv(&body, sub, 0) >= 0);
        if (strcmp(name, topic) == 0) {
            size_t size = zmq_msg_size(&body), off = 0;
            ev->body = malloc(size ? size : 1);
            memcpy(ev->body, zmq_msg_data(&body), size);
            zmq_msg_close(&body);
            msgpack_unpacked_init(&ev->u);
            assert_int_equal(msgpack_unpack_next(&ev->u, ev->body, size, &off),
                             MSGPACK_UNPACK_SUCCESS);
            assert_int_equal(ev->u.data.type, MSGPACK_OBJECT_MAP);
            return;
        }
        zmq_msg_close(&body);
    }
}

static msgpack_object *s_field(s_ev_t *ev, const char *key)
{
    msgpack_object_map *map = &ev->u.data.via.map;
    for (uint32_t i = 0; i < map->size; i++) {
        msgpack_object *k = &map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->ptr[i].val;
    }
    return NULL;
}

static void s_assert_str_field(s_ev_t *ev, const char *key, const char *want)
{
    msgpack_object *v = s_field(ev, key);
    assert_non_null(v);
    if (!want) {
        assert_int_equal(v->type, MSGPACK_OBJECT_NIL);
        return;
    }
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    if (v->via.str.size != strlen(want) || memcmp(v->via.str.ptr, want, strlen(want)) != 0)
        fail_msg("%s: expected '%s', got '%.*s'", key, want, (int)v->via.str.size, v->via.str.ptr);
}

//  Expects topic about ref (skipping those about other refs), from worker (NULL: nil), of
//  size bytes, for reason (NULL: none).
static void s_expect_object_event(void *sub, const char *topic, shoal_ref_t ref, const char *worker,
                                  uint64_t size, const char *reason)
{
    char text[SHOAL_REF_TEXT_SIZE];
    shoal_ref_format(ref, text);
    s_ev_t ev;
    int64_t deadline = shoal__now_ms() + 5000;
    for (;;) {
        s_expect_event(sub, topic, &ev, (int)SHOAL__MAX(deadline - shoal__now_ms(), 1));
        msgpack_object *v = s_field(&ev, "ref");
        assert_non_null(v);
        if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 32 &&
            memcmp(v->via.str.ptr, text, 32) == 0)
            break;
        s_ev_free(&ev);
    }
    s_assert_str_field(&ev, "worker", worker);
    assert_non_null(s_field(&ev, "size"));
    assert_int_equal(s_field(&ev, "size")->via.u64, size);
    if (reason)
        s_assert_str_field(&ev, "reason", reason);
    else
        assert_null(s_field(&ev, "reason"));
    s_ev_free(&ev);
}

static void test_object_events_tell_a_subscriber_of_allocations_seals_and_deletions(void **state)
{
    fixture_t *f = *state;
    void *sub = s_subscriber(f, "object.");
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  A put: allocated, then sealed.
    shoal_ref_t put = shoal_ref_make(7, 1, 0);
    s_note(w, put, SHOAL_OBJ_NOTE_ALLOCATED, 100000, NULL);
    s_expect_object_event(sub, "object.allocated", put, "w1", 100000, NULL);
    s_note(w, put, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_expect_object_event(sub, "object.sealed", put, "w1", 100000, NULL);
    //  A task's big output: allocated by its executor, sealed with its result; its small
    //  output is inline, so no seal is published for it.
    shoal_wire_task_t t = s_task(2, NULL, 0);
    t.n_outputs = 2;
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_ref_t big = shoal_ref_output(t.id, 1);
    s_output_note(w, big, 500000);
    s_expect_object_event(sub, "object.allocated", big, "w1", 500000, NULL);
    shoal_wire_output_t outs[2] = {
        {.size = 2, .flags = SHOAL_OUT_INLINE, .data = {(const uint8_t *)"ok", 2}},
        {.size = 500000}};
    shoal_wire_result_t r = {.id = t.id, .attempt = 1, .outputs = {outs, 2}};
    shoal_wire_w_done_t done = {.seq = 77, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_expect_object_event(sub, "object.sealed", big, "w1", 500000, NULL);
    //  Removed, released, expired.
    s_remove(c, (const uint64_t[]){1}, 1);
    s_expect_object_event(sub, "object.deleted", put, "w1", 100000, "removed");
    shoal_wire_release_t rel = {.seq = 8, .client_id = 7};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_release, &rel, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_expect_object_event(sub, "object.deleted", t.id, NULL, 2, "released");
    s_expect_object_event(sub, "object.deleted", big, "w1", 500000, "released");
    shoal_wire_task_t brief = s_put_inline(3, "soon gone");
    brief.ttl_ms = 50;
    s_submit(c, &brief, 1, 0);
    s_expect_object_event(sub, "object.deleted", brief.id, NULL, 9, "expired");
    s_close(sub);
    s_close(w);
    s_close(c);
}

/*  ------------------------------------------------------------------ bad input */

static void test_notes_that_make_no_sense_are_counted_and_ignored(void **state)
{
    fixture_t *f = *state;
    void *sub = s_subscriber(f, "broker.stats");
    void *w1 = s_worker(f, "w1", 1);
    void *w2 = s_worker(f, "w2", 2);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 1000);
    put.job = "n";
    shoal_wire_task_t fn = s_task(2, NULL, 0); //  dispatched to w1, which never ends it
    fn.kind = SHOAL_KIND_FN;
    fn.fn = "lib.so:f";
    fn.n_outputs = 2;
    shoal_wire_task_t both[2] = {put, fn};
    s_submit(c, both, 2, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_ref_t running = in.msg.u.w_dispatch.tasks.items[0].task.id; //  the fn task, on w1
    shoal_wire_in_clear(&in);
    //  Seven notes that make no sense:
    s_note(w2, put.id, SHOAL_OBJ_NOTE_SEALED, 1000, NULL); //  another worker's put
    s_note(w1, shoal_ref_make(7, 99, 3), SHOAL_OBJ_NOTE_ALLOCATED, 1, NULL);     //  no such task
    s_note(w1, shoal_ref_output(put.id, 1), SHOAL_OBJ_NOTE_SEALED, 1, NULL);     //  a put has one
    s_note(w1, shoal_ref_output(running, 1), SHOAL_OBJ_NOTE_SEALED, 1, NULL);    //  results say so
    s_note(w2, shoal_ref_output(running, 1), SHOAL_OBJ_NOTE_ALLOCATED, 1, NULL); //  not w2's
    s_note(w1, shoal_ref_output(running, 5), SHOAL_OBJ_NOTE_ALLOCATED, 1, NULL); //  no output 5
    s_note(w1, put.id, 42, 1000, NULL);                                          //  no state 42
    //  A put's result from a worker: there is none, a put never runs.
    shoal_wire_result_t r = {.id = put.id};
    shoal_wire_w_done_t done = {.seq = 31, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    int64_t deadline = shoal__now_ms() + 5000, malformed;
    do {
        s_ev_t ev;
        s_expect_event(sub, "broker.stats", &ev, 5000);
        malformed = s_field(&ev, "malformed")->via.i64;
        s_ev_free(&ev);
    } while (malformed < 8 && shoal__now_ms() < deadline);
    assert_int_equal(malformed, 8);
    //  Nothing changed: the put still runs on w1, which seals it.
    s_assert_counts(c, "n", 0, 0, 1, 0, 0, 0);
    s_note(w1, put.id, SHOAL_OBJ_NOTE_SEALED, 1000, NULL);
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->worker, "w1");
    shoal_wire_in_clear(&in);
    //  A note from a worker the broker does not know is refused like its other messages.
    void *stranger = s_dealer(f);
    shoal_wire_object_note_t note = {.ref = put.id, .state = SHOAL_OBJ_NOTE_SEALED};
    shoal_wire_w_objects_t msg = {.items = {&note, 1}};
    assert_int_equal(shoal_wire_send(stranger, NULL, SHOAL_MSG_w_objects, &msg, NULL, 0), 0);
    s_expect(stranger, SHOAL_MSG_error, &in, 5000);
    assert_int_equal(in.msg.u.error.code, SHOAL_ESTATE);
    shoal_wire_in_clear(&in);
    s_close(stranger);
    s_close(sub);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

//  Submits t and expects the batch refused with SHOAL_EINVAL and an error holding part.
static void s_refused(void *c, shoal_wire_task_t *t, const char *part)
{
    shoal_wire_submit_t sub = {.seq = 1, .tasks = {t, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_submit, &sub, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, SHOAL_EINVAL);
    s_assert_error_has(in.msg.u.ack.error, part);
    shoal_wire_in_clear(&in);
}

static void test_bad_tags_and_bad_puts_refuse_the_batch_naming_what_is_wrong(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    char long_tag[SHOAL_TAG_MAX + 2];
    memset(long_tag, 'q', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    char *tags[SHOAL_TAGS_MAX + 1];
    for (int i = 0; i <= SHOAL_TAGS_MAX; i++)
        tags[i] = "ok";
    shoal_wire_task_t t = s_task(1, NULL, 0);
    tags[1] = long_tag;
    t.tags = (shoal_wire_strs_t){tags, 2};
    s_refused(c, &t, long_tag);
    tags[1] = "";
    s_refused(c, &t, "tag 1 is empty");
    tags[1] = "ok";
    t.tags.count = SHOAL_TAGS_MAX + 1;
    s_refused(c, &t, "at most 16 tags");
    //  Puts: on every kind alike.
    shoal_wire_task_t put = s_put_inline(2, "x");
    put.tags = (shoal_wire_strs_t){(char *[]){long_tag}, 1};
    s_refused(c, &put, long_tag);
    put = s_put_store(2, NULL, 10);
    s_refused(c, &put, "names the worker");
    put = s_put_store(2, "w1", 10);
    put.inputs = (shoal_wire_refs_t){&t.id, 1};
    s_refused(c, &put, "no inputs and one output");
    static char big[SHOAL_INLINE_MAX + 2];
    memset(big, 'b', sizeof big - 1);
    put = s_put_inline(2, big);
    s_refused(c, &put, "at most 65536 bytes");
    //  Good tags are kept and go with the task to its worker.
    t.tags.count = SHOAL_TAGS_MAX;
    s_submit(c, &t, 1, 0);
    void *w = s_worker(f, "w1", 1);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_task_t *sent = &in.msg.u.w_dispatch.tasks.items[0].task;
    assert_int_equal(sent->tags.count, SHOAL_TAGS_MAX);
    assert_string_equal(sent->tags.items[SHOAL_TAGS_MAX - 1], "ok");
    assert_int_equal(sent->argv.count, 2);
    assert_string_equal(sent->argv.items[1], "hi");
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_the_workers_reply_names_each_workers_store_dir_and_arena(void **state)
{
    fixture_t *f = *state;
    void *old = s_worker(f, "old", 1); //  says neither
    void *w = s_dealer(f);
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = "new",
                                  .host = "testhost",
                                  .slots = 1,
                                  .endpoint = "tcp://127.0.0.1:2",
                                  .pid = 2,
                                  .store_dir = "/var/lib/shoal/new",
                                  .arena = "/dev/shm/shoal-new"};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_welcome, &in, 5000);
    assert_int_equal(in.msg.u.w_welcome.code, 0);
    shoal_wire_in_clear(&in);
    void *c = s_client(f);
    shoal_wire_workers_t req = {.seq = 1};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_workers, &req, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_worker_list, &in, 5000);
    assert_int_equal(in.msg.u.worker_list.workers.count, 2);
    for (size_t i = 0; i < 2; i++) {
        shoal_wire_worker_info_t *wi = &in.msg.u.worker_list.workers.items[i];
        if (strcmp(wi->name, "new") == 0) {
            assert_string_equal(wi->store_dir, "/var/lib/shoal/new");
            assert_string_equal(wi->arena, "/dev/shm/shoal-new");
        } else {
            assert_null(wi->store_dir);
            assert_null(wi->arena);
        }
    }
    shoal_wire_in_clear(&in);
    s_close(old);
    s_close(w);
    s_close(c);
}

/*  ------------------------------------------------------------------------ queries */

//  Sends a query and returns its reply in *in (clear it). NULL filters: any.
static shoal_wire_query_reply_t *s_query(void *c, const char *name_glob, const char *tag,
                                         const char *worker, const char *job, uint64_t limit,
                                         shoal_wire_in_t *in)
{
    static uint64_t seq = 9000;
    shoal_wire_query_t q = {.seq = ++seq,
                            .name_glob = (char *)name_glob,
                            .tag = (char *)tag,
                            .worker = (char *)worker,
                            .job = (char *)job,
                            .limit = limit};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_query, &q, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_query_reply, in, 5000);
    shoal_wire_query_reply_t *r = &in->msg.u.query_reply;
    assert_int_equal(r->seq, seq);
    assert_int_equal(r->code, 0);
    return r;
}

//  The reply lists exactly refs, in this order, and counts more left out.
static void s_assert_listed(const shoal_wire_query_reply_t *r, const shoal_ref_t *refs, size_t n,
                            uint64_t more)
{
    char a[SHOAL_REF_TEXT_SIZE], b[SHOAL_REF_TEXT_SIZE];
    if (r->objects.count != n)
        fail_msg("listed %zu objects, expected %zu", r->objects.count, n);
    for (size_t i = 0; i < n; i++)
        if (!shoal_ref_equal(r->objects.items[i].ref, refs[i]))
            fail_msg("object %zu is %s, expected %s", i,
                     shoal_ref_format(r->objects.items[i].ref, a), shoal_ref_format(refs[i], b));
    assert_int_equal(r->more, more);
}

//  w finishes task id (attempt 1) with two outputs: a small one inline ("small"), and
//  one of 100,000 bytes that w keeps in its store.
static void s_done_two(void *w, shoal_ref_t id)
{
    shoal_wire_output_t outs[2] = {
        {.size = 5, .flags = SHOAL_OUT_INLINE, .data = {(const uint8_t *)"small", 5}},
        {.size = 100000},
    };
    shoal_wire_result_t r = {.id = id,
                             .attempt = 1,
                             .outputs = {outs, 2},
                             .log_size = 3,
                             .log_tail = {(const uint8_t *)"log", 3}};
    shoal_wire_w_done_t done = {.seq = 77, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
}

static void test_a_query_lists_objects_by_name_glob_tag_worker_and_job(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  A task of job "jg" named "gamma" with two outputs, done on w1 (its log and a
    //  failed task's outputs are never listed).
    shoal_wire_task_t task = s_job_task(1, "jg", 0, NULL, 0);
    task.name = "gamma";
    task.n_outputs = 2;
    s_submit(c, &task, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done_two(w1, task.id);
    shoal_wire_task_t failing = s_job_task(2, "jg", 0, NULL, 0);
    failing.name = "gamma";
    s_submit(c, &failing, 1, 0);
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done(w1, failing.id, 1, SHOAL_ETASK, NULL);
    //  Puts: two inline, one in w2's store.
    void *w2 = s_worker(f, "w2", 2);
    shoal_wire_task_t p1 = s_put_inline(3, "one");
    p1.name = "alpha-1";
    p1.tags = (shoal_wire_strs_t){(char *[]){"red", "big"}, 2};
    shoal_wire_task_t p2 = s_put_inline(4, "two");
    p2.name = "alpha-2";
    p2.tags = (shoal_wire_strs_t){(char *[]){"blue"}, 1};
    shoal_wire_task_t p3 = s_put_store(5, "w2", 70000);
    p3.name = "beta";
    p3.tags = (shoal_wire_strs_t){(char *[]){"red"}, 1};
    shoal_wire_task_t puts[3] = {p1, p2, p3};
    s_submit(c, puts, 3, 0);
    s_note(w2, p3.id, SHOAL_OBJ_NOTE_SEALED, 70000, NULL);
    shoal_ref_t out0 = task.id, out1 = shoal_ref_output(task.id, 1);

    //  Everything, oldest first.
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){out0, out1, p1.id, p2.id, p3.id}, 5, 0);
    shoal_wire_object_info_t *o = &r->objects.items[0];
    assert_string_equal(o->name, "gamma");
    assert_int_equal(o->tags.count, 0);
    assert_int_equal(o->size, 5);
    assert_int_equal(o->state, SHOAL_OBJECT_SEALED);
    assert_null(o->worker); //  inline in the directory
    assert_true(shoal_ref_equal(o->task, task.id));
    o = &r->objects.items[1];
    assert_int_equal(o->size, 100000);
    assert_string_equal(o->worker, "w1");
    assert_true(shoal_ref_equal(o->task, task.id));
    o = &r->objects.items[2];
    assert_string_equal(o->name, "alpha-1");
    assert_int_equal(o->tags.count, 2);
    assert_string_equal(o->tags.items[0], "red");
    assert_string_equal(o->tags.items[1], "big");
    assert_int_equal(o->size, 3);
    assert_true(shoal_ref_equal(o->task, p1.id)); //  a put is its own task
    o = &r->objects.items[4];
    assert_string_equal(o->worker, "w2");
    assert_int_equal(o->size, 70000);
    assert_int_equal(o->state, SHOAL_OBJECT_PERSISTED); //  named, in a worker's store
    assert_true(o->age_ms < 60000);
    shoal_wire_in_clear(&in);
    //  Each filter, and filters together.
    r = s_query(c, "alpha-*", NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p1.id, p2.id}, 2, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, "?amma", NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){out0, out1}, 2, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, "red", NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p1.id, p3.id}, 2, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, "re", NULL, NULL, 0, &in); //  a tag matches exactly
    s_assert_listed(r, NULL, 0, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, NULL, "w1", NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){out1}, 1, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, NULL, "w2", NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p3.id}, 1, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, NULL, NULL, "jg", 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){out0, out1}, 2, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, "alpha-*", "blue", NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p2.id}, 1, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, "alpha-*", "red", "w2", NULL, 0, &in);
    s_assert_listed(r, NULL, 0, 0);
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, NULL, NULL, "no such job", 0, &in);
    s_assert_listed(r, NULL, 0, 0);
    shoal_wire_in_clear(&in);
    //  "" is no filter, as NULL.
    r = s_query(c, "", "", "", "", 0, &in);
    assert_int_equal(r->objects.count, 5);
    shoal_wire_in_clear(&in);
    //  A removed object is gone from listings.
    shoal_wire_remove_t rm = {.seq = 8, .refs = {&p1.id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    r = s_query(c, "alpha-*", NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p2.id}, 1, 0);
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

static void test_a_query_lists_the_oldest_up_to_its_limit_and_counts_the_rest(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t puts[5];
    for (int i = 0; i < 5; i++) {
        puts[i] = s_put_inline((uint64_t)i + 1, "x");
        puts[i].name = "many";
    }
    s_submit(c, puts, 3, 0);
    s_submit(c, puts + 3, 2, 0);
    shoal_wire_in_t in;
    shoal_wire_query_reply_t *r = s_query(c, "many", NULL, NULL, NULL, 2, &in);
    s_assert_listed(r, (shoal_ref_t[]){puts[0].id, puts[1].id}, 2, 3);
    shoal_wire_in_clear(&in);
    r = s_query(c, "many", NULL, NULL, NULL, 4, &in);
    s_assert_listed(r, (shoal_ref_t[]){puts[0].id, puts[1].id, puts[2].id, puts[3].id}, 4, 1);
    shoal_wire_in_clear(&in);
    //  A limit past the cap is the cap.
    r = s_query(c, "many", NULL, NULL, NULL, UINT64_MAX, &in);
    assert_int_equal(r->objects.count, 5);
    assert_int_equal(r->more, 0);
    shoal_wire_in_clear(&in);
    s_close(c);
}

static void test_a_put_being_written_is_listed_allocated_on_its_worker(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 1 << 20);
    put.name = "partial";
    s_submit(c, &put, 1, 0);
    s_note(w, put.id, SHOAL_OBJ_NOTE_ALLOCATED, 1 << 20, NULL);
    shoal_wire_in_t in;
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, "w1", NULL, 0, &in);
    s_assert_listed(r, &put.id, 1, 0);
    shoal_wire_object_info_t *o = &r->objects.items[0];
    assert_int_equal(o->state, SHOAL_OBJECT_ALLOCATED);
    assert_int_equal(o->size, 1 << 20);
    assert_string_equal(o->worker, "w1");
    assert_string_equal(o->name, "partial");
    assert_true(shoal_ref_equal(o->task, put.id));
    shoal_wire_in_clear(&in);
    //  A task still running has no object to list; a put made from a note does.
    s_submit(c, (shoal_wire_task_t[]){s_task(2, NULL, 0)}, 1, 0);
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_ref_t early = shoal_ref_make(7, 3, 0);
    s_note(w, early, SHOAL_OBJ_NOTE_ALLOCATED, 4096, NULL);
    r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){put.id, early}, 2, 0);
    assert_int_equal(r->objects.items[1].state, SHOAL_OBJECT_ALLOCATED);
    shoal_wire_in_clear(&in);
    //  Sealed, it is listed persisted (named, in a worker's store), with the size the seal
    //  gave.
    s_note(w, put.id, SHOAL_OBJ_NOTE_SEALED, 1000, NULL);
    r = s_query(c, "partial", NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, &put.id, 1, 0);
    assert_int_equal(r->objects.items[0].state, SHOAL_OBJECT_PERSISTED);
    assert_int_equal(r->objects.items[0].size, 1000);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_names_that_look_like_refs_are_refused_naming_them(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t t = s_task(1, NULL, 0);
    t.name = "0123456789abcdef0123456789abcdef";
    s_refused(c, &t, "name '0123456789abcdef0123456789abcdef' looks like a ref");
    shoal_wire_task_t put = s_put_inline(2, "x");
    put.name = "0123456789ABCDEF0123456789ABCDEF"; //  either case
    s_refused(c, &put, "put ");
    s_refused(c, &put, "0123456789ABCDEF0123456789ABCDEF");
    //  Not 32 hex digits: fine.
    t.name = "0123456789abcdef0123456789abcdeg";
    put.name = "0123456789abcdef0123456789abcdef0";
    shoal_wire_task_t both[2] = {t, put};
    s_submit(c, both, 2, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    //  A worker's note cannot make one either: the bytes are dropped, nothing is listed.
    shoal_ref_t ref = shoal_ref_make(7, 3, 0);
    shoal_wire_object_note_t note = {.ref = ref,
                                     .state = SHOAL_OBJ_NOTE_ALLOCATED,
                                     .size = 100,
                                     .name = "ffffffffffffffffffffffffffffffff",
                                     .put = 1};
    shoal_wire_w_objects_t msg = {.items = {&note, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_objects, &msg, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_drop, &in, 5000);
    assert_int_equal(in.msg.u.w_drop.refs.count, 1);
    assert_true(shoal_ref_equal(in.msg.u.w_drop.refs.items[0], ref));
    shoal_wire_in_clear(&in);
    shoal_wire_query_reply_t *r = s_query(c, "ffff*", NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, NULL, 0, 0);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

/*  -------------------------------------------------------- puts nobody is writing */

//  The value of field in the next broker.stats event on sub.
static int64_t s_next_stat(void *sub, const char *field)
{
    s_ev_t ev;
    s_expect_event(sub, "broker.stats", &ev, 5000);
    msgpack_object *v = s_field(&ev, field);
    if (!v)
        fail_msg("broker.stats has no field %s", field);
    int64_t value = v->via.i64;
    s_ev_free(&ev);
    return value;
}

//  Waits for a w_drop on w that names every one of refs.
static void s_expect_drops(void *w, const shoal_ref_t *refs, size_t n)
{
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_drop, &in, 5000);
    for (size_t k = 0; k < n; k++) {
        bool found = false;
        for (size_t i = 0; i < in.msg.u.w_drop.refs.count; i++)
            found = found || shoal_ref_equal(in.msg.u.w_drop.refs.items[i], refs[k]);
        if (!found)
            fail_msg("w_drop of %zu refs lacks ref %zu", in.msg.u.w_drop.refs.count, k);
    }
    shoal_wire_in_clear(&in);
}

/*  A worker called name says hello as process pid of testhost, data endpoint ep, holding
    held and still writing writing; returns its socket once welcomed. A new process under a
    name in use is refused while the old one may be alive (heard from within 2 heartbeats):
    it says hello again until welcomed. */
static void *s_worker_hello(fixture_t *f, const char *name, uint64_t pid, const char *ep,
                            shoal_ref_t *held, size_t n_held, shoal_ref_t *writing,
                            size_t n_writing)
{
    void *w = s_dealer(f);
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = (char *)name,
                                  .host = "testhost",
                                  .slots = 1,
                                  .capacity = 4,
                                  .endpoint = (char *)ep,
                                  .pid = pid,
                                  .held = {held, n_held},
                                  .writing = {writing, n_writing}};
    int64_t deadline = shoal__now_ms() + 5000;
    for (;;) {
        assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
        shoal_wire_in_t in;
        s_expect(w, SHOAL_MSG_w_welcome, &in, 5000);
        int64_t code = in.msg.u.w_welcome.code;
        shoal_wire_in_clear(&in);
        if (code == 0)
            return w;
        assert_int_equal(code, SHOAL_EEXIST);
        assert_true(shoal__now_ms() < deadline);
        //  Nothing comes on w: a wait for the old process to fall silent long enough.
        zmq_pollitem_t item = {w, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 50);
    }
}

static void
test_an_output_note_of_an_unknown_task_makes_no_put_and_its_result_is_dropped(void **state)
{
    fixture_t *f = *state;
    void *sub = s_subscriber(f, "broker.stats");
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  An executor allocates output 0 and the log of a task the broker no longer knows
    //  (canceled and released, or a broker restarted without a journal).
    shoal_ref_t out = shoal_ref_make(7, 1, 0), log = shoal_ref_output(out, SHOAL_REF_LOG_INDEX);
    s_output_note(w, out, 100000);
    s_output_note(w, log, 100);
    shoal_wire_in_t in;
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, NULL, 0, 0); //  no put made of it
    shoal_wire_in_clear(&in);
    shoal_wire_status_t *st = s_watch(c, out, &in);
    assert_int_equal(st->state, SHOAL_STATE_UNKNOWN);
    shoal_wire_in_clear(&in);
    //  Ignored, not malformed: after one note that is, the count is one.
    s_note(w, shoal_ref_make(7, 99, 0), 42, 1, NULL);
    int64_t deadline = shoal__now_ms() + 5000, malformed;
    while ((malformed = s_next_stat(sub, "malformed")) < 1 && shoal__now_ms() < deadline)
        ;
    assert_int_equal(malformed, 1);
    //  Its result is fenced off, and what the worker kept of it is dropped.
    shoal_wire_output_t big = {.size = 100000};
    shoal_wire_result_t res = {.id = out,
                               .attempt = 1,
                               .outputs = {&big, 1},
                               .log_size = 100,
                               .log_tail = {(const uint8_t *)"tail", 4}};
    shoal_wire_w_done_t done = {.seq = 41, .results = {&res, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_expect_drops(w, (shoal_ref_t[]){out, log}, 2);
    s_close(sub);
    s_close(w);
    s_close(c);
}

static void test_a_put_its_worker_no_longer_has_after_a_broker_restart_is_canceled(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);
    void *w = s_worker(f, "w1", 9);
    void *c = s_client(f);
    shoal_wire_task_t puts[2] = {s_put_store(1, "w1", 5000), s_put_store(2, "w1", 6000)};
    s_submit(c, puts, 2, 0);
    s_note(w, puts[0].id, SHOAL_OBJ_NOTE_ALLOCATED, 5000, NULL);
    s_note(w, puts[1].id, SHOAL_OBJ_NOTE_ALLOCATED, 6000, NULL);
    s_close(w);
    s_close(c);
    s_restart(f);
    //  w1 comes back writing the second only: it gave the first up while the broker was away.
    c = s_client(f);
    w = s_worker_hello(f, "w1", 9, "tcp://127.0.0.1:1", NULL, 0, &puts[1].id, 1);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    assert_int_equal(st->code, SHOAL_ECANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    s_assert_error_has(st->error, shoal_ref_format(puts[0].id, text));
    s_assert_error_has(st->error, "abandoned: its worker w1 no longer has it");
    shoal_wire_in_clear(&in);
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, "w1", NULL, 0, &in);
    s_assert_listed(r, &puts[1].id, 1, 0);
    assert_int_equal(r->objects.items[0].state, SHOAL_OBJECT_ALLOCATED);
    shoal_wire_in_clear(&in);
    s_note(w, puts[1].id, SHOAL_OBJ_NOTE_SEALED, 6000, NULL);
    st = s_watch(c, puts[1].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->worker, "w1");
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_worker_saying_hello_again_without_a_put_it_reported_cancels_it(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t puts[2] = {s_put_store(1, "w1", 5000), s_put_store(2, "w1", 5000)};
    puts[0].job = puts[1].job = "h";
    s_submit(c, puts, 2, 0);
    s_note(w, puts[0].id, SHOAL_OBJ_NOTE_ALLOCATED, 5000, NULL);
    //  The same process says hello again, writing neither: it gave up the first, which it
    //  had reported; the second it never reported (its note may be on its way): it stays.
    void *again = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    s_assert_error_has(st->error, "abandoned: its worker w1 no longer has it");
    shoal_wire_in_clear(&in);
    s_assert_counts(c, "h", 0, 0, 1, 0, 0, 1);
    s_note(again, puts[1].id, SHOAL_OBJ_NOTE_SEALED, 5000, NULL);
    st = s_watch(c, puts[1].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(again);
    s_close(c);
}

static void test_a_put_whose_worker_never_says_hello_after_a_broker_restart_is_lost(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 5000);
    s_submit(c, &put, 1, 0);
    s_note(w, put.id, SHOAL_OBJ_NOTE_ALLOCATED, 5000, NULL);
    s_close(w);
    s_close(c);
    s_restart(f);
    //  Nobody says hello as w1: lost once the broker stops waiting for it (2 heartbeats to
    //  say hello again, and 10 more for a silent worker: 1.2 s here).
    c = s_client(f);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "its worker w1 did not say hello again");
    shoal_wire_in_clear(&in);
    s_close(c);
}

static void test_a_put_its_worker_never_reports_is_canceled_after_twice_the_lease(void **state)
{
    fixture_t *f = *state;
    f->cfg.put_lease_ms = 200;
    s_restart(f);
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  Both name w1, which has only the second: the first's ABORTED note never comes (or
    //  came and went with its tombstone).
    shoal_wire_task_t puts[2] = {s_put_store(1, "w1", 5000), s_put_store(2, "w1", 5000)};
    puts[0].job = puts[1].job = "d";
    s_submit(c, puts, 2, 0);
    s_note(w, puts[1].id, SHOAL_OBJ_NOTE_ALLOCATED, 5000, NULL);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, puts[0].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    assert_int_equal(st->code, SHOAL_ECANCELED);
    s_assert_error_has(st->error, "its worker w1 never reported it");
    shoal_wire_in_clear(&in);
    s_expect_drop(w, puts[0].id); //  in case it has it after all
    s_assert_counts(c, "d", 0, 0, 1, 0, 0, 1);
    s_close(w);
    s_close(c);
}

/*  ------------------------------------------------------------------ bookkeeping */

static void test_the_ttl_of_a_removed_task_is_not_pending_and_others_still_expire(void **state)
{
    fixture_t *f = *state;
    void *sub = s_subscriber(f, "broker.stats");
    void *c = s_client(f);
    //  Far more removed than S_HEAP_SLACK (1024), so the heap is rebuilt on the way; three
    //  are kept. Their ttls are years: a stale entry would stay for ever.
    enum { N = 2000, KEPT = 3 };
    shoal_wire_task_t *puts = calloc(N + KEPT, sizeof *puts);
    shoal_ref_t *refs = calloc(N, sizeof *refs);
    for (uint64_t i = 0; i < N + KEPT; i++) {
        puts[i] = s_put_inline(i + 1, "x");
        puts[i].ttl_ms = UINT64_MAX / 2;
        if (i < N)
            refs[i] = puts[i].id;
    }
    s_submit(c, puts, N + KEPT, 0);
    shoal_wire_remove_t rm = {.seq = 4, .refs = {refs, N}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.count, N);
    shoal_wire_in_clear(&in);
    int64_t deadline = shoal__now_ms() + 5000, pending;
    while ((pending = s_next_stat(sub, "ttl_pending")) != KEPT && shoal__now_ms() < deadline)
        ;
    assert_int_equal(pending, KEPT);
    //  Near deadlines, armed after the rebuild, still come due.
    shoal_wire_task_t soon[2] = {s_put_inline(N + 10, "y"), s_put_inline(N + 11, "z")};
    soon[0].ttl_ms = 50;
    soon[1].ttl_ms = 1;
    s_submit(c, soon, 2, 0);
    for (int i = 0; i < 2; i++) {
        uint64_t st_state;
        do {
            shoal_wire_status_t *st = s_watch(c, soon[i].id, &in);
            st_state = st->state;
            shoal_wire_in_clear(&in);
        } while (st_state != SHOAL_STATE_UNKNOWN && shoal__now_ms() < deadline);
        assert_int_equal(st_state, SHOAL_STATE_UNKNOWN);
    }
    while ((pending = s_next_stat(sub, "ttl_pending")) != KEPT && shoal__now_ms() < deadline)
        ;
    assert_int_equal(pending, KEPT);
    shoal_wire_status_t *st = s_watch(c, puts[N].id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    free(puts);
    free(refs);
    s_close(sub);
    s_close(c);
}

static void test_tombstones_all_expire_together_once_their_time_is_up(void **state)
{
    fixture_t *f = *state;
    f->cfg.put_lease_ms = 300; //  how long a tombstone lasts
    s_restart(f);
    void *sub = s_subscriber(f, "broker.stats");
    void *w = s_worker(f, "w1", 1);
    //  More than the 256 a tick the broker once forgot: puts aborted before their PUT task.
    enum { N = 600 };
    shoal_wire_object_note_t *notes = calloc(N, sizeof *notes);
    for (uint64_t i = 0; i < N; i++)
        notes[i] = (shoal_wire_object_note_t){
            .ref = shoal_ref_make(7, i + 1, 0), .state = SHOAL_OBJ_NOTE_ABORTED, .put = 1};
    shoal_wire_w_objects_t msg = {.items = {notes, N}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_objects, &msg, NULL, 0), 0);
    s_round_trip(w);
    int64_t deadline = shoal__now_ms() + 5000, n;
    while ((n = s_next_stat(sub, "tombstones")) != N && shoal__now_ms() < deadline)
        ;
    assert_int_equal(n, N);
    //  The first tick past their time forgets them all.
    while ((n = s_next_stat(sub, "tombstones")) == N && shoal__now_ms() < deadline)
        ;
    assert_int_equal(n, 0);
    free(notes);
    s_close(sub);
    s_close(w);
}

static void test_a_worker_restarted_with_its_store_keeps_what_it_still_holds(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    //  P1 sealed; P2 and P3 being written (the new process goes on with P2 only); T done
    //  with a big output.
    shoal_wire_task_t p1 = s_put_store(1, "w1", 100000), p2 = s_put_store(2, "w1", 100000);
    shoal_wire_task_t p3 = s_put_store(3, "w1", 100000), t = s_task(4, NULL, 0);
    s_submit(c, (shoal_wire_task_t[]){p1, p2, p3, t}, 4, 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_note(w, p1.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_note(w, p2.id, SHOAL_OBJ_NOTE_ALLOCATED, 100000, NULL);
    s_note(w, p3.id, SHOAL_OBJ_NOTE_ALLOCATED, 100000, NULL);
    shoal_wire_output_t big = {.size = 100000};
    shoal_wire_result_t r = {.id = t.id, .attempt = 1, .outputs = {&big, 1}};
    shoal_wire_w_done_t done = {.seq = 51, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    //  A new process under the same name (another pid and endpoint) re-adopted the store.
    const char *ep = "tcp://127.0.0.1:2";
    void *w2 = s_worker_hello(f, "w1", 2, ep, (shoal_ref_t[]){p1.id, t.id}, 2, &p2.id, 1);
    shoal_wire_status_t *st = s_watch(c, p1.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->endpoint, ep);
    shoal_wire_in_clear(&in);
    st = s_watch(c, t.id, &in); //  not run again
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->endpoint, ep);
    shoal_wire_in_clear(&in);
    st = s_watch(c, p3.id, &in); //  only the old process had it
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "replaced by a new process");
    shoal_wire_in_clear(&in);
    s_note(w2, p2.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    st = s_watch(c, p2.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->endpoint, ep);
    shoal_wire_in_clear(&in);
    //  The first dispatch to the new process is a reader of what it kept, and nothing else.
    shoal_wire_task_t reader = s_task(5, (shoal_ref_t[]){p1.id, t.id}, 2);
    s_submit(c, &reader, 1, 0);
    s_expect(w2, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    shoal_wire_dispatch_t *d = &in.msg.u.w_dispatch.tasks.items[0];
    assert_true(shoal_ref_equal(d->task.id, reader.id));
    assert_string_equal(d->inputs.items[0].endpoint, ep);
    assert_string_equal(d->inputs.items[1].endpoint, ep);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(w2);
    s_close(c);
}

/*  ------------------------------------------------------------------------- names */

static void test_names_longer_than_the_limit_are_refused_at_submit_and_in_notes(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    char name[SHOAL_NAME_MAX + 2];
    memset(name, 'n', SHOAL_NAME_MAX + 1);
    name[SHOAL_NAME_MAX + 1] = '\0';
    shoal_wire_task_t t = s_task(1, NULL, 0);
    t.name = name;
    s_refused(c, &t, "a name has at most 1024 bytes, got 1025");
    shoal_wire_task_t put = s_put_inline(2, "x");
    put.name = name;
    s_refused(c, &put, "put ");
    name[SHOAL_NAME_MAX] = '\0'; //  at the limit: fine
    s_submit(c, &put, 1, 0);
    //  A note cannot make a put of such a name: its bytes are dropped, nothing is listed.
    name[SHOAL_NAME_MAX] = 'n';
    shoal_ref_t ref = shoal_ref_make(7, 3, 0);
    shoal_wire_object_note_t note = {
        .ref = ref, .state = SHOAL_OBJ_NOTE_ALLOCATED, .size = 100, .name = name, .put = 1};
    shoal_wire_w_objects_t msg = {.items = {&note, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_objects, &msg, NULL, 0), 0);
    s_expect_drop(w, ref);
    shoal_wire_in_t in;
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, &put.id, 1, 0);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_an_object_too_big_to_list_is_counted_in_more_and_the_rest_are_listed(void **state)
{
    //  Brokers took names of any length once: a journal of then brings one of 33 MiB back,
    //  more than a reply may hold. It is oldest (ties go by ref), so it comes first.
    fixture_t *f = *state;
    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    char state_dir[128];
    snprintf(state_dir, sizeof state_dir, "%s/state", f->dir);
    assert_int_equal(shoal__mkdir_p(state_dir, 0700), 0);
    shoal__journal_t *journal;
    assert_int_equal(shoal__journal_open(state_dir, &journal), 0);
    size_t len = 33u << 20;
    char *huge = malloc(len + 1);
    memset(huge, 'h', len);
    huge[len] = '\0';
    shoal_wire_task_t puts[2] = {s_put_inline(1, "big name"), s_put_inline(2, "small")};
    puts[0].name = huge;
    puts[1].name = "plain";
    assert_int_equal(shoal__journal_add_tasks(journal, puts, 2), 0);
    shoal__journal_close(&journal);
    free(huge);
    f->cfg.state_dir = state_dir;
    assert_int_equal(pthread_create(&f->thread, NULL, s_broker_thread, f), 0);
    void *c = s_client(f);
    shoal_wire_in_t in;
    shoal_wire_query_reply_t *r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, &puts[1].id, 1, 1);
    shoal_wire_in_clear(&in);
    s_close(c);
}

/*  ------------------------------------------------------------- puts and removes */

static void test_removing_a_put_being_written_cancels_it_and_its_worker_drops_it(void **state)
{
    fixture_t *f = *state;
    void *w = s_worker(f, "w1", 1);
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 100000), reader = s_task(2, &put.id, 1);
    s_submit(c, (shoal_wire_task_t[]){put, reader}, 2, 0);
    shoal_wire_remove_t rm = {.seq = 4, .refs = {&put.id, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    assert_int_equal(in.msg.u.ack.code, 0);
    assert_int_equal(in.msg.u.ack.count, 1);
    shoal_wire_in_clear(&in);
    s_expect_drop(w, put.id);
    shoal_wire_status_t *st = s_watch(c, put.id, &in); //  forgotten
    assert_int_equal(st->state, SHOAL_STATE_UNKNOWN);
    shoal_wire_in_clear(&in);
    st = s_watch(c, reader.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_CANCELED);
    char text[SHOAL_REF_TEXT_SIZE];
    s_assert_error_has(st->error, shoal_ref_format(put.id, text));
    shoal_wire_in_clear(&in);
    //  Its seal, already on its way, brings nothing back: the bytes go.
    s_send_note(w, put.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_expect_drop(w, put.id);
    st = s_watch(c, put.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_UNKNOWN);
    shoal_wire_in_clear(&in);
    s_close(w);
    s_close(c);
}

static void test_a_put_in_a_store_that_carries_bytes_in_its_task_is_refused(void **state)
{
    fixture_t *f = *state;
    void *c = s_client(f);
    shoal_wire_task_t put = s_put_store(1, "w1", 5);
    put.arg = (shoal_wire_bin_t){(const uint8_t *)"bytes", 5};
    s_refused(c, &put, "a store put carries no bytes in its task");
    s_close(c);
}

//  Fails if a message of type (heartbeats and drops aside) reaches w within ms.
static void s_assert_nothing(void *w, int type, int ms)
{
    int64_t deadline = shoal__now_ms() + ms;
    for (int64_t left; (left = deadline - shoal__now_ms()) > 0;) {
        zmq_pollitem_t item = {w, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) <= 0)
            continue;
        shoal_wire_in_t in;
        assert_int_equal(shoal_wire_recv(w, false, &in, 0), 0);
        int got = in.msg.type;
        shoal_wire_in_clear(&in);
        if (got == type)
            fail_msg("unexpected %s", shoal_msg_name(type));
    }
}

//  The first w_dispatch on a or b (within 5 s) in *in; returns the socket it came on.
static void *s_expect_dispatch_any(void *a, void *b, shoal_wire_in_t *in)
{
    int64_t deadline = shoal__now_ms() + 5000;
    for (int64_t left; (left = deadline - shoal__now_ms()) > 0;) {
        zmq_pollitem_t items[2] = {{a, 0, ZMQ_POLLIN, 0}, {b, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, (long)left) <= 0)
            continue;
        void *w = (items[0].revents & ZMQ_POLLIN) ? a : b;
        assert_int_equal(shoal_wire_recv(w, false, in, 0), 0);
        if (in->msg.type == SHOAL_MSG_w_dispatch)
            return w;
        shoal_wire_in_clear(in);
    }
    fail_msg("no w_dispatch within 5 s");
    return NULL;
}

static void test_a_persisted_put_stays_while_its_worker_is_away_and_comes_back_with_it(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *c = s_client(f);
    //  P is persisted (the flag), Q is not; R reads P.
    shoal_wire_task_t p = s_put_store(1, "w1", 100000), q = s_put_store(2, "w1", 100000);
    p.flags = SHOAL_TASK_PERSIST;
    shoal_wire_task_t puts[2] = {p, q};
    s_submit(c, puts, 2, 0);
    s_note(w1, p.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_note(w1, q.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    shoal_wire_query_reply_t *r;
    shoal_wire_in_t in;
    r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, (shoal_ref_t[]){p.id, q.id}, 2, 0);
    assert_int_equal(r->objects.items[0].state, SHOAL_OBJECT_PERSISTED);
    assert_int_equal(r->objects.items[1].state, SHOAL_OBJECT_SEALED);
    shoal_wire_in_clear(&in);
    //  It spills Q: listed spilled; a stale note (unknown ref) is ignored.
    s_send_note_of(w1, q.id, SHOAL_OBJ_NOTE_SPILLED, 100000, NULL, 0);
    s_send_note_of(w1, shoal_ref_make(99, 1, 0), SHOAL_OBJ_NOTE_SPILLED, 1, NULL, 0);
    s_round_trip(w1);
    r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    assert_int_equal(r->objects.items[1].state, SHOAL_OBJECT_SPILLED);
    shoal_wire_in_clear(&in);

    //  w1 goes: Q is lost (its put fails), P stays done and listed under w1's name.
    shoal_wire_w_bye_t bye = {.reason = "test"};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0), 0);
    s_wait_worker_gone(c, "w1");
    shoal_wire_status_t *st = s_watch(c, q.id, &in);
    assert_int_equal(st->code, SHOAL_ELOST);
    shoal_wire_in_clear(&in);
    st = s_watch(c, p.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_true(!st->endpoint || !st->endpoint[0]);
    assert_non_null(st->worker);
    assert_string_equal(st->worker, "w1");
    s_assert_error_has(st->error, "away");
    shoal_wire_in_clear(&in);
    r = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    s_assert_listed(r, &p.id, 1, 0);
    assert_int_equal(r->objects.items[0].state, SHOAL_OBJECT_PERSISTED);
    assert_string_equal(r->objects.items[0].worker, "w1");
    shoal_wire_in_clear(&in);
    //  Found by that name too (shoal ls --worker w1).
    r = s_query(c, NULL, NULL, "w1", NULL, 0, &in);
    s_assert_listed(r, &p.id, 1, 0);
    shoal_wire_in_clear(&in);
    //  A task reading P waits (no worker could read it now) ...
    void *w2 = s_worker(f, "w2", 2);
    shoal_wire_task_t reader = s_task(3, &p.id, 1);
    s_submit(c, &reader, 1, 0);
    s_assert_nothing(w2, SHOAL_MSG_w_dispatch, 300);
    //  ... until w1 says hello again holding P: then it runs.
    void *w1b = s_worker_hello(f, "w1", 11, "tcp://127.0.0.1:3", &p.id, 1, NULL, 0);
    st = s_watch(c, p.id, &in);
    if (st->state != SHOAL_STATE_DONE)
        fail_msg("state %d: %s", (int)st->state, st->error ? st->error : "(none)");
    assert_string_equal(st->endpoint, "tcp://127.0.0.1:3");
    shoal_wire_in_clear(&in);
    void *ran = s_expect_dispatch_any(w1b, w2, &in);
    assert_non_null(ran);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, reader.id));
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w1b);
    s_close(w2);
    s_close(c);
}

//  Worker w reports task id (attempt 1) done with output 0 inline ("x") and output 1 in its
//  store (size bytes); waits for the ack.
static void s_done_inline_and_stored(void *w, shoal_ref_t id, uint64_t size)
{
    shoal_wire_output_t outs[2] = {
        {.size = 1, .flags = SHOAL_OUT_INLINE, .data = {(const uint8_t *)"x", 1}}, {.size = size}};
    shoal_wire_result_t r = {.id = id, .attempt = 1, .outputs = {outs, 2}};
    shoal_wire_w_done_t done = {.seq = 61, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
}

static void test_a_reader_of_an_away_object_and_an_unwritten_put_waits_for_both(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *c = s_client(f);
    //  P (persisted) done on w1: P.0 inline, P.1 in w1's store.
    shoal_wire_task_t p = s_task(1, NULL, 0);
    p.n_outputs = 2;
    p.flags = SHOAL_TASK_PERSIST;
    s_submit(c, &p, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done_inline_and_stored(w1, p.id, 100000);
    //  Q: a put w2 is still writing.
    void *w2 = s_worker_hello(f, "w2", 2, "tcp://127.0.0.1:2", NULL, 0, NULL, 0);
    shoal_wire_task_t q = s_put_store(2, "w2", 100000);
    s_submit(c, &q, 1, 0);
    s_note(w2, q.id, SHOAL_OBJ_NOTE_ALLOCATED, 100000, NULL);
    //  w1 goes: P.1 is away. R reads P.0, P.1 and Q.
    shoal_wire_w_bye_t bye = {.reason = "test"};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0), 0);
    s_wait_worker_gone(c, "w1");
    shoal_ref_t p1 = shoal_ref_output(p.id, 1);
    shoal_wire_task_t r = s_task(3, (shoal_ref_t[]){shoal_ref_output(p.id, 0), p1, q.id}, 3);
    s_submit(c, &r, 1, 0);
    //  w1 is back with P.1: R still waits for Q ...
    void *w1b = s_worker_hello(f, "w1", 11, "tcp://127.0.0.1:3", &p1, 1, NULL, 0);
    shoal_wire_heartbeat_t hb = {0}; //  w2 must not pass for dead (1 s here)
    assert_int_equal(shoal_wire_send(w2, NULL, SHOAL_MSG_heartbeat, &hb, NULL, 0), 0);
    s_assert_nothing(w1b, SHOAL_MSG_w_dispatch, 300);
    s_assert_nothing(w2, SHOAL_MSG_w_dispatch, 100);
    //  ... and runs once Q is sealed (maybe on w2: no round trip on it, which would meet
    //  the dispatch first).
    s_send_note(w2, q.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    assert_non_null(s_expect_dispatch_any(w1b, w2, &in));
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, r.id));
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w1b);
    s_close(w2);
    s_close(c);
}

static void test_persisted_objects_a_worker_comes_back_without_are_lost_or_recomputed(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *c = s_client(f);
    //  P: a persisted put sealed on w1; T: a persisted task done on w1 with a big output.
    shoal_wire_task_t p = s_put_store(1, "w1", 100000), t = s_task(2, NULL, 0);
    p.flags = SHOAL_TASK_PERSIST;
    t.flags = SHOAL_TASK_PERSIST;
    s_submit(c, &p, 1, 0);
    s_note(w1, p.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_output_t big = {.size = 100000};
    shoal_wire_result_t res = {.id = t.id, .attempt = 1, .outputs = {&big, 1}};
    shoal_wire_w_done_t done = {.seq = 71, .results = {&res, 1}};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    //  w1 goes; R reads P, R2 reads T: both wait for w1.
    shoal_wire_w_bye_t bye = {.reason = "test"};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_bye, &bye, NULL, 0), 0);
    s_wait_worker_gone(c, "w1");
    shoal_wire_task_t r = s_task(3, &p.id, 1), r2 = s_task(4, &t.id, 1);
    s_submit(c, (shoal_wire_task_t[]){r, r2}, 2, 0);
    //  w1 comes back with an empty store (--reset-store): P is lost, naming w1, and R with
    //  it; T runs again, and R2 after it.
    void *w1b = s_worker_hello(f, "w1", 11, "tcp://127.0.0.1:3", NULL, 0, NULL, 0);
    shoal_wire_status_t *st = s_watch(c, p.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "worker w1");
    shoal_wire_in_clear(&in);
    st = s_watch(c, r.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    shoal_wire_in_clear(&in);
    s_expect(w1b, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_int_equal(in.msg.u.w_dispatch.tasks.count, 1);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, t.id));
    res.attempt = in.msg.u.w_dispatch.tasks.items[0].attempt;
    shoal_wire_in_clear(&in);
    done.seq = 72;
    assert_int_equal(shoal_wire_send(w1b, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1b, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_expect(w1b, SHOAL_MSG_w_dispatch, &in, 5000);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, r2.id));
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w1b);
    s_close(c);
}

/*  A restarted broker (journal) keeps persisted objects away under the worker the journal
    says holds them, past its first dispatch: readers wait for that worker's hello, which
    brings them back; another worker's hello without its own persisted put loses it. */
static void
test_persisted_objects_stay_away_across_a_broker_restart_until_their_worker_is_back(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *w3 = s_worker_hello(f, "w3", 3, "tcp://127.0.0.1:4", NULL, 0, NULL, 0);
    void *c = s_client(f);
    //  P: a persisted put sealed on w1; T: a persisted task done on w1, T.1 in its store;
    //  P3: a persisted put sealed on w3.
    shoal_wire_task_t p = s_put_store(1, "w1", 100000), t = s_task(2, NULL, 0);
    shoal_wire_task_t p3 = s_put_store(5, "w3", 100000);
    p.flags = p3.flags = t.flags = SHOAL_TASK_PERSIST;
    t.n_outputs = 2;
    s_submit(c, (shoal_wire_task_t[]){p, p3}, 2, 0);
    s_note(w1, p.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_note(w3, p3.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    s_done_inline_and_stored(w1, t.id, 100000);
    s_close(w1);
    s_close(w3);
    s_close(c);
    s_restart(f);
    //  Nobody has said hello yet. R reads P and T.1; w2 has room. Past the broker's first
    //  dispatch (2 heartbeats: 200 ms here) nothing is lost, rerun nor run.
    c = s_client(f);
    void *w2 = s_worker(f, "w2", 2);
    shoal_ref_t t1 = shoal_ref_output(t.id, 1);
    shoal_wire_task_t r = s_task(3, (shoal_ref_t[]){p.id, t1}, 2);
    s_submit(c, &r, 1, 0);
    s_assert_nothing(w2, SHOAL_MSG_w_dispatch, 500);
    shoal_wire_status_t *st = s_watch(c, p.id, &in);
    if (st->state != SHOAL_STATE_DONE)
        fail_msg("P: state %d: %s", (int)st->state, st->error ? st->error : "(none)");
    assert_true(!st->endpoint || !st->endpoint[0]);
    assert_non_null(st->worker);
    assert_string_equal(st->worker, "w1");
    s_assert_error_has(st->error, "away");
    shoal_wire_in_clear(&in);
    //  Listed persisted, under w1's name.
    shoal_wire_query_reply_t *q = s_query(c, NULL, NULL, NULL, NULL, 0, &in);
    size_t listed = 0;
    for (size_t i = 0; i < q->objects.count; i++) {
        const shoal_wire_object_info_t *o = &q->objects.items[i];
        if (!shoal_ref_equal(o->ref, p.id) && !shoal_ref_equal(o->ref, t1))
            continue;
        assert_int_equal(o->state, SHOAL_OBJECT_PERSISTED);
        assert_non_null(o->worker);
        assert_string_equal(o->worker, "w1");
        listed++;
    }
    assert_int_equal(listed, 2);
    shoal_wire_in_clear(&in);
    //  w3 is back without P3 (its store was reset): lost, naming w3.
    void *w3b = s_worker_hello(f, "w3", 13, "tcp://127.0.0.1:5", NULL, 0, NULL, 0);
    st = s_watch(c, p3.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "worker w3");
    shoal_wire_in_clear(&in);
    //  w1 is back with P and T.1: R runs, and P is served from w1 again.
    void *w1b =
        s_worker_hello(f, "w1", 11, "tcp://127.0.0.1:3", (shoal_ref_t[]){p.id, t1}, 2, NULL, 0);
    st = s_watch(c, p.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    assert_string_equal(st->endpoint, "tcp://127.0.0.1:3");
    shoal_wire_in_clear(&in);
    void *ran = s_expect_dispatch_any(w1b, w2, &in);
    assert_non_null(ran);
    assert_true(shoal_ref_equal(in.msg.u.w_dispatch.tasks.items[0].task.id, r.id));
    shoal_wire_in_clear(&in);
    s_close(w1b);
    s_close(w3b);
    s_close(w2);
    s_close(c);
}

/*  A removed output of a persisted task stays removed across a broker restart: the journal
    records the removal (the task itself stays while its other output lives), so the reload
    does not list it away, the worker's hello without it loses nothing, and the task does
    not run again. */
static void test_a_removed_persisted_output_stays_removed_across_a_broker_restart(void **state)
{
    fixture_t *f = *state;
    s_use_state_dir(f);
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *c = s_client(f);
    //  T (persisted) done on w1: T.0 in w1's store, T.1 inline; T.0 is removed.
    shoal_wire_task_t t = s_task(2, NULL, 0);
    t.flags = SHOAL_TASK_PERSIST;
    t.n_outputs = 2;
    s_submit(c, &t, 1, 0);
    shoal_wire_in_t in;
    s_expect(w1, SHOAL_MSG_w_dispatch, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_wire_output_t outs[2] = {
        {.size = 100000},
        {.size = 1, .flags = SHOAL_OUT_INLINE, .data = {(const uint8_t *)"x", 1}}};
    shoal_wire_result_t r = {.id = t.id, .attempt = 1, .outputs = {outs, 2}};
    shoal_wire_w_done_t done = {.seq = 61, .results = {&r, 1}};
    assert_int_equal(shoal_wire_send(w1, NULL, SHOAL_MSG_w_done, &done, NULL, 0), 0);
    s_expect(w1, SHOAL_MSG_w_done_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    shoal_ref_t t0 = shoal_ref_output(t.id, 0);
    shoal_wire_remove_t rm = {.seq = 5, .refs = {&t0, 1}};
    assert_int_equal(shoal_wire_send(c, NULL, SHOAL_MSG_remove, &rm, NULL, 0), 0);
    s_expect(c, SHOAL_MSG_ack, &in, 5000);
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(c);
    s_restart(f);
    //  w1 is back without T.0 (it dropped it): nothing is lost, T does not run again.
    c = s_client(f);
    w1 = s_worker_hello(f, "w1", 11, "tcp://127.0.0.1:3", NULL, 0, NULL, 0);
    s_assert_nothing(w1, SHOAL_MSG_w_dispatch, 500);
    shoal_wire_status_t *st = s_watch(c, t0, &in);
    assert_int_not_equal(st->state, SHOAL_STATE_DONE);
    assert_int_equal(st->code, SHOAL_ENOTFOUND);
    shoal_wire_in_clear(&in);
    st = s_watch(c, shoal_ref_output(t.id, 1), &in);
    assert_int_equal(st->state, SHOAL_STATE_DONE);
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(c);
}

static void test_a_persisted_put_a_new_process_under_the_same_name_lacks_is_lost(void **state)
{
    fixture_t *f = *state;
    void *w1 = s_worker_hello(f, "w1", 1, "tcp://127.0.0.1:1", NULL, 0, NULL, 0);
    void *c = s_client(f);
    shoal_wire_task_t p = s_put_store(1, "w1", 100000);
    p.flags = SHOAL_TASK_PERSIST;
    s_submit(c, &p, 1, 0);
    s_note(w1, p.id, SHOAL_OBJ_NOTE_SEALED, 100000, NULL);
    //  Another process takes the name over with a store of its own, without P.
    void *w2 = s_worker_hello(f, "w1", 2, "tcp://127.0.0.1:2", NULL, 0, NULL, 0);
    shoal_wire_in_t in;
    shoal_wire_status_t *st = s_watch(c, p.id, &in);
    assert_int_equal(st->state, SHOAL_STATE_FAILED);
    assert_int_equal(st->code, SHOAL_ELOST);
    s_assert_error_has(st->error, "worker w1");
    shoal_wire_in_clear(&in);
    s_close(w1);
    s_close(w2);
    s_close(c);
}

int main(void)
{
    shoal__log_init("test", SHOAL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_acks_come_within_the_hold_when_nothing_else_goes,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_dependent_tasks_run_in_order_with_inputs_inline,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failure_fails_dependents_naming_the_input, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_silent_worker_is_declared_dead_and_its_task_runs_elsewhere, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_task_streaming_an_output_lost_with_its_worker_is_stopped_and_requeued, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_batches_and_garbage_get_errors_and_the_broker_keeps_serving, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_a_name_taken_by_a_live_worker_is_refused, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_restarted_broker_keeps_acknowledged_tasks_and_small_results, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_a_job_counts_its_tasks_through_every_state, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_job_tasks_lists_arrays_by_index_and_other_tasks_in_submission_order, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_cancel_by_job_cancels_its_unfinished_tasks_and_their_dependents, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_a_worker_lost_and_lineage_reruns_keep_job_counts_exact,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forgotten_tasks_leave_their_job_which_keeps_its_order,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_restarted_broker_knows_its_jobs_again, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_small_results_outlive_their_worker_and_big_ones_are_recomputed, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_a_failure_at_the_head_of_a_long_chain_fails_it_all,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_queued_task_canceled_and_removed_is_never_dispatched,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_removed_input_fails_its_waiting_reader_naming_it,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_inline_put_is_done_at_once_and_its_bytes_come_back_in_the_status, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_inline_put_over_the_budget_fails_full_naming_the_budget, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_put_in_a_store_is_running_until_its_worker_seals_it,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_aborted_put_is_canceled_naming_it_and_so_is_its_reader, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_note_before_the_put_task_makes_it_and_the_later_put_is_a_duplicate, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_task_reading_a_put_waits_for_the_seal_and_finds_it_on_that_worker, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_on_a_worker_nobody_knows_fails_unreachable_naming_it, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_puts_lost_with_their_worker_fail_and_so_do_their_readers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_persisted_put_stays_while_its_worker_is_away_and_comes_back_with_it, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_persisted_objects_stay_away_across_a_broker_restart_until_their_worker_is_back,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_reader_of_an_away_object_and_an_unwritten_put_waits_for_both, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_persisted_objects_a_worker_comes_back_without_are_lost_or_recomputed, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_persisted_put_a_new_process_under_the_same_name_lacks_is_lost, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_removed_persisted_output_stays_removed_across_a_broker_restart, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_removing_or_canceling_a_put_in_a_store_tells_its_worker_to_drop_it, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_seal_that_comes_after_the_release_does_not_bring_the_put_back, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_whose_abort_came_first_is_canceled_when_it_arrives, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_restarted_broker_keeps_puts_and_never_runs_them,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_ttl_removes_a_done_tasks_outputs_once_it_expires,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_task_removed_before_its_ttl_leaves_nothing_behind,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_object_events_tell_a_subscriber_of_allocations_seals_and_deletions, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_notes_that_make_no_sense_are_counted_and_ignored,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_tags_and_bad_puts_refuse_the_batch_naming_what_is_wrong, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_workers_reply_names_each_workers_store_dir_and_arena, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_query_lists_objects_by_name_glob_tag_worker_and_job,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_query_lists_the_oldest_up_to_its_limit_and_counts_the_rest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_put_being_written_is_listed_allocated_on_its_worker,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_names_that_look_like_refs_are_refused_naming_them,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_output_note_of_an_unknown_task_makes_no_put_and_its_result_is_dropped, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_its_worker_no_longer_has_after_a_broker_restart_is_canceled, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_worker_saying_hello_again_without_a_put_it_reported_cancels_it, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_whose_worker_never_says_hello_after_a_broker_restart_is_lost, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_its_worker_never_reports_is_canceled_after_twice_the_lease, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_ttl_of_a_removed_task_is_not_pending_and_others_still_expire, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_tombstones_all_expire_together_once_their_time_is_up,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_worker_restarted_with_its_store_keeps_what_it_still_holds, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_names_longer_than_the_limit_are_refused_at_submit_and_in_notes, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_an_object_too_big_to_list_is_counted_in_more_and_the_rest_are_listed, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_removing_a_put_being_written_cancels_it_and_its_worker_drops_it, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_put_in_a_store_that_carries_bytes_in_its_task_is_refused, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
