/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-router-private.h"
#include "tlspyo-error.h"

/* Callbacks run synchronously from inside router calls and must not call back
 * into the router: the member lists and the ready ring are being walked while
 * they run.
 *
 * Invariant kept after every public call: for each group, the queue is empty
 * or the ready ring is empty. Produce relies on it to serve ready consumers
 * before queueing without breaking FIFO order. */

typedef struct _Group        Group;
typedef struct _Membership   Membership;
typedef struct _SessionGroup SessionGroup;

/* @n consecutive queue entries holding the same object, with the ids
 * @first_id to @first_id + @n - 1. A produce with many copies then costs one
 * node, so one small frame asking for 2^31 copies cannot make the relay
 * allocate a node per copy. */
typedef struct
{
  GBytes  *object;
  guint64  n;
  guint64  first_id;
} QueuedRun;

/* A produced object handed to a consumer (in flight, or parked with its
 * session) keeps its id, so that it goes back to the queue as itself. */
typedef struct
{
  GBytes  *object;
  guint64  id;
} Flight;

struct _Group
{
  char     *name;
  int       max_count;
  int       max_consumables;
  gboolean  declared;

  GQueue    queue;          /* QueuedRun*, oldest first */
  guint64   queue_length;   /* sum of the runs' n */
  guint64   queue_bytes;    /* sum of the runs' object sizes (issue 6: max-queued-bytes) */
  GBytes   *latest;
  guint64   latest_seq;     /* the latest broadcast's number; 0 before the first */

  /* Both hold only links embedded in Membership: joining, leaving and
   * cycling through the ring never allocate, and unlinking is O(1). They are
   * never cleared here; the links die with their peer. */
  GQueue    members;        /* Membership*, in join order */
  GQueue    ready;          /* Membership* with credit > 0 and room in flight, round-robin */

  guint64   n_dropped;
  guint64   n_in_flight;    /* produced objects handed out, not yet taken; parked ones too */
  /* For the journal: at most the lowest position of any object queued in
   * the group, so that one put back at the head sorts before them all. */
  gint64    min_position;
};

struct _Membership
{
  Group            *group;
  TlspyoRouterPeer *peer;
  gint64            credit;
  gboolean          in_ready;
  /* Produced objects handed to the peer, oldest first, until it says its
   * application took them (tlspyo_router_taken()); they go back to the
   * head of the queue if it leaves first, or are parked with its session. */
  GQueue            in_flight;  /* Flight* */
  guint64           in_flight_bytes;  /* their flight_cost(), added up */
  SessionGroup     *session_group;  /* NULL without a session */
  GList             member_link;
  GList             ready_link;
};

struct _TlspyoRouterPeer
{
  gpointer             peer_data;
  Membership          *memberships;
  guint                n_memberships;
  GList                router_link;
  TlspyoRouterSession *session;  /* NULL until tlspyo_router_resume() */
};

/* What a session knows of one group, over all its connections: how many
 * produced objects it was handed (minus those given back), and those it
 * had in flight when its last connection was lost, oldest first. */
struct _SessionGroup
{
  char    *name;
  guint64  handed;
  GQueue   parked;  /* Flight* */
};

struct _TlspyoRouterSession
{
  GHashTable       *groups;     /* name -> SessionGroup*, owned */
  TlspyoRouterPeer *peer;       /* its connection now, or NULL */
  gboolean          resumable;  /* lost without a goodbye: its state stands */
  guint64           n_parked;
  GList             router_link;
  gpointer          data;       /* names it in the journal */
};

struct _TlspyoRouter
{
  TlspyoRouterDeliverFunc  deliver;
  TlspyoRouterDropFunc     drop;
  gpointer                 user_data;

  GHashTable              *groups;      /* name → Group*, owns the groups */
  guint                    n_declared;
  GQueue                   peers;       /* TlspyoRouterPeer*, links embedded */
  GQueue                   sessions;    /* TlspyoRouterSession*, links embedded */
  guint64                  next_id;     /* of the next produced object */
  guint64                  instance;    /* random, names this router's broadcast numbers */
  const TlspyoRouterJournal *journal;   /* or NULL */
  gpointer                 journal_data;
  guint64                  max_in_flight_bytes;  /* per membership; 0: no limit */
};

/* What a produced object in flight costs the relay besides its bytes (its
 * Flight and list link), so that a cap in bytes also bounds tiny objects. */
#define FLIGHT_OVERHEAD 64

#define JOURNAL(router, member, ...)                                                   \
  G_STMT_START {                                                                     \
    if ((router)->journal != NULL && (router)->journal->member != NULL)              \
      (router)->journal->member (__VA_ARGS__, (router)->journal_data);               \
  } G_STMT_END

static void
flight_free (gpointer data)
{
  Flight *flight = data;

  g_bytes_unref (flight->object);
  g_free (flight);
}

static guint64
flight_cost (const Flight *flight)
{
  return g_bytes_get_size (flight->object) + FLIGHT_OVERHEAD;
}

/* Whether @m may be handed one more produced object: below the cap, so
 * one consumer whose application takes nothing holds a bounded part of the
 * relay's memory however much credit it announced. One object always fits
 * when it has none. */
static gboolean
membership_has_room (TlspyoRouter     *router,
                     const Membership *m)
{
  return router->max_in_flight_bytes == 0 || m->in_flight_bytes < router->max_in_flight_bytes;
}

/* Puts @m in its group's ready ring if it may be served: credit, and room
 * in flight. */
static void
membership_maybe_ready (TlspyoRouter *router,
                        Membership   *m)
{
  if (m->in_ready || m->credit <= 0 || !membership_has_room (router, m))
    return;
  m->in_ready = TRUE;
  g_queue_push_tail_link (&m->group->ready, &m->ready_link);
}

