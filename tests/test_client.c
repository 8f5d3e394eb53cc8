/*  test_client.c: libshoal call by call, as a program sees it: include/shoal.h only (the
    harness helps with processes and files). Clusters are local:// ones, started by
    libshoal from the real `shoal` binary ($SHOAL_BIN, set by tests/CMakeLists.txt).

    The first group runs without a cluster: codes, names, refs, URLs, connecting to
    nothing, a local cluster that cannot start, and one that starts and stops (checked in
    /proc and /dev/shm). The second shares one local://2 cluster among its tests. */
#include "harness.h"

#include <shoal.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_SHM         "64M"
#define T_CONNECT_MS  (30000 * h_scale())
#define T_WAIT_MS     (30000 * h_scale())
#define T_MAX_PROCS   64
#define T_MAX_ARENAS  8
#define T_LOCAL_SHM   "local://2?slots=2&shm=" T_SHM
#define T_ARENA_BYTES (64ull * 1024 * 1024)

/*  ------------------------------------------------------------------------- helpers */

static shoal_t *s_sh; //  the shared cluster of the second group

static char *s_ref_text(shoal_ref_t ref, char buf[SHOAL_REF_TEXT_SIZE])
{
    return shoal_ref_format(ref, buf);
}

//  Submits an exec task; fails the test when submit fails.
static shoal_ref_t s_exec(shoal_t *sh, const char *const *argv, const shoal_ref_t *inputs,
                          size_t n_inputs)
{
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = argv};
    spec.inputs = inputs;
    spec.n_inputs = n_inputs;
    shoal_ref_t id = {0, 0};
    int rc = shoal_submit(sh, &spec, &id);
    if (rc != 0)
        fail_msg("shoal_submit: %s: %s", shoal_strerror(rc), shoal_last_error(sh));
    return id;
}

static shoal_ref_t s_sh_c(shoal_t *sh, const char *script)
{
    const char *argv[] = {"sh", "-c", script, NULL};
    return s_exec(sh, argv, NULL, 0);
}

//  The bytes of ref as a NUL-terminated string (malloc'd); fails the test on error.
static char *s_get_text(shoal_t *sh, shoal_ref_t ref, size_t *size_p)
{
    shoal_view_t view;
    int rc = shoal_get(sh, ref, T_WAIT_MS, &view);
    if (rc != 0)
        fail_msg("shoal_get: %s: %s", shoal_strerror(rc), shoal_last_error(sh));
    char *text = malloc(view.size + 1);
    assert_non_null(text);
    memcpy(text, view.data, view.size);
    text[view.size] = '\0';
    if (size_p)
        *size_p = view.size;
    shoal_view_release(&view);
    return text;
}

//  Every live descendant of pid, depth first, into pids (at most max). Returns the count.
static int s_descendants(pid_t pid, pid_t *pids, int max)
{
    pid_t children[T_MAX_PROCS];
    int n = h_children(pid, children, T_MAX_PROCS), count = 0;
    for (int i = 0; i < n && count < max; i++) {
        pids[count++] = children[i];
        count += s_descendants(children[i], pids + count, max - count);
    }
    return count;
}

static char *s_cmdline(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    size_t len = 0;
    char *text = h_read_file(NULL, path, &len);
    if (!text)
        return NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\0')
            text[i] = ' ';
    return text;
}

//  Adds the /dev/shm arenas process pid maps to arenas (deduplicated).
static int s_arenas_of(pid_t pid, char (*arenas)[256], int n, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *maps = h_read_file(NULL, path, NULL);
    if (!maps)
        return n;
    for (char *line = strtok(maps, "\n"); line; line = strtok(NULL, "\n")) {
        char *at = strstr(line, "/dev/shm/shoal-");
        if (!at)
            continue;
        char *end = strstr(at, " (deleted)");
        if (end)
            *end = '\0';
        size_t len = strlen(at);
        if (len < 6 || strcmp(at + len - 6, ".arena") != 0)
            continue; //  the table of pins next to it is not an arena
        bool seen = false;
        for (int i = 0; i < n; i++)
            seen |= strcmp(arenas[i], at) == 0;
        if (!seen && n < max)
            snprintf(arenas[n++], 256, "%s", at);
    }
    free(maps);
    return n;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

//  A shell script at dir/name, executable.
static void s_write_script(const char *path, const char *body)
{
    assert_int_equal(h_write_file(path, body, strlen(body)), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

typedef struct {
    char *saved; //  $SHOAL_BIN before the test
    char dir[128];
} s_env_t;

static void s_env_save(s_env_t *env)
{
    const char *bin = getenv("SHOAL_BIN");
    env->saved = bin ? strdup(bin) : NULL;
    snprintf(env->dir, sizeof env->dir, "/tmp/shoal-test-client-XXXXXX");
    assert_non_null(mkdtemp(env->dir));
}

static void s_env_restore(s_env_t *env)
{
    if (env->saved)
        setenv("SHOAL_BIN", env->saved, 1);
    else
        unsetenv("SHOAL_BIN");
    free(env->saved);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", env->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", env->dir);
}

/*  ------------------------------------------------------- without a cluster */

static void test_strerror_names_every_code(void **state)
{
    static const struct {
        int code;
        const char *text;
    } codes[] = {
#define T_CODE(name, value, text) {name, text},
        SHOAL_ERRORS(T_CODE)
#undef T_CODE
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *text = shoal_strerror(codes[i].code);
        assert_non_null(text);
        assert_string_equal(text, codes[i].text);
        assert_string_not_equal(text, "unknown error");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i].code, codes[j].code);
            assert_string_not_equal(text, shoal_strerror(codes[j].code));
        }
    }
    assert_non_null(shoal_strerror(SHOAL_OK));
    assert_string_not_equal(shoal_strerror(SHOAL_OK), "unknown error");
    assert_string_equal(shoal_strerror(1), "unknown error");
    assert_string_equal(shoal_strerror(-9999), "unknown error");
}

