/*  chan.c: length-prefixed protocol messages over a stream socket (chan.h). */
#include "chan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*  A receive buffer starts at 64 KiB (a batch of small tasks fits in one read) and one
    grown past 1 MiB by a large message is given back once empty, so an executor that once
    received a 60 MiB batch does not keep 60 MiB for ever. */
#define S_IN_MIN  (64 * 1024)
#define S_IN_KEEP (1024 * 1024)
#define S_HEADER  4

struct shoal_chan {
    int fd;
    bool broken;
    size_t max_msg;
    uint8_t *in; //  [in_start, in_end) received, not yet decoded
    size_t in_start, in_end, in_cap;
    uint8_t *out; //  [out_start, out_end) queued, not yet written
    size_t out_start, out_end, out_cap;
};

int shoal_chan_new(int fd, size_t max_msg, shoal_chan_t **self_p)
{
    *self_p = NULL;
    if (fd < 0)
        return SHOAL_EINVAL;
    shoal_chan_t *self = calloc(1, sizeof *self);
    if (!self) {
        close(fd);
        return SHOAL_ENOMEM;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    self->fd = fd;
    self->max_msg = max_msg;
    *self_p = self;
    return 0;
}

void shoal_chan_destroy(shoal_chan_t **self_p)
{
    shoal_chan_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    close(self->fd);
    free(self->in);
    free(self->out);
    free(self);
    *self_p = NULL;
}

int shoal_chan_fd(const shoal_chan_t *self)
{
    return self->fd;
}

size_t shoal_chan_pending(const shoal_chan_t *self)
{
    return self->out_end - self->out_start;
}

//  Writes what it can of data; returns the bytes written, or -1 when the peer is gone.
static ssize_t s_write(shoal_chan_t *self, const uint8_t *data, size_t size)
{
    size_t done = 0;
    while (done < size) {
        //  MSG_NOSIGNAL: a dead executor must not kill the worker with SIGPIPE.
        ssize_t n = send(self->fd, data + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        self->broken = true;
        return -1;
    }
    return (ssize_t)done;
}

//  Appends to the queue, compacting or growing it. false: out of memory.
static bool s_queue(shoal_chan_t *self, const uint8_t *data, size_t size)
{
    if (self->out_start == self->out_end)
        self->out_start = self->out_end = 0;
    if (self->out_cap - self->out_end < size && self->out_start) {
        memmove(self->out, self->out + self->out_start, self->out_end - self->out_start);
        self->out_end -= self->out_start;
        self->out_start = 0;
    }
    if (self->out_cap - self->out_end < size) {
        size_t cap = self->out_cap ? self->out_cap : S_IN_MIN;
        while (cap - self->out_end < size)
            cap *= 2;
        uint8_t *out = realloc(self->out, cap);
        if (!out)
            return false;
        self->out = out;
        self->out_cap = cap;
    }
    memcpy(self->out + self->out_end, data, size);
    self->out_end += size;
    return true;
}

int shoal_chan_send(shoal_chan_t *self, int type, const void *body)
{
    if (self->broken)
        return SHOAL_EIO;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    static const uint8_t header[S_HEADER] = {0};
    if (msgpack_sbuffer_write(&buf, (const char *)header, S_HEADER) != 0) {
        msgpack_sbuffer_destroy(&buf);
        return SHOAL_ENOMEM;
    }
    int rc = shoal_proto_encode(type, body, &buf);
    if (rc) {
        msgpack_sbuffer_destroy(&buf);
        return rc;
    }
    size_t len = buf.size - S_HEADER;
    uint8_t *p = (uint8_t *)buf.data;
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 24);
    //  Straight from the encoding buffer when nothing waits before it (the usual case).
    ssize_t done = 0;
    if (self->out_start == self->out_end && (done = s_write(self, p, buf.size)) < 0)
        rc = SHOAL_EIO;
    else if ((size_t)done < buf.size && !s_queue(self, p + done, buf.size - (size_t)done)) {
        //  Part of a message is out: the stream cannot be resynchronised.
        self->broken = done > 0;
        rc = SHOAL_ENOMEM;
    }
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

int shoal_chan_flush(shoal_chan_t *self)
{
    if (self->broken)
        return SHOAL_EIO;
    size_t left = self->out_end - self->out_start;
    if (!left)
        return 0;
    ssize_t n = s_write(self, self->out + self->out_start, left);
    if (n < 0)
        return SHOAL_EIO;
    self->out_start += (size_t)n;
    if (self->out_start == self->out_end) {
        self->out_start = self->out_end = 0;
        if (self->out_cap > S_IN_KEEP) {
            free(self->out);
            self->out = NULL;
            self->out_cap = 0;
        }
        return 0;
    }
    return SHOAL_EAGAIN;
}

int shoal_chan_recv(shoal_chan_t *self, shoal_msg_t *msg)
{
    memset(msg, 0, sizeof *msg);
    while (!self->broken) {
        size_t avail = self->in_end - self->in_start, need = S_HEADER;
        if (avail >= S_HEADER) {
            const uint8_t *h = self->in + self->in_start;
            size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
            if (len > self->max_msg) {
                self->broken = true;
                break;
            }
            if (avail >= S_HEADER + len) {
                int rc = shoal_proto_decode(h + S_HEADER, len, msg);
                self->in_start += S_HEADER + len;
                if (self->in_start == self->in_end) {
                    self->in_start = self->in_end = 0;
                    if (self->in_cap > S_IN_KEEP) {
                        free(self->in);
                        self->in = NULL;
                        self->in_cap = 0;
                    }
                }
                return rc;
            }
            need = S_HEADER + len;
        }
        //  Room for the whole message at the front of the buffer.
        if (self->in_start && self->in_cap - self->in_start < need) {
            memmove(self->in, self->in + self->in_start, avail);
            self->in_start = 0;
            self->in_end = avail;
        }
        if (self->in_cap - self->in_start < need || self->in_end == self->in_cap) {
            size_t cap = self->in_cap ? self->in_cap : S_IN_MIN;
            while (cap - self->in_start < need || cap == self->in_end)
                cap *= 2;
            uint8_t *in = realloc(self->in, cap);
            if (!in)
                return SHOAL_ENOMEM;
            self->in = in;
            self->in_cap = cap;
        }
        ssize_t n = read(self->fd, self->in + self->in_end, self->in_cap - self->in_end);
        if (n > 0) {
            self->in_end += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return SHOAL_EAGAIN;
        self->broken = true; //  0: the peer closed
    }
    return SHOAL_EIO;
}
