/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-endpoint-private.h"
#include "tlspyo-credentials.h"
#include "tlspyo-enums.h"

/**
 * TlspyoEndpoint:
 *
 * A node that exchanges objects with other endpoints through a [class@Tlspyo.Relay].
 *
 * An endpoint belongs to one or more groups. It can
 * [method@Tlspyo.Endpoint.broadcast] an object to a group (every member gets
 * it, and the relay keeps the latest one for members that join later),
 * [method@Tlspyo.Endpoint.produce] an object into a group's shared FIFO
 * queue, and tell the relay with [method@Tlspyo.Endpoint.notify_ready] that
 * it is ready to consume produced objects. What it receives lands in a local
 * queue, read with [method@Tlspyo.Endpoint.pop],
 * [method@Tlspyo.Endpoint.get_last] and [method@Tlspyo.Endpoint.receive_all],
 * and is announced by [signal@Tlspyo.Endpoint::object-received].
 *
 * Objects are [struct@GLib.Variant]s of any type.
 *
 * ```c
 * const char *groups[] = { "consumers", NULL };
 * g_autoptr(TlspyoEndpoint) ep = tlspyo_endpoint_new ("127.0.0.1", 3000, "VerySecurePassword", groups);
 * g_autoptr(GPtrArray) objects = NULL;
 *
 * tlspyo_endpoint_start (ep, &error);
 * tlspyo_endpoint_notify_ready (ep, "consumers", 1, &error);
 * objects = tlspyo_endpoint_pop (ep, 1, -1, &error);
 * ```
 *
 * The endpoint connects in the background and reconnects with exponential
 * backoff when the connection drops; what is sent meanwhile is kept in order
 * and sent once it is back. Network I/O runs on a worker thread shared by the
 * process, so it keeps flowing while the application computes or blocks.
 * Signals and async callbacks are delivered on the thread-default main
 * context of the thread that called [method@Tlspyo.Endpoint.start]; blocking
 * calls made on that thread iterate that context while they wait, so a script
 * without a main loop works. All methods are thread-safe.
 *
 * Since: 0.1
 */

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 2096
#define DEFAULT_HANDSHAKE_TIMEOUT 10
#define DEFAULT_KEEPALIVE_INTERVAL 15.0
#define DEFAULT_MAX_BUFFERED_BYTES ((guint64) 1024 * 1024 * 1024)

G_DEFINE_FINAL_TYPE (TlspyoEndpoint, tlspyo_endpoint, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_HOST,
  PROP_PORT,
  PROP_PASSWORD,
  PROP_GROUPS,
  PROP_SECURITY,
  PROP_CREDENTIALS_DIR,
  PROP_CERTIFICATE,
  PROP_SERVER_IDENTITY,
  PROP_USER,
  PROP_CLIENT_CERTIFICATE,
  PROP_RECONNECT_INITIAL_DELAY,
  PROP_RECONNECT_MAX_DELAY,
  PROP_RECONNECT_FACTOR,
  PROP_RECONNECT_JITTER,
  PROP_STOP_TIMEOUT,
  PROP_HANDSHAKE_TIMEOUT,
  PROP_MAX_OBJECT_SIZE,
  PROP_KEEPALIVE_INTERVAL,
  PROP_MAX_BUFFERED_BYTES,
  PROP_CONNECTED,
  N_PROPS
};

enum {
  SIGNAL_OBJECT_RECEIVED,
  SIGNAL_ACTION_REFUSED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* For the other files of the endpoint, which have no access to the class's
 * signals and properties. */

gboolean
tlspyo_endpoint_has_object_received_handler (TlspyoEndpoint *self,
                                             const char     *group)
{
  GQuark detail = g_quark_try_string (group);

  /* Before GLib 2.78, a non-zero detail matches only handlers connected
   * with exactly that detail, not those connected without one. */
  return g_signal_has_handler_pending (self, signals[SIGNAL_OBJECT_RECEIVED], 0, FALSE) ||
         (detail != 0 &&
          g_signal_has_handler_pending (self, signals[SIGNAL_OBJECT_RECEIVED], detail, FALSE));
}

/* Returns whether a handler consumed @object. */
gboolean
tlspyo_endpoint_emit_object_received (TlspyoEndpoint *self,
                                      GVariant       *object,
                                      const char     *group)
{
  gboolean handled = FALSE;

  g_signal_emit (self, signals[SIGNAL_OBJECT_RECEIVED], g_quark_from_string (group),
                 object, group, &handled);
  return handled;
}

void
tlspyo_endpoint_emit_action_refused (TlspyoEndpoint *self,
                                     const char     *group,
                                     TlspyoError     code,
                                     const char     *reason)
{
  g_signal_emit (self, signals[SIGNAL_ACTION_REFUSED], 0, group, code, reason);
}

void
tlspyo_endpoint_notify_connected (TlspyoEndpoint *self)
{
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONNECTED]);
}

/* GObject */

static void
tlspyo_endpoint_init (TlspyoEndpoint *self)
{
  g_mutex_init (&self->mutex);
  g_cond_init (&self->cond);
  self->host = g_strdup (DEFAULT_HOST);
  self->port = DEFAULT_PORT;
  self->security = TLSPYO_SECURITY_TLS;
  self->server_identity = g_strdup ("default");
  self->reconnect_initial_delay = 0.1;
  self->reconnect_max_delay = 60.0;
  self->reconnect_factor = 1.5;
  self->reconnect_jitter = 0.1;
  self->stop_timeout = 10.0;
  self->handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT;
  self->max_object_size = TLSPYO_DEFAULT_MAX_OBJECT_SIZE;
  self->keepalive_interval = DEFAULT_KEEPALIVE_INTERVAL;
  self->max_buffered_bytes = DEFAULT_MAX_BUFFERED_BYTES;
  tlspyo_auth_random (self->session_id, sizeof self->session_id);
  g_queue_init (&self->outgoing);
  g_queue_init (&self->inflight);
  g_queue_init (&self->received);
  g_queue_init (&self->received_tags);
  g_queue_init (&self->dispatching);
  g_queue_init (&self->held_dispatch);
  self->taken = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->received_counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_queue_init (&self->pop_requests);
  self->dest_cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify) g_bytes_unref);
  self->credit = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static void
