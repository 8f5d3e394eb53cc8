/*  local.c: local://N, a broker and N workers on this host for one client.

    We run `shoal up` as a child rather than embedding the broker and workers: they are
    long-lived daemons with their own loops, signal handling and executors, and `shoal up`
    already starts them on free ports, waits until every worker has joined, prints where
    the broker listens, and on SIGTERM stops the workers, then the broker, and removes
    their stores and arenas. A library must not take over the program's signals or
    threads to do the same.

    The child is made with fork + exec. libzmq threads may run in this process (other
    handles, or the program's own sockets), so between fork and exec only async-signal-safe
    calls are made; everything they need (argv, file descriptors, the signal set) is
    prepared before fork. Its stdout is a pipe we read the broker's address from; its
    stderr, and that of the broker and workers, goes to a file (an unnamed temporary file
    unless log= names one): a pipe would fill up while the program does not call into
    libshoal and block the daemons' logging, and the file's tail explains a cluster that
    fails to start. */
#include "local.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/*  `shoal up` gives each group of its children 10 s to stop, then SIGKILL and 5 s more
    (cli/cmd_cluster.c): 30 s covers its worst case. A clean stop takes well under a second
    here. */
#define S_STOP_MS 30000
/*  After SIGKILL, the kernel needs only to tear the process down. */
#define S_KILL_MS 5000
/*  Bytes of the cluster's stderr quoted in an error: the last few lines. */
#define S_TAIL_BYTES 400
/*  The limits of `shoal up --workers` and `--slots`. */
#define S_MAX_WORKERS 256
#define S_MAX_SLOTS   4096
#define S_PREFIX      "local://"
#define S_ADDRESS_KEY "export SHOAL_BROKER="

struct shoal__local {
    pid_t pid;  //  `shoal up`
    int pidfd;  //  a pidfd of it (signals cannot reach a reused pid), or -1
    int log_fd; //  the file its stderr goes to
    char bin[PATH_MAX];
};

typedef struct {
    unsigned workers;
    char slots[16]; //  "" for the default of `shoal up`
    char shm[32];
    char log[PATH_MAX];
} s_options_t;

static int s_fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int s_fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return code;
}

/*  ------------------------------------------------------------------------ the URL */

static int s_parse(const char *url, s_options_t *o, char *err, size_t err_size)
{
    memset(o, 0, sizeof *o);
    o->workers = 2;
    const char *p = url + strlen(S_PREFIX);
    size_t digits = strspn(p, "0123456789");
    if (digits) {
        char text[16];
        uint64_t n = 0;
        if (digits >= sizeof text)
            n = UINT64_MAX;
        else {
            memcpy(text, p, digits);
            text[digits] = '\0';
            shoal__parse_u64(text, &n);
        }
        if (n < 1 || n > S_MAX_WORKERS)
            return s_fail(err, err_size, SHOAL_EINVAL, "%s: the number of workers must be 1..%d",
                          url, S_MAX_WORKERS);
        o->workers = (unsigned)n;
        p += digits;
    }
    if (*p && *p != '?')
        return s_fail(err, err_size, SHOAL_EINVAL,
                      "not a local URL: %s (expected local://N or local://N?OPTION=VALUE&...)",
                      url);
    while (*p) {
        p++; //  '?' or '&'
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (len == 0)
            continue;
        if (!eq || eq == p)
            return s_fail(err, err_size, SHOAL_EINVAL, "%s: '%.*s' is not OPTION=VALUE", url,
                          (int)len, p);
        size_t klen = (size_t)(eq - p);
        char value[PATH_MAX];
        if (len - klen - 1 >= sizeof value)
            return s_fail(err, err_size, SHOAL_EINVAL, "%s: the value of %.*s is too long", url,
                          (int)klen, p);
        memcpy(value, eq + 1, len - klen - 1);
        value[len - klen - 1] = '\0';
        uint64_t v = 0;
        if (klen == 5 && memcmp(p, "slots", 5) == 0) {
            if (shoal__parse_u64(value, &v) != 0 || v < 1 || v > S_MAX_SLOTS)
                return s_fail(err, err_size, SHOAL_EINVAL, "%s: slots must be 1..%d, not '%s'", url,
                              S_MAX_SLOTS, value);
            snprintf(o->slots, sizeof o->slots, "%llu", (unsigned long long)v);
        } else if (klen == 3 && memcmp(p, "shm", 3) == 0) {
            if (shoal__parse_size(value, &v) != 0 || v == 0 || strlen(value) >= sizeof o->shm)
                return s_fail(err, err_size, SHOAL_EINVAL,
                              "%s: shm must be a size such as 64M or 1G, not '%s'", url, value);
            memcpy(o->shm, value, strlen(value) + 1);
        } else if (klen == 3 && memcmp(p, "log", 3) == 0) {
            if (!value[0])
                return s_fail(err, err_size, SHOAL_EINVAL, "%s: log needs a file name", url);
            shoal__strlcpy(o->log, value, sizeof o->log);
        } else
            return s_fail(err, err_size, SHOAL_EINVAL,
                          "%s: unknown option '%.*s' (known: slots, shm, log)", url, (int)klen, p);
        p += len;
    }
    return 0;
}

