/* SPDX-License-Identifier: MIT */
#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"

int
tlspyo_test_timeout_ms (void)
{
  static int timeout_ms = 0;

  if (timeout_ms == 0)
    {
      const char *env = g_getenv ("TLSPYO_TEST_TIMEOUT_MS");
      gint64 value = env ? g_ascii_strtoll (env, NULL, 10) : 0;

      timeout_ms = value >= 1000 && value <= 3600 * 1000 ? (int) value : 10000;
    }
  return timeout_ms;
}

void
tlspyo_test_init (int    *argc,
                  char ***argv)
{
  g_setenv ("GIO_USE_PROXY_RESOLVER", "dummy", TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_test_init (argc, argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
}

char *
tlspyo_test_make_credentials (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("tlspyo-test-XXXXXX", &error);

  g_assert_no_error (error);
  tlspyo_credentials_generate (dir, NULL, &error);
  g_assert_no_error (error);
  return g_steal_pointer (&dir);
}

void
tlspyo_test_remove_dir (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        tlspyo_test_remove_dir (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

void
tlspyo_test_fixture_setup (TlspyoTestFixture *fixture,
                           TlspyoSecurity     security)
{
  fixture->security = security;
  if (security == TLSPYO_SECURITY_TLS)
    fixture->credentials_dir = tlspyo_test_make_credentials ();
  fixture->relay = g_object_new (TLSPYO_TYPE_RELAY,
                                 "port", 0,
                                 "address", "127.0.0.1",
                                 "password", TLSPYO_TEST_PASSWORD,
                                 "security", security,
                                 "credentials-dir", fixture->credentials_dir,
                                 NULL);
  fixture->endpoints = g_ptr_array_new_with_free_func (g_object_unref);
}

void
tlspyo_test_fixture_start (TlspyoTestFixture *fixture)
{
  g_autoptr(GError) error = NULL;

  tlspyo_relay_start (fixture->relay, &error);
  g_assert_no_error (error);
  fixture->port = tlspyo_relay_get_port (fixture->relay);
  g_assert_cmpuint (fixture->port, >, 0);
}

void
tlspyo_test_fixture_teardown (TlspyoTestFixture *fixture)
{
  for (guint i = 0; i < fixture->endpoints->len; i++)
    tlspyo_endpoint_stop (g_ptr_array_index (fixture->endpoints, i));
  g_ptr_array_unref (fixture->endpoints);
  tlspyo_relay_stop (fixture->relay);
  g_assert_finalize_object (fixture->relay);
  if (fixture->credentials_dir != NULL)
    tlspyo_test_remove_dir (fixture->credentials_dir);
  g_free (fixture->credentials_dir);
}

TlspyoEndpoint *
tlspyo_test_endpoint_new (TlspyoTestFixture *fixture,
                          const char        *groups)
{
  g_auto(GStrv) group_list = g_strsplit (groups, ",", -1);
  TlspyoEndpoint *ep;

  ep = g_object_new (TLSPYO_TYPE_ENDPOINT,
                     "host", "127.0.0.1",
                     "port", fixture->port,
                     "password", TLSPYO_TEST_PASSWORD,
                     "groups", group_list,
                     "security", fixture->security,
                     "credentials-dir", fixture->credentials_dir,
                     "reconnect-initial-delay", 0.05,
                     "reconnect-max-delay", 0.5,
                     NULL);
  g_ptr_array_add (fixture->endpoints, ep);
  return ep;
}

TlspyoEndpoint *
tlspyo_test_endpoint_start (TlspyoTestFixture *fixture,
                            const char        *groups)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (fixture, groups);

  tlspyo_endpoint_start (ep, &error);
  g_assert_no_error (error);
  tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  return ep;
}

void
tlspyo_test_expect_string (TlspyoEndpoint *ep,
                           const char     *expected)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objects = tlspyo_endpoint_pop (ep, 1, TLSPYO_TEST_TIMEOUT_MS, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (objects->len, ==, 1);
  g_assert_true (g_variant_is_of_type (objects->pdata[0], G_VARIANT_TYPE_STRING));
  g_assert_cmpstr (g_variant_get_string (objects->pdata[0], NULL), ==, expected);
}

void
tlspyo_test_expect_nothing (TlspyoEndpoint *ep,
                            int             ms)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objects = tlspyo_endpoint_pop (ep, 1, ms, &error);

  g_assert_no_error (error);
  if (objects->len > 0)
    {
      g_autofree char *text = g_variant_print (objects->pdata[0], TRUE);
      g_test_fail_printf ("expected nothing, received %s", text);
    }
}

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

gboolean
tlspyo_test_wait_flag (gboolean *flag)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (TLSPYO_TEST_TIMEOUT_MS, timeout_cb, &timed_out);

  while (!*flag && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  return *flag;
}

void
tlspyo_test_fixture_setup_param (TlspyoTestFixture *fixture,
                                 gconstpointer      security)
{
  tlspyo_test_fixture_setup (fixture, GPOINTER_TO_INT (security));
}

void
tlspyo_test_fixture_teardown_param (TlspyoTestFixture *fixture,
                                    gconstpointer      security)
{
  tlspyo_test_fixture_teardown (fixture);
  tlspyo_test_log_reset ();
}

void
tlspyo_test_fixture_restart (TlspyoTestFixture *fixture)
{
  g_autoptr(GError) error = NULL;

  g_object_set (fixture->relay, "port", fixture->port, NULL);
  /* A port just released may be briefly unavailable; a few tries, bounded. */
  for (guint attempt = 0; !tlspyo_relay_start (fixture->relay, &error); attempt++)
    {
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_NETWORK);
      if (attempt * 50 >= (guint) TLSPYO_TEST_TIMEOUT_MS)
        g_error ("Could not start the relay again on port %u: %s", fixture->port, error->message);
      g_clear_error (&error);
      g_usleep (50 * 1000);
    }
  g_assert_cmpuint (tlspyo_relay_get_port (fixture->relay), ==, fixture->port);
}

guint
tlspyo_test_get_dead_port (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  guint port;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_socket_bind (socket, any, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_socket_close (socket, NULL);
  return port;
}

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

gboolean
tlspyo_test_wait_until (TlspyoTestCondFunc func,
                        gpointer           data)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;
  /* A tick, so that a condition changed on another thread without waking
   * the context is still seen. */
  guint tick = g_timeout_add (10, tick_cb, NULL);
  gboolean done;

  while (!(done = func (data)) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  return done;
}

typedef struct {
  TlspyoEndpoint *ep;
  gboolean        connected;
} ConnectedState;

static gboolean
connected_state_reached (gpointer data)
{
  ConnectedState *state = data;

  return tlspyo_endpoint_get_connected (state->ep) == state->connected;
}

gboolean
tlspyo_test_wait_connected_state (TlspyoEndpoint *ep,
                                  gboolean        connected)
{
  ConnectedState state = { ep, !!connected };

  return tlspyo_test_wait_until (connected_state_reached, &state);
}

GPtrArray *
tlspyo_test_pop_n (TlspyoEndpoint *ep,
                   guint           n)
{
  GPtrArray *all = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;

  while (all->len < n)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GPtrArray) got = NULL;
      gint64 left = (deadline - g_get_monotonic_time ()) / 1000;

      if (left <= 0)
        break;
      got = tlspyo_endpoint_pop (ep, n - all->len, (int) left, &error);
      g_assert_no_error (error);
      for (guint i = 0; i < got->len; i++)
        g_ptr_array_add (all, g_variant_ref (got->pdata[i]));
    }
  if (all->len != n)
    g_error ("Expected %u objects, received %u within %d ms", n, all->len, TLSPYO_TEST_TIMEOUT_MS);
  return all;
}

