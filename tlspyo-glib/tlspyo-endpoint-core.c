/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <math.h>
#include <string.h>

#include "tlspyo-endpoint-private.h"
#include "tlspyo-connection-private.h"
#include "tlspyo-keepalive-private.h"
#include "tlspyo-tls-private.h"

/* The worker side of an endpoint: one connection at a time, and the
 * reconnection loop. Runs on the worker thread only. */

typedef enum {
  CORE_IDLE,
  CORE_CONNECTING,
  CORE_AWAIT_CHALLENGE,
  CORE_AWAIT_WELCOME,
  CORE_AWAIT_RESUMED,  /* joined; sends once the relay said where to resume */
  CORE_READY,
} CoreState;

struct _EndpointCore {
  gatomicrefcount   ref_count;
  TlspyoEndpoint   *endpoint;  /* cleared by shutdown, which the endpoint waits for */
  CoreState         state;
  gboolean          stopped;
  gint              kick_pending;

  char             *host;
  guint16           port;
  char            **groups;
  TlspyoAuthSecret *secret;
  GTlsCertificate  *pinned;
  char             *server_identity;
  char             *user;  /* issue 6: NULL for the shared password */
  GTlsCertificate  *client_certificate;  /* issue 6: mutual TLS, or NULL */
  double            initial_delay;
  double            max_delay;
  double            factor;
  double            jitter;
  guint64           max_object_size;
  double            keepalive_interval;

  GSocketClient    *client;
  GSocket          *socket;  /* of the current attempt, for its I/O timeout */
  GCancellable     *cancellable;
  TlspyoConnection *conn;
  GSource          *retry_timer;
  guint             attempt;
  guint8            nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8            relay_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8            key[TLSPYO_AUTH_KEY_SIZE];
  char             *peer;
  guint64           n_sent;   /* frames that need an ACK, on this connection */
  guint64           n_acked;
  TlspyoKeepalive   keepalive;
  guint64           relay_max_object_size;  /* from RESUMED */
  GArray           *received;  /* TlspyoReceived of the current read */
};

static void core_refuse_too_large (EndpointCore *core, OutItem *item);

static void core_connect (EndpointCore *core);

static EndpointCore *
core_ref (EndpointCore *core)
{
  g_atomic_ref_count_inc (&core->ref_count);
  return core;
}

static void
core_unref (EndpointCore *core)
{
  if (!g_atomic_ref_count_dec (&core->ref_count))
    return;
  g_assert (core->conn == NULL && core->retry_timer == NULL);
  g_free (core->host);
  g_strfreev (core->groups);
  tlspyo_auth_secret_free (core->secret);
  g_clear_object (&core->pinned);
  g_free (core->server_identity);
  g_free (core->user);
  g_clear_object (&core->client_certificate);
  g_clear_object (&core->client);
  g_clear_object (&core->socket);
  g_clear_object (&core->cancellable);
  g_free (core->peer);
  g_array_unref (core->received);
  memset (core->key, 0, sizeof core->key);
  g_free (core);
}

static gboolean
is_refusal (const GError *error)
{
  return error->domain == TLSPYO_ERROR &&
         (error->code == TLSPYO_ERROR_AUTHENTICATION ||
          error->code == TLSPYO_ERROR_GROUP_REFUSED ||
          error->code == TLSPYO_ERROR_CREDENTIALS ||
          error->code == TLSPYO_ERROR_PROTOCOL ||
          error->code == TLSPYO_ERROR_INVALID_ARGUMENT ||
          error->code == TLSPYO_ERROR_LIMIT ||
          error->code == TLSPYO_ERROR_PERMISSION_DENIED);
}

static gboolean
retry_cb (gpointer data)
{
  EndpointCore *core = data;

  g_clear_pointer (&core->retry_timer, g_source_unref);
  core_connect (core);
  return G_SOURCE_REMOVE;
}

static void
core_schedule_retry (EndpointCore *core)
{
  double delay;

  if (core->stopped || core->retry_timer != NULL)
    return;

  delay = core->initial_delay * pow (core->factor, MIN (core->attempt, 200));
  delay = MIN (delay, core->max_delay);
  delay *= 1.0 + core->jitter * g_random_double_range (-1.0, 1.0);
  delay = MAX (delay, 0.0);
  core->attempt++;
  core->state = CORE_IDLE;

  core->retry_timer = g_timeout_source_new ((guint) (delay * 1000));
  g_source_set_callback (core->retry_timer, retry_cb, core, NULL);
  g_source_set_static_name (core->retry_timer, "[tlspyo] reconnect");
  g_source_attach (core->retry_timer, g_main_context_get_thread_default ());
}

