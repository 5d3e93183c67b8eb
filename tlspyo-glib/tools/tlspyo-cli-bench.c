/* SPDX-License-Identifier: MIT */

/* `tlspyo bench`: measures a relay and its endpoints the way applications use
 * them, and checks that nothing was lost or reordered on the way.
 *
 * The command is both the conductor and the players. The conductor (the
 * process the user started) makes credentials, starts a relay, and for each
 * case re-executes itself (/proc/self/exe) with a hidden --role option once
 * per endpoint process, so every figure includes real cross-process hops.
 * Conductor and players talk in lines over the players' stdin and stdout:
 *
 *   conductor → player: the password (first line, never argv), then GO,
 *                       STAT, QUIT; end of input also means QUIT
 *   player → conductor: READY k=v…, RESULT k=v…, STAT k=v…, FAIL message
 *
 * Times are g_get_monotonic_time() values: CLOCK_MONOTONIC is one clock for
 * every process of a Linux machine, so a producer's first send and a
 * consumer's last receipt can be subtracted across processes. Every wait, on
 * both sides, is bounded: a stuck case fails, it never hangs. */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <tlspyo-glib/tlspyo-glib.h>

#include "tlspyo-cli.h"
#include "tlspyo-cli-bench.h"

#define MIB (1024 * 1024)

/* Marks a byte of each payload, so that a buffer mixed up with another one
 * shows even when its sequence number survived. */
#define PAYLOAD_MARK 0x5a

/* A consumer's acknowledgement of a large object: a payload, so that the
 * producer checks their order too. */
#define ACK_SIZE 16

static const char * const all_cases[] = {
  "produce", "broadcast", "latency", "large", "connect", "fanin", NULL
};

typedef struct {
  /* what the user asks */
  gboolean  json;
  gboolean  quick;
  char     *security;
  char     *cases;
  char     *host;
  int       port;
  char     *password_file;
  char     *credentials_dir;
  char     *server_identity;
  gboolean  relay_in_process;
  gboolean  endpoints_in_process;
  gboolean  durable;
  gboolean  verbose;
  int       count;
  int       size;
  int       consumers;
  int       window;
  int       rounds;
  int       connects;
  int       fanin;
  int       fanin_processes;
  int       large_mib;
  int       large_window;
  int       timeout;

  /* what a player is told (hidden) */
  char     *role;
  char     *group;
  char     *reply_group;
  char     *mode;
  int       inflight;
  int       timeout_ms;
  gint64    max_object_size;
  char     *state_directory;
} BenchOptions;

static void
bench_options_clear (BenchOptions *o)
{
  g_free (o->security);
  g_free (o->cases);
  g_free (o->host);
  g_free (o->password_file);
  g_free (o->credentials_dir);
  g_free (o->server_identity);
  g_free (o->role);
  g_free (o->group);
  g_free (o->reply_group);
  g_free (o->mode);
  g_free (o->state_directory);
}

static void
bench_options_init (BenchOptions *o)
{
  memset (o, 0, sizeof *o);
  o->port = -1;
  o->count = -1;
  o->size = -1;
  o->consumers = -1;
  o->window = -1;
  o->rounds = -1;
  o->connects = -1;
  o->fanin = -1;
  o->fanin_processes = -1;
  o->large_mib = -1;
  o->large_window = -1;
  o->timeout = -1;
  o->inflight = 0;
  o->timeout_ms = 30000;
}

static GOptionContext *
bench_option_context_new (BenchOptions *o)
{
  const GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &o->json,
      "Print one JSON object instead of a table", NULL },
    { "quick", 0, 0, G_OPTION_ARG_NONE, &o->quick,
      "Tiny counts: checks that every case works, in seconds (for CI)", NULL },
    { "cases", 0, 0, G_OPTION_ARG_STRING, &o->cases,
      "Cases to run, comma-separated (default: produce,broadcast,latency,large,connect,fanin)",
      "LIST" },
    { "security", 0, 0, G_OPTION_ARG_STRING, &o->security,
      "tls (the default) or none (plain TCP)", "tls|none" },
    { "host", 'H', 0, G_OPTION_ARG_STRING, &o->host,
      "Measure the existing relay on HOST instead of starting one", "HOST" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &o->port,
      "The existing relay's port (default: 2096)", "PORT" },
    { "password-file", 0, 0, G_OPTION_ARG_FILENAME, &o->password_file,
      "Read the existing relay's password from FILE (else from $TLSPYO_PASSWORD)", "FILE" },
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &o->credentials_dir,
      "The folder holding the existing relay's certificate.pem (default: the one `tlspyo "
      "credentials show` prints)", "DIR" },
    { "server-identity", 0, 0, G_OPTION_ARG_STRING, &o->server_identity,
      "The common name the existing relay's certificate carries (default: default)", "NAME" },
    { "relay-in-process", 0, 0, G_OPTION_ARG_NONE, &o->relay_in_process,
      "Run the local relay inside this process instead of a child process", NULL },
    { "endpoints-in-process", 0, 0, G_OPTION_ARG_NONE, &o->endpoints_in_process,
      "Run endpoints as threads of this process instead of child processes", NULL },
    { "durable", 0, 0, G_OPTION_ARG_NONE, &o->durable,
      "Give the relay started for the run a state directory (a new temporary folder per case, "
      "removed afterwards): a durable relay commits every produced object to its SQLite store "
      "before acknowledging it", NULL },
    { "count", 0, 0, G_OPTION_ARG_INT, &o->count,
      "Objects per run of produce and broadcast (default 500000; quick 2000)", "N" },
    { "size", 0, 0, G_OPTION_ARG_INT, &o->size,
      "Bytes per object in produce, broadcast, latency and connect (default 100, at least 8)",
      "BYTES" },
    { "consumers", 0, 0, G_OPTION_ARG_INT, &o->consumers,
      "Consumers in broadcast (default 4; quick 2)", "K" },
    { "window", 0, 0, G_OPTION_ARG_INT, &o->window,
      "Consumer credit in produce: 0 gives unlimited credit at start (the default); W > 0 "
      "gives W at start and W/2 each time W/2 arrived", "W" },
    { "rounds", 0, 0, G_OPTION_ARG_INT, &o->rounds,
      "Round trips in latency (default 10000; quick 50)", "N" },
    { "connects", 0, 0, G_OPTION_ARG_INT, &o->connects,
      "Endpoints started one after the other in connect (default 20; quick 3)", "N" },
    { "fanin", 0, 0, G_OPTION_ARG_INT, &o->fanin,
      "Idle endpoints connected at once in fanin (default 1000; quick 40)", "N" },
    { "fanin-processes", 0, 0, G_OPTION_ARG_INT, &o->fanin_processes,
      "Processes the fanin endpoints are spread over (default 4; quick 2)", "P" },
    { "large-mib", 0, 0, G_OPTION_ARG_INT, &o->large_mib,
      "MiB moved per object size in large (default 256; quick 8: one 64 MiB object at least)",
      "MIB" },
    { "large-window", 0, 0, G_OPTION_ARG_INT, &o->large_window,
      "Large objects in flight between producer and consumer (default 2)", "D" },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &o->timeout,
      "Seconds a case may take before it is reported FAILED (default 60)", "SECONDS" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &o->verbose,
      "Show the library's messages (an in-process relay logs every connection)", NULL },

    { "role", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o->role, NULL, NULL },
    { "credentials-dir", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &o->credentials_dir,
      NULL, NULL },
    { "group", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o->group, NULL, NULL },
    { "reply-group", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o->reply_group, NULL, NULL },
    { "mode", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o->mode, NULL, NULL },
    { "inflight", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &o->inflight, NULL, NULL },
    { "timeout-ms", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &o->timeout_ms, NULL, NULL },
    { "max-object-size", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT64, &o->max_object_size,
      NULL, NULL },
    { "state-directory", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &o->state_directory,
      NULL, NULL },
    G_OPTION_ENTRY_NULL
  };

  return tlspyo_cli_context_new (NULL,
    "Runs the cases produce, broadcast, latency, large, connect and fanin against a relay\n"
    "started for the run (in a child process) or an existing one (--host), with endpoints\n"
    "in child processes, and prints a table, or one JSON object with --json. Every case\n"
    "checks counts and order: a case that lost or reordered anything is FAILED, and the\n"
    "exit code is then 1.", NULL, entries);
}

/* Small helpers */

typedef struct {
  gint64 rss_kib;
  gint64 hwm_kib;
  gint64 anon_kib;  /* the part of rss_kib that is not shared library code or files */
} MemStatus;

/* Reads VmRSS, VmHWM and RssAnon of @pid (0: this process) from /proc; -1
 * when unknown. */
static MemStatus
mem_status (GPid pid)
{
  MemStatus m = { -1, -1, -1 };
  g_autofree char *path = pid > 0 ? g_strdup_printf ("/proc/%d/status", (int) pid)
                                  : g_strdup ("/proc/self/status");
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return m;
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (g_str_has_prefix (lines[i], "VmRSS:"))
        m.rss_kib = g_ascii_strtoll (lines[i] + 6, NULL, 10);
      else if (g_str_has_prefix (lines[i], "VmHWM:"))
        m.hwm_kib = g_ascii_strtoll (lines[i] + 6, NULL, 10);
      else if (g_str_has_prefix (lines[i], "RssAnon:"))
        m.anon_kib = g_ascii_strtoll (lines[i] + 8, NULL, 10);
    }
  return m;
}

/* 1000 endpoints need more descriptors than the usual soft limit of 1024. */
static void
raise_nofile_limit (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      (void) setrlimit (RLIMIT_NOFILE, &rl);
    }
}

static guint
nofile_limit (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) != 0)
    return 1024;
  return rl.rlim_cur > G_MAXUINT ? G_MAXUINT : (guint) rl.rlim_cur;
}

/* An object of @size bytes (`ay`) whose first 8 bytes carry @seq, little
 * endian, and whose last byte depends on it. Every byte is written, so that
 * the pages count in the sender's resident memory. */
static GVariant *
payload_new (guint64 seq,
             gsize   size)
{
  guint8 *buf = g_malloc (size);
  guint64 le = GUINT64_TO_LE (seq);

  g_assert (size >= sizeof le);
  memset (buf, PAYLOAD_MARK, size);
  memcpy (buf, &le, sizeof le);
  buf[size - 1] = (guint8) (seq ^ PAYLOAD_MARK);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, buf, size, TRUE, g_free, buf);
}

/* Checks @object is payload number @expected of @size bytes (@size 0: any). */
static gboolean
payload_check (GVariant  *object,
               guint64    expected,
               gsize      size,
               GError   **error)
{
  const guint8 *data;
  gsize n = 0;
  guint64 seq;

  if (!g_variant_is_of_type (object, G_VARIANT_TYPE_BYTESTRING))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "object %" G_GUINT64_FORMAT " has type %s, not ay", expected,
                   g_variant_get_type_string (object));
      return FALSE;
    }
  data = g_variant_get_fixed_array (object, &n, 1);
  if (n < sizeof seq || (size != 0 && n != size))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "object %" G_GUINT64_FORMAT " has %" G_GSIZE_FORMAT " bytes, not %"
                   G_GSIZE_FORMAT, expected, n, size);
      return FALSE;
    }
  memcpy (&seq, data, sizeof seq);
  seq = GUINT64_FROM_LE (seq);
  if (seq != expected)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "expected object %" G_GUINT64_FORMAT " but got object %" G_GUINT64_FORMAT
                   ": objects were %s", expected, seq, seq > expected ? "lost" : "reordered or duplicated");
      return FALSE;
    }
  if (data[n - 1] != (guint8) (seq ^ PAYLOAD_MARK))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "object %" G_GUINT64_FORMAT " arrived corrupted", seq);
      return FALSE;
    }
  return TRUE;
}

