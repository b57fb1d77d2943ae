"""ChatTemplate: how an engine's model wants chat messages turned into a prompt, as a value.

An engine hands its template out once (Engine.chat_template()); whoever builds prompts (the
tree actor, the simulation) renders them locally, so no query pays a round trip to the
engine for its prompt. A model's own Jinja template is rendered as transformers renders it
(render_jinja_template, with the tokenizer's special tokens as variables); a model without
one gets plain_chat (contents, blank-line separated); other engines name a renderer of their
own by "module:function" (the simulator's sim.workload:render_chat), imported where it renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spex_ray.registry import load_target

Messages = Sequence[Mapping[str, str]]


def plain_chat(messages: Messages) -> str:
    """A prompt for a model without a chat template: the messages' contents, blank-line separated."""
    return "".join(m.get("content", "").strip() + "\n\n" for m in messages)


PLAIN = "spex_ray.engines.chat:plain_chat"


@dataclass(frozen=True)
class ChatTemplate:
    """A picklable chat template: a Jinja source (a Hugging Face tokenizer's chat_template)
    with its variables, or, without one, a renderer function named "module:function"."""

    jinja: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)  # bos_token, eos_token, ...
    renderer: str = PLAIN  # messages -> prompt, when there is no Jinja source

    @classmethod
    def of_tokenizer(cls, tokenizer: object) -> ChatTemplate:
        """The template of a Hugging Face tokenizer (plain style when it has none)."""
        jinja = getattr(tokenizer, "chat_template", None)
        if not isinstance(jinja, str) or not jinja:
            return cls()
        special = getattr(tokenizer, "special_tokens_map", {}) or {}
        return cls(jinja, {k: v for k, v in special.items() if isinstance(v, str)})

    def render(self, messages: Messages) -> str:
        """The prompt for `messages`, ending where the assistant's reply begins."""
        if self.jinja is None:
            return load_target(self.renderer)(messages)
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            [list(messages)], chat_template=self.jinja, add_generation_prompt=True, **self.variables
        )
        return rendered[0]
