/*  executor.c: `shoal executor fd:N ARENA SLOT`, the process that runs task code.

    The worker starts one executor per slot (fork + exec, so task code never shares an
    address space with the worker's store and sockets). Each executor is the leader of its
    own process group; the commands of exec tasks run in that group, so the worker kills a
    task with everything it started by killing the group. The executor maps the worker's
    arena read-only to read inputs in place, and maps each allocation it writes as its own
    writable range, so a stray write faults instead of corrupting other objects.

    fn tasks ("LIB.so:SYMBOL") run in the executor itself: the library is dlopen'ed once
    and the function called with a shoal_task_t whose function table (shoal.h, "Task API
    for fn plugins") is implemented here. A crash in it kills the executor, which the
    worker reports and replaces.

    Batches: an e_run carries several tasks, run one after another; the results go back
    in groups (e_done_batch), and each task may ask for output space on the way (e_alloc ->
    e_alloc_ok: exec tasks once, fn tasks once per large output). Which task runs is in a
    page shared with the worker (no message per task). The conventions beyond
    docs/protocol.md, including when results are sent, are in worker.h.

    Per task, on the path of a no-op fn task: no system call but one lseek (the end of the
    task's log: fds 1 and 2 stay on the log memfd from the first fn task on) and no malloc
    (results and their small outputs live in a bump arena emptied after each e_done_batch;
    the outcome and output tables are reused). A watch thread sends the results held when
    a task runs long (worker.h). */
#include "worker.h"

#include "common.h"
#include "chan.h"
#include "store.h"
#include "wire.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

//  Bytes of stderr carried in each result: enough for the end of a traceback, and the
//  broker puts them in the failure reason it shows users.
#define S_LOG_TAIL 2048
//  Inline bytes per e_done: 4 MiB keeps the worker's w_done batches of many results far
//  below SHOAL_MAX_MSG_SIZE (64 MiB); the rest goes through e_alloc.
#define S_INLINE_BUDGET (4u << 20)
//  How long the executor waits for its worker between checks that the worker still lives
//  (PR_SET_PDEATHSIG kills us when it dies; this is the belt to those braces).
#define S_POLL_MS 1000
//  Bytes per read/write when copying files: 1 MiB, like the wire's chunks.
#define S_COPY_CHUNK (1u << 20)
//  Results are sent when the oldest one held is this old, or right after a task that took
//  this long (worker.h): the cost of a message (~20 us for both ends) is then under 2%.
#define S_FLUSH_US 1000
//  ...or when they hold this many inline bytes: with one task's S_INLINE_BUDGET on top,
//  an e_done_batch stays under 8 MiB.
#define S_FLUSH_BYTES (4u << 20)
//  The bump arena grows in chunks of 64 KiB: a batch of 256 no-op results takes ~40 KiB.
#define S_BUMP_CHUNK (64u << 10)
//  The log memfd of a batch is emptied between tasks once it holds this much.
#define S_LOG_RESET (16u << 20)

//  A bump allocator: many small blocks, freed all at once (after each e_done_batch).
typedef struct s_bump_chunk s_bump_chunk_t;
struct s_bump_chunk {
    s_bump_chunk_t *next;
    size_t size, used;
    max_align_t data[];
};
typedef struct {
    s_bump_chunk_t *head;
} s_bump_t;

