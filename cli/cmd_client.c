/*  cmd_client.c: the client subcommands: run, submit, wait, get, logs, cancel, rm, workers,
    jobs.

    Each connects with a deadline (a missing broker is exit 2 naming the address), does one
    thing through libshoal and maps the outcome onto the shared exit statuses. The CLI
    keeps what it makes: objects stay in the cluster until `shoal rm` (except `shoal run`,
    whose refs nobody else knows: it removes them once printed). */
#include "cli.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    OPT_BROKER = 256,
    OPT_TIMEOUT,
    OPT_INPUT,
    OPT_OUTPUTS,
    OPT_NAME,
    OPT_RETRIES,
    OPT_JOB,
    OPT_EXEC,
    OPT_FN,
    OPT_ARG,
    OPT_ARG_FILE,
    OPT_ANY,
    OPT_ARRAY,
    OPT_TTL,
    OPT_TAG,
    OPT_PERSIST,
    OPT_FOLLOW,
    OPT_STREAM_INPUT,
    OPT_STDIN_INPUT,
};

#define S_BROKER_HELP                                                                              \
    "  --broker URL     the broker (default $SHOAL_BROKER, else " CLI_DEFAULT_BROKER ")\n"
#define S_HELP_HELP "  -h, --help       show this help\n"

/*  A request that should be answered at once (acks, worker lists): 10 s. */
#define S_REPLY_TIMEOUT_MS 10000
/*  After a task finished, its log is normally there at once: wait at most this long. */
#define S_LOG_TIMEOUT_MS 5000

//  Writes all of data to fd. 0 or -errno.
static int s_write_all(int fd, const void *data, size_t size)
{
    const char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

//  Prints "PREFIX: reason" for a final, failed status; continuation lines (the tail of
//  the task's stderr) are indented.
static void s_print_reason(FILE *out, const char *prefix, const shoal_status_t *st)
{
    char text[256];
    const char *reason = st->error;
    if (!reason || !*reason) {
        if (st->state == SHOAL_STATUS_UNKNOWN)
            reason = "not found (never submitted, or removed)";
        else if (st->exit_code > 0)
            snprintf(text, sizeof text, "exit status %d", st->exit_code), reason = text;
        else if (st->exit_code < 0)
            snprintf(text, sizeof text, "killed by signal %d (%s)", -st->exit_code,
                     strsignal(-st->exit_code)),
                reason = text;
        else
            reason = shoal_strerror(st->code);
    }
    fprintf(out, "%s: ", prefix);
    for (const char *p = reason; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(out, "%s%.*s\n", p == reason ? "" : "    ", (int)len, p);
        if (!nl)
            break;
        p = nl + 1;
        if (!*p)
            break;
    }
}

//  After a call on refs failed with rc: if ref has a final failed status, prints the
//  reason and returns CLI_EXIT_FAILED; else prints the error and returns 2 or 3.
static int s_report(const char *cmd, shoal_t *client, shoal_ref_t ref, int rc)
{
    shoal_status_t st;
    char text[SHOAL_REF_TEXT_SIZE];
    if (shoal_status(client, ref, &st) == 0 && st.code != 0) {
        char prefix[64 + SHOAL_REF_TEXT_SIZE];
        snprintf(prefix, sizeof prefix, "shoal %s: %s", cmd, shoal_ref_format(ref, text));
        s_print_reason(stderr, prefix, &st);
        return CLI_EXIT_FAILED;
    }
    return cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
}

/*  --------------------------------------------------------------------- run, submit */

typedef struct {
    const char *broker;
    int timeout_ms;
    shoal_ref_t *inputs;
    size_t n_inputs;
    uint64_t stream_inputs; /*  --stream-input, --stdin-input: bit i */
    bool stdin_input;
    uint64_t outputs, retries;
    const char *name, *job;
    uint64_t ttl_ms;
    bool persist; /*  --persist */
    const char *tags[SHOAL_TAGS_MAX];
    size_t n_tags;
    bool exec;
    const char *fn;  /*  --fn LIB:SYMBOL */
    const char *arg; /*  --arg TEXT, or the bytes of --arg-file (arg_owned) */
    size_t arg_size;
    const char *arg_file;
    char *arg_owned;
    char **command;
    uint64_t *indices; /*  --array: the indices, ascending */
    size_t n_indices;
} s_task_opts_t;

static void s_task_opts_clear(s_task_opts_t *o)
{
    free(o->inputs);
    free(o->arg_owned);
    free(o->indices);
    o->inputs = NULL;
    o->arg_owned = NULL;
    o->indices = NULL;
}

/*  --arg-file: at most this many bytes, the largest message a broker takes (64 MiB). */
#define S_ARG_FILE_MAX (64u << 20)

//  Reads --arg-file FILE ("-": stdin) into o->arg_owned. 0 or an exit status.
static int s_read_arg_file(const char *cmd, s_task_opts_t *o)
{
    bool is_stdin = strcmp(o->arg_file, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(o->arg_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "--arg-file %s: %s", o->arg_file, strerror(errno));
    size_t size = 0, cap = 0;
    char *buf = NULL;
    int err = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 4096;
            char *p = size < S_ARG_FILE_MAX ? realloc(buf, cap + 1) : NULL;
            if (!p) {
                err = size < S_ARG_FILE_MAX ? ENOMEM : EFBIG;
                break;
            }
            buf = p;
        }
        ssize_t n = read(fd, buf + size, cap - size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        size += (size_t)n;
    }
    if (!is_stdin)
        close(fd);
    if (err) {
        free(buf);
        if (err == EFBIG)
            return cli_fail(cmd, CLI_EXIT_USAGE, "--arg-file %s: larger than %u MiB", o->arg_file,
                            S_ARG_FILE_MAX >> 20);
        return cli_fail(cmd, CLI_EXIT_USAGE, "--arg-file %s: %s", o->arg_file, strerror(err));
    }
    o->arg_owned = buf;
    o->arg = buf ? buf : "";
    o->arg_size = size;
    return 0;
}

/*  --array: at most this many tasks at once; a typo such as 1-10000000 should not keep a
    client busy submitting for minutes. */
#define S_ARRAY_MAX 1000000

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  --array SPEC: comma-separated "A-B" (A to B inclusive), "A-B:STEP" or "N", into a new
//  array of indices, ascending, each once. 0 or an exit status (after saying why).
static int s_parse_array(const char *cmd, const char *text, uint64_t **out, size_t *n_out)
{
    char *copy = strdup(text);
    uint64_t *idx = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    if (!copy)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    char *save = NULL;
    for (char *part = strtok_r(copy, ",", &save); part && !rc; part = strtok_r(NULL, ",", &save)) {
        uint64_t a, b, step = 1;
        char *dash = strchr(part, '-'), *colon = strchr(part, ':');
        if (colon)
            *colon = '\0';
        if (dash)
            *dash = '\0';
        if (shoal__parse_u64(part, &a) != 0 || (dash && shoal__parse_u64(dash + 1, &b) != 0) ||
            (colon && (!dash || shoal__parse_u64(colon + 1, &step) != 0 || step == 0))) {
            rc = cli_usage(cmd, "--array %s: expected A-B, A-B:STEP or N, comma-separated", text);
            break;
        }
        if (!dash)
            b = a;
        if (b < a) {
            rc = cli_usage(cmd, "--array %s: %llu-%llu is empty (A-B needs A <= B)", text,
                           (unsigned long long)a, (unsigned long long)b);
            break;
        }
        if ((b - a) / step >= S_ARRAY_MAX - n) {
            rc = cli_usage(cmd, "--array %s: more than %d tasks", text, S_ARRAY_MAX);
            break;
        }
        for (uint64_t v = a;; v += step) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *grown = realloc(idx, cap * sizeof *grown);
                if (!grown) {
                    rc = cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
                    break;
                }
                idx = grown;
            }
            idx[n++] = v;
            if (b - v < step)
                break;
        }
    }
    free(copy);
    if (!rc && n == 0)
        rc = cli_usage(cmd, "--array %s: no index given", text);
    if (!rc) {
        qsort(idx, n, sizeof *idx, s_cmp_u64);
        for (size_t i = 1; i < n && !rc; i++)
            if (idx[i] == idx[i - 1])
                rc = cli_usage(cmd, "--array %s: index %llu is given twice", text,
                               (unsigned long long)idx[i]);
    }
    if (rc) {
        free(idx);
        return rc;
    }
    *out = idx;
    *n_out = n;
    return 0;
}

