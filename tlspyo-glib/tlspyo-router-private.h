/* SPDX-License-Identifier: MIT */
#pragma once

/* The relay's routing state: groups, members, shared FIFO queues, consumer
 * credit and the latest broadcast of each group. No sockets and no threads:
 * the relay feeds it events and it answers with deliveries through a
 * callback, so tlspyo's semantics are tested here directly. */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TlspyoRouter        TlspyoRouter;
typedef struct _TlspyoRouterPeer    TlspyoRouterPeer;
/* Issue 5: an endpoint's session, over its connections: what it was
 * handed, and its objects in flight while it is away ("parked"). */
typedef struct _TlspyoRouterSession TlspyoRouterSession;

/* Why an object goes to a peer. The peer counts its credit down on
 * CREDIT only, so that it can ask for the rest again after reconnecting. */
typedef enum {
  TLSPYO_ROUTER_BROADCAST = 0,  /* a broadcast, or the latest one on joining */
  TLSPYO_ROUTER_CREDIT    = 1,  /* a produced object, for one unit of credit */
  TLSPYO_ROUTER_ALL       = 2,  /* a produced object, for a notify of -1 */
} TlspyoRouterDelivery;

/* One object for one peer, through @group. @object is borrowed: the callee
 * refs it if it keeps it (the same GBytes goes to every recipient).
 * @number is, for a broadcast, its number in @group (1, 2, ... under the
 * router's instance, the same for every recipient); for a produced
 * object, its id (unique and increasing over the router's life). */
typedef void (*TlspyoRouterDeliverFunc) (gpointer              peer_data,
                                         const char           *group,
                                         GBytes               *object,
                                         TlspyoRouterDelivery  kind,
                                         guint64               number,
                                         gpointer              user_data);

/* An object the router had to discard: sent to a group the relay does not
 * accept, or pushed out of a full queue by max_consumables. */
typedef void (*TlspyoRouterDropFunc)    (const char  *group,
                                         const char  *reason,
                                         guint64      n_objects,
                                         gpointer     user_data);

/* The durable relay's journal (issue 5, item 4): every change of the
 * state a store keeps, reported as it happens, so that no call site can
 * forget one. Produced objects are named by their ids. Callbacks run
 * inside router calls and must not call back into the router. Any member
 * may be NULL. */
typedef struct {
  /* A new produced object, at the tail of @group's queue (its position
   * in the queue's order is its id). */
  void (*queued)   (guint64       id,
                    const char   *group,
                    GBytes       *object,
                    gpointer      user_data);
  /* Handed to a consumer of a session (@session_data, see
   * tlspyo_router_session_set_data()): in flight; @index is the session's
   * count of objects handed in that group, this one included. Objects
   * handed to a consumer without a session are not reported: for the
   * store, they are still queued (a restart hands them out again). */
  void (*held)     (guint64       id,
                    gpointer      session_data,
                    guint64       index,
                    gpointer      user_data);
  /* Gone: taken by the consumer's application, or dropped from a full
   * queue (max_consumables). */
  void (*removed)  (guint64       id,
                    gpointer      user_data);
  /* Back at the head of its queue: @position sorts before every object
   * queued in its group. */
  void (*requeued) (guint64       id,
                    gint64        position,
                    gpointer      user_data);
  /* @group's latest broadcast, number @seq. */
  void (*latest)   (const char   *group,
                    guint64       seq,
                    GBytes       *object,
                    gpointer      user_data);
  /* The id of the next produced object. */
  void (*next_id)  (guint64       next_id,
                    gpointer      user_data);
} TlspyoRouterJournal;

TlspyoRouter     *tlspyo_router_new           (TlspyoRouterDeliverFunc  deliver,
                                               TlspyoRouterDropFunc     drop,
                                               gpointer                 user_data);
void              tlspyo_router_free          (TlspyoRouter            *router);
/* @journal (static, or outliving its use) may be NULL: no journal. */
void              tlspyo_router_set_journal   (TlspyoRouter              *router,
                                               const TlspyoRouterJournal *journal,
                                               gpointer                   user_data);

void              tlspyo_router_set_max_in_flight_bytes (TlspyoRouter *router,
                                                         guint64       max_bytes);

void              tlspyo_router_accept_group  (TlspyoRouter            *router,
                                               const char              *group,
                                               int                      max_count,
                                               int                      max_consumables);
gboolean          tlspyo_router_is_accepted   (TlspyoRouter            *router,
                                               const char              *group);

TlspyoRouterPeer *tlspyo_router_join          (TlspyoRouter            *router,
                                               gpointer                 peer_data,
                                               const char * const      *groups,
                                               GError                 **error);
void              tlspyo_router_leave         (TlspyoRouter            *router,
                                               TlspyoRouterPeer        *peer);
gpointer          tlspyo_router_peer_get_data (TlspyoRouterPeer        *peer);

