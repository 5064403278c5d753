# Builds the tiny guest image inside a sandbox (run as root with bash -eu -o pipefail).
# Input: $W (work dir, holds cpio.py and moddeps.py), $BANNER.  Output: $W/guest.img.  Installs nothing.
cd "$W"
rm -rf debs x rd guest.img
mkdir -p debs x rd
cd debs
apt-get update -q >/dev/null
K=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$K" ] || { echo "no kernel package behind linux-image-amd64" >&2; exit 3; }
apt-get download -q -o APT::Sandbox::User=root \
    "$K" busybox-static syslinux syslinux-common mtools dosfstools >/dev/null
for d in *.deb; do dpkg -x "$d" "$W/x"; done
X="$W/x"; V=${K#linux-image-}
first() { for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done; return 0; }
BB=$(first "$X"/usr/bin/busybox "$X"/bin/busybox)
MD=$(first "$X"/usr/lib/modules/"$V" "$X"/lib/modules/"$V")
[ -n "$BB" ] && [ -n "$MD" ] || { echo "busybox or the kernel modules are missing" >&2; exit 4; }
R="$W/rd"
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/mods"
cp "$BB" "$R/bin/busybox"
# virtio_net and what it needs, in load order, from the modules' own .modinfo (dpkg -x
# runs no depmod); virtio and virtio_pci are built into Debian 13's kernel, modules on others.
: > "$R/mods/order"
python3 "$W/moddeps.py" "$MD" virtio_pci virtio_net > "$W/modlist"
while read -r n f; do
  case "$f" in
    *.xz) "$BB" unxz -c "$f" > "$R/mods/$n.ko" ;;
    *.ko) cp "$f" "$R/mods/$n.ko" ;;
    *) echo "cannot unpack $f" >&2; exit 4 ;;
  esac
  echo "$n" >> "$R/mods/order"
done < "$W/modlist"
grep -qx virtio_net "$R/mods/order" || { echo "no virtio_net module in $K" >&2; exit 4; }
{
  echo '#!/bin/busybox sh'
  echo '/bin/busybox --install -s /bin'
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
  echo 'for m in $(cat /mods/order); do insmod /mods/$m.ko; done'
  echo "echo '$BANNER'"
  echo 'ip link set lo up'
  echo 'n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done'
  echo 'udhcpc -b -i eth0 -t 30 -T 2 -s /bin/dhcp-event'
  echo 'while true; do sleep 3600; done'
} > "$R/init"
{
  echo '#!/bin/busybox sh'
  echo 'case "$1" in'
  echo '  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;'
  echo '  bound|renew)'
  echo '    ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"'
  echo '    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"'
  echo '    echo "stack-tui-guest: address $ip" > /dev/console ;;'
  echo 'esac'
} > "$R/bin/dhcp-event"
chmod 755 "$R/init" "$R/bin/dhcp-event"
(cd "$R" && python3 "$W/cpio.py" .) | gzip -9 > "$W/initrd.gz"
cd "$W"
MKFS=$(first "$X"/usr/sbin/mkfs.fat "$X"/sbin/mkfs.fat)   # Debian 12 is not usr-merged
"$MKFS" -C -n GUEST guest.img 32768 >/dev/null
cp "$(first "$X"/boot/vmlinuz-*)" vmlinuz
printf 'DEFAULT guest\nPROMPT 0\nTIMEOUT 1\nLABEL guest\n  KERNEL vmlinuz\n  APPEND initrd=initrd.gz console=tty0 console=ttyS0 quiet\n' > syslinux.cfg
export MTOOLS_SKIP_CHECK=1 PATH="$X/usr/bin:$X/usr/sbin:$X/bin:$X/sbin:$PATH"
mcopy -i guest.img vmlinuz initrd.gz syslinux.cfg ::
syslinux --install guest.img
echo "kernel $K"
