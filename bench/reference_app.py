"""The reference server: Pixeltable's own FastAPIRouter with the same routes as bench/service.toml.

Started by bench/run.py as `python bench/reference_app.py --host 127.0.0.1 --port P` (from the repo root, with
PIXELTABLE_HOME set); it runs one uvicorn worker the way `pxt service run` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# importable as bench.bench_app... when started as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_app(*, background_route: bool = True) -> object:
    import fastapi
    from pixeltable.serving import FastAPIRouter

    from bench.bench_app import queries
    from bench.bench_app.schema import items

    router = FastAPIRouter()
    router.add_insert_route(items, path="/insert")
    router.add_update_route(items, path="/update")
    router.add_delete_route(items, path="/delete")
    router.add_query_route(path="/lookup", query=queries.lookup, one_row=True, method="get")
    router.add_query_route(path="/search", query=queries.search)
    if background_route:
        router.add_insert_route(items, path="/insert-bg", background=True)
    app = fastapi.FastAPI(title="Pixeltable FastAPIRouter (benchmark reference)")
    app.include_router(router)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()

    import uvicorn

    app = build_app()
    print(f"Serving the reference app at http://{args.host}:{args.port}/", flush=True)
    # as `pxt service run` does: one process, uvicorn's defaults, no logging config of its own
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
