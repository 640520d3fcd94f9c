"""The transfer notice (档案转递通知单) and the material list (材料目录清单) as printable PDF/A,
the text in an embedded CJK font (WenQuanYi Zen Hei, Debian's fonts-wqy-zenhei)."""

from __future__ import annotations

import io
from pathlib import Path

from errors import SetupError
from ocr.pdf import to_pdfa

FONT_FILE = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
FONT = "WenQuanYiZenHei"
_registered = False


def _font() -> str:
    global _registered
    if not _registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        if not FONT_FILE.exists():
            raise SetupError("未安装打印转递单所需的中文字体：apt-get install fonts-wqy-zenhei（或 make setup）",
                             "the CJK font of printable notices is missing: apt-get install fonts-wqy-zenhei "
                             "(or run `make setup`)")
        pdfmetrics.registerFont(TTFont(FONT, str(FONT_FILE), subfontIndex=0))
        _registered = True
    return FONT


NOTICE_FIELDS = (("sending_agency_name", "转出单位"), ("receiving_agency_name", "接收单位"), ("person_name", "姓名"),
                 ("file_number", "档号"), ("volumes", "卷数（正本/副本）"), ("material_count", "材料份数"),
                 ("page_count", "页数"), ("reason", "转递原因"), ("method", "转递方式"),
                 ("tracking_number", "转递编号"), ("handler", "经办人"), ("date", "日期"))


def _pdf(title: str, rows: list[tuple[str, str]], subtitle: str = "") -> bytes:
    from reportlab import rl_config
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    font = _font()
    rl_config.useA85 = 0
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1, pageCompression=1, initialFontName=font)
    c.setTitle(title)
    width, height = A4
    y = height - 72

    def line(text: str, size: float = 11, x: float = 60) -> None:
        nonlocal y
        if y < 60:
            c.showPage()
            y = height - 72
        c.setFont(font, size)
        c.drawString(x, y, text)
        y -= size * 1.8

    line(title, 18, 60)
    if subtitle:
        line(subtitle, 10)
    y -= 8
    for label, value in rows:
        line(f"{label}：{value}" if label else value)
    c.showPage()
    c.save()
    return to_pdfa(buf.getvalue(), title)


def notice_pdf(notice: dict) -> bytes:
    volumes = notice.get("volumes", {})
    values = {**notice, "volumes": f"{volumes.get('original', 1)} / {volumes.get('copies', 0)}",
              "method": {"electronic": "电子转递"}.get(notice.get("method"), notice.get("method", ""))}
    return _pdf("流动人员人事档案转递通知单", [(label, str(values.get(key, ""))) for key, label in NOTICE_FIELDS],
                "请接收单位核对后回执 / the receiving agency checks the file and returns the receipt")


def material_list_pdf(file_number: str, name: str, materials: list[dict]) -> bytes:
    rows = [("", f"{m['code']:<9} {m['title']}  {m['formed']}  {m['copies']} 份  {m['page_count']} 页")
            for m in materials]
    return _pdf("材料目录清单", rows, f"档号 {file_number}  姓名 {name}  共 {len(materials)} 份材料")