static void *s_bump_alloc(s_bump_t *b, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (!size)
        size = 16;
    s_bump_chunk_t *c = b->head;
    if (!c || c->size - c->used < size) {
        size_t cap = size > S_BUMP_CHUNK ? size : S_BUMP_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = b->head;
        c->size = cap;
        c->used = 0;
        b->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

//  Frees everything allocated; keeps one standard chunk for the next batch.
static void s_bump_reset(s_bump_t *b)
{
    s_bump_chunk_t *keep = NULL;
    for (s_bump_chunk_t *c = b->head, *next; c; c = next) {
        next = c->next;
        if (!keep && c->size == S_BUMP_CHUNK) {
            keep = c;
            continue;
        }
        free(c);
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    b->head = keep;
}

static void s_bump_free(s_bump_t *b)
{
    s_bump_reset(b);
    free(b->head);
    b->head = NULL;
}

typedef struct s_pending s_pending_t;
struct s_pending { //  an e_run that arrived while a task was still running
    shoal_wire_in_t in;
    s_pending_t *next;
};

typedef struct s_exec s_exec_t;

//  A plugin library, loaded once per executor and kept for its life: dlclose would
//  invite crashes from whatever the library left behind (threads, atexit handlers,
//  pointers into it), and a handful of libraries per executor cost nothing.
typedef struct {
    char *path;
    void *handle;
} s_plugin_t;

//  One output of a fn task, as the task function builds it.
enum { S_FN_EMPTY, S_FN_ALLOCATED, S_FN_SEALED };
typedef struct {
    int state;
    bool in_arena;   //  else memory of the bump arena that travels inline
    uint8_t *data;   //  in the bump arena, or the writable mapping of the arena range
    uint64_t size;   //  as allocated
    uint64_t offset; //  in the arena, from e_alloc_ok
    uint64_t ready;  //  bytes published to streaming readers
    int stream;      //  its entry in the progress page's streams + 1, or 0
} s_fn_out_t;

//  The fn task being run: public part first, so the shoal_task_t * the function gets is a
//  pointer to this. It lives in the executor (one task at a time), so a call through a
//  stale pointer after the function returned finds running == false and is refused.
typedef struct {
    shoal_task_t pub;
    s_exec_t *exec;
    const shoal_wire_e_task_t *et;
    const char *symbol;
    bool running;
    const uint8_t *arg; //  NUL-terminated copy in exec->arg_buf
    size_t arg_size;
    size_t n_outputs;
    s_fn_out_t *outs;
    uint64_t inline_budget; //  of S_INLINE_BUDGET, what small outputs may still take
    bool has_error;
    char error[1024];       //  from shoal_task_set_error
    char alloc_error[1024]; //  why the last allocation failed, the default reason
    //  Streaming inputs (e_input.stream): what the worker last said of each.
    uint64_t in_ready[SHOAL_STREAM_INPUTS_MAX];
    uint64_t in_final; //  bit i: input i is sealed
    //  The first streaming input found aborted (index + 1, 0: none) and what the worker
    //  said: a function that then fails is reported as its input failing.
    size_t in_aborted;
    char in_error[1024];
} s_fn_task_t;

//  One entry of a result: a task output or the log. The bytes are in a file (exec tasks),
//  or in memory or already in the arena (fn tasks: data or offset, no path).
typedef struct {
    char *path;
    uint64_t size;
    uint8_t *data; //  in the bump arena when it travels inline
    bool is_inline;
    bool is_log;
    size_t index;    //  the output's index; n_outputs for the log
    uint64_t offset; //  from e_alloc_ok
} s_out_t;

typedef struct {
    int status;
    int64_t exit_code;
    char error[1024];
    s_out_t *outs; //  n_outputs + 1 entries (the last is the log), or only the log
    size_t n_outs;
    bool has_log;
    uint64_t log_size;
    uint8_t log_tail[S_LOG_TAIL];
    size_t log_tail_size;
    uint8_t *stdout_tail; //  a failed command's last SHOAL_INLINE_MAX bytes of stdout
    size_t stdout_tail_size;
} s_outcome_t;

struct s_exec {
    shoal_chan_t *chan; //  to the worker (a socketpair it made: chan.h says why)
    const char *arena_path;
    const uint8_t *arena;
    uint64_t arena_size;
    pid_t ppid;
    int slot;
    const char *scratch_base;
    s_pending_t *pending, *pending_tail;
    shoal_exec_progress_t *progress; //  shared with the worker (worker.h), or NULL
    uint8_t *in_area;                //  the batch's inline inputs, read-only while its tasks run
    size_t in_area_size;
    //  The task being run and the results not sent yet (worker.h: when they go).
    s_outcome_t outcome;
    s_out_t *outs_buf; //  outcome.outs points here
    size_t cap_outs;
    s_bump_t bump; //  results' strings and small outputs, until they are sent
    shoal_wire_result_t *pend;
    size_t n_pend, cap_pend;
    size_t pend_bytes;
    int64_t pend_since_us;
    //  The watch thread sends the results held while a task runs longer than S_FLUSH_US, so
    //  a long task never holds back the results of the short ones before it. lock guards
    //  the socket (ZeroMQ sockets are single-threaded) and pend*; the bump arena is the
    //  main thread's (the watch thread only reads results already in pend).
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t watch;
    bool watching;     //  the thread runs
    bool stop;         //  ... and should end
    bool watch_idle;   //  it waits without a deadline: signal it when there is work
    bool task_running; //  task_start_us is the running task's start
    int64_t task_start_us;
    int watch_err; //  a send that failed in the thread, logged by the main one
    //  fn tasks
    s_plugin_t *plugins;
    size_t n_plugins, cap_plugins;
    char *last_fn; //  the fn string of the last task, and what it resolved to
    shoal_task_fn_t *last_call;
    uint8_t *arg_buf;
    size_t arg_cap;
    s_fn_out_t *fouts;
    size_t cap_fouts;
    int log_fd;               //  memfd taking fds 1 and 2 while a batch runs fn tasks
    int saved_out, saved_err; //  the executor's own fds 1 and 2
    bool capturing;           //  fds 1 and 2 are the log memfd now
    uint64_t log_end;         //  where the last task's log ended in the memfd
    s_fn_task_t fn;
};

static void s_fail(s_outcome_t *o, int status, int64_t exit_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_fail(s_outcome_t *o, int status, int64_t exit_code, const char *fmt, ...)
{
    if (o->status)
        return; //  the first reason is the one that matters
    o->status = status;
    o->exit_code = exit_code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->error, sizeof o->error, fmt, ap);
    va_end(ap);
}

/*  --------------------------------------------------------------------------- logs */

//  The tasks' stdout and stderr: fds 1 and 2 point at the log memfd from the first fn task
//  on (no dup2 per task or batch); each task's log is the part of the memfd it wrote, from
//  where the previous one ended to the file offset after it returned. The executor's own
//  messages go around it (S_WARN), so they land on its stderr, not in a task's log.
static void s_capture_begin(s_exec_t *self)
{
    if (self->capturing || self->log_fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    if (ftruncate(self->log_fd, 0) != 0 || lseek(self->log_fd, 0, SEEK_SET) != 0 ||
        dup2(self->log_fd, STDOUT_FILENO) < 0 || dup2(self->log_fd, STDERR_FILENO) < 0) {
        dup2(self->saved_out, STDOUT_FILENO);
        dup2(self->saved_err, STDERR_FILENO);
        return;
    }
    self->capturing = true;
    self->log_end = 0;
}

//  Ends the capture: the executor's own fds 1 and 2 again. Returns whether it was on.
static bool s_capture_end(s_exec_t *self)
{
    if (!self->capturing)
        return false;
    fflush(stdout);
    fflush(stderr);
    dup2(self->saved_out, STDOUT_FILENO);
    dup2(self->saved_err, STDERR_FILENO);
    self->capturing = false;
    return true;
}

//  The executor's own warnings between tasks must not land in the next task's log.
#define S_WARN(self, ...)                                                                          \
    do {                                                                                           \
        bool was_ = s_capture_end(self);                                                           \
        shoal__warn(__VA_ARGS__);                                                                  \
        if (was_) {                                                                                \
            dup2((self)->log_fd, STDOUT_FILENO);                                                   \
            dup2((self)->log_fd, STDERR_FILENO);                                                   \
            (self)->capturing = true;                                                              \
        }                                                                                          \
    } while (0)

//  After a task: where its log starts (*base) and how many bytes it wrote.
static uint64_t s_capture_task_end(s_exec_t *self, uint64_t *base)
{
    *base = self->log_end;
    if (!self->capturing)
        return 0;
    fflush(stdout); //  what printf left buffered belongs to the task
    fflush(stderr);
    off_t end = lseek(self->log_fd, 0, SEEK_CUR);
    if (end < 0 || (uint64_t)end < self->log_end) { //  the task moved the offset back
        self->log_end = end < 0 ? self->log_end : (uint64_t)end;
        *base = self->log_end;
        return 0;
    }
    self->log_end = (uint64_t)end;
    return (uint64_t)end - *base;
}

//  Between tasks: a log memfd grown large is emptied (its tasks' logs are taken).
static void s_capture_trim(s_exec_t *self)
{
    if (self->capturing && self->log_end >= S_LOG_RESET && ftruncate(self->log_fd, 0) == 0 &&
        lseek(self->log_fd, 0, SEEK_SET) == 0)
        self->log_end = 0;
}

/*  ------------------------------------------------------------------------- messaging */

static bool s_worker_alive(s_exec_t *self)
{
    return getppid() == self->ppid;
}

//  Sends, waiting while the pipe is full: an executor has nothing better to do. The
//  caller holds self->lock.
static int s_send_locked(s_exec_t *self, int type, const void *body)
{
    int rc = shoal_chan_send(self->chan, type, body);
    while (rc == 0 && (rc = shoal_chan_flush(self->chan)) == SHOAL_EAGAIN) {
        struct pollfd pfd = {shoal_chan_fd(self->chan), POLLOUT, 0};
        if (poll(&pfd, 1, S_POLL_MS) < 0 && errno != EINTR)
            return SHOAL_EIO;
        if (!s_worker_alive(self))
            return SHOAL_EUNREACH;
        rc = 0;
    }
    return rc;
}

static int s_send(s_exec_t *self, int type, const void *body)
{
    pthread_mutex_lock(&self->lock);
    int rc = s_send_locked(self, type, body);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

static int s_recv_locked(s_exec_t *self, shoal_wire_in_t *in);

//  Receives the next message; SHOAL_EUNREACH when the worker is gone.
static int s_recv(s_exec_t *self, shoal_wire_in_t *in)
{
    pthread_mutex_lock(&self->lock);
    int rc = s_recv_locked(self, in);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

static int s_recv_locked(s_exec_t *self, shoal_wire_in_t *in)
{
    memset(in, 0, sizeof *in);
    while (true) {
        int rc = shoal_chan_recv(self->chan, &in->msg);
        if (rc == 0)
            return 0;
        if (rc == SHOAL_EPROTO || rc == SHOAL_EVERSION) {
            S_WARN(self, "executor %d: malformed message from the worker: %s", self->slot,
                   shoal_strerror(rc));
            continue;
        }
        if (rc != SHOAL_EAGAIN && rc != SHOAL_ENOMEM)
            return rc == SHOAL_EIO ? SHOAL_EUNREACH : rc;
        struct pollfd pfd = {shoal_chan_fd(self->chan), POLLIN, 0};
        if (poll(&pfd, 1, S_POLL_MS) < 0 && errno != EINTR)
            return SHOAL_EIO;
        if (!s_worker_alive(self))
            return SHOAL_EUNREACH;
    }
}

static void s_pending_push(s_exec_t *self, shoal_wire_in_t *in)
{
    s_pending_t *p = malloc(sizeof *p);
    if (!p) {
        S_WARN(self, "executor %d: out of memory; dropping a task batch", self->slot);
        shoal_wire_in_clear(in);
        return;
    }
    p->in = *in;
    p->next = NULL;
    if (self->pending_tail)
        self->pending_tail->next = p;
    else
        self->pending = p;
    self->pending_tail = p;
}

//  Waits for a message of the given type; e_run batches that arrive meanwhile are kept.
static int s_await(s_exec_t *self, int type, shoal_wire_in_t *in)
{
    while (true) {
        int rc = s_recv(self, in);
        if (rc)
            return rc;
        if (in->msg.type == type)
            return 0;
        if (in->msg.type == SHOAL_MSG_e_run) {
            s_pending_push(self, in);
            continue;
        }
        S_WARN(self, "executor %d: unexpected '%s' from the worker", self->slot,
               shoal_msg_name(in->msg.type));
        shoal_wire_in_clear(in);
    }
}

/*  --------------------------------------------------------------------------- files */

static void s_remove_at(int at, const char *name, int depth)
{
    if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
        return;
    if (depth >= 64) //  deeper trees are left behind rather than risk the stack and fds
        return;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        fchmodat(at, name, 0700, 0);
        fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd >= 0) {
        fchmod(fd, 0700); //  so its entries can be unlinked
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
        } else {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                s_remove_at(dirfd(d), e->d_name, depth + 1);
            }
            closedir(d);
        }
    }
    unlinkat(at, name, AT_REMOVEDIR);
}

void shoal__tree_remove(const char *path)
{
    if (path && *path)
        s_remove_at(AT_FDCWD, path, 0);
}

//  Writes size bytes at data into a new file at path.
static int s_write_file(const char *path, const uint8_t *data, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    uint64_t done = 0;
    while (done < size) {
        size_t n = (size_t)SHOAL__MIN(size - done, (uint64_t)S_COPY_CHUNK);
        ssize_t w = write(fd, data + done, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = w < 0 ? errno : EIO;
            close(fd);
            return -err;
        }
        done += (uint64_t)w;
    }
    if (close(fd) != 0)
        return -errno;
    return 0;
}

//  Reads exactly size bytes of the file at path into buf. 0 or a negative errno.
static int s_read_file(const char *path, uint8_t *buf, uint64_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t done = 0;
    while (done < size) {
        size_t n = (size_t)SHOAL__MIN(size - done, (uint64_t)S_COPY_CHUNK);
        ssize_t r = read(fd, buf + done, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { //  the file shrank since we measured it
            int err = r < 0 ? errno : EIO;
            close(fd);
            return -err;
        }
        done += (uint64_t)r;
    }
    close(fd);
    return 0;
}

//  Size of a regular file. 0, -ENOENT, or another negative errno (-EISDIR: not a file).
static int s_file_size(const char *path, uint64_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EISDIR;
    *size = (uint64_t)st.st_size;
    return 0;
}

static char *s_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/*  ------------------------------------------------------------------------ outputs */

//  Forgets o's entries (their bytes are in the bump arena: they go with it).
static void s_outcome_clear(s_outcome_t *o)
{
    o->stdout_tail = NULL;
    o->stdout_tail_size = 0;
    for (size_t i = 0; i < o->n_outs; i++)
        free(o->outs[i].path);
    o->n_outs = 0;
}

//  Room for n entries in o->outs (the executor's buffer). false: out of memory.
static bool s_outs_reserve(s_exec_t *self, size_t n)
{
    if (n > self->cap_outs) {
        s_out_t *p = realloc(self->outs_buf, n * sizeof *p);
        if (!p)
            return false;
        self->outs_buf = p;
        self->cap_outs = n;
    }
    self->outcome.outs = self->outs_buf;
    return true;
}

//  Reads the log's size and tail (the end of stderr).
static void s_take_log(s_outcome_t *o, const char *path)
{
    uint64_t size = 0;
    if (s_file_size(path, &size) != 0)
        return;
    o->has_log = true;
    o->log_size = size;
    size_t n = (size_t)SHOAL__MIN(size, (uint64_t)S_LOG_TAIL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r = pread(fd, o->log_tail, n, (off_t)(size - n));
    o->log_tail_size = r > 0 ? (size_t)r : 0;
    close(fd);
}

//  Reads the end of a failed command's stdout into o->stdout_tail.
static void s_take_stdout_tail(s_exec_t *self, s_outcome_t *o, const char *path)
{
    uint64_t size = 0;
    if (s_file_size(path, &size) != 0 || size == 0)
        return;
    size_t n = (size_t)SHOAL__MIN(size, (uint64_t)SHOAL_INLINE_MAX);
    o->stdout_tail = s_bump_alloc(&self->bump, n);
    int fd = o->stdout_tail ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t r = fd >= 0 ? pread(fd, o->stdout_tail, n, (off_t)(size - n)) : -1;
    if (fd >= 0)
        close(fd);
    o->stdout_tail_size = r > 0 ? (size_t)r : 0;
}

//  Decides which entries travel inline, asks the worker for space for the others and
//  copies their bytes into it. On failure the outcome fails and keeps only what is inline.
static void s_deliver(s_exec_t *self, const shoal_wire_e_task_t *et, s_outcome_t *o)
{
    if (!o->n_outs)
        return;
    //  e_alloc names every output and the log, in index order (worker.h).
    size_t n_sizes = (et->task.n_outputs ? (size_t)et->task.n_outputs : 1) + 1;
    uint64_t *sizes = malloc(n_sizes * sizeof *sizes);
    if (!sizes) {
        s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
        s_outcome_clear(o);
        return;
    }
    for (size_t i = 0; i < n_sizes; i++)
        sizes[i] = SHOAL_EXEC_INLINE;
    uint64_t budget = S_INLINE_BUDGET;
    size_t n_alloc = 0;
    for (size_t i = 0; i < o->n_outs; i++) {
        s_out_t *out = &o->outs[i];
        if (out->size <= SHOAL_INLINE_MAX && out->size <= budget) {
            out->is_inline = true;
            budget -= out->size;
        } else {
            sizes[out->index] = out->size;
            n_alloc++;
        }
    }
    bool alloc_ok = true;
    if (n_alloc) {
        shoal_wire_e_alloc_t req = {
            .id = et->task.id, .attempt = et->attempt, .sizes = {sizes, n_sizes}};
        shoal_wire_in_t in;
        int rc = s_send(self, SHOAL_MSG_e_alloc, &req);
        if (rc == 0)
            rc = s_await(self, SHOAL_MSG_e_alloc_ok, &in);
        if (rc) {
            s_fail(o, rc, 0, "cannot ask the worker for output space: %s", shoal_strerror(rc));
            alloc_ok = false;
        } else {
            shoal_wire_e_alloc_ok_t *ok = &in.msg.u.e_alloc_ok;
            if (ok->code) {
                s_fail(o, ok->code < 0 ? (int)ok->code : SHOAL_EIO, 0, "%s",
                       ok->error ? ok->error : shoal_strerror((int)ok->code));
                alloc_ok = false;
            } else if (ok->offsets.count != n_sizes) {
                s_fail(o, SHOAL_EPROTO, 0, "worker answered e_alloc with %zu offsets for %zu",
                       ok->offsets.count, n_sizes);
                alloc_ok = false;
            } else {
                for (size_t i = 0; i < o->n_outs; i++)
                    o->outs[i].offset = ok->offsets.items[o->outs[i].index];
            }
            shoal_wire_in_clear(&in);
        }
    }
    free(sizes);
    //  Copy the bytes: inline ones into memory, the others into their arena range.
    bool *keep = calloc(o->n_outs, sizeof *keep);
    if (!keep) {
        s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
        s_outcome_clear(o);
        return;
    }
    for (size_t i = 0; i < o->n_outs; i++) {
        s_out_t *out = &o->outs[i];
        keep[i] = out->is_inline || alloc_ok;
        if (keep[i] && out->path && out->is_inline) {
            out->data = s_bump_alloc(&self->bump, out->size);
            int err = out->data ? s_read_file(out->path, out->data, out->size) : -ENOMEM;
            if (err) {
                s_fail(o, SHOAL_EIO, 0, "cannot read %s: %s", out->path, strerror(-err));
                keep[i] = false;
            }
        } else if (keep[i] && !out->is_inline) {
            void *p = NULL;
            int rc = shoal_arena_map_range(self->arena_path, out->offset, out->size, &p);
            int err = 0;
            if (rc == 0) {
                if (out->path)
                    err = s_read_file(out->path, p, out->size);
                else
                    memcpy(p, out->data, out->size);
                shoal_arena_unmap(p, out->size);
            }
            if (rc || err) {
                s_fail(o, SHOAL_EIO, 0, "cannot write %llu bytes into the store: %s",
                       (unsigned long long)out->size, rc ? shoal_strerror(rc) : strerror(-err));
                keep[i] = false;
            }
        }
    }
    //  A failed task reports only its log (worker.h); entries dropped here lose their
    //  allocation, which the worker aborts since the e_done does not name it.
    size_t kept = 0;
    for (size_t i = 0; i < o->n_outs; i++) {
        s_out_t *out = &o->outs[i];
        if (keep[i] && (o->status == 0 || out->is_log))
            o->outs[kept++] = *out;
        else
            free(out->path);
    }
    o->n_outs = kept;
    free(keep);
}

//  Where an input's bytes are: in the arena, or in the e_run itself (worker.h: a small
//  input the broker sent inline). NULL when the worker named bytes that are not there.
static const uint8_t *s_input_bytes(s_exec_t *self, const shoal_wire_e_input_t *in)
{
    if (in->offset == SHOAL_EXEC_INLINE)
        return in->data.size == in->size ? (in->size ? in->data.data : (const uint8_t *)"") : NULL;
    if (in->offset > self->arena_size || in->size > self->arena_size - in->offset)
        return NULL;
    return self->arena + in->offset;
}

static int s_send(s_exec_t *self, int type, const void *body);
static int s_await(s_exec_t *self, int type, shoal_wire_in_t *in);

/*  One e_read round trip for input ref, which is being written: the worker answers once
    bytes lie beyond offset, at the seal, at an abort, or after wait_ms. Raises *ready
    (at most size) and sets *final at the seal. gen: the input's allocation generation
    when the task got it; another one in the answer means the input was aborted and a
    retry of its producer allocated it anew, maybe elsewhere in the arena, so reading on
    at the old offset would splice two allocations: SHOAL_ECANCELED, as for an abort.
    0, or a code with err saying why. */
static int s_input_wait(s_exec_t *self, shoal_ref_t ref, uint64_t gen, uint64_t offset,
                        uint64_t size, uint64_t wait_ms, uint64_t *ready, bool *final, char *err,
                        size_t err_size)
{
    shoal_wire_e_read_t req = {.ref = ref, .offset = offset, .wait_ms = wait_ms};
    shoal_wire_in_t m;
    int rc = s_send(self, SHOAL_MSG_e_read, &req);
    if (rc == 0)
        rc = s_await(self, SHOAL_MSG_e_ready, &m);
    if (rc) {
        snprintf(err, err_size, "cannot ask the worker how far an input is written: %s",
                 shoal_strerror(rc));
        return SHOAL_EIO;
    }
    const shoal_wire_e_ready_t *r = &m.msg.u.e_ready;
    if (r->code < 0) {
        rc = r->code > -1000 ? (int)r->code : SHOAL_EIO;
        snprintf(err, err_size, "%s", r->error ? r->error : shoal_strerror(rc));
    } else if (shoal_ref_equal(r->ref, ref) && r->gen != gen) {
        char text[SHOAL_REF_TEXT_SIZE];
        rc = SHOAL_ECANCELED;
        snprintf(err, err_size,
                 "object %s was aborted and allocated anew (generation %llu, read from "
                 "generation %llu) while this task read it",
                 shoal_ref_format(ref, text), (unsigned long long)r->gen, (unsigned long long)gen);
    } else if (shoal_ref_equal(r->ref, ref)) {
        *ready = SHOAL__MAX(*ready, SHOAL__MIN(r->ready, size));
        *final = *final || r->final;
    }
    shoal_wire_in_clear(&m);
    return rc;
}

//  Whether a code from s_input_wait says the input was aborted (or removed) under us.
static bool s_input_aborted(int rc)
{
    return rc == SHOAL_ECANCELED || rc == SHOAL_ENOTFOUND;
}

/*  ------------------------------------------------------------------------ exec kind */

//  A growable NULL-terminated vector of owned strings (an envp).
typedef struct {
    char **items;
    size_t n, cap;
} s_strv_t;

static int s_strv_push(s_strv_t *v, char *s)
{
    if (!s)
        return SHOAL_ENOMEM;
    if (v->n + 1 >= v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        char **p = realloc(v->items, cap * sizeof *p);
        if (!p) {
            free(s);
            return SHOAL_ENOMEM;
        }
        v->items = p;
        v->cap = cap;
    }
    v->items[v->n++] = s;
    v->items[v->n] = NULL;
    return 0;
}

static void s_strv_free(s_strv_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

//  Variables the executor sets for each task; inherited ones of the same names go.
static bool s_env_is_ours(const char *entry)
{
    static const char *const prefixes[] = {"SHOAL_INPUT_", "SHOAL_OUTPUT_", "SHOAL_TASK_",
                                           SHOAL_EXEC_SCRATCH_ENV "=", SHOAL_EXEC_PROGRESS_ENV "="};
    for (size_t i = 0; i < SHOAL__ARRAY_SIZE(prefixes); i++)
        if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

//  The scratch of one exec task: DIR (fresh, mkdtemp), DIR/io for the files shoal hands
//  over (inputs, outputs, stdout, stderr), DIR/work the task's empty working directory.
//  Sizes leave room for the file names appended below within PATH_MAX.
typedef struct {
    char dir[3072], io[3100], work[3100];
} s_scratch_t;

static int s_scratch_make(s_exec_t *self, s_scratch_t *sc)
{
    int err = shoal__mkdir_p(self->scratch_base, 0700);
    if (err)
        return err;
    if (snprintf(sc->dir, sizeof sc->dir, "%s/task-XXXXXX", self->scratch_base) >=
        (int)sizeof sc->dir) {
        sc->dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(sc->dir)) {
        sc->dir[0] = '\0';
        return -errno;
    }
    snprintf(sc->io, sizeof sc->io, "%s/io", sc->dir);
    snprintf(sc->work, sizeof sc->work, "%s/work", sc->dir);
    if (mkdir(sc->io, 0700) != 0 || mkdir(sc->work, 0700) != 0)
        return -errno;
    return 0;
}

//  The child between fork and exec: only async-signal-safe calls, since the executor
//  runs libzmq threads. It stays in the executor's process group (the worker kills the
//  group) and dies with the executor.
static void s_child(pid_t parent, const s_scratch_t *sc, const int fds[3], int errfd, char **argv,
                    char **envp) __attribute__((noreturn));
static void s_child(pid_t parent, const s_scratch_t *sc, const int fds[3], int errfd, char **argv,
                    char **envp)
{
    int err = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) //  the executor died before prctl took effect
        _exit(127);
    //  Exec keeps ignored dispositions; task code expects the defaults (SIGPIPE above all).
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < 3 && !err; i++)
        if (dup2(fds[i], i) < 0)
            err = errno;
    //  Nothing of the executor's (sockets, the arena) leaks into task code; errfd is
    //  close-on-exec already and must stay open until exec.
    close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
    if (!err && chdir(sc->work) != 0)
        err = errno;
    if (!err) {
        execvpe(argv[0], argv, envp);
        err = errno;
    }
    ssize_t rc = write(errfd, &err, sizeof err);
    (void)rc;
    _exit(127);
}

static void s_describe_signal(char *buf, size_t size, int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, size, "killed by signal %d (SIG%s)", sig, abbrev);
    else
        snprintf(buf, size, "killed by signal %d", sig);
}

/*  Writes input in (ref) to fd as it lands (e_read while it is being written). A command
    that stops reading (EPIPE, or its stdin closed: seen between rounds, so within a
    second of its exit) is fine. 0, or a code with err saying why. */
static int s_feed(s_exec_t *self, shoal_ref_t ref, const shoal_wire_e_input_t *in, int fd,
                  char *err, size_t err_size)
{
    const uint8_t *bytes = s_input_bytes(self, in);
    bool final = !in->stream;
    uint64_t ready = final ? in->size : 0, off = 0;
    while (off < in->size) {
        if (off < ready) {
            ssize_t w = write(fd, bytes + off, (size_t)SHOAL__MIN(ready - off, (uint64_t)1 << 20));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno == EPIPE)
                return 0; //  the command is done with its input
            if (w < 0) {
                snprintf(err, err_size, "writing to the command's stdin: %s", strerror(errno));
                return SHOAL_EIO;
            }
            off += (uint64_t)w;
            continue;
        }
        //  Everything landed is written: a command that has exited (`head -c 5`) or closed
        //  its stdin would otherwise keep the task running until more bytes land, maybe
        //  never. The write end of a pipe with no reader polls POLLERR.
        struct pollfd pfd = {.fd = fd};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP)))
            return 0;
        //  At most a second a round: the worker answers at the latest then, and the
        //  writer's lease (or its executor's death) ends a silent input.
        int rc =
            s_input_wait(self, ref, in->gen, off, in->size, 1000, &ready, &final, err, err_size);
        if (rc)
            return rc;
    }
    return 0;
}

