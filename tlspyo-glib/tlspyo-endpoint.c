/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <math.h>
#include <string.h>

#include "tlspyo-endpoint.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-connection-private.h"
#include "tlspyo-credentials.h"
#include "tlspyo-enums.h"
#include "tlspyo-error.h"
#include "tlspyo-keepalive-private.h"
#include "tlspyo-tls-private.h"
#include "tlspyo-wait-private.h"
#include "tlspyo-worker-private.h"

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

typedef struct _EndpointCore EndpointCore;

typedef struct {
  TlspyoFrameType  type;
  GBytes          *meta;     /* serialized */
  GBytes          *data;
  GBytes          *trailer;
  char            *credit_group;  /* a NOTIFY with positive credit: its group */
  gsize            size;       /* what it counts in max-buffered-bytes */
  gboolean         sequenced;  /* an OBJECT or a NOTIFY of -1: resent until acknowledged */
  gboolean         has_seq;    /* numbered, when first sent */
  guint64          seq;
} OutItem;

/* What the endpoint knows of an object it received: a produced one must be
 * reported taken (TAKEN) once the application has it, or forgotten if its
 * connection ends first, since the relay then hands it out again. */
typedef struct {
  char     *group;        /* NULL for a broadcast */
  gboolean  used_credit;
  guint64   epoch;        /* the connection it came on */
} ReceivedTag;

typedef struct {
  GTask        *task;
  guint         max_items;
  GCancellable *cancellable;
  gulong        cancel_id;
} PopRequest;

struct _TlspyoEndpoint {
  GObject           parent_instance;

  GMutex            mutex;
  GCond             cond;

  /* settings */
  char             *host;
  guint             port;
  TlspyoAuthSecret *secret;
  char            **groups;
  TlspyoSecurity    security;
  char             *credentials_dir;
  GTlsCertificate  *certificate;
  char             *server_identity;
  char             *user;  /* issue 6: NULL for the shared password */
  GTlsCertificate  *client_certificate;  /* issue 6: mutual TLS, or NULL */
  double            reconnect_initial_delay;
  double            reconnect_max_delay;
  double            reconnect_factor;
  double            reconnect_jitter;
  double            stop_timeout;
  guint             handshake_timeout;
  guint64           max_object_size;
  double            keepalive_interval;
  guint64           max_buffered_bytes;

  /* state shared with the worker, under the mutex */
  gboolean          running;
  gboolean          connected;
  GError           *refusal;       /* why the last attempt was refused, for wait_connected */
  char             *last_failure;  /* why the last attempt failed, for timeout messages */
  GQueue            outgoing;      /* OutItem not yet handed to a connection */
  GQueue            inflight;      /* OutItem sent, not acknowledged */
  GQueue            received;      /* GVariant */
  GQueue            received_tags; /* ReceivedTag* or NULL, one per received object */
  GQueue            dispatching;   /* ReceivedTag* of objects on their way to object-received */
  guint64           epoch;         /* counts the connections that ended */
  GHashTable       *taken;         /* group -> count (GUINT_TO_POINTER): TAKEN to send */
  GQueue            pop_requests;  /* PopRequest */
  GHashTable       *dest_cache;    /* "b" or "p" + group -> serialized OBJECT metadata */
  GHashTable       *credit;        /* group -> gint64*: notified, not yet used by the relay */
  guint64           buffered_bytes;  /* the sizes of the items in outgoing and inflight */
  guint8            session_id[TLSPYO_SESSION_ID_SIZE];  /* for the endpoint's lifetime */
  guint64           next_seq;      /* for the next sequenced item sent for the first time */
  guint             pending_dispatch;
  GThread          *owner_thread;
  GMainContext     *owner_context;

  TlspyoWorker     *worker;
  EndpointCore     *core;
};

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

static void
out_item_free (gpointer data)
{
  OutItem *item = data;

  g_clear_pointer (&item->meta, g_bytes_unref);
  g_clear_pointer (&item->data, g_bytes_unref);
  g_clear_pointer (&item->trailer, g_bytes_unref);
  g_free (item->credit_group);
  g_free (item);
}

