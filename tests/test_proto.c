/*  test_proto.c: every message round-trips; damaged input is refused, never a crash.
    The loops run over the message table itself, so a new message is tested by being
    added to proto.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chan.h"
#include "proto.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  Fills a record with values derived from seed, allocating from a simple pool.
typedef struct {
    char *blocks[4096];
    int n;
} pool_t;

static void *s_pool(pool_t *p, size_t size)
{
    assert_true(p->n < 4096);
    return p->blocks[p->n++] = calloc(1, size ? size : 1);
}

static void s_pool_free(pool_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->blocks[i]);
    p->n = 0;
}

static void s_fill(pool_t *p, const shoal_wire_desc_t *desc, void *rec, unsigned seed, int depth)
{
    for (size_t i = 0; i < desc->nfields; i++) {
        const shoal_wire_field_t *f = &desc->fields[i];
        char *at = (char *)rec + f->offset;
        unsigned v = seed * 31 + (unsigned)i;
        switch (f->type) {
        case SHOAL_FT_U64:
            *(uint64_t *)at = (uint64_t)v * 0x100000001ull;
            break;
        case SHOAL_FT_I64:
            *(int64_t *)at = (v % 2) ? -(int64_t)v * 1000003 : (int64_t)v;
            break;
        case SHOAL_FT_STR: {
            char *s = s_pool(p, 32);
            snprintf(s, 32, "%s-%u", f->name, v);
            *(char **)at = (v % 5 == 0) ? NULL : s;
            break;
        }
        case SHOAL_FT_BIN: {
            shoal_wire_bin_t *b = (shoal_wire_bin_t *)at;
            b->size = v % 300;
            uint8_t *d = s_pool(p, b->size);
            for (size_t j = 0; j < b->size; j++)
                d[j] = (uint8_t)(j * 7 + v);
            b->data = d;
            break;
        }
        case SHOAL_FT_REF:
            *(shoal_ref_t *)at = shoal_ref_make(v * 0x9E3779B97F4A7C15ull, v, (uint16_t)v);
            break;
        case SHOAL_FT_REFS: {
            shoal_wire_refs_t *r = (shoal_wire_refs_t *)at;
            r->count = v % 4;
            r->items = s_pool(p, r->count * sizeof(shoal_ref_t));
            for (size_t j = 0; j < r->count; j++)
                r->items[j] = shoal_ref_make(~(uint64_t)v, j, (uint16_t)j);
            break;
        }
        case SHOAL_FT_STRS: {
            shoal_wire_strs_t *s = (shoal_wire_strs_t *)at;
            s->count = v % 4;
            s->items = s_pool(p, (s->count + 1) * sizeof(char *));
            for (size_t j = 0; j < s->count; j++) {
                s->items[j] = s_pool(p, 32);
                snprintf(s->items[j], 32, "arg%zu", j);
            }
            break;
        }
        case SHOAL_FT_U64S: {
            shoal_wire_u64s_t *u = (shoal_wire_u64s_t *)at;
            u->count = v % 5;
            u->items = s_pool(p, u->count * sizeof(uint64_t));
            for (size_t j = 0; j < u->count; j++)
                u->items[j] = UINT64_MAX - j;
            break;
        }
        case SHOAL_FT_REC:
            s_fill(p, f->sub, at, v, depth + 1);
            break;
        case SHOAL_FT_RECS: {
            struct {
                char *items;
                size_t count;
            } *arr = (void *)at;
            arr->count = depth > 2 ? 0 : 1 + v % 3;
            arr->items = s_pool(p, arr->count * f->sub->size);
            for (size_t j = 0; j < arr->count; j++)
                s_fill(p, f->sub, arr->items + j * f->sub->size, v + (unsigned)j, depth + 1);
            break;
        }
        }
    }
}

static void s_assert_equal(const shoal_wire_desc_t *desc, const void *a, const void *b)
{
    for (size_t i = 0; i < desc->nfields; i++) {
        const shoal_wire_field_t *f = &desc->fields[i];
        const char *x = (const char *)a + f->offset, *y = (const char *)b + f->offset;
        switch (f->type) {
        case SHOAL_FT_U64:
            assert_int_equal(*(const uint64_t *)x, *(const uint64_t *)y);
            break;
        case SHOAL_FT_I64:
            assert_int_equal(*(const int64_t *)x, *(const int64_t *)y);
            break;
        case SHOAL_FT_STR: {
            const char *s = *(char *const *)x, *t = *(char *const *)y;
            if (!s)
                assert_null(t);
            else
                assert_string_equal(s, t);
            break;
        }
        case SHOAL_FT_BIN: {
            const shoal_wire_bin_t *s = (const void *)x, *t = (const void *)y;
            assert_int_equal(s->size, t->size);
            assert_memory_equal(s->data, t->data, s->size);
            break;
        }
        case SHOAL_FT_REF:
            assert_true(shoal_ref_equal(*(const shoal_ref_t *)x, *(const shoal_ref_t *)y));
            break;
        case SHOAL_FT_REFS: {
            const shoal_wire_refs_t *s = (const void *)x, *t = (const void *)y;
            assert_int_equal(s->count, t->count);
            for (size_t j = 0; j < s->count; j++)
                assert_true(shoal_ref_equal(s->items[j], t->items[j]));
            break;
        }
        case SHOAL_FT_STRS: {
            const shoal_wire_strs_t *s = (const void *)x, *t = (const void *)y;
            assert_int_equal(s->count, t->count);
            for (size_t j = 0; j < s->count; j++)
                assert_string_equal(s->items[j], t->items[j]);
            break;
        }
        case SHOAL_FT_U64S: {
            const shoal_wire_u64s_t *s = (const void *)x, *t = (const void *)y;
            assert_int_equal(s->count, t->count);
            for (size_t j = 0; j < s->count; j++)
                assert_int_equal(s->items[j], t->items[j]);
            break;
        }
        case SHOAL_FT_REC:
            s_assert_equal(f->sub, x, y);
            break;
        case SHOAL_FT_RECS: {
            const struct {
                const char *items;
                size_t count;
            } *s = (const void *)x, *t = (const void *)y;
            assert_int_equal(s->count, t->count);
            for (size_t j = 0; j < s->count; j++)
                s_assert_equal(f->sub, s->items + j * f->sub->size, t->items + j * f->sub->size);
            break;
        }
        }
    }
}

static const int s_types[] = {
#define T(id, name) id,
    SHOAL_WIRE_MESSAGES(T)
#undef T
};

static void test_every_message_round_trips(void **state)
{
    for (size_t t = 0; t < sizeof s_types / sizeof s_types[0]; t++) {
        for (unsigned seed = 0; seed < 7; seed++) {
            const shoal_wire_desc_t *desc = shoal_msg_desc(s_types[t]);
            assert_non_null(desc);
            assert_non_null(shoal_msg_name(s_types[t]));
            pool_t pool = {.n = 0};
            void *body = s_pool(&pool, desc->size);
            s_fill(&pool, desc, body, seed + (unsigned)t, 0);
            msgpack_sbuffer buf;
            msgpack_sbuffer_init(&buf);
            assert_int_equal(shoal_proto_encode(s_types[t], body, &buf), 0);
            shoal_msg_t msg;
            assert_int_equal(shoal_proto_decode(buf.data, buf.size, &msg), 0);
            assert_int_equal(msg.type, s_types[t]);
            s_assert_equal(desc, body, &msg.u);
            //  A deep copy in one block equals the original too.
            void *dup = shoal_wire_dup(desc, &msg.u);
            assert_non_null(dup);
            shoal_msg_clear(&msg);
            s_assert_equal(desc, body, dup);
            free(dup);
            msgpack_sbuffer_destroy(&buf);
            s_pool_free(&pool);
        }
    }
}

static void test_truncated_messages_are_refused(void **state)
{
    for (size_t t = 0; t < sizeof s_types / sizeof s_types[0]; t++) {
        const shoal_wire_desc_t *desc = shoal_msg_desc(s_types[t]);
        pool_t pool = {.n = 0};
        void *body = s_pool(&pool, desc->size);
        s_fill(&pool, desc, body, 3, 0);
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        assert_int_equal(shoal_proto_encode(s_types[t], body, &buf), 0);
        for (size_t len = 0; len < buf.size; len++) {
            //  Copy to an exact-size heap block so ASan catches any read past the end.
            char *copy = malloc(len ? len : 1);
            memcpy(copy, buf.data, len);
            shoal_msg_t msg;
            assert_int_equal(shoal_proto_decode(copy, len, &msg), SHOAL_EPROTO);
            free(copy);
        }
        msgpack_sbuffer_destroy(&buf);
        s_pool_free(&pool);
    }
}

static void test_bit_flips_never_crash(void **state)
{
    unsigned accepted = 0, refused = 0;
    for (size_t t = 0; t < sizeof s_types / sizeof s_types[0]; t++) {
        const shoal_wire_desc_t *desc = shoal_msg_desc(s_types[t]);
        pool_t pool = {.n = 0};
        void *body = s_pool(&pool, desc->size);
        s_fill(&pool, desc, body, 5, 0);
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        assert_int_equal(shoal_proto_encode(s_types[t], body, &buf), 0);
        char *copy = malloc(buf.size);
        for (size_t i = 0; i < buf.size; i++) {
            for (int bit = 0; bit < 8; bit++) {
                memcpy(copy, buf.data, buf.size);
                copy[i] ^= (char)(1 << bit);
                shoal_msg_t msg;
                int rc = shoal_proto_decode(copy, buf.size, &msg);
                if (rc == 0) {
                    accepted++;
                    shoal_msg_clear(&msg);
                } else {
                    assert_true(rc == SHOAL_EPROTO || rc == SHOAL_EVERSION);
                    refused++;
                }
            }
        }
        free(copy);
        msgpack_sbuffer_destroy(&buf);
        s_pool_free(&pool);
    }
    //  Both outcomes must occur: flips in values decode, flips in structure do not.
    assert_true(accepted > 0);
    assert_true(refused > 0);
}

static void test_random_garbage_is_refused(void **state)
{
    unsigned seed = 12345;
    uint8_t buf[512];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 512);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (uint8_t)(seed >> 16);
        }
        if (len >= 2) {
            buf[0] = SHOAL_PROTO_VERSION;
            buf[1] = (uint8_t)s_types[(size_t)round % (sizeof s_types / sizeof s_types[0])];
        }
        shoal_msg_t msg;
        if (shoal_proto_decode(buf, len, &msg) == 0)
            shoal_msg_clear(&msg);
    }
}

static void test_huge_array_header_does_not_allocate(void **state)
{
    //  submit with an array claiming 2^32-1 tasks in 7 bytes.
    const uint8_t bomb[] = {
        SHOAL_PROTO_VERSION, SHOAL_MSG_submit, 0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff};
    shoal_msg_t msg;
    assert_int_equal(shoal_proto_decode(bomb, sizeof bomb, &msg), SHOAL_EPROTO);
}

static void test_empty_records_cannot_amplify_allocation(void **state)
{
    //  A submit of 60,000 empty task records: 3 bytes each on the wire (an empty array),
    //  144 decoded; refused rather than allocating ~8.6 MB for 180 KB.
    size_t n = 60000, size = 2 + 1 + 1 + 1 + 5 + n;
    uint8_t *buf = malloc(size);
    uint8_t *p = buf;
    *p++ = SHOAL_PROTO_VERSION;
    *p++ = SHOAL_MSG_submit;
    *p++ = 0x92; //  [seq, tasks]
    *p++ = 0x01;
    *p++ = 0xdd; //  array32
    *p++ = (uint8_t)(n >> 24);
    *p++ = (uint8_t)(n >> 16);
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
    memset(p, 0x90, n); //  empty records
    size = (size_t)(p - buf) + n;
    shoal_msg_t msg;
    assert_int_equal(shoal_proto_decode(buf, size, &msg), SHOAL_EPROTO);
    free(buf);
}

static void test_other_version_and_unknown_type_are_named(void **state)
{
    const uint8_t other[] = {SHOAL_PROTO_VERSION + 1, SHOAL_MSG_hello, 0x90};
    const uint8_t unknown[] = {SHOAL_PROTO_VERSION, 250, 0x90};
    shoal_msg_t msg;
    assert_int_equal(shoal_proto_decode(other, sizeof other, &msg), SHOAL_EVERSION);
    assert_int_equal(shoal_proto_decode(unknown, sizeof unknown, &msg), SHOAL_EPROTO);
}

static void test_newer_peer_fields_are_skipped_and_missing_ones_zero(void **state)
{
    //  hello with 5 fields (2 unknown: a map and a float) decodes; with 1 field too.
    const uint8_t longer[] = {SHOAL_PROTO_VERSION,
                              SHOAL_MSG_hello,
                              0x95,
                              0x01,
                              0x2a,
                              0xa1,
                              'x',
                              0x81,
                              0x01,
                              0x02,
                              0xcb,
                              0,
                              0,
                              0,
                              0,
                              0,
                              0,
                              0,
                              0};
    const uint8_t shorter[] = {SHOAL_PROTO_VERSION, SHOAL_MSG_hello, 0x91, 0x01};
    shoal_msg_t msg;
    assert_int_equal(shoal_proto_decode(longer, sizeof longer, &msg), 0);
    assert_int_equal(msg.u.hello.client_id, 42);
    assert_string_equal(msg.u.hello.agent, "x");
    shoal_msg_clear(&msg);
    assert_int_equal(shoal_proto_decode(shorter, sizeof shorter, &msg), 0);
    assert_int_equal(msg.u.hello.version, 1);
    assert_int_equal(msg.u.hello.client_id, 0);
    assert_null(msg.u.hello.agent);
    shoal_msg_clear(&msg);
}

/*  ------------------------------------------------------------ chan: worker <-> executor */