/*  Runs the command; sets o's status from how it ended. stdin_i: the input piped to its
    stdin as it lands (--stdin-input), or SIZE_MAX for /dev/null. */
static void s_spawn_and_wait(s_exec_t *self, const shoal_wire_e_task_t *et, size_t stdin_i,
                             const s_scratch_t *sc, char **envp, s_outcome_t *o)
{
    const shoal_wire_task_t *t = &et->task;
    char path[PATH_MAX];
    int fds[3] = {-1, -1, -1};
    int pipefd[2] = {-1, -1};
    int feed = -1; //  the write end of the command's stdin
    const char *cmd = t->argv.items[0];
    if (stdin_i != SIZE_MAX) {
        int in_pipe[2];
        if (pipe2(in_pipe, O_CLOEXEC) == 0) {
            fds[0] = in_pipe[0];
            feed = in_pipe[1];
        }
    } else
        fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/stdout", sc->io);
    fds[1] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    snprintf(path, sizeof path, "%s/stderr", sc->io);
    fds[2] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
        s_fail(o, SHOAL_EIO, 0, "cannot prepare the files of the task in %s: %s", sc->io,
               strerror(errno));
        goto done;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        s_fail(o, SHOAL_EIO, 0, "cannot fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0)
        s_child(parent, sc, fds, pipefd[1], t->argv.items, envp);
    close(pipefd[1]);
    pipefd[1] = -1;
    int exec_err = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &exec_err, sizeof exec_err);
    while (n < 0 && errno == EINTR);
    int feed_rc = 0;
    char feed_err[512] = "";
    if (feed >= 0) {
        close(fds[0]);
        fds[0] = -1;
        if (n != (ssize_t)sizeof exec_err) //  it runs: its stdin gets the input as it lands
            feed_rc = s_feed(self, t->inputs.items[stdin_i], &et->inputs.items[stdin_i], feed,
                             feed_err, sizeof feed_err);
        close(feed); //  end of input
        feed = -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (feed_rc) {
        //  An input aborted under the task (its writer aborted it, or the executor writing
        //  it died and its producer may be retried) fails the task as a failed input does,
        //  with SHOAL_ETASK so its retries apply: SHOAL_ECANCELED would read as a cancel.
        char text[SHOAL_REF_TEXT_SIZE];
        s_fail(o, s_input_aborted(feed_rc) ? SHOAL_ETASK : feed_rc, 0,
               "input %zu (%s), the command's stdin, failed: %s", stdin_i,
               shoal_ref_format(t->inputs.items[stdin_i], text), feed_err);
    } else if (n == (ssize_t)sizeof exec_err) {
        if (exec_err == ENOENT || exec_err == ENOTDIR)
            s_fail(o, SHOAL_ENOTFOUND, 127, "command not found: %s", cmd);
        else
            s_fail(o, SHOAL_ENOTFOUND, 126, "cannot execute %s: %s", cmd, strerror(exec_err));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        s_fail(o, SHOAL_ETASK, WEXITSTATUS(status), "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        char text[64];
        s_describe_signal(text, sizeof text, WTERMSIG(status));
        s_fail(o, SHOAL_ETASK, -WTERMSIG(status), "%s", text);
    }
done:
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (int i = 0; i < 2; i++)
        if (pipefd[i] >= 0)
            close(pipefd[i]);
    if (feed >= 0)
        close(feed);
}

static void s_run_exec(s_exec_t *self, const shoal_wire_e_task_t *et, s_outcome_t *o)
{
    const shoal_wire_task_t *t = &et->task;
    if (t->argv.count == 0 || !t->argv.items[0] || !t->argv.items[0][0]) {
        s_fail(o, SHOAL_EINVAL, 0, "exec task without a command");
        return;
    }
    for (size_t i = 0; i < t->argv.count; i++)
        if (!t->argv.items[i]) {
            s_fail(o, SHOAL_EINVAL, 0, "exec task with a nil argument %zu", i);
            return;
        }
    size_t n_outputs = t->n_outputs ? (size_t)t->n_outputs : 1;
    if (n_outputs > SHOAL_MAX_OUTPUTS) {
        s_fail(o, SHOAL_EINVAL, 0, "%zu outputs; at most %d", n_outputs, SHOAL_MAX_OUTPUTS);
        return;
    }
    s_scratch_t sc;
    memset(&sc, 0, sizeof sc);
    int err = s_scratch_make(self, &sc);
    if (err) {
        s_fail(o, SHOAL_EIO, 0, "cannot create a scratch directory under %s: %s",
               self->scratch_base, strerror(-err));
        shoal__tree_remove(sc.dir);
        return;
    }
    s_strv_t env = {0};
    char ref_text[SHOAL_REF_TEXT_SIZE];
    //  --stdin-input: the one input (task.stream of an exec task) piped to its stdin.
    size_t stdin_i = SIZE_MAX;
    for (size_t i = 0; i < et->inputs.count && i < SHOAL_STREAM_INPUTS_MAX; i++)
        if (t->stream >> i & 1) {
            stdin_i = i;
            break;
        }
    for (size_t i = 0; i < et->inputs.count; i++) {
        const uint8_t *bytes = s_input_bytes(self, &et->inputs.items[i]);
        if (!bytes) {
            s_fail(o, SHOAL_EINVAL, 0, "input %zu lies outside the arena", i);
            goto done;
        }
        if (i == stdin_i) { //  no file: it may still be written
            if (s_strv_push(&env, s_strdupf("SHOAL_INPUT_%zu=/dev/stdin", i)))
                goto nomem;
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/input-%zu", sc.io, i);
        err = s_write_file(path, bytes, et->inputs.items[i].size);
        if (err) {
            s_fail(o, SHOAL_EIO, 0, "cannot write input %zu to %s: %s", i, path, strerror(-err));
            goto done;
        }
        if (s_strv_push(&env, s_strdupf("SHOAL_INPUT_%zu=%s", i, path)))
            goto nomem;
    }
    for (size_t i = 1; i < n_outputs; i++)
        if (s_strv_push(&env, s_strdupf("SHOAL_OUTPUT_%zu=%s/output-%zu", i, sc.io, i)))
            goto nomem;
    if (s_strv_push(&env, s_strdupf("SHOAL_TASK_ID=%s", shoal_ref_format(t->id, ref_text))) ||
        s_strv_push(&env, s_strdupf("SHOAL_TASK_INDEX=%llu", (unsigned long long)t->array_index)))
        goto nomem;
    for (char **e = environ; *e; e++)
        if (!s_env_is_ours(*e) && s_strv_push(&env, strdup(*e)))
            goto nomem;

    s_spawn_and_wait(self, et, stdin_i, &sc, env.items, o);

    //  Outputs (when the command succeeded), then the log (always).
    if (!s_outs_reserve(self, n_outputs + 1))
        goto nomem;
    memset(o->outs, 0, (n_outputs + 1) * sizeof *o->outs);
    if (o->status == 0) {
        for (size_t i = 0; i < n_outputs; i++) {
            s_out_t *out = &o->outs[o->n_outs];
            out->index = i;
            out->path =
                i == 0 ? s_strdupf("%s/stdout", sc.io) : s_strdupf("%s/output-%zu", sc.io, i);
            if (!out->path)
                goto nomem;
            o->n_outs++;
            err = s_file_size(out->path, &out->size);
            if (err == -ENOENT)
                s_fail(o, SHOAL_ETASK, 0, "output %zu was not written ($SHOAL_OUTPUT_%zu)", i, i);
            else if (err == -EISDIR)
                s_fail(o, SHOAL_ETASK, 0, "output %zu ($SHOAL_OUTPUT_%zu) is not a regular file", i,
                       i);
            else if (err)
                s_fail(o, SHOAL_EIO, 0, "cannot read output %zu: %s", i, strerror(-err));
            if (err)
                break;
        }
    }
    char log_path[PATH_MAX];
    snprintf(log_path, sizeof log_path, "%s/stderr", sc.io);
    s_take_log(o, log_path);
    if (o->has_log) {
        s_out_t *out = &o->outs[o->n_outs];
        out->path = strdup(log_path);
        if (!out->path)
            goto nomem;
        out->size = o->log_size;
        out->is_log = true;
        out->index = n_outputs;
        o->n_outs++;
    }
    if (o->status == SHOAL_ETASK) {
        //  The command ran and failed: the end of its stdout is often the explanation.
        char out_path[PATH_MAX];
        snprintf(out_path, sizeof out_path, "%s/stdout", sc.io);
        s_take_stdout_tail(self, o, out_path);
    }
    if (o->status) { //  only the log travels for a failed task
        size_t kept = 0;
        for (size_t i = 0; i < o->n_outs; i++) {
            if (o->outs[i].is_log)
                o->outs[kept++] = o->outs[i];
            else
                free(o->outs[i].path);
        }
        o->n_outs = kept;
    }
    s_deliver(self, et, o);
    goto done;
nomem:
    s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
    s_outcome_clear(o);
done:
    s_strv_free(&env);
    shoal__tree_remove(sc.dir);
}

/*  -------------------------------------------------------------------------- fn kind */

//  Asks the worker for arena space for one result entry (output index, or n_outputs for
//  the log) and gives its offset. Several e_alloc per task are fine (worker.h): each names
//  one entry, the others SHOAL_EXEC_INLINE. On failure err says why.
static int s_alloc_one(s_exec_t *self, const shoal_wire_e_task_t *et, size_t n_outputs,
                       size_t index, uint64_t size, uint64_t *offset, char *err, size_t err_size)
{
    uint64_t *sizes = malloc((n_outputs + 1) * sizeof *sizes);
    if (!sizes) {
        snprintf(err, err_size, "executor out of memory");
        return SHOAL_ENOMEM;
    }
    for (size_t i = 0; i <= n_outputs; i++)
        sizes[i] = SHOAL_EXEC_INLINE;
    sizes[index] = size;
    shoal_wire_e_alloc_t req = {
        .id = et->task.id, .attempt = et->attempt, .sizes = {sizes, n_outputs + 1}};
    shoal_wire_in_t in;
    int rc = s_send(self, SHOAL_MSG_e_alloc, &req);
    if (rc == 0)
        rc = s_await(self, SHOAL_MSG_e_alloc_ok, &in);
    free(sizes);
    if (rc) {
        snprintf(err, err_size, "cannot ask the worker for output space: %s", shoal_strerror(rc));
        return rc == SHOAL_ENOMEM ? rc : SHOAL_EIO;
    }
    const shoal_wire_e_alloc_ok_t *ok = &in.msg.u.e_alloc_ok;
    if (ok->code) {
        rc = ok->code < 0 && ok->code > -1000 ? (int)ok->code : SHOAL_EIO;
        snprintf(err, err_size, "%s", ok->error ? ok->error : shoal_strerror(rc));
    } else if (ok->offsets.count != n_outputs + 1 ||
               ok->offsets.items[index] == SHOAL_EXEC_INLINE) {
        rc = SHOAL_EIO;
        snprintf(err, err_size, "the worker answered e_alloc with %zu offsets for %zu",
                 ok->offsets.count, n_outputs + 1);
    } else {
        *offset = ok->offsets.items[index];
    }
    shoal_wire_in_clear(&in);
    return rc;
}

//  The function table (shoal.h). Every entry checks what the plugin hands it: misuse is
//  an error code, never a crash of the executor.

static s_fn_task_t *s_fn_task(shoal_task_t *t)
{
    s_fn_task_t *f = (s_fn_task_t *)t;
    return f && f->running ? f : NULL;
}

static const void *s_api_arg(shoal_task_t *t, size_t *size)
{
    s_fn_task_t *f = s_fn_task(t);
    if (size)
        *size = f ? f->arg_size : 0;
    return f ? (const void *)f->arg : "";
}

static uint64_t s_api_index(shoal_task_t *t)
{
    s_fn_task_t *f = s_fn_task(t);
    return f ? f->et->task.array_index : 0;
}

static shoal_ref_t s_api_id(shoal_task_t *t)
{
    s_fn_task_t *f = s_fn_task(t);
    shoal_ref_t none = {0, 0};
    return f ? f->et->task.id : none;
}

static size_t s_api_n_inputs(shoal_task_t *t)
{
    s_fn_task_t *f = s_fn_task(t);
    return f ? f->et->inputs.count : 0;
}

static int s_api_input(shoal_task_t *t, size_t i, const void **data, size_t *size)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f)
        return t ? SHOAL_ESTATE : SHOAL_EINVAL;
    if (!data || !size || i >= f->et->inputs.count)
        return SHOAL_EINVAL;
    //  Bounds were checked before the call (s_run_fn).
    const shoal_wire_e_input_t *in = &f->et->inputs.items[i];
    *data = s_input_bytes(f->exec, in);
    *size = (size_t)in->size;
    //  Still being written: only what shoal_task_input_read returned is there.
    return in->stream && !(f->in_final >> i & 1) ? SHOAL_EAGAIN : 0;
}

static int s_api_input_read(shoal_task_t *t, size_t i, uint64_t offset, void *buf, size_t n,
                            int timeout_ms)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f)
        return t ? SHOAL_ESTATE : SHOAL_EINVAL;
    if ((n && !buf) || i >= f->et->inputs.count)
        return SHOAL_EINVAL;
    const shoal_wire_e_input_t *in = &f->et->inputs.items[i];
    if (offset > in->size)
        return SHOAL_EINVAL;
    n = SHOAL__MIN(n, (size_t)INT_MAX);
    const uint8_t *bytes = s_input_bytes(f->exec, in);
    bool stream = in->stream && i < SHOAL_STREAM_INPUTS_MAX;
    int64_t deadline = timeout_ms < 0 ? -1 : shoal__now_ms() + timeout_ms;
    for (;;) {
        bool final = !stream || (f->in_final >> i & 1);
        uint64_t ready = stream && !final ? f->in_ready[i] : in->size;
        if (offset < ready || final || n == 0) {
            size_t k = (size_t)SHOAL__MIN((uint64_t)n, ready > offset ? ready - offset : 0);
            if (k)
                memcpy(buf, bytes + offset, k);
            return (int)k;
        }
        int64_t left = deadline < 0 ? 1000 : deadline - shoal__now_ms();
        if (left <= 0)
            return SHOAL_ETIMEDOUT;
        //  The worker holds the ask until bytes land beyond offset (at most wait_ms).
        bool sealed = false;
        int rc = s_input_wait(f->exec, f->et->task.inputs.items[i], in->gen, offset, in->size,
                              (uint64_t)SHOAL__MIN(left, (int64_t)1000), &f->in_ready[i], &sealed,
                              f->alloc_error, sizeof f->alloc_error);
        if (sealed)
            f->in_final |= 1ull << i;
        if (rc && s_input_aborted(rc) && !f->in_aborted) {
            f->in_aborted = i + 1;
            snprintf(f->in_error, sizeof f->in_error, "%s", f->alloc_error);
        }
        if (rc)
            return rc;
    }
}

