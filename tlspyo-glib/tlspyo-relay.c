/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* The GObject part of a relay: properties, signals (emitted on the owner's
 * context), start/stop, groups, stats and the private ways in for tests.
 * The worker side is in tlspyo-relay-core.c and the files it names. */

/**
 * TlspyoRelay:
 *
 * The meeting point of endpoints.
 *
 * A relay listens for [class@Tlspyo.Endpoint]s, checks that they know the
 * password, and routes their objects: broadcasts to every member of a group
 * (keeping the latest one for members that join later), produced objects
 * into a group's shared FIFO queue, handed out to endpoints that said with
 * [method@Tlspyo.Endpoint.notify_ready] that they are ready to consume them.
 *
 * The relay forwards objects as opaque bytes: it never deserializes them,
 * and a broadcast to many endpoints shares one buffer.
 *
 * ```c
 * g_autoptr(TlspyoRelay) relay = tlspyo_relay_new (3000, "VerySecurePassword");
 * g_autoptr(GError) error = NULL;
 *
 * if (!tlspyo_relay_start (relay, &error))
 *   g_error ("%s", error->message);
 * ```
 *
 * Network I/O runs on a worker thread shared by all relays and endpoints of
 * the process; signals are emitted on the thread-default main context of the
 * thread that called [method@Tlspyo.Relay.start]. Its methods may be called
 * from any thread.
 *
 * Since: 0.1
 */

