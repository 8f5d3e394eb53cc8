/*  test_cluster_faults.c: a cluster keeps its promises when things go wrong: a worker
    killed mid-run, garbage on the broker's and a worker's ports, a broker that is not
    there, a second worker under a name that is taken.

    Each test gets a cluster of its own (per-test setup and teardown), since these tests
    break things on purpose. */
#include "harness.h"

#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define CMD_MS  20000
#define LONG_MS 120000

static int s_setup(void **state)
{
    return h_fixture_start(state, 2, 2, "64M");
}

static const char *s_submit1(h_cluster_t *c, const char *const *args)
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

#define s_submit(c, ...) s_submit1((c), (const char *const[]){__VA_ARGS__, NULL})

/*  A deterministic generator, so a failure can be replayed from the printed seed. */
static uint64_t s_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void s_fill(uint64_t *seed, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)s_rand(seed);
}

static int s_port_of(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : -1;
}

/*  The cluster still serves: a task runs, and both workers are listed. */
static void s_assert_serving(h_cluster_t *c)
{
    assert_true(h_pid_alive(c->broker_pid));
    for (int i = 0; i < c->n_workers; i++)
        assert_true(h_pid_alive(c->workers[i].pid));
    h_result_t *r = h_run(c, CMD_MS, "run", "--", "echo", "still serving", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "still serving\n");
    assert_int_equal(h_wait_workers(c, 10000), 0);
}

//  -------------------------------------------------------------------- a worker killed

typedef struct {
    h_cluster_t *c;
    int n;
    int want;
} s_markers_t;

static bool s_enough_started(void *arg)
{
    s_markers_t *m = arg;
    int found = 0;
    for (int i = 0; i < m->n; i++) {
        struct stat st;
        if (stat(h_fmt(m->c, "%s/started.%d", m->c->tmp, i), &st) == 0 && st.st_size > 0)
            found++;
    }
    return found >= m->want;
}

typedef struct {
    pid_t pids[64];
    int n;
} s_pids_t;

static bool s_all_gone(void *arg)
{
    s_pids_t *p = arg;
    for (int i = 0; i < p->n; i++)
        if (h_pid_alive(p->pids[i]))
            return false;
    return true;
}

static void test_a_worker_killed_mid_run_loses_no_task(void **state)
{
    h_cluster_t *c = h_state(state);
    enum { N = 20 };
    const char *refs[N];
    for (int i = 0; i < N; i++) {
        //  Each task notes its pid when it starts, then takes a moment.
        const char *script =
            h_fmt(c, "echo $$ > %s/started.%d; sleep 0.3; echo task-%d", c->tmp, i, i);
        refs[i] = s_submit(c, "--exec", "--", "sh", "-c", script);
    }
    //  Wait until tasks run on both workers (4 slots in all), then kill the worker that
    //  runs one of them.
    s_markers_t m = {c, N, 3};
    assert_true(h_wait_until(s_enough_started, &m, 30000));
    int victim = -1;
    pid_t task_pid = 0;
    for (int i = 0; i < N && victim < 0; i++) {
        char *text = h_read_file(c, h_fmt(c, "%s/started.%d", c->tmp, i), NULL);
        if (!text || !*text)
            continue;
        task_pid = (pid_t)atoi(text);
        if (h_pid_alive(task_pid))
            victim = h_worker_of_pid(c, task_pid);
    }
    if (victim < 0) {
        //  Every noted task finished already (a loaded machine): any worker will do, it
        //  holds queued tasks since each worker's credit exceeds its slots.
        victim = 0;
        print_message("no running task found; killing worker 0\n");
    }
    //  The executors of the victim, to check they do not outlive it.
    s_pids_t execs = {.n = 0};
    execs.n = h_children(c->workers[victim].pid, execs.pids, 64);
    print_message("killing worker %d (%s, pid %d) with %d executors while task pid %d runs\n",
                  victim, c->workers[victim].name, (int)c->workers[victim].pid, execs.n,
                  (int)task_pid);
    assert_int_equal(h_kill_worker(c, victim, SIGKILL), 0);

    //  Every task completes with its own output, the lost ones re-run on the survivor.
    const char *argv[N + 5] = {"wait", "--timeout", "90"};
    for (int i = 0; i < N; i++)
        argv[3 + i] = refs[i];
    argv[3 + N] = NULL;
    h_result_t *waited = h_runv(c, LONG_MS, argv);
    if (waited->status != 0) {
        print_error("the tasks did not all complete; the broker is here:\n");
        h_dump_stacks(c->broker_pid);
    }
    h_assert_exit(waited, 0);
    for (int i = 0; i < N; i++) {
        h_result_t *r = h_run(c, CMD_MS, "get", refs[i], NULL);
        h_assert_exit(r, 0);
        assert_string_equal(r->out, h_fmt(c, "task-%d\n", i));
    }
    //  The dead worker's executors do not linger (they are the leaders of their process
    //  groups, so nothing else would stop them).
    bool gone = h_wait_until(s_all_gone, &execs, 10000);
    for (int i = 0; !gone && i < execs.n; i++)
        if (h_pid_alive(execs.pids[i]))
            print_error("executor pid %d outlived its worker\n", (int)execs.pids[i]);
    assert_true(gone);
    //  The survivor serves on.
    h_result_t *r = h_run(c, CMD_MS, "run", "--", "echo", "survivor", NULL);
    h_assert_exit(r, 0);
    assert_string_equal(r->out, "survivor\n");
    r = h_run(c, CMD_MS, "workers", NULL);
    h_assert_exit(r, 0);
    assert_true(h_contains(r->out, c->workers[1 - victim].name));
}

