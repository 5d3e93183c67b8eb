/* SPDX-License-Identifier: MIT */
#pragma once

/* What the files of a relay share; not API. tlspyo-relay.c is the GObject:
 * properties, signals, start/stop, groups, stats. tlspyo-relay-users.c holds
 * the users and their rights; tlspyo-relay-core.c the worker side as a
 * whole (listening, accepting, stopping); tlspyo-relay-auth.c the limits and
 * the HELLO/AUTH handshake; tlspyo-relay-peer.c one connection's frames;
 * tlspyo-relay-deliver.c deliveries and output bounds;
 * tlspyo-relay-durable.c sessions and the durable relay.
 *
 * The first part is also a way into a relay for tests and fuzzing: its
 * protocol driven over any stream (memory, pipes), without a listening
 * socket. */

#include "tlspyo-relay.h"
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

G_BEGIN_DECLS

/* Before tlspyo_relay_start(): FALSE starts the relay without listening. */
void  tlspyo_relay_set_listening  (TlspyoRelay *self,
                                   gboolean     listening);
/* Serves @stream as a new connection from @address (a description such as
 * "192.0.2.1:4000", also the key of per-address limits). With TLS the
 * relay runs the server handshake on it. The relay must be running. */
void  tlspyo_relay_accept_stream  (TlspyoRelay *self,
                                   GIOStream   *stream,
                                   const char  *address);
/* Connections the relay holds, joined or not, including ones closing. */
guint tlspyo_relay_get_n_peers    (TlspyoRelay *self);

/* Shared by the relay's files. */

#define DEFAULT_PORT 2096
#define DEFAULT_HANDSHAKE_TIMEOUT 10
#define DEFAULT_KEEPALIVE_INTERVAL 15.0
#define DEFAULT_MAX_OUTPUT_BYTES ((guint64) 64 * 1024 * 1024)
#define DEFAULT_SESSION_TIMEOUT 30.0
/* How often a connection over max-output-bytes is checked for room. */
#define OUTPUT_DRAIN_CHECK_MS 20

/* Copies of one produced object the relay takes in one frame: each copy
 * is handed out (and, in a durable relay, stored) on its own, so one frame
 * of 2^31 copies to a consumer with as much credit would hold the relay for
 * minutes (hours with a store). */
#define MAX_COPIES                          65536

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
#define DEFAULT_MAX_IN_FLIGHT_BYTES         ((guint64) 256 * 1024 * 1024)
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
  guint64 max_in_flight_bytes;
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

enum {
  SIGNAL_ENDPOINT_CONNECTED,
  SIGNAL_ENDPOINT_DISCONNECTED,
  SIGNAL_ENDPOINT_REFUSED,
  SIGNAL_OBJECT_DROPPED,
  N_SIGNALS
};

/* The worker side. RelayCore and what it holds are used on the worker
 * thread only (n_joined aside). */

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
  /* group -> serialized PRODUCED metadata; [1] for credit, [0] for a
   * notify of -1. Looked up by the group's name: no key is built per
   * delivery. */
  GHashTable      *produced_meta[2];
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
  TlspyoStore     *store;  /* with a state-directory; closed by tlspyo_relay_core_stop_cb() */
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

/* Bounded memory (issue 5): a broadcast for an endpoint that reads slower
 * than they come is held, the latest per group, while its connection has
 * more than max-output-bytes waiting; one object always goes, so a limit
 * below an object's size does not stop it. */
typedef struct {
  GBytes  *object;
  GBytes  *meta;
  guint64  n_coalesced;  /* older ones it replaced, never sent */
} HeldBroadcast;

/* Limits. Per source address: open connections, and failed
 * authentications, which are forgotten auth-block-time after the last one. */

typedef struct {
  guint  n_connections;
  guint  failures;
  gint64 last_failure;   /* monotonic µs */
  gint64 blocked_until;  /* monotonic µs; 0 when not blocked */
} AddressState;

typedef struct {
  RelayCore *core;
  GVariant  *stats;
} StatsCall;

/* tlspyo-relay.c */
void
tlspyo_relay_core_emit (RelayCore          *core,
                        guint               signal,
                        const char         *address,
                        const char * const *groups,
                        TlspyoError         code,
                        const char         *reason);

void
tlspyo_relay_core_emit_dropped (RelayCore  *core,
                                const char *group,
                                const char *reason,
                                guint64     n_objects);

/* tlspyo-relay-core.c */
RelayCore *
tlspyo_relay_core_ref (RelayCore *core);

void
tlspyo_relay_core_unref (RelayCore *core);