static int
compare_gint64 (gconstpointer a,
                gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

/* The value below which a fraction @q of the sorted @samples lie (nearest rank). */
static gint64
percentile (GArray *sorted,
            double  q)
{
  guint rank;

  if (sorted->len == 0)
    return -1;
  rank = (guint) (q * sorted->len);
  if (rank < q * sorted->len)
    rank++;
  rank = CLAMP (rank, 1, sorted->len);
  return g_array_index (sorted, gint64, rank - 1);
}

/* "1234567" → "1 234 567": figures are easier to read and compare grouped. */
static char *
group_digits (double value)
{
  g_autofree char *plain = g_strdup_printf ("%.0f", value);
  GString *out = g_string_new (NULL);
  gsize len = strlen (plain);

  for (gsize i = 0; i < len; i++)
    {
      if (i > 0 && plain[i - 1] != '-' && (len - i) % 3 == 0)
        g_string_append_c (out, ' ');
      g_string_append_c (out, plain[i]);
    }
  return g_string_free (out, FALSE);
}

static char *
format_size (gint64 bytes)
{
  if (bytes >= MIB && bytes % MIB == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT " MiB", bytes / MIB);
  if (bytes >= 1024 && bytes % 1024 == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT " KiB", bytes / 1024);
  return g_strdup_printf ("%" G_GINT64_FORMAT " B", bytes);
}

static char *
format_kib (gint64 kib)
{
  if (kib < 0)
    return g_strdup ("?");
  if (kib >= 10 * 1024)
    return g_strdup_printf ("%.0f MiB", kib / 1024.0);
  return g_strdup_printf ("%.1f MiB", kib / 1024.0);
}

static char *
format_us (gint64 us)
{
  if (us < 0)
    return g_strdup ("?");
  if (us >= 10000)
    return g_strdup_printf ("%.1f ms", us / 1000.0);
  return g_strdup_printf ("%" G_GINT64_FORMAT " us", us);
}

/* "READY port=123 rss_kib=4000" → tag "READY" and a table of the pairs. */
static GHashTable *
parse_pairs (const char  *line,
             char       **tag)
{
  GHashTable *pairs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) words = g_strsplit (line, " ", -1);

  *tag = g_strdup (words[0] != NULL ? words[0] : "");
  for (guint i = 1; words[0] != NULL && words[i] != NULL; i++)
    {
      const char *eq = strchr (words[i], '=');

      if (eq != NULL)
        g_hash_table_replace (pairs, g_strndup (words[i], eq - words[i]), g_strdup (eq + 1));
    }
  return pairs;
}

static gint64
pair_int (GHashTable *pairs,
          const char *key)
{
  const char *value = g_hash_table_lookup (pairs, key);

  return value != NULL ? g_ascii_strtoll (value, NULL, 10) : -1;
}

/* Set by SIGINT/SIGTERM in the conductor: every wait gives up, every case
 * fails, every child is killed, and the command exits. */
static volatile gint bench_interrupted;

static gboolean
interrupt_cb (gpointer data)
{
  g_atomic_int_set (&bench_interrupted, 1);
  return G_SOURCE_CONTINUE;
}

static gboolean
wake_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates the thread-default context once, waking up by @deadline at the
 * latest (-1: no bound). */
static void
iterate_until (gint64 deadline)
{
  GMainContext *context = g_main_context_get_thread_default ();
  GSource *timer = NULL;
  gboolean fired = FALSE;

  if (deadline >= 0)
    {
      gint64 now = g_get_monotonic_time ();

      timer = g_timeout_source_new (deadline > now ? (guint) MIN ((deadline - now + 999) / 1000, G_MAXUINT) : 0);
      g_source_set_callback (timer, wake_cb, &fired, NULL);
      g_source_attach (timer, context);
    }
  g_main_context_iteration (context, TRUE);
  if (timer != NULL)
    {
      g_source_destroy (timer);
      g_source_unref (timer);
    }
}

/* Lets the thread-default context run for @ms. */
static void
sleep_ms (int ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ms * 1000;

  while (g_get_monotonic_time () < deadline)
    iterate_until (deadline);
}

/* Reads lines from a stream in the background, on the thread-default
 * context of its creator; waiting for one iterates that context. */
typedef struct {
  GDataInputStream *data;
  GCancellable     *cancellable;
  GQueue            lines;
  guint             keep;     /* 0: keep every line; n: only the last n */
  gboolean          pending;
  gboolean          eof;
  char             *error;
} LineReader;

static void line_reader_read (LineReader *reader);

static void
line_read_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  LineReader *reader = user_data;
  g_autoptr(GError) error = NULL;
  char *line = g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source), result,
                                                     NULL, &error);

  reader->pending = FALSE;
  if (line == NULL)
    {
      if (error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        reader->error = g_strdup (error->message);
      reader->eof = TRUE;
      return;
    }
  g_queue_push_tail (&reader->lines, line);
  if (reader->keep > 0 && reader->lines.length > reader->keep)
    g_free (g_queue_pop_head (&reader->lines));
  line_reader_read (reader);
}

static void
line_reader_read (LineReader *reader)
{
  reader->pending = TRUE;
  g_data_input_stream_read_line_async (reader->data, G_PRIORITY_DEFAULT, reader->cancellable,
                                       line_read_cb, reader);
}

static LineReader *
line_reader_new (GInputStream *stream,
                 guint         keep)
{
  LineReader *reader = g_new0 (LineReader, 1);

  reader->data = g_data_input_stream_new (stream);
  reader->cancellable = g_cancellable_new ();
  reader->keep = keep;
  g_queue_init (&reader->lines);
  line_reader_read (reader);
  return reader;
}

/* Must be called on the thread that created @reader: it iterates that
 * thread's context until the read in flight is cancelled. */
static void
line_reader_free (LineReader *reader)
{
  if (reader == NULL)
    return;
  g_cancellable_cancel (reader->cancellable);
  while (reader->pending)
    g_main_context_iteration (g_main_context_get_thread_default (), TRUE);
  g_queue_clear_full (&reader->lines, g_free);
  g_clear_object (&reader->data);
  g_clear_object (&reader->cancellable);
  g_free (reader->error);
  g_free (reader);
}

/* The next line, or NULL with @error at the end of the stream, at
 * @deadline (-1: none) or on interruption. */
static char *
line_reader_next (LineReader  *reader,
                  gint64       deadline,
                  GError     **error)
{
  while (g_queue_is_empty (&reader->lines))
    {
      if (reader->eof)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED, "%s",
                       reader->error != NULL ? reader->error : "end of stream");
          return NULL;
        }
      if (g_atomic_int_get (&bench_interrupted))
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "interrupted");
          return NULL;
        }
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "timed out");
          return NULL;
        }
      iterate_until (deadline);
    }
  return g_queue_pop_head (&reader->lines);
}

static char *
line_reader_tail (LineReader *reader)
{
  GString *out = g_string_new (NULL);

  if (reader == NULL)
    return g_string_free (out, FALSE);
  /* Reports, JSON ones included, must stay valid UTF-8 whatever a player
   * printed. */
  for (GList *l = reader->lines.head; l != NULL; l = l->next)
    {
      g_autofree char *valid = g_utf8_make_valid (l->data, -1);

      g_string_append_printf (out, "\n    %s", valid);
    }
  return g_string_free (out, FALSE);
}

/* The players. Each runs one role with one or more endpoints (or the
 * relay), in a child process or, with --endpoints-in-process, a thread. */

typedef struct {
  BenchOptions   *o;
  LineReader     *in;
  GOutputStream  *out;
  char           *password;
  TlspyoSecurity  security;
  gint64          deadline;
} Role;

static void role_say (Role *r, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
role_say (Role       *r,
          const char *format,
          ...)
{
  g_autofree char *text = NULL;
  g_autofree char *line = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  line = g_strconcat (text, "\n", NULL);
  /* A conductor that went away is noticed as the end of input. */
  (void) g_output_stream_write_all (r->out, line, strlen (line), NULL, NULL, NULL);
}

static int
role_fail (Role         *r,
           const char   *what,
           const GError *error)
{
  g_autofree char *message = g_strdup_printf ("%s%s%s", what, error ? ": " : "",
                                              error ? error->message : "");

  g_strdelimit (message, "\r\n", ' ');
  role_say (r, "FAIL %s", message);
  return 1;
}

static int
role_remaining_ms (Role *r)
{
  gint64 left = (r->deadline - g_get_monotonic_time ()) / 1000;

  return (int) CLAMP (left, 0, G_MAXINT);
}

/* Waits for @command; QUIT or the end of input ends the role early. */
static gboolean
role_expect (Role        *r,
             const char  *command,
             GError     **error)
{
  g_autofree char *line = line_reader_next (r->in, r->deadline, error);

  if (line == NULL)
    return FALSE;
  if (!g_str_equal (line, command))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                   "the conductor said '%s' instead of %s", line, command);
      return FALSE;
    }
  return TRUE;
}

/* Waits for QUIT or the end of input: the conductor has read what it needs. */
static void
role_wait_quit (Role *r)
{
  g_autoptr(GError) error = NULL;
  char *line;

  while ((line = line_reader_next (r->in, r->deadline, &error)) != NULL)
    {
      gboolean quit = g_str_equal (line, "QUIT");

      g_free (line);
      if (quit)
        break;
    }
}

static TlspyoEndpoint *
role_endpoint_new (Role       *r,
                   const char *group)
{
  const char *groups[] = { group, NULL };
  TlspyoEndpoint *ep = tlspyo_endpoint_new (r->o->host, (guint) r->o->port, r->password, groups);

  g_object_set (ep, "security", r->security, "stop-timeout", 5.0, NULL);
  if (r->o->credentials_dir != NULL)
    g_object_set (ep, "credentials-dir", r->o->credentials_dir, NULL);
  if (r->o->server_identity != NULL)
    g_object_set (ep, "server-identity", r->o->server_identity, NULL);
  if (r->o->max_object_size > 0)
    g_object_set (ep, "max-object-size", (guint64) r->o->max_object_size, NULL);
  return ep;
}

static TlspyoEndpoint *
role_endpoint_connect (Role        *r,
                       const char  *group,
                       GError     **error)
{
  g_autoptr(TlspyoEndpoint) ep = role_endpoint_new (r, group);

  if (!tlspyo_endpoint_start (ep, error) ||
      !tlspyo_endpoint_wait_connected (ep, role_remaining_ms (r), error))
    {
      tlspyo_endpoint_stop (ep);
      return NULL;
    }
  return g_steal_pointer (&ep);
}

static void
endpoint_finish (TlspyoEndpoint *ep)
{
  if (ep == NULL)
    return;
  tlspyo_endpoint_stop (ep);
  g_object_unref (ep);
}

/* An endpoint that is stopped, not only unreferenced, when it goes out of scope. */
typedef TlspyoEndpoint TlspyoEndpointFinished;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoEndpointFinished, endpoint_finish)

/* relay: a relay on 127.0.0.1; answers STAT with its memory and connection
 * count until QUIT. */
static int
role_relay (Role *r)
{
  g_autoptr(TlspyoRelay) relay = NULL;
  g_autoptr(GError) error = NULL;
  MemStatus m;
  char *line;

  relay = g_object_new (TLSPYO_TYPE_RELAY,
                        "port", (guint) MAX (r->o->port, 0),
                        "address", "127.0.0.1",
                        "password", r->password,
                        "security", r->security,
                        "credentials-dir", r->o->credentials_dir,
                        "state-directory", r->o->state_directory,
                        /* fanin connects every endpoint from 127.0.0.1 at once:
                         * the relay's per-address and total limits would
                         * refuse what the bench means to measure. */
                        "max-connections", 0,
                        "max-connections-per-address", 0,
                        NULL);
  if (r->o->max_object_size > 0)
    g_object_set (relay, "max-object-size", (guint64) r->o->max_object_size, NULL);
  if (!tlspyo_relay_start (relay, &error))
    return role_fail (r, "cannot start the relay", error);

  m = mem_status (0);
  role_say (r, "READY port=%u rss_kib=%" G_GINT64_FORMAT " hwm_kib=%" G_GINT64_FORMAT
            " anon_kib=%" G_GINT64_FORMAT, tlspyo_relay_get_port (relay), m.rss_kib, m.hwm_kib,
            m.anon_kib);

  /* The relay lives as long as the conductor needs it: no deadline. */
  while ((line = line_reader_next (r->in, -1, NULL)) != NULL)
    {
      gboolean quit = g_str_equal (line, "QUIT");

      if (g_str_equal (line, "STAT"))
        {
          m = mem_status (0);
          role_say (r, "STAT rss_kib=%" G_GINT64_FORMAT " hwm_kib=%" G_GINT64_FORMAT
                    " anon_kib=%" G_GINT64_FORMAT " connections=%u", m.rss_kib, m.hwm_kib,
                    m.anon_kib, tlspyo_relay_get_n_connections (relay));
        }
      g_free (line);
      if (quit)
        break;
    }
  tlspyo_relay_stop (relay);
  return 0;
}