static void
queued_run_free (QueuedRun *run)
{
  g_bytes_unref (run->object);
  g_free (run);
}

static Group *
group_new (const char *name)
{
  Group *group = g_new0 (Group, 1);

  group->name = g_strdup (name);
  group->max_count = -1;
  group->max_consumables = -1;
  group->min_position = G_MAXINT64;
  g_queue_init (&group->queue);
  g_queue_init (&group->members);
  g_queue_init (&group->ready);

  return group;
}

static void
group_free (gpointer data)
{
  Group *group = data;
  QueuedRun *run;

  while ((run = g_queue_pop_head (&group->queue)) != NULL)
    queued_run_free (run);
  g_clear_pointer (&group->latest, g_bytes_unref);
  g_free (group->name);
  g_free (group);
}

/* @n copies of @object, with the ids @first_id and on. */
static void
group_enqueue (Group   *group,
               GBytes  *object,
               guint64  n,
               guint64  first_id)
{
  QueuedRun *tail = g_queue_peek_tail (&group->queue);

  if (tail != NULL && tail->object == object && tail->first_id + tail->n == first_id)
    {
      tail->n += n;
    }
  else
    {
      QueuedRun *run = g_new (QueuedRun, 1);

      run->object = g_bytes_ref (object);
      run->n = n;
      run->first_id = first_id;
      g_queue_push_tail (&group->queue, run);
      group->queue_bytes += g_bytes_get_size (object);
    }
  group->queue_length += n;
}

/* Puts @flight (consumed) back at the head of the queue. */
static void
group_requeue_head (TlspyoRouter *router,
                    Group        *group,
                    Flight       *flight)
{
  QueuedRun *head = g_queue_peek_head (&group->queue);

  group->min_position = MIN (group->min_position,
                             (gint64) MIN (flight->id, (guint64) G_MAXINT64)) - 1;
  JOURNAL (router, requeued, flight->id, group->min_position);
  group->queue_length++;
  if (head != NULL && head->object == flight->object && flight->id + 1 == head->first_id)
    {
      head->n++;
      head->first_id = flight->id;
      flight_free (flight);
      return;
    }
  else
    {
      QueuedRun *run = g_new (QueuedRun, 1);

      run->object = g_steal_pointer (&flight->object);
      run->n = 1;
      run->first_id = flight->id;
      g_free (flight);
      g_queue_push_head (&group->queue, run);
      group->queue_bytes += g_bytes_get_size (run->object);
    }
}

/* Returns the oldest queued object, with its id, or NULL. */
static Flight *
group_dequeue (Group *group)
{
  QueuedRun *run = g_queue_peek_head (&group->queue);
  Flight *flight;

  if (run == NULL)
    return NULL;

  flight = g_new (Flight, 1);
  flight->id = run->first_id++;
  group->queue_length--;
  if (--run->n > 0)
    {
      flight->object = g_bytes_ref (run->object);
      return flight;
    }

  g_queue_pop_head (&group->queue);
  flight->object = g_steal_pointer (&run->object);
  g_free (run);
  group->queue_bytes -= g_bytes_get_size (flight->object);

  return flight;
}

static guint64
group_discard_oldest (TlspyoRouter *router,
                      Group        *group,
                      guint64       n)
{
  guint64 done = 0;

  while (done < n)
    {
      QueuedRun *run = g_queue_peek_head (&group->queue);
      guint64 take;

      if (run == NULL)
        break;

      take = MIN (run->n, n - done);
      if (router->journal != NULL)
        for (guint64 i = 0; i < take; i++)
          JOURNAL (router, removed, run->first_id + i);
      run->n -= take;
      run->first_id += take;
      group->queue_length -= take;
      done += take;
      if (run->n == 0)
        {
          g_queue_pop_head (&group->queue);
          group->queue_bytes -= g_bytes_get_size (run->object);
          queued_run_free (run);
        }
    }

  return done;
}

static Group *
router_lookup (TlspyoRouter *router,
               const char   *name)
{
  return g_hash_table_lookup (router->groups, name);
}

/* What a group nobody used yet reads as: empty, no members, nothing
 * dropped. */
static const Group no_group;

/* @name's group for reading, without creating it. */
static const Group *
router_peek (TlspyoRouter *router,
             const char   *name)
{
  const Group *group = router_lookup (router, name);

  return group != NULL ? group : &no_group;
}

static Group *
router_ensure_group (TlspyoRouter *router,
                     const char   *name)
{
  Group *group = router_lookup (router, name);

  if (group == NULL)
    {
      group = group_new (name);
      g_hash_table_insert (router->groups, group->name, group);
    }

  return group;
}

/* @group may be NULL: a group nobody used yet. */
static gboolean
router_group_is_accepted (TlspyoRouter *router,
                          Group        *group)
{
  return router->n_declared == 0 || (group != NULL && group->declared);
}

/* Groups created on first use while no rule exists would otherwise pile up
 * forever as endpoints come and go with throwaway names. A group is kept as
 * long as anything about it is observable. */
static void
router_maybe_forget_group (TlspyoRouter *router,
                           Group        *group)
{
  if (group->declared ||
      group->members.length > 0 ||
      group->queue_length > 0 ||
      group->latest != NULL ||
      group->n_in_flight > 0 ||
      group->n_dropped > 0)
    return;

  g_hash_table_remove (router->groups, group->name);
}

static void
router_drop (TlspyoRouter *router,
             Group        *group,
             guint64       n,
             const char   *reason)
{
  group->n_dropped += n;
  if (router->drop != NULL)
    router->drop (group->name, reason, n, router->user_data);
}

