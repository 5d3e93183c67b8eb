/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "tlspyo-error.h"
#include "tlspyo-store-private.h"

/*
 * The durable relay's store.
 *
 * Durability: the database runs in WAL mode with synchronous=NORMAL. Once
 * tlspyo_store_commit() returns, the transaction is in the WAL file, in the
 * operating system's hands: it survives the relay being killed (SIGKILL, a
 * crash, an abort), which is what the relay promises. The WAL is only
 * flushed to the disk (fsync) at checkpoints, not at every commit, so a
 * power loss or a kernel crash may lose the last commits before the most
 * recent checkpoint; the database is never corrupted by it. synchronous=FULL
 * would close that window at the price of one disk flush per commit, that
 * is per main-loop dispatch of the relay, which on ordinary disks caps the
 * relay at a few hundred batches per second.
 *
 * One relay at a time: the store holds an flock() on DIRECTORY/lock while
 * it is open. flock() and not fcntl() locks: fcntl() locks belong to the
 * process, so a second relay in the same process would not see the first
 * one's, and closing any descriptor of the file would drop them.
 *
 * Bodies live in their own table: SQLite rewrites a whole row on UPDATE, so
 * moving an object in or out of flight (tlspyo_store_set_holder()) would
 * otherwise copy its body, up to max-object-size, each time.
 */

/* WAL file size kept after a checkpoint: a 64 MiB body makes the WAL grow
 * past it once, and this gives the space back. */
#define JOURNAL_SIZE_LIMIT 67108864  /* 64 MiB, spelled out for the SQL text */

typedef enum {
  STMT_BEGIN,
  STMT_COMMIT,
  STMT_ROLLBACK,
  STMT_PUT_OBJECT,
  STMT_PUT_BODY,
  STMT_REMOVE_OBJECT,
  STMT_REMOVE_BODY,
  STMT_SET_HOLDER,
  STMT_SET_LATEST,
  STMT_SET_SESSION,
  STMT_REMOVE_SESSION,
  STMT_SET_VALUE,
  STMT_GET_VALUE,
  STMT_LOAD_OBJECTS,
  STMT_LOAD_LATEST,
  STMT_LOAD_SESSIONS,
  N_STMTS
} StmtId;

static const char * const stmt_sql[N_STMTS] = {
  [STMT_BEGIN] = "BEGIN",
  [STMT_COMMIT] = "COMMIT",
  [STMT_ROLLBACK] = "ROLLBACK",
  /* A new object goes to the tail of its queue: ids only grow. */
  [STMT_PUT_OBJECT] = "INSERT INTO objects (id, grp, position, holder) VALUES (?1, ?2, ?1, NULL)",
  [STMT_PUT_BODY] = "INSERT INTO bodies (id, body) VALUES (?1, ?2)",
  [STMT_REMOVE_OBJECT] = "DELETE FROM objects WHERE id = ?1",
  [STMT_REMOVE_BODY] = "DELETE FROM bodies WHERE id = ?1",
  [STMT_SET_HOLDER] = "UPDATE objects SET holder = ?2, position = ?3 WHERE id = ?1",
  [STMT_SET_LATEST] = "INSERT INTO latest (grp, seq, body) VALUES (?1, ?2, ?3) "
                      "ON CONFLICT (grp) DO UPDATE SET seq = excluded.seq, body = excluded.body",
  [STMT_SET_SESSION] = "INSERT INTO sessions (id, next_seq) VALUES (?1, ?2) "
                       "ON CONFLICT (id) DO UPDATE SET next_seq = excluded.next_seq",
  [STMT_REMOVE_SESSION] = "DELETE FROM sessions WHERE id = ?1",
  [STMT_SET_VALUE] = "INSERT INTO state_values (key, value) VALUES (?1, ?2) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  [STMT_GET_VALUE] = "SELECT value FROM state_values WHERE key = ?1",
  [STMT_LOAD_OBJECTS] = "SELECT o.id, o.grp, b.body, o.holder, o.position "
                        "FROM objects o JOIN bodies b ON b.id = o.id "
                        "ORDER BY o.grp, o.position, o.id",
  [STMT_LOAD_LATEST] = "SELECT grp, seq, body FROM latest ORDER BY grp",
  [STMT_LOAD_SESSIONS] = "SELECT id, next_seq FROM sessions",
};