void
tlspyo_relay_core_add_peer (RelayCore  *core,
                            GIOStream  *stream,
                            GSocket    *socket,
                            const char *address,
                            const char *address_key);

gboolean
tlspyo_relay_core_start_cb (gpointer data);

gboolean
tlspyo_relay_core_stop_cb (gpointer data);

gboolean
tlspyo_relay_core_stats_cb (gpointer data);

/* tlspyo-relay-users.c */
RelayUser *
tlspyo_relay_user_ref (RelayUser *user);

void
tlspyo_relay_user_unref (RelayUser *user);

RelayUser *
tlspyo_relay_user_copy (RelayUser *user);

TlspyoRights
tlspyo_relay_user_rights (RelayUser  *user,
                          const char *group);

GHashTable *
tlspyo_relay_user_table_new (void);

/* tlspyo-relay-auth.c */
AddressState *
tlspyo_relay_core_address (RelayCore  *core,
                           const char *key);

void
tlspyo_relay_core_address_forget (RelayCore  *core,
                                  const char *key);

void
tlspyo_relay_core_log_limit (RelayCore  *core,
                             const char *format,
                             ...) G_GNUC_PRINTF (2, 3);

char *
tlspyo_relay_core_check_connection_limits (RelayCore  *core,
                                           const char *address,
                                           const char *key);

gboolean
tlspyo_relay_handle_hello (RelayPeer         *peer,
                           const TlspyoFrame *frame);

gboolean
tlspyo_relay_peer_has_right (RelayPeer    *peer,
                             const char   *group,
                             TlspyoRights  right);

gboolean
tlspyo_relay_handle_auth (RelayPeer         *peer,
                          const TlspyoFrame *frame);

void
tlspyo_relay_peer_deny (RelayPeer   *peer,
                        TlspyoError  code,
                        const char  *group,
                        const char  *reason);

gboolean
tlspyo_relay_peer_may_route (RelayPeer *peer,
                             GVariant  *destinations,
                             GBytes    *object);

/* tlspyo-relay-peer.c */
void
tlspyo_relay_peer_free (RelayPeer *peer);

gboolean
tlspyo_relay_peer_refuse (RelayPeer   *peer,
                          TlspyoError  code,
                          const char  *reason);

gboolean
tlspyo_relay_peer_protocol_error (RelayPeer  *peer,
                                  const char *format,
                                  ...) G_GNUC_PRINTF (2, 3);

void
tlspyo_relay_peer_close (RelayPeer    *peer,
                         const GError *error);

void
tlspyo_relay_peer_start_protocol (RelayPeer *peer,
                                  GIOStream *stream);

gboolean
tlspyo_relay_handshake_timeout_cb (gpointer user_data);

void
tlspyo_relay_peer_start_tls (RelayPeer *peer);

/* tlspyo-relay-deliver.c */
void
tlspyo_relay_early_delivery_free (gpointer data);

void
tlspyo_relay_peer_report_coalesced (RelayPeer     *peer,
                                    const char    *group,
                                    HeldBroadcast *held);

void
tlspyo_relay_peer_release_early (RelayPeer *peer,
                                 GVariant  *seen);

void
tlspyo_relay_router_deliver_cb (gpointer              peer_data,
                                const char           *group,
                                GBytes               *object,
                                TlspyoRouterDelivery  kind,
                                guint64               number,
                                gpointer              user_data);

void
tlspyo_relay_router_drop (const char *group,
                          const char *reason,
                          guint64     n_objects,
                          gpointer    user_data);

/* tlspyo-relay-durable.c */
RelaySession *
tlspyo_relay_session_ref (RelaySession *session);

void
tlspyo_relay_session_stop_timer (RelaySession *session);

void
tlspyo_relay_session_unref (RelaySession *session);

guint
tlspyo_relay_session_id_hash (gconstpointer key);

gboolean
tlspyo_relay_session_id_equal (gconstpointer a,
                               gconstpointer b);

RelaySession *
tlspyo_relay_core_session (RelayCore    *core,
                           const guint8 *id);

void
tlspyo_relay_core_session_dirty (RelaySession *session);

gboolean
tlspyo_relay_core_commit (RelayCore  *core,
                          GError    **error);

void
tlspyo_relay_core_store_failed (RelayCore    *core,
                                const GError *error);

gboolean
tlspyo_relay_core_restore (RelayCore  *core,
                           GError    **error);

void
tlspyo_relay_core_start_durable (RelayCore *core);

void
tlspyo_relay_session_start_timer (RelaySession *session);

G_END_DECLS
