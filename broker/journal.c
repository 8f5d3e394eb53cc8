/*  journal.c: tasks and outcomes in LMDB, values encoded with the wire codec (a task as a
    one-task `submit`, an outcome as a `statuses`), so the journal needs no format of its
    own and old journals decode as the protocol evolves. */
#include "journal.h"

#include "common.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

//  The journal is sparse: LMDB reserves address space, not disk. 64 GiB holds ~100 M
//  tasks of ordinary size.
#define S_MAP_SIZE (64ull << 30)
//  Outcomes kept in memory while the journal cannot be written (a full disk).
#define S_MAX_OPS (1u << 20)

typedef struct {
    uint8_t key[16];
    bool is_final; //  else: forget
    msgpack_sbuffer value;
} s_op_t;

struct shoal__journal {
    MDB_env *env;
    MDB_dbi tasks, finals;
    s_op_t *ops;
    size_t n_ops, cap_ops;
    char path[4096];
};

static void s_key(shoal_ref_t id, uint8_t key[16])
{
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(id.hi >> (56 - 8 * i));
        key[8 + i] = (uint8_t)(id.lo >> (56 - 8 * i));
    }
}

static int s_map(int rc)
{
    return rc == MDB_MAP_FULL ? SHOAL_EFULL : rc == ENOMEM ? SHOAL_ENOMEM : SHOAL_EIO;
}

int shoal__journal_open(const char *dir, shoal__journal_t **self_p)
{
    shoal__journal_t *self = calloc(1, sizeof *self);
    if (!self)
        return SHOAL_ENOMEM;
    snprintf(self->path, sizeof self->path, "%s/journal.mdb", dir);
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&self->env);
    if (!rc)
        rc = mdb_env_set_mapsize(self->env, S_MAP_SIZE);
    if (!rc)
        rc = mdb_env_set_maxdbs(self->env, 2);
    if (!rc)
        rc = mdb_env_open(self->env, self->path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600);
    if (!rc) {
        int dead = 0;
        mdb_reader_check(self->env, &dead); //  slots left by a crashed reader
    }
    if (!rc)
        rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, "tasks", MDB_CREATE, &self->tasks);
    if (!rc)
        rc = mdb_dbi_open(txn, "finals", MDB_CREATE, &self->finals);
    if (!rc) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc) {
        shoal__error("cannot open the journal %s: %s", self->path, mdb_strerror(rc));
        if (txn)
            mdb_txn_abort(txn);
        if (self->env)
            mdb_env_close(self->env);
        free(self);
        return SHOAL_EIO;
    }
    *self_p = self;
    return 0;
}

void shoal__journal_close(shoal__journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal__journal_t *self = *self_p;
    shoal__journal_commit(self);
    for (size_t i = 0; i < self->n_ops; i++)
        msgpack_sbuffer_destroy(&self->ops[i].value);
    free(self->ops);
    mdb_env_close(self->env);
    free(self);
    *self_p = NULL;
}

int shoal__journal_add_tasks(shoal__journal_t *self, const shoal_wire_task_t *tasks, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc)
        return s_map(rc);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    for (size_t i = 0; i < n && !rc; i++) {
        buf.size = 0;
        shoal_wire_submit_t one = {.tasks = {(shoal_wire_task_t *)&tasks[i], 1}};
        if (shoal_proto_encode(SHOAL_MSG_submit, &one, &buf)) {
            rc = ENOMEM;
            break;
        }
        uint8_t key[16];
        s_key(tasks[i].id, key);
        MDB_val k = {16, key}, v = {buf.size, buf.data};
        rc = mdb_put(txn, self->tasks, &k, &v, 0);
    }
    msgpack_sbuffer_destroy(&buf);
    if (rc) {
        mdb_txn_abort(txn);
        shoal__error("cannot write to the journal %s: %s", self->path, mdb_strerror(rc));
        return s_map(rc);
    }
    rc = mdb_txn_commit(txn);
    if (rc) {
        shoal__error("cannot commit to the journal %s: %s", self->path, mdb_strerror(rc));
        return s_map(rc);
    }
    return 0;
}

static s_op_t *s_op(shoal__journal_t *self, shoal_ref_t id, bool is_final)
{
    if (self->n_ops == self->cap_ops) {
        size_t cap = self->cap_ops ? self->cap_ops * 2 : 64;
        s_op_t *ops = realloc(self->ops, cap * sizeof *ops);
        if (!ops)
            return NULL;
        self->ops = ops;
        self->cap_ops = cap;
    }
    s_op_t *op = &self->ops[self->n_ops++];
    s_key(id, op->key);
    op->is_final = is_final;
    msgpack_sbuffer_init(&op->value);
    return op;
}

