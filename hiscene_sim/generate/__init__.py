"""Generation (paper 3.2 scene initialisation, 3.4 spatially aligned regeneration, D background).

interfaces.py holds the typed boundaries to the neural models; flow.py and algorithm3_shape_prior.py
implement Algorithm 3 against them; flux.py, trellis.py and instantmesh.py are the adapters
(heavy imports inside them; instantmesh_compat.py keeps InstantMesh importable under transformers 5);
config.py names every setting (config key, flag, environment variable), checkpoints.py checks each
checkpoint's configuration before weights load, offline.py keeps loading off the network, preflight.py
lists every file a run needs (``hiscene generate --check``), loading.py builds and releases the run's
models; pipeline.py orchestrates ``hiscene generate``.
"""
