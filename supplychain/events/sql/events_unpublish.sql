-- events_outbox_mark / events_unpublish: take back, in the publishing transaction, what events_publish wrote
-- (PostgreSQL).
--
-- A database function of another app that publishes before it knows whether its work stands (stock_reserve_many
-- writes its reservation events before its locks and plans again when the plan went stale) marks the outbox
-- first, then, to take its events back, deletes the outbox rows of its own transaction after the mark, of the
-- given types, with their 'published' audit entries. Nothing was committed, so nothing was relayed or seen.
CREATE OR REPLACE FUNCTION events_outbox_mark() RETURNS bigint
LANGUAGE sql STABLE
AS $fn$ SELECT coalesce(max(id), 0) FROM events_outboxevent $fn$;

CREATE OR REPLACE FUNCTION events_unpublish(p_after bigint, p_types text[]) RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_gone uuid[];
BEGIN
    WITH gone AS (
        DELETE FROM events_outboxevent
         WHERE id > p_after AND txid = pg_current_xact_id() AND type = ANY (p_types)
        RETURNING event_id
    ) SELECT array_agg(event_id) INTO v_gone FROM gone;
    DELETE FROM events_auditentry WHERE event_id = ANY (v_gone) AND kind = 'published';
    RETURN coalesce(cardinality(v_gone), 0);
END;
$fn$;
