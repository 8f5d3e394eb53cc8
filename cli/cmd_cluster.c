/*  cmd_cluster.c: the daemons (broker, worker, executor) and `shoal up`, a broker and N
    workers on this host in the foreground.

    `shoal up` forks and execs /proc/self/exe for each child: once libzmq runs threads in
    this process only async-signal-safe calls may follow fork, and exec gives every child a
    clean process. Signals reach us through a signalfd (SIGINT, SIGTERM, SIGHUP, SIGCHLD
    are blocked and read from it), so the one loop sees deaths and requests to stop in
    order. Children run in their own process groups, so a Ctrl-C at the terminal reaches
    only us and we stop them in order (workers first, so they do not spend their last
    seconds looking for a broker that is gone); PR_SET_PDEATHSIG stops them should we be
    killed outright. */
#include "cli.h"

#include "broker.h"
#include "common.h"
#include "store.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    OPT_LISTEN = 256,
    OPT_EVENTS,
    OPT_STATE_DIR,
    OPT_INLINE_BUDGET,
    OPT_RESET_STORE,
    OPT_BROKER,
    OPT_SLOTS,
    OPT_STORE_DIR,
    OPT_NAME,
    OPT_DATA,
    OPT_ADVERTISE,
    OPT_SHM_SIZE,
    OPT_SPILL_DIR,
    OPT_SPILL_SIZE,
    OPT_PREFETCH,
    OPT_WORKERS,
    OPT_DIR,
};

#define S_HELP_HELP "  -h, --help         show this help\n"

static void s_on_stop_broker(int sig)
{
    shoal_broker_stop();
}

static void s_on_stop_worker(int sig)
{
    shoal_worker_stop();
}