static const char schema_sql[] =
  "BEGIN IMMEDIATE;"
  "CREATE TABLE objects (id INTEGER PRIMARY KEY, grp TEXT NOT NULL,"
  "                      position INTEGER NOT NULL, holder BLOB);"
  "CREATE INDEX objects_queue ON objects (grp, position, id);"
  "CREATE TABLE bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
  "CREATE TABLE latest (grp TEXT PRIMARY KEY, seq INTEGER NOT NULL, body BLOB NOT NULL);"
  "CREATE TABLE sessions (id BLOB PRIMARY KEY, next_seq INTEGER NOT NULL) WITHOUT ROWID;"
  "CREATE TABLE state_values (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
  "PRAGMA user_version = " G_STRINGIFY (TLSPYO_STORE_SCHEMA_VERSION) ";"
  "COMMIT;";

struct _TlspyoStore {
  char         *directory;
  char         *path;     /* of the database */
  int           lock_fd;
  sqlite3      *db;
  sqlite3_stmt *stmts[N_STMTS];
  gboolean      ready;    /* opened completely: free() may commit */
  GError       *failure;  /* the first failed change since the last commit */
};

/* What to do about an SQLite error, for the end of a message. */
static const char *
sqlite_hint (int rc)
{
  switch (rc & 0xff)
    {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return "the file is damaged or is not a tlspyo-glib state database: move it away, "
             "with its -wal and -shm files, to start with an empty state, or restore a backup";
    case SQLITE_FULL:
      return "free some disk space";
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
      return "check that the relay's user may read and write the state directory and the "
             "files in it";
    case SQLITE_IOERR:
      return "check the disk and its file system";
    case SQLITE_TOOBIG:
      return "lower the relay's max-object-size";
    case SQLITE_NOMEM:
      return "the process ran out of memory";
    default:
      return NULL;
    }
}

static void
set_sqlite_error (GError     **error,
                  TlspyoStore *store,
                  int          rc,
                  const char  *doing)
{
  const char *hint = sqlite_hint (rc);
  const char *message = store->db != NULL ? sqlite3_errmsg (store->db) : sqlite3_errstr (rc);

  g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED, "Could not %s the relay's state "
               "database %s: %s%s%s", doing, store->path, message,
               hint ? ": " : "", hint ? hint : "");
}

static gboolean
fail_errno (GError     **error,
            int          saved_errno,
            TlspyoError  code,
            const char  *what,
            const char  *path,
            const char  *hint)
{
  g_set_error (error, TLSPYO_ERROR, code, "%s %s: %s: %s", what, path,
               g_strerror (saved_errno), hint);
  return FALSE;
}

static const char permission_hint[] =
  "give the relay's user the right to write in it (chown or chmod u+rwx), or choose "
  "another state directory";

/* For a folder that could not be looked at or created. */
static const char *
directory_hint (int saved_errno)
{
  if (saved_errno == ENOTDIR)
    return "a part of the path is a file, not a folder: choose another state directory";
  return permission_hint;
}

static gboolean
check_directory (const char  *directory,
                 GError     **error)
{
  GStatBuf st;

  if (g_stat (directory, &st) == 0)
    {
      if (!S_ISDIR (st.st_mode))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "The state directory %s is not a folder: give the path of a folder, "
                       "or of one to create", directory);
          return FALSE;
        }
      return TRUE;
    }
  if (errno != ENOENT)
    return fail_errno (error, errno, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "Cannot use the state directory", directory, directory_hint (errno));
  if (g_mkdir_with_parents (directory, 0700) != 0)
    return fail_errno (error, errno, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "Could not create the state directory", directory,
                       directory_hint (errno));
  return TRUE;
}

/* One relay per folder: the lock is held until the store is freed. The
 * file keeps the holder's pid, only to name it in the error. It is never
 * removed: removing it would let two relays lock two different files. */