//  -------------------------------------------------------------------- garbage

/*  Connects a raw TCP socket to 127.0.0.1:port; -1 on failure. */
static int s_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/*  Writes what the peer takes; a peer that hangs up early is fine (that is its defence). */
static void s_send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/*  A ZMTP 3.0 greeting with the NULL mechanism, then READY as a DEALER: what libzmq
    accepts before it reads frames. */
static size_t s_zmtp_hello(uint8_t *buf)
{
    size_t n = 0;
    const uint8_t signature[10] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f};
    memcpy(buf, signature, 10);
    n = 10;
    buf[n++] = 3; //  version 3.0
    buf[n++] = 0;
    memset(buf + n, 0, 20);
    memcpy(buf + n, "NULL", 4);
    n += 20;
    buf[n++] = 0; //  as-server
    memset(buf + n, 0, 31);
    n += 31;
    //  READY command: short frame, flags 0x04.
    const char *prop = "Socket-Type";
    uint8_t body[64];
    size_t b = 0;
    body[b++] = 5;
    memcpy(body + b, "READY", 5);
    b += 5;
    body[b++] = (uint8_t)strlen(prop);
    memcpy(body + b, prop, strlen(prop));
    b += strlen(prop);
    body[b++] = 0, body[b++] = 0, body[b++] = 0, body[b++] = 6;
    memcpy(body + b, "DEALER", 6);
    b += 6;
    buf[n++] = 0x04;
    buf[n++] = (uint8_t)b;
    memcpy(buf + n, body, b);
    return n + b;
}

/*  Raw bytes at a ZeroMQ port: random, a half greeting, a valid greeting followed by
    frames claiming absurd sizes, and a crowd of connections that open and close. */
static void s_raw_garbage(int port, uint64_t seed)
{
    static uint8_t buf[256 * 1024];
    print_message("raw garbage at port %d, seed %llu\n", port, (unsigned long long)seed);
    for (int round = 0; round < 8; round++) {
        int fd = s_tcp_connect(port);
        assert_true(fd >= 0);
        size_t len = 1 + (size_t)(s_rand(&seed) % sizeof buf);
        s_fill(&seed, buf, len);
        if (round % 2)
            buf[0] = 0xff, buf[9] = 0x7f; //  looks like a ZMTP signature
        s_send_all(fd, buf, len);
        close(fd);
    }
    //  A valid greeting, then a frame of 2^63-1 bytes, then one above ZMQ_MAXMSGSIZE.
    const uint64_t sizes[] = {0x7fffffffffffffffull, 100ull << 20, 65ull << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int fd = s_tcp_connect(port);
        assert_true(fd >= 0);
        size_t n = s_zmtp_hello(buf);
        buf[n++] = 0x02; //  long frame, last
        for (int i = 7; i >= 0; i--)
            buf[n++] = (uint8_t)(sizes[k] >> (8 * i));
        s_fill(&seed, buf + n, 64 * 1024);
        n += 64 * 1024;
        s_send_all(fd, buf, n);
        close(fd);
    }
    //  A valid greeting and READY, then a stream of random short frames.
    int fd = s_tcp_connect(port);
    assert_true(fd >= 0);
    size_t n = s_zmtp_hello(buf);
    for (int i = 0; i < 2000 && n + 260 < sizeof buf; i++) {
        uint8_t size = (uint8_t)s_rand(&seed);
        buf[n++] = (uint8_t)(s_rand(&seed) & 0x01); //  short frame, maybe "more"
        buf[n++] = size;
        s_fill(&seed, buf + n, size);
        n += size;
    }
    s_send_all(fd, buf, n);
    close(fd);
    //  Connections that open and close at once.
    for (int i = 0; i < 100; i++) {
        fd = s_tcp_connect(port);
        if (fd >= 0)
            close(fd);
    }
}

