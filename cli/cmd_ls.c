/*  cmd_ls.c: `shoal ls`, the stored objects the broker knows, one line each.

    One query (shoal_query): the broker filters and sorts, oldest first, and says how many
    more matched than it listed; the table's widths come from what is listed. Also the
    lookup of `shoal get NAME` (cli_find_by_name), which is a query by exact name. */
#include "cli.h"

#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  A listing is answered at once; 10 s, as the other requests of the command. */
#define S_REPLY_TIMEOUT_MS 10000

static const char s_ls_help[] =
    "Usage: shoal ls [OPTIONS]\n"
    "\n"
    "Lists the objects stored in the cluster, oldest first: the outputs of finished tasks\n"
    "and the objects put with `shoal put`, one a line:\n"
    "\n"
    "  REF     the object's ref (what `shoal get` and --input take)\n"
    "  NAME    its name (--name of submit or put), - for none\n"
    "  TAGS    its tags (--tag of put), comma-separated, - for none\n"
    "  SIZE    its size\n"
    "  STATE   allocated (a put being written), sealed (complete), spilled (complete,\n"
    "          moved to its worker's disk tier under memory pressure; still readable),\n"
    "          persisted (complete, kept on its worker's disk too: --persist or a name)\n"
    "  WORKER  the worker whose store holds it, - for a small object kept by the broker\n"
    "  TASK    the task that produced it (a put's own ref)\n"
    "  AGE     since it was sealed (allocated, while it is being written)\n"
    "\n"
    "Filters combine: an object is listed when it matches all of them. With nothing\n"
    "matching, only the header is printed. When more objects match than --limit, the\n"
    "oldest are listed and stderr says how many were left out.\n"
    "\n"
    "Options:\n"
    "  --broker URL     the broker (default $SHOAL_BROKER, else " CLI_DEFAULT_BROKER ")\n"
    "  --name GLOB      objects whose name matches GLOB (shell wildcards: * ? [...]);\n"
    "                   quote it, so the shell does not expand it\n"
    "  --tag TAG        objects that have tag TAG\n"
    "  --worker NAME    objects held by worker NAME\n"
    "  --job NAME       outputs of the tasks of job NAME\n"
    "  --limit N        list at most N objects, 1..1000000 (default 1000)\n"
    "  -h, --help       show this help\n";

enum { OPT_BROKER = 256, OPT_NAME, OPT_TAG, OPT_WORKER, OPT_JOB, OPT_LIMIT };