static int s_parse_task(const char *cmd, int argc, char **argv, s_task_opts_t *o, const char *help,
                        bool submit)
{
    static const struct option run_opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"input", required_argument, NULL, OPT_INPUT},
        {"stream-input", required_argument, NULL, OPT_STREAM_INPUT},
        {"stdin-input", required_argument, NULL, OPT_STDIN_INPUT},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"job", required_argument, NULL, OPT_JOB},
        {"fn", required_argument, NULL, OPT_FN},
        {"arg", required_argument, NULL, OPT_ARG},
        {"arg-file", required_argument, NULL, OPT_ARG_FILE},
        {"persist", no_argument, NULL, OPT_PERSIST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct option submit_opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"input", required_argument, NULL, OPT_INPUT},
        {"stream-input", required_argument, NULL, OPT_STREAM_INPUT},
        {"stdin-input", required_argument, NULL, OPT_STDIN_INPUT},
        {"outputs", required_argument, NULL, OPT_OUTPUTS},
        {"name", required_argument, NULL, OPT_NAME},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"job", required_argument, NULL, OPT_JOB},
        {"array", required_argument, NULL, OPT_ARRAY},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"tag", required_argument, NULL, OPT_TAG},
        {"persist", no_argument, NULL, OPT_PERSIST},
        {"exec", no_argument, NULL, OPT_EXEC},
        {"fn", required_argument, NULL, OPT_FN},
        {"arg", required_argument, NULL, OPT_ARG},
        {"arg-file", required_argument, NULL, OPT_ARG_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->broker = cli_default_broker();
    o->outputs = 1;
    o->inputs = calloc((size_t)argc, sizeof *o->inputs); //  at most one per argument
    if (!o->inputs)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    cli_getopt_reset();
    int c, rc;
    while ((c = getopt_long(argc, argv, "+h", submit ? submit_opts : run_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return -1;
        case OPT_BROKER:
            o->broker = optarg;
            break;
        case OPT_TIMEOUT:
            if ((rc = cli_parse_timeout(cmd, optarg, &o->timeout_ms)) != 0)
                return rc;
            break;
        case OPT_STDIN_INPUT:
            if (o->stdin_input)
                return cli_usage(cmd, "--stdin-input: one input at most is the command's stdin");
            o->stdin_input = true;
            __attribute__((fallthrough));
        case OPT_STREAM_INPUT:
            if (o->n_inputs >= SHOAL_STREAM_INPUTS_MAX)
                return cli_usage(cmd, "--stream-input: only inputs 0..%d may stream",
                                 SHOAL_STREAM_INPUTS_MAX - 1);
            if ((rc = cli_parse_ref(cmd, optarg, &o->inputs[o->n_inputs])) != 0)
                return rc;
            o->stream_inputs |= 1ull << o->n_inputs++;
            break;
        case OPT_INPUT:
            if ((rc = cli_parse_ref(cmd, optarg, &o->inputs[o->n_inputs])) != 0)
                return rc;
            o->n_inputs++;
            break;
        case OPT_OUTPUTS:
            if ((rc = cli_parse_number(cmd, "--outputs", optarg, 1, SHOAL_MAX_OUTPUTS,
                                       &o->outputs)) != 0)
                return rc;
            break;
        case OPT_RETRIES:
            if ((rc = cli_parse_number(cmd, "--retries", optarg, 0, 1000, &o->retries)) != 0)
                return rc;
            break;
        case OPT_NAME:
            o->name = optarg;
            break;
        case OPT_PERSIST:
            o->persist = true;
            break;
        case OPT_TTL: {
            int ms;
            if ((rc = cli_parse_timeout(cmd, optarg, &ms)) != 0)
                return rc;
            if (ms <= 0)
                return cli_usage(cmd, "--ttl must be positive, got '%s'", optarg);
            o->ttl_ms = (uint64_t)ms;
            break;
        }
        case OPT_TAG:
            if (o->n_tags == SHOAL_TAGS_MAX)
                return cli_usage(cmd, "at most %d tags", SHOAL_TAGS_MAX);
            if (!*optarg || strlen(optarg) > SHOAL_TAG_MAX)
                return cli_usage(cmd, "--tag '%s': a tag has 1 to %d bytes", optarg, SHOAL_TAG_MAX);
            o->tags[o->n_tags++] = optarg;
            break;
        case OPT_JOB:
            o->job = optarg;
            break;
        case OPT_EXEC:
            o->exec = true;
            break;
        case OPT_FN:
            o->fn = optarg;
            break;
        case OPT_ARG:
            o->arg = optarg;
            o->arg_size = strlen(optarg);
            break;
        case OPT_ARG_FILE:
            o->arg_file = optarg;
            break;
        case OPT_ARRAY:
            free(o->indices);
            o->indices = NULL;
            if ((rc = s_parse_array(cmd, optarg, &o->indices, &o->n_indices)) != 0)
                return rc;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (o->stdin_input && o->fn)
        return cli_usage(cmd, "--stdin-input is a command's stdin; a function streams "
                              "its inputs with --stream-input");
    if (o->stream_inputs && !o->stdin_input && !o->fn)
        return cli_usage(cmd, "--stream-input is for --fn tasks; a command takes a streaming "
                              "input on its stdin with --stdin-input");
    if (o->fn) {
        const char *colon = strrchr(o->fn, ':');
        if (!colon || colon == o->fn || !colon[1])
            return cli_usage(cmd, "--fn expects LIB:SYMBOL (a library and a function), got %s",
                             o->fn);
        if (o->exec)
            return cli_usage(cmd, "--fn and --exec exclude each other");
        if (optind < argc)
            return cli_usage(cmd, "--fn takes no command (got %s); pass text with --arg",
                             argv[optind]);
        if (o->arg && o->arg_file)
            return cli_usage(cmd, "--arg and --arg-file exclude each other");
        return o->arg_file ? s_read_arg_file(cmd, o) : 0;
    }
    if (o->arg || o->arg_file)
        return cli_usage(cmd, "--arg and --arg-file go with --fn LIB:SYMBOL");
    if (optind >= argc)
        return cli_usage(cmd, "no command given (expected [--] COMMAND [ARG]...)");
    o->command = argv + optind;
    return 0;
}

static const char s_run_help[] =
    "Usage: shoal run [OPTIONS] [--] COMMAND [ARG]...\n"
    "       shoal run [OPTIONS] --fn LIB.so:SYMBOL [--arg TEXT | --arg-file FILE]\n"
    "\n"
    "Runs COMMAND on a worker of the cluster and waits for it. Its stdout is written to\n"
    "stdout, its stderr to stderr, and shoal exits with its exit status (128+N when it\n"
    "was killed by signal N, 127 when the command was not found, 1 when the task failed\n"
    "otherwise). Ctrl-C cancels the task. With --fn, runs the C function SYMBOL of the\n"
    "plugin LIB.so instead (see `shoal submit --help`): its output 0 is written to\n"
    "stdout, what it printed to stderr.\n"
    "\n"
    "Options:\n" S_BROKER_HELP
    "  --timeout S      cancel the task after S seconds and exit 3 (default: no limit)\n"
    "  --input REF      make object REF the file $SHOAL_INPUT_i of the command (repeat for\n"
    "                   i = 0, 1, ...)\n"
    "  --stdin-input REF  make object REF the command's stdin (and input i): a pipe fed as\n"
    "                   its bytes land, so the command starts as soon as REF is allocated\n"
    "                   (a `shoal put --size N -` still reading, a task output being\n"
    "                   written), on the worker writing it; once at most\n"
    "  --retries N      run it again up to N times when it fails\n"
    "  --job NAME       group the task under job NAME\n"
    "  --fn LIB.so:SYMBOL  run the C function SYMBOL of the plugin LIB.so (a path on the\n"
    "                   worker) instead of a command; --input REF is then its input i\n"
    "  --stream-input REF  with --fn: input i that streams: the function starts as soon\n"
    "                   as REF is allocated (a put or output being written) and reads it\n"
    "                   with shoal_task_input_read as it lands\n"
    "  --arg TEXT       the function's argument bytes\n"
    "  --arg-file FILE  the function's argument: the bytes of FILE (- for stdin)\n"
    "  --persist        keep its outputs on the worker's disk too (synced before it is\n"
    "                   reported done): they survive a kill or restart of the worker\n" S_HELP_HELP;

static volatile sig_atomic_t s_interrupted;

static void s_on_interrupt(int sig)
{
    s_interrupted = sig;
}

//  Gets ref and writes its bytes to fd. 0 or the libshoal code.
static int s_get_to_fd(shoal_t *client, shoal_ref_t ref, int timeout_ms, int fd)
{
    shoal_view_t view;
    int rc = shoal_get(client, ref, timeout_ms, &view);
    if (rc)
        return rc;
    s_write_all(fd, view.data, view.size);
    shoal_view_release(&view);
    return 0;
}

int cli_cmd_run(int argc, char **argv)
{
    const char *cmd = "run";
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_task_opts_t o = {.timeout_ms = -1};
    int rc = s_parse_task(cmd, argc, argv, &o, s_run_help, false);
    if (rc) {
        s_task_opts_clear(&o);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    shoal_t *client = NULL;
    if ((rc = cli_connect(cmd, o.broker, &client)) != 0) {
        s_task_opts_clear(&o);
        return rc;
    }
    shoal_task_spec_t spec = {
        .kind = o.fn ? SHOAL_TASK_FN : SHOAL_TASK_EXEC,
        .argv = o.fn ? NULL : (const char *const *)o.command,
        .fn = o.fn,
        .arg = o.arg,
        .arg_size = o.arg_size,
        .inputs = o.inputs,
        .n_inputs = o.n_inputs,
        .stream_inputs = o.stream_inputs,
        .n_outputs = 1,
        .retries = (unsigned)o.retries,
        .job = o.job,
        .flags = o.persist ? SHOAL_TASK_PERSIST : 0,
    };
    shoal_ref_t id;
    int status = CLI_EXIT_OK;
    if ((rc = shoal_submit(client, &spec, &id)) != 0) {
        status = cli_fail(cmd, CLI_EXIT_USAGE, "%s", shoal_last_error(client));
        goto done;
    }
    shoal_ref_t log = shoal_ref_output(id, SHOAL_REF_LOG_INDEX);

    //  Wait in slices so that Ctrl-C (which only sets a flag here) can cancel the task.
    struct sigaction sa = {.sa_handler = s_on_interrupt}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int64_t deadline = o.timeout_ms < 0 ? -1 : shoal__now_ms() + o.timeout_ms;
    for (;;) {
        int slice = 200;
        if (deadline >= 0)
            slice = (int)SHOAL__MAX(SHOAL__MIN((int64_t)slice, deadline - shoal__now_ms()), 0);
        rc = shoal_wait(client, &id, 1, false, slice);
        if (rc != SHOAL_ETIMEDOUT)
            break;
        if (s_interrupted || (deadline >= 0 && shoal__now_ms() >= deadline))
            break;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc == SHOAL_ETIMEDOUT) {
        shoal_cancel(client, &id, 1, S_REPLY_TIMEOUT_MS);
        if (s_interrupted) {
            status = 128 + s_interrupted;
            fprintf(stderr, "shoal run: interrupted: task canceled\n");
        } else
            status = cli_fail(cmd, CLI_EXIT_TIMEOUT, "timed out after %g s: task canceled",
                              o.timeout_ms / 1000.0);
        goto done;
    }

    shoal_status_t st;
    if (rc == 0) {
        int left = deadline < 0 ? -1 : (int)SHOAL__MAX(deadline - shoal__now_ms(), 0);
        if ((rc = s_get_to_fd(client, id, left, STDOUT_FILENO)) != 0) {
            status = s_report(cmd, client, id, rc);
            goto done;
        }
        s_get_to_fd(client, log, S_LOG_TIMEOUT_MS, STDERR_FILENO);
    } else if (shoal_status(client, id, &st) != 0) {
        //  No final status: the call itself failed (the broker went away...).
        status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
        goto done;
    } else {
        //  The task failed: its stderr, the reason unless it is a plain non-zero exit
        //  (the stderr says it all then), and an exit status like the command's own.
        //  What the command wrote on stdout before failing (its last 64 KiB), if anything.
        s_get_to_fd(client, shoal_ref_output(id, SHOAL_REF_STDOUT_INDEX), S_LOG_TIMEOUT_MS,
                    STDOUT_FILENO);
        bool have_log = s_get_to_fd(client, log, S_LOG_TIMEOUT_MS, STDERR_FILENO) == 0;
        //  A function's return value says less than the message it set: always show it.
        bool plain_exit = st.code == SHOAL_ETASK && st.exit_code > 0 && !o.fn;
        if (!plain_exit) {
            const char *why = st.error && *st.error ? st.error : shoal_strerror(st.code);
            fprintf(stderr, "shoal run: %.*s\n", (int)strcspn(why, "\n"), why);
        } else if (!have_log && st.error)
            s_print_reason(stderr, "shoal run", &st);
        if (st.exit_code > 0)
            status = st.exit_code > 255 ? 255 : st.exit_code;
        else if (st.exit_code < 0)
            status = 128 + (-st.exit_code > 127 ? 127 : -st.exit_code);
        else if (st.code == SHOAL_ENOTFOUND && o.n_inputs == 0)
            status = 127;
        else
            status = CLI_EXIT_FAILED;
    }
    //  Nobody else knows these refs: do not leave the objects behind.
    shoal_ref_t mine[3] = {id, log, shoal_ref_output(id, SHOAL_REF_STDOUT_INDEX)};
    shoal_remove(client, mine, 3, S_REPLY_TIMEOUT_MS);

done:
    shoal_disconnect(&client);
    s_task_opts_clear(&o);
    return status;
}

static const char s_submit_help[] =
    "Usage: shoal submit [OPTIONS] [--exec] [--] COMMAND [ARG]...\n"
    "       shoal submit [OPTIONS] --fn LIB.so:SYMBOL [--arg TEXT | --arg-file FILE]\n"
    "\n"
    "Submits a task and prints the refs of its outputs, one a line, once the broker has\n"
    "acknowledged it (it may not have run yet: `shoal wait` or `shoal get` them). Refs\n"
    "can be named at once as --input of further tasks: that builds a dependency graph.\n"
    "\n"
    "With --array, submits one task per index, the same task but for its index: a command\n"
    "reads it in $SHOAL_TASK_INDEX, a function with shoal_task_index(). The tasks form a\n"
    "job: --job NAME, else one named array-REF after the ref of its first task. Prints\n"
    "`job NAME` on the first line, then the refs of the outputs of each task, one a line,\n"
    "task after task in index order. `shoal wait --job`, `shoal get --job`, `shoal cancel\n"
    "--job` and `shoal jobs` take it from there.\n"
    "\n"
    "Options:\n" S_BROKER_HELP
    "  --exec           the task runs COMMAND [ARG]... (the default when a command\n"
    "                   follows): output 0 is its stdout, output i >= 1 the file it\n"
    "                   writes at $SHOAL_OUTPUT_i; its stderr is kept as its log\n"
    "  --fn LIB.so:SYMBOL  the task calls the C function SYMBOL of the plugin LIB.so,\n"
    "                   loaded on the worker (an absolute path is best; a bare name is\n"
    "                   searched like a shared library): `int SYMBOL(shoal_task_t *t)`,\n"
    "                   reading its argument and inputs, writing its outputs (shoal.h)\n"
    "  --arg TEXT       --fn: the function's argument bytes\n"
    "  --arg-file FILE  --fn: the function's argument is the bytes of FILE (- for stdin)\n"
    "  --input REF      make object REF input i of the task (repeat for i = 0, 1, ...):\n"
    "                   the file $SHOAL_INPUT_i of a command, a zero-copy view for a\n"
    "                   function; the task runs once its inputs exist\n"
    "  --stdin-input REF  a command's stdin (and input i): a pipe fed as REF's bytes land;\n"
    "                   the command starts as soon as REF is allocated, on the worker\n"
    "                   writing it; once at most\n"
    "  --stream-input REF  --fn: like --input, but the function starts as soon as REF is\n"
    "                   allocated (a put or a task output still being written), on the\n"
    "                   worker writing it, and reads it with shoal_task_input_read, which\n"
    "                   waits for the bytes as they land\n"
    "  --outputs N      number of outputs, 1..1024 (default 1)\n"
    "  --name NAME      a name for the outputs (shoal ls, shoal get NAME); not 32 hex\n"
    "                   digits, which would read as a ref\n"
    "  --retries N      run it again up to N times when it fails\n"
    "  --ttl S          remove its outputs S seconds after it is done\n"
    "  --tag TAG        a tag for its outputs (repeatable; shoal ls --tag)\n"
    "  --persist        keep its outputs on the worker's disk too (synced before it is\n"
    "                   reported done): they survive a kill or restart of the worker\n"
    "  --job NAME       group the task under job NAME (at most 255 bytes)\n"
    "  --array SPEC     one task per index of SPEC: A-B (A to B inclusive), A-B:STEP\n"
    "                   (every STEP-th), N, or a comma-separated list of these; at most\n"
    "                   1,000,000 tasks, each index once\n"
    "  --timeout S      wait at most S seconds for the acknowledgement (default 30)\n" S_HELP_HELP;

//  submit --array: the tasks in index order, contiguous runs as one shoal_submit_array
//  each; prints the job, then the refs. Returns the exit status.
static int s_submit_array(const char *cmd, shoal_t *client, shoal_task_spec_t *spec,
                          const s_task_opts_t *o)
{
    shoal_ref_t *ids = calloc(o->n_indices, sizeof *ids);
    if (!ids)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    char job[sizeof "array-" + SHOAL_REF_TEXT_SIZE], text[SHOAL_REF_TEXT_SIZE];
    int rc = 0;
    for (size_t start = 0, end; start < o->n_indices && !rc; start = end) {
        for (end = start + 1; end < o->n_indices && o->indices[end] == o->indices[end - 1] + 1;
             end++)
            ;
        rc = shoal_submit_array(client, spec, o->indices[start], o->indices[end - 1], ids + start);
        //  Without --job, the first run named the job after its first task: the rest join it.
        if (!rc && !spec->job) {
            snprintf(job, sizeof job, "array-%s", shoal_ref_format(ids[0], text));
            spec->job = job;
        }
    }
    if (!rc)
        rc = shoal_flush(client, o->timeout_ms);
    int status = CLI_EXIT_OK;
    if (rc)
        status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    else {
        printf("job %s\n", spec->job);
        for (size_t i = 0; i < o->n_indices; i++)
            for (uint64_t k = 0; k < o->outputs; k++)
                printf("%s\n", shoal_ref_format(shoal_ref_output(ids[i], (uint16_t)k), text));
        if (fflush(stdout) != 0)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "writing to stdout: %s", strerror(errno));
    }
    free(ids);
    return status;
}

int cli_cmd_submit(int argc, char **argv)
{
    const char *cmd = "submit";
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_task_opts_t o = {.timeout_ms = 30000};
    int rc = s_parse_task(cmd, argc, argv, &o, s_submit_help, true);
    if (rc) {
        s_task_opts_clear(&o);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    shoal_t *client = NULL;
    if ((rc = cli_connect(cmd, o.broker, &client)) != 0) {
        s_task_opts_clear(&o);
        return rc;
    }
    shoal_task_spec_t spec = {
        .kind = o.fn ? SHOAL_TASK_FN : SHOAL_TASK_EXEC,
        .argv = o.fn ? NULL : (const char *const *)o.command,
        .fn = o.fn,
        .arg = o.arg,
        .arg_size = o.arg_size,
        .inputs = o.inputs,
        .n_inputs = o.n_inputs,
        .stream_inputs = o.stream_inputs,
        .n_outputs = (unsigned)o.outputs,
        .name = o.name,
        .retries = (unsigned)o.retries,
        .ttl_ms = o.ttl_ms,
        .tags = o.tags,
        .n_tags = o.n_tags,
        .job = o.job,
        .flags = o.persist ? SHOAL_TASK_PERSIST : 0,
    };
    if (o.indices) {
        int status = s_submit_array(cmd, client, &spec, &o);
        shoal_disconnect(&client);
        s_task_opts_clear(&o);
        return status;
    }
    shoal_ref_t id;
    int status = CLI_EXIT_OK;
    if ((rc = shoal_submit(client, &spec, &id)) != 0 ||
        (rc = shoal_flush(client, o.timeout_ms)) != 0) {
        status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    } else {
        for (uint64_t i = 0; i < o.outputs; i++) {
            char text[SHOAL_REF_TEXT_SIZE];
            printf("%s\n", shoal_ref_format(shoal_ref_output(id, (uint16_t)i), text));
        }
        if (fflush(stdout) != 0)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "writing to stdout: %s", strerror(errno));
    }
    shoal_disconnect(&client);
    s_task_opts_clear(&o);
    return status;
}

/*  ------------------------------------------------------------------- ref commands */

/*  Options shared by the commands that take refs. */
typedef struct {
    const char *broker;
    int timeout_ms;
    bool any;
    const char *output;
    shoal_ref_t *refs;
    size_t n_refs;
    const char *job;  /*  --job NAME */
    const char *name; /*  S_NAME_OK: the argument, which is not a ref but a name */
    bool follow;      /*  --follow */
} s_ref_opts_t;

enum {
    S_WITH_TIMEOUT = 1,
    S_WITH_ANY = 2,
    S_WITH_OUTPUT = 4,
    S_ONE_REF = 8,
    S_WITH_JOB = 16,
    S_NAME_OK = 32, //  an argument that is not 32 hex digits is a name (o->name, no ref)
    S_WITH_FOLLOW = 64,
};

static int s_parse_refs(const char *cmd, int argc, char **argv, s_ref_opts_t *o, const char *help,
                        unsigned with)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"any", no_argument, NULL, OPT_ANY},
        {"output", required_argument, NULL, 'o'},
        {"job", required_argument, NULL, OPT_JOB},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->broker = cli_default_broker();
    cli_getopt_reset();
    int c, rc;
    while ((c = getopt_long(argc, argv, (with & S_WITH_OUTPUT) ? "+ho:" : "+h", opts, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return -1;
        case OPT_BROKER:
            o->broker = optarg;
            break;
        case OPT_TIMEOUT:
            if (!(with & S_WITH_TIMEOUT))
                return cli_usage(cmd, "unrecognized option '--timeout'");
            if ((rc = cli_parse_timeout(cmd, optarg, &o->timeout_ms)) != 0)
                return rc;
            break;
        case OPT_ANY:
            if (!(with & S_WITH_ANY))
                return cli_usage(cmd, "unrecognized option '--any'");
            o->any = true;
            break;
        case 'o':
            if (!(with & S_WITH_OUTPUT))
                return cli_usage(cmd, "unrecognized option '--output'");
            o->output = optarg;
            break;
        case OPT_FOLLOW:
            if (!(with & S_WITH_FOLLOW))
                return cli_usage(cmd, "unrecognized option '--follow'");
            o->follow = true;
            break;
        case OPT_JOB:
            if (!(with & S_WITH_JOB))
                return cli_usage(cmd, "unrecognized option '--job'");
            if (!*optarg || strlen(optarg) > SHOAL_JOB_NAME_MAX)
                return cli_usage(cmd, "--job: a name of 1..%d bytes", SHOAL_JOB_NAME_MAX);
            o->job = optarg;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    size_t n = (size_t)(argc - optind);
    if (n == 0 && !o->job)
        return cli_usage(cmd, (with & S_ONE_REF) ? "no ref given" : "no refs given");
    if ((with & S_ONE_REF) && n > 1)
        return cli_usage(cmd, "one ref at a time (got %zu)", n);
    if ((with & S_ONE_REF) && n && o->job)
        return cli_usage(cmd, "a REF or --job NAME, not both");
    o->refs = calloc(n ? n : 1, sizeof *o->refs);
    if (!o->refs)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    if ((with & S_NAME_OK) && n == 1 && shoal_ref_parse(argv[optind], &o->refs[0]) != 0) {
        o->name = argv[optind];
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = cli_parse_ref(cmd, argv[optind + (int)i], &o->refs[i])) != 0)
            return rc;
    o->n_refs = n;
    return 0;
}

//  --job NAME: appends the ids of the job's tasks, in job order, to o->refs. 0 or an exit
//  status (1 for a job the broker does not know, as for a ref it does not know).
static int s_add_job_refs(const char *cmd, shoal_t *client, s_ref_opts_t *o)
{
    if (!o->job)
        return 0;
    shoal_ref_t *refs = NULL;
    size_t n = 0;
    int timeout_ms = o->timeout_ms < 0 ? S_REPLY_TIMEOUT_MS : o->timeout_ms;
    int rc = shoal_job_tasks(client, o->job, &refs, &n, timeout_ms);
    if (rc)
        return cli_fail(cmd, rc == SHOAL_ENOTFOUND ? CLI_EXIT_FAILED : cli_exit_for(rc), "%s",
                        shoal_last_error(client));
    shoal_ref_t *all = realloc(o->refs, (o->n_refs + n) * sizeof *all);
    if (!all) {
        free(refs);
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    }
    memcpy(all + o->n_refs, refs, n * sizeof *refs);
    o->refs = all;
    o->n_refs += n;
    free(refs);
    return 0;
}

static const char s_wait_help[] =
    "Usage: shoal wait [OPTIONS] REF...\n"
    "       shoal wait [OPTIONS] --job NAME [REF...]\n"
    "\n"
    "Waits until every REF has finished (with --any: one of them). Exit status 0 when all\n"
    "succeeded; 1 when one failed, after listing each failed one on stderr as\n"
    "`REF: reason` (its exit status or signal and the tail of its stderr, what could not\n"
    "be found, or which input failed); 3 on timeout, saying how many are unfinished.\n"
    "With --any, prints the first ref that succeeded. With --job, waits for every task of\n"
    "job NAME as well (those it has now; its REF is the ref of its output 0); an unknown\n"
    "job is exit 1.\n"
    "\n"
    "Options:\n" S_BROKER_HELP "  --timeout S      give up after S seconds (default: no limit)\n"
    "  --any            return as soon as one REF has finished\n"
    "  --job NAME       wait for the tasks of job NAME too\n" S_HELP_HELP;

int cli_cmd_wait(int argc, char **argv)
{
    const char *cmd = "wait";
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_ref_opts_t o = {.timeout_ms = -1};
    int rc =
        s_parse_refs(cmd, argc, argv, &o, s_wait_help, S_WITH_TIMEOUT | S_WITH_ANY | S_WITH_JOB);
    shoal_t *client = NULL;
    if (rc || (rc = cli_connect(cmd, o.broker, &client)) != 0) {
        free(o.refs);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if ((rc = s_add_job_refs(cmd, client, &o)) != 0) {
        shoal_disconnect(&client);
        free(o.refs);
        return rc;
    }
    rc = shoal_wait(client, o.refs, o.n_refs, o.any, o.timeout_ms);
    int status = CLI_EXIT_OK;
    size_t unfinished = 0, failed = 0;
    bool printed = false;
    for (size_t i = 0; i < o.n_refs; i++) {
        shoal_status_t st;
        char text[SHOAL_REF_TEXT_SIZE];
        shoal_ref_format(o.refs[i], text);
        if (shoal_status(client, o.refs[i], &st) != 0)
            unfinished++;
        else if (st.code != 0) {
            failed++;
            s_print_reason(stderr, text, &st);
        } else if (o.any && rc == 0 && !printed) {
            printf("%s\n", text);
            printed = true;
        }
    }
    if (rc == SHOAL_ETIMEDOUT)
        status = cli_fail(cmd, CLI_EXIT_TIMEOUT, "timed out after %g s: %zu of %zu unfinished",
                          o.timeout_ms / 1000.0, unfinished, o.n_refs);
    else if (rc != 0 && failed > 0)
        status = CLI_EXIT_FAILED;
    else if (rc != 0)
        status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    shoal_disconnect(&client);
    free(o.refs);
    return status;
}

static const char s_get_help[] =
    "Usage: shoal get [OPTIONS] REF|NAME\n"
    "       shoal get [OPTIONS] --job NAME\n"
    "\n"
    "Waits for object REF and writes its bytes to stdout (or FILE). When the task that\n"
    "produces it failed, exits 1 with the reason.\n"
    "\n"
    "An argument that is not a ref (32 hex digits) is the name of an object (--name of\n"
    "submit or put; see `shoal ls`), which must be unique: no object of that name is\n"
    "exit 1, several are exit 2, listing their refs.\n"
    "\n"
    "With --job, waits for every task of job NAME and writes output 0 of each, one after\n"
    "the other in job order (an array's tasks by index, other tasks in submission order).\n"
    "When any task failed, writes nothing and exits 1, listing each failed task as\n"
    "`REF: reason`; an unknown job is exit 1 too.\n"
    "\n"
    "Options:\n" S_BROKER_HELP
    "  -o, --output FILE  write to FILE instead (created or truncated once the bytes are\n"
    "                   here: a failure leaves no file behind)\n"
    "  --job NAME       output 0 of every task of job NAME, concatenated\n"
    "  --follow         stream: write the bytes as they are written (an object being\n"
    "                   put, e.g. by `shoal put --size N -`, or a task's output), from\n"
    "                   the moment its space is allocated until it is sealed; exits 1\n"
    "                   naming the ref if it is aborted or its writer dies\n"
    "  --timeout S      give up after S seconds (default: no limit)\n" S_HELP_HELP;

#define S_FOLLOW_PIECE (1024 * 1024)

//  get --follow: copies ref's bytes to fd as they land. Returns the exit status.
static int s_follow(const char *cmd, shoal_t *client, shoal_ref_t ref, int timeout_ms, int fd,
                    const char *where)
{
    shoal_stream_t *stream = NULL;
    uint8_t *piece = malloc(S_FOLLOW_PIECE);
    int rc = piece ? shoal_stream_open(client, ref, &stream) : SHOAL_ENOMEM;
    int64_t deadline = timeout_ms < 0 ? -1 : shoal__now_ms() + timeout_ms;
    while (rc == 0) {
        int left = deadline < 0 ? -1 : (int)SHOAL__MAX(deadline - shoal__now_ms(), (int64_t)0);
        int n = shoal_stream_read(stream, piece, S_FOLLOW_PIECE, left);
        if (n <= 0) {
            rc = n;
            break;
        }
        int wrc = s_write_all(fd, piece, (size_t)n);
        if (wrc) {
            shoal_stream_close(&stream);
            free(piece);
            return cli_fail(cmd, CLI_EXIT_USAGE, "writing %s: %s", where, strerror(-wrc));
        }
    }
    shoal_stream_close(&stream);
    free(piece);
    if (rc == SHOAL_ECANCELED)
        return cli_fail(cmd, CLI_EXIT_FAILED, "%s", shoal_last_error(client));
    return rc ? s_report(cmd, client, ref, rc) : CLI_EXIT_OK;
}

//  Milliseconds left until deadline (-1: none), at least 0.
static int s_left_ms(int64_t deadline)
{
    return deadline < 0 ? -1 : (int)SHOAL__MAX(deadline - shoal__now_ms(), (int64_t)0);
}

//  get --job: waits for every task, then writes their outputs 0 in job order. Returns the
//  exit status.
static int s_get_job(const char *cmd, shoal_t *client, s_ref_opts_t *o)
{
    int64_t deadline = o->timeout_ms < 0 ? -1 : shoal__now_ms() + o->timeout_ms;
    int rc = s_add_job_refs(cmd, client, o);
    if (rc)
        return rc;
    //  All or nothing: every task must have succeeded before a byte is written.
    rc = shoal_wait(client, o->refs, o->n_refs, false, s_left_ms(deadline));
    size_t unfinished = 0, failed = 0;
    for (size_t i = 0; rc && i < o->n_refs; i++) {
        shoal_status_t st;
        char text[SHOAL_REF_TEXT_SIZE], prefix[64 + SHOAL_REF_TEXT_SIZE];
        if (shoal_status(client, o->refs[i], &st) != 0)
            unfinished++;
        else if (st.code != 0) {
            failed++;
            snprintf(prefix, sizeof prefix, "shoal %s: %s", cmd,
                     shoal_ref_format(o->refs[i], text));
            s_print_reason(stderr, prefix, &st);
        }
    }
    if (rc == SHOAL_ETIMEDOUT)
        return cli_fail(cmd, CLI_EXIT_TIMEOUT, "timed out after %g s: %zu of %zu tasks unfinished",
                        o->timeout_ms / 1000.0, unfinished, o->n_refs);
    if (rc)
        return failed ? CLI_EXIT_FAILED
                      : cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    int fd = STDOUT_FILENO;
    if (o->output && (fd = open(o->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)) < 0)
        return cli_fail(cmd, CLI_EXIT_USAGE, "%s: %s", o->output, strerror(errno));
    int status = CLI_EXIT_OK;
    for (size_t i = 0; i < o->n_refs && status == CLI_EXIT_OK; i++) {
        shoal_view_t view;
        if ((rc = shoal_get(client, o->refs[i], s_left_ms(deadline), &view)) != 0) {
            status = s_report(cmd, client, o->refs[i], rc);
            break;
        }
        int wrc = s_write_all(fd, view.data, view.size);
        shoal_view_release(&view);
        if (wrc)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "writing %s: %s",
                              o->output ? o->output : "stdout", strerror(-wrc));
    }
    if (o->output) {
        if (close(fd) != 0 && status == CLI_EXIT_OK)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "writing %s: %s", o->output, strerror(errno));
        if (status != CLI_EXIT_OK)
            unlink(o->output);
    }
    return status;
}

int cli_cmd_get(int argc, char **argv)
{
    const char *cmd = "get";
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_ref_opts_t o = {.timeout_ms = -1};
    int rc = s_parse_refs(cmd, argc, argv, &o, s_get_help,
                          S_WITH_TIMEOUT | S_WITH_OUTPUT | S_ONE_REF | S_WITH_JOB | S_NAME_OK |
                              S_WITH_FOLLOW);
    if (rc == 0 && o.follow && o.job)
        rc = cli_usage(cmd, "--follow reads one object: not with --job");
    shoal_t *client = NULL;
    if (rc || (rc = cli_connect(cmd, o.broker, &client)) != 0) {
        free(o.refs);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if (o.name && (rc = cli_find_by_name(cmd, client, o.name, &o.refs[0])) != 0) {
        shoal_disconnect(&client);
        free(o.refs);
        return rc;
    }
    if (o.job) {
        int status = s_get_job(cmd, client, &o);
        shoal_disconnect(&client);
        free(o.refs);
        return status;
    }
    shoal_view_t view;
    int status = CLI_EXIT_OK;
    if (o.follow) {
        //  Bytes go out as they come: a file is created at once (and kept on failure).
        int fd = STDOUT_FILENO;
        if (o.output && (fd = open(o.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)) < 0)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "%s: %s", o.output, strerror(errno));
        else {
            status =
                s_follow(cmd, client, o.refs[0], o.timeout_ms, fd, o.output ? o.output : "stdout");
            if (o.output)
                close(fd);
        }
        shoal_disconnect(&client);
        free(o.refs);
        return status;
    }
    rc = shoal_get(client, o.refs[0], o.timeout_ms, &view);
    if (rc) {
        status = s_report(cmd, client, o.refs[0], rc);
    } else {
        int fd = STDOUT_FILENO;
        if (o.output && (fd = open(o.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)) < 0)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "%s: %s", o.output, strerror(errno));
        else {
            int wrc = s_write_all(fd, view.data, view.size);
            if (o.output && close(fd) != 0 && wrc == 0)
                wrc = -errno;
            if (wrc)
                status = cli_fail(cmd, CLI_EXIT_USAGE, "writing %s: %s",
                                  o.output ? o.output : "stdout", strerror(-wrc));
        }
        shoal_view_release(&view);
    }
    shoal_disconnect(&client);
    free(o.refs);
    return status;
}

static const char s_logs_help[] =
    "Usage: shoal logs [OPTIONS] REF\n"
    "\n"
    "Prints the stderr of the task that produces REF (any of its outputs names it),\n"
    "waiting for the task to finish.\n"
    "\n"
    "Options:\n" S_BROKER_HELP
    "  --timeout S      give up after S seconds (default: no limit)\n" S_HELP_HELP;

int cli_cmd_logs(int argc, char **argv)
{
    const char *cmd = "logs";
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_ref_opts_t o = {.timeout_ms = -1};
    int rc = s_parse_refs(cmd, argc, argv, &o, s_logs_help, S_WITH_TIMEOUT | S_ONE_REF);
    shoal_t *client = NULL;
    if (rc || (rc = cli_connect(cmd, o.broker, &client)) != 0) {
        free(o.refs);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    shoal_ref_t log = shoal_ref_output(o.refs[0], SHOAL_REF_LOG_INDEX);
    int status = CLI_EXIT_OK;
    if ((rc = s_get_to_fd(client, log, o.timeout_ms, STDOUT_FILENO)) != 0)
        status = s_report(cmd, client, log, rc);
    shoal_disconnect(&client);
    free(o.refs);
    return status;
}

static int s_refs_call(const char *cmd, int argc, char **argv, const char *help, unsigned with,
                       int (*call)(shoal_t *, const shoal_ref_t *, size_t, int))
{
    shoal__log_init("client", SHOAL_LOG_WARN);
    s_ref_opts_t o = {.timeout_ms = S_REPLY_TIMEOUT_MS};
    int rc = s_parse_refs(cmd, argc, argv, &o, help, S_WITH_TIMEOUT | with);
    shoal_t *client = NULL;
    if (rc || (rc = cli_connect(cmd, o.broker, &client)) != 0) {
        free(o.refs);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    int status = CLI_EXIT_OK;
    if (o.n_refs && (rc = call(client, o.refs, o.n_refs, o.timeout_ms)) < 0)
        status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    //  Only cancel takes --job. An unknown job is exit 1, as a ref that is not found.
    else if (o.job && (rc = shoal_cancel_job(client, o.job, o.timeout_ms)) < 0)
        status = cli_fail(cmd, rc == SHOAL_ENOTFOUND ? CLI_EXIT_FAILED : cli_exit_for(rc), "%s",
                          shoal_last_error(client));
    shoal_disconnect(&client);
    free(o.refs);
    return status;
}

static const char s_cancel_help[] =
    "Usage: shoal cancel [OPTIONS] REF...\n"
    "       shoal cancel [OPTIONS] --job NAME [REF...]\n"
    "\n"
    "Cancels the tasks that produce each REF: queued ones never run, running ones are\n"
    "killed, and the tasks that depend on them are canceled too. Finished tasks are left\n"
    "alone. With --job, cancels every unfinished task of job NAME as well (and their\n"
    "dependents, in the job or not); an unknown job is exit 1.\n"
    "\n"
    "Options:\n" S_BROKER_HELP "  --job NAME       cancel the unfinished tasks of job NAME\n"
    "  --timeout S      wait at most S seconds for the broker (default 10)\n" S_HELP_HELP;

int cli_cmd_cancel(int argc, char **argv)
{
    return s_refs_call("cancel", argc, argv, s_cancel_help, S_WITH_JOB, shoal_cancel);
}

static const char s_rm_help[] =
    "Usage: shoal rm [OPTIONS] REF...\n"
    "\n"
    "Removes objects from the cluster: the workers drop their bytes and the broker\n"
    "forgets them.\n"
    "\n"
    "Options:\n" S_BROKER_HELP
    "  --timeout S      wait at most S seconds for the broker (default 10)\n" S_HELP_HELP;

int cli_cmd_rm(int argc, char **argv)
{
    return s_refs_call("rm", argc, argv, s_rm_help, 0, shoal_remove);
}

/*  For commands that take only --broker (and --help): parses argv and connects. 0 with
 *client_p set; -1 when --help was printed; else an exit status (the error printed). */
static int s_connect_broker_only(const char *cmd, int argc, char **argv, const char *help,
                                 shoal_t **client_p)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *broker = cli_default_broker();
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(help, stdout);
            return -1;
        case OPT_BROKER:
            broker = optarg;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    return cli_connect(cmd, broker, client_p);
}

/*  ------------------------------------------------------------------------- workers */

static const char s_workers_help[] =
    "Usage: shoal workers [OPTIONS]\n"
    "\n"
    "Lists the live workers: name, host, slots, tasks running, queued, done and failed,\n"
    "and store use (used/capacity).\n"
    "\n"
    "Options:\n" S_BROKER_HELP S_HELP_HELP;

int cli_cmd_workers(int argc, char **argv)
{
    const char *cmd = "workers";
    shoal__log_init("client", SHOAL_LOG_WARN);
    shoal_t *client = NULL;
    int rc = s_connect_broker_only(cmd, argc, argv, s_workers_help, &client);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    if ((rc = shoal_workers(client, &list, &n, S_REPLY_TIMEOUT_MS)) != 0) {
        int status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
        shoal_disconnect(&client);
        return status;
    }
    //  Column widths from the content, at least the header's.
    int wn = 4, wh = 4;
    for (size_t i = 0; i < n; i++) {
        wn = SHOAL__MAX(wn, (int)strlen(list[i].name));
        wh = SHOAL__MAX(wh, (int)strlen(list[i].host));
    }
    printf("%-*s  %-*s  %5s  %7s  %6s  %8s  %6s  %s\n", wn, "NAME", wh, "HOST", "SLOTS", "RUNNING",
           "QUEUED", "DONE", "FAILED", "STORE");
    for (size_t i = 0; i < n; i++) {
        const shoal_worker_info_t *w = &list[i];
        char used[16], cap[16];
        printf("%-*s  %-*s  %5u  %7llu  %6llu  %8llu  %6llu  %s/%s\n", wn, w->name, wh, w->host,
               w->slots, (unsigned long long)w->running, (unsigned long long)w->queued,
               (unsigned long long)w->done, (unsigned long long)w->failed,
               cli_human_size(w->store_bytes, used, sizeof used),
               cli_human_size(w->store_capacity, cap, sizeof cap));
    }
    shoal_workers_free(&list, n);
    shoal_disconnect(&client);
    return CLI_EXIT_OK;
}

/*  ---------------------------------------------------------------------------- jobs */

static const char s_jobs_help[] =
    "Usage: shoal jobs [OPTIONS]\n"
    "\n"
    "Lists the jobs (tasks submitted with --job NAME, or as an --array), oldest first,\n"
    "with how many tasks each has and in which state: WAITING for their inputs or for a\n"
    "worker, RUNNING (on a worker: queued there or running), DONE, FAILED (by themselves\n"
    "or because an input failed) and CANCELED. A job is listed until every one of its\n"
    "tasks is removed (`shoal rm` of their outputs).\n"
    "\n"
    "Options:\n" S_BROKER_HELP S_HELP_HELP;

int cli_cmd_jobs(int argc, char **argv)
{
    const char *cmd = "jobs";
    shoal__log_init("client", SHOAL_LOG_WARN);
    shoal_t *client = NULL;
    int rc = s_connect_broker_only(cmd, argc, argv, s_jobs_help, &client);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    shoal_job_info_t *list = NULL;
    size_t n = 0;
    if ((rc = shoal_jobs(client, &list, &n, S_REPLY_TIMEOUT_MS)) != 0) {
        int status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
        shoal_disconnect(&client);
        return status;
    }
    int wn = 3;
    for (size_t i = 0; i < n; i++)
        wn = SHOAL__MAX(wn, (int)strlen(list[i].name));
    printf("%-*s  %8s  %8s  %8s  %8s  %8s  %8s\n", wn, "JOB", "TOTAL", "WAITING", "RUNNING", "DONE",
           "FAILED", "CANCELED");
    for (size_t i = 0; i < n; i++) {
        const shoal_job_info_t *j = &list[i];
        printf("%-*s  %8llu  %8llu  %8llu  %8llu  %8llu  %8llu\n", wn, j->name,
               (unsigned long long)j->total, (unsigned long long)(j->waiting + j->ready),
               (unsigned long long)j->running, (unsigned long long)j->done,
               (unsigned long long)j->failed, (unsigned long long)j->canceled);
    }
    shoal_jobs_free(&list, n);
    shoal_disconnect(&client);
    return CLI_EXIT_OK;
}
