/* SPDX-License-Identifier: MIT */
#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"

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
