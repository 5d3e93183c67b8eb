/* SPDX-License-Identifier: MIT */
/* Writes the seed corpus of each fuzz target into DIR/TARGET/ (seed-*
 * files; files found by fuzzing have other names and are kept):
 * well-formed inputs that reach every state and frame type, and a few
 * broken ones next to them. Run it after a change to the wire format:
 *   _build/tests/fuzz/fuzz-make-seeds tests/fuzz */
#include <string.h>

#include <glib/gstdio.h>

#include "tlspyo-frame-private.h"
#include "tlspyo-auth-private.h"

static const char *out_dir;

static void
write_seed (const char   *target,
            const char   *name,
            const guint8 *data,
            gsize         len)
{
  g_autofree char *dir = g_build_filename (out_dir, target, NULL);
  g_autofree char *file = g_strconcat ("seed-", name, NULL);
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_autoptr(GError) error = NULL;

  g_mkdir_with_parents (dir, 0755);
  if (!g_file_set_contents (path, (const char *) data, len, &error))
    g_error ("%s", error->message);
}

static void
write_array (const char *target,
             const char *name,
             GByteArray *array)
{
  write_seed (target, name, array->data, array->len);
}

static void
add_frame (GByteArray      *out,
           TlspyoFrameType  type,
           GVariant        *meta,
           GBytes          *body)
{
  gsize body_len = body ? g_bytes_get_size (body) : 0;

  tlspyo_frame_append (out, type, meta, body_len);
  if (body != NULL)
    g_byte_array_append (out, g_bytes_get_data (body, NULL), body_len);
}

static GVariant *
bytes_variant (const guint8 *data,
               gsize         len)
{
  return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1);
}

static GVariant *
destinations (const char *group,
              int         count)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&builder, "{si}", group, count);
  return g_variant_new ("(a{si})", &builder);
}

/* Objects */

static GBytes *
object_body (const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = g_variant_parse (NULL, text, NULL, NULL, &error);

  if (value == NULL)
    g_error ("%s: %s", text, error->message);
  return tlspyo_object_to_bytes (value);
}

static const char *object_texts[] = {
  "'hello'",
  "int32 42",
  "uint64 18446744073709551615",
  "3.5",
  "true",
  "byte 0x7f",
  "()",
  "['a', 'bb', '']",
  "{'x': <1>, 'y': <'two'>, 'z': <<[1.0, 2.0]>>}",
  "('group', {'a': int32 -1, 'b': 3})",
  "[<<<int32 1>>>, <'s'>]",
  "just int32 5",
  "@mi nothing",
  "@ms just 'maybe'",
  "[[[[[[[[int32 1]]]]]]]]",
  "b'bytes\\x00with\\xffanything'",
  "@a{sv} {}",
  "(int16 -2, uint16 2, int64 -5, handle 3, objectpath '/a/b', signature 'a{sv}')",
  "[(1, 'x'), (2, 'yy')]",
};

static void
seeds_object (void)
{
  static const struct {
    const char *name;
    const char *data;
    gsize       len;
  } bad[] = {
    { "bad-nul-only", "\0", 1 },
    { "bad-no-type", "abc\0", 4 },
    { "bad-no-nul", "abcs", 4 },
    { "bad-type", "\0{vs}", 5 },
    { "bad-indefinite", "xx\0a*", 5 },
    { "bad-fixed-size", "abc\0i", 5 },
    { "bad-tuple-size", "\x01\0(ii)", 7 },
    { "bad-string", "abc\0s", 5 },
    { "bad-deep-variant", "\0\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v\0v", 42 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (object_texts); i++)
    {
      g_autoptr(GBytes) body = object_body (object_texts[i]);
      g_autofree char *name = g_strdup_printf ("good-%02u", i);

      write_seed ("object", name, g_bytes_get_data (body, NULL), g_bytes_get_size (body));
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    write_seed ("object", bad[i].name, (const guint8 *) bad[i].data, bad[i].len);
}

/* Frames: byte 0 picks the decoder's limits (0 relay before HELLO, 1 before
 * AUTH, 2 joined, 3 endpoint; 0x10 switches to all types after a frame),
 * byte 1 the chunk sizes. */

static GByteArray *
frame_input (guint8 profile,
             guint8 seed)
{
  GByteArray *out = g_byte_array_new ();

  g_byte_array_append (out, &profile, 1);
  g_byte_array_append (out, &seed, 1);
  return out;
}

static GVariant *
hello_meta (void)
{
  guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 1, 2, 3 };

  return g_variant_new ("(u@ay)", (guint32) TLSPYO_PROTOCOL_VERSION,
                        bytes_variant (nonce, sizeof nonce));
}

static GVariant *
auth_meta (const char * const *groups)
{
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE] = { 9 };

  return g_variant_new ("(@ay^as)", bytes_variant (proof, sizeof proof), groups);
}