/* An attempt failed before a connection was set up (connect, TLS). */
static void
core_attempt_failed (EndpointCore *core,
                     const GError *error)
{
  TlspyoEndpoint *self = core->endpoint;

  g_debug ("Connection to %s failed: %s", core->peer, error->message);
  g_clear_object (&core->socket);
  g_mutex_lock (&self->mutex);
  g_free (self->last_failure);
  self->last_failure = g_strdup (error->message);
  if (is_refusal (error))
    {
      g_clear_error (&self->refusal);
      self->refusal = g_error_copy (error);
      wake_locked (self);
    }
  g_mutex_unlock (&self->mutex);
  core_schedule_retry (core);
}

static OutItem *
credit_item_new (const char *group,
                 gint32      count)
{
  OutItem *item = g_new0 (OutItem, 1);

  item->type = TLSPYO_FRAME_NOTIFY;
  item->meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_NOTIFY,
                                            g_variant_new ("(si)", group, count));
  item->credit_group = g_strdup (group);
  item->size = out_item_size (item);
  return item;
}

/* A new connection starts with no credit at the relay: what this endpoint
 * has notified and not yet received (self->credit) is announced again, first,
 * in place of the positive NOTIFYs still waiting to go, which it includes. */
static void
core_restore_credit (EndpointCore *core)
{
  TlspyoEndpoint *self = core->endpoint;
  GHashTableIter iter;
  gpointer key, value;
  GList *l, *next;

  g_mutex_lock (&self->mutex);
  for (l = self->outgoing.head; l != NULL; l = next)
    {
      OutItem *item = l->data;

      next = l->next;
      if (item->credit_group != NULL)
        {
          out_item_drop_locked (self, item);
          g_queue_delete_link (&self->outgoing, l);
        }
    }
  g_hash_table_iter_init (&iter, self->credit);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      gint64 credit = *(gint64 *) value;

      while (credit > 0)
        {
          gint32 n = (gint32) MIN (credit, G_MAXINT32);
          OutItem *item = credit_item_new (key, n);

          self->buffered_bytes += item->size;
          g_queue_push_head (&self->outgoing, item);
          credit -= n;
        }
    }
  g_mutex_unlock (&self->mutex);
}

/* One TAKEN for everything the application took since the last one. */
static void
core_send_taken_locked (EndpointCore *core)
{
  TlspyoEndpoint *self = core->endpoint;
  GVariantBuilder builder;
  GHashTableIter iter;
  gpointer key, value;
  OutItem *item;

  if (core->state != CORE_READY || g_hash_table_size (self->taken) == 0)
    return;
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{su}"));
  g_hash_table_iter_init (&iter, self->taken);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_variant_builder_add (&builder, "{su}", key, (guint32) GPOINTER_TO_UINT (value));
  g_hash_table_remove_all (self->taken);

  /* Sequenced like OBJECT: a TAKEN lost with a connection is sent again on
   * the next one (the relay keeps the objects for the session meanwhile),
   * and the relay applies it once. stop() waits for its acknowledgement. */
  item = g_new0 (OutItem, 1);
  item->type = TLSPYO_FRAME_TAKEN;
  item->meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_TAKEN,
                                            g_variant_new ("(a{su})", &builder));
  item->size = out_item_size (item);
  item->sequenced = TRUE;
  item->has_seq = TRUE;
  item->seq = self->next_seq++;
  self->buffered_bytes += item->size;
  tlspyo_connection_send_serialized (core->conn, item->type, item->meta, NULL, NULL);
  g_queue_push_tail (&self->inflight, item);
  core->n_sent++;
}

static void
core_send_pending (EndpointCore *core)
{
  TlspyoEndpoint *self = core->endpoint;
  OutItem *item;

  if (core->state != CORE_READY)
    return;

  g_mutex_lock (&self->mutex);
  core_send_taken_locked (core);
  while ((item = g_queue_pop_head (&self->outgoing)) != NULL)
    {
      /* The relay would drop the connection on it, and again after each
       * reconnection: refused here, and announced. */
      if (item->data != NULL && core->relay_max_object_size > 0 &&
          g_bytes_get_size (item->data) + g_bytes_get_size (item->trailer) >
            core->relay_max_object_size)
        {
          core_refuse_too_large (core, item);
          out_item_drop_locked (self, item);
          continue;
        }
      /* Numbered once: resent after a reconnection, it keeps its number,
       * by which the relay recognizes what it already handled. */
      if (item->sequenced && !item->has_seq)
        {
          item->seq = self->next_seq++;
          item->has_seq = TRUE;
        }
      tlspyo_connection_send_serialized (core->conn, item->type, item->meta,
                                         item->data, item->trailer);
      g_queue_push_tail (&self->inflight, item);
      core->n_sent++;
    }
  g_mutex_unlock (&self->mutex);
}