static gsize
out_item_size (const OutItem *item)
{
  return TLSPYO_FRAME_HEADER_SIZE + g_bytes_get_size (item->meta) +
         (item->data != NULL ? g_bytes_get_size (item->data) : 0) +
         (item->trailer != NULL ? g_bytes_get_size (item->trailer) : 0);
}

/* For an item that leaves outgoing or inflight for good. */
static void
out_item_drop_locked (TlspyoEndpoint *self,
                      OutItem        *item)
{
  self->buffered_bytes -= item->size;
  out_item_free (item);
}

static void
received_tag_free (gpointer data)
{
  ReceivedTag *tag = data;

  if (tag != NULL)
    {
      g_free (tag->group);
      g_free (tag);
    }
}

static void kick_locked (TlspyoEndpoint *self);
static void give_back_credit_locked (TlspyoEndpoint *self, ReceivedTag *tag);

/* The application has the object of @tag (popped, or consumed by a
 * handler): the relay can forget it. Only for objects of the current
 * connection; those of a connection that ended were handed out again. */
static void
note_taken_locked (TlspyoEndpoint *self,
                   ReceivedTag    *tag)
{
  guint n;

  if (tag == NULL || tag->group == NULL || tag->epoch != self->epoch)
    return;
  /* Sent at the worker's next iteration: it cannot reach 2^32 before. */
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->taken, tag->group));
  g_hash_table_insert (self->taken, g_strdup (tag->group), GUINT_TO_POINTER (n + 1));
  kick_locked (self);
}

static void
wake_locked (TlspyoEndpoint *self)
{
  tlspyo_wait_wake (&self->cond, self->owner_context);
}

/* Notifications for the owner's context. They hold the endpoint weakly, so
 * that one the owner never dispatches does not keep it alive. */

typedef struct {
  GWeakRef     endpoint;
  GVariant    *object;
  char        *group;
  ReceivedTag *tag;  /* owned by the endpoint's dispatching queue */
} Dispatch;

static void
dispatch_free (gpointer data)
{
  Dispatch *d = data;

  g_clear_pointer (&d->object, g_variant_unref);
  g_free (d->group);
  /* Never dispatched (the owner's context went away): nobody took it. */
  if (d->tag != NULL)
    {
      g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);

      if (self != NULL)
        {
          g_mutex_lock (&self->mutex);
          g_queue_remove (&self->dispatching, d->tag);
          g_mutex_unlock (&self->mutex);
        }
      received_tag_free (d->tag);
    }
  g_weak_ref_clear (&d->endpoint);
  g_free (d);
}

static void
post_to_owner (GMainContext *context,
               GSourceFunc   func,
               Dispatch     *d)
{
  GSource *source = g_idle_source_new ();

  g_source_set_callback (source, func, d, dispatch_free);
  g_source_set_static_name (source, "[tlspyo] endpoint dispatch");
  g_source_attach (source, context);
  g_source_unref (source);
}

static gboolean
notify_connected_cb (gpointer data)
{
  Dispatch *d = data;
  g_autoptr(GObject) self = g_weak_ref_get (&d->endpoint);

  if (self != NULL)
    g_object_notify_by_pspec (self, properties[PROP_CONNECTED]);
  return G_SOURCE_REMOVE;
}

/* Hands objects to waiting pop_async() calls first, then to the queue.
 * Tasks to complete are collected, to be returned after unlocking. */
static void
queue_object_locked (TlspyoEndpoint *self,
                     GVariant       *object,
                     ReceivedTag    *tag,
                     GPtrArray      *completed)
{
  PopRequest *request = g_queue_pop_head (&self->pop_requests);

  if (request != NULL)
    {
      GPtrArray *objects = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);

      g_ptr_array_add (objects, object);
      g_task_set_task_data (request->task, objects, (GDestroyNotify) g_ptr_array_unref);
      g_ptr_array_add (completed, request);
      note_taken_locked (self, tag);
      received_tag_free (tag);
    }
  else
    {
      g_queue_push_tail (&self->received, object);
      g_queue_push_tail (&self->received_tags, tag);
    }
  wake_locked (self);
}

