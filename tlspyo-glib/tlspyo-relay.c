/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay.h"
#include "tlspyo-relay-private.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-connection-private.h"
#include "tlspyo-credentials.h"
#include "tlspyo-enums.h"
#include "tlspyo-error.h"
#include "tlspyo-keepalive-private.h"
#include "tlspyo-router-private.h"
#include "tlspyo-store-private.h"
#include "tlspyo-tls-private.h"
#include "tlspyo-worker-private.h"

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

#define DEFAULT_PORT 2096
#define DEFAULT_HANDSHAKE_TIMEOUT 10
#define DEFAULT_KEEPALIVE_INTERVAL 15.0
#define DEFAULT_MAX_OUTPUT_BYTES ((guint64) 64 * 1024 * 1024)
#define DEFAULT_SESSION_TIMEOUT 30.0
/* How often a connection over max-output-bytes is checked for room. */
#define OUTPUT_DRAIN_CHECK_MS 20

/* Copies of one produced object a durable relay takes in one frame. */
#define DURABLE_MAX_COPIES                  65536

/* Limits against hostile peers (issue 6, docs/security.md), with defaults
 * safe for a relay on the Internet. */
#define DEFAULT_MAX_CONNECTIONS             1024
#define DEFAULT_MAX_CONNECTIONS_PER_ADDRESS 64
#define DEFAULT_MAX_AUTH_FAILURES           10
#define DEFAULT_AUTH_BLOCK_TIME             600   /* seconds */
#define DEFAULT_AUTH_FAILURE_DELAY          100   /* milliseconds, doubled per failure */
#define MAX_AUTH_FAILURE_DELAY              5000  /* milliseconds */
#define DEFAULT_MAX_GROUPS_PER_ENDPOINT     64
#define DEFAULT_MAX_QUEUED_BYTES            ((guint64) 1024 * 1024 * 1024)
/* Connections held past a limit only to tell the peer why they are
 * refused; beyond these, one over a limit is closed without a word. */
#define MAX_REFUSING                        64
/* Log lines about refusals per second; the others are counted. */
#define REFUSAL_LOG_BURST                   20

/* 0 means no limit, except for the times. */
typedef struct {
  guint   max_connections;
  guint   max_connections_per_address;
  guint   max_auth_failures;
  guint   auth_block_time;
  guint   auth_failure_delay;
  guint   max_groups_per_endpoint;
  guint64 max_queued_bytes;
} RelayLimits;

typedef struct _RelayCore RelayCore;

typedef struct {
  char *group;
  int   max_count;
  int   max_consumables;
} GroupRule;

/* Issue 6: a named user, with the key of its password hash and its rights
 * per group. The relay keeps one table, the worker a copy of it; peers hold
 * a reference to the worker's entry, so a grant reaches connected
 * endpoints at once. */
typedef struct {
  gatomicrefcount  ref_count;
  char            *name;
  guint8           salt[TLSPYO_AUTH_SALT_SIZE];
  gsize            salt_len;
  guint            iterations;
  guint8           key[TLSPYO_AUTH_KEY_SIZE];
  TlspyoRights     every_group;  /* granted with a NULL group */
  GHashTable      *groups;       /* group -> TlspyoRights, as a pointer */
} RelayUser;

static RelayUser *
relay_user_new (const char *name)
{
  RelayUser *user = g_new0 (RelayUser, 1);

  g_atomic_ref_count_init (&user->ref_count);
  user->name = g_strdup (name);
  user->groups = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return user;
}

static RelayUser *
relay_user_ref (RelayUser *user)
{
  g_atomic_ref_count_inc (&user->ref_count);
  return user;
}

static void
relay_user_unref (RelayUser *user)
{
  if (!g_atomic_ref_count_dec (&user->ref_count))
    return;
  tlspyo_auth_wipe (user->key, sizeof user->key);
  g_hash_table_unref (user->groups);
  g_free (user->name);
  g_free (user);
}

/* Makes @dest say what @src says (name aside). */
static void
relay_user_assign (RelayUser *dest,
                   RelayUser *src)
{
  GHashTableIter iter;
  gpointer group, rights;

  memcpy (dest->salt, src->salt, sizeof dest->salt);
  dest->salt_len = src->salt_len;
  dest->iterations = src->iterations;
  memcpy (dest->key, src->key, sizeof dest->key);
  dest->every_group = src->every_group;
  g_hash_table_remove_all (dest->groups);
  g_hash_table_iter_init (&iter, src->groups);
  while (g_hash_table_iter_next (&iter, &group, &rights))
    g_hash_table_insert (dest->groups, g_strdup (group), rights);
}

static RelayUser *
relay_user_copy (RelayUser *user)
{
  RelayUser *copy = relay_user_new (user->name);

  relay_user_assign (copy, user);
  return copy;
}

static TlspyoRights
relay_user_rights (RelayUser  *user,
                   const char *group)
{
  return user->every_group |
         (TlspyoRights) GPOINTER_TO_UINT (g_hash_table_lookup (user->groups, group));
}

static GHashTable *
user_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                (GDestroyNotify) relay_user_unref);
}

struct _TlspyoRelay {
  GObject           parent_instance;

  GMutex            mutex;
  guint             port;
  char             *address;
  TlspyoAuthSecret *secret;
  TlspyoSecurity    security;
  char             *credentials_dir;
  GTlsCertificate  *certificate;
  guint64           max_object_size;
  guint             handshake_timeout;
  double            keepalive_interval;
  guint64           max_output_bytes;
  double            session_timeout;
  GArray           *rules;  /* of GroupRule */
  gboolean          no_listen;  /* tlspyo_relay_set_listening() */
  RelayLimits       limits;
  GHashTable       *users;  /* name -> RelayUser */
  char             *client_certificates_dir;
  char             *state_directory;  /* issue 5: NULL keeps state in memory */

  TlspyoWorker     *worker;
  RelayCore        *core;
};

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
  N_PROPS
};

enum {
  SIGNAL_ENDPOINT_CONNECTED,
  SIGNAL_ENDPOINT_DISCONNECTED,
  SIGNAL_ENDPOINT_REFUSED,
  SIGNAL_OBJECT_DROPPED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* The worker side. Everything below until the GObject part runs on the
 * worker thread only. */

typedef enum {
  PEER_TLS_HANDSHAKE,
  PEER_AWAIT_HELLO,
  PEER_AWAIT_AUTH,
  PEER_JOINED,
} PeerState;

typedef struct _RelayPeer {
  RelayCore         *core;
  PeerState          state;
  gboolean           refused;
  char              *address;
  GIOStream         *stream;
  GCancellable      *cancellable;
  TlspyoConnection  *conn;
  GSource           *handshake_timer;
  GSource           *peek_source;  /* waits for the first byte, with TLS */
  gboolean           tls_missing;  /* a plain-TCP endpoint facing a TLS relay */
  TlspyoRouterPeer  *router_peer;
  GPtrArray         *early;  /* deliveries made while joining, sent after WELCOME */
  guint8             endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint8             relay_nonce[TLSPYO_AUTH_NONCE_SIZE];
  guint64            handled;
  guint64            acked;
  TlspyoKeepalive    keepalive;
  struct _RelaySession *session;  /* issue 5: NULL until SESSION, or without one */
  guint64            next_seq;     /* of the next sequenced frame on this connection */
  gboolean           said_bye;     /* left on purpose: nothing of it is parked */
  /* The latest broadcasts due on joining (in early) wait for SESSION, which
   * says which of them the endpoint has seen already. */
  gboolean           early_held;
  /* Issue 5, bounded memory: while the connection is over max-output-bytes,
   * each group's latest broadcast waits here instead, replacing older
   * ones, until drain_timer finds room. */
  GHashTable        *held;         /* group -> HeldBroadcast, or NULL */
  GSource           *drain_timer;
  guint64            n_coalesced;

  /* Limits */
  char              *address_key;  /* what per-address limits count by */
  gboolean           counted;      /* against the connection limits */
  char              *over_limit;   /* refused at HELLO, for this reason */
  GSource           *delay_timer;  /* delays the answer to a failed authentication */

  /* Users */
  RelayUser         *user;  /* NULL: the shared password, every right */
  char              *user_name;  /* as the endpoint gave it, known or not */
  char              *certificate_user;  /* whose client certificate it showed */
  guint8             key[TLSPYO_AUTH_KEY_SIZE];  /* the password's, for this handshake */
} RelayPeer;

typedef struct {
  char    *group;
  GBytes  *object;
  guint64  seq;
} EarlyDelivery;

struct _RelayCore {
  gatomicrefcount  ref_count;
  GWeakRef         relay;
  GMainContext    *owner_context;
  GSocketService  *service;
  TlspyoRouter    *router;
  GTlsCertificate *certificate;
  guint8           key[TLSPYO_AUTH_KEY_SIZE];
  guint8           salt[TLSPYO_AUTH_SALT_SIZE];
  guint            iterations;
  guint64          max_object_size;
  guint            handshake_timeout;
  double           keepalive_interval;
  guint64          max_output_bytes;
  double           session_timeout;
  GHashTable      *peers;
  GHashTable      *deliver_meta;  /* cache key -> serialized PRODUCED metadata */
  /* The DELIVER metadata of the broadcast being delivered, built once for
   * all its recipients. */
  char            *broadcast_group;
  guint64          broadcast_seq;
  GBytes          *broadcast_meta;
  GHashTable      *sessions;      /* session id -> RelaySession (issue 5) */
  GQueue           sessions_lru;  /* of RelaySession, most recently used first */
  guint64          n_duplicates;  /* frames skipped as already handled */
  gint             n_joined;  /* read from other threads */
  gboolean         stopped;
  gboolean         no_listen;
  TlspyoStore     *store;  /* with a state-directory; closed by core_stop_cb() */
  /* The durable relay (issue 5, item 4), with a store only: the router's
   * journal writes into the store's open transaction; commit_source
   * commits it at the end of the dispatch; until then the gate holds
   * every connection's output. */
  TlspyoWriteGate *gate;
  GSource         *commit_source;
  GHashTable      *dirty_sessions;  /* RelaySession set, a reference each */
  gboolean         next_id_dirty;
  guint64          next_id;
  gboolean         store_failed;    /* a commit failed: the relay serves no more */
  char            *state_directory;

  /* Limits */
  RelayLimits      limits;
  GHashTable      *addresses;  /* address key -> AddressState */
  guint            n_counted;
  guint            n_refusing;
  gint64           log_window;
  guint            log_count;
  guint            log_suppressed;

  /* Users */
  gboolean         has_password;
  GHashTable      *users;  /* name -> RelayUser, the worker's copies */
  guint8           unknown_user_secret[32];  /* salts for names no user has */
  GPtrArray       *client_certificates;      /* of GTlsCertificate, or NULL */
  GPtrArray       *client_certificate_users; /* their users' names */