static void test_state_names_cover_every_state(void **state)
{
    static const char *names[] = {"unknown", "waiting", "ready",    "running",
                                  "done",    "failed",  "canceled", "lost"};
    for (int s = SHOAL_STATUS_UNKNOWN; s <= SHOAL_STATUS_LOST; s++)
        assert_string_equal(shoal_state_name(s), names[s]);
    assert_string_equal(shoal_state_name(-1), "invalid");
    assert_string_equal(shoal_state_name(99), "invalid");
}

static void test_refs_go_to_text_and_back(void **state)
{
    shoal_ref_t ref = shoal_ref_make(0x0123456789abcdefull, 0x0000fedcba98ull, 7);
    char text[SHOAL_REF_TEXT_SIZE];
    assert_ptr_equal(shoal_ref_format(ref, text), text);
    assert_string_equal(text, "0123456789abcdef0000fedcba980007");
    shoal_ref_t back;
    assert_int_equal(shoal_ref_parse(text, &back), 0);
    assert_true(shoal_ref_equal(ref, back));
    assert_int_equal(shoal_ref_index(back), 7);
    assert_true(shoal_ref_equal(shoal_ref_task(back), shoal_ref_output(ref, 0)));
    assert_int_equal(shoal_ref_index(shoal_ref_output(ref, SHOAL_REF_LOG_INDEX)), 0xffff);

    //  Either case in, lowercase out.
    assert_int_equal(shoal_ref_parse("0123456789ABCDEF0000FEDCBA980007", &back), 0);
    assert_true(shoal_ref_equal(ref, back));
    shoal_ref_t zero = {0, 0};
    assert_true(shoal_ref_is_null(zero));
    assert_string_equal(shoal_ref_format(zero, text), "00000000000000000000000000000000");

    //  Exactly 32 hex digits, nothing else; a failed parse leaves *ref alone.
    const char *bad[] = {"",
                         "0123456789abcdef0000fedcba98000",
                         "0123456789abcdef0000fedcba9800077",
                         "0123456789abcdef0000fedcba98000g",
                         " 123456789abcdef0000fedcba980007",
                         "0123456789abcdef-000fedcba980007"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shoal_ref_t keep = {1, 2};
        assert_int_equal(shoal_ref_parse(bad[i], &keep), SHOAL_EINVAL);
        assert_true(keep.hi == 1 && keep.lo == 2);
    }
    assert_int_equal(shoal_ref_parse(NULL, &back), SHOAL_EINVAL);
    assert_int_equal(shoal_ref_parse(text, NULL), SHOAL_EINVAL);
}

static void test_connect_to_nothing_is_unreachable_within_the_timeout(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", h_free_port());
    shoal_t *sh = (shoal_t *)&sh; //  must stay untouched
    int64_t t0 = h_now_ms();
    assert_int_equal(shoal_connect(url, 300, &sh), SHOAL_EUNREACH);
    int64_t elapsed = h_now_ms() - t0;
    assert_true(elapsed >= 290);
    assert_true(elapsed < 300 + 1000 * h_scale());
    assert_ptr_equal(sh, (shoal_t *)&sh);
    if (!h_contains(shoal_last_error(NULL), url))
        fail_msg("the message does not name %s: %s", url, shoal_last_error(NULL));
}

static void test_bad_urls_are_invalid_and_start_nothing(void **state)
{
    const char *bad[] = {
        "",
        "broker",
        "http://127.0.0.1:7400",
        "slurm://?nodes=2",
        "tcp://",
        "tcp://127.0.0.1",
        "tcp://:7400",
        "tcp://127.0.0.1:port",
        "local://0",
        "local://257",
        "local://99999999999999999999",
        "local://x",
        "local://2x",
        "local://2?bogus=1",
        "local://2?slots=0",
        "local://2?slots=many",
        "local://2?shm=lots",
        "local://2?shm=0",
        "local://2?shm",
        "local://2?=5",
        "local://2?log=",
    };
    int64_t t0 = h_now_ms();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shoal_t *sh = NULL;
        int rc = shoal_connect(bad[i], 5000, &sh);
        if (rc != SHOAL_EINVAL)
            fail_msg("%s: %s (%s), expected SHOAL_EINVAL", bad[i], shoal_strerror(rc),
                     shoal_last_error(NULL));
        assert_null(sh);
        assert_true(strlen(shoal_last_error(NULL)) > 0);
    }
    assert_true(h_now_ms() - t0 < 10000 * h_scale());
    assert_int_equal(shoal_connect(NULL, 100, NULL), SHOAL_EINVAL);
    shoal_t *sh = NULL;
    assert_int_equal(shoal_connect(NULL, 100, &sh), SHOAL_EINVAL);
    assert_int_equal(shoal_connect("local://1", 100, NULL), SHOAL_EINVAL);
    //  Named options say what is wrong.
    assert_int_equal(shoal_connect("local://2?bogus=1", 100, &sh), SHOAL_EINVAL);
    assert_true(h_contains(shoal_last_error(NULL), "bogus"));
    pid_t kids[4];
    assert_int_equal(h_children(getpid(), kids, 4), 0);
}