static gboolean
take_lock (TlspyoStore  *store,
           GError      **error)
{
  g_autofree char *lock_path = g_build_filename (store->directory, TLSPYO_STORE_LOCK_NAME, NULL);
  char pid[32];
  int len;

  store->lock_fd = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (store->lock_fd < 0)
    {
      int saved_errno = errno;

      if (saved_errno == EACCES || saved_errno == EPERM || saved_errno == EROFS)
        return fail_errno (error, saved_errno, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "Cannot write in the state directory", store->directory,
                           permission_hint);
      return fail_errno (error, saved_errno, TLSPYO_ERROR_FAILED,
                         "Could not open the lock file", lock_path,
                         "remove it if it is not a regular file, or choose another state "
                         "directory");
    }

  if (flock (store->lock_fd, LOCK_EX | LOCK_NB) != 0)
    {
      int saved_errno = errno;
      char holder[32] = "";
      gssize n;

      if (saved_errno != EWOULDBLOCK)
        return fail_errno (error, saved_errno, TLSPYO_ERROR_FAILED,
                           "Could not lock", lock_path,
                           "the file system may not support locks: choose a state directory "
                           "on a local disk");
      n = pread (store->lock_fd, holder, sizeof holder - 1, 0);
      holder[MAX (n, 0)] = '\0';
      g_strchomp (holder);
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "The state directory %s is in use by another relay%s%s%s: give each relay "
                   "its own state directory, or stop the other one first", store->directory,
                   *holder ? " (process " : "", holder, *holder ? ")" : "");
      return FALSE;
    }

  len = g_snprintf (pid, sizeof pid, "%ld\n", (long) getpid ());
  if (ftruncate (store->lock_fd, 0) != 0 || pwrite (store->lock_fd, pid, len, 0) != len)
    return fail_errno (error, errno, TLSPYO_ERROR_FAILED, "Could not write the lock file",
                       lock_path, "check the disk and its free space");
  return TRUE;
}

/* Reads one integer PRAGMA or query result. */
static gboolean
query_int (TlspyoStore  *store,
           const char   *sql,
           const char   *doing,
           gint64       *value,
           char        **text,
           GError      **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc;

  rc = sqlite3_prepare_v2 (store->db, sql, -1, &stmt, NULL);
  if (rc == SQLITE_OK)
    {
      rc = sqlite3_step (stmt);
      if (rc == SQLITE_ROW)
        {
          if (value != NULL)
            *value = sqlite3_column_int64 (stmt, 0);
          if (text != NULL)
            *text = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
          rc = SQLITE_OK;
        }
    }
  if (rc != SQLITE_OK)
    set_sqlite_error (error, store, rc, doing);
  sqlite3_finalize (stmt);
  return rc == SQLITE_OK;
}

static gboolean
open_database (TlspyoStore  *store,
               GError      **error)
{
  gint64 version = 0;
  gint64 n_tables = 0;
  g_autofree char *mode = NULL;
  char *message = NULL;
  int fd;
  int rc;

  /* Created here rather than by SQLite, which would use mode 0644: the
   * database holds the objects users send, and its -wal and -shm files
   * take the database's mode. An empty file is an empty database. */
  fd = open (store->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      int saved_errno = errno;

      return fail_errno (error, saved_errno,
                         saved_errno == EACCES ? TLSPYO_ERROR_INVALID_ARGUMENT : TLSPYO_ERROR_FAILED,
                         "Could not open the relay's state database", store->path,
                         saved_errno == EACCES ? permission_hint
                                               : "move it away if it is not a file, or choose "
                                                 "another state directory");
    }
  close (fd);

  rc = sqlite3_open_v2 (store->path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL);
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, store, rc, "open");
      return FALSE;
    }
  sqlite3_db_config (store->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

  /* The version first, before this code writes anything into a database
   * it may not understand (even the switch to WAL). */
  if (!query_int (store, "PRAGMA user_version", "read", &version, NULL, error))
    return FALSE;
  if (version > TLSPYO_STORE_SCHEMA_VERSION)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "The relay's state database %s was written by a newer tlspyo-glib (schema "
                   "version %" G_GINT64_FORMAT ", this one reads up to %d): run the newer "
                   "version, or move the state directory away to start with an empty state",
                   store->path, version, TLSPYO_STORE_SCHEMA_VERSION);
      return FALSE;
    }
  if (version < 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "The relay's state database %s is not a tlspyo-glib state database (schema "
                   "version %" G_GINT64_FORMAT "): move it away, or choose another state "
                   "directory", store->path, version);
      return FALSE;
    }

  if (!query_int (store, "PRAGMA journal_mode = WAL", "switch to WAL", NULL, &mode, error))
    return FALSE;
  if (g_ascii_strcasecmp (mode, "wal") != 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "The relay's state database %s cannot use a write-ahead log (journal mode "
                   "is %s): put the state directory on a local file system", store->path, mode);
      return FALSE;
    }
  rc = sqlite3_exec (store->db, "PRAGMA synchronous = NORMAL;"
                     "PRAGMA journal_size_limit = " G_STRINGIFY (JOURNAL_SIZE_LIMIT) ";",
                     NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, store, rc, "configure");
      return FALSE;
    }

  if (version == 0)
    {
      if (!query_int (store, "SELECT count(*) FROM sqlite_master", "read", &n_tables, NULL,
                      error))
        return FALSE;
      if (n_tables > 0)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                       "%s is an SQLite database, but not a tlspyo-glib state database: move "
                       "it away, or choose another state directory", store->path);
          return FALSE;
        }
      rc = sqlite3_exec (store->db, schema_sql, NULL, NULL, &message);
      if (rc != SQLITE_OK)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                       "Could not create the tables of the relay's state database %s: %s%s%s",
                       store->path, message ? message : sqlite3_errstr (rc),
                       sqlite_hint (rc) ? ": " : "", sqlite_hint (rc) ? sqlite_hint (rc) : "");
          sqlite3_free (message);
          return FALSE;
        }
    }

  for (guint i = 0; i < N_STMTS; i++)
    {
      rc = sqlite3_prepare_v3 (store->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->stmts[i], NULL);
      if (rc != SQLITE_OK)
        {
          /* A schema that lacks what this version reads: damaged, or
           * edited by hand. */
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                       "The relay's state database %s is damaged or is not a tlspyo-glib state "
                       "database (%s): move it away, with its -wal and -shm files, to start "
                       "with an empty state, or restore a backup",
                       store->path, sqlite3_errmsg (store->db));
          return FALSE;
        }
    }
  return TRUE;
}

