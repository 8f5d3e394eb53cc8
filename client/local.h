/*  local.h: local://N, a cluster on this host started for one client and stopped with it.
    Internal to libshoal; include/shoal.h (shoal_connect) documents the URL for users. */
#ifndef SHOAL_LOCAL_H_INCLUDED
#define SHOAL_LOCAL_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct shoal__local shoal__local_t;

/*  Starts `shoal up` for url ("local://N[?slots=S&shm=SIZE&log=FILE]") and waits until it
    prints its broker's address, at most until deadline (monotonic ms from shoal__now_ms,
    -1: no deadline). On success *local_p owns the running cluster and endpoint holds the
    broker's tcp:// address. On failure nothing is left running and err explains:
      SHOAL_EINVAL     url is malformed (nothing was started);
      SHOAL_ENOTFOUND  no shoal binary (err says where it looked);
      SHOAL_ETIMEDOUT  the cluster was not ready by the deadline (it was stopped);
      SHOAL_EIO        `shoal up` could not be started or ended early (err has the tail of
                       its stderr);
      SHOAL_ENOMEM. */
int shoal__local_start(const char *url, int64_t deadline, shoal__local_t **local_p, char *endpoint,
                       size_t endpoint_size, char *err, size_t err_size);

/*  Stops the cluster: SIGTERM to `shoal up`, which stops its workers and broker and removes
    their stores and arenas; SIGKILL after a deadline. Frees everything, sets *local_p to
    NULL. NULL-safe. */
void shoal__local_stop(shoal__local_t **local_p);

#endif