static size_t s_api_n_outputs(shoal_task_t *t)
{
    s_fn_task_t *f = s_fn_task(t);
    return f ? f->n_outputs : 0;
}

static int s_api_output_alloc(shoal_task_t *t, size_t i, size_t size, void **data)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f)
        return t ? SHOAL_ESTATE : SHOAL_EINVAL;
    if (!data || i >= f->n_outputs)
        return SHOAL_EINVAL;
    s_fn_out_t *out = &f->outs[i];
    if (out->state != S_FN_EMPTY)
        return SHOAL_ESTATE;
    //  Small outputs live here and travel inline in the result: no round trip to the worker.
    if (size <= SHOAL_INLINE_MAX && size <= f->inline_budget) {
        out->data = s_bump_alloc(&f->exec->bump, size);
        if (!out->data) {
            snprintf(f->alloc_error, sizeof f->alloc_error,
                     "out of memory for output %zu (%zu bytes)", i, size);
            return SHOAL_ENOMEM;
        }
        f->inline_budget -= size;
        out->in_arena = false;
    } else {
        uint64_t offset = 0;
        int rc = s_alloc_one(f->exec, f->et, f->n_outputs, i, size, &offset, f->alloc_error,
                             sizeof f->alloc_error);
        if (rc)
            return rc;
        void *p = NULL;
        //  The worker aborts this allocation at e_done if mapping fails: it is not named.
        rc = shoal_arena_map_range(f->exec->arena_path, offset, size, &p);
        if (rc) {
            snprintf(f->alloc_error, sizeof f->alloc_error,
                     "cannot map output %zu (%zu bytes at %llu of the store): %s", i, size,
                     (unsigned long long)offset, shoal_strerror(rc));
            return SHOAL_EIO;
        }
        out->data = p;
        out->offset = offset;
        out->in_arena = true;
    }
    out->size = size;
    out->state = S_FN_ALLOCATED;
    *data = out->data;
    return 0;
}