/**
 * tlspyo_store_open:
 * @directory: the relay's state directory
 * @error: return location for a #GError
 *
 * Opens the store in @directory, creating the folder (mode 0700, with its
 * parents) and the database `relay.db` in it if they are missing, and locks
 * the folder against other relays until tlspyo_store_free().
 *
 * Errors are in the %TLSPYO_ERROR domain: %TLSPYO_ERROR_INVALID_ARGUMENT
 * when @directory cannot work as a state directory (it is a file, it cannot
 * be created, the relay may not write in it), %TLSPYO_ERROR_FAILED when
 * another relay uses it, or the database is damaged, foreign or of a newer
 * schema. The message names the path and says what to do.
 *
 * Returns: (transfer full): the store, or %NULL with @error set
 */
TlspyoStore *
tlspyo_store_open (const char  *directory,
                   GError     **error)
{
  g_autoptr(TlspyoStore) store = NULL;

  g_return_val_if_fail (directory != NULL && *directory != '\0', NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  store = g_new0 (TlspyoStore, 1);
  store->lock_fd = -1;
  store->directory = g_strdup (directory);
  store->path = g_build_filename (directory, TLSPYO_STORE_DATABASE_NAME, NULL);

  if (!check_directory (directory, error) ||
      !take_lock (store, error) ||
      !open_database (store, error))
    return NULL;

  store->ready = TRUE;
  return g_steal_pointer (&store);
}

/**
 * tlspyo_store_free:
 * @store: (nullable): a store
 *
 * Commits what is pending (a failure is logged as a warning: nobody is left
 * to tell), closes the database and releases the folder's lock.
 */
void
tlspyo_store_free (TlspyoStore *store)
{
  if (store == NULL)
    return;

  if (store->ready && tlspyo_store_has_pending (store))
    {
      g_autoptr(GError) error = NULL;

      if (!tlspyo_store_commit (store, &error))
        g_warning ("Closing the relay's state: %s", error->message);
    }
  for (guint i = 0; i < N_STMTS; i++)
    sqlite3_finalize (store->stmts[i]);
  /* Even after a failed open: SQLite allocates the handle regardless. */
  sqlite3_close (store->db);
  if (store->lock_fd >= 0)
    close (store->lock_fd);  /* releases the flock() */
  g_clear_error (&store->failure);
  g_free (store->path);
  g_free (store->directory);
  g_free (store);
}

/* Remembers the first failure of a batch; later changes of the batch are
 * skipped, since the whole batch is discarded at the commit anyway, and
 * after an I/O error SQLite may already have rolled it back, which would
 * make each later change a transaction of its own. */
static void
store_failv (TlspyoStore *store,
             int          rc,
             const char  *format,
             va_list      args) G_GNUC_PRINTF (3, 0);

static void
store_failv (TlspyoStore *store,
             int          rc,
             const char  *format,
             va_list      args)
{
  g_autofree char *doing = NULL;

  if (store->failure != NULL)
    return;
  doing = g_strdup_vprintf (format, args);
  set_sqlite_error (&store->failure, store, rc, doing);
}

static void
store_fail (TlspyoStore *store,
            int          rc,
            const char  *format,
            ...) G_GNUC_PRINTF (3, 4);

static void
store_fail (TlspyoStore *store,
            int          rc,
            const char  *format,
            ...)
{
  va_list args;

  va_start (args, format);
  store_failv (store, rc, format, args);
  va_end (args);
}

/* Resets a statement after its step: the bindings are dropped before the
 * caller's GBytes may go, as SQLITE_STATIC requires. */
static int
store_step (sqlite3_stmt *stmt)
{
  int rc = sqlite3_step (stmt);

  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  return rc;
}

/* Whether a change may go ahead: no failure in this batch, and the batch's
 * transaction is open. */
static gboolean
store_begin (TlspyoStore *store)
{
  int rc;

  if (store->failure != NULL)
    return FALSE;
  if (!sqlite3_get_autocommit (store->db))
    return TRUE;
  rc = sqlite3_step (store->stmts[STMT_BEGIN]);
  if (rc != SQLITE_DONE)
    store_fail (store, rc, "begin a transaction in");
  sqlite3_reset (store->stmts[STMT_BEGIN]);
  return rc == SQLITE_DONE;
}

/* Binds a body without copying it: it must stay alive until the statement
 * is reset, which run_change() does right after the step. */
static int
bind_body (sqlite3_stmt *stmt,
           int           index,
           GBytes       *body)
{
  gsize size;
  gconstpointer data = g_bytes_get_data (body, &size);

  /* A NULL pointer would bind SQL NULL, not an empty blob. */
  if (size == 0)
    return sqlite3_bind_zeroblob (stmt, index, 0);
  return sqlite3_bind_blob64 (stmt, index, data, size, SQLITE_STATIC);
}

static gboolean
run_change (TlspyoStore *store,
            StmtId       id,
            int          bind_rc,
            const char  *format,
            ...) G_GNUC_PRINTF (4, 5);

/* Runs a change statement whose parameters are bound (@bind_rc: how the
 * binding that can fail went); on failure, remembers what it was doing. */
static gboolean
run_change (TlspyoStore *store,
            StmtId       id,
            int          bind_rc,
            const char  *format,
            ...)
{
  sqlite3_stmt *stmt = store->stmts[id];
  int rc = bind_rc == SQLITE_OK ? sqlite3_step (stmt) : bind_rc;

  /* Before the reset, which clears the message. */
  if (rc != SQLITE_DONE)
    {
      va_list args;

      va_start (args, format);
      store_failv (store, rc, format, args);
      va_end (args);
    }
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  return rc == SQLITE_DONE;
}

/**
 * tlspyo_store_put_object:
 * @store: a store
 * @id: the object's id, unique in the store
 * @group: the group whose queue it is in
 * @body: the object, as the relay forwards it
 *
 * Adds a produced object at the tail of @group's queue, not in flight. Its
 * position is its id: ids grow, so a new object sorts after every object
 * put before it. @body is not copied before the change is written.
 */
void
tlspyo_store_put_object (TlspyoStore *store,
                         guint64      id,
                         const char  *group,
                         GBytes      *body)
{
  sqlite3_stmt *stmt;
  int rc;

  g_return_if_fail (store != NULL);
  g_return_if_fail (group != NULL);
  g_return_if_fail (body != NULL);

  if (!store_begin (store))
    return;
  stmt = store->stmts[STMT_PUT_OBJECT];
  sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) id);
  rc = sqlite3_bind_text (stmt, 2, group, -1, SQLITE_STATIC);
  if (!run_change (store, STMT_PUT_OBJECT, rc, "store object %" G_GUINT64_FORMAT " in", id))
    return;
  stmt = store->stmts[STMT_PUT_BODY];
  sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) id);
  rc = bind_body (stmt, 2, body);
  run_change (store, STMT_PUT_BODY, rc, "store object %" G_GUINT64_FORMAT " (%" G_GSIZE_FORMAT
              " bytes) in", id, g_bytes_get_size (body));
}