/* Log capture */

static GMutex log_mutex;
static GPtrArray *log_tolerated;  /* patterns */
static GPtrArray *log_seen;       /* messages of tolerated warnings */

static GLogWriterOutput
capture_writer (GLogLevelFlags   log_level,
                const GLogField *fields,
                gsize            n_fields,
                gpointer         user_data)
{
  if (log_level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
    {
      const char *message = NULL;
      gboolean tolerated = FALSE;

      for (gsize i = 0; i < n_fields; i++)
        if (g_strcmp0 (fields[i].key, "MESSAGE") == 0 && fields[i].length < 0)
          message = fields[i].value;

      g_mutex_lock (&log_mutex);
      for (guint i = 0; message != NULL && log_tolerated && i < log_tolerated->len; i++)
        if (g_pattern_match_simple (log_tolerated->pdata[i], message))
          {
            tolerated = TRUE;
            g_ptr_array_add (log_seen, g_strdup (message));
            break;
          }
      g_mutex_unlock (&log_mutex);

      if (tolerated)
        {
          g_printerr ("(tolerated warning) %s\n", message);
          return G_LOG_WRITER_HANDLED;
        }
    }
  return g_log_writer_default (log_level, fields, n_fields, user_data);
}

void
tlspyo_test_log_capture_init (void)
{
  g_mutex_lock (&log_mutex);
  log_tolerated = g_ptr_array_new_with_free_func (g_free);
  log_seen = g_ptr_array_new_with_free_func (g_free);
  g_mutex_unlock (&log_mutex);
  g_log_set_writer_func (capture_writer, NULL, NULL);
}

void
tlspyo_test_log_tolerate (const char *pattern)
{
  g_mutex_lock (&log_mutex);
  g_assert_nonnull (log_tolerated);
  g_ptr_array_add (log_tolerated, g_strdup (pattern));
  g_mutex_unlock (&log_mutex);
}

void
tlspyo_test_log_reset (void)
{
  g_mutex_lock (&log_mutex);
  if (log_tolerated != NULL)
    {
      g_ptr_array_set_size (log_tolerated, 0);
      g_ptr_array_set_size (log_seen, 0);
    }
  g_mutex_unlock (&log_mutex);
}

guint
tlspyo_test_log_count (const char *pattern)
{
  guint n = 0;

  g_mutex_lock (&log_mutex);
  for (guint i = 0; log_seen && i < log_seen->len; i++)
    if (g_pattern_match_simple (pattern, log_seen->pdata[i]))
      n++;
  g_mutex_unlock (&log_mutex);
  return n;
}

GHashTable *
tlspyo_test_list_threads (void)
{
  GHashTable *threads = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  if (dir == NULL)
    return threads;
  while ((tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/task", tid, "comm", NULL);
      char *comm = NULL;

      if (g_file_get_contents (path, &comm, NULL, NULL))
        g_hash_table_insert (threads, g_strdup (tid), g_strchomp (comm));
    }
  return threads;
}

gboolean
tlspyo_test_thread_named_exists (const char *name)
{
  g_autoptr(GHashTable) threads = tlspyo_test_list_threads ();
  GHashTableIter iter;
  gpointer comm;

  g_hash_table_iter_init (&iter, threads);
  while (g_hash_table_iter_next (&iter, NULL, &comm))
    if (g_str_equal (comm, name))
      return TRUE;
  return FALSE;
}

/* Endpoint calls that must succeed */

void
tlspyo_test_broadcast (TlspyoEndpoint *ep,
                       GVariant       *object,
                       const char     *group)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_broadcast (ep, object, group, &error));
  g_assert_no_error (error);
}

