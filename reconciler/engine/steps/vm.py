"""VirtualMachine steps: volumes, the definition, hot-plugged NICs, autostart and power.

Creation renders the domain from its shape; every later change patches what
libvirt has (:mod:`reconciler.hypervisor.patch`). What to do is read from the
change's intents alone, in this order: volumes, definition, autostart, NICs,
power.
"""

from __future__ import annotations

import contextlib
import time

from reconciler import errors
from reconciler.engine import ports
from reconciler.engine.outcome import Options, Outcome, describe
from reconciler.hypervisor import graphics, nwfilters, patch, xml
from reconciler.models import fields, firewall, kinds, record
from reconciler.planning import actions

__all__ = ["VmSteps"]

PowerState = kinds.PowerState


class VmSteps:
    def __init__(self, hv: ports.Hypervisor, options: Options) -> None:
        self.hv = hv
        self.options = options

    def apply(self, change: actions.Change, out: Outcome) -> None:
        name = change.object_name
        target = change.target
        assert isinstance(target, actions.VmTarget)
        assert change.owner is not None
        for define in change.intended(actions.DefineFilter):
            document = nwfilters.render(define.filter.name, define.filter.shape, define.uuid)
            self.hv.define_filter(define.filter.name, document)
        stopped = self._volumes(change, out)
        create = change.verb is actions.Verb.CREATE
        # Used only where the display wants a password and has none: it lives in libvirt alone.
        password = graphics.new_password(target.shape.graphics_type)
        if create:
            document = xml.render_domain(
                name,
                target.shape,
                domain_type=self.hv.domain_type,
                owner=change.owner,
                uuid=change.uuid,
                graphics_password=password,
            )
            out.uuid = self.hv.define_domain(name, document)
        elif change.intends(actions.Patch):
            document = patch.patch_domain(
                self.hv.domain_definition(name),
                target.shape,
                owner=change.owner,
                pools=self.hv.pool_directories(),
                name=name,
                graphics_password=password,
            )
            out.uuid = self.hv.define_domain(name, document)
        for autostart in change.intended(actions.SetAutostart):
            self.hv.set_domain_autostart(name, autostart.autostart)
        if not stopped:
            for plug in change.intended(actions.Hotplug):
                self.hv.attach_device(name, xml.render_interface(plug.nic))
            for nic in change.intended(actions.UpdateNicFilter):
                self.hv.update_interface_filter(name, nic.mac, nic.filter)
            if change.intends(actions.SyncGraphicsPassword):
                self.hv.sync_graphics_password(name)
        if create:
            out.step("created", "Created", f"{change.key} defined")
        elif any(not isinstance(i, actions.Power | actions.Restart) for i in change.intents) or any(
            f.impact is actions.Impact.RECORD for f in change.fields
        ):
            out.steps.append("updated")
            out.event("Updated", f"{change.key} updated: {describe(change)}", diff=True)
        self._power(change, target, out, stopped=stopped)
        self._delete_seeds(change, out)
        for gone in change.intended(actions.UndefineFilter):
            with contextlib.suppress(errors.NotFoundError):
                self.hv.undefine_filter(gone.name)

    def undefine(self, change: actions.Change) -> None:
        if change.intends(actions.Power):
            # Running when planned: ACPI first, forced off after the timeout, the wait
            # announced like apply's (the progress bar counts it down).
            self._stop(change)
        # The TPM's state (BitLocker's keys, say) goes with the data it protects: kept
        # while any of the VM's volumes is, deleted when every one of them is.
        keep_tpm = any(not volume.deletes for volume in change.retained)
        self.hv.undefine_domain(change.object_name, keep_tpm=keep_tpm)
        # Its own nwfilter, if it had one: referenced by its NICs only, so free now.
        with contextlib.suppress(errors.NotFoundError):
            self.hv.undefine_filter(firewall.vm_filter(change.key.name))

    def _stop(self, change: actions.Change) -> bool:
        """Shut the guest down (ACPI, then forced); the wait's deadline is announced."""
        timeout = self.options.shutdown_timeout
        self.options.on_wait(change.key, time.monotonic() + timeout)
        try:
            return self.hv.stop_domain(change.object_name, timeout=timeout)
        finally:
            self.options.on_wait(change.key, None)

    # --- volumes ----------------------------------------------------------------

    def _volumes(self, change: actions.Change, out: Outcome) -> bool:
        """Create, grow, recreate or adopt the VM's volumes; True when it was shut down for it."""
        stopped = False
        for intent in change.intents:
            match intent:
                case actions.RecreateVolume(volume, stop_first):
                    if stop_first and not stopped:
                        self._stop(change)
                        stopped = True
                    self.hv.delete_volume(volume.pool, volume.volume)
                    out.event(
                        "VolumeDeleted",
                        f"volume {volume.pool}/{volume.volume} deleted to change its image",
                        warning=True,
                    )
                    self._create_volume(change, volume, out)
                case actions.CreateVolume(volume):
                    self._create_volume(change, volume, out)
                case actions.UploadSeed(seed):
                    self._upload_seed(seed, out)
                case actions.AdoptVolume(volume):
                    out.event(
                        "VolumeAdopted",
                        f"volume {volume.pool}/{volume.volume} adopted: used as it is, "
                        "never grown or deleted",
                    )
                case actions.GrowVolume(volume, old, live):
                    self.hv.grow_volume(
                        volume.pool,
                        volume.volume,
                        volume.size,
                        domain=change.object_name if live and not stopped else None,
                    )
                    out.event(
                        "VolumeResized",
                        f"volume {volume.pool}/{volume.volume} grown "
                        f"{fields.format_size(old)} -> {fields.format_size(volume.size)}",
                    )
                case _:
                    pass  # not a volume intent
        return stopped

    def _upload_seed(self, seed: actions.SeedTarget, out: Outcome) -> None:
        """Upload a seed under its content's name; one already there is that content."""
        try:
            self.hv.upload_seed(seed.pool, seed.volume, seed.seed)
        except errors.ExistsError:
            return  # uploaded by an earlier pass killed before it attached it
        out.event(
            "SeedUploaded", f"{seed.seed.field} seed uploaded as volume {seed.pool}/{seed.volume}"
        )

    def _delete_seeds(self, change: actions.Change, out: Outcome) -> None:
        for gone in change.intended(actions.DeleteSeed):
            out.released.append(record.VolumeRecord(gone.pool, gone.volume, change.key, ""))
            with contextlib.suppress(errors.NotFoundError):
                self.hv.delete_volume(gone.pool, gone.volume)
                out.event(
                    "VolumeDeleted", f"volume {gone.pool}/{gone.volume} deleted (a superseded seed)"
                )

    def _create_volume(
        self, change: actions.Change, volume: actions.VolumeTarget, out: Outcome
    ) -> None:
        try:
            self.hv.create_volume(
                volume.pool,
                volume.volume,
                volume.size,
                backing=volume.image,
                backing_pool=volume.image_pool,
            )
        except errors.ExistsError:
            if not volume.created:
                # Someone else's file, out of sight when planned (a stopped pool, or made
                # since): never taken over. The name claimed for it is given back.
                out.released.append(
                    record.VolumeRecord(volume.pool, volume.volume, change.key, volume.disk)
                )
                raise errors.RefusedError(
                    f"volume {volume.pool}/{volume.volume} exists but was not created by this "
                    "installation, so it is never taken over; move it away, or name it with "
                    "volume: and pass --adopt to use it as it is"
                ) from None
            # Ours (the inventory says so): retained, one a killed earlier apply created, or
            # one that was out of sight in a stopped pool. Reuse it, grown if smaller.
            existing = self.hv.volume(volume.pool, volume.volume)
            if existing.capacity < volume.size:
                self.hv.grow_volume(volume.pool, volume.volume, volume.size)
            out.event(
                "VolumeReused",
                f"volume {volume.pool}/{volume.volume} exists and is reused "
                f"({fields.format_size(max(existing.capacity, volume.size))})",
            )
            return
        out.event(
            "VolumeCreated",
            f"volume {volume.pool}/{volume.volume} created ({fields.format_size(volume.size)})",
        )

    # --- power ------------------------------------------------------------------

    def _power(
        self, change: actions.Change, target: actions.VmTarget, out: Outcome, *, stopped: bool
    ) -> None:
        name = change.object_name
        want = target.power
        if stopped:  # shut down to recreate a volume: back to the declared power state
            if want is PowerState.STOPPED:
                out.step("stopped", "Stopped", f"{change.key} shut down")
            else:
                self.hv.start_domain(name, paused=want is PowerState.PAUSED)
                out.step("restarted", "Restarted", f"{change.key} restarted on its new volume")
            return
        if change.intends(actions.Restart):
            self._stop(change)
            self.hv.start_domain(name, paused=want is PowerState.PAUSED)
            out.step(
                "restarted", "Restarted", f"{change.key} restarted to apply its new configuration"
            )
            return
        for power in change.intended(actions.Power):
            self._transition(change, power.current, power.want, out)

    def _transition(
        self, change: actions.Change, current: PowerState, want: PowerState, out: Outcome
    ) -> None:
        name = change.object_name
        if current is want:
            return
        if want is PowerState.STOPPED:
            graceful = self._stop(change)
            how = (
                "shut down" if graceful else f"forced off after {self.options.shutdown_timeout:g}s"
            )
            out.step("stopped", "Stopped", f"{change.key} {how}")
        elif want is PowerState.PAUSED:
            if current is PowerState.STOPPED:
                self.hv.start_domain(name, paused=True)
            else:
                self.hv.suspend_domain(name)
            out.step("paused", "Paused", f"{change.key} paused")
        elif current is PowerState.PAUSED:
            self.hv.resume_domain(name)
            out.step("resumed", "Resumed", f"{change.key} resumed")
        else:
            self.hv.start_domain(name)
            out.step("started", "Started", f"{change.key} started")