static void test_local_without_a_binary_says_where_it_looked(void **state)
{
    s_env_t env;
    s_env_save(&env);
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-shoal", env.dir);
    setenv("SHOAL_BIN", missing, 1);
    shoal_t *sh = NULL;
    int rc = shoal_connect("local://1", 5000, &sh);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", shoal_last_error(NULL));
    s_env_restore(&env);
    assert_int_equal(rc, SHOAL_ENOTFOUND);
    assert_null(sh);
    if (!h_contains(msg, missing))
        fail_msg("the message does not name %s: %s", missing, msg);
}

static void test_local_whose_up_dies_quotes_its_stderr(void **state)
{
    s_env_t env;
    s_env_save(&env);
    char script[256];
    snprintf(script, sizeof script, "%s/shoal", env.dir);
    s_write_script(script, "#!/bin/sh\n"
                           "echo \"not a cluster: $*\" >&2\n"
                           "echo 'broken on purpose' >&2\n"
                           "exit 3\n");
    setenv("SHOAL_BIN", script, 1);
    shoal_t *sh = NULL;
    int rc = shoal_connect("local://3?slots=2", T_CONNECT_MS, &sh);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", shoal_last_error(NULL));
    s_env_restore(&env);
    assert_int_equal(rc, SHOAL_EIO);
    assert_null(sh);
    //  How it ended, the end of its stderr, and the command line it was given.
    if (!h_contains(msg, "exited with status 3") || !h_contains(msg, "broken on purpose") ||
        !h_contains(msg, "up --listen tcp://127.0.0.1:*") || !h_contains(msg, "--workers 3") ||
        !h_contains(msg, "--slots 2"))
        fail_msg("unexpected message: %s", msg);
    pid_t kids[4];
    assert_int_equal(h_children(getpid(), kids, 4), 0);
}

static void test_local_not_ready_in_time_times_out_and_is_stopped(void **state)
{
    s_env_t env;
    s_env_save(&env);
    char script[256];
    snprintf(script, sizeof script, "%s/shoal", env.dir);
    s_write_script(script, "#!/bin/sh\n"
                           "echo 'starting slowly' >&2\n"
                           "exec sleep 60\n");
    setenv("SHOAL_BIN", script, 1);
    shoal_t *sh = NULL;
    int64_t t0 = h_now_ms();
    int rc = shoal_connect("local://1", 500, &sh);
    int64_t elapsed = h_now_ms() - t0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", shoal_last_error(NULL));
    s_env_restore(&env);
    assert_int_equal(rc, SHOAL_ETIMEDOUT);
    assert_null(sh);
    assert_true(elapsed >= 490);
    assert_true(elapsed < 500 + 2000 * h_scale());
    if (!h_contains(msg, "not ready") || !h_contains(msg, "starting slowly"))
        fail_msg("unexpected message: %s", msg);
    pid_t kids[4];
    assert_int_equal(h_children(getpid(), kids, 4), 0);
}

static void test_local_starts_and_stops_a_cluster_cleanly(void **state)
{
    shoal_t *sh = NULL;
    int64_t t0 = h_now_ms();
    int rc = shoal_connect(T_LOCAL_SHM, T_CONNECT_MS, &sh);
    if (rc != 0)
        fail_msg("local://: %s: %s", shoal_strerror(rc), shoal_last_error(NULL));
    int64_t started_ms = h_now_ms() - t0;
    const char *broker = shoal_broker_endpoint(sh);
    assert_true(strncmp(broker, "tcp://127.0.0.1:", 16) == 0);
    assert_true(strncmp(shoal_events_endpoint(sh), "tcp://127.0.0.1:", 16) == 0);
    assert_string_not_equal(broker, shoal_events_endpoint(sh));

    //  Every worker has joined by the time shoal_connect returns.
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(shoal_workers(sh, &list, &n, T_WAIT_MS), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(list[i].slots, 2);
        assert_true(list[i].store_capacity == T_ARENA_BYTES);
        assert_true(strncmp(list[i].endpoint, "tcp://", 6) == 0);
    }
    assert_string_not_equal(list[0].name, list[1].name);
    shoal_workers_free(&list, n);
    assert_null(list);

    //  It works: a task runs.
    shoal_ref_t id = s_sh_c(sh, "echo local");
    char *out = s_get_text(sh, id, NULL);
    assert_string_equal(out, "local\n");
    free(out);

    //  The processes: `shoal up` (our only child), its broker and workers, their
    //  executors; the workers' arenas in /dev/shm.
    pid_t kids[4];
    assert_int_equal(h_children(getpid(), kids, 4), 1);
    char *up = s_cmdline(kids[0]);
    assert_non_null(up);
    assert_true(h_contains(up, " up --listen tcp://127.0.0.1:* --events tcp://127.0.0.1:*"));
    free(up);
    pid_t procs[T_MAX_PROCS];
    int n_procs = s_descendants(getpid(), procs, T_MAX_PROCS);
    char arenas[T_MAX_ARENAS][256];
    int n_arenas = 0, n_workers = 0, n_brokers = 0;
    for (int i = 0; i < n_procs; i++) {
        char *cmd = s_cmdline(procs[i]);
        if (cmd && strstr(cmd, " worker --broker ")) {
            n_workers++;
            n_arenas = s_arenas_of(procs[i], arenas, n_arenas, T_MAX_ARENAS);
        }
        n_brokers += cmd && strstr(cmd, " broker --listen ") != NULL;
        free(cmd);
    }
    assert_int_equal(n_workers, 2);
    assert_int_equal(n_brokers, 1);
    assert_int_equal(n_arenas, 2);
    for (int i = 0; i < n_arenas; i++)
        assert_true(s_exists(arenas[i]));

    //  Disconnect stops them all, and removes the arenas.
    t0 = h_now_ms();
    shoal_disconnect(&sh);
    int64_t stopped_ms = h_now_ms() - t0;
    assert_null(sh);
    for (int i = 0; i < n_procs; i++)
        if (h_pid_alive(procs[i]))
            fail_msg("pid %d outlived the local cluster", (int)procs[i]);
    assert_int_equal(h_children(getpid(), kids, 4), 0);
    for (int i = 0; i < n_arenas; i++)
        if (s_exists(arenas[i]))
            fail_msg("%s outlived the local cluster", arenas[i]);
    print_message("local://2: started in %lld ms, stopped in %lld ms\n", (long long)started_ms,
                  (long long)stopped_ms);
    shoal_disconnect(&sh); //  NULL-safe
    shoal_disconnect(NULL);
}

