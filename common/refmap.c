/*  refmap.c: open-addressing hash map keyed by refs. */
#include "refmap.h"

#include <stdlib.h>

typedef struct {
    shoal_ref_t key;
    void *value; //  NULL marks an empty slot
} s_slot_t;

struct shoal__refmap {
    s_slot_t *slots;
    size_t mask; //  capacity - 1; capacity is a power of two
    size_t size;
};

//  Refs are random in hi and sequential in lo; a multiply-xorshift mixes both so that
//  sequential counters from one client spread over the table.
static inline size_t s_hash(shoal_ref_t k)
{
    uint64_t h = k.hi ^ (k.lo * 0x9E3779B97F4A7C15ull);
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return (size_t)h;
}

shoal__refmap_t *shoal__refmap_new(void)
{
    shoal__refmap_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = calloc(16, sizeof(s_slot_t));
    if (!self->slots) {
        free(self);
        return NULL;
    }
    self->mask = 15;
    return self;
}

void shoal__refmap_destroy(shoal__refmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

size_t shoal__refmap_size(const shoal__refmap_t *self)
{
    return self->size;
}

static size_t s_find(const shoal__refmap_t *self, shoal_ref_t key)
{
    size_t i = s_hash(key) & self->mask;
    while (self->slots[i].value && !shoal_ref_equal(self->slots[i].key, key))
        i = (i + 1) & self->mask;
    return i;
}

void *shoal__refmap_get(const shoal__refmap_t *self, shoal_ref_t key)
{
    return self->slots[s_find(self, key)].value;
}

static int s_grow(shoal__refmap_t *self)
{
    size_t cap = (self->mask + 1) * 2;
    s_slot_t *slots = calloc(cap, sizeof(s_slot_t));
    if (!slots)
        return SHOAL_ENOMEM;
    s_slot_t *old = self->slots;
    size_t old_cap = self->mask + 1;
    self->slots = slots;
    self->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].value)
            self->slots[s_find(self, old[i].key)] = old[i];
    free(old);
    return 0;
}

int shoal__refmap_put(shoal__refmap_t *self, shoal_ref_t key, void *value)
{
    //  Load factor at most 3/4: probes stay short with linear probing.
    if ((self->size + 1) * 4 > (self->mask + 1) * 3 && s_grow(self) != 0)
        return SHOAL_ENOMEM;
    size_t i = s_find(self, key);
    if (!self->slots[i].value)
        self->size++;
    self->slots[i].key = key;
    self->slots[i].value = value;
    return 0;
}

void *shoal__refmap_remove(shoal__refmap_t *self, shoal_ref_t key)
{
    size_t i = s_find(self, key);
    void *value = self->slots[i].value;
    if (!value)
        return NULL;
    self->size--;
    //  Backward-shift deletion: move later members of the probe run into the hole so
    //  no tombstones accumulate.
    size_t j = i;
    for (;;) {
        self->slots[i].value = NULL;
        for (;;) {
            j = (j + 1) & self->mask;
            if (!self->slots[j].value)
                return value;
            size_t home = s_hash(self->slots[j].key) & self->mask;
            //  Keep j where it is if its home lies cyclically in (i, j].
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
                continue;
            break;
        }
        self->slots[i] = self->slots[j];
        i = j;
    }
}

bool shoal__refmap_next(const shoal__refmap_t *self, size_t *cursor, shoal_ref_t *key, void **value)
{
    for (size_t i = *cursor; i <= self->mask; i++) {
        if (self->slots[i].value) {
            if (key)
                *key = self->slots[i].key;
            if (value)
                *value = self->slots[i].value;
            *cursor = i + 1;
            return true;
        }
    }
    *cursor = self->mask + 1;
    return false;
}
