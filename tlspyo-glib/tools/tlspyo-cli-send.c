/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include <gio/gunixinputstream.h>

#include "tlspyo-cli.h"
#include "tlspyo-json-variant.h"

#define DEFAULT_TIMEOUT_S 10.0
/* Reading stdin waits for the relay's acknowledgements every so many
 * objects, so that a fast producer and a slow relay do not fill memory. */
#define FLUSH_EVERY 1024
#define PRODUCE_UNSET G_MININT

typedef struct {
  TlspyoEndpoint *endpoint;
  const char     *group;
  int             produce;  /* copies to produce; 0 to broadcast */
} Sender;

static gboolean
send_one (Sender    *sender,
          GVariant  *object,
          GError   **error)
{
  if (sender->produce == 0)
    return tlspyo_endpoint_broadcast (sender->endpoint, object, sender->group, error);
  if (sender->produce == 1)
    return tlspyo_endpoint_produce (sender->endpoint, object, sender->group, error);
  return tlspyo_endpoint_send_object (sender->endpoint, object,
                                      g_variant_new_parsed ("{%s: %i}", sender->group,
                                                            (gint32) sender->produce),
                                      error);
}

/* The sender belongs to a group too (an endpoint must); what the relay
 * delivers to it, such as its own broadcasts, is dropped here rather than
 * left to pile up in its queue. */
static gboolean
drop_object_cb (TlspyoEndpoint *endpoint,
                GVariant       *object,
                const char     *group,
                gpointer        data)
{
  return TRUE;
}

static void
drain_context (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* "--produce N" and "--produce" become "--produce=N" and "--produce=1":
 * GOption's optional arguments would otherwise take the JSON object that
 * follows as N. */
static char **
rewrite_produce (int    argc,
                 char **argv)
{
  GStrvBuilder *builder = g_strv_builder_new ();
  char **result;

  for (int i = 0; i < argc; i++)
    {
      if (strcmp (argv[i], "--") == 0)
        {
          for (; i < argc; i++)
            g_strv_builder_add (builder, argv[i]);
          break;
        }
      if (strcmp (argv[i], "--produce") == 0)
        {
          guint64 n;

          if (i + 1 < argc &&
              g_ascii_string_to_unsigned (argv[i + 1], 10, 0, G_MAXUINT64, &n, NULL))
            {
              g_autofree char *option = g_strdup_printf ("--produce=%s", argv[i + 1]);
              g_strv_builder_add (builder, option);
              i++;
            }
          else
            {
              g_strv_builder_add (builder, "--produce=1");
            }
          continue;
        }
      g_strv_builder_add (builder, argv[i]);
    }
  result = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  return result;
}

static int
send_stdin (Sender              *sender,
            const GVariantType  *type,
            int                  timeout_ms,
            guint64             *n_sent,
            GError             **error)
{
  g_autoptr(GInputStream) raw = g_unix_input_stream_new (0, FALSE);
  g_autoptr(GDataInputStream) input = g_data_input_stream_new (raw);
  guint line_number = 0;

  /* Lines can be long (a large array); the stream grows its buffer. */
  g_data_input_stream_set_newline_type (input, G_DATA_STREAM_NEWLINE_TYPE_LF);
  for (;;)
    {
      g_autoptr(GError) local_error = NULL;
      g_autoptr(GVariant) object = NULL;
      g_autofree char *line = NULL;
      gsize length;

      line = g_data_input_stream_read_line (input, &length, NULL, &local_error);
      if (line == NULL)
        {
          if (local_error != NULL)
            {
              g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                           "could not read standard input: %s", local_error->message);
              return TLSPYO_CLI_EXIT_FAILURE;
            }
          return TLSPYO_CLI_EXIT_OK;
        }
      line_number++;

      /* Blank lines separate nothing and carry nothing. */
      if (strspn (line, " \t\r") == length)
        continue;

      object = tlspyo_json_variant_parse (line, length, line_number, type, &local_error);
      if (object == NULL)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "standard input, %s: fix that line%s", local_error->message,
                       type != NULL ? " or --type" : "");
          return TLSPYO_CLI_EXIT_FAILURE;
        }
      if (!send_one (sender, object, error))
        return TLSPYO_CLI_EXIT_FAILURE;
      (*n_sent)++;

      drain_context ();
      if (*n_sent % FLUSH_EVERY == 0 &&
          !tlspyo_endpoint_flush (sender->endpoint, timeout_ms, error))
        return TLSPYO_CLI_EXIT_FAILURE;
    }
}

