"""Is a preserved PDF self-contained? The PDF/A-2 properties a reader's machine must not supply.

pikepdf's allowlist validator approves a file only if every construct in it is known to
conform; on top of its verdict this names, in words staff and auditors can read, the
properties that matter for long-term preservation and for search in any reader: every font
embedded with a /ToUnicode map, the PDF/A identification in XMP, an sRGB OutputIntent, no
encryption and no reference to anything outside the file. A full check with veraPDF:
README, "Searchable PDFs".
"""

from __future__ import annotations

import io

import pikepdf

# Actions and objects that reach outside the file or run something.
_EXTERNAL_ACTIONS = {"/URI", "/Launch", "/GoToR", "/GoToE", "/ImportData", "/SubmitForm", "/JavaScript"}
_FONT_FILES = ("/FontFile", "/FontFile2", "/FontFile3")


def _dictionaries(pdf: pikepdf.Pdf):
    """Every dictionary in the file: the indirect objects and the dictionaries inside them."""
    stack = list(pdf.objects)
    while stack:
        obj = stack.pop()
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            yield obj
            stack += [v for v in obj.values() if isinstance(v, pikepdf.Dictionary | pikepdf.Array)
                      and not v.is_indirect]
        elif isinstance(obj, pikepdf.Array):
            stack += [v for v in obj if isinstance(v, pikepdf.Dictionary | pikepdf.Array) and not v.is_indirect]


def self_contained_problems(data: bytes, flavour: str = "2b", validator: bool = True) -> list[str]:
    """What keeps the PDF from being a self-contained PDF/A (the given flavour); empty when none.
    `validator=False` checks the properties below without pikepdf's allowlist walk, which is most
    of the time: for files the validator passed where they were made."""
    import pikepdf.pdfa

    problems = []
    if validator:
        report = pikepdf.pdfa.validate_written(io.BytesIO(data), flavour)
        if not report.passed:
            problems += [f"PDF/A-{flavour} validator: {f}" for f in report.findings[:10]]
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except pikepdf.PdfError as exc:
        return problems + [f"cannot be opened: {exc}"]
    with pdf:
        if pdf.is_encrypted:
            problems.append("encrypted")
        meta = pdf.open_metadata()
        part, conformance = meta.get("pdfaid:part"), meta.get("pdfaid:conformance")
        if part != flavour[0] or (conformance or "").lower() != flavour[1:]:
            problems.append(f"XMP declares PDF/A part {part!r} conformance {conformance!r}, not {flavour}")
        intents = pdf.Root.get("/OutputIntents", [])
        if not any(i.get("/S") == "/GTS_PDFA1" and "/DestOutputProfile" in i
                   and "sRGB" in str(i.get("/OutputConditionIdentifier", "")) for i in intents):
            problems.append("no sRGB OutputIntent (GTS_PDFA1 with its ICC profile)")
        fonts = [d for d in _dictionaries(pdf) if d.get("/Type") == "/Font"]  # pages', forms', descendants
        for font in fonts:
            where = f"font {font.get('/BaseFont', '?')}" + (f" (object {font.objgen[0]})" if font.is_indirect else "")
            subtype = font.get("/Subtype")
            if subtype in ("/CIDFontType0", "/CIDFontType2"):  # a descendant: its parent maps the text
                if not any(k in font.get("/FontDescriptor", {}) for k in _FONT_FILES):
                    problems.append(f"{where}: not embedded")
                continue
            if "/ToUnicode" not in font:
                problems.append(f"{where}: no /ToUnicode map, so its text cannot be extracted everywhere")
            encoding = font.get("/Encoding")
            if subtype == "/Type0" and isinstance(encoding, pikepdf.Name) and encoding not in ("/Identity-H",
                                                                                              "/Identity-V"):
                problems.append(f"{where}: predefined CMap {encoding} that readers must have installed")
            if subtype not in ("/Type0", "/Type3") and not any(k in font.get("/FontDescriptor", {})
                                                               for k in _FONT_FILES):
                problems.append(f"{where}: not embedded")
        for obj in _dictionaries(pdf):
            if obj.get("/S") in _EXTERNAL_ACTIONS:
                problems.append(f"action {obj.get('/S')} reaches outside the file")
            if obj.get("/Type") == "/Filespec" and "/EF" not in obj:
                problems.append(f"reference to an external file {obj.get('/F', '?')}")
            if obj.get("/Subtype") == "/Form" and "/Ref" in obj:
                problems.append("reference XObject: content from another file")
    return problems
