"""What the code and the tests take from the machine, and the Debian package that provides it.

`scripts/setup.sh` installs with `--no-install-recommends`, so nothing comes along that is not
named there; tests/test_system_needs.py holds this list, setup.sh's and the source to each
other: every command the source runs is listed here, every package listed here is installed
by setup.sh, and on a Debian machine each path below belongs to its package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    what: str               # a command on PATH, or an absolute path (a glob) the code opens
    package: str            # the Debian package that provides it
    why: str
    tests_only: bool = False

    @property
    def is_command(self) -> bool:
        return not self.what.startswith("/")


NEEDS = (
    Need("tesseract", "tesseract-ocr", "the fallback OCR engine (tesserocr loads libtesseract)"),
    Need("/usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata", "tesseract-ocr-chi-sim", "Chinese model"),
    Need("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata", "tesseract-ocr-eng", "Latin model"),
    Need("pdfinfo", "poppler-utils", "intake reads a PDF scan's page count (pdf2image)"),
    Need("pdftoppm", "poppler-utils", "PDF scans rendered to page images (pdf2image)"),
    Need("pdftotext", "poppler-utils", "tests extract the text layer of searchable PDFs", tests_only=True),
    Need("/usr/lib/postgresql/15/bin/initdb", "postgresql-15", "the private PostgreSQL cluster"),
    Need("/usr/lib/postgresql/15/bin/pg_ctl", "postgresql-15", "starts and stops that cluster"),
    Need("runuser", "util-linux", "PostgreSQL refuses to run as root: the cluster runs as `postgres`"),
    Need("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "fonts-wqy-zenhei",
         "printable transfer notices (transfer/printable.py); sample generator: hei style"),
    Need("/usr/share/fonts/truetype/arphic/uming.ttc", "fonts-arphic-uming", "sample generator: song style"),
    Need("/usr/share/fonts/truetype/arphic/ukai.ttc", "fonts-arphic-ukai", "sample generator: kai style"),
    Need("/usr/lib/*-linux-gnu/libGL.so.1", "libgl1", "opencv (RapidOCR's image operations) loads it"),
    Need("/usr/lib/*-linux-gnu/libglib-2.0.so.0", "libglib2.0-0", "opencv loads it"),
    Need("redis-server", "redis-server", "the Celery executor's broker on loopback (devservices/redis.py)"),
    Need("/usr/bin/chromium", "chromium", "the upload page's browser test", tests_only=True),
    Need("zip", "zip", "tests hand in a zip made by Info-ZIP", tests_only=True),
)

# Commands the source runs that setup.sh need not install: the venv's own programs, and dpkg
# (Essential: on every Debian system).
PRESENT_ANYWAY = frozenset({"dagster", "ruff", "archive", "dpkg"})


def commands() -> set[str]:
    """Names the source may run: commands on PATH, and programs named by their path (PostgreSQL's)."""
    return {n.what if n.is_command else n.what.rsplit("/", 1)[1] for n in NEEDS
            if n.is_command or "/bin/" in n.what}