/* producer: on GO, sends --count objects of --size bytes to --group
 * (--mode produce or broadcast), then waits until the relay acknowledged
 * them. With --inflight D it sends object i only once the consumer
 * acknowledged object i - D (through --reply-group, which it joins). */
static int
role_producer (Role *r)
{
  g_autoptr(TlspyoEndpointFinished) ep = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *own_group = r->o->reply_group ? g_strdup (r->o->reply_group)
                                                 : g_strconcat (r->o->group, ".src", NULL);
  gboolean broadcast = g_strcmp0 (r->o->mode, "broadcast") == 0;
  guint64 count = (guint64) r->o->count, acked = 0;
  gint64 t_first, t_sent, t_flushed;
  MemStatus m;

  ep = role_endpoint_connect (r, own_group, &error);
  if (ep == NULL)
    return role_fail (r, "the producer cannot connect", error);
  m = mem_status (0);
  role_say (r, "READY rss_kib=%" G_GINT64_FORMAT, m.rss_kib);
  if (!role_expect (r, "GO", &error))
    return role_fail (r, "the producer got no GO", error);

  t_first = g_get_monotonic_time ();
  for (guint64 i = 0; i < count; i++)
    {
      GVariant *object;
      gboolean sent;

      while (r->o->inflight > 0 && i >= acked + (guint64) r->o->inflight)
        {
          g_autoptr(GPtrArray) acks = tlspyo_endpoint_pop (ep, 64, role_remaining_ms (r), &error);

          if (acks == NULL)
            return role_fail (r, "the producer cannot receive acknowledgements", error);
          if (acks->len == 0)
            return role_fail (r, "the consumer acknowledged nothing in time", NULL);
          for (guint j = 0; j < acks->len; j++)
            if (!payload_check (g_ptr_array_index (acks, j), acked++, 0, &error))
              return role_fail (r, "wrong acknowledgement", error);
        }

      object = payload_new (i, (gsize) r->o->size);
      sent = broadcast ? tlspyo_endpoint_broadcast (ep, object, r->o->group, &error)
                       : tlspyo_endpoint_produce (ep, object, r->o->group, &error);
      if (!sent)
        return role_fail (r, "the producer cannot send", error);
    }
  t_sent = g_get_monotonic_time ();
  if (!tlspyo_endpoint_flush (ep, role_remaining_ms (r), &error))
    return role_fail (r, "the relay did not acknowledge every object", error);
  t_flushed = g_get_monotonic_time ();

  m = mem_status (0);
  role_say (r, "RESULT sent=%" G_GUINT64_FORMAT " t_first=%" G_GINT64_FORMAT
            " t_sent=%" G_GINT64_FORMAT " t_flushed=%" G_GINT64_FORMAT
            " rss_kib=%" G_GINT64_FORMAT " hwm_kib=%" G_GINT64_FORMAT,
            count, t_first, t_sent, t_flushed, m.rss_kib, m.hwm_kib);
  role_wait_quit (r);
  return 0;
}

/* consumer: joins --group and receives --count objects of --size bytes,
 * checking each one's sequence number. In --mode produce it gives credit:
 * unlimited at start with --window 0, else W at start and W/2 each time W/2
 * arrived. With --reply-group it acknowledges each object there. */
static int
role_consumer (Role *r)
{
  g_autoptr(TlspyoEndpointFinished) ep = NULL;
  g_autoptr(GError) error = NULL;
  gboolean produce = g_strcmp0 (r->o->mode, "broadcast") != 0;
  int window = MAX (r->o->window, 0);
  int half = MAX (window / 2, 1);
  guint64 count = (guint64) r->o->count, received = 0;
  gint64 t_first = -1, t_last = -1;
  int since_credit = 0;
  MemStatus m;

  ep = role_endpoint_new (r, r->o->group);
  if (!tlspyo_endpoint_start (ep, &error))
    return role_fail (r, "the consumer cannot start", error);
  if (produce && !tlspyo_endpoint_notify_ready (ep, r->o->group, window > 0 ? window : G_MAXINT,
                                                &error))
    return role_fail (r, "the consumer cannot give credit", error);
  if (!tlspyo_endpoint_wait_connected (ep, role_remaining_ms (r), &error))
    return role_fail (r, "the consumer cannot connect", error);
  m = mem_status (0);
  role_say (r, "READY rss_kib=%" G_GINT64_FORMAT, m.rss_kib);

  while (received < count)
    {
      g_autoptr(GPtrArray) objects = tlspyo_endpoint_pop (ep, 4096, role_remaining_ms (r), &error);
      gint64 now = g_get_monotonic_time ();

      if (objects == NULL)
        return role_fail (r, "the consumer cannot receive", error);
      if (objects->len == 0)
        {
          g_autofree char *what = g_strdup_printf ("only %" G_GUINT64_FORMAT " of %"
                                                   G_GUINT64_FORMAT " objects arrived in time",
                                                   received, count);
          return role_fail (r, what, NULL);
        }
      if (t_first < 0)
        t_first = now;
      t_last = now;
      for (guint i = 0; i < objects->len; i++)
        {
          if (received >= count)
            return role_fail (r, "more objects arrived than were sent", NULL);
          if (!payload_check (g_ptr_array_index (objects, i), received, (gsize) r->o->size, &error))
            return role_fail (r, "the consumer", error);
          if (r->o->reply_group != NULL &&
              !tlspyo_endpoint_broadcast (ep, payload_new (received, ACK_SIZE), r->o->reply_group, &error))
            return role_fail (r, "the consumer cannot acknowledge", error);
          received++;
        }
      if (produce && window > 0)
        {
          since_credit += (int) objects->len;
          while (since_credit >= half)
            {
              if (!tlspyo_endpoint_notify_ready (ep, r->o->group, half, &error))
                return role_fail (r, "the consumer cannot give credit", error);
              since_credit -= half;
            }
        }
    }

  /* Anything already queued beyond the count is a duplicate. */
  {
    g_autoptr(GPtrArray) extra = tlspyo_endpoint_pop (ep, 1, 0, NULL);

    if (extra != NULL && extra->len > 0)
      return role_fail (r, "more objects arrived than were sent", NULL);
  }

  m = mem_status (0);
  role_say (r, "RESULT received=%" G_GUINT64_FORMAT " t_first=%" G_GINT64_FORMAT
            " t_last=%" G_GINT64_FORMAT " rss_kib=%" G_GINT64_FORMAT " hwm_kib=%" G_GINT64_FORMAT,
            received, t_first, t_last, m.rss_kib, m.hwm_kib);
  role_wait_quit (r);
  return 0;
}

/* ponger: joins --group and sends every object it gets back to
 * --reply-group, --rounds times. */
static int
role_ponger (Role *r)
{
  g_autoptr(TlspyoEndpointFinished) ep = NULL;
  g_autoptr(GError) error = NULL;
  int echoed = 0;

  ep = role_endpoint_connect (r, r->o->group, &error);
  if (ep == NULL)
    return role_fail (r, "the ponger cannot connect", error);
  role_say (r, "READY");

  while (echoed < r->o->rounds)
    {
      g_autoptr(GPtrArray) objects = tlspyo_endpoint_pop (ep, 64, role_remaining_ms (r), &error);

      if (objects == NULL)
        return role_fail (r, "the ponger cannot receive", error);
      if (objects->len == 0)
        return role_fail (r, "the ponger got nothing in time", NULL);
      for (guint i = 0; i < objects->len; i++, echoed++)
        if (!tlspyo_endpoint_broadcast (ep, g_ptr_array_index (objects, i), r->o->reply_group,
                                        &error))
          return role_fail (r, "the ponger cannot answer", error);
    }
  if (!tlspyo_endpoint_flush (ep, role_remaining_ms (r), &error))
    return role_fail (r, "the relay did not acknowledge the answers", error);
  role_say (r, "RESULT echoed=%d", echoed);
  role_wait_quit (r);
  return 0;
}

/* pinger: joins --reply-group; on GO sends an object to --group and waits
 * for it to come back, --rounds times after a warm-up. */
static int
role_pinger (Role *r)
{
  g_autoptr(TlspyoEndpointFinished) ep = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) samples = g_array_new (FALSE, FALSE, sizeof (gint64));
  int warmup = MIN (100, r->o->rounds / 10);
  double sum = 0;

  ep = role_endpoint_connect (r, r->o->reply_group, &error);
  if (ep == NULL)
    return role_fail (r, "the pinger cannot connect", error);
  role_say (r, "READY");
  if (!role_expect (r, "GO", &error))
    return role_fail (r, "the pinger got no GO", error);

  /* The ponger echoes --rounds objects: the warm-up is part of them. */
  for (int i = 0; i < r->o->rounds; i++)
    {
      g_autoptr(GPtrArray) back = NULL;
      gint64 t0 = g_get_monotonic_time (), t1;

      if (!tlspyo_endpoint_broadcast (ep, payload_new ((guint64) i, (gsize) r->o->size),
                                      r->o->group, &error))
        return role_fail (r, "the pinger cannot send", error);
      back = tlspyo_endpoint_pop (ep, 1, role_remaining_ms (r), &error);
      t1 = g_get_monotonic_time ();
      if (back == NULL)
        return role_fail (r, "the pinger cannot receive", error);
      if (back->len == 0)
        return role_fail (r, "no answer in time", NULL);
      if (!payload_check (g_ptr_array_index (back, 0), (guint64) i, (gsize) r->o->size, &error))
        return role_fail (r, "the pinger", error);
      if (i >= warmup)
        {
          gint64 rtt = t1 - t0;

          g_array_append_val (samples, rtt);
          sum += rtt;
        }
    }
  g_array_sort (samples, compare_gint64);
  role_say (r, "RESULT rounds=%d measured=%u min_us=%" G_GINT64_FORMAT " p50_us=%" G_GINT64_FORMAT
            " p90_us=%" G_GINT64_FORMAT " p99_us=%" G_GINT64_FORMAT " max_us=%" G_GINT64_FORMAT
            " mean_us=%.0f", r->o->rounds, samples->len, percentile (samples, 0.0),
            percentile (samples, 0.5), percentile (samples, 0.9), percentile (samples, 0.99),
            percentile (samples, 1.0), samples->len ? sum / samples->len : -1.0);
  role_wait_quit (r);
  return 0;
}

/* connect: on GO, --count times: a new endpoint in --group, the time from
 * start() to the group's latest broadcast received, stop. The first is cold:
 * it loads the TLS backend and starts the worker thread. */