/*  The output's entry in the progress page (worker.h), claimed on first use; NULL when
    there is no page or no free entry. */
static shoal_exec_stream_t *s_stream_entry(s_fn_task_t *f, size_t i)
{
    s_fn_out_t *out = &f->outs[i];
    shoal_exec_progress_t *pg = f->exec->progress;
    if (!pg)
        return NULL;
    if (out->stream)
        return &pg->streams[out->stream - 1];
    for (int k = 0; k < SHOAL_EXEC_STREAMS; k++) {
        shoal_exec_stream_t *e = &pg->streams[k];
        if (atomic_load_explicit(&e->ref_hi, memory_order_relaxed) ||
            atomic_load_explicit(&e->ref_lo, memory_order_relaxed))
            continue;
        shoal_ref_t ref = shoal_ref_output(f->et->task.id, (uint16_t)i);
        atomic_store_explicit(&e->ready, 0, memory_order_relaxed);
        atomic_store_explicit(&e->ref_lo, ref.lo, memory_order_release);
        atomic_store_explicit(&e->ref_hi, ref.hi, memory_order_release);
        out->stream = k + 1;
        return e;
    }
    return NULL;
}

static int s_api_output_progress(shoal_task_t *t, size_t i, size_t bytes)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f)
        return t ? SHOAL_ESTATE : SHOAL_EINVAL;
    if (i >= f->n_outputs)
        return SHOAL_EINVAL;
    s_fn_out_t *out = &f->outs[i];
    if (out->state != S_FN_ALLOCATED)
        return SHOAL_ESTATE;
    if (bytes > out->size || bytes < out->ready)
        return SHOAL_EINVAL;
    out->ready = bytes;
    shoal_exec_stream_t *e = out->in_arena ? s_stream_entry(f, i) : NULL;
    if (e) //  release: the bytes written before are visible to whoever sees the count
        atomic_store_explicit(&e->ready, bytes, memory_order_release);
    return 0;
}