typedef struct {
    pid_t program;
    pid_t procs[T_MAX_PROCS];
    int n_procs;
} s_tree_t;

//  The program's cluster is up: `shoal up`, a broker, a worker with its executor.
static bool s_cluster_seen(void *arg)
{
    s_tree_t *t = arg;
    t->n_procs = s_descendants(t->program, t->procs, T_MAX_PROCS);
    int workers = 0;
    for (int i = 0; i < t->n_procs; i++) {
        char *cmd = s_cmdline(t->procs[i]);
        workers += cmd && strstr(cmd, " worker --broker ") != NULL;
        free(cmd);
    }
    return workers == 1 && t->n_procs >= 4;
}

static bool s_tree_gone(void *arg)
{
    s_tree_t *t = arg;
    for (int i = 0; i < t->n_procs; i++)
        if (h_pid_alive(t->procs[i]))
            return false;
    return true;
}

static void test_local_cluster_dies_with_its_program(void **state)
{
    //  A program killed outright never disconnects: PR_SET_PDEATHSIG stops its cluster,
    //  and `shoal up` still removes the arenas. No libzmq thread runs here between tests
    //  (every handle was disconnected), so the child may use libshoal after fork.
    s_tree_t tree = {0};
    tree.program = fork();
    assert_true(tree.program >= 0);
    if (tree.program == 0) {
        shoal_t *sh = NULL;
        if (shoal_connect("local://1?shm=" T_SHM, T_CONNECT_MS, &sh) != 0)
            _exit(2);
        for (;;)
            pause();
    }
    bool seen = h_wait_until(s_cluster_seen, &tree, T_CONNECT_MS);
    char arenas[T_MAX_ARENAS][256];
    int n_arenas = 0;
    for (int i = 0; i < tree.n_procs; i++)
        n_arenas = s_arenas_of(tree.procs[i], arenas, n_arenas, T_MAX_ARENAS);
    kill(tree.program, SIGKILL);
    int status;
    assert_int_equal(waitpid(tree.program, &status, 0), tree.program);
    assert_true(seen);
    assert_int_equal(n_arenas, 1);
    if (!h_wait_until(s_tree_gone, &tree, 20000)) {
        //  `shoal up` first (it stops the rest and removes the arenas), then any left.
        for (int i = 0; i < tree.n_procs; i++)
            kill(tree.procs[i], SIGTERM);
        h_wait_until(s_tree_gone, &tree, 20000);
        fail_msg("the cluster outlived its program");
    }
    for (int i = 0; i < n_arenas; i++)
        if (s_exists(arenas[i]))
            fail_msg("%s outlived the cluster", arenas[i]);
}

static void test_local_cluster_log_goes_to_the_file_named(void **state)
{
    s_env_t env;
    s_env_save(&env);
    char url[512], log[256];
    snprintf(log, sizeof log, "%s/cluster.log", env.dir);
    snprintf(url, sizeof url, "local://1?shm=" T_SHM "&log=%s", log);
    shoal_t *sh = NULL;
    int rc = shoal_connect(url, T_CONNECT_MS, &sh);
    if (rc != 0) {
        s_env_restore(&env);
        fail_msg("%s: %s: %s", url, shoal_strerror(rc), shoal_last_error(NULL));
    }
    shoal_disconnect(&sh);
    char *text = h_read_file(NULL, log, NULL);
    s_env_restore(&env);
    assert_non_null(text);
    bool joined = h_contains(text, "joined");
    free(text);
    assert_true(joined);
}

/*  ---------------------------------------------------- on a shared local://2 */

static int s_cluster_up(void **state)
{
    int rc = shoal_connect(T_LOCAL_SHM, T_CONNECT_MS, &s_sh);
    if (rc != 0) {
        fprintf(stderr, "local://: %s: %s\n", shoal_strerror(rc), shoal_last_error(NULL));
        return -1;
    }
    return 0;
}

static int s_cluster_down(void **state)
{
    shoal_disconnect(&s_sh);
    pid_t kids[4];
    int n = h_children(getpid(), kids, 4);
    if (n != 0) {
        fprintf(stderr, "%d processes outlived the cluster\n", n);
        return -1;
    }
    return 0;
}