G_DEFINE_FINAL_TYPE (TlspyoRelay, tlspyo_relay, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PORT,
  PROP_ADDRESS,
  PROP_PASSWORD,
  PROP_SECURITY,
  PROP_CREDENTIALS_DIR,
  PROP_CERTIFICATE,
  PROP_MAX_OBJECT_SIZE,
  PROP_HANDSHAKE_TIMEOUT,
  PROP_KEEPALIVE_INTERVAL,
  /* limits (issue 6) */
  PROP_MAX_CONNECTIONS,
  PROP_MAX_CONNECTIONS_PER_ADDRESS,
  PROP_MAX_AUTH_FAILURES,
  PROP_AUTH_BLOCK_TIME,
  PROP_AUTH_FAILURE_DELAY,
  PROP_MAX_GROUPS_PER_ENDPOINT,
  PROP_MAX_QUEUED_BYTES,
  PROP_CLIENT_CERTIFICATES_DIR,
  PROP_MAX_OUTPUT_BYTES,  /* issue 5 */
  PROP_SESSION_TIMEOUT,   /* issue 5 */
  PROP_STATE_DIRECTORY,   /* issue 5 */
  PROP_MAX_IN_FLIGHT_BYTES,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* Signals travel to the owner's context, holding the relay only weakly: a
 * script that never iterates its context must still be able to free it. */
typedef struct {
  GWeakRef      relay;
  guint         signal_id;
  char         *address;
  char        **groups;
  TlspyoError   code;
  char         *reason;
  guint64       count;  /* object-dropped; its group is in address */
} SignalEmission;

static void
signal_emission_free (gpointer data)
{
  SignalEmission *e = data;

  g_weak_ref_clear (&e->relay);
  g_free (e->address);
  g_strfreev (e->groups);
  g_free (e->reason);
  g_free (e);
}

static gboolean
signal_emission_cb (gpointer data)
{
  SignalEmission *e = data;
  g_autoptr(TlspyoRelay) relay = g_weak_ref_get (&e->relay);

  if (relay == NULL)
    return G_SOURCE_REMOVE;

  if (e->signal_id == signals[SIGNAL_ENDPOINT_CONNECTED])
    g_signal_emit (relay, e->signal_id, 0, e->address, e->groups);
  else if (e->signal_id == signals[SIGNAL_ENDPOINT_DISCONNECTED])
    g_signal_emit (relay, e->signal_id, 0, e->address);
  else if (e->signal_id == signals[SIGNAL_OBJECT_DROPPED])
    g_signal_emit (relay, e->signal_id, 0, e->address, e->reason, e->count);
  else
    g_signal_emit (relay, e->signal_id, 0, e->address, e->code, e->reason);
  return G_SOURCE_REMOVE;
}

void
tlspyo_relay_core_emit (RelayCore          *core,
                        guint               signal,
                        const char         *address,
                        const char * const *groups,
                        TlspyoError         code,
                        const char         *reason)
{
  SignalEmission *e = g_new0 (SignalEmission, 1);
  g_autoptr(GObject) relay = g_weak_ref_get (&core->relay);
  GSource *source;

  g_weak_ref_init (&e->relay, relay);
  e->signal_id = signals[signal];
  e->address = g_strdup (address);
  e->groups = g_strdupv ((char **) groups);
  e->code = code;
  e->reason = g_strdup (reason);

  source = g_idle_source_new ();
  g_source_set_callback (source, signal_emission_cb, e, signal_emission_free);
  g_source_set_static_name (source, "[tlspyo] relay signal");
  g_source_attach (source, core->owner_context);
  g_source_unref (source);
}

void
tlspyo_relay_core_emit_dropped (RelayCore  *core,
                                const char *group,
                                const char *reason,
                                guint64     n_objects)
{
  SignalEmission *e = g_new0 (SignalEmission, 1);
  g_autoptr(GObject) relay = g_weak_ref_get (&core->relay);
  GSource *source;

  g_weak_ref_init (&e->relay, relay);
  e->signal_id = signals[SIGNAL_OBJECT_DROPPED];
  e->address = g_strdup (group);
  e->reason = g_strdup (reason);
  e->count = n_objects;

  source = g_idle_source_new ();
  g_source_set_callback (source, signal_emission_cb, e, signal_emission_free);
  g_source_set_static_name (source, "[tlspyo] relay signal");
  g_source_attach (source, core->owner_context);
  g_source_unref (source);
}

typedef struct {
  RelayCore *core;
  GroupRule  rule;
} RuleCall;

static gboolean
core_accept_group_cb (gpointer data)
{
  RuleCall *call = data;

  tlspyo_router_accept_group (call->core->router, call->rule.group,
                              call->rule.max_count, call->rule.max_consumables);
  return G_SOURCE_REMOVE;
}

static void
rule_call_free (gpointer data)
{
  RuleCall *call = data;

  tlspyo_relay_core_unref (call->core);
  g_free (call->rule.group);
  g_free (call);
}

/* The GObject part. */

static void
group_rule_clear (gpointer data)
{
  GroupRule *rule = data;

  g_free (rule->group);
}

static void
tlspyo_relay_init (TlspyoRelay *self)
{
  g_mutex_init (&self->mutex);
  self->port = DEFAULT_PORT;
  self->security = TLSPYO_SECURITY_TLS;
  self->max_object_size = TLSPYO_DEFAULT_MAX_OBJECT_SIZE;
  self->handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT;
  self->keepalive_interval = DEFAULT_KEEPALIVE_INTERVAL;
  self->max_output_bytes = DEFAULT_MAX_OUTPUT_BYTES;
  self->session_timeout = DEFAULT_SESSION_TIMEOUT;
  self->limits.max_connections = DEFAULT_MAX_CONNECTIONS;
  self->limits.max_connections_per_address = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  self->limits.max_auth_failures = DEFAULT_MAX_AUTH_FAILURES;
  self->limits.auth_block_time = DEFAULT_AUTH_BLOCK_TIME;
  self->limits.auth_failure_delay = DEFAULT_AUTH_FAILURE_DELAY;
  self->limits.max_groups_per_endpoint = DEFAULT_MAX_GROUPS_PER_ENDPOINT;
  self->limits.max_queued_bytes = DEFAULT_MAX_QUEUED_BYTES;
  self->limits.max_in_flight_bytes = DEFAULT_MAX_IN_FLIGHT_BYTES;
  self->users = tlspyo_relay_user_table_new ();
  self->rules = g_array_new (FALSE, TRUE, sizeof (GroupRule));
  g_array_set_clear_func (self->rules, group_rule_clear);
}

static void
tlspyo_relay_dispose (GObject *object)
{
  TlspyoRelay *self = TLSPYO_RELAY (object);

  tlspyo_relay_stop (self);
  g_clear_object (&self->certificate);

  G_OBJECT_CLASS (tlspyo_relay_parent_class)->dispose (object);
}

static void
tlspyo_relay_finalize (GObject *object)
{
  TlspyoRelay *self = TLSPYO_RELAY (object);

  g_free (self->address);
  g_free (self->credentials_dir);
  g_clear_pointer (&self->secret, tlspyo_auth_secret_free);
  g_hash_table_unref (self->users);
  g_free (self->client_certificates_dir);
  g_free (self->state_directory);
  g_array_unref (self->rules);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (tlspyo_relay_parent_class)->finalize (object);
}

static void
tlspyo_relay_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  TlspyoRelay *self = TLSPYO_RELAY (object);
  g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new (&self->mutex);

  switch (prop_id)
    {
    case PROP_PORT:
      g_value_set_uint (value, self->port);
      break;
    case PROP_ADDRESS:
      g_value_set_string (value, self->address);
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
    case PROP_MAX_OBJECT_SIZE:
      g_value_set_uint64 (value, self->max_object_size);
      break;
    case PROP_HANDSHAKE_TIMEOUT:
      g_value_set_uint (value, self->handshake_timeout);
      break;
    case PROP_KEEPALIVE_INTERVAL:
      g_value_set_double (value, self->keepalive_interval);
      break;
    case PROP_MAX_OUTPUT_BYTES:
      g_value_set_uint64 (value, self->max_output_bytes);
      break;
    case PROP_SESSION_TIMEOUT:
      g_value_set_double (value, self->session_timeout);
      break;
    /* limits (issue 6) */
    case PROP_MAX_CONNECTIONS:
      g_value_set_uint (value, self->limits.max_connections);
      break;
    case PROP_MAX_CONNECTIONS_PER_ADDRESS:
      g_value_set_uint (value, self->limits.max_connections_per_address);
      break;
    case PROP_MAX_AUTH_FAILURES:
      g_value_set_uint (value, self->limits.max_auth_failures);
      break;
    case PROP_AUTH_BLOCK_TIME:
      g_value_set_uint (value, self->limits.auth_block_time);
      break;
    case PROP_AUTH_FAILURE_DELAY:
      g_value_set_uint (value, self->limits.auth_failure_delay);
      break;
    case PROP_MAX_GROUPS_PER_ENDPOINT:
      g_value_set_uint (value, self->limits.max_groups_per_endpoint);
      break;
    case PROP_MAX_QUEUED_BYTES:
      g_value_set_uint64 (value, self->limits.max_queued_bytes);
      break;
    case PROP_MAX_IN_FLIGHT_BYTES:
      g_value_set_uint64 (value, self->limits.max_in_flight_bytes);
      break;
    case PROP_CLIENT_CERTIFICATES_DIR:
      g_value_set_string (value, self->client_certificates_dir);
      break;
    case PROP_STATE_DIRECTORY:
      g_value_set_string (value, self->state_directory);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static gboolean
set_uint (guint        *field,
          const GValue *value)
{
  guint old = *field;

  *field = g_value_get_uint (value);
  return old != *field;
}

static void
tlspyo_relay_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  TlspyoRelay *self = TLSPYO_RELAY (object);
  gboolean changed = FALSE;

  g_mutex_lock (&self->mutex);
  switch (prop_id)
    {
    case PROP_PORT:
      changed = self->port != g_value_get_uint (value);
      self->port = g_value_get_uint (value);
      break;
    case PROP_ADDRESS:
      changed = g_strcmp0 (self->address, g_value_get_string (value)) != 0;
      g_free (self->address);
      self->address = g_value_dup_string (value);
      break;
    case PROP_PASSWORD:
      g_clear_pointer (&self->secret, tlspyo_auth_secret_free);
      if (g_value_get_string (value) != NULL)
        self->secret = tlspyo_auth_secret_new (g_value_get_string (value));
      break;
    case PROP_SECURITY:
      changed = self->security != (TlspyoSecurity) g_value_get_enum (value);
      self->security = g_value_get_enum (value);
      break;
    case PROP_CREDENTIALS_DIR:
      changed = g_strcmp0 (self->credentials_dir, g_value_get_string (value)) != 0;
      g_free (self->credentials_dir);
      self->credentials_dir = g_value_dup_string (value);
      break;
    case PROP_CERTIFICATE:
      changed = g_set_object (&self->certificate, g_value_get_object (value));
      break;
    case PROP_MAX_OBJECT_SIZE:
      changed = self->max_object_size != g_value_get_uint64 (value);
      self->max_object_size = g_value_get_uint64 (value);
      break;
    case PROP_HANDSHAKE_TIMEOUT:
      changed = self->handshake_timeout != g_value_get_uint (value);
      self->handshake_timeout = g_value_get_uint (value);
      break;
    case PROP_KEEPALIVE_INTERVAL:
      changed = self->keepalive_interval != g_value_get_double (value);
      self->keepalive_interval = g_value_get_double (value);
      break;
    case PROP_MAX_OUTPUT_BYTES:
      changed = self->max_output_bytes != g_value_get_uint64 (value);
      self->max_output_bytes = g_value_get_uint64 (value);
      break;
    case PROP_SESSION_TIMEOUT:
      changed = self->session_timeout != g_value_get_double (value);
      self->session_timeout = g_value_get_double (value);
      break;
    /* limits (issue 6) */
    case PROP_MAX_CONNECTIONS:
      changed = set_uint (&self->limits.max_connections, value);
      break;
    case PROP_MAX_CONNECTIONS_PER_ADDRESS:
      changed = set_uint (&self->limits.max_connections_per_address, value);
      break;
    case PROP_MAX_AUTH_FAILURES:
      changed = set_uint (&self->limits.max_auth_failures, value);
      break;
    case PROP_AUTH_BLOCK_TIME:
      changed = set_uint (&self->limits.auth_block_time, value);
      break;
    case PROP_AUTH_FAILURE_DELAY:
      changed = set_uint (&self->limits.auth_failure_delay, value);
      break;
    case PROP_MAX_GROUPS_PER_ENDPOINT:
      changed = set_uint (&self->limits.max_groups_per_endpoint, value);
      break;
    case PROP_MAX_QUEUED_BYTES:
      changed = self->limits.max_queued_bytes != g_value_get_uint64 (value);
      self->limits.max_queued_bytes = g_value_get_uint64 (value);
      break;
    case PROP_MAX_IN_FLIGHT_BYTES:
      changed = self->limits.max_in_flight_bytes != g_value_get_uint64 (value);
      self->limits.max_in_flight_bytes = g_value_get_uint64 (value);
      break;
    case PROP_CLIENT_CERTIFICATES_DIR:
      changed = g_strcmp0 (self->client_certificates_dir, g_value_get_string (value)) != 0;
      g_free (self->client_certificates_dir);
      self->client_certificates_dir = g_value_dup_string (value);
      break;
    case PROP_STATE_DIRECTORY:
      changed = g_strcmp0 (self->state_directory, g_value_get_string (value)) != 0;
      g_free (self->state_directory);
      self->state_directory = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
  g_mutex_unlock (&self->mutex);

  if (changed)
    g_object_notify_by_pspec (object, pspec);
}

static void
tlspyo_relay_class_init (TlspyoRelayClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = tlspyo_relay_dispose;
  object_class->finalize = tlspyo_relay_finalize;
  object_class->get_property = tlspyo_relay_get_property;
  object_class->set_property = tlspyo_relay_set_property;

  /**
   * TlspyoRelay:port:
   *
   * The TCP port to listen on; 0 lets the system pick a free one. After
   * [method@Tlspyo.Relay.start] it reads back the port actually bound.
   *
   * Since: 0.1
   */
  properties[PROP_PORT] =
    g_param_spec_uint ("port", NULL, NULL, 0, G_MAXUINT16, DEFAULT_PORT,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY |
                       G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:address:
   *
   * The IP address to listen on, such as "127.0.0.1"; %NULL (the default)
   * listens on every interface, IPv4 and IPv6.
   *
   * Since: 0.1
   */
  properties[PROP_ADDRESS] =
    g_param_spec_string ("address", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:password:
   *
   * The shared password endpoints must know. It never crosses the network:
   * each side proves it knows it with a challenge-response. Write-only.
   *
   * Since: 0.1
   */
  properties[PROP_PASSWORD] =
    g_param_spec_string ("password", NULL, NULL, NULL,
                         G_PARAM_WRITABLE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:security:
   *
   * Whether connections use TLS (the default) or plain TCP.
   *
   * Since: 0.1
   */
  properties[PROP_SECURITY] =
    g_param_spec_enum ("security", NULL, NULL, TLSPYO_TYPE_SECURITY, TLSPYO_SECURITY_TLS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:credentials-dir:
   *
   * The folder holding `key.pem` and `certificate.pem`, as made by
   * [func@Tlspyo.credentials_generate]. Defaults to
   * [func@Tlspyo.credentials_get_default_dir].
   *
   * Since: 0.1
   */
  properties[PROP_CREDENTIALS_DIR] =
    g_param_spec_string ("credentials-dir", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:certificate:
   *
   * The relay's certificate, with its private key. When set it is used
   * instead of the files in [property@Tlspyo.Relay:credentials-dir].
   *
   * Since: 0.1
   */
  properties[PROP_CERTIFICATE] =
    g_param_spec_object ("certificate", NULL, NULL, G_TYPE_TLS_CERTIFICATE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-object-size:
   *
   * The largest object, in serialized bytes, the relay accepts. An endpoint
   * that sends a larger one is disconnected before anything is allocated.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_OBJECT_SIZE] =
    g_param_spec_uint64 ("max-object-size", NULL, NULL, 2, G_MAXUINT64,
                         TLSPYO_DEFAULT_MAX_OBJECT_SIZE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:handshake-timeout:
   *
   * Seconds a new connection has to complete TLS and authentication before
   * the relay drops it.
   *
   * Since: 0.1
   */
  properties[PROP_HANDSHAKE_TIMEOUT] =
    g_param_spec_uint ("handshake-timeout", NULL, NULL, 1, 3600, DEFAULT_HANDSHAKE_TIMEOUT,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:keepalive-interval:
   *
   * Seconds of silence from a joined endpoint after which the relay sends
   * it a PING; an endpoint that sends nothing, not even the answer, for two
   * intervals is dropped as dead (half-open TCP, frozen process). Endpoints
   * ping the relay the same way with their own interval. 0 disables it.
   * Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_KEEPALIVE_INTERVAL] =
    g_param_spec_double ("keepalive-interval", NULL, NULL, 0.0, 86400.0,
                         DEFAULT_KEEPALIVE_INTERVAL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-output-bytes:
   *
   * Bytes that may wait to be written to one endpoint (64 MiB by
   * default; 0: no limit), so that an endpoint that stops reading cannot
   * make the relay's memory grow without bound. While more than this
   * waits, broadcasts for it are coalesced: the latest one of each group
   * is kept and sent once there is room, the older ones are never sent,
   * and counted and announced by [signal@Tlspyo.Relay::object-dropped].
   * One object always goes when nothing waits, however large. Produced
   * objects are not held back: an endpoint only gets as many as its
   * credit ([method@Tlspyo.Endpoint.notify_ready]), or what is queued for
   * a notify of -1, and [property@Tlspyo.Relay:max-in-flight-bytes]
   * allow, so their memory is bounded by those.
   * Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_OUTPUT_BYTES] =
    g_param_spec_uint64 ("max-output-bytes", NULL, NULL, 0, G_MAXUINT64,
                         DEFAULT_MAX_OUTPUT_BYTES,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:session-timeout:
   *
   * How long, in seconds, the relay keeps the produced objects an endpoint
   * had not taken yet when its connection was lost (a fault, not
   * [method@Tlspyo.Endpoint.stop]), waiting for the endpoint to come back
   * (30 by default). They still count as in flight. If it comes back in
   * time, it gets them again and nothing is handed out twice (the objects
   * its application took meanwhile stay taken); after the timeout they go
   * back to the head of their group's queue for other consumers. 0 gives
   * them back at once: a consumer that was cut off then gets none of them
   * again, but an object its application took just as the connection was
   * lost may be handed out a second time. Read by
   * [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_SESSION_TIMEOUT] =
    g_param_spec_double ("session-timeout", NULL, NULL, 0.0, 86400.0,
                         DEFAULT_SESSION_TIMEOUT,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /* Limits (issue 6). docs/security.md says which attack each one bounds. */

  /**
   * TlspyoRelay:max-connections:
   *
   * How many connections the relay holds at once, authenticated or not. A
   * connection over the limit is refused with %TLSPYO_ERROR_LIMIT, and the
   * others are not affected. 0: no limit. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_CONNECTIONS] =
    g_param_spec_uint ("max-connections", NULL, NULL, 0, G_MAXUINT, DEFAULT_MAX_CONNECTIONS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-connections-per-address:
   *
   * How many connections one source address may hold at once (for IPv6,
   * one /64 network). Over it, the new connection is refused with
   * %TLSPYO_ERROR_LIMIT. 0: no limit. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_CONNECTIONS_PER_ADDRESS] =
    g_param_spec_uint ("max-connections-per-address", NULL, NULL, 0, G_MAXUINT,
                       DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-auth-failures:
   *
   * Failed authentications from one source address (for IPv6, one /64)
   * after which the relay refuses every new connection from it, with
   * %TLSPYO_ERROR_LIMIT, for [property@Tlspyo.Relay:auth-block-time]. A
   * failure is forgotten that long after the last one. 0: never refuse
   * (the delay of [property@Tlspyo.Relay:auth-failure-delay] still applies).
   * Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_AUTH_FAILURES] =
    g_param_spec_uint ("max-auth-failures", NULL, NULL, 0, G_MAXUINT, DEFAULT_MAX_AUTH_FAILURES,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:auth-block-time:
   *
   * Seconds an address is refused once it reached
   * [property@Tlspyo.Relay:max-auth-failures], and after which its failed
   * authentications are forgotten. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_AUTH_BLOCK_TIME] =
    g_param_spec_uint ("auth-block-time", NULL, NULL, 1, 7 * 86400, DEFAULT_AUTH_BLOCK_TIME,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:auth-failure-delay:
   *
   * Milliseconds the relay waits before it answers a failed
   * authentication, doubled for each earlier failure from the same
   * address (up to 5 s, and half the
   * [property@Tlspyo.Relay:handshake-timeout]): guessing passwords is slow
   * even over many connections. A successful one is never delayed. 0: no
   * delay. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_AUTH_FAILURE_DELAY] =
    g_param_spec_uint ("auth-failure-delay", NULL, NULL, 0, MAX_AUTH_FAILURE_DELAY,
                       DEFAULT_AUTH_FAILURE_DELAY,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-groups-per-endpoint:
   *
   * How many groups one endpoint may join. An endpoint that asks for more
   * is refused with %TLSPYO_ERROR_LIMIT. 0: no limit (the handshake's
   * 4 KiB metadata still bounds the list). Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_GROUPS_PER_ENDPOINT] =
    g_param_spec_uint ("max-groups-per-endpoint", NULL, NULL, 0, G_MAXUINT,
                       DEFAULT_MAX_GROUPS_PER_ENDPOINT,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-queued-bytes:
   *
   * How many bytes of produced objects one group's queue may hold (an
   * object queued many times in a row counts once). A produced object that
   * does not fit is dropped and its sender told, with
   * [signal@Tlspyo.Endpoint::action-refused] and %TLSPYO_ERROR_LIMIT; an
   * object always fits an empty queue. 0: no limit. Read by
   * [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_QUEUED_BYTES] =
    g_param_spec_uint64 ("max-queued-bytes", NULL, NULL, 0, G_MAXUINT64, DEFAULT_MAX_QUEUED_BYTES,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:max-in-flight-bytes:
   *
   * How many bytes of produced objects one endpoint may hold in flight in
   * one group (256 MiB by default): objects the relay handed to it whose
   * application has not taken them yet, which the relay keeps until then.
   * Each object counts its size plus 64 bytes. Without this bound, an
   * endpoint that announces a huge credit
   * ([method@Tlspyo.Endpoint.notify_ready]) and never takes anything would
   * move the whole group's production out of the queue, where
   * [property@Tlspyo.Relay:max-queued-bytes] bounds it, into memory held
   * for it alone. At the bound the endpoint keeps its credit but is handed
   * nothing more until its application takes objects; meanwhile the other
   * endpoints with credit are served. An endpoint with nothing in flight
   * always gets one object, however large. A notify of -1 is bounded
   * too: it hands out what is queued until the bound, and the rest stays
   * queued. 0: no limit. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_MAX_IN_FLIGHT_BYTES] =
    g_param_spec_uint64 ("max-in-flight-bytes", NULL, NULL, 0, G_MAXUINT64,
                         DEFAULT_MAX_IN_FLIGHT_BYTES,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:client-certificates-dir:
   *
   * A folder of endpoint certificates, one `USER.pem` file each (an
   * endpoint's `certificate.pem`, as [func@Tlspyo.credentials_generate]
   * makes it, renamed after its user). When set, the relay requires mutual
   * TLS: an endpoint must show one of these certificates in the TLS
   * handshake, and then authenticate as the user it belongs to (its
   * [property@Tlspyo.Endpoint:user] and that user's password). Needs TLS.
   * %NULL (the default): endpoints show no certificate. Read by
   * [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_CLIENT_CERTIFICATES_DIR] =
    g_param_spec_string ("client-certificates-dir", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * TlspyoRelay:state-directory:
   *
   * A folder where the relay keeps its state on disk, so that a relay that
   * is killed or restarted loses nothing it acknowledged: the produced
   * objects queued and in flight, the latest broadcast of each group, and
   * the endpoint sessions that tell resent objects from new ones, in an
   * SQLite database, `relay.db`. The folder is created, private to the
   * relay's user (mode 0700), if it is missing. The state survives the
   * process being killed (SIGKILL, a crash); a power loss or an operating
   * system crash may lose its last changes, never corrupt it.
   *
   * The relay commits its changes once per batch of work (not per object)
   * and sends nothing, acknowledgements included, before the changes made
   * before it are committed. Objects that were in flight to an endpoint
   * session when the relay stopped or died wait
   * [property@Tlspyo.Relay:session-timeout] seconds from the restart for
   * the endpoint to come back. If a commit fails (a full disk, an I/O
   * error), the relay logs a warning, closes every connection with
   * %TLSPYO_ERROR_FAILED (its reason, in
   * [signal@Tlspyo.Relay::endpoint-refused], names the folder and the
   * cause) and serves nothing more until it is stopped; started again, it
   * goes on from the state committed last. It stores every copy of a
   * produced object (the relay takes at most 65536 copies of one). See the
   * "Durable relay" section of docs/protocol.md.
   *
   * One relay at a time may use a folder: [method@Tlspyo.Relay.start]
   * fails with %TLSPYO_ERROR_FAILED while another relay, in this process or
   * another, holds it, or when the database is damaged or was written by a
   * newer version; with %TLSPYO_ERROR_INVALID_ARGUMENT when the folder
   * cannot be used (a file, or not writable). The error names the path and
   * says what to do.
   *
   * %NULL (the default): the relay keeps its state in memory only, and loses
   * it when it stops. Read by [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  properties[PROP_STATE_DIRECTORY] =
    g_param_spec_string ("state-directory", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * TlspyoRelay::endpoint-connected:
   * @self: the relay
   * @address: the endpoint's address and port
   * @groups: the groups it joined
   *
   * An endpoint authenticated and joined its groups.
   *
   * Since: 0.1
   */
  signals[SIGNAL_ENDPOINT_CONNECTED] =
    g_signal_new ("endpoint-connected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRV);

  /**
   * TlspyoRelay::endpoint-disconnected:
   * @self: the relay
   * @address: the endpoint's address and port
   *
   * A joined endpoint's connection ended.
   *
   * Since: 0.1
   */
  signals[SIGNAL_ENDPOINT_DISCONNECTED] =
    g_signal_new ("endpoint-disconnected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  /**
   * TlspyoRelay::endpoint-refused:
   * @self: the relay
   * @address: the peer's address and port
   * @code: a [error@Tlspyo.Error] code: why it was refused
   * @reason: the reason, in words
   *
   * A connection was refused or dropped before it joined: wrong password,
   * refused group, malformed data, TLS failure or handshake timeout.
   *
   * It is also emitted, just before [signal@Tlspyo.Relay::endpoint-disconnected],
   * when the relay drops an endpoint that had joined because of what it
   * sent: a malformed or truncated frame, or an object larger than
   * [property@Tlspyo.Relay:max-object-size] (code %TLSPYO_ERROR_PROTOCOL).
   * An endpoint that leaves or loses its connection is not refused.
   *
   * Since: 0.1
   */
  signals[SIGNAL_ENDPOINT_REFUSED] =
    g_signal_new ("endpoint-refused", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, TLSPYO_TYPE_ERROR,
                  G_TYPE_STRING);

  /**
   * TlspyoRelay::object-dropped:
   * @self: the relay
   * @group: the group the objects were for
   * @reason: why, in words
   * @count: how many objects were dropped
   *
   * The relay discarded objects: sent to a group it does not accept,
   * pushed out of a full queue (the oldest first) by the group's
   * `max_consumables` (see [method@Tlspyo.Relay.accept_group]), or
   * broadcasts coalesced for an endpoint that reads too slowly (see
   * [property@Tlspyo.Relay:max-output-bytes]; reported once they are
   * replaced and the connection has room again or ends). One
   * emission may stand for many objects, as when one produce of many
   * copies overflows a queue. Every object is also counted in the
   * `dropped` entry of [method@Tlspyo.Relay.get_stats].
   *
   * Emitted on the thread-default main context of the thread that called
   * [method@Tlspyo.Relay.start].
   *
   * Since: 0.1
   */
  signals[SIGNAL_OBJECT_DROPPED] =
    g_signal_new ("object-dropped", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING,
                  G_TYPE_UINT64);
}

/**
 * tlspyo_relay_new:
 * @port: the TCP port to listen on, or 0 to let the system pick one
 * @password: the shared password
 *
 * Creates a relay. It does nothing until [method@Tlspyo.Relay.start].
 *
 * Returns: (transfer full): a new relay
 *
 * Since: 0.1
 */
TlspyoRelay *
tlspyo_relay_new (guint       port,
                  const char *password)
{
  return g_object_new (TLSPYO_TYPE_RELAY, "port", port, "password", password, NULL);
}

/**
 * tlspyo_relay_accept_group:
 * @self: a relay
 * @group: a group name
 * @max_count: how many endpoints may be in the group at once, or -1 for no limit
 * @max_consumables: how many produced objects the group's queue holds, or -1
 *   for no limit; when the queue is full the oldest object is dropped
 *
 * Declares a group the relay accepts. As soon as one group is declared, only
 * declared groups are: an endpoint that asks for another is refused with
 * %TLSPYO_ERROR_GROUP_REFUSED, and objects sent to another are dropped.
 * Declaring a group again changes its limits.
 *
 * Since: 0.1
 */
void
tlspyo_relay_accept_group (TlspyoRelay *self,
                           const char  *group,
                           int          max_count,
                           int          max_consumables)
{
  GroupRule rule;
  RelayCore *core;

  g_return_if_fail (TLSPYO_IS_RELAY (self));
  g_return_if_fail (tlspyo_group_name_check (group, NULL));

  rule.group = g_strdup (group);
  rule.max_count = max_count < 0 ? -1 : max_count;
  rule.max_consumables = max_consumables < 0 ? -1 : max_consumables;

  g_mutex_lock (&self->mutex);
  g_array_append_val (self->rules, rule);
  core = self->core ? tlspyo_relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);

  if (core != NULL)
    {
      RuleCall *call = g_new0 (RuleCall, 1);

      call->core = core;
      call->rule.group = g_strdup (group);
      call->rule.max_count = rule.max_count;
      call->rule.max_consumables = rule.max_consumables;
      tlspyo_worker_invoke_sync (self->worker, core_accept_group_cb, call);
      rule_call_free (call);
    }
}

/**
 * tlspyo_relay_start:
 * @self: a relay
 * @error: return location for a #GError
 *
 * Starts listening. Fails when the port cannot be bound, when no password
 * is set, or with TLS when the key or certificate is missing or unreadable,
 * or the TLS backend (glib-networking) is not installed; the error says what
 * to do. Starting a running relay does nothing.
 *
 * Returns: %TRUE if the relay is listening
 *
 * Since: 0.1
 */
gboolean
tlspyo_relay_start (TlspyoRelay  *self,
                    GError      **error)
{
  g_autoptr(GTlsCertificate) certificate = NULL;
  RelayCore *core;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_mutex_lock (&self->mutex);
  if (self->core != NULL)
    {
      g_mutex_unlock (&self->mutex);
      return TRUE;
    }
  if (self->secret == NULL && g_hash_table_size (self->users) == 0)
    {
      g_mutex_unlock (&self->mutex);
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The relay has no password and no user: set its password "
                           "property, or add users with tlspyo_relay_add_user()");
      return FALSE;
    }
  if (self->security == TLSPYO_SECURITY_TLS)
    {
      if (!tlspyo_tls_check_backend (error))
        {
          g_mutex_unlock (&self->mutex);
          return FALSE;
        }
      if (self->certificate != NULL)
        {
          g_autofree char *key_pem = NULL;
          g_autoptr(GByteArray) key_der = NULL;

          g_object_get (self->certificate, "private-key-pem", &key_pem, "private-key", &key_der, NULL);
          if (key_pem == NULL && key_der == NULL)
            {
              g_mutex_unlock (&self->mutex);
              g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                                   "The relay's certificate property has no private key: load "
                                   "it with g_tls_certificate_new_from_files (certificate, key)");
              return FALSE;
            }
          certificate = g_object_ref (self->certificate);
        }
      else
        {
          certificate = tlspyo_credentials_load_certificate (self->credentials_dir, TRUE, error);
          if (certificate == NULL)
            {
              g_mutex_unlock (&self->mutex);
              return FALSE;
            }
        }
    }

  core = g_new0 (RelayCore, 1);
  g_atomic_ref_count_init (&core->ref_count);
  g_weak_ref_init (&core->relay, self);
  core->owner_context = g_main_context_ref_thread_default ();
  core->peers = g_hash_table_new_full (NULL, NULL, (GDestroyNotify) tlspyo_relay_peer_free, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (core->produced_meta); i++)
    core->produced_meta[i] = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                    (GDestroyNotify) g_bytes_unref);
  core->sessions = g_hash_table_new_full (tlspyo_relay_session_id_hash,
                                          tlspyo_relay_session_id_equal, NULL,
                                          (GDestroyNotify) tlspyo_relay_session_unref);
  core->router = tlspyo_router_new (tlspyo_relay_router_deliver_cb, tlspyo_relay_router_drop, core);
  tlspyo_router_set_max_in_flight_bytes (core->router, self->limits.max_in_flight_bytes);
  core->certificate = g_steal_pointer (&certificate);
  core->max_object_size = self->max_object_size;
  core->handshake_timeout = self->handshake_timeout;
  core->keepalive_interval = self->keepalive_interval;
  core->max_output_bytes = self->max_output_bytes;
  core->session_timeout = self->session_timeout;
  core->iterations = TLSPYO_AUTH_DEFAULT_ITERATIONS;
  core->address = g_strdup (self->address);
  core->port = self->port;
  core->no_listen = self->no_listen;
  core->limits = self->limits;
  core->addresses = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  core->has_password = self->secret != NULL;
  core->users = tlspyo_relay_user_table_new ();
  {
    GHashTableIter iter;
    RelayUser *user;

    g_hash_table_iter_init (&iter, self->users);
    while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &user))
      {
        RelayUser *copy = tlspyo_relay_user_copy (user);
        g_hash_table_insert (core->users, copy->name, copy);
      }
  }
  if (self->client_certificates_dir != NULL)
    {
      if (core->certificate == NULL)
        {
          g_mutex_unlock (&self->mutex);
          tlspyo_relay_core_unref (core);
          g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                               "Client certificates need TLS: set the relay's security to "
                               "TLS, or unset client-certificates-dir");
          return FALSE;
        }
      core->client_certificates =
        tlspyo_tls_load_client_certificates (self->client_certificates_dir,
                                             &core->client_certificate_users, error);
      if (core->client_certificates == NULL)
        {
          g_mutex_unlock (&self->mutex);
          tlspyo_relay_core_unref (core);
          return FALSE;
        }
    }
  tlspyo_auth_random (core->unknown_user_secret, sizeof core->unknown_user_secret);
  tlspyo_auth_random (core->salt, sizeof core->salt);
  if (self->secret != NULL &&
      !tlspyo_auth_secret_get_key (self->secret, core->salt, sizeof core->salt,
                                   core->iterations, core->key, error))
    {
      g_mutex_unlock (&self->mutex);
      tlspyo_relay_core_unref (core);
      return FALSE;
    }
  for (guint i = 0; i < self->rules->len; i++)
    {
      GroupRule *rule = &g_array_index (self->rules, GroupRule, i);
      tlspyo_router_accept_group (core->router, rule->group, rule->max_count,
                                  rule->max_consumables);
    }
  /* Opened here, so that a folder another relay holds, or that cannot be
   * used, fails start() before the port is bound. */
  if (self->state_directory != NULL)
    {
      core->state_directory = g_strdup (self->state_directory);
      core->dirty_sessions = g_hash_table_new_full (NULL, NULL,
                                                    (GDestroyNotify) tlspyo_relay_session_unref, NULL);
      core->store = tlspyo_store_open (self->state_directory, error);
      if (core->store == NULL || !tlspyo_relay_core_restore (core, error))
        {
          g_mutex_unlock (&self->mutex);
          tlspyo_relay_core_unref (core);
          return FALSE;
        }
    }
  g_mutex_unlock (&self->mutex);

  self->worker = tlspyo_worker_get ();
  tlspyo_worker_invoke_sync (self->worker, tlspyo_relay_core_start_cb, core);

  if (core->start_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&core->start_error));
      tlspyo_relay_core_unref (core);
      tlspyo_worker_release (g_steal_pointer (&self->worker));
      return FALSE;
    }

  g_mutex_lock (&self->mutex);
  self->core = core;
  self->port = core->bound_port;
  g_mutex_unlock (&self->mutex);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PORT]);
  g_debug ("Relay listening on %s port %u (%s)",
             core->address ? core->address : "every interface", core->bound_port,
             core->certificate ? "TLS" : "plain TCP");
  return TRUE;
}

/**
 * tlspyo_relay_stop:
 * @self: a relay
 *
 * Closes every connection and releases the port. The relay can be started
 * again. Stopping a relay that is not running does nothing.
 *
 * Since: 0.1
 */
void
tlspyo_relay_stop (TlspyoRelay *self)
{
  RelayCore *core;
  TlspyoWorker *worker;

  g_return_if_fail (TLSPYO_IS_RELAY (self));

  g_mutex_lock (&self->mutex);
  core = g_steal_pointer (&self->core);
  worker = g_steal_pointer (&self->worker);
  g_mutex_unlock (&self->mutex);

  if (core == NULL)
    return;

  /* The worker takes the core's last reference. */
  tlspyo_worker_invoke_sync (worker, tlspyo_relay_core_stop_cb, core);
  tlspyo_worker_release (worker);
}

/**
 * tlspyo_relay_get_port:
 * @self: a relay
 *
 * Gets the port of [property@Tlspyo.Relay:port].
 *
 * Returns: the port: after [method@Tlspyo.Relay.start], the one bound
 *
 * Since: 0.1
 */
guint
tlspyo_relay_get_port (TlspyoRelay *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), 0);
  locker = g_mutex_locker_new (&self->mutex);
  return self->port;
}

