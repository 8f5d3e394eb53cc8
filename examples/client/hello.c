/*  hello.c: the smallest libshoal program. It starts a cluster of its own on this host
    (local://1: a broker and one worker, stopped again on disconnect), runs `echo` on it
    and prints what the command wrote.

        cc hello.c $(pkg-config --cflags --libs shoal) -o hello
        ./hello                          # or ./hello tcp://127.0.0.1:7400 for a running one

    The cluster is started from the `shoal` binary: $SHOAL_BIN, else one next to this
    program, else the installed one, else PATH. */
#include <shoal.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "local://1?shm=64M";
    shoal_t *sh = NULL;
    int rc = shoal_connect(url, 30000, &sh);
    if (rc != 0) {
        fprintf(stderr, "hello: %s: %s\n", shoal_strerror(rc), shoal_last_error(NULL));
        return 2;
    }
    const char *cmd[] = {"echo", "hello from shoal", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = cmd};
    shoal_ref_t task;
    shoal_view_t out;
    if ((rc = shoal_submit(sh, &spec, &task)) == 0 &&
        (rc = shoal_get(sh, shoal_ref_output(task, 0), 30000, &out)) == 0) {
        fwrite(out.data, 1, out.size, stdout);
        shoal_view_release(&out);
    } else
        fprintf(stderr, "hello: %s: %s\n", shoal_strerror(rc), shoal_last_error(sh));
    shoal_disconnect(&sh);
    return rc == 0 ? 0 : 1;
}