static void s_handle_stop(void (*handler)(int))
{
    struct sigaction sa = {.sa_handler = handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/*  ------------------------------------------------------------------------- broker */

static const char s_broker_help[] =
    "Usage: shoal broker [OPTIONS]\n"
    "\n"
    "Runs the broker in the foreground until SIGINT or SIGTERM. Once bound it prints one\n"
    "line on stdout:\n"
    "    shoal broker: listening on ENDPOINT, events on ENDPOINT\n"
    "\n"
    "Options:\n"
    "  --listen EP        control endpoint for clients and workers (default\n"
    "                     " CLI_DEFAULT_BROKER "; tcp://127.0.0.1:* picks a free port).\n"
    "                     Anything beyond loopback lets whoever reaches it run commands.\n"
    "  --events EP        events endpoint (default " CLI_DEFAULT_EVENTS ")\n"
    "  --state-dir DIR    keep a journal of submitted tasks in DIR (default: none)\n"
    "  --inline-budget S  bytes of small objects (put by clients, up to 64 KiB each) the\n"
    "                     broker keeps in its directory; a put beyond it fails with\n"
    "                     \"store full\" (K/M/G suffixes; default 1G)\n" S_HELP_HELP;

int cli_cmd_broker(int argc, char **argv)
{
    const char *cmd = "broker";
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"inline-budget", required_argument, NULL, OPT_INLINE_BUDGET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    shoal_broker_config_t config = {0};
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_broker_help, stdout);
            return CLI_EXIT_OK;
        case OPT_LISTEN:
            config.listen = optarg;
            break;
        case OPT_EVENTS:
            config.events = optarg;
            break;
        case OPT_STATE_DIR:
            config.state_dir = optarg;
            break;
        case OPT_INLINE_BUDGET:
            if (cli_parse_size(cmd, "--inline-budget", optarg, &config.inline_budget))
                return CLI_EXIT_USAGE;
            if (config.inline_budget == 0)
                return cli_usage(cmd, "--inline-budget must be positive");
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal__log_init("broker", SHOAL_LOG_INFO);
    s_handle_stop(s_on_stop_broker);
    return shoal_broker_run(&config) == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/*  ------------------------------------------------------------------------- worker */

static const char s_worker_help[] =
    "Usage: shoal worker [OPTIONS]\n"
    "\n"
    "Runs a worker in the foreground until SIGINT or SIGTERM: it takes tasks from the\n"
    "broker, runs them in executor processes (one per slot), keeps their results in its\n"
    "store and serves them to clients and other workers.\n"
    "\n"
    "Options:\n"
    "  --broker URL       the broker (default $SHOAL_BROKER, else " CLI_DEFAULT_BROKER ")\n"
    "  --name NAME        unique in the cluster (default: the host name)\n"
    "  --slots N          tasks run at once (default: the number of CPUs)\n"
    "  --prefetch N       tasks held beyond the slots (default: max(2 x slots, 128); 0:\n"
    "                     none): a deep queue keeps executors fed with batches\n"
    "  --store-dir DIR    the store's index (default ~/.local/state/shoal/NAME)\n"
    "  --shm-size SIZE    store memory in /dev/shm, e.g. 512M, 2G (default 256M). It is\n"
    "                     committed at start: there is no swap, so size it modestly\n"
    "  --data EP          bind the data socket here (default: an ephemeral port on the\n"
    "                     address that reaches the broker)\n"
    "  --advertise HOST   the host others reach the data socket at (default: that\n"
    "                     address)\n"
    "  --reset-store      start with an empty store: remove what the store dir and its\n"
    "                     arena hold (a store that cannot be read is reset anyway, with\n"
    "                     a warning naming the file)\n"
    "  --spill-size SIZE  the disk tier: when the store memory is full, sealed objects\n"
    "                     nobody reads are spilled to disk, least recently used first, up\n"
    "                     to SIZE bytes, e.g. 4G (default: 4 x --shm-size, at most half\n"
    "                     the disk space free at start; 0: no disk tier, and a write that\n"
    "                     finds no room fails with 'store full' after 5 s)\n"
    "  --spill-dir DIR    where the disk tier lives (default STORE_DIR/spill)\n" S_HELP_HELP;

int cli_cmd_worker(int argc, char **argv)
{
    const char *cmd = "worker";
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"name", required_argument, NULL, OPT_NAME},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"store-dir", required_argument, NULL, OPT_STORE_DIR},
        {"shm-size", required_argument, NULL, OPT_SHM_SIZE},
        {"data", required_argument, NULL, OPT_DATA},
        {"advertise", required_argument, NULL, OPT_ADVERTISE},
        {"reset-store", no_argument, NULL, OPT_RESET_STORE},
        {"spill-dir", required_argument, NULL, OPT_SPILL_DIR},
        {"spill-size", required_argument, NULL, OPT_SPILL_SIZE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    shoal_worker_config_t config = {.broker = cli_default_broker(),
                                    .spill_size = SHOAL_WORKER_SPILL_AUTO};
    cli_getopt_reset();
    int c, rc;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_worker_help, stdout);
            return CLI_EXIT_OK;
        case OPT_BROKER:
            config.broker = optarg;
            break;
        case OPT_NAME:
            if (!*optarg || strchr(optarg, '/'))
                return cli_usage(cmd, "--name: not a worker name: '%s'", optarg);
            config.name = optarg;
            break;
        case OPT_SLOTS:
            if ((rc = cli_parse_number(cmd, "--slots", optarg, 1, 4096, &v)) != 0)
                return rc;
            config.slots = (int)v;
            break;
        case OPT_PREFETCH:
            if ((rc = cli_parse_number(cmd, "--prefetch", optarg, 0, 65536, &v)) != 0)
                return rc;
            config.prefetch = v == 0 ? -1 : (int)v; //  the config's 0 is "default"
            break;
        case OPT_STORE_DIR:
            config.store_dir = optarg;
            break;
        case OPT_SHM_SIZE:
            if ((rc = cli_parse_size(cmd, "--shm-size", optarg, &config.shm_size)) != 0)
                return rc;
            break;
        case OPT_DATA:
            config.data = optarg;
            break;
        case OPT_ADVERTISE:
            config.advertise = optarg;
            break;
        case OPT_RESET_STORE:
            config.reset_store = true;
            break;
        case OPT_SPILL_DIR:
            if (!*optarg)
                return cli_usage(cmd, "--spill-dir: empty path");
            config.spill_dir = optarg;
            break;
        case OPT_SPILL_SIZE:
            if (strcmp(optarg, "0") == 0)
                config.spill_size = 0;
            else if ((rc = cli_parse_size(cmd, "--spill-size", optarg, &config.spill_size)) != 0)
                return rc;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal__log_init("worker", SHOAL_LOG_INFO);
    s_handle_stop(s_on_stop_worker);
    return shoal_worker_run(&config) == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

int cli_cmd_executor(int argc, char **argv)
{
    const char *cmd = "executor";
    uint64_t slot;
    if (argc != 4)
        return cli_fail(cmd, CLI_EXIT_USAGE,
                        "usage: shoal executor fd:N ARENA SLOT (started by the worker)");
    if (cli_parse_number(cmd, "SLOT", argv[3], 0, INT_MAX, &slot) != 0)
        return CLI_EXIT_USAGE;
    shoal__log_init("executor", SHOAL_LOG_INFO);
    return shoal_executor_run(argv[1], argv[2], (int)slot);
}

/*  ----------------------------------------------------------------------------- up */

static const char s_up_help[] =
    "Usage: shoal up [OPTIONS]\n"
    "\n"
    "Starts a broker and N workers on this host and keeps them running in the foreground.\n"
    "Once every worker has joined it prints on stdout:\n"
    "    shoal up: broker tcp://127.0.0.1:PORT, events tcp://..., N workers ready\n"
    "    export SHOAL_BROKER=tcp://127.0.0.1:PORT\n"
    "Ctrl-C (or SIGTERM) stops the workers, then the broker, and removes their stores.\n"
    "\n"
    "Options:\n"
    "  --workers N        how many workers (default 2), named HOST-1 ... HOST-N\n"
    "  --slots N          tasks each worker runs at once (default: the CPUs divided among\n"
    "                     the workers, at least 1)\n"
    "  --listen EP        broker control endpoint (default " CLI_DEFAULT_BROKER ");\n"
    "                     tcp://127.0.0.1:* picks a free port\n"
    "  --events EP        broker events endpoint (default " CLI_DEFAULT_EVENTS ")\n"
    "  --shm-size SIZE    store memory of each worker in /dev/shm (default 256M). It is\n"
    "                     committed RAM and there is no swap: N x SIZE must fit\n"
    "  --dir DIR          keep the workers' stores under DIR (kept on exit) instead of a\n"
    "                     temporary directory (removed on exit)\n"
    "  --spill-size SIZE  give each worker a disk tier of SIZE in its store (see `shoal\n"
    "                     worker --help`; default: 4 x --shm-size, at most half the\n"
    "                     free disk; 0: no spilling)\n" S_HELP_HELP;

/*  Time for the broker to bind and print its line, for the workers to start (their arena
    is pre-faulted: ~0.1 s per 256 MiB here, more under memory pressure) and join, and for
    each group of children to stop once told to. */
#define S_UP_BROKER_MS  10000
#define S_UP_WORKERS_MS 60000
#define S_UP_STOP_MS    10000

typedef struct {
    pid_t pid; //  0 once reaped
    const char *role;
    char name[128];
    int status;
} s_child_t;

typedef struct {
    s_child_t *children; //  [0] is the broker, then the workers
    size_t n_children;
    int sfd;        //  signalfd
    int broker_out; //  the read end of the broker's stdout, or -1
    sigset_t old_mask;
    char exe[PATH_MAX];
    char dir[PATH_MAX];
    bool own_dir; //  a temporary directory we made and remove
    int stop_signal;
} s_up_t;

//  Describes how a child ended.
static void s_describe_exit(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "ended (status %#x)", (unsigned)status);
}