void
tlspyo_test_broadcast_string (TlspyoEndpoint *ep,
                              const char     *text,
                              const char     *group)
{
  tlspyo_test_broadcast (ep, g_variant_new_string (text), group);
}

void
tlspyo_test_produce_string (TlspyoEndpoint *ep,
                            const char     *text,
                            const char     *group)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_produce (ep, g_variant_new_string (text), group, &error));
  g_assert_no_error (error);
}

void
tlspyo_test_notify_ready (TlspyoEndpoint *ep,
                          const char     *group,
                          int             count)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_notify_ready (ep, group, count, &error));
  g_assert_no_error (error);
}

void
tlspyo_test_flush (TlspyoEndpoint *ep)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_endpoint_flush (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
}

void
tlspyo_test_give_credit (TlspyoEndpoint *ep,
                         const char     *group,
                         int             count)
{
  tlspyo_test_notify_ready (ep, group, count);
  tlspyo_test_flush (ep);
}

typedef struct {
  TlspyoEndpoint *ep;
  guint           n;
} QueuedWait;

static gboolean
queued_reached (gpointer data)
{
  QueuedWait *w = data;

  return tlspyo_endpoint_get_n_queued (w->ep) >= w->n;
}

void
tlspyo_test_wait_n_queued (TlspyoEndpoint *ep,
                           guint           n)
{
  QueuedWait w = { ep, n };

  /* At least, then exactly: one too many fails at once, not at the bound. */
  g_assert_true (tlspyo_test_wait_until (queued_reached, &w));
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (ep), ==, n);
}

typedef struct {
  TlspyoRelay *relay;
  guint        n;
} ConnectionsWait;

static gboolean
connections_reached (gpointer data)
{
  ConnectionsWait *w = data;

  return tlspyo_relay_get_n_connections (w->relay) == w->n;
}

void
tlspyo_test_wait_n_connections (TlspyoRelay *relay,
                                guint        n)
{
  ConnectionsWait w = { relay, n };

  if (!tlspyo_test_wait_until (connections_reached, &w))
    g_error ("The relay counts %u connections, not %u", tlspyo_relay_get_n_connections (relay), n);
}

/* Refusals */

