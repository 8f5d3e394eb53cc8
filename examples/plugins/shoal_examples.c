/*  shoal_examples.c: example task functions for fn tasks (libshoal_examples.so).

    A plugin includes shoal.h and nothing else of shoal, and does not link libshoal: it
    reaches the executor only through the function table inside shoal_task_t, wrapped by
    the shoal_task_* helpers (see "Task API for fn plugins" in shoal.h). Build:

        cc -shared -fPIC -O2 -I include -o libshoal_examples.so shoal_examples.c

    and run a function:  shoal run --fn /abs/path/libshoal_examples.so:square --arg 12

    Numbers in text: arguments and outputs are decimal text ending in a newline, so that
    `shoal get` prints them and other tasks (sum, pi_reduce) can read them. README.md
    lists every function. */
#include <shoal.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  ---------------------------------------------------------------------- helpers */

//  Finds the next decimal integer (an optional '-' and digits) in [*p, end) and stores it
//  in *value; anything else separates numbers. Returns 1 when one was found, 0 at the
//  end, -1 when a number overflows int64_t. Inputs are not NUL-terminated: bounds only.
static int s_next_number(const char **p, const char *end, int64_t *value)
{
    const char *s = *p;
    while (s < end && !(*s >= '0' && *s <= '9') &&
           !(*s == '-' && s + 1 < end && s[1] >= '0' && s[1] <= '9'))
        s++;
    if (s == end) {
        *p = s;
        return 0;
    }
    bool negative = *s == '-';
    if (negative)
        s++;
    uint64_t v = 0;
    //  Accumulate as a negative number: INT64_MIN has no positive counterpart.
    const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (limit - d) / 10) {
            *p = s;
            return -1;
        }
        v = v * 10 + d;
    }
    *p = s;
    *value = negative ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

//  Parses all of the argument as at least 1 and at most want integers, separated by
//  whitespace. Returns how many were found, or -1 after setting the task's error.
static int s_arg_numbers(shoal_task_t *t, const char *what, int64_t *values, int want)
{
    size_t size;
    const char *arg = shoal_task_arg(t, &size);
    const char *p = arg, *end = arg + size;
    int n = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p == end)
            break;
        char *stop;
        errno = 0;
        long long v = strtoll(p, &stop, 10); //  the argument is NUL-terminated (shoal.h)
        if (stop == p || errno == ERANGE || n == want ||
            (stop < end && *stop != ' ' && *stop != '\t' && *stop != '\n' && *stop != '\r')) {
            shoal_task_set_error(t, "expected %s as the argument, got \"%.*s\"", what,
                                 (int)(size > 200 ? 200 : size), arg);
            return -1;
        }
        values[n++] = (int64_t)v;
        p = stop;
    }
    if (n == 0) {
        shoal_task_set_error(t, "expected %s as the argument, got nothing", what);
        return -1;
    }
    return n;
}

//  Writes text (printf) as output i.
static int s_put_text(shoal_task_t *t, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_put_text(shoal_task_t *t, size_t i, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        shoal_task_set_error(t, "output %zu does not fit in %zu bytes", i, sizeof buf);
        return 1;
    }
    int rc = shoal_task_output_put(t, i, buf, (size_t)n);
    if (rc)
        shoal_task_set_error(t, "cannot write output %zu: %s", i, shoal_task_strerror(t, rc));
    return rc ? 1 : 0;
}

//  Reads every input as a list of "hits samples" pairs and adds them up.
static int s_sum_pairs(shoal_task_t *t, uint64_t *hits, uint64_t *samples)
{
    *hits = *samples = 0;
    for (size_t i = 0; i < shoal_task_n_inputs(t); i++) {
        const void *data;
        size_t size;
        if (shoal_task_input(t, i, &data, &size) != 0)
            return 1;
        const char *p = data, *end = p + size;
        int64_t v[2];
        int k = 0, rc;
        while ((rc = s_next_number(&p, end, &v[k])) == 1) {
            if (v[k] < 0) {
                shoal_task_set_error(t, "input %zu: a negative count", i);
                return 1;
            }
            if (++k == 2) {
                *hits += (uint64_t)v[0];
                *samples += (uint64_t)v[1];
                k = 0;
            }
        }
        if (rc < 0 || k != 0) {
            shoal_task_set_error(t, "input %zu is not a list of \"hits samples\" pairs", i);
            return 1;
        }
    }
    return 0;
}