  /* start() arguments and results */
  char            *address;
  guint            port;
  guint            bound_port;
  GError          *start_error;
};

/* Issue 5: per endpoint session, the sequenced frames the relay handled,
 * so that what an endpoint sends again after a lost connection is not
 * handled twice. Bounded: past MAX_SESSIONS the least recently seen one
 * is forgotten (a peer still connected keeps using its record). */
#define MAX_SESSIONS 4096

typedef struct _RelaySession {
  guint                ref_count;  /* the table's and each peer's; worker thread only */
  guint8               id[TLSPYO_SESSION_ID_SIZE];
  guint64              next;       /* every sequenced frame numbered below was handled */
  GList                lru_link;   /* in RelayCore.sessions_lru while in the table */
  RelayCore           *core;
  TlspyoRouterSession *routing;    /* counts, and objects parked while it is away */
  struct _RelayPeer   *peer;       /* its connection now, or NULL */
  GSource             *park_timer; /* session-timeout, while objects are parked */
  gboolean             evicted;    /* out of the table: the store forgot it */
} RelaySession;

static RelaySession *
relay_session_ref (RelaySession *session)
{
  session->ref_count++;
  return session;
}

static void
relay_session_stop_timer (RelaySession *session)
{
  if (session->park_timer != NULL)
    {
      g_source_destroy (session->park_timer);
      g_clear_pointer (&session->park_timer, g_source_unref);
    }
}

/* Forgotten (evicted, or the relay ends): what it had parked goes back to
 * the queues. */
static void
relay_session_unref (RelaySession *session)
{
  if (--session->ref_count > 0)
    return;
  relay_session_stop_timer (session);
  tlspyo_router_session_free (session->core->router, session->routing);
  g_free (session);
}

/* Session ids are random: any 4 of their bytes hash well. */
static guint
session_id_hash (gconstpointer key)
{
  guint h;

  memcpy (&h, key, sizeof h);
  return h;
}

static gboolean
session_id_equal (gconstpointer a,
                  gconstpointer b)
{
  return memcmp (a, b, TLSPYO_SESSION_ID_SIZE) == 0;
}

static void core_state_changed (RelayCore *core);

/* The record of session @id, made if new; borrowed. */
static RelaySession *
core_session (RelayCore    *core,
              const guint8 *id)
{
  RelaySession *session = g_hash_table_lookup (core->sessions, id);

  if (session != NULL)
    {
      g_queue_unlink (&core->sessions_lru, &session->lru_link);
      g_queue_push_head_link (&core->sessions_lru, &session->lru_link);
      return session;
    }

  if (g_hash_table_size (core->sessions) >= MAX_SESSIONS)
    {
      GList *oldest = g_queue_pop_tail_link (&core->sessions_lru);
      RelaySession *old = oldest->data;

      old->evicted = TRUE;
      if (core->store != NULL && !core->store_failed)
        {
          if (core->dirty_sessions != NULL)
            g_hash_table_remove (core->dirty_sessions, old);
          tlspyo_store_remove_session (core->store, old->id);
          core_state_changed (core);
        }
      g_hash_table_remove (core->sessions, old->id);  /* unrefs it */
    }
  session = g_new0 (RelaySession, 1);
  session->ref_count = 1;
  session->core = core;
  session->routing = tlspyo_router_session_new (core->router);
  tlspyo_router_session_set_data (session->routing, session);
  memcpy (session->id, id, TLSPYO_SESSION_ID_SIZE);
  session->lru_link.data = session;
  g_hash_table_insert (core->sessions, session->id, session);
  g_queue_push_head_link (&core->sessions_lru, &session->lru_link);
  return session;
}

static void peer_close (RelayPeer *peer, const GError *error);

static RelayCore *
relay_core_ref (RelayCore *core)
{
  g_atomic_ref_count_inc (&core->ref_count);
  return core;
}

static void
relay_core_unref (RelayCore *core)
{
  if (!g_atomic_ref_count_dec (&core->ref_count))
    return;
  g_assert (g_hash_table_size (core->peers) == 0);
  g_hash_table_unref (core->peers);
  g_hash_table_unref (core->addresses);
  g_hash_table_unref (core->users);
  g_clear_pointer (&core->client_certificates, g_ptr_array_unref);
  g_clear_pointer (&core->client_certificate_users, g_ptr_array_unref);
  tlspyo_auth_wipe (core->unknown_user_secret, sizeof core->unknown_user_secret);
  g_hash_table_unref (core->deliver_meta);
  g_clear_pointer (&core->broadcast_meta, g_bytes_unref);
  g_free (core->broadcast_group);
  /* What follows changes nothing the store should keep. */
  if (core->router != NULL)
    tlspyo_router_set_journal (core->router, NULL, NULL);
  g_clear_pointer (&core->dirty_sessions, g_hash_table_unref);
  g_hash_table_unref (core->sessions);
  g_clear_pointer (&core->router, tlspyo_router_free);
  g_clear_pointer (&core->store, tlspyo_store_free);  /* when start() failed */
  g_assert (core->commit_source == NULL);
  g_clear_pointer (&core->gate, tlspyo_write_gate_unref);
  g_free (core->state_directory);
  g_clear_object (&core->service);
  g_clear_object (&core->certificate);
  g_weak_ref_clear (&core->relay);
  g_main_context_unref (core->owner_context);
  g_clear_error (&core->start_error);
  g_free (core->address);
  tlspyo_auth_wipe (core->key, sizeof core->key);
  g_free (core);
}

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

static void
core_emit (RelayCore          *core,
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

static void
core_emit_dropped (RelayCore  *core,
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

static void
early_delivery_free (gpointer data)
{
  EarlyDelivery *d = data;

  g_free (d->group);
  g_bytes_unref (d->object);
  g_free (d);
}

/* The DELIVER metadata of broadcast @seq of @group (borrowed), serialized
 * once: the router delivers a broadcast to all its recipients in a row, so
 * it then costs a header and a copy per recipient. */
static GBytes *
core_broadcast_meta (RelayCore  *core,
                     const char *group,
                     guint64     seq)
{
  if (core->broadcast_meta == NULL || core->broadcast_seq != seq ||
      g_strcmp0 (core->broadcast_group, group) != 0)
    {
      g_clear_pointer (&core->broadcast_meta, g_bytes_unref);
      g_free (core->broadcast_group);
      core->broadcast_group = g_strdup (group);
      core->broadcast_seq = seq;
      core->broadcast_meta =
        tlspyo_frame_serialize_meta (TLSPYO_FRAME_DELIVER,
                                     g_variant_new ("(stt)", group,
                                                    tlspyo_router_get_instance (core->router),
                                                    seq));
    }
  return core->broadcast_meta;
}

/* Bounded memory (issue 5): a broadcast for an endpoint that reads slower
 * than they come is held, the latest per group, while its connection has
 * more than max-output-bytes waiting; one object always goes, so a limit
 * below an object's size does not stop it. */
typedef struct {
  GBytes  *object;
  GBytes  *meta;
  guint64  n_coalesced;  /* older ones it replaced, never sent */
} HeldBroadcast;

static void
held_broadcast_free (gpointer data)
{
  HeldBroadcast *held = data;

  g_bytes_unref (held->object);
  g_bytes_unref (held->meta);
  g_free (held);
}

static void
peer_report_coalesced (RelayPeer     *peer,
                       const char    *group,
                       HeldBroadcast *held)
{
  g_autofree char *reason = NULL;

  if (held->n_coalesced == 0)
    return;
  reason = g_strdup_printf ("endpoint %s reads slower than broadcasts arrive (more than "
                            "max-output-bytes, %" G_GUINT64_FORMAT " bytes, waiting): %"
                            G_GUINT64_FORMAT " broadcast(s) replaced by a newer one, never sent",
                            peer->address, peer->core->max_output_bytes, held->n_coalesced);
  tlspyo_router_note_dropped (peer->core->router, group, held->n_coalesced, reason);
  held->n_coalesced = 0;
}

static gboolean
peer_output_full (RelayPeer *peer,
                  GBytes    *object)
{
  guint64 limit = peer->core->max_output_bytes;
  gsize queued;

  if (limit == 0)
    return FALSE;
  queued = tlspyo_connection_get_queued_bytes (peer->conn);
  return queued > 0 && queued + g_bytes_get_size (object) > limit;
}

/* Sends what is held once there is room again, then stops checking. */
static gboolean
peer_drain_cb (gpointer data)
{
  RelayPeer *peer = data;
  guint64 limit = peer->core->max_output_bytes;
  GHashTableIter iter;
  gpointer key, value;

  if (limit > 0 && tlspyo_connection_get_queued_bytes (peer->conn) >= limit)
    return G_SOURCE_CONTINUE;

  g_hash_table_iter_init (&iter, peer->held);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      HeldBroadcast *held = value;

      tlspyo_connection_send_serialized (peer->conn, TLSPYO_FRAME_DELIVER, held->meta,
                                         held->object, NULL);
      peer_report_coalesced (peer, key, held);
      g_hash_table_iter_remove (&iter);
    }
  g_clear_pointer (&peer->drain_timer, g_source_unref);
  return G_SOURCE_REMOVE;
}

static void
peer_send_broadcast (RelayPeer  *peer,
                     const char *group,
                     GBytes     *object,
                     GBytes     *meta)
{
  HeldBroadcast *held = peer->held != NULL ? g_hash_table_lookup (peer->held, group) : NULL;

  if (!peer_output_full (peer, object))
    {
      /* Room again before the timer saw it: the held one first, in order. */
      if (held != NULL)
        {
          tlspyo_connection_send_serialized (peer->conn, TLSPYO_FRAME_DELIVER, held->meta,
                                             held->object, NULL);
          peer_report_coalesced (peer, group, held);
          g_hash_table_remove (peer->held, group);
        }
      tlspyo_connection_send_serialized (peer->conn, TLSPYO_FRAME_DELIVER, meta, object, NULL);
      return;
    }

  if (held != NULL)
    {
      /* Ref before unref: @object may be the one held. */
      g_bytes_ref (object);
      g_bytes_unref (held->object);
      held->object = object;
      g_bytes_ref (meta);
      g_bytes_unref (held->meta);
      held->meta = meta;
      held->n_coalesced++;
      peer->n_coalesced++;
      return;
    }

  if (peer->held == NULL)
    peer->held = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, held_broadcast_free);
  held = g_new0 (HeldBroadcast, 1);
  held->object = g_bytes_ref (object);
  held->meta = g_bytes_ref (meta);
  g_hash_table_insert (peer->held, g_strdup (group), held);
  if (peer->drain_timer == NULL)
    {
      peer->drain_timer = g_timeout_source_new (OUTPUT_DRAIN_CHECK_MS);
      g_source_set_callback (peer->drain_timer, peer_drain_cb, peer, NULL);
      g_source_set_static_name (peer->drain_timer, "[tlspyo] relay output drain");
      g_source_attach (peer->drain_timer, g_main_context_get_thread_default ());
    }
}

/* Broadcast @seq of @group for @peer. The latest ones due on joining wait
 * in early: until WELCOME is sent, then until SESSION says which the
 * endpoint has seen. A newer broadcast of a group meanwhile replaces the
 * one waiting, so that none goes backwards. */
static void
router_deliver (RelayPeer  *peer,
                const char *group,
                GBytes     *object,
                guint64     seq)
{
  if (peer->state != PEER_JOINED)
    {
      EarlyDelivery *d = g_new (EarlyDelivery, 1);

      d->group = g_strdup (group);
      d->object = g_bytes_ref (object);
      d->seq = seq;
      g_ptr_array_add (peer->early, d);
      return;
    }
  if (peer->early_held)
    {
      for (guint i = 0; i < peer->early->len; i++)
        {
          EarlyDelivery *d = g_ptr_array_index (peer->early, i);

          if (g_str_equal (d->group, group))
            {
              g_ptr_array_remove_index (peer->early, i);
              break;
            }
        }
    }
  peer_send_broadcast (peer, group, object, core_broadcast_meta (peer->core, group, seq));
}

/* Sends the latest broadcasts due on joining that @seen (a{s(tt)}: group
 * -> instance and number of the last broadcast the endpoint has; NULL for
 * none) does not hold. */
static void
peer_release_early (RelayPeer *peer,
                    GVariant  *seen)
{
  guint64 instance = tlspyo_router_get_instance (peer->core->router);

  if (!peer->early_held)
    return;
  peer->early_held = FALSE;
  for (guint i = 0; i < peer->early->len; i++)
    {
      EarlyDelivery *d = g_ptr_array_index (peer->early, i);
      guint64 seen_instance, seen_seq;

      if (seen != NULL &&
          g_variant_lookup (seen, d->group, "(tt)", &seen_instance, &seen_seq) &&
          seen_instance == instance && seen_seq >= d->seq)
        continue;  /* it has it already */
      peer_send_broadcast (peer, d->group, d->object,
                           core_broadcast_meta (peer->core, d->group, d->seq));
    }
  g_ptr_array_set_size (peer->early, 0);
}

/* The PRODUCED metadata, cached with DELIVER's: "\x01" cannot start a
 * group name, so the keys never collide. */
static GBytes *
core_produced_meta (RelayCore  *core,
                    const char *group,
                    gboolean    credit)
{
  g_autofree char *key = g_strdup_printf ("\x01%c%s", credit ? 'c' : 'a', group);
  GBytes *meta = g_hash_table_lookup (core->deliver_meta, key);

  if (meta == NULL)
    {
      if (g_hash_table_size (core->deliver_meta) >= 4096)
        g_hash_table_remove_all (core->deliver_meta);
      meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_PRODUCED,
                                          g_variant_new ("(sb)", group, credit));
      g_hash_table_insert (core->deliver_meta, g_steal_pointer (&key), meta);
    }
  return meta;
}

