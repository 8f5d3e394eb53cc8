/*  harness.h: integration tests on real processes.

    A test cluster is one `shoal broker` and N `shoal worker` processes started from the
    binary named by $SHOAL_BIN (tests/CMakeLists.txt sets it), on 127.0.0.1 with ports the
    kernel picks: the broker prints the endpoints it bound on its single stdout line and the
    harness reads them from a pipe. Each worker gets a store directory and its runtime
    directory ($XDG_RUNTIME_DIR, where its executors' socket lives) under the cluster's
    temporary directory (mkdtemp in /tmp), and a 64 MiB arena by default. Workers log to
    files there; the stop prints the tail of each log (ctest shows it for failed tests).
    Every process the harness starts dies with the test process (PR_SET_PDEATHSIG).

    Ownership: everything the harness hands out (results, formatted strings, file contents)
    belongs to the cluster and is freed by h_cluster_stop(), so a test that fails half way
    through (cmocka longjmps out of it) leaks nothing. Use the cmocka group or per-test
    teardown to call h_cluster_stop().

    Processes: the test process becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so
    executors and task processes orphaned by a killed worker are re-parented to it; the
    stop sweeps and reaps them, and reports any left behind by a clean shutdown.

    No call sleeps to synchronise: waits poll a condition every few milliseconds inside a
    deadline. Deadlines are multiplied by h_scale() (3 under AddressSanitizer, or
    $SHOAL_TEST_SCALE) because instrumented processes start and run slower. */
#ifndef SHOAL_TEST_HARNESS_H_INCLUDED
#define SHOAL_TEST_HARNESS_H_INCLUDED

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#define H_MAX_WORKERS 8

typedef struct {
    pid_t pid; /*  0 when not running */
    char name[64];
    char store_dir[PATH_MAX];
    char log[PATH_MAX]; /*  its stdout and stderr */
    char arena[PATH_MAX];
} h_worker_t;

typedef struct h_alloc h_alloc_t;

typedef struct {
    char tmp[128];    /*  the cluster's temporary directory */
    char listen[256]; /*  the broker's control endpoint, as bound */
    char events[256]; /*  the broker's events endpoint, as bound */
    char broker_log[PATH_MAX];
    pid_t broker_pid;
    int broker_out; /*  read end of the broker's stdout, kept open until it is gone */
    int n_workers;
    int slots;
    char shm[32];
    char worker_args[256]; /*  more arguments for every worker, separated by spaces */
    h_worker_t workers[H_MAX_WORKERS];
    bool killed_any; /*  a process was killed by a test: orphans are expected */
    h_alloc_t *allocs;
} h_cluster_t;

typedef struct {
    char *cmd; /*  the command line, for messages */
    char *out; /*  stdout, NUL-terminated (may hold NULs inside: see out_len) */
    size_t out_len;
    char *err; /*  stderr, NUL-terminated */
    size_t err_len;
    int status;         /*  exit status; 128+N when killed by signal N; -1 when it did not
                            finish by its deadline (it was killed) or could not start */
    int64_t elapsed_ms; /*  from fork to exit */
} h_result_t;

/*  Test data: byte i of the pattern seeded by seed; size bytes of it (malloc'd: free()
    it); a check that data is exactly want bytes of it (fails the test naming the first
    byte that differs). */
uint8_t h_pat(uint64_t seed, size_t i);
uint8_t *h_pattern(uint64_t seed, size_t size);
void h_assert_pattern(const void *data, size_t size, uint64_t seed, size_t want);

#if H_WITH_CLIENT
#include <shoal.h>
/*  A libshoal connection to c's broker (shoal_disconnect it); fails the test when none
    comes within 10 s (scaled). Built for tests that link libshoal (tests/CMakeLists.txt
    defines H_WITH_CLIENT for them). */
shoal_t *h_connect(h_cluster_t *c);
#endif

/*  Deadline multiplier: $SHOAL_TEST_SCALE, else 3 under AddressSanitizer, else 1. */
int h_scale(void);
/*  The shoal binary: $SHOAL_BIN. Aborts the test program when unset. */
const char *h_bin(void);
/*  Monotonic milliseconds. */
int64_t h_now_ms(void);

/*  Starts a broker and n_workers workers with slots each and an arena of shm bytes
    ("64M"); returns when `shoal workers` lists all of them. Returns NULL after printing
    why (and cleaning up) when something does not come up within its deadline. */
h_cluster_t *h_cluster_start(int n_workers, int slots, const char *shm);
/*  h_cluster_start whose workers get more arguments (worker_args: separated by single
    spaces, no quoting; "%s" in one stands for the worker's store directory), also when
    h_start_worker restarts them. */
h_cluster_t *h_cluster_start_with(int n_workers, int slots, const char *shm,
                                  const char *worker_args);