static void test_submit_gives_refs_at_once_and_flush_acknowledges(void **state)
{
    const char *argv[] = {"echo", "one", NULL};
    shoal_ref_t a = s_exec(s_sh, argv, NULL, 0);
    shoal_ref_t b = s_exec(s_sh, argv, NULL, 0);
    assert_false(shoal_ref_is_null(a));
    assert_int_equal(shoal_ref_index(a), 0);
    //  Refs of one client share its id and count up.
    assert_true(a.hi == b.hi);
    assert_true((b.lo >> 16) == (a.lo >> 16) + 1);
    //  Nothing is final yet as far as this client knows.
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, a, &st), SHOAL_EAGAIN);
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
    shoal_ref_t both[] = {a, b};
    assert_int_equal(shoal_wait(s_sh, both, 2, false, T_WAIT_MS), 0);
    assert_int_equal(shoal_status(s_sh, a, &st), 0);
    assert_true(shoal_ref_equal(st.ref, a));
    assert_int_equal(st.state, SHOAL_STATUS_DONE);
    assert_int_equal(st.code, 0);
    assert_int_equal(st.exit_code, 0);
    assert_true(st.size == 4);
    //  Waiting on nothing, and again on what is final, costs nothing.
    assert_int_equal(shoal_wait(s_sh, NULL, 0, false, 0), 0);
    assert_int_equal(shoal_wait(s_sh, both, 2, false, 0), 0);
}

static void test_a_dag_passes_outputs_as_inputs(void **state)
{
    //  Two outputs: stdout and the file at $SHOAL_OUTPUT_1.
    const char *two[] = {"sh", "-c", "seq 1 10; echo side > \"$SHOAL_OUTPUT_1\"", NULL};
    shoal_task_spec_t spec = {.kind = SHOAL_TASK_EXEC, .argv = two, .n_outputs = 2};
    shoal_ref_t a;
    assert_int_equal(shoal_submit(s_sh, &spec, &a), 0);
    shoal_ref_t inputs[] = {shoal_ref_output(a, 0), shoal_ref_output(a, 1)};
    const char *sum[] = {"sh", "-c",
                         "awk '{s+=$1} END {printf \"%d \", s}' \"$SHOAL_INPUT_0\"; "
                         "cat \"$SHOAL_INPUT_1\"",
                         NULL};
    shoal_ref_t b = s_exec(s_sh, sum, inputs, 2);
    char *out = s_get_text(s_sh, b, NULL);
    assert_string_equal(out, "55 side\n");
    free(out);
    out = s_get_text(s_sh, shoal_ref_output(a, 1), NULL);
    assert_string_equal(out, "side\n");
    free(out);
}

static void test_get_of_more_than_64_KiB_comes_from_the_worker(void **state)
{
    //  seq 1 400000 is 2.7 MB: beyond the inline limit and three 1 MiB chunks.
    shoal_ref_t id = s_sh_c(s_sh, "seq 1 400000");
    size_t size = 0;
    char *out = s_get_text(s_sh, id, &size);
    size_t cap = 3 * 1024 * 1024, len = 0;
    char *want = malloc(cap);
    assert_non_null(want);
    for (int i = 1; i <= 400000; i++)
        len += (size_t)snprintf(want + len, cap - len, "%d\n", i);
    assert_true(size == len);
    assert_true(size > 1024 * 1024 * 2);
    assert_memory_equal(out, want, len);
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, id, &st), 0);
    assert_true(st.size == len);
    free(want);
    free(out);

    //  Just above the inline limit.
    id = s_sh_c(s_sh, "head -c 70000 /dev/zero | tr '\\0' x");
    out = s_get_text(s_sh, id, &size);
    assert_true(size == 70000);
    assert_true(out[0] == 'x' && out[69999] == 'x');
    free(out);
}

static void test_an_empty_output_is_an_empty_view(void **state)
{
    const char *argv[] = {"true", NULL};
    shoal_ref_t id = s_exec(s_sh, argv, NULL, 0);
    shoal_view_t view;
    assert_int_equal(shoal_get(s_sh, id, T_WAIT_MS, &view), 0);
    assert_non_null(view.data);
    assert_true(view.size == 0);
    shoal_view_release(&view);
    assert_null(view.data);
    shoal_view_release(&view); //  twice is harmless
    shoal_view_release(NULL);
}

static void test_wait_times_out_in_about_the_time_given(void **state)
{
    shoal_ref_t slow = s_sh_c(s_sh, "sleep 60");
    int64_t t0 = h_now_ms();
    assert_int_equal(shoal_wait(s_sh, &slow, 1, false, 300), SHOAL_ETIMEDOUT);
    int64_t elapsed = h_now_ms() - t0;
    assert_true(elapsed >= 290);
    assert_true(elapsed < 300 + 1000 * h_scale());
    assert_true(h_contains(shoal_last_error(s_sh), "1 of 1"));
    //  shoal_get too, and zero means "now".
    shoal_view_t view = {NULL, 0, NULL};
    t0 = h_now_ms();
    assert_int_equal(shoal_get(s_sh, slow, 200, &view), SHOAL_ETIMEDOUT);
    assert_true(h_now_ms() - t0 < 200 + 1000 * h_scale());
    assert_null(view.data);
    assert_int_equal(shoal_wait(s_sh, &slow, 1, false, 0), SHOAL_ETIMEDOUT);
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, slow, &st), SHOAL_EAGAIN);
    assert_true(shoal_cancel(s_sh, &slow, 1, T_WAIT_MS) >= 1);
    assert_int_equal(shoal_wait(s_sh, &slow, 1, false, T_WAIT_MS), SHOAL_ECANCELED);
}

static void test_wait_any_returns_when_one_is_done(void **state)
{
    shoal_ref_t refs[2];
    refs[0] = s_sh_c(s_sh, "sleep 60");
    refs[1] = s_sh_c(s_sh, "echo quick");
    int64_t t0 = h_now_ms();
    assert_int_equal(shoal_wait(s_sh, refs, 2, true, T_WAIT_MS), 0);
    assert_true(h_now_ms() - t0 < 20000);
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, refs[1], &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_DONE);
    assert_int_equal(shoal_status(s_sh, refs[0], &st), SHOAL_EAGAIN);
    assert_int_equal(shoal_cancel(s_sh, refs, 1, T_WAIT_MS), 1);
}

