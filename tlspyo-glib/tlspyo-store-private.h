/* SPDX-License-Identifier: MIT */
#pragma once

/* The durable relay's state (issue 5, item 4): queued and in-flight
 * produced objects, the latest broadcast of each group, the duplicate
 * detection state of endpoint sessions and a few counters, in an SQLite
 * database inside the relay's state directory. No GObject, no sockets: the
 * relay drives it from its worker thread only (one thread at a time; the
 * store takes no lock of its own), and the tests drive it directly.
 *
 * Changes are buffered in one transaction until tlspyo_store_commit(),
 * which the relay calls once per main-loop dispatch, so that a burst of
 * objects costs one commit and not one per object. */

#include <glib.h>

#include "tlspyo-frame-private.h"  /* TLSPYO_SESSION_ID_SIZE */

G_BEGIN_DECLS

/* PRAGMA user_version of the databases this code writes. A database with
 * a higher one was written by a newer tlspyo-glib and is refused. */
#define TLSPYO_STORE_SCHEMA_VERSION 1

/* The database and lock files inside the state directory. */
#define TLSPYO_STORE_DATABASE_NAME  "relay.db"
#define TLSPYO_STORE_LOCK_NAME      "lock"

typedef struct _TlspyoStore TlspyoStore;

TlspyoStore *tlspyo_store_open          (const char    *directory,
                                         GError       **error);
void         tlspyo_store_free          (TlspyoStore   *store);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoStore, tlspyo_store_free)

/* Changes: see tlspyo-store.c. Each one joins the open transaction (begun
 * by the first change after a commit); a failing one is remembered and
 * reported by the next commit, which then discards the whole batch. */
void     tlspyo_store_put_object     (TlspyoStore  *store,
                                      guint64       id,
                                      const char   *group,
                                      GBytes       *body);
void     tlspyo_store_remove_object  (TlspyoStore  *store,
                                      guint64       id);
void     tlspyo_store_set_holder     (TlspyoStore  *store,
                                      guint64       id,
                                      const guint8 *session,
                                      gint64        position);
void     tlspyo_store_set_latest     (TlspyoStore  *store,
                                      const char   *group,
                                      guint64       seq,
                                      GBytes       *body);
void     tlspyo_store_set_session    (TlspyoStore  *store,
                                      const guint8 *session,
                                      guint64       next_seq);
void     tlspyo_store_remove_session (TlspyoStore  *store,
                                      const guint8 *session);
void     tlspyo_store_set_value      (TlspyoStore  *store,
                                      const char   *key,
                                      guint64       value);
gboolean tlspyo_store_get_value      (TlspyoStore  *store,
                                      const char   *key,
                                      guint64      *value);

gboolean tlspyo_store_has_pending    (TlspyoStore  *store);
gboolean tlspyo_store_commit         (TlspyoStore  *store,
                                      GError      **error);

/* What tlspyo_store_load() reads back. Any member may be NULL to skip that
 * kind. Strings and session ids are valid during the call only; bodies are
 * new references the callee may keep. */
typedef struct {
  void (*object)  (guint64       id,
                   const char   *group,
                   GBytes       *body,
                   const guint8 *holder,
                   gint64        position,
                   gpointer      user_data);
  void (*latest)  (const char   *group,
                   guint64       seq,
                   GBytes       *body,
                   gpointer      user_data);
  void (*session) (const guint8 *session,
                   guint64       next_seq,
                   gpointer      user_data);
} TlspyoStoreLoadFuncs;

gboolean tlspyo_store_load           (TlspyoStore                *store,
                                      const TlspyoStoreLoadFuncs *funcs,
                                      gpointer                    user_data,
                                      GError                    **error);

G_END_DECLS