/*  ----------------------------------------------------------------- the binary */

static bool s_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/*  $SHOAL_BIN, else a shoal next to the running program, else the install's bindir, else
    PATH. */
static int s_find_bin(char *bin, size_t size, char *err, size_t err_size)
{
    const char *env = getenv("SHOAL_BIN");
    if (env && *env) {
        if (s_executable(env)) {
            shoal__strlcpy(bin, env, size);
            return 0;
        }
        return s_fail(err, err_size, SHOAL_ENOTFOUND,
                      "cannot start a local cluster: $SHOAL_BIN=%s is not an executable file", env);
    }
    char looked[3 * 256] = "";
    size_t used = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = NULL;
    if (len > 0) {
        exe[len] = '\0';
        slash = strrchr(exe, '/');
    }
    if (slash) {
        *slash = '\0';
        if (snprintf(bin, size, "%s/shoal", exe) < (int)size && s_executable(bin))
            return 0;
        used += (size_t)snprintf(looked + used, sizeof looked - used, "%.200s, ", exe);
    }
#ifdef SHOAL_INSTALL_BINDIR
    if (snprintf(bin, size, "%s/shoal", SHOAL_INSTALL_BINDIR) < (int)size && s_executable(bin))
        return 0;
    used += (size_t)snprintf(looked + used, sizeof looked - used, "%.200s, ", SHOAL_INSTALL_BINDIR);
#endif
    const char *path = getenv("PATH");
    for (const char *dir = path; dir && *dir;) {
        size_t dlen = strcspn(dir, ":");
        int n = dlen ? snprintf(bin, size, "%.*s/shoal", (int)dlen, dir)
                     : snprintf(bin, size, "./shoal");
        if (n < (int)size && s_executable(bin))
            return 0;
        dir += dlen + (dir[dlen] == ':');
    }
    return s_fail(err, err_size, SHOAL_ENOTFOUND,
                  "cannot start a local cluster: no shoal binary: $SHOAL_BIN is unset, and "
                  "there is none in %sor on PATH (%.200s)",
                  looked, path ? path : "unset");
}

/*  ------------------------------------------------------------------- the child */

//  Moves fd above stdin/stdout/stderr (a program that closed them gets them back from
//  pipe2 and open), so the child's dup2 onto 0, 1, 2 never clobbers another. Keeps
//  O_CLOEXEC. Returns the fd, or -1 (fd closed).
static int s_above_stdio(int fd)
{
    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    return moved;
}

