/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* Deliveries from the router to connections: DELIVER metadata built once
 * per object, deliveries held until a peer has joined, the bounds on a
 * connection's output (held and coalesced broadcasts, the drain check) and
 * the drops reported to the owner. Runs on the worker thread only. */

void
tlspyo_relay_early_delivery_free (gpointer data)
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

static void
held_broadcast_free (gpointer data)
{
  HeldBroadcast *held = data;

  g_bytes_unref (held->object);
  g_bytes_unref (held->meta);
  g_free (held);
}

void
tlspyo_relay_peer_report_coalesced (RelayPeer     *peer,
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
      tlspyo_relay_peer_report_coalesced (peer, key, held);
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
          tlspyo_relay_peer_report_coalesced (peer, group, held);
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
void
tlspyo_relay_peer_release_early (RelayPeer *peer,
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

/* The PRODUCED metadata of @group, built once per group and kind. */
static GBytes *
core_produced_meta (RelayCore  *core,
                    const char *group,
                    gboolean    credit)
{
  GHashTable *cache = core->produced_meta[credit ? 1 : 0];
  GBytes *meta = g_hash_table_lookup (cache, group);

  if (meta == NULL)
    {
      /* Bounded: groups come and go with the endpoints' names for them. */
      if (g_hash_table_size (cache) >= 4096)
        g_hash_table_remove_all (cache);
      meta = tlspyo_frame_serialize_meta (TLSPYO_FRAME_PRODUCED,
                                          g_variant_new ("(sb)", group, credit));
      g_hash_table_insert (cache, g_strdup (group), meta);
    }
  return meta;
}

/* Produced objects travel as PRODUCED, saying whether they used credit, so
 * that the endpoint knows what credit it still has and can ask for it again
 * after reconnecting. Only broadcasts reach a peer still joining. */
void
tlspyo_relay_router_deliver_cb (gpointer              peer_data,
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
void
tlspyo_relay_router_drop (const char *group,
                          const char *reason,
                          guint64     n_objects,
                          gpointer    user_data)
{
  RelayCore *core = user_data;

  g_debug ("Dropped %" G_GUINT64_FORMAT " object(s) for group '%s': %s", n_objects, group,
           reason);
  tlspyo_relay_core_emit_dropped (core, group, reason, n_objects);
}