static int
role_connect (Role *r)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) warm = g_array_new (FALSE, FALSE, sizeof (gint64));
  gint64 cold = -1;

  role_say (r, "READY");
  if (!role_expect (r, "GO", &error))
    return role_fail (r, "no GO", error);

  for (int i = 0; i < r->o->count; i++)
    {
      g_autoptr(TlspyoEndpointFinished) ep = role_endpoint_new (r, r->o->group);
      g_autoptr(GPtrArray) objects = NULL;
      gint64 t0 = g_get_monotonic_time (), t1;

      if (!tlspyo_endpoint_start (ep, &error))
        return role_fail (r, "cannot start an endpoint", error);
      objects = tlspyo_endpoint_pop (ep, 1, role_remaining_ms (r), &error);
      t1 = g_get_monotonic_time ();
      if (objects == NULL)
        return role_fail (r, "cannot receive", error);
      if (objects->len == 0)
        return role_fail (r, "the group's latest broadcast did not arrive in time", NULL);
      if (!payload_check (g_ptr_array_index (objects, 0), 0, (gsize) r->o->size, &error))
        return role_fail (r, "wrong object", error);
      if (i == 0)
        cold = t1 - t0;
      else
        {
          gint64 us = t1 - t0;
          g_array_append_val (warm, us);
        }
    }
  g_array_sort (warm, compare_gint64);
  role_say (r, "RESULT connects=%d cold_us=%" G_GINT64_FORMAT " p50_us=%" G_GINT64_FORMAT
            " p90_us=%" G_GINT64_FORMAT " max_us=%" G_GINT64_FORMAT, r->o->count, cold,
            percentile (warm, 0.5), percentile (warm, 0.9), percentile (warm, 1.0));
  role_wait_quit (r);
  return 0;
}

/* fanin: --count idle endpoints in --group, connected at once; reports
 * this process's memory before any, after the first, and after all. */
static int
role_fanin (Role *r)
{
  g_autoptr(GPtrArray) endpoints = g_ptr_array_new_with_free_func ((GDestroyNotify) endpoint_finish);
  g_autoptr(GError) error = NULL;
  MemStatus before, first, all;
  TlspyoEndpoint *ep;

  before = mem_status (0);
  ep = role_endpoint_connect (r, r->o->group, &error);
  if (ep == NULL)
    return role_fail (r, "the first endpoint cannot connect", error);
  g_ptr_array_add (endpoints, ep);
  first = mem_status (0);

  for (int i = 1; i < r->o->count; i++)
    {
      ep = role_endpoint_new (r, r->o->group);
      g_ptr_array_add (endpoints, ep);
      if (!tlspyo_endpoint_start (ep, &error))
        return role_fail (r, "cannot start an endpoint", error);
    }
  for (guint i = 1; i < endpoints->len; i++)
    if (!tlspyo_endpoint_wait_connected (g_ptr_array_index (endpoints, i), role_remaining_ms (r),
                                         &error))
      {
        g_autofree char *what = g_strdup_printf ("endpoint %u of %u did not connect", i + 1,
                                                 endpoints->len);
        return role_fail (r, what, error);
      }
  all = mem_status (0);
  role_say (r, "READY endpoints=%u rss_before_kib=%" G_GINT64_FORMAT " rss_first_kib=%"
            G_GINT64_FORMAT " rss_all_kib=%" G_GINT64_FORMAT " anon_before_kib=%"
            G_GINT64_FORMAT " anon_first_kib=%" G_GINT64_FORMAT " nofile=%u",
            endpoints->len, before.rss_kib, first.rss_kib, all.rss_kib, before.anon_kib,
            first.anon_kib, nofile_limit ());
  role_wait_quit (r);
  return 0;
}

typedef int (*RoleFunc) (Role *r);

static const struct {
  const char *name;
  RoleFunc    func;
} roles[] = {
  { "relay", role_relay },
  { "producer", role_producer },
  { "consumer", role_consumer },
  { "pinger", role_pinger },
  { "ponger", role_ponger },
  { "connect", role_connect },
  { "fanin", role_fanin },
};

/* Runs the role @o names, talking over @in_fd and @out_fd, on a context of
 * its own. Returns the exit code. */
static int
role_run (BenchOptions *o,
          int           in_fd,
          int           out_fd)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GInputStream) in = g_unix_input_stream_new (in_fd, FALSE);
  g_autoptr(GError) error = NULL;
  RoleFunc func = NULL;
  Role r = { 0, };
  int status;

  for (gsize i = 0; i < G_N_ELEMENTS (roles); i++)
    if (g_strcmp0 (o->role, roles[i].name) == 0)
      func = roles[i].func;
  if (func == NULL)
    {
      tlspyo_cli_printerr ("unknown role “%s”", o->role);
      return TLSPYO_CLI_EXIT_USAGE;
    }

  /* "tlspyo-producer" in ps, top and perf: every process of a run is
   * otherwise "tlspyo". */
  {
    g_autofree char *thread_name = g_strdup_printf ("tlspyo-%s", o->role);

    prctl (PR_SET_NAME, thread_name);
  }
  raise_nofile_limit ();
  g_main_context_push_thread_default (context);
  r.o = o;
  r.out = g_unix_output_stream_new (out_fd, FALSE);
  r.in = line_reader_new (in, 0);
  r.security = g_strcmp0 (o->security, "none") == 0 ? TLSPYO_SECURITY_NONE : TLSPYO_SECURITY_TLS;
  r.deadline = g_get_monotonic_time () + (gint64) MAX (o->timeout_ms, 1) * 1000;
  r.password = line_reader_next (r.in, r.deadline, &error);
  if (r.password == NULL)
    status = role_fail (&r, "no password on input", error);
  else if (o->group == NULL && !g_str_equal (o->role, "relay"))
    status = role_fail (&r, "no --group", NULL);
  else
    status = func (&r);

  if (r.password != NULL)
    memset (r.password, 0, strlen (r.password));
  g_free (r.password);
  line_reader_free (r.in);
  g_clear_object (&r.out);
  g_main_context_pop_thread_default (context);
  return status;
}

/* The conductor */

typedef enum {
  RELAY_CHILD,
  RELAY_IN_PROCESS,
  RELAY_REMOTE,
} RelayMode;

typedef struct {
  BenchOptions   *o;
  TlspyoSecurity  security;
  RelayMode       relay_mode;
  char           *exe;
  char           *password;
  char           *credentials_dir;
  char           *tmp_dir;          /* ours, removed at the end */
  char           *state_dir;        /* of the case's durable relay: ours, removed with it */
  char           *host;
  guint           port;             /* of the relay of the case running */
  char           *run_id;
  gint64          deadline;         /* of the case running */

  /* the relay of the case running */
  struct _Player *relay_player;
  TlspyoRelay    *relay;
  MemStatus       relay_idle;
} Bench;

typedef struct _Player {
  char          *name;
  GSubprocess   *process;
  GThread       *thread;
  GOutputStream *to;
  LineReader    *from;
  LineReader    *err;
  gboolean       exited;
} Player;

static void player_free (Player *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Player, player_free)

typedef struct {
  BenchOptions o;
  int          in_fd;
  int          out_fd;
} ThreadRole;

static gpointer
role_thread (gpointer data)
{
  ThreadRole *t = data;
  int status = role_run (&t->o, t->in_fd, t->out_fd);

  close (t->in_fd);
  close (t->out_fd);
  bench_options_clear (&t->o);
  g_free (t);
  return GINT_TO_POINTER (status);
}

static void
child_setup (gpointer data)
{
  /* A conductor killed outright takes its players with it. */
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
player_wait_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Player *p = user_data;

  (void) g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  p->exited = TRUE;
}

/* Starts a player with @args (role options) as a child process, or as a
 * thread of this process when @in_process, and sends it the password. */
static Player *
player_start (Bench       *b,
              const char  *name,
              GPtrArray   *args,
              gboolean     in_process,
              GError     **error)
{
  g_autoptr(Player) p = g_new0 (Player, 1);
  g_autofree char *password_line = g_strconcat (b->password, "\n", NULL);

  p->name = g_strdup (name);
  if (!in_process)
    {
      g_autoptr(GSubprocessLauncher) launcher = NULL;
      g_autoptr(GPtrArray) argv = g_ptr_array_new ();

      g_ptr_array_add (argv, b->exe);
      g_ptr_array_add (argv, (char *) "bench");
      for (guint i = 0; i < args->len; i++)
        g_ptr_array_add (argv, g_ptr_array_index (args, i));
      g_ptr_array_add (argv, NULL);

      launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                            G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                            G_SUBPROCESS_FLAGS_STDERR_PIPE);
      g_subprocess_launcher_set_child_setup (launcher, child_setup, NULL, NULL);
      p->process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, error);
      if (p->process == NULL)
        {
          g_prefix_error (error, "cannot start %s (%s): ", name, b->exe);
          return NULL;
        }
      p->to = g_object_ref (g_subprocess_get_stdin_pipe (p->process));
      p->from = line_reader_new (g_subprocess_get_stdout_pipe (p->process), 0);
      p->err = line_reader_new (g_subprocess_get_stderr_pipe (p->process), 30);
    }
  else
    {
      g_autoptr(GOptionContext) context = NULL;
      g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
      g_auto(GStrv) strv = NULL;
      ThreadRole *t = g_new0 (ThreadRole, 1);
      int to_player[2], from_player[2];

      bench_options_init (&t->o);
      context = bench_option_context_new (&t->o);
      g_ptr_array_add (argv, g_strdup ("bench"));
      for (guint i = 0; i < args->len; i++)
        g_ptr_array_add (argv, g_strdup (g_ptr_array_index (args, i)));
      g_ptr_array_add (argv, NULL);
      strv = (GStrv) g_ptr_array_free (g_steal_pointer (&argv), FALSE);
      if (!g_option_context_parse_strv (context, &strv, error))
        {
          bench_options_clear (&t->o);
          g_free (t);
          return NULL;
        }
      if (!g_unix_open_pipe (to_player, FD_CLOEXEC, error))
        {
          bench_options_clear (&t->o);
          g_free (t);
          return NULL;
        }
      if (!g_unix_open_pipe (from_player, FD_CLOEXEC, error))
        {
          close (to_player[0]);
          close (to_player[1]);
          bench_options_clear (&t->o);
          g_free (t);
          return NULL;
        }
      t->in_fd = to_player[0];
      t->out_fd = from_player[1];
      p->to = g_unix_output_stream_new (to_player[1], TRUE);
      {
        g_autoptr(GInputStream) from = g_unix_input_stream_new (from_player[0], TRUE);
        p->from = line_reader_new (from, 0);
      }
      p->thread = g_thread_new (name, role_thread, t);
    }

  if (!g_output_stream_write_all (p->to, password_line, strlen (password_line), NULL, NULL, error))
    {
      g_prefix_error (error, "cannot talk to %s: ", name);
      memset (password_line, 0, strlen (password_line));
      return g_steal_pointer (&p);  /* the caller finishes it, and sees the error */
    }
  memset (password_line, 0, strlen (password_line));
  return g_steal_pointer (&p);
}

static void
player_say (Player     *p,
            const char *command)
{
  g_autofree char *line = g_strconcat (command, "\n", NULL);

  /* A player that died is noticed by the next expect. */
  (void) g_output_stream_write_all (p->to, line, strlen (line), NULL, NULL, NULL);
}

static void
player_set_error (Player      *p,
                  GError     **error,
                  const char  *format,
                  ...) G_GNUC_PRINTF (3, 4);

static void
player_set_error (Player      *p,
                  GError     **error,
                  const char  *format,
                  ...)
{
  g_autofree char *message = NULL;
  g_autofree char *tail = line_reader_tail (p->err);
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s%s%s", p->name, message,
               *tail ? "; its last messages:" : "", tail);
}

/* Waits for @p to say @tag, by the case's deadline; a FAIL line, the
 * player's exit or the deadline are errors. Returns the line's pairs. */
