-- pgbench: the SQL of one order placement (tenx_api.service_layer.orders.place_order)
-- as one transaction, on copies of the api's tables in the schema bench_orders
-- (bench/orders.py makes them, with the stack's own indexes, and drops them):
-- the idempotency key's advisory lock, then its stored answer looked up with
-- the conditional stock UPDATE that runs only where there is none (which keeps
-- the change's trace: StockChanged is announced later, once per product per
-- window), and at the commit one statement: the order with its
-- line and stored answer, OrderPlaced in the outbox, its saga and the NOTIFY
-- that wakes the relays and the stock announcer.
-- tests/integration/test_order_statements.py
-- fails when this and the placement part ways.
-- Payloads are copies of real ones (bench_orders.samples). Variables:
-- :products (rows in bench_orders.products, numbered 1..n), :customers.
\set n random(1, :products)
\set customer random(1, :customers)
\set key random(1, 2000000000)
\set order random(1, 9000000000000000000)
BEGIN;
SELECT pg_try_advisory_xact_lock(hashtextextended(md5(:customer::text) || ':' || :key, 0));
WITH earlier AS (
  SELECT request_hash, response_status, response_body FROM bench_orders.idempotency_keys
    WHERE user_id = md5(:customer::text)::uuid AND key = :key::text
), reserved AS (
  UPDATE bench_orders.products SET stock = stock - 1, version = version + 1,
      change_trace = '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
      updated_at = now()
    WHERE n = :n AND stock >= 1 AND NOT EXISTS (SELECT FROM earlier)
    RETURNING id, sku, name, description, category, price_cents, currency, stock, version
)
SELECT earlier.*, reserved.* FROM (SELECT 1) one LEFT JOIN earlier ON true
  LEFT JOIN reserved ON true;
WITH staged_0 AS (
  INSERT INTO bench_orders.orders (id, user_id, status, total_cents, currency, payment_method,
      created_at, updated_at)
    VALUES (md5(:order::text)::uuid, md5(:customer::text)::uuid, 'pending', 1999, 'EUR',
      'pm_card_visa', now(), now())
), staged_1 AS (
  INSERT INTO bench_orders.order_items (order_id, product_id, quantity, unit_price_cents)
    SELECT md5(:order::text)::uuid, id, 1, price_cents FROM bench_orders.products WHERE n = :n
), staged_2 AS (
  INSERT INTO bench_orders.idempotency_keys (user_id, key, request_hash, response_status,
      response_body, created_at)
    SELECT md5(:customer::text)::uuid, :key::text, md5(:key::text), 201, payload, now()
    FROM bench_orders.samples WHERE type = 'answer'
), staged_3 AS (
  INSERT INTO bench_orders.outbox (id, topic, key, type, payload, headers, occurred_at)
    SELECT gen_random_uuid(), 'orders.orders', :order::text, type, payload, headers, now()
    FROM bench_orders.samples WHERE type = 'placed'
), staged_4 AS (
  INSERT INTO bench_orders.sagas (id, kind, status, step, attempts, trace, next_attempt_at,
      created_at, updated_at)
    VALUES (md5(:order::text)::uuid, 'order', 'running', 'authorize_payment', 0, '{}', now(),
      now(), now())
)
SELECT pg_notify(c, '') FROM unnest(ARRAY['bench_orders', 'bench_stock']) c;
COMMIT;
