/*  plugin_test.c: task functions that exercise the corners of the fn task API, for
    tests/test_plugins.c (libshoal_test_plugin.so). Like every plugin it includes shoal.h
    only and does not link libshoal. The friendly examples are in examples/plugins/. */
#include <shoal.h>
#include <signal.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Checks cond; on failure sets the task's error naming the line and returns 1.
#define CHECK(t, cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            shoal_task_set_error((t), "check failed at plugin_test.c:%d: %s", __LINE__, #cond);    \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

//  Every misuse of the API the header lists returns its error code and changes nothing;
//  then output 0 is written properly. Expects one input and one output.
SHOAL_PLUGIN_EXPORT int api_misuse(shoal_task_t *t)
{
    CHECK(t, t->api->size >= sizeof(shoal_task_api_t));
    CHECK(t, t->api->version >= 1);
    CHECK(t, SHOAL_TASK_API_HAS(t, strerror));
    CHECK(t, strcmp(shoal_task_strerror(t, SHOAL_EINVAL), "invalid argument") == 0);
    CHECK(t, shoal_task_n_inputs(t) == 1);
    CHECK(t, shoal_task_n_outputs(t) == 1);

    const void *data = NULL;
    size_t size = 0;
    CHECK(t, shoal_task_input(t, 1, &data, &size) == SHOAL_EINVAL);
    CHECK(t, shoal_task_input(t, (size_t)-1, &data, &size) == SHOAL_EINVAL);
    CHECK(t, shoal_task_input(t, 0, NULL, &size) == SHOAL_EINVAL);
    CHECK(t, shoal_task_input(t, 0, &data, NULL) == SHOAL_EINVAL);
    CHECK(t, data == NULL && size == 0); //  untouched on failure
    CHECK(t, shoal_task_input(t, 0, &data, &size) == 0 && data != NULL);

    void *p = NULL;
    CHECK(t, shoal_task_output_alloc(t, 1, 10, &p) == SHOAL_EINVAL);
    CHECK(t, shoal_task_output_alloc(t, 0, 10, NULL) == SHOAL_EINVAL);
    CHECK(t, shoal_task_output_seal(t, 0) == SHOAL_ESTATE); //  not allocated
    CHECK(t, shoal_task_output_seal(t, 7) == SHOAL_EINVAL);
    CHECK(t, shoal_task_output_put(t, 0, NULL, 5) == SHOAL_EINVAL);
    CHECK(t, shoal_task_output_put(t, 3, "x", 1) == SHOAL_EINVAL);
    CHECK(t, p == NULL);

    CHECK(t, shoal_task_output_alloc(t, 0, 5, &p) == 0 && p != NULL);
    void *q = NULL;
    CHECK(t, shoal_task_output_alloc(t, 0, 5, &q) == SHOAL_ESTATE); //  allocated twice
    CHECK(t, q == NULL);
    CHECK(t, shoal_task_output_put(t, 0, "yyyyy", 5) == SHOAL_ESTATE);
    memcpy(p, "fine\n", 5);
    CHECK(t, shoal_task_output_seal(t, 0) == 0);
    CHECK(t, shoal_task_output_seal(t, 0) == SHOAL_ESTATE); //  sealed twice
    CHECK(t, shoal_task_output_alloc(t, 0, 5, &q) == SHOAL_ESTATE);
    return 0;
}