static GHashTable *
player_expect (Bench       *b,
               Player      *p,
               const char  *tag,
               GError     **error)
{
  for (;;)
    {
      g_autoptr(GError) local = NULL;
      g_autofree char *line = line_reader_next (p->from, b->deadline, &local);
      g_autofree char *got = NULL;
      GHashTable *pairs;

      if (line == NULL)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
            player_set_error (p, error, "no %s within the case's %d s: raise --timeout if the "
                              "machine is slow", tag, b->o->timeout);
          else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            player_set_error (p, error, "interrupted");
          else
            player_set_error (p, error, "exited before saying %s", tag);
          return NULL;
        }
      if (g_str_has_prefix (line, "FAIL "))
        {
          player_set_error (p, error, "%s", line + 5);
          return NULL;
        }
      pairs = parse_pairs (line, &got);
      if (g_str_equal (got, tag))
        return pairs;
      g_hash_table_unref (pairs);
    }
}

/* Tells @p to quit and reaps it: politely, then by force. Fails when it
 * did not exit with status 0 (a leak found by a sanitizer, a crash). */
static gboolean
player_finish (Player  *p,
               GError **error)
{
  int status = 0;
  gboolean signaled = FALSE;

  player_say (p, "QUIT");
  (void) g_output_stream_close (p->to, NULL, NULL);

  if (p->process != NULL)
    {
      gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

      g_subprocess_wait_async (p->process, NULL, player_wait_cb, p);
      while (!p->exited && g_get_monotonic_time () < deadline)
        iterate_until (deadline);
      if (!p->exited)
        {
          g_subprocess_force_exit (p->process);
          while (!p->exited)
            g_main_context_iteration (g_main_context_get_thread_default (), TRUE);
          player_set_error (p, error, "did not exit within 10 s after QUIT, killed");
          return FALSE;
        }
      if (g_subprocess_get_if_signaled (p->process))
        {
          signaled = TRUE;
          status = g_subprocess_get_term_sig (p->process);
        }
      else
        status = g_subprocess_get_exit_status (p->process);
    }
  else if (p->thread != NULL)
    status = GPOINTER_TO_INT (g_thread_join (g_steal_pointer (&p->thread)));

  if (signaled)
    {
      player_set_error (p, error, "was killed by signal %d (%s)", status, g_strsignal (status));
      return FALSE;
    }
  if (status != 0)
    {
      player_set_error (p, error, "exited with status %d", status);
      return FALSE;
    }
  return TRUE;
}

static void
player_free (Player *p)
{
  if (p == NULL)
    return;
  if (p->process != NULL && !p->exited)
    {
      g_subprocess_force_exit (p->process);
      g_subprocess_wait_async (p->process, NULL, player_wait_cb, p);
      while (!p->exited)
        g_main_context_iteration (g_main_context_get_thread_default (), TRUE);
    }
  if (p->thread != NULL)
    {
      (void) g_output_stream_close (p->to, NULL, NULL);
      g_thread_join (p->thread);
    }
  line_reader_free (p->from);
  line_reader_free (p->err);
  g_clear_object (&p->to);
  g_clear_object (&p->process);
  g_free (p->name);
  g_free (p);
}

/* The options every player of the case gets. */
static GPtrArray *
role_args_new (Bench      *b,
               const char *role)
{
  GPtrArray *args = g_ptr_array_new_with_free_func (g_free);
  gint64 left_ms = (b->deadline - g_get_monotonic_time ()) / 1000;

  g_ptr_array_add (args, g_strdup_printf ("--role=%s", role));
  g_ptr_array_add (args, g_strdup_printf ("--host=%s", b->host));
  g_ptr_array_add (args, g_strdup_printf ("--port=%u", b->port));
  g_ptr_array_add (args, g_strdup_printf ("--security=%s",
                                          b->security == TLSPYO_SECURITY_NONE ? "none" : "tls"));
  g_ptr_array_add (args, g_strdup_printf ("--timeout-ms=%" G_GINT64_FORMAT, MAX (left_ms, 1)));
  if (b->credentials_dir != NULL)
    g_ptr_array_add (args, g_strdup_printf ("--credentials-dir=%s", b->credentials_dir));
  if (b->o->server_identity != NULL)
    g_ptr_array_add (args, g_strdup_printf ("--server-identity=%s", b->o->server_identity));
  return args;
}

static void role_args_add (GPtrArray *args, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
role_args_add (GPtrArray  *args,
               const char *format,
               ...)
{
  va_list ap;

  va_start (ap, format);
  g_ptr_array_add (args, g_strdup_vprintf (format, ap));
  va_end (ap);
}

/* The options of a producer or consumer of @count objects of @size bytes in
 * @group, by @mode (produce or broadcast). */
static GPtrArray *
stream_args_new (Bench      *b,
                 const char *role,
                 const char *group,
                 const char *mode,
                 gint64      count,
                 gint64      size)
{
  GPtrArray *args = role_args_new (b, role);

  role_args_add (args, "--group=%s", group);
  role_args_add (args, "--mode=%s", mode);
  role_args_add (args, "--count=%" G_GINT64_FORMAT, count);
  role_args_add (args, "--size=%" G_GINT64_FORMAT, size);
  return args;
}

/* One case's run: its players, and the first error. */
typedef struct {
  Bench      *b;
  GPtrArray  *players;
  GError     *error;
} Run;

static Player *
run_start (Run        *run,
           const char *name,
           GPtrArray  *args)
{
  Player *p;

  if (run->error != NULL)
    return NULL;
  p = player_start (run->b, name, args, run->b->o->endpoints_in_process, &run->error);
  if (p != NULL)
    g_ptr_array_add (run->players, p);
  return p;
}

static GHashTable *
run_expect (Run        *run,
            Player     *p,
            const char *tag)
{
  if (run->error != NULL || p == NULL)
    return NULL;
  return player_expect (run->b, p, tag, &run->error);
}

/* Waits for @tag from @p, when its pairs are not needed. */
static void
run_wait (Run        *run,
          Player     *p,
          const char *tag)
{
  GHashTable *pairs = run_expect (run, p, tag);

  g_clear_pointer (&pairs, g_hash_table_unref);
}

/* Tells @p to start, once every player is READY, and waits for its RESULT. */
static GHashTable *
run_go (Run    *run,
        Player *p)
{
  if (run->error == NULL)
    player_say (p, "GO");
  return run_expect (run, p, "RESULT");
}

/* Reaps every player; the first failure wins. */
static void
run_finish_players (Run *run)
{
  for (guint i = 0; i < run->players->len; i++)
    {
      Player *p = g_ptr_array_index (run->players, i);
      g_autoptr(GError) error = NULL;

      if (run->error != NULL)
        continue;
      if (!player_finish (p, &error))
        g_propagate_error (&run->error, g_steal_pointer (&error));
    }
  g_ptr_array_set_size (run->players, 0);
}

/* Relay of a case: a fresh one for each, so that its memory figures are
 * the case's own. */
static gboolean
relay_up (Bench   *b,
          GError **error)
{
  g_autoptr(GHashTable) ready = NULL;

  if (b->relay_mode == RELAY_REMOTE)
    {
      b->port = (guint) b->o->port;
      return TRUE;
    }
  /* A fresh folder per case: a relay restarted on the state of the case
   * before would resume its leftovers, and its figures would not be the
   * case's own. */
  if (b->o->durable)
    {
      b->state_dir = g_dir_make_tmp ("tlspyo-bench-state-XXXXXX", error);
      if (b->state_dir == NULL)
        {
          g_prefix_error (error, "cannot make the durable relay's state directory: ");
          return FALSE;
        }
    }
  if (b->relay_mode == RELAY_IN_PROCESS)
    {
      b->relay = g_object_new (TLSPYO_TYPE_RELAY, "port", 0, "address", "127.0.0.1",
                               "password", b->password, "security", b->security,
                               "credentials-dir", b->credentials_dir,
                               "state-directory", b->state_dir,
                               "max-connections", 0, "max-connections-per-address", 0,
                               NULL);
      if (!tlspyo_relay_start (b->relay, error))
        {
          g_clear_object (&b->relay);
          return FALSE;
        }
      b->port = tlspyo_relay_get_port (b->relay);
      b->relay_idle = mem_status (0);
      return TRUE;
    }

  {
    g_autoptr(GPtrArray) args = role_args_new (b, "relay");

    role_args_add (args, "--port=0");
    if (b->state_dir != NULL)
      role_args_add (args, "--state-directory=%s", b->state_dir);
    b->relay_player = player_start (b, "the relay", args, FALSE, error);
  }
  if (b->relay_player == NULL)
    return FALSE;
  /* Its deadline is the case's, and it may be the first process of the run
   * to load the TLS backend: give it its own bound. */
  {
    gint64 saved = b->deadline;

    b->deadline = MAX (b->deadline, g_get_monotonic_time () + 30 * G_USEC_PER_SEC);
    ready = player_expect (b, b->relay_player, "READY", error);
    b->deadline = saved;
  }
  if (ready == NULL)
    return FALSE;
  b->port = (guint) pair_int (ready, "port");
  b->relay_idle.rss_kib = pair_int (ready, "rss_kib");
  b->relay_idle.hwm_kib = pair_int (ready, "hwm_kib");
  b->relay_idle.anon_kib = pair_int (ready, "anon_kib");
  return TRUE;
}

/* The relay's memory, when it has a process of its own to read it from;
 * and its connection count, when known. */
static gboolean
relay_stat (Bench    *b,
            MemStatus *m,
            int       *connections,
            GError   **error)
{
  m->rss_kib = m->hwm_kib = m->anon_kib = -1;
  *connections = -1;
  if (b->relay_player != NULL)
    {
      g_autoptr(GHashTable) stat = NULL;

      player_say (b->relay_player, "STAT");
      stat = player_expect (b, b->relay_player, "STAT", error);
      if (stat == NULL)
        return FALSE;
      m->rss_kib = pair_int (stat, "rss_kib");
      m->hwm_kib = pair_int (stat, "hwm_kib");
      m->anon_kib = pair_int (stat, "anon_kib");
      *connections = (int) pair_int (stat, "connections");
    }
  else if (b->relay != NULL)
    {
      if (!b->o->endpoints_in_process)
        *m = mem_status (0);
      *connections = (int) tlspyo_relay_get_n_connections (b->relay);
    }
  return TRUE;
}

/* Removes a temporary folder of ours and the files in it (credentials, a
 * relay's state: no subfolders). What cannot be removed is said, so that
 * leftovers in the temporary folder do not pile up unnoticed. */
static void
remove_dir (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open (path, 0, &error);
  const char *name;

  if (dir == NULL)
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        tlspyo_cli_printerr ("cannot remove the temporary folder %s: %s", path, error->message);
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_unlink (child) != 0)
        {
          int saved_errno = errno;

          tlspyo_cli_printerr ("cannot remove %s: %s", child, g_strerror (saved_errno));
        }
    }
  if (g_rmdir (path) != 0)
    {
      int saved_errno = errno;

      tlspyo_cli_printerr ("cannot remove the temporary folder %s: %s; remove it by hand",
                           path, g_strerror (saved_errno));
    }
}

static gboolean
relay_down (Bench   *b,
            GError **error)
{
  gboolean ok = TRUE;

  if (b->relay != NULL)
    {
      tlspyo_relay_stop (b->relay);
      g_clear_object (&b->relay);
    }
  if (b->relay_player != NULL)
    {
      ok = player_finish (b->relay_player, error);
      g_clear_pointer (&b->relay_player, player_free);
    }
  /* Only once the relay is gone: it writes there until it stops. */
  if (b->state_dir != NULL)
    {
      remove_dir (b->state_dir);
      g_clear_pointer (&b->state_dir, g_free);
    }
  return ok;
}

static gboolean
relay_memory_known (Bench *b)
{
  return b->relay_player != NULL || (b->relay != NULL && !b->o->endpoints_in_process);
}

/* What a case reports */

typedef struct {
  char       *name;
  gboolean    ok;
  char       *error;
  JsonObject *json;
  char       *workload;
  char       *figures;
} CaseResult;

static void
case_result_free (CaseResult *c)
{
  g_free (c->name);
  g_free (c->error);
  g_clear_pointer (&c->json, json_object_unref);
  g_free (c->workload);
  g_free (c->figures);
  g_free (c);
}