/* Right after WELCOME: which session the frames that follow belong to, and
 * the number of the first sequenced one, the oldest not acknowledged (sent
 * again first) or else the next new one. The relay numbers the sequenced
 * frames that follow from it, and skips those it already handled. */
static void
core_send_session (EndpointCore *core)
{
  TlspyoEndpoint *self = core->endpoint;
  GVariantBuilder received, seen;
  GHashTableIter iter;
  gpointer key, value;
  guint64 first;
  GList *l;

  g_mutex_lock (&self->mutex);
  first = self->next_seq;
  /* Numbered items, put back by a lost connection, come first. */
  for (l = self->outgoing.head; l != NULL; l = l->next)
    {
      OutItem *item = l->data;

      if (item->has_seq)
        {
          first = item->seq;
          break;
        }
    }
  g_variant_builder_init (&received, G_VARIANT_TYPE ("a{st}"));
  g_hash_table_iter_init (&iter, self->received_counts);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_variant_builder_add (&received, "{st}", key, *(guint64 *) value);
  g_variant_builder_init (&seen, G_VARIANT_TYPE ("a{s(tt)}"));
  g_hash_table_iter_init (&iter, self->seen);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      SeenBroadcast *b = value;

      g_variant_builder_add (&seen, "{s(tt)}", key, b->instance, b->seq);
    }
  tlspyo_connection_send (core->conn, TLSPYO_FRAME_SESSION,
                          g_variant_new ("(@ayta{st}a{s(tt)})",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                    self->session_id,
                                                                    sizeof self->session_id, 1),
                                         first, &received, &seen),
                          NULL, NULL);
  g_mutex_unlock (&self->mutex);
}

static gboolean
kick_cb (gpointer data)
{
  EndpointCore *core = data;

  g_atomic_int_set (&core->kick_pending, 0);
  if (!core->stopped)
    core_send_pending (core);
  return G_SOURCE_REMOVE;
}

/* Has the worker send what waits, once for all the calls made meanwhile. */
void
tlspyo_endpoint_kick_locked (TlspyoEndpoint *self)
{
  EndpointCore *core = self->core;

  if (core != NULL && g_atomic_int_compare_and_exchange (&core->kick_pending, 0, 1))
    tlspyo_worker_invoke (self->worker, kick_cb, core_ref (core), (GDestroyNotify) core_unref);
}

static gboolean
notify_connected_cb (gpointer data)
{
  Dispatch *d = data;
  g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);

  if (self != NULL)
    tlspyo_endpoint_notify_connected (self);
  return G_SOURCE_REMOVE;
}

static gboolean
core_fail (EndpointCore *core,
           TlspyoError   code,
           const char   *format,
           ...) G_GNUC_PRINTF (3, 4);

static gboolean
core_fail (EndpointCore *core,
           TlspyoError   code,
           const char   *format,
           ...)
{
  g_autoptr(GError) error = NULL;
  va_list args;

  va_start (args, format);
  error = g_error_new_valist (TLSPYO_ERROR, code, format, args);
  va_end (args);
  tlspyo_connection_close (core->conn, error);
  return FALSE;
}

static gboolean
handle_challenge (EndpointCore      *core,
                  const TlspyoFrame *frame)
{
  g_autoptr(GVariant) nonce_v = NULL;
  g_autoptr(GVariant) salt_v = NULL;
  g_autoptr(GError) error = NULL;
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *nonce, *salt;
  gsize nonce_len, salt_len;
  guint32 iterations;

  g_variant_get (frame->meta, "(@ay@ayu)", &nonce_v, &salt_v, &iterations);
  nonce = g_variant_get_fixed_array (nonce_v, &nonce_len, 1);
  salt = g_variant_get_fixed_array (salt_v, &salt_len, 1);
  if (nonce_len != TLSPYO_AUTH_NONCE_SIZE || salt_len == 0 || salt_len > TLSPYO_AUTH_SALT_SIZE)
    return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent a malformed challenge",
                      core->peer);
  if (iterations < TLSPYO_AUTH_MIN_ITERATIONS || iterations > TLSPYO_AUTH_MAX_ITERATIONS)
    return core_fail (core, TLSPYO_ERROR_PROTOCOL,
                      "The relay at %s asks for %u key derivation rounds, outside the "
                      "accepted %u to %u: it may be an impostor trying to guess the password",
                      core->peer, iterations, TLSPYO_AUTH_MIN_ITERATIONS,
                      TLSPYO_AUTH_MAX_ITERATIONS);
  if (!tlspyo_auth_secret_get_key (core->secret, salt, salt_len, iterations, core->key, &error))
    return core_fail (core, TLSPYO_ERROR_FAILED, "%s", error->message);

  memcpy (core->relay_nonce, nonce, nonce_len);
  tlspyo_auth_proof (core->key, TLSPYO_AUTH_ROLE_ENDPOINT, core->nonce, core->relay_nonce, proof);
  tlspyo_connection_set_limits (core->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_WELCOME) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_REFUSED) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  tlspyo_connection_send (core->conn, TLSPYO_FRAME_AUTH,
                          g_variant_new ("(@ay^as)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                                    sizeof proof, 1),
                                         core->groups),
                          NULL, NULL);
  core->state = CORE_AWAIT_WELCOME;
  return TRUE;
}