static void
router_refuse (TlspyoRouter *router,
               const char   *name,
               guint64       n)
{
  g_autofree char *reason = NULL;
  /* The entry exists only to count the drops; it stays undeclared, so the
   * group is still refused. */
  Group *group = router_ensure_group (router, name);

  reason = g_strdup_printf ("group '%s' is not accepted by this relay", name);
  router_drop (router, group, n, reason);
}

/* One drop report per call however many objects went, so a produce of many
 * copies into a small queue does not flood the callback; the counter gets
 * every object. */
static void
router_enforce_max_consumables (TlspyoRouter *router,
                                Group        *group)
{
  g_autofree char *reason = NULL;
  guint64 n;

  if (group->max_consumables < 0 ||
      group->queue_length <= (guint64) group->max_consumables)
    return;

  n = group_discard_oldest (router, group, group->queue_length - (guint64) group->max_consumables);
  if (n == 1)
    reason = g_strdup_printf ("queue of group '%s' is full (max_consumables %d): "
                              "dropped the oldest object",
                              group->name, group->max_consumables);
  else
    reason = g_strdup_printf ("queue of group '%s' is full (max_consumables %d): "
                              "dropped the %" G_GUINT64_FORMAT " oldest objects",
                              group->name, group->max_consumables, n);
  router_drop (router, group, n, reason);
}

/* @flight (consumed) is in flight to @m's peer now. */
static void
membership_hand_out (TlspyoRouter *router,
                     Membership   *m,
                     Flight       *flight)
{
  g_queue_push_tail (&m->in_flight, flight);
  m->in_flight_bytes += flight_cost (flight);
  m->group->n_in_flight++;
  if (m->session_group != NULL)
    {
      m->session_group->handed++;
      JOURNAL (router, held, flight->id, m->peer->session->data, m->session_group->handed);
    }
}

/* Gives @flight (consumed) to the consumer at the head of the ring. It goes
 * back to the tail, not the head, so that the next object goes to the next
 * consumer. */
static void
router_serve_ready_head (TlspyoRouter *router,
                         Group        *group,
                         Flight       *flight)
{
  GList *link = g_queue_pop_head_link (&group->ready);
  Membership *m = link->data;
  GBytes *object = flight->object;
  guint64 id = flight->id;

  m->credit--;
  membership_hand_out (router, m, flight);
  if (m->credit > 0 && membership_has_room (router, m))
    g_queue_push_tail_link (&group->ready, link);
  else
    m->in_ready = FALSE;

  router->deliver (m->peer->peer_data, group->name, object, TLSPYO_ROUTER_CREDIT, id,
                   router->user_data);
}

static void
router_dispatch (TlspyoRouter *router,
                 Group        *group)
{
  while (group->queue_length > 0 && group->ready.length > 0)
    router_serve_ready_head (router, group, group_dequeue (group));
}

static void
peer_free (TlspyoRouterPeer *peer)
{
  for (guint i = 0; i < peer->n_memberships; i++)
    g_queue_clear_full (&peer->memberships[i].in_flight, flight_free);
  g_free (peer->memberships);
  g_free (peer);
}

static void
session_group_free (gpointer data)
{
  SessionGroup *sg = data;

  g_queue_clear_full (&sg->parked, flight_free);
  g_free (sg->name);
  g_free (sg);
}

static SessionGroup *
session_ensure_group (TlspyoRouterSession *session,
                      const char          *name)
{
  SessionGroup *sg = g_hash_table_lookup (session->groups, name);

  if (sg == NULL)
    {
      sg = g_new0 (SessionGroup, 1);
      sg->name = g_strdup (name);
      g_queue_init (&sg->parked);
      g_hash_table_insert (session->groups, sg->name, sg);
    }
  return sg;
}

static Membership *
peer_find_membership (TlspyoRouterPeer *peer,
                      const char       *name)
{
  for (guint i = 0; i < peer->n_memberships; i++)
    {
      if (g_str_equal (peer->memberships[i].group->name, name))
        return &peer->memberships[i];
    }

  return NULL;
}

/* @drop may be NULL. */
TlspyoRouter *
tlspyo_router_new (TlspyoRouterDeliverFunc deliver,
                   TlspyoRouterDropFunc    drop,
                   gpointer                user_data)
{
  TlspyoRouter *router;

  g_return_val_if_fail (deliver != NULL, NULL);

  router = g_new0 (TlspyoRouter, 1);
  router->deliver = deliver;
  router->drop = drop;
  router->user_data = user_data;
  /* Keys are the groups' own names, freed with the group. */
  router->groups = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, group_free);
  g_queue_init (&router->peers);
  g_queue_init (&router->sessions);
  router->next_id = 1;
  /* Not a secret: it only has to differ from the previous relay's, so that
   * endpoints do not take its numbers for the old ones. Never 0. */
  router->instance = ((guint64) g_random_int () << 32 | g_random_int ()) | 1;

  return router;
}

void
tlspyo_router_free (TlspyoRouter *router)
{
  GList *link;

  if (router == NULL)
    return;

  /* Peers and sessions first: the groups' member lists and rings point
   * into them, but group_free never walks those lists. */
  while ((link = g_queue_pop_head_link (&router->peers)) != NULL)
    peer_free (link->data);
  while ((link = g_queue_pop_head_link (&router->sessions)) != NULL)
    {
      TlspyoRouterSession *session = link->data;

      g_hash_table_unref (session->groups);
      g_free (session);
    }
  g_hash_table_unref (router->groups);
  g_free (router);
}

