#!/usr/bin/env bash
# Builds every fuzz target (or those named as arguments) and runs each for FUZZ_SECONDS
# (default 60) from the seed corpus in corpus/<target>. Exits non-zero if any target finds
# a crash, a panic or a slow input; libFuzzer saves the input under artifacts/<target>/.
#
# Environment:
#   FUZZ_SECONDS     how long each target runs (default 60)
#   FUZZ_SANITIZER   cargo fuzz's --sanitizer (default none: the code is safe Rust, see
#                    docs/fuzzing.md; `address` works too, slower)
#   FUZZ_TARGET_DIR  build directory (default /var/tmp/rolegate-fuzz-target, apart from the
#                    main build's so the fuzzing flags never invalidate its cache)
#   FUZZ_WORK        where the corpus grows (default fuzz/work, git-ignored); the seeds in
#                    corpus/ are only read
#
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
work="${FUZZ_WORK:-$PWD/work}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/rolegate-fuzz-target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# One build of every target, so the runs below only run.
cargo fuzz build --sanitizer "$sanitizer"

dict_of() {
  case "$1" in
    odata_*) echo dict/odata.dict ;;
    scim_*) echo dict/scim.dict ;;
    *) echo "dict/$1.dict" ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  args=(-max_total_time="$seconds" -timeout=10 -max_len=4096 -print_final_stats=1)
  dict="$(dict_of "$t")"
  if [ -f "$dict" ]; then
    args+=(-dict="$dict")
  fi
  echo "=== fuzz $t for ${seconds}s"
  # New inputs go to the first directory (the work copy); the seeds are read only.
  if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" "corpus/$t" -- "${args[@]}"; then
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed for: ${failed[*]} (a crashing input is under fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} target(s) ran ${seconds}s each without a crash"
