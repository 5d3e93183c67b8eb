/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-keepalive-private.h"
#include "tlspyo-error.h"

/* Signs of life, any of:
 *
 * - bytes read from the peer, or, where the system tells, bytes from the
 *   peer that reached our socket and wait to be read: a slow reader on
 *   our side (a busy worker thread) must not blame the peer for it;
 *
 * - a large object going out: our PING waits behind the body, so the peer
 *   cannot answer it until the body is out, but the peer taking the body
 *   shows it is there. Two measures of that: our writes completing (the
 *   connection writes at most WRITE_SLICE_MAX at a time, see
 *   tlspyo-connection.c, so a long body completes slice by slice: room the
 *   peer made by reading), and, where the system tells, the bytes the
 *   peer's TCP stack acknowledged, which keep coming after our last write
 *   while the peer drains what the socket buffers still hold.
 *
 * Less than this much output progress does not count: a dead peer's
 * socket buffers swallow a few PINGs without a word (and a frozen
 * process's kernel acknowledges them). Buffers swallow the start of a
 * large body too, so a peer that dies during one is found two intervals
 * after they filled: later than an idle one, never not at all. */
#define KEEPALIVE_MIN_PROGRESS (64 * 1024)

/* Whether @now grew by at least @min since @then; counters that went back
 * (0: unknown, once the socket is gone) are no progress. */
static gboolean
progressed (guint64 now,
            guint64 then,
            guint64 min)
{
  return now > then && now - then >= min;
}

static gboolean
keepalive_tick_cb (gpointer data)
{
  TlspyoKeepalive *ka = data;
  gint64 now = g_get_monotonic_time ();
  guint64 bytes_in = tlspyo_connection_get_bytes_in (ka->conn);
  guint64 bytes_out = tlspyo_connection_get_bytes_out (ka->conn);
  guint64 tcp_acked, tcp_received;
  gint64 late = now - ka->last_tick - ka->period;
  double idle;

  /* A tick far behind its time means this thread did not run (a stopped or
   * starved process, a machine swapping, valgrind): what the peer sent in
   * the meantime, or would have sent had our PING left, waits for us. The
   * silence is ours, not the peer's, so it does not count. */
  ka->last_tick = now;
  if (late > ka->period)
    ka->last_rx = MIN (now, ka->last_rx + late);

  tlspyo_connection_get_tcp_counters (ka->conn, &tcp_acked, &tcp_received);
  if (bytes_in != ka->bytes_in ||
      progressed (tcp_received, ka->tcp_received, 1) ||
      progressed (bytes_out, ka->bytes_out, KEEPALIVE_MIN_PROGRESS) ||
      progressed (tcp_acked, ka->tcp_acked, KEEPALIVE_MIN_PROGRESS))
    tlspyo_keepalive_alive (ka);
  idle = (now - ka->last_rx) / (double) G_USEC_PER_SEC;

  if (idle >= 2 * ka->interval)
    {
      g_autoptr(GError) error =
        g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT,
                     "%s sent nothing for %.3g s (keepalive-interval %.3g s): "
                     "the connection is dead",
                     tlspyo_connection_get_peer (ka->conn), idle, ka->interval);
      TlspyoConnection *conn = ka->conn;

      g_clear_pointer (&ka->timer, g_source_unref);
      tlspyo_connection_close (conn, error);  /* may free @ka */
      return G_SOURCE_REMOVE;
    }
  if (idle >= ka->interval && !ka->ping_sent)
    {
      ka->ping_sent = TRUE;
      tlspyo_connection_send (ka->conn, TLSPYO_FRAME_PING,
                              g_variant_new ("(t)", ++ka->n_pings), NULL, NULL);
    }
  return G_SOURCE_CONTINUE;
}

void
tlspyo_keepalive_start (TlspyoKeepalive  *ka,
                        TlspyoConnection *conn,
                        double            interval)
{
  guint period_ms;

  tlspyo_keepalive_stop (ka);
  if (interval <= 0)
    return;

  ka->conn = conn;
  ka->interval = interval;
  ka->ping_sent = FALSE;
  ka->bytes_in = tlspyo_connection_get_bytes_in (conn);
  ka->bytes_out = tlspyo_connection_get_bytes_out (conn);
  tlspyo_connection_get_tcp_counters (conn, &ka->tcp_acked, &ka->tcp_received);
  ka->last_rx = g_get_monotonic_time ();
  ka->last_tick = ka->last_rx;
  /* Checked four times per interval: a dead peer is found at most a
   * quarter interval after the two intervals of silence. */
  period_ms = (guint) CLAMP (interval * 1000 / 4, 1, G_MAXUINT / 2);
  ka->period = (gint64) period_ms * 1000;
  ka->timer = g_timeout_source_new (period_ms);
  g_source_set_callback (ka->timer, keepalive_tick_cb, ka, NULL);
  g_source_set_static_name (ka->timer, "[tlspyo] keepalive");
  g_source_attach (ka->timer, g_main_context_get_thread_default ());
}

void
tlspyo_keepalive_stop (TlspyoKeepalive *ka)
{
  if (ka->timer != NULL)
    {
      g_source_destroy (ka->timer);
      g_clear_pointer (&ka->timer, g_source_unref);
    }
  ka->conn = NULL;
}

void
tlspyo_keepalive_alive (TlspyoKeepalive *ka)
{
  if (ka->conn == NULL)
    return;
  ka->last_rx = g_get_monotonic_time ();
  ka->ping_sent = FALSE;
  ka->bytes_in = tlspyo_connection_get_bytes_in (ka->conn);
  ka->bytes_out = tlspyo_connection_get_bytes_out (ka->conn);
  tlspyo_connection_get_tcp_counters (ka->conn, &ka->tcp_acked, &ka->tcp_received);
}

void
tlspyo_keepalive_answer (TlspyoConnection  *conn,
                         const TlspyoFrame *ping)
{
  guint64 token;

  g_variant_get (ping->meta, "(t)", &token);
  tlspyo_connection_send (conn, TLSPYO_FRAME_PONG, g_variant_new ("(t)", token), NULL, NULL);
}
