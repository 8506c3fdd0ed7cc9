-- stock_reserve_many: a group of all-or-nothing FEFO reservations in one call (PostgreSQL).
--
-- The rules of stock.services.groups (the portable path SQLite takes), kept equal by
-- tests/stock/test_reserve_paths.py: the requests in the order given, each reserved whole or rejected
-- with its shortages, against what the requests before it left; replays found by transaction id; unknown
-- skus; one reservation_created / reservation_rejected event per request and ONE stock.level_changed
-- (and at most one stock.low) per ingredient, with the level after the call (stock_move_levels,
-- stock_events.sql); the outbox and audit rows by events_publish. All in the caller's transaction.
--
-- How it runs, to keep the level locks short (concurrent calls queue on them, and hold them to commit):
--   1. read the levels and eligible batches WITHOUT locks and plan every request (FEFO, in order);
--   2. write what does not touch a level or a batch: the reservations (in transaction id order), their
--      allocations and ledger rows, their reservation_created / rejected events; and check those rows'
--      remaining foreign keys (to their reservation) now (SET CONSTRAINTS ... IMMEDIATE), not at commit
--      under the locks;
--   3. lock the level rows once, ascending ingredient order (as stock_reserve and stock_close do: no
--      deadlock between group and single calls), creating the missing ones first;
--   4. read again under the locks and re-check the plan: it stands when it would come out the same on
--      what is there now (see "the plan stands" below); otherwise the rows of step 2 are deleted and the
--      call is planned and written again, locks held;
--   5. one UPDATE of the batches, one of the levels, and the level events.
-- Deadlocks: before its level locks a call holds only its new reservations' unique index entries (its
-- allocation and ledger rows name batches and ingredients without foreign keys since stock 0013, so they
-- take no key-share locks on them; the invariant audit checks those references). stock_reserve inserts its
-- reservation before its locks too, and calls insert in transaction id order, so nobody holding a level
-- lock ever waits for one of those; nothing locks a batch or an ingredient against key-share while
-- holding a level lock (master data takes FOR NO KEY UPDATE).
--
-- p_requests: [{"t": transaction id, "r": canonical request, "h": its digest, "nb": not before (date),
--               "nd": needed_by | null, "hu": hold_until (text) | null, "i": [[sku, quantity (text)], ...]}]
--   (each sku once per request, each transaction id once per call: the caller refuses the others).
-- Returns jsonb {"results": [one per request, in order], "events": {type: count}, "replanned": bool}:
--   {"o": "replay", "id", "h": the stored request hash} | {"o": "unknown", "missing": [item positions]}
--   | {"o": "reserved" | "rejected", "id", "response"}.
-- A concurrent call that inserts one of these transaction ids first makes the INSERT raise
-- unique_violation; the caller plans the call again (its request is a replay then).
CREATE OR REPLACE FUNCTION stock_reserve_many(
    p_requests jsonb,
    p_today date,
    p_now text,
    p_correlation_id text,
    p_versions jsonb
) RETURNS jsonb
LANGUAGE plpgsql
-- As stock_reserve: generic plans, index scans and nested loops (every access is by key).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
-- Every array that is read by position is built element by element: PL/pgSQL then keeps it expanded,
-- where reading one element costs the same wherever it is (in a flat array of text, numeric or with
-- nulls, it costs a walk from the start: measured 50 times slower for 300 items).
DECLARE
    v_now timestamptz := p_now::timestamptz;
    n int := jsonb_array_length(p_requests);
    -- requests (1..n): r_state new | replay | unknown, then reserved | rejected
    r_txn text[]; r_hash text[]; r_req jsonb[]; r_nb date[]; r_nd date[]; r_hu text[];
    r_ilo int[]; r_ihi int[]; r_state text[]; r_found bigint[]; r_found_hash text[]; r_short jsonb[];
    r_id bigint[]; r_response jsonb[]; r_created jsonb[];
    -- items, flattened in request then item order
    i_req int[]; i_pos int[]; i_sku text[]; i_qty numeric[]; i_ing bigint[]; i_lvl int[]; v_items int := 0;
    -- levels: the ingredients of the call, ascending; the range of their batches in b_*
    l_ing bigint[]; l_avail numeric[]; l_blo int[]; l_bhi int[]; l_taken numeric[]; l_exact boolean[];
    -- eligible batches (active, not past best-before, something free), per ingredient first-expiring first
    b_id bigint[]; b_lvl int[]; b_bb date[]; b_free numeric[]; b_taken numeric[];
    -- the same, read again under the locks
    n_avail numeric[]; n_id bigint[]; n_lvl int[]; n_bb date[]; n_free numeric[]; v_batches int;
    -- the plan: takes in request, item and FEFO order
    t_req int[]; t_sku text[]; t_ing bigint[]; t_batch int[]; t_bid bigint[]; t_qty numeric[]; t_rid bigint[];
    t_count int;
    -- what is written
    o_id bigint[]; o_txn text[]; o_status text[]; o_hash text[]; o_req jsonb[]; o_code int[]; o_response jsonb[];
    o_nd date[]; o_hu timestamptz[]; o_closed timestamptz[]; o_count int := 0;
    e_events jsonb[]; e_count int := 0;
    v_results jsonb[];
    v_pass int := 0;
    v_valid boolean;
    v_replanned boolean := false;
    v_locked int;
    v_free numeric; v_available numeric; v_needed numeric; v_take numeric; v_lv int;
    v_shortages jsonb;
    v_seq regclass := pg_get_serial_sequence('stock_reservation', 'id')::regclass;
    v_order int[];
    v_row record;
    v_events jsonb;
    v_counts jsonb := '{}'::jsonb;
    v_level_counts jsonb := '{}'::jsonb;
    v_mark bigint;
    v_constraints text;
