/*  wire.c: one protocol message <-> zmq frames. */
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_free_sbuffer_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

static int s_map_errno(int err)
{
    switch (err) {
    case EAGAIN:
        return SHOAL_EAGAIN;
    case EHOSTUNREACH:
        return SHOAL_EUNREACH;
    case ENOMEM:
        return SHOAL_ENOMEM;
    default:
        return SHOAL_EIO;
    }
}

int shoal_wire_send_msg(void *sock, const shoal_wire_peer_t *peer, int type, const void *body,
                        zmq_msg_t *raw)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    int rc = shoal_proto_encode(type, body, &buf);
    if (rc) {
        msgpack_sbuffer_destroy(&buf);
        if (raw)
            zmq_msg_close(raw);
        return rc;
    }
    //  Hand the encoded buffer to libzmq without copying it.
    zmq_msg_t frame;
    if (zmq_msg_init_data(&frame, buf.data, buf.size, s_free_sbuffer_data, NULL) != 0) {
        msgpack_sbuffer_destroy(&buf);
        if (raw)
            zmq_msg_close(raw);
        return SHOAL_ENOMEM;
    }
    msgpack_sbuffer_release(&buf);

    rc = 0;
    if (peer && zmq_send(sock, peer->id, peer->size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        rc = s_map_errno(errno);
    //  With ZMQ_ROUTER_MANDATORY the id frame fails with EHOSTUNREACH or EAGAIN and nothing
    //  is queued; after it succeeds the remaining frames of the message cannot fail that way.
    if (rc == 0 && zmq_msg_send(&frame, sock, ZMQ_DONTWAIT | (raw ? ZMQ_SNDMORE : 0)) < 0)
        rc = s_map_errno(errno);
    if (rc == 0 && raw && zmq_msg_send(raw, sock, ZMQ_DONTWAIT) < 0)
        rc = s_map_errno(errno);
    zmq_msg_close(&frame); //  no-op after a successful send
    if (raw)
        zmq_msg_close(raw);
    return rc;
}

int shoal_wire_send(void *sock, const shoal_wire_peer_t *peer, int type, const void *body,
                    const void *raw, size_t raw_size)
{
    if (!raw)
        return shoal_wire_send_msg(sock, peer, type, body, NULL);
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, raw_size) != 0)
        return SHOAL_ENOMEM;
    if (raw_size)
        memcpy(zmq_msg_data(&m), raw, raw_size);
    return shoal_wire_send_msg(sock, peer, type, body, &m);
}

//  Reads and drops the rest of a multipart message.
static void s_drain(void *sock)
{
    int more = 1;
    size_t len = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        zmq_msg_close(&m);
    }
}

static bool s_more(void *sock)
{
    int more = 0;
    size_t len = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len);
    return more != 0;
}

int shoal_wire_recv(void *sock, bool router, shoal_wire_in_t *in, int flags)
{
    memset(&in->peer, 0, sizeof in->peer);
    memset(&in->msg, 0, sizeof in->msg);
    in->has_raw = false;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (router) {
        if (zmq_msg_recv(&m, sock, flags) < 0) {
            zmq_msg_close(&m);
            return errno == EAGAIN ? SHOAL_EAGAIN : SHOAL_EIO;
        }
        size_t n = zmq_msg_size(&m);
        in->peer.size = (uint8_t)(n > 255 ? 255 : n);
        memcpy(in->peer.id, zmq_msg_data(&m), in->peer.size);
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (!s_more(sock))
            return SHOAL_EPROTO;
        flags = 0; //  the rest of a message is already here
    }
    if (zmq_msg_recv(&m, sock, flags) < 0) {
        zmq_msg_close(&m);
        return errno == EAGAIN ? SHOAL_EAGAIN : SHOAL_EIO;
    }
    int rc = shoal_proto_decode(zmq_msg_data(&m), zmq_msg_size(&m), &in->msg);
    zmq_msg_close(&m);
    if (rc) {
        s_drain(sock);
        return rc;
    }
    if (s_more(sock)) {
        zmq_msg_init(&in->raw);
        if (zmq_msg_recv(&in->raw, sock, 0) < 0) {
            zmq_msg_close(&in->raw);
            shoal_msg_clear(&in->msg);
            return SHOAL_EIO;
        }
        in->has_raw = true;
        if (s_more(sock)) { //  at most one raw frame
            s_drain(sock);
            shoal_wire_in_clear(in);
            return SHOAL_EPROTO;
        }
    }
    return 0;
}

void shoal_wire_in_clear(shoal_wire_in_t *in)
{
    shoal_msg_clear(&in->msg);
    if (in->has_raw) {
        zmq_msg_close(&in->raw);
        in->has_raw = false;
    }
}

void shoal_wire_send_error(void *sock, const shoal_wire_peer_t *peer, int code, const char *fmt,
                           ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    shoal_wire_error_t err = {.code = code, .error = text};
    (void)shoal_wire_send(sock, peer, SHOAL_MSG_error, &err, NULL, 0);
}
