"""What OpenTelemetry's ASGI middleware would add to a refusal, in one process.

The proxy does not ship tracing (docs/design.md, "No OpenTelemetry"): this is the measurement
behind that. It wraps the app in ``opentelemetry-instrumentation-asgi``'s middleware with the
SDK's tracer provider, once sampling every request (spans batched to an exporter that drops
them) and once sampling none, and compares the CPU per refusal with the app alone, driven
directly and alternating in rounds as bench/routing.py does. Its packages are not the
project's dependencies:

    .venv/bin/pip install opentelemetry-instrumentation-asgi opentelemetry-sdk
    .venv/bin/python -m bench.tracing
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench.routing import drive, subject


def traced(app: Any, *, sampled: bool) -> Any:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    class Nowhere(SpanExporter):  # type: ignore[misc]  # untyped here: not installed for mypy
        """Takes the batches and drops them: the export's own cost is not the question."""

        def export(self, spans: Any) -> Any:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(Nowhere()))
    return OpenTelemetryMiddleware(app, tracer_provider=provider)


async def main(rounds: int = 5, n: int = 5_000) -> None:
    proxy, cases = subject()
    wrapped = {"every request sampled": traced(proxy, sampled=True)}
    wrapped["none sampled"] = traced(proxy, sampled=False)
    async with proxy.lifespan():
        for name, (path, token) in cases.items():
            headers = [(b"authorization", b"Bearer " + token)]
            alone: list[float] = []
            ratios: dict[str, list[float]] = {kind: [] for kind in wrapped}
            for _ in range(rounds):
                direct = await drive(proxy, path, headers, n)
                alone.append(direct)
                for kind, app in wrapped.items():
                    ratios[kind].append(await drive(app, path, headers, n) / direct)
            figures = "; ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items())
            print(f"{name}: proxy alone {statistics.median(alone) * 1e6:.1f} µs; traced: {figures}")


if __name__ == "__main__":
    asyncio.run(main())