static void *s_dealer(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(s);
    int zero = 0, timeout = 5000 * h_scale();
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    return s;
}

/*  Well-formed ZeroMQ, ill-formed shoal: random frames, bodies with a valid version and
    type but random msgpack, every message type with random fields, and multi-frame
    messages. */
static void s_zmtp_garbage(void *sock, uint64_t seed)
{
    static uint8_t buf[70000];
    static const int types[] = {
#define T(id, name) id,
        SHOAL_WIRE_MESSAGES(T)
#undef T
    };
    const size_t ntypes = sizeof types / sizeof types[0];
    for (int i = 0; i < 600; i++) {
        size_t len = (size_t)(s_rand(&seed) % (i % 50 == 0 ? sizeof buf : 300));
        s_fill(&seed, buf, len);
        if (len >= 2 && i % 3 != 0) {
            buf[0] = SHOAL_PROTO_VERSION;
            buf[1] = (uint8_t)types[s_rand(&seed) % ntypes];
        }
        if (len >= 3 && i % 3 == 1)
            buf[2] = (uint8_t)(0x90 | (s_rand(&seed) % 16)); //  a fixarray: fields follow
        int more = (i % 7 == 0) ? ZMQ_SNDMORE : 0;
        assert_true(zmq_send(sock, buf, len, more) >= 0);
        if (more)
            assert_true(zmq_send(sock, buf, len / 2, 0) >= 0);
    }
}

/*  Sends one message (encoded by the real codec) on a DEALER. */
static void s_send_msg(void *sock, int type, const void *body)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    assert_int_equal(shoal_proto_encode(type, body, &buf), 0);
    assert_int_equal(zmq_send(sock, buf.data, buf.size, 0), (int)buf.size);
    msgpack_sbuffer_destroy(&buf);
}

/*  Receives until a message of type arrives (skipping error replies to the garbage), or
    the deadline passes. Returns true and fills msg (caller clears) when it came. */
static bool s_recv_type(void *sock, int type, shoal_msg_t *msg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    while (h_now_ms() < deadline) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        int n = zmq_msg_recv(&frame, sock, 0);
        if (n < 0) {
            zmq_msg_close(&frame);
            continue; //  EAGAIN after RCVTIMEO: check the deadline
        }
        int rc = shoal_proto_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), msg);
        zmq_msg_close(&frame);
        if (rc == 0 && msg->type == type)
            return true;
        if (rc == 0)
            shoal_msg_clear(msg);
    }
    return false;
}

static void test_garbage_on_the_broker_port_does_not_stop_it(void **state)
{
    h_cluster_t *c = h_state(state);
    int port = s_port_of(c->listen);
    assert_true(port > 0);
    //  A client that stays connected half way through a greeting must not block others.
    int stuck = s_tcp_connect(port);
    assert_true(stuck >= 0);
    s_send_all(stuck, "\xff\0\0", 3);
    s_raw_garbage(port, 0x5eed0001);
    s_assert_serving(c);

    void *ctx = zmq_ctx_new();
    void *sock = s_dealer(ctx, c->listen);
    s_zmtp_garbage(sock, 0x5eed0002);
    //  The broker still answers this very peer's hello.
    shoal_wire_hello_t hello = {.version = SHOAL_PROTO_VERSION,
                                .client_id = 0x7e57000000000000ull | (uint64_t)getpid(),
                                .agent = "test-garbage"};
    s_send_msg(sock, SHOAL_MSG_hello, &hello);
    shoal_msg_t msg;
    bool answered = s_recv_type(sock, SHOAL_MSG_hello_ok, &msg, 10000);
    if (answered)
        shoal_msg_clear(&msg);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    close(stuck);
    assert_true(answered);
    s_assert_serving(c);
}