static gboolean
handle_welcome (EndpointCore      *core,
                const TlspyoFrame *frame)
{
  TlspyoEndpoint *self = core->endpoint;
  g_autoptr(GVariant) proof_v = g_variant_get_child_value (frame->meta, 0);
  guint8 expected[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *proof;
  gsize len;

  proof = g_variant_get_fixed_array (proof_v, &len, 1);
  tlspyo_auth_proof (core->key, TLSPYO_AUTH_ROLE_RELAY, core->nonce, core->relay_nonce, expected);
  if (len != sizeof expected || !tlspyo_auth_equal (proof, expected, sizeof expected))
    return core_fail (core, TLSPYO_ERROR_AUTHENTICATION,
                      "The relay at %s could not prove it knows the password: it is not "
                      "your relay, or its password differs", core->peer);

  core->state = CORE_AWAIT_RESUMED;
  core->attempt = 0;
  /* The I/O timeout bounded connecting, TLS and authentication. From now on
   * the connection may stay silent as long as nobody sends anything: a
   * timeout would drop and rejoin idle endpoints, and with them what they
   * had in flight. */
  if (core->socket != NULL)
    g_socket_set_timeout (core->socket, 0);
  tlspyo_connection_set_limits (core->conn, TLSPYO_FRAME_MAX_META, core->max_object_size,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_DELIVER) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PRODUCED) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_ACK) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PING) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PONG) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_DENIED) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_RESUMED) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  /* Instead of the I/O timeout: silence is fine, a dead relay is not. */
  tlspyo_keepalive_start (&core->keepalive, core->conn, core->keepalive_interval);

  g_mutex_lock (&self->mutex);
  self->connected = TRUE;
  g_clear_error (&self->refusal);
  g_clear_pointer (&self->last_failure, g_free);
  wake_locked (self);
  g_mutex_unlock (&self->mutex);

  {
    Dispatch *d = g_new0 (Dispatch, 1);
    g_weak_ref_init (&d->endpoint, self);
    tlspyo_endpoint_post_to_owner (self->owner_context, notify_connected_cb, d);
  }
  g_debug ("Connected to %s", core->peer);
  core_send_session (core);
  return TRUE;
}

/* The answer to SESSION: the number the relay expects next. What is
 * numbered below was handled (its acknowledgement was lost with the
 * previous connection): dropped, not sent again. Then whether the relay
 * kept the produced objects of the lost connections for this endpoint:
 * if so, the suspended ones are the application's again, and the TAKEN
 * frames not acknowledged are sent again; if not (it gave them to the
 * queue, or restarted), they are forgotten, with those TAKEN frames. Then
 * everything waiting goes, credit first. */
static gboolean
handle_resumed (EndpointCore      *core,
                const TlspyoFrame *frame)
{
  TlspyoEndpoint *self = core->endpoint;
  g_autoptr(GPtrArray) completed = g_ptr_array_new ();
  guint64 next, relay_max;
  gboolean kept;
  OutItem *item;
  GList *l, *link_next;

  if (core->state != CORE_AWAIT_RESUMED)
    return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent an unexpected RESUMED",
                      core->peer);
  g_variant_get (frame->meta, "(ttb)", &next, &relay_max, &kept);
  core->relay_max_object_size = relay_max;

  g_mutex_lock (&self->mutex);
  while ((item = g_queue_peek_head (&self->outgoing)) != NULL &&
         item->has_seq && item->seq < next)
    out_item_drop_locked (self, g_queue_pop_head (&self->outgoing));
  if (kept)
    tlspyo_endpoint_resume_suspended_locked (self, completed);
  else
    {
      tlspyo_endpoint_forget_produced_locked (self);
      for (l = self->outgoing.head; l != NULL; l = link_next)
        {
          link_next = l->next;
          item = l->data;
          if (item->type == TLSPYO_FRAME_TAKEN)
            {
              out_item_drop_locked (self, item);
              g_queue_delete_link (&self->outgoing, l);
            }
        }
    }
  /* Numbered on from the relay's number, without gaps (the relay counts
   * the sequenced frames, it does not read numbers): the same numbers as
   * before, unless TAKEN frames were dropped. */
  self->next_seq = next;
  for (l = self->outgoing.head; l != NULL; l = l->next)
    {
      item = l->data;
      if (!item->has_seq)
        break;
      item->seq = self->next_seq++;
    }
  wake_locked (self);
  g_mutex_unlock (&self->mutex);
  tlspyo_endpoint_complete_pop_requests (completed);

  core->state = CORE_READY;
  core_restore_credit (core);
  core_send_pending (core);
  return TRUE;
}