/* Produced objects travel as PRODUCED, saying whether they used credit, so
 * that the endpoint knows what credit it still has and can ask for it again
 * after reconnecting. Only broadcasts reach a peer still joining. */
static void
router_deliver_cb (gpointer              peer_data,
                   const char           *group,
                   GBytes               *object,
                   TlspyoRouterDelivery  kind,
                   guint64               number,
                   gpointer              user_data)
{
  RelayPeer *peer = peer_data;

  if (kind == TLSPYO_ROUTER_BROADCAST)
    {
      router_deliver (peer, group, object, number);
      return;
    }
  tlspyo_connection_send_serialized (peer->conn, TLSPYO_FRAME_PRODUCED,
                                     core_produced_meta (peer->core, group,
                                                         kind == TLSPYO_ROUTER_CREDIT),
                                     object, NULL);
}

/* Counted by the router (get_stats()'s "dropped"), announced here. */
static void
router_drop (const char *group,
             const char *reason,
             guint64     n_objects,
             gpointer    user_data)
{
  RelayCore *core = user_data;

  g_debug ("Dropped %" G_GUINT64_FORMAT " object(s) for group '%s': %s", n_objects, group,
           reason);
  core_emit_dropped (core, group, reason, n_objects);
}

/* The durable relay (issue 5, item 4). The router reports each change of
 * durable state through its journal, which writes it into the store's open
 * transaction; the first change of a batch closes the write gate and
 * schedules one commit at the end of the dispatch, which opens the gate
 * again. So no byte leaves a connection before the state changes made
 * before it are on disk: an ACK never acknowledges an object that a crash
 * would lose, and a consumer never gets an object whose hand-out a crash
 * would forget (and hand out again). */

static gboolean core_commit_cb (gpointer data);
static void relay_session_start_timer (RelaySession *session);

static void
core_state_changed (RelayCore *core)
{
  if (core->gate == NULL || core->commit_source != NULL || core->store_failed ||
      core->stopped)
    return;
  tlspyo_write_gate_close (core->gate);
  core->commit_source = g_idle_source_new ();
  /* The priority of connection writes: after this dispatch's events, once. */
  g_source_set_priority (core->commit_source, G_PRIORITY_DEFAULT);
  g_source_set_callback (core->commit_source, core_commit_cb, core, NULL);
  g_source_set_static_name (core->commit_source, "[tlspyo] relay commit");
  g_source_attach (core->commit_source, g_main_context_get_thread_default ());
}

/* The session's duplicate detection state (its next sequence number)
 * changed: written once per batch, however many frames it handled. */
static void
core_session_dirty (RelaySession *session)
{
  RelayCore *core = session->core;

  if (core->gate == NULL || session->evicted || core->store_failed || core->stopped)
    return;
  /* Not g_hash_table_add() alone: adding a key again frees the old one. */
  if (!g_hash_table_contains (core->dirty_sessions, session))
    g_hash_table_add (core->dirty_sessions, relay_session_ref (session));
  core_state_changed (core);
}

static void
journal_queued (guint64     id,
                const char *group,
                GBytes     *object,
                gpointer    user_data)
{
  RelayCore *core = user_data;

  tlspyo_store_put_object (core->store, id, group, object);
  core_state_changed (core);
}

static void
journal_held (guint64  id,
              gpointer session_data,
              guint64  index,
              gpointer user_data)
{
  RelayCore *core = user_data;
  RelaySession *session = session_data;

  tlspyo_store_set_holder (core->store, id, session->id, (gint64) MIN (index, G_MAXINT64));
  core_state_changed (core);
}

static void
journal_removed (guint64  id,
                 gpointer user_data)
{
  RelayCore *core = user_data;

  tlspyo_store_remove_object (core->store, id);
  core_state_changed (core);
}

static void
journal_requeued (guint64  id,
                  gint64   position,
                  gpointer user_data)
{
  RelayCore *core = user_data;

  tlspyo_store_set_holder (core->store, id, NULL, position);
  core_state_changed (core);
}

static void
journal_latest (const char *group,
                guint64     seq,
                GBytes     *object,
                gpointer    user_data)
{
  RelayCore *core = user_data;

  tlspyo_store_set_latest (core->store, group, seq, object);
  core_state_changed (core);
}

/* Written at the commit: once per batch, not per produce. */
static void
journal_next_id (guint64  next_id,
                 gpointer user_data)
{
  RelayCore *core = user_data;

  core->next_id = next_id;
  core->next_id_dirty = TRUE;
  core_state_changed (core);
}

static const TlspyoRouterJournal core_journal = {
  journal_queued,
  journal_held,
  journal_removed,
  journal_requeued,
  journal_latest,
  journal_next_id,
};

/* Writes what is written once per batch, and commits the batch. */
static gboolean
core_commit (RelayCore  *core,
             GError    **error)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, core->dirty_sessions);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      RelaySession *session = key;

      tlspyo_store_set_session (core->store, session->id, session->next);
    }
  g_hash_table_remove_all (core->dirty_sessions);
  if (core->next_id_dirty)
    {
      tlspyo_store_set_value (core->store, "next_id", core->next_id);
      core->next_id_dirty = FALSE;
    }
  if (core->commit_source != NULL)
    {
      g_source_destroy (core->commit_source);
      g_clear_pointer (&core->commit_source, g_source_unref);
    }
  return tlspyo_store_commit (core->store, error);
}

/* A commit failed (disk full, I/O error): the relay's memory is ahead of
 * its disk, and nothing of the failed batch may be acknowledged or handed
 * out, since a restart would not know it. The safe way on: stop serving.
 * Every connection is closed with the cause (endpoints keep what was not
 * acknowledged, and send it again to a relay that works), the port is
 * released, and the gate stays closed. Restarted once the cause is fixed,
 * the relay starts from the last committed state. */
static void
core_store_failed (RelayCore    *core,
                   const GError *error)
{
  g_autoptr(GError) refusal = NULL;
  g_autoptr(GPtrArray) peers = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  core->store_failed = TRUE;
  tlspyo_router_set_journal (core->router, NULL, NULL);
  g_warning ("The relay could not save its state in its state directory %s, and stops "
             "serving until it is stopped: %s. Fix the cause, then start it again: it goes "
             "on from the state saved last", core->state_directory, error->message);
  if (core->service != NULL)
    {
      g_socket_service_stop (core->service);
      g_socket_listener_close (G_SOCKET_LISTENER (core->service));
    }
  refusal = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                         "The relay could not save its state in its state directory %s and "
                         "stopped serving: %s", core->state_directory, error->message);
  g_hash_table_iter_init (&iter, core->peers);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (peers, key);
  for (guint i = 0; i < peers->len; i++)
    peer_close (g_ptr_array_index (peers, i), refusal);
}

static gboolean
core_commit_cb (gpointer data)
{
  RelayCore *core = data;
  g_autoptr(GError) error = NULL;

  if (core_commit (core, &error))
    tlspyo_write_gate_open (core->gate);
  else
    core_store_failed (core, error);
  return G_SOURCE_REMOVE;
}

/* Reading the store back at start(), before anything else uses the router. */

static void
restore_object (guint64       id,
                const char   *group,
                GBytes       *body,
                const guint8 *holder,
                gint64        position,
                gpointer      user_data)
{
  RelayCore *core = user_data;
  RelaySession *session;

  if (holder == NULL)
    {
      tlspyo_router_restore_queued (core->router, group, body, id, position);
      return;
    }
  /* In flight to a session: parked, for it to resume. The position of an
   * object in flight is the session's count of handed objects when it was
   * handed; they come in order, so the last one sets the count. */
  session = core_session (core, holder);
  tlspyo_router_restore_parked (core->router, session->routing, group, body, id);
  tlspyo_router_session_set_handed (session->routing, group, (guint64) MAX (position, 0));
}

static void
restore_latest (const char *group,
                guint64     seq,
                GBytes     *body,
                gpointer    user_data)
{
  RelayCore *core = user_data;

  tlspyo_router_restore_latest (core->router, group, body, seq);
}