static CaseResult *
case_result_new (const char *name,
                 const char *kind)
{
  CaseResult *c = g_new0 (CaseResult, 1);

  c->name = g_strdup (name);
  c->json = json_object_new ();
  json_object_set_string_member (c->json, "name", kind);
  return c;
}

static void
case_result_set_error (CaseResult   *c,
                       const GError *error)
{
  c->ok = error == NULL;
  json_object_set_boolean_member (c->json, "ok", c->ok);
  if (error != NULL)
    {
      c->error = g_strdup (error->message);
      json_object_set_string_member (c->json, "error", error->message);
    }
}

static void
json_set_kib (JsonObject *object,
              const char *member,
              gint64      kib)
{
  if (kib >= 0)
    json_object_set_int_member (object, member, kib);
  else
    json_object_set_null_member (object, member);
}

static char *
group_name (Bench      *b,
            const char *what)
{
  return g_strdup_printf ("bench-%s-%s", b->run_id, what);
}

/* Starts the case: its deadline, its relay. */
static void
run_begin (Run   *run,
           Bench *b)
{
  run->b = b;
  run->players = g_ptr_array_new_with_free_func ((GDestroyNotify) player_free);
  run->error = NULL;
  b->deadline = g_get_monotonic_time () + (gint64) b->o->timeout * G_USEC_PER_SEC;
  (void) relay_up (b, &run->error);
}

/* Ends the case: reaps the players and the relay, and records the outcome. */
static void
run_end (Run        *run,
         CaseResult *c)
{
  g_autoptr(GError) relay_error = NULL;

  run_finish_players (run);
  if (!relay_down (run->b, &relay_error) && run->error == NULL)
    run->error = g_steal_pointer (&relay_error);
  case_result_set_error (c, run->error);
  g_clear_error (&run->error);
  g_ptr_array_unref (run->players);
}

/* The cases */

typedef struct {
  int count;
  int size;
  int consumers;
  int window;
  int rounds;
  int connects;
  int fanin;
  int fanin_processes;
  int large_mib;
  int large_window;
} Workload;

static double
seconds_between (gint64 t0,
                 gint64 t1)
{
  return MAX (t1 - t0, 1) / (double) G_USEC_PER_SEC;
}

static CaseResult *
case_produce (Bench          *b,
              const Workload *w)
{
  CaseResult *c = case_result_new ("produce", "produce");
  g_autofree char *group = group_name (b, "produce");
  g_autoptr(GHashTable) sent = NULL;
  g_autoptr(GHashTable) got = NULL;
  Player *consumer, *producer;
  Run run;

  run_begin (&run, b);
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "consumer", group, "produce",
                                                 w->count, w->size);

    role_args_add (args, "--window=%d", w->window);
    consumer = run_start (&run, "the consumer", args);
  }
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "producer", group, "produce",
                                                 w->count, w->size);

    producer = run_start (&run, "the producer", args);
  }
  run_wait (&run, consumer, "READY");
  run_wait (&run, producer, "READY");
  sent = run_go (&run, producer);
  got = run_expect (&run, consumer, "RESULT");

  json_object_set_int_member (c->json, "count", w->count);
  json_object_set_int_member (c->json, "size", w->size);
  json_object_set_int_member (c->json, "window", w->window);
  json_object_set_int_member (c->json, "expected", w->count);
  {
    g_autofree char *count_text = group_digits (w->count);
    g_autofree char *window_text = w->window > 0 ? g_strdup_printf ("window %d", w->window)
                                                 : g_strdup ("unlimited");

    c->workload = g_strdup_printf ("%s x %d B, credit %s", count_text, w->size, window_text);
  }
  if (run.error == NULL)
    {
      double s = seconds_between (pair_int (sent, "t_first"), pair_int (got, "t_last"));
      double rate = w->count / s;
      double mbps = (double) w->count * w->size / s / 1e6;
      g_autofree char *rate_text = group_digits (rate);

      json_object_set_int_member (c->json, "received", pair_int (got, "received"));
      json_object_set_double_member (c->json, "seconds", s);
      json_object_set_double_member (c->json, "objects_per_s", rate);
      json_object_set_double_member (c->json, "mb_per_s", mbps);
      json_object_set_double_member (c->json, "producer_send_seconds",
                                     seconds_between (pair_int (sent, "t_first"),
                                                      pair_int (sent, "t_sent")));
      c->figures = g_strdup_printf ("%s objects/s, %.1f MB/s", rate_text, mbps);
    }
  run_end (&run, c);
  return c;
}

static CaseResult *
case_broadcast (Bench          *b,
                const Workload *w)
{
  CaseResult *c = case_result_new ("broadcast", "broadcast");
  g_autofree char *group = group_name (b, "broadcast");
  g_autoptr(GPtrArray) consumers = g_ptr_array_new ();
  g_autoptr(GHashTable) sent = NULL;
  gint64 t_last = -1, received = 0;
  Player *producer;
  Run run;

  run_begin (&run, b);
  /* Consumers join before anything is broadcast, so each gets every object
   * and no "latest broadcast" of an earlier run: the group is the run's own. */
  for (int i = 0; i < w->consumers; i++)
    {
      g_autoptr(GPtrArray) args = stream_args_new (b, "consumer", group, "broadcast",
                                                   w->count, w->size);
      g_autofree char *name = g_strdup_printf ("consumer %d", i + 1);
      Player *p;

      p = run_start (&run, name, args);
      if (p != NULL)
        g_ptr_array_add (consumers, p);
    }
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "producer", group, "broadcast",
                                                 w->count, w->size);

    producer = run_start (&run, "the producer", args);
  }
  for (guint i = 0; i < consumers->len; i++)
    run_wait (&run, g_ptr_array_index (consumers, i), "READY");
  run_wait (&run, producer, "READY");
  sent = run_go (&run, producer);
  for (guint i = 0; i < consumers->len; i++)
    {
      g_autoptr(GHashTable) got = run_expect (&run, g_ptr_array_index (consumers, i), "RESULT");

      if (got != NULL)
        {
          t_last = MAX (t_last, pair_int (got, "t_last"));
          received += pair_int (got, "received");
        }
    }

  json_object_set_int_member (c->json, "count", w->count);
  json_object_set_int_member (c->json, "size", w->size);
  json_object_set_int_member (c->json, "consumers", w->consumers);
  json_object_set_int_member (c->json, "expected", (gint64) w->count * w->consumers);
  {
    g_autofree char *count_text = group_digits (w->count);

    c->workload = g_strdup_printf ("%s x %d B to %d consumers", count_text, w->size, w->consumers);
  }
  if (run.error == NULL)
    {
      double s = seconds_between (pair_int (sent, "t_first"), t_last);
      double rate = (double) w->count * w->consumers / s;
      g_autofree char *rate_text = group_digits (rate);

      json_object_set_int_member (c->json, "received", received);
      json_object_set_double_member (c->json, "seconds", s);
      json_object_set_double_member (c->json, "deliveries_per_s", rate);
      json_object_set_double_member (c->json, "objects_per_s", w->count / s);
      json_object_set_double_member (c->json, "mb_per_s", rate * w->size / 1e6);
      c->figures = g_strdup_printf ("%s deliveries/s, %.1f MB/s", rate_text, rate * w->size / 1e6);
    }
  run_end (&run, c);
  return c;
}

static CaseResult *
case_latency (Bench          *b,
              const Workload *w)
{
  CaseResult *c = case_result_new ("latency", "latency");
  g_autofree char *ping = group_name (b, "ping");
  g_autofree char *pong = group_name (b, "pong");
  g_autoptr(GHashTable) result = NULL;
  g_autoptr(GHashTable) echoed = NULL;
  Player *pinger, *ponger;
  Run run;

  run_begin (&run, b);
  {
    g_autoptr(GPtrArray) args = role_args_new (b, "ponger");

    role_args_add (args, "--group=%s", pong);
    role_args_add (args, "--reply-group=%s", ping);
    role_args_add (args, "--rounds=%d", w->rounds);
    ponger = run_start (&run, "the ponger", args);
  }
  {
    g_autoptr(GPtrArray) args = role_args_new (b, "pinger");

    role_args_add (args, "--group=%s", pong);
    role_args_add (args, "--reply-group=%s", ping);
    role_args_add (args, "--rounds=%d", w->rounds);
    role_args_add (args, "--size=%d", w->size);
    pinger = run_start (&run, "the pinger", args);
  }
  run_wait (&run, ponger, "READY");
  run_wait (&run, pinger, "READY");
  result = run_go (&run, pinger);
  echoed = run_expect (&run, ponger, "RESULT");

  json_object_set_int_member (c->json, "rounds", w->rounds);
  json_object_set_int_member (c->json, "size", w->size);
  json_object_set_int_member (c->json, "expected", w->rounds);
  {
    g_autofree char *rounds_text = group_digits (w->rounds);

    c->workload = g_strdup_printf ("%s round trips of %d B", rounds_text, w->size);
  }
  if (run.error == NULL)
    {
      const char *keys[] = { "min_us", "p50_us", "p90_us", "p99_us", "max_us", "mean_us" };
      g_autofree char *p50 = format_us (pair_int (result, "p50_us"));
      g_autofree char *p90 = format_us (pair_int (result, "p90_us"));
      g_autofree char *p99 = format_us (pair_int (result, "p99_us"));

      json_object_set_int_member (c->json, "received", pair_int (echoed, "echoed"));
      json_object_set_int_member (c->json, "measured", pair_int (result, "measured"));
      for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
        json_object_set_int_member (c->json, keys[i], pair_int (result, keys[i]));
      c->figures = g_strdup_printf ("round trip p50 %s, p90 %s, p99 %s", p50, p90, p99);
    }
  run_end (&run, c);
  return c;
}

static CaseResult *
case_large_one (Bench          *b,
                const Workload *w,
                gint64          size)
{
  g_autofree char *size_text = format_size (size);
  g_autofree char *name = g_strdup_printf ("large %s", size_text);
  CaseResult *c = case_result_new (name, "large");
  g_autofree char *group = group_name (b, name + 6);
  g_autofree char *acks = g_strconcat (group, ".acks", NULL);
  gint64 count = MAX (1, (gint64) w->large_mib * MIB / size);
  g_autoptr(GHashTable) producer_ready = NULL;
  g_autoptr(GHashTable) consumer_ready = NULL;
  g_autoptr(GHashTable) sent = NULL;
  g_autoptr(GHashTable) got = NULL;
  MemStatus relay_after = { -1, -1, -1 };
  int connections;
  Player *consumer, *producer;
  Run run;

  g_strdelimit (group, " ", '-');
  g_strdelimit (acks, " ", '-');
  run_begin (&run, b);
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "consumer", group, "produce", count, size);

    role_args_add (args, "--reply-group=%s", acks);
    role_args_add (args, "--window=0");
    role_args_add (args, "--max-object-size=%" G_GINT64_FORMAT, size + 4096);
    consumer = run_start (&run, "the consumer", args);
  }
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "producer", group, "produce", count, size);

    role_args_add (args, "--reply-group=%s", acks);
    role_args_add (args, "--inflight=%d", w->large_window);
    role_args_add (args, "--max-object-size=%" G_GINT64_FORMAT, size + 4096);
    producer = run_start (&run, "the producer", args);
  }
  consumer_ready = run_expect (&run, consumer, "READY");
  producer_ready = run_expect (&run, producer, "READY");
  sent = run_go (&run, producer);
  got = run_expect (&run, consumer, "RESULT");
  if (run.error == NULL)
    relay_stat (b, &relay_after, &connections, &run.error);

  json_object_set_int_member (c->json, "count", count);
  json_object_set_int_member (c->json, "size", size);
  json_object_set_int_member (c->json, "inflight", w->large_window);
  json_object_set_int_member (c->json, "expected", count);
  c->workload = g_strdup_printf ("%" G_GINT64_FORMAT " x %s, %d in flight", count, size_text,
                                 w->large_window);
  if (run.error == NULL)
    {
      double s = seconds_between (pair_int (sent, "t_first"), pair_int (got, "t_last"));
      double mbps = (double) count * size / s / 1e6;
      gboolean own = !b->o->endpoints_in_process;
      JsonObject *peak = json_object_new ();
      JsonObject *idle = json_object_new ();
      struct {
        const char *who;
        gint64      idle_kib;
        gint64      peak_kib;
      } procs[] = {
        { "producer", own ? pair_int (producer_ready, "rss_kib") : -1,
          own ? pair_int (sent, "hwm_kib") : -1 },
        { "relay", relay_memory_known (b) ? b->relay_idle.rss_kib : -1,
          relay_memory_known (b) ? relay_after.hwm_kib : -1 },
        { "consumer", own ? pair_int (consumer_ready, "rss_kib") : -1,
          own ? pair_int (got, "hwm_kib") : -1 },
      };
      GString *figures = g_string_new (NULL);

      g_string_append_printf (figures, "%.0f MB/s; peak above idle:", mbps);
      for (gsize i = 0; i < G_N_ELEMENTS (procs); i++)
        {
          json_set_kib (idle, procs[i].who, procs[i].idle_kib);
          json_set_kib (peak, procs[i].who, procs[i].peak_kib);
          if (procs[i].idle_kib >= 0 && procs[i].peak_kib >= 0)
            g_string_append_printf (figures, " %s %.1fx", procs[i].who,
                                    (procs[i].peak_kib - procs[i].idle_kib) * 1024.0 / size);
          else
            g_string_append_printf (figures, " %s ?", procs[i].who);
        }
      g_string_append (figures, " the object");
      json_object_set_int_member (c->json, "received", pair_int (got, "received"));
      json_object_set_double_member (c->json, "seconds", s);
      json_object_set_double_member (c->json, "mb_per_s", mbps);
      json_object_set_object_member (c->json, "idle_rss_kib", idle);
      json_object_set_object_member (c->json, "peak_rss_kib", peak);
      c->figures = g_string_free (figures, FALSE);
    }
  run_end (&run, c);
  return c;
}

