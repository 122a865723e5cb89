"""scripts/study_training_breakdown.py on a fake run: pooled by level and entropy band, first vs last quarter."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "study_training_breakdown.py"
spec = importlib.util.spec_from_file_location("breakdown", SCRIPT)
breakdown = importlib.util.module_from_spec(spec)
spec.loader.exec_module(breakdown)


def test_breakdown_by_level_entropy_and_quarter(tmp_path):
    run = tmp_path / "empo-seed0"
    run.mkdir()
    (run / "empo_run.json").write_text(json.dumps({
        "empo": {"reward_funcs": ["empo"]},
        "model": {"model_name_or_path": "m"}, "training": {"seed": 0, "output_dir": str(run)}}))
    rows = []
    for step in range(8):  # add2: right majority at low entropy; sub2: wrong majority at high entropy
        rows.append({"step": step, "id": "arith-add2-aa", "entropy": 0.5, "kept": True, "gold": "5",
                     "answers": ["5", "5", "5", "5", "5", "5", "7", None]})
        rows.append({"step": step, "id": "arith-sub2-bb", "entropy": 1.5, "kept": step < 4, "gold": "3",
                     "answers": ["9", "9", "9", "1", "2", "4", None, None] if step >= 4 else [None] * 8})
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = breakdown.by_level_and_entropy([run])
    assert "| add2 | 1.00 (8) | - | - | 1.00 (8) |" in table
    assert "| sub2 | - | - | 0.00 (4) | 0.00 (4) |" in table  # only its kept steps count
    drift = breakdown.drift([run])
    # first quarter (steps 0-1): add2 answered 7/8, sub2 nothing; last quarter (6-7): sub2 answers 6/8
    assert "| empo | 0.44 → 0.81 | 0.50 → 0.50 | 0.38 → 0.56 |" in drift