static void
refusals_record (TlspyoTestRefusals *refusals,
                 const char         *group,
                 const char         *address,
                 TlspyoError         code,
                 const char         *reason)
{
  refusals->count++;
  refusals->code = code;
  g_free (refusals->group);
  refusals->group = g_strdup (group);
  g_free (refusals->address);
  refusals->address = g_strdup (address);
  g_free (refusals->reason);
  refusals->reason = g_strdup (reason);
}

static void
action_refused_cb (TlspyoEndpoint     *ep,
                   const char         *group,
                   TlspyoError         code,
                   const char         *reason,
                   TlspyoTestRefusals *refusals)
{
  refusals_record (refusals, group, NULL, code, reason);
}

static void
endpoint_refused_cb (TlspyoRelay        *relay,
                     const char         *address,
                     TlspyoError         code,
                     const char         *reason,
                     TlspyoTestRefusals *refusals)
{
  refusals_record (refusals, NULL, address, code, reason);
}

void
tlspyo_test_refusals_watch_endpoint (TlspyoTestRefusals *refusals,
                                     TlspyoEndpoint     *ep)
{
  g_signal_connect (ep, "action-refused", G_CALLBACK (action_refused_cb), refusals);
}

void
tlspyo_test_refusals_watch_relay (TlspyoTestRefusals *refusals,
                                  TlspyoRelay        *relay)
{
  g_signal_connect (relay, "endpoint-refused", G_CALLBACK (endpoint_refused_cb), refusals);
}

gboolean
tlspyo_test_refusals_seen (gpointer refusals)
{
  return ((TlspyoTestRefusals *) refusals)->count > 0;
}

void
tlspyo_test_refusals_clear (TlspyoTestRefusals *refusals)
{
  g_clear_pointer (&refusals->group, g_free);
  g_clear_pointer (&refusals->address, g_free);
  g_clear_pointer (&refusals->reason, g_free);
}

/* Raw protocol client */

struct _TlspyoTestRaw {
  GSocketConnection  *conn;
  GSocket            *socket;
  TlspyoFrameDecoder *decoder;
  GQueue              frames;  /* of TlspyoFrame copies */
};

static gboolean
raw_collect_cb (const TlspyoFrame *frame,
                gpointer           user_data)
{
  TlspyoTestRaw *raw = user_data;
  TlspyoFrame *copy = g_new0 (TlspyoFrame, 1);

  copy->type = frame->type;
  copy->meta = g_variant_ref (frame->meta);
  copy->body = frame->body != NULL ? g_bytes_ref (frame->body) : NULL;
  g_queue_push_tail (&raw->frames, copy);
  return TRUE;
}

void
tlspyo_test_raw_frame_free (TlspyoFrame *frame)
{
  g_variant_unref (frame->meta);
  g_clear_pointer (&frame->body, g_bytes_unref);
  g_free (frame);
}

void
tlspyo_test_raw_send (TlspyoTestRaw   *raw,
                      TlspyoFrameType  type,
                      GVariant        *meta,
                      GBytes          *body)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;

  tlspyo_frame_append (out, type, meta, body != NULL ? g_bytes_get_size (body) : 0);
  if (body != NULL)
    g_byte_array_append (out, g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  g_assert_true (g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (raw->conn)),
                                            out->data, out->len, NULL, NULL, &error));
  g_assert_no_error (error);
}

void
tlspyo_test_raw_produce (TlspyoTestRaw *raw,
                         const char    *group,
                         const char    *text)
{
  g_autoptr(GBytes) body = tlspyo_object_to_bytes (g_variant_new_string (text));

  tlspyo_test_raw_send (raw, TLSPYO_FRAME_OBJECT, g_variant_new_parsed ("({%s: 1},)", group),
                        body);
}