/* Protocol 2: a session that received 3 objects of "a", and has seen
 * broadcast 2 of "workers" from instance 77. */
static GVariant *
session_meta (void)
{
  guint8 id[TLSPYO_SESSION_ID_SIZE] = { 4, 2 };

  return g_variant_new_parsed ("(%@ay, @t 0, {'a': @t 3}, {'workers': (@t 77, @t 2)})",
                               bytes_variant (id, sizeof id));
}

static void
seeds_frame (void)
{
  static const char * const groups[] = { "workers", "trainers", NULL };
  guint8 nonce[TLSPYO_AUTH_NONCE_SIZE] = { 7 };
  guint8 salt[TLSPYO_AUTH_SALT_SIZE] = { 5 };
  g_autoptr(GBytes) text = object_body ("'a sample'");
  g_autoptr(GBytes) dict = object_body (object_texts[8]);
  GByteArray *out;

  for (guint8 seed = 0; seed < 3; seed++)
    {
      g_autofree char *name = g_strdup_printf ("relay-hello-%u", seed);

      out = frame_input (0, seed);
      add_frame (out, TLSPYO_FRAME_HELLO, hello_meta (), NULL);
      write_array ("frame", name, out);
      g_byte_array_unref (out);
    }

  out = frame_input (1, 1);
  add_frame (out, TLSPYO_FRAME_AUTH, auth_meta (groups), NULL);
  add_frame (out, TLSPYO_FRAME_BYE, g_variant_new ("(s)", "bye"), NULL);
  write_array ("frame", "relay-auth", out);
  g_byte_array_unref (out);

  out = frame_input (2, 4);
  add_frame (out, TLSPYO_FRAME_SESSION, session_meta (), NULL);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("workers", -1), text);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("workers", 3), dict);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "workers", 2), NULL);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "workers", -1), NULL);
  add_frame (out, TLSPYO_FRAME_TAKEN, g_variant_new_parsed ("({'workers': @u 2},)"), NULL);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("workers", -1), text);
  write_array ("frame", "relay-joined", out);
  g_byte_array_unref (out);

  /* Stops after the second frame (bits 5-6). */
  out = frame_input (2 | (2 << 5), 2);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "g", 1), NULL);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "g", 1), NULL);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "g", 1), NULL);
  write_array ("frame", "relay-stop", out);
  g_byte_array_unref (out);

  out = frame_input (0 | 0x10, 5);
  add_frame (out, TLSPYO_FRAME_HELLO, hello_meta (), NULL);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("g", 1), dict);
  add_frame (out, TLSPYO_FRAME_DELIVER, g_variant_new ("(stt)", "g", (guint64) 77, (guint64) 1), text);
  write_array ("frame", "switch-limits", out);
  g_byte_array_unref (out);

  out = frame_input (0, 3);
  add_frame (out, TLSPYO_FRAME_HELLO_USER,
             g_variant_new ("(u@ays)", (guint32) TLSPYO_PROTOCOL_VERSION,
                            bytes_variant (nonce, sizeof nonce), "trainer"), NULL);
  write_array ("frame", "relay-hello-user", out);
  g_byte_array_unref (out);

  out = frame_input (3, 6);
  add_frame (out, TLSPYO_FRAME_CHALLENGE,
             g_variant_new ("(@ay@ayu)", bytes_variant (nonce, sizeof nonce),
                            bytes_variant (salt, sizeof salt), 20000), NULL);
  add_frame (out, TLSPYO_FRAME_WELCOME, g_variant_new ("(@ay)", bytes_variant (nonce, 32)), NULL);
  add_frame (out, TLSPYO_FRAME_RESUMED, g_variant_new ("(ttb)", (guint64) 4, (guint64) 1 << 20, TRUE),
             NULL);
  add_frame (out, TLSPYO_FRAME_DELIVER,
             g_variant_new ("(stt)", "workers", (guint64) 77, (guint64) 2), dict);
  add_frame (out, TLSPYO_FRAME_PRODUCED, g_variant_new ("(sb)", "workers", TRUE), text);
  add_frame (out, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 3), NULL);
  add_frame (out, TLSPYO_FRAME_DENIED, g_variant_new ("(uss)", 10, "workers", "no right"), NULL);
  add_frame (out, TLSPYO_FRAME_REFUSED, g_variant_new ("(us)", 2, "no"), NULL);
  add_frame (out, TLSPYO_FRAME_BYE, g_variant_new ("(s)", "the relay stopped"), NULL);
  write_array ("frame", "endpoint-all", out);
  g_byte_array_unref (out);

  /* Headers that must be refused before anything is allocated. */
  {
    guint8 header[TLSPYO_FRAME_HEADER_SIZE];

    out = frame_input (2, 0);
    tlspyo_frame_write_header (header, TLSPYO_FRAME_OBJECT, G_MAXUINT32, G_MAXUINT64);
    g_byte_array_append (out, header, sizeof header);
    write_array ("frame", "bad-huge-lengths", out);
    g_byte_array_unref (out);

    out = frame_input (3, 0);
    tlspyo_frame_write_header (header, TLSPYO_FRAME_DELIVER, 4, 1 << 20);
    header[3] = 1;
    g_byte_array_append (out, header, sizeof header);
    write_array ("frame", "bad-flags", out);
    g_byte_array_unref (out);
  }
}