/**
 * tlspyo_relay_get_security:
 * @self: a relay
 *
 * Gets [property@Tlspyo.Relay:security].
 *
 * Returns: whether the relay uses TLS
 *
 * Since: 0.1
 */
TlspyoSecurity
tlspyo_relay_get_security (TlspyoRelay *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), TLSPYO_SECURITY_TLS);
  locker = g_mutex_locker_new (&self->mutex);
  return self->security;
}

/**
 * tlspyo_relay_get_n_connections:
 * @self: a relay
 *
 * Counts the endpoints connected to the relay.
 *
 * Returns: how many endpoints are connected and joined right now
 *
 * Since: 0.1
 */
guint
tlspyo_relay_get_n_connections (TlspyoRelay *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), 0);
  locker = g_mutex_locker_new (&self->mutex);
  return self->core ? (guint) g_atomic_int_get (&self->core->n_joined) : 0;
}

/**
 * tlspyo_relay_get_stats:
 * @self: a relay
 *
 * Takes a snapshot of what the relay holds and has done, for monitoring.
 * Thread-safe: the relay's worker computes it, so it is consistent.
 *
 * The result is a `a{sv}` dictionary with these keys (more may be added):
 *
 * - `groups` (`a{sa{sv}}`): per group, a dictionary of
 *   - `members` (`u`): endpoints joined to it,
 *   - `queued` (`t`): produced objects waiting in its queue,
 *   - `queued-bytes` (`t`): their size, each distinct object once,
 *   - `in-flight` (`t`): produced objects handed to consumers whose
 *     application has not taken them yet; they go back to the queue if
 *     the consumer's connection ends first,
 *   - `credit` (`t`): objects its consumers are ready for, all together,
 *   - `dropped` (`t`): objects discarded since the relay started (see
 *     [signal@Tlspyo.Relay::object-dropped]),
 *   - `has-latest` (`b`): whether it holds a broadcast for newcomers;
 * - `connections` (`aa{sv}`): per connection (joined or still
 *   authenticating), `address` (`s`), `joined` (`b`), `bytes-in` and
 *   `bytes-out` (`t`, on the wire, TLS included), `queued-bytes` (`t`:
 *   bytes waiting to be written to it, which grows when the endpoint
 *   reads slower than the relay sends, up to about
 *   [property@Tlspyo.Relay:max-output-bytes]), `held-bytes` (`t`: the
 *   latest broadcasts held back meanwhile, one per group) and `coalesced`
 *   (`t`: broadcasts it never got because newer ones replaced them);
 * - totals: `n-connections` (`u`, joined endpoints), `bytes-in`,
 *   `bytes-out` and `queued-bytes` (`t`, over the connections), `queued`,
 *   `produced-bytes`, `in-flight` and `dropped` (`t`, over the groups:
 *   `produced-bytes` is the sum of their `queued-bytes`), `duplicates`
 *   (`t`: objects endpoints sent again after a lost connection, skipped).
 *
 * Before [method@Tlspyo.Relay.start] and after [method@Tlspyo.Relay.stop],
 * the dictionary has the same keys, with no group, no connection and
 * zeros.
 *
 * Returns: (transfer floating): the statistics, a `a{sv}` #GVariant
 *
 * Since: 0.1
 */
