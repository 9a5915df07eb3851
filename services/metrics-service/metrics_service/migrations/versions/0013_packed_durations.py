"""The duration rollups' `durations` become packed: the ascending values as big-endian doubles in one bytea.

Reports read a quarter's ~13,500 m_stay_months rows at 1M leads; sending them as float8[] made PostgreSQL
run array_send over ~500k elements (some 25 ms of a coaching report), where packed bytes go out as stored
and numpy reads them as they come (adapters/rollups.py, `merged`). The values and their order are
unchanged: float8send writes each double's exact bits.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("m_stay_months", "m_cohort_months", "m_created_months")

PACK = """
CREATE OR REPLACE FUNCTION pg_temp.packed(durations float8[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE(string_agg(float8send(x), ''::bytea ORDER BY x), ''::bytea) FROM unnest(durations) x
$$"""

# The way back, in SQL alone (there is no bytea → float8 cast): each 8 bytes as a 64-bit integer, rebuilt from
# sign, exponent and mantissa; every step is exact in double precision (an integer below 2^53 times a power
# of two), so the array holds the same doubles.
UNPACK = ["""
CREATE OR REPLACE FUNCTION pg_temp.double_of(bits bigint) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
  SELECT (CASE WHEN bits < 0 THEN -1 ELSE 1 END) * CASE
           WHEN (bits >> 52) & 2047 = 0 THEN (bits & 4503599627370495)::float8 * power(2::float8, -1074)
           ELSE ((bits & 4503599627370495) + 4503599627370496)::float8 * power(2::float8, ((bits >> 52) & 2047) - 1075)
         END
$$""", """
CREATE OR REPLACE FUNCTION pg_temp.unpacked(packed bytea) RETURNS float8[] LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE(array_agg(pg_temp.double_of(('x' || encode(substr(packed, i * 8 + 1, 8), 'hex'))::bit(64)::bigint)
                            ORDER BY i), '{}')
  FROM generate_series(0, length(packed) / 8 - 1) i
$$"""]


def _convert(functions: list[str], new_type: str, function: str, sqlite_type: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "postgresql":  # the embedded mode keeps no rollup rows: only the type
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                batch.alter_column("durations", type_=sqlite_type)
        return
    for statement in functions:
        op.execute(statement)
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN durations TYPE {new_type} USING pg_temp.{function}(durations)")


def upgrade() -> None:
    _convert([PACK], "bytea", "packed", sa.LargeBinary())


def downgrade() -> None:
    _convert(UNPACK, "float8[]", "unpacked", sa.JSON().with_variant(postgresql.ARRAY(sa.Float), "postgresql"))