static void test_failures_carry_their_reason(void **state)
{
    char text[SHOAL_REF_TEXT_SIZE];
    //  A command that fails: its exit status and its stderr.
    shoal_ref_t boom = s_sh_c(s_sh, "echo boom >&2; exit 3");
    assert_int_equal(shoal_wait(s_sh, &boom, 1, false, T_WAIT_MS), SHOAL_ETASK);
    assert_true(h_contains(shoal_last_error(s_sh), s_ref_text(boom, text)));
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, boom, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_FAILED);
    assert_int_equal(st.code, SHOAL_ETASK);
    assert_int_equal(st.exit_code, 3);
    assert_non_null(st.error);
    if (!h_contains(st.error, "boom"))
        fail_msg("the reason lacks the stderr: %s", st.error);
    //  Its log is an object.
    char *log = s_get_text(s_sh, shoal_ref_output(boom, SHOAL_REF_LOG_INDEX), NULL);
    assert_string_equal(log, "boom\n");
    free(log);
    //  shoal_get of a failed ref fails with the same code.
    shoal_view_t view;
    assert_int_equal(shoal_get(s_sh, boom, T_WAIT_MS, &view), SHOAL_ETASK);

    //  A task whose input failed fails at once, naming the input.
    const char *cat[] = {"cat", NULL};
    shoal_ref_t dep = s_exec(s_sh, cat, &boom, 1);
    assert_int_equal(shoal_wait(s_sh, &dep, 1, false, T_WAIT_MS), SHOAL_ETASK);
    assert_int_equal(shoal_status(s_sh, dep, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_FAILED);
    if (!st.error || !h_contains(st.error, s_ref_text(boom, text)))
        fail_msg("the reason does not name the input %s: %s", text, st.error);

    //  Killed by a signal: -N.
    shoal_ref_t killed = s_sh_c(s_sh, "kill -KILL $$");
    assert_int_equal(shoal_wait(s_sh, &killed, 1, false, T_WAIT_MS), SHOAL_ETASK);
    assert_int_equal(shoal_status(s_sh, killed, &st), 0);
    assert_int_equal(st.exit_code, -SIGKILL);

    //  A command that does not exist.
    const char *missing[] = {"/nonexistent/shoal-test-command", NULL};
    shoal_ref_t nf = s_exec(s_sh, missing, NULL, 0);
    assert_int_equal(shoal_wait(s_sh, &nf, 1, false, T_WAIT_MS), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_status(s_sh, nf, &st), 0);
    assert_int_equal(st.code, SHOAL_ENOTFOUND);

    //  All-mode waits for every ref and reports the first failure in the order given.
    const char *ok[] = {"true", NULL};
    shoal_ref_t good = s_exec(s_sh, ok, NULL, 0);
    shoal_ref_t mixed[] = {good, nf, boom};
    assert_int_equal(shoal_wait(s_sh, mixed, 3, false, T_WAIT_MS), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_status(s_sh, good, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_DONE);
    //  Any-mode succeeds on the one that did.
    assert_int_equal(shoal_wait(s_sh, mixed, 3, true, T_WAIT_MS), 0);

    //  A ref nobody submitted is unknown: final, not found.
    shoal_ref_t nobody = shoal_ref_make(0x5eed5eed5eed5eedull, 42, 0);
    assert_int_equal(shoal_wait(s_sh, &nobody, 1, false, T_WAIT_MS), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_status(s_sh, nobody, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_UNKNOWN);
}

static void test_cancel_stops_a_task_and_its_dependents(void **state)
{
    shoal_ref_t slow = s_sh_c(s_sh, "sleep 60");
    const char *cat[] = {"cat", NULL};
    shoal_ref_t dep = s_exec(s_sh, cat, &slow, 1);
    int64_t t0 = h_now_ms();
    int n = shoal_cancel(s_sh, &slow, 1, T_WAIT_MS);
    assert_true(n >= 1);
    shoal_ref_t both[] = {slow, dep};
    assert_int_equal(shoal_wait(s_sh, both, 2, false, T_WAIT_MS), SHOAL_ECANCELED);
    assert_true(h_now_ms() - t0 < 20000);
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, slow, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_CANCELED);
    assert_int_equal(st.code, SHOAL_ECANCELED);
    assert_int_equal(shoal_status(s_sh, dep, &st), 0);
    assert_true(st.state == SHOAL_STATUS_CANCELED || st.state == SHOAL_STATUS_FAILED);

    //  Finished tasks are left alone.
    shoal_ref_t done = s_sh_c(s_sh, "true");
    assert_int_equal(shoal_wait(s_sh, &done, 1, false, T_WAIT_MS), 0);
    assert_int_equal(shoal_cancel(s_sh, &done, 1, T_WAIT_MS), 0);
    assert_int_equal(shoal_status(s_sh, done, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_DONE);
    assert_int_equal(shoal_cancel(s_sh, NULL, 0, T_WAIT_MS), 0);
    assert_int_equal(shoal_cancel(s_sh, NULL, 1, T_WAIT_MS), SHOAL_EINVAL);
}

static void test_remove_forgets_objects(void **state)
{
    shoal_ref_t id = s_sh_c(s_sh, "echo keep me not");
    assert_int_equal(shoal_wait(s_sh, &id, 1, false, T_WAIT_MS), 0);
    assert_int_equal(shoal_remove(s_sh, &id, 1, T_WAIT_MS), 1);
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, id, &st), SHOAL_EAGAIN);
    shoal_view_t view;
    assert_int_equal(shoal_get(s_sh, id, T_WAIT_MS, &view), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_remove(s_sh, NULL, 0, T_WAIT_MS), 0);
    assert_int_equal(shoal_remove(s_sh, NULL, 1, T_WAIT_MS), SHOAL_EINVAL);
}

