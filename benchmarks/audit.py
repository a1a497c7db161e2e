"""`python -m benchmarks.audit`: the audit against a planted shortcut, the evidence figures against an independent
computation, and what the audit and the report cost at 100,000 explanations (a million with --big).

1. Shortcut (known answer, real): the `tagged` demo (rings vs pluses; a tag in a fixed corner on most training rings
   and no training plus; in validation on some of both) is trained and its validation split run through the product
   (`producer local`). An image *leans on the tag* when it is tagged, predicted `ring`, and predicted `plus` once the
   tag is painted over (the model says so, no explainer). The strategy group of `ring` holding most leaning images
   is scored against them (precision, recall, F1); the mean map of the confused cell (true plus, predicted ring)
   must peak on the tag; the summary must name that group first. The run's evidence figures (the tagged demo stores
   the objects' pixels as evidence) are checked as in part 2.
2. Evidence: runs of the rectangles and shapes demos (their known answer stored as evidence) and, for rectangles,
   the same images as a folder with `--evidence` masks and with `--boxes`: the pointing and evidence share the product
   stored equal an independent per-pixel computation (benchmarks.known_answer.against_the_answer) from the
   generator's masks, and boxes equal masks. Not with --quick (four more runs of the product): part 1's run alone.
3. Cost: synthetic stored explanations (10 classes, 16 superpixels each, 20% mistakes, every mistake looking at one
   corner: a planted shortcut, scored as part 1's) in a SQLite file; the whole audit (maps remade from the weights
   where asked, class maps, strategies) and the report timed in a fresh process each, with its peak memory; and a
   worker's time per image spent on the maps at save time (from part 1's run).
4. Many classes: the same on a run of 1,000 classes of 10 to 50 images each (40 with --quick), each class with its
   own error rate and its mistakes among a few kindred classes: the audit's time, the report's size and time.
5. A million (--big, alone): 1,000,000 synthetic explanations of 10 classes and about as many of 1,000 classes
   (500 to 1,500 images each, mistakes among kindred classes): the audit's time and peak memory, the planted
   shortcut's precision and recall, the report's size, time and peak memory. Tens of minutes; with --save its
   figures join the last full run's in docs/figures/audit.json (and a full run keeps them).

--quick makes one run of the product (part 1 on the tagged demo's validation split, at most 60 images) and small
synthetic runs. The last line is one JSON object.
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

from benchmarks.figures import FIGURES, finish

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

    from audit.service import class_maps, group_members, group_views
    from benchmarks.known_answer import classifier
    from db.formats import decode_maps
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
        cell_map = decode_maps(cell.mean_map)
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
    checked, agree, worst = against_masks(stored_figures(database), data.val_masks)
    print(f"  evidence: pointing agrees on {agree} of {checked} tagged images; largest difference in evidence share "
          f"{worst:.2e}")
    share = [t["maps_s"] / t["total_s"] for t in timings if t and "maps_s" in t]
    return {
        "tagged_images": count, "leaning_images": len(leaning_ids), "shortcut_group_size": len(found),
        "shortcut_precision": precision, "shortcut_recall": recall,
        "shortcut_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tag_peak": tag_peak, "shortcut_named_first": named_first, "shortcut_suspected": chosen.suspected,
        "leaning_in_validation": int(leaning.sum()), "evidence_images_tagged": checked,
        "evidence_pointing_agree_tagged": agree / checked if checked else 0.0, "evidence_max_diff_tagged": worst,
    }, share


def stored_figures(database: Path) -> dict[str, tuple]:
    """source -> (pointing, evidence share, segments, weights of the evidence's label) as the product stored them."""
    from db import reads
    from db.formats import decode_segments

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


def against_masks(stored: dict[str, tuple], masks: np.ndarray) -> tuple[int, int, float]:
    """Stored figures (stored_figures) against the independent per-pixel computation from the generator's masks
    (a source's name is its index in the validation split): (images, pointing agreeing, largest share difference)."""
    from benchmarks.known_answer import against_the_answer

    agree, worst = 0, 0.0
    for source, (pointing, share, segments, weights) in stored.items():
        expected_pointing, expected_share = against_the_answer(segments, weights, masks[int(Path(source).stem)])
        agree += bool(pointing) == bool(expected_pointing)
        worst = max(worst, abs(share - expected_share))
    return len(stored), agree, worst


def evidence(work: Path, count: int) -> dict:
    """Part 2: the product's evidence figures against the independent per-pixel computation, and boxes = masks."""
    from PIL import Image as PILImage

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
        checked, agree, difference = against_masks(stored_figures(database), data.val_masks)
        worst = max(worst, difference)
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
            checked, agree, difference = against_masks(from_masks, data.val_masks)
            worst = max(worst, difference)
            same &= agree == checked
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
                        images_per_class: tuple[int, int] | None = None, probabilities: bool = True):
    """One finished run of stored explanations in the session's (migrated, empty) database, as a worker would have
    saved them: segments, weights (predicted and, for mistakes, true label), maps; committed. `count` of them over
    `classes` classes, 20% mistakes; or, with `images_per_class` (fewest, most), that many per class, each class with
    its own error rate (20% on average) and its mistakes among its CONFUSABLE next classes, as a model of many
    classes confuses kindred ones (a dog's breeds).

    A correct explanation puts its evidence on its class's own place (a block of a 4 x 4 superpixel layout shifted at
    random), never the bottom-right corner; every mistake on that corner, the same pixels each time: the planted
    shortcut that `planted_shortcut` scores the audit against. `probabilities=False` stores none (a thousand classes'
    are 20 KB of JSON per explanation, which neither the audit nor the report reads: 20 GB at a million)."""
    from sqlalchemy import insert, select

    from audit.maps import explanation_maps
    from core import images
    from db import runs
    from db.formats import encode_maps, encode_segments
    from db.models import Explanation, Image, RunImage, SegmentWeight
    from worker.engine import ExplainParams

    rng = np.random.default_rng(seed)
    grid = np.arange(SIDE) * 4 // SIDE
    layouts = []
    for _ in range(20):  # a few superpixel layouts: 4 x 4 blocks, their edges moved up and left a little
        dy, dx = rng.integers(0, 8, 2)
        rows, cols = np.minimum(np.arange(SIDE) + dy, SIDE - 1), np.minimum(np.arange(SIDE) + dx, SIDE - 1)
        layouts.append((grid[rows][:, None] * 4 + grid[cols][None, :]).astype(np.int32))
    layouts.append((grid[:, None] * 4 + grid[None, :]).astype(np.int32))  # the mistakes': not shifted
    corner = len(layouts) - 1
    encoded_layouts = [encode_segments(layout) for layout in layouts]
    areas = [np.bincount(layout.ravel(), minlength=SEGMENTS).tolist() for layout in layouts]
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
        # plain executemany, ids read back after (RETURNING in parameter order is a statement a row on SQLite)
        session.execute(insert(Image.__table__), image_rows)
        id_of = dict(session.execute(select(Image.sha256, Image.id).where(
            Image.sha256.in_([row["sha256"] for row in image_rows]))).all())
        ids = [id_of[row["sha256"]] for row in image_rows]
        if images_per_class is None:
            true = rng.integers(0, classes, size)
            wrong = rng.random(size) < 0.2
            predicted = np.where(wrong, (true + rng.integers(1, classes, size)) % classes, true)
        else:
            true = every_true[start:start + size]
            wrong = rng.random(size) < error_rate[true]
            predicted = np.where(wrong, (true + rng.integers(1, CONFUSABLE + 1, size)) % classes, true)
        session.execute(insert(RunImage.__table__), [{"run_id": run.id, "image_id": image_id, "position": start + i,
                                            "true_label": int(true[i])} for i, image_id in enumerate(ids)])
        explanation_rows, weight_rows = [], []
        for i, image_id in enumerate(ids):
            layout = corner if wrong[i] else rng.integers(0, 20)
            weights = {int(predicted[i]): rng.normal(0, 0.05, SEGMENTS)}
            weights[int(predicted[i])][SEGMENTS - 1 if wrong[i] else int(true[i]) % (SEGMENTS - 1)] += 0.5
            if wrong[i]:
                weights[int(true[i])] = rng.normal(0, 0.05, SEGMENTS)
            relevance = explanation_maps(layouts[layout], weights, int(predicted[i]), int(true[i]))
            spread = None
            if probabilities:
                spread = np.full(classes, 0.18 / (classes - 1))
                spread[predicted[i]] = 0.82
                spread = spread.tolist()
            explanation_rows.append({
                "run_id": run.id, "image_id": image_id, "status": "ok", "attempts": 1,
                "predicted_label": int(predicted[i]), "true_label": int(true[i]),
                "confidence": float(0.5 + 0.5 * rng.random()), "probabilities": spread,
                "correct": not wrong[i], "score": 0.5, "deletion_auc": 0.3, "insertion_auc": 0.7,
                "n_segments": SEGMENTS, "segments": encoded_layouts[layout], "relevance": encode_maps(relevance),
                "samples_used": 512, "model_calls": 512, "sampling_stop": "fixed",
            })
            weight_rows.append((weights, areas[layout]))
        session.execute(insert(Explanation.__table__), explanation_rows)
        id_of = dict(session.execute(select(Explanation.image_id, Explanation.id).where(
            Explanation.run_id == run.id, Explanation.image_id.in_(ids))).all())
        explanation_ids = [id_of[image_id] for image_id in ids]
        session.execute(insert(SegmentWeight.__table__), [
            {"explanation_id": explanation_id, "label": label, "segment": s, "weight": w, "area": area[s]}
            for explanation_id, (weights, area) in zip(explanation_ids, weight_rows)
            for label, values in weights.items() for s, w in enumerate(values.tolist())
        ])
        session.commit()
    run.image_count = run.finished_count = count
    run.status = "done"
    session.commit()
    return run