GVariant *
tlspyo_relay_get_stats (TlspyoRelay *self)
{
  StatsCall call = { NULL, NULL };

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), NULL);

  g_mutex_lock (&self->mutex);
  call.core = self->core ? tlspyo_relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);

  if (call.core == NULL)
    return g_variant_new_parsed ("{'groups': <@a{sa{sv}} {}>, 'connections': <@aa{sv} []>, "
                                 "'n-connections': <%u>, 'bytes-in': <%t>, 'bytes-out': <%t>, "
                                 "'queued-bytes': <%t>, 'queued': <%t>, 'produced-bytes': <%t>, "
                                 "'in-flight': <%t>, 'dropped': <%t>, 'duplicates': <%t>}",
                                 0u, (guint64) 0, (guint64) 0, (guint64) 0, (guint64) 0,
                                 (guint64) 0, (guint64) 0, (guint64) 0, (guint64) 0);
  tlspyo_worker_invoke_sync (self->worker, tlspyo_relay_core_stats_cb, &call);
  tlspyo_relay_core_unref (call.core);
  return call.stats;
}

/* Private: tests and fuzzing drive the protocol over any stream. */

void
tlspyo_relay_set_listening (TlspyoRelay *self,
                            gboolean     listening)
{
  g_return_if_fail (TLSPYO_IS_RELAY (self));

  g_mutex_lock (&self->mutex);
  self->no_listen = !listening;
  g_mutex_unlock (&self->mutex);
}

