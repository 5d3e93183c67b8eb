/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* One connection on the worker: its life from the TLS handshake to its
 * close, SESSION/RESUMED, and the frames of a joined endpoint (OBJECT,
 * NOTIFY, TAKEN...). Runs on the worker thread only. */

void
tlspyo_relay_peer_free (RelayPeer *peer)
{
  tlspyo_keepalive_stop (&peer->keepalive);
  g_clear_pointer (&peer->held, g_hash_table_unref);
  if (peer->drain_timer != NULL)
    {
      g_source_destroy (peer->drain_timer);
      g_source_unref (peer->drain_timer);
    }
  g_clear_pointer (&peer->session, tlspyo_relay_session_unref);
  if (peer->handshake_timer != NULL)
    {
      g_source_destroy (peer->handshake_timer);
      g_source_unref (peer->handshake_timer);
    }
  if (peer->peek_source != NULL)
    {
      g_source_destroy (peer->peek_source);
      g_source_unref (peer->peek_source);
    }
  g_clear_object (&peer->cancellable);
  g_clear_object (&peer->stream);
  g_clear_pointer (&peer->conn, tlspyo_connection_unref);
  g_clear_pointer (&peer->early, g_ptr_array_unref);
  if (peer->delay_timer != NULL)
    {
      g_source_destroy (peer->delay_timer);
      g_source_unref (peer->delay_timer);
    }
  if (peer->counted)
    {
      tlspyo_relay_core_address (peer->core, peer->address_key)->n_connections--;
      peer->core->n_counted--;
    }
  if (peer->over_limit != NULL)
    peer->core->n_refusing--;
  if (peer->address_key != NULL)
    tlspyo_relay_core_address_forget (peer->core, peer->address_key);
  g_clear_pointer (&peer->user, tlspyo_relay_user_unref);
  g_free (peer->user_name);
  g_free (peer->certificate_user);
  tlspyo_auth_wipe (peer->key, sizeof peer->key);
  g_free (peer->over_limit);
  g_free (peer->address_key);
  g_free (peer->address);
  g_free (peer);
}

gboolean
tlspyo_relay_peer_refuse (RelayPeer   *peer,
                          TlspyoError  code,
                          const char  *reason)
{
  g_autoptr(GError) error = g_error_new_literal (TLSPYO_ERROR, code, reason);

  g_debug ("Refused endpoint %s: %s", peer->address, reason);
  peer->refused = TRUE;
  tlspyo_relay_core_emit (peer->core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL, code, reason);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_REFUSED,
                          g_variant_new ("(us)", (guint32) code, reason), NULL, NULL);
  /* Keep the handshake timer: it bounds how long a peer that does not read
   * its refusal can hold the connection. */
  tlspyo_connection_close_when_flushed (peer->conn, error);
  return FALSE;
}

gboolean
tlspyo_relay_peer_protocol_error (RelayPeer  *peer,
                                  const char *format,
                                  ...)
{
  g_autoptr(GError) error = NULL;
  va_list args;

  va_start (args, format);
  error = g_error_new_valist (TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL, format, args);
  va_end (args);
  tlspyo_relay_peer_close (peer, error);
  return FALSE;
}

/* SESSION, right after WELCOME: the endpoint's session; the number of the
 * first sequenced frame (OBJECT, TAKEN, or NOTIFY of a negative count) it
 * may send; how many produced objects of each group it received over the
 * session; the last broadcast of each group it has. RESUMED answers with
 * the number the next one must have (the following ones are numbered on
 * from it), what this relay accepts, and whether the objects in flight to
 * the session were kept. */
