"""A run's audit, from what is stored: one streaming pass over its explanations (their maps, made now for rows saved
without them) sums the class and confusion maps and keeps a seeded sample of each predicted class's small feature
vectors (audit.strategies.Reservoir); the strategies are then found on each class's sample, a second streaming pass
puts every explanation in a group (its own if it was sampled, else its nearest sampled neighbours'), writes it with its
distance to its group's centre and sums each group's size, mistakes and mean map, and everything is written to
`run_audits`, `class_maps`, `strategy_groups` and `strategy_members`. Memory: a chunk of maps, the samples (at most
audit.strategies.SAMPLE explanations a class and SAMPLED_ROWS in all, a few hundred bytes each), a map per class,
confusion cell and group, and bounded samples of images for the mean pictures; nothing per explanation, so a million
explanations take what a hundred thousand do.

A class of at most audit.strategies.sample_size explanations (2,000 in a run of up to 100 classes) is sampled whole:
its groups, sizes and distances are those of the whole class. Above it, the groups are found on the sample, a group's
centre (members' distances, most typical first) is the mean of its sampled members, and the groups are numbered by
their sizes over the whole class (0 the largest).

Functions take the caller's session; `audit_run` writes and the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from audit import maps as relevance
from audit.strategies import Grouping, Reservoir, find_strategies, one_thread, sample_size
from core import images
from core.images import ReferenceFileError
from db.formats import decode_maps, decode_segments, encode_maps
from db.models import (ClassMap, Explanation, Image, ImageEvidence, Run, RunAudit, SegmentWeight, StrategyGroup,
                       StrategyMember)

CHUNK = 2000  # explanations read at a time
MEAN_IMAGE_SAMPLE = 32  # images whose mean is drawn under a class's or cell's map
MEAN_IMAGE_SIDE = 96  # pixels: the mean pictures are for the eye, small
MAX_GRID_CLASSES = 12  # the confusion grid shows every cell up to this many classes; beyond, the largest cells
LARGEST_CELLS = 40
SUSPECT_MARGIN = 0.25  # a group whose error rate is this far above its class's is a suspected shortcut
# A run of more classes than this is shown the most mistakes first: the report's confusion matrix and class maps show
# this many classes, and the strategy groups that are not suspected are ranked by their errors.
MANY_CLASSES = 30
SUSPECT_MIN_ERRORS = 3
SHOWN_TYPICAL = 5


@dataclass
class _Class:
    """What the pass keeps of one predicted class."""

    map_sum: np.ndarray
    sample: Reservoir | None  # of (features as float16, image id)
    count: int = 0
    labelled: int = 0
    errors: int = 0


def current_audit(session: Session, run: Run) -> RunAudit | None:
    """The run's audit if it covers every result the run has now."""
    audit = session.get(RunAudit, run.id)
    return audit if audit is not None and audit.finished_count == run.finished_count else None


def ensure_audit(session: Session, run: Run, *, seed: int = 0, progress=None) -> RunAudit:
    """The run's current audit, made (and committed) when it is missing or stale."""
    audit = current_audit(session, run)
    if audit is None:
        audit = audit_run(session, run, seed=seed, progress=progress)
        session.commit()
    return audit


def _chunks(session: Session, run_id: int):
    """The run's explained rows, CHUNK at a time, in image order (keyset on the (run, image) unique index)."""
    last = -1
    while True:
        rows = session.execute(
            select(Explanation.id, Explanation.image_id, Explanation.predicted_label, Explanation.true_label,
                   Explanation.relevance)
            .where(Explanation.run_id == run_id, Explanation.status == "ok", Explanation.image_id > last)
            .order_by(Explanation.image_id).limit(CHUNK)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].image_id


