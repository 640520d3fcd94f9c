"""Entry point loaded by `dagster dev -m pipeline.definitions` and `dagster definitions validate`."""

import dagster as dg

from pipeline.assets import ASSETS
from pipeline.resources import ArchiveServicesResource, OcrEngineResource, SignerResource
from pipeline.sensors import make_inbox_sensor

batch_job = dg.define_asset_job("process_batch", selection=dg.AssetSelection.assets(*ASSETS))

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[batch_job],
    sensors=[make_inbox_sensor(batch_job)],
    resources={
        "services": ArchiveServicesResource(),
        "ocr_engine": OcrEngineResource(),
        "signer": SignerResource(),
    },
)
