"""The audit's bounded memory: each class is grouped on a seeded sample (audit.strategies.Reservoir), whole while the
class is no larger than the sample, and every explanation is put in a group by a second pass. Runs stored as a worker
stores them (benchmarks.audit's synthetic run: every mistake looks at one corner), on both databases."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sqlalchemy import select

from audit import strategies
from audit.service import audit_run, ensure_audit
from audit.strategies import Reservoir, sample_size
from benchmarks.audit import store_synthetic_run
from db.models import Explanation, StrategyGroup, StrategyMember


def sampled(size: int, seed: int, stream: np.ndarray, chunks: int) -> np.ndarray:
    reservoir = Reservoir(size, seed)
    for part in np.array_split(stream, chunks):
        reservoir.add(part.astype(np.float16)[:, None], part)
    features, rows = reservoir.sample()
    assert np.array_equal(features[:, 0], rows.astype(np.float16))  # the columns stay together
    return rows


def test_a_reservoir_keeps_a_short_stream_whole_and_samples_a_long_one_the_same_whatever_its_chunks():
    assert np.array_equal(sampled(100, 0, np.arange(80), 3), np.arange(80))
    one = sampled(100, 0, np.arange(5000), 1)
    assert len(one) == 100 and np.all(np.diff(one) > 0)  # in the order they came
    assert all(np.array_equal(one, sampled(100, 0, np.arange(5000), chunks)) for chunks in (7, 5000))
    assert not np.array_equal(one, sampled(100, 1, np.arange(5000), 1))
    # uniform: each of 1,000 rows kept about size / 1,000 of the time over many seeds
    kept = np.bincount(np.concatenate([sampled(50, seed, np.arange(1000), 4) for seed in range(400)]), minlength=1000)
    assert abs(kept[:500].mean() - 20) < 1.5 and abs(kept[500:].mean() - 20) < 1.5


def test_the_sample_is_the_whole_class_up_to_its_size_and_shrinks_only_for_many_large_classes():
    assert sample_size([100_000] * 10) == strategies.SAMPLE == 2000
    assert sample_size([50] * 1000 + [100_000] * 10) == 2000  # small classes leave room for the large
    assert sample_size([1000] * 1000) == 200  # SAMPLED_ROWS in all
    assert sample_size([10] * 100_000) == strategies.MIN_IMAGES


def members(session, run_id: int) -> list[tuple]:
    return [tuple(row) for row in session.execute(
        select(StrategyMember.image_id, StrategyMember.label, StrategyMember.strategy, StrategyMember.distance)
        .where(StrategyMember.run_id == run_id).order_by(StrategyMember.image_id))]


def test_a_class_larger_than_its_sample_is_grouped_on_it_and_every_explanation_joins_a_group(sessions, monkeypatch):
    monkeypatch.setattr(strategies, "SAMPLE", 100)
    with sessions() as session:
        run = store_synthetic_run(session, 600, classes=2)
        audit = ensure_audit(session, run)
        explained = session.execute(select(Explanation.image_id, Explanation.predicted_label, Explanation.correct)
                                    .where(Explanation.run_id == run.id).order_by(Explanation.image_id)).all()
        sizes = Counter(label for _, label, _ in explained)
        assert min(sizes.values()) > 100
        assert {label: entry["sampled"] for label, entry in audit.details.items()} == {"0": 100, "1": 100}

        first = members(session, run.id)
        assert [(image_id, label) for image_id, label, _, _ in first] == [(e.image_id, e.predicted_label)
                                                                          for e in explained]
        groups = session.scalars(select(StrategyGroup).where(StrategyGroup.run_id == run.id)
                                 .order_by(StrategyGroup.label, StrategyGroup.strategy)).all()
        counted = Counter((label, strategy) for _, label, strategy, _ in first)
        assert {(g.label, g.strategy): g.size for g in groups} == counted
        for label, count in sizes.items():
            group_sizes = [g.size for g in groups if g.label == label]
            assert sum(group_sizes) == count and group_sizes == sorted(group_sizes, reverse=True)  # 0 the largest
        # the planted shortcut: in each class, the group holding its mistakes holds little else, and all of them
        for label in sizes:
            mistakes = {e.image_id for e in explained if e.predicted_label == label and not e.correct}
            by_group = Counter(strategy for image_id, _, strategy, _ in first if image_id in mistakes)
            strategy, hits = by_group.most_common(1)[0]
            assert hits / counted[(label, strategy)] >= 0.9 and hits / len(mistakes) >= 0.9, (label, by_group)
            assert next(g for g in groups if (g.label, g.strategy) == (label, strategy)).suspected

        audit_run(session, run)  # again, the same seed: the same sample, groups and distances
        assert members(session, run.id) == first


def test_a_class_no_larger_than_its_sample_is_grouped_whole(sessions):
    with sessions() as session:
        run = store_synthetic_run(session, 300, classes=3)
        audit = ensure_audit(session, run)
        sizes = Counter(session.scalars(select(Explanation.predicted_label).where(Explanation.run_id == run.id)))
        assert {label: entry["sampled"] for label, entry in audit.details.items()} == {
            str(label): count for label, count in sizes.items()}
