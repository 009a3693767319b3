"""An order placed in one statement: ``place_order``, a PL/pgSQL function the
api calls outside a transaction block, so the call is its own transaction
(``tenx_api.adapters.statements.place_order``). It claims the idempotency key,
returns the answer stored under it or reserves every line's stock, and writes
the order, its lines, the stored answer, the transaction's events and its saga,
with the NOTIFYs. A refusal is an exception, which undoes what the call did.

Each statement of a volatile function takes its own snapshot, so the lookup
of the stored answer, which runs after the key's advisory lock is granted,
sees an answer committed by the request that held it. The statements' plans
are kept by each server connection, so a placement is parsed once per
connection instead of at every execution.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Refusals are raised with SQLSTATE P0001 (raise_exception) and the problem's
# code as the message; tables are named without a schema, so a copy of the
# function with its own search_path runs on copies of the tables (pgbench's).
PLACE_ORDER = """
CREATE FUNCTION place_order(
    p_user_id uuid,
    p_key text,
    p_request_hash text,
    p_lines jsonb,          -- [{product_id, quantity, price_cents, currency}], in product order
    p_change_trace jsonb,   -- the stock changes' trace, for their announcement
    p_order jsonb,          -- the orders row
    p_answer jsonb,         -- the 201's body, stored under the key
    p_events jsonb,         -- outbox rows
    p_saga jsonb,           -- the sagas row
    p_channels text[]       -- NOTIFYed at the commit
) RETURNS TABLE (outcome text, earlier_hash text, earlier_status integer, earlier_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    line record;
    placed_at timestamptz := (p_order->>'created_at')::timestamptz;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_user_id::text || ':' || p_key, 0)) THEN
        RETURN QUERY SELECT 'key_in_use', NULL::text, NULL::integer, NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'earlier', k.request_hash, k.response_status, k.response_body
        FROM idempotency_keys k WHERE k.user_id = p_user_id AND k.key = p_key;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Never below zero, whatever the concurrency; at the price the caller
    -- priced the order at (a changed price refuses it, with the new prices).
    FOR line IN SELECT * FROM jsonb_to_recordset(p_lines)
            AS l(product_id uuid, quantity integer, price_cents bigint, currency text) LOOP
        UPDATE products
            SET stock = stock - line.quantity, version = version + 1,
                change_trace = p_change_trace, updated_at = placed_at
            WHERE id = line.product_id AND stock >= line.quantity
                AND price_cents = line.price_cents AND currency = line.currency;
        IF NOT FOUND THEN
            IF NOT EXISTS (SELECT FROM products WHERE id = line.product_id) THEN
                RAISE EXCEPTION 'unknown_product' USING DETAIL = line.product_id::text;
            END IF;
            IF EXISTS (
                SELECT FROM products WHERE id = line.product_id
                    AND price_cents = line.price_cents AND currency = line.currency
            ) THEN
                RAISE EXCEPTION 'out_of_stock' USING DETAIL = line.product_id::text;
            END IF;
            RAISE EXCEPTION 'price_changed' USING DETAIL = (
                SELECT jsonb_object_agg(p.id, jsonb_build_array(p.price_cents, p.currency))
                FROM products p
                WHERE p.id IN (SELECT (l->>'product_id')::uuid FROM jsonb_array_elements(p_lines) l)
            )::text;
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT l->>'currency') FROM jsonb_array_elements(p_lines) l) > 1 THEN
        RAISE EXCEPTION 'mixed_currencies';
    END IF;

    INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method,
            created_at, updated_at)
        SELECT id, user_id, status, total_cents, currency, payment_method, created_at, updated_at
        FROM jsonb_populate_record(NULL::orders, p_order);
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
        SELECT (p_order->>'id')::uuid, l.product_id, l.quantity, l.price_cents
        FROM jsonb_to_recordset(p_lines)
            AS l(product_id uuid, quantity integer, price_cents bigint);
    INSERT INTO idempotency_keys (user_id, key, request_hash, response_status, response_body,
            created_at)
        VALUES (p_user_id, p_key, p_request_hash, 201, p_answer, placed_at);
    INSERT INTO outbox (id, topic, key, type, payload, headers, occurred_at)
        SELECT id, topic, key, type, payload, headers, occurred_at
        FROM jsonb_populate_recordset(NULL::outbox, p_events);
    INSERT INTO sagas (id, kind, status, step, attempts, trace, next_attempt_at, created_at,
            updated_at)
        SELECT id, kind, status, step, attempts, trace, next_attempt_at, created_at, updated_at
        FROM jsonb_populate_record(NULL::sagas, p_saga);
    PERFORM pg_notify(channel, '') FROM unnest(p_channels) channel;
    RETURN QUERY SELECT 'placed', NULL::text, NULL::integer, NULL::jsonb;
END
$$
"""


def upgrade() -> None:
    op.execute(PLACE_ORDER)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION place_order(uuid, text, text, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb,"
        " text[])"
    )
