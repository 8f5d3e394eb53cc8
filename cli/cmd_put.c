/*  cmd_put.c: `shoal put`, an object from a file or standard input into the cluster.

    Small objects (up to 64 KiB) go to the broker's directory unless --store or --worker
    asks for a worker's store; larger ones are allocated in a worker's store first (on
    this host when there is a worker here: the bytes then go through shared memory) and
    read straight into it, in 1 MiB pieces, so a file of any size never sits whole in
    this process's memory. The ref is printed once the broker has acknowledged the put;
    the object stays until `shoal rm`, its --ttl, or the end of the cluster. */
#include "cli.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_ACK_TIMEOUT_MS 10000
#define S_PIECE          (1024 * 1024)

static const char s_put_help[] =
    "Usage: shoal put [OPTIONS] FILE|-\n"
    "\n"
    "Puts the bytes of FILE (or of standard input, with -) into the cluster as a new\n"
    "object and prints its ref, which tasks can take as input (--input REF) and `shoal get`\n"
    "reads back. The object stays until `shoal rm REF` or its --ttl.\n"
    "\n"
    "Options:\n"
    "  --broker URL     the broker (default $SHOAL_BROKER, else " CLI_DEFAULT_BROKER ")\n"
    "  --name NAME      a name for the object (shoal ls)\n"
    "  --tag TAG        a tag for the object (repeatable, at most 16, 64 bytes each)\n"
    "  --ttl S          remove the object S seconds after it is stored\n"
    "  --worker NAME    keep it in this worker's store\n"
    "  --store          keep it in a worker's store even when small (default: objects up\n"
    "                   to 64 KiB live in the broker's directory)\n"
    "  --persist        keep it on the worker's disk too (implies --store; written and\n"
    "                   synced before the command exits): it survives a kill or restart\n"
    "                   of the worker, even when the worker's memory is lost. A named\n"
    "                   object in a worker's store is persisted too\n"
    "  --size N         with -: standard input carries exactly N bytes (K/M/G suffixes);\n"
    "                   the space is allocated first, the ref printed at once (tasks that\n"
    "                   read it wait until every byte is in), and the input read straight\n"
    "                   into it\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 stored, 2 usage, an unreadable file, or no room (the message names\n"
    "the sizes), 3 timed out.\n";

enum { OPT_BROKER = 256, OPT_NAME, OPT_TAG, OPT_TTL, OPT_WORKER, OPT_STORE, OPT_SIZE, OPT_PERSIST };

//  Reads what fd has, at least 1 and at most n bytes. The count, -EPIPE (input ended) or
//  -errno.
static ssize_t s_read_some(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        return r == 0 ? -EPIPE : r;
    }
}

//  Reads all of fd (standard input of unknown size) into a malloc'd buffer.
static int s_read_all(int fd, uint8_t **buf_p, size_t *size_p)
{
    size_t cap = 1 << 16, size = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (size == cap) {
            uint8_t *grown = realloc(buf, cap * 2);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + size, cap - size);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            free(buf);
            return -err;
        }
        if (r == 0) {
            *buf_p = buf;
            *size_p = size;
            return 0;
        }
        size += (size_t)r;
    }
    free(buf);
    return -ENOMEM;
}

//  Prints ref on stdout, once the broker has acknowledged the put. Returns the status.
static int s_announce(const char *cmd, shoal_t *client, shoal_ref_t ref)
{
    int rc = shoal_flush(client, S_ACK_TIMEOUT_MS);
    if (rc)
        return cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    char text[SHOAL_REF_TEXT_SIZE];
    printf("%s\n", shoal_ref_format(ref, text));
    fflush(stdout);
    return CLI_EXIT_OK;
}

/*  A store put of size bytes read from fd: into shared memory when the worker is on this
    host, else in pieces through the worker's data socket. early: print the ref as soon as
    the space is allocated (standard input with --size), so another command can name it
    while the bytes still arrive (tasks reading it wait for the seal). */
static int s_put_stream(const char *cmd, shoal_t *client, int fd, const char *what, uint64_t size,
                        const shoal_put_opts_t *opts, bool early, shoal_ref_t *ref)
{
    shoal_put_t *put = NULL;
    int rc = shoal_put_begin(client, size, opts, ref, &put);
    if (rc)
        return cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    if (early && (rc = s_announce(cmd, client, *ref)) != CLI_EXIT_OK) {
        shoal_put_abort(&put);
        return rc;
    }
    uint8_t *mem = shoal_put_memory(put);
    uint8_t *piece = mem ? NULL : malloc(S_PIECE);
    if (!mem && !piece) {
        shoal_put_abort(&put);
        return cli_fail(cmd, CLI_EXIT_USAGE, "out of memory");
    }
    int err = 0;
    //  Whatever a read gives is written (and, in place, published with
    //  shoal_put_progress) at once, so `shoal get --follow` sees bytes as they arrive.
    for (uint64_t done = 0; done < size && !err && rc == 0;) {
        size_t want = (size_t)SHOAL__MIN((uint64_t)S_PIECE, size - done);
        ssize_t n = s_read_some(fd, mem ? mem + done : piece, want);
        if (n < 0) {
            err = (int)n;
            break;
        }
        done += (uint64_t)n;
        rc = mem ? shoal_put_progress(put, done) : shoal_put_write(put, piece, (size_t)n);
    }
    free(piece);
    if (err || rc) {
        shoal_put_abort(&put);
        if (rc)
            return cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
        if (err == -EPIPE)
            return cli_fail(cmd, CLI_EXIT_USAGE, "%s ended before %llu bytes", what,
                            (unsigned long long)size);
        return cli_fail(cmd, CLI_EXIT_USAGE, "reading %s: %s", what, strerror(-err));
    }
    if ((rc = shoal_put_end(&put)) != 0)
        return cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
    return 0;
}

