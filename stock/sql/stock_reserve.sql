-- stock_reserve: an all-or-nothing FEFO reservation in one round trip (PostgreSQL).
--
-- The same business rules as stock.services.reservations._reserve_in_python (the path SQLite takes), kept equal by
-- tests/stock/test_reserve_paths.py: replay by transaction id, unknown skus, level rows locked in
-- ascending ingredient order, first-expiring batches first and never one expiring before
-- p_not_before, the reservation with its stored answer, batches, allocations, ledger rows, levels,
-- and the outbox + audit rows of every event (written by the events app's events_publish), all in the
-- caller's transaction. The level rule is shared with stock_close (stock_events.sql).
--
-- Returns jsonb: {"outcome": "replay", "id", "request_hash", "status", "response"}
--              | {"outcome": "unknown", "missing": [item positions, 0-based]}
--              | {"outcome": "reserved" | "rejected", "id", "status", "response", "events": {type: count}}
-- A concurrent request with the same transaction id makes the INSERT (made before the level locks)
-- raise unique_violation; the caller rolls back and answers it as a replay.
CREATE OR REPLACE FUNCTION stock_reserve(
    p_transaction_id text,
    p_request jsonb,
    p_digest text,
    p_skus text[],
    p_quantities numeric[],
    p_not_before date,
    p_needed_by date,
    p_hold_until text,
    p_now text,
    p_correlation_id text,
    p_versions jsonb
) RETURNS jsonb
LANGUAGE plpgsql
-- Generic plans: the statements' shapes never change, so planning each call (the default custom plans
-- for parameterised statements) would cost more than the work itself. Every access here is by key for a
-- handful of rows, so the plans are pinned to index scans and nested loops: with table statistics the
-- planner preferred hashing the whole ingredient and level tables (measured 3x slower per call), and a
-- generic plan is kept for the whole session, whatever the tables grow to.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
    v_now timestamptz := p_now::timestamptz;
    v_found record;
    v_ids bigint[];
    v_missing int[];
    v_locked int;
    v_shortages jsonb;
    v_batch_ids bigint[];
    v_batch_ingredients bigint[];
    v_takes numeric[];
    v_items jsonb;
    v_response jsonb;
    v_reservation_id bigint;
    v_events jsonb;
    v_counts jsonb;
