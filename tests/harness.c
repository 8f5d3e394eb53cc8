/*  harness.c: real shoal processes for integration tests. See harness.h. */
#include "harness.h"

#include "store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct h_alloc {
    h_alloc_t *next;
    void *p;
};

/*  Start-up of a broker or worker: an instrumented binary maps its shadow memory and
    libzmq starts its threads in well under a second; 10 s leaves room for a loaded CI. */
#define H_START_MS 10000
/*  A clean shutdown: the worker stops its executors and flushes its store. */
#define H_STOP_MS 10000
/*  Poll interval of waits: short against the ~100 ms a `shoal workers` call costs. */
#define H_POLL_MS 10

static int s_cluster_count;

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int h_scale(void)
{
    const char *s = getenv("SHOAL_TEST_SCALE");
    if (s && atoi(s) > 0)
        return atoi(s);
#if defined(__SANITIZE_ADDRESS__)
    return 3;
#else
    return 1;
#endif
}

const char *h_bin(void)
{
    const char *bin = getenv("SHOAL_BIN");
    if (!bin || !*bin) {
        fprintf(stderr, "harness: SHOAL_BIN is not set (run the test through ctest)\n");
        abort();
    }
    return bin;
}

static void s_poll_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) //  between polls of a deadline loop
        ;
}

//  -------------------------------------------------------------------- ownership

static void *s_adopt(h_cluster_t *c, void *p)
{
    if (!c || !p)
        return p;
    h_alloc_t *a = calloc(1, sizeof *a);
    if (!a) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    a->p = p;
    a->next = c->allocs;
    c->allocs = a;
    return p;
}

static char *s_vfmt(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return s;
}

static char *s_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = s_vfmt(fmt, ap);
    va_end(ap);
    return s;
}

char *h_fmt(h_cluster_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = s_vfmt(fmt, ap);
    va_end(ap);
    return s_adopt(c, s);
}

static char *s_read_file(const char *path, size_t *size_p)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (size_p)
        *size_p = len;
    return buf;
}

char *h_read_file(h_cluster_t *c, const char *path, size_t *size_p)
{
    return s_adopt(c, s_read_file(path, size_p));
}

int h_write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        p += n;
        size -= (size_t)n;
    }
    return close(fd);
}

bool h_contains(const char *haystack, const char *needle)
{
    return haystack && needle && strcasestr(haystack, needle) != NULL;
}

int h_parse_refs(const char *text, char (*refs)[33], int max)
{
    int n = 0;
    const char *p = text;
    while (p && *p) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        bool is_ref = len == 32;
        for (size_t i = 0; is_ref && i < len; i++)
            is_ref = isdigit((unsigned char)p[i]) || (p[i] >= 'a' && p[i] <= 'f');
        if (is_ref) {
            if (n < max) {
                memcpy(refs[n], p, 32);
                refs[n][32] = '\0';
            }
            n++;
        }
        p = end ? end + 1 : NULL;
    }
    return n;
}

//  -------------------------------------------------------------------- processes

bool h_pid_alive(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = s_read_file(path, NULL);
    if (!stat)
        return false;
    //  The state follows the command name, which is in parentheses and may hold any byte.
    const char *rp = strrchr(stat, ')');
    bool alive = rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X' && rp[2] != 'x';
    free(stat);
    return alive;
}

static pid_t s_parent_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = s_read_file(path, NULL);
    if (!stat)
        return -1;
    const char *rp = strrchr(stat, ')');
    int ppid = -1;
    char state;
    if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
        ppid = -1;
    free(stat);
    return ppid;
}

int h_worker_of_pid(const h_cluster_t *c, pid_t pid)
{
    for (int depth = 0; depth < 64 && pid > 1; depth++) {
        for (int i = 0; i < c->n_workers; i++)
            if (c->workers[i].pid > 0 && c->workers[i].pid == pid)
                return i;
        pid = s_parent_of(pid);
    }
    return -1;
}

bool h_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    for (;;) {
        if (cond(arg))
            return true;
        if (h_now_ms() >= deadline)
            return false;
        s_poll_pause_ms(H_POLL_MS);
    }
}

/*  Builds an environment: environ without the names in set[], then set[] ("NAME=VALUE",
    or "NAME=" with unset[i] true to drop it). Returned array and strings are malloc'd. */