typedef struct {
  RelayCore *core;
  GIOStream *stream;
  char      *address;
  guint      n_peers;
} StreamCall;

static gboolean
core_accept_stream_cb (gpointer data)
{
  StreamCall *call = data;

  if (!call->core->stopped)
    tlspyo_relay_core_add_peer (call->core, call->stream, NULL, call->address, call->address);
  return G_SOURCE_REMOVE;
}

void
tlspyo_relay_accept_stream (TlspyoRelay *self,
                            GIOStream   *stream,
                            const char  *address)
{
  StreamCall call = { NULL, stream, (char *) address, 0 };

  g_return_if_fail (TLSPYO_IS_RELAY (self));
  g_return_if_fail (G_IS_IO_STREAM (stream));
  g_return_if_fail (address != NULL);

  g_mutex_lock (&self->mutex);
  call.core = self->core ? tlspyo_relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);
  g_return_if_fail (call.core != NULL);

  tlspyo_worker_invoke_sync (self->worker, core_accept_stream_cb, &call);
  tlspyo_relay_core_unref (call.core);
}

static gboolean
core_count_peers_cb (gpointer data)
{
  StreamCall *call = data;

  call->n_peers = g_hash_table_size (call->core->peers);
  return G_SOURCE_REMOVE;
}

guint
tlspyo_relay_get_n_peers (TlspyoRelay *self)
{
  StreamCall call = { NULL, NULL, NULL, 0 };

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), 0);

  g_mutex_lock (&self->mutex);
  call.core = self->core ? tlspyo_relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);
  if (call.core == NULL)
    return 0;

  tlspyo_worker_invoke_sync (self->worker, core_count_peers_cb, &call);
  tlspyo_relay_core_unref (call.core);
  return call.n_peers;
}
