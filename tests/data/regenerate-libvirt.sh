#!/usr/bin/env bash
# Regenerate the libvirt documents the patch tests start from
# (tests/unit/test_patch.py): domains/ and networks/. Each is virt-install 4.1's --print-xml output for
# one configuration, defined on the local libvirtd and read back inactive, so it
# is exactly what libvirt hands the reconciler: then undefined again. Disks point
# at files virt-install's default pool would hold; the files are created empty
# for the run and removed. Run as root next to a running libvirtd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/domains"
images=/var/lib/libvirt/images
uri=qemu:///system

common=(--connect "$uri" --print-xml --virt-type qemu --import --noautoconsole --memory 64)

generate() {
  local name=$1
  shift
  local disk=$images/$name.qcow2
  qemu-img create -q -f qcow2 "$disk" 16M
  virt-install "${common[@]}" --name "$name" "$@" >"$name.print.xml"
  virsh -c "$uri" -q define "$name.print.xml" >/dev/null
  virsh -c "$uri" dumpxml --inactive --security-info "$name" >"$name.xml"
  virsh -c "$uri" -q undefine --nvram "$name" >/dev/null
  rm -f "$disk" "$name.print.xml"
}

generate vi-passthrough --osinfo debian11 --vcpus 2 --cpu host-passthrough \
  --disk "path=$images/vi-passthrough.qcow2,format=qcow2" \
  --network network=default,mac=52:54:00:10:00:01 --graphics vnc,listen=127.0.0.1 \
  --rng /dev/urandom --channel unix,target.type=virtio,name=org.qemu.guest_agent.0

generate vi-spice-tpm --osinfo debian11 --vcpus 1 --machine q35 \
  --disk "path=$images/vi-spice-tpm.qcow2,format=qcow2" \
  --network network=default,mac=52:54:00:10:00:02 \
  --graphics spice,listen=127.0.0.1,password=s3cret --channel spicevmc \
  --channel unix,target.type=virtio,name=org.qemu.guest_agent.0 \
  --redirdev usb,type=spicevmc --redirdev usb,type=spicevmc \
  --tpm emulator,model=tpm-crb,version=2.0 --sound ich9 --video qxl

generate vi-uefi-secboot --osinfo debian11 --vcpus 2,maxvcpus=4 --machine q35 \
  --boot uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,loader_secure=yes \
  --features smm.state=on \
  --disk "path=$images/vi-uefi-secboot.qcow2,format=qcow2,bus=sata" \
  --network network=default,mac=52:54:00:10:00:03,model=e1000e --graphics none \
  --clock offset=localtime,hpet_present=no

generate vi-two-nics --osinfo generic --vcpus 1 \
  --disk "path=$images/vi-two-nics.qcow2,format=qcow2,bus=ide" \
  --network network=default,mac=52:54:00:10:00:04,model=e1000 \
  --network network=default,mac=52:54:00:10:00:05,model=virtio \
  --network bridge=br0,mac=52:54:00:10:00:06 \
  --disk device=cdrom --graphics vnc --input tablet,bus=usb

# A network with what the schema does not model: IPv6, DNS records, a lease time,
# a NAT port range and the bridge's MAC.
cat >../networks/vi-lab.source.xml <<'XML'
<network>
  <name>vi-lab</name>
  <forward mode='nat'>
    <nat><port start='20000' end='30000'/></nat>
  </forward>
  <bridge name='virbr-vilab' stp='on' delay='0'/>
  <mac address='52:54:00:7a:01:02'/>
  <domain name='lab.internal' localOnly='yes'/>
  <dns>
    <host ip='10.77.0.5'><hostname>files</hostname><hostname>files.lab.internal</hostname></host>
    <txt name='note' value='kept'/>
  </dns>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.100' end='10.77.0.150'>
        <lease expiry='2' unit='hours'/>
      </range>
      <host mac='52:54:00:7a:00:10' name='db-1' ip='10.77.0.10'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:77::1' prefix='64'>
    <dhcp>
      <range start='fd00:77::100' end='fd00:77::1ff'/>
    </dhcp>
  </ip>
</network>
XML
virsh -c "$uri" -q net-define ../networks/vi-lab.source.xml >/dev/null
virsh -c "$uri" net-dumpxml --inactive vi-lab >../networks/vi-lab.xml
virsh -c "$uri" -q net-undefine vi-lab >/dev/null
rm ../networks/vi-lab.source.xml