void
tlspyo_router_set_journal (TlspyoRouter              *router,
                           const TlspyoRouterJournal *journal,
                           gpointer                   user_data)
{
  g_return_if_fail (router != NULL);

  router->journal = journal;
  router->journal_data = user_data;
}

/* Lowering max_count does not evict anyone: it only refuses later joins.
 * Lowering max_consumables trims the queue at once, oldest first. */
void
tlspyo_router_accept_group (TlspyoRouter *router,
                            const char   *group_name,
                            int           max_count,
                            int           max_consumables)
{
  Group *group;

  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (max_count >= -1);
  g_return_if_fail (max_consumables >= -1);

  group = router_ensure_group (router, group_name);
  if (!group->declared)
    {
      group->declared = TRUE;
      router->n_declared++;
    }
  group->max_count = max_count;
  group->max_consumables = max_consumables;

  router_enforce_max_consumables (router, group);
}

/* At most @max_bytes (0: no limit) of produced objects in flight per
 * membership, each counted with FLIGHT_OVERHEAD; one object always fits.
 * It bounds a notify of -1 as well as credit.
 * A member at the cap keeps its credit and is served again once its peer
 * takes objects (tlspyo_router_taken()). */
void
tlspyo_router_set_max_in_flight_bytes (TlspyoRouter *router,
                                       guint64       max_bytes)
{
  GHashTableIter iter;
  gpointer value;

  g_return_if_fail (router != NULL);

  router->max_in_flight_bytes = max_bytes;
  g_hash_table_iter_init (&iter, router->groups);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Group *group = value;

      for (GList *l = group->members.head; l != NULL; l = l->next)
        {
          Membership *m = l->data;

          if (m->in_ready && !membership_has_room (router, m))
            {
              g_queue_unlink (&group->ready, &m->ready_link);
              m->in_ready = FALSE;
            }
          else
            membership_maybe_ready (router, m);
        }
      router_dispatch (router, group);
    }
}

gboolean
tlspyo_router_is_accepted (TlspyoRouter *router,
                           const char   *group)
{
  g_return_val_if_fail (router != NULL, FALSE);
  g_return_val_if_fail (group != NULL, FALSE);

  return router_group_is_accepted (router, router_lookup (router, group));
}

TlspyoRouterPeer *
tlspyo_router_join (TlspyoRouter       *router,
                    gpointer            peer_data,
                    const char * const *groups,
                    GError            **error)
{
  g_autoptr(GHashTable) seen = NULL;
  g_autoptr(GPtrArray) names = NULL;
  TlspyoRouterPeer *peer;

  g_return_val_if_fail (router != NULL, NULL);
  g_return_val_if_fail (groups != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* A hash set rather than a scan: the list comes from the peer, and a long
   * one must not cost quadratic time. */
  seen = g_hash_table_new (g_str_hash, g_str_equal);
  names = g_ptr_array_new ();

  /* Every group is checked before anything changes, so a refusal leaves no
   * trace. */
  for (gsize i = 0; groups[i] != NULL; i++)
    {
      const char *name = groups[i];
      Group *group;

      if (!g_hash_table_add (seen, (gpointer) name))
        continue;

      group = router_lookup (router, name);
      if (!router_group_is_accepted (router, group))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED,
                       "group '%s' is not accepted by this relay", name);
          return NULL;
        }
      if (group != NULL && group->max_count >= 0 &&
          group->members.length >= (guint) group->max_count)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED,
                       "group '%s' is full: it already has %u %s (max_count %d)",
                       name, group->members.length,
                       group->members.length == 1 ? "endpoint" : "endpoints",
                       group->max_count);
          return NULL;
        }

      g_ptr_array_add (names, (gpointer) name);
    }

  peer = g_new0 (TlspyoRouterPeer, 1);
  peer->peer_data = peer_data;
  peer->n_memberships = names->len;
  peer->memberships = g_new0 (Membership, names->len);
  peer->router_link.data = peer;
  g_queue_push_tail_link (&router->peers, &peer->router_link);

  for (guint i = 0; i < names->len; i++)
    {
      Membership *m = &peer->memberships[i];

      m->group = router_ensure_group (router, g_ptr_array_index (names, i));
      m->peer = peer;
      m->member_link.data = m;
      m->ready_link.data = m;
      g_queue_init (&m->in_flight);
      g_queue_push_tail_link (&m->group->members, &m->member_link);
    }

  /* Only once the peer is a member of every group, so the state is complete
   * whatever the callback looks at. */
  for (guint i = 0; i < peer->n_memberships; i++)
    {
      Group *group = peer->memberships[i].group;

      if (group->latest != NULL)
        router->deliver (peer_data, group->name, group->latest, TLSPYO_ROUTER_BROADCAST,
                         group->latest_seq, router->user_data);
    }

  return peer;
}

/* Puts the last @n objects of @flights back at the head of @group's
 * queue, in their order, ahead of everything queued since. They are not
 * subject to max_consumables here: they had been accepted into the queue
 * already, and the next produce trims the queue (oldest first) as usual. */
static void
router_requeue_tail (TlspyoRouter *router,
                     Group        *group,
                     GQueue       *flights,
                     guint64       n)
{
  for (guint64 i = 0; i < n; i++)
    {
      Flight *flight = g_queue_pop_tail (flights);

      group->n_in_flight--;
      group_requeue_head (router, group, flight);
    }
}

/* Forgets what @session counted: its objects all went back to the queues
 * (or were taken), so a new connection of it starts from nothing. */
static void
session_reset (TlspyoRouterSession *session)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, session->groups);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      SessionGroup *sg = value;

      g_assert (sg->parked.length == 0);
      sg->handed = 0;
    }
  session->resumable = FALSE;
}