shutdown_core (TlspyoEndpoint *self)
{
  EndpointCore *core;
  TlspyoWorker *worker;
  g_autoptr(GPtrArray) requests = g_ptr_array_new ();
  PopRequest *request;

  g_mutex_lock (&self->mutex);
  core = g_steal_pointer (&self->core);
  worker = g_steal_pointer (&self->worker);
  self->running = FALSE;
  g_mutex_unlock (&self->mutex);

  if (core != NULL)
    {
      tlspyo_worker_invoke_sync (worker, tlspyo_endpoint_core_shutdown_cb, core);
      tlspyo_worker_release (worker);
    }

  g_mutex_lock (&self->mutex);
  self->connected = FALSE;
  while ((request = g_queue_pop_head (&self->pop_requests)) != NULL)
    g_ptr_array_add (requests, request);
  wake_locked (self);
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; i < requests->len; i++)
    {
      request = g_ptr_array_index (requests, i);
      if (request->cancel_id != 0)
        g_cancellable_disconnect (request->cancellable, request->cancel_id);
      g_task_return_new_error (request->task, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                               "The endpoint stopped");
      g_clear_object (&request->task);
      g_clear_object (&request->cancellable);
      g_free (request);
    }
}

static void
tlspyo_endpoint_dispose (GObject *object)
{
  TlspyoEndpoint *self = TLSPYO_ENDPOINT (object);

  shutdown_core (self);
  g_clear_object (&self->certificate);

  G_OBJECT_CLASS (tlspyo_endpoint_parent_class)->dispose (object);
}

static void
tlspyo_endpoint_finalize (GObject *object)
{
  TlspyoEndpoint *self = TLSPYO_ENDPOINT (object);

  g_free (self->host);
  g_clear_pointer (&self->secret, tlspyo_auth_secret_free);
  g_strfreev (self->groups);
  g_free (self->credentials_dir);
  g_free (self->server_identity);
  g_free (self->user);
  g_clear_object (&self->client_certificate);
  g_clear_error (&self->refusal);
  g_free (self->last_failure);
  g_queue_clear_full (&self->outgoing, out_item_free);
  g_queue_clear_full (&self->inflight, out_item_free);
  g_queue_clear_full (&self->received, (GDestroyNotify) g_variant_unref);
  g_queue_clear_full (&self->received_tags, received_tag_free);
  g_queue_clear (&self->dispatching);  /* the tags belong to their dispatches */
  g_queue_clear_full (&self->held_dispatch, tlspyo_endpoint_dispatch_free);
  g_hash_table_unref (self->taken);
  g_hash_table_unref (self->received_counts);
  g_hash_table_unref (self->seen);
  g_clear_pointer (&self->owner_context, g_main_context_unref);
  g_hash_table_unref (self->dest_cache);
  g_hash_table_unref (self->credit);
  g_mutex_clear (&self->mutex);
  g_cond_clear (&self->cond);

  G_OBJECT_CLASS (tlspyo_endpoint_parent_class)->finalize (object);
}