/**
 * tlspyo_store_remove_object:
 * @store: a store
 * @id: an object's id
 *
 * Removes an object: it was taken, or dropped. Removing an object that is
 * not stored does nothing.
 */
void
tlspyo_store_remove_object (TlspyoStore *store,
                            guint64      id)
{
  g_return_if_fail (store != NULL);

  if (!store_begin (store))
    return;
  sqlite3_bind_int64 (store->stmts[STMT_REMOVE_OBJECT], 1, (sqlite3_int64) id);
  if (!run_change (store, STMT_REMOVE_OBJECT, SQLITE_OK, "remove object %" G_GUINT64_FORMAT " from",
                   id))
    return;
  sqlite3_bind_int64 (store->stmts[STMT_REMOVE_BODY], 1, (sqlite3_int64) id);
  run_change (store, STMT_REMOVE_BODY, SQLITE_OK, "remove object %" G_GUINT64_FORMAT " from", id);
}

/**
 * tlspyo_store_set_holder:
 * @store: a store
 * @id: a stored object's id
 * @session: (nullable) (array fixed-size=16): the session of the consumer
 *   the object is in flight to, or %NULL: back in its queue
 * @position: where the object sorts in its queue (lower first; an object
 *   put back at the head gets one below the queue's first)
 *
 * Moves an object in or out of flight. An object that is not stored makes
 * the next commit fail: the relay and its store disagree.
 */
