#!/bin/sh
# Makes the build context of deploy/container/Containerfile:
#   context.sh BINARY_DIR OUT_DIR
# BINARY_DIR holds registrar and docker-credential-registrar as cargo built
# them (target/release). OUT_DIR gets rootfs/ (the binaries, every shared
# library they load, the CA bundle, a passwd naming user 65532) and data/
# (the empty data directory, owned by that user in the image).
set -eu
bin_dir=$1
out=$2
rootfs="$out/rootfs"
rm -rf "$out"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/registrar/key" "$out/data"
for program in registrar docker-credential-registrar; do
  install -m 0755 "$bin_dir/$program" "$rootfs/usr/local/bin/$program"
  # The dynamic loader and every library, at the paths the binary asks for.
  ldd "$bin_dir/$program" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
done
# rustls reads the system's roots for ECR and registries over TLS.
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -f "$bundle" ]; then
    cp -L "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    break
  fi
done
printf 'root:x:0:0:root:/:/nonexistent\nregistrar:x:65532:65532:registrar:/var/lib/registrar:/nonexistent\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nregistrar:x:65532:\n' > "$rootfs/etc/group"