static void s_pair(shoal_chan_t **a, shoal_chan_t **b, size_t max_msg)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(shoal_chan_new(sv[0], max_msg, a), 0);
    assert_int_equal(shoal_chan_new(sv[1], max_msg, b), 0);
}

//  Receives one message, polling up to 5 s for it.
static int s_chan_recv_wait(shoal_chan_t *c, shoal_msg_t *msg)
{
    for (int i = 0; i < 5000; i++) {
        int rc = shoal_chan_recv(c, msg);
        if (rc != SHOAL_EAGAIN)
            return rc;
        struct pollfd pfd = {shoal_chan_fd(c), POLLIN, 0};
        poll(&pfd, 1, 1);
    }
    return SHOAL_ETIMEDOUT;
}

static void test_chan_messages_arrive_whole_and_in_order(void **state)
{
    (void)state;
    shoal_chan_t *a, *b;
    s_pair(&a, &b, SHOAL_MAX_MSG_SIZE);
    shoal_msg_t msg;
    assert_int_equal(shoal_chan_recv(b, &msg), SHOAL_EAGAIN);
    for (uint64_t i = 0; i < 100; i++) {
        shoal_wire_e_hello_t hello = {.pid = 1000 + i, .slot = i};
        assert_int_equal(shoal_chan_send(a, SHOAL_MSG_e_hello, &hello), 0);
    }
    for (uint64_t i = 0; i < 100; i++) {
        assert_int_equal(s_chan_recv_wait(b, &msg), 0);
        assert_int_equal(msg.type, SHOAL_MSG_e_hello);
        assert_int_equal(msg.u.e_hello.pid, 1000 + i);
        assert_int_equal(msg.u.e_hello.slot, i);
        shoal_msg_clear(&msg);
    }
    assert_int_equal(shoal_chan_recv(b, &msg), SHOAL_EAGAIN);
    shoal_chan_destroy(&a);
    assert_null(a);
    //  The peer closed: end of file is SHOAL_EIO, and stays so.
    assert_int_equal(s_chan_recv_wait(b, &msg), SHOAL_EIO);
    assert_int_equal(shoal_chan_recv(b, &msg), SHOAL_EIO);
    assert_int_equal(shoal_chan_send(b, SHOAL_MSG_e_hello, &(shoal_wire_e_hello_t){0}), SHOAL_EIO);
    shoal_chan_destroy(&b);
    shoal_chan_destroy(&b); //  NULL-safe
}