BEGIN
    IF n = 0 THEN
        RETURN jsonb_build_object('results', '[]'::jsonb, 'events', '{}'::jsonb, 'replanned', false);
    END IF;
    -- The requests and their items, with the items' ingredients (looked up once by the unique sku).
    FOR v_row IN
        SELECT x.k::int AS r, x.d, e.m::int AS m, e.item->>0 AS sku, (e.item->>1)::numeric AS qty, g.id AS ing
          FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS x(d, k)
          LEFT JOIN LATERAL jsonb_array_elements(x.d->'i') WITH ORDINALITY AS e(item, m) ON true
          LEFT JOIN LATERAL (SELECT id FROM stock_ingredient WHERE sku = e.item->>0) g ON true
         ORDER BY x.k, e.m
    LOOP
        IF v_row.m IS NULL OR v_row.m = 1 THEN
            r_txn[v_row.r] := v_row.d->>'t'; r_hash[v_row.r] := v_row.d->>'h'; r_req[v_row.r] := v_row.d->'r';
            r_nb[v_row.r] := (v_row.d->>'nb')::date; r_nd[v_row.r] := (v_row.d->>'nd')::date;
            r_hu[v_row.r] := v_row.d->>'hu';
            r_ilo[v_row.r] := v_items + 1; r_ihi[v_row.r] := v_items;
            r_state[v_row.r] := 'new'; r_found[v_row.r] := NULL; r_found_hash[v_row.r] := NULL;
            r_short[v_row.r] := NULL; r_id[v_row.r] := NULL; r_response[v_row.r] := NULL; r_created[v_row.r] := NULL;
        END IF;
        CONTINUE WHEN v_row.m IS NULL;
        v_items := v_items + 1;
        i_req[v_items] := v_row.r; i_pos[v_items] := v_row.m - 1; i_sku[v_items] := v_row.sku;
        i_qty[v_items] := v_row.qty; i_ing[v_items] := v_row.ing;
        r_ihi[v_row.r] := v_items;
        IF v_row.ing IS NULL THEN
            r_state[v_row.r] := 'unknown';
        END IF;
    END LOOP;
    SELECT coalesce(array_agg(DISTINCT u.ing ORDER BY u.ing), '{}') INTO l_ing
      FROM unnest(i_ing) AS u(ing) WHERE u.ing IS NOT NULL;
    FOR k IN 1..v_items LOOP
        i_lvl[k] := array_position(l_ing, i_ing[k]);
    END LOOP;

    -- Replays: the stored answer is the caller's to give back, or to refuse if the body differs.
    FOR v_row IN
        SELECT u.r::int AS r, s.id, s.request_hash
          FROM unnest(r_txn) WITH ORDINALITY AS u(t, r)
          JOIN stock_reservation s ON s.transaction_id = u.t
    LOOP
        r_state[v_row.r] := 'replay'; r_found[v_row.r] := v_row.id; r_found_hash[v_row.r] := v_row.request_hash;
    END LOOP;

    LOOP
        v_pass := v_pass + 1;
        IF v_pass = 2 THEN
            -- The level rows' locks, once, ascending ingredient order; an ingredient's first stock gets its row.
            SELECT count(*) INTO v_locked FROM (
                SELECT 1 FROM stock_stocklevel WHERE ingredient_id = ANY (l_ing) ORDER BY ingredient_id FOR UPDATE
            ) locked;
            IF v_locked < cardinality(l_ing) THEN
                INSERT INTO stock_stocklevel (ingredient_id, on_hand, reserved, updated_at)
                    SELECT unnest(l_ing), 0, 0, v_now ON CONFLICT DO NOTHING;
                PERFORM 1 FROM stock_stocklevel WHERE ingredient_id = ANY (l_ing) ORDER BY ingredient_id FOR UPDATE;
            END IF;
        END IF;

        n_avail := '{}'; n_id := '{}'; n_lvl := '{}'; n_bb := '{}'; n_free := '{}'; v_batches := 0;
        FOR v_row IN
            SELECT l.n::int AS n, coalesce(s.on_hand - s.reserved, 0) AS available
              FROM unnest(l_ing) WITH ORDINALITY AS l(ing, n)
              LEFT JOIN LATERAL (SELECT on_hand, reserved FROM stock_stocklevel WHERE ingredient_id = l.ing) s ON true
        LOOP
            n_avail[v_row.n] := v_row.available;
        END LOOP;
        FOR v_row IN
            SELECT l.n::int AS n, b.id, b.best_before, b.quantity_remaining - b.quantity_reserved AS free
              FROM unnest(l_ing) WITH ORDINALITY AS l(ing, n)
              JOIN stock_batch b ON b.ingredient_id = l.ing AND b.status = 'active' AND b.best_before >= p_today
                                AND b.quantity_remaining > b.quantity_reserved
             ORDER BY l.n, b.best_before, b.id
        LOOP
            v_batches := v_batches + 1;
            n_id[v_batches] := v_row.id; n_lvl[v_batches] := v_row.n; n_bb[v_batches] := v_row.best_before;
            n_free[v_batches] := v_row.free;
        END LOOP;

        IF v_pass = 2 THEN
            -- The plan stands when it comes out the same on what is there now: the same batches in the same
            -- order, and per ingredient either the same values (l_exact: the plan depends on them, through a
            -- shortage's available, a batch taken to its end or a rejected request) or, where only the
            -- comparisons mattered, still room for every take (each batch keeps some free, so FEFO picks
            -- the same one) and a level that still covers what the call takes.
            v_valid := n_id = b_id AND n_lvl = b_lvl AND n_bb = b_bb;
            IF v_valid THEN
                SELECT coalesce(bool_and(CASE WHEN l_exact[x.lvl] THEN x.nfree = x.free
                                              ELSE x.taken = 0 OR x.nfree > x.taken END), true)
                  INTO v_valid
                  FROM unnest(b_lvl, b_free, n_free, b_taken) AS x(lvl, free, nfree, taken);
            END IF;
            IF v_valid THEN
                SELECT coalesce(bool_and(CASE WHEN x.exact THEN x.navail = x.avail ELSE x.navail >= x.taken END), true)
                  INTO v_valid
                  FROM unnest(l_exact, l_avail, n_avail, l_taken) AS x(exact, avail, navail, taken);
            END IF;
            EXIT WHEN v_valid;
            v_replanned := true;
            -- Stale: take back what step 2 wrote; it is written again from the new plan below.
            DELETE FROM stock_movement WHERE reservation_id = ANY (o_id);
            DELETE FROM stock_allocation WHERE reservation_id = ANY (o_id);
            PERFORM events_unpublish(v_mark, ARRAY['stock.reservation_created', 'stock.reservation_rejected']);
            DELETE FROM stock_reservation WHERE id = ANY (o_id);
        END IF;

        -- Plan: every new request in order, against what the ones before it took.
        l_avail := '{}'; l_blo := '{}'; l_bhi := '{}'; l_taken := '{}'; l_exact := '{}';
        FOR v IN 1..cardinality(l_ing) LOOP
            l_avail[v] := n_avail[v]; l_blo[v] := 1; l_bhi[v] := 0; l_taken[v] := 0; l_exact[v] := false;
        END LOOP;
        b_id := '{}'; b_lvl := '{}'; b_bb := '{}'; b_free := '{}'; b_taken := '{}';
        FOR b IN 1..v_batches LOOP
            b_id[b] := n_id[b]; b_lvl[b] := n_lvl[b]; b_bb[b] := n_bb[b]; b_free[b] := n_free[b]; b_taken[b] := 0;
            IF l_bhi[n_lvl[b]] = 0 THEN
                l_blo[n_lvl[b]] := b;
            END IF;
            l_bhi[n_lvl[b]] := b;
        END LOOP;
        t_req := '{}'; t_sku := '{}'; t_ing := '{}'; t_batch := '{}'; t_bid := '{}'; t_qty := '{}'; t_count := 0;
        FOR r IN 1..n LOOP
            CONTINUE WHEN r_state[r] NOT IN ('new', 'reserved', 'rejected');
            v_shortages := NULL;
            FOR k IN r_ilo[r]..r_ihi[r] LOOP
                v_lv := i_lvl[k];
                v_free := 0;
                FOR b IN l_blo[v_lv]..l_bhi[v_lv] LOOP
                    IF b_bb[b] >= r_nb[r] THEN
                        v_free := v_free + b_free[b] - b_taken[b];
                    END IF;
                END LOOP;
                v_available := round(least(v_free, l_avail[v_lv] - l_taken[v_lv]), 3);
                IF v_available < i_qty[k] THEN
                    v_shortages := coalesce(v_shortages, '[]'::jsonb) || jsonb_build_object(
                        'sku', i_sku[k], 'requested', round(i_qty[k], 3)::text, 'available', v_available::text);
                END IF;
            END LOOP;
            IF v_shortages IS NOT NULL THEN
                r_state[r] := 'rejected';
                r_short[r] := v_shortages;
                FOR k IN r_ilo[r]..r_ihi[r] LOOP
                    l_exact[i_lvl[k]] := true;
                END LOOP;
                CONTINUE;
            END IF;
            r_state[r] := 'reserved';
            r_short[r] := NULL;
            FOR k IN r_ilo[r]..r_ihi[r] LOOP
                v_lv := i_lvl[k];
                v_needed := i_qty[k];
                FOR b IN l_blo[v_lv]..l_bhi[v_lv] LOOP
                    EXIT WHEN v_needed <= 0;
                    CONTINUE WHEN b_bb[b] < r_nb[r];
                    v_free := b_free[b] - b_taken[b];
                    v_take := round(least(v_needed, v_free), 3);
                    CONTINUE WHEN v_take <= 0;
                    IF v_take >= v_free THEN
                        l_exact[v_lv] := true;  -- taken to its end: the take depends on the batch's value
                    END IF;
                    v_needed := v_needed - v_take;
                    b_taken[b] := b_taken[b] + v_take;
                    l_taken[v_lv] := l_taken[v_lv] + v_take;
                    t_count := t_count + 1;
                    t_req[t_count] := r; t_sku[t_count] := i_sku[k]; t_ing[t_count] := i_ing[k];
                    t_batch[t_count] := b; t_bid[t_count] := b_id[b]; t_qty[t_count] := v_take;
                END LOOP;
            END LOOP;
        END LOOP;

        -- Ids in transaction id order, so concurrent calls meet on the unique index in one order.
        SELECT coalesce(array_agg(u.r::int ORDER BY u.t COLLATE "C"), '{}') INTO v_order
          FROM unnest(r_txn, r_state) WITH ORDINALITY AS u(t, state, r) WHERE u.state IN ('reserved', 'rejected');
        IF v_pass = 1 THEN  -- planned again, the same requests are written: they keep their ids
            FOR j IN 1..cardinality(v_order) LOOP
                r_id[v_order[j]] := nextval(v_seq);
            END LOOP;
        END IF;
        t_rid := '{}';
        FOR j IN 1..t_count LOOP
            t_rid[j] := r_id[t_req[j]];
        END LOOP;

        IF v_pass = 2 THEN
            FOR r IN 1..n LOOP
                r_response[r] := NULL; r_created[r] := NULL;
            END LOOP;
        END IF;
        -- The answers of the reserved, as the single path builds them: per item (sku order), its batches
        -- first-expiring first; and the items of their reservation_created events, in the order taken.
        FOR v_row IN
            SELECT item.req, jsonb_agg(item.doc ORDER BY item.sku COLLATE "C") AS items
              FROM (
                SELECT t.req, t.sku,
                       jsonb_build_object(
                           'sku', t.sku,
                           'quantity', sum(t.q)::numeric(14, 3)::text,
                           'batches', jsonb_agg(jsonb_build_object(
                               'batch_id', bt.id, 'lot', bt.lot, 'best_before', bt.best_before, 'supplier', s.name,
                               'quantity', t.q::numeric(14, 3)::text, 'open', true) ORDER BY bt.best_before, bt.id)
                       ) AS doc
                  FROM unnest(t_req, t_sku, t_bid, t_qty) AS t(req, sku, bid, q)
                  JOIN stock_batch bt ON bt.id = t.bid
                  LEFT JOIN stock_supplier s ON s.id = bt.supplier_id
                 GROUP BY t.req, t.sku
              ) item
             GROUP BY item.req
        LOOP
            r_response[v_row.req] := v_row.items;
        END LOOP;
        FOR v_row IN
            SELECT t.req, jsonb_agg(jsonb_build_object('sku', t.sku, 'batch_id', t.bid,
                                                       'quantity', t.q::numeric(14, 3)::text) ORDER BY t.n) AS items
              FROM unnest(t_req, t_sku, t_bid, t_qty) WITH ORDINALITY AS t(req, sku, bid, q, n)
             GROUP BY t.req
        LOOP
            r_created[v_row.req] := v_row.items;
        END LOOP;

        -- Per request: its row, its event and its result.
        o_count := 0; e_count := 0;
        o_id := '{}'; o_txn := '{}'; o_status := '{}'; o_hash := '{}'; o_req := '{}'; o_code := '{}';
        o_response := '{}'; o_nd := '{}'; o_hu := '{}'; o_closed := '{}'; e_events := '{}'; v_results := '{}';
        FOR r IN 1..n LOOP
            IF r_state[r] = 'replay' THEN
                v_results[r] := jsonb_build_object('o', 'replay', 'id', r_found[r], 'h', r_found_hash[r]);
                CONTINUE;
            ELSIF r_state[r] = 'unknown' THEN
                v_results[r] := jsonb_build_object('o', 'unknown', 'missing', (
                    SELECT jsonb_agg(u.pos ORDER BY u.pos)
                      FROM unnest(i_pos[r_ilo[r]:r_ihi[r]], i_ing[r_ilo[r]:r_ihi[r]]) AS u(pos, ing) WHERE u.ing IS NULL));
                CONTINUE;
            END IF;
            o_count := o_count + 1;
            o_id[o_count] := r_id[r]; o_txn[o_count] := r_txn[r]; o_status[o_count] := r_state[r];
            o_hash[o_count] := r_hash[r]; o_req[o_count] := r_req[r]; o_nd[o_count] := r_nd[r];
            o_hu[o_count] := r_hu[r]::timestamptz;
            e_count := e_count + 1;
            IF r_state[r] = 'rejected' THEN
                o_code[o_count] := 409;
                o_closed[o_count] := v_now;
                o_response[o_count] := jsonb_build_object(
                    'type', 'insufficient_stock',
                    'title', 'Not enough stock; nothing was reserved.',
                    'status', 409,
                    'detail', (SELECT string_agg(format('%s: %s requested, %s available', e->>'sku', e->>'requested',
                                                        e->>'available'), '; ')
                                 FROM jsonb_array_elements(r_short[r]) e),
                    'errors', '{}'::jsonb,
                    'transaction_id', r_txn[r],
                    'shortages', r_short[r]);
                e_events[e_count] := jsonb_build_object(
                    'type', 'stock.reservation_rejected', 'key', r_txn[r],
                    'payload', jsonb_build_object('transaction_id', r_txn[r], 'shortages', r_short[r]));
            ELSE
                o_code[o_count] := 201;
                o_closed[o_count] := NULL;
                o_response[o_count] := jsonb_build_object(
                    'transaction_id', r_txn[r], 'status', 'reserved', 'needed_by', r_nd[r], 'hold_until', r_hu[r],
                    'at_risk', false, 'items', coalesce(r_response[r], '[]'::jsonb));
                e_events[e_count] := jsonb_build_object(
                    'type', 'stock.reservation_created', 'key', r_txn[r],
                    'payload', jsonb_build_object('transaction_id', r_txn[r],
                                                  'items', coalesce(r_created[r], '[]'::jsonb)));
            END IF;
            v_results[r] := jsonb_build_object('o', r_state[r], 'id', r_id[r], 'response', o_response[o_count]);
        END LOOP;

        IF o_count > 0 THEN
            INSERT INTO stock_reservation (id, transaction_id, status, request_hash, request, response_status, response,
                                           needed_by, hold_until, at_risk, created_at, closed_at)
                SELECT u.id, u.txn, u.status, u.hash, u.req, u.code, u.response, u.nd, u.hu, false, v_now, u.closed
                  FROM unnest(o_id, o_txn, o_status, o_hash, o_req, o_code, o_response, o_nd, o_hu, o_closed)
                       AS u(id, txn, status, hash, req, code, response, nd, hu, closed)
                 ORDER BY u.txn COLLATE "C";
        END IF;
        IF t_count > 0 THEN
            INSERT INTO stock_allocation (reservation_id, batch_id, ingredient_id, quantity, open)
                SELECT t.rid, t.bid, t.ing, t.q, true
                  FROM unnest(t_rid, t_bid, t_ing, t_qty) WITH ORDINALITY AS t(rid, bid, ing, q, n) ORDER BY t.n;
            INSERT INTO stock_movement (ingredient_id, batch_id, reservation_id, kind, on_hand_delta, reserved_delta,
                                        created_at, note)
                SELECT t.ing, t.bid, t.rid, 'reserve', 0, t.q, v_now, ''
                  FROM unnest(t_rid, t_bid, t_ing, t_qty) WITH ORDINALITY AS t(rid, bid, ing, q, n) ORDER BY t.n;
        END IF;
        -- Events: one per request in order (the levels' follow under the locks).
        IF v_pass = 1 THEN
            v_mark := events_outbox_mark();
        END IF;
        IF e_count > 0 THEN
            SELECT jsonb_agg(u.e ORDER BY u.n) INTO v_events FROM unnest(e_events) WITH ORDINALITY AS u(e, n);
            v_counts := events_publish(v_events, 'supplychain/stock', p_now, p_correlation_id, p_versions);
        ELSE
            v_counts := '{}'::jsonb;
        END IF;
        IF v_pass = 1 THEN
            -- The foreign keys of those rows, checked now rather than at commit, when the locks are held.
            SELECT string_agg(format('%I.%I', ns.nspname, c.conname), ', ') INTO v_constraints
              FROM pg_constraint c JOIN pg_namespace ns ON ns.oid = c.connamespace
             WHERE c.conrelid IN ('stock_allocation'::regclass, 'stock_movement'::regclass)
               AND c.contype = 'f' AND c.condeferred;
            IF v_constraints IS NOT NULL THEN
                EXECUTE format('SET CONSTRAINTS %s IMMEDIATE', v_constraints);
                EXECUTE format('SET CONSTRAINTS %s DEFERRED', v_constraints);
            END IF;
        END IF;
        EXIT WHEN v_pass = 2;
    END LOOP;

    -- Under the locks: the batches and levels, and the level events (one per ingredient, the level after
    -- the call).
    IF t_count > 0 THEN
        UPDATE stock_batch b SET quantity_reserved = b.quantity_reserved + x.q
          FROM (SELECT t.bid, sum(t.q) AS q FROM unnest(t_bid, t_qty) AS t(bid, q) GROUP BY t.bid) x
         WHERE b.id = x.bid;
        v_events := stock_move_levels(t_ing, array_fill(0::numeric, ARRAY[t_count]), t_qty, v_now);
        IF jsonb_array_length(v_events) > 0 THEN
            v_level_counts := events_publish(v_events, 'supplychain/stock', p_now, p_correlation_id, p_versions);
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'results', (SELECT jsonb_agg(u.x ORDER BY u.n) FROM unnest(v_results) WITH ORDINALITY AS u(x, n)),
        'events', v_counts || v_level_counts,
        'replanned', v_replanned);
END;
$fn$;
