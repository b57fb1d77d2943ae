"""Chat prompt for step-by-step math solving (kept short for small instruct models)."""

from __future__ import annotations

STEP_DELIMITER = "\n\n"

_DELIMITER_WORDS = {"\n\n": "a blank line", "\n": "a line break"}


def system_prompt(step_delimiter: str = STEP_DELIMITER) -> str:
    """The system prompt; it names the delimiter the search splits steps on."""
    separator = _DELIMITER_WORDS.get(step_delimiter, repr(step_delimiter))
    return (
        "Solve the math problem step by step. "
        f"Write each step as a short paragraph and separate the steps with {separator}. "
        "Finish with: The answer is \\boxed{...}"
    )


SYSTEM_PROMPT = system_prompt()


def build_messages(problem: str, step_delimiter: str = STEP_DELIMITER) -> list[dict[str, str]]:
    """Return the chat messages (system, user) asking the model to solve ``problem``, with
    steps separated by ``step_delimiter`` (the search's search.step_delimiter)."""
    return [
        {"role": "system", "content": system_prompt(step_delimiter)},
        {"role": "user", "content": problem.strip()},
    ]