/*  -------------------------------------------------------------------- functions */

//  Nothing: every output empty. The cheapest task there is, for benchmarks.
SHOAL_PLUGIN_EXPORT int noop(shoal_task_t *t)
{
    for (size_t i = 0; i < shoal_task_n_outputs(t); i++)
        if (shoal_task_output_put(t, i, NULL, 0) != 0)
            return 1;
    return 0;
}

//  The argument, as output 0.
SHOAL_PLUGIN_EXPORT int echo(shoal_task_t *t)
{
    size_t size;
    const void *arg = shoal_task_arg(t, &size);
    int rc = shoal_task_output_put(t, 0, arg, size);
    if (rc)
        shoal_task_set_error(t, "cannot write output 0: %s", shoal_task_strerror(t, rc));
    return rc ? 1 : 0;
}

//  The task's index in its array (`shoal submit --array`), as text.
SHOAL_PLUGIN_EXPORT int array_index(shoal_task_t *t)
{
    return s_put_text(t, 0, "%" PRIu64 "\n", shoal_task_index(t));
}

//  arg: a decimal integer N. Output: N * N.
SHOAL_PLUGIN_EXPORT int square(shoal_task_t *t)
{
    int64_t n, sq;
    if (s_arg_numbers(t, "a decimal integer", &n, 1) != 1)
        return 2;
    if (__builtin_mul_overflow(n, n, &sq)) {
        shoal_task_set_error(t, "square: %" PRId64 " squared overflows 64 bits", n);
        return 1;
    }
    return s_put_text(t, 0, "%" PRId64 "\n", sq);
}

//  The sum of every decimal integer found in all inputs.
SHOAL_PLUGIN_EXPORT int sum(shoal_task_t *t)
{
    int64_t total = 0;
    for (size_t i = 0; i < shoal_task_n_inputs(t); i++) {
        const void *data;
        size_t size;
        if (shoal_task_input(t, i, &data, &size) != 0)
            return 1;
        const char *p = data, *end = p + size;
        int64_t v;
        int rc;
        while ((rc = s_next_number(&p, end, &v)) == 1)
            if (__builtin_add_overflow(total, v, &total)) {
                shoal_task_set_error(t, "sum: overflows 64 bits at input %zu", i);
                return 1;
            }
        if (rc < 0) {
            shoal_task_set_error(t, "sum: input %zu holds a number beyond 64 bits", i);
            return 1;
        }
    }
    return s_put_text(t, 0, "%" PRId64 "\n", total);
}

//  The inputs one after another, as output 0: allocated once at its final size and
//  filled in place (in the worker's store when larger than 64 KiB), then sealed.
SHOAL_PLUGIN_EXPORT int concat(shoal_task_t *t)
{
    size_t n = shoal_task_n_inputs(t), total = 0;
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t size;
        shoal_task_input(t, i, &data, &size);
        total += size;
    }
    void *out;
    int rc = shoal_task_output_alloc(t, 0, total, &out);
    if (rc)
        return 1; //  the executor's reason (store full...) becomes the task's
    char *p = out;
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t size;
        shoal_task_input(t, i, &data, &size);
        memcpy(p, data, size);
        p += size;
    }
    return shoal_task_output_seal(t, 0) ? 1 : 0;
}

//  arg: SIZE, in bytes or with a suffix k, m, g (KiB, MiB, GiB). Output 0: SIZE bytes,
//  byte i being i % 251 (a prime, so the pattern does not line up with pages), for tests
//  of outputs larger than the inline limit.
SHOAL_PLUGIN_EXPORT int fill(shoal_task_t *t)
{
    const char *arg = shoal_task_arg(t, NULL);
    char *end;
    errno = 0;
    unsigned long long size = strtoull(arg, &end, 10);
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'm' || *end == 'M')
        shift = 20, end++;
    else if (*end == 'g' || *end == 'G')
        shift = 30, end++;
    if (end == arg || *end != '\0' || errno == ERANGE || arg[0] == '-' ||
        size > (SIZE_MAX >> shift)) {
        shoal_task_set_error(t,
                             "fill: expected a size as the argument (1000, 64k, 2m), got "
                             "\"%.100s\"",
                             arg);
        return 2;
    }
    size <<= shift;
    unsigned char *p;
    int rc = shoal_task_output_alloc(t, 0, (size_t)size, (void **)&p);
    if (rc)
        return 1;
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)(i % 251);
    return shoal_task_output_seal(t, 0) ? 1 : 0;
}