/*  SIGTERM to every worker, then the broker; waits (deadline), SIGKILL for the slow ones
    (after printing their stacks), reaps them and every orphan re-parented to the test;
    removes the temporary directory and the workers' arenas (/dev/shm/shoal-UID-NAME*);
    frees everything the cluster owns. Prints the tail of each log. Returns 0, or -1
    after printing why: a process ignored SIGTERM or exited non-zero (under ASan: leaked),
    or processes outlived the cluster. NULL-safe; sets *c_p to NULL. */
int h_cluster_stop(h_cluster_t **c_p);

/*  cmocka fixture helpers: h_fixture_start puts a new cluster in *state (0, or -1 when it
    did not come up); h_fixture_stop stops it (h_cluster_stop's result); h_state gives it
    back to a test. */
int h_fixture_start(void **state, int n_workers, int slots, const char *shm);
int h_fixture_stop(void **state);
static inline h_cluster_t *h_state(void **state)
{
    return (h_cluster_t *)*state;
}

/*  Runs `shoal ARG...` (NULL-terminated) with SHOAL_BROKER set to the cluster's broker
    (c may be NULL: then SHOAL_BROKER is left unset), stdin from /dev/null, capturing
    stdout and stderr. Kills its process group when it overruns timeout_ms (scaled by
    h_scale()). The result belongs to c (or leaks when c is NULL: use h_result_free). */
h_result_t *h_run(h_cluster_t *c, int timeout_ms, const char *arg, ...) __attribute__((sentinel));
h_result_t *h_runv(h_cluster_t *c, int timeout_ms, const char *const *argv);
/*  Runs a /bin/sh script, like h_run. The script sees SHOAL_BROKER, SHOAL_BIN, H_TMP (the
    cluster's temporary directory) and PATH with the shoal binary's directory first. */
h_result_t *h_sh(h_cluster_t *c, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*  Frees a result not owned by a cluster. */
void h_result_free(h_result_t **r_p);
/*  stdout then stderr of r in one string (owned by c): for "the message says X" checks. */
char *h_all(h_cluster_t *c, const h_result_t *r);

/*  printf into a string owned by c. */
char *h_fmt(h_cluster_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*  Reads a whole file into a NUL-terminated string owned by c; NULL if it cannot. */
char *h_read_file(h_cluster_t *c, const char *path, size_t *size_p);
/*  Writes size bytes to path. 0 or -1. */
int h_write_file(const char *path, const void *data, size_t size);

/*  Signals worker i. For SIGKILL and SIGTERM also waits for it to exit and reaps it
    (deadline), and marks the slot as not running. 0, or -1 (not running, or it did not
    exit in time). */
int h_kill_worker(h_cluster_t *c, int i, int sig);
/*  Starts worker i again with its name and store directory (i == n_workers adds one).
    Does not wait for it to register: see h_wait_workers. 0 or -1. */
int h_start_worker(h_cluster_t *c, int i);
/*  Waits until `shoal workers` lists every running worker. 0 or -1 (deadline). */
int h_wait_workers(h_cluster_t *c, int timeout_ms);
/*  Which worker pid descends from (through /proc parent links): its index, or -1. */
int h_worker_of_pid(const h_cluster_t *c, pid_t pid);
/*  The TCP ports process pid listens on (from /proc/PID/fd and /proc/net/tcp*). Returns
    how many were stored in ports (at most max). */
int h_listen_ports(pid_t pid, int *ports, int max);

/*  The live children of pid (from /proc parent links). Returns how many were stored. */
int h_children(pid_t pid, pid_t *pids, int max);
/*  Prints where pid is (state, kernel wait channel, and every thread's stack when gdb is
    installed): for a process that hangs. */
void h_dump_stacks(pid_t pid);
/*  True when pid exists and is not a zombie (/proc/PID/stat), which kill(pid, 0) cannot
    tell: PID 1 here reaps orphans slowly. */
bool h_pid_alive(pid_t pid);
/*  Polls cond(arg) every 10 ms until it holds or timeout_ms (scaled) passes. */
bool h_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);
/*  A TCP port on 127.0.0.1 that nothing listens on right now. */
int h_free_port(void);
/*  Case-insensitive substring test. */
bool h_contains(const char *haystack, const char *needle);
/*  Counts the lines of text that are 32 lowercase hex digits (refs) and copies up to max
    of them (NUL-terminated, 33 bytes each) into refs. */
int h_parse_refs(const char *text, char (*refs)[33], int max);

/*  Fails the test with the command's output when its exit status is not want. */
#define h_assert_exit(r, want) h_assert_exit_((r), (want), __FILE__, __LINE__)
void h_assert_exit_(const h_result_t *r, int want, const char *file, int line);

#endif
