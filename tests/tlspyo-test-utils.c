/* SPDX-License-Identifier: MIT */
#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"

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