BEGIN
    SELECT id, request_hash, response_status, response INTO v_found
      FROM stock_reservation WHERE transaction_id = p_transaction_id;
    IF FOUND THEN
        RETURN jsonb_build_object('outcome', 'replay', 'id', v_found.id, 'request_hash', v_found.request_hash,
                                  'status', v_found.response_status, 'response', v_found.response);
    END IF;

    -- Each sku once (the service refuses repeats with a 400): later steps join the items by ingredient.
    IF cardinality(p_skus) <> (SELECT count(DISTINCT sku) FROM unnest(p_skus) AS s(sku)) THEN
        RAISE EXCEPTION 'stock_reserve: each sku once per reservation' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The items' ingredients, looked up once by their unique sku; later steps join these arrays.
    SELECT array_agg(i.id ORDER BY w.n), array_agg(w.n - 1 ORDER BY w.n) FILTER (WHERE i.id IS NULL)
      INTO v_ids, v_missing
      FROM unnest(p_skus) WITH ORDINALITY AS w(sku, n)
      LEFT JOIN LATERAL (SELECT id FROM stock_ingredient WHERE sku = w.sku) i ON true;
    IF v_missing IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'unknown', 'missing', to_jsonb(v_missing));
    END IF;

    -- The reservation's row before any lock: a concurrent request with this id (a single one, or a group
    -- call's, which writes its reservations before its locks too) is then waited for without holding a
    -- level lock, so the two never deadlock. Its answer is filled in below.
    INSERT INTO stock_reservation (transaction_id, status, request_hash, request, response_status, response,
                                   needed_by, hold_until, at_risk, created_at, closed_at)
         VALUES (p_transaction_id, 'reserved', p_digest, p_request, 201, '{}'::jsonb, p_needed_by,
                 p_hold_until::timestamptz, false, v_now, NULL)
      RETURNING id INTO v_reservation_id;

    -- The level rows' locks, ascending ingredient order: they guard every batch of the ingredient.
    SELECT count(*) INTO v_locked FROM (
        SELECT 1 FROM stock_stocklevel WHERE ingredient_id = ANY (v_ids) ORDER BY ingredient_id FOR UPDATE
    ) locked;
    IF v_locked < cardinality(v_ids) THEN  -- an ingredient's first stock: create its level, then lock
        INSERT INTO stock_stocklevel (ingredient_id, on_hand, reserved, updated_at)
            SELECT DISTINCT unnest(v_ids), 0, 0, v_now ON CONFLICT DO NOTHING;
        PERFORM 1 FROM stock_stocklevel WHERE ingredient_id = ANY (v_ids) ORDER BY ingredient_id FOR UPDATE;
    END IF;

    -- Per item: what the eligible batches hold (never more than the level's available).
    SELECT jsonb_agg(jsonb_build_object('sku', s.sku, 'requested', s.qty::text, 'available', s.available::text)
                     ORDER BY s.n)
      INTO v_shortages
      FROM (
        SELECT w.n, w.sku, round(w.qty, 3) AS qty,
               round(least(coalesce(b.free, 0), l.on_hand - l.reserved), 3) AS available
          FROM unnest(p_skus, v_ids, p_quantities) WITH ORDINALITY AS w(sku, ingredient_id, qty, n)
          JOIN stock_stocklevel l ON l.ingredient_id = w.ingredient_id
          LEFT JOIN LATERAL (
              SELECT sum(quantity_remaining - quantity_reserved) AS free FROM stock_batch
               WHERE ingredient_id = w.ingredient_id AND status = 'active' AND best_before >= p_not_before
                 AND quantity_remaining > quantity_reserved
          ) b ON true
      ) s
     WHERE s.available < s.qty;

    IF v_shortages IS NOT NULL THEN
        v_response := jsonb_build_object(
            'type', 'insufficient_stock',
            'title', 'Not enough stock; nothing was reserved.',
            'status', 409,
            'detail', (SELECT string_agg(format('%s: %s requested, %s available', e->>'sku', e->>'requested',
                                                e->>'available'), '; ')
                         FROM jsonb_array_elements(v_shortages) e),
            'errors', '{}'::jsonb,
            'transaction_id', p_transaction_id,
            'shortages', v_shortages);
        UPDATE stock_reservation SET status = 'rejected', response_status = 409, response = v_response, closed_at = v_now
         WHERE id = v_reservation_id;
        v_events := jsonb_build_array(jsonb_build_object(
            'type', 'stock.reservation_rejected', 'key', p_transaction_id,
            'payload', jsonb_build_object('transaction_id', p_transaction_id, 'shortages', v_shortages)));
    ELSE
        -- First-expiring first: take from each batch while what the earlier ones gave is short of the item.
        SELECT array_agg(c.id ORDER BY w.n, c.best_before, c.id),
               array_agg(c.ingredient_id ORDER BY w.n, c.best_before, c.id),
               array_agg(least(c.free, w.qty - (c.upto - c.free)) ORDER BY w.n, c.best_before, c.id)
          INTO v_batch_ids, v_batch_ingredients, v_takes
          FROM unnest(v_ids, p_quantities) WITH ORDINALITY AS w(ingredient_id, qty, n)
          JOIN LATERAL (
              SELECT id, ingredient_id, best_before, quantity_remaining - quantity_reserved AS free,
                     sum(quantity_remaining - quantity_reserved) OVER (ORDER BY best_before, id) AS upto
                FROM stock_batch
               WHERE ingredient_id = w.ingredient_id AND status = 'active' AND best_before >= p_not_before
                 AND quantity_remaining > quantity_reserved
          ) c ON c.upto - c.free < w.qty;

        SELECT jsonb_agg(line.item ORDER BY line.sku COLLATE "C") INTO v_items
          FROM (
            SELECT i.sku,
                   jsonb_build_object(
                       'sku', i.sku,
                       'quantity', sum(p.take)::numeric(14, 3)::text,
                       'batches', jsonb_agg(jsonb_build_object(
                           'batch_id', b.id, 'lot', b.lot, 'best_before', b.best_before, 'supplier', s.name,
                           'quantity', p.take::numeric(14, 3)::text, 'open', true) ORDER BY b.best_before, b.id)
                   ) AS item
              FROM unnest(v_batch_ids, v_takes) AS p(batch_id, take)
              JOIN stock_batch b ON b.id = p.batch_id
              JOIN unnest(v_ids, p_skus) AS i(id, sku) ON i.id = b.ingredient_id
              LEFT JOIN stock_supplier s ON s.id = b.supplier_id
             GROUP BY i.sku
          ) line;
        v_response := jsonb_build_object(
            'transaction_id', p_transaction_id, 'status', 'reserved', 'needed_by', p_needed_by,
            'hold_until', p_hold_until, 'at_risk', false, 'items', v_items);
        UPDATE stock_reservation SET response = v_response WHERE id = v_reservation_id;

        UPDATE stock_batch b SET quantity_reserved = b.quantity_reserved + p.take
          FROM unnest(v_batch_ids, v_takes) AS p(batch_id, take)
         WHERE b.id = p.batch_id;
        INSERT INTO stock_allocation (reservation_id, batch_id, ingredient_id, quantity, open)
            SELECT v_reservation_id, p.batch_id, p.ingredient_id, p.take, true
              FROM unnest(v_batch_ids, v_batch_ingredients, v_takes) AS p(batch_id, ingredient_id, take);
        INSERT INTO stock_movement (ingredient_id, batch_id, reservation_id, kind, on_hand_delta, reserved_delta,
                                    created_at, note)
            SELECT p.ingredient_id, p.batch_id, v_reservation_id, 'reserve', 0, p.take, v_now, ''
              FROM unnest(v_batch_ids, v_batch_ingredients, v_takes) AS p(batch_id, ingredient_id, take);

        -- Levels, and the events their change causes (stock_events.sql: the rule LevelBook.save follows).
        v_events := stock_move_levels(v_batch_ingredients, array_fill(0::numeric, ARRAY[cardinality(v_takes)]),
                                      v_takes, v_now);

        v_events := v_events || jsonb_build_array(jsonb_build_object(
            'type', 'stock.reservation_created', 'key', p_transaction_id,
            'payload', jsonb_build_object(
                'transaction_id', p_transaction_id,
                'items', (SELECT jsonb_agg(jsonb_build_object('sku', i.sku, 'batch_id', p.batch_id,
                                                              'quantity', p.take::numeric(14, 3)::text) ORDER BY p.n)
                            FROM unnest(v_batch_ids, v_batch_ingredients, v_takes)
                                 WITH ORDINALITY AS p(batch_id, ingredient_id, take, n)
                            JOIN unnest(v_ids, p_skus) AS i(id, sku) ON i.id = p.ingredient_id))));
    END IF;

    v_counts := events_publish(v_events, 'supplychain/stock', p_now, p_correlation_id, p_versions);
    RETURN jsonb_build_object(
        'outcome', CASE WHEN v_shortages IS NULL THEN 'reserved' ELSE 'rejected' END,
        'id', v_reservation_id,
        'status', CASE WHEN v_shortages IS NULL THEN 201 ELSE 409 END,
        'response', v_response,
        'events', v_counts);
END;
$fn$;
