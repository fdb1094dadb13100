"""A batch scene's (or variant's) stages through the orchestrator, each stage here or as its
own Ray task with the resources ``--stage-resources`` gives its group."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from hiscene_sim.batch.jobs import BatchConfig
from hiscene_sim.batch.ray_calls import call_stage

log = logging.getLogger(__name__)

# the orchestrator's stages -> the batch's resource names (``--stage-resources``)
RESOURCE_OF_STAGE = {
    "image": "generate", "scene3d": "generate", "regenerate": "generate", "background": "generate",
    "import": "parse", "parse": "parse", "complete": "parse", "label": "parse",
    "export": "export", "settle": "validate", "validate": "validate",
}


def stage_export_config(config: BatchConfig):
    """The export settings with the per-object process count of the export stage."""
    res = config.stage_resources("export") or config.stage_resources("scene")
    workers = config.export.workers or max(1, int(res.cpus if res else 1))
    return replace(config.export, workers=workers)


def pipeline_options(config: BatchConfig):
    from hiscene_sim.orchestrator import PipelineOptions

    return PipelineOptions(parse=config.parse, label=config.label, export=stage_export_config(config), validation=config.validation)


def scene_pipeline(source, root: Path, config: BatchConfig, stages: tuple[str, ...]):
    """Run ``stages`` of the orchestrator on ``source`` (a SceneInput) into ``root``
    (``scene/``, ``export/``, ``work/``), each stage inline or as its own Ray task."""
    from hiscene_sim.orchestrator import PipelineLayout, PipelineRequest, run_pipeline

    request = PipelineRequest(PipelineLayout.side_by_side(root, ledger=False), stages, source=source, progress=False)
    return run_pipeline(request, pipeline_options(config), echo=lambda line: log.info(line.strip()),
                        call=lambda stage, fn, *args: call_stage(RESOURCE_OF_STAGE.get(stage, stage), config, fn, *args))
