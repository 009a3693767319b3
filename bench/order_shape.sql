-- pgbench: the SQL of one order placement (tenx_api.service_layer.orders.place_order)
-- on copies of the api's tables in the schema bench_orders (bench/orders.py
-- makes them, with the stack's own indexes, and a copy of the api's SQL
-- function place_order that runs on them, and drops them): one statement,
-- its own transaction, that claims the idempotency key, reserves the line's
-- stock (keeping the change's trace: StockChanged is announced later, once
-- per product per window), and writes the order with its line and stored
-- answer, OrderPlaced in the outbox and its saga, with the NOTIFYs that wake
-- the relays, the saga runners and the stock announcer.
-- tests/integration/test_order_statements.py
-- fails when this and the placement part ways.
-- Payloads are copies of real ones (bench_orders.samples). Variables:
-- :products (rows in bench_orders.products, numbered 1..n), :customers.
\set n random(1, :products)
\set customer random(1, :customers)
\set key random(1, 2000000000)
\set order random(1, 9000000000000000000)
SELECT outcome, earlier_hash, earlier_status, earlier_body FROM bench_orders.place_order(
  md5(:customer::text)::uuid, :key::text, md5(:key::text),
  (SELECT jsonb_build_array(jsonb_build_object('product_id', id, 'quantity', 1,
      'price_cents', price_cents, 'currency', currency))
    FROM bench_orders.products WHERE n = :n),
  '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
  jsonb_build_object('id', md5(:order::text)::uuid, 'user_id', md5(:customer::text)::uuid,
    'status', 'pending', 'total_cents', 1999, 'currency', 'EUR',
    'payment_method', 'pm_card_visa', 'created_at', now(), 'updated_at', now()),
  (SELECT payload FROM bench_orders.samples WHERE type = 'answer'),
  (SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'topic', 'orders.orders',
      'key', :order::text, 'type', type, 'payload', payload, 'headers', headers,
      'occurred_at', now()))
    FROM bench_orders.samples WHERE type = 'placed'),
  jsonb_build_object('id', md5(:order::text)::uuid, 'kind', 'order', 'status', 'running',
    'step', 'authorize_payment', 'attempts', 0, 'trace', '{}'::jsonb,
    'next_attempt_at', now(), 'created_at', now(), 'updated_at', now()),
  ARRAY['bench_orders', 'bench_stock', 'bench_sagas']);
