#!/usr/bin/env bash
# baton bake's image builder (embedded in the baton binary; `baton bake` runs it).
#
# Builds a UEFI-bootable disk image from Debian's own packages, without a loop device or a
# mount: mmdebstrap into a directory, the recipe's files on top, the stack's container
# images loaded into the image's own dockerd (chrooted in a private mount namespace), a
# standalone GRUB EFI binary on a FAT system partition (mtools), the root filesystem by
# `mke2fs -d`, both written into a GPT disk (sfdisk on a plain file), then qcow2.
#
# Input (environment, set by baton from the recipe):
#   BAKE_OUT       the qcow2 to write
#   BAKE_WORK      an empty work directory (baton removes it)
#   BAKE_SUITE     Debian suite, e.g. trixie
#   BAKE_MIRROR    Debian mirror URL
#   BAKE_PACKAGES  the recipe's packages, space-separated (added to baton's own)
#   BAKE_FILES     a directory copied onto the root filesystem, or empty
#   BAKE_SIZE_GB   the root filesystem's size
#   BAKE_CMDLINE   the kernel command line, besides root=
#   BAKE_LOAD      docker-archive files to `docker load`, one a line
#   BAKE_PULL      image references to `docker pull` (by digest), one a line
# Progress goes to stderr as "step: NAME" lines, which baton times and shows.
set -euo pipefail
: "${BAKE_OUT:?}" "${BAKE_WORK:?}" "${BAKE_SUITE:?}" "${BAKE_MIRROR:?}" "${BAKE_SIZE_GB:?}"
work=$BAKE_WORK
root=$work/root
step() { echo "step: $*" >&2; }

unmount() {
  # The image's dockerd may still hold mounts under the root.
  umount -R "$root/proc" "$root/sys" "$root/dev" "$root/run" 2>/dev/null || true
}
trap unmount EXIT
trap 'exit 143' TERM INT HUP

for tool in mmdebstrap mke2fs sfdisk mkfs.vfat mcopy qemu-img unshare; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] || {
    echo "bake: $tool is missing on this machine (Debian packages: mmdebstrap e2fsprogs fdisk dosfstools mtools qemu-utils util-linux)" >&2
    exit 3
  }
done
export PATH="$PATH:/usr/sbin:/sbin"

# What every generation needs, whatever the recipe adds: the boot chain, cloud-init (and
# growpart, so the root grows to the instance's disk), sshd, nftables for the metadata
# block, Docker with the compose v2 plugin (so `docker compose up -d --wait` runs as it is),
# AppArmor (Docker confines containers with it).
baton_packages=(
  systemd-sysv udev systemd-resolved linux-image-cloud-amd64 initramfs-tools
  grub-efi-amd64-bin
  cloud-init cloud-guest-utils openssh-server sudo ca-certificates curl iproute2
  nftables netbase e2fsprogs apparmor
  docker.io docker-cli docker-compose
)
# shellcheck disable=SC2206
packages=("${baton_packages[@]}" ${BAKE_PACKAGES:-})

step "rootfs (mmdebstrap $BAKE_SUITE, ${#packages[@]} packages)"
mmdebstrap --quiet --mode=root --variant=apt --components=main \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$BAKE_SUITE" "$root" "$BAKE_MIRROR" >&2

step "files"
if [ -n "${BAKE_FILES:-}" ]; then
  # Owned by root whoever owns the recipe; modes as they are in the repository.
  tar -C "$BAKE_FILES" --owner=0 --group=0 -cf - . | tar -C "$root" -xpf -
fi
echo "LABEL=baton-root / ext4 defaults,noatime 0 1" > "$root/etc/fstab"
# Nothing runs at boot that baton did not ask for.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
            man-db.timer dpkg-db-backup.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# The housekeeping that stays (systemd-tmpfiles-clean, 15 minutes after boot, then daily:
# /var/tmp and the other aged paths) takes only CPU and disk time nobody else wants. In
# the rehearsal it ran on the serving VM during the next swap (a server is about 15
# minutes old then), 2.9 s of emulated CPU at the site's priority over 11 s, and the two
# visitors' requests sent as it started timed out (e2e13, BENCHMARKS.md).
install -d "$root/etc/systemd/system/systemd-tmpfiles-clean.service.d"
printf '[Service]\nCPUSchedulingPolicy=idle\nIOSchedulingClass=idle\n' \
  > "$root/etc/systemd/system/systemd-tmpfiles-clean.service.d/idle.conf"