/* Handshake: byte 0 = mode | groups << 2 (see fuzz-handshake.c), then
 * bytes the harness sends as they are. */

static GByteArray *
handshake_input_as (guint8 mode,
                    guint8 groups,
                    guint8 who)
{
  GByteArray *out = g_byte_array_new ();
  guint8 first = mode | (groups << 2) | (who << 4);

  g_byte_array_append (out, &first, 1);
  return out;
}

static GByteArray *
handshake_input (guint8 mode,
                 guint8 groups)
{
  GByteArray *out = g_byte_array_new ();
  guint8 first = mode | (groups << 2);

  g_byte_array_append (out, &first, 1);
  return out;
}

static void
seeds_handshake (void)
{
  static const char * const groups[] = { "a", NULL };
  g_autoptr(GBytes) text = object_body ("'a sample'");
  g_autoptr(GBytes) dict = object_body (object_texts[8]);
  GByteArray *out;

  out = handshake_input (0, 0);
  add_frame (out, TLSPYO_FRAME_HELLO, hello_meta (), NULL);
  add_frame (out, TLSPYO_FRAME_AUTH, auth_meta (groups), NULL);
  write_array ("handshake", "raw-hello-auth", out);
  g_byte_array_unref (out);

  out = handshake_input (0, 0);
  add_frame (out, TLSPYO_FRAME_BYE, g_variant_new ("(s)", "never mind"), NULL);
  write_array ("handshake", "raw-bye", out);
  g_byte_array_unref (out);

  out = handshake_input (1, 0);
  add_frame (out, TLSPYO_FRAME_AUTH, auth_meta (groups), NULL);
  write_array ("handshake", "hello-wrong-auth", out);
  g_byte_array_unref (out);

  out = handshake_input (2, 0);
  add_frame (out, TLSPYO_FRAME_SESSION, session_meta (), NULL);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "a", 2), NULL);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", 2), dict);
  add_frame (out, TLSPYO_FRAME_TAKEN, g_variant_new_parsed ("({'a': @u 1},)"), NULL);
  add_frame (out, TLSPYO_FRAME_TAKEN, g_variant_new_parsed ("({'a': @u 5},)"), NULL);
  write_array ("handshake", "joined-session-taken", out);
  g_byte_array_unref (out);

  for (guint8 g = 0; g < 4; g++)
    {
      g_autofree char *name = g_strdup_printf ("joined-%u", g);

      out = handshake_input (2, g);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", -1), text);
      add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "a", 2), NULL);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", 2), dict);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("b", 1), text);
      add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "b", -1), NULL);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("undeclared", -1), text);
      add_frame (out, TLSPYO_FRAME_BYE, g_variant_new ("(s)", "done"), NULL);
      write_array ("handshake", name, out);
      g_byte_array_unref (out);
    }

  out = handshake_input (2, 0);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", 0), text);
  write_array ("handshake", "joined-count-0", out);
  g_byte_array_unref (out);

  out = handshake_input (2, 1);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("c", G_MAXINT32), dict);
  add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "c", 5), NULL);
  write_array ("handshake", "joined-many-copies", out);
  g_byte_array_unref (out);

  out = handshake_input (3, 0);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", -1), text);
  write_array ("handshake", "wrong-proof-then-object", out);
  g_byte_array_unref (out);

  /* As the named user alice: allowed and denied actions. */
  for (guint8 g = 0; g < 3; g++)
    {
      g_autofree char *name = g_strdup_printf ("alice-%u", g);
      g_autofree guint8 *big = g_malloc0 (40000);
      g_autoptr(GBytes) big_body = NULL;

      big[39998] = 0;
      big[39999] = 'y';
      big_body = g_bytes_new (big, 40000);
      out = handshake_input_as (2, g, 1);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", -1), text);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("b", -1), text);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("c", 1), big_body);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("c", 1), big_body);
      add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("c", 1), dict);
      add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "a", 1), NULL);
      add_frame (out, TLSPYO_FRAME_NOTIFY, g_variant_new ("(si)", "c", -1), NULL);
      write_array ("handshake", name, out);
      g_byte_array_unref (out);
    }

  out = handshake_input_as (2, 0, 2);
  add_frame (out, TLSPYO_FRAME_OBJECT, destinations ("a", -1), text);
  write_array ("handshake", "unknown-user", out);
  g_byte_array_unref (out);

  out = handshake_input_as (3, 1, 1);
  write_array ("handshake", "alice-wrong-proof", out);
  g_byte_array_unref (out);
}