static char **s_env(const char *const *set, size_t nset, const bool *drop)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + nset + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < nset && !overridden; j++) {
            size_t len = (size_t)(strchr(set[j], '=') - set[j]);
            overridden = strncmp(environ[i], set[j], len) == 0 && environ[i][len] == '=';
        }
        if (!overridden)
            env[k++] = strdup(environ[i]);
    }
    for (size_t j = 0; j < nset; j++)
        if (!drop || !drop[j])
            env[k++] = strdup(set[j]);
    env[k] = NULL;
    return env;
}

static void s_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

/*  In a child between fork and exec: async-signal-safe calls only (the test process may
    run libzmq threads). Dies with the test process, so a test killed by ctest's timeout
    leaves no daemon behind. */
static void s_child_setup(pid_t parent, int in_fd, int out_fd, int err_fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (in_fd >= 0)
        dup2(in_fd, 0);
    if (out_fd >= 0)
        dup2(out_fd, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
}

static pid_t s_spawn(const char *path, char *const argv[], char *const envp[], int in_fd,
                     int out_fd, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        s_child_setup(parent, in_fd, out_fd, err_fd);
        execve(path, argv, envp);
        static const char msg[] = "harness: exec failed\n";
        ssize_t unused = write(2, msg, sizeof msg - 1);
        (void)unused;
        _exit(127);
    }
    return pid;
}

static int s_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/*  Waits for child pid up to deadline (absolute ms). Returns its status code, or -2 when
    it is still running. */
static int s_wait_child(pid_t pid, int64_t deadline)
{
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return s_status_code(status);
        if (w < 0 && errno != EINTR)
            return -1; //  not our child (already reaped)
        if (h_now_ms() >= deadline)
            return -2;
        s_poll_pause_ms(2);
    }
}

typedef struct {
    char *data;
    size_t len, cap;
    int fd;
} s_buf_t;

static bool s_buf_read(s_buf_t *b)
{
    for (;;) {
        if (b->len + 4096 + 1 > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 16384;
            b->data = realloc(b->data, b->cap);
        }
        ssize_t n = read(b->fd, b->data + b->len, b->cap - b->len - 1);
        if (n > 0) {
            b->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true; //  open, drained for now
        close(b->fd);    //  EOF or error
        b->fd = -1;
        return false;
    }
}

static char *s_join_argv(const char *const *argv)
{
    size_t len = 1;
    for (size_t i = 0; argv[i]; i++)
        len += strlen(argv[i]) + 3;
    char *s = calloc(1, len);
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            strcat(s, " ");
        bool quote = strpbrk(argv[i], " \t\n'\"$*") != NULL || !*argv[i];
        if (quote)
            strcat(s, "'");
        strcat(s, argv[i]);
        if (quote)
            strcat(s, "'");
    }
    return s;
}

