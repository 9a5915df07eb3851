"""assignment-service's tables. Only this service reads or writes them."""
import sqlalchemy as sa

from salesflow_shared.infra_tables import add_infrastructure_tables

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
