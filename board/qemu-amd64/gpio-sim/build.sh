#!/bin/sh
# Builds the kernel's GPIO simulator (drivers/gpio/gpio-sim.c) as a module for the image's own
# Debian kernel, which does not build it (neither GPIO_SIM nor GPIO_MOCKUP is set in Debian's
# configs). With it the twin's button is a real line on a real gpiochip, read by wick through
# the kernel's GPIO character device exactly as on the Jetson. Building two files out of tree
# takes a minute; rebuilding Debian's kernel would take hours on two cores.
#
# Runs inside the image root (mmdebstrap's chroot), which has linux-headers-$KVER and
# linux-source-$SERIES installed; both are removed again by the caller.
# Usage: build.sh KVER
set -eu
kver="$1"
series=$(echo "$kver" | cut -d. -f1,2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=/usr/src/linux-source-$series.tar.xz
[ -f "$src" ] || { echo "gpio-sim: $src is missing (install linux-source-$series)" >&2; exit 1; }
tar -xJf "$src" -C "$work" --strip-components=1 \
  "linux-source-$series/drivers/gpio/gpio-sim.c" "linux-source-$series/kernel/irq/irq_sim.c"
cp "$work/drivers/gpio/gpio-sim.c" "$work/gpio-sim-main.c"
cp "$work/kernel/irq/irq_sim.c" "$work/irq_sim.c"
# irq_sim.c is built into the kernel when used and calls irq_to_desc(), which modules may not
# call; generic_handle_irq() is the exported function that does the same for this interrupt.
old='handle_simple_irq(irq_to_desc(irqnum))'
[ "$(grep -c -F "$old" "$work/irq_sim.c")" = 1 ] || {
  echo "gpio-sim: irq_sim.c of $series no longer has '$old' once; adapt $0" >&2; exit 1; }
sed -i "s/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/" "$work/irq_sim.c"
printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n' > "$work/Kbuild"
make -s -C "/lib/modules/$kver/build" M="$work" modules
install -D -m 644 "$work/gpio-sim.ko" "/lib/modules/$kver/updates/gpio-sim.ko"
depmod "$kver"
echo "gpio-sim: built for $kver"