int cli_cmd_put(int argc, char **argv)
{
    const char *cmd = "put";
    shoal__log_init("client", SHOAL_LOG_WARN);
    static const struct option longopts[] = {{"broker", required_argument, NULL, OPT_BROKER},
                                             {"name", required_argument, NULL, OPT_NAME},
                                             {"tag", required_argument, NULL, OPT_TAG},
                                             {"ttl", required_argument, NULL, OPT_TTL},
                                             {"worker", required_argument, NULL, OPT_WORKER},
                                             {"store", no_argument, NULL, OPT_STORE},
                                             {"persist", no_argument, NULL, OPT_PERSIST},
                                             {"size", required_argument, NULL, OPT_SIZE},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *broker = cli_default_broker(), *tags[SHOAL_TAGS_MAX];
    shoal_put_opts_t opts = {.tags = tags};
    uint64_t size = 0;
    bool has_size = false;
    int c, ttl_ms = 0;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_BROKER:
            broker = optarg;
            break;
        case OPT_NAME:
            opts.name = optarg;
            break;
        case OPT_TAG:
            if (opts.n_tags == SHOAL_TAGS_MAX)
                return cli_usage(cmd, "at most %d tags", SHOAL_TAGS_MAX);
            if (!*optarg || strlen(optarg) > SHOAL_TAG_MAX)
                return cli_usage(cmd, "--tag '%s': a tag has 1 to %d bytes", optarg, SHOAL_TAG_MAX);
            tags[opts.n_tags++] = optarg;
            break;
        case OPT_TTL:
            if (cli_parse_timeout(cmd, optarg, &ttl_ms))
                return CLI_EXIT_USAGE;
            if (ttl_ms <= 0)
                return cli_usage(cmd, "--ttl must be positive, got '%s'", optarg);
            opts.ttl_ms = (uint64_t)ttl_ms;
            break;
        case OPT_WORKER:
            opts.worker = optarg;
            break;
        case OPT_PERSIST:
            opts.flags |= SHOAL_PUT_PERSIST;
            break;
        case OPT_STORE:
            opts.flags |= SHOAL_PUT_STORE;
            break;
        case OPT_SIZE:
            if (cli_parse_size(cmd, "--size", optarg, &size))
                return CLI_EXIT_USAGE;
            has_size = true;
            break;
        case 'h':
            fputs(s_put_help, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(cmd);
        }
    }
    if (optind != argc - 1)
        return cli_usage(cmd, optind == argc ? "missing FILE (or - for standard input)"
                                             : "one FILE at a time");
    const char *path = argv[optind];
    bool from_stdin = strcmp(path, "-") == 0;
    if (has_size && !from_stdin)
        return cli_usage(cmd, "--size goes with - (standard input); a file's size is known");
    int fd = STDIN_FILENO;
    const char *what = from_stdin ? "standard input" : path;
    if (!from_stdin) {
        struct stat st;
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return cli_fail(cmd, CLI_EXIT_USAGE, "%s: %s", path, strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return cli_fail(cmd, CLI_EXIT_USAGE, "%s: not a regular file", path);
        }
        size = (uint64_t)st.st_size;
        has_size = true;
    }
    shoal_t *client = NULL;
    int status = cli_connect(cmd, broker, &client);
    if (status) {
        if (!from_stdin)
            close(fd);
        return status;
    }
    shoal_keep(client, true);
    shoal_ref_t ref;
    bool small = has_size && size <= 64 * 1024 && !opts.worker &&
                 !(opts.flags & (SHOAL_PUT_STORE | SHOAL_PUT_PERSIST));
    bool early = from_stdin && has_size && !small;
    if (has_size && !small) {
        status = s_put_stream(cmd, client, fd, what, size, &opts, early, &ref);
    } else {
        uint8_t *buf = NULL;
        size_t n = 0;
        int err = s_read_all(fd, &buf, &n);
        if (err)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "reading %s: %s", what, strerror(-err));
        else if (has_size && n != size)
            status = cli_fail(cmd, CLI_EXIT_USAGE, "%s carried %zu bytes, not the %llu of --size",
                              what, n, (unsigned long long)size);
        else {
            int rc = shoal_put(client, buf, n, &opts, &ref);
            if (rc)
                status = cli_fail(cmd, cli_exit_for(rc), "%s", shoal_last_error(client));
        }
        free(buf);
    }
    if (!from_stdin)
        close(fd);
    if (status == CLI_EXIT_OK && !early)
        status = s_announce(cmd, client, ref);
    shoal_disconnect(&client);
    return status;
}
