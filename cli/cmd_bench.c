/*  cmd_bench.c: `shoal bench`, the figures of the control plane (issue 4) and of the object
    store (issue "object store core") measured the way users meet them; bench/README.md
    keeps the latest and says what each means.

    One line per figure on stdout, `NAME VALUE UNIT`, so scripts (bench/run) can read them;
    progress and notes go to stderr. The workloads:
    - throughput: N no-op fn tasks from one client, submitted as fast as shoal_submit
      batches them, timed until the client knows every completion (shoal_wait on all).
    - latency: sequential submit -> wait -> get of one no-op fn task, and as its baseline
      a raw libzmq DEALER -> ROUTER round trip over TCP loopback between two contexts,
      sampled in turns with it.
    - put: a 256 MiB put through shared memory against a memcpy of the same bytes, and
      a stream of 1 KiB puts to the broker until every one is acknowledged.
    - get: zero-copy gets from a worker's store on this host (1 KiB and 1 GiB objects),
      and a 256 MiB get over the worker's data socket against raw libzmq.
    - stream: a reader streaming a put while it is written: the delay from the writer's
      first byte to the reader's, and how much sooner a streaming reader of a 256 MiB
      object written in 1 MiB parts finishes than one that waits for the seal.
    - memory: a broker of our own with no workers, its VmRSS before and after a million
      tasks are queued in it.
    Without --broker, throughput and latency run on a local://2 cluster (2 workers x 1
    slot, the shape of the Dask comparison in bench/peers/), put and get on a local://1
    cluster whose arena is sized for the objects (and for this machine's free memory). */
#include "cli.h"

#include "common.h"
#include "store.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

enum {
    OPT_BROKER = 256,
    OPT_TASKS,
    OPT_QUEUED,
    OPT_SAMPLES,
    OPT_PLUGIN,
    OPT_PUTS,
    OPT_GETS,
    OPT_RUNS,
    OPT_OBJECT_SIZE,
    OPT_BIG_SIZE,
    OPT_SPILL_DIR,
};

enum {
    S_THROUGHPUT = 1,
    S_LATENCY = 2,
    S_MEMORY = 4,
    S_PUT = 8,
    S_GET = 16,
    S_STREAM = 32,
    S_ALL = 63,
    S_SPILL = 64, //  not in all: it writes 2 GiB to disk (with the default object size)
};

#define S_PLUGIN_NAME "libshoal_examples.so"
/*  The local cluster: the shape of the Dask comparison (LocalCluster, 2 processes x 1
    thread). No-op outputs are empty and travel inline, so a small arena is plenty. */
#define S_LOCAL_URL "local://2?slots=1&shm=64M"
/*  Tasks run before anything is timed, so every executor has loaded the plugin. */
#define S_WARMUP 200
/*  A run that makes no progress for this long has hung: say so rather than wait forever. */
#define S_STALL_MS 60000
/*  One reply (a wait on one task, a get, an echo) should take well under this. */
#define S_REPLY_MS 10000
/*  Progress lines on stderr at most this often. */
#define S_PROGRESS_MS 2000
/*  The size of the round-tripped message in the libzmq baseline: as small as a one-task
    submit is not (about 100 bytes), but the point is the per-message cost, not bytes. */
#define S_ECHO_BYTES 16

#define S_KIB 1024ull
#define S_MIB (1024ull * 1024)
/*  The object sizes the figures are named after; --object-size and --big-size change them
    (bench_smoke, a machine without the memory), and the unit then says so ("x@16MiB"). */
#define S_OBJECT_SIZE (256 * S_MIB)
#define S_BIG_SIZE    (1024 * S_MIB)
/*  The small objects of small_puts_per_s and local_get_1kib_us. */
#define S_SMALL_SIZE 1024
/*  What the store reserves for one small object: allocations are page-aligned. */
#define S_STORE_PAGE 4096
/*  libshoal fetches in chunks of 1 MiB (SHOAL_CHUNK_SIZE): the baseline streams the same
    messages. */
#define S_STREAM_CHUNK (1 * S_MIB)
/*  A generous margin for everything besides the objects and buffers counted: the broker,
    the worker and its executor, libzmq's queues, this process's code. */
#define S_RAM_SLACK (256 * S_MIB)
/*  Slack in the arena beyond the planned objects (the index, rounding). */
#define S_ARENA_SLACK (32 * S_MIB)

typedef struct {
    const char *broker; //  NULL: a local cluster of our own
    uint64_t tasks, queued, samples;
    uint64_t puts, gets, runs;      //  put/get: 1 KiB puts, 1 KiB gets, runs of ratios
    uint64_t object_size, big_size; //  put/get: the 256 MiB and the 1 GiB objects
    const char *plugin;
    char fn[PATH_MAX + 8]; //  "PATH:noop"
    int which;
    const char *spill_dir; //  spill: where its temporary store goes
} s_opts_t;

static const char s_help[] =
    "Usage: shoal bench [OPTIONS] [throughput|latency|put|get|stream|memory|all]\n"
    "\n"
    "Measures the control plane and the object store, and prints one line per figure on\n"
    "stdout, NAME VALUE UNIT (progress goes to stderr):\n"
    "  throughput_tasks_per_s        N no-op fn tasks submitted from one client, until\n"
    "                                the client knows every completion\n"
    "  latency_median_us             sequential submit -> wait -> get of one no-op fn\n"
    "  latency_p99_us                task (--samples of them)\n"
    "  zmq_rtt_median_us             the baseline: a raw libzmq DEALER -> ROUTER round\n"
    "                                trip of 16 bytes over TCP loopback, each side with\n"
    "                                its own context (I/O thread), as two processes;\n"
    "                                taken in turns with the latency samples\n"
    "  zmq_rtt_shared_io_median_us   the same with one context for both sides (one I/O\n"
    "                                thread serves both ends: faster than any two\n"
    "                                processes can be)\n"
    "  put_256mib_vs_memcpy          a memcpy of 256 MiB into pre-faulted memory, as a\n"
    "                                fraction of the time of a 256 MiB put (begin,\n"
    "                                shoal_put_write, end) on this host (goal 0.8)\n"
    "  small_puts_per_s              1 KiB shoal_put calls (--puts of them) until\n"
    "                                shoal_flush says the broker has every one (goal\n"
    "                                50000)\n"
    "  local_get_1kib_us             median shoal_get + shoal_view_release of a sealed\n"
    "  local_get_1gib_us             object in a store on this host (zero-copy), on a\n"
    "                                fresh connection after one warm-up get (goal 20 us)\n"
    "  remote_get_256mib_vs_zmq      the same 256 MiB streamed as 1 MiB messages over\n"
    "                                raw libzmq, as a fraction of the time of a get over\n"
    "                                the worker's data socket (SHOAL_NO_LOCAL_STORE=1;\n"
    "                                goal 0.7)\n"
    "  stream_first_byte_us          median delay from a writer's first byte (a put on\n"
    "                                this host, shoal_put_progress) to a streaming\n"
    "                                reader's first byte (shoal_stream_read)\n"
    "  stream_speedup                the time until a reader waiting for the seal has a\n"
    "                                256 MiB object written in 1 MiB parts over TCP, over\n"
    "                                the time until a streaming reader has read it all\n"
    "  broker_bytes_per_queued_task  a broker's memory per queued task: a broker of its\n"
    "                                own, without workers, VmRSS before and after\n"
    "                                --queued tasks are submitted and acknowledged\n"
    "  spill_mb_per_s                `spill` (not in all): 256 MiB (--object-size) spilled\n"
    "                                from a store's arena to its disk tier in 8 MiB steps\n"
    "                                as a worker does, best of --runs\n"
    "  restore_mb_per_s              the same object read back into the arena\n"
    "  spill_step_max_ms             the slowest 8 MiB step: how long a worker's loop\n"
    "                                stalls at most while spilling\n"
    "  persist_mb_per_s              a synced disk copy of the object (persist + flush)\n"
    "  persist_4kib_us               the same for 4 KiB: the cost of the syncs\n"
    "  dd_mb_per_s                   the baseline: dd conv=fdatasync of the same size\n"
    "                                into the same directory (--spill-dir DIR, default\n"
    "                                under ~/.local/state/shoal), best of --runs\n"
    "`throughput` gives the first, `latency` the next three, `put` the next two, `get`\n"
    "the next three, `stream` the next two, `memory` the last, `all` (the default) every\n"
    "one. Without --broker,\n"
    "throughput and latency run on a local cluster started for the purpose, a broker and\n"
    "2 workers x 1 slot (local://2); put and get on one of 1 worker whose arena holds\n"
    "their objects, made smaller (and the units marked, as x@128MiB) when this machine's\n"
    "free memory (MemAvailable, /dev/shm) cannot hold them.\n"
    "The no-op task is the function noop of the example plugin " S_PLUGIN_NAME ",\n"
    "taken from --plugin, else $SHOAL_EXAMPLES_PLUGIN, else next to this shoal binary.\n"
    "\n"
    "Options:\n"
    "  --broker URL     measure an existing cluster instead (the plugin path must then\n"
    "                   exist on its workers); broker_bytes_per_queued_task is skipped,\n"
    "                   since a remote broker's memory cannot be read\n"
    "  --tasks N        throughput: how many tasks (default 100000)\n"
    "  --queued N       memory: how many queued tasks (default 1000000)\n"
    "  --samples N      latency: how many round trips, for shoal and for libzmq\n"
    "                   (default 1000)\n"
    "  --puts N         put: how many 1 KiB puts (default 100000)\n"
    "  --gets N         get: how many 1 KiB objects to get, once each (default 1000);\n"
    "                   the big object is got N/10 times (at least once)\n"
    "  --runs N         put, get, stream: runs of each side of a ratio (default 5),\n"
    "                   alternating\n"
    "  --object-size SIZE  put, get, stream: the object of put_256mib_vs_memcpy,\n"
    "                   remote_get_256mib_vs_zmq and stream_speedup (default 256M)\n"
    "  --big-size SIZE  get: the object of local_get_1gib_us (default 1G)\n"
    "  --plugin PATH    the example plugin (" S_PLUGIN_NAME ")\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 when every figure was measured, 1 when a task failed, 3 when tasks\n"
    "stopped finishing (60 s without progress) or a reply took over 10 s, 2 otherwise.\n"
    "Benchmarks are noisy: run them on a quiet machine. bench/run compares with Dask.\n";

/*  --------------------------------------------------------------------- helpers */