static gboolean
handle_ack (EndpointCore      *core,
            const TlspyoFrame *frame)
{
  TlspyoEndpoint *self = core->endpoint;
  guint64 acked;

  g_variant_get (frame->meta, "(t)", &acked);
  if (acked < core->n_acked || acked > core->n_sent)
    return core_fail (core, TLSPYO_ERROR_PROTOCOL,
                      "The relay at %s acknowledged %" G_GUINT64_FORMAT " frames, but %"
                      G_GUINT64_FORMAT " were sent", core->peer, acked, core->n_sent);

  /* The relay counts what it handled on this connection; inflight holds, in
   * order, what was sent and not acknowledged yet. */
  g_mutex_lock (&self->mutex);
  for (guint64 i = core->n_acked; i < acked; i++)
    out_item_drop_locked (self, g_queue_pop_head (&self->inflight));
  wake_locked (self);
  g_mutex_unlock (&self->mutex);
  core->n_acked = acked;
  return TRUE;
}

/* Issue 6: the relay did not carry out an action (a right the endpoint's
 * user lacks, a limit): the object or notify_ready went nowhere. Logged,
 * and announced on the owner's context. The connection goes on. */
typedef struct {
  GWeakRef     endpoint;
  char        *group;
  TlspyoError  code;
  char        *reason;
} Denial;

static void
denial_free (gpointer data)
{
  Denial *d = data;

  g_weak_ref_clear (&d->endpoint);
  g_free (d->group);
  g_free (d->reason);
  g_free (d);
}

static gboolean
action_refused_cb (gpointer data)
{
  Denial *d = data;
  g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);

  if (self != NULL)
    tlspyo_endpoint_emit_action_refused (self, d->group, d->code, d->reason);
  return G_SOURCE_REMOVE;
}

static gboolean
handle_denied (EndpointCore      *core,
               const TlspyoFrame *frame)
{
  TlspyoEndpoint *self = core->endpoint;
  Denial *d = g_new0 (Denial, 1);
  GSource *source;
  guint32 code;

  g_variant_get (frame->meta, "(uss)", &code, &d->group, &d->reason);
  d->code = code == TLSPYO_ERROR_LIMIT ? TLSPYO_ERROR_LIMIT : TLSPYO_ERROR_PERMISSION_DENIED;
  g_weak_ref_init (&d->endpoint, self);
  g_warning ("The relay at %s refused an action of this endpoint in group '%s': %s",
             core->peer, d->group, d->reason);

  source = g_idle_source_new ();
  g_source_set_callback (source, action_refused_cb, d, denial_free);
  g_source_set_static_name (source, "[tlspyo] endpoint action refused");
  g_source_attach (source, self->owner_context);
  g_source_unref (source);
  return TRUE;
}

/* Issue 5: an object larger than the relay's max-object-size, which the
 * relay would answer by dropping the connection, after each reconnection
 * again. It goes nowhere, loudly: a warning and action-refused, as for
 * an object the relay refused. Called with the endpoint's mutex held. */
static void
core_refuse_too_large (EndpointCore *core,
                       OutItem      *item)
{
  TlspyoEndpoint *self = core->endpoint;
  g_autoptr(GVariant) meta = NULL;
  g_autoptr(GVariant) destinations = NULL;
  Denial *d = g_new0 (Denial, 1);
  GVariantIter iter;
  const char *group;
  gint32 count;
  GSource *source;

  meta = g_variant_ref_sink (g_variant_new_from_bytes (tlspyo_frame_meta_type (item->type),
                                                       item->meta, TRUE));
  destinations = g_variant_get_child_value (meta, 0);
  g_variant_iter_init (&iter, destinations);
  d->group = g_variant_iter_next (&iter, "{&si}", &group, &count) ? g_strdup (group)
                                                                  : g_strdup ("");
  d->code = TLSPYO_ERROR_LIMIT;
  d->reason = g_strdup_printf ("the object is %" G_GSIZE_FORMAT " bytes serialized, more than "
                               "the relay's max-object-size (%" G_GUINT64_FORMAT "): it was not "
                               "sent; raise max-object-size on the relay, or send smaller objects",
                               g_bytes_get_size (item->data) + g_bytes_get_size (item->trailer),
                               core->relay_max_object_size);
  g_weak_ref_init (&d->endpoint, self);
  g_warning ("An object for group '%s' was not sent to the relay at %s: %s",
             d->group, core->peer, d->reason);

  source = g_idle_source_new ();
  g_source_set_callback (source, action_refused_cb, d, denial_free);
  g_source_set_static_name (source, "[tlspyo] endpoint action refused");
  g_source_attach (source, self->owner_context);
  g_source_unref (source);
}

