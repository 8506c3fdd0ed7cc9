-- events_publish: the database-side publish of the event backbone (PostgreSQL).
--
-- For database functions of other apps (stock_reserve, stock_close) that publish in their own round
-- trip: write the outbox rows (relayed after commit; txid is left to its default) and their audit
-- entries for a jsonb array of {type, key, payload}, in order, as supplychain.events.services.publish_many
-- writes them, and return {type: count} for the caller, which hands it to announce_published after the
-- call. p_versions maps each type to its schema version; p_source is the publishing app
-- ('supplychain/stock'). Payloads are not validated here: tests/stock/test_reserve_paths.py checks every
-- event these callers write against its JSON Schema.
CREATE OR REPLACE FUNCTION events_publish(
    p_events jsonb,
    p_source text,
    p_now text,
    p_correlation_id text,
    p_versions jsonb
) RETURNS jsonb
LANGUAGE plpgsql
-- No SET clauses: called from the stock functions, whose planner settings hold here too; a SET clause
-- would cost a settings save and restore per call.
AS $fn$
DECLARE
    v_counts jsonb;
BEGIN
    WITH event AS (
        SELECT gen_random_uuid() AS event_id, e->>'type' AS type, (p_versions->>(e->>'type'))::int AS version,
               left(e->>'key', 200) AS key, e->'payload' AS payload, n
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, n)
    ), outbox AS (
        INSERT INTO events_outboxevent (event_id, type, version, source, occurred_at, correlation_id, key, payload)
            SELECT event_id, type, version, p_source, p_now::timestamptz, p_correlation_id, key, payload
              FROM event ORDER BY n
    )
    INSERT INTO events_auditentry (occurred_at, kind, event_id, event_type, correlation_id, entity_key,
                                   subscription, partner, outcome, error, data)
        SELECT p_now::timestamptz, 'published', event_id, type, p_correlation_id, key, '', '', 'published', '',
               jsonb_build_object('id', event_id::text, 'type', type, 'version', version, 'occurred_at', p_now,
                                  'source', p_source, 'correlation_id', nullif(p_correlation_id, ''),
                                  'key', nullif(key, ''), 'payload', payload)
          FROM event ORDER BY n;

    SELECT jsonb_object_agg(t.type, t.count) INTO v_counts
      FROM (SELECT e->>'type' AS type, count(*) AS count FROM jsonb_array_elements(p_events) e GROUP BY 1) t;
    RETURN coalesce(v_counts, '{}'::jsonb);
END;
$fn$;