static gboolean
handle_session (RelayPeer         *peer,
                const TlspyoFrame *frame)
{
  g_autoptr(GVariant) id_v = NULL;
  g_autoptr(GVariant) received = NULL;
  g_autoptr(GVariant) seen = NULL;
  RelaySession *session;
  const guint8 *id;
  gsize len;
  guint64 first;
  gboolean kept;

  g_variant_get (frame->meta, "(@ayt@a{st}@a{s(tt)})", &id_v, &first, &received, &seen);
  id = g_variant_get_fixed_array (id_v, &len, 1);
  if (len != TLSPYO_SESSION_ID_SIZE)
    return tlspyo_relay_peer_protocol_error (peer,
                                             "Endpoint %s sent a session id of %" G_GSIZE_FORMAT
                                             " bytes instead of %d", peer->address, len,
                                             TLSPYO_SESSION_ID_SIZE);
  if (peer->session != NULL || peer->handled > 0)
    return tlspyo_relay_peer_protocol_error (peer,
                                             "Endpoint %s sent SESSION %s: it comes once, before any "
                                             "object or notification", peer->address,
                                             peer->session != NULL ? "twice" : "late");
  session = tlspyo_relay_session_ref (tlspyo_relay_core_session (peer->core, id));
  if (session->peer != NULL)
    {
      /* The endpoint has one connection at a time: the one the relay still
       * reads is dead, whatever it says (the endpoint found it so before
       * the relay did). Ended as lost, its objects are parked, for this
       * one to resume; what it still held unread is sent again. */
      g_autoptr(GError) error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                             "Endpoint %s came back on a new connection",
                                             session->peer->address);

      tlspyo_relay_peer_close (session->peer, error);
    }
  g_assert (session->peer == NULL);
  tlspyo_relay_session_stop_timer (session);
  peer->session = session;
  session->peer = peer;
  kept = tlspyo_router_resume (peer->core->router, peer->router_peer, session->routing,
                               received);
  /* Numbers below the record's were handled: the endpoint drops those
   * instead of sending them again. Numbers the endpoint skips (what it
   * discarded when stopped) are never expected again. */
  peer->next_seq = MAX (first, session->next);
  if (session->next != peer->next_seq)
    {
      session->next = peer->next_seq;
      tlspyo_relay_core_session_dirty (session);
    }
  tlspyo_relay_peer_release_early (peer, seen);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_RESUMED,
                          g_variant_new ("(ttb)", peer->next_seq, peer->core->max_object_size,
                                         kept),
                          NULL, NULL);
  return TRUE;
}

/* Numbers the sequenced frame being handled; FALSE when its session's
 * frame of that number was handled already (an endpoint sends again what
 * a lost connection left unacknowledged). Without a session every frame
 * is new. A number past the expected one (frames the relay never saw,
 * discarded by a stopped endpoint) is accepted as is. */
static gboolean
peer_take_seq (RelayPeer *peer)
{
  RelaySession *session = peer->session;
  guint64 seq;

  if (session == NULL)
    return TRUE;
  seq = peer->next_seq++;
  if (seq < session->next)
    {
      peer->core->n_duplicates++;
      return FALSE;
    }
  session->next = seq + 1;
  tlspyo_relay_core_session_dirty (session);
  return TRUE;
}

static gboolean
handle_object (RelayPeer         *peer,
               const TlspyoFrame *frame)
{
  g_autoptr(GVariant) destinations = g_variant_get_child_value (frame->meta, 0);
  GVariantIter iter;
  const char *group;
  gint32 count;
  g_autoptr(GError) error = NULL;

  g_variant_iter_init (&iter, destinations);
  while (g_variant_iter_next (&iter, "{&si}", &group, &count))
    {
      if (!tlspyo_group_name_check (group, &error))
        return tlspyo_relay_peer_protocol_error (peer,
                                                 "Endpoint %s sent an object to an invalid group: %s",
                                                 peer->address, error->message);
      if (count == 0)
        return tlspyo_relay_peer_protocol_error (peer,
                                                 "Endpoint %s sent an object with a count of 0 for group '%s'",
                                                 peer->address, group);
    }
  peer->handled++;
  if (!peer_take_seq (peer))
    return TRUE;  /* sent again after a lost connection: handled already */
  if (!tlspyo_relay_peer_may_route (peer, destinations, frame->body))  /* rights and limits: issue 6 */
    return TRUE;
  tlspyo_router_route (peer->core->router, destinations, frame->body);
  return TRUE;
}