static void
complete_pop_requests (GPtrArray *completed)
{
  for (guint i = 0; i < completed->len; i++)
    {
      PopRequest *request = g_ptr_array_index (completed, i);
      GPtrArray *objects = g_task_get_task_data (request->task);

      if (request->cancel_id != 0)
        g_cancellable_disconnect (request->cancellable, request->cancel_id);
      g_task_return_pointer (request->task, g_ptr_array_ref (objects),
                             (GDestroyNotify) g_ptr_array_unref);
      g_clear_object (&request->task);
      g_clear_object (&request->cancellable);
      g_free (request);
    }
}

static gboolean
object_received_cb (gpointer data)
{
  Dispatch *d = data;
  g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);
  g_autoptr(GPtrArray) completed = NULL;
  gboolean handled = FALSE;

  if (self == NULL)
    return G_SOURCE_REMOVE;

  /* A produced object whose connection ended on its way here: the relay
   * hands it out again, and its credit was given back. */
  g_mutex_lock (&self->mutex);
  g_queue_remove (&self->dispatching, d->tag);
  if (d->tag != NULL && d->tag->group != NULL && d->tag->epoch != self->epoch)
    {
      self->pending_dispatch--;
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
      g_mutex_unlock (&self->mutex);
      return G_SOURCE_REMOVE;
    }
  g_mutex_unlock (&self->mutex);

  g_signal_emit (self, signals[SIGNAL_OBJECT_RECEIVED], g_quark_from_string (d->group),
                 d->object, d->group, &handled);

  completed = g_ptr_array_new ();
  g_mutex_lock (&self->mutex);
  self->pending_dispatch--;
  if (!handled && d->tag != NULL && d->tag->group != NULL && d->tag->epoch != self->epoch)
    {
      /* Its connection ended while the handlers ran: as above. */
      give_back_credit_locked (self, d->tag);
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
    }
  else if (!handled)
    queue_object_locked (self, g_steal_pointer (&d->object), g_steal_pointer (&d->tag),
                         completed);
  else
    {
      note_taken_locked (self, d->tag);
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
    }
  g_mutex_unlock (&self->mutex);
  complete_pop_requests (completed);
  return G_SOURCE_REMOVE;
}

/* Called on the worker. Objects go straight to the queue unless someone
 * listens to object-received: then they travel through the owner's context,
 * where the signal must be emitted, and everything after them too so that
 * order is kept. */
static void
endpoint_receive (TlspyoEndpoint *self,
                  GVariant       *object,
                  const char     *group,
                  gboolean        produced,
                  gboolean        used_credit)
{
  ReceivedTag *tag = NULL;
  GQuark detail = g_quark_try_string (group);
  g_autoptr(GPtrArray) completed = g_ptr_array_new ();
  /* Before GLib 2.78, a non-zero detail matches only handlers connected
   * with exactly that detail, not those connected without one. */
  gboolean listening =
    g_signal_has_handler_pending (self, signals[SIGNAL_OBJECT_RECEIVED], 0, FALSE) ||
    (detail != 0 &&
     g_signal_has_handler_pending (self, signals[SIGNAL_OBJECT_RECEIVED], detail, FALSE));

  g_mutex_lock (&self->mutex);
  if (produced)
    {
      tag = g_new0 (ReceivedTag, 1);
      tag->group = g_strdup (group);
      tag->used_credit = used_credit;
      tag->epoch = self->epoch;
    }
  if (self->pending_dispatch > 0 || listening)
    {
      Dispatch *d = g_new0 (Dispatch, 1);

      self->pending_dispatch++;
      g_weak_ref_init (&d->endpoint, self);
      d->object = object;
      d->group = g_strdup (group);
      d->tag = tag;
      if (tag != NULL)
        g_queue_push_tail (&self->dispatching, tag);
      post_to_owner (self->owner_context, object_received_cb, d);
    }
  else
    queue_object_locked (self, object, tag, completed);
  g_mutex_unlock (&self->mutex);
  complete_pop_requests (completed);
}

