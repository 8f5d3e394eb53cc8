/*  pi.c: a dependency graph of C plugin tasks, submitted through libshoal.

    TASKS pi_sample tasks throw darts at the unit square, a tree of pi_reduce tasks adds
    their counts up pairwise, and pi_estimate turns the total into an estimate of pi. Every
    task is submitted before any has run: the refs the calls return at once are the edges
    of the graph. Then the program waits for the one result and prints it.

        pi [URL [PLUGIN [TASKS [SAMPLES]]]]
            URL      default local://2 (a broker and 2 workers of its own, stopped on exit)
            PLUGIN   the example plugin, default $SHOAL_EXAMPLES_PLUGIN, else
                     ./libshoal_examples.so
            TASKS    pi_sample tasks, default 100
            SAMPLES  darts per task, default 1000000

        cc pi.c $(pkg-config --cflags --libs shoal) -o pi */
#include <shoal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

//  Submits one fn task of plugin:fn with arg and inputs; its output 0 goes in *out.
static int s_submit(shoal_t *sh, const char *plugin, const char *fn, const char *arg,
                    const shoal_ref_t *inputs, size_t n_inputs, shoal_ref_t *out)
{
    char target[4096];
    snprintf(target, sizeof target, "%s:%s", plugin, fn);
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_FN,
                              .fn = target,
                              .arg = arg,
                              .arg_size = arg ? strlen(arg) : 0,
                              .inputs = inputs,
                              .n_inputs = n_inputs};
    shoal_ref_t id;
    int rc = shoal_submit(sh, &spec, &id);
    if (rc == 0)
        *out = shoal_ref_output(id, 0);
    return rc;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "local://2?shm=64M";
    const char *plugin = argc > 2                          ? argv[2]
                         : getenv("SHOAL_EXAMPLES_PLUGIN") ? getenv("SHOAL_EXAMPLES_PLUGIN")
                                                           : "./libshoal_examples.so";
    long tasks = argc > 3 ? atol(argv[3]) : 100;
    long samples = argc > 4 ? atol(argv[4]) : 1000000;
    if (tasks < 1 || samples < 1) {
        fprintf(stderr, "usage: pi [URL [PLUGIN [TASKS [SAMPLES]]]]\n");
        return 2;
    }
    double t0 = s_now();
    shoal_t *sh = NULL;
    int rc = shoal_connect(url, 30000, &sh);
    if (rc != 0) {
        fprintf(stderr, "pi: cannot connect to %s: %s\n", url, shoal_last_error(NULL));
        return 2;
    }
    double t1 = s_now();
    shoal_ref_t *level = calloc((size_t)tasks, sizeof *level);
    if (!level) {
        shoal_disconnect(&sh);
        return 1;
    }
    for (long i = 0; i < tasks && rc == 0; i++) {
        char arg[64];
        snprintf(arg, sizeof arg, "%ld %ld", i + 1, samples);
        rc = s_submit(sh, plugin, "pi_sample", arg, NULL, 0, &level[i]);
    }
    //  Pairwise reduction: each level halves the number of partial sums.
    size_t n = (size_t)tasks, reducers = 0;
    while (n > 1 && rc == 0) {
        size_t next = 0;
        for (size_t i = 0; i < n && rc == 0; i += 2) {
            size_t k = i + 1 < n ? 2 : 1;
            if (k == 1) {
                level[next++] = level[i]; //  an odd one out moves up a level as it is
                continue;
            }
            rc = s_submit(sh, plugin, "pi_reduce", NULL, &level[i], 2, &level[next++]);
            reducers++;
        }
        n = next;
    }
    shoal_ref_t estimate;
    if (rc == 0)
        rc = s_submit(sh, plugin, "pi_estimate", NULL, &level[0], 1, &estimate);
    if (rc == 0)
        rc = shoal_flush(sh, 30000); //  every task is at the broker now
    double t2 = s_now();
    shoal_view_t view;
    if (rc == 0)
        rc = shoal_get(sh, estimate, 300000, &view);
    double t3 = s_now();
    if (rc == 0) {
        printf("pi ~ %.*s", (int)view.size, (const char *)view.data);
        printf("%ld pi_sample tasks of %ld samples, %zu pi_reduce, 1 pi_estimate\n", tasks, samples,
               reducers);
        printf("connect %.3f s, submit %.3f s, run and fetch %.3f s\n", t1 - t0, t2 - t1, t3 - t2);
        shoal_view_release(&view);
    } else
        fprintf(stderr, "pi: %s: %s\n", shoal_strerror(rc), shoal_last_error(sh));
    free(level);
    shoal_disconnect(&sh);
    return rc == 0 ? 0 : 1;
}