//  The stderr of the cluster: log (appended to) or an unnamed temporary file.
static int s_open_log(const char *log, char *err, size_t err_size)
{
    int fd;
    if (log[0]) {
        fd = open(log, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            s_fail(err, err_size, SHOAL_EIO, "cannot start a local cluster: log %s: %s", log,
                   strerror(errno));
        return s_above_stdio(fd);
    }
    const char *tmp = getenv("TMPDIR");
    const char *dir = tmp && *tmp ? tmp : "/tmp";
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        //  A file system without O_TMPFILE: a named file, unlinked at once.
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/shoal-local-XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    if (fd < 0)
        s_fail(err, err_size, SHOAL_EIO,
               "cannot start a local cluster: no temporary file in %s for its log: %s", dir,
               strerror(errno));
    return s_above_stdio(fd);
}

//  The last lines of the cluster's stderr, on one line ("a | b | c"); "" when empty.
static void s_tail(int fd, char *out, size_t size)
{
    out[0] = '\0';
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0)
        return;
    char buf[S_TAIL_BYTES + 1];
    off_t from = st.st_size > S_TAIL_BYTES ? st.st_size - S_TAIL_BYTES : 0;
    ssize_t n = pread(fd, buf, (size_t)(st.st_size - from), from);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    const char *p = buf;
    const char *nl = from > 0 ? strchr(buf, '\n') : NULL;
    if (nl && nl[1])
        p = nl + 1; //  from the first whole line
    size_t len = 0;
    for (; *p && len + 4 < size; p++) {
        if (*p == '\n') {
            memcpy(out + len, " | ", 3);
            len += 3;
        } else
            out[len++] = *p == '\r' || *p == '\t' ? ' ' : *p;
    }
    out[len] = '\0';
}

static void s_describe_exit(int status, char *buf, size_t size)
{
    if (status == -1)
        snprintf(buf, size, "ended");
    else if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "ended (status %#x)", (unsigned)status);
}

static void s_signal(shoal__local_t *self, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (self->pidfd >= 0 && syscall(SYS_pidfd_send_signal, self->pidfd, sig, NULL, 0) == 0)
        return;
#endif
    kill(self->pid, sig);
}

/*  Waits up to ms for the child to end and reaps it. True when it is gone: *status is its
    wait status, or -1 when something else reaped it (a SIGCHLD handler of the program
    that waits for any child, or SIGCHLD ignored). */
