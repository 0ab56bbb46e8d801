"""A tenant's own contract file: the columns it adds to the source tables, read and written.

The built-in contract (:mod:`roiml.ingest.contract`) is the schema every tenant shares. A tenant
whose files carry more (a sales file's condition, grade, view, zip code) declares those columns
in ``<data_dir>/contracts/<tenant>.yaml``; the importer then validates them like built-in columns
and stores them in the row's ``attributes`` JSON, and the feature engine turns each one into a
feature of the entity. The same file says how precisely a datetime column is known (``day``: the
time is unknown; ``month``: the day is unknown), for built-in and declared columns alike.

The types and their rules are :mod:`roiml.ingest.declarations` (re-exported here). The file,
written by ``roiml data contract add`` or by hand::

    columns:
      - table: properties
        name: grade
        type: integer
        role: numeric
        minimum: 1
        maximum: 13
        description: King County building grade
      - table: properties
        name: zipcode
        type: string
        role: categorical
        max_length: 5
    precision:
      transactions.closed_at: day
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roiml.errors import ImportValidationError
from roiml.ingest.contract import Kind, Precision
from roiml.ingest.declarations import (  # re-exported: the types a contract file holds
    EXTENSIBLE_TABLES,
    EXTENSION_KINDS,
    ColumnRole,
    ExtensionColumn,
    TenantContract,
    default_role,
)

__all__ = [
    "EXTENSIBLE_TABLES",
    "EXTENSION_KINDS",
    "ColumnRole",
    "ExtensionColumn",
    "Precision",
    "TenantContract",
    "contract_path",
    "default_role",
    "load_tenant_contract",
    "parse_contract_text",
    "save_tenant_contract",
]

_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONTRACTS_DIR = "contracts"


# ---- the file's schema -------------------------------------------------------------------------


class _ColumnModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    name: str
    type: Kind
    role: ColumnRole | None = None
    unit: str | None = Field(None, max_length=32)
    allowed_values: list[str] = Field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(None, ge=1, le=10_000)
    description: str = Field("", max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _values_as_text(cls, data: Any) -> Any:
        # YAML reads `allowed_values: [1, 2]` as numbers; the contract compares text.
        if isinstance(data, dict) and isinstance(data.get("allowed_values"), list):
            data = {**data, "allowed_values": [_as_text(v) for v in data["allowed_values"]]}
        return data

    def to_column(self) -> ExtensionColumn:
        return ExtensionColumn(
            table=self.table,
            name=self.name,
            kind=self.type,
            role=self.role or default_role(self.type),
            unit=self.unit,
            allowed_values=tuple(self.allowed_values),
            minimum=self.minimum,
            maximum=self.maximum,
            max_length=self.max_length,
            description=self.description,
        )


class _ContractModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[_ColumnModel] = Field(default_factory=list)
    precision: dict[str, Precision] = Field(default_factory=dict)


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


def _validated(tenant: str, model: _ContractModel) -> TenantContract:
    seen: set[tuple[str, str]] = set()
    for column in model.columns:
        if (column.table, column.name) in seen:
            raise ImportValidationError(f"{column.table}.{column.name} is declared twice")
        seen.add((column.table, column.name))
    contract = TenantContract(tenant).with_columns(c.to_column() for c in model.columns)
    for target, precision in model.precision.items():
        table, _, name = target.partition(".")
        if not name:
            raise ImportValidationError(
                f"precision of {target!r}: name the column as table.column, e.g. "
                "transactions.closed_at"
            )
        contract = contract.with_precision(table, name, precision)
    return contract


# ---- reading and writing the file ---------------------------------------------------------------


def contract_path(data_dir: Path, tenant: str) -> Path:
    """Where ``tenant``'s contract lives: ``<data_dir>/contracts/<tenant>.yaml``."""
    if not _TENANT.match(tenant):
        raise ImportValidationError(
            f"tenant {tenant!r} is not valid: use 1-64 letters, digits, '-' or '_'"
        )
    return data_dir / CONTRACTS_DIR / f"{tenant}.yaml"


def parse_contract_text(text: str, tenant: str, where: str) -> TenantContract:
    """The contract in YAML ``text`` (named ``where`` in errors), validated whole.

    Raises :class:`ImportValidationError` naming ``where``, the line and what to fix.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        at = f" line {line}" if line else ""
        raise ImportValidationError(
            f"{where}{at}: not valid YAML: {exc.problem or exc}", line=line
        ) from exc
    if raw is None:
        return TenantContract(tenant)
    try:
        model = _ContractModel.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        line = _line_of(node, loc)
        at = f" line {line}" if line else ""
        path = ".".join(str(part) for part in loc) or "the file"
        raise ImportValidationError(
            f"{where}{at}: {path}: {error['msg']} ({_HINT})", line=line
        ) from exc
    try:
        return _validated(tenant, model)
    except ImportValidationError as exc:
        line = _line_of_column(node, str(exc))
        at = f" line {line}" if line else ""
        raise ImportValidationError(f"{where}{at}: {exc}", line=line) from exc


_HINT = (
    "each entry of columns takes table, name, type, role, unit, allowed_values, minimum, maximum, "
    "max_length, description; precision maps table.column to second, day or month"
)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic location ``loc`` (its nearest ancestor)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = value if isinstance(value, yaml.CollectionNode) else key
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            return line
        node = child
        line = node.start_mark.line + 1
    return line


def _line_of_column(node: yaml.Node | None, message: str) -> int | None:
    """The line of the columns entry (or precision key) that ``message`` is about, if any."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if key.value == "columns" and isinstance(value, yaml.SequenceNode):
            for entry in value.value:
                if not isinstance(entry, yaml.MappingNode):
                    continue
                fields = {
                    k.value: v.value for k, v in entry.value if isinstance(v, yaml.ScalarNode)
                }
                if message.startswith(f"{fields.get('table')}.{fields.get('name')}"):
                    return int(entry.start_mark.line) + 1
        if key.value == "precision" and isinstance(value, yaml.MappingNode):
            for target, _ in value.value:
                if f"{target.value}:" in message:
                    return int(target.start_mark.line) + 1
    return None


_cache: dict[Path, tuple[int, int, TenantContract]] = {}
_cache_lock = threading.Lock()


def load_tenant_contract(data_dir: Path, tenant: str) -> TenantContract:
    """``tenant``'s contract from ``<data_dir>/contracts/<tenant>.yaml``; empty without a file.

    The parsed contract is kept until the file's modification time or size changes, so callers
    on a hot path (the feature engine, the API) may call this freely.
    Raises :class:`ImportValidationError` naming the file, the line and what to fix.
    """
    path = contract_path(data_dir, tenant)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return TenantContract(tenant)
    key = path.resolve()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    contract = parse_contract_text(path.read_text(encoding="utf-8"), tenant, str(path))
    with _cache_lock:
        _cache[key] = (stat.st_mtime_ns, stat.st_size, contract)
    return contract


def save_tenant_contract(data_dir: Path, contract: TenantContract) -> Path:
    """Write ``contract`` to its file atomically (a reader sees the old or the new, never half)."""
    path = contract_path(data_dir, contract.tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# roiml data contract of tenant {contract.tenant}: the columns it adds to the source "
        "tables.\n# Written by `roiml data contract`; see docs/DATA_CONTRACT.md.\n"
    )
    body = yaml.safe_dump(contract.to_document(), sort_keys=False, allow_unicode=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(header + body)
        # mkstemp makes the file private; a contract is as readable as the data directory.
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
