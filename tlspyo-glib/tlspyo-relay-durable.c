/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* What makes the relay hold its promises across lost connections and
 * restarts (issue 5): the per-endpoint session records, the timer that
 * parks a lost session's objects in flight, and with a state directory the
 * durable relay: the store journal hooks, the commit and its write gate,
 * and the restore at start(). Runs on the worker thread only. */

RelaySession *
tlspyo_relay_session_ref (RelaySession *session)
{
  session->ref_count++;
  return session;
}

void
tlspyo_relay_session_stop_timer (RelaySession *session)
{
  if (session->park_timer != NULL)
    {
      g_source_destroy (session->park_timer);
      g_clear_pointer (&session->park_timer, g_source_unref);
    }
}

/* Forgotten (evicted, or the relay ends): what it had parked goes back to
 * the queues. */
void
tlspyo_relay_session_unref (RelaySession *session)
{
  if (--session->ref_count > 0)
    return;
  tlspyo_relay_session_stop_timer (session);
  tlspyo_router_session_free (session->core->router, session->routing);
  g_free (session);
}

/* Session ids are random: any 4 of their bytes hash well. */
guint
tlspyo_relay_session_id_hash (gconstpointer key)
{
  guint h;

  memcpy (&h, key, sizeof h);
  return h;
}

gboolean
tlspyo_relay_session_id_equal (gconstpointer a,
                               gconstpointer b)
{
  return memcmp (a, b, TLSPYO_SESSION_ID_SIZE) == 0;
}

static void core_state_changed (RelayCore *core);

/* The record of session @id, made if new; borrowed. */
RelaySession *
tlspyo_relay_core_session (RelayCore    *core,
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

/* The durable relay (issue 5, item 4). The router reports each change of
 * durable state through its journal, which writes it into the store's open
 * transaction; the first change of a batch closes the write gate and
 * schedules one commit at the end of the dispatch, which opens the gate
 * again. So no byte leaves a connection before the state changes made
 * before it are on disk: an ACK never acknowledges an object that a crash
 * would lose, and a consumer never gets an object whose hand-out a crash
 * would forget (and hand out again). */

static gboolean core_commit_cb (gpointer data);
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
void
tlspyo_relay_core_session_dirty (RelaySession *session)
{
  RelayCore *core = session->core;

  if (core->gate == NULL || session->evicted || core->store_failed || core->stopped)
    return;
  /* Not g_hash_table_add() alone: adding a key again frees the old one. */
  if (!g_hash_table_contains (core->dirty_sessions, session))
    g_hash_table_add (core->dirty_sessions, tlspyo_relay_session_ref (session));
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
gboolean
tlspyo_relay_core_commit (RelayCore  *core,
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
void
tlspyo_relay_core_store_failed (RelayCore    *core,
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
    tlspyo_relay_peer_close (g_ptr_array_index (peers, i), refusal);
}

static gboolean
core_commit_cb (gpointer data)
{
  RelayCore *core = data;
  g_autoptr(GError) error = NULL;

  if (tlspyo_relay_core_commit (core, &error))
    tlspyo_write_gate_open (core->gate);
  else
    tlspyo_relay_core_store_failed (core, error);
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
  session = tlspyo_relay_core_session (core, holder);
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
  RelaySession *session = tlspyo_relay_core_session (user_data, id);

  session->next = MAX (session->next, next_seq);
}

gboolean
tlspyo_relay_core_restore (RelayCore  *core,
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
void
tlspyo_relay_core_start_durable (RelayCore *core)
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
        tlspyo_relay_session_start_timer (session);
      else
        tlspyo_router_session_expire (core->router, session->routing);
    }
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
void
tlspyo_relay_session_start_timer (RelaySession *session)
{
  tlspyo_relay_session_stop_timer (session);
  session->park_timer = g_timeout_source_new ((guint) MIN (session->core->session_timeout * 1000,
                                                           (double) G_MAXUINT));
  g_source_set_callback (session->park_timer, session_expire_cb, session, NULL);
  g_source_set_static_name (session->park_timer, "[tlspyo] relay session timeout");
  g_source_attach (session->park_timer, g_main_context_get_thread_default ());
}