static h_result_t *s_capture(const h_cluster_t *c, int timeout_ms, const char *path,
                             const char *const *argv, bool shell)
{
    h_result_t *r = calloc(1, sizeof *r);
    r->cmd = s_join_argv(argv);
    r->status = -1;

    const char *set[4];
    bool drop[4] = {false, false, false, false};
    size_t nset = 0;
    char *broker = s_fmt("SHOAL_BROKER=%s", c ? c->listen : "");
    drop[nset] = c == NULL;
    set[nset++] = broker;
    char *bin = NULL, *tmp = NULL, *pathvar = NULL;
    if (shell) {
        bin = s_fmt("SHOAL_BIN=%s", h_bin());
        set[nset++] = bin;
        tmp = s_fmt("H_TMP=%s", c ? c->tmp : "/tmp");
        set[nset++] = tmp;
        char *dir = strdup(h_bin());
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        const char *old = getenv("PATH");
        pathvar = s_fmt("PATH=%s:%s", dir, old ? old : "/usr/bin:/bin");
        free(dir);
        set[nset++] = pathvar;
    }
    char **env = s_env(set, nset, drop);
    free(broker);
    free(bin);
    free(tmp);
    free(pathvar);

    int out[2], err[2];
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || devnull < 0) {
        r->err = s_fmt("harness: pipe: %s", strerror(errno));
        r->out = strdup("");
        s_env_free(env);
        return r;
    }
    int64_t start = h_now_ms();
    int64_t deadline = start + (int64_t)timeout_ms * h_scale();
    pid_t pid = s_spawn(path, (char *const *)argv, env, devnull, out[1], err[1]);
    s_env_free(env);
    close(devnull);
    close(out[1]);
    close(err[1]);
    s_buf_t bufs[2] = {{.fd = out[0]}, {.fd = err[0]}};
    for (int i = 0; i < 2; i++)
        fcntl(bufs[i].fd, F_SETFL, O_NONBLOCK);
    bool timed_out = false;
    int code = -1;
    if (pid < 0) {
        for (int i = 0; i < 2; i++)
            close(bufs[i].fd), bufs[i].fd = -1;
    }
    while (pid > 0) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            code = s_status_code(status);
            break;
        }
        int64_t now = h_now_ms();
        if (now >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = true;
            break;
        }
        struct pollfd fds[2];
        int nfds = 0;
        for (int i = 0; i < 2; i++)
            if (bufs[i].fd >= 0)
                fds[nfds++] = (struct pollfd){.fd = bufs[i].fd, .events = POLLIN};
        int wait_ms = (int)(deadline - now < 20 ? deadline - now : 20);
        if (nfds == 0) {
            s_poll_pause_ms(1);
            continue;
        }
        poll(fds, (nfds_t)nfds, wait_ms);
        for (int i = 0; i < 2; i++)
            if (bufs[i].fd >= 0)
                s_buf_read(&bufs[i]);
    }
    //  The child is gone: what it wrote is in the pipes. A grandchild may hold them open,
    //  so read what is there without waiting for EOF.
    for (int i = 0; i < 2; i++) {
        if (bufs[i].fd >= 0) {
            s_buf_read(&bufs[i]);
            if (bufs[i].fd >= 0)
                close(bufs[i].fd);
        }
        if (!bufs[i].data)
            bufs[i].data = calloc(1, 1);
        bufs[i].data[bufs[i].len] = '\0';
    }
    r->elapsed_ms = h_now_ms() - start;
    r->out = bufs[0].data;
    r->out_len = bufs[0].len;
    r->err = bufs[1].data;
    r->err_len = bufs[1].len;
    if (timed_out) {
        char *note = s_fmt("%s\n[harness: killed after %lld ms, its deadline]\n", r->err,
                           (long long)r->elapsed_ms);
        free(r->err);
        r->err = note;
        r->err_len = strlen(note);
    } else {
        r->status = code;
    }
    return r;
}

static h_result_t *s_own_result(h_cluster_t *c, h_result_t *r)
{
    if (c) {
        s_adopt(c, r->cmd);
        s_adopt(c, r->out);
        s_adopt(c, r->err);
        s_adopt(c, r);
    }
    return r;
}

void h_result_free(h_result_t **r_p)
{
    if (!r_p || !*r_p)
        return;
    h_result_t *r = *r_p;
    free(r->cmd);
    free(r->out);
    free(r->err);
    free(r);
    *r_p = NULL;
}

h_result_t *h_runv(h_cluster_t *c, int timeout_ms, const char *const *argv)
{
    size_t n = 0;
    while (argv[n])
        n++;
    const char **full = calloc(n + 2, sizeof *full);
    full[0] = h_bin();
    for (size_t i = 0; i < n; i++)
        full[i + 1] = argv[i];
    h_result_t *r = s_capture(c, timeout_ms, h_bin(), full, false);
    free(full);
    return s_own_result(c, r);
}