void shoal__journal_final(shoal__journal_t *self, shoal_ref_t id, const shoal_wire_status_t *items,
                          size_t n)
{
    s_op_t *op = s_op(self, id, true);
    if (!op)
        return; //  the outcome is not journaled: after a restart the task runs again
    shoal_wire_statuses_t st = {.items = {(shoal_wire_status_t *)items, n}};
    if (shoal_proto_encode(SHOAL_MSG_statuses, &st, &op->value)) {
        msgpack_sbuffer_destroy(&op->value);
        self->n_ops--;
    }
}

void shoal__journal_forget(shoal__journal_t *self, shoal_ref_t id)
{
    s_op(self, id, false);
}

int shoal__journal_commit(shoal__journal_t *self)
{
    if (!self->n_ops)
        return 0;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    bool begun = rc == 0;
    for (size_t i = 0; i < self->n_ops && !rc; i++) {
        s_op_t *op = &self->ops[i];
        MDB_val k = {16, op->key};
        if (op->is_final) {
            MDB_val v = {op->value.size, op->value.data};
            rc = mdb_put(txn, self->finals, &k, &v, 0);
        } else {
            rc = mdb_del(txn, self->tasks, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
            if (!rc) {
                rc = mdb_del(txn, self->finals, &k, NULL);
                if (rc == MDB_NOTFOUND)
                    rc = 0;
            }
        }
    }
    if (!rc)
        rc = mdb_txn_commit(txn);
    else if (begun)
        mdb_txn_abort(txn);
    if (rc) {
        //  Kept for the next commit, but not without bound: past S_MAX_OPS the oldest
        //  outcomes are dropped (those tasks would run again after a restart).
        shoal__error("cannot commit to the journal %s: %s", self->path, mdb_strerror(rc));
        if (self->n_ops > S_MAX_OPS) {
            size_t drop = self->n_ops - S_MAX_OPS;
            for (size_t i = 0; i < drop; i++)
                msgpack_sbuffer_destroy(&self->ops[i].value);
            memmove(self->ops, self->ops + drop, S_MAX_OPS * sizeof *self->ops);
            self->n_ops = S_MAX_OPS;
        }
        return s_map(rc);
    }
    for (size_t i = 0; i < self->n_ops; i++)
        msgpack_sbuffer_destroy(&self->ops[i].value);
    self->n_ops = 0;
    return 0;
}

static int s_scan(shoal__journal_t *self, MDB_txn *txn, MDB_dbi dbi, int type,
                  shoal__journal_task_fn *on_task, shoal__journal_final_fn *on_final, void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    size_t bad = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        shoal_msg_t msg;
        if (k.mv_size != 16 || shoal_proto_decode(v.mv_data, v.mv_size, &msg)) {
            bad++;
            continue;
        }
        if (msg.type != type) {
            shoal_msg_clear(&msg);
            bad++;
            continue;
        }
        if (type == SHOAL_MSG_submit && msg.u.submit.tasks.count == 1)
            on_task(arg, &msg.u.submit.tasks.items[0]);
        else if (type == SHOAL_MSG_statuses) {
            const uint8_t *p = k.mv_data;
            shoal_ref_t id = {0, 0};
            for (int i = 0; i < 8; i++) {
                id.hi = (id.hi << 8) | p[i];
                id.lo = (id.lo << 8) | p[8 + i];
            }
            on_final(arg, id, &msg.u.statuses);
        }
        shoal_msg_clear(&msg);
    }
    mdb_cursor_close(cur);
    if (bad)
        shoal__warn("journal %s: %zu unreadable record(s) skipped", self->path, bad);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int shoal__journal_load(shoal__journal_t *self, shoal__journal_task_fn *on_task,
                        shoal__journal_final_fn *on_final, void *arg)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        shoal__error("cannot read the journal %s: %s", self->path, mdb_strerror(rc));
        return SHOAL_EIO;
    }
    rc = s_scan(self, txn, self->tasks, SHOAL_MSG_submit, on_task, on_final, arg);
    if (!rc)
        rc = s_scan(self, txn, self->finals, SHOAL_MSG_statuses, on_task, on_final, arg);
    mdb_txn_abort(txn);
    if (rc) {
        shoal__error("cannot read the journal %s: %s", self->path, mdb_strerror(rc));
        return SHOAL_EIO;
    }
    return 0;
}