//  A message larger than the socket buffer is queued and goes out with flushes, while the
//  other side reads: the sender never blocks.
static void test_chan_large_message_is_queued_and_flushed(void **state)
{
    (void)state;
    shoal_chan_t *a, *b;
    s_pair(&a, &b, SHOAL_MAX_MSG_SIZE);
    size_t size = 8u << 20;
    uint8_t *bytes = malloc(size);
    assert_non_null(bytes);
    for (size_t i = 0; i < size; i++)
        bytes[i] = (uint8_t)(i * 7);
    shoal_wire_e_input_t in = {.offset = 1, .size = size, .data = {bytes, size}};
    shoal_wire_e_task_t task = {.attempt = 3, .inputs = {&in, 1}};
    shoal_wire_e_run_t run = {.tasks = {&task, 1}, .seq = 42};
    assert_int_equal(shoal_chan_send(a, SHOAL_MSG_e_run, &run), 0);
    assert_true(shoal_chan_pending(a) > 0); //  a socketpair takes far less than 8 MiB
    shoal_wire_e_hello_t hello = {.pid = 7, .slot = 1};
    assert_int_equal(shoal_chan_send(a, SHOAL_MSG_e_hello, &hello), 0); //  queued behind
    shoal_msg_t msg;
    int got = 0;
    for (int i = 0; i < 100000 && got < 2; i++) {
        int rc = shoal_chan_flush(a);
        assert_true(rc == 0 || rc == SHOAL_EAGAIN);
        rc = shoal_chan_recv(b, &msg);
        if (rc == SHOAL_EAGAIN)
            continue;
        assert_int_equal(rc, 0);
        if (got == 0) {
            assert_int_equal(msg.type, SHOAL_MSG_e_run);
            assert_int_equal(msg.u.e_run.seq, 42);
            assert_int_equal(msg.u.e_run.tasks.count, 1);
            assert_int_equal(msg.u.e_run.tasks.items[0].inputs.items[0].data.size, size);
            assert_memory_equal(msg.u.e_run.tasks.items[0].inputs.items[0].data.data, bytes, size);
        } else {
            assert_int_equal(msg.type, SHOAL_MSG_e_hello);
            assert_int_equal(msg.u.e_hello.pid, 7);
        }
        shoal_msg_clear(&msg);
        got++;
    }
    assert_int_equal(got, 2);
    assert_int_equal(shoal_chan_pending(a), 0);
    free(bytes);
    shoal_chan_destroy(&a);
    shoal_chan_destroy(&b);
}

