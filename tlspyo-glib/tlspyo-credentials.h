/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__TLSPYO_INSIDE__) && !defined(TLSPYO_COMPILATION)
#error "Only <tlspyo-glib/tlspyo-glib.h> can be included directly."
#endif

#include <gio/gio.h>
#include <tlspyo-glib/tlspyo-types.h>

G_BEGIN_DECLS

TLSPYO_AVAILABLE_IN_ALL
char     *tlspyo_credentials_get_default_dir (void);

TLSPYO_AVAILABLE_IN_ALL
gboolean  tlspyo_credentials_generate        (const char              *directory,
                                              const char              *common_name,
                                              GError                 **error);

TLSPYO_AVAILABLE_IN_ALL
gboolean  tlspyo_credentials_generate_full   (const char              *directory,
                                              const char              *common_name,
                                              TlspyoKeyType            key_type,
                                              guint                    days,
                                              TlspyoCredentialsFlags   flags,
                                              GError                 **error);

TLSPYO_AVAILABLE_IN_ALL
char     *tlspyo_credentials_get_fingerprint (GTlsCertificate         *certificate);

TLSPYO_AVAILABLE_IN_ALL
GTlsCertificate *tlspyo_credentials_load_certificate (const char      *directory,
                                                      gboolean         with_key,
                                                      GError         **error);

G_END_DECLS
