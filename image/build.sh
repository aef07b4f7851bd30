#!/usr/bin/env bash
# image/build.sh (run as tools/build-image): builds one board's firmware from Debian bookworm
# packages and this tree's binaries. Steps, each named in its failure:
#   1. options and the board (board/NAME/board.conf, cmdline, partitions.sfdisk);
#   2. the binaries (build/bin, built with the dev preset when missing), stripped copies;
#   3. the root file system: mmdebstrap with the board's packages and the binaries' runtime
#      libraries (found with ldd and dpkg), then image/rootfs/ copied in and the initramfs made;
#   4. rootfs.squashfs (read-only root of a slot);
#   5. the EFI system partition (GRUB, its A/B script, grubenv), the data partition (ext4);
#   6. the disk image (GPT from partitions.sfdisk, both slots holding the same root), its .bmap;
#   7. the update bundle (manifest + rootfs, and its SHA-256);
#   8. a summary: sizes and checksums.
# With --from-bundle BUNDLE, steps 2-3 and 5-6 are skipped: the bundle's root file system is
# unpacked, given this build's version and variant (/etc/stacknode-release,
# /usr/lib/stacknode/variant), squashed again and bundled: a quick way to make the update and
# rollback bundles of the image tests from one full build.
# Needs root (mmdebstrap --mode=root and the chroot of its hooks). Nothing is fetched but Debian
# packages, from this machine's own apt sources.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image_dir=$repo_dir/image
suite=bookworm
esp_label=STACKNODE           # FAT volume label of the EFI system partition
data_fs_label=stacknode-data  # ext4 label of the data partition (the initramfs mounts it by partition name)
grubenv_bytes=1024            # GRUB's environment block is exactly this size
binaries=(stacknode-dataplane stacknode-db stacknode-db-recover stacknode-web stacknoded stackctl stacknode-flash)
# Debian packages every board's root file system has, beside the binaries' libraries.
base_packages=(
  systemd systemd-sysv udev dbus kmod linux-image-amd64 initramfs-tools  # boot and init
  busybox                                                 # the initramfs's shell tools (mount -t overlay)
  iproute2 ethtool iputils-ping procps util-linux e2fsprogs dosfstools    # the console's tools
  grub-common                                                              # grub-editenv: slots
  redis-server ca-certificates openssl
  # DPDK's plugins that no library depends on, loaded by the EAL at start: without the ring
  # mempool driver, no packet buffers can be made (EINVAL); the buses find the ports.
  librte-mempool-ring23 librte-bus-pci23 librte-bus-vdev23
)

say() { echo "build-image: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}

# ---- 1. Options and the board ------------------------------------------------------------------
board=""
version=""
variant=normal
out_dir=""
from_bundle=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from-bundle) from_bundle=${2:?--from-bundle needs a bundle}; shift ;;
    --board) board=${2:?--board needs a name}; shift ;;
    --version) version=${2:?--version needs a value}; shift ;;
    --variant) variant=${2:?--variant needs normal or unhealthy}; shift ;;
    --out) out_dir=${2:?--out needs a directory}; shift ;;
    -h|--help) sed -n '2,11p' "$repo_dir/tools/build-image" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[[ -n $board ]] || die "--board NAME is required (boards: $(ls "$repo_dir/board" | grep -v README | tr '\n' ' '))"
board_dir=$repo_dir/board/$board
[[ -f $board_dir/board.conf ]] || die "no board '$board' (boards: $(ls "$repo_dir/board" | grep -v README | tr '\n' ' '))"
[[ $variant == normal || $variant == unhealthy ]] || die "--variant is normal or unhealthy, not '$variant'"
[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap --mode=root and chroot)"
for tool in mmdebstrap mksquashfs mkfs.vfat mmd mcopy mkfs.ext4 sfdisk grub-mkimage grub-editenv bmaptool jq sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (tools/bootstrap installs it)"
done
# shellcheck source=/dev/null
source "$board_dir/board.conf"
cmdline=$(grep -v '^#' "$board_dir/cmdline" | tr '\n' ' ' | sed 's/  */ /g; s/ $//')
commit=$(git -C "$repo_dir" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n $version ]] || version="0.1.0+g$commit"
[[ $version =~ ^[A-Za-z0-9.+~-]{1,64}$ ]] || die "--version '$version': letters, digits and . + ~ - only, at most 64"
out_dir=${out_dir:-$repo_dir/build/image/$board}
work=$out_dir/work
rm -rf "$work"
mkdir -p "$work" "$out_dir"
say "board $board ($board_description), version $version, variant $variant -> $out_dir"

