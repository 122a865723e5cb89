"""scripts/freeform_groups.py prints a sample of a free-form run's groups with their clusters."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "freeform_groups.py"
spec = importlib.util.spec_from_file_location("freeform_groups", SCRIPT)
freeform_groups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(freeform_groups)


def test_a_sample_of_groups_shows_each_answer_with_its_cluster_count_and_reward(tmp_path, capsys):
    rows = [{"step": 1, "id": "facts/opposite_hot/0", "gold": "cold", "entropy": 0.66, "kept": True,
             "answers": ["The opposite of hot is cold.", "Cold.", "The opposite of hot is cool.", None],
             "cluster_ids": [0, 0, 1, 2], "rewards": {"empo": [0.5, 0.5, 0.25, 0.0]}},
            {"step": 2, "id": "facts/x/0", "gold": "x", "entropy": 0.0, "kept": False,
             "answers": ["x", "x"], "cluster_ids": [0, 0], "rewards": {"empo": [1.0, 1.0]}}]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert freeform_groups.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 of the run's 1 groups with more than one distinct answer")
    assert "| 0 | Cold. | 1 | 0.500 |" in out and "| 1 | The opposite of hot is cool. | 1 | 0.250 |" in out
    assert "| 2 | *(no answer)* | 1 | 0.000 |" in out and "reference: 'cold'" in out
