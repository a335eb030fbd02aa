"""Loading manifests from files and stdin, validating them, locating every error.

* :mod:`~reconciler.manifests.loader` — :func:`~reconciler.manifests.loader.load`,
  the one entry point: paths in, a validated ``DesiredState`` out, or one
  ``ManifestError`` listing every problem as ``FILE:LINE:COL: KIND/NAME: FIELD: message``;
* :mod:`~reconciler.manifests.schema` — JSON Schemas for editors, generated from
  the models into ``schemas/`` (``scripts/gen-schemas``);
* :mod:`~reconciler.manifests.paths` — :func:`is_manifest`, which files under a
  directory are manifests, for the loader's walk and the daemon's watcher alike;
* ``_yaml`` (documents plus node positions) and ``_pydantic`` (pydantic errors
  located and reworded) are private helpers of the loader.
"""

from reconciler.manifests.paths import is_manifest

__all__ = ["is_manifest"]