static CaseResult *
case_connect (Bench          *b,
              const Workload *w)
{
  CaseResult *c = case_result_new ("connect", "connect");
  g_autofree char *group = group_name (b, "connect");
  g_autoptr(GHashTable) seeded = NULL;
  g_autoptr(GHashTable) result = NULL;
  Player *seeder, *connector;
  Run run;

  run_begin (&run, b);
  /* The relay first holds a latest broadcast for the group: that is what
   * each new endpoint receives as soon as it joined. */
  {
    g_autoptr(GPtrArray) args = stream_args_new (b, "producer", group, "broadcast", 1, w->size);

    seeder = run_start (&run, "the seeding producer", args);
  }
  run_wait (&run, seeder, "READY");
  seeded = run_go (&run, seeder);
  run_finish_players (&run);

  {
    g_autoptr(GPtrArray) args = role_args_new (b, "connect");

    role_args_add (args, "--group=%s", group);
    role_args_add (args, "--count=%d", w->connects);
    role_args_add (args, "--size=%d", w->size);
    connector = run_start (&run, "the connecting endpoint", args);
  }
  run_wait (&run, connector, "READY");
  result = run_go (&run, connector);

  json_object_set_int_member (c->json, "connects", w->connects);
  json_object_set_int_member (c->json, "size", w->size);
  json_object_set_int_member (c->json, "expected", w->connects);
  c->workload = g_strdup_printf ("%d endpoints, one after the other", w->connects);
  if (run.error == NULL)
    {
      g_autofree char *cold = format_us (pair_int (result, "cold_us"));
      g_autofree char *p50 = format_us (pair_int (result, "p50_us"));
      g_autofree char *max = format_us (pair_int (result, "max_us"));

      json_object_set_int_member (c->json, "received", pair_int (result, "connects"));
      json_object_set_int_member (c->json, "cold_us", pair_int (result, "cold_us"));
      json_object_set_int_member (c->json, "p50_us", pair_int (result, "p50_us"));
      json_object_set_int_member (c->json, "p90_us", pair_int (result, "p90_us"));
      json_object_set_int_member (c->json, "max_us", pair_int (result, "max_us"));
      if (w->connects > 1)
        c->figures = g_strdup_printf ("start() to first object: first %s, then p50 %s, max %s",
                                      cold, p50, max);
      else
        c->figures = g_strdup_printf ("start() to first object: %s", cold);
    }
  run_end (&run, c);
  return c;
}

static CaseResult *
case_fanin (Bench          *b,
            const Workload *w)
{
  CaseResult *c = case_result_new ("fanin", "fanin");
  g_autofree char *group = group_name (b, "fanin");
  g_autoptr(GPtrArray) fans = g_ptr_array_new ();
  g_autoptr(GHashTable) first = NULL;
  MemStatus relay_after = { -1, -1, -1 };
  int processes = MIN (w->fanin_processes, w->fanin);
  int connections = -1;
  gint64 connected = 0, t0;
  Run run;

  run_begin (&run, b);
  t0 = g_get_monotonic_time ();
  for (int i = 0; i < processes; i++)
    {
      g_autoptr(GPtrArray) args = role_args_new (b, "fanin");
      g_autofree char *name = g_strdup_printf ("endpoint process %d", i + 1);
      int n = w->fanin / processes + (i < w->fanin % processes ? 1 : 0);
      Player *p;

      role_args_add (args, "--group=%s", group);
      role_args_add (args, "--count=%d", n);
      p = run_start (&run, name, args);
      if (p != NULL)
        g_ptr_array_add (fans, p);
    }
  for (guint i = 0; i < fans->len; i++)
    {
      g_autoptr(GHashTable) ready = run_expect (&run, g_ptr_array_index (fans, i), "READY");

      if (ready == NULL)
        continue;
      connected += pair_int (ready, "endpoints");
      if (first == NULL)
        first = g_hash_table_ref (ready);
    }
  /* Every endpoint was welcomed; the relay counts it right after sending
   * the welcome. Give that count a moment, but no more. */
  for (int tries = 0; run.error == NULL && tries < 20; tries++)
    {
      if (!relay_stat (b, &relay_after, &connections, &run.error) ||
          connections < 0 || connections == w->fanin)
        break;
      sleep_ms (100);
    }
  if (run.error == NULL && connections >= 0 && connections != w->fanin)
    {
      if (b->relay_player != NULL)
        player_set_error (b->relay_player, &run.error, "counts %d connections, not %d",
                          connections, w->fanin);
      else
        g_set_error (&run.error, G_IO_ERROR, G_IO_ERROR_FAILED,
                     "the relay counts %d connections, not %d", connections, w->fanin);
    }

  json_object_set_int_member (c->json, "endpoints", w->fanin);
  json_object_set_int_member (c->json, "processes", processes);
  json_object_set_int_member (c->json, "expected", w->fanin);
  {
    g_autofree char *fanin_text = group_digits (w->fanin);

    c->workload = g_strdup_printf ("%s idle endpoints in %d processes", fanin_text, processes);
  }
  if (run.error == NULL)
    {
      gboolean relay_known = relay_memory_known (b) && relay_after.rss_kib >= 0;
      gboolean own = !b->o->endpoints_in_process;
      gint64 first_kib = own ? pair_int (first, "rss_first_kib") - pair_int (first, "rss_before_kib") : -1;
      gint64 first_anon_kib = own ? pair_int (first, "anon_first_kib") -
                                    pair_int (first, "anon_before_kib") : -1;
      gint64 n_first = own ? pair_int (first, "endpoints") : 0;
      double each_kib = n_first > 1 ? (double) (pair_int (first, "rss_all_kib") -
                                                pair_int (first, "rss_first_kib")) / (n_first - 1)
                                    : -1;
      double per_conn = relay_known ? (double) (relay_after.rss_kib - b->relay_idle.rss_kib) / w->fanin
                                    : -1;
      GString *figures = g_string_new (NULL);

      json_object_set_int_member (c->json, "received", connected);
      json_object_set_double_member (c->json, "seconds", seconds_between (t0, g_get_monotonic_time ()));
      json_set_kib (c->json, "relay_idle_rss_kib", relay_known ? b->relay_idle.rss_kib : -1);
      json_set_kib (c->json, "relay_idle_anon_kib", relay_known ? b->relay_idle.anon_kib : -1);
      json_set_kib (c->json, "relay_rss_kib", relay_known ? relay_after.rss_kib : -1);
      if (relay_known)
        {
          g_autofree char *idle = format_kib (b->relay_idle.rss_kib);

          json_object_set_double_member (c->json, "relay_kib_per_connection", per_conn);
          g_string_append_printf (figures, "relay %.1f KiB per connection (idle relay %s); ",
                                  per_conn, idle);
        }
      else
        {
          json_object_set_null_member (c->json, "relay_kib_per_connection");
          g_string_append (figures, "relay memory unknown; ");
        }
      json_set_kib (c->json, "endpoint_first_kib", first_kib);
      json_set_kib (c->json, "endpoint_first_anon_kib", first_anon_kib);
      if (each_kib >= 0)
        json_object_set_double_member (c->json, "endpoint_each_kib", each_kib);
      else
        json_object_set_null_member (c->json, "endpoint_each_kib");
      if (first_kib >= 0)
        g_string_append_printf (figures, "first endpoint +%.1f MiB (%.1f MiB not shared), "
                                "each further +%.0f KiB", first_kib / 1024.0,
                                first_anon_kib / 1024.0, each_kib);
      else
        g_string_append (figures, "endpoint memory unknown (threads)");
      c->figures = g_string_free (figures, FALSE);
    }
  run_end (&run, c);
  return c;
}

/* Output */

static char *
pad (const char *text,
     glong       width)
{
  glong len = g_utf8_strlen (text, -1);
  GString *out = g_string_new (text);

  while (len++ < width)
    g_string_append_c (out, ' ');
  return g_string_free (out, FALSE);
}

static const char *
relay_mode_name (Bench *b)
{
  switch (b->relay_mode)
    {
    case RELAY_CHILD:
      return "child";
    case RELAY_IN_PROCESS:
      return "in-process";
    case RELAY_REMOTE:
    default:
      return "remote";
    }
}

static void
print_table (Bench     *b,
             GPtrArray *results)
{
  glong widths[3] = { 4, 6, 8 };
  g_autofree char *where = b->relay_mode == RELAY_REMOTE
    ? g_strdup_printf ("the relay at %s:%u", b->host, b->port)
    : g_strdup_printf ("a %srelay in %s", b->o->durable ? "durable " : "",
                       b->relay_mode == RELAY_CHILD ? "a child process" : "this process");

  g_print ("tlspyo bench %s: %s, %s, endpoints in %s, %u CPUs%s\n", TLSPYO_VERSION_S,
           b->security == TLSPYO_SECURITY_TLS ? "TLS" : "plain TCP", where,
           b->o->endpoints_in_process ? "threads of this process" : "child processes",
           g_get_num_processors (), b->o->quick ? ", quick run (correctness only)" : "");
  for (guint i = 0; i < results->len; i++)
    {
      CaseResult *c = g_ptr_array_index (results, i);

      widths[0] = MAX (widths[0], g_utf8_strlen (c->name, -1));
      widths[2] = MAX (widths[2], c->workload ? g_utf8_strlen (c->workload, -1) : 0);
    }
  {
    g_autofree char *h0 = pad ("case", widths[0]);
    g_autofree char *h1 = pad ("result", widths[1]);
    g_autofree char *h2 = pad ("workload", widths[2]);

    g_print ("\n%s  %s  %s  %s\n", h0, h1, h2, "figures");
  }
  for (guint i = 0; i < results->len; i++)
    {
      CaseResult *c = g_ptr_array_index (results, i);
      g_autofree char *c0 = pad (c->name, widths[0]);
      g_autofree char *c1 = pad (c->ok ? "ok" : "FAILED", widths[1]);
      g_autofree char *c2 = pad (c->workload ? c->workload : "", widths[2]);

      g_print ("%s  %s  %s  %s\n", c0, c1, c2,
               c->ok ? (c->figures ? c->figures : "") : c->error);
    }
}

