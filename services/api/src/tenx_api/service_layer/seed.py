"""Demo data: a catalog of a few thousand products in many categories, the same
on every machine (seeded), added once (products are keyed by their DEMO- SKU).

``make up`` runs ``python -m tenx_api seed``: it adds the missing ones of 3,000
Faker products in 16 categories, each with its ProductCreated event (so the
search index fills too); a second run adds nothing."""

import random
import uuid
from datetime import UTC, datetime

from faker import Faker
from sqlalchemy import func, select

from tenx_api.adapters.orm import Product
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.events.catalog_products import ProductCreated

# category: (nouns, price range in cents)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "kitchen": (
        ("teapot", "espresso cup", "chef knife", "cutting board", "saucepan"),
        (500, 15000),
    ),
    "garden": (("trowel", "watering can", "planter", "hose", "pruning shears"), (400, 9000)),
    "books": (("novel", "cookbook", "field guide", "atlas", "anthology"), (800, 6000)),
    "audio": (("headphones", "speaker", "turntable", "amplifier", "microphone"), (2000, 60000)),
    "outdoor": (("tent", "sleeping bag", "headlamp", "backpack", "camp stove"), (1500, 40000)),
    "office": (("notebook", "desk lamp", "fountain pen", "stapler", "monitor stand"), (300, 20000)),
    "toys": (("puzzle", "kite", "building set", "plush bear", "yo-yo"), (300, 8000)),
    "sports": (("yoga mat", "football", "tennis racket", "jump rope", "dumbbell"), (800, 25000)),
    "bath": (("towel", "soap dish", "bath mat", "shower caddy", "robe"), (400, 9000)),
    "lighting": (
        ("floor lamp", "pendant light", "lantern", "desk light", "string lights"),
        (1200, 30000),
    ),
    "furniture": (("stool", "bookshelf", "side table", "armchair", "coat rack"), (3000, 90000)),
    "pets": (("dog bed", "cat tree", "leash", "feeding bowl", "chew toy"), (300, 15000)),
    "beauty": (("face cream", "hair brush", "perfume", "lip balm", "nail kit"), (300, 12000)),
    "tools": (("hammer", "screwdriver set", "drill", "tape measure", "level"), (500, 30000)),
    "games": (("board game", "card deck", "chess set", "dice set", "game controller"), (500, 9000)),
    "clothing": (("t-shirt", "rain jacket", "wool scarf", "sneakers", "beanie"), (900, 25000)),
}


async def seed_catalog(*, deps: ApiDeps, count: int = 3000, seed: int = 7) -> int:
    """Add the demo products that are missing; return how many were added."""
    async with deps.uow() as uow:
        present = await uow.session.scalar(
            select(func.count()).select_from(Product).where(Product.sku.like("DEMO-%"))
        )
        if (present or 0) >= count:
            return 0
        fake, rng = Faker(), random.Random(seed)  # noqa: S311 (repeatable demo data)
        fake.seed_instance(seed)
        now = datetime.now(UTC)
        names = sorted(CATEGORIES)
        added = 0
        for i in range(count):
            category = names[i % len(names)]
            nouns, (low, high) = CATEGORIES[category]
            product = Product(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                sku=f"DEMO-{i:05d}",
                name=f"{fake.color_name()} {fake.word().capitalize()} {rng.choice(nouns)}",
                description=fake.paragraph(nb_sentences=3),
                category=category,
                price_cents=rng.randint(low // 50, high // 50) * 50 - 1,
                currency="EUR",
                stock=rng.choice((0, 3, 10, 25, 50, 100, 250)),
                version=1,
                created_at=now,
                updated_at=now,
            )
            if i < (present or 0):
                continue  # the first ones are there already (same seed, same products)
            uow.session.add(product)
            await uow.publish(
                ProductCreated(
                    product_id=product.id,
                    version=1,
                    sku=product.sku,
                    name=product.name,
                    description=product.description,
                    category=product.category,
                    price_cents=product.price_cents,
                    currency=product.currency,
                    stock=product.stock,
                )
            )
            added += 1
        await uow.commit()
    return added