static int s_progress_due(int64_t *last_ms)
{
    int64_t now = shoal__now_ms();
    if (now - *last_ms < S_PROGRESS_MS)
        return 0;
    *last_ms = now;
    return 1;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

//  The p-th percentile (nearest rank: the ceil(p/100 * n)-th smallest) of n >= 1 sorted
//  samples.
static double s_percentile(const int64_t *sorted, size_t n, unsigned p)
{
    size_t rank = (n * p + 99) / 100;
    return (double)sorted[SHOAL__MAX(rank, (size_t)1) - 1];
}

//  The median of n sorted samples (the mean of the middle two when n is even).
static double s_median(const int64_t *sorted, size_t n)
{
    return n % 2 ? (double)sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
}

static void s_figure(const char *name, double value, const char *unit)
{
    printf("%s %.*f %s\n", name, value >= 1000 ? 0 : 1, value, unit);
    fflush(stdout);
}

//  The directory of the running binary, into dir. 0 or -1.
static int s_exe_dir(char *dir, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    if (n <= 0)
        return -1;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

//  Finds the example plugin and sets o->fn to "PATH:noop". 0 or an exit status, having
//  said where it looked.
static int s_find_plugin(const char *cmd, s_opts_t *o)
{
    char path[PATH_MAX], dir[PATH_MAX];
    const char *env = getenv("SHOAL_EXAMPLES_PLUGIN");
    const char *from;
    if (o->plugin) {
        from = "--plugin";
        shoal__strlcpy(path, o->plugin, sizeof path);
        //  A remote cluster's workers load it: it need not exist here.
        if (o->broker && path[0] == '/')
            goto found;
    } else if (env && *env) {
        from = "$SHOAL_EXAMPLES_PLUGIN";
        shoal__strlcpy(path, env, sizeof path);
    } else {
        from = "next to this shoal";
        if (s_exe_dir(dir, sizeof dir) != 0)
            return cli_fail(cmd, CLI_EXIT_USAGE,
                            "cannot find " S_PLUGIN_NAME ": /proc/self/exe is unreadable; pass "
                            "--plugin PATH");
        snprintf(path, sizeof path, "%.*s/" S_PLUGIN_NAME, (int)(sizeof path - 32), dir);
        if (access(path, R_OK) != 0)
            return cli_fail(cmd, CLI_EXIT_USAGE,
                            "cannot find the example plugin: no %s (next to this shoal), and "
                            "neither --plugin nor $SHOAL_EXAMPLES_PLUGIN is given. Build the "
                            "shoal_examples target, or pass --plugin PATH",
                            path);
    }
    char real[PATH_MAX];
    if (!realpath(path, real) || access(real, R_OK) != 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "the example plugin %s (from %s): %s", path, from,
                        strerror(errno ? errno : ENOENT));
    shoal__strlcpy(path, real, sizeof path);
found:
    snprintf(o->fn, sizeof o->fn, "%s:noop", path);
    return 0;
}

//  The exit status for a failed wait or get: a task failed (1), time ran out (3), or
//  anything else went wrong (2).
static int s_exit_for(int rc)
{
    if (rc == SHOAL_ETASK || rc == SHOAL_ECANCELED || rc == SHOAL_ENOTFOUND)
        return CLI_EXIT_FAILED;
    return cli_exit_for(rc);
}

//  Runs S_WARMUP no-op tasks and waits for them, untimed: every executor has then loaded
//  the plugin and every cache is warm. 0 or an exit status.
static int s_warm_up(const char *cmd, shoal_t *sh, const s_opts_t *o)
{
    shoal_ref_t ids[S_WARMUP];
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = o->fn};
    for (size_t i = 0; i < S_WARMUP; i++)
        if (shoal_submit(sh, &spec, &ids[i]) != 0)
            return cli_fail(cmd, CLI_EXIT_USAGE, "warm-up: %s", shoal_last_error(sh));
    int rc = shoal_wait(sh, ids, S_WARMUP, false, S_STALL_MS);
    if (rc)
        return cli_fail(cmd, s_exit_for(rc), "warm-up: %d no-op tasks (%s): %s", S_WARMUP, o->fn,
                        shoal_last_error(sh));
    shoal_remove(sh, ids, S_WARMUP, S_REPLY_MS);
    return 0;
}

/*  ------------------------------------------------------------------ throughput */

static int s_throughput(const char *cmd, shoal_t *sh, const s_opts_t *o)
{
    size_t n = (size_t)o->tasks;
    shoal_ref_t *ids = malloc(n * sizeof *ids);
    if (!ids)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory for %zu refs", n);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = o->fn};
    fprintf(stderr, "shoal bench: throughput: %zu no-op tasks\n", n);
    int status = CLI_EXIT_OK;
    int64_t start = shoal__now_us();
    for (size_t i = 0; i < n; i++)
        if (shoal_submit(sh, &spec, &ids[i]) != 0) {
            status = cli_fail(cmd, CLI_EXIT_USAGE, "throughput: submitting task %zu: %s", i,
                              shoal_last_error(sh));
            goto done;
        }
    int64_t submitted = shoal__now_us();
    //  Wait in slices for progress on stderr. Refs before `known` are final: completions
    //  arrive in about submission order, so this lower bound tracks them closely.
    size_t known = 0, known_before = 0;
    int64_t last_progress = shoal__now_ms(), last_change = last_progress;
    int rc;
    shoal_status_t st;
    while ((rc = shoal_wait(sh, ids, n, false, S_PROGRESS_MS)) == SHOAL_ETIMEDOUT) {
        while (known < n && shoal_status(sh, ids[known], &st) == 0)
            known++;
        int64_t now = shoal__now_ms();
        if (known != known_before)
            last_change = now, known_before = known;
        else if (now - last_change >= S_STALL_MS) {
            status = cli_fail(cmd, CLI_EXIT_TIMEOUT,
                              "throughput: no progress in %d s: %s (is every worker alive?)",
                              S_STALL_MS / 1000, shoal_last_error(sh));
            goto done;
        }
        if (s_progress_due(&last_progress))
            fprintf(stderr, "shoal bench: throughput: %zu of %zu done\n", known, n);
    }
    int64_t end = shoal__now_us();
    if (rc) {
        status = cli_fail(cmd, s_exit_for(rc), "throughput: %s", shoal_last_error(sh));
        goto done;
    }
    fprintf(stderr, "shoal bench: throughput: submitted in %.3f s, all known done after %.3f s\n",
            (submitted - start) / 1e6, (end - start) / 1e6);
    s_figure("throughput_tasks_per_s", (double)n * 1e6 / (double)SHOAL__MAX(end - start, 1),
             "tasks/s");
done:
    //  Leave the broker as we found it for the next workload (untimed).
    shoal_remove(sh, ids, n, S_STALL_MS);
    free(ids);
    return status;
}

/*  ------------------------------------------------------------ the libzmq baseline */

/*  A raw libzmq DEALER -> ROUTER round trip over TCP loopback: an echo thread with a
    ROUTER, and a DEALER in the calling thread. The baseline of zmq_rtt_median_us gives
    each side a libzmq context of its own, so a message crosses two I/O threads as it does
    between a client and the broker, or any two processes (the round trip DESIGN.md quotes,
    ~90 us here, is that one). With one context for both sides (the "shared" figure) the
    same I/O thread writes and reads the loopback connection, which no two processes can
    do: on this machine 65 us against 88 us (a small program timing both, 3 runs each). */
typedef struct {
    void *ctx, *echo_ctx; //  echo_ctx == ctx for the shared figure
    void *router, *dealer;
    pthread_t thread;
    bool running;
    char endpoint[256];
} s_rtt_t;

//  The ROUTER side: sends every message back to whoever sent it, until an empty one or
//  an error (ETERM: the context is closing). The DEALER's receive timeout reports a
//  missing echo.
static void *s_echo_run(void *arg)
{
    s_rtt_t *rtt = arg;
    for (bool stop = false; !stop;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        stop = zmq_msg_recv(&id, rtt->router, 0) < 0 || zmq_msg_recv(&body, rtt->router, 0) < 0 ||
               zmq_msg_size(&body) == 0 || zmq_msg_send(&id, rtt->router, ZMQ_SNDMORE) < 0 ||
               zmq_msg_send(&body, rtt->router, 0) < 0;
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

static void s_rtt_close(s_rtt_t *rtt)
{
    if (rtt->running) {
        //  The empty message stops the echo; should it be lost, closing the context
        //  (ETERM) does.
        zmq_send(rtt->dealer, "", 0, ZMQ_DONTWAIT);
        zmq_close(rtt->dealer);
        rtt->dealer = NULL;
        zmq_ctx_shutdown(rtt->echo_ctx);
        pthread_join(rtt->thread, NULL);
        rtt->running = false;
    }
    if (rtt->dealer)
        zmq_close(rtt->dealer);
    if (rtt->router)
        zmq_close(rtt->router);
    if (rtt->echo_ctx && rtt->echo_ctx != rtt->ctx)
        zmq_ctx_term(rtt->echo_ctx);
    if (rtt->ctx)
        zmq_ctx_term(rtt->ctx);
    *rtt = (s_rtt_t){0};
}

//  Sets up one baseline: its sockets connected, its echo thread running, the first
//  S_WARMUP round trips done (the connection, cold caches), as for shoal.
static int s_rtt_open(const char *cmd, s_rtt_t *rtt, bool shared)
{
    *rtt = (s_rtt_t){0};
    int timeout = S_REPLY_MS, linger = 0;
    size_t len = sizeof rtt->endpoint;
    rtt->ctx = zmq_ctx_new();
    rtt->echo_ctx = shared ? rtt->ctx : zmq_ctx_new();
    if (!rtt->ctx || !rtt->echo_ctx) {
        s_rtt_close(rtt);
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: %s", zmq_strerror(errno));
    }
    rtt->router = zmq_socket(rtt->echo_ctx, ZMQ_ROUTER);
    rtt->dealer = zmq_socket(rtt->ctx, ZMQ_DEALER);
    if (!rtt->router || !rtt->dealer ||
        zmq_setsockopt(rtt->router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(rtt->dealer, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(rtt->dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        zmq_bind(rtt->router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(rtt->router, ZMQ_LAST_ENDPOINT, rtt->endpoint, &len) != 0 ||
        zmq_connect(rtt->dealer, rtt->endpoint) != 0) {
        int rc = cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: sockets: %s", zmq_strerror(errno));
        s_rtt_close(rtt);
        return rc;
    }
    //  pthread_create is a full barrier: the ROUTER passes to the thread safely.
    if (pthread_create(&rtt->thread, NULL, s_echo_run, rtt) != 0) {
        s_rtt_close(rtt);
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: cannot start a thread");
    }
    rtt->running = true;
    return 0;
}

//  One timed round trip into *us.
static int s_rtt_once(const char *cmd, s_rtt_t *rtt, int64_t *us)
{
    char msg[S_ECHO_BYTES] = "shoal bench rtt", back[S_ECHO_BYTES];
    int64_t t0 = shoal__now_us();
    if (zmq_send(rtt->dealer, msg, sizeof msg, 0) != (int)sizeof msg ||
        zmq_recv(rtt->dealer, back, sizeof back, 0) != (int)sizeof back)
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: a round trip over %s: %s",
                        rtt->endpoint,
                        errno == EAGAIN ? "no echo within 10 s" : zmq_strerror(errno));
    *us = shoal__now_us() - t0;
    return 0;
}

/*  --------------------------------------------------------------------- latency */

/*  Shoal's samples and the baselines' are taken in turns, S_LATENCY_BLOCK of each at a
    time, so what else runs on a shared machine weighs on both alike: run one after the
    other, the baseline moved by 20 us between runs minutes apart here, more than the
    ratio's margin. The first round trip of each turn is not timed: after a few ms of
    the other's traffic it met cold caches and sleeping CPUs (blocks of 50 with it timed
    raised the p99 from ~400 to ~500 us). */
#define S_LATENCY_BLOCK 100

//  One timed submit -> wait -> get of a no-op task into *us; its id into *id.
static int s_latency_once(const char *cmd, shoal_t *sh, const shoal_task_spec_t *spec,
                          shoal_ref_t *id, int64_t *us)
{
    int64_t t0 = shoal__now_us();
    int rc = shoal_submit(sh, spec, id);
    if (rc)
        return cli_fail(cmd, CLI_EXIT_USAGE, "latency: submit: %s", shoal_last_error(sh));
    shoal_view_t view;
    if ((rc = shoal_wait(sh, id, 1, false, S_REPLY_MS)) != 0 ||
        (rc = shoal_get(sh, shoal_ref_output(*id, 0), S_REPLY_MS, &view)) != 0)
        return cli_fail(cmd, s_exit_for(rc), "latency: a task: %s", shoal_last_error(sh));
    shoal_view_release(&view);
    *us = shoal__now_us() - t0;
    return 0;
}

static int s_latency(const char *cmd, shoal_t *sh, const s_opts_t *o)
{
    size_t n = (size_t)o->samples;
    int64_t *us = malloc(3 * n * sizeof *us);
    //  The timed tasks and the untimed first one of each turn, removed at the end.
    shoal_ref_t *ids = malloc((n + n / S_LATENCY_BLOCK + 1) * sizeof *ids);
    int status = CLI_EXIT_OK;
    size_t made = 0, base = 0, n_ids = 0;
    s_rtt_t rtt[2] = {0}; //  [0]: a context per side (the baseline), [1]: one shared
    if (!us || !ids) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
        goto done;
    }
    if ((status = s_rtt_open(cmd, &rtt[0], false)) != 0 ||
        (status = s_rtt_open(cmd, &rtt[1], true)) != 0)
        goto done;
    fprintf(stderr,
            "shoal bench: latency: %zu sequential submit -> wait -> get, in turns with as many "
            "raw libzmq round trips\n",
            n);
    int64_t *zmq_us = us + n, *shared_us = us + 2 * n, spare;
    //  As for shoal (s_warm_up), the first round trips are not timed.
    for (size_t i = 0; i < S_WARMUP; i++)
        if ((status = s_rtt_once(cmd, &rtt[0], &spare)) != 0 ||
            (status = s_rtt_once(cmd, &rtt[1], &spare)) != 0)
            goto done;
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = o->fn};
    int64_t last_progress = shoal__now_ms();
    while (made < n) {
        size_t block = n - made < S_LATENCY_BLOCK ? n - made : S_LATENCY_BLOCK;
        if ((status = s_latency_once(cmd, sh, &spec, &ids[n_ids++], &spare)) != 0)
            goto done;
        for (size_t i = 0; i < block; i++, made++)
            if ((status = s_latency_once(cmd, sh, &spec, &ids[n_ids++], &us[made])) != 0)
                goto done;
        if ((status = s_rtt_once(cmd, &rtt[0], &spare)) != 0 ||
            (status = s_rtt_once(cmd, &rtt[1], &spare)) != 0)
            goto done;
        for (size_t i = 0; i < block; i++, base++)
            if ((status = s_rtt_once(cmd, &rtt[0], &zmq_us[base])) != 0 ||
                (status = s_rtt_once(cmd, &rtt[1], &shared_us[base])) != 0)
                goto done;
        if (s_progress_due(&last_progress))
            fprintf(stderr, "shoal bench: latency: %zu of %zu\n", made, n);
    }
    qsort(us, n, sizeof *us, s_cmp_i64);
    qsort(zmq_us, n, sizeof *us, s_cmp_i64);
    qsort(shared_us, n, sizeof *us, s_cmp_i64);
    s_figure("latency_median_us", s_median(us, n), "us");
    s_figure("latency_p99_us", s_percentile(us, n, 99), "us");
    s_figure("zmq_rtt_median_us", s_median(zmq_us, n), "us");
    s_figure("zmq_rtt_shared_io_median_us", s_median(shared_us, n), "us");
done:
    s_rtt_close(&rtt[0]);
    s_rtt_close(&rtt[1]);
    if (n_ids)
        shoal_remove(sh, ids, n_ids, S_REPLY_MS);
    free(ids);
    free(us);
    return status;
}

/*  ------------------------------------------------------------------ put and get */

//  Monotonic nanoseconds: a local get takes about a microsecond, the grain of
//  shoal__now_us.
static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  Keeps the compiler from dropping a copy into memory that is never read again.
static void s_clobber(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void s_figure_digits(const char *name, double value, int digits, const char *unit)
{
    printf("%s %.*f %s\n", name, digits, value, unit);
    fflush(stdout);
}

//  Microseconds with two decimals below 10 (a local get is about one).
static void s_figure_us(const char *name, double us, const char *unit)
{
    s_figure_digits(name, us, us < 10 ? 2 : 1, unit);
}

//  "1GiB", "256MiB", "4KiB", "100B": exact, for units and notes.
static char *s_size_text(uint64_t bytes, char *buf, size_t size)
{
    if (bytes && bytes % (1024 * S_MIB) == 0)
        snprintf(buf, size, "%lluGiB", (unsigned long long)(bytes / (1024 * S_MIB)));
    else if (bytes && bytes % S_MIB == 0)
        snprintf(buf, size, "%lluMiB", (unsigned long long)(bytes / S_MIB));
    else if (bytes && bytes % S_KIB == 0)
        snprintf(buf, size, "%lluKiB", (unsigned long long)(bytes / S_KIB));
    else
        snprintf(buf, size, "%lluB", (unsigned long long)bytes);
    return buf;
}

//  The unit of a figure measured at another size than its name says: "x@64MiB", so
//  nobody takes it for the real one.
static const char *s_unit_at(const char *unit, uint64_t size, uint64_t named, char *buf, size_t n)
{
    if (size == named)
        return unit;
    char text[32];
    snprintf(buf, n, "%s@%s", unit, s_size_text(size, text, sizeof text));
    return buf;
}

//  A "Key:   N kB" line of /proc/meminfo, in bytes; -1 when unreadable.
static int64_t s_meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return -1;
    char line[256];
    int64_t kb = -1;
    size_t len = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0 && line[len] == ':') {
            kb = strtoll(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

//  Sizes of the objects of put and get, and the arena of a local cluster that holds them.
typedef struct {
    uint64_t object; //  put_256mib_vs_memcpy, remote_get_256mib_vs_zmq
    uint64_t big;    //  local_get_1gib_us
    uint64_t arena;  //  a local cluster's worker: its --shm-size
} s_plan_t;

/*  The arena for the objects of the workloads that run. put removes each object before the
    next, but a removed object's space is free again only once the worker has flushed the
    delete, which may come after the next put's allocation: room for two. get holds the
    big object, its small ones (a page each: allocations are page-aligned) and the object
    of the remote get at once. */
static uint64_t s_arena_for(const s_opts_t *o, uint64_t object, uint64_t big)
{
    uint64_t need = 0;
    if (o->which & S_PUT)
        need = 2 * object;
    if (o->which & S_GET)
        need = SHOAL__MAX(need, big + object + (o->gets + 2) * S_STORE_PAGE);
    need += S_ARENA_SLACK;
    return (need + S_MIB - 1) / S_MIB * S_MIB;
}

//  The largest power of two below n (n >= 2).
static uint64_t s_pow2_below(uint64_t n)
{
    uint64_t p = 1;
    while (p * 2 < n)
        p *= 2;
    return p;
}

/*  Makes the objects smaller (the larger first, to powers of two) until the arena fits in
    shm_room and everything fits in ram_room: the arena when it is RAM (a local cluster's
    /dev/shm), and this process's buffers: put's source and memcpy destination, the
    remote get's buffer in libshoal, the baseline's source, receive buffer and what
    libzmq queues between them (up to the whole stream). 0, or -1 when even 1 MiB objects
    do not fit. */
static int s_plan_fit(const s_opts_t *o, s_plan_t *p, uint64_t shm_room, uint64_t ram_room,
                      bool arena_in_ram)
{
    for (;;) {
        uint64_t arena = s_arena_for(o, p->object, p->big);
        uint64_t ram = 4 * p->object + S_RAM_SLACK + (arena_in_ram ? arena : 0);
        if (arena <= shm_room && ram <= ram_room) {
            p->arena = arena;
            return 0;
        }
        if ((o->which & S_GET) && p->big >= p->object && p->big > S_MIB)
            p->big = s_pow2_below(p->big);
        else if (p->object > S_MIB)
            p->object = s_pow2_below(p->object);
        else
            return -1;
    }
}

//  Says on stderr which objects were made smaller than asked, and why.
static void s_plan_note(const s_opts_t *o, const s_plan_t *p, const char *why)
{
    char a[32], b[32];
    if (p->big != o->big_size)
        fprintf(stderr,
                "shoal bench: get: %s: the big object of local_get_1gib_us is %s, not %s (its "
                "unit says so)\n",
                why, s_size_text(p->big, a, sizeof a), s_size_text(o->big_size, b, sizeof b));
    if (p->object != o->object_size)
        fprintf(stderr,
                "shoal bench: put, get: %s: the object of put_256mib_vs_memcpy and "
                "remote_get_256mib_vs_zmq is %s, not %s (their units say so)\n",
                why, s_size_text(p->object, a, sizeof a), s_size_text(o->object_size, b, sizeof b));
}

/*  The worker on this host with the most free space in its store, into name ("" when no
    worker is here), with its free bytes in *free_here; the most free bytes of any worker
    in *free_any. 0 or an exit status. */
static int s_pick_worker(const char *cmd, shoal_t *sh, char *name, size_t size, uint64_t *free_here,
                         uint64_t *free_any)
{
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    int rc = shoal_workers(sh, &list, &n, S_REPLY_MS);
    if (rc)
        return cli_fail(cmd, cli_exit_for(rc), "listing the workers: %s", shoal_last_error(sh));
    name[0] = '\0';
    *free_here = *free_any = 0;
    for (size_t i = 0; i < n; i++) {
        const shoal_worker_info_t *w = &list[i];
        uint64_t room = w->store_capacity > w->store_bytes ? w->store_capacity - w->store_bytes : 0;
        *free_any = SHOAL__MAX(*free_any, room);
        if (strcmp(w->host, shoal__hostname()) == 0 && (!name[0] || room > *free_here)) {
            shoal__strlcpy(name, w->name, size);
            *free_here = room;
        }
    }
    shoal_workers_free(&list, n);
    if (n == 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "no worker is connected to the broker at %s",
                        shoal_broker_endpoint(sh));
    return 0;
}

/*  Puts size bytes from src the way shoal_put does: begin, shoal_put_write (libshoal
    copies into the worker's arena when the worker is on this host, else sends 1 MiB
    parts), end. src NULL: a filler byte, set in place through shoal_put_memory (or
    written in 1 MiB pieces when there is no shared memory), so 1 GiB needs no buffer
    here; only then does *mapped tell whether the bytes went through shared memory (else
    it is true). steps, when not NULL, receives the nanoseconds of the three steps (begin,
    write, end). 0 or a SHOAL_E* code (shoal_last_error says why). */
static int s_put_object(shoal_t *sh, const void *src, uint64_t size, const shoal_put_opts_t *opts,
                        shoal_ref_t *ref, bool *mapped, int64_t steps[3])
{
    shoal_put_t *put = NULL;
    int64_t t0 = s_now_ns();
    int rc = shoal_put_begin(sh, size, opts, ref, &put);
    if (rc)
        return rc;
    int64_t t1 = s_now_ns();
    uint8_t *mem = src ? NULL : shoal_put_memory(put);
    *mapped = src || mem != NULL;
    if (mem)
        memset(mem, 0x5a, (size_t)size);
    else if (src)
        rc = shoal_put_write(put, src, (size_t)size);
    else {
        static uint8_t piece[S_STREAM_CHUNK];
        memset(piece, 0x5a, sizeof piece);
        for (uint64_t done = 0; rc == 0 && done < size; done += sizeof piece)
            rc = shoal_put_write(put, piece, (size_t)SHOAL__MIN(size - done, sizeof piece));
    }
    if (rc) {
        shoal_put_abort(&put);
        return rc;
    }
    int64_t t2 = s_now_ns();
    rc = shoal_put_end(&put);
    if (steps) {
        steps[0] = t1 - t0;
        steps[1] = t2 - t1;
        steps[2] = s_now_ns() - t2;
    }
    return rc;
}

//  Removes n objects (untimed housekeeping); a failure is only a warning.
static void s_remove(const char *what, shoal_t *sh, const shoal_ref_t *refs, size_t n)
{
    int rc = n ? shoal_remove(sh, refs, n, S_STALL_MS) : 0;
    if (rc < 0)
        fprintf(stderr, "shoal bench: %s: removing %zu objects: %s\n", what, n,
                shoal_last_error(sh));
}

static int s_put_vs_memcpy(const char *cmd, shoal_t *sh, const s_opts_t *o, uint64_t size)
{
    const char *name = "put_256mib_vs_memcpy";
    size_t n = (size_t)size, runs = (size_t)o->runs;
    uint8_t *src = malloc(n), *dst = malloc(n);
    int64_t *copy_ns = calloc(runs, sizeof *copy_ns), *put_ns = calloc(runs, sizeof *put_ns);
    //  The steps of each put (begin, write, end), to say where its time goes.
    int64_t *step_ns = calloc(3 * runs, sizeof *step_ns);
    int status = CLI_EXIT_OK, rc;
    char text[32], unit[48];
    if (!src || !dst || !copy_ns || !put_ns || !step_ns) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "put: out of memory for 2 x %s",
                          s_size_text(size, text, sizeof text));
        goto done;
    }
    //  Both buffers are touched before anything is timed: the memcpy is into pre-faulted
    //  memory, as the put's is (the arena is pre-faulted, and the put's mapping populated).
    memset(src, 0x5a, n);
    memset(dst, 0xa5, n); //  not 0: malloc + memset 0 may become calloc, which touches nothing
    fprintf(stderr,
            "shoal bench: %s: the time of a memcpy of %s into pre-faulted memory over the time "
            "of a put of the same bytes (shoal_put_begin, shoal_put_write, shoal_put_end: "
            "allocate, write, seal), medians of %zu runs of each, alternating\n",
            name, s_size_text(size, text, sizeof text), runs);
    //  One put untimed: the list of workers, the first connection to the worker.
    shoal_ref_t ref;
    bool mapped;
    if ((rc = s_put_object(sh, src, size, NULL, &ref, &mapped, NULL)) != 0) {
        status = cli_fail(cmd, cli_exit_for(rc), "put: %s", shoal_last_error(sh));
        goto done;
    }
    s_remove("put", sh, &ref, 1);
    if (!mapped)
        fprintf(stderr,
                "shoal bench: %s: no worker's store is mapped here (none on this host?): the "
                "bytes go by message (shoal_put_write), not through shared memory\n",
                name);
    for (size_t r = 0; r < runs; r++) {
        int64_t t0 = s_now_ns();
        memcpy(dst, src, n);
        s_clobber(dst);
        copy_ns[r] = s_now_ns() - t0;
        int64_t steps[3];
        t0 = s_now_ns();
        rc = s_put_object(sh, src, size, NULL, &ref, &mapped, steps);
        put_ns[r] = s_now_ns() - t0;
        for (int k = 0; k < 3; k++)
            step_ns[k * runs + r] = steps[k];
        if (rc) {
            status = cli_fail(cmd, cli_exit_for(rc), "put: run %zu: %s", r, shoal_last_error(sh));
            goto done;
        }
        s_remove("put", sh, &ref, 1);
    }
    qsort(copy_ns, runs, sizeof *copy_ns, s_cmp_i64);
    qsort(put_ns, runs, sizeof *put_ns, s_cmp_i64);
    double copy = s_median(copy_ns, runs), put = s_median(put_ns, runs);
    fprintf(stderr,
            "shoal bench: %s: memcpy %.1f ms (%.2f GB/s), put %.1f ms (%.2f GB/s); put runs "
            "%.1f .. %.1f ms\n",
            name, copy / 1e6, (double)size / copy, put / 1e6, (double)size / put, put_ns[0] / 1e6,
            put_ns[runs - 1] / 1e6);
    for (int k = 0; k < 3; k++)
        qsort(step_ns + k * runs, runs, sizeof *step_ns, s_cmp_i64);
    fprintf(stderr,
            "shoal bench: %s: medians of the put's steps: shoal_put_begin %.1f ms (allocate, "
            "map), %s %.1f ms, shoal_put_end %.1f ms (seal, unmap)\n",
            name, s_median(step_ns, runs) / 1e6, mapped ? "memcpy" : "shoal_put_write",
            s_median(step_ns + runs, runs) / 1e6, s_median(step_ns + 2 * runs, runs) / 1e6);
    s_figure_digits(name, copy / put, 3, s_unit_at("x", size, S_OBJECT_SIZE, unit, sizeof unit));
done:
    free(step_ns);
    free(put_ns);
    free(copy_ns);
    free(dst);
    free(src);
    return status;
}

static int s_small_puts(const char *cmd, shoal_t *sh, const s_opts_t *o)
{
    size_t n = (size_t)o->puts, made = 0;
    shoal_ref_t *refs = malloc(n * sizeof *refs);
    if (!refs)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory for %zu refs", n);
    fprintf(stderr,
            "shoal bench: small_puts_per_s: %zu puts of 1 KiB from one client with shoal_put "
            "(default options: inline to the broker, batched like submissions), timed until "
            "shoal_flush says the broker has acknowledged every one\n",
            n);
    uint8_t buf[S_SMALL_SIZE];
    memset(buf, 0x5a, sizeof buf);
    int status = CLI_EXIT_OK, rc;
    int64_t t0 = s_now_ns();
    for (; made < n; made++) {
        memcpy(buf, &made, sizeof made); //  distinct objects
        if ((rc = shoal_put(sh, buf, sizeof buf, NULL, &refs[made])) != 0) {
            status = cli_fail(cmd, cli_exit_for(rc), "small puts: put %zu: %s", made,
                              shoal_last_error(sh));
            goto done;
        }
    }
    if ((rc = shoal_flush(sh, S_STALL_MS)) != 0) {
        status = cli_fail(cmd, cli_exit_for(rc), "small puts: %s", shoal_last_error(sh));
        goto done;
    }
    int64_t ns = s_now_ns() - t0;
    fprintf(stderr, "shoal bench: small_puts_per_s: %zu puts acknowledged in %.3f s\n", n,
            ns / 1e9);
    s_figure("small_puts_per_s", (double)n * 1e9 / (double)SHOAL__MAX(ns, 1), "puts/s");
done:
    s_remove("small puts", sh, refs, made);
    free(refs);
    return status;
}

/*  Gets refs[i] (distinct) or refs[0] on reader and releases the view, n times; the time
    of each get + release in ns[i], and of the release alone in release_ns[i] unless that
    is NULL. The view must have size bytes. 0 or an exit status. */
static int s_time_gets(const char *cmd, shoal_t *reader, const shoal_ref_t *refs, size_t n,
                       bool distinct, uint64_t size, int64_t *ns, int64_t *release_ns)
{
    for (size_t i = 0; i < n; i++) {
        shoal_view_t view = {0};
        int64_t t0 = s_now_ns();
        int rc = shoal_get(reader, refs[distinct ? i : 0], S_REPLY_MS, &view);
        size_t got = rc ? 0 : view.size;
        int64_t t1 = release_ns ? s_now_ns() : 0;
        shoal_view_release(&view);
        ns[i] = s_now_ns() - t0;
        if (release_ns)
            release_ns[i] = t0 + ns[i] - t1;
        if (rc)
            return cli_fail(cmd, s_exit_for(rc), "get: %s", shoal_last_error(reader));
        if (got != size)
            return cli_fail(cmd, CLI_EXIT_USAGE, "get: %zu bytes, not %llu", got,
                            (unsigned long long)size);
    }
    return 0;
}

static int s_local_gets(const char *cmd, shoal_t *sh, const s_opts_t *o, const char *worker,
                        uint64_t big)
{
    size_t n = (size_t)o->gets, n_big = SHOAL__MAX(n / 10, (size_t)1), made = 0;
    //  refs[0]: the warm-up object; refs[1 .. n]: the small ones; refs[n + 1]: the big one.
    shoal_ref_t *refs = malloc((n + 2) * sizeof *refs);
    int64_t *ns = malloc(SHOAL__MAX(n, n_big) * sizeof *ns);
    shoal_t *reader = NULL;
    int status = CLI_EXIT_OK, rc;
    char text[32], unit[48];
    if (!refs || !ns) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
        goto done;
    }
    shoal_put_opts_t opts = {.worker = worker, .flags = SHOAL_PUT_STORE};
    fprintf(stderr,
            "shoal bench: local_get_1kib_us, local_get_1gib_us: median shoal_get + "
            "shoal_view_release of an object sealed in the store of worker %s on this host "
            "(read zero-copy through its index and a pin in shared memory), on a fresh "
            "connection after one warm-up get: %zu distinct 1 KiB objects once each, a %s "
            "object %zu times\n",
            worker, n, s_size_text(big, text, sizeof text), n_big);
    uint8_t buf[S_SMALL_SIZE];
    memset(buf, 0x5a, sizeof buf);
    for (; made < n + 1; made++) {
        memcpy(buf, &made, sizeof made);
        if ((rc = shoal_put(sh, buf, sizeof buf, &opts, &refs[made])) != 0) {
            status = cli_fail(cmd, cli_exit_for(rc), "get: putting 1 KiB object %zu: %s", made,
                              shoal_last_error(sh));
            goto done;
        }
    }
    bool mapped;
    if ((rc = s_put_object(sh, NULL, big, &opts, &refs[made], &mapped, NULL)) != 0) {
        status = cli_fail(cmd, cli_exit_for(rc), "get: putting the %s object: %s", text,
                          shoal_last_error(sh));
        goto done;
    }
    made++;
    if ((rc = shoal_flush(sh, S_STALL_MS)) != 0) {
        status = cli_fail(cmd, cli_exit_for(rc), "get: %s", shoal_last_error(sh));
        goto done;
    }
    //  A fresh connection, as a program that reads results has; its one warm-up get opens
    //  the worker's store (maps the arena, opens the index).
    if ((status = cli_connect(cmd, shoal_broker_endpoint(sh), &reader)) != 0)
        goto done;
    if ((status = s_time_gets(cmd, reader, refs, 1, false, S_SMALL_SIZE, ns, NULL)) != 0)
        goto done;
    fprintf(stderr, "shoal bench: get: the warm-up get took %.1f us\n", ns[0] / 1e3);
    if ((status = s_time_gets(cmd, reader, refs + 1, n, true, S_SMALL_SIZE, ns, NULL)) != 0)
        goto done;
    qsort(ns, n, sizeof *ns, s_cmp_i64);
    double small_us = s_median(ns, n) / 1e3;
    fprintf(stderr, "shoal bench: local_get_1kib_us: median %.2f us, p99 %.2f us, max %.1f us\n",
            small_us, s_percentile(ns, n, 99) / 1e3, ns[n - 1] / 1e3);
    s_figure_us("local_get_1kib_us", small_us, "us");
    if ((status = s_time_gets(cmd, reader, refs + n + 1, n_big, false, big, ns, NULL)) != 0)
        goto done;
    qsort(ns, n_big, sizeof *ns, s_cmp_i64);
    double big_us = s_median(ns, n_big) / 1e3;
    fprintf(stderr, "shoal bench: local_get_1gib_us: median %.2f us, p99 %.2f us, max %.1f us\n",
            big_us, s_percentile(ns, n_big, 99) / 1e3, ns[n_big - 1] / 1e3);
    //  A copy of even 1 MiB takes longer than this.
    if (big_us > 1000)
        fprintf(stderr,
                "shoal bench: local_get_1gib_us: %.0f us for %s is not zero-copy: the bytes "
                "were copied or fetched (is the store of %s readable here?)\n",
                big_us, text, worker);
    s_figure_us("local_get_1gib_us", big_us, s_unit_at("us", big, S_BIG_SIZE, unit, sizeof unit));
done:
    shoal_disconnect(&reader);
    s_remove("get", sh, refs, made);
    free(ns);
    free(refs);
    return status;
}

/*  The baseline of the remote get: a ROUTER in a thread streams size bytes as 1 MiB
    messages to the DEALER that asks (a one-byte message; an empty one stops it). Each side
    has a context of its own, so each has its own I/O thread, as two processes do. */
typedef struct {
    void *ctx_send, *ctx_recv;
    void *router, *dealer;
    const uint8_t *src;
    size_t size;
    pthread_t thread;
    bool running;
} s_stream_t;

static void *s_stream_run(void *arg)
{
    s_stream_t *st = arg;
    for (bool stop = false; !stop;) {
        zmq_msg_t id, req;
        zmq_msg_init(&id);
        zmq_msg_init(&req);
        stop = zmq_msg_recv(&id, st->router, 0) < 0 || zmq_msg_recv(&req, st->router, 0) < 0 ||
               zmq_msg_size(&req) == 0;
        //  zmq_send copies each piece into a message, as the worker copies each chunk out
        //  of its store.
        for (size_t off = 0; !stop && off < st->size; off += S_STREAM_CHUNK)
            stop = zmq_send(st->router, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE) < 0 ||
                   zmq_send(st->router, st->src + off,
                            (size_t)SHOAL__MIN((uint64_t)S_STREAM_CHUNK, st->size - off), 0) < 0;
        zmq_msg_close(&id);
        zmq_msg_close(&req);
    }
    return NULL;
}

static void s_stream_stop(s_stream_t *st)
{
    if (st->running) {
        //  The empty message stops the thread; should it be lost, closing its context
        //  (ETERM) does.
        zmq_send(st->dealer, "", 0, ZMQ_DONTWAIT);
        zmq_close(st->dealer);
        st->dealer = NULL;
        zmq_ctx_shutdown(st->ctx_send);
        pthread_join(st->thread, NULL);
        st->running = false;
    }
    if (st->dealer)
        zmq_close(st->dealer);
    if (st->router)
        zmq_close(st->router);
    if (st->ctx_recv)
        zmq_ctx_term(st->ctx_recv);
    if (st->ctx_send)
        zmq_ctx_term(st->ctx_send);
    memset(st, 0, sizeof *st);
}

//  0 or an exit status.
static int s_stream_start(const char *cmd, s_stream_t *st, const uint8_t *src, size_t size)
{
    memset(st, 0, sizeof *st);
    st->src = src;
    st->size = size;
    st->ctx_send = zmq_ctx_new();
    st->ctx_recv = zmq_ctx_new();
    //  Their I/O threads are then "1/ZMQbg/IO/0" (sender) and "2/ZMQbg/IO/0" (receiver),
    //  told apart from libshoal's in a profile.
    if (st->ctx_send)
        zmq_ctx_set(st->ctx_send, ZMQ_THREAD_NAME_PREFIX, 1);
    if (st->ctx_recv)
        zmq_ctx_set(st->ctx_recv, ZMQ_THREAD_NAME_PREFIX, 2);
    char endpoint[256];
    size_t len = sizeof endpoint;
    int timeout = S_REPLY_MS, linger = 0;
    if (!st->ctx_send || !st->ctx_recv || !(st->router = zmq_socket(st->ctx_send, ZMQ_ROUTER)) ||
        !(st->dealer = zmq_socket(st->ctx_recv, ZMQ_DEALER)) ||
        zmq_setsockopt(st->router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(st->dealer, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(st->dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        zmq_bind(st->router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(st->router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0 ||
        zmq_connect(st->dealer, endpoint) != 0) {
        int err = errno;
        s_stream_stop(st);
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq stream baseline: sockets: %s", zmq_strerror(err));
    }
    //  pthread_create is a full barrier: the ROUTER passes to the thread safely.
    if (pthread_create(&st->thread, NULL, s_stream_run, st) != 0) {
        s_stream_stop(st);
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq stream baseline: cannot start a thread");
    }
    st->running = true;
    return 0;
}

//  Asks for the stream and copies each message into dst (size bytes). 0 or an exit status.
static int s_stream_once(const char *cmd, s_stream_t *st, uint8_t *dst)
{
    if (zmq_send(st->dealer, "g", 1, 0) != 1)
        return cli_fail(cmd, CLI_EXIT_USAGE, "zmq stream baseline: %s", zmq_strerror(errno));
    for (size_t off = 0; off < st->size; off += S_STREAM_CHUNK) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, st->dealer, 0) < 0) {
            int err = errno;
            zmq_msg_close(&m);
            return cli_fail(cmd, CLI_EXIT_USAGE, "zmq stream baseline: at %zu of %zu bytes: %s",
                            off, st->size,
                            err == EAGAIN ? "nothing within 10 s" : zmq_strerror(err));
        }
        size_t len = zmq_msg_size(&m);
        if (len != (size_t)SHOAL__MIN((uint64_t)S_STREAM_CHUNK, st->size - off)) {
            zmq_msg_close(&m);
            return cli_fail(cmd, CLI_EXIT_USAGE, "zmq stream baseline: a message of %zu bytes",
                            len);
        }
        memcpy(dst + off, zmq_msg_data(&m), len);
        zmq_msg_close(&m);
    }
    s_clobber(dst);
    return 0;
}

static int s_remote_get(const char *cmd, shoal_t *sh, const s_opts_t *o, uint64_t size)
{
    const char *name = "remote_get_256mib_vs_zmq";
    size_t n = (size_t)size, runs = (size_t)o->runs;
    uint8_t *src = malloc(n), *dst = malloc(n);
    int64_t *zmq_ns = calloc(runs, sizeof *zmq_ns), *get_ns = calloc(runs, sizeof *get_ns);
    int64_t *release_ns = calloc(runs, sizeof *release_ns);
    shoal_t *remote = NULL;
    s_stream_t stream = {0};
    shoal_ref_t ref;
    bool made = false, mapped;
    int status = CLI_EXIT_OK, rc;
    char text[32], unit[48];
    if (!src || !dst || !zmq_ns || !get_ns || !release_ns) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "remote get: out of memory for 2 x %s",
                          s_size_text(size, text, sizeof text));
        goto done;
    }
    memset(src, 0x5a, n);
    memset(dst, 0xa5, n); //  not 0: malloc + memset 0 may become calloc, which touches nothing
    fprintf(stderr,
            "shoal bench: %s: the time to stream %s as 1 MiB messages over raw libzmq (ROUTER "
            "thread -> DEALER, tcp://127.0.0.1, each copied into a reused pre-faulted buffer) "
            "over the time of shoal_get + shoal_view_release of the same bytes from a worker's "
            "data socket (SHOAL_NO_LOCAL_STORE=1: 1 MiB chunks over TCP, 8 in flight), "
            "medians of %zu runs of each, alternating\n",
            name, s_size_text(size, text, sizeof text), runs);
    rc = s_put_object(sh, src, size, NULL, &ref, &mapped, NULL);
    made = rc == 0;
    if (rc == 0)
        rc = shoal_flush(sh, S_STALL_MS);
    if (rc) {
        status = cli_fail(cmd, cli_exit_for(rc), "remote get: putting %s: %s", text,
                          shoal_last_error(sh));
        goto done;
    }
    if ((status = s_stream_start(cmd, &stream, src, n)) != 0)
        goto done;
    //  libshoal reads it at every decision, not once: it acts while it is set, which is
    //  while this connection alone runs. Unset again below.
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    if ((status = cli_connect(cmd, shoal_broker_endpoint(sh), &remote)) != 0)
        goto done;
    //  Untimed: the object's status from the broker, the connection to the worker's data
    //  socket, libzmq's first buffers.
    if ((status = s_time_gets(cmd, remote, &ref, 1, false, size, get_ns, NULL)) != 0 ||
        (status = s_stream_once(cmd, &stream, dst)) != 0)
        goto done;
    for (size_t r = 0; r < runs; r++) {
        int64_t t0 = s_now_ns();
        if ((status = s_stream_once(cmd, &stream, dst)) != 0)
            goto done;
        zmq_ns[r] = s_now_ns() - t0;
        if ((status = s_time_gets(cmd, remote, &ref, 1, false, size, &get_ns[r], &release_ns[r])) !=
            0)
            goto done;
    }
    qsort(zmq_ns, runs, sizeof *zmq_ns, s_cmp_i64);
    qsort(get_ns, runs, sizeof *get_ns, s_cmp_i64);
    qsort(release_ns, runs, sizeof *release_ns, s_cmp_i64);
    double base = s_median(zmq_ns, runs), get = s_median(get_ns, runs);
    fprintf(stderr,
            "shoal bench: %s: libzmq %.1f ms (%.2f GB/s), shoal_get + release %.1f ms (%.2f "
            "GB/s; the release alone %.1f ms); get runs %.1f .. %.1f ms\n",
            name, base / 1e6, (double)size / base, get / 1e6, (double)size / get,
            s_median(release_ns, runs) / 1e6, get_ns[0] / 1e6, get_ns[runs - 1] / 1e6);
    //  A zero-copy local get takes a microsecond or two; a transfer over TCP, even of
    //  1 MiB, hundreds.
    if (get < 1e5)
        fprintf(stderr,
                "shoal bench: %s: %.0f us is too fast for a transfer: was the get served from "
                "the store on this host despite SHOAL_NO_LOCAL_STORE?\n",
                name, get / 1e3);
    s_figure_digits(name, base / get, 3, s_unit_at("x", size, S_OBJECT_SIZE, unit, sizeof unit));
done:
    shoal_disconnect(&remote);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    s_stream_stop(&stream);
    if (made)
        s_remove("remote get", sh, &ref, 1);
    free(release_ns);
    free(get_ns);
    free(zmq_ns);
    free(dst);
    free(src);
    return status;
}

/*  put and get, on a cluster of their own (or --broker). */
static int s_objects(const char *cmd, const s_opts_t *o)
{
    s_plan_t plan = {.object = o->object_size, .big = o->big_size};
    char url[128], a[32], b[32];
    if (getenv("SHOAL_NO_LOCAL_STORE")) {
        fprintf(stderr, "shoal bench: put, get: ignoring SHOAL_NO_LOCAL_STORE in the "
                        "environment (only remote_get_256mib_vs_zmq sets it, for itself)\n");
        unsetenv("SHOAL_NO_LOCAL_STORE");
    }
    if (!o->broker) {
        //  The arena is RAM (/dev/shm, no swap), and so are this process's buffers.
        int64_t avail = s_meminfo("MemAvailable");
        struct statvfs vfs;
        uint64_t shm_room = statvfs("/dev/shm", &vfs) == 0
                                ? (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize
                                : UINT64_MAX;
        uint64_t ram_room = avail < 0 ? UINT64_MAX : (uint64_t)avail;
        if (avail < 0)
            fprintf(stderr, "shoal bench: put, get: /proc/meminfo has no MemAvailable: "
                            "assuming the objects fit\n");
        char why[128];
        snprintf(why, sizeof why, "MemAvailable %s, /dev/shm %s free",
                 avail < 0 ? "unknown" : s_size_text((uint64_t)avail / S_MIB * S_MIB, a, sizeof a),
                 shm_room == UINT64_MAX ? "unknown"
                                        : s_size_text(shm_room / S_MIB * S_MIB, b, sizeof b));
        if (s_plan_fit(o, &plan, shm_room, ram_room, true) != 0)
            return cli_fail(cmd, CLI_EXIT_USAGE,
                            "put, get: not enough memory even for 1 MiB objects (%s)", why);
        s_plan_note(o, &plan, why);
        //  One worker: every figure here is about one store and one client; a second
        //  worker would only commit a second arena of RAM.
        snprintf(url, sizeof url, "local://1?slots=1&shm=%lluM",
                 (unsigned long long)(plan.arena / S_MIB));
        fprintf(stderr, "shoal bench: starting a local cluster (%s; %s)\n", url, why);
    }
    shoal_t *sh = NULL;
    int status = cli_connect(cmd, o->broker ? o->broker : url, &sh);
    if (status)
        return status;
    //  Release what we made, should we stop half-way (a --broker cluster lives on).
    shoal_keep(sh, false);
    char worker[256] = "";
    uint64_t free_here = 0, free_any = 0;
    if ((status = s_pick_worker(cmd, sh, worker, sizeof worker, &free_here, &free_any)) != 0)
        goto done;
    if (o->broker) {
        int64_t avail = s_meminfo("MemAvailable");
        char why[640];
        snprintf(why, sizeof why, "%s free in the store of %s%s",
                 s_size_text((worker[0] ? free_here : free_any) / S_MIB * S_MIB, a, sizeof a),
                 worker[0] ? "worker " : "the emptiest worker", worker);
        if (s_plan_fit(o, &plan, worker[0] ? free_here : free_any,
                       avail < 0 ? UINT64_MAX : (uint64_t)avail, false) != 0) {
            status = cli_fail(cmd, CLI_EXIT_USAGE, "put, get: not enough room (%s)", why);
            goto done;
        }
        s_plan_note(o, &plan, why);
    }
    if (o->which & S_PUT) {
        if ((status = s_put_vs_memcpy(cmd, sh, o, plan.object)) != 0 ||
            (status = s_small_puts(cmd, sh, o)) != 0)
            goto done;
    }
    if (o->which & S_GET) {
        if (!worker[0])
            fprintf(stderr,
                    "shoal bench: skipping local_get_1kib_us and local_get_1gib_us: no worker "
                    "of the broker at %s runs on this host (%s)\n",
                    shoal_broker_endpoint(sh), shoal__hostname());
        else if ((status = s_local_gets(cmd, sh, o, worker, plan.big)) != 0)
            goto done;
        status = s_remote_get(cmd, sh, o, plan.object);
    }
done:
    shoal_disconnect(&sh);
    return status;
}

/*  ---------------------------------------------------------------------- stream */

/*  stream_first_byte_us samples: each a fresh 1 MiB put whose first 4 KiB the reader
    waits for. A few ms each. */
#define S_FIRST_BYTE_SAMPLES 100
/*  How long the writer lets the reader's request reach the worker before it writes (the
    reader cannot say when its fetch is held there): the figure is the delay after that. */
#define S_FIRST_BYTE_SETTLE_NS (2 * 1000 * 1000)

typedef struct {
    shoal_t *sh;
    shoal_ref_t ref;
    bool stream;  //  stream it, else shoal_get (waits for the seal)
    uint8_t *dst; //  size bytes, or NULL: the first byte only
    uint64_t size;
    int rc;
    int64_t first_ns, done_ns;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool reading;
} s_sreader_t;

static void *s_sreader_run(void *arg)
{
    s_sreader_t *r = arg;
    pthread_mutex_lock(&r->lock);
    r->reading = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (!r->stream) {
        shoal_view_t view = {0};
        r->rc = shoal_get(r->sh, r->ref, S_STALL_MS, &view);
        if (r->rc == 0) {
            memcpy(r->dst, view.data, SHOAL__MIN(view.size, (size_t)r->size));
            s_clobber(r->dst);
        }
        r->done_ns = s_now_ns();
        shoal_view_release(&view);
        return NULL;
    }
    shoal_stream_t *st = NULL;
    r->rc = shoal_stream_open(r->sh, r->ref, &st);
    uint64_t got = 0;
    uint8_t one[4096];
    while (r->rc == 0) {
        int n = r->dst ? shoal_stream_read(st, r->dst + got, (size_t)(r->size - got), S_STALL_MS)
                       : shoal_stream_read(st, one, sizeof one, S_STALL_MS);
        if (n > 0 && got == 0)
            r->first_ns = s_now_ns();
        if (n <= 0 || !r->dst) {
            r->rc = n < 0 ? n : 0;
            break;
        }
        got += (uint64_t)n;
    }
    r->done_ns = s_now_ns();
    shoal_stream_close(&st);
    if (r->rc == 0 && r->dst && got != r->size)
        r->rc = SHOAL_EPROTO;
    return NULL;
}

//  Starts a reader thread and returns once it is about to read. 0 or an exit status.
static int s_sreader_start(const char *cmd, s_sreader_t *r, pthread_t *th)
{
    r->reading = false;
    r->rc = 0;
    r->first_ns = r->done_ns = 0;
    if (pthread_create(th, NULL, s_sreader_run, r) != 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "stream: cannot start a reader thread");
    pthread_mutex_lock(&r->lock);
    while (!r->reading)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void s_settle(void)
{
    nanosleep(&(struct timespec){0, S_FIRST_BYTE_SETTLE_NS}, NULL);
}

static int s_stream_first_byte(const char *cmd, shoal_t *writer, s_sreader_t *r)
{
    const char *name = "stream_first_byte_us";
    int64_t ns[S_FIRST_BYTE_SAMPLES];
    uint8_t first[4096];
    memset(first, 0x5a, sizeof first);
    shoal_ref_t refs[S_FIRST_BYTE_SAMPLES];
    size_t made = 0;
    int status = CLI_EXIT_OK;
    fprintf(stderr,
            "shoal bench: %s: a 1 MiB put on this host and a reader streaming it on a "
            "connection of its own (a thread); the reader waits in shoal_stream_read, "
            "%d ms later the writer writes and publishes 4 KiB; from then until the read "
            "returns, median of %d\n",
            name, (int)(S_FIRST_BYTE_SETTLE_NS / 1000000), S_FIRST_BYTE_SAMPLES);
    for (size_t i = 0; i < S_FIRST_BYTE_SAMPLES && status == CLI_EXIT_OK; i++) {
        shoal_put_t *put = NULL;
        int rc = shoal_put_begin(writer, S_MIB, NULL, &refs[made], &put);
        if (rc)
            return cli_fail(cmd, s_exit_for(rc), "stream: %s", shoal_last_error(writer));
        made++;
        //  The broker must know the put before the reader asks for it (as `shoal put`
        //  prints a ref only once acknowledged): else the ref is unknown to it.
        if ((rc = shoal_flush(writer, S_STALL_MS)) != 0) {
            shoal_put_abort(&put);
            status = cli_fail(cmd, s_exit_for(rc), "stream: %s", shoal_last_error(writer));
            break;
        }
        r->ref = refs[made - 1];
        r->stream = true;
        r->dst = NULL;
        pthread_t th;
        if ((status = s_sreader_start(cmd, r, &th)) != 0) {
            shoal_put_abort(&put);
            break;
        }
        s_settle();
        int64_t t0 = s_now_ns();
        uint8_t *mem = shoal_put_memory(put);
        if (mem) {
            memcpy(mem, first, sizeof first);
            rc = shoal_put_progress(put, sizeof first);
        } else
            rc = shoal_put_write(put, first, sizeof first);
        pthread_join(th, NULL);
        ns[i] = r->first_ns - t0;
        shoal_put_abort(&put); //  only the first byte matters
        if (rc || r->rc)
            status = cli_fail(cmd, s_exit_for(rc ? rc : r->rc), "stream: %s",
                              shoal_last_error(rc ? writer : r->sh));
    }
    s_remove(name, writer, refs, made);
    if (status)
        return status;
    qsort(ns, S_FIRST_BYTE_SAMPLES, sizeof *ns, s_cmp_i64);
    fprintf(stderr, "shoal bench: %s: p99 %.1f us\n", name,
            s_percentile(ns, S_FIRST_BYTE_SAMPLES, 99) / 1000.0);
    s_figure_us(name, s_median(ns, S_FIRST_BYTE_SAMPLES) / 1000.0, "us");
    return 0;
}

/*  One run of stream_speedup: a remote writer puts size bytes in 1 MiB parts while the
    reader streams it (or waits for the seal and gets it); ns: from the begin of the put
    until the reader has every byte. */
static int s_stream_run_once(const char *cmd, shoal_t *writer, s_sreader_t *r, const uint8_t *src,
                             uint64_t size, bool stream, int64_t *ns)
{
    shoal_put_t *put = NULL;
    int64_t t0 = s_now_ns();
    shoal_ref_t ref;
    int rc = shoal_put_begin(writer, size, NULL, &ref, &put);
    if (rc)
        return cli_fail(cmd, s_exit_for(rc), "stream: %s", shoal_last_error(writer));
    //  The waiting reader's get must find the put at the broker: flushed first.
    if ((rc = shoal_flush(writer, S_STALL_MS)) != 0) {
        shoal_put_abort(&put);
        return cli_fail(cmd, s_exit_for(rc), "stream: %s", shoal_last_error(writer));
    }
    r->ref = ref;
    r->stream = stream;
    pthread_t th;
    int status = s_sreader_start(cmd, r, &th);
    if (status) {
        shoal_put_abort(&put);
        return status;
    }
    for (uint64_t done = 0; rc == 0 && done < size; done += S_STREAM_CHUNK)
        rc = shoal_put_write(put, src + done, (size_t)SHOAL__MIN(size - done, S_STREAM_CHUNK));
    if (rc == 0)
        rc = shoal_put_end(&put);
    else
        shoal_put_abort(&put);
    pthread_join(th, NULL);
    *ns = r->done_ns - t0;
    s_remove("stream_speedup", writer, &ref, 1);
    if (rc || r->rc)
        return cli_fail(cmd, s_exit_for(rc ? rc : r->rc), "stream: %s",
                        shoal_last_error(rc ? writer : r->sh));
    if (memcmp(r->dst, src, (size_t)size) != 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "stream: the reader got other bytes");
    return 0;
}

static int s_stream_speedup(const char *cmd, shoal_t *writer, s_sreader_t *r, const s_opts_t *o,
                            uint64_t size)
{
    const char *name = "stream_speedup";
    size_t runs = (size_t)o->runs;
    uint8_t *src = malloc((size_t)size);
    int64_t *wait_ns = calloc(runs, sizeof *wait_ns), *stream_ns = calloc(runs, sizeof *stream_ns);
    int status = CLI_EXIT_OK;
    char text[32], unit[48];
    r->size = size;
    r->dst = malloc((size_t)size);
    if (!src || !r->dst || !wait_ns || !stream_ns) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "stream: out of memory");
        goto done;
    }
    for (size_t i = 0; i < size; i++)
        src[i] = (uint8_t)(i * 2654435761u >> 7);
    memset(r->dst, 0xa5, (size_t)size);
    fprintf(stderr,
            "shoal bench: %s: a writer puts %s in 1 MiB parts over TCP (SHOAL_NO_LOCAL_STORE=1, "
            "shoal_put_write); a reader on a connection of its own (a thread, also over TCP) "
            "either waits for the seal (shoal_get) or streams it (shoal_stream_read); from "
            "the begin of the put until the reader has every byte; the waiting reader's time "
            "over the streaming reader's, medians of %zu runs of each, alternating\n",
            name, s_size_text(size, text, sizeof text), runs);
    int64_t warm;
    if ((status = s_stream_run_once(cmd, writer, r, src, size, true, &warm)) != 0)
        goto done;
    for (size_t i = 0; i < runs && status == CLI_EXIT_OK; i++) {
        status = s_stream_run_once(cmd, writer, r, src, size, false, &wait_ns[i]);
        if (status == CLI_EXIT_OK)
            status = s_stream_run_once(cmd, writer, r, src, size, true, &stream_ns[i]);
    }
    if (status)
        goto done;
    qsort(wait_ns, runs, sizeof *wait_ns, s_cmp_i64);
    qsort(stream_ns, runs, sizeof *stream_ns, s_cmp_i64);
    double w = s_median(wait_ns, runs), st = s_median(stream_ns, runs);
    fprintf(stderr, "shoal bench: %s: waiting for the seal %.1f ms, streaming %.1f ms\n", name,
            w / 1e6, st / 1e6);
    s_figure_digits(name, w / st, 3, s_unit_at("x", size, S_OBJECT_SIZE, unit, sizeof unit));
done:
    free(src);
    free(r->dst);
    r->dst = NULL;
    free(wait_ns);
    free(stream_ns);
    return status;
}

static int s_stream(const char *cmd, const s_opts_t *o)
{
    char url[128];
    uint64_t size = o->object_size;
    if (!o->broker) {
        //  One worker; the object, and the first-byte puts (1 MiB each), with slack.
        snprintf(url, sizeof url, "local://1?slots=1&shm=%lluM",
                 (unsigned long long)((size + S_ARENA_SLACK) / S_MIB + S_FIRST_BYTE_SAMPLES + 1));
        fprintf(stderr, "shoal bench: starting a local cluster (%s)\n", url);
    }
    shoal_t *writer = NULL;
    s_sreader_t r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    int status = cli_connect(cmd, o->broker ? o->broker : url, &writer);
    if (status)
        return status;
    shoal_keep(writer, false);
    //  First byte: writer and reader on the worker's host (when it is here).
    if ((status = cli_connect(cmd, shoal_broker_endpoint(writer), &r.sh)) == 0) {
        status = s_stream_first_byte(cmd, writer, &r);
        shoal_disconnect(&r.sh);
    }
    shoal_t *remote_writer = NULL;
    //  Speedup: both over TCP, so the object has to travel; libshoal reads the variable at
    //  each decision, and both connections are made and used with it set.
    setenv("SHOAL_NO_LOCAL_STORE", "1", 1);
    if (status == CLI_EXIT_OK &&
        (status = cli_connect(cmd, shoal_broker_endpoint(writer), &remote_writer)) == 0 &&
        (status = cli_connect(cmd, shoal_broker_endpoint(writer), &r.sh)) == 0)
        status = s_stream_speedup(cmd, remote_writer, &r, o, size);
    unsetenv("SHOAL_NO_LOCAL_STORE");
    shoal_disconnect(&r.sh);
    shoal_disconnect(&remote_writer);
    shoal_disconnect(&writer);
    return status;
}

/*  ---------------------------------------------------------------------- memory */

typedef struct {
    pid_t pid;
    int out; //  its stdout
    char endpoint[256];
} s_broker_t;

//  VmRSS of pid in bytes, or -1.
static int64_t s_rss(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static void s_broker_stop(s_broker_t *b)
{
    if (b->out >= 0)
        close(b->out);
    b->out = -1;
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGTERM);
    //  It stops at once on SIGTERM; SIGKILL after 10 s, as `shoal up` would.
    for (int i = 0;; i++) {
        pid_t w = waitpid(b->pid, NULL, WNOHANG);
        if (w == b->pid || (w < 0 && errno != EINTR))
            break;
        if (i == 1000)
            kill(b->pid, SIGKILL);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    b->pid = 0;
}

//  Starts `shoal broker` on free ports (this very binary) and reads where it listens.
//  0 or an exit status. Its log (warnings only) shares our stderr.
static int s_broker_start(const char *cmd, s_broker_t *b)
{
    b->pid = 0;
    b->out = -1;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "memory: /proc/self/exe: %s", strerror(errno));
    exe[len] = '\0';
    //  Everything the child needs is made before fork: only async-signal-safe calls
    //  between fork and exec (libzmq threads may be running).
    char *argv[] = {exe, "broker", "--listen", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                    NULL};
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = calloc(n_env + 2, sizeof *envp);
    if (!envp)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "SHOAL_LOG=", 10) != 0)
            envp[k++] = environ[i];
    envp[k++] = "SHOAL_LOG=warn"; //  its info lines would interleave with our progress
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(envp);
        return cli_fail(cmd, CLI_EXIT_USAGE, "memory: pipe: %s", strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        //  The broker dies with us, even when we are killed outright.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(127);
        execve(exe, argv, envp);
        _exit(127);
    }
    int err = errno;
    free(envp);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return cli_fail(cmd, CLI_EXIT_USAGE, "memory: fork: %s", strerror(err));
    }
    b->pid = pid;
    b->out = fds[0];
    //  "shoal broker: listening on EP, events on EP"
    char line[1024];
    size_t got = 0;
    int64_t deadline = shoal__now_ms() + S_REPLY_MS;
    for (;;) {
        char *nl = memchr(line, '\n', got);
        if (nl) {
            *nl = '\0';
            const char *a = strstr(line, "listening on ");
            const char *e = a ? strstr(a, ", events on ") : NULL;
            if (!a || !e) {
                s_broker_stop(b);
                return cli_fail(cmd, CLI_EXIT_USAGE, "memory: the broker said '%s'", line);
            }
            a += strlen("listening on ");
            snprintf(b->endpoint, sizeof b->endpoint, "%.*s", (int)(e - a), a);
            return 0;
        }
        int64_t left = deadline - shoal__now_ms();
        struct pollfd pfd = {b->out, POLLIN, 0};
        if (left <= 0 || got == sizeof line - 1) {
            s_broker_stop(b);
            return cli_fail(cmd, CLI_EXIT_USAGE,
                            "memory: `%s broker` did not say where it "
                            "listens within %d s",
                            exe, S_REPLY_MS / 1000);
        }
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            continue;
        ssize_t r = read(b->out, line + got, sizeof line - 1 - got);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
            s_broker_stop(b);
            return cli_fail(cmd, CLI_EXIT_USAGE,
                            "memory: `%s broker` ended before it was ready (its stderr above "
                            "says why)",
                            exe);
        }
        if (r > 0)
            got += (size_t)r;
    }
}

