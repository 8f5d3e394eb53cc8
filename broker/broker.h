/*  broker.h: the shoal broker as an embeddable object with a thin main (cli/).

    One thread, one event loop: a ROUTER for clients and workers, an XPUB for events.
    shoal_broker_run() blocks until SIGINT/SIGTERM (or shoal_broker_stop from a signal
    handler) and returns 0, or returns a negative SHOAL_E* code at once when it cannot
    start (an endpoint in use, a bad state dir), after logging what failed. */
#ifndef SHOAL_BROKER_H_INCLUDED
#define SHOAL_BROKER_H_INCLUDED

#include "shoal.h"

typedef struct {
    const char *listen;    /*  control endpoint; default tcp://127.0.0.1:7400 */
    const char *events;    /*  events endpoint; default tcp://127.0.0.1:7401 */
    const char *state_dir; /*  journal of submitted tasks; NULL: none */
    int heartbeat_ms;      /*  default 1000 */
    int dead_after;        /*  heartbeats missed before a worker is dead; default 5 */
    /*  Bytes of small objects the directory may hold before an inline put (a client's
        SHOAL_KIND_PUT with SHOAL_OUT_INLINE) is refused: such a put fails with SHOAL_EFULL
        naming the budget. 0: the default, 1 GiB. Only puts are refused: small task outputs
        and logs exist nowhere else once their worker sent them, so they are always kept
        (and count towards what is held). */
    uint64_t inline_budget;
    /*  The workers' put lease (SHOAL_PUT_LEASE_MS); 0 or less: that. The broker keeps the
        tombstone of a forgotten put this long, and a put in a store that its worker has
        not reported (no note, not in its w_hello's writing) for twice this long is canceled
        (SHOAL_ECANCELED). Tests shorten it. */
    int put_lease_ms;
} shoal_broker_config_t;

/*  Binds, then prints ONE line on stdout and flushes it, which `shoal up`, scripts and tests
    read to learn the ports actually bound (ports may be given as * or 0):
        shoal broker: listening on tcp://127.0.0.1:41234, events on tcp://127.0.0.1:41235
    then serves until a signal. */
int shoal_broker_run(const shoal_broker_config_t *config);

/*  Async-signal-safe: asks a running broker loop in this process to stop. */
void shoal_broker_stop(void);

#endif