//  Frees the progress page's stream entries (the task function has returned).
static void s_streams_clear(s_exec_t *self)
{
    if (!self->progress)
        return;
    for (int k = 0; k < SHOAL_EXEC_STREAMS; k++) {
        shoal_exec_stream_t *e = &self->progress->streams[k];
        atomic_store_explicit(&e->ref_hi, 0, memory_order_release);
        atomic_store_explicit(&e->ref_lo, 0, memory_order_release);
    }
}

static int s_api_output_seal(shoal_task_t *t, size_t i)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f)
        return t ? SHOAL_ESTATE : SHOAL_EINVAL;
    if (i >= f->n_outputs)
        return SHOAL_EINVAL;
    s_fn_out_t *out = &f->outs[i];
    if (out->state != S_FN_ALLOCATED)
        return SHOAL_ESTATE;
    if (out->in_arena) { //  the bytes are in the store: our writable window closes
        shoal_arena_unmap(out->data, out->size);
        out->data = NULL;
        if (out->stream) //  all final: readers need not wait for the result
            atomic_store_explicit(&f->exec->progress->streams[out->stream - 1].ready, out->size,
                                  memory_order_release);
    }
    out->state = S_FN_SEALED;
    return 0;
}

static int s_api_output_put(shoal_task_t *t, size_t i, const void *data, size_t size)
{
    if (!data && size)
        return SHOAL_EINVAL;
    void *p = NULL;
    int rc = s_api_output_alloc(t, i, size, &p);
    if (rc)
        return rc;
    if (size)
        memcpy(p, data, size);
    return s_api_output_seal(t, i);
}

static void s_api_set_error(shoal_task_t *t, const char *fmt, va_list ap)
{
    s_fn_task_t *f = s_fn_task(t);
    if (!f || !fmt)
        return;
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    f->has_error = true;
}

static const shoal_task_api_t s_api = {
    .size = sizeof(shoal_task_api_t),
    .version = SHOAL_TASK_API_VERSION,
    .arg = s_api_arg,
    .index = s_api_index,
    .id = s_api_id,
    .n_inputs = s_api_n_inputs,
    .input = s_api_input,
    .n_outputs = s_api_n_outputs,
    .output_alloc = s_api_output_alloc,
    .output_seal = s_api_output_seal,
    .output_put = s_api_output_put,
    .set_error = s_api_set_error,
    .strerror = shoal_strerror,
    .output_progress = s_api_output_progress,
    .input_read = s_api_input_read,
};

//  Finds the function of "LIB:SYMBOL" (split at the last ':', so LIB may hold colons),
//  loading LIB once per executor. NULL with o failed when it cannot.
static shoal_task_fn_t *s_resolve(s_exec_t *self, const char *fn, s_outcome_t *o)
{
    if (self->last_fn && strcmp(self->last_fn, fn) == 0)
        return self->last_call;
    const char *colon = strrchr(fn, ':');
    char *path = strndup(fn, (size_t)(colon - fn));
    if (!path) {
        s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
        return NULL;
    }
    const char *symbol = colon + 1;
    void *handle = NULL;
    for (size_t i = 0; i < self->n_plugins && !handle; i++)
        if (strcmp(self->plugins[i].path, path) == 0)
            handle = self->plugins[i].handle;
    if (!handle) {
        if (self->n_plugins == self->cap_plugins) {
            size_t cap = self->cap_plugins ? self->cap_plugins * 2 : 8;
            s_plugin_t *p = realloc(self->plugins, cap * sizeof *p);
            if (!p) {
                s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
                free(path);
                return NULL;
            }
            self->plugins = p;
            self->cap_plugins = cap;
        }
        dlerror();
        handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            //  Not cached: the library may appear (be built, be copied) before the next try.
            const char *why = dlerror();
            s_fail(o, SHOAL_ENOTFOUND, 0, "cannot load plugin %s: %s", path,
                   why ? why : "dlopen failed");
            free(path);
            return NULL;
        }
        self->plugins[self->n_plugins++] = (s_plugin_t){path, handle};
        path = NULL; //  the table owns it
    }
    dlerror();
    void *sym = dlsym(handle, symbol);
    if (!sym || dlerror()) {
        s_fail(o, SHOAL_ENOTFOUND, 0, "plugin %.*s has no function %s", (int)(colon - fn), fn,
               symbol);
        free(path);
        return NULL;
    }
    free(path);
    char *copy = strdup(fn);
    if (copy) {
        free(self->last_fn);
        self->last_fn = copy;
        //  POSIX guarantees a data pointer from dlsym converts to a function pointer.
        *(void **)&self->last_call = sym;
        return self->last_call;
    }
    shoal_task_fn_t *call;
    *(void **)&call = sym;
    return call;
}

