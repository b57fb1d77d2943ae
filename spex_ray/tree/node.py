"""One node of a query's search tree: a reasoning step and its scores."""

from __future__ import annotations

from dataclasses import dataclass, field

ROOT_ID = "0"


@dataclass(eq=False)
class Node:
    """A reasoning step. The root holds no step; child k of node n has id f"{n.id}.{k}".

    `reward` scores this step; `path_reward` aggregates the rewards from the root down to
    here. `terminal` nodes end a path (an answer appeared, the model stopped, or a depth or
    token limit was hit) and carry the extracted `answer`, if any. `visits` and
    `value_sum` are MCTS statistics.
    """

    id: str
    parent: Node | None = None
    step: str = ""
    depth: int = 0
    reward: float = 0.0
    path_reward: float = 0.0
    path_tokens: int = 0
    terminal: bool = False
    answer: str | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0

    def child_id(self, k: int) -> str:
        return f"{self.id}.{k}"

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def value(self) -> float:
        """Mean backed-up value (MCTS); the step reward before the first visit."""
        return self.value_sum / self.visits if self.visits else self.reward

    def path(self) -> list[Node]:
        """The nodes from the root's first child down to this node."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None and not node.is_root:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def steps(self) -> list[str]:
        return [node.step for node in self.path()]
