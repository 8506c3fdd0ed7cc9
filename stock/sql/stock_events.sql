-- Helpers shared by stock_reserve and stock_close (PostgreSQL): the level rule and the event writes.
--
-- stock_move_levels: add the per-ingredient deltas to the (already locked) level rows and return the
-- events their change causes, as stock.services.levels.LevelBook.save does: stock.level_changed for every
-- changed level, then stock.low when available crosses the threshold downwards; ordered by ingredient.
CREATE OR REPLACE FUNCTION stock_move_levels(
    p_ingredients bigint[],
    p_on_hand numeric[],
    p_reserved numeric[],
    p_now timestamptz
) RETURNS jsonb
LANGUAGE plpgsql
-- No SET clauses: called from stock_reserve and stock_close, whose planner settings (generic plans,
-- index scans and nested loops) hold here too; a SET clause would cost a settings save and restore per call.
AS $fn$
DECLARE
    v_events jsonb;
BEGIN
    WITH moved AS (
        SELECT m.ingredient_id, sum(m.on_hand) AS on_hand, sum(m.reserved) AS reserved
          FROM unnest(p_ingredients, p_on_hand, p_reserved) AS m(ingredient_id, on_hand, reserved)
         GROUP BY m.ingredient_id
    ), changed AS (
        UPDATE stock_stocklevel l
           SET on_hand = l.on_hand + moved.on_hand, reserved = l.reserved + moved.reserved, updated_at = p_now
          FROM moved WHERE l.ingredient_id = moved.ingredient_id
        RETURNING l.ingredient_id, l.on_hand, l.reserved,
                  (l.on_hand - moved.on_hand) - (l.reserved - moved.reserved) AS available_before
    ), level_events AS (
        SELECT i.id AS ingredient_id, 0 AS part, jsonb_build_object(
                   'type', 'stock.level_changed', 'key', i.sku,
                   'payload', jsonb_build_object('sku', i.sku, 'on_hand', c.on_hand::text, 'reserved', c.reserved::text,
                                                 'available', (c.on_hand - c.reserved)::text, 'unit', i.unit)
               ) AS event
          FROM changed c JOIN stock_ingredient i ON i.id = c.ingredient_id
        UNION ALL
        SELECT i.id, 1, jsonb_build_object(
                   'type', 'stock.low', 'key', i.sku,
                   'payload', jsonb_build_object('sku', i.sku, 'available', (c.on_hand - c.reserved)::text,
                                                 'threshold', i.low_stock_threshold::text))
          FROM changed c JOIN stock_ingredient i ON i.id = c.ingredient_id
         WHERE c.available_before >= i.low_stock_threshold AND i.low_stock_threshold > c.on_hand - c.reserved
    )
    SELECT coalesce(jsonb_agg(event ORDER BY ingredient_id, part), '[]'::jsonb) INTO v_events FROM level_events;
    RETURN v_events;
END;
$fn$;

-- stock_publish_events: write the outbox rows (relayed after commit) and their audit entries for a
-- jsonb array of {type, key, payload}, in order, as events.services.publish_many writes them; return
-- {type: count} for the caller's metrics.
CREATE OR REPLACE FUNCTION stock_publish_events(
    p_events jsonb,
    p_now text,
    p_correlation_id text,
    p_versions jsonb
) RETURNS jsonb
LANGUAGE plpgsql
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
            SELECT event_id, type, version, 'supplychain/stock', p_now::timestamptz, p_correlation_id, key, payload
              FROM event ORDER BY n
    )
    INSERT INTO events_auditentry (occurred_at, kind, event_id, event_type, correlation_id, entity_key,
                                   subscription, partner, outcome, error, data)
        SELECT p_now::timestamptz, 'published', event_id, type, p_correlation_id, key, '', '', 'published', '',
               jsonb_build_object('id', event_id::text, 'type', type, 'version', version, 'occurred_at', p_now,
                                  'source', 'supplychain/stock', 'correlation_id', nullif(p_correlation_id, ''),
                                  'key', nullif(key, ''), 'payload', payload)
          FROM event ORDER BY n;

    SELECT jsonb_object_agg(t.type, t.count) INTO v_counts
      FROM (SELECT e->>'type' AS type, count(*) AS count FROM jsonb_array_elements(p_events) e GROUP BY 1) t;
    RETURN coalesce(v_counts, '{}'::jsonb);
END;
$fn$;
