/* SPDX-License-Identifier: MIT */
#pragma once

#define __TLSPYO_INSIDE__

#include <tlspyo-glib/tlspyo-version.h>
#include <tlspyo-glib/tlspyo-version-macros.h>
#include <tlspyo-glib/tlspyo-types.h>
#include <tlspyo-glib/tlspyo-error.h>
#include <tlspyo-glib/tlspyo-enums.h>
#include <tlspyo-glib/tlspyo-credentials.h>
#include <tlspyo-glib/tlspyo-relay.h>
#include <tlspyo-glib/tlspyo-endpoint.h>

#undef __TLSPYO_INSIDE__