/* Parked objects go back to the head of their queues; returns the groups
 * to dispatch (a set). */
static void
session_requeue_parked (TlspyoRouter        *router,
                        TlspyoRouterSession *session,
                        GHashTable          *touched)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, session->groups);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      SessionGroup *sg = value;
      Group *group;

      if (sg->parked.length == 0)
        continue;
      group = router_ensure_group (router, sg->name);
      session->n_parked -= sg->parked.length;
      router_requeue_tail (router, group, &sg->parked, sg->parked.length);
      g_hash_table_add (touched, group);
    }
}

static void
router_dispatch_touched (TlspyoRouter *router,
                         GHashTable   *touched)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, touched);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      router_dispatch (router, key);
      router_maybe_forget_group (router, key);
    }
}

static void
router_leave (TlspyoRouter     *router,
              TlspyoRouterPeer *peer,
              gboolean          park)
{
  TlspyoRouterSession *session = peer->session;

  if (session == NULL)
    park = FALSE;
  for (guint i = 0; i < peer->n_memberships; i++)
    {
      Membership *m = &peer->memberships[i];
      Group *group = m->group;

      g_queue_unlink (&group->members, &m->member_link);
      if (m->in_ready)
        g_queue_unlink (&group->ready, &m->ready_link);
      if (park)
        {
          SessionGroup *sg = m->session_group;
          Flight *flight;

          /* Still counted in the group's in flight. */
          session->n_parked += m->in_flight.length;
          while ((flight = g_queue_pop_head (&m->in_flight)) != NULL)
            g_queue_push_tail (&sg->parked, flight);
        }
      else
        router_requeue_tail (router, group, &m->in_flight, m->in_flight.length);
    }

  g_queue_unlink (&router->peers, &peer->router_link);
  if (session != NULL)
    {
      session->peer = NULL;
      if (park)
        session->resumable = TRUE;
      else
        session_reset (session);
    }

  /* Once the peer is gone from every ring, so none of it gets them back. */
  for (guint i = 0; i < peer->n_memberships; i++)
    {
      Group *group = peer->memberships[i].group;

      router_dispatch (router, group);
      router_maybe_forget_group (router, group);
    }

  peer_free (peer);
}

/* The peer's untaken produced objects go back to the head of their
 * queues, then to the consumers with credit: it said goodbye, or has no
 * session. Its session, if any, starts again from nothing. */
void
tlspyo_router_leave (TlspyoRouter     *router,
                     TlspyoRouterPeer *peer)
{
  g_return_if_fail (router != NULL);
  g_return_if_fail (peer != NULL);

  router_leave (router, peer, FALSE);
}

/* The peer's connection was lost: its untaken produced objects are parked
 * with its session (still in flight), for the session to resume them, until
 * tlspyo_router_session_expire(). Without a session, as leave(). */
void
tlspyo_router_park (TlspyoRouter     *router,
                    TlspyoRouterPeer *peer)
{
  g_return_if_fail (router != NULL);
  g_return_if_fail (peer != NULL);

  router_leave (router, peer, TRUE);
}

TlspyoRouterSession *
tlspyo_router_session_new (TlspyoRouter *router)
{
  TlspyoRouterSession *session;

  g_return_val_if_fail (router != NULL, NULL);

  session = g_new0 (TlspyoRouterSession, 1);
  session->groups = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, session_group_free);
  session->router_link.data = session;
  g_queue_push_tail_link (&router->sessions, &session->router_link);
  return session;
}

/* Parked objects go back to the queues, at once. A peer still attached
 * goes on without a session. */
void
tlspyo_router_session_free (TlspyoRouter        *router,
                            TlspyoRouterSession *session)
{
  g_autoptr(GHashTable) touched = NULL;
  TlspyoRouterPeer *peer;

  g_return_if_fail (router != NULL);

  if (session == NULL)
    return;
  peer = session->peer;
  if (peer != NULL)
    {
      for (guint i = 0; i < peer->n_memberships; i++)
        peer->memberships[i].session_group = NULL;
      peer->session = NULL;
    }
  touched = g_hash_table_new (NULL, NULL);
  session_requeue_parked (router, session, touched);
  g_queue_unlink (&router->sessions, &session->router_link);
  g_hash_table_unref (session->groups);
  g_free (session);
  router_dispatch_touched (router, touched);
}

/* The session's connection did not come back in time: its parked objects
 * go back to the head of their queues, and what it counted is forgotten. */
void
tlspyo_router_session_expire (TlspyoRouter        *router,
                              TlspyoRouterSession *session)
{
  g_autoptr(GHashTable) touched = NULL;

  g_return_if_fail (router != NULL);
  g_return_if_fail (session != NULL);
  g_return_if_fail (session->peer == NULL);

  touched = g_hash_table_new (NULL, NULL);
  session_requeue_parked (router, session, touched);
  session_reset (session);
  router_dispatch_touched (router, touched);
}

guint64
tlspyo_router_session_get_n_parked (TlspyoRouterSession *session)
{
  g_return_val_if_fail (session != NULL, 0);

  return session->n_parked;
}

void
tlspyo_router_session_set_data (TlspyoRouterSession *session,
                                gpointer             data)
{
  g_return_if_fail (session != NULL);

  session->data = data;
}

gpointer
tlspyo_router_session_get_data (TlspyoRouterSession *session)
{
  g_return_val_if_fail (session != NULL, NULL);

  return session->data;
}

gboolean
tlspyo_router_session_is_resumable (TlspyoRouterSession *session)
{
  g_return_val_if_fail (session != NULL, FALSE);

  return session->resumable;
}

