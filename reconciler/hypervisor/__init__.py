"""The hypervisor adapter: the only package that talks to libvirt.

``xml`` renders, ``patch`` edits and ``projection`` parses libvirt XML; all three
are pure. ``adapter.Hypervisor`` is the facade the layers above use; the libvirt
calls are made per kind in ``domains``, ``networks`` and ``pools`` (see
``handler``), over the connection of ``connection``, which translates libvirt's
errors. ``events`` runs libvirt's event loop and delivers lifecycle events.
"""
