/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-keepalive-private.h"
#include "tlspyo-error.h"

/* A large object going out counts as a sign of life too: while the peer
 * reads a long body it cannot answer a PING queued behind it, but the bytes
 * it takes out of the socket show it is there. Small writes do not count:
 * a dead peer's socket buffer swallows a few PINGs without a word. */
#define KEEPALIVE_MIN_PROGRESS (64 * 1024)

static gboolean
keepalive_tick_cb (gpointer data)
{
  TlspyoKeepalive *ka = data;
  gint64 now = g_get_monotonic_time ();
  guint64 bytes_in = tlspyo_connection_get_bytes_in (ka->conn);
  guint64 bytes_out = tlspyo_connection_get_bytes_out (ka->conn);
  double idle;

  if (bytes_in != ka->bytes_in || bytes_out - ka->bytes_out >= KEEPALIVE_MIN_PROGRESS)
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
  ka->last_rx = g_get_monotonic_time ();
  /* Checked four times per interval: a dead peer is found at most a
   * quarter interval after the two intervals of silence. */
  period_ms = (guint) CLAMP (interval * 1000 / 4, 1, G_MAXUINT / 2);
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
}

void
tlspyo_keepalive_answer (TlspyoConnection  *conn,
                         const TlspyoFrame *ping)
{
  guint64 token;

  g_variant_get (ping->meta, "(t)", &token);
  tlspyo_connection_send (conn, TLSPYO_FRAME_PONG, g_variant_new ("(t)", token), NULL, NULL);
}
