"""The api's price book: what a placement prices its lines at, learned from
reads and from the database's refusals of an old price."""

import uuid

from tenx_api.service_layer.deps import PriceBook


def test_prices_are_learned_and_missing_ones_named() -> None:
    book = PriceBook()
    known, new = uuid.uuid4(), uuid.uuid4()
    book.learn({known: (2500, "EUR")})
    assert book.get(known) == (2500, "EUR")
    assert book.get(new) is None
    assert book.missing([known, new]) == [new]
    book.learn({known: (3100, "EUR")})  # a refusal's price of now replaces the old one
    assert book.get(known) == (3100, "EUR")


def test_a_catalog_larger_than_the_book_starts_it_again() -> None:
    book = PriceBook(size=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    book.learn({first: (1, "EUR"), second: (2, "EUR")})
    book.learn({third: (3, "EUR")})
    assert book.missing([first, second, third]) == [first, second]