//  "850ms", "42s", "17m", "5h", "12d": an age in at most 5 characters.
static char *s_age(uint64_t ms, char *buf, size_t size)
{
    uint64_t s = ms / 1000;
    if (ms < 1000)
        snprintf(buf, size, "%llums", (unsigned long long)ms);
    else if (s < 60)
        snprintf(buf, size, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
    else if (s < 86400)
        snprintf(buf, size, "%lluh", (unsigned long long)(s / 3600));
    else
        snprintf(buf, size, "%llud", (unsigned long long)(s / 86400));
    return buf;
}

static const char *s_state(int state)
{
    switch (state) {
    case SHOAL_OBJECT_ALLOCATED:
        return "allocated";
    case SHOAL_OBJECT_SEALED:
        return "sealed";
    case SHOAL_OBJECT_SPILLED:
        return "spilled";
    case SHOAL_OBJECT_PERSISTED:
        return "persisted";
    default:
        return "unknown";
    }
}

//  Bytes of o's tags joined by commas (without the NUL); 1 for "-".
static size_t s_tags_len(const shoal_object_info_t *o)
{
    size_t len = o->n_tags ? o->n_tags - 1 : 1;
    for (size_t i = 0; i < o->n_tags; i++)
        len += strlen(o->tags[i]);
    return len;
}

static void s_print_tags(const shoal_object_info_t *o, int width)
{
    int len = 0;
    if (!o->n_tags)
        len = printf("-");
    for (size_t i = 0; i < o->n_tags; i++)
        len += printf("%s%s", i ? "," : "", o->tags[i]);
    printf("%*s", width > len ? width - len : 0, "");
}

int cli_cmd_ls(int argc, char **argv)
{
    const char *cmd = "ls";
    shoal__log_init("client", SHOAL_LOG_WARN);
    static const struct option opts[] = {
        {"broker", required_argument, NULL, OPT_BROKER},
        {"name", required_argument, NULL, OPT_NAME},
        {"tag", required_argument, NULL, OPT_TAG},
        {"worker", required_argument, NULL, OPT_WORKER},
        {"job", required_argument, NULL, OPT_JOB},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *broker = cli_default_broker();
    shoal_query_t q = {.limit = SHOAL_QUERY_DEFAULT_LIMIT};
    uint64_t limit;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_ls_help, stdout);
            return CLI_EXIT_OK;
        case OPT_BROKER:
            broker = optarg;
            break;
        case OPT_NAME:
            q.name_glob = optarg;
            break;
        case OPT_TAG:
            q.tag = optarg;
            break;
        case OPT_WORKER:
            q.worker = optarg;
            break;
        case OPT_JOB:
            q.job = optarg;
            break;
        case OPT_LIMIT:
            if (cli_parse_number(cmd, "--limit", optarg, 1, 1000000, &limit))
                return CLI_EXIT_USAGE;
            q.limit = (size_t)limit;
            break;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument: %s", argv[optind]);
    shoal_t *client = NULL;
    int rc = cli_connect(cmd, broker, &client);
    if (rc)
        return rc;
    shoal_object_info_t *list = NULL;
    size_t n = 0;
    int more = shoal_query(client, &q, &list, &n, S_REPLY_TIMEOUT_MS);
    if (more < 0) {
        int status = cli_fail(cmd, cli_exit_for(more), "%s", shoal_last_error(client));
        shoal_disconnect(&client);
        return status;
    }
    //  Column widths from the content, at least the header's.
    int wname = 4, wtags = 4, wworker = 6;
    for (size_t i = 0; i < n; i++) {
        wname = SHOAL__MAX(wname, (int)strlen(list[i].name ? list[i].name : "-"));
        wtags = SHOAL__MAX(wtags, (int)s_tags_len(&list[i]));
        wworker = SHOAL__MAX(wworker, (int)strlen(list[i].worker ? list[i].worker : "-"));
    }
    printf("%-32s  %-*s  %-*s  %5s  %-9s  %-*s  %-32s  %s\n", "REF", wname, "NAME", wtags, "TAGS",
           "SIZE", "STATE", wworker, "WORKER", "TASK", "AGE");
    for (size_t i = 0; i < n; i++) {
        const shoal_object_info_t *o = &list[i];
        char ref[SHOAL_REF_TEXT_SIZE], task[SHOAL_REF_TEXT_SIZE], size[16], age[24];
        printf("%s  %-*s  ", shoal_ref_format(o->ref, ref), wname, o->name ? o->name : "-");
        s_print_tags(o, wtags);
        printf("  %5s  %-9s  %-*s  %s  %s\n", cli_human_size(o->size, size, sizeof size),
               s_state(o->state), wworker, o->worker ? o->worker : "-",
               shoal_ref_format(o->task, task), s_age(o->age_ms, age, sizeof age));
    }
    int status = CLI_EXIT_OK;
    if (fflush(stdout) != 0)
        status = cli_fail(cmd, CLI_EXIT_USAGE, "writing to stdout: %s", strerror(errno));
    else if (more > 0)
        fprintf(stderr, "shoal ls: %d more not listed (--limit %zu)\n", more, q.limit);
    shoal_objects_free(&list, n);
    shoal_disconnect(&client);
    return status;
}

/*  ----------------------------------------------------------------- get NAME */

//  Refs listed when a name is ambiguous.
#define S_AMBIGUOUS_MAX 20

int cli_find_by_name(const char *cmd, shoal_t *client, const char *name, shoal_ref_t *ref)
{
    //  The name as a glob that matches only itself: \ before each of * ? [ and \.
    size_t len = strlen(name);
    char *glob = malloc(2 * len + 1), *p = glob;
    if (!glob)
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    for (const char *s = name; *s; s++) {
        if (strchr("*?[\\", *s))
            *p++ = '\\';
        *p++ = *s;
    }
    *p = '\0';
    shoal_query_t q = {.name_glob = glob, .limit = S_AMBIGUOUS_MAX};
    shoal_object_info_t *list = NULL;
    size_t n = 0;
    int more = shoal_query(client, &q, &list, &n, S_REPLY_TIMEOUT_MS);
    free(glob);
    if (more < 0)
        return cli_fail(cmd, cli_exit_for(more), "%s", shoal_last_error(client));
    int status = CLI_EXIT_OK;
    if (n == 0)
        status = cli_fail(cmd, CLI_EXIT_FAILED, "no object named %s", name);
    else if (n == 1)
        *ref = list[0].ref;
    else {
        fprintf(stderr, "shoal %s: %zu objects are named %s; give one of their refs:\n", cmd,
                n + (size_t)more, name);
        for (size_t i = 0; i < n; i++) {
            char text[SHOAL_REF_TEXT_SIZE];
            fprintf(stderr, "  %s\n", shoal_ref_format(list[i].ref, text));
        }
        if (more > 0)
            fprintf(stderr, "  ... and %d more\n", more);
        status = CLI_EXIT_USAGE;
    }
    shoal_objects_free(&list, n);
    return status;
}