static int s_memory(const char *cmd, const s_opts_t *o)
{
    s_broker_t b;
    int status = s_broker_start(cmd, &b);
    if (status)
        return status;
    shoal_t *sh = NULL;
    size_t n = (size_t)o->queued;
    fprintf(stderr, "shoal bench: memory: %zu tasks queued in a broker without workers (pid %d)\n",
            n, (int)b.pid);
    if ((status = cli_connect(cmd, b.endpoint, &sh)) != 0)
        goto done;
    //  cli_connect keeps what it submits: no release of a million tasks at disconnect,
    //  the broker is stopped anyway.
    int64_t before = s_rss(b.pid);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = o->fn};
    shoal_ref_t id;
    int64_t last_progress = shoal__now_ms();
    for (size_t i = 0; i < n; i++) {
        if (shoal_submit(sh, &spec, &id) != 0) {
            status = cli_fail(cmd, CLI_EXIT_USAGE, "memory: submitting task %zu: %s", i,
                              shoal_last_error(sh));
            goto done;
        }
        if ((i & 0xffff) == 0 && s_progress_due(&last_progress))
            fprintf(stderr, "shoal bench: memory: %zu of %zu submitted\n", i, n);
    }
    int rc = shoal_flush(sh, S_STALL_MS);
    if (rc) {
        status = cli_fail(cmd, cli_exit_for(rc), "memory: %s", shoal_last_error(sh));
        goto done;
    }
    int64_t after = s_rss(b.pid);
    if (before < 0 || after < 0) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "memory: cannot read /proc/%d/status", (int)b.pid);
        goto done;
    }
    fprintf(stderr, "shoal bench: memory: broker VmRSS %.1f MiB before, %.1f MiB after\n",
            before / 1048576.0, after / 1048576.0);
    s_figure("broker_bytes_per_queued_task", (double)(after - before) / (double)n, "bytes");