TlspyoFrame *
tlspyo_test_raw_expect (TlspyoTestRaw   *raw,
                        TlspyoFrameType  type)
{
  for (;;)
    {
      TlspyoFrame *frame;
      guint8 buffer[16384];
      g_autoptr(GError) error = NULL;
      gssize n;

      while ((frame = g_queue_pop_head (&raw->frames)) != NULL)
        {
          if (frame->type == type)
            return frame;
          tlspyo_test_raw_frame_free (frame);
        }
      n = g_socket_receive (raw->socket, (char *) buffer, sizeof buffer, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      g_assert_true (tlspyo_frame_decoder_feed (raw->decoder, buffer, n, raw_collect_cb, raw,
                                                &error));
      g_assert_no_error (error);
    }
}

TlspyoTestRaw *
tlspyo_test_raw_join (guint         port,
                      const char   *group,
                      const guint8 *session_id)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  guint8 nonce[TLSPYO_AUTH_NONCE_SIZE], key[TLSPYO_AUTH_KEY_SIZE], proof[TLSPYO_AUTH_PROOF_SIZE];
  g_autoptr(GVariant) relay_nonce = NULL;
  g_autoptr(GVariant) salt = NULL;
  const char *groups[] = { group, NULL };
  TlspyoFrame *frame;
  guint32 iterations;
  const guint8 *salt_data;
  gsize salt_len;
  TlspyoTestRaw *raw = g_new0 (TlspyoTestRaw, 1);

  g_socket_client_set_enable_proxy (client, FALSE);
  raw->conn = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  raw->socket = g_socket_connection_get_socket (raw->conn);
  g_socket_set_timeout (raw->socket, MAX (TLSPYO_TEST_TIMEOUT_MS / 1000, 1));
  raw->decoder = tlspyo_frame_decoder_new (TLSPYO_FRAME_MAX_META, 1024 * 1024,
                                           TLSPYO_FRAME_MASK_ALL);
  g_queue_init (&raw->frames);

  tlspyo_auth_random (nonce, sizeof nonce);
  tlspyo_test_raw_send (raw, TLSPYO_FRAME_HELLO,
                        g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                                       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, nonce,
                                                                  sizeof nonce, 1)),
                        NULL);
  frame = tlspyo_test_raw_expect (raw, TLSPYO_FRAME_CHALLENGE);
  g_variant_get (frame->meta, "(@ay@ayu)", &relay_nonce, &salt, &iterations);
  tlspyo_test_raw_frame_free (frame);
  salt_data = g_variant_get_fixed_array (salt, &salt_len, 1);
  g_assert_true (tlspyo_auth_derive_key (TLSPYO_TEST_PASSWORD, salt_data, salt_len, iterations,
                                         key, &error));
  g_assert_no_error (error);
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, nonce, g_variant_get_data (relay_nonce),
                     proof);
  tlspyo_test_raw_send (raw, TLSPYO_FRAME_AUTH,
                        g_variant_new ("(@ay^as)",
                                       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, proof,
                                                                  sizeof proof, 1),
                                       groups),
                        NULL);
  tlspyo_test_raw_frame_free (tlspyo_test_raw_expect (raw, TLSPYO_FRAME_WELCOME));
  tlspyo_test_raw_send (raw, TLSPYO_FRAME_SESSION,
                        g_variant_new ("(@ayt@a{st}@a{s(tt)})",
                                       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, session_id,
                                                                  TLSPYO_SESSION_ID_SIZE, 1),
                                       (guint64) 0,
                                       g_variant_new_array (G_VARIANT_TYPE ("{st}"), NULL, 0),
                                       g_variant_new_array (G_VARIANT_TYPE ("{s(tt)}"), NULL, 0)),
                        NULL);
  return raw;
}

void
tlspyo_test_raw_free (TlspyoTestRaw *raw)
{
  g_io_stream_close (G_IO_STREAM (raw->conn), NULL, NULL);
  g_object_unref (raw->conn);
  tlspyo_frame_decoder_free (raw->decoder);
  g_queue_clear_full (&raw->frames, (GDestroyNotify) tlspyo_test_raw_frame_free);
  g_free (raw);
}

guint64
tlspyo_test_raw_expect_resumed (TlspyoTestRaw *raw,
                                guint64       *max_size)
{
  TlspyoFrame *frame = tlspyo_test_raw_expect (raw, TLSPYO_FRAME_RESUMED);
  guint64 next;
  gboolean kept;

  g_variant_get (frame->meta, "(ttb)", &next, max_size, &kept);
  tlspyo_test_raw_frame_free (frame);
  return next;
}

void
tlspyo_test_raw_expect_ack (TlspyoTestRaw *raw,
                            guint64        n)
{
  for (;;)
    {
      TlspyoFrame *frame = tlspyo_test_raw_expect (raw, TLSPYO_FRAME_ACK);
      guint64 acked;

      g_variant_get (frame->meta, "(t)", &acked);
      tlspyo_test_raw_frame_free (frame);
      g_assert_cmpuint (acked, <=, n);
      if (acked == n)
        return;
    }
}

void
tlspyo_test_raw_expect_closed (TlspyoTestRaw *raw)
{
  for (;;)
    {
      guint8 buffer[16384];
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_receive (raw->socket, (char *) buffer, sizeof buffer, NULL, &error);

      g_assert_false (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
      if (n <= 0)
        return;
    }
}