static void
restore_session (const guint8 *id,
                 guint64       next_seq,
                 gpointer      user_data)
{
  RelaySession *session = core_session (user_data, id);

  session->next = MAX (session->next, next_seq);
}

static gboolean
core_restore (RelayCore  *core,
              GError    **error)
{
  static const TlspyoStoreLoadFuncs funcs = { restore_object, restore_latest, restore_session };
  guint64 value;

  if (!tlspyo_store_load (core->store, &funcs, core, error))
    return FALSE;
  /* The broadcast numbers go on under the same instance: endpoints that
   * have the latest one do not get it again. */
  if (tlspyo_store_get_value (core->store, "instance", &value) && value != 0)
    tlspyo_router_set_instance (core->router, value);
  else
    tlspyo_store_set_value (core->store, "instance", tlspyo_router_get_instance (core->router));
  if (tlspyo_store_get_value (core->store, "next_id", &value))
    tlspyo_router_set_next_id (core->router, value);
  return tlspyo_store_commit (core->store, error);
}

/* On the worker, once the relay serves: from now on every change is
 * journaled. Objects parked at the last stop or crash wait session-timeout
 * from now for their endpoints to come back and resume. */
static void
core_start_durable (RelayCore *core)
{
  GHashTableIter iter;
  gpointer value;

  if (core->store == NULL)
    return;
  core->gate = tlspyo_write_gate_new ();
  tlspyo_router_set_journal (core->router, &core_journal, core);
  g_hash_table_iter_init (&iter, core->sessions);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      RelaySession *session = value;

      if (tlspyo_router_session_get_n_parked (session->routing) == 0)
        continue;
      if (core->session_timeout > 0)
        relay_session_start_timer (session);
      else
        tlspyo_router_session_expire (core->router, session->routing);
    }
}

/* Limits. Per source address: open connections, and failed
 * authentications, which are forgotten auth-block-time after the last one. */

typedef struct {
  guint  n_connections;
  guint  failures;
  gint64 last_failure;   /* monotonic µs */
  gint64 blocked_until;  /* monotonic µs; 0 when not blocked */
} AddressState;

static AddressState *
core_address (RelayCore  *core,
              const char *key)
{
  AddressState *state = g_hash_table_lookup (core->addresses, key);
  gint64 now = g_get_monotonic_time ();

  if (state == NULL)
    {
      state = g_new0 (AddressState, 1);
      g_hash_table_insert (core->addresses, g_strdup (key), state);
    }
  if (state->failures > 0 &&
      now - state->last_failure > (gint64) core->limits.auth_block_time * G_USEC_PER_SEC)
    {
      state->failures = 0;
      state->blocked_until = 0;
    }
  return state;
}

/* Drops what no longer matters. Also sweeps the table when it grows, so
 * that failures from many addresses cannot fill memory. */
static void
core_address_forget (RelayCore  *core,
                     const char *key)
{
  AddressState *state = core_address (core, key);

  if (state->n_connections == 0 && state->failures == 0)
    g_hash_table_remove (core->addresses, key);

  if (g_hash_table_size (core->addresses) > 4 * MAX (core->limits.max_connections, 1024))
    {
      GHashTableIter iter;
      gpointer k;

      g_hash_table_iter_init (&iter, core->addresses);
      while (g_hash_table_iter_next (&iter, &k, (gpointer *) &state))
        {
          gint64 age = g_get_monotonic_time () - state->last_failure;

          if (state->n_connections == 0 &&
              (state->failures == 0 ||
               age > (gint64) core->limits.auth_block_time * G_USEC_PER_SEC))
            g_hash_table_iter_remove (&iter);
        }
    }
}

static void core_log_limit (RelayCore  *core,
                            const char *format,
                            ...) G_GNUC_PRINTF (2, 3);

/* A log line for a limit hit, at most REFUSAL_LOG_BURST a second: a flood
 * of connections must not become a flood of log lines. */
static void
core_log_limit (RelayCore  *core,
                const char *format,
                ...)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *message = NULL;
  va_list args;

  if (now - core->log_window >= G_USEC_PER_SEC)
    {
      if (core->log_suppressed > 0)
        g_message ("%u more limit refusals were not logged", core->log_suppressed);
      core->log_window = now;
      core->log_count = 0;
      core->log_suppressed = 0;
    }
  if (core->log_count >= REFUSAL_LOG_BURST)
    {
      core->log_suppressed++;
      return;
    }
  core->log_count++;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_message ("%s", message);
}

/* Why a new connection from @key cannot be served now, or NULL. */
static char *
core_check_connection_limits (RelayCore  *core,
                              const char *address,
                              const char *key)
{
  AddressState *state = core_address (core, key);
  gint64 now = g_get_monotonic_time ();

  if (state->blocked_until > now)
    return g_strdup_printf ("too many failed authentications from %s: connections from it "
                            "are refused for another %" G_GINT64_FORMAT " s",
                            key, (state->blocked_until - now) / G_USEC_PER_SEC + 1);
  if (core->limits.max_connections > 0 && core->n_counted >= core->limits.max_connections)
    return g_strdup_printf ("the relay has reached its limit of %u connections "
                            "(max-connections): try again later",
                            core->limits.max_connections);
  if (core->limits.max_connections_per_address > 0 &&
      state->n_connections >= core->limits.max_connections_per_address)
    return g_strdup_printf ("%s already has %u connections to the relay, its limit "
                            "(max-connections-per-address): close some, or have the "
                            "operator raise the limit",
                            key, state->n_connections);
  return NULL;
}

/* A failed authentication from @peer's address: counted, and answered
 * after a delay that doubles with each failure, so that guessing a
 * password is slow even over many connections; at max-auth-failures the
 * address is refused for auth-block-time. Returns the delay in ms. */
static guint
core_auth_failed (RelayCore *core,
                  RelayPeer *peer)
{
  AddressState *state = core_address (core, peer->address_key);
  guint delay;

  state->failures++;
  state->last_failure = g_get_monotonic_time ();
  if (core->limits.max_auth_failures > 0 && state->failures >= core->limits.max_auth_failures &&
      state->blocked_until == 0)
    {
      state->blocked_until = state->last_failure +
                             (gint64) core->limits.auth_block_time * G_USEC_PER_SEC;
      g_message ("%u failed authentications from %s: refusing its connections for %u s",
                 state->failures, peer->address_key, core->limits.auth_block_time);
    }
  else
    core_log_limit (core, "Failed authentication from %s (%u from this address)",
                    peer->address, state->failures);

  if (core->limits.auth_failure_delay == 0)
    return 0;
  delay = core->limits.auth_failure_delay << MIN (state->failures - 1, 16u);
  /* Below the handshake timeout, so that the refusal gets there. */
  return MIN (delay, MIN ((guint) MAX_AUTH_FAILURE_DELAY, core->handshake_timeout * 500));
}

static void
peer_free (RelayPeer *peer)
{
  tlspyo_keepalive_stop (&peer->keepalive);
  g_clear_pointer (&peer->held, g_hash_table_unref);
  if (peer->drain_timer != NULL)
    {
      g_source_destroy (peer->drain_timer);
      g_source_unref (peer->drain_timer);
    }
  g_clear_pointer (&peer->session, relay_session_unref);
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
      core_address (peer->core, peer->address_key)->n_connections--;
      peer->core->n_counted--;
    }
  if (peer->over_limit != NULL)
    peer->core->n_refusing--;
  if (peer->address_key != NULL)
    core_address_forget (peer->core, peer->address_key);
  g_clear_pointer (&peer->user, relay_user_unref);
  g_free (peer->user_name);
  g_free (peer->certificate_user);
  tlspyo_auth_wipe (peer->key, sizeof peer->key);
  g_free (peer->over_limit);
  g_free (peer->address_key);
  g_free (peer->address);
  g_free (peer);
}

static gboolean
peer_refuse (RelayPeer   *peer,
             TlspyoError  code,
             const char  *reason)
{
  g_autoptr(GError) error = g_error_new_literal (TLSPYO_ERROR, code, reason);

  g_debug ("Refused endpoint %s: %s", peer->address, reason);
  peer->refused = TRUE;
  core_emit (peer->core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL, code, reason);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_REFUSED,
                          g_variant_new ("(us)", (guint32) code, reason), NULL, NULL);
  /* Keep the handshake timer: it bounds how long a peer that does not read
   * its refusal can hold the connection. */
  tlspyo_connection_close_when_flushed (peer->conn, error);
  return FALSE;
}

static gboolean
peer_protocol_error (RelayPeer  *peer,
                     const char *format,
                     ...) G_GNUC_PRINTF (2, 3);

static gboolean
peer_protocol_error (RelayPeer  *peer,
                     const char *format,
                     ...)
{
  g_autoptr(GError) error = NULL;
  va_list args;

  va_start (args, format);
  error = g_error_new_valist (TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL, format, args);
  va_end (args);
  peer_close (peer, error);
  return FALSE;
}

/* The key, salt and rounds of the password this endpoint must know: the
 * shared one, or its user's. A name no user has gets a salt derived from
 * it (the same each time) and a key nobody knows: to the endpoint, an
 * unknown user looks like a wrong password. */
static gboolean
peer_choose_key (RelayPeer *peer,
                 guint8     salt[TLSPYO_AUTH_SALT_SIZE],
                 gsize     *salt_len,
                 guint     *iterations)
{
  RelayCore *core = peer->core;
  RelayUser *user;

  if (peer->user_name == NULL)
    {
      if (!core->has_password)
        return peer_refuse (peer, TLSPYO_ERROR_AUTHENTICATION,
                            "This relay has no shared password, only named users: set the "
                            "endpoint's user property and that user's password");
      memcpy (peer->key, core->key, sizeof peer->key);
      memcpy (salt, core->salt, sizeof core->salt);
      *salt_len = sizeof core->salt;
      *iterations = core->iterations;
      return TRUE;
    }

  user = g_hash_table_lookup (core->users, peer->user_name);
  if (user != NULL)
    {
      peer->user = relay_user_ref (user);
      memcpy (peer->key, user->key, sizeof peer->key);
      memcpy (salt, user->salt, user->salt_len);
      *salt_len = user->salt_len;
      *iterations = user->iterations;
      return TRUE;
    }

  {
    g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, core->unknown_user_secret,
                                        sizeof core->unknown_user_secret);
    guint8 digest[32];
    gsize digest_len = sizeof digest;

    g_hmac_update (hmac, (const guchar *) peer->user_name, strlen (peer->user_name));
    g_hmac_get_digest (hmac, digest, &digest_len);
    memcpy (salt, digest, TLSPYO_AUTH_SALT_SIZE);
    tlspyo_auth_random (peer->key, sizeof peer->key);
    *salt_len = TLSPYO_AUTH_SALT_SIZE;
    *iterations = TLSPYO_AUTH_DEFAULT_HASH_ITERATIONS;
  }
  return TRUE;
}

