"""Prompts, applied through the tokenizer's chat template.

``qwen-math`` is the EMPO/Qwen math prompt. ``boxed-example`` is the default for small instruct models:
SmolLM2-135M ignores a ``\\boxed{}`` instruction in the system prompt (0% boxed) but copies one worked
example given as a prior chat turn (94% boxed); see eval/results/calibration.md.

``natural-reasoning`` is the official EMPO prompt for free-form natural-reasoning training, and
``multiple-choice`` the one of its GPQA evaluation, with "(A, B, C, or D)" made "the letter of the correct option"
because MMLU-Pro offers up to ten (github.com/QingyangZhang/EMPO: ``recipes/.../config_EMPO_NR_50K_3B.yaml``
``system_prompt``, ``src/open_r1/empo.py`` ``make_conversation`` for 'natural' datasets, and
``eval_natural/eval/gpqa/run_eval.py`` with ``--cot --use_chat_format``). ``multiple-choice-example`` adds one
worked example as a prior turn, for small instruct models (as ``boxed-example`` does for math).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from empo.errors import ConfigError

QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
MULTIPLE_CHOICE_SYSTEM = ("Please reason step by step, and put your final answer (the letter of the correct option) "
                          "within \\boxed{}.")
MULTIPLE_CHOICE_USER = ("Question: {problem}\n"
                        "Reason step by step and put the letter of the correct option in \\boxed{{}}.")


@dataclass
class PromptConfig:
    """How a question becomes chat messages."""

    system_prompt: str | None = field(default=QWEN_MATH_SYSTEM, metadata={
        "help": "System turn; None leaves the chat template's own default."})
    user_template: str = field(default="{problem}", metadata={"help": "User turn; '{problem}' is the question."})
    few_shot: list[dict] = field(default_factory=list, metadata={
        "help": "Worked examples as prior turns: a list of {problem, response}."})

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, PromptConfig] = {
    "qwen-math": PromptConfig(),
    "boxed-example": PromptConfig(
        system_prompt=QWEN_MATH_SYSTEM,
        few_shot=[{"problem": "What is 12 + 7?", "response": "12 + 7 = 19. The answer is \\boxed{19}."}],
    ),
    "natural-reasoning": PromptConfig(
        system_prompt=QWEN_MATH_SYSTEM,
        user_template="Question: {problem} Reason step by step and put the answer in \\boxed{{}}.",
    ),
    "multiple-choice": PromptConfig(system_prompt=MULTIPLE_CHOICE_SYSTEM, user_template=MULTIPLE_CHOICE_USER),
    "multiple-choice-example": PromptConfig(
        system_prompt=MULTIPLE_CHOICE_SYSTEM,
        user_template=MULTIPLE_CHOICE_USER,
        few_shot=[{"problem": "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth",
                   "response": "Mercury orbits closest to the Sun. The answer is \\boxed{B}."}],
    ),
}
DEFAULT_PRESET = "boxed-example"


def get_prompt_config(preset_or_config: str | dict | PromptConfig | None) -> PromptConfig:
    if preset_or_config is None:
        return PRESETS[DEFAULT_PRESET]
    if isinstance(preset_or_config, PromptConfig):
        return preset_or_config
    if isinstance(preset_or_config, str):
        if preset_or_config in PRESETS:
            return PRESETS[preset_or_config]
        from empo import resources

        path = resources.resolve(preset_or_config, "recipes") or Path(preset_or_config).expanduser()
        if path.suffix not in (".yaml", ".yml", ".json"):
            raise ConfigError(f"unknown prompt preset '{preset_or_config}'; known: {sorted(PRESETS)} "
                             "(or give a .yaml/.json prompt file)")
        from empo.io import read_yaml

        loaded = read_yaml(path, "prompt file")  # JSON is YAML
        if not isinstance(loaded, dict):
            raise ConfigError(f"prompt file '{path}' must hold a mapping of system_prompt, user_template, few_shot")
        preset_or_config = loaded
    unknown = set(preset_or_config) - set(PromptConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown prompt key(s) {sorted(unknown)}; "
                          f"known: {sorted(PromptConfig.__dataclass_fields__)}")
    return PromptConfig(**preset_or_config)


def build_messages(problem: str, config: PromptConfig) -> list[dict]:
    """The chat turns for one question (without the assistant's answer)."""
    messages = []
    if config.system_prompt:
        messages.append({"role": "system", "content": config.system_prompt})
    for shot in config.few_shot:
        messages.append({"role": "user", "content": config.user_template.format(problem=shot["problem"])})
        messages.append({"role": "assistant", "content": shot["response"]})
    messages.append({"role": "user", "content": config.user_template.format(problem=problem)})
    return messages
