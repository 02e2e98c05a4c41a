"""The evaluation harness of the detectors per entity in its short form (bench/detect_eval.py --entities --quick):
one seed of a synthetic site, 3 warm-up and 2 scored days, two attacks of every class, benign look-alikes, through
the shipped detectors, scorer and attention control. The full form's numbers are in bench/README.md."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import entity_site


def test_every_class_is_caught_and_benign_jobs_stop_alerting():
    run = entity_site.run(1, warm_days=3, scored_days=2, per_class=2, budget=2.0)
    res = entity_site.evaluate(run)
    per = res["per"]
    assert all(per[k]["n"] >= 1 for k in entity_site.CLASSES), per
    caught = {k: (v["hit"], v["n"]) for k, v in per.items()}
    assert sum(h for h, _ in caught.values()) >= 0.85 * sum(n for _, n in caught.values()), caught
    assert all(h >= 1 for h, _ in caught.values()), caught
    detected = sum(len(v["delays"]) for v in per.values())
    assert sum(v["alerts"] for v in per.values()) <= 1.5 * detected, per
    # no detector per entity raises a false alert here; the benign jobs are quiet after their second day
    assert not set(res["false_types"]) & set(entity_site.CLASSES), res["false_types"]
    assert res["benign_late"] == {k: 0 for k in entity_site.BENIGN}, res["benign_late"]
    assert run["actors"] < 400                      # spoofed and one-off sources never became actors
