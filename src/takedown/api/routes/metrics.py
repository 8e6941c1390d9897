"""``GET /metrics`` (Prometheus text format, for a scraper's API key with the ``metrics``
scope) and ``GET /v1/health/ready`` (readiness, open: it names what is wrong and
nothing else)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from takedown.api.auth import require, runtime
from takedown.api.schemas import ReadyOut
from takedown.domain.access import Permission
from takedown.metrics import multiprocess_dir
from takedown.runtime import Runtime
from takedown.runtime.observability import Figure, database_figures, index_figures, readiness

router = APIRouter()
PREFIX = "takedown_"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class _Figures(Collector):
    def __init__(self, figures: list[Figure]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for f in self._figures:
            family = families.get(f.name)
            if family is None:
                family = families[f.name] = GaugeMetricFamily(
                    PREFIX + f.name, f.help, labels=[k for k, _ in f.labels]
                )
            family.add_metric([v for _, v in f.labels], f.value)
        yield from families.values()


class _Default(Collector):
    """This process's own counters (one serving process: no metric files)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def _exposition(rt: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)  # every worker's counters, summed
    else:
        registry.register(_Default())
    registry.register(_Figures([*index_figures(rt), *database_figures(rt)]))
    return generate_latest(registry)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {TEXT_FORMAT: {}}, "description": "Prometheus text format"}},
    dependencies=[Depends(require(Permission.METRICS))],
)
async def metrics(rt: Runtime = Depends(runtime)) -> Response:
    body = await asyncio.to_thread(_exposition, rt)
    return Response(body, media_type=TEXT_FORMAT, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/health/ready",
    response_model=ReadyOut,
    summary="Readiness: database, master key and bank index, each named",
    tags=["health"],
    responses={503: {"model": ReadyOut, "description": "Not ready; the failing checks say why"}},
)
async def ready(rt: Runtime = Depends(runtime)) -> JSONResponse:
    checks = await asyncio.to_thread(readiness, rt)
    ok = all(v is None for v in checks.values())
    body = ReadyOut(ready=ok, checks={k: v or "ok" for k, v in checks.items()})
    return JSONResponse(
        body.model_dump(), status_code=200 if ok else 503, headers={"Cache-Control": "no-store"}
    )
