/* SPDX-License-Identifier: MIT */
/* The README example, over TLS and TCP: a relay and three endpoints in one
 * thread that never runs a main loop. */
#include "tlspyo-test-utils.h"

static void
run_readme_example (TlspyoSecurity security)
{
  TlspyoTestFixture f = { 0 };
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *prod, *cons_1, *cons_2;
  g_autoptr(GPtrArray) res1 = NULL;
  g_autoptr(GPtrArray) res2 = NULL;
  g_autoptr(GPtrArray) more = NULL;

  tlspyo_test_fixture_setup (&f, security);
  tlspyo_test_fixture_start (&f);

  prod = tlspyo_test_endpoint_new (&f, "producers");
  cons_1 = tlspyo_test_endpoint_new (&f, "consumers");
  cons_2 = tlspyo_test_endpoint_new (&f, "consumers");
  g_assert_true (tlspyo_endpoint_start (prod, &error));
  g_assert_true (tlspyo_endpoint_start (cons_1, &error));
  g_assert_true (tlspyo_endpoint_start (cons_2, &error));

  g_assert_true (tlspyo_endpoint_broadcast (prod, g_variant_new_string ("I HAVE BEEN BROADCAST"),
                                            "consumers", &error));
  g_assert_true (tlspyo_endpoint_produce (prod, g_variant_new_string ("I HAVE BEEN PRODUCED"),
                                          "consumers", &error));
  g_assert_true (tlspyo_endpoint_notify_ready (cons_1, "consumers", 1, &error));

  res1 = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  while (res1->len < 2)
    {
      g_autoptr(GPtrArray) got = tlspyo_endpoint_receive_all (cons_1, TLSPYO_TEST_TIMEOUT_MS, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (got->len, >, 0);
      for (guint i = 0; i < got->len; i++)
        g_ptr_array_add (res1, g_variant_ref (got->pdata[i]));
    }
  g_assert_cmpuint (res1->len, ==, 2);
  g_assert_cmpstr (g_variant_get_string (res1->pdata[0], NULL), ==, "I HAVE BEEN BROADCAST");
  g_assert_cmpstr (g_variant_get_string (res1->pdata[1], NULL), ==, "I HAVE BEEN PRODUCED");

  res2 = tlspyo_endpoint_receive_all (cons_2, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (res2->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (res2->pdata[0], NULL), ==, "I HAVE BEEN BROADCAST");

  /* Consumer 2 has no credit: the produced object went to consumer 1 only. */
  more = tlspyo_endpoint_receive_all (cons_2, 200, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (more->len, ==, 0);

  tlspyo_test_fixture_teardown (&f);
}

static void
test_readme_tls (void)
{
  run_readme_example (TLSPYO_SECURITY_TLS);
}

static void
test_readme_tcp (void)
{
  run_readme_example (TLSPYO_SECURITY_NONE);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  g_test_add_func ("/example/readme/tls", test_readme_tls);
  g_test_add_func ("/example/readme/tcp", test_readme_tcp);
  return g_test_run ();
}
