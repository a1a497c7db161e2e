"""One self-contained HTML report of a run: summary, confusion matrix, and a gallery of its mistakes.

Images are inline (data URIs), nothing is fetched from the network. The gallery's data sits in one
JSON block and is rendered a page at a time, so a report with a thousand mistakes stays usable.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from sqlalchemy.orm import Session

from db import reads
from db.models import Run, decode_segments
from report import pictures
from report.summary import summarise_run

PAGE_SIZE = 48
TOP_WEIGHTS = 5


def gallery_items(details: list[reads.ExplanationDetail]) -> list[dict]:
    items = []
    for detail in details:
        row = detail.explanation
        image = pictures.drawable(detail.image.pixels())
        segments = decode_segments(row.segments)
        predicted = pictures.overlays(image, segments, detail.weights[row.predicted_label])[0]
        predicted_heat = pictures.heatmap(image, segments, detail.weights[row.predicted_label])
        has_true = row.true_label in detail.weights
        true = pictures.overlays(image, segments, detail.weights[row.true_label])[0] if has_true else None
        true_heat = pictures.heatmap(image, segments, detail.weights[row.true_label]) if has_true else None
        weights = detail.weights[row.predicted_label]
        top = sorted(range(len(weights)), key=lambda s: -weights[s])[:TOP_WEIGHTS]
        items.append(
            {
                "id": row.image_id,
                "source": detail.image.source,
                "true": detail.label_name(row.true_label),
                "predicted": detail.label_name(row.predicted_label),
                "confidence": row.confidence,
                "deletion_auc": row.deletion_auc,
                "insertion_auc": row.insertion_auc,
                "stability": row.stability,
                "top": [
                    {"segment": int(s), "weight": float(weights[s]), "area": int(detail.areas[s])} for s in top
                ],
                "original": pictures.data_uri(pictures.original(image)),
                "overlay_predicted": pictures.data_uri(predicted),
                "overlay_true": pictures.data_uri(true) if true else None,
                "heatmap_predicted": pictures.data_uri(predicted_heat),
                "heatmap_true": pictures.data_uri(true_heat) if true_heat else None,
            }
        )
    return items


def build_report(session: Session, run: Run) -> tuple[str, int]:
    """The report's HTML, and how many misclassified images its gallery holds."""
    run_id = run.id
    summarised = summarise_run(session, run)
    confusion = reads.confusion(session, run_id)
    items = gallery_items(reads.explanation_details(session, run_id, misclassified_only=True))

    summary = [
        ("source", run.source),
        ("parameters", ", ".join(f"{k}={v}" for k, v in run.params.items() if v is not None)),
        *summarised.rows,
    ]
    warnings = "".join(f'<p class="warning"><b>WARNING</b>: {html.escape(w)}</p>' for w in summarised.warnings)
    if summarised.skipped:
        warnings += (
            f'<details id="skipped"><summary>{len(summarised.skipped)} files skipped with --skip-bad</summary><ul>'
            + "".join(f"<li>{html.escape(s['reason'])}</li>" for s in summarised.skipped)
            + "</ul></details>"
        )
    if summarised.counts.labelled:
        heading = f"Misclassified images ({len(items)})"
    else:
        heading = "No true labels: nothing is known to be misclassified (the summary shows the predicted classes)"
    names = run.class_names
    cells = {(c["true_label"], c["predicted_label"]): c["n"] for c in confusion}
    matrix = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    for true in names:
        matrix += f"<tr><th>{html.escape(true)}</th>" + "".join(
            f'<td class="{"hit" if true == p else "miss" if cells.get((true, p)) else ""}">{cells.get((true, p), 0)}</td>'
            for p in names
        ) + "</tr>"
    data = json.dumps(items).replace("</", "<\\/")  # nothing in the data can close the script element
    page = TEMPLATE.format(
        title=html.escape(f"run {run.id}: {run.name}"),
        summary="".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary),
        warnings=warnings,
        heading=html.escape(heading),
        matrix=matrix,
        total=len(items),
        page_size=PAGE_SIZE,
        data=data,
    )
    return page, len(items)


