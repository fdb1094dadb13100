"""``hiscene batch``: many scenes at once, each a Ray task, into one dataset folder.

Modules:

- :mod:`~hiscene_sim.batch.jobs`: the batch settings (:class:`BatchConfig`), the inputs ->
  scene jobs (fused scene files, scene dirs, prompt files), the resume key of a scene;
- :mod:`~hiscene_sim.batch.stages`: one scene from its input to its validated export
  (:func:`run_scene`), usable without Ray; written to a temp dir and renamed into place;
- :mod:`~hiscene_sim.batch.runner`: the scenes on Ray (local or a cluster), retries,
  resume, Ctrl-C (:func:`run_batch`);
- :mod:`~hiscene_sim.batch.variants`: plausible variants by seeded jitter, settled and
  validated, only the valid ones kept;
- :mod:`~hiscene_sim.batch.manifest`: ``manifest.jsonl`` / ``manifest.parquet``, the summary
  table and the contact sheet;
- :mod:`~hiscene_sim.batch.progress`: the progress display (live on a terminal, log lines in CI);
- :mod:`~hiscene_sim.batch.commands`: the CLI (``add_batch_parser``).

Ray is imported only by the runner, when a batch runs on it.
"""