void
tlspyo_store_set_holder (TlspyoStore  *store,
                         guint64       id,
                         const guint8 *session,
                         gint64        position)
{
  sqlite3_stmt *stmt;

  g_return_if_fail (store != NULL);

  if (!store_begin (store))
    return;
  stmt = store->stmts[STMT_SET_HOLDER];
  sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) id);
  if (session != NULL)
    sqlite3_bind_blob (stmt, 2, session, TLSPYO_SESSION_ID_SIZE, SQLITE_STATIC);
  else
    sqlite3_bind_null (stmt, 2);
  sqlite3_bind_int64 (stmt, 3, position);
  if (!run_change (store, STMT_SET_HOLDER, SQLITE_OK, "move object %" G_GUINT64_FORMAT " in", id))
    return;
  if (sqlite3_changes (store->db) == 0 && store->failure == NULL)
    g_set_error (&store->failure, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                 "Could not move object %" G_GUINT64_FORMAT " in the relay's state database "
                 "%s: it is not stored (a bug in the relay: please report it)", id, store->path);
}

/**
 * tlspyo_store_set_latest:
 * @store: a store
 * @group: a group
 * @seq: the broadcast's sequence number in @group
 * @body: the broadcast
 *
 * Replaces @group's latest broadcast.
 */
void
tlspyo_store_set_latest (TlspyoStore *store,
                         const char  *group,
                         guint64      seq,
                         GBytes      *body)
{
  sqlite3_stmt *stmt;
  int rc;

  g_return_if_fail (store != NULL);
  g_return_if_fail (group != NULL);
  g_return_if_fail (body != NULL);

  if (!store_begin (store))
    return;
  stmt = store->stmts[STMT_SET_LATEST];
  sqlite3_bind_text (stmt, 1, group, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) seq);
  rc = bind_body (stmt, 3, body);
  run_change (store, STMT_SET_LATEST, rc, "store the latest broadcast of group “%s” in", group);
}

/**
 * tlspyo_store_set_session:
 * @store: a store
 * @session: (array fixed-size=16): an endpoint's session id
 * @next_seq: the sequence number the relay expects next from it
 *
 * Adds or updates an endpoint session, for duplicate detection after a
 * restart.
 */
void
tlspyo_store_set_session (TlspyoStore  *store,
                          const guint8 *session,
                          guint64       next_seq)
{
  sqlite3_stmt *stmt;

  g_return_if_fail (store != NULL);
  g_return_if_fail (session != NULL);

  if (!store_begin (store))
    return;
  stmt = store->stmts[STMT_SET_SESSION];
  sqlite3_bind_blob (stmt, 1, session, TLSPYO_SESSION_ID_SIZE, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) next_seq);
  run_change (store, STMT_SET_SESSION, SQLITE_OK, "store an endpoint session in");
}

/**
 * tlspyo_store_remove_session:
 * @store: a store
 * @session: (array fixed-size=16): an endpoint's session id
 *
 * Forgets a session. Forgetting one that is not stored does nothing.
 */
void
tlspyo_store_remove_session (TlspyoStore  *store,
                             const guint8 *session)
{
  g_return_if_fail (store != NULL);
  g_return_if_fail (session != NULL);

  if (!store_begin (store))
    return;
  sqlite3_bind_blob (store->stmts[STMT_REMOVE_SESSION], 1, session, TLSPYO_SESSION_ID_SIZE,
                     SQLITE_STATIC);
  run_change (store, STMT_REMOVE_SESSION, SQLITE_OK, "remove an endpoint session from");
}

