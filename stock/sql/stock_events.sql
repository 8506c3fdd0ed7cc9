-- The helper shared by stock_reserve and stock_close (PostgreSQL): the level rule. The events it returns
-- are written by the events app's events_publish (supplychain/events/sql/events_publish.sql).
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