static gboolean
handle_hello (RelayPeer         *peer,
              const TlspyoFrame *frame)
{
  guint32 version;
  g_autoptr(GVariant) nonce = NULL;
  gsize len;
  const guint8 *data;
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  gsize salt_len = 0;
  guint iterations = 0;

  /* Over a limit at accept time: the refusal waits for HELLO, so that the
   * endpoint reads it (closing on unread data would reset the connection). */
  if (peer->over_limit != NULL)
    return peer_refuse (peer, TLSPYO_ERROR_LIMIT, peer->over_limit);

  if (frame->type == TLSPYO_FRAME_HELLO_USER)
    {
      g_variant_get (frame->meta, "(u@ays)", &version, &nonce, &peer->user_name);
      if (!tlspyo_auth_user_name_check (peer->user_name, NULL))
        return peer_protocol_error (peer, "Endpoint %s gave an invalid user name", peer->address);
    }
  else
    g_variant_get (frame->meta, "(u@ay)", &version, &nonce);
  /* Mutual TLS: the certificate says who the endpoint must authenticate as. */
  if (peer->certificate_user != NULL && g_strcmp0 (peer->user_name, peer->certificate_user) != 0)
    {
      g_autofree char *reason =
        g_strdup_printf ("this endpoint's client certificate belongs to user '%s': set "
                         "the endpoint's user to '%s', with that user's password",
                         peer->certificate_user, peer->certificate_user);

      core_log_limit (peer->core, "Refused %s: %s", peer->address, reason);
      return peer_refuse (peer, TLSPYO_ERROR_PERMISSION_DENIED, reason);
    }
  if (version != TLSPYO_PROTOCOL_VERSION)
    return peer_protocol_error (peer, "Endpoint %s speaks protocol version %u, this relay speaks %u",
                                peer->address, version, TLSPYO_PROTOCOL_VERSION);
  data = g_variant_get_fixed_array (nonce, &len, 1);
  if (len != TLSPYO_AUTH_NONCE_SIZE)
    return peer_protocol_error (peer, "Endpoint %s sent a nonce of %" G_GSIZE_FORMAT " bytes",
                                peer->address, len);
  memcpy (peer->endpoint_nonce, data, len);
  tlspyo_auth_random (peer->relay_nonce, sizeof peer->relay_nonce);
  if (!peer_choose_key (peer, salt, &salt_len, &iterations))
    return FALSE;

  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_AUTH) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_CHALLENGE,
                          g_variant_new ("(@ay@ayu)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, peer->relay_nonce,
                                                                    TLSPYO_AUTH_NONCE_SIZE, 1),
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, salt,
                                                                    salt_len, 1),
                                         iterations),
                          NULL, NULL);
  peer->state = PEER_AWAIT_AUTH;
  return TRUE;
}

static gboolean
peer_has_right (RelayPeer    *peer,
                const char   *group,
                TlspyoRights  right)
{
  return peer->user == NULL || (relay_user_rights (peer->user, group) & right) == right;
}

static gboolean
auth_delay_cb (gpointer user_data)
{
  RelayPeer *peer = user_data;

  g_clear_pointer (&peer->delay_timer, g_source_unref);
  peer_refuse (peer, TLSPYO_ERROR_AUTHENTICATION,
               "Authentication failed: the endpoint does not know the relay's password");
  return G_SOURCE_REMOVE;
}

static gboolean
peer_auth_failed (RelayPeer *peer)
{
  guint delay = core_auth_failed (peer->core, peer);

  if (delay == 0)
    {
      auth_delay_cb (peer);
      return FALSE;
    }

  /* Nothing but a goodbye is read meanwhile. */
  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  peer->delay_timer = g_timeout_source_new (delay);
  g_source_set_callback (peer->delay_timer, auth_delay_cb, peer, NULL);
  g_source_set_static_name (peer->delay_timer, "[tlspyo] authentication failure delay");
  g_source_attach (peer->delay_timer, g_main_context_get_thread_default ());
  return TRUE;
}

static gboolean
handle_auth (RelayPeer         *peer,
             const TlspyoFrame *frame)
{
  RelayCore *core = peer->core;
  g_autoptr(GVariant) proof_v = NULL;
  g_autofree const char **groups = NULL;
  g_autoptr(GError) error = NULL;
  guint8 expected[TLSPYO_AUTH_PROOF_SIZE];
  guint8 relay_proof[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *proof;
  gsize len, n_groups;

  g_variant_get (frame->meta, "(@ay^a&s)", &proof_v, &groups);
  proof = g_variant_get_fixed_array (proof_v, &len, 1);
  tlspyo_auth_proof (peer->key, TLSPYO_AUTH_ROLE_ENDPOINT, peer->endpoint_nonce,
                     peer->relay_nonce, expected);
  if (len != TLSPYO_AUTH_PROOF_SIZE || !tlspyo_auth_equal (proof, expected, sizeof expected))
    return peer_auth_failed (peer);

  n_groups = g_strv_length ((char **) groups);
  if (n_groups == 0)
    return peer_refuse (peer, TLSPYO_ERROR_INVALID_ARGUMENT,
                        "The endpoint has no group: give it at least one");
  if (core->limits.max_groups_per_endpoint > 0 && n_groups > core->limits.max_groups_per_endpoint)
    {
      g_autofree char *reason =
        g_strdup_printf ("the endpoint asks for %" G_GSIZE_FORMAT " groups, more than the "
                         "relay's limit of %u (max-groups-per-endpoint)",
                         n_groups, core->limits.max_groups_per_endpoint);

      core_log_limit (core, "Refused %s: %s", peer->address, reason);
      return peer_refuse (peer, TLSPYO_ERROR_LIMIT, reason);
    }
  for (gsize i = 0; i < n_groups; i++)
    if (!tlspyo_group_name_check (groups[i], &error))
      return peer_refuse (peer, TLSPYO_ERROR_GROUP_REFUSED, error->message);
  for (gsize i = 0; i < n_groups; i++)
    if (!peer_has_right (peer, groups[i], TLSPYO_RIGHTS_JOIN))
      {
        g_autofree char *reason = g_strdup_printf ("user '%s' may not join group '%s'",
                                                   peer->user->name, groups[i]);

        core_log_limit (core, "Refused %s: %s", peer->address, reason);
        return peer_refuse (peer, TLSPYO_ERROR_PERMISSION_DENIED, reason);
      }

  peer->router_peer = tlspyo_router_join (core->router, peer, groups, &error);
  if (peer->router_peer == NULL)
    return peer_refuse (peer, error->code, error->message);

  tlspyo_auth_proof (peer->key, TLSPYO_AUTH_ROLE_RELAY, peer->endpoint_nonce,
                     peer->relay_nonce, relay_proof);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_WELCOME,
                          g_variant_new ("(@ay)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, relay_proof,
                                                                    sizeof relay_proof, 1)),
                          NULL, NULL);
  peer->state = PEER_JOINED;
  g_atomic_int_inc (&core->n_joined);
  if (peer->handshake_timer != NULL)
    {
      g_source_destroy (peer->handshake_timer);
      g_clear_pointer (&peer->handshake_timer, g_source_unref);
    }
  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META, core->max_object_size,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_OBJECT) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_NOTIFY) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_SESSION) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_TAKEN) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PING) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PONG) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  /* The latest broadcasts wait for SESSION (peer_release_early()). */
  peer->early_held = peer->early->len > 0;

  g_debug ("Endpoint %s joined", peer->address);
  core_emit (core, SIGNAL_ENDPOINT_CONNECTED, peer->address, groups, 0, NULL);
  return TRUE;
}

/* Issue 6: an action the relay does not carry out (a right the user lacks,
 * a limit reached). The endpoint is told, with DENIED; the connection goes
 * on. The log line never holds the object. */
static void
peer_deny (RelayPeer   *peer,
           TlspyoError  code,
           const char  *group,
           const char  *reason)
{
  core_log_limit (peer->core, "Denied %s: %s", peer->address, reason);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_DENIED,
                          g_variant_new ("(uss)", (guint32) code, group, reason), NULL, NULL);
}

/* Whether an object may go to all of @destinations; it goes to all or to
 * none. Otherwise the endpoint is told why. */
