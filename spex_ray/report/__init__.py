"""`spex-ray report`: one self-contained HTML page of a run, Ray-free.

    run.py       RunData and load_run(): a run directory, finished or still in progress
                 (its journals); save_sim_run(): an in-process simulate() batch as one
    summary.py   the summary table's figures (throughput, latency, tokens, speculation,
                 per-engine occupancy)
    timeline.py  per engine, a Gantt chart of requests by kind and outcome, and the
                 running sequences over time
    tree.py      a query's search tree, picked from a list
    compare.py   against a baseline run: speedup, accuracy difference, latency scatter
    page.py      the HTML page (plotly.js inline)
    build.py     write_report(run_dir, baseline_dir, output)

`from spex_ray.report import write_report` imports plotly only when first used.
"""

from __future__ import annotations

from spex_ray.registry import lazy_attributes

_LAZY = {
    "write_report": "spex_ray.report.build",
    "report_html": "spex_ray.report.build",
    "load_run": "spex_ray.report.run",
    "save_sim_run": "spex_ray.report.run",
    "RunData": "spex_ray.report.run",
}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["RunData", "load_run", "report_html", "save_sim_run", "write_report"]
