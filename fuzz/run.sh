#!/usr/bin/env bash
# make fuzz: builds the fuzz targets with AFL++ (cargo-afl, installed if it
# is missing) and runs each for FUZZ_SECS seconds (default 60), starting from
# the committed corpus. Ends with one line per target: execs, edges, crashes.
# A crash is minimised and saved under fuzz/crashes/TARGET/.
# FUZZ_TARGETS picks targets (default: all four).
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-60}
targets=${FUZZ_TARGETS:-head resolve listing cli}
command -v cargo-afl >/dev/null || cargo install cargo-afl
cargo afl build --release
# No CPU governor or core pattern to tune on a shared machine; no screen.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
mkdir -p out
summary=()
for t in $targets; do
  rm -rf "out/$t"
  cargo afl fuzz -i "corpus/$t" -o "out/$t" -V "$secs" "target/release/$t" >"out/$t.log" 2>&1 || {
    echo "fuzz $t: afl-fuzz failed; see fuzz/out/$t.log" >&2
    tail -n 20 "out/$t.log" >&2
    exit 1
  }
  stats="out/$t/default/fuzzer_stats"
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  for crash in "out/$t/default/crashes"/id*; do
    [ -e "$crash" ] || continue
    mkdir -p "crashes/$t"
    cargo afl tmin -i "$crash" -o "crashes/$t/$(basename "$crash" | tr ':,' '__')" -- "target/release/$t" >/dev/null 2>&1 || cp "$crash" "crashes/$t/"
  done
  summary+=("$t: $(stat execs_done) execs ($(stat execs_per_sec)/s) in ${secs} s, $(stat edges_found) edges, $(stat saved_crashes) crashes")
done
printf '%s\n' "${summary[@]}"
