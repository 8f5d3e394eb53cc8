/*  cmd_bench.c: `shoal bench`, the control plane's figures measured the way users meet
    them (issue 4; bench/README.md keeps the latest and says what each means).

    One line per figure on stdout, `NAME VALUE UNIT`, so scripts (bench/run) can read them;
    progress and notes go to stderr. The workloads:
    - throughput: N no-op fn tasks from one client, submitted as fast as shoal_submit
      batches them, timed until the client knows every completion (shoal_wait on all).
    - latency: sequential submit -> wait -> get of one no-op fn task, and as its baseline
      a raw libzmq DEALER -> ROUTER round trip over TCP loopback, measured in this run.
    - memory: a broker of our own with no workers, its VmRSS before and after a million
      tasks are queued in it.
    Without --broker the first two run on a local://2 cluster (2 workers x 1 slot, the
    shape of the Dask comparison in bench/peers/). */
#include "cli.h"

#include "common.h"

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
};

enum {
    S_THROUGHPUT = 1,
    S_LATENCY = 2,
    S_MEMORY = 4,
    S_ALL = 7,
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

typedef struct {
    const char *broker; //  NULL: a local cluster of our own
    uint64_t tasks, queued, samples;
    const char *plugin;
    char fn[PATH_MAX + 8]; //  "PATH:noop"
    int which;
} s_opts_t;

static const char s_help[] =
    "Usage: shoal bench [OPTIONS] [throughput|latency|memory|all]\n"
    "\n"
    "Measures the control plane and prints one line per figure on stdout, NAME VALUE\n"
    "UNIT (progress goes to stderr):\n"
    "  throughput_tasks_per_s        N no-op fn tasks submitted from one client, until\n"
    "                                the client knows every completion\n"
    "  latency_median_us             sequential submit -> wait -> get of one no-op fn\n"
    "  latency_p99_us                task (--samples of them)\n"
    "  zmq_rtt_median_us             the baseline: a raw libzmq DEALER -> ROUTER round\n"
    "                                trip of 16 bytes over TCP loopback, in this process\n"
    "  broker_bytes_per_queued_task  a broker's memory per queued task: a broker of its\n"
    "                                own, without workers, VmRSS before and after\n"
    "                                --queued tasks are submitted and acknowledged\n"
    "`throughput` gives the first, `latency` the next three, `memory` the last, `all`\n"
    "(the default) every one. Without --broker, throughput and latency run on a local\n"
    "cluster started for the purpose: a broker and 2 workers x 1 slot (local://2).\n"
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

/*  --------------------------------------------------------------------- latency */

static int s_latency(const char *cmd, shoal_t *sh, const s_opts_t *o)
{
    size_t n = (size_t)o->samples;
    int64_t *us = malloc(n * sizeof *us);
    shoal_ref_t *ids = malloc(n * sizeof *ids);
    int status = CLI_EXIT_OK;
    size_t made = 0;
    if (!us || !ids) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
        goto done;
    }
    fprintf(stderr, "shoal bench: latency: %zu sequential submit -> wait -> get\n", n);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN, .fn = o->fn};
    int64_t last_progress = shoal__now_ms();
    for (size_t i = 0; i < n; i++) {
        int64_t t0 = shoal__now_us();
        int rc = shoal_submit(sh, &spec, &ids[i]);
        if (rc) {
            status = cli_fail(cmd, CLI_EXIT_USAGE, "latency: submit: %s", shoal_last_error(sh));
            goto done;
        }
        made++;
        shoal_view_t view;
        if ((rc = shoal_wait(sh, &ids[i], 1, false, S_REPLY_MS)) != 0 ||
            (rc = shoal_get(sh, shoal_ref_output(ids[i], 0), S_REPLY_MS, &view)) != 0) {
            status =
                cli_fail(cmd, s_exit_for(rc), "latency: task %zu: %s", i, shoal_last_error(sh));
            goto done;
        }
        shoal_view_release(&view);
        us[i] = shoal__now_us() - t0;
        if (s_progress_due(&last_progress))
            fprintf(stderr, "shoal bench: latency: %zu of %zu\n", i + 1, n);
    }
    qsort(us, n, sizeof *us, s_cmp_i64);
    s_figure("latency_median_us", s_median(us, n), "us");
    s_figure("latency_p99_us", s_percentile(us, n, 99), "us");
done:
    if (made)
        shoal_remove(sh, ids, made, S_REPLY_MS);
    free(ids);
    free(us);
    return status;
}

/*  ------------------------------------------------------------ the libzmq baseline */

typedef struct {
    void *router;
} s_echo_t;

