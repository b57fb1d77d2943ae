"""The search tree of one query."""

from __future__ import annotations

from collections.abc import Iterator

from spex_ray.tree.node import ROOT_ID, Node


class QueryTree:
    """Nodes by id, rooted at the prompt; children are appended in child-index order."""

    def __init__(self) -> None:
        self.root = Node(id=ROOT_ID)
        self.nodes: dict[str, Node] = {ROOT_ID: self.root}

    def add_child(self, parent: Node, k: int, **fields) -> Node:
        return self.attach(Node(id=parent.child_id(k), parent=parent, depth=parent.depth + 1, **fields))

    def attach(self, node: Node) -> Node:
        """Add a node built detached (a scored child) under its parent, which must be in the tree."""
        if node.id in self.nodes:
            raise ValueError(f"node {node.id} already exists")
        if node.parent is None or self.nodes.get(node.parent.id) is not node.parent:
            raise ValueError(f"node {node.id}: its parent is not in the tree")
        node.parent.children.append(node)
        self.nodes[node.id] = node
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def depth(self) -> int:
        return max(node.depth for node in self)

    def terminals(self) -> list[Node]:
        return [node for node in self if node.terminal]

    def layer(self, depth: int) -> list[Node]:
        return [node for node in self if node.depth == depth]

    def signature(self) -> list[tuple[str, str, float]]:
        """(id, step, reward) of every node in id order: equal trees have equal signatures."""
        return sorted((node.id, node.step, round(node.reward, 9)) for node in self)
