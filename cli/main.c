/*  main.c: the `shoal` command's entry point: dispatch to a subcommand, shared helpers. */
#include "cli.h"

#include "common.h"

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary; //  NULL: internal, not listed
} s_command_t;

static const s_command_t s_commands[] = {
    {"up", cli_cmd_up, "start a broker and N workers on this host, in the foreground"},
    {"broker", cli_cmd_broker, "run the broker"},
    {"worker", cli_cmd_worker, "run a worker on this host"},
    {"executor", cli_cmd_executor, NULL},
    {"run", cli_cmd_run, "run a command on the cluster: its output, its exit status"},
    {"submit", cli_cmd_submit, "submit a task; print the refs of its outputs"},
    {"wait", cli_cmd_wait, "wait until tasks have finished"},
    {"put", cli_cmd_put, "put a file or standard input into the cluster; print its ref"},
    {"get", cli_cmd_get, "write the bytes of an object to stdout or a file"},
    {"logs", cli_cmd_logs, "print the stderr of the task that produces a ref"},
    {"cancel", cli_cmd_cancel, "cancel tasks (and the tasks that depend on them)"},
    {"rm", cli_cmd_rm, "remove objects from the cluster"},
    {"workers", cli_cmd_workers, "list the workers"},
    {"jobs", cli_cmd_jobs, "list the jobs: their tasks by state"},
    {"ls", cli_cmd_ls, "list stored objects: by name, tag, worker or job"},
    {"bench", cli_cmd_bench, "measure throughput, latency and broker memory per task"},
};

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: shoal COMMAND [OPTIONS] [ARGS]\n"
                 "\n"
                 "A task cluster: a broker routes tasks to long-lived workers, which keep the\n"
                 "results and serve them on demand.\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < SHOAL__ARRAY_SIZE(s_commands); i++)
        if (s_commands[i].summary)
            fprintf(out, "  %-10s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf(out,
            "\n"
            "Client commands reach the broker at --broker URL, else $SHOAL_BROKER, else\n"
            "%s, and give up after 5 s when nobody answers there\n"
            "($SHOAL_CONNECT_TIMEOUT, in seconds, changes that). Options come before `--`;\n"
            "what follows it is a command line, passed on untouched.\n"
            "\n"
            "Exit status: 0 success, 1 a task failed, 2 usage error or broker unreachable,\n"
            "3 timeout.\n"
            "\n"
            "Run 'shoal COMMAND --help' for the options of a command.\n",
            CLI_DEFAULT_BROKER);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        s_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
        (strcmp(name, "help") == 0 && argc == 2)) {
        s_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("shoal %d.%d.%d\n", SHOAL_VERSION_MAJOR, SHOAL_VERSION_MINOR, SHOAL_VERSION_PATCH);
        return CLI_EXIT_OK;
    }
    //  `shoal help CMD` is `shoal CMD --help`.
    static char help_flag[] = "--help";
    char *help_argv[3];
    if (strcmp(name, "help") == 0) {
        help_argv[0] = argv[0];
        help_argv[1] = argv[2];
        help_argv[2] = help_flag;
        argv = help_argv;
        argc = 3;
        name = argv[1];
    }
    for (size_t i = 0; i < SHOAL__ARRAY_SIZE(s_commands); i++) {
        if (strcmp(name, s_commands[i].name) != 0)
            continue;
        static char label[64];
        snprintf(label, sizeof label, "shoal %s", name);
        argv[1] = label;
        return s_commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "shoal: unknown command '%s'\nTry 'shoal --help'.\n", name);
    return CLI_EXIT_USAGE;
}

/*  ------------------------------------------------------------------------- helpers */

const char *cli_default_broker(void)
{
    const char *env = getenv("SHOAL_BROKER");
    return env && *env ? env : CLI_DEFAULT_BROKER;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "shoal %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shoal %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_bad_option(const char *cmd)
{
    fprintf(stderr, "Try 'shoal %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *cmd, int status, const char *fmt, ...)
{
    fprintf(stderr, "shoal %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

void cli_getopt_reset(void)
{
    optind = 0;
    opterr = 1;
}

int cli_parse_ref(const char *cmd, const char *text, shoal_ref_t *ref)
{
    if (shoal_ref_parse(text, ref) != 0)
        return cli_usage(cmd, "not a ref: %s (expected 32 hex digits)", text);
    return 0;
}

int cli_parse_number(const char *cmd, const char *option, const char *text, uint64_t min,
                     uint64_t max, uint64_t *value)
{
    uint64_t v;
    if (shoal__parse_u64(text, &v) != 0)
        return cli_usage(cmd, "%s: not a number: %s", option, text);
    if (v < min || v > max)
        return cli_usage(cmd, "%s: %s is out of range (%llu..%llu)", option, text,
                         (unsigned long long)min, (unsigned long long)max);
    *value = v;
    return 0;
}

int cli_parse_size(const char *cmd, const char *option, const char *text, uint64_t *bytes)
{
    if (shoal__parse_size(text, bytes) != 0 || *bytes == 0)
        return cli_usage(cmd, "%s: not a size: %s (expected e.g. 512M, 2G, 65536)", option, text);
    return 0;
}

int cli_parse_timeout(const char *cmd, const char *text, int *ms)
{
    int64_t v;
    if (shoal__parse_seconds_ms(text, &v) != 0)
        return cli_usage(cmd, "--timeout: not a number of seconds: %s", text);
    *ms = (int)SHOAL__MIN(v, (int64_t)INT_MAX);
    return 0;
}

int cli_connect(const char *cmd, const char *url, shoal_t **self_p)
{
    int timeout_ms = CLI_CONNECT_TIMEOUT_MS;
    const char *env = getenv("SHOAL_CONNECT_TIMEOUT");
    int64_t ms;
    if (env && *env) {
        if (shoal__parse_seconds_ms(env, &ms) == 0)
            timeout_ms = (int)SHOAL__MIN(ms, (int64_t)INT_MAX);
        else
            fprintf(stderr, "shoal %s: ignoring SHOAL_CONNECT_TIMEOUT=%s: not seconds\n", cmd, env);
    }
    int rc = shoal_connect(url, timeout_ms, self_p);
    if (rc == 0) {
        //  A command's tasks outlive it: `shoal submit` exits once the broker has them.
        shoal_keep(*self_p, true);
        return 0;
    }
    if (rc == SHOAL_EUNREACH)
        return cli_fail(cmd, CLI_EXIT_USAGE,
                        "no broker answered at %s within %g s: is `shoal broker` (or `shoal "
                        "up`) running there?",
                        url, timeout_ms / 1000.0);
    return cli_fail(cmd, CLI_EXIT_USAGE, "%s", shoal_last_error(NULL));
}

int cli_exit_for(int code)
{
    return code == SHOAL_ETIMEDOUT ? CLI_EXIT_TIMEOUT : CLI_EXIT_USAGE;
}

char *cli_human_size(uint64_t bytes, char *buf, size_t size)
{
    static const char units[] = "BKMGTPE";
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%lluB", (unsigned long long)bytes);
    else if (v < 9.95)
        snprintf(buf, size, "%.1f%c", v, units[u]);
    else
        snprintf(buf, size, "%.0f%c", v, units[u]);
    return buf;
}