/*  Forks and execs argv. out_fd >= 0 becomes the child's stdout. Between fork and exec
    only async-signal-safe calls. Returns the pid, or -1 with errno. */
static pid_t s_spawn(s_up_t *up, char *const argv[], int out_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    //  The child: its own process group (a terminal's Ctrl-C is for `shoal up`), killed
    //  when `shoal up` dies, our signal mask undone.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    if (out_fd >= 0)
        dup2(out_fd, STDOUT_FILENO);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &up->old_mask, NULL);
    execv(up->exe, argv);
    _exit(127);
}

//  Reaps every child that ended; reports each unexpected end. Returns true when the
//  broker has ended.
static bool s_reap(s_up_t *up, bool stopping)
{
    bool broker_gone = false;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        for (size_t i = 0; i < up->n_children; i++) {
            s_child_t *child = &up->children[i];
            if (child->pid != pid)
                continue;
            child->pid = 0;
            child->status = status;
            if (i == 0)
                broker_gone = true;
            if (!stopping) {
                char how[128];
                s_describe_exit(status, how, sizeof how);
                fprintf(stderr, "shoal up: %s %s (pid %d) %s\n", child->role, child->name, (int)pid,
                        how);
            }
        }
    }
    return broker_gone;
}

//  Reads pending signals. Returns the stop signal (SIGINT, SIGTERM, SIGHUP) if one came,
//  else 0; *child_p is set when SIGCHLD came.
static int s_read_signals(s_up_t *up, bool *child_p)
{
    int stop = 0;
    struct signalfd_siginfo si;
    while (read(up->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            *child_p = true;
        else
            stop = (int)si.ssi_signo;
    }
    return stop;
}

//  Copies what the broker prints after its first line to our stderr; closes on EOF.
static void s_forward_broker(s_up_t *up)
{
    char buf[4096];
    ssize_t n = read(up->broker_out, buf, sizeof buf);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
        (void)w;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(up->broker_out);
        up->broker_out = -1;
    }
}

