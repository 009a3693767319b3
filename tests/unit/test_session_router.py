"""LSNs compare as the positions they name."""

from tenx_common.data.session_router import parse_lsn


def test_lsn_parsing_orders_positions() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("1/0") == 1 << 32
    assert parse_lsn("16/B374D848") > parse_lsn("16/B374D847") > parse_lsn("15/FFFFFFFF")