/* A new connection of @session, as @peer (joined, handed nothing yet).
 * @received (a{st}, may be NULL for none) says how many produced objects
 * of each group the endpoint received over the session. Returns whether
 * the session's state was kept (it was lost without a goodbye, and not
 * expired): then its parked objects the endpoint never received go back
 * to the head of their queues, and the others are in flight to @peer,
 * oldest first, ahead of anything handed to it later; the counts go on
 * from @received. Otherwise the counts start from 0. */
gboolean
tlspyo_router_resume (TlspyoRouter        *router,
                      TlspyoRouterPeer    *peer,
                      TlspyoRouterSession *session,
                      GVariant            *received)
{
  g_autoptr(GHashTable) touched = NULL;
  gboolean kept;
  GHashTableIter iter;
  gpointer value;

  g_return_val_if_fail (router != NULL, FALSE);
  g_return_val_if_fail (peer != NULL, FALSE);
  g_return_val_if_fail (session != NULL, FALSE);
  g_return_val_if_fail (session->peer == NULL, FALSE);
  g_return_val_if_fail (peer->session == NULL, FALSE);
  g_return_val_if_fail (received == NULL ||
                        g_variant_is_of_type (received, G_VARIANT_TYPE ("a{st}")), FALSE);

  touched = g_hash_table_new (NULL, NULL);
  kept = session->resumable;
  if (!kept)
    {
      session_requeue_parked (router, session, touched);  /* none, unless restored */
      session_reset (session);
    }
  else if (received != NULL)
    {
      GVariantIter received_iter;
      const char *name;
      guint64 got;

      /* Every count goes on from the endpoint's, also in groups where the
       * session has nothing parked: a restored session knows only those
       * where it has (a group where nothing is parked had everything
       * handed taken, so its count was the endpoint's anyway). */
      g_variant_iter_init (&received_iter, received);
      while (g_variant_iter_next (&received_iter, "{&st}", &name, &got))
        session_ensure_group (session, name);
    }
  g_hash_table_iter_init (&iter, session->groups);
  while (kept && g_hash_table_iter_next (&iter, NULL, &value))
    {
      SessionGroup *sg = value;
      guint64 got = 0;
      guint64 lost;
      Group *group;
      Membership *m;

      if (received != NULL)
        g_variant_lookup (received, sg->name, "t", &got);
      /* Handed out last, lost in transit: never reached the endpoint. */
      lost = sg->handed > got ? MIN (sg->handed - got, sg->parked.length) : 0;
      sg->handed = got;
      if (sg->parked.length == 0)
        continue;
      group = router_ensure_group (router, sg->name);
      session->n_parked -= sg->parked.length;
      router_requeue_tail (router, group, &sg->parked, lost);
      m = peer_find_membership (peer, sg->name);
      if (m == NULL)
        router_requeue_tail (router, group, &sg->parked, sg->parked.length);
      else
        {
          Flight *flight;

          while ((flight = g_queue_pop_head (&sg->parked)) != NULL)
            {
              g_queue_push_tail (&m->in_flight, flight);
              m->in_flight_bytes += flight_cost (flight);
            }
        }
      if (lost > 0 || m == NULL)
        g_hash_table_add (touched, group);
    }

  session->resumable = FALSE;
  session->peer = peer;
  peer->session = session;
  for (guint i = 0; i < peer->n_memberships; i++)
    {
      Membership *m = &peer->memberships[i];

      m->session_group = session_ensure_group (session, m->group->name);
    }
  router_dispatch_touched (router, touched);
  return kept;
}

/* The peer's application took @count produced objects of @group, the
 * oldest it was handed: they are no longer the relay's concern. Returns
 * FALSE, taking nothing, when the peer has fewer in flight there (or is
 * not a member): a peer that says so is broken. */
gboolean
tlspyo_router_taken (TlspyoRouter     *router,
                     TlspyoRouterPeer *peer,
                     const char       *group_name,
                     guint64           count)
{
  Membership *m;

  g_return_val_if_fail (router != NULL, FALSE);
  g_return_val_if_fail (peer != NULL, FALSE);
  g_return_val_if_fail (group_name != NULL, FALSE);

  m = peer_find_membership (peer, group_name);
  if (m == NULL || count > m->in_flight.length)
    return FALSE;

  m->group->n_in_flight -= count;
  for (guint64 i = 0; i < count; i++)
    {
      Flight *flight = g_queue_pop_head (&m->in_flight);

      m->in_flight_bytes -= flight_cost (flight);
      JOURNAL (router, removed, flight->id);
      flight_free (flight);
    }
  /* Room again for a consumer that waited at the cap with credit. */
  membership_maybe_ready (router, m);
  router_dispatch (router, m->group);
  return TRUE;
}

gpointer
tlspyo_router_peer_get_data (TlspyoRouterPeer *peer)
{
  g_return_val_if_fail (peer != NULL, NULL);

  return peer->peer_data;
}

/* A floating @destinations is consumed. Entries are handled in array order;
 * a count of 0 is ignored. */
void
tlspyo_router_route (TlspyoRouter *router,
                     GVariant     *destinations,
                     GBytes       *object)
{
  g_autoptr(GVariant) owned = NULL;
  GVariantIter iter;
  const char *group;
  gint32 n;

  g_return_if_fail (router != NULL);
  g_return_if_fail (destinations != NULL);
  g_return_if_fail (g_variant_is_of_type (destinations, G_VARIANT_TYPE ("a{si}")));
  g_return_if_fail (object != NULL);

  owned = g_variant_ref_sink (destinations);
  g_variant_iter_init (&iter, owned);
  while (g_variant_iter_next (&iter, "{&si}", &group, &n))
    {
      if (n < 0)
        tlspyo_router_broadcast (router, group, object);
      else if (n > 0)
        tlspyo_router_produce (router, group, object, (guint) n);
    }
}

