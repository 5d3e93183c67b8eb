/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tlspyo-cli.h"
#include "tlspyo-json-variant.h"

/* Without --timeout, the wait for the first connection is still bounded:
 * a relay that is not there is reported instead of waited for. */
#define CONNECT_TIMEOUT_S 10.0
#define TIMEOUT_UNSET -1.0

typedef struct {
  gint64   count;      /* objects wanted, or 0 for no limit */
  gint64   received;
  gboolean with_group;
  gboolean write_failed;
} Receiver;

static gboolean
object_received_cb (TlspyoEndpoint *endpoint,
                    GVariant       *object,
                    const char     *group,
                    gpointer        data)
{
  Receiver *receiver = data;
  g_autofree char *json = NULL;
  g_autoptr(GString) line = NULL;

  /* Past --count, objects are taken and not printed: the command is
   * about to stop. */
  if (receiver->write_failed || (receiver->count > 0 && receiver->received >= receiver->count))
    return TRUE;

  json = tlspyo_json_variant_to_json (object);
  line = g_string_new (NULL);
  if (receiver->with_group)
    {
      g_autoptr(GVariant) name = g_variant_ref_sink (g_variant_new_string (group));
      g_autofree char *group_json = tlspyo_json_variant_to_json (name);

      g_string_append_printf (line, "{\"group\":%s,\"object\":%s}\n", group_json, json);
    }
  else
    {
      g_string_append_printf (line, "%s\n", json);
    }

  /* Not g_print(): it converts to the locale's charset, and JSON is UTF-8. */
  if (fwrite (line->str, 1, line->len, stdout) != line->len || fflush (stdout) != 0)
    receiver->write_failed = TRUE;
  receiver->received++;
  g_main_context_wakeup (NULL);
  return TRUE;
}

static gboolean
timeout_cb (gpointer data)
{
  gboolean *timed_out = data;

  *timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

int
tlspyo_cli_receive (int    argc,
                    char **argv)
{
  TlspyoCliEndpointOptions options = { .timeout = TIMEOUT_UNSET };
  g_auto(GStrv) groups = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoEndpoint) endpoint = NULL;
  TlspyoCliSignals signals = { { 0 }, 0 };
  Receiver receiver = { 0, 0, FALSE, FALSE };
  gboolean all = FALSE;
  gboolean timed_out = FALSE;
  int notify = 0;
  int count = 0;
  int timeout_ms = -1;
  int connect_ms;
  guint timeout_id = 0;
  gint64 start_time;
  int status;
  const GOptionEntry entries[] = {
    { "group", 'g', 0, G_OPTION_ARG_STRING_ARRAY, &groups,
      "Join GROUP (required; repeat it to join several)", "GROUP" },
    { "notify", 'n', 0, G_OPTION_ARG_INT, &notify,
      "Ask each group's queue for N produced objects", "N" },
    { "all", 'A', 0, G_OPTION_ARG_NONE, &all,
      "Ask each group's queue for every object queued now", NULL },
    { "count", 'c', 0, G_OPTION_ARG_INT, &count,
      "Stop after K objects; exit with 1 if fewer arrive before --timeout", "K" },
    { "with-group", 0, 0, G_OPTION_ARG_NONE, &receiver.with_group,
      "Print {\"group\": G, \"object\": O} instead of the object alone", NULL },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Join groups of a relay and print each object "
                                    "received (broadcasts, and produced objects asked for with "
                                    "--notify or --all) as one line of JSON, until --count "
                                    "objects arrived, --timeout passed, or SIGINT/SIGTERM.",
                                    "Exit status: 0 when --count objects arrived, or, without "
                                    "--count, when --timeout or a signal ended the run (even "
                                    "with no object); 1 when fewer than --count objects arrived, "
                                    "or connecting failed. With --count, keep --notify at or "
                                    "below it: produced objects beyond the count would be taken "
                                    "from the queue and not printed.",
                                    entries);
  tlspyo_cli_endpoint_options_add (context, &options);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    goto out;

  status = TLSPYO_CLI_EXIT_USAGE;
  if (groups == NULL || groups[0] == NULL)
    {
      tlspyo_cli_printerr ("no group given: pass --group GROUP");
      goto out;
    }
  if (notify < 0 || count < 0)
    {
      tlspyo_cli_printerr ("--notify and --count take a positive number (--all asks for every "
                           "queued object)");
      goto out;
    }
  if (all && notify > 0)
    {
      tlspyo_cli_printerr ("--notify and --all exclude each other: give one");
      goto out;
    }
  if (count > 0 && notify > count)
    {
      tlspyo_cli_printerr ("--notify %d asks for more objects than --count %d prints: the "
                           "extra ones would be lost; lower --notify", notify, count);
      goto out;
    }
  if (options.timeout != TIMEOUT_UNSET &&
      !tlspyo_cli_timeout_ms (options.timeout, "--timeout", &timeout_ms, &error))
    {
      status = tlspyo_cli_report (error);
      goto out;
    }
  receiver.count = count;

  endpoint = tlspyo_cli_endpoint_new (&options, (const char * const *) groups, &error);
  if (endpoint == NULL)
    {
      status = tlspyo_cli_report (error);
      goto out;
    }
  /* Objects go straight to the handler: none waits in the local queue. */
  g_signal_connect (endpoint, "object-received", G_CALLBACK (object_received_cb), &receiver);

  status = TLSPYO_CLI_EXIT_FAILURE;
  start_time = g_get_monotonic_time ();
  connect_ms = timeout_ms > 0 ? timeout_ms : (int) (CONNECT_TIMEOUT_S * 1000);
  if (!tlspyo_cli_endpoint_connect (endpoint, &options, connect_ms, &error))
    {
      status = tlspyo_cli_report (error);
      goto stop;
    }

  for (guint i = 0; (notify > 0 || all) && groups[i] != NULL; i++)
    {
      if (!tlspyo_endpoint_notify_ready (endpoint, groups[i], all ? -1 : notify, &error))
        {
          status = tlspyo_cli_report (error);
          goto stop;
        }
    }

  if (timeout_ms > 0)
    {
      gint64 elapsed_ms = (g_get_monotonic_time () - start_time) / 1000;
      timeout_id = g_timeout_add ((guint) MAX (0, timeout_ms - elapsed_ms), timeout_cb, &timed_out);
    }
  tlspyo_cli_signals_watch (&signals);
  while (!timed_out && signals.received == 0 && !receiver.write_failed &&
         (receiver.count == 0 || receiver.received < receiver.count))
    g_main_context_iteration (NULL, TRUE);
  tlspyo_cli_signals_unwatch (&signals);
  if (!timed_out)
    g_clear_handle_id (&timeout_id, g_source_remove);

  if (receiver.write_failed)
    tlspyo_cli_printerr ("could not write to standard output: check where it goes");
  else if (receiver.count > 0 && receiver.received < receiver.count)
    tlspyo_cli_printerr ("received %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " objects before "
                         "%s: send more, or wait longer with --timeout", receiver.received,
                         receiver.count, timed_out ? "the timeout" : "the signal");
  else
    status = TLSPYO_CLI_EXIT_OK;

stop:
  g_object_set (endpoint, "stop-timeout", 1.0, NULL);
  tlspyo_endpoint_stop (endpoint);
out:
  tlspyo_cli_endpoint_options_clear (&options);
  return status;
}
