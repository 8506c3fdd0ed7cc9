"""On PostgreSQL, refuse UPDATE of audit entries at the database itself (deletes stay for archiving)."""

from django.db import migrations

from supplychain.core.db import on_postgresql

CREATE = """
CREATE OR REPLACE FUNCTION events_audit_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are immutable';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_auditentry_no_update BEFORE UPDATE ON events_auditentry
    FOR EACH ROW EXECUTE FUNCTION events_audit_immutable();
"""
DROP = """
DROP TRIGGER IF EXISTS events_auditentry_no_update ON events_auditentry;
DROP FUNCTION IF EXISTS events_audit_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]
    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