void
tlspyo_router_broadcast (TlspyoRouter *router,
                         const char   *group_name,
                         GBytes       *object)
{
  Group *group;
  GBytes *previous;

  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (object != NULL);

  group = router_lookup (router, group_name);
  if (!router_group_is_accepted (router, group))
    {
      router_refuse (router, group_name, 1);
      return;
    }
  if (group == NULL)
    group = router_ensure_group (router, group_name);

  group->latest_seq++;
  JOURNAL (router, latest, group->name, group->latest_seq, object);
  for (GList *l = group->members.head; l != NULL; l = l->next)
    {
      Membership *m = l->data;

      router->deliver (m->peer->peer_data, group->name, object, TLSPYO_ROUTER_BROADCAST,
                       group->latest_seq, router->user_data);
    }

  /* Ref before unref: @object may already be the latest. */
  previous = group->latest;
  group->latest = g_bytes_ref (object);
  if (previous != NULL)
    g_bytes_unref (previous);
}

/* A refused produce (group not accepted) reports one drop whatever @copies
 * is; get_n_dropped() counts every copy. */
void
tlspyo_router_produce (TlspyoRouter *router,
                       const char   *group_name,
                       GBytes       *object,
                       guint         copies)
{
  Group *group;
  guint64 remaining = copies;
  guint64 id;

  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (object != NULL);

  if (copies == 0)
    return;

  group = router_lookup (router, group_name);
  if (!router_group_is_accepted (router, group))
    {
      router_refuse (router, group_name, copies);
      return;
    }
  if (group == NULL)
    group = router_ensure_group (router, group_name);

  /* Every copy is an object of its own, with its own id. */
  id = router->next_id;
  router->next_id += copies;
  group->min_position = MIN (group->min_position, (gint64) MIN (id, (guint64) G_MAXINT64));
  JOURNAL (router, next_id, router->next_id);

  /* Ready consumers exist only while the queue is empty, so serving them
   * before queueing is the same as queueing then dispatching, except that a
   * bounded queue does not drop what a consumer was waiting for. */
  while (remaining > 0 && group->ready.length > 0)
    {
      Flight *flight = g_new (Flight, 1);

      flight->object = g_bytes_ref (object);
      flight->id = id++;
      JOURNAL (router, queued, flight->id, group->name, object);
      router_serve_ready_head (router, group, flight);
      remaining--;
    }
  if (remaining == 0)
    return;

  if (router->journal != NULL)
    for (guint64 i = 0; i < remaining; i++)
      JOURNAL (router, queued, id + i, group->name, object);
  group_enqueue (group, object, remaining, id);
  router_enforce_max_consumables (router, group);
}

/* @count > 0 adds credit; @count < 0 takes everything queued now that
 * fits below the in-flight cap (at least one object), without touching the
 * credit; 0, or a group @peer is not in, does nothing. */
void
tlspyo_router_notify (TlspyoRouter     *router,
                      TlspyoRouterPeer *peer,
                      const char       *group_name,
                      int               count)
{
  Membership *m;
  Group *group;

  g_return_if_fail (router != NULL);
  g_return_if_fail (peer != NULL);
  g_return_if_fail (group_name != NULL);

  m = peer_find_membership (peer, group_name);
  if (m == NULL || count == 0)
    return;
  group = m->group;

  if (count < 0)
    {
      /* Capped too: repeated, it would otherwise move every object ever
       * produced into memory held for this one peer. What does not fit
       * stays queued, for anyone. */
      while (group->queue_length > 0 && membership_has_room (router, m))
        {
          Flight *flight = group_dequeue (group);
          GBytes *object = flight->object;
          guint64 id = flight->id;

          membership_hand_out (router, m, flight);
          router->deliver (peer->peer_data, group->name, object, TLSPYO_ROUTER_ALL, id,
                           router->user_data);
        }
      return;
    }

  /* Saturate rather than wrap: endless notifies must not turn into debt. */
  if (m->credit > G_MAXINT64 - count)
    m->credit = G_MAXINT64;
  else
    m->credit += count;

  membership_maybe_ready (router, m);
  router_dispatch (router, group);
}

guint
tlspyo_router_get_queue_length (TlspyoRouter *router,
                                const char   *group_name)
{
  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  return (guint) MIN (router_peek (router, group_name)->queue_length, (guint64) G_MAXUINT);
}

guint
tlspyo_router_get_n_members (TlspyoRouter *router,
                             const char   *group_name)
{
  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  return router_peek (router, group_name)->members.length;
}

guint64
tlspyo_router_get_n_dropped (TlspyoRouter *router,
                             const char   *group_name)
{
  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  return router_peek (router, group_name)->n_dropped;
}

gboolean
tlspyo_router_has_latest (TlspyoRouter *router,
                          const char   *group_name)
{
  g_return_val_if_fail (router != NULL, FALSE);
  g_return_val_if_fail (group_name != NULL, FALSE);

  return router_peek (router, group_name)->latest != NULL;
}

/* Bytes held by @group's queue: each object once, however many copies of
 * it are queued in a row. */
guint64
tlspyo_router_get_queued_bytes (TlspyoRouter *router,
                                const char   *group_name)
{
  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  return router_peek (router, group_name)->queue_bytes;
}

/* Counts and reports objects its caller had to drop for @group (the relay
 * coalescing broadcasts for a slow endpoint), with the router's own. */