//  Reads size bytes of the log memfd from offset into buf. 0 or a negative errno.
static int s_log_read(s_exec_t *self, uint8_t *buf, uint64_t offset, uint64_t size)
{
    uint64_t done = 0;
    while (done < size) {
        size_t n = (size_t)SHOAL__MIN(size - done, (uint64_t)S_COPY_CHUNK);
        ssize_t r = pread(self->log_fd, buf + done, n, (off_t)(offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        done += (uint64_t)r;
    }
    return 0;
}

//  Adds the captured log (size bytes from base in the memfd) as the last entry of o->outs
//  (room is reserved): inline when small, else in arena space of its own. A log that
//  cannot be kept is dropped: its tail still travels with the result and stands in for it.
static void s_fn_take_log(s_exec_t *self, s_fn_task_t *f, s_outcome_t *o, uint64_t base,
                          uint64_t size)
{
    o->has_log = true;
    o->log_size = size;
    size_t tail = (size_t)SHOAL__MIN(size, (uint64_t)S_LOG_TAIL);
    if (s_log_read(self, o->log_tail, base + size - tail, tail) == 0)
        o->log_tail_size = tail;
    s_out_t *out = &o->outs[o->n_outs];
    *out = (s_out_t){.size = size, .is_log = true, .index = f->n_outputs};
    char err[512];
    int rc = 0;
    if (size <= SHOAL_INLINE_MAX && size <= f->inline_budget) {
        out->data = s_bump_alloc(&self->bump, size);
        rc = out->data ? s_log_read(self, out->data, base, size) : -ENOMEM;
        out->is_inline = true;
        snprintf(err, sizeof err, "%s", strerror(-rc));
    } else {
        rc = s_alloc_one(self, f->et, f->n_outputs, f->n_outputs, size, &out->offset, err,
                         sizeof err);
        void *p = NULL;
        if (rc == 0 && (rc = shoal_arena_map_range(self->arena_path, out->offset, size, &p)) != 0)
            snprintf(err, sizeof err, "%s", shoal_strerror(rc));
        if (rc == 0) {
            rc = s_log_read(self, p, base, size);
            if (rc)
                snprintf(err, sizeof err, "%s", strerror(-rc));
            shoal_arena_unmap(p, size);
        }
    }
    if (rc) {
        char text[SHOAL_REF_TEXT_SIZE];
        S_WARN(self, "executor %d: dropping the log of task %s (%llu bytes): %s", self->slot,
               shoal_ref_format(f->et->task.id, text), (unsigned long long)size, err);
        *out = (s_out_t){0};
        return;
    }
    o->n_outs++;
}

//  Frees what fn tasks left in the executor. Libraries stay loaded (see s_plugin_t).
static void s_fn_cleanup(s_exec_t *self)
{
    for (size_t i = 0; i < self->n_plugins; i++)
        free(self->plugins[i].path);
    free(self->plugins);
    free(self->last_fn);
    free(self->arg_buf);
    free(self->fouts);
    free(self->outs_buf);
    free(self->pend);
    s_bump_free(&self->bump);
    int fds[3] = {self->log_fd, self->saved_out, self->saved_err};
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    self->plugins = NULL;
    self->last_fn = NULL;
    self->arg_buf = NULL;
    self->fouts = NULL;
    self->outs_buf = NULL;
    self->pend = NULL;
    self->log_fd = self->saved_out = self->saved_err = -1;
}

static void s_run_fn(s_exec_t *self, const shoal_wire_e_task_t *et, s_outcome_t *o)
{
    const shoal_wire_task_t *t = &et->task;
    const char *colon = t->fn ? strrchr(t->fn, ':') : NULL;
    if (!colon || colon == t->fn || !colon[1]) {
        s_fail(o, SHOAL_EINVAL, 0, "fn task without \"LIB:SYMBOL\" (got %s)",
               t->fn ? t->fn : "nothing");
        return;
    }
    size_t n_outputs = t->n_outputs ? (size_t)t->n_outputs : 1;
    if (n_outputs > SHOAL_MAX_OUTPUTS) {
        s_fail(o, SHOAL_EINVAL, 0, "%zu outputs; at most %d", n_outputs, SHOAL_MAX_OUTPUTS);
        return;
    }
    for (size_t i = 0; i < et->inputs.count; i++) {
        if (!s_input_bytes(self, &et->inputs.items[i])) {
            s_fail(o, SHOAL_EINVAL, 0, "input %zu lies outside the arena", i);
            return;
        }
    }
    //  The argument with a NUL after it (shoal.h promises one), in a buffer that grows.
    if (t->arg.size + 1 > self->arg_cap) {
        uint8_t *p = realloc(self->arg_buf, t->arg.size + 1);
        if (!p) {
            s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory for an argument of %zu bytes",
                   t->arg.size);
            return;
        }
        self->arg_buf = p;
        self->arg_cap = t->arg.size + 1;
    }
    if (t->arg.size)
        memcpy(self->arg_buf, t->arg.data, t->arg.size);
    self->arg_buf[t->arg.size] = '\0';
    //  outs: the outputs, then the log. Both buffers are the executor's, reused.
    if (n_outputs > self->cap_fouts) {
        s_fn_out_t *p = realloc(self->fouts, n_outputs * sizeof *p);
        if (p) {
            self->fouts = p;
            self->cap_fouts = n_outputs;
        }
    }
    if (n_outputs > self->cap_fouts || !s_outs_reserve(self, n_outputs + 1)) {
        s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
        return;
    }
    s_fn_out_t *fouts = self->fouts;
    memset(fouts, 0, n_outputs * sizeof *fouts);

    s_capture_begin(self); //  before dlopen: what a library's constructors print is logged
    shoal_task_fn_t *call = s_resolve(self, t->fn, o);
    s_fn_task_t *f = &self->fn;
    *f = (s_fn_task_t){.pub = {.api = &s_api},
                       .exec = self,
                       .et = et,
                       .symbol = colon + 1,
                       .arg = self->arg_buf,
                       .arg_size = t->arg.size,
                       .n_outputs = n_outputs,
                       .outs = fouts,
                       .inline_budget = S_INLINE_BUDGET};
    int rc = 0;
    if (call) {
        f->running = true;
        rc = call(&f->pub);
        f->running = false;
        s_streams_clear(self);
    }
    uint64_t log_base;
    uint64_t log_size = s_capture_task_end(self, &log_base);

    if (call && rc != 0 && f->in_aborted) {
        //  As the exec kind's stdin: the input failed, not the function (retries apply).
        char text[SHOAL_REF_TEXT_SIZE];
        size_t i = f->in_aborted - 1;
        s_fail(o, SHOAL_ETASK, rc > 0 ? rc : 0, "input %zu (%s) failed: %s%s%s", i,
               shoal_ref_format(t->inputs.items[i], text), f->in_error, f->has_error ? "; " : "",
               f->has_error ? f->error : "");
    }
    if (call && rc != 0) {
        const char *why = f->has_error ? f->error : f->alloc_error;
        if (*why)
            s_fail(o, SHOAL_ETASK, rc > 0 ? rc : 0, "%s", why);
        else
            s_fail(o, SHOAL_ETASK, rc > 0 ? rc : 0, "%s returned %d", f->symbol, rc);
    }
    for (size_t i = 0; call && i < n_outputs && o->status == 0; i++) {
        if (fouts[i].state == S_FN_EMPTY)
            s_fail(o, SHOAL_ETASK, 0, "%s returned 0 but never wrote output %zu (of %zu)",
                   f->symbol, i, n_outputs);
        else if (fouts[i].state == S_FN_ALLOCATED)
            s_fail(o, SHOAL_ETASK, 0, "%s returned 0 but never sealed output %zu", f->symbol, i);
    }
    //  Outputs move into o (a failed task keeps none: the worker aborts their space).
    for (size_t i = 0; i < n_outputs; i++) {
        s_fn_out_t *fo = &fouts[i];
        if (o->status == 0) {
            o->outs[o->n_outs++] = (s_out_t){.size = fo->size,
                                             .data = fo->in_arena ? NULL : fo->data,
                                             .is_inline = !fo->in_arena,
                                             .index = i,
                                             .offset = fo->offset};
        } else if (fo->in_arena && fo->state == S_FN_ALLOCATED) {
            shoal_arena_unmap(fo->data, fo->size);
        }
    }
    if (log_size)
        s_fn_take_log(self, f, o, log_base, log_size);
    f->outs = NULL;
}

/*  --------------------------------------------------------------------------- tasks */

//  Sends the results held as one e_done_batch. The caller holds self->lock.
static void s_results_send_locked(s_exec_t *self)
{
    if (!self->n_pend)
        return;
    shoal_wire_e_done_batch_t msg = {.results = {self->pend, self->n_pend}};
    int rc = s_send_locked(self, SHOAL_MSG_e_done_batch, &msg);
    if (rc && rc != SHOAL_EUNREACH)
        self->watch_err = rc;
    self->n_pend = 0;
    self->pend_bytes = 0;
}

//  Between tasks: sends the results held and empties the bump arena (what it holds belongs
//  to results sent, by this thread or the watch thread).
static void s_results_flush(s_exec_t *self)
{
    pthread_mutex_lock(&self->lock);
    s_results_send_locked(self);
    int err = self->watch_err;
    self->watch_err = 0;
    pthread_mutex_unlock(&self->lock);
    s_bump_reset(&self->bump);
    if (err)
        S_WARN(self, "executor %d: cannot report results: %s", self->slot, shoal_strerror(err));
}

//  The watch thread: while a task runs and results are held, sends them once the task has
//  run S_FLUSH_US. It wakes at most once per S_FLUSH_US while tasks run.
static void *s_watch_main(void *arg)
{
    s_exec_t *self = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); //  signals are the main thread's business
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        if (!self->task_running || !self->n_pend) {
            self->watch_idle = true;
            pthread_cond_wait(&self->cond, &self->lock);
            self->watch_idle = false;
            continue;
        }
        int64_t due = self->task_start_us + S_FLUSH_US;
        if (shoal__now_us() >= due) {
            s_results_send_locked(self);
            continue;
        }
        struct timespec ts = {(time_t)(due / 1000000), (long)(due % 1000000) * 1000};
        pthread_cond_timedwait(&self->cond, &self->lock, &ts);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

//  Starts the watch thread; without it (a warning) results wait for the end of tasks.
static void s_watch_start(s_exec_t *self)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); //  shoal__now_us's clock
    int rc = pthread_cond_init(&self->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0 && (rc = pthread_create(&self->watch, NULL, s_watch_main, self)) != 0)
        pthread_cond_destroy(&self->cond);
    if (rc) {
        shoal__warn("executor %d: no watch thread (%s): results wait for long tasks", self->slot,
                    strerror(rc));
        return;
    }
    self->watching = true;
}

static void s_watch_stop(s_exec_t *self)
{
    if (!self->watching)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->watch, NULL);
    pthread_cond_destroy(&self->cond);
    self->watching = false;
}

//  Copies n bytes into the bump arena (NULL for none, or out of memory).
static void *s_bump_dup(s_exec_t *self, const void *data, size_t n)
{
    void *p = n ? s_bump_alloc(&self->bump, n) : NULL;
    if (p)
        memcpy(p, data, n);
    return p;
}

//  Turns the outcome of a task into a result held for the next e_done_batch. The caller
//  holds self->lock.
static void s_result_hold_locked(s_exec_t *self, const shoal_wire_e_task_t *et, s_outcome_t *o,
                                 int64_t runtime_us)
{
    if (self->n_pend == self->cap_pend) {
        size_t cap = self->cap_pend ? 2 * self->cap_pend : 64;
        shoal_wire_result_t *p = realloc(self->pend, cap * sizeof *p);
        if (!p) {
            s_results_send_locked(self); //  makes room: n_pend is 0 afterwards
            if (!self->cap_pend) {
                S_WARN(self, "executor %d: out of memory; a result is lost", self->slot);
                return;
            }
        } else {
            self->pend = p;
            self->cap_pend = cap;
        }
    }
    //  One more entry, last, for the stdout tail of a failed command (worker.h).
    shoal_wire_output_t *outs = s_bump_alloc(&self->bump, (o->n_outs + 1) * sizeof *outs);
    size_t n_outs = 0, bytes = 0;
    if (!outs) {
        s_fail(o, SHOAL_ENOMEM, 0, "executor out of memory");
        s_outcome_clear(o);
    }
    for (size_t i = 0; outs && i < o->n_outs; i++) {
        s_out_t *out = &o->outs[i];
        outs[i] =
            (shoal_wire_output_t){.size = out->size, .offset = out->is_inline ? 0 : out->offset};
        if (out->is_inline) {
            outs[i].flags = SHOAL_OUT_INLINE;
            outs[i].data = (shoal_wire_bin_t){out->data, out->size};
            bytes += out->size;
        }
        n_outs++;
    }
    if (outs && o->status && o->stdout_tail_size) {
        outs[n_outs++] = (shoal_wire_output_t){.size = o->stdout_tail_size,
                                               .flags = SHOAL_OUT_INLINE | SHOAL_OUT_STDOUT,
                                               .data = {o->stdout_tail, o->stdout_tail_size}};
        bytes += o->stdout_tail_size;
    }
    char *error = NULL;
    if (o->status) {
        size_t len = strlen(o->error);
        error = s_bump_dup(self, o->error, len + 1);
        bytes += len;
    }
    uint8_t *tail = s_bump_dup(self, o->log_tail, o->log_tail_size);
    bytes += o->log_tail_size;
    if (!self->n_pend)
        self->pend_since_us = shoal__now_us();
    self->pend[self->n_pend++] = (shoal_wire_result_t){
        .id = et->task.id,
        .attempt = et->attempt,
        .status = o->status,
        .exit_code = o->exit_code,
        .error = o->status ? (error ? error : "executor out of memory") : NULL,
        .outputs = {outs, n_outs},
        .log_size = o->log_size,
        .log_tail = {tail, tail ? o->log_tail_size : 0},
        .runtime_us = (uint64_t)(runtime_us > 0 ? runtime_us : 0)};
    self->pend_bytes += bytes;
}