def _chunk_maps(session: Session, rows, grid: tuple[int, int] | None) -> list[np.ndarray]:
    """Each row's maps (label, gh, gw), made and stored for rows saved without them."""
    missing = [row.id for row in rows if row.relevance is None]
    made: dict[int, bytes] = {}
    if missing:
        weights: dict[int, dict[int, dict[int, float]]] = {}
        for explanation_id, label, segment, weight in session.execute(
            select(SegmentWeight.explanation_id, SegmentWeight.label, SegmentWeight.segment, SegmentWeight.weight)
            .where(SegmentWeight.explanation_id.in_(missing))
        ):
            weights.setdefault(explanation_id, {}).setdefault(label, {})[segment] = weight
        for explanation_id, blob, predicted, true in session.execute(
            select(Explanation.id, Explanation.segments, Explanation.predicted_label, Explanation.true_label)
            .where(Explanation.id.in_(missing))
        ):
            segments = decode_segments(blob)
            count = int(segments.max()) + 1
            arrays = {}
            for label, values in weights.get(explanation_id, {}).items():
                arrays[label] = np.zeros(count)
                arrays[label][list(values)] = list(values.values())
            made[explanation_id] = encode_maps(relevance.explanation_maps(segments, arrays, predicted, true))
        session.execute(update(Explanation), [{"id": key, "relevance": blob} for key, blob in made.items()])
    result = []
    for row in rows:
        stack = decode_maps(row.relevance if row.relevance is not None else made[row.id])
        if grid is not None and stack.shape[1:] != grid:  # an image of another size: onto the run's grid
            stack = np.stack([relevance.on_grid(layer, grid) for layer in stack])
        result.append(stack)
    return result


def audit_run(session: Session, run: Run, *, seed: int = 0, progress=None) -> RunAudit:
    """Audit the run as it stands (any earlier audit of it is replaced); `progress(done, total)` over the
    explanations. Writes, does not commit."""
    counts = dict(session.execute(
        select(Explanation.predicted_label, func.count())
        .where(Explanation.run_id == run.id, Explanation.status == "ok").group_by(Explanation.predicted_label)
    ).all())
    total = sum(counts.values())
    sampled = sample_size(list(counts.values()))  # each class's sample: the whole class up to this many
    grid: tuple[int, int] | None = None
    classes: dict[int, _Class] = {}
    cells: dict[tuple[int, int], list] = {}  # (true, predicted) -> [map sum, count]
    samples: dict[tuple[int | None, int], list[int]] = {}  # (true or None, predicted) -> image ids for the mean picture
    done = 0
    for rows in _chunks(session, run.id):
        stacks = _chunk_maps(session, rows, grid)
        if grid is None:
            grid = stacks[0].shape[1:]
        predicted_maps = np.stack([stack[0] for stack in stacks])
        chunk_features = relevance.features(predicted_maps).astype(np.float16)
        predicted = np.array([row.predicted_label for row in rows])
        true = np.array([-1 if row.true_label is None else row.true_label for row in rows])
        image_ids = np.array([row.image_id for row in rows])
        for label in np.unique(predicted):
            where = predicted == label
            entry = classes.get(int(label))
            if entry is None:
                entry = classes[int(label)] = _Class(np.zeros(grid), Reservoir(sampled, [seed, int(label)]))
            entry.map_sum += predicted_maps[where].sum(axis=0)
            entry.count += int(where.sum())
            entry.labelled += int((true[where] >= 0).sum())
            entry.errors += int(((true[where] >= 0) & (true[where] != label)).sum())
            entry.sample.add(chunk_features[where], image_ids[where])
        for i, row in enumerate(rows):
            if row.true_label is not None:
                cell = cells.setdefault((row.true_label, row.predicted_label), [np.zeros(grid), 0])
                cell[0] += predicted_maps[i]
                cell[1] += 1
            keys = [(None, row.predicted_label)] + ([(row.true_label, row.predicted_label)]
                                                    if row.true_label is not None else [])
            for key in keys:  # the first images of each class and cell, for its mean picture
                picked = samples.setdefault(key, [])
                if len(picked) < MEAN_IMAGE_SAMPLE:
                    picked.append(row.image_id)
        done += len(rows)
        if progress is not None:
            progress(done, total)

    for table in (StrategyMember, StrategyGroup, ClassMap, RunAudit):
        session.execute(delete(table).where(table.run_id == run.id))
    details: dict = {}
    if grid is not None:
        shown_cells = _cells_with_pictures(cells, len(run.class_names))
        pictures = _mean_pictures(session, {key: ids for key, ids in samples.items()
                                            if key[0] is None or key in shown_cells})
        session.execute(insert(ClassMap), [
            {"run_id": run.id, "true_label": None, "predicted_label": label, "images": entry.count,
             "mean_map": encode_maps(entry.map_sum / entry.count), "mean_image": pictures.get((None, label))}
            for label, entry in sorted(classes.items())
        ] + [
            {"run_id": run.id, "true_label": true_label, "predicted_label": label, "images": count,
             "mean_map": encode_maps(total_map / count), "mean_image": pictures.get((true_label, label))}
            for (true_label, label), (total_map, count) in sorted(cells.items())
        ])
        with one_thread():
            details = _write_strategies(session, run, classes, grid, seed)
    audit = RunAudit(run_id=run.id, grid_height=int(grid[0]) if grid else 0, grid_width=int(grid[1]) if grid else 0,
                     explanations=done, finished_count=run.finished_count, details=details)
    session.add(audit)
    session.flush()
    return audit