static void
received_clear (gpointer data)
{
  TlspyoReceived *r = data;

  g_clear_pointer (&r->object, g_variant_unref);
  g_clear_pointer (&r->meta, g_variant_unref);
}

static void
core_flush_received (EndpointCore *core)
{
  tlspyo_endpoint_receive_batch (core->endpoint, core->received);
}

static gboolean
core_frame_cb (TlspyoConnection  *conn,
               const TlspyoFrame *frame,
               gpointer           user_data)
{
  EndpointCore *core = user_data;

  /* Objects are queued at the end of the read (core_read_done_cb), in one
   * go; what came before any other frame is queued before it is handled. */
  if (frame->type != TLSPYO_FRAME_DELIVER && frame->type != TLSPYO_FRAME_PRODUCED)
    core_flush_received (core);

  switch (frame->type)
    {
    case TLSPYO_FRAME_CHALLENGE:
      return handle_challenge (core, frame);
    case TLSPYO_FRAME_WELCOME:
      return handle_welcome (core, frame);
    case TLSPYO_FRAME_REFUSED:
      {
        guint32 code;
        const char *reason;

        g_variant_get (frame->meta, "(u&s)", &code, &reason);
        if (code != TLSPYO_ERROR_AUTHENTICATION && code != TLSPYO_ERROR_GROUP_REFUSED &&
            code != TLSPYO_ERROR_INVALID_ARGUMENT && code != TLSPYO_ERROR_LIMIT &&
            code != TLSPYO_ERROR_PERMISSION_DENIED)
          code = TLSPYO_ERROR_PROTOCOL;
        return core_fail (core, code, "The relay refused this endpoint: %s", reason);
      }
    case TLSPYO_FRAME_DELIVER:
      {
        TlspyoReceived r = { 0, };
        g_autoptr(GError) error = NULL;

        r.object = tlspyo_object_from_body (frame->body, &error);
        if (r.object == NULL)
          return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent a bad object: %s",
                            core->peer, error->message);
        r.meta = g_variant_ref (frame->meta);
        g_variant_get (frame->meta, "(&stt)", &r.group, &r.instance, &r.seq);
        g_array_append_val (core->received, r);
        return TRUE;
      }
    case TLSPYO_FRAME_PRODUCED:
      {
        TlspyoReceived r = { 0, };
        g_autoptr(GError) error = NULL;

        r.object = tlspyo_object_from_body (frame->body, &error);
        if (r.object == NULL)
          return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent a bad object: %s",
                            core->peer, error->message);
        r.meta = g_variant_ref (frame->meta);
        r.produced = TRUE;
        g_variant_get (frame->meta, "(&sb)", &r.group, &r.used_credit);
        g_array_append_val (core->received, r);
        return TRUE;
      }
    case TLSPYO_FRAME_ACK:
      return handle_ack (core, frame);
    case TLSPYO_FRAME_RESUMED:
      return handle_resumed (core, frame);
    case TLSPYO_FRAME_DENIED:
      return handle_denied (core, frame);  /* issue 6 */
    case TLSPYO_FRAME_PING:
      tlspyo_keepalive_answer (conn, frame);
      return TRUE;
    case TLSPYO_FRAME_PONG:
      return TRUE;  /* core_read_done_cb counts it as a sign of life */
    case TLSPYO_FRAME_BYE:
      {
        const char *reason;

        g_variant_get (frame->meta, "(&s)", &reason);
        return core_fail (core, TLSPYO_ERROR_CLOSED, "The relay at %s closed the connection: %s",
                          core->peer, reason);
      }
    default:
      return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent an unexpected %s frame",
                        core->peer, tlspyo_frame_type_to_string (frame->type));
    }
}

/* What the relay did not acknowledge goes back to the head of outgoing, in
 * order, to be sent again on the next connection under the same numbers.
 * Positive NOTIFYs are not: the credit they carried is announced again as
 * a whole (core_restore_credit()). Returns how many were put back. */
static guint
requeue_inflight_locked (TlspyoEndpoint *self)
{
  OutItem *item;
  guint n = 0;

  while ((item = g_queue_pop_tail (&self->inflight)) != NULL)
    {
      if (item->sequenced)
        {
          g_queue_push_head (&self->outgoing, item);
          n++;
        }
      else
        out_item_drop_locked (self, item);
    }
  return n;
}

