"""The stack file, read directly, without the Pulumi engine (the offline
tools: render, doctor, talos, stacks): ``Pulumi.<stack>.yaml`` checked as a
file (YAML, the stack-file settings, namespaces, duplicates, secrets in plain
text), then validated, every problem with its line."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config.parse import did_you_mean, parse_stack_config
from components.config.secrets import SECRET_KEYS, plain_text_secret
from components.config.stack import TOP_LEVEL_KEYS, StackConfig
from components.config_issues import MISSING, NOT_SHOWN, PROJECT, ConfigError, ConfigIssue

# The top-level settings of a Pulumi.<stack>.yaml (ProjectStack in Pulumi's
# sdk/go/common/workspace/project.go).
STACK_FILE_KEYS = ("config", "encryptedkey", "encryptionsalt", "environment", "secretsprovider")
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXAMPLE = "see Pulumi.homelab.yaml"


def stack_file(directory: str | Path, stack: str) -> Path:
    """``<directory>/Pulumi.<stack>.yaml``; a stack name that is not one (a
    path, an empty string) is a ConfigError."""
    if not _STACK_NAME.match(stack):
        raise ConfigError([ConfigIssue("", stack, f"{stack!r} is not a stack name: letters, digits, '-', '_' and '.', "
                                                  "e.g. homelab for Pulumi.homelab.yaml")])
    return Path(directory) / f"Pulumi.{stack}.yaml"


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True)
class _StackDocument:
    raw: dict[str, Any]  # this project's non-secret keys, namespace stripped
    issues: list[ConfigIssue]  # problems of the file itself (syntax, shape, stray keys, plain secrets)
    entries: list[tuple[str, Any, Any]]  # (key without namespace, key node, value node), for line numbers


def _file_issue(message: str, line: int | None = None) -> ConfigIssue:
    return ConfigIssue("", MISSING, message, line)


def describe_yaml_error(error: Any) -> str:
    """A PyYAML error in one line (``line 28: a tab character at column 1;
    ...``), without PyYAML's excerpt that names the file ``<unicode string>``."""
    mark = getattr(error, "problem_mark", None)
    problem = str(getattr(error, "problem", None) or error).strip()
    column = f" at column {mark.column + 1}" if mark is not None else ""
    if "\\t" in problem or "tab character" in problem:
        problem = f"not valid YAML: a tab character{column}; YAML indents with spaces only: replace the tab with spaces"
    else:
        problem = f"not valid YAML{column}: {problem}"
        context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} that starts at line {context_mark.line + 1})"
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def _read_stack_document(path: Path) -> _StackDocument:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _StackDocument({}, [_file_issue(f"no such file: copy Pulumi.homelab.yaml to {path.name} and describe your node (README, Configuration)")], [])
    except IsADirectoryError:
        return _StackDocument({}, [_file_issue("is a folder, not a stack file")], [])
    except OSError as error:
        return _StackDocument({}, [_file_issue(f"cannot be read: {error.strerror or error}")], [])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        return _StackDocument({}, [_file_issue(f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8", line)], [])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return _StackDocument({}, [_file_issue(describe_yaml_error(error))], [])
    if document is None:
        return _StackDocument({}, [_file_issue(f"the file is empty: it needs a `config:` section with {PROJECT}:<key> entries ({_EXAMPLE})")], [])
    if not isinstance(document, dict):
        kind = {list: "a list", str: "a single string"}.get(type(document), f"a {type(document).__name__}")
        return _StackDocument({}, [_file_issue(f"is not a Pulumi stack file: it holds {kind}, not a mapping; a stack file is a "
                                               f"`config:` section with {PROJECT}:<key> entries ({_EXAMPLE})", node.start_mark.line + 1)], [])
    issues: list[ConfigIssue] = []
    key_nodes = {str(key.value): (key, value) for key, value in node.value}
    for key, (key_node, _) in key_nodes.items():
        if key not in STACK_FILE_KEYS:
            issues.append(ConfigIssue(key, NOT_SHOWN, f"not a stack-file setting;{did_you_mean(key, list(STACK_FILE_KEYS))} "
                                      f"allowed at the top: {', '.join(STACK_FILE_KEYS)}", key_node.start_mark.line + 1, namespaced=False))
    if "config" not in key_nodes:
        return _StackDocument({}, issues + [_file_issue(f"no `config:` section: this project's keys go under it as {PROJECT}:<key> ({_EXAMPLE})")], [])
    config_key, config_node = key_nodes["config"]
    config = document["config"]
    if config is None:
        config, config_node = {}, None
    if not isinstance(config, dict):
        return _StackDocument({}, issues + [_file_issue("`config:` must be a mapping of <namespace>:<key> entries, e.g. "
                                                        f"{PROJECT}:vm ({_EXAMPLE})", config_key.start_mark.line + 1)], [])
    known = sorted(TOP_LEVEL_KEYS | SECRET_KEYS)
    prefix = f"{PROJECT}:"
    raw: dict[str, Any] = {}
    entries: dict[str, tuple[str, Any, Any]] = {}  # YAML keeps the last of duplicate keys; so do the line numbers
    seen: dict[str, int] = {}
    for key_node, value_node in (config_node.value if config_node is not None else []):
        full, line = str(key_node.value), key_node.start_mark.line + 1
        value = config.get(key_node.value)
        if full in seen:
            issues.append(ConfigIssue(full, NOT_SHOWN, f"defined twice (also line {seen[full]}); Pulumi refuses a duplicate key", line, namespaced=False))
        seen.setdefault(full, line)
        namespace, colon, name = full.partition(":")
        if not colon:
            issues.append(ConfigIssue(full, NOT_SHOWN, "a config key without a namespace (stack files name keys <namespace>:<name>);"
                                      f"{did_you_mean(full, known, prefix) or f' e.g. {prefix}vm'}", line, namespaced=False))
            continue
        if namespace != PROJECT:
            if _near_project(namespace):
                issues.append(ConfigIssue(full, NOT_SHOWN, f"namespace {namespace!r} is not this project's ({PROJECT});"
                                          f"{did_you_mean(name, known, prefix) or f' e.g. {prefix}vm'}", line, namespaced=False))
            continue  # another namespace: a provider's own config (e.g. proxmoxve:, kubernetes:)
        if name in SECRET_KEYS:
            if not (isinstance(value, dict) and set(value) == {"secure"}):
                issues.append(plain_text_secret(name, line))
            continue
        raw[name] = value
        entries[name] = (name, key_node, value_node)
        issues += _nested_duplicates(value_node, name)
    return _StackDocument(raw, issues, list(entries.values()))


def _nested_duplicates(node: Any, path: str) -> list[ConfigIssue]:
    """A key set twice inside one mapping (``cores: 6`` then ``cores: 8``):
    PyYAML keeps the last silently; both lines are named instead."""
    found: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                found.append(ConfigIssue(f"{path}.{key}", NOT_SHOWN, f"defined twice, at line {seen[key]} and line {line}; "
                                         "YAML would keep only the last: remove one", line))
            seen.setdefault(key, line)
            found += _nested_duplicates(value_node, f"{path}.{key}")
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _nested_duplicates(item, f"{path}[{index}]")
    return found


def _near_project(namespace: str) -> bool:
    folded = namespace.lower().replace("_", "-")
    return folded == PROJECT or difflib.SequenceMatcher(None, folded, PROJECT).ratio() >= 0.8


def _line_of(entries: list[tuple[str, Any, Any]], key: str) -> int | None:
    """The line of the deepest node along an issue's key path (``gpus[0].slot``,
    ``talos.nodeLabels.drmoo.io/role (key)``): the key itself, or for a
    missing key the section that lacks it."""
    rest, line = key.removesuffix(" (key)"), None
    pairs: list[tuple[str, Any, Any]] | None = entries
    current: Any = None
    while rest:
        if pairs is not None:
            matches = [(name, k, v) for name, k, v in pairs
                       if rest == name or rest.startswith(name + ".") or rest.startswith(name + "[")]
            if not matches:
                break
            name, key_node, current = max(matches, key=lambda match: len(match[0]))
            line, rest = key_node.start_mark.line + 1, rest[len(name):].removeprefix(".")
        elif isinstance(current, yaml.SequenceNode):
            index = re.match(r"\[(\d+)\]\.?", rest)
            if not index or int(index.group(1)) >= len(current.value):
                break
            current = current.value[int(index.group(1))]
            line, rest = current.start_mark.line + 1, rest[index.end():]
        else:
            break
        pairs = [(str(k.value), k, v) for k, v in current.value] if isinstance(current, yaml.MappingNode) else None
    return line


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The non-secret config of a ``Pulumi.<stack>.yaml`` file, namespace
    stripped. Secret entries, which the file holds encrypted, are skipped.
    A file that cannot be used (unreadable, not YAML, not a stack file, stray
    or mis-namespaced keys, a secret in plain text) is a ConfigError naming
    the file and the line."""
    document = _read_stack_document(Path(path))
    if document.issues:
        raise ConfigError(document.issues, _shown(Path(path)))
    return document.raw


def load_stack_file(path: str | Path) -> StackConfig:
    """Validate a stack file directly, without the Pulumi engine (for the
    offline tools: render, doctor, talos). Every problem names its line."""
    document = _read_stack_document(Path(path))
    issues = list(document.issues)
    if not document.raw and issues:
        raise ConfigError(issues, _shown(Path(path)))
    try:
        cfg = parse_stack_config(document.raw)
    except ConfigError as error:
        issues += [issue if issue.line or not issue.key else
                   ConfigIssue(issue.key, issue.value, issue.allowed, _line_of(document.entries, issue.key), issue.namespaced)
                   for issue in error.issues]
    if issues:
        raise ConfigError(issues, _shown(Path(path)))
    return cfg