static void
tlspyo_endpoint_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  TlspyoEndpoint *self = TLSPYO_ENDPOINT (object);
  g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new (&self->mutex);

  switch (prop_id)
    {
    case PROP_HOST:
      g_value_set_string (value, self->host);
      break;
    case PROP_PORT:
      g_value_set_uint (value, self->port);
      break;
    case PROP_GROUPS:
      g_value_set_boxed (value, self->groups);
      break;
    case PROP_SECURITY:
      g_value_set_enum (value, self->security);
      break;
    case PROP_CREDENTIALS_DIR:
      if (self->credentials_dir != NULL)
        g_value_set_string (value, self->credentials_dir);
      else
        g_value_take_string (value, tlspyo_credentials_get_default_dir ());
      break;
    case PROP_CERTIFICATE:
      g_value_set_object (value, self->certificate);
      break;
    case PROP_SERVER_IDENTITY:
      g_value_set_string (value, self->server_identity);
      break;
    case PROP_USER:
      g_value_set_string (value, self->user);
      break;
    case PROP_CLIENT_CERTIFICATE:
      g_value_set_object (value, self->client_certificate);
      break;
    case PROP_RECONNECT_INITIAL_DELAY:
      g_value_set_double (value, self->reconnect_initial_delay);
      break;
    case PROP_RECONNECT_MAX_DELAY:
      g_value_set_double (value, self->reconnect_max_delay);
      break;
    case PROP_RECONNECT_FACTOR:
      g_value_set_double (value, self->reconnect_factor);
      break;
    case PROP_RECONNECT_JITTER:
      g_value_set_double (value, self->reconnect_jitter);
      break;
    case PROP_STOP_TIMEOUT:
      g_value_set_double (value, self->stop_timeout);
      break;
    case PROP_HANDSHAKE_TIMEOUT:
      g_value_set_uint (value, self->handshake_timeout);
      break;
    case PROP_MAX_OBJECT_SIZE:
      g_value_set_uint64 (value, self->max_object_size);
      break;
    case PROP_KEEPALIVE_INTERVAL:
      g_value_set_double (value, self->keepalive_interval);
      break;
    case PROP_MAX_BUFFERED_BYTES:
      g_value_set_uint64 (value, self->max_buffered_bytes);
      break;
    case PROP_CONNECTED:
      g_value_set_boolean (value, self->connected);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static gboolean
set_double (double       *field,
            const GValue *value)
{
  double v = g_value_get_double (value);

  if (*field == v)
    return FALSE;
  *field = v;
  return TRUE;
}

static gboolean
set_string (char         **field,
            const GValue  *value)
{
  if (g_strcmp0 (*field, g_value_get_string (value)) == 0)
    return FALSE;
  g_free (*field);
  *field = g_value_dup_string (value);
  return TRUE;
}

static void
tlspyo_endpoint_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  TlspyoEndpoint *self = TLSPYO_ENDPOINT (object);
  gboolean changed = FALSE;

  g_mutex_lock (&self->mutex);
  switch (prop_id)
    {
    case PROP_HOST:
      changed = set_string (&self->host, value);
      if (self->host == NULL)
        self->host = g_strdup (DEFAULT_HOST);
      break;
    case PROP_PORT:
      changed = self->port != g_value_get_uint (value);
      self->port = g_value_get_uint (value);
      break;
    case PROP_PASSWORD:
      g_clear_pointer (&self->secret, tlspyo_auth_secret_free);
      if (g_value_get_string (value) != NULL)
        self->secret = tlspyo_auth_secret_new (g_value_get_string (value));
      break;
    case PROP_GROUPS:
      {
        char **groups = g_value_get_boxed (value);

        changed = !(groups == NULL && self->groups == NULL) &&
                  (groups == NULL || self->groups == NULL ||
                   !g_strv_equal ((const char * const *) groups,
                                  (const char * const *) self->groups));
        g_strfreev (self->groups);
        self->groups = g_strdupv (groups);
      }
      break;
    case PROP_SECURITY:
      changed = self->security != (TlspyoSecurity) g_value_get_enum (value);
      self->security = g_value_get_enum (value);
      break;
    case PROP_CREDENTIALS_DIR:
      changed = set_string (&self->credentials_dir, value);
      break;
    case PROP_CERTIFICATE:
      changed = g_set_object (&self->certificate, g_value_get_object (value));
      break;
    case PROP_SERVER_IDENTITY:
      changed = set_string (&self->server_identity, value);
      if (self->server_identity == NULL)
        self->server_identity = g_strdup ("default");
      break;
    case PROP_USER:
      changed = set_string (&self->user, value);
      if (self->user != NULL && *self->user == '\0')
        g_clear_pointer (&self->user, g_free);
      break;
    case PROP_CLIENT_CERTIFICATE:
      changed = g_set_object (&self->client_certificate, g_value_get_object (value));
      break;
    case PROP_RECONNECT_INITIAL_DELAY:
      changed = set_double (&self->reconnect_initial_delay, value);
      break;
    case PROP_RECONNECT_MAX_DELAY:
      changed = set_double (&self->reconnect_max_delay, value);
      break;
    case PROP_RECONNECT_FACTOR:
      changed = set_double (&self->reconnect_factor, value);
      break;
    case PROP_RECONNECT_JITTER:
      changed = set_double (&self->reconnect_jitter, value);
      break;
    case PROP_STOP_TIMEOUT:
      changed = set_double (&self->stop_timeout, value);
      break;
    case PROP_HANDSHAKE_TIMEOUT:
      changed = self->handshake_timeout != g_value_get_uint (value);
      self->handshake_timeout = g_value_get_uint (value);
      break;
    case PROP_MAX_OBJECT_SIZE:
      changed = self->max_object_size != g_value_get_uint64 (value);
      self->max_object_size = g_value_get_uint64 (value);
      break;
    case PROP_KEEPALIVE_INTERVAL:
      changed = set_double (&self->keepalive_interval, value);
      break;
    case PROP_MAX_BUFFERED_BYTES:
      changed = self->max_buffered_bytes != g_value_get_uint64 (value);
      self->max_buffered_bytes = g_value_get_uint64 (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
  g_mutex_unlock (&self->mutex);

  if (changed)
    g_object_notify_by_pspec (object, pspec);
}

static void
tlspyo_endpoint_class_init (TlspyoEndpointClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;

  object_class->dispose = tlspyo_endpoint_dispose;
  object_class->finalize = tlspyo_endpoint_finalize;
  object_class->get_property = tlspyo_endpoint_get_property;
  object_class->set_property = tlspyo_endpoint_set_property;

  /**
   * TlspyoEndpoint:host:
   *
   * The relay's host name or IP address. Settings are read by
   * [method@Tlspyo.Endpoint.start].
   *
   * Since: 0.1
   */
  properties[PROP_HOST] =
    g_param_spec_string ("host", NULL, NULL, DEFAULT_HOST, rw);

  /**
   * TlspyoEndpoint:port:
   *
   * The relay's TCP port.
   *
   * Since: 0.1
   */
  properties[PROP_PORT] =
    g_param_spec_uint ("port", NULL, NULL, 0, G_MAXUINT16, DEFAULT_PORT, rw);

  /**
   * TlspyoEndpoint:password:
   *
   * The password shared with the relay. It never crosses the network.
   * Write-only.
   *
   * Since: 0.1
   */
  properties[PROP_PASSWORD] =
    g_param_spec_string ("password", NULL, NULL, NULL,
                         G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoEndpoint:groups:
   *
   * The groups this endpoint belongs to: at least one.
   *
   * Since: 0.1
   */
  properties[PROP_GROUPS] =
    g_param_spec_boxed ("groups", NULL, NULL, G_TYPE_STRV, rw);

  /**
   * TlspyoEndpoint:security:
   *
   * TLS (the default) or plain TCP; it must match the relay's.
   *
   * Since: 0.1
   */
  properties[PROP_SECURITY] =
    g_param_spec_enum ("security", NULL, NULL, TLSPYO_TYPE_SECURITY, TLSPYO_SECURITY_TLS, rw);

  /**
   * TlspyoEndpoint:credentials-dir:
   *
   * The folder holding the relay's `certificate.pem`, which this endpoint
   * pins: it trusts that certificate and no other (no system CAs).
   * Defaults to [func@Tlspyo.credentials_get_default_dir].
   *
   * Since: 0.1
   */
  properties[PROP_CREDENTIALS_DIR] =
    g_param_spec_string ("credentials-dir", NULL, NULL, NULL, rw);

  /**
   * TlspyoEndpoint:certificate:
   *
   * The relay's certificate to trust. When set it is used instead of the
   * file in [property@Tlspyo.Endpoint:credentials-dir].
   *
   * Since: 0.1
   */
  properties[PROP_CERTIFICATE] =
    g_param_spec_object ("certificate", NULL, NULL, G_TYPE_TLS_CERTIFICATE, rw);

  /**
   * TlspyoEndpoint:server-identity:
   *
   * The name the relay's certificate must carry, "default" unless the
   * credentials were made with another common name.
   *
   * Since: 0.1
   */
  properties[PROP_SERVER_IDENTITY] =
    g_param_spec_string ("server-identity", NULL, NULL, "default", rw);

  /**
   * TlspyoEndpoint:user:
   *
   * The named user this endpoint authenticates as, with that user's
   * password in [property@Tlspyo.Endpoint:password]; the relay then lets
   * it do only what [method@Tlspyo.Relay.grant] gave the user. %NULL (the
   * default) uses the relay's shared password, with every right.
   * Read by [method@Tlspyo.Endpoint.start].
   *
   * Since: 0.1
   */
  properties[PROP_USER] =
    g_param_spec_string ("user", NULL, NULL, NULL, rw);

  /**
   * TlspyoEndpoint:client-certificate:
   *
   * This endpoint's own certificate, with its private key, for a relay
   * that requires mutual TLS ([property@Tlspyo.Relay:client-certificates-dir]):
   * load it with g_tls_certificate_new_from_files() from a folder made by
   * [func@Tlspyo.credentials_generate]. The relay maps it to a user, which
   * [property@Tlspyo.Endpoint:user] must name. %NULL (the default): no
   * certificate is shown. Read by [method@Tlspyo.Endpoint.start].
   *
   * Since: 0.1
   */
  properties[PROP_CLIENT_CERTIFICATE] =
    g_param_spec_object ("client-certificate", NULL, NULL, G_TYPE_TLS_CERTIFICATE, rw);

  /**
   * TlspyoEndpoint:reconnect-initial-delay:
   *
   * Seconds to wait before the first reconnection attempt.
   *
   * Since: 0.1
   */
  properties[PROP_RECONNECT_INITIAL_DELAY] =
    g_param_spec_double ("reconnect-initial-delay", NULL, NULL, 0.0, 3600.0, 0.1, rw);

  /**
   * TlspyoEndpoint:reconnect-max-delay:
   *
   * The longest wait, in seconds, between two reconnection attempts.
   *
   * Since: 0.1
   */
  properties[PROP_RECONNECT_MAX_DELAY] =
    g_param_spec_double ("reconnect-max-delay", NULL, NULL, 0.0, 86400.0, 60.0, rw);

  /**
   * TlspyoEndpoint:reconnect-factor:
   *
   * How much the wait grows after each failed attempt.
   *
   * Since: 0.1
   */
  properties[PROP_RECONNECT_FACTOR] =
    g_param_spec_double ("reconnect-factor", NULL, NULL, 1.0, 100.0, 1.5, rw);

  /**
   * TlspyoEndpoint:reconnect-jitter:
   *
   * The fraction by which each wait is randomly lengthened or shortened, so
   * that many endpoints do not all retry at once.
   *
   * Since: 0.1
   */
  properties[PROP_RECONNECT_JITTER] =
    g_param_spec_double ("reconnect-jitter", NULL, NULL, 0.0, 1.0, 0.1, rw);

  /**
   * TlspyoEndpoint:stop-timeout:
   *
   * Seconds [method@Tlspyo.Endpoint.stop] waits at most for the relay to
   * acknowledge what was sent.
   *
   * Since: 0.1
   */
  properties[PROP_STOP_TIMEOUT] =
    g_param_spec_double ("stop-timeout", NULL, NULL, 0.0, 3600.0, 10.0, rw);

  /**
   * TlspyoEndpoint:handshake-timeout:
   *
   * Seconds each step of a connection attempt (connecting, TLS,
   * authentication) may wait for the relay before the attempt is given up
   * and retried. Once connected there is no such limit: an endpoint with
   * nothing to say stays connected. Read by [method@Tlspyo.Endpoint.start].
   *
   * Since: 0.1
   */
  properties[PROP_HANDSHAKE_TIMEOUT] =
    g_param_spec_uint ("handshake-timeout", NULL, NULL, 1, 3600, DEFAULT_HANDSHAKE_TIMEOUT, rw);

  /**
   * TlspyoEndpoint:max-object-size:
   *
   * The largest object, in serialized bytes, this endpoint sends or accepts.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_OBJECT_SIZE] =
    g_param_spec_uint64 ("max-object-size", NULL, NULL, 2, G_MAXUINT64,
                         TLSPYO_DEFAULT_MAX_OBJECT_SIZE, rw);

  /**
   * TlspyoEndpoint:keepalive-interval:
   *
   * Seconds of silence from the relay after which the endpoint sends it a
   * PING; when the relay sends nothing, not even the answer, for two
   * intervals, the connection is dead (half-open TCP, a frozen relay, an
   * unplugged cable) and the endpoint reconnects. 0 disables it. Read by
   * [method@Tlspyo.Endpoint.start].
   *
   * Since: 0.1
   */
  properties[PROP_KEEPALIVE_INTERVAL] =
    g_param_spec_double ("keepalive-interval", NULL, NULL, 0.0, 86400.0,
                         DEFAULT_KEEPALIVE_INTERVAL, rw);

  /**
   * TlspyoEndpoint:max-buffered-bytes:
   *
   * The most bytes of objects and notifications (framing included) the
   * endpoint holds while they are not sent yet or not yet acknowledged by
   * the relay. It keeps them so as to send them again after a lost
   * connection; past this bound [method@Tlspyo.Endpoint.broadcast],
   * [method@Tlspyo.Endpoint.produce], [method@Tlspyo.Endpoint.send_object]
   * and [method@Tlspyo.Endpoint.notify_ready] fail with
   * %TLSPYO_ERROR_LIMIT instead of growing memory without end (nothing is
   * dropped silently): wait with [method@Tlspyo.Endpoint.flush] and send
   * again. 0 means no bound. Read at each send.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_BUFFERED_BYTES] =
    g_param_spec_uint64 ("max-buffered-bytes", NULL, NULL, 0, G_MAXUINT64,
                         DEFAULT_MAX_BUFFERED_BYTES, rw);

  /**
   * TlspyoEndpoint:connected:
   *
   * Whether the endpoint is connected, authenticated and joined right now.
   * Notified on the context of the thread that called start().
   *
   * Since: 0.1
   */
  properties[PROP_CONNECTED] =
    g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * TlspyoEndpoint::object-received:
   * @self: the endpoint
   * @object: the object
   * @group: the group it came through
   *
   * An object arrived. The signal is detailed by the group, so
   * `object-received::consumers` only sees objects of that group. A handler
   * that returns %TRUE takes the object: it is not put in the local queue.
   *
   * Returns: %TRUE to take the object, %FALSE to let it be queued
   *
   * Since: 0.1
   */
  signals[SIGNAL_OBJECT_RECEIVED] =
    g_signal_new ("object-received", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0, g_signal_accumulator_true_handled, NULL, NULL,
                  G_TYPE_BOOLEAN, 2, G_TYPE_VARIANT, G_TYPE_STRING);

  /**
   * TlspyoEndpoint::action-refused:
   * @self: the endpoint
   * @group: the group of the action
   * @code: why: %TLSPYO_ERROR_PERMISSION_DENIED (the endpoint's
   *   [property@Tlspyo.Endpoint:user] lacks the right) or
   *   %TLSPYO_ERROR_LIMIT (a limit of the relay, such as
   *   [property@Tlspyo.Relay:max-queued-bytes])
   * @reason: the relay's reason, in words
   *
   * The relay refused something this endpoint sent: an object (it went to
   * none of its destinations) or a [method@Tlspyo.Endpoint.notify_ready].
   * The connection stays up. The refusal is also logged as a warning.
   *
   * Since: 0.1
   */
  signals[SIGNAL_ACTION_REFUSED] =
    g_signal_new ("action-refused", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, TLSPYO_TYPE_ERROR,
                  G_TYPE_STRING);
}

/**
 * tlspyo_endpoint_new:
 * @host: the relay's host name or address
 * @port: the relay's port
 * @password: the shared password
 * @groups: (array zero-terminated=1): the groups to join
 *
 * Creates an endpoint. It does not connect until [method@Tlspyo.Endpoint.start].
 *
 * Returns: (transfer full): a new endpoint
 *
 * Since: 0.1
 */
TlspyoEndpoint *
tlspyo_endpoint_new (const char         *host,
                     guint               port,
                     const char         *password,
                     const char * const *groups)
{
  return g_object_new (TLSPYO_TYPE_ENDPOINT,
                       "host", host, "port", port, "password", password,
                       "groups", groups, NULL);
}

/**
 * tlspyo_endpoint_start:
 * @self: an endpoint
 * @error: return location for a #GError
 *
 * Starts connecting to the relay in the background and returns at once;
 * see [method@Tlspyo.Endpoint.wait_connected]. Fails right away when the
 * settings cannot work: no group or an invalid group name, no password, or
 * with TLS a missing relay certificate or TLS backend. Starting a running
 * endpoint does nothing.
 *
 * Returns: %TRUE if the endpoint is connecting
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_start (TlspyoEndpoint  *self,
                       GError         **error)
{
  g_autoptr(GTlsCertificate) pinned = NULL;
  EndpointCore *core;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_mutex_lock (&self->mutex);
  if (self->running)
    {
      g_mutex_unlock (&self->mutex);
      return TRUE;
    }
  if (self->groups == NULL || self->groups[0] == NULL)
    {
      g_mutex_unlock (&self->mutex);
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The endpoint has no group: set its groups property to at least one group name");
      return FALSE;
    }
  for (guint i = 0; self->groups[i] != NULL; i++)
    if (!tlspyo_group_name_check (self->groups[i], error))
      {
        g_mutex_unlock (&self->mutex);
        return FALSE;
      }
  if (self->secret == NULL)
    {
      g_mutex_unlock (&self->mutex);
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The endpoint has no password: set its password property to the relay's");
      return FALSE;
    }
  if (self->user != NULL && !tlspyo_auth_user_name_check (self->user, error))
    {
      g_mutex_unlock (&self->mutex);
      return FALSE;
    }
  if (self->client_certificate != NULL)
    {
      g_autofree char *key_pem = NULL;
      g_autoptr(GByteArray) key_der = NULL;

      g_object_get (self->client_certificate, "private-key-pem", &key_pem,
                    "private-key", &key_der, NULL);
      if ((key_pem == NULL && key_der == NULL) || self->security != TLSPYO_SECURITY_TLS)
        {
          g_mutex_unlock (&self->mutex);
          g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                               "The endpoint's client-certificate needs its private key and "
                               "TLS: load it with g_tls_certificate_new_from_files "
                               "(certificate, key), and keep security at TLS");
          return FALSE;
        }
    }
  if (self->security == TLSPYO_SECURITY_TLS)
    {
      if (self->certificate != NULL)
        pinned = g_object_ref (self->certificate);
      else
        pinned = tlspyo_credentials_load_certificate (self->credentials_dir, FALSE, error);
      if (pinned == NULL)
        {
          g_mutex_unlock (&self->mutex);
          return FALSE;
        }
    }

  core = tlspyo_endpoint_core_new (self, g_steal_pointer (&pinned));

  self->running = TRUE;
  self->owner_thread = g_thread_self ();
  g_clear_pointer (&self->owner_context, g_main_context_unref);
  self->owner_context = g_main_context_ref_thread_default ();
  g_clear_error (&self->refusal);
  self->core = core;
  self->worker = tlspyo_worker_get ();
  tlspyo_worker_invoke (self->worker, tlspyo_endpoint_core_start_cb, core, NULL);
  g_mutex_unlock (&self->mutex);

  return TRUE;
}

static gboolean
connected_or_refused (gpointer data)
{
  TlspyoEndpoint *self = data;

  return self->connected || self->refusal != NULL || !self->running;
}

/**
 * tlspyo_endpoint_wait_connected:
 * @self: an endpoint
 * @timeout_ms: how long to wait at most, in milliseconds; -1 for no limit
 * @error: return location for a #GError
 *
 * Waits until the endpoint is connected, authenticated and accepted in its
 * groups. When the relay refuses it (wrong password, refused group, wrong
 * certificate) this fails with that refusal's error, while the endpoint
 * keeps retrying in the background; on timeout it fails with
 * %TLSPYO_ERROR_TIMED_OUT.
 *
 * Returns: %TRUE once connected
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_wait_connected (TlspyoEndpoint  *self,
                                int              timeout_ms,
                                GError         **error)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  locker = g_mutex_locker_new (&self->mutex);
  if (!self->running)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint is not started: call tlspyo_endpoint_start() first");
      return FALSE;
    }
  tlspyo_wait_until (&self->mutex, &self->cond, wait_context_locked (self), timeout_ms,
                     connected_or_refused, self);
  if (self->connected)
    return TRUE;
  if (self->refusal != NULL)
    g_propagate_error (error, g_error_copy (self->refusal));
  else if (!self->running)
    g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED, "The endpoint stopped");
  else
    g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT,
                 "Not connected to the relay after %d ms%s%s", timeout_ms,
                 self->last_failure ? ": " : "", self->last_failure ? self->last_failure : "");
  return FALSE;
}

static gboolean
all_acknowledged (gpointer data)
{
  TlspyoEndpoint *self = data;

  return !self->running ||
         (self->connected && g_queue_is_empty (&self->outgoing) &&
          g_queue_is_empty (&self->inflight));
}

/**
 * tlspyo_endpoint_flush:
 * @self: an endpoint
 * @timeout_ms: how long to wait at most, in milliseconds; -1 for no limit
 * @error: return location for a #GError
 *
 * Waits until the relay has acknowledged everything sent so far, connecting
 * first if needed.
 *
 * Returns: %TRUE once everything was acknowledged
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_flush (TlspyoEndpoint  *self,
                       int              timeout_ms,
                       GError         **error)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  locker = g_mutex_locker_new (&self->mutex);
  if (!self->running)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint is not started: call tlspyo_endpoint_start() first");
      return FALSE;
    }
  tlspyo_wait_until (&self->mutex, &self->cond, wait_context_locked (self), timeout_ms,
                     all_acknowledged, self);
  if (!self->running)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED, "The endpoint stopped");
      return FALSE;
    }
  if (!all_acknowledged (self))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT,
                   "%u objects not acknowledged by the relay after %d ms%s%s",
                   g_queue_get_length (&self->outgoing) + g_queue_get_length (&self->inflight),
                   timeout_ms,
                   self->connected ? "" : ": not connected",
                   self->connected ? "" : "");
      return FALSE;
    }
  return TRUE;
}

static gboolean
nothing_outstanding (gpointer data)
{
  TlspyoEndpoint *self = data;

  return !self->connected ||
         (g_queue_is_empty (&self->outgoing) && g_queue_is_empty (&self->inflight) &&
          g_hash_table_size (self->taken) == 0);
}

/**
 * tlspyo_endpoint_stop:
 * @self: an endpoint
 *
 * Stops the endpoint. When connected, it first waits, at most
 * [property@Tlspyo.Endpoint:stop-timeout] seconds, for the relay to
 * acknowledge everything sent before; when not connected it does not wait,
 * and logs how many objects it could not deliver. Calling it again does
 * nothing; the endpoint may be started again. Broadcast objects already
 * received stay in the local queue; produced objects not taken yet do not
 * (see [method@Tlspyo.Endpoint.pop]): the relay hands them to another
 * consumer.
 *
 * Since: 0.1
 */
void
tlspyo_endpoint_stop (TlspyoEndpoint *self)
{
  guint undelivered;

  g_return_if_fail (TLSPYO_IS_ENDPOINT (self));

  g_mutex_lock (&self->mutex);
  if (!self->running)
    {
      g_mutex_unlock (&self->mutex);
      return;
    }
  if (self->connected)
    tlspyo_wait_until (&self->mutex, &self->cond, wait_context_locked (self),
                       (int) (self->stop_timeout * 1000), nothing_outstanding, self);
  undelivered = g_queue_get_length (&self->outgoing) + g_queue_get_length (&self->inflight);
  g_mutex_unlock (&self->mutex);

  shutdown_core (self);

  g_mutex_lock (&self->mutex);
  undelivered = MAX (undelivered,
                     g_queue_get_length (&self->outgoing) + g_queue_get_length (&self->inflight));
  g_queue_clear_full (&self->outgoing, out_item_free);
  g_queue_clear_full (&self->inflight, out_item_free);
  self->buffered_bytes = 0;
  /* Stopped while disconnected: the suspended objects are forgotten too,
   * and the relay gives them back when the next SESSION says so. */
  tlspyo_endpoint_forget_produced_locked (self);
  g_mutex_unlock (&self->mutex);

  if (undelivered > 0)
    g_warning ("Endpoint stopped with %u objects the relay did not acknowledge: they may "
               "not have been delivered", undelivered);
}

/* @credit_group: for a NOTIFY of positive @credit, its group, remembered
 * with the credit in the same locked step as the frame is queued, so that
 * core_restore_credit() sees both or neither. */
static gboolean
enqueue_full (TlspyoEndpoint   *self,
              TlspyoFrameType   type,
              GBytes           *meta,
              GVariant         *object,
              const char       *credit_group,
              int               credit,
              GError          **error)
{
  OutItem *item = g_new0 (OutItem, 1);

  item->type = type;
  item->meta = meta;
  if (object != NULL)
    {
      if (!tlspyo_object_check_depth (object, error))
        {
          out_item_free (item);
          return FALSE;
        }
      tlspyo_object_to_body (object, &item->data, &item->trailer);
      if (!tlspyo_object_body_pieces_check (item->data, item->trailer, error))
        {
          g_prefix_error (error, "This object cannot be sent: ");
          if (error != NULL && *error != NULL)
            (*error)->code = TLSPYO_ERROR_INVALID_ARGUMENT;
          out_item_free (item);
          return FALSE;
        }
      if (g_bytes_get_size (item->data) + g_bytes_get_size (item->trailer) > self->max_object_size)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "The object is %" G_GSIZE_FORMAT " bytes serialized, more than "
                       "max-object-size (%" G_GUINT64_FORMAT "): raise max-object-size on "
                       "the endpoints and the relay, or send smaller objects",
                       g_bytes_get_size (item->data) + g_bytes_get_size (item->trailer),
                       self->max_object_size);
          out_item_free (item);
          return FALSE;
        }
    }

  item->size = out_item_size (item);
  /* Only positive NOTIFYs are not sequenced: their credit belongs to the
   * connection, and is announced again as a whole on the next one. */
  item->sequenced = type == TLSPYO_FRAME_OBJECT || credit_group == NULL;

  g_mutex_lock (&self->mutex);
  if (self->max_buffered_bytes > 0 &&
      self->buffered_bytes + item->size > self->max_buffered_bytes)
    {
      guint64 held = self->buffered_bytes;
      guint64 limit = self->max_buffered_bytes;

      g_mutex_unlock (&self->mutex);
      if (item->size > limit)
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_LIMIT,
                     "Not sent: this %s takes %" G_GSIZE_FORMAT " bytes to send, more than "
                     "the endpoint's max-buffered-bytes (%" G_GUINT64_FORMAT "): raise "
                     "max-buffered-bytes", type == TLSPYO_FRAME_OBJECT ? "object" : "notification",
                     item->size, limit);
      else
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_LIMIT,
                     "Not sent: the endpoint already holds %" G_GUINT64_FORMAT " bytes the "
                     "relay has not acknowledged yet, and %" G_GSIZE_FORMAT " more would pass "
                     "its max-buffered-bytes (%" G_GUINT64_FORMAT "): wait for the relay "
                     "(tlspyo_endpoint_flush()) and send again, or raise max-buffered-bytes",
                     held, item->size, limit);
      out_item_free (item);
      return FALSE;
    }
  self->buffered_bytes += item->size;
  if (credit_group != NULL)
    {
      gint64 *total = g_hash_table_lookup (self->credit, credit_group);

      if (total == NULL)
        {
          total = g_new0 (gint64, 1);
          g_hash_table_insert (self->credit, g_strdup (credit_group), total);
        }
      /* Saturate as the relay does. */
      *total = *total > G_MAXINT64 - credit ? G_MAXINT64 : *total + credit;
      item->credit_group = g_strdup (credit_group);
    }
  g_queue_push_tail (&self->outgoing, item);
  tlspyo_endpoint_kick_locked (self);
  g_mutex_unlock (&self->mutex);
  return TRUE;
}

