/*  wire.h: sending and receiving protocol messages on libzmq sockets.

    Sockets are raw libzmq handles (zsock_resolve() of a czmq zsock_t works). A message on
    the wire is [routing id, if the socket is a ROUTER] [message frame] [raw frame]?: at
    most one raw frame of bulk bytes follows the message frame. */
#ifndef SHOAL_WIRE_H_INCLUDED
#define SHOAL_WIRE_H_INCLUDED

#include "proto.h"

#include <string.h>
#include <zmq.h>

/*  A ROUTER peer's routing id (libzmq caps them at 255 bytes). */
typedef struct {
    uint8_t size;
    uint8_t id[255];
} shoal_wire_peer_t;

static inline bool shoal_wire_peer_equal(const shoal_wire_peer_t *a, const shoal_wire_peer_t *b)
{
    return a->size == b->size && memcmp(a->id, b->id, a->size) == 0;
}

/*  One received message. */
typedef struct {
    shoal_wire_peer_t peer; /*  set when received on a ROUTER */
    shoal_msg_t msg;        /*  decoded; valid when recv returned 0 */
    zmq_msg_t raw;          /*  the raw frame; has_raw says whether there was one */
    bool has_raw;
} shoal_wire_in_t;

/*  Sends one message. peer: the routing id for a ROUTER socket, else NULL. raw/raw_size:
    optional bulk bytes sent as one more frame (copied). Never blocks (ZMQ_DONTWAIT): returns
    0, SHOAL_EAGAIN when the peer's pipe is full, SHOAL_EUNREACH when a ROUTER (with
    ZMQ_ROUTER_MANDATORY) has no such peer, SHOAL_EINVAL/SHOAL_ENOMEM from encoding, or
    SHOAL_EIO for any other socket error. */
int shoal_wire_send(void *sock, const shoal_wire_peer_t *peer, int type, const void *body,
                    const void *raw, size_t raw_size);

/*  Like shoal_wire_send, but the raw frame is a zmq_msg_t whose content is moved (it is
    closed on return, sent or not): lets callers send arena bytes without copying via
    zmq_msg_init_data. */
int shoal_wire_send_msg(void *sock, const shoal_wire_peer_t *peer, int type, const void *body,
                        zmq_msg_t *raw);

/*  Receives one message. router: the socket is a ROUTER (first frame is the routing id).
    flags: 0 to block or ZMQ_DONTWAIT. Returns:
      0             in->msg is decoded (call shoal_wire_in_clear when done);
      SHOAL_EAGAIN  nothing to read (ZMQ_DONTWAIT);
      SHOAL_EPROTO  a malformed message or unexpected frames: consumed entirely; in->peer
                    says who sent it, so the caller may answer with an error;
      SHOAL_EVERSION another protocol version (consumed; in->peer set);
      SHOAL_EIO     the socket failed (ETERM, EINTR...). */
int shoal_wire_recv(void *sock, bool router, shoal_wire_in_t *in, int flags);
void shoal_wire_in_clear(shoal_wire_in_t *in);

/*  Sends an error message (type error) with code and text; ignores send failures. */
void shoal_wire_send_error(void *sock, const shoal_wire_peer_t *peer, int code, const char *fmt,
                           ...) __attribute__((format(printf, 4, 5)));

#endif