static void
seeds_config (void)
{
  static const struct {
    const char *name;
    const char *text;
  } configs[] = {
    { "example", "{\n  \"address\": \"0.0.0.0\",\n  \"port\": 2096,\n  \"security\": \"tls\",\n"
                 "  \"credentials_dir\": \"/etc/tlspyo\",\n  \"max_object_size\": 268435456,\n"
                 "  \"handshake_timeout\": 10,\n  \"groups\": {\n"
                 "    \"trainers\": { \"max_count\": 1 },\n"
                 "    \"workers\": { \"max_count\": -1, \"max_consumables\": 10000 },\n"
                 "    \"monitors\": {}\n  }\n}\n" },
    { "empty", "{}" },
    { "plain", "{\"security\": \"none\", \"port\": 0, \"address\": \"::1\"}" },
    { "groups-unicode", "{\"groups\": {\"é ☃\": {\"max_count\": 2, \"max_consumables\": 0}}}" },
    { "bad-type", "{\"port\": \"2096\"}" },
    { "bad-range", "{\"handshake_timeout\": 0}" },
    { "bad-key", "{\"max_objet_size\": 10}" },
    { "bad-group-name", "{\"groups\": {\"a\\u0001b\": {}}}" },
    { "bad-json", "{\"groups\": {\"a\": }" },
    { "bad-root", "[1, 2, 3]" },
    { "limits", "{\"limits\": {\"max_connections\": 10, \"max_connections_per_address\": 2, "
                "\"max_auth_failures\": 0, \"auth_block_time\": 1, \"auth_failure_delay\": 5000, "
                "\"max_groups_per_endpoint\": 0, \"max_queued_bytes\": 1, "
                "\"max_in_flight_bytes\": 1}}" },
    { "users", "{\"users\": {\"trainer\": {\"password_hash\": "
               "\"pbkdf2-sha256$10000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", "
               "\"rights\": {\"samples\": [\"join\", \"consume\"], \"*\": [\"all\"], "
               "\"q\": []}}, \"w\": {\"password_hash\": "
               "\"pbkdf2-sha256$10000000$AA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}}}" },
    { "bad-user-hash", "{\"users\": {\"a\": {\"password_hash\": \"pbkdf2-sha256$1$AA==$AA==\"}}}" },
    { "bad-right", "{\"users\": {\"a\": {\"password_hash\": "
                   "\"pbkdf2-sha256$10000$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", "
                   "\"rights\": {\"g\": [\"fly\"]}}}}" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    write_seed ("config", configs[i].name, (const guint8 *) configs[i].text,
                strlen (configs[i].text));
}

int
main (int    argc,
      char **argv)
{
  if (argc != 2)
    {
      g_printerr ("usage: %s tests/fuzz\n", argv[0]);
      return 2;
    }
  out_dir = argv[1];
  seeds_object ();
  seeds_frame ();
  seeds_handshake ();
  seeds_config ();
  return 0;
}