//  Signals the children in [from, to) that are alive, then waits up to ms for them to
//  end. A second stop signal while waiting turns the wait into SIGKILL at once.
static void s_stop_range(s_up_t *up, size_t from, size_t to, int ms)
{
    for (size_t i = from; i < to; i++)
        if (up->children[i].pid > 0)
            kill(up->children[i].pid, SIGTERM);
    int64_t deadline = shoal__now_ms() + ms;
    bool killed = false;
    for (;;) {
        s_reap(up, true);
        bool alive = false;
        for (size_t i = from; i < to; i++)
            alive |= up->children[i].pid > 0;
        if (!alive)
            return;
        int64_t left = deadline - shoal__now_ms();
        if (left <= 0 && !killed) {
            for (size_t i = from; i < to; i++) {
                if (up->children[i].pid <= 0)
                    continue;
                fprintf(stderr, "shoal up: %s %s (pid %d) did not stop in %d s: killing it\n",
                        up->children[i].role, up->children[i].name, (int)up->children[i].pid,
                        ms / 1000);
                kill(up->children[i].pid, SIGKILL);
            }
            killed = true;
            deadline = shoal__now_ms() + 5000;
            continue;
        }
        if (left <= 0)
            return; //  unkillable (stuck in the kernel): give up waiting
        struct pollfd pfd = {up->sfd, POLLIN, 0};
        poll(&pfd, 1, (int)SHOAL__MIN(left, (int64_t)200));
        bool child = false;
        if (s_read_signals(up, &child) && !killed) {
            fprintf(stderr, "shoal up: stopping at once\n");
            deadline = 0;
        }
    }
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "shoal up: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

//  Stops the workers, then the broker; removes the arenas and the temporary directory.
static void s_stop_all(s_up_t *up)
{
    if (up->n_children > 1)
        s_stop_range(up, 1, up->n_children, S_UP_STOP_MS);
    if (up->n_children > 0)
        s_stop_range(up, 0, 1, S_UP_STOP_MS);
    for (size_t i = 1; i < up->n_children; i++) {
        char arena[PATH_MAX], store_dir[PATH_MAX + 160];
        snprintf(store_dir, sizeof store_dir, "%s/%s", up->dir, up->children[i].name);
        if (shoal_store_arena_path_for(store_dir, up->children[i].name, arena, sizeof arena))
            continue;
        if (unlink(arena) != 0 && errno != ENOENT)
            fprintf(stderr, "shoal up: cannot remove %s: %s\n", arena, strerror(errno));
        char pins[PATH_MAX];
        if (shoal_store_pins_path_for(arena, pins, sizeof pins) == 0 && unlink(pins) != 0 &&
            errno != ENOENT)
            fprintf(stderr, "shoal up: cannot remove %s: %s\n", pins, strerror(errno));
    }
    if (up->own_dir && up->dir[0])
        nftw(up->dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  Reads the broker's line "shoal broker: listening on EP, events on EP" within the
//  deadline. Returns 0, or a stop signal number, or -1 when the broker failed.
static int s_read_broker_line(s_up_t *up, char *listen, char *events, size_t size)
{
    char line[1024];
    size_t len = 0;
    int64_t deadline = shoal__now_ms() + S_UP_BROKER_MS;
    for (;;) {
        char *nl = memchr(line, '\n', len);
        if (nl) {
            *nl = '\0';
            const char *a = strstr(line, "listening on ");
            const char *b = a ? strstr(a, ", events on ") : NULL;
            if (!a || !b) {
                fprintf(stderr, "shoal up: the broker said '%s', not where it listens\n", line);
                return -1;
            }
            a += strlen("listening on ");
            snprintf(listen, size, "%.*s", (int)(b - a), a);
            snprintf(events, size, "%s", b + strlen(", events on "));
            //  Anything after the line goes to our stderr.
            if (nl + 1 < line + len) {
                ssize_t w = write(STDERR_FILENO, nl + 1, (size_t)(line + len - nl - 1));
                (void)w;
            }
            return 0;
        }
        int64_t left = deadline - shoal__now_ms();
        if (left <= 0) {
            fprintf(stderr, "shoal up: the broker did not say where it listens within %d s\n",
                    S_UP_BROKER_MS / 1000);
            return -1;
        }
        struct pollfd pfd[2] = {{up->sfd, POLLIN, 0}, {up->broker_out, POLLIN, 0}};
        poll(pfd, 2, (int)left);
        bool child = false;
        int stop = s_read_signals(up, &child);
        if (stop)
            return stop;
        if (pfd[1].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(up->broker_out, line + len, sizeof line - 1 - len);
            if (n > 0)
                len += (size_t)n;
            else if (n == 0 || len == sizeof line - 1) {
                //  EOF before a line: the broker failed (its stderr said why).
                s_reap(up, true);
                char how[128] = "closed its output";
                if (up->children[0].pid == 0)
                    s_describe_exit(up->children[0].status, how, sizeof how);
                fprintf(stderr, "shoal up: the broker %s before it was ready\n", how);
                return -1;
            }
        }
    }
}

//  "tcp://*:5" and "tcp://0.0.0.0:5" are bind addresses; clients here use 127.0.0.1.
static void s_client_endpoint(const char *bound, char *out, size_t size)
{
    if (strncmp(bound, "tcp://*:", 8) == 0)
        snprintf(out, size, "tcp://127.0.0.1:%s", bound + 8);
    else if (strncmp(bound, "tcp://0.0.0.0:", 14) == 0)
        snprintf(out, size, "tcp://127.0.0.1:%s", bound + 14);
    else
        snprintf(out, size, "%s", bound);
}

//  Waits until the broker lists every worker of ours. 0, a stop signal, or -1.
static int s_wait_workers(s_up_t *up, const char *url)
{
    size_t want = up->n_children - 1;
    int64_t deadline = shoal__now_ms() + S_UP_WORKERS_MS;
    shoal_t *client = NULL;
    int rc = shoal_connect(url, S_UP_BROKER_MS, &client);
    if (rc) {
        fprintf(stderr, "shoal up: cannot reach our broker: %s\n", shoal_last_error(NULL));
        return -1;
    }
    int result = -1;
    for (;;) {
        shoal_worker_info_t *list = NULL;
        size_t n = 0, ours = 0;
        if (shoal_workers(client, &list, &n, 2000) == 0) {
            for (size_t i = 0; i < n; i++)
                for (size_t j = 1; j < up->n_children; j++)
                    ours += strcmp(list[i].name, up->children[j].name) == 0;
            shoal_workers_free(&list, n);
        }
        if (ours >= want) {
            result = 0;
            break;
        }
        bool child = false;
        struct pollfd pfd = {up->sfd, POLLIN, 0};
        poll(&pfd, 1, 100);
        int stop = s_read_signals(up, &child);
        if (stop) {
            result = stop;
            break;
        }
        if (child) {
            s_reap(up, false);
            bool dead = false;
            for (size_t i = 0; i < up->n_children; i++)
                dead |= up->children[i].pid == 0;
            if (dead) {
                fprintf(stderr, "shoal up: giving up: a process died while starting\n");
                break;
            }
        }
        if (shoal__now_ms() >= deadline) {
            fprintf(stderr, "shoal up: only %zu of %zu workers joined within %d s\n", ours, want,
                    S_UP_WORKERS_MS / 1000);
            break;
        }
    }
    shoal_disconnect(&client);
    return result;
}

int cli_cmd_up(int argc, char **argv)
{
    const char *cmd = "up";
    static const struct option opts[] = {
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"shm-size", required_argument, NULL, OPT_SHM_SIZE},
        {"dir", required_argument, NULL, OPT_DIR},
        {"spill-size", required_argument, NULL, OPT_SPILL_SIZE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t n_workers = 2, slots = 0, shm_size, spill_size;
    const char *spill_text = NULL; //  the worker's default
    const char *listen_ep = CLI_DEFAULT_BROKER, *events_ep = CLI_DEFAULT_EVENTS;
    const char *shm_text = "256M", *dir = NULL;
    cli_getopt_reset();
    int c, rc;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_up_help, stdout);
            return CLI_EXIT_OK;
        case OPT_WORKERS:
            if ((rc = cli_parse_number(cmd, "--workers", optarg, 1, 256, &n_workers)) != 0)
                return rc;
            break;
        case OPT_SLOTS:
            if ((rc = cli_parse_number(cmd, "--slots", optarg, 1, 4096, &slots)) != 0)
                return rc;
            break;
        case OPT_LISTEN:
            listen_ep = optarg;
            break;
        case OPT_EVENTS:
            events_ep = optarg;
            break;
        case OPT_SHM_SIZE:
            if ((rc = cli_parse_size(cmd, "--shm-size", optarg, &shm_size)) != 0)
                return rc;
            shm_text = optarg;
            break;
        case OPT_SPILL_SIZE:
            if (strcmp(optarg, "0") != 0 &&
                (rc = cli_parse_size(cmd, "--spill-size", optarg, &spill_size)) != 0)
                return rc;
            spill_text = optarg;
            break;
        case OPT_DIR:
            dir = optarg;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal__log_init("up", SHOAL_LOG_WARN);
    if (slots == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        slots = cpus > (long)n_workers ? (uint64_t)cpus / n_workers : 1;
    }

    s_up_t up = {.sfd = -1, .broker_out = -1};
    s_child_t children[257];
    memset(children, 0, sizeof children);
    up.children = children;
    ssize_t len = readlink("/proc/self/exe", up.exe, sizeof up.exe - 1);
    if (len <= 0)
        shoal__strlcpy(up.exe, "/proc/self/exe", sizeof up.exe);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &up.old_mask);
    //  A reader of our stdout that goes away must not kill us before we clean up.
    signal(SIGPIPE, SIG_IGN);
    up.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (up.sfd < 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "signalfd: %s", strerror(errno));

    int status = CLI_EXIT_USAGE;
    if (dir) {
        int mrc = shoal__mkdir_p(dir, 0700);
        if (mrc != 0) {
            cli_fail(cmd, CLI_EXIT_USAGE, "cannot create %s: %s", dir, strerror(-mrc));
            goto out;
        }
        shoal__strlcpy(up.dir, dir, sizeof up.dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(up.dir, sizeof up.dir, "%s/shoal-up-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(up.dir)) {
            cli_fail(cmd, CLI_EXIT_USAGE, "cannot create a directory %s: %s", up.dir,
                     strerror(errno));
            up.dir[0] = '\0';
            goto out;
        }
        up.own_dir = true;
    }

    //  The broker, its stdout on a pipe: its first line says where it listens.
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        cli_fail(cmd, CLI_EXIT_USAGE, "pipe: %s", strerror(errno));
        goto out;
    }
    char *broker_argv[] = {up.exe,     "broker",          "--listen", (char *)listen_ep,
                           "--events", (char *)events_ep, NULL};
    children[0].role = "broker";
    snprintf(children[0].name, sizeof children[0].name, "%.*s", (int)sizeof children[0].name - 1,
             listen_ep);
    children[0].pid = s_spawn(&up, broker_argv, pipefd[1]);
    close(pipefd[1]);
    up.broker_out = pipefd[0];
    if (children[0].pid < 0) {
        children[0].pid = 0;
        cli_fail(cmd, CLI_EXIT_USAGE, "fork: %s", strerror(errno));
        goto out;
    }
    up.n_children = 1;
    char bound[512], bound_events[512], url[512], events_url[512];
    rc = s_read_broker_line(&up, bound, bound_events, sizeof bound);
    if (rc != 0) {
        status = rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        goto out;
    }
    fcntl(up.broker_out, F_SETFL, O_NONBLOCK);
    s_client_endpoint(bound, url, sizeof url);
    s_client_endpoint(bound_events, events_url, sizeof events_url);
    snprintf(children[0].name, sizeof children[0].name, "%.*s", (int)sizeof children[0].name - 1,
             url);

    //  The workers.
    char slots_text[32];
    snprintf(slots_text, sizeof slots_text, "%llu", (unsigned long long)slots);
    for (uint64_t i = 1; i <= n_workers; i++) {
        s_child_t *child = &children[i];
        child->role = "worker";
        snprintf(child->name, sizeof child->name, "%.100s-%llu", shoal__hostname(),
                 (unsigned long long)i);
        char store_dir[PATH_MAX + 160];
        snprintf(store_dir, sizeof store_dir, "%s/%s", up.dir, child->name);
        char *worker_argv[] = {up.exe,         "worker",           "--broker",    url,
                               "--name",       child->name,        "--store-dir", store_dir,
                               "--slots",      slots_text,         "--shm-size",  (char *)shm_text,
                               "--spill-size", (char *)spill_text, NULL};
        if (!spill_text) //  the last pair: the worker's default
            worker_argv[12] = NULL;
        //  Workers' stdout goes to our stderr: our stdout carries only our own lines.
        child->pid = s_spawn(&up, worker_argv, STDERR_FILENO);
        if (child->pid < 0) {
            child->pid = 0;
            cli_fail(cmd, CLI_EXIT_USAGE, "fork: %s", strerror(errno));
            goto out;
        }
        up.n_children++;
    }
    rc = s_wait_workers(&up, url);
    if (rc != 0) {
        status = rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        goto out;
    }
    printf("shoal up: broker %s, events %s, %llu workers ready\n", url, events_url,
           (unsigned long long)n_workers);
    printf("export SHOAL_BROKER=%s\n", url);
    fflush(stdout);

    //  Serve until told to stop or the broker dies.
    status = CLI_EXIT_OK;
    for (;;) {
        struct pollfd pfd[2] = {{up.sfd, POLLIN, 0}, {up.broker_out, POLLIN, 0}};
        poll(pfd, up.broker_out >= 0 ? 2 : 1, -1);
        if (up.broker_out >= 0 && (pfd[1].revents & (POLLIN | POLLHUP)))
            s_forward_broker(&up);
        bool child = false;
        int stop = s_read_signals(&up, &child);
        if (child && s_reap(&up, false)) {
            fprintf(stderr, "shoal up: the broker is gone: stopping the workers\n");
            status = CLI_EXIT_FAILED;
            break;
        }
        if (stop) {
            fprintf(stderr, "shoal up: %s: stopping\n", strsignal(stop));
            break;
        }
    }

out:
    s_stop_all(&up);
    if (up.broker_out >= 0)
        close(up.broker_out);
    close(up.sfd);
    sigprocmask(SIG_SETMASK, &up.old_mask, NULL);
    return status;
}