void              tlspyo_router_route         (TlspyoRouter            *router,
                                               GVariant                *destinations,
                                               GBytes                  *object);
void              tlspyo_router_broadcast     (TlspyoRouter            *router,
                                               const char              *group,
                                               GBytes                  *object);
void              tlspyo_router_produce       (TlspyoRouter            *router,
                                               const char              *group,
                                               GBytes                  *object,
                                               guint                    copies);
void              tlspyo_router_notify        (TlspyoRouter            *router,
                                               TlspyoRouterPeer        *peer,
                                               const char              *group,
                                               int                      count);

guint             tlspyo_router_get_queue_length (TlspyoRouter         *router,
                                                  const char           *group);
guint             tlspyo_router_get_n_members    (TlspyoRouter         *router,
                                                  const char           *group);
guint64           tlspyo_router_get_n_dropped    (TlspyoRouter         *router,
                                                  const char           *group);
gboolean          tlspyo_router_has_latest       (TlspyoRouter         *router,
                                                  const char           *group);

/* For the relay's max-queued-bytes (issue 6). */
guint64           tlspyo_router_get_queued_bytes (TlspyoRouter         *router,
                                                  const char           *group);

/* Issue 5: produced objects stay in flight until the consumer's
 * application took them; a peer that leaves gives its untaken ones back. */
gboolean          tlspyo_router_taken            (TlspyoRouter         *router,
                                                  TlspyoRouterPeer     *peer,
                                                  const char           *group,
                                                  guint64               count);
guint64           tlspyo_router_get_n_in_flight  (TlspyoRouter         *router,
                                                  const char           *group);
guint64           tlspyo_router_get_credit       (TlspyoRouter         *router,
                                                  const char           *group);
/* Safe from a deliver callback: it only counts and reports. */
void              tlspyo_router_note_dropped     (TlspyoRouter         *router,
                                                  const char           *group,
                                                  guint64               n,
                                                  const char           *reason);
/* Sessions (issue 5): parking, and resuming on a new connection. A peer
 * with a session that leaves by tlspyo_router_park() keeps its untaken
 * objects in flight (parked) until the session resumes or expires;
 * tlspyo_router_leave() (a goodbye) puts them back in the queues at once
 * and resets the session's counts. */
TlspyoRouterSession *tlspyo_router_session_new   (TlspyoRouter         *router);
void              tlspyo_router_session_free     (TlspyoRouter         *router,
                                                  TlspyoRouterSession  *session);
void              tlspyo_router_park             (TlspyoRouter         *router,
                                                  TlspyoRouterPeer     *peer);
gboolean          tlspyo_router_resume           (TlspyoRouter         *router,
                                                  TlspyoRouterPeer     *peer,
                                                  TlspyoRouterSession  *session,
                                                  GVariant             *received);
void              tlspyo_router_session_expire   (TlspyoRouter         *router,
                                                  TlspyoRouterSession  *session);
guint64           tlspyo_router_session_get_n_parked  (TlspyoRouterSession *session);
/* What the journal names the session by (the relay's session record). */
void              tlspyo_router_session_set_data      (TlspyoRouterSession *session,
                                                       gpointer             data);
gpointer          tlspyo_router_session_get_data      (TlspyoRouterSession *session);
gboolean          tlspyo_router_session_is_resumable  (TlspyoRouterSession *session);

/* Broadcast numbers (issue 5, item 3): each group numbers its broadcasts,
 * under the router's random instance id. */
guint64           tlspyo_router_get_instance     (TlspyoRouter         *router);
guint64           tlspyo_router_get_latest_seq   (TlspyoRouter         *router,
                                                  const char           *group);

/* For a durable store: restoring what an earlier run held. */
void              tlspyo_router_set_instance     (TlspyoRouter         *router,
                                                  guint64               instance);
guint64           tlspyo_router_get_next_id      (TlspyoRouter         *router);
void              tlspyo_router_set_next_id      (TlspyoRouter         *router,
                                                  guint64               next_id);
void              tlspyo_router_restore_queued   (TlspyoRouter         *router,
                                                  const char           *group,
                                                  GBytes               *object,
                                                  guint64               id,
                                                  gint64                position);
void              tlspyo_router_restore_parked   (TlspyoRouter         *router,
                                                  TlspyoRouterSession  *session,
                                                  const char           *group,
                                                  GBytes               *object,
                                                  guint64               id);
void              tlspyo_router_session_set_handed (TlspyoRouterSession *session,
                                                    const char          *group,
                                                    guint64              handed);
void              tlspyo_router_restore_latest   (TlspyoRouter         *router,
                                                  const char           *group,
                                                  GBytes               *object,
                                                  guint64               seq);

/* @func gets each group's name (const char *), borrowed. */
void              tlspyo_router_foreach_group    (TlspyoRouter         *router,
                                                  GFunc                 func,
                                                  gpointer              user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoRouter, tlspyo_router_free)

G_END_DECLS
