/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* The worker side of a relay as a whole: the lifetime of its state
 * (RelayCore), listening, accepting connections (telling TLS from plain
 * TCP), stopping, and the statistics snapshot. Runs on the worker thread
 * only. */

RelayCore *
tlspyo_relay_core_ref (RelayCore *core)
{
  g_atomic_ref_count_inc (&core->ref_count);
  return core;
}

void
tlspyo_relay_core_unref (RelayCore *core)
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
  g_hash_table_unref (core->produced_meta[0]);
  g_hash_table_unref (core->produced_meta[1]);
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
      tlspyo_relay_peer_start_protocol (peer, peer->stream);
    }
  else
    tlspyo_relay_peer_start_tls (peer);  /* and with it, whatever error the peer causes */

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
void
tlspyo_relay_core_add_peer (RelayCore  *core,
                            GIOStream  *stream,
                            GSocket    *socket,
                            const char *address,
                            const char *address_key)
{
  g_autofree char *over_limit = NULL;
  RelayPeer *peer;

  if (core->store_failed)
    {
      /* Serves no more (tlspyo_relay_core_store_failed()); only streams handed over
       * by tlspyo_relay_accept_stream() get this far. */
      g_io_stream_close (stream, NULL, NULL);
      return;
    }
  over_limit = tlspyo_relay_core_check_connection_limits (core, address, address_key);
  if (over_limit != NULL && core->n_refusing >= MAX_REFUSING)
    {
      /* Too many to explain each: drop it before spending anything on it. */
      tlspyo_relay_core_log_limit (core,
                                   "Closed the connection from %s at once: %s", address, over_limit);
      tlspyo_relay_core_address_forget (core, address_key);
      g_io_stream_close (stream, NULL, NULL);
      return;
    }

  peer = g_new0 (RelayPeer, 1);
  peer->core = core;
  peer->address = g_strdup (address);
  peer->address_key = g_strdup (address_key);
  if (over_limit != NULL)
    {
      tlspyo_relay_core_log_limit (core, "Refusing %s: %s", address, over_limit);
      peer->over_limit = g_steal_pointer (&over_limit);
      core->n_refusing++;
    }
  else
    {
      peer->counted = TRUE;
      core->n_counted++;
      tlspyo_relay_core_address (core, address_key)->n_connections++;
    }
  peer->cancellable = g_cancellable_new ();
  peer->early = g_ptr_array_new_with_free_func (tlspyo_relay_early_delivery_free);
  g_hash_table_add (core->peers, peer);

  peer->handshake_timer = g_timeout_source_new_seconds (core->handshake_timeout);
  g_source_set_callback (peer->handshake_timer, tlspyo_relay_handshake_timeout_cb, peer, NULL);
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
      tlspyo_relay_peer_start_tls (peer);
    }
  else
    tlspyo_relay_peer_start_protocol (peer, peer->stream);
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
  tlspyo_relay_core_add_peer (core,
                              G_IO_STREAM (connection), g_socket_connection_get_socket (connection),
                              address, key);
  return TRUE;
}

gboolean
tlspyo_relay_core_start_cb (gpointer data)
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
      tlspyo_relay_core_start_durable (core);
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
  tlspyo_relay_core_start_durable (core);
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

gboolean
tlspyo_relay_core_stop_cb (gpointer data)
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
      if (tlspyo_relay_core_commit (core, &commit_error))
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
      tlspyo_relay_peer_close (peer, error);
    }
  /* Here and not at the last unref: the folder's lock must be free once
   * stop() returns, for a relay started again on it. */
  g_clear_pointer (&core->store, tlspyo_store_free);
  tlspyo_relay_core_unref (core);
  return G_SOURCE_REMOVE;
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

gboolean
tlspyo_relay_core_stats_cb (gpointer data)
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