# AppArmor compiles every profile in /etc/apparmor.d at every boot (a fresh server has no
# cache), and the boot waits for it: trixie's apparmor package ships about a hundred, 95
# of them for desktop programs (browsers, chat clients, sbuild, Xorg) that are either
# `unconfined` (they only name a program, for Ubuntu's user-namespace restriction) or in
# `complain` mode (they log and deny nothing). Those enforce nothing, so they are
# disabled the way `aa-disable` does it (a link in disable/, which apparmor_parser
# skips); every profile that denies something still loads, and Docker loads its own.
# Under the rehearsal's software emulation that compile took about 30 s of a first boot.
disabled=0
for profile in "$root"/etc/apparmor.d/*; do
  [ -f "$profile" ] || continue
  heads=$(grep -E '^[[:space:]]*profile[[:space:]]' "$profile" || true)
  [ -n "$heads" ] || continue
  if ! printf '%s\n' "$heads" | grep -vqE 'flags=\([^)]*(unconfined|complain)'; then
    ln -sf "/etc/apparmor.d/${profile##*/}" "$root/etc/apparmor.d/disable/${profile##*/}"
    disabled=$((disabled + 1))
  fi
done
echo "bake: $disabled AppArmor profiles that enforce nothing disabled" >&2
# cloud-init renders the network for systemd-networkd (the recipe's cloud.cfg.d), which
# Debian ships disabled; network-online waits for one link, not every one.
systemctl --root="$root" enable systemd-networkd.service systemd-networkd-wait-online.service >&2
install -d "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-networkd-wait-online --any --timeout=120\n' \
  > "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
# No host key, no machine id, no hostname: each generation's come from its user-data.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
echo "localhost" > "$root/etc/hostname"

load=$(printf '%s' "${BAKE_LOAD:-}" | grep -c . || true)
pull=$(printf '%s' "${BAKE_PULL:-}" | grep -c . || true)
if [ "$load" -gt 0 ] || [ "$pull" -gt 0 ]; then
  step "container images ($pull pulled by digest, $load loaded from archives)"
  mkdir -p "$root/tmp/bake-load"
  i=0
  while IFS= read -r archive; do
    [ -n "$archive" ] || continue
    i=$((i + 1))
    cp "$archive" "$root/tmp/bake-load/$i.tar"
  done <<< "${BAKE_LOAD:-}"
  printf '%s\n' "${BAKE_PULL:-}" > "$root/tmp/bake-pull"
  # The image's own dockerd, chrooted: what it stores is what the VM's dockerd finds. A
  # pull records the image's digest, so compose's `image: NAME@sha256:...` is found
  # locally and a swap needs no registry.
  unshare --mount --propagation private --fork bash -euo pipefail -c '
    root=$1
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/run"
    cp /etc/resolv.conf "$root/run/bake-resolv.conf" 2>/dev/null || true
    chroot "$root" /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none \
      --host unix:///run/bake.sock --pidfile /run/bake.pid \
      > "$root/tmp/dockerd.log" 2>&1 &
    pid=$!
    docker() { chroot "$root" docker -H unix:///run/bake.sock "$@"; }
    for _ in $(seq 300); do
      docker info >/dev/null 2>&1 && break
      sleep 0.1
    done
    for f in "$root"/tmp/bake-load/*.tar; do
      [ -e "$f" ] || continue
      docker load -q -i "/tmp/bake-load/$(basename "$f")" >&2
    done
    while IFS= read -r ref; do
      [ -n "$ref" ] || continue
      echo "pulling $ref" >&2
      docker pull -q "$ref" >&2
    done < "$root/tmp/bake-pull"
    kill $pid
    wait $pid || true
  ' bake "$root" || { tail -n 30 "$root/tmp/dockerd.log" >&2; exit 1; }
  unmount
  rm -rf "$root/tmp/bake-load" "$root/tmp/bake-pull" "$root/tmp/dockerd.log"
  # Its network state names this build's (absent) bridge; the VM's dockerd starts fresh.
  rm -f "$root/var/lib/docker/network/files/local-kv.db"
fi

# Nothing that belongs to one generation may be in the image: refuse rather than ship it.
leaked=$(cd "$root" && ls -d etc/ssh/ssh_host_* etc/baton srv/tls var/lib/baton 2>/dev/null || true)
if [ -n "$leaked" ] || [ -s "$root/etc/machine-id" ]; then
  echo "bake: the image would hold per-generation state: ${leaked:-etc/machine-id}" >&2
  echo "bake: remove it from the recipe's files/ (each generation's comes in its user-data)" >&2
  exit 1
fi

step "boot loader (GRUB, standalone EFI)"
cat > "$work/grub.cfg" <<EOF
search --no-floppy --label baton-root --set=root
linux /vmlinuz root=LABEL=baton-root ro ${BAKE_CMDLINE:-}
initrd /initrd.img
boot
EOF
cp "$work/grub.cfg" "$root/tmp/bake-grub.cfg"
chroot "$root" grub-mkstandalone -O x86_64-efi -o /tmp/BOOTX64.EFI \
  --modules="part_gpt ext2 search_label linux" --locales= --fonts= --themes= \
  "boot/grub/grub.cfg=/tmp/bake-grub.cfg" >&2
mv "$root/tmp/BOOTX64.EFI" "$work/BOOTX64.EFI"
rm -f "$root/tmp/bake-grub.cfg"
esp_mb=32
mkfs.vfat -n BATON-ESP -C "$work/esp.img" $((esp_mb * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

step "disk (GPT: EFI system partition, ext4 root of ${BAKE_SIZE_GB} GB), qcow2"
root_mb=$((BAKE_SIZE_GB * 1024))
mke2fs -q -t ext4 -L baton-root -d "$root" "$work/root.ext4" "${root_mb}M" >&2
rm -rf "$root"
truncate -s $((1 + esp_mb + root_mb + 1))M "$work/disk.raw"
sfdisk --quiet "$work/disk.raw" >&2 <<EOF
label: gpt
start=1MiB, size=${esp_mb}MiB, type=uefi, name=esp
start=$((1 + esp_mb))MiB, size=${root_mb}MiB, type=linux, name=root
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc status=none
dd if="$work/root.ext4" of="$work/disk.raw" bs=1M seek=$((1 + esp_mb)) conv=notrunc,sparse status=none
rm -f "$work/root.ext4" "$work/esp.img"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$BAKE_OUT"
rm -f "$work/disk.raw"