h_result_t *h_run(h_cluster_t *c, int timeout_ms, const char *arg, ...)
{
    const char *argv[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return h_runv(c, timeout_ms, argv);
}

h_result_t *h_sh(h_cluster_t *c, int timeout_ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *script = s_vfmt(fmt, ap);
    va_end(ap);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    h_result_t *r = s_capture(c, timeout_ms, "/bin/sh", argv, true);
    free(script);
    return s_own_result(c, r);
}

char *h_all(h_cluster_t *c, const h_result_t *r)
{
    return h_fmt(c, "%s\n%s", r->out ? r->out : "", r->err ? r->err : "");
}

static void s_print_tail(const char *text, size_t max)
{
    size_t len = strlen(text);
    if (len > max)
        print_error("...%s\n", text + len - max);
    else
        print_error("%s\n", text);
}

void h_assert_exit_(const h_result_t *r, int want, const char *file, int line)
{
    if (r->status == want)
        return;
    print_error("command: shoal-harness$ %s\n", r->cmd);
    print_error("exit status %d (want %d) after %lld ms\n", r->status, want,
                (long long)r->elapsed_ms);
    print_error("--- stdout:\n");
    s_print_tail(r->out ? r->out : "", 3000);
    print_error("--- stderr:\n");
    s_print_tail(r->err ? r->err : "", 3000);
    _fail(file, line);
}

//  -------------------------------------------------------------------- ports

int h_listen_ports(pid_t pid, int *ports, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    unsigned long inodes[256];
    int ninodes = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && ninodes < 256) {
        char link[320], target[128];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) == 1)
            inodes[ninodes++] = inode;
    }
    closedir(dir);
    int found = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int t = 0; t < 2; t++) {
        char *text = s_read_file(tables[t], NULL);
        if (!text)
            continue;
        char *save = NULL;
        for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
            char local[128], remote[128];
            unsigned state;
            unsigned long inode;
            //  sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if (sscanf(ln, " %*s %127s %127s %x %*s %*s %*s %*s %*s %lu", local, remote, &state,
                       &inode) != 4)
                continue;
            if (state != 0x0A) //  TCP_LISTEN
                continue;
            for (int i = 0; i < ninodes; i++) {
                if (inodes[i] != inode)
                    continue;
                const char *colon = strrchr(local, ':');
                if (colon && found < max)
                    ports[found++] = (int)strtol(colon + 1, NULL, 16);
            }
        }
        free(text);
    }
    return found;
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

//  -------------------------------------------------------------------- cluster

