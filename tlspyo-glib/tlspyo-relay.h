/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <gio/gio.h>
#include <tlspyo-glib/tlspyo-types.h>

G_BEGIN_DECLS

#define TLSPYO_TYPE_RELAY (tlspyo_relay_get_type ())

TLSPYO_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (TlspyoRelay, tlspyo_relay, TLSPYO, RELAY, GObject)

TLSPYO_AVAILABLE_IN_ALL
TlspyoRelay *tlspyo_relay_new          (guint         port,
                                        const char   *password);

TLSPYO_AVAILABLE_IN_ALL
void         tlspyo_relay_accept_group (TlspyoRelay  *self,
                                        const char   *group,
                                        int           max_count,
                                        int           max_consumables);

TLSPYO_AVAILABLE_IN_ALL
char        *tlspyo_relay_hash_password (const char  *password,
                                         guint        iterations,
                                         GError     **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean     tlspyo_relay_add_user     (TlspyoRelay  *self,
                                        const char   *name,
                                        const char   *password_hash,
                                        GError      **error);
TLSPYO_AVAILABLE_IN_ALL
void         tlspyo_relay_grant        (TlspyoRelay  *self,
                                        const char   *user,
                                        const char   *group,
                                        TlspyoRights  rights);

TLSPYO_AVAILABLE_IN_ALL
gboolean     tlspyo_relay_start        (TlspyoRelay  *self,
                                        GError      **error);

TLSPYO_AVAILABLE_IN_ALL
void         tlspyo_relay_stop         (TlspyoRelay  *self);

TLSPYO_AVAILABLE_IN_ALL
guint        tlspyo_relay_get_port     (TlspyoRelay  *self);

TLSPYO_AVAILABLE_IN_ALL
TlspyoSecurity tlspyo_relay_get_security (TlspyoRelay *self);

TLSPYO_AVAILABLE_IN_ALL
guint        tlspyo_relay_get_n_connections (TlspyoRelay *self);

TLSPYO_AVAILABLE_IN_ALL
GVariant    *tlspyo_relay_get_stats    (TlspyoRelay  *self);

G_END_DECLS