static gboolean
peer_may_route (RelayPeer *peer,
                GVariant  *destinations,
                GBytes    *object)
{
  RelayCore *core = peer->core;
  GVariantIter iter;
  const char *group;
  gint32 count;

  g_variant_iter_init (&iter, destinations);
  while (g_variant_iter_next (&iter, "{&si}", &group, &count))
    {
      TlspyoRights right = count < 0 ? TLSPYO_RIGHTS_BROADCAST : TLSPYO_RIGHTS_PRODUCE;
      guint64 queued;

      if (!peer_has_right (peer, group, right))
        {
          g_autofree char *reason =
            g_strdup_printf ("user '%s' may not %s group '%s': the object was dropped",
                             peer->user->name, count < 0 ? "broadcast to" : "produce into",
                             group);

          peer_deny (peer, TLSPYO_ERROR_PERMISSION_DENIED, group, reason);
          return FALSE;
        }
      /* The store writes every copy (a row and its body each): one
       * frame of 2^31 copies would hold the relay for hours. */
      if (core->store != NULL && count > DURABLE_MAX_COPIES)
        {
          g_autofree char *reason =
            g_strdup_printf ("%d copies of one object for group '%s': a relay with a state "
                             "directory takes at most %d per object, since it stores each "
                             "copy; the object was dropped: send it in several objects",
                             count, group, DURABLE_MAX_COPIES);

          peer_deny (peer, TLSPYO_ERROR_LIMIT, group, reason);
          return FALSE;
        }
      if (count < 0 || core->limits.max_queued_bytes == 0)
        continue;
      /* One object always fits, so a limit below the object size does not
       * stop a group for good. */
      queued = tlspyo_router_get_queued_bytes (core->router, group);
      if (queued > 0 && queued + g_bytes_get_size (object) > core->limits.max_queued_bytes)
        {
          g_autofree char *reason =
            g_strdup_printf ("group '%s' already holds %" G_GUINT64_FORMAT " bytes of "
                             "produced objects, the relay's limit (max-queued-bytes) is %"
                             G_GUINT64_FORMAT ": the object was dropped; consumers must "
                             "catch up", group, queued, core->limits.max_queued_bytes);

          peer_deny (peer, TLSPYO_ERROR_LIMIT, group, reason);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
session_expire_cb (gpointer data)
{
  RelaySession *session = data;

  g_clear_pointer (&session->park_timer, g_source_unref);
  g_debug ("A session did not come back within session-timeout (%g s): its %" G_GUINT64_FORMAT
           " object(s) in flight go back to their queues", session->core->session_timeout,
           tlspyo_router_session_get_n_parked (session->routing));
  tlspyo_router_session_expire (session->core->router, session->routing);
  return G_SOURCE_REMOVE;
}

/* The connection of @session ended without a goodbye: its objects in flight
 * wait for it (parked) session-timeout seconds. */
static void
relay_session_start_timer (RelaySession *session)
{
  relay_session_stop_timer (session);
  session->park_timer = g_timeout_source_new ((guint) MIN (session->core->session_timeout * 1000,
                                                           (double) G_MAXUINT));
  g_source_set_callback (session->park_timer, session_expire_cb, session, NULL);
  g_source_set_static_name (session->park_timer, "[tlspyo] relay session timeout");
  g_source_attach (session->park_timer, g_main_context_get_thread_default ());
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
    return peer_protocol_error (peer, "Endpoint %s sent a session id of %" G_GSIZE_FORMAT
                                " bytes instead of %d", peer->address, len,
                                TLSPYO_SESSION_ID_SIZE);
  if (peer->session != NULL || peer->handled > 0)
    return peer_protocol_error (peer, "Endpoint %s sent SESSION %s: it comes once, before any "
                                "object or notification", peer->address,
                                peer->session != NULL ? "twice" : "late");
  session = relay_session_ref (core_session (peer->core, id));
  if (session->peer != NULL)
    {
      /* The endpoint has one connection at a time: the one the relay still
       * reads is dead, whatever it says (the endpoint found it so before
       * the relay did). Ended as lost, its objects are parked, for this
       * one to resume; what it still held unread is sent again. */
      g_autoptr(GError) error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                             "Endpoint %s came back on a new connection",
                                             session->peer->address);

      peer_close (session->peer, error);
    }
  g_assert (session->peer == NULL);
  relay_session_stop_timer (session);
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
      core_session_dirty (session);
    }
  peer_release_early (peer, seen);
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
  core_session_dirty (session);
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
        return peer_protocol_error (peer, "Endpoint %s sent an object to an invalid group: %s",
                                    peer->address, error->message);
      if (count == 0)
        return peer_protocol_error (peer, "Endpoint %s sent an object with a count of 0 for group '%s'",
                                    peer->address, group);
    }
  peer->handled++;
  if (!peer_take_seq (peer))
    return TRUE;  /* sent again after a lost connection: handled already */
  if (!peer_may_route (peer, destinations, frame->body))  /* rights and limits: issue 6 */
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
    return peer_protocol_error (peer, "Endpoint %s sent notify_ready for an invalid group: %s",
                                peer->address, error->message);
  peer->handled++;
  /* Positive credit is not sequenced: it belongs to the connection, and
   * the endpoint announces what it still has again on the next one. */
  if (count < 0 && !peer_take_seq (peer))
    return TRUE;
  if (!peer_has_right (peer, group, TLSPYO_RIGHTS_CONSUME))  /* issue 6 */
    {
      g_autofree char *reason = g_strdup_printf ("user '%s' may not consume from group '%s'",
                                                 peer->user->name, group);

      peer_deny (peer, TLSPYO_ERROR_PERMISSION_DENIED, group, reason);
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
        return peer_protocol_error (peer, "Endpoint %s says it took %u produced objects of "
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
        return peer_refuse (peer, TLSPYO_ERROR_PROTOCOL,
                            "This relay uses TLS, but the endpoint connected without it: set "
                            "the endpoint's security to TLS (the default) and give it the "
                            "relay's certificate.pem");
      return handle_hello (peer, frame);
    case TLSPYO_FRAME_AUTH:
      if (peer->state != PEER_AWAIT_AUTH)
        break;
      return handle_auth (peer, frame);
    case TLSPYO_FRAME_OBJECT:
      if (peer->state != PEER_JOINED)
        break;
      peer_release_early (peer, NULL);  /* no SESSION: it has seen nothing */
      return handle_object (peer, frame);
    case TLSPYO_FRAME_NOTIFY:
      if (peer->state != PEER_JOINED)
        break;
      peer_release_early (peer, NULL);
      return handle_notify (peer, frame);
    case TLSPYO_FRAME_SESSION:
      if (peer->state != PEER_JOINED)
        break;
      return handle_session (peer, frame);
    case TLSPYO_FRAME_TAKEN:
      if (peer->state != PEER_JOINED)
        break;
      peer_release_early (peer, NULL);
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
        peer_close (peer, bye);
        return FALSE;
      }
    default:
      break;
    }

  /* The decoder only lets through the types the current state allows. */
  return peer_protocol_error (peer, "Endpoint %s sent an unexpected %s frame",
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
        peer_report_coalesced (peer, key, value);
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
          relay_session_start_timer (session);
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
        core_emit (core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
                   error->domain == TLSPYO_ERROR ? error->code : TLSPYO_ERROR_PROTOCOL,
                   error->message);
      core_emit (core, SIGNAL_ENDPOINT_DISCONNECTED, peer->address, NULL, 0, NULL);
    }
  else if (!peer->refused)
    {
      /* Refusals were announced when they were sent. */
      g_debug ("Connection from %s ended before it joined: %s", peer->address, error->message);
      core_emit (core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
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

static void
peer_close (RelayPeer    *peer,
            const GError *error)
{
  if (peer->conn != NULL)
    tlspyo_connection_close (peer->conn, error);  /* frees the peer */
  else
    {
      /* Still in the TLS handshake: its callback will find the peer gone. */
      g_cancellable_cancel (peer->cancellable);
      if (!g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED))
        core_emit (peer->core, SIGNAL_ENDPOINT_REFUSED, peer->address, NULL,
                   error->code, error->message);
      g_hash_table_remove (peer->core->peers, peer);
    }
}

static void
peer_start_protocol (RelayPeer *peer,
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
          peer_start_protocol (peer, peer->stream);
        }
      else if (core->client_certificates != NULL &&
               (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE) ||
                g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_CERTIFICATE_REQUIRED)))
        {
          g_autoptr(GError) refusal =
            g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                         "%s: the endpoint showed no client certificate, or one that is not in "
                         "the relay's client-certificates-dir (%s)", peer->address, error->message);

          core_log_limit (core, "Refused %s", refusal->message);
          peer_close (peer, refusal);
        }
      else
        {
          g_autofree char *msg = tlspyo_tls_describe_error (error, FALSE);
          g_autoptr(GError) tls_error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                                                     "%s: %s", peer->address, msg);
          peer_close (peer, tls_error);
        }
    }

  relay_core_unref (core);
  g_free (hd);
  tlspyo_worker_unhold ();
}

static gboolean
handshake_timeout_cb (gpointer user_data)
{
  RelayPeer *peer = user_data;
  g_autoptr(GError) error = NULL;

  g_clear_pointer (&peer->handshake_timer, g_source_unref);
  error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT,
                       "Endpoint %s did not complete the handshake within %u s",
                       peer->address, peer->core->handshake_timeout);
  peer_close (peer, error);
  return G_SOURCE_REMOVE;
}

static void
peer_start_tls (RelayPeer *peer)
{
  RelayCore *core = peer->core;
  g_autoptr(GIOStream) base = g_steal_pointer (&peer->stream);
  g_autoptr(GError) error = NULL;
  HandshakeData *hd;

  peer->stream = tlspyo_tls_server_new (base, core->certificate, &error);
  if (peer->stream == NULL)
    {
      g_warning ("Could not set up TLS for %s: %s", peer->address, error->message);
      peer_close (peer, error);
      return;
    }
  if (core->client_certificates != NULL)
    tlspyo_tls_server_require_client (peer->stream, core->client_certificates);
  hd = g_new (HandshakeData, 1);
  hd->core = relay_core_ref (core);
  hd->peer = peer;
  tlspyo_worker_hold ();
  g_tls_connection_handshake_async (G_TLS_CONNECTION (peer->stream), G_PRIORITY_DEFAULT,
                                    peer->cancellable, server_handshake_cb, hd);
}

/* The first byte tells a TLS ClientHello (a record starts with 0x16) from
 * a plain-TCP endpoint's HELLO (the frame magic). GnuTLS would fail on the
 * latter too, but by closing the connection: the endpoint would only see a
 * reset, and retry with no explanation. Instead it gets a REFUSED frame in
 * plain text that says what to change. Peeking leaves the byte in place for
 * the TLS handshake. */
static gboolean
peek_cb (GSocket      *socket,
         GIOCondition  condition,
         gpointer      user_data)
{
  RelayPeer *peer = user_data;
  GInputVector vector;
  guint8 first = 0;
  gint flags = G_SOCKET_MSG_PEEK;
  gssize n;

  g_clear_pointer (&peer->peek_source, g_source_unref);

  vector.buffer = &first;
  vector.size = 1;
  n = g_socket_receive_message (socket, NULL, &vector, 1, NULL, NULL, &flags, NULL, NULL);
  if (n == 1 && first == TLSPYO_FRAME_MAGIC)
    {
      peer->tls_missing = TRUE;
      peer_start_protocol (peer, peer->stream);
    }
  else
    peer_start_tls (peer);  /* and with it, whatever error the peer causes */

  return G_SOURCE_REMOVE;
}

/* What per-address limits count by: the IP address, or for IPv6 its /64
 * (one host usually has a whole /64 to pick addresses from). */
static char *
address_key (GInetAddress *inet)
{
  const guint8 *bytes = g_inet_address_to_bytes (inet);
  static const guint8 v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
  g_autoptr(GInetAddress) prefix = NULL;
  g_autofree char *text = NULL;
  guint8 masked[16];

  if (g_inet_address_get_family (inet) != G_SOCKET_FAMILY_IPV6)
    return g_inet_address_to_string (inet);
  if (memcmp (bytes, v4_mapped, sizeof v4_mapped) == 0)
    return g_strdup_printf ("%u.%u.%u.%u", bytes[12], bytes[13], bytes[14], bytes[15]);
  memcpy (masked, bytes, 8);
  memset (masked + 8, 0, 8);
  prefix = g_inet_address_new_from_bytes (masked, G_SOCKET_FAMILY_IPV6);
  text = g_inet_address_to_string (prefix);
  return g_strdup_printf ("%s/64", text);
}

static char *
describe_address (GSocketConnection  *connection,
                  char              **key)
{
  g_autoptr(GSocketAddress) address = g_socket_connection_get_remote_address (connection, NULL);

  if (G_IS_INET_SOCKET_ADDRESS (address))
    {
      GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (address);
      g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (inet));

      *key = address_key (g_inet_socket_address_get_address (inet));
      if (g_socket_address_get_family (address) == G_SOCKET_FAMILY_IPV6)
        return g_strdup_printf ("[%s]:%u", ip, g_inet_socket_address_get_port (inet));
      return g_strdup_printf ("%s:%u", ip, g_inet_socket_address_get_port (inet));
    }
  *key = g_strdup ("unknown");
  return g_strdup ("unknown");
}

/* A new connection, from a socket (@socket set: its first byte is peeked
 * to tell TLS from plain TCP) or from any stream (tests and fuzzing). */