static void
core_closed_cb (TlspyoConnection *conn,
                const GError     *error,
                gpointer          user_data)
{
  EndpointCore *core = user_data;
  TlspyoEndpoint *self = core->endpoint;
  gboolean was_connected;
  guint lost;
  /* A relay cut off in the middle of a frame (killed, a network fault)
   * did not refuse this endpoint: it reconnects, without a warning, and
   * wait_connected() keeps waiting. */
  gboolean refused = is_refusal (error) && !tlspyo_connection_get_truncated (conn);

  /* Objects of the last read, when the connection was closed in it. */
  core_flush_received (core);
  tlspyo_keepalive_stop (&core->keepalive);

  g_mutex_lock (&self->mutex);
  was_connected = self->connected;
  self->connected = FALSE;
  lost = requeue_inflight_locked (self);
  if (core->stopped)
    tlspyo_endpoint_forget_produced_locked (self);
  else
    tlspyo_endpoint_suspend_untaken_locked (self);
  g_free (self->last_failure);
  self->last_failure = g_strdup (error->message);
  if (refused)
    {
      g_clear_error (&self->refusal);
      self->refusal = g_error_copy (error);
    }
  wake_locked (self);
  g_mutex_unlock (&self->mutex);

  if (lost > 0 && !core->stopped)
    g_debug ("Connection to %s lost with %u frames not acknowledged, to send again: %s",
             core->peer, lost, error->message);
  if (refused)
    g_warning ("%s", error->message);
  else
    g_debug ("Connection to %s ended: %s", core->peer, error->message);

  if (was_connected)
    {
      Dispatch *d = g_new0 (Dispatch, 1);
      g_weak_ref_init (&d->endpoint, self);
      tlspyo_endpoint_post_to_owner (self->owner_context, notify_connected_cb, d);
    }

  g_clear_pointer (&core->conn, tlspyo_connection_unref);
  g_clear_object (&core->socket);
  core_schedule_retry (core);
}

static void
core_read_done_cb (TlspyoConnection *conn,
                   gpointer          user_data)
{
  EndpointCore *core = user_data;

  core_flush_received (core);
  tlspyo_keepalive_alive (&core->keepalive);
}

static const TlspyoConnectionCallbacks core_callbacks = {
  core_frame_cb,
  core_read_done_cb,
  core_closed_cb,
};

static void
core_begin_protocol (EndpointCore *core,
                     GIOStream    *stream)
{
  core->conn = tlspyo_connection_new (stream, core->peer, &core_callbacks, core);
  core->n_sent = core->n_acked = 0;
  tlspyo_connection_set_limits (core->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_CHALLENGE) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_REFUSED) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  tlspyo_auth_random (core->nonce, sizeof core->nonce);
  if (core->user != NULL)  /* issue 6: the relay picks that user's salt */
    tlspyo_connection_send (core->conn, TLSPYO_FRAME_HELLO_USER,
                            g_variant_new ("(u@ays)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                           g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                      core->nonce,
                                                                      sizeof core->nonce, 1),
                                           core->user),
                            NULL, NULL);
  else
    tlspyo_connection_send (core->conn, TLSPYO_FRAME_HELLO,
                            g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                           g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                      core->nonce,
                                                                      sizeof core->nonce, 1)),
                            NULL, NULL);
  core->state = CORE_AWAIT_CHALLENGE;
  tlspyo_connection_start (core->conn);
}

static void
client_handshake_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  EndpointCore *core = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error))
    {
      if (core->stopped)
        ;
      else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        {
          /* A relay slow to answer is not one that refused us: not a
           * refusal for wait_connected(), just an attempt to retry. */
          g_autoptr(GError) net = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_NETWORK,
                                               "The relay at %s did not answer the TLS "
                                               "handshake in time: %s",
                                               core->peer, error->message);
          core_attempt_failed (core, net);
        }
      else
        {
          g_autofree char *msg = tlspyo_tls_describe_error (error, TRUE);
          g_autoptr(GError) tls_error =
            g_error_new (TLSPYO_ERROR,
                         g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE)
                           ? TLSPYO_ERROR_CREDENTIALS : TLSPYO_ERROR_PROTOCOL,
                         "%s: %s", core->peer, msg);
          core_attempt_failed (core, tls_error);
        }
    }
  else if (!core->stopped)
    core_begin_protocol (core, G_IO_STREAM (source));

  core_unref (core);
  tlspyo_worker_unhold ();
}

