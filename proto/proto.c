/*  proto.c: the generic codec that walks the descriptors generated from proto.h.

    Encoding uses msgpack-c's packer. Decoding uses a small reader of our own instead of
    msgpack-c's object tree: msgpack_unpack_next allocates count * 24 bytes for an array
    header before it knows whether the bytes exist, so a 5-byte message can ask for 100 GB.
    Here every count is checked against the bytes left (each element takes at least one)
    before anything is allocated, nesting is bounded, and nothing is built but the
    destination struct. */
#include "proto.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/*  ---------------------------------------------------------------------- descriptors */

#define SHOAL__SUB_U64(s)  NULL
#define SHOAL__SUB_I64(s)  NULL
#define SHOAL__SUB_STR(s)  NULL
#define SHOAL__SUB_BIN(s)  NULL
#define SHOAL__SUB_REF(s)  NULL
#define SHOAL__SUB_REFS(s) NULL
#define SHOAL__SUB_STRS(s) NULL
#define SHOAL__SUB_U64S(s) NULL
#define SHOAL__SUB_REC(s)  &shoal_wire_##s##_desc
#define SHOAL__SUB_RECS(s) &shoal_wire_##s##_desc
#define SHOAL__FIELD(R, T, n, s)                                                                   \
    {SHOAL_FT_##T, offsetof(shoal_wire_##R##_t, n), #n, SHOAL__SUB_##T(s)},
#define SHOAL__DEFINE_DESC(name)                                                                   \
    static const shoal_wire_field_t s_fields_##name[] = {SHOAL_WIRE_##name(SHOAL__FIELD, name)};   \
    const shoal_wire_desc_t shoal_wire_##name##_desc = {#name, sizeof(shoal_wire_##name##_t),      \
                                                        SHOAL__ARRAY_SIZE(s_fields_##name),        \
                                                        s_fields_##name};
#define SHOAL__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
SHOAL_WIRE_RECORDS(SHOAL__DEFINE_DESC)
#define SHOAL__DEFINE_MSG_DESC(id, name) SHOAL__DEFINE_DESC(name)
SHOAL_WIRE_MESSAGES(SHOAL__DEFINE_MSG_DESC)

const char *shoal_msg_name(int type)
{
    switch (type) {
#define SHOAL__NAME_CASE(id, name)                                                                 \
    case id:                                                                                       \
        return #name;
        SHOAL_WIRE_MESSAGES(SHOAL__NAME_CASE)
    default:
        return NULL;
    }
}

const shoal_wire_desc_t *shoal_msg_desc(int type)
{
    switch (type) {
#define SHOAL__DESC_CASE(id, name)                                                                 \
    case id:                                                                                       \
        return &shoal_wire_##name##_desc;
        SHOAL_WIRE_MESSAGES(SHOAL__DESC_CASE)
    default:
        return NULL;
    }
}

const char *shoal_wire_state_name(uint64_t state)
{
    static const char *names[] = {"unknown", "waiting", "ready",    "running",
                                  "done",    "failed",  "canceled", "lost"};
    return state < SHOAL__ARRAY_SIZE(names) ? names[state] : "invalid";
}

/*  ---------------------------------------------------------------------------- encode */

static inline void s_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t s_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int s_pack_str(msgpack_packer *pk, const char *s)
{
    if (!s)
        return msgpack_pack_nil(pk);
    size_t len = strlen(s);
    return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len);
}

static int s_pack_record(msgpack_packer *pk, const shoal_wire_desc_t *desc, const void *rec);

static int s_pack_field(msgpack_packer *pk, const shoal_wire_field_t *f, const void *rec)
{
    const char *at = (const char *)rec + f->offset;
    switch (f->type) {
    case SHOAL_FT_U64:
        return msgpack_pack_uint64(pk, *(const uint64_t *)at);
    case SHOAL_FT_I64:
        return msgpack_pack_int64(pk, *(const int64_t *)at);
    case SHOAL_FT_STR:
        return s_pack_str(pk, *(char *const *)at);
    case SHOAL_FT_BIN: {
        const shoal_wire_bin_t *b = (const shoal_wire_bin_t *)at;
        return msgpack_pack_bin(pk, b->size) || msgpack_pack_bin_body(pk, b->data, b->size);
    }
    case SHOAL_FT_REF: {
        const shoal_ref_t *r = (const shoal_ref_t *)at;
        uint8_t raw[16];
        s_put_be64(raw, r->hi);
        s_put_be64(raw + 8, r->lo);
        return msgpack_pack_bin(pk, 16) || msgpack_pack_bin_body(pk, raw, 16);
    }
    case SHOAL_FT_REFS: {
        const shoal_wire_refs_t *refs = (const shoal_wire_refs_t *)at;
        if (msgpack_pack_bin(pk, refs->count * 16))
            return -1;
        for (size_t i = 0; i < refs->count; i++) {
            uint8_t raw[16];
            s_put_be64(raw, refs->items[i].hi);
            s_put_be64(raw + 8, refs->items[i].lo);
            if (msgpack_pack_bin_body(pk, raw, 16))
                return -1;
        }
        return 0;
    }
    case SHOAL_FT_STRS: {
        const shoal_wire_strs_t *strs = (const shoal_wire_strs_t *)at;
        if (msgpack_pack_array(pk, strs->count))
            return -1;
        for (size_t i = 0; i < strs->count; i++)
            if (s_pack_str(pk, strs->items[i]))
                return -1;
        return 0;
    }
    case SHOAL_FT_U64S: {
        const shoal_wire_u64s_t *v = (const shoal_wire_u64s_t *)at;
        if (msgpack_pack_array(pk, v->count))
            return -1;
        for (size_t i = 0; i < v->count; i++)
            if (msgpack_pack_uint64(pk, v->items[i]))
                return -1;
        return 0;
    }
    case SHOAL_FT_REC:
        return s_pack_record(pk, f->sub, at);
    case SHOAL_FT_RECS: {
        //  All RECS fields share the layout {items, count}.
        const struct {
            const char *items;
            size_t count;
        } *arr = (const void *)at;
        if (msgpack_pack_array(pk, arr->count))
            return -1;
        for (size_t i = 0; i < arr->count; i++)
            if (s_pack_record(pk, f->sub, arr->items + i * f->sub->size))
                return -1;
        return 0;
    }
    }
    return -1;
}

static int s_pack_record(msgpack_packer *pk, const shoal_wire_desc_t *desc, const void *rec)
{
    if (msgpack_pack_array(pk, desc->nfields))
        return -1;
    for (size_t i = 0; i < desc->nfields; i++)
        if (s_pack_field(pk, &desc->fields[i], rec))
            return -1;
    return 0;
}

int shoal_proto_encode(int type, const void *body, msgpack_sbuffer *buf)
{
    const shoal_wire_desc_t *desc = shoal_msg_desc(type);
    if (!desc || !body || !buf)
        return SHOAL_EINVAL;
    const char header[2] = {(char)SHOAL_PROTO_VERSION, (char)type};
    if (msgpack_sbuffer_write(buf, header, 2))
        return SHOAL_ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    return s_pack_record(&pk, desc, body) ? SHOAL_ENOMEM : 0;
}

/*  ------------------------------------------------------------------------- storage */

//  Decoded strings and arrays live in a chain of chunks freed together.
typedef struct s_chunk {
    struct s_chunk *next;
    size_t used, size;
    max_align_t data[];
} s_chunk_t;

//  What a decoded message may allocate: S_AMPLIFY times its bytes, plus some. A record
//  costs its struct (up to ~150 bytes) however few bytes it took on the wire (an empty
//  array is one byte), so without a cap a 64 MiB message could make a peer allocate GBs.
//  Real messages stay under 10x (a no-op task: ~60 bytes on the wire, 144 decoded).
#define S_AMPLIFY     32
#define S_AMPLIFY_MIN (1u << 20)

/*  Chunks are 8 KiB unless one string or array needs more. A loop that decodes and clears
    one message per turn kept asking malloc for a fresh 8 KiB chunk and giving it back: a
    request that size makes glibc consolidate its fast bins, and the broker spent ~15% of
    its CPU in malloc/free on the latency path. One spare standard chunk, process-wide
    behind an atomic exchange (messages may be decoded and cleared in any thread), makes
    the common case allocation-free. */
#define S_CHUNK 8192
static _Atomic(s_chunk_t *) s_spare;

static void *s_alloc(shoal_msg_t *msg, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size > msg->budget_) {
        msg->budget_ = SIZE_MAX; //  marks the failure as malformed, not out of memory
        return NULL;
    }
    msg->budget_ -= size;
    s_chunk_t *c = msg->storage_;
    if (!c || c->size - c->used < size) {
        size_t cap = size > S_CHUNK ? size : S_CHUNK;
        s_chunk_t *n = cap == S_CHUNK ? atomic_exchange(&s_spare, NULL) : NULL;
        if (!n && !(n = malloc(sizeof *n + cap)))
            return NULL;
        n->next = c;
        n->used = 0;
        n->size = cap;
        msg->storage_ = c = n;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

void shoal_msg_clear(shoal_msg_t *msg)
{
    if (!msg)
        return;
    s_chunk_t *c = msg->storage_;
    while (c) {
        s_chunk_t *next = c->next;
        free(c->size == S_CHUNK ? atomic_exchange(&s_spare, c) : c);
        c = next;
    }
    msg->storage_ = NULL;
}

/*  ---------------------------------------------------------------------------- decode */

typedef struct {
    const uint8_t *p, *end;
} s_rd_t;

#define S_MAX_DEPTH 16 //  our deepest record nests 3 deep; more is an attack

static inline size_t s_left(const s_rd_t *r)
{
    return (size_t)(r->end - r->p);
}

static int s_read_be(s_rd_t *r, size_t n, uint64_t *v)
{
    if (s_left(r) < n)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | r->p[i];
    r->p += n;
    *v = x;
    return 0;
}

//  Reads any msgpack integer into a sign flag and magnitude-ish pair.
static int s_read_intval(s_rd_t *r, bool *negative, uint64_t *u, int64_t *s)
{
    if (s_left(r) < 1)
        return -1;
    uint8_t b = *r->p++;
    uint64_t v;
    *negative = false;
    if (b <= 0x7f) {
        *u = b;
        return 0;
    }
    if (b >= 0xe0) {
        *negative = true;
        *s = (int8_t)b;
        return 0;
    }
    switch (b) {
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (s_read_be(r, (size_t)1 << (b - 0xcc), &v))
            return -1;
        *u = v;
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t n = (size_t)1 << (b - 0xd0);
        if (s_read_be(r, n, &v))
            return -1;
        //  sign-extend the n-byte value
        int64_t x = n == 8 ? (int64_t)v : (int64_t)(v << (64 - 8 * n)) >> (64 - 8 * n);
        if (x >= 0)
            *u = (uint64_t)x;
        else {
            *negative = true;
            *s = x;
        }
        return 0;
    }
    default:
        return -1;
    }
}

static int s_read_u64(s_rd_t *r, uint64_t *out)
{
    bool neg;
    int64_t s;
    if (s_read_intval(r, &neg, out, &s) || neg)
        return -1;
    return 0;
}

static int s_read_i64(s_rd_t *r, int64_t *out)
{
    bool neg;
    uint64_t u;
    int64_t s;
    if (s_read_intval(r, &neg, &u, &s))
        return -1;
    if (neg)
        *out = s;
    else if (u > INT64_MAX)
        return -1;
    else
        *out = (int64_t)u;
    return 0;
}

//  str or bin (kind 's' or 'b'); nil allowed for str. *ptr NULL means nil.
static int s_read_raw(s_rd_t *r, char kind, const uint8_t **ptr, size_t *len)
{
    if (s_left(r) < 1)
        return -1;
    uint8_t b = *r->p++;
    uint64_t n;
    if (kind == 's' && b == 0xc0) {
        *ptr = NULL;
        *len = 0;
        return 0;
    }
    if (kind == 's' && (b & 0xe0) == 0xa0)
        n = b & 0x1f;
    else if (kind == 's' && b >= 0xd9 && b <= 0xdb) {
        if (s_read_be(r, (size_t)1 << (b - 0xd9), &n))
            return -1;
    } else if (kind == 'b' && b >= 0xc4 && b <= 0xc6) {
        if (s_read_be(r, (size_t)1 << (b - 0xc4), &n))
            return -1;
    } else
        return -1;
    if (n > s_left(r))
        return -1;
    *ptr = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

static int s_read_array(s_rd_t *r, size_t *count)
{
    if (s_left(r) < 1)
        return -1;
    uint8_t b = *r->p++;
    uint64_t n;
    if ((b & 0xf0) == 0x90)
        n = b & 0x0f;
    else if (b == 0xdc || b == 0xdd) {
        if (s_read_be(r, b == 0xdc ? 2 : 4, &n))
            return -1;
    } else
        return -1;
    if (n > s_left(r)) //  every element takes at least one byte
        return -1;
    *count = (size_t)n;
    return 0;
}

//  Skips one value of any type (fields appended by a newer peer).
static int s_skip(s_rd_t *r, int depth)
{
    if (depth > S_MAX_DEPTH || s_left(r) < 1)
        return -1;
    uint8_t b = *r->p;
    uint64_t n = 0;
    size_t pairs = 1; //  elements per entry: 2 for maps
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
        return 0;
    }
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb)) {
        const uint8_t *p;
        size_t len;
        return s_read_raw(r, 's', &p, &len);
    }
    if (b >= 0xc4 && b <= 0xc6) {
        const uint8_t *p;
        size_t len;
        return s_read_raw(r, 'b', &p, &len);
    }
    r->p++;
    switch (b) {
    case 0xcc:
    case 0xd0:
        n = 1;
        break;
    case 0xcd:
    case 0xd1:
        n = 2;
        break;
    case 0xca:
    case 0xce:
    case 0xd2:
        n = 4;
        break;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        n = 8;
        break;
    case 0xd4:
        n = 2;
        break; //  fixext: type byte + 1, 2, 4, 8, 16
    case 0xd5:
        n = 3;
        break;
    case 0xd6:
        n = 5;
        break;
    case 0xd7:
        n = 9;
        break;
    case 0xd8:
        n = 17;
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9: {
        if (s_read_be(r, (size_t)1 << (b - 0xc7), &n))
            return -1;
        n += 1; //  the ext type byte
        break;
    }
    default: {
        size_t count;
        if ((b & 0xf0) == 0x90)
            count = b & 0x0f;
        else if ((b & 0xf0) == 0x80)
            count = b & 0x0f, pairs = 2;
        else if (b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
            if (s_read_be(r, (b == 0xdc || b == 0xde) ? 2 : 4, &n))
                return -1;
            count = (size_t)n;
            if (b >= 0xde)
                pairs = 2;
        } else
            return -1; //  0xc1 is never used
        if (count > s_left(r))
            return -1;
        for (size_t i = 0; i < count * pairs; i++)
            if (s_skip(r, depth + 1))
                return -1;
        return 0;
    }
    }
    if (n > s_left(r))
        return -1;
    r->p += n;
    return 0;
}