//  Runs task index of the batch seq and holds its result. Returns its runtime.
static int64_t s_run_task(s_exec_t *self, const shoal_wire_e_task_t *et, uint64_t seq, size_t index)
{
    int64_t t0 = shoal__now_us();
    if (self->watching) {
        pthread_mutex_lock(&self->lock);
        self->task_running = true;
        self->task_start_us = t0;
        if (self->watch_idle && self->n_pend)
            pthread_cond_signal(&self->cond);
        pthread_mutex_unlock(&self->lock);
    }
    shoal_exec_progress_t *pg = self->progress;
    if (pg) {
        atomic_store_explicit(&pg->start_us, t0, memory_order_release);
        atomic_store_explicit(&pg->pos, SHOAL_EXEC_POS(seq, index, 1), memory_order_release);
    } else {
        shoal_wire_e_started_t started = {
            .id = et->task.id, .attempt = et->attempt, .pid = (uint64_t)getpid()};
        s_send(self, SHOAL_MSG_e_started, &started);
    }
    //  Field by field: the outcome's buffers (3 KiB) need no clearing.
    s_outcome_t *o = &self->outcome;
    o->status = 0;
    o->exit_code = 0;
    o->error[0] = '\0';
    o->outs = self->outs_buf;
    o->n_outs = 0;
    o->has_log = false;
    o->log_size = 0;
    o->log_tail_size = 0;
    o->stdout_tail = NULL;
    o->stdout_tail_size = 0;
    if (et->task.kind == SHOAL_KIND_EXEC)
        s_run_exec(self, et, o);
    else if (et->task.kind == SHOAL_KIND_FN)
        s_run_fn(self, et, o);
    else
        s_fail(o, SHOAL_EINVAL, 0, "unknown task kind %llu", (unsigned long long)et->task.kind);
    int64_t runtime = shoal__now_us() - t0;
    if (pg)
        atomic_store_explicit(&pg->pos, SHOAL_EXEC_POS(seq, index, 0), memory_order_release);
    pthread_mutex_lock(&self->lock);
    self->task_running = false;
    s_result_hold_locked(self, et, o, runtime);
    pthread_mutex_unlock(&self->lock);
    s_outcome_clear(o);
    return runtime;
}

//  Inputs are read-only views: a task that writes into one faults, as with inputs in the
//  arena. So the inline inputs of a batch are copied into a private mapping made
//  read-only (two mprotect a batch that has any), and the e_run is pointed at the copies.
static void s_inline_inputs(s_exec_t *self, shoal_wire_e_run_t *run)
{
    size_t total = 0;
    for (size_t i = 0; i < run->tasks.count; i++)
        for (size_t k = 0; k < run->tasks.items[i].inputs.count; k++) {
            const shoal_wire_e_input_t *in = &run->tasks.items[i].inputs.items[k];
            if (in->offset == SHOAL_EXEC_INLINE && in->data.size)
                total += (in->data.size + 15) & ~(size_t)15;
        }
    if (!total)
        return;
    size_t need = (total + 4095) & ~(size_t)4095;
    if (need > self->in_area_size) {
        if (self->in_area)
            munmap(self->in_area, self->in_area_size);
        self->in_area_size = 0;
        self->in_area =
            mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (self->in_area == MAP_FAILED) {
            self->in_area = NULL;
            S_WARN(self,
                   "executor %d: no memory for %zu bytes of inline inputs: %s; they stay "
                   "writable",
                   self->slot, total, strerror(errno));
            return;
        }
        self->in_area_size = need;
    } else if (mprotect(self->in_area, self->in_area_size, PROT_READ | PROT_WRITE) != 0) {
        return;
    }
    uint8_t *at = self->in_area;
    for (size_t i = 0; i < run->tasks.count; i++)
        for (size_t k = 0; k < run->tasks.items[i].inputs.count; k++) {
            shoal_wire_e_input_t *in = &run->tasks.items[i].inputs.items[k];
            if (in->offset != SHOAL_EXEC_INLINE || !in->data.size)
                continue;
            memcpy(at, in->data.data, in->data.size);
            in->data.data = at;
            at += (in->data.size + 15) & ~(size_t)15;
        }
    mprotect(self->in_area, self->in_area_size, PROT_READ);
}

//  Runs the tasks of an e_run in order; results go back in groups (worker.h).
static void s_run_batch(s_exec_t *self, shoal_wire_e_run_t *run)
{
    s_inline_inputs(self, run);
    for (size_t i = 0; i < run->tasks.count; i++) {
        int64_t runtime = s_run_task(self, &run->tasks.items[i], run->seq, i);
        s_capture_trim(self);
        bool last = i + 1 == run->tasks.count;
        if (last || runtime >= S_FLUSH_US || self->pend_bytes >= S_FLUSH_BYTES ||
            shoal__now_us() - self->pend_since_us >= S_FLUSH_US)
            s_results_flush(self);
    }
}

/*  ---------------------------------------------------------------------------- main */

int shoal_executor_run(const char *endpoint, const char *arena_path, int slot)
{
    shoal__log_init("executor", SHOAL_LOG_INFO);
    //  A command that stops reading the stdin it is fed (--stdin-input) must not kill the
    //  executor: the write says EPIPE instead. Commands get the default back (s_child).
    signal(SIGPIPE, SIG_IGN);
    s_exec_t self = {.arena_path = arena_path,
                     .slot = slot,
                     .ppid = getppid(),
                     .log_fd = -1,
                     .saved_out = -1,
                     .saved_err = -1};
    if (!endpoint || !arena_path) {
        shoal__error("usage: shoal executor fd:N ARENA SLOT (started by shoal worker)");
        return 2;
    }
    if (self.ppid == 1) //  our worker is already gone
        return 1;
    //  Keep 0-2 taken, so files opened for a task never land there (dup2 onto the same
    //  fd would keep close-on-exec set and the task would start without them).
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd < 3)
        ;
    if (fd >= 3)
        close(fd);
    //  fn tasks write their stdout and stderr into this memfd (their log); the executor's
    //  own fds 1 and 2 are kept aside to be put back after each call.
    self.log_fd = memfd_create("shoal-fn-log", MFD_CLOEXEC);
    self.saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    self.saved_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (self.log_fd < 0 || self.saved_out < 0 || self.saved_err < 0) {
        shoal__warn("executor %d: fn tasks will have no log: %s", slot, strerror(errno));
        if (self.log_fd >= 0)
            close(self.log_fd);
        self.log_fd = -1;
    }
    //  The progress page (worker.h): mapped, and its fd closed so no task inherits it.
    const char *pfd = getenv(SHOAL_EXEC_PROGRESS_ENV);
    if (pfd && *pfd) {
        char *end;
        long n = strtol(pfd, &end, 10);
        void *page = MAP_FAILED;
        int err = EINVAL;
        if (!*end && n >= 3 && n < INT_MAX) {
            page = mmap(NULL, sizeof(shoal_exec_progress_t), PROT_READ | PROT_WRITE, MAP_SHARED,
                        (int)n, 0);
            err = errno;
            close((int)n);
        }
        if (page == MAP_FAILED)
            shoal__warn("executor %d: no progress page (%s=%s): %s; one task at a time", slot,
                        SHOAL_EXEC_PROGRESS_ENV, pfd, strerror(err));
        else
            self.progress = page;
        unsetenv(SHOAL_EXEC_PROGRESS_ENV);
    }
    self.scratch_base = getenv(SHOAL_EXEC_SCRATCH_ENV);
    if (!self.scratch_base || !*self.scratch_base)
        self.scratch_base = "/tmp";

    void *base = NULL;
    int rc = shoal_arena_map(arena_path, &base, &self.arena_size);
    if (rc) {
        shoal__error("executor %d: cannot map the arena %s: %s", slot, arena_path,
                     shoal_strerror(rc));
        return 1;
    }
    self.arena = base;
    pthread_mutex_init(&self.lock, NULL);
    //  endpoint is "fd:N": the executor's end of the socketpair the worker made, which no
    //  task may inherit.
    char *end = NULL;
    long chan_fd = strncmp(endpoint, "fd:", 3) == 0 ? strtol(endpoint + 3, &end, 10) : -1;
    int status = 0;
    if (chan_fd < 3 || chan_fd >= INT_MAX || !end || *end ||
        fcntl((int)chan_fd, F_SETFD, FD_CLOEXEC) != 0 ||
        shoal_chan_new((int)chan_fd, SHOAL_MAX_MSG_SIZE, &self.chan) != 0) {
        shoal__error("executor %d: no channel to the worker at %s (want fd:N, N >= 3, open)", slot,
                     endpoint);
        status = 1;
    } else {
        s_watch_start(&self);
        shoal_wire_e_hello_t hello = {.pid = (uint64_t)getpid(), .slot = (uint64_t)slot};
        rc = s_send(&self, SHOAL_MSG_e_hello, &hello);
        while (rc == 0) {
            shoal_wire_in_t in;
            if (self.pending) {
                s_pending_t *p = self.pending;
                self.pending = p->next;
                if (!self.pending)
                    self.pending_tail = NULL;
                in = p->in;
                free(p);
            } else if ((rc = s_recv(&self, &in)) != 0) {
                break;
            }
            if (in.msg.type == SHOAL_MSG_e_run) {
                s_run_batch(&self, &in.msg.u.e_run);
            } else {
                S_WARN(&self, "executor %d: unexpected '%s' from the worker", slot,
                       shoal_msg_name(in.msg.type));
            }
            shoal_wire_in_clear(&in);
        }
    }
    s_watch_stop(&self);
    s_capture_end(&self);
    while (self.pending) {
        s_pending_t *p = self.pending;
        self.pending = p->next;
        shoal_wire_in_clear(&p->in);
        free(p);
    }
    shoal_chan_destroy(&self.chan);
    shoal_arena_unmap(base, self.arena_size);
    if (self.progress)
        munmap(self.progress, sizeof *self.progress);
    if (self.in_area)
        munmap(self.in_area, self.in_area_size);
    pthread_mutex_destroy(&self.lock);
    s_fn_cleanup(&self);
    return status;
}
