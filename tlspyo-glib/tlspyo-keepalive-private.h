/* SPDX-License-Identifier: MIT */
#pragma once

/* Liveness of one joined connection, the same on both sides: when nothing
 * came from the peer for one interval we send PING, which the peer answers
 * at once with PONG; when nothing came for two intervals the peer is dead
 * (half-open TCP, a frozen process, an unplugged cable) and the connection
 * is closed with TLSPYO_ERROR_TIMED_OUT. What we send counts as a sign of
 * life too once the peer takes enough of it (a long body going out: our
 * PING waits behind it, so the peer cannot answer before it is out). Each
 * side uses its own interval: a PING is answered whatever the answerer's
 * interval is. Used from the worker thread only. */

#include "tlspyo-connection-private.h"

G_BEGIN_DECLS

typedef struct {
  TlspyoConnection *conn;      /* borrowed */
  GSource          *timer;
  double            interval;  /* seconds */
  gint64            last_rx;   /* monotonic µs of the last sign of life */
  gint64            last_tick; /* monotonic µs of the last check */
  gint64            period;    /* µs between checks */
  guint64           bytes_in;
  guint64           bytes_out;
  guint64           tcp_acked;     /* see tlspyo_connection_get_tcp_counters() */
  guint64           tcp_received;
  gboolean          ping_sent;
  guint64           n_pings;
} TlspyoKeepalive;

/* Starts watching @conn; an @interval of 0 (or less) does nothing. */
void tlspyo_keepalive_start (TlspyoKeepalive  *ka,
                             TlspyoConnection *conn,
                             double            interval);
/* Stops the timer; safe to call on one never started, and twice. */
void tlspyo_keepalive_stop  (TlspyoKeepalive  *ka);
/* The peer sent something: call after every read. */
void tlspyo_keepalive_alive (TlspyoKeepalive  *ka);
/* Answers a PING frame with its PONG. */
void tlspyo_keepalive_answer (TlspyoConnection  *conn,
                              const TlspyoFrame *ping);

G_END_DECLS
