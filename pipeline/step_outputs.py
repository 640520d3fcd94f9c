"""Where a step's output goes when another step reads it: a PostgreSQL row, which every worker on
every machine reaches, never a worker's local disk. Only small values pass this way (the OCR
units' scan lists and counts); the stages' data stays in their own tables and object storage."""

from __future__ import annotations

import dagster as dg
import psycopg2.extras

from errors import NotFound
from pipeline.resources import ArchiveServicesResource

KEEP_DAYS = 30  # a run re-executed from failure reads its parent run's outputs, weeks later at most


def _key(identifier: list[str]) -> str:
    """run id / step key / output name [/ mapping key]: a re-executed run reads what its parent
    run's steps wrote, because Dagster hands the reader the parent's identifier."""
    return "/".join(identifier)


class StepOutputsIOManager(dg.ConfigurableIOManager):
    services: ArchiveServicesResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        with self.services.services().db.transaction() as cur:
            cur.execute("INSERT INTO step_outputs (output_key, value) VALUES (%s, %s) ON CONFLICT (output_key)"
                        " DO UPDATE SET value = EXCLUDED.value, written_at = now()",  # a retried step writes anew
                        (_key(context.get_identifier()), psycopg2.extras.Json(obj)))
            cur.execute("DELETE FROM step_outputs WHERE written_at < now() - make_interval(days => %s)",
                        (KEEP_DAYS,))

    def load_input(self, context: dg.InputContext) -> object:
        assert context.upstream_output is not None
        key = _key(context.upstream_output.get_identifier())
        with self.services.services().db.transaction() as cur:
            cur.execute("SELECT value FROM step_outputs WHERE output_key = %s", (key,))
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"步骤输出 {key} 不存在（超过 {KEEP_DAYS} 天已删除，或上游步骤未运行），请重新运行整个批次",
                           f"step output {key} is missing (removed after {KEEP_DAYS} days, or its step never ran):"
                           " run the whole batch again", item=key)
        return row["value"]