def planted_shortcut(database: Path) -> tuple[float, float]:
    """The audit of a synthetic run against its planted shortcut (every mistake looks at the corner), scored as part
    1 scores the tagged run: in each predicted class, the strategy group holding most of its mistakes; precision (of
    those groups' members, the mistakes) and recall (of all mistakes, those in them), over every class. Counted by
    the database, whatever the run's size."""
    from sqlalchemy import case, func, select

    from db.models import Explanation, StrategyMember

    chosen: dict[int, tuple[int, int]] = {}  # label -> (mistakes, members) of its group holding most mistakes
    mistakes = 0
    with sessions(database)() as session:
        run = only_run(session)
        for label, members, wrong in session.execute(
            select(StrategyMember.label, func.count(), func.sum(case((Explanation.correct.is_(False), 1), else_=0)))
            .join(Explanation, (Explanation.run_id == StrategyMember.run_id)
                  & (Explanation.image_id == StrategyMember.image_id))
            .where(StrategyMember.run_id == run.id).group_by(StrategyMember.label, StrategyMember.strategy)
        ):
            mistakes += wrong
            if wrong > chosen.get(label, (0, 0))[0]:
                chosen[label] = (wrong, members)
    hits, found = sum(wrong for wrong, _ in chosen.values()), sum(members for _, members in chosen.values())
    return (hits / found if found else 0.0), (hits / mistakes if mistakes else 0.0)

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
            precision, recall = planted_shortcut(database)
            remade = measured(database, "remake")
            report = measured(database, "report")
            print(f"  planted shortcut: precision {precision:.2f}, recall {recall:.2f}")
            print(f"  audit with every map remade from the weights: {remade['s']:.1f} s, peak {remade['peak_mb']:.0f} MB")
            print(f"  report: {report['s']:.1f} s, {report['mb']:.1f} MB, peak {report['peak_mb']:.0f} MB")
            figures |= {f"planted_precision_{key}": precision, f"planted_recall_{key}": recall,
                        f"audit_remade_s_{key}": remade["s"], f"report_s_{key}": report["s"],
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


MILLION = 1_000_000
MANY = 1000  # part 5's classes besides CLASSES


def million(work: Path) -> dict:
    """Part 5 (--big): a million stored explanations of CLASSES classes, and about as many of MANY classes (500 to
    1,500 images each, mistakes among kindred classes); the audit and the report of each in a fresh process. The
    figures without a class count are the worse of the two."""
    figures = {}
    for classes in (CLASSES, MANY):
        database = work / f"million-{classes}.db"
        started = time.perf_counter()
        options = {"classes": classes, "probabilities": classes == CLASSES}  # see store_synthetic_run
        if classes != CLASSES:
            options["images_per_class"] = (MILLION // classes // 2, MILLION // classes * 3 // 2)
        count = synthetic_run(database, MILLION, **options)
        print(f"synthetic run of {count:,} explanations of {classes:,} classes stored in "
              f"{time.perf_counter() - started:.0f} s ({database.stat().st_size / 2**30:.1f} GB)", flush=True)
        audit = measured(database, "audit")
        precision, recall = planted_shortcut(database)
        report = measured(database, "report")
        print(f"  {classes} classes: audit {audit['s']:.0f} s, peak {audit['peak_mb']:.0f} MB; planted shortcut: "
              f"precision {precision:.2f}, recall {recall:.2f}; report {report['s']:.0f} s, {report['mb']:.1f} MB, "
              f"peak {report['peak_mb']:.0f} MB", flush=True)
        database.unlink()
        key = f"classes_{classes}"
        figures |= {f"{key}_explanations_1m": count, f"{key}_audit_s_1m": audit["s"],
                    f"{key}_audit_peak_mb_1m": audit["peak_mb"], f"{key}_planted_precision_1m": precision,
                    f"{key}_planted_recall_1m": recall, f"{key}_report_s_1m": report["s"],
                    f"{key}_report_mb_1m": report["mb"], f"{key}_report_peak_mb_1m": report["peak_mb"]}
    for name, worst in (("audit_s", max), ("audit_peak_mb", max), ("planted_precision", min), ("planted_recall", min),
                        ("report_s", max), ("report_mb", max), ("report_peak_mb", max)):
        figures[f"{name}_1m"] = worst(figures[f"classes_{classes}_{name}_1m"] for classes in (CLASSES, MANY))
    return figures


def is_big(key: str) -> bool:
    """A figure of part 5 (--big), saved apart from a full run's."""
    return key.endswith("_1m") or key == "big_run"


def kept_figures(big: bool) -> dict:
    """What --save keeps of the saved figures besides this run's: a --big run keeps the last full run's, with when
    and where they were measured (`full_run`); a full run keeps the last --big run's (`big_run`)."""
    path = FIGURES / "audit.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    measured_at = {"date": saved["date"], "commit": saved["commit"]}
    kept = {key: value for key, value in saved["result"].items() if is_big(key) != big and key != "full_run"}
    if kept and big:
        kept["full_run"] = saved["result"].get("full_run", measured_at)
    elif kept:
        kept.setdefault("big_run", measured_at)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="One run of the product (the tagged demo, 60 images at most), 1k/4k synthetic "
                             "explanations and a run of 40 classes.")
    parser.add_argument("--big", action="store_true",
                        help="Part 5 alone: a million synthetic explanations of 10 and of 1,000 classes (tens of "
                             "minutes, about 20 GB of disk for a while).")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/audit.json (the docs).")
    args = parser.parse_args()
    if args.quick and args.big:
        parser.error("--big measures a million explanations: not with --quick")
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as folder:
        work = Path(folder)
        if args.big:
            result = million(work)
        else:
            result, share = shortcut(work, 60 if args.quick else None)
            if args.quick:
                result |= {"evidence_pointing": result["evidence_pointing_agree_tagged"] == 1.0,
                           "evidence_max_diff": result["evidence_max_diff_tagged"]}
                print("evidence: the tagged run's alone with --quick (rectangles, shapes, masks and boxes: a full run)")
            else:
                result |= evidence(work, 40)
            result["maps_share_of_worker_time"] = float(np.mean(share)) if share else None
            print(f"maps at save time: {result['maps_share_of_worker_time']:.2%} of a worker's time per image")
            result |= cost(work, (1_000, 4_000) if args.quick else (10_000, 100_000))
            result |= many_classes(work, 40 if args.quick else 1000)
            result["quick"] = args.quick
    save_it = args.save and not args.quick
    finish("audit", result, save_it, kept_figures(args.big) if save_it else None)


if __name__ == "__main__":
    main()