def write_report(session: Session, run: Run, out: Path) -> int:
    """Write the report; returns how many misclassified images its gallery holds."""
    page, shown = build_report(session, run)
    out.write_text(page, encoding="utf-8")
    return shown


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
td.hit {{ background: #e6f4e6; }} td.miss {{ background: #fbe3e3; }}
.warning {{ border: 2px solid #c00; background: #fdecec; padding: .6rem; max-width: 60rem; }}
#gallery {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(960px, 1fr)); gap: 1rem; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem; }}
.card img {{ height: 160px; image-rendering: pixelated; margin-right: 4px; }}
.card figure {{ display: inline-block; margin: 0; text-align: center; font-size: .8rem; }}
.meta {{ font-size: .9rem; margin: .3rem 0; }}
.pager button {{ margin: 0 .2rem; }}
</style></head>
<body>
<h1>{title}</h1>
<h2>Summary</h2>
<table id="summary">{summary}</table>
{warnings}
<h2>Confusion matrix</h2>
<table id="confusion">{matrix}</table>
<h2 id="gallery-heading">{heading}</h2>
<div class="pager">sort by confidence
  <select id="order"><option value="desc">highest first</option><option value="asc">lowest first</option></select>
  <button id="prev">previous</button><span id="page"></span><button id="next">next</button>
</div>
<div id="gallery" data-total="{total}" data-page-size="{page_size}"></div>
<script id="items" type="application/json">{data}</script>
<script>
const items = JSON.parse(document.getElementById("items").textContent);
const gallery = document.getElementById("gallery");
const pageSize = {page_size};
let page = 0;
function fmt(x) {{ return x === null ? "-" : x.toFixed(3); }}
function esc(s) {{ const d = document.createElement("div"); d.textContent = s; return d.innerHTML; }}
function render() {{
  const order = document.getElementById("order").value;
  const sorted = [...items].sort((a, b) => order === "desc" ? b.confidence - a.confidence : a.confidence - b.confidence);
  const pages = Math.max(1, Math.ceil(sorted.length / pageSize));
  page = Math.min(Math.max(page, 0), pages - 1);
  document.getElementById("page").textContent = ` page ${{page + 1}} of ${{pages}} `;
  gallery.innerHTML = sorted.slice(page * pageSize, (page + 1) * pageSize).map(item => `
    <div class="card" data-image-id="${{item.id}}" data-confidence="${{item.confidence}}">
      <figure><img loading="lazy" alt="original" src="${{item.original}}"><figcaption>original</figcaption></figure>
      <figure><img loading="lazy" alt="predicted" src="${{item.overlay_predicted}}"><figcaption>why ${{esc(item.predicted)}}</figcaption></figure>
      <figure><img loading="lazy" alt="heatmap predicted" src="${{item.heatmap_predicted}}"><figcaption>weights for ${{esc(item.predicted)}}</figcaption></figure>
      ${{item.overlay_true ? `<figure><img loading="lazy" alt="true" src="${{item.overlay_true}}"><figcaption>why ${{esc(item.true)}}</figcaption></figure>` : ""}}
      ${{item.heatmap_true ? `<figure><img loading="lazy" alt="heatmap true" src="${{item.heatmap_true}}"><figcaption>weights for ${{esc(item.true)}}</figcaption></figure>` : ""}}
      <div class="meta">image ${{item.id}}: true <b>${{esc(item.true)}}</b>, predicted <b>${{esc(item.predicted)}}</b>,
        confidence ${{fmt(item.confidence)}}; faithfulness: deletion AUC ${{fmt(item.deletion_auc)}} (lower is better),
        insertion AUC ${{fmt(item.insertion_auc)}} (higher is better)${{item.stability === null ? "" : `; stability ${{fmt(item.stability)}}`}}</div>
      <div class="meta">top superpixels: ${{item.top.map(t => `#${{t.segment}} ${{t.weight.toFixed(3)}} (${{t.area}} px)`).join(", ")}}</div>
      <div class="meta">${{esc(item.source)}}</div>
    </div>`).join("");
}}
document.getElementById("order").onchange = () => {{ page = 0; render(); }};
document.getElementById("prev").onclick = () => {{ page -= 1; render(); }};
document.getElementById("next").onclick = () => {{ page += 1; render(); }};
render();
</script>
</body></html>
"""
