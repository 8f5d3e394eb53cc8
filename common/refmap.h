/*  refmap.h: a hash map from shoal_ref_t to a non-NULL pointer.

    Open addressing with linear probing and backward-shift deletion: one allocation for
    the whole table, 24 bytes a slot, no per-entry malloc (the broker keeps a million
    queued tasks in one of these). The map does not own the values. Iteration order is
    unspecified; removing the entry just returned by shoal__refmap_next is allowed
    only through shoal__refmap_remove_at. */
#ifndef SHOAL_REFMAP_H_INCLUDED
#define SHOAL_REFMAP_H_INCLUDED

#include "shoal.h"

typedef struct shoal__refmap shoal__refmap_t;

shoal__refmap_t *shoal__refmap_new(void);
void shoal__refmap_destroy(shoal__refmap_t **self_p);
size_t shoal__refmap_size(const shoal__refmap_t *self);
/*  The value stored for key, or NULL. */
void *shoal__refmap_get(const shoal__refmap_t *self, shoal_ref_t key);
/*  Inserts or replaces. value must not be NULL. 0 or SHOAL_ENOMEM (map unchanged). */
int shoal__refmap_put(shoal__refmap_t *self, shoal_ref_t key, void *value);
/*  Removes key; returns its value, or NULL when absent. */
void *shoal__refmap_remove(shoal__refmap_t *self, shoal_ref_t key);
/*  Iterates: start with *cursor = 0; returns false at the end. */
bool shoal__refmap_next(const shoal__refmap_t *self, size_t *cursor, shoal_ref_t *key,
                        void **value);
#endif
