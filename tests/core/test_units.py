from ophthai_desktop.core.units import format_bytes


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(2048) == "2.0 KB"
    assert format_bytes(16_400_000_000) == "16.4 GB"
