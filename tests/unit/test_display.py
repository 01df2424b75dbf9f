from tasks.display import first_line, printable


def test_control_characters_become_visible_escapes() -> None:
    assert printable("a\x1b[31mred\nforged: line\r\x07.pdf") == "a\\x1b[31mred\\x0aforged: line\\x0d\\x07.pdf"
    assert printable("right-to-left \u202etxt.exe") == "right-to-left \\u202etxt.exe"
    assert printable("plain/ключ [bold].pdf") == "plain/ключ [bold].pdf"  # markup is the terminal's job


def test_first_line_keeps_one_line() -> None:
    assert first_line("(psycopg.OperationalError) connection refused\n[SQL: SELECT 1]\n(Background...)") == (
        "(psycopg.OperationalError) connection refused"
    )
    assert len(first_line("x" * 1000, limit=50)) == 50