//  The ROUTER side: sends every message back to whoever sent it, until an empty one or
//  an error (ETERM: the context is closing). The DEALER's receive timeout reports a
//  missing echo.
static void *s_echo_run(void *arg)
{
    s_echo_t *echo = arg;
    for (bool stop = false; !stop;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        stop = zmq_msg_recv(&id, echo->router, 0) < 0 || zmq_msg_recv(&body, echo->router, 0) < 0 ||
               zmq_msg_size(&body) == 0 || zmq_msg_send(&id, echo->router, ZMQ_SNDMORE) < 0 ||
               zmq_msg_send(&body, echo->router, 0) < 0;
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

static int s_zmq_rtt(const char *cmd, const s_opts_t *o)
{
    size_t n = (size_t)o->samples;
    int64_t *us = malloc(n * sizeof *us);
    void *ctx = zmq_ctx_new();
    void *dealer = NULL;
    s_echo_t echo = {0};
    bool running = false;
    pthread_t thread;
    int status = CLI_EXIT_OK;
    char endpoint[256];
    size_t len = sizeof endpoint;
    int timeout = S_REPLY_MS, linger = 0;
    if (!us || !ctx) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: %s",
                          us ? zmq_strerror(errno) : "out of memory");
        goto done;
    }
    echo.router = zmq_socket(ctx, ZMQ_ROUTER);
    dealer = zmq_socket(ctx, ZMQ_DEALER);
    if (!echo.router || !dealer ||
        zmq_setsockopt(echo.router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        zmq_bind(echo.router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(echo.router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0 ||
        zmq_connect(dealer, endpoint) != 0) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: sockets: %s", zmq_strerror(errno));
        goto done;
    }
    //  pthread_create is a full barrier: the ROUTER passes to the thread safely.
    if (pthread_create(&thread, NULL, s_echo_run, &echo) != 0) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: cannot start a thread");
        goto done;
    }
    running = true;
    char msg[S_ECHO_BYTES] = "shoal bench rtt", back[S_ECHO_BYTES];
    //  As for shoal, the first round trips (the connection, cold caches) are not timed.
    for (size_t i = 0; i < S_WARMUP + n; i++) {
        int64_t t0 = shoal__now_us();
        if (zmq_send(dealer, msg, sizeof msg, 0) != (int)sizeof msg ||
            zmq_recv(dealer, back, sizeof back, 0) != (int)sizeof back) {
            status =
                cli_fail(cmd, CLI_EXIT_USAGE, "zmq baseline: round trip %zu over %s: %s", i,
                         endpoint, errno == EAGAIN ? "no echo within 10 s" : zmq_strerror(errno));
            goto done;
        }
        if (i >= S_WARMUP)
            us[i - S_WARMUP] = shoal__now_us() - t0;
    }
    qsort(us, n, sizeof *us, s_cmp_i64);
    s_figure("zmq_rtt_median_us", s_median(us, n), "us");
done:
    if (running) {
        //  The empty message stops the echo; should it be lost, closing the context
        //  (ETERM) does.
        zmq_send(dealer, "", 0, ZMQ_DONTWAIT);
        if (dealer)
            zmq_close(dealer);
        dealer = NULL;
        zmq_ctx_shutdown(ctx);
        pthread_join(thread, NULL);
    }
    if (dealer)
        zmq_close(dealer);
    if (echo.router)
        zmq_close(echo.router);
    if (ctx)
        zmq_ctx_term(ctx);
    free(us);
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

int cli_cmd_bench(int argc, char **argv)
{
    const char *cmd = "bench";
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"tasks", required_argument, NULL, OPT_TASKS},
        {"queued", required_argument, NULL, OPT_QUEUED},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"plugin", required_argument, NULL, OPT_PLUGIN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    s_opts_t o = {.tasks = 100000, .queued = 1000000, .samples = 1000};
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
        default:
            return cli_bad_option(cmd);
        }
    }
    o.which = S_ALL;
    if (optind < argc) {
        const char *w = argv[optind++];
        o.which = strcmp(w, "throughput") == 0 ? S_THROUGHPUT
                  : strcmp(w, "latency") == 0  ? S_LATENCY
                  : strcmp(w, "memory") == 0   ? S_MEMORY
                  : strcmp(w, "all") == 0      ? S_ALL
                                               : 0;
        if (!o.which)
            return cli_usage(cmd, "unknown workload '%s' (throughput, latency, memory or all)", w);
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal__log_init("client", SHOAL_LOG_WARN);
    if ((rc = s_find_plugin(cmd, &o)) != 0)
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
        //  The baseline while the cluster idles, as it did for the latency figures.
        if (!status && (o.which & S_LATENCY))
            status = s_zmq_rtt(cmd, &o);
        shoal_disconnect(&sh);
    }
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
