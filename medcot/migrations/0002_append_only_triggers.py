"""PostgreSQL triggers that refuse UPDATE and DELETE on the append-only history tables.

The ORM guard in `medcot.models.AppendOnlyModel` covers the code paths people use; these
triggers cover everything else (raw SQL, a psql session, another program). TRUNCATE is left
alone so test databases and a deliberate `flush` still work. SQLite keeps the ORM guard only.
"""

from django.db import migrations

TABLES = ("medcot_event", "medcot_itemversion")

CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION medcot_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


def _create_trigger(table: str) -> str:
    return (
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n"
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION medcot_refuse_change();"
    )


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE_FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(_create_trigger(table))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
    schema_editor.execute("DROP FUNCTION IF EXISTS medcot_refuse_change();")


class Migration(migrations.Migration):
    dependencies = [("medcot", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