static int s_read_record(s_rd_t *r, shoal_msg_t *msg, const shoal_wire_desc_t *desc, void *rec,
                         int depth);

static int s_read_field(s_rd_t *r, shoal_msg_t *msg, const shoal_wire_field_t *f, char *at,
                        int depth)
{
    const uint8_t *ptr;
    size_t len, count;
    switch (f->type) {
    case SHOAL_FT_U64:
        return s_read_u64(r, (uint64_t *)at);
    case SHOAL_FT_I64:
        return s_read_i64(r, (int64_t *)at);
    case SHOAL_FT_STR: {
        if (s_read_raw(r, 's', &ptr, &len))
            return -1;
        if (!ptr) {
            *(char **)at = NULL;
            return 0;
        }
        //  An embedded NUL would silently truncate the string everywhere it is used.
        if (memchr(ptr, 0, len))
            return -1;
        char *s = s_alloc(msg, len + 1);
        if (!s)
            return -2;
        memcpy(s, ptr, len);
        s[len] = '\0';
        *(char **)at = s;
        return 0;
    }
    case SHOAL_FT_BIN: {
        if (s_read_raw(r, 'b', &ptr, &len))
            return -1;
        shoal_wire_bin_t *b = (shoal_wire_bin_t *)at;
        uint8_t *copy = s_alloc(msg, len ? len : 1);
        if (!copy)
            return -2;
        memcpy(copy, ptr, len);
        b->data = copy;
        b->size = len;
        return 0;
    }
    case SHOAL_FT_REF: {
        if (s_read_raw(r, 'b', &ptr, &len) || len != 16)
            return -1;
        shoal_ref_t *ref = (shoal_ref_t *)at;
        ref->hi = s_get_be64(ptr);
        ref->lo = s_get_be64(ptr + 8);
        return 0;
    }
    case SHOAL_FT_REFS: {
        if (s_read_raw(r, 'b', &ptr, &len) || len % 16)
            return -1;
        shoal_wire_refs_t *refs = (shoal_wire_refs_t *)at;
        refs->count = len / 16;
        refs->items = s_alloc(msg, len ? len : 1);
        if (!refs->items)
            return -2;
        for (size_t i = 0; i < refs->count; i++) {
            refs->items[i].hi = s_get_be64(ptr + 16 * i);
            refs->items[i].lo = s_get_be64(ptr + 16 * i + 8);
        }
        return 0;
    }
    case SHOAL_FT_STRS: {
        if (s_read_array(r, &count))
            return -1;
        shoal_wire_strs_t *strs = (shoal_wire_strs_t *)at;
        strs->items = s_alloc(msg, (count + 1) * sizeof(char *));
        if (!strs->items)
            return -2;
        strs->count = count;
        static const shoal_wire_field_t str_field = {SHOAL_FT_STR, 0, "item", NULL};
        for (size_t i = 0; i < count; i++) {
            int rc = s_read_field(r, msg, &str_field, (char *)&strs->items[i], depth);
            if (rc)
                return rc;
        }
        strs->items[count] = NULL; //  argv-style terminator, handy for execvp
        return 0;
    }
    case SHOAL_FT_U64S: {
        if (s_read_array(r, &count))
            return -1;
        shoal_wire_u64s_t *v = (shoal_wire_u64s_t *)at;
        v->items = s_alloc(msg, count ? count * sizeof(uint64_t) : 1);
        if (!v->items)
            return -2;
        v->count = count;
        for (size_t i = 0; i < count; i++)
            if (s_read_u64(r, &v->items[i]))
                return -1;
        return 0;
    }
    case SHOAL_FT_REC:
        return s_read_record(r, msg, f->sub, at, depth + 1);
    case SHOAL_FT_RECS: {
        if (s_read_array(r, &count))
            return -1;
        struct {
            char *items;
            size_t count;
        } *arr = (void *)at;
        arr->items = s_alloc(msg, count ? count * f->sub->size : 1);
        if (!arr->items)
            return -2;
        memset(arr->items, 0, count * f->sub->size);
        arr->count = count;
        for (size_t i = 0; i < count; i++) {
            int rc = s_read_record(r, msg, f->sub, arr->items + i * f->sub->size, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    }
    return -1;
}

static int s_read_record(s_rd_t *r, shoal_msg_t *msg, const shoal_wire_desc_t *desc, void *rec,
                         int depth)
{
    size_t count;
    if (depth > S_MAX_DEPTH || s_read_array(r, &count))
        return -1;
    for (size_t i = 0; i < count; i++) {
        int rc = i < desc->nfields ? s_read_field(r, msg, &desc->fields[i],
                                                  (char *)rec + desc->fields[i].offset, depth)
                                   : s_skip(r, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

int shoal_proto_decode(const void *data, size_t size, shoal_msg_t *msg)
{
    if (!msg)
        return SHOAL_EINVAL;
    memset(msg, 0, sizeof *msg);
    if (!data || size < 2)
        return SHOAL_EPROTO;
    const uint8_t *bytes = data;
    if (bytes[0] != SHOAL_PROTO_VERSION)
        return SHOAL_EVERSION;
    const shoal_wire_desc_t *desc = shoal_msg_desc(bytes[1]);
    if (!desc)
        return SHOAL_EPROTO;
    msg->type = bytes[1];
    msg->budget_ = size > (SIZE_MAX / 2 - S_AMPLIFY_MIN) / S_AMPLIFY
                       ? SIZE_MAX / 2
                       : size * S_AMPLIFY + S_AMPLIFY_MIN;
    s_rd_t r = {bytes + 2, bytes + size};
    int rc = s_read_record(&r, msg, desc, &msg->u, 0);
    if (rc == 0 && r.p != r.end)
        rc = -1; //  trailing bytes
    if (rc) {
        bool over_budget = msg->budget_ == SIZE_MAX;
        shoal_msg_clear(msg);
        memset(msg, 0, sizeof *msg);
        return rc == -2 && !over_budget ? SHOAL_ENOMEM : SHOAL_EPROTO;
    }
    return 0;
}

/*  ------------------------------------------------------------------------------- dup */

#define S_ALIGN(n) (((n) + 15) & ~(size_t)15)

//  Bytes a record's pointed-to data needs (not counting the record itself).
static size_t s_extra_size(const shoal_wire_desc_t *desc, const void *rec)
{
    size_t total = 0;
    for (size_t i = 0; i < desc->nfields; i++) {
        const shoal_wire_field_t *f = &desc->fields[i];
        const char *at = (const char *)rec + f->offset;
        switch (f->type) {
        case SHOAL_FT_STR:
            if (*(char *const *)at)
                total += S_ALIGN(strlen(*(char *const *)at) + 1);
            break;
        case SHOAL_FT_BIN:
            total += S_ALIGN(((const shoal_wire_bin_t *)at)->size);
            break;
        case SHOAL_FT_REFS:
            total += S_ALIGN(((const shoal_wire_refs_t *)at)->count * sizeof(shoal_ref_t));
            break;
        case SHOAL_FT_U64S:
            total += S_ALIGN(((const shoal_wire_u64s_t *)at)->count * sizeof(uint64_t));
            break;
        case SHOAL_FT_STRS: {
            const shoal_wire_strs_t *s = (const shoal_wire_strs_t *)at;
            total += S_ALIGN((s->count + 1) * sizeof(char *));
            for (size_t j = 0; j < s->count; j++)
                if (s->items[j])
                    total += S_ALIGN(strlen(s->items[j]) + 1);
            break;
        }
        case SHOAL_FT_REC:
            total += s_extra_size(f->sub, at);
            break;
        case SHOAL_FT_RECS: {
            const struct {
                const char *items;
                size_t count;
            } *arr = (const void *)at;
            total += S_ALIGN(arr->count * f->sub->size);
            for (size_t j = 0; j < arr->count; j++)
                total += s_extra_size(f->sub, arr->items + j * f->sub->size);
            break;
        }
        default:
            break;
        }
    }
    return total;
}

static char *s_take(char **cursor, size_t size)
{
    char *p = *cursor;
    *cursor += S_ALIGN(size);
    return p;
}

//  dst already holds a shallow copy of the record; repoint its data into *cursor.
static void s_deep_copy(const shoal_wire_desc_t *desc, void *dst, char **cursor)
{
    for (size_t i = 0; i < desc->nfields; i++) {
        const shoal_wire_field_t *f = &desc->fields[i];
        char *at = (char *)dst + f->offset;
        switch (f->type) {
        case SHOAL_FT_STR: {
            char **s = (char **)at;
            if (*s) {
                size_t len = strlen(*s) + 1;
                char *copy = s_take(cursor, len);
                memcpy(copy, *s, len);
                *s = copy;
            }
            break;
        }
        case SHOAL_FT_BIN: {
            shoal_wire_bin_t *b = (shoal_wire_bin_t *)at;
            char *copy = s_take(cursor, b->size);
            if (b->size)
                memcpy(copy, b->data, b->size);
            b->data = (const uint8_t *)copy;
            break;
        }
        case SHOAL_FT_REFS: {
            shoal_wire_refs_t *r = (shoal_wire_refs_t *)at;
            char *copy = s_take(cursor, r->count * sizeof(shoal_ref_t));
            if (r->count)
                memcpy(copy, r->items, r->count * sizeof(shoal_ref_t));
            r->items = (shoal_ref_t *)copy;
            break;
        }
        case SHOAL_FT_U64S: {
            shoal_wire_u64s_t *v = (shoal_wire_u64s_t *)at;
            char *copy = s_take(cursor, v->count * sizeof(uint64_t));
            if (v->count)
                memcpy(copy, v->items, v->count * sizeof(uint64_t));
            v->items = (uint64_t *)copy;
            break;
        }
        case SHOAL_FT_STRS: {
            shoal_wire_strs_t *s = (shoal_wire_strs_t *)at;
            char **items = (char **)s_take(cursor, (s->count + 1) * sizeof(char *));
            for (size_t j = 0; j < s->count; j++) {
                items[j] = s->items[j];
                if (items[j]) {
                    size_t len = strlen(items[j]) + 1;
                    char *copy = s_take(cursor, len);
                    memcpy(copy, items[j], len);
                    items[j] = copy;
                }
            }
            items[s->count] = NULL;
            s->items = items;
            break;
        }
        case SHOAL_FT_REC:
            s_deep_copy(f->sub, at, cursor);
            break;
        case SHOAL_FT_RECS: {
            struct {
                char *items;
                size_t count;
            } *arr = (void *)at;
            char *items = s_take(cursor, arr->count * f->sub->size);
            if (arr->count)
                memcpy(items, arr->items, arr->count * f->sub->size);
            arr->items = items;
            for (size_t j = 0; j < arr->count; j++)
                s_deep_copy(f->sub, items + j * f->sub->size, cursor);
            break;
        }
        default:
            break;
        }
    }
}

void *shoal_wire_dup(const shoal_wire_desc_t *desc, const void *src)
{
    size_t head = S_ALIGN(desc->size);
    char *block = malloc(head + s_extra_size(desc, src));
    if (!block)
        return NULL;
    memcpy(block, src, desc->size);
    char *cursor = block + head;
    s_deep_copy(desc, block, &cursor);
    return block;
}
