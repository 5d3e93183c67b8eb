/* SPDX-License-Identifier: MIT */
#pragma once

/* What the three files of an endpoint share; not API. tlspyo-endpoint.c is
 * the GObject: properties, signals, starting and stopping, sending, waiting.
 * tlspyo-endpoint-core.c is the worker side: one connection at a time, the
 * handshake, SESSION/RESUMED, resending, acknowledgements, credit, and
 * reconnecting. tlspyo-endpoint-queue.c is the local queue of received
 * objects: object-received, pop() and the like, and the bookkeeping of
 * produced objects (taken, suspended, forgotten). */

#include "tlspyo-endpoint.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-wait-private.h"
#include "tlspyo-worker-private.h"

G_BEGIN_DECLS

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
 * reported taken (TAKEN) once the application has it. If its connection is
 * lost first, it is suspended (not handed to the application) until the
 * relay says whether it kept it for this endpoint (RESUMED). */
typedef struct {
  char     *group;        /* NULL for a broadcast */
  gboolean  used_credit;
  gboolean  suspended;    /* its connection was lost, RESUMED did not come yet */
  guint64   epoch;        /* the session state it belongs to (TlspyoEndpoint.epoch) */
} ReceivedTag;

/* The last broadcast of a group the endpoint received (issue 5, item 3). */
typedef struct {
  guint64 instance;
  guint64 seq;
} SeenBroadcast;

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
  GQueue            held_dispatch; /* Dispatch* of suspended objects not emitted yet */
  guint             n_suspended;   /* objects in received that are suspended */
  /* Counts the times the session's state was forgotten (stop(), or a relay
   * that did not keep it): objects of an older state are no longer the
   * relay's concern. */
  guint64           epoch;
  GHashTable       *received_counts; /* group -> guint64*: produced objects received in this state */
  GHashTable       *seen;          /* group -> SeenBroadcast* */
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

static inline void
out_item_free (gpointer data)
{
  OutItem *item = data;

  g_clear_pointer (&item->meta, g_bytes_unref);
  g_clear_pointer (&item->data, g_bytes_unref);
  g_clear_pointer (&item->trailer, g_bytes_unref);
  g_free (item->credit_group);
  g_free (item);
}

static inline gsize
out_item_size (const OutItem *item)
{
  return TLSPYO_FRAME_HEADER_SIZE + g_bytes_get_size (item->meta) +
         (item->data != NULL ? g_bytes_get_size (item->data) : 0) +
         (item->trailer != NULL ? g_bytes_get_size (item->trailer) : 0);
}

/* For an item that leaves outgoing or inflight for good. */
static inline void
out_item_drop_locked (TlspyoEndpoint *self,
                      OutItem        *item)
{
  self->buffered_bytes -= item->size;
  out_item_free (item);
}

static inline void
received_tag_free (gpointer data)
{
  ReceivedTag *tag = data;

  if (tag != NULL)
    {
      g_free (tag->group);
      g_free (tag);
    }
}

/* Objects the application may take now: the suspended ones wait. */
static inline guint
available_locked (TlspyoEndpoint *self)
{
  return g_queue_get_length (&self->received) - self->n_suspended;
}

static inline void
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

/* An object the worker received, waiting for the end of the read to be
 * queued with the others (tlspyo_endpoint_receive_batch()). */
typedef struct {
  GVariant   *object;
  GVariant   *meta;       /* the frame's, which holds group */
  const char *group;
  gboolean    produced;   /* PRODUCED, else DELIVER */
  gboolean    used_credit;
  guint64     instance;   /* DELIVER: the relay instance and broadcast sequence */
  guint64     seq;
  gboolean    listening;  /* someone listens to object-received for group */
} TlspyoReceived;

/* The context a blocking call may iterate: the owner's, from the owner's
 * thread only. Other threads sleep on the condition. */
static inline GMainContext *
wait_context_locked (TlspyoEndpoint *self)
{
  if (self->owner_context != NULL && self->owner_thread == g_thread_self ())
    return self->owner_context;
  return NULL;
}

/* tlspyo-endpoint.c: what needs the class's signals and properties. */
gboolean tlspyo_endpoint_has_object_received_handler (TlspyoEndpoint *self,
                                                      const char     *group);
gboolean tlspyo_endpoint_emit_object_received        (TlspyoEndpoint *self,
                                                      GVariant       *object,
                                                      const char     *group);
void     tlspyo_endpoint_emit_action_refused         (TlspyoEndpoint *self,
                                                      const char     *group,
                                                      TlspyoError     code,
                                                      const char     *reason);
void     tlspyo_endpoint_notify_connected            (TlspyoEndpoint *self);

/* tlspyo-endpoint-core.c: the worker side. Created by start() with the
 * mutex held; the _cb functions are for tlspyo_worker_invoke() and run on
 * the worker. */
EndpointCore *tlspyo_endpoint_core_new          (TlspyoEndpoint  *self,
                                                 GTlsCertificate *pinned);
gboolean      tlspyo_endpoint_core_start_cb     (gpointer         data);
gboolean      tlspyo_endpoint_core_shutdown_cb  (gpointer         data);
void          tlspyo_endpoint_kick_locked       (TlspyoEndpoint  *self);

/* tlspyo-endpoint-queue.c: received objects. */
void     tlspyo_endpoint_dispatch_free               (gpointer        data);
void     tlspyo_endpoint_post_to_owner               (GMainContext   *context,
                                                      GSourceFunc     func,
                                                      Dispatch       *d);
void     tlspyo_endpoint_receive_batch               (TlspyoEndpoint *self,
                                                      GArray         *batch);
void     tlspyo_endpoint_complete_pop_requests       (GPtrArray      *completed);
void     tlspyo_endpoint_suspend_untaken_locked      (TlspyoEndpoint *self);
void     tlspyo_endpoint_resume_suspended_locked     (TlspyoEndpoint *self,
                                                      GPtrArray      *completed);
void     tlspyo_endpoint_forget_produced_locked      (TlspyoEndpoint *self);

G_END_DECLS
