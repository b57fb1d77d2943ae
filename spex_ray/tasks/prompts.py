"""Chat prompt for step-by-step math solving (kept short for small instruct models)."""

from __future__ import annotations

STEP_DELIMITER = "\n\n"

SYSTEM_PROMPT = (
    "Solve the math problem step by step. "
    "Write each step as a short paragraph and separate the steps with a blank line. "
    "Finish with: The answer is \\boxed{...}"
)


def build_messages(problem: str) -> list[dict[str, str]]:
    """Return the chat messages (system, user) asking the model to solve ``problem``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": problem.strip()},
    ]
