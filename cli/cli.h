/*  cli.h: the `shoal` command: one binary, one function per subcommand, shared helpers.

    Every subcommand parses its own options with getopt_long in "+" mode (options stop at
    the first non-option or at `--`; what follows is left untouched) and returns the
    process exit status. */
#ifndef SHOAL_CLI_H_INCLUDED
#define SHOAL_CLI_H_INCLUDED

#include "shoal.h"

#include <stdint.h>

/*  Exit statuses, the same for every subcommand. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,  /*  a task failed (or an object could not be found) */
    CLI_EXIT_USAGE = 2,   /*  bad usage, broker unreachable, or any other error */
    CLI_EXIT_TIMEOUT = 3, /*  --timeout expired */
};

#define CLI_DEFAULT_BROKER "tcp://127.0.0.1:7400"
#define CLI_DEFAULT_EVENTS "tcp://127.0.0.1:7401"
/*  How long a client command waits for the broker's greeting, unless
    $SHOAL_CONNECT_TIMEOUT (seconds) says otherwise. */
#define CLI_CONNECT_TIMEOUT_MS 5000

/*  Subcommands. argv[0] is "shoal NAME" (getopt's messages name it). */
int cli_cmd_up(int argc, char **argv);
int cli_cmd_broker(int argc, char **argv);
int cli_cmd_worker(int argc, char **argv);
int cli_cmd_executor(int argc, char **argv);
int cli_cmd_run(int argc, char **argv);
int cli_cmd_submit(int argc, char **argv);
int cli_cmd_wait(int argc, char **argv);
int cli_cmd_get(int argc, char **argv);
int cli_cmd_put(int argc, char **argv);
int cli_cmd_logs(int argc, char **argv);
int cli_cmd_cancel(int argc, char **argv);
int cli_cmd_rm(int argc, char **argv);
int cli_cmd_workers(int argc, char **argv);
int cli_cmd_jobs(int argc, char **argv);
int cli_cmd_ls(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);

/*  $SHOAL_BROKER if set and not empty, else CLI_DEFAULT_BROKER. */
const char *cli_default_broker(void);

/*  Prints "shoal CMD: MESSAGE" and a pointer to --help on stderr; returns CLI_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*  After getopt printed what was wrong: the pointer to --help; returns CLI_EXIT_USAGE. */
int cli_bad_option(const char *cmd);
/*  Prints "shoal CMD: MESSAGE" on stderr; returns status. */
int cli_fail(const char *cmd, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*  Resets getopt for a subcommand's parse (glibc: optind = 0 reinitialises). */
void cli_getopt_reset(void);

/*  Parsers: each prints a usage error naming the option and returns CLI_EXIT_USAGE, or
    returns 0 with the value set. */
int cli_parse_ref(const char *cmd, const char *text, shoal_ref_t *ref);
int cli_parse_number(const char *cmd, const char *option, const char *text, uint64_t min,
                     uint64_t max, uint64_t *value);
int cli_parse_size(const char *cmd, const char *option, const char *text, uint64_t *bytes);
/*  Seconds, possibly fractional, into milliseconds capped to INT_MAX. */
int cli_parse_timeout(const char *cmd, const char *text, int *ms);

/*  Connects to url with the connect deadline; on failure prints why (naming the address
    that did not answer) and returns CLI_EXIT_USAGE. */
int cli_connect(const char *cmd, const char *url, shoal_t **self_p);

/*  The exit status for a SHOAL_E* code from a client call: CLI_EXIT_TIMEOUT for
    SHOAL_ETIMEDOUT, CLI_EXIT_USAGE otherwise. (Task failures are recognised from their
    status, not from the code alone.) */
int cli_exit_for(int code);

/*  The ref of the one stored object named name (exactly: glob characters in it are
    escaped), for `shoal get NAME`. 0 with *ref set; else prints why and returns the exit
    status: CLI_EXIT_FAILED when no object has that name, CLI_EXIT_USAGE when several do
    (their refs listed), or that of the query's failure. */
int cli_find_by_name(const char *cmd, shoal_t *client, const char *name, shoal_ref_t *ref);

/*  "1.5K", "256M", "12B": bytes in powers of 1024, at most 5 characters. */
char *cli_human_size(uint64_t bytes, char *buf, size_t size);

#endif
