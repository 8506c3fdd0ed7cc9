-- stock_close: commit (consume) or release a reservation in one round trip (PostgreSQL).
--
-- The same business rules as stock.services.reservations._commit_in_python / _release_in_python (the path SQLite
-- takes), kept equal by tests/stock/test_reserve_paths.py: the reservation's level rows locked in
-- ascending ingredient order, then the reservation itself; each open allocation's batch updated
-- (commit: remaining and reserved down, depleted at zero; release: reserved down), one ledger row
-- per allocation (consume / release), the allocations closed, the levels written, and the outbox +
-- audit rows of level_changed, low (on crossing the threshold downwards) and the reservation's event
-- (the level rule: stock_events.sql, shared with stock_reserve; the event writes: the events app's
-- events_publish).
--
-- p_to: 'committed' or 'released'. Returns jsonb:
--   {"outcome": "not_found"} | {"outcome": "unchanged", "id"} (already p_to: closing twice changes nothing)
-- | {"outcome": "closed", "id", "status"} (rejected, or closed the other way)
-- | {"outcome": "done", "id", "events": {type: count}}
CREATE OR REPLACE FUNCTION stock_close(
    p_transaction_id text,
    p_to text,
    p_note text,
    p_now text,
    p_correlation_id text,
    p_versions jsonb
) RETURNS jsonb
LANGUAGE plpgsql
-- As stock_reserve: generic plans, pinned to index scans and nested loops (every access is by key).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
    v_now timestamptz := p_now::timestamptz;
    v_commit boolean := p_to = 'committed';
    v_id bigint;
    v_status text;
    v_ingredients bigint[];
    v_allocations bigint[];
    v_batches bigint[];
    v_items bigint[];
    v_takes numeric[];
    v_events jsonb;
    v_counts jsonb;
BEGIN
    IF p_to NOT IN ('committed', 'released') THEN
        RAISE EXCEPTION 'stock_close: p_to must be committed or released, not %', p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT id INTO v_id FROM stock_reservation WHERE transaction_id = p_transaction_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;

    -- The level rows' locks first, ascending ingredient order (as every writer takes them), then the reservation.
    SELECT array_agg(DISTINCT ingredient_id ORDER BY ingredient_id) INTO v_ingredients
      FROM stock_allocation WHERE reservation_id = v_id;
    PERFORM 1 FROM stock_stocklevel WHERE ingredient_id = ANY (v_ingredients) ORDER BY ingredient_id FOR UPDATE;
    SELECT status INTO v_status FROM stock_reservation WHERE id = v_id FOR UPDATE;
    IF v_status = p_to THEN
        RETURN jsonb_build_object('outcome', 'unchanged', 'id', v_id);
    ELSIF v_status <> 'reserved' THEN
        RETURN jsonb_build_object('outcome', 'closed', 'id', v_id, 'status', v_status);
    END IF;

    SELECT array_agg(id ORDER BY id), array_agg(batch_id ORDER BY id), array_agg(ingredient_id ORDER BY id),
           array_agg(quantity ORDER BY id)
      INTO v_allocations, v_batches, v_items, v_takes
      FROM stock_allocation WHERE reservation_id = v_id AND open;

    -- Per batch: a reservation can hold two allocations on one batch (expiry re-allocates onto batches
    -- it already has), and an UPDATE ... FROM applies only one joined row per target row.
    UPDATE stock_batch b
       SET quantity_remaining = b.quantity_remaining - CASE WHEN v_commit THEN a.take ELSE 0 END,
           quantity_reserved = b.quantity_reserved - a.take,
           status = CASE WHEN v_commit AND b.quantity_remaining - a.take = 0 THEN 'depleted' ELSE b.status END
      FROM (SELECT x.batch_id, sum(x.take) AS take FROM unnest(v_batches, v_takes) AS x(batch_id, take)
             GROUP BY x.batch_id) a
     WHERE b.id = a.batch_id;
    INSERT INTO stock_movement (ingredient_id, batch_id, reservation_id, kind, on_hand_delta, reserved_delta,
                                created_at, note)
        SELECT a.ingredient_id, a.batch_id, v_id, CASE WHEN v_commit THEN 'consume' ELSE 'release' END,
               CASE WHEN v_commit THEN -a.take ELSE 0 END, -a.take, v_now, CASE WHEN v_commit THEN '' ELSE p_note END
          FROM unnest(v_batches, v_items, v_takes) WITH ORDINALITY AS a(batch_id, ingredient_id, take, n)
         ORDER BY a.n;
    UPDATE stock_allocation SET open = false WHERE id = ANY (v_allocations);
    UPDATE stock_reservation SET status = p_to, closed_at = v_now WHERE id = v_id;

    -- Levels, and the events their change causes (stock_events.sql: the rule LevelBook.save follows).
    v_events := stock_move_levels(
        v_items,
        (SELECT array_agg(CASE WHEN v_commit THEN -t ELSE 0 END ORDER BY n) FROM unnest(v_takes) WITH ORDINALITY AS x(t, n)),
        (SELECT array_agg(-t ORDER BY n) FROM unnest(v_takes) WITH ORDINALITY AS x(t, n)),
        v_now);

    v_events := v_events || jsonb_build_array(jsonb_build_object(
        'type', CASE WHEN v_commit THEN 'stock.reservation_committed' ELSE 'stock.reservation_released' END,
        'key', p_transaction_id,
        'payload', jsonb_build_object(
            'transaction_id', p_transaction_id,
            'items', coalesce((SELECT jsonb_agg(jsonb_build_object('sku', i.sku, 'batch_id', a.batch_id,
                                                                   'quantity', a.take::text) ORDER BY a.n)
                                 FROM unnest(v_batches, v_items, v_takes) WITH ORDINALITY AS a(batch_id, ingredient_id, take, n)
                                 JOIN stock_ingredient i ON i.id = a.ingredient_id), '[]'::jsonb))));

    v_counts := events_publish(v_events, 'supplychain/stock', p_now, p_correlation_id, p_versions);
    RETURN jsonb_build_object('outcome', 'done', 'id', v_id, 'events', v_counts);
END;
$fn$;