static gboolean
handle_notify (RelayPeer         *peer,
               const TlspyoFrame *frame)
{
  const char *group;
  gint32 count;
  g_autoptr(GError) error = NULL;

  g_variant_get (frame->meta, "(&si)", &group, &count);
  if (!tlspyo_group_name_check (group, &error))
    return tlspyo_relay_peer_protocol_error (peer,
                                             "Endpoint %s sent notify_ready for an invalid group: %s",
                                             peer->address, error->message);
  peer->handled++;
  /* Positive credit is not sequenced: it belongs to the connection, and
   * the endpoint announces what it still has again on the next one. */
  if (count < 0 && !peer_take_seq (peer))
    return TRUE;
  if (!tlspyo_relay_peer_has_right (peer, group, TLSPYO_RIGHTS_CONSUME))  /* issue 6 */
    {
      g_autofree char *reason = g_strdup_printf ("user '%s' may not consume from group '%s'",
                                                 peer->user->name, group);

      tlspyo_relay_peer_deny (peer, TLSPYO_ERROR_PERMISSION_DENIED, group, reason);
      return TRUE;
    }
  tlspyo_router_notify (peer->core->router, peer->router_peer, group, count);
  return TRUE;
}

/* TAKEN: the endpoint's application took that many of the produced
 * objects handed to its session (oldest first); the relay forgets them.
 * Until then they would go back to the queue. Sequenced: a TAKEN lost
 * with a connection is sent again on the next one, and applied once. */
static gboolean
handle_taken (RelayPeer         *peer,
              const TlspyoFrame *frame)
{
  g_autoptr(GVariant) counts = g_variant_get_child_value (frame->meta, 0);
  GVariantIter iter;
  const char *group;
  guint32 count;

  peer->handled++;
  if (!peer_take_seq (peer))
    return TRUE;  /* sent again after a lost connection: applied already */
  g_variant_iter_init (&iter, counts);
  while (g_variant_iter_next (&iter, "{&su}", &group, &count))
    {
      if (!tlspyo_router_taken (peer->core->router, peer->router_peer, group, count))
        return tlspyo_relay_peer_protocol_error (peer,
                                                 "Endpoint %s says it took %u produced objects of "
                                                 "group '%s', more than it was given", peer->address,
                                                 count, group);
    }
  return TRUE;
}

static gboolean
peer_frame_cb (TlspyoConnection  *conn,
               const TlspyoFrame *frame,
               gpointer           user_data)
{
  RelayPeer *peer = user_data;

  switch (frame->type)
    {
    case TLSPYO_FRAME_HELLO:
    case TLSPYO_FRAME_HELLO_USER:
      if (peer->state != PEER_AWAIT_HELLO)
        break;
      if (peer->tls_missing)
        return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_PROTOCOL,
                                         "This relay uses TLS, but the endpoint connected without it: set "
                                         "the endpoint's security to TLS (the default) and give it the "
                                         "relay's certificate.pem");
      return tlspyo_relay_handle_hello (peer, frame);
    case TLSPYO_FRAME_AUTH:
      if (peer->state != PEER_AWAIT_AUTH)
        break;
      return tlspyo_relay_handle_auth (peer, frame);
    case TLSPYO_FRAME_OBJECT:
      if (peer->state != PEER_JOINED)
        break;
      tlspyo_relay_peer_release_early (peer, NULL);  /* no SESSION: it has seen nothing */
      return handle_object (peer, frame);
    case TLSPYO_FRAME_NOTIFY:
      if (peer->state != PEER_JOINED)
        break;
      tlspyo_relay_peer_release_early (peer, NULL);
      return handle_notify (peer, frame);
    case TLSPYO_FRAME_SESSION:
      if (peer->state != PEER_JOINED)
        break;
      return handle_session (peer, frame);
    case TLSPYO_FRAME_TAKEN:
      if (peer->state != PEER_JOINED)
        break;
      tlspyo_relay_peer_release_early (peer, NULL);
      return handle_taken (peer, frame);
    case TLSPYO_FRAME_PING:
      if (peer->state != PEER_JOINED)
        break;
      tlspyo_keepalive_answer (peer->conn, frame);
      return TRUE;
    case TLSPYO_FRAME_PONG:
      if (peer->state != PEER_JOINED)
        break;
      return TRUE;  /* read_done counts it as a sign of life */
    case TLSPYO_FRAME_BYE:
      {
        g_autoptr(GError) bye = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                             "Endpoint %s said goodbye", peer->address);
        peer->said_bye = TRUE;
        tlspyo_relay_peer_close (peer, bye);
        return FALSE;
      }
    default:
      break;
    }

  /* The decoder only lets through the types the current state allows. */
  return tlspyo_relay_peer_protocol_error (peer, "Endpoint %s sent an unexpected %s frame",
                                           peer->address, tlspyo_frame_type_to_string (frame->type));
}