static int s_open_log(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void s_print_log_tail(const char *title, const char *path, int lines)
{
    char *text = s_read_file(path, NULL);
    if (!text)
        return;
    size_t len = strlen(text);
    size_t at = len && text[len - 1] == '\n' ? len - 1 : len;
    int seen = 0;
    while (at > 0) {
        if (text[at - 1] == '\n' && ++seen == lines)
            break;
        at--;
    }
    fprintf(stderr, "---- %s (%s), last lines:\n%s%s", title, path, text + at,
            len && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

int h_start_worker(h_cluster_t *c, int i)
{
    if (i < 0 || i >= H_MAX_WORKERS || i > c->n_workers)
        return -1;
    h_worker_t *w = &c->workers[i];
    if (i == c->n_workers) {
        char tmp[sizeof c->tmp], name[sizeof w->name];
        memcpy(tmp, c->tmp, sizeof tmp);
        memset(w, 0, sizeof *w);
        snprintf(name, sizeof name, "test-%d-%d-%d", (int)getpid(), s_cluster_count, i);
        memcpy(w->name, name, sizeof name);
        snprintf(w->store_dir, sizeof w->store_dir, "%s/w%d", tmp, i);
        snprintf(w->log, sizeof w->log, "%s/w%d.log", tmp, i);
        //  The directory must exist for the arena name to be computed as the worker will.
        mkdir(w->store_dir, 0700);
        shoal_store_arena_path_for(w->store_dir, name, w->arena, sizeof w->arena);
        c->n_workers++;
    }
    if (w->pid > 0)
        return -1;
    char slots[16];
    snprintf(slots, sizeof slots, "%d", c->slots);
    const char *argv[32] = {h_bin(),   "worker",      "--broker",   c->listen,    "--name",
                            w->name,   "--store-dir", w->store_dir, "--shm-size", c->shm,
                            "--slots", slots,         NULL};
    //  Extra arguments: split on spaces, "%s" replaced by the store directory.
    char extra[sizeof c->worker_args], extra_dirs[8][PATH_MAX + 64];
    snprintf(extra, sizeof extra, "%s", c->worker_args);
    int argc = 12, n_dirs = 0;
    for (char *save = NULL, *tok = strtok_r(extra, " ", &save); tok && argc < 31;
         tok = strtok_r(NULL, " ", &save)) {
        char *at = strstr(tok, "%s");
        if (at && n_dirs < 8) {
            snprintf(extra_dirs[n_dirs], sizeof extra_dirs[n_dirs], "%.*s%s%s", (int)(at - tok),
                     tok, w->store_dir, at + 2);
            tok = extra_dirs[n_dirs++];
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    int log = s_open_log(w->log);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const char *set[] = {"SHOAL_BROKER="};
    bool drop[] = {true};
    char **env = s_env(set, 1, drop);
    w->pid = s_spawn(h_bin(), (char *const *)argv, env, devnull, log, log);
    s_env_free(env);
    close(log);
    close(devnull);
    return w->pid > 0 ? 0 : -1;
}

int h_kill_worker(h_cluster_t *c, int i, int sig)
{
    if (i < 0 || i >= c->n_workers || c->workers[i].pid <= 0)
        return -1;
    h_worker_t *w = &c->workers[i];
    c->killed_any = true;
    if (kill(w->pid, sig) < 0)
        return -1;
    if (sig != SIGKILL && sig != SIGTERM)
        return 0;
    int code = s_wait_child(w->pid, h_now_ms() + (int64_t)H_STOP_MS * h_scale());
    if (code == -2)
        return -1;
    w->pid = 0;
    return 0;
}

static bool s_listed(const char *table, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = table; (p = strstr(p, name)); p += len) {
        bool start = p == table || isspace((unsigned char)p[-1]);
        bool end = p[len] == '\0' || isspace((unsigned char)p[len]);
        if (start && end)
            return true;
    }
    return false;
}

int h_wait_workers(h_cluster_t *c, int timeout_ms)
{
    int64_t deadline = h_now_ms() + (int64_t)timeout_ms * h_scale();
    char *last = NULL;
    for (;;) {
        for (int i = 0; i < c->n_workers; i++) {
            h_worker_t *w = &c->workers[i];
            int status;
            if (w->pid > 0 && waitpid(w->pid, &status, WNOHANG) == w->pid) {
                fprintf(stderr, "harness: worker %s exited with status %d while starting\n",
                        w->name, s_status_code(status));
                s_print_log_tail(w->name, w->log, 30);
                w->pid = 0;
                free(last);
                return -1;
            }
        }
        const char *argv[] = {h_bin(), "workers", NULL};
        h_result_t *r = s_capture(c, 5000, h_bin(), argv, false);
        bool all = r->status == 0;
        for (int i = 0; all && i < c->n_workers; i++)
            if (c->workers[i].pid > 0 && !s_listed(r->out, c->workers[i].name))
                all = false;
        free(last);
        last = s_fmt("exit %d\n%s%s", r->status, r->out, r->err);
        h_result_free(&r);
        if (all) {
            free(last);
            return 0;
        }
        if (h_now_ms() >= deadline)
            break;
        s_poll_pause_ms(50);
    }
    fprintf(stderr, "harness: workers not all listed after %d ms; last `shoal workers`: %s\n",
            timeout_ms * h_scale(), last);
    free(last);
    return -1;
}

/*  Reads the broker's one line from fd, up to deadline. Returns the line (malloc'd) or
    NULL. */
static char *s_read_line(int fd, int64_t deadline)
{
    char buf[1024];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return NULL;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        ssize_t n = read(fd, buf + len, 1); //  byte by byte: stop exactly at the newline
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return NULL; //  the broker closed stdout: it died
        if (buf[len] == '\n') {
            buf[len] = '\0';
            return strdup(buf);
        }
        len++;
    }
    return NULL;
}

static bool s_copy_endpoint(const char *line, const char *after, char *out, size_t size)
{
    const char *p = strstr(line, after);
    if (!p)
        return false;
    p += strlen(after);
    size_t n = strcspn(p, ", \t\r\n");
    if (n == 0 || n >= size)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

h_cluster_t *h_cluster_start(int n_workers, int slots, const char *shm)
{
    return h_cluster_start_with(n_workers, slots, shm, NULL);
}

h_cluster_t *h_cluster_start_with(int n_workers, int slots, const char *shm,
                                  const char *worker_args)
{
    if (n_workers < 0 || n_workers > H_MAX_WORKERS)
        return NULL;
    //  Orphans of killed workers (executors, task processes) come to us, to be reaped.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);

    h_cluster_t *c = calloc(1, sizeof *c);
    c->broker_out = -1;
    c->slots = slots;
    snprintf(c->shm, sizeof c->shm, "%s", shm ? shm : "64M");
    snprintf(c->worker_args, sizeof c->worker_args, "%s", worker_args ? worker_args : "");
    s_cluster_count++;
    snprintf(c->tmp, sizeof c->tmp, "/tmp/shoal-test-XXXXXX");
    if (!mkdtemp(c->tmp)) {
        fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
        free(c);
        return NULL;
    }
    snprintf(c->broker_log, sizeof c->broker_log, "%s/broker.log", c->tmp);

    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        h_cluster_stop(&c);
        return NULL;
    }
    const char *argv[] = {
        h_bin(), "broker", "--listen", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", NULL};
    int log = s_open_log(c->broker_log);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    c->broker_pid = s_spawn(h_bin(), (char *const *)argv, environ, devnull, out[1], log);
    close(log);
    close(devnull);
    close(out[1]);
    c->broker_out = out[0];
    char *line = s_read_line(c->broker_out, h_now_ms() + (int64_t)H_START_MS * h_scale());
    if (!line || !s_copy_endpoint(line, "listening on ", c->listen, sizeof c->listen) ||
        !s_copy_endpoint(line, "events on ", c->events, sizeof c->events)) {
        fprintf(stderr, "harness: the broker did not print its endpoints within %d ms%s%s\n",
                H_START_MS * h_scale(), line ? "; it printed: " : "", line ? line : "");
        s_print_log_tail("broker", c->broker_log, 30);
        free(line);
        h_cluster_stop(&c);
        return NULL;
    }
    free(line);

    for (int i = 0; i < n_workers; i++) {
        if (h_start_worker(c, i) < 0) {
            fprintf(stderr, "harness: cannot start worker %d\n", i);
            h_cluster_stop(&c);
            return NULL;
        }
    }
    if (h_wait_workers(c, H_START_MS) < 0) {
        h_cluster_stop(&c);
        return NULL;
    }
    return c;
}

int h_children(pid_t parent, pid_t *pids, int max)
{
    DIR *dir = opendir("/proc");
    if (!dir)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (s_parent_of(pid) == parent && h_pid_alive(pid) && n < max)
            pids[n++] = pid;
    }
    closedir(dir);
    return n;
}

/*  Our children other than the ones we started: orphans re-parented to us. */
static int s_strays(pid_t *pids, int max)
{
    return h_children(getpid(), pids, max);
}

static void s_reap_zombies(void)
{
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0)
        ;
}

static char *s_cmdline(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    size_t len = 0;
    char *s = s_read_file(path, &len);
    if (!s)
        return strdup("?");
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '\0')
            s[i] = ' ';
    return s;
}

/*  Where a process that ignores SIGTERM is stuck: its state, its kernel wait channel and,
    when gdb is installed, the stack of every thread. */
void h_dump_stacks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    char *wchan = s_read_file(path, NULL);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = s_read_file(path, NULL);
    const char *rp = stat ? strrchr(stat, ')') : NULL;
    fprintf(stderr, "harness: pid %d state %c, wchan %s\n", (int)pid, rp ? rp[2] : '?',
            wchan ? wchan : "?");
    free(wchan);
    free(stat);
    if (access("/usr/bin/gdb", X_OK) != 0)
        return;
    char pidtext[16];
    snprintf(pidtext, sizeof pidtext, "%d", (int)pid);
    const char *argv[] = {"/usr/bin/gdb",        "-batch", "-nx", "-p", pidtext, "-ex",
                          "thread apply all bt", NULL};
    h_result_t *r = s_capture(NULL, 30000, argv[0], argv, false);
    fprintf(stderr, "harness: stacks of pid %d:\n%s\n", (int)pid, r->out);
    h_result_free(&r);
}

