#!/usr/bin/env bash
# One-shot GPU-machine run (Ubuntu 24.04, CUDA 13.0, no -dev packages, no
# network): unpack the carried Debian packages into /opt/deps, configure and
# build cllm with CUDA against them, run the GPU kernel tests (ctest -L gpu),
# the CPU tests (ctest -LE gpu) and the kernel benchmarks, write logs to
# $OUT and print a short summary table last.
#
# Usage (from the repo root on the GPU machine):  bash tools/gpu_run.sh
# Env: OUT (log folder, default /tmp/cllm_gpu_out), CLLM_DEBS (space-separated
# folders of .deb files; default: .carry/debs, ../debs, ../debs-noble that
# exist), CLLM_SHARED_DIR (tests' shared data, default ../shared),
# CLLM_SKIP_CPU_TESTS=1, CLLM_SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
DEPS=/opt/deps
LIBD=$DEPS/usr/lib/x86_64-linux-gnu
JOBS=$(nproc 2>/dev/null || echo 8)
t0=$(date +%s)

# ---- 1. dependencies from carried .deb files (runtime libs + headers) ----
if [ -z "${CLLM_DEBS:-}" ]; then
  CLLM_DEBS=""
  for d in "$ROOT/.carry/debs" "$ROOT/../debs" "$ROOT/.carry/debs-noble" "$ROOT/../debs-noble"; do
    [ -d "$d" ] && CLLM_DEBS="$CLLM_DEBS $d"
  done
fi
mkdir -p $DEPS
ndeb=0
for d in $CLLM_DEBS; do
  for f in "$d"/*.deb; do
    [ -e "$f" ] || continue
    dpkg -x "$f" $DEPS && ndeb=$((ndeb + 1))
  done
done
echo "unpacked $ndeb .deb files from:$CLLM_DEBS into $DEPS"
# Point the .pc files at the prefix.
find $DEPS -name '*.pc' -print0 2>/dev/null | xargs -0 -r sed -i -e "s#=/usr#=$DEPS/usr#g" -e "s#-I/usr/#-I$DEPS/usr/#g" -e "s#-L/usr/#-L$DEPS/usr/#g"
PCP=""
for p in $(find $DEPS -type d -name pkgconfig 2>/dev/null); do PCP="$PCP:$p"; done
export PKG_CONFIG_PATH="${PCP#:}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
RPATHS="$LIBD:$LIBD/openblas-pthread"
export LD_LIBRARY_PATH="$RPATHS:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! command -v pkg-config >/dev/null; then
  if [ -x $DEPS/usr/bin/pkgconf ]; then
    ln -sf $DEPS/usr/bin/pkgconf $DEPS/usr/bin/pkg-config
    export PATH="$DEPS/usr/bin:$PATH"
  else
    echo "WARNING: no pkg-config on this machine and none carried (carry pkgconf-bin + libpkgconf3)"
  fi
fi
export PATH="/usr/local/cuda/bin:$PATH"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; nvcc --version | tail -1; } 2>&1 | tee "$OUT/env.log"

# ---- 2. configure + build ----
# shared/ data for tests: ../shared where it exists, else a copy carried in .carry/shared
SHARED=${CLLM_SHARED_DIR:-$ROOT/../shared}
[ -d "$SHARED" ] || SHARED=$ROOT/.carry/shared
BUILD=build-gpu
cmake -S . -B $BUILD -DCLLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_PREFIX_PATH=$DEPS/usr -DCLLM_SHARED_DIR="$SHARED" \
  -DCMAKE_C_FLAGS="-I$DEPS/usr/include -I$DEPS/usr/include/x86_64-linux-gnu" \
  -DCMAKE_EXE_LINKER_FLAGS="-L$LIBD -Wl,--disable-new-dtags -Wl,-rpath,$LIBD -Wl,-rpath,$LIBD/openblas-pthread -Wl,-rpath-link,$LIBD -Wl,-rpath-link,$LIBD/openblas-pthread" \
  2>&1 | tee "$OUT/build.log"
cfg=${PIPESTATUS[0]}
build=1
if [ "$cfg" = 0 ]; then
  cmake --build $BUILD -j"$JOBS" -- -k 2>&1 | tee -a "$OUT/build.log" | grep -E "error|Error|warning: " | head -40
  build=${PIPESTATUS[0]}
fi
t_build=$(date +%s)

# ---- 3. tests ----
gpu_rc=-; cpu_rc=-
if [ -d $BUILD ]; then
  (cd $BUILD && ctest -L gpu --output-on-failure -V --timeout 600) > "$OUT/gpu_tests.log" 2>&1
  gpu_rc=$?
  grep -E "^[0-9]+: (PASS|FAIL)|cases,|Test +#" "$OUT/gpu_tests.log" | sed 's/^[0-9]*: //' | tail -150
  if [ "${CLLM_SKIP_CPU_TESTS:-0}" != 1 ]; then
    (cd $BUILD && ctest -LE gpu --output-on-failure -j"$JOBS" --timeout 600) > "$OUT/cpu_tests.log" 2>&1
    cpu_rc=$?
    tail -15 "$OUT/cpu_tests.log"
  fi
fi
t_test=$(date +%s)

# ---- 4. benchmarks ----
bench_rc=-
if [ "${CLLM_SKIP_BENCH:-0}" != 1 ] && [ -x $BUILD/bench_cuda_kernels ]; then
  $BUILD/bench_cuda_kernels "$OUT/bench_cuda_kernels.json" 2>&1 | tee "$OUT/bench.log"
  bench_rc=${PIPESTATUS[0]}
fi
t_end=$(date +%s)

# ---- 5. summary (last) ----
{
echo
echo "================ cllm GPU run summary ================"
printf "%-28s %s\n" "deps (.deb unpacked)" "$ndeb"
printf "%-28s %s\n" "configure rc" "$cfg"
printf "%-28s %s (%ss)\n" "build rc (-k)" "$build" "$((t_build - t0))"
printf "%-28s %s  [%s]\n" "gpu tests (ctest -L gpu)" "rc=$gpu_rc" "$(grep -E 'tests passed|tests failed' "$OUT/gpu_tests.log" 2>/dev/null | tail -1)"
grep -hE "^[0-9]+: test_cuda_[a-z]+: [0-9]+ cases" "$OUT/gpu_tests.log" 2>/dev/null | sed 's/^[0-9]*: /    /'
printf "%-28s %s  [%s]\n" "cpu tests (ctest -LE gpu)" "rc=$cpu_rc" "$(grep -E 'tests passed|tests failed' "$OUT/cpu_tests.log" 2>/dev/null | tail -1)"
printf "%-28s %s (%ss)\n" "kernel bench" "rc=$bench_rc" "$((t_end - t_test))"
[ -f "$OUT/bench.log" ] && grep -E "^(qkv_proj|o_proj|gate_up_proj|down_proj|lm_head|decode_attention|rmsnorm|silu_mul|rope) " "$OUT/bench.log" | \
  cut -c1-160
echo "logs in $OUT; total $((t_end - t0))s"
} 2>&1 | tee "$OUT/summary.txt"