static gboolean
enqueue (TlspyoEndpoint   *self,
         TlspyoFrameType   type,
         GBytes           *meta,
         GVariant         *object,
         GError          **error)
{
  return enqueue_full (self, type, meta, object, NULL, 0, error);
}

static GVariant *
sink_object (GVariant *object)
{
  return g_variant_ref_sink (object);
}

/* The OBJECT metadata for one group, serialized once: broadcast() and
 * produce() to the same group then cost no GVariant work. */
static GBytes *
dest_meta (TlspyoEndpoint *self,
           const char     *group,
           int             count)
{
  g_autofree char *key = g_strdup_printf ("%c%s", count < 0 ? 'b' : 'p', group);
  GBytes *meta;

  g_mutex_lock (&self->mutex);
  meta = g_hash_table_lookup (self->dest_cache, key);
  if (meta == NULL)
    {
      GVariantBuilder builder;

      if (g_hash_table_size (self->dest_cache) >= 1024)
        g_hash_table_remove_all (self->dest_cache);
      g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
      g_variant_builder_add (&builder, "{si}", group, (gint32) count);
      meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_OBJECT,
                                          g_variant_new ("(a{si})", &builder));
      g_hash_table_insert (self->dest_cache, g_steal_pointer (&key), meta);
    }
  g_bytes_ref (meta);
  g_mutex_unlock (&self->mutex);
  return meta;
}

