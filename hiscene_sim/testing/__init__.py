"""Test support (like ``numpy.testing``): scene builders with ground truth, scorers and test
doubles for tests, benchmarks, scripts and the demo. The product's stages never import it.

* :mod:`.fused_scenes`: fused scenes (pybullet_data objects welded into ONE marching-cubes
  surface, as a voxel image-to-3D model returns a room) with per-vertex / per-face ground truth;
  the test set for scene parsing.
* :mod:`.parse_metrics`: scoring a parse of a fused scene against its ground truth.
* :mod:`.physics_scenes`: scene dirs of pybullet_data objects placed by rule (resting, stacked,
  lifted, sunk, tilted, overlapping) for the physics validation.
* :mod:`.articulated_assets`: a small cabinet (drawer + door) written as a URDF with OBJ / STL
  meshes, and one broken URDF per case the URDF importer must refuse.
* :mod:`.flow_doubles`: weight-free stand-ins for TRELLIS's sparse-structure VAE and flow model
  (Algorithm 3) whose answers are known in closed form.

The submodules are not imported here: each pulls in what it needs (``flow_doubles`` needs torch).
"""
