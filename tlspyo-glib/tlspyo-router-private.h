/* SPDX-License-Identifier: MIT */
#pragma once

/* The relay's routing state: groups, members, shared FIFO queues, consumer
 * credit and the latest broadcast of each group. No sockets and no threads:
 * the relay feeds it events and it answers with deliveries through a
 * callback, so tlspyo's semantics are tested here directly. */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TlspyoRouter     TlspyoRouter;
typedef struct _TlspyoRouterPeer TlspyoRouterPeer;

/* Why an object goes to a peer. The peer counts its credit down on
 * CREDIT only, so that it can ask for the rest again after reconnecting. */
typedef enum {
  TLSPYO_ROUTER_BROADCAST = 0,  /* a broadcast, or the latest one on joining */
  TLSPYO_ROUTER_CREDIT    = 1,  /* a produced object, for one unit of credit */
  TLSPYO_ROUTER_ALL       = 2,  /* a produced object, for a notify of -1 */
} TlspyoRouterDelivery;

/* One object for one peer, through @group. @object is borrowed: the callee
 * refs it if it keeps it (the same GBytes goes to every recipient). */
typedef void (*TlspyoRouterDeliverFunc) (gpointer              peer_data,
                                         const char           *group,
                                         GBytes               *object,
                                         TlspyoRouterDelivery  kind,
                                         gpointer              user_data);

/* An object the router had to discard: sent to a group the relay does not
 * accept, or pushed out of a full queue by max_consumables. */
typedef void (*TlspyoRouterDropFunc)    (const char  *group,
                                         const char  *reason,
                                         guint64      n_objects,
                                         gpointer     user_data);

TlspyoRouter     *tlspyo_router_new           (TlspyoRouterDeliverFunc  deliver,
                                               TlspyoRouterDropFunc     drop,
                                               gpointer                 user_data);
void              tlspyo_router_free          (TlspyoRouter            *router);

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
/* @func gets each group's name (const char *), borrowed. */
void              tlspyo_router_foreach_group    (TlspyoRouter         *router,
                                                  GFunc                 func,
                                                  gpointer              user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoRouter, tlspyo_router_free)

G_END_DECLS