static void
endpoint_use_credit (TlspyoEndpoint *self,
                     const char     *group)
{
  gint64 *credit;

  g_mutex_lock (&self->mutex);
  credit = g_hash_table_lookup (self->credit, group);
  if (credit != NULL && *credit > 0 && --*credit == 0)
    g_hash_table_remove (self->credit, group);
  g_mutex_unlock (&self->mutex);
}

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

  /* Acknowledged like OBJECT, so that stop() waits for it: a TAKEN lost
   * on the way would have the relay hand the objects out again. Not
   * sequenced: it means nothing on another connection. */
  item = g_new0 (OutItem, 1);
  item->type = TLSPYO_FRAME_TAKEN;
  item->meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_TAKEN,
                                            g_variant_new ("(a{su})", &builder));
  item->size = out_item_size (item);
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
  tlspyo_connection_send (core->conn, TLSPYO_FRAME_SESSION,
                          g_variant_new ("(@ayt)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                    self->session_id,
                                                                    sizeof self->session_id, 1),
                                         first),
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
static void
kick_locked (TlspyoEndpoint *self)
{
  EndpointCore *core = self->core;

  if (core != NULL && g_atomic_int_compare_and_exchange (&core->kick_pending, 0, 1))
    tlspyo_worker_invoke (self->worker, kick_cb, core_ref (core), (GDestroyNotify) core_unref);
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
    post_to_owner (self->owner_context, notify_connected_cb, d);
  }
  g_debug ("Connected to %s", core->peer);
  core_send_session (core);
  return TRUE;
}

/* The answer to SESSION: the number the relay expects next. What is
 * numbered below was handled (its acknowledgement was lost with the
 * previous connection): dropped, not sent again. Then everything waiting
 * goes, credit first. */
static gboolean
handle_resumed (EndpointCore      *core,
                const TlspyoFrame *frame)
{
  TlspyoEndpoint *self = core->endpoint;
  guint64 next, relay_max;
  OutItem *item;

  if (core->state != CORE_AWAIT_RESUMED)
    return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent an unexpected RESUMED",
                      core->peer);
  g_variant_get (frame->meta, "(tt)", &next, &relay_max);
  core->relay_max_object_size = relay_max;

  g_mutex_lock (&self->mutex);
  while ((item = g_queue_peek_head (&self->outgoing)) != NULL &&
         item->has_seq && item->seq < next)
    out_item_drop_locked (self, g_queue_pop_head (&self->outgoing));
  /* Only with a relay that knows more than this endpoint sent (not ours):
   * stay in step with its numbering. */
  if (self->next_seq < next && (item == NULL || !item->has_seq))
    self->next_seq = next;
  wake_locked (self);
  g_mutex_unlock (&self->mutex);

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
    g_signal_emit (self, signals[SIGNAL_ACTION_REFUSED], 0, d->group, d->code, d->reason);
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