static int s_stop_daemon(pid_t pid, const char *what, const char *log)
{
    int64_t deadline = h_now_ms() + (int64_t)H_STOP_MS * h_scale();
    int code = s_wait_child(pid, deadline);
    if (code == -2) {
        fprintf(stderr, "harness: %s (pid %d) did not exit within %d ms of SIGTERM\n", what,
                (int)pid, H_STOP_MS * h_scale());
        h_dump_stacks(pid);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s_print_log_tail(what, log, 30);
        return -1;
    }
    if (code != 0) {
        fprintf(stderr, "harness: %s (pid %d) exited with status %d after SIGTERM\n", what,
                (int)pid, code);
        s_print_log_tail(what, log, 60);
        return -1;
    }
    return 0;
}

static int s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/*  Removes /dev/shm/shoal-UID-NAME.arena and /dev/shm/shoal-UID-NAME-*.arena, and their
    tables of pins (.pins): whatever suffix the store puts after the worker's name. */
static void s_remove_arenas(const char *name)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "shoal-%u-%s", (unsigned)getuid(), name);
    size_t len = strlen(prefix);
    DIR *dir = opendir("/dev/shm");
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, len) != 0 ||
            (e->d_name[len] != '.' && e->d_name[len] != '-') || n < 6 ||
            (strcmp(e->d_name + n - 6, ".arena") != 0 && strcmp(e->d_name + n - 5, ".pins") != 0))
            continue;
        char path[320];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        unlink(path);
    }
    closedir(dir);
}