//  What arrives byte by byte is put together; a malformed body is skipped alone; a length
//  beyond max_msg breaks the channel (it cannot be resynchronised).
static void test_chan_partial_malformed_and_oversized_input(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    shoal_chan_t *b;
    assert_int_equal(shoal_chan_new(sv[1], 1024, &b), 0);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    shoal_wire_e_hello_t hello = {.pid = 99, .slot = 2};
    assert_int_equal(shoal_proto_encode(SHOAL_MSG_e_hello, &hello, &buf), 0);
    uint8_t head[4] = {(uint8_t)buf.size, 0, 0, 0};
    shoal_msg_t msg;
    //  1. byte by byte
    assert_int_equal(write(sv[0], head, 4), 4);
    for (size_t i = 0; i < buf.size; i++) {
        assert_int_equal(shoal_chan_recv(b, &msg), SHOAL_EAGAIN);
        assert_int_equal(write(sv[0], buf.data + i, 1), 1);
    }
    assert_int_equal(s_chan_recv_wait(b, &msg), 0);
    assert_int_equal(msg.u.e_hello.pid, 99);
    shoal_msg_clear(&msg);
    //  2. garbage of a valid length, then a good message
    uint8_t junk[8] = {4, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef};
    assert_int_equal(write(sv[0], junk, 8), 8);
    assert_int_equal(write(sv[0], head, 4), 4);
    assert_int_equal(write(sv[0], buf.data, buf.size), (ssize_t)buf.size);
    int rc = s_chan_recv_wait(b, &msg);
    assert_true(rc == SHOAL_EPROTO || rc == SHOAL_EVERSION);
    assert_int_equal(s_chan_recv_wait(b, &msg), 0);
    assert_int_equal(msg.u.e_hello.slot, 2);
    shoal_msg_clear(&msg);
    //  3. a length beyond max_msg (1024)
    uint8_t huge[4] = {0, 0, 0, 0x40};
    assert_int_equal(write(sv[0], huge, 4), 4);
    assert_int_equal(s_chan_recv_wait(b, &msg), SHOAL_EIO);
    assert_int_equal(write(sv[0], head, 4), 4);
    assert_int_equal(shoal_chan_recv(b, &msg), SHOAL_EIO); //  broken for good
    msgpack_sbuffer_destroy(&buf);
    close(sv[0]);
    shoal_chan_destroy(&b);
    assert_int_equal(shoal_chan_new(-1, 10, &b), SHOAL_EINVAL);
    assert_null(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_round_trips),
        cmocka_unit_test(test_truncated_messages_are_refused),
        cmocka_unit_test(test_bit_flips_never_crash),
        cmocka_unit_test(test_random_garbage_is_refused),
        cmocka_unit_test(test_huge_array_header_does_not_allocate),
        cmocka_unit_test(test_empty_records_cannot_amplify_allocation),
        cmocka_unit_test(test_other_version_and_unknown_type_are_named),
        cmocka_unit_test(test_newer_peer_fields_are_skipped_and_missing_ones_zero),
        cmocka_unit_test(test_chan_messages_arrive_whole_and_in_order),
        cmocka_unit_test(test_chan_large_message_is_queued_and_flushed),
        cmocka_unit_test(test_chan_partial_malformed_and_oversized_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