static gboolean
core_frame_cb (TlspyoConnection  *conn,
               const TlspyoFrame *frame,
               gpointer           user_data)
{
  EndpointCore *core = user_data;

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
        const char *group;
        g_autoptr(GError) error = NULL;
        GVariant *object = tlspyo_object_from_body (frame->body, &error);

        if (object == NULL)
          return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent a bad object: %s",
                            core->peer, error->message);
        g_variant_get (frame->meta, "(&s)", &group);
        endpoint_receive (core->endpoint, object, group, FALSE, FALSE);
        return TRUE;
      }
    case TLSPYO_FRAME_PRODUCED:
      {
        const char *group;
        gboolean used_credit;
        g_autoptr(GError) error = NULL;
        GVariant *object = tlspyo_object_from_body (frame->body, &error);

        if (object == NULL)
          return core_fail (core, TLSPYO_ERROR_PROTOCOL, "The relay at %s sent a bad object: %s",
                            core->peer, error->message);
        g_variant_get (frame->meta, "(&sb)", &group, &used_credit);
        if (used_credit)
          endpoint_use_credit (core->endpoint, group);
        endpoint_receive (core->endpoint, object, group, TRUE, used_credit);
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
give_back_credit_locked (TlspyoEndpoint *self,
                         ReceivedTag    *tag)
{
  gint64 *credit;

  if (!tag->used_credit)
    return;
  credit = g_hash_table_lookup (self->credit, tag->group);
  if (credit == NULL)
    {
      credit = g_new0 (gint64, 1);
      g_hash_table_insert (self->credit, g_strdup (tag->group), credit);
    }
  if (*credit < G_MAXINT64)
    (*credit)++;
}

/* The relay puts the produced objects this endpoint had not taken back at
 * the head of their queues when the connection ends: they are forgotten
 * here, and the credit they used is given back, to be announced on the
 * next connection. The broadcasts stay. */
static void
forget_untaken_locked (TlspyoEndpoint *self)
{
  GList *l, *t, *next_l, *next_t;

  for (l = self->received.head, t = self->received_tags.head; l != NULL; l = next_l, t = next_t)
    {
      ReceivedTag *tag = t->data;

      next_l = l->next;
      next_t = t->next;
      if (tag == NULL || tag->group == NULL || tag->epoch != self->epoch)
        continue;
      give_back_credit_locked (self, tag);
      g_variant_unref (l->data);
      received_tag_free (tag);
      g_queue_delete_link (&self->received, l);
      g_queue_delete_link (&self->received_tags, t);
    }
  /* On their way to object-received: dropped when they get there. */
  for (l = self->dispatching.head; l != NULL; l = l->next)
    {
      ReceivedTag *tag = l->data;

      if (tag->epoch == self->epoch)
        give_back_credit_locked (self, tag);
    }
  g_hash_table_remove_all (self->taken);
  self->epoch++;
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

  tlspyo_keepalive_stop (&core->keepalive);

  g_mutex_lock (&self->mutex);
  was_connected = self->connected;
  self->connected = FALSE;
  lost = requeue_inflight_locked (self);
  forget_untaken_locked (self);
  g_free (self->last_failure);
  self->last_failure = g_strdup (error->message);
  if (is_refusal (error))
    {
      g_clear_error (&self->refusal);
      self->refusal = g_error_copy (error);
    }
  wake_locked (self);
  g_mutex_unlock (&self->mutex);

  if (lost > 0 && !core->stopped)
    g_debug ("Connection to %s lost with %u frames not acknowledged, to send again: %s",
             core->peer, lost, error->message);
  if (is_refusal (error))
    g_warning ("%s", error->message);
  else
    g_debug ("Connection to %s ended: %s", core->peer, error->message);

  if (was_connected)
    {
      Dispatch *d = g_new0 (Dispatch, 1);
      g_weak_ref_init (&d->endpoint, self);
      post_to_owner (self->owner_context, notify_connected_cb, d);
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

static gboolean
core_start_cb (gpointer data)
{
  core_connect (data);
  return G_SOURCE_REMOVE;
}

static gboolean
core_shutdown_cb (gpointer data)
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
  self->taken = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
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
      tlspyo_worker_invoke_sync (worker, core_shutdown_cb, core);
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
  g_hash_table_unref (self->taken);
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
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&self->mutex);

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
  core->client = g_socket_client_new ();
  g_socket_client_set_enable_proxy (core->client, FALSE);
  g_socket_client_set_timeout (core->client, self->handshake_timeout);

  self->running = TRUE;
  self->owner_thread = g_thread_self ();
  g_clear_pointer (&self->owner_context, g_main_context_unref);
  self->owner_context = g_main_context_ref_thread_default ();
  g_clear_error (&self->refusal);
  self->core = core;
  self->worker = tlspyo_worker_get ();
  tlspyo_worker_invoke (self->worker, core_start_cb, core, NULL);
  g_mutex_unlock (&self->mutex);

  return TRUE;
}

/* The context a blocking call may iterate: the owner's, from the owner's
 * thread only. Other threads sleep on the condition. */
static GMainContext *
wait_context_locked (TlspyoEndpoint *self)
{
  if (self->owner_context != NULL && self->owner_thread == g_thread_self ())
    return self->owner_context;
  return NULL;
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
  kick_locked (self);
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

static gboolean
has_objects_or_stopped (gpointer data)
{
  TlspyoEndpoint *self = data;

  return !g_queue_is_empty (&self->received) || !self->running;
}

typedef enum {
  TAKE_OLDEST,
  TAKE_NEWEST,
  TAKE_ALL,
} TakeMode;

static GPtrArray *
take_locked (TlspyoEndpoint *self,
             TakeMode        mode,
             guint           max_items)
{
  GPtrArray *objects = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  guint n = g_queue_get_length (&self->received);

  if (mode == TAKE_ALL)
    max_items = n;
  /* What get_last() skips counts as taken: the application chose to. */
  if (mode == TAKE_NEWEST)
    while (n > max_items)
      {
        ReceivedTag *tag = g_queue_pop_head (&self->received_tags);

        note_taken_locked (self, tag);
        received_tag_free (tag);
        g_variant_unref (g_queue_pop_head (&self->received));
        n--;
      }
  while (objects->len < max_items && !g_queue_is_empty (&self->received))
    {
      ReceivedTag *tag = g_queue_pop_head (&self->received_tags);

      note_taken_locked (self, tag);
      received_tag_free (tag);
      g_ptr_array_add (objects, g_queue_pop_head (&self->received));
    }
  return objects;
}

static GPtrArray *
receive (TlspyoEndpoint  *self,
         TakeMode         mode,
         guint            max_items,
         int              timeout_ms,
         GError         **error)
{
  g_autoptr(GMutexLocker) locker = NULL;

  if (mode != TAKE_ALL && max_items == 0)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "max_items is 0: ask for at least one object");
      return NULL;
    }

  locker = g_mutex_locker_new (&self->mutex);
  if (timeout_ms != 0 && !self->running && g_queue_is_empty (&self->received))
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint is not running, so nothing can arrive: call "
                           "tlspyo_endpoint_start() first");
      return NULL;
    }
  tlspyo_wait_until (&self->mutex, &self->cond, wait_context_locked (self), timeout_ms,
                     has_objects_or_stopped, self);
  /* Stopped by another thread while this one waited: nothing more can come,
   * and a wait without limit must not last forever. */
  if (timeout_ms != 0 && !self->running && g_queue_is_empty (&self->received))
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint stopped while waiting for objects");
      return NULL;
    }
  return take_locked (self, mode, max_items);
}