void
tlspyo_router_note_dropped (TlspyoRouter *router,
                            const char   *group_name,
                            guint64       n,
                            const char   *reason)
{
  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (reason != NULL);

  if (n == 0)
    return;
  router_drop (router, router_ensure_group (router, group_name), n, reason);
}

/* Produced objects handed to consumers of @group and not taken yet. */
guint64
tlspyo_router_get_n_in_flight (TlspyoRouter *router,
                               const char   *group_name)
{
  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  return router_peek (router, group_name)->n_in_flight;
}

/* The credit of @group's members, added up (saturating). */
guint64
tlspyo_router_get_credit (TlspyoRouter *router,
                          const char   *group_name)
{
  guint64 total = 0;

  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  /* Every member's: one waiting at the in-flight cap is out of the ready
   * ring, yet keeps its credit. */
  for (GList *l = router_peek (router, group_name)->members.head; l != NULL; l = l->next)
    {
      Membership *m = l->data;
      guint64 credit = (guint64) MAX (m->credit, 0);

      total = credit > G_MAXUINT64 - total ? G_MAXUINT64 : total + credit;
    }
  return total;
}

/* Calls @func for each group the router knows, in no particular order. */
void
tlspyo_router_foreach_group (TlspyoRouter *router,
                             GFunc         func,
                             gpointer      user_data)
{
  GHashTableIter iter;
  gpointer key;

  g_return_if_fail (router != NULL);
  g_return_if_fail (func != NULL);

  g_hash_table_iter_init (&iter, router->groups);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    func (key, user_data);
}

/* For a durable store (issue 5, item 4): the instance and numbers a
 * previous run used, and what it held. */

guint64
tlspyo_router_get_instance (TlspyoRouter *router)
{
  g_return_val_if_fail (router != NULL, 0);

  return router->instance;
}

void
tlspyo_router_set_instance (TlspyoRouter *router,
                            guint64       instance)
{
  g_return_if_fail (router != NULL);
  g_return_if_fail (instance != 0);

  router->instance = instance;
}

guint64
tlspyo_router_get_next_id (TlspyoRouter *router)
{
  g_return_val_if_fail (router != NULL, 0);

  return router->next_id;
}

/* Ids only grow: a smaller @next_id than the router's is ignored. */
void
tlspyo_router_set_next_id (TlspyoRouter *router,
                           guint64       next_id)
{
  g_return_if_fail (router != NULL);

  router->next_id = MAX (router->next_id, next_id);
}

/* Appends @object, with @id, to the tail of @group's queue, as it was
 * queued before (restore in queue order); no consumer is served (call
 * tlspyo_router_notify() or produce as usual afterwards). @position is
 * where the journal had it in the queue's order: objects put back at the
 * head later get positions below it. */
void
tlspyo_router_restore_queued (TlspyoRouter *router,
                              const char   *group_name,
                              GBytes       *object,
                              guint64       id,
                              gint64        position)
{
  Group *group;

  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (object != NULL);

  group = router_ensure_group (router, group_name);
  group->min_position = MIN (group->min_position, position);
  group_enqueue (group, object, 1, id);
  router->next_id = MAX (router->next_id, id + 1);
}

/* Appends @object, with @id, to what @session had in flight in @group
 * when its connection was lost (oldest first), and counts it as handed
 * to the session; the session becomes resumable. */
void
tlspyo_router_restore_parked (TlspyoRouter        *router,
                              TlspyoRouterSession *session,
                              const char          *group_name,
                              GBytes              *object,
                              guint64              id)
{
  SessionGroup *sg;
  Flight *flight;
  Group *group;

  g_return_if_fail (router != NULL);
  g_return_if_fail (session != NULL);
  g_return_if_fail (session->peer == NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (object != NULL);

  sg = session_ensure_group (session, group_name);
  flight = g_new (Flight, 1);
  flight->object = g_bytes_ref (object);
  flight->id = id;
  g_queue_push_tail (&sg->parked, flight);
  sg->handed++;
  session->n_parked++;
  session->resumable = TRUE;
  group = router_ensure_group (router, group_name);
  group->n_in_flight++;
  group->min_position = MIN (group->min_position, (gint64) MIN (id, (guint64) G_MAXINT64));
  router->next_id = MAX (router->next_id, id + 1);
}

/* Sets how many produced objects of @group_name @session was handed in
 * all (those it took included). */
void
tlspyo_router_session_set_handed (TlspyoRouterSession *session,
                                  const char          *group_name,
                                  guint64              handed)
{
  g_return_if_fail (session != NULL);
  g_return_if_fail (group_name != NULL);

  session_ensure_group (session, group_name)->handed = handed;
}

/* Makes @object @group's latest broadcast, numbered @seq (later ones are
 * numbered on from it), without delivering it. */
void
tlspyo_router_restore_latest (TlspyoRouter *router,
                              const char   *group_name,
                              GBytes       *object,
                              guint64       seq)
{
  Group *group;
  GBytes *previous;

  g_return_if_fail (router != NULL);
  g_return_if_fail (group_name != NULL);
  g_return_if_fail (object != NULL);

  group = router_ensure_group (router, group_name);
  previous = group->latest;
  group->latest = g_bytes_ref (object);
  group->latest_seq = seq;
  if (previous != NULL)
    g_bytes_unref (previous);
}

/* The number of @group's latest broadcast; 0 without one. */
guint64
tlspyo_router_get_latest_seq (TlspyoRouter *router,
                              const char   *group_name)
{
  const Group *group;

  g_return_val_if_fail (router != NULL, 0);
  g_return_val_if_fail (group_name != NULL, 0);

  group = router_peek (router, group_name);
  return group->latest != NULL ? group->latest_seq : 0;
}