//  arg: one size per output. Output i gets that many bytes, byte j being (i + j) % 253:
//  small and large outputs mixed, allocated first, written, then sealed in reverse order.
SHOAL_PLUGIN_EXPORT int outputs(shoal_task_t *t)
{
    size_t n = shoal_task_n_outputs(t);
    const char *arg = shoal_task_arg(t, NULL);
    unsigned char **mem = calloc(n, sizeof *mem);
    size_t *sizes = calloc(n, sizeof *sizes);
    int rc = 1;
    if (!mem || !sizes)
        goto done;
    for (size_t i = 0; i < n; i++) {
        char *end;
        sizes[i] = strtoull(arg, &end, 10);
        if (end == arg) {
            shoal_task_set_error(t, "outputs: %zu outputs but fewer sizes", n);
            goto done;
        }
        arg = end;
        int err = shoal_task_output_alloc(t, i, sizes[i], (void **)&mem[i]);
        if (err) {
            shoal_task_set_error(t, "outputs: alloc %zu (%zu bytes): %s", i, sizes[i],
                                 shoal_task_strerror(t, err));
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            mem[i][j] = (unsigned char)((i + j) % 253);
    for (size_t i = n; i-- > 0;)
        if (shoal_task_output_seal(t, i) != 0)
            goto done;
    rc = 0;
done:
    free(mem);
    free(sizes);
    return rc;
}

//  Allocates output 0 and returns 0 without sealing it.
SHOAL_PLUGIN_EXPORT int unsealed(shoal_task_t *t)
{
    void *p;
    return shoal_task_output_alloc(t, 0, 100, &p) ? 2 : 0;
}

//  Writes output 0 of two and returns 0.
SHOAL_PLUGIN_EXPORT int half_written(shoal_task_t *t)
{
    return shoal_task_output_put(t, 0, "a", 1) ? 2 : 0;
}

//  Returns 3 without a message.
SHOAL_PLUGIN_EXPORT int returns_three(shoal_task_t *t)
{
    (void)t;
    return 3;
}

//  Prints on stdout (buffered and not) and stderr, which make the task's log; its output
//  stays clean. arg: how many bytes of 'x' to add to stderr (a log beyond 64 KiB).
SHOAL_PLUGIN_EXPORT int noisy(shoal_task_t *t)
{
    printf("printf to stdout\n"); //  left in stdio's buffer: the executor flushes it
    ssize_t w = write(STDOUT_FILENO, "write to stdout\n", 16);
    fprintf(stderr, "fprintf to stderr\n");
    size_t extra = (size_t)strtoull(shoal_task_arg(t, NULL), NULL, 10);
    for (size_t i = 0; i < extra; i++)
        fputc(i % 64 == 63 ? '\n' : 'x', stderr);
    (void)w;
    return shoal_task_output_put(t, 0, "quiet\n", 6) ? 1 : 0;
}

//  Output 0: "ID INDEX N_INPUTS N_OUTPUTS ARG_SIZE NUL" where ID is the task's ref as 32
//  hex digits and NUL is 1 when the argument is followed by a NUL byte.
SHOAL_PLUGIN_EXPORT int info(shoal_task_t *t)
{
    shoal_ref_t id = shoal_task_id(t);
    size_t arg_size;
    const char *arg = shoal_task_arg(t, &arg_size);
    char buf[160];
    int n =
        snprintf(buf, sizeof buf, "%016llx%016llx %llu %zu %zu %zu %d\n", (unsigned long long)id.hi,
                 (unsigned long long)id.lo, (unsigned long long)shoal_task_index(t),
                 shoal_task_n_inputs(t), shoal_task_n_outputs(t), arg_size, arg[arg_size] == '\0');
    for (size_t i = 0; i < shoal_task_n_outputs(t); i++)
        if (shoal_task_output_put(t, i, buf, (size_t)n))
            return 1;
    return 0;
}

//  Writes into its read-only input view: the write faults and kills the executor.
SHOAL_PLUGIN_EXPORT int write_input(shoal_task_t *t)
{
    const void *data;
    size_t size;
    if (shoal_task_input(t, 0, &data, &size) || size == 0)
        return 2;
    *(volatile char *)data = 'X';
    return shoal_task_output_put(t, 0, "wrote\n", 6) ? 1 : 0;
}

//  Allocates output 0 (arg: its size in bytes, as text) and writes one byte past its last
//  page: the executor's mapping of the arena is writable for its own allocation only, so
//  the write faults instead of reaching another object.
SHOAL_PLUGIN_EXPORT int stray_write(shoal_task_t *t)
{
    size_t size = (size_t)strtoull(shoal_task_arg(t, NULL), NULL, 10);
    char *p;
    if (shoal_task_output_alloc(t, 0, size, (void **)&p))
        return 2;
    memset(p, 'o', size);
    size_t end = (size + 4095) / 4096 * 4096;
    ((volatile char *)p)[end] = 'X';
    return shoal_task_output_seal(t, 0) ? 1 : 0;
}

//  Allocates a 1 MiB output, writes half of it, then dies by SIGSEGV: a writer that dies
//  mid-write.
SHOAL_PLUGIN_EXPORT int crash_mid_write(shoal_task_t *t)
{
    char *p;
    if (shoal_task_output_alloc(t, 0, 1 << 20, (void **)&p))
        return 2;
    memset(p, 'h', 1 << 19);
    raise(SIGSEGV);
    return 3;
}

/*  For streaming readers: allocates a 2 MiB output, writes its first MiB ('a') and
    publishes it (shoal_task_output_progress), then waits (up to 60 s) until the file
    named by the argument exists, writes the second MiB ('b') and seals. Checks the
    progress call's errors on the way. */
SHOAL_PLUGIN_EXPORT int stream_slowly(shoal_task_t *t)
{
    const char *path = shoal_task_arg(t, NULL);
    char *p;
    size_t half = 1 << 20;
    CHECK(t, shoal_task_output_progress(t, 0, 0) == SHOAL_ESTATE); //  not allocated
    CHECK(t, shoal_task_output_alloc(t, 0, 2 * half, (void **)&p) == 0);
    CHECK(t, shoal_task_output_progress(t, 1, 0) == SHOAL_EINVAL);
    CHECK(t, shoal_task_output_progress(t, 0, 2 * half + 1) == SHOAL_EINVAL);
    memset(p, 'a', half);
    CHECK(t, shoal_task_output_progress(t, 0, half) == 0);
    CHECK(t, shoal_task_output_progress(t, 0, half - 1) == SHOAL_EINVAL); //  backwards
    for (int i = 0; i < 60000 && access(path, F_OK) != 0; i++)
        usleep(1000); //  a plugin that waits for its input, as a producer would
    CHECK(t, access(path, F_OK) == 0);
    memset(p + half, 'b', half);
    CHECK(t, shoal_task_output_seal(t, 0) == 0);
    CHECK(t, shoal_task_output_progress(t, 0, 2 * half) == SHOAL_ESTATE); //  sealed
    return 0;
}

/*  For consumers of an output whose writer dies: when the file named by the argument
    exists, writes a 2 MiB output ('c') and seals it; else writes and publishes its first
    MiB, waits (up to 60 s) for the file, and crashes, so the output is aborted under its
    streaming readers and a retry of this task writes it whole. */
SHOAL_PLUGIN_EXPORT int stream_crash_once(shoal_task_t *t)
{
    const char *path = shoal_task_arg(t, NULL);
    size_t half = 1 << 20;
    bool again = access(path, F_OK) == 0;
    char *p;
    CHECK(t, shoal_task_output_alloc(t, 0, 2 * half, (void **)&p) == 0);
    memset(p, 'c', again ? 2 * half : half);
    if (again) {
        CHECK(t, shoal_task_output_seal(t, 0) == 0);
        return 0;
    }
    CHECK(t, shoal_task_output_progress(t, 0, half) == 0);
    for (int i = 0; i < 60000 && access(path, F_OK) != 0; i++)
        usleep(1000);
    raise(SIGSEGV);
    return 3;
}

/*  Copies streaming input 0 into output 0 as it lands (shoal_task_input_read, 64 KiB at
    a time), publishing its own progress, so a stream of this task's output follows the
    put it reads. */
SHOAL_PLUGIN_EXPORT int stream_copy(shoal_task_t *t)
{
    const void *in;
    size_t size;
    int rc = shoal_task_input(t, 0, &in, &size);
    CHECK(t, rc == 0 || rc == SHOAL_EAGAIN);
    char *out;
    CHECK(t, shoal_task_output_alloc(t, 0, size, (void **)&out) == 0);
    size_t got = 0;
    while (got < size) {
        int n = shoal_task_input_read(t, 0, got, out + got, 65536, 60000);
        if (n < 0) {
            shoal_task_set_error(t, "reading input 0 at %zu: %s", got, shoal_task_strerror(t, n));
            return 1;
        }
        CHECK(t, n > 0);
        got += (size_t)n;
        CHECK(t, shoal_task_output_progress(t, 0, got) == 0);
    }
    CHECK(t, shoal_task_input_read(t, 0, got, out, 1, 60000) == 0); //  the end
    CHECK(t, shoal_task_input(t, 0, &in, &size) == 0);              //  sealed now
    CHECK(t, memcmp(in, out, size) == 0);
    CHECK(t, shoal_task_output_seal(t, 0) == 0);
    return 0;
}

/*  Copies its inputs, all streaming, one after the other into output 0 as they land
    (shoal_task_input_read, 64 KiB at a time), publishing its progress, so a stream of its
    output shows how far it has read each input while they are written. */
SHOAL_PLUGIN_EXPORT int stream_concat(shoal_task_t *t)
{
    size_t n = shoal_task_n_inputs(t), total = 0, sizes[64];
    CHECK(t, n > 0 && n <= 64);
    for (size_t i = 0; i < n; i++) {
        const void *in;
        int rc = shoal_task_input(t, i, &in, &sizes[i]);
        CHECK(t, rc == 0 || rc == SHOAL_EAGAIN);
        total += sizes[i];
    }
    char *out;
    CHECK(t, shoal_task_output_alloc(t, 0, total, (void **)&out) == 0);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        while (got < sizes[i]) {
            int k = shoal_task_input_read(t, i, got, out + at, 65536, 60000);
            if (k < 0) {
                shoal_task_set_error(t, "reading input %zu at %zu: %s", i, got,
                                     shoal_task_strerror(t, k));
                return 1;
            }
            CHECK(t, k > 0);
            got += (size_t)k;
            at += (size_t)k;
            CHECK(t, shoal_task_output_progress(t, 0, at) == 0);
        }
        CHECK(t, shoal_task_input_read(t, i, got, out, 1, 60000) == 0); //  the end
    }
    CHECK(t, shoal_task_output_seal(t, 0) == 0);
    return 0;
}

/*  Reads streaming input 0 up to its first MiB (shoal_task_input_read), then, reading
    nothing, creates the file named by the first string of the argument and waits (up to
    60 s) for the one named by the second before it reads on to the end: between the two,
    the test has the input aborted and written anew by a retry of its producer. Fails,
    with the read's error, when a read fails. */
SHOAL_PLUGIN_EXPORT int stream_read_pause(shoal_task_t *t)
{
    size_t arg_size;
    const char *go = shoal_task_arg(t, &arg_size);
    const char *resume = go + strlen(go) + 1;
    const void *in;
    size_t size;
    int rc = shoal_task_input(t, 0, &in, &size);
    CHECK(t, (rc == 0 || rc == SHOAL_EAGAIN) && size > (1 << 20));
    char *buf = malloc(size);
    CHECK(t, buf != NULL);
    size_t got = 0, stop = 1 << 20;
    for (int pass = 0; pass < 2; pass++) {
        while (got < stop) {
            size_t want = stop - got < 65536 ? stop - got : 65536;
            int n = shoal_task_input_read(t, 0, got, buf + got, want, 60000);
            if (n <= 0) {
                shoal_task_set_error(t, "reading input 0 at %zu: %s", got,
                                     n ? shoal_task_strerror(t, n) : "the end");
                free(buf);
                return 1;
            }
            got += (size_t)n;
        }
        if (pass == 0) {
            FILE *f = fopen(go, "w");
            if (f)
                fclose(f);
            for (int i = 0; i < 60000 && access(resume, F_OK) != 0; i++)
                usleep(1000);
            stop = size;
        }
    }
    rc = shoal_task_output_put(t, 0, buf, 16);
    free(buf);
    return rc ? 1 : 0;
}