static bool s_wait_exit(shoal__local_t *self, int ms, int *status)
{
    int64_t deadline = shoal__now_ms() + ms;
    for (;;) {
        pid_t r = waitpid(self->pid, status, WNOHANG);
        if (r == self->pid)
            return true;
        if (r < 0 && errno != EINTR) {
            *status = -1;
            return true;
        }
        int64_t left = deadline - shoal__now_ms();
        if (left <= 0)
            return false;
        if (self->pidfd >= 0) {
            //  Readable once the process has exited.
            struct pollfd pfd = {self->pidfd, POLLIN, 0};
            poll(&pfd, 1, (int)SHOAL__MIN(left, (int64_t)1000));
        } else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/*  Between fork and exec: async-signal-safe calls only. */
static void s_child(pid_t parent, const int fds[4], const char *bin, char *const argv[],
                    char *const envp[], const struct sigaction *dfl, const sigset_t *none)
    __attribute__((noreturn));
static void s_child(pid_t parent, const int fds[4], const char *bin, char *const argv[],
                    char *const envp[], const struct sigaction *dfl, const sigset_t *none)
{
    //  Its own process group: a Ctrl-C at the terminal is for the program, which decides
    //  when to disconnect. Killed with the thread that made it (PR_SET_PDEATHSIG follows
    //  the thread, not the process), and at once if that happened already.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    //  fds: /dev/null, the stdout pipe, the log, the exec status pipe (all above 2).
    if (dup2(fds[0], STDIN_FILENO) < 0 || dup2(fds[1], STDOUT_FILENO) < 0 ||
        dup2(fds[2], STDERR_FILENO) < 0)
        goto fail;
#ifdef CLOSE_RANGE_CLOEXEC
    //  Descriptors the program left inheritable (a pipe to another child, say) must not
    //  live on in the cluster for hours.
    close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
    //  Handlers are reset by exec, but ignored signals stay ignored and the mask stays: `up`
    //  relies on SIGTERM, SIGINT, SIGHUP and SIGCHLD.
    static const int sigs[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,
                               SIGCHLD, SIGPIPE, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], dfl, NULL);
    sigprocmask(SIG_SETMASK, none, NULL);
    execve(bin, argv, envp);
fail:;
    int e = errno;
    ssize_t w = write(fds[3], &e, sizeof e);
    (void)w;
    _exit(127);
}

/*  Reads `shoal up`'s stdout until its "export SHOAL_BROKER=..." line. */
static int s_read_address(shoal__local_t *self, int fd, int64_t deadline, char *endpoint,
                          size_t endpoint_size, char *err, size_t err_size)
{
    int64_t started = shoal__now_ms();
    char buf[2048];
    size_t len = 0;
    char tail[S_TAIL_BYTES + 64], how[128];
    for (;;) {
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', len - (size_t)(line - buf))) != NULL) {
            *nl = '\0';
            if (strncmp(line, S_ADDRESS_KEY, strlen(S_ADDRESS_KEY)) == 0) {
                const char *address = line + strlen(S_ADDRESS_KEY);
                if (strlen(address) >= endpoint_size || strncmp(address, "tcp://", 6) != 0)
                    return s_fail(err, err_size, SHOAL_EIO, "%s up printed a bad address: %.200s",
                                  self->bin, address);
                shoal__strlcpy(endpoint, address, endpoint_size);
                return 0;
            }
            line = nl + 1;
        }
        len -= (size_t)(line - buf);
        memmove(buf, line, len);
        if (len == sizeof buf - 1)
            len = 0; //  a line longer than any it prints: not ours, drop it

        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - shoal__now_ms();
            if (left <= 0) {
                s_tail(self->log_fd, tail, sizeof tail);
                return s_fail(err, err_size, SHOAL_ETIMEDOUT,
                              "the local cluster (%s up) was not ready within %lld ms%s%s",
                              self->bin, (long long)(shoal__now_ms() - started),
                              tail[0] ? "; its stderr: " : "", tail);
            }
            ms = (int)SHOAL__MIN(left, (int64_t)INT_MAX);
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno != EINTR)
            return s_fail(err, err_size, SHOAL_EIO, "poll: %s", strerror(errno));
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        //  End of its output before the address: it failed, and its stderr says why.
        int status = -1;
        if (s_wait_exit(self, S_KILL_MS, &status))
            self->pid = 0;
        s_describe_exit(status, how, sizeof how);
        s_tail(self->log_fd, tail, sizeof tail);
        return s_fail(err, err_size, SHOAL_EIO, "the local cluster did not start: %s up %s%s%s",
                      self->bin, self->pid ? "closed its output" : how,
                      tail[0] ? "; its stderr: " : "", tail);
    }
}

/*  Stops and frees self; with report, an abnormal end of `shoal up` is logged. */
static void s_stop(shoal__local_t *self, bool report)
{
    if (self->pid > 0) {
        s_signal(self, SIGTERM);
        int status = 0;
        char how[128], tail[S_TAIL_BYTES + 64];
        if (!s_wait_exit(self, S_STOP_MS, &status)) {
            shoal__warn("the local cluster (%s up, pid %d) did not stop within %d s: killing it",
                        self->bin, (int)self->pid, S_STOP_MS / 1000);
            s_signal(self, SIGKILL);
            if (!s_wait_exit(self, S_KILL_MS, &status))
                shoal__warn("the local cluster (pid %d) does not die", (int)self->pid);
        } else if (report && status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            s_describe_exit(status, how, sizeof how);
            s_tail(self->log_fd, tail, sizeof tail);
            shoal__warn("the local cluster (%s up, pid %d) %s on stopping%s%s", self->bin,
                        (int)self->pid, how, tail[0] ? "; its stderr: " : "", tail);
        }
    }
    if (self->pidfd >= 0)
        close(self->pidfd);
    if (self->log_fd >= 0)
        close(self->log_fd);
    free(self);
}

