"""`python -m benchmarks.audit`: the audit against a planted shortcut, the evidence figures against an independent
computation, and what the audit and the report cost at 100,000 explanations.

1. Shortcut (known answer, real): the `tagged` demo (rings vs pluses; a tag in a fixed corner on most training rings
   and no training plus; in validation on some of both) is trained and its validation split run through the product
   (`producer local`). An image *leans on the tag* when it is tagged, predicted `ring`, and predicted `plus` once the
   tag is painted over (the model says so, no explainer). The strategy group of `ring` holding most leaning images
   is scored against them (precision, recall, F1); the mean map of the confused cell (true plus, predicted ring)
   must peak on the tag; the summary must name that group first.
2. Evidence: runs of the rectangles and shapes demos (their known answer stored as evidence) and, for rectangles,
   the same images as a folder with `--evidence` masks and with `--boxes`: the pointing and evidence share the product
   stored equal an independent per-pixel computation (benchmarks.known_answer.against_the_answer) from the
   generator's masks, and boxes equal masks.
3. Cost: synthetic stored explanations (10 classes, 16 superpixels each, 20% mistakes) in a SQLite file; the whole
   audit (maps remade from the weights where asked, class maps, strategies) and the report timed in a fresh process
   each, with its peak memory; and a worker's time per image spent on the maps at save time (from the runs of 1).
4. Many classes: the same on a run of 1,000 classes of 10 to 50 images each (40 with --quick), each class with its
   own error rate and its mistakes among a few kindred classes: the audit's time, the report's size and time.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.figures import finish

REPO = Path(__file__).resolve().parent.parent


def product(data_dir: Path, database: Path, *arguments: str) -> str:
    """`python -m producer local ...` on its own SQLite file and embedded broker; its output."""
    env = {key: value for key, value in os.environ.items() if key != "CELERY_BROKER_URL"}
    env |= {"DATA_DIR": str(data_dir), "DATABASE_URL": f"sqlite:///{database}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "producer", "local", "--workers", "2", *arguments], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"producer local failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def sessions(database: Path):
    from sqlalchemy.orm import sessionmaker

    from db.session import make_engine

    return sessionmaker(make_engine(f"sqlite:///{database}"), expire_on_commit=False)


def only_run(session):
    from sqlalchemy import select

    from db.models import Run

    return session.scalars(select(Run)).one()


def shortcut(work: Path, limit: int | None) -> tuple[dict, list[float]]:
    """Part 1: the planted shortcut found by the audit, against the model's own answer."""
    from sqlalchemy import select

    from audit import maps
    from audit.service import class_maps, group_members, group_views
    from benchmarks.known_answer import classifier
    from db.models import Explanation, Image
    from models.artifacts import read_metadata
    from models.datasets import TAG_BOX, TAG_CLASS, load_dataset
    from producer.service import ensure_demo_model

    model_path = ensure_demo_model("tagged")
    metadata = read_metadata(model_path)
    data = load_dataset("tagged", images=metadata.images, val_fraction=metadata.val_fraction or 0.2,
                        seed=metadata.seed or 0, split_seed=metadata.split_seed if metadata.split_seed is not None else 42)
    count = len(data.y_val) if limit is None else min(limit, len(data.y_val))
    model = classifier(str(model_path))
    predicted = model.predict(data.x_val[:count]).argmax(axis=1)
    untagged = model.predict(data.val_untagged[:count]).argmax(axis=1)
    leaning = data.val_tagged[:count] & (predicted == TAG_CLASS) & (untagged != TAG_CLASS)

    database = work / "tagged.db"
    started = time.perf_counter()
    output = product(work / "tagged", database, "--dataset", "tagged", "--model", str(model_path),
                     "--limit", str(count))
    run_s = time.perf_counter() - started
    with sessions(database)() as session:
        run = only_run(session)
        position = {int(source.rsplit("/", 1)[1]): image_id for image_id, source in session.execute(
            select(Image.id, Image.source).where(Image.source.like("tagged:validation/%")))}
        leaning_ids = {position[i] for i in np.flatnonzero(leaning)}
        groups = group_views(session, run, typical=0)
        ring = [g for g in groups if g.label == TAG_CLASS]
        members = {g.strategy: {image_id for image_id, _ in group_members(session, run.id, g.label, g.strategy)}
                   for g in ring}
        chosen = max(ring, key=lambda g: (len(members[g.strategy] & leaning_ids), -g.strategy))
        found = members[chosen.strategy]
        hits = len(found & leaning_ids)
        precision = hits / len(found) if found else 0.0
        recall = hits / len(leaning_ids) if leaning_ids else 0.0
        cell = next(m for m in class_maps(session, run.id)
                    if m.true_label == 1 - TAG_CLASS and m.predicted_label == TAG_CLASS)
        cell_map = maps.decode_maps(cell.mean_map)
        y, x = np.unravel_index(np.argmax(cell_map), cell_map.shape)
        scale_y, scale_x = data.x_val.shape[1] / cell_map.shape[0], data.x_val.shape[2] / cell_map.shape[1]
        y0, x0, y1, x1 = TAG_BOX
        tag_peak = bool(y0 <= (y + 0.5) * scale_y < y1 and x0 <= (x + 0.5) * scale_x < x1)  # ends exclusive
        timings = [row for row in session.scalars(select(Explanation.timings).where(Explanation.run_id == run.id))]
    summary_lines = [line.strip() for line in output.splitlines() if " group " in line and "images" in line]
    named_first = bool(summary_lines) and summary_lines[0].startswith(
        f"SUSPECTED SHORTCUT: {chosen.class_name} group {chosen.strategy}:")
    print(f"tagged: {count} validation images explained in {run_s:.0f} s; {len(leaning_ids)} lean on the tag; "
          f"the group holding most of them: {chosen.line()}")
    for line in summary_lines:
        print(f"  summary: {line}")
    share = [t["maps_s"] / t["total_s"] for t in timings if t and "maps_s" in t]
    return {
        "tagged_images": count, "leaning_images": len(leaning_ids), "shortcut_group_size": len(found),
        "shortcut_precision": precision, "shortcut_recall": recall,
        "shortcut_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tag_peak": tag_peak, "shortcut_named_first": named_first, "shortcut_suspected": chosen.suspected,
        "leaning_in_validation": int(leaning.sum()),
    }, share