/**
 * tlspyo_endpoint_pop:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Takes the oldest objects from the local queue. Waits until at least one
 * is there or the timeout passes, then returns all there is, up to
 * @max_items. Called on the thread that started the endpoint, it iterates
 * that thread's main context while it waits.
 *
 * With a timeout other than 0, it fails with %TLSPYO_ERROR_CLOSED when the
 * endpoint is not running, or stops while it waits, and the queue is empty:
 * nothing could arrive.
 *
 * Produced objects (from [method@Tlspyo.Endpoint.notify_ready]) stay the
 * relay's until the application takes them: returned by this function,
 * [method@Tlspyo.Endpoint.get_last] (which takes the older ones it skips
 * too), [method@Tlspyo.Endpoint.receive_all] or
 * [method@Tlspyo.Endpoint.pop_async], or consumed by an
 * [signal@Tlspyo.Endpoint::object-received] handler that returns %TRUE.
 * If the connection ends before, the endpoint drops those still in its
 * local queue and the relay puts them back at the head of their group's
 * queue, for this endpoint (its credit is given back and asked for again
 * on reconnecting) or another consumer: a consumer that dies does not
 * take objects with it. Objects taken just as the connection is lost may
 * be handed out again (docs/protocol.md, TAKEN).
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_pop (TlspyoEndpoint  *self,
                     guint            max_items,
                     int              timeout_ms,
                     GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_OLDEST, max_items, timeout_ms, error);
}

/**
 * tlspyo_endpoint_get_last:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Like [method@Tlspyo.Endpoint.pop], but returns the newest @max_items
 * objects and discards everything older, as tlspyo's `get_last`.
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_get_last (TlspyoEndpoint  *self,
                          guint            max_items,
                          int              timeout_ms,
                          GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_NEWEST, max_items, timeout_ms, error);
}

/**
 * tlspyo_endpoint_receive_all:
 * @self: an endpoint
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Takes every object in the local queue, waiting for at least one as
 * [method@Tlspyo.Endpoint.pop] does.
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_receive_all (TlspyoEndpoint  *self,
                             int              timeout_ms,
                             GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_ALL, 0, timeout_ms, error);
}

static void
pop_cancelled_cb (GCancellable *cancellable,
                  gpointer      user_data)
{
  GTask *task = user_data;
  TlspyoEndpoint *self = g_task_get_source_object (task);
  PopRequest *found = NULL;

  g_mutex_lock (&self->mutex);
  for (GList *l = self->pop_requests.head; l != NULL; l = l->next)
    {
      PopRequest *request = l->data;
      if (request->task == task)
        {
          found = request;
          g_queue_delete_link (&self->pop_requests, l);
          break;
        }
    }
  g_mutex_unlock (&self->mutex);

  if (found == NULL)
    return;
  /* Disconnecting from inside the handler would deadlock; the request
   * owns no handler id any more. */
  g_task_return_error_if_cancelled (found->task);
  g_clear_object (&found->task);
  g_clear_object (&found->cancellable);
  g_free (found);
}

