"""Scene dir -> simulator assets: watertight visual meshes, CoACD collision hulls, mass and
inertia, and the URDF / USD / MJCF / GLB writers. Entry point: :func:`exporters.export.export_scene`."""
