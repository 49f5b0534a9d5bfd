"""`report.html` and HTML pages: the same `content` blocks as the Markdown, rendered as HTML from the data.

One self-contained page (inline CSS, charts beside it in `charts/`); every piece of text is escaped with
`html.escape` on the way in, then the two bits of Markdown our text uses (`code`, **bold**) are restored.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence

from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.analysis.verdict import BASELINE
from taskbench.record.results import ScenarioResult
from taskbench.report import at_a_glance, content, held_behind
from taskbench.report import blocks as parts
from taskbench.report.blocks import Block, Bullets, Cell, ChartRef, Heading, Paragraph, Table
from taskbench.report.names import scenario_stem
from taskbench.report.palette import FALLBACK, colours

CSS = """
:root { --accent: #009688; --bad: #c62828; --good: #2e7d32; --muted: #666; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin-top: 22px; } .muted { color: var(--muted); }
.verdict { background: #eef6f5; border-left: 4px solid var(--accent); padding: 8px 16px; font-size: 15px; }
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
h3.impl { border-left: 4px solid; padding-left: 8px; }
.scroll { overflow-x: auto; }
@media (max-width: 700px) {  /* a phone: tables and charts keep a readable size and scroll sideways in place */
  main { padding: 8px 10px 32px; } h1 { font-size: 18px; } h2 { font-size: 16px; } nav ul { columns: 1; }
  table { min-width: 640px; font-size: 12px; } table.answer, table.decisions { min-width: 560px; }
  figure { overflow-x: auto; } figure img { max-width: none; width: 640px; }
}
"""

# Flags broken charts for readers (and for the test that loads this page in a headless browser).
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.documentElement.setAttribute("data-images", broken.length ? "broken" : "ok");
  document.documentElement.setAttribute("data-image-count", String(images.length));
  var root = document.documentElement, answer = document.querySelector("table.answer, table.decisions");
  root.setAttribute("data-page-overflow", String(root.scrollWidth > window.innerWidth + 1));
  if (answer) { root.setAttribute("data-answer-top", String(Math.round(answer.getBoundingClientRect().top))); }
  if (broken.length) {
    var note = document.getElementById("broken-images");
    note.hidden = false;
    note.textContent = broken.length + " chart(s) could not be loaded.";
  }
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escape, then keep the little Markdown our report text uses: `code` and **bold**."""
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _mark(cell: Cell) -> str:
    return ' class="ok"' if cell == "✓" else ' class="bad"' if cell == "✗" else ""


def cell(value: Cell) -> str:
    return inline(value) if isinstance(value, str) else "<br>".join(inline(line) for line in value)


def table(t: Table) -> str:
    head = "".join(f"<th>{inline(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td{_mark(c)}>{cell(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    attr = f' class="{esc(t.css_class)}"' if t.css_class else ""
    return f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def bullets(b: Bullets) -> str:
    items = []
    for item in b.items:
        children = "".join(f"<li>{inline(child)}</li>" for child in item.children)
        items.append(f"<li>{inline(item.text)}" + (f"<ul>{children}</ul>" if children else "") + "</li>")
    attr = f' class="{esc(b.css_class)}"' if b.css_class else ""
    return f"<ul{attr}>{''.join(items)}</ul>"


def figures(charts: Iterable[ChartRef]) -> str:
    return "".join(
        f'<figure><img src="{esc(c.path)}" alt="{esc(c.alt or c.title)}">'
        f"<figcaption>{esc(c.title)}</figcaption></figure>"
        for c in charts
    )


def block(b: Block) -> str:
    if isinstance(b, Heading):
        level = min(b.level, 6)
        anchor = f' id="{esc(b.anchor)}"' if b.anchor else ""
        return f"<h{level}{anchor}>{inline(b.text)}</h{level}>"
    if isinstance(b, Paragraph):
        text = b.text.removeprefix("> ")
        css = "banner" if b.text.startswith("> ") else b.css_class
        return f'<p class="{esc(css)}">{inline(text)}</p>' if css else f"<p>{inline(text)}</p>"
    if isinstance(b, Bullets):
        return bullets(b)
    if isinstance(b, Table):
        return table(b)
    return figures(b.charts)


def blocks(items: Iterable[Block]) -> str:
    return "".join(block(b) for b in items)


def page(title: str, body: str, script: bool = False) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{CSS}</style>" + (f"<script>{SCRIPT}</script>" if script else "") + "</head><body><main>",
            body,
            "</main></body></html>",
        ]
    )


def document(title: str, items: Sequence[Block]) -> str:
    """A standalone page of blocks (the side-by-side comparison of two runs)."""
    return page(title, blocks(items))


def anchor(stem: str) -> str:
    return "s-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)


def scenario_section(
    result: ScenarioResult, summary: ScenarioSummary, stem: str, charts: Sequence[ChartRef], colour: str = FALLBACK
) -> str:
    failures = content.failure_bullets(summary)
    events = content.event_lines(result)
    return "".join(
        [
            f'<section class="scenario" id="{anchor(stem)}">',
            f'<h3 class="impl" style="border-left-color: {esc(colour)}">{esc(result.run_label)}</h3>',
            f"<p>{inline(content.scenario_intro(result, summary))}</p>",
            blocks(content.harness_warning([summary])),
            "<h4>Failures detected</h4>",
            bullets(parts.bullets(failures, "failures")) if failures else "<p>None detected.</p>",
            "<h4>Key figures</h4>",
            table(content.key_figures(summary)),
            "<h4>Events</h4>",
            bullets(parts.bullets(events)) if events else "<p>No events.</p>",
            figures(charts),
            f'<p class="muted">Full figures: <a href="{esc(stem)}.md">{esc(stem)}.md</a>, '
            f'raw data: <a href="{esc(stem)}.json">{esc(stem)}.json</a></p>',
            "</section>",
        ]
    )


def _median_runs(scenarios: Sequence[ScenarioResult], summaries: Sequence[ScenarioSummary]) -> set[int]:
    """The index of each scenario's run in the middle by mean total time, as `analysis.repeats` picks it."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for i, (result, summary) in enumerate(zip(scenarios, summaries, strict=True)):
        groups.setdefault(result.spec.group.model_dump_json(), []).append((i, summary.total_time.avg or 0.0))
    picked = set()
    for runs in groups.values():
        ordered = sorted(runs, key=lambda item: item[1])
        picked.add(ordered[(len(ordered) - 1) // 2][0])
    return picked


def report(
    run: AnalysedRun,
    scenarios: Sequence[ScenarioResult],
    comparison_charts: Sequence[ChartRef] = (),
    scenario_charts: Mapping[str, Sequence[ChartRef]] | None = None,
) -> str:
    """`report.html`: verdict first, then settings, tables, charts, and every scenario.

    `scenarios` in the order of `run.scenario_summaries` (one per run of a scenario); `scenario_charts` by
    scenario stem."""
    by_stem = scenario_charts or {}
    stems = [scenario_stem(r.spec, run.timestamp) for r in scenarios]
    palette = colours([i.name for i in run.implementations])
    title = content.run_title(run)
    answer = run.verdict.headline[0] if run.verdict.headline else (run.verdict.lines or ["No verdict."])[0]
    first_chart = [c for c in comparison_charts if c.path.endswith(at_a_glance.ANSWER_CHART)]
    first_chart = first_chart or list(comparison_charts[:1])
    glance: list[Block] = []
    if run.verdict.answers:
        glance = [at_a_glance.answer_table(run, run.verdict.answers), Paragraph(at_a_glance.meaning(run), "muted")]
    decision: list[Block] = [Heading("Decision"), content.decision_table(run)] if run.verdict.decisions else []
    details = _details(run, [c for c in comparison_charts if c not in first_chart])
    median = _median_runs(scenarios, run.scenario_summaries)
    every = zip(scenarios, run.scenario_summaries, stems, strict=True)
    shown = [(r, s, stem) for i, (r, s, stem) in enumerate(every) if i in median]
    toc = [f'<li><a href="#{anchor(stem)}">{esc(r.run_label)}</a></li>' for r, _, stem in shown]
    body = [
        block(Heading(f"{title} — {run.timestamp}", 1)),
        '<p id="broken-images" class="banner" hidden></p>',
        '<p class="banner">This run was interrupted: the results below are partial.</p>' if run.interrupted else "",
        block(Heading("Answer", 2, "verdict")),
        f'<div class="verdict"><p>{inline(answer)}</p></div>',
        blocks(glance),
        figures(first_chart),
        blocks(decision),
        blocks(content.unavailable(run)),
        *(f"<details><summary>{esc(name)}</summary>{blocks(items)}</details>" for name, items in details if items),
        block(Heading("Scenarios")),
        '<p class="muted">With repeats, the run in the middle of each scenario (by mean total time) is shown; '
        "every run has its own Markdown and JSON.</p>"
        if run.settings.repeat > 1
        else "",
        "<nav><ul>" + "".join(toc) + "</ul></nav>",
    ]
    for result, summary, stem in shown:
        colour = palette.get(result.spec.implementation, FALLBACK)
        body.append(
            f"<details><summary>{esc(result.run_label)} — {esc(summary.status)}</summary>"
            + scenario_section(result, summary, stem, by_stem.get(stem, []), colour)
            + "</details>"
        )
    return page(f"taskbench {run.timestamp}: {title}", "\n".join(p for p in body if p), script=True)


def _details(run: AnalysedRun, comparison_charts: Sequence[ChartRef]) -> list[tuple[str, list[Block]]]:
    """The report's collapsed sections, by title: those that apply to this run."""
    summaries = run.summaries
    details: list[tuple[str, list[Block]]] = [
        ("Verdict, in full", [parts.bullets(content.verdict_lines(run))]),
        (
            "Settings and machine",
            [
                parts.bullets(content.run_facts(run)),
                content.implementations_table(
                    run.implementations, [*run.settings.workloads, *(j.path for j in run.settings.user_jobs)]
                ),
            ],
        ),
    ]
    if any(s.rate for s in summaries):
        details.append(("Sustained load", [*content.rate_notes(run), content.rate_table(summaries)]))
    details.append(("Results (the spec's table)", [content.spec_table(summaries)]))
    details.append(
        (
            "Extended figures and resources",
            [
                content.extended_table(summaries),
                content.resources_table(summaries),
                *content.resources_notes(summaries, run.settings.pause_neighbours),
            ],
        )
    )
    if any(s.workload == "noop" and not s.fault for s in summaries):
        details.append(("Short jobs (noop): what each runner costs", [content.short_jobs_table(summaries, run)]))
    if run.ceilings is not None:
        ceilings: list[Block] = [
            Paragraph(content.CEILINGS_MEANING),
            parts.bullets(content.ceiling_lines(run.ceilings)),
        ]
        details.append(("This host's ceilings", ceilings))
    if autoscaler := content.autoscaler_blocks(run):
        details.append(("What an autoscaler sees", autoscaler[1:]))
    if held := held_behind.blocks(run):
        details.append(("What a worker holds behind a long job", held[1:]))
    if content.left_behind_table(summaries).rows:
        left: list[Block] = [Paragraph(content.LEFT_BEHIND_MEANING), content.left_behind_table(summaries)]
        details.append(("What a burst leaves behind", left))
    if any(s.fault for s in summaries):
        faults = [content.faults_table(summaries), *content.history_meaning(summaries), content.promises_table(run)]
        details.append(("Faults", faults))
    if comparison_charts:  # those not shown under the answer
        details.append(("Charts", [parts.Figures(comparison_charts)]))
    details.append((f"When {run.title(BASELINE)} fail", content.when_baseline_fails(run)))
    details.append(("How to read this", [Paragraph(content.thresholds_text(run.settings, content.job_memory(run)))]))
    return details
