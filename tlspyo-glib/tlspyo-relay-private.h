/* SPDX-License-Identifier: MIT */
#pragma once

/* Ways into a relay for tests and fuzzing: its protocol driven over any
 * stream (memory, pipes), without a listening socket. */

#include "tlspyo-relay.h"

G_BEGIN_DECLS

/* Before tlspyo_relay_start(): FALSE starts the relay without listening. */
void  tlspyo_relay_set_listening  (TlspyoRelay *self,
                                   gboolean     listening);
/* Serves @stream as a new connection from @address (a description such as
 * "192.0.2.1:4000", also the key of per-address limits). With TLS the
 * relay runs the server handshake on it. The relay must be running. */
void  tlspyo_relay_accept_stream  (TlspyoRelay *self,
                                   GIOStream   *stream,
                                   const char  *address);
/* Connections the relay holds, joined or not, including ones closing. */
guint tlspyo_relay_get_n_peers    (TlspyoRelay *self);

G_END_DECLS
