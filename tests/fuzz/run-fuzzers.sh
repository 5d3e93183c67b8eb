#!/bin/sh
# Fuzzes each target with libFuzzer for a bounded time (60 s each by
# default), starting from its corpus in tests/fuzz/TARGET/. Needs clang and
# libclang-rt-14-dev. Configures BUILD-DIR (default _build-fuzz) on first use.
#
#   tests/fuzz/run-fuzzers.sh [SECONDS-PER-TARGET] [BUILD-DIR] [TARGET...]
#
# Inputs that found new coverage are kept in BUILD-DIR/fuzz-corpus/TARGET
# (reused by the next run, never written into the source tree); a crash
# leaves its input in BUILD-DIR/fuzz-artifacts/ and makes the script fail.
# Copy that input into tests/fuzz/TARGET/ (so every `meson test` replays
# it) and fix the bug.
set -u
cd "$(dirname "$0")/../.."

seconds=${1:-60}
build=${2:-_build-fuzz}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
targets=${*:-frame object handshake config}

if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzzing=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dintrospection=disabled -Dwerror=true -Dc_args=-fsanitize=fuzzer-no-link || exit 1
fi
meson compile -C "$build" || exit 1

mkdir -p "$build/fuzz-artifacts"
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
export G_DEBUG=fatal-criticals
export GIO_USE_PROXY_RESOLVER=dummy GSETTINGS_BACKEND=memory GIO_USE_VFS=local

status=0
for target in $targets; do
  corpus="$build/fuzz-corpus/$target"
  mkdir -p "$corpus"
  # The handshake target runs the relay on its worker thread, whose frees
  # lag the input: libFuzzer's per-input leak check would then scan the
  # heap after nearly every input (10 times slower). Leaks are still
  # looked for when the process exits, after the relay is stopped.
  extra=
  [ "$target" = handshake ] && extra=-detect_leaks=0
  echo "== fuzz-$target: $seconds s"
  if ! "$build/tests/fuzz/fuzz-$target" -max_total_time="$seconds" -timeout=30 \
         -rss_limit_mb=2048 -print_final_stats=1 $extra \
         -artifact_prefix="$build/fuzz-artifacts/$target-" \
         "$corpus" "tests/fuzz/$target"; then
    echo "fuzz-$target FAILED: its input is in $build/fuzz-artifacts/; add it to tests/fuzz/$target/ and fix the bug"
    status=1
  fi
done
exit $status