static void test_garbage_on_a_worker_data_port_does_not_stop_it(void **state)
{
    h_cluster_t *c = h_state(state);
    //  A result larger than the inline limit stays on its worker and is read from there.
    const char *big = s_submit(c, "--exec", "--", "seq", "1", "100000");
    h_assert_exit(h_run(c, CMD_MS, "wait", "--timeout", "30", big, NULL), 0);

    void *ctx = zmq_ctx_new();
    int refused = 0; //  data ports that refused streaming fetches beyond the object
    for (int w = 0; w < c->n_workers; w++) {
        int ports[8];
        int n = h_listen_ports(c->workers[w].pid, ports, 8);
        if (n == 0)
            print_error("worker %s listens on no TCP port\n", c->workers[w].name);
        assert_true(n > 0);
        for (int k = 0; k < n; k++) {
            s_raw_garbage(ports[k], 0x5eed0100 + (uint64_t)(w * 8 + k));
            char endpoint[64];
            snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", ports[k]);
            void *sock = s_dealer(ctx, endpoint);
            s_zmtp_garbage(sock, 0x5eed0200 + (uint64_t)(w * 8 + k));
            //  Fetches that cannot be served: absurd offsets and lengths of a real object,
            //  and an object nobody has, which the protocol answers with ENOTFOUND.
            shoal_ref_t ref;
            assert_int_equal(shoal_ref_parse(big, &ref), 0);
            shoal_wire_fetch_t odd[] = {{1, ref, UINT64_MAX, UINT64_MAX, 0, 0},
                                        {2, ref, 1ull << 40, 1, 0, 0},
                                        {3, ref, 0, UINT64_MAX, 0, 0}};
            for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
                s_send_msg(sock, SHOAL_MSG_fetch, &odd[i]);
            shoal_wire_fetch_t unknown = {
                .seq = 77, .ref = shoal_ref_make(0xdeadull << 32 | (uint64_t)getpid(), 1, 0)};
            s_send_msg(sock, SHOAL_MSG_fetch, &unknown);
            shoal_msg_t msg;
            bool answered = false;
            int64_t code = 0;
            while (s_recv_type(sock, SHOAL_MSG_data, &msg, 10000)) {
                bool ours = msg.u.data.seq == 77;
                code = msg.u.data.code;
                shoal_msg_clear(&msg);
                if (ours) {
                    answered = true;
                    break;
                }
            }
            //  Streaming fetches beyond the object are refused at once; one of an object
            //  nobody has is held for its wait_ms (capped), then answered ENOTFOUND.
            shoal_wire_fetch_t streams[] = {
                {78, ref, 1ull << 40, 1, SHOAL_FETCH_STREAM, 100},
                {79, ref, UINT64_MAX, UINT64_MAX, SHOAL_FETCH_STREAM, UINT64_MAX},
                {80, unknown.ref, 0, 0, SHOAL_FETCH_STREAM, 50}};
            for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++)
                s_send_msg(sock, SHOAL_MSG_fetch, &streams[i]);
            int64_t codes[3] = {0, 0, 0};
            size_t got = 0;
            while (got < 3 && s_recv_type(sock, SHOAL_MSG_data, &msg, 10000)) {
                uint64_t seq = msg.u.data.seq;
                if (seq >= 78 && seq <= 80) {
                    codes[seq - 78] = msg.u.data.code;
                    got++;
                }
                shoal_msg_clear(&msg);
            }
            zmq_close(sock);
            if (!answered)
                print_error("worker %s port %d did not answer a fetch after garbage\n",
                            c->workers[w].name, ports[k]);
            assert_true(answered);
            assert_int_equal(code, SHOAL_ENOTFOUND);
            assert_int_equal(got, 3);
            //  The worker that holds it refuses the offsets; the other has no such object.
            assert_true(codes[0] == SHOAL_EINVAL || codes[0] == SHOAL_ENOTFOUND);
            assert_int_equal(codes[1], codes[0]);
            refused += codes[0] == SHOAL_EINVAL;
            assert_int_equal(codes[2], SHOAL_ENOTFOUND);
        }
    }
    zmq_ctx_term(ctx);
    assert_true(refused > 0);
    s_assert_serving(c);
    //  The stored result is intact and still served from its worker.
    h_result_t *r = h_sh(c, CMD_MS, "shoal get %s | cksum; seq 1 100000 | cksum", big);
    h_assert_exit(r, 0);
    char *nl = strchr(r->out, '\n');
    assert_non_null(nl);
    assert_true(strncmp(r->out, nl + 1, (size_t)(nl - r->out)) == 0);
}