/**
 * tlspyo_store_set_value:
 * @store: a store
 * @key: a name
 * @value: its value
 *
 * Sets a named counter, such as the next object id.
 */
void
tlspyo_store_set_value (TlspyoStore *store,
                        const char  *key,
                        guint64      value)
{
  sqlite3_stmt *stmt;

  g_return_if_fail (store != NULL);
  g_return_if_fail (key != NULL);

  if (!store_begin (store))
    return;
  stmt = store->stmts[STMT_SET_VALUE];
  sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) value);
  run_change (store, STMT_SET_VALUE, SQLITE_OK, "store the value “%s” in", key);
}

/**
 * tlspyo_store_get_value:
 * @store: a store
 * @key: a name
 * @value: (out): where to store its value
 *
 * Reads a named counter, pending changes included. A read failure is
 * reported by the next commit.
 *
 * Returns: %TRUE if @key has a value
 */
gboolean
tlspyo_store_get_value (TlspyoStore *store,
                        const char  *key,
                        guint64     *value)
{
  sqlite3_stmt *stmt;
  gboolean found = FALSE;
  int rc;

  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);

  stmt = store->stmts[STMT_GET_VALUE];
  sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
  rc = sqlite3_step (stmt);
  if (rc == SQLITE_ROW)
    {
      *value = (guint64) sqlite3_column_int64 (stmt, 0);
      found = TRUE;
    }
  else if (rc != SQLITE_DONE)
    store_fail (store, rc, "read the value “%s” from", key);
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  return found;
}

/**
 * tlspyo_store_has_pending:
 * @store: a store
 *
 * Returns: %TRUE if changes (or a failure) wait for tlspyo_store_commit()
 */
gboolean
tlspyo_store_has_pending (TlspyoStore *store)
{
  g_return_val_if_fail (store != NULL, FALSE);

  return store->failure != NULL || !sqlite3_get_autocommit (store->db);
}

static void
store_rollback (TlspyoStore *store)
{
  if (!sqlite3_get_autocommit (store->db))
    store_step (store->stmts[STMT_ROLLBACK]);
}

/**
 * tlspyo_store_commit:
 * @store: a store
 * @error: return location for a #GError
 *
 * Writes the changes made since the last commit, all or none: when one of
 * them failed, or the commit itself does, none is kept and @error says why
 * (%TLSPYO_ERROR_FAILED, naming the database). The next change begins a new
 * batch. Committing nothing does nothing.
 *
 * Returns: %TRUE if the changes are written
 */
gboolean
tlspyo_store_commit (TlspyoStore  *store,
                     GError      **error)
{
  int rc;

  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (store->failure != NULL)
    {
      store_rollback (store);
      g_propagate_error (error, g_steal_pointer (&store->failure));
      return FALSE;
    }
  if (sqlite3_get_autocommit (store->db))
    return TRUE;

  rc = sqlite3_step (store->stmts[STMT_COMMIT]);
  if (rc != SQLITE_DONE)
    set_sqlite_error (error, store, rc, "commit changes to");
  sqlite3_reset (store->stmts[STMT_COMMIT]);
  if (rc != SQLITE_DONE)
    {
      /* A failed COMMIT may leave the transaction open (SQLITE_BUSY);
       * keeping it would mix this batch into the next. */
      store_rollback (store);
      return FALSE;
    }
  return TRUE;
}

static GBytes *
column_bytes (sqlite3_stmt *stmt,
              int           column)
{
  const void *data = sqlite3_column_blob (stmt, column);
  int size = sqlite3_column_bytes (stmt, column);

  return g_bytes_new (data, size);
}

/* A session id column: NULL for SQL NULL, FALSE if it has the wrong size. */
static gboolean
column_session (sqlite3_stmt  *stmt,
                int            column,
                const guint8 **session)
{
  *session = NULL;
  if (sqlite3_column_type (stmt, column) == SQLITE_NULL)
    return TRUE;
  *session = sqlite3_column_blob (stmt, column);
  return sqlite3_column_bytes (stmt, column) == TLSPYO_SESSION_ID_SIZE;
}

