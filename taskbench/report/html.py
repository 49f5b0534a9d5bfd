"""`report.html`: the whole run on one self-contained page (inline CSS, charts beside it in `charts/`).

The tables come from the Markdown renderer's own tables, so both reports always show the same columns;
every piece of text is escaped with `html.escape` on the way in.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taskbench.report import markdown
from taskbench.report.charts import Chart, ChartFiles
from taskbench.report.fmt import mb, ms, ratio
from taskbench.results import RunResult, ScenarioResult

CSS = """
:root { --fastapi: #009688; --celery: #e4572e; --bad: #c62828; --good: #2e7d32; --muted: #666; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin-top: 22px; } .muted { color: var(--muted); }
.verdict { background: #eef6f5; border-left: 4px solid var(--fastapi); padding: 8px 16px; font-size: 15px; }
.verdict li { margin: 4px 0; }
.banner { background: #fdecea; border-left: 4px solid var(--bad); padding: 8px 16px; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; font-size: 12.5px; margin: 8px 0 16px; }
th, td { border: 1px solid #d9dce1; padding: 4px 5px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #f0f2f5; font-weight: 600; font-size: 12px; }
table.faults td:last-child { font: 10.5px/1.3 ui-monospace, monospace; }
table.faults th:last-child { width: 24%; }
th:first-child { width: 17%; }
tr:nth-child(even) td { background: #fafbfc; }
td.ok { color: var(--good); font-weight: 600; } td.bad { color: var(--bad); font-weight: 600; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e5e8; }
figcaption { color: var(--muted); font-size: 12px; }
code { background: #f0f2f5; padding: 0 3px; border-radius: 3px; font-size: 12.5px; }
nav ul { columns: 2; font-size: 13px; } .failures li { color: var(--bad); }
section.scenario { border-top: 2px solid #e3e5e8; margin-top: 28px; }
.impl-fastapi { border-left: 4px solid var(--fastapi); padding-left: 8px; }
.impl-celery { border-left: 4px solid var(--celery); padding-left: 8px; }
"""

# Flags broken charts for readers (and for the test that loads this page in a headless browser).
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.documentElement.setAttribute("data-images", broken.length ? "broken" : "ok");
  document.documentElement.setAttribute("data-image-count", String(images.length));
  if (broken.length) {
    var note = document.getElementById("broken-images");
    note.hidden = false;
    note.textContent = broken.length + " chart(s) could not be loaded: keep report.html next to its charts/ folder.";
  }
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escape, then keep the little Markdown our report text uses: `code`, **bold**, <br> in cells."""
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return out.replace("&lt;br&gt;", "<br>")


def table_from_markdown(text: str, css_class: str = "") -> str:
    """An HTML table from a table written by `fmt.table` (header, separator, one line per row)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return ""

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split(" | ")]

    head = "".join(f"<th>{inline(c)}</th>" for c in cells(lines[0]))
    body = []
    for line in lines[2:]:
        row = "".join(f"<td{_mark(c)}>{inline(c)}</td>" for c in cells(line))
        body.append(f"<tr>{row}</tr>")
    attr = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _mark(cell: str) -> str:
    return ' class="ok"' if cell == "✓" else ' class="bad"' if cell == "✗" else ""


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{_mark(c)}>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bullets(lines: Iterable[str], css_class: str = "") -> str:
    items = "".join(f"<li>{inline(line)}</li>" for line in lines)
    return f'<ul class="{css_class}">{items}</ul>' if css_class else f"<ul>{items}</ul>"


def markdown_list(text: str) -> str:
    """Markdown bullets (top level "- ", nested "  - ") as nested HTML lists; other lines as paragraphs."""
    out: list[str] = []
    depth = 0
    for line in text.splitlines():
        level = 2 if line.startswith("  - ") else 1 if line.startswith("- ") else 0
        while depth > level:
            out.append("</li></ul>")
            depth -= 1
        if level == 0:
            out.append(f"<p>{inline(line)}</p>" if line.strip() else "")
            continue
        if depth == level:
            out.append("</li>")
        while depth < level:
            out.append("<ul>")
            depth += 1
        out.append(f"<li>{inline(line.lstrip()[2:])}")
    out += ["</li></ul>"] * depth
    return "".join(out)


def figures(charts: Sequence[Chart]) -> str:
    return "".join(
        f'<figure><img src="{esc(c.path)}" alt="{esc(c.title)}"><figcaption>{esc(c.title)}</figcaption></figure>'
        for c in charts
    )


def anchor(stem: str) -> str:
    return "s-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)


def key_figures(summary: dict[str, Any]) -> str:
    """The figures the verdict is made of, for one scenario, in one row."""
    s = summary
    responsive = s.get("responsive")
    return table(
        [
            "Completed",
            "Failed",
            "Lost",
            "Makespan ÷ ideal",
            "Submission p99",
            "Async probe p99",
            "Sync probe p99",
            f"Peak memory ({s['job_process']})",
            "Responsive",
        ],
        [
            [
                f"{s['completion']['completed']}/{s['jobs']}",
                str(s["completion"]["failed"]),
                str(s["executions"]["lost"]),
                ratio(s.get("makespan_ratio")),
                ms(s["submission"]["p99"]),
                ms(s["probes"]["async"]["p99"]),
                ms(s["probes"]["sync"]["p99"]),
                mb(s.get("peak_memory_mb")),
                "–" if responsive is None else "✓" if responsive else "✗",
            ]
        ],
    )


def scenario_section(result: ScenarioResult, summary: dict[str, Any], stem: str, charts: Sequence[Chart]) -> str:
    spec = result.spec
    failures = [f"**{f['rule']}**: {f['evidence']}" for f in summary.get("failures", [])]
    events = [f"{e.name} at +{e.t - result.started_at:.2f} s {e.detail}".strip() for e in result.events]
    fault = f", fault {spec.fault}" + (f" ({spec.variant})" if spec.variant else "") if spec.fault else ""
    intro = (
        f"{spec.jobs} × {spec.workload} jobs of {spec.duration_s} s on {spec.implementation}{fault}. "
        f"Capacity: {result.capacity.concurrency} at once ({result.capacity.reason}). "
        f"Deadline {result.deadline_s:.1f} s" + (" — passed before all jobs finished." if result.timed_out else ".")
    )
    return "".join(
        [
            f'<section class="scenario" id="{anchor(stem)}">',
            f'<h3 class="impl-{esc(spec.implementation)}">{esc(spec.label)}</h3>',
            f"<p>{esc(intro)}</p>",
            "<h4>Failures detected</h4>",
            bullets(failures, "failures") if failures else "<p>None detected.</p>",
            "<h4>Key figures</h4>",
            key_figures(summary),
            "<h4>Events</h4>",
            bullets(events) if events else "<p>No events.</p>",
            figures(charts),
            f'<p class="muted">Full figures: <a href="{esc(stem)}.md">{esc(stem)}.md</a>, '
            f'raw data: <a href="{esc(stem)}.json">{esc(stem)}.json</a></p>',
            "</section>",
        ]
    )


def render(run: RunResult, scenarios: list[ScenarioResult], chart_files: ChartFiles) -> str:
    from taskbench.report.files import scenario_stem

    summaries = run.summaries
    stems = [scenario_stem(r, run.timestamp) for r in scenarios]
    verdict = run.verdict.get("lines", []) or ["No scenario completed."]
    settings = [line.removeprefix("- ") for line in markdown.settings_text(run).splitlines()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>taskbench {esc(run.timestamp)}: FastAPI BackgroundTasks vs Celery</title>",
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body><main>",
        f"<h1>FastAPI BackgroundTasks vs Celery — {esc(run.timestamp)}</h1>",
        '<p id="broken-images" class="banner" hidden></p>',
        '<p class="banner">This run was interrupted: the results below are partial.</p>' if run.interrupted else "",
        '<h2 id="verdict">Verdict</h2>',
        f'<div class="verdict">{bullets(verdict)}</div>',
        "<h2>Settings and machine</h2>",
        bullets(settings),
        "<h2>Results (the spec's table)</h2>",
        table_from_markdown(markdown.spec_table(summaries)),
        "<h2>Extended figures</h2>",
        table_from_markdown(markdown.extended_table(summaries)),
        "<h3>Resources</h3>",
        table_from_markdown(markdown.resources_table(summaries)),
    ]
    if any(s["fault"] for s in summaries):
        parts += ["<h2>Faults</h2>", table_from_markdown(markdown.faults_table(summaries), "faults")]
    if chart_files.comparison:
        parts += ["<h2>Charts</h2>", figures(chart_files.comparison)]
    toc = [
        f'<li><a href="#{anchor(stem)}">{esc(r.spec.label)}</a></li>' for r, stem in zip(scenarios, stems, strict=True)
    ]
    parts += [
        "<h2>When FastAPI fails</h2>",
        markdown_list(markdown.when_fastapi_fails(summaries)),
        "<h2>How to read this</h2>",
        f"<p>{inline(markdown.thresholds_text(run.settings))}</p>",
        "<h2>Scenarios</h2>",
        "<nav><ul>" + "".join(toc) + "</ul></nav>",
    ]
    for result, summary, stem in zip(scenarios, summaries, stems, strict=True):
        parts.append(scenario_section(result, summary, stem, chart_files.scenarios.get(stem, [])))
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p)


def write(folder: Path, run: RunResult, scenarios: list[ScenarioResult], chart_files: ChartFiles) -> Path:
    path = folder / "report.html"
    path.write_text(render(run, scenarios, chart_files), encoding="utf-8")
    return path


def page_from_markdown(title: str, text: str) -> str:
    """A standalone page from our own Markdown (headings, bullets, `fmt.table` tables, paragraphs)."""
    body: list[str] = []
    for block in text.strip().split("\n\n"):
        first = block.lstrip()
        if first.startswith("#"):
            level = min(len(first) - len(first.lstrip("#")), 4)
            body.append(f"<h{level}>{inline(first.lstrip('#').strip())}</h{level}>")
        elif first.startswith("|"):
            body.append(table_from_markdown(block))
        elif first.startswith("- "):
            body.append(markdown_list(block))
        else:
            body.append(f"<p>{inline(block)}</p>")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>"
    )