static void
print_json (Bench     *b,
            GPtrArray *results,
            gboolean   ok)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;
  g_autofree char *glib = g_strdup_printf ("%u.%u.%u", glib_major_version, glib_minor_version,
                                           glib_micro_version);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "tool");
  json_builder_add_string_value (builder, "tlspyo bench");
  json_builder_set_member_name (builder, "version");
  json_builder_add_string_value (builder, TLSPYO_VERSION_S);
  json_builder_set_member_name (builder, "glib");
  json_builder_add_string_value (builder, glib);
  json_builder_set_member_name (builder, "cpus");
  json_builder_add_int_value (builder, g_get_num_processors ());
  json_builder_set_member_name (builder, "security");
  json_builder_add_string_value (builder, b->security == TLSPYO_SECURITY_TLS ? "tls" : "none");
  json_builder_set_member_name (builder, "relay");
  json_builder_add_string_value (builder, relay_mode_name (b));
  json_builder_set_member_name (builder, "durable");
  json_builder_add_boolean_value (builder, b->o->durable);
  json_builder_set_member_name (builder, "endpoints");
  json_builder_add_string_value (builder, b->o->endpoints_in_process ? "threads" : "processes");
  json_builder_set_member_name (builder, "quick");
  json_builder_add_boolean_value (builder, b->o->quick);
  json_builder_set_member_name (builder, "ok");
  json_builder_add_boolean_value (builder, ok);
  json_builder_set_member_name (builder, "cases");
  json_builder_begin_array (builder);
  for (guint i = 0; i < results->len; i++)
    {
      CaseResult *c = g_ptr_array_index (results, i);
      JsonNode *node = json_node_new (JSON_NODE_OBJECT);

      json_node_set_object (node, c->json);
      json_builder_add_value (builder, node);
    }
  json_builder_end_array (builder);
  json_builder_end_object (builder);

  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, NULL);
  g_print ("%s\n", text);
}

/* Setup */

/* The password travels to the players as one line of their input. */
static gboolean
read_password (BenchOptions  *o,
               char         **password,
               GError       **error)
{
  g_autoptr(TlspyoCliPassword) secret = tlspyo_cli_read_password (o->password_file, error);

  if (secret == NULL)
    return FALSE;
  if (strpbrk (secret, "\r\n") != NULL)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "the password has a line break, which tlspyo bench cannot pass to "
                           "its endpoint processes: use a password on one line");
      return FALSE;
    }
  *password = g_strdup (secret);
  return TRUE;
}

static gboolean
check_positive (const char  *option,
                int          value,
                int          minimum,
                GError     **error)
{
  if (value >= minimum)
    return TRUE;
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "--%s is %d: give at least %d", option, value, minimum);
  return FALSE;
}

/* Fills in the defaults and checks the user's choices. */
static gboolean
bench_setup_workload (BenchOptions  *o,
                      Workload      *w,
                      GStrv         *cases,
                      GError       **error)
{
#define PICK(field, normal_value, quick_value) \
  w->field = o->field >= 0 ? o->field : (o->quick ? (quick_value) : (normal_value))
  PICK (count, 500000, 2000);
  PICK (size, 100, 100);
  PICK (consumers, 4, 2);
  PICK (window, 0, 0);
  PICK (rounds, 10000, 50);
  PICK (connects, 20, 3);
  PICK (fanin, 1000, 40);
  PICK (fanin_processes, 4, 2);
  PICK (large_mib, 256, 8);
  PICK (large_window, 2, 2);
#undef PICK
  if (o->timeout < 0)
    o->timeout = 60;

  if (!check_positive ("count", w->count, 1, error) ||
      !check_positive ("size", w->size, 8, error) ||
      !check_positive ("consumers", w->consumers, 1, error) ||
      !check_positive ("window", w->window, 0, error) ||
      !check_positive ("rounds", w->rounds, 1, error) ||
      !check_positive ("connects", w->connects, 1, error) ||
      !check_positive ("fanin", w->fanin, 1, error) ||
      !check_positive ("fanin-processes", w->fanin_processes, 1, error) ||
      !check_positive ("large-mib", w->large_mib, 1, error) ||
      !check_positive ("large-window", w->large_window, 1, error) ||
      !check_positive ("timeout", o->timeout, 1, error))
    return FALSE;
  if (w->consumers > 256 || w->fanin_processes > 64)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "--consumers is at most 256 and --fanin-processes at most 64: each "
                           "is a process");
      return FALSE;
    }

  if (o->cases == NULL)
    *cases = g_strdupv ((GStrv) all_cases);
  else
    {
      *cases = g_strsplit (o->cases, ",", -1);
      for (guint i = 0; (*cases)[i] != NULL; i++)
        {
          g_strstrip ((*cases)[i]);
          if (!g_strv_contains (all_cases, (*cases)[i]))
            {
              g_autofree char *valid = g_strjoinv (", ", (GStrv) all_cases);

              g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "unknown case “%s” in --cases: choose among %s", (*cases)[i], valid);
              return FALSE;
            }
        }
    }
  return TRUE;
}

static gboolean
bench_setup (Bench         *b,
             BenchOptions  *o,
             GError       **error)
{
  b->o = o;
  b->security = TLSPYO_SECURITY_TLS;
  if (o->security != NULL && !tlspyo_cli_parse_security (o->security, &b->security, error))
    return FALSE;

  if (o->host != NULL)
    {
      if (o->relay_in_process)
        {
          g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                               "--host measures an existing relay: leave out --relay-in-process");
          return FALSE;
        }
      if (o->durable)
        {
          g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                               "--host measures an existing relay, whose state directory is "
                               "its own: leave out --durable");
          return FALSE;
        }
      if (o->port < 0)
        o->port = 2096;
      if (o->port == 0 || o->port > G_MAXUINT16)
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "--port is %d: give the relay's port, 1 to 65535", o->port);
          return FALSE;
        }
      b->relay_mode = RELAY_REMOTE;
      b->host = g_strdup (o->host);
      b->credentials_dir = g_strdup (o->credentials_dir);
      if (!read_password (o, &b->password, error))
        return FALSE;
    }
  else
    {
      guint8 secret[16];

      if (o->port >= 0 || o->password_file != NULL || o->server_identity != NULL)
        {
          g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                               "--port, --password-file and --server-identity describe an "
                               "existing relay: give its --host too");
          return FALSE;
        }
      b->relay_mode = o->relay_in_process ? RELAY_IN_PROCESS : RELAY_CHILD;
      b->host = g_strdup ("127.0.0.1");
      for (gsize i = 0; i < sizeof secret; i++)
        secret[i] = (guint8) g_random_int_range (0, 256);
      b->password = g_compute_checksum_for_data (G_CHECKSUM_SHA256, secret, sizeof secret);
      if (b->security == TLSPYO_SECURITY_TLS)
        {
          if (o->credentials_dir != NULL)
            b->credentials_dir = g_strdup (o->credentials_dir);
          else
            {
              b->tmp_dir = g_dir_make_tmp ("tlspyo-bench-XXXXXX", error);
              if (b->tmp_dir == NULL)
                return FALSE;
              if (!tlspyo_credentials_generate (b->tmp_dir, NULL, error))
                {
                  g_prefix_error (error, "cannot make credentials for the local relay: ");
                  return FALSE;
                }
              b->credentials_dir = g_strdup (b->tmp_dir);
            }
        }
    }

  b->exe = g_file_read_link ("/proc/self/exe", NULL);
  if (b->exe == NULL || g_str_has_suffix (b->exe, " (deleted)"))
    {
      g_free (b->exe);
      b->exe = g_strdup ("/proc/self/exe");
    }
  b->run_id = g_strdup_printf ("%08x", g_random_int ());
  return TRUE;
}

static void
bench_clear (Bench *b)
{
  if (b->relay != NULL)
    {
      tlspyo_relay_stop (b->relay);
      g_clear_object (&b->relay);
    }
  g_clear_pointer (&b->relay_player, player_free);
  if (b->state_dir != NULL)
    remove_dir (b->state_dir);
  g_free (b->state_dir);
  if (b->password != NULL)
    memset (b->password, 0, strlen (b->password));
  g_free (b->password);
  if (b->tmp_dir != NULL)
    remove_dir (b->tmp_dir);
  g_free (b->tmp_dir);
  g_free (b->credentials_dir);
  g_free (b->exe);
  g_free (b->host);
  g_free (b->run_id);
}

static void
progress (Bench      *b,
          const char *what)
{
  if (!b->o->json && isatty (STDERR_FILENO))
    g_printerr ("running %s...\n", what);
}

int
tlspyo_cli_bench (int    argc,
                  char **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GPtrArray) results = g_ptr_array_new_with_free_func ((GDestroyNotify) case_result_free);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) cases = NULL;
  BenchOptions o;
  Workload w;
  Bench b = { 0, };
  guint sigint_id, sigterm_id;
  gboolean ok = TRUE;
  int status;

  g_return_val_if_fail (argc >= 1 && argv != NULL, TLSPYO_CLI_EXIT_USAGE);

  bench_options_init (&o);
  context = bench_option_context_new (&o);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    {
      bench_options_clear (&o);
      return status;
    }

  /* A player writing to a conductor that died, or the reverse, must see
   * an error, not be killed by SIGPIPE. */
  signal (SIGPIPE, SIG_IGN);

  if (o.role != NULL)
    {
      status = role_run (&o, STDIN_FILENO, STDOUT_FILENO);
      bench_options_clear (&o);
      return status;
    }

  if (!bench_setup_workload (&o, &w, &cases, &error) || !bench_setup (&b, &o, &error))
    {
      bench_clear (&b);
      bench_options_clear (&o);
      return tlspyo_cli_report (error);
    }
  raise_nofile_limit ();
  /* The players' messages are kept for failure reports; the conductor's
   * own relay or endpoints would log every connection. */
  tlspyo_cli_set_verbose (o.verbose, TRUE);

  sigint_id = g_unix_signal_add (SIGINT, interrupt_cb, NULL);
  sigterm_id = g_unix_signal_add (SIGTERM, interrupt_cb, NULL);

  for (guint i = 0; cases[i] != NULL && !g_atomic_int_get (&bench_interrupted); i++)
    {
      const char *name = cases[i];

      progress (&b, name);
      if (g_str_equal (name, "produce"))
        g_ptr_array_add (results, case_produce (&b, &w));
      else if (g_str_equal (name, "broadcast"))
        g_ptr_array_add (results, case_broadcast (&b, &w));
      else if (g_str_equal (name, "latency"))
        g_ptr_array_add (results, case_latency (&b, &w));
      else if (g_str_equal (name, "large"))
        {
          g_ptr_array_add (results, case_large_one (&b, &w, MIB));
          if (!g_atomic_int_get (&bench_interrupted))
            g_ptr_array_add (results, case_large_one (&b, &w, 64 * MIB));
        }
      else if (g_str_equal (name, "connect"))
        g_ptr_array_add (results, case_connect (&b, &w));
      else if (g_str_equal (name, "fanin"))
        g_ptr_array_add (results, case_fanin (&b, &w));
    }

  for (guint i = 0; i < results->len; i++)
    ok = ok && ((CaseResult *) g_ptr_array_index (results, i))->ok;
  if (g_atomic_int_get (&bench_interrupted))
    ok = FALSE;

  if (o.json)
    print_json (&b, results, ok);
  else
    print_table (&b, results);
  if (g_atomic_int_get (&bench_interrupted))
    tlspyo_cli_printerr ("bench interrupted: the cases not run are missing from the results");

  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  bench_clear (&b);
  bench_options_clear (&o);
  return ok ? TLSPYO_CLI_EXIT_OK : TLSPYO_CLI_EXIT_FAILURE;
}
