"""Once gave pages indexed before them their CJK-punctuation pair terms. Superseded by 0008,
which computes every page's terms anew as codes, so nothing is left to do here."""


def migrate(cur) -> None:
    pass