//  One put op (with raw bytes when raw != NULL) on sock; returns its answer's code and
//  sets *offset_p to the answer's offset.
static int64_t s_put_op(void *sock, uint64_t seq, shoal_ref_t ref, uint64_t op, uint64_t size,
                        uint64_t offset, const void *raw, size_t n, uint64_t *offset_p)
{
    shoal_wire_put_t m = {.seq = seq, .ref = ref, .op = op, .size = size, .offset = offset};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    assert_int_equal(shoal_proto_encode(SHOAL_MSG_put, &m, &buf), 0);
    assert_int_equal(zmq_send(sock, buf.data, buf.size, raw ? ZMQ_SNDMORE : 0), (int)buf.size);
    msgpack_sbuffer_destroy(&buf);
    if (raw)
        assert_int_equal(zmq_send(sock, raw, n, 0), (int)n);
    shoal_msg_t msg;
    while (s_recv_type(sock, SHOAL_MSG_put_reply, &msg, 10000)) {
        bool ours = msg.u.put_reply.seq == seq;
        int64_t code = msg.u.put_reply.code;
        *offset_p = msg.u.put_reply.offset;
        shoal_msg_clear(&msg);
        if (ours)
            return code;
    }
    fail_msg("no answer to put op %llu (seq %llu)", (unsigned long long)op,
             (unsigned long long)seq);
    return 0;
}

static void test_a_put_with_a_missing_part_is_never_sealed(void **state)
{
    h_cluster_t *c = h_state(state);
    int ports[8];
    int n = h_listen_ports(c->workers[0].pid, ports, 8);
    assert_true(n > 0);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", ports[0]);
    void *ctx = zmq_ctx_new();
    void *sock = s_dealer(ctx, endpoint);
    static uint8_t part[4096];
    memset(part, 'p', sizeof part);
    shoal_ref_t ref = shoal_ref_make(0xfa17ull << 32 | (uint64_t)getpid(), 1, 0);
    uint64_t off = 0;
    assert_int_equal(s_put_op(sock, 1, ref, SHOAL_PUT_OP_ALLOC, 8192, 0, NULL, 0, &off), 0);
    //  The second part first: the first is missing.
    assert_int_equal(s_put_op(sock, 2, ref, SHOAL_PUT_OP_WRITE, 0, 4096, part, 4096, &off),
                     SHOAL_EPROTO);
    assert_int_equal(off, 0);
    assert_int_equal(s_put_op(sock, 3, ref, SHOAL_PUT_OP_SEAL, 0, 0, NULL, 0, &off), SHOAL_EPROTO);
    //  In order, with a resend in between, it goes through.
    assert_int_equal(s_put_op(sock, 4, ref, SHOAL_PUT_OP_WRITE, 0, 0, part, 4096, &off), 0);
    assert_int_equal(off, 4096);
    assert_int_equal(s_put_op(sock, 5, ref, SHOAL_PUT_OP_WRITE, 0, 0, part, 4096, &off), 0);
    assert_int_equal(off, 4096);
    assert_int_equal(s_put_op(sock, 6, ref, SHOAL_PUT_OP_WRITE, 0, 4096, part, 4096, &off), 0);
    assert_int_equal(off, 8192);
    assert_int_equal(s_put_op(sock, 7, ref, SHOAL_PUT_OP_SEAL, 0, 0, NULL, 0, &off), 0);
    //  Absurd sizes and unknown refs get answers, not a crash.
    shoal_ref_t huge = shoal_ref_make(0xfa17ull << 32 | (uint64_t)getpid(), 2, 0);
    assert_int_equal(s_put_op(sock, 8, huge, SHOAL_PUT_OP_ALLOC, UINT64_MAX, 0, NULL, 0, &off),
                     SHOAL_EFULL);
    assert_int_equal(s_put_op(sock, 9, huge, SHOAL_PUT_OP_SEAL, 0, 0, NULL, 0, &off),
                     SHOAL_ENOTFOUND);
    assert_int_equal(s_put_op(sock, 10, huge, SHOAL_PUT_OP_ABORT, 0, 0, NULL, 0, &off), 0);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    s_assert_serving(c);
}

//  -------------------------------------------------------------------- no broker