static void
peer_read_done_cb (TlspyoConnection *conn,
                   gpointer          user_data)
{
  RelayPeer *peer = user_data;

  if (peer->state == PEER_JOINED)
    {
      /* Watched from the first read after joining on: before, the
       * handshake timeout bounds the connection. */
      if (peer->keepalive.timer == NULL && peer->core->keepalive_interval > 0)
        tlspyo_keepalive_start (&peer->keepalive, conn, peer->core->keepalive_interval);
      tlspyo_keepalive_alive (&peer->keepalive);
    }

  /* One acknowledgement for everything handled in this read. */
  if (peer->state == PEER_JOINED && peer->handled != peer->acked)
    {
      peer->acked = peer->handled;
      tlspyo_connection_send (conn, TLSPYO_FRAME_ACK, g_variant_new ("(t)", peer->acked),
                              NULL, NULL);
    }
}

static void
peer_closed_cb (TlspyoConnection *conn,
                const GError     *error,
                gpointer          user_data)
{
  RelayPeer *peer = user_data;
  RelayCore *core = peer->core;

  if (peer->held != NULL)
    {
      GHashTableIter iter;
      gpointer key, value;

      g_hash_table_iter_init (&iter, peer->held);
      while (g_hash_table_iter_next (&iter, &key, &value))
        tlspyo_relay_peer_report_coalesced (peer, key, value);
    }
  if (peer->router_peer != NULL)
    {
      RelaySession *session = peer->session;

      /* Lost without a goodbye: its untaken objects wait for the endpoint
       * to come back (issue 5), unless the relay stops or waits for none.
       * After a goodbye, or without a session, they go back at once. */
      if (session != NULL && !peer->said_bye && !core->stopped && core->session_timeout > 0)
        {
          tlspyo_router_park (core->router, peer->router_peer);
          tlspyo_relay_session_start_timer (session);
        }
      else
        tlspyo_router_leave (core->router, peer->router_peer);
      if (session != NULL && session->peer == peer)
        session->peer = NULL;
      peer->router_peer = NULL;
      g_atomic_int_add (&core->n_joined, -1);
      g_debug ("Endpoint %s left: %s", peer->address, error->message);
      /* Dropped for what it sent (malformed frame, object over the limit):
       * say why, as for a connection that had not joined. A plain close, a
       * lost connection (CLOSED) or a dead one (TIMED_OUT, from the
       * keepalive) is not a refusal. */
      if (error->domain != TLSPYO_ERROR ||
          (error->code != TLSPYO_ERROR_CLOSED && error->code != TLSPYO_ERROR_TIMED_OUT))
        tlspyo_relay_core_emit (core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
                                error->domain == TLSPYO_ERROR ? error->code : TLSPYO_ERROR_PROTOCOL,
                                error->message);
      tlspyo_relay_core_emit (core, SIGNAL_ENDPOINT_DISCONNECTED, peer->address, NULL, 0, NULL);
    }
  else if (!peer->refused)
    {
      /* Refusals were announced when they were sent. */
      g_debug ("Connection from %s ended before it joined: %s", peer->address, error->message);
      tlspyo_relay_core_emit (core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
                              error->domain == TLSPYO_ERROR ? error->code : TLSPYO_ERROR_PROTOCOL,
                              error->message);
    }

  g_hash_table_remove (core->peers, peer);
}

static const TlspyoConnectionCallbacks peer_callbacks = {
  peer_frame_cb,
  peer_read_done_cb,
  peer_closed_cb,
};

