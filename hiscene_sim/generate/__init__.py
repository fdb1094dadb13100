"""Generation (paper 3.2 scene initialisation, 3.4 spatially aligned regeneration, D background).

interfaces.py holds the typed boundaries to the neural models; flow.py and algorithm3_shape_prior.py
implement Algorithm 3 against them; flux.py, trellis.py and instantmesh.py are the adapters
(heavy imports inside them); pipeline.py orchestrates ``hiscene generate``.
"""