static void test_workers_lists_the_cluster(void **state)
{
    shoal_worker_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(shoal_workers(s_sh, &list, &n, T_WAIT_MS), 0);
    assert_int_equal(n, 2);
    uint64_t done = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(strlen(list[i].name) > 0);
        assert_true(strlen(list[i].host) > 0);
        assert_int_equal(list[i].slots, 2);
        assert_true(list[i].store_capacity == T_ARENA_BYTES);
        assert_true(list[i].store_bytes <= list[i].store_capacity);
        done += list[i].done;
    }
    assert_true(done > 0); //  earlier tests ran tasks here
    shoal_workers_free(&list, n);
    assert_null(list);
    shoal_workers_free(NULL, 0);
    assert_int_equal(shoal_workers(s_sh, NULL, &n, T_WAIT_MS), SHOAL_EINVAL);
}

static void test_submit_refuses_bad_specs(void **state)
{
    shoal_ref_t id = shoal_ref_make(9, 9, 9), keep = id;
    const char *empty[] = {NULL};
    const char *blank[] = {"", NULL};
    const char *echo[] = {"echo", NULL};
    shoal_task_spec_t bad[] = {
        {.kind = 7, .argv = echo},
        {.kind = SHOAL_TASK_EXEC},
        {.kind = SHOAL_TASK_EXEC, .argv = empty},
        {.kind = SHOAL_TASK_EXEC, .argv = blank},
        {.kind = SHOAL_TASK_FN},
        {.kind = SHOAL_TASK_FN, .fn = "nocolon"},
        {.kind = SHOAL_TASK_FN, .fn = ":symbol"},
        {.kind = SHOAL_TASK_FN, .fn = "lib.so:"},
        {.kind = SHOAL_TASK_EXEC, .argv = echo, .n_outputs = SHOAL_MAX_OUTPUTS + 1},
        {.kind = SHOAL_TASK_EXEC, .argv = echo, .n_inputs = 1},
        {.kind = SHOAL_TASK_FN, .fn = "lib.so:f", .arg_size = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = shoal_submit(s_sh, &bad[i], &id);
        if (rc != SHOAL_EINVAL)
            fail_msg("bad spec %zu: %s", i, shoal_strerror(rc));
        assert_true(shoal_ref_equal(id, keep));
        assert_true(strlen(shoal_last_error(s_sh)) > 0);
    }
    assert_int_equal(shoal_submit(s_sh, NULL, &id), SHOAL_EINVAL);
    assert_int_equal(shoal_submit(s_sh, &(shoal_task_spec_t){.argv = echo}, NULL), SHOAL_EINVAL);
    assert_int_equal(shoal_submit(NULL, &(shoal_task_spec_t){.argv = echo}, &id), SHOAL_EINVAL);

    //  A task that cannot fit in one message (64 MiB).
    size_t big = 65u * 1024 * 1024;
    void *arg = malloc(big);
    assert_non_null(arg);
    shoal_task_spec_t huge = {.kind = SHOAL_TASK_FN, .fn = "lib.so:f", .arg = arg, .arg_size = big};
    assert_int_equal(shoal_submit(s_sh, &huge, &id), SHOAL_ETOOBIG);
    free(arg);
    assert_true(shoal_ref_equal(id, keep));
    //  Nothing of the above reached the broker: a flush has nothing refused to report.
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
}

static void test_a_batch_the_broker_refuses_is_reported_by_flush(void **state)
{
    //  A task that reads its own output passes the client's checks but not the broker's.
    //  Refs count up per client, so the next task's id is known in advance.
    const char *echo[] = {"echo", NULL};
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
    shoal_ref_t before = s_exec(s_sh, echo, NULL, 0);
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
    shoal_ref_t next = shoal_ref_make(before.hi, (before.lo >> 16) + 1, 0);
    shoal_ref_t self_ref = s_exec(s_sh, echo, &next, 1);
    assert_true(shoal_ref_equal(self_ref, next));
    int rc = shoal_flush(s_sh, T_WAIT_MS);
    assert_true(rc < 0);
    char text[SHOAL_REF_TEXT_SIZE];
    if (!h_contains(shoal_last_error(s_sh), s_ref_text(next, text)))
        fail_msg("the message does not name the task: %s", shoal_last_error(s_sh));
    //  Reported once; waiting on the refused task gives the broker's reason.
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
    assert_int_equal(shoal_wait(s_sh, &self_ref, 1, false, T_WAIT_MS), rc);
    assert_true(h_contains(shoal_last_error(s_sh), "refused"));
    shoal_status_t st;
    assert_int_equal(shoal_status(s_sh, self_ref, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_FAILED);
}

static void test_calls_refuse_null_arguments(void **state)
{
    shoal_ref_t ref = shoal_ref_make(1, 1, 0);
    shoal_view_t view;
    shoal_status_t st;
    assert_int_equal(shoal_flush(NULL, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_wait(NULL, &ref, 1, false, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_wait(s_sh, NULL, 1, false, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_status(NULL, ref, &st), SHOAL_EINVAL);
    assert_int_equal(shoal_status(s_sh, ref, NULL), SHOAL_EINVAL);
    assert_int_equal(shoal_get(NULL, ref, 0, &view), SHOAL_EINVAL);
    assert_int_equal(shoal_get(s_sh, ref, 0, NULL), SHOAL_EINVAL);
    assert_int_equal(shoal_cancel(NULL, &ref, 1, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_remove(NULL, &ref, 1, 0), SHOAL_EINVAL);
    shoal_worker_info_t *list;
    size_t n;
    assert_int_equal(shoal_workers(NULL, &list, &n, 0), SHOAL_EINVAL);
    assert_string_equal(shoal_events_endpoint(NULL), "");
    assert_string_equal(shoal_broker_endpoint(NULL), "");
    assert_non_null(shoal_last_error(s_sh));
}

static void test_a_second_client_reaches_the_local_cluster(void **state)
{
    //  The address of a local cluster serves other clients too; a view outlives its
    //  handle.
    shoal_t *other = NULL;
    assert_int_equal(shoal_connect(shoal_broker_endpoint(s_sh), T_CONNECT_MS, &other), 0);
    assert_string_equal(shoal_broker_endpoint(other), shoal_broker_endpoint(s_sh));
    shoal_ref_t id = s_sh_c(s_sh, "seq 1 50000"); //  288,894 bytes: fetched from a worker
    assert_int_equal(shoal_flush(s_sh, T_WAIT_MS), 0);
    shoal_view_t view;
    assert_int_equal(shoal_get(other, id, T_WAIT_MS, &view), 0);
    shoal_disconnect(&other);
    assert_null(other);
    assert_true(view.size == 288894);
    assert_memory_equal(view.data, "1\n2\n3\n", 6);
    shoal_view_release(&view);
}

static void test_disconnect_releases_what_the_client_owns_unless_it_keeps_it(void **state)
{
    const char *url = shoal_broker_endpoint(s_sh);
    //  A client that does not keep: its finished result is dropped and its running task
    //  canceled when it disconnects.
    shoal_t *a = NULL;
    assert_int_equal(shoal_connect(url, T_CONNECT_MS, &a), 0);
    shoal_ref_t done = s_sh_c(a, "echo kept?");
    shoal_ref_t running = s_sh_c(a, "sleep 30");
    assert_int_equal(shoal_wait(a, &done, 1, false, T_WAIT_MS), 0);
    shoal_disconnect(&a);
    shoal_status_t st;
    assert_int_equal(shoal_wait(s_sh, &done, 1, false, T_WAIT_MS), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_status(s_sh, done, &st), 0);
    assert_int_equal(st.state, SHOAL_STATUS_UNKNOWN);
    //  The sleep is gone too (canceled and forgotten), long before its 30 s.
    assert_int_equal(shoal_wait(s_sh, &running, 1, false, 5000 * h_scale()), SHOAL_ENOTFOUND);

    //  A client that keeps: its result outlives it.
    shoal_t *b = NULL;
    assert_int_equal(shoal_connect(url, T_CONNECT_MS, &b), 0);
    shoal_keep(b, true);
    shoal_ref_t kept = s_sh_c(b, "echo kept");
    assert_int_equal(shoal_wait(b, &kept, 1, false, T_WAIT_MS), 0);
    shoal_disconnect(&b);
    char *text = s_get_text(s_sh, kept, NULL);
    assert_string_equal(text, "kept\n");
    free(text);
    assert_true(shoal_remove(s_sh, &kept, 1, T_WAIT_MS) >= 0);
}

int main(void)
{
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_state_names_cover_every_state),
        cmocka_unit_test(test_refs_go_to_text_and_back),
        cmocka_unit_test(test_connect_to_nothing_is_unreachable_within_the_timeout),
        cmocka_unit_test(test_bad_urls_are_invalid_and_start_nothing),
        cmocka_unit_test(test_local_without_a_binary_says_where_it_looked),
        cmocka_unit_test(test_local_whose_up_dies_quotes_its_stderr),
        cmocka_unit_test(test_local_not_ready_in_time_times_out_and_is_stopped),
        cmocka_unit_test(test_local_starts_and_stops_a_cluster_cleanly),
        cmocka_unit_test(test_local_cluster_log_goes_to_the_file_named),
        cmocka_unit_test(test_local_cluster_dies_with_its_program),
    };
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_submit_gives_refs_at_once_and_flush_acknowledges),
        cmocka_unit_test(test_a_dag_passes_outputs_as_inputs),
        cmocka_unit_test(test_get_of_more_than_64_KiB_comes_from_the_worker),
        cmocka_unit_test(test_an_empty_output_is_an_empty_view),
        cmocka_unit_test(test_wait_times_out_in_about_the_time_given),
        cmocka_unit_test(test_wait_any_returns_when_one_is_done),
        cmocka_unit_test(test_failures_carry_their_reason),
        cmocka_unit_test(test_cancel_stops_a_task_and_its_dependents),
        cmocka_unit_test(test_remove_forgets_objects),
        cmocka_unit_test(test_workers_lists_the_cluster),
        cmocka_unit_test(test_submit_refuses_bad_specs),
        cmocka_unit_test(test_a_batch_the_broker_refuses_is_reported_by_flush),
        cmocka_unit_test(test_calls_refuse_null_arguments),
        cmocka_unit_test(test_a_second_client_reaches_the_local_cluster),
        cmocka_unit_test(test_disconnect_releases_what_the_client_owns_unless_it_keeps_it),
    };
    h_bin(); //  $SHOAL_BIN must name the binary
    int failed = cmocka_run_group_tests_name("client", alone, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("client on local://2", shared, s_cluster_up, s_cluster_down);
    return failed;
}