/**
 * tlspyo_endpoint_broadcast:
 * @self: an endpoint
 * @object: the object to send; a floating reference is sunk
 * @group: the destination group
 * @error: return location for a #GError
 *
 * Sends @object to every endpoint of @group, this one too if it is a
 * member. The relay keeps the latest broadcast of each group and gives it to
 * endpoints that join the group later. Sent in order with everything else;
 * kept until the connection is up.
 *
 * Returns: %TRUE if the object was queued for sending
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_broadcast (TlspyoEndpoint  *self,
                           GVariant        *object,
                           const char      *group,
                           GError         **error)
{
  g_autoptr(GVariant) obj = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (object != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  obj = sink_object (object);
  if (!tlspyo_group_name_check (group, error))
    return FALSE;
  return enqueue (self, TLSPYO_FRAME_OBJECT, dest_meta (self, group, -1), obj, error);
}

/**
 * tlspyo_endpoint_produce:
 * @self: an endpoint
 * @object: the object to send; a floating reference is sunk
 * @group: the destination group
 * @error: return location for a #GError
 *
 * Appends @object to the shared FIFO queue of @group at the relay; it goes
 * to one endpoint of the group that called [method@Tlspyo.Endpoint.notify_ready].
 *
 * Returns: %TRUE if the object was queued for sending
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_produce (TlspyoEndpoint  *self,
                         GVariant        *object,
                         const char      *group,
                         GError         **error)
{
  g_autoptr(GVariant) obj = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (object != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  obj = sink_object (object);
  if (!tlspyo_group_name_check (group, error))
    return FALSE;
  return enqueue (self, TLSPYO_FRAME_OBJECT, dest_meta (self, group, 1), obj, error);
}

/**
 * tlspyo_endpoint_send_object:
 * @self: an endpoint
 * @object: the object to send; a floating reference is sunk
 * @destination: where to: a group name (type `s`) to broadcast to, a list of
 *   group names (`as`) to broadcast to each, or a dictionary (`a{si}`) from
 *   group name to count: a negative count broadcasts to that group, a positive
 *   one produces that many copies into its queue. A floating reference is sunk.
 * @error: return location for a #GError
 *
 * Sends @object to several groups at once, as tlspyo's `send_object`. Objects
 * reach an endpoint once per destination group it belongs to. Nothing is sent
 * when @destination is invalid (wrong type, a count of 0, a bad group name).
 *
 * Returns: %TRUE if the object was queued for sending
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_send_object (TlspyoEndpoint  *self,
                             GVariant        *object,
                             GVariant        *destination,
                             GError         **error)
{
  g_autoptr(GVariant) obj = NULL;
  g_autoptr(GVariant) dest = NULL;
  GVariantBuilder builder;
  GVariantIter iter;
  const char *group;
  gint32 count;
  gboolean any = FALSE;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (object != NULL, FALSE);
  g_return_val_if_fail (destination != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  obj = sink_object (object);
  dest = g_variant_ref_sink (destination);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));

  if (g_variant_is_of_type (dest, G_VARIANT_TYPE_STRING))
    {
      group = g_variant_get_string (dest, NULL);
      if (!tlspyo_group_name_check (group, error))
        goto fail;
      g_variant_builder_add (&builder, "{si}", group, -1);
      any = TRUE;
    }
  else if (g_variant_is_of_type (dest, G_VARIANT_TYPE_STRING_ARRAY))
    {
      g_variant_iter_init (&iter, dest);
      while (g_variant_iter_next (&iter, "&s", &group))
        {
          if (!tlspyo_group_name_check (group, error))
            goto fail;
          g_variant_builder_add (&builder, "{si}", group, -1);
          any = TRUE;
        }
    }
  else if (g_variant_is_of_type (dest, G_VARIANT_TYPE ("a{si}")))
    {
      g_variant_iter_init (&iter, dest);
      while (g_variant_iter_next (&iter, "{&si}", &group, &count))
        {
          if (!tlspyo_group_name_check (group, error))
            goto fail;
          if (count == 0)
            {
              g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The count for group '%s' is 0: use a negative count to broadcast, "
                           "or a positive one to produce that many copies", group);
              goto fail;
            }
          g_variant_builder_add (&builder, "{si}", group, count);
          any = TRUE;
        }
    }
  else
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "A destination of type '%s' is not understood: give a group name (s), a "
                   "list of group names (as), or a{si} from group name to count",
                   g_variant_get_type_string (dest));
      goto fail;
    }

  if (!any)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The destination names no group: give at least one");
      goto fail;
    }

  return enqueue (self, TLSPYO_FRAME_OBJECT,
                  tlspyo_frame_serialize_meta (TLSPYO_FRAME_OBJECT,
                                               g_variant_new ("(a{si})", &builder)),
                  obj, error);

fail:
  g_variant_builder_clear (&builder);
  return FALSE;
}

/**
 * tlspyo_endpoint_notify_ready:
 * @self: an endpoint
 * @group: a group this endpoint belongs to
 * @count: how many produced objects of @group this endpoint is ready to
 *   consume; negative: every object queued at the relay right now
 * @error: return location for a #GError
 *
 * Tells the relay this endpoint is ready to consume objects produced into
 * @group (tlspyo's `notify`). Credit adds up; the relay hands queued objects
 * to endpoints with credit in FIFO order, fairly among them. The relay
 * ignores it for a group this endpoint is not in.
 *
 * Positive credit the relay has not used yet is remembered by the endpoint
 * and announced again when it reconnects (after a lost connection or a
 * relay restart), so a consumer waiting in [method@Tlspyo.Endpoint.pop]
 * still gets its objects. A negative count is not remembered.
 *
 * The relay hands one endpoint at most
 * [property@Tlspyo.Relay:max-in-flight-bytes] (256 MiB by default) of a
 * group's produced objects that its application has not taken yet (by
 * [method@Tlspyo.Endpoint.pop] and the like): past it, credit waits until
 * objects are taken, and a negative count gets what fits, the rest staying
 * queued at the relay.
 *
 * Returns: %TRUE if the notification was queued for sending
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_notify_ready (TlspyoEndpoint  *self,
                              const char      *group,
                              int              count,
                              GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tlspyo_group_name_check (group, error))
    return FALSE;
  if (count == 0)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "A count of 0 asks for nothing: give a positive count, or -1 for "
                           "everything queued now");
      return FALSE;
    }
  /* Positive credit is remembered until used, and asked for again after a
   * reconnection; -1 means "what is queued now", which a new connection
   * would not mean the same. */
  return enqueue_full (self, TLSPYO_FRAME_NOTIFY,
                       tlspyo_frame_serialize_meta (TLSPYO_FRAME_NOTIFY,
                                                    g_variant_new ("(si)", group, (gint32) count)),
                       NULL, count > 0 ? group : NULL, count, error);
}

/**
 * tlspyo_endpoint_get_connected:
 * @self: an endpoint
 *
 * Tells whether the endpoint is connected; see [property@Tlspyo.Endpoint:connected].
 *
 * Returns: whether the endpoint is connected and joined right now
 *
 * Since: 0.1
 */
gboolean
tlspyo_endpoint_get_connected (TlspyoEndpoint *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), FALSE);
  locker = g_mutex_locker_new (&self->mutex);
  return self->connected;
}