def stored_figures(database: Path) -> dict[str, tuple]:
    """source -> (pointing, evidence share, segments, weights of the evidence's label) as the product stored them."""
    from db import reads
    from db.models import decode_segments

    result = {}
    with sessions(database)() as session:
        run = only_run(session)
        for detail in reads.explanation_details(session, run.id):
            row = detail.explanation
            if row.pointing is None:
                continue
            label = row.true_label if row.true_label is not None else row.predicted_label
            result[detail.image.source] = (row.pointing, row.evidence_share, decode_segments(row.segments),
                                           detail.weights[label])
    return result


def evidence(work: Path, count: int) -> dict:
    """Part 2: the product's evidence figures against the independent per-pixel computation, and boxes = masks."""
    from PIL import Image as PILImage

    from benchmarks.known_answer import against_the_answer
    from models.artifacts import read_metadata
    from models.datasets import load_dataset
    from producer.service import ensure_demo_model

    figures: dict = {}
    worst = 0.0
    for dataset in ("rectangles", "shapes"):
        model_path = ensure_demo_model(dataset)
        metadata = read_metadata(model_path)
        data = load_dataset(dataset, images=metadata.images, val_fraction=metadata.val_fraction or 0.2,
                            seed=metadata.seed or 0,
                            split_seed=metadata.split_seed if metadata.split_seed is not None else 42)
        database = work / f"{dataset}.db"
        product(work / dataset, database, "--dataset", dataset, "--model", str(model_path), "--limit", str(count))
        stored = stored_figures(database)
        agree, checked = 0, 0
        for source, (pointing, share, segments, weights) in stored.items():
            index = int(source.rsplit("/", 1)[1])
            expected_pointing, expected_share = against_the_answer(segments, weights, data.val_masks[index])
            agree += bool(pointing) == bool(expected_pointing)
            worst = max(worst, abs(share - expected_share))
            checked += 1
        figures[f"evidence_images_{dataset}"] = checked
        figures[f"evidence_pointing_agree_{dataset}"] = agree / checked if checked else 0.0
        if dataset == "rectangles":  # the same images as a folder, with masks and with boxes
            folder, masks = work / "folder", work / "masks"
            lines = ["path,x0,y0,x1,y1"]
            for index in range(count):
                name = data.class_names[data.y_val[index]]
                (folder / name).mkdir(parents=True, exist_ok=True)
                (masks / name).mkdir(parents=True, exist_ok=True)
                pixels = np.round(data.x_val[index] * 255).astype(np.uint8)
                PILImage.fromarray(pixels).save(folder / name / f"{index:05d}.png")
                mask = data.val_masks[index]
                if mask.any():
                    PILImage.fromarray(mask.astype(np.uint8) * 255).save(masks / name / f"{index:05d}.png")
                    rows, cols = np.nonzero(mask)
                    lines.append(f"{name}/{index:05d}.png,{cols.min()},{rows.min()},{cols.max() + 1},{rows.max() + 1}")
            (work / "boxes.csv").write_text("\n".join(lines) + "\n")
            by_mask, by_box = work / "masks.db", work / "boxes.db"
            common = ("--folder", str(folder), "--model", str(model_path))
            product(work / "by-mask", by_mask, *common, "--evidence", str(masks))
            product(work / "by-box", by_box, *common, "--boxes", str(work / "boxes.csv"))
            from_masks, from_boxes = stored_figures(by_mask), stored_figures(by_box)
            same = sorted(from_masks) == sorted(from_boxes) and all(
                bool(from_masks[s][0]) == bool(from_boxes[s][0]) and abs(from_masks[s][1] - from_boxes[s][1]) < 1e-12
                for s in from_masks)
            for source, (pointing, share, segments, weights) in from_masks.items():
                index = int(Path(source).stem)
                expected_pointing, expected_share = against_the_answer(segments, weights, data.val_masks[index])
                worst = max(worst, abs(share - expected_share))
                same &= bool(pointing) == bool(expected_pointing)
            figures["boxes_equal_masks"] = bool(same) and len(from_masks) > 0
    figures["evidence_max_diff"] = worst
    figures["evidence_pointing"] = all(figures[f"evidence_pointing_agree_{d}"] == 1.0 for d in ("rectangles", "shapes"))
    print(f"evidence: pointing agrees on {figures['evidence_images_rectangles']} rectangles and "
          f"{figures['evidence_images_shapes']} shapes images: {figures['evidence_pointing']}; largest difference in "
          f"evidence share {worst:.2e}; boxes equal masks: {figures['boxes_equal_masks']}")
    return figures


