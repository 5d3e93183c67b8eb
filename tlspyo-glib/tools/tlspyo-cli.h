/* SPDX-License-Identifier: MIT */
#pragma once

/* The `tlspyo` command. Each subcommand is one function in its own
 * tlspyo-cli-*.c file (declared below or in a header of its own), one
 * entry in a table in tlspyo.c and one line in meson.build; what they
 * share (option groups, the password, errors, signals) is in
 * tlspyo-cli-common.c. */

#include <tlspyo-glib/tlspyo-glib.h>

G_BEGIN_DECLS

typedef enum {
  TLSPYO_CLI_EXIT_OK      = 0,  /* done */
  TLSPYO_CLI_EXIT_FAILURE = 1,  /* something failed or was refused at run time */
  TLSPYO_CLI_EXIT_USAGE   = 2,  /* the command line itself is wrong */
} TlspyoCliExit;

/* A subcommand. @argv[0] is its full name, such as "tlspyo credentials
 * fetch"; it returns a TlspyoCliExit. */
typedef int (*TlspyoCliRunFunc) (int argc, char **argv);

typedef struct _TlspyoCliCommand TlspyoCliCommand;

struct _TlspyoCliCommand {
  const char             *name;
  const char             *summary;
  TlspyoCliRunFunc        run;          /* NULL for a group of subcommands */
  const TlspyoCliCommand *subcommands;  /* ends with an entry whose name is NULL */
};

int tlspyo_cli_credentials_generate (int argc, char **argv);
int tlspyo_cli_credentials_show     (int argc, char **argv);
int tlspyo_cli_credentials_serve    (int argc, char **argv);
int tlspyo_cli_credentials_fetch    (int argc, char **argv);
int tlspyo_cli_credentials_hash_password (int argc, char **argv);
int tlspyo_cli_relay                (int argc, char **argv);
int tlspyo_cli_send                 (int argc, char **argv);
int tlspyo_cli_receive              (int argc, char **argv);

/* Errors. A GError in the G_OPTION_ERROR domain is a usage error (exit 2),
 * any other a run-time failure (exit 1). Messages say what is wrong, then
 * what to do. */
void      tlspyo_cli_printerr       (const char    *format,
                                     ...) G_GNUC_PRINTF (1, 2);
int       tlspyo_cli_report         (const GError  *error);
gboolean  tlspyo_cli_usage_error    (GError       **error,
                                     const char    *format,
                                     ...) G_GNUC_PRINTF (2, 3);

/* Option parsing with a --help of its own. Returns -1 when the command
 * should go on, else the exit code; @positional gets the arguments that
 * are not options. tlspyo_cli_parse_options_only() is for a command that
 * takes options only: any other argument is a usage error. */
GOptionContext *tlspyo_cli_context_new  (const char         *parameter_string,
                                         const char         *summary,
                                         const char         *description,
                                         const GOptionEntry *entries);
int             tlspyo_cli_parse        (GOptionContext     *context,
                                         int                 argc,
                                         char              **argv,
                                         GStrv              *positional);
int             tlspyo_cli_parse_options_only (GOptionContext  *context,
                                               int              argc,
                                               char           **argv);

gboolean  tlspyo_cli_check_port     (int             port,
                                     gboolean        allow_zero,
                                     GError        **error);
gboolean  tlspyo_cli_parse_security (const char     *value,
                                     TlspyoSecurity *security,
                                     GError        **error);
gboolean  tlspyo_cli_timeout_ms     (double          seconds,
                                     const char     *option,
                                     int            *timeout_ms,
                                     GError        **error);

/* The password: from --password-file (one trailing newline removed), else
 * from $TLSPYO_PASSWORD; never from the command line, which any user can
 * read in the process list. */
typedef char TlspyoCliPassword;

TlspyoCliPassword *tlspyo_cli_read_password (const char         *password_file,
                                             GError            **error);
void               tlspyo_cli_password_free (TlspyoCliPassword  *password);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoCliPassword, tlspyo_cli_password_free)

/* Options every endpoint-side command takes (send, receive, and later
 * bench). */
typedef struct {
  char   *host;
  int     port;
  char   *security;
  char   *directory;
  char   *password_file;
  char   *server_identity;
  char   *user;
  char   *certificate;   /* mutual TLS: PEM with the certificate (and key) */
  char   *private_key;   /* the key, when not in the certificate's file */
  double  timeout;
  gboolean verbose;
} TlspyoCliEndpointOptions;

void            tlspyo_cli_endpoint_options_add   (GOptionContext            *context,
                                                   TlspyoCliEndpointOptions  *options);
void            tlspyo_cli_endpoint_options_clear (TlspyoCliEndpointOptions  *options);
TlspyoEndpoint *tlspyo_cli_endpoint_new           (TlspyoCliEndpointOptions  *options,
                                                   const char * const        *groups,
                                                   GError                   **error);
gboolean        tlspyo_cli_endpoint_connect       (TlspyoEndpoint            *endpoint,
                                                   TlspyoCliEndpointOptions  *options,
                                                   int                        timeout_ms,
                                                   GError                   **error);

/* Logging: everything to standard error or the journal. Client commands
 * hide the library's own warnings unless --verbose. */
void      tlspyo_cli_log_init        (void);
void      tlspyo_cli_set_verbose     (gboolean          verbose,
                                      gboolean          quiet_library);

/* SIGINT and SIGTERM, turned into a flag the main loop checks. */
typedef struct {
  guint sources[2];
  int   received;  /* the signal number, 0 while none arrived */
} TlspyoCliSignals;

void      tlspyo_cli_signals_watch   (TlspyoCliSignals *signals);
void      tlspyo_cli_signals_unwatch (TlspyoCliSignals *signals);

gboolean  tlspyo_cli_write_port_file (const char     *path,
                                      guint           port,
                                      GError        **error);

/* Reads one line from stdin after printing @question; NULL with @error at
 * the end of input. */
char     *tlspyo_cli_prompt          (const char     *question,
                                      GError        **error);

G_END_DECLS
