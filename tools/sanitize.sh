#!/usr/bin/env bash
# The test suite against agrad built with AddressSanitizer, LeakSanitizer and
# UndefinedBehaviorSanitizer (CMakeLists.txt's AGRAD_SANITIZE, a Debug build),
# installed in a venv of its own so the normal build is left alone.
#
#   bash tools/sanitize.sh                 # the default test files
#   bash tools/sanitize.sh tests/test_lifetime.py -k chain   # anything pytest takes
#   AGRAD_SANITIZE_FAST=1 bash tools/sanitize.sh          # short stacks (see below)
#
# CPython is not built with ASan, so the runtime is preloaded; Python's own
# allocations go through malloc (PYTHONMALLOC=malloc) so ASan sees every
# object.  CPython (and numpy) leave some memory unfreed at exit on purpose,
# so the leak check fails the run only for a leak whose allocation stack
# passes through agrad's compiled module; every other leak is counted.
# Any ASan error (use after free, overflow...) or UBSan error aborts the
# process it happens in, and fails the run.
#
# Every process is checked the same way, the tests' child interpreters too:
# each writes its reports to its own log, and the run is judged from the logs
# and pytest's record, never from an exit status (see the options below).
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
    set -- tests/test_contract.py tests/test_exactness.py tests/test_lifetime.py tests/test_hostile_input.py tests/test_linreg.py
fi

step "pytest under ASan+LSan+UBSan: $*"
libasan=$(gcc -print-file-name=libasan.so)
# libstdc++ must be loaded with the runtime, or ASan's __cxa_throw interceptor
# finds nothing to forward to and aborts at agrad's first C++ exception.
libstdcxx=$(g++ -print-file-name=libstdc++.so)
logs="$work/logs"
rm -rf "$logs" && mkdir -p "$logs"
# - exitcode=0: a process whose only finding is a leak exits with its own
#   status.  Otherwise every child interpreter a test starts exits 1 for
#   CPython's own memory left at exit, and its test fails for that; its leaks
#   are still written to its log and judged below like the parent's.
# - abort_on_error=1: an ASan or UBSan error aborts (SIGABRT) instead of
#   exiting with that code, so an error never passes for a clean exit.
# - fast_unwind_on_malloc=0, malloc_context_size=10: CPython is built without
#   frame pointers, so the fast unwinder stops at the first CPython frame and
#   a Python object leaked by agrad's binding (a missing Py_DECREF) would show
#   only CPython's allocator, never agrad.  The slow unwinder reads the
#   unwind tables and sees the caller; 10 frames reach the binding from any
#   allocation it makes through the C API, at two to several times the run
#   time (the whole stack, slowly, cost 8x).  AGRAD_SANITIZE_FAST=1 keeps the
#   fast unwinder, for a quick look that cannot see such leaks.
unwind="fast_unwind_on_malloc=0:malloc_context_size=10"
if [ "${AGRAD_SANITIZE_FAST:-0}" = 1 ]; then
    unwind="fast_unwind_on_malloc=1"
    echo "AGRAD_SANITIZE_FAST=1: a Python object leaked by the binding would count as CPython's"
fi
LD_PRELOAD="$libasan $libstdcxx" PYTHONMALLOC=malloc \
    ASAN_OPTIONS="detect_leaks=1:exitcode=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:$unwind:log_path=$logs/asan" \
    LSAN_OPTIONS="report_objects=0" \
    UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$logs/ubsan" \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" \
    --junitxml="$logs/pytest.xml" "$@" || true

step "sanitizer reports"
"$python" - "$logs" <<'PY'
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

logs = pathlib.Path(sys.argv[1])
text = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*san*")))
errors = re.findall(r"ERROR: AddressSanitizer: [^\n]*|CHECK failed[^\n]*|runtime error: [^\n]*", text)
leaks = re.split(r"\n(?=(?:Direct|Indirect) leak of )", text)
leaks = [block for block in leaks if re.match(r"(Direct|Indirect) leak of ", block)]
# A leak is agrad's if its allocation stack passes through agrad's module,
# unless the block is tracemalloc's own record of an allocation (its
# traceback, raw_malloc'd by _tracemalloc.c, which CPython 3.11 may leave at
# exit): a test that traces memory makes one for every object agrad allocates.
def allocator(block):
    frame = re.search(r"#1 0x[0-9a-f]+ in (\S+) (\S+)", block)
    return frame.group(2) if frame else ""


ours = [
    block
    for block in leaks
    if re.search(r"_core\.cpython|agrad::|agrad_core", block)
    and "_tracemalloc.c" not in allocator(block)
]
total = sum(int(re.match(r"\w+ leak of (\d+)", block).group(1)) for block in leaks)
junit = logs / "pytest.xml"
if junit.exists():  # written at the end of the session: its absence means the run died
    suite = ET.parse(junit).getroot().find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    tests_ok = counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0
else:
    counts, tests_ok = "no record: the run died", False
print(f"pytest: {counts}")
print(f"ASan/UBSan errors: {len(errors)}")
for line in errors:
    print("  ", line)
processes = len({p.name for p in logs.glob("asan.*")})
print(
    f"leaks not through agrad (CPython's and numpy's, left at exit): "
    f"{len(leaks) - len(ours)} blocks, {total} bytes in all, over {processes} processes' logs"
)
print(f"leaks through agrad's module: {len(ours)}")
for block in ours:
    print(block)
sys.exit(0 if tests_ok and not errors and not ours else 1)
PY
echo "sanitized run clean"