/**
 * tlspyo_endpoint_pop_async:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when objects are there
 * @user_data: (closure): data for @callback
 *
 * Takes the oldest objects from the local queue without blocking: @callback
 * runs, on the thread-default main context of the caller, as soon as at
 * least one object is there. Finish with [method@Tlspyo.Endpoint.pop_finish].
 *
 * It fails with %G_IO_ERROR_CANCELLED when @cancellable fires before an
 * object came, and with %TLSPYO_ERROR_CLOSED when the endpoint is not
 * running or stops before one came.
 *
 * Since: 0.1
 */
void
tlspyo_endpoint_pop_async (TlspyoEndpoint      *self,
                           guint                max_items,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  PopRequest *request = NULL;
  GPtrArray *objects = NULL;

  g_return_if_fail (TLSPYO_IS_ENDPOINT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, tlspyo_endpoint_pop_async);
  /* Objects taken from the queue must reach the caller even when the
   * cancellable fires after they were: cancellation is reported only while
   * the request is still waiting (pop_cancelled_cb). */
  g_task_set_check_cancellable (task, FALSE);
  if (max_items == 0)
    {
      g_task_return_new_error (task, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                               "max_items is 0: ask for at least one object");
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;

  g_mutex_lock (&self->mutex);
  if (!g_queue_is_empty (&self->received))
    objects = take_locked (self, TAKE_OLDEST, max_items);
  else if (!self->running)
    {
      /* Nothing can arrive: as pop() with a timeout, rather than a request
       * that never completes. */
      g_mutex_unlock (&self->mutex);
      g_task_return_new_error (task, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                               "The endpoint is not running, so nothing can arrive: call "
                               "tlspyo_endpoint_start() first");
      return;
    }
  else
    {
      request = g_new0 (PopRequest, 1);
      request->task = g_object_ref (task);
      request->max_items = max_items;
      g_queue_push_tail (&self->pop_requests, request);
    }
  g_mutex_unlock (&self->mutex);

  if (objects != NULL)
    {
      g_task_return_pointer (task, objects, (GDestroyNotify) g_ptr_array_unref);
      return;
    }

  if (cancellable != NULL)
    {
      gulong id = g_cancellable_connect (cancellable, G_CALLBACK (pop_cancelled_cb), task, NULL);

      g_mutex_lock (&self->mutex);
      if (g_queue_find (&self->pop_requests, request) != NULL)
        {
          request->cancellable = g_object_ref (cancellable);
          request->cancel_id = id;
          id = 0;
        }
      g_mutex_unlock (&self->mutex);
      /* Already completed or cancelled meanwhile. */
      if (id != 0)
        g_cancellable_disconnect (cancellable, id);
    }
}

/**
 * tlspyo_endpoint_pop_finish:
 * @self: an endpoint
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Tlspyo.Endpoint.pop_async].
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest first
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_pop_finish (TlspyoEndpoint  *self,
                            GAsyncResult    *result,
                            GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == tlspyo_endpoint_pop_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
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

/**
 * tlspyo_endpoint_get_n_queued:
 * @self: an endpoint
 *
 * Counts the received objects not yet taken.
 *
 * Returns: how many received objects wait in the local queue
 *
 * Since: 0.1
 */
guint
tlspyo_endpoint_get_n_queued (TlspyoEndpoint *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), 0);
  locker = g_mutex_locker_new (&self->mutex);
  return g_queue_get_length (&self->received);
}
