/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "tlspyo-cli.h"
#include "tlspyo-cli-bench.h"

/* Adding a subcommand: write its function in a tlspyo-cli-*.c file,
 * declare it in tlspyo-cli.h, and add one line to one of these tables. */

static const TlspyoCliCommand credentials_commands[] = {
  { "generate", "Make the relay's private key and self-signed certificate",
    tlspyo_cli_credentials_generate, NULL },
  { "show", "Print the credentials folder and the certificate's fingerprint",
    tlspyo_cli_credentials_show, NULL },
  { "serve", "Hand out certificate.pem over TCP to endpoints that fetch it",
    tlspyo_cli_credentials_serve, NULL },
  { "fetch", "Get the relay's certificate.pem, checking its fingerprint",
    tlspyo_cli_credentials_fetch, NULL },
  { "hash-password", "Print a user's password hash, for the relay config's users",
    tlspyo_cli_credentials_hash_password, NULL },
  { NULL }
};

static const TlspyoCliCommand commands[] = {
  { "credentials", "Make, show, serve and fetch the relay's TLS credentials",
    NULL, credentials_commands },
  { "relay", "Run a relay in the foreground until SIGINT or SIGTERM",
    tlspyo_cli_relay, NULL },
  { "send", "Send objects (JSON) to a group: broadcast or produce",
    tlspyo_cli_send, NULL },
  { "receive", "Print the objects a group receives, one JSON line each",
    tlspyo_cli_receive, NULL },
  { "bench", "Measure throughput, latency and memory, checking nothing is lost",
    tlspyo_cli_bench, NULL },
  { NULL }
};

static void
print_commands (GString                *out,
                const char             *prefix,
                const TlspyoCliCommand *table)
{
  for (const TlspyoCliCommand *c = table; c->name != NULL; c++)
    {
      g_autofree char *name = g_strdup_printf ("%s%s", prefix, c->name);

      if (c->subcommands != NULL)
        {
          g_autofree char *sub_prefix = g_strdup_printf ("%s ", name);
          print_commands (out, sub_prefix, c->subcommands);
        }
      else
        {
          g_string_append_printf (out, "  %-24s %s\n", name, c->summary);
        }
    }
}

static char *
usage_text (const char             *command,
            const TlspyoCliCommand *table,
            const char             *summary)
{
  GString *out = g_string_new (NULL);

  g_string_append_printf (out, "Usage:\n  %s COMMAND [OPTION…]\n\n%s\n\nCommands:\n",
                          command, summary);
  print_commands (out, "", table);
  g_string_append_printf (out, "\nRun `%s COMMAND --help` for the options of a command.\n",
                          command);
  return g_string_free (out, FALSE);
}

/* Runs argv[1] from @table; @command is the name so far, "tlspyo" or
 * "tlspyo credentials". */
static int
dispatch (const char             *command,
          const char             *summary,
          const TlspyoCliCommand *table,
          int                     argc,
          char                  **argv)
{
  g_autofree char *usage = usage_text (command, table, summary);
  const char *name = argc > 1 ? argv[1] : NULL;

  if (name == NULL)
    {
      g_printerr ("%s", usage);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0 || strcmp (name, "help") == 0)
    {
      /* `tlspyo help credentials fetch` is `tlspyo credentials fetch --help`. */
      if (strcmp (name, "help") == 0 && argc > 2)
        {
          g_autofree char **help_argv = g_new0 (char *, argc + 1);

          help_argv[0] = argv[0];
          for (int i = 2; i < argc; i++)
            help_argv[i - 1] = argv[i];
          help_argv[argc - 1] = (char *) "--help";
          return dispatch (command, summary, table, argc, help_argv);
        }
      g_print ("%s", usage);
      return TLSPYO_CLI_EXIT_OK;
    }
  if (table == commands && strcmp (name, "--version") == 0)
    {
      g_print ("tlspyo %s (tlspyo-glib)\n", PACKAGE_VERSION);
      return TLSPYO_CLI_EXIT_OK;
    }

  for (const TlspyoCliCommand *c = table; c->name != NULL; c++)
    {
      g_autofree char *full_name = NULL;
      g_autofree char **sub_argv = NULL;

      if (strcmp (c->name, name) != 0)
        continue;

      full_name = g_strdup_printf ("%s %s", command, c->name);
      sub_argv = g_new0 (char *, argc);
      sub_argv[0] = full_name;
      for (int i = 2; i < argc; i++)
        sub_argv[i - 1] = argv[i];

      if (c->subcommands != NULL)
        return dispatch (full_name, c->summary, c->subcommands, argc - 1, sub_argv);
      return c->run (argc - 1, sub_argv);
    }

  if (name[0] == '-')
    tlspyo_cli_printerr ("unknown option %s: options come after the command; run `%s --help` "
                         "to see the commands", name, command);
  else
    tlspyo_cli_printerr ("unknown command “%s”: run `%s --help` to see the commands",
                         name, command);
  return TLSPYO_CLI_EXIT_USAGE;
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_set_prgname ("tlspyo");

  tlspyo_cli_log_init ();

  return dispatch ("tlspyo", "Move GVariant objects between processes through a relay, "
                   "securely.", commands, argc, argv);
}