CLASSES = 10
CONFUSABLE = 3  # with images_per_class: the classes a class's mistakes go to
IMAGES_PER_CLASS = (10, 50)  # part 4's run of many classes: the fewest and most images of a class
SEGMENTS = 16
SIDE = 64


def synthetic_run(database: Path, count: int, seed: int = 0, **options) -> int:
    """A SQLite file holding one finished synthetic run (store_synthetic_run); its number of explanations."""
    from db.migrate import upgrade

    upgrade(f"sqlite:///{database}")
    with sessions(database)() as session:
        return store_synthetic_run(session, count, seed, **options).image_count


def store_synthetic_run(session, count: int, seed: int = 0, *, classes: int = CLASSES,
                        images_per_class: tuple[int, int] | None = None):
    """One finished run of stored explanations in the session's (migrated, empty) database, as a worker would have
    saved them: segments, weights (predicted and, for mistakes, true label), maps; committed. `count` of them over
    `classes` classes, 20% mistakes; or, with `images_per_class` (fewest, most), that many per class, each class with
    its own error rate (20% on average) and its mistakes among its CONFUSABLE next classes, as a model of many
    classes confuses kindred ones (a dog's breeds)."""
    from sqlalchemy import insert

    from audit.maps import encode_maps, explanation_maps
    from core import images
    from db import runs
    from db.models import Explanation, Image, RunImage, SegmentWeight, encode_segments
    from worker.engine import ExplainParams

    rng = np.random.default_rng(seed)
    grid = np.arange(SIDE) * 4 // SIDE
    layouts = []
    for _ in range(20):  # a few superpixel layouts: shifted 4 x 4 blocks
        dy, dx = rng.integers(0, 8, 2)
        layout = ((grid[(np.arange(SIDE) + dy) % SIDE])[:, None] * 4 + grid[(np.arange(SIDE) + dx) % SIDE][None, :])
        layouts.append(layout.astype(np.int32))
    encoded_layouts = [encode_segments(layout) for layout in layouts]
    pictures = [images.png_bytes(rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)) for _ in range(20)]
    if images_per_class is not None:
        fewest, most = images_per_class
        every_true = rng.permutation(np.repeat(np.arange(classes), rng.integers(fewest, most + 1, classes)))
        error_rate = rng.beta(2, 8, classes)
        count = len(every_true)
    runs.store_model_file(session, "s" * 64, b"model", {})
    run = runs.create_run(session, name="synthetic", model_path="synthetic.keras", model_sha256="s" * 64,
                          class_names=[f"class{i}" for i in range(classes)], params=ExplainParams().to_dict(),
                          source="synthetic", value_range=[0.0, 1.0])
    session.commit()
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        image_rows = [{"sha256": f"{start + i:064x}", "png": pictures[(start + i) % 20], "source": f"synthetic/{start + i}",
                       "width": SIDE, "height": SIDE, "channels": 3, "true_label": None, "path": None}
                      for i in range(size)]
        ids = [row[0] for row in session.execute(insert(Image).returning(Image.id, sort_by_parameter_order=True),
                                                 image_rows)]
        if images_per_class is None:
            true = rng.integers(0, classes, size)
            wrong = rng.random(size) < 0.2
            predicted = np.where(wrong, (true + rng.integers(1, classes, size)) % classes, true)
        else:
            true = every_true[start:start + size]
            wrong = rng.random(size) < error_rate[true]
            predicted = np.where(wrong, (true + rng.integers(1, CONFUSABLE + 1, size)) % classes, true)
        session.execute(insert(RunImage), [{"run_id": run.id, "image_id": image_id, "position": start + i,
                                            "true_label": int(true[i])} for i, image_id in enumerate(ids)])
        explanation_rows, weight_rows = [], []
        for i, image_id in enumerate(ids):
            layout = rng.integers(0, 20)
            # a class's usual place, or a corner for the mistakes: some structure for the groups to find
            weights = {int(predicted[i]): rng.normal(0, 0.05, SEGMENTS)}
            weights[int(predicted[i])][15 if wrong[i] else int(true[i]) % SEGMENTS] += 0.5
            if wrong[i]:
                weights[int(true[i])] = rng.normal(0, 0.05, SEGMENTS)
            relevance = explanation_maps(layouts[layout], weights, int(predicted[i]), int(true[i]))
            probabilities = np.full(classes, 0.18 / (classes - 1))
            probabilities[predicted[i]] = 0.82
            explanation_rows.append({
                "run_id": run.id, "image_id": image_id, "status": "ok", "attempts": 1,
                "predicted_label": int(predicted[i]), "true_label": int(true[i]),
                "confidence": float(0.5 + 0.5 * rng.random()), "probabilities": probabilities.tolist(),
                "correct": not wrong[i], "score": 0.5, "deletion_auc": 0.3, "insertion_auc": 0.7,
                "n_segments": SEGMENTS, "segments": encoded_layouts[layout], "relevance": encode_maps(relevance),
                "samples_used": 512, "model_calls": 512, "sampling_stop": "fixed",
            })
            weight_rows.append((weights, layouts[layout]))
        explanation_ids = [row[0] for row in session.execute(
            insert(Explanation).returning(Explanation.id, sort_by_parameter_order=True), explanation_rows)]
        session.execute(insert(SegmentWeight), [
            {"explanation_id": explanation_id, "label": label, "segment": s, "weight": float(w),
             "area": int((layout == s).sum())}
            for explanation_id, (weights, layout) in zip(explanation_ids, weight_rows)
            for label, values in weights.items() for s, w in enumerate(values)
        ])
        session.commit()
    run.image_count = run.finished_count = count
    run.status = "done"
    session.commit()
    return run