def _cells_with_pictures(cells: dict, class_count: int) -> set:
    """The confusion cells the report draws: all of them for a few classes, else the largest off the diagonal."""
    if class_count <= MAX_GRID_CLASSES:
        return set(cells)
    off = sorted((key for key in cells if key[0] != key[1]), key=lambda key: (-cells[key][1], key))
    return set(off[:LARGEST_CELLS])


def _mean_pictures(session: Session, samples: dict) -> dict:
    """PNG of the mean of each key's sampled images, at most MEAN_IMAGE_SIDE a side, summed as they are read (one
    chunk of pictures in memory, whatever the number of classes); a key with an image that cannot be read (a file
    stored by reference that is gone) or of another size gets none."""
    keys_of: dict[int, list] = {}
    for key, ids in samples.items():
        for image_id in ids:
            keys_of.setdefault(image_id, []).append(key)
    sums: dict = {}
    broken: set = set()
    wanted = sorted(keys_of)
    for start in range(0, len(wanted), 500):
        for image in session.scalars(select(Image).where(Image.id.in_(wanted[start:start + 500]))):
            picture = _small_rgb(image)
            session.expunge(image)
            for key in keys_of[image.id]:
                if picture is None or (key in sums and sums[key].shape != picture.shape):
                    broken.add(key)
                elif key in sums:
                    sums[key] += picture
                else:
                    sums[key] = picture.astype(np.float64)
    return {key: images.png_bytes((total / len(samples[key])).round().astype(np.uint8))
            for key, total in sums.items() if key not in broken}


def _small_rgb(image: Image) -> np.ndarray | None:
    """An image's pixels as RGB, at most MEAN_IMAGE_SIDE a side; None when they cannot be read."""
    try:
        picture = image.pixels()
    except ReferenceFileError:
        return None
    if picture.ndim == 2:  # a grey PNG decodes to (H, W)
        picture = picture[:, :, None]
    scale = MEAN_IMAGE_SIDE / max(picture.shape[:2])
    if scale < 1:
        picture = images.resize(picture, max(1, round(picture.shape[0] * scale)), max(1, round(picture.shape[1] * scale)))
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[:, :, :3]


@dataclass
class _Groups:
    """A class's groups as the second pass needs them: found on its sample."""

    grouping: Grouping
    sampled_ids: np.ndarray  # the sampled image ids, ascending
    sampled_groups: np.ndarray  # and their groups
    centres: np.ndarray  # (groups, features): the mean of each group's sampled members