if [[ -n $from_bundle ]]; then
  # ---- 2-3 (--from-bundle). The root file system of an existing bundle, respun ------------------
  [[ -f $from_bundle ]] || die "--from-bundle $from_bundle: no such file"
  tar -C "$work" -xf "$from_bundle" manifest.json rootfs.squashfs || die "$from_bundle is not a bundle (tar)"
  [[ $(jq -r .board "$work/manifest.json") == "$board" ]] || die "$from_bundle is for board $(jq -r .board "$work/manifest.json")"
  rootfs=$work/rootfs
  unsquashfs -q -n -d "$rootfs" "$work/rootfs.squashfs" >/dev/null || die "unsquashfs $from_bundle"
  rm -f "$work/rootfs.squashfs" "$work/manifest.json"
  printf 'VERSION=%s\nBOARD=%s\nVARIANT=%s\nCOMMIT=%s\n' "$version" "$board" "$variant" "$commit" >"$rootfs/etc/stacknode-release"
  echo "$variant" >"$rootfs/usr/lib/stacknode/variant"
  say "respun the root of $from_bundle as version $version, variant $variant"
else
# ---- 2. The binaries ---------------------------------------------------------------------------
bin_dir=$repo_dir/build/bin
missing=()
for binary in "${binaries[@]}"; do [[ -x $bin_dir/$binary ]] || missing+=("$binary"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "building ${missing[*]} (cmake --preset dev)"
  (cd "$repo_dir" && cmake --preset dev >/dev/null && cmake --build --preset dev --target "${missing[@]}") >&2 ||
    die "the binaries do not build"
fi
mkdir -p "$work/bin"
for binary in "${binaries[@]}"; do
  strip --strip-debug -o "$work/bin/$binary" "$bin_dir/$binary" || die "cannot strip $binary"
done

# Runtime libraries: every shared library the binaries load, by the Debian package that has it.
runtime_packages=$(
  for binary in "${binaries[@]}"; do ldd "$work/bin/$binary"; done |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    while read -r library; do
      dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library" 2>/dev/null || echo "unowned: $library"
    done | sed 's/: .*//' | sed 's/:amd64$//' | sort -u
)
if grep -q '^unowned' <<<"$runtime_packages"; then die "libraries no package owns: $(grep unowned <<<"$runtime_packages")"; fi

# ---- 3. The root file system -------------------------------------------------------------------
rootfs=$work/rootfs
packages=$(echo "${base_packages[@]}" $board_packages $runtime_packages | tr ' ' '\n' | sort -u | paste -sd, -)
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $file ]] && grep -qs "$suite" "$file" && sources+=("$file")
done
[[ ${#sources[@]} -gt 0 ]] || die "no apt sources for $suite on this machine (/etc/apt/sources.list*)"
say "mmdebstrap: $suite with $(tr ',' '\n' <<<"$packages" | wc -l) packages (log: $work/mmdebstrap.log)"
# The hooks run with the root file system at "$1": our files go in before the initramfs is made,
# so that it carries the overlay script and the modules it needs.
mmdebstrap --mode=root --variant=apt --format=directory --include="$packages" \
  --customize-hook="cp -a '$image_dir/rootfs/.' \"\$1/\"" \
  --customize-hook="install -m 0755 '$work/bin/'* \"\$1/usr/bin/\"" \
  --customize-hook="printf 'VERSION=%s\nBOARD=%s\nVARIANT=%s\nCOMMIT=%s\n' '$version' '$board' '$variant' '$commit' > \"\$1/etc/stacknode-release\"" \
  --customize-hook="printf '%s\n' $board_modules > \"\$1/etc/modules-load.d/stacknode-board.conf\"" \
  --customize-hook="printf 'vm.nr_hugepages = %s\n' '$hugepages_2m' > \"\$1/etc/sysctl.d/60-stacknode-hugepages.conf\"" \
  --customize-hook="printf 'STACKNODE_BOARD=%s\nDATAPLANE_NIC_PCI=%s\nDATAPLANE_NIC_DRIVER=%s\nDATAPLANE_VFIO_NOIOMMU=%s\nSERVICE_NIC=%s\n' '$board' '$dataplane_nic_pci' '$dataplane_nic_driver' '$dataplane_vfio_noiommu' '$service_nic_match' > \"\$1/etc/stacknode/board.env\"" \
  --customize-hook="printf '[Match]\nName=%s\n\n[Network]\nDHCP=yes\n' '$service_nic_match' > \"\$1/etc/systemd/network/50-stacknode-service.network\"" \
  --customize-hook="chroot \"\$1\" /usr/lib/stacknode/image-setup '$variant'" \
  "$suite" "$rootfs" "${sources[@]}" >"$work/mmdebstrap.log" 2>&1 || die "mmdebstrap (see $work/mmdebstrap.log)"

fi

# ---- 4. The read-only root -----------------------------------------------------------------------
# gzip: GRUB reads the kernel and initrd out of the slot (its squash4 module), and the kernel the
# rest; both read gzip.
rm -f "$work/rootfs.squashfs"
# squashfs keeps security.* xattrs (file capabilities) and not the POSIX ACLs (system.*) that
# systemd puts on the journal's directories: mksquashfs says so once per file, which is noise.
mksquashfs "$rootfs" "$work/rootfs.squashfs" -comp gzip -noappend -quiet -no-progress 2>&1 >/dev/null |
  { grep -v '^Unrecognised xattr prefix system\.' >&2 || true; }
[[ ${PIPESTATUS[0]} == 0 ]] || die "mksquashfs"
rootfs_bytes=$(stat -c %s "$work/rootfs.squashfs")
rootfs_sha256=$(sha256sum "$work/rootfs.squashfs" | cut -d' ' -f1)

if [[ -z $from_bundle ]]; then
# ---- 5. The EFI system partition and the data partition ----------------------------------------
partition_mib() {  # size of the named partition in partitions.sfdisk, in MiB
  grep -o "size=[0-9]*M, [^#]*name=\"$1\"" "$board_dir/partitions.sfdisk" | sed 's/size=\([0-9]*\)M.*/\1/'
}
esp_mib=$(partition_mib stacknode-esp)
slot_mib=$(partition_mib stacknode-root-a)
data_mib=$(partition_mib stacknode-data)
[[ -n $esp_mib && -n $slot_mib && -n $data_mib && $(partition_mib stacknode-root-b) == "$slot_mib" ]] ||
  die "partitions.sfdisk must size stacknode-esp, -root-a, -root-b (equal) and -data in M"
((rootfs_bytes <= slot_mib * 1024 * 1024)) || die "the root file system ($rootfs_bytes bytes) does not fit a $slot_mib MiB slot"

grub_modules=(part_gpt fat squash4 gzio normal linux configfile loadenv test echo regexp serial terminal
  search search_label sleep true cat efi_gop all_video reboot halt)
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -p /EFI/stacknode "${grub_modules[@]}" || die "grub-mkimage"
grubenv=$work/grubenv
grub-editenv "$grubenv" create
grub-editenv "$grubenv" set active_slot=a trial_slot= trial_left=0 \
  slot_a_version="$version" slot_a_bytes="$rootfs_bytes" slot_a_sha256="$rootfs_sha256" \
  slot_b_version="$version" slot_b_bytes="$rootfs_bytes" slot_b_sha256="$rootfs_sha256"
[[ $(stat -c %s "$grubenv") == "$grubenv_bytes" ]] || die "grubenv is not $grubenv_bytes bytes"
sed "s|@CMDLINE@|$cmdline|" "$image_dir/grub.cfg" >"$work/grub.cfg"
rm -f "$work/esp.img"
mkfs.vfat -C -F 32 -n "$esp_label" "$work/esp.img" $((esp_mib * 1024)) >/dev/null || die "mkfs.vfat"
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/stacknode
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/grub.cfg" "$grubenv" ::/EFI/stacknode/

rm -f "$work/data.img"
mkfs.ext4 -q -F -L "$data_fs_label" "$work/data.img" "${data_mib}M" >/dev/null || die "mkfs.ext4 (data)"

# ---- 6. The disk image -------------------------------------------------------------------------
# 1 MiB before the first partition (sfdisk's default alignment) and 1 MiB after the last (the
# backup GPT).
disk=$out_dir/stacknode-$board.img
total_mib=$((1 + esp_mib + 2 * slot_mib + data_mib + 1))
rm -f "$disk"
truncate -s "${total_mib}M" "$disk"
grep -v '^#' "$board_dir/partitions.sfdisk" | sfdisk --quiet "$disk" || die "sfdisk"
place() {  # partition name, image file
  local start
  start=$(sfdisk --json "$disk" | jq -r --arg name "$1" '.partitiontable.partitions[] | select(.name == $name) | .start')
  [[ -n $start ]] || die "partition $1 is not in the table"
  dd if="$2" of="$disk" bs=4M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none ||
    die "writing $1"
}
place stacknode-esp "$work/esp.img"
place stacknode-root-a "$work/rootfs.squashfs"
place stacknode-root-b "$work/rootfs.squashfs"
place stacknode-data "$work/data.img"
bmaptool create "$disk" >"$disk.bmap" 2>/dev/null || die "bmaptool create"

fi

# ---- 7. The update bundle ----------------------------------------------------------------------
bundle=$out_dir/stacknode-$board-$version.bundle
jq -n --arg board "$board" --arg version "$version" --arg variant "$variant" --arg commit "$commit" \
  --argjson bytes "$rootfs_bytes" --arg sha256 "$rootfs_sha256" \
  '{format: "stacknode-bundle-1", board: $board, version: $version, variant: $variant, commit: $commit,
    rootfs: {file: "rootfs.squashfs", bytes: $bytes, sha256: $sha256}}' >"$work/manifest.json"
tar -C "$work" -cf "$bundle" manifest.json rootfs.squashfs || die "tar (bundle)"
(cd "$out_dir" && sha256sum "$(basename "$bundle")" >"$(basename "$bundle").sha256")

# ---- 8. Summary --------------------------------------------------------------------------------
rm -rf "$rootfs"  # the squashfs has it; the tree is hundreds of MiB
say "bundle:     $bundle ($(stat -c %s "$bundle") bytes), sha256 $(cut -d' ' -f1 "$bundle.sha256")"
say "root slot:  $rootfs_bytes bytes, sha256 $rootfs_sha256"
if [[ -n $from_bundle ]]; then
  jq -n --arg bundle "$bundle" --arg version "$version" --arg board "$board" --arg variant "$variant" \
    --argjson rootfs_bytes "$rootfs_bytes" --arg rootfs_sha256 "$rootfs_sha256" \
    '{board: $board, version: $version, variant: $variant, bundle: $bundle, rootfs_bytes: $rootfs_bytes,
      rootfs_sha256: $rootfs_sha256}' >"$out_dir/build-$version.json"
  exit 0
fi
disk_sha256=$(sha256sum "$disk" | cut -d' ' -f1)
say "disk image: $disk ($(stat -c %s "$disk") bytes, $(du -k "$disk" | cut -f1) KiB allocated), sha256 $disk_sha256"
say "block map:  $disk.bmap"
jq -n --arg disk "$disk" --arg disk_sha256 "$disk_sha256" --arg bundle "$bundle" --arg version "$version" \
  --arg board "$board" --arg variant "$variant" --argjson rootfs_bytes "$rootfs_bytes" --arg rootfs_sha256 "$rootfs_sha256" \
  '{board: $board, version: $version, variant: $variant, disk: $disk, disk_sha256: $disk_sha256,
    bundle: $bundle, rootfs_bytes: $rootfs_bytes, rootfs_sha256: $rootfs_sha256}' >"$out_dir/build.json"