static void test_a_broker_that_is_not_running_is_reported_within_the_deadline(void **state)
{
    (void)state;
    int port = h_free_port();
    assert_true(port > 0);
    char url[64], where[32];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    //  No cluster: SHOAL_BROKER is unset and --broker names the closed port. The first
    //  command keeps the default connect deadline (seconds); the others shorten it through
    //  $SHOAL_CONNECT_TIMEOUT to keep the test quick. 60 s here only catches a hang.
    const char *scripts[] = {
        "exec \"$SHOAL_BIN\" run --broker %s -- true",
        "SHOAL_CONNECT_TIMEOUT=1 exec \"$SHOAL_BIN\" workers --broker %s",
        "SHOAL_CONNECT_TIMEOUT=1 exec \"$SHOAL_BIN\" submit --broker %s --exec -- true",
        "SHOAL_CONNECT_TIMEOUT=1 SHOAL_BROKER=%s exec \"$SHOAL_BIN\" wait "
        "00000000000000010000000000010000",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        char script[256];
        snprintf(script, sizeof script, scripts[i], url);
        h_result_t *r = h_sh(NULL, 60000, "%s", script);
        int status = r->status;
        int64_t ms = r->elapsed_ms;
        bool named = h_contains(r->err, where);
        if (status != 2 || !named)
            print_error("`%s`: exit %d after %lld ms, stderr:\n%s\n", script, status, (long long)ms,
                        r->err);
        h_result_free(&r);
        assert_int_equal(status, 2);
        assert_true(named);
        assert_true(ms < 15000 * h_scale());
    }
}

//  -------------------------------------------------------------------- a taken name

static void test_a_worker_with_a_name_already_taken_is_refused_and_harms_nobody(void **state)
{
    h_cluster_t *c = h_state(state);
    //  Results on both workers first (more than one worker's credit, large enough to stay
    //  in their arenas).
    enum { N = 8 };
    const char *refs[N];
    for (int i = 0; i < N; i++)
        refs[i] = s_submit(c, "--exec", "--", "seq", h_fmt(c, "%d", i), "100000");
    const char *argv[N + 4] = {"wait", "--timeout", "60"};
    for (int i = 0; i < N; i++)
        argv[3 + i] = refs[i];
    h_assert_exit(h_runv(c, LONG_MS, argv), 0);

    const char *dir = h_fmt(c, "%s/impostor", c->tmp);
    h_result_t *r = h_run(c, 30000, "worker", "--broker", c->listen, "--name", c->workers[0].name,
                          "--store-dir", dir, "--shm-size", "16M", "--slots", "1", NULL);
    h_assert_exit(r, 2);
    assert_true(h_contains(r->err, c->workers[0].name));

    //  The rightful worker kept its arena: every result reads back, and new tasks run.
    for (int i = 0; i < N; i++) {
        r = h_sh(c, CMD_MS, "shoal get %s | cksum; seq %d 100000 | cksum", refs[i], i);
        h_assert_exit(r, 0);
        char *nl = strchr(r->out, '\n');
        assert_non_null(nl);
        if (strncmp(r->out, nl + 1, (size_t)(nl - r->out)) != 0)
            print_error("result %d changed: %s\n", i, r->out);
        assert_true(strncmp(r->out, nl + 1, (size_t)(nl - r->out)) == 0);
    }
    s_assert_serving(c);
}

int main(void)
{
    //  SHOAL_TEST_FILTER=PATTERN runs only the tests whose name matches (* wildcards).
    if (getenv("SHOAL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SHOAL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_broker_that_is_not_running_is_reported_within_the_deadline),
        cmocka_unit_test_setup_teardown(test_a_worker_killed_mid_run_loses_no_task, s_setup,
                                        h_fixture_stop),
        cmocka_unit_test_setup_teardown(test_garbage_on_the_broker_port_does_not_stop_it, s_setup,
                                        h_fixture_stop),
        cmocka_unit_test_setup_teardown(test_garbage_on_a_worker_data_port_does_not_stop_it,
                                        s_setup, h_fixture_stop),
        cmocka_unit_test_setup_teardown(test_a_put_with_a_missing_part_is_never_sealed, s_setup,
                                        h_fixture_stop),
        cmocka_unit_test_setup_teardown(
            test_a_worker_with_a_name_already_taken_is_refused_and_harms_nobody, s_setup,
            h_fixture_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