int
tlspyo_cli_send (int    argc,
                 char **argv)
{
  TlspyoCliEndpointOptions options = { .timeout = DEFAULT_TIMEOUT_S };
  g_autofree char *group = NULL;
  g_autofree char *join = NULL;
  g_autofree char *type_string = NULL;
  g_auto(GStrv) args = NULL;
  g_auto(GStrv) positional = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) object = NULL;
  g_autoptr(GVariantType) type = NULL;
  g_autoptr(TlspyoEndpoint) endpoint = NULL;
  gboolean broadcast = FALSE;
  int produce = PRODUCE_UNSET;
  int timeout_ms;
  int status;
  guint64 n_sent = 0;
  Sender sender;
  const char *groups[2] = { NULL, NULL };
  const GOptionEntry entries[] = {
    { "group", 'g', 0, G_OPTION_ARG_STRING, &group,
      "Send to GROUP (required)", "GROUP" },
    { "broadcast", 'b', 0, G_OPTION_ARG_NONE, &broadcast,
      "Broadcast to every member of the group (the default)", NULL },
    { "produce", 0, 0, G_OPTION_ARG_INT, &produce,
      "Produce into the group's queue instead, N copies of each object (default 1)", "[N]" },
    { "type", 'T', 0, G_OPTION_ARG_STRING, &type_string,
      "Convert the JSON to this GVariant type, such as a{sv} or (sid) (default: the natural "
      "mapping)", "SIGNATURE" },
    { "join", 0, 0, G_OPTION_ARG_STRING, &join,
      "The group this endpoint itself belongs to (default: the --group)", "GROUP" },
    { NULL }
  };

  context = tlspyo_cli_context_new ("JSON|-", "Send one object given as JSON, or with - one "
                                    "object per line of standard input, to a group of the "
                                    "relay. Exits with 0 once the relay acknowledged every "
                                    "object, with 1 when it did not within --timeout (default "
                                    "10 s).",
                                    "Without --type, JSON integers become int64 (x), other "
                                    "numbers double (d), strings s, true/false b, null mv, "
                                    "arrays av and objects a{sv}. A JSON value starting with "
                                    "- goes after --. Blank lines of standard input are "
                                    "skipped.",
                                    entries);
  tlspyo_cli_endpoint_options_add (context, &options);
  args = rewrite_produce (argc, argv);
  status = tlspyo_cli_parse (context, (int) g_strv_length (args), args, &positional);
  if (status >= 0)
    goto out;

  status = TLSPYO_CLI_EXIT_USAGE;
  if (group == NULL)
    {
      tlspyo_cli_printerr ("no group given: pass --group GROUP");
      goto out;
    }
  if (broadcast && produce != PRODUCE_UNSET)
    {
      tlspyo_cli_printerr ("--broadcast and --produce exclude each other: give one");
      goto out;
    }
  if (produce != PRODUCE_UNSET && produce < 1)
    {
      tlspyo_cli_printerr ("--produce %d is not a number of copies: give 1 or more", produce);
      goto out;
    }
  if (positional[0] == NULL || positional[1] != NULL)
    {
      tlspyo_cli_printerr ("give exactly one object: JSON such as '{\"x\": 1}', or - to read "
                           "one object per line of standard input");
      goto out;
    }
  if (type_string != NULL)
    {
      if (!g_variant_type_string_is_valid (type_string))
        {
          tlspyo_cli_printerr ("--type %s is not a GVariant type: give one such as s, x, ad, "
                               "a{sv} or (sid)", type_string);
          goto out;
        }
      type = g_variant_type_new (type_string);
      if (!g_variant_type_is_definite (type))
        {
          tlspyo_cli_printerr ("--type %s is not a definite type: replace * ? and r with "
                               "actual types", type_string);
          goto out;
        }
    }
  if (!tlspyo_cli_timeout_ms (options.timeout, "--timeout", &timeout_ms, &error))
    {
      status = tlspyo_cli_report (error);
      goto out;
    }

  /* Checked before connecting: a mistyped object must not half-send a batch. */
  if (strcmp (positional[0], "-") != 0)
    {
      object = tlspyo_json_variant_parse (positional[0], strlen (positional[0]), 1, type, &error);
      if (object == NULL)
        {
          tlspyo_cli_printerr ("the JSON argument, %s: fix the JSON%s", error->message,
                               type != NULL ? " or --type" : "");
          goto out;
        }
    }

  groups[0] = join ? join : group;
  endpoint = tlspyo_cli_endpoint_new (&options, groups, &error);
  if (endpoint == NULL)
    {
      status = tlspyo_cli_report (error);
      goto out;
    }
  g_object_set (endpoint, "stop-timeout", options.timeout, NULL);
  g_signal_connect (endpoint, "object-received", G_CALLBACK (drop_object_cb), NULL);

  status = TLSPYO_CLI_EXIT_FAILURE;
  if (!tlspyo_cli_endpoint_connect (endpoint, &options, timeout_ms, &error))
    {
      status = tlspyo_cli_report (error);
      goto stop;
    }

  sender.endpoint = endpoint;
  sender.group = group;
  sender.produce = produce == PRODUCE_UNSET ? 0 : produce;
  if (object != NULL)
    {
      if (!send_one (&sender, object, &error))
        {
          status = tlspyo_cli_report (error);
          goto stop;
        }
      n_sent = 1;
    }
  else if (send_stdin (&sender, type, timeout_ms, &n_sent, &error) != TLSPYO_CLI_EXIT_OK)
    {
      /* What was read before the failure is still delivered. */
      gboolean delivered = tlspyo_endpoint_flush (endpoint, timeout_ms, NULL);

      tlspyo_cli_printerr ("%s; the %" G_GUINT64_FORMAT " object%s before it %s", error->message,
                           n_sent, n_sent == 1 ? "" : "s",
                           delivered ? "reached the relay" : "may not have reached the relay");
      goto stop;
    }

  if (!tlspyo_endpoint_flush (endpoint, timeout_ms, &error))
    {
      tlspyo_cli_printerr ("the relay did not acknowledge every object: %s: check that it "
                           "still runs, or wait longer with --timeout", error->message);
      goto stop;
    }
  status = TLSPYO_CLI_EXIT_OK;

stop:
  tlspyo_endpoint_stop (endpoint);
  drain_context ();
out:
  tlspyo_cli_endpoint_options_clear (&options);
  return status;
}