int shoal__local_start(const char *url, int64_t deadline, shoal__local_t **local_p, char *endpoint,
                       size_t endpoint_size, char *err, size_t err_size)
{
    s_options_t o;
    int rc = s_parse(url, &o, err, err_size);
    if (rc)
        return rc;
    shoal__local_t *self = calloc(1, sizeof *self);
    if (!self)
        return s_fail(err, err_size, SHOAL_ENOMEM, "out of memory");
    self->pidfd = -1;
    if ((rc = s_find_bin(self->bin, sizeof self->bin, err, err_size)) != 0) {
        free(self);
        return rc;
    }
    if ((self->log_fd = s_open_log(o.log, err, err_size)) < 0) {
        free(self);
        return SHOAL_EIO;
    }

    //  Everything the child needs, made before fork.
    char workers[16];
    snprintf(workers, sizeof workers, "%u", o.workers);
    char *argv[16];
    size_t argc = 0;
    argv[argc++] = self->bin;
    argv[argc++] = "up";
    argv[argc++] = "--listen";
    argv[argc++] = "tcp://127.0.0.1:*";
    argv[argc++] = "--events";
    argv[argc++] = "tcp://127.0.0.1:*";
    argv[argc++] = "--workers";
    argv[argc++] = workers;
    if (o.slots[0]) {
        argv[argc++] = "--slots";
        argv[argc++] = o.slots;
    }
    if (o.shm[0]) {
        argv[argc++] = "--shm-size";
        argv[argc++] = o.shm;
    }
    argv[argc] = NULL;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigset_t none;
    sigemptyset(&none);
    int out[2] = {-1, -1}, status_pipe[2] = {-1, -1};
    int fds[4] = {-1, -1, self->log_fd, -1};
    rc = SHOAL_EIO;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(status_pipe, O_CLOEXEC) != 0) {
        s_fail(err, err_size, SHOAL_EIO, "cannot start a local cluster: pipe: %s", strerror(errno));
        goto fail;
    }
    out[0] = s_above_stdio(out[0]);
    out[1] = s_above_stdio(out[1]);
    status_pipe[1] = s_above_stdio(status_pipe[1]);
    fds[0] = s_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
    fds[1] = out[1];
    fds[3] = status_pipe[1];
    if (out[0] < 0 || fds[0] < 0 || fds[1] < 0 || fds[3] < 0) {
        s_fail(err, err_size, SHOAL_EIO, "cannot start a local cluster: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    char **envp = environ;
    pid_t pid = fork();
    if (pid == 0)
        s_child(parent, fds, self->bin, argv, envp, &dfl, &none);
    if (pid < 0) {
        s_fail(err, err_size, SHOAL_EIO, "cannot start a local cluster: fork: %s", strerror(errno));
        goto fail;
    }
    self->pid = pid;
#ifdef SYS_pidfd_open
    //  Opened while the child cannot have been reaped yet, so it names this process.
    self->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    close(fds[0]);
    close(fds[1]);
    close(fds[3]);
    fds[0] = fds[1] = fds[3] = out[1] = status_pipe[1] = -1;

    //  The status pipe closes on a successful exec, or brings exec's errno.
    int child_errno = 0;
    ssize_t n;
    do
        n = read(status_pipe[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof child_errno) {
        int status;
        if (s_wait_exit(self, S_KILL_MS, &status))
            self->pid = 0;
        s_fail(err, err_size, SHOAL_EIO, "cannot start a local cluster: cannot run %s: %s",
               self->bin, strerror(child_errno));
        goto fail;
    }
    rc = s_read_address(self, out[0], deadline, endpoint, endpoint_size, err, err_size);
    if (rc)
        goto fail;
    //  It prints nothing more; a write after we close is EPIPE to it, and it ignores SIGPIPE.
    close(out[0]);
    close(status_pipe[0]);
    shoal__debug("local cluster: %s up (pid %d) with %u workers, broker %s", self->bin,
                 (int)self->pid, o.workers, endpoint);
    *local_p = self;
    return 0;

fail:
    for (int i = 0; i < 4; i++)
        if (i != 2 && fds[i] >= 0)
            close(fds[i]);
    if (out[0] >= 0)
        close(out[0]);
    if (status_pipe[0] >= 0)
        close(status_pipe[0]);
    s_stop(self, false); //  err says what went wrong
    return rc;
}

void shoal__local_stop(shoal__local_t **local_p)
{
    if (!local_p || !*local_p)
        return;
    s_stop(*local_p, true);
    *local_p = NULL;
}