static void
core_add_peer (RelayCore  *core,
               GIOStream  *stream,
               GSocket    *socket,
               const char *address,
               const char *address_key)
{
  g_autofree char *over_limit = NULL;
  RelayPeer *peer;

  if (core->store_failed)
    {
      /* Serves no more (core_store_failed()); only streams handed over
       * by tlspyo_relay_accept_stream() get this far. */
      g_io_stream_close (stream, NULL, NULL);
      return;
    }
  over_limit = core_check_connection_limits (core, address, address_key);
  if (over_limit != NULL && core->n_refusing >= MAX_REFUSING)
    {
      /* Too many to explain each: drop it before spending anything on it. */
      core_log_limit (core, "Closed the connection from %s at once: %s", address, over_limit);
      core_address_forget (core, address_key);
      g_io_stream_close (stream, NULL, NULL);
      return;
    }

  peer = g_new0 (RelayPeer, 1);
  peer->core = core;
  peer->address = g_strdup (address);
  peer->address_key = g_strdup (address_key);
  if (over_limit != NULL)
    {
      core_log_limit (core, "Refusing %s: %s", address, over_limit);
      peer->over_limit = g_steal_pointer (&over_limit);
      core->n_refusing++;
    }
  else
    {
      peer->counted = TRUE;
      core->n_counted++;
      core_address (core, address_key)->n_connections++;
    }
  peer->cancellable = g_cancellable_new ();
  peer->early = g_ptr_array_new_with_free_func (early_delivery_free);
  g_hash_table_add (core->peers, peer);

  peer->handshake_timer = g_timeout_source_new_seconds (core->handshake_timeout);
  g_source_set_callback (peer->handshake_timer, handshake_timeout_cb, peer, NULL);
  g_source_set_static_name (peer->handshake_timer, "[tlspyo] handshake timeout");
  g_source_attach (peer->handshake_timer, g_main_context_get_thread_default ());

  /* The base stream, until TLS replaces it. */
  peer->stream = g_object_ref (stream);
  if (core->certificate != NULL && socket != NULL)
    {
      peer->state = PEER_TLS_HANDSHAKE;
      peer->peek_source = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
      g_source_set_callback (peer->peek_source, G_SOURCE_FUNC (peek_cb), peer, NULL);
      g_source_set_static_name (peer->peek_source, "[tlspyo] first byte");
      g_source_attach (peer->peek_source, g_main_context_get_thread_default ());
    }
  else if (core->certificate != NULL)
    {
      peer->state = PEER_TLS_HANDSHAKE;
      peer_start_tls (peer);
    }
  else
    peer_start_protocol (peer, peer->stream);
}

static gboolean
incoming_cb (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source_object,
             gpointer           user_data)
{
  RelayCore *core = user_data;
  g_autofree char *address = NULL;
  g_autofree char *key = NULL;

  if (core->stopped)
    return TRUE;
  tlspyo_tls_set_nodelay (connection);
  address = describe_address (connection, &key);
  core_add_peer (core, G_IO_STREAM (connection), g_socket_connection_get_socket (connection),
                 address, key);
  return TRUE;
}

static gboolean
core_start_cb (gpointer data)
{
  RelayCore *core = data;
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GSocketAddress) effective = NULL;
  g_autoptr(GError) error = NULL;

  core->service = g_socket_service_new ();
  /* GIO's default backlog of 10 refuses bursts of endpoints (a fleet
   * starting together); the kernel caps this at somaxconn anyway. */
  g_socket_listener_set_backlog (G_SOCKET_LISTENER (core->service), 4096);

  if (core->no_listen)
    {
      core_start_durable (core);
      return G_SOURCE_REMOVE;  /* fed by tlspyo_relay_accept_stream() only */
    }
  if (core->address != NULL)
    {
      address = g_inet_socket_address_new_from_string (core->address, core->port);
      if (address == NULL)
        {
          core->start_error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                                           "'%s' is not an IP address: set the relay's address "
                                           "to an IPv4 or IPv6 address, or leave it unset to "
                                           "listen on every interface", core->address);
          return G_SOURCE_REMOVE;
        }
      if (!g_socket_listener_add_address (G_SOCKET_LISTENER (core->service), address,
                                          G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                          NULL, &effective, &error))
        goto failed;
      core->bound_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
    }
  else if (core->port == 0)
    {
      core->bound_port = g_socket_listener_add_any_inet_port (G_SOCKET_LISTENER (core->service),
                                                              NULL, &error);
      if (core->bound_port == 0)
        goto failed;
    }
  else
    {
      if (!g_socket_listener_add_inet_port (G_SOCKET_LISTENER (core->service), core->port,
                                            NULL, &error))
        goto failed;
      core->bound_port = core->port;
    }

  g_signal_connect (core->service, "incoming", G_CALLBACK (incoming_cb), core);
  core_start_durable (core);
  g_socket_service_start (core->service);
  return G_SOURCE_REMOVE;

failed:
  core->start_error = g_error_new (TLSPYO_ERROR, TLSPYO_ERROR_NETWORK,
                                   "Could not listen on %s port %u: %s: choose another port, "
                                   "or 0 to let the system pick a free one",
                                   core->address ? core->address : "every interface",
                                   core->port, error->message);
  g_socket_listener_close (G_SOCKET_LISTENER (core->service));
  g_clear_object (&core->service);
  return G_SOURCE_REMOVE;
}

static gboolean
core_stop_cb (gpointer data)
{
  RelayCore *core = data;
  g_autoptr(GPtrArray) peers = NULL;
  g_autoptr(GError) error = g_error_new_literal (TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                                                 "The relay stopped");

  core->stopped = TRUE;
  /* The state as it is now, objects in flight still held by their
   * sessions: as after a crash, a relay started again on the folder parks
   * them for their endpoints to resume. What closing the connections
   * changes below is not journaled. */
  if (core->store != NULL && !core->store_failed)
    {
      g_autoptr(GError) commit_error = NULL;

      tlspyo_router_set_journal (core->router, NULL, NULL);
      if (core_commit (core, &commit_error))
        tlspyo_write_gate_open (core->gate);
      else
        g_warning ("The relay could not save its state in its state directory %s while "
                   "stopping: %s. Started again, it goes on from the state saved last",
                   core->state_directory, commit_error->message);
    }
  if (core->service != NULL)
    {
      g_socket_service_stop (core->service);
      g_socket_listener_close (G_SOCKET_LISTENER (core->service));
      g_signal_handlers_disconnect_by_data (core->service, core);
    }

  {
    GHashTableIter iter;
    gpointer key;

    peers = g_ptr_array_new ();
    g_hash_table_iter_init (&iter, core->peers);
    while (g_hash_table_iter_next (&iter, &key, NULL))
      g_ptr_array_add (peers, key);
  }
  for (guint i = 0; i < peers->len; i++)
    {
      RelayPeer *peer = g_ptr_array_index (peers, i);
      if (peer->conn != NULL)
        tlspyo_connection_send (peer->conn, TLSPYO_FRAME_BYE,
                                g_variant_new ("(s)", "the relay stopped"), NULL, NULL);
      peer_close (peer, error);
    }
  /* Here and not at the last unref: the folder's lock must be free once
   * stop() returns, for a relay started again on it. */
  g_clear_pointer (&core->store, tlspyo_store_free);
  relay_core_unref (core);
  return G_SOURCE_REMOVE;
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

  relay_core_unref (call->core);
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
  self->users = user_table_new ();
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
   * credit ([method@Tlspyo.Endpoint.notify_ready]), or all queued for a
   * notify of -1, so their memory is bounded by what it asked for.
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
   * goes on from the state committed last. Since it stores every copy, the
   * relay then takes at most 65536 copies of one produced object. See the
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
  core = self->core ? relay_core_ref (self->core) : NULL;
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

/* Users (issue 6). The relay's table is copied into the worker's at
 * start(); later changes are copied over as they happen. */

typedef struct {
  RelayCore *core;
  RelayUser *user;
} UserCall;

static gboolean
core_update_user_cb (gpointer data)
{
  UserCall *call = data;
  RelayUser *existing = g_hash_table_lookup (call->core->users, call->user->name);

  /* In place: connected endpoints of this user get the new rights at once
   * (and a new password applies to the next handshake). */
  if (existing != NULL)
    relay_user_assign (existing, call->user);
  else
    {
      RelayUser *copy = relay_user_copy (call->user);
      g_hash_table_insert (call->core->users, copy->name, copy);
    }
  return G_SOURCE_REMOVE;
}

/* Called with the mutex held; releases it. */
static void
relay_push_user_unlock (TlspyoRelay *self,
                        RelayUser   *user)
{
  UserCall call = { NULL, NULL };

  if (self->core != NULL)
    {
      call.core = relay_core_ref (self->core);
      call.user = relay_user_copy (user);
    }
  g_mutex_unlock (&self->mutex);
  if (call.core == NULL)
    return;
  tlspyo_worker_invoke_sync (self->worker, core_update_user_cb, &call);
  relay_user_unref (call.user);
  relay_core_unref (call.core);
}

/**
 * tlspyo_relay_hash_password:
 * @password: a user's password
 * @iterations: PBKDF2 rounds, from 10000 to 10000000, or 0 for the default
 *   (200000)
 * @error: return location for a #GError
 *
 * Makes the hash [method@Tlspyo.Relay.add_user] takes, as `tlspyo
 * credentials hash-password` does: `pbkdf2-sha256$ROUNDS$SALT$KEY`, with a
 * random salt. The relay stores only this, never the password; the key in
 * it is what the endpoint proves it can derive from the password, so keep
 * hashes as secret as passwords (they let one pose as the relay to that
 * user's endpoints, not log in as the user).
 *
 * Returns: (transfer full): the hash, or %NULL with @error set
 *
 * Since: 0.1
 */
char *
tlspyo_relay_hash_password (const char  *password,
                            guint        iterations,
                            GError     **error)
{
  g_return_val_if_fail (password != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return tlspyo_auth_hash_password (password,
                                    iterations ? iterations : TLSPYO_AUTH_DEFAULT_HASH_ITERATIONS,
                                    error);
}

/**
 * tlspyo_relay_add_user:
 * @self: a relay
 * @name: the user's name, which its endpoints set as their
 *   [property@Tlspyo.Endpoint:user]
 * @password_hash: the user's password hash, from
 *   [func@Tlspyo.Relay.hash_password] or `tlspyo credentials hash-password`
 * @error: return location for a #GError
 *
 * Adds a named user, or replaces its password. A user has no right until
 * [method@Tlspyo.Relay.grant] gives it some. Endpoints that name no user
 * use the relay's shared [property@Tlspyo.Relay:password] and have every
 * right; a relay with users and no password accepts only users.
 *
 * Returns: %TRUE, or %FALSE with @error set when the name or the hash is
 *   malformed (%TLSPYO_ERROR_INVALID_ARGUMENT)
 *
 * Since: 0.1
 */
gboolean
tlspyo_relay_add_user (TlspyoRelay  *self,
                       const char   *name,
                       const char   *password_hash,
                       GError      **error)
{
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  guint8 key[TLSPYO_AUTH_KEY_SIZE];
  gsize salt_len;
  guint iterations;
  RelayUser *user;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tlspyo_auth_user_name_check (name, error))
    return FALSE;
  if (!tlspyo_auth_parse_hash (password_hash, salt, &salt_len, &iterations, key, error))
    {
      g_prefix_error (error, "User '%s': ", name);
      return FALSE;
    }

  g_mutex_lock (&self->mutex);
  user = g_hash_table_lookup (self->users, name);
  if (user == NULL)
    {
      user = relay_user_new (name);
      g_hash_table_insert (self->users, user->name, user);
    }
  memcpy (user->salt, salt, salt_len);
  user->salt_len = salt_len;
  user->iterations = iterations;
  memcpy (user->key, key, sizeof key);
  tlspyo_auth_wipe (key, sizeof key);
  relay_push_user_unlock (self, user);
  return TRUE;
}

/**
 * tlspyo_relay_grant:
 * @self: a relay
 * @user: a user added with [method@Tlspyo.Relay.add_user]
 * @group: (nullable): a group name, or %NULL for every group
 * @rights: what @user may do in @group
 *
 * Sets the rights of a named user in a group, replacing what was granted
 * for that group before (%TLSPYO_RIGHTS_NONE takes them away). The rights
 * in a group are those granted for it plus those granted for every group.
 * Endpoints of the user that are connected get the new rights at once.
 *
 * An endpoint that asks to join a group without %TLSPYO_RIGHTS_JOIN is
 * refused with %TLSPYO_ERROR_PERMISSION_DENIED; a broadcast, a produce or a
 * notify_ready without the right is dropped, and the endpoint told with
 * [signal@Tlspyo.Endpoint::action-refused].
 *
 * Since: 0.1
 */
void
tlspyo_relay_grant (TlspyoRelay  *self,
                    const char   *user,
                    const char   *group,
                    TlspyoRights  rights)
{
  RelayUser *entry;

  g_return_if_fail (TLSPYO_IS_RELAY (self));
  g_return_if_fail (user != NULL);
  g_return_if_fail (group == NULL || tlspyo_group_name_check (group, NULL));
  g_return_if_fail ((rights & ~TLSPYO_RIGHTS_ALL) == 0);

  g_mutex_lock (&self->mutex);
  entry = g_hash_table_lookup (self->users, user);
  if (entry == NULL)
    {
      g_mutex_unlock (&self->mutex);
      g_critical ("%s: no user '%s': add it with tlspyo_relay_add_user() first", G_STRFUNC, user);
      return;
    }
  if (group == NULL)
    entry->every_group = rights;
  else
    g_hash_table_insert (entry->groups, g_strdup (group), GUINT_TO_POINTER (rights));
  relay_push_user_unlock (self, entry);
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
  core->peers = g_hash_table_new_full (NULL, NULL, (GDestroyNotify) peer_free, NULL);
  core->deliver_meta = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                              (GDestroyNotify) g_bytes_unref);
  core->sessions = g_hash_table_new_full (session_id_hash, session_id_equal, NULL,
                                          (GDestroyNotify) relay_session_unref);
  core->router = tlspyo_router_new (router_deliver_cb, router_drop, core);
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
  core->users = user_table_new ();
  {
    GHashTableIter iter;
    RelayUser *user;

    g_hash_table_iter_init (&iter, self->users);
    while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &user))
      {
        RelayUser *copy = relay_user_copy (user);
        g_hash_table_insert (core->users, copy->name, copy);
      }
  }
  if (self->client_certificates_dir != NULL)
    {
      if (core->certificate == NULL)
        {
          g_mutex_unlock (&self->mutex);
          relay_core_unref (core);
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
          relay_core_unref (core);
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
      relay_core_unref (core);
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
                                                    (GDestroyNotify) relay_session_unref, NULL);
      core->store = tlspyo_store_open (self->state_directory, error);
      if (core->store == NULL || !core_restore (core, error))
        {
          g_mutex_unlock (&self->mutex);
          relay_core_unref (core);
          return FALSE;
        }
    }
  g_mutex_unlock (&self->mutex);

  self->worker = tlspyo_worker_get ();
  tlspyo_worker_invoke_sync (self->worker, core_start_cb, core);

  if (core->start_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&core->start_error));
      relay_core_unref (core);
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
  tlspyo_worker_invoke_sync (worker, core_stop_cb, core);
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

