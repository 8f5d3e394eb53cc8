/*  chan.h: protocol messages over a connected stream socket of our own (a socketpair),
    for the worker and its executors.

    Why not ZeroMQ here: a libzmq message between two processes wakes four threads (the
    sender's I/O thread, the receiver's I/O thread, then the receiver), and a round trip
    over ipc:// costs 55-60 us on these machines against 12-18 us over a socketpair (one
    wake-up each way). The worker <-> executor exchange is two of the six hops of every
    task, so it was a third of a task's latency. The executor is the worker's child and
    never moves, so nothing of ZeroMQ (reconnection, routing, transports) is missed.

    Framing: each message is a 4-byte little-endian length, then the message frame exactly
    as proto.h encodes it (version, type, msgpack body). No raw frames. A length beyond
    the channel's max_msg cannot be skipped safely, so it breaks the channel (SHOAL_EIO).

    Sending never blocks: what the socket does not take now waits in the channel's queue
    (unbounded: the worker bounds what it sends an executor by the protocol itself, one
    e_run at a time) until shoal_chan_flush, called when the fd is writable. An executor,
    which has nothing better to do, waits with poll(POLLOUT) itself.

    Thread safety: none; callers that share a channel between threads lock around it. */
#ifndef SHOAL_CHAN_H_INCLUDED
#define SHOAL_CHAN_H_INCLUDED

#include "proto.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct shoal_chan shoal_chan_t;

/*  Wraps fd (a connected SOCK_STREAM socket, made non-blocking here) in a channel that
    owns it from now on (closed by shoal_chan_destroy, even when this fails). max_msg caps
    a received message's length. 0, SHOAL_EINVAL (fd < 0), SHOAL_ENOMEM. */
int shoal_chan_new(int fd, size_t max_msg, shoal_chan_t **self_p);
/*  Closes the socket and frees the queues. NULL-safe, nulls *self_p. */
void shoal_chan_destroy(shoal_chan_t **self_p);
/*  The socket, for poll(): POLLIN always, POLLOUT while shoal_chan_pending. */
int shoal_chan_fd(const shoal_chan_t *self);

/*  Encodes a message and sends it, or queues what the socket does not take now. 0,
    SHOAL_EINVAL or SHOAL_ENOMEM (encoding: nothing sent), SHOAL_EIO (the peer is gone or
    the channel broke earlier: nothing more will be sent). */
int shoal_chan_send(shoal_chan_t *self, int type, const void *body);
/*  Writes queued bytes. 0 (nothing left), SHOAL_EAGAIN (some left: poll for POLLOUT),
    SHOAL_EIO (the peer is gone). */
int shoal_chan_flush(shoal_chan_t *self);
/*  Bytes queued and not yet written. */
size_t shoal_chan_pending(const shoal_chan_t *self);

/*  Receives the next whole message, reading from the socket only when none is buffered.
    Returns 0 (*msg decoded: shoal_msg_clear it), SHOAL_EAGAIN (no whole message yet),
    SHOAL_EPROTO or SHOAL_EVERSION (one malformed message, skipped: the next call goes on
    with the one after), SHOAL_ENOMEM (no buffer for the message: try again later),
    SHOAL_EIO (the peer closed, a read failed, or a length beyond max_msg: the channel is
    broken for good). */
int shoal_chan_recv(shoal_chan_t *self, shoal_msg_t *msg);

#endif
