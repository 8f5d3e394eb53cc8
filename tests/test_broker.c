/*  test_broker.c: the real broker, run in a thread, driven over real sockets by a test
    that speaks the protocol as a worker and as a client would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "broker.h"
#include "common.h"
#include "wire.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char dir[64];
    char listen[128], events[128];
    pthread_t thread;
    shoal_broker_config_t cfg;
    int rc;
    void *ctx;
} fixture_t;

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
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    zmq_ctx_term(f->ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(f->rc, 0);
    free(f);
    return 0;
}

static void *s_dealer(fixture_t *f)
{
    void *s = zmq_socket(f->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, f->listen), 0);
    return s;
}

//  Receives the next message of type (skipping heartbeats) within timeout_ms.
static void s_expect(void *sock, int type, shoal_wire_in_t *in, int timeout_ms)
{
    int64_t deadline = shoal__now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - shoal__now_ms();
        assert_true(left > 0);
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) < 1)
            continue;
        assert_int_equal(shoal_wire_recv(sock, false, in, 0), 0);
        if (in->msg.type == SHOAL_MSG_heartbeat && type != SHOAL_MSG_heartbeat) {
            shoal_wire_in_clear(in);
            continue;
        }
        if (in->msg.type != type)
            fail_msg("expected %s, got %s", shoal_msg_name(type), shoal_msg_name(in->msg.type));
        return;
    }
}

static void *s_worker(fixture_t *f, const char *name, uint64_t pid)
{
    void *w = s_dealer(f);
    shoal_wire_w_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                  .name = (char *)name,
                                  .host = "testhost",
                                  .slots = 1,
                                  .capacity = 4,
                                  .endpoint = "tcp://127.0.0.1:1",
                                  .pid = pid};
    assert_int_equal(shoal_wire_send(w, NULL, SHOAL_MSG_w_hello, &hello, NULL, 0), 0);
    shoal_wire_in_t in;
    s_expect(w, SHOAL_MSG_w_welcome, &in, 5000);
    assert_int_equal(in.msg.u.w_welcome.code, 0);
    shoal_wire_in_clear(&in);
    return w;
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
    zmq_close(w);
    zmq_close(c);
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
    zmq_close(w);
    zmq_close(c);
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
    zmq_close(w1);
    zmq_close(w2);
    zmq_close(c);
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
    zmq_close(c2);
    zmq_close(c);
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
    zmq_close(w1);
    zmq_close(w2);
}

static void test_a_restarted_broker_keeps_acknowledged_tasks_and_small_results(void **state)
{
    fixture_t *f = *state;
    //  Restart the fixture's broker with a state dir.
    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    char state_dir[128];
    snprintf(state_dir, sizeof state_dir, "%s/state", f->dir);
    f->cfg.state_dir = state_dir;
    assert_int_equal(pthread_create(&f->thread, NULL, s_broker_thread, f), 0);

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
    zmq_close(w);
    s_submit(c, tasks + 1, 1, 0);
    zmq_close(c);

    shoal_broker_stop();
    pthread_join(f->thread, NULL);
    assert_int_equal(f->rc, 0);
    assert_int_equal(pthread_create(&f->thread, NULL, s_broker_thread, f), 0);

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
    zmq_close(w);
    zmq_close(c);
}

int main(void)
{
    shoal__log_init("test", SHOAL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dependent_tasks_run_in_order_with_inputs_inline,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failure_fails_dependents_naming_the_input, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_silent_worker_is_declared_dead_and_its_task_runs_elsewhere, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_batches_and_garbage_get_errors_and_the_broker_keeps_serving, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_a_name_taken_by_a_live_worker_is_refused, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_restarted_broker_keeps_acknowledged_tasks_and_small_results, s_setup,
            s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