/* Stats (issue 5, item 7): computed on the worker, which owns the state. */

typedef struct {
  RelayCore       *core;
  GVariantBuilder *groups;
  guint64          queued, queued_bytes, in_flight, dropped;
} GroupStatsCall;

static void
group_stats (gpointer data,
             gpointer user_data)
{
  const char *group = data;
  GroupStatsCall *call = user_data;
  TlspyoRouter *router = call->core->router;
  guint64 queued = tlspyo_router_get_queue_length (router, group);
  guint64 queued_bytes = tlspyo_router_get_queued_bytes (router, group);
  guint64 in_flight = tlspyo_router_get_n_in_flight (router, group);
  guint64 dropped = tlspyo_router_get_n_dropped (router, group);

  g_variant_builder_add (call->groups, "{s@a{sv}}", group,
                         g_variant_new_parsed ("{'members': <%u>, 'queued': <%t>, "
                                               "'queued-bytes': <%t>, 'in-flight': <%t>, "
                                               "'credit': <%t>, 'dropped': <%t>, "
                                               "'has-latest': <%b>}",
                                               tlspyo_router_get_n_members (router, group),
                                               queued, queued_bytes, in_flight,
                                               tlspyo_router_get_credit (router, group),
                                               dropped,
                                               tlspyo_router_has_latest (router, group)));
  call->queued += queued;
  call->queued_bytes += queued_bytes;
  call->in_flight += in_flight;
  call->dropped += dropped;
}

typedef struct {
  RelayCore *core;
  GVariant  *stats;
} StatsCall;

static gboolean
core_stats_cb (gpointer data)
{
  StatsCall *call = data;
  RelayCore *core = call->core;
  GVariantBuilder groups, conns, stats;
  GroupStatsCall group_call = { core, &groups, 0, 0, 0, 0 };
  guint64 bytes_in = 0, bytes_out = 0, out_queued = 0;
  GHashTableIter iter;
  gpointer key;

  g_variant_builder_init (&groups, G_VARIANT_TYPE ("a{sa{sv}}"));
  if (core->router != NULL)
    tlspyo_router_foreach_group (core->router, group_stats, &group_call);

  g_variant_builder_init (&conns, G_VARIANT_TYPE ("aa{sv}"));
  g_hash_table_iter_init (&iter, core->peers);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      RelayPeer *peer = key;
      guint64 in, out, queued, held_bytes = 0;

      if (peer->conn == NULL)
        continue;  /* still in the TLS handshake */
      in = tlspyo_connection_get_bytes_in (peer->conn);
      out = tlspyo_connection_get_bytes_out (peer->conn);
      queued = tlspyo_connection_get_queued_bytes (peer->conn);
      bytes_in += in;
      bytes_out += out;
      out_queued += queued;
      if (peer->held != NULL)
        {
          GHashTableIter held_iter;
          gpointer value;

          g_hash_table_iter_init (&held_iter, peer->held);
          while (g_hash_table_iter_next (&held_iter, NULL, &value))
            held_bytes += g_bytes_get_size (((HeldBroadcast *) value)->object);
        }
      g_variant_builder_add_parsed (&conns, "{'address': <%s>, 'joined': <%b>, "
                                    "'bytes-in': <%t>, 'bytes-out': <%t>, "
                                    "'queued-bytes': <%t>, 'held-bytes': <%t>, "
                                    "'coalesced': <%t>}",
                                    peer->address, peer->state == PEER_JOINED, in, out, queued,
                                    held_bytes, peer->n_coalesced);
    }

  g_variant_builder_init (&stats, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&stats, "{sv}", "groups", g_variant_builder_end (&groups));
  g_variant_builder_add (&stats, "{sv}", "connections", g_variant_builder_end (&conns));
  g_variant_builder_add (&stats, "{sv}", "n-connections",
                         g_variant_new_uint32 ((guint32) g_atomic_int_get (&core->n_joined)));
  g_variant_builder_add (&stats, "{sv}", "bytes-in", g_variant_new_uint64 (bytes_in));
  g_variant_builder_add (&stats, "{sv}", "bytes-out", g_variant_new_uint64 (bytes_out));
  g_variant_builder_add (&stats, "{sv}", "queued-bytes", g_variant_new_uint64 (out_queued));
  g_variant_builder_add (&stats, "{sv}", "queued", g_variant_new_uint64 (group_call.queued));
  g_variant_builder_add (&stats, "{sv}", "produced-bytes",
                         g_variant_new_uint64 (group_call.queued_bytes));
  g_variant_builder_add (&stats, "{sv}", "in-flight", g_variant_new_uint64 (group_call.in_flight));
  g_variant_builder_add (&stats, "{sv}", "dropped", g_variant_new_uint64 (group_call.dropped));
  g_variant_builder_add (&stats, "{sv}", "duplicates", g_variant_new_uint64 (core->n_duplicates));
  call->stats = g_variant_builder_end (&stats);
  return G_SOURCE_REMOVE;
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
  call.core = self->core ? relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);

  if (call.core == NULL)
    return g_variant_new_parsed ("{'groups': <@a{sa{sv}} {}>, 'connections': <@aa{sv} []>, "
                                 "'n-connections': <%u>, 'bytes-in': <%t>, 'bytes-out': <%t>, "
                                 "'queued-bytes': <%t>, 'queued': <%t>, 'produced-bytes': <%t>, "
                                 "'in-flight': <%t>, 'dropped': <%t>, 'duplicates': <%t>}",
                                 0u, (guint64) 0, (guint64) 0, (guint64) 0, (guint64) 0,
                                 (guint64) 0, (guint64) 0, (guint64) 0, (guint64) 0);
  tlspyo_worker_invoke_sync (self->worker, core_stats_cb, &call);
  relay_core_unref (call.core);
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
    core_add_peer (call->core, call->stream, NULL, call->address, call->address);
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
  call.core = self->core ? relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);
  g_return_if_fail (call.core != NULL);

  tlspyo_worker_invoke_sync (self->worker, core_accept_stream_cb, &call);
  relay_core_unref (call.core);
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
  call.core = self->core ? relay_core_ref (self->core) : NULL;
  g_mutex_unlock (&self->mutex);
  if (call.core == NULL)
    return 0;

  tlspyo_worker_invoke_sync (self->worker, core_count_peers_cb, &call);
  relay_core_unref (call.core);
  return call.n_peers;
}