done:
    shoal_disconnect(&sh);
    s_broker_stop(&b);
    return status;
}

/*  ------------------------------------------------------------------------ main */

/*  ------------------------------------------------------------------------------- spill */

//  Spill work per call, as the worker does per loop turn (worker.c S_SPILL_BUDGET).
#define S_SPILL_STEP (8ull << 20)

//  Runs `dd if=/dev/zero of=PATH bs=1M count=MIB conv=fdatasync` and returns its MB/s
//  (wall time of the whole command, 1 MB = 10^6 bytes), or a negative value.
static double s_dd_mb_per_s(const char *path, uint64_t mib)
{
    char count[32], of[PATH_MAX + 32];
    snprintf(count, sizeof count, "count=%llu", (unsigned long long)mib);
    snprintf(of, sizeof of, "of=%s", path);
    int64_t start = shoal__now_us();
    pid_t pid = fork();
    if (pid == 0) {
        execlp("dd", "dd", "if=/dev/zero", of, "bs=1M", count, "conv=fdatasync", "status=none",
               (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    double s = (double)(shoal__now_us() - start) / 1e6;
    unlink(path);
    return (double)(mib << 20) / 1e6 / s;
}

/*  The disk tier, measured on the store itself (no cluster: the figures are about the
    disk and the store, not the sockets): an arena of 2 objects, filled with 2, then a
    third allocation that does not fit; spill in S_SPILL_STEP calls until it fits, then
    restore the spilled one (after freeing room). And persist: a synced copy of one object,
    and of a 4 KiB one (the fsync's cost). dd to the same directory is the baseline. */
static int s_spill(const char *cmd, const s_opts_t *o)
{
    const char *home = getenv("HOME");
    char dir[PATH_MAX];
    if (o->spill_dir)
        snprintf(dir, sizeof dir, "%s/shoal-bench-XXXXXX", o->spill_dir);
    else if (home && home[0]) {
        //  Where a worker's store lives by default: the disk a worker would spill to.
        snprintf(dir, sizeof dir, "%s/.local/state/shoal", home);
        shoal__mkdir_p(dir, 0700);
        snprintf(dir, sizeof dir, "%s/.local/state/shoal/bench-XXXXXX", home);
    } else
        snprintf(dir, sizeof dir, "/tmp/shoal-bench-XXXXXX");
    if (!mkdtemp(dir))
        return cli_fail(cmd, CLI_EXIT_USAGE, "cannot create a directory like %s: %s", dir,
                        strerror(errno));
    uint64_t size = o->object_size;
    char name[64];
    snprintf(name, sizeof name, "bench-%d", (int)getpid());
    shoal_store_config_t config = {
        .dir = dir, .name = name, .capacity = 2 * size + (1u << 20), .spill_size = 4 * size};
    shoal_store_t *store = NULL;
    int rc = shoal_store_open(&config, &store);
    if (rc) {
        shoal__tree_remove(dir);
        return cli_fail(cmd, CLI_EXIT_USAGE, "cannot open a store in %s: %s", dir,
                        shoal_strerror(rc));
    }
    fprintf(stderr, "shoal bench: spill: %llu MiB objects, disk tier %s\n",
            (unsigned long long)(size >> 20), shoal_store_spill_path(store));
    int status = CLI_EXIT_OK;
    double spill_best = 0, restore_best = 0, step_max_ms = 0;
    for (uint64_t run = 0; run < o->runs && !status; run++) {
        shoal_ref_t a = shoal_ref_make(0xbe4c4, 3 * run + 1, 0);
        shoal_ref_t b = shoal_ref_make(0xbe4c4, 3 * run + 2, 0);
        shoal_ref_t c = shoal_ref_make(0xbe4c4, 3 * run + 3, 0);
        shoal_store_obj_t obj;
        if ((rc = shoal_store_alloc(store, a, size, &obj)) == 0) {
            memset(obj.data, 1, size);
            shoal_store_seal(store, a);
        }
        if (rc == 0 && (rc = shoal_store_alloc(store, b, size, &obj)) == 0) {
            memset(obj.data, 2, size);
            shoal_store_seal(store, b);
        }
        shoal_store_flush(store);
        if (rc == 0 && shoal_store_alloc(store, c, size, &obj) != SHOAL_EFULL)
            rc = SHOAL_ESTATE;
        //  Spill: steps until the third fits (a, the least recently used, goes).
        int64_t start = shoal__now_us();
        while (rc == 0) {
            int64_t t0 = shoal__now_us();
            uint64_t freed = 0;
            rc = shoal_store_spill(store, S_SPILL_STEP, NULL, &freed);
            step_max_ms = SHOAL__MAX(step_max_ms, (double)(shoal__now_us() - t0) / 1000);
            if (rc == 0 && freed && shoal_store_alloc(store, c, size, &obj) == 0)
                break;
        }
        double spill_s = (double)(shoal__now_us() - start) / 1e6;
        //  Restore: room first (c goes), then a back into the arena.
        if (rc == 0) {
            shoal_store_abort(store, c);
            shoal_store_flush(store);
            start = shoal__now_us();
            rc = shoal_store_restore(store, a, &obj);
        }
        double restore_s = (double)(shoal__now_us() - start) / 1e6;
        if (rc) {
            status = cli_fail(cmd, CLI_EXIT_USAGE, "spill run %llu: %s", (unsigned long long)run,
                              shoal_strerror(rc));
            break;
        }
        spill_best = SHOAL__MAX(spill_best, (double)size / 1e6 / spill_s);
        restore_best = SHOAL__MAX(restore_best, (double)size / 1e6 / restore_s);
        shoal_store_delete(store, a);
        shoal_store_delete(store, b);
        shoal_store_flush(store);
    }
    //  Persist: one object of the size, and small ones (the cost of the syncs).
    double persist_mb = 0, persist_small_us = 0;
    if (!status) {
        shoal_ref_t p = shoal_ref_make(0xbe4c5, 1, 0);
        shoal_store_obj_t obj;
        rc = shoal_store_alloc(store, p, size, &obj);
        if (rc == 0) {
            memset(obj.data, 3, size);
            shoal_store_seal(store, p);
            int64_t start = shoal__now_us();
            rc = shoal_store_persist(store, p);
            if (rc == 0)
                rc = shoal_store_flush(store); //  syncs the index: part of the cost
            persist_mb = (double)size / 1e6 / ((double)(shoal__now_us() - start) / 1e6);
            shoal_store_delete(store, p);
            shoal_store_flush(store);
        }
        int64_t total = 0;
        for (uint64_t i = 0; i < 20 && rc == 0; i++) {
            shoal_ref_t q = shoal_ref_make(0xbe4c6, i + 1, 0);
            if ((rc = shoal_store_put(store, q, dir, 4096)) != 0)
                break;
            int64_t start = shoal__now_us();
            rc = shoal_store_persist(store, q);
            if (rc == 0)
                rc = shoal_store_flush(store);
            total += shoal__now_us() - start;
        }
        persist_small_us = (double)total / 20;
        if (rc)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "persist: %s", shoal_strerror(rc));
    }
    shoal_store_destroy(&store);
    char ddpath[PATH_MAX + 16];
    snprintf(ddpath, sizeof ddpath, "%s/dd.test", dir);
    double dd = -1; //  the best of --runs, as for spill and restore
    for (uint64_t run = 0; run < o->runs && !status; run++)
        dd = SHOAL__MAX(dd, s_dd_mb_per_s(ddpath, size >> 20));
    shoal__tree_remove(dir);
    if (status)
        return status;
    char unit[32];
    snprintf(unit, sizeof unit, "MB/s@%lluMiB", (unsigned long long)(size >> 20));
    printf("spill_mb_per_s %.0f %s\n", spill_best, unit);
    printf("restore_mb_per_s %.0f %s\n", restore_best, unit);
    printf("spill_step_max_ms %.1f ms@%lluMiB-steps\n", step_max_ms,
           (unsigned long long)(S_SPILL_STEP >> 20));
    printf("persist_mb_per_s %.0f %s\n", persist_mb, unit);
    printf("persist_4kib_us %.0f us\n", persist_small_us);
    if (dd >= 0)
        printf("dd_mb_per_s %.0f %s\n", dd, unit);
    else
        fprintf(stderr, "shoal bench: dd to %s failed: no baseline\n", dir);
    fflush(stdout);
    return CLI_EXIT_OK;
}

int cli_cmd_bench(int argc, char **argv)
{
    const char *cmd = "bench";
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"tasks", required_argument, NULL, OPT_TASKS},
        {"queued", required_argument, NULL, OPT_QUEUED},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"plugin", required_argument, NULL, OPT_PLUGIN},
        {"puts", required_argument, NULL, OPT_PUTS},
        {"gets", required_argument, NULL, OPT_GETS},
        {"runs", required_argument, NULL, OPT_RUNS},
        {"object-size", required_argument, NULL, OPT_OBJECT_SIZE},
        {"big-size", required_argument, NULL, OPT_BIG_SIZE},
        {"spill-dir", required_argument, NULL, OPT_SPILL_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    s_opts_t o = {.tasks = 100000,
                  .queued = 1000000,
                  .samples = 1000,
                  .puts = 100000,
                  .gets = 1000,
                  .runs = 5,
                  .object_size = S_OBJECT_SIZE,
                  .big_size = S_BIG_SIZE};
    cli_getopt_reset();
    int c, rc;
    //  No command line follows: options may come after the workload too (GNU permutation).
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_help, stdout);
            return CLI_EXIT_OK;
        case OPT_BROKER:
            o.broker = optarg;
            break;
        case OPT_TASKS:
            if ((rc = cli_parse_number(cmd, "--tasks", optarg, 1, 100000000, &o.tasks)) != 0)
                return rc;
            break;
        case OPT_QUEUED:
            if ((rc = cli_parse_number(cmd, "--queued", optarg, 1, 100000000, &o.queued)) != 0)
                return rc;
            break;
        case OPT_SAMPLES:
            if ((rc = cli_parse_number(cmd, "--samples", optarg, 1, 10000000, &o.samples)) != 0)
                return rc;
            break;
        case OPT_PLUGIN:
            o.plugin = optarg;
            break;
        case OPT_PUTS:
            if ((rc = cli_parse_number(cmd, "--puts", optarg, 1, 100000000, &o.puts)) != 0)
                return rc;
            break;
        case OPT_GETS:
            if ((rc = cli_parse_number(cmd, "--gets", optarg, 1, 10000000, &o.gets)) != 0)
                return rc;
            break;
        case OPT_RUNS:
            if ((rc = cli_parse_number(cmd, "--runs", optarg, 1, 1000, &o.runs)) != 0)
                return rc;
            break;
        case OPT_OBJECT_SIZE:
            if ((rc = cli_parse_size(cmd, "--object-size", optarg, &o.object_size)) != 0)
                return rc;
            break;
        case OPT_BIG_SIZE:
            if ((rc = cli_parse_size(cmd, "--big-size", optarg, &o.big_size)) != 0)
                return rc;
            break;
        case OPT_SPILL_DIR:
            o.spill_dir = optarg;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    o.which = S_ALL;
    if (optind < argc) {
        const char *w = argv[optind++];
        o.which = strcmp(w, "throughput") == 0 ? S_THROUGHPUT
                  : strcmp(w, "latency") == 0  ? S_LATENCY
                  : strcmp(w, "put") == 0      ? S_PUT
                  : strcmp(w, "get") == 0      ? S_GET
                  : strcmp(w, "stream") == 0   ? S_STREAM
                  : strcmp(w, "memory") == 0   ? S_MEMORY
                  : strcmp(w, "spill") == 0    ? S_SPILL
                  : strcmp(w, "all") == 0      ? S_ALL
                                               : 0;
        if (!o.which)
            return cli_usage(cmd,
                             "unknown workload '%s' (throughput, latency, put, get, stream, "
                             "memory, spill or all)",
                             w);
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal__log_init("client", SHOAL_LOG_WARN);
    //  put and get need no plugin.
    if ((o.which & (S_THROUGHPUT | S_LATENCY | S_MEMORY)) && (rc = s_find_plugin(cmd, &o)) != 0)
        return rc;

    int status = CLI_EXIT_OK;
    if (o.which & (S_THROUGHPUT | S_LATENCY)) {
        shoal_t *sh = NULL;
        const char *url = o.broker ? o.broker : S_LOCAL_URL;
        if (!o.broker)
            fprintf(stderr, "shoal bench: starting a local cluster (%s)\n", url);
        if ((rc = cli_connect(cmd, url, &sh)) != 0)
            return rc;
        //  Release what we made, should we stop half-way (a --broker cluster lives on).
        shoal_keep(sh, false);
        status = s_warm_up(cmd, sh, &o);
        if (!status && (o.which & S_THROUGHPUT))
            status = s_throughput(cmd, sh, &o);
        if (!status && (o.which & S_LATENCY))
            status = s_latency(cmd, sh, &o);
        shoal_disconnect(&sh);
    }
    if (!status && (o.which & (S_PUT | S_GET)))
        status = s_objects(cmd, &o);
    if (!status && (o.which & S_STREAM))
        status = s_stream(cmd, &o);
    if (!status && (o.which & S_SPILL))
        status = s_spill(cmd, &o);
    if (!status && (o.which & S_MEMORY)) {
        if (o.broker)
            fprintf(stderr,
                    "shoal bench: skipping broker_bytes_per_queued_task: the memory of "
                    "the broker at %s cannot be read from here (run without --broker)\n",
                    o.broker);
        else
            status = s_memory(cmd, &o);
    }
    return status;
}