void
tlspyo_relay_peer_close (RelayPeer    *peer,
                         const GError *error)
{
  if (peer->conn != NULL)
    tlspyo_connection_close (peer->conn, error);  /* frees the peer */
  else
    {
      /* Still in the TLS handshake: its callback will find the peer gone. */
      g_cancellable_cancel (peer->cancellable);
      if (!g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED))
        tlspyo_relay_core_emit (peer->core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
                                error->code, error->message);
      g_hash_table_remove (peer->core->peers, peer);
    }
}

void
tlspyo_relay_peer_start_protocol (RelayPeer *peer,
                                  GIOStream *stream)
{
  peer->state = PEER_AWAIT_HELLO;
  peer->conn = tlspyo_connection_new (stream, peer->address, &peer_callbacks, peer);
  if (peer->core->gate != NULL)
    tlspyo_connection_set_write_gate (peer->conn, peer->core->gate);
  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_HELLO) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_HELLO_USER) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  tlspyo_connection_start (peer->conn);
}

typedef struct {
  RelayCore *core;
  RelayPeer *peer;
} HandshakeData;

static void
server_handshake_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  HandshakeData *hd = user_data;
  RelayCore *core = hd->core;
  RelayPeer *peer = hd->peer;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  ok = g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error);

  /* The peer may have been dropped (stop, timeout) while we waited. */
  if (g_hash_table_contains (core->peers, peer) && peer->stream == G_IO_STREAM (source))
    {
      if (ok)
        {
          if (core->client_certificates != NULL)
            {
              /* Accepted, so it is one of them. */
              GTlsCertificate *shown =
                g_tls_connection_get_peer_certificate (G_TLS_CONNECTION (source));
              gint i = tlspyo_tls_find_certificate (core->client_certificates, shown);

              g_assert (i >= 0);
              peer->certificate_user = g_strdup (g_ptr_array_index (core->client_certificate_users, i));
            }
          tlspyo_relay_peer_start_protocol (peer, peer->stream);
        }
      else if (core->client_certificates != NULL &&
               (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE) ||
                g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_CERTIFICATE_REQUIRED)))
        {
          g_autoptr(GError) refusal =
            g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                         "%s: the endpoint showed no client certificate, or one that is not in "
                         "the relay's client-certificates-dir (%s)", peer->address, error->message);

          tlspyo_relay_core_log_limit (core, "Refused %s", refusal->message);
          tlspyo_relay_peer_close (peer, refusal);
        }
      else
        {
          g_autofree char *msg = tlspyo_tls_describe_error (error, FALSE);
          g_autoptr(GError) tls_error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                                                     "%s: %s", peer->address, msg);
          tlspyo_relay_peer_close (peer, tls_error);
        }
    }

  tlspyo_relay_core_unref (core);
  g_free (hd);
  tlspyo_worker_unhold ();
}

gboolean
tlspyo_relay_handshake_timeout_cb (gpointer user_data)
{
  RelayPeer *peer = user_data;
  g_autoptr(GError) error = NULL;

  g_clear_pointer (&peer->handshake_timer, g_source_unref);
  error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT,
                       "Endpoint %s did not complete the handshake within %u s",
                       peer->address, peer->core->handshake_timeout);
  tlspyo_relay_peer_close (peer, error);
  return G_SOURCE_REMOVE;
}

void
tlspyo_relay_peer_start_tls (RelayPeer *peer)
{
  RelayCore *core = peer->core;
  g_autoptr(GIOStream) base = g_steal_pointer (&peer->stream);
  g_autoptr(GError) error = NULL;
  HandshakeData *hd;

  peer->stream = tlspyo_tls_server_new (base, core->certificate, &error);
  if (peer->stream == NULL)
    {
      g_warning ("Could not set up TLS for %s: %s", peer->address, error->message);
      tlspyo_relay_peer_close (peer, error);
      return;
    }
  if (core->client_certificates != NULL)
    tlspyo_tls_server_require_client (peer->stream, core->client_certificates);
  hd = g_new (HandshakeData, 1);
  hd->core = tlspyo_relay_core_ref (core);
  hd->peer = peer;
  tlspyo_worker_hold ();
  g_tls_connection_handshake_async (G_TLS_CONNECTION (peer->stream), G_PRIORITY_DEFAULT,
                                    peer->cancellable, server_handshake_cb, hd);
}
