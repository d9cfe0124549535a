"""Loading rule packs: YAML files an evaluator can read, validated before anything runs.

Files are read with ``yaml.safe_load`` (no Python objects can be built from a rule file) and
checked against ``rules/schema.json`` plus each check type's own parameter schema. Any
problem is reported as ``path:line: where: what`` and the file is refused as a whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import regex
import yaml

import rules as bundled_rules
from audits.checks import CHECKS, load_check_types

RULES_DIR = Path(bundled_rules.__file__).parent
SCHEMA = json.loads((RULES_DIR / "schema.json").read_text(encoding="utf-8"))


class RuleFileError(Exception):
    """A rule file that cannot be used; ``problems`` are 'path:line: message' strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Rule:
    id: str
    title: dict[str, str]
    severity: str
    references: list[str]
    scope: str
    check: dict[str, Any]
    guidance: dict[str, str]
    examples: list[dict[str, Any]]
    pack: Pack
    line: int
    applies_to: str = "all"
    crawl_hints: list[str] = field(default_factory=list)
    weight: float | None = None  # score weight; None: the pack's weight for the severity

    @cached_property
    def sha256(self) -> str:
        """Hash of everything that decides this rule's result, recorded in each finding."""
        spec = {
            "id": self.id,
            "severity": self.severity,
            "scope": self.scope,
            "check": self.check,
            "applies_to": self.applies_to,
            "policy": self.pack.policy,
            "clauses": self.pack.clauses,
        }
        if self.pack.clause_model:  # a retrained model judges differently
            spec["clause_model"] = self.pack.clause_model.get("sha256")
        return hashlib.sha256(
            json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()


@dataclass
class Pack:
    id: str
    version: str
    title: dict[str, str]
    path: Path
    sha256: str
    policy: dict[str, Any] = field(default_factory=dict)
    clauses: dict[str, list[str]] = field(default_factory=dict)
    clause_model: dict[str, str] = field(default_factory=dict)  # file, language, path, sha256
    weights: dict[str, float] = field(default_factory=dict)  # severity -> score weight
    rules: list[Rule] = field(default_factory=list)


def _node_at(root: yaml.Node, path: list[Any]) -> yaml.Node:
    """The YAML node at a JSON-schema error path (for its line number)."""
    node = root
    for key in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node


def _where(path: list[Any]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(file)"


def _duplicate_keys(node: yaml.Node, path: Path, problems: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append(f"{path}:{key.start_mark.line + 1}: duplicate key {key.value!r}")
            seen.add(key.value)
            _duplicate_keys(value, path, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item, path, problems)


def _check_patterns(
    data: Any, root: yaml.Node, path: Path, trail: list[Any], problems: list[str]
) -> None:
    """Every string list under a pattern-ish key must compile as a regular expression."""
    if isinstance(data, dict):
        for key, value in data.items():
            _check_patterns(value, root, path, [*trail, key], problems)
    elif (
        isinstance(data, list)
        and trail
        and trail[-1] not in ("references", "examples", "pages", "checks")
    ):
        for i, item in enumerate(data):
            if isinstance(item, str):
                try:
                    regex.compile(item)
                except regex.error as exc:
                    line = _node_at(root, [*trail, i]).start_mark.line + 1
                    problems.append(
                        f"{path}:{line}: {_where([*trail, i])}: not a valid pattern: {exc}"
                    )
            else:
                _check_patterns(item, root, path, [*trail, i], problems)


def _check_params(
    check: dict[str, Any], trail: list[Any], root: yaml.Node, path: Path, problems: list[str]
) -> None:
    kind = check.get("type")
    if kind not in CHECKS:
        line = _node_at(root, [*trail, "type"]).start_mark.line + 1
        problems.append(
            f"{path}:{line}: {_where([*trail, 'type'])}: unknown check type "
            f"{kind!r} (known: {', '.join(sorted(CHECKS))})"
        )
        return
    validator = jsonschema.Draft202012Validator(CHECKS[kind].params_schema)
    for err in validator.iter_errors(check):
        full = [*trail, *err.absolute_path]
        line = _node_at(root, full).start_mark.line + 1
        problems.append(f"{path}:{line}: {_where(full)}: {err.message}")
    for i, sub in enumerate(check.get("checks", []) or []):
        if isinstance(sub, dict):
            _check_params(sub, [*trail, "checks", i], root, path, problems)


def _refuse_aliases(root: yaml.Node, path: Path) -> None:
    """Rule files have no use for YAML anchors and aliases (``&a``, ``*a``); refused, since
    they allow self-referencing structures and exponential expansion (fuzzing found both)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise RuleFileError(
                [f"{path}:{node.start_mark.line + 1}: YAML anchors and aliases (&, *) are not "
                 "allowed in rule files"]
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_pack(path: Path) -> Pack:
    load_check_types()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RuleFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        text = raw.decode("utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise RuleFileError([f"{path}: not UTF-8 text ({exc})"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleFileError([f"{path}{line}: not valid YAML: {problem}"]) from exc
    except RecursionError as exc:
        raise RuleFileError([f"{path}: nested too deeply to be a rule file"]) from exc
    if root is not None:
        _refuse_aliases(root, path)
    if root is None or not isinstance(data, dict):
        raise RuleFileError(
            [f"{path}:1: a rule pack must be a mapping with pack, version, title and rules"]
        )
    problems: list[str] = []
    _duplicate_keys(root, path, problems)
    for err in sorted(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
        key=lambda e: list(map(str, e.absolute_path)),
    ):
        trail = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            # Point at the unexpected key itself, not at the mapping that holds it.
            known = err.schema.get("properties", {})
            trail += [k for k in err.instance if k not in known][:1]
        line = _node_at(root, trail).start_mark.line + 1
        problems.append(f"{path}:{line}: {_where(trail)}: {err.message}")
    if problems:
        raise RuleFileError(problems)
    for i, rule in enumerate(data["rules"]):
        _check_params(rule["check"], ["rules", i, "check"], root, path, problems)
    _check_patterns(
        {k: data[k] for k in ("policy", "clauses") if k in data}, root, path, [], problems
    )
    for i, rule in enumerate(data["rules"]):
        _check_patterns(rule["check"], root, path, ["rules", i, "check"], problems)
    seen: dict[str, int] = {}
    for i, rule in enumerate(data["rules"]):
        line = _node_at(root, ["rules", i]).start_mark.line + 1
        if rule["id"] in seen:
            problems.append(
                f"{path}:{line}: rules[{i}].id: {rule['id']!r} already defined "
                f"at line {seen[rule['id']]}"
            )
        seen[rule["id"]] = line
        uses_policy = rule["scope"] == "policy" or rule["check"]["type"] in (
            "privacy_policy",
            "privacy_clause",
        )
        if uses_policy and not data.get("policy"):
            problems.append(f"{path}:{line}: rules[{i}]: needs a 'policy' section in the pack")
        if rule["check"]["type"] == "privacy_clause" and rule["check"].get("category") not in (
            data.get("clauses") or {}
        ):
            problems.append(
                f"{path}:{line}: rules[{i}].check.category: no patterns for "
                f"{rule['check'].get('category')!r} under 'clauses'"
            )
    model_spec = dict(data.get("clause_model") or {})
    digest = hashlib.sha256(raw)
    if model_spec:
        model_path = (path.parent / model_spec["file"]).resolve()
        line = _node_at(root, ["clause_model", "file"]).start_mark.line + 1
        if path.parent.resolve() not in model_path.parents:
            problems.append(f"{path}:{line}: clause_model.file: must stay beside the pack")
        elif not model_path.is_file():
            problems.append(f"{path}:{line}: clause_model.file: no file {model_path}")
        else:
            model_bytes = model_path.read_bytes()
            model_spec["path"] = str(model_path)
            model_spec["sha256"] = hashlib.sha256(model_bytes).hexdigest()
            digest.update(model_bytes)  # the model judges too: its bytes are part of the pack
    if problems:
        raise RuleFileError(problems)
    pack = Pack(
        id=data["pack"],
        version=str(data["version"]),
        title=data["title"],
        path=path,
        sha256=digest.hexdigest(),
        policy=data.get("policy") or {},
        clauses=data.get("clauses") or {},
        clause_model=model_spec,
        weights=dict(data.get("weights") or {}),
    )
    for i, spec in enumerate(data["rules"]):
        pack.rules.append(
            Rule(
                id=spec["id"],
                title=spec["title"],
                severity=spec["severity"],
                references=spec["references"],
                scope=spec["scope"],
                check=spec["check"],
                guidance=spec["guidance"],
                examples=spec["examples"],
                pack=pack,
                line=_node_at(root, ["rules", i]).start_mark.line + 1,
                applies_to=spec.get("applies_to", "all"),
                crawl_hints=spec.get("crawl_hints", []),
                weight=spec.get("weight"),
            )
        )
    return pack


def pack_files(paths: list[Path] | None = None) -> list[Path]:
    """YAML files named, or found in named folders; the bundled packs by default."""
    if not paths:
        paths = [RULES_DIR]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            files.append(p)
    return files


@dataclass
class RuleSet:
    packs: list[Pack]

    @property
    def rules(self) -> list[Rule]:
        return [r for p in self.packs for r in p.rules]

    @property
    def crawl_hints(self) -> list[str]:
        hints: list[str] = []
        for rule in self.rules:
            hints.extend(rule.crawl_hints)
        for pack in self.packs:
            hints.extend(h for h in pack.policy.get("link_text", []) if regex.escape(h) == h)
        return sorted(set(hints))

    def describe(self) -> dict[str, Any]:
        return {
            p.id: {"version": p.version, "sha256": p.sha256, "file": p.path.name}
            for p in self.packs
        }


def load_rules(paths: list[Path] | None = None, *, pack_ids: list[str] | None = None) -> RuleSet:
    """Load and validate packs; all problems of all files are reported together."""
    packs, problems = [], []
    for file in pack_files(paths):
        try:
            packs.append(load_pack(file))
        except RuleFileError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RuleFileError(problems)
    owner: dict[str, str] = {}
    for pack in packs:
        for rule in pack.rules:
            if rule.id in owner:
                problems.append(
                    f"{pack.path}:{rule.line}: rule {rule.id!r} is also defined "
                    f"in pack {owner[rule.id]!r}"
                )
            owner[rule.id] = pack.id
    if problems:
        raise RuleFileError(problems)
    if pack_ids:
        unknown = sorted(set(pack_ids) - {p.id for p in packs})
        if unknown:
            raise RuleFileError(
                [
                    f"unknown rule pack(s): {', '.join(unknown)} (known: "
                    f"{', '.join(p.id for p in packs)})"
                ]
            )
        packs = [p for p in packs if p.id in pack_ids]
    return RuleSet(packs)