def _write_strategies(session: Session, run: Run, classes: dict[int, _Class], grid, seed: int) -> dict:
    """Group each class's sample; then a second pass over the run puts every explanation in a group and writes it,
    summing the groups' sizes, mistakes and mean maps (an explanation finished since the first pass joins too; one of
    a class first seen since waits for the next audit); write the groups."""
    details, found = {}, {}
    for label, entry in sorted(classes.items()):
        features, image_ids = entry.sample.sample()
        features = features.astype(np.float32)
        entry.sample = None  # its memory back before the second pass
        grouping = find_strategies(features, seed)
        count = int(grouping.groups.max()) + 1
        order = np.argsort(image_ids, kind="stable")
        found[label] = _Groups(grouping, image_ids[order], grouping.groups[order],
                               np.stack([features[grouping.groups == group].mean(axis=0) for group in range(count)]))
        details[str(label)] = {"groups": count, "sampled": grouping.sampled, "eigenvalues": grouping.eigenvalues}
    sums: dict[tuple[int, int], np.ndarray] = {}
    counted: dict[tuple[int, int], list[int]] = {}  # (label, group) -> [size, labelled, errors]
    member_rows: list[dict] = []
    for rows in _chunks(session, run.id):
        stacks = _chunk_maps(session, rows, grid)
        chunk_features = relevance.features(np.stack([stack[0] for stack in stacks])).astype(np.float16)
        predicted = np.array([row.predicted_label for row in rows])
        image_ids = np.array([row.image_id for row in rows])
        groups = np.full(len(rows), -1)
        distances = np.zeros(len(rows), dtype=np.float32)
        for label in np.unique(predicted):
            entry = found.get(int(label))
            if entry is None:  # a class first seen since the first pass (a run audited while it runs)
                continue
            where = np.flatnonzero(predicted == label)
            place = np.minimum(np.searchsorted(entry.sampled_ids, image_ids[where]), len(entry.sampled_ids) - 1)
            sampled = entry.sampled_ids[place] == image_ids[where]
            group = np.empty(len(where), dtype=np.int64)
            group[sampled] = entry.sampled_groups[place[sampled]]
            if not sampled.all():
                group[~sampled] = entry.grouping.assign(chunk_features[where[~sampled]])
            groups[where] = group
            distances[where] = np.linalg.norm(chunk_features[where].astype(np.float32) - entry.centres[group], axis=1)
        for row, stack, group, distance in zip(rows, stacks, groups.tolist(), distances.tolist()):
            if group < 0:
                continue
            key = (row.predicted_label, group)
            sums[key] = sums.get(key, 0) + stack[0]
            tally = counted.setdefault(key, [0, 0, 0])
            tally[0] += 1
            if row.true_label is not None:
                tally[1] += 1
                tally[2] += row.true_label != row.predicted_label
            member_rows.append({"run_id": run.id, "image_id": row.image_id, "label": row.predicted_label,
                                "strategy": group, "distance": distance})
        if len(member_rows) >= CHUNK:
            session.execute(insert(StrategyMember), member_rows)
            member_rows = []
    if member_rows:
        session.execute(insert(StrategyMember), member_rows)
    stats = []
    for label, entry in sorted(classes.items()):
        count = int(found[label].grouping.groups.max()) + 1
        # group 0 the largest over the whole class (its sample's largest when it was sampled whole: the same numbers)
        sizes = np.array([counted.get((label, group), [0])[0] for group in range(count)])
        order = np.argsort(-sizes, kind="stable")
        if (order != np.arange(count)).any():
            moved = {int(old): new for new, old in enumerate(order)}
            session.execute(update(StrategyMember).where(StrategyMember.run_id == run.id, StrategyMember.label == label)
                            .values(strategy=case(moved, value=StrategyMember.strategy))
                            .execution_options(synchronize_session=False))
            for table in (counted, sums):
                before = {group: table.pop((label, group)) for group in range(count) if (label, group) in table}
                table.update({(label, moved[group]): value for group, value in before.items()})
        class_rate = entry.errors / entry.labelled if entry.labelled else None
        for group in range(count):
            size, known, errors = counted.get((label, group), (0, 0, 0))
            if not size:  # its sampled members gone since the first pass
                continue
            rate = errors / known if known else None
            suspected = (rate is not None and class_rate is not None and errors >= SUSPECT_MIN_ERRORS
                         and rate - class_rate >= SUSPECT_MARGIN)
            stats.append({"label": label, "strategy": group, "size": size, "labelled": known, "errors": errors,
                          "error_rate": rate, "class_error_rate": class_rate, "suspected": bool(suspected),
                          "excess": errors - (class_rate or 0) * known})
    # Suspected shortcuts first, the largest excess of errors first; then, on a run of many classes, the groups with the
    # most errors (a thousand classes in their numbers' order would put class 0 first), else the classes in order.
    many = len(run.class_names) > MANY_CLASSES
    stats.sort(key=lambda s: (not s["suspected"], -s["excess"] if s["suspected"] else -s["errors"] if many else 0,
                              s["label"], s["strategy"]))
    for rank, group in enumerate(stats):
        mean_map = sums[(group["label"], group["strategy"])] / group["size"]
        group.pop("excess")
        session.add(StrategyGroup(run_id=run.id, rank=rank, location=relevance.location(mean_map),
                                  mean_map=encode_maps(mean_map), **group))
    session.flush()
    return details


