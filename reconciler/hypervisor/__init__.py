"""The hypervisor adapter: the only package that talks to libvirt.

``xml`` renders and ``projection`` parses libvirt XML; both are pure. ``adapter``
is the only module that imports ``libvirt`` and translates its errors.
"""
