/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <gio/gio.h>
#include <tlspyo-glib/tlspyo-types.h>

G_BEGIN_DECLS

#define TLSPYO_TYPE_ENDPOINT (tlspyo_endpoint_get_type ())

TLSPYO_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (TlspyoEndpoint, tlspyo_endpoint, TLSPYO, ENDPOINT, GObject)

TLSPYO_AVAILABLE_IN_ALL
TlspyoEndpoint *tlspyo_endpoint_new            (const char          *host,
                                                guint                port,
                                                const char          *password,
                                                const char * const  *groups);

TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_start               (TlspyoEndpoint      *self,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_wait_connected      (TlspyoEndpoint      *self,
                                                int                  timeout_ms,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_flush               (TlspyoEndpoint      *self,
                                                int                  timeout_ms,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
void       tlspyo_endpoint_stop                (TlspyoEndpoint      *self);

TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_broadcast           (TlspyoEndpoint      *self,
                                                GVariant            *object,
                                                const char          *group,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_produce             (TlspyoEndpoint      *self,
                                                GVariant            *object,
                                                const char          *group,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_send_object         (TlspyoEndpoint      *self,
                                                GVariant            *object,
                                                GVariant            *destination,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_notify_ready        (TlspyoEndpoint      *self,
                                                const char          *group,
                                                int                  count,
                                                GError             **error);

TLSPYO_AVAILABLE_IN_ALL
GPtrArray *tlspyo_endpoint_pop                 (TlspyoEndpoint      *self,
                                                guint                max_items,
                                                int                  timeout_ms,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
GPtrArray *tlspyo_endpoint_get_last            (TlspyoEndpoint      *self,
                                                guint                max_items,
                                                int                  timeout_ms,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
GPtrArray *tlspyo_endpoint_receive_all         (TlspyoEndpoint      *self,
                                                int                  timeout_ms,
                                                GError             **error);
TLSPYO_AVAILABLE_IN_ALL
void       tlspyo_endpoint_pop_async           (TlspyoEndpoint      *self,
                                                guint                max_items,
                                                GCancellable        *cancellable,
                                                GAsyncReadyCallback  callback,
                                                gpointer             user_data);
TLSPYO_AVAILABLE_IN_ALL
GPtrArray *tlspyo_endpoint_pop_finish          (TlspyoEndpoint      *self,
                                                GAsyncResult        *result,
                                                GError             **error);

TLSPYO_AVAILABLE_IN_ALL
gboolean   tlspyo_endpoint_get_connected       (TlspyoEndpoint      *self);
TLSPYO_AVAILABLE_IN_ALL
guint      tlspyo_endpoint_get_n_queued        (TlspyoEndpoint      *self);

G_END_DECLS