@dataclass
class GroupView:
    """A strategy group as the commands and the report show it."""

    label: int
    class_name: str
    strategy: int
    size: int
    labelled: int
    errors: int
    error_rate: float | None
    class_error_rate: float | None
    location: str
    suspected: bool
    rank: int
    mean_map: np.ndarray
    typical: list[tuple[int, str]]  # (image id, source) of its most typical members, most typical first

    def line(self) -> str:
        """One line for the end-of-run summary."""
        rate = "-" if self.error_rate is None else f"{self.error_rate:.0%} wrong"
        versus = "" if self.class_error_rate is None else f" (class: {self.class_error_rate:.0%})"
        flag = "SUSPECTED SHORTCUT: " if self.suspected else ""
        where = self.location if self.location in ("all over", "nowhere") else f"at {self.location}"
        return f"{flag}{self.class_name} group {self.strategy}: {self.size} images, {rate}{versus}, looks {where}"


def group_views(session: Session, run: Run, *, limit: int | None = None, typical: int = SHOWN_TYPICAL) -> list[GroupView]:
    """The run's strategy groups in rank order (suspected shortcuts first; then, on a run of more than MANY_CLASSES
    classes, the most errors first), each with its most typical members."""
    query = select(StrategyGroup).where(StrategyGroup.run_id == run.id).order_by(StrategyGroup.rank)
    views = []
    for group in session.scalars(query.limit(limit) if limit else query):
        members = session.execute(
            select(StrategyMember.image_id, Image.source).join(Image, Image.id == StrategyMember.image_id)
            .where(StrategyMember.run_id == run.id, StrategyMember.label == group.label,
                   StrategyMember.strategy == group.strategy)
            .order_by(StrategyMember.distance, StrategyMember.image_id).limit(typical)
        ).all()
        views.append(GroupView(
            group.label, run.class_names[group.label], group.strategy, group.size, group.labelled, group.errors,
            group.error_rate, group.class_error_rate, group.location, group.suspected, group.rank,
            decode_maps(group.mean_map), [(image_id, source) for image_id, source in members],
        ))
    return views


def group_count(session: Session, run_id: int) -> int:
    return session.scalar(select(func.count()).select_from(StrategyGroup).where(StrategyGroup.run_id == run_id)) or 0


def group_members(session: Session, run_id: int, label: int, strategy: int):
    """Every member of a group, (image id, source), most typical first; streamed."""
    return session.execute(
        select(StrategyMember.image_id, Image.source).join(Image, Image.id == StrategyMember.image_id)
        .where(StrategyMember.run_id == run_id, StrategyMember.label == label, StrategyMember.strategy == strategy)
        .order_by(StrategyMember.distance, StrategyMember.image_id)
        .execution_options(yield_per=1000)
    )


def class_maps(session: Session, run_id: int) -> list[ClassMap]:
    """The run's class maps (true_label None) and confusion-cell maps."""
    return list(session.scalars(
        select(ClassMap).where(ClassMap.run_id == run_id).order_by(ClassMap.true_label.is_not(None),
                                                                    ClassMap.true_label, ClassMap.predicted_label)
    ))


@dataclass
class EvidenceRate:
    class_name: str  # the class the evidence is for: the true label (the predicted one without)
    images: int
    pointing: float
    evidence_share: float


def evidence_rates(session: Session, run: Run) -> list[EvidenceRate]:
    """Per class, over the explanations that have evidence: the pointing rate and the mean evidence share."""
    label = func.coalesce(Explanation.true_label, Explanation.predicted_label)
    rows = session.execute(
        select(label, func.count(), func.avg(case((Explanation.pointing.is_(True), 1.0), else_=0.0)), func.avg(Explanation.evidence_share))
        .where(Explanation.run_id == run.id, Explanation.status == "ok", Explanation.pointing.is_not(None))
        .group_by(label).order_by(label)
    ).all()
    return [EvidenceRate(run.class_names[key], int(n), float(pointing), float(share)) for key, n, pointing, share in rows]


def evidence_left_out(session: Session, run: Run) -> int:
    """Explanations of images with evidence but no pointing figures: their true label was not explained (with
    --top-labels), so the rates leave them out."""
    return session.scalar(
        select(func.count()).select_from(Explanation)
        .join(ImageEvidence, ImageEvidence.image_id == Explanation.image_id)
        .where(Explanation.run_id == run.id, Explanation.status == "ok", Explanation.pointing.is_(None))
    ) or 0
