#!/usr/bin/env python3
"""Writes wick's NVMe partition layout for the Jetson: NVIDIA's A/B layout from the BSP
(tools/kernel_flash/flash_l4t_t234_nvme_rootfs_ab.xml: boot chain, kernels and root slots APP
and APP_b for each side) with one partition added after APP_b, `data`, holding /data's image.
The flash scripts write a partition's <filename> from Linux_for_Tegra/bootloader/. `data` grows
to the end of the disk (allocation attribute 0x808, as NVIDIA's single-slot layout does for
APP), and systemd grows its file system to match at first mount (x-systemd.growfs in fstab).

Usage: nvme-layout.py NVIDIA.xml OUT.xml IMAGE_NAME IMAGE_BYTES
"""

import sys
import xml.etree.ElementTree as ET


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    src, out, image, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        tree = ET.parse(src)
    except (OSError, ET.ParseError) as e:
        print(f"nvme-layout.py: {src}: {e}", file=sys.stderr)
        return 1
    devices = [d for d in tree.getroot().iter("device") if d.get("type") == "external"]
    if len(devices) != 1:
        print(f"nvme-layout.py: {src} has {len(devices)} external devices, expected one (NVIDIA's NVMe A/B layout)", file=sys.stderr)
        return 1
    device = devices[0]
    parts = list(device.iter("partition"))
    names = [p.get("name") for p in parts]
    if "APP" not in names or "APP_b" not in names:
        print(f"nvme-layout.py: {src} has no APP and APP_b partitions (partitions: {', '.join(map(str, names))}): "
              "not an A/B root layout", file=sys.stderr)
        return 1
    if "data" in names:
        print(f"nvme-layout.py: {src} already has a partition named data", file=sys.stderr)
        return 1
    data = ET.Element("partition", name="data", type="data")
    for tag, text in [("allocation_policy", "sequential"), ("filesystem_type", "basic"), ("size", str(size)),
                      ("file_system_attribute", "0"), ("allocation_attribute", "0x808"), ("percent_reserved", "0"),
                      ("filename", image),
                      ("description", "wick's /data: models, settings, state and logs; updates never write it")]:
        ET.SubElement(data, tag).text = f" {text} "
    children = list(device)
    at = children.index(next(p for p in parts if p.get("name") == "APP_b")) + 1
    device.insert(at, data)
    ET.indent(tree, space="    ")
    tree.write(out, encoding="unicode", xml_declaration=True)
    print(f"nvme-layout.py: {out}: {len(names) + 1} partitions, data ({size // (1 << 20)} MiB image) after APP_b")
    return 0


if __name__ == "__main__":
    sys.exit(main())
