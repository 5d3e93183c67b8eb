/* SPDX-License-Identifier: MIT */
/* The tlspyo README example in C: a relay, a producer and two consumers in
 * one thread that never runs a main loop (blocking calls drive it).
 *
 * Usage: readme [CREDENTIALS-DIR]
 * Without a folder, TLS credentials are generated into a temporary one. */
#include <glib/gstdio.h>
#include <tlspyo-glib/tlspyo-glib.h>

static TlspyoEndpoint *
make_endpoint (guint       port,
               const char *group,
               const char *credentials_dir)
{
  const char *groups[] = { group, NULL };
  TlspyoEndpoint *ep = tlspyo_endpoint_new ("127.0.0.1", port, "VerySecurePassword", groups);
  g_autoptr(GError) error = NULL;

  g_object_set (ep, "credentials-dir", credentials_dir, NULL);
  if (!tlspyo_endpoint_start (ep, &error))
    g_error ("%s", error->message);
  return ep;
}

static void
print_objects (const char *who,
               GPtrArray  *objects)
{
  g_autoptr(GString) line = g_string_new ("[");

  for (guint i = 0; i < objects->len; i++)
    {
      g_autofree char *text = g_variant_print (objects->pdata[i], FALSE);
      g_string_append_printf (line, "%s%s", i ? ", " : "", text);
    }
  g_string_append (line, "]");
  g_print ("%s has received: %s\n", who, line->str);
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmp_dir = NULL;
  const char *credentials_dir = argc > 1 ? argv[1] : NULL;
  g_autoptr(TlspyoRelay) relay = NULL;
  g_autoptr(TlspyoEndpoint) prod = NULL;
  g_autoptr(TlspyoEndpoint) cons_1 = NULL;
  g_autoptr(TlspyoEndpoint) cons_2 = NULL;
  g_autoptr(GPtrArray) res = NULL;
  guint port;

  if (credentials_dir == NULL)
    {
      tmp_dir = g_dir_make_tmp ("tlspyo-example-XXXXXX", &error);
      if (tmp_dir == NULL || !tlspyo_credentials_generate (tmp_dir, NULL, &error))
        g_error ("%s", error->message);
      credentials_dir = tmp_dir;
    }

  /* A relay on 127.0.0.1; port 0 lets the system pick a free port. */
  relay = tlspyo_relay_new (0, "VerySecurePassword");
  g_object_set (relay, "address", "127.0.0.1", "credentials-dir", credentials_dir, NULL);
  if (!tlspyo_relay_start (relay, &error))
    g_error ("%s", error->message);
  port = tlspyo_relay_get_port (relay);

  prod = make_endpoint (port, "producers", credentials_dir);
  cons_1 = make_endpoint (port, "consumers", credentials_dir);
  cons_2 = make_endpoint (port, "consumers", credentials_dir);

  /* The producer broadcasts to every endpoint of "consumers"... */
  tlspyo_endpoint_broadcast (prod, g_variant_new_string ("I HAVE BEEN BROADCAST"), "consumers", NULL);
  /* ...and puts an object in the shared queue of "consumers". */
  tlspyo_endpoint_produce (prod, g_variant_new_string ("I HAVE BEEN PRODUCED"), "consumers", NULL);
  /* Consumer 1 is ready to consume one produced object. */
  tlspyo_endpoint_notify_ready (cons_1, "consumers", 1, NULL);

  /* Consumer 1 gets the broadcast AND the produced object (timeout -1:
   * tlspyo's blocking=True; 10 s here so the example cannot hang). */
  res = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  while (res->len < 2)
    {
      g_autoptr(GPtrArray) got = tlspyo_endpoint_receive_all (cons_1, 10000, &error);
      if (got == NULL || got->len == 0)
        g_error ("Consumer 1 received nothing in 10 s%s%s", error ? ": " : "", error ? error->message : "");
      for (guint i = 0; i < got->len; i++)
        g_ptr_array_add (res, g_variant_ref (got->pdata[i]));
    }
  print_objects ("Consumer 1", res);
  g_clear_pointer (&res, g_ptr_array_unref);

  /* Consumer 2 gets only the broadcast. */
  res = tlspyo_endpoint_receive_all (cons_2, 10000, &error);
  if (res == NULL || res->len == 0)
    g_error ("Consumer 2 received nothing in 10 s");
  print_objects ("Consumer 2", res);

  tlspyo_endpoint_stop (prod);
  tlspyo_endpoint_stop (cons_1);
  tlspyo_endpoint_stop (cons_2);
  tlspyo_relay_stop (relay);

  if (tmp_dir != NULL)
    {
      g_autofree char *key = g_build_filename (tmp_dir, "key.pem", NULL);
      g_autofree char *cert = g_build_filename (tmp_dir, "certificate.pem", NULL);
      g_unlink (key);
      g_unlink (cert);
      g_rmdir (tmp_dir);
    }
  return 0;
}
