#!/bin/bash
# Pack the comparison for a machine without Rust, network or wrk: the release binaries,
# wrk, nginx (when found) and the shared libraries they need, with wrappers, into
# benches/compare/target/devkit (git-ignored). On the other machine, from the repository root:
#
#   bash benches/compare/target/devkit/run.sh 1,2 --duration 3 --rounds 2 --idle 0 --no-strace
#
# (OUT=dir for the results; the default is benches/compare/target/devkit/out). The wrappers
# use the carried libraries; with DEVKIT_LOADER=1 (set by run.sh when the binaries do not
# start natively) they also use the carried glibc and its loader.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kit=$here/target/devkit
(cd "$root" && cargo build --release --bin percore)
(cd "$here" && cargo build --release)
nginx=$(command -v nginx || ls "$here"/target/nginx/usr/sbin/nginx 2>/dev/null || true)
rm -rf "$kit" && mkdir -p "$kit"/{real,lib,glibc,bin}
cp "$root/target/release/percore" "$here/target/release/compare" "$(command -v wrk)" "$kit/real/"
[ -n "$nginx" ] && cp "$nginx" "$kit/real/"
for b in "$kit"/real/*; do
  ldd "$b" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libgcc_s.so.*) cp -L "$lib" "$kit/glibc/" ;;
      *) cp -L "$lib" "$kit/lib/" ;;
    esac
  done
done
cp -L /lib64/ld-linux-x86-64.so.2 "$kit/glibc/"
for b in "$kit"/real/*; do
  name=$(basename "$b")
  cat > "$kit/bin/$name" <<EOF
#!/bin/sh
D=\$(dirname "\$(readlink -f "\$0")")/..
if [ -n "\$DEVKIT_LOADER" ]; then
  exec "\$D/glibc/ld-linux-x86-64.so.2" --library-path "\$D/lib:\$D/glibc" "\$D/real/$name" "\$@"
fi
LD_LIBRARY_PATH="\$D/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$D/real/$name" "\$@"
EOF
  chmod +x "$kit/bin/$name"
done
cat > "$kit/run.sh" <<'EOF'
#!/bin/bash
# $1: --cores list; the rest: more compare options. Run from the repository root.
K=benches/compare/target/devkit
OUT=${OUT:-$K/out}
cores=$1; shift
echo "nproc=$(nproc) model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) kernel=$(uname -r)"
echo "io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null) nofile=$(ulimit -n)/$(ulimit -Hn)"
if ! $K/bin/percore --help >/dev/null 2>&1; then echo "using the carried glibc"; export DEVKIT_LOADER=1; fi
export COMPARE_SELF=$PWD/$K/bin/compare
nginx=(); [ -x $K/bin/nginx ] && nginx=(--nginx "$PWD/$K/bin/nginx")
mkdir -p "$OUT/results"
$K/bin/compare --percore-bin "$PWD/$K/bin/percore" --wrk "$PWD/$K/bin/wrk" "${nginx[@]}" \
  --out "$OUT/results" --cores "$cores" "$@" > "$OUT/report-${cores//,/-}.md" 2> "$OUT/log-${cores//,/-}.txt"
rc=$?
tail -c 6000 "$OUT/log-${cores//,/-}.txt"
exit $rc
EOF
chmod +x "$kit/run.sh"
du -sh "$kit"