int h_cluster_stop(h_cluster_t **c_p)
{
    if (!c_p || !*c_p)
        return 0;
    h_cluster_t *c = *c_p;
    int rc = 0;

    //  Workers first, so they leave while the broker still listens; then the broker.
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].pid > 0)
            kill(c->workers[i].pid, SIGTERM);
    for (int i = 0; i < c->n_workers; i++) {
        h_worker_t *w = &c->workers[i];
        if (w->pid > 0 && s_stop_daemon(w->pid, w->name, w->log) < 0)
            rc = -1;
        w->pid = 0;
    }
    if (c->broker_pid > 0) {
        kill(c->broker_pid, SIGTERM);
        if (s_stop_daemon(c->broker_pid, "broker", c->broker_log) < 0)
            rc = -1;
        c->broker_pid = 0;
    }
    if (c->broker_out >= 0)
        close(c->broker_out);

    //  What is left among our children was orphaned: by a worker a test killed (expected,
    //  and they should go by themselves soon), or by a clean shutdown (a bug).
    int64_t grace = h_now_ms() + (int64_t)(c->killed_any ? 5000 : 1000) * h_scale();
    pid_t strays[64];
    int n;
    for (;;) {
        s_reap_zombies();
        n = s_strays(strays, 64);
        if (n == 0 || h_now_ms() >= grace)
            break;
        s_poll_pause_ms(H_POLL_MS);
    }
    if (n > 0) {
        fprintf(stderr, "harness: %d process(es) left behind after the cluster stopped%s:\n", n,
                c->killed_any ? " (after a worker was killed)" : "");
        for (int i = 0; i < n; i++) {
            char *cmd = s_cmdline(strays[i]);
            fprintf(stderr, "    pid %d: %s\n", (int)strays[i], cmd);
            free(cmd);
            kill(strays[i], SIGKILL);
        }
        for (int i = 0; i < n; i++)
            waitpid(strays[i], NULL, 0);
        rc = -1;
    }
    s_reap_zombies();

    s_print_log_tail("broker", c->broker_log, 10);
    for (int i = 0; i < c->n_workers; i++) {
        s_print_log_tail(c->workers[i].name, c->workers[i].log, 10);
        unlink(c->workers[i].arena);
        s_remove_arenas(c->workers[i].name);
    }
    if (c->tmp[0])
        nftw(c->tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    while (c->allocs) {
        h_alloc_t *a = c->allocs;
        c->allocs = a->next;
        free(a->p);
        free(a);
    }
    free(c);
    *c_p = NULL;
    return rc;
}

int h_fixture_start(void **state, int n_workers, int slots, const char *shm)
{
    h_cluster_t *c = h_cluster_start(n_workers, slots, shm);
    *state = c;
    return c ? 0 : -1;
}

int h_fixture_stop(void **state)
{
    h_cluster_t *c = h_state(state);
    *state = NULL;
    return h_cluster_stop(&c);
}

uint8_t h_pat(uint64_t seed, size_t i)
{
    return (uint8_t)((i * 2654435761u + seed) >> 7);
}

uint8_t *h_pattern(uint64_t seed, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    assert_non_null(p);
    for (size_t i = 0; i < size; i++)
        p[i] = h_pat(seed, i);
    return p;
}

void h_assert_pattern(const void *data, size_t size, uint64_t seed, size_t want)
{
    assert_int_equal(size, want);
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++)
        if (p[i] != h_pat(seed, i)) {
            print_error("byte %zu is %u, not %u\n", i, p[i], h_pat(seed, i));
            fail();
        }
}

#if H_WITH_CLIENT
shoal_t *h_connect(h_cluster_t *c)
{
    shoal_t *sh = NULL;
    int rc = shoal_connect(c->listen, 10000 * h_scale(), &sh);
    if (rc)
        print_error("connect: %s\n", shoal_strerror(rc));
    assert_int_equal(rc, 0);
    return sh;
}
#endif
