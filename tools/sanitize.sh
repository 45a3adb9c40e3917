#!/usr/bin/env bash
# The test suite against agrad built with AddressSanitizer, LeakSanitizer and
# UndefinedBehaviorSanitizer (CMakeLists.txt's AGRAD_SANITIZE, a Debug build),
# installed in a venv of its own so the normal build is left alone.
#
#   bash tools/sanitize.sh                 # the default test files
#   bash tools/sanitize.sh tests/test_value.py -k chain   # anything pytest takes
#
# CPython is not built with ASan, so the runtime is preloaded; Python's own
# allocations go through malloc (PYTHONMALLOC=malloc) so ASan sees every
# object.  CPython leaves some memory unfreed at exit on purpose, so the leak
# check fails the run only for a leak whose allocation stack passes through
# agrad's compiled module; every other leak is counted and listed.
# Any ASan error (use after free, overflow...) or UBSan error stops the run.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
work=${AGRAD_SANITIZE_DIR:-$root/build/sanitize}
python=${PYTHON:-python3}
mkdir -p "$work"

step() { printf '\n=== %s [%ds]\n' "$*" "$SECONDS"; }

step "build the sanitized wheel (Debug, -fsanitize=address,undefined)"
rm -rf "$work/dist"
"$python" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$work/dist" \
    -Ccmake.define.AGRAD_SANITIZE=ON -Ccmake.build-type=Debug \
    -Cbuild-dir="$work/cmake" "$root"
wheel=$(echo "$work"/dist/agrad-*.whl)

step "install it in $work/venv"
[ -x "$work/venv/bin/python" ] || "$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel"
"$work/venv/bin/python" -m pip install -q "$wheel[test]"

if [ $# -eq 0 ]; then
    set -- tests/test_value.py tests/test_reliability.py tests/test_fuzz.py tests/test_linreg.py
fi

step "pytest under ASan+LSan+UBSan: $*"
libasan=$(gcc -print-file-name=libasan.so)
logs="$work/logs"
rm -rf "$logs" && mkdir -p "$logs"
status=0
# Leaks are judged below, from the report: exitcode=0 keeps CPython's own from
# failing the run by themselves.
LD_PRELOAD="$libasan" PYTHONMALLOC=malloc \
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:log_path=$logs/asan" \
    LSAN_OPTIONS="exitcode=0:report_objects=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan" \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -x -m "not slow" "$@" || status=$?

step "sanitizer reports"
report=0
"$python" - "$logs" <<'PY' || report=$?
import pathlib
import re
import sys

logs = sorted(pathlib.Path(sys.argv[1]).glob("*"))
text = "\n".join(p.read_text(errors="replace") for p in logs)
errors = re.findall(r"ERROR: AddressSanitizer: [^\n]*|runtime error: [^\n]*", text)
leaks = re.split(r"\n(?=(?:Direct|Indirect) leak of )", text)
leaks = [block for block in leaks if re.match(r"(Direct|Indirect) leak of ", block)]
ours = [block for block in leaks if re.search(r"_core\.cpython|agrad::|agrad_core", block)]
total = sum(int(re.match(r"\w+ leak of (\d+)", block).group(1)) for block in leaks)
print(f"ASan/UBSan errors: {len(errors)}")
for line in errors:
    print("  ", line)
print(f"leaks from CPython itself: {len(leaks) - len(ours)} blocks, {total} bytes in all")
print(f"leaks through agrad's module: {len(ours)}")
for block in ours:
    print(block)
sys.exit(1 if errors or ours else 0)
PY
if [ "$status" -ne 0 ] || [ "$report" -ne 0 ]; then
    echo "sanitized run FAILED (pytest exit $status, report exit $report); logs in $logs"
    exit 1
fi
echo "sanitized run clean"