MEASURE = """
import sys, time, json
from pathlib import Path
started = time.perf_counter()
from benchmarks.audit import sessions, only_run
database, what = Path(sys.argv[1]), sys.argv[2]
with sessions(database)() as session:
    run = only_run(session)
    if what == "audit":
        from audit.service import audit_run
        audit_run(session, run)
        session.commit()
        extra = {}
    elif what == "remake":
        from sqlalchemy import text
        session.execute(text("UPDATE explanations SET relevance = NULL"))
        session.commit()
        started = time.perf_counter()
        from audit.service import audit_run
        audit_run(session, run)
        session.commit()
        extra = {}
    else:
        from report.html import write_report
        out = database.with_suffix(".html")
        write_report(session, run, out)
        extra = {"mb": out.stat().st_size / 2**20}
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would start at the forking benchmark's own size
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"s": time.perf_counter() - started, "peak_mb": peak_kb / 1024, **extra}))
"""


def measured(database: Path, what: str) -> dict:
    """One step in a fresh process (imports included in its time): seconds and peak memory."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(database), what], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"{what} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost(work: Path, sizes: tuple[int, int]) -> dict:
    """Part 3: the audit and the report on synthetic stored explanations."""
    small, large = sizes
    figures = {}
    for count in (small, large):
        database = work / f"synthetic-{count}.db"
        started = time.perf_counter()
        synthetic_run(database, count)
        print(f"synthetic run of {count:,} explanations stored in {time.perf_counter() - started:.0f} s "
              f"({database.stat().st_size / 2**20:.0f} MB)")
        audit = measured(database, "audit")
        print(f"  audit: {audit['s']:.1f} s, peak {audit['peak_mb']:.0f} MB")
        key = f"{count // 1000}k"
        figures[f"audit_s_{key}"], figures[f"audit_peak_mb_{key}"] = audit["s"], audit["peak_mb"]
        if count == large:
            remade = measured(database, "remake")
            report = measured(database, "report")
            print(f"  audit with every map remade from the weights: {remade['s']:.1f} s, peak {remade['peak_mb']:.0f} MB")
            print(f"  report: {report['s']:.1f} s, {report['mb']:.1f} MB, peak {report['peak_mb']:.0f} MB")
            figures |= {f"audit_remade_s_{key}": remade["s"], f"report_s_{key}": report["s"],
                        f"report_mb_{key}": report["mb"], f"report_peak_mb_{key}": report["peak_mb"]}
        database.unlink()
    figures["audit_growth"] = (figures[f"audit_s_{large // 1000}k"] / figures[f"audit_s_{small // 1000}k"]) / (large / small)
    return figures


def many_classes(work: Path, classes: int) -> dict:
    """Part 4: a run of `classes` classes of IMAGES_PER_CLASS images each (a thousand: an ImageNet model on a sample
    of its validation set): the audit's time and the report's size and time, each in a fresh process."""
    from sqlalchemy import case, func, select

    from db.models import StrategyGroup

    database = work / f"classes-{classes}.db"
    started = time.perf_counter()
    count = synthetic_run(database, 0, classes=classes, images_per_class=IMAGES_PER_CLASS)
    print(f"synthetic run of {classes:,} classes, {count:,} explanations, stored in "
          f"{time.perf_counter() - started:.0f} s")
    audit = measured(database, "audit")
    with sessions(database)() as session:
        groups, suspected = session.execute(
            select(func.count(), func.sum(case((StrategyGroup.suspected, 1), else_=0)))).one()
    report = measured(database, "report")
    print(f"  {classes} classes: audit {audit['s']:.1f} s, peak {audit['peak_mb']:.0f} MB, {groups} strategy groups "
          f"({suspected} suspected); report {report['s']:.1f} s, {report['mb']:.1f} MB")
    database.unlink()
    key = f"classes_{classes}"
    return {f"{key}_explanations": count, f"{key}_audit_s": audit["s"], f"{key}_audit_peak_mb": audit["peak_mb"],
            f"{key}_groups": groups, f"{key}_report_s": report["s"], f"{key}_report_mb": report["mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="A few images, 2k/10k synthetic explanations and a run of 40 classes.")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/audit.json (the docs).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as folder:
        work = Path(folder)
        result, share = shortcut(work, 60 if args.quick else None)
        result |= evidence(work, 12 if args.quick else 40)
        result["maps_share_of_worker_time"] = float(np.mean(share)) if share else None
        print(f"maps at save time: {result['maps_share_of_worker_time']:.2%} of a worker's time per image")
        result |= cost(work, (2_000, 10_000) if args.quick else (10_000, 100_000))
        result |= many_classes(work, 40 if args.quick else 1000)
    result["quick"] = args.quick
    finish("audit", result, args.save and not args.quick)


if __name__ == "__main__":
    main()