static void
connect_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  EndpointCore *core = user_data;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GError) error = NULL;

  connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  if (core->stopped)
    goto out;

  if (connection == NULL)
    {
      g_autoptr(GError) net = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_NETWORK,
                                           "Could not connect to the relay at %s: %s",
                                           core->peer, error->message);
      core_attempt_failed (core, net);
      goto out;
    }

  tlspyo_tls_set_nodelay (connection);
  g_set_object (&core->socket, g_socket_connection_get_socket (connection));
  if (core->pinned != NULL)
    {
      g_autoptr(GIOStream) tls = tlspyo_tls_client_new (G_IO_STREAM (connection), core->pinned,
                                                         core->server_identity, core->port,
                                                         &error);
      if (tls == NULL)
        {
          g_autoptr(GError) tls_error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                                                     "Could not set up TLS: %s", error->message);
          core_attempt_failed (core, tls_error);
          goto out;
        }
      if (core->client_certificate != NULL)  /* issue 6: mutual TLS */
        g_tls_connection_set_certificate (G_TLS_CONNECTION (tls), core->client_certificate);
      tlspyo_worker_hold ();
      g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
                                        core->cancellable, client_handshake_cb, core_ref (core));
    }
  else
    core_begin_protocol (core, G_IO_STREAM (connection));

out:
  core_unref (core);
  tlspyo_worker_unhold ();
}

static void
core_connect (EndpointCore *core)
{
  if (core->stopped)
    return;

  core->state = CORE_CONNECTING;
  g_clear_object (&core->cancellable);
  core->cancellable = g_cancellable_new ();
  tlspyo_worker_hold ();
  g_socket_client_connect_to_host_async (core->client, core->host, core->port,
                                         core->cancellable, connect_cb, core_ref (core));
}

gboolean
tlspyo_endpoint_core_start_cb (gpointer data)
{
  core_connect (data);
  return G_SOURCE_REMOVE;
}

gboolean
tlspyo_endpoint_core_shutdown_cb (gpointer data)
{
  EndpointCore *core = data;

  core->stopped = TRUE;
  tlspyo_keepalive_stop (&core->keepalive);
  g_cancellable_cancel (core->cancellable);
  if (core->retry_timer != NULL)
    {
      g_source_destroy (core->retry_timer);
      g_clear_pointer (&core->retry_timer, g_source_unref);
    }
  if (core->conn != NULL)
    {
      g_autoptr(GError) error = g_error_new_literal (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                                     "The endpoint stopped");
      /* What the application took before stop() is not handed out again. */
      g_mutex_lock (&core->endpoint->mutex);
      core_send_taken_locked (core);
      g_mutex_unlock (&core->endpoint->mutex);
      if (core->state >= CORE_AWAIT_RESUMED)
        tlspyo_connection_send (core->conn, TLSPYO_FRAME_BYE,
                                g_variant_new ("(s)", "the endpoint stopped"), NULL, NULL);
      /* Let the goodbye leave before the stream closes. */
      tlspyo_connection_close_when_flushed (core->conn, error);
      if (core->conn != NULL)
        tlspyo_connection_close (core->conn, error);
    }
  core->endpoint = NULL;
  core_unref (core);
  return G_SOURCE_REMOVE;
}

/* Called by start(), with the endpoint's mutex held: the settings the
 * worker side uses are copied, so that later changes to the properties
 * take effect on the next start(). Takes @pinned. */
EndpointCore *
tlspyo_endpoint_core_new (TlspyoEndpoint  *self,
                          GTlsCertificate *pinned)
{
  EndpointCore *core;

  core = g_new0 (EndpointCore, 1);
  g_atomic_ref_count_init (&core->ref_count);
  core->endpoint = self;
  core->host = g_strdup (self->host);
  core->port = self->port;
  core->groups = g_strdupv (self->groups);
  core->secret = tlspyo_auth_secret_copy (self->secret);
  core->pinned = g_steal_pointer (&pinned);
  core->server_identity = g_strdup (self->server_identity);
  core->user = g_strdup (self->user);
  g_set_object (&core->client_certificate, self->client_certificate);
  core->initial_delay = self->reconnect_initial_delay;
  core->max_delay = self->reconnect_max_delay;
  core->factor = self->reconnect_factor;
  core->jitter = self->reconnect_jitter;
  core->max_object_size = self->max_object_size;
  core->keepalive_interval = self->keepalive_interval;
  core->peer = strchr (self->host, ':') ? g_strdup_printf ("[%s]:%u", self->host, self->port)
                                        : g_strdup_printf ("%s:%u", self->host, self->port);
  core->received = g_array_new (FALSE, FALSE, sizeof (TlspyoReceived));
  g_array_set_clear_func (core->received, received_clear);
  core->client = g_socket_client_new ();
  g_socket_client_set_enable_proxy (core->client, FALSE);
  g_socket_client_set_timeout (core->client, self->handshake_timeout);

  return core;
}
