"""The core monolith: catalog, inventory, orders, payments, profiles, the order saga and
search queries."""