//  Fails on purpose, with the argument as the reason (or a standard one).
SHOAL_PLUGIN_EXPORT int fail(shoal_task_t *t)
{
    size_t size;
    const char *arg = shoal_task_arg(t, &size);
    fprintf(stderr, "fail: about to fail\n"); //  lands in the task's log
    if (size)
        shoal_task_set_error(t, "%s", arg);
    else
        shoal_task_set_error(t, "failed on purpose");
    return 1;
}

//  Crashes on purpose: a write through a NULL pointer (SIGSEGV), which kills the
//  executor; the worker fails the task naming the signal and starts a new executor.
SHOAL_PLUGIN_EXPORT int crash(shoal_task_t *t)
{
    (void)t;
    //  volatile twice: the compiler may neither assume the pointer is NULL (and emit a
    //  trap, SIGILL) nor drop the write (GCC -O2 drops a plain one before a return).
    volatile int *volatile nowhere = NULL;
    *nowhere = 42;
    return 0;
}

//  arg: milliseconds. Sleeps that long, then outputs nothing: for tests of cancellation
//  and scheduling.
SHOAL_PLUGIN_EXPORT int sleep_ms(shoal_task_t *t)
{
    int64_t ms;
    if (s_arg_numbers(t, "milliseconds", &ms, 1) != 1)
        return 2;
    if (ms < 0)
        ms = 0;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return shoal_task_output_put(t, 0, NULL, 0) ? 1 : 0;
}

/*  --------------------------------------------------------- pi by Monte Carlo */

//  splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to throw darts.
static uint64_t s_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

//  arg: "SEED SAMPLES" (or "SAMPLES": the seed is then the task's array index). Throws
//  SAMPLES darts at the unit square; output 0: "HITS SAMPLES", HITS being how many fell
//  inside the quarter circle (about SAMPLES * pi / 4).
SHOAL_PLUGIN_EXPORT int pi_sample(shoal_task_t *t)
{
    int64_t v[2];
    int n = s_arg_numbers(t, "\"SEED SAMPLES\"", v, 2);
    if (n < 0)
        return 2;
    if (v[n - 1] < 0) {
        shoal_task_set_error(t, "pi_sample: a negative number of samples");
        return 2;
    }
    uint64_t state = n == 2 ? (uint64_t)v[0] : shoal_task_index(t);
    uint64_t samples = (uint64_t)v[n - 1], hits = 0;
    //  53 random bits per coordinate, as a double in [0, 1).
    const double scale = 1.0 / 9007199254740992.0;
    for (uint64_t i = 0; i < samples; i++) {
        double x = (double)(s_splitmix64(&state) >> 11) * scale;
        double y = (double)(s_splitmix64(&state) >> 11) * scale;
        hits += x * x + y * y < 1.0;
    }
    return s_put_text(t, 0, "%" PRIu64 " %" PRIu64 "\n", hits, samples);
}

//  Inputs: "HITS SAMPLES" pairs (from pi_sample or pi_reduce). Output 0: their sums, as
//  one pair: reductions compose into a tree.
SHOAL_PLUGIN_EXPORT int pi_reduce(shoal_task_t *t)
{
    uint64_t hits, samples;
    if (s_sum_pairs(t, &hits, &samples))
        return 1;
    return s_put_text(t, 0, "%" PRIu64 " %" PRIu64 "\n", hits, samples);
}

//  Inputs: "HITS SAMPLES" pairs. Output 0: the estimate of pi, 4 * HITS / SAMPLES.
SHOAL_PLUGIN_EXPORT int pi_estimate(shoal_task_t *t)
{
    uint64_t hits, samples;
    if (s_sum_pairs(t, &hits, &samples))
        return 1;
    if (samples == 0) {
        shoal_task_set_error(t, "pi_estimate: no samples in %zu inputs", shoal_task_n_inputs(t));
        return 1;
    }
    return s_put_text(t, 0, "%.10f\n", 4.0 * (double)hits / (double)samples);
}