static gboolean
fail_damaged (TlspyoStore  *store,
              const char   *what,
              GError      **error)
{
  g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
               "The relay's state database %s is damaged (%s): move it away, with its -wal and "
               "-shm files, to start with an empty state, or restore a backup",
               store->path, what);
  return FALSE;
}

/* Reads one row of a load statement into @funcs; FALSE with @error set
 * when the row is damaged. */
typedef gboolean (*LoadRowFunc) (TlspyoStore                *store,
                                 sqlite3_stmt               *stmt,
                                 const TlspyoStoreLoadFuncs *funcs,
                                 gpointer                    user_data,
                                 GError                    **error);

static gboolean
load_object_row (TlspyoStore                *store,
                 sqlite3_stmt               *stmt,
                 const TlspyoStoreLoadFuncs *funcs,
                 gpointer                    user_data,
                 GError                    **error)
{
  g_autoptr(GBytes) body = NULL;
  const guint8 *holder;

  if (!column_session (stmt, 3, &holder))
    return fail_damaged (store, "an object's holder is not a session id", error);
  body = column_bytes (stmt, 2);
  funcs->object ((guint64) sqlite3_column_int64 (stmt, 0),
                 (const char *) sqlite3_column_text (stmt, 1), body, holder,
                 sqlite3_column_int64 (stmt, 4), user_data);
  return TRUE;
}

static gboolean
load_latest_row (TlspyoStore                *store,
                 sqlite3_stmt               *stmt,
                 const TlspyoStoreLoadFuncs *funcs,
                 gpointer                    user_data,
                 GError                    **error)
{
  g_autoptr(GBytes) body = column_bytes (stmt, 2);

  funcs->latest ((const char *) sqlite3_column_text (stmt, 0),
                 (guint64) sqlite3_column_int64 (stmt, 1), body, user_data);
  return TRUE;
}

static gboolean
load_session_row (TlspyoStore                *store,
                  sqlite3_stmt               *stmt,
                  const TlspyoStoreLoadFuncs *funcs,
                  gpointer                    user_data,
                  GError                    **error)
{
  const guint8 *session;

  if (!column_session (stmt, 0, &session) || session == NULL)
    return fail_damaged (store, "a session id has the wrong size", error);
  funcs->session (session, (guint64) sqlite3_column_int64 (stmt, 1), user_data);
  return TRUE;
}

/* Steps statement @id to its end, calling @row for each row, and resets
 * it; @doing names what it reads, for the error. */
static gboolean
load_rows (TlspyoStore                *store,
           StmtId                      id,
           LoadRowFunc                 row,
           const char                 *doing,
           const TlspyoStoreLoadFuncs *funcs,
           gpointer                    user_data,
           GError                    **error)
{
  sqlite3_stmt *stmt = store->stmts[id];
  gboolean ok = TRUE;
  int rc = SQLITE_DONE;

  while (ok && (rc = sqlite3_step (stmt)) == SQLITE_ROW)
    ok = row (store, stmt, funcs, user_data, error);
  /* Before the reset, which clears the message. */
  if (ok && rc != SQLITE_DONE)
    {
      set_sqlite_error (error, store, rc, doing);
      ok = FALSE;
    }
  sqlite3_reset (stmt);
  return ok;
}

/**
 * tlspyo_store_load:
 * @store: a store
 * @funcs: what to call for each stored item
 * @user_data: passed to @funcs
 * @error: return location for a #GError
 *
 * Reads everything back, as the relay does at start, pending changes
 * included: the objects of each group in queue order (position, then id)
 * with their holders, then the latest broadcasts, then the sessions.
 *
 * Returns: %TRUE, or %FALSE with @error set (%TLSPYO_ERROR_FAILED: the
 *   database could not be read, or is damaged)
 */
gboolean
tlspyo_store_load (TlspyoStore                *store,
                   const TlspyoStoreLoadFuncs *funcs,
                   gpointer                    user_data,
                   GError                    **error)
{
  gboolean ok = TRUE;

  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (funcs != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (funcs->object != NULL)
    ok = load_rows (store, STMT_LOAD_OBJECTS, load_object_row, "read the objects from",
                    funcs, user_data, error);
  if (ok && funcs->latest != NULL)
    ok = load_rows (store, STMT_LOAD_LATEST, load_latest_row, "read the latest broadcasts from",
                    funcs, user_data, error);
  if (ok && funcs->session != NULL)
    ok = load_rows (store, STMT_LOAD_SESSIONS, load_session_row, "read the sessions from",
                    funcs, user_data, error);
  return ok;
}
