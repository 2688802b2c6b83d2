"""Reading jammi.yaml without letting anchors and aliases blow it up.

Aliases stay allowed (sharing one `quality:` block between sources is a fair use), but what
they add to the document is counted before any Python object is built: a nested
"billion laughs" file of a few hundred bytes expands to hundreds of millions of nodes and is
refused at once instead of taking seconds and hundreds of megabytes.

The document is parsed by libyaml when PyYAML was built with it (the same safe constructor
builds the objects), else by PyYAML's own parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jammi.errors import ConfigError

MAX_ALIAS_NODES = 10_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: 5x faster


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], limit: int) -> int:
    """Nodes in the tree under `node` with every alias written out (stops counting past `limit`)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise ValueError("an alias refers to a node that contains it (a recursive structure)")
    open_.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_, limit)
        if total > limit:
            break
    open_.discard(id(node))
    sizes[id(node)] = total
    return total


def _distinct_nodes(node: yaml.Node, seen: set[int]) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            stack += [c for pair in n.value for c in pair]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def load_yaml(text: str, file: Path, max_alias_nodes: int = MAX_ALIAS_NODES) -> Any:
    """The document in `text`; ConfigError naming `file` when it is not YAML or when its aliases
    would add more than `max_alias_nodes` nodes."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        seen: set[int] = set()
        _distinct_nodes(root, seen)
        size = _expanded_size(root, {}, set(), len(seen) + max_alias_nodes)
        if size > len(seen) + max_alias_nodes:
            raise ConfigError(f"{file}: YAML aliases expand to more than {max_alias_nodes} extra "
                              "nodes (a nested anchor/alias 'bomb'?); write the repeated parts out")
        return loader.construct_document(root)
    except ValueError as err:
        raise ConfigError(f"{file}: YAML aliases: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {err}") from None
    finally:
        loader.dispose()
